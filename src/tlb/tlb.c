/* SPDX-License-Identifier: MIT */
/* Context tables: fill, victims, flushes and resizing.
 *
 * The slow path (vmmu_tlb_fill) runs when the inline hit test failed.  In
 * order it tries: the entry already at the index (a misaligned access, or
 * a flagged comparator whose answer is known: MMIO), the victim array, and
 * only then a walk (resumed from the paging-structure caches when they
 * hold the upper levels), a P2M lookup, and a fill.
 *
 * Resizing (at flush time only, when the table is empty anyway) keeps
 * QEMU's 30/70 % thresholds but measures demand, not occupancy: demand is
 * the number of distinct pages filled since the last flush, estimated from
 * a 4096-bit sketch by linear counting (at least the valid entries, at
 * most the fills).
 * A demand above 70 % of the table grows it at once to the smallest power
 * of two that holds the demand at no more than 70 % (QEMU doubles once per
 * flush, because occupancy cannot exceed the table); a peak demand below
 * 30 % over a window of TLB_RESIZE_WINDOW flushes shrinks the table to the
 * smallest power of two that would have held the peak at no more than
 * 70 %.  QEMU measures its window in time (100 ms); flushes make it
 * deterministic and independent of the host's speed.  bench_tlb compares
 * both rules on one stream of growing and shrinking working sets
 * (docs/tlb.md); vmmu_vcpu::resize_qemu selects QEMU's for that. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm_internal.h"
#include "p2m/p2m_internal.h"
#include "tlb/tlb_internal.h"
#include "x86/x86_internal.h"

#include "vmmu/error.h"

/* Address bits of an IA-32e entry (those above MAXPHYADDR are reserved). */
#define ADDR_MASK_64 0x000ffffffffff000ull

static bool entry_valid(const struct vmmu_tlb_entry *e)
{
    return (e->cmp[0] & e->cmp[1] & e->cmp[2]) != VMMU_TLB_CMP_INVALID;
}

static void entry_clear(struct vmmu_tlb_entry *e)
{
    e->cmp[0] = e->cmp[1] = e->cmp[2] = VMMU_TLB_CMP_INVALID;
    e->addend = 0;
}

static void ctx_reset_bounds(struct tlb_ctx *c)
{
    c->used = 0;
    c->nfilled = 0;
    c->nglobal = c->nlarge = 0;
    c->large_lo = ~0ull;
    c->large_hi = 0;
    c->large_shifts = 0;
    c->ukeys = c->skeys = 0;
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        entry_clear(&c->vhot[i]);
    c->vused = 0;
    c->vnext = 0;
    c->vtags = 0;
    c->fills = 0;
    if (c->sketch_bits) {
        memset(c->sketch, 0, sizeof(c->sketch));
        c->sketch_bits = 0;
    }
}

/* Count @page in the distinct-page sketch of @c. */
static inline void sketch_add(struct tlb_ctx *c, uint64_t page)
{
    unsigned h = (unsigned)(((page >> VMMU_PAGE_SHIFT) * 0x9e3779b97f4a7c15ull) >> 52);
    uint64_t bit = 1ull << (h & 63);
    if (!(c->sketch[h / 64] & bit)) {
        c->sketch[h / 64] |= bit;
        c->sketch_bits++;
    }
}

/* Distinct pages behind @k bits set in an m-bit sketch: -m ln(1 - k/m)
 * (linear counting), from its series to the fourth power (within 2 % up
 * to k = m/2).  Above 0.9 m the sketch says only "very many". */
static uint64_t sketch_pages(unsigned k)
{
    const uint64_t m = TLB_SKETCH_BITS;
    if (k * 10ull > m * 9)
        return UINT64_MAX;
    uint64_t k2 = (uint64_t)k * k, k3 = k2 * k;
    return k + k2 / (2 * m) + k3 / (3 * m * m) + k3 / m * k / (4 * m * m);
}

static int ctx_alloc(struct tlb_ctx *c, unsigned n)
{
    struct vmmu_tlb_entry *hot = aligned_alloc(64, (size_t)n * sizeof(*hot));
    struct tlb_cold *cold = malloc((size_t)n * sizeof(*cold));
    if (!hot || !cold) {
        free(hot);
        free(cold);
        return VMMU_ENOMEM;
    }
    memset(hot, 0xff, (size_t)n * sizeof(*hot));
    free(c->hot);
    free(c->cold);
    c->hot = hot;
    c->cold = cold;
    c->n = n;
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
    /* The demand rule counts the distinct pages the context was asked to
     * hold since its last flush (the sketch; the fills when the sketch is
     * saturated), and never less than what it holds.  QEMU's rule counts
     * what it holds, which cannot exceed the table: a working set eight
     * times the table takes it three flushes of doubling to reach, missing
     * all along. */
    unsigned demand = c->used;
    if (!v->resize_qemu) {
        uint64_t pages = sketch_pages(c->sketch_bits);
        if (pages > c->fills)
            pages = c->fills;
        if (pages > demand)
            demand = (unsigned)pages;
    }
    if (demand > c->peak)
        c->peak = demand;
    c->window++;
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
    if (c->used == 0 && c->vused == 0 && target == c->n) {
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

static void ctx_drop(struct tlb_ctx *c, unsigned idx)
{
    entry_clear(&c->hot[idx]);
    c->used--;
}

/* The victim tag of @page: 1..128 from a hash of the page number (the
 * victims that matter, pages conflicting at one index, share low bits). */
static uint64_t victim_tag(uint64_t page)
{
    return (((page >> VMMU_PAGE_SHIFT) * 0x9e3779b97f4a7c15ull) >> 57) + 1;
}

/* Byte @i of vtags (bits 8i..8i+7 of the word: the hosts are little-endian,
 * and a byte may alias anything). */
static inline uint8_t *victim_tag_byte(struct tlb_ctx *c, unsigned i)
{
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "vtags bytes in word order");
    return (uint8_t *)&c->vtags + i;
}

static inline void victim_set_tag(struct tlb_ctx *c, unsigned i, uint64_t tag)
{
    *victim_tag_byte(c, i) = (uint8_t)tag;
}

static void victim_drop(struct tlb_ctx *c, unsigned i)
{
    entry_clear(&c->vhot[i]);
    victim_set_tag(c, i, 0);
    c->vused--;
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

void vmmu__tlb_ctx_flush_nonglobal(struct vmmu_vcpu *v, struct tlb_ctx *c)
{
    if (c->nglobal == 0) {
        vmmu__tlb_ctx_flush(v, c);
        return;
    }
    v->stats.flush_contexts++;
    CTX_FOR_EACH_CANDIDATE(c, idx, {
        if (entry_valid(&c->hot[idx]) && !c->cold[idx].global)
            ctx_drop(c, idx);
    });
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++)
        if (entry_valid(&c->vhot[i]) && !c->vcold[i].global)
            victim_drop(c, i);
}

static bool cold_selected(const struct tlb_cold *cd, bool global_only, bool nonglobal_only)
{
    if (global_only && !cd->global)
        return false;
    if (nonglobal_only && cd->global)
        return false;
    return true;
}

void vmmu__tlb_ctx_flush_page(struct tlb_ctx *c, uint64_t page, bool global_only,
                              bool nonglobal_only)
{
    if (c->used == 0 && c->vused == 0)
        return;
    if (global_only && c->nglobal == 0)
        return;
    unsigned idx = (unsigned)(page >> VMMU_PAGE_SHIFT) & (c->n - 1);
    if (entry_valid(&c->hot[idx]) && c->cold[idx].va == page &&
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
                    if (entry_valid(&c->hot[i]) && cd->large_base == base && cd->page_shift == s &&
                        cold_selected(cd, global_only, nonglobal_only))
                        ctx_drop(c, i);
                });
            } else {
                for (uint64_t p = 0; p < pages; p++) {
                    unsigned i = (unsigned)((base >> VMMU_PAGE_SHIFT) + p) & (c->n - 1);
                    const struct tlb_cold *cd = &c->cold[i];
                    if (entry_valid(&c->hot[i]) && cd->large_base == base && cd->page_shift == s &&
                        cold_selected(cd, global_only, nonglobal_only))
                        ctx_drop(c, i);
                }
            }
        }
    }
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++) {
        const struct tlb_cold *cd = &c->vcold[i];
        if (!entry_valid(&c->vhot[i]) || !cold_selected(cd, global_only, nonglobal_only))
            continue;
        uint64_t size = 1ull << cd->page_shift;
        if (cd->va == page || (cd->page_shift > VMMU_PAGE_SHIFT &&
                               cd->large_base == (page & ~(size - 1))))
            victim_drop(c, i);
    }
}

static enum tlb_ctx_id ctx_for(const struct vmmu_x86_paging *pg)
{
    if (pg->cpl == 3)
        return CTX_USER;
    return (pg->rflags & VMMU_X86_RFLAGS_AC) ? CTX_SUP_AC : CTX_SUP;
}

/* The rights table of the warm miss: what each context may do with a
 * leaf, decided once per change of CR0.WP, CR4.SMEP or CR4.SMAP (the only
 * registers the decision reads besides the leaf). */
static void rights_refresh(struct vmmu_vcpu *v)
{
    const struct vmmu_x86_paging *pg = &v->pg;
    uint64_t key = (pg->cr0 & VMMU_X86_CR0_WP) | (pg->cr4 & (VMMU_X86_CR4_SMEP | VMMU_X86_CR4_SMAP));
    if (key == v->rights_key)
        return;
    for (unsigned bits = 0; bits < 8; bits++) {
        struct vmmu__x86_leaf leaf = {.user = bits & 1, .writable = bits & 2, .nx = bits & 4};
        v->rights_tab[CTX_USER][bits] = (uint8_t)vmmu__x86_rights_without_keys(pg, true, false, &leaf);
        v->rights_tab[CTX_SUP][bits] = (uint8_t)vmmu__x86_rights_without_keys(pg, false, false, &leaf);
        v->rights_tab[CTX_SUP_AC][bits] =
            (uint8_t)vmmu__x86_rights_without_keys(pg, false, true, &leaf);
    }
    v->rights_key = key;
}

void vmmu__tlb_select(struct vmmu_vcpu *v)
{
    struct tlb_slot *s = &v->slot[v->cur_slot];
    v->cur_ctx = ctx_for(&v->pg);
    struct tlb_ctx *c = &s->ctx[v->cur_ctx];
    struct tlb_ctx *sup = &s->ctx[CTX_SUP];
    v->fast.index_mask = (uintptr_t)(c->n - 1) << VMMU_TLB_ENTRY_SHIFT;
    v->fast.table = c->hot;
    v->fast.sup_index_mask = (uintptr_t)(sup->n - 1) << VMMU_TLB_ENTRY_SHIFT;
    v->fast.sup_table = sup->hot;
    v->fill_cur = c;
    v->fill_sup = sup;
    v->fill_psc = &s->psc;
    v->fill_pcid = (v->pg.cr4 & VMMU_X86_CR4_PCIDE) ? (uint16_t)(v->pg.cr3 & 0xfff) : 0;
    v->fill_gmask = (v->pg.cr4 & VMMU_X86_CR4_PGE) ? VMMU_X86_PTE_G : 0;
    rights_refresh(v);
}

/* ---- The slow path ------------------------------------------------------ */

static void *result_host(struct vmmu_tlb_result *res, void *host, uint64_t gpa,
                         const struct tlb_cold *cd, uint64_t flags)
{
    res->status = VMMU_TLB_OK;
    res->host = host;
    res->gpa = gpa;
    res->type = (enum vmmu_mem_type)cd->type;
    res->region_id = cd->region_id;
    res->page_size = 1ull << cd->page_shift;
    res->flags = flags;
    return host;
}

static void *result_not_ram(struct vmmu_tlb_result *res, uint64_t gpa, const struct tlb_cold *cd)
{
    res->status = VMMU_TLB_NOT_RAM;
    res->host = NULL;
    res->gpa = gpa;
    res->type = (enum vmmu_mem_type)cd->type;
    res->region_id = cd->region_id;
    res->page_size = 1ull << cd->page_shift;
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
 * watchpoints itself. */
static bool answer_from_entry(const struct vmmu_tlb_entry *e, const struct tlb_cold *cd,
                              enum vmmu_tlb_kind kind, uint64_t va, struct vmmu_tlb_result *res,
                              void **host)
{
    uint64_t cmp = e->cmp[kind];
    uint64_t flags = cmp & VMMU_TLB_FLAGS_MASK;
    uint64_t gpa = cd->gpa | (va & ~VMMU_PAGE_MASK);
    if (cmp == VMMU_TLB_CMP_INVALID)
        return false;
    if (flags & (VMMU_TLB_FLAG_NOTDIRTY | VMMU_TLB_FLAG_INVALID))
        return false;
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

static void note_bounds(struct tlb_ctx *c, const struct tlb_cold *cd)
{
    if (cd->global)
        c->nglobal++;
    if (cd->page_shift > VMMU_PAGE_SHIFT) {
        c->nlarge++;
        c->large_shifts |= 1u << cd->page_shift;
        uint64_t end = cd->large_base + (1ull << cd->page_shift);
        if (cd->large_base < c->large_lo)
            c->large_lo = cd->large_base;
        if (end > c->large_hi || end == 0)
            c->large_hi = end ? end : ~0ull;
    }
    if (cd->user)
        c->ukeys |= (uint16_t)(1u << cd->pkey);
    else
        c->skeys |= (uint16_t)(1u << cd->pkey);
}

/* Copy a cold entry word by word: a struct assignment or memcpy() of 48
 * bytes may become a REP MOVS, slow to start for so little.  The words
 * type may alias anything (GCC and Clang's may_alias). */
typedef uint64_t __attribute__((may_alias)) tlb_word;
static inline void cold_copy(struct tlb_cold *dst, const struct tlb_cold *src)
{
    _Static_assert(sizeof(*src) == 48, "six words");
    const tlb_word *s = (const tlb_word *)(const void *)src;
    tlb_word *d = (tlb_word *)(void *)dst;
    tlb_word w0 = s[0], w1 = s[1], w2 = s[2], w3 = s[3], w4 = s[4], w5 = s[5];
    d[0] = w0;
    d[1] = w1;
    d[2] = w2;
    d[3] = w3;
    d[4] = w4;
    d[5] = w5;
}

/* The word layout fill_warm() stores a cold entry in. */
_Static_assert(offsetof(struct tlb_cold, va) == 0 && offsetof(struct tlb_cold, gpa) == 8 &&
                   offsetof(struct tlb_cold, large_base) == 16 &&
                   offsetof(struct tlb_cold, p2m_gen) == 24 &&
                   offsetof(struct tlb_cold, region_id) == 32 &&
                   offsetof(struct tlb_cold, pcid) == 36 &&
                   offsetof(struct tlb_cold, page_shift) == 38 &&
                   offsetof(struct tlb_cold, global) == 39 &&
                   offsetof(struct tlb_cold, rights) == 40 && offsetof(struct tlb_cold, user) == 41 &&
                   offsetof(struct tlb_cold, pkey) == 42 && offsetof(struct tlb_cold, type) == 43,
               "cold entry word layout");

/* Push the valid occupant of @idx into the victim array (round robin). */
static inline void victim_push(struct tlb_ctx *c, unsigned idx)
{
    unsigned vi = c->vnext++ % VMMU_TLB_VICTIMS;
    if (!*victim_tag_byte(c, vi))
        c->vused++;
    c->vhot[vi] = c->hot[idx];
    cold_copy(&c->vcold[vi], &c->cold[idx]);
    victim_set_tag(c, vi, victim_tag(c->cold[idx].va));
}

/* Put (@e, @cd) at @idx, pushing a valid occupant into the victim array. */
static void ctx_insert(struct vmmu_vcpu *v, struct tlb_ctx *c, unsigned idx,
                       const struct vmmu_tlb_entry *e, const struct tlb_cold *cd)
{
    if (entry_valid(&c->hot[idx])) {
        if (c->cold[idx].va != cd->va)
            victim_push(c, idx);
    } else {
        c->used++;
        log_fill(c, idx);
    }
    c->hot[idx] = *e;
    c->cold[idx] = *cd;
    note_bounds(c, cd);
    v->held |= c->held_bit;
    v->stats.fills++;
    c->fills++;
    sketch_add(c, cd->va);
}

/* Look for @page in the victims; on a match whose comparator for @kind can
 * answer, swap it back into the table.  Returns the victim slot or -1. */
/* One bit 8 * i + 7 for each victim slot i whose tag equals @page's (a
 * zero-byte test of the XOR: it may add slots, never misses one). */
static inline uint64_t victim_candidates(const struct tlb_ctx *c, uint64_t page)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t x = c->vtags ^ (victim_tag(page) * ones);
    return (x - ones) & ~x & (ones << 7);
}

/* Whether a valid victim translates @page. */
static inline bool victim_holds(const struct tlb_ctx *c, uint64_t page)
{
    for (uint64_t m = victim_candidates(c, page); m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m) / 8;
        if (c->vcold[i].va == page && entry_valid(&c->vhot[i]))
            return true;
    }
    return false;
}

static int victim_find(struct tlb_ctx *c, uint64_t page, enum vmmu_tlb_kind kind)
{
    for (uint64_t m = victim_candidates(c, page); m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m) / 8;
        if (c->vcold[i].va == page && entry_valid(&c->vhot[i]) &&
            (c->vhot[i].cmp[kind] & ~VMMU_TLB_FLAGS_MASK) == page &&
            !(c->vhot[i].cmp[kind] & (VMMU_TLB_FLAG_NOTDIRTY | VMMU_TLB_FLAG_INVALID)))
            return (int)i;
    }
    return -1;
}

static void victim_swap(struct tlb_ctx *c, unsigned vi, unsigned idx)
{
    struct vmmu_tlb_entry e = c->vhot[vi];
    struct tlb_cold cd = c->vcold[vi];
    if (entry_valid(&c->hot[idx])) {
        c->vhot[vi] = c->hot[idx];
        cold_copy(&c->vcold[vi], &c->cold[idx]);
        victim_set_tag(c, vi, victim_tag(c->cold[idx].va));
    } else {
        entry_clear(&c->vhot[vi]);
        victim_set_tag(c, vi, 0);
        c->vused--;
        c->used++;
        log_fill(c, idx);
    }
    c->hot[idx] = e;
    c->cold[idx] = cd;
}

static unsigned page_shift_of(uint64_t size)
{
    unsigned s = VMMU_PAGE_SHIFT;
    while ((1ull << s) < size && s < 63)
        s++;
    return s;
}

/* Bring a paged-out RAM/ROM page back through the P2M's page-in path. */
static int page_in(struct vmmu_vm *vm, uint64_t gpa)
{
    uint8_t byte;
    int rc = vmmu_gpa_read(vm, gpa, &byte, 1, 0, NULL);
    return rc < 0 ? rc : 0;
}

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
    int rc = vmmu_x86_walk(&v->pg, va, access, w);
    if (rc == 0 && w->ok && w->committed && psc)
        vmmu__psc_store(v, &s->psc, w);
    return rc;
}

/* ---- The warm miss ------------------------------------------------------ */

/* Whether the warm path may serve this vCPU's misses at all. */
static bool warm_allowed(const struct vmmu_vcpu *v)
{
    bool ok = v->pg.mode >= VMMU_X86_MODE_4LEVEL && !v->psc_off;
    ok = ok && !v->latch_walks && !v->watch_kinds; /* the access part's replay latch and watchpoints */
    return ok;
}

/*
 * The miss that dominates a running guest: 4- or 5-level paging, the
 * paging-structure cache holds the PDE that maps @va's page table (with
 * the table's host address, under the current P2M generation), the PTE is
 * present with no reserved bit, A already set (and D for a write), this
 * context may do @kind, and the page is resident RAM without dirty
 * logging.  Then the walk is one PTE load, it stores nothing (the A/D bits
 * the CPU would set are set), and the fill needs no walk record.
 *
 * Anything else returns false having changed nothing, and the general
 * path below runs: every fault, every A/D update, MMIO and ROM, paged-out
 * pages, dirty logging, large pages, protection keys.  So this path never
 * decides anything the general path would decide differently; the model
 * test checks the TLB against the bare walker with both paths in use.
 */
static inline bool fill_warm(struct vmmu_vcpu *v, uint64_t va, unsigned access,
                             enum vmmu_tlb_kind kind, struct vmmu_tlb_result *res, void **host)
{
    struct tlb_ctx *c = (access & VMMU_X86_ACC_IMPLICIT) ? v->fill_sup : v->fill_cur;
    uint64_t page = va & VMMU_PAGE_MASK;
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & (c->n - 1);
    struct tlb_cold *cd = &c->cold[idx];
    /* Steps 1 and 2 of the general path come first: leave the page to it
     * when the table or the victims may already hold it. */
    if (cd->va == page && entry_valid(&c->hot[idx]))
        return false;
    if (victim_holds(c, page))
        return false;

    /* The PDE from the paging-structure cache; its tag holds va bits
     * 63:21, so a non-canonical va never matches. */
    const struct psc_entry *pde = vmmu__psc_pde(v->fill_psc, va);
    uint64_t gen = atomic_load_explicit(&v->vm->p2m.generation, memory_order_acquire);
    if (pde->tag != (va >> 21) + 1 || !pde->table_host || pde->p2m_gen != gen)
        return false;
    const uint64_t *ptep = (const uint64_t *)(const void *)(pde->table_host +
                                                           ((va >> VMMU_PAGE_SHIFT) & 511) * 8);
    uint64_t pte = __atomic_load_n(ptep, __ATOMIC_ACQUIRE);
    uint64_t need = VMMU_X86_PTE_P | VMMU_X86_PTE_A |
                    ((access & VMMU_X86_ACC_WRITE) ? VMMU_X86_PTE_D : 0);
    if ((pte & need) != need || (pte & v->pg.rsvd_[0][1]))
        return false;

    /* SDM 4.6.1: U/S and R/W of every level, XD of any.  Bit 63 of a PTE
     * that passed the reserved-bit check is XD (without EFER.NXE it is
     * reserved). */
    unsigned bits = (pde->bits & ((unsigned)((pte >> 2) & 1) | (unsigned)(pte & 2) | 4u)) |
                    (unsigned)((pte >> 61) & 4);
    unsigned rights;
    if (v->pg.cr4 & (VMMU_X86_CR4_PKE | VMMU_X86_CR4_PKS)) {
        struct vmmu__x86_leaf leaf = {.user = bits & 1, .writable = bits & 2, .nx = bits & 4,
                                      .pkey = (unsigned)((pte >> 59) & 0xf)};
        rights = vmmu__x86_perm_rights(&v->pg, access, &leaf);
    } else {
        rights = v->rights_tab[c->id][bits];
    }
    if (!(rights & (1u << kind))) /* VMMU_X86_RIGHT_* bit k is access kind k */
        return false;

    /* The data page: resident RAM, no dirty logging.  The region of the
     * previous warm miss answers while the map's generation is the same
     * (a region is removed only with a new generation, and freed only
     * after a grace period). */
    uint64_t gpa = pte & ADDR_MASK_64;
    uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
    const struct vmmu_region *r = v->warm_region;
    if (!r || v->warm_region_gen != gen || gfn - r->gfn >= r->npages) {
        const struct vmmu_p2m *p2m = &v->vm->p2m;
        if (gfn >= p2m->gfn_limit)
            return false;
        r = p2m_resolve(p2m, gfn, NULL);
        if (!r)
            return false;
        v->warm_region = r;
        v->warm_region_gen = gen;
    }
    if (r->type != VMMU_MEM_RAM ||
        (__atomic_load_n(&r->flags, __ATOMIC_ACQUIRE) & VMMU_REGION_LOG_DIRTY))
        return false;
    uint8_t state = region_page_state(r, gfn);
    if (state & VMMU_PAGE_PAGED_OUT)
        return false;

    v->stats.misses++;
    v->stats.walks++;
    v->stats.psc_hits++;
    v->stats.fills++;
    c->fills++;
    sketch_add(c, page);
    uintptr_t addend = (uintptr_t)(r->host + ((gfn - r->gfn) << VMMU_PAGE_SHIFT)) - (uintptr_t)page;
    uint64_t wflags = (state & VMMU_PAGE_CODE) ? VMMU_TLB_FLAG_CODE : 0;

    if (!entry_valid(&c->hot[idx])) {
        c->used++;
        log_fill(c, idx);
    } else {
        victim_push(c, idx); /* valid, and not @page: checked on entry */
    }
    /* Comparators from this context's rights, as the general path builds them. */
    struct vmmu_tlb_entry *e = &c->hot[idx];
    e->cmp[VMMU_TLB_READ] = (rights & VMMU_X86_RIGHT_READ) ? page : VMMU_TLB_CMP_INVALID;
    e->cmp[VMMU_TLB_FETCH] = (rights & VMMU_X86_RIGHT_FETCH) ? page : VMMU_TLB_CMP_INVALID;
    e->cmp[VMMU_TLB_WRITE] = !(rights & VMMU_X86_RIGHT_WRITE) ? VMMU_TLB_CMP_INVALID
                             : (pte & VMMU_X86_PTE_D)          ? page | wflags
                                                                : page | VMMU_TLB_FLAG_NOTDIRTY;
    e->addend = addend;
    /* The cold entry in six word stores (the byte fields packed in
     * registers first: stored one by one they cost twice as much). */
    uint64_t global = (pte & v->fill_gmask) != 0;
    uint64_t user = bits & 1;
    uint64_t pkey = (pte >> 59) & 0xf;
    tlb_word *cw = (tlb_word *)(void *)cd;
    cw[0] = page;                                    /* va */
    cw[1] = gpa;                                     /* gpa */
    cw[2] = page;                                    /* large_base */
    cw[3] = gen;                                     /* p2m_gen */
    cw[4] = (uint64_t)r->id | (uint64_t)v->fill_pcid << 32 |
            (uint64_t)VMMU_PAGE_SHIFT << 48 | global << 56;
    cw[5] = (uint64_t)rights | user << 8 | pkey << 16 | (uint64_t)VMMU_MEM_RAM << 24;
    /* note_bounds() for a 4 KiB page */
    c->nglobal += (unsigned)global;
    *(user ? &c->ukeys : &c->skeys) |= (uint16_t)(1u << pkey);
    v->held |= c->held_bit;

    *host = (void *)(uintptr_t)(va + addend);
    if (res) {
        res->status = VMMU_TLB_OK;
        res->host = *host;
        res->gpa = gpa | (va & ~VMMU_PAGE_MASK);
        res->type = VMMU_MEM_RAM;
        res->region_id = r->id;
        res->page_size = VMMU_PAGE_SIZE;
        res->flags = kind == VMMU_TLB_WRITE ? wflags : 0;
        res->error = 0;
        res->fault.vector = VMMU_X86_FAULT_NONE;
        res->fault.error_code = 0;
        res->fault.cr2 = 0;
    }
    return true;
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

    unsigned pageins = 0;
again:;
    struct tlb_slot *s = &v->slot[v->cur_slot];
    struct tlb_ctx *c = &s->ctx[(access & VMMU_X86_ACC_IMPLICIT) ? CTX_SUP : v->cur_ctx];
    uint64_t page = va & VMMU_PAGE_MASK;
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & (c->n - 1);
    void *host = NULL;

    /* 1. The entry at the index already translates the page: a misaligned
     *    access, or a flagged comparator with a known answer. */
    if (entry_valid(&c->hot[idx]) && c->cold[idx].va == page &&
        answer_from_entry(&c->hot[idx], &c->cold[idx], kind, va, res, &host)) {
        v->stats.slow_hits++;
        return host;
    }
    /* 2. The victims. */
    int vi = victim_find(c, page, kind);
    if (vi >= 0) {
        victim_swap(c, (unsigned)vi, idx);
        v->stats.victim_hits++;
        answer_from_entry(&c->hot[idx], &c->cold[idx], kind, va, res, &host);
        return host;
    }

    /* 3. Walk. */
    v->stats.misses++;
    unsigned wacc = access;
    struct vmmu_x86_walk w;
    int rc = do_walk(v, s, va, wacc, &w);
    if (rc < 0)
        return result_error(res, rc);
    if (!w.ok) {
        v->stats.faults++;
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
        if (++pageins > TLB_PAGEIN_ROUNDS)
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
    else if (!ram_like || pe.type == VMMU_MEM_ROM)
        e.cmp[VMMU_TLB_WRITE] = page | VMMU_TLB_FLAG_MMIO;
    else if (!w.dirty) /* the first write must walk as a write to set D */
        e.cmp[VMMU_TLB_WRITE] = page | VMMU_TLB_FLAG_NOTDIRTY;
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
    cd.va = page;
    cd.gpa = gpa_page;
    cd.page_shift = (uint8_t)page_shift_of(w.page_size);
    cd.large_base = va & ~(w.page_size - 1);
    cd.p2m_gen = pe.generation;
    cd.region_id = pe.region_id;
    cd.pcid = (uint16_t)w.pcid;
    cd.global = w.global;
    cd.rights = (uint8_t)w.rights;
    cd.user = w.user;
    cd.pkey = (uint8_t)w.pkey;
    cd.type = (uint8_t)pe.type;
    ctx_insert(v, c, idx, &e, &cd);

    if (!answer_from_entry(&c->hot[idx], &c->cold[idx], kind, va, res, &host))
        return result_error(res, VMMU_EBUSY); /* not reached: the walk allowed @kind */
    if (res->status == VMMU_TLB_NOT_RAM)
        v->stats.not_ram++;
    return host;
}

void *vmmu_tlb_fill(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                    struct vmmu_tlb_result *res)
{
    /* The warm miss in a small frame of its own, for accesses the general
     * path would not reject or split (IA-32e paging: va is not masked). */
    void *host;
    if (v && size - 1 < VMMU_PAGE_SIZE && (va & ~VMMU_PAGE_MASK) + size <= VMMU_PAGE_SIZE &&
        !(access & ~VMMU_X86_ACC_ALL) &&
        (access & (VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH)) !=
            (VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH) &&
        warm_allowed(v)) {
        enum vmmu_tlb_kind kind = (access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
                                  : (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                                                  : VMMU_TLB_READ;
        if (fill_warm(v, va, access, kind, res, &host))
            return host;
    }
    return fill_general(v, va, size, access, res);
}
