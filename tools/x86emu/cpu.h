/*
 * x86emu — the CPU interpreter core of vmmu's reference x86-64 emulator.
 *
 * This header is the whole contract between the interpreter and the machine
 * that embeds it.  The interpreter owns instruction semantics (decode via
 * Zydis, execution, RFLAGS, exception delivery through the IDT); the machine
 * owns everything outside the core: linear-address translation and memory
 * (through vmmu), ports, MSRs it chooses to model, CPUID policy and the
 * reaction to control-register writes and TLB invalidations.
 *
 * Scope: 64-bit long mode only (CR0.PE=PG=1, EFER.LMA=1, CS.L=1).  The
 * interpreter does not implement legacy, compatibility or real mode; a guest
 * that leaves 64-bit mode is outside its contract (see x86emu_step()).
 *
 * Error model: every architectural problem (an undecodable byte stream, a
 * 15+ byte instruction, a fetch fault in the middle of an instruction, a
 * privilege violation, a fault reported by the memory callbacks) becomes the
 * architectural exception, delivered through the guest's IDT.  Nothing the
 * guest does can crash the host.
 */
#ifndef X86EMU_CPU_H
#define X86EMU_CPU_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- architectural constants (SDM vol. 3A 2.3, 2.5, vol. 1 3.4.3) -------- */

enum x86emu_gpr {
	X86EMU_RAX, X86EMU_RCX, X86EMU_RDX, X86EMU_RBX,
	X86EMU_RSP, X86EMU_RBP, X86EMU_RSI, X86EMU_RDI,
	X86EMU_R8, X86EMU_R9, X86EMU_R10, X86EMU_R11,
	X86EMU_R12, X86EMU_R13, X86EMU_R14, X86EMU_R15,
};

/* Segment registers in the SDM's Sreg encoding order. */
enum x86emu_sreg {
	X86EMU_ES, X86EMU_CS, X86EMU_SS, X86EMU_DS, X86EMU_FS, X86EMU_GS,
};

#define X86EMU_FLAG_CF   (1ull << 0)
#define X86EMU_FLAG_FIXED (1ull << 1)	/* reads as 1 */
#define X86EMU_FLAG_PF   (1ull << 2)
#define X86EMU_FLAG_AF   (1ull << 4)
#define X86EMU_FLAG_ZF   (1ull << 6)
#define X86EMU_FLAG_SF   (1ull << 7)
#define X86EMU_FLAG_TF   (1ull << 8)
#define X86EMU_FLAG_IF   (1ull << 9)
#define X86EMU_FLAG_DF   (1ull << 10)
#define X86EMU_FLAG_OF   (1ull << 11)
#define X86EMU_FLAG_IOPL (3ull << 12)
#define X86EMU_FLAG_NT   (1ull << 14)
#define X86EMU_FLAG_RF   (1ull << 16)
#define X86EMU_FLAG_VM   (1ull << 17)
#define X86EMU_FLAG_AC   (1ull << 18)
#define X86EMU_FLAG_VIF  (1ull << 19)
#define X86EMU_FLAG_VIP  (1ull << 20)
#define X86EMU_FLAG_ID   (1ull << 21)
/* The six status flags the arithmetic instructions define. */
#define X86EMU_FLAGS_ARITH (X86EMU_FLAG_CF | X86EMU_FLAG_PF | X86EMU_FLAG_AF | \
			    X86EMU_FLAG_ZF | X86EMU_FLAG_SF | X86EMU_FLAG_OF)

#define X86EMU_CR0_PE (1ull << 0)
#define X86EMU_CR0_MP (1ull << 1)
#define X86EMU_CR0_EM (1ull << 2)
#define X86EMU_CR0_TS (1ull << 3)
#define X86EMU_CR0_ET (1ull << 4)
#define X86EMU_CR0_NE (1ull << 5)
#define X86EMU_CR0_WP (1ull << 16)
#define X86EMU_CR0_AM (1ull << 18)
#define X86EMU_CR0_NW (1ull << 29)
#define X86EMU_CR0_CD (1ull << 30)
#define X86EMU_CR0_PG (1ull << 31)

#define X86EMU_CR4_DE         (1ull << 3)
#define X86EMU_CR4_PSE        (1ull << 4)
#define X86EMU_CR4_PAE        (1ull << 5)
#define X86EMU_CR4_PGE        (1ull << 7)
#define X86EMU_CR4_OSFXSR     (1ull << 9)
#define X86EMU_CR4_FSGSBASE   (1ull << 16)
#define X86EMU_CR4_PCIDE      (1ull << 17)
#define X86EMU_CR4_SMEP       (1ull << 20)
#define X86EMU_CR4_SMAP       (1ull << 21)

/* DR6: what caused a #DB (B0-B3: breakpoints 0-3). */
#define X86EMU_DR6_BD (1u << 13)	/* a MOV DR with DR7.GD set */
#define X86EMU_DR6_BS (1u << 14)	/* single step */
/* DR7: general detect (MOV DR is #DB). */
#define X86EMU_DR7_GD (1ull << 13)

#define X86EMU_EFER_SCE (1ull << 0)
#define X86EMU_EFER_LME (1ull << 8)
#define X86EMU_EFER_LMA (1ull << 10)
#define X86EMU_EFER_NXE (1ull << 11)

#define X86EMU_MSR_TSC            0x00000010u
#define X86EMU_MSR_EFER           0xc0000080u
#define X86EMU_MSR_STAR           0xc0000081u
#define X86EMU_MSR_LSTAR          0xc0000082u
#define X86EMU_MSR_CSTAR          0xc0000083u
#define X86EMU_MSR_SFMASK         0xc0000084u
#define X86EMU_MSR_FS_BASE        0xc0000100u
#define X86EMU_MSR_GS_BASE        0xc0000101u
#define X86EMU_MSR_KERNEL_GS_BASE 0xc0000102u
#define X86EMU_MSR_TSC_AUX        0xc0000103u

/* Exception vectors (SDM vol. 3A table 6-1). */
enum x86emu_vector {
	X86EMU_EXC_DE = 0, X86EMU_EXC_DB = 1, X86EMU_EXC_NMI = 2, X86EMU_EXC_BP = 3,
	X86EMU_EXC_OF = 4, X86EMU_EXC_BR = 5, X86EMU_EXC_UD = 6, X86EMU_EXC_NM = 7,
	X86EMU_EXC_DF = 8, X86EMU_EXC_TS = 10, X86EMU_EXC_NP = 11, X86EMU_EXC_SS = 12,
	X86EMU_EXC_GP = 13, X86EMU_EXC_PF = 14, X86EMU_EXC_MF = 16, X86EMU_EXC_AC = 17,
	X86EMU_EXC_MC = 18, X86EMU_EXC_XM = 19,
};

/* ---- CPU state --------------------------------------------------------------- */

/*
 * A segment register: the visible selector and the hidden part loaded from
 * the descriptor.  In 64-bit mode only FS/GS bases take part in address
 * formation (SDM 3.2.4); CS's L/D bits and DPL, and SS's DPL, still matter.
 * attr uses the descriptor's access-rights layout: bits 0-3 type, 4 S,
 * 5-6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G.
 */
struct x86emu_segment {
	uint16_t selector;
	uint16_t attr;
	uint32_t limit;
	uint64_t base;
};

#define X86EMU_SEG_ATTR_P (1u << 7)
#define X86EMU_SEG_ATTR_L (1u << 13)
#define X86EMU_SEG_ATTR_DB (1u << 14)

struct x86emu_dtr {
	uint64_t base;
	uint16_t limit;
};

/* An exception or interrupt: what the interpreter raised or delivered. */
struct x86emu_event {
	bool valid;
	uint8_t vector;
	bool has_error_code;
	uint32_t error_code;
	uint64_t cr2;		/* meaningful for #PF only */
};

struct x86emu_cpu {
	uint64_t gpr[16];	/* indexed by enum x86emu_gpr */
	uint64_t rip;
	uint64_t rflags;
	struct x86emu_segment seg[6];	/* indexed by enum x86emu_sreg */
	struct x86emu_segment ldtr, tr;
	struct x86emu_dtr gdtr, idtr;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t kernel_gs_base;	/* swapped with GS.base by SWAPGS */
	uint64_t star, lstar, cstar, sfmask;	/* SYSCALL/SYSRET MSRs */
	uint64_t tsc_aux;
	uint64_t tsc;		/* used by RDTSC when env->rdtsc is NULL */
	/*
	 * Debug registers DR0-DR7 as MOV DR stores them (4 and 5 unused: they
	 * alias 6 and 7).  DR0-DR3 with DR7 are instruction, data and I/O
	 * breakpoints (debug.c); DR6 reports what caused a #DB (B0-B3, BD,
	 * BS).  Zero reads as the reset values of DR6 and DR7.
	 */
	uint64_t dr[8];
	/*
	 * A #DB trap is owed before the next instruction: a single step (TF),
	 * data or I/O breakpoints the last instruction hit.  db_status holds
	 * the DR6 bits it reports (X86EMU_DR6_*); after MOV SS or POP SS it
	 * holds them, without db_pending, until the next instruction
	 * completes (SDM 6.8.3: those traps wait one instruction).
	 */
	bool db_pending;
	uint16_t db_status;
	uint8_t cpl;		/* == CS.selector & 3 in long mode */
	bool halted;		/* HLT executed; cleared by an interrupt */
	bool shutdown;		/* triple fault: the CPU does nothing more */
	/*
	 * Interrupt shadow (SDM 6.8.3): after STI (with IF previously clear) or
	 * MOV SS/POP SS, maskable interrupts are held off until the next
	 * instruction completes.  Set by the interpreter, cleared after the
	 * following instruction; x86emu_interrupt() honours it.
	 */
	bool intr_shadow;
	/* The last exception the interpreter delivered (for the machine's logs and tests). */
	struct x86emu_event last_exception;
	/* Instructions retired (a REP iteration chunk counts once). */
	uint64_t icount;
	/*
	 * An INS element that read its port but whose store to memory was
	 * answered X86EMU_CB_RETRY.  A port read can have side effects (it may
	 * take a byte from a device's FIFO), so the re-execution stores this
	 * input instead of reading the port again, as a CPU, which never
	 * abandons an element between the read and the store, would have.
	 * Used only by the INS element at the same RIP, rDI, port and size;
	 * kept across X86EMU_EXIT_RETRY alone: cleared when any instruction
	 * completes or faults and when an event is delivered.
	 */
	struct x86emu_held_input {
		bool valid;
		uint8_t size;
		uint16_t port;
		uint32_t value;
		uint64_t rip, rdi;
	} held_input;
};

/* ---- the machine's side: callbacks --------------------------------------------- */

enum x86emu_access_kind {
	X86EMU_ACCESS_DATA,	/* an explicit operand, or the stack */
	X86EMU_ACCESS_FETCH,	/* instruction fetch */
	/*
	 * An implicit supervisor-mode access (SDM 4.6): GDT/IDT/TSS reads and
	 * descriptor busy-bit writes.  Always privileged, whatever the CPL.
	 */
	X86EMU_ACCESS_IMPLICIT_SUPERVISOR,
};

/* One memory access, as the interpreter asks the machine to perform it. */
struct x86emu_access {
	uint64_t va;		/* linear address, canonical */
	uint32_t size;		/* bytes, 1..X86EMU_ACCESS_MAX; may cross pages, and wrap
			   from 2^64 - 1 to 0 (va + size overflows) */
	enum x86emu_access_kind kind;
	uint8_t cpl;		/* privilege of the access: 0 for implicit supervisor */
	bool ac;		/* RFLAGS.AC at the time, for SMAP (SDM 4.6.1) */
	/*
	 * REP iterations this execution of the instruction completed (and
	 * committed) before this access; 0 outside string instructions.  A
	 * machine may answer X86EMU_CB_RETRY to stop before an iteration: the
	 * completed ones stay done, and the instruction resumes at this one.
	 */
	uint32_t rep_done;
};

/* Largest single access: ENTER with nesting level 31 writes its frame as one. */
#define X86EMU_ACCESS_MAX 256u

/*
 * A fault the memory layer reports: the interpreter delivers it unchanged
 * (and, for #PF, loads CR2 from cr2).
 */
struct x86emu_fault {
	uint8_t vector;
	bool has_error_code;
	uint32_t error_code;
	uint64_t cr2;
};

/* What a memory, port or hook callback returns. */
enum x86emu_cb_status {
	X86EMU_CB_OK = 0,
	/* The access faults; *fault says how.  Only memory callbacks and msr hooks. */
	X86EMU_CB_FAULT = 1,
	/*
	 * Not now: the instruction is abandoned with no architectural state
	 * changed (RIP still at it), and x86emu_step() returns X86EMU_EXIT_RETRY
	 * so the machine can, e.g., wait for a device model and re-execute.
	 * (Memory already written by an earlier access of the same instruction
	 * is the memory layer's business: its replay latch.)
	 */
	X86EMU_CB_RETRY = 2,
};

struct x86emu_env {
	void *opaque;		/* passed back to every callback */

	/* Required.  Read/write a.size bytes at linear a.va. */
	int (*read)(void *opaque, const struct x86emu_access *a, void *out,
		    struct x86emu_fault *fault);
	int (*write)(void *opaque, const struct x86emu_access *a, const void *in,
		     struct x86emu_fault *fault);
	/*
	 * Optional: atomic compare-and-exchange of a.size (1, 2, 4, 8 or 16)
	 * bytes for LOCK-prefixed instructions and XCHG with memory.  Stores
	 * the value seen in *observed; writes desired only if it equalled
	 * *expected.  A write-permission fault must be reported even when the
	 * comparison fails (SDM: LOCK CMPXCHG always writes).  When NULL the
	 * interpreter uses read + write, which is atomic only on one vCPU.
	 */
	int (*cmpxchg)(void *opaque, const struct x86emu_access *a,
		       const void *expected, const void *desired, void *observed,
		       struct x86emu_fault *fault);

	/*
	 * Optional: check that a write of a.size bytes at a.va would succeed
	 * (translate with write intent, with every check the write makes)
	 * without writing anything, and report its fault as write would.  INS
	 * calls it before it reads the port, so a destination that faults
	 * leaves the port unread.  NULL: INS reads the port first, and a write
	 * that then faults loses the input it read.
	 */
	int (*write_check)(void *opaque, const struct x86emu_access *a,
			   struct x86emu_fault *fault);

	/* Optional (NULL: reads all-ones, writes are dropped). size is 1, 2 or 4. */
	int (*io_in)(void *opaque, uint16_t port, unsigned size, uint32_t *value);
	int (*io_out)(void *opaque, uint16_t port, unsigned size, uint32_t value);

	/*
	 * Optional hooks, called after the interpreter has validated the new
	 * value and just before it takes effect, so vmmu's paging/TLB can
	 * follow (cr is 0, 3, 4 or 8; EFER changes arrive through msr_write).
	 * For CR3 with CR4.PCIDE=1, new_value keeps bit 63 as the guest
	 * wrote it (1: do not flush the PCID's translations); CR3 itself is
	 * stored with bit 63 clear.
	 * Return X86EMU_CB_OK or X86EMU_CB_RETRY.
	 */
	int (*cr_write)(void *opaque, unsigned cr, uint64_t old_value, uint64_t new_value);
	int (*invlpg)(void *opaque, uint64_t va);
	/* INVPCID (SDM vol. 2A): type 0-3, descriptor {pcid, linear address}. */
	int (*invpcid)(void *opaque, uint64_t type, uint64_t pcid, uint64_t va);

	/*
	 * Optional: MSRs the interpreter does not keep itself (it keeps EFER,
	 * STAR/LSTAR/CSTAR/SFMASK, FS/GS/KERNEL_GS base, TSC_AUX).  Return
	 * X86EMU_CB_FAULT to raise #GP(0) (the fault record is ignored), or
	 * X86EMU_CB_RETRY.  msr_write is also told about the MSRs the
	 * interpreter keeps (after validation), so the machine can follow EFER.
	 * When NULL, unknown MSRs raise #GP(0).
	 */
	int (*msr_read)(void *opaque, uint32_t msr, uint64_t *value);
	int (*msr_write)(void *opaque, uint32_t msr, uint64_t value);

	/* Optional: CPUID policy.  NULL: x86emu_cpuid_default(). */
	void (*cpuid)(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
	/* Optional: the time stamp counter.  NULL: cpu->tsc, advanced per instruction. */
	uint64_t (*rdtsc)(void *opaque);
};

/* ---- entry points -------------------------------------------------------------- */

enum x86emu_exit {
	X86EMU_EXIT_BUDGET = 0,	/* executed `budget` instructions */
	X86EMU_EXIT_HLT,	/* the CPU is halted (cpu->halted) */
	X86EMU_EXIT_RETRY,	/* a callback said "retry": nothing changed, re-run later */
	X86EMU_EXIT_SHUTDOWN,	/* triple fault (cpu->shutdown) */
	X86EMU_EXIT_BAD_MODE,	/* the CPU is not in 64-bit mode: outside the contract */
};

/* REP string instructions run at most this many iterations per step, then
 * leave RIP at the instruction so the next step resumes them (SDM vol. 2B,
 * REP: "interrupts are recognized between iterations"). */
#define X86EMU_REP_ITERATIONS_PER_STEP 64u

/*
 * Put *cpu in the state firmware would leave a 64-bit kernel in: long mode,
 * paging on, CPL 0, flat 64-bit code segment with selector 0x08, data 0x10,
 * RFLAGS = 0x2.  GDTR/IDTR/TR are empty; the machine sets them up.
 */
void x86emu_cpu_init_long_mode(struct x86emu_cpu *cpu);

/*
 * Execute up to `budget` instructions (a chunk of a REP string instruction
 * counts as one).  Exceptions raised by instructions are delivered through
 * the guest IDT; they do not stop the loop.  Returns an enum x86emu_exit.
 */
int x86emu_step(struct x86emu_cpu *cpu, const struct x86emu_env *env, unsigned budget);

/* Whether a maskable external interrupt can be taken now (IF=1, no shadow, no owed #DB). */
bool x86emu_interrupts_enabled(const struct x86emu_cpu *cpu);

/*
 * Deliver external interrupt `vector` (32..255) now, through the IDT, waking
 * a halted CPU.  The caller checks x86emu_interrupts_enabled() first for
 * maskable interrupts.  Returns X86EMU_EXIT_BUDGET when delivered,
 * X86EMU_EXIT_RETRY or X86EMU_EXIT_SHUTDOWN.
 */
int x86emu_interrupt(struct x86emu_cpu *cpu, const struct x86emu_env *env, uint8_t vector);

/* The CPUID leaves the interpreter implements, for machines without a policy. */
void x86emu_cpuid_default(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/* A short name for an enum x86emu_exit value. */
const char *x86emu_exit_name(int exit_reason);

#ifdef __cplusplus
}
#endif

#endif /* X86EMU_CPU_H */
