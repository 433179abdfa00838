/* SPDX-License-Identifier: MIT */
/*
 * Guest memory for the interpreter, through vmmu's instruction access
 * layer (vmmu/access.h): every read, write, fetch and locked operation of
 * the interpreter is one call of that layer, which splits it at page
 * boundaries, checks every page before touching any byte (a faulting write
 * changes nothing), reaches RAM, MMIO, holes and device-model pages, and
 * records what the instruction read in the vCPU's replay latch.
 *
 * The vCPU loop (vmmu_backend.c) brackets every instruction with
 * vmmu_insn_begin()/vmmu_insn_end().  An access that a device model will
 * answer later returns VMMU_EPENDING: the callback says X86EMU_CB_RETRY,
 * the interpreter abandons the instruction with nothing changed, and the
 * loop ends the instruction with VMMU_EPENDING (keeping the latch), waits
 * for the device model and re-executes it; the second pass replays what
 * the first one read.
 *
 * Most instructions never touch a device, and the latch makes every
 * access of a bracketed instruction take the access layer's slow path (it
 * records each translation and read).  So an instruction first runs
 * unbracketed: a TLB hit is one compare and a copy, a miss is prepared
 * (every page translated and checked), and RAM is read or written.  When a
 * prepared page is not RAM (a device, MMIO, a hole), the instruction is
 * abandoned before that access (X86EMU_CB_RETRY with v->latched_next) and
 * executed again at once between vmmu_insn_begin() and vmmu_insn_end(), so
 * no device access is ever made outside the latch.  The price: RAM that
 * such an instruction wrote before it reached the device page (a string
 * that runs from RAM into device memory) is written again, with the same
 * values, by the bracketed pass.
 *
 * This file is the one place that knows how guest memory is reached.
 */
#include <string.h>

#include "vmmu_backend.h"

static unsigned access_bits(const struct x86emu_access *a)
{
    if (a->kind == X86EMU_ACCESS_FETCH)
        return VMMU_X86_ACC_FETCH;
    if (a->kind == X86EMU_ACCESS_IMPLICIT_SUPERVISOR)
        return VMMU_X86_ACC_IMPLICIT;
    return 0;
}

/* vmmu decides rights per context (CPL, EFLAGS.AC): follow the access's. */
static int follow_context(struct vb_vcpu *v, const struct x86emu_access *a)
{
    if (a->kind == X86EMU_ACCESS_IMPLICIT_SUPERVISOR)
        return 0;
    const struct vmmu_x86_paging *pg = vmmu_vcpu_paging(v->vcpu);
    int rc = 0;
    if (pg->cpl != a->cpl)
        rc = vmmu_vcpu_set_cpl(v->vcpu, a->cpl);
    bool ac = (pg->rflags & X86EMU_FLAG_AC) != 0;
    if (!rc && ac != a->ac)
        rc = vmmu_vcpu_set_rflags(v->vcpu, pg->rflags ^ X86EMU_FLAG_AC);
    return rc;
}

/*
 * The unbracketed slow path: translate and check every page of the access
 * (filling the TLB, setting A/D as the access would).  Returns the access
 * layer's code with @p vf saying whether it faults; *@p ram is false when a
 * page is not plain RAM, and the access must then be made in the latch.
 */
static int plain_prepare(struct vb_vcpu *v, const struct x86emu_access *a, unsigned acc,
                         struct vmmu_prepared *p, struct vmmu_x86_fault *vf, bool *ram)
{
    int rc = vmmu_access_prepare(v->vcpu, a->va, a->size, acc, p, vf);
    *ram = true;
    if (rc < 0 || vf->vector != VMMU_X86_FAULT_NONE)
        return rc;
    for (unsigned i = 0; i < p->npages; i++)
        if (!p->page[i].host || p->page[i].type != VMMU_MEM_RAM)
            *ram = false;
    return 0;
}

/* Abandon the instruction and run it again in the latch at once. */
static int to_latch(struct vb_vcpu *v)
{
    v->latched_next = true;
    v->mem.to_latch++;
    return X86EMU_CB_RETRY;
}

/*
 * In the latch, an access of a REP iteration after one this execution
 * completed: stop before it and run the instruction on in the latch at
 * once, so that a latched execution makes one iteration.  Its records are
 * then that iteration's only, and one of its device accesses that pends
 * is replayed alone: with an earlier iteration's records in front, the
 * re-execution (which starts at the pending iteration) would find other
 * accesses there, drop the record, and read the device again.
 */
static bool one_iteration_done(struct vb_vcpu *v, const struct x86emu_access *a)
{
    if (!v->in_latch || a->rep_done == 0)
        return false;
    v->latched_next = true;
    v->mem.to_latch++;
    return true;
}

static void count(struct vb_vcpu *v, const struct x86emu_access *a)
{
    unsigned in_page = (unsigned)(VMMU_PAGE_SIZE - (a->va & ~VMMU_PAGE_MASK));
    v->mem.pieces++;
    if (a->size > in_page) {
        v->mem.pieces++;
        v->mem.splits++;
    }
}

/* Turn what the access layer said into an X86EMU_CB_* status. */
static int finish(struct vb_vcpu *v, int rc, const struct vmmu_x86_fault *vf,
                  struct x86emu_fault *f, const char *what)
{
    if (rc == 0) {
        if (vf->vector == VMMU_X86_FAULT_NONE)
            return X86EMU_CB_OK;
        if (vf->vector >= 32)
            return vb_fail(v, "an access stopped by a watchpoint nobody set", VMMU_EINVAL);
        f->vector = (uint8_t)vf->vector;
        f->has_error_code = vf->vector == VMMU_X86_VEC_PF ||
                            vf->vector == VMMU_X86_VEC_GP || vf->vector == VMMU_X86_VEC_SS;
        f->error_code = vf->error_code;
        f->cr2 = vf->cr2;
        v->mem.faults++;
        return X86EMU_CB_FAULT;
    }
    if (rc == VMMU_EPENDING) {
        /* A device model answers later: abandon the instruction; the loop
         * keeps the latch, waits and re-executes (the retry flow). */
        v->pending = true;
        v->mem.pending++;
        return X86EMU_CB_RETRY;
    }
    if (rc == VMMU_EBUSY) {
        /* The guest rewrote its page tables faster than the walk could
         * finish: execute the instruction again from the start. */
        v->mem.busy++;
        return X86EMU_CB_RETRY;
    }
    return vb_fail(v, what, rc);
}

int vb_mem_read(void *opaque, const struct x86emu_access *a, void *out, struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault vf = {.vector = VMMU_X86_FAULT_NONE};
    if (a->kind == X86EMU_ACCESS_FETCH)
        v->mem.fetches++;
    else
        v->mem.reads++;
    count(v, a);
    int rc = follow_context(v, a);
    if (rc < 0)
        return vb_fail(v, "mode switch", rc);
    unsigned acc = access_bits(a);
    if (!v->in_latch) {
        enum vmmu_tlb_kind kind = a->kind == X86EMU_ACCESS_FETCH ? VMMU_TLB_FETCH : VMMU_TLB_READ;
        void *host = (acc & VMMU_X86_ACC_IMPLICIT)
                         ? vmmu_tlb_lookup_implicit(v->vcpu, a->va, a->size, kind)
                         : vmmu_tlb_lookup(v->vcpu, a->va, a->size, kind);
        if (host) {
            vmmu_guest_load(out, host, a->size);
            return X86EMU_CB_OK;
        }
        struct vmmu_prepared p;
        bool ram;
        rc = plain_prepare(v, a, acc, &p, &vf, &ram);
        if (rc == 0 && vf.vector == VMMU_X86_FAULT_NONE) {
            if (!ram)
                return to_latch(v);
            rc = vmmu_prepared_read(&p, 0, out, a->size);
        }
        return finish(v, rc, &vf, f, a->kind == X86EMU_ACCESS_FETCH ? "fetch" : "read");
    }
    if (one_iteration_done(v, a))
        return X86EMU_CB_RETRY;
    rc = vmmu_access_read(v->vcpu, a->va, out, a->size, acc, &vf);
    return finish(v, rc, &vf, f, a->kind == X86EMU_ACCESS_FETCH ? "fetch" : "read");
}

int vb_mem_write(void *opaque, const struct x86emu_access *a, const void *in,
                 struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault vf = {.vector = VMMU_X86_FAULT_NONE};
    v->mem.writes++;
    count(v, a);
    int rc = follow_context(v, a);
    if (rc < 0)
        return vb_fail(v, "mode switch", rc);
    unsigned acc = access_bits(a);
    if (!v->in_latch) {
        void *host = (acc & VMMU_X86_ACC_IMPLICIT)
                         ? vmmu_tlb_lookup_implicit(v->vcpu, a->va, a->size, VMMU_TLB_WRITE)
                         : vmmu_tlb_lookup(v->vcpu, a->va, a->size, VMMU_TLB_WRITE);
        if (host) {
            vmmu_guest_store(host, in, a->size);
            return X86EMU_CB_OK;
        }
        struct vmmu_prepared p;
        bool ram;
        rc = plain_prepare(v, a, acc | VMMU_X86_ACC_WRITE, &p, &vf, &ram);
        if (rc == 0 && vf.vector == VMMU_X86_FAULT_NONE) {
            if (!ram)
                return to_latch(v);
            rc = vmmu_prepared_write(&p, 0, in, a->size);
        }
        return finish(v, rc, &vf, f, "write");
    }
    if (one_iteration_done(v, a))
        return X86EMU_CB_RETRY;
    rc = vmmu_access_write(v->vcpu, a->va, in, a->size, acc, &vf);
    if (rc == VMMU_EROM)
        return X86EMU_CB_OK; /* a ROM write that reports: the guest sees it dropped */
    return finish(v, rc, &vf, f, "write");
}

/*
 * INS checks its destination before it reads the port: translate and check
 * every page with write intent (A/D and all), write nothing.  Outside the
 * latch a page that is not RAM sends the instruction to the latch now,
 * before the port is read, rather than at the write after it.
 */
int vb_mem_write_check(void *opaque, const struct x86emu_access *a, struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault vf = {.vector = VMMU_X86_FAULT_NONE};
    struct vmmu_prepared p;
    int rc = follow_context(v, a);
    if (rc < 0)
        return vb_fail(v, "mode switch", rc);
    unsigned acc = access_bits(a) | VMMU_X86_ACC_WRITE;
    if (!v->in_latch) {
        bool ram;
        rc = plain_prepare(v, a, acc, &p, &vf, &ram);
        if (rc == 0 && vf.vector == VMMU_X86_FAULT_NONE && !ram)
            return to_latch(v);
        return finish(v, rc, &vf, f, "write check");
    }
    if (one_iteration_done(v, a))
        return X86EMU_CB_RETRY;
    rc = vmmu_access_prepare(v->vcpu, a->va, a->size, acc, &p, &vf);
    return finish(v, rc, &vf, f, "write check");
}

/*
 * Locked instructions and XCHG: the access layer's compare-and-exchange is
 * atomic against every other vCPU on RAM, whatever the alignment; for an
 * operand crossing a page it parks every other vCPU meanwhile (as a CPU
 * locks the bus), so this vCPU may go offline in it and the prepared
 * access below ends there.  It faults as a write even when the comparison
 * fails, as LOCK CMPXCHG does.
 */
int vb_mem_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
                   const void *desired, void *observed, struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault vf = {.vector = VMMU_X86_FAULT_NONE};
    v->mem.rmws++;
    count(v, a);
    int rc = follow_context(v, a);
    if (rc < 0)
        return vb_fail(v, "mode switch", rc);
    unsigned acc = access_bits(a);
    if (!v->in_latch) {
        /* Not atomic on a device page: make sure it is RAM first. */
        struct vmmu_prepared p;
        bool ram;
        rc = plain_prepare(v, a, acc | VMMU_X86_ACC_WRITE, &p, &vf, &ram);
        if (rc < 0 || vf.vector != VMMU_X86_FAULT_NONE)
            return finish(v, rc, &vf, f, "locked access");
        if (!ram)
            return to_latch(v);
    }
    rc = vmmu_access_cmpxchg(v->vcpu, a->va, a->size, expected, desired, observed, NULL, acc,
                             &vf);
    return finish(v, rc, &vf, f, "locked access");
}

/* ---- the interpreter's control-register, MSR, TLB and CPUID hooks ------------ */

int vb_hook_cr_write(void *opaque, unsigned cr, uint64_t old, uint64_t value)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault fault = {.vector = VMMU_X86_FAULT_NONE};
    int rc = 0;
    (void)old;
    if (cr == 0)
        rc = vmmu_vcpu_set_cr0(v->vcpu, value, &fault);
    else if (cr == 3)
        rc = vmmu_vcpu_set_cr3(v->vcpu, value, &fault);
    else if (cr == 4)
        rc = vmmu_vcpu_set_cr4(v->vcpu, value, &fault);
    if (rc < 0)
        return vb_fail(v, "control register write", rc);
    if (fault.vector != VMMU_X86_FAULT_NONE)
        /* The interpreter checked the value; vmmu disagreeing is a bug in one of them. */
        return vb_fail(v, "control register write (vmmu raised a fault the CPU did not)",
                       VMMU_EINVAL);
    return X86EMU_CB_OK;
}

int vb_hook_msr_write(void *opaque, uint32_t msr, uint64_t value)
{
    struct vb_vcpu *v = opaque;
    if (msr != X86EMU_MSR_EFER)
        return X86EMU_CB_OK; /* the interpreter keeps the others */
    struct vmmu_x86_fault fault = {.vector = VMMU_X86_FAULT_NONE};
    int rc = vmmu_vcpu_set_efer(v->vcpu, value, &fault);
    if (rc < 0 || fault.vector != VMMU_X86_FAULT_NONE)
        return vb_fail(v, "EFER write", rc < 0 ? rc : VMMU_EINVAL);
    return X86EMU_CB_OK;
}

int vb_hook_invlpg(void *opaque, uint64_t va)
{
    struct vb_vcpu *v = opaque;
    int rc = vmmu_vcpu_invlpg(v->vcpu, va);
    return rc < 0 ? vb_fail(v, "INVLPG", rc) : X86EMU_CB_OK;
}

int vb_hook_invpcid(void *opaque, uint64_t type, uint64_t pcid, uint64_t va)
{
    struct vb_vcpu *v = opaque;
    struct vmmu_x86_fault fault = {.vector = VMMU_X86_FAULT_NONE};
    int rc = vmmu_vcpu_invpcid(v->vcpu, (unsigned)type, pcid, va, &fault);
    if (rc < 0 || fault.vector != VMMU_X86_FAULT_NONE)
        return vb_fail(v, "INVPCID", rc < 0 ? rc : VMMU_EINVAL);
    return X86EMU_CB_OK;
}

/* The machine's CPUID: the interpreter's, without what KVM here lacks (1 GiB pages),
 * and with the physical-address width vmmu's walker uses for these vCPUs. */
void vb_hook_cpuid(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
    (void)opaque;
    x86emu_cpuid_default(leaf, subleaf, out);
    if (leaf == 0x80000001)
        out[3] &= ~(1u << 26);
    if (leaf == 0x80000008)
        out[0] = (out[0] & ~0xffu) | VB_MAXPHYADDR;
}
