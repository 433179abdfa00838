/* SPDX-License-Identifier: MIT */
/* The x86 page walk (SDM Vol. 3A chapter 4).
 *
 * vmmu_x86_walk_peek() reads top to bottom, one level after another:
 * read the entry through the P2M, stop on P=0 (not present) or on a
 * reserved bit, fold R/W, U/S and XD into the effective rights, descend
 * or stop at a leaf.  Only then are permissions decided (perm.c) and the
 * A/D updates planned.  Nothing is written: A/D bits are stored by
 * vmmu_x86_walk_commit(), and only for walks that succeeded, as KVM does.
 *
 * The work is bounded by the mode: at most five entries are read, and
 * vmmu_x86_walk() restarts at most VMMU_X86_WALK_RESTARTS_MAX times. */
#include <string.h>

#include "x86/x86_internal.h"

#include "core/vm_internal.h"

#include "vmmu/error.h"
#include "vmmu/p2m.h"

/* Address bits of an 8-byte entry (PAE and IA-32e): 51:12.  Bits above
 * MAXPHYADDR are reserved and were checked before this is used. */
#define ADDR_MASK_64 0x000ffffffffff000ull
/* 32-bit paging: a PDE or PTE holds physical-address bits 31:12. */
#define ADDR_MASK_32 0xfffff000ull
/* 32-bit paging, 4 MiB PDE: bits 31:22 ... */
#define ADDR_MASK_4M 0xffc00000ull

bool vmmu_x86_canonical(const struct vmmu_x86_paging *pg, uint64_t va)
{
    unsigned bits;

    if (!pg)
        return false;
    if (pg->mode == VMMU_X86_MODE_4LEVEL)
        bits = 48;
    else if (pg->mode == VMMU_X86_MODE_5LEVEL)
        bits = 57;
    else
        return true;
    /* SDM 3.3.7.1: bits 63 down to the most significant implemented bit
     * must all equal that bit. */
    int64_t extended = (int64_t)(va << (64 - bits)) >> (64 - bits);
    return (uint64_t)extended == va;
}

static void set_pf(struct vmmu_x86_walk *w, uint32_t error_code)
{
    w->ok = false;
    w->fault.vector = VMMU_X86_VEC_PF;
    w->fault.error_code = error_code;
    /* SDM 4.7: CR2 receives the linear address that caused the fault. */
    w->fault.cr2 = w->va;
}

/* Walk parameters of a mode: entry size, index width, top level, first table. */
struct walk_shape {
    unsigned entry_size;
    unsigned index_bits;
    unsigned top;
    uint64_t table;
    uint64_t addr_mask;
};

void vmmu__x86_walk_reset(struct vmmu_x86_walk *w, const struct vmmu_x86_paging *pg,
                          uint64_t va, unsigned access)
{
    /* Only the fixed part: levels[] is filled as far as nlevels says. */
    w->va = va;
    w->access = access;
    w->mode = pg->mode;
    w->ok = false;
    w->gpa = 0;
    w->page_size = 0;
    w->rights = 0;
    w->user = w->writable = w->nx = w->global = w->dirty = false;
    w->pkey = 0;
    w->pat_index = 0;
    w->pcid = 0;
    w->nlevels = 0;
    w->fault.vector = VMMU_X86_FAULT_NONE;
    w->fault.error_code = 0;
    w->fault.cr2 = 0;
    w->restarts = 0;
    w->committed = false;
}

static struct vmmu_x86_walk_level *push_level(struct vmmu_x86_walk *w, unsigned level,
                                              unsigned size, uint64_t gpa,
                                              const struct vmmu__x86_entry *e)
{
    struct vmmu_x86_walk_level *lv = &w->levels[w->nlevels++];
    lv->level = level;
    lv->size = size;
    lv->gpa = gpa;
    lv->value = e->value;
    lv->new_value = e->value;
    lv->host = e->host;
    lv->region_id = e->region_id;
    return lv;
}

/* Fill the translation fields of a walk that reached its leaf, decide the
 * permissions and plan the A/D updates. */
static void finish_leaf(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *w,
                        const struct vmmu__x86_leaf *leaf, uint64_t leaf_value, bool large,
                        unsigned first_ad_level)
{
    uint32_t code = vmmu__x86_perm_check(pg, w->access, leaf);
    if (code) {
        set_pf(w, code);
        return;
    }

    w->ok = true;
    w->user = leaf->user;
    w->writable = leaf->writable;
    w->nx = leaf->nx;
    w->pkey = leaf->pkey;
    w->rights = vmmu__x86_perm_rights(pg, w->access, leaf);
    /* SDM 4.10.2.4: G matters only with CR4.PGE=1. */
    w->global = (leaf_value & VMMU_X86_PTE_G) && (pg->cr4 & VMMU_X86_CR4_PGE);
    /* SDM 4.9.2: the PAT bit is bit 7 of a PTE, bit 12 of a large leaf. */
    uint64_t pat_bit = large ? VMMU_X86_PTE_PAT_LARGE : (1ull << 7);
    w->pat_index = ((leaf_value & pat_bit) ? 4u : 0u) | ((leaf_value & VMMU_X86_PTE_PCD) ? 2u : 0u) |
                   ((leaf_value & VMMU_X86_PTE_PWT) ? 1u : 0u);
    if (pg->cr4 & VMMU_X86_CR4_PCIDE)
        w->pcid = (unsigned)(pg->cr3 & 0xfff);

    /* SDM 4.8: the CPU sets A in every paging-structure entry it used and,
     * for a write, D in the entry that maps the page.  PAE PDPTEs are
     * registers and have no A/D bits (levels below first_ad_level). */
    for (unsigned i = first_ad_level; i < w->nlevels; i++)
        w->levels[i].new_value |= VMMU_X86_PTE_A;
    struct vmmu_x86_walk_level *last = &w->levels[w->nlevels - 1];
    if (w->access & VMMU_X86_ACC_WRITE)
        last->new_value |= VMMU_X86_PTE_D;
    w->dirty = (last->new_value & VMMU_X86_PTE_D) != 0;
}

static int walk_paged(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *w,
                      struct walk_shape shape, struct vmmu__x86_leaf *leaf, unsigned first_ad_level)
{
    uint64_t va = w->va;
    uint64_t table = shape.table;
    unsigned index_mask = (1u << shape.index_bits) - 1;
    bool nx_on = (pg->efer & VMMU_X86_EFER_NXE) && pg->mode >= VMMU_X86_MODE_PAE;
    bool ps_on = pg->mode != VMMU_X86_MODE_32 || (pg->cr4 & VMMU_X86_CR4_PSE);

    for (unsigned level = shape.top; level >= 1; level--) {
        unsigned shift = 12 + shape.index_bits * (level - 1);
        uint64_t gpa = table + (uint64_t)((va >> shift) & index_mask) * shape.entry_size;
        struct vmmu__x86_entry e;
        int rc = vmmu__x86_read_entry_level(pg->vm, gpa, shape.entry_size, level, &e);
        if (rc < 0)
            return rc;
        push_level(w, level, shape.entry_size, gpa, &e);
        uint64_t v = e.value;

        /* SDM 4.7: P=0 ends the walk with a not-present fault; reserved
         * bits are then not looked at. */
        if (!(v & VMMU_X86_PTE_P)) {
            set_pf(w, vmmu__x86_pf_access_bits(pg, w->access));
            return 0;
        }
        /* PS selects a large page in PDEs (PSE or PAE/IA-32e) and PDPTEs;
         * in PML4Es/PML5Es it is reserved (in the mask); in PTEs bit 7 is
         * PAT. */
        bool ps = level >= 2 && ps_on && (v & VMMU_X86_PTE_PS);
        /* SDM 4.7: a reserved bit in a present entry: RSVD=1 and P=1. */
        if (v & pg->rsvd_[ps][level]) {
            set_pf(w, VMMU_X86_PF_P | VMMU_X86_PF_RSVD | vmmu__x86_pf_access_bits(pg, w->access));
            return 0;
        }
        /* SDM 4.6.1: an address is writable / user-mode only if R/W / U/S
         * is 1 in every entry used; not executable if XD is 1 in any. */
        leaf->writable = leaf->writable && (v & VMMU_X86_PTE_RW);
        leaf->user = leaf->user && (v & VMMU_X86_PTE_US);
        if (nx_on && (v & VMMU_X86_PTE_NX))
            leaf->nx = true;

        if (level == 1 || ps) {
            uint64_t size = 1ull << shift;
            if (pg->mode == VMMU_X86_MODE_32 && ps) {
                /* SDM 4.3 Table 4-4: PSE-36 puts physical bits 39:32 in
                 * PDE bits 20:13 (those beyond MAXPHYADDR are reserved). */
                w->gpa = (v & ADDR_MASK_4M) | (((v >> 13) & 0xff) << 32) | (va & (size - 1));
            } else {
                w->gpa = (v & shape.addr_mask & ~(size - 1)) | (va & (size - 1));
            }
            w->page_size = size;
            /* SDM 4.6.2: the protection key is in bits 62:59 of the leaf,
             * in IA-32e paging only. */
            if (pg->mode >= VMMU_X86_MODE_4LEVEL)
                leaf->pkey = (unsigned)((v >> 59) & 0xf);
            finish_leaf(pg, w, leaf, v, ps, first_ad_level);
            return 0;
        }
        table = v & shape.addr_mask;
    }
    return 0; /* not reached: level 1 is always a leaf */
}

static int walk_peek(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                     struct vmmu_x86_walk *out);

/* The walker reads the map: on a thread that is not an online reader (a
 * host thread's walk) each call is a read-side section of its own. */
int vmmu_x86_walk_peek(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                       struct vmmu_x86_walk *out)
{
    unsigned section = vmmu__read_begin();
    int rc = walk_peek(pg, va, access, out);
    vmmu__read_end(section);
    return rc;
}

static int walk_peek(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                     struct vmmu_x86_walk *out)
{
    if (!vmmu__x86_ready(pg) || !out || (access & ~VMMU_X86_ACC_ALL))
        return VMMU_EINVAL;
    if ((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH))
        return VMMU_EINVAL;

    struct vmmu__x86_leaf leaf = {.user = true, .writable = true, .nx = false, .pkey = 0};
    struct walk_shape shape;
    unsigned first_ad_level = 0;

    /* Outside IA-32e mode linear addresses have 32 bits. */
    if (pg->mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    vmmu__x86_walk_reset(out, pg, va, access);

    switch (pg->mode) {
    case VMMU_X86_MODE_NONE:
        /* SDM 4.1.1: without paging, linear addresses are physical. */
        out->ok = true;
        out->gpa = va;
        out->page_size = 4096;
        out->user = out->writable = true;
        out->rights = VMMU_X86_RIGHT_READ | VMMU_X86_RIGHT_WRITE | VMMU_X86_RIGHT_FETCH;
        return 0;

    case VMMU_X86_MODE_32:
        shape = (struct walk_shape){4, 10, 2, pg->cr3 & ADDR_MASK_32, ADDR_MASK_32};
        break;

    case VMMU_X86_MODE_PAE: {
        /* SDM 4.4.1: the PDPTE comes from the PDPTE registers, loaded when
         * CR3/CR0/CR4 changed; memory is not read again here.  It has no
         * rights bits and no A bit; its reserved bits were checked when it
         * was loaded. */
        unsigned i = (unsigned)(va >> 30) & 3;
        struct vmmu__x86_entry reg = {pg->pdpte[i], NULL, 0};
        push_level(out, 3, 8, (pg->cr3 & 0xffffffe0ull) + 8 * i, &reg);
        if (!(reg.value & VMMU_X86_PTE_P)) {
            set_pf(out, vmmu__x86_pf_access_bits(pg, access));
            return 0;
        }
        shape = (struct walk_shape){8, 9, 2, reg.value & ADDR_MASK_64, ADDR_MASK_64};
        first_ad_level = 1;
        break;
    }

    case VMMU_X86_MODE_4LEVEL:
    case VMMU_X86_MODE_5LEVEL:
        /* SDM 3.3.7.1, 6.15: a non-canonical address faults before any
         * walk, with #SS(0) for stack accesses, else #GP(0); CR2 is not
         * written. */
        if (!vmmu_x86_canonical(pg, va)) {
            out->fault.vector =
                (access & VMMU_X86_ACC_STACK) ? VMMU_X86_VEC_SS : VMMU_X86_VEC_GP;
            return 0;
        }
        shape = (struct walk_shape){8, 9, pg->mode == VMMU_X86_MODE_5LEVEL ? 5u : 4u,
                                    pg->cr3 & ADDR_MASK_64, ADDR_MASK_64};
        break;

    default:
        return VMMU_EINVAL;
    }
    return walk_paged(pg, out, shape, &leaf, first_ad_level);
}

/* Store one planned A/D update.  Returns false if the entry changed. */
static bool store_ad(struct vmmu_x86_walk_level *lv)
{
    if (lv->size == 4) {
        uint32_t expected = (uint32_t)lv->value;
        return __atomic_compare_exchange_n((uint32_t *)lv->host, &expected, (uint32_t)lv->new_value,
                                           false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    uint64_t expected = lv->value;
    return __atomic_compare_exchange_n((uint64_t *)lv->host, &expected, lv->new_value, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/*
 * The RAM region an update of @p lv may go to, or NULL if the record is
 * not one a walk of @p vm could have produced: the entry 4 or 8 bytes,
 * naturally aligned, inside the vm's width, the update only adding A and
 * D, and its host address the one the map gives the entry's region.  A
 * record whose region is gone (or was replaced) is stale, not malformed:
 * *stale says so.  Read from the map as the entry was (the walker is a
 * grace-period reader), never under the map's lock: a vCPU thread waits
 * for that lock offline, and a walk that went offline halfway would hand
 * its caller a translation older than the flushes it acted on meanwhile.
 */
static const struct vmmu_region *commit_target(const struct vmmu_vm *vm,
                                               const struct vmmu_x86_walk_level *lv, bool *stale)
{
    const uint64_t ad = VMMU_X86_PTE_A | VMMU_X86_PTE_D;
    if ((lv->size != 4 && lv->size != 8) || (lv->gpa & (lv->size - 1)) ||
        (lv->gpa >> vm->gpa_bits) || ((lv->new_value ^ lv->value) & ~ad) ||
        (lv->value & ~lv->new_value) || (lv->size == 4 && (lv->new_value >> 32)))
        return NULL;
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, lv->gpa >> VMMU_PAGE_SHIFT, NULL);
    if (!r || r->id != lv->region_id || r->type != VMMU_MEM_RAM) {
        *stale = true;
        return NULL;
    }
    if ((uint8_t *)lv->host != r->host + (lv->gpa - (r->gfn << VMMU_PAGE_SHIFT)))
        return NULL;
    return r;
}

static int walk_commit(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *walk);

int vmmu_x86_walk_commit(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *walk)
{
    if (!vmmu__x86_ready(pg) || !walk || walk->nlevels > VMMU_X86_LEVELS_MAX)
        return VMMU_EINVAL;
    if (!walk->ok)
        return 0;
    unsigned section = vmmu__read_begin();
    int rc = walk_commit(pg, walk);
    vmmu__read_end(section);
    return rc;
}

static int walk_commit(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *walk)
{
    /* The levels with an update (usually none: A is set once). */
    unsigned todo = 0;
    for (unsigned i = 0; i < walk->nlevels; i++)
        if (walk->levels[i].new_value != walk->levels[i].value && walk->levels[i].host)
            todo |= 1u << i;
    /* Every update is checked before any is stored: a record that was
     * altered after the walk stores nothing. */
    const struct vmmu_region *target[VMMU_X86_LEVELS_MAX];
    bool stale = false;
    for (unsigned t = todo; t; t &= t - 1) {
        unsigned i = (unsigned)__builtin_ctz(t);
        target[i] = commit_target(pg->vm, &walk->levels[i], &stale);
        if (!target[i])
            return stale ? VMMU_EBUSY : VMMU_EINVAL;
    }
    for (unsigned t = todo; t; t &= t - 1) {
        unsigned i = (unsigned)__builtin_ctz(t);
        struct vmmu_x86_walk_level *lv = &walk->levels[i];
        if (!store_ad(lv))
            return VMMU_EBUSY;
        /* An A/D update is a write to the page-table page: dirty logging
         * must see it like any other write. */
        if (region_flags(target[i]) & VMMU_REGION_LOG_DIRTY)
            (void)vmmu_page_state_update(pg->vm, lv->gpa, 1, VMMU_PAGE_DIRTY, 0);
    }
    walk->committed = true;
    return 0;
}

int vmmu_x86_walk(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                  struct vmmu_x86_walk *out)
{
    for (unsigned restarts = 0;; restarts++) {
        int rc = vmmu_x86_walk_peek(pg, va, access, out);
        if (rc < 0)
            return rc;
        out->restarts = restarts;
        if (!out->ok)
            return 0;
        rc = vmmu_x86_walk_commit(pg, out);
        if (rc != VMMU_EBUSY)
            return rc;
        /* An entry changed between the read and the compare-and-swap
         * (another vCPU set its A bit, or the guest rewrote it): the
         * translation may be different now, so walk again, a bounded
         * number of times: a hostile guest rewriting its tables in a loop
         * must not keep the host here. */
        if (restarts == VMMU_X86_WALK_RESTARTS_MAX)
            return VMMU_EBUSY;
    }
}
