/* SPDX-License-Identifier: MIT */
/*
 * heap: a demand-paged heap.  The heap's virtual range starts unmapped;
 * the #PF handler gives each touched page a fresh zeroed frame and the
 * faulting instruction runs again.  Then write protection: a read-only
 * page faults on write with P|W in the error code and CR2 = the address,
 * the handler makes it writable, and the write completes.  Then NX: a
 * fetch from a no-execute page faults with P|I.  With several vCPUs,
 * every vCPU demand-pages its own part of the heap concurrently.
 */
#include "runtime.h"

#define HEAP RT_WINDOW
#define HEAP_PAGES 512u

static volatile unsigned faults[RT_VCPUS_MAX];
static volatile uint64_t last_error[RT_VCPUS_MAX], last_cr2[RT_VCPUS_MAX];
static volatile unsigned finished;

static void on_pf(struct rt_frame *f)
{
    uint64_t cr2 = read_cr2();
    unsigned me = rt_vcpu_id();
    faults[me]++;
    last_error[me] = f->error;
    last_cr2[me] = cr2;
    if (cr2 < HEAP || cr2 >= HEAP + HEAP_PAGES * PAGE_SIZE)
        rt_fail("vcpu %u: #PF outside the heap at 0x%lx (error 0x%lx, rip 0x%lx)", me, cr2,
                f->error, f->rip);
    uint64_t page = cr2 & ~(PAGE_SIZE - 1);
    if (!(f->error & PF_P)) {
        rt_map(page, rt_alloc_page(), PTE_W);      /* demand: a new zeroed page */
    } else if (f->error & PF_W) {
        volatile uint64_t *pte = rt_pte(page);     /* write to read-only: allow it */
        *pte |= PTE_W;
        invlpg(page);
    } else if (f->error & PF_I) {
        volatile uint64_t *pte = rt_pte(page);     /* fetch from NX: leave it, skip the call */
        (void)pte;
        f->rip = *(uint64_t *)f->rsp;              /* return to the caller of the NX "function" */
        f->rsp += 8;
    } else {
        rt_fail("vcpu %u: unexpected #PF error 0x%lx at 0x%lx", me, f->error, cr2);
    }
}

/* Each vCPU fills every n-th page of the heap, starting at its index. */
static void fill(unsigned index)
{
    unsigned n = rt_nr_vcpus;
    for (unsigned p = index; p < HEAP_PAGES; p += n) {
        volatile uint64_t *w = (volatile uint64_t *)(HEAP + p * PAGE_SIZE);
        CHECK(w[0] == 0 && w[511] == 0, "vcpu %u: page %u not zero", index, p);
        for (unsigned i = 0; i < 512; i += 64)
            w[i] = ((uint64_t)p << 32) | i;
    }
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
}

int guest_main(void)
{
    rt_set_handler(14, on_pf);
    unsigned n = rt_nr_vcpus;
    rt_printf("heap: %u pages from 0x%lx, demand-paged by %u vCPU(s)\n", HEAP_PAGES, HEAP, n);
    rt_start_others(fill);
    fill(0);
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) != n)
        cpu_relax();
    unsigned total = 0;
    for (unsigned i = 0; i < n; i++)
        total += faults[i];
    CHECK(total == HEAP_PAGES, "%u demand faults, expected %u", total, HEAP_PAGES);
    rt_printf("demand faults: %u (one per page)\n", total);
    for (unsigned p = 0; p < HEAP_PAGES; p++) {
        volatile uint64_t *w = (volatile uint64_t *)(HEAP + p * PAGE_SIZE);
        for (unsigned i = 0; i < 512; i++) {
            uint64_t want = (i % 64) ? 0 : (((uint64_t)p << 32) | i);
            CHECK(w[i] == want, "page %u word %u: 0x%lx, expected 0x%lx", p, i, w[i], want);
        }
    }
    rt_printf("contents: every page holds what its vCPU wrote\n");

    /* Write protection. */
    uint64_t ro = HEAP + 7 * PAGE_SIZE;
    *rt_pte(ro) &= ~PTE_W;
    invlpg(ro);
    unsigned before = faults[0];
    *(volatile uint64_t *)(ro + 24) = 42;
    CHECK(faults[0] == before + 1, "write to a read-only page: %u faults", faults[0] - before);
    rt_printf("write to read-only page: #PF error 0x%lx, cr2 = page + 0x%lx, then the write "
              "completed: %lu\n", last_error[0], last_cr2[0] - ro, *(volatile uint64_t *)(ro + 24));

    /* No-execute: a ret instruction on an NX page is fetched, not run. */
    uint64_t nx = HEAP + 9 * PAGE_SIZE;
    *(volatile uint8_t *)nx = 0xc3; /* ret */
    *rt_pte(nx) |= PTE_NX;
    invlpg(nx);
    before = faults[0];
    ((void (*)(void))nx)();
    CHECK(faults[0] == before + 1, "fetch from NX: %u faults", faults[0] - before);
    rt_printf("fetch from no-execute page: #PF error 0x%lx, cr2 = page + 0x%lx\n", last_error[0],
              last_cr2[0] - nx);

    /* A probed read of an unmapped page outside the heap. */
    uint64_t v;
    uint64_t r = rt_probe_read64(HEAP + HEAP_PAGES * PAGE_SIZE, &v);
    rt_printf("read of an unmapped page: #PF error 0x%lx\n", r & 0xffffffff);
    rt_printf("heap: ok\n");
    return 0;
}
