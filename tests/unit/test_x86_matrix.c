/* The x86 permission matrix, in the spirit of kvm-unit-tests' access test:
 * every combination of leaf and non-leaf entry flags (P, R/W, U/S, A, D,
 * XD, a reserved bit), CR0.WP, EFER.NXE, CR4.SMEP, CR4.SMAP, EFLAGS.AC,
 * protection keys (PKRU and PKRS, enabled or not), access kind, CPL and
 * implicit supervisor accesses (at CPL 0 and 3), at 4 KiB and 2 MiB
 * leaves, in 4-level paging.  For each case both walk forms run and are
 * compared with oracle(), an independent statement of the SDM's rules
 * written here rule by rule: fault or not, the exact error code, CR2, the
 * gpa, and the exact final value of every entry (A/D bits, nothing on
 * faults or peeks).
 *
 * Where the non-leaf entry is not present or has a reserved bit, the walk
 * stops there, so the leaf's flags cannot matter: those cases run with one
 * leaf value instead of all of them, which keeps the matrix at a few
 * million cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "x86_env.h"

/* #PF error code bits (SDM 4.7), spelled out for the oracle. */
#define PF_P 0x01u
#define PF_W 0x02u
#define PF_U 0x04u
#define PF_RSVD 0x08u
#define PF_I 0x10u
#define PF_PK 0x20u

/* The reserved bit the matrix sets: bit 51, above MAXPHYADDR (40). */
#define E_BIT51 (1ull << 51)
/* The leaf's protection key: 1 (bits 62:59 = 0001). */
#define E_KEY1 (1ull << 59)

/* The linear address: PML4 index 1, PDPT 2, PD 3, PT 4, offset 0x123. */
#define VA ((1ull << 39) | (2ull << 30) | (3ull << 21) | (4ull << 12) | 0x123)
#define FRAME_4K 0x7000ull
#define FRAME_2M 0x40000000ull

enum kind { K_READ, K_WRITE, K_FETCH };

/* Protection-key setups. */
enum pkvar {
    PK_OFF,    /* CR4.PKE=PKS=0, PKRU/PKRS deny everything: must not matter */
    PK_PKE_AD, /* CR4.PKE=1, PKRU.AD1=1 */
    PK_PKE_WD, /* CR4.PKE=1, PKRU.WD1=1 */
    PK_PKS_AD, /* CR4.PKS=1, PKRS.AD1=1 */
    PK_PKS_WD, /* CR4.PKS=1, PKRS.WD1=1 */
    PK_COUNT
};

/* One access of the matrix. */
struct access {
    enum kind kind;
    unsigned cpl;
    bool implicit;
};
/* Implicit supervisor accesses run at CPL 3 and at CPL 0, where only
 * EFLAGS.AC tells them from explicit ones (it lifts SMAP for explicit
 * accesses alone). */
static const struct access accesses[] = {
    {K_READ, 0, false},  {K_WRITE, 0, false}, {K_FETCH, 0, false}, {K_READ, 3, false},
    {K_WRITE, 3, false}, {K_FETCH, 3, false}, {K_READ, 3, true},   {K_WRITE, 3, true},
    {K_READ, 0, true},   {K_WRITE, 0, true},
};

struct mcase {
    bool large;        /* 2 MiB leaf (PDE.PS=1) instead of 4 KiB */
    uint64_t nonleaf;  /* flag bits of the entry above the leaf */
    uint64_t leaf;     /* flag bits of the leaf */
    bool wp, nxe, smep, smap, ac;
    enum pkvar pk;
    struct access acc;
};

struct expect {
    bool fault;
    uint32_t error_code;
    uint64_t gpa;
    uint64_t upper[2];  /* entries above the non-leaf one, final values */
    uint64_t nonleaf;   /* final value */
    uint64_t leaf;      /* final value */
};

/* The flag bits the matrix varies, by position in the combination number. */
static const uint64_t leaf_bits[] = {E_P, E_RW, E_US, E_A, E_D, E_NX, E_BIT51};
static const uint64_t nonleaf_bits[] = {E_P, E_RW, E_US, E_A, E_NX, E_BIT51};
#define NLEAF (sizeof(leaf_bits) / sizeof(leaf_bits[0]))
#define NNONLEAF (sizeof(nonleaf_bits) / sizeof(nonleaf_bits[0]))

static uint64_t flags_of(const uint64_t *bits, unsigned n, unsigned combo)
{
    uint64_t f = 0;
    for (unsigned i = 0; i < n; i++)
        if (combo & (1u << i))
            f |= bits[i];
    return f;
}

/* Page-table layout (fixed gpas in the env's RAM). */
struct layout {
    uint64_t pml4, pdpt, pd, pt;
    /* Entry addresses, top first: upper[0..nupper), nonleaf, leaf. */
    unsigned nupper;
    uint64_t upper_at[2], nonleaf_at, leaf_at;
};

static struct layout layout_of(bool large)
{
    struct layout l = {.pml4 = 0x1000, .pdpt = 0x2000, .pd = 0x3000, .pt = 0x4000};
    if (large) {
        l.nupper = 1;
        l.upper_at[0] = slot9(l.pml4, VA, 4);
        l.nonleaf_at = slot9(l.pdpt, VA, 3);
        l.leaf_at = slot9(l.pd, VA, 2);
    } else {
        l.nupper = 2;
        l.upper_at[0] = slot9(l.pml4, VA, 4);
        l.upper_at[1] = slot9(l.pdpt, VA, 3);
        l.nonleaf_at = slot9(l.pd, VA, 2);
        l.leaf_at = slot9(l.pt, VA, 1);
    }
    return l;
}

/* The entry values a case writes. */
static void entries_of(const struct mcase *c, const struct layout *l, uint64_t upper[2],
                       uint64_t *nonleaf, uint64_t *leaf)
{
    if (c->large) {
        upper[0] = l->pdpt | E_P | E_RW | E_US;
        *nonleaf = l->pd | c->nonleaf;
        *leaf = FRAME_2M | E_PS | E_KEY1 | c->leaf;
    } else {
        upper[0] = l->pdpt | E_P | E_RW | E_US;
        upper[1] = l->pd | E_P | E_RW | E_US;
        *nonleaf = l->pt | c->nonleaf;
        *leaf = FRAME_4K | E_KEY1 | c->leaf;
    }
}

/* ---- The oracle ----------------------------------------------------------
 * What the SDM (Vol. 3A 4.5-4.8) says happens, written from the manual's
 * rules, not from the walker's code. */
static struct expect oracle(const struct mcase *c, const struct layout *l)
{
    struct expect e = {0};
    uint64_t upper[2] = {0, 0}, N, L;
    entries_of(c, l, upper, &N, &L);

    /* Unless the walk succeeds, every entry keeps its value. */
    e.upper[0] = upper[0];
    e.upper[1] = upper[1];
    e.nonleaf = N;
    e.leaf = L;

    bool write = c->acc.kind == K_WRITE;
    bool fetch = c->acc.kind == K_FETCH;
    /* SDM 4.6: CPL 3 makes user-mode accesses, except implicit supervisor ones. */
    bool user_mode = c->acc.cpl == 3 && !c->acc.implicit;

    /* SDM 4.7: W/R, U/S and I/D describe the access, whatever the cause.
     * I/D is set for fetches when NXE=1 (4-level paging is PAE-based) or
     * SMEP=1. */
    uint32_t acc_bits = (write ? PF_W : 0) | (user_mode ? PF_U : 0) |
                        (fetch && (c->nxe || c->smep) ? PF_I : 0);

    /* Rule: the upper entries are present and clean.  The non-leaf entry
     * is next: P=0 stops the walk (P=0 in the error code). */
    if (!(N & E_P)) {
        e.fault = true;
        e.error_code = acc_bits;
        return e;
    }
    /* Rule: bit 51 is above MAXPHYADDR, and XD is reserved with NXE=0:
     * a present entry with either faults with P=1, RSVD=1. */
    if ((N & E_BIT51) || ((N & E_NX) && !c->nxe)) {
        e.fault = true;
        e.error_code = PF_P | PF_RSVD | acc_bits;
        return e;
    }
    /* Same two rules for the leaf. */
    if (!(L & E_P)) {
        e.fault = true;
        e.error_code = acc_bits;
        return e;
    }
    if ((L & E_BIT51) || ((L & E_NX) && !c->nxe)) {
        e.fault = true;
        e.error_code = PF_P | PF_RSVD | acc_bits;
        return e;
    }

    /* Rule: a user-mode address has U/S=1 everywhere, a writable one R/W=1
     * everywhere; XD=1 anywhere (with NXE=1) forbids fetches.  The upper
     * entries allow everything. */
    bool user_page = (N & E_US) && (L & E_US);
    bool writable = (N & E_RW) && (L & E_RW);
    bool executable = !(c->nxe && ((N & E_NX) || (L & E_NX)));

    bool allowed;
    if (fetch) {
        if (user_mode)
            allowed = executable && user_page;
        else /* SMEP: no supervisor fetch from user pages */
            allowed = executable && !(c->smep && user_page);
    } else if (user_mode) {
        allowed = user_page && (writable || !write);
    } else {
        /* SMAP: supervisor data access to user pages faults unless it is
         * explicit, at CPL<3, with EFLAGS.AC=1. */
        bool ac_lets_through = !c->acc.implicit && c->acc.cpl < 3 && c->ac;
        bool smap_fault = c->smap && user_page && !ac_lets_through;
        /* WP=1: supervisor writes need R/W=1; WP=0: they do not. */
        bool wp_fault = write && c->wp && !writable;
        allowed = !smap_fault && !wp_fault;
    }

    /* Rule (SDM 4.6.2): protection keys govern data accesses; PKRU for
     * user pages with PKE=1, PKRS for supervisor pages with PKS=1.  AD
     * forbids all data accesses, WD forbids writes that are user-mode or
     * made with WP=1.  The PK bit is reported whenever the key forbids. */
    bool key_forbids = false;
    if (!fetch) {
        bool key_applies = (user_page && (c->pk == PK_PKE_AD || c->pk == PK_PKE_WD)) ||
                           (!user_page && (c->pk == PK_PKS_AD || c->pk == PK_PKS_WD));
        bool ad = c->pk == PK_PKE_AD || c->pk == PK_PKS_AD;
        bool wd = c->pk == PK_PKE_WD || c->pk == PK_PKS_WD;
        if (key_applies && ad)
            key_forbids = true;
        if (key_applies && wd && write && (user_mode || c->wp))
            key_forbids = true;
    }

    if (!allowed || key_forbids) {
        e.fault = true;
        e.error_code = PF_P | acc_bits | (key_forbids ? PF_PK : 0);
        return e;
    }

    /* Success: A in every entry used, D in the leaf for writes (SDM 4.8). */
    e.upper[0] |= E_A;
    if (l->nupper == 2)
        e.upper[1] |= E_A;
    e.nonleaf |= E_A;
    e.leaf |= E_A | (write ? E_D : 0);
    e.gpa = c->large ? FRAME_2M + (VA & (2 * MiB - 1)) : FRAME_4K + (VA & 0xfff);
    return e;
}

/* ---- Running a case ------------------------------------------------------ */

static struct vmmu_x86_regs regs_of(const struct mcase *c, const struct layout *l)
{
    struct vmmu_x86_regs r = regs_4level(l->pml4);
    if (c->wp)
        r.cr0 |= R_CR0_WP;
    if (c->nxe)
        r.efer |= R_EFER_NXE;
    if (c->smep)
        r.cr4 |= R_CR4_SMEP;
    if (c->smap)
        r.cr4 |= R_CR4_SMAP;
    if (c->ac)
        r.rflags |= R_RFLAGS_AC;
    r.cpl = c->acc.cpl;
    switch (c->pk) {
    case PK_OFF:
        r.pkru = 0xffffffffu;
        r.pkrs = 0xffffffffu;
        break;
    case PK_PKE_AD:
        r.cr4 |= R_CR4_PKE;
        r.pkru = 1u << 2;
        break;
    case PK_PKE_WD:
        r.cr4 |= R_CR4_PKE;
        r.pkru = 1u << 3;
        break;
    case PK_PKS_AD:
        r.cr4 |= R_CR4_PKS;
        r.pkrs = 1u << 2;
        break;
    case PK_PKS_WD:
        r.cr4 |= R_CR4_PKS;
        r.pkrs = 1u << 3;
        break;
    default:
        break;
    }
    return r;
}

static unsigned access_bits_of(const struct access *a)
{
    unsigned bits = 0;
    if (a->kind == K_WRITE)
        bits |= VMMU_X86_ACC_WRITE;
    if (a->kind == K_FETCH)
        bits |= VMMU_X86_ACC_FETCH;
    if (a->implicit)
        bits |= VMMU_X86_ACC_IMPLICIT;
    return bits;
}

static void describe(const struct mcase *c, char *buf, size_t n)
{
    static const char *kinds[] = {"read", "write", "fetch"};
    snprintf(buf, n,
             "%s leaf=%#llx nonleaf=%#llx wp=%d nxe=%d smep=%d smap=%d ac=%d pk=%d %s cpl=%u%s",
             c->large ? "2M" : "4K", (unsigned long long)c->leaf, (unsigned long long)c->nonleaf,
             c->wp, c->nxe, c->smep, c->smap, c->ac, (int)c->pk, kinds[c->acc.kind], c->acc.cpl,
             c->acc.implicit ? " implicit" : "");
}

/* Run one case with both walk forms; returns false (after printing why) on
 * the first disagreement with the oracle. */
static bool run_case(struct x86_env *env, const struct mcase *c, const struct layout *l)
{
    uint64_t upper[2] = {0, 0}, N, L;
    char what[256];
    entries_of(c, l, upper, &N, &L);
    for (unsigned i = 0; i < l->nupper; i++)
        put64(env, l->upper_at[i], upper[i]);
    put64(env, l->nonleaf_at, N);
    put64(env, l->leaf_at, L);

    struct vmmu_x86_regs r = regs_of(c, l);
    if (vmmu_x86_set_state(&env->pg, &r) != 0) {
        describe(c, what, sizeof(what));
        print_error("set_state refused: %s\n", what);
        return false;
    }

    struct expect e = oracle(c, l);
    unsigned acc = access_bits_of(&c->acc);

    for (int form = 0; form < 2; form++) {
        struct vmmu_x86_walk w;
        int rc = form == 0 ? vmmu_x86_walk_peek(&env->pg, VA, acc, &w)
                           : vmmu_x86_walk(&env->pg, VA, acc, &w);
        bool peek = form == 0;
        uint64_t want_upper0 = peek ? upper[0] : e.upper[0];
        uint64_t want_upper1 = peek ? upper[1] : e.upper[1];
        uint64_t want_nonleaf = peek ? N : e.nonleaf;
        uint64_t want_leaf = peek ? L : e.leaf;
        bool good = rc == 0 && w.ok == !e.fault;
        if (good && e.fault)
            good = w.fault.vector == VMMU_X86_VEC_PF && w.fault.error_code == e.error_code &&
                   w.fault.cr2 == VA;
        if (good && !e.fault)
            good = w.gpa == e.gpa && w.fault.vector == VMMU_X86_FAULT_NONE;
        good = good && get64(env, l->upper_at[0]) == want_upper0 &&
               (l->nupper < 2 || get64(env, l->upper_at[1]) == want_upper1) &&
               get64(env, l->nonleaf_at) == want_nonleaf && get64(env, l->leaf_at) == want_leaf;
        if (!good) {
            describe(c, what, sizeof(what));
            print_error("%s disagrees with the oracle: %s\n"
                        "  got rc=%d ok=%d vector=%d ec=%#x gpa=%#llx entries %#llx %#llx %#llx %#llx\n"
                        "  want ok=%d ec=%#x gpa=%#llx entries %#llx %#llx %#llx %#llx\n",
                        peek ? "peek" : "walk", what, rc, w.ok, w.fault.vector,
                        w.fault.error_code, (unsigned long long)w.gpa,
                        (unsigned long long)get64(env, l->upper_at[0]),
                        (unsigned long long)(l->nupper == 2 ? get64(env, l->upper_at[1]) : 0),
                        (unsigned long long)get64(env, l->nonleaf_at),
                        (unsigned long long)get64(env, l->leaf_at), !e.fault, e.error_code,
                        (unsigned long long)e.gpa, (unsigned long long)want_upper0,
                        (unsigned long long)(l->nupper == 2 ? want_upper1 : 0),
                        (unsigned long long)want_nonleaf, (unsigned long long)want_leaf);
            return false;
        }
    }
    return true;
}

/* Every combination for one leaf size; returns the number of cases run. */
static unsigned long run_matrix(bool large)
{
    struct x86_env env;
    assert_int_equal(env_init(&env, 64 * KiB, NULL), 0);
    struct layout l = layout_of(large);
    unsigned long cases = 0;

    for (unsigned nl = 0; nl < (1u << NNONLEAF); nl++) {
        uint64_t nonleaf = flags_of(nonleaf_bits, NNONLEAF, nl);
        /* The walk stops at a non-present or reserved non-leaf entry: one
         * leaf value suffices there (see the file comment). */
        bool leaf_matters = (nonleaf & E_P) && !(nonleaf & E_BIT51);
        unsigned nleaf_combos = leaf_matters ? (1u << NLEAF) : 1;
        for (unsigned lf = 0; lf < nleaf_combos; lf++) {
            uint64_t leaf = leaf_matters ? flags_of(leaf_bits, NLEAF, lf) : (E_P | E_RW | E_US);
            for (unsigned regs = 0; regs < 32; regs++) {
                for (unsigned pk = 0; pk < PK_COUNT; pk++) {
                    for (size_t a = 0; a < sizeof(accesses) / sizeof(accesses[0]); a++) {
                        struct mcase c = {
                            .large = large,
                            .nonleaf = nonleaf,
                            .leaf = leaf,
                            .wp = regs & 1,
                            .nxe = (regs >> 1) & 1,
                            .smep = (regs >> 2) & 1,
                            .smap = (regs >> 3) & 1,
                            .ac = (regs >> 4) & 1,
                            .pk = (enum pkvar)pk,
                            .acc = accesses[a],
                        };
                        if (!run_case(&env, &c, &l)) {
                            env_fini(&env);
                            fail_msg("matrix case %lu failed", cases);
                        }
                        cases++;
                    }
                }
            }
        }
    }
    env_fini(&env);
    return cases;
}

static void every_combination_at_4k_leaves_matches_the_oracle(void **state)
{
    (void)state;
    unsigned long cases = run_matrix(false);
    /* 16 walkable non-leaf values x 128 leaves + 48 stopping ones, x 32
     * register sets x 5 key setups x 10 accesses. */
    assert_int_equal(cases, (16ul * 128 + 48) * 32 * 5 * 10);
}

static void every_combination_at_2m_leaves_matches_the_oracle(void **state)
{
    (void)state;
    unsigned long cases = run_matrix(true);
    assert_int_equal(cases, (16ul * 128 + 48) * 32 * 5 * 10);
}

/* The oracle itself must be able to say "fault" and "no fault" for each
 * cause, or the matrix proves nothing: spot-check it on cases whose answer
 * is known from the SDM's examples. */
static void oracle_agrees_with_known_answers(void **state)
{
    (void)state;
    struct layout l = layout_of(false);
    const uint64_t all = E_P | E_RW | E_US;
    struct mcase c = {.nonleaf = all, .leaf = all, .acc = {K_WRITE, 3, false}};
    assert_false(oracle(&c, &l).fault);

    c.leaf = E_P | E_US; /* read-only user page, user write */
    assert_true(oracle(&c, &l).fault);
    assert_int_equal(oracle(&c, &l).error_code, PF_P | PF_W | PF_U);

    c.acc = (struct access){K_WRITE, 0, false}; /* supervisor write, WP=0 */
    assert_false(oracle(&c, &l).fault);
    c.wp = true;
    assert_int_equal(oracle(&c, &l).error_code, PF_P | PF_W);

    c = (struct mcase){.nonleaf = all, .leaf = all | E_NX, .acc = {K_FETCH, 0, false}};
    assert_int_equal(oracle(&c, &l).error_code, PF_P | PF_RSVD); /* XD reserved, NXE=0 */
    c.nxe = true;
    assert_int_equal(oracle(&c, &l).error_code, PF_P | PF_I);

    c = (struct mcase){.nonleaf = all, .leaf = all, .smap = true, .acc = {K_READ, 0, false}};
    assert_int_equal(oracle(&c, &l).error_code, PF_P);
    c.ac = true;
    assert_false(oracle(&c, &l).fault);

    c = (struct mcase){.nonleaf = all, .leaf = all, .pk = PK_PKE_WD, .acc = {K_WRITE, 3, false}};
    assert_int_equal(oracle(&c, &l).error_code, PF_P | PF_W | PF_U | PF_PK);

    c = (struct mcase){.nonleaf = E_RW, .leaf = all, .acc = {K_READ, 3, false}};
    assert_int_equal(oracle(&c, &l).error_code, PF_U);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oracle_agrees_with_known_answers),
        cmocka_unit_test(every_combination_at_4k_leaves_matches_the_oracle),
        cmocka_unit_test(every_combination_at_2m_leaves_matches_the_oracle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
