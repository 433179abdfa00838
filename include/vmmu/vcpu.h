/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/vcpu.h
 * @brief A virtual CPU: its x86 paging state and its software TLB, kept
 *        consistent by register writes that invalidate exactly what the
 *        architecture says.
 *
 * The user creates a vCPU and runs it on one thread of their own.  All
 * register writes that affect translation go through the functions below:
 * each validates like the CPU (by calling the vmmu/x86.h setter) and then
 * drops the TLB entries and paging-structure-cache entries the change makes
 * wrong (SDM Vol. 3A 4.10.4), and nothing else.
 *
 * Contexts.  Each PCID slot holds three tables: user (CPL 3), supervisor
 * (CPL 0-2 with EFLAGS.AC=0, also used by implicit supervisor accesses at
 * any CPL), and supervisor with AC=1.  Rights are decided per context when
 * an entry is filled, so a change of CPL or AC switches tables and
 * flushes nothing.
 *
 * PCIDs.  With CR4.PCIDE=1 the vCPU keeps VMMU_VCPU_PCID_SLOTS PCIDs
 * resident (least recently used is recycled): MOV to CR3 with the no-flush
 * bit just switches tables.  Global entries live in the slot that filled
 * them and are dropped in every slot where the architecture says.
 *
 * Threads: a vCPU belongs to the thread that runs it; no
 * function here may be called on the same vCPU from two threads at once.
 * Different vCPUs of one vm run concurrently.  Cross-vCPU invalidation
 * (P2M changes, remote flushes) is posted through requests, not here.
 */
#ifndef VMMU_VCPU_H
#define VMMU_VCPU_H

#include <stdint.h>

#include "tlb.h"
#include "vm.h"
#include "x86.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vcpu;

/** PCIDs whose TLB entries a vCPU keeps at once. */
#define VMMU_VCPU_PCID_SLOTS 4

/** Bounds and start size of a context table (entries, powers of two). */
#define VMMU_TLB_ENTRIES_MIN 64
#define VMMU_TLB_ENTRIES_MAX 4096
#define VMMU_TLB_ENTRIES_DEFAULT 256
/** Entries of each context's victim array. */
#define VMMU_TLB_VICTIMS 8

/**
 * Create a vCPU in the RESET state (paging off, CPL 0; see
 * vmmu_x86_paging_init()).
 * @param cpu the CPU model (copied), or NULL for all features.
 * @param out receives the vCPU.
 * @return 0; VMMU_EINVAL (NULL @p vm or @p out, bad CPU model); VMMU_ENOMEM;
 *         VMMU_ELIMIT (the vm already has VMMU_VCPU_ID_MAX + 1 vCPUs).
 */
int vmmu_vcpu_create(struct vmmu_vm *vm, const struct vmmu_x86_cpu *cpu, struct vmmu_vcpu **out);

/**
 * Destroy a vCPU (NULL is a no-op).  A vCPU online on the calling thread
 * is taken offline first.
 * @return 0; VMMU_EBUSY (another thread has it online, or waits inside
 *         vmmu for it, or runs an access of it whose callback took it
 *         offline (vmmu_vcpu_offline()), or the call is made from inside a callback of that
 *         vCPU's own access, which goes on once the callback returns: an
 *         MMIO callback, the page-in, device or code handler, a device
 *         model's in-process callback; nothing is changed, the vCPU stays
 *         usable).
 */
int vmmu_vcpu_destroy(struct vmmu_vcpu *vcpu);

/**
 * The vCPU's paging state, read-only: change it through the setters
 * below, never directly (the TLB would not know).  NULL for NULL.
 */
const struct vmmu_x86_paging *vmmu_vcpu_paging(const struct vmmu_vcpu *vcpu);

/*
 * Register writes.  Each returns like its vmmu/x86.h counterpart: 0 with
 * fault->vector == VMMU_X86_FAULT_NONE when the write took effect, 0 with
 * the fault the CPU raises when it did not (nothing changed, nothing
 * flushed), or a negative VMMU_E* code.
 */

/** MOV to CR0.  PG changes flush everything; WP 0->1 flushes the supervisor contexts. */
int vmmu_vcpu_set_cr0(struct vmmu_vcpu *vcpu, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * MOV to CR3.  With CR4.PCIDE=0: drops PCID 0's non-global entries and
 * paging-structure caches.  With PCIDE=1: switches to the PCID in bits
 * 11:0; unless bit 63 (VMMU_X86_CR3_NOFLUSH) is set, that PCID's
 * non-global entries and paging-structure caches are dropped.  Global
 * entries survive (SDM 4.10.4.1).
 */
int vmmu_vcpu_set_cr3(struct vmmu_vcpu *vcpu, uint64_t value, struct vmmu_x86_fault *fault);

/**
 * MOV to CR4.  PGE, PAE, PSE, LA57 changes and PCIDE 1->0 flush
 * everything (globals and every PCID); SMEP or SMAP 0->1 flush the
 * supervisor contexts; PKE/PKS changes flush the contexts holding pages
 * whose protection key became more restrictive.  Changes that only widen
 * rights flush nothing: the stale entry's slow path walks again.
 */
int vmmu_vcpu_set_cr4(struct vmmu_vcpu *vcpu, uint64_t value, struct vmmu_x86_fault *fault);

/** WRMSR IA32_EFER.  An NXE change flushes everything. */
int vmmu_vcpu_set_efer(struct vmmu_vcpu *vcpu, uint64_t value, struct vmmu_x86_fault *fault);

/** WRPKRU.  Flushes the contexts holding user pages whose key was tightened. */
int vmmu_vcpu_set_pkru(struct vmmu_vcpu *vcpu, uint32_t value, struct vmmu_x86_fault *fault);

/** WRMSR IA32_PKRS.  Flushes the contexts holding supervisor pages whose key was tightened. */
int vmmu_vcpu_set_pkrs(struct vmmu_vcpu *vcpu, uint64_t value, struct vmmu_x86_fault *fault);

/** Set RFLAGS: a change of AC switches context; never flushes.  0 or VMMU_EINVAL. */
int vmmu_vcpu_set_rflags(struct vmmu_vcpu *vcpu, uint64_t value);

/** Set the CPL: switches context; never flushes.  0 or VMMU_EINVAL (NULL, cpl > 3). */
int vmmu_vcpu_set_cpl(struct vmmu_vcpu *vcpu, unsigned cpl);

/**
 * Load every register (state restore, VM entry; see vmmu_x86_set_state(),
 * including its PAE PDPTE registers) and flush the whole TLB.  To save a
 * vCPU's registers for it, call vmmu_x86_get_state() on
 * vmmu_vcpu_paging(): loading them again gives back the same paging
 * state whatever guest memory holds by then.
 * @return as vmmu_x86_set_state(); nothing is flushed when it fails.
 */
int vmmu_vcpu_set_state(struct vmmu_vcpu *vcpu, const struct vmmu_x86_regs *regs);

/**
 * INVLPG @p va: drops the translations of that page for the current PCID
 * in every context, global ones for that page in every PCID, the whole
 * large page when one maps @p va, and every paging-structure-cache entry
 * of the current PCID (SDM 4.10.4.1).  A @p va that is not canonical in
 * 64-bit mode is a no-op, as on the CPU (57 bits on a CPU model with
 * 5-level paging whatever CR4.LA57 says, else 48).  Entries of other pages
 * stay, including other 4 KiB pieces of unrelated large pages.  INVLPG at
 * CPL > 0 raises #GP(0) before it does anything: the caller checks that
 * (this call invalidates whatever the CPL).
 * @return 0 or VMMU_EINVAL.
 */
int vmmu_vcpu_invlpg(struct vmmu_vcpu *vcpu, uint64_t va);

/** INVPCID types. */
enum vmmu_invpcid_type {
    VMMU_INVPCID_ADDRESS = 0,        /**< one address, one PCID, not globals */
    VMMU_INVPCID_SINGLE = 1,         /**< one PCID's non-global entries */
    VMMU_INVPCID_ALL_GLOBAL = 2,     /**< everything, globals included */
    VMMU_INVPCID_ALL_NONGLOBAL = 3,  /**< every PCID's non-global entries */
};

/**
 * INVPCID.  #GP(0) when: CPL > 0; @p type > 3; @p pcid > 4095 (reserved
 * descriptor bits); type 0 with a non-canonical @p va; type 0 or 1 with a
 * non-zero @p pcid while CR4.PCIDE=0.  #UD without VMMU_X86_FEAT_PCID.
 * Types 0, 1 and 3 keep global entries; 2 drops them too.  @p va is the
 * descriptor's whole 64-bit address in every mode: canonical means 57
 * bits on a CPU model with 5-level paging (whatever CR4.LA57 says), else
 * 48, outside 64-bit mode too, and there an address at or above 4 GiB
 * drops no entry.
 * @return 0 (see @p fault) or VMMU_EINVAL.
 */
int vmmu_vcpu_invpcid(struct vmmu_vcpu *vcpu, unsigned type, uint64_t pcid, uint64_t va,
                      struct vmmu_x86_fault *fault);

/**
 * Drop every translation this vCPU holds (all PCIDs, all contexts,
 * globals, victims, paging-structure caches).  For P2M changes and the
 * like; the guest cannot ask for this.
 * @return 0 or VMMU_EINVAL.
 */
int vmmu_vcpu_tlb_flush_all(struct vmmu_vcpu *vcpu);

/** Copy the vCPU's statistics into @p out.  0 or VMMU_EINVAL. */
int vmmu_vcpu_stats(const struct vmmu_vcpu *vcpu, struct vmmu_tlb_stats *out);

/** Zero the vCPU's statistics.  0 or VMMU_EINVAL. */
int vmmu_vcpu_stats_reset(struct vmmu_vcpu *vcpu);

/**
 * Entries in the table of the vCPU's current context (for tests,
 * benchmarks and tuning); 0 for NULL.
 */
unsigned vmmu_vcpu_tlb_entries(const struct vmmu_vcpu *vcpu);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_VCPU_H */
