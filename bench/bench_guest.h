/* SPDX-License-Identifier: MIT */
/* A guest for the benchmarks that need a vCPU in 4-level paging: one RAM
 * region that vmmu allocates, page tables built in it from @tables
 * upwards, and the vCPU loaded in 64-bit mode on them.  Header-only: each
 * benchmark program includes it once. */
#ifndef VMMU_BENCH_GUEST_H
#define VMMU_BENCH_GUEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmmu/vmmu.h"

struct bench {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu;
    uint8_t *ram;  /* host address of guest-physical 0 */
    uint64_t next; /* next free page-table page */
};

static inline void bench_die(const char *who, const char *what)
{
    fprintf(stderr, "%s: %s failed\n", who, what);
    exit(1);
}

/* A zeroed page for a page table. */
static inline uint64_t table_page(struct bench *b)
{
    uint64_t gpa = b->next;
    b->next += 4096;
    memset(b->ram + gpa, 0, 4096);
    return gpa;
}

/* Map the 4 KiB page @va to @gpa: present, writable, user, accessed and dirty. */
static inline void map(struct bench *b, uint64_t root, uint64_t va, uint64_t gpa)
{
    uint64_t table = root;
    for (unsigned level = 4; level > 1; level--) {
        uint64_t *e =
            (uint64_t *)(void *)(b->ram + table + 8 * ((va >> (12 + 9 * (level - 1))) & 511));
        if (!(*e & 1))
            *e = table_page(b) | 7 | 0x20;
        table = *e & 0x000ffffffffff000ull;
    }
    uint64_t *pte = (uint64_t *)(void *)(b->ram + table + 8 * ((va >> 12) & 511));
    *pte = gpa | 7 | 0x60; /* P, RW, US, A, D */
}

/* The vm, @ram_bytes of RAM at gpa 0 and a vCPU; returns an empty root table. */
static inline uint64_t bench_guest_create(struct bench *b, uint64_t ram_bytes, uint64_t tables,
                                          const char *who)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = ram_bytes};
    uint32_t id;
    struct vmmu_region_info info;
    if (vmmu_vm_create(NULL, &b->vm) || vmmu_region_add(b->vm, &d, &id) ||
        vmmu_region_info(b->vm, id, &info) || vmmu_vcpu_create(b->vm, NULL, &b->vcpu))
        bench_die(who, "setup");
    b->ram = info.host;
    b->next = tables;
    return table_page(b);
}

/* Load the vCPU in 64-bit mode (4-level paging, CR0.WP) on @root. */
static inline void bench_guest_enter(struct bench *b, uint64_t root, const char *who)
{
    struct vmmu_x86_regs r = {.cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP,
                              .cr4 = VMMU_X86_CR4_PAE,
                              .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA,
                              .cr3 = root,
                              .rflags = 2};
    if (vmmu_vcpu_set_state(b->vcpu, &r))
        bench_die(who, "set_state");
}

#endif /* VMMU_BENCH_GUEST_H */
