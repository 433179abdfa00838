/* SPDX-License-Identifier: MIT */
/* The software TLB's fast paths, each held to the answer of the slower
 * path it short-cuts: the probe form of the hit path against
 * vmmu_tlb_lookup(), the lean warm-miss fill against the full walker, the
 * O(1) flush of a vCPU that holds nothing, and the resize policy. */
/* This program counts inline hits (vmmu_tlb_stats::hits), as a caller who
 * wants them does: the define must come before vmmu/tlb.h. */
#define VMMU_TLB_COUNT_HITS 1
#include "test_tlb_env.h"
#include "tlb/tlb_internal.h"

static const uint64_t UP = E_P | E_RW | E_US;

struct fx {
    struct tlb_env t;
    uint64_t root;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || tlb_env_init(&f->t, 16 * MiB))
        return -1;
    f->root = env_page(&f->t.env);
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

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000123000ull;

/* ---- the probe form ---------------------------------------------------------- */

static void the_probe_hits_exactly_where_lookup_hits(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A); /* D=0: no write comparator */
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    struct vmmu_tlb_view view = vmmu_tlb_view(f->t.vcpu);
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    for (unsigned k = 0; k < VMMU_TLB_KINDS; k++) {
        for (unsigned s = 0; s < 5; s++) {
            for (uint64_t off = 0; off < 64; off++) {
                uint64_t va = VA + 4096 - 32 + off; /* near the end: some cross */
                void *want = vmmu_tlb_lookup(f->t.vcpu, va, sizes[s], (enum vmmu_tlb_kind)k);
                void *got = (void *)&view; /* must stay untouched on a miss */
                bool hit = vmmu_tlb_probe(view, va, sizes[s], (enum vmmu_tlb_kind)k, &got);
                assert_int_equal(hit, want != NULL);
                if (hit)
                    assert_ptr_equal(got, want);
                else
                    assert_ptr_equal(got, (void *)&view);
            }
        }
    }
    /* Reads hit, fetches hit, writes do not (D clear), misaligned ones miss. */
    void *host;
    assert_true(vmmu_tlb_probe(view, VA + 8, 8, VMMU_TLB_READ, &host));
    assert_ptr_equal(host, hpa(&f->t, DATA(1) + 8));
    assert_true(vmmu_tlb_probe(view, VA + 8, 8, VMMU_TLB_FETCH, &host));
    assert_false(vmmu_tlb_probe(view, VA + 8, 8, VMMU_TLB_WRITE, &host));
    assert_false(vmmu_tlb_probe(view, VA + 4, 8, VMMU_TLB_READ, &host));
    assert_false(vmmu_tlb_probe(view, VA + 4096, 8, VMMU_TLB_READ, &host));
}

/* The hit test keeps bits 0..(size - 1) of va in the compared value: past
 * 16 bytes those reach the comparator's flags.  A clean page's write
 * comparator is the page with NOTDIRTY (bit 7); read as an address bit,
 * size - 1 = 0x80 would match it at offset 0x80, and so would size 0
 * (all ones).  Every hit form must leave such sizes to the slow path,
 * which then sets D as the CPU does. */
static void sizes_the_hit_test_cannot_answer_for_never_hit(void **state)
{
    struct fx *f = *state;
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A); /* D clear */
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    const uint64_t va = VA | VMMU_TLB_FLAG_NOTDIRTY;
    struct vmmu_tlb_view view = vmmu_tlb_view(f->t.vcpu);
    static const unsigned sizes[] = {0, 0x81, 17, 48, 4096, ~0u};
    for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        void *host = NULL;
        assert_null(vmmu_tlb_lookup(f->t.vcpu, va, sizes[s], VMMU_TLB_WRITE));
        assert_null(vmmu_tlb_lookup_implicit(f->t.vcpu, va, sizes[s], VMMU_TLB_WRITE));
        assert_false(vmmu_tlb_probe(view, va, sizes[s], VMMU_TLB_WRITE, &host));
        assert_null(host);
    }
    assert_int_equal(get64(&f->t.env, pte) & E_D, 0);
    struct vmmu_tlb_result r;
    void *host = vmmu_tlb_translate(f->t.vcpu, va, 0x81, VMMU_X86_ACC_WRITE, &r);
    assert_ptr_equal(host, hpa(&f->t, DATA(1) + 0x80));
    assert_int_equal(get64(&f->t.env, pte) & E_D, E_D);
}

/* A kind that names no comparator, or access bits the slow path refuses
 * (unknown bits, WRITE with FETCH), never hit: the hit tests would
 * otherwise read past the entry's comparators (into the addend, or past
 * the table's end for the last index) or answer for an access
 * vmmu_tlb_fill() rejects. */
static void hit_tests_leave_unknown_kinds_and_refused_accesses_to_the_slow_path(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    void *want = tacc(&f->t, VA, 8, VMMU_X86_ACC_WRITE, NULL);
    assert_ptr_equal(want, hpa(&f->t, DATA(1)));
    struct vmmu_tlb_view view = vmmu_tlb_view(f->t.vcpu);
    static const unsigned kinds[] = {VMMU_TLB_KINDS, 4, 1000, ~0u};
    for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        enum vmmu_tlb_kind kind = (enum vmmu_tlb_kind)kinds[i];
        void *host = NULL;
        assert_null(vmmu_tlb_lookup(f->t.vcpu, VA, 8, kind));
        assert_null(vmmu_tlb_lookup_implicit(f->t.vcpu, VA, 8, kind));
        assert_false(vmmu_tlb_probe(view, VA, 8, kind, &host));
        assert_null(host);
    }
    static const unsigned bad[] = {VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH, 1u << 9,
                                   VMMU_X86_ACC_WRITE | (1u << 4)};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmmu_tlb_result r;
        memset(&r, 0, sizeof(r));
        assert_null(vmmu_tlb_translate(f->t.vcpu, VA, 8, bad[i], &r));
        assert_int_equal(r.status, VMMU_TLB_ERROR);
        assert_int_equal(r.error, VMMU_EINVAL);
    }
    /* The entry still serves what is allowed. */
    struct vmmu_tlb_result r;
    assert_ptr_equal(vmmu_tlb_translate(f->t.vcpu, VA, 8, VMMU_X86_ACC_WRITE, &r), want);
    void *host = NULL;
    assert_true(vmmu_tlb_probe(view, VA, 8, VMMU_TLB_WRITE, &host));
    assert_ptr_equal(host, want);
}

/* Sizes 1 to 16 that are not powers of two have no natural alignment: the
 * hit test keeps the bits of size - 1, so some misaligned offsets hit, but
 * the largest offset that hits is 4096 - size.  No size the hit path
 * answers for lets an access run past its page. */
static void an_inline_hit_never_runs_past_its_page(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_non_null(tacc(&f->t, VA, 8, VMMU_X86_ACC_WRITE, NULL));
    struct vmmu_tlb_view view = vmmu_tlb_view(f->t.vcpu);
    for (unsigned size = 1; size <= VMMU_TLB_ACCESS_MAX; size++) {
        bool pow2 = !(size & (size - 1));
        unsigned last = 0;
        for (uint64_t off = 0; off < 4096; off++) {
            void *want = hpa(&f->t, DATA(1) + off), *host = NULL;
            void *a = vmmu_tlb_lookup_write(f->t.vcpu, VA + off, size);
            void *b = vmmu_tlb_lookup_implicit(f->t.vcpu, VA + off, size, VMMU_TLB_WRITE);
            bool hit = vmmu_tlb_probe(view, VA + off, size, VMMU_TLB_WRITE, &host);
            assert_ptr_equal(a, b);
            assert_int_equal(hit, a != NULL);
            if (!hit)
                continue;
            assert_ptr_equal(a, want);
            assert_ptr_equal(host, want);
            assert_true(off + size <= 4096);
            if (pow2)
                assert_int_equal(off % size, 0);
            last = (unsigned)off;
        }
        assert_int_equal(last, 4096 - size); /* the last place it fits */
    }
}

static void a_view_taken_before_a_resize_is_replaced_by_reloading_it(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    for (unsigned i = 0; i < n; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    for (unsigned i = 0; i < n; i++)
        assert_non_null(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL));
    struct vmmu_tlb_view before = vmmu_tlb_view(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0); /* grows the table */
    struct vmmu_tlb_view after = vmmu_tlb_view(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
    assert_int_equal(after.index_mask, (uintptr_t)(2 * n - 1) << VMMU_TLB_ENTRY_SHIFT);
    assert_true(after.index_mask != before.index_mask);
    void *host;
    assert_false(vmmu_tlb_probe(after, VA, 8, VMMU_TLB_READ, &host));
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    after = vmmu_tlb_view(f->t.vcpu);
    assert_true(vmmu_tlb_probe(after, VA, 8, VMMU_TLB_READ, &host));
    assert_ptr_equal(host, hpa(&f->t, DATA(0)));
}

static struct vmmu_tlb_stats stats(struct fx *f);

static void inline_hits_are_counted_by_every_lookup_form_but_the_probe(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    assert_non_null(tacc(&f->t, VA, 8, VMMU_X86_ACC_IMPLICIT, NULL)); /* CPL 0: the same context */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_non_null(vmmu_tlb_lookup_write(f->t.vcpu, VA + 8, 8));
    assert_non_null(vmmu_tlb_lookup_fetch(f->t.vcpu, VA + 16, 1));
    assert_non_null(vmmu_tlb_lookup_implicit(f->t.vcpu, VA, 8, VMMU_TLB_READ));
    assert_non_null(tacc(&f->t, VA + 24, 8, 0, NULL));
    assert_non_null(tacc(&f->t, VA + 32, 8, VMMU_X86_ACC_IMPLICIT, NULL));
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 1, 8)); /* a miss is no hit */
    void *host;
    assert_true(vmmu_tlb_probe(vmmu_tlb_view(f->t.vcpu), VA, 8, VMMU_TLB_READ, &host));
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.hits, 6);
    assert_int_equal(s.misses + s.slow_hits + s.victim_hits, 0);
}

/* ---- the warm miss ----------------------------------------------------------- */


/* Two pages under one page table: the first miss walks from the top and
 * teaches the paging-structure caches, the second is a warm miss.
 * Returns the gpa of the second page's PTE. */
static uint64_t warm_setup(struct fx *f, uint64_t leaf0, uint64_t leaf1, uint64_t cr0_extra)
{
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | leaf0);
    uint64_t pte = tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | leaf1);
    tlb_load(&f->t, f->root, 0, 0, cr0_extra);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    return pte;
}

static void a_warm_miss_reads_and_leaves_the_first_write_to_set_d(void **state)
{
    struct fx *f = *state;
    uint64_t pte = warm_setup(f, E_P | E_RW | E_A | E_D, E_P | E_RW | E_A, 0);
    struct vmmu_tlb_result r;
    assert_ptr_equal(tacc(&f->t, VA + 4096 + 8, 8, 0, &r), hpa(&f->t, DATA(2) + 8));
    assert_int_equal(r.status, VMMU_TLB_OK);
    assert_int_equal(r.gpa, DATA(2) + 8);
    assert_int_equal(r.page_size, 4096);
    assert_int_equal(stats(f).psc_hits, 1);
    assert_int_equal(stats(f).warm_misses, 1);
    assert_int_equal(get64(&f->t.env, pte) & E_D, 0);
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA + 4096, 8)); /* D clear: no write comparator */
    assert_non_null(tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, NULL));
    assert_int_equal(get64(&f->t.env, pte) & E_D, E_D);
    assert_non_null(vmmu_tlb_lookup_write(f->t.vcpu, VA + 4096, 8));
}

static void clearing_cr0_wp_lets_the_next_warm_miss_write_a_readonly_page(void **state)
{
    struct fx *f = *state;
    (void)warm_setup(f, E_P | E_A | E_D, E_P | E_A | E_D, R_CR0_WP); /* read-only, supervisor */
    struct vmmu_tlb_result r;
    tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, &r);
    assert_int_equal(r.status, VMMU_TLB_FAULT);
    assert_int_equal(r.fault.error_code, 0x3u); /* P | W */
    struct vmmu_x86_fault fault;
    uint64_t cr0 = vmmu_vcpu_paging(f->t.vcpu)->cr0;
    assert_int_equal(vmmu_vcpu_set_cr0(f->t.vcpu, cr0 & ~R_CR0_WP, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    /* The #PF dropped the cached PDE of its address (SDM 4.10.4.1): a walk
     * of the first page teaches it again. */
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, &r), hpa(&f->t, DATA(2)));
    assert_int_equal(stats(f).psc_hits, 1);
    /* And setting it again takes the right away (a flush, then the table). */
    assert_int_equal(vmmu_vcpu_set_cr0(f->t.vcpu, cr0, &fault), 0);
    tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, &r);
    assert_int_equal(r.status, VMMU_TLB_FAULT);
}

static void wrong_arguments_get_einval_and_change_nothing(void **state)
{
    struct fx *f = *state;
    /* A warm region: the short path is tried first for every call below. */
    (void)warm_setup(f, E_P | E_RW | E_A | E_D, E_P | E_RW | E_A | E_D, 0);
    struct {
        bool null_vcpu;
        uint64_t va;
        unsigned size, access;
    } bad[] = {
        {true, VA + 4096, 8, 0},
        {false, VA + 4096, 0, 0},
        {false, VA + 4096, 4097, 0},
        {false, VA + 4096, 8, VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH},
        {false, VA + 4096, 8, VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH | VMMU_X86_ACC_IMPLICIT},
        {false, VA + 4096, 8, 1u << 4},
        {false, VA + 4096, 8, ~0u},
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmmu_tlb_result r;
        memset(&r, 0, sizeof(r));
        struct vmmu_vcpu *v = bad[i].null_vcpu ? NULL : f->t.vcpu;
        assert_null(vmmu_tlb_fill(v, bad[i].va, bad[i].size, bad[i].access, &r));
        assert_int_equal(r.status, VMMU_TLB_ERROR);
        assert_int_equal(r.error, VMMU_EINVAL);
    }
    /* A page crossing is reported, not served. */
    struct vmmu_tlb_result r;
    assert_null(vmmu_tlb_fill(f->t.vcpu, VA + 4096 + 4092, 8, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_CROSSES);
    /* None of them filled anything. */
    struct vmmu_tlb_stats st = stats(f);
    assert_int_equal(st.fills, 0);
    assert_int_equal(st.warm_misses, 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 4096, 8));
}

#define KEY(k) ((uint64_t)(k) << 59)
#define PKRU_AD(k) (1u << (2 * (k)))

static void a_warm_miss_under_cr4_pke_asks_the_key(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D | KEY(0));
    tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_US | E_A | E_D | KEY(3));
    tmap(&f->t, f->root, VA + 8192, 1, UP, DATA(3) | E_P | E_RW | E_US | E_A | E_D | KEY(5));
    tlb_load(&f->t, f->root, R_CR4_PKE, 0, 0);
    struct vmmu_x86_fault fault;
    assert_int_equal(vmmu_vcpu_set_pkru(f->t.vcpu, PKRU_AD(3), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL)); /* teaches the paging-structure caches */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    /* Key 3 forbids data accesses: the fault names the key. */
    struct vmmu_tlb_result r;
    assert_null(tacc(&f->t, VA + 4096, 8, 0, &r));
    assert_int_equal(r.status, VMMU_TLB_FAULT);
    assert_int_equal(r.fault.error_code, VMMU_X86_PF_P | VMMU_X86_PF_U | VMMU_X86_PF_PK);
    assert_int_equal(stats(f).psc_hits, 1);
    /* The #PF dropped the cached PDE of its address (SDM 4.10.4.1): a walk
     * of the first page teaches it again.  Fetches are not the key's
     * business: a warm miss serves them. */
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 4096, 1, VMMU_X86_ACC_FETCH, NULL), hpa(&f->t, DATA(2)));
    assert_int_equal(stats(f).psc_hits, 1);
    assert_int_equal(stats(f).warm_misses, 1);
    /* Key 5 is free: a warm miss reads, and the context now holds key 5,
     * so forbidding it drops the entry. */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 8192, 8, 0, NULL), hpa(&f->t, DATA(3)));
    assert_int_equal(stats(f).warm_misses, 1);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 8192, 8));
    assert_int_equal(vmmu_vcpu_set_pkru(f->t.vcpu, PKRU_AD(3) | PKRU_AD(5), &fault), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 8192, 8));
    assert_null(tacc(&f->t, VA + 8192, 8, 0, &r));
    assert_int_equal(r.fault.error_code, VMMU_X86_PF_P | VMMU_X86_PF_U | VMMU_X86_PF_PK);
}

static void keys_that_forbid_nothing_leave_the_warm_miss_its_speed(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D | KEY(2));
    tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D | KEY(7));
    tlb_load(&f->t, f->root, R_CR4_PKE, 0, 0); /* PKRU = 0, CR0.WP = 0 */
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, VMMU_X86_ACC_WRITE, NULL), hpa(&f->t, DATA(2)));
    assert_int_equal(stats(f).warm_misses, 1);
}

static void turning_cr4_pke_on_drops_what_was_filled_without_keys(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_US | E_A | E_D | KEY(0));
    tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_US | E_A | E_D | KEY(3));
    /* PKRU already forbids key 3, but CR4.PKE=0: keys do not count yet. */
    struct vmmu_x86_regs regs = regs_4level(f->root);
    regs.pkru = PKRU_AD(3);
    assert_int_equal(vmmu_vcpu_set_state(f->t.vcpu, &regs), 0);
    assert_int_equal(vmmu_vcpu_set_cpl(f->t.vcpu, 3), 0);
    assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, 0, NULL), hpa(&f->t, DATA(2))); /* a warm miss */
    assert_int_equal(stats(f).psc_hits, 1);
    struct vmmu_x86_fault fault;
    assert_int_equal(vmmu_vcpu_set_cr4(f->t.vcpu, regs.cr4 | R_CR4_PKE, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 4096, 8));
    struct vmmu_tlb_result r;
    assert_null(tacc(&f->t, VA + 4096, 8, 0, &r));
    assert_int_equal(r.fault.error_code, VMMU_X86_PF_P | VMMU_X86_PF_U | VMMU_X86_PF_PK);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1))); /* key 0 is free */
}

static void dirty_logging_started_after_a_warm_miss_still_sees_the_next_write(void **state)
{
    struct fx *f = *state;
    (void)warm_setup(f, E_P | E_RW | E_A | E_D, E_P | E_RW | E_A | E_D, 0);
    tmap(&f->t, f->root, VA + 8192, 1, UP, DATA(3) | E_P | E_RW | E_A | E_D);
    /* A warm miss, which caches the data pages' region as plain RAM. */
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, 0, NULL), hpa(&f->t, DATA(2)));
    assert_int_equal(stats(f).psc_hits, 1);
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(f->t.env.vm, DATA(3), &pe), 0);
    assert_int_equal(vmmu_dirty_log_enable(f->t.env.vm, pe.region_id, true), 0);
    /* Before this vCPU's next safe point (which drops what it holds of the
     * region), a miss on another page of the region must not trust the
     * cached region: the read leaves writes to the slow path ... */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 8192, 8, 0, NULL), hpa(&f->t, DATA(3)));
    assert_int_equal(stats(f).warm_misses, 0);
    assert_null(vmmu_tlb_lookup_write(f->t.vcpu, VA + 8192, 8));
    /* ... which marks the page dirty, and only that page. */
    assert_non_null(tacc(&f->t, VA + 8192, 8, VMMU_X86_ACC_WRITE, NULL));
    assert_int_equal(vmmu_p2m_lookup(f->t.env.vm, DATA(3), &pe), 0);
    assert_true(pe.page_state & VMMU_PAGE_DIRTY);
    assert_int_equal(vmmu_p2m_lookup(f->t.env.vm, DATA(1), &pe), 0);
    assert_false(pe.page_state & VMMU_PAGE_DIRTY);
}

/* Caller memory for a RAM region of @pages pages at @gpa; returns its host. */
static uint8_t *add_ram(struct fx *f, uint64_t gpa, unsigned pages, uint32_t *id)
{
    uint8_t *mem = aligned_alloc(4096, (size_t)pages * 4096);
    assert_non_null(mem);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = gpa, .size = (uint64_t)pages * 4096,
                                 .host = mem, .name = "more ram"};
    assert_int_equal(vmmu_region_add(f->t.env.vm, &d, id), 0);
    return mem;
}

/* A change of the map that concerns none of the vCPU's pages (a region
 * added far away, dirty logging started on it, as live migration does)
 * makes the next miss look the cached PDE's table up again: the misses
 * after it are warm again.  They used to stay off the warm path, each one
 * a resumed walk with a P2M lookup, until a flush dropped the PDE. */
static void warm_misses_come_back_after_an_unrelated_change_of_the_map(void **state)
{
    struct fx *f = *state;
    (void)warm_setup(f, E_P | E_RW | E_A | E_D, E_P | E_RW | E_A | E_D, 0);
    for (unsigned i = 2; i < 40; i++)
        tmap(&f->t, f->root, VA + i * 4096, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    assert_non_null(tacc(&f->t, VA + 4096, 8, 0, NULL));
    assert_int_equal(stats(f).warm_misses, 1);

    uint32_t id;
    uint8_t *far = add_ram(f, 16 * GiB, 4, &id);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    for (unsigned i = 2; i < 20; i++)
        assert_ptr_equal(tacc(&f->t, VA + i * 4096, 8, 0, NULL), hpa(&f->t, DATA(1)));
    /* The first one finds the PDE's table looked up under the old map. */
    assert_int_equal(stats(f).misses, 18);
    assert_int_equal(stats(f).warm_misses, 17);

    assert_int_equal(vmmu_dirty_log_enable(f->t.env.vm, id, true), 0);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    for (unsigned i = 20; i < 40; i++)
        assert_ptr_equal(tacc(&f->t, VA + i * 4096, 8, 0, NULL), hpa(&f->t, DATA(1)));
    assert_int_equal(stats(f).warm_misses, 19);
    assert_int_equal(vmmu_region_remove(f->t.env.vm, id), 0);
    free(far);
}

static void warm_misses_alternating_between_regions_each_find_their_own(void **state)
{
    struct fx *f = *state;
    /* Regions below and above 4 GiB, and one 16 GiB up, whose data pages
     * share the warm cache's entry with the first (bits 30..33 of gpa). */
    const uint64_t HIGH = 4 * GiB, FAR = 16 * GiB + 8 * MiB;
    uint32_t high_id, far_id;
    uint8_t *high = add_ram(f, HIGH, 4, &high_id);
    uint8_t *far = add_ram(f, FAR, 4, &far_id);
    (void)warm_setup(f, E_P | E_RW | E_A | E_D, E_P | E_RW | E_A | E_D, 0);
    const uint64_t where[3] = {DATA(3), HIGH, FAR};
    uint8_t *const host[3] = {hpa(&f->t, DATA(3)), high, far};
    for (unsigned i = 0; i < 12; i++)
        tmap(&f->t, f->root, VA + (2 + i) * 4096, 1, UP,
             (where[i % 3] + (i / 3) * 4096) | E_P | E_RW | E_A | E_D);
    for (unsigned i = 0; i < 12; i++) {
        struct vmmu_tlb_result r;
        assert_ptr_equal(tacc(&f->t, VA + (2 + i) * 4096 + 16, 8, 0, &r),
                         host[i % 3] + (i / 3) * 4096 + 16);
        assert_int_equal(r.gpa, where[i % 3] + (i / 3) * 4096 + 16);
    }
    assert_int_equal(stats(f).warm_misses, 12);

    /* A region put in the place of another (a new generation) is found
     * through every cached entry, not the old one's memory. */
    vmmu_vcpu_tlb_flush_all(f->t.vcpu);
    uint32_t new_id;
    uint8_t *moved = aligned_alloc(4096, 4 * 4096);
    assert_non_null(moved);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = HIGH, .size = 4 * 4096,
                                 .host = moved, .name = "moved"};
    assert_int_equal(vmmu_region_replace(f->t.env.vm, high_id, &d, &new_id), 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1))); /* the PDE cached again */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    for (unsigned i = 0; i < 12; i++)
        assert_ptr_equal(tacc(&f->t, VA + (2 + i) * 4096, 8, 0, NULL),
                         (i % 3 == 1 ? moved : host[i % 3]) + (i / 3) * 4096);
    assert_int_equal(stats(f).warm_misses, 12);
    assert_int_equal(vmmu_region_remove(f->t.env.vm, new_id), 0);
    assert_int_equal(vmmu_region_remove(f->t.env.vm, far_id), 0);
    free(high);
    free(far);
    free(moved);
}

/* ---- flushing what is held, and only that ------------------------------------ */

static struct vmmu_tlb_stats stats(struct fx *f)
{
    struct vmmu_tlb_stats s;
    assert_int_equal(vmmu_vcpu_stats(f->t.vcpu, &s), 0);
    return s;
}

static void flushing_an_idle_vcpu_elides_every_context(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    for (int round = 0; round < 3; round++) {
        vmmu_vcpu_stats_reset(f->t.vcpu);
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
        struct vmmu_tlb_stats s = stats(f);
        assert_int_equal(s.flush_all, 1);
        assert_int_equal(s.flush_contexts, VMMU_VCPU_PCID_SLOTS * 3);
        assert_int_equal(s.flush_elided, VMMU_VCPU_PCID_SLOTS * 3);
    }
}

static void a_flush_of_everything_reaches_every_pcid_that_holds_entries(void **state)
{
    struct fx *f = *state;
    uint64_t root2 = env_page(&f->t.env);
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, root2, VA, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    struct vmmu_x86_fault fault;
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE, 0, 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, root2 | 2 | VMMU_X86_CR3_NOFLUSH, &fault), 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(2)));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.flush_contexts, VMMU_VCPU_PCID_SLOTS * 3);
    assert_int_equal(s.flush_elided, VMMU_VCPU_PCID_SLOTS * 3 - 2); /* two were filled */
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    /* The paging-structure caches went too: the refill walks from the top. */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    assert_int_equal(stats(f).psc_hits, 0);
    /* A second flush finds nothing held anywhere but the refilled context. */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    assert_int_equal(stats(f).flush_elided, VMMU_VCPU_PCID_SLOTS * 3 - 1);
}

/* ---- sizing ---------------------------------------------------------------------- */

static void a_working_set_four_times_the_table_grows_it_to_hold_it_in_one_flush(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    unsigned pages = 4 * n;
    for (unsigned i = 0; i < pages; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    /* Four rounds: 16n fills, but 4n distinct pages.  The full table says
     * "at least 2.3n distinct pages" (linear counting over its entries),
     * fewer than the fills, and that is what counts. */
    for (int round = 0; round < 4; round++)
        for (unsigned i = 0; i < pages; i++)
            assert_ptr_equal(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL),
                             hpa(&f->t, DATA(i % 64)));
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    /* 2.3n pages at no more than 70 %: 4n entries (QEMU's rule would double). */
    unsigned want = 4 * n < VMMU_TLB_ENTRIES_MAX ? 4 * n : VMMU_TLB_ENTRIES_MAX;
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), want);
    assert_int_equal(stats(f).resize_grow, 1);
    /* The grown table holds the whole working set: a second round only hits. */
    for (unsigned i = 0; i < pages; i++)
        assert_non_null(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL));
    for (unsigned i = 0; i < pages; i++)
        assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA + (uint64_t)i * 4096, 8),
                         hpa(&f->t, DATA(i % 64)));
}

static void a_table_never_grows_past_the_maximum(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    const unsigned pages = 2 * VMMU_TLB_ENTRIES_MAX;
    for (unsigned i = 0; i < pages; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    /* Each flush sees a saturated table and grows it as far as it may. */
    for (int round = 0; round < 4; round++) {
        for (unsigned i = 0; i < pages; i++)
            assert_non_null(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL));
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
        assert_true(vmmu_vcpu_tlb_entries(f->t.vcpu) <= VMMU_TLB_ENTRIES_MAX);
    }
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), VMMU_TLB_ENTRIES_MAX);
    /* Conflicts do not take it further either. */
    uint64_t va_b = VA + (uint64_t)VMMU_TLB_ENTRIES_MAX * 4096;
    for (unsigned i = 0; i < 2000; i++) {
        assert_non_null(tacc(&f->t, VA, 8, 0, NULL));
        assert_non_null(tacc(&f->t, va_b, 8, 0, NULL));
    }
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), VMMU_TLB_ENTRIES_MAX);
}

/* The warm miss records G in the cold entry as the general path does:
 * CR3 writes keep such an entry and INVLPG from another PCID drops it. */
static void global_entries_the_warm_miss_filled_are_kept_and_dropped_as_globals(void **state)
{
    struct fx *f = *state;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    uint64_t pte = tmap(&f->t, f->root, VA + 4096, 1, UP, DATA(2) | E_P | E_RW | E_G | E_A | E_D);
    tlb_load(&f->t, f->root | 1, R_CR4_PCIDE | R_CR4_PGE, 0, 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, 0, NULL), hpa(&f->t, DATA(2)));
    assert_int_equal(stats(f).warm_misses, 1);
    struct vmmu_x86_fault fault;
    /* A CR3 write that flushes PCID 1 keeps its global entry. */
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_ptr_equal(vmmu_tlb_lookup_read(f->t.vcpu, VA + 4096, 8), hpa(&f->t, DATA(2)));
    /* INVLPG under PCID 2 drops it from PCID 1 too. */
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 2, &fault), 0);
    put64(&f->t.env, pte, DATA(3) | E_P | E_RW | E_G | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA + 4096), 0);
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root | 1 | VMMU_X86_CR3_NOFLUSH, &fault), 0);
    assert_null(vmmu_tlb_lookup_read(f->t.vcpu, VA + 4096, 8));
    assert_ptr_equal(tacc(&f->t, VA + 4096, 8, 0, NULL), hpa(&f->t, DATA(3)));
}

static void a_cr3_write_resizes_and_then_elides_a_context_the_warm_miss_filled(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0); /* CR4.PGE=0: nothing is global */
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    for (unsigned i = 0; i < n; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i % 64) | E_P | E_RW | E_A | E_D);
    for (unsigned i = 0; i < n; i++)
        assert_non_null(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL));
    assert_true(stats(f).warm_misses >= n - 2); /* the first page of each table walks */
    struct vmmu_x86_fault fault;
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_FAULT_NONE);
    /* A full table at a flush grows, whichever flush it is (as
     * a_busy_context_grows_at_its_next_flush with a flush of everything). */
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
    assert_int_equal(stats(f).resize_grow, 1);
    /* And the flushed contexts hold nothing: the next CR3 write skips them. */
    vmmu_vcpu_stats_reset(f->t.vcpu);
    assert_int_equal(vmmu_vcpu_set_cr3(f->t.vcpu, f->root, &fault), 0);
    struct vmmu_tlb_stats s = stats(f);
    assert_int_equal(s.flush_contexts, 3);
    assert_int_equal(s.flush_elided, 3);
}

static void a_context_used_lightly_shrinks_after_a_window_of_flushes(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    for (unsigned i = 0; i < 40; i++)
        tmap(&f->t, f->root, VA + (uint64_t)i * 4096, 1, UP, DATA(i) | E_P | E_RW | E_A | E_D);
    for (int round = 0; round < 40; round++) {
        for (unsigned i = 0; i < 40; i++)
            assert_non_null(tacc(&f->t, VA + (uint64_t)i * 4096, 8, 0, NULL));
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    }
    /* Peak demand 40: the smallest table holding it at <= 70 % is 64. */
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 64);
    assert_int_equal(stats(f).resize_shrink, 1);
    assert_int_equal(stats(f).resize_grow, 0);
}

/* Two pages n pages apart share an index of an n-entry table. */
static void ping_pong(struct fx *f, uint64_t va_b, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
        assert_ptr_equal(tacc(&f->t, va_b, 8, 0, NULL), hpa(&f->t, DATA(2)));
    }
}

static uint64_t conflict_setup(struct fx *f, unsigned *n)
{
    tlb_load(&f->t, f->root, 0, 0, 0);
    *n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)*n * 4096;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    vmmu_vcpu_stats_reset(f->t.vcpu);
    return va_b;
}

static void pages_that_share_an_index_grow_the_table_at_the_next_flush(void **state)
{
    struct fx *f = *state;
    unsigned n;
    uint64_t va_b = conflict_setup(f, &n);
    ping_pong(f, va_b, 100); /* 199 victim swaps, 2 fills */
    assert_true(stats(f).victim_hits > 64);
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), n);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    /* Two pages are no demand at all, but they conflict: one more index bit. */
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
    ping_pong(f, va_b, 1);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, va_b, 8));
    /* And the shrink rule does not take it back into the same conflict:
     * a window of flushes with two pages in use keeps 2n entries. */
    for (int round = 0; round < 40; round++) {
        ping_pong(f, va_b, 1);
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->t.vcpu), 0);
    }
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
    assert_int_equal(stats(f).resize_shrink, 0);
}

static void a_guest_that_never_flushes_outgrows_its_conflicts_anyway(void **state)
{
    struct fx *f = *state;
    unsigned n;
    uint64_t va_b = conflict_setup(f, &n);
    ping_pong(f, va_b, 600); /* past 1024 swaps, no flush */
    assert_int_equal(vmmu_vcpu_tlb_entries(f->t.vcpu), 2 * n);
    assert_int_equal(stats(f).resize_grow, 1);
    /* After the growth both pages stay in the table: the next rounds hit inline. */
    uint64_t swaps = stats(f).victim_hits;
    ping_pong(f, va_b, 100);
    assert_int_equal(stats(f).victim_hits, swaps);
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, VA, 8));
    assert_non_null(vmmu_tlb_lookup_read(f->t.vcpu, va_b, 8));
}

/* How many entries of the current context, in the table or the victim
 * array, translate the page of @va. */
static unsigned holders(struct fx *f, uint64_t va)
{
    const struct vmmu_vcpu *v = f->t.vcpu;
    const struct tlb_ctx *c = &v->slot[v->cur_slot].ctx[v->cur_ctx];
    uint64_t page = va & VMMU_PAGE_MASK;
    unsigned n = 0;
    for (unsigned i = 0; i <= c->mask; i++)
        n += entry_holds(&c->hot[i], page);
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        n += entry_holds(&c->victim[i].hot, page);
    return n;
}

static void a_page_whose_victim_copy_cannot_write_is_held_once_after_the_write(void **state)
{
    struct fx *f = *state;
    tlb_load(&f->t, f->root, 0, 0, 0);
    unsigned n = vmmu_vcpu_tlb_entries(f->t.vcpu);
    uint64_t va_b = VA + (uint64_t)n * 4096; /* same index */
    uint64_t pte = tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A); /* clean */
    tmap(&f->t, f->root, va_b, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    assert_ptr_equal(tacc(&f->t, va_b, 8, 0, NULL), hpa(&f->t, DATA(2))); /* VA to its victim */
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, va_b), 0); /* the index is free */
    assert_int_equal(holders(f, VA), 1);
    /* The victim's copy has no write comparator (D was clear): the write
     * walks, sets D and fills the free index; the copy goes. */
    assert_ptr_equal(tacc(&f->t, VA, 8, VMMU_X86_ACC_WRITE, NULL), hpa(&f->t, DATA(1)));
    assert_int_equal(get64(&f->t.env, pte) & E_D, E_D);
    assert_int_equal(holders(f, VA), 1);
    assert_non_null(vmmu_tlb_lookup_write(f->t.vcpu, VA, 8));
    assert_int_equal(vmmu_vcpu_invlpg(f->t.vcpu, VA), 0);
    assert_int_equal(holders(f, VA), 0);
}

/* A context that is never flushed whole (its global entries survive every
 * CR3 write) counts 2^32 fills in minutes of a busy guest.  The count once
 * wrapped to 0, which reads "holds nothing", and INVLPG then skipped the
 * context: the old translation stayed in use.  (Counted here from just
 * below the wrap.) */
static void invlpg_after_four_billion_fills_still_drops_the_page(void **state)
{
    struct fx *f = *state;
    static const uint64_t VB = VA + 0x10000;
    tmap(&f->t, f->root, VA, 1, UP, DATA(1) | E_P | E_RW | E_A | E_D);
    tmap(&f->t, f->root, VB, 1, UP, DATA(2) | E_P | E_RW | E_A | E_D);
    tlb_load(&f->t, f->root, 0, 0, 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    struct vmmu_vcpu *v = f->t.vcpu;
    struct tlb_ctx *c = &v->slot[v->cur_slot].ctx[v->cur_ctx];
    c->fills = UINT32_MAX;
    assert_ptr_equal(tacc(&f->t, VB, 8, 0, NULL), hpa(&f->t, DATA(2))); /* fill 2^32 */
    tmap(&f->t, f->root, VA, 1, UP, DATA(3) | E_P | E_RW | E_A | E_D);
    assert_int_equal(vmmu_vcpu_invlpg(v, VA), 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(3)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(the_probe_hits_exactly_where_lookup_hits),
        T(sizes_the_hit_test_cannot_answer_for_never_hit),
        T(hit_tests_leave_unknown_kinds_and_refused_accesses_to_the_slow_path),
        T(an_inline_hit_never_runs_past_its_page),
        T(a_view_taken_before_a_resize_is_replaced_by_reloading_it),
        T(inline_hits_are_counted_by_every_lookup_form_but_the_probe),
        T(a_warm_miss_reads_and_leaves_the_first_write_to_set_d),
        T(clearing_cr0_wp_lets_the_next_warm_miss_write_a_readonly_page),
        T(wrong_arguments_get_einval_and_change_nothing),
        T(a_warm_miss_under_cr4_pke_asks_the_key),
        T(keys_that_forbid_nothing_leave_the_warm_miss_its_speed),
        T(turning_cr4_pke_on_drops_what_was_filled_without_keys),
        T(dirty_logging_started_after_a_warm_miss_still_sees_the_next_write),
        T(warm_misses_alternating_between_regions_each_find_their_own),
        T(warm_misses_come_back_after_an_unrelated_change_of_the_map),
        T(a_working_set_four_times_the_table_grows_it_to_hold_it_in_one_flush),
        T(a_table_never_grows_past_the_maximum),
        T(global_entries_the_warm_miss_filled_are_kept_and_dropped_as_globals),
        T(a_cr3_write_resizes_and_then_elides_a_context_the_warm_miss_filled),
        T(a_context_used_lightly_shrinks_after_a_window_of_flushes),
        T(pages_that_share_an_index_grow_the_table_at_the_next_flush),
        T(a_guest_that_never_flushes_outgrows_its_conflicts_anyway),
        T(a_page_whose_victim_copy_cannot_write_is_held_once_after_the_write),
        T(invlpg_after_four_billion_fills_still_drops_the_page),
        T(flushing_an_idle_vcpu_elides_every_context),
        T(a_flush_of_everything_reaches_every_pcid_that_holds_entries),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
