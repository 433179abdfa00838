/* SPDX-License-Identifier: MIT */
/* Randomized model test: the TLB and the bare walker (vmmu_x86_walk_peek)
 * see the same stream of accesses, page-table edits, register writes and
 * invalidations, and must agree wherever the architecture requires it.
 *
 * Where it does not: after the guest edits a paging-structure entry, the
 * TLB may keep using what it cached until an invalidation that covers it.
 * The test keeps, per tracked page and PCID, whether a non-global stale
 * translation may exist (cleared by INVLPG of the page in that PCID,
 * INVPCID 0/1/3, a flushing MOV to CR3 for that PCID, and the global
 * flushes), and per page whether a stale global translation may exist
 * (if a global translation of it was ever used, or an access was served
 * while it was stale, which may have cached a global translation from stale
 * paging-structure caches; cleared by INVLPG of
 * the page, INVPCID 2, and CR4.PGE/PCIDE/CR0.PG changes).  An access to a
 * page with neither must give exactly what a walk gives now: the same
 * fault, or the host address of the same guest-physical byte.
 *
 * Layout: every PCID p has its own PML4 root[p].  PML4 slot 0 is shared
 * (same PDPT in every root): region A (4 KiB pages) and region B (a PDE
 * that flips between a 2 MiB page and a page table); leaves there may be
 * global.  PML4 slot 1 is private to each root (region C, never global).
 * With CR4.PCIDE=0 the vCPU only uses root[0]. */
#include "test_tlb_env.h"

#define NPCID 6
#define NA 16
#define NB 16
#define NC 8
#define NVA (NA + NB + NC)
#define DATA_BASE (8 * MiB)
#define NDATA 64
#define BIG_BASE (16 * MiB) /* the 2 MiB page of region B */
#define HOLE_GPA (64 * MiB) /* beyond RAM: not RAM */

static const uint64_t A_BASE = 0x0000000000400000ull;  /* PDE 2 of PML4 slot 0 */
static const uint64_t B_BASE = 0x0000000000600000ull;  /* PDE 3 */
static const uint64_t C_BASE = 0x0000008000000000ull;  /* PML4 slot 1 */

struct model {
    struct tlb_env t;
    uint64_t rng;
    uint64_t root[NPCID];
    uint64_t va[NVA];
    uint64_t pte_a[NA], pte_b[NB], pte_c[NPCID][NC]; /* gpa of the leaf entries */
    uint64_t pde_b;       /* gpa of region B's PDE */
    uint64_t pt_b;        /* region B's page table */
    uint64_t pde_a;       /* gpa of region A's PDE */
    bool stale_ng[NVA][NPCID];
    bool stale_g[NVA];
    bool may_global[NVA];
    unsigned pcid;        /* current PCID (0 with PCIDE=0) */
    unsigned long checked, skipped, faults;
};

static uint64_t rnd(struct model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static unsigned rn(struct model *m, unsigned n)
{
    return (unsigned)(rnd(m) % n);
}

static uint64_t random_leaf(struct model *m, bool may_global, bool large)
{
    uint64_t v;
    if (large)
        v = BIG_BASE | E_PS;
    else if (rn(m, 16) == 0)
        v = HOLE_GPA;
    else
        v = DATA_BASE + (uint64_t)rn(m, NDATA) * 4096;
    if (rn(m, 10))
        v |= E_P;
    if (rn(m, 4))
        v |= E_RW;
    if (rn(m, 2))
        v |= E_US;
    if (rn(m, 2))
        v |= E_A;
    if (rn(m, 2))
        v |= E_D;
    if (may_global && rn(m, 3) == 0)
        v |= E_G;
    if (rn(m, 5) == 0)
        v |= E_NX;
    v |= (uint64_t)rn(m, 4) << 59; /* protection key 0..3 */
    if (rn(m, 40) == 0)
        v |= 1ull << 45; /* reserved with MAXPHYADDR 40 */
    return v;
}

static void mark_stale_all_pcids(struct model *m, unsigned vi)
{
    for (unsigned p = 0; p < NPCID; p++)
        m->stale_ng[vi][p] = true;
    if (m->may_global[vi])
        m->stale_g[vi] = true;
}

static void clear_all_stale(struct model *m)
{
    memset(m->stale_ng, 0, sizeof(m->stale_ng));
    memset(m->stale_g, 0, sizeof(m->stale_g));
    memset(m->may_global, 0, sizeof(m->may_global));
}

static void clear_pcid_stale(struct model *m, unsigned p)
{
    for (unsigned i = 0; i < NVA; i++)
        m->stale_ng[i][p] = false;
}

static void build(struct model *m)
{
    struct tlb_env *t = &m->t;
    uint64_t pdpt = env_page(&t->env), pd = env_page(&t->env);
    uint64_t pt_a = env_page(&t->env);
    m->pt_b = env_page(&t->env);
    put64(&t->env, pdpt, pd | E_P | E_RW | E_US);
    m->pde_a = pd + 8 * idx9(A_BASE, 2);
    m->pde_b = pd + 8 * idx9(B_BASE, 2);
    put64(&t->env, m->pde_a, pt_a | E_P | E_RW | E_US);
    put64(&t->env, m->pde_b, m->pt_b | E_P | E_RW | E_US);
    for (unsigned i = 0; i < NA; i++) {
        /* Spread so that some pages share a TLB index (256 entries). */
        m->va[i] = A_BASE + (uint64_t)((i * 37) % 512) * 4096;
        m->pte_a[i] = pt_a + 8 * idx9(m->va[i], 1);
        put64(&t->env, m->pte_a[i], random_leaf(m, true, false));
    }
    for (unsigned i = 0; i < NB; i++) {
        m->va[NA + i] = B_BASE + (uint64_t)((i * 131) % 512) * 4096;
        m->pte_b[i] = m->pt_b + 8 * idx9(m->va[NA + i], 1);
        put64(&t->env, m->pte_b[i], random_leaf(m, true, false));
    }
    for (unsigned p = 0; p < NPCID; p++) {
        m->root[p] = env_page(&t->env);
        uint64_t cpdpt = env_page(&t->env), cpd = env_page(&t->env), cpt = env_page(&t->env);
        put64(&t->env, m->root[p], pdpt | E_P | E_RW | E_US);
        put64(&t->env, m->root[p] + 8, cpdpt | E_P | E_RW | E_US);
        put64(&t->env, cpdpt, cpd | E_P | E_RW | E_US);
        put64(&t->env, cpd, cpt | E_P | E_RW | E_US);
        for (unsigned i = 0; i < NC; i++) {
            m->va[NA + NB + i] = C_BASE + (uint64_t)(i * 3) * 4096;
            m->pte_c[p][i] = cpt + 8 * idx9(m->va[NA + NB + i], 1);
            put64(&t->env, m->pte_c[p][i], random_leaf(m, false, false));
        }
    }
}

static const struct vmmu_x86_paging *pg(struct model *m)
{
    return vmmu_vcpu_paging(m->t.vcpu);
}

static bool pcide(struct model *m)
{
    return (pg(m)->cr4 & R_CR4_PCIDE) != 0;
}

static void check_access(struct model *m)
{
    unsigned vi = rn(m, NVA);
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    unsigned size = sizes[rn(m, 5)];
    uint64_t va = m->va[vi] + (rn(m, 4) == 0 ? rn(m, 4096 - 16) : size * rn(m, 4096 / size));
    unsigned access = (unsigned[]){0, 0, VMMU_X86_ACC_WRITE, VMMU_X86_ACC_FETCH}[rn(m, 4)];
    if (access != VMMU_X86_ACC_FETCH && rn(m, 8) == 0)
        access |= VMMU_X86_ACC_IMPLICIT;

    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(pg(m), va, access, &w), 0);
    if (w.ok && w.global)
        m->may_global[vi] = true;

    /* Implicit supervisor accesses must equal explicit ones at CPL 0 with
     * AC=0 (the context they share). */
    if (access & VMMU_X86_ACC_IMPLICIT) {
        struct vmmu_x86_paging sup = *pg(m);
        assert_int_equal(vmmu_x86_set_cpl(&sup, 0), 0);
        assert_int_equal(vmmu_x86_set_rflags(&sup, sup.rflags & ~R_RFLAGS_AC), 0);
        struct vmmu_x86_walk w2;
        assert_int_equal(vmmu_x86_walk_peek(&sup, va, access & ~VMMU_X86_ACC_IMPLICIT, &w2), 0);
        assert_int_equal(w.ok, w2.ok);
        assert_int_equal(w.fault.vector, w2.fault.vector);
        assert_int_equal(w.fault.error_code, w2.fault.error_code);
        assert_int_equal(w.rights, w2.rights);
    }

    struct vmmu_tlb_result r;
    memset(&r, 0, sizeof(r));
    void *host = vmmu_tlb_translate(m->t.vcpu, va, size, access, &r);

    if (m->stale_ng[vi][m->pcid] || m->stale_g[vi]) {
        /* The access may have filled from stale cached entries (a stale
         * paging-structure-cache entry over a global PTE, say): whatever
         * it cached may be global, whatever the walk says now. */
        if (pg(m)->cr4 & R_CR4_PGE) {
            m->stale_g[vi] = true;
            m->may_global[vi] = true;
        }
        m->skipped++;
        return;
    }
    m->checked++;
    if (!w.ok) {
        m->faults++;
        assert_null(host);
        assert_int_equal(r.status, VMMU_TLB_FAULT);
        assert_int_equal(r.fault.vector, w.fault.vector);
        assert_int_equal(r.fault.error_code, w.fault.error_code);
        assert_int_equal(r.fault.cr2, w.fault.cr2);
        return;
    }
    if ((va & 0xfff) + size > 4096) {
        assert_int_equal(r.status, VMMU_TLB_CROSSES);
        return;
    }
    if (w.gpa >= m->t.env.size) {
        assert_null(host);
        assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
        assert_int_equal(r.gpa, w.gpa);
        return;
    }
    assert_ptr_equal(host, hpa(&m->t, w.gpa));
}

static void edit(struct model *m)
{
    struct tlb_env *t = &m->t;
    switch (rn(m, 6)) {
    case 0:
    case 1: {
        unsigned i = rn(m, NA);
        put64(&t->env, m->pte_a[i], random_leaf(m, true, false));
        mark_stale_all_pcids(m, i);
        break;
    }
    case 2: {
        unsigned i = rn(m, NB);
        put64(&t->env, m->pte_b[i], random_leaf(m, true, false));
        mark_stale_all_pcids(m, NA + i);
        break;
    }
    case 3: { /* region B's PDE: a 2 MiB page or the page table */
        uint64_t v = rn(m, 2) ? random_leaf(m, true, true)
                              : (m->pt_b | E_P | E_RW | E_US | (rn(m, 4) ? 0 : E_NX));
        put64(&t->env, m->pde_b, v);
        for (unsigned i = 0; i < NB; i++)
            mark_stale_all_pcids(m, NA + i);
        break;
    }
    case 4: { /* region A's PDE rights: the paging-structure caches hold them */
        uint64_t v = get64(&t->env, m->pde_a) & ADDR_MASK;
        v |= E_P | (rn(m, 4) ? E_RW : 0) | (rn(m, 4) ? E_US : 0) | (rn(m, 4) ? 0 : E_NX);
        put64(&t->env, m->pde_a, v);
        for (unsigned i = 0; i < NA; i++)
            mark_stale_all_pcids(m, i);
        break;
    }
    default: { /* a private leaf of one PCID's tables */
        unsigned p = rn(m, NPCID), i = rn(m, NC);
        put64(&t->env, m->pte_c[p][i], random_leaf(m, false, false));
        m->stale_ng[NA + NB + i][p] = true;
        break;
    }
    }
}

static bool applied(int rc, const struct vmmu_x86_fault *f)
{
    assert_true(rc == 0);
    return f->vector == VMMU_X86_FAULT_NONE;
}

static void invalidate_or_switch(struct model *m)
{
    struct vmmu_vcpu *v = m->t.vcpu;
    struct vmmu_x86_fault f;
    switch (rn(m, 8)) {
    case 0: { /* INVLPG */
        unsigned vi = rn(m, NVA);
        assert_int_equal(vmmu_vcpu_invlpg(v, m->va[vi] + rn(m, 4096)), 0);
        m->stale_ng[vi][m->pcid] = false;
        m->stale_g[vi] = false;
        break;
    }
    case 1: { /* MOV to CR3 */
        unsigned p = pcide(m) ? rn(m, NPCID) : 0;
        bool noflush = pcide(m) && rn(m, 2);
        uint64_t cr3 = m->root[p] | (pcide(m) ? p : 0) | (noflush ? VMMU_X86_CR3_NOFLUSH : 0);
        if (applied(vmmu_vcpu_set_cr3(v, cr3, &f), &f)) {
            m->pcid = p;
            if (!noflush)
                clear_pcid_stale(m, p);
        }
        break;
    }
    case 2: { /* INVPCID */
        unsigned type = rn(m, 4), p = pcide(m) ? rn(m, NPCID) : 0, vi = rn(m, NVA);
        if (!applied(vmmu_vcpu_invpcid(v, type, p, m->va[vi], &f), &f))
            break;
        if (type == 0)
            m->stale_ng[vi][p] = false;
        else if (type == 1)
            clear_pcid_stale(m, p);
        else if (type == 2)
            clear_all_stale(m);
        else
            memset(m->stale_ng, 0, sizeof(m->stale_ng));
        break;
    }
    case 3: { /* CR4 bits */
        static const uint64_t bits[] = {R_CR4_PGE, R_CR4_SMEP, R_CR4_SMAP, R_CR4_PKE, R_CR4_PKS,
                                        R_CR4_PCIDE};
        uint64_t bit = bits[rn(m, 6)], cr4 = pg(m)->cr4;
        bool smep_on = bit == R_CR4_SMEP && !(cr4 & bit);
        bool pcide_off = bit == R_CR4_PCIDE && (cr4 & bit);
        if (!applied(vmmu_vcpu_set_cr4(v, cr4 ^ bit, &f), &f))
            break;
        if (bit == R_CR4_PGE || pcide_off)
            clear_all_stale(m);
        if (smep_on) /* SDM: SMEP 0 -> 1 invalidates the current PCID */
            clear_pcid_stale(m, m->pcid);
        if (pcide_off) {
            /* Back to root[0]: PCID 0 is root[0]'s, as the layout says. */
            assert_true(applied(vmmu_vcpu_set_cr3(v, m->root[0], &f), &f));
            m->pcid = 0;
        }
        break;
    }
    case 4: { /* CR0.WP, EFER.NXE */
        if (rn(m, 2)) {
            assert_true(applied(vmmu_vcpu_set_cr0(v, pg(m)->cr0 ^ R_CR0_WP, &f), &f));
        } else {
            assert_true(applied(vmmu_vcpu_set_efer(v, pg(m)->efer ^ R_EFER_NXE, &f), &f));
            clear_all_stale(m); /* vmmu flushes on NXE (more than the SDM asks) */
        }
        break;
    }
    case 5: { /* keys */
        if (rn(m, 2)) {
            if (pg(m)->cr4 & R_CR4_PKE)
                assert_true(applied(vmmu_vcpu_set_pkru(v, (uint32_t)rnd(m) & 0xff, &f), &f));
        } else {
            assert_true(applied(vmmu_vcpu_set_pkrs(v, rnd(m) & 0xff, &f), &f));
        }
        break;
    }
    case 6: /* CPL */
        assert_int_equal(vmmu_vcpu_set_cpl(v, rn(m, 2) ? 3 : rn(m, 3)), 0);
        break;
    default: /* EFLAGS.AC */
        assert_int_equal(vmmu_vcpu_set_rflags(v, 2 | (rn(m, 2) ? R_RFLAGS_AC : 0)), 0);
        break;
    }
}

static void run_seed(uint64_t seed, unsigned steps, unsigned long *checked, unsigned long *skipped,
                     unsigned long *warm)
{
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    assert_int_equal(tlb_env_init(&m->t, 32 * MiB), 0);
    m->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    build(m);
    tlb_load(&m->t, m->root[0], R_CR4_PGE, R_EFER_NXE, R_CR0_WP);
    for (unsigned s = 0; s < steps; s++) {
        unsigned what = rn(m, 100);
        if (what < 70)
            check_access(m);
        else if (what < 80)
            edit(m);
        else
            invalidate_or_switch(m);
    }
    *checked += m->checked;
    *skipped += m->skipped;
    struct vmmu_tlb_stats st;
    assert_int_equal(vmmu_vcpu_stats(m->t.vcpu, &st), 0);
    *warm += st.warm_misses;
    tlb_env_fini(&m->t);
    free(m);
}

static void tlb_agrees_with_the_walker_wherever_the_architecture_requires(void **state)
{
    (void)state;
    unsigned long checked = 0, skipped = 0, warm = 0;
    for (uint64_t seed = 1; seed <= 40; seed++)
        run_seed(seed, 4000, &checked, &skipped, &warm);
    print_message("model: %lu accesses checked, %lu allowed to be stale, %lu fills by the warm "
                  "miss\n",
                  checked, skipped, warm);
    assert_true(checked > skipped);
    /* Both fill paths were held to the walker. */
    assert_true(warm > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tlb_agrees_with_the_walker_wherever_the_architecture_requires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
