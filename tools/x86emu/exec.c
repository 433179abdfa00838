/*
 * The integer instruction set: moves, shifts, multiply and divide, bit
 * scans, setcc/cmovcc, control flow and the stack, and the dispatch of every
 * non-system instruction (read-modify-write and atomics live in rmw.c).
 *
 * Every handler reads all its operands first and performs at most one memory
 * write, last; register results go to the working copy (see internal.h).
 */
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

/* The condition code of Jcc/SETcc/CMOVcc is the low nibble of the opcode. */
static inline unsigned cond_code(const struct x86emu_ctx *c)
{
	return c->insn.opcode & 0xf;
}

static inline uint64_t *gpr(struct x86emu_ctx *c, unsigned idx)
{
	return &c->cpu.gpr[idx];
}

/* ---- shifts, multiply, divide, bit scans --------------------------------------- */

static int exec_shift(struct x86emu_ctx *c)
{
	static const struct { ZydisMnemonic mn; enum x86emu_shift_op op; } map[] = {
		{ ZYDIS_MNEMONIC_ROL, SHIFT_ROL }, { ZYDIS_MNEMONIC_ROR, SHIFT_ROR },
		{ ZYDIS_MNEMONIC_RCL, SHIFT_RCL }, { ZYDIS_MNEMONIC_RCR, SHIFT_RCR },
		{ ZYDIS_MNEMONIC_SHL, SHIFT_SHL },
		{ ZYDIS_MNEMONIC_SHR, SHIFT_SHR }, { ZYDIS_MNEMONIC_SAR, SHIFT_SAR },
	};
	enum x86emu_shift_op op = SHIFT_SHL;
	uint64_t a, count;
	int rc;

	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].mn == c->insn.mnemonic)
			op = map[i].op;
	rc = x86emu__op_read(c, 1, &count);
	if (rc == XS_OK)
		rc = x86emu__op_read(c, 0, &a);
	if (rc != XS_OK)
		return rc;
	return x86emu__op_write(c, 0, x86emu__shift(op, op_bits(c, 0), a, count, &c->cpu.rflags));
}

static int exec_shld(struct x86emu_ctx *c)
{
	uint64_t dst, src, count;
	int rc = x86emu__op_read(c, 2, &count);

	if (rc == XS_OK)
		rc = x86emu__op_read(c, 1, &src);
	if (rc == XS_OK)
		rc = x86emu__op_read(c, 0, &dst);
	if (rc != XS_OK)
		return rc;
	return x86emu__op_write(c, 0, x86emu__shld(c->insn.mnemonic == ZYDIS_MNEMONIC_SHLD,
						   op_bits(c, 0), dst, src, count,
						   &c->cpu.rflags));
}

static int exec_muldiv(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	bool is_signed = mn == ZYDIS_MNEMONIC_IMUL || mn == ZYDIS_MNEMONIC_IDIV;
	uint64_t src, lo, hi;
	unsigned bits;
	int rc;

	if (mn == ZYDIS_MNEMONIC_IMUL && c->insn.operand_count_visible >= 2) {
		/* Two- and three-operand IMUL: truncated product in a register. */
		uint64_t a, b;
		unsigned first = c->insn.operand_count_visible == 3 ? 1 : 0;
		rc = x86emu__op_read(c, first, &a);
		if (rc == XS_OK)
			rc = x86emu__op_read(c, first + 1, &b);
		if (rc != XS_OK)
			return rc;
		x86emu__mul(true, op_bits(c, 0), a, b, &lo, &hi, &c->cpu.rflags);
		return x86emu__op_write(c, 0, lo);
	}
	rc = x86emu__op_read(c, 0, &src);
	if (rc != XS_OK)
		return rc;
	bits = op_bits(c, 0);
	uint64_t *rax = gpr(c, X86EMU_RAX), *rdx = gpr(c, X86EMU_RDX);
	if (mn == ZYDIS_MNEMONIC_MUL || mn == ZYDIS_MNEMONIC_IMUL) {
		x86emu__mul(is_signed, bits, *rax, src, &lo, &hi, &c->cpu.rflags);
		if (bits == 8) {
			x86emu__gpr_write(&c->cpu, X86EMU_RAX, 16, (hi << 8) | lo);
		} else {
			x86emu__gpr_write(&c->cpu, X86EMU_RAX, bits, lo);
			x86emu__gpr_write(&c->cpu, X86EMU_RDX, bits, hi);
		}
		return XS_OK;
	}
	/* DIV/IDIV: the dividend is AX for bytes, else rDX:rAX.  All flags undefined: kept. */
	uint64_t q, r;
	if (bits == 8) {
		hi = (*rax >> 8) & 0xff;
		lo = *rax & 0xff;
	} else {
		hi = *rdx;
		lo = *rax;
	}
	if (!x86emu__div(is_signed, bits, hi, lo, src, &q, &r))
		return raise_fault(c, X86EMU_EXC_DE, false, 0);
	if (bits == 8) {
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, 16, (r << 8) | q);
	} else {
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, bits, q);
		x86emu__gpr_write(&c->cpu, X86EMU_RDX, bits, r);
	}
	return XS_OK;
}

static int exec_bitscan(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	unsigned bits = op_bits(c, 0);
	uint64_t src, f = c->cpu.rflags;
	int rc = x86emu__op_read(c, 1, &src);

	if (rc != XS_OK)
		return rc;
	src &= width_mask(bits);
	if (mn == ZYDIS_MNEMONIC_POPCNT) {
		unsigned n = 0;
		for (uint64_t v = src; v; v &= v - 1)
			n++;
		/* POPCNT clears OF SF ZF AF CF PF, then sets ZF for a zero source. */
		c->cpu.rflags = (f & ~X86EMU_FLAGS_ARITH) | (src ? 0 : X86EMU_FLAG_ZF);
		return x86emu__op_write(c, 0, n);
	}
	/*
	 * BSF/BSR: ZF says whether the source was zero; then the destination
	 * is undefined and we leave it unchanged (as AMD documents and Intel
	 * parts do).  CF, OF, SF, AF, PF are undefined: we keep them.
	 */
	if (src == 0) {
		c->cpu.rflags = f | X86EMU_FLAG_ZF;
		return XS_OK;
	}
	unsigned idx = 0;
	if (mn == ZYDIS_MNEMONIC_BSF) {
		while (!((src >> idx) & 1))
			idx++;
	} else {
		idx = bits - 1;
		while (!((src >> idx) & 1))
			idx--;
	}
	c->cpu.rflags = f & ~X86EMU_FLAG_ZF;
	return x86emu__op_write(c, 0, idx);
}

/* ---- moves -------------------------------------------------------------------------- */

static bool is_special_reg(const ZydisDecodedOperand *op)
{
	if (op->type != ZYDIS_OPERAND_TYPE_REGISTER)
		return false;
	ZydisRegisterClass cls = ZydisRegisterGetClass(op->reg.value);
	return cls == ZYDIS_REGCLASS_CONTROL || cls == ZYDIS_REGCLASS_DEBUG ||
	       cls == ZYDIS_REGCLASS_SEGMENT;
}

static int exec_mov(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	uint64_t v;
	int rc;

	if (is_special_reg(&c->ops[0]) || is_special_reg(&c->ops[1]))
		return x86emu__exec_system(c);	/* MOV Sreg/CRn/DRn */
	rc = x86emu__op_read(c, 1, &v);
	if (rc != XS_OK)
		return rc;
	if (mn == ZYDIS_MNEMONIC_MOVSX || mn == ZYDIS_MNEMONIC_MOVSXD)
		v = sign_extend(v, op_bits(c, 1));
	else if (mn == ZYDIS_MNEMONIC_MOVZX)
		v &= width_mask(op_bits(c, 1));
	return x86emu__op_write(c, 0, v);
}

static int exec_cmov(struct x86emu_ctx *c)
{
	uint64_t v, old;
	/* The source is read (and may fault) whatever the condition (SDM CMOVcc). */
	int rc = x86emu__op_read(c, 1, &v);

	if (rc != XS_OK)
		return rc;
	if (x86emu__cond(c->cpu.rflags, cond_code(c)))
		return x86emu__op_write(c, 0, v);
	/* A false 32-bit CMOV still zero-extends its destination in 64-bit mode. */
	old = x86emu__reg_read(&c->cpu, c->ops[0].reg.value);
	return x86emu__op_write(c, 0, old);
}

static int exec_convert(struct x86emu_ctx *c)
{
	uint64_t a = c->cpu.gpr[X86EMU_RAX];

	switch (c->insn.mnemonic) {
	case ZYDIS_MNEMONIC_CBW:
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, 16, sign_extend(a, 8));
		break;
	case ZYDIS_MNEMONIC_CWDE:
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, 32, sign_extend(a, 16));
		break;
	case ZYDIS_MNEMONIC_CDQE:
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, 64, sign_extend(a, 32));
		break;
	case ZYDIS_MNEMONIC_CWD:
		x86emu__gpr_write(&c->cpu, X86EMU_RDX, 16, msb(a, 16) ? ~0ull : 0);
		break;
	case ZYDIS_MNEMONIC_CDQ:
		x86emu__gpr_write(&c->cpu, X86EMU_RDX, 32, msb(a, 32) ? ~0ull : 0);
		break;
	default:	/* CQO */
		x86emu__gpr_write(&c->cpu, X86EMU_RDX, 64, msb(a, 64) ? ~0ull : 0);
		break;
	}
	return XS_OK;
}

static int exec_flag_op(struct x86emu_ctx *c)
{
	uint64_t *f = &c->cpu.rflags;
	uint64_t ah = (c->cpu.gpr[X86EMU_RAX] >> 8) & 0xff;
	const uint64_t sahf_mask = X86EMU_FLAG_SF | X86EMU_FLAG_ZF | X86EMU_FLAG_AF |
				   X86EMU_FLAG_PF | X86EMU_FLAG_CF;

	switch (c->insn.mnemonic) {
	case ZYDIS_MNEMONIC_CLC: *f &= ~X86EMU_FLAG_CF; break;
	case ZYDIS_MNEMONIC_STC: *f |= X86EMU_FLAG_CF; break;
	case ZYDIS_MNEMONIC_CMC: *f ^= X86EMU_FLAG_CF; break;
	case ZYDIS_MNEMONIC_CLD: *f &= ~X86EMU_FLAG_DF; break;
	case ZYDIS_MNEMONIC_STD: *f |= X86EMU_FLAG_DF; break;
	case ZYDIS_MNEMONIC_SAHF: *f = (*f & ~sahf_mask) | (ah & sahf_mask); break;
	default:	/* LAHF: AH <- SF:ZF:0:AF:0:PF:1:CF */
		c->cpu.gpr[X86EMU_RAX] = (c->cpu.gpr[X86EMU_RAX] & ~0xff00ull) |
					 (((*f & sahf_mask) | X86EMU_FLAG_FIXED) << 8);
		break;
	}
	return XS_OK;
}

/* ---- control flow and the stack ------------------------------------------------------ */

/* SDM JMP/CALL/RET: a non-canonical target faults #GP(0) at the branch itself. */
static inline int branch_to(struct x86emu_ctx *c, uint64_t target)
{
	if (!is_canonical(target))
		return raise_gp(c, 0);
	c->next_rip = target;
	return XS_OK;
}

static int branch_target(struct x86emu_ctx *c, uint64_t *target)
{
	const ZydisDecodedOperand *op = &c->ops[0];

	if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op->imm.is_relative) {
		*target = c->next_rip + op->imm.value.u;
		return XS_OK;
	}
	return x86emu__op_read(c, 0, target);
}

static int exec_branch(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	uint64_t target, rcx = c->cpu.gpr[X86EMU_RCX];
	unsigned aw = c->insn.address_width;
	bool take;
	int rc = branch_target(c, &target);

	if (rc != XS_OK)
		return rc;
	switch (mn) {
	case ZYDIS_MNEMONIC_JMP:
		return branch_to(c, target);
	case ZYDIS_MNEMONIC_CALL:
		/* Read the target first (done), then push: the push is the only write. */
		if (!is_canonical(target))
			return raise_gp(c, 0);
		rc = x86emu__push(c, 8, c->next_rip);
		if (rc != XS_OK)
			return rc;
		return branch_to(c, target);
	case ZYDIS_MNEMONIC_JRCXZ:
	case ZYDIS_MNEMONIC_JECXZ:
		take = (rcx & width_mask(aw)) == 0;
		break;
	case ZYDIS_MNEMONIC_LOOP:
	case ZYDIS_MNEMONIC_LOOPE:
	case ZYDIS_MNEMONIC_LOOPNE:
		/* LOOPcc decrements rCX (address-size wide) without touching flags. */
		rcx = (rcx - 1) & width_mask(aw);
		x86emu__gpr_write(&c->cpu, X86EMU_RCX, aw, rcx);
		take = rcx != 0;
		if (mn == ZYDIS_MNEMONIC_LOOPE)
			take = take && (c->cpu.rflags & X86EMU_FLAG_ZF);
		if (mn == ZYDIS_MNEMONIC_LOOPNE)
			take = take && !(c->cpu.rflags & X86EMU_FLAG_ZF);
		break;
	default:	/* Jcc */
		take = x86emu__cond(c->cpu.rflags, cond_code(c));
		break;
	}
	return take ? branch_to(c, target) : XS_OK;
}

static int exec_ret(struct x86emu_ctx *c)
{
	uint64_t target;
	int rc = x86emu__pop(c, 8, &target);

	if (rc != XS_OK)
		return rc;
	if (c->insn.operand_count_visible > 0)	/* RET imm16 releases parameters */
		c->cpu.gpr[X86EMU_RSP] += c->ops[0].imm.value.u & 0xffff;
	return branch_to(c, target);
}

static int exec_push_pop(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	unsigned size = c->insn.operand_width / 8;
	uint64_t v;
	int rc;

	switch (mn) {
	case ZYDIS_MNEMONIC_PUSH:
		/* PUSH RSP pushes the value before the push (SDM PUSH). */
		rc = x86emu__op_read(c, 0, &v);
		if (rc != XS_OK)
			return rc;
		return x86emu__push(c, size, v);
	case ZYDIS_MNEMONIC_POP:
		if (is_special_reg(&c->ops[0]))
			return x86emu__exec_system(c);	/* POP FS/GS */
		rc = x86emu__pop(c, size, &v);
		if (rc != XS_OK)
			return rc;
		/* POP [RSP+d] addresses with the incremented RSP; POP RSP overwrites it. */
		return x86emu__op_write(c, 0, v);
	case ZYDIS_MNEMONIC_PUSHFQ:
	case ZYDIS_MNEMONIC_PUSHF:
		/* The image has VM and RF cleared (SDM PUSHF). */
		return x86emu__push(c, size, c->cpu.rflags & ~(X86EMU_FLAG_VM | X86EMU_FLAG_RF));
	default: {	/* POPFQ / POPF */
		rc = x86emu__pop(c, size, &v);
		if (rc != XS_OK)
			return rc;
		/*
		 * SDM POPF, protected mode: IOPL changes only at CPL 0, IF only
		 * when CPL <= IOPL; VM/VIF/VIP are never set from the image;
		 * RF is cleared.  16-bit POPF leaves the upper bits alone.
		 */
		uint64_t can = X86EMU_FLAGS_ARITH | X86EMU_FLAG_TF | X86EMU_FLAG_DF |
			       X86EMU_FLAG_NT | X86EMU_FLAG_AC | X86EMU_FLAG_ID;
		unsigned iopl = (unsigned)((c->cpu.rflags >> 12) & 3);
		if (c->cpu.cpl == 0)
			can |= X86EMU_FLAG_IOPL;
		if (c->cpu.cpl <= iopl)
			can |= X86EMU_FLAG_IF;
		if (size == 2)
			can &= 0xffff;
		c->cpu.rflags = ((c->cpu.rflags & ~can) | (v & can) | X86EMU_FLAG_FIXED) &
				~X86EMU_FLAG_RF;
		return XS_OK;
	}
	}
}

/*
 * ENTER (SDM vol. 2A): push RBP, copy `level-1` frame pointers from the
 * enclosing frame, push the new frame pointer, reserve `size` bytes.  The
 * old-frame reads happen first, then the whole new frame is one write, so
 * a fault changes nothing.  The SDM's ENTER pushes as it goes: a display
 * slot [RBP-k*osz] that overlaps what this ENTER pushed before reading it
 * (wholly or in part, e.g. with RBP not a multiple of osz away from RSP)
 * reads the pushed bytes, which are taken from the frame being built;
 * only the rest of the slot is read from memory.  And each push is checked
 * as a write before the read that follows it (write_check, nothing
 * written), so a fault is the one the SDM's order meets first: the push
 * of RBP before the first display read, and so on.
 * With a 0x66 prefix every push and copy is a word and only BP changes
 * (RSP still moves at 64 bits): the host does exactly that.
 */
static int exec_enter(struct x86emu_ctx *c)
{
	unsigned size = (unsigned)(c->ops[0].imm.value.u & 0xffff);
	unsigned level = (unsigned)(c->ops[1].imm.value.u & 31);
	unsigned osz = c->insn.operand_width == 16 ? 2 : 8;
	uint64_t rsp = c->cpu.gpr[X86EMU_RSP], rbp = c->cpu.gpr[X86EMU_RBP];
	uint64_t frame[32];	/* frame[0] is the highest address */
	uint64_t la_push;
	unsigned n = 0;
	int rc;

	frame[n++] = rbp;
	uint64_t frame_temp = rsp - osz;
	if (level > 0) {
		for (unsigned i = 1; i < level; i++) {
			/* The push before this read (RBP's, or the last copy's). */
			rc = x86emu__linear(c, ZYDIS_REGISTER_SS, rsp - (uint64_t)osz * n, osz, &la_push);
			if (rc == XS_OK)
				rc = x86emu__mem_write_check(c, la_push, osz, X86EMU_ACCESS_DATA);
			if (rc != XS_OK)
				return rc;
			rbp -= osz;
			/* Byte b of the frame pushed so far (n slots) is at rsp - osz * n + b. */
			uint64_t pushed_low = rsp - (uint64_t)osz * n, pushed_len = (uint64_t)osz * n;
			uint8_t slot[8];
			unsigned lo = osz, hi = 0;	/* the bytes [lo, hi) to read from memory */
			for (unsigned b = 0; b < osz; b++) {
				uint64_t off = rbp + b - pushed_low;	/* mod 2^64 */
				if (off < pushed_len) {
					unsigned k = (unsigned)(off / osz);	/* slot k from the bottom */
					slot[b] = (uint8_t)(frame[n - 1 - k] >> (8 * (off % osz)));
				} else {
					lo = b < lo ? b : lo;
					hi = b + 1;
				}
			}
			if (hi > lo) {
				/* The pushed bytes form one run, so the others do too. */
				uint64_t la;
				rc = x86emu__linear(c, ZYDIS_REGISTER_SS, rbp, osz, &la);
				if (rc == XS_OK)
					rc = x86emu__check_alignment(c, la, osz, X86EMU_ACCESS_DATA);
				if (rc == XS_OK)
					rc = x86emu__mem_read_aligned(c, la + lo, hi - lo, slot + lo,
								      X86EMU_ACCESS_DATA, 1);
				if (rc != XS_OK)
					return rc;
			}
			uint64_t v = 0;
			for (unsigned b = 0; b < osz; b++)
				v |= (uint64_t)slot[b] << (8 * b);
			frame[n++] = v;
		}
		frame[n++] = frame_temp;
	}
	uint8_t bytes[sizeof(frame)];
	for (unsigned i = 0; i < n; i++)	/* frame[n-1] lands at the lowest address */
		for (unsigned b = 0; b < osz; b++)
			bytes[osz * (n - 1 - i) + b] = (uint8_t)(frame[i] >> (8 * b));
	uint64_t low = rsp - (uint64_t)osz * n, la, final_rsp;
	/* Both the frame and the final RSP must be canonical stack addresses (#SS(0)). */
	rc = x86emu__linear(c, ZYDIS_REGISTER_SS, low - size, 1, &final_rsp);
	if (rc == XS_OK)
		rc = x86emu__linear(c, ZYDIS_REGISTER_SS, low, osz * n, &la);
	if (rc == XS_OK)
		rc = x86emu__mem_write_aligned(c, la, osz * n, bytes, X86EMU_ACCESS_DATA,
					       osz);	/* #AC per pushed element */
	if (rc != XS_OK)
		return rc;
	x86emu__gpr_write(&c->cpu, X86EMU_RBP, osz * 8, frame_temp);
	c->cpu.gpr[X86EMU_RSP] = low - size;
	return XS_OK;
}

static int exec_leave(struct x86emu_ctx *c)
{
	unsigned osz = c->insn.operand_width == 16 ? 2 : 8;
	uint64_t v;
	int rc;

	/*
	 * RSP <- RBP; pop RBP (BP with a 0x66 prefix).  On a fault the working
	 * copy is dropped, RSP included.
	 */
	c->cpu.gpr[X86EMU_RSP] = c->cpu.gpr[X86EMU_RBP];
	rc = x86emu__pop(c, osz, &v);
	if (rc != XS_OK)
		return rc;
	x86emu__gpr_write(&c->cpu, X86EMU_RBP, osz * 8, v);
	return XS_OK;
}

/* ---- dispatch ------------------------------------------------------------------------- */

int x86emu__exec(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	int rc;

	switch (mn) {
	case ZYDIS_MNEMONIC_ADD: case ZYDIS_MNEMONIC_OR: case ZYDIS_MNEMONIC_ADC:
	case ZYDIS_MNEMONIC_SBB: case ZYDIS_MNEMONIC_AND: case ZYDIS_MNEMONIC_SUB:
	case ZYDIS_MNEMONIC_XOR: case ZYDIS_MNEMONIC_INC: case ZYDIS_MNEMONIC_DEC:
	case ZYDIS_MNEMONIC_NEG: case ZYDIS_MNEMONIC_NOT: case ZYDIS_MNEMONIC_XADD:
	case ZYDIS_MNEMONIC_XCHG: case ZYDIS_MNEMONIC_BTS: case ZYDIS_MNEMONIC_BTR:
	case ZYDIS_MNEMONIC_BTC:
		rc = x86emu__exec_rmw(c);
		break;
	case ZYDIS_MNEMONIC_CMP: case ZYDIS_MNEMONIC_TEST: case ZYDIS_MNEMONIC_BT:
		rc = x86emu__exec_compare(c);
		break;
	case ZYDIS_MNEMONIC_CMPXCHG:
		rc = x86emu__exec_cmpxchg(c);
		break;
	case ZYDIS_MNEMONIC_CMPXCHG8B: case ZYDIS_MNEMONIC_CMPXCHG16B:
		rc = x86emu__exec_cmpxchg_wide(c);
		break;
	case ZYDIS_MNEMONIC_ROL: case ZYDIS_MNEMONIC_ROR: case ZYDIS_MNEMONIC_RCL:
	case ZYDIS_MNEMONIC_RCR: case ZYDIS_MNEMONIC_SHL:
	case ZYDIS_MNEMONIC_SHR: case ZYDIS_MNEMONIC_SAR:
		rc = exec_shift(c);
		break;
	case ZYDIS_MNEMONIC_SHLD: case ZYDIS_MNEMONIC_SHRD:
		rc = exec_shld(c);
		break;
	case ZYDIS_MNEMONIC_MUL: case ZYDIS_MNEMONIC_IMUL:
	case ZYDIS_MNEMONIC_DIV: case ZYDIS_MNEMONIC_IDIV:
		rc = exec_muldiv(c);
		break;
	case ZYDIS_MNEMONIC_BSF: case ZYDIS_MNEMONIC_BSR: case ZYDIS_MNEMONIC_POPCNT:
		rc = exec_bitscan(c);
		break;
	case ZYDIS_MNEMONIC_BSWAP: {
		uint64_t v, r = 0;
		unsigned bits = op_bits(c, 0);
		rc = x86emu__op_read(c, 0, &v);
		if (rc != XS_OK)
			break;
		/* 16-bit BSWAP is undefined (SDM); current parts produce 0, so do we. */
		if (bits == 16) {
			rc = x86emu__op_write(c, 0, 0);
			break;
		}
		for (unsigned i = 0; i < bits / 8; i++)
			r |= ((v >> (8 * i)) & 0xff) << (bits - 8 - 8 * i);
		rc = x86emu__op_write(c, 0, r);
		break;
	}
	case ZYDIS_MNEMONIC_MOV: case ZYDIS_MNEMONIC_MOVZX: case ZYDIS_MNEMONIC_MOVSX:
	case ZYDIS_MNEMONIC_MOVSXD:
		rc = exec_mov(c);
		break;
	case ZYDIS_MNEMONIC_LEA:
		/* LEA: the effective address, truncated to the operand size; no memory access. */
		rc = x86emu__op_write(c, 0, x86emu__ea(c, &c->ops[1]) & width_mask(op_bits(c, 0)));
		break;
	case ZYDIS_MNEMONIC_CMOVO: case ZYDIS_MNEMONIC_CMOVNO: case ZYDIS_MNEMONIC_CMOVB:
	case ZYDIS_MNEMONIC_CMOVNB: case ZYDIS_MNEMONIC_CMOVZ: case ZYDIS_MNEMONIC_CMOVNZ:
	case ZYDIS_MNEMONIC_CMOVBE: case ZYDIS_MNEMONIC_CMOVNBE: case ZYDIS_MNEMONIC_CMOVS:
	case ZYDIS_MNEMONIC_CMOVNS: case ZYDIS_MNEMONIC_CMOVP: case ZYDIS_MNEMONIC_CMOVNP:
	case ZYDIS_MNEMONIC_CMOVL: case ZYDIS_MNEMONIC_CMOVNL: case ZYDIS_MNEMONIC_CMOVLE:
	case ZYDIS_MNEMONIC_CMOVNLE:
		rc = exec_cmov(c);
		break;
	case ZYDIS_MNEMONIC_SETO: case ZYDIS_MNEMONIC_SETNO: case ZYDIS_MNEMONIC_SETB:
	case ZYDIS_MNEMONIC_SETNB: case ZYDIS_MNEMONIC_SETZ: case ZYDIS_MNEMONIC_SETNZ:
	case ZYDIS_MNEMONIC_SETBE: case ZYDIS_MNEMONIC_SETNBE: case ZYDIS_MNEMONIC_SETS:
	case ZYDIS_MNEMONIC_SETNS: case ZYDIS_MNEMONIC_SETP: case ZYDIS_MNEMONIC_SETNP:
	case ZYDIS_MNEMONIC_SETL: case ZYDIS_MNEMONIC_SETNL: case ZYDIS_MNEMONIC_SETLE:
	case ZYDIS_MNEMONIC_SETNLE:
		rc = x86emu__op_write(c, 0, x86emu__cond(c->cpu.rflags, cond_code(c)) ? 1 : 0);
		break;
	case ZYDIS_MNEMONIC_CBW: case ZYDIS_MNEMONIC_CWDE: case ZYDIS_MNEMONIC_CDQE:
	case ZYDIS_MNEMONIC_CWD: case ZYDIS_MNEMONIC_CDQ: case ZYDIS_MNEMONIC_CQO:
		rc = exec_convert(c);
		break;
	case ZYDIS_MNEMONIC_CLC: case ZYDIS_MNEMONIC_STC: case ZYDIS_MNEMONIC_CMC:
	case ZYDIS_MNEMONIC_CLD: case ZYDIS_MNEMONIC_STD: case ZYDIS_MNEMONIC_LAHF:
	case ZYDIS_MNEMONIC_SAHF:
		rc = exec_flag_op(c);
		break;
	case ZYDIS_MNEMONIC_JMP: case ZYDIS_MNEMONIC_CALL:
	case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JNO: case ZYDIS_MNEMONIC_JB:
	case ZYDIS_MNEMONIC_JNB: case ZYDIS_MNEMONIC_JZ: case ZYDIS_MNEMONIC_JNZ:
	case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JNBE: case ZYDIS_MNEMONIC_JS:
	case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JNP:
	case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JLE:
	case ZYDIS_MNEMONIC_JNLE: case ZYDIS_MNEMONIC_JRCXZ: case ZYDIS_MNEMONIC_JECXZ:
	case ZYDIS_MNEMONIC_LOOP: case ZYDIS_MNEMONIC_LOOPE: case ZYDIS_MNEMONIC_LOOPNE:
		rc = exec_branch(c);
		break;
	case ZYDIS_MNEMONIC_RET:
		rc = exec_ret(c);
		break;
	case ZYDIS_MNEMONIC_PUSH: case ZYDIS_MNEMONIC_POP: case ZYDIS_MNEMONIC_PUSHF:
	case ZYDIS_MNEMONIC_PUSHFQ: case ZYDIS_MNEMONIC_POPF: case ZYDIS_MNEMONIC_POPFQ:
		rc = exec_push_pop(c);
		break;
	case ZYDIS_MNEMONIC_ENTER:
		rc = exec_enter(c);
		break;
	case ZYDIS_MNEMONIC_LEAVE:
		rc = exec_leave(c);
		break;
	case ZYDIS_MNEMONIC_MOVSB: case ZYDIS_MNEMONIC_MOVSW: case ZYDIS_MNEMONIC_MOVSD:
	case ZYDIS_MNEMONIC_MOVSQ: case ZYDIS_MNEMONIC_STOSB: case ZYDIS_MNEMONIC_STOSW:
	case ZYDIS_MNEMONIC_STOSD: case ZYDIS_MNEMONIC_STOSQ: case ZYDIS_MNEMONIC_LODSB:
	case ZYDIS_MNEMONIC_LODSW: case ZYDIS_MNEMONIC_LODSD: case ZYDIS_MNEMONIC_LODSQ:
	case ZYDIS_MNEMONIC_CMPSB: case ZYDIS_MNEMONIC_CMPSW: case ZYDIS_MNEMONIC_CMPSD:
	case ZYDIS_MNEMONIC_CMPSQ: case ZYDIS_MNEMONIC_SCASB: case ZYDIS_MNEMONIC_SCASW:
	case ZYDIS_MNEMONIC_SCASD: case ZYDIS_MNEMONIC_SCASQ: case ZYDIS_MNEMONIC_INSB:
	case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_INSD: case ZYDIS_MNEMONIC_OUTSB:
	case ZYDIS_MNEMONIC_OUTSW: case ZYDIS_MNEMONIC_OUTSD:
		return x86emu__exec_string(c);	/* manages RIP itself */
	case ZYDIS_MNEMONIC_XLAT: {
		/* SDM XLAT: AL = [seg:rBX + zero-extended AL], wrapped to the address size. */
		uint64_t v, ea = x86emu__ea(c, &c->ops[0]) + (c->cpu.gpr[X86EMU_RAX] & 0xff);
		rc = x86emu__read_seg(c, c->ops[0].mem.segment, ea & width_mask(c->insn.address_width),
				      1, &v);
		if (rc == XS_OK)
			x86emu__reg_write(&c->cpu, ZYDIS_REGISTER_AL, v);
		break;
	}
	case ZYDIS_MNEMONIC_NOP: case ZYDIS_MNEMONIC_PAUSE: case ZYDIS_MNEMONIC_ENDBR64:
	case ZYDIS_MNEMONIC_PREFETCHT0: case ZYDIS_MNEMONIC_PREFETCHT1:
	case ZYDIS_MNEMONIC_PREFETCHT2: case ZYDIS_MNEMONIC_PREFETCHNTA:
	case ZYDIS_MNEMONIC_PREFETCHW: case ZYDIS_MNEMONIC_LFENCE: case ZYDIS_MNEMONIC_SFENCE:
		/* Hints: no architectural effect for an interpreter (multi-byte NOP reads nothing). */
		rc = XS_OK;
		break;
	case ZYDIS_MNEMONIC_MFENCE:
		/* Order this vCPU's callback accesses against other vCPUs' (SDM MFENCE). */
		atomic_thread_fence(memory_order_seq_cst);
		rc = XS_OK;
		break;
	default:
		/* Everything outside the documented subset is #UD (ud2, x87, SSE, ...). */
		rc = raise_ud(c);
		break;
	}
	if (rc == XS_OK)
		c->cpu.rip = c->next_rip;
	return rc;
}
