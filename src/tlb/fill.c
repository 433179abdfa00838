/* SPDX-License-Identifier: MIT */
/* The general fill: everything the warm miss (warm.c) leaves to it.
 *
 * It runs when the inline hit test failed and the warm miss declined.  In
 * order it tries: the entry already at the index (a misaligned access, or
 * a flagged comparator whose answer is known: MMIO), the victim array, and
 * only then a walk (resumed from the paging-structure caches when they
 * hold the upper levels), a P2M lookup, and a fill. */
#include <stddef.h>
#include <string.h>

#include "core/vm_internal.h"
#include "p2m/p2m_internal.h"
#include "tlb/tlb_internal.h"
#include "x86/x86_internal.h"

#include "vmmu/error.h"

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

/* The fields a fill that ends other than in a fault leaves empty. */
static void result_clear(struct vmmu_tlb_result *res)
{
    res->flags = 0;
    res->error = 0;
    res->fault.vector = VMMU_X86_FAULT_NONE;
    res->fault.error_code = 0;
    res->fault.cr2 = 0;
}

void *vmmu__tlb_answer_not_ram(struct vmmu_vcpu *v, const struct tlb_cold *cd, uint64_t va,
                               struct vmmu_tlb_result *res)
{
    result_clear(res);
    v->stats.slow_hits++;
    v->stats.not_ram++;
    return result_not_ram(res, cold_gpa(cd) | (va & ~VMMU_PAGE_MASK), cd);
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
        } else {
            c->refills++; /* its own page again: no page pushed out */
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
static void *fill_general(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                          struct vmmu_tlb_result *res)
{
    result_clear(res);
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
            vmmu__tlb_ctx_grow_now(v, c);
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

void *vmmu__tlb_fill_general(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                             struct vmmu_tlb_result *res)
{
    struct vmmu_tlb_result scratch;
    if (!res)
        res = &scratch;
    if (!v)
        return fill_general(v, va, size, access, res);
    /* The page-in handler a walk or the page itself may need may not
     * destroy @v, online on this thread or not (struct vmmu__callback). */
    struct vmmu__callback cb = {.vm = v->vm, .vcpu = v};
    vmmu__callback_enter(&cb);
    void *host = fill_general(v, va, size, access, res);
    vmmu__callback_leave(&cb);
    return host;
}
