/* SPDX-License-Identifier: MIT */
/*
 * The map's two handlers: the page-in handler (a pager's) and the device
 * handler (the device-model layer's), and the device access that calls
 * the latter.  How a handler is published and retired is told at struct
 * p2m_hook (p2m_internal.h).
 *
 * Why a record and a count, and not the grace period alone: a handler may
 * wait (for a device model, a file read), offline, so a caller is not in
 * a read-side section for the whole call and a grace period does not
 * wait for it.  The section covers only the load of the record and the
 * increment of its count; the count covers the call.  Why not a lock:
 * vCPUs call the handlers concurrently, and a reader-writer lock would
 * have them all write one lock word, and make a setter that waits for it
 * wait, online, behind a handler waiting for a device model.
 *
 * Two vCPUs racing a setter, as an example.  vCPU A loads the old record
 * and counts itself; the setter swaps the pointer; vCPU B loads the new
 * record.  The setter's grace period ends after A's next quiescent state,
 * so after A's increment: the setter then sees A's count and waits for
 * it.  B never saw the old record.  A vCPU that loaded the old record but
 * had not yet incremented when the setter looked would still be in its
 * section, and the grace period would not have ended.
 */
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/error.h"

/* Wait until nobody uses @h any more, then free it.  @h is no longer
 * published.  Offline on a vCPU's thread (and on an online reader that is
 * no vCPU's): a handler under way may wait for this vCPU (a synchronous
 * flush, a page-out's grace period). */
static void hook_retire(struct p2m_hook *h)
{
    /* Every caller that found @h took it in a read-side section: once a
     * grace period has passed, each of them is counted, and no new one
     * can come. */
    vmmu__sync_grace_period();
    if (atomic_load_explicit(&h->calls, memory_order_acquire)) {
        /* A call is under way; most return at once (a device access that
         * is not the handler's, say), some wait for a device model. */
        struct vmmu__blocked blk = vmmu__sync_block_begin();
        for (unsigned spins = 0; atomic_load_explicit(&h->calls, memory_order_acquire); spins++) {
            if (spins < 64) {
                sched_yield();
            } else {
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            }
        }
        vmmu__sync_block_end(blk);
    }
    free(h);
}

/* Install @fn/@opaque in @slot (fn NULL: none); with @only_if_none, only
 * where no handler is installed (VMMU_EINVAL otherwise).  Returns when the
 * old handler is neither running nor will be called. */
static int hook_set(struct vmmu_vm *vm, struct p2m_hook *_Atomic *slot, const struct p2m_hook *want,
                    bool only_if_none)
{
    if (vmmu__vm_refuses_changes(vm))
        return VMMU_EBUSY; /* the map's lock is the caller's own, or a device model waits */
    struct p2m_hook *h = NULL;
    if (want) {
        h = vmmu__malloc(sizeof(*h));
        if (!h)
            return VMMU_ENOMEM;
        h->fn = want->fn;
        h->opaque = want->opaque;
        atomic_init(&h->calls, 0);
    }
    int err = 0;
    vmmu__sync_map_lock(vm);
    struct p2m_hook *old = atomic_load_explicit(slot, memory_order_relaxed);
    if (old && vmmu__callback_uses(old))
        err = VMMU_EBUSY; /* called from inside it: it would wait for itself */
    else if (old && only_if_none)
        err = VMMU_EINVAL;
    else
        atomic_store_explicit(slot, h, memory_order_release);
    pthread_mutex_unlock(&vm->lock);
    if (err) {
        free(h);
        return err;
    }
    if (old)
        hook_retire(old);
    return 0;
}

int vmmu_p2m_set_pagein_handler(struct vmmu_vm *vm, vmmu_pagein_fn fn, void *opaque)
{
    if (!vm)
        return VMMU_EINVAL;
    struct p2m_hook want = {.fn.pagein = fn, .opaque = opaque};
    return hook_set(vm, &vm->p2m.pagein, fn ? &want : NULL, false);
}

int vmmu_p2m_set_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque)
{
    if (!vm)
        return VMMU_EINVAL;
    struct p2m_hook want = {.fn.device = fn, .opaque = opaque};
    return hook_set(vm, &vm->p2m.device, fn ? &want : NULL, false);
}

int vmmu__p2m_install_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque)
{
    struct p2m_hook want = {.fn.device = fn, .opaque = opaque};
    return hook_set(vm, &vm->p2m.device, &want, true);
}

bool vmmu__p2m_in_device_handler(struct vmmu_vm *vm)
{
    /* Only compared: if another thread replaced the record meanwhile, it
     * was not this thread's (a setter refuses to retire a record its own
     * thread runs, and waits for other threads' calls before it frees). */
    return vmmu__callback_uses(atomic_load_explicit(&vm->p2m.device, memory_order_acquire));
}

void vmmu__p2m_hooks_fini(struct vmmu_p2m *p2m)
{
    free(atomic_load_explicit(&p2m->pagein, memory_order_relaxed));
    free(atomic_load_explicit(&p2m->device, memory_order_relaxed));
    atomic_store_explicit(&p2m->pagein, NULL, memory_order_relaxed);
    atomic_store_explicit(&p2m->device, NULL, memory_order_relaxed);
}

int vmmu_p2m_device_access(struct vmmu_vm *vm, struct vmmu_device_req *req)
{
    if (!vm || !req || req->size == 0 || req->size > 8 || (req->size & (req->size - 1)) ||
        (req->gpa & (req->size - 1)))
        return VMMU_EINVAL;
    if (req->gpa >> VMMU_PAGE_SHIFT >= vm->p2m.gfn_limit)
        return VMMU_ERANGE;
    /* The region and the handler are read in a section of its own on a
     * host thread; the handler, which may wait for device models, runs
     * after it, its record counted as in use. */
    unsigned section = vmmu__read_begin();
    struct vmmu_region *r = p2m_resolve(&vm->p2m, req->gpa >> VMMU_PAGE_SHIFT, NULL);
    bool device = r && r->type == VMMU_MEM_DEVICE;
    struct p2m_hook *h = NULL;
    if (device) {
        req->offset = req->gpa - (r->gfn << VMMU_PAGE_SHIFT);
        req->region_id = r->id;
        req->region_opaque = r->opaque;
        h = p2m_hook_take(&vm->p2m.device);
    }
    vmmu__read_end(section);
    if (!device)
        return VMMU_EINVAL;
    if (!h)
        return VMMU_EDEVICE;
    struct vmmu__callback cb = {.vm = vm, .vcpu = vmmu__sync_current_vcpu(), .hook = h};
    vmmu__callback_enter(&cb);
    int rc = h->fn.device(h->opaque, req);
    vmmu__callback_leave(&cb);
    p2m_hook_put(h);
    return rc;
}
