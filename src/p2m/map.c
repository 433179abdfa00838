/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical map: regions and the radix tree that finds them.
 * See p2m_internal.h for the tree's shape and publication rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/dmproto.h"
#include "vmmu/error.h"

/* ---- radix nodes ----------------------------------------------------------- */

static struct p2m_node *node_alloc(struct vmmu_p2m *p2m)
{
    struct p2m_node *n = vmmu__aligned_alloc(sizeof(struct p2m_node), sizeof(struct p2m_node));
    if (!n)
        return NULL;
    for (unsigned i = 0; i < P2M_FANOUT; i++)
        atomic_init(&n->slot[i], 0);
    p2m->nodes++;
    return n;
}

static bool node_is_child(uintptr_t s)
{
    return s && !(s & P2M_SLOT_REGION);
}

/* Free the nodes below @slots (not @slots itself). */
static void free_children(struct vmmu_p2m *p2m, _Atomic uintptr_t *slots, unsigned n,
                          unsigned level)
{
    if (level == 0)
        return;
    for (unsigned i = 0; i < n; i++) {
        uintptr_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (node_is_child(s)) {
            struct p2m_node *child = (struct p2m_node *)s;
            free_children(p2m, child->slot, P2M_FANOUT, level - 1);
            free(child);
            p2m->nodes--;
        }
    }
}

/* Frames one slot of a node at @level covers. */
static uint64_t slot_span(unsigned level)
{
    return 1ull << (level * P2M_LEVEL_BITS);
}

/* Retired nodes, freed after the grace period that follows their
 * unpublication.  A small growable array owned by the current writer. */
struct retire_list {
    struct p2m_node **nodes;
    size_t n, cap;
};

/* Make room in @rl for one more node.  False when there is no memory for
 * it: the caller then leaves its node in the tree (an empty node reads as
 * holes, and the tree still owns it) instead of unpublishing it, since it
 * could neither free it under a reader's feet nor remember to free it
 * later. */
static bool retire_room(struct retire_list *rl)
{
    if (rl->n == rl->cap) {
        size_t cap = rl->cap ? rl->cap * 2 : 8;
        struct p2m_node **grown = vmmu__realloc(rl->nodes, cap * sizeof(*grown));
        if (!grown)
            return false;
        rl->nodes = grown;
        rl->cap = cap;
    }
    return true;
}

static bool node_empty(const struct p2m_node *n)
{
    for (unsigned i = 0; i < P2M_FANOUT; i++)
        if (atomic_load_explicit(&n->slot[i], memory_order_relaxed))
            return false;
    return true;
}

/*
 * Pass 1 of an insert: make sure every node the range [lo, hi) needs below
 * whole-slot coverage exists.  Publishing an empty node changes no answer
 * (it reads as holes), so this pass is invisible to readers and, on failure,
 * simply leaves some empty nodes for prune_empty() to drop.
 */
static int ensure_nodes(struct vmmu_p2m *p2m, _Atomic uintptr_t *slots, unsigned level,
                        uint64_t base, uint64_t lo, uint64_t hi)
{
    uint64_t span = slot_span(level);
    uint64_t first = (lo - base) / span, last = (hi - 1 - base) / span;
    for (uint64_t i = first; i <= last; i++) {
        uint64_t s_lo = base + i * span, s_hi = s_lo + span;
        uint64_t c_lo = lo > s_lo ? lo : s_lo, c_hi = hi < s_hi ? hi : s_hi;
        if (c_lo == s_lo && c_hi == s_hi)
            continue; /* whole slot: tagged directly in pass 2 */
        uintptr_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (!s) {
            struct p2m_node *child = node_alloc(p2m);
            if (!child)
                return VMMU_ENOMEM;
            atomic_store_explicit(&slots[i], (uintptr_t)child, memory_order_release);
            s = (uintptr_t)child;
        }
        int err = ensure_nodes(p2m, ((struct p2m_node *)s)->slot, level - 1, s_lo, c_lo, c_hi);
        if (err)
            return err;
    }
    return 0;
}

/*
 * Pass 2: store @tag in every slot the range covers whole.  A whole slot may
 * still hold an empty child left by an earlier removal; it is replaced and
 * retired.
 */
static void store_tags(struct vmmu_p2m *p2m, _Atomic uintptr_t *slots, unsigned level,
                       uint64_t base, uint64_t lo, uint64_t hi, uintptr_t tag,
                       struct retire_list *rl)
{
    uint64_t span = slot_span(level);
    uint64_t first = (lo - base) / span, last = (hi - 1 - base) / span;
    for (uint64_t i = first; i <= last; i++) {
        uint64_t s_lo = base + i * span, s_hi = s_lo + span;
        uint64_t c_lo = lo > s_lo ? lo : s_lo, c_hi = hi < s_hi ? hi : s_hi;
        uintptr_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (c_lo == s_lo && c_hi == s_hi && (!node_is_child(s) || retire_room(rl))) {
            atomic_store_explicit(&slots[i], tag, memory_order_release);
            if (node_is_child(s))
                rl->nodes[rl->n++] = (struct p2m_node *)s;
        } else {
            /* A part of the slot, or an empty child that cannot be retired
             * now: tag the child's slots instead (the same answers). */
            store_tags(p2m, ((struct p2m_node *)s)->slot, level - 1, s_lo, c_lo, c_hi, tag, rl);
        }
    }
}

/*
 * Clear every slot in [lo, hi) that holds @tag (tag 0: clear nothing, only
 * prune) and unpublish child nodes that end up empty.  @slots may be the
 * root, which is never retired and may have fewer slots than a node (64
 * for a 36-bit space), so only children are tested for emptiness.
 */
static void clear_range(struct vmmu_p2m *p2m, _Atomic uintptr_t *slots, unsigned level,
                        uint64_t base, uint64_t lo, uint64_t hi, uintptr_t tag,
                        struct retire_list *rl)
{
    uint64_t span = slot_span(level);
    uint64_t first = (lo - base) / span, last = (hi - 1 - base) / span;
    for (uint64_t i = first; i <= last; i++) {
        uint64_t s_lo = base + i * span, s_hi = s_lo + span;
        uint64_t c_lo = lo > s_lo ? lo : s_lo, c_hi = hi < s_hi ? hi : s_hi;
        uintptr_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (tag && s == tag) {
            atomic_store_explicit(&slots[i], 0, memory_order_release);
        } else if (node_is_child(s)) {
            struct p2m_node *child = (struct p2m_node *)s;
            clear_range(p2m, child->slot, level - 1, s_lo, c_lo, c_hi, tag, rl);
            if (node_empty(child) && retire_room(rl)) {
                atomic_store_explicit(&slots[i], 0, memory_order_release);
                rl->nodes[rl->n++] = child;
            }
        }
    }
}

/* Free the retired nodes, under the map's lock (for the count), after a
 * grace period the caller waited outside it. */
static void retire_flush(struct vmmu_p2m *p2m, struct retire_list *rl)
{
    for (size_t i = 0; i < rl->n; i++) {
        /* Retired nodes hold no region, but empty children may hang below
         * one (a removal that had no memory to prune them). */
        free_children(p2m, rl->nodes[i]->slot, P2M_FANOUT, p2m->levels);
        free(rl->nodes[i]);
        p2m->nodes--;
    }
    free(rl->nodes);
}

/* ---- init / fini ------------------------------------------------------------- */

int vmmu__p2m_init(struct vmmu_p2m *p2m, unsigned gpa_bits, unsigned max_regions)
{
    unsigned gfn_bits = gpa_bits - VMMU_PAGE_SHIFT;
    memset(p2m, 0, sizeof(*p2m));
    /* A wide root saves a level: 40 frame bits are 13 + 9 + 9 + 9. */
    unsigned below = gfn_bits > P2M_ROOT_BITS_MAX
                         ? (gfn_bits - P2M_ROOT_BITS_MAX + P2M_LEVEL_BITS - 1) / P2M_LEVEL_BITS
                         : 0;
    p2m->levels = below + 1;
    p2m->root_slots = 1u << (gfn_bits - below * P2M_LEVEL_BITS);
    p2m->gfn_limit = 1ull << gfn_bits;
    p2m->max_regions = max_regions;
    p2m->next_id = 1;
    atomic_init(&p2m->generation, 1);
    p2m->root = vmmu__calloc(p2m->root_slots, sizeof(*p2m->root));
    return p2m->root ? 0 : VMMU_ENOMEM;
}

/* The memfd's granule: 2 MiB alignment lets the host back large regions
 * with huge pages, and puts each region at a word of the device dirty
 * bitmap. */
#define MEMFD_GRANULE (2ull << 20)

static uint64_t memfd_span_of(uint64_t bytes)
{
    return (bytes + MEMFD_GRANULE - 1) & ~(MEMFD_GRANULE - 1);
}

/* Give the span [off, off + len) of the memfd back for reuse (the caller
 * punched its pages out).  Out of memory for the list, the span is just
 * not reused. */
static void memfd_give_back(struct vmmu_vm *vm, uint64_t off, uint64_t len)
{
    unsigned i = 0;
    while (i < vm->memfd_nfree && vm->memfd_free[i].off < off)
        i++;
    struct vmmu_memfd_span *f = vm->memfd_free;
    bool after_prev = i > 0 && f[i - 1].off + f[i - 1].len == off;
    bool before_next = i < vm->memfd_nfree && off + len == f[i].off;
    if (after_prev && before_next) {
        f[i - 1].len += len + f[i].len;
        memmove(&f[i], &f[i + 1], (vm->memfd_nfree - i - 1) * sizeof(*f));
        vm->memfd_nfree--;
        i--;
    } else if (after_prev) {
        f[--i].len += len;
    } else if (before_next) {
        f[i].off = off;
        f[i].len += len;
    } else {
        if (off + len == vm->memfd_next) {
            vm->memfd_next = off; /* the top span: nothing to list */
            return;
        }
        if (vm->memfd_nfree == vm->memfd_capfree) {
            unsigned cap = vm->memfd_capfree ? 2 * vm->memfd_capfree : 8;
            struct vmmu_memfd_span *g = vmmu__realloc(f, cap * sizeof(*g));
            if (!g)
                return;
            vm->memfd_free = f = g;
            vm->memfd_capfree = cap;
        }
        memmove(&f[i + 1], &f[i], (vm->memfd_nfree - i) * sizeof(*f));
        f[i] = (struct vmmu_memfd_span){off, len};
        vm->memfd_nfree++;
    }
    /* A free span that reaches the top goes back to memfd_next. */
    if (i + 1 == vm->memfd_nfree && f[i].off + f[i].len == vm->memfd_next) {
        vm->memfd_next = f[i].off;
        vm->memfd_nfree--;
    }
}

uint64_t vmmu__memfd_limit = VMMU_DM_DIRTY_PAGES << VMMU_PAGE_SHIFT;
int (*vmmu__memfd_fallocate)(int fd, int mode, off_t offset, off_t len) = fallocate;

/* A span of @len bytes (granules) of the memfd: the first free one that
 * fits, else from the top.  VMMU_ENOMEM past what the device dirty bitmap
 * covers (a device model's writes there could not be logged). */
static int memfd_take(struct vmmu_vm *vm, uint64_t len, uint64_t *off)
{
    struct vmmu_memfd_span *f = vm->memfd_free;
    for (unsigned i = 0; i < vm->memfd_nfree; i++) {
        if (f[i].len < len)
            continue;
        *off = f[i].off;
        f[i].off += len;
        f[i].len -= len;
        if (!f[i].len) {
            memmove(&f[i], &f[i + 1], (vm->memfd_nfree - i - 1) * sizeof(*f));
            vm->memfd_nfree--;
        }
        return 0;
    }
    if (vm->memfd_next > vmmu__memfd_limit || len > vmmu__memfd_limit - vm->memfd_next)
        return VMMU_ENOMEM;
    if (vm->memfd_next + len > vm->memfd_size) {
        if (ftruncate(vm->memfd, (off_t)(vm->memfd_next + len)) != 0)
            return errno == EFBIG || errno == ENOSPC ? VMMU_ENOMEM : VMMU_ESYS;
        vm->memfd_size = vm->memfd_next + len;
    }
    *off = vm->memfd_next;
    vm->memfd_next += len;
    return 0;
}

/* Map @bytes of fresh, zero-filled, lazily backed memory from the memfd. */
static int memfd_carve(struct vmmu_vm *vm, uint64_t bytes, uint8_t **host, uint64_t *offset)
{
    if (vm->memfd < 0) {
        /* Sealed against shrinking: device models map it, and one that
         * truncated it would make the vm's own accesses to guest RAM fault
         * (SIGBUS).  It only ever grows (memfd_take()). */
        int fd = memfd_create(vm->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
            return VMMU_ESYS;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
            close(fd);
            return VMMU_ESYS;
        }
        vm->memfd = fd;
    }
    uint64_t off, len = memfd_span_of(bytes);
    int err = memfd_take(vm, len, &off);
    if (err)
        return err;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, vm->memfd,
                   (off_t)off);
    if (p == MAP_FAILED) {
        err = errno == ENOMEM ? VMMU_ENOMEM : VMMU_ESYS;
        memfd_give_back(vm, off, len);
        return err;
    }
    *host = p;
    *offset = off;
    return 0;
}

static void region_release(struct vmmu_vm *vm, struct vmmu_region *r)
{
    if (r->state)
        munmap((void *)r->state, r->state_bytes);
    if (r->host_owned) {
        uint64_t bytes = r->npages << VMMU_PAGE_SHIFT;
        munmap(r->host, bytes);
        /* Give the pages back to the host now rather than at vm teardown,
         * and the span to the next region, with no device dirty bit of
         * this one left (every device model has dropped its mappings:
         * the reclaim before this waited for them).  A span whose pages
         * could not be punched out still holds this region's bytes: it
         * is not reused, so no region ever starts with another's data. */
        int punched = vmmu__memfd_fallocate(vm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                            (off_t)r->memfd_offset, (off_t)bytes);
        (void)vmmu__dev_dirty_take(vm, r, NULL);
        if (punched == 0)
            memfd_give_back(vm, r->memfd_offset, memfd_span_of(bytes));
    }
    free(r);
}

void vmmu__p2m_fini(struct vmmu_vm *vm)
{
    struct vmmu_p2m *p2m = &vm->p2m;
    vmmu__p2m_hooks_fini(p2m);
    for (unsigned i = 0; i < p2m->nregions; i++)
        region_release(vm, p2m->regions[i]);
    free(p2m->regions);
    free(vm->memfd_free);
    if (p2m->root) {
        free_children(p2m, p2m->root, p2m->root_slots, p2m->levels - 1);
        free(p2m->root);
    }
}

/* ---- regions --------------------------------------------------------------------- */

static bool writer_reentered(struct vmmu_vm *vm)
{
    return vmmu__vm_refuses_changes(vm);
}

/* Index of the first region whose end is above @gfn (binary search). */
static unsigned region_index_above(const struct vmmu_p2m *p2m, uint64_t gfn)
{
    unsigned lo = 0, hi = p2m->nregions;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct vmmu_region *r = p2m->regions[mid];
        if (r->gfn + r->npages <= gfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int region_index_by_id(const struct vmmu_p2m *p2m, uint32_t id)
{
    for (unsigned i = 0; i < p2m->nregions; i++)
        if (p2m->regions[i]->id == id)
            return (int)i;
    return -1;
}

/* The id for a new region: never 0, and never one a region in the map
 * still has.  Ids count up; after four billion additions they wrap, and
 * from then on each candidate is checked against the live regions (a
 * remove by id must not find a newer region under an old one's id). */
static uint32_t region_next_id(struct vmmu_p2m *p2m)
{
    for (;;) {
        uint32_t id = p2m->next_id++;
        if (p2m->next_id == 0) {
            p2m->next_id = 1; /* 0 stays "none" */
            p2m->ids_wrapped = true;
        }
        if (!p2m->ids_wrapped || region_index_by_id(p2m, id) < 0)
            return id;
    }
}

/* Hand out the vm's memfd once a region lives in it.  The file is created
 * by the first addition that needs it, which may still fail afterwards;
 * until one succeeds vmmu_vm_memfd() keeps saying -1.  (The descriptor is
 * not closed on such a failure: another thread may already hold it.) */
static void memfd_publish(struct vmmu_vm *vm, const struct vmmu_region *r)
{
    if (r->host_owned)
        atomic_store_explicit(&vm->memfd_public, vm->memfd, memory_order_release);
}

static int validate_desc(const struct vmmu_vm *vm, const struct vmmu_region_desc *d)
{
    switch (d->type) {
    case VMMU_MEM_RAM:
    case VMMU_MEM_ROM:
        if (d->mmio)
            return VMMU_EINVAL;
        if (d->host && ((uintptr_t)d->host & (VMMU_PAGE_SIZE - 1)))
            return VMMU_EINVAL;
        break;
    case VMMU_MEM_MMIO:
        if (!d->mmio || d->host)
            return VMMU_EINVAL;
        break;
    case VMMU_MEM_DEVICE:
        if (d->mmio || d->host)
            return VMMU_EINVAL;
        break;
    default:
        return VMMU_EINVAL;
    }
    if (d->flags & ~VMMU_REGION_FLAGS_ALL)
        return VMMU_EINVAL;
    if ((d->flags & VMMU_REGION_ROM_REPORT_WRITES) && d->type != VMMU_MEM_ROM)
        return VMMU_EINVAL;
    if ((d->flags & VMMU_REGION_LOG_DIRTY) && d->type != VMMU_MEM_RAM)
        return VMMU_EINVAL;
    if (d->size == 0)
        return VMMU_EINVAL;
    if ((d->gpa | d->size) & (VMMU_PAGE_SIZE - 1))
        return VMMU_EALIGN;
    uint64_t limit = 1ull << vm->gpa_bits;
    if (d->gpa >= limit || d->size > limit - d->gpa)
        return VMMU_ERANGE;
    return 0;
}

static int region_build(struct vmmu_vm *vm, const struct vmmu_region_desc *d,
                        struct vmmu_region **out)
{
    struct vmmu_region *r = vmmu__calloc(1, sizeof(*r));
    if (!r)
        return VMMU_ENOMEM;
    r->type = d->type;
    r->flags = d->flags;
    r->gfn = d->gpa >> VMMU_PAGE_SHIFT;
    r->npages = d->size >> VMMU_PAGE_SHIFT;
    r->opaque = d->opaque;
    if (d->mmio)
        r->mmio = *d->mmio;
    if (d->name)
        snprintf(r->name, sizeof(r->name), "%s", d->name);

    if (d->type == VMMU_MEM_RAM || d->type == VMMU_MEM_ROM) {
        /* One state byte per page, untouched (all clear) until used. */
        r->state_bytes = (r->npages + VMMU_PAGE_SIZE - 1) & VMMU_PAGE_MASK;
        void *st = mmap(NULL, r->state_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (st == MAP_FAILED) {
            free(r);
            return VMMU_ENOMEM;
        }
        r->state = st;
        if (d->host) {
            r->host = d->host;
        } else {
            int err = memfd_carve(vm, d->size, &r->host, &r->memfd_offset);
            if (err) {
                munmap(st, r->state_bytes);
                free(r);
                return err;
            }
            r->host_owned = true;
        }
    }
    *out = r;
    return 0;
}

int vmmu_region_add(struct vmmu_vm *vm, const struct vmmu_region_desc *desc, uint32_t *id)
{
    if (!vm || !desc)
        return VMMU_EINVAL;
    int err = validate_desc(vm, desc);
    if (err)
        return err;
    if (writer_reentered(vm))
        return VMMU_EBUSY;

    struct vmmu_p2m *p2m = &vm->p2m;
    uint64_t lo = desc->gpa >> VMMU_PAGE_SHIFT, hi = lo + (desc->size >> VMMU_PAGE_SHIFT);
    struct retire_list rl = {0};
    struct vmmu_region *r = NULL;

    vmmu__sync_map_lock(vm);
    unsigned at = region_index_above(p2m, lo);
    if (at < p2m->nregions && p2m->regions[at]->gfn < hi) {
        err = VMMU_EOVERLAP;
        goto out;
    }
    if (p2m->nregions >= p2m->max_regions) {
        err = VMMU_ELIMIT;
        goto out;
    }
    if (p2m->nregions == p2m->cap) {
        unsigned cap = p2m->cap ? p2m->cap * 2 : 16;
        struct vmmu_region **grown = vmmu__realloc(p2m->regions, cap * sizeof(*grown));
        if (!grown) {
            err = VMMU_ENOMEM;
            goto out;
        }
        p2m->regions = grown;
        p2m->cap = cap;
    }
    err = region_build(vm, desc, &r);
    if (err)
        goto out;
    err = ensure_nodes(p2m, p2m->root, p2m->levels - 1, 0, lo, hi);
    if (err) {
        clear_range(p2m, p2m->root, p2m->levels - 1, 0, lo, hi, 0, &rl);
        region_release(vm, r);
        goto out;
    }
    r->id = region_next_id(p2m);
    store_tags(p2m, p2m->root, p2m->levels - 1, 0, lo, hi, (uintptr_t)r | P2M_SLOT_REGION, &rl);
    memmove(&p2m->regions[at + 1], &p2m->regions[at],
            (p2m->nregions - at) * sizeof(p2m->regions[0]));
    p2m->regions[at] = r;
    p2m->nregions++;
    memfd_publish(vm, r);
    atomic_fetch_add_explicit(&p2m->generation, 1, memory_order_release);
    if (id)
        *id = r->id;
out:
    pthread_mutex_unlock(&vm->lock);
    /* Nodes replaced or pruned here were empty; readers that reach one read
     * holes, which is what they were, so freeing still waits for them:
     * outside the lock, since a reader may be blocked on it (a vCPU
     * thread asking the map something), unable to pass a quiescent state.
     * Offline meanwhile if the caller is a vCPU thread itself. */
    if (rl.n) {
        vmmu__sync_grace_period();
        vmmu__sync_map_lock(vm);
        retire_flush(p2m, &rl);
        pthread_mutex_unlock(&vm->lock);
    } else {
        free(rl.nodes);
    }
    if (!err) {
        /* vCPUs may hold entries that found a hole here. */
        struct vmmu_gpa_range range = {desc->gpa, desc->size};
        vmmu__sync_flush_gpas(vm, &range, 1);
    }
    return err;
}

int vmmu_region_remove(struct vmmu_vm *vm, uint32_t id)
{
    if (!vm)
        return VMMU_EINVAL;
    if (writer_reentered(vm))
        return VMMU_EBUSY;
    struct vmmu_p2m *p2m = &vm->p2m;
    struct retire_list rl = {0};

    vmmu__sync_map_lock(vm);
    int i = id ? region_index_by_id(p2m, id) : -1;
    if (i < 0) {
        pthread_mutex_unlock(&vm->lock);
        return VMMU_ENOENT;
    }
    struct vmmu_region *r = p2m->regions[i];
    clear_range(p2m, p2m->root, p2m->levels - 1, 0, r->gfn, r->gfn + r->npages,
                (uintptr_t)r | P2M_SLOT_REGION, &rl);
    memmove(&p2m->regions[i], &p2m->regions[i + 1],
            (p2m->nregions - (unsigned)i - 1) * sizeof(p2m->regions[0]));
    p2m->nregions--;
    atomic_fetch_add_explicit(&p2m->generation, 1, memory_order_release);
    pthread_mutex_unlock(&vm->lock);
    /* Every vCPU drops its entries for the range, the reclaim hooks drop
     * theirs, and one grace period covers the region and the nodes it
     * emptied.  Outside the lock: hooks may read the map. */
    struct vmmu_gpa_range range = {r->gfn << VMMU_PAGE_SHIFT, r->npages << VMMU_PAGE_SHIFT};
    vmmu__sync_reclaim(vm, &range, 1, VMMU_RECLAIM_REMOVE);
    vmmu__sync_map_lock(vm);
    retire_flush(p2m, &rl);
    region_release(vm, r);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int vmmu_region_replace(struct vmmu_vm *vm, uint32_t id, const struct vmmu_region_desc *desc,
                        uint32_t *new_id)
{
    if (!vm || !desc)
        return VMMU_EINVAL;
    int err = validate_desc(vm, desc);
    if (err)
        return err;
    if (writer_reentered(vm))
        return VMMU_EBUSY;
    struct vmmu_p2m *p2m = &vm->p2m;
    struct retire_list rl = {0};
    uint64_t lo = desc->gpa >> VMMU_PAGE_SHIFT, hi = lo + (desc->size >> VMMU_PAGE_SHIFT);

    vmmu__sync_map_lock(vm);
    int i = id ? region_index_by_id(p2m, id) : -1;
    if (i < 0) {
        pthread_mutex_unlock(&vm->lock);
        return VMMU_ENOENT;
    }
    struct vmmu_region *old = p2m->regions[i], *r = NULL;
    if (old->gfn != lo || old->gfn + old->npages != hi) {
        pthread_mutex_unlock(&vm->lock);
        return VMMU_EINVAL;
    }
    err = region_build(vm, desc, &r);
    if (err) {
        pthread_mutex_unlock(&vm->lock);
        return err;
    }
    r->id = region_next_id(p2m);
    /* Same range, so the tree already has every node the old region
     * needed: one pass overwrites each of its slots with the new tag, and
     * a reader finds the old region or the new one, never a hole. */
    store_tags(p2m, p2m->root, p2m->levels - 1, 0, lo, hi, (uintptr_t)r | P2M_SLOT_REGION, &rl);
    p2m->regions[i] = r;
    memfd_publish(vm, r);
    atomic_fetch_add_explicit(&p2m->generation, 1, memory_order_release);
    if (new_id)
        *new_id = r->id;
    pthread_mutex_unlock(&vm->lock);

    struct vmmu_gpa_range range = {desc->gpa, desc->size};
    vmmu__sync_reclaim(vm, &range, 1, VMMU_RECLAIM_REPLACE);
    vmmu__sync_map_lock(vm);
    retire_flush(p2m, &rl);
    region_release(vm, old);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

static void fill_info(const struct vmmu_vm *vm, const struct vmmu_region *r,
                      struct vmmu_region_info *out)
{
    memset(out, 0, sizeof(*out));
    out->id = r->id;
    out->type = r->type;
    out->gpa = r->gfn << VMMU_PAGE_SHIFT;
    out->size = r->npages << VMMU_PAGE_SHIFT;
    out->flags = region_flags(r);
    out->host = r->host;
    out->memfd = r->host_owned ? vm->memfd : -1;
    out->memfd_offset = r->host_owned ? r->memfd_offset : 0;
    memcpy(out->name, r->name, sizeof(out->name));
}

int vmmu_region_info(const struct vmmu_vm *vm, uint32_t id, struct vmmu_region_info *out)
{
    if (!vm || !out)
        return VMMU_EINVAL;
    struct vmmu_vm *mvm = (struct vmmu_vm *)vm; /* the lock is not part of the value */
    bool nested = vmmu__vm_in_foreach(mvm); /* the lock is this thread's already */
    if (!nested)
        vmmu__sync_map_lock(mvm);
    int i = id ? region_index_by_id(&vm->p2m, id) : -1;
    if (i >= 0)
        fill_info(vm, vm->p2m.regions[i], out);
    if (!nested)
        pthread_mutex_unlock(&mvm->lock);
    return i >= 0 ? 0 : VMMU_ENOENT;
}

int vmmu_region_find(const struct vmmu_vm *vm, uint64_t gpa, uint32_t *id)
{
    if (!vm || !id)
        return VMMU_EINVAL;
    if (gpa >> vm->gpa_bits)
        return VMMU_ERANGE;
    unsigned own = vmmu__read_begin();
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, gpa >> VMMU_PAGE_SHIFT, NULL);
    if (r)
        *id = r->id;
    vmmu__read_end(own);
    return r ? 0 : VMMU_EHOLE;
}

int vmmu_region_foreach(const struct vmmu_vm *vm,
                        int (*fn)(const struct vmmu_region_info *info, void *arg), void *arg)
{
    if (!vm || !fn)
        return VMMU_EINVAL;
    struct vmmu_vm *mvm = (struct vmmu_vm *)vm;
    if (writer_reentered(mvm))
        return VMMU_EBUSY;
    vmmu__sync_map_lock(mvm);
    vmmu__sync_locked();
    atomic_store(&mvm->foreach_owner, pthread_self());
    atomic_store(&mvm->in_foreach, 1);
    int ret = 0;
    for (unsigned i = 0; i < vm->p2m.nregions && !ret; i++) {
        struct vmmu_region_info info;
        fill_info(vm, vm->p2m.regions[i], &info);
        ret = fn(&info, arg);
    }
    atomic_store(&mvm->in_foreach, 0);
    pthread_mutex_unlock(&mvm->lock);
    vmmu__sync_unlocked();
    return ret;
}

const char *vmmu_mem_type_name(enum vmmu_mem_type type)
{
    switch (type) {
    case VMMU_MEM_HOLE: return "hole";
    case VMMU_MEM_RAM: return "ram";
    case VMMU_MEM_ROM: return "rom";
    case VMMU_MEM_MMIO: return "mmio";
    case VMMU_MEM_DEVICE: return "device";
    }
    return "unknown";
}

/* ---- lookup and page state ---------------------------------------------------- */

int vmmu_p2m_lookup(const struct vmmu_vm *vm, uint64_t gpa, struct vmmu_p2m_entry *out)
{
    if (!vm || !out)
        return VMMU_EINVAL;
    if (gpa >> vm->gpa_bits)
        return VMMU_ERANGE;
    uint64_t gen = atomic_load_explicit(&vm->p2m.generation, memory_order_acquire);
    uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
    unsigned own = vmmu__read_begin();
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
    out->generation = gen;
    if (!r) {
        vmmu__read_end(own);
        out->type = VMMU_MEM_HOLE;
        out->region_id = 0;
        out->page_state = 0;
        out->hva = NULL;
        out->region_gpa = out->region_size = 0;
        return 0;
    }
    out->type = r->type;
    out->region_id = r->id;
    out->region_gpa = r->gfn << VMMU_PAGE_SHIFT;
    out->region_size = r->npages << VMMU_PAGE_SHIFT;
    out->page_state = 0;
    out->hva = NULL;
    if (r->state) {
        uint8_t st = region_page_state(r, gfn);
        out->page_state = st;
        if (!(st & VMMU_PAGE_PAGED_OUT))
            out->hva = r->host + (gpa - out->region_gpa);
    }
    vmmu__read_end(own);
    return 0;
}

uint64_t vmmu_p2m_generation(const struct vmmu_vm *vm)
{
    return vm ? atomic_load_explicit(&vm->p2m.generation, memory_order_acquire) : 0;
}

int vmmu_page_state_get(const struct vmmu_vm *vm, uint64_t gpa, uint32_t *state)
{
    if (!vm || !state)
        return VMMU_EINVAL;
    if (gpa >> vm->gpa_bits)
        return VMMU_ERANGE;
    uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
    unsigned own = vmmu__read_begin();
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
    int rc = !r ? VMMU_EHOLE : !r->state ? VMMU_EINVAL : 0;
    if (!rc)
        *state = region_page_state(r, gfn);
    vmmu__read_end(own);
    return rc;
}

static int page_state_update(struct vmmu_vm *vm, uint64_t gfn, uint64_t npages, uint32_t set,
                             uint32_t clear);

int vmmu__page_state_update(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages, uint32_t set,
                            uint32_t clear, uint32_t allowed)
{
    if (!vm || !npages || ((set | clear) & ~allowed))
        return VMMU_EINVAL;
    uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
    if (gpa >> vm->gpa_bits || npages > vm->p2m.gfn_limit - gfn)
        return VMMU_ERANGE;
    unsigned own = vmmu__read_begin();
    int rc = page_state_update(vm, gfn, npages, set, clear);
    vmmu__read_end(own);
    return rc;
}

static int page_state_update(struct vmmu_vm *vm, uint64_t gfn, uint64_t npages, uint32_t set,
                             uint32_t clear)
{
    /* Check the whole run first so that a bad page changes nothing. */
    for (uint64_t g = gfn, end; g < gfn + npages; g = end) {
        const struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &end);
        if (!r)
            return VMMU_EHOLE;
        if (!r->state)
            return VMMU_EINVAL;
    }
    bool resident = false;
    int rc = 0;
    for (uint64_t g = gfn, end; g < gfn + npages; g = end) {
        struct vmmu_region *r = p2m_resolve(&vm->p2m, g, &end);
        if (!r || !r->state) {
            rc = VMMU_EHOLE; /* the map changed under us */
            break;
        }
        if (end > gfn + npages)
            end = gfn + npages;
        for (uint64_t p = g; p < end; p++) {
            /* One step, so that nobody sees the bits set but not yet
             * cleared (a bit named in both ends clear). */
            _Atomic uint8_t *b = &r->state[p - r->gfn];
            uint8_t was = atomic_load_explicit(b, memory_order_relaxed), now;
            do {
                now = (uint8_t)((was | set) & ~clear);
            } while (!atomic_compare_exchange_weak_explicit(b, &was, now, memory_order_acq_rel,
                                                            memory_order_relaxed));
            if (now & ~was & VMMU_PAGE_PAGED_OUT)
                atomic_fetch_add_explicit(&r->paged_out, 1, memory_order_relaxed);
            if ((was & ~now & VMMU_PAGE_PAGED_OUT) &&
                atomic_fetch_sub_explicit(&r->paged_out, 1, memory_order_relaxed) == 1)
                resident = true; /* the region's last paged-out page came back */
        }
    }
    if (resident)
        atomic_fetch_add_explicit(&vm->p2m.resident_regions, 1, memory_order_release);
    return rc;
}

int vmmu_page_state_update(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages, uint32_t set,
                           uint32_t clear)
{
    int rc = vmmu__page_state_update(vm, gpa, npages, set, clear, VMMU_PAGE_USER_BITS);
    if (rc == 0 && ((set & VMMU_PAGE_CODE) || (clear & VMMU_PAGE_DIRTY))) {
        /* Narrowed: cached write comparators must send the next write to
         * the slow path (see vmmu_page_state_change()). */
        struct vmmu_gpa_range range = {gpa & VMMU_PAGE_MASK, npages << VMMU_PAGE_SHIFT};
        vmmu__sync_flush_gpas(vm, &range, 1);
    }
    return rc;
}

uint64_t vmmu__p2m_metadata_bytes(const struct vmmu_vm *vm)
{
    uint64_t bytes = vm->p2m.nodes * sizeof(struct p2m_node) +
                     vm->p2m.root_slots * sizeof(vm->p2m.root[0]);
    for (unsigned i = 0; i < vm->p2m.nregions; i++)
        bytes += sizeof(struct vmmu_region) + vm->p2m.regions[i]->state_bytes;
    bytes += vm->p2m.cap * sizeof(vm->p2m.regions[0]);
    return bytes;
}
