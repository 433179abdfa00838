/* SPDX-License-Identifier: MIT */
/* Randomized model test: the TLB and the bare walker (vmmu_x86_walk_peek)
 * see the same stream of accesses, page-table edits, register writes and
 * invalidations, and must agree wherever the architecture requires it.
 * Each seed runs in one paging mode (32-bit, PAE, 4-level or 5-level),
 * and may turn paging off and on again.
 *
 * Where they need not agree: after the guest edits a paging-structure
 * entry, the TLB may keep using what it cached until an invalidation that
 * covers it.  The test keeps, per tracked page and PCID, whether a
 * non-global stale translation may exist (cleared by INVLPG of the page in
 * that PCID, INVPCID 0/1/3, a flushing MOV to CR3 for that PCID, and the
 * global flushes), and per page whether a stale global translation may
 * exist (if a global translation of it was ever used, or an access was
 * served while it was stale, which may have cached a global translation
 * from stale paging-structure caches; cleared by INVLPG of the page,
 * INVPCID 2, and CR4.PGE/PCIDE/PSE and CR0.PG changes).  An access to a
 * page with neither must give exactly what a walk gives now: the same
 * fault, or the host address of the same guest-physical byte; and after
 * it, every paging-structure entry the walk used holds the accessed and
 * dirty bits the walk says a CPU leaves there.
 *
 * The host changes the guest-physical map in the same stream, from the
 * vCPU's thread at a safe point: a second region is replaced by RAM with
 * new memory, ROM or MMIO; pages become code pages and stop being; dirty
 * logging of that region goes on and off and its log is read and
 * cleared; the pager takes pages away.  None of these may leave anything
 * stale: the next access must see the new map, report writes to code
 * pages, mark logged pages dirty, and find a paged-out page's contents
 * back at the same host address.
 *
 * Layout (linear addresses below 4 GiB in 32-bit and PAE paging):
 *   region A  4 KiB pages under one page table; its PDE's rights change
 *             (the paging-structure caches hold them); leaves may be global
 *   region B  a PDE that flips between a large page (4 MiB in 32-bit
 *             paging, else 2 MiB) and a page table; leaves may be global
 *   region C  4 KiB pages private to each PCID's root, never global
 *   region D  (4- and 5-level only) a PDPTE that flips between a 1 GiB page
 *             and a directory with one page table
 *   region E  (4- and 5-level only) 4 KiB pages in the upper half, under
 *             the last entry of each top-level table; leaves may be global
 * Some accesses twist their address out of canonical form (or, in 32-bit
 * and PAE paging, above 4 GiB, where only bits 31:0 count).
 * In 4- and 5-level paging every PCID p has its own root: the tables of A,
 * B and D are shared, those of C are not.  With CR4.PCIDE=0 the vCPU uses
 * root[0] only, and 32-bit and PAE paging have only root[0]. */
#include "test_tlb_env.h"

#define NPCID 6
#define NA 16
#define NB 16
#define NC 8
#define ND 8
#define NE 8
#define NVA (NA + NB + NC + ND + NE)
#define IA (0)
#define IB (NA)
#define IC (NA + NB)
#define ID (NA + NB + NC)
#define IE (NA + NB + NC + ND)
#define DATA_BASE (8 * MiB)
#define NDATA 64
#define BIG_BASE (16 * MiB) /* the large page of region B (4 MiB aligned) */
#define HOLE_GPA (64 * MiB) /* beyond RAM: not RAM */
#define R2_GPA (32 * MiB)   /* the second region, right after the RAM */
#define R2_PAGES 16
#define NPAGES (NDATA + R2_PAGES) /* data pages whose state the test tracks */

static const uint64_t A_BASE = 0x00400000ull;      /* a PDE of its own in every mode */
static const uint64_t B_BASE = 0x00800000ull;      /* another one */
static const uint64_t C_BASE_LEGACY = 0xc0000000ull;  /* PAE PDPTE 3; 32-bit PDE 768 */
static const uint64_t C_BASE_LONG = 0x8000000000ull;  /* PML4 slot 1 */
static const uint64_t D_BASE = 0x40000000ull;      /* PDPTE 1 of PML4 slot 0 */
static const uint64_t E_BASE = 0xffffff8000000000ull; /* the last PML4 (and PML5) slot */


struct model {
    struct tlb_env t;
    enum mmode mode;
    unsigned nroot;      /* roots built: NPCID in 4- and 5-level paging, else 1 */
    unsigned ew;         /* entry width: 4 in 32-bit paging, else 8 */
    uint64_t rng;
    uint64_t root[NPCID];
    uint64_t va[NVA];
    unsigned nva;        /* D and E only in 4- and 5-level paging */
    uint64_t pte[NVA][NPCID]; /* gpa of each page's leaf (column 0 unless C) */
    uint64_t pde_a, pde_b; /* gpa of region A's and B's PDEs */
    uint64_t pt_b;       /* region B's page table */
    uint64_t pdpte_d;    /* gpa of region D's PDPTE */
    uint64_t pd_d;       /* region D's directory */
    bool paging_off;     /* CR0.PG cleared by the test (set again later) */
    struct vmmu_pager *pager;
    uint32_t r2_id;      /* the second region: */
    enum vmmu_mem_type r2_type; /* RAM, ROM or MMIO */
    uint8_t *r2_host;    /* its memory (vmmu's, so the pager may take it), or NULL */
    bool r2_log;         /* dirty logging on (RAM only) */
    bool code[NPAGES];   /* VMMU_PAGE_CODE of DATA pages, then R2's */
    uint64_t marker[R2_PAGES]; /* first 8 bytes of a page the pager took away (0: none) */
    uint32_t r2_written; /* R2 pages written while logging, since the log was read */
    uint64_t p2m_events;
    bool stale_ng[NVA][NPCID];
    bool stale_g[NVA];
    bool may_global[NVA];
    /* A translation of the page built from a 4 KiB (not large) mapping
     * may be cached, in PCID p / as a global entry: an invalidation
     * inside a large page elsewhere does not end its staleness. */
    bool small_ng[NVA][NPCID];
    bool small_g[NVA];
    unsigned long large_invals;
    unsigned pcid;       /* current PCID (0 with PCIDE=0) */
    unsigned long checked, skipped, faults, ad_checked, code_writes, logged_writes, twisted;
};

static uint64_t rnd(struct model *m)
{
    return model_rnd(&m->rng);
}

static unsigned rn(struct model *m, unsigned n)
{
    return (unsigned)(rnd(m) % n);
}

static bool long_mode(const struct model *m)
{
    return mode_long(m->mode);
}

static void put_e(struct model *m, uint64_t gpa, uint64_t v)
{
    if (m->ew == 4)
        put32(&m->t.env, gpa, (uint32_t)v);
    else
        put64(&m->t.env, gpa, v);
}

static uint64_t get_e(const struct model *m, uint64_t gpa)
{
    return m->ew == 4 ? get32(&m->t.env, gpa) : get64(&m->t.env, gpa);
}

/* The gpa of the entry for @va at level @stop under @table (a table of
 * level @level), making the missing tables on the way. */
static uint64_t ensure(struct model *m, uint64_t table, unsigned level, uint64_t va, unsigned stop)
{
    for (; level > stop; level--) {
        uint64_t at = mode_slot(m->mode, table, va, level);
        uint64_t e = get_e(m, at);
        if (!(e & E_P)) {
            e = env_page(&m->t.env) | mode_upper_flags(m->mode, level);
            put_e(m, at, e);
        }
        table = mode_table(m->mode, e);
    }
    return mode_slot(m->mode, table, va, stop);
}

/* A random leaf: a 4 KiB page (@large 0), the large page of region B (2)
 * or the 1 GiB page of region D (3, at gpa 0). */
static uint64_t random_leaf(struct model *m, bool may_global, unsigned large)
{
    uint64_t v;
    if (large == 3)
        v = E_PS;
    else if (large == 2)
        v = BIG_BASE | E_PS;
    else {
        unsigned k = rn(m, 16);
        v = k == 0  ? HOLE_GPA
            : k < 4 ? R2_GPA + (uint64_t)rn(m, R2_PAGES) * 4096
                    : DATA_BASE + (uint64_t)rn(m, NDATA) * 4096;
    }
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
    if (m->mode != M32 && rn(m, 5) == 0)
        v |= E_NX; /* reserved while EFER.NXE=0 */
    if (long_mode(m))
        v |= (uint64_t)rn(m, 4) << 59; /* protection key 0..3 */
    if (rn(m, 40) == 0) {
        /* A reserved bit: beyond MAXPHYADDR 40, or bit 21 of a 4 MiB PDE
         * (a 32-bit 4 KiB PTE has none). */
        if (m->mode != M32)
            v |= 1ull << 45;
        else if (large)
            v |= 1ull << 21;
    }
    return v;
}

/* The leaf of page @vi in the tables of PCID @p. */
static uint64_t leaf_of(const struct model *m, unsigned vi, unsigned p)
{
    return vi >= IC && vi < ID ? m->pte[vi][p] : m->pte[vi][0];
}

static void mark_stale_all_pcids(struct model *m, unsigned vi)
{
    for (unsigned p = 0; p < NPCID; p++)
        m->stale_ng[vi][p] = true;
    if (m->may_global[vi])
        m->stale_g[vi] = true;
}

static void mark_stale_range(struct model *m, unsigned first, unsigned n)
{
    for (unsigned i = first; i < first + n; i++)
        mark_stale_all_pcids(m, i);
}

static void clear_all_stale(struct model *m)
{
    memset(m->stale_ng, 0, sizeof(m->stale_ng));
    memset(m->stale_g, 0, sizeof(m->stale_g));
    memset(m->may_global, 0, sizeof(m->may_global));
    memset(m->small_ng, 0, sizeof(m->small_ng));
    memset(m->small_g, 0, sizeof(m->small_g));
}

static void clear_pcid_stale(struct model *m, unsigned p)
{
    for (unsigned i = 0; i < NVA; i++) {
        m->stale_ng[i][p] = false;
        m->small_ng[i][p] = false;
    }
}

static void build(struct model *m)
{
    unsigned top = mode_top_level(m->mode);
    uint64_t c_base = long_mode(m) ? C_BASE_LONG : C_BASE_LEGACY;
    m->ew = m->mode == M32 ? 4 : 8;
    m->nroot = long_mode(m) ? NPCID : 1;
    m->nva = long_mode(m) ? NVA : ID;
    for (unsigned i = 0; i < NA; i++) /* spread so that some share a TLB index (256) */
        m->va[IA + i] = A_BASE + (uint64_t)((i * 37) % 512) * 4096;
    for (unsigned i = 0; i < NB; i++)
        m->va[IB + i] = B_BASE + (uint64_t)((i * 131) % 512) * 4096;
    for (unsigned i = 0; i < NC; i++)
        m->va[IC + i] = c_base + (uint64_t)(i * 3) * 4096;
    for (unsigned i = 0; i < ND; i++)
        m->va[ID + i] = D_BASE + (uint64_t)((i * 71) % 512) * 4096;
    for (unsigned i = 0; i < NE; i++)
        m->va[IE + i] = E_BASE + (uint64_t)((i * 53) % 512) * 4096;

    /* root[0]: every region. */
    uint64_t r0 = m->root[0] = env_page(&m->t.env);
    for (unsigned i = 0; i < m->nva; i++) {
        if (i >= IC && i < ID)
            continue;
        m->pte[i][0] = ensure(m, r0, top, m->va[i], 1);
        put_e(m, m->pte[i][0], random_leaf(m, true, 0));
    }
    m->pde_a = ensure(m, r0, top, A_BASE, 2);
    m->pde_b = ensure(m, r0, top, B_BASE, 2);
    m->pt_b = mode_table(m->mode, get_e(m, m->pde_b));
    if (long_mode(m)) {
        m->pdpte_d = ensure(m, r0, top, D_BASE, 3);
        m->pd_d = mode_table(m->mode, get_e(m, m->pdpte_d));
    }

    /* The other roots share root[0]'s first PML4 slot (regions A, B and
     * D) and last top-level slot (E); region C is private to each. */
    for (unsigned p = 0; p < m->nroot; p++) {
        if (p > 0) {
            uint64_t pml4 = m->root[p] = env_page(&m->t.env), pml4_0 = r0;
            if (m->mode == M5) {
                pml4 = env_page(&m->t.env);
                put_e(m, m->root[p], pml4 | mode_upper_flags(m->mode, 5));
                pml4_0 = mode_table(m->mode, get_e(m, r0));
            }
            put_e(m, pml4, get_e(m, pml4_0));
            put_e(m, m->root[p] + 511 * 8, get_e(m, r0 + 511 * 8));
        }
        for (unsigned i = IC; i < ID; i++) {
            m->pte[i][p] = ensure(m, m->root[p], top, m->va[i], 1);
            put_e(m, m->pte[i][p], random_leaf(m, false, 0));
        }
    }
}

static void load(struct model *m)
{
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG | R_CR0_WP, .cr3 = m->root[0],
                              .rflags = 2};
    switch (m->mode) {
    case M32:
        r.cr4 = R_CR4_PSE | R_CR4_PGE;
        r.efer = R_EFER_NXE;
        break;
    case MPAE:
        r.cr4 = R_CR4_PAE | R_CR4_PGE;
        r.efer = R_EFER_NXE;
        break;
    default:
        r.cr4 = R_CR4_PAE | R_CR4_PGE | (m->mode == M5 ? R_CR4_LA57 : 0);
        r.efer = R_EFER_LME | R_EFER_LMA | R_EFER_NXE;
        break;
    }
    assert_int_equal(vmmu_vcpu_set_state(m->t.vcpu, &r), 0);
}

static const struct vmmu_x86_paging *pg(struct model *m)
{
    return vmmu_vcpu_paging(m->t.vcpu);
}

static bool pcide(struct model *m)
{
    return (pg(m)->cr4 & R_CR4_PCIDE) != 0;
}

/* The tracked data page at @gpa (index into code[] and marker[]), or -1. */
static int page_slot(uint64_t gpa)
{
    if (gpa >= DATA_BASE && gpa < DATA_BASE + NDATA * 4096ull)
        return (int)((gpa - DATA_BASE) >> 12);
    if (gpa >= R2_GPA && gpa < R2_GPA + R2_PAGES * 4096ull)
        return NDATA + (int)((gpa - R2_GPA) >> 12);
    return -1;
}

static uint64_t slot_gpa(unsigned i)
{
    return i < NDATA ? DATA_BASE + i * 4096ull : R2_GPA + (i - NDATA) * 4096ull;
}

/* What an access to @gpa must give under the current map: its status,
 * host address and memory type. */
static enum vmmu_tlb_status expect(const struct model *m, uint64_t gpa, unsigned access,
                                   uint8_t **host, enum vmmu_mem_type *type)
{
    *host = NULL;
    if (gpa < m->t.env.size) {
        *type = VMMU_MEM_RAM;
        *host = m->t.env.mem + gpa;
        return VMMU_TLB_OK;
    }
    if (page_slot(gpa) >= NDATA) {
        *type = m->r2_type;
        if (m->r2_type == VMMU_MEM_MMIO ||
            (m->r2_type == VMMU_MEM_ROM && (access & VMMU_X86_ACC_WRITE)))
            return VMMU_TLB_NOT_RAM;
        *host = m->r2_host + (gpa - R2_GPA);
        return VMMU_TLB_OK;
    }
    *type = VMMU_MEM_HOLE;
    return VMMU_TLB_NOT_RAM;
}

/* (Re)create the second region at R2_GPA: vmmu allocates RAM and ROM. */
static void r2_make(struct model *m, enum vmmu_mem_type type)
{
    static const struct vmmu_mmio_ops ops = {0};
    struct vmmu_region_desc d = {.type = type, .gpa = R2_GPA, .size = R2_PAGES * 4096ull,
                                 .name = "r2", .mmio = type == VMMU_MEM_MMIO ? &ops : NULL};
    struct vmmu_vm *vm = m->t.env.vm;
    if (m->r2_id)
        assert_int_equal(vmmu_region_replace(vm, m->r2_id, &d, &m->r2_id), 0);
    else
        assert_int_equal(vmmu_region_add(vm, &d, &m->r2_id), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, m->r2_id, &info), 0);
    m->r2_host = info.host;
    m->r2_type = type;
    m->r2_log = false;
    m->r2_written = 0;
    memset(m->code + NDATA, 0, sizeof(m->code[0]) * R2_PAGES);
    memset(m->marker, 0, sizeof(m->marker));
}

/* The host changes the guest-physical map (the vCPU is at a safe point). */
static void p2m_event(struct model *m)
{
    struct vmmu_vm *vm = m->t.env.vm;
    m->p2m_events++;
    switch (rn(m, 5)) {
    case 0: { /* the second region: new RAM, ROM or MMIO */
        static const enum vmmu_mem_type types[] = {VMMU_MEM_RAM, VMMU_MEM_RAM, VMMU_MEM_ROM,
                                                   VMMU_MEM_MMIO};
        r2_make(m, types[rn(m, 4)]);
        break;
    }
    case 1: { /* a code page, or no longer one */
        unsigned i = m->r2_type == VMMU_MEM_MMIO ? rn(m, NDATA) : rn(m, NPAGES);
        bool on = rn(m, 2);
        struct vmmu_gpa_range r = {.gpa = slot_gpa(i), .size = 4096};
        assert_int_equal(vmmu_page_state_change(vm, &r, 1, on ? VMMU_PAGE_CODE : 0,
                                                on ? 0 : VMMU_PAGE_CODE),
                         0);
        m->code[i] = on;
        break;
    }
    case 2: /* dirty logging of the second region on or off */
        if (m->r2_type != VMMU_MEM_RAM)
            break;
        m->r2_log = !m->r2_log;
        assert_int_equal(vmmu_dirty_log_enable(vm, m->r2_id, m->r2_log), 0);
        m->r2_written = 0;
        break;
    case 3: { /* read and clear the log: every write seen since is in it */
        if (!m->r2_log)
            break;
        uint64_t bitmap = 0;
        assert_int_equal(vmmu_dirty_log_get_and_clear(vm, m->r2_id, &bitmap, 1, NULL), 0);
        if ((bitmap & m->r2_written) != m->r2_written)
            fail_msg("dirty log %#llx misses written pages %#x", (unsigned long long)bitmap,
                     m->r2_written);
        m->r2_written = 0;
        break;
    }
    default: { /* the pager takes a page away; it comes back on the next access */
        if (m->r2_type != VMMU_MEM_RAM)
            break;
        unsigned i = rn(m, R2_PAGES);
        uint64_t gpa = R2_GPA + i * 4096ull;
        uint32_t state;
        assert_int_equal(vmmu_page_state_get(vm, gpa, &state), 0);
        if (state & VMMU_PAGE_PAGED_OUT)
            break;
        m->marker[i] = rnd(m) | 1;
        memcpy(m->r2_host + i * 4096ull, &m->marker[i], 8);
        struct vmmu_gpa_range r = {.gpa = gpa, .size = 4096};
        assert_int_equal(vmmu_pager_page_out(m->pager, &r, 1), 0);
        assert_int_equal(vmmu_page_state_get(vm, gpa, &state), 0);
        assert_true(state & VMMU_PAGE_PAGED_OUT);
        break;
    }
    }
}

/* After an access the walk allows: each entry the walk read now holds
 * what the walk says the CPU leaves there (A, and D on a write's leaf).
 * A translation the TLB held was filled by a walk that set them, and
 * no edit has happened since (the page is not stale). */
static void check_accessed_dirty(struct model *m, const struct vmmu_x86_walk *w)
{
    for (unsigned l = 0; l < w->nlevels; l++) {
        const struct vmmu_x86_walk_level *e = &w->levels[l];
        if (!e->host)
            continue; /* a PAE PDPTE register */
        uint64_t now = e->size == 4 ? get32(&m->t.env, e->gpa) : get64(&m->t.env, e->gpa);
        if (now != e->new_value)
            fail_msg("%s paging, va %#llx, access %#x: level %u entry %#llx, the walk leaves "
                     "%#llx", mode_names[m->mode], (unsigned long long)w->va, w->access,
                     e->level, (unsigned long long)now, (unsigned long long)e->new_value);
        m->ad_checked++;
    }
}

static void check_access(struct model *m)
{
    unsigned vi = rn(m, m->nva);
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    unsigned size = sizes[rn(m, 5)];
    uint64_t va = m->va[vi] + (rn(m, 4) == 0 ? rn(m, 4096 - 16) : size * rn(m, 4096 / size));
    unsigned access = (unsigned[]){0, 0, VMMU_X86_ACC_WRITE, VMMU_X86_ACC_FETCH}[rn(m, 4)];
    if (access != VMMU_X86_ACC_FETCH && rn(m, 8) == 0)
        access |= VMMU_X86_ACC_IMPLICIT;
    if (access != VMMU_X86_ACC_FETCH && rn(m, 8) == 0)
        access |= VMMU_X86_ACC_STACK; /* #SS instead of #GP when not canonical */
    /* Out of canonical form with 4- or 5-level paging (a page the test
     * does not track when the twist stays canonical: not accessed then);
     * without IA-32e paging only bits 31:0 count, so the same page. */
    bool twisted = rn(m, 16) == 0;
    if (twisted) {
        static const uint64_t twist[] = {1ull << 47, 0xffff000000000000ull, 1ull << 60};
        va ^= twist[rn(m, 3)];
    }

    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(pg(m), va, access, &w), 0);
    bool noncanonical = !w.ok && (w.fault.vector == VMMU_X86_VEC_GP ||
                                  w.fault.vector == VMMU_X86_VEC_SS);
    if (twisted && pg(m)->mode >= VMMU_X86_MODE_4LEVEL && !noncanonical)
        return;
    if (twisted)
        m->twisted++;
    if (w.ok && w.global)
        m->may_global[vi] = true;
    if (m->stale_ng[vi][m->pcid] || m->stale_g[vi] || !(w.ok && w.page_size > 4096)) {
        m->small_ng[vi][m->pcid] = true;
        m->small_g[vi] = true;
    }

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

    /* res->flags stays ~0 when the inline hit path answers. */
    struct vmmu_tlb_result r;
    memset(&r, 0, sizeof(r));
    r.flags = ~0ull;
    void *host = vmmu_tlb_translate(m->t.vcpu, va, size, access, &r);
    bool slow = r.flags != ~0ull;

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
    check_accessed_dirty(m, &w);
    uint8_t *want;
    enum vmmu_mem_type type;
    enum vmmu_tlb_status status = expect(m, w.gpa, access, &want, &type);
    if ((uint8_t *)host != want || r.status != status || (slow && r.type != type) ||
        (status == VMMU_TLB_NOT_RAM && r.gpa != w.gpa))
        fail_msg("%s paging%s, va %#llx size %u access %#x: status %d (error %d), type %d, host "
                 "%p for gpa %#llx; expected status %d, type %d, host %p",
                 mode_names[m->mode], m->paging_off ? " (off)" : "", (unsigned long long)va, size,
                 access, (int)r.status, r.error, (int)r.type, host, (unsigned long long)w.gpa,
                 (int)status, (int)type, (void *)want);
    int pi = page_slot(w.gpa);
    if (status != VMMU_TLB_OK || pi < 0)
        return;
    if (pi >= NDATA && m->marker[pi - NDATA] &&
        memcmp(want - (w.gpa & 0xfff), &m->marker[pi - NDATA], 8) != 0)
        fail_msg("page %#llx came back from the pager without its contents",
                 (unsigned long long)(w.gpa & ~0xfffull));
    if (!(access & VMMU_X86_ACC_WRITE))
        return;
    /* A write to a code page is reported (so never served inline); a
     * write to another page is not. */
    bool reported = slow && (r.flags & VMMU_TLB_FLAG_CODE);
    if (reported != m->code[pi])
        fail_msg("a write to page %#llx (%s code page) was %s", (unsigned long long)w.gpa,
                 m->code[pi] ? "a" : "not a", reported ? "reported" : "not reported");
    m->code_writes += m->code[pi];
    if (pi >= NDATA && m->r2_log) {
        uint32_t state;
        assert_int_equal(vmmu_page_state_get(m->t.env.vm, w.gpa, &state), 0);
        if (!(state & VMMU_PAGE_DIRTY))
            fail_msg("a write to logged page %#llx left it clean", (unsigned long long)w.gpa);
        m->r2_written |= 1u << (pi - NDATA);
        m->logged_writes++;
    }
}

static void edit(struct model *m)
{
    switch (rn(m, 8)) {
    case 0:
    case 1: {
        unsigned i = IA + rn(m, NA);
        put_e(m, leaf_of(m, i, 0), random_leaf(m, true, 0));
        mark_stale_all_pcids(m, i);
        break;
    }
    case 2: {
        unsigned i = IB + rn(m, NB);
        put_e(m, leaf_of(m, i, 0), random_leaf(m, true, 0));
        mark_stale_all_pcids(m, i);
        break;
    }
    case 3: { /* region B's PDE: the large page or the page table */
        uint64_t nx = m->mode != M32 && rn(m, 4) == 0 ? E_NX : 0;
        uint64_t v = rn(m, 2) ? random_leaf(m, true, 2) : (m->pt_b | E_P | E_RW | E_US | nx);
        put_e(m, m->pde_b, v);
        mark_stale_range(m, IB, NB);
        break;
    }
    case 4: { /* region A's PDE rights: the paging-structure caches hold them */
        uint64_t v = mode_table(m->mode, get_e(m, m->pde_a));
        v |= E_P | (rn(m, 4) ? E_RW : 0) | (rn(m, 4) ? E_US : 0);
        if (m->mode != M32 && rn(m, 4) == 0)
            v |= E_NX;
        put_e(m, m->pde_a, v);
        mark_stale_range(m, IA, NA);
        break;
    }
    case 5: { /* a private leaf of one PCID's tables */
        unsigned p = rn(m, m->nroot), i = IC + rn(m, NC);
        put_e(m, leaf_of(m, i, p), random_leaf(m, false, 0));
        m->stale_ng[i][p] = true;
        break;
    }
    case 6: { /* a leaf of region D or E (else of A) */
        unsigned i = long_mode(m) ? ID + rn(m, ND + NE) : IA + rn(m, NA);
        put_e(m, leaf_of(m, i, 0), random_leaf(m, true, 0));
        mark_stale_all_pcids(m, i);
        break;
    }
    default: { /* region D's PDPTE: the 1 GiB page or the directory (else B's PDE) */
        if (!long_mode(m)) {
            put_e(m, m->pde_b, random_leaf(m, true, 2));
            mark_stale_range(m, IB, NB);
            break;
        }
        uint64_t nx = rn(m, 4) == 0 ? E_NX : 0;
        uint64_t v = rn(m, 2) ? random_leaf(m, true, 3) : (m->pd_d | E_P | E_RW | E_US | nx);
        put_e(m, m->pdpte_d, v);
        mark_stale_range(m, ID, ND);
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
    switch (rn(m, 11)) {
    case 9:
    case 10: { /* INVLPG / INVPCID 0 at any address of region B's large
                * page (or D's 1 GiB page): every translation built from a
                * large page mapping it goes; 4 KiB-built ones of other pages stay */
        bool d = long_mode(m) && rn(m, 2);
        unsigned first = d ? ID : IB, n = d ? ND : NB;
        uint64_t at = d ? D_BASE + (rnd(m) & ((1ull << 30) - 1)) : B_BASE + rn(m, 2 * 1024 * 1024);
        bool inv = pcide(m) && rn(m, 2);
        unsigned p = m->pcid;
        if (inv) {
            p = rn(m, NPCID);
            if (!applied(vmmu_vcpu_invpcid(v, 0, p, at, &f), &f))
                break;
        } else {
            assert_int_equal(vmmu_vcpu_invlpg(v, at), 0);
        }
        m->large_invals++;
        for (unsigned j = first; j < first + n; j++) {
            bool same = (m->va[j] & ~0xfffull) == (at & ~0xfffull);
            if (same || !m->small_ng[j][p])
                m->stale_ng[j][p] = false;
            if (same)
                m->small_ng[j][p] = false;
            if (!inv && (same || !m->small_g[j])) {
                m->stale_g[j] = false;
                if (same)
                    m->small_g[j] = false;
            }
        }
        break;
    }
    case 0: { /* INVLPG */
        unsigned vi = rn(m, m->nva);
        assert_int_equal(vmmu_vcpu_invlpg(v, m->va[vi] + rn(m, 4096)), 0);
        m->stale_ng[vi][m->pcid] = false;
        m->stale_g[vi] = false;
        m->small_ng[vi][m->pcid] = false;
        m->small_g[vi] = false;
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
        unsigned type = rn(m, 4), p = pcide(m) ? rn(m, NPCID) : 0, vi = rn(m, m->nva);
        if (!applied(vmmu_vcpu_invpcid(v, type, p, m->va[vi], &f), &f))
            break;
        if (type == 0) {
            m->stale_ng[vi][p] = false;
            m->small_ng[vi][p] = false;
        }
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
                                        R_CR4_PCIDE, R_CR4_PSE};
        uint64_t bit = bits[rn(m, 7)], cr4 = pg(m)->cr4;
        bool smep_on = bit == R_CR4_SMEP && !(cr4 & bit);
        bool pcide_off = bit == R_CR4_PCIDE && (cr4 & bit);
        if (!applied(vmmu_vcpu_set_cr4(v, cr4 ^ bit, &f), &f))
            break;
        /* SDM 4.10.4.1: PGE and PSE changes and clearing PCIDE flush
         * everything (PSE only matters to 32-bit paging; vmmu flushes in
         * every mode). */
        if (bit == R_CR4_PGE || bit == R_CR4_PSE || pcide_off)
            clear_all_stale(m);
        if (smep_on) /* SMEP 0 -> 1 invalidates the current PCID */
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
    case 7: /* EFLAGS.AC */
        assert_int_equal(vmmu_vcpu_set_rflags(v, 2 | (rn(m, 2) ? R_RFLAGS_AC : 0)), 0);
        break;
    default: { /* CR0.PG: off now and then (not with PCIDE: #GP), on at the next chance */
        if (!m->paging_off && rn(m, 4))
            break;
        if (!applied(vmmu_vcpu_set_cr0(v, pg(m)->cr0 ^ R_CR0_PG, &f), &f))
            break;
        m->paging_off = !m->paging_off;
        clear_all_stale(m); /* SDM 4.10.4.1: changing CR0.PG flushes everything */
        /* Paging comes back in the seed's mode: EFER.LME, CR4.PAE and
         * LA57 stayed as they were. */
        if (!m->paging_off)
            assert_int_equal(pg(m)->mode, (enum vmmu_x86_mode)(VMMU_X86_MODE_32 + m->mode));
        break;
    }
    }
}

struct totals {
    unsigned long checked, skipped, warm, ad_checked, faults, code_writes, logged_writes;
    unsigned long paged_in, twisted, large_invals;
};

static void run_seed(enum mmode mode, uint64_t seed, unsigned steps, struct totals *tot)
{
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    assert_int_equal(tlb_env_init(&m->t, 32 * MiB), 0);
    m->mode = mode;
    m->rng = (seed * NMODES + mode) * 0x9e3779b97f4a7c15ull + 1;
    build(m);
    r2_make(m, VMMU_MEM_RAM);
    assert_int_equal(vmmu_pager_create(m->t.env.vm, NULL, &m->pager), 0);
    assert_int_equal(vmmu_vcpu_online(m->t.vcpu), 0);
    load(m);
    assert_int_equal(pg(m)->mode, (enum vmmu_x86_mode)(VMMU_X86_MODE_32 + mode));
    for (unsigned s = 0; s < steps; s++) {
        unsigned what = rn(m, 100);
        if (what < 70)
            check_access(m);
        else if (what < 80)
            edit(m);
        else if (what < 84)
            p2m_event(m);
        else
            invalidate_or_switch(m);
    }
    assert_int_equal(vmmu_vcpu_offline(m->t.vcpu), 0);
    struct vmmu_pager_stats ps;
    assert_int_equal(vmmu_pager_stats(m->pager, &ps), 0);
    tot->paged_in += ps.paged_in;
    vmmu_pager_destroy(m->pager);
    tot->checked += m->checked;
    tot->skipped += m->skipped;
    tot->ad_checked += m->ad_checked;
    tot->faults += m->faults;
    tot->twisted += m->twisted;
    tot->large_invals += m->large_invals;
    tot->code_writes += m->code_writes;
    tot->logged_writes += m->logged_writes;
    struct vmmu_tlb_stats st;
    assert_int_equal(vmmu_vcpu_stats(m->t.vcpu, &st), 0);
    tot->warm += st.warm_misses;
    tlb_env_fini(&m->t);
    free(m);
}

static void in_mode(enum mmode mode)
{
    struct totals tot = {0};
    unsigned n = model_seeds("VMMU_MODEL_SEEDS", 12); /* more for a longer search */
    for (uint64_t seed = 1; seed <= n; seed++)
        run_seed(mode, seed, 4000, &tot);
    print_message("model, %s paging: %lu accesses checked (%lu faults), %lu allowed to be "
                  "stale, %lu entries' A/D checked, %lu writes to code pages, %lu to logged "
                  "pages, %lu page-ins, %lu twisted addresses, %lu fills by the warm miss\n",
                  mode_names[mode], tot.checked, tot.faults, tot.skipped, tot.ad_checked,
                  tot.code_writes, tot.logged_writes, tot.paged_in, tot.twisted, tot.warm);
    /* The stream reached both outcomes, and the A/D check ran. */
    assert_true(tot.checked > tot.skipped);
    assert_true(tot.faults > 0 && tot.faults < tot.checked);
    assert_true(tot.ad_checked > 0);
    assert_true(tot.code_writes > 0 && tot.logged_writes > 0 && tot.paged_in > 0);
    assert_true(tot.twisted > 0);
    /* Both fill paths were held to the walker where the warm miss runs. */
    if (long_mode(&(struct model){.mode = mode}))
        assert_true(tot.warm > 0);
    print_message("%lu invalidations inside large pages\n", tot.large_invals);
}

/* One test per paging mode; the test's state names the mode. */
static enum mmode mode_of[NMODES] = {M32, MPAE, M4, M5};

static void agrees_in_mode(void **state)
{
    in_mode(*(const enum mmode *)*state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"tlb_agrees_with_the_walker_in_32bit_paging", agrees_in_mode, NULL, NULL, &mode_of[M32]},
        {"tlb_agrees_with_the_walker_in_pae_paging", agrees_in_mode, NULL, NULL, &mode_of[MPAE]},
        {"tlb_agrees_with_the_walker_in_4level_paging", agrees_in_mode, NULL, NULL, &mode_of[M4]},
        {"tlb_agrees_with_the_walker_in_5level_paging", agrees_in_mode, NULL, NULL, &mode_of[M5]},
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
