/* SPDX-License-Identifier: MIT */
/*
 * Taking memory from the guest: the reclaim sequence every host-initiated
 * change runs (see sync_internal.h), the hook list of the consumers that
 * hold guest memory outside the TLB, and page-state changes.
 *
 * Finding the TLB entries.  A reclaimed page is known by its guest-physical
 * address; the TLB is indexed by virtual address, and the virtual addresses
 * that map the page are unknown (any number of guest mappings, in any
 * PCID).  Each vCPU therefore scans its own tables at its safe point for
 * entries whose guest-physical page is in the reclaimed ranges and drops
 * just those (plus its paging-structure caches if one of them references
 * a page-table page in the ranges).  The scan visits only the indices
 * filled since a context's last flush while that log holds (64 entries),
 * else the whole table; docs/sync.md compares it with flushing everything.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "tlb/tlb_internal.h"
#include "vmmu/error.h"

int vmmu__sync_init(struct vmmu_vm *vm)
{
    struct vmmu_sync *sy = vmmu__calloc(1, sizeof(*sy));
    if (!sy)
        return VMMU_ENOMEM;
    if (pthread_mutex_init(&sy->reg_lock, NULL)) {
        free(sy);
        return VMMU_ENOMEM;
    }
    if (pthread_mutex_init(&sy->hook_lock, NULL)) {
        pthread_mutex_destroy(&sy->reg_lock);
        free(sy);
        return VMMU_ENOMEM;
    }
    if (pthread_mutex_init(&sy->change_lock, NULL)) {
        pthread_mutex_destroy(&sy->hook_lock);
        pthread_mutex_destroy(&sy->reg_lock);
        free(sy);
        return VMMU_ENOMEM;
    }
    if (pthread_mutex_init(&sy->excl_lock, NULL)) {
        pthread_mutex_destroy(&sy->change_lock);
        pthread_mutex_destroy(&sy->hook_lock);
        pthread_mutex_destroy(&sy->reg_lock);
        free(sy);
        return VMMU_ENOMEM;
    }
    atomic_init(&sy->excl_owner, -1);
    vm->sync = sy;
    return 0;
}

bool vmmu__sync_in_use(struct vmmu_vm *vm)
{
    struct vmmu_sync *sy = vm->sync;
    if (!sy)
        return false;
    bool used = false;
    pthread_mutex_lock(&sy->reg_lock);
    for (size_t w = 0; w < sy->id_words && !used; w++)
        used = sy->id_used[w] != 0;
    pthread_mutex_unlock(&sy->reg_lock);
    /* Every hook but the pager's belongs to a device-model layer. */
    pthread_mutex_lock(&sy->hook_lock);
    size_t pager_hooks = atomic_load(&sy->pager) ? 1 : 0;
    used = used || sy->nhooks > pager_hooks;
    pthread_mutex_unlock(&sy->hook_lock);
    return used;
}

void vmmu__sync_fini(struct vmmu_vm *vm)
{
    struct vmmu_sync *sy = vm->sync;
    if (!sy)
        return;
    struct vmmu_pager *pg = atomic_load(&sy->pager);
    if (pg)
        vmmu__pager_free(pg);
    for (unsigned i = 0; i < SYNC_DIR; i++)
        free(atomic_load_explicit(&sy->dir[i], memory_order_relaxed));
    free(sy->id_used);
    free(sy->hooks);
    pthread_mutex_destroy(&sy->excl_lock);
    pthread_mutex_destroy(&sy->change_lock);
    pthread_mutex_destroy(&sy->hook_lock);
    pthread_mutex_destroy(&sy->reg_lock);
    free(sy);
    vm->sync = NULL;
}

/* ---- Hooks ----------------------------------------------------------------- */

int vmmu__reclaim_hook_add(struct vmmu_vm *vm, vmmu__reclaim_fn fn, void *opaque)
{
    if (!vm || !fn)
        return VMMU_EINVAL;
    struct vmmu_sync *sy = vm->sync;
    int rc = 0;
    pthread_mutex_lock(&sy->hook_lock);
    for (size_t i = 0; i < sy->nhooks; i++)
        if (sy->hooks[i].fn == fn && sy->hooks[i].opaque == opaque)
            rc = VMMU_EBUSY;
    if (!rc && sy->nhooks == sy->hook_cap) {
        size_t cap = sy->hook_cap ? sy->hook_cap * 2 : 4;
        struct sync_hook *grown = vmmu__realloc(sy->hooks, cap * sizeof(*grown));
        if (grown) {
            sy->hooks = grown;
            sy->hook_cap = cap;
        } else {
            rc = VMMU_ENOMEM;
        }
    }
    if (!rc)
        sy->hooks[sy->nhooks++] = (struct sync_hook){fn, opaque};
    pthread_mutex_unlock(&sy->hook_lock);
    return rc;
}

int vmmu__reclaim_hook_remove(struct vmmu_vm *vm, vmmu__reclaim_fn fn, void *opaque)
{
    if (!vm || !fn)
        return VMMU_EINVAL;
    struct vmmu_sync *sy = vm->sync;
    int rc = VMMU_ENOENT;
    /* Callbacks run under hook_lock: once this has the lock, none runs. */
    pthread_mutex_lock(&sy->hook_lock);
    for (size_t i = 0; i < sy->nhooks; i++) {
        if (sy->hooks[i].fn == fn && sy->hooks[i].opaque == opaque) {
            memmove(&sy->hooks[i], &sy->hooks[i + 1], (sy->nhooks - i - 1) * sizeof(sy->hooks[0]));
            sy->nhooks--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&sy->hook_lock);
    return rc;
}

static void call_hooks(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n,
                       enum vmmu__reclaim_why why)
{
    struct vmmu_sync *sy = vm->sync;
    /* Hooks may wait long (a device model acknowledging an invalidation
     * within its deadline): a vCPU thread waits offline, so shootdowns
     * meanwhile do not wait for it, and comes back online only without
     * the hook lock (coming online may park it). */
    struct vmmu__blocked blk = vmmu__sync_block_begin();
    pthread_mutex_lock(&sy->hook_lock);
    for (size_t i = 0; i < sy->nhooks; i++)
        sy->hooks[i].fn(sy->hooks[i].opaque, vm, ranges, n, why);
    pthread_mutex_unlock(&sy->hook_lock);
    vmmu__sync_block_end(blk);
}

/* ---- Reclaim ---------------------------------------------------------------- */

void vmmu__sync_flush_gpas(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n)
{
    if (!n)
        return;
    struct sync_pending p;
    vmmu__sync_set_gpas(&p, ranges, n);
    struct vmmu_vcpu *self = vmmu__sync_current_vcpu();
    if (self && self->vm != vm)
        self = NULL;
    if (self) {
        vmmu__sync_apply(self, &p); /* drops single entries only: safe anywhere */
        self->host_gen++;
    }
    vmmu__sync_post(vm, self, NULL, &p, true);
}

void vmmu__sync_reclaim(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n,
                        enum vmmu__reclaim_why why)
{
    vmmu__sync_flush_gpas(vm, ranges, n);
    call_hooks(vm, ranges, n, why);
    /* One grace period for the batch: readers that are not vCPUs (device
     * models, host threads reading guest memory) and vCPUs between safe
     * points that looked the pages up before they were unpublished. */
    vmmu__sync_grace_period();
}

/* ---- Page state ------------------------------------------------------------- */

int vmmu__gpa_ranges_check(const struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges,
                           size_t n)
{
    if (!ranges && n)
        return VMMU_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if ((ranges[i].gpa | ranges[i].size) & (VMMU_PAGE_SIZE - 1))
            return VMMU_EALIGN;
        if (!ranges[i].size)
            return VMMU_EINVAL;
        if (ranges[i].gpa >> vm->gpa_bits ||
            ranges[i].size > (1ull << vm->gpa_bits) - ranges[i].gpa)
            return VMMU_ERANGE;
    }
    return 0;
}

int vmmu_page_state_change(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n,
                           uint32_t set, uint32_t clear)
{
    if (!vm || ((set | clear) & ~VMMU_PAGE_USER_BITS))
        return VMMU_EINVAL;
    if (vmmu__in_dm_pagein())
        return VMMU_EBUSY; /* its holder may wait for this device model */
    int rc = vmmu__gpa_ranges_check(vm, ranges, n);
    if (rc)
        return rc;
    /* Check every page first so that a bad one changes nothing (in a
     * read-side section: the caller may be a host thread). */
    unsigned section = vmmu__read_begin();
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t gfn = ranges[i].gpa >> VMMU_PAGE_SHIFT, end = gfn + (ranges[i].size >> VMMU_PAGE_SHIFT);
        for (uint64_t g = gfn, next; g < end && !rc; g = next) {
            const struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &next);
            rc = !r ? VMMU_EHOLE : !r->state ? VMMU_EINVAL : 0;
        }
    }
    vmmu__read_end(section);
    if (rc)
        return rc;
    /* Inside a vmmu_region_foreach() callback this thread holds the map's
     * lock, and a page-out that holds the change lock waits for the map's
     * lock: waiting here for the change lock would deadlock with it.  The
     * change lock is not needed there: every byte changes atomically (as
     * in vmmu_page_state_update(), which takes no lock), and the map's
     * lock keeps the pages' regions in place. */
    bool nested = vmmu__vm_in_foreach(vm);
    if (!nested)
        vmmu__sync_change_lock(vm);
    for (size_t i = 0; i < n && !rc; i++)
        rc = vmmu__page_state_update(vm, ranges[i].gpa, ranges[i].size >> VMMU_PAGE_SHIFT, set,
                                     clear, VMMU_PAGE_USER_BITS);
    /* Narrowing changes make cached comparators too permissive: a page
     * now holding code must report writes, a page whose dirty bit was
     * cleared must be marked at its next write.  Widening ones (clearing
     * CODE, setting DIRTY) leave comparators stricter than needed, which
     * only sends accesses to the slow path (and there a CODE flag whose
     * mark is gone is dropped: src/tlb). */
    if ((set & VMMU_PAGE_CODE) || (clear & VMMU_PAGE_DIRTY))
        vmmu__sync_flush_gpas(vm, ranges, n);
    if (!nested)
        vmmu__sync_change_unlock(vm);
    return rc;
}
