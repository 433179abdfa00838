/* SPDX-License-Identifier: MIT */
/*
 * An interpreter's memory path on vmmu's software TLB (vmmu/tlb.h).
 *
 * The program builds a guest with 4-level page tables, then runs the loads
 * and stores an interpreter's helpers would make: the inline hit test
 * first (vmmu_tlb_probe), the slow path (vmmu_tlb_fill) on a miss, and the
 * page fault the CPU raises when the slow path says so.  Then the guest
 * edits a page-table entry and invalidates it (INVLPG), and the next access
 * uses the new translation.  It prints what happened and the vCPU's TLB
 * statistics, and exits 1 if anything differs from what x86 requires.
 *
 *   cc tlb_loop.c $(pkg-config --cflags --libs vmmu) && ./a.out
 *
 * An emulator that also needs MMIO, watchpoints, atomics or the retry flow
 * of device models uses the access layer instead (vmmu/access.h, and
 * examples/insn_access.c); this is the layer under it, for the path where
 * every cycle counts.
 */
#include <inttypes.h>
#include <stdio.h>

#include <vmmu/vmmu.h>

#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD 0x3000ull
#define PT 0x4000ull
#define DATA_GPA 0x100000ull  /* 16 data pages from 1 MiB */
#define DATA_VA 0x400000ull   /* mapped at 4 MiB */
#define NPAGES 16
#define SPARE_GPA 0x200000ull /* a page the guest remaps one of them to */

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAILED: " __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                                  \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* The guest's page tables are ordinary guest memory: write them through
 * the guest-physical map, as a loader or the guest itself would. */
static void put64(struct vmmu_vm *vm, uint64_t gpa, uint64_t value)
{
    int err = vmmu_gpa_write(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "writing 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
}

static uint64_t get64(struct vmmu_vm *vm, uint64_t gpa)
{
    uint64_t value = 0;
    int err = vmmu_gpa_read(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "reading 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
    return value;
}

static uint64_t pte_gpa(uint64_t va)
{
    return PT + ((va >> 12) & 511) * 8;
}

/* What an interpreter's 8-byte load helper looks like.  Returns 0 and the
 * value, or the x86 vector to raise (the fault is in *fault). */
static int guest_load64(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t *value,
                        struct vmmu_x86_fault *fault)
{
    void *host;
    /* The hit path: a handful of instructions, inlined. */
    if (!vmmu_tlb_probe(vmmu_tlb_view(vcpu), va, 8, VMMU_TLB_READ, &host)) {
        /* The slow path walks the guest tables (or resumes from the
         * paging-structure caches), finds the page in the guest-physical
         * map and fills the TLB. */
        struct vmmu_tlb_result res;
        host = vmmu_tlb_fill(vcpu, va, 8, 0, &res);
        if (!host) {
            switch (res.status) {
            case VMMU_TLB_FAULT:
                *fault = res.fault;
                return res.fault.vector;
            case VMMU_TLB_NOT_RAM:  /* MMIO or a device model: the access layer's job */
            case VMMU_TLB_CROSSES:  /* two pages: vmmu_access_load() checks both */
            default:
                fprintf(stderr, "load at 0x%" PRIx64 ": not handled in this example\n", va);
                return -1;
            }
        }
    }
    /* A hit is naturally aligned: one load, as the CPU makes it (SDM 8.1.1:
     * another vCPU's aligned store is seen whole or not at all). */
    vmmu_guest_load(value, host, 8);
    return 0;
}

/* The store helper: the same, with the write comparator.  The write
 * comparator is filled only once the guest entry's D bit is set, so the
 * first store to a clean page takes the slow path, which sets D exactly
 * as the CPU would. */
static int guest_store64(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t value,
                         struct vmmu_x86_fault *fault)
{
    void *host;
    if (!vmmu_tlb_probe(vmmu_tlb_view(vcpu), va, 8, VMMU_TLB_WRITE, &host)) {
        struct vmmu_tlb_result res;
        host = vmmu_tlb_fill(vcpu, va, 8, VMMU_X86_ACC_WRITE, &res);
        if (!host) {
            if (res.status == VMMU_TLB_FAULT) {
                *fault = res.fault;
                return res.fault.vector;
            }
            fprintf(stderr, "store at 0x%" PRIx64 ": not handled in this example\n", va);
            return -1;
        }
    }
    vmmu_guest_store(host, &value, 8);
    return 0;
}

int main(void)
{
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu;
    struct vmmu_vm_config cfg = {.gpa_bits = 40};
    int err = vmmu_vm_create(&cfg, &vm);
    if (err) {
        fprintf(stderr, "vmmu_vm_create: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 16ull << 20};
    if ((err = vmmu_region_add(vm, &ram, NULL)) || (err = vmmu_vcpu_create(vm, NULL, &vcpu)) ||
        /* This thread runs the vCPU: its TLB is used while it is online. */
        (err = vmmu_vcpu_online(vcpu))) {
        fprintf(stderr, "setup: %s\n", vmmu_strerror(err));
        return 1;
    }

    /* 4-level tables: VA 4 MiB + i * 4 KiB -> GPA 1 MiB + i * 4 KiB,
     * present, writable, supervisor only; A set, D clear. */
    const uint64_t upper = VMMU_X86_PTE_P | VMMU_X86_PTE_RW;
    put64(vm, PML4 + 0 * 8, PDPT | upper);
    put64(vm, PDPT + 0 * 8, PD | upper);
    put64(vm, PD + 2 * 8, PT | upper); /* PDE 2 covers [4 MiB, 6 MiB) */
    for (unsigned i = 0; i < NPAGES; i++) {
        uint64_t va = DATA_VA + i * 4096ull;
        put64(vm, pte_gpa(va), (DATA_GPA + i * 4096ull) | upper | VMMU_X86_PTE_A);
        put64(vm, DATA_GPA + i * 4096ull, 1000 + i); /* each page's first word */
    }

    /* Long mode with 4-level paging, CPL 0, as a state restore sets it. */
    struct vmmu_x86_regs regs = {
        .cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP | VMMU_X86_CR0_ET,
        .cr3 = PML4,
        .cr4 = VMMU_X86_CR4_PAE,
        .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA | VMMU_X86_EFER_NXE,
        .rflags = 2,
        .cpl = 0,
    };
    if ((err = vmmu_vcpu_set_state(vcpu, &regs))) {
        fprintf(stderr, "vmmu_vcpu_set_state: %s\n", vmmu_strerror(err));
        return 1;
    }

    /* 1. Sum the first word of every page, ten times: 16 misses, then hits. */
    struct vmmu_x86_fault fault;
    uint64_t sum = 0, value;
    for (unsigned round = 0; round < 10; round++)
        for (unsigned i = 0; i < NPAGES; i++) {
            int vec = guest_load64(vcpu, DATA_VA + i * 4096ull, &value, &fault);
            CHECK(vec == 0, "load of page %u raised vector %d", i, vec);
            sum += value;
        }
    uint64_t want = 0;
    for (unsigned i = 0; i < NPAGES; i++)
        want += 10 * (1000 + i);
    printf("sum of 10 rounds over %d pages: %" PRIu64 " (expected %" PRIu64 ")\n", NPAGES, sum,
           want);
    CHECK(sum == want, "wrong sum");

    /* 2. A store to a clean page sets the D bit of its PTE (the CPU does,
     *    and a later store must hit). */
    uint64_t va3 = DATA_VA + 3 * 4096ull + 8;
    CHECK(guest_store64(vcpu, va3, 0xabcdef, &fault) == 0, "store faulted");
    uint64_t pte3 = get64(vm, pte_gpa(va3));
    printf("store to page 3: PTE now 0x%" PRIx64 " (D %s)\n", pte3,
           (pte3 & VMMU_X86_PTE_D) ? "set" : "clear");
    CHECK(pte3 & VMMU_X86_PTE_D, "D not set by the store");
    CHECK(get64(vm, DATA_GPA + 3 * 4096ull + 8) == 0xabcdef, "store did not reach guest memory");

    /* 3. A page that is not mapped: #PF, error code 0 (not present, read,
     *    supervisor), CR2 the address. */
    uint64_t unmapped = DATA_VA + NPAGES * 4096ull + 0x10;
    int vec = guest_load64(vcpu, unmapped, &value, &fault);
    printf("load at 0x%" PRIx64 ": vector %d, error code 0x%x, CR2 0x%" PRIx64 "\n", unmapped,
           vec, fault.error_code, fault.cr2);
    CHECK(vec == VMMU_X86_VEC_PF && fault.error_code == 0 && fault.cr2 == unmapped,
          "expected #PF(0) at the unmapped page");

    /* 4. A write to a read-only page: #PF with P and W set.  The guest
     *    clears RW in page 5's PTE and invalidates it. */
    uint64_t va5 = DATA_VA + 5 * 4096ull;
    put64(vm, pte_gpa(va5), get64(vm, pte_gpa(va5)) & ~VMMU_X86_PTE_RW);
    vmmu_vcpu_invlpg(vcpu, va5);
    vec = guest_store64(vcpu, va5, 1, &fault);
    printf("store to read-only page 5: vector %d, error code 0x%x\n", vec, fault.error_code);
    CHECK(vec == VMMU_X86_VEC_PF && fault.error_code == (VMMU_X86_PF_P | VMMU_X86_PF_W),
          "expected #PF(P|W)");

    /* 5. The guest points page 7 somewhere else.  Until it invalidates, the
     *    TLB may still answer with the old page (x86 allows it, and vmmu
     *    does: the entry is cached); after INVLPG the new page is used. */
    uint64_t va7 = DATA_VA + 7 * 4096ull;
    put64(vm, SPARE_GPA, 4242);
    put64(vm, pte_gpa(va7), SPARE_GPA | upper | VMMU_X86_PTE_A);
    guest_load64(vcpu, va7, &value, &fault);
    printf("page 7 after the PTE edit, before INVLPG: %" PRIu64 " (the cached translation)\n",
           value);
    CHECK(value == 1007, "the cached translation should still answer");
    vmmu_vcpu_invlpg(vcpu, va7);
    guest_load64(vcpu, va7, &value, &fault);
    printf("page 7 after INVLPG: %" PRIu64 "\n", value);
    CHECK(value == 4242, "INVLPG did not drop the old translation");

    /* What the TLB did. */
    struct vmmu_tlb_stats st;
    vmmu_vcpu_stats(vcpu, &st);
    printf("TLB: %" PRIu64 " misses, %" PRIu64 " walks (%" PRIu64
           " resumed from the paging-structure caches), %" PRIu64 " fills, %" PRIu64
           " faults, %" PRIu64 " single-page flushes\n",
           st.misses, st.walks, st.psc_hits, st.fills, st.faults, st.flush_page);
    CHECK(st.misses < 10 * NPAGES, "every load missed: the TLB kept nothing");

    vmmu_vcpu_destroy(vcpu);
    vmmu_vm_destroy(vm);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
