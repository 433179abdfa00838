/* SPDX-License-Identifier: MIT */
/* Context tables: fill, victims, flushes and resizing.
 *
 * The slow path (vmmu_tlb_fill) runs when the inline hit test failed.  In
 * order it tries: the entry already at the index (a misaligned access, or
 * a flagged comparator whose answer is known: MMIO), the victim array, and
 * only then a walk (resumed from the paging-structure caches when they
 * hold the upper levels), a P2M lookup, and a fill.
 *
 * Resizing (at flush time, when the table is emptied anyway) keeps
 * QEMU's 30/70 % thresholds but measures demand, not occupancy: demand is
 * the number of distinct pages filled since the last flush, estimated by
 * linear counting over the table's own entries (at least the valid
 * entries, at most the fills).
 * A demand above 70 % of the table grows it at once to the smallest power
 * of two that holds the demand at no more than 70 % (QEMU doubles once per
 * flush, because occupancy cannot exceed the table); a peak demand below
 * 30 % over a window of TLB_RESIZE_WINDOW flushes shrinks the table to the
 * smallest power of two that would have held the peak at no more than
 * 70 %.  QEMU measures its window in time (100 ms); flushes make it
 * deterministic and independent of the host's speed.  A context whose
 * pages keep swapping through the victim array grows by one index bit at
 * its flush, or at once if it does not flush (ctx_grow_now()), and never
 * shrinks back below that.  bench_tlb compares the demand rule with
 * QEMU's on one stream of growing and shrinking working sets
 * (docs/tlb.md); vmmu_vcpu::resize_qemu selects QEMU's for that. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "p2m/p2m_internal.h"
#include "tlb/tlb_internal.h"
#include "x86/x86_internal.h"

#include "vmmu/error.h"

/* Address bits of an IA-32e entry (those above MAXPHYADDR are reserved). */
#define ADDR_MASK_64 0x000ffffffffff000ull

static void entry_clear(struct vmmu_tlb_entry *e)
{
    e->cmp[0] = e->cmp[1] = e->cmp[2] = VMMU_TLB_CMP_INVALID;
    e->addend = 0;
}

static bool victims_any(const struct tlb_ctx *c)
{
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        if (entry_valid(&c->victim[i].hot))
            return true;
    return false;
}

static void ctx_reset_bounds(struct tlb_ctx *c)
{
    c->used = 0;
    c->nfilled = 0;
    c->nlarge = 0;
    c->global = 0;
    c->large_lo = ~0ull;
    c->large_hi = 0;
    c->large_shifts = 0;
    c->keys = 0;
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++) {
        entry_clear(&c->victim[i].hot);
        c->victim[i].page = VMMU_TLB_CMP_INVALID;
    }
    c->fills = 0;
    c->swaps = 0;
    c->grow_retry = 0;
}

/* Distinct pages behind @used valid entries of an @n-entry table after
 * more fills than that: n ln(n / (n - used)), linear counting with the
 * table's own entries as the buckets (pages land at the index of their low
 * page-number bits).  Above 0.9 n the table says only "at least 2.3 n"
 * (n ln 10), and that lower bound is the answer. */
static uint64_t table_pages(unsigned used, unsigned n)
{
    if ((uint64_t)used * 10 > (uint64_t)n * 9)
        used = n - n / 10;
    /* -ln(1 - x) = x + x^2/2 + x^3/3 + ...; x <= 0.9, so 64 terms leave
     * under 1 % out, and this runs only at flushes. */
    double x = (double)used / n, term = x, sum = 0;
    for (unsigned j = 1; j <= 64 && term > 1e-6; j++, term *= x)
        sum += term / j;
    return (uint64_t)(sum * n + 0.5);
}

static int ctx_alloc(struct tlb_ctx *c, unsigned n)
{
    struct vmmu_tlb_entry *hot = vmmu__aligned_alloc(64, (size_t)n * sizeof(*hot));
    struct tlb_cold *cold = vmmu__aligned_alloc(64, (size_t)n * sizeof(*cold));
    if (!hot || !cold) {
        free(hot);
        free(cold);
        return VMMU_ENOMEM;
    }
    memset(hot, 0xff, (size_t)n * sizeof(*hot));
    memset(cold, 0, (size_t)n * sizeof(*cold)); /* touched at the resize, not by the first fills */
    free(c->hot);
    free(c->cold);
    c->hot = hot;
    c->cold = cold;
    c->n = n;
    c->mask = n - 1;
    c->index_mask = (uintptr_t)(n - 1) << VMMU_TLB_ENTRY_SHIFT;
    return 0;
}

int vmmu__tlb_ctx_init(struct tlb_ctx *c, unsigned n)
{
    memset(c, 0, sizeof(*c));
    ctx_reset_bounds(c);
    return ctx_alloc(c, n);
}

void vmmu__tlb_ctx_fini(struct tlb_ctx *c)
{
    free(c->hot);
    free(c->cold);
    c->hot = NULL;
    c->cold = NULL;
}

static unsigned pow2_ceil(unsigned x)
{
    unsigned p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

/* The resize decision, taken at each flush of a context (see the file
 * comment).  Returns the new size (== c->n to keep it). */
static unsigned ctx_resize_target(const struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    unsigned n = c->n;
    /* The demand rule estimates the distinct pages the context was asked
     * to hold since its last flush: what it holds when no fill pushed
     * another page out, else the linear count of the table's own
     * occupancy, never more than the fills.  QEMU's rule counts what it
     * holds, which cannot exceed the table: a working set eight times the
     * table takes it three flushes of doubling to reach, missing all
     * along. */
    unsigned demand = c->used;
    if (!v->resize_qemu && c->fills > c->used) {
        uint64_t pages = table_pages(c->used, n);
        if (pages > c->fills)
            pages = c->fills;
        if (pages > demand)
            demand = (unsigned)pages;
    }
    if (demand > c->peak)
        c->peak = demand;
    c->window++;
    /* Conflict-bound: pages that share an index (regions a power of two
     * apart, like code, data and stack) keep swapping through the victim
     * array however few they are.  A table twice as large gives them one
     * more index bit, and the shrink rule keeps it at least that large
     * (else it would shrink back into the same conflicts). */
    if (!v->resize_qemu && c->swaps >= TLB_CONFLICT_SWAPS && c->swaps > c->fills &&
        n < VMMU_TLB_ENTRIES_MAX && (uint64_t)demand * 100 <= (uint64_t)n * 70) {
        c->floor = n * 2;
        return n * 2;
    }
    if ((uint64_t)demand * 100 > (uint64_t)n * 70 && n < VMMU_TLB_ENTRIES_MAX) {
        if (v->resize_qemu)
            return n * 2;
        /* The smallest table that holds the demand at no more than 70 %. */
        unsigned target = n * 2;
        while (target < VMMU_TLB_ENTRIES_MAX && (uint64_t)demand * 100 > (uint64_t)target * 70)
            target *= 2;
        return target;
    }
    if (c->window >= TLB_RESIZE_WINDOW) {
        unsigned peak = c->peak;
        c->window = 0;
        c->peak = 0;
        if ((uint64_t)peak * 100 < (uint64_t)n * 30 && n > VMMU_TLB_ENTRIES_MIN) {
            unsigned target = pow2_ceil(peak ? peak : 1);
            if ((uint64_t)peak * 100 > (uint64_t)target * 70)
                target *= 2;
            if (target < VMMU_TLB_ENTRIES_MIN)
                target = VMMU_TLB_ENTRIES_MIN;
            if (target < c->floor)
                target = c->floor;
            return target < n ? target : n;
        }
    }
    return n;
}

void vmmu__tlb_ctx_flush(struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    v->stats.flush_contexts++;
    if (!(v->held & c->held_bit)) {
        /* Flushed since its last fill: empty, bounds reset, nothing to
         * learn for the resize window either. */
        v->stats.flush_elided++;
        return;
    }
    v->held &= ~c->held_bit;
    unsigned target = ctx_resize_target(v, c);
    if (c->used == 0 && target == c->n && !victims_any(c)) {
        /* Nothing to drop.  The bounds may still be set by entries that
         * were dropped one by one; clearing them is O(1). */
        v->stats.flush_elided++;
        ctx_reset_bounds(c);
        return;
    }
    unsigned old_n = c->n;
    if (target != old_n && ctx_alloc(c, target) == 0) {
        if (target > old_n)
            v->stats.resize_grow++;
        else
            v->stats.resize_shrink++;
        c->window = 0;
        c->peak = 0;
    } else if (c->nfilled <= TLB_FILLED_LOG) {
        /* Sparse use: clear only what was filled. */
        for (unsigned i = 0; i < c->nfilled; i++)
            entry_clear(&c->hot[c->filled[i]]);
    } else {
        memset(c->hot, 0xff, (size_t)c->n * sizeof(*c->hot));
    }
    ctx_reset_bounds(c);
}

/* A context that keeps swapping victims between flushes (a guest that
 * rarely flushes, with code, data and stack a power of two apart) grows
 * at once: dropping every entry is what a flush does, and a TLB may drop
 * entries at any time.  The caller's view of the table is stale after
 * any call into vmmu anyway.  Out of memory, the table keeps its size and
 * its entries, and the next try waits until the swaps have doubled (so a
 * host short of memory is not asked again at every swap). */
static void ctx_grow_now(struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    unsigned target = c->n * 2;
    if (v->resize_qemu || target > VMMU_TLB_ENTRIES_MAX)
        return;
    if (ctx_alloc(c, target) != 0) {
        c->grow_retry = c->swaps > UINT_MAX / 2 ? UINT_MAX : 2 * c->swaps;
        return;
    }
    v->stats.resize_grow++;
    v->held &= ~c->held_bit;
    c->floor = target;
    c->window = 0;
    c->peak = 0;
    ctx_reset_bounds(c);
    vmmu__tlb_select(v);
}

static void ctx_drop(struct tlb_ctx *c, unsigned idx)
{
    entry_clear(&c->hot[idx]);
    c->used--;
}

/* Call @fn for every index that may hold a valid entry. */
#define CTX_FOR_EACH_CANDIDATE(c, idx, body)                                                       \
    do {                                                                                           \
        if ((c)->nfilled <= TLB_FILLED_LOG) {                                                      \
            for (unsigned k_ = 0; k_ < (c)->nfilled; k_++) {                                       \
                unsigned idx = (c)->filled[k_];                                                    \
                body                                                                               \
            }                                                                                      \
        } else {                                                                                   \
            for (unsigned idx = 0; idx < (c)->n; idx++) {                                          \
                body                                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void victim_drop(struct tlb_ctx *c, unsigned i)
{
    entry_clear(&c->victim[i].hot);
    c->victim[i].page = VMMU_TLB_CMP_INVALID;
}

/* Whether @c may hold a global entry.  Only COLD_GLOBAL of tlb_ctx::global
 * says so: the warm fill ORs its whole cold word in (no mask on the tuned
 * path), so the other bits are set by every fill.  Testing the whole
 * word made every context the warm miss had filled look global: its CR3
 * flushes then dropped entries one by one, never resized the table and
 * never marked the context empty. */
static bool ctx_may_hold_globals(const struct tlb_ctx *c)
{
    return (c->global & COLD_GLOBAL) != 0;
}

void vmmu__tlb_ctx_flush_nonglobal(struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    if (!ctx_may_hold_globals(c)) {
        vmmu__tlb_ctx_flush(v, c);
        return;
    }
    v->stats.flush_contexts++;
    CTX_FOR_EACH_CANDIDATE(c, idx, {
        if (entry_valid(&c->hot[idx]) && !cold_global(&c->cold[idx]))
            ctx_drop(c, idx);
    });
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        if (entry_valid(&c->victim[i].hot) && !cold_global(&c->victim[i].cold))
            victim_drop(c, i);
}

static bool cold_selected(const struct tlb_cold *cd, bool global_only, bool nonglobal_only)
{
    if (global_only && !cold_global(cd))
        return false;
    if (nonglobal_only && cold_global(cd))
        return false;
    return true;
}

/* Whether the valid entry @e (cold half @cd) was built from the guest
 * page of 1 << @s bytes at @base. */
static bool from_large(const struct vmmu_tlb_entry *e, const struct tlb_cold *cd, uint64_t base,
                       unsigned s)
{
    return cold_page_shift(cd) == s && (entry_page(e) & ~((1ull << s) - 1)) == base;
}

void vmmu__tlb_ctx_flush_page(struct tlb_ctx *c, uint64_t page, bool global_only,
                              bool nonglobal_only)
{
    if (c->fills == 0)
        return; /* nothing filled since the last flush: empty, victims too */
    if (global_only && !ctx_may_hold_globals(c))
        return;
    unsigned idx = (unsigned)(page >> VMMU_PAGE_SHIFT) & c->mask;
    if (entry_holds(&c->hot[idx], page) &&
        cold_selected(&c->cold[idx], global_only, nonglobal_only))
        ctx_drop(c, idx);

    /* A large page that maps @page: the architecture's TLB holds one entry
     * for it, which INVLPG of any address inside drops; here it is up to
     * size/4K entries, at the indices its pages hash to (all of them when
     * the large page has more pages than the table has entries). */
    if (c->nlarge && page >= c->large_lo && page < c->large_hi) {
        for (unsigned s = VMMU_PAGE_SHIFT + 1; s < 32; s++) {
            if (!(c->large_shifts & (1u << s)))
                continue;
            uint64_t base = page & ~((1ull << s) - 1);
            uint64_t pages = 1ull << (s - VMMU_PAGE_SHIFT);
            if (pages >= c->n || c->nfilled <= TLB_FILLED_LOG) {
                CTX_FOR_EACH_CANDIDATE(c, i, {
                    const struct tlb_cold *cd = &c->cold[i];
                    if (entry_valid(&c->hot[i]) && from_large(&c->hot[i], cd, base, s) &&
                        cold_selected(cd, global_only, nonglobal_only))
                        ctx_drop(c, i);
                });
            } else {
                for (uint64_t p = 0; p < pages; p++) {
                    unsigned i = (unsigned)((base >> VMMU_PAGE_SHIFT) + p) & c->mask;
                    const struct tlb_cold *cd = &c->cold[i];
                    if (entry_valid(&c->hot[i]) && from_large(&c->hot[i], cd, base, s) &&
                        cold_selected(cd, global_only, nonglobal_only))
                        ctx_drop(c, i);
                }
            }
        }
    }
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++) {
        const struct vmmu_tlb_entry *e = &c->victim[i].hot;
        const struct tlb_cold *cd = &c->victim[i].cold;
        if (!entry_valid(e) || !cold_selected(cd, global_only, nonglobal_only))
            continue;
        unsigned s = cold_page_shift(cd);
        if (entry_page(e) == page ||
            (s > VMMU_PAGE_SHIFT && from_large(e, cd, page & ~((1ull << s) - 1), s)))
            victim_drop(c, i);
    }
}

/* The kind of each access (VMMU_X86_ACC_*, 4 bits) in a rights row: its
 * lane, 3 (the cold bits, never 0) for write + fetch, which the general
 * path rejects. */
_Static_assert(VMMU_X86_ACC_WRITE == 1 && VMMU_X86_ACC_FETCH == 2 && VMMU_X86_ACC_IMPLICIT == 4 &&
                   VMMU_X86_ACC_STACK == 8 && VMMU_X86_ACC_ALL == 15,
               "warm_ctx and warm_lane are indexed by these access bits");
static const uint8_t warm_kind[4] = {VMMU_TLB_READ, VMMU_TLB_WRITE, VMMU_TLB_FETCH, ROW_COLD};

static enum tlb_ctx_id ctx_for(const struct vmmu_x86_paging *pg)
{
    if (pg->cpl == 3)
        return CTX_USER;
    return (pg->rflags & VMMU_X86_RFLAGS_AC) ? CTX_SUP_AC : CTX_SUP;
}

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

void vmmu__tlb_select(struct vmmu_vcpu *v)
{
    struct tlb_slot *s = &v->slot[v->cur_slot];
    v->cur_ctx = ctx_for(&v->pg);
    struct tlb_ctx *c = &s->ctx[v->cur_ctx];
    struct tlb_ctx *sup = &s->ctx[CTX_SUP];
    v->fast.index_mask = (uintptr_t)c->mask << VMMU_TLB_ENTRY_SHIFT;
    v->fast.table = c->hot;
    v->fast.sup_index_mask = (uintptr_t)sup->mask << VMMU_TLB_ENTRY_SHIFT;
    v->fast.sup_table = sup->hot;
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

/* ---- The slow path ------------------------------------------------------ */

static void *result_host(struct vmmu_tlb_result *res, void *host, uint64_t gpa,
                         const struct tlb_cold *cd, uint64_t flags)
{
    res->status = VMMU_TLB_OK;
    res->host = host;
    res->gpa = gpa;
    res->type = (enum vmmu_mem_type)cold_type(cd);
    res->region_id = cold_region_id(cd);
    res->page_size = 1ull << cold_page_shift(cd);
    res->flags = flags;
    return host;
}

static void *result_not_ram(struct vmmu_tlb_result *res, uint64_t gpa, const struct tlb_cold *cd)
{
    res->status = VMMU_TLB_NOT_RAM;
    res->host = NULL;
    res->gpa = gpa;
    res->type = (enum vmmu_mem_type)cold_type(cd);
    res->region_id = cold_region_id(cd);
    res->page_size = 1ull << cold_page_shift(cd);
    return NULL;
}

static void *result_error(struct vmmu_tlb_result *res, int error)
{
    res->status = VMMU_TLB_ERROR;
    res->host = NULL;
    res->error = error;
    return NULL;
}

/* Answer from an entry for @page whose comparator for @kind is not
 * INVALID; NULL with res->status untouched (VMMU_TLB_ERROR) when the
 * entry cannot answer (a write needing a walk: NOTDIRTY).  A WATCH flag
 * answers, and is passed on in res->flags: the access part checks the
 * watchpoints itself.  A CODE flag answers while the page is still marked
 * as code; clearing a mark drops no entry (src/sync), so a mark found
 * gone here is dropped from the comparator, and the next write to the
 * page hits inline. */
static bool answer_from_entry(const struct vmmu_vcpu *v, struct vmmu_tlb_entry *e,
                              const struct tlb_cold *cd, enum vmmu_tlb_kind kind, uint64_t va,
                              struct vmmu_tlb_result *res, void **host)
{
    uint64_t cmp = e->cmp[kind];
    uint64_t flags = cmp & VMMU_TLB_FLAGS_MASK;
    uint64_t gpa = cold_gpa(cd) | (va & ~VMMU_PAGE_MASK);
    if (cmp == VMMU_TLB_CMP_INVALID)
        return false;
    if (flags & (VMMU_TLB_FLAG_NOTDIRTY | VMMU_TLB_FLAG_INVALID))
        return false;
    if (flags & VMMU_TLB_FLAG_CODE) {
        uint32_t state;
        if (vmmu_page_state_get(v->vm, gpa, &state) != 0)
            return false; /* the map changed under the entry: walk again */
        if (!(state & VMMU_PAGE_CODE)) {
            flags &= ~VMMU_TLB_FLAG_CODE;
            e->cmp[kind] = cmp & ~VMMU_TLB_FLAG_CODE;
        }
    }
    if (flags & VMMU_TLB_FLAG_MMIO) {
        *host = result_not_ram(res, gpa, cd);
        return true;
    }
    *host = result_host(res, (void *)(uintptr_t)(va + e->addend), gpa, cd, flags);
    return true;
}

static void log_fill(struct tlb_ctx *c, unsigned idx)
{
    if (c->nfilled < TLB_FILLED_LOG)
        c->filled[c->nfilled] = (uint16_t)idx;
    if (c->nfilled <= TLB_FILLED_LOG)
        c->nfilled++;
}

/* Widen the bounds of @c for an entry of @page (cold half @cd). */
static void note_bounds(struct tlb_ctx *c, uint64_t page, const struct tlb_cold *cd)
{
    c->global |= cd->w & COLD_GLOBAL;
    unsigned s = cold_page_shift(cd);
    if (s > VMMU_PAGE_SHIFT) {
        uint64_t base = page & ~((1ull << s) - 1);
        c->nlarge++;
        c->large_shifts |= 1u << s;
        uint64_t end = base + (1ull << s);
        if (base < c->large_lo)
            c->large_lo = base;
        if (end > c->large_hi || end == 0)
            c->large_hi = end ? end : ~0ull;
    }
    c->keys |= 1u << (cold_pkey(cd) + (cold_user(cd) ? 16 : 0));
}

/* The victim slot of table index @idx. */
static inline unsigned victim_of(unsigned idx)
{
    return idx & (VMMU_TLB_VICTIMS - 1);
}

/* Put (@e, @cd) for @page at @idx, pushing a valid occupant of another
 * page into its victim slot. */
static void ctx_insert(struct vmmu_vcpu *v, struct tlb_ctx *c, unsigned idx, uint64_t page,
                       const struct vmmu_tlb_entry *e, const struct tlb_cold *cd)
{
    uint64_t old = entry_tag(&c->hot[idx]);
    if (old != VMMU_TLB_CMP_INVALID) {
        if ((old & VMMU_PAGE_MASK) != page) {
            c->victim[victim_of(idx)].hot = c->hot[idx];
            c->victim[victim_of(idx)].cold = c->cold[idx];
            c->victim[victim_of(idx)].page = old & VMMU_PAGE_MASK;
        }
    } else {
        /* The victim slot may hold the page, in a copy that could not
         * answer the access (victim_take() declined it): the new entry
         * replaces it, so the context holds the page once. */
        if (c->victim[victim_of(idx)].page == page)
            victim_drop(c, victim_of(idx));
        c->used++;
        log_fill(c, idx);
    }
    c->hot[idx] = *e;
    c->cold[idx] = *cd;
    note_bounds(c, page, cd);
    v->held |= c->held_bit;
    v->stats.fills++;
    c->fills++;
}

/* Whether the victim of @idx translates @page and its comparator for
 * @kind can answer; then swap it with the entry at @idx. */
static bool victim_take(struct tlb_ctx *c, unsigned idx, uint64_t page, enum vmmu_tlb_kind kind)
{
    unsigned vi = victim_of(idx);
    struct vmmu_tlb_entry *ve = &c->victim[vi].hot;
    if (!entry_holds(ve, page) || (ve->cmp[kind] & ~VMMU_TLB_FLAGS_MASK) != page ||
        (ve->cmp[kind] & (VMMU_TLB_FLAG_NOTDIRTY | VMMU_TLB_FLAG_INVALID)))
        return false;
    struct vmmu_tlb_entry e = *ve;
    struct tlb_cold cd = c->victim[vi].cold;
    if (entry_valid(&c->hot[idx])) {
        *ve = c->hot[idx];
        c->victim[vi].cold = c->cold[idx];
        c->victim[vi].page = entry_page(ve);
    } else {
        victim_drop(c, vi);
        c->used++;
        log_fill(c, idx);
    }
    c->hot[idx] = e;
    c->cold[idx] = cd;
    return true;
}

static unsigned page_shift_of(uint64_t size)
{
    unsigned s = VMMU_PAGE_SHIFT;
    while ((1ull << s) < size && s < 63)
        s++;
    return s;
}

/* Bring a paged-out RAM/ROM page back through the P2M's page-in path
 * (without reading it: other threads may be writing it). */
static int page_in(struct vmmu_vm *vm, uint64_t gpa)
{
    int rc = vmmu__gpa_make_resident(vm, gpa);
    return rc < 0 ? rc : 0;
}

/* Walk @va for the fill.  A walk that paged a table in may have waited
 * offline in the page-in handler (vmmu_vcpu::host_gen moved): the vCPU may
 * have acted on flushes meanwhile, so what it read before is older than
 * they are.  Its entries are then not cached, and the fill walks again. */
static int do_walk(struct vmmu_vcpu *v, struct tlb_slot *s, uint64_t va, unsigned access,
                   struct vmmu_x86_walk *w)
{
    v->stats.walks++;
    /* While the replay latch is active (src/access) every entry read must
     * pass its hook: no resuming below cached upper levels. */
    bool psc = v->pg.mode >= VMMU_X86_MODE_4LEVEL && !v->psc_off && !v->latch_walks;
    if (psc) {
        int rc = vmmu__psc_walk(v, &s->psc, va, access, w);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    uint64_t gen = v->host_gen;
    int rc = vmmu_x86_walk(&v->pg, va, access, w);
    if (rc == 0 && w->ok && w->committed && psc && v->host_gen == gen)
        vmmu__psc_store(v, &s->psc, w);
    return rc;
}

void vmmu__tlb_drop_page(struct vmmu_vcpu *v, uint64_t page)
{
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
        struct tlb_slot *s = &v->slot[i];
        bool current = i == v->cur_slot;
        if (!s->valid && !current)
            continue;
        for (unsigned c = 0; c < CTX_COUNT; c++)
            vmmu__tlb_ctx_flush_page(&s->ctx[c], page, !current, false);
    }
}

/* SDM 4.10.4.1: a #PF for @va invalidates the paging-structure-cache
 * entries that would be used for @va and the TLB entries for its page,
 * so that a guest that widened rights (or repointed a table) without
 * INVLPG and took the fault finds the new entries when it retries.  The
 * page goes from every context of the current PCID, and its global
 * entries from the other slots, as INVLPG drops them. */
static void forget_for_fault(struct vmmu_vcpu *v, uint64_t va)
{
    vmmu__tlb_drop_page(v, va & VMMU_PAGE_MASK);
    vmmu__psc_forget_va(&v->slot[v->cur_slot].psc, va);
}

/* Everything but the warm miss: steps 1 to 5 of the file comment. */
static __attribute__((noinline)) void *fill_general(struct vmmu_vcpu *v, uint64_t va,
                                                    unsigned size, unsigned access,
                                                    struct vmmu_tlb_result *res)
{
    struct vmmu_tlb_result scratch;
    if (!res)
        res = &scratch;
    res->flags = 0;
    res->error = 0;
    res->fault.vector = VMMU_X86_FAULT_NONE;
    res->fault.error_code = 0;
    res->fault.cr2 = 0;
    if (!v || size == 0 || size > VMMU_PAGE_SIZE || (access & ~VMMU_X86_ACC_ALL) ||
        ((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH)))
        return result_error(res, VMMU_EINVAL);

    enum vmmu_tlb_kind kind = (access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
                              : (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                                              : VMMU_TLB_READ;
    /* Linear addresses outside IA-32e paging have 32 bits. */
    if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    if ((va & ~VMMU_PAGE_MASK) + size > VMMU_PAGE_SIZE) {
        res->status = VMMU_TLB_CROSSES;
        res->host = NULL;
        return NULL;
    }

    unsigned rounds = 0; /* page-ins, and walks that went offline */
again:;
    uint64_t gen = v->host_gen;
    struct tlb_slot *s = &v->slot[v->cur_slot];
    struct tlb_ctx *c = &s->ctx[(access & VMMU_X86_ACC_IMPLICIT) ? CTX_SUP : v->cur_ctx];
    uint64_t page = va & VMMU_PAGE_MASK;
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & c->mask;
    void *host = NULL;

    /* 1. The entry at the index already translates the page: a misaligned
     *    access, or a flagged comparator with a known answer. */
    if (entry_holds(&c->hot[idx], page) &&
        answer_from_entry(v, &c->hot[idx], &c->cold[idx], kind, va, res, &host)) {
        v->stats.slow_hits++;
        v->stats.not_ram += res->status == VMMU_TLB_NOT_RAM;
        return host;
    }
    /* 2. The victim of this index. */
    if (victim_take(c, idx, page, kind)) {
        if (!answer_from_entry(v, &c->hot[idx], &c->cold[idx], kind, va, res, &host))
            goto walk; /* a code mark it held went with the map it was built from */
        v->stats.victim_hits++;
        v->stats.not_ram += res->status == VMMU_TLB_NOT_RAM;
        if (++c->swaps >= TLB_CONFLICT_GROW && c->swaps >= c->grow_retry &&
            c->swaps > TLB_CONFLICT_RATIO * c->fills)
            ctx_grow_now(v, c);
        return host;
    }

    /* 3. Walk. */
walk:
    v->stats.misses++;
    struct vmmu_x86_walk w;
    int rc = do_walk(v, s, va, access, &w);
    if (rc < 0)
        return result_error(res, rc);
    if (v->host_gen != gen) {
        /* Offline in a page-in of a table: @s, @c and @idx may be stale
         * too (a flush may have resized the table). */
        if (++rounds > TLB_PAGEIN_ROUNDS)
            return result_error(res, VMMU_EBUSY);
        goto again;
    }
    if (!w.ok) {
        v->stats.faults++;
        if (w.fault.vector == VMMU_X86_VEC_PF)
            forget_for_fault(v, va);
        res->status = VMMU_TLB_FAULT;
        res->host = NULL;
        res->fault = w.fault;
        return NULL;
    }

    /* 4. What the guest-physical page is. */
    uint64_t gpa_page = w.gpa & VMMU_PAGE_MASK;
    struct vmmu_p2m_entry pe;
    rc = vmmu_p2m_lookup(v->vm, gpa_page, &pe);
    if (rc == VMMU_ERANGE) {
        memset(&pe, 0, sizeof(pe));
        pe.type = VMMU_MEM_HOLE;
        pe.generation = vmmu_p2m_generation(v->vm);
    } else if (rc < 0) {
        return result_error(res, rc);
    }
    bool ram_like = pe.type == VMMU_MEM_RAM || pe.type == VMMU_MEM_ROM;
    if (ram_like && !pe.hva) {
        /* The page-in may block: the vCPU goes offline, so other vCPUs may
         * have changed the page tables and the vCPU may have acted on
         * flush requests (its tables may even have been resized).  The
         * walk above is then stale: start again from the top.  The host
         * may also take the page away again before the lookup; a bounded
         * number of rounds keeps a vCPU from spinning forever. */
        rc = page_in(v->vm, gpa_page);
        if (rc < 0)
            return result_error(res, rc); /* nothing could bring it back */
        if (++rounds > TLB_PAGEIN_ROUNDS)
            return result_error(res, VMMU_EPAGEDOUT);
        goto again;
    }

    uint64_t wflags = 0;
    if (ram_like && pe.type == VMMU_MEM_RAM) {
        if (pe.page_state & VMMU_PAGE_CODE)
            wflags |= VMMU_TLB_FLAG_CODE;
        const struct vmmu_region *r = p2m_resolve(&v->vm->p2m, gpa_page >> VMMU_PAGE_SHIFT, NULL);
        if (r && (region_flags(r) & VMMU_REGION_LOG_DIRTY) && !(pe.page_state & VMMU_PAGE_DIRTY)) {
            if (kind == VMMU_TLB_WRITE)
                (void)vmmu_page_state_update(v->vm, gpa_page, 1, VMMU_PAGE_DIRTY, 0);
            else
                wflags |= VMMU_TLB_FLAG_NOTDIRTY;
        }
    }

    /* 5. Comparators from the rights of this context. */
    struct vmmu_tlb_entry e;
    uint64_t any = ram_like ? 0 : VMMU_TLB_FLAG_MMIO;
    e.cmp[VMMU_TLB_READ] = (w.rights & VMMU_X86_RIGHT_READ) ? (page | any) : VMMU_TLB_CMP_INVALID;
    e.cmp[VMMU_TLB_FETCH] = (w.rights & VMMU_X86_RIGHT_FETCH) ? (page | any) : VMMU_TLB_CMP_INVALID;
    if (!(w.rights & VMMU_X86_RIGHT_WRITE))
        e.cmp[VMMU_TLB_WRITE] = VMMU_TLB_CMP_INVALID;
    else if (!w.dirty && w.nlevels > 0)
        /* The first write must walk as a write to set D, whatever the
         * page is (with paging off there is no D to set). */
        e.cmp[VMMU_TLB_WRITE] = page | VMMU_TLB_FLAG_NOTDIRTY;
    else if (!ram_like || pe.type == VMMU_MEM_ROM)
        e.cmp[VMMU_TLB_WRITE] = page | VMMU_TLB_FLAG_MMIO;
    else
        e.cmp[VMMU_TLB_WRITE] = page | wflags;
    e.addend = ram_like ? (uintptr_t)pe.hva - (uintptr_t)page : 0;
    /* Watchpoints of this vCPU on the page (src/access): those kinds take
     * the slow path, where the access part checks them. */
    if (v->watch_kinds) {
        unsigned wk = v->watch_kinds(v, page);
        for (unsigned k = 0; k < VMMU_TLB_KINDS; k++)
            if ((wk & (1u << k)) && e.cmp[k] != VMMU_TLB_CMP_INVALID)
                e.cmp[k] |= VMMU_TLB_FLAG_WATCH;
    }

    struct tlb_cold cd;
    cd.w = gpa_page | (uint64_t)pe.type | (w.user ? COLD_USER : 0) |
           cold_size_bits(page_shift_of(w.page_size)) | (w.global ? COLD_GLOBAL : 0) |
           (uint64_t)(w.pkey & 0xf) << COLD_PKEY_SHIFT;
    cd.ident = cold_ident(pe.region_id, pe.generation);
    ctx_insert(v, c, idx, page, &e, &cd);

    if (!answer_from_entry(v, &c->hot[idx], &c->cold[idx], kind, va, res, &host))
        return result_error(res, VMMU_EBUSY); /* not reached: the walk allowed @kind */
    if (res->status == VMMU_TLB_NOT_RAM)
        v->stats.not_ram++;
    return host;
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
        return fill_general(v, va, v->arg_size, v->arg_access, res);
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
    return fill_general(v, va, v->arg_size, v->arg_access, res);
}

/* The warm miss with a result block, or under CR4.PKE or CR4.PKS. */
static __attribute__((noinline)) void *fill_warm_full(struct vmmu_vcpu *v, uint64_t va,
                                                      unsigned access,
                                                      struct vmmu_tlb_result *res)
{
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
        return fill_general(v, va, size, access, res);
    v->arg_size = size;
    v->arg_access = access;
    if (((uintptr_t)res | v->pk_on) != 0)
        return fill_warm_full(v, va, access, res);
    return fill_warm(v, va, access, NULL, false, false);
}
