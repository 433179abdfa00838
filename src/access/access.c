/* SPDX-License-Identifier: MIT */
/* Translating and performing the pieces of an access; probes; the
 * per-vCPU state's life cycle.
 *
 * An access is split at page boundaries into at most two pieces.  Each
 * piece is translated and checked by vmmu__access_xlate() (TLB, or the
 * latch's recorded translation on a replay; rights; VMMU_WATCH_BEFORE
 * watchpoints) before any piece is performed, which is how "fault before
 * side effect" holds for page-crossing accesses.  Then
 * vmmu__piece_read/_write move the bytes: for RAM one load or store when
 * the access is aligned (vmmu_guest_load/store: SDM 8.1.1), else a copy;
 * the region's callbacks for MMIO (through the P2M's guest-physical access, which
 * splits into naturally aligned pieces), vmmu_p2m_device_access() for
 * device-model pages.  Reads and completed MMIO/device pieces pass
 * through the replay latch (latch.c). */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "access/access_internal.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"

#include "vmmu/error.h"
#include "vmmu/sync.h"

/* ---- Life cycle ----------------------------------------------------------- */

/* The sync part calls this at the vCPU's safe points (on its thread):
 * prepared accesses and probe pointers end there, as at vmmu_insn_end(). */
static void access_safepoint(struct vmmu_vcpu *v)
{
    if (v->access)
        v->access->epoch++;
}

int vmmu__access_vcpu_init(struct vmmu_vcpu *v)
{
    struct vmmu__access_vcpu *a = vmmu__calloc(1, sizeof(*a));
    if (!a)
        return VMMU_ENOMEM;
    vmmu__sync_set_safepoint_fn(access_safepoint);
    a->vcpu = v;
    a->fast.vcpu = v;
    a->fast.slow = 0;
    a->next_watch_id = 1;
    vmmu__latch_reset(&a->latch);
    v->access = a;
    v->latch_walks = false;
    v->watch_kinds = NULL;
    vmmu__tlb_warm_refresh(v);
    return 0;
}

void vmmu__access_vcpu_fini(struct vmmu_vcpu *v)
{
    struct vmmu__access_vcpu *a = v->access;
    if (!a)
        return;
    if (vmmu__x86_entry_hook == &a->hook)
        vmmu__x86_entry_hook = NULL;
    vmmu__watch_fini(a);
    free(a);
    v->access = NULL;
}

/* ---- TLB helpers -------------------------------------------------------------- */

void vmmu__access_flush_va_page(struct vmmu_vcpu *v, uint64_t page)
{
    for (unsigned i = 0; i < VMMU_VCPU_PCID_SLOTS; i++) {
        struct tlb_slot *s = &v->slot[i];
        if (!s->valid && i != v->cur_slot)
            continue;
        for (unsigned c = 0; c < CTX_COUNT; c++)
            vmmu__tlb_ctx_flush_page(&s->ctx[c], page, false, false);
    }
}

const struct vmmu_access_fast *vmmu_access_fast(const struct vmmu_vcpu *v)
{
    return v && v->access ? &v->access->fast : NULL;
}

static unsigned watch_kind_of(unsigned access)
{
    if (access & VMMU_ACCESS_READ_WRITE)
        return ACC_KIND_READ | ACC_KIND_WRITE;
    return (access & VMMU_X86_ACC_WRITE) ? ACC_KIND_WRITE : ACC_KIND_READ;
}

static bool access_valid(unsigned access)
{
    return !(access & ~VMMU_X86_ACC_ALL) &&
           !((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH));
}

/* ---- Translating one piece -------------------------------------------------- */

/* Fill @out for the guest-physical address @gpa (a translation the latch
 * recorded): what the page is now, in the P2M. */
int vmmu__piece_from_gpa(struct vmmu_vcpu *v, uint64_t va, uint32_t len, uint64_t gpa,
                         unsigned access, struct piece *out)
{
    struct vmmu_vm *vm = v->vm;
    struct vmmu_p2m_entry pe;
    int rc = vmmu_p2m_lookup(vm, gpa, &pe);
    if (rc == VMMU_ERANGE) {
        memset(&pe, 0, sizeof(pe));
        pe.type = VMMU_MEM_HOLE;
    } else if (rc < 0) {
        return rc;
    }
    if ((pe.type == VMMU_MEM_RAM || pe.type == VMMU_MEM_ROM) && !pe.hva) {
        /* Paged out since the first pass: bring it back (without reading
         * it: other vCPUs may be writing it). */
        struct vmmu__callback cb = {.vm = vm, .vcpu = v};
        vmmu__callback_enter(&cb);
        rc = vmmu__gpa_make_resident(vm, gpa);
        vmmu__callback_leave(&cb);
        if (rc < 0)
            return rc;
        rc = vmmu_p2m_lookup(vm, gpa, &pe);
        if (rc < 0)
            return rc;
    }
    out->va = va;
    out->gpa = gpa;
    out->len = len;
    out->type = pe.type;
    out->region_id = pe.region_id;
    out->host = NULL;
    out->code = false;
    bool write = (access & VMMU_X86_ACC_WRITE) != 0;
    if (pe.hva && (pe.type == VMMU_MEM_RAM || (pe.type == VMMU_MEM_ROM && !write)))
        out->host = pe.hva;
    if (write && pe.type == VMMU_MEM_RAM && pe.hva) {
        const struct vmmu_region *r = p2m_resolve(&vm->p2m, gpa >> VMMU_PAGE_SHIFT, NULL);
        if (r && (region_flags(r) & VMMU_REGION_LOG_DIRTY) && !(pe.page_state & VMMU_PAGE_DIRTY))
            (void)vmmu_page_state_update(vm, gpa, 1, VMMU_PAGE_DIRTY, 0);
        out->code = (pe.page_state & VMMU_PAGE_CODE) != 0;
    }
    return 0;
}

/* @pc as the map and its page's state are now (for a write: a logged page
 * marked dirty, a write to a page marked as code reported), looked up
 * again until no wait came in between.  The report is made once (and not
 * at all without @report): a mark the code handler makes again applies to
 * later writes. */
int vmmu__piece_again(struct vmmu_vcpu *v, struct piece *pc, bool write, bool report)
{
    for (unsigned tries = 0;; tries++) {
        uint64_t gen = v->host_gen;
        int rc = vmmu__piece_from_gpa(v, pc->va, pc->len, pc->gpa,
                                      write ? VMMU_X86_ACC_WRITE : 0, pc);
        if (rc < 0)
            return rc;
        if (report && tries == 0)
            vmmu__pieces_commit(v, pc, 1);
        pc->code = false;
        if (gen == v->host_gen)
            return 0;
        if (tries >= ACCESS_XLATE_RETRIES)
            return VMMU_EBUSY; /* the host keeps taking the page away */
    }
}

/* The TLB entry of @va's page sends this access to the slow path only
 * because the page is not RAM (entry_not_ram(), src/tlb/tlb_internal.h):
 * @out comes from the entry's cold half, as the fill's answer from the
 * entry would make it, without the call into the fill.  The entry is as
 * current as an inline hit's: INVLPG, flushes and map changes drop it
 * (src/sync), and a map change made on this thread drops it at once.
 * False leaves @out untouched. */
static bool xlate_from_not_ram_entry(struct vmmu_vcpu *v, uint64_t va, unsigned access,
                                     struct piece *out)
{
    const struct tlb_cold *cold =
        entry_not_ram(tlb_ctx_of(v, access), va, access_kind_of(access));
    if (!cold)
        return false;
    out->va = va;
    out->gpa = cold_gpa(cold) | (va & ~VMMU_PAGE_MASK);
    out->host = NULL;
    out->type = (enum vmmu_mem_type)cold_type(cold);
    out->region_id = cold_region_id(cold);
    out->code = false;
    /* Counted as the fill counts its answers from the entry. */
    v->stats.slow_hits++;
    v->stats.not_ram++;
    return true;
}

/* Whether the victim slot of @va's index holds @va's page (any kinds). */
static bool victim_holds(const struct vmmu_vcpu *v, uint64_t va, unsigned access)
{
    const struct tlb_ctx *c = tlb_ctx_of(v, access);
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & c->mask;
    return c->victim[victim_of(idx)].page == (va & VMMU_PAGE_MASK);
}

int vmmu__access_xlate(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                       struct piece *out, struct vmmu_x86_fault *fault)
{
    struct vmmu__access_vcpu *a = v->access;
    bool latch = latch_on(a);
    uint64_t page = va & VMMU_PAGE_MASK;
    uint64_t gpa_page;
    int rc;
    /* Writes the latch notes for a replayed locked update (src/access/atomic.c). */
    bool note = latch && (access & VMMU_X86_ACC_WRITE) && !(access & ACCESS_LOCKED);
    access &= VMMU_X86_ACC_ALL;

    vmmu__fault_none(fault);
    if (latch && vmmu__latch_xlate_find(a, page, access, &gpa_page)) {
        /* Replay (or a second access of this instruction to the page):
         * the translation the instruction already used, whatever the TLB
         * and the page tables say now. */
        rc = vmmu__piece_from_gpa(v, va, len, gpa_page | (va & ~VMMU_PAGE_MASK), access, out);
        if (rc < 0)
            return rc;
    } else if ((out->host = access_page_hit(v, va, access)) != NULL) {
        /* The inline hit, whatever the length inside the page (a 4 KiB
         * piece of a string move too).  Under the latch too: a hit reads
         * no page-table entry, so recording the translation it gives is
         * all a replay needs (it then serves this translation whatever
         * the TLB holds by then); only a miss walks, from the top, through
         * the latch's entry hook. */
        const struct tlb_cold *cold = access_hit_cold(v, va, access);
        out->type = (enum vmmu_mem_type)cold_type(cold); /* RAM, or ROM for a read */
        out->gpa = cold_gpa(cold) | (va & ~VMMU_PAGE_MASK);
        out->region_id = cold_region_id(cold);
        out->va = va;
        out->len = len;
        out->code = false; /* a code page's write comparator carries a flag */
        if (latch) {
            rc = vmmu__latch_xlate_record(a, page, access, cold_gpa(cold));
            if (rc < 0)
                return rc;
        }
    } else if (xlate_from_not_ram_entry(v, va, access, out)) {
        /* MMIO, a device model's page, a hole or a ROM write, whose entry
         * answers: no fill.  Recorded under the latch as a hit is. */
        out->len = len;
        if (latch) {
            rc = vmmu__latch_xlate_record(a, page, access, out->gpa & VMMU_PAGE_MASK);
            if (rc < 0)
                return rc;
        }
    } else {
        struct vmmu_tlb_result res;
        res.flags = 0;
        /* A victim of the page is swapped back by the general fill, which
         * answers from it without a walk; the warm miss in front of it
         * would read the PTE and look the data page up first. */
        void *host = victim_holds(v, va, access)
                         ? vmmu__tlb_fill_general(v, va, len, access, &res)
                         : vmmu_tlb_fill(v, va, len, access, &res);
        switch (res.status) {
        case VMMU_TLB_OK:
            out->host = host;
            out->type = res.type;
            out->gpa = res.gpa;
            out->region_id = res.region_id;
            break;
        case VMMU_TLB_NOT_RAM:
            out->host = NULL;
            out->type = res.type;
            out->gpa = res.gpa;
            out->region_id = res.region_id;
            break;
        case VMMU_TLB_FAULT:
            *fault = res.fault;
            return 0;
        case VMMU_TLB_CROSSES:
            return VMMU_EINVAL;
        default:
            return res.error ? res.error : VMMU_EINVAL;
        }
        out->va = va;
        out->len = len;
        out->code = false;
        if ((access & VMMU_X86_ACC_WRITE) && (res.flags & VMMU_TLB_FLAG_CODE) &&
            res.status == VMMU_TLB_OK)
            out->code = true;
        if (latch) {
            rc = vmmu__latch_xlate_record(a, page, access, out->gpa & VMMU_PAGE_MASK);
            if (rc < 0) {
                /* The fill is recorded nowhere, so vmmu_insn_end() could
                 * not drop it; in a replay its walk may have been served
                 * entries the guest has rewritten since.  Drop it now. */
                vmmu__access_flush_va_page(v, page);
                return rc;
            }
        }
    }
    if (note)
        vmmu__latch_note_write(a, out->gpa, len);
    return 0;
}

bool vmmu__watch_stops(struct vmmu_vcpu *v, const struct piece *p, unsigned n, unsigned access,
                       struct vmmu_x86_fault *fault)
{
    struct vmmu__access_vcpu *a = v->access;
    if (!a->nwatch || (access & ACCESS_NO_WATCH))
        return false;
    for (unsigned i = 0; i < n; i++)
        if (vmmu__watch_check(a, p[i].va, p[i].len, watch_kind_of(access), false)) {
            fault->vector = VMMU_ACCESS_STOP_WATCH;
            return true;
        }
    return false;
}

bool vmmu__alignment_fault(const struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                           struct vmmu_x86_fault *fault)
{
    const struct vmmu_x86_paging *pg = &v->pg;
    if (size > 8 || !(va & (size - 1)) || (access & (VMMU_X86_ACC_FETCH | VMMU_X86_ACC_IMPLICIT)) ||
        pg->cpl != 3 || !(pg->cr0 & VMMU_X86_CR0_AM) || !(pg->rflags & VMMU_X86_RFLAGS_AC))
        return false;
    /* An operand out of canonical form raises #GP or #SS first (its
     * address is not even formed). */
    if (pg->mode >= VMMU_X86_MODE_4LEVEL &&
        (!vmmu_x86_canonical(pg, va) || !vmmu_x86_canonical(pg, va + size - 1)))
        return false;
    fault->vector = VMMU_X86_VEC_AC;
    fault->error_code = 0;
    fault->cr2 = 0;
    return true;
}

/* After every piece of an access passed its checks: notify writes to code
 * pages (the write itself follows). */
void vmmu__pieces_commit(struct vmmu_vcpu *v, struct piece *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!p[i].code)
            continue;
        vmmu__code_write(v, p[i].gpa & VMMU_PAGE_MASK);
        /* The entry still carries VMMU_TLB_FLAG_CODE: drop it so that the
         * next write fills a fast one. */
        vmmu__access_flush_va_page(v, p[i].va & VMMU_PAGE_MASK);
        p[i].code = false;
    }
}

int vmmu__access_xlate_range(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                             struct piece out[2], unsigned *npieces,
                             struct vmmu_x86_fault *fault)
{
    if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    uint32_t first = (uint32_t)(VMMU_PAGE_SIZE - (va & ~VMMU_PAGE_MASK));
    if (first > len)
        first = len;
    /* SDM 3.3.7.1: canonical form is checked for every byte of the operand
     * before paging (Table 6-2 puts #GP ahead of a data #PF), so an access
     * that crosses out of canonical form faults before its first page is
     * walked, and sets no A/D bit there.  (A first page out of canonical
     * form faults in its own walk, before anything too.) */
    if (first < len && v->pg.mode >= VMMU_X86_MODE_4LEVEL &&
        !vmmu_x86_canonical(&v->pg, va + len - 1)) {
        vmmu__fault_none(fault);
        fault->vector = (access & VMMU_X86_ACC_STACK) ? VMMU_X86_VEC_SS : VMMU_X86_VEC_GP;
        return 0;
    }
    unsigned n;
    /* Translating the second page may wait (the vCPU is offline while a
     * page-in handler waits): a grace period may then have passed and the
     * first page's host memory been reclaimed (v->host_gen moved).
     * Translate both again until neither waited.  So may the code handler,
     * which runs once every piece passed its checks (it may page out, wait
     * for a lock, shoot down, mark pages): then the pieces are translated
     * again too, but the handler is not called a second time for this
     * write. */
    bool committed = (access & ACCESS_REPORTED) != 0;
    access &= ~ACCESS_REPORTED;
    for (unsigned tries = 0;; tries++) {
        uint64_t gen = v->host_gen;
        int rc = vmmu__access_xlate(v, va, first, access, &out[0], fault);
        if (rc < 0 || vmmu__fault_raised(fault))
            return rc;
        n = 1;
        if (first < len) {
            uint64_t va2 = va + first;
            if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
                va2 &= 0xffffffffull; /* 32-bit linear addresses wrap */
            rc = vmmu__access_xlate(v, va2, len - first, access, &out[1], fault);
            if (rc < 0 || vmmu__fault_raised(fault))
                return rc;
            n = 2;
        }
        /* Every page translated first: a fault anywhere in the access
         * comes before a stop at a watchpoint (the access would not be
         * made), and a stopped write reports nothing to the code handler. */
        if (vmmu__watch_stops(v, out, n, access, fault))
            return 0;
        if (gen == v->host_gen && !committed) {
            vmmu__pieces_commit(v, out, n);
            committed = true;
        }
        if (gen == v->host_gen)
            break;
        if (tries >= ACCESS_XLATE_RETRIES)
            return VMMU_EBUSY; /* the host keeps taking the pages away */
    }
    for (unsigned i = 0; i < n; i++)
        out[i].code = false; /* reported above, or by an earlier round */
    *npieces = n;
    return 0;
}

/* ---- Performing a piece --------------------------------------------------------- */

/* The size of the device-model access at @gpa with @n bytes left: the
 * largest naturally aligned one of at most 8 bytes. */
static unsigned device_chunk(uint64_t gpa, uint32_t n)
{
    unsigned size = 8;
    while (size > 1 && ((gpa & (size - 1)) || size > n))
        size >>= 1;
    return size;
}

/* The device-model accesses of [gpa, gpa + n) (@va: its linear address,
 * the latch's key), in naturally aligned chunks of at most 8 bytes, each
 * recorded under the latch once it completed. */
static int device_piece(struct vmmu_vcpu *v, uint64_t va, uint64_t gpa, uint8_t *buf, uint32_t n,
                        bool write)
{
    struct vmmu__access_vcpu *a = v->access;
    bool latch = latch_on(a);
    unsigned kind = write ? EV_IO_WRITE : EV_IO_READ;
    while (n) {
        unsigned size = device_chunk(gpa, n);
        int rc;
        if (latch) {
            rc = vmmu__latch_event_room(a, size);
            if (rc)
                return rc;
        }
        struct vmmu_device_req req;
        memset(&req, 0, sizeof(req));
        req.gpa = gpa;
        req.size = size;
        req.write = write;
        /* The vCPU's own id, so that a device model may answer later
         * (a request of the host, id -1, must be answered at once). */
        int id = vmmu_vcpu_id(v);
        req.vcpu_id = id >= 0 ? id : -1;
        if (write)
            memcpy(&req.data, buf, size);
        rc = vmmu_p2m_device_access(v->vm, &req);
        if (rc < 0)
            return rc;
        if (!write)
            memcpy(buf, &req.data, size);
        if (latch) {
            rc = vmmu__latch_event_record(a, kind, va, buf, size);
            if (rc)
                return rc;
        }
        va += size;
        gpa += size;
        buf += size;
        n -= size;
    }
    return 0;
}

/* Under the latch, before a piece is read or written: the events of
 * earlier passes at the cursor that belong to its bytes from @off on, in
 * order, are served (a read gets their bytes; a write that completed is
 * not made again), whatever the page is now: a page the host turned from
 * a device page into RAM, MMIO into a device page, ... between the passes
 * gives the bytes the first pass read or wrote there, and never repeats a
 * device access.  Events are keyed by linear address, the same for every
 * page type.  A read matches whole-piece reads (RAM, ROM, MMIO, holes) or
 * device chunks, a write completed MMIO or device writes.  Returns how
 * many bytes were served (the rest is made live). */
/* Whether the events at the cursor are the completed writes of the @n
 * bytes at @va: contiguous from @va and covering them exactly, or ending
 * short of them where the record ends (the first pass pended in the middle
 * of this write).  A write of another shape (the re-execution writes 4
 * bytes where the first pass wrote 2) matches nothing and is made whole. */
static bool write_recorded(const struct vmmu__access_vcpu *a, uint64_t va, uint64_t gpa,
                           uint32_t n)
{
    const struct latch *l = &a->latch;
    uint32_t covered = 0;
    for (unsigned i = l->cursor; i < l->frozen_events; i++) {
        const struct latch_event *e = &l->events[i];
        uint32_t left = n - covered;
        /* An MMIO piece's whole rest, or the device chunk device_piece()
         * makes here (the gpa is the first pass's: translations replay). */
        if (e->kind != EV_IO_WRITE || e->addr != va + covered || e->locked != l->in_locked ||
            (e->size != left && e->size != device_chunk(gpa + covered, left)))
            return false;
        covered += e->size;
        if (covered == n)
            return true;
    }
    return covered > 0;
}

static uint32_t piece_replay(struct vmmu__access_vcpu *a, const struct piece *p, uint32_t off,
                             uint8_t *buf, uint32_t n, bool write)
{
    uint32_t done = 0;
    const struct latch_event *e;
    if (write && !write_recorded(a, p->va + off, p->gpa + off, n))
        return 0;
    while (done < n && (e = vmmu__latch_event_peek(a)) != NULL) {
        uint32_t left = n - done;
        /* (A locked update's pieces serve only it, and it only them.) */
        bool fits = e->addr == p->va + off + done && e->size <= left &&
                    e->locked == a->latch.in_locked;
        if (write) {
            if (!fits || e->kind != EV_IO_WRITE)
                break;
        } else if (!fits || !(e->kind == EV_IO_READ || (e->kind == EV_READ && e->size == left))) {
            break;
        } else {
            memcpy(buf + done, vmmu__latch_event_data(a, e), e->size);
        }
        done += e->size;
        vmmu__latch_event_take(a);
    }
    return done;
}

static int piece_read(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, void *buf,
                      uint32_t n)
{
    struct vmmu__access_vcpu *a = v->access;
    int rc;
    bool latch = latch_on(a);
    if (latch) {
        uint32_t done = piece_replay(a, p, off, buf, n, false);
        if (done == n)
            return 0;
        /* Not what an earlier pass read next: the re-execution took
         * another path; the rest of the record goes (reads are live). */
        vmmu__latch_diverge(a);
        off += done;
        buf = (uint8_t *)buf + done;
        n -= done;
    }
    if (p->type == VMMU_MEM_DEVICE)
        return device_piece(v, p->va + off, p->gpa + off, buf, n, false);
    if (latch) {
        rc = vmmu__latch_event_room(a, n);
        if (rc)
            return rc;
    }
    if (p->host) {
        vmmu_guest_load(buf, p->host + off, n); /* SDM 8.1.1 */
    } else {
        rc = vmmu_gpa_read(v->vm, p->gpa + off, buf, n, VMMU_GPA_UNBACKED_ONES, NULL);
        if (rc == VMMU_ERANGE) {
            memset(buf, 0xff, n); /* beyond the vm's width: nothing answers */
            rc = 0;
        }
        if (rc < 0)
            return rc;
    }
    if (latch)
        return vmmu__latch_event_record(a, EV_READ, p->va + off, buf, n);
    return 0;
}

static int piece_write(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, const void *buf,
                       uint32_t n)
{
    struct vmmu__access_vcpu *a = v->access;
    int rc;
    bool latch = latch_on(a);
    if (latch) {
        /* A write that finds no completed write of its own at the cursor
         * is made live without ending the replay: RAM records no write,
         * so a page that was RAM in the first pass and is MMIO or a
         * device page now has nothing to match; its event goes in at the
         * cursor, before the events still to come. */
        uint32_t done = piece_replay(a, p, off, (uint8_t *)(uintptr_t)buf, n, true);
        if (done == n)
            return 0;
        off += done;
        buf = (const uint8_t *)buf + done;
        n -= done;
    }
    if (p->host) {
        vmmu_guest_store(p->host + off, buf, n);
        return 0;
    }
    switch (p->type) {
    case VMMU_MEM_DEVICE:
        return device_piece(v, p->va + off, p->gpa + off, (uint8_t *)(uintptr_t)buf, n, true);
    case VMMU_MEM_MMIO:
        if (latch) {
            rc = vmmu__latch_event_room(a, n);
            if (rc)
                return rc;
        }
        rc = vmmu_gpa_write(v->vm, p->gpa + off, buf, n, 0, NULL);
        if (rc < 0)
            return rc;
        return latch ? vmmu__latch_event_record(a, EV_IO_WRITE, p->va + off, buf, n) : 0;
    default:
        /* ROM (dropped, or VMMU_EROM) and holes (dropped). */
        rc = vmmu_gpa_write(v->vm, p->gpa + off, buf, n, VMMU_GPA_UNBACKED_ONES, NULL);
        return rc == VMMU_ERANGE ? 0 : rc;
    }
}

/* A piece, then its watchpoint hits: an access that failed, or pended,
 * made no access to report (its re-execution reports it); a write that
 * reached a ROM reporting writes was made (the ROM dropped it).  A piece
 * without a host address may run callbacks (MMIO, a device model, the
 * page-in handler), which may not destroy the vCPU: it is named in a
 * frame of its own, online on this thread or not (struct vmmu__callback). */
int vmmu__piece_read(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, void *buf,
                     uint32_t n)
{
    struct vmmu__access_vcpu *a = v->access;
    int rc;
    if (p->host) {
        rc = piece_read(v, p, off, buf, n);
    } else {
        struct vmmu__callback cb = {.vm = v->vm, .vcpu = v};
        vmmu__callback_enter(&cb);
        rc = piece_read(v, p, off, buf, n);
        vmmu__callback_leave(&cb);
    }
    if (rc == 0 && a->nwatch && !a->hits_quiet)
        (void)vmmu__watch_check(a, p->va + off, n, ACC_KIND_READ, true);
    return rc;
}

int vmmu__piece_write(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, const void *buf,
                      uint32_t n)
{
    struct vmmu__access_vcpu *a = v->access;
    int rc;
    if (p->host) {
        rc = piece_write(v, p, off, buf, n);
    } else {
        struct vmmu__callback cb = {.vm = v->vm, .vcpu = v};
        vmmu__callback_enter(&cb);
        rc = piece_write(v, p, off, buf, n);
        vmmu__callback_leave(&cb);
    }
    if ((rc == 0 || rc == VMMU_EROM) && a->nwatch && !a->hits_quiet)
        (void)vmmu__watch_check(a, p->va + off, n, ACC_KIND_WRITE, true);
    return rc;
}

/* ---- Probes --------------------------------------------------------------------- */

/* Check a probe's arguments, reset @out, and make *@va the linear address
 * (32 bits outside IA-32e paging). */
static int probe_args(struct vmmu_vcpu *v, uint64_t *va, unsigned size, unsigned access,
                      struct vmmu_probe *out)
{
    if (!v || !out || !access_valid(access) || size == 0 || size > VMMU_PAGE_SIZE)
        return VMMU_EINVAL;
    if (v->pg.mode < VMMU_X86_MODE_4LEVEL)
        *va &= 0xffffffffull;
    if ((*va & ~VMMU_PAGE_MASK) + size > VMMU_PAGE_SIZE)
        return VMMU_EINVAL; /* a probe never crosses a page */
    out->host = NULL;
    out->gpa = 0;
    out->type = VMMU_MEM_HOLE;
    out->why = 0;
    vmmu__fault_none(&out->fault);
    return 0;
}

static unsigned why_for(enum vmmu_mem_type type)
{
    return type == VMMU_MEM_DEVICE ? VMMU_PROBE_DEVICE : VMMU_PROBE_MMIO;
}

int vmmu_access_probe(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                      struct vmmu_probe *out)
{
    int rc = probe_args(v, &va, size, access, out);
    if (rc)
        return rc;
    /* The hit path first: one compare for plain RAM. */
    if (!v->latch_walks) {
        void *host = access_page_hit(v, va, access);
        if (host) {
            out->host = host;
            const struct tlb_cold *cold = access_hit_cold(v, va, access);
            out->type = (enum vmmu_mem_type)cold_type(cold);
            out->gpa = cold_gpa(cold) | (va & ~VMMU_PAGE_MASK);
            return 0;
        }
    }
    struct piece p;
    rc = vmmu__access_xlate(v, va, size, access | ACCESS_NO_WATCH, &p, &out->fault);
    if (rc < 0 || vmmu__fault_raised(&out->fault))
        return rc;
    out->gpa = p.gpa;
    out->type = p.type;
    if (p.code) {
        out->why = VMMU_PROBE_CODE;
    } else if (!p.host) {
        out->why = why_for(p.type);
    } else if (v->access->nwatch &&
               vmmu__watch_covers(v->access, va, size, watch_kind_of(access))) {
        /* A watchpoint of this kind covers a byte of the access: the
         * caller goes through the access functions, which stop at it or
         * record the hit.  The probe itself records nothing. */
        out->why = VMMU_PROBE_WATCH;
    } else {
        out->host = p.host;
    }
    return 0;
}

int vmmu_access_probe_nofault(struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                              struct vmmu_probe *out)
{
    int rc = probe_args(v, &va, size, access, out);
    if (rc)
        return rc;
    {
        void *host = access_page_hit(v, va, access);
        if (host) {
            out->host = host;
            const struct tlb_cold *cold = access_hit_cold(v, va, access);
            out->type = (enum vmmu_mem_type)cold_type(cold);
            out->gpa = cold_gpa(cold) | (va & ~VMMU_PAGE_MASK);
            return 0;
        }
    }
    /* A side-effect-free walk: no A/D, no fill, no page-in.  The latch
     * is not consulted: this is a question about the present, not a read
     * of the instruction. */
    unsigned token = vmmu_latch_disable(v);
    vmmu__x86_entry_no_pagein = true;
    struct vmmu_x86_walk w;
    rc = vmmu_x86_walk_peek(&v->pg, va, access, &w);
    vmmu__x86_entry_no_pagein = false;
    vmmu_latch_restore(v, token);
    if (rc < 0)
        return rc;
    if (!w.ok) {
        out->fault = w.fault;
        return 0;
    }
    out->gpa = w.gpa;
    struct vmmu_p2m_entry pe;
    rc = vmmu_p2m_lookup(v->vm, w.gpa, &pe);
    if (rc == VMMU_ERANGE) {
        out->type = VMMU_MEM_HOLE;
        out->why = VMMU_PROBE_MMIO;
        return 0;
    }
    if (rc < 0)
        return rc;
    out->type = pe.type;
    bool write = (access & VMMU_X86_ACC_WRITE) != 0;
    if ((pe.type == VMMU_MEM_RAM || pe.type == VMMU_MEM_ROM) && !pe.hva &&
        (pe.page_state & VMMU_PAGE_PAGED_OUT))
        return VMMU_EPAGEDOUT; /* not brought back: the access functions do that */
    if (!pe.hva || !(pe.type == VMMU_MEM_RAM || (pe.type == VMMU_MEM_ROM && !write))) {
        out->why = why_for(pe.type);
        return 0;
    }
    /* The access itself would set an A or D bit: the caller must make it
     * through the access functions. */
    for (unsigned i = 0; i < w.nlevels; i++) {
        if (w.levels[i].host && w.levels[i].new_value != w.levels[i].value) {
            out->why = VMMU_PROBE_NOTDIRTY;
            return 0;
        }
    }
    if (write) {
        const struct vmmu_region *r = p2m_resolve(&v->vm->p2m, w.gpa >> VMMU_PAGE_SHIFT, NULL);
        bool log = r && (region_flags(r) & VMMU_REGION_LOG_DIRTY) &&
                   !(pe.page_state & VMMU_PAGE_DIRTY);
        if (log) {
            out->why = VMMU_PROBE_NOTDIRTY;
            return 0;
        }
        if (pe.page_state & VMMU_PAGE_CODE) {
            out->why = VMMU_PROBE_CODE;
            return 0;
        }
    }
    if (v->access->nwatch && vmmu__watch_covers(v->access, va, size, watch_kind_of(access))) {
        out->why = VMMU_PROBE_WATCH;
        return 0;
    }
    out->host = pe.hva;
    return 0;
}
