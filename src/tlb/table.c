/* SPDX-License-Identifier: MIT */
/* Context tables: allocation, flushes, resizing, and which context and
 * table the hit path reads.  Filling them is fill.c (the general path)
 * and warm.c (the warm miss).
 *
 * Resizing (at flush time, when the table is emptied anyway) keeps
 * QEMU's 30/70 % thresholds but measures demand, not occupancy: demand is
 * the number of distinct pages filled since the last flush, estimated by
 * linear counting over the table's own entries when a fill pushed
 * another page out (at least the valid entries, at most those plus the
 * pages pushed out); a fill that replaced its own page's entry, or one
 * after a drop, adds no page.
 * A demand above 70 % of the table grows it at once to the smallest power
 * of two that holds the demand at no more than 70 % (QEMU doubles once per
 * flush, because occupancy cannot exceed the table); a peak demand below
 * 30 % over a window of TLB_RESIZE_WINDOW flushes shrinks the table to the
 * smallest power of two that would have held the peak at no more than
 * 70 %.  QEMU measures its window in time (100 ms); flushes make it
 * deterministic and independent of the host's speed.  A context whose
 * pages keep swapping through the victim array grows by one index bit at
 * its flush, or at once if it does not flush (vmmu__tlb_ctx_grow_now()),
 * and never shrinks back below that.  bench_tlb compares the demand rule with
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
    c->refills = 0;
    c->drops = 0;
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
     * occupancy, never more than what it holds plus the pages pushed out.  QEMU's rule counts what it
     * holds, which cannot exceed the table: a working set eight times the
     * table takes it three flushes of doubling to reach, missing all
     * along. */
    unsigned demand = c->used;
    /* Every fill took a free index (counted in used, less the drops since),
     * replaced its own page's entry, or pushed another page out: only the
     * last kind says the table held fewer pages than it was asked for. */
    uint64_t kept = (uint64_t)c->used + c->drops + c->refills;
    if (!v->resize_qemu && c->fills > kept) {
        uint64_t pages = table_pages(c->used, n);
        uint64_t most = c->used + (c->fills - kept); /* every pushed-out page distinct */
        if (pages > most)
            pages = most;
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

/* Empty @c, at the size @target if it is another and memory allows. */
static void ctx_empty(struct vmmu_vcpu *v, struct tlb_ctx *c, unsigned target);

void vmmu__tlb_ctx_flush(struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    v->stats.flush_contexts++;
    if (!(v->held & c->held_bit)) {
        /* Flushed since its last fill: empty, bounds reset, nothing to
         * learn for the resize window either. */
        v->stats.flush_elided++;
        return;
    }
    ctx_empty(v, c, ctx_resize_target(v, c));
}

static void ctx_empty(struct vmmu_vcpu *v, struct tlb_ctx *c, unsigned target)
{
    v->held &= ~c->held_bit;
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
void vmmu__tlb_ctx_grow_now(struct vmmu_vcpu *v, struct tlb_ctx *c)
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
    c->drops++;
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
    /* The resize rule runs here too, or a context that holds one global
     * page (a kernel's) would keep its size for as long as CR3 writes are
     * its only flushes.  A resize empties the table, global entries
     * included, which a TLB may always do. */
    unsigned target = ctx_resize_target(v, c);
    if (target != c->n) {
        ctx_empty(v, c, target);
        return;
    }
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

static enum tlb_ctx_id ctx_for(const struct vmmu_x86_paging *pg)
{
    if (pg->cpl == 3)
        return CTX_USER;
    return (pg->rflags & VMMU_X86_RFLAGS_AC) ? CTX_SUP_AC : CTX_SUP;
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
    vmmu__tlb_warm_select(v, c, sup);
}
