/* SPDX-License-Identifier: MIT */
/* Helpers for the access tests: the TLB test environment (4-level paging,
 * test-owned RAM at gpa 0), plus an MMIO region that logs every callback
 * and a device-model region served by a test handler.
 * Header-only: each test program includes it once. */
#ifndef VMMU_TEST_ACCESS_ENV_H
#define VMMU_TEST_ACCESS_ENV_H

#include "test_tlb_env.h"
#include "vmmu/access.h"
#include "vmmu/sync.h"

#define PTE_RW (E_P | E_RW | E_A | E_D)
#define UPPER (E_P | E_RW | E_US)
#define MMIO_GPA 0x40000000ull
#define DEV_GPA 0x50000000ull

struct mmio_op {
    uint64_t offset;
    unsigned size;
    int write;
    uint64_t value;
};

struct mmio_log {
    unsigned n;
    struct mmio_op op[64];
    uint8_t mem[4096];
};

static inline int mmio_log_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct mmio_log *l = opaque;
    *value = 0;
    memcpy(value, l->mem + offset, size);
    if (l->n < 64)
        l->op[l->n++] = (struct mmio_op){offset, size, 0, *value};
    return 0;
}

static inline int mmio_log_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct mmio_log *l = opaque;
    memcpy(l->mem + offset, &value, size);
    if (l->n < 64)
        l->op[l->n++] = (struct mmio_op){offset, size, 1, value};
    return 0;
}

static const struct vmmu_mmio_ops mmio_log_ops = {mmio_log_read, mmio_log_write};

struct acc_env {
    struct tlb_env t;
    uint64_t root;
    struct mmio_log mmio;
};

/* 16 MiB of RAM in a vm @gpa_bits wide (0: the default), 4-level paging
 * with an empty root; an MMIO page at MMIO_GPA. */
static inline void acc_env_init_bits(struct acc_env *e, unsigned gpa_bits)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(tlb_env_init_bits(&e->t, 16 * MiB, gpa_bits), 0);
    e->root = env_page(&e->t.env);
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                 .mmio = &mmio_log_ops, .opaque = &e->mmio};
    assert_int_equal(vmmu_region_add(e->t.env.vm, &d, NULL), 0);
    tlb_load(&e->t, e->root, 0, 0, R_CR0_WP);
}

static inline void acc_env_init(struct acc_env *e)
{
    acc_env_init_bits(e, 0);
}

static inline void acc_env_fini(struct acc_env *e)
{
    tlb_env_fini(&e->t);
}

/* Map the 4 KiB page @va to @gpa with leaf flags @flags. */
static inline uint64_t amap(struct acc_env *e, uint64_t va, uint64_t gpa, uint64_t flags)
{
    return tmap(&e->t, e->root, va, 1, UPPER, gpa | flags);
}

static inline struct vmmu_vcpu *acc_vcpu(struct acc_env *e)
{
    return e->t.vcpu;
}

#endif /* VMMU_TEST_ACCESS_ENV_H */
