/* SPDX-License-Identifier: MIT */
/* Test helpers for the x86 paging tests: a vm with one RAM region at gpa 0
 * whose memory the test owns (so it can read and write entries directly),
 * a bump allocator for page-table pages, and entry accessors.
 * Header-only: each test program includes it once. */
#ifndef VMMU_TEST_X86_ENV_H
#define VMMU_TEST_X86_ENV_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmmu/vmmu.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* Entry bits, spelled out so the tests do not depend on the walker's names. */
#define E_P (1ull << 0)
#define E_RW (1ull << 1)
#define E_US (1ull << 2)
#define E_PWT (1ull << 3)
#define E_PCD (1ull << 4)
#define E_A (1ull << 5)
#define E_D (1ull << 6)
#define E_PS (1ull << 7)
#define E_G (1ull << 8)
#define E_NX (1ull << 63)

/* Control-register bits, spelled out likewise. */
#define R_CR0_PE (1ull << 0)
#define R_CR0_WP (1ull << 16)
#define R_CR0_AM (1ull << 18)
#define R_CR0_PG (1ull << 31)
#define R_CR4_PSE (1ull << 4)
#define R_CR4_PAE (1ull << 5)
#define R_CR4_PGE (1ull << 7)
#define R_CR4_LA57 (1ull << 12)
#define R_CR4_PCIDE (1ull << 17)
#define R_CR4_SMEP (1ull << 20)
#define R_CR4_SMAP (1ull << 21)
#define R_CR4_PKE (1ull << 22)
#define R_CR4_PKS (1ull << 24)
#define R_EFER_LME (1ull << 8)
#define R_EFER_LMA (1ull << 10)
#define R_EFER_NXE (1ull << 11)
#define R_RFLAGS_AC (1ull << 18)

struct x86_env {
    struct vmmu_vm *vm;
    uint8_t *mem;   /* host memory of the RAM region at gpa 0 */
    uint64_t size;  /* its size */
    uint64_t next;  /* next free page for env_page() */
    uint32_t ram_id;
    struct vmmu_x86_paging pg;
};

/* Create the vm (gpa width 52) with @ram_size bytes of RAM at gpa 0, and a
 * paging state for @cpu (NULL: all features, Intel, MAXPHYADDR 40).
 * Page-table pages are handed out from gpa 0x1000 upwards. */
/* RAM at gpa 0 in a vm @gpa_bits wide (0: the default width). */
static inline int env_init_bits(struct x86_env *env, uint64_t ram_size,
                                const struct vmmu_x86_cpu *cpu, unsigned gpa_bits)
{
    memset(env, 0, sizeof(*env));
    struct vmmu_vm_config cfg = {.gpa_bits = gpa_bits};
    int rc = vmmu_vm_create(&cfg, &env->vm);
    if (rc)
        return rc;
    env->mem = aligned_alloc(4096, ram_size);
    if (!env->mem)
        return VMMU_ENOMEM;
    memset(env->mem, 0, ram_size);
    env->size = ram_size;
    env->next = 0x1000;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = ram_size,
                                 .host = env->mem, .name = "ram"};
    rc = vmmu_region_add(env->vm, &d, &env->ram_id);
    if (rc)
        return rc;
    return vmmu_x86_paging_init(&env->pg, env->vm, cpu);
}

static inline int env_init(struct x86_env *env, uint64_t ram_size, const struct vmmu_x86_cpu *cpu)
{
    return env_init_bits(env, ram_size, cpu, 0);
}

static inline void env_fini(struct x86_env *env)
{
    vmmu_vm_destroy(env->vm);
    free(env->mem);
}

/* A zeroed 4 KiB page of RAM for a page table; returns its gpa. */
static inline uint64_t env_page(struct x86_env *env)
{
    uint64_t gpa = env->next;
    env->next += 4096;
    if (env->next > env->size)
        abort(); /* a test asked for more tables than it gave RAM */
    memset(env->mem + gpa, 0, 4096);
    return gpa;
}

static inline void put64(struct x86_env *env, uint64_t gpa, uint64_t value)
{
    memcpy(env->mem + gpa, &value, 8);
}

static inline uint64_t get64(const struct x86_env *env, uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, env->mem + gpa, 8);
    return v;
}

static inline void put32(struct x86_env *env, uint64_t gpa, uint32_t value)
{
    memcpy(env->mem + gpa, &value, 4);
}

static inline uint32_t get32(const struct x86_env *env, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, env->mem + gpa, 4);
    return v;
}

/* Index of @va in a table of 512 entries at @level (1 = PT). */
static inline uint64_t idx9(uint64_t va, unsigned level)
{
    return (va >> (12 + 9 * (level - 1))) & 511;
}

/* Where the entry for @va lives in the 8-byte table at @table. */
static inline uint64_t slot9(uint64_t table, uint64_t va, unsigned level)
{
    return table + 8 * idx9(va, level);
}

/* Register values for 4-level paging (CR0.PE|PG, CR4.PAE, EFER.LME|LMA). */
static inline struct vmmu_x86_regs regs_4level(uint64_t cr3)
{
    struct vmmu_x86_regs r = {0};
    r.cr0 = R_CR0_PE | R_CR0_PG;
    r.cr4 = R_CR4_PAE;
    r.efer = R_EFER_LME | R_EFER_LMA;
    r.cr3 = cr3;
    r.rflags = 2;
    return r;
}

/* MMIO callbacks that count their calls (a walk or a PDPTE load must
 * never run them); reads answer x86_env_mmio_value. */
static __attribute__((unused)) unsigned x86_env_mmio_calls;
static __attribute__((unused)) uint64_t x86_env_mmio_value;
static inline int x86_env_count_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    x86_env_mmio_calls++;
    *value = x86_env_mmio_value;
    return 0;
}
static inline int x86_env_count_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    (void)value;
    x86_env_mmio_calls++;
    return 0;
}
static const struct vmmu_mmio_ops x86_env_counting_mmio __attribute__((unused)) = {x86_env_count_read,
                                                           x86_env_count_write};

#endif /* VMMU_TEST_X86_ENV_H */
