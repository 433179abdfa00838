/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/p2m.h
 * @brief The guest-physical map (P2M): regions, lookups, per-page state and
 *        guest-physical reads and writes.
 *
 * The guest-physical address space of a vm is a set of non-overlapping,
 * page-aligned regions.  Every address outside them is a hole.
 *
 * | type              | reads                         | writes                                  |
 * |-------------------|-------------------------------|-----------------------------------------|
 * | VMMU_MEM_RAM      | host memory                   | host memory                             |
 * | VMMU_MEM_ROM      | host memory                   | ignored, or VMMU_EROM (per region)      |
 * | VMMU_MEM_MMIO     | read callback, sizes 1/2/4/8  | write callback, sizes 1/2/4/8           |
 * | VMMU_MEM_DEVICE   | VMMU_EDEVICE (a device model must serve it)                             |
 * | hole              | VMMU_EHOLE, or all-ones with VMMU_GPA_UNBACKED_ONES (writes dropped)    |
 *
 * Concurrency.  Lookups and guest-physical accesses take no lock; they may
 * run on any number of threads at once.  Adding and removing regions is
 * serialised inside the vm and publishes each change atomically: a
 * concurrent lookup sees the map either before or after a change, never a
 * mixture for one address.  Removing a region waits for a grace period
 * (liburcu: QSBR for vCPU threads, the "bulletproof" flavour for the
 * sections of other threads) before its memory is released, so readers can never
 * touch freed memory: every online vCPU, and any other thread for the
 * length of a call that reads the map (a lookup, a guest-physical access,
 * a page-state call, a walk), which is a read-side section of its own.
 * A host address got from the map (vmmu_p2m_lookup()) outlives that call
 * only on an online vCPU's thread (until the vCPU's next safe point);
 * other threads must not use it while another thread removes that region.
 */
#ifndef VMMU_P2M_H
#define VMMU_P2M_H

#include <stddef.h>
#include <stdint.h>

#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What a guest-physical page is. */
enum vmmu_mem_type {
    VMMU_MEM_HOLE = 0, /**< nothing: not backed by any region */
    VMMU_MEM_RAM,      /**< read/write host memory */
    VMMU_MEM_ROM,      /**< read-only host memory */
    VMMU_MEM_MMIO,     /**< emulated by in-process callbacks */
    VMMU_MEM_DEVICE,   /**< served by a device model (see the device-model API) */
};

/** Short name of a memory type ("ram", "rom", "mmio", "device", "hole";
 *  "unknown" for any other value). */
const char *vmmu_mem_type_name(enum vmmu_mem_type type);

/**
 * Callbacks of an MMIO region.  @p offset is the byte offset of the access
 * from the region's start; @p size is 1, 2, 4 or 8 and the access is
 * naturally aligned (offset % size == 0).  Values are in host (little-endian)
 * order, zero-extended.  Return 0 on success, any negative value on failure;
 * vmmu reports a failure to its caller as VMMU_EMMIO.  A callback may be left
 * NULL: reads then return all-ones and writes are dropped.
 * Callbacks may run on any thread that accesses the region, concurrently.
 */
struct vmmu_mmio_ops {
    int (*read)(void *opaque, uint64_t offset, unsigned size, uint64_t *value);
    int (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
};

/** ROM regions: report writes with VMMU_EROM instead of silently dropping them. */
#define VMMU_REGION_ROM_REPORT_WRITES (1u << 0)
/** RAM regions: writes through vmmu set the page's VMMU_PAGE_DIRTY bit. */
#define VMMU_REGION_LOG_DIRTY (1u << 1)
/** Every region flag, for validation. */
#define VMMU_REGION_FLAGS_ALL (VMMU_REGION_ROM_REPORT_WRITES | VMMU_REGION_LOG_DIRTY)

/** Describes a region to add.  Zero-initialise it, then set what you need. */
struct vmmu_region_desc {
    enum vmmu_mem_type type; /**< RAM, ROM, MMIO or DEVICE (not HOLE) */
    uint64_t gpa;            /**< first byte; page aligned */
    uint64_t size;           /**< bytes; page aligned, non-zero, gpa + size within the width */
    /** RAM/ROM only.  NULL: vmmu allocates the memory from the vm's memfd,
     *  zero-filled and backed lazily (a 1 TiB region costs nothing until it
     *  is touched); the memfd holds up to 16 TiB of live regions (each
     *  rounded up to 2 MiB; a removed region's span is reused), which
     *  the device dirty bitmap covers (vmmu/dmproto.h).  Non-NULL: caller-owned memory of @p size bytes, page
     *  aligned, that stays valid until the region is removed and the vm has
     *  returned from vmmu_region_remove(); vmmu never frees it. */
    void *host;
    uint32_t flags;                  /**< VMMU_REGION_* */
    const struct vmmu_mmio_ops *mmio; /**< MMIO only: required; copied */
    void *opaque;                    /**< MMIO: passed to the callbacks; DEVICE: user tag */
    const char *name;                /**< optional label for diagnostics; copied */
};

/**
 * Add a region to the map.
 * @param id receives the region's id (never 0) on success; may be NULL.
 * @return 0; VMMU_EINVAL (NULL vm/desc, HOLE type, unknown flags, MMIO
 *         without ops, host memory on MMIO/DEVICE, misaligned host pointer);
 *         VMMU_EALIGN (gpa or size not page aligned); VMMU_EINVAL for a
 *         zero size; VMMU_ERANGE (beyond the width); VMMU_EOVERLAP;
 *         VMMU_ELIMIT (too many regions); VMMU_ENOMEM (out of memory, or
 *         the vm's memfd is full: 16 TiB); VMMU_ESYS (memfd or mmap
 *         failed); VMMU_EBUSY (from inside vmmu_region_foreach(), or from
 *         a page-in handler serving a device model: see vmmu_pagein_fn).
 *         On failure the map is unchanged.
 */
int vmmu_region_add(struct vmmu_vm *vm, const struct vmmu_region_desc *desc, uint32_t *id);

/**
 * Remove a region.  Returns after the region is unpublished and a grace
 * period has passed, so no registered reader still uses it; memory vmmu
 * allocated is then released (its pages in the memfd are freed).
 * @return 0, VMMU_EINVAL (NULL vm), VMMU_ENOENT (no such id), VMMU_EBUSY
 *         (as vmmu_region_add()).
 */
int vmmu_region_remove(struct vmmu_vm *vm, uint32_t id);

/** What vmmu_region_info() reports. */
struct vmmu_region_info {
    uint32_t id;
    enum vmmu_mem_type type;
    uint64_t gpa, size;
    uint32_t flags;
    void *host;           /**< RAM/ROM host memory, else NULL */
    int memfd;            /**< fd holding the memory if vmmu allocated it, else -1 */
    uint64_t memfd_offset;/**< where the region starts in @ref memfd */
    char name[32];        /**< label given at creation, truncated; "" if none */
};

/**
 * Describe a region.
 * @return 0, VMMU_EINVAL (NULL argument), VMMU_ENOENT.
 */
int vmmu_region_info(const struct vmmu_vm *vm, uint32_t id, struct vmmu_region_info *out);

/**
 * Find the region holding a guest-physical address.
 * @return 0 with *id set; VMMU_EHOLE; VMMU_ERANGE; VMMU_EINVAL.
 */
int vmmu_region_find(const struct vmmu_vm *vm, uint64_t gpa, uint32_t *id);

/**
 * Call @p fn for every region in ascending gpa order, stopping early if it
 * returns non-zero (that value is then returned).  The map must not be
 * changed from inside @p fn: @p fn runs under the map's lock, and every
 * call that would take it again returns VMMU_EBUSY on this thread (region
 * changes, the handler setters below, dirty logging, the pager's calls but
 * vmmu_pager_stats(), vmmu_pager_destroy() included, vmmu_dm_create(),
 * vmmu_dm_destroy(), vmmu_dm_server_create_inproc(),
 * vmmu_dm_server_create_remote(), vmmu_dm_server_destroy()); vmmu_vm_destroy() of the
 * vm being visited refuses with VMMU_EBUSY too.  @p fn may wait for the
 * vCPUs (vmmu_shootdown_sync(), a page-state change that flushes them):
 * vCPU threads wait for the map's lock offline.  On a vCPU thread, the
 * vCPU does not park for another vCPU's split lock while @p fn runs (the
 * split lock may need the map's lock to page its bytes in); it parks, if
 * one is under way, after the last call of @p fn, before this returns.
 * So @p fn is host work: guest accesses it made through that vCPU would
 * not be atomic against split locks.
 * @return 0 after visiting all, @p fn's non-zero value, VMMU_EINVAL (NULL
 *         @p vm or @p fn), or VMMU_EBUSY (nothing visited: called from
 *         inside a vmmu_region_foreach() callback, or from a page-in
 *         handler serving a device model, as vmmu_region_add()).
 */
int vmmu_region_foreach(const struct vmmu_vm *vm,
                        int (*fn)(const struct vmmu_region_info *info, void *arg), void *arg);

/* ---- Per-page state ----------------------------------------------------- */

/** The page's contents are not in host memory; the pager must bring it back. */
#define VMMU_PAGE_PAGED_OUT (1u << 0)
/** The page was written while dirty logging was on (see VMMU_REGION_LOG_DIRTY). */
#define VMMU_PAGE_DIRTY (1u << 1)
/** The page holds translated code: writes to it must be reported. */
#define VMMU_PAGE_CODE (1u << 2)
/** Set by the pager with VMMU_PAGE_PAGED_OUT when the guest gave the page
 *  back (balloon): a vCPU access brings it back as a zero page, a device
 *  model's request does not (vmmu/dmproto.h, PAGE_IN). */
#define VMMU_PAGE_BALLOONED (1u << 3)
/** The bits a caller may set and clear through vmmu_page_state_update(). */
#define VMMU_PAGE_USER_BITS (VMMU_PAGE_DIRTY | VMMU_PAGE_CODE)

/* ---- Lookup ------------------------------------------------------------- */

/** Result of a lookup: a snapshot of what one guest-physical page is. */
struct vmmu_p2m_entry {
    enum vmmu_mem_type type; /**< VMMU_MEM_HOLE if unbacked */
    uint32_t region_id;      /**< 0 for holes */
    uint32_t page_state;     /**< VMMU_PAGE_* bits (RAM/ROM), else 0 */
    /** Host address of the looked-up byte for RAM/ROM pages that are not
     *  paged out; NULL otherwise.  Valid until the region is removed (for
     *  registered readers: until their next quiescent state). */
    uint8_t *hva;
    uint64_t region_gpa;     /**< region start (0 for holes) */
    uint64_t region_size;    /**< region size (0 for holes) */
    /** The map generation this lookup saw; it changes whenever a region is
     *  added or removed or starts dirty logging, so a cache can tell when
     *  it must revalidate. */
    uint64_t generation;
};

/**
 * Look up the guest-physical page holding @p gpa.  Lock-free; the cost does
 * not grow with the number of regions (a radix tree of at most four levels
 * that stops early where one region covers a whole subtree).
 * @return 0 (also for holes: out->type is VMMU_MEM_HOLE); VMMU_ERANGE if
 *         @p gpa is beyond the width; VMMU_EINVAL for NULL arguments.
 */
int vmmu_p2m_lookup(const struct vmmu_vm *vm, uint64_t gpa, struct vmmu_p2m_entry *out);

/** The current map generation (see struct vmmu_p2m_entry); 0 for NULL. */
uint64_t vmmu_p2m_generation(const struct vmmu_vm *vm);

/**
 * Read the VMMU_PAGE_* state of the RAM/ROM page holding @p gpa.
 * @return 0; VMMU_EHOLE; VMMU_EINVAL (not RAM/ROM, NULL); VMMU_ERANGE.
 */
int vmmu_page_state_get(const struct vmmu_vm *vm, uint64_t gpa, uint32_t *state);

/**
 * Atomically set and clear state bits on @p npages consecutive pages from
 * the page holding @p gpa (a bit named in both @p set and @p clear ends
 * clear).  Only VMMU_PAGE_USER_BITS may be named; paging out belongs to
 * the pager.  Every page must be RAM or ROM; if any is not,
 * nothing is changed.
 * @return 0; VMMU_EINVAL (other bits, npages 0, non-RAM page); VMMU_EHOLE;
 *         VMMU_ERANGE.
 */
int vmmu_page_state_update(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages,
                           uint32_t set, uint32_t clear);

/**
 * Handler that brings a paged-out page back (registered by a pager).  Called
 * with the page-aligned gpa; returns 0 once the page is resident again (its
 * VMMU_PAGE_PAGED_OUT bit clear) or a negative code, which the access that
 * needed the page returns as it is (VMMU_ESYS for an I/O error, say), so
 * the caller learns why.  A handler that returns 0 with the page still out
 * is asked again a bounded number of times, then the access fails with
 * VMMU_EPAGEDOUT.
 *
 * It runs on the thread that needs the page: a vCPU's (in the middle of a
 * fill or an access), a host thread's (vmmu_gpa_read() and the like), or
 * a device model's page-in service thread.  It may wait, and may call
 * vmmu (vmmu_pager_page_in(), vmmu_page_state_change(), a page-out): a
 * vCPU thread then waits offline, and the access looks the page up again
 * afterwards, from the start, since a grace period may have passed.
 * While it serves a device model, which waits for the answer and
 * acknowledges no invalidation meanwhile, the calls that would wait for
 * device models or for a lock whose holder may (region changes,
 * page-state changes, page-outs and ballooning, the pager's balance and
 * destroy, dirty logging, device-model invalidations and server changes)
 * return VMMU_EBUSY instead.
 */
typedef int (*vmmu_pagein_fn)(void *opaque, struct vmmu_vm *vm, uint64_t gpa);

/**
 * Register the page-in handler (NULL removes it), replacing the one
 * installed.  Without one, accesses to a paged-out page fail with
 * VMMU_EPAGEDOUT.  Safe while other threads (vCPUs, host threads) make
 * accesses: each call pairs @p fn with its own @p opaque, and when this
 * returns, the old handler is neither running nor will be called, so the
 * caller may free the old @p opaque.  Meanwhile it waits for calls of the
 * old handler under way (offline on a vCPU's thread): it must not be made
 * by a thread such a call waits for.
 * @return 0; VMMU_EINVAL (NULL vm); VMMU_ENOMEM; VMMU_EBUSY, nothing
 *         changed: from inside vmmu_region_foreach(), while serving a
 *         device model's page-in, or from inside the installed page-in
 *         handler itself (a call of it, or a callback it runs, on this
 *         thread: the setter would wait for its own caller).
 */
int vmmu_p2m_set_pagein_handler(struct vmmu_vm *vm, vmmu_pagein_fn fn, void *opaque);

/* ---- Device-model ranges ------------------------------------------------ */

/**
 * One access to a VMMU_MEM_DEVICE page, as handed to the device handler.
 * Values are little-endian, zero-extended; @p size is 1, 2, 4 or 8 and the
 * access is naturally aligned.
 */
struct vmmu_device_req {
    uint64_t gpa;          /**< guest-physical address accessed */
    uint64_t offset;       /**< gpa minus the region's start */
    uint32_t region_id;    /**< the DEVICE region */
    void *region_opaque;   /**< that region's vmmu_region_desc::opaque */
    unsigned size;         /**< 1, 2, 4 or 8 */
    int write;             /**< 1 for a write, 0 for a read */
    uint64_t data;         /**< write: the value; read: receives the value */
    int vcpu_id;           /**< the vCPU making the access, or -1 for the host */
};

/**
 * The handler that serves DEVICE pages (registered by the device-model
 * layer).  Returns 0 when the access is complete (a read's value in
 * req->data); VMMU_EPENDING when the answer comes later: the caller returns
 * to its vCPU loop and re-executes the instruction, and the handler, called
 * again with the same access from the same vCPU, then completes it; or a
 * negative code (VMMU_EDEAD, VMMU_ETIMEDOUT, VMMU_EDEVICE ...).  Called on
 * the accessing thread, concurrently for different vCPUs.
 */
typedef int (*vmmu_device_fn)(void *opaque, struct vmmu_device_req *req);

/**
 * Register the device handler (NULL removes it), replacing the one
 * installed.  Without one, accesses to DEVICE pages fail with
 * VMMU_EDEVICE.  Safe while other threads make device accesses: each call
 * pairs @p fn with its own @p opaque, and when this returns, the old
 * handler is neither running nor will be called, so the caller may free
 * the old @p opaque.  Meanwhile it waits for calls of the old handler
 * under way, which may be waiting for a device model (offline on a vCPU's
 * thread): it must not be made by a thread such a call waits for.
 * @return 0; VMMU_EINVAL (NULL vm); VMMU_ENOMEM; VMMU_EBUSY, nothing
 *         changed: from inside vmmu_region_foreach(), while serving a
 *         device model's page-in, or from inside the installed device
 *         handler itself (a call of it, or a callback it runs, on this
 *         thread: the setter would wait for its own caller).
 */
int vmmu_p2m_set_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque);

/**
 * Serve one access to a DEVICE page through the registered handler (what
 * the access layer does when an access reaches a device-model range).
 * Fills req->offset, region_id and region_opaque from the map.
 * @return the handler's result; VMMU_EDEVICE without a handler;
 *         VMMU_EINVAL (NULL, bad size or alignment, not a DEVICE page);
 *         VMMU_ERANGE (@p req->gpa beyond the width).
 */
int vmmu_p2m_device_access(struct vmmu_vm *vm, struct vmmu_device_req *req);

/* ---- Guest-physical access ---------------------------------------------- */

/** Holes read as all-ones and writes to them are dropped, as on hardware. */
#define VMMU_GPA_UNBACKED_ONES (1u << 0)
/** Writes to ROM store into its memory (for firmware loaders). */
#define VMMU_GPA_ROM_WRITE (1u << 1)
/** Every access flag, for validation. */
#define VMMU_GPA_FLAGS_ALL (VMMU_GPA_UNBACKED_ONES | VMMU_GPA_ROM_WRITE)

/**
 * Read @p len bytes of guest-physical memory from @p gpa into @p buf.
 * The range may span any number of pages and regions; MMIO is read through
 * its callbacks in naturally aligned pieces of 1, 2, 4 or 8 bytes.
 * The whole range is checked first: if any part is a hole (without
 * VMMU_GPA_UNBACKED_ONES), a device-model range, or paged out with no way to
 * bring it in, nothing is read (no MMIO callback runs) and the error names
 * the first such part.  If an MMIO callback fails midway, the bytes before it
 * have been read.  A callback (or the page-in handler) that waits inside
 * vmmu on a vCPU thread takes the vCPU offline, and the map may change
 * meanwhile: the rest of the range is then checked again, as above, so a
 * region removed meanwhile ends the access there (VMMU_EHOLE, the bytes
 * before done).  On a thread that is not an online vCPU's the call is a
 * grace-period reader of its own, offline while a callback runs: a page
 * out, a removal or a replacement on another thread never takes a page
 * from under its copy, and the rest of the range is checked again after
 * each callback.  A region another thread adds, removes or replaces during
 * the copy is seen by the part not yet copied as the map is then: a
 * device-model range or a hole (or ROM that reports writes) that appears
 * there ends the access at it, with the bytes before it done.  len 0
 * succeeds and does nothing.
 * @return 0; VMMU_EINVAL; VMMU_ERANGE (gpa + len beyond the width);
 *         VMMU_EHOLE; VMMU_EDEVICE; VMMU_EPAGEDOUT; VMMU_EMMIO.
 * @param failed_gpa if non-NULL, receives the address of the first byte that
 *         failed (unchanged on success).
 */
int vmmu_gpa_read(struct vmmu_vm *vm, uint64_t gpa, void *buf, size_t len, unsigned flags,
                  uint64_t *failed_gpa);

/**
 * Write @p len bytes from @p buf to guest-physical memory at @p gpa.  Same
 * splitting and up-front checking as vmmu_gpa_read(); in addition a ROM
 * region that reports writes fails the whole write with VMMU_EROM before any
 * byte is written (unless VMMU_GPA_ROM_WRITE), and ROM that ignores writes
 * drops its part.  RAM pages of regions with VMMU_REGION_LOG_DIRTY get their
 * VMMU_PAGE_DIRTY bit set.
 * @return as vmmu_gpa_read(), plus VMMU_EROM.
 */
int vmmu_gpa_write(struct vmmu_vm *vm, uint64_t gpa, const void *buf, size_t len,
                   unsigned flags, uint64_t *failed_gpa);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_P2M_H */
