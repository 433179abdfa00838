/* SPDX-License-Identifier: MIT */
/*
 * Inside the per-vCPU TLB: the vCPU object, PCID slots, mmu contexts with
 * their hot and cold tables and victim arrays, and the paging-structure
 * caches.  Not installed.
 *
 * Shape.
 *
 *   vcpu ── fast (current table + mask: what the inline hit path reads)
 *        ── pg   (struct vmmu_x86_paging, changed only through vcpu.c)
 *        ── slot[VMMU_VCPU_PCID_SLOTS]   one per resident PCID
 *              ── ctx[USER, SUP, SUP_AC]  hot[n], cold[n], victims
 *              ── psc                     upper-level entries of that PCID
 *
 * Entry validity.  A hot entry is valid unless all three comparators are
 * VMMU_TLB_CMP_INVALID (a fill always makes the comparator of the kind it
 * served something else), so a flush is one memset of the hot table; cold
 * entries are only read behind a valid hot entry.
 *
 * Bookkeeping that keeps invalidation proportional to what a context holds:
 *  - used: valid hot entries (exact); a context with used == 0 and no
 *    victims flushes in O(1).
 *  - filled[]: the indices filled since the last flush, up to
 *    TLB_FILLED_LOG; while it has not overflowed, flushes and scans visit
 *    only those indices instead of the whole table.
 *  - nglobal, nlarge, large_lo/hi, large_shifts, ukeys, skeys: upper bounds
 *    (reset by a full flush) that let CR3 writes, INVLPG and key changes
 *    skip contexts that cannot hold what they drop.
 */
#ifndef VMMU_TLB_INTERNAL_H
#define VMMU_TLB_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmmu/tlb.h"
#include "vmmu/vcpu.h"
#include "vmmu/x86.h"

enum tlb_ctx_id { CTX_USER = 0, CTX_SUP = 1, CTX_SUP_AC = 2, CTX_COUNT = 3 };

/* Indices remembered per flush interval before falling back to whole-table work. */
#define TLB_FILLED_LOG 64
/* First bit of the paging-structure caches in vmmu_vcpu::held. */
#define TLB_HELD_PSC (VMMU_VCPU_PCID_SLOTS * CTX_COUNT)
_Static_assert(TLB_HELD_PSC + VMMU_VCPU_PCID_SLOTS <= 32, "vmmu_vcpu::held has 32 bits");
/* Bits of a context's distinct-page sketch (see ctx_resize_target()). */
#define TLB_SKETCH_BITS 4096u
/* Page-ins one fill attempts before reporting VMMU_EPAGEDOUT (the host
 * took the page away again each time). */
#define TLB_PAGEIN_ROUNDS 64
/* Flushes per resize window (see tlb_ctx_flush()). */
#define TLB_RESIZE_WINDOW 16

/* What a hot entry was built from. */
struct tlb_cold {
    uint64_t va;         /* the 4 KiB page translated */
    uint64_t gpa;        /* its guest-physical page */
    uint64_t large_base; /* va of the guest page that mapped it (== va for 4 KiB) */
    uint64_t p2m_gen;    /* P2M generation of the lookup that built it */
    uint32_t region_id;
    uint16_t pcid;
    uint8_t page_shift;  /* 12, 21, 22 or 30 */
    uint8_t global;
    uint8_t rights;      /* VMMU_X86_RIGHT_* in its context */
    uint8_t user;        /* a user-mode page (its key is in PKRU, else PKRS) */
    uint8_t pkey;
    uint8_t type;        /* enum vmmu_mem_type */
};

struct tlb_ctx {
    struct vmmu_tlb_entry *hot;
    struct tlb_cold *cold;
    unsigned n;    /* entries, power of two */
    unsigned used; /* valid hot entries */
    unsigned nfilled;
    uint16_t filled[TLB_FILLED_LOG];
    unsigned nglobal, nlarge;
    uint64_t large_lo, large_hi; /* [lo, hi) covers every large-page-derived entry */
    unsigned large_shifts;       /* bit s set: entries from pages of 1 << s bytes */
    uint16_t ukeys, skeys;       /* protection keys of user / supervisor pages held */
    /* Resize window (see tlb_ctx_flush()): fills since the last flush, the
     * peak demand over the window, flushes in the window. */
    unsigned fills, peak, window;
    /* Distinct pages filled since the last flush, counted as bits set in
     * a 4096-bit sketch (pages hashed; linear counting, see
     * ctx_resize_target()). */
    unsigned sketch_bits;
    uint64_t sketch[TLB_SKETCH_BITS / 64];
    uint32_t held_bit; /* this context's bit in vmmu_vcpu::held */
    uint8_t id;        /* enum tlb_ctx_id */
    /* Victims: valid entries pushed out of hot[] by a fill. */
    struct vmmu_tlb_entry vhot[VMMU_TLB_VICTIMS];
    struct tlb_cold vcold[VMMU_TLB_VICTIMS];
    unsigned vused, vnext;
    uint64_t vtags; /* byte i: victim_tag() of victim i's page, 0 if empty */
};

/* Paging-structure caches of one PCID (4- and 5-level paging).  Level L
 * caches the entry of level L (2 = PDE, 3 = PDPTE, 4 = PML4E, 5 = PML5E)
 * that references a table, keyed by the va bits it translates. */
#define PSC_LEVELS 4 /* levels 2..5 */
#define PSC_WAYS_L2 64
#define PSC_WAYS_L3 16
#define PSC_WAYS_L4 4
#define PSC_WAYS_L5 2

struct psc_entry {
    uint64_t tag;        /* (va >> level shift) + 1; 0 = empty */
    uint64_t table;      /* gpa of the table this entry references */
    uint8_t *table_host; /* host address of that table (RAM), else NULL */
    uint64_t p2m_gen;    /* generation under which table_host was looked up */
    uint32_t region_id;  /* region of the table (for dirty logging of A/D updates) */
    bool user, writable, nx; /* rights accumulated down to and including this entry */
    uint8_t bits;            /* the same as user | writable << 1 | nx << 2 */
};

struct tlb_psc {
    unsigned count; /* entries stored since the last flush */
    uint32_t held_bit; /* this cache's bit in vmmu_vcpu::held */
    struct psc_entry l2[PSC_WAYS_L2], l3[PSC_WAYS_L3], l4[PSC_WAYS_L4], l5[PSC_WAYS_L5];
};

struct tlb_slot {
    bool valid;
    uint16_t pcid;
    uint64_t last_use; /* LRU stamp */
    struct tlb_ctx ctx[CTX_COUNT];
    struct tlb_psc psc;
};

struct vmmu_vcpu {
    struct vmmu_tlb_fast fast; /* first: the hit path reads it through the vCPU pointer */
    struct vmmu_x86_paging pg;
    struct vmmu_vm *vm;
    unsigned cur_slot;
    enum tlb_ctx_id cur_ctx;
    uint64_t lru_clock;
    struct tlb_slot slot[VMMU_VCPU_PCID_SLOTS];
    struct vmmu_tlb_stats stats;
    /* What may hold something: bit slot * CTX_COUNT + ctx for each context
     * filled since its last flush, bit TLB_HELD_PSC + slot for each
     * paging-structure cache.  A flush of everything visits only these,
     * so flushing a vCPU that holds nothing touches no table. */
    uint32_t held;
    /* The warm miss's view of the current slot (set by vmmu__tlb_select()):
     * the current context and the supervisor one (implicit accesses), the
     * paging-structure caches, the PCID, VMMU_X86_PTE_G if CR4.PGE=1, and
     * the rights of a leaf in each context by its bits U | R/W << 1 |
     * XD << 2, without protection keys, for CR0.WP | CR4.SMEP | CR4.SMAP
     * equal to rights_key. */
    struct tlb_ctx *fill_cur, *fill_sup;
    struct tlb_psc *fill_psc;
    uint64_t fill_gmask;
    uint64_t rights_key;
    uint16_t fill_pcid;
    uint8_t rights_tab[CTX_COUNT][8];
    /* The region of the last warm miss's data page, under P2M generation
     * warm_region_gen. */
    const struct vmmu_region *warm_region;
    uint64_t warm_region_gen;
    bool psc_off; /* benchmarks: walk from the top on every miss */
    bool resize_qemu; /* benchmarks: QEMU's 30/70 % resize rule instead of the demand rule */
    struct sync_slot *sync; /* src/sync: this vCPU's id and request slot */
    /* The access part (src/access/), which sits on the TLB, keeps its
     * per-vCPU state here and steers the fill with the other two fields:
     * latch_walks is set while the replay latch is active, so a fill walks
     * from the top and every entry read passes the latch's hook; watch_kinds
     * is non-NULL while the vCPU has watchpoints and returns which access
     * kinds (bit 1 << enum vmmu_tlb_kind) of a linear page are watched, so
     * the fill marks those comparators VMMU_TLB_FLAG_WATCH. */
    struct vmmu__access_vcpu *access;
    bool latch_walks;
    unsigned (*watch_kinds)(const struct vmmu_vcpu *v, uint64_t page);
};

/* ---- src/access: per-vCPU state, made and freed with the vCPU ------------ */
int vmmu__access_vcpu_init(struct vmmu_vcpu *v);
void vmmu__access_vcpu_fini(struct vmmu_vcpu *v);

/* ---- tlb.c: tables ------------------------------------------------------- */
int vmmu__tlb_ctx_init(struct tlb_ctx *c, unsigned n);
void vmmu__tlb_ctx_fini(struct tlb_ctx *c);
/* Drop everything in @c; may resize it (the caller reselects the fast view). */
void vmmu__tlb_ctx_flush(struct vmmu_vcpu *v, struct tlb_ctx *c);
/* Drop the non-global entries of @c. */
void vmmu__tlb_ctx_flush_nonglobal(struct vmmu_vcpu *v, struct tlb_ctx *c);
/* Drop the translations of the 4 KiB page @page in @c (and every entry of a
 * large page that maps it); only global ones if @global_only, only
 * non-global ones if @nonglobal_only. */
void vmmu__tlb_ctx_flush_page(struct tlb_ctx *c, uint64_t page, bool global_only,
                              bool nonglobal_only);
/* Point vcpu->fast at the current slot and context. */
void vmmu__tlb_select(struct vmmu_vcpu *v);

/* ---- psc ----------------------------------------------------------------- */
void vmmu__psc_flush(struct vmmu_vcpu *v, struct tlb_psc *p);
/* The level-2 (PDE) entry a lookup of @va examines. */
static inline const struct psc_entry *vmmu__psc_pde(const struct tlb_psc *p, uint64_t va)
{
    return &p->l2[(va >> 21) & (PSC_WAYS_L2 - 1)];
}
/* Remember the upper levels of a successful, committed walk. */
void vmmu__psc_store(struct vmmu_vcpu *v, struct tlb_psc *p, const struct vmmu_x86_walk *w);
/* Walk @va using the deepest cached upper level.  Returns 1 when it did
 * (@out as vmmu_x86_walk() would fill it, levels[] holding only the levels
 * read), 0 when nothing is cached (do a full walk), or a negative code. */
int vmmu__psc_walk(struct vmmu_vcpu *v, struct tlb_psc *p, uint64_t va, unsigned access,
                   struct vmmu_x86_walk *out);

#endif /* VMMU_TLB_INTERNAL_H */
