/* SPDX-License-Identifier: MIT */
/*
 * Guest-physical reads and writes of any length.
 *
 * Every access runs in two passes over the same spans (a span is a run of
 * frames with one answer: part of one region, or one hole):
 *   1. check: every span must be accessible (holes only with
 *      VMMU_GPA_UNBACKED_ONES, no device-model ranges, ROM that reports
 *      writes only with VMMU_GPA_ROM_WRITE, paged-out pages brought back by
 *      the pager).  Nothing visible to the guest happens in this pass.
 *   2. perform: copy RAM/ROM with memcpy per span, MMIO through callbacks in
 *      naturally aligned pieces.
 * So a bad byte anywhere fails the access before any MMIO callback runs or
 * any byte is written.
 *
 * A host thread's access (no online reader: not a vCPU's) is a grace-period
 * reader for its duration, so that a page-out or a removal that begins
 * after pass 1 checked a page waits for the copy before it takes the page
 * away.  It goes offline around the callbacks (MMIO, page-in), which may
 * wait for anything, the thread that waits for the grace period included;
 * what it found before a callback it looks up again after.
 */
#include <string.h>

#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/error.h"
#include "vmmu/tlb.h"

enum gpa_dir { GPA_READ, GPA_WRITE };

/* Largest naturally aligned MMIO piece at @offset that fits in @left. */
static unsigned mmio_piece(uint64_t offset, size_t left)
{
    unsigned size = 8;
    while (size > 1 && ((offset & (size - 1)) || size > left))
        size >>= 1;
    return size;
}

/* A thread in a read-side section of its own (a host thread's access or
 * walk) runs callbacks outside it: they may wait. */
static bool callback_begin(void)
{
    return vmmu__read_pause();
}

static void callback_end(bool paused)
{
    vmmu__read_resume(paused);
}

/* Page-in requests for one page before giving up with VMMU_EPAGEDOUT. */
#define P2M_PAGEIN_ROUNDS 16

/* span_resident(): the page-in handler waited offline (a lock of vmmu's,
 * say), so a grace period may have passed: the region the caller found
 * may be gone, and pages it checked may be out again.  Look again from
 * the start, at most P2M_PAGEIN_ROUNDS times. */
#define P2M_LOOK_AGAIN 1

/* Bring back any paged-out page in frames [g, end) of @r.  0, a negative
 * code, or P2M_LOOK_AGAIN (@r not touched after the handler returned).
 * The caller is in a read-side section: the handler's record is taken in
 * it, and the handler runs under a frame naming the record. */
static int span_resident(struct vmmu_vm *vm, struct vmmu_region *r, uint64_t g, uint64_t end,
                         uint64_t *bad_gfn)
{
    for (uint64_t p = g; p < end; p++) {
        if (!(region_page_state(r, p) & VMMU_PAGE_PAGED_OUT))
            continue;
        struct p2m_hook *h = p2m_hook_take(&vm->p2m.pagein);
        int err = VMMU_EPAGEDOUT;
        bool look_again = false;
        *bad_gfn = p;
        /* A page-out may take the page again between the handler's return
         * and the check below (the host pages out concurrently): ask again,
         * a bounded number of times. */
        for (unsigned round = 0; h && round < P2M_PAGEIN_ROUNDS; round++) {
            uint64_t section = vmmu__reader_sections();
            struct vmmu__callback cb = {.hook = h};
            vmmu__callback_enter(&cb);
            bool paused = callback_begin();
            err = h->fn.pagein(h->opaque, vm, p << VMMU_PAGE_SHIFT);
            callback_end(paused);
            vmmu__callback_leave(&cb);
            if (err)
                break;
            /* A grace period may have passed, or (on a thread that stayed
             * online) the region may have been removed or replaced while
             * the handler ran: its page is not this access's any more. */
            if (vmmu__reader_sections() != section ||
                p2m_resolve(&vm->p2m, p, NULL) != r) {
                look_again = true;
                break;
            }
            if (!(region_page_state(r, p) & VMMU_PAGE_PAGED_OUT))
                break;
            err = VMMU_EPAGEDOUT; /* out again (or the handler did not page in) */
        }
        if (h)
            p2m_hook_put(h);
        if (look_again)
            return P2M_LOOK_AGAIN;
        if (err)
            return err < 0 ? err : VMMU_EPAGEDOUT;
    }
    return 0;
}

/* Pass 1 for one span: may the access go ahead? */
static int span_check(struct vmmu_vm *vm, struct vmmu_region *r, uint64_t g, uint64_t end,
                      enum gpa_dir dir, unsigned flags, uint64_t *bad_gfn)
{
    *bad_gfn = g;
    if (!r)
        return (flags & VMMU_GPA_UNBACKED_ONES) ? 0 : VMMU_EHOLE;
    switch (r->type) {
    case VMMU_MEM_DEVICE:
        return VMMU_EDEVICE;
    case VMMU_MEM_ROM:
        if (dir == GPA_WRITE && !(flags & VMMU_GPA_ROM_WRITE)) {
            if (region_flags(r) & VMMU_REGION_ROM_REPORT_WRITES)
                return VMMU_EROM;
            return 0; /* dropped in pass 2: no need to page it in */
        }
        return span_resident(vm, r, g, end, bad_gfn);
    case VMMU_MEM_RAM:
        return span_resident(vm, r, g, end, bad_gfn);
    default:
        return 0;
    }
}

/* The MMIO pieces of [gpa, gpa + len) in region @r; *@done says how many
 * bytes were done.  A callback that waited offline (a vCPU thread calling
 * into vmmu, say) may have let a grace period pass and @r go: the span
 * stops after it, and the caller looks the rest up again. */
static int mmio_span(struct vmmu_region *r, uint64_t gpa, uint8_t *buf, size_t len,
                     enum gpa_dir dir, uint64_t *failed_gpa, size_t *done)
{
    uint64_t offset = gpa - (r->gfn << VMMU_PAGE_SHIFT);
    uint64_t section = vmmu__reader_sections();
    size_t total = len;
    *done = 0;
    while (len) {
        unsigned size = mmio_piece(offset, len);
        uint64_t value = ~0ull;
        int err = 0;
        bool paused = callback_begin();
        if (dir == GPA_READ) {
            if (r->mmio.read)
                err = r->mmio.read(r->opaque, offset, size, &value);
        } else if (r->mmio.write) {
            value = 0;
            memcpy(&value, buf, size);
            err = r->mmio.write(r->opaque, offset, size, value);
        }
        callback_end(paused);
        if (!err && dir == GPA_READ)
            memcpy(buf, &value, size); /* little-endian host: low bytes first */
        if (err) {
            if (failed_gpa)
                *failed_gpa = gpa;
            return VMMU_EMMIO;
        }
        gpa += size;
        offset += size;
        buf += size;
        len -= size;
        *done = total - len;
        if (vmmu__reader_sections() != section)
            break;
    }
    return 0;
}

/* Pass 2 for one span of @len bytes at @gpa; *@done says how many bytes
 * were done (fewer only after an MMIO callback that waited offline). */
static int span_perform(struct vmmu_vm *vm, struct vmmu_region *r, uint64_t gpa, uint8_t *buf,
                        size_t len, enum gpa_dir dir, unsigned flags, uint64_t *failed_gpa,
                        size_t *done)
{
    *done = len;
    if (!r) {
        if (!(flags & VMMU_GPA_UNBACKED_ONES)) {
            if (failed_gpa)
                *failed_gpa = gpa;
            return VMMU_EHOLE; /* the region went away between the passes */
        }
        if (dir == GPA_READ)
            memset(buf, 0xff, len);
        return 0;
    }
    (void)vm;
    uint64_t base = r->gfn << VMMU_PAGE_SHIFT;
    switch (r->type) {
    case VMMU_MEM_RAM:
    case VMMU_MEM_ROM:
        if (dir == GPA_READ) {
            /* Relaxed atomic words: vCPUs may be storing meanwhile (a
             * live migration copies pages while the guest runs). */
            vmmu__guest_copy_in(buf, r->host + (gpa - base), len);
        } else if (r->type == VMMU_MEM_RAM || (flags & VMMU_GPA_ROM_WRITE)) {
            vmmu__guest_copy_out(r->host + (gpa - base), buf, len);
            if (region_flags(r) & VMMU_REGION_LOG_DIRTY) {
                /* After the bytes, with release: a harvester that sees the
                 * bit (an acquire load or RMW) and then copies the page
                 * copies these bytes too; one that misses it sees it in
                 * its next round. */
                uint64_t first = gpa >> VMMU_PAGE_SHIFT, last = (gpa + len - 1) >> VMMU_PAGE_SHIFT;
                for (uint64_t p = first; p <= last; p++)
                    atomic_fetch_or_explicit(&r->state[p - r->gfn], VMMU_PAGE_DIRTY,
                                             memory_order_release);
            }
        } else if (region_flags(r) & VMMU_REGION_ROM_REPORT_WRITES) {
            if (failed_gpa)
                *failed_gpa = gpa;
            return VMMU_EROM;
        }
        return 0;
    case VMMU_MEM_MMIO:
        return mmio_span(r, gpa, buf, len, dir, failed_gpa, done);
    default:
        if (failed_gpa)
            *failed_gpa = gpa;
        return VMMU_EDEVICE;
    }
}

/* Pass 1 over frames [first, last]: may the access go ahead?  It must end
 * with no wait since it began, so that pass 2 finds what it checked: a
 * page-in handler that waited offline makes the pass go on from that
 * page, and then start once more from @first.  (Starting again from
 * @first at each wait would cost a pass per page for a large range that
 * is all out.)  0, or an error for frame *@bad. */
static int pass_check(struct vmmu_vm *vm, uint64_t first, uint64_t last, enum gpa_dir dir,
                      unsigned flags, uint64_t *bad)
{
    for (unsigned passes = 0;; passes++) {
        bool waited = false;
        uint64_t waited_at = ~0ull;
        unsigned same = 0;
        for (uint64_t g = first, end; g <= last; g = end) {
            struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &end);
            if (end > last + 1)
                end = last + 1;
            int err = span_check(vm, r, g, end, dir, flags, bad);
            if (err == P2M_LOOK_AGAIN) {
                /* Look at that page again: it may be in now, or in
                 * another region; the same page waiting every time is
                 * taken away every time. */
                same = *bad == waited_at ? same + 1 : 0;
                waited_at = *bad;
                waited = true;
                if (same + 1 >= P2M_PAGEIN_ROUNDS)
                    return VMMU_EPAGEDOUT;
                end = *bad;
                continue;
            }
            if (err)
                return err;
        }
        if (!waited)
            return 0;
        if (passes + 1 >= P2M_PAGEIN_ROUNDS) {
            *bad = waited_at;
            return VMMU_EPAGEDOUT;
        }
    }
}

static int gpa_access_in(struct vmmu_vm *vm, uint64_t gpa, uint8_t *buf, size_t len,
                         unsigned flags, enum gpa_dir dir, uint64_t *failed_gpa)
{
    uint64_t limit = 1ull << vm->gpa_bits;
    if (gpa >= limit || len > limit - gpa) {
        if (failed_gpa)
            *failed_gpa = gpa >= limit ? gpa : limit;
        return VMMU_ERANGE;
    }
    uint64_t last = (gpa + len - 1) >> VMMU_PAGE_SHIFT;
    size_t done = 0;
    int late_err = 0; /* a page the check after a callback refused: the access ends there */
    if (gpa >> VMMU_PAGE_SHIFT == last) {
        /* One frame of MMIO (an instruction's access to a device
         * register, a string move's element): pass 1 checks nothing
         * there, so the region it and pass 2 would each look up is looked
         * up once and used at once.  What a callback that waited offline
         * leaves undone goes the general way below, checked again. */
        struct vmmu_region *r = p2m_resolve(&vm->p2m, last, NULL);
        if (r && r->type == VMMU_MEM_MMIO) {
            int err = mmio_span(r, gpa, buf, len, dir, failed_gpa, &done);
            if (err)
                return err;
        }
    }
    while (done < len) {
        uint64_t at = gpa + done, first = at >> VMMU_PAGE_SHIFT, bad;
        int err = pass_check(vm, first, last, dir, flags, &bad);
        if (err && done && bad != first) {
            /* Checked again after a callback changed the map: the pages
             * before @bad still pass, so they are done, and the access
             * ends at @bad with the bytes before it done, as when the
             * callback removes the region it is in. */
            late_err = err;
            last = bad - 1;
            len = (size_t)((bad << VMMU_PAGE_SHIFT) - gpa);
            err = pass_check(vm, first, last, dir, flags, &bad);
        }
        if (err) {
            if (failed_gpa)
                *failed_gpa = bad == first ? at : bad << VMMU_PAGE_SHIFT;
            return err;
        }

        /* Pass 2, while nothing waited: an MMIO callback that waited
         * offline ends it, and what is left goes through pass 1 again
         * (pages it checked may have left meanwhile). */
        uint64_t section = vmmu__reader_sections();
        for (uint64_t g = first, end; g <= last && vmmu__reader_sections() == section; g = end) {
            struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &end);
            uint64_t span_end = end << VMMU_PAGE_SHIFT; /* may be 0 if it wrapped: clamp below */
            size_t n = (end > last) ? len - done : (size_t)(span_end - at);
            size_t span_done;
            err = span_perform(vm, r, at, buf + done, n, dir, flags, failed_gpa, &span_done);
            if (err)
                return err;
            at += span_done;
            done += span_done;
            if (span_done < n)
                break;
        }
    }
    if (late_err && failed_gpa)
        *failed_gpa = gpa + len;
    return late_err;
}

/* The MMIO callbacks and the page-in handler an access runs may not
 * destroy the vm, nor the vCPU making it (struct vmmu__callback). */
static int gpa_access(struct vmmu_vm *vm, uint64_t gpa, uint8_t *buf, size_t len,
                      unsigned flags, enum gpa_dir dir, uint64_t *failed_gpa)
{
    if (!vm || (!buf && len) || (flags & ~VMMU_GPA_FLAGS_ALL))
        return VMMU_EINVAL;
    if (!len)
        return 0;
    struct vmmu__callback cb = {.vm = vm, .vcpu = vmmu__sync_current_vcpu()};
    vmmu__callback_enter(&cb);
    unsigned section = vmmu__read_begin();
    int err = gpa_access_in(vm, gpa, buf, len, flags, dir, failed_gpa);
    vmmu__read_end(section);
    vmmu__callback_leave(&cb);
    return err;
}

int vmmu__gpa_make_resident(struct vmmu_vm *vm, uint64_t gpa)
{
    if (!vm || gpa >= 1ull << vm->gpa_bits)
        return VMMU_ERANGE;
    struct vmmu__callback cb = {.vm = vm, .vcpu = vmmu__sync_current_vcpu()};
    vmmu__callback_enter(&cb);
    /* Callers are readers already (a vCPU's fill or walk, a device
     * model's service thread): then this is a test. */
    unsigned section = vmmu__read_begin();
    uint64_t g = gpa >> VMMU_PAGE_SHIFT, bad;
    int err = VMMU_EPAGEDOUT;
    for (unsigned again = 0; again < P2M_PAGEIN_ROUNDS; again++) {
        err = span_check(vm, p2m_resolve(&vm->p2m, g, NULL), g, g + 1, GPA_READ, 0, &bad);
        if (err != P2M_LOOK_AGAIN)
            break;
        err = VMMU_EPAGEDOUT;
    }
    vmmu__read_end(section);
    vmmu__callback_leave(&cb);
    return err;
}

int vmmu_gpa_read(struct vmmu_vm *vm, uint64_t gpa, void *buf, size_t len, unsigned flags,
                  uint64_t *failed_gpa)
{
    return gpa_access(vm, gpa, buf, len, flags, GPA_READ, failed_gpa);
}

int vmmu_gpa_write(struct vmmu_vm *vm, uint64_t gpa, const void *buf, size_t len,
                   unsigned flags, uint64_t *failed_gpa)
{
    /* The write path only reads @buf; the cast lets both directions share
     * one splitter. */
    return gpa_access(vm, gpa, (uint8_t *)(uintptr_t)buf, len, flags, GPA_WRITE, failed_gpa);
}
