/*
 * x86emu internals shared by cpu.c, exec.c, alu.c, string.c and system.c.
 * Cross-file internal symbols carry the x86emu__ prefix (vmmu's convention).
 *
 * The execution model, in one paragraph: x86emu_step() copies the committed
 * CPU state into ctx->cpu and executes one instruction on the copy.  Memory
 * writes go to the machine as they happen (each instruction does all its
 * reads first and at most one write, last), register and flag changes stay
 * in the copy.  Only when the instruction completed is the copy committed.
 * So a fault is precise for free (SDM 6.5: faults are reported with the
 * state before the instruction), and a "retry" from a callback abandons the
 * instruction with no architectural state changed.  The one exception is a
 * REP string instruction, which commits after each iteration (see string.c).
 */
#ifndef X86EMU_INTERNAL_H
#define X86EMU_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <Zydis/Zydis.h>

#include "cpu.h"

/* Internal status of an instruction or helper. */
enum x86emu_status {
	XS_OK = 0,
	XS_FAULT,	/* ctx->fault holds the exception to deliver */
	XS_RETRY,	/* a callback said retry: abandon, change nothing */
	XS_HALT,	/* HLT completed */
	XS_SHUTDOWN,	/* triple fault */
};

struct x86emu_ctx {
	struct x86emu_cpu *arch;	/* committed state */
	struct x86emu_cpu cpu;		/* working copy */
	const struct x86emu_env *env;
	ZydisDecoder decoder;
	ZydisDecodedInstruction insn;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	uint64_t next_rip;
	struct x86emu_fault fault;
	uint32_t rep_done;		/* REP iterations committed by this execution */
	bool keep_rf;			/* the instruction leaves RF as it set it */
	bool mov_ss;			/* it loaded SS: debug traps wait one instruction */
	uint8_t db_hits;		/* B0-B3: breakpoints its completed accesses hit */
	uint16_t db_fault;		/* DR6 bits of a #DB fault it raised (BD) */
};

__extension__ typedef unsigned __int128 x86emu_u128;
__extension__ typedef __int128 x86emu_i128;

/* ---- small helpers -------------------------------------------------------- */

/* The little-endian quadword at p (guest memory as bytes). */
static inline uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t width_mask(unsigned bits)
{
	return bits >= 64 ? ~0ull : (1ull << bits) - 1;
}

static inline uint64_t sign_extend(uint64_t v, unsigned bits)
{
	if (bits >= 64)
		return v;
	uint64_t m = 1ull << (bits - 1);
	v &= width_mask(bits);
	return (v ^ m) - m;
}

static inline bool msb(uint64_t v, unsigned bits)
{
	return (v >> (bits - 1)) & 1;
}

/* SDM 3.3.7.1: bits 63..47 must all equal bit 47 (4-level paging). */
static inline bool is_canonical(uint64_t va)
{
	return (uint64_t)((int64_t)(va << 16) >> 16) == va;
}

static inline int raise_fault(struct x86emu_ctx *c, uint8_t vector, bool has_ec, uint32_t ec)
{
	c->fault.vector = vector;
	c->fault.has_error_code = has_ec;
	c->fault.error_code = ec;
	c->fault.cr2 = 0;
	return XS_FAULT;
}

static inline int raise_ud(struct x86emu_ctx *c)
{
	return raise_fault(c, X86EMU_EXC_UD, false, 0);
}

static inline int raise_gp(struct x86emu_ctx *c, uint32_t ec)
{
	return raise_fault(c, X86EMU_EXC_GP, true, ec);
}

/* Operand i's width in bits, and whether it is in memory. */
static inline unsigned op_bits(const struct x86emu_ctx *c, unsigned i)
{
	return c->ops[i].size;
}

static inline bool is_mem(const struct x86emu_ctx *c, unsigned i)
{
	return c->ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY;
}

static inline bool has_lock(const struct x86emu_ctx *c)
{
	return (c->insn.attributes & ZYDIS_ATTRIB_HAS_LOCK) != 0;
}

/* ---- cpu.c: registers, operands and memory ---------------------------------- */

uint64_t x86emu__reg_read(const struct x86emu_cpu *cpu, ZydisRegister r);
void x86emu__reg_write(struct x86emu_cpu *cpu, ZydisRegister r, uint64_t v);
/* Write a GPR the way an instruction with `bits` operand size does (32 zero-extends). */
void x86emu__gpr_write(struct x86emu_cpu *cpu, unsigned idx, unsigned bits, uint64_t v);

/* Effective address (offset) of a memory operand, wrapped to the address size. */
uint64_t x86emu__ea(const struct x86emu_ctx *c, const ZydisDecodedOperand *op);
/*
 * Linear address of seg:ea for an access of `size` bytes, with the canonical
 * check of its first and last byte (#GP(0), or #SS(0) for SS).
 */
int x86emu__linear(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		   uint64_t *la);

/* ---- debug-register breakpoints (debug.c) ---- */

/* Record the data breakpoints a completed explicit access hits. */
void x86emu__data_breakpoints(struct x86emu_ctx *c, uint64_t la, unsigned size, bool write);
/* Record the I/O breakpoints (CR4.DE) a completed port access hits. */
void x86emu__io_breakpoints(struct x86emu_ctx *c, uint16_t port, unsigned size);
/* B0-B3 of the instruction breakpoints at cpu->rip (none while RF is set). */
unsigned x86emu__insn_breakpoints(const struct x86emu_cpu *cpu);
/* A #DB reporting `status` (X86EMU_DR6_* and B0-B3) was delivered: update DR6 (and DR7.GD). */
void x86emu__db_delivered(struct x86emu_cpu *cpu, unsigned status);

/* #AC(0) if alignment checking is on (CPL 3, CR0.AM, RFLAGS.AC) and la is not aligned. */
int x86emu__check_alignment(struct x86emu_ctx *c, uint64_t la, unsigned align,
			    enum x86emu_access_kind kind);
int x86emu__mem_read(struct x86emu_ctx *c, uint64_t la, unsigned size, void *out,
		     enum x86emu_access_kind kind);
int x86emu__mem_write(struct x86emu_ctx *c, uint64_t la, unsigned size, const void *in,
		      enum x86emu_access_kind kind);
/*
 * The same, for an access whose data type is not one scalar of `size` bytes
 * (SDM 6.15, "Alignment Requirements by Data Type"): #AC is checked against
 * `align`, the alignment of its elements or of the far pointer it is.
 */
int x86emu__mem_read_aligned(struct x86emu_ctx *c, uint64_t la, unsigned size, void *out,
			     enum x86emu_access_kind kind, unsigned align);
int x86emu__mem_write_aligned(struct x86emu_ctx *c, uint64_t la, unsigned size, const void *in,
			      enum x86emu_access_kind kind, unsigned align);
/*
 * The checks of a write at la (canonical, alignment, then env->write_check
 * when the machine has one) without writing.
 */
int x86emu__mem_write_check(struct x86emu_ctx *c, uint64_t la, unsigned size,
			    enum x86emu_access_kind kind);
/* Atomic compare-exchange of up to 16 bytes at la (or read+write without env->cmpxchg). */
int x86emu__mem_cmpxchg(struct x86emu_ctx *c, uint64_t la, unsigned size,
			const void *expected, const void *desired, void *observed);

/* Scalar (<= 8 byte) data reads/writes at seg:ea. */
int x86emu__read_seg(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		     uint64_t *v);
int x86emu__write_seg(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		      uint64_t v);

/* Operand i of the current instruction: register, memory or immediate. */
int x86emu__op_read(struct x86emu_ctx *c, unsigned i, uint64_t *v);
int x86emu__op_write(struct x86emu_ctx *c, unsigned i, uint64_t v);

/* The stack (SDM 6.2.1: pushes/pops use SS, faults are #SS). */
int x86emu__push(struct x86emu_ctx *c, unsigned size, uint64_t v);
int x86emu__pop(struct x86emu_ctx *c, unsigned size, uint64_t *v);

/* ---- alu.c: arithmetic with exact flags ---------------------------------------- */

enum x86emu_alu_op {
	ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP,
	ALU_TEST, ALU_INC, ALU_DEC, ALU_NEG,
};

enum x86emu_shift_op {
	SHIFT_ROL, SHIFT_ROR, SHIFT_RCL, SHIFT_RCR, SHIFT_SHL, SHIFT_SHR, SHIFT_SAR,
};

/* result = a op b at `bits`; updates the status flags in *rflags as the SDM defines. */
uint64_t x86emu__alu(enum x86emu_alu_op op, unsigned bits, uint64_t a, uint64_t b,
		     uint64_t *rflags);
uint64_t x86emu__shift(enum x86emu_shift_op op, unsigned bits, uint64_t a, uint64_t count,
		       uint64_t *rflags);
uint64_t x86emu__shld(bool left, unsigned bits, uint64_t dst, uint64_t src, uint64_t count,
		      uint64_t *rflags);
/* Full product hi:lo; CF=OF set when the high half is significant. */
void x86emu__mul(bool is_signed, unsigned bits, uint64_t a, uint64_t b,
		 uint64_t *lo, uint64_t *hi, uint64_t *rflags);
/* (hi:lo) / divisor; false means #DE (divide by zero or quotient overflow). */
bool x86emu__div(bool is_signed, unsigned bits, uint64_t hi, uint64_t lo, uint64_t divisor,
		 uint64_t *quot, uint64_t *rem);
/* The condition `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes). */
bool x86emu__cond(uint64_t rflags, unsigned cc);
/* Set SF, ZF, PF from a result; clear CF, OF, and AF. */
void x86emu__flags_logic(uint64_t res, unsigned bits, uint64_t *rflags);
bool x86emu__parity(uint64_t v);

/* ---- exec.c: the integer instruction set ---------------------------------------- */

int x86emu__exec(struct x86emu_ctx *c);

/* ---- rmw.c: read-modify-write and atomics --------------------------------------- */

int x86emu__exec_rmw(struct x86emu_ctx *c);
int x86emu__exec_compare(struct x86emu_ctx *c);
int x86emu__exec_cmpxchg(struct x86emu_ctx *c);
int x86emu__exec_cmpxchg_wide(struct x86emu_ctx *c);

/* ---- string.c -------------------------------------------------------------------- */

int x86emu__exec_string(struct x86emu_ctx *c);

/* ---- system.c and event.c -------------------------------------------------------------------- */

int x86emu__exec_system(struct x86emu_ctx *c);
/*
 * The I/O permission check of IN/OUT/INS/OUTS for `size` bytes at `port`:
 * XS_OK at CPL <= IOPL, else the TSS I/O permission bitmap decides (#GP(0)).
 */
int x86emu__io_permission(struct x86emu_ctx *c, uint16_t port, unsigned size);
/* Whether exec_system handles this mnemonic. */
bool x86emu__is_system(ZydisMnemonic m);

/* How an event reaches the CPU: it changes the error code's EXT bit and checks. */
enum x86emu_event_source {
	EVENT_EXCEPTION,	/* raised by an instruction or the processor */
	EVENT_SOFTWARE,		/* INT n / INT3: gate DPL checked, RIP after the instruction */
	EVENT_EXTERNAL,		/* an interrupt from outside */
	EVENT_TRAP,		/* a debug trap after an instruction: like an exception, RF as it is */
};

/*
 * Deliver an event on the working copy c->cpu (the caller commits on XS_OK),
 * with return address `return_rip`.  On XS_FAULT, c->fault is the fault the
 * delivery itself raised (the caller applies the double-fault rules).
 */
int x86emu__deliver(struct x86emu_ctx *c, uint8_t vector, bool has_ec, uint32_t ec,
		    enum x86emu_event_source src, uint64_t return_rip);

/*
 * Deliver an exception starting from the committed state, applying the
 * double-fault rules of SDM 6.15 table 6-5; commits on success.  Returns
 * XS_OK, XS_RETRY or XS_SHUTDOWN.
 */
int x86emu__raise(struct x86emu_ctx *c, const struct x86emu_fault *f,
		  enum x86emu_event_source src, uint64_t return_rip);

/* Descriptor plumbing (event.c). */
void x86emu__seg_from_desc(struct x86emu_segment *s, uint16_t selector, uint64_t desc);
/* Read the 8-byte descriptor for selector from the GDT/LDT; #GP(sel) outside the table. */
int x86emu__read_descriptor(struct x86emu_ctx *c, uint16_t selector, bool ext, uint64_t *desc);
/* RSPn (slot n = 0..2) or ISTn (slot 3 + n) from the 64-bit TSS; #TS(TR) with
 * EXT = ext when the TSS cannot hold it. */
int x86emu__tss_stack(struct x86emu_ctx *c, unsigned slot, bool ext, uint64_t *rsp);
/* An event handler's CS: #GP unless a code segment of DPL <= CPL, then #NP unless present. */
int x86emu__check_code_desc(struct x86emu_ctx *c, uint16_t sel, uint64_t desc, bool ext);

/* segment.c: far RET / IRETQ, and the descriptor-table instructions. */
int x86emu__far_return(struct x86emu_ctx *c, bool iret);
int x86emu__exec_table(struct x86emu_ctx *c);

/* Load a data segment register (MOV Sreg / POP Sreg) with the checks of SDM MOV. */
int x86emu__load_data_segment(struct x86emu_ctx *c, unsigned sreg, uint16_t selector);
/* LSS/LFS/LGS: load a far pointer from memory. */
int x86emu__load_far_pointer(struct x86emu_ctx *c);
/* Far JMP (call false) or far CALL through a memory far pointer. */
int x86emu__far_branch(struct x86emu_ctx *c, bool call);
/* LAR, LSL, VERR, VERW: ZF from the descriptor checks. */
int x86emu__exec_verify(struct x86emu_ctx *c);

#endif /* X86EMU_INTERNAL_H */
