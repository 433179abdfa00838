/* SPDX-License-Identifier: MIT */
/* Shared inside the x86 paging part: reading page-table entries through the
 * P2M, derived paging data, and the permission decision.  Not installed. */
#ifndef VMMU_X86_INTERNAL_H
#define VMMU_X86_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmmu/x86.h"

/* bits hi..lo inclusive (hi >= lo, hi <= 63). */
static inline uint64_t vmmu__x86_bits(unsigned hi, unsigned lo)
{
    uint64_t upto_hi = hi >= 63 ? ~0ull : (1ull << (hi + 1)) - 1;
    return upto_hi & ~((1ull << lo) - 1);
}

/* Whether @pg is a paging state vmmu_x86_paging_init() set up: not NULL,
 * and with the vm its tables live in.  A zeroed struct that was never set
 * up has no vm: the public functions refuse it with VMMU_EINVAL rather
 * than read page tables through a NULL vm. */
static inline bool vmmu__x86_ready(const struct vmmu_x86_paging *pg)
{
    return pg && pg->vm;
}

/* One page-table entry as read from guest-physical memory (see the entry
 * read policy in vmmu/x86.h). */
struct vmmu__x86_entry {
    uint64_t value;
    void *host;         /* where A/D may be stored (RAM), else NULL */
    uint32_t region_id; /* 0 for holes and ranges read as all-ones */
};

/* Read the @size-byte (4 or 8) entry at @gpa.  Returns 0, or a negative
 * VMMU_E* code when guest memory cannot be read at all (paged out with no
 * way back); holes and MMIO are not errors: they read as all-ones. */
int vmmu__x86_read_entry(struct vmmu_vm *vm, uint64_t gpa, unsigned size,
                         struct vmmu__x86_entry *out);
/* The same, for an entry of paging level @level (5..1; 3 for a PAE PDPTE
 * load; 0 when unknown), which the entry-read hook tags reads with. */
int vmmu__x86_read_entry_level(struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                               struct vmmu__x86_entry *out);

/* The entry-read hook: the replay latch of the access part (src/access/
 * latch.c) puts one on the thread running an instruction, so that walks
 * and PDPTE loads made for it are recorded and, on re-execution, served
 * from the record.  lookup() runs before memory is read: 1 with *out
 * filled serves the read, 0 reads memory, a negative code fails the read.
 * record() runs after a read from memory: 0, or a negative code (the
 * latch is full) that fails the read. */
struct vmmu__x86_entry_hook {
    int (*lookup)(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                  struct vmmu__x86_entry *out);
    int (*record)(void *ctx, struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                  struct vmmu__x86_entry *e);
    void *ctx;
};
extern _Thread_local const struct vmmu__x86_entry_hook *vmmu__x86_entry_hook
    __attribute__((tls_model("initial-exec")));
/* While set on a thread, an entry read that finds its page paged out fails
 * with VMMU_EPAGEDOUT instead of asking the page-in handler (the
 * non-faulting probe, which brings nothing back). */
extern _Thread_local bool vmmu__x86_entry_no_pagein __attribute__((tls_model("initial-exec")));

/* Recompute pg->mode and pg->rsvd_ from the registers and CPU model. */
void vmmu__x86_update_derived(struct vmmu_x86_paging *pg);

/* Load the four PAE PDPTE registers from CR3 (SDM 4.4.1).  pg->rsvd_ must
 * already describe PAE mode.  On success returns 0 and sets *bad to whether
 * a present PDPTE has reserved bits (the caller then raises #GP(0) and
 * keeps its old state); pg->pdpte is written only when !*bad. */
int vmmu__x86_load_pdptes(struct vmmu_x86_paging *pg, bool *bad);

/* What the walk found about the translation, for the permission decision. */
struct vmmu__x86_leaf {
    bool user;     /* U/S=1 at every level */
    bool writable; /* R/W=1 at every level */
    bool nx;       /* XD=1 at some level, with EFER.NXE=1 (PAE/IA-32e only) */
    unsigned pkey; /* protection key of the leaf (IA-32e paging), else 0 */
};

/* Recompute pg->deny_ from CR0, CR4 and EFER (called by update_derived). */
void vmmu__x86_perm_update(struct vmmu_x86_paging *pg);

/* The W, U and I/D bits every #PF error code of this access carries. */
uint32_t vmmu__x86_pf_access_bits(const struct vmmu_x86_paging *pg, unsigned access);

/* 0 if @access may use the translation, else the complete #PF error code
 * (P=1, plus PK when a protection key forbids it). */
uint32_t vmmu__x86_perm_check(const struct vmmu_x86_paging *pg, unsigned access,
                              const struct vmmu__x86_leaf *leaf);

/* VMMU_X86_RIGHT_* allowed for reads, writes and fetches made with the
 * attribute bits (IMPLICIT, STACK) of @access at the current CPL. */
unsigned vmmu__x86_perm_rights(const struct vmmu_x86_paging *pg, unsigned access,
                               const struct vmmu__x86_leaf *leaf);

/* VMMU_X86_RIGHT_* for reads, writes and fetches, all three from one
 * look at pg->deny_, for accesses made in user mode (@user_access) or
 * supervisor mode with or without the EFLAGS.AC override of SMAP; without
 * protection keys (the caller checks that CR4.PKE and CR4.PKS are clear,
 * else vmmu__x86_perm_rights() applies). */
static inline unsigned vmmu__x86_rights_without_keys(const struct vmmu_x86_paging *pg,
                                                     bool user_access, bool ac_override,
                                                     const struct vmmu__x86_leaf *leaf)
{
    unsigned bits = (leaf->user ? 1u : 0u) | (leaf->writable ? 2u : 0u) | (leaf->nx ? 4u : 0u);
    unsigned ua = user_access, ov = ac_override;
    /* deny_[kind] with kind 0, 1, 2 = read, write, fetch = the rights' bit order. */
    return ((~(unsigned)pg->deny_[0][ua][ov] >> bits) & 1u) * VMMU_X86_RIGHT_READ |
           ((~(unsigned)pg->deny_[1][ua][ov] >> bits) & 1u) * VMMU_X86_RIGHT_WRITE |
           ((~(unsigned)pg->deny_[2][ua][ov] >> bits) & 1u) * VMMU_X86_RIGHT_FETCH;
}

/* Clear a walk record to "nothing found yet" for @va and @access; the
 * walker and the TLB's resumed walk both start from it. */
void vmmu__x86_walk_reset(struct vmmu_x86_walk *w, const struct vmmu_x86_paging *pg,
                          uint64_t va, unsigned access);

#endif /* VMMU_X86_INTERNAL_H */
