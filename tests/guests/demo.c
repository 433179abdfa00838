/* SPDX-License-Identifier: MIT */
/*
 * demo: the guest `make run` shows.  All vCPUs start; vCPU 0 demand-pages
 * a buffer; every vCPU counts with locked instructions into one word and
 * copies pages with REP MOVS; vCPU 0 then remaps a page the others have
 * been reading and shoots it down with IPIs and with the PV flush
 * hypercall, while the readers check that no old translation survives;
 * with a device attached (`vmmu run --dma`), vCPU 0 has the DMA engine
 * copy a page; each step checks its result and says what happened.
 */
#include "runtime.h"

#define BUF RT_WINDOW
#define BUF_PAGES 64u
#define SHARED (RT_WINDOW + 0x200000)
#define VEC_SHOOT 0x41
#define COUNT 20000u

static volatile unsigned demand_faults;
static volatile uint64_t counter;
static volatile unsigned phase, acks[RT_VCPUS_MAX], done;
static volatile uint64_t shoot_va;

#define DMA_REGS (RT_WINDOW + 0x300000)
static uint8_t dma_src[PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t dma_dst[PAGE_SIZE] __attribute__((aligned(4096)));

/* The DMA engine of tools/dmdev, if attached: copy one page, check it. */
static void dma_step(void)
{
    if (!rt_boot->mmio_base) {
        rt_printf("dma: no device attached\n");
        return;
    }
    rt_map(DMA_REGS, rt_boot->mmio_base, PTE_W | PTE_PCD | PTE_PWT | PTE_NX);
    invlpg(DMA_REGS);
    volatile uint64_t *r = (volatile uint64_t *)DMA_REGS;
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        dma_src[i] = (uint8_t)(i * 13 + 1);
    r[0] = (uint64_t)dma_src; /* SRC, DST, LEN, then CMD 1: copy */
    r[1] = (uint64_t)dma_dst;
    r[2] = PAGE_SIZE;
    r[3] = 1;
    CHECK(r[5] == 1, "dma: status %lu, error %ld", r[5], (long)r[6]);
    CHECK(!rt_memcmp(dma_src, dma_dst, PAGE_SIZE), "dma: the copy differs");
    rt_printf("dma: the device model (its own process) copied a page\n");
}

static void on_pf(struct rt_frame *f)
{
    uint64_t cr2 = read_cr2();
    CHECK(!(f->error & PF_P) && cr2 >= BUF && cr2 < BUF + BUF_PAGES * PAGE_SIZE,
          "unexpected #PF 0x%lx at 0x%lx", f->error, cr2);
    __atomic_fetch_add(&demand_faults, 1, __ATOMIC_SEQ_CST);
    rt_map(cr2 & ~(PAGE_SIZE - 1), rt_alloc_page(), PTE_W);
}

static void on_shoot(struct rt_frame *f)
{
    (void)f;
    invlpg(shoot_va);
    acks[rt_vcpu_id()] = phase;
}

static void work(unsigned index)
{
    irq_enable();
    for (unsigned i = 0; i < COUNT; i++)
        __asm__ volatile("lock incq %0" : "+m"(counter));
    /* Copy this vCPU's share of the buffer's first half into its second half. */
    unsigned n = rt_nr_vcpus, half = BUF_PAGES / 2;
    for (unsigned p = index; p < half; p += n)
        rt_memcpy((void *)(BUF + (half + p) * PAGE_SIZE), (void *)(BUF + p * PAGE_SIZE),
                  PAGE_SIZE);
    rt_barrier(n);
    /* Read the shared page (keeping its translation cached) until vCPU 0
     * says stop.  Page ph holds ph; an even phase is published after its PV
     * flush returned, an odd one before its IPI, so the value read may lag
     * behind an odd phase until this vCPU's handler acknowledged it. */
    unsigned ph;
    while ((ph = __atomic_load_n(&phase, __ATOMIC_ACQUIRE)) < 100) {
        unsigned floor = (ph & 1) && acks[index] != ph ? ph - 1 : ph;
        uint64_t v = *(volatile uint64_t *)SHARED;
        CHECK(v >= floor, "vcpu %u read %lu in phase %u: a stale translation", index, v, ph);
    }
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
}

int guest_main(void)
{
    unsigned n = rt_nr_vcpus;
    rt_set_handler(14, on_pf);
    rt_set_handler(VEC_SHOOT, on_shoot);
    rt_printf("demo: %u vCPUs, %lu MiB RAM, guest image 0x%lx-0x%lx\n", n,
              rt_boot->ram_size >> 20, rt_boot->image_start, rt_boot->image_end);

    for (unsigned p = 0; p < BUF_PAGES / 2; p++)
        for (unsigned i = 0; i < 512; i += 128)
            ((volatile uint64_t *)(BUF + p * PAGE_SIZE))[i] = p * 1000 + i;
    rt_printf("demand paging: %u pages touched, %u page faults served\n", BUF_PAGES / 2,
              demand_faults);
    uint64_t f = rt_alloc_page();
    *(volatile uint64_t *)f = 0;
    rt_map(SHARED, f, PTE_W);

    rt_start_others(work);
    rt_printf("smp: started %u other vCPU(s) through the START hypercall\n", n - 1);
    for (unsigned i = 0; i < COUNT; i++)
        __asm__ volatile("lock incq %0" : "+m"(counter));
    unsigned half = BUF_PAGES / 2;
    for (unsigned p = 0; p < half; p += n)
        rt_memcpy((void *)(BUF + (half + p) * PAGE_SIZE), (void *)(BUF + p * PAGE_SIZE),
                  PAGE_SIZE);
    rt_barrier(n);
    CHECK(counter == (uint64_t)n * COUNT, "locked counter %lu, expected %lu", counter,
          (uint64_t)n * COUNT);
    rt_printf("lock inc from every vCPU: %lu (exact)\n", counter);
    for (unsigned p = 0; p < half; p++)
        for (unsigned i = 0; i < 512; i += 128)
            CHECK(((volatile uint64_t *)(BUF + (half + p) * PAGE_SIZE))[i] == p * 1000 + i,
                  "copied page %u word %u", p, i);
    rt_printf("rep movs: %u pages copied into demand-paged memory, %u faults in all\n", half,
              demand_faults);

    for (unsigned ph = 1; ph <= 20; ph++) {
        uint64_t nf = rt_alloc_page();
        *(volatile uint64_t *)nf = ph;
        rt_map(SHARED, nf, PTE_W);
        if (ph & 1) {
            shoot_va = SHARED;
            __atomic_store_n(&phase, ph, __ATOMIC_RELEASE);
            invlpg(SHARED);
            if (n > 1)
                rt_ipi(EMU_IPI_OTHERS, VEC_SHOOT);
            for (unsigned i = 1; i < n; i++)
                while (acks[i] != ph)
                    cpu_relax();
        } else {
            CHECK(rt_flush(rt_vcpus_mask(n), SHARED, 1, 0) == EMU_HC_OK, "flush hypercall");
            __atomic_store_n(&phase, ph, __ATOMIC_RELEASE);
        }
    }
    rt_printf("shootdowns: 20 remaps of a page %u vCPU(s) read, 10 by IPI, 10 by PV flush\n",
              n - 1);
    __atomic_store_n(&phase, 100, __ATOMIC_RELEASE);
    while (__atomic_load_n(&done, __ATOMIC_SEQ_CST) != n - 1)
        cpu_relax();
    dma_step();
    rt_printf("demo: ok\n");
    return 0;
}
