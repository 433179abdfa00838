/* SPDX-License-Identifier: MIT */
/* The replay latch: what an instruction read, so that its re-execution
 * after a device model answered sees the same thing.
 *
 * Three records, all copies (never host pointers, so reclaiming a guest
 * page between the passes needs no wait for the latch):
 *  - page-table entries, tagged (gpa, level), through the x86 part's
 *    entry-read hook, which this file puts on the thread between
 *    vmmu_insn_begin() and vmmu_insn_end();
 *  - translations, tagged (linear page, access kind, context, and how
 *    many loads of CR0/CR3/CR4/EFER came before in the pass, so that an
 *    instruction that switches page tables, a task switch, translates
 *    what follows through the new ones): a TLB hit reads no entry, so
 *    without them a TLB flushed between the passes would let the replay
 *    walk tables the guest has rewritten;
 *  - data events in order, keyed by linear address: each page piece of a
 *    read, each locked update of RAM, and each MMIO or device piece that
 *    completed (so that it is not repeated).  The access a replay makes
 *    is served by the events recorded for it whatever its page is now
 *    (src/access/access.c piece_replay()); a write made live in a replay
 *    (the page was RAM, which records no write) records its event at the
 *    cursor, before the events still to be consumed.
 *
 * Passes.  Entries and translations carry the pass that recorded them.
 * Those of earlier passes are frozen: served as recorded.  Those of the
 * current pass are re-read and overwritten, so that a walk restarted
 * because its compare-and-swap lost a race (x86/walk.c) converges instead
 * of being served its own stale read.  Data events of earlier passes are
 * consumed in order; when the replay asks for a different access than the
 * one recorded at that position (the re-execution diverged, e.g. the
 * caller changed a register), the rest of the record is dropped and
 * reads are live again; vmmu_latch_stats() counts it. */
#include <string.h>

#include "access/access_internal.h"
#include "core/vm_internal.h"
#include "x86/x86_internal.h"

#include "vmmu/error.h"

void vmmu__latch_reset(struct latch *l)
{
    l->nentries = l->nxlates = l->nevents = 0;
    l->nbytes = 0;
    l->cursor = 0;
    l->frozen_events = 0;
    l->pass = 0;
    l->pass_base = 0;
    l->served_this_pass = 0;
}

/* ---- The entry-read hook -------------------------------------------------- */

static struct latch_entry *entry_find(struct latch *l, uint64_t gpa, unsigned size,
                                      unsigned level)
{
    for (unsigned i = 0; i < l->nentries; i++) {
        struct latch_entry *e = &l->entries[i];
        if (e->gpa == gpa && e->level == level && e->size == size)
            return e;
    }
    return NULL;
}

/* The host address of the entry at @gpa if it is resident RAM now, else NULL. */
static void *entry_host_now(struct vmmu_vm *vm, uint64_t gpa)
{
    if (gpa >> vm->gpa_bits)
        return NULL;
    uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
    if (!r || r->type != VMMU_MEM_RAM || (region_page_state(r, gfn) & VMMU_PAGE_PAGED_OUT))
        return NULL;
    return r->host + (gpa - (r->gfn << VMMU_PAGE_SHIFT));
}

static int hook_lookup(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size,
                       unsigned level, struct vmmu__x86_entry *out)
{
    struct vmmu__access_vcpu *a = ctx;
    struct latch *l = &a->latch;
    if (vm != a->vcpu->vm)
        return 0;
    struct latch_entry *e = entry_find(l, gpa, size, level);
    if (!e || e->pass == l->pass)
        return 0; /* not recorded, or recorded by this pass: read memory */
    /* Frozen: the first pass's value.  A/D updates planned from it are
     * stored only if the entry still holds exactly that value, so the
     * walk's compare-and-swap succeeds there and is skipped where the
     * guest has rewritten the entry since. */
    void *host = entry_host_now(vm, gpa);
    uint64_t now = 0;
    if (host)
        now = size == 4 ? __atomic_load_n((uint32_t *)host, __ATOMIC_ACQUIRE)
                        : __atomic_load_n((uint64_t *)host, __ATOMIC_ACQUIRE);
    out->value = e->value;
    out->host = (host && now == e->value) ? host : NULL;
    out->region_id = 0;
    if (out->host) {
        uint32_t id = 0;
        (void)vmmu_region_find(vm, gpa, &id);
        out->region_id = id;
    }
    l->stats.entries_replayed++;
    l->served_this_pass++;
    return 1;
}

static int hook_record(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size,
                       unsigned level, struct vmmu__x86_entry *e)
{
    struct vmmu__access_vcpu *a = ctx;
    struct latch *l = &a->latch;
    if (vm != a->vcpu->vm)
        return 0;
    struct latch_entry *le = entry_find(l, gpa, size, level);
    if (!le) {
        if (l->nentries == VMMU_LATCH_ENTRIES) {
            l->stats.overflows++;
            return VMMU_EOVERFLOW;
        }
        le = &l->entries[l->nentries++];
        le->gpa = gpa;
        le->level = (uint8_t)level;
        le->size = (uint8_t)size;
    }
    le->value = e->value;
    le->pass = (uint16_t)l->pass;
    return 0;
}

void vmmu__latch_hook_update(struct vmmu__access_vcpu *a)
{
    static const struct vmmu__x86_entry_hook proto = {hook_lookup, hook_record, NULL};
    bool on = latch_on(a);
    a->vcpu->latch_walks = on;
    vmmu__tlb_warm_refresh(a->vcpu);
    a->fast.slow = on;
    if (on) {
        a->hook = proto;
        a->hook.ctx = a;
        vmmu__x86_entry_hook = &a->hook;
    } else if (vmmu__x86_entry_hook == &a->hook) {
        vmmu__x86_entry_hook = NULL;
    }
}

/* ---- Translations --------------------------------------------------------- */

static uint16_t xlate_key(const struct vmmu_vcpu *v, unsigned access)
{
    unsigned kind = access & (VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH | VMMU_X86_ACC_IMPLICIT);
    return (uint16_t)(kind << 2 | (unsigned)v->cur_ctx);
}

bool vmmu__latch_xlate_find(struct vmmu__access_vcpu *a, uint64_t va_page, unsigned access,
                            uint64_t *gpa_page)
{
    struct latch *l = &a->latch;
    uint16_t key = xlate_key(a->vcpu, access);
    for (unsigned i = 0; i < l->nxlates; i++) {
        const struct latch_xlate *x = &l->xlates[i];
        if (x->va_page == va_page && x->key == key && x->regime == l->regime) {
            *gpa_page = x->gpa_page;
            if (x->pass != l->pass)
                l->stats.xlates_replayed++;
            return true;
        }
    }
    return false;
}

int vmmu__latch_xlate_record(struct vmmu__access_vcpu *a, uint64_t va_page, unsigned access,
                             uint64_t gpa_page)
{
    struct latch *l = &a->latch;
    if (l->nxlates == VMMU_LATCH_XLATES) {
        l->stats.overflows++;
        return VMMU_EOVERFLOW;
    }
    struct latch_xlate *x = &l->xlates[l->nxlates++];
    x->va_page = va_page;
    x->gpa_page = gpa_page;
    x->key = xlate_key(a->vcpu, access);
    x->pass = (uint16_t)l->pass;
    x->regime = l->regime;
    return 0;
}

void vmmu__latch_regime_changed(struct vmmu_vcpu *v)
{
    if (v->access && v->access->latch.in_insn)
        v->access->latch.regime++;
}

/* ---- Data events ------------------------------------------------------------ */

const struct latch_event *vmmu__latch_event_peek(const struct vmmu__access_vcpu *a)
{
    const struct latch *l = &a->latch;
    return l->cursor < l->frozen_events ? &l->events[l->cursor] : NULL;
}

void vmmu__latch_event_take(struct vmmu__access_vcpu *a)
{
    struct latch *l = &a->latch;
    l->cursor++;
    l->stats.events_replayed++;
}

void vmmu__latch_diverge(struct vmmu__access_vcpu *a)
{
    struct latch *l = &a->latch;
    if (l->cursor >= l->frozen_events)
        return;
    /* The re-execution asks for something else: what was recorded from
     * here on belongs to a different path; drop it and go live. */
    l->stats.diverged++;
    l->nbytes = l->events[l->cursor].off;
    l->nevents = l->cursor;
    l->frozen_events = l->cursor;
}

const uint8_t *vmmu__latch_event_data(const struct vmmu__access_vcpu *a,
                                      const struct latch_event *e)
{
    return a->latch.data + e->off;
}

int vmmu__latch_room(struct vmmu__access_vcpu *a, unsigned events, uint32_t bytes)
{
    struct latch *l = &a->latch;
    if (events > VMMU_LATCH_EVENTS - l->nevents || bytes > VMMU_LATCH_BYTES - l->nbytes) {
        l->stats.overflows++;
        return VMMU_EOVERFLOW;
    }
    return 0;
}

int vmmu__latch_event_room(struct vmmu__access_vcpu *a, uint32_t size)
{
    return vmmu__latch_room(a, 1, size);
}

int vmmu__latch_event_record(struct vmmu__access_vcpu *a, unsigned kind, uint64_t addr,
                             const void *data, uint32_t size)
{
    struct latch *l = &a->latch;
    int rc = vmmu__latch_event_room(a, size);
    if (rc)
        return rc;
    /* At the cursor: after the events this pass consumed, before the ones
     * of earlier passes it has still to consume (a write made live in a
     * replay, the page having changed type since, goes between them). */
    unsigned at = l->cursor;
    uint32_t off = at < l->nevents ? l->events[at].off : l->nbytes;
    if (at < l->nevents) {
        memmove(l->data + off + size, l->data + off, l->nbytes - off);
        memmove(&l->events[at + 1], &l->events[at], (l->nevents - at) * sizeof(l->events[0]));
        for (unsigned i = at + 1; i <= l->nevents; i++)
            l->events[i].off += size;
        if (at < l->frozen_events)
            l->frozen_events++;
    }
    struct latch_event *e = &l->events[at];
    e->kind = (uint8_t)kind;
    e->fresh = true;
    e->locked = l->in_locked;
    e->addr = addr;
    e->size = size;
    e->off = off;
    memcpy(l->data + off, data, size);
    l->nevents++;
    l->nbytes += size;
    l->cursor = at + 1;
    return 0;
}

void vmmu__latch_note_write(struct vmmu__access_vcpu *a, uint64_t gpa, uint64_t len)
{
    struct latch *l = &a->latch;
    uint64_t end = gpa + len;
    for (unsigned i = 0; i < l->nwrites; i++) {
        struct latch_range *r = &l->writes[i];
        if (gpa <= r->end && r->gpa <= end) { /* overlapping or adjacent: join */
            if (gpa < r->gpa)
                r->gpa = gpa;
            if (end > r->end)
                r->end = end;
            return;
        }
    }
    if (l->nwrites == LATCH_WRITES) {
        l->writes_lost = true;
        return;
    }
    l->writes[l->nwrites].gpa = gpa;
    l->writes[l->nwrites].end = end;
    l->nwrites++;
}

/* ---- Instructions ------------------------------------------------------------- */

int vmmu_insn_begin(struct vmmu_vcpu *v)
{
    if (!v || !v->access)
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    struct latch *l = &a->latch;
    if (l->in_insn)
        return VMMU_EINVAL;
    if (l->pass == 0)
        vmmu__latch_reset(l); /* a fresh instruction */
    l->pass++;                /* 1, or the next replay of a kept latch */
    l->cursor = 0;
    l->frozen_events = l->nevents;
    l->regime = 0;
    l->nwrites = 0;
    l->writes_lost = false;
    l->in_insn = true;
    a->hits_mark = a->nhits;
    a->dropped_mark = a->hits_dropped;
    vmmu__latch_hook_update(a);
    return 0;
}

/* Walks of this pass used entries the guest may have rewritten (and
 * invalidated) since the first pass: what they filled may serve this
 * instruction only, not the next one.  Before the translation records
 * that name those fills go (vmmu_insn_end(), and vmmu_latch_discard()
 * inside an instruction). */
static void drop_replay_fills(struct vmmu_vcpu *v, struct latch *l)
{
    if (!l->served_this_pass)
        return;
    for (unsigned i = 0; i < l->nxlates; i++)
        if (l->xlates[i].pass == l->pass)
            vmmu__access_flush_va_page(v, l->xlates[i].va_page);
    l->served_this_pass = 0;
}

int vmmu_insn_end(struct vmmu_vcpu *v, int status)
{
    if (!v || !v->access)
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    struct latch *l = &a->latch;
    if (!l->in_insn)
        return VMMU_EINVAL;
    l->in_insn = false;
    a->epoch++; /* prepared accesses and probe pointers end here */
    drop_replay_fills(v, l);
    if (status == VMMU_EPENDING) {
        /* The instruction is made again: its watchpoint hits with it. */
        a->nhits = a->hits_mark;
        a->hits_dropped = a->dropped_mark;
    }
    if (status != VMMU_EPENDING) {
        vmmu__latch_reset(l);
    } else {
        if (l->pass >= UINT16_MAX - 1) {
            /* Kept across 65,534 passes: every record is of an earlier
             * pass, so all may carry the same number (see struct latch). */
            for (unsigned i = 0; i < l->nentries; i++)
                l->entries[i].pass = 1;
            for (unsigned i = 0; i < l->nxlates; i++)
                l->xlates[i].pass = 1;
            l->pass_base += l->pass - 1;
            l->pass = 1;
        }
        vmmu__atomic_latch_pended(v);
        for (unsigned i = 0; i < l->nevents; i++)
            l->events[i].fresh = false;
    }
    vmmu__latch_hook_update(a);
    return 0;
}

int vmmu_latch_discard(struct vmmu_vcpu *v)
{
    if (!v || !v->access)
        return VMMU_EINVAL;
    struct vmmu__access_vcpu *a = v->access;
    bool in = a->latch.in_insn;
    if (in)
        drop_replay_fills(v, &a->latch);
    vmmu__latch_reset(&a->latch);
    if (in) {
        /* Inside an instruction: keep recording, from scratch. */
        a->latch.pass = 1;
    }
    vmmu__latch_hook_update(a);
    return 0;
}

unsigned vmmu_latch_disable(struct vmmu_vcpu *v)
{
    if (!v || !v->access)
        return 0;
    struct latch *l = &v->access->latch;
    if (l->disabled == LATCH_DISABLE_DEPTH)
        return 0; /* off already, and stays off until the outer levels are undone */
    unsigned token = ++l->disable_serial;
    if (token == 0)
        token = ++l->disable_serial;
    l->disable_token[l->disabled++] = token;
    vmmu__latch_hook_update(v->access);
    return token;
}

void vmmu_latch_restore(struct vmmu_vcpu *v, unsigned token)
{
    if (!v || !v->access || token == 0)
        return;
    struct latch *l = &v->access->latch;
    /* The level that handed @token out, and every level inside it, end; a
     * token no level in force holds was undone already (or never handed
     * out). */
    for (unsigned d = l->disabled; d-- > 0;) {
        if (l->disable_token[d] == token) {
            l->disabled = d;
            vmmu__latch_hook_update(v->access);
            return;
        }
    }
}

int vmmu_latch_stats(const struct vmmu_vcpu *v, struct vmmu_latch_stats *out)
{
    if (!v || !v->access || !out)
        return VMMU_EINVAL;
    const struct latch *l = &v->access->latch;
    *out = l->stats;
    out->pass = l->pass_base + l->pass;
    out->entries = l->nentries;
    out->xlates = l->nxlates;
    out->events = l->nevents;
    out->bytes = l->nbytes;
    return 0;
}
