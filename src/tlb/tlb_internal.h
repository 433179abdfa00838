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
 *  - used: valid hot entries (exact); fills: fills since the last flush,
 *    so a context with fills == 0 holds nothing (victims included).
 *  - filled[]: the indices filled since the last flush, up to
 *    TLB_FILLED_LOG; while it has not overflowed, flushes and scans visit
 *    only those indices instead of the whole table.
 *  - global, nlarge, large_lo/hi, large_shifts, keys: upper bounds
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
/* Page-ins one fill attempts before reporting VMMU_EPAGEDOUT (the host
 * took the page away again each time). */
#define TLB_PAGEIN_ROUNDS 64
/* Flushes per resize window (see tlb_ctx_flush()). */
#define TLB_RESIZE_WINDOW 16
/* Victim swaps since the last flush, and more than the fills, that make a
 * context conflict-bound (see ctx_resize_target()). */
#define TLB_CONFLICT_SWAPS 64
/* Victim swaps since the last flush, and more than TLB_CONFLICT_RATIO
 * times the fills, after which a context grows at once instead of at its
 * next flush (see ctx_grow_now()). */
#define TLB_CONFLICT_GROW 1024
#define TLB_CONFLICT_RATIO 8

/* What a hot entry was built from, in two words.  The page it translates
 * is not stored: it is the hot entry's tag (entry_tag()), and a large
 * page's base is that page with the low page_shift bits cleared.  Its
 * rights are the hot comparators (a kind is allowed exactly when its
 * comparator is not VMMU_TLB_CMP_INVALID), and its PCID is the slot's.
 *
 * w holds, at the bit positions of an IA-32e PTE where there is one:
 *   bits 0..2   enum vmmu_mem_type
 *   bit 3       a user-mode page (its key is in PKRU, else PKRS)
 *   bits 4..5   page size: 0 = 4 KiB, 1 = 2 MiB, 2 = 4 MiB, 3 = 1 GiB
 *   bit 8       global (only with CR4.PGE=1 at fill time)
 *   bits 12..51 the guest-physical 4 KiB page
 *   bits 59..62 protection key
 * The other bits are not defined (the warm fill stores the PTE's own
 * ignored bits there); read w through the cold_*() accessors. */
struct tlb_cold {
    uint64_t w;
    /* Region id in bits 0..31; the low 32 bits of the P2M generation of
     * the lookup that built the entry in bits 32..63 (for diagnostics:
     * host-initiated changes drop entries through src/sync, not by
     * generation). */
    uint64_t ident;
};

#define COLD_TYPE_MASK 7ull
#define COLD_USER (1ull << 3)
#define COLD_SIZE_SHIFT 4
#define COLD_GLOBAL (1ull << 8) /* = VMMU_X86_PTE_G */
#define COLD_ADDR 0x000ffffffffff000ull
#define COLD_PKEY_SHIFT 59
/* The bits of an IA-32e PTE a warm fill keeps: address, G (when CR4.PGE=1)
 * and the key; everything below bit 8 is replaced by the fields above. */
#define COLD_PTE_KEEP (~0xffull)

static inline uint64_t cold_gpa(const struct tlb_cold *cd)
{
    return cd->w & COLD_ADDR;
}
static inline unsigned cold_type(const struct tlb_cold *cd)
{
    return (unsigned)(cd->w & COLD_TYPE_MASK);
}
static inline bool cold_user(const struct tlb_cold *cd)
{
    return (cd->w & COLD_USER) != 0;
}
static inline bool cold_global(const struct tlb_cold *cd)
{
    return (cd->w & COLD_GLOBAL) != 0;
}
static inline unsigned cold_pkey(const struct tlb_cold *cd)
{
    return (unsigned)(cd->w >> COLD_PKEY_SHIFT) & 0xf;
}
static inline uint32_t cold_region_id(const struct tlb_cold *cd)
{
    return (uint32_t)cd->ident;
}
static inline uint64_t cold_ident(uint32_t region_id, uint64_t p2m_gen)
{
    return (uint64_t)region_id | (p2m_gen & 0xffffffffu) << 32;
}
/* log2 of the size of the guest page: 12, 21, 22 or 30. */
static inline unsigned cold_page_shift(const struct tlb_cold *cd)
{
    return (0x1e16150cu >> (8 * ((cd->w >> COLD_SIZE_SHIFT) & 3))) & 0xff;
}
/* The size field for a page of 1 << @shift bytes (12, 21, 22 or 30). */
static inline uint64_t cold_size_bits(unsigned shift)
{
    uint64_t code = shift == 21 ? 1 : shift == 22 ? 2 : shift == 30 ? 3 : 0;
    return code << COLD_SIZE_SHIFT;
}

/* The page a hot entry translates and whether it is valid, in one value:
 * the AND of its comparators.  VMMU_TLB_CMP_INVALID when the entry is
 * invalid (every comparator is), else the page in bits 12..63. */
static inline uint64_t entry_tag(const struct vmmu_tlb_entry *e)
{
    return e->cmp[0] & e->cmp[1] & e->cmp[2];
}
static inline bool entry_valid(const struct vmmu_tlb_entry *e)
{
    return entry_tag(e) != VMMU_TLB_CMP_INVALID;
}
/* Whether @e is a valid entry for the 4 KiB page @page. */
static inline bool entry_holds(const struct vmmu_tlb_entry *e, uint64_t page)
{
    uint64_t tag = entry_tag(e);
    return tag != VMMU_TLB_CMP_INVALID && (tag & VMMU_PAGE_MASK) == page;
}
static inline uint64_t entry_page(const struct vmmu_tlb_entry *e)
{
    return entry_tag(e) & VMMU_PAGE_MASK;
}

/* A victim: an entry pushed out of a table, and its page
 * (VMMU_TLB_CMP_INVALID when the slot is empty: the warm miss checks that
 * a page is not a victim with one compare). */
struct tlb_victim {
    struct vmmu_tlb_entry hot;
    struct tlb_cold cold;
    uint64_t page;
    uint64_t pad_;
};
_Static_assert(sizeof(struct tlb_victim) == 64, "a victim is one cache line");

struct tlb_ctx {
    struct vmmu_tlb_entry *hot;
    struct tlb_cold *cold;
    unsigned mask; /* n - 1 */
    uintptr_t index_mask; /* mask << VMMU_TLB_ENTRY_SHIFT: hot[] byte offset of (va >> 7) */
    unsigned n;    /* entries, power of two */
    unsigned used; /* valid hot entries */
    /* Fills since the last flush (0: the context holds nothing, victims
     * included); also the resize rule's upper bound on demand.  64 bits,
     * as nlarge: a context whose global entries keep it from full flushes
     * fills 2^32 times in minutes, and a count that wrapped to 0 would
     * make an INVLPG skip a full table. */
    uint64_t fills;
    /* Of those fills, the ones that replaced the entry of the same page
     * (a write after reads through a clean PTE, say), and the entries
     * dropped one by one (INVLPG, a CR3 write that keeps global entries)
     * since the last flush: with the valid entries they tell the fills
     * that pushed another page out (the resize rule's demand). */
    uint64_t refills, drops;
    unsigned nfilled;
    uint16_t filled[TLB_FILLED_LOG];
    uint64_t nlarge;
    uint64_t global;             /* COLD_GLOBAL set if an entry may be global (other bits: noise) */
    uint64_t large_lo, large_hi; /* [lo, hi) covers every large-page-derived entry */
    unsigned large_shifts;       /* bit s set: entries from pages of 1 << s bytes */
    /* Protection keys held: bit k for supervisor pages with key k, bit
     * 16 + k for user pages (only entries filled while CR4.PKE or CR4.PKS
     * was set count; turning either on flushes every context). */
    uint32_t keys;
    /* Resize window (see tlb_ctx_flush()): the peak demand over the
     * window, flushes in the window, and the size below which the window
     * may not shrink the table (set when conflicts grew it). */
    unsigned peak, window, floor;
    unsigned swaps; /* victims swapped back into the table since the last flush */
    /* Swaps at which a grow-at-once that found no memory is tried again
     * (twice the swaps of the failed try; 0 since the last flush). */
    unsigned grow_retry;
    uint32_t held_bit; /* this context's bit in vmmu_vcpu::held */
    uint8_t id;        /* enum tlb_ctx_id */
    /* The warm miss's rights for this context: vmmu_vcpu::warm_rows[id]
     * and vmmu_vcpu::key_masks[id]. */
    const int16_t (*rows)[4];
    const uint64_t *key_masks;
    /* Victims: valid entries pushed out of hot[] by a fill, direct-mapped:
     * the entry pushed out of index i goes to victim i % VMMU_TLB_VICTIMS. */
    struct tlb_victim victim[VMMU_TLB_VICTIMS];
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
    /* Generation under which table_host was looked up; PSC_NO_HOST when
     * table_host is NULL, so one compare with the current generation
     * tells the warm miss it may read the table through table_host. */
    uint64_t p2m_gen;
    uint32_t region_id;  /* region of the table (for dirty logging of A/D updates) */
    bool user, writable, nx; /* rights accumulated down to and including this entry */
};

/* No live generation: the P2M's starts at 1 and only counts up. */
#define PSC_NO_HOST (~0ull)

/* The warm miss's index into a context's rights rows (8 bits, 192 rows):
 * the PTE's XD, R/W, U/S and D (bits 63, 1, 2, 6) rotated left by one, so
 * in bits 0, 2, 3 and 7 (one rotate and one AND), and the accumulated
 * upper-level XD, R/W and U/S of the PDE in bits 1, 4 and 5 (PSC_PBITS). */
#define PSC_PBITS(nx, writable, user)                                                              \
    ((uint8_t)(((nx) ? 2u : 0u) | ((writable) ? 16u : 0u) | ((user) ? 32u : 0u)))
#define WARM_PTE_RIGHTS 0x8du
#define WARM_ROWS 192
static inline uint64_t warm_rights_index(uint64_t pbits, uint64_t pte)
{
    uint64_t rot = (pte << 1) | (pte >> 63);
    return pbits | (rot & WARM_PTE_RIGHTS);
}
/* A row: what a fill makes of each comparator, as a value ORed into the
 * page (sign-extended: 0 for the page itself, -1 for
 * VMMU_TLB_CMP_INVALID, VMMU_TLB_FLAG_NOTDIRTY for a write through a PTE
 * whose D bit is clear), by enum vmmu_tlb_kind, then in lane 3 the low
 * bits of the cold entry (COLD_USER for a user-mode page, and the type
 * RAM, so never 0: a write + fetch access, kind 3, is never allowed). */
enum { ROW_COLD = 3 };

/* The PDE cache as the warm miss reads it, parallel to tlb_psc::l2: tag[i]
 * is va >> 21 of l2[i] while its table is RAM whose host address ptes[i]
 * was looked up under P2M generation vmmu_vcpu::warm_gen, else ~0 (which
 * no address gives: the tag has 43 bits); pbits[i] is its PSC_PBITS.  A
 * new generation seen by the warm miss sets every tag to ~0
 * (warm_region_forget()), so one compare checks both. */
struct warm_l2 {
    uint64_t tag[PSC_WAYS_L2];
    const uint64_t *ptes[PSC_WAYS_L2];
    uint64_t pbits[PSC_WAYS_L2];
};
/* Forget every entry of @w (the tags only: nothing else is read without one). */
static inline void warm_l2_clear(struct warm_l2 *w)
{
    for (unsigned i = 0; i < PSC_WAYS_L2; i++)
        w->tag[i] = ~0ull;
}

struct tlb_psc {
    unsigned count; /* entries stored since the last flush */
    uint32_t held_bit; /* this cache's bit in vmmu_vcpu::held */
    struct psc_entry l2[PSC_WAYS_L2], l3[PSC_WAYS_L3], l4[PSC_WAYS_L4], l5[PSC_WAYS_L5];
    struct warm_l2 warm; /* l2 as the warm miss reads it */
};

struct tlb_slot {
    bool valid;
    uint16_t pcid;
    uint64_t last_use; /* LRU stamp */
    struct tlb_ctx ctx[CTX_COUNT];
    struct tlb_psc psc;
};

/* A RAM region as the warm miss uses it: its guest-physical frames
 * [lo, lo + npages) (npages 0: empty), its host address, its state bytes
 * (the first is frame lo's), and the second word of a cold entry for it. */
struct warm_region {
    uint64_t lo, npages;
    uintptr_t host, state;
    uint64_t cold1;
    uint64_t pad_[3];
};
_Static_assert(sizeof(struct warm_region) == 64, "a cached region is one cache line");
#define WARM_REGIONS 16
#define WARM_REGION_SHIFT 30

/* The cache entry for the data frame @gfn: bits 30..33 of its address pick
 * it (shifted straight to the entry's byte offset). */
static inline struct warm_region *warm_region_at(struct warm_region *cache, uint64_t gfn)
{
    _Static_assert(sizeof(struct warm_region) == 1u << 6, "entry offset by shift");
    return (struct warm_region *)(void *)((char *)cache +
                                          ((gfn >> (WARM_REGION_SHIFT - VMMU_PAGE_SHIFT - 6)) &
                                           ((uint64_t)(WARM_REGIONS - 1) << 6)));
}

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
    /* The warm miss's view (set by vmmu__tlb_select() and
     * vmmu__tlb_warm_refresh()).  warm_pde is the current slot's PDE cache
     * as the warm miss reads it, or an empty one while the warm path must
     * not run: not 4- or 5-level paging, or the benchmarks' psc_off, or
     * the access part's replay latch or watchpoints.  warm_chk the PTE
     * bits checked against P and A set and no reserved bit (a warm PTE
     * has exactly P and A among them); cold_keep the PTE bits a cold
     * entry keeps (G only with CR4.PGE=1); pk_on whether CR4.PKE or
     * CR4.PKS is set (keys then decide rights too). */
    const struct warm_l2 *warm_pde;
    uintptr_t pk_on; /* a word: vmmu_tlb_fill() ORs it with its result pointer */
    uint64_t warm_chk;
    /* The warm miss's view of each access (VMMU_X86_ACC_*): the context it
     * fills (the supervisor one for an implicit access) and the byte
     * offset of its kind in a rights row (2 * kind; 6, the cold lane, for
     * write + fetch, which no row allows). */
    struct tlb_ctx *warm_ctx[16];
    uintptr_t warm_lane[16];
    /* vmmu_tlb_fill()'s size and access, kept here while the warm miss
     * runs so that it holds fewer values in registers (the general path
     * it may end in takes them from here). */
    unsigned arg_size, arg_access;
    uint64_t cold_keep;
    /* The rights rows of each context (see warm_rights_index() and
     * ROW_COLD), for CR0.WP | CR4.SMEP | CR4.SMAP equal to rights_key;
     * then the same rows for a page holding translated code (a write
     * comparator of just the page becomes page | VMMU_TLB_FLAG_CODE). */
    uint64_t rights_key;
    int16_t warm_rows[CTX_COUNT][2][WARM_ROWS][4];
    /* With CR4.PKE or CR4.PKS: what a key takes from a row in each
     * context, by key index pkey | user-page << 4, as a value ORed into
     * the row (lanes of -1 for the kinds it forbids), for PKRU, PKRS,
     * CR0.WP and CR4.PKE/PKS as remembered in keys_key[]. */
    uint64_t keys_key[3];
    uint64_t key_masks[CTX_COUNT][32];
    /* The warm miss's region cache, valid under P2M generation warm_gen (a
     * region is removed, or starts dirty logging, only with a new
     * generation, and is freed only after a grace period).  Entry
     * warm_region_at(gpa) holds the RAM region of the last warm miss whose
     * data page was in the same GiB (modulo WARM_REGIONS GiB), so a guest
     * whose memory is in several regions (below and above 4 GiB, say) does
     * not trade one for another on every miss. */
    uint64_t warm_gen;
    struct warm_region warm_reg[WARM_REGIONS];
    /* Where the warm miss copies an invalid entry it replaces: written,
     * never read (so the copy needs no branch). */
    struct tlb_victim warm_junk;
    /* Warm misses served (each is a miss, a walk, a PSC hit and a fill in
     * the statistics: vmmu_vcpu_stats() adds it to those four). */
    uint64_t warm_fills;
    bool psc_off; /* benchmarks: walk from the top on every miss (then vmmu__tlb_warm_refresh()) */
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
    /* Incremented (src/sync) whenever host addresses the vCPU's thread
     * looked up may have gone stale without a safe point of the vCPU: it
     * waited inside vmmu (offline, so a grace period may pass and the host
     * take pages away), or a call on its thread changed what some
     * guest-physical pages allow (dirty log, code marks, page state, the
     * map) and dropped the vCPU's entries of them at once.  The access
     * part looks up again what it holds from before (src/access). */
    uint64_t host_gen;
    bool latch_walks;
    unsigned (*watch_kinds)(const struct vmmu_vcpu *v, uint64_t page);
};

/* ---- src/access: per-vCPU state, made and freed with the vCPU ------------ */
int vmmu__access_vcpu_init(struct vmmu_vcpu *v);
void vmmu__access_vcpu_fini(struct vmmu_vcpu *v);
/* CR0, CR3, CR4 or EFER was loaded: linear addresses may translate
 * differently from here on, inside the current instruction too. */
void vmmu__latch_regime_changed(struct vmmu_vcpu *v);

/* ---- Small pieces table.c, fill.c and warm.c share ------------------------ */
static inline void entry_clear(struct vmmu_tlb_entry *e)
{
    e->cmp[0] = e->cmp[1] = e->cmp[2] = VMMU_TLB_CMP_INVALID;
    e->addend = 0;
}
static inline void victim_drop(struct tlb_ctx *c, unsigned i)
{
    entry_clear(&c->victim[i].hot);
    c->victim[i].page = VMMU_TLB_CMP_INVALID;
}
/* The victim slot of table index @idx. */
static inline unsigned victim_of(unsigned idx)
{
    return idx & (VMMU_TLB_VICTIMS - 1);
}
/* Remember that index @idx of @c was filled since the last flush. */
static inline void log_fill(struct tlb_ctx *c, unsigned idx)
{
    if (c->nfilled < TLB_FILLED_LOG)
        c->filled[c->nfilled] = (uint16_t)idx;
    if (c->nfilled <= TLB_FILLED_LOG)
        c->nfilled++;
}

/* The context an access of @access (VMMU_X86_ACC_*) fills and hits in:
 * the current one, or the supervisor one of the current PCID for an
 * implicit access. */
static inline const struct tlb_ctx *tlb_ctx_of(const struct vmmu_vcpu *v, unsigned access)
{
    return &v->slot[v->cur_slot].ctx[(access & VMMU_X86_ACC_IMPLICIT) ? CTX_SUP : v->cur_ctx];
}
/* The cold half of @c's entry at @va's index when that entry answers an
 * access of @kind to @va's page by itself, the page not being RAM: its
 * comparator for @kind is the page with VMMU_TLB_FLAG_MMIO and perhaps
 * VMMU_TLB_FLAG_WATCH (the access part checks watchpoints itself).  Then
 * the answer is the cold half's gpa, type and region, as the general
 * fill's answer from the entry gives them, with no fill.  NULL for
 * anything else: no comparator for @kind (the walk raises the fault),
 * NOTDIRTY (a write walks to set D), RAM. */
static inline const struct tlb_cold *entry_not_ram(const struct tlb_ctx *c, uint64_t va,
                                                   enum vmmu_tlb_kind kind)
{
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & c->mask;
    uint64_t cmp = c->hot[idx].cmp[kind];
    if ((cmp & ~(uint64_t)VMMU_TLB_FLAG_WATCH) != ((va & VMMU_PAGE_MASK) | VMMU_TLB_FLAG_MMIO))
        return NULL;
    return &c->cold[idx];
}

/* ---- table.c: tables ----------------------------------------------------- */
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
/* Drop @page (an INVLPG's, a #PF's) from every context of the current
 * PCID and its global entries from the other slots (SDM 4.10.4.1). */
void vmmu__tlb_drop_page(struct vmmu_vcpu *v, uint64_t page);
/* Double @c at once (victim swaps far above its fills, no flush in
 * sight); on no memory, try again after twice the swaps. */
void vmmu__tlb_ctx_grow_now(struct vmmu_vcpu *v, struct tlb_ctx *c);
/* Point vcpu->fast at the current slot and context (and the warm miss's
 * view with them). */
void vmmu__tlb_select(struct vmmu_vcpu *v);

/* ---- fill.c: the general fill -------------------------------------------- */
/* vmmu_tlb_fill() without the warm miss: checks its arguments itself. */
void *vmmu__tlb_fill_general(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                             struct vmmu_tlb_result *res);
/* The fill's answer for @va from the cold half @cd that entry_not_ram()
 * found: VMMU_TLB_NOT_RAM in @res, counted as an answer from the entry;
 * NULL. */
void *vmmu__tlb_answer_not_ram(struct vmmu_vcpu *v, const struct tlb_cold *cd, uint64_t va,
                               struct vmmu_tlb_result *res);

/* ---- warm.c: the warm miss ------------------------------------------------ */
/* The warm miss's view for current context @c and supervisor context @sup
 * (after vmmu__tlb_select() changed the fast view). */
void vmmu__tlb_warm_select(struct vmmu_vcpu *v, struct tlb_ctx *c, struct tlb_ctx *sup);
/* The warm miss's caches (regions, warm_l2 of every slot) now follow P2M
 * generation @gen: forget what was looked up under another. */
void vmmu__tlb_warm_forget(struct vmmu_vcpu *v, uint64_t gen);
/* Recompute vmmu_vcpu::warm_pde after psc_off, latch_walks or watch_kinds change. */
void vmmu__tlb_warm_refresh(struct vmmu_vcpu *v);

/* ---- psc ----------------------------------------------------------------- */
void vmmu__psc_flush(struct vmmu_vcpu *v, struct tlb_psc *p);
/* Forget the entries of @p a walk of @va would use (a #PF for @va). */
void vmmu__psc_forget_va(struct tlb_psc *p, uint64_t va);
/* The level-2 (PDE) entry a lookup of @va examines. */
static inline const struct psc_entry *vmmu__psc_pde(const struct psc_entry *l2, uint64_t va)
{
    return &l2[(va >> 21) & (PSC_WAYS_L2 - 1)];
}
/* Remember the upper levels of a successful, committed walk. */
void vmmu__psc_store(struct vmmu_vcpu *v, struct tlb_psc *p, const struct vmmu_x86_walk *w);
/* Walk @va using the deepest cached upper level.  Returns 1 when it did
 * (@out as vmmu_x86_walk() would fill it, levels[] holding only the levels
 * read), 0 when nothing is cached (do a full walk), or a negative code. */
int vmmu__psc_walk(struct vmmu_vcpu *v, struct tlb_psc *p, uint64_t va, unsigned access,
                   struct vmmu_x86_walk *out);

#endif /* VMMU_TLB_INTERNAL_H */
