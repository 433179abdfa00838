/* SPDX-License-Identifier: MIT */
/* Atomic read-modify-write: XCHG, XADD, LOCK AND/OR/XOR, CMPXCHG,
 * CMPXCHG8B/16B.
 *
 * On RAM inside one page the update is a compare-and-swap loop on the
 * naturally aligned 8-byte word holding the operand (or the aligned 16
 * bytes, with CMPXCHG16B, when it straddles two words), so it is atomic
 * against every other vCPU whatever the operand's alignment, without the
 * undefined behaviour of a misaligned C atomic.  The bytes of the word
 * outside the operand are written back unchanged by the same instruction.
 *
 * An operand that crosses a page (or a 16-byte boundary: a split lock on a
 * real CPU) is updated inside an exclusive section of the vm, as a real
 * CPU takes a bus lock: every other vCPU is parked at a safe point
 * meanwhile, so the update is atomic against every access they make,
 * aligned atomics on the same bytes included.  It costs a round trip to
 * every online vCPU, which is why real CPUs and operating systems treat
 * split locks as a bug to report.  MMIO and device pages get a read then
 * a write, not atomic.
 *
 * The replay latch records a locked update of RAM as one event: the old
 * bytes and the bytes the update left (the new ones; the old ones for a
 * CMPXCHG whose compare failed, which writes them back).  A re-executed
 * instruction gets the old bytes back and does not compute the update a
 * second time.  It stores the bytes the update left again, in one
 * compare-and-swap of the word, over exactly these bytes of the operand:
 *  - those this pass of the instruction translated for writing before the
 *    update (the latch notes them: every write is translated by vmmu
 *    under the latch, the inline paths being off), since the re-execution
 *    redid those stores and they must not undo the update;
 *  - those still holding what they held when the instruction last pended
 *    (a later store of the instruction, which the re-execution will make
 *    again, or the update's own bytes).
 * Every other byte was changed by another agent between the passes
 * (another vCPU's update, even one whose bytes happen to equal the ones
 * this update saw or left) and is left as it is.  So the re-execution
 * leaves what one run leaves, and a live read between the update and a
 * later store of the instruction sees the update's bytes.  When the
 * pass translated more write ranges than the latch notes (LATCH_WRITES),
 * the coarser rule of update_replayed() applies.
 *
 * The record is followed whatever the pages are now (the host may have
 * changed their type between the passes): an update recorded on RAM is
 * not applied again, an update made as a read and a write of MMIO or
 * device pieces is made the same way again, its completed pieces served
 * by the latch. */
#include <string.h>

#include "access/access_internal.h"
#include "sync/sync_internal.h"

#include "vmmu/error.h"

/* Computes the new bytes from the old ones; returns false to skip the store. */
typedef bool (*update_fn)(void *ctx, const uint8_t *old, uint8_t *new_bytes, unsigned size);

static bool cas16(uint64_t *p, uint64_t expect[2], const uint64_t desired[2])
{
    bool ok;
    uint64_t lo = expect[0], hi = expect[1];
    __asm__ volatile("lock cmpxchg16b %1"
                     : "=@ccz"(ok), "+m"(*(volatile uint64_t(*)[2])p), "+a"(lo), "+d"(hi)
                     : "b"(desired[0]), "c"(desired[1])
                     : "memory");
    expect[0] = lo;
    expect[1] = hi;
    return ok;
}

/* Whether an aligned 8- or 16-byte word of host memory holds @size bytes at @h. */
static bool in_one_word(const uint8_t *h, unsigned size)
{
    uintptr_t addr = (uintptr_t)h;
    return (addr & 7) + size <= 8 || (addr & 15) + size <= 16;
}

/* Update @size bytes at host @h atomically; they must be in_one_word(). */
static void ram_update(uint8_t *h, unsigned size, update_fn fn, void *ctx, uint8_t *old)
{
    uintptr_t addr = (uintptr_t)h;
    uint8_t nb[16];
    if ((addr & 7) + size <= 8) {
        uint64_t *word = (uint64_t *)(addr & ~(uintptr_t)7);
        unsigned shift = (unsigned)(addr & 7);
        uint64_t cur = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        for (;;) {
            uint8_t bytes[8];
            memcpy(bytes, &cur, 8);
            memcpy(old, bytes + shift, size);
            if (!fn(ctx, old, nb, size))
                return;
            memcpy(bytes + shift, nb, size);
            uint64_t next;
            memcpy(&next, bytes, 8);
            if (__atomic_compare_exchange_n(word, &cur, next, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return;
        }
    }
    {
        uint64_t *pair = (uint64_t *)(addr & ~(uintptr_t)15);
        unsigned shift = (unsigned)(addr & 15);
        uint64_t cur[2] = {0, 0};
        (void)cas16(pair, cur, cur); /* an atomic 16-byte read */
        for (;;) {
            uint8_t bytes[16];
            memcpy(bytes, cur, 16);
            memcpy(old, bytes + shift, size);
            if (!fn(ctx, old, nb, size))
                return;
            memcpy(bytes + shift, nb, size);
            uint64_t next[2];
            memcpy(next, bytes, 16);
            if (cas16(pair, cur, next))
                return;
        }
    }
}

/* An EV_ATOMIC event's data: the old bytes the first pass saw, the bytes
 * the update left, the bytes there when the last pass pended (refreshed by
 * vmmu__atomic_latch_pended()), then the gpa of each of its at most two
 * page pieces. */
#define ATOMIC_EV_SIZE(size) (3u * (size) + 16u)
enum { AT_OLD, AT_LEFT, AT_PENDED };

static const uint8_t *at_bytes(const uint8_t *rec, unsigned size, unsigned which)
{
    return rec + which * size;
}

/* A replayed update: the EV_ATOMIC event's data, and which bytes of the
 * operand this pass translated for writing before it (bit k: byte k),
 * when the latch could note them all (@exact). */
struct replayed {
    const uint8_t *rec;
    uint16_t earlier;
    bool exact;
};

/* ram_update()'s update for a replay (see the file comment): the bytes
 * the update left go over the bytes this pass wrote before it and over
 * bytes still as they were when the instruction last pended; every other
 * byte is another agent's and stays.  When the latch lost count of this
 * pass's writes, the coarser rule: the bytes left go over the whole
 * operand if each of its bytes is one the instruction explains (old,
 * left or pended), else nowhere. */
static bool update_replayed(void *ctx, const uint8_t *cur, uint8_t *new_bytes, unsigned size)
{
    const struct replayed *r = ctx;
    const uint8_t *old = at_bytes(r->rec, size, AT_OLD), *left = at_bytes(r->rec, size, AT_LEFT),
                  *pended = at_bytes(r->rec, size, AT_PENDED);
    if (!r->exact) {
        for (unsigned k = 0; k < size; k++)
            if (cur[k] != old[k] && cur[k] != left[k] && cur[k] != pended[k])
                return false; /* another agent's byte: leave the operand alone */
        if (memcmp(cur, left, size) == 0)
            return false; /* nothing to store again */
        memcpy(new_bytes, left, size);
        return true;
    }
    bool store = false;
    for (unsigned k = 0; k < size; k++) {
        bool ours = ((r->earlier >> k) & 1) || cur[k] == pended[k];
        new_bytes[k] = ours ? left[k] : cur[k];
        store |= new_bytes[k] != cur[k];
    }
    return store;
}

/* Bit k set: byte k of the operand of @size bytes in pieces @p was
 * translated for writing by this pass (vmmu__latch_note_write()). */
static uint16_t written_earlier(const struct latch *l, const struct piece *p, unsigned size)
{
    uint16_t mask = 0;
    for (unsigned k = 0; k < size; k++) {
        uint64_t g = k < p[0].len ? p[0].gpa + k : p[1].gpa + (k - p[0].len);
        for (unsigned i = 0; i < l->nwrites; i++)
            if (g >= l->writes[i].gpa && g < l->writes[i].end)
                mask |= (uint16_t)(1u << k);
    }
    return mask;
}

/* A locked update is done (made or served): its bytes count among this
 * pass's writes for the updates that follow. */
static void note_locked(struct vmmu__access_vcpu *a, const struct piece *p, unsigned n)
{
    if (!latch_on(a))
        return;
    for (unsigned i = 0; i < n; i++)
        vmmu__latch_note_write(a, p[i].gpa, p[i].len);
}

void vmmu__atomic_latch_pended(struct vmmu_vcpu *v)
{
    struct latch *l = &v->access->latch;
    for (unsigned i = 0; i < l->nevents; i++) {
        const struct latch_event *e = &l->events[i];
        /* Only updates this pass made: the snapshot of one made by an
         * earlier pass stays the one taken when that pass pended (taken
         * again, it would hold what other agents wrote meanwhile, and a
         * further replay would take their bytes for the instruction's). */
        if (e->kind != EV_ATOMIC || !e->fresh)
            continue;
        unsigned size = (e->size - 16u) / 3u;
        uint8_t *rec = l->data + e->off, *pended = rec + AT_PENDED * size;
        uint64_t gpa[2];
        memcpy(gpa, rec + 3 * size, sizeof(gpa));
        unsigned len0 = (unsigned)(VMMU_PAGE_SIZE - (gpa[0] & ~VMMU_PAGE_MASK));
        if (len0 > size)
            len0 = size;
        uint8_t now[16];
        bool ok = true;
        for (unsigned p = 0, off = 0; p < 2 && off < size && ok; p++) {
            unsigned len = p == 0 ? len0 : size - len0;
            struct vmmu_p2m_entry pe;
            ok = vmmu_p2m_lookup(v->vm, gpa[p], &pe) == 0 && pe.type == VMMU_MEM_RAM &&
                 pe.hva != NULL;
            if (ok)
                vmmu__guest_copy_in(now + off, pe.hva, len);
            off += len;
        }
        /* A page gone meanwhile: only the update's own bytes are explained. */
        memcpy(pended, ok ? now : at_bytes(rec, size, AT_LEFT), size);
    }
}

/* An update under the latch: the update, noting the bytes it left (the
 * last call is the one that counted: ram_update() calls again only when
 * its compare-and-swap lost a race). */
struct noted {
    update_fn fn;
    void *ctx;
    uint8_t left[16];
};

static bool update_noted(void *ctx, const uint8_t *old, uint8_t *new_bytes, unsigned size)
{
    struct noted *n = ctx;
    bool store = n->fn(n->ctx, old, new_bytes, size);
    memcpy(n->left, store ? new_bytes : old, size);
    return store;
}

/* locked_update_in(): the update needs an exclusive section (not an error code). */
#define NEED_EXCLUSIVE 1

static int locked_update_in(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                            update_fn fn, void *ctx, uint8_t *old, struct vmmu_x86_fault *fault,
                            bool exclusive);

/* The whole locked access: translate as a write, then update.  RAM bytes
 * that no aligned word holds (a split lock) are updated inside an
 * exclusive section of the vm (src/sync): no other vCPU runs meanwhile,
 * so the update is atomic against every other access, atomic or not, as
 * a real CPU's bus lock is.  The section begins before the translation
 * used for the update (waiting for it may take the vCPU offline), so the
 * access is translated again inside it. */
static int locked_update(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                         update_fn fn, void *ctx, uint8_t *old, struct vmmu_x86_fault *fault)
{
    if (vmmu__alignment_fault(v, va, size, access, fault))
        return 0;
    int rc = locked_update_in(v, va, size, access, fn, ctx, old, fault, false);
    if (rc != NEED_EXCLUSIVE)
        return rc;
    vmmu__sync_exclusive_begin(v->vm);
    rc = locked_update_in(v, va, size, access, fn, ctx, old, fault, true);
    vmmu__sync_exclusive_end(v->vm);
    return rc;
}

/* The hits of a locked update that completed: a read and a write of
 * each piece. */
static void locked_hits(struct vmmu__access_vcpu *a, const struct piece *p, unsigned n)
{
    for (unsigned i = 0; i < n && a->nwatch; i++) {
        (void)vmmu__watch_check(a, p[i].va, p[i].len, ACC_KIND_READ, true);
        (void)vmmu__watch_check(a, p[i].va, p[i].len, ACC_KIND_WRITE, true);
    }
}

/* One pass of locked_update(): NEED_EXCLUSIVE, having done nothing, when
 * the update needs an exclusive section and @exclusive is false. */
static int locked_update_in(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                            update_fn fn, void *ctx, uint8_t *old, struct vmmu_x86_fault *fault,
                            bool exclusive)
{
    struct vmmu__access_vcpu *a = v->access;
    struct piece p[2];
    unsigned n = 0;
    /* The pass inside the exclusive section translates again what the
     * first one translated and reported to the code handler (which may
     * have marked the page again: that mark is for the next write). */
    unsigned xacc = access | VMMU_X86_ACC_WRITE | VMMU_ACCESS_READ_WRITE | ACCESS_LOCKED;
    if (exclusive)
        xacc |= ACCESS_REPORTED;
    int rc = vmmu__access_xlate_range(v, va, size, xacc, p, &n, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    bool ram = p[0].host && p[0].type == VMMU_MEM_RAM &&
               (n == 1 || (p[1].host && p[1].type == VMMU_MEM_RAM));
    uint32_t ev_size = ATOMIC_EV_SIZE(size);
    /* Under the latch, what an earlier pass recorded of this update
     * decides how it is made again, whatever the pages are now (the host
     * may have changed their type between the passes): one made on RAM
     * (an EV_ATOMIC event) is not applied again; one made as a read and a
     * write of other pages (events of its pieces) goes the same way again,
     * its completed pieces served by the latch. */
    const struct latch_event *e = latch_on(a) ? vmmu__latch_event_peek(a) : NULL;
    bool replay_ram = false;
    if (e && e->addr == p[0].va) {
        if (e->kind == EV_ATOMIC && e->size == ev_size)
            replay_ram = true;
        else if ((e->kind == EV_READ || e->kind == EV_IO_READ) && e->locked)
            ram = false;
    }
    if (replay_ram && !ram) {
        /* Made on RAM that is another kind of page now: the old value
         * the first pass saw; nothing is accessed. */
        memcpy(old, vmmu__latch_event_data(a, e), size);
        vmmu__latch_event_take(a);
        locked_hits(a, p, n);
        note_locked(a, p, n);
        return 0;
    }
    bool split = ram && (n == 2 || !in_one_word(p[0].host, size));
    if (split && !exclusive)
        return NEED_EXCLUSIVE;
    bool latch = latch_on(a) && ram; /* other pieces go through the latch themselves */
    struct noted noted = {.fn = fn, .ctx = ctx};
    struct replayed replayed;
    if (latch) {
        if (replay_ram) {
            /* Done by an earlier pass: the old value it saw, and the
             * bytes it left stored again over the old ones (see the file
             * comment). */
            replayed.rec = vmmu__latch_event_data(a, e);
            replayed.earlier = written_earlier(&a->latch, p, size);
            replayed.exact = !a->latch.writes_lost;
            vmmu__latch_event_take(a);
            memcpy(old, replayed.rec, size);
            fn = update_replayed;
            ctx = &replayed;
        } else {
            vmmu__latch_diverge(a); /* (an event of another access: a new path) */
            rc = vmmu__latch_event_room(a, ev_size);
            if (rc)
                return rc;
            fn = update_noted;
            ctx = &noted;
        }
    }
    if (ram && !split) {
        /* A replay may store the recorded bytes; @old keeps what the first pass saw. */
        uint8_t seen[16];
        ram_update(p[0].host, size, fn, ctx, fn == update_replayed ? seen : old);
    } else if (ram) {
        /* Inside the exclusive section: nobody else runs. */
        uint8_t seen[16], nb[16];
        uint8_t *cur = fn == update_replayed ? seen : old;
        /* (Host threads, a migration's copier, may read meanwhile.) */
        vmmu__guest_copy_in(cur, p[0].host, p[0].len);
        if (n == 2)
            vmmu__guest_copy_in(cur + p[0].len, p[1].host, p[1].len);
        if (fn(ctx, cur, nb, size)) {
            vmmu__guest_copy_out(p[0].host, nb, p[0].len);
            if (n == 2)
                vmmu__guest_copy_out(p[1].host, nb + p[0].len, p[1].len);
        }
    } else {
        /* MMIO or device: a read, then a write; not atomic. */
        uint8_t nb[16];
        uint32_t off = 0;
        bool quiet = a->hits_quiet; /* (a callback's own locked update nests) */
        a->hits_quiet = true;       /* the update's hits are recorded once, below */
        bool in_locked = a->latch.in_locked;
        a->latch.in_locked = true;
        /* A device model may wait (the vCPU offline, pages taken away):
         * a piece touched after a wait is looked up again. */
        uint64_t gen = v->host_gen;
        for (unsigned i = 0; i < n && rc == 0; i++) {
            if (v->host_gen != gen)
                rc = vmmu__piece_again(v, &p[i], false, false);
            if (rc == 0)
                rc = vmmu__piece_read(v, &p[i], 0, old + off, p[i].len);
            off += p[i].len;
        }
        if (rc == 0) {
            /* A CMPXCHG whose compare fails still makes its write cycle
             * (SDM CMPXCHG): the device gets the old value back. */
            const uint8_t *w = fn(ctx, old, nb, size) ? nb : old;
            off = 0;
            for (unsigned i = 0; i < n && rc == 0; i++) {
                if (v->host_gen != gen)
                    rc = vmmu__piece_again(v, &p[i], true, true);
                if (rc == 0)
                    rc = vmmu__piece_write(v, &p[i], 0, w + off, p[i].len);
                off += p[i].len;
            }
        }
        a->hits_quiet = quiet;
        a->latch.in_locked = in_locked;
        if (rc == 0 || rc == VMMU_EROM) /* (a ROM dropped the write) */
            locked_hits(a, p, n);
        if (rc < 0)
            return rc;
        note_locked(a, p, n);
        return 0; /* the pieces went through the latch themselves */
    }
    locked_hits(a, p, n);
    note_locked(a, p, n);
    if (!latch || fn == update_replayed)
        return 0;
    uint8_t rec[ATOMIC_EV_SIZE(16)];
    uint64_t gpa[2] = {p[0].gpa, n == 2 ? p[1].gpa : 0};
    memcpy(rec + AT_OLD * size, old, size);
    memcpy(rec + AT_LEFT * size, noted.left, size);
    memcpy(rec + AT_PENDED * size, noted.left, size);
    memcpy(rec + 3 * size, gpa, sizeof(gpa));
    return vmmu__latch_event_record(a, EV_ATOMIC, p[0].va, rec, ev_size);
}

/* ---- RMW ---------------------------------------------------------------------- */

struct rmw_ctx {
    enum vmmu_rmw_op op;
    uint64_t operand;
};

static bool rmw_apply(void *ctx, const uint8_t *old, uint8_t *nb, unsigned size)
{
    const struct rmw_ctx *c = ctx;
    uint64_t o = 0, r;
    memcpy(&o, old, size);
    switch (c->op) {
    case VMMU_RMW_XCHG:
        r = c->operand;
        break;
    case VMMU_RMW_ADD:
        r = o + c->operand;
        break;
    case VMMU_RMW_AND:
        r = o & c->operand;
        break;
    case VMMU_RMW_OR:
        r = o | c->operand;
        break;
    default:
        r = o ^ c->operand;
        break;
    }
    memcpy(nb, &r, size);
    return true;
}

int vmmu_access_rmw(struct vmmu_vcpu *v, uint64_t va, unsigned size, enum vmmu_rmw_op op,
                    uint64_t operand, uint64_t *old, unsigned access,
                    struct vmmu_x86_fault *fault)
{
    if (!v || !v->access || !old || !fault || !(size == 1 || size == 2 || size == 4 || size == 8) ||
        (unsigned)op > VMMU_RMW_XOR || (access & ~(VMMU_X86_ACC_IMPLICIT | VMMU_X86_ACC_STACK |
                                                   VMMU_X86_ACC_WRITE)))
        return VMMU_EINVAL;
    struct rmw_ctx c = {op, operand};
    uint8_t ob[16] = {0};
    int rc = locked_update(v, va, size, access, rmw_apply, &c, ob, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    *old = 0;
    memcpy(old, ob, size);
    return 0;
}

/* ---- CMPXCHG -------------------------------------------------------------------- */

struct cas_ctx {
    const uint8_t *expected, *desired;
    bool swapped;
};

static bool cas_apply(void *ctx, const uint8_t *old, uint8_t *nb, unsigned size)
{
    struct cas_ctx *c = ctx;
    c->swapped = memcmp(old, c->expected, size) == 0;
    if (!c->swapped)
        return false; /* the old value is written back: unchanged RAM needs no store */
    memcpy(nb, c->desired, size);
    return true;
}

int vmmu_access_cmpxchg(struct vmmu_vcpu *v, uint64_t va, unsigned size, const void *expected,
                        const void *desired, void *observed, bool *swapped, unsigned access,
                        struct vmmu_x86_fault *fault)
{
    if (!v || !v->access || !expected || !desired || !observed || !fault ||
        !(size == 1 || size == 2 || size == 4 || size == 8 || size == 16) ||
        (access & ~(VMMU_X86_ACC_IMPLICIT | VMMU_X86_ACC_STACK | VMMU_X86_ACC_WRITE)))
        return VMMU_EINVAL;
    if (size == 16 && (va & 15)) {
        /* SDM CMPXCHG16B: a memory operand not aligned to 16 bytes raises #GP(0). */
        fault->vector = VMMU_X86_VEC_GP;
        fault->error_code = 0;
        fault->cr2 = 0;
        return 0;
    }
    struct cas_ctx c = {expected, desired, false};
    uint8_t ob[16];
    int rc = locked_update(v, va, size, access, cas_apply, &c, ob, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    /* On a replayed instruction the update is not redone: compare again,
     * before @observed is written (a caller may pass the same buffer as
     * @expected: an emulator's accumulator). */
    c.swapped = memcmp(ob, expected, size) == 0;
    memcpy(observed, ob, size);
    if (swapped)
        *swapped = c.swapped;
    return 0;
}
