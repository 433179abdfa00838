/* SPDX-License-Identifier: MIT */
/*
 * shootdown: vCPU 0 remaps a page again and again while every other vCPU
 * reads it in a loop.  Each remap points the page at a fresh frame holding
 * the round number, then makes the other vCPUs drop the old translation,
 * alternately as an OS does it (an IPI whose handler runs INVLPG and
 * acknowledges) and through the machine's PV flush hypercall.  Only then
 * is the round published; a reader that sees the published round and
 * then reads an older value used a stale translation, and says so.
 * Last, the page is unmapped and shot down: every reader must fault.
 * Also: a flush with the "local" hint, and an asynchronous one.
 */
#include "runtime.h"

#define PAGE (RT_WINDOW + 0x100000)
#define PRIVATE (RT_WINDOW + 0x200000)
#define ROUNDS 64u
#define UNMAPPED 1000u
#define DONE 1001u
#define VEC_SHOOT 0x40

static volatile unsigned round;        /* published after each shootdown */
static volatile unsigned unmapping;    /* set before the page is unmapped */
static volatile uint64_t shoot_va;
static volatile unsigned shoot_round;
static volatile unsigned ack[RT_VCPUS_MAX];
static volatile unsigned fault_seen[RT_VCPUS_MAX];
static volatile unsigned finished;

static void on_shoot(struct rt_frame *f)
{
    (void)f;
    invlpg(shoot_va);
    ack[rt_vcpu_id()] = shoot_round;
}

static void reader(unsigned index)
{
    irq_enable();
    for (;;) {
        unsigned r = __atomic_load_n(&round, __ATOMIC_ACQUIRE);
        if (r == DONE)
            break;
        if (r == UNMAPPED) {
            uint64_t v, e = rt_probe_read64(PAGE, &v);
            if (!fault_seen[index]) {
                CHECK(e != 0, "vcpu %u read the unmapped page: 0x%lx", index, v);
                CHECK((e & 0xffffffff) == 0, "vcpu %u: #PF error 0x%lx", index, e & 0xffffffff);
                fault_seen[index] = 1;
            }
            cpu_relax();
            continue;
        }
        uint64_t v, e = rt_probe_read64(PAGE + 8 * (r % 512), &v);
        if (e) {
            /* Only once vCPU 0 has started to unmap may the page be gone (this
             * reader may have read the round long before). */
            CHECK(__atomic_load_n(&unmapping, __ATOMIC_ACQUIRE),
                  "vcpu %u: #PF 0x%lx in round %u", index, e & 0xffffffff, r);
            continue;
        }
        CHECK(v >= r, "vcpu %u saw value %lu after round %u was published: stale translation",
              index, v, r);
    }
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
}

static uint64_t others_mask(void)
{
    return rt_vcpus_mask(rt_nr_vcpus) & ~1ull;
}

static void shoot_ipi(uint64_t va, unsigned r)
{
    shoot_va = va;
    shoot_round = r;
    invlpg(va);
    if (rt_nr_vcpus > 1)
        rt_ipi(EMU_IPI_OTHERS, VEC_SHOOT);
    for (unsigned i = 1; i < rt_nr_vcpus; i++)
        while (ack[i] != r)
            cpu_relax();
}

static void shoot_pv(uint64_t va)
{
    int rc = rt_flush(others_mask() | 1, va, 1, 0);
    CHECK(rc == EMU_HC_OK, "flush hypercall: %d", rc);
}

int guest_main(void)
{
    rt_set_handler(VEC_SHOOT, on_shoot);
    rt_printf("shootdown: vCPU 0 remaps a page %u times while %u other vCPU(s) read it\n",
              ROUNDS, rt_nr_vcpus - 1);
    uint64_t frame = rt_alloc_page();
    rt_map(PAGE, frame, PTE_W);
    round = 0;
    rt_start_others(reader);
    unsigned by_ipi = 0, by_pv = 0;
    for (unsigned r = 1; r <= ROUNDS; r++) {
        frame = rt_alloc_page();
        for (unsigned i = 0; i < 512; i++)
            ((volatile uint64_t *)frame)[i] = r;
        rt_map(PAGE, frame, PTE_W);
        if (r & 1) {
            shoot_ipi(PAGE, r);
            by_ipi++;
        } else {
            shoot_pv(PAGE);
            by_pv++;
        }
        __atomic_store_n(&round, r, __ATOMIC_RELEASE);
        CHECK(*(volatile uint64_t *)PAGE == r, "vcpu 0 reads %lu after round %u",
              *(volatile uint64_t *)PAGE, r);
        for (volatile unsigned spin = 0; spin < 200; spin++)
            ; /* let the readers read */
    }
    rt_printf("remaps: %u shot down by IPI, %u by the PV flush; no reader saw a stale page\n",
              by_ipi, by_pv);

    __atomic_store_n(&unmapping, 1, __ATOMIC_RELEASE);
    rt_unmap(PAGE);
    shoot_ipi(PAGE, ROUNDS + 1);
    __atomic_store_n(&round, UNMAPPED, __ATOMIC_RELEASE);
    for (unsigned i = 1; i < rt_nr_vcpus; i++)
        while (!fault_seen[i])
            cpu_relax();
    uint64_t v;
    CHECK(rt_probe_read64(PAGE, &v) == (1ull << 32), "vcpu 0 read the unmapped page");
    rt_printf("unmap: every vCPU faults on the page (not present)\n");
    __atomic_store_n(&round, DONE, __ATOMIC_RELEASE);
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) != rt_nr_vcpus - 1)
        cpu_relax();

    /* A page only vCPU 0 ever used: the "local" hint may flush only here. */
    uint64_t a = rt_alloc_page(), b = rt_alloc_page();
    *(volatile uint64_t *)a = 111;
    *(volatile uint64_t *)b = 222;
    rt_map(PRIVATE, a, PTE_W);
    CHECK(*(volatile uint64_t *)PRIVATE == 111, "private page before the remap");
    rt_map(PRIVATE, b, PTE_W);
    int rc = rt_flush(others_mask() | 1, PRIVATE, 1, EMU_FLUSH_LOCAL);
    CHECK(rc == EMU_HC_OK, "local flush: %d", rc);
    CHECK(*(volatile uint64_t *)PRIVATE == 222, "local flush: old value %lu",
          *(volatile uint64_t *)PRIVATE);
    rt_printf("flush with the local hint: vCPU 0 sees the new page\n");

    rc = rt_flush(others_mask(), 0, 0, EMU_FLUSH_ALL | EMU_FLUSH_ASYNC);
    CHECK(rc == EMU_HC_OK, "async flush: %d", rc);
    rc = rt_flush(1ull << 63, PRIVATE, 1, 0);
    CHECK(rt_nr_vcpus == 64 || rc == EMU_HC_EINVAL, "flush of a vCPU that does not exist: %d", rc);
    rc = rt_flush(1, PRIVATE + 1, 1, 0);
    CHECK(rc == EMU_HC_EINVAL, "flush of a misaligned address: %d", rc);
    rc = rt_flush(1, PRIVATE, 0, 0);
    CHECK(rc == EMU_HC_EINVAL, "flush of no pages: %d", rc);
    rc = rt_flush(1, PRIVATE, EMU_FLUSH_PAGES_MAX + 1, 0);
    CHECK(rc == EMU_HC_EINVAL, "flush of too many pages: %d", rc);
    rc = rt_flush(1, PRIVATE, 1, 1u << 3);
    CHECK(rc == EMU_HC_EINVAL, "flush with an unknown flag: %d", rc);
    /* Pages past the top of the address space: refused, not the machine stopped. */
    rc = rt_flush(1, 0xfffffffffffff000ul, 2, 0);
    CHECK(rc == EMU_HC_EINVAL, "local flush wrapping past 2^64: %d", rc);
    rc = rt_flush(rt_vcpus_mask(rt_nr_vcpus), 0xffffffffffffe000ul, 3, EMU_FLUSH_ASYNC);
    CHECK(rc == EMU_HC_EINVAL, "flush wrapping past 2^64: %d", rc);
    rc = rt_flush(1, 0xffffffffffffe000ul, 2, 0);
    CHECK(rc == EMU_HC_OK, "flush of the last two pages: %d", rc);
    rt_printf("async flush accepted; bad flush requests refused\n");
    rt_printf("shootdown: ok\n");
    return 0;
}
