/* SPDX-License-Identifier: MIT */
/*
 * flushes: every vCPU makes synchronous PV flushes of every vCPU at the
 * same moment, round after round (a barrier lines them up), so that each
 * caller waits for targets that are themselves waiting in their own
 * flush.  A backend whose waiting caller does not act on the flushes aimed
 * at it never returns from such a round.  Then the same with the vCPUs'
 * flushes meeting IPIs and halts: the odd vCPUs halt between rounds and
 * are woken by an IPI from their even neighbour, which flushes them while
 * they sleep.
 */
#include "runtime.h"

#define PAGE (RT_WINDOW + 0x300000)
#define ROUNDS 100u
#define VEC_WAKE 0x41

static volatile unsigned woken[RT_VCPUS_MAX];

static void on_wake(struct rt_frame *f)
{
    (void)f;
    woken[rt_vcpu_id()]++;
}

static void flush_all(unsigned index, unsigned r)
{
    int rc = rt_flush(rt_vcpus_mask(rt_nr_vcpus), PAGE, 1, 0);
    CHECK(rc == EMU_HC_OK, "vcpu %u: flush in round %u: %d", index, r, rc);
}

/* Every vCPU flushes every vCPU at once. */
static void together(unsigned index)
{
    for (unsigned r = 0; r < ROUNDS; r++) {
        rt_barrier(rt_nr_vcpus);
        flush_all(index, r);
    }
    rt_barrier(rt_nr_vcpus);
}

/* An odd vCPU halts with interrupts on until its even neighbour's IPI; the
 * neighbour flushes every vCPU, the sleeper included, before it sends it. */
static void with_halts(unsigned index)
{
    bool odd = index & 1, has_sleeper = !odd && index + 1 < rt_nr_vcpus;
    for (unsigned r = 0; r < ROUNDS; r++) {
        /* Before the barrier: the IPI may come as soon as it is passed. */
        unsigned seen = woken[index];
        rt_barrier(rt_nr_vcpus);
        if (odd) {
            irq_disable();
            while (woken[index] == seen) {
                __asm__ volatile("sti; hlt; cli" ::: "memory");
            }
            irq_enable();
        } else {
            flush_all(index, r);
            if (has_sleeper)
                rt_ipi(index + 1, VEC_WAKE);
        }
    }
    rt_barrier(rt_nr_vcpus);
}

static void (*phase)(unsigned index);
static volatile unsigned phase_no;

static void worker(unsigned index)
{
    irq_enable();
    for (unsigned p = 1; p <= 2; p++) {
        while (__atomic_load_n(&phase_no, __ATOMIC_ACQUIRE) < p)
            cpu_relax();
        phase(index);
    }
}

int guest_main(void)
{
    rt_set_handler(VEC_WAKE, on_wake);
    rt_map(PAGE, rt_alloc_page(), PTE_W);
    irq_enable();
    rt_start_others(worker);
    phase = together;
    __atomic_store_n(&phase_no, 1, __ATOMIC_RELEASE);
    together(0);
    rt_printf("flushes: every vCPU flushed every vCPU at once, %u rounds\n", ROUNDS);
    phase = with_halts;
    __atomic_store_n(&phase_no, 2, __ATOMIC_RELEASE);
    with_halts(0);
    for (unsigned i = 1; i < rt_nr_vcpus; i += 2)
        CHECK(woken[i] == ROUNDS, "vcpu %u woken %u times, want %u", i, woken[i], ROUNDS);
    rt_printf("flushes: the same with halted targets woken by IPIs, %u rounds\n", ROUNDS);
    rt_printf("flushes: ok\n");
    return 0;
}
