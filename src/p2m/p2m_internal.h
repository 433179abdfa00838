/* SPDX-License-Identifier: MIT */
/*
 * Internals of the guest-physical map, shared by the parts of vmmu that sit
 * on it (walker, TLB, sync).  Not installed.
 *
 * Shape.  A radix tree over guest frame numbers: a root of up to 8192 slots
 * (13 bits, 64 KiB) and below it nodes of 9 bits (512 slots, 4 KiB), so a
 * 52-bit space has four levels and a 40-bit one three.  A slot holds one of:
 *   0                      a hole covering the whole slot,
 *   region pointer | 1     one region covers the whole slot,
 *   node pointer           a child node (slots never hold both).
 * A region aligned to a slot's span therefore ends the descent early: 4 GiB
 * of RAM at 0 is found after three loads whatever else is mapped, and no
 * per-page leaf is ever built for the inside of a region.  Leaves (one slot
 * per 4 KiB page) exist only at the unaligned edges of regions.
 *
 * Publication.  Writers hold vm->lock.  A new node is filled before it is
 * stored (release) into its parent; readers load slots with acquire, so a
 * reader sees a node only after its contents.  A region is fully built
 * before its tagged pointer is stored anywhere.  Unpublished nodes and
 * regions are freed only after an RCU grace period.
 */
#ifndef VMMU_P2M_INTERNAL_H
#define VMMU_P2M_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmmu/p2m.h"

#define P2M_LEVEL_BITS 9u
#define P2M_FANOUT (1u << P2M_LEVEL_BITS)
#define P2M_SLOT_REGION 1u

struct p2m_node {
    _Atomic uintptr_t slot[P2M_FANOUT];
};

/* A region.  Immutable once published, except the per-page state bytes
 * and the VMMU_REGION_LOG_DIRTY flag (see region_flags()). */
struct vmmu_region {
    uint32_t id;
    enum vmmu_mem_type type;
    uint32_t flags;
    uint64_t gfn;      /* first guest frame */
    uint64_t npages;
    uint8_t *host;     /* RAM/ROM host memory, else NULL */
    bool host_owned;   /* vmmu mapped it from the vm's memfd */
    uint64_t memfd_offset;
    _Atomic uint8_t *state; /* RAM/ROM: one VMMU_PAGE_* byte per page */
    size_t state_bytes;     /* mapping length of @state */
    /* Pages with VMMU_PAGE_PAGED_OUT set (kept by vmmu__page_state_update()):
     * whether the region is wholly resident, without reading its state bytes. */
    _Atomic uint64_t paged_out;
    struct vmmu_mmio_ops mmio;
    void *opaque;
    char name[32];
};

/* Most index bits the root takes; the rest go to 9-bit levels below it. */
#define P2M_ROOT_BITS_MAX 13u

struct vmmu_p2m {
    _Atomic uintptr_t *root; /* root_slots entries */
    unsigned root_slots;
    unsigned levels;      /* levels including the root, 1..4 */
    uint64_t gfn_limit;   /* 1 << (gpa_bits - 12) */
    _Atomic uint64_t generation;
    /* Counts up whenever a region's last paged-out page comes back: the
     * region became wholly resident again without a new generation
     * (device models' region tables, which leave out regions with
     * paged-out pages, watch it). */
    _Atomic uint64_t resident_regions;
    uint64_t nodes;       /* nodes allocated (metadata accounting) */

    /* Writer side, under vm->lock: regions sorted by gfn. */
    struct vmmu_region **regions;
    unsigned nregions, cap, max_regions;
    uint32_t next_id;
    bool ids_wrapped;     /* next_id went past UINT32_MAX: skip live ids */

    /* The page-in handler (vmmu_p2m_set_pagein_handler()) and the device
     * handler (vmmu_p2m_set_device_handler()): NULL, or the installed
     * one (struct p2m_hook, hook.c). */
    struct p2m_hook *_Atomic pagein;
    struct p2m_hook *_Atomic device;
};

/*
 * One installed handler: the function and its argument, published
 * together behind one pointer, so that a caller never pairs the function
 * of one handler with the argument of another.
 *
 * A caller takes the record with p2m_hook_take() inside a read-side
 * section (an online vCPU, or vmmu__read_begin()), which counts it in
 * @calls before the section ends, and gives it back with p2m_hook_put()
 * once the handler returned; the handler itself runs wherever the caller
 * likes, offline included (it may wait for a device model).  The call is
 * made under a callback frame that names the record (struct
 * vmmu__callback::hook), so that a setter on the same thread can tell it
 * is inside the handler it would replace.
 *
 * A setter swaps the pointer under vm->lock, then waits for a grace
 * period (every caller that found the old record in a section has counted
 * itself by then: no new count can appear), then for @calls to drop to
 * zero, and frees the record: when it returns, nobody runs the old
 * handler or will call it, and the caller may free its argument.
 */
struct p2m_hook {
    union {
        vmmu_pagein_fn pagein;
        vmmu_device_fn device;
    } fn;
    void *opaque;
    _Atomic uint32_t calls; /* callers that took it and have not given it back */
};

/* The installed handler of @slot, counted as in use, or NULL.  Call it in
 * a read-side section; give what it returns back with p2m_hook_put().
 * The count needs no ordering of its own: the grace period the setter
 * waits for orders it before the setter's first look at it. */
static inline struct p2m_hook *p2m_hook_take(struct p2m_hook *_Atomic *slot)
{
    struct p2m_hook *h = atomic_load_explicit(slot, memory_order_acquire);
    if (h)
        atomic_fetch_add_explicit(&h->calls, 1, memory_order_relaxed);
    return h;
}

/* Done with @h (the handler returned): the last use of it, since the
 * setter that retired it may free it as soon as the count is zero. */
static inline void p2m_hook_put(struct p2m_hook *h)
{
    atomic_fetch_sub_explicit(&h->calls, 1, memory_order_release);
}

/*
 * Resolve a guest frame: the region holding it (NULL for a hole) and the
 * first frame after @gfn where the answer may change (the region's end, or
 * the end of the empty slot that makes the hole).  Lock-free.
 * @gfn must be below gfn_limit.
 */
static inline struct vmmu_region *p2m_resolve(const struct vmmu_p2m *p2m, uint64_t gfn,
                                              uint64_t *extent_end)
{
    unsigned level = p2m->levels - 1, shift = level * P2M_LEVEL_BITS;
    /* gfn < gfn_limit, so the root index needs no mask. */
    uintptr_t s = atomic_load_explicit(&p2m->root[gfn >> shift], memory_order_acquire);
    for (;;) {
        if (s & P2M_SLOT_REGION) {
            struct vmmu_region *r = (struct vmmu_region *)(s & ~(uintptr_t)P2M_SLOT_REGION);
            if (extent_end)
                *extent_end = r->gfn + r->npages;
            return r;
        }
        if (!s) {
            if (extent_end)
                *extent_end = ((gfn >> shift) + 1) << shift;
            return 0;
        }
        /* A child: level > 0 here, since level-0 slots never hold nodes. */
        const struct p2m_node *node = (const struct p2m_node *)s;
        level--;
        shift -= P2M_LEVEL_BITS;
        s = atomic_load_explicit(&node->slot[(gfn >> shift) & (P2M_FANOUT - 1)],
                                 memory_order_acquire);
    }
}

/* A region's VMMU_REGION_* flags.  VMMU_REGION_LOG_DIRTY changes while
 * the region is published (dirty logging on/off), so every reader loads
 * the word atomically. */
static inline uint32_t region_flags(const struct vmmu_region *r)
{
    return __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE);
}

/* Per-page state byte of a RAM/ROM region's page. */
static inline uint8_t region_page_state(const struct vmmu_region *r, uint64_t gfn)
{
    return atomic_load_explicit(&r->state[gfn - r->gfn], memory_order_acquire);
}

/* Internal setter that may name VMMU_PAGE_PAGED_OUT (for the pager). */
int vmmu__page_state_update(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages, uint32_t set,
                            uint32_t clear, uint32_t allowed);

/* Bytes of P2M metadata: nodes, region records and per-page state arrays. */
uint64_t vmmu__p2m_metadata_bytes(const struct vmmu_vm *vm);

/* Make the RAM or ROM page holding @gpa resident (through the page-in
 * handler if it is paged out) without reading it: 0, VMMU_EHOLE,
 * VMMU_EDEVICE, VMMU_ERANGE, or the page-in's error. */
int vmmu__gpa_make_resident(struct vmmu_vm *vm, uint64_t gpa);

int vmmu__p2m_init(struct vmmu_p2m *p2m, unsigned gpa_bits, unsigned max_regions);
void vmmu__p2m_fini(struct vmmu_vm *vm);

/* vmmu_p2m_set_device_handler() for the device-model layer: installs
 * @fn only if no device handler is installed (VMMU_EINVAL otherwise, as
 * vmmu_dm_create() says), in one step under the map's lock. */
int vmmu__p2m_install_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque);

/* Whether the calling thread runs inside a call of @vm's installed device
 * handler (a setter would refuse with VMMU_EBUSY: it would wait for
 * itself). */
bool vmmu__p2m_in_device_handler(struct vmmu_vm *vm);

/* The handler records of a vm being destroyed (no call can be under way). */
void vmmu__p2m_hooks_fini(struct vmmu_p2m *p2m);

#endif /* VMMU_P2M_INTERNAL_H */
