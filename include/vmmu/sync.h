/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/sync.h
 * @brief Cross-vCPU invalidation: vCPU online/offline and safe points,
 *        remote TLB flushes (synchronous and asynchronous), and the
 *        host-initiated P2M changes that take memory from the guest.
 *
 * ## The contract
 *
 * A vCPU runs on one thread of the user's.  That thread
 * calls vmmu_vcpu_online() before it runs guest code, vmmu_vcpu_safepoint()
 * between instructions or blocks, and vmmu_vcpu_offline() before it halts,
 * blocks or leaves guest execution for a while.  **Nothing derived from a
 * translation (a host pointer from the TLB or the P2M, a cached entry, a
 * prepared access) is held across a safe point or while offline.**  (vmmu
 * itself may take the vCPU offline while one of its calls waits, in the
 * middle of an access: what it holds then, it looks up again afterwards;
 * access.h, "Host pointers", says what that means for the caller.)  In
 * exchange vmmu guarantees that when a synchronous flush or a P2M change
 * returns, no vCPU uses the old translation again.
 *
 * Offline vCPUs are never woken: requests to them are recorded and acted
 * on by vmmu_vcpu_online() before the vCPU runs again.  An online vCPU
 * must reach a safe point regularly; a synchronous request waits for it.
 *
 * ## Requests and generations
 *
 * Each vCPU has a request generation that requesters bump after merging
 * what they want dropped into the vCPU's pending set, and a done
 * generation the vCPU publishes after acting on everything up to it.  A
 * synchronous requester waits until the done generation reaches its own
 * (spinning first, then sleeping); several requests posted before the
 * vCPU's next safe point merge into one flush.  The safe point's check is
 * one load of the vCPU's own request generation.
 *
 * Functions that take a @p self vCPU are safe points for it: call them on
 * its thread between instructions.  The part of a request that concerns
 * @p self is done at once, before the call returns.
 */
#ifndef VMMU_SYNC_H
#define VMMU_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "p2m.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vcpu;
struct vmmu_pager;

/** A guest-physical range: [gpa, gpa + size), page aligned. */
struct vmmu_gpa_range {
    uint64_t gpa;
    uint64_t size;
};

/* ---- vCPU life cycle ---------------------------------------------------- */

/** The largest vCPU id: a vm has at most VMMU_VCPU_ID_MAX + 1 vCPUs. */
#define VMMU_VCPU_ID_MAX 65535

/**
 * The vCPU's id: a small integer (0..VMMU_VCPU_ID_MAX), unique among the
 * vm's live vCPUs, stable for the vCPU's life, reused after
 * vmmu_vcpu_destroy().
 * @return the id (>= 0) or VMMU_EINVAL for NULL.
 */
int vmmu_vcpu_id(const struct vmmu_vcpu *vcpu);

/**
 * The calling thread starts (or resumes) running @p vcpu: it becomes a
 * registered grace-period reader (until the thread exits) and the vCPU
 * acts on every request posted while it was offline before this returns.
 * One thread runs at most one online vCPU at a time.
 * @return 0; VMMU_EINVAL (NULL); VMMU_EBUSY (already online, on this
 *         thread or another, including while vmmu takes it offline inside
 *         a wait on its thread, or a callback of its access took it
 *         offline (vmmu_vcpu_offline()); or this thread runs another
 *         online vCPU).
 *         Of two threads that call this at once, one gets the vCPU.
 */
int vmmu_vcpu_online(struct vmmu_vcpu *vcpu);

/**
 * The vCPU stops running guest code (halt, blocking I/O, exit to the
 * user's loop for a while).  Requests are no longer waited for; they are
 * acted on at the next vmmu_vcpu_online().  Call it on the vCPU's thread.
 * Called inside a callback of the vCPU's own access (a page-in handler
 * about to block, say), the vCPU stays this thread's until that access
 * is over, since the access goes on once the callback returns: no other
 * thread may put it online or destroy it meanwhile (VMMU_EBUSY), and this
 * thread may put it online again, inside the callback or after it.
 * @return 0; VMMU_EINVAL (NULL, or not online on this thread).
 */
int vmmu_vcpu_offline(struct vmmu_vcpu *vcpu);

/**
 * A safe point: act on pending requests, then report a quiescent state.
 * Costs one load and one compare when nothing is pending and no grace
 * period is waiting.  Call it on the vCPU's thread while it is online.
 * @return 0 or VMMU_EINVAL (NULL, or not online on this thread).
 */
int vmmu_vcpu_safepoint(struct vmmu_vcpu *vcpu);

/* ---- vCPU sets ---------------------------------------------------------- */

/** A set of vCPU ids (0..VMMU_VCPU_ID_MAX); it grows as ids are added. */
struct vmmu_cpuset;

/** Create an empty set.  @return 0, VMMU_EINVAL, VMMU_ENOMEM. */
int vmmu_cpuset_create(struct vmmu_cpuset **out);
/** Destroy a set (NULL is a no-op). */
void vmmu_cpuset_destroy(struct vmmu_cpuset *set);
/** Add id @p id.  @return 0, VMMU_EINVAL (NULL, id < 0 or above
 *  VMMU_VCPU_ID_MAX), VMMU_ENOMEM. */
int vmmu_cpuset_add(struct vmmu_cpuset *set, int id);
/** Remove id @p id (absent is fine).  @return 0 or VMMU_EINVAL. */
int vmmu_cpuset_del(struct vmmu_cpuset *set, int id);
/** 1 if @p id is in the set, 0 if not (or NULL set, negative id). */
int vmmu_cpuset_has(const struct vmmu_cpuset *set, int id);
/** Remove every id.  @return 0 or VMMU_EINVAL. */
int vmmu_cpuset_clear(struct vmmu_cpuset *set);
/** Number of ids in the set (0 for NULL). */
size_t vmmu_cpuset_count(const struct vmmu_cpuset *set);

/* ---- Flush requests ----------------------------------------------------- */

/** What a flush drops. */
enum vmmu_flush_type {
    VMMU_FLUSH_ALL = 0,  /**< every entry, globals included, every PCID */
    VMMU_FLUSH_CONTEXTS, /**< the contexts in @ref vmmu_flush::contexts, every PCID */
    VMMU_FLUSH_PCID,     /**< the non-global entries of PCID @ref vmmu_flush::pcid */
    VMMU_FLUSH_RANGE,    /**< pages [va, va + npages * 4 KiB) in one PCID or all */
};

/** Context bits for VMMU_FLUSH_CONTEXTS. */
#define VMMU_FLUSH_CTX_USER (1u << 0)   /**< CPL 3 */
#define VMMU_FLUSH_CTX_SUP (1u << 1)    /**< CPL 0-2, EFLAGS.AC=0 */
#define VMMU_FLUSH_CTX_SUP_AC (1u << 2) /**< CPL 0-2, EFLAGS.AC=1 */
#define VMMU_FLUSH_CTX_ALL 7u

/** Every PCID, for VMMU_FLUSH_RANGE. */
#define VMMU_FLUSH_ANY_PCID (-1)

/**
 * A flush request.  VMMU_FLUSH_RANGE drops the pages' entries, global
 * ones included (as INVLPG does), and the paging-structure caches of the
 * PCIDs it names; a range of more than a few pages becomes a flush of
 * everything, which is always correct.
 */
struct vmmu_flush {
    enum vmmu_flush_type type;
    unsigned contexts; /**< CONTEXTS: VMMU_FLUSH_CTX_* bits, non-zero */
    int pcid;          /**< PCID: 0..4095; RANGE: 0..4095 or VMMU_FLUSH_ANY_PCID */
    uint64_t va;       /**< RANGE: first page (rounded down) */
    uint64_t npages;   /**< RANGE: pages, non-zero */
};

/**
 * Guest "local only" flush: drops what @p f names in @p self's TLB and
 * nobody else's.  The host never relies on it: every change that takes
 * memory from the guest flushes every vCPU itself, so a guest that skips
 * a remote flush can only see its own stale view, never reach memory the
 * host reclaimed.
 * @return 0 or VMMU_EINVAL (NULL, bad request).
 */
int vmmu_flush_local(struct vmmu_vcpu *self, const struct vmmu_flush *f);

/**
 * Remote flush, synchronous: returns when every vCPU in @p targets (NULL:
 * every vCPU of @p vm) has dropped what @p f names or is offline (it will
 * drop it before it runs again).  @p self (may be NULL for a host thread)
 * is the calling vCPU: its part is done at once and the call is a safe
 * point for it; it may be in @p targets or not.  Unknown ids are skipped.
 * @return 0 or VMMU_EINVAL (NULL vm or @p f, bad request, @p self of
 *         another vm or not online on the calling thread).
 */
int vmmu_shootdown_sync(struct vmmu_vm *vm, struct vmmu_vcpu *self,
                        const struct vmmu_cpuset *targets, const struct vmmu_flush *f);

/**
 * Remote flush, asynchronous: posts the request and returns at once;
 * every target acts on it at its next safe point (or when it next comes
 * online).  @p self's part, if it is a target, is done at once.
 * @return as vmmu_shootdown_sync().
 */
int vmmu_shootdown_async(struct vmmu_vm *vm, struct vmmu_vcpu *self,
                         const struct vmmu_cpuset *targets, const struct vmmu_flush *f);

/* ---- Host-initiated P2M changes ----------------------------------------- */

/*
 * Each of these returns only when nothing derived from the old state can
 * be used: every vCPU dropped the TLB and paging-structure-cache entries
 * that may map the pages (found by guest-physical address in each vCPU's
 * own tables at its safe point), every device-model and access-layer
 * consumer dropped its references, and one grace period passed for the
 * whole batch.  Call them from a host thread, or from a vCPU thread at a
 * safe point.  (vmmu_region_remove() in vmmu/p2m.h does the same.)  A vCPU
 * thread that holds one of vmmu's locks while they wait (the change lock
 * of a page-state change or a page-out, the map's lock of a
 * vmmu_region_foreach() callback) does not park for another vCPU's split
 * lock until it has released it.
 */

/**
 * Replace the region @p id by a new one over the same guest-physical
 * range (a remap: new backing memory, or a new type), atomically: a
 * concurrent lookup sees the old region or the new one, never a hole.
 * The old region's memory is released as by vmmu_region_remove().
 * @param desc the new region, checked first as vmmu_region_add() checks
 *        it; then desc->gpa and desc->size must equal the old region's
 *        (VMMU_EINVAL otherwise).
 * @param new_id receives the new region's id; may be NULL.
 * @return 0; VMMU_EINVAL (NULL @p vm or @p desc, a descriptor
 *         vmmu_region_add() refuses with VMMU_EINVAL, or a range other than
 *         the old region's); VMMU_EALIGN (desc->gpa or desc->size not page
 *         aligned); VMMU_ERANGE (beyond the vm's width); those three before
 *         VMMU_ENOENT (no region @p id); VMMU_EBUSY (from inside
 *         vmmu_region_foreach()); VMMU_ENOMEM; VMMU_ESYS.  On failure the
 *         map is unchanged.
 */
int vmmu_region_replace(struct vmmu_vm *vm, uint32_t id, const struct vmmu_region_desc *desc,
                        uint32_t *new_id);

/**
 * Change page state (VMMU_PAGE_USER_BITS) on the pages of @p ranges and
 * make every vCPU drop entries that the change makes too permissive (a
 * page that becomes VMMU_PAGE_CODE must report writes; a page whose
 * VMMU_PAGE_DIRTY is cleared must be marked again at the next write).
 * One synchronous flush for the batch; nothing is freed, so no grace
 * period is needed.  Every page must be RAM or ROM, else nothing changes.
 * @return 0; VMMU_EINVAL; VMMU_EALIGN; VMMU_EHOLE; VMMU_ERANGE;
 *         VMMU_EBUSY (from a page-in handler serving a device model: see
 *         vmmu_pagein_fn in vmmu/p2m.h).
 */
int vmmu_page_state_change(struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges, size_t n,
                           uint32_t set, uint32_t clear);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_SYNC_H */
