/* x86 page walks, one behaviour per test: each paging mode, reserved bits
 * by level and MAXPHYADDR, PS per level, canonical checks, CR2, the walk
 * record (levels, rights, global, PCID, PAT, key), the entry read policy
 * (holes, MMIO, ROM, paged-out pages), and when A/D bits are written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "p2m/p2m_internal.h"
#include "x86/x86_internal.h"
#include "x86_env.h"

#define PF_P 0x01u
#define PF_W 0x02u
#define PF_U 0x04u
#define PF_RSVD 0x08u
#define PF_I 0x10u

static const uint64_t PRW = E_P | E_RW;
static const uint64_t PRWU = E_P | E_RW | E_US;

/* Build (or reuse) 8-byte tables from @root down to @leaf_level for @va and
 * store @leaf there; intermediate entries get @upper flags.  Returns the
 * gpa of the leaf entry. */
static uint64_t map8(struct x86_env *env, uint64_t root, unsigned top, uint64_t va,
                     unsigned leaf_level, uint64_t upper, uint64_t leaf)
{
    uint64_t table = root;
    for (unsigned level = top; level > leaf_level; level--) {
        uint64_t at = slot9(table, va, level);
        uint64_t e = get64(env, at);
        if (!(e & E_P)) {
            e = env_page(env) | upper;
            put64(env, at, e);
        }
        table = e & 0x000ffffffffff000ull;
    }
    uint64_t at = slot9(table, va, leaf_level);
    put64(env, at, leaf);
    return at;
}

struct fixture {
    struct x86_env env;
    uint64_t root;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || env_init(&f->env, 1 * MiB, NULL))
        return -1;
    f->root = env_page(&f->env);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    env_fini(&f->env);
    free(f);
    return 0;
}

static void load(struct fixture *f, struct vmmu_x86_regs r)
{
    assert_int_equal(vmmu_x86_set_state(&f->env.pg, &r), 0);
}

static struct vmmu_x86_walk walk(struct fixture *f, uint64_t va, unsigned access)
{
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk(&f->env.pg, va, access, &w), 0);
    return w;
}

static void assert_pf(const struct vmmu_x86_walk *w, uint32_t error_code)
{
    assert_false(w->ok);
    assert_int_equal(w->fault.vector, VMMU_X86_VEC_PF);
    assert_int_equal(w->fault.error_code, error_code);
}

/* ---- Modes --------------------------------------------------------------- */

static void paging_off_maps_linear_to_physical_with_32_bit_addresses(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_walk w = walk(f, 0x123456789abcull, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(w.mode, VMMU_X86_MODE_NONE);
    assert_int_equal(w.gpa, 0x56789abcull);
    assert_int_equal(w.nlevels, 0);
}

static struct vmmu_x86_regs regs_32(uint64_t cr3, uint64_t cr4)
{
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = cr3, .cr4 = cr4, .rflags = 2};
    return r;
}

static void paging_32bit_translates_4k_page_through_pde_and_pte(void **state)
{
    struct fixture *f = *state;
    uint64_t pt = env_page(&f->env);
    uint64_t va = 0x00c03456; /* PDE 3, PTE 3 */
    put32(&f->env, f->root + 4 * 3, (uint32_t)(pt | PRWU));
    put32(&f->env, pt + 4 * 3, (uint32_t)(0x9000 | PRWU));
    load(f, regs_32(f->root, 0));
    struct vmmu_x86_walk w = walk(f, va, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(w.mode, VMMU_X86_MODE_32);
    assert_int_equal(w.gpa, 0x9456);
    assert_int_equal(w.page_size, 4096);
    assert_int_equal(w.nlevels, 2);
    assert_int_equal(w.levels[0].size, 4);
    /* 4-byte entries receive A (and D on the leaf) without touching neighbours. */
    assert_int_equal(get32(&f->env, f->root + 12), (uint32_t)(pt | PRWU | E_A));
    assert_int_equal(get32(&f->env, pt + 12), (uint32_t)(0x9000 | PRWU | E_A | E_D));
    assert_int_equal(get32(&f->env, pt + 16), 0);
}

static void paging_32bit_maps_4m_page_when_cr4_pse_is_set(void **state)
{
    struct fixture *f = *state;
    put32(&f->env, f->root + 4 * 1, (uint32_t)(0x00800000 | PRWU | E_PS));
    load(f, regs_32(f->root, R_CR4_PSE));
    struct vmmu_x86_walk w = walk(f, 0x00512345, 0);
    assert_true(w.ok);
    assert_int_equal(w.page_size, 4 * MiB);
    assert_int_equal(w.gpa, 0x00912345);
}

static void paging_32bit_ignores_pde_ps_without_cr4_pse(void **state)
{
    struct fixture *f = *state;
    uint64_t pt = env_page(&f->env);
    put32(&f->env, f->root + 4 * 1, (uint32_t)(pt | PRWU | E_PS));
    put32(&f->env, pt + 4 * 0x112, (uint32_t)(0x7000 | PRWU));
    load(f, regs_32(f->root, 0));
    struct vmmu_x86_walk w = walk(f, 0x00512345, 0);
    assert_true(w.ok);
    assert_int_equal(w.page_size, 4096);
    assert_int_equal(w.gpa, 0x7345);
}

static void paging_32bit_pse36_maps_4m_page_above_4g(void **state)
{
    struct fixture *f = *state;
    /* PDE bits 20:13 hold physical bits 39:32: 0x12 -> 0x12_0000_0000. */
    put32(&f->env, f->root, (uint32_t)(0x00400000 | (0x12u << 13) | PRWU | E_PS));
    load(f, regs_32(f->root, R_CR4_PSE));
    struct vmmu_x86_walk w = walk(f, 0x00000042, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x1200400042ull);
}

static void paging_32bit_pse36_bits_beyond_maxphyaddr_are_reserved(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL, .maxphyaddr = 36};
    assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
    /* With MAXPHYADDR 36, physical bits 39:36 (PDE bits 20:17) are reserved. */
    put32(&f->env, f->root, (uint32_t)(0x00400000 | (1u << 17) | PRWU | E_PS));
    load(f, regs_32(f->root, R_CR4_PSE));
    struct vmmu_x86_walk w = walk(f, 0x42, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

/* SDM 4.3, Table 4-4: PSE-36 addresses at most 40 bits, so with MAXPHYADDR
 * above 40 bits 20:13 of a 4 MiB PDE are all address bits (39:32) and bit
 * 21 stays reserved. */
static void paging_32bit_pse36_above_maxphyaddr_40_maps_bits_20_13_and_reserves_bit21(void **state)
{
    struct fixture *f = *state;
    static const unsigned maxphyaddr[] = {41, 46, 52};
    for (unsigned i = 0; i < sizeof(maxphyaddr) / sizeof(maxphyaddr[0]); i++) {
        struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL, .maxphyaddr = maxphyaddr[i]};
        assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
        put32(&f->env, f->root + 4, (uint32_t)(0x00800000 | (0xffu << 13) | PRWU | E_PS));
        load(f, regs_32(f->root, R_CR4_PSE));
        struct vmmu_x86_walk w = walk(f, 0x00412345, 0);
        assert_true(w.ok);
        assert_int_equal(w.gpa, 0xff00812345ull);

        put32(&f->env, f->root + 4, (uint32_t)(0x00800000 | (1u << 21) | PRWU | E_PS));
        w = walk(f, 0x00412345, 0);
        assert_pf(&w, PF_P | PF_RSVD);
    }
}

static void paging_32bit_4m_pde_bit21_is_reserved(void **state)
{
    struct fixture *f = *state;
    put32(&f->env, f->root, (uint32_t)(0x00400000 | (1u << 21) | PRWU | E_PS));
    load(f, regs_32(f->root, R_CR4_PSE));
    struct vmmu_x86_walk w = walk(f, 0x42, VMMU_X86_ACC_WRITE);
    assert_pf(&w, PF_P | PF_RSVD | PF_W);
}

static void paging_32bit_without_pse36_reserves_pde_bits_20_13(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_PSE36};
    assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
    put32(&f->env, f->root, (uint32_t)(0x00400000 | (1u << 13) | PRWU | E_PS));
    load(f, regs_32(f->root, R_CR4_PSE));
    struct vmmu_x86_walk w = walk(f, 0x42, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

static void fetch_fault_in_32bit_paging_has_no_id_bit_without_smep(void **state)
{
    struct fixture *f = *state;
    /* SDM 4.7: I/D needs SMEP, or NXE with PAE/IA-32e paging. */
    struct vmmu_x86_regs r = regs_32(f->root, 0);
    r.efer = R_EFER_NXE;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x1000, VMMU_X86_ACC_FETCH);
    assert_pf(&w, 0);
}

/* PAE: PDPT at a 32-byte aligned address inside f->root's page. */
static struct vmmu_x86_regs regs_pae(uint64_t cr3)
{
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = cr3, .cr4 = R_CR4_PAE,
                              .rflags = 2};
    return r;
}

static void pae_walk_translates_through_pdpte_pde_and_pte(void **state)
{
    struct fixture *f = *state;
    uint64_t pdpt = f->root + 0x20, pd = env_page(&f->env), pt = env_page(&f->env);
    uint64_t va = (2ull << 30) | (5ull << 21) | (7ull << 12) | 0x89;
    put64(&f->env, pdpt + 8 * 2, pd | E_P);
    put64(&f->env, pd + 8 * 5, pt | PRWU);
    put64(&f->env, pt + 8 * 7, 0xabc000 | PRWU);
    load(f, regs_pae(pdpt));
    struct vmmu_x86_walk w = walk(f, va, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(w.mode, VMMU_X86_MODE_PAE);
    assert_int_equal(w.gpa, 0xabc089);
    assert_int_equal(w.nlevels, 3);
    assert_int_equal(w.levels[0].level, 3);
    assert_int_equal(w.levels[0].gpa, pdpt + 16);
}

static void pae_pdpte_gets_no_accessed_bit(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, 0x200000 | PRWU | E_PS);
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w = walk(f, 0x1234, 0);
    assert_true(w.ok);
    assert_int_equal(w.page_size, 2 * MiB);
    assert_int_equal(get64(&f->env, f->root), pd | E_P);
    assert_int_equal(get64(&f->env, pd), 0x200000 | PRWU | E_PS | E_A);
}

/* The record says what the CPU would write: the PDPTE is a register
 * (SDM 4.4.1), so its new_value is its value; the PDE below gets A. */
static void pae_walk_record_plans_no_accessed_bit_for_the_pdpte_register(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, 0x200000 | PRWU | E_PS);
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x1234, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.nlevels, 2);
    assert_int_equal(w.levels[0].level, 3);
    assert_int_equal(w.levels[0].new_value, w.levels[0].value);
    assert_int_equal(w.levels[1].new_value, w.levels[1].value | E_A);
}

static void pae_walk_uses_loaded_pdptes_not_current_memory(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, 0x200000 | PRWU | E_PS);
    load(f, regs_pae(f->root));
    /* SDM 4.4.1: the PDPTEs are registers; changing memory has no effect
     * until CR3 is written again. */
    put64(&f->env, f->root, 0);
    struct vmmu_x86_walk w = walk(f, 0x1234, 0);
    assert_true(w.ok);
    struct vmmu_x86_fault fault;
    assert_int_equal(vmmu_x86_set_cr3(&f->env.pg, f->root, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    w = walk(f, 0x1234, 0);
    assert_pf(&w, 0);
}

static void pae_not_present_pdpte_faults_with_p_clear(void **state)
{
    struct fixture *f = *state;
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w = walk(f, 0xc0000000ull, VMMU_X86_ACC_WRITE);
    assert_pf(&w, PF_W);
    assert_int_equal(w.nlevels, 1);
}

static void pae_pte_bits_above_maxphyaddr_up_to_62_are_reserved(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env), pt = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, pt | PRWU);
    /* Bit 55 is ignored in 4-level paging but reserved in PAE paging. */
    put64(&f->env, pt, 0x5000 | PRWU | (1ull << 55));
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w = walk(f, 0x10, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

static void pae_2m_page_bits_20_13_are_reserved(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, 0x200000 | (1ull << 13) | PRWU | E_PS);
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w = walk(f, 0x10, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

/* Entries read from unbacked memory are all-ones.  In 32-bit paging a
 * 4 KiB PTE has no reserved bit, so a page table in a hole does not fault
 * on RSVD: the walk translates to the all-ones frame, user and writable,
 * and writes no A/D bit (there is nowhere to write it). */
static void paging_32bit_page_table_in_a_hole_translates_to_the_all_ones_frame(void **state)
{
    struct fixture *f = *state;
    uint64_t va = 0x00c03456; /* PDE 3, PTE 3 */
    put32(&f->env, f->root + 4 * 3, (uint32_t)(0x80000000u | PRWU)); /* beyond the 1 MiB of RAM */
    load(f, regs_32(f->root, 0));
    struct vmmu_x86_walk w = walk(f, va, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0xfffff456ull);
    assert_true(w.user && w.writable);
    assert_int_equal(w.nlevels, 2);
    assert_int_equal(w.levels[1].value, 0xffffffffull);
    assert_null(w.levels[1].host);
    assert_int_equal(w.levels[1].region_id, 0);
    assert_int_equal(get32(&f->env, f->root + 4 * 3), 0x80000000u | PRWU | E_A);
    /* With CR4.PSE an all-ones PDE is a 4 MiB page with bit 21 set: RSVD. */
    load(f, regs_32(0x80000000ull, R_CR4_PSE));
    w = walk(f, va, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

/* In PAE paging linear addresses have 32 bits: bits 63:32 of the address
 * asked for are dropped, from the translation, the record and CR2. */
static void pae_walk_ignores_linear_address_bits_above_31(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env);
    put64(&f->env, f->root + 8 * 3, pd | E_P);
    put64(&f->env, pd + 8 * 511, 0x400000 | PRWU | E_PS); /* va 0xffe00000 */
    load(f, regs_pae(f->root));
    struct vmmu_x86_walk w = walk(f, 0xabcd0000ffe01234ull, 0);
    assert_true(w.ok);
    assert_int_equal(w.va, 0xffe01234ull);
    assert_int_equal(w.gpa, 0x401234);
    assert_int_equal(w.page_size, 2 * MiB);
    w = walk(f, 0xabcd0000bfe01234ull, 0); /* PDPTE 2: not present */
    assert_pf(&w, 0);
    assert_int_equal(w.fault.cr2, 0xbfe01234ull);
}

/* The highest page of each linear address space walks through the last
 * entry of every table. */
static void walks_reach_the_last_page_of_the_linear_address_space(void **state)
{
    struct fixture *f = *state;
    uint64_t top = 0xfffffffffffff000ull;
    map8(&f->env, f->root, 4, top, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, top | 0xfff, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x9fff);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(w.levels[i].gpa & 0xfff, 0xff8);

    uint64_t root32 = env_page(&f->env), pt = env_page(&f->env);
    put32(&f->env, root32 + 4 * 1023, (uint32_t)(pt | PRWU));
    put32(&f->env, pt + 4 * 1023, (uint32_t)(0xa000 | PRWU));
    load(f, regs_32(root32, 0));
    w = walk(f, 0xffffffffull, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0xafff);
    assert_int_equal(w.levels[0].gpa, root32 + 4092);
    assert_int_equal(w.levels[1].gpa, pt + 4092);
}

static void four_level_walk_records_every_entry_top_first(void **state)
{
    struct fixture *f = *state;
    uint64_t va = 0x00007f1234567abcull;
    uint64_t leaf_at = map8(&f->env, f->root, 4, va, 1, PRWU, 0x42000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, va, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x42abc);
    assert_int_equal(w.nlevels, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(w.levels[i].level, 4 - i);
        assert_int_equal(w.levels[i].size, 8);
        assert_non_null(w.levels[i].host);
        assert_int_equal(w.levels[i].new_value, w.levels[i].value | E_A);
    }
    assert_int_equal(w.levels[0].gpa, slot9(f->root, va, 4));
    assert_int_equal(w.levels[3].gpa, leaf_at);
    assert_int_equal(w.levels[3].value, 0x42000 | PRWU);
}

static void four_level_1g_page_translates_with_the_feature(void **state)
{
    struct fixture *f = *state;
    uint64_t va = (3ull << 30) | 0x12345678;
    map8(&f->env, f->root, 4, va, 3, PRWU, (5ull << 30) | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, va, 0);
    assert_true(w.ok);
    assert_int_equal(w.page_size, 1 * GiB);
    assert_int_equal(w.gpa, (5ull << 30) | 0x12345678);
}

static void four_level_pdpte_ps_is_reserved_without_1g_pages(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_1G};
    assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
    uint64_t va = 3ull << 30;
    map8(&f->env, f->root, 4, va, 3, PRWU, (5ull << 30) | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, va, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

static void four_level_1g_page_bits_29_13_are_reserved(void **state)
{
    struct fixture *f = *state;
    uint64_t va = 3ull << 30;
    map8(&f->env, f->root, 4, va, 3, PRWU, (5ull << 30) | (1ull << 29) | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, va, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

static void four_level_pml4e_ps_is_reserved(void **state)
{
    struct fixture *f = *state;
    put64(&f->env, f->root, env_page(&f->env) | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x1000, 0);
    assert_pf(&w, PF_P | PF_RSVD);
    assert_int_equal(w.nlevels, 1);
}

static void four_level_2m_leaf_bits_20_13_are_reserved_but_pat_bit_12_is_not(void **state)
{
    struct fixture *f = *state;
    uint64_t a = 0x200000, b = 0x400000;
    map8(&f->env, f->root, 4, a, 2, PRWU, 0x200000 | (1ull << 14) | PRWU | E_PS);
    map8(&f->env, f->root, 4, b, 2, PRWU, 0x400000 | (1ull << 12) | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, a, 0);
    assert_pf(&w, PF_P | PF_RSVD);
    w = walk(f, b, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x400000);
    assert_int_equal(w.pat_index, 4);
}

static void four_level_pte_bit7_is_pat_not_ps(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU | (1ull << 7) | E_PCD);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.page_size, 4096);
    assert_int_equal(w.pat_index, 6);
}

static void bits_above_maxphyaddr_are_reserved_at_every_level(void **state)
{
    struct fixture *f = *state;
    uint64_t va = 0x5000;
    uint64_t at[5];
    map8(&f->env, f->root, 4, va, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    /* Find every entry's gpa from a clean walk, then poison one at a time. */
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, va, 0, &w), 0);
    for (unsigned i = 0; i < 4; i++)
        at[4 - i] = w.levels[i].gpa;
    for (int level = 4; level >= 1; level--) {
        uint64_t v = get64(&f->env, at[level]);
        put64(&f->env, at[level], v | (1ull << 40)); /* MAXPHYADDR is 40 */
        assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, va, 0, &w), 0);
        assert_pf(&w, PF_P | PF_RSVD);
        assert_int_equal(w.nlevels, 5 - level);
        put64(&f->env, at[level], v);
    }
}

static void four_level_bits_62_52_of_a_pte_are_ignored_without_keys(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU | 0x7ff0000000000000ull);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x9000);
    assert_int_equal(w.pkey, 0xf);
}

static void intel_ignores_bit8_of_a_pml4e(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU | E_G, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
}

static void amd_reserves_bit8_of_a_pml4e(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_cpu cpu = {.vendor = VMMU_X86_VENDOR_AMD, .features = VMMU_X86_FEAT_ALL};
    assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU | E_G, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_pf(&w, PF_P | PF_RSVD);
    assert_int_equal(w.nlevels, 1);
}

static void five_level_walk_translates_a_57_bit_address(void **state)
{
    struct fixture *f = *state;
    uint64_t va = 0xff12345678901000ull; /* canonical: bits 63:56 copy bit 56 */
    map8(&f->env, f->root, 5, va, 1, PRWU, 0x77000 | PRWU);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_LA57;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, va | 0x12, 0);
    assert_true(w.ok);
    assert_int_equal(w.mode, VMMU_X86_MODE_5LEVEL);
    assert_int_equal(w.nlevels, 5);
    assert_int_equal(w.gpa, 0x77012);
}

static void five_level_pml5e_ps_is_reserved(void **state)
{
    struct fixture *f = *state;
    put64(&f->env, f->root, env_page(&f->env) | PRWU | E_PS);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_LA57;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x1000, 0);
    assert_pf(&w, PF_P | PF_RSVD);
}

/* APM 5.3.3: on AMD bit 8 of a PML5E must be zero, as in a PML4E. */
static void amd_reserves_bit8_of_a_pml5e(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_cpu cpu = {.vendor = VMMU_X86_VENDOR_AMD, .features = VMMU_X86_FEAT_ALL};
    assert_int_equal(vmmu_x86_paging_init(&f->env.pg, f->env.vm, &cpu), 0);
    map8(&f->env, f->root, 5, 0x3000, 1, PRWU, 0x9000 | PRWU);
    put64(&f->env, f->root, get64(&f->env, f->root) | E_G);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_LA57;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_pf(&w, PF_P | PF_RSVD);
    assert_int_equal(w.nlevels, 1);
}

static void intel_ignores_bit8_of_a_pml5e(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 5, 0x3000, 1, PRWU, 0x9000 | PRWU);
    put64(&f->env, f->root, get64(&f->env, f->root) | E_G);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_LA57;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x9000);
}

/* ---- Canonical addresses, CR2 --------------------------------------------- */

static void noncanonical_address_raises_gp_without_a_walk(void **state)
{
    struct fixture *f = *state;
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x0000800000000000ull, 0);
    assert_false(w.ok);
    assert_int_equal(w.fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(w.fault.error_code, 0);
    assert_int_equal(w.nlevels, 0);
}

static void noncanonical_stack_access_raises_ss(void **state)
{
    struct fixture *f = *state;
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x8000000000000000ull, VMMU_X86_ACC_STACK | VMMU_X86_ACC_WRITE);
    assert_int_equal(w.fault.vector, VMMU_X86_VEC_SS);
}

static void five_level_accepts_addresses_noncanonical_in_four_level(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_LA57;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x0000800000000000ull, 0);
    assert_int_equal(w.fault.vector, VMMU_X86_VEC_PF); /* canonical, just unmapped */
    w = walk(f, 0x0100000000000000ull, 0);
    assert_int_equal(w.fault.vector, VMMU_X86_VEC_GP);
}

static void page_fault_sets_cr2_to_the_full_linear_address(void **state)
{
    struct fixture *f = *state;
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0xffff800012345678ull, 0);
    assert_pf(&w, 0);
    assert_int_equal(w.fault.cr2, 0xffff800012345678ull);
}

/* ---- The record ------------------------------------------------------------ */

static void global_is_reported_only_with_cr4_pge(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU | E_G);
    load(f, regs_4level(f->root));
    assert_false(walk(f, 0x3000, 0).global);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_PGE;
    load(f, r);
    assert_true(walk(f, 0x3000, 0).global);
}

static void pcid_is_reported_from_cr3_with_pcide(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    struct vmmu_x86_regs r = regs_4level(f->root | 0x2a);
    r.cr4 |= R_CR4_PCIDE;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.pcid, 0x2a);
}

static void rights_report_what_the_same_cpl_may_do(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | E_P | E_US | E_NX);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.efer |= R_EFER_NXE;
    r.cpl = 3;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.rights, VMMU_X86_RIGHT_READ);
    assert_true(w.user);
    assert_false(w.writable);
    assert_true(w.nx);
}

static void implicit_supervisor_access_at_cpl3_reads_supervisor_page(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRW, 0x9000 | PRW);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cpl = 3;
    load(f, r);
    assert_true(walk(f, 0x3000, VMMU_X86_ACC_IMPLICIT).ok);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_pf(&w, PF_P | PF_U);
}

/* SDM 4.6.1: EFLAGS.AC lifts SMAP only for explicit accesses at CPL < 3;
 * an implicit supervisor access to a user page faults under SMAP at CPL 0
 * too, whatever AC says. */
static void ac_does_not_let_an_implicit_access_at_cpl0_through_smap(void **state)
{
    struct fixture *f = *state;
    map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cr4 |= R_CR4_SMAP;
    r.rflags |= R_RFLAGS_AC;
    load(f, r);
    assert_true(walk(f, 0x3000, 0).ok); /* explicit: AC lets it through */
    struct vmmu_x86_walk w = walk(f, 0x3000, VMMU_X86_ACC_IMPLICIT);
    assert_pf(&w, PF_P);
    w = walk(f, 0x3000, VMMU_X86_ACC_IMPLICIT | VMMU_X86_ACC_WRITE);
    assert_pf(&w, PF_P | PF_W);
}

/* SDM 4.6.2: only 4-level and 5-level paging give a page a protection key;
 * in PAE and 32-bit paging CR4.PKE/PKS may be set but no key applies, so
 * PKRU and PKRS denying every key forbid nothing. */
static void protection_keys_do_not_apply_in_pae_or_32bit_paging(void **state)
{
    struct fixture *f = *state;
    uint64_t pd = env_page(&f->env), pt = env_page(&f->env);
    put64(&f->env, f->root, pd | E_P);
    put64(&f->env, pd, pt | PRWU);
    put64(&f->env, pt + 8, 0x10000 | PRWU);
    put64(&f->env, pt + 16, 0x11000 | PRW);
    struct vmmu_x86_regs r = regs_pae(f->root);
    r.cr0 |= R_CR0_WP;
    r.cr4 |= R_CR4_PKE | R_CR4_PKS;
    r.pkru = r.pkrs = 0xffffffffu;
    load(f, r);
    assert_true(walk(f, 0x1000, VMMU_X86_ACC_WRITE).ok); /* user page, PKRU */
    assert_true(walk(f, 0x2000, VMMU_X86_ACC_WRITE).ok); /* supervisor page, PKRS */
    r.cpl = 3;
    load(f, r);
    assert_true(walk(f, 0x1000, VMMU_X86_ACC_WRITE).ok);

    uint64_t pd32 = env_page(&f->env), pt32 = env_page(&f->env);
    put32(&f->env, pd32, (uint32_t)(pt32 | PRWU));
    put32(&f->env, pt32 + 4, (uint32_t)(0x10000 | PRWU));
    put32(&f->env, pt32 + 8, (uint32_t)(0x11000 | PRW));
    r = regs_32(pd32, R_CR4_PKE | R_CR4_PKS);
    r.cr0 |= R_CR0_WP;
    r.pkru = r.pkrs = 0xffffffffu;
    load(f, r);
    assert_true(walk(f, 0x1000, VMMU_X86_ACC_WRITE).ok);
    assert_true(walk(f, 0x2000, VMMU_X86_ACC_WRITE).ok);
    r.cpl = 3;
    load(f, r);
    assert_true(walk(f, 0x1000, VMMU_X86_ACC_WRITE).ok);
}

static void invalid_access_bits_are_refused(void **state)
{
    struct fixture *f = *state;
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk(&f->env.pg, 0, VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH, &w),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk(&f->env.pg, 0, 1u << 20, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk_peek(NULL, 0, 0, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0, 0, NULL), VMMU_EINVAL);
}

/* ---- Accessed and dirty bits ------------------------------------------------ */

static void peek_sets_no_accessed_or_dirty_bit(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    uint64_t top = get64(&f->env, f->root);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x3000, VMMU_X86_ACC_WRITE, &w), 0);
    assert_true(w.ok);
    assert_true(w.dirty); /* planned... */
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | PRWU); /* ...not stored */
    assert_int_equal(get64(&f->env, f->root), top);
}

static void faulting_walk_sets_no_accessed_bit(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | E_P | E_US);
    uint64_t top = get64(&f->env, f->root);
    struct vmmu_x86_regs r = regs_4level(f->root);
    r.cpl = 3;
    load(f, r);
    struct vmmu_x86_walk w = walk(f, 0x3000, VMMU_X86_ACC_WRITE);
    assert_pf(&w, PF_P | PF_W | PF_U);
    assert_int_equal(get64(&f->env, f->root), top);
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | E_P | E_US);
}

static void read_sets_accessed_but_not_dirty(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.committed);
    assert_false(w.dirty);
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | PRWU | E_A);
}

static void write_sets_dirty_only_on_the_leaf(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x200000, 2, PRWU, 0x400000 | PRWU | E_PS);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x200000, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_int_equal(get64(&f->env, leaf_at), 0x400000 | PRWU | E_PS | E_A | E_D);
    for (unsigned i = 0; i + 1 < w.nlevels; i++)
        assert_int_equal(get64(&f->env, w.levels[i].gpa) & (E_A | E_D), E_A);
}

static void commit_refuses_when_an_entry_changed_since_the_walk(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x3000, VMMU_X86_ACC_WRITE, &w), 0);
    put64(&f->env, leaf_at, 0xa000 | PRWU); /* the guest remaps meanwhile */
    assert_int_equal(vmmu_x86_walk_commit(&f->env.pg, &w), VMMU_EBUSY);
    assert_false(w.committed);
    assert_int_equal(get64(&f->env, leaf_at), 0xa000 | PRWU);
}

/* vmmu_x86_walk_commit stores top level first and stops at the first entry
 * that changed: the levels above it keep their new A bits, it and the
 * levels below are left as the guest has them. */
static void commit_refused_midway_keeps_the_accessed_bits_stored_above(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x3000, VMMU_X86_ACC_WRITE, &w), 0);
    assert_true(w.ok);
    uint64_t pde_at = w.levels[2].gpa;
    uint64_t pde = get64(&f->env, pde_at) | (1ull << 9); /* the guest sets an available bit */
    put64(&f->env, pde_at, pde);
    assert_int_equal(vmmu_x86_walk_commit(&f->env.pg, &w), VMMU_EBUSY);
    assert_false(w.committed);
    assert_true(get64(&f->env, w.levels[0].gpa) & E_A);
    assert_true(get64(&f->env, w.levels[1].gpa) & E_A);
    assert_int_equal(get64(&f->env, pde_at), pde);
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | PRWU);
}

/* A peek followed by a commit leaves guest memory exactly as a walk does,
 * and new_value is what each entry holds afterwards. */
static void peek_then_commit_leaves_what_walk_leaves(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x5000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x5000, VMMU_X86_ACC_WRITE, &w), 0);
    assert_int_equal(vmmu_x86_walk_commit(&f->env.pg, &w), 0);
    assert_true(w.committed);
    for (unsigned i = 0; i < w.nlevels; i++)
        assert_int_equal(get64(&f->env, w.levels[i].gpa), w.levels[i].new_value);
    uint64_t after_commit[4];
    for (unsigned i = 0; i < 4; i++)
        after_commit[i] = w.levels[i].new_value;

    /* The same tables, untouched again, through vmmu_x86_walk. */
    for (unsigned i = 0; i < 4; i++)
        put64(&f->env, w.levels[i].gpa, w.levels[i].value);
    struct vmmu_x86_walk w2 = walk(f, 0x5000, VMMU_X86_ACC_WRITE);
    assert_true(w2.committed);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(get64(&f->env, w2.levels[i].gpa), after_commit[i]);
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | PRWU | E_A | E_D);
}

/* The entry-read hook lets this test play a guest that rewrites the PTE
 * right after every read, so every commit loses: the walk gives up after
 * exactly VMMU_X86_WALK_RESTARTS_MAX restarts with VMMU_EBUSY, and the
 * record holds the last attempt. */
static unsigned rewrites;
static int hook_lookup(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                       struct vmmu__x86_entry *out)
{
    (void)ctx, (void)vm, (void)gpa, (void)size, (void)level, (void)out;
    return 0; /* read memory */
}
static int hook_record(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                       struct vmmu__x86_entry *e)
{
    (void)vm, (void)gpa, (void)size;
    if (level == 1) {
        __atomic_fetch_xor((uint64_t *)ctx, 1ull << 9, __ATOMIC_ACQ_REL);
        rewrites++;
    }
    (void)e;
    return 0;
}

static void walk_gives_up_with_ebusy_after_the_restart_bound_when_every_commit_loses(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu__x86_entry_hook hook = {hook_lookup, hook_record, f->env.mem + leaf_at};
    rewrites = 0;
    vmmu__x86_entry_hook = &hook;
    struct vmmu_x86_walk w;
    int rc = vmmu_x86_walk(&f->env.pg, 0x3000, 0, &w);
    vmmu__x86_entry_hook = NULL;
    assert_int_equal(rc, VMMU_EBUSY);
    assert_int_equal(w.restarts, VMMU_X86_WALK_RESTARTS_MAX);
    assert_int_equal(rewrites, VMMU_X86_WALK_RESTARTS_MAX + 1);
    assert_false(w.committed);
    assert_true(w.ok);
    assert_int_equal(w.levels[3].value, get64(&f->env, leaf_at) ^ (1ull << 9));
    assert_false(get64(&f->env, leaf_at) & E_A);
}

/* A self-referencing PML4 entry (the recursive mapping some guests use)
 * makes one walk use the same entry at every level.  The walk still
 * succeeds and leaves the entry with A and, for a write, D set; the
 * commit that finds the entry already changed by its own store above is
 * simply redone. */
static void walk_through_a_self_referencing_entry_sets_its_bits_once(void **state)
{
    struct fixture *f = *state;
    uint64_t self = f->root + 8 * 511;
    put64(&f->env, self, f->root | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0xfffffffffffff000ull, VMMU_X86_ACC_WRITE);
    assert_true(w.ok);
    assert_true(w.committed);
    assert_int_equal(w.gpa, f->root);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(w.levels[i].gpa, self);
    assert_true(w.restarts <= VMMU_X86_WALK_RESTARTS_MAX);
    assert_int_equal(get64(&f->env, self), f->root | PRWU | E_A | E_D);
}

static void commit_of_a_faulted_walk_writes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t top_before = get64(&f->env, f->root);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x3000, 0, &w), 0);
    assert_false(w.ok);
    assert_int_equal(vmmu_x86_walk_commit(&f->env.pg, &w), 0);
    assert_int_equal(get64(&f->env, f->root), top_before);
}

/* ---- Entry read policy ------------------------------------------------------ */

static void table_in_unbacked_memory_reads_as_all_ones_and_faults_reserved(void **state)
{
    struct fixture *f = *state;
    put64(&f->env, f->root, 0x80000000ull | PRWU); /* beyond the 1 MiB of RAM */
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, VMMU_X86_ACC_WRITE);
    assert_pf(&w, PF_P | PF_RSVD | PF_W);
    assert_int_equal(w.nlevels, 2);
    assert_int_equal(w.levels[1].value, ~0ull);
    assert_null(w.levels[1].host);
    assert_int_equal(get64(&f->env, f->root), 0x80000000ull | PRWU);
}

/* A table beyond the vm's guest-physical width reads as all-ones, like a
 * hole, and is never looked up as an error. */
static void table_beyond_the_vm_width_reads_as_all_ones(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.gpa_bits = 32};
    assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
    uint8_t *mem = aligned_alloc(4096, 64 * KiB);
    assert_non_null(mem);
    memset(mem, 0, 64 * KiB);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 64 * KiB, .host = mem};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    uint64_t pml4e = (1ull << 36) | PRWU; /* below MAXPHYADDR 40, beyond 32 bits */
    memcpy(mem + 0x1000, &pml4e, 8);
    struct vmmu_x86_paging pg;
    assert_int_equal(vmmu_x86_paging_init(&pg, vm, NULL), 0);
    struct vmmu_x86_regs r = regs_4level(0x1000);
    assert_int_equal(vmmu_x86_set_state(&pg, &r), 0);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk(&pg, 0x3000, 0, &w), 0);
    assert_pf(&w, PF_P | PF_RSVD);
    assert_int_equal(w.nlevels, 2);
    assert_int_equal(w.levels[1].gpa, 1ull << 36);
    assert_int_equal(w.levels[1].value, ~0ull);
    assert_null(w.levels[1].host);
    assert_int_equal(w.levels[1].region_id, 0);
    vmmu_vm_destroy(vm);
    free(mem);
}

static void table_in_mmio_reads_as_all_ones_without_calling_the_device(void **state)
{
    struct fixture *f = *state;
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 0x10000000, .size = 0x1000, .mmio = &x86_env_counting_mmio};
    assert_int_equal(vmmu_region_add(f->env.vm, &d, NULL), 0);
    put64(&f->env, f->root, 0x10000000ull | PRWU);
    load(f, regs_4level(f->root));
    x86_env_mmio_calls = 0;
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_pf(&w, PF_P | PF_RSVD);
    assert_int_equal(x86_env_mmio_calls, 0);
}

static void table_in_rom_translates_but_keeps_its_accessed_bits_clear(void **state)
{
    struct fixture *f = *state;
    uint8_t *rom = aligned_alloc(4096, 4096);
    assert_non_null(rom);
    uint64_t pte = 0x9000 | PRWU;
    memset(rom, 0, 4096);
    memcpy(rom + 8 * 3, &pte, 8); /* PT in ROM, va 0x3000 */
    struct vmmu_region_desc d = {.type = VMMU_MEM_ROM, .gpa = 0x20000000, .size = 4096, .host = rom};
    assert_int_equal(vmmu_region_add(f->env.vm, &d, NULL), 0);
    uint64_t pdpt = env_page(&f->env), pd = env_page(&f->env);
    put64(&f->env, f->root, pdpt | PRWU);
    put64(&f->env, pdpt, pd | PRWU);
    put64(&f->env, pd, 0x20000000ull | PRWU);
    load(f, regs_4level(f->root));
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, 0x9000);
    assert_null(w.levels[3].host);
    assert_int_equal(memcmp(rom + 24, &pte, 8), 0);
    assert_int_equal(get64(&f->env, pd), 0x20000000ull | PRWU | E_A);
    vmmu_vm_destroy(f->env.vm); /* before freeing the ROM's memory */
    f->env.vm = NULL;
    free(rom);
}

static void table_on_a_paged_out_page_without_pager_fails_epagedout(void **state)
{
    struct fixture *f = *state;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    assert_int_equal(vmmu__page_state_update(f->env.vm, leaf_at, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk(&f->env.pg, 0x3000, 0, &w), VMMU_EPAGEDOUT);
}

static int pager_bring_back(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    unsigned *calls = opaque;
    (*calls)++;
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

static void table_on_a_paged_out_page_is_paged_in_through_the_handler(void **state)
{
    struct fixture *f = *state;
    unsigned calls = 0;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    assert_int_equal(vmmu_p2m_set_pagein_handler(f->env.vm, pager_bring_back, &calls), 0);
    assert_int_equal(vmmu__page_state_update(f->env.vm, leaf_at, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct vmmu_x86_walk w = walk(f, 0x3000, 0);
    assert_true(w.ok);
    assert_int_equal(calls, 1);
    assert_int_equal(get64(&f->env, leaf_at), 0x9000 | PRWU | E_A);
}

static int pagein_fails(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    ++*(unsigned *)opaque;
    return VMMU_ESYS;
}

static void table_on_a_page_the_handler_cannot_bring_back_fails_with_its_code(void **state)
{
    struct fixture *f = *state;
    unsigned calls = 0;
    uint64_t leaf_at = map8(&f->env, f->root, 4, 0x3000, 1, PRWU, 0x9000 | PRWU);
    load(f, regs_4level(f->root));
    assert_int_equal(vmmu_p2m_set_pagein_handler(f->env.vm, pagein_fails, &calls), 0);
    assert_int_equal(vmmu__page_state_update(f->env.vm, leaf_at, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&f->env.pg, 0x3000, 0, &w), VMMU_ESYS);
    assert_int_equal(vmmu_x86_walk(&f->env.pg, 0x3000, 0, &w), VMMU_ESYS);
    assert_true(calls >= 2);
    /* The upper levels were read but nothing was committed. */
    assert_false(get64(&f->env, f->root) & E_A);
}

static void accessed_bit_update_marks_a_logged_page_table_page_dirty(void **state)
{
    struct fixture *f = *state;
    uint8_t *mem = aligned_alloc(4096, 4096);
    assert_non_null(mem);
    memset(mem, 0, 4096);
    uint64_t pte = 0x9000 | PRWU;
    memcpy(mem + 8 * 3, &pte, 8);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0x30000000, .size = 4096,
                                 .host = mem, .flags = VMMU_REGION_LOG_DIRTY};
    assert_int_equal(vmmu_region_add(f->env.vm, &d, NULL), 0);
    uint64_t pdpt = env_page(&f->env), pd = env_page(&f->env);
    put64(&f->env, f->root, pdpt | PRWU);
    put64(&f->env, pdpt, pd | PRWU);
    put64(&f->env, pd, 0x30000000ull | PRWU);
    load(f, regs_4level(f->root));
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(f->env.vm, 0x30000000, &st), 0);
    assert_false(st & VMMU_PAGE_DIRTY);
    assert_true(walk(f, 0x3000, 0).ok);
    assert_int_equal(vmmu_page_state_get(f->env.vm, 0x30000000, &st), 0);
    assert_true(st & VMMU_PAGE_DIRTY);
    vmmu_vm_destroy(f->env.vm);
    f->env.vm = NULL;
    free(mem);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(paging_off_maps_linear_to_physical_with_32_bit_addresses),
        T(paging_32bit_translates_4k_page_through_pde_and_pte),
        T(paging_32bit_maps_4m_page_when_cr4_pse_is_set),
        T(paging_32bit_ignores_pde_ps_without_cr4_pse),
        T(paging_32bit_pse36_maps_4m_page_above_4g),
        T(paging_32bit_pse36_bits_beyond_maxphyaddr_are_reserved),
        T(paging_32bit_pse36_above_maxphyaddr_40_maps_bits_20_13_and_reserves_bit21),
        T(paging_32bit_4m_pde_bit21_is_reserved),
        T(paging_32bit_without_pse36_reserves_pde_bits_20_13),
        T(fetch_fault_in_32bit_paging_has_no_id_bit_without_smep),
        T(pae_walk_translates_through_pdpte_pde_and_pte),
        T(pae_pdpte_gets_no_accessed_bit),
        T(pae_walk_record_plans_no_accessed_bit_for_the_pdpte_register),
        T(pae_walk_uses_loaded_pdptes_not_current_memory),
        T(pae_not_present_pdpte_faults_with_p_clear),
        T(pae_pte_bits_above_maxphyaddr_up_to_62_are_reserved),
        T(pae_2m_page_bits_20_13_are_reserved),
        T(four_level_walk_records_every_entry_top_first),
        T(four_level_1g_page_translates_with_the_feature),
        T(four_level_pdpte_ps_is_reserved_without_1g_pages),
        T(four_level_1g_page_bits_29_13_are_reserved),
        T(four_level_pml4e_ps_is_reserved),
        T(four_level_2m_leaf_bits_20_13_are_reserved_but_pat_bit_12_is_not),
        T(four_level_pte_bit7_is_pat_not_ps),
        T(bits_above_maxphyaddr_are_reserved_at_every_level),
        T(four_level_bits_62_52_of_a_pte_are_ignored_without_keys),
        T(intel_ignores_bit8_of_a_pml4e),
        T(amd_reserves_bit8_of_a_pml4e),
        T(five_level_walk_translates_a_57_bit_address),
        T(five_level_pml5e_ps_is_reserved),
        T(amd_reserves_bit8_of_a_pml5e),
        T(intel_ignores_bit8_of_a_pml5e),
        T(noncanonical_address_raises_gp_without_a_walk),
        T(noncanonical_stack_access_raises_ss),
        T(five_level_accepts_addresses_noncanonical_in_four_level),
        T(page_fault_sets_cr2_to_the_full_linear_address),
        T(global_is_reported_only_with_cr4_pge),
        T(pcid_is_reported_from_cr3_with_pcide),
        T(rights_report_what_the_same_cpl_may_do),
        T(implicit_supervisor_access_at_cpl3_reads_supervisor_page),
        T(ac_does_not_let_an_implicit_access_at_cpl0_through_smap),
        T(protection_keys_do_not_apply_in_pae_or_32bit_paging),
        T(invalid_access_bits_are_refused),
        T(peek_sets_no_accessed_or_dirty_bit),
        T(faulting_walk_sets_no_accessed_bit),
        T(read_sets_accessed_but_not_dirty),
        T(write_sets_dirty_only_on_the_leaf),
        T(commit_refuses_when_an_entry_changed_since_the_walk),
        T(commit_of_a_faulted_walk_writes_nothing),
        T(table_in_unbacked_memory_reads_as_all_ones_and_faults_reserved),
        T(table_in_mmio_reads_as_all_ones_without_calling_the_device),
        T(table_in_rom_translates_but_keeps_its_accessed_bits_clear),
        T(table_on_a_paged_out_page_without_pager_fails_epagedout),
        T(table_on_a_paged_out_page_is_paged_in_through_the_handler),
        T(accessed_bit_update_marks_a_logged_page_table_page_dirty),
        T(paging_32bit_page_table_in_a_hole_translates_to_the_all_ones_frame),
        T(pae_walk_ignores_linear_address_bits_above_31),
        T(walks_reach_the_last_page_of_the_linear_address_space),
        T(commit_refused_midway_keeps_the_accessed_bits_stored_above),
        T(peek_then_commit_leaves_what_walk_leaves),
        T(walk_gives_up_with_ebusy_after_the_restart_bound_when_every_commit_loses),
        T(table_on_a_page_the_handler_cannot_bring_back_fails_with_its_code),
        T(table_beyond_the_vm_width_reads_as_all_ones),
        T(walk_through_a_self_referencing_entry_sets_its_bits_once),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
