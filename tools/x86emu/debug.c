/*
 * Debug-register breakpoints (SDM vol. 3 chapter 17.2-17.3): DR0-DR3 hold
 * linear addresses (I/O ports for I/O breakpoints), DR7 enables them (L0-3
 * and G0-3 alike: there is no task switch to clear the local ones) and
 * gives each a kind and a length:
 *
 *   R/W 00  instruction execution: a fault before the instruction at that
 *           address runs, unless RFLAGS.RF is set (LEN should be 00; the
 *           address is compared as a 1-byte range whatever LEN says)
 *   R/W 01  data writes                       } a trap after the
 *   R/W 11  data reads and writes (not fetches) } instruction, or after
 *   R/W 10  I/O reads and writes, with CR4.DE   } the REP iteration
 *           (without it the kind is undefined: no breakpoint)
 *
 *   LEN 00 = 1 byte, 01 = 2, 11 = 4, 10 = 8; the address's low bits under
 *   the length are ignored, so the watched range is aligned.
 *
 * An access hits a breakpoint when any of its bytes is in the range.  The
 * interpreter records the breakpoints hit by accesses that completed
 * (ctx.db_hits); the step that completes the instruction owes the #DB
 * trap, delivered as the next step with DR6.B0-B3 naming them.  Data
 * breakpoints watch explicit operands and the stack, not the implicit
 * supervisor accesses (descriptor tables, TSS) nor instruction fetches.
 */
#include "internal.h"

/* Bytes watched for a LEN field. */
static const unsigned bp_len[4] = { 1, 2, 8, 4 };

/*
 * B0-B3 of the enabled breakpoints of a kind in `kinds` (a bit per R/W
 * value) whose range meets [addr, addr + size).
 */
static unsigned bp_match(const struct x86emu_cpu *cpu, uint64_t addr, uint64_t size,
			 unsigned kinds)
{
	uint64_t dr7 = cpu->dr[7];
	unsigned hits = 0;

	if (!(dr7 & 0xff))
		return 0;
	for (unsigned i = 0; i < 4; i++) {
		if (!((dr7 >> (2 * i)) & 3))
			continue;
		unsigned rw = (unsigned)(dr7 >> (16 + 4 * i)) & 3;
		if (!((kinds >> rw) & 1))
			continue;
		uint64_t len = rw == 0 ? 1 : bp_len[(dr7 >> (18 + 4 * i)) & 3];
		uint64_t start = cpu->dr[i] & ~(len - 1);
		/* The ranges meet (an access may wrap at the top of the space). */
		if (addr - start < len || start - addr < size)
			hits |= 1u << i;
	}
	return hits;
}

void x86emu__data_breakpoints(struct x86emu_ctx *c, uint64_t la, unsigned size, bool write)
{
	c->db_hits |= (uint8_t)bp_match(&c->cpu, la, size, write ? 0xa : 0x8);
}

void x86emu__io_breakpoints(struct x86emu_ctx *c, uint16_t port, unsigned size)
{
	if (c->cpu.cr4 & X86EMU_CR4_DE)
		c->db_hits |= (uint8_t)bp_match(&c->cpu, port, size, 0x4);
}

unsigned x86emu__insn_breakpoints(const struct x86emu_cpu *cpu)
{
	if (cpu->rflags & X86EMU_FLAG_RF)
		return 0;
	return bp_match(cpu, cpu->rip, 1, 0x1);
}

void x86emu__db_delivered(struct x86emu_cpu *cpu, unsigned status)
{
	/* B0-B3 name only this exception's breakpoints; BD, BS and BT are
	 * added (the handler clears DR6 itself). */
	cpu->dr[6] = (cpu->dr[6] & ~0xfull) | status;
	if (status & X86EMU_DR6_BD)
		cpu->dr[7] &= ~X86EMU_DR7_GD;	/* so the handler may use the registers */
}
