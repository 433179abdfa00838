/* SPDX-License-Identifier: MIT */
/* REP MOVS and REP STOS in chunks, within a caller's budget.
 *
 * A chunk is the longest run of elements that stays inside one page on
 * every side (or one element that straddles a page), so that it is
 * prepared (every side checked) and then moved with one memmove where both
 * sides are RAM.  After each chunk the registers in struct vmmu_rep move
 * on, so that whatever stops the instruction (the budget, a fault, a
 * watchpoint, a device model that answers later) leaves them naming the
 * next element, as the CPU does between iterations (SDM REP: the
 * instruction may be interrupted after any iteration and resumed).
 *
 * A stop with progress is not an error: when a chunk fails after earlier
 * chunks of this call completed, the call returns 0 with the progress and
 * the failure comes back when the caller resumes the instruction.  That is
 * also why moves between RAM pages bypass the replay latch: an instruction
 * step that completed elements never ends with VMMU_EPENDING, so its reads
 * are never replayed. */
#include <string.h>

#include "access/access_internal.h"

#include "vmmu/error.h"

/* Elements from @addr in the direction of travel that stay within its page. */
static uint64_t fit(uint64_t addr, unsigned elem, bool backward)
{
    uint64_t off = addr & ~VMMU_PAGE_MASK;
    if (!backward)
        return (VMMU_PAGE_SIZE - off) / elem;
    if (off + elem > VMMU_PAGE_SIZE)
        return 0;
    return off / elem + 1;
}

static uint64_t step(uint64_t addr, uint64_t k, unsigned elem, bool backward)
{
    return backward ? addr - k * elem : addr + k * elem;
}

/* Lowest address of @k elements starting at @addr. */
static uint64_t low(uint64_t addr, uint64_t k, unsigned elem, bool backward)
{
    return backward ? addr - (k - 1) * elem : addr;
}

/* Elements of the chunk that may be made before a VMMU_WATCH_BEFORE
 * watchpoint, for a side at @addr. */
static uint64_t before_watch(struct vmmu__access_vcpu *a, uint64_t addr, uint64_t k,
                             unsigned elem, bool backward, unsigned kind)
{
    if (!a->nwatch)
        return k;
    uint64_t lo = low(addr, k, elem, backward);
    uint32_t bytes = (uint32_t)(k * elem);
    uint32_t first = vmmu__watch_first_before(a, lo, bytes, kind);
    if (first == bytes)
        return k;
    if (!backward)
        return first / elem;
    /* Going down: the elements above the highest watched byte. */
    uint32_t b = bytes;
    while (b-- > first && vmmu__watch_first_before(a, lo + b, 1, kind) != 0)
        ;
    return (bytes - 1 - b) / elem;
}

static int rep_args(struct vmmu_vcpu *v, struct vmmu_rep *r, struct vmmu_x86_fault *fault)
{
    if (!v || !v->access || !r || !fault ||
        !(r->elem == 1 || r->elem == 2 || r->elem == 4 || r->elem == 8))
        return VMMU_EINVAL;
    vmmu__fault_none(fault);
    return 0;
}

/* After a chunk's preparation faulted: the CPU reports the first element it
 * could not make, which for a backward chunk is its highest element (at
 * @addr), not the chunk's lowest byte.  Linear addresses outside IA-32e
 * paging have 32 bits (SDM 4.7: CR2 holds the linear address). */
static void fix_cr2(const struct vmmu_vcpu *v, struct vmmu_x86_fault *fault, uint64_t addr,
                    uint64_t k, bool backward)
{
    if (fault->vector == VMMU_X86_VEC_PF && backward && k > 1)
        fault->cr2 = v->pg.mode < VMMU_X86_MODE_4LEVEL ? addr & 0xffffffffull : addr;
}

/* Every page of @p is RAM with host memory: one copy serves a chunk, and
 * the order of its elements cannot be seen. */
static bool chunk_in_ram(const struct vmmu_prepared *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (!p->page[i].host || p->page[i].type != VMMU_MEM_RAM)
            return false;
    return true;
}

/* A page of @p is MMIO or a device page: reading it has side effects a
 * repeat would show, and writing it may pend. */
static bool reaches_device(const struct vmmu_prepared *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].type == VMMU_MEM_MMIO || p->page[i].type == VMMU_MEM_DEVICE)
            return true;
    return false;
}

/* A page of @p is a device model's: a write there may pend. */
static bool write_may_pend(const struct vmmu_prepared *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].type == VMMU_MEM_DEVICE)
            return true;
    return false;
}

/* An element after the first of an element-by-element chunk touches a
 * VMMU_WATCH_BEFORE watchpoint that a callback of an earlier element
 * added (the chunk was cut before those there when it was prepared): the
 * call stops before it, with its hit, as that preparation would have. */
static bool watched_since(struct vmmu_vcpu *v, uint64_t addr, unsigned elem, unsigned access,
                          struct vmmu_x86_fault *fault)
{
    struct piece p = {.va = addr, .len = elem};
    return vmmu__watch_stops(v, &p, 1, access, fault);
}

/* What a call returns when it stops with code @rc (> 0: before an
 * element, for no error) after @done elements. */
static int stopped(int rc, uint64_t done)
{
    return (rc > 0 || (rc < 0 && done > 0)) ? 0 : rc;
}

int vmmu_access_rep_movs(struct vmmu_vcpu *v, struct vmmu_rep *r, uint64_t budget,
                         unsigned src_access, struct vmmu_x86_fault *fault)
{
    int rc = rep_args(v, r, fault);
    if (rc)
        return rc;
    if (src_access & (VMMU_X86_ACC_WRITE | ~VMMU_X86_ACC_ALL))
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    unsigned e = r->elem;
    uint64_t done = 0;
    while (r->count && done < budget) {
        uint64_t k = r->count < budget - done ? r->count : budget - done;
        uint64_t fs = fit(r->src, e, r->backward), fd = fit(r->dst, e, r->backward);
        uint64_t f = fs < fd ? fs : fd;
        if (f == 0)
            f = 1; /* one element straddling a page */
        if (k > f)
            k = f;
        uint64_t kw = before_watch(a, r->src, k, e, r->backward, VMMU_WATCH_READ);
        uint64_t kd = before_watch(a, r->dst, k, e, r->backward, VMMU_WATCH_WRITE);
        if (kd < kw)
            kw = kd;
        /* The next element touches a watched byte: it goes alone, and
         * its preparations below stop it (each side checked as a single
         * access is: translated first, so a fault on it comes first). */
        k = kw ? kw : 1;
        /* A re-execution whose first pass stopped at this element (its
         * write reached a device that answers later) has the element's
         * read recorded: the element goes alone, element by element,
         * through the latch, whatever its pages are now (a destination
         * that became RAM must still get what the first pass read). */
        bool replayed = false;
        if (latch_on(a)) {
            const struct latch_event *ev = vmmu__latch_event_peek(a);
            uint64_t sva = v->pg.mode < VMMU_X86_MODE_4LEVEL ? r->src & 0xffffffffull : r->src;
            if (ev && ev->addr == sva) {
                k = 1;
                replayed = true;
            }
        }
        uint32_t bytes = (uint32_t)(k * e);
        struct vmmu_prepared ps, pd;
        /* Every element of the chunk is aligned as its first one is. */
        if (vmmu__alignment_fault(v, r->src, e, src_access, fault))
            return stopped(0, done);
        rc = vmmu_access_prepare(v, low(r->src, k, e, r->backward), bytes, src_access, &ps, fault);
        if (rc < 0 || vmmu__fault_raised(fault)) {
            fix_cr2(v, fault, r->src, k, r->backward);
            return stopped(rc, done);
        }
        if (vmmu__alignment_fault(v, r->dst, e, VMMU_X86_ACC_WRITE, fault))
            return stopped(0, done);
        rc = vmmu_access_prepare(v, low(r->dst, k, e, r->backward), bytes, VMMU_X86_ACC_WRITE, &pd,
                                 fault);
        if (rc < 0 || vmmu__fault_raised(fault)) {
            fix_cr2(v, fault, r->dst, k, r->backward);
            return stopped(rc, done);
        }
        if (!replayed && chunk_in_ram(&ps) && chunk_in_ram(&pd)) {
            unsigned token = vmmu_latch_disable(v);
            rc = vmmu_prepared_move(&pd, &ps, e, r->backward);
            vmmu_latch_restore(v, token);
            if (rc < 0)
                return stopped(rc, done);
        } else {
            /* Element by element, so that a device model answering later
             * stops the instruction after the last element that completed.
             *
             * A step that completed elements returns 0, dropping the
             * latch, so an element whose write pended there would have
             * its source read again when the caller resumes: a read with
             * side effects made twice from a device, and from RAM a value
             * that may have changed since (another vCPU, the device
             * model's own DMA), which the device model then takes for
             * another write than the one it holds.  So an element whose
             * write may pend (a device model's page), and one from a
             * device to a device, is always the first of its call (the
             * call stops before it otherwise), and it starts only if the
             * latch has room for both its sides: a pending write then
             * ends the call with VMMU_EPENDING and the re-execution
             * replays the read. */
            bool alone = write_may_pend(&pd) || (reaches_device(&ps) && reaches_device(&pd));
            for (uint64_t i = 0; i < k; i++) {
                rc = 0;
                uint64_t sa = step(r->src, i, e, r->backward), da = step(r->dst, i, e, r->backward);
                if (alone && done + i > 0)
                    rc = 1; /* stop before it */
                else if (alone && latch_on(a))
                    rc = vmmu__latch_room(a, 2 * e, 2 * e); /* at most a piece a byte */
                if (rc == 0 && i > 0 &&
                    (watched_since(v, sa, e, src_access, fault) ||
                     watched_since(v, da, e, VMMU_X86_ACC_WRITE, fault)))
                    rc = 1;
                uint32_t off = (uint32_t)((r->backward ? k - 1 - i : i) * e);
                uint8_t tmp[8];
                if (rc == 0)
                    rc = vmmu_prepared_read(&ps, off, tmp, e);
                if (rc == 0)
                    rc = vmmu_prepared_write(&pd, off, tmp, e);
                if (rc != 0) {
                    r->src = sa;
                    r->dst = da;
                    r->count -= i;
                    return stopped(rc, done + i);
                }
            }
        }
        r->src = step(r->src, k, e, r->backward);
        r->dst = step(r->dst, k, e, r->backward);
        r->count -= k;
        done += k;
    }
    return 0;
}

int vmmu_access_rep_stos(struct vmmu_vcpu *v, struct vmmu_rep *r, uint64_t budget,
                         struct vmmu_x86_fault *fault)
{
    int rc = rep_args(v, r, fault);
    if (rc)
        return rc;
    struct vmmu__access_vcpu *a = v->access;
    unsigned e = r->elem;
    uint64_t done = 0;
    while (r->count && done < budget) {
        uint64_t k = r->count < budget - done ? r->count : budget - done;
        uint64_t f = fit(r->dst, e, r->backward);
        if (f == 0)
            f = 1;
        if (k > f)
            k = f;
        k = before_watch(a, r->dst, k, e, r->backward, VMMU_WATCH_WRITE);
        if (k == 0)
            k = 1; /* a watched element alone: its preparation stops it */
        uint32_t bytes = (uint32_t)(k * e);
        struct vmmu_prepared pd;
        if (vmmu__alignment_fault(v, r->dst, e, VMMU_X86_ACC_WRITE, fault))
            return stopped(0, done);
        rc = vmmu_access_prepare(v, low(r->dst, k, e, r->backward), bytes, VMMU_X86_ACC_WRITE, &pd,
                                 fault);
        if (rc < 0 || vmmu__fault_raised(fault)) {
            fix_cr2(v, fault, r->dst, k, r->backward);
            return stopped(rc, done);
        }
        if (chunk_in_ram(&pd)) {
            rc = vmmu_prepared_set(&pd, 0, r->value, e, bytes);
            if (rc < 0)
                return stopped(rc, done);
        } else {
            /* Element by element in the direction of travel (a device sees
             * the stores of STOS with DF=1 descend), so that a device
             * model answering later stops the instruction after the last
             * element that completed. */
            for (uint64_t i = 0; i < k; i++) {
                uint32_t off = (uint32_t)((r->backward ? k - 1 - i : i) * e);
                rc = 0;
                if (i > 0 &&
                    watched_since(v, step(r->dst, i, e, r->backward), e, VMMU_X86_ACC_WRITE, fault))
                    rc = 1;
                if (rc == 0)
                    rc = vmmu_prepared_set(&pd, off, r->value, e, e);
                if (rc != 0) {
                    r->dst = step(r->dst, i, e, r->backward);
                    r->count -= i;
                    return stopped(rc, done + i);
                }
            }
        }
        r->dst = step(r->dst, k, e, r->backward);
        r->count -= k;
        done += k;
    }
    return 0;
}
