/* SPDX-License-Identifier: MIT */
/*
 * The guest-visible machine model of vmmu's reference emulator: what a
 * guest program may rely on, whichever backend runs it (vmmu today, KVM
 * later).  Guests include this file too, so it uses nothing but
 * <stdint.h> and plain #defines.
 *
 * Memory (guest-physical):
 *
 *   0x00001000  struct emu_boot_info, written by the loader
 *   0x00002000  the GDT the loader provides (selectors below)
 *   0x00008000  the loader's page tables: PML4, PDPT, one PD, identity
 *               mapping the first GiB of RAM with 2 MiB pages (RW,
 *               supervisor, not global)
 *   0x00080000  the first vCPU's initial stack top
 *   0x00100000  the guest image (ELF PT_LOAD segments, at their p_paddr)
 *   ...         free RAM up to boot_info.ram_size
 *   EMU_MMIO_BASE  the machine's device window (absent unless attached)
 *
 * Entry: every vCPU starts in 64-bit mode at CPL 0 with CR0 = PE|MP|ET|NE|
 * WP|PG, CR4 = PAE, EFER = LME|LMA|NXE|SCE, CR3 = the loader's PML4 (the
 * first vCPU) or what the START hypercall named, CS = 0x08, other segments
 * 0x10, RFLAGS = 0x2 (interrupts off), no IDT.  RDI holds the address of
 * the boot info, RSI the vCPU's index.
 *
 * Ports (only at CPL 0):
 *
 *   0x3f8       serial data: `out` a byte, it appears on the console
 *   0x3fd       serial line status: `in` reads 0x60 (transmitter empty)
 *   0x510       EXIT: `out` a 32-bit value; the machine stops and the
 *               run's exit status is its low 8 bits
 *   0x514       VCPU_ID: `in` 32 bits: the running vCPU's index
 *   0x518       NR_VCPUS: `in` 32 bits: how many vCPUs the machine has
 *   0x51c       HYPERCALL: `out` 32 bits: the guest-physical address
 *               (below 4 GiB, 8-byte aligned) of a struct emu_hypercall;
 *               the machine performs it and stores its result in it
 *               before the `out` instruction completes
 *   0x520       IPI: `out` 32 bits: bits 7:0 the vector (32..255), bits
 *               31:16 the destination vCPU index, or EMU_IPI_OTHERS for
 *               every vCPU but the sender
 *
 * Interrupts (the paravirtual IPI): each vCPU has 224 pending bits, one
 * per vector 32..255.  An IPI sets the bit (sending a vector already
 * pending is merged, as with an edge-triggered APIC) and wakes the vCPU
 * if it is halted.  A vCPU takes the highest pending vector through its
 * IDT at an instruction boundary when RFLAGS.IF=1 and no interrupt shadow
 * holds; taking it clears the bit.  There is no end-of-interrupt: the
 * interrupt gate's IF=0 keeps a handler from being nested by itself.
 * An IPI to a vCPU that was never started is dropped.
 */
#ifndef EMU_ABI_H
#define EMU_ABI_H

#include <stdint.h>

/* ---- memory layout ----------------------------------------------------- */

#define EMU_BOOT_INFO_GPA 0x1000u
#define EMU_GDT_GPA 0x2000u
#define EMU_PML4_GPA 0x8000u
#define EMU_PDPT_GPA 0x9000u
#define EMU_PD_GPA 0xa000u
#define EMU_BOOT_STACK_TOP 0x80000u
/** Lowest address a guest image may load at. */
#define EMU_IMAGE_BASE 0x100000u
/** The loader's identity map covers at most this much RAM. */
#define EMU_IDENTITY_MAX (1ull << 30)
/** Where an attached MMIO device appears (guest-physical), and its size. */
#define EMU_MMIO_BASE 0xfe000000ull
#define EMU_MMIO_SIZE 0x1000ull

/* GDT selectors the loader provides. */
#define EMU_SEL_CODE64 0x08u
#define EMU_SEL_DATA 0x10u
#define EMU_GDT_ENTRIES 3u

/** Magic in emu_boot_info.magic ("vmmuboot" little-endian). */
#define EMU_BOOT_MAGIC 0x746f6f62756d6d76ull

/** What the loader leaves at EMU_BOOT_INFO_GPA. */
struct emu_boot_info {
    uint64_t magic;
    uint64_t ram_size;    /**< bytes of RAM from guest-physical 0 */
    uint32_t nr_vcpus;    /**< vCPUs the machine has (index 0 starts first) */
    uint32_t flags;       /**< EMU_BOOT_* */
    uint64_t image_start; /**< lowest guest-physical byte of the image */
    uint64_t image_end;   /**< first byte after the image (page aligned) */
    uint64_t mmio_base;   /**< EMU_MMIO_BASE when a device is attached, else 0 */
};

/** emu_boot_info.flags: the machine's backend is vmmu's emulator. */
#define EMU_BOOT_BACKEND_EMULATOR (1u << 0)
/** emu_boot_info.flags: the backend's CPU has no PCIDs (CR4.PCIDE cannot
 * be set), whatever CPUID the guest reads. */
#define EMU_BOOT_NO_PCID (1u << 1)
/** emu_boot_info.flags: the backend cannot run CMPXCHG16B in ring 0 (a KVM
 * that runs ring 0 in the host's ring 3 and emulates the instruction, which
 * its emulator cannot do). */
#define EMU_BOOT_NO_CMPXCHG16B (1u << 2)
/** emu_boot_info.flags: a LOCKed operation that straddles two pages is not
 * atomic on this backend (KVM PVM emulates it, and KVM's emulator makes a
 * page-crossing compare-exchange a plain write). */
#define EMU_BOOT_SPLIT_LOCK_NOT_ATOMIC (1u << 3)

/* ---- ports -------------------------------------------------------------- */

#define EMU_PORT_SERIAL 0x3f8u
#define EMU_PORT_SERIAL_LSR 0x3fdu
#define EMU_PORT_EXIT 0x510u
#define EMU_PORT_VCPU_ID 0x514u
#define EMU_PORT_NR_VCPUS 0x518u
#define EMU_PORT_HYPERCALL 0x51cu
#define EMU_PORT_IPI 0x520u
/**
 * Reads: the next number of a machine-wide counter (32 bits, from 0; a
 * narrower read gets its low bytes and advances it all the same), so
 * each read has a side effect, as a device FIFO's has; a guest that reads
 * it with INS can tell whether any read was repeated or lost.  Writes are
 * ignored.
 */
#define EMU_PORT_TICKET 0x524u

/** IPI destination meaning "every vCPU but the sender". */
#define EMU_IPI_OTHERS 0xffffu
/** Lowest vector an IPI may carry. */
#define EMU_IPI_VECTOR_MIN 32u

/** Most vCPUs a machine may have (vCPU sets are 64-bit masks). */
#define EMU_VCPUS_MAX 64u

/* ---- hypercalls ----------------------------------------------------------- */

/** START's cr3 must be below 2^EMU_START_CR3_BITS: the physical-address
 *  width (MAXPHYADDR) of the reference emulator's CPU model. */
#define EMU_START_CR3_BITS 40u

enum emu_hypercall_op {
    /**
     * Start vCPU @ref emu_hypercall::vcpu at rip with rsp, RDI = arg,
     * CR3 = cr3 (and the rest of the entry state above).  Each vCPU but
     * the first starts once.  A cr3 with bits at or above
     * EMU_START_CR3_BITS is refused (EMU_HC_EINVAL): no vCPU could load it.
     */
    EMU_HC_START_VCPU = 1,
    /**
     * Flush TLBs: every vCPU in vcpu_mask (the caller included if its bit
     * is set) drops its translations of the @ref emu_hypercall::count
     * pages from va as INVLPG would (the current PCID, and global
     * entries), or everything (all PCIDs, globals) with EMU_FLUSH_ALL.
     * With EMU_FLUSH_LOCAL the guest says only the caller can hold these
     * translations: the machine may flush only the caller.  Without
     * EMU_FLUSH_ASYNC the call returns when every target has flushed
     * (a halted vCPU counts as flushed: it flushes before it runs again).
     */
    EMU_HC_FLUSH = 2,
};

#define EMU_FLUSH_ALL (1u << 0)
#define EMU_FLUSH_LOCAL (1u << 1)
#define EMU_FLUSH_ASYNC (1u << 2)
#define EMU_FLUSH_FLAGS (EMU_FLUSH_ALL | EMU_FLUSH_LOCAL | EMU_FLUSH_ASYNC)
/** Most pages one EMU_HC_FLUSH names; more needs EMU_FLUSH_ALL. */
#define EMU_FLUSH_PAGES_MAX 64u

/** Results stored in emu_hypercall::result. */
#define EMU_HC_OK 0
#define EMU_HC_EINVAL (-1)   /**< unknown op, bad flags, vCPU out of range, a FLUSH
                                   range that is misaligned, empty, too long or
                                   runs past 2^64 */
#define EMU_HC_EBUSY (-2)    /**< START of a vCPU already started */

/** A hypercall's parameter block (72 bytes, 8-byte aligned). */
struct emu_hypercall {
    uint32_t op;        /**< enum emu_hypercall_op */
    int32_t result;     /**< written by the machine: EMU_HC_* */
    uint32_t vcpu;      /**< START: the vCPU to start */
    uint32_t flags;     /**< FLUSH: EMU_FLUSH_* */
    uint64_t vcpu_mask; /**< FLUSH: bit i names vCPU i */
    uint64_t va;        /**< FLUSH: first page (page aligned) */
    uint64_t count;     /**< FLUSH: pages, 1..EMU_FLUSH_PAGES_MAX (ignored with ALL) */
    uint64_t rip, rsp;  /**< START */
    uint64_t arg;       /**< START: RDI */
    uint64_t cr3;       /**< START */
};

#endif /* EMU_ABI_H */
