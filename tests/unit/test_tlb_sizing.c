/* SPDX-License-Identifier: MIT */
/* The resize rule (src/tlb/table.c, docs/tlb.md "Flushing and sizing"):
 * demand is the distinct pages filled since the last flush, which is the
 * number of valid entries when no fill pushed another page out, and a
 * table grows only when the demand is above 70 % of it.  A fill that
 * replaces the entry of the same page (the first write to a page read
 * while its D bit was clear, a page filled again after INVLPG) pushes
 * nothing out and adds no distinct page; both counted as demand, and 54 to
 * 59 % of a table grew it.  A CR3 write that keeps a global entry runs the
 * rule too (it never did: such a context kept its size). */
#include "test_tlb_env.h"

static const uint64_t UP = E_P | E_RW | E_US;
#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000000000ull;

static void pages_read_then_written_keep_a_table_that_holds_them(void **state)
{
    (void)state;
    struct tlb_env t;
    assert_int_equal(tlb_env_init(&t, 16 * MiB), 0);
    uint64_t root = env_page(&t.env);
    tlb_load(&t, root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(t.vcpu);
    unsigned pages = n * 6 / 10; /* 60 %: consecutive pages, one index each */
    uint64_t pte[4096];
    for (unsigned i = 0; i < pages; i++)
        pte[i] = tmap(&t, root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A);
    /* A process touching its pages: each one read, then written (D was clear). */
    for (unsigned i = 0; i < pages; i++)
        assert_non_null(tacc(&t, VA + (uint64_t)i * 4096, 8, 0, NULL));
    for (unsigned i = 0; i < pages; i++) {
        assert_non_null(tacc(&t, VA + (uint64_t)i * 4096, 8, VMMU_X86_ACC_WRITE, NULL));
        assert_true(get64(&t.env, pte[i]) & E_D);
    }
    struct vmmu_tlb_stats s;
    assert_int_equal(vmmu_vcpu_stats(t.vcpu, &s), 0);
    assert_int_equal(s.victim_hits, 0); /* nothing was pushed out */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(t.vcpu), 0);
    /* 60 % of the table: no reason to grow. */
    if (vmmu_vcpu_tlb_entries(t.vcpu) != n)
        fail_msg("%u distinct pages (%u %% of %u entries, none pushed out) grew the table to %u",
                 pages, pages * 100 / n, n, vmmu_vcpu_tlb_entries(t.vcpu));
    tlb_env_fini(&t);
}

static void pages_filled_again_after_invlpg_keep_a_table_that_holds_them(void **state)
{
    (void)state;
    struct tlb_env t;
    assert_int_equal(tlb_env_init(&t, 16 * MiB), 0);
    uint64_t root = env_page(&t.env);
    tlb_load(&t, root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(t.vcpu);
    unsigned pages = n * 55 / 100; /* 55 % */
    for (unsigned i = 0; i < pages; i++)
        tmap(&t, root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    /* Each page used, invalidated (a remap, copy-on-write) and used again. */
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < pages; i++) {
            assert_non_null(tacc(&t, VA + (uint64_t)i * 4096, 8, 0, NULL));
            if (round < 2)
                assert_int_equal(vmmu_vcpu_invlpg(t.vcpu, VA + (uint64_t)i * 4096), 0);
        }
    }
    assert_int_equal(vmmu_vcpu_tlb_flush_all(t.vcpu), 0);
    if (vmmu_vcpu_tlb_entries(t.vcpu) != n)
        fail_msg("%u distinct pages (%u %% of %u entries, none pushed out) grew the table to %u",
                 pages, pages * 100 / n, n, vmmu_vcpu_tlb_entries(t.vcpu));
    tlb_env_fini(&t);
}

/* A context that also holds one global page (a kernel's, with CR4.PGE)
 * is never emptied by a CR3 write, only stripped of its non-global
 * entries: its demand at that flush is never measured.  Returns the
 * table size after four rounds of 4n pages, each ended by a CR3 write. */
static unsigned entries_after_cr3_writes(bool with_global_page, unsigned *n)
{
    struct tlb_env t;
    assert_int_equal(tlb_env_init(&t, 16 * MiB), 0);
    uint64_t root = env_page(&t.env);
    tlb_load(&t, root, VMMU_X86_CR4_PGE, 0, 0);
    *n = vmmu_vcpu_tlb_entries(t.vcpu);
    unsigned pages = 4 * *n;
    for (unsigned i = 0; i < pages; i++)
        tmap(&t, root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    tmap(&t, root, VA - 4096, 1, UP, DATA(0) | E_P | E_RW | E_A | E_D | E_G);
    for (int round = 0; round < 4; round++) {
        if (with_global_page)
            assert_non_null(tacc(&t, VA - 4096, 8, 0, NULL));
        for (unsigned i = 0; i < pages; i++)
            assert_non_null(tacc(&t, VA + (uint64_t)i * 4096, 8, 0, NULL));
        struct vmmu_x86_fault f;
        assert_int_equal(vmmu_vcpu_set_cr3(t.vcpu, root, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    }
    unsigned entries = vmmu_vcpu_tlb_entries(t.vcpu);
    tlb_env_fini(&t);
    return entries;
}

static void a_cr3_write_grows_a_saturated_context_that_holds_a_global_page(void **state)
{
    (void)state;
    unsigned n;
    /* Without the global page the first CR3 write grows the table. */
    assert_true(entries_after_cr3_writes(false, &n) > n);
    unsigned with = entries_after_cr3_writes(true, &n);
    if (with == n)
        fail_msg("with one global page among 4 x %u pages the table stays at %u entries", n,
                 n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pages_read_then_written_keep_a_table_that_holds_them),
        cmocka_unit_test(pages_filled_again_after_invlpg_keep_a_table_that_holds_them),
        cmocka_unit_test(a_cr3_write_grows_a_saturated_context_that_holds_a_global_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
