/*
 * Arithmetic, logic, shifts, multiply/divide, bit operations, setcc/cmovcc:
 * the interpreter against the host CPU.  Each case encodes one instruction
 * with random registers, runs the same bytes natively and in the
 * interpreter from the same registers and RFLAGS, and compares every GPR
 * and the flags the SDM defines for that instruction.  Undefined flags are
 * masked per instruction, with the SDM's words next to the mask.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

#define CF X86EMU_FLAG_CF
#define PF X86EMU_FLAG_PF
#define AF X86EMU_FLAG_AF
#define ZF X86EMU_FLAG_ZF
#define SF X86EMU_FLAG_SF
#define OF X86EMU_FLAG_OF
#define ALL6 (CF | PF | AF | ZF | SF | OF)

static unsigned long g_cases;

static ZydisRegister gpr(unsigned idx, unsigned bits)
{
	switch (bits) {
	case 64: return ZYDIS_REGISTER_RAX + idx;
	case 32: return ZYDIS_REGISTER_EAX + idx;
	case 16: return ZYDIS_REGISTER_AX + idx;
	default:
		if (idx >= 16)
			return ZYDIS_REGISTER_AH + (idx - 16);	/* AH, CH, DH, BH */
		if (idx < 4)
			return ZYDIS_REGISTER_AL + idx;
		if (idx < 8)
			return ZYDIS_REGISTER_SPL + (idx - 4);
		return ZYDIS_REGISTER_R8B + (idx - 8);
	}
}

/* A random register index other than RSP (8-bit: may pick AH..BH). */
static unsigned rand_reg(unsigned bits)
{
	for (;;) {
		unsigned r = (unsigned)(trand() % (bits == 8 ? 20 : 16));
		if (r != X86EMU_RSP)
			return r;
	}
}

/* Operand values: edges at the width, then random. */
static uint64_t operand(unsigned bits, unsigned i)
{
	uint64_t m = bits == 64 ? ~0ull : (1ull << bits) - 1, top = 1ull << (bits - 1);
	const uint64_t edges[] = { 0, 1, 2, top - 1, top, top + 1, m, m - 1,
				   0x5555555555555555ull & m, 0xaaaaaaaaaaaaaaaaull & m };
	if (i < sizeof(edges) / sizeof(edges[0]))
		return edges[i];
	uint64_t r = trand();
	/* Half the random values are small or near the edges, where carries live. */
	switch (trand() % 4) {
	case 0: return r & 0xff;
	case 1: return (top - 8 + (r & 15)) & m;
	default: return r & m;
	}
}

/* Put v into register idx at `bits`, as the instruction will see it. */
static void set_reg(struct host_regs *h, unsigned idx, unsigned bits, uint64_t v)
{
	uint64_t m = bits == 64 ? ~0ull : (1ull << bits) - 1;
	if (bits == 8 && idx >= 16)
		h->gpr[idx - 16] = (h->gpr[idx - 16] & ~0xff00ull) | ((v & 0xff) << 8);
	else
		h->gpr[idx] = (h->gpr[idx] & ~m) | (v & m);
}

static void random_regs(struct host_regs *h)
{
	for (unsigned i = 0; i < 16; i++)
		h->gpr[i] = trand();
	h->gpr[X86EMU_RSP] = 0;
	/* Random status flags; IF and the fixed bit as user space has them. */
	h->rflags = (trand() & ALL6) | X86EMU_FLAG_FIXED | X86EMU_FLAG_IF;
}

/*
 * Run one case both ways and compare.  flag_mask: the flags the SDM
 * defines for this case; skip_reg: a register whose value is undefined
 * (-1 for none).
 */
static void compare(const uint8_t *code, size_t len, const struct host_regs *init,
		    uint64_t flag_mask, int skip_reg)
{
	struct host_regs h = *init;
	int sig = host_exec(code, len, &h);

	x86emu_cpu_init_long_mode(&g_m.cpu);
	g_m.cpu.gdtr = (struct x86emu_dtr){ .base = TM_GDT, .limit = 0x37 };
	g_m.cpu.idtr = (struct x86emu_dtr){ .base = TM_IDT, .limit = 4095 };
	g_m.cpu.tr = (struct x86emu_segment){ .selector = TM_SEL_TSS, .base = TM_TSS,
					      .limit = 0x67, .attr = 0x8b };
	memcpy(g_m.cpu.gpr, init->gpr, sizeof(init->gpr));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	g_m.cpu.rflags = init->rflags;
	g_m.cpu.rip = TM_CODE;
	tm_load(&g_m, TM_CODE, code, len);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	g_cases++;

	char hex[64] = "";
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ", code[i]);

	if (sig == SIGFPE) {
		/* The host raised #DE: the interpreter must have delivered vector 0. */
		if (!g_m.cpu.last_exception.valid || g_m.cpu.last_exception.vector != X86EMU_EXC_DE ||
		    g_m.cpu.rip != tm_handler(X86EMU_EXC_DE))
			fail_msg("[%s] host raised #DE, interpreter did not", hex);
		g_m.cpu.last_exception.valid = false;
		return;
	}
	assert_int_equal(sig, 0);
	if (g_m.cpu.rip != TM_CODE + len)
		fail_msg("[%s] interpreter stopped at %#llx (exception %d)", hex,
			 (unsigned long long)g_m.cpu.rip, g_m.cpu.last_exception.vector);
	for (int i = 0; i < 16; i++) {
		if (i == X86EMU_RSP || i == skip_reg)
			continue;
		if (h.gpr[i] != g_m.cpu.gpr[i])
			fail_msg("[%s] reg %d: host %#llx interp %#llx (in %#llx/%#llx/%#llx fl %#llx)",
				 hex, i, (unsigned long long)h.gpr[i],
				 (unsigned long long)g_m.cpu.gpr[i],
				 (unsigned long long)init->gpr[0], (unsigned long long)init->gpr[1],
				 (unsigned long long)init->gpr[i], (unsigned long long)init->rflags);
	}
	if ((h.rflags & flag_mask) != (g_m.cpu.rflags & flag_mask))
		fail_msg("[%s] flags: host %#llx interp %#llx mask %#llx (in fl %#llx)", hex,
			 (unsigned long long)(h.rflags & flag_mask),
			 (unsigned long long)(g_m.cpu.rflags & flag_mask),
			 (unsigned long long)flag_mask, (unsigned long long)init->rflags);
}

static const unsigned widths[] = { 8, 16, 32, 64 };

static bool msb_test(uint64_t v, unsigned bits)
{
	return (v >> (bits - 1)) & 1;
}
#define ITER 400

/* ---- two-operand arithmetic and logic ------------------------------------------ */

static void check_binary(ZydisMnemonic mn, uint64_t mask)
{
	for (unsigned w = 0; w < 4; w++) {
		unsigned bits = widths[w];
		for (unsigned i = 0; i < ITER; i++) {
			struct host_regs h;
			uint8_t code[15];
			unsigned d = rand_reg(bits), s = rand_reg(bits);
			uint64_t a = operand(bits, i % 10), b = operand(bits, i / 10 % 10);
			size_t len;
			if (i >= 100) {
				a = operand(bits, 10);
				b = operand(bits, 10);
			}
			random_regs(&h);
			bool imm = i % 3 == 2;
			if (imm) {
				/* imm8 sign-extended, or imm32 (sign-extended for 64-bit) */
				b = (i % 2) ? (uint64_t)(int8_t)b : (uint64_t)(int32_t)b;
				len = tenc(code, mn, 2, (struct tenc_op[]){ R(gpr(d, bits)), I(b) });
			} else {
				len = tenc(code, mn, 2,
					   (struct tenc_op[]){ R(gpr(d, bits)), R(gpr(s, bits)) });
				set_reg(&h, s, bits, b);
			}
			if (len == 0)
				continue;	/* e.g. AH with a REX-only register */
			set_reg(&h, d, bits, a);
			compare(code, len, &h, mask, -1);
		}
	}
}

static void add_sub_family_match_host(void **state)
{
	(void)state;
	/* ADD/ADC/SUB/SBB/CMP: OF SF ZF AF CF PF all defined (SDM ADD etc.). */
	check_binary(ZYDIS_MNEMONIC_ADD, ALL6);
	check_binary(ZYDIS_MNEMONIC_ADC, ALL6);
	check_binary(ZYDIS_MNEMONIC_SUB, ALL6);
	check_binary(ZYDIS_MNEMONIC_SBB, ALL6);
	check_binary(ZYDIS_MNEMONIC_CMP, ALL6);
}

static void logic_family_matches_host_except_undefined_af(void **state)
{
	(void)state;
	/* AND/OR/XOR/TEST: "The state of the AF flag is undefined." */
	check_binary(ZYDIS_MNEMONIC_AND, ALL6 & ~AF);
	check_binary(ZYDIS_MNEMONIC_OR, ALL6 & ~AF);
	check_binary(ZYDIS_MNEMONIC_XOR, ALL6 & ~AF);
	check_binary(ZYDIS_MNEMONIC_TEST, ALL6 & ~AF);
}

static void check_unary(ZydisMnemonic mn, uint64_t mask, bool no8)
{
	for (unsigned w = no8 ? 1 : 0; w < 4; w++) {
		unsigned bits = widths[w];
		for (unsigned i = 0; i < ITER; i++) {
			struct host_regs h;
			uint8_t code[15];
			unsigned d = rand_reg(bits);
			size_t len = tenc(code, mn, 1, (struct tenc_op[]){ R(gpr(d, bits)) });
			if (len == 0)
				continue;
			random_regs(&h);
			set_reg(&h, d, bits, operand(bits, i < 10 ? i : 10));
			/* BSF/BSR leave the destination undefined for a zero source;
			 * for the unary forms here the operand is the destination. */
			compare(code, len, &h, mask, -1);
		}
	}
}

static void unary_ops_match_host(void **state)
{
	(void)state;
	/* INC/DEC: CF unaffected, others defined; NEG: all defined; NOT: none affected. */
	check_unary(ZYDIS_MNEMONIC_INC, ALL6, false);
	check_unary(ZYDIS_MNEMONIC_DEC, ALL6, false);
	check_unary(ZYDIS_MNEMONIC_NEG, ALL6, false);
	check_unary(ZYDIS_MNEMONIC_NOT, ALL6, false);
	/* BSWAP: no flags affected; 16-bit BSWAP is undefined, so 32/64 only. */
	check_unary(ZYDIS_MNEMONIC_BSWAP, ALL6, true);
}

/* ---- shifts and rotates ----------------------------------------------------------- */

static uint64_t shift_count(unsigned i)
{
	const uint64_t counts[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255 };
	if (i < 16)
		return counts[i];
	return trand() & 0xff;
}

/*
 * The flags the SDM defines after a shift/rotate of `bits` by `count`:
 * masked count 0: nothing changes, so all six are "defined" (unchanged);
 * shifts: AF undefined for a nonzero count, OF only defined for count 1,
 * CF undefined for SHL/SHR when count >= width; rotates: SF ZF AF PF
 * unaffected, OF undefined unless the masked count is 1.
 */
static uint64_t shift_mask(ZydisMnemonic mn, unsigned bits, uint64_t count)
{
	unsigned c = (unsigned)(count & (bits == 64 ? 63 : 31));
	bool rotate = mn == ZYDIS_MNEMONIC_ROL || mn == ZYDIS_MNEMONIC_ROR ||
		      mn == ZYDIS_MNEMONIC_RCL || mn == ZYDIS_MNEMONIC_RCR;
	uint64_t m = ALL6;

	if (c == 0)
		return m;
	if (c != 1)
		m &= ~OF;
	if (rotate)
		return m;
	m &= ~AF;
	if ((mn == ZYDIS_MNEMONIC_SHL || mn == ZYDIS_MNEMONIC_SHR) && c >= bits)
		m &= ~CF;
	return m;
}

static void check_shift(ZydisMnemonic mn)
{
	for (unsigned w = 0; w < 4; w++) {
		unsigned bits = widths[w];
		for (unsigned i = 0; i < ITER; i++) {
			struct host_regs h;
			uint8_t code[15];
			unsigned d = rand_reg(bits);
			uint64_t count = shift_count(i % 20);
			unsigned form = i % 3;	/* CL, imm8, implicit 1 */
			size_t len;
			random_regs(&h);
			if (form == 0) {
				if (d == X86EMU_RCX || (bits == 8 && d == 17))
					continue;	/* keep CL the count */
				len = tenc(code, mn, 2,
					   (struct tenc_op[]){ R(gpr(d, bits)), R(ZYDIS_REGISTER_CL) });
				set_reg(&h, X86EMU_RCX, 8, count);
			} else {
				if (form == 2)
					count = 1;
				len = tenc(code, mn, 2,
					   (struct tenc_op[]){ R(gpr(d, bits)), I(count & 0xff) });
			}
			if (len == 0)
				continue;
			set_reg(&h, d, bits, operand(bits, i % 10 == 9 ? 10 : i % 10));
			compare(code, len, &h, shift_mask(mn, bits, count), -1);
		}
	}
}

static void shifts_match_host(void **state)
{
	(void)state;
	check_shift(ZYDIS_MNEMONIC_SHL);
	check_shift(ZYDIS_MNEMONIC_SHR);
	check_shift(ZYDIS_MNEMONIC_SAR);
}

static void rotates_match_host(void **state)
{
	(void)state;
	check_shift(ZYDIS_MNEMONIC_ROL);
	check_shift(ZYDIS_MNEMONIC_ROR);
	check_shift(ZYDIS_MNEMONIC_RCL);
	check_shift(ZYDIS_MNEMONIC_RCR);
}

static void double_shifts_match_host(void **state)
{
	(void)state;
	for (unsigned m = 0; m < 2; m++) {
		ZydisMnemonic mn = m ? ZYDIS_MNEMONIC_SHRD : ZYDIS_MNEMONIC_SHLD;
		for (unsigned w = 1; w < 4; w++) {
			unsigned bits = widths[w];
			for (unsigned i = 0; i < ITER; i++) {
				struct host_regs h;
				uint8_t code[15];
				unsigned d = rand_reg(bits), s = rand_reg(bits);
				uint64_t count = shift_count(i % 20);
				unsigned c = (unsigned)(count & (bits == 64 ? 63 : 31));
				size_t len;
				/* "If the count is greater than the operand size, the result is undefined." */
				if (c > bits || d == X86EMU_RCX || s == X86EMU_RCX)
					continue;
				random_regs(&h);
				if (i % 2) {
					len = tenc(code, mn, 3, (struct tenc_op[]){
						R(gpr(d, bits)), R(gpr(s, bits)), R(ZYDIS_REGISTER_CL) });
					set_reg(&h, X86EMU_RCX, 8, count);
				} else {
					len = tenc(code, mn, 3, (struct tenc_op[]){
						R(gpr(d, bits)), R(gpr(s, bits)), I(count & 0xff) });
				}
				if (len == 0)
					continue;
				set_reg(&h, s, bits, operand(bits, 10));
				set_reg(&h, d, bits, operand(bits, i % 10));
				/* Count 1: AF undefined; count > 1: OF and AF undefined. */
				uint64_t mask = c == 0 ? ALL6 : c == 1 ? ALL6 & ~AF : ALL6 & ~(AF | OF);
				compare(code, len, &h, mask, -1);
			}
		}
	}
}

/* ---- multiply and divide ----------------------------------------------------------- */

static void mul_div_one_operand_match_host(void **state)
{
	(void)state;
	const ZydisMnemonic mns[] = { ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_IMUL,
				      ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV };
	for (unsigned k = 0; k < 4; k++) {
		bool is_div = k >= 2;
		for (unsigned w = 0; w < 4; w++) {
			unsigned bits = widths[w];
			for (unsigned i = 0; i < ITER; i++) {
				struct host_regs h;
				uint8_t code[15];
				unsigned s = rand_reg(bits);
				size_t len = tenc(code, mns[k], 1, (struct tenc_op[]){ R(gpr(s, bits)) });
				if (len == 0)
					continue;
				random_regs(&h);
				set_reg(&h, X86EMU_RAX, bits == 8 ? 16 : bits,
					bits == 8 ? trand() : operand(bits, i % 11));
				if (is_div && i % 2) {
					/* Mostly dividends whose quotient fits, so both paths run. */
					uint64_t top = operand(bits, 10) >> 3;
					if (bits == 8)
						set_reg(&h, X86EMU_RAX, 16, (h.gpr[0] & 0xff) | (top & 0x0f) << 8);
					else
						set_reg(&h, X86EMU_RDX, bits,
							k == 3 ? (msb_test(h.gpr[0], bits) ? ~0ull : 0) : top);
				}
				set_reg(&h, s, bits, operand(bits, (i / 11) % 11));
				/* MUL/IMUL: "SF, ZF, AF, PF undefined"; DIV/IDIV: all six undefined. */
				compare(code, len, &h, is_div ? 0 : CF | OF, -1);
			}
		}
	}
}

static void imul_two_and_three_operand_match_host(void **state)
{
	(void)state;
	for (unsigned w = 1; w < 4; w++) {
		unsigned bits = widths[w];
		for (unsigned i = 0; i < ITER; i++) {
			struct host_regs h;
			uint8_t code[15];
			unsigned d = rand_reg(bits), s = rand_reg(bits);
			uint64_t a = operand(bits, i % 11), b = operand(bits, (i / 11) % 11);
			size_t len;
			random_regs(&h);
			set_reg(&h, s, bits, a);
			switch (i % 3) {
			case 0:	/* imul r, r/m */
				set_reg(&h, d, bits, b);
				len = tenc(code, ZYDIS_MNEMONIC_IMUL, 2,
					   (struct tenc_op[]){ R(gpr(d, bits)), R(gpr(s, bits)) });
				break;
			case 1:	/* imul r, r/m, imm8 */
				len = tenc(code, ZYDIS_MNEMONIC_IMUL, 3, (struct tenc_op[]){
					R(gpr(d, bits)), R(gpr(s, bits)), I((uint64_t)(int8_t)b) });
				break;
			default:	/* imul r, r/m, imm16/32 */
				len = tenc(code, ZYDIS_MNEMONIC_IMUL, 3, (struct tenc_op[]){
					R(gpr(d, bits)), R(gpr(s, bits)),
					I(bits == 16 ? (uint64_t)(int16_t)b : (uint64_t)(int32_t)b) });
				break;
			}
			if (len == 0)
				continue;
			/* "SF, ZF, AF, PF are undefined"; CF = OF = truncation happened. */
			compare(code, len, &h, CF | OF, -1);
		}
	}
}

/* ---- bit operations ------------------------------------------------------------------ */

static void bit_test_family_matches_host(void **state)
{
	(void)state;
	const ZydisMnemonic mns[] = { ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR,
				      ZYDIS_MNEMONIC_BTC };
	for (unsigned k = 0; k < 4; k++)
		for (unsigned w = 1; w < 4; w++) {
			unsigned bits = widths[w];
			for (unsigned i = 0; i < ITER; i++) {
				struct host_regs h;
				uint8_t code[15];
				unsigned d = rand_reg(bits), s = rand_reg(bits);
				uint64_t off = trand();
				size_t len;
				random_regs(&h);
				if (i % 2) {
					set_reg(&h, s, bits, off);
					len = tenc(code, mns[k], 2,
						   (struct tenc_op[]){ R(gpr(d, bits)), R(gpr(s, bits)) });
				} else {
					len = tenc(code, mns[k], 2,
						   (struct tenc_op[]){ R(gpr(d, bits)), I(off & 0xff) });
				}
				if (len == 0)
					continue;
				/* "CF = selected bit; ZF unaffected; OF, SF, AF, PF undefined." */
				compare(code, len, &h, CF | ZF, -1);
			}
		}
}

static void bit_scans_and_popcnt_match_host(void **state)
{
	(void)state;
	const ZydisMnemonic mns[] = { ZYDIS_MNEMONIC_BSF, ZYDIS_MNEMONIC_BSR,
				      ZYDIS_MNEMONIC_POPCNT };
	for (unsigned k = 0; k < 3; k++)
		for (unsigned w = 1; w < 4; w++) {
			unsigned bits = widths[w];
			for (unsigned i = 0; i < ITER; i++) {
				struct host_regs h;
				uint8_t code[15];
				unsigned d = rand_reg(bits), s = rand_reg(bits);
				uint64_t v = operand(bits, i % 11);
				if (i % 4 == 3)	/* single bits */
					v = 1ull << (trand() % bits);
				size_t len = tenc(code, mns[k], 2,
						  (struct tenc_op[]){ R(gpr(d, bits)), R(gpr(s, bits)) });
				if (len == 0)
					continue;
				random_regs(&h);
				set_reg(&h, s, bits, v);
				if (k == 2) {	/* POPCNT: all six flags defined */
					compare(code, len, &h, ALL6, -1);
				} else {
					/* BSF/BSR: "ZF defined; CF, OF, SF, AF, PF undefined";
					 * the destination is undefined for a zero source. */
					/* s < 16: these widths have no AH..BH (the mask
					 * says so to gcc -O3's bounds check too). */
					bool zero = (h.gpr[s & 15] & (bits == 64 ? ~0ull : (1ull << bits) - 1)) == 0;
					compare(code, len, &h, ZF, zero ? (int)d : -1);
				}
			}
		}
}

/* ---- exchange and compare-exchange (register forms) ------------------------------------- */

static void xadd_xchg_cmpxchg_registers_match_host(void **state)
{
	(void)state;
	const ZydisMnemonic mns[] = { ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_XCHG,
				      ZYDIS_MNEMONIC_CMPXCHG };
	for (unsigned k = 0; k < 3; k++)
		for (unsigned w = 0; w < 4; w++) {
			unsigned bits = widths[w];
			for (unsigned i = 0; i < ITER; i++) {
				struct host_regs h;
				uint8_t code[15];
				unsigned d = rand_reg(bits), s = rand_reg(bits);
				size_t len = tenc(code, mns[k], 2,
						  (struct tenc_op[]){ R(gpr(d, bits)), R(gpr(s, bits)) });
				if (len == 0)
					continue;
				random_regs(&h);
				set_reg(&h, d, bits, operand(bits, i % 11));
				set_reg(&h, s, bits, operand(bits, 10));
				if (k == 2 && i % 2)	/* make the comparison succeed half the time */
					set_reg(&h, X86EMU_RAX, bits, h.gpr[d < 16 ? d : d - 16] >> (d >= 16 ? 8 : 0));
				/* XADD/CMPXCHG: all six flags defined; XCHG: none affected. */
				compare(code, len, &h, ALL6, -1);
			}
		}
}

/*
 * PAUSE is F3 90 with no REX.B: once REX.B makes the 90 name R8 the opcode
 * is XCHG r8, rAX again, and the F3 is an ignored REP prefix.  So F3 REX.B 90
 * swaps R8 with rAX at the operand size (a 32-bit swap zero-extends both,
 * 66 makes it a word swap), while F3 90 and F3 REX.W 90 change no register.
 */
static void f3_rex_b_90_is_xchg_with_r8_not_pause(void **state)
{
	(void)state;
	static const uint8_t codes[][5] = {
		{ 3, 0xf3, 0x49, 0x90 }, { 3, 0xf3, 0x41, 0x90 }, { 4, 0x66, 0xf3, 0x41, 0x90 },
		{ 4, 0xf3, 0x66, 0x49, 0x90 }, { 4, 0xf3, 0xf3, 0x41, 0x90 },
		{ 2, 0xf3, 0x90 }, { 3, 0xf3, 0x48, 0x90 },
	};
	for (unsigned k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
		for (unsigned i = 0; i < 8; i++) {
			struct host_regs h;
			random_regs(&h);
			compare(codes[k] + 1, codes[k][0], &h, ~0ull, -1);
		}
	/* Not a host quirk: the exchange itself. */
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.gpr[X86EMU_RAX] = 0x1111;
	g_m.cpu.gpr[X86EMU_R8] = 0x8888;
	tm_load(&g_m, TM_CODE, codes[0] + 1, codes[0][0]);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 3);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x8888);
	assert_int_equal(g_m.cpu.gpr[X86EMU_R8], 0x1111);
}

/* ---- setcc, cmovcc, conversions, flag instructions ----------------------------------------- */

static void setcc_and_cmovcc_match_host(void **state)
{
	(void)state;
	for (unsigned cc = 0; cc < 16; cc++) {
		ZydisMnemonic set = ZYDIS_MNEMONIC_SETO, cmov = ZYDIS_MNEMONIC_CMOVO;
		/* Zydis lists the sixteen conditions in opcode order for both. */
		const ZydisMnemonic sets[16] = {
			ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB,
			ZYDIS_MNEMONIC_SETNB, ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ,
			ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE, ZYDIS_MNEMONIC_SETS,
			ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
			ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE,
			ZYDIS_MNEMONIC_SETNLE };
		const ZydisMnemonic cmovs[16] = {
			ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB,
			ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ,
			ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVS,
			ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP,
			ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE,
			ZYDIS_MNEMONIC_CMOVNLE };
		set = sets[cc];
		cmov = cmovs[cc];
		for (unsigned i = 0; i < 64; i++) {
			struct host_regs h;
			uint8_t code[15];
			unsigned bits = widths[1 + i % 3];
			unsigned d = rand_reg(8), s = rand_reg(bits), d2 = rand_reg(bits);
			size_t len = tenc(code, set, 1, (struct tenc_op[]){ R(gpr(d, 8)) });
			random_regs(&h);
			/* Walk all 64 combinations of the six status flags. */
			h.rflags = X86EMU_FLAG_FIXED | X86EMU_FLAG_IF |
				   ((i & 1) ? CF : 0) | ((i & 2) ? PF : 0) | ((i & 4) ? AF : 0) |
				   ((i & 8) ? ZF : 0) | ((i & 16) ? SF : 0) | ((i & 32) ? OF : 0);
			if (len)
				compare(code, len, &h, ALL6, -1);
			/* CMOV, including the 32-bit form that zero-extends even when false. */
			len = tenc(code, cmov, 2, (struct tenc_op[]){ R(gpr(d2, bits)), R(gpr(s, bits)) });
			if (len)
				compare(code, len, &h, ALL6, -1);
		}
	}
}

static void conversions_and_flag_instructions_match_host(void **state)
{
	(void)state;
	const ZydisMnemonic mns[] = {
		ZYDIS_MNEMONIC_CBW, ZYDIS_MNEMONIC_CWDE, ZYDIS_MNEMONIC_CDQE, ZYDIS_MNEMONIC_CWD,
		ZYDIS_MNEMONIC_CDQ, ZYDIS_MNEMONIC_CQO, ZYDIS_MNEMONIC_LAHF, ZYDIS_MNEMONIC_SAHF,
		ZYDIS_MNEMONIC_CLC, ZYDIS_MNEMONIC_STC, ZYDIS_MNEMONIC_CMC };
	for (unsigned k = 0; k < sizeof(mns) / sizeof(mns[0]); k++)
		for (unsigned i = 0; i < 64; i++) {
			struct host_regs h;
			uint8_t code[15];
			size_t len = tenc(code, mns[k], 0, NULL);
			assert_true(len > 0);
			random_regs(&h);
			compare(code, len, &h, ALL6, -1);
		}
	/* MOVZX/MOVSX/MOVSXD from every source width. */
	for (unsigned i = 0; i < ITER; i++) {
		struct host_regs h;
		uint8_t code[15];
		unsigned sb = widths[i % 3], db = widths[1 + i % 3 + (trand() % (3 - i % 3))];
		if (db <= sb)
			db = sb * 2;
		unsigned d = rand_reg(db), s = rand_reg(sb);
		ZydisMnemonic mn = (i / 3) % 2 ? ZYDIS_MNEMONIC_MOVSX : ZYDIS_MNEMONIC_MOVZX;
		if (sb == 32)
			mn = ZYDIS_MNEMONIC_MOVSXD;
		size_t len = tenc(code, mn, 2, (struct tenc_op[]){ R(gpr(d, db)), R(gpr(s, sb)) });
		if (len == 0)
			continue;
		random_regs(&h);
		compare(code, len, &h, ALL6, -1);
	}
}

/* ---- memory forms, plain and LOCK-prefixed --------------------------------------------- */

static uint8_t g_host_buf[4096] __attribute__((aligned(64)));

/*
 * The same read-modify-write on memory: natively through RBX pointing into
 * a host buffer, in the interpreter through RBX pointing at TM_DATA, both
 * buffers holding the same bytes.  Compares registers, flags and memory.
 */
static void compare_mem(const uint8_t *code, size_t len, struct host_regs *h, uint64_t mask)
{
	struct host_regs hn = *h;
	uint64_t mid = 2048;

	for (unsigned i = 0; i < sizeof(g_host_buf); i++)
		g_host_buf[i] = (uint8_t)trand();
	tm_load(&g_m, TM_DATA, g_host_buf, sizeof(g_host_buf));
	hn.gpr[X86EMU_RBX] = (uint64_t)(uintptr_t)(g_host_buf + mid);
	assert_int_equal(host_exec(code, len, &hn), 0);

	struct host_regs hi = *h;
	hi.gpr[X86EMU_RBX] = TM_DATA + mid;
	x86emu_cpu_init_long_mode(&g_m.cpu);
	g_m.cpu.idtr = (struct x86emu_dtr){ .base = TM_IDT, .limit = 4095 };
	memcpy(g_m.cpu.gpr, hi.gpr, sizeof(hi.gpr));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	g_m.cpu.rflags = hi.rflags;
	g_m.cpu.rip = TM_CODE;
	tm_load(&g_m, TM_CODE, code, len);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, TM_CODE + len);
	g_cases++;
	for (int r = 0; r < 16; r++)
		if (r != X86EMU_RSP && r != X86EMU_RBX)
			assert_int_equal(hn.gpr[r], g_m.cpu.gpr[r]);
	assert_int_equal(hn.rflags & mask, g_m.cpu.rflags & mask);
	assert_memory_equal(g_host_buf, g_m.mem + TM_DATA, sizeof(g_host_buf));
}

static void memory_read_modify_write_plain_and_locked_match_host(void **state)
{
	(void)state;
	const struct { ZydisMnemonic mn; unsigned nops; uint64_t mask; } ops[] = {
		{ ZYDIS_MNEMONIC_ADD, 2, ALL6 }, { ZYDIS_MNEMONIC_ADC, 2, ALL6 },
		{ ZYDIS_MNEMONIC_SUB, 2, ALL6 }, { ZYDIS_MNEMONIC_SBB, 2, ALL6 },
		{ ZYDIS_MNEMONIC_AND, 2, ALL6 & ~AF }, { ZYDIS_MNEMONIC_OR, 2, ALL6 & ~AF },
		{ ZYDIS_MNEMONIC_XOR, 2, ALL6 & ~AF }, { ZYDIS_MNEMONIC_INC, 1, ALL6 },
		{ ZYDIS_MNEMONIC_DEC, 1, ALL6 }, { ZYDIS_MNEMONIC_NEG, 1, ALL6 },
		{ ZYDIS_MNEMONIC_NOT, 1, ALL6 }, { ZYDIS_MNEMONIC_XADD, 2, ALL6 },
		{ ZYDIS_MNEMONIC_XCHG, 2, ALL6 }, { ZYDIS_MNEMONIC_CMPXCHG, 2, ALL6 },
		{ ZYDIS_MNEMONIC_BTS, 2, CF | ZF }, { ZYDIS_MNEMONIC_BTR, 2, CF | ZF },
		{ ZYDIS_MNEMONIC_BTC, 2, CF | ZF }, { ZYDIS_MNEMONIC_BT, 2, CF | ZF },
	};
	for (unsigned k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		for (unsigned w = 0; w < 4; w++)
			for (unsigned i = 0; i < 48; i++) {
				unsigned bits = widths[w];
				bool bitop = ops[k].mn >= ZYDIS_MNEMONIC_BT && ops[k].mn <= ZYDIS_MNEMONIC_BTS;
				if (bitop && bits == 8)
					continue;
				struct host_regs h;
				uint8_t code[15];
				unsigned s = rand_reg(bits);
				while (s == X86EMU_RBX || s == X86EMU_RBX + 16)
					s = rand_reg(bits);
				int disp = (int)(trand() % 64) - 32;
				uint64_t pfx = (i % 2 && ops[k].mn != ZYDIS_MNEMONIC_BT) ? ZYDIS_ATTRIB_HAS_LOCK : 0;
				size_t len = tenc_prefixed(code, ops[k].mn, pfx, ops[k].nops,
							   (struct tenc_op[]){ M(ZYDIS_REGISTER_RBX, disp, bits / 8),
									       R(gpr(s, bits)) });
				if (len == 0)
					continue;
				random_regs(&h);
				/* BT* with a register offset may address far from RBX: keep it in the buffer. */
				if (bitop)
					set_reg(&h, s, bits, (uint64_t)(int64_t)((int)(trand() % 8000) - 4000));
				compare_mem(code, len, &h, ops[k].mask);
			}
}

static void report_count(void **state)
{
	(void)state;
	print_message("x86emu alu: %lu host-compared cases\n", g_cases);
}

int main(void)
{
	tseed(0x5eed);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_sub_family_match_host),
		cmocka_unit_test(logic_family_matches_host_except_undefined_af),
		cmocka_unit_test(unary_ops_match_host),
		cmocka_unit_test(shifts_match_host),
		cmocka_unit_test(rotates_match_host),
		cmocka_unit_test(double_shifts_match_host),
		cmocka_unit_test(mul_div_one_operand_match_host),
		cmocka_unit_test(imul_two_and_three_operand_match_host),
		cmocka_unit_test(bit_test_family_matches_host),
		cmocka_unit_test(bit_scans_and_popcnt_match_host),
		cmocka_unit_test(xadd_xchg_cmpxchg_registers_match_host),
		cmocka_unit_test(f3_rex_b_90_is_xchg_with_r8_not_pause),
		cmocka_unit_test(setcc_and_cmovcc_match_host),
		cmocka_unit_test(conversions_and_flag_instructions_match_host),
		cmocka_unit_test(memory_read_modify_write_plain_and_locked_match_host),
		cmocka_unit_test(report_count),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
