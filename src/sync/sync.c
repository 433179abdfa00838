/* SPDX-License-Identifier: MIT */
/*
 * vCPU life cycle, requests and generations.
 *
 * Every vCPU id has a slot (sync_internal.h) with a request generation
 * (req_gen), bumped by requesters after they merge what they want dropped
 * into the slot's pending set, and a done generation (done_gen) that the
 * vCPU publishes after acting on everything up to it.  This is the shape
 * of Linux's tlb_gen: a requester that finds done_gen >= its own
 * generation knows its request was covered, by its own flush or by one
 * that merged with it.
 *
 * The race that matters is a request against a vCPU going on- or offline.
 * Both sides use sequentially consistent accesses in the Dekker pattern:
 *
 *   requester                      vCPU coming online
 *   req_gen = g        (seq_cst)   state = ONLINE            (seq_cst)
 *   read state         (seq_cst)   read req_gen; act on it   (seq_cst)
 *
 * If the requester reads OFFLINE, its store of g precedes the vCPU's read
 * of req_gen, so the vCPU acts on the request before running: the
 * requester need not wait.  If it reads ONLINE, it waits for done_gen (or
 * for the vCPU to go offline: an offline vCPU holds nothing derived from a
 * translation, and it will act on the request when it comes back).
 *
 * Waiting spins on done_gen for a bounded time (a cache-line round trip
 * when the target is running and reaches a safe point soon), then sleeps
 * on a futex the target wakes only when someone sleeps, so the target's
 * fast path makes no system call.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/cpuset_internal.h"
#include "sync/sync_internal.h"
#include "tlb/tlb_internal.h"
#include "vmmu/error.h"

/* Spin this long for an acknowledgement before sleeping. */
#define SYNC_SPIN_NS 50000
/* After this long, yield the core while spinning: with more threads than
 * cores the target may be queued behind the requester. */
#define SYNC_YIELD_NS 5000
/* Spins of a parked vCPU (cpu_relax() each, a few microseconds in all)
 * before it sleeps until the exclusive section ends. */
#define SYNC_PARK_SPINS 256

/* Initial-exec: one %fs-relative load, in the shared library too (the
 * safe point checks it on every call). */
static _Thread_local struct vmmu_vcpu *tls_vcpu __attribute__((tls_model("initial-exec")));
static _Thread_local bool tls_exit_set;          /* reader_key set for this thread */
/* A vCPU this thread took offline by hand inside a callback of its own
 * access (a page-in handler that blocks): the access goes on once the
 * callback returns, so the vCPU stays claimed by this thread, and no
 * other thread may run or destroy it, until it comes back online here or
 * the access's last callback frame is left. */
static _Thread_local struct vmmu_vcpu *tls_kept;
static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
/* The access layer's safe-point function (see vmmu__sync_set_safepoint_fn). */
static _Atomic vmmu__safepoint_fn safepoint_fn;

void vmmu__sync_set_safepoint_fn(vmmu__safepoint_fn fn)
{
    atomic_store_explicit(&safepoint_fn, fn, memory_order_relaxed);
}

/* Tell the layer above that @v passed a safe point. */
static void safepoint_notify(struct vmmu_vcpu *v)
{
    vmmu__safepoint_fn fn = atomic_load_explicit(&safepoint_fn, memory_order_relaxed);
    if (fn)
        fn(v);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void slot_lock(struct sync_slot *s)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
        if (++spins > 64) {
            sched_yield();
            spins = 0;
        } else {
            cpu_relax();
        }
    }
}

static void slot_unlock(struct sync_slot *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

static void slot_wake(struct sync_slot *s)
{
    atomic_fetch_add_explicit(&s->ack_seq, 1, memory_order_seq_cst);
    syscall(SYS_futex, (uint32_t *)(void *)&s->ack_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
            0);
}

/* ---- Thread registration ------------------------------------------------- */

/* A thread that exits with its vCPU online would hold it for ever: take
 * it offline at exit. */
static void reader_exit(void *unused)
{
    (void)unused;
    struct vmmu_vcpu *v = tls_vcpu;
    if (v) {
        struct sync_slot *s = v->sync;
        atomic_store(&s->state, SYNC_OFFLINE);
        slot_wake(s);
        tls_vcpu = NULL;
        atomic_store(&s->claimed, 0);
    }
    /* (Its grace-period reader is unregistered by core/grace.c.) */
}

static void reader_key_make(void)
{
    (void)pthread_key_create(&reader_key, reader_exit);
}

struct vmmu_vcpu *vmmu__sync_current_vcpu(void)
{
    return tls_vcpu;
}

/* ---- Merging requests ------------------------------------------------------ */

/* Shrink @r (sorted by gpa, @n entries) to at most @max ranges by joining
 * neighbours across the smallest gaps.  A joined range also covers its
 * gap, which only drops a few more entries than needed. */
static size_t gpas_coalesce(struct vmmu_gpa_range *r, size_t n, size_t max)
{
    while (n > max) {
        size_t best = 0;
        uint64_t best_gap = UINT64_MAX;
        for (size_t i = 0; i + 1 < n; i++) {
            uint64_t end = r[i].gpa + r[i].size;
            uint64_t gap = r[i + 1].gpa > end ? r[i + 1].gpa - end : 0;
            if (gap < best_gap) {
                best_gap = gap;
                best = i;
            }
        }
        uint64_t end = r[best].gpa + r[best].size, end2 = r[best + 1].gpa + r[best + 1].size;
        r[best].size = (end2 > end ? end2 : end) - r[best].gpa;
        memmove(&r[best + 1], &r[best + 2], (n - best - 2) * sizeof(*r));
        n--;
    }
    return n;
}

static int range_cmp(const void *a, const void *b)
{
    const struct vmmu_gpa_range *x = a, *y = b;
    return (x->gpa > y->gpa) - (x->gpa < y->gpa);
}

void vmmu__sync_set_gpas(struct sync_pending *p, const struct vmmu_gpa_range *ranges, size_t n)
{
    memset(p, 0, sizeof(*p));
    if (!n)
        return;
    p->want = SYNC_WANT_GPAS;
    if (n <= SYNC_MAX_GPAS) {
        memcpy(p->gpas, ranges, n * sizeof(*ranges));
        qsort(p->gpas, n, sizeof(*ranges), range_cmp);
        p->ngpas = (uint32_t)gpas_coalesce(p->gpas, n, SYNC_MAX_GPAS);
        return;
    }
    /* Many ranges (a batch of pages): keep the SYNC_MAX_GPAS - 1 largest
     * gaps of the sorted list as splits. */
    struct vmmu_gpa_range *sorted = vmmu__malloc(n * sizeof(*sorted));
    if (!sorted) {
        p->want = SYNC_WANT_ALL;
        return;
    }
    memcpy(sorted, ranges, n * sizeof(*ranges));
    qsort(sorted, n, sizeof(*sorted), range_cmp);
    size_t cut[SYNC_MAX_GPAS - 1];
    uint64_t cutgap[SYNC_MAX_GPAS - 1];
    size_t ncut = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t end = sorted[i].gpa + sorted[i].size;
        uint64_t gap = sorted[i + 1].gpa > end ? sorted[i + 1].gpa - end : 0;
        if (!gap)
            continue;
        size_t at = ncut;
        if (ncut < SYNC_MAX_GPAS - 1)
            ncut++;
        else if (gap <= cutgap[ncut - 1])
            continue;
        else
            at = ncut - 1;
        while (at > 0 && cutgap[at - 1] < gap) {
            cut[at] = cut[at - 1];
            cutgap[at] = cutgap[at - 1];
            at--;
        }
        cut[at] = i;
        cutgap[at] = gap;
    }
    /* Emit the pieces in gpa order: sort the cut indices. */
    for (size_t i = 1; i < ncut; i++)
        for (size_t j = i; j > 0 && cut[j - 1] > cut[j]; j--) {
            size_t t = cut[j];
            cut[j] = cut[j - 1];
            cut[j - 1] = t;
        }
    size_t start = 0;
    for (size_t k = 0; k <= ncut; k++) {
        size_t last = k < ncut ? cut[k] : n - 1;
        uint64_t lo = sorted[start].gpa, hi = 0;
        for (size_t i = start; i <= last; i++)
            if (sorted[i].gpa + sorted[i].size > hi)
                hi = sorted[i].gpa + sorted[i].size;
        p->gpas[p->ngpas].gpa = lo;
        p->gpas[p->ngpas].size = hi - lo;
        p->ngpas++;
        start = last + 1;
    }
    free(sorted);
}

static void pending_merge(struct sync_pending *into, const struct sync_pending *p)
{
    if ((into->want | p->want) & SYNC_WANT_ALL) {
        memset(into, 0, sizeof(*into));
        into->want = SYNC_WANT_ALL;
        return;
    }
    if (p->want & SYNC_WANT_CONTEXTS)
        into->ctx_mask |= p->ctx_mask;
    for (uint32_t i = 0; i < p->npcids; i++) {
        bool dup = false;
        for (uint32_t j = 0; j < into->npcids; j++)
            dup |= into->pcids[j] == p->pcids[i];
        if (dup)
            continue;
        if (into->npcids == SYNC_MAX_PCIDS)
            goto all;
        into->pcids[into->npcids++] = p->pcids[i];
    }
    for (uint32_t i = 0; i < p->npages; i++) {
        if (into->npages == SYNC_MAX_PAGES)
            goto all;
        into->pages[into->npages++] = p->pages[i];
    }
    if (p->ngpas) {
        struct vmmu_gpa_range both[2 * SYNC_MAX_GPAS];
        size_t n = into->ngpas;
        memcpy(both, into->gpas, n * sizeof(*both));
        memcpy(both + n, p->gpas, p->ngpas * sizeof(*both));
        n += p->ngpas;
        qsort(both, n, sizeof(*both), range_cmp);
        n = gpas_coalesce(both, n, SYNC_MAX_GPAS);
        memcpy(into->gpas, both, n * sizeof(*both));
        into->ngpas = (uint32_t)n;
    }
    into->want |= p->want;
    return;
all:
    memset(into, 0, sizeof(*into));
    into->want = SYNC_WANT_ALL;
}

/* Move @from into @to, leaving @from empty.  Only the used parts are read
 * and only the header is cleared: the slot's lines stay where they are
 * (with the requesters) as much as possible. */
static void pending_take(struct sync_pending *to, struct sync_pending *from)
{
    to->want = from->want;
    to->ctx_mask = from->ctx_mask;
    to->npcids = from->npcids;
    to->npages = from->npages;
    to->ngpas = from->ngpas;
    memcpy(to->pages, from->pages, from->npages * sizeof(to->pages[0]));
    memcpy(to->pcids, from->pcids, from->npcids * sizeof(to->pcids[0]));
    memcpy(to->gpas, from->gpas, from->ngpas * sizeof(to->gpas[0]));
    from->want = from->ctx_mask = 0;
    from->npcids = from->npages = from->ngpas = 0;
}

/* ---- Acting on requests (the vCPU's own thread) ------------------------------ */

static bool gpa_hit(const struct sync_pending *p, uint64_t gpa)
{
    for (uint32_t i = 0; i < p->ngpas; i++)
        if (gpa - p->gpas[i].gpa < p->gpas[i].size)
            return true;
    return false;
}

static bool psc_hits(const struct sync_pending *p, const struct psc_entry *e, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (e[i].tag && gpa_hit(p, e[i].table & VMMU_PAGE_MASK))
            return true;
    return false;
}

/* Drop every entry of @c whose guest-physical page is in @p's ranges.
 * The TLB is indexed by va, so this scans what the context holds: the
 * indices filled since its last flush while that log has not overflowed,
 * else the whole table. */
static void ctx_drop_gpas(struct tlb_ctx *c, const struct sync_pending *p)
{
    if (c->fills == 0)
        return; /* nothing filled since the last flush */
    if (c->used) {
        if (c->nfilled <= TLB_FILLED_LOG) {
            for (unsigned k = 0; k < c->nfilled; k++) {
                unsigned i = c->filled[k];
                const struct vmmu_tlb_entry *e = &c->hot[i];
                if (entry_valid(e) && gpa_hit(p, cold_gpa(&c->cold[i])))
                    vmmu__tlb_ctx_flush_page(c, entry_page(e), false, false);
            }
        } else {
            for (unsigned i = 0; i < c->n; i++) {
                const struct vmmu_tlb_entry *e = &c->hot[i];
                if (entry_valid(e) && gpa_hit(p, cold_gpa(&c->cold[i])))
                    vmmu__tlb_ctx_flush_page(c, entry_page(e), false, false);
            }
        }
    }
    for (unsigned i = 0; i < VMMU_TLB_VICTIMS; i++) {
        const struct vmmu_tlb_entry *e = &c->victim[i].hot;
        if (entry_valid(e) && gpa_hit(p, cold_gpa(&c->victim[i].cold)))
            vmmu__tlb_ctx_flush_page(c, entry_page(e), false, false);
    }
}

static void slot_drop_gpas(struct vmmu_vcpu *v, struct tlb_slot *s, const struct sync_pending *p)
{
    for (unsigned c = 0; c < CTX_COUNT; c++)
        ctx_drop_gpas(&s->ctx[c], p);
    /* Paging-structure caches hold host pointers to page-table pages. */
    const struct tlb_psc *psc = &s->psc;
    if (psc->count && (psc_hits(p, psc->l2, PSC_WAYS_L2) || psc_hits(p, psc->l3, PSC_WAYS_L3) ||
                       psc_hits(p, psc->l4, PSC_WAYS_L4) || psc_hits(p, psc->l5, PSC_WAYS_L5)))
        vmmu__psc_flush(v, &s->psc);
}

void vmmu__sync_apply(struct vmmu_vcpu *v, const struct sync_pending *p)
{
    if (!p->want)
        return;
    if (p->want & SYNC_WANT_ALL) {
        vmmu_vcpu_tlb_flush_all(v);
        return;
    }
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
        struct tlb_slot *s = &v->slot[i];
        if (p->want & SYNC_WANT_CONTEXTS)
            for (unsigned c = 0; c < CTX_COUNT; c++)
                if (p->ctx_mask & (1u << c))
                    vmmu__tlb_ctx_flush(v, &s->ctx[c]);
        if (!s->valid)
            continue;
        for (uint32_t k = 0; k < p->npcids; k++) {
            if (s->pcid != p->pcids[k])
                continue;
            for (unsigned c = 0; c < CTX_COUNT; c++)
                vmmu__tlb_ctx_flush_nonglobal(v, &s->ctx[c]);
            vmmu__psc_flush(v, &s->psc);
        }
        bool psc = false;
        for (uint32_t k = 0; k < p->npages; k++) {
            /* The page's entries in every PCID, global or not: a superset
             * of what INVLPG drops, and a TLB may always forget more. */
            for (unsigned c = 0; c < CTX_COUNT; c++)
                vmmu__tlb_ctx_flush_page(&s->ctx[c], p->pages[k].va, false, false);
            psc |= p->pages[k].pcid < 0 || p->pages[k].pcid == s->pcid;
        }
        if (psc)
            vmmu__psc_flush(v, &s->psc);
        if (p->ngpas)
            slot_drop_gpas(v, s, p);
    }
    vmmu__tlb_select(v);
}

/* Act on what was asked of @v so far. */
static void process_once(struct vmmu_vcpu *v)
{
    struct sync_slot *s = v->sync;
    struct sync_pending p;
    slot_lock(s);
    pending_take(&p, &s->pend);
    uint64_t gen = atomic_load_explicit(&s->req_gen, memory_order_relaxed);
    slot_unlock(s);
    vmmu__sync_apply(v, &p);
    /* What the vCPU found in its tables before may be stale now (an
     * access whose callback reached a safe point, which it should not). */
    v->host_gen++;
    s->handled_gen = gen;
    atomic_store_explicit(&s->done_gen, gen, memory_order_seq_cst);
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst))
        slot_wake(s);
}

/* ---- Life cycle ---------------------------------------------------------------- */

int vmmu__sync_vcpu_attach(struct vmmu_vcpu *v)
{
    struct vmmu_sync *sy = v->vm->sync;
    pthread_mutex_lock(&sy->reg_lock);
    int id = -1;
    for (size_t w = 0; w < sy->id_words && id < 0; w++)
        if (~sy->id_used[w])
            id = (int)(w * 64 + (size_t)__builtin_ctzll(~sy->id_used[w]));
    if (id < 0)
        id = (int)(sy->id_words * 64);
    if (id >= SYNC_DIR * SYNC_CHUNK) {
        pthread_mutex_unlock(&sy->reg_lock);
        return VMMU_ELIMIT;
    }
    if ((size_t)id / 64 >= sy->id_words) {
        size_t n = sy->id_words ? sy->id_words * 2 : 1;
        uint64_t *grown = vmmu__realloc(sy->id_used, n * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&sy->reg_lock);
            return VMMU_ENOMEM;
        }
        memset(grown + sy->id_words, 0, (n - sy->id_words) * sizeof(*grown));
        sy->id_used = grown;
        sy->id_words = n;
    }
    struct sync_slot *chunk = atomic_load_explicit(&sy->dir[id / SYNC_CHUNK], memory_order_relaxed);
    if (!chunk) {
        chunk = vmmu__aligned_alloc(64, SYNC_CHUNK * sizeof(*chunk));
        if (!chunk) {
            pthread_mutex_unlock(&sy->reg_lock);
            return VMMU_ENOMEM;
        }
        memset(chunk, 0, SYNC_CHUNK * sizeof(*chunk));
        for (unsigned i = 0; i < SYNC_CHUNK; i++) {
            atomic_flag_clear(&chunk[i].lock);
            atomic_init(&chunk[i].state, SYNC_DEAD);
            chunk[i].id = id / SYNC_CHUNK * SYNC_CHUNK + (int)i;
        }
        atomic_store_explicit(&sy->dir[id / SYNC_CHUNK], chunk, memory_order_release);
    }
    struct sync_slot *s = &chunk[id % SYNC_CHUNK];
    /* A reused id: requests posted to its previous vCPU are void (this
     * vCPU's TLB starts empty); release anyone still waiting on them. */
    slot_lock(s);
    memset(&s->pend, 0, sizeof(s->pend));
    uint64_t gen = atomic_load_explicit(&s->req_gen, memory_order_relaxed);
    s->handled_gen = gen;
    atomic_store(&s->done_gen, gen);
    slot_unlock(s);
    atomic_store(&s->claimed, 0);
    s->vcpu = v;
    v->sync = s;
    sy->id_used[id / 64] |= 1ull << (id % 64);
    if (id >= atomic_load(&sy->nids))
        atomic_store(&sy->nids, id + 1);
    atomic_store(&s->state, SYNC_OFFLINE);
    pthread_mutex_unlock(&sy->reg_lock);
    return 0;
}

int vmmu__sync_vcpu_detach(struct vmmu_vcpu *v)
{
    struct sync_slot *s = v->sync;
    if (!s)
        return 0;
    if (tls_vcpu == v)
        vmmu_vcpu_offline(v);
    /* Taken as vmmu_vcpu_online() takes it: a vCPU another thread runs
     * (or that waits offline inside vmmu) stays as it is. */
    int unclaimed = 0;
    if (!atomic_compare_exchange_strong(&s->claimed, &unclaimed, 1))
        return VMMU_EBUSY;
    struct vmmu_sync *sy = v->vm->sync;
    pthread_mutex_lock(&sy->reg_lock);
    atomic_store(&s->state, SYNC_DEAD);
    s->vcpu = NULL;
    atomic_store(&s->claimed, 0);
    sy->id_used[s->id / 64] &= ~(1ull << (s->id % 64));
    pthread_mutex_unlock(&sy->reg_lock);
    slot_wake(s);
    v->sync = NULL;
    return 0;
}

int vmmu_vcpu_id(const struct vmmu_vcpu *v)
{
    return v && v->sync ? v->sync->id : VMMU_EINVAL;
}

/* How many of vmmu's locks this thread holds that a section's code may
 * need (the change lock, the map's lock across vmmu_region_foreach()'s
 * callbacks): while it holds one, its vCPU does not park (see must_park()). */
static _Thread_local unsigned tls_locks;

/* Whether an exclusive section of another vCPU (or of a thread without
 * one) runs, so @v must not.  Never while the thread holds one of vmmu's
 * locks: the section's code may need it (a page-in handler that changes
 * page states, a page-in that waits for the map's lock), and the two
 * would wait for each other.  Such a thread comes online without parking
 * (after waiting offline, say, for a vCPU while it holds the lock) and
 * parks when it releases its last lock (vmmu__sync_unlocked()).  The
 * section's owner waits for that as for any online vCPU; a section that
 * began while the thread waited offline runs beside it until then, which
 * is host work inside vmmu or a foreach callback, not guest code. */
static bool must_park(const struct vmmu_vcpu *v)
{
    struct vmmu_sync *sy = v->vm->sync;
    return atomic_load(&sy->excl_on) && atomic_load(&sy->excl_owner) != v->sync->id &&
           tls_locks == 0;
}

static void go_offline(struct vmmu_vcpu *v);

/* Online again after a park: the reader and the state, nothing acted on. */
static void go_online_quiet(struct vmmu_vcpu *v)
{
    vmmu__reader_online();
    tls_vcpu = v;
    atomic_store(&v->sync->state, SYNC_ONLINE);
}

/* Park @v (online, at a safe point) until the exclusive section running
 * now ends: offline meanwhile, so the section's owner does not wait for
 * it, nor does anyone else. */
static void park(struct vmmu_vcpu *v)
{
    struct vmmu_sync *sy = v->vm->sync;
    uint32_t seq = atomic_load(&sy->excl_seq);
    go_offline(v);
    /* Sections are short (one locked access): spin a little before
     * sleeping, so that the owner's end needs no system call. */
    for (unsigned i = 0; i < SYNC_PARK_SPINS && atomic_load(&sy->excl_on) &&
                         atomic_load(&sy->excl_seq) == seq;
         i++)
        cpu_relax();
    if (atomic_load(&sy->excl_on) && atomic_load(&sy->excl_seq) == seq) {
        atomic_fetch_add(&sy->excl_sleepers, 1);
        while (atomic_load(&sy->excl_on) && atomic_load(&sy->excl_seq) == seq) {
            struct timespec ts = {0, 1000000}; /* re-check every millisecond */
            syscall(SYS_futex, (uint32_t *)(void *)&sy->excl_seq, FUTEX_WAIT_PRIVATE, seq, &ts,
                    NULL, 0);
        }
        atomic_fetch_sub(&sy->excl_sleepers, 1);
    }
    go_online_quiet(v);
}

void vmmu__sync_process(struct vmmu_vcpu *v)
{
    process_once(v);
    /* Requests that arrived while parked are acted on before the vCPU
     * runs on (or parks again, for a section that started meanwhile). */
    while (must_park(v)) {
        park(v);
        process_once(v);
    }
}

void vmmu__sync_locked(void)
{
    tls_locks++;
}

void vmmu__sync_unlocked(void)
{
    struct vmmu_vcpu *v = tls_vcpu;
    if (--tls_locks == 0 && v && must_park(v))
        vmmu__sync_process(v);
}

static void go_online(struct vmmu_vcpu *v)
{
    struct sync_slot *s = v->sync;
    if (!tls_exit_set) {
        pthread_once(&reader_once, reader_key_make);
        (void)pthread_setspecific(reader_key, (void *)1);
        tls_exit_set = true;
    }
    vmmu__reader_enter();
    tls_vcpu = v;
    atomic_store(&s->state, SYNC_ONLINE);
    /* After the state (both sequentially consistent): an exclusive section
     * that began before sees it online and waits for this vCPU to park. */
    if (atomic_load(&s->req_gen) != s->handled_gen || must_park(v))
        vmmu__sync_process(v);
}

static void go_offline(struct vmmu_vcpu *v)
{
    struct sync_slot *s = v->sync;
    /* Offline, a grace period may pass: host addresses the vCPU found
     * before (probe pointers, a prepared access's, a fill's walk) may be
     * gone after, whoever took it offline (vmmu's waits, or the user's
     * vmmu_vcpu_offline() in a page-in handler that blocks). */
    v->host_gen++;
    atomic_store(&s->state, SYNC_OFFLINE);
    tls_vcpu = NULL;
    if (atomic_load(&s->sleepers))
        slot_wake(s);
    vmmu__reader_offline();
}

int vmmu_vcpu_online(struct vmmu_vcpu *v)
{
    if (!v || !v->sync)
        return VMMU_EINVAL;
    if (tls_vcpu)
        return VMMU_EBUSY;
    if (tls_kept == v) { /* claimed still: see vmmu_vcpu_offline() */
        tls_kept = NULL;
        go_online(v);
        return 0;
    }
    /* One step, so that of two threads only one wins; and still taken
     * while the thread that runs it waits offline inside vmmu. */
    int unclaimed = 0;
    if (!atomic_compare_exchange_strong(&v->sync->claimed, &unclaimed, 1))
        return VMMU_EBUSY;
    go_online(v);
    return 0;
}

int vmmu_vcpu_offline(struct vmmu_vcpu *v)
{
    if (!v || !v->sync || tls_vcpu != v)
        return VMMU_EINVAL;
    safepoint_notify(v);
    go_offline(v);
    if (vmmu__callback_uses(v)) {
        /* Inside a callback of the vCPU's own access, which goes on after
         * it: the vCPU is still this thread's (vcpu.h, destroy). */
        tls_kept = v;
        return 0;
    }
    atomic_store(&v->sync->claimed, 0); /* after: nobody else runs it before */
    return 0;
}

void vmmu__sync_callback_left(const struct vmmu_vcpu *v)
{
    if (v && tls_kept == v && !vmmu__callback_uses(v)) {
        /* The access is over and the vCPU was left offline. */
        tls_kept = NULL;
        atomic_store(&v->sync->claimed, 0);
    }
}

int vmmu_vcpu_safepoint(struct vmmu_vcpu *v)
{
    /* Online on this thread (which implies v->sync): from any other thread
     * acting on requests would race with the vCPU's own, and the quiescent
     * state would be reported for the wrong thread. */
    if (!v || tls_vcpu != v)
        return VMMU_EINVAL;
    struct sync_slot *s = v->sync;
    /* The whole cost when nothing is pending: this load and compare, and
     * QSBR's own check of the global grace-period counter. */
    if (atomic_load_explicit(&s->req_gen, memory_order_relaxed) != s->handled_gen)
        vmmu__sync_process(v);
    safepoint_notify(v);
    vmmu__reader_quiescent();
    return 0;
}

struct vmmu__blocked vmmu__sync_block_begin(void)
{
    struct vmmu__blocked b = {.vcpu = tls_vcpu};
    if (b.vcpu) {
        /* Not a safe point: the access in progress goes on, and looks up
         * again what it found before (go_offline() moves host_gen). */
        go_offline(b.vcpu);
    } else if (vmmu__reader_is_online()) {
        /* A reader without a vCPU (a device-model service thread paging
         * in for its device model): a grace period must not wait for it
         * while it waits, perhaps for the very thread that waits for the
         * grace period (a page-out holding the change lock). */
        b.reader = true;
        vmmu__reader_offline();
    } else {
        /* A host thread's own section (a page-in it waits for, say). */
        b.host = vmmu__read_pause();
    }
    return b;
}

void vmmu__sync_block_end(struct vmmu__blocked b)
{
    if (b.vcpu)
        go_online(b.vcpu);
    else if (b.reader)
        vmmu__reader_online();
    else
        vmmu__read_resume(b.host);
}

/* ---- Exclusive sections ------------------------------------------------------------ */

static void wait_slot(struct sync_slot *s, uint64_t g, struct vmmu_vcpu *self, bool offline);

void vmmu__sync_exclusive_begin(struct vmmu_vm *vm)
{
    struct vmmu_sync *sy = vm->sync;
    struct vmmu_vcpu *self = tls_vcpu && tls_vcpu->vm == vm ? tls_vcpu : NULL;
    if (pthread_mutex_trylock(&sy->excl_lock) != 0) {
        /* Another section runs: wait for it parked, like any vCPU. */
        struct vmmu__blocked blk = vmmu__sync_block_begin();
        pthread_mutex_lock(&sy->excl_lock);
        vmmu__sync_block_end(blk);
    }
    atomic_store(&sy->excl_owner, self ? self->sync->id : -1);
    atomic_store(&sy->excl_on, 1);
    /* Every online vCPU finds a request at its next safe point, and parks
     * there; one that comes online from now on sees excl_on (go_online()). */
    static const struct sync_pending nothing;
    vmmu__sync_post(vm, self, NULL, &nothing, false);
    /* Spinning, then asleep until the vCPU goes offline (it wakes us);
     * acting on our own requests meanwhile, as at a safe point, since
     * others (a flush, a P2M change) may wait for us. */
    int n = atomic_load(&sy->nids);
    for (int id = 0; id < n; id++) {
        struct sync_slot *s = sync_slot_of(sy, id);
        if (!s || (self && s == self->sync))
            continue;
        wait_slot(s, 0, self, true);
    }
}

void vmmu__sync_exclusive_end(struct vmmu_vm *vm)
{
    struct vmmu_sync *sy = vm->sync;
    atomic_store(&sy->excl_on, 0);
    atomic_store(&sy->excl_owner, -1);
    /* The bump before the count (both sequentially consistent): a vCPU
     * that counted itself after this load sees the bump before it sleeps
     * (the futex compares the word). */
    atomic_fetch_add(&sy->excl_seq, 1);
    if (atomic_load(&sy->excl_sleepers))
        syscall(SYS_futex, (uint32_t *)(void *)&sy->excl_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
                NULL, 0);
    pthread_mutex_unlock(&sy->excl_lock);
}

void vmmu__sync_change_lock(struct vmmu_vm *vm)
{
    while (pthread_mutex_trylock(&vm->sync->change_lock) != 0) {
        struct vmmu__blocked b = vmmu__sync_block_begin();
        pthread_mutex_lock(&vm->sync->change_lock);
        if (!b.vcpu && !b.reader) {
            /* Nothing that may park: the lock is ours.  A host thread's
             * own section, paused for the wait, goes on (taking it never
             * waits); its caller ends it. */
            vmmu__sync_block_end(b);
            break;
        }
        /* Back online (which may park it for an exclusive section) without
         * the lock, then try again: a section's code may take it (a
         * page-in handler that changes page states). */
        pthread_mutex_unlock(&vm->sync->change_lock);
        vmmu__sync_block_end(b);
    }
    vmmu__sync_locked();
}

void vmmu__sync_change_unlock(struct vmmu_vm *vm)
{
    pthread_mutex_unlock(&vm->sync->change_lock);
    vmmu__sync_unlocked();
}

void vmmu__sync_grace_period(void)
{
    struct vmmu__blocked b = vmmu__sync_block_begin();
    vmmu__grace_period();
    vmmu__sync_block_end(b);
}

void vmmu__sync_map_lock(struct vmmu_vm *vm)
{
    while (pthread_mutex_trylock(&vm->lock) != 0) {
        struct vmmu__blocked b = vmmu__sync_block_begin();
        pthread_mutex_lock(&vm->lock);
        if (!b.vcpu && !b.reader) {
            vmmu__sync_block_end(b); /* a host thread's section goes on, as above */
            return;
        }
        /* Back online (which may act on requests, or park for an exclusive
         * section) without the lock, then try again: a parked vCPU thread
         * must not hold the map's lock, which the section may need. */
        pthread_mutex_unlock(&vm->lock);
        vmmu__sync_block_end(b);
    }
}

/* ---- Posting and waiting --------------------------------------------------------- */

static uint64_t slot_post(struct sync_slot *s, const struct sync_pending *p)
{
    slot_lock(s);
    pending_merge(&s->pend, p);
    uint64_t g = atomic_load_explicit(&s->req_gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->req_gen, g, memory_order_seq_cst);
    slot_unlock(s);
    return g;
}

static bool acked(struct sync_slot *s, uint64_t g)
{
    return atomic_load_explicit(&s->done_gen, memory_order_seq_cst) >= g ||
           atomic_load_explicit(&s->state, memory_order_seq_cst) != SYNC_ONLINE;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Wait until slot @s is not online, or (unless @offline) acted on
 * generation @g.  @self, if set, is the caller's own online vCPU: it keeps
 * acting on its requests while spinning (two vCPUs shooting each other
 * down must not deadlock) and goes offline while sleeping. */
static void wait_slot(struct sync_slot *s, uint64_t g, struct vmmu_vcpu *self, bool offline)
{
    double start = 0;
    for (unsigned i = 0;; i++) {
        if (offline ? atomic_load(&s->state) != SYNC_ONLINE : acked(s, g))
            return;
        if (self && atomic_load_explicit(&self->sync->req_gen, memory_order_relaxed) !=
                        self->sync->handled_gen)
            vmmu__sync_process(self);
        cpu_relax();
        if ((i & 63) == 63) {
            double t = now_ns();
            if (!start)
                start = t;
            else if (t - start > SYNC_SPIN_NS)
                break;
            else if (t - start > SYNC_YIELD_NS)
                sched_yield(); /* a target may be waiting for this core */
        }
    }
    struct vmmu__blocked blk = vmmu__sync_block_begin();
    atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
    for (;;) {
        uint32_t seq = atomic_load_explicit(&s->ack_seq, memory_order_seq_cst);
        if (offline ? atomic_load(&s->state) != SYNC_ONLINE : acked(s, g))
            break;
        struct timespec ts = {0, 1000000}; /* re-check every millisecond */
        syscall(SYS_futex, (uint32_t *)(void *)&s->ack_seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL,
                0);
    }
    atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_seq_cst);
    vmmu__sync_block_end(blk);
}

void vmmu__sync_post(struct vmmu_vm *vm, struct vmmu_vcpu *self, const struct vmmu_cpuset *targets,
                     const struct sync_pending *p, bool wait)
{
    struct vmmu_sync *sy = vm->sync;
    /* What the caller changed before posting (the map, page states) is
     * stored before the vCPUs are counted: a vCPU created meanwhile is
     * either counted here or reads the change in its first fill.  (Without
     * the fence the load of the count may pass those stores.) */
    atomic_thread_fence(memory_order_seq_cst);
    int n = atomic_load(&sy->nids);
    if (targets && (size_t)n > targets->nwords * 64)
        n = (int)(targets->nwords * 64);
    /* The generation posted to each target, for the wait.  Without
     * memory for them (or without a wait), none are kept: a wait then
     * waits for the generation current when it looks, which covers ours. */
    uint64_t stack_gens[64];
    uint64_t *gens = NULL;
    if (wait)
        gens = n <= 64 ? stack_gens : vmmu__malloc((size_t)n * sizeof(*gens));
    int self_id = self ? self->sync->id : -1;
    for (int id = 0; id < n; id++) {
        if (id == self_id || (targets && !vmmu_cpuset_has(targets, id)))
            continue;
        struct sync_slot *s = sync_slot_of(sy, id);
        if (!s || atomic_load_explicit(&s->state, memory_order_acquire) == SYNC_DEAD) {
            if (gens)
                gens[id] = 0;
            continue;
        }
        uint64_t g = slot_post(s, p);
        if (gens)
            gens[id] = g;
    }
    if (wait) {
        for (int id = 0; id < n; id++) {
            if (id == self_id || (targets && !vmmu_cpuset_has(targets, id)))
                continue;
            struct sync_slot *s = sync_slot_of(sy, id);
            if (!s)
                continue;
            uint64_t g = gens ? gens[id] : atomic_load(&s->req_gen);
            if (g)
                wait_slot(s, g, self, false);
        }
    }
    if (gens != stack_gens)
        free(gens);
}

/* ---- The public flush API -------------------------------------------------------- */

static int flush_to_pending(const struct vmmu_flush *f, struct sync_pending *p)
{
    memset(p, 0, sizeof(*p));
    switch (f->type) {
    case VMMU_FLUSH_ALL:
        p->want = SYNC_WANT_ALL;
        return 0;
    case VMMU_FLUSH_CONTEXTS:
        if (!f->contexts || (f->contexts & ~VMMU_FLUSH_CTX_ALL))
            return VMMU_EINVAL;
        p->want = SYNC_WANT_CONTEXTS;
        p->ctx_mask = f->contexts; /* same bit order as enum tlb_ctx_id */
        return 0;
    case VMMU_FLUSH_PCID:
        if (f->pcid < 0 || f->pcid > 4095)
            return VMMU_EINVAL;
        p->want = SYNC_WANT_PCIDS;
        p->pcids[0] = (uint16_t)f->pcid;
        p->npcids = 1;
        return 0;
    case VMMU_FLUSH_RANGE: {
        if (f->npages == 0 || f->pcid < VMMU_FLUSH_ANY_PCID || f->pcid > 4095)
            return VMMU_EINVAL;
        uint64_t va = f->va & VMMU_PAGE_MASK;
        if (f->npages > (~0ull - va) / VMMU_PAGE_SIZE + 1)
            return VMMU_EINVAL; /* wraps */
        if (f->npages > SYNC_MAX_PAGES) {
            p->want = SYNC_WANT_ALL;
            return 0;
        }
        p->want = SYNC_WANT_PAGES;
        for (uint64_t i = 0; i < f->npages; i++) {
            p->pages[i].va = va + i * VMMU_PAGE_SIZE;
            p->pages[i].pcid = f->pcid;
        }
        p->npages = (uint32_t)f->npages;
        return 0;
    }
    }
    return VMMU_EINVAL;
}

int vmmu_flush_local(struct vmmu_vcpu *self, const struct vmmu_flush *f)
{
    struct sync_pending p;
    if (!self || !f)
        return VMMU_EINVAL;
    int rc = flush_to_pending(f, &p);
    if (rc)
        return rc;
    vmmu__sync_apply(self, &p);
    return 0;
}

static int shootdown(struct vmmu_vm *vm, struct vmmu_vcpu *self, const struct vmmu_cpuset *targets,
                     const struct vmmu_flush *f, bool wait)
{
    struct sync_pending p;
    if (!vm || !f)
        return VMMU_EINVAL;
    if (self && (self->vm != vm || tls_vcpu != self))
        return VMMU_EINVAL;
    int rc = flush_to_pending(f, &p);
    if (rc)
        return rc;
    if (self) {
        /* A safe point for the caller: its own part, and whatever others
         * asked of it, at once. */
        if (!targets || vmmu_cpuset_has(targets, self->sync->id))
            vmmu__sync_apply(self, &p);
        if (atomic_load_explicit(&self->sync->req_gen, memory_order_relaxed) !=
            self->sync->handled_gen)
            vmmu__sync_process(self);
    }
    vmmu__sync_post(vm, self, targets, &p, wait);
    return 0;
}

int vmmu_shootdown_sync(struct vmmu_vm *vm, struct vmmu_vcpu *self,
                        const struct vmmu_cpuset *targets, const struct vmmu_flush *f)
{
    return shootdown(vm, self, targets, f, true);
}

int vmmu_shootdown_async(struct vmmu_vm *vm, struct vmmu_vcpu *self,
                         const struct vmmu_cpuset *targets, const struct vmmu_flush *f)
{
    return shootdown(vm, self, targets, f, false);
}
