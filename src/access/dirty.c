/* SPDX-License-Identifier: MIT */
/* Dirty logging and code-page tracking.
 *
 * Both work through the TLB's write comparators.  A write entry is filled
 * fast (no flag) only for a page that is already dirty and not marked as
 * code; otherwise it carries VMMU_TLB_FLAG_NOTDIRTY or _CODE and every
 * write takes the slow path, which sets the dirty bit (the fill) or calls
 * the code handler (access.c).  So whenever a page goes back to "not
 * dirty" or "code", the write entries filled for it before must go: the
 * sync part's synchronous gpa flush (vmmu__sync_flush_gpas) makes every
 * vCPU drop its entries for the pages and returns when each has, at its
 * next safe point or at once if offline.
 *
 * Why get-and-clear loses no write.  Bits are cleared one page at a time
 * with an atomic fetch-and-clear; only then are the vCPUs flushed.  A
 * write through a fast entry between the two reaches a page whose bit was
 * set when it was read here, i.e. a page reported dirty by this call,
 * whose contents the caller copies after the call returns (after the
 * flush, so after the write).  A fill between the two sees the cleared
 * bit and sets it again (next call reports it).  After the flush, every
 * write takes the slow path until it has set the bit again.
 *
 * Out-of-process device models write guest RAM through their own
 * mappings, which vmmu never sees: they set bits in a bitmap shared with
 * the vm (vmmu/dmproto.h, VMMU_DM_HELLO_DIRTY) after their stores, and
 * get-and-clear takes those bits too (an exchange with 0, so a bit set
 * after it waits for the next call, and the stores it stands for were
 * made before it was set). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access/access_internal.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"

#include "vmmu/error.h"

/* Ranges flushed per call of the sync part (adjacent dirty pages merge). */
#define FLUSH_BATCH 32

/* The RAM region @id, with vm->lock held on success (so it stays). */
static int region_lock(struct vmmu_vm *vm, uint32_t id, struct vmmu_region **out)
{
    if (vmmu__vm_refuses_changes(vm))
        return VMMU_EBUSY; /* the lock is the caller's own, or a page-in is under way */
    struct vmmu_region_info info;
    int rc = vmmu_region_info(vm, id, &info);
    if (rc)
        return rc;
    if (info.type != VMMU_MEM_RAM)
        return VMMU_EINVAL;
    vmmu__sync_map_lock(vm);
    struct vmmu_region *r = p2m_resolve(&vm->p2m, info.gpa >> VMMU_PAGE_SHIFT, NULL);
    if (!r || r->id != id) {
        pthread_mutex_unlock(&vm->lock);
        return VMMU_ENOENT; /* removed meanwhile */
    }
    *out = r;
    return 0;
}

/* A scan of a region's page states for dirty bits.  The state array is
 * committed lazily, one host page (4096 guest pages) at a time: a state
 * page never touched holds only zeros, so the scan skips it whole, and in
 * the others only reads a byte whose bit is clear.  A scan that stored to
 * every byte (or, on hosts without a shared zero page, read every byte)
 * would commit all of it: 64 MiB for a 256 GiB region, at every harvest.
 * "Never touched" is what /proc/self/pagemap says of a page that is
 * neither present nor swapped out (mincore() would call a swapped-out
 * page, bits and all, absent); without pagemap every page is read.  A
 * bit set after the look (a page state committed after it) is seen by
 * the next harvest, as one set after the clear would be. */
#define SCAN_VEC 512 /* state pages asked about at once */
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)

struct dirty_scan {
    struct vmmu_region *r;
    int fd;        /* /proc/self/pagemap, or -1: every page may hold bits */
    uint64_t base; /* the first state page of ent */
    uint64_t n;    /* state pages ent holds (0: none yet) */
    uint64_t ent[SCAN_VEC];
};

ssize_t (*vmmu__pagemap_pread)(int fd, void *buf, size_t n, off_t offset) = pread;

static void scan_init(struct dirty_scan *s, struct vmmu_region *r)
{
    s->r = r;
    s->base = s->n = 0;
    s->fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

static void scan_fini(struct dirty_scan *s)
{
    if (s->fd >= 0)
        close(s->fd);
}

/* Whether the state page holding the state of guest page @i (a multiple
 * of VMMU_PAGE_SIZE) may hold a set bit. */
static bool scan_touched(struct dirty_scan *s, uint64_t i)
{
    uint64_t pg = i >> VMMU_PAGE_SHIFT, total = s->r->state_bytes >> VMMU_PAGE_SHIFT;
    if (pg - s->base >= s->n) {
        uint64_t n = total - pg < SCAN_VEC ? total - pg : SCAN_VEC;
        uintptr_t at = (uintptr_t)(s->r->state + (pg << VMMU_PAGE_SHIFT));
        size_t want = n * sizeof(s->ent[0]);
        s->base = pg;
        s->n = n;
        if (s->fd < 0 || vmmu__pagemap_pread(s->fd, s->ent, want,
                                             (off_t)((at >> VMMU_PAGE_SHIFT) * sizeof(s->ent[0]))) !=
                             (ssize_t)want)
            for (uint64_t k = 0; k < n; k++)
                s->ent[k] = PAGEMAP_PRESENT; /* cannot tell: look at every byte */
    }
    return (s->ent[pg - s->base] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) != 0;
}

/* The next page from @i whose dirty bit is set, cleared now; r->npages
 * when there is none. */
static uint64_t scan_take(struct dirty_scan *s, uint64_t i)
{
    struct vmmu_region *r = s->r;
    for (; i < r->npages; i++) {
        if (!(i & (VMMU_PAGE_SIZE - 1)) && !scan_touched(s, i)) {
            i |= VMMU_PAGE_SIZE - 1; /* a state page of zeros */
            continue;
        }
        _Atomic uint8_t *b = &r->state[i];
        if (!(atomic_load_explicit(b, memory_order_relaxed) & VMMU_PAGE_DIRTY))
            continue;
        if (atomic_fetch_and_explicit(b, (uint8_t)~VMMU_PAGE_DIRTY, memory_order_acq_rel) &
            VMMU_PAGE_DIRTY)
            return i;
    }
    return r->npages;
}

int vmmu_dirty_log_enable(struct vmmu_vm *vm, uint32_t region_id, bool on)
{
    if (!vm)
        return VMMU_EINVAL;
    struct vmmu_region *r;
    int rc = region_lock(vm, region_id, &r);
    if (rc)
        return rc;
    {
        if (on) {
            struct dirty_scan scan;
            scan_init(&scan, r);
            for (uint64_t i = 0; (i = scan_take(&scan, i)) < r->npages; i++)
                ;
            scan_fini(&scan);
            (void)vmmu__dev_dirty_take(vm, r, NULL); /* device models' writes too */
            __atomic_fetch_or(&r->flags, VMMU_REGION_LOG_DIRTY, __ATOMIC_ACQ_REL);
            /* A new map generation: the vCPUs' warm misses cached the
             * region as plain RAM under the old one. */
            atomic_fetch_add_explicit(&vm->p2m.generation, 1, memory_order_release);
        } else {
            __atomic_fetch_and(&r->flags, ~(uint32_t)VMMU_REGION_LOG_DIRTY, __ATOMIC_ACQ_REL);
        }
    }
    uint64_t gpa = r->gfn << VMMU_PAGE_SHIFT;
    uint64_t size = r->npages << VMMU_PAGE_SHIFT;
    pthread_mutex_unlock(&vm->lock);
    if (on) {
        /* Write entries filled before this were fast: drop them. */
        struct vmmu_gpa_range range = {gpa, size};
        vmmu__sync_flush_gpas(vm, &range, 1);
    }
    return rc;
}

int vmmu_dirty_log_get_and_clear(struct vmmu_vm *vm, uint32_t region_id, uint64_t *bitmap,
                                 size_t words, uint64_t *ndirty)
{
    if (!vm || !bitmap)
        return VMMU_EINVAL;
    struct vmmu_region *r;
    int rc = region_lock(vm, region_id, &r);
    if (rc)
        return rc;
    if (!(region_flags(r) & VMMU_REGION_LOG_DIRTY) || words < (r->npages + 63) / 64) {
        pthread_mutex_unlock(&vm->lock);
        return VMMU_EINVAL;
    }
    memset(bitmap, 0, words * sizeof(*bitmap));
    uint64_t count = 0;
    struct vmmu_gpa_range batch[FLUSH_BATCH];
    size_t nb = 0;
    uint64_t base = r->gfn << VMMU_PAGE_SHIFT;
    struct dirty_scan scan;
    scan_init(&scan, r);
    for (uint64_t i = 0; (i = scan_take(&scan, i)) < r->npages; i++) {
        bitmap[i / 64] |= 1ull << (i % 64);
        count++;
        uint64_t gpa = base + (i << VMMU_PAGE_SHIFT);
        if (nb && batch[nb - 1].gpa + batch[nb - 1].size == gpa) {
            batch[nb - 1].size += VMMU_PAGE_SIZE;
            continue;
        }
        if (nb == FLUSH_BATCH) {
            /* Out of ranges: widen the last one (flushing more is always
             * correct; the flush itself waits until the lock is dropped). */
            batch[nb - 1].size = gpa + VMMU_PAGE_SIZE - batch[nb - 1].gpa;
            continue;
        }
        batch[nb].gpa = gpa;
        batch[nb].size = VMMU_PAGE_SIZE;
        nb++;
    }
    scan_fini(&scan);
    /* What out-of-process device models wrote through their own mappings
     * (they set these bits after their stores): nothing of theirs to
     * flush.  Under the lock, so the region is still the one named. */
    count += vmmu__dev_dirty_take(vm, r, bitmap);
    pthread_mutex_unlock(&vm->lock);
    if (nb)
        vmmu__sync_flush_gpas(vm, batch, nb);
    if (ndirty)
        *ndirty = count;
    return 0;
}

/* ---- Code pages ------------------------------------------------------------ */

int vmmu_access_set_code_handler(struct vmmu_vcpu *v, vmmu_code_write_fn fn, void *opaque)
{
    if (!v || !v->access)
        return VMMU_EINVAL;
    v->access->code_fn = fn;
    v->access->code_opaque = opaque;
    return 0;
}

void vmmu__code_write(struct vmmu_vcpu *v, uint64_t gpa_page)
{
    struct vmmu_vm *vm = v->vm;
    if (gpa_page >> vm->gpa_bits)
        return;
    uint64_t gfn = gpa_page >> VMMU_PAGE_SHIFT;
    struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
    if (!r || !r->state)
        return;
    uint8_t old = atomic_fetch_and_explicit(&r->state[gfn - r->gfn], (uint8_t)~VMMU_PAGE_CODE,
                                            memory_order_acq_rel);
    /* Exactly one writer clears each mark and reports it. */
    if ((old & VMMU_PAGE_CODE) && v->access->code_fn) {
        /* The write goes on after the handler: it may not destroy @v. */
        struct vmmu__callback cb = {.vm = vm, .vcpu = v};
        vmmu__callback_enter(&cb);
        v->access->code_fn(v->access->code_opaque, v, gpa_page);
        vmmu__callback_leave(&cb);
    }
}

int vmmu_code_mark(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages)
{
    /* Setting VMMU_PAGE_CODE narrows what the pages allow: the update
     * itself makes every vCPU drop its entries of them before it returns
     * (vmmu__sync_flush_gpas() in src/p2m/map.c), so the fast write
     * entries filled before the mark are gone.  (A second flush here cost
     * a second round trip to every vCPU.) */
    return vmmu_page_state_update(vm, gpa, npages, VMMU_PAGE_CODE, 0);
}
