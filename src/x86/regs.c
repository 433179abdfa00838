/* SPDX-License-Identifier: MIT */
/* The paging registers of an x86 vCPU: writes that validate as the CPU
 * does (MOV to CRn, WRMSR, WRPKRU), whole-state loads and saves, the PAE
 * PDPTE registers, and the data derived from them (mode, reserved-bit masks).
 *
 * Every setter works on a candidate copy of the state and stores it only
 * when no fault is raised, so a faulting instruction changes nothing. */
#include <string.h>

#include "x86/x86_internal.h"

#include "core/vm_internal.h"
#include "vmmu/error.h"

/* CR0 bits the CPU keeps; the others in 31:0 are reserved and writes to
 * them are ignored (bits 63:32 fault, see vmmu_x86_set_cr0). */
#define CR0_KEPT                                                                                   \
    (VMMU_X86_CR0_PE | (1ull << 1) /* MP */ | (1ull << 2) /* EM */ | (1ull << 3) /* TS */ |       \
     VMMU_X86_CR0_ET | (1ull << 5) /* NE */ | VMMU_X86_CR0_WP | (1ull << 18) /* AM */ |           \
     VMMU_X86_CR0_NW | VMMU_X86_CR0_CD | VMMU_X86_CR0_PG)

/* CR4 bits every modelled CPU accepts and that do not concern paging
 * beyond being stored: VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR
 * OSXMMEXCPT UMIP VMXE SMXE FSGSBASE OSXSAVE. */
#define CR4_BASE (vmmu__x86_bits(11, 0) | (1ull << 16) | (1ull << 18))
/* CR4.VMXE and CR4.SMXE: Intel's; reserved on AMD (APM 3.1.3). */
#define CR4_INTEL ((1ull << 13) | (1ull << 14))

/* CR0 value after RESET or INIT (SDM 9.1.1, Table 9-1): CD, NW, ET. */
#define CR0_RESET 0x60000010ull

/* RFLAGS bits that are reserved and always 0 (SDM Vol. 1 3.4.3, Vol. 3
 * 2.3): 63:22, 15, 5 and 3.  Bit 1 is reserved and always 1. */
#define RFLAGS_ZERO (vmmu__x86_bits(63, 22) | (1ull << 15) | (1ull << 5) | (1ull << 3))
#define RFLAGS_ONE (1ull << 1)
/* RFLAGS.VM: virtual-8086 mode. */
#define RFLAGS_VM (1ull << 17)

/* PAE PDPT: CR3 bits 31:5 (SDM 4.4.1). */
#define PAE_PDPT_MASK 0xffffffe0ull

const char *vmmu_x86_mode_name(enum vmmu_x86_mode mode)
{
    switch (mode) {
    case VMMU_X86_MODE_NONE:
        return "none";
    case VMMU_X86_MODE_32:
        return "32";
    case VMMU_X86_MODE_PAE:
        return "pae";
    case VMMU_X86_MODE_4LEVEL:
        return "4level";
    case VMMU_X86_MODE_5LEVEL:
        return "5level";
    }
    return "?";
}

static bool has(const struct vmmu_x86_paging *pg, uint32_t feature)
{
    return (pg->cpu.features & feature) != 0;
}

/* SDM 4.1.1: the mode follows from CR0.PG, CR4.PAE, EFER.LME(LMA), CR4.LA57. */
static enum vmmu_x86_mode mode_of(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if (!(cr0 & VMMU_X86_CR0_PG))
        return VMMU_X86_MODE_NONE;
    if (!(cr4 & VMMU_X86_CR4_PAE))
        return VMMU_X86_MODE_32;
    if (!(efer & VMMU_X86_EFER_LMA))
        return VMMU_X86_MODE_PAE;
    return (cr4 & VMMU_X86_CR4_LA57) ? VMMU_X86_MODE_5LEVEL : VMMU_X86_MODE_4LEVEL;
}

void vmmu__x86_update_derived(struct vmmu_x86_paging *pg)
{
    unsigned m = pg->cpu.maxphyaddr;
    /* Physical-address bits the CPU does not implement (SDM 4.4.2, 4.5.4). */
    uint64_t above_m = m < 52 ? vmmu__x86_bits(51, m) : 0;
    /* Without EFER.NXE, the XD bit is reserved (SDM 4.4.2, 4.5.4). */
    uint64_t xd = (pg->efer & VMMU_X86_EFER_NXE) ? 0 : VMMU_X86_PTE_NX;

    pg->mode = mode_of(pg->cr0, pg->cr4, pg->efer);
    vmmu__x86_perm_update(pg);
    memset(pg->rsvd_, 0, sizeof(pg->rsvd_));

    switch (pg->mode) {
    case VMMU_X86_MODE_NONE:
        break;
    case VMMU_X86_MODE_32:
        /* SDM 4.3, Table 4-4: a 4 MiB PDE holds physical-address bits
         * 39:32 in its bits 20:13 with PSE-36, up to min(MAXPHYADDR, 40);
         * the bits above them up to bit 21 are reserved.  Without PSE-36
         * bits 21:13 are all reserved.  4 KiB PDEs and PTEs have none. */
        if (has(pg, VMMU_X86_FEAT_PSE36)) {
            unsigned high = (m < 40 ? m : 40) - 32; /* PA bits above 31 */
            pg->rsvd_[1][2] = vmmu__x86_bits(21, 13 + high);
        } else {
            pg->rsvd_[1][2] = vmmu__x86_bits(21, 13);
        }
        break;
    case VMMU_X86_MODE_PAE: {
        /* SDM 4.4.2, Tables 4-8..4-11: in PAE paging, bits 62:MAXPHYADDR of
         * PDEs and PTEs are reserved (not ignored as in IA-32e paging).
         * PDPTEs (Table 4-8): bits 63:MAXPHYADDR, 8:5 and 2:1 reserved. */
        uint64_t pae_high = vmmu__x86_bits(62, m);
        pg->rsvd_[0][3] = pg->rsvd_[1][3] = vmmu__x86_bits(63, m) | vmmu__x86_bits(8, 5) |
                                            vmmu__x86_bits(2, 1);
        pg->rsvd_[0][2] = pae_high | xd;
        pg->rsvd_[1][2] = pae_high | xd | vmmu__x86_bits(20, 13); /* 2 MiB: bit 12 is PAT */
        pg->rsvd_[0][1] = pg->rsvd_[1][1] = pae_high | xd;
        break;
    }
    case VMMU_X86_MODE_4LEVEL:
    case VMMU_X86_MODE_5LEVEL: {
        /* SDM 4.5.4, Tables 4-14..4-20.  PS is reserved in PML5Es and
         * PML4Es; AMD also reserves bit 8 there (APM 5.3.3: MBZ), where
         * Intel ignores it. */
        uint64_t top = above_m | xd | VMMU_X86_PTE_PS;
        if (pg->cpu.vendor == VMMU_X86_VENDOR_AMD)
            top |= VMMU_X86_PTE_G;
        pg->rsvd_[0][5] = pg->rsvd_[1][5] = top;
        pg->rsvd_[0][4] = pg->rsvd_[1][4] = top;
        pg->rsvd_[0][3] = above_m | xd;
        /* A PDPTE with PS=1 maps 1 GiB only if the CPU has 1 GiB pages;
         * otherwise PS is a reserved bit there (SDM 4.5.4). */
        if (has(pg, VMMU_X86_FEAT_1G))
            pg->rsvd_[1][3] = above_m | xd | vmmu__x86_bits(29, 13);
        else
            pg->rsvd_[1][3] = above_m | xd | VMMU_X86_PTE_PS;
        pg->rsvd_[0][2] = above_m | xd;
        pg->rsvd_[1][2] = above_m | xd | vmmu__x86_bits(20, 13);
        /* In a PTE bit 7 is PAT, never PS: both rows are the same. */
        pg->rsvd_[0][1] = pg->rsvd_[1][1] = above_m | xd;
        break;
    }
    }
}

int vmmu__x86_load_pdptes(struct vmmu_x86_paging *pg, bool *bad)
{
    uint64_t base = pg->cr3 & PAE_PDPT_MASK;
    uint64_t loaded[4];

    *bad = false;
    for (unsigned i = 0; i < 4; i++) {
        struct vmmu__x86_entry e;
        /* A section of its own on a host thread (see vmmu_x86_walk_peek). */
        unsigned section = vmmu__read_begin();
        int rc = vmmu__x86_read_entry_level(pg->vm, base + 8 * i, 8, 3, &e); /* PDPTE: level 3 */
        vmmu__read_end(section);
        if (rc < 0)
            return rc;
        /* SDM 4.4.1: loading a present PDPTE with a reserved bit set
         * raises #GP(0); reserved bits of non-present ones are not checked. */
        if ((e.value & VMMU_X86_PTE_P) && (e.value & pg->rsvd_[0][3]))
            *bad = true;
        loaded[i] = e.value;
    }
    if (!*bad)
        memcpy(pg->pdpte, loaded, sizeof(loaded));
    return 0;
}

static void fault_none(struct vmmu_x86_fault *fault)
{
    fault->vector = VMMU_X86_FAULT_NONE;
    fault->error_code = 0;
    fault->cr2 = 0;
}

static int raise(struct vmmu_x86_fault *fault, int vector)
{
    fault->vector = vector;
    fault->error_code = 0;
    fault->cr2 = 0;
    return 0;
}

/* Finish a register write: recompute the derived data of the candidate
 * state, reload the PDPTEs if @reload_pdptes and PAE paging is in use
 * afterwards, and store the candidate only if nothing faulted.  Outside
 * PAE paging the PDPTE registers are kept at 0, so that a saved state
 * (vmmu_x86_get_state) holds everything there is. */
static int finish(struct vmmu_x86_paging *pg, struct vmmu_x86_paging *cand, bool reload_pdptes,
                  struct vmmu_x86_fault *fault)
{
    vmmu__x86_update_derived(cand);
    if (cand->mode != VMMU_X86_MODE_PAE)
        memset(cand->pdpte, 0, sizeof(cand->pdpte));
    if (reload_pdptes && cand->mode == VMMU_X86_MODE_PAE) {
        bool bad;
        int rc = vmmu__x86_load_pdptes(cand, &bad);
        if (rc < 0)
            return rc;
        if (bad)
            return raise(fault, VMMU_X86_VEC_GP);
    }
    *pg = *cand;
    return 0;
}

static uint64_t cr4_allowed(const struct vmmu_x86_paging *pg)
{
    uint64_t ok = CR4_BASE;
    if (pg->cpu.vendor != VMMU_X86_VENDOR_AMD)
        ok |= CR4_INTEL;
    if (has(pg, VMMU_X86_FEAT_LA57))
        ok |= VMMU_X86_CR4_LA57;
    if (has(pg, VMMU_X86_FEAT_PCID))
        ok |= VMMU_X86_CR4_PCIDE;
    if (has(pg, VMMU_X86_FEAT_SMEP))
        ok |= VMMU_X86_CR4_SMEP;
    if (has(pg, VMMU_X86_FEAT_SMAP))
        ok |= VMMU_X86_CR4_SMAP;
    if (has(pg, VMMU_X86_FEAT_PKU))
        ok |= VMMU_X86_CR4_PKE;
    if (has(pg, VMMU_X86_FEAT_CET))
        ok |= VMMU_X86_CR4_CET;
    if (has(pg, VMMU_X86_FEAT_PKS))
        ok |= VMMU_X86_CR4_PKS;
    return ok;
}

static uint64_t efer_allowed(const struct vmmu_x86_paging *pg)
{
    uint64_t ok = VMMU_X86_EFER_SCE;
    /* LME and LMA exist only with long mode: without it both are reserved
     * bits, and a WRMSR that sets either raises #GP(0). */
    if (has(pg, VMMU_X86_FEAT_LM))
        ok |= VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA;
    if (has(pg, VMMU_X86_FEAT_NX))
        ok |= VMMU_X86_EFER_NXE;
    if (pg->cpu.vendor == VMMU_X86_VENDOR_AMD)
        ok |= VMMU_X86_EFER_SVME;
    return ok;
}

/* CR3 bits that are reserved with EFER.LMA=1: 62:MAXPHYADDR (bit 63 is
 * handled by the caller: reserved, or the PCID no-flush hint).  A state
 * load refuses them whatever LMA is. */
static uint64_t cr3_reserved_long(const struct vmmu_x86_paging *pg)
{
    return vmmu__x86_bits(62, pg->cpu.maxphyaddr);
}

int vmmu_x86_paging_init(struct vmmu_x86_paging *pg, struct vmmu_vm *vm,
                         const struct vmmu_x86_cpu *cpu)
{
    struct vmmu_x86_cpu c = {VMMU_X86_VENDOR_INTEL, VMMU_X86_FEAT_ALL, 0};

    if (!pg || !vm)
        return VMMU_EINVAL;
    if (cpu)
        c = *cpu;
    if (c.vendor != VMMU_X86_VENDOR_INTEL && c.vendor != VMMU_X86_VENDOR_AMD)
        return VMMU_EINVAL;
    if (c.features & ~VMMU_X86_FEAT_ALL)
        return VMMU_EINVAL;
    /* LA57 and 1 GiB pages exist only in IA-32e paging. */
    if ((c.features & (VMMU_X86_FEAT_LA57 | VMMU_X86_FEAT_1G)) && !(c.features & VMMU_X86_FEAT_LM))
        return VMMU_EINVAL;
    if (c.maxphyaddr == 0)
        c.maxphyaddr = VMMU_X86_MAXPHYADDR_DEFAULT;
    if (c.maxphyaddr < VMMU_X86_MAXPHYADDR_MIN || c.maxphyaddr > VMMU_X86_MAXPHYADDR_MAX)
        return VMMU_EINVAL;

    memset(pg, 0, sizeof(*pg));
    pg->vm = vm;
    pg->cpu = c;
    pg->cr0 = CR0_RESET;
    pg->rflags = 2;
    vmmu__x86_update_derived(pg);
    return 0;
}

int vmmu_x86_set_cr0(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);

    struct vmmu_x86_paging cand = *pg;
    uint64_t old = pg->cr0;

    /* SDM Vol. 2 MOV CRn: #GP(0) on a 1 in CR0[63:32], PG=1 with PE=0,
     * NW=1 with CD=0.  Reserved bits in 31:0 are ignored; ET is fixed 1. */
    if (value >> 32)
        return raise(fault, VMMU_X86_VEC_GP);
    value = (value & CR0_KEPT) | VMMU_X86_CR0_ET;
    if ((value & VMMU_X86_CR0_PG) && !(value & VMMU_X86_CR0_PE))
        return raise(fault, VMMU_X86_VEC_GP);
    if ((value & VMMU_X86_CR0_NW) && !(value & VMMU_X86_CR0_CD))
        return raise(fault, VMMU_X86_VEC_GP);

    bool pg_on = !(old & VMMU_X86_CR0_PG) && (value & VMMU_X86_CR0_PG);
    bool pg_off = (old & VMMU_X86_CR0_PG) && !(value & VMMU_X86_CR0_PG);
    if (pg_on && (pg->efer & VMMU_X86_EFER_LME)) {
        /* SDM 9.8.5: entering IA-32e mode needs CR4.PAE=1, else #GP(0);
         * then the CPU sets EFER.LMA. */
        if (!(pg->cr4 & VMMU_X86_CR4_PAE))
            return raise(fault, VMMU_X86_VEC_GP);
        cand.efer |= VMMU_X86_EFER_LMA;
    }
    if (pg_off) {
        /* SDM 4.10.1: CR0.PG cannot be cleared while CR4.PCIDE=1. */
        if (pg->cr4 & VMMU_X86_CR4_PCIDE)
            return raise(fault, VMMU_X86_VEC_GP);
        cand.efer &= ~VMMU_X86_EFER_LMA;
    }
    /* SDM 2.5: CR0.WP cannot be cleared while CR4.CET=1. */
    if (!(value & VMMU_X86_CR0_WP) && (pg->cr4 & VMMU_X86_CR4_CET))
        return raise(fault, VMMU_X86_VEC_GP);

    cand.cr0 = value;
    /* SDM 4.4.1: with PAE paging in use afterwards, changing CD, NW or PG
     * loads the PDPTEs. */
    bool reload = ((old ^ value) & (VMMU_X86_CR0_PG | VMMU_X86_CR0_CD | VMMU_X86_CR0_NW)) != 0;
    return finish(pg, &cand, reload, fault);
}

int vmmu_x86_set_cr3(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);

    struct vmmu_x86_paging cand = *pg;
    if (pg->efer & VMMU_X86_EFER_LMA) {
        /* SDM 4.10.4.1: with CR4.PCIDE=1, bit 63 of the source asks to keep
         * the PCID's TLB entries and is not written to CR3; otherwise it is
         * a reserved bit. */
        if (value & VMMU_X86_CR3_NOFLUSH) {
            if (!(pg->cr4 & VMMU_X86_CR4_PCIDE))
                return raise(fault, VMMU_X86_VEC_GP);
            value &= ~VMMU_X86_CR3_NOFLUSH;
        }
        /* SDM Vol. 2 MOV CRn: reserved CR3 bits (above MAXPHYADDR) #GP(0). */
        if (value & cr3_reserved_long(pg))
            return raise(fault, VMMU_X86_VEC_GP);
    } else {
        /* Outside IA-32e mode MOV to CR3 takes a 32-bit operand. */
        value &= 0xffffffffull;
    }
    cand.cr3 = value;
    /* SDM 4.4.1: MOV to CR3 in PAE paging loads the PDPTEs. */
    return finish(pg, &cand, true, fault);
}

int vmmu_x86_set_cr4(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);

    struct vmmu_x86_paging cand = *pg;
    uint64_t old = pg->cr4;
    bool lma = (pg->efer & VMMU_X86_EFER_LMA) != 0;

    /* SDM Vol. 2 MOV CRn: #GP(0) for reserved bits (including those of
     * features the CPU lacks). */
    if (value & ~cr4_allowed(pg))
        return raise(fault, VMMU_X86_VEC_GP);
    /* SDM 9.8.5.4: clearing CR4.PAE in IA-32e mode is #GP(0). */
    if (lma && !(value & VMMU_X86_CR4_PAE))
        return raise(fault, VMMU_X86_VEC_GP);
    /* SDM 4.1.1: CR4.LA57 cannot change while EFER.LMA=1. */
    if (lma && ((old ^ value) & VMMU_X86_CR4_LA57))
        return raise(fault, VMMU_X86_VEC_GP);
    /* SDM 4.10.1: PCIDE may go from 0 to 1 only in IA-32e mode with
     * CR3[11:0] = 0. */
    if ((value & VMMU_X86_CR4_PCIDE) && !(old & VMMU_X86_CR4_PCIDE) &&
        (!lma || (pg->cr3 & 0xfffull)))
        return raise(fault, VMMU_X86_VEC_GP);
    /* SDM 2.5: CR4.CET can be set only when CR0.WP=1. */
    if ((value & VMMU_X86_CR4_CET) && !(pg->cr0 & VMMU_X86_CR0_WP))
        return raise(fault, VMMU_X86_VEC_GP);

    cand.cr4 = value;
    /* SDM 4.4.1: with PAE paging in use afterwards, changing PAE, PGE, PSE
     * or SMEP loads the PDPTEs. */
    uint64_t pdpte_bits = VMMU_X86_CR4_PAE | VMMU_X86_CR4_PGE | VMMU_X86_CR4_PSE | VMMU_X86_CR4_SMEP;
    return finish(pg, &cand, ((old ^ value) & pdpte_bits) != 0, fault);
}

int vmmu_x86_set_efer(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);

    struct vmmu_x86_paging cand = *pg;
    /* SDM Vol. 4 (IA32_EFER) and WRMSR: writing a reserved or unsupported
     * bit is #GP(0). */
    if (value & ~efer_allowed(pg))
        return raise(fault, VMMU_X86_VEC_GP);
    /* SDM 9.8.5: LME cannot change while paging is enabled. */
    if ((pg->cr0 & VMMU_X86_CR0_PG) && ((value ^ pg->efer) & VMMU_X86_EFER_LME))
        return raise(fault, VMMU_X86_VEC_GP);
    /* LMA is the CPU's: only CR0.PG changes it. */
    cand.efer = (value & ~VMMU_X86_EFER_LMA) | (pg->efer & VMMU_X86_EFER_LMA);
    return finish(pg, &cand, false, fault);
}

int vmmu_x86_set_pkru(struct vmmu_x86_paging *pg, uint32_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);
    /* SDM Vol. 2 WRPKRU: #UD if CR4.PKE=0 (or the CPU lacks PKU). */
    if (!has(pg, VMMU_X86_FEAT_PKU) || !(pg->cr4 & VMMU_X86_CR4_PKE))
        return raise(fault, VMMU_X86_VEC_UD);
    pg->pkru = value;
    return 0;
}

int vmmu_x86_set_pkrs(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault)
{
    if (!vmmu__x86_ready(pg) || !fault)
        return VMMU_EINVAL;
    fault_none(fault);
    /* SDM 4.6.2: IA32_PKRS bits 63:32 are reserved; the MSR exists only
     * with PKS.  WRMSR to either is #GP(0). */
    if (!has(pg, VMMU_X86_FEAT_PKS) || (value >> 32))
        return raise(fault, VMMU_X86_VEC_GP);
    pg->pkrs = value;
    return 0;
}

int vmmu_x86_set_rflags(struct vmmu_x86_paging *pg, uint64_t value)
{
    if (!vmmu__x86_ready(pg))
        return VMMU_EINVAL;
    /* As POPF: the reserved bits keep their fixed values. */
    pg->rflags = (value & ~RFLAGS_ZERO) | RFLAGS_ONE;
    return 0;
}

int vmmu_x86_set_cpl(struct vmmu_x86_paging *pg, unsigned cpl)
{
    if (!vmmu__x86_ready(pg) || cpl > 3)
        return VMMU_EINVAL;
    pg->cpl = cpl;
    return 0;
}

/* Whether @r is a state the CPU can be in (see vmmu_x86_set_state). */
static bool state_possible(const struct vmmu_x86_paging *pg, const struct vmmu_x86_regs *r)
{
    bool pgon = (r->cr0 & VMMU_X86_CR0_PG) != 0;
    bool lme = (r->efer & VMMU_X86_EFER_LME) != 0;
    bool lma = (r->efer & VMMU_X86_EFER_LMA) != 0;

    if ((r->cr0 >> 32) || (r->cr0 & ~CR0_KEPT))
        return false;
    if (pgon && !(r->cr0 & VMMU_X86_CR0_PE))
        return false;
    if ((r->cr0 & VMMU_X86_CR0_NW) && !(r->cr0 & VMMU_X86_CR0_CD))
        return false;
    if (r->efer & ~efer_allowed(pg))
        return false;
    if (lma != (lme && pgon))
        return false;
    if (r->cr4 & ~cr4_allowed(pg))
        return false;
    if (lma && !(r->cr4 & VMMU_X86_CR4_PAE))
        return false;
    if ((r->cr4 & VMMU_X86_CR4_PCIDE) && !lma)
        return false;
    if ((r->cr4 & VMMU_X86_CR4_CET) && !(r->cr0 & VMMU_X86_CR0_WP))
        return false;
    /* CR3 may hold bits up to MAXPHYADDR-1 outside IA-32e mode too: MOV to
     * CR3 writes only bits 31:0 there, but clearing CR0.PG leaves IA-32e
     * mode with CR3 as it was.  The 32-bit and PAE walks use bits 31:0. */
    if (r->cr3 & (VMMU_X86_CR3_NOFLUSH | cr3_reserved_long(pg)))
        return false;
    if (r->cpl > 3 || (r->pkrs >> 32))
        return false;
    /* Real mode runs at CPL 0. */
    if (r->cpl != 0 && !(r->cr0 & VMMU_X86_CR0_PE))
        return false;
    /* Bit 1 is forced to 1 below; the bits that read 0 must be 0. */
    if (r->rflags & RFLAGS_ZERO)
        return false;
    /* Virtual-8086 mode exists only in protected mode outside IA-32e mode,
     * and runs at CPL 3 (SDM Vol. 3, 8086 emulation; the VM-entry checks
     * on guest RFLAGS refuse VM with IA-32e mode or with CR0.PE=0). */
    if ((r->rflags & RFLAGS_VM) && (lma || !(r->cr0 & VMMU_X86_CR0_PE) || r->cpl != 3))
        return false;
    if (r->pkrs && !has(pg, VMMU_X86_FEAT_PKS))
        return false;
    if (r->pkru && !has(pg, VMMU_X86_FEAT_PKU))
        return false;
    return true;
}

int vmmu_x86_set_state(struct vmmu_x86_paging *pg, const struct vmmu_x86_regs *regs)
{
    if (!vmmu__x86_ready(pg) || !regs)
        return VMMU_EINVAL;
    if (regs->flags & ~VMMU_X86_REGS_PDPTE)
        return VMMU_EINVAL;
    if (!state_possible(pg, regs))
        return VMMU_EINVAL;

    struct vmmu_x86_paging cand = *pg;
    cand.cr0 = regs->cr0 | VMMU_X86_CR0_ET;
    cand.cr3 = regs->cr3;
    cand.cr4 = regs->cr4;
    cand.efer = regs->efer;
    cand.rflags = regs->rflags | RFLAGS_ONE;
    cand.cpl = regs->cpl;
    cand.pkru = regs->pkru;
    cand.pkrs = regs->pkrs;
    memset(cand.pdpte, 0, sizeof(cand.pdpte));
    vmmu__x86_update_derived(&cand);
    if (cand.mode == VMMU_X86_MODE_PAE && (regs->flags & VMMU_X86_REGS_PDPTE)) {
        /* The PDPTE registers as given (a VMCS's, a saved state's): guest
         * memory may hold other values since the last load.  A present
         * one with a reserved bit could never have been loaded. */
        for (unsigned i = 0; i < 4; i++)
            if ((regs->pdpte[i] & VMMU_X86_PTE_P) && (regs->pdpte[i] & cand.rsvd_[0][3]))
                return VMMU_EINVAL;
        memcpy(cand.pdpte, regs->pdpte, sizeof(cand.pdpte));
    } else if (cand.mode == VMMU_X86_MODE_PAE) {
        bool bad;
        int rc = vmmu__x86_load_pdptes(&cand, &bad);
        if (rc < 0)
            return rc;
        if (bad)
            return VMMU_EINVAL;
    }
    *pg = cand;
    return 0;
}

int vmmu_x86_get_state(const struct vmmu_x86_paging *pg, struct vmmu_x86_regs *regs)
{
    if (!vmmu__x86_ready(pg) || !regs)
        return VMMU_EINVAL;
    memset(regs, 0, sizeof(*regs));
    regs->cr0 = pg->cr0;
    regs->cr3 = pg->cr3;
    regs->cr4 = pg->cr4;
    regs->efer = pg->efer;
    regs->rflags = pg->rflags;
    regs->cpl = pg->cpl;
    regs->pkru = pg->pkru;
    regs->pkrs = pg->pkrs;
    if (pg->mode == VMMU_X86_MODE_PAE) {
        regs->flags = VMMU_X86_REGS_PDPTE;
        memcpy(regs->pdpte, pg->pdpte, sizeof(regs->pdpte));
    }
    return 0;
}
