/* SPDX-License-Identifier: MIT */
/*
 * Interrupts and the DMA engine's device page (run with --dma, 2 vCPUs):
 *
 * 1. vCPU 0 sends itself an IPI while its stack is on the device's
 *    register page, so the delivery's frame pushes reach the device model
 *    and wait for it: the interrupt must still be delivered (once), through
 *    the latch as an instruction is.
 * 2. vCPU 1 polls a device register with interrupts enabled while vCPU 0
 *    sends it an IPI: each read waits for the device model, and the IPI
 *    must still be taken within a few hundred instructions (the emulator
 *    looks at interrupts every 256 at most), not whenever a poll happens
 *    not to wait.
 */
#include "runtime.h"

#define REGS (RT_WINDOW + 0x500000)
#define VEC_SELF 40
#define VEC_POLL 41
#define POLL_BOUND 64 /* reads after the IPI (11 instructions each; 256 / 11 < 24) */
#define POLL_LIMIT 200000

volatile uint64_t saved_rsp;
volatile uint32_t self_taken;
void device_stack_handler(void);
void device_stack_done(void);

/* The handler runs on the device page's stack: take the flag and return
 * to RAM's stack without touching that one again. */
__asm__(".text\n"
        "device_stack_handler:\n"
        "  lock incl self_taken(%rip)\n"
        "  mov saved_rsp(%rip), %rsp\n"
        "  jmp device_stack_done\n");

struct gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
};

static volatile uint32_t poll_taken, poll_ready, poll_sent, poll_done, poll_reads;

static void poll_handler(struct rt_frame *f)
{
    (void)f;
    poll_taken = 1;
}

static void poller(unsigned index)
{
    (void)index;
    volatile uint64_t *r = (volatile uint64_t *)REGS;
    irq_enable();
    poll_ready = 1;
    uint32_t n = 0;
    while (!poll_taken && n < POLL_LIMIT) {
        (void)r[8]; /* the ID register */
        if (poll_sent)
            n++;
    }
    irq_disable();
    poll_reads = n;
    poll_done = 1;
}

int guest_main(void)
{
    CHECK(rt_boot->mmio_base == EMU_MMIO_BASE, "no device attached (run with --dma)");
    CHECK(rt_nr_vcpus == 2, "run with --vcpus 2");
    rt_map(REGS, rt_boot->mmio_base, PTE_W | PTE_PCD | PTE_PWT | PTE_NX);
    invlpg(REGS);

    /* 1. The stack on the device page: SRC, DST and LEN (offsets 0..0x17)
     *    read back what is written, so the frame goes below 0x30. */
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    struct gate *idt = (struct gate *)idtr.base;
    uint64_t off = (uint64_t)device_stack_handler;
    idt[VEC_SELF] = (struct gate){(uint16_t)off, EMU_SEL_CODE64, 0, 0x8e, (uint16_t)(off >> 16),
                                  (uint32_t)(off >> 32), 0};
    __asm__ volatile("  mov %%rsp, saved_rsp(%%rip)\n"
                     "  mov %0, %%rsp\n"
                     "  sti\n"
                     "  mov %1, %%eax\n"
                     "  mov %2, %%dx\n"
                     "  out %%eax, %%dx\n"
                     "  mov $5000, %%ecx\n"
                     "1: dec %%ecx\n"
                     "  jnz 1b\n"
                     "  .global device_stack_done\n"
                     "device_stack_done:\n"
                     "  cli\n"
                     "  mov saved_rsp(%%rip), %%rsp\n"
                     :
                     : "r"((uint64_t)REGS + 0x30), "i"(VEC_SELF), "i"(EMU_PORT_IPI)
                     : "rax", "rcx", "rdx", "memory", "cc");
    rt_printf("irqdev: an interrupt whose frame goes to a device page: taken %u time(s)\n",
              self_taken);

    /* 2. A vCPU polling the device takes an IPI. */
    rt_set_handler(VEC_POLL, poll_handler);
    rt_start_others(poller);
    while (!poll_ready)
        cpu_relax();
    rt_ipi(1, VEC_POLL);
    poll_sent = 1;
    while (!poll_done)
        cpu_relax();
    rt_printf("irqdev: a vCPU polling the device took an IPI within %u reads: %s\n", POLL_BOUND,
              poll_taken && poll_reads <= POLL_BOUND ? "yes" : "no");
    if (!poll_taken || poll_reads > POLL_BOUND)
        rt_printf("irqdev: (taken %u, after %u reads)\n", poll_taken, poll_reads);
    return self_taken == 1 && poll_taken && poll_reads <= POLL_BOUND ? 0 : 1;
}
