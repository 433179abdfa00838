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

/* Clear a walk record to "nothing found yet" for @va and @access; the
 * walker and the TLB's resumed walk both start from it. */
void vmmu__x86_walk_reset(struct vmmu_x86_walk *w, const struct vmmu_x86_paging *pg,
                          uint64_t va, unsigned access);

#endif /* VMMU_X86_INTERNAL_H */
