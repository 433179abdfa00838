/* SPDX-License-Identifier: MIT */
/*
 * allhalt: every vCPU halts with interrupts off, so nothing can wake one:
 * the machine stops (status 125 and the stop's line on stderr;
 * tests/guests/stops.sh).
 */
#include "runtime.h"

static volatile unsigned started;

__attribute__((noreturn)) static void halt_forever(unsigned index)
{
    (void)index;
    __atomic_fetch_add(&started, 1, __ATOMIC_RELEASE);
    for (;;)
        __asm__ volatile("cli\n hlt" ::: "memory");
}

int guest_main(void)
{
    rt_printf("allhalt: %u vCPUs halt with interrupts off\n", rt_nr_vcpus);
    rt_start_others(halt_forever);
    while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) != rt_nr_vcpus - 1)
        cpu_relax();
    halt_forever(0);
}
