/* SPDX-License-Identifier: MIT */
/*
 * The mapcache: guest RAM mapped from the vm's memfd in buckets.
 *
 * A bucket covers one aligned span of 2^bucket_shift bytes of guest-
 * physical space, cut to the region-table entry that holds it (the vm's
 * region table says where each region lives in the memfd, and leaves
 * paged-out pages out).  Buckets sit in a hash by span number and on an
 * LRU list; pinned buckets (vmmu_dmc_map() without its vmmu_dmc_unmap())
 * are never evicted.
 *
 * A span may need a new bucket while an older one of it is pinned (the
 * region table changed: a range was punched out and published again, or
 * pages came back), or while one an invalidation left harmless is.  The
 * new bucket takes over every such pinned bucket it overlaps: they keep
 * their mappings on its retired list and their pins are added to its own.
 * So no two units of a span overlap, an unmap finds the one unit that
 * holds its address, and no user's pointer is unmapped while a pin of its
 * unit is held (an unmap cannot tell which of two overlapping mappings of
 * its address it releases).
 *
 * Invalidation drops every bucket that overlaps the range.  An unpinned
 * bucket is unmapped.  A pinned one cannot be unmapped under its user, so
 * its address range is replaced (MAP_FIXED) by private anonymous memory:
 * the user's pointer stays harmless, and the vm's pages are no longer
 * mapped here, which is all the vm waits for.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "dmclient_internal.h"

static unsigned hash_of(uint64_t key)
{
    return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> 54) & (DMC_HASH - 1);
}

static void lru_unlink(struct vmmu_dmc *c, struct dmc_bucket *b)
{
    if (b->older)
        b->older->newer = b->newer;
    else
        c->oldest = b->newer;
    if (b->newer)
        b->newer->older = b->older;
    else
        c->newest = b->older;
    b->older = b->newer = NULL;
}

static void lru_push(struct vmmu_dmc *c, struct dmc_bucket *b)
{
    b->older = c->newest;
    b->newer = NULL;
    if (c->newest)
        c->newest->newer = b;
    else
        c->oldest = b;
    c->newest = b;
}

static void hash_unlink(struct vmmu_dmc *c, struct dmc_bucket *b)
{
    for (struct dmc_bucket **pp = &c->hash[hash_of(b->key)]; *pp; pp = &(*pp)->hnext)
        if (*pp == b) {
            *pp = b->hnext;
            b->hnext = NULL;
            return;
        }
}

/* Unmap and free @b and the buckets it retired. */
static void bucket_free(struct vmmu_dmc *c, struct dmc_bucket *b)
{
    struct dmc_bucket *r = b->retired;
    while (r) {
        struct dmc_bucket *n = r->hnext;
        munmap(r->ptr, r->end - r->start);
        c->mapped -= r->end - r->start;
        free(r);
        r = n;
    }
    munmap(b->ptr, b->end - b->start);
    c->mapped -= b->end - b->start;
    free(b);
}

/* Whether @b or a bucket it retired maps @gpa. */
static bool unit_holds(const struct dmc_bucket *b, uint64_t gpa)
{
    if (gpa >= b->start && gpa < b->end)
        return true;
    for (const struct dmc_bucket *r = b->retired; r; r = r->hnext)
        if (gpa >= r->start && gpa < r->end)
            return true;
    return false;
}

/* Whether @b or a bucket it retired overlaps [gpa, end). */
static bool unit_overlaps(const struct dmc_bucket *b, uint64_t gpa, uint64_t end)
{
    if (b->start < end && gpa < b->end)
        return true;
    for (const struct dmc_bucket *r = b->retired; r; r = r->hnext)
        if (r->start < end && gpa < r->end)
            return true;
    return false;
}

/* The bucket of span @key that holds @gpa (a pinned one with @pinned).  A
 * span may have more than one bucket: its region-table entries changed
 * (pages paged out or back) while an older bucket was pinned. */
static struct dmc_bucket *find(struct vmmu_dmc *c, uint64_t key, uint64_t gpa, bool pinned)
{
    for (struct dmc_bucket *b = c->hash[hash_of(key)]; b; b = b->hnext)
        if (b->key == key && gpa >= b->start && gpa < b->end && (b->pins || !pinned))
            return b;
    return NULL;
}

/* Find the region holding @gpa in the vm's table (a sequence lock).  The
 * vm rewrites the table in a few microseconds, but its thread may be
 * preempted halfway: after a short spin, yield between tries, and give up
 * (VMMU_EBUSY) only after DMC_TABLE_WAIT_NS. */
static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

bool vmmu__dmc_ent_ok(const struct vmmu_dm_region_ent *e)
{
    /* A range ending exactly at 2^64 is refused too: its end would read 0. */
    return e->size && e->gpa < UINT64_MAX - e->size + 1 && e->size <= (uint64_t)INT64_MAX &&
           e->memfd_offset <= (uint64_t)INT64_MAX - e->size &&
           !(e->flags & ~VMMU_DM_REGION_WRITABLE);
}

static int region_lookup(struct vmmu_dmc *c, uint64_t gpa, struct vmmu_dm_region_ent *out)
{
    uint64_t since = 0;
    for (unsigned tries = 0;; tries++) {
        if (tries == 100) {
            since = mono_ns();
        } else if (tries > 100) {
            if (mono_ns() - since > DMC_TABLE_WAIT_NS)
                return VMMU_EBUSY;
            sched_yield();
        }
        uint32_t s1 = __atomic_load_n(&c->regions->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1)
            continue;
        uint32_t n = __atomic_load_n(&c->regions->count, __ATOMIC_RELAXED);
        if (n > c->max_regions)
            n = c->max_regions;
        bool found = false;
        for (uint32_t i = 0; i < n && !found; i++) {
            const struct vmmu_dm_region_ent *e = &c->region_ent[i];
            uint64_t g = __atomic_load_n(&e->gpa, __ATOMIC_RELAXED);
            uint64_t sz = __atomic_load_n(&e->size, __ATOMIC_RELAXED);
            if (gpa >= g && gpa - g < sz) {
                out->gpa = g;
                out->size = sz;
                out->memfd_offset = __atomic_load_n(&e->memfd_offset, __ATOMIC_RELAXED);
                out->flags = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
                found = true;
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&c->regions->seq, __ATOMIC_RELAXED) != s1)
            continue;
        /* The vm may write anything here: an entry that wraps would make
         * the bucket arithmetic below grow a piece instead of cutting it. */
        if (found && !vmmu__dmc_ent_ok(out))
            return VMMU_EPROTO;
        return found ? 0 : VMMU_EHOLE;
    }
}

static bool evict_one(struct vmmu_dmc *c)
{
    for (struct dmc_bucket *b = c->oldest; b; b = b->newer)
        if (!b->pins) {
            lru_unlink(c, b);
            hash_unlink(c, b);
            bucket_free(c, b);
            c->st.evictions++;
            return true;
        }
    return false;
}

/* Move pinned unit @o (off every list) into @b's: its pins count in b's. */
static void retire(struct dmc_bucket *b, struct dmc_bucket *o)
{
    b->pins += o->pins;
    o->pins = 0;
    struct dmc_bucket *r = o->retired;
    o->retired = NULL;
    o->hnext = b->retired;
    b->retired = o;
    while (r) {
        struct dmc_bucket *n = r->hnext;
        r->hnext = b->retired;
        b->retired = r;
        r = n;
    }
}

/* Widen @b's span mapped for writing to [gpa, gpa + len). */
static void note_write(struct dmc_bucket *b, uint64_t gpa, uint64_t len)
{
    if (b->wlo == b->whi) {
        b->wlo = gpa;
        b->whi = gpa + len;
        return;
    }
    if (gpa < b->wlo)
        b->wlo = gpa;
    if (gpa + len > b->whi)
        b->whi = gpa + len;
}

/* Report the pages @b (and the buckets it retired) mapped for writing in
 * the device dirty bitmap: after the stores, with release order, so that
 * the vm, which takes the bits with an exchange, reads what they stand
 * for.  Pages beyond the bitmap cannot be reported.  The spans are kept
 * (@keep) while another mapping of @b is pinned: a store through that one
 * after the vm took the bits must be reported at its own unmap, and a
 * bucket does not know which part each pin maps (reporting a page again
 * only makes the vm copy it again). */
static void report_writes(struct vmmu_dmc *c, struct dmc_bucket *b, bool keep)
{
    for (struct dmc_bucket *u = b; u; u = u == b ? b->retired : u->hnext) {
        if (u->wlo == u->whi)
            continue;
        if (c->dirty) {
            uint64_t first = (u->memfd_off + (u->wlo - u->start)) >> 12;
            uint64_t last = (u->memfd_off + (u->whi - 1 - u->start)) >> 12;
            for (uint64_t p = first; p <= last && p < VMMU_DM_DIRTY_PAGES; p++)
                __atomic_fetch_or(&c->dirty[p / 64], 1ull << (p % 64), __ATOMIC_RELEASE);
        }
        if (!keep)
            u->wlo = u->whi = 0;
    }
}

/* Map and pin [gpa, gpa + len), or with @got only its first part that
 * lies in one bucket mapping (the copy helpers then go on from there). */
static int map_some(struct vmmu_dmc *c, uint64_t gpa, size_t len, int write, void **ptr,
                    size_t *got)
{
    if (!c || !ptr || !len || gpa + len < gpa)
        return VMMU_EINVAL;
    uint64_t key = gpa >> c->bucket_shift;
    if ((gpa + len - 1) >> c->bucket_shift != key)
        return VMMU_ERANGE;
    struct dmc_bucket *b = find(c, key, gpa, false);
    if (got && b && gpa + len > b->end)
        len = (size_t)(b->end - gpa);
    if (b && gpa + len <= b->end && (b->writable || !write)) {
        if (write)
            note_write(b, gpa, len);
        b->pins++;
        lru_unlink(c, b);
        lru_push(c, b);
        c->st.map_hits++;
        *ptr = b->ptr + (gpa - b->start);
        if (got)
            *got = len;
        return 0;
    }
    c->st.map_misses++;
    if (b && !b->pins) {
        /* A bucket holds @gpa but not the whole request, or only for
         * reading (the region table changed): replace it.  One in use
         * stays, and the new bucket lives beside it. */
        lru_unlink(c, b);
        hash_unlink(c, b);
        bucket_free(c, b);
    }
    if (c->memfd < 0)
        return VMMU_ENOENT;
    struct vmmu_dm_region_ent r = {0};
    int err = region_lookup(c, gpa, &r);
    /* Not in the table: perhaps in a region the pager took pages from.  Ask
     * the vm (it answers VMMU_EHOLE for memory it does not have) and map
     * what it answers; the pager may take the page again meanwhile, so a
     * few rounds at most. */
    for (int round = 0; err == VMMU_EHOLE && round < DMC_PAGEIN_ROUNDS; round++) {
        err = vmmu__dmc_page_in(c, gpa, len, &r);
        if (err == VMMU_EBUSY)
            err = VMMU_EHOLE; /* again */
        else if (err)
            return err;
    }
    if (err == VMMU_EHOLE)
        return VMMU_EPAGEDOUT; /* brought back every round, and taken again */
    if (err)
        return err;
    if (write && !(r.flags & VMMU_DM_REGION_WRITABLE))
        return VMMU_EROM;
    /* The bucket cut to the entry.  The last bucket of the address space
     * ends at 2^64, which does not fit: compare lengths from its start. */
    uint64_t span = 1ull << c->bucket_shift;
    uint64_t bstart = key << c->bucket_shift;
    uint64_t rend = r.gpa + r.size; /* above @gpa, no wrap: vmmu__dmc_ent_ok() */
    uint64_t start = bstart < r.gpa ? r.gpa : bstart;
    uint64_t end = rend - bstart > span ? bstart + span : rend;
    if (got && gpa + len > end)
        len = (size_t)(end - gpa);
    if (gpa + len > end)
        return VMMU_ERANGE;
    uint64_t off = r.memfd_offset + (start - r.gpa);
    struct stat sb;
    if (fstat(c->memfd, &sb) != 0 || off > (uint64_t)sb.st_size ||
        end - start > (uint64_t)sb.st_size - off)
        return VMMU_EHOLE; /* the table names memory the file does not have */
    while (c->mapped + (end - start) > c->limit)
        if (!evict_one(c))
            return VMMU_ELIMIT;
    b = dmc_calloc(1, sizeof(*b));
    if (!b)
        return VMMU_ENOMEM;
    int prot = PROT_READ | ((r.flags & VMMU_DM_REGION_WRITABLE) ? PROT_WRITE : 0);
    void *p = mmap(NULL, end - start, prot, MAP_SHARED, c->memfd, (off_t)off);
    if (p == MAP_FAILED) {
        free(b);
        return VMMU_ESYS;
    }
    b->key = key;
    b->start = start;
    b->end = end;
    b->ptr = p;
    b->memfd_off = off;
    b->pins = 1;
    if (write)
        note_write(b, gpa, len);
    /* Take over the buckets of the span the new one overlaps: unpinned
     * ones go, pinned ones are retired into it (see the top). */
    for (struct dmc_bucket **pp = &c->hash[hash_of(key)]; *pp;) {
        struct dmc_bucket *o = *pp;
        if (o->key != key || !unit_overlaps(o, start, end)) {
            pp = &o->hnext;
            continue;
        }
        *pp = o->hnext;
        o->hnext = NULL;
        lru_unlink(c, o);
        if (!o->pins) {
            bucket_free(c, o);
            continue;
        }
        retire(b, o);
    }
    /* Units an invalidation left harmless while pinned, too: their
     * pointers must not be freed by an unmap meant for the new bucket. */
    for (struct dmc_bucket **pp = &c->dead; *pp;) {
        struct dmc_bucket *o = *pp;
        if (o->key != key || !unit_overlaps(o, start, end)) {
            pp = &o->hnext;
            continue;
        }
        *pp = o->hnext;
        o->hnext = NULL;
        retire(b, o);
    }
    b->writable = (r.flags & VMMU_DM_REGION_WRITABLE) != 0;
    b->hnext = c->hash[hash_of(key)];
    c->hash[hash_of(key)] = b;
    lru_push(c, b);
    c->mapped += end - start;
    *ptr = b->ptr + (gpa - start);
    if (got)
        *got = len;
    return 0;
}

int vmmu_dmc_map(struct vmmu_dmc *c, uint64_t gpa, size_t len, int write, void **ptr)
{
    return map_some(c, gpa, len, write, ptr, NULL);
}

int vmmu_dmc_unmap(struct vmmu_dmc *c, uint64_t gpa)
{
    if (!c)
        return VMMU_EINVAL;
    uint64_t key = gpa >> c->bucket_shift;
    for (struct dmc_bucket *b = c->hash[hash_of(key)]; b; b = b->hnext)
        if (b->key == key && b->pins && unit_holds(b, gpa)) {
            report_writes(c, b, b->pins > 1);
            b->pins--;
            return 0;
        }
    /* Invalidated while pinned: free it with its last unpin. */
    for (struct dmc_bucket **pp = &c->dead; *pp; pp = &(*pp)->hnext) {
        struct dmc_bucket *b = *pp;
        if (unit_holds(b, gpa)) {
            if (--b->pins == 0) {
                *pp = b->hnext;
                bucket_free(c, b);
            }
            return 0;
        }
    }
    return VMMU_ENOENT;
}

/* Replace a pinned bucket's mapping in place by private memory. */
static void make_harmless(struct dmc_bucket *b)
{
    void *p = mmap(b->ptr, b->end - b->start, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        munmap(b->ptr, b->end - b->start); /* a fault beats a stale page */
}

void vmmu__dmc_invalidate(struct vmmu_dmc *c, uint64_t gpa, uint64_t size)
{
    uint64_t end = gpa + size < gpa ? UINT64_MAX : gpa + size;
    struct dmc_bucket *b = c->oldest;
    while (b) {
        struct dmc_bucket *next = b->newer;
        if (unit_overlaps(b, gpa, end)) {
            lru_unlink(c, b);
            hash_unlink(c, b);
            c->st.dropped++;
            if (!b->pins) {
                bucket_free(c, b);
            } else {
                /* Its user's stores so far reached guest memory; from now
                 * on they go to private memory and are lost. */
                report_writes(c, b, false);
                make_harmless(b);
                for (struct dmc_bucket *r = b->retired; r; r = r->hnext)
                    make_harmless(r);
                b->dead = true;
                b->hnext = c->dead;
                c->dead = b;
            }
        }
        b = next;
    }
}

void vmmu__dmc_mapcache_fini(struct vmmu_dmc *c)
{
    while (c->oldest) {
        struct dmc_bucket *b = c->oldest;
        lru_unlink(c, b);
        /* A write mapping still held: its stores are in guest memory, and
         * the vm's dirty log must show them as an unmap would.  (A dead
         * bucket's were reported when the invalidation took it.) */
        report_writes(c, b, false);
        bucket_free(c, b);
    }
    while (c->dead) {
        struct dmc_bucket *b = c->dead;
        c->dead = b->hnext;
        bucket_free(c, b);
    }
    memset(c->hash, 0, sizeof(c->hash));
}

/* Copy helpers: split at bucket and region edges, map, copy, unmap. */
static int copy(struct vmmu_dmc *c, uint64_t gpa, size_t len, int write,
                void (*fn)(void *guest, size_t off, size_t n, void *arg), void *arg)
{
    if (!c || gpa + len < gpa)
        return VMMU_EINVAL;
    size_t done = 0;
    while (done < len) {
        uint64_t g = gpa + done;
        uint64_t room = (((g >> c->bucket_shift) + 1) << c->bucket_shift) - g;
        size_t n = len - done < room ? len - done : (size_t)room;
        void *p;
        int err = map_some(c, g, n, write, &p, &n);
        if (err)
            return err;
        fn(p, done, n, arg);
        vmmu_dmc_unmap(c, g);
        done += n;
    }
    return 0;
}

static void do_read(void *guest, size_t off, size_t n, void *arg)
{
    memcpy((char *)arg + off, guest, n);
}

static void do_write(void *guest, size_t off, size_t n, void *arg)
{
    memcpy(guest, (const char *)arg + off, n);
}

static void do_fill(void *guest, size_t off, size_t n, void *arg)
{
    (void)off;
    memset(guest, *(int *)arg, n);
}

int vmmu_dmc_read(struct vmmu_dmc *c, uint64_t gpa, void *buf, size_t len)
{
    if (!buf && len)
        return VMMU_EINVAL;
    return copy(c, gpa, len, 0, do_read, buf);
}

int vmmu_dmc_write(struct vmmu_dmc *c, uint64_t gpa, const void *buf, size_t len)
{
    if (!buf && len)
        return VMMU_EINVAL;
    return copy(c, gpa, len, 1, do_write, (void *)buf);
}

int vmmu_dmc_fill(struct vmmu_dmc *c, uint64_t gpa, int byte, size_t len)
{
    return copy(c, gpa, len, 1, do_fill, &byte);
}
