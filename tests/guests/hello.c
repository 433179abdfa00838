/* SPDX-License-Identifier: MIT */
/* hello: the smallest guest: one line from every vCPU, in order, each
 * vCPU first checking the machine's ports it reads (abi.h). */
#include "runtime.h"

static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

#define UNUSED_PORT 0x600 /* nothing answers: an empty bus */

/* The vCPU's id and the vCPU count (a byte read takes the low byte); the
 * UART's line status says its transmitter is empty; an unused port reads
 * all ones at every width. */
static void check_ports(unsigned index)
{
    CHECK(inl(EMU_PORT_VCPU_ID) == index, "vcpu %u: the id port says %u", index,
          inl(EMU_PORT_VCPU_ID));
    CHECK(inl(EMU_PORT_NR_VCPUS) == rt_nr_vcpus && inb(EMU_PORT_NR_VCPUS) == (rt_nr_vcpus & 0xff),
          "vcpu %u: the vCPU count port says %u", index, inl(EMU_PORT_NR_VCPUS));
    CHECK((inb(EMU_PORT_SERIAL_LSR) & 0x60) == 0x60, "vcpu %u: the UART's line status is 0x%x",
          index, inb(EMU_PORT_SERIAL_LSR));
    CHECK(inb(UNUSED_PORT) == 0xff && inw(UNUSED_PORT) == 0xffff && inl(UNUSED_PORT) == ~0u,
          "vcpu %u: an unused port reads 0x%x", index, inl(UNUSED_PORT));
}

static volatile unsigned turn;

static void say(unsigned index)
{
    check_ports(index);
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
