/* SPDX-License-Identifier: MIT */
/*
 * halt: a token passed around the vCPUs by IPI, each waiting for it in
 * HLT.  The holder hands it on and halts at once, while the vCPU it woke
 * may not have run yet: the machine must not take that moment, when
 * every vCPU is in HLT but one has an interrupt on its way, for every
 * vCPU halted with nothing to wake one (which stops the run).  At the end
 * every vCPU has held the token the same number of times.
 */
#include "runtime.h"

#define VEC_TOKEN 0x42
#define PASSES 6000u

static volatile unsigned token, passes, left, held[RT_VCPUS_MAX];

static void on_token(struct rt_frame *f)
{
    (void)f;
}

static void play(unsigned me)
{
    unsigned n = rt_nr_vcpus, next = (me + 1) % n;
    for (;;) {
        irq_disable();
        while (token != me)
            __asm__ volatile("sti; hlt; cli" ::: "memory");
        bool last = passes >= PASSES;
        if (!last) {
            passes++;
            held[me]++;
        }
        token = next;
        rt_ipi(next, VEC_TOKEN);
        if (last) {
            /* Each vCPU leaves the first time it sees the count reached. */
            __atomic_fetch_add(&left, 1, __ATOMIC_SEQ_CST);
            return;
        }
    }
}

int guest_main(void)
{
    unsigned n = rt_nr_vcpus;
    rt_set_handler(VEC_TOKEN, on_token);
    rt_printf("halt: a token passed %u times around the vCPUs, each waiting in HLT\n", PASSES);
    if (n == 1) {
        rt_printf("one vCPU: nothing to pass the token to\n");
        rt_printf("halt: ok\n");
        return 0;
    }
    rt_start_others(play);
    play(0);
    while (__atomic_load_n(&left, __ATOMIC_SEQ_CST) != n)
        cpu_relax();
    for (unsigned i = 0; i < n; i++)
        CHECK(held[i] == PASSES / n + (i < PASSES % n), "vcpu %u held the token %u times", i,
              held[i]);
    rt_printf("every vCPU held the token its share of the times\n");
    rt_printf("halt: ok\n");
    return 0;
}
