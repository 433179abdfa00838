/* SPDX-License-Identifier: MIT */
/*
 * Inside the sync part: per-vCPU request slots, the vm's vCPU registry,
 * the reclaim hook list, and the entry points the P2M and the pager call.
 * Not installed.
 *
 * ## Reclaim hooks (for the access layer and the device models)
 *
 * Every host-initiated change that takes memory from the guest (region
 * removal or replacement, page-out, balloon) runs these steps, in this
 * order (a page-state change that narrows what an access may do frees
 * nothing and runs step 2 only: no hook, no grace period):
 *
 *   1. unpublish: the P2M shows the new state to every new lookup;
 *   2. every vCPU drops its TLB and paging-structure-cache entries that
 *      may map the ranges (synchronous request, acknowledged at the vCPU's
 *      next safe point, or at once for an offline vCPU);
 *   3. every registered reclaim hook is called with the ranges;
 *   4. one grace period (QSBR) for the whole batch;
 *   5. the old host pages are freed, written out, punched or protected.
 *
 * A hook is how a consumer that keeps its own references to guest memory
 * (prepared accesses and the replay latch of the access layer, the mapcache
 * of a device model) learns that some guest-physical ranges go away.  Its
 * callback runs on the thread making the change, with the ranges sorted
 * and page aligned, and MUST return only when the consumer holds nothing
 * derived from those ranges any more (drop cached host pointers, unmap
 * mappings, wait for in-flight users).  It cannot refuse: host safety does
 * not depend on a consumer's consent.  A consumer whose references live
 * only on vCPU threads between safe points needs no hook at all: step 2
 * already made every vCPU pass a safe point.
 *
 * A callback must not add or remove hooks, change the P2M, page out or in,
 * or issue synchronous flushes (the caller holds the change lock; doing so
 * deadlocks).  It may read the P2M.  Callbacks run one at a time, in the
 * order they were added, and never concurrently with each other.
 *
 * vmmu__reclaim_hook_add() returns 0, VMMU_EINVAL (NULL vm or callback) or
 * VMMU_ENOMEM; the same (callback, opaque) pair may be added only once
 * (VMMU_EBUSY otherwise).  vmmu__reclaim_hook_remove() returns 0 or
 * VMMU_ENOENT; once it returns, the callback is not running and will not
 * be called again.
 */
#ifndef VMMU_SYNC_INTERNAL_H
#define VMMU_SYNC_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmmu/sync.h"

struct vmmu_vm;
struct vmmu_vcpu;

/* Why ranges are reclaimed (passed to hooks, for diagnostics and for
 * consumers that treat a remap differently from a page-out). */
enum vmmu__reclaim_why {
    VMMU_RECLAIM_REMOVE = 0, /* a region was removed */
    VMMU_RECLAIM_REPLACE,    /* a region was replaced by another one */
    VMMU_RECLAIM_PAGEOUT,    /* the pager took the pages */
    VMMU_RECLAIM_BALLOON,    /* the balloon took the pages */
    VMMU_RECLAIM_STATE,      /* page state changed (not passed at present:
                              * page-state changes call no hook) */
};

typedef void (*vmmu__reclaim_fn)(void *opaque, struct vmmu_vm *vm,
                                 const struct vmmu_gpa_range *ranges, size_t nranges,
                                 enum vmmu__reclaim_why why);

int vmmu__reclaim_hook_add(struct vmmu_vm *vm, vmmu__reclaim_fn fn, void *opaque);
int vmmu__reclaim_hook_remove(struct vmmu_vm *vm, vmmu__reclaim_fn fn, void *opaque);

/* ---- P2M entry points (called by src/p2m/map.c) -------------------------- */

/* Steps 2-4 above for @ranges: flush every vCPU's entries for them, call
 * the hooks, wait one grace period.  Returns when nothing derived from the
 * old state can be used.  Safe from a host thread or from a vCPU thread at
 * a safe point (its own part is done at once). */
void vmmu__sync_reclaim(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n,
                        enum vmmu__reclaim_why why);

/* Step 2 only, synchronously: for changes that free nothing but make
 * cached entries wrong (a region added over a hole, a page marked as code,
 * a dirty bit cleared for dirty logging). */
void vmmu__sync_flush_gpas(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n);

/* Check the shape of a list of guest-physical ranges: 0, VMMU_EINVAL (NULL
 * list with n > 0, an empty range), VMMU_EALIGN (not page aligned) or
 * VMMU_ERANGE (beyond the vm's width).  What the pages are is the caller's
 * check. */
int vmmu__gpa_ranges_check(const struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges,
                           size_t n);

/* vm life cycle (src/core/vm.c). */
int vmmu__sync_init(struct vmmu_vm *vm);
void vmmu__sync_fini(struct vmmu_vm *vm);
/* Whether a vCPU or a device-model layer still refers to @vm (a pager
 * does not count: vmmu_vm_destroy() frees it). */
bool vmmu__sync_in_use(struct vmmu_vm *vm);

/* vCPU life cycle (src/tlb/vcpu.c): give the vCPU an id and a slot, and
 * take them back (VMMU_EBUSY, nothing changed, while another thread holds
 * the vCPU). */
int vmmu__sync_vcpu_attach(struct vmmu_vcpu *v);
int vmmu__sync_vcpu_detach(struct vmmu_vcpu *v);

/* ---- Requests ------------------------------------------------------------ */

/* What one slot has been asked to drop since it last acted; requests merge
 * here.  Lists that overflow escalate to a full flush, which is always
 * correct (a TLB may forget anything). */
#define SYNC_MAX_PAGES 16
#define SYNC_MAX_PCIDS 8
#define SYNC_MAX_GPAS 8

#define SYNC_WANT_ALL (1u << 0)      /* everything, globals, every PCID */
#define SYNC_WANT_CONTEXTS (1u << 1) /* ctx_mask of every PCID */
#define SYNC_WANT_PCIDS (1u << 2)    /* non-global entries of pcids[] */
#define SYNC_WANT_PAGES (1u << 3)    /* pages[] */
#define SYNC_WANT_GPAS (1u << 4)     /* every entry whose gpa is in gpas[] */

struct sync_page_req {
    uint64_t va;   /* page aligned */
    int32_t pcid;  /* -1: every PCID */
};

struct sync_pending {
    uint32_t want;
    uint32_t ctx_mask;
    uint32_t npcids, npages, ngpas;
    /* Pages first: a one-page request then lives in the cache line that
     * also holds the slot's lock and request generation. */
    struct sync_page_req pages[SYNC_MAX_PAGES];
    uint16_t pcids[SYNC_MAX_PCIDS];
    struct vmmu_gpa_range gpas[SYNC_MAX_GPAS];
};

enum sync_state { SYNC_DEAD = 0, SYNC_OFFLINE = 1, SYNC_ONLINE = 2 };

/*
 * One vCPU id's slot.  Slots live until the vm is destroyed (ids are
 * reused), so a requester never touches freed memory even if the vCPU is
 * destroyed while it posts or waits.  Three cache lines: what requesters
 * write, what the vCPU publishes, and what only the vCPU's thread uses.
 */
struct sync_slot {
    /* Requesters (and the owner when it takes the requests). */
    alignas(64) atomic_flag lock;
    _Atomic uint64_t req_gen; /* bumped by every request, under lock */
    struct sync_pending pend;

    /* Published by the owner. */
    alignas(64) _Atomic uint64_t done_gen; /* requests up to this one are done */
    _Atomic int state;                     /* enum sync_state */
    _Atomic uint32_t ack_seq;              /* futex word for sleeping requesters */
    _Atomic int sleepers;
    /* Taken by vmmu_vcpu_online() and given back by vmmu_vcpu_offline()
     * (or the thread's exit, or vmmu_vcpu_destroy()): the vCPU belongs to
     * one thread meanwhile, also while vmmu takes it offline inside a
     * wait (state is then OFFLINE, but no other thread may run it). */
    _Atomic int claimed;

    /* The owner's thread only. */
    alignas(64) uint64_t handled_gen;
    struct vmmu_vcpu *vcpu; /* set and cleared under the registry lock */
    int id;
};

/* Slots are allocated in chunks; the directory has a fixed number of
 * chunk pointers, so up to SYNC_DIR * SYNC_CHUNK vCPUs per vm. */
#define SYNC_CHUNK 64
#define SYNC_DIR 1024
_Static_assert(SYNC_DIR * SYNC_CHUNK == VMMU_VCPU_ID_MAX + 1, "the id directory holds every vCPU id");

struct sync_hook {
    vmmu__reclaim_fn fn;
    void *opaque;
};

struct vmmu_sync {
    pthread_mutex_t reg_lock; /* vCPU ids and slot chunks */
    struct sync_slot *_Atomic dir[SYNC_DIR];
    _Atomic int nids;         /* ids ever handed out (slots 0..nids-1 exist) */
    uint64_t *id_used;        /* bitmap over ids, under reg_lock */
    size_t id_words;

    pthread_mutex_t hook_lock;
    struct sync_hook *hooks;
    size_t nhooks, hook_cap;

    /* Serialises host-initiated changes made through the sync part. */
    pthread_mutex_t change_lock;

    /* Exclusive sections (vmmu__sync_exclusive_begin()), one at a time
     * under excl_lock: excl_on while one runs, excl_owner the slot id of
     * its vCPU (-1: none), excl_seq bumped as each ends (the futex word
     * parked vCPUs sleep on, after a short spin). */
    pthread_mutex_t excl_lock;
    _Atomic int excl_on;
    _Atomic int excl_owner;
    _Atomic uint32_t excl_seq;
    _Atomic int excl_sleepers; /* parked vCPUs asleep on excl_seq */

    struct vmmu_pager *_Atomic pager; /* the vm's pager, if any */
};

/* The slot of id @id, or NULL if never allocated. */
static inline struct sync_slot *sync_slot_of(struct vmmu_sync *s, int id)
{
    if (id < 0 || id >= SYNC_DIR * SYNC_CHUNK)
        return NULL;
    struct sync_slot *chunk = atomic_load_explicit(&s->dir[id / SYNC_CHUNK], memory_order_acquire);
    return chunk ? &chunk[id % SYNC_CHUNK] : NULL;
}

/* The calling thread's online vCPU, or NULL (set by vmmu_vcpu_online()). */
struct vmmu_vcpu *vmmu__sync_current_vcpu(void);

/* Act on @v's pending requests now (on its own thread). */
void vmmu__sync_process(struct vmmu_vcpu *v);

/* What vmmu__sync_block_begin() took offline: the calling thread's online
 * vCPU, or else its grace-period reader if that was online (a thread of
 * vmmu's own that reads the map, such as a device-model service thread),
 * or nothing. */
struct vmmu__blocked {
    struct vmmu_vcpu *vcpu;
    bool reader;
    bool host; /* a host thread's own section (vmmu__read_pause()) */
};

/* Around a blocking wait on any thread: take its online vCPU (or its
 * online reader, or its own read-side section) offline, so that nobody waits for it, and back online
 * afterwards (a vCPU acting on what arrived meanwhile).  The wait may be
 * in the middle of an access: it is no safe point, but what the thread
 * found in the map before may be gone after it (a grace period may pass),
 * so it moves vmmu_vcpu::host_gen and vmmu__reader_sections(). */
struct vmmu__blocked vmmu__sync_block_begin(void);
void vmmu__sync_block_end(struct vmmu__blocked b);

/* A function the part above (the access layer) registers to learn of each
 * vCPU's safe points (vmmu_vcpu_safepoint(), vmmu_vcpu_offline()): it ends
 * what is valid only until then (prepared accesses, probe pointers).  Called
 * on the vCPU's thread.  Registered by function pointer because sync never
 * calls a part above it by name; registering the same function again is a
 * no-op, NULL removes it. */
typedef void (*vmmu__safepoint_fn)(struct vmmu_vcpu *v);
void vmmu__sync_set_safepoint_fn(vmmu__safepoint_fn fn);

/* Exclusive sections: while one runs, no other vCPU of the vm is online
 * (each parks, offline, at its next safe point, and none comes online), so
 * the caller may update guest memory with plain loads and stores that
 * every other vCPU's atomics see whole: a locked access whose operand
 * crosses a page or a 16-byte boundary, where a real CPU takes a bus lock.
 * Call begin at a safe point of the calling thread's online vCPU, if it
 * has one: it may go offline while another section runs, which ends its
 * prepared accesses and probe pointers as a blocking page-in does, and it
 * acts on its own requests while the others park; so translate after it.
 * Sections do not nest; a thread without an online vCPU may run one. */
void vmmu__sync_exclusive_begin(struct vmmu_vm *vm);
void vmmu__sync_exclusive_end(struct vmmu_vm *vm);

/* Lock the change lock without deadlocking against a vCPU this thread
 * runs: a vCPU thread waits for it offline and comes back online (which
 * may park it) only without it, as vmmu__sync_map_lock() does; while it
 * holds it, its vCPU does not park, and the unlock parks it if a section
 * runs (vmmu__sync_locked()).  Lock and unlock only where the thread may
 * go offline. */
void vmmu__sync_change_lock(struct vmmu_vm *vm);
void vmmu__sync_change_unlock(struct vmmu_vm *vm);

/* Wait for a grace period, offline if the caller is a vCPU thread (so a
 * flush that waits for this vCPU meanwhile is not held up: it does not
 * count as online).  What vmmu's own waits use; vmmu__grace_period()
 * alone only for threads that are no vCPU's. */
void vmmu__sync_grace_period(void);

/* Lock vm->lock (the map's lock; unlock it with pthread_mutex_unlock).
 * Every path a vCPU thread may take between instructions or from inside
 * an access takes it this way: its holder may wait for every online vCPU
 * (a synchronous shootdown or a page-state change from inside
 * vmmu_region_foreach()), so a vCPU thread waits for it offline, and
 * comes back online, which may park it, only without it.  Never from
 * inside a TLB fill: coming back online acts on flushes, and the fill
 * would then cache what it read before them (docs/sync.md). */
void vmmu__sync_map_lock(struct vmmu_vm *vm);

/* The calling thread took (vmmu__sync_locked()) or released
 * (vmmu__sync_unlocked()) a lock of vmmu's that an exclusive section's
 * code may need: the change lock, or the map's lock for the callbacks of
 * vmmu_region_foreach().  While it holds one, its vCPU does not park for
 * an exclusive section; releasing the last parks it if one runs (so call
 * that only where the thread may go offline: between instructions, or in
 * a wait of an access that looks things up again afterwards). */
void vmmu__sync_locked(void);
void vmmu__sync_unlocked(void);

/* Post @p to every live vCPU in @targets (NULL: all) except @self and, if
 * @wait, return when each has acted or gone offline. */
void vmmu__sync_post(struct vmmu_vm *vm, struct vmmu_vcpu *self, const struct vmmu_cpuset *targets,
                     const struct sync_pending *p, bool wait);

/* Apply @p to @v's TLB on its own thread.  A request of guest-physical
 * ranges only drops single entries (never resizes a table), so it is safe
 * even in the middle of the vCPU's own fill. */
void vmmu__sync_apply(struct vmmu_vcpu *v, const struct sync_pending *p);

/* Free a pager left behind by vmmu_vm_destroy() (no page-in: the guest's
 * memory is going away). */
void vmmu__pager_free(struct vmmu_pager *pg);

/* How the pager reads a page back from its backing file: pread(), unless
 * a test points it elsewhere to make the read fail (a failed page-in has
 * no other deterministic cause).  Set it only while no pager is in use. */
extern ssize_t (*vmmu__pager_pread)(int fd, void *buf, size_t n, off_t offset);

/* For tests of races with the map: if set, called by a page-out for each
 * page it is about to mark paged out (the page's region looked up, the
 * map's lock held, see evict() in pager.c).  NULL otherwise; set it only
 * while no page-out runs. */
extern void (*vmmu__pager_evict_hook)(struct vmmu_vm *vm, uint64_t gfn);

/* Fill @p with a request for @ranges (any number; more than SYNC_MAX_GPAS
 * are joined across their smallest gaps). */
void vmmu__sync_set_gpas(struct sync_pending *p, const struct vmmu_gpa_range *ranges, size_t n);

#endif /* VMMU_SYNC_INTERNAL_H */
