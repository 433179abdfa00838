/* SPDX-License-Identifier: MIT */
/* Test helpers for the TLB tests: a vm with test-owned RAM at gpa 0 (from
 * x86_env.h), a vCPU on it, and 4-level page-table builders.
 * Header-only: each test program includes it once. */
#ifndef VMMU_TEST_TLB_ENV_H
#define VMMU_TEST_TLB_ENV_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "x86_env.h"

#define ADDR_MASK 0x000ffffffffff000ull

struct tlb_env {
    struct x86_env env;
    struct vmmu_vcpu *vcpu;
};

/* @ram bytes of RAM in a vm @gpa_bits wide (0: the default), one vCPU. */
static inline int tlb_env_init_bits(struct tlb_env *t, uint64_t ram, unsigned gpa_bits)
{
    if (env_init_bits(&t->env, ram, NULL, gpa_bits))
        return -1;
    return vmmu_vcpu_create(t->env.vm, NULL, &t->vcpu);
}

static inline int tlb_env_init(struct tlb_env *t, uint64_t ram)
{
    return tlb_env_init_bits(t, ram, 0);
}

static inline void tlb_env_fini(struct tlb_env *t)
{
    vmmu_vcpu_destroy(t->vcpu);
    env_fini(&t->env);
}

/* Map @va at @leaf_level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) under the 4-level
 * @root, creating tables with @upper flags; returns the leaf's gpa. */
static inline uint64_t tmap(struct tlb_env *t, uint64_t root, uint64_t va, unsigned leaf_level,
                            uint64_t upper, uint64_t leaf)
{
    uint64_t table = root;
    for (unsigned level = 4; level > leaf_level; level--) {
        uint64_t at = slot9(table, va, level);
        uint64_t e = get64(&t->env, at);
        if (!(e & E_P)) {
            e = env_page(&t->env) | upper;
            put64(&t->env, at, e);
        }
        table = e & ADDR_MASK;
    }
    uint64_t at = slot9(table, va, leaf_level);
    put64(&t->env, at, leaf);
    return at;
}

/* Long mode, 4-level paging, CPL 0, with extra CR4/EFER bits. */
static inline void tlb_load(struct tlb_env *t, uint64_t cr3, uint64_t cr4_extra,
                            uint64_t efer_extra, uint64_t cr0_extra)
{
    struct vmmu_x86_regs r = regs_4level(cr3);
    r.cr4 |= cr4_extra;
    r.efer |= efer_extra;
    r.cr0 |= cr0_extra;
    assert_int_equal(vmmu_vcpu_set_state(t->vcpu, &r), 0);
}

/* Host address of guest-physical @gpa in the test RAM. */
static inline void *hpa(struct tlb_env *t, uint64_t gpa)
{
    return t->env.mem + gpa;
}

/* One access through the TLB (hit path, then slow path). */
static inline void *tacc(struct tlb_env *t, uint64_t va, unsigned size, unsigned access,
                         struct vmmu_tlb_result *res)
{
    struct vmmu_tlb_result scratch;
    return vmmu_tlb_translate(t->vcpu, va, size, access, res ? res : &scratch);
}

/* ---- The four paging modes, for the model tests ------------------------------ */

enum mmode { M32, MPAE, M4, M5, NMODES };
static const char *const mode_names[NMODES] = {"32-bit", "PAE", "4-level", "5-level"};

static inline bool mode_long(enum mmode mode)
{
    return mode >= M4;
}

/* The model tests' random stream (xorshift64). */
static inline uint64_t model_rnd(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Seeds per paging mode: the environment variable @env when it holds a
 * positive number (for a longer search), else @fallback. */
static inline unsigned model_seeds(const char *env, unsigned fallback)
{
    const char *s = getenv(env);
    long n = s ? strtol(s, NULL, 10) : 0;
    return n > 0 && n < 10000000 ? (unsigned)n : fallback;
}

/* Level of the table CR3 points at (PAE: the PDPT). */
static inline unsigned mode_top_level(enum mmode mode)
{
    static const unsigned top[NMODES] = {2, 3, 4, 5};
    return top[mode];
}

/* Where the entry for @va at @level lives in the table at @table. */
static inline uint64_t mode_slot(enum mmode mode, uint64_t table, uint64_t va, unsigned level)
{
    if (mode == M32)
        return table + 4 * ((va >> (12 + 10 * (level - 1))) & 1023);
    if (mode == MPAE && level == 3)
        return table + 8 * ((va >> 30) & 3);
    return table + 8 * ((va >> (12 + 9 * (level - 1))) & 511);
}

/* The table an entry points at. */
static inline uint64_t mode_table(enum mmode mode, uint64_t e)
{
    return e & (mode == M32 ? 0xfffff000ull : ADDR_MASK);
}

/* Flags of a non-leaf entry that points at a table (a PAE PDPTE has no
 * R/W or U/S: those bits are reserved there). */
static inline uint64_t mode_upper_flags(enum mmode mode, unsigned level)
{
    return mode == MPAE && level == 3 ? E_P : E_P | E_RW | E_US;
}

#endif /* VMMU_TEST_TLB_ENV_H */
