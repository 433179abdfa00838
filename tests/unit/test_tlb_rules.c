/* SPDX-License-Identifier: MIT */
/* The software TLB, one architectural rule per test: what a fill caches,
 * what each invalidation (INVLPG, INVPCID 0-3, MOV to CR3 with and without
 * the no-flush bit, CR0/CR4/EFER/PKRU/PKRS changes) must drop, and what it
 * may keep.  "Kept" checks look at the inline hit path directly: a stale
 * entry that the architecture allows to survive is still served. */
#include "test_tlb_env.h"

#define PF_P 0x01u
#define PF_W 0x02u
#define PF_U 0x04u
#define PF_I 0x10u
#define PF_PK 0x20u

static const uint64_t UP = E_P | E_RW | E_US; /* upper-level flags: everything allowed */

struct fx {
    struct tlb_env t;
    uint64_t root, root2;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || tlb_env_init(&f->t, 16 * MiB))
        return -1;
    f->root = env_page(&f->t.env);
    f->root2 = env_page(&f->t.env);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tlb_env_fini(&f->t);
    free(f);
    return 0;
}

/* Data pages live from 8 MiB up, away from the page tables. */
#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)

static const uint64_t VA = 0x0000400000123000ull;
static const uint64_t VA2 = 0x0000400000456000ull;

static void *rd(struct fx *f, uint64_t va)
{
    return tacc(&f->t, va, 8, 0, NULL);
}

static struct vmmu_tlb_result acc(struct fx *f, uint64_t va, unsigned access)
{
    struct vmmu_tlb_result r;
    memset(&r, 0, sizeof(r));
    (void)tacc(&f->t, va, 8, access, &r);
    return r;
}

static void assert_maps(struct fx *f, uint64_t va, uint64_t gpa)
{
    assert_ptr_equal(rd(f, va), hpa(&f->t, gpa + (va & 0xfff)));
}

static void assert_pf(struct vmmu_tlb_result r, uint32_t code)
{
    assert_int_equal(r.status, VMMU_TLB_FAULT);
    assert_int_equal(r.fault.vector, VMMU_X86_VEC_PF);
    assert_int_equal(r.fault.error_code, code);
}

static void ok(int rc, const struct vmmu_x86_fault *fault)
{
    assert_int_equal(rc, 0);
    assert_int_equal(fault->vector, VMMU_X86_FAULT_NONE);
}

static struct vmmu_tlb_stats stats(struct fx *f)
{
    struct vmmu_tlb_stats s;
    assert_int_equal(vmmu_vcpu_stats(f->t.vcpu, &s), 0);
    return s;
}

/* ---- fills and the hit path ----------------------------------------------- */

static void a_filled_page_hits_inline_with_the_host_address(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 8, 8));
    assert_maps(f, VA + 8, DATA(1));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA + 16, 8), hpa(&f->t, DATA(1) + 16));
    assert_ptr_equal(vmmu_tlb_lookup_write(f->t.vcpu, VA + 16, 4), hpa(&f->t, DATA(1) + 16));
    assert_ptr_equal(vmmu_tlb_lookup_fetch(f->t.vcpu, VA + 1, 1), hpa(&f->t, DATA(1) + 1));
}

static void first_write_to_a_clean_page_walks_as_a_write_and_sets_d(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_int_equal(get64(&f->t.env, pte) & (E_A | E_D), E_A);
    /* Readable, writable, but D=0: no write comparator yet. */
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    struct vmmu_tlb_result r = acc(f, VA, VMMU_X86_ACC_WRITE);
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_int_equal(get64(&f->t.env, pte) & E_D, E_D);
    assert_ptr_equal(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
}

static void misaligned_accesses_miss_inline_and_are_served_by_the_slow_path(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 3, 4));
    assert_ptr_equal(tacc(&f->t, VA + 3, 4, 0, NULL), hpa(&f->t, DATA(1) + 3));
}

static void page_crossing_accesses_are_reported_for_splitting(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    struct vmmu_tlb_result r;
    assert_null(tacc(&f->t, VA + 0xffe, 4, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_CROSSES);
}

static void readonly_page_gets_no_write_comparator_and_a_write_faults(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, R_CR0_WP);
    assert_maps(f, VA, DATA(1));
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    assert_pf(acc(f, VA, VMMU_X86_ACC_WRITE), PF_P | PF_W);
}

/* A page of MMIO at 64 MiB and a page of ROM at 65 MiB. */
static void add_mmio_and_rom(struct fx *f)
{
    static const struct vmmu_mmio_ops ops = {0};
    struct vmmu_region_desc mmio = {.type = VMMU_MEM_MMIO, .gpa = 64 * MiB, .size = 4096, .mmio = &ops};
    struct vmmu_region_desc rom = {.type = VMMU_MEM_ROM, .gpa = 65 * MiB, .size = 4096};
    assert_int_equal(vmmu_region_add(f->t.env.vm, &mmio, NULL), 0);
    assert_int_equal(vmmu_region_add(f->t.env.vm, &rom, NULL), 0);
}

static void mmio_and_rom_pages_go_to_the_slow_path_as_not_ram(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tmap(&f->t, f->root, VA, 1, UP, (64 * MiB) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VA2, 1, UP, (65 * MiB) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    struct vmmu_tlb_result r = acc(f, VA + 8, 0);
    assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
    assert_int_equal(r.type, VMMU_MEM_MMIO);
    assert_int_equal(r.gpa, 64 * MiB + 8);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 8, 8));
    /* ROM: reads hit, writes are not RAM. */
    assert_non_null(rd(f, VA2));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8));
    r = acc(f, VA2, VMMU_X86_ACC_WRITE);
    assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
    assert_int_equal(r.type, VMMU_MEM_ROM);
}

static void first_write_to_a_clean_mmio_or_rom_page_sets_d(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    /* A hole too: beyond every region. */
    static const uint64_t gpas[] = {64 * MiB, 65 * MiB, 80 * MiB};
    uint64_t pte[3];
    for (unsigned i = 0; i < 3; i++)
        pte[i] = tmap(&f->t, f->root, VA + i * 4096, 1, UP, gpas[i] | E_P | E_RW);
    tlb_load(&f->t, f->root, 0, 0, 0);
    for (unsigned i = 0; i < 3; i++) {
        /* A read caches the translation with D clear (ROM reads are
         * served from host memory)... */
        assert_int_equal(acc(f, VA + i * 4096, 0).status, i == 1 ? VMMU_TLB_OK : VMMU_TLB_NOT_RAM);
        assert_int_equal(get64(&f->t.env, pte[i]) & (E_A | E_D), E_A);
        /* ...and the write after it must still set D, though the page is
         * not RAM and the write goes to the access layer. */
        struct vmmu_tlb_result r = acc(f, VA + i * 4096, VMMU_X86_ACC_WRITE);
        assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
        assert_int_equal(r.gpa, gpas[i]);
        assert_int_equal(get64(&f->t.env, pte[i]) & E_D, E_D);
    }
}

static void writes_with_paging_off_reach_ram(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE, .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(f->t.vcpu, &r), 0);
    /* No paging structure, so no D bit to set: the first write fills a
     * write comparator and later ones hit inline. */
    struct vmmu_tlb_result res = acc(f, DATA(3) + 8, VMMU_X86_ACC_WRITE);
    assert_int_equal(res.status, VMMU_TLB_OK);
    assert_ptr_equal(res.host, hpa(&f->t, DATA(3) + 8));
    assert_ptr_equal(vmmu_tlb_lookup_write(f->t.vcpu, DATA(3) + 16, 8), hpa(&f->t, DATA(3) + 16));
}

static void code_pages_report_writes(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    assert_int_equal(vmmu_page_state_update(f->t.env.vm, DATA(1), 1, VMMU_PAGE_CODE, 0), 0);
    tlb_load(&f->t, f->root, 0, 0, 0);
    struct vmmu_tlb_result r = acc(f, VA, VMMU_X86_ACC_WRITE);
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_true(r.flags & VMMU_TLB_FLAG_CODE);
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

/* Clearing a page's code mark drops no entry; the next write, sent to the
 * slow path by the entry's CODE flag, must not report it any more (vmmu
 * used to answer from the entry, flag included, until something dropped
 * it), and the write after that hits inline. */
static void a_cleared_code_mark_is_no_longer_reported(void **state)
{
    struct fx *f = *state;
    struct vmmu_vm *vm = f->t.env.vm;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    assert_int_equal(vmmu_page_state_update(vm, DATA(1), 1, VMMU_PAGE_CODE, 0), 0);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_true(acc(f, VA, VMMU_X86_ACC_WRITE).flags & VMMU_TLB_FLAG_CODE);
    const struct vmmu_gpa_range range = {DATA(1), 4096};
    assert_int_equal(vmmu_page_state_change(vm, &range, 1, 0, VMMU_PAGE_CODE), 0);
    struct vmmu_tlb_result r = acc(f, VA, VMMU_X86_ACC_WRITE);
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_int_equal(r.flags & VMMU_TLB_FLAG_CODE, 0);
    assert_ptr_equal(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    /* (Marking it again drops the entry: test_sync.) */
}

/* ---- INVLPG ------------------------------------------------------------ */

static void after_invlpg_the_new_translation_is_used(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_A | E_D);
    assert_maps(f, VA, DATA(1)); /* no invalidation yet: the TLB may keep it */
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA + 0x10), 0);
    assert_maps(f, VA, DATA(2));
}

static void invlpg_drops_the_page_in_every_context(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_US | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    assert_maps(f, VA, DATA(2));
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 0), 0);
    assert_maps(f, VA, DATA(2));
}

static void invlpg_drops_global_entries_of_other_pcids(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    tmap(&f->t, f->root2, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1)); /* global entry in PCID 1's slot */
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0); /* in PCID 2 */
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_G | E_A | E_D);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_maps(f, VA, DATA(3));
}

static void invlpg_keeps_non_global_entries_of_other_pcids(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root2, VA, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
}

static void invlpg_inside_a_large_page_drops_all_of_it_and_nothing_else(void **state)
{
    struct fx *f = *state;
    uint64_t big = 0x0000400000200000ull; /* a 2 MiB page */
    uint64_t pde = tmap(&f->t, f->root, big, 2, UP, (2 * MiB) | E_P | E_RW | E_PS | E_A | E_D);
    tmap(&f->t, f->root, VA2 + 2 * MiB * 4, 1, UP, DATA(7) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, big + 0x1000, 2 * MiB + 0x1000);
    assert_maps(f, big + 0x5000, 2 * MiB + 0x5000);
    assert_maps(f, VA2 + 2 * MiB * 4, DATA(7));
    put64(&f->t.env, pde, (4 * MiB) | E_P | E_RW | E_PS | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, big + 0x1ff000), 0);
    /* Both 4 KiB pieces of the large page are gone, the unrelated page is not. */
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + 0x1000, 8));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + 0x5000, 8));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA2 + 2 * MiB * 4, 8));
    assert_maps(f, big + 0x5000, 4 * MiB + 0x5000);
}

static void invlpg_of_a_non_canonical_address_is_a_no_op(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, 0x8000000000000000ull | VA), 0);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

/* ---- MOV to CR3 and PCIDs --------------------------------------------------- */

static void cr3_write_without_pcids_drops_non_global_entries(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_A | E_D);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    assert_maps(f, VA, DATA(2));
}

static void a_global_entry_survives_cr3_writes_and_dies_with_a_pge_toggle(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 & ~R_CR4_PGE, &fault), &fault);
    assert_maps(f, VA, DATA(2));
}

static void a_pge_toggle_drops_globals_of_every_pcid(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PGE | R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 & ~R_CR4_PGE, &fault), &fault);
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4, &fault), &fault);
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_maps(f, VA, DATA(2));
}

static void a_pcid_tagged_entry_stays_usable_across_a_no_flush_cr3_switch(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root2, VA, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_maps(f, VA, DATA(2));
    struct vmmu_tlb_stats before = stats(f);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    assert_int_equal(stats(f).misses, before.misses);
}

static void cr3_write_without_no_flush_drops_that_pcids_entries(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root2, VA, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2, &fault), &fault);
    assert_maps(f, VA, DATA(2));
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_A | E_D);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1, &fault), &fault);
    assert_maps(f, VA, DATA(3));
    /* PCID 2 was not touched by the flush of PCID 1. */
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

static void more_pcids_than_slots_recycle_the_least_recently_used(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    for (unsigned p = 1; p <= VMMU_VCPU_PCID_SLOTS + 1; p++) {
        ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | p | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
        assert_maps(f, VA, DATA(1));
    }
    /* PCID 0's slot (from the reset state) went first, then PCID 1's. */
    assert_int_equal(stats(f).pcid_evictions, 2);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8)); /* PCID 1 was the LRU */
    assert_maps(f, VA, DATA(1));
}

static void switching_back_to_a_pcid_keeps_it_from_being_recycled(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    /* PCIDs 1..4 fill the four slots (PCID 0's slot from the reset state
     * is recycled for the fourth); then PCID 1 is used again. */
    for (unsigned p = 1; p <= VMMU_VCPU_PCID_SLOTS; p++) {
        ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | p | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
        assert_maps(f, VA, DATA(1));
    }
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    /* A fifth PCID takes the least recently used slot: PCID 2's. */
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 5 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_int_equal(stats(f).pcid_evictions, 1);
    static const unsigned kept[] = {1, 3, 4};
    for (unsigned i = 0; i < 3; i++) {
        ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | kept[i] | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
        assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    }
    assert_int_equal(stats(f).pcid_evictions, 1);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_int_equal(stats(f).pcid_evictions, 2);
}

static void clearing_pcide_flushes_everything(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 & ~R_CR4_PCIDE, &fault), &fault);
    assert_maps(f, VA, DATA(2));
}

static void setting_pcide_keeps_pcid_zero_entries(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 | R_CR4_PCIDE, &fault), &fault);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

/* ---- INVPCID ------------------------------------------------------------ */

static void invpcid_type0_drops_one_address_of_one_pcid_but_not_globals(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    uint64_t pte2 = tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_A | E_D);
    put64(&f->t.env, pte2, DATA(4) | E_P | E_RW | E_G | E_A | E_D);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, VA, &fault), &fault);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, VA2, &fault), &fault);
    assert_maps(f, VA, DATA(3));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8), hpa(&f->t, DATA(2)));
}

static void invpcid_type1_drops_a_pcids_non_global_entries(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_A | E_D);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 1, 1, 0, &fault), &fault);
    assert_maps(f, VA, DATA(3));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8));
}

static void invpcid_type2_drops_everything_including_globals(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 2, 0, 0, &fault), &fault);
    assert_maps(f, VA, DATA(2));
}

static void invpcid_type3_drops_every_pcid_but_keeps_globals(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, VA, DATA(1));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 2 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 3, 0, 0, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

static void invpcid_raises_gp_as_the_sdm_lists(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0); /* PCIDE=0 */
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 4, 0, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 2, 0x1000, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 1, 5, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, 0x0100000000000000ull, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 1, 0, 0, &fault), &fault);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 3, 7, 0, &fault), &fault); /* PCID ignored by type 3 */
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 2, 0, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
}

static void a_refused_invpcid_drops_nothing(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    struct vmmu_tlb_stats s0 = stats(f);
    /* Each would drop VA's entry if it were carried out. */
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1 | 0x1000, VA, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, VA ^ 0x8000000000000000ull, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 4, 1, VA, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 2, 0, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 0), 0);
    struct vmmu_tlb_stats s1 = stats(f);
    assert_memory_equal(&s1, &s0, sizeof(s0));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
}

/* INVPCID type 0 takes the descriptor's whole 64-bit address outside
 * 64-bit mode too (SDM INVPCID): in PAE paging an address at or above
 * 4 GiB names no page, so it drops nothing (not the page of its low 32
 * bits), and one that is not canonical is #GP(0): 57 bits on this CPU,
 * which supports 5-level paging (see the next test for one without). */
static void invpcid_type0_outside_64_bit_mode_takes_the_whole_address(void **state)
{
    struct fx *f = *state;
    const uint64_t va = 0x00403000;
    uint64_t pd = env_page(&f->t.env), pt = env_page(&f->t.env);
    put64(&f->t.env, f->root, pd | E_P); /* PDPTE 0 */
    put64(&f->t.env, pd + 8 * ((va >> 21) & 511), pt | UP);
    put64(&f->t.env, pt + 8 * ((va >> 12) & 511), DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG | R_CR0_WP,
                              .cr3 = f->root,
                              .cr4 = R_CR4_PAE,
                              .efer = R_EFER_NXE,
                              .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(f->t.vcpu, &r), 0);
    assert_int_equal(vmmu_vcpu_paging(f->t.vcpu)->mode, VMMU_X86_MODE_PAE);
    assert_maps(f, va, DATA(1));

    struct vmmu_x86_fault fault;
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, va | 0x100000000ull, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, va, 8), hpa(&f->t, DATA(1)));
    assert_int_equal(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, va | 0x0100000000000000ull, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(fault.error_code, 0);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, va, 8), hpa(&f->t, DATA(1)));
    /* The same address sign-extended from bit 56 is canonical, and so is
     * one canonical at 57 bits only. */
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, va | 0xff00000000000000ull, &fault), &fault);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, va | 0x0000800000000000ull, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, va, 8), hpa(&f->t, DATA(1)));
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 0, va, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, va, 8));
    assert_maps(f, va, DATA(1));
}

/* A CPU that supports 5-level paging checks the addresses of INVLPG and
 * INVPCID against 57 bits whatever CR4.LA57 says, one without against 48:
 * in 4-level paging 0x0000800000000000 is an address INVLPG acts on (it
 * drops the current PCID's paging-structure caches) and INVPCID type 0
 * takes, or a no-op and #GP(0). */
static void invalidation_addresses_are_canonical_at_57_bits_on_a_cpu_with_5_level_paging(
    void **state)
{
    (void)state;
    const uint64_t va = 0x0000800000000000ull;
    for (unsigned la57 = 0; la57 < 2; la57++) {
        struct tlb_env t;
        struct vmmu_x86_cpu cpu = {.vendor = VMMU_X86_VENDOR_INTEL,
                                   .features = la57 ? VMMU_X86_FEAT_ALL
                                                    : VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_LA57};
        assert_int_equal(env_init(&t.env, 1 * MiB, NULL), 0);
        assert_int_equal(vmmu_vcpu_create(t.env.vm, &cpu, &t.vcpu), 0);
        uint64_t root = env_page(&t.env);
        tlb_load(&t, root, 0, 0, 0); /* 4-level paging, CR4.LA57=0 */
        assert_int_equal(vmmu_vcpu_paging(t.vcpu)->mode, VMMU_X86_MODE_4LEVEL);
        struct vmmu_tlb_stats s;
        vmmu_vcpu_stats_reset(t.vcpu);
        assert_int_equal(vmmu_vcpu_invlpg(t.vcpu, va), 0);
        assert_int_equal(vmmu_vcpu_stats(t.vcpu, &s), 0);
        assert_int_equal(s.flush_page, la57 ? 1 : 0);
        struct vmmu_x86_fault fault;
        assert_int_equal(vmmu_vcpu_invpcid(t.vcpu, 0, 0, va, &fault), 0);
        assert_int_equal(fault.vector, la57 ? VMMU_X86_FAULT_NONE : VMMU_X86_VEC_GP);
        assert_int_equal(vmmu_vcpu_invpcid(t.vcpu, 0, 0, 0x0100000000000000ull, &fault), 0);
        assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
        tlb_env_fini(&t);
    }
}

/* With PCIDs off only PCID 0 exists: INVPCID type 3 after PCIDE went
 * 1 -> 0 flushes one PCID, not the slots the others held. */
static void invpcid_type3_after_pcids_were_turned_off_flushes_one_pcid(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    for (unsigned p = 2; p <= 4; p++)
        ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | p | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 & ~R_CR4_PCIDE, &fault), &fault);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 3, 0, 0, &fault), &fault);
    struct vmmu_tlb_stats s;
    assert_int_equal(vmmu_vcpu_stats(f->t.vcpu, &s), 0);
    assert_int_equal(s.flush_pcid, 1);
}

static void invpcid_without_the_feature_is_ud(void **state)
{
    (void)state;
    struct tlb_env t;
    struct vmmu_x86_cpu cpu = {.vendor = VMMU_X86_VENDOR_INTEL,
                               .features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_PCID};
    assert_int_equal(env_init(&t.env, 1 * MiB, NULL), 0);
    assert_int_equal(vmmu_vcpu_create(t.env.vm, &cpu, &t.vcpu), 0);
    struct vmmu_x86_fault fault;
    assert_int_equal(vmmu_vcpu_invpcid(t.vcpu, 2, 0, 0, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_UD);
    tlb_env_fini(&t);
}

/* ---- rights-changing registers ------------------------------------------- */

static void setting_cr0_wp_revokes_supervisor_writes_to_readonly_pages(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0); /* WP=0 */
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_WRITE).status, VMMU_TLB_OK);
    assert_non_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    uint64_t cr0 = vmmu_vcpu_paging(f->t.vcpu)->cr0;
    ok(vmmu_vcpu_set_cr0(f->t.vcpu, cr0 | R_CR0_WP, &fault), &fault);
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    assert_pf(acc(f, VA, VMMU_X86_ACC_WRITE), PF_P | PF_W);
    ok(vmmu_vcpu_set_cr0(f->t.vcpu, cr0, &fault), &fault); /* widening: no flush needed */
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_WRITE).status, VMMU_TLB_OK);
}

static void clearing_cr0_pg_flushes_everything(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA & 0xffffffffull, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_PGE, 0, 0);
    uint64_t lva = VA & 0xffffffffull;
    assert_maps(f, lva, DATA(1));
    /* Leave long mode: PG=0 (PCIDE is 0), then linear = physical. */
    uint64_t cr0 = vmmu_vcpu_paging(f->t.vcpu)->cr0;
    ok(vmmu_vcpu_set_cr0(f->t.vcpu, cr0 & ~R_CR0_PG, &fault), &fault);
    assert_ptr_equal(rd(f, DATA(5)), hpa(&f->t, DATA(5)));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, lva, 8));
}

/* Clearing PG keeps CR3's bits above 31; the vCPU's own registers then
 * load again, and the load still drops every translation. */
static void a_vcpu_that_left_long_mode_with_a_high_cr3_loads_its_own_registers(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *v = f->t.vcpu;
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0);
    ok(vmmu_vcpu_set_cr3(v, (1ull << 39) | f->root, &fault), &fault);
    ok(vmmu_vcpu_set_cr0(v, R_CR0_PE, &fault), &fault);
    const struct vmmu_x86_paging *pg = vmmu_vcpu_paging(v);
    assert_int_equal(pg->cr3, (1ull << 39) | f->root);
    assert_int_equal(pg->efer & R_EFER_LMA, 0);
    assert_maps(f, DATA(5), DATA(5));

    struct vmmu_x86_regs r = {.cr0 = pg->cr0, .cr3 = pg->cr3, .cr4 = pg->cr4, .efer = pg->efer,
                              .rflags = pg->rflags, .cpl = pg->cpl, .pkru = pg->pkru,
                              .pkrs = pg->pkrs};
    assert_int_equal(vmmu_vcpu_set_state(v, &r), 0);
    assert_int_equal(pg->cr3, (1ull << 39) | f->root);
    assert_int_equal(pg->mode, VMMU_X86_MODE_NONE);
    assert_null(vmmu_tlb_lookup_read(v, DATA(5), 8));
    assert_maps(f, DATA(5), DATA(5));
}

/* A PAE vCPU whose guest rewrote its PDPT after the last CR3 load is
 * saved (vmmu_x86_get_state) and loaded again with the same PDPTE
 * registers: it keeps translating as before, and the load still drops
 * every translation the TLB held. */
static void a_saved_pae_vcpu_loads_again_with_its_pdpte_registers_and_a_flushed_tlb(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *v = f->t.vcpu;
    const uint64_t va = 0x00403000;
    uint64_t pd = env_page(&f->t.env), pt = env_page(&f->t.env);
    uint64_t pd2 = env_page(&f->t.env), pt2 = env_page(&f->t.env);
    put64(&f->t.env, f->root, pd | E_P); /* PDPTE 0 */
    put64(&f->t.env, pd + 8 * ((va >> 21) & 511), pt | UP);
    put64(&f->t.env, pt + 8 * ((va >> 12) & 511), DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    put64(&f->t.env, pd2 + 8 * ((va >> 21) & 511), pt2 | UP);
    put64(&f->t.env, pt2 + 8 * ((va >> 12) & 511), DATA(2) | E_P | E_RW | E_US | E_A | E_D);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG | R_CR0_WP,
                              .cr3 = f->root,
                              .cr4 = R_CR4_PAE,
                              .efer = R_EFER_NXE,
                              .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(v, &r), 0);
    assert_maps(f, va, DATA(1));

    /* The guest points PDPTE 0 elsewhere and gives PDPTE 1 a reserved bit,
     * without loading CR3: the registers still hold the old PDPTEs. */
    put64(&f->t.env, f->root, pd2 | E_P);
    put64(&f->t.env, f->root + 8, pd2 | E_P | E_RW);
    struct vmmu_x86_regs saved;
    assert_int_equal(vmmu_x86_get_state(vmmu_vcpu_paging(v), &saved), 0);
    assert_int_equal(saved.flags, VMMU_X86_REGS_PDPTE);
    assert_int_equal(saved.pdpte[0], pd | E_P);

    uint64_t flushes = stats(f).flush_all;
    assert_int_equal(vmmu_vcpu_set_state(v, &saved), 0);
    assert_int_equal(stats(f).flush_all, flushes + 1);
    assert_null(vmmu_tlb_lookup_read(v, va, 8));
    assert_memory_equal(vmmu_vcpu_paging(v)->pdpte, saved.pdpte, sizeof(saved.pdpte));
    assert_maps(f, va, DATA(1));

    /* Without the flag the load reads the PDPT as it is now: refused for
     * the reserved bit, then, once that is gone, the new PDPTE 0. */
    saved.flags = 0;
    assert_int_equal(vmmu_vcpu_set_state(v, &saved), VMMU_EINVAL);
    assert_maps(f, va, DATA(1));
    put64(&f->t.env, f->root + 8, 0);
    assert_int_equal(vmmu_vcpu_set_state(v, &saved), 0);
    assert_maps(f, va, DATA(2));
}

static void setting_smep_revokes_supervisor_fetches_from_user_pages(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_FETCH).status, VMMU_TLB_OK);
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 | R_CR4_SMEP, &fault), &fault);
    assert_null(vmmu_tlb_lookup_fetch(f->t.vcpu, VA, 1));
    assert_pf(acc(f, VA, VMMU_X86_ACC_FETCH), PF_P | PF_I);
}

static void smap_revokes_supervisor_data_access_unless_ac_is_set(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
    assert_maps(f, VA, DATA(1));
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2), 0);
    uint64_t cr4 = vmmu_vcpu_paging(f->t.vcpu)->cr4;
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, cr4 | R_CR4_SMAP, &fault), &fault);
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
    /* The AC=1 context's entry keeps its rights under SMAP. */
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2), 0);
    assert_pf(acc(f, VA, 0), PF_P);
    /* The #PF dropped the page's entries of every context (SDM 4.10.4.1);
     * with AC=1 the access is allowed again. */
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_maps(f, VA, DATA(1));
}

/* ---- A #PF invalidates (SDM 4.10.4.1) ------------------------------------------- */

static uint64_t pde_addr(struct fx *f, uint64_t va)
{
    uint64_t t = f->root;
    for (unsigned l = 4; l > 2; l--)
        t = get64(&f->t.env, slot9(t, va, l)) & ADDR_MASK;
    return slot9(t, va, 2);
}

/* A guest widens a PDE's rights without INVLPG: the write through the
 * cached PDE may fault once, but the #PF drops the cached entries for its
 * address, so the retry walks the PDE in memory and succeeds (it used to
 * fault for ever: the guest's handler saw writable tables each time). */
static void a_pf_drops_the_cached_pde_so_a_widened_pde_works_on_retry(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    uint64_t pde = pde_addr(f, VA);
    put64(&f->t.env, pde, get64(&f->t.env, pde) & ~E_RW);
    tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, R_CR0_WP);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_OK); /* caches the read-only PDE */
    put64(&f->t.env, pde, get64(&f->t.env, pde) | E_RW); /* widened, no INVLPG */
    struct vmmu_tlb_result r = acc(f, VA + 4096, VMMU_X86_ACC_WRITE);
    if (r.status == VMMU_TLB_FAULT)
        assert_int_equal(r.fault.error_code, PF_P | PF_W); /* the stale PDE, once */
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, NULL), hpa(&f->t, DATA(2)));
}

/* A #PF drops the TLB entries of its page in every context: a read after
 * a write faulted on a PTE the guest cleared without INVLPG walks, and
 * faults too (it used to read the old page through the stale entry). */
static void a_pf_drops_the_faulting_pages_entries(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, R_CR0_WP);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_OK);
    put64(&f->t.env, pte, 0);
    assert_pf(acc(f, VA, VMMU_X86_ACC_WRITE), PF_W);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_pf(acc(f, VA, 0), 0);
}

static void implicit_accesses_use_supervisor_rights_at_cpl3(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D); /* supervisor page */
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_pf(acc(f, VA, 0), PF_P | PF_U);
    assert_ptr_equal(tacc(&f->t, VA, 8, VMMU_X86_ACC_IMPLICIT, NULL), hpa(&f->t, DATA(1)));
    assert_ptr_equal(vmmu_tlb_lookup_implicit(f->t.vcpu, VA, 8, VMMU_TLB_READ), hpa(&f->t, DATA(1)));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
}

static void nxe_toggle_makes_xd_apply(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    uint64_t pte = tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D | E_NX);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, 0, R_EFER_NXE, 0);
    assert_pf(acc(f, VA2, VMMU_X86_ACC_FETCH), PF_P | PF_I);
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_A | E_D);
    assert_int_equal(acc(f, VA2, VMMU_X86_ACC_FETCH).status, VMMU_TLB_OK);
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_A | E_D | E_NX);
    uint64_t efer = vmmu_vcpu_paging(f->t.vcpu)->efer;
    ok(vmmu_vcpu_set_efer(f->t.vcpu, efer & ~R_EFER_NXE, &fault), &fault);
    /* Without NXE bit 63 is reserved. */
    assert_pf(acc(f, VA2, VMMU_X86_ACC_FETCH), PF_P | 0x08u);
    assert_maps(f, VA, DATA(1));
}

static void tightening_pkru_revokes_user_page_access(void **state)
{
    struct fx *f = *state;
    uint64_t key3 = 3ull << 59;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D | key3);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_PKE, 0, 0);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_maps(f, VA, DATA(1));
    struct vmmu_tlb_stats before = stats(f);
    ok(vmmu_vcpu_set_pkru(f->t.vcpu, 1u << 4, &fault), &fault); /* key 2: untouched by us */
    assert_int_equal(stats(f).flush_contexts, before.flush_contexts);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    ok(vmmu_vcpu_set_pkru(f->t.vcpu, 1u << 6, &fault), &fault); /* key 3: access disable */
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_pf(acc(f, VA, 0), PF_P | PF_U | PF_PK);
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_FETCH).status, VMMU_TLB_OK); /* keys spare fetches */
}

static void tightening_pkrs_revokes_supervisor_page_writes(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D | (5ull << 59));
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_PKS, 0, R_CR0_WP);
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_WRITE).status, VMMU_TLB_OK);
    ok(vmmu_vcpu_set_pkrs(f->t.vcpu, 2ull << 10, &fault), &fault); /* key 5: write disable */
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    assert_pf(acc(f, VA, VMMU_X86_ACC_WRITE), PF_P | PF_W | PF_PK);
    assert_maps(f, VA, DATA(1));
}

static void cpl_and_ac_changes_flush_nothing(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D);
    tlb_load(&f->t, f->root, R_CR4_SMAP, 0, 0);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_maps(f, VA, DATA(1));
    struct vmmu_tlb_stats before = stats(f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 0), 0);
        assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
        assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2), 0);
        assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
        assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    }
    assert_int_equal(stats(f).flush_contexts, before.flush_contexts);
}

/* ---- table mechanics -------------------------------------------------------- */

static void flushing_an_empty_tlb_is_elided(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.flush_all, 1);
    assert_int_equal(s.flush_elided, s.flush_contexts);
}

static void a_conflicting_page_is_found_in_the_victim_array(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)n * 4096; /* same index */
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, va_b, DATA(2));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_maps(f, VA, DATA(1));
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.victim_hits, 1);
    assert_int_equal(s.walks, 0);
}

static void eight_conflicting_pairs_a_slot_apart_are_all_served_by_the_victims(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    /* Pair i: two pages at one table index; the eight indices differ mod 8. */
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++) {
        tmap(&f->t, f->root, VA + i * 4096ull, 1, UP, DATA(i) | E_P | E_RW | E_A | E_D);
        tmap(&f->t, f->root, VA + (n + i) * 4096ull, 1, UP, DATA(8 + i) | E_P | E_RW | E_A | E_D);
    }
    struct vmmu_x86_fault fault;
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        assert_maps(f, VA + i * 4096ull, DATA(i));
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        assert_maps(f, VA + (n + i) * 4096ull, DATA(8 + i));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
            assert_maps(f, VA + i * 4096ull, DATA(i));
        for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
            assert_maps(f, VA + (n + i) * 4096ull, DATA(8 + i));
    }
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.victim_hits, 3 * 2 * VMMU_TLB_VICTIMS);
    assert_int_equal(s.walks, 0);
    assert_int_equal(s.fills, 0);
}

static void a_busy_context_grows_at_its_next_flush(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    for (unsigned i = 0; i < n; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    for (unsigned i = 0; i < n; i++)
        assert_non_null(rd(f, VA + (uint64_t)i * 4096));
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
}

static void an_idle_context_shrinks_after_a_window_of_flushes(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    for (int i = 0; i < 20; i++) {
        assert_non_null(rd(f, VA));
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    }
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), VMMU_TLB_ENTRIES_MIN);
    assert_maps(f, VA, DATA(1));
}

static void a_warm_miss_reads_one_level_from_the_paging_structure_cache(void **state)
{
    struct fx *f = *state;
    for (unsigned i = 0; i < 4; i++)
        tmap(&f->t, f->root, VA + i * 4096ull, 1, UP, DATA(i) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(0));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    for (unsigned i = 1; i < 4; i++)
        assert_maps(f, VA + i * 4096ull, DATA(i));
    assert_int_equal(stats(f).psc_hits, 3);
}

static void invlpg_drops_paging_structure_caches_of_the_current_pcid(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    /* Move VA's whole 2 MiB region to a new page table. */
    uint64_t pt = env_page(&f->t.env);
    uint64_t va3 = VA + 0x5000; /* same 2 MiB region as VA */
    put64(&f->t.env, pt + 8 * idx9(va3, 1), DATA(9) | E_P | E_RW | E_A | E_D);
    uint64_t pdt = get64(&f->t.env, slot9(get64(&f->t.env, slot9(f->root, VA, 4)) & ADDR_MASK, VA, 3)) & ADDR_MASK;
    put64(&f->t.env, slot9(pdt, VA, 2), pt | UP | E_A);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    assert_maps(f, va3, DATA(9)); /* walked under the new PDE, not the cached old one */
}

/* ---- wrong arguments ---------------------------------------------------------- */

/* Every vCPU call given a NULL vCPU, a NULL out-pointer or an impossible
 * value returns VMMU_EINVAL and leaves the vCPU as it was: the cached
 * translation stays, the registers and statistics do not move. */
static void vcpu_calls_with_wrong_arguments_get_einval_and_change_nothing(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *v = f->t.vcpu;
    struct vmmu_x86_fault fl;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    const struct vmmu_x86_paging before = *vmmu_vcpu_paging(v);
    struct vmmu_tlb_stats s0 = stats(f);

    assert_int_equal(vmmu_vcpu_create(NULL, NULL, &(struct vmmu_vcpu *){NULL}), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_create(f->t.env.vm, NULL, NULL), VMMU_EINVAL);
    const struct vmmu_x86_cpu bad_cpu[] = {
        {(enum vmmu_x86_vendor)7, VMMU_X86_FEAT_ALL, 0},          /* no such vendor */
        {VMMU_X86_VENDOR_AMD, VMMU_X86_FEAT_ALL + 1, 0},          /* unknown feature bit */
        {VMMU_X86_VENDOR_INTEL, VMMU_X86_FEAT_LA57, 0},           /* LA57 without long mode */
        {VMMU_X86_VENDOR_INTEL, VMMU_X86_FEAT_ALL, VMMU_X86_MAXPHYADDR_MIN - 1},
        {VMMU_X86_VENDOR_INTEL, VMMU_X86_FEAT_ALL, VMMU_X86_MAXPHYADDR_MAX + 1},
    };
    for (unsigned i = 0; i < sizeof(bad_cpu) / sizeof(bad_cpu[0]); i++) {
        struct vmmu_vcpu *out = (struct vmmu_vcpu *)(uintptr_t)1; /* must stay untouched */
        assert_int_equal(vmmu_vcpu_create(f->t.env.vm, &bad_cpu[i], &out), VMMU_EINVAL);
        assert_ptr_equal(out, (struct vmmu_vcpu *)(uintptr_t)1);
    }
    vmmu_vcpu_destroy(NULL);
    assert_null(vmmu_vcpu_paging(NULL));
    assert_int_equal(vmmu_vcpu_tlb_entries(NULL), 0);

    assert_int_equal(vmmu_vcpu_set_cr0(NULL, before.cr0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cr0(v, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cr3(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cr3(v, f->root2, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cr4(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cr4(v, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_efer(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_efer(v, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_pkru(NULL, ~0u, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_pkru(v, ~0u, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_pkrs(NULL, ~0u, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_pkrs(v, ~0u, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_rflags(NULL, 2), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cpl(NULL, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cpl(v, 4), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_cpl(v, ~0u), VMMU_EINVAL);
    struct vmmu_x86_regs r = regs_4level(f->root2);
    assert_int_equal(vmmu_vcpu_set_state(NULL, &r), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_set_state(v, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_invlpg(NULL, VA), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_invpcid(NULL, VMMU_INVPCID_ALL_GLOBAL, 0, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_invpcid(v, VMMU_INVPCID_ALL_GLOBAL, 0, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_stats(NULL, &s0), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_stats(v, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_stats_reset(NULL), VMMU_EINVAL);

    /* Nothing moved: same registers, the translation still hits inline,
     * and no flush or fill was counted. */
    const struct vmmu_x86_paging *after = vmmu_vcpu_paging(v);
    assert_int_equal(after->cr0, before.cr0);
    assert_int_equal(after->cr3, before.cr3);
    assert_int_equal(after->cr4, before.cr4);
    assert_int_equal(after->efer, before.efer);
    assert_int_equal(after->cpl, before.cpl);
    assert_int_equal(after->pkru, before.pkru);
    assert_int_equal(after->pkrs, before.pkrs);
    assert_int_equal(after->rflags, before.rflags);
    struct vmmu_tlb_stats s1 = stats(f);
    assert_memory_equal(&s1, &s0, sizeof(s0));
    assert_ptr_equal(vmmu_tlb_lookup_read(v, VA + 8, 8), hpa(&f->t, DATA(1) + 8));
}

/* ---- promises of the headers, checked one by one ----------------------------- */

static void the_slow_path_runs_without_a_result_record_for_every_outcome(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_A); /* clean */
    tmap(&f->t, f->root, VA2, 1, UP, (64 * MiB) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    struct vmmu_vcpu *v = f->t.vcpu;
    /* OK: a walk, a warm miss, the entry at the index, a walk that sets D,
     * an inline hit. */
    assert_ptr_equal(vmmu_tlb_fill(v, VA + 8, 8, 0, NULL), hpa(&f->t, DATA(1) + 8));
    assert_ptr_equal(vmmu_tlb_fill(v, VA + 4096, 8, 0, NULL), hpa(&f->t, DATA(2)));
    assert_ptr_equal(vmmu_tlb_fill(v, VA + 3, 4, 0, NULL), hpa(&f->t, DATA(1) + 3));
    assert_ptr_equal(vmmu_tlb_fill(v, VA + 4096, 8, VMMU_X86_ACC_WRITE, NULL), hpa(&f->t, DATA(2)));
    assert_ptr_equal(vmmu_tlb_translate(v, VA + 16, 8, 0, NULL), hpa(&f->t, DATA(1) + 16));
    /* NULL: MMIO (walked, then from the entry), #PF, a crossing, #GP, bad
     * arguments. */
    assert_null(vmmu_tlb_fill(v, VA2, 8, 0, NULL));
    assert_null(vmmu_tlb_fill(v, VA2, 8, 0, NULL));
    assert_null(vmmu_tlb_fill(v, VA + 2 * 4096, 8, 0, NULL));
    assert_null(vmmu_tlb_fill(v, VA + 0xffc, 8, 0, NULL));
    assert_null(vmmu_tlb_fill(v, VA ^ (1ull << 62), 8, 0, NULL));
    assert_null(vmmu_tlb_fill(v, VA, 0, 0, NULL));
    assert_null(vmmu_tlb_fill(NULL, VA, 8, 0, NULL));
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.faults, 2);
    assert_int_equal(s.not_ram, 2);
    assert_int_equal(s.warm_misses, 1);
}

static void a_whole_page_access_is_served_and_one_byte_more_crosses(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    struct vmmu_tlb_result r;
    void *host = vmmu_tlb_fill(f->t.vcpu, VA, 4096, VMMU_X86_ACC_WRITE, &r);
    assert_ptr_equal(host, hpa(&f->t, DATA(1)));
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_int_equal(r.page_size, 4096);
    assert_null(vmmu_tlb_fill(f->t.vcpu, VA + 1, 4096, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_CROSSES);
    assert_null(vmmu_tlb_fill(f->t.vcpu, VA + 0xfff, 2, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_CROSSES);
    assert_ptr_equal(vmmu_tlb_fill(f->t.vcpu, VA + 0xfff, 1, 0, &r), hpa(&f->t, DATA(1) + 0xfff));
    assert_null(vmmu_tlb_fill(f->t.vcpu, VA, 4097, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_ERROR);
    assert_int_equal(r.error, VMMU_EINVAL);
}

static void every_slow_path_call_ending_not_ram_is_counted(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tmap(&f->t, f->root, VA, 1, UP, (64 * MiB) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    /* The first access walks; the next ones are answered by the entry the
     * first one filled (MMIO never hits inline).  Each ends as NOT_RAM. */
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(acc(f, VA + 8 * i, 0).status, VMMU_TLB_NOT_RAM);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.slow_hits, 2);
    assert_int_equal(s.not_ram, 3);
}

static void an_mmio_entry_answers_the_fill_only_for_the_kinds_it_allows(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tmap(&f->t, f->root, VA, 1, UP, (64 * MiB) | E_P | E_A | E_D); /* read-only */
    tlb_load(&f->t, f->root, 0, 0, R_CR0_WP);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_NOT_RAM);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    /* The entry answers a read with the page's gpa, type and region, no
     * walk... */
    struct vmmu_tlb_result r = acc(f, VA + 0x18, 0);
    assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
    assert_null(r.host);
    assert_int_equal(r.gpa, 64 * MiB + 0x18);
    assert_int_equal(r.type, VMMU_MEM_MMIO);
    assert_int_equal(r.page_size, 4096);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.fault.vector, VMMU_X86_FAULT_NONE);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.walks, 0);
    assert_int_equal(s.slow_hits, 1);
    assert_int_equal(s.not_ram, 1);
    /* ...but not a write or a fetch to the read-only page: they walk,
     * and the write faults (a fetch of MMIO is the caller's business). */
    assert_pf(acc(f, VA + 0x18, VMMU_X86_ACC_WRITE), PF_P | PF_W);
    assert_int_equal(stats(f).walks, 1);
    /* A user read of the supervisor page faults too (another context). */
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_pf(acc(f, VA, 0), PF_P | PF_U);
}

static void an_implicit_access_to_a_user_mmio_page_is_not_answered_by_the_user_entry(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tmap(&f->t, f->root, VA, 1, UP, (64 * MiB) | E_P | E_RW | E_US | E_A | E_D);
    tlb_load(&f->t, f->root, R_CR4_SMAP, 0, 0);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    /* CPL 3 fills the user context's entry of the user MMIO page... */
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_NOT_RAM);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_NOT_RAM);
    /* ...which must not answer an implicit (supervisor) access: SMAP
     * forbids it the user page, whatever EFLAGS.AC. */
    assert_pf(acc(f, VA, VMMU_X86_ACC_IMPLICIT), PF_P);
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
    assert_pf(acc(f, VA, VMMU_X86_ACC_IMPLICIT), PF_P);
}

static void a_not_ram_answer_from_the_victim_array_is_counted(void **state)
{
    struct fx *f = *state;
    add_mmio_and_rom(f);
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)n * 4096; /* same index */
    tmap(&f->t, f->root, VA, 1, UP, (64 * MiB) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_NOT_RAM);
    assert_maps(f, va_b, DATA(2)); /* pushes the MMIO entry out to its victim slot */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_int_equal(acc(f, VA, 0).status, VMMU_TLB_NOT_RAM);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.victim_hits, 1);
    assert_int_equal(s.walks, 0);
    assert_int_equal(s.not_ram, 1);
}

static void translate_on_an_inline_hit_writes_only_status_and_host(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, VA, DATA(1));
    struct vmmu_tlb_result r, before;
    memset(&r, 0x5a, sizeof(r));
    r.status = VMMU_TLB_FAULT;
    before = r;
    void *host = vmmu_tlb_translate(f->t.vcpu, VA + 8, 8, 0, &r);
    assert_ptr_equal(host, hpa(&f->t, DATA(1) + 8));
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_ptr_equal(r.host, host);
    /* Everything else is left as the caller had it. */
    r.status = before.status;
    r.host = before.host;
    assert_memory_equal(&r, &before, sizeof(r));
}

static void a_faulting_register_write_flushes_nothing(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D | E_G);
    tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, R_CR4_PGE, R_EFER_NXE, R_CR0_WP);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    struct vmmu_tlb_stats s0 = stats(f);
    const struct vmmu_x86_paging *pg = vmmu_vcpu_paging(f->t.vcpu);
    struct vmmu_x86_fault fault;
    /* Each write below would flush if it took effect; each raises #GP:
     * a reserved CR4 bit, PAE off in long mode, PG without PE, a reserved
     * EFER bit, a reserved CR3 bit. */
    struct vmmu_vcpu *v = f->t.vcpu;
    assert_int_equal(vmmu_vcpu_set_cr4(v, (pg->cr4 & ~R_CR4_PGE) | (1ull << 63), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_cr4(v, pg->cr4 & ~R_CR4_PAE, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_cr0(v, pg->cr0 & ~R_CR0_PE, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_efer(v, (pg->efer & ~R_EFER_NXE) | (1ull << 63), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_set_cr3(v, f->root | (1ull << 62), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    struct vmmu_tlb_stats s1 = stats(f);
    assert_memory_equal(&s1, &s0, sizeof(s0));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8), hpa(&f->t, DATA(2)));
}

static void changes_that_only_widen_rights_flush_nothing(void **state)
{
    struct fx *f = *state;
    uint64_t key3 = 3ull << 59;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D | key3);
    tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D | key3);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root, R_CR4_SMEP | R_CR4_SMAP | R_CR4_PKE | R_CR4_PKS, 0, R_CR0_WP);
    ok(vmmu_vcpu_set_pkru(f->t.vcpu, 2u << 6, &fault), &fault);          /* key 3: WD */
    ok(vmmu_vcpu_set_pkrs(f->t.vcpu, 2ull << 6, &fault), &fault);        /* key 3: WD */
    /* AC=1: the supervisor context may read the user page under SMAP. */
    assert_int_equal(vmmu_vcpu_set_rflags(f->t.vcpu, 2 | R_RFLAGS_AC), 0);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    struct vmmu_tlb_stats s0 = stats(f);
    const struct vmmu_x86_paging *pg = vmmu_vcpu_paging(f->t.vcpu);
    ok(vmmu_vcpu_set_cr0(f->t.vcpu, pg->cr0 & ~R_CR0_WP, &fault), &fault);
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, pg->cr4 & ~(R_CR4_SMEP | R_CR4_SMAP), &fault), &fault);
    ok(vmmu_vcpu_set_pkru(f->t.vcpu, 0, &fault), &fault);
    ok(vmmu_vcpu_set_pkrs(f->t.vcpu, 0, &fault), &fault);
    ok(vmmu_vcpu_set_cr4(f->t.vcpu, pg->cr4 & ~(R_CR4_PKE | R_CR4_PKS), &fault), &fault);
    struct vmmu_tlb_stats s1 = stats(f);
    assert_int_equal(s1.flush_contexts, s0.flush_contexts);
    assert_int_equal(s1.flush_rights, s0.flush_rights);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8), hpa(&f->t, DATA(1)));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8), hpa(&f->t, DATA(2)));
    /* The too-strict write comparators now walk and allow the writes. */
    assert_int_equal(acc(f, VA2, VMMU_X86_ACC_WRITE).status, VMMU_TLB_OK);
    assert_int_equal(acc(f, VA, VMMU_X86_ACC_WRITE).status, VMMU_TLB_OK);
}

static void the_last_page_of_the_address_space_fills_hits_and_is_invalidated(void **state)
{
    struct fx *f = *state;
    const uint64_t top = 0xfffffffffffff000ull;
    uint64_t pte = tmap(&f->t, f->root, top, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, top + 0xff8, DATA(1));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, top + 0xff0, 16), hpa(&f->t, DATA(1) + 0xff0));
    struct vmmu_tlb_result r;
    assert_null(tacc(&f->t, top + 0xffc, 8, 0, &r)); /* would wrap to 0 */
    assert_int_equal(r.status, VMMU_TLB_CROSSES);
    put64(&f->t.env, pte, DATA(2) | E_P | E_RW | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, top + 0xfff), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, top + 0xff8, 8));
    assert_maps(f, top + 0xff8, DATA(2));
}

static void invlpg_drops_a_large_page_at_the_top_of_the_address_space(void **state)
{
    struct fx *f = *state;
    const uint64_t big = 0xffffffffc0000000ull; /* the last 1 GiB page */
    uint64_t pdpte = tmap(&f->t, f->root, big, 3, UP, 0 | E_P | E_RW | E_PS | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_maps(f, big + DATA(1), DATA(1));
    assert_maps(f, big + DATA(2), DATA(2));
    put64(&f->t.env, pdpte, 0);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, 0xfffffffffffff000ull), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + DATA(1), 8));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + DATA(2), 8));
    assert_pf(acc(f, big + DATA(2), 0), 0);
}

static void invpcid_type0_inside_a_large_page_drops_all_of_it_but_not_globals(void **state)
{
    struct fx *f = *state;
    const uint64_t big = 0x0000400000200000ull, gbig = 0x0000400000400000ull;
    uint64_t pde = tmap(&f->t, f->root, big, 2, UP, (2 * MiB) | E_P | E_RW | E_PS | E_A | E_D);
    tmap(&f->t, f->root, gbig, 2, UP, (4 * MiB) | E_P | E_RW | E_PS | E_G | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_maps(f, big + 0x1000, 2 * MiB + 0x1000);
    assert_maps(f, big + 0x7000, 2 * MiB + 0x7000);
    assert_maps(f, gbig + 0x3000, 4 * MiB + 0x3000);
    put64(&f->t.env, pde, (6 * MiB) | E_P | E_RW | E_PS | E_A | E_D);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, big + 0x1ff008, &fault), &fault);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, gbig, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + 0x1000, 8));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, big + 0x7000, 8));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, gbig + 0x3000, 8),
                     hpa(&f->t, 4 * MiB + 0x3000));
    assert_maps(f, big + 0x7000, 6 * MiB + 0x7000);
}

static void invpcid_type0_reaches_a_pcid_that_is_not_current(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VA2, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, VA2, DATA(2));
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root2 | 2, &fault), &fault);
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_A | E_D);
    ok(vmmu_vcpu_invpcid(f->t.vcpu, 0, 1, VA, &fault), &fault);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_maps(f, VA, DATA(3));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA2, 8), hpa(&f->t, DATA(2)));
}

static void invlpg_drops_a_page_waiting_in_the_victim_array(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)n * 4096; /* same index */
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), &fault);
    assert_maps(f, VA, DATA(1));
    assert_maps(f, va_b, DATA(2)); /* VA now waits in its victim slot */
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_maps(f, VA, DATA(3));
    assert_int_equal(stats(f).victim_hits, 0);
}

static void invlpg_drops_a_global_page_waiting_in_another_pcids_victim_array(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)n * 4096; /* same index */
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_G | E_A | E_D);
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    assert_maps(f, VA, DATA(1));
    assert_maps(f, va_b, DATA(2)); /* VA now waits in PCID 1's victim slot */
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 2, &fault), &fault);
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_G | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    ok(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), &fault);
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, va_b, 8), hpa(&f->t, DATA(2)));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_maps(f, VA, DATA(3));
    assert_int_equal(stats(f).victim_hits, 0);
}

static void stats_reset_zeroes_every_counter(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    for (unsigned i = 0; i < 2; i++) {
        assert_maps(f, VA, DATA(1));
        assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    }
    assert_int_equal(vmmu_vcpu_stats_reset(f->t.vcpu), 0);
    struct vmmu_tlb_stats s = stats(f), zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&s, &zero, sizeof(s));
}

static void guest_load_and_store_copy_every_size_at_every_alignment(void **state)
{
    (void)state;
    _Alignas(16) uint8_t mem[64], out[32], want[32];
    for (unsigned size = 0; size <= 16; size++) {
        for (unsigned at = 0; at < 16; at++) {
            for (unsigned i = 0; i < sizeof(mem); i++)
                mem[i] = (uint8_t)(i * 7 + 1);
            memset(out, 0xee, sizeof(out));
            memcpy(want, out, sizeof(want));
            memcpy(want + 4, mem + at, size);
            vmmu_guest_load(out + 4, mem + at, size);
            assert_memory_equal(out, want, sizeof(out));
            uint8_t wmem[64];
            memcpy(wmem, mem, sizeof(mem));
            memcpy(wmem + at, out + 4, size); /* the same bytes back */
            for (unsigned i = 0; i < size; i++)
                out[4 + i] = (uint8_t)~out[4 + i];
            memcpy(wmem + at, out + 4, size);
            vmmu_guest_store(mem + at, out + 4, size);
            assert_memory_equal(mem, wmem, sizeof(mem));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(a_filled_page_hits_inline_with_the_host_address),
        T(first_write_to_a_clean_page_walks_as_a_write_and_sets_d),
        T(misaligned_accesses_miss_inline_and_are_served_by_the_slow_path),
        T(page_crossing_accesses_are_reported_for_splitting),
        T(readonly_page_gets_no_write_comparator_and_a_write_faults),
        T(mmio_and_rom_pages_go_to_the_slow_path_as_not_ram),
        T(an_mmio_entry_answers_the_fill_only_for_the_kinds_it_allows),
        T(an_implicit_access_to_a_user_mmio_page_is_not_answered_by_the_user_entry),
        T(first_write_to_a_clean_mmio_or_rom_page_sets_d),
        T(writes_with_paging_off_reach_ram),
        T(code_pages_report_writes),
        T(a_cleared_code_mark_is_no_longer_reported),
        T(after_invlpg_the_new_translation_is_used),
        T(invlpg_drops_the_page_in_every_context),
        T(invlpg_drops_global_entries_of_other_pcids),
        T(invlpg_keeps_non_global_entries_of_other_pcids),
        T(invlpg_inside_a_large_page_drops_all_of_it_and_nothing_else),
        T(invlpg_of_a_non_canonical_address_is_a_no_op),
        T(cr3_write_without_pcids_drops_non_global_entries),
        T(a_global_entry_survives_cr3_writes_and_dies_with_a_pge_toggle),
        T(a_pge_toggle_drops_globals_of_every_pcid),
        T(a_pcid_tagged_entry_stays_usable_across_a_no_flush_cr3_switch),
        T(cr3_write_without_no_flush_drops_that_pcids_entries),
        T(more_pcids_than_slots_recycle_the_least_recently_used),
        T(switching_back_to_a_pcid_keeps_it_from_being_recycled),
        T(clearing_pcide_flushes_everything),
        T(setting_pcide_keeps_pcid_zero_entries),
        T(invpcid_type0_drops_one_address_of_one_pcid_but_not_globals),
        T(invpcid_type1_drops_a_pcids_non_global_entries),
        T(invpcid_type2_drops_everything_including_globals),
        T(invpcid_type3_drops_every_pcid_but_keeps_globals),
        T(invpcid_raises_gp_as_the_sdm_lists),
        T(a_refused_invpcid_drops_nothing),
        T(invpcid_type0_outside_64_bit_mode_takes_the_whole_address),
        T(invalidation_addresses_are_canonical_at_57_bits_on_a_cpu_with_5_level_paging),
        T(invpcid_type3_after_pcids_were_turned_off_flushes_one_pcid),
        cmocka_unit_test(invpcid_without_the_feature_is_ud),
        T(setting_cr0_wp_revokes_supervisor_writes_to_readonly_pages),
        T(clearing_cr0_pg_flushes_everything),
        T(a_vcpu_that_left_long_mode_with_a_high_cr3_loads_its_own_registers),
        T(a_saved_pae_vcpu_loads_again_with_its_pdpte_registers_and_a_flushed_tlb),
        T(setting_smep_revokes_supervisor_fetches_from_user_pages),
        T(smap_revokes_supervisor_data_access_unless_ac_is_set),
        T(a_pf_drops_the_cached_pde_so_a_widened_pde_works_on_retry),
        T(a_pf_drops_the_faulting_pages_entries),
        T(implicit_accesses_use_supervisor_rights_at_cpl3),
        T(nxe_toggle_makes_xd_apply),
        T(tightening_pkru_revokes_user_page_access),
        T(tightening_pkrs_revokes_supervisor_page_writes),
        T(cpl_and_ac_changes_flush_nothing),
        T(flushing_an_empty_tlb_is_elided),
        T(a_conflicting_page_is_found_in_the_victim_array),
        T(eight_conflicting_pairs_a_slot_apart_are_all_served_by_the_victims),
        T(a_busy_context_grows_at_its_next_flush),
        T(an_idle_context_shrinks_after_a_window_of_flushes),
        T(a_warm_miss_reads_one_level_from_the_paging_structure_cache),
        T(invlpg_drops_paging_structure_caches_of_the_current_pcid),
        T(vcpu_calls_with_wrong_arguments_get_einval_and_change_nothing),
        T(the_slow_path_runs_without_a_result_record_for_every_outcome),
        T(a_whole_page_access_is_served_and_one_byte_more_crosses),
        T(every_slow_path_call_ending_not_ram_is_counted),
        T(a_not_ram_answer_from_the_victim_array_is_counted),
        T(translate_on_an_inline_hit_writes_only_status_and_host),
        T(a_faulting_register_write_flushes_nothing),
        T(changes_that_only_widen_rights_flush_nothing),
        T(the_last_page_of_the_address_space_fills_hits_and_is_invalidated),
        T(invlpg_drops_a_large_page_at_the_top_of_the_address_space),
        T(invpcid_type0_inside_a_large_page_drops_all_of_it_but_not_globals),
        T(invpcid_type0_reaches_a_pcid_that_is_not_current),
        T(invlpg_drops_a_page_waiting_in_the_victim_array),
        T(invlpg_drops_a_global_page_waiting_in_another_pcids_victim_array),
        T(stats_reset_zeroes_every_counter),
        cmocka_unit_test(guest_load_and_store_copy_every_size_at_every_alignment),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
