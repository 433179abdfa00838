/* SPDX-License-Identifier: MIT */
/* The warm miss: the fill that serves most misses of a running guest with
 * one PTE read (the paging-structure cache holds the PDE and its table's
 * host address), rights from rows precomputed per context, and the data
 * page from a per-vCPU cache of RAM regions.  Whatever it cannot decide
 * alone goes to the general path (fill.c) having changed nothing.
 *
 * vmmu_tlb_fill() is here: it tries the warm miss first.  This file is
 * the one bench/tlb_instructions.sh counts (tlb/miss_warm_instructions);
 * docs/performance.md says where its instructions go. */
#include <stddef.h>
#include <string.h>

#include "core/vm_internal.h"
#include "p2m/p2m_internal.h"
#include "tlb/tlb_internal.h"
#include "x86/x86_internal.h"

/* Address bits of an IA-32e entry (those above MAXPHYADDR are reserved). */
#define ADDR_MASK_64 0x000ffffffffff000ull

/* ---- Rights and the warm miss's view of the vCPU ------------------------- */

/* The kind of each access (VMMU_X86_ACC_*, 4 bits) in a rights row: its
 * lane, 3 (the cold bits, never 0) for write + fetch, which the general
 * path rejects. */
_Static_assert(VMMU_X86_ACC_WRITE == 1 && VMMU_X86_ACC_FETCH == 2 && VMMU_X86_ACC_IMPLICIT == 4 &&
                   VMMU_X86_ACC_STACK == 8 && VMMU_X86_ACC_ALL == 15,
               "warm_ctx and warm_lane are indexed by these access bits");
static const uint8_t warm_kind[4] = {VMMU_TLB_READ, VMMU_TLB_WRITE, VMMU_TLB_FETCH, ROW_COLD};

/* The rights rows of the warm miss: what each context's fill makes of
 * each comparator for a leaf, by warm_rights_index(), decided once per
 * change of CR0.WP, CR4.SMEP or CR4.SMAP (the only registers the decision
 * reads besides the leaf; EFER.NXE=0 makes bit 63 of a PTE reserved, so
 * XD never reaches the table then).  The comparators are those the
 * general path builds from a walk's rights: a write needs the leaf's D
 * bit (else NOTDIRTY, so that the first write walks and sets it). */
static void rights_refresh(struct vmmu_vcpu *v)
{
    const struct vmmu_x86_paging *pg = &v->pg;
    uint64_t key = (pg->cr0 & VMMU_X86_CR0_WP) | (pg->cr4 & (VMMU_X86_CR4_SMEP | VMMU_X86_CR4_SMAP));
    if (key == v->rights_key)
        return;
    _Static_assert(VMMU_TLB_FLAG_NOTDIRTY <= INT16_MAX && VMMU_TLB_FLAG_CODE <= INT16_MAX,
                   "a row holds NOTDIRTY and CODE");
    _Static_assert((COLD_USER | VMMU_MEM_RAM) <= INT16_MAX && VMMU_MEM_RAM != 0,
                   "a row's cold lane is never 0");
    for (unsigned i = 0; i < WARM_ROWS; i++) {
        /* warm_rights_index(): the PTE's XD, R/W, U/S, D in bits 0, 2, 3,
         * 7, the upper levels' XD, R/W, U/S in bits 1, 4, 5; XD of either,
         * R/W and U/S of both. */
        struct vmmu__x86_leaf leaf = {.user = (i & 8) && (i & 32), .writable = (i & 4) && (i & 16),
                                      .nx = (i & 3) != 0};
        bool dirty = (i & 0x80) != 0;
        for (unsigned ctx = 0; ctx < CTX_COUNT; ctx++) {
            unsigned r = vmmu__x86_rights_without_keys(pg, ctx == CTX_USER, ctx == CTX_SUP_AC, &leaf);
            int16_t *row = v->warm_rows[ctx][0][i], *code = v->warm_rows[ctx][1][i];
            row[VMMU_TLB_READ] = (r & VMMU_X86_RIGHT_READ) ? 0 : -1;
            row[VMMU_TLB_WRITE] = !(r & VMMU_X86_RIGHT_WRITE) ? -1
                                  : dirty                     ? 0
                                                              : (int16_t)VMMU_TLB_FLAG_NOTDIRTY;
            row[VMMU_TLB_FETCH] = (r & VMMU_X86_RIGHT_FETCH) ? 0 : -1;
            row[ROW_COLD] = (int16_t)((leaf.user ? COLD_USER : 0) | VMMU_MEM_RAM);
            memcpy(code, row, sizeof(v->warm_rows[ctx][1][i]));
            if (code[VMMU_TLB_WRITE] == 0)
                code[VMMU_TLB_WRITE] = (int16_t)VMMU_TLB_FLAG_CODE;
        }
    }
    v->rights_key = key;
}

/* A row's lane @kind as a 64-bit value (lanes of 16 bits). */
#define ROW_LANE(kind) (0xffffull << (16 * (kind)))

/* The key masks of the warm miss (CR4.PKE or CR4.PKS set): SDM 4.6.2,
 * a key's access-disable bit takes reads and writes, its write-disable
 * bit takes writes from user-mode accesses, and from supervisor-mode ones
 * when CR0.WP=1; PKRU governs user pages, PKRS supervisor pages; fetches
 * are never governed by keys.  A kind taken is a lane of -1 ORed into the
 * row (VMMU_TLB_CMP_INVALID once ORed into the page). */
static void keys_refresh(struct vmmu_vcpu *v)
{
    const struct vmmu_x86_paging *pg = &v->pg;
    uint64_t pkru = (pg->cr4 & VMMU_X86_CR4_PKE) ? pg->pkru : 0;
    uint64_t pkrs = (pg->cr4 & VMMU_X86_CR4_PKS) ? pg->pkrs : 0;
    uint64_t wp = pg->cr0 & VMMU_X86_CR0_WP;
    if (v->keys_key[0] == pkru && v->keys_key[1] == pkrs && v->keys_key[2] == wp)
        return;
    for (unsigned ctx = 0; ctx < CTX_COUNT; ctx++) {
        for (unsigned k = 0; k < 32; k++) {
            uint64_t reg = (k & 16) ? pkru : pkrs;
            unsigned bits = (unsigned)(reg >> (2 * (k & 15))) & 3;
            uint64_t take = 0;
            if (bits & 1)
                take = ROW_LANE(VMMU_TLB_READ) | ROW_LANE(VMMU_TLB_WRITE);
            else if ((bits & 2) && (ctx == CTX_USER || wp))
                take = ROW_LANE(VMMU_TLB_WRITE);
            v->key_masks[ctx][k] = take;
        }
    }
    v->keys_key[0] = pkru;
    v->keys_key[1] = pkrs;
    v->keys_key[2] = wp;
}

/* The PDE cache the warm miss reads while it must not run: no tag
 * matches. */
#define NEVER2 ~0ull, ~0ull
#define NEVER8 NEVER2, NEVER2, NEVER2, NEVER2
#define NEVER64 NEVER8, NEVER8, NEVER8, NEVER8, NEVER8, NEVER8, NEVER8, NEVER8
static const struct warm_l2 psc_never = {.tag = {NEVER64}};
_Static_assert(PSC_WAYS_L2 == 64, "psc_never initializes 64 tags");

void vmmu__tlb_warm_refresh(struct vmmu_vcpu *v)
{
    /* The access part's replay latch must see every entry a walk reads,
     * and its watchpoints mark comparators: both need the general path. */
    bool off = v->pg.mode < VMMU_X86_MODE_4LEVEL || v->psc_off || v->latch_walks ||
               v->watch_kinds != NULL;
    v->warm_pde = off ? &psc_never : &v->slot[v->cur_slot].psc.warm;
}


void vmmu__tlb_warm_select(struct vmmu_vcpu *v, struct tlb_ctx *c, struct tlb_ctx *sup)
{
    v->cold_keep = COLD_PTE_KEEP & ~((v->pg.cr4 & VMMU_X86_CR4_PGE) ? 0 : COLD_GLOBAL);
    v->pk_on = (v->pg.cr4 & (VMMU_X86_CR4_PKE | VMMU_X86_CR4_PKS)) != 0;
    v->warm_chk = VMMU_X86_PTE_P | VMMU_X86_PTE_A | v->pg.rsvd_[0][1];
    for (unsigned a = 0; a < 16; a++) {
        v->warm_ctx[a] = (a & VMMU_X86_ACC_IMPLICIT) ? sup : c;
        v->warm_lane[a] = 2u * warm_kind[a & 3];
    }
    rights_refresh(v);
    if (v->pk_on)
        keys_refresh(v);
    vmmu__tlb_warm_refresh(v);
}

/* ---- The warm miss ------------------------------------------------------ */

/* Cache the region of the data page @gpa for the warm miss under P2M
 * generation @gen; false when the page is not plain RAM (the general path
 * handles ROM, MMIO, holes and dirty logging). */
static bool warm_region(struct vmmu_vcpu *v, uint64_t gfn, uint64_t gen)
{
    const struct vmmu_p2m *p2m = &v->vm->p2m;
    if (gfn >= p2m->gfn_limit)
        return false;
    const struct vmmu_region *r = p2m_resolve(p2m, gfn, NULL);
    if (!r || r->type != VMMU_MEM_RAM || (region_flags(r) & VMMU_REGION_LOG_DIRTY))
        return false;
    struct warm_region *wr = warm_region_at(v->warm_reg, gfn);
    wr->lo = r->gfn;
    wr->npages = r->npages;
    wr->host = (uintptr_t)r->host;
    wr->state = (uintptr_t)r->state;
    wr->cold1 = cold_ident(r->id, gen);
    return true;
}

/* The warm miss found its data page outside the region cached for its
 * GiB: cache the page's region and start again, or leave the page to the
 * general path.
 * (A tail call, so that the warm miss itself calls nothing and keeps its
 * values in registers.) */
static __attribute__((noinline)) void *warm_region_miss(struct vmmu_vcpu *v, uint64_t va,
                                                        uint64_t gfn, struct vmmu_tlb_result *res)
{
    /* Acquire: the regions of this generation are read below.  The cache
     * was checked against the current generation before the data page was
     * looked at, so a newer generation here leaves it to the next miss. */
    uint64_t gen = atomic_load_explicit(&v->vm->p2m.generation, memory_order_acquire);
    if (gen != v->warm_gen || !warm_region(v, gfn, gen))
        return vmmu__tlb_fill_general(v, va, v->arg_size, v->arg_access, res);
    return vmmu_tlb_fill(v, va, v->arg_size, v->arg_access, res);
}

/* The cached regions belong to another P2M generation: forget them (the
 * next check of a data page then caches the page's region), and the PDEs
 * whose tables were looked up under the old one (warm_l2 keeps only
 * those of vmmu_vcpu::warm_gen). */
void vmmu__tlb_warm_forget(struct vmmu_vcpu *v, uint64_t gen)
{
    v->warm_gen = gen;
    for (unsigned i = 0; i < WARM_REGIONS; i++)
        v->warm_reg[i].npages = 0;
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
        warm_l2_clear(&v->slot[i].psc.warm);
}

static __attribute__((noinline)) void *warm_region_forget(struct vmmu_vcpu *v, uint64_t va,
                                                          uint64_t gen, struct vmmu_tlb_result *res)
{
    vmmu__tlb_warm_forget(v, gen);
    return vmmu_tlb_fill(v, va, v->arg_size, v->arg_access, res);
}

/*
 * The miss that dominates a running guest: 4- or 5-level paging, the
 * paging-structure cache holds the PDE that maps @va's page table (with
 * the table's host address, under the current P2M generation), the PTE is
 * present with no reserved bit, A already set (and D for a write), this
 * context may do the access, and the page is resident RAM of a region
 * the vCPU cached, without dirty logging.  Then the walk is one PTE load,
 * it stores nothing (the A/D bits the CPU would set are set), and the
 * fill needs no walk record.
 *
 * Anything else goes to the general path having changed nothing: every
 * fault, every A/D update, MMIO and ROM, paged-out pages, dirty logging,
 * large pages, an entry or victim already holding the page.  So this path
 * never decides anything the general path would decide differently; the
 * model test checks the TLB against the bare walker with both paths in
 * use.  vmmu_tlb_fill() left the size, access and result in the vCPU.
 *
 * @keys: CR4.PKE or CR4.PKS is set, so the PTE's key takes rights too;
 * @has_res: @res may be non-NULL (else it is NULL and not read).  Both are
 * constants in each copy.
 */
static inline __attribute__((always_inline)) void *fill_warm(struct vmmu_vcpu *v, uint64_t va,
                                                             unsigned access,
                                                             struct vmmu_tlb_result *res,
                                                             bool keys, bool has_res)
{
    /* Written so that few values are live at once: the compiler then keeps
     * them all in registers (bench/tlb_instructions.sh counts this path). */
    if (!has_res)
        res = NULL;

    /* The PDE from the paging-structure cache; its tag is va >> 21 while
     * its table was looked up under the generation of the region cache
     * (so a non-canonical va never matches), else ~0.  Acquire loads of
     * the generation, the PTE and the state byte: the guest's read through
     * the entry must see what the writer of each published before it (a
     * page-in's contents above all). */
    const struct warm_l2 *l2 = v->warm_pde;
    uint64_t x = va >> 21;
    unsigned i = (unsigned)x & (PSC_WAYS_L2 - 1);
    if (l2->tag[i] != x)
        goto general;
    uint64_t gen = atomic_load_explicit(&v->vm->p2m.generation, memory_order_acquire);
    if (gen != v->warm_gen)
        return warm_region_forget(v, va, gen, res);
    uint64_t pte =
        __atomic_load_n(l2->ptes[i] + ((va >> VMMU_PAGE_SHIFT) & 511), __ATOMIC_ACQUIRE);
    /* P and A set, no reserved bit. */
    if ((pte ^ (VMMU_X86_PTE_P | VMMU_X86_PTE_A)) & v->warm_chk)
        goto general;

    /* SDM 4.6.1: U/S and R/W of every level, XD of any, and D for a write
     * (else NOTDIRTY): the row of this context.  Bit 63 of a PTE that
     * passed the reserved-bit check is XD (without EFER.NXE it is
     * reserved). */
    struct tlb_ctx *c = v->warm_ctx[access];
    const int16_t *row = c->rows[warm_rights_index(l2->pbits[i], pte)];
    int16_t krow[4];
    if (keys) {
        /* The key's verdict, and the context now holds that key. */
        _Static_assert(COLD_USER << 1 == 16, "key index: user pages from 16");
        unsigned k = (unsigned)(pte >> 59 & 0xf) | ((unsigned)row[ROW_COLD] & COLD_USER) << 1;
        uint64_t m;
        memcpy(&m, row, sizeof(m));
        m |= c->key_masks[k];
        memcpy(krow, &m, sizeof(m));
        row = krow;
        c->keys |= 1u << k;
    }
    if (*(const int16_t *)(const void *)((const char *)row + v->warm_lane[access]))
        goto general; /* not allowed, or a write through a clean PTE */

    /* The data page: resident RAM of the region cached for its GiB (under
     * the generation just checked). */
    uint64_t gfn = (pte << 12) >> 24;
    _Static_assert(ADDR_MASK_64 >> 12 == (~0ull << 12) >> 24, "gfn of a PTE");
    const struct warm_region *wr = warm_region_at(v->warm_reg, gfn);
    uint64_t off = gfn - wr->lo;
    if (off >= wr->npages)
        return warm_region_miss(v, va, gfn, res);
    unsigned state = __atomic_load_n((const uint8_t *)(wr->state + off), __ATOMIC_ACQUIRE);
    if (__builtin_expect(state & (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_CODE), 0)) {
        if (state & VMMU_PAGE_PAGED_OUT)
            goto general;
        /* A code page flags writes, when a write may hit (D set): the
         * row's twin in the code rows. */
        if (keys) {
            if (krow[VMMU_TLB_WRITE] == 0)
                krow[VMMU_TLB_WRITE] = (int16_t)VMMU_TLB_FLAG_CODE;
        } else {
            row += WARM_ROWS * 4;
        }
    }

    /* The table and the victim slot do not hold the page already (the
     * general path answers from there: an entry holds a page at most
     * once).  The entry's offset is the hit path's; the victim slot of
     * index idx is idx mod 8, so page number mod 8 (a table has at least
     * 64 entries). */
    _Static_assert(VMMU_TLB_ENTRIES_MIN >= VMMU_TLB_VICTIMS, "victim slot from the page number");
    _Static_assert(sizeof(struct tlb_cold) * 2 == sizeof(struct vmmu_tlb_entry), "cold offset");
    uintptr_t eoff = (uintptr_t)(va >> (VMMU_PAGE_SHIFT - VMMU_TLB_ENTRY_SHIFT)) & c->index_mask;
    struct vmmu_tlb_entry *e = (struct vmmu_tlb_entry *)(void *)((char *)c->hot + eoff);
    uint64_t old = entry_tag(e);
    if ((old ^ va) < VMMU_PAGE_SIZE)
        goto general;
    uint64_t page = va & VMMU_PAGE_MASK;
    struct tlb_victim *vi = &c->victim[victim_of((unsigned)(va >> VMMU_PAGE_SHIFT))];
    if (vi->page == page)
        goto general;

    /* The fill: nothing below can fail.  The new values first, then the
     * bookkeeping, so that the context and the region are dead before the
     * copies (fewer values live at once). */
    struct tlb_cold *cd = (struct tlb_cold *)(void *)((char *)c->cold + eoff / 2);
    uintptr_t addend = wr->host + (off << VMMU_PAGE_SHIFT) - page;
    uint64_t cold1 = wr->cold1;
    uint64_t w = (pte & v->cold_keep) | (uint16_t)row[ROW_COLD];
    c->global |= w;
    c->fills++;
    v->warm_fills++;
    if (__builtin_expect(old == VMMU_TLB_CMP_INVALID, 0)) {
        /* A free index: no victim (a context with a valid entry is already
         * marked in vmmu_vcpu::held); the copy below goes nowhere. */
        c->used++;
        log_fill(c, (unsigned)(eoff >> VMMU_TLB_ENTRY_SHIFT));
        v->held |= c->held_bit;
        vi = &v->warm_junk;
    }
    /* A valid occupant (another page: checked above) goes to its victim
     * slot.  Comparators from the row, as the general path builds them;
     * the cold entry: the PTE's address, G (with CR4.PGE) and key, then
     * type RAM, 4 KiB, and the user bit from the row. */
    vi->page = old & VMMU_PAGE_MASK;
    vi->hot = *e;
    e->cmp[VMMU_TLB_READ] = page | (uint64_t)(int64_t)row[VMMU_TLB_READ];
    e->cmp[VMMU_TLB_WRITE] = page | (uint64_t)(int64_t)row[VMMU_TLB_WRITE];
    e->cmp[VMMU_TLB_FETCH] = page | (uint64_t)(int64_t)row[VMMU_TLB_FETCH];
    e->addend = addend;
    vi->cold = *cd;
    cd->w = w;
    cd->ident = cold1;

    void *host = (void *)(uintptr_t)(va + addend);
    if (has_res && res) {
        res->status = VMMU_TLB_OK;
        res->host = host;
        res->gpa = (gfn << VMMU_PAGE_SHIFT) | (va & ~VMMU_PAGE_MASK);
        res->type = VMMU_MEM_RAM;
        res->region_id = cold_region_id(cd);
        res->page_size = VMMU_PAGE_SIZE;
        /* A write here had a comparator of just the page, or with CODE. */
        res->flags = (access & VMMU_X86_ACC_WRITE) ? (uint64_t)(uint16_t)row[VMMU_TLB_WRITE] : 0;
        res->error = 0;
        res->fault.vector = VMMU_X86_FAULT_NONE;
        res->fault.error_code = 0;
        res->fault.cr2 = 0;
    }
    return host;

general:
    return vmmu__tlb_fill_general(v, va, v->arg_size, v->arg_access, res);
}

/* The warm miss with a result block, or under CR4.PKE or CR4.PKS.  A
 * caller with a result block may be after an MMIO or device page, which
 * leaves the inline path at every access: its entry answers here, before
 * the warm miss reads the PTE and looks for the page's region. */
static __attribute__((noinline)) void *fill_warm_full(struct vmmu_vcpu *v, uint64_t va,
                                                      unsigned access,
                                                      struct vmmu_tlb_result *res)
{
    unsigned kind = warm_kind[access & 3];
    const struct tlb_cold *cd;
    if (res && kind < VMMU_TLB_KINDS &&
        (cd = entry_not_ram(tlb_ctx_of(v, access), va, (enum vmmu_tlb_kind)kind)) != NULL)
        return vmmu__tlb_answer_not_ram(v, cd, va, res);
    if (v->pk_on)
        return fill_warm(v, va, access, res, true, true);
    return fill_warm(v, va, access, res, false, true);
}

void *vmmu_tlb_fill(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                    struct vmmu_tlb_result *res)
{
    /* The warm miss first, for accesses the general path would not reject
     * for their size or split: size 1..4096 inside one page (size - 1
     * wraps for 0). */
    if (__builtin_expect(v == NULL || access > VMMU_X86_ACC_ALL ||
                             (va & ~VMMU_PAGE_MASK) + (uint64_t)(size - 1u) >= VMMU_PAGE_SIZE,
                         0))
        return vmmu__tlb_fill_general(v, va, size, access, res);
    v->arg_size = size;
    v->arg_access = access;
    if (((uintptr_t)res | v->pk_on) != 0)
        return fill_warm_full(v, va, access, res);
    return fill_warm(v, va, access, NULL, false, false);
}
