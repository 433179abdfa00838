/* SPDX-License-Identifier: MIT */
/*
 * start: the START hypercall.  Each vCPU starts with the RIP, RSP, RDI,
 * RSI (its index) and CR3 its START named, even while the starter keeps
 * asking to start it again with other values until it runs (each asking
 * refused with EBUSY, changing nothing); START of vCPU 0, of a vCPU the
 * machine lacks, an unknown hypercall, are refused; a hypercall block at
 * a misaligned address is ignored.
 */
#include "runtime.h"

#define WILD_RIP 0xdead0000ul
#define WILD_CR3 0x7ff0000000001000ul /* bits above any MAXPHYADDR: no vCPU boots with it */
#define ARG(i) (0x5a5a000000000000ul | (i))

static struct emu_hypercall hc __attribute__((aligned(8)));
static uint8_t odd_block[sizeof(struct emu_hypercall) + 8] __attribute__((aligned(8)));

static volatile uint64_t seen_arg[RT_VCPUS_MAX], seen_index[RT_VCPUS_MAX], seen_rsp[RT_VCPUS_MAX],
    seen_cr3[RT_VCPUS_MAX];
static volatile uint32_t seen[RT_VCPUS_MAX];

static int call(struct emu_hypercall *h)
{
    h->result = 1;
    outl(EMU_PORT_HYPERCALL, (uint32_t)(uint64_t)h);
    return ((volatile struct emu_hypercall *)h)->result;
}

/* Where each vCPU starts: RDI is the argument, RSI the index, RSP the stack. */
void start_ap(uint64_t arg, uint64_t index, uint64_t rsp);
void start_ap(uint64_t arg, uint64_t index, uint64_t rsp)
{
    if (index < RT_VCPUS_MAX) {
        seen_arg[index] = arg;
        seen_index[index] = index;
        seen_rsp[index] = rsp;
        seen_cr3[index] = read_cr3();
        __atomic_store_n(&seen[index], 1, __ATOMIC_RELEASE);
    }
    for (;;)
        __asm__ volatile("cli; hlt");
}
void start_entry(void);
__asm__(".globl start_entry\nstart_entry:\n mov %rsp, %rdx\n call start_ap\n1: hlt\n jmp 1b\n");

int guest_main(void)
{
    unsigned n = rt_nr_vcpus;
    rt_printf("start: %u vCPUs\n", n);

    hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = 0, .rip = WILD_RIP};
    CHECK(call(&hc) == EMU_HC_EINVAL, "START of vcpu 0: %d", hc.result);
    hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = n, .rip = WILD_RIP};
    CHECK(call(&hc) == EMU_HC_EINVAL, "START of vcpu %u of %u: %d", n, n, hc.result);
    hc = (struct emu_hypercall){.op = 77};
    CHECK(call(&hc) == EMU_HC_EINVAL, "unknown hypercall: %d", hc.result);
    struct emu_hypercall *odd = (struct emu_hypercall *)(odd_block + 4);
    *odd = (struct emu_hypercall){.op = EMU_HC_FLUSH, .vcpu_mask = 1, .va = 0, .count = 1};
    CHECK(call(odd) == 1, "a misaligned hypercall block was answered: %d", odd->result);
    if (n > 1) {
        /* Refused before it counts as a start: the START below still works. */
        hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = 1, .rip = WILD_RIP,
                                    .cr3 = 1ul << EMU_START_CR3_BITS};
        CHECK(call(&hc) == EMU_HC_EINVAL, "START with a CR3 above MAXPHYADDR: %d", hc.result);
    }
    rt_printf("refused: vcpu 0, a vcpu beyond the last, an unknown call, a CR3 above "
              "MAXPHYADDR; a misaligned block ignored\n");

    unsigned busy = 0;
    for (unsigned i = 1; i < n; i++) {
        uint64_t stack = rt_alloc_page() + PAGE_SIZE;
        uint64_t cr3 = rt_clone_pml4();
        hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = i, .rip = (uint64_t)start_entry,
                                    .rsp = stack, .arg = ARG(i), .cr3 = cr3};
        CHECK(call(&hc) == EMU_HC_OK, "START of vcpu %u: %d", i, hc.result);
        /* Ask again, with values no vCPU could run with, until it runs. */
        do {
            hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = i, .rip = WILD_RIP,
                                        .rsp = 0, .arg = 0, .cr3 = WILD_CR3};
            CHECK(call(&hc) == EMU_HC_EBUSY, "second START of vcpu %u: %d", i, hc.result);
            busy++;
        } while (!__atomic_load_n(&seen[i], __ATOMIC_ACQUIRE));
        CHECK(seen_arg[i] == ARG(i) && seen_index[i] == i && seen_rsp[i] == stack &&
                  seen_cr3[i] == cr3,
              "vcpu %u started with rdi 0x%lx rsi %lu rsp 0x%lx cr3 0x%lx", i, seen_arg[i],
              seen_index[i], seen_rsp[i], seen_cr3[i]);
    }
    CHECK(n == 1 || busy >= n - 1, "busy %u", busy);
    rt_printf("every other vCPU started as its first START said; the repeats refused\n");
    rt_printf("start: ok\n");
    return 0;
}
