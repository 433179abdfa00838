/* SPDX-License-Identifier: MIT */
/* Prepared accesses, plain reads and writes, typed loads and stores. */
#include <string.h>

#include "access/access_internal.h"

#include "vmmu/error.h"

static bool access_ok(unsigned access)
{
    return !(access & ~VMMU_X86_ACC_ALL) &&
           !((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH));
}

/* What vmmu_access_prepare() takes: the above, or a write marked as a
 * read-modify-write. */
static bool prepare_access_ok(unsigned access)
{
    if (access & VMMU_ACCESS_READ_WRITE)
        return (access & VMMU_X86_ACC_WRITE) && access_ok(access & ~VMMU_ACCESS_READ_WRITE);
    return access_ok(access);
}

static void piece_to_page(const struct piece *p, struct vmmu_prepared_page *pp)
{
    pp->va = p->va;
    pp->gpa = p->gpa;
    pp->host = p->host;
    pp->len = p->len;
    pp->region_id = p->region_id;
    pp->type = p->type;
}

static void page_to_piece(const struct vmmu_prepared_page *pp, struct piece *p)
{
    p->va = pp->va;
    p->gpa = pp->gpa;
    p->host = pp->host;
    p->len = pp->len;
    p->region_id = pp->region_id;
    p->type = pp->type;
    p->code = false;
}

/* The seal of a prepared access: a digest of every field an operation
 * uses, so that a descriptor changed after vmmu_access_prepare() (its
 * access bits, a page's host address, gpa or type) is refused instead of
 * trusted.  Callers never write the descriptor; this catches the ones
 * that do by mistake.  Three polynomials in an odd constant over 64-bit
 * words, each word in one of them, then the three as one more: a change
 * of any one word always changes it (the multiplier is odd, so
 * invertible mod 2^64).  Three, not one, so that the CPU runs them side
 * by side: one chain of multiplies, each waiting for the last, took
 * three times as long, and the seal is computed at the preparation and
 * checked at every operation.  It starts from a key that differs between
 * runs (the address of a static object), so that no caller comes to
 * depend on a fixed value.  @p->npages must be 1 or 2. */
static const char seal_key;
#define SEAL_MUL 0x9e3779b97f4a7c15ull
#define SEAL(h, w) ((h) * SEAL_MUL + (uint64_t)(w))

static uint64_t prepared_seal(const struct vmmu_prepared *p)
{
    uint64_t key = (uint64_t)(uintptr_t)&seal_key;
    uint64_t a = SEAL(key, (uintptr_t)p->vcpu);
    uint64_t b = SEAL(key + 1, p->va);
    uint64_t c = SEAL(key + 2, p->len | (uint64_t)p->access << 32);
    a = SEAL(a, p->epoch);
    b = SEAL(b, p->host_gen);
    c = SEAL(c, p->npages);
    for (unsigned i = 0; i < p->npages; i++) {
        const struct vmmu_prepared_page *pp = &p->page[i];
        a = SEAL(a, pp->va);
        b = SEAL(b, pp->gpa);
        c = SEAL(c, (uintptr_t)pp->host);
        a = SEAL(a, pp->len | (uint64_t)pp->region_id << 32);
        b = SEAL(b, (uint64_t)pp->type << 8 | i);
    }
    return SEAL(SEAL(a, b), c);
}

/* Fill one page of a prepared access from an inline TLB hit. */
static bool page_hit(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                     struct vmmu_prepared_page *pp)
{
    uint8_t *host = access_page_hit(v, va, access);
    if (!host)
        return false;
    const struct tlb_cold *cold = access_hit_cold(v, va, access);
    pp->va = va;
    pp->gpa = cold_gpa(cold) | (va & ~VMMU_PAGE_MASK);
    pp->host = host;
    pp->len = len;
    pp->region_id = cold_region_id(cold);
    pp->type = (enum vmmu_mem_type)cold_type(cold);
    return true;
}

/* The prepare of an access whose pages all hit in the TLB (no latch, no
 * watchpoint): what vmmu__access_xlate_range() would find, without the
 * slow path.  A hit needs no further check: a comparator without flags
 * means the rights allow the access, the page is RAM (or ROM for a read),
 * its dirty bit is set for a write and no code mark is on it.  False
 * leaves @out partly written; the caller then takes the slow path. */
static bool prepare_hit(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                        struct vmmu_prepared *out)
{
    if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    uint32_t first = (uint32_t)(VMMU_PAGE_SIZE - (va & ~VMMU_PAGE_MASK));
    if (first >= len) {
        if (!page_hit(v, va, len, access, &out->page[0]))
            return false;
        out->npages = 1;
    } else {
        uint64_t va2 = va + first;
        if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
            va2 &= 0xffffffffull; /* 32-bit linear addresses wrap */
        if (!page_hit(v, va, first, access, &out->page[0]) ||
            !page_hit(v, va2, len - first, access, &out->page[1]))
            return false;
        out->npages = 2;
    }
    out->vcpu = v;
    out->va = va;
    out->len = len;
    out->access = access;
    out->epoch = v->access->epoch;
    out->host_gen = v->host_gen;
    return true;
}

/* vmmu_access_prepare() without the seal, for the calls here that use
 * the descriptor themselves and never hand it out. */
static int access_prepare(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                          struct vmmu_prepared *out, struct vmmu_x86_fault *fault)
{
    if (!v || !v->access || !out || !fault || len == 0 || len > VMMU_ACCESS_PREPARE_MAX ||
        !prepare_access_ok(access))
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    if (!a->fast.slow && !a->nwatch && prepare_hit(v, va, len, access, out)) {
        vmmu__fault_none(fault);
        return 0;
    }
    struct piece p[2];
    unsigned n = 0;
    int rc = vmmu__access_xlate_range(v, va, len, access, p, &n, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    out->vcpu = v;
    out->va = p[0].va;
    out->len = len;
    out->access = access;
    out->npages = n;
    for (unsigned i = 0; i < n; i++)
        piece_to_page(&p[i], &out->page[i]);
    out->epoch = v->access->epoch;
    out->host_gen = v->host_gen;
    return 0;
}

int vmmu_access_prepare(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                        struct vmmu_prepared *out, struct vmmu_x86_fault *fault)
{
    int rc = access_prepare(v, va, len, access, out, fault);
    if (rc == 0 && !vmmu__fault_raised(fault))
        out->seal = prepared_seal(out);
    return rc;
}

static int prepared_check(const struct vmmu_prepared *p, uint32_t off, uint32_t n)
{
    if (!p || p->npages < 1 || p->npages > 2 || p->seal != prepared_seal(p))
        return VMMU_EINVAL; /* not a descriptor as vmmu_access_prepare() left it */
    if (!p->vcpu || !p->vcpu->access)
        return VMMU_EINVAL;
    if (p->epoch != p->vcpu->access->epoch)
        return VMMU_EINVAL; /* prepared before the vCPU's last safe point */
    /* The pages cover the whole access, the first one from its start and
     * within its page (a descriptor changed after the preparation would
     * otherwise be read or written only in part). */
    uint32_t len0 = p->page[0].len, len1 = p->npages == 2 ? p->page[1].len : 0;
    if (p->len - 1 >= VMMU_ACCESS_PREPARE_MAX || !len0 || (p->npages == 2 && !len1) ||
        (uint64_t)len0 + len1 != p->len || p->page[0].va != p->va ||
        (p->va & (VMMU_PAGE_SIZE - 1)) + len0 > VMMU_PAGE_SIZE)
        return VMMU_EINVAL;
    if (off > p->len || n > p->len - off)
        return VMMU_EINVAL;
    return 0;
}

/* The descriptor an operation works on: @p itself, or, when host
 * addresses the vCPU found may have gone stale since @p was prepared,
 * @tmp with every page as the map and the page's state are now.  That is
 * after a wait inside vmmu on the vCPU's thread (a device model, the code
 * handler, a page-in handler, a contended lock: the vCPU was offline and
 * the host may have taken pages away), or a call on its thread that
 * narrowed what pages allow (the dirty log read, a code mark: they drop
 * the vCPU's translations at once but are no safe point).  For a write
 * that marks a logged page dirty again and reports a write to a page
 * marked as code, as the preparation did; so a write held across such a
 * call is seen like any other.  The translation itself (the guest-physical
 * address) is the instruction's and stays.  Returns @p or @tmp, or NULL
 * with *@rc set. */
static const struct vmmu_prepared *prepared_now(const struct vmmu_prepared *p,
                                                struct vmmu_prepared *tmp, bool write, int *rc)
{
    struct vmmu_vcpu *v = p->vcpu;
    if (p->host_gen == v->host_gen)
        return p;
    *tmp = *p;
    for (unsigned tries = 0;; tries++) {
        uint64_t gen = v->host_gen;
        for (unsigned i = 0; i < p->npages; i++) {
            struct piece pc;
            page_to_piece(&p->page[i], &pc);
            if ((*rc = vmmu__piece_again(v, &pc, write, tries == 0)) < 0)
                return NULL;
            piece_to_page(&pc, &tmp->page[i]);
        }
        if (gen == v->host_gen) {
            tmp->host_gen = gen;
            return tmp;
        }
        if (tries >= ACCESS_XLATE_RETRIES) {
            *rc = VMMU_EBUSY; /* the host keeps taking the pages away */
            return NULL;
        }
    }
}

/* Call read or write on the parts of [off, off + n) in each page.  If
 * something the operation did waited (a device model, the code handler:
 * the vCPU was offline, the host may have taken pages away), each further
 * piece is looked up again before it is touched. */
static int prepared_span(const struct vmmu_prepared *p, uint32_t off, uint8_t *buf, uint32_t n,
                         bool write)
{
    struct vmmu_vcpu *v = p->vcpu;
    uint32_t base = 0;
    for (unsigned i = 0; i < p->npages && n; i++) {
        const struct vmmu_prepared_page *pp = &p->page[i];
        if (off < base + pp->len) {
            uint32_t in = off - base;
            uint32_t take = pp->len - in < n ? pp->len - in : n;
            struct piece pc;
            page_to_piece(pp, &pc);
            int rc = 0;
            if (v->host_gen != p->host_gen)
                rc = vmmu__piece_again(v, &pc, write, true);
            if (rc == 0)
                rc = write ? vmmu__piece_write(v, &pc, in, buf, take)
                           : vmmu__piece_read(v, &pc, in, buf, take);
            if (rc < 0)
                return rc;
            off += take;
            buf += take;
            n -= take;
        }
        base += pp->len;
    }
    return 0;
}

int vmmu_prepared_read(const struct vmmu_prepared *p, uint32_t offset, void *buf, uint32_t n)
{
    int rc = prepared_check(p, offset, n);
    if (rc)
        return rc;
    if (!buf && n)
        return VMMU_EINVAL;
    struct vmmu_prepared tmp;
    if (!(p = prepared_now(p, &tmp, false, &rc)))
        return rc;
    return prepared_span(p, offset, buf, n, false);
}

int vmmu_prepared_write(const struct vmmu_prepared *p, uint32_t offset, const void *buf,
                        uint32_t n)
{
    int rc = prepared_check(p, offset, n);
    if (rc)
        return rc;
    if ((!buf && n) || !(p->access & VMMU_X86_ACC_WRITE))
        return VMMU_EINVAL;
    struct vmmu_prepared tmp;
    if (!(p = prepared_now(p, &tmp, true, &rc)))
        return rc;
    return prepared_span(p, offset, (uint8_t *)(uintptr_t)buf, n, true);
}

static bool all_ram(const struct vmmu_prepared *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (!p->page[i].host || p->page[i].type != VMMU_MEM_RAM)
            return false;
    return true;
}

static bool elem_ok(unsigned elem)
{
    return elem == 1 || elem == 2 || elem == 4 || elem == 8;
}

int vmmu_prepared_set(const struct vmmu_prepared *p, uint32_t offset, uint64_t value,
                      unsigned elem, uint32_t n)
{
    int rc = prepared_check(p, offset, n);
    if (rc)
        return rc;
    if (!elem_ok(elem) || n % elem || !(p->access & VMMU_X86_ACC_WRITE))
        return VMMU_EINVAL;
    struct vmmu_prepared tmp;
    if (!(p = prepared_now(p, &tmp, true, &rc)))
        return rc;
    if (all_ram(p)) {
        uint8_t pattern[64];
        for (unsigned i = 0; i < sizeof(pattern); i += elem)
            memcpy(pattern + i, &value, elem);
        /* (Under the latch through the pieces: a replay serves writes
         * an earlier pass completed on a page that was not RAM then.) */
        if (elem == 1 && p->npages == 1 && !p->vcpu->access->nwatch &&
            !latch_on(p->vcpu->access) && p->host_gen == p->vcpu->host_gen) {
            memset(p->page[0].host + offset, (int)(value & 0xff), n);
            return 0;
        }
        /* 64 bytes at a time, but for the watchpoints one write per page
         * piece of the bytes done, as every access reports (each chunk
         * would take a hit of its own). */
        struct vmmu__access_vcpu *a = p->vcpu->access;
        bool quiet = a->hits_quiet;
        a->hits_quiet = true;
        uint32_t start = offset;
        while (n) {
            uint32_t take = n < sizeof(pattern) ? n : (uint32_t)sizeof(pattern);
            rc = prepared_span(p, offset, pattern, take, true);
            if (rc < 0)
                break;
            offset += take;
            n -= take;
        }
        a->hits_quiet = quiet;
        for (uint32_t i = 0, base = 0; a->nwatch && !quiet && i < p->npages; i++) {
            uint32_t lo = start > base ? start : base, end = base + p->page[i].len;
            uint32_t hi = offset < end ? offset : end;
            if (lo < hi)
                (void)vmmu__watch_check(a, p->va + lo, hi - lo, ACC_KIND_WRITE, true);
            base = end;
        }
        return rc < 0 ? rc : 0;
    }
    /* MMIO and device pages see one write per element, as STOS makes. */
    for (; n; n -= elem, offset += elem) {
        rc = prepared_span(p, offset, (uint8_t *)&value, elem, true);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Host segments of a prepared RAM access: [host, host + len) at descriptor offset off. */
static bool overlaps(const struct vmmu_prepared *a, const struct vmmu_prepared *b)
{
    for (unsigned i = 0; i < a->npages; i++)
        for (unsigned j = 0; j < b->npages; j++) {
            const uint8_t *x = a->page[i].host, *y = b->page[j].host;
            if (x < y + b->page[j].len && y < x + a->page[i].len)
                return true;
        }
    return false;
}

/* Where descriptor offset @off of @p lives in the host. */
static uint8_t *host_at(const struct vmmu_prepared *p, uint32_t off)
{
    if (off < p->page[0].len)
        return p->page[0].host + off;
    return p->page[1].host + (off - p->page[0].len);
}

/* The bytes an element-by-element move leaves in @dst when its host
 * ranges overlap @src's, computed from @buf (the source as read before
 * the move), in place: each element takes the source bytes as earlier
 * elements left them, as the in-place copy below does. */
static void move_result(const struct vmmu_prepared *dst, const struct vmmu_prepared *src,
                        uint8_t *buf, unsigned elem, bool backward)
{
    uint32_t len = dst->len, count = len / elem;
    uint8_t in[VMMU_ACCESS_PREPARE_MAX];
    memcpy(in, buf, len);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = backward ? count - 1 - k : k;
        uint8_t tmp[8];
        memcpy(tmp, in + i * elem, elem);
        for (unsigned b = 0; b < elem; b++) {
            uint32_t j = i * elem + b;
            const uint8_t *h = host_at(dst, j);
            buf[j] = tmp[b];
            /* Source bytes at the same host byte now hold it. */
            for (unsigned s = 0, base = 0; s < src->npages; base += src->page[s].len, s++) {
                const uint8_t *x = src->page[s].host;
                if (h >= x && h < x + src->page[s].len)
                    in[base + (uint32_t)(h - x)] = tmp[b];
            }
        }
    }
}

int vmmu_prepared_move(const struct vmmu_prepared *dst, const struct vmmu_prepared *src,
                       unsigned elem, bool backward)
{
    int rc = prepared_check(dst, 0, 0);
    if (!rc)
        rc = prepared_check(src, 0, 0);
    if (rc)
        return rc;
    if (!elem_ok(elem) || dst->len != src->len || dst->len % elem ||
        !(dst->access & VMMU_X86_ACC_WRITE) || dst->vcpu != src->vcpu)
        return VMMU_EINVAL;
    struct vmmu_prepared dtmp, stmp;
    if (!(dst = prepared_now(dst, &dtmp, true, &rc)) ||
        !(src = prepared_now(src, &stmp, false, &rc)))
        return rc;
    uint32_t len = dst->len;
    struct vmmu__access_vcpu *a = dst->vcpu->access;
    /* Host addresses straight from the descriptors only while no wait
     * (above) ended them; else element by element, each looked up again. */
    bool ram = all_ram(dst) && all_ram(src) && dst->host_gen == dst->vcpu->host_gen &&
               src->host_gen == dst->vcpu->host_gen;

    if (ram && latch_on(a)) {
        /* Recording: the source is read through the latch as one event
         * per page piece (a re-execution moves what the first pass read,
         * not bytes the move itself rewrote), then written.  When the
         * pieces are to be read live the latch must hold them all, or
         * nothing is done. */
        if (!vmmu__latch_event_peek(a) && (rc = vmmu__latch_room(a, src->npages, len)) != 0)
            return rc;
        uint8_t buf[VMMU_ACCESS_PREPARE_MAX];
        rc = prepared_span(src, 0, buf, len, false);
        if (rc < 0)
            return rc;
        if (overlaps(dst, src))
            move_result(dst, src, buf, elem, backward);
        return prepared_span(dst, 0, buf, len, true);
    }
    if (ram && overlaps(dst, src)) {
        /* Both in host memory and aliased: element by element in the
         * order the instruction defines, so that dst = src + 1 repeats
         * the first byte, as REP MOVSB does. */
        if (a->nwatch) {
            (void)vmmu__watch_check(a, src->va, len, ACC_KIND_READ, true);
            (void)vmmu__watch_check(a, dst->va, len, ACC_KIND_WRITE, true);
        }
        uint32_t count = len / elem;
        for (uint32_t k = 0; k < count; k++) {
            uint32_t i = backward ? count - 1 - k : k;
            uint8_t tmp[8];
            for (unsigned b = 0; b < elem; b++)
                tmp[b] = __atomic_load_n(host_at(src, i * elem + b), __ATOMIC_RELAXED);
            for (unsigned b = 0; b < elem; b++)
                __atomic_store_n(host_at(dst, i * elem + b), tmp[b], __ATOMIC_RELAXED);
        }
        return 0;
    }
    if (ram && !latch_on(a)) {
        /* Plain memmove, split where either side changes page.  A host
         * thread reading the pages meanwhile (a migration's copier) races
         * it, as a DMA engine would race a CPU's string move; the dirty
         * log sends the page again (tests/guests: the --migrate runs are
         * left out of ThreadSanitizer for that reason). */
        if (a->nwatch) {
            (void)vmmu__watch_check(a, src->va, len, ACC_KIND_READ, true);
            (void)vmmu__watch_check(a, dst->va, len, ACC_KIND_WRITE, true);
        }
        uint32_t off = 0;
        while (off < len) {
            uint32_t s_left = off < src->page[0].len ? src->page[0].len - off : len - off;
            uint32_t d_left = off < dst->page[0].len ? dst->page[0].len - off : len - off;
            uint32_t take = s_left < d_left ? s_left : d_left;
            memmove(host_at(dst, off), host_at(src, off), take);
            off += take;
        }
        return 0;
    }
    /* MMIO or device on either side: one element at a time, each read
     * then written, in the instruction's order. */
    uint32_t count = len / elem;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = backward ? count - 1 - k : k;
        uint8_t tmp[8];
        rc = prepared_span(src, i * elem, tmp, elem, false);
        if (rc < 0)
            return rc;
        rc = prepared_span(dst, i * elem, tmp, elem, true);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- Reads and writes ----------------------------------------------------------- */

int vmmu_access_read(struct vmmu_vcpu *v, uint64_t va, void *buf, uint32_t len, unsigned access,
                     struct vmmu_x86_fault *fault)
{
    if (!buf || !access_ok(access) || (access & VMMU_X86_ACC_WRITE))
        return VMMU_EINVAL;
    struct vmmu_prepared p;
    int rc = access_prepare(v, va, len, access, &p, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    return prepared_span(&p, 0, buf, len, false);
}

int vmmu_access_write(struct vmmu_vcpu *v, uint64_t va, const void *buf, uint32_t len,
                      unsigned access, struct vmmu_x86_fault *fault)
{
    /* Only the attributes of a write: VMMU_ACCESS_READ_WRITE is a
     * preparation's bit, not one of these (a read-modify-write goes
     * through vmmu_access_prepare()). */
    if (!buf || !access_ok(access) || (access & VMMU_X86_ACC_FETCH))
        return VMMU_EINVAL;
    struct vmmu_prepared p;
    int rc = access_prepare(v, va, len, access | VMMU_X86_ACC_WRITE, &p, fault);
    if (rc < 0 || vmmu__fault_raised(fault))
        return rc;
    return prepared_span(&p, 0, (uint8_t *)(uintptr_t)buf, len, true);
}

static bool typed_size(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8 || size == 16;
}

int vmmu_access_load(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                     void *value, struct vmmu_x86_fault *fault)
{
    if (!v || !value || !fault || !typed_size(size) || (access & VMMU_X86_ACC_WRITE) ||
        (access & ~VMMU_X86_ACC_ALL))
        return VMMU_EINVAL;
    /* The hit path: outside the latch, an aligned access to a page whose
     * comparator carries no flag is one compare and a copy. */
    if (!v->latch_walks) {
        enum vmmu_tlb_kind kind = (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH : VMMU_TLB_READ;
        void *host = (access & VMMU_X86_ACC_IMPLICIT) ? vmmu_tlb_lookup_implicit(v, va, size, kind)
                                                      : vmmu_tlb_lookup(v, va, size, kind);
        if (host) {
            vmmu_guest_load(value, host, size);
            vmmu__fault_none(fault);
            return 0;
        }
    }
    if (vmmu__alignment_fault(v, va, size, access, fault))
        return 0;
    return vmmu_access_read(v, va, value, size, access, fault);
}

int vmmu_access_store(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                      const void *value, struct vmmu_x86_fault *fault)
{
    if (!v || !value || !fault || !typed_size(size) || (access & VMMU_X86_ACC_FETCH) ||
        (access & ~VMMU_X86_ACC_ALL))
        return VMMU_EINVAL;
    if (!v->latch_walks) {
        void *host = (access & VMMU_X86_ACC_IMPLICIT)
                         ? vmmu_tlb_lookup_implicit(v, va, size, VMMU_TLB_WRITE)
                         : vmmu_tlb_lookup(v, va, size, VMMU_TLB_WRITE);
        if (host) {
            vmmu_guest_store(host, value, size);
            vmmu__fault_none(fault);
            return 0;
        }
    }
    if (vmmu__alignment_fault(v, va, size, access, fault))
        return 0;
    return vmmu_access_write(v, va, value, size, access, fault);
}
