/* SPDX-License-Identifier: MIT */
/*
 * late_ipis: every vCPU but 0 sends vCPU 0 IPIs without end, and vCPU 0
 * exits the run while they do.  IPIs that were on their way when the
 * machine stopped reach vCPU 0 after its thread has ended, and perhaps
 * after the run has joined it: the backend must not signal a thread that
 * is gone (late_ipis.sh runs this many times with freed thread stacks
 * unmapped at once).
 */
#include "runtime.h"

#define VEC 0x42

static volatile unsigned taken;

static void on_ipi(struct rt_frame *f)
{
    (void)f;
    taken++;
}

static void sender(unsigned index)
{
    (void)index;
    for (;;)
        rt_ipi(0, VEC);
}

int guest_main(void)
{
    rt_set_handler(VEC, on_ipi);
    rt_printf("late_ipis: vCPU 0 exits while %u other vCPU(s) send it IPIs\n", rt_nr_vcpus - 1);
    irq_enable();
    rt_start_others(sender);
    /* Until the IPIs come, and a little longer. */
    while (rt_nr_vcpus > 1 && taken == 0)
        cpu_relax();
    for (volatile unsigned i = 0; i < 1000; i++)
        ;
    return 0;
}
