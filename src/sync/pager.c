/* SPDX-License-Identifier: MIT */
/*
 * The pager: guest RAM pages out to a backing file and back, ballooning,
 * and the resident-set policy.
 *
 * Each page the pager is dealing with has a record (a hash table keyed by
 * guest frame), in one of these states:
 *
 *   YOUNG     resident, paged in since the clock hand last passed
 *   EVICTING  page-out phase 1: marked paged out in the P2M, its TLB
 *             entries being flushed; the contents are still in place
 *   WRITING   page-out phase 2: being written and released
 *   OUT       in the backing file (slot)
 *   ZERO      dropped: it was all zeros
 *   BALLOON   given back by the guest; contents discarded
 *   LOADING   being read back
 *
 * The one rule that avoids deadlock: a page-out in phase 1 waits for every
 * vCPU to reach a safe point, and a vCPU may be inside its fill, touching
 * a page of that very batch, before it gets there.  So the page-in handler
 * never waits for an EVICTING page: it cancels its page-out (the contents
 * never moved) and returns at once.  It waits only for WRITING and LOADING
 * pages, whose owners wait for nobody.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/error.h"
#include "vmmu/pager.h"

enum rec_state { REC_YOUNG = 1, REC_EVICTING, REC_WRITING, REC_OUT, REC_ZERO, REC_BALLOON,
                 REC_LOADING };

#define KEY_EMPTY 0ull
#define KEY_TOMB (~0ull)

struct rec {
    uint64_t key; /* gfn + 1 */
    uint64_t slot; /* REC_OUT: page index in the backing file */
    uint32_t region_id;
    uint8_t state;
};

struct vmmu_pager {
    struct vmmu_vm *vm;
    int fd;
    unsigned flags;
    uint64_t limit;
    pthread_mutex_t lock; /* records, slots, statistics */
    pthread_cond_t cond;  /* a WRITING or LOADING record changed */
    struct rec *tab;
    size_t cap, used, live; /* used counts tombstones too */
    uint64_t *free_slots;
    size_t nfree, free_cap;
    uint64_t next_slot;
    uint64_t hand; /* clock hand: next gfn the policy looks at */
    struct vmmu_pager_stats st;
};

/* ---- records ------------------------------------------------------------------ */

static size_t rec_hash(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static struct rec *rec_find(struct vmmu_pager *pg, uint64_t gfn)
{
    if (!pg->cap)
        return NULL;
    uint64_t key = gfn + 1;
    for (size_t i = rec_hash(key, pg->cap);; i = (i + 1) & (pg->cap - 1)) {
        if (pg->tab[i].key == key)
            return &pg->tab[i];
        if (pg->tab[i].key == KEY_EMPTY)
            return NULL;
    }
}

/* Rehash into a table with room for @extra more records. */
static int rec_grow(struct vmmu_pager *pg, size_t extra)
{
    size_t cap = pg->cap ? pg->cap : 64;
    while ((pg->live + extra) * 2 + 2 > cap)
        cap *= 2;
    struct rec *tab = vmmu__calloc(cap, sizeof(*tab));
    if (!tab)
        return VMMU_ENOMEM;
    for (size_t i = 0; i < pg->cap; i++) {
        struct rec *r = &pg->tab[i];
        if (r->key == KEY_EMPTY || r->key == KEY_TOMB)
            continue;
        size_t j = rec_hash(r->key, cap);
        while (tab[j].key != KEY_EMPTY)
            j = (j + 1) & (cap - 1);
        tab[j] = *r;
    }
    free(pg->tab);
    pg->tab = tab;
    pg->cap = cap;
    pg->used = pg->live;
    return 0;
}

static struct rec *rec_insert(struct vmmu_pager *pg, uint64_t gfn)
{
    struct rec *r = rec_find(pg, gfn);
    if (r)
        return r;
    if ((pg->used + 1) * 2 > pg->cap && rec_grow(pg, 0))
        return NULL;
    uint64_t key = gfn + 1;
    size_t i = rec_hash(key, pg->cap);
    while (pg->tab[i].key != KEY_EMPTY && pg->tab[i].key != KEY_TOMB)
        i = (i + 1) & (pg->cap - 1);
    if (pg->tab[i].key == KEY_EMPTY)
        pg->used++;
    pg->live++;
    pg->tab[i] = (struct rec){.key = key};
    return &pg->tab[i];
}

static void rec_remove(struct vmmu_pager *pg, struct rec *r)
{
    r->key = KEY_TOMB;
    r->state = 0;
    pg->live--;
}

static void slot_free(struct vmmu_pager *pg, uint64_t slot);

/* Drop a record whose region went away (replaced or removed): its page is
 * gone with the region, and so is any copy in the file. */
static void rec_forget(struct vmmu_pager *pg, struct rec *rec)
{
    if (rec->state == REC_OUT)
        slot_free(pg, rec->slot);
    if (rec->state == REC_OUT || rec->state == REC_ZERO)
        pg->st.out--;
    if (rec->state == REC_BALLOON)
        pg->st.ballooned--;
    rec_remove(pg, rec);
}

static int slot_alloc(struct vmmu_pager *pg, uint64_t *slot)
{
    if (pg->nfree) {
        *slot = pg->free_slots[--pg->nfree];
        return 0;
    }
    *slot = pg->next_slot++;
    pg->st.file_slots = pg->next_slot;
    return 0;
}

static void slot_free(struct vmmu_pager *pg, uint64_t slot)
{
    if (pg->nfree == pg->free_cap) {
        size_t cap = pg->free_cap ? pg->free_cap * 2 : 64;
        uint64_t *grown = vmmu__realloc(pg->free_slots, cap * sizeof(*grown));
        if (!grown)
            return; /* the slot is leaked: the file keeps a dead page */
        pg->free_slots = grown;
        pg->free_cap = cap;
    }
    pg->free_slots[pg->nfree++] = slot;
}

/* ---- pages --------------------------------------------------------------------- */

static bool managed(const struct vmmu_region *r)
{
    return r && r->type == VMMU_MEM_RAM && r->host_owned;
}

static uint8_t *page_host(const struct vmmu_region *r, uint64_t gfn)
{
    return r->host + ((gfn - r->gfn) << VMMU_PAGE_SHIFT);
}

static off_t page_memfd_offset(const struct vmmu_region *r, uint64_t gfn)
{
    return (off_t)(r->memfd_offset + ((gfn - r->gfn) << VMMU_PAGE_SHIFT));
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (size_t i = 0; i < VMMU_PAGE_SIZE / 8; i++)
        if (w[i])
            return false;
    return true;
}

/* Mark @gfn paged out (ballooned too with @balloon), or resident. */
static void set_paged_out(struct vmmu_vm *vm, uint64_t gfn, bool out, bool balloon)
{
    const uint32_t both = VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED;
    uint32_t set = out ? VMMU_PAGE_PAGED_OUT | (balloon ? VMMU_PAGE_BALLOONED : 0) : 0;
    vmmu__page_state_update(vm, gfn << VMMU_PAGE_SHIFT, 1, set, both & ~set, both);
}

static int check_ranges_in(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n);

/* Every page of @ranges must be RAM the pager can manage.  (Looked up in a
 * read-side section: the caller may be a host thread.) */
static int check_ranges(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    int rc = vmmu__gpa_ranges_check(pg->vm, ranges, n);
    if (rc)
        return rc;
    unsigned section = vmmu__read_begin();
    rc = check_ranges_in(pg, ranges, n);
    vmmu__read_end(section);
    return rc;
}

static int check_ranges_in(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    struct vmmu_vm *vm = pg->vm;
    for (size_t i = 0; i < n; i++) {
        uint64_t gfn = ranges[i].gpa >> VMMU_PAGE_SHIFT;
        uint64_t end = gfn + (ranges[i].size >> VMMU_PAGE_SHIFT);
        for (uint64_t g = gfn, next; g < end; g = next) {
            const struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &next);
            if (!r)
                return VMMU_EHOLE;
            if (!managed(r))
                return VMMU_EINVAL;
        }
    }
    return 0;
}

/* Give @gfn's host page back to the host: punch it out of the memfd (it
 * reads as zeros afterwards; if the punch fails it is zeroed instead) and,
 * in paranoid mode, make it inaccessible. */
static void release_host(struct vmmu_pager *pg, const struct vmmu_region *r, uint64_t gfn)
{
    uint8_t *host = page_host(r, gfn);
    if (fallocate(pg->vm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  page_memfd_offset(r, gfn), VMMU_PAGE_SIZE) != 0)
        memset(host, 0, VMMU_PAGE_SIZE); /* keep "released pages read as zero" */
    if (pg->flags & VMMU_PAGER_PARANOID)
        mprotect(host, VMMU_PAGE_SIZE, PROT_NONE);
}

ssize_t (*vmmu__pager_pread)(int fd, void *buf, size_t n, off_t offset) = pread;

/* Write one page to slot @slot of the backing file.  A write past
 * RLIMIT_FSIZE fails with EFBIG and raises SIGXFSZ at the thread, whose
 * default action ends the process: the signal is held back meanwhile and
 * the one the write raised is taken, so that the caller sees the error
 * (and the page stays) whatever the process does with SIGXFSZ. */
static ssize_t write_page(int fd, const void *page, uint64_t slot)
{
    sigset_t xfsz, old;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &old);
    ssize_t put = pwrite(fd, page, VMMU_PAGE_SIZE, (off_t)(slot << VMMU_PAGE_SHIFT));
    int err = errno;
    if (put < 0 && err == EFBIG && !sigismember(&old, SIGXFSZ)) {
        /* Ours is pending on this thread: take it before unblocking. */
        static const struct timespec now = {0, 0};
        while (sigtimedwait(&xfsz, NULL, &now) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return put;
}
void (*vmmu__pager_evict_hook)(struct vmmu_vm *vm, uint64_t gfn);

/* ---- page-in ------------------------------------------------------------------- */

static int page_in_section(struct vmmu_pager *pg, uint64_t gfn);

/* Bring @gfn back if the pager holds it.  Any thread; see the file comment
 * for why an EVICTING page is taken back instead of waited for.
 *
 * A read-side section throughout: the handler runs offline on a thread
 * that is no online reader (a host thread's access, a device model's
 * page-in service), and a removal of the page's region on another thread
 * would free the region, its host memory and its place in the memfd under
 * the copy.  Online, the removal's grace period waits for the copy; its
 * waits here (pg->cond) are for page-ins and page-outs, which wait for no
 * grace period. */
static int page_in_one(struct vmmu_pager *pg, uint64_t gfn)
{
    unsigned section = vmmu__read_begin();
    int rc = page_in_section(pg, gfn);
    vmmu__read_end(section);
    return rc;
}

static int page_in_section(struct vmmu_pager *pg, uint64_t gfn)
{
    struct vmmu_vm *vm = pg->vm;
    struct vmmu_region *r;
    pthread_mutex_lock(&pg->lock);
    struct rec *rec;
    for (;;) {
        /* Looked up under the lock, and again after every wait: the region
         * may have been replaced meanwhile, and a record of the new one
         * (a page-out in flight) must not be taken for a stale one. */
        r = p2m_resolve(&vm->p2m, gfn, NULL);
        rec = rec_find(pg, gfn);
        if (rec && (!managed(r) || r->id != rec->region_id)) {
            /* A record of a region that went away (replaced or removed). */
            if (rec->state == REC_WRITING || rec->state == REC_LOADING) {
                /* In flight: its page-out or page-in notices the change. */
                pthread_cond_wait(&pg->cond, &pg->lock);
                continue;
            }
            if (rec->state != REC_EVICTING) {
                rec_forget(pg, rec);
                continue;
            }
            rec = NULL; /* an old page-out's first phase: not this page's */
        }
        if (!rec || rec->state == REC_YOUNG) {
            bool out = r && r->state && (region_page_state(r, gfn) & VMMU_PAGE_PAGED_OUT);
            pthread_mutex_unlock(&pg->lock);
            return out ? VMMU_EPAGEDOUT : 0;
        }
        if (rec->state == REC_EVICTING) {
            set_paged_out(vm, gfn, false, false);
            rec->state = REC_YOUNG;
            pg->st.cancelled++;
            pthread_mutex_unlock(&pg->lock);
            return 0;
        }
        if (rec->state == REC_WRITING || rec->state == REC_LOADING) {
            pthread_cond_wait(&pg->cond, &pg->lock);
            continue;
        }
        break;
    }
    enum rec_state was = (enum rec_state)rec->state;
    uint64_t slot = rec->slot;
    rec->state = REC_LOADING;
    pthread_mutex_unlock(&pg->lock);

    uint8_t *host = page_host(r, gfn);
    int rc = 0, err = 0;
    if ((pg->flags & VMMU_PAGER_PARANOID) &&
        mprotect(host, VMMU_PAGE_SIZE, PROT_READ | PROT_WRITE) != 0) {
        err = errno;
        rc = VMMU_ESYS;
    }
    if (!rc && was == REC_OUT) {
        ssize_t got = vmmu__pager_pread(pg->fd, host, VMMU_PAGE_SIZE,
                                        (off_t)(slot << VMMU_PAGE_SHIFT));
        if (got != VMMU_PAGE_SIZE) {
            /* The page stays out, its contents in the file.  What the read
             * left in the host page goes (it would hold host memory and,
             * in paranoid mode, stay accessible). */
            err = got < 0 ? errno : EIO; /* a short read: the file ends early */
            release_host(pg, r, gfn);
            rc = VMMU_ESYS;
        }
    }
    /* ZERO and BALLOON pages were punched out of the memfd: they read as
     * zeros already. */

    pthread_mutex_lock(&pg->lock);
    rec = rec_find(pg, gfn);
    const struct vmmu_region *now = p2m_resolve(&vm->p2m, gfn, NULL);
    if (now != r || r->id != rec->region_id) {
        /* The region went away meanwhile (removed or replaced: its hook
         * left this record to us, in flight).  Its page and any copy in
         * the file went with it: nothing to bring back, nothing counted. */
        rec->state = (uint8_t)was;
        rec_forget(pg, rec);
        rc = 0;
    } else if (rc) {
        rec->state = (uint8_t)was;
    } else {
        if (was == REC_OUT)
            slot_free(pg, slot);
        if (was == REC_BALLOON)
            pg->st.ballooned--;
        else
            pg->st.out--;
        pg->st.paged_in++;
        set_paged_out(vm, gfn, false, false);
        rec->state = REC_YOUNG;
    }
    pthread_cond_broadcast(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
    if (rc)
        errno = err;
    return rc;
}

/* The pager's page-in handler.  vmmu_pager_destroy() uninstalls it before
 * it frees the pager, and the P2M returns from that only once no call of
 * it is under way or can begin (struct p2m_hook), on any thread. */
static int pagein_handler(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    return page_in_one(opaque, gpa >> VMMU_PAGE_SHIFT);
}

/* ---- page-out and balloon ---------------------------------------------------------- */

struct gfn_list {
    uint64_t *g;
    size_t n, cap;
};

static int gfn_push(struct gfn_list *l, uint64_t gfn)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint64_t *grown = vmmu__realloc(l->g, cap * sizeof(*grown));
        if (!grown)
            return VMMU_ENOMEM;
        l->g = grown;
        l->cap = cap;
    }
    l->g[l->n++] = gfn;
    return 0;
}

/* Room for @n frames in @l, so that pushing them cannot fail. */
static int gfn_reserve(struct gfn_list *l, size_t n)
{
    if (n <= l->cap)
        return 0;
    uint64_t *grown = vmmu__realloc(l->g, n * sizeof(*grown));
    if (!grown)
        return VMMU_ENOMEM;
    l->g = grown;
    l->cap = n;
    return 0;
}

static int gfn_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Ranges of consecutive frames in @l (which is sorted). */
static struct vmmu_gpa_range *gfn_ranges(const struct gfn_list *l, size_t *n)
{
    struct vmmu_gpa_range *r = vmmu__malloc((l->n ? l->n : 1) * sizeof(*r));
    size_t k = 0;
    if (!r)
        return NULL;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t gpa = l->g[i] << VMMU_PAGE_SHIFT;
        if (k && r[k - 1].gpa + r[k - 1].size == gpa)
            r[k - 1].size += VMMU_PAGE_SIZE;
        else
            r[k++] = (struct vmmu_gpa_range){gpa, VMMU_PAGE_SIZE};
    }
    *n = k;
    return r;
}

/* Phase 2 for one page: write (or drop) and release; *@released tells
 * whether it went.  Under vm->lock, so the region cannot be removed
 * meanwhile. */
static int release_page(struct vmmu_pager *pg, uint64_t gfn, bool balloon, bool *released)
{
    struct vmmu_vm *vm = pg->vm;
    *released = false;
    pthread_mutex_lock(&pg->lock);
    struct rec *rec = rec_find(pg, gfn);
    if (!rec || rec->state != REC_EVICTING) {
        pthread_mutex_unlock(&pg->lock); /* touched meanwhile: it stays */
        return 0;
    }
    struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
    if (!managed(r) || r->id != rec->region_id) {
        rec_remove(pg, rec);
        pthread_mutex_unlock(&pg->lock);
        return 0;
    }
    rec->state = REC_WRITING;
    pthread_mutex_unlock(&pg->lock);

    uint8_t *host = page_host(r, gfn);
    enum rec_state next = REC_BALLOON;
    uint64_t slot = 0;
    int rc = 0, err = 0;
    if (!balloon) {
        if (page_is_zero(host)) {
            next = REC_ZERO;
        } else {
            pthread_mutex_lock(&pg->lock);
            slot_alloc(pg, &slot);
            pthread_mutex_unlock(&pg->lock);
            next = REC_OUT;
            ssize_t put = write_page(pg->fd, host, slot);
            if (put != VMMU_PAGE_SIZE) {
                err = put < 0 ? errno : EIO; /* a short write: no room left */
                rc = VMMU_ESYS;
            }
        }
    }
    if (!rc)
        release_host(pg, r, gfn);

    pthread_mutex_lock(&pg->lock);
    if (rc) {
        /* Could not write it: the page stays, nothing was lost.  A slot
         * past the end of what the file held is not room the file has
         * (file_slots counts only that). */
        if (slot + 1 == pg->next_slot) {
            pg->next_slot--;
            pg->st.file_slots = pg->next_slot;
        } else {
            slot_free(pg, slot);
        }
        set_paged_out(vm, gfn, false, false);
        rec->state = REC_YOUNG;
    } else {
        *released = true;
        rec->state = (uint8_t)next;
        rec->slot = slot;
        if (next == REC_BALLOON) {
            pg->st.ballooned++;
        } else {
            pg->st.out++;
            if (next == REC_ZERO)
                pg->st.zero_dropped++;
            else
                pg->st.written++;
        }
    }
    pthread_cond_broadcast(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
    if (rc)
        errno = err;
    return rc;
}

/* The pages of @ranges that evict() would unpublish: managed, resident
 * and not held by the pager in another state.  Under pg->lock. */
static size_t evict_count(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    struct vmmu_vm *vm = pg->vm;
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t gfn = ranges[i].gpa >> VMMU_PAGE_SHIFT;
        uint64_t end = gfn + (ranges[i].size >> VMMU_PAGE_SHIFT);
        for (uint64_t g = gfn; g < end; g++) {
            const struct vmmu_region *r = p2m_resolve(&vm->p2m, g, NULL);
            if (!managed(r))
                continue;
            const struct rec *rec = rec_find(pg, g);
            bool stale = rec && rec->region_id != r->id && rec->state != REC_EVICTING &&
                         rec->state != REC_WRITING && rec->state != REC_LOADING;
            if (rec && !stale && rec->state != REC_YOUNG)
                continue;
            if (region_page_state(r, g) & VMMU_PAGE_PAGED_OUT)
                continue;
            want++;
        }
    }
    return want;
}

/* Page out (or balloon) @ranges; *@went receives the number of pages that
 * went out (paged out or ballooned by this call). */
static int evict(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n,
                 bool balloon, uint64_t *went)
{
    *went = 0;
    if (!pg)
        return VMMU_EINVAL;
    struct vmmu_vm *vm = pg->vm;
    if (vmmu__vm_refuses_changes(vm))
        return VMMU_EBUSY;
    int rc = check_ranges(pg, ranges, n);
    if (rc)
        return rc;
    struct gfn_list victims = {0};
    vmmu__sync_change_lock(vm);

    /* Phase 1: unpublish.  The memory it needs (a record and a list entry
     * per victim) is taken first, so that running out of it changes
     * nothing: a batch goes as a whole or not at all.  Under vm->lock, like
     * phase 2, so that no region is replaced or removed between the lookup
     * of a page and its marking: the mark would land on the new region's
     * page (or a hole), with no record of it, and every access to that
     * page would fail with VMMU_EPAGEDOUT for good.  Nothing here waits
     * for a vCPU. */
    vmmu__sync_map_lock(vm);
    pthread_mutex_lock(&pg->lock);
    size_t want = evict_count(pg, ranges, n);
    if (want && (gfn_reserve(&victims, want) ||
                 ((pg->used + want) * 2 > pg->cap && rec_grow(pg, want))))
        rc = VMMU_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t gfn = ranges[i].gpa >> VMMU_PAGE_SHIFT;
        uint64_t end = gfn + (ranges[i].size >> VMMU_PAGE_SHIFT);
        for (uint64_t g = gfn; g < end && !rc; g++) {
            struct vmmu_region *r = p2m_resolve(&vm->p2m, g, NULL);
            if (!managed(r))
                continue;
            struct rec *rec = rec_find(pg, g);
            if (rec && rec->region_id != r->id && rec->state != REC_EVICTING &&
                rec->state != REC_WRITING && rec->state != REC_LOADING) {
                rec_forget(pg, rec);
                rec = NULL;
            }
            if (rec && rec->state != REC_YOUNG) {
                /* Already out: ballooning discards what the file holds. */
                if (balloon && (rec->state == REC_OUT || rec->state == REC_ZERO) &&
                    rec->region_id == r->id) {
                    if (rec->state == REC_OUT)
                        slot_free(pg, rec->slot);
                    set_paged_out(vm, g, true, true);
                    rec->state = REC_BALLOON;
                    pg->st.out--;
                    pg->st.ballooned++;
                }
                continue;
            }
            if (region_page_state(r, g) & VMMU_PAGE_PAGED_OUT)
                continue; /* out, but not by this pager */
            if (vmmu__pager_evict_hook)
                vmmu__pager_evict_hook(vm, g);
            rec = rec_insert(pg, g);
            if (!rec || gfn_push(&victims, g)) {
                if (rec && rec->state != REC_YOUNG)
                    rec_remove(pg, rec);
                rc = VMMU_ENOMEM;
                break;
            }
            rec->state = REC_EVICTING;
            rec->region_id = r->id;
            set_paged_out(vm, g, true, balloon);
        }
    }
    pthread_mutex_unlock(&pg->lock);
    pthread_mutex_unlock(&vm->lock);

    /* One flush of every vCPU, the hooks and one grace period for all.
     * Hooks are promised the ranges in gpa order (sync_internal.h),
     * whatever order the caller named the pages in. */
    if (victims.n > 1)
        qsort(victims.g, victims.n, sizeof(*victims.g), gfn_cmp);
    size_t nr = 0;
    struct vmmu_gpa_range *vr = victims.n ? gfn_ranges(&victims, &nr) : NULL;
    if (victims.n && !vr) {
        struct vmmu_gpa_range all = {0, 1ull << vm->gpa_bits};
        vmmu__sync_reclaim(vm, &all, 1, balloon ? VMMU_RECLAIM_BALLOON : VMMU_RECLAIM_PAGEOUT);
    } else if (nr) {
        vmmu__sync_reclaim(vm, vr, nr, balloon ? VMMU_RECLAIM_BALLOON : VMMU_RECLAIM_PAGEOUT);
    }
    free(vr);

    /* Phase 2: nobody can reach these pages now; write and release.  A
     * page that cannot be written stays; the others still go. */
    int err = 0;
    if (victims.n) {
        vmmu__sync_map_lock(vm);
        for (size_t i = 0; i < victims.n; i++) {
            bool released;
            int e = release_page(pg, victims.g[i], balloon, &released);
            *went += released;
            if (e && !rc) {
                rc = e;
                err = errno;
            }
        }
        pthread_mutex_unlock(&vm->lock);
    }
    vmmu__sync_change_unlock(vm);
    free(victims.g);
    if (rc == VMMU_ESYS)
        errno = err; /* the first failure's */
    return rc;
}

int vmmu_pager_page_out(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    uint64_t went;
    return evict(pg, ranges, n, false, &went);
}

int vmmu_pager_balloon_out(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    uint64_t went;
    return evict(pg, ranges, n, true, &went);
}

static int bring_back(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    if (!pg)
        return VMMU_EINVAL;
    if (vmmu__vm_in_foreach(pg->vm))
        return VMMU_EBUSY;
    int rc = check_ranges(pg, ranges, n);
    if (rc)
        return rc;
    /* vm->lock keeps the regions in place for a caller that is not a
     * grace-period reader. */
    int err = 0;
    vmmu__sync_map_lock(pg->vm);
    for (size_t i = 0; i < n; i++) {
        uint64_t gfn = ranges[i].gpa >> VMMU_PAGE_SHIFT;
        uint64_t end = gfn + (ranges[i].size >> VMMU_PAGE_SHIFT);
        for (uint64_t g = gfn; g < end; g++) {
            int e = page_in_one(pg, g);
            if (e && !rc) {
                rc = e;
                err = errno;
            }
        }
    }
    pthread_mutex_unlock(&pg->vm->lock);
    if (rc == VMMU_ESYS)
        errno = err; /* the first failure's */
    return rc;
}

int vmmu_pager_page_in(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    return bring_back(pg, ranges, n);
}

int vmmu_pager_balloon_in(struct vmmu_pager *pg, const struct vmmu_gpa_range *ranges, size_t n)
{
    return bring_back(pg, ranges, n);
}

/* ---- policy --------------------------------------------------------------------- */

struct managed_region {
    uint64_t gfn, npages;
    uint8_t *host;
    uint32_t id;
};

static int managed_regions(struct vmmu_vm *vm, struct managed_region **out, size_t *n)
{
    /* From inside vmmu_region_foreach() the caller already holds the lock. */
    bool nested = vmmu__vm_in_foreach(vm);
    if (!nested)
        vmmu__sync_map_lock(vm);
    struct managed_region *m = vmmu__malloc((vm->p2m.nregions + 1) * sizeof(*m));
    size_t k = 0;
    for (unsigned i = 0; m && i < vm->p2m.nregions; i++) {
        const struct vmmu_region *r = vm->p2m.regions[i];
        if (managed(r))
            m[k++] = (struct managed_region){r->gfn, r->npages, r->host, r->id};
    }
    if (!nested)
        pthread_mutex_unlock(&vm->lock);
    *out = m;
    *n = k;
    return m ? 0 : VMMU_ENOMEM;
}

/* Resident managed pages, and mincore vectors for each region. */
static uint64_t count_resident(const struct managed_region *m, size_t n, unsigned char **vec)
{
    uint64_t resident = 0;
    for (size_t i = 0; i < n; i++) {
        vec[i] = vmmu__malloc(m[i].npages);
        if (!vec[i])
            continue;
        if (mincore(m[i].host, m[i].npages << VMMU_PAGE_SHIFT, vec[i]) != 0) {
            free(vec[i]);
            vec[i] = NULL;
            continue;
        }
        for (uint64_t p = 0; p < m[i].npages; p++) {
            vec[i][p] &= 1; /* mincore defines only bit 0 */
            resident += vec[i][p];
        }
    }
    return resident;
}

int vmmu_pager_balance(struct vmmu_pager *pg, uint64_t *paged_out)
{
    if (!pg)
        return VMMU_EINVAL;
    if (paged_out)
        *paged_out = 0;
    if (vmmu__vm_refuses_changes(pg->vm))
        return VMMU_EBUSY;
    if (!pg->limit)
        return 0;
    struct managed_region *m;
    size_t n;
    if (managed_regions(pg->vm, &m, &n))
        return VMMU_ENOMEM;
    unsigned char **vec = vmmu__calloc(n + 1, sizeof(*vec));
    if (!vec) {
        free(m);
        return VMMU_ENOMEM;
    }
    uint64_t resident = count_resident(m, n, vec);
    struct gfn_list victims = {0};
    int rc = 0;
    if (resident > pg->limit) {
        uint64_t need = resident - pg->limit;
        /* Two turns of the clock, each a whole circle that starts where
         * the hand stopped (the pages from there to the end, then those
         * below it): the first turn uses up second chances, the second
         * takes what it still needs from every page.  (A read-side
         * section: the caller may be a host thread, and the pages'
         * regions are looked up.) */
        unsigned section = vmmu__read_begin();
        pthread_mutex_lock(&pg->lock);
        const uint64_t start = pg->hand;
        for (int step = 0; step < 4 && victims.n < need && !rc; step++) {
            const int turn = step / 2, upper = !(step & 1);
            for (size_t i = 0; i < n && victims.n < need && !rc; i++) {
                if (!vec[i])
                    continue;
                for (uint64_t p = 0; p < m[i].npages && victims.n < need; p++) {
                    uint64_t gfn = m[i].gfn + p;
                    if ((gfn >= start) != upper)
                        continue; /* the other half of the circle */
                    /* Bit 0: resident (mincore); bit 1: chosen in the
                     * first turn. */
                    if ((vec[i][p] & 3) != 1)
                        continue;
                    struct rec *rec = rec_find(pg, gfn);
                    if (rec && rec->state == REC_YOUNG) {
                        rec_remove(pg, rec); /* second chance used */
                        continue;
                    }
                    if (rec)
                        continue;
                    const struct vmmu_region *r = p2m_resolve(&pg->vm->p2m, gfn, NULL);
                    if (!managed(r) || r->id != m[i].id)
                        continue;
                    uint8_t st = region_page_state(r, gfn);
                    if (st & VMMU_PAGE_PAGED_OUT)
                        continue;
                    if (turn == 0 && (st & VMMU_PAGE_DIRTY))
                        continue; /* recently written under dirty logging */
                    if (gfn_push(&victims, gfn)) {
                        rc = VMMU_ENOMEM;
                        break;
                    }
                    vec[i][p] |= 2;
                    pg->hand = gfn + 1;
                }
            }
        }
        pthread_mutex_unlock(&pg->lock);
        vmmu__read_end(section);
    }
    for (size_t i = 0; i < n; i++)
        free(vec[i]);
    free(vec);
    free(m);
    if (!rc && victims.n) {
        size_t nr;
        uint64_t went = 0;
        struct vmmu_gpa_range *vr = gfn_ranges(&victims, &nr);
        rc = vr ? evict(pg, vr, nr, false, &went) : VMMU_ENOMEM;
        free(vr);
        /* What went, which is fewer than the victims if some could not be
         * written or were touched meanwhile. */
        if (paged_out)
            *paged_out = went;
    }
    free(victims.g);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------ */

/* A region removed or replaced takes its pages with it: forget their
 * records now (and free their file slots) rather than when the frames are
 * next touched.  Records of pages in flight belong to a page-out or
 * page-in that notices the region change itself. */
static void pager_reclaim_hook(void *opaque, struct vmmu_vm *vm,
                               const struct vmmu_gpa_range *ranges, size_t n,
                               enum vmmu__reclaim_why why)
{
    struct vmmu_pager *pg = opaque;
    if (why != VMMU_RECLAIM_REMOVE && why != VMMU_RECLAIM_REPLACE)
        return;
    pthread_mutex_lock(&pg->lock);
    for (size_t i = 0; i < pg->cap; i++) {
        struct rec *rec = &pg->tab[i];
        if (rec->key == KEY_EMPTY || rec->key == KEY_TOMB || rec->state == REC_EVICTING ||
            rec->state == REC_WRITING || rec->state == REC_LOADING)
            continue;
        /* The region gone was unpublished before its hooks run; a record
         * of the region the map shows there now (added over the range and
         * paged out meanwhile, by another thread) is that region's. */
        const struct vmmu_region *now = p2m_resolve(&vm->p2m, rec->key - 1, NULL);
        if (managed(now) && now->id == rec->region_id)
            continue;
        uint64_t gpa = (rec->key - 1) << VMMU_PAGE_SHIFT;
        for (size_t k = 0; k < n; k++) {
            if (gpa - ranges[k].gpa < ranges[k].size) {
                rec_forget(pg, rec);
                break;
            }
        }
    }
    pthread_mutex_unlock(&pg->lock);
}

int vmmu_pager_create(struct vmmu_vm *vm, const struct vmmu_pager_config *cfg,
                      struct vmmu_pager **out)
{
    static const struct vmmu_pager_config defaults;
    if (!vm || !out)
        return VMMU_EINVAL;
    if (!cfg)
        cfg = &defaults;
    if (cfg->flags & ~VMMU_PAGER_FLAGS_ALL)
        return VMMU_EINVAL;
    if (vmmu__vm_refuses_changes(vm))
        return VMMU_EBUSY; /* registering the page-in handler takes the map's lock */
    struct vmmu_pager *pg = vmmu__calloc(1, sizeof(*pg));
    if (!pg)
        return VMMU_ENOMEM;
    const char *dir = cfg->dir ? cfg->dir : getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    pg->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (pg->fd < 0) {
        free(pg);
        return VMMU_ESYS;
    }
    pg->vm = vm;
    pg->flags = cfg->flags;
    pg->limit = cfg->resident_limit;
    pthread_mutex_init(&pg->lock, NULL);
    pthread_cond_init(&pg->cond, NULL);
    struct vmmu_pager *none = NULL;
    int rc = VMMU_EBUSY; /* the vm has a pager already */
    if (!atomic_compare_exchange_strong(&vm->sync->pager, &none, pg))
        goto fail;
    rc = vmmu__reclaim_hook_add(vm, pager_reclaim_hook, pg);
    if (rc)
        goto fail_published;
    rc = vmmu_p2m_set_pagein_handler(vm, pagein_handler, pg);
    if (rc) {
        /* Out of memory, or called from inside the page-in handler it
         * would replace (which goes on using it). */
        vmmu__reclaim_hook_remove(vm, pager_reclaim_hook, pg);
        goto fail_published;
    }
    *out = pg;
    return 0;

fail_published:
    atomic_store(&vm->sync->pager, NULL);
fail:
    close(pg->fd);
    pthread_mutex_destroy(&pg->lock);
    pthread_cond_destroy(&pg->cond);
    free(pg);
    return rc;
}

int vmmu_pager_destroy(struct vmmu_pager *pg)
{
    if (!pg)
        return 0;
    struct vmmu_vm *vm = pg->vm;
    if (vmmu__vm_refuses_changes(vm))
        return VMMU_EBUSY; /* the map's lock is the caller's own */
    vmmu__sync_change_lock(vm);
    vmmu__sync_map_lock(vm);
    int rc = 0, err = 0;
    for (size_t i = 0; i < pg->cap; i++) {
        uint64_t key = pg->tab[i].key;
        if (key != KEY_EMPTY && key != KEY_TOMB && pg->tab[i].state != REC_YOUNG) {
            int e = page_in_one(pg, key - 1);
            if (e && !rc) {
                rc = e;
                err = errno;
            }
        }
    }
    pthread_mutex_unlock(&vm->lock);
    if (rc) {
        /* A page could not be read back: freeing the pager would lose it.
         * The pager stays, handler and file, for another try. */
        vmmu__sync_change_unlock(vm);
        errno = err;
        return rc;
    }
    /* Returns once no thread is inside the handler or can enter it (a
     * call under way ends soon: every page is in, and it waits for
     * nothing held here). */
    rc = vmmu_p2m_set_pagein_handler(vm, NULL, NULL);
    if (rc) {
        /* Called from inside the page-in handler (which goes on using the
         * pager): it stays, with every page in. */
        vmmu__sync_change_unlock(vm);
        return rc;
    }
    vmmu__reclaim_hook_remove(vm, pager_reclaim_hook, pg);
    atomic_store(&vm->sync->pager, NULL);
    vmmu__sync_change_unlock(vm);
    vmmu__pager_free(pg);
    return 0;
}

void vmmu__pager_free(struct vmmu_pager *pg)
{
    /* The vm is being destroyed with its pager: the guest's memory goes
     * with it, so nothing is paged back in; only the pager's own
     * resources are released. */
    close(pg->fd);
    pthread_mutex_destroy(&pg->lock);
    pthread_cond_destroy(&pg->cond);
    free(pg->tab);
    free(pg->free_slots);
    free(pg);
}

int vmmu_pager_stats(struct vmmu_pager *pg, struct vmmu_pager_stats *out)
{
    if (!pg || !out)
        return VMMU_EINVAL;
    struct managed_region *m;
    size_t n;
    uint64_t resident = 0;
    if (managed_regions(pg->vm, &m, &n) == 0) {
        unsigned char **vec = vmmu__calloc(n + 1, sizeof(*vec));
        if (vec) {
            resident = count_resident(m, n, vec);
            for (size_t i = 0; i < n; i++)
                free(vec[i]);
            free(vec);
        }
        free(m);
    }
    pthread_mutex_lock(&pg->lock);
    *out = pg->st;
    pthread_mutex_unlock(&pg->lock);
    out->resident = resident;
    return 0;
}
