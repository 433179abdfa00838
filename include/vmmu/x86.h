/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/x86.h
 * @brief x86 paging: the paging state of a vCPU, register writes that
 *        validate like the CPU, and page walks with exact fault semantics.
 *
 * A struct vmmu_x86_paging holds what decides how a vCPU translates linear
 * addresses: CR0, CR3, CR4, EFER, EFLAGS.AC, CPL, PKRU, PKRS, the four PAE
 * PDPTE registers, and the CPU's configuration (vendor, features,
 * MAXPHYADDR).  It is written only through the functions below, which
 * keep derived data (paging mode, reserved-bit masks) in step.
 *
 * Walks come in two forms:
 *  - vmmu_x86_walk_peek() is a pure function of the paging state and guest
 *    memory: it reads page-table entries through the P2M and fills a
 *    struct vmmu_x86_walk, and never writes guest memory (for debuggers,
 *    introspection and oracles).
 *  - vmmu_x86_walk() is what a CPU does: the same walk, then, only if it
 *    succeeds, the accessed and dirty bits are set by atomic
 *    compare-and-swap on the guest entries (vmmu_x86_walk_commit()); if
 *    another agent changed an entry meanwhile the walk starts again, at
 *    most VMMU_X86_WALK_RESTARTS_MAX times.
 *
 * Architectural faults (#PF, #GP, #SS, #UD) are results, not errors: a
 * function that evaluates an instruction returns 0 and reports the fault
 * in a struct vmmu_x86_fault.  Negative VMMU_E* codes mean the library
 * could not do its job (bad argument, guest memory unavailable, ...).
 *
 * Page-table entries are read from guest-physical memory as follows
 * (the "entry read policy"):
 *  - RAM: read with an atomic load from host memory; A/D bits are set
 *    there.  A paged-out page is brought back through the P2M's page-in
 *    handler; if it cannot be, the walk fails with VMMU_EPAGEDOUT (no
 *    handler, or the page still out) or with the handler's own negative
 *    code (VMMU_ESYS, VMMU_ENOMEM, ...: vmmu_pagein_fn in p2m.h).
 *  - ROM: read from its memory; A/D updates are dropped, as the bus drops
 *    writes to ROM.
 *  - holes, addresses beyond the vm's width, MMIO and device-model ranges:
 *    read as all-ones, without running any callback (a walk has no device
 *    side effects, so the peek form stays side-effect-free).  In PAE and
 *    IA-32e paging all-ones has P=1 and, whenever MAXPHYADDR < 52,
 *    reserved address bits at every level, so such a walk ends in a #PF
 *    with RSVD=1 (and such a PAE PDPT makes the PDPTE load raise #GP(0)).
 *    32-bit paging has no reserved bit in a 4 KiB PDE or PTE: an all-ones
 *    PTE maps frame 0xfffff000, user and writable (no A/D is written), and
 *    an all-ones PDE is a 4 MiB page with reserved bit 21 (#PF, RSVD=1)
 *    with CR4.PSE=1, else a page table at 0xfffff000.
 *
 * Threads: a struct vmmu_x86_paging belongs to one vCPU thread.  Walks on different paging structures may
 * run concurrently on the same vm.
 */
#ifndef VMMU_X86_H
#define VMMU_X86_H

#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Architectural bits ------------------------------------------------- */

/** CR0 bits vmmu interprets. */
#define VMMU_X86_CR0_PE (1ull << 0)
#define VMMU_X86_CR0_ET (1ull << 4)
#define VMMU_X86_CR0_WP (1ull << 16)
#define VMMU_X86_CR0_AM (1ull << 18)
#define VMMU_X86_CR0_NW (1ull << 29)
#define VMMU_X86_CR0_CD (1ull << 30)
#define VMMU_X86_CR0_PG (1ull << 31)

/** CR4 bits vmmu interprets. */
#define VMMU_X86_CR4_PSE (1ull << 4)
#define VMMU_X86_CR4_PAE (1ull << 5)
#define VMMU_X86_CR4_PGE (1ull << 7)
#define VMMU_X86_CR4_LA57 (1ull << 12)
#define VMMU_X86_CR4_PCIDE (1ull << 17)
#define VMMU_X86_CR4_SMEP (1ull << 20)
#define VMMU_X86_CR4_SMAP (1ull << 21)
#define VMMU_X86_CR4_PKE (1ull << 22)
#define VMMU_X86_CR4_CET (1ull << 23)
#define VMMU_X86_CR4_PKS (1ull << 24)

/** CR3 bit 63 on MOV to CR3 with CR4.PCIDE=1: keep the PCID's TLB entries.
 *  It is never stored in CR3. */
#define VMMU_X86_CR3_NOFLUSH (1ull << 63)

/** EFER bits vmmu interprets. */
#define VMMU_X86_EFER_SCE (1ull << 0)
#define VMMU_X86_EFER_LME (1ull << 8)
#define VMMU_X86_EFER_LMA (1ull << 10)
#define VMMU_X86_EFER_NXE (1ull << 11)
#define VMMU_X86_EFER_SVME (1ull << 12)

/** EFLAGS.AC: with CR4.SMAP, lets explicit supervisor accesses reach user pages. */
#define VMMU_X86_RFLAGS_AC (1ull << 18)

/** Page-table entry bits (all paging modes). */
#define VMMU_X86_PTE_P (1ull << 0)
#define VMMU_X86_PTE_RW (1ull << 1)
#define VMMU_X86_PTE_US (1ull << 2)
#define VMMU_X86_PTE_PWT (1ull << 3)
#define VMMU_X86_PTE_PCD (1ull << 4)
#define VMMU_X86_PTE_A (1ull << 5)
#define VMMU_X86_PTE_D (1ull << 6)
#define VMMU_X86_PTE_PS (1ull << 7)
#define VMMU_X86_PTE_G (1ull << 8)
#define VMMU_X86_PTE_PAT_LARGE (1ull << 12)
#define VMMU_X86_PTE_NX (1ull << 63)

/** #PF error code bits (SDM 4.7). */
#define VMMU_X86_PF_P (1u << 0)    /**< protection or reserved-bit fault (0: not present) */
#define VMMU_X86_PF_W (1u << 1)    /**< the access was a write */
#define VMMU_X86_PF_U (1u << 2)    /**< the access was a user-mode access */
#define VMMU_X86_PF_RSVD (1u << 3) /**< a reserved bit was set in an entry */
#define VMMU_X86_PF_I (1u << 4)    /**< instruction fetch (only with NXE in PAE/IA-32e paging, or SMEP) */
#define VMMU_X86_PF_PK (1u << 5)   /**< protection-key violation (PKRU or PKRS) */

/** Exception vectors a walk or a register write can raise. */
#define VMMU_X86_VEC_UD 6
#define VMMU_X86_VEC_SS 12
#define VMMU_X86_VEC_GP 13
#define VMMU_X86_VEC_PF 14
#define VMMU_X86_VEC_AC 17
/** struct vmmu_x86_fault::vector when nothing was raised. */
#define VMMU_X86_FAULT_NONE (-1)

/* ---- CPU configuration -------------------------------------------------- */

/** Whose rules apply where Intel and AMD differ. */
enum vmmu_x86_vendor {
    VMMU_X86_VENDOR_INTEL = 0, /**< bit 8 of a PML4E/PML5E is ignored */
    VMMU_X86_VENDOR_AMD = 1,   /**< bit 8 of a PML4E/PML5E is reserved (must be zero) */
};

/** CPU features that change paging rules.  PSE, PAE and PGE are always present. */
#define VMMU_X86_FEAT_NX (1u << 0)      /**< EFER.NXE and the XD bit */
#define VMMU_X86_FEAT_PSE36 (1u << 1)   /**< 4 MiB pages above 4 GiB in 32-bit paging */
#define VMMU_X86_FEAT_LM (1u << 2)      /**< long mode: EFER.LME, 4-level paging */
#define VMMU_X86_FEAT_1G (1u << 3)      /**< 1 GiB pages (PDPTE.PS) */
#define VMMU_X86_FEAT_LA57 (1u << 4)    /**< CR4.LA57, 5-level paging */
#define VMMU_X86_FEAT_PCID (1u << 5)    /**< CR4.PCIDE */
#define VMMU_X86_FEAT_SMEP (1u << 6)    /**< CR4.SMEP */
#define VMMU_X86_FEAT_SMAP (1u << 7)    /**< CR4.SMAP */
#define VMMU_X86_FEAT_PKU (1u << 8)     /**< CR4.PKE, PKRU */
#define VMMU_X86_FEAT_PKS (1u << 9)     /**< CR4.PKS, IA32_PKRS */
#define VMMU_X86_FEAT_CET (1u << 10)    /**< CR4.CET (only its tie to CR0.WP is modelled) */
/** Every feature: a recent x86-64 CPU. */
#define VMMU_X86_FEAT_ALL ((1u << 11) - 1)

/** MAXPHYADDR when the configuration leaves it 0 (QEMU's default phys-bits). */
#define VMMU_X86_MAXPHYADDR_DEFAULT 40
#define VMMU_X86_MAXPHYADDR_MIN 32
#define VMMU_X86_MAXPHYADDR_MAX 52

/** A CPU model.  Zero-initialise, then set what you need. */
struct vmmu_x86_cpu {
    enum vmmu_x86_vendor vendor;
    uint32_t features;   /**< VMMU_X86_FEAT_* */
    unsigned maxphyaddr; /**< 32..52; 0 selects VMMU_X86_MAXPHYADDR_DEFAULT */
};

/* ---- Paging state ------------------------------------------------------- */

/** How linear addresses are translated, from CR0.PG, CR4.PAE, EFER.LMA, CR4.LA57. */
enum vmmu_x86_mode {
    VMMU_X86_MODE_NONE = 0, /**< CR0.PG=0: linear = physical (32-bit) */
    VMMU_X86_MODE_32,       /**< 32-bit paging, two levels, 4 KiB and 4 MiB pages */
    VMMU_X86_MODE_PAE,      /**< PAE paging: PDPTE registers, then two levels */
    VMMU_X86_MODE_4LEVEL,   /**< 4-level paging (IA-32e), 48-bit linear addresses */
    VMMU_X86_MODE_5LEVEL,   /**< 5-level paging (CR4.LA57), 57-bit linear addresses */
};

/** Short name of a mode ("none", "32", "pae", "4level", "5level"; "?" for
 *  any other value). */
const char *vmmu_x86_mode_name(enum vmmu_x86_mode mode);

/**
 * The paging state of one vCPU.  Callers read any field; they change it
 * only through the functions of this header (which keep @ref mode and the
 * private masks consistent).  Embeddable: no allocation, no destructor.
 * Set it up with vmmu_x86_paging_init() first: the other functions
 * refuse a zeroed one (no @ref vm) with VMMU_EINVAL.
 */
struct vmmu_x86_paging {
    struct vmmu_vm *vm;      /**< guest memory the page tables live in */
    struct vmmu_x86_cpu cpu; /**< the CPU model (maxphyaddr resolved) */

    uint64_t cr0, cr3, cr4, efer;
    uint64_t rflags; /**< only AC matters to paging */
    unsigned cpl;    /**< 0..3 */
    uint32_t pkru;
    uint64_t pkrs;   /**< IA32_PKRS; bits 63:32 are zero */
    /** PAE PDPTE registers: loaded from CR3 when the SDM says (4.4.1), not
     *  on every walk.  Meaningful in VMMU_X86_MODE_PAE only; 0 otherwise. */
    uint64_t pdpte[4];

    enum vmmu_x86_mode mode; /**< derived */

    /* Private, derived from the above by every setter.
     * rsvd_[ps][level]: bits that must be zero in a present entry of that
     * level (1..5), for PS=0 / PS=1.  Level 3 in PAE mode is the PDPTE.
     * deny_[kind][user access][AC override]: bit (U | W<<1 | XD<<2) set
     * when that access may not use a translation with those effective
     * U/S, R/W, XD bits (protection keys aside); kind 0 read, 1 write,
     * 2 fetch.  Recomputed when CR0, CR4 or EFER change. */
    uint64_t rsvd_[2][6];
    uint8_t deny_[3][2][2];
};

/** A fault the CPU would raise. */
struct vmmu_x86_fault {
    int vector;          /**< VMMU_X86_VEC_* or VMMU_X86_FAULT_NONE */
    uint32_t error_code; /**< #PF: VMMU_X86_PF_* bits; #GP/#SS: 0; #UD: none (0) */
    uint64_t cr2;        /**< #PF only: the value CR2 takes (the linear address) */
};

/**
 * Reset a paging state to the values after RESET (SDM 9.1.1): CR0 =
 * 0x60000010 (paging off), CR3 = CR4 = EFER = 0, RFLAGS = 2, CPL 0,
 * PKRU = PKRS = 0.
 * @param vm  the vm whose guest-physical memory holds the page tables;
 *            it must outlive every use of @p pg.
 * @param cpu the CPU model, copied; NULL selects Intel, VMMU_X86_FEAT_ALL,
 *            MAXPHYADDR VMMU_X86_MAXPHYADDR_DEFAULT.
 * @return 0; VMMU_EINVAL (NULL @p pg or @p vm, unknown vendor or feature
 *         bits, MAXPHYADDR out of range, LA57/1G without LM).
 */
int vmmu_x86_paging_init(struct vmmu_x86_paging *pg, struct vmmu_vm *vm,
                         const struct vmmu_x86_cpu *cpu);

/* ---- Register writes as the guest performs them ------------------------- */
/*
 * Each of these evaluates one guest instruction (MOV to CRn, WRMSR,
 * WRPKRU, ...).  They return 0 when the instruction was evaluated: then
 * either fault->vector is VMMU_X86_FAULT_NONE and the register holds the
 * new value, or the fault says what the CPU raises and nothing changed.
 * A negative return (VMMU_EINVAL for NULL arguments or a paging state
 * vmmu_x86_paging_init() did not set up, VMMU_EPAGEDOUT or the page-in
 * handler's code if a PDPTE load could not page its table in) also leaves
 * everything unchanged.
 * @p fault may not be NULL.
 *
 * These functions do not flush any TLB: the caller's TLB decides what
 * a change of CR0/CR3/CR4 invalidates (bit 63 of a MOV to CR3 with PCIDE
 * is the guest's no-flush hint and is not stored).
 */

/**
 * MOV to CR0.  #GP(0) for: bits 63:32 set; PG without PE; NW without CD;
 * PG set with EFER.LME=1 and CR4.PAE=0; PG cleared while CR4.PCIDE=1;
 * WP cleared while CR4.CET=1; in PAE mode, a PDPTE with reserved bits.
 * Reserved bits 31:0 are ignored and ET reads as 1.  Setting PG with
 * EFER.LME=1 sets EFER.LMA; clearing PG clears it.  Leaving long mode
 * from a 64-bit code segment (#GP) is the caller's check: vmmu does not
 * know CS.L.
 */
int vmmu_x86_set_cr0(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * MOV to CR3.  With EFER.LMA=1: #GP(0) if bits 62:MAXPHYADDR are set, or
 * bit 63 with CR4.PCIDE=0 (with PCIDE=1 bit 63 is the no-flush hint and is
 * dropped).  With EFER.LMA=0 the operand is 32 bits (upper bits ignored).
 * In PAE mode the PDPTEs are loaded; reserved bits in a present one: #GP(0).
 * Clearing CR0.PG keeps CR3 as it is, so CR3 can hold bits above 31
 * outside IA-32e mode; 32-bit and PAE paging use only bits 31:0.
 */
int vmmu_x86_set_cr3(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * MOV to CR4.  #GP(0) for: a bit the CPU model lacks or reserved; clearing
 * PAE while EFER.LMA=1; changing LA57 while EFER.LMA=1; setting PCIDE
 * while EFER.LMA=0 or CR3[11:0] != 0; setting CET while CR0.WP=0; in PAE
 * mode, when PAE, PGE, PSE or SMEP changes, a PDPTE with reserved bits.
 */
int vmmu_x86_set_cr4(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * WRMSR to IA32_EFER.  #GP(0) for: a bit the CPU model lacks (LME or LMA
 * without FEAT_LM, NXE without FEAT_NX, SVME except on AMD) or reserved;
 * changing LME while CR0.PG=1.  LMA is read-only here: with FEAT_LM the
 * written value's LMA bit is ignored.
 */
int vmmu_x86_set_efer(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * WRPKRU.  #UD without FEAT_PKU or with CR4.PKE=0.
 */
int vmmu_x86_set_pkru(struct vmmu_x86_paging *pg, uint32_t value, struct vmmu_x86_fault *fault);

/**
 * WRMSR to IA32_PKRS.  #GP(0) without FEAT_PKS or if bits 63:32 are set.
 */
int vmmu_x86_set_pkrs(struct vmmu_x86_paging *pg, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * Set RFLAGS (only AC affects paging).  As with POPF, the reserved bits
 * keep their fixed values: bits 63:22, 15, 5 and 3 read 0 whatever
 * @p value holds, bit 1 reads 1.  Never faults.  Whether the other bits
 * fit the rest of the state (VM with IA-32e mode, ...) is the caller's
 * business; vmmu_x86_set_state() checks it.
 * @return 0 or VMMU_EINVAL (NULL @p pg).
 */
int vmmu_x86_set_rflags(struct vmmu_x86_paging *pg, uint64_t value);

/**
 * Set the current privilege level.  It is not checked against CR0.PE or
 * RFLAGS.VM (vmmu_x86_set_state() checks that).
 * @return 0 or VMMU_EINVAL (NULL @p pg, @p cpl > 3).
 */
int vmmu_x86_set_cpl(struct vmmu_x86_paging *pg, unsigned cpl);

/* ---- Whole-state load and save (restore, VM entry, tools, oracles) ------ */

/** struct vmmu_x86_regs::flags: in PAE paging, load the PDPTE registers
 *  from struct vmmu_x86_regs::pdpte instead of reading guest memory. */
#define VMMU_X86_REGS_PDPTE (1u << 0)

/**
 * Register values for vmmu_x86_set_state() and vmmu_x86_get_state().
 * Zero-initialise (or use designated initializers), then set what you
 * need: with @ref flags 0 the PDPTE registers are read from memory.
 */
struct vmmu_x86_regs {
    uint64_t cr0, cr3, cr4, efer, rflags;
    unsigned cpl;
    uint32_t pkru;
    uint64_t pkrs;
    unsigned flags; /**< VMMU_X86_REGS_*; other bits are refused */
    /** The four PAE PDPTE registers, used with VMMU_X86_REGS_PDPTE in PAE
     *  paging only (as a VMCS's or KVM_SET_SREGS2's PDPTRs); ignored
     *  otherwise.  vmmu_x86_get_state() gives 0 outside PAE paging. */
    uint64_t pdpte[4];
};

/**
 * Load every register at once, as a state restore or VM entry does.  In
 * PAE paging the PDPTE registers are then loaded from memory (CR3 bits
 * 31:5), or, with VMMU_X86_REGS_PDPTE in @p regs->flags, taken from
 * @p regs->pdpte without reading memory: the guest may have rewritten its
 * PDPT since its last load of CR3 (SDM 4.4.1), and a VM entry with EPT
 * takes them from the VMCS.  Only the reserved bits of present ones are
 * checked then.  Outside PAE paging @p regs->pdpte is ignored and the
 * registers read 0.
 *
 * The values must be a state the CPU can be in: each register's reserved
 * bits clear and features present; CR0.PG implies PE; NW implies CD; EFER.LMA equals
 * LME && PG; LMA implies CR4.PAE; PCIDE implies LMA; CET implies WP;
 * CR3 bits 63:MAXPHYADDR clear whatever EFER.LMA is (outside IA-32e mode
 * CR3 may keep bits above 31 from before CR0.PG was cleared, as on the CPU;
 * the 32-bit and PAE walks use bits 31:0 only); CPL 0..3, and 0 when
 * CR0.PE=0; RFLAGS bits 63:22, 15, 5 and 3 clear (bit 1 is set whatever
 * @p regs holds, as KVM_SET_REGS does); RFLAGS.VM only with CR0.PE=1,
 * EFER.LMA=0 and CPL 3; PKRS bits 63:32 clear; present PDPTEs (read or
 * given) free of reserved bits.
 * @return 0; VMMU_EINVAL (NULL argument, unknown @p regs->flags bits, or
 *         an impossible state: @p pg is then unchanged); VMMU_EPAGEDOUT or
 *         the page-in handler's code (only when the PDPTEs are read).
 */
int vmmu_x86_set_state(struct vmmu_x86_paging *pg, const struct vmmu_x86_regs *regs);

/**
 * Save every register, for vmmu_x86_set_state() to load again: in PAE
 * paging with the PDPTE registers and VMMU_X86_REGS_PDPTE, otherwise with
 * @p regs->flags and @p regs->pdpte 0.  Loading what it saves gives back
 * the same paging state, field for field, whatever guest memory holds by
 * then.  For a vCPU, pass vmmu_vcpu_paging().
 * @return 0; VMMU_EINVAL (NULL argument or a paging state
 *         vmmu_x86_paging_init() did not set up).
 */
int vmmu_x86_get_state(const struct vmmu_x86_paging *pg, struct vmmu_x86_regs *regs);

/* ---- Walks -------------------------------------------------------------- */

/** Access kinds and attributes, ORed together.  A read is 0. */
#define VMMU_X86_ACC_WRITE (1u << 0) /**< a data write */
#define VMMU_X86_ACC_FETCH (1u << 1) /**< an instruction fetch (not with WRITE) */
/** An implicit supervisor-mode access: GDT/LDT/IDT/TSS reads and the
 *  like.  It is a supervisor access even at CPL 3, and EFLAGS.AC never
 *  lets it through SMAP (SDM 4.6). */
#define VMMU_X86_ACC_IMPLICIT (1u << 2)
/** The access goes through SS: a non-canonical address raises #SS(0)
 *  instead of #GP(0). */
#define VMMU_X86_ACC_STACK (1u << 3)
/** Every access bit, for validation. */
#define VMMU_X86_ACC_ALL ((1u << 4) - 1)

/** Effective rights of a translation, for the same CPL and access attributes. */
#define VMMU_X86_RIGHT_READ (1u << 0)
#define VMMU_X86_RIGHT_WRITE (1u << 1)
#define VMMU_X86_RIGHT_FETCH (1u << 2)

/** Most page-table levels a walk visits (5-level paging). */
#define VMMU_X86_LEVELS_MAX 5
/** How often vmmu_x86_walk() starts again when an entry changed under it. */
#define VMMU_X86_WALK_RESTARTS_MAX 8

/** One paging-structure entry the walk used. */
struct vmmu_x86_walk_level {
    unsigned level;     /**< 5 (PML5E) .. 1 (PTE); 3 is the PDPTE in PAE mode */
    unsigned size;      /**< entry size in bytes: 4 (32-bit paging) or 8 */
    uint64_t gpa;       /**< guest-physical address of the entry */
    uint64_t value;     /**< what the walk read */
    /** The value the CPU writes to the entry after a successful walk (A,
     *  and D on a write's leaf); == value if nothing changes.
     *  vmmu_x86_walk_commit() stores it where @ref host is non-NULL; an
     *  entry in ROM or read as all-ones keeps @ref value (the bus drops
     *  the write). */
    uint64_t new_value;
    /** Host address of the entry when A/D updates may be written there (RAM),
     *  else NULL (ROM, holes, MMIO, and the PAE PDPTE registers).  Valid as
     *  long as the P2M lookup that produced it (see vmmu/p2m.h). */
    void *host;
    uint32_t region_id; /**< region holding the entry, 0 for holes/registers */
};

/** Everything a walk found. */
struct vmmu_x86_walk {
    uint64_t va;             /**< the linear address asked for */
    unsigned access;         /**< VMMU_X86_ACC_* as asked for */
    enum vmmu_x86_mode mode; /**< the mode the walk ran in */
    bool ok;                 /**< translated: @ref fault is VMMU_X86_FAULT_NONE */

    /* When ok: */
    uint64_t gpa;       /**< guest-physical address of the byte at @ref va */
    uint64_t page_size; /**< 4 KiB, 2 MiB, 4 MiB or 1 GiB (4 KiB with paging off) */
    unsigned rights;    /**< VMMU_X86_RIGHT_*: what this CPL/attribute set may do here */
    bool user;          /**< U/S=1 at every level (a user-mode address) */
    bool writable;      /**< R/W=1 at every level */
    bool nx;            /**< XD=1 at some level with NXE=1 */
    bool global;        /**< leaf G=1 and CR4.PGE=1 */
    bool dirty;         /**< the leaf's D bit after the walk's own update */
    unsigned pkey;      /**< leaf bits 62:59 in IA-32e paging, else 0 */
    unsigned pat_index; /**< PAT*4 + PCD*2 + PWT of the leaf (memory type index) */
    unsigned pcid;      /**< CR3[11:0] with CR4.PCIDE=1, else 0 */

    /* Always: */
    unsigned nlevels; /**< entries used, top level first (also on faults) */
    struct vmmu_x86_walk_level levels[VMMU_X86_LEVELS_MAX];
    struct vmmu_x86_fault fault; /**< the fault, or vector VMMU_X86_FAULT_NONE */
    unsigned restarts;           /**< how often vmmu_x86_walk() restarted */
    bool committed;              /**< A/D updates were written (vmmu_x86_walk()) */
};

/**
 * Translate @p va for one access without side effects: nothing in guest
 * memory changes, no MMIO or device callback runs (a paged-out page-table
 * page is still brought back through the P2M's page-in handler).  On
 * success @p out describes the translation, and levels[].new_value the
 * A/D bits a CPU would set; on a fault, out->fault is what the CPU
 * raises (#PF with CR2, or #GP/#SS(0) for a non-canonical address in
 * IA-32e paging; CR2 is then not written).
 * Linear addresses in 32-bit and PAE paging and with paging off are 32
 * bits: bits 63:32 of @p va are ignored there.
 * The work is bounded: at most five entry reads.
 * @return 0 (translated or faulted: see out->ok); VMMU_EINVAL (NULL
 *         argument, unknown or contradictory @p access bits);
 *         VMMU_EPAGEDOUT (a page-table page is paged out and could not be
 *         brought back), or the page-in handler's own code.
 */
int vmmu_x86_walk_peek(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                       struct vmmu_x86_walk *out);

/**
 * Store the A/D updates a successful peek planned, entry by entry, top
 * level first, each by compare-and-swap from the value the walk read.
 * Pages of regions with VMMU_REGION_LOG_DIRTY that receive an update get
 * their VMMU_PAGE_DIRTY bit.  Does nothing for a faulted walk (A/D bits
 * are only set by walks that succeed, as KVM does).
 * The record is not trusted: before anything is stored, every level with
 * an update is checked against the map (its host address must be the one
 * the map gives its entry, the update may only add A and D, the entry is
 * 4 or 8 bytes, naturally aligned, inside the vm's width), so a record
 * altered after the walk stores nothing.  Call it where the peek was
 * made (on the vCPU's thread, before anything could remove the region).
 * @return 0 (all stored, out->committed set); VMMU_EBUSY if an entry no
 *         longer holds the value read, or its region was removed or
 *         replaced since the walk (the walk must be redone; updates to
 *         levels above a changed entry stay stored, which is harmless as
 *         the CPU may set A bits of entries it used); VMMU_EINVAL (NULL
 *         argument, more than VMMU_X86_LEVELS_MAX levels, or a level no
 *         walk of this vm gives; nothing stored).
 */
int vmmu_x86_walk_commit(const struct vmmu_x86_paging *pg, struct vmmu_x86_walk *walk);

/**
 * Translate @p va for one access as the CPU does: vmmu_x86_walk_peek(),
 * then, on success, vmmu_x86_walk_commit(), starting over when an entry
 * changed meanwhile.
 * @return as vmmu_x86_walk_peek(), or VMMU_EBUSY after
 *         VMMU_X86_WALK_RESTARTS_MAX restarts (@p out then holds the
 *         last attempt; no fault should be injected).
 */
int vmmu_x86_walk(const struct vmmu_x86_paging *pg, uint64_t va, unsigned access,
                  struct vmmu_x86_walk *out);

/**
 * Whether @p va is canonical for the current mode: always true outside
 * IA-32e paging; bits 63:47 (63:56 with 5-level paging) equal otherwise.
 * False for a NULL @p pg.
 */
bool vmmu_x86_canonical(const struct vmmu_x86_paging *pg, uint64_t va);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_X86_H */
