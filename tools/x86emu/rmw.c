/*
 * Read-modify-write instructions and their LOCK-prefixed atomic forms:
 * ADD..XOR, INC, DEC, NEG, NOT, XADD, XCHG, BTS/BTR/BTC on registers and
 * memory, CMP/TEST/BT, CMPXCHG and CMPXCHG8B/16B.
 *
 * A LOCK-prefixed form (and XCHG with memory, which always locks) computes
 * from the value read and commits with the machine's compare-and-exchange,
 * recomputing if another agent got there first; so atomicity is the memory
 * layer's, and the arithmetic stays in one place (rmw_compute) for both.
 */
#include <string.h>

#include "internal.h"

/* ---- read-modify-write ---------------------------------------------------------- */

/*
 * One read-modify-write step, shared by the plain and the LOCK-prefixed
 * paths: from the old destination value and the source, compute the new
 * value and the flags.  Returns false if the destination is not written
 * (only for BT, which the caller does not route here).
 */
static uint64_t rmw_compute(ZydisMnemonic mn, unsigned bits, uint64_t old, uint64_t src,
			    uint64_t *flags)
{
	switch (mn) {
	case ZYDIS_MNEMONIC_ADD: return x86emu__alu(ALU_ADD, bits, old, src, flags);
	case ZYDIS_MNEMONIC_OR: return x86emu__alu(ALU_OR, bits, old, src, flags);
	case ZYDIS_MNEMONIC_ADC: return x86emu__alu(ALU_ADC, bits, old, src, flags);
	case ZYDIS_MNEMONIC_SBB: return x86emu__alu(ALU_SBB, bits, old, src, flags);
	case ZYDIS_MNEMONIC_AND: return x86emu__alu(ALU_AND, bits, old, src, flags);
	case ZYDIS_MNEMONIC_SUB: return x86emu__alu(ALU_SUB, bits, old, src, flags);
	case ZYDIS_MNEMONIC_XOR: return x86emu__alu(ALU_XOR, bits, old, src, flags);
	case ZYDIS_MNEMONIC_INC: return x86emu__alu(ALU_INC, bits, old, 0, flags);
	case ZYDIS_MNEMONIC_DEC: return x86emu__alu(ALU_DEC, bits, old, 0, flags);
	case ZYDIS_MNEMONIC_NEG: return x86emu__alu(ALU_NEG, bits, old, 0, flags);
	case ZYDIS_MNEMONIC_NOT: return ~old & width_mask(bits);	/* no flags (SDM NOT) */
	case ZYDIS_MNEMONIC_XADD: return x86emu__alu(ALU_ADD, bits, old, src, flags);
	case ZYDIS_MNEMONIC_XCHG: return src;
	case ZYDIS_MNEMONIC_BTS:
	case ZYDIS_MNEMONIC_BTR:
	case ZYDIS_MNEMONIC_BTC: {
		/* CF = the selected bit; ZF kept; OF/SF/AF/PF undefined: we keep them. */
		uint64_t bit = 1ull << (src & (bits - 1));
		*flags = (*flags & ~X86EMU_FLAG_CF) | ((old & bit) ? X86EMU_FLAG_CF : 0);
		if (mn == ZYDIS_MNEMONIC_BTS)
			return old | bit;
		if (mn == ZYDIS_MNEMONIC_BTR)
			return old & ~bit;
		return old ^ bit;
	}
	default:
		return old;
	}
}

static inline bool is_bit_op(ZydisMnemonic mn)
{
	return mn == ZYDIS_MNEMONIC_BT || mn == ZYDIS_MNEMONIC_BTS ||
	       mn == ZYDIS_MNEMONIC_BTR || mn == ZYDIS_MNEMONIC_BTC;
}

/*
 * The memory address a BT-family instruction really touches.  With a
 * register bit offset the offset is signed and may select any bit in
 * memory: the operand moves by (offset >> log2(bits)) operands (SDM BT,
 * "bit base / bit offset"); with an immediate only offset mod bits counts.
 */
static uint64_t bit_op_ea(struct x86emu_ctx *c, unsigned bits, uint64_t *offset)
{
	uint64_t ea = x86emu__ea(c, &c->ops[0]);

	if (c->ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
		int64_t off = (int64_t)sign_extend(*offset, bits);
		int shift = bits == 64 ? 6 : bits == 32 ? 5 : 4;
		/* Arithmetic shift of a negative offset, spelled without relying on >> of negatives. */
		int64_t units = off >= 0 ? off >> shift : -(int64_t)((~(uint64_t)off >> shift) + 1);
		ea += (uint64_t)units * (bits / 8);
		if (c->insn.address_width == 32)
			ea &= 0xffffffffull;
	}
	*offset &= bits - 1;
	return ea;
}

/*
 * A LOCK-prefixed (or implicitly locked) read-modify-write on memory:
 * compute from the value read, then compare-and-exchange; if another agent
 * changed the location meanwhile, recompute from what it saw.  The loop is
 * bounded so a pathological machine cannot hang the vCPU: past the bound the
 * instruction is abandoned with "retry", changing nothing.
 */
static int locked_rmw(struct x86emu_ctx *c, ZydisMnemonic mn, unsigned bits, uint64_t la,
		      uint64_t src, uint64_t *old_out)
{
	unsigned size = bits / 8;
	uint8_t buf[8];
	uint64_t old = 0;
	int rc = x86emu__mem_read(c, la, size, buf, X86EMU_ACCESS_DATA);

	if (rc != XS_OK)
		return rc;
	memcpy(&old, buf, size);	/* vmmu hosts are little-endian x86-64 */
	for (unsigned tries = 0; tries < 1000; tries++) {
		uint64_t flags = c->cpu.rflags, seen = 0;
		uint64_t new = rmw_compute(mn, bits, old, src, &flags);
		rc = x86emu__mem_cmpxchg(c, la, size, &old, &new, &seen);
		if (rc != XS_OK)
			return rc;
		if (seen == old) {
			c->cpu.rflags = flags;
			*old_out = old;
			return XS_OK;
		}
		old = seen;
	}
	return XS_RETRY;
}

/* ADD..XOR, INC, DEC, NEG, NOT, XADD, XCHG, BTS/BTR/BTC: plain or locked. */
int x86emu__exec_rmw(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	unsigned bits = op_bits(c, 0);
	uint64_t src = 0, old, new;
	bool unary = mn == ZYDIS_MNEMONIC_INC || mn == ZYDIS_MNEMONIC_DEC ||
		     mn == ZYDIS_MNEMONIC_NEG || mn == ZYDIS_MNEMONIC_NOT;
	int rc;

	if (!unary) {
		rc = x86emu__op_read(c, 1, &src);
		if (rc != XS_OK)
			return rc;
	}
	if (!is_mem(c, 0)) {
		if (has_lock(c))
			return raise_ud(c);	/* LOCK needs a memory destination */
		rc = x86emu__op_read(c, 0, &old);
		if (rc != XS_OK)
			return rc;
		new = rmw_compute(mn, bits, old, is_bit_op(mn) ? src & (bits - 1) : src,
				  &c->cpu.rflags);
		/* XADD/XCHG write the source first, so "xadd %eax,%eax" ends with the sum. */
		if (mn == ZYDIS_MNEMONIC_XADD || mn == ZYDIS_MNEMONIC_XCHG)
			x86emu__op_write(c, 1, old);
		return x86emu__op_write(c, 0, new);
	}

	uint64_t ea = is_bit_op(mn) ? bit_op_ea(c, bits, &src) : x86emu__ea(c, &c->ops[0]);
	uint64_t la;
	rc = x86emu__linear(c, c->ops[0].mem.segment, ea, bits / 8, &la);
	if (rc != XS_OK)
		return rc;
	/* SDM XCHG: with a memory operand the processor locks whatever the prefix. */
	if (has_lock(c) || mn == ZYDIS_MNEMONIC_XCHG) {
		rc = locked_rmw(c, mn, bits, la, src, &old);
		if (rc != XS_OK)
			return rc;
	} else {
		rc = x86emu__read_seg(c, c->ops[0].mem.segment, ea, bits / 8, &old);
		if (rc != XS_OK)
			return rc;
		new = rmw_compute(mn, bits, old, src, &c->cpu.rflags);
		rc = x86emu__write_seg(c, c->ops[0].mem.segment, ea, bits / 8, new);
		if (rc != XS_OK)
			return rc;
	}
	if (mn == ZYDIS_MNEMONIC_XADD || mn == ZYDIS_MNEMONIC_XCHG)
		x86emu__op_write(c, 1, old);
	return XS_OK;
}

/* CMP, TEST and BT: read-only. */
int x86emu__exec_compare(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	unsigned bits = op_bits(c, 0);
	uint64_t a, b;
	int rc = x86emu__op_read(c, 1, &b);

	if (rc != XS_OK)
		return rc;
	if (mn == ZYDIS_MNEMONIC_BT && is_mem(c, 0)) {
		uint64_t ea = bit_op_ea(c, bits, &b);
		rc = x86emu__read_seg(c, c->ops[0].mem.segment, ea, bits / 8, &a);
	} else {
		rc = x86emu__op_read(c, 0, &a);
	}
	if (rc != XS_OK)
		return rc;
	if (mn == ZYDIS_MNEMONIC_BT) {
		unsigned bit = (unsigned)(b & (bits - 1));
		c->cpu.rflags = (c->cpu.rflags & ~X86EMU_FLAG_CF) |
				(((a >> bit) & 1) ? X86EMU_FLAG_CF : 0);
		return XS_OK;
	}
	x86emu__alu(mn == ZYDIS_MNEMONIC_CMP ? ALU_CMP : ALU_TEST, bits, a, b, &c->cpu.rflags);
	return XS_OK;
}

int x86emu__exec_cmpxchg(struct x86emu_ctx *c)
{
	unsigned bits = op_bits(c, 0);
	uint64_t acc = c->cpu.gpr[X86EMU_RAX] & width_mask(bits), src, dest;
	int rc = x86emu__op_read(c, 1, &src);

	if (rc != XS_OK)
		return rc;
	if (is_mem(c, 0)) {
		uint64_t la;
		rc = x86emu__linear(c, c->ops[0].mem.segment, x86emu__ea(c, &c->ops[0]), bits / 8,
				    &la);
		if (rc != XS_OK)
			return rc;
		dest = 0;
		rc = x86emu__mem_cmpxchg(c, la, bits / 8, &acc, &src, &dest);
		if (rc != XS_OK)
			return rc;
	} else {
		if (has_lock(c))
			return raise_ud(c);
		dest = x86emu__reg_read(&c->cpu, c->ops[0].reg.value);
		/*
		 * The SDM's pseudo-code writes DEST <- DEST on a mismatch, but for a
		 * 32-bit register destination hardware leaves it alone (no
		 * zero-extension); the host-oracle test pins this down.
		 */
		if (dest == acc)
			x86emu__op_write(c, 0, src);
	}
	x86emu__alu(ALU_CMP, bits, acc, dest, &c->cpu.rflags);
	if (dest != acc)
		x86emu__gpr_write(&c->cpu, X86EMU_RAX, bits, dest);
	return XS_OK;
}

/* CMPXCHG8B / CMPXCHG16B: only ZF is affected (SDM). */
int x86emu__exec_cmpxchg_wide(struct x86emu_ctx *c)
{
	bool wide = c->insn.mnemonic == ZYDIS_MNEMONIC_CMPXCHG16B;
	unsigned half = wide ? 8 : 4, bits = wide ? 64 : 32;
	uint64_t m = width_mask(bits), la, ea;
	uint8_t expected[16], desired[16], seen[16];
	uint64_t v[4] = { c->cpu.gpr[X86EMU_RAX] & m, c->cpu.gpr[X86EMU_RDX] & m,
			  c->cpu.gpr[X86EMU_RBX] & m, c->cpu.gpr[X86EMU_RCX] & m };
	int rc;

	if (!is_mem(c, 0))
		return raise_ud(c);
	ea = x86emu__ea(c, &c->ops[0]);
	rc = x86emu__linear(c, c->ops[0].mem.segment, ea, 2 * half, &la);
	if (rc != XS_OK)
		return rc;
	if (wide && (la & 15))
		return raise_gp(c, 0);	/* CMPXCHG16B needs 16-byte alignment */
	for (unsigned i = 0; i < half; i++) {
		expected[i] = (uint8_t)(v[0] >> (8 * i));
		expected[half + i] = (uint8_t)(v[1] >> (8 * i));
		desired[i] = (uint8_t)(v[2] >> (8 * i));
		desired[half + i] = (uint8_t)(v[3] >> (8 * i));
	}
	rc = x86emu__mem_cmpxchg(c, la, 2 * half, expected, desired, seen);
	if (rc != XS_OK)
		return rc;
	if (memcmp(seen, expected, 2 * half) == 0) {
		c->cpu.rflags |= X86EMU_FLAG_ZF;
		return XS_OK;
	}
	c->cpu.rflags &= ~X86EMU_FLAG_ZF;
	uint64_t lo = 0, hi = 0;
	for (unsigned i = 0; i < half; i++) {
		lo |= (uint64_t)seen[i] << (8 * i);
		hi |= (uint64_t)seen[half + i] << (8 * i);
	}
	x86emu__gpr_write(&c->cpu, X86EMU_RAX, bits, lo);
	x86emu__gpr_write(&c->cpu, X86EMU_RDX, bits, hi);
	return XS_OK;
}

