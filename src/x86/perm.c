/* SPDX-License-Identifier: MIT */
/* The permission decision of a page walk: given what the walk found
 * (effective U/S, R/W, XD, protection key) and the paging state, may this
 * access use the translation, and if not, which #PF error code?
 *
 * Rules follow SDM Vol. 3A 4.6 (access rights) and 4.7 (error code). */
#include "x86/x86_internal.h"

/* A user-mode access is one made at CPL 3, except implicit supervisor-mode
 * accesses (GDT/LDT/IDT/TSS), which are supervisor accesses whatever the
 * CPL (SDM 4.6). */
static bool is_user_access(const struct vmmu_x86_paging *pg, unsigned access)
{
    return pg->cpl == 3 && !(access & VMMU_X86_ACC_IMPLICIT);
}

uint32_t vmmu__x86_pf_access_bits(const struct vmmu_x86_paging *pg, unsigned access)
{
    uint32_t code = 0;

    if (access & VMMU_X86_ACC_WRITE)
        code |= VMMU_X86_PF_W;
    if (is_user_access(pg, access))
        code |= VMMU_X86_PF_U;
    /* SDM 4.7: I/D is 1 for an instruction fetch only if CR4.SMEP=1, or
     * PAE/IA-32e paging is in use with EFER.NXE=1. */
    if (access & VMMU_X86_ACC_FETCH) {
        bool pae_nx = pg->mode >= VMMU_X86_MODE_PAE && (pg->efer & VMMU_X86_EFER_NXE);
        if ((pg->cr4 & VMMU_X86_CR4_SMEP) || pae_nx)
            code |= VMMU_X86_PF_I;
    }
    return code;
}

enum { KIND_READ, KIND_WRITE, KIND_FETCH };

static unsigned kind_of(unsigned access)
{
    if (access & VMMU_X86_ACC_WRITE)
        return KIND_WRITE;
    return (access & VMMU_X86_ACC_FETCH) ? KIND_FETCH : KIND_READ;
}

/* Everything but protection keys (SDM 4.6.1), for one kind of access made
 * in user or supervisor mode, with or without the EFLAGS.AC override of
 * SMAP, to an address with the given effective U/S, R/W and XD. */
static bool rights_allow(const struct vmmu_x86_paging *pg, unsigned kind, bool user_access,
                         bool ac_override, bool user, bool writable, bool nx)
{
    bool write = kind == KIND_WRITE;
    bool wp = (pg->cr0 & VMMU_X86_CR0_WP) != 0;

    if (kind == KIND_FETCH) {
        /* SDM 4.6.1: no fetch from an address with XD=1 at some level
         * (only meaningful with EFER.NXE=1, which the walk checked). */
        if (nx)
            return false;
        /* User-mode fetches need a user-mode address. */
        if (user_access)
            return user;
        /* SMEP: supervisor-mode fetches from user-mode addresses fault. */
        return !(user && (pg->cr4 & VMMU_X86_CR4_SMEP));
    }

    if (user_access) {
        /* User-mode data accesses need U/S=1 everywhere; writes also R/W=1
         * everywhere, whatever CR0.WP says. */
        if (!user)
            return false;
        return !write || writable;
    }

    /* Supervisor-mode data accesses to user-mode addresses: with SMAP they
     * fault unless the access is explicit, CPL < 3 and EFLAGS.AC=1. */
    if (user && (pg->cr4 & VMMU_X86_CR4_SMAP) && !ac_override)
        return false;
    /* Supervisor writes: with CR0.WP=1 they need R/W=1 everywhere; with
     * WP=0 they may write read-only pages (user or supervisor). */
    return !(write && wp && !writable);
}

/* Like KVM, decide every combination once per change of CR0/CR4/EFER, so
 * that a walk's decision is a table lookup. */
void vmmu__x86_perm_update(struct vmmu_x86_paging *pg)
{
    for (unsigned kind = 0; kind < 3; kind++)
        for (unsigned ua = 0; ua < 2; ua++)
            for (unsigned ov = 0; ov < 2; ov++) {
                uint8_t deny = 0;
                for (unsigned bits = 0; bits < 8; bits++)
                    if (!rights_allow(pg, kind, ua, ov, bits & 1, bits & 2, bits & 4))
                        deny |= (uint8_t)(1u << bits);
                pg->deny_[kind][ua][ov] = deny;
            }
}

/* The row of pg->deny_ for this access's mode and AC override. */
static bool table_denies(const struct vmmu_x86_paging *pg, unsigned kind, bool user_access,
                         bool ac_override, unsigned leaf_bits)
{
    return (pg->deny_[kind][user_access][ac_override] >> leaf_bits) & 1;
}

/* The EFLAGS.AC override of SMAP: explicit accesses at CPL < 3 with AC=1. */
static bool has_ac_override(const struct vmmu_x86_paging *pg, unsigned access)
{
    return !(access & VMMU_X86_ACC_IMPLICIT) && pg->cpl < 3 && (pg->rflags & VMMU_X86_RFLAGS_AC);
}

static unsigned leaf_bits_of(const struct vmmu__x86_leaf *leaf)
{
    return (leaf->user ? 1u : 0u) | (leaf->writable ? 2u : 0u) | (leaf->nx ? 4u : 0u);
}

/* Protection keys (SDM 4.6.2): whether the key of the page forbids this
 * data access.  PKRU governs user-mode addresses with CR4.PKE=1, PKRS
 * supervisor-mode addresses with CR4.PKS=1; only IA-32e paging has keys.
 * AD forbids every data access; WD forbids writes by user-mode accesses,
 * and by supervisor-mode accesses when CR0.WP=1. */
static bool key_forbids(const struct vmmu_x86_paging *pg, unsigned access,
                        const struct vmmu__x86_leaf *leaf)
{
    uint64_t keys;

    if (!(pg->cr4 & (VMMU_X86_CR4_PKE | VMMU_X86_CR4_PKS)))
        return false;
    if (access & VMMU_X86_ACC_FETCH)
        return false;
    if (pg->mode < VMMU_X86_MODE_4LEVEL)
        return false;
    if (leaf->user && (pg->cr4 & VMMU_X86_CR4_PKE))
        keys = pg->pkru;
    else if (!leaf->user && (pg->cr4 & VMMU_X86_CR4_PKS))
        keys = pg->pkrs;
    else
        return false;

    unsigned bits = (unsigned)(keys >> (2 * leaf->pkey)) & 3;
    bool ad = bits & 1, wd = bits & 2;
    if (ad)
        return true;
    if (wd && (access & VMMU_X86_ACC_WRITE))
        return is_user_access(pg, access) || (pg->cr0 & VMMU_X86_CR0_WP);
    return false;
}

uint32_t vmmu__x86_perm_check(const struct vmmu_x86_paging *pg, unsigned access,
                              const struct vmmu__x86_leaf *leaf)
{
    bool denied = table_denies(pg, kind_of(access), is_user_access(pg, access),
                               has_ac_override(pg, access), leaf_bits_of(leaf));
    /* SDM 4.7: the PK flag reports the key's verdict on its own, also when
     * another rule forbids the access as well. */
    bool pk = key_forbids(pg, access, leaf);

    if (!denied && !pk)
        return 0;
    return VMMU_X86_PF_P | vmmu__x86_pf_access_bits(pg, access) | (pk ? VMMU_X86_PF_PK : 0);
}

unsigned vmmu__x86_perm_rights(const struct vmmu_x86_paging *pg, unsigned access,
                               const struct vmmu__x86_leaf *leaf)
{
    bool ua = is_user_access(pg, access);
    bool ov = has_ac_override(pg, access);
    unsigned bits = leaf_bits_of(leaf);
    unsigned attrs = access & (VMMU_X86_ACC_IMPLICIT | VMMU_X86_ACC_STACK);
    unsigned rights = 0;

    if (!table_denies(pg, KIND_READ, ua, ov, bits) && !key_forbids(pg, attrs, leaf))
        rights |= VMMU_X86_RIGHT_READ;
    if (!table_denies(pg, KIND_WRITE, ua, ov, bits) &&
        !key_forbids(pg, attrs | VMMU_X86_ACC_WRITE, leaf))
        rights |= VMMU_X86_RIGHT_WRITE;
    if (!table_denies(pg, KIND_FETCH, ua, ov, bits))
        rights |= VMMU_X86_RIGHT_FETCH; /* keys never govern fetches */
    return rights;
}
