/* SPDX-License-Identifier: MIT */
/* The vm object's layout, shared inside the library.  Not installed. */
#ifndef VMMU_VM_INTERNAL_H
#define VMMU_VM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "p2m/p2m_internal.h"
#include "vmmu/vm.h"

struct vmmu_vm {
    unsigned gpa_bits;
    char name[32];

    /* Serialises every change to the map; readers never take it. */
    pthread_mutex_t lock;
    /* Set while vmmu_region_foreach() runs on the thread in foreach_owner,
     * so that a change from inside the callback fails instead of
     * deadlocking.  Both are read without the lock by every thread that
     * asks whether it is that thread, while another thread's foreach may
     * be setting them: both are atomic. */
    _Atomic int in_foreach;
    _Atomic(pthread_t) foreach_owner;

    /* One memfd for all RAM/ROM vmmu allocates, in 2 MiB granules: a
     * region takes the first free span that fits (memfd_free, sorted by
     * offset, adjacent spans merged), else the space from memfd_next up.
     * The file is sparse: a removed region is punched out, so only
     * touched, live pages use host memory, and a span reused reads as
     * zeros.  Under the map's lock. */
    int memfd;
    uint64_t memfd_next, memfd_size; /* the file never shrinks */
    struct vmmu_memfd_span {
        uint64_t off, len;
    } *memfd_free;
    unsigned memfd_nfree, memfd_capfree;
    /* What vmmu_vm_memfd() answers: -1 until a region that lives in the
     * memfd has been added (an addition that created the file and then
     * failed leaves it -1).  Read without the lock. */
    _Atomic int memfd_public;

    struct vmmu_p2m p2m;

    /* Cross-vCPU invalidation and reclaim: vCPU registry, hooks, pager
     * (src/sync/sync_internal.h). */
    struct vmmu_sync *sync;

    /* The pages out-of-process device models wrote, by memfd page
     * (vmmu/dmproto.h, VMMU_DM_HELLO_DIRTY): made with the first remote
     * server, then kept until the vm goes; NULL before. */
    _Atomic(struct vmmu_dev_dirty *) dev_dirty;
};

/* How many bytes of its memfd a vm may use: what the device dirty bitmap
 * covers (VMMU_DM_DIRTY_PAGES pages).  Tests lower it to reach the limit
 * without mapping 16 TiB; set it only while no region is being added. */
extern uint64_t vmmu__memfd_limit;
/* How a removed region's pages are punched out of the memfd: fallocate(),
 * unless a test makes it fail (nothing else does deterministically).  Set
 * it only while no region is being removed. */
extern int (*vmmu__memfd_fallocate)(int fd, int mode, off_t offset, off_t len);

struct vmmu_dev_dirty {
    int fd;
    _Atomic uint64_t *words; /* VMMU_DM_DIRTY_PAGES bits */
};

/* The device dirty bitmap of @vm, made if there is none yet; NULL if it
 * cannot be (errno says why). */
struct vmmu_dev_dirty *vmmu__dev_dirty_get(struct vmmu_vm *vm);

/* Take and clear the device dirty bits of @r's pages into @bitmap (bit i
 * for page i of the region; bits already set stay); the number of pages
 * newly set.  @r must be RAM in the vm's memfd. */
uint64_t vmmu__dev_dirty_take(struct vmmu_vm *vm, const struct vmmu_region *r, uint64_t *bitmap);

/* Whether the calling thread is inside a vmmu_region_foreach() callback on
 * @vm, and so holds vm->lock: whatever would take the lock again refuses
 * with VMMU_EBUSY instead of deadlocking. */
static inline bool vmmu__vm_in_foreach(struct vmmu_vm *vm)
{
    return atomic_load(&vm->in_foreach) &&
           pthread_equal(atomic_load(&vm->foreach_owner), pthread_self());
}

/* Set (nesting) while the calling thread serves a device model's request
 * for paged-out memory (dm/pagein.c), page-in handler included: the
 * device model waits for the answer and acknowledges no invalidation
 * meanwhile, so whatever waits for device models (an invalidation, a
 * page-out's or a region change's reclaim), or for the change lock whose
 * holder may, would wait for the thread itself. */
void vmmu__dm_pagein_enter(void);
void vmmu__dm_pagein_leave(void);
bool vmmu__in_dm_pagein(void);

/* One callback vmmu runs on the calling thread (an MMIO callback, the
 * page-in, device or code handler, a device model's in-process callback),
 * with what the call that runs it goes on using once it returns: the vm,
 * the vCPU whose access it is (NULL for the host's, or when an outer
 * frame names it), the device-model layer and the server (NULL if none),
 * and the record of the page-in or device handler it runs (struct
 * p2m_hook: its setter refuses to wait for the thread itself).
 * Frames nest: a callback may make an access whose own callback runs.
 * The destroy functions refuse, with VMMU_EBUSY and nothing freed, an
 * object a frame of their thread names, as they refuse inside a
 * vmmu_region_foreach() callback: the caller would go on in freed memory.
 * Another thread's callbacks are not seen: destroying what another thread
 * uses is the caller's mistake, as the destroy functions say. */
struct vmmu__callback {
    const void *vm, *vcpu, *dm, *server, *hook;
    struct vmmu__callback *outer;
};
void vmmu__callback_enter(struct vmmu__callback *cb);
void vmmu__callback_leave(struct vmmu__callback *cb);
/* Whether a callback running on this thread was called for @obj. */
bool vmmu__callback_uses(const void *obj);
/* (src/sync) A frame naming @vcpu was left: a vCPU taken offline by hand
 * inside its own access is given up once no frame of it is left. */
struct vmmu_vcpu;
void vmmu__sync_callback_left(const struct vmmu_vcpu *vcpu);

/* Whether a call on this thread that changes the map or page states, or
 * waits for device models, must refuse with VMMU_EBUSY: inside a
 * vmmu_region_foreach() callback (the thread holds the map's lock) or
 * while it serves a device model's page-in (above). */
static inline bool vmmu__vm_refuses_changes(struct vmmu_vm *vm)
{
    return vmmu__vm_in_foreach(vm) || vmmu__in_dm_pagein();
}

/* Wait until every registered reader has passed a quiescent state
 * (liburcu QSBR).  The primitive the map uses before freeing what it
 * unpublished; the sync part builds vCPU flushes on the same grace period. */
void vmmu__grace_period(void);

/* The reader side of the grace period, for threads that use the map while
 * others change it (vCPU threads; the vCPU API wraps these).  A registered
 * reader holds nothing it got from the map across vmmu__reader_quiescent()
 * or while offline. */
void vmmu__reader_register(void);
void vmmu__reader_unregister(void);
void vmmu__reader_quiescent(void);
void vmmu__reader_offline(void);
void vmmu__reader_online(void);

/* Online, registering the calling thread first if it never was (it is
 * then unregistered when it exits).  For threads the user owns: a vCPU's
 * (vmmu_vcpu_online()), a host thread's guest-physical access. */
void vmmu__reader_enter(void);

/* Whether the calling thread is a registered reader that is online now
 * (what a wait inside vmmu takes offline, see vmmu__sync_block_begin()). */
bool vmmu__reader_is_online(void);

/* Whether the calling thread is in a read-side section of its own
 * (below): a callback that may wait (the page-in handler, an MMIO
 * callback) then runs outside it (vmmu__read_pause()), and what was found
 * before it is looked up again after it (vmmu__reader_sections()). */
extern _Thread_local bool vmmu__read_own;

/* (grace_host.c) A host thread's read-side section: liburcu's bulletproof
 * flavour, whose read side costs a few instructions; the grace period
 * waits for it as for the QSBR readers.  The thread is registered on its
 * first section and unregistered when it exits.  vmmu__host_held: the
 * calling thread holds one now. */
extern _Thread_local bool vmmu__host_held;
void vmmu__host_read_lock(void);
void vmmu__host_read_unlock(void);
void vmmu__host_synchronize(void);
/* (grace.c) A section of the calling thread ended: counted for
 * vmmu__reader_sections(), and under ThreadSanitizer the release the
 * grace period acquires. */
void vmmu__reader_section_ended(void);

/* A read-side section of its own for a call that reads the map on a
 * thread that is not an online reader (a host thread's lookup, access,
 * walk or page-state change; a call from a callback that runs outside its
 * caller's section): a removal's grace period then waits for it before
 * freeing what it read.  On an online thread (a running vCPU), or inside
 * a section already held, both are a test or two.  Nothing between them
 * may wait for a grace period or for the vCPUs, except outside the
 * section (vmmu__read_pause()).  Returns the token vmmu__read_end()
 * takes. */
static inline unsigned vmmu__read_begin(void)
{
    unsigned token = vmmu__read_own ? 2u : 0u;
    if (vmmu__host_held || vmmu__reader_is_online())
        return token;
    vmmu__host_read_lock();
    vmmu__read_own = true;
    return token | 1u;
}

static inline void vmmu__read_end(unsigned token)
{
    if (token & 1u)
        vmmu__host_read_unlock();
    vmmu__read_own = (token & 2u) != 0;
}

/* Around a callback that may wait (an MMIO callback, a page-in handler)
 * made inside a thread's own section: the callback runs outside it, and
 * the section goes on after it (a new one: what was found before is
 * looked up again).  vmmu__read_pause() says whether it ended one, for
 * vmmu__read_resume(). */
static inline bool vmmu__read_pause(void)
{
    if (!(vmmu__read_own && vmmu__host_held))
        return false;
    vmmu__host_read_unlock();
    return true;
}

static inline void vmmu__read_resume(bool paused)
{
    if (paused)
        vmmu__host_read_lock();
}

/* How many read-side sections the calling thread has ended (gone offline,
 * passed a quiescent state, waited for a grace period).  A caller that
 * holds something it got from the map across a call that may wait (a
 * page-in handler) compares this before and after: if it moved, what it
 * holds may be gone, and it looks it up again. */
uint64_t vmmu__reader_sections(void);

#endif /* VMMU_VM_INTERNAL_H */
