/* SPDX-License-Identifier: MIT */
/* Helpers for the sync tests: a vm whose page tables live in test-owned
 * RAM at gpa 0 (x86_env.h) plus a vmmu-allocated (memfd) RAM region of
 * data pages at DATA_GPA, and vCPUs in 4-level paging that map
 * DATA_VA + i * 4 KiB to data page i.  Header-only. */
#ifndef VMMU_TEST_SYNC_ENV_H
#define VMMU_TEST_SYNC_ENV_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "x86_env.h"

#define DATA_GPA (1ull << 30)
#define DATA_VA 0x40000000000ull
#define SE_ADDR_MASK 0x000ffffffffff000ull

struct sync_env {
    struct x86_env env;
    uint64_t root;     /* PML4 gpa */
    uint64_t pt;       /* the page table that maps DATA_VA .. + 2 MiB */
    uint32_t data_id;  /* the data region */
    uint64_t npages;
};

/* Build the vm, the data region (@npages pages, each page's first 8 bytes
 * hold its own gpa) and page tables mapping them. */
static inline void sync_env_init(struct sync_env *s, uint64_t npages)
{
    assert_true(npages <= 512);
    assert_int_equal(env_init(&s->env, 4 * MiB, NULL), 0);
    s->npages = npages;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA,
                                 .size = npages * 4096, .name = "data"};
    assert_int_equal(vmmu_region_add(s->env.vm, &d, &s->data_id), 0);
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t gpa = DATA_GPA + i * 4096;
        assert_int_equal(vmmu_gpa_write(s->env.vm, gpa, &gpa, 8, 0, NULL), 0);
    }
    s->root = env_page(&s->env);
    uint64_t upper = E_P | E_RW | E_US | E_A;
    uint64_t table = s->root;
    for (unsigned level = 4; level > 1; level--) {
        uint64_t at = slot9(table, DATA_VA, level);
        uint64_t e = env_page(&s->env) | upper;
        put64(&s->env, at, e);
        table = e & SE_ADDR_MASK;
    }
    s->pt = table;
    for (uint64_t i = 0; i < npages; i++)
        put64(&s->env, slot9(s->pt, DATA_VA + i * 4096, 1),
              (DATA_GPA + i * 4096) | E_P | E_RW | E_US | E_A | E_D);
}

/* Data page @i still holds what sync_env_init() put there: its gpa. */
static inline void sync_data_intact(struct sync_env *s, uint64_t i)
{
    uint64_t x = 0;
    assert_int_equal(vmmu_gpa_read(s->env.vm, DATA_GPA + i * 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(x, DATA_GPA + i * 4096);
}

/* Point the PTE of page @i of DATA_VA at data page @target. */
static inline void sync_env_remap(struct sync_env *s, uint64_t i, uint64_t target)
{
    uint64_t at = slot9(s->pt, DATA_VA + i * 4096, 1);
    __atomic_store_n((uint64_t *)(void *)(s->env.mem + at),
                     (DATA_GPA + target * 4096) | E_P | E_RW | E_US | E_A | E_D,
                     __ATOMIC_RELEASE);
}

static inline void sync_env_fini(struct sync_env *s)
{
    env_fini(&s->env);
}

/* A vCPU in 4-level paging on the env's page tables. */
static inline struct vmmu_vcpu *sync_vcpu(struct sync_env *s)
{
    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vcpu_create(s->env.vm, NULL, &v), 0);
    struct vmmu_x86_regs r = regs_4level(s->root);
    assert_int_equal(vmmu_vcpu_set_state(v, &r), 0);
    return v;
}

/* Read the identity word of the page DATA_VA + i * 4 KiB maps, through the
 * vCPU's TLB; UINT64_MAX if the translation failed. */
static inline uint64_t sync_read(struct vmmu_vcpu *v, uint64_t i)
{
    struct vmmu_tlb_result res;
    void *h = vmmu_tlb_translate(v, DATA_VA + i * 4096, 8, 0, &res);
    if (!h)
        return UINT64_MAX;
    return __atomic_load_n((uint64_t *)h, __ATOMIC_RELAXED);
}

/* 1 if the inline hit path serves page @i of DATA_VA for a read. */
static inline int sync_hits(struct vmmu_vcpu *v, uint64_t i)
{
    return vmmu_tlb_lookup_read(v, DATA_VA + i * 4096, 8) != NULL;
}

#endif /* VMMU_TEST_SYNC_ENV_H */
