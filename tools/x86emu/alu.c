/*
 * Integer arithmetic with exact RFLAGS.
 *
 * Every function computes the result at the operand width and updates the
 * six status flags exactly as the SDM (vol. 1 appendix A, vol. 2 per
 * instruction) defines them.  Where the SDM calls a flag "undefined" the
 * choice here is documented next to the code; the tests mask those flags
 * out when comparing with the host CPU.
 */
#include "internal.h"

#define STATUS_FLAGS X86EMU_FLAGS_ARITH

bool x86emu__parity(uint64_t v)
{
	/* PF: set when the low byte of the result has an even number of 1 bits. */
	uint8_t b = (uint8_t)v;
	b ^= b >> 4;
	b ^= b >> 2;
	b ^= b >> 1;
	return !(b & 1);
}

/* SF, ZF, PF of a result at `bits`, as a flags word. */
static inline uint64_t szp(uint64_t res, unsigned bits)
{
	uint64_t f = 0;
	res &= width_mask(bits);
	if (res == 0)
		f |= X86EMU_FLAG_ZF;
	if (msb(res, bits))
		f |= X86EMU_FLAG_SF;
	if (x86emu__parity(res))
		f |= X86EMU_FLAG_PF;
	return f;
}

static inline void set_flags(uint64_t *rflags, uint64_t which, uint64_t values)
{
	*rflags = (*rflags & ~which) | (values & which);
}

void x86emu__flags_logic(uint64_t res, unsigned bits, uint64_t *rflags)
{
	/* AND/OR/XOR/TEST: OF=CF=0, SF/ZF/PF from the result; AF undefined, we clear it. */
	set_flags(rflags, STATUS_FLAGS, szp(res, bits));
}

/* Flags of a + b + carry_in, all operands already masked to `bits`. */
static inline uint64_t add_flags(uint64_t a, uint64_t b, unsigned cin, uint64_t res, unsigned bits)
{
	uint64_t f = szp(res, bits);
	/* Carry out of the top bit: the true sum wrapped past a. */
	bool cf = cin ? res <= a : res < a;
	if (cf)
		f |= X86EMU_FLAG_CF;
	/* Signed overflow: both inputs have the same sign and the result differs. */
	if (msb((a ^ res) & (b ^ res), bits))
		f |= X86EMU_FLAG_OF;
	/* AF: carry out of bit 3 (vol. 1 3.4.3.1). */
	if ((a ^ b ^ res) & 0x10)
		f |= X86EMU_FLAG_AF;
	return f;
}

/* Flags of a - b - borrow_in. */
static inline uint64_t sub_flags(uint64_t a, uint64_t b, unsigned bin, uint64_t res, unsigned bits)
{
	uint64_t f = szp(res, bits);
	/* Borrow: a < b + bin, written so it cannot overflow. */
	bool cf = bin ? a <= b : a < b;
	if (cf)
		f |= X86EMU_FLAG_CF;
	/* Signed overflow: inputs of different sign and result sign differs from a. */
	if (msb((a ^ b) & (a ^ res), bits))
		f |= X86EMU_FLAG_OF;
	if ((a ^ b ^ res) & 0x10)
		f |= X86EMU_FLAG_AF;
	return f;
}

uint64_t x86emu__alu(enum x86emu_alu_op op, unsigned bits, uint64_t a, uint64_t b,
		     uint64_t *rflags)
{
	uint64_t m = width_mask(bits);
	unsigned cf = (*rflags & X86EMU_FLAG_CF) ? 1 : 0;
	uint64_t res;

	a &= m;
	b &= m;
	switch (op) {
	case ALU_ADD:
		res = (a + b) & m;
		set_flags(rflags, STATUS_FLAGS, add_flags(a, b, 0, res, bits));
		return res;
	case ALU_ADC:
		res = (a + b + cf) & m;
		set_flags(rflags, STATUS_FLAGS, add_flags(a, b, cf, res, bits));
		return res;
	case ALU_SUB:
	case ALU_CMP:
		res = (a - b) & m;
		set_flags(rflags, STATUS_FLAGS, sub_flags(a, b, 0, res, bits));
		return op == ALU_CMP ? a : res;
	case ALU_SBB:
		res = (a - b - cf) & m;
		set_flags(rflags, STATUS_FLAGS, sub_flags(a, b, cf, res, bits));
		return res;
	case ALU_AND:
	case ALU_TEST:
		res = a & b;
		x86emu__flags_logic(res, bits, rflags);
		return op == ALU_TEST ? a : res;
	case ALU_OR:
		res = a | b;
		x86emu__flags_logic(res, bits, rflags);
		return res;
	case ALU_XOR:
		res = a ^ b;
		x86emu__flags_logic(res, bits, rflags);
		return res;
	case ALU_INC:
		/* INC/DEC: like ADD/SUB 1 but CF is preserved (SDM INC). */
		res = (a + 1) & m;
		set_flags(rflags, STATUS_FLAGS & ~X86EMU_FLAG_CF, add_flags(a, 1, 0, res, bits));
		return res;
	case ALU_DEC:
		res = (a - 1) & m;
		set_flags(rflags, STATUS_FLAGS & ~X86EMU_FLAG_CF, sub_flags(a, 1, 0, res, bits));
		return res;
	case ALU_NEG:
		/* NEG = 0 - a; CF is set unless the operand was 0 (SDM NEG). */
		res = (0 - a) & m;
		set_flags(rflags, STATUS_FLAGS, sub_flags(0, a, 0, res, bits));
		return res;
	}
	return a;
}

/*
 * Shifts and rotates (SDM vol. 2B, SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR).
 * The count is masked to 5 bits (6 with REX.W); a masked count of 0 changes
 * nothing, not even flags.  OF is defined only for a masked count of 1; AF
 * is undefined for a nonzero shift count (we clear it, as current Intel and
 * AMD parts do for shifts); CF is undefined for SHL/SHR when the count is
 * >= the width (we give the last bit shifted out of an infinitely wide
 * register, i.e. 0 past the end).
 */
uint64_t x86emu__shift(enum x86emu_shift_op op, unsigned bits, uint64_t a, uint64_t count,
		       uint64_t *rflags)
{
	uint64_t m = width_mask(bits);
	unsigned cnt = (unsigned)(count & (bits == 64 ? 0x3f : 0x1f));
	uint64_t res, f = 0;
	bool cf;

	a &= m;
	if (cnt == 0)
		return a;

	switch (op) {
	case SHIFT_SHL:
		res = cnt >= bits ? 0 : (a << cnt) & m;
		cf = cnt <= bits ? (a >> (bits - cnt)) & 1 : 0;
		f = szp(res, bits) | (cf ? X86EMU_FLAG_CF : 0);
		if (msb(res, bits) != cf)	/* OF = MSB(result) XOR CF (count 1) */
			f |= X86EMU_FLAG_OF;
		set_flags(rflags, STATUS_FLAGS, f);
		return res;
	case SHIFT_SHR:
		res = cnt >= bits ? 0 : a >> cnt;
		cf = cnt <= bits ? (a >> (cnt - 1)) & 1 : 0;
		f = szp(res, bits) | (cf ? X86EMU_FLAG_CF : 0);
		if (msb(a, bits))	/* OF = MSB of the original operand (count 1) */
			f |= X86EMU_FLAG_OF;
		set_flags(rflags, STATUS_FLAGS, f);
		return res;
	case SHIFT_SAR: {
		/* Shifting by >= width fills with the sign bit, and CF gets it too. */
		int64_t s = (int64_t)sign_extend(a, bits);
		res = (uint64_t)(s >> (cnt >= bits ? bits - 1 : cnt)) & m;
		cf = (uint64_t)(s >> (cnt - 1 >= bits ? bits - 1 : cnt - 1)) & 1;
		f = szp(res, bits) | (cf ? X86EMU_FLAG_CF : 0);	/* OF = 0 for count 1 */
		set_flags(rflags, STATUS_FLAGS, f);
		return res;
	}
	case SHIFT_ROL: {
		unsigned r = cnt % bits;
		res = r ? ((a << r) | (a >> (bits - r))) & m : a;
		/* Rotates touch only CF (and OF for count 1); SF/ZF/AF/PF are kept. */
		cf = res & 1;
		f = cf ? X86EMU_FLAG_CF : 0;
		if (msb(res, bits) != cf)
			f |= X86EMU_FLAG_OF;
		set_flags(rflags, X86EMU_FLAG_CF | X86EMU_FLAG_OF, f);
		return res;
	}
	case SHIFT_ROR: {
		unsigned r = cnt % bits;
		res = r ? ((a >> r) | (a << (bits - r))) & m : a;
		cf = msb(res, bits);
		f = cf ? X86EMU_FLAG_CF : 0;
		/* OF = XOR of the two most significant bits of the result (count 1). */
		if (msb(res, bits) != msb(res << 1, bits))
			f |= X86EMU_FLAG_OF;
		set_flags(rflags, X86EMU_FLAG_CF | X86EMU_FLAG_OF, f);
		return res;
	}
	case SHIFT_RCL:
	case SHIFT_RCR: {
		/* Rotate through CF: a (bits+1)-bit rotation; 8/16-bit counts are mod 9/17. */
		unsigned r = bits < 32 ? cnt % (bits + 1) : cnt;
		unsigned c = (*rflags & X86EMU_FLAG_CF) ? 1 : 0;
		res = a;
		for (unsigned i = 0; i < r; i++) {
			unsigned out;
			if (op == SHIFT_RCL) {
				out = msb(res, bits);
				res = ((res << 1) | c) & m;
			} else {
				out = res & 1;
				res = (res >> 1) | ((uint64_t)c << (bits - 1));
			}
			c = out;
		}
		f = c ? X86EMU_FLAG_CF : 0;
		if (op == SHIFT_RCL ? msb(res, bits) != c
				    : msb(res, bits) != msb(res << 1, bits))
			f |= X86EMU_FLAG_OF;
		set_flags(rflags, X86EMU_FLAG_CF | X86EMU_FLAG_OF, f);
		return res;
	}
	}
	return a;
}

/*
 * SHLD/SHRD (SDM vol. 2B): shift dst, filling from src.  Count masked to 5
 * (6) bits; 0 changes nothing.  For a count larger than the operand size
 * (16-bit only) the result and flags are undefined: we shift through the
 * 32-bit concatenation, which is what the tests skip.
 */
uint64_t x86emu__shld(bool left, unsigned bits, uint64_t dst, uint64_t src, uint64_t count,
		      uint64_t *rflags)
{
	uint64_t m = width_mask(bits);
	unsigned cnt = (unsigned)(count & (bits == 64 ? 0x3f : 0x1f));
	uint64_t res, f;
	bool cf;

	dst &= m;
	src &= m;
	if (cnt == 0)
		return dst;
	if (bits == 16) {
		/*
		 * A 48-bit window makes every count 1..31 well-formed; for
		 * counts up to 16 it gives the SDM's result, beyond that
		 * (undefined) the same bits Intel parts produce.
		 */
		if (left) {
			uint64_t w = (dst << 32) | (src << 16) | dst;
			res = (w >> (32 - cnt)) & m;
			cf = (w >> (48 - cnt)) & 1;
		} else {
			uint64_t w = dst | (src << 16) | (dst << 32);
			res = (w >> cnt) & m;
			cf = (w >> (cnt - 1)) & 1;
		}
	} else if (left) {
		res = ((dst << cnt) | (src >> (bits - cnt))) & m;
		cf = (dst >> (bits - cnt)) & 1;
	} else {
		res = ((dst >> cnt) | (src << (bits - cnt))) & m;
		cf = (dst >> (cnt - 1)) & 1;
	}
	f = szp(res, bits) | (cf ? X86EMU_FLAG_CF : 0);
	/* OF (count 1): set when the sign bit changed. */
	if (msb(res, bits) != msb(dst, bits))
		f |= X86EMU_FLAG_OF;
	set_flags(rflags, STATUS_FLAGS, f);
	return res;
}

void x86emu__mul(bool is_signed, unsigned bits, uint64_t a, uint64_t b,
		 uint64_t *lo, uint64_t *hi, uint64_t *rflags)
{
	uint64_t m = width_mask(bits);
	bool significant;

	if (bits == 64) {
		x86emu_u128 p;
		if (is_signed)
			p = (x86emu_u128)((x86emu_i128)(int64_t)a * (x86emu_i128)(int64_t)b);
		else
			p = (x86emu_u128)a * b;
		*lo = (uint64_t)p;
		*hi = (uint64_t)(p >> 64);
	} else {
		uint64_t p;
		if (is_signed)
			p = (uint64_t)((int64_t)sign_extend(a, bits) * (int64_t)sign_extend(b, bits));
		else
			p = (a & m) * (b & m);
		*lo = p & m;
		*hi = (p >> bits) & m;
	}
	/*
	 * MUL: CF=OF=0 iff the upper half is zero.  IMUL: CF=OF=0 iff the
	 * product fits the destination, i.e. equals the sign-extended low half.
	 * SF/ZF/AF/PF are undefined: we set SF/ZF/PF from the low half and clear AF.
	 */
	if (is_signed)
		significant = *hi != (msb(*lo, bits) ? m : 0);
	else
		significant = *hi != 0;
	uint64_t f = szp(*lo, bits);
	if (significant)
		f |= X86EMU_FLAG_CF | X86EMU_FLAG_OF;
	set_flags(rflags, STATUS_FLAGS, f);
}

bool x86emu__div(bool is_signed, unsigned bits, uint64_t hi, uint64_t lo, uint64_t divisor,
		 uint64_t *quot, uint64_t *rem)
{
	uint64_t m = width_mask(bits);

	divisor &= m;
	if (divisor == 0)
		return false;
	if (!is_signed) {
		x86emu_u128 n = ((x86emu_u128)(hi & m) << bits) | (lo & m);
		x86emu_u128 q = n / divisor;
		if (q > m)
			return false;	/* quotient does not fit: #DE (SDM DIV) */
		*quot = (uint64_t)q;
		*rem = (uint64_t)(n % divisor);
		return true;
	}
	/* Signed: build the 2*bits-bit dividend as a 128-bit two's-complement number. */
	x86emu_u128 un = ((x86emu_u128)(hi & m) << bits) | (lo & m);
	if (bits < 64 && msb(hi, bits))
		un |= ~(x86emu_u128)0 << (2 * bits);
	x86emu_i128 n = (x86emu_i128)un;
	x86emu_i128 d = (int64_t)sign_extend(divisor, bits);
	/* -2^127 / -1 overflows in C itself; the quotient is out of range anyway. */
	if (d == -1 && un == ((x86emu_u128)1 << 127))
		return false;
	x86emu_i128 q = n / d;
	x86emu_i128 r = n % d;
	x86emu_i128 lim = (x86emu_i128)1 << (bits - 1);
	if (q >= lim || q < -lim)
		return false;	/* IDIV: quotient out of range is #DE too */
	*quot = (uint64_t)q & m;
	*rem = (uint64_t)r & m;
	return true;
}

bool x86emu__cond(uint64_t f, unsigned cc)
{
	bool cf = f & X86EMU_FLAG_CF, zf = f & X86EMU_FLAG_ZF;
	bool sf = f & X86EMU_FLAG_SF, of = f & X86EMU_FLAG_OF;
	bool pf = f & X86EMU_FLAG_PF;
	bool r;

	/* SDM vol. 1 appendix B: conditions come in pairs; the low bit negates. */
	switch ((cc >> 1) & 7) {
	case 0: r = of; break;			/* O */
	case 1: r = cf; break;			/* B / C */
	case 2: r = zf; break;			/* E / Z */
	case 3: r = cf || zf; break;		/* BE */
	case 4: r = sf; break;			/* S */
	case 5: r = pf; break;			/* P */
	case 6: r = sf != of; break;		/* L */
	default: r = zf || sf != of; break;	/* LE */
	}
	return (cc & 1) ? !r : r;
}
