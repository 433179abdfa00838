/* SPDX-License-Identifier: MIT */
/* Paging-structure caches and the walk that resumes below them (SDM Vol. 3A
 * 4.10.3), for 4- and 5-level paging.
 *
 * After a successful walk (its A bits set: SDM 4.10.3.1 caches only
 * entries with A=1), each non-leaf entry of level 2..5 is remembered with
 * the table it references and the rights accumulated down to it (AND of
 * R/W and U/S, OR of XD).  A later miss in the same region starts from the
 * deepest cached level: in a warm 2 MiB region it reads one entry, the PTE.
 * When the referenced table is RAM, its host address is cached as well, so
 * the PTE is one atomic load; that address is trusted only while the P2M
 * generation is unchanged, and every path that takes guest memory away
 * flushes the vCPU (vmmu_vcpu_tlb_flush_all) before the memory is reused.
 *
 * The resumed walk applies the same checks as the walker (P, reserved bits
 * by level and PS, rights, keys) using its helpers, and stores A/D bits
 * the same way: vmmu_x86_walk_commit(), a compare-and-swap per entry from
 * the value read.  If an entry changed meanwhile, the caller falls back to
 * a full walk (which has its own bounded restarts).  Stale cached upper
 * entries are what the architecture allows until the guest invalidates
 * (INVLPG, MOV to CR3, INVPCID drop them). */
#include <stddef.h>
#include <string.h>

#include "tlb/tlb_internal.h"
#include "x86/x86_internal.h"

#include "vmmu/error.h"
#include "vmmu/p2m.h"

#define ADDR_MASK_64 0x000ffffffffff000ull

static unsigned level_shift(unsigned level)
{
    return VMMU_PAGE_SHIFT + 9 * (level - 1);
}

static struct psc_entry *psc_slot(struct tlb_psc *p, unsigned level, uint64_t va)
{
    uint64_t key = va >> level_shift(level);
    switch (level) {
    case 2:
        return &p->l2[key & (PSC_WAYS_L2 - 1)];
    case 3:
        return &p->l3[key & (PSC_WAYS_L3 - 1)];
    case 4:
        return &p->l4[key & (PSC_WAYS_L4 - 1)];
    default:
        return &p->l5[key & (PSC_WAYS_L5 - 1)];
    }
}

void vmmu__psc_flush(struct vmmu_vcpu *v, struct tlb_psc *p)
{
    v->held &= ~p->held_bit;
    if (p->count == 0)
        return;
    uint32_t bit = p->held_bit;
    /* The warm miss's view: its tags only (nothing else is read without one). */
    memset(p, 0, offsetof(struct tlb_psc, warm));
    p->held_bit = bit;
    warm_l2_clear(&p->warm);
}

void vmmu__psc_forget_va(struct tlb_psc *p, uint64_t va)
{
    for (unsigned level = 2; level <= 5; level++) {
        struct psc_entry *pe = psc_slot(p, level, va);
        if (pe->tag != (va >> level_shift(level)) + 1)
            continue;
        pe->tag = 0;
        if (level == 2)
            p->warm.tag[pe - p->l2] = ~0ull;
    }
}

/* Look up the host address of the table @pe (of @level, for @va)
 * references under the P2M's current generation, and for a PDE the warm
 * miss's view of it: usable while the generation the table was looked up
 * under is the one its region cache holds. */
static void psc_look_up_table(struct vmmu_vcpu *v, struct tlb_psc *p, struct psc_entry *pe,
                              unsigned level, uint64_t va)
{
    struct vmmu_p2m_entry m;
    pe->table_host = NULL;
    pe->p2m_gen = PSC_NO_HOST;
    pe->region_id = 0;
    if (vmmu_p2m_lookup(v->vm, pe->table, &m) == 0 && m.type == VMMU_MEM_RAM && m.hva) {
        pe->table_host = m.hva;
        pe->p2m_gen = m.generation;
        pe->region_id = m.region_id;
    }
    if (level == 2) {
        unsigned w = (unsigned)(pe - p->l2);
        if (pe->table_host && pe->p2m_gen > v->warm_gen)
            vmmu__tlb_warm_forget(v, pe->p2m_gen); /* the P2M's generation only counts up */
        bool warm = pe->table_host && pe->p2m_gen == v->warm_gen;
        p->warm.tag[w] = warm ? va >> 21 : ~0ull;
        p->warm.ptes[w] = (const uint64_t *)(const void *)pe->table_host;
        p->warm.pbits[w] = PSC_PBITS(pe->nx, pe->writable, pe->user);
    }
}

/* Remember levels[0 .. nlevels-2] (the non-leaf entries) of a successful
 * walk of @va, accumulating rights from (@user, @writable, @nx), the
 * rights above levels[0]. */
static void store_levels(struct vmmu_vcpu *v, struct tlb_psc *p, uint64_t va,
                         const struct vmmu_x86_walk_level *levels, unsigned nlevels, bool user,
                         bool writable, bool nx)
{
    bool nx_on = (v->pg.efer & VMMU_X86_EFER_NXE) != 0;

    for (unsigned i = 0; i + 1 < nlevels; i++) {
        const struct vmmu_x86_walk_level *lv = &levels[i];
        uint64_t e = lv->new_value;
        user = user && (e & VMMU_X86_PTE_US);
        writable = writable && (e & VMMU_X86_PTE_RW);
        nx = nx || (nx_on && (e & VMMU_X86_PTE_NX));
        if (lv->level < 2 || !(e & VMMU_X86_PTE_A))
            continue;
        struct psc_entry *pe = psc_slot(p, lv->level, va);
        pe->tag = (va >> level_shift(lv->level)) + 1;
        pe->table = levels[i + 1].gpa & VMMU_PAGE_MASK;
        pe->user = user;
        pe->writable = writable;
        pe->nx = nx;
        psc_look_up_table(v, p, pe, lv->level, va);
        p->count++;
        v->held |= p->held_bit;
    }
}

void vmmu__psc_store(struct vmmu_vcpu *v, struct tlb_psc *p, const struct vmmu_x86_walk *w)
{
    store_levels(v, p, w->va, w->levels, w->nlevels, true, true, false);
}

static void resume_fault(struct vmmu_x86_walk *w, uint32_t code)
{
    w->ok = false;
    w->fault.vector = VMMU_X86_VEC_PF;
    w->fault.error_code = code;
    w->fault.cr2 = w->va;
}

int vmmu__psc_walk(struct vmmu_vcpu *v, struct tlb_psc *p, uint64_t va, unsigned access,
                   struct vmmu_x86_walk *w)
{
    const struct vmmu_x86_paging *pg = &v->pg;
    unsigned top = pg->mode == VMMU_X86_MODE_5LEVEL ? 5 : 4;

    if (p->count == 0 || !vmmu_x86_canonical(pg, va))
        return 0;
    struct psc_entry *hit = NULL;
    unsigned level;
    for (level = 2; level <= top; level++) {
        struct psc_entry *e = psc_slot(p, level, va);
        if (e->tag == (va >> level_shift(level)) + 1) {
            hit = e;
            break;
        }
    }
    if (!hit)
        return 0;
    v->stats.psc_hits++;
    uint64_t gen = v->host_gen; /* see do_walk() in fill.c */
    bool host_ok = hit->table_host && hit->p2m_gen == vmmu_p2m_generation(v->vm);

    vmmu__x86_walk_reset(w, pg, va, access);

    struct vmmu__x86_leaf leaf = {.user = hit->user, .writable = hit->writable, .nx = hit->nx,
                                  .pkey = 0};
    bool nx_on = (pg->efer & VMMU_X86_EFER_NXE) != 0;
    uint64_t table = hit->table;
    uint64_t leaf_value = 0;
    bool large = false;
    uint64_t size = 0;

    for (unsigned l = level - 1; l >= 1; l--) {
        unsigned shift = level_shift(l);
        uint64_t off = ((va >> shift) & 511) * 8;
        struct vmmu__x86_entry e;
        if (host_ok && l == level - 1) {
            e.host = hit->table_host + off;
            e.value = __atomic_load_n((const uint64_t *)e.host, __ATOMIC_ACQUIRE);
            e.region_id = hit->region_id;
        } else {
            int rc = vmmu__x86_read_entry(pg->vm, table + off, 8, &e);
            if (rc < 0)
                return rc;
        }
        struct vmmu_x86_walk_level *lv = &w->levels[w->nlevels++];
        lv->level = l;
        lv->size = 8;
        lv->gpa = table + off;
        lv->value = lv->new_value = e.value;
        lv->host = e.host;
        lv->region_id = e.region_id;
        uint64_t ev = e.value;

        if (!(ev & VMMU_X86_PTE_P)) {
            resume_fault(w, vmmu__x86_pf_access_bits(pg, access));
            return 1;
        }
        bool ps = l >= 2 && (ev & VMMU_X86_PTE_PS);
        if (ev & pg->rsvd_[ps][l]) {
            resume_fault(w, VMMU_X86_PF_P | VMMU_X86_PF_RSVD | vmmu__x86_pf_access_bits(pg, access));
            return 1;
        }
        leaf.writable = leaf.writable && (ev & VMMU_X86_PTE_RW);
        leaf.user = leaf.user && (ev & VMMU_X86_PTE_US);
        if (nx_on && (ev & VMMU_X86_PTE_NX))
            leaf.nx = true;
        if (l == 1 || ps) {
            size = 1ull << shift;
            w->gpa = (ev & ADDR_MASK_64 & ~(size - 1)) | (va & (size - 1));
            leaf.pkey = (unsigned)((ev >> 59) & 0xf);
            leaf_value = ev;
            large = ps;
            break;
        }
        table = ev & ADDR_MASK_64;
    }

    uint32_t code = vmmu__x86_perm_check(pg, access, &leaf);
    if (code) {
        resume_fault(w, code);
        return 1;
    }
    w->ok = true;
    w->page_size = size;
    w->user = leaf.user;
    w->writable = leaf.writable;
    w->nx = leaf.nx;
    w->pkey = leaf.pkey;
    w->rights = vmmu__x86_perm_rights(pg, access, &leaf);
    w->global = (leaf_value & VMMU_X86_PTE_G) && (pg->cr4 & VMMU_X86_CR4_PGE);
    uint64_t pat_bit = large ? VMMU_X86_PTE_PAT_LARGE : (1ull << 7);
    w->pat_index = ((leaf_value & pat_bit) ? 4u : 0u) |
                   ((leaf_value & VMMU_X86_PTE_PCD) ? 2u : 0u) |
                   ((leaf_value & VMMU_X86_PTE_PWT) ? 1u : 0u);
    if (pg->cr4 & VMMU_X86_CR4_PCIDE)
        w->pcid = (unsigned)(pg->cr3 & 0xfff);
    /* SDM 4.8: A in every entry used (the cached ones already have it), D
     * in the leaf for a write. */
    for (unsigned i = 0; i < w->nlevels; i++)
        w->levels[i].new_value |= VMMU_X86_PTE_A;
    struct vmmu_x86_walk_level *last = &w->levels[w->nlevels - 1];
    if (access & VMMU_X86_ACC_WRITE)
        last->new_value |= VMMU_X86_PTE_D;
    w->dirty = (last->new_value & VMMU_X86_PTE_D) != 0;

    int rc = vmmu_x86_walk_commit(pg, w);
    if (rc == VMMU_EBUSY) {
        v->stats.psc_hits--; /* an entry changed under us: walk from the top */
        return 0;
    }
    if (rc < 0)
        return rc;
    if (v->host_gen == gen) {
        /* A walk resumed above level 2 read upper entries: remember them
         * too.  And an entry whose table was looked up under an older P2M
         * generation is looked up again: else it would stay so (the warm
         * miss keeps away from it) until a flush dropped it, after any
         * change of the map anywhere in the vm. */
        if (w->nlevels > 1)
            store_levels(v, p, va, w->levels, w->nlevels, hit->user, hit->writable, hit->nx);
        if (!host_ok)
            psc_look_up_table(v, p, hit, level, va);
    }
    return 1;
}
