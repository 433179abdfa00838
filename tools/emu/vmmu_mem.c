/* SPDX-License-Identifier: MIT */
/*
 * Guest memory for the interpreter, through vmmu: every linear access is
 * translated by the vCPU's software TLB (vmmu_tlb_lookup inline, then
 * vmmu_tlb_fill), RAM is touched through the host pointer, and everything
 * else (MMIO, holes, ROM writes) goes through vmmu's guest-physical access.
 *
 * This file is the one place that knows how; when vmmu's instruction
 * access layer (vmmu/access.h) is in the tree it takes this file's place.
 *
 * An access is split at page boundaries, and every part is translated
 * before any byte is written, so a faulting write changes nothing
 * (architecture invariant 4).  Host pointers are used at once and never
 * kept: the vCPU passes no safe point between translating and using them.
 */
#include <string.h>

#include "vmmu_backend.h"

/* One page's part of an access. */
struct piece {
    uint64_t va;
    unsigned len;
    uint8_t *host; /* NULL: not RAM, use gpa */
    uint64_t gpa;
};

static unsigned access_bits(const struct x86emu_access *a, bool write)
{
    unsigned acc = write ? VMMU_X86_ACC_WRITE : 0;
    if (a->kind == X86EMU_ACCESS_FETCH)
        acc |= VMMU_X86_ACC_FETCH;
    else if (a->kind == X86EMU_ACCESS_IMPLICIT_SUPERVISOR)
        acc |= VMMU_X86_ACC_IMPLICIT;
    return acc;
}

/* The TLB decides rights per context (CPL, EFLAGS.AC): follow the access's. */
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

static void to_fault(const struct vmmu_x86_fault *vf, struct x86emu_fault *f)
{
    f->vector = (uint8_t)vf->vector;
    f->has_error_code = vf->vector == VMMU_X86_VEC_PF || vf->vector == VMMU_X86_VEC_GP ||
                        vf->vector == VMMU_X86_VEC_SS;
    f->error_code = vf->error_code;
    f->cr2 = vf->cr2;
}

/* Translate one in-page piece.  Returns an X86EMU_CB_* status. */
static int translate(struct vb_vcpu *v, struct piece *p, unsigned acc, struct x86emu_fault *f)
{
    enum vmmu_tlb_kind kind = (acc & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
                              : (acc & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                                           : VMMU_TLB_READ;
    v->mem.pieces++;
    /* A one-byte lookup hits for any byte of a cached page, and the rights
     * of an entry hold for its whole page: the piece never leaves it. */
    void *host = (acc & VMMU_X86_ACC_IMPLICIT) ? vmmu_tlb_lookup_implicit(v->vcpu, p->va, 1, kind)
                                               : vmmu_tlb_lookup(v->vcpu, p->va, 1, kind);
    if (host) {
        v->mem.fast_hits++;
        p->host = host;
        return X86EMU_CB_OK;
    }
    struct vmmu_tlb_result res;
    host = vmmu_tlb_fill(v->vcpu, p->va, p->len, acc, &res);
    switch (res.status) {
    case VMMU_TLB_OK:
        p->host = host;
        return X86EMU_CB_OK;
    case VMMU_TLB_NOT_RAM:
        p->host = NULL;
        p->gpa = res.gpa;
        v->mem.mmio++;
        return X86EMU_CB_OK;
    case VMMU_TLB_FAULT:
        to_fault(&res.fault, f);
        v->mem.faults++;
        return X86EMU_CB_FAULT;
    case VMMU_TLB_CROSSES:
        return vb_fail(v, "a piece of an access crossed a page", VMMU_EINVAL);
    case VMMU_TLB_ERROR:
    default:
        return vb_fail(v, "translation", res.error);
    }
}

/* Split @a into at most two pieces and translate them all. */
static int prepare(struct vb_vcpu *v, const struct x86emu_access *a, bool write,
                   struct piece p[2], unsigned *n, struct x86emu_fault *f)
{
    int rc = follow_context(v, a);
    if (rc < 0)
        return vb_fail(v, "mode switch", rc);
    unsigned first = (unsigned)(VMMU_PAGE_SIZE - (a->va & ~VMMU_PAGE_MASK));
    p[0].va = a->va;
    p[0].len = a->size < first ? a->size : first;
    *n = 1;
    if (p[0].len < a->size) {
        p[1].va = a->va + p[0].len;
        p[1].len = a->size - p[0].len;
        *n = 2;
        v->mem.splits++;
    }
    unsigned acc = access_bits(a, write);
    for (unsigned i = 0; i < *n; i++) {
        rc = translate(v, &p[i], acc, f);
        if (rc != X86EMU_CB_OK)
            return rc;
    }
    return X86EMU_CB_OK;
}

static int gpa_rw(struct vb_vcpu *v, const struct piece *p, void *buf, bool write)
{
    struct vb *b = v->m->backend;
    int rc = write ? vmmu_gpa_write(b->vm, p->gpa, buf, p->len, VMMU_GPA_UNBACKED_ONES, NULL)
                   : vmmu_gpa_read(b->vm, p->gpa, buf, p->len, VMMU_GPA_UNBACKED_ONES, NULL);
    if (rc == VMMU_EROM)
        return X86EMU_CB_OK; /* a ROM write that reports: the guest sees it dropped */
    if (rc < 0)
        return vb_fail(v, write ? "guest-physical write" : "guest-physical read", rc);
    return X86EMU_CB_OK;
}

int vb_mem_read(void *opaque, const struct x86emu_access *a, void *out, struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct piece p[2];
    unsigned n;
    if (a->kind == X86EMU_ACCESS_FETCH)
        v->mem.fetches++;
    else
        v->mem.reads++;
    int rc = prepare(v, a, false, p, &n, f);
    if (rc != X86EMU_CB_OK)
        return rc;
    uint8_t *dst = out;
    for (unsigned i = 0; i < n; i++) {
        if (p[i].host)
            memcpy(dst, p[i].host, p[i].len);
        else if ((rc = gpa_rw(v, &p[i], dst, false)) != X86EMU_CB_OK)
            return rc;
        dst += p[i].len;
    }
    return X86EMU_CB_OK;
}

int vb_mem_write(void *opaque, const struct x86emu_access *a, const void *in,
                 struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct piece p[2];
    unsigned n;
    v->mem.writes++;
    int rc = prepare(v, a, true, p, &n, f);
    if (rc != X86EMU_CB_OK)
        return rc;
    const uint8_t *src = in;
    for (unsigned i = 0; i < n; i++) {
        if (p[i].host)
            memcpy(p[i].host, src, p[i].len);
        else if ((rc = gpa_rw(v, &p[i], (void *)(uintptr_t)src, true)) != X86EMU_CB_OK)
            return rc;
        src += p[i].len;
    }
    return X86EMU_CB_OK;
}

/*
 * Host compare-and-exchange on guest RAM.  Inline assembly rather than
 * the __atomic builtins: a guest may lock a misaligned operand, which the
 * host CPU handles and C would call undefined.
 */
static bool host_cmpxchg(void *ptr, unsigned size, const void *expected, const void *desired,
                         void *observed)
{
    bool ok;
    switch (size) {
    case 1: {
        uint8_t e, d;
        memcpy(&e, expected, 1);
        memcpy(&d, desired, 1);
        __asm__ volatile("lock cmpxchgb %3, %1" : "+a"(e), "+m"(*(uint8_t *)ptr), "=@ccz"(ok)
                         : "q"(d) : "memory");
        memcpy(observed, &e, 1);
        return ok;
    }
    case 2: {
        uint16_t e, d;
        memcpy(&e, expected, 2);
        memcpy(&d, desired, 2);
        __asm__ volatile("lock cmpxchgw %3, %1" : "+a"(e), "+m"(*(uint16_t *)ptr), "=@ccz"(ok)
                         : "r"(d) : "memory");
        memcpy(observed, &e, 2);
        return ok;
    }
    case 4: {
        uint32_t e, d;
        memcpy(&e, expected, 4);
        memcpy(&d, desired, 4);
        __asm__ volatile("lock cmpxchgl %3, %1" : "+a"(e), "+m"(*(uint32_t *)ptr), "=@ccz"(ok)
                         : "r"(d) : "memory");
        memcpy(observed, &e, 4);
        return ok;
    }
    case 8: {
        uint64_t e, d;
        memcpy(&e, expected, 8);
        memcpy(&d, desired, 8);
        __asm__ volatile("lock cmpxchgq %3, %1" : "+a"(e), "+m"(*(uint64_t *)ptr), "=@ccz"(ok)
                         : "r"(d) : "memory");
        memcpy(observed, &e, 8);
        return ok;
    }
    default: { /* 16: CMPXCHG16B; the interpreter raised #GP for a misaligned operand */
        uint64_t e[2], d[2];
        memcpy(e, expected, 16);
        memcpy(d, desired, 16);
        __asm__ volatile("lock cmpxchg16b %2"
                         : "+a"(e[0]), "+d"(e[1]), "+m"(*(unsigned __int128 *)ptr), "=@ccz"(ok)
                         : "b"(d[0]), "c"(d[1])
                         : "memory");
        memcpy(observed, e, 16);
        return ok;
    }
    }
}

/* One lock serialises the atomics vmmu cannot do on one host location:
 * those that cross a page or touch MMIO.  Rare in guests, and never mixed
 * with plain accesses to the same bytes by correct ones. */
static pthread_mutex_t split_lock = PTHREAD_MUTEX_INITIALIZER;

int vb_mem_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
                   const void *desired, void *observed, struct x86emu_fault *f)
{
    struct vb_vcpu *v = opaque;
    struct piece p[2];
    unsigned n;
    v->mem.rmws++;
    /* Translated as a write: a locked instruction needs write permission
     * even when the comparison fails. */
    int rc = prepare(v, a, true, p, &n, f);
    if (rc != X86EMU_CB_OK)
        return rc;
    if (n == 1 && p[0].host) {
        host_cmpxchg(p[0].host, a->size, expected, desired, observed);
        return X86EMU_CB_OK;
    }
    pthread_mutex_lock(&split_lock);
    uint8_t *obs = observed;
    for (unsigned i = 0, off = 0; i < n && rc == X86EMU_CB_OK; off += p[i].len, i++) {
        if (p[i].host)
            memcpy(obs + off, p[i].host, p[i].len);
        else
            rc = gpa_rw(v, &p[i], obs + off, false);
    }
    if (rc == X86EMU_CB_OK && !memcmp(obs, expected, a->size)) {
        const uint8_t *src = desired;
        for (unsigned i = 0, off = 0; i < n && rc == X86EMU_CB_OK; off += p[i].len, i++) {
            if (p[i].host)
                memcpy(p[i].host, src + off, p[i].len);
            else
                rc = gpa_rw(v, &p[i], (void *)(uintptr_t)(src + off), true);
        }
    }
    pthread_mutex_unlock(&split_lock);
    return rc;
}
