/* SPDX-License-Identifier: MIT */
/* hello: the smallest guest: one line from every vCPU, in order. */
#include "runtime.h"

static volatile unsigned turn;

static void say(unsigned index)
{
    while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != index)
        cpu_relax();
    rt_printf("hello from vcpu %u\n", index);
    __atomic_store_n(&turn, index + 1, __ATOMIC_RELEASE);
}

int guest_main(void)
{
    rt_printf("hello: %u vCPUs, %lu MiB of RAM\n", rt_nr_vcpus, rt_boot->ram_size >> 20);
    rt_start_others(say);
    say(0);
    while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != rt_nr_vcpus)
        cpu_relax();
    rt_printf("hello: done\n");
    return 0;
}
