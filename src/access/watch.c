/* SPDX-License-Identifier: MIT */
/* Watchpoints: per vCPU, any number, on linear ranges.
 *
 * The TLB never lets an access to a watched page take the hit path: while
 * a vCPU has watchpoints, its fill asks watch_kinds() which access kinds
 * of the page are watched and marks those comparators
 * VMMU_TLB_FLAG_WATCH.  Adding or removing a watchpoint drops the
 * vCPU's entries for the pages it covers, so the next access refills with
 * the right flags.  The check itself is a scan of the list, paid only by
 * accesses to watched pages (and by every slow-path access of a vCPU that
 * has watchpoints). */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "access/access_internal.h"

#include "vmmu/error.h"

/* Beyond this many pages, adding or removing a watchpoint flushes the whole TLB. */
#define WATCH_FLUSH_PAGES_MAX 64

static bool overlaps(const struct watchpoint *w, uint64_t first, uint64_t last)
{
    return w->va <= last && first <= w->last;
}

static unsigned watch_kinds(const struct vmmu_vcpu *v, uint64_t page)
{
    const struct vmmu__access_vcpu *a = v->access;
    unsigned kinds = 0;
    for (unsigned i = 0; i < a->nwatch; i++) {
        const struct watchpoint *w = &a->watch[i];
        if (!overlaps(w, page, page + VMMU_PAGE_SIZE - 1))
            continue;
        if (w->flags & VMMU_WATCH_READ)
            kinds |= (1u << VMMU_TLB_READ) | (1u << VMMU_TLB_FETCH);
        if (w->flags & VMMU_WATCH_WRITE)
            kinds |= 1u << VMMU_TLB_WRITE;
    }
    return kinds;
}

static void flush_range(struct vmmu_vcpu *v, uint64_t va, uint64_t last)
{
    uint64_t first = va & VMMU_PAGE_MASK, end = last & VMMU_PAGE_MASK;
    if (((end - first) >> VMMU_PAGE_SHIFT) >= WATCH_FLUSH_PAGES_MAX) {
        (void)vmmu_vcpu_tlb_flush_all(v);
        return;
    }
    for (uint64_t p = first;; p += VMMU_PAGE_SIZE) {
        vmmu__access_flush_va_page(v, p);
        if (p == end)
            break;
    }
}

int vmmu_watch_add(struct vmmu_vcpu *v, uint64_t va, uint64_t len, unsigned flags, uint32_t *id)
{
    if (!v || !v->access || len == 0 || va + (len - 1) < va || (flags & ~VMMU_WATCH_FLAGS_ALL) ||
        !(flags & VMMU_WATCH_ACCESS))
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    if (a->nwatch == a->watch_cap) {
        unsigned cap = a->watch_cap ? a->watch_cap * 2 : 8;
        struct watchpoint *w = vmmu__realloc(a->watch, cap * sizeof(*w));
        if (!w)
            return VMMU_ENOMEM;
        a->watch = w;
        a->watch_cap = cap;
    }
    struct watchpoint *w = &a->watch[a->nwatch++];
    w->va = va;
    w->last = va + (len - 1);
    w->flags = flags;
    w->id = a->next_watch_id++;
    if (a->next_watch_id == 0)
        a->next_watch_id = 1;
    v->watch_kinds = watch_kinds;
    vmmu__tlb_warm_refresh(v);
    flush_range(v, w->va, w->last);
    if (id)
        *id = w->id;
    return 0;
}

int vmmu_watch_remove(struct vmmu_vcpu *v, uint32_t id)
{
    if (!v || !v->access)
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    for (unsigned i = 0; i < a->nwatch; i++) {
        if (a->watch[i].id != id)
            continue;
        struct watchpoint gone = a->watch[i];
        a->watch[i] = a->watch[--a->nwatch];
        if (a->nwatch == 0) {
            v->watch_kinds = NULL;
            vmmu__tlb_warm_refresh(v);
        }
        /* The pages may now take the hit path again. */
        flush_range(v, gone.va, gone.last);
        return 0;
    }
    return VMMU_ENOENT;
}

static void record_hit(struct vmmu__access_vcpu *a, const struct watchpoint *w, uint64_t va,
                       uint32_t len, unsigned flags)
{
    if (a->nhits == VMMU_WATCH_HITS_MAX) {
        a->hits_dropped++;
        return;
    }
    struct vmmu_watch_hit *h = &a->hits[a->nhits++];
    h->id = w->id;
    h->flags = flags;
    h->va = va;
    h->len = len;
}

/* Linear addresses have 32 bits outside IA-32e paging: an access's bytes
 * past 0xffffffff are those from 0 up (and in IA-32e paging, bytes past
 * the top of the address space are those from 0 up too). */
static uint64_t la_mask(const struct vmmu__access_vcpu *a)
{
    return a->vcpu->pg.mode < VMMU_X86_MODE_4LEVEL ? 0xffffffffull : ~0ull;
}

/* Offset in the access [@va, @va + @len) (@va inside @mask) of its first
 * byte that @w covers, or @len when none.  An access that wraps is two
 * ranges: [va, mask] and [0, rest]. */
static uint64_t first_covered(const struct watchpoint *w, uint64_t va, uint32_t len,
                              uint64_t mask)
{
    uint64_t last = (va + (len - 1)) & mask;
    uint64_t top = last < va ? mask : last; /* the end of the first range */
    if (overlaps(w, va, top))
        return (w->va > va ? w->va : va) - va;
    if (last < va && overlaps(w, 0, last))
        return (top - va + 1) + w->va; /* w->va <= last: inside the wrapped part */
    return len;
}

bool vmmu__watch_check(struct vmmu__access_vcpu *a, uint64_t va, uint32_t len, unsigned kind,
                       bool record_after)
{
    uint64_t mask = la_mask(a);
    va &= mask;
    for (unsigned i = 0; i < a->nwatch; i++) {
        const struct watchpoint *w = &a->watch[i];
        if (!(w->flags & kind) || first_covered(w, va, len, mask) == len)
            continue;
        /* What the watchpoint watches of what the access does: READ,
         * WRITE, or both for a locked read-modify-write. */
        unsigned did = w->flags & kind & VMMU_WATCH_ACCESS;
        bool before = (w->flags & VMMU_WATCH_BEFORE) != 0;
        if (before && !record_after) {
            record_hit(a, w, va, len, did | VMMU_WATCH_BEFORE);
            return true;
        }
        if (!before && record_after)
            record_hit(a, w, va, len, did);
    }
    return false;
}

uint32_t vmmu__watch_first_before(const struct vmmu__access_vcpu *a, uint64_t va, uint32_t len,
                                  unsigned kind)
{
    uint64_t mask = la_mask(a);
    uint64_t first = len;
    for (unsigned i = 0; i < a->nwatch; i++) {
        const struct watchpoint *w = &a->watch[i];
        if (!(w->flags & kind) || !(w->flags & VMMU_WATCH_BEFORE))
            continue;
        uint64_t at = first_covered(w, va & mask, len, mask);
        if (at < first)
            first = at;
    }
    return (uint32_t)first;
}

bool vmmu__watch_covers(const struct vmmu__access_vcpu *a, uint64_t va, uint32_t len,
                        unsigned kind)
{
    uint64_t mask = la_mask(a);
    for (unsigned i = 0; i < a->nwatch; i++) {
        const struct watchpoint *w = &a->watch[i];
        if ((w->flags & kind) && first_covered(w, va & mask, len, mask) != len)
            return true;
    }
    return false;
}

int vmmu_watch_take_hits(struct vmmu_vcpu *v, struct vmmu_watch_hit *out, unsigned max,
                         uint64_t *dropped)
{
    if (!v || !v->access || (!out && max))
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    unsigned n = a->nhits < max ? a->nhits : max;
    if (n) {
        memcpy(out, a->hits, n * sizeof(*out));
        memmove(a->hits, a->hits + n, (a->nhits - n) * sizeof(*out));
    }
    a->nhits -= n;
    /* Taken inside an instruction: what is taken stays taken. */
    a->hits_mark = a->hits_mark > n ? a->hits_mark - n : 0;
    if (dropped) {
        *dropped = a->hits_dropped;
        a->hits_dropped = 0;
        a->dropped_mark = 0;
    }
    return (int)n;
}

void vmmu__watch_fini(struct vmmu__access_vcpu *a)
{
    free(a->watch);
    a->watch = NULL;
    a->nwatch = a->watch_cap = 0;
}
