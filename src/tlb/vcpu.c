/* SPDX-License-Identifier: MIT */
/* The vCPU object and the x86 invalidation rules.
 *
 * Every register write first goes through the vmmu/x86.h setter, which
 * validates it like the CPU; only a write that took effect invalidates.
 * What it invalidates follows SDM Vol. 3A 4.10.4.1 for translations, plus
 * one rule of our own: an entry's comparators encode the rights decided at
 * fill time from CR0.WP, CR4.SMEP/SMAP/PKE/PKS, EFER.NXE, PKRU and PKRS,
 * while the CPU applies the current values at each access.  So a change
 * that narrows rights drops the contexts whose entries it can narrow; a
 * change that only widens rights drops nothing, because a comparator that
 * is too strict just sends the access to the slow path, which walks again
 * with the new values and refills. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "tlb/tlb_internal.h"

#include "vmmu/error.h"

/* ---- Flushing ------------------------------------------------------------ */

static void flush_slot(struct vmmu_vcpu *v, struct tlb_slot *s)
{
    for (unsigned c = 0; c < CTX_COUNT; c++)
        vmmu__tlb_ctx_flush(v, &s->ctx[c]);
    vmmu__psc_flush(v, &s->psc);
}

/* Everything, globals included, every PCID (CR4.PGE toggle, CR0.PG, ...).
 * Only what vmmu_vcpu::held names is visited: the others are empty, and
 * are counted as elided without being touched. */
static void flush_everything(struct vmmu_vcpu *v)
{
    const unsigned nctx = VMMU_VCPU_PCID_SLOTS * CTX_COUNT;
    uint32_t ctxs = v->held & ((1u << nctx) - 1);
    uint32_t pscs = v->held >> TLB_HELD_PSC;
    unsigned idle = nctx;

    v->stats.flush_all++;
    if (!ctxs && !pscs) {
        /* The common case of a vCPU flushed again before it ran: no
         * table is touched, and no table changes size. */
        v->stats.flush_contexts += idle;
        v->stats.flush_elided += idle;
        return;
    }
    while (ctxs) {
        unsigned i = (unsigned)__builtin_ctz(ctxs);
        ctxs &= ctxs - 1;
        vmmu__tlb_ctx_flush(v, &v->slot[i / CTX_COUNT].ctx[i % CTX_COUNT]);
        idle--;
    }
    while (pscs) {
        unsigned i = (unsigned)__builtin_ctz(pscs);
        pscs &= pscs - 1;
        vmmu__psc_flush(v, &v->slot[i].psc);
    }
    v->stats.flush_contexts += idle;
    v->stats.flush_elided += idle;
    vmmu__tlb_select(v); /* a flushed table may have been resized */
}

/* One PCID's non-global entries and its paging-structure caches. */
static void flush_slot_nonglobal(struct vmmu_vcpu *v, struct tlb_slot *s)
{
    v->stats.flush_pcid++;
    for (unsigned c = 0; c < CTX_COUNT; c++)
        vmmu__tlb_ctx_flush_nonglobal(v, &s->ctx[c]);
    vmmu__psc_flush(v, &s->psc);
}

/* Contexts @ctx_mask (bit per enum tlb_ctx_id) of every PCID: rights changed. */
static void flush_contexts(struct vmmu_vcpu *v, unsigned ctx_mask)
{
    v->stats.flush_rights++;
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
        for (unsigned c = 0; c < CTX_COUNT; c++)
            if (ctx_mask & (1u << c))
                vmmu__tlb_ctx_flush(v, &v->slot[i].ctx[c]);
}

/* Keys whose access- or write-disable bit is set in @next but not in @prev. */
static uint16_t keys_tightened(uint64_t prev, uint64_t next)
{
    uint16_t mask = 0;
    for (unsigned k = 0; k < 16; k++) {
        unsigned p = (unsigned)(prev >> (2 * k)) & 3, n = (unsigned)(next >> (2 * k)) & 3;
        if (n & ~p)
            mask |= (uint16_t)(1u << k);
    }
    return mask;
}

/* Drop the contexts holding user (@user) or supervisor pages with a key in @keys. */
static void flush_keys(struct vmmu_vcpu *v, uint16_t keys, bool user)
{
    if (!keys)
        return;
    bool any = false;
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
        for (unsigned c = 0; c < CTX_COUNT; c++) {
            struct tlb_ctx *ctx = &v->slot[i].ctx[c];
            if (ctx->keys & (user ? (uint32_t)keys << 16 : keys)) {
                vmmu__tlb_ctx_flush(v, ctx);
                any = true;
            }
        }
    }
    if (any)
        v->stats.flush_rights++;
}

/* PKRU as the permission check sees it: no restriction without CR4.PKE. */
static uint64_t eff_pkru(const struct vmmu_x86_paging *pg)
{
    return (pg->cr4 & VMMU_X86_CR4_PKE) ? pg->pkru : 0;
}

static uint64_t eff_pkrs(const struct vmmu_x86_paging *pg)
{
    return (pg->cr4 & VMMU_X86_CR4_PKS) ? pg->pkrs : 0;
}

/* ---- PCID slots ---------------------------------------------------------- */

static unsigned current_pcid(const struct vmmu_x86_paging *pg)
{
    return (pg->cr4 & VMMU_X86_CR4_PCIDE) ? (unsigned)(pg->cr3 & 0xfff) : 0;
}

static int find_slot(const struct vmmu_vcpu *v, unsigned pcid)
{
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
        if (v->slot[i].valid && v->slot[i].pcid == pcid)
            return (int)i;
    return -1;
}

/* The slot holding @pcid, recycling the least recently used one if none.
 * Dropping a whole PCID is always allowed: a TLB may forget anything. */
static unsigned slot_for(struct vmmu_vcpu *v, unsigned pcid)
{
    int found = find_slot(v, pcid);
    unsigned si;
    if (found >= 0) {
        si = (unsigned)found;
    } else {
        si = 0;
        for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
            if (!v->slot[i].valid) {
                si = i;
                break;
            }
            if (v->slot[i].last_use < v->slot[si].last_use)
                si = i;
        }
        if (v->slot[si].valid)
            v->stats.pcid_evictions++;
        flush_slot(v, &v->slot[si]);
        v->slot[si].valid = true;
        v->slot[si].pcid = (uint16_t)pcid;
    }
    v->slot[si].last_use = ++v->lru_clock;
    return si;
}

/* With CR4.PCIDE=0 only PCID 0 exists: after a flush of everything, the
 * slots of other PCIDs are free again (INVPCID type 3 and the statistics
 * then see one PCID, as the CPU has). */
static void forget_other_pcids(struct vmmu_vcpu *v)
{
    if (v->pg.cr4 & VMMU_X86_CR4_PCIDE)
        return;
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
        if (v->slot[i].pcid != 0)
            v->slot[i].valid = false;
}

static void switch_to_slot(struct vmmu_vcpu *v, unsigned si)
{
    if (si != v->cur_slot)
        v->stats.pcid_switches++;
    v->cur_slot = si;
}

/* ---- Life cycle ------------------------------------------------------------ */

int vmmu_vcpu_create(struct vmmu_vm *vm, const struct vmmu_x86_cpu *cpu, struct vmmu_vcpu **out)
{
    if (!vm || !out)
        return VMMU_EINVAL;
    struct vmmu_vcpu *v = vmmu__aligned_alloc(64, (sizeof(*v) + 63) & ~(size_t)63);
    if (!v)
        return VMMU_ENOMEM;
    memset(v, 0, sizeof(*v));
    v->rights_key = ~0ull; /* no rights table yet (vmmu__tlb_select() builds it) */
    v->keys_key[0] = ~0ull; /* no key tables yet either */
    int rc = vmmu_x86_paging_init(&v->pg, vm, cpu);
    if (rc) {
        free(v);
        return rc;
    }
    v->vm = vm;
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
        for (unsigned c = 0; c < CTX_COUNT; c++) {
            if (vmmu__tlb_ctx_init(&v->slot[i].ctx[c], VMMU_TLB_ENTRIES_DEFAULT)) {
                vmmu_vcpu_destroy(v);
                return VMMU_ENOMEM;
            }
            v->slot[i].ctx[c].held_bit = 1u << (i * CTX_COUNT + c);
            v->slot[i].ctx[c].id = (uint8_t)c;
            v->slot[i].ctx[c].rows = v->warm_rows[c][0];
            v->slot[i].ctx[c].key_masks = v->key_masks[c];
        }
        v->slot[i].psc.held_bit = 1u << (TLB_HELD_PSC + i);
        warm_l2_clear(&v->slot[i].psc.warm);
    }
    v->slot[0].valid = true;
    v->slot[0].pcid = 0;
    v->cur_slot = 0;
    vmmu__tlb_select(v);
    if (vmmu__access_vcpu_init(v)) { /* the access part's latch and watchpoints */
        vmmu_vcpu_destroy(v);
        return VMMU_ENOMEM;
    }
    if ((rc = vmmu__sync_vcpu_attach(v)) != 0) { /* id and request slot */
        vmmu_vcpu_destroy(v);
        return rc;
    }
    *out = v;
    return 0;
}

int vmmu_vcpu_destroy(struct vmmu_vcpu *v)
{
    if (!v)
        return 0;
    /* A callback of the vCPU's own access: the access goes on after it. */
    if (vmmu__callback_uses(v))
        return VMMU_EBUSY;
    int rc = vmmu__sync_vcpu_detach(v);
    if (rc)
        return rc;
    vmmu__access_vcpu_fini(v);
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
        for (unsigned c = 0; c < CTX_COUNT; c++)
            vmmu__tlb_ctx_fini(&v->slot[i].ctx[c]);
    free(v);
    return 0;
}

const struct vmmu_x86_paging *vmmu_vcpu_paging(const struct vmmu_vcpu *v)
{
    return v ? &v->pg : NULL;
}

/* ---- Register writes ------------------------------------------------------- */

static bool took_effect(int rc, const struct vmmu_x86_fault *fault)
{
    return rc == 0 && fault->vector == VMMU_X86_FAULT_NONE;
}

int vmmu_vcpu_set_cr0(struct vmmu_vcpu *v, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    uint64_t old = v->pg.cr0;
    int rc = vmmu_x86_set_cr0(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    vmmu__latch_regime_changed(v);
    uint64_t now = v->pg.cr0, changed = old ^ now;
    if (changed & VMMU_X86_CR0_PG) {
        /* SDM 4.10.4.1: changing PG invalidates everything (1 -> 0), and
         * 0 -> 1 starts translating where identity entries were held. */
        flush_everything(v);
    } else if ((now & VMMU_X86_CR0_WP) && !(old & VMMU_X86_CR0_WP)) {
        /* WP narrows supervisor writes (and PKRS/PKRU write-disable for
         * supervisor accesses): the supervisor contexts' write rights. */
        flush_contexts(v, (1u << CTX_SUP) | (1u << CTX_SUP_AC));
    }
    vmmu__tlb_select(v); /* also when WP was cleared: the warm miss's rights table */
    return 0;
}

int vmmu_vcpu_set_cr3(struct vmmu_vcpu *v, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    int rc = vmmu_x86_set_cr3(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    vmmu__latch_regime_changed(v);
    bool pcide = (v->pg.cr4 & VMMU_X86_CR4_PCIDE) != 0;
    unsigned si = slot_for(v, current_pcid(&v->pg));
    switch_to_slot(v, si);
    /* SDM 4.10.4.1: MOV to CR3 invalidates the non-global entries and
     * the paging-structure caches of the new PCID, unless PCIDE=1 and
     * bit 63 is set; global entries stay. */
    if (!(pcide && (value & VMMU_X86_CR3_NOFLUSH)))
        flush_slot_nonglobal(v, &v->slot[si]);
    vmmu__tlb_select(v);
    return 0;
}

int vmmu_vcpu_set_cr4(struct vmmu_vcpu *v, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    struct vmmu_x86_paging old = v->pg;
    int rc = vmmu_x86_set_cr4(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    vmmu__latch_regime_changed(v);
    uint64_t now = v->pg.cr4, changed = old.cr4 ^ now;
    uint64_t everything = VMMU_X86_CR4_PGE | VMMU_X86_CR4_PAE | VMMU_X86_CR4_PSE |
                          VMMU_X86_CR4_LA57;
    if ((changed & everything) || ((changed & VMMU_X86_CR4_PCIDE) && !(now & VMMU_X86_CR4_PCIDE))) {
        /* SDM 4.10.4.1: a PGE change or PCIDE 1 -> 0 invalidates every
         * entry, global or not, of every PCID; PAE, PSE and LA57 change
         * how entries are read at all. */
        flush_everything(v);
        if (changed & VMMU_X86_CR4_PCIDE) {
            forget_other_pcids(v);
            switch_to_slot(v, slot_for(v, 0));
        }
        vmmu__tlb_select(v);
        return 0;
    }
    if ((now & VMMU_X86_CR4_SMEP) && !(old.cr4 & VMMU_X86_CR4_SMEP)) {
        /* SDM 4.10.4.1: SMEP 0 -> 1 invalidates the current PCID; other
         * PCIDs' supervisor contexts hold fetch rights SMEP now narrows. */
        flush_slot(v, &v->slot[v->cur_slot]);
        flush_contexts(v, (1u << CTX_SUP) | (1u << CTX_SUP_AC));
    }
    if ((now & VMMU_X86_CR4_SMAP) && !(old.cr4 & VMMU_X86_CR4_SMAP)) {
        /* SMAP narrows supervisor data accesses to user pages, except
         * with AC=1: the SUP_AC context keeps its rights. */
        flush_contexts(v, 1u << CTX_SUP);
    }
    if (changed & now & (VMMU_X86_CR4_PKE | VMMU_X86_CR4_PKS)) {
        /* Keys start to count: the contexts know the keys they hold only
         * for entries filled while CR4.PKE or CR4.PKS was set (the warm
         * miss does not track keys without them), so drop every context
         * rather than only those holding keys PKRU/PKRS now restrict. */
        flush_contexts(v, (1u << CTX_COUNT) - 1);
    } else {
        flush_keys(v, keys_tightened(eff_pkru(&old), eff_pkru(&v->pg)), true);
        flush_keys(v, keys_tightened(eff_pkrs(&old), eff_pkrs(&v->pg)), false);
    }
    vmmu__tlb_select(v);
    return 0;
}

int vmmu_vcpu_set_efer(struct vmmu_vcpu *v, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    uint64_t old = v->pg.efer;
    int rc = vmmu_x86_set_efer(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    vmmu__latch_regime_changed(v);
    /* NXE both narrows (XD applies) and widens-or-narrows (bit 63 stops or
     * starts being reserved): drop everything, paging-structure caches
     * included, which hold the accumulated XD. */
    if ((old ^ v->pg.efer) & VMMU_X86_EFER_NXE)
        flush_everything(v);
    vmmu__tlb_select(v); /* the warm miss's reserved bits (XD with NXE=0) */
    return 0;
}

int vmmu_vcpu_set_pkru(struct vmmu_vcpu *v, uint32_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    uint64_t old = eff_pkru(&v->pg);
    int rc = vmmu_x86_set_pkru(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    flush_keys(v, keys_tightened(old, eff_pkru(&v->pg)), true);
    vmmu__tlb_select(v);
    return 0;
}

int vmmu_vcpu_set_pkrs(struct vmmu_vcpu *v, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    uint64_t old = eff_pkrs(&v->pg);
    int rc = vmmu_x86_set_pkrs(&v->pg, value, fault);
    if (!took_effect(rc, fault))
        return rc;
    flush_keys(v, keys_tightened(old, eff_pkrs(&v->pg)), false);
    vmmu__tlb_select(v);
    return 0;
}

int vmmu_vcpu_set_rflags(struct vmmu_vcpu *v, uint64_t value)
{
    if (!v)
        return VMMU_EINVAL;
    int rc = vmmu_x86_set_rflags(&v->pg, value);
    if (rc == 0)
        vmmu__tlb_select(v);
    return rc;
}

int vmmu_vcpu_set_cpl(struct vmmu_vcpu *v, unsigned cpl)
{
    if (!v)
        return VMMU_EINVAL;
    int rc = vmmu_x86_set_cpl(&v->pg, cpl);
    if (rc == 0)
        vmmu__tlb_select(v);
    return rc;
}

int vmmu_vcpu_set_state(struct vmmu_vcpu *v, const struct vmmu_x86_regs *regs)
{
    if (!v || !regs)
        return VMMU_EINVAL;
    int rc = vmmu_x86_set_state(&v->pg, regs);
    if (rc)
        return rc;
    vmmu__latch_regime_changed(v);
    flush_everything(v);
    forget_other_pcids(v);
    switch_to_slot(v, slot_for(v, current_pcid(&v->pg)));
    vmmu__tlb_select(v);
    return 0;
}

/* ---- Invalidation instructions ------------------------------------------- */

/* Whether @va is canonical for INVLPG and INVPCID.  A CPU that supports
 * 5-level paging checks these against 57 bits whatever CR4.LA57 says
 * (as it does the linear addresses held in MSRs and descriptor-table
 * registers), one without against 48. */
static bool invalidation_canonical(const struct vmmu_vcpu *v, uint64_t va)
{
    unsigned bits = (v->pg.cpu.features & VMMU_X86_FEAT_LA57) ? 57 : 48;
    return (uint64_t)((int64_t)(va << (64 - bits)) >> (64 - bits)) == va;
}

int vmmu_vcpu_invlpg(struct vmmu_vcpu *v, uint64_t va)
{
    if (!v)
        return VMMU_EINVAL;
    /* SDM INVLPG: a non-canonical address in 64-bit mode is a no-op. */
    if (v->pg.mode >= VMMU_X86_MODE_4LEVEL && !invalidation_canonical(v, va))
        return 0;
    if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    uint64_t page = va & VMMU_PAGE_MASK;
    v->stats.flush_page++;
    /* SDM 4.10.4.1: the page's entries of the current PCID, its global
     * entries whatever their PCID, and every paging-structure-cache entry
     * of the current PCID. */
    vmmu__tlb_drop_page(v, page);
    vmmu__psc_flush(v, &v->slot[v->cur_slot].psc);
    return 0;
}

static void set_gp(struct vmmu_x86_fault *fault)
{
    fault->vector = VMMU_X86_VEC_GP;
    fault->error_code = 0;
    fault->cr2 = 0;
}

int vmmu_vcpu_invpcid(struct vmmu_vcpu *v, unsigned type, uint64_t pcid, uint64_t va,
                      struct vmmu_x86_fault *fault)
{
    if (!v || !fault)
        return VMMU_EINVAL;
    fault->vector = VMMU_X86_FAULT_NONE;
    fault->error_code = 0;
    fault->cr2 = 0;
    if (!(v->pg.cpu.features & VMMU_X86_FEAT_PCID)) {
        fault->vector = VMMU_X86_VEC_UD;
        return 0;
    }
    /* SDM INVPCID: #GP(0) if CPL > 0, the type is above 3, descriptor
     * bits 63:12 are set, type 0/1 names a non-zero PCID with PCIDE=0, or
     * type 0 gives a non-canonical address.  Type 0 takes the
     * descriptor's whole 64-bit address in every mode, so the canonical
     * check is made outside 64-bit mode too. */
    bool pcide = (v->pg.cr4 & VMMU_X86_CR4_PCIDE) != 0;
    bool canonical = invalidation_canonical(v, va);
    if (v->pg.cpl > 0 || type > 3 || pcid > 0xfff ||
        (type <= VMMU_INVPCID_SINGLE && !pcide && pcid != 0) ||
        (type == VMMU_INVPCID_ADDRESS && !canonical)) {
        set_gp(fault);
        return 0;
    }
    int si = find_slot(v, (unsigned)pcid);
    switch (type) {
    case VMMU_INVPCID_ADDRESS:
        v->stats.flush_page++;
        /* Outside 64-bit mode an address at or above 4 GiB names no
         * linear page: no entry holds it, and none is dropped. */
        if (si >= 0) {
            for (unsigned c = 0; c < CTX_COUNT; c++)
                vmmu__tlb_ctx_flush_page(&v->slot[si].ctx[c], va & VMMU_PAGE_MASK, false, true);
            /* The SDM lets this drop paging-structure caches of the PCID;
             * dropping them all is the simple exact superset. */
            vmmu__psc_flush(v, &v->slot[si].psc);
        }
        break;
    case VMMU_INVPCID_SINGLE:
        if (si >= 0)
            flush_slot_nonglobal(v, &v->slot[si]);
        break;
    case VMMU_INVPCID_ALL_GLOBAL:
        flush_everything(v);
        break;
    default:
        for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++)
            if (v->slot[i].valid)
                flush_slot_nonglobal(v, &v->slot[i]);
        break;
    }
    vmmu__tlb_select(v);
    return 0;
}

int vmmu_vcpu_tlb_flush_all(struct vmmu_vcpu *v)
{
    if (!v)
        return VMMU_EINVAL;
    flush_everything(v);
    return 0;
}

/* ---- Statistics ------------------------------------------------------------ */

int vmmu_vcpu_stats(const struct vmmu_vcpu *v, struct vmmu_tlb_stats *out)
{
    if (!v || !out)
        return VMMU_EINVAL;
    *out = v->stats;
    out->hits = v->fast.hits;
    /* A warm miss is a miss, a walk resumed below the paging-structure
     * caches, and a fill. */
    out->misses += v->warm_fills;
    out->walks += v->warm_fills;
    out->psc_hits += v->warm_fills;
    out->fills += v->warm_fills;
    out->warm_misses = v->warm_fills;
    return 0;
}

int vmmu_vcpu_stats_reset(struct vmmu_vcpu *v)
{
    if (!v)
        return VMMU_EINVAL;
    memset(&v->stats, 0, sizeof(v->stats));
    v->fast.hits = 0;
    v->warm_fills = 0;
    return 0;
}

unsigned vmmu_vcpu_tlb_entries(const struct vmmu_vcpu *v)
{
    return v ? v->slot[v->cur_slot].ctx[v->cur_ctx].n : 0;
}
