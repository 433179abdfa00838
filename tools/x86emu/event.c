/*
 * Events: exception and interrupt delivery through the 64-bit IDT, the
 * double-fault rules, and the descriptor-table plumbing they share with
 * IRET, far RET, MOV Sreg and LTR (system.c).
 *
 * References: SDM vol. 3A 6.12-6.15 (delivery), 6.14 (64-bit mode: 16-byte
 * gates, IST, 16-byte stack alignment, SS:RSP always pushed), 7.7 (64-bit
 * TSS), 3.4.5 (segment descriptors).
 */
#include <string.h>

#include "internal.h"


/* ---- descriptors ------------------------------------------------------------ */

void x86emu__seg_from_desc(struct x86emu_segment *s, uint16_t selector, uint64_t d)
{
	s->selector = selector;
	s->base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
	s->limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16));
	/* Access rights: descriptor bits 40-47 -> attr 0-7, bits 52-55 -> attr 12-15. */
	s->attr = (uint16_t)(((d >> 40) & 0xff) | (((d >> 52) & 0xf) << 12));
	if (s->attr & (1u << 15))	/* G: limit in 4 KiB units */
		s->limit = (s->limit << 12) | 0xfff;
}

int x86emu__read_descriptor(struct x86emu_ctx *c, uint16_t selector, bool ext, uint64_t *desc)
{
	/* The error code of a bad selector is the selector with RPL replaced by EXT (SDM 6.13). */
	uint32_t ec = (selector & 0xfffc) | (ext ? 1 : 0);
	const struct x86emu_dtr gdt = c->cpu.gdtr;
	uint64_t base = gdt.base, limit = gdt.limit;
	uint8_t buf[8];
	int rc;

	if (selector & 4) {	/* TI: the LDT */
		if (!(c->cpu.ldtr.attr & X86EMU_SEG_ATTR_P))
			return raise_gp(c, ec);
		base = c->cpu.ldtr.base;
		limit = c->cpu.ldtr.limit;
	}
	if ((uint64_t)(selector & 0xfff8) + 7 > limit)
		return raise_gp(c, ec);
	rc = x86emu__mem_read(c, base + (selector & 0xfff8), 8, buf,
			      X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
	if (rc != XS_OK)
		return rc;
	*desc = le64(buf);
	return XS_OK;
}

/* Is the descriptor a code segment? (S=1, type bit 3) */
static inline bool desc_is_code(uint64_t d)
{
	return ((d >> 44) & 1) && ((d >> 43) & 1);
}

static inline unsigned desc_dpl(uint64_t d)
{
	return (unsigned)((d >> 45) & 3);
}

static inline bool desc_present(uint64_t d)
{
	return (d >> 47) & 1;
}

/*
 * The checks on an event handler's CS (SDM INT n, 64-bit gate; SDM 6.12.1.1),
 * in the SDM's order: not a code segment, or DPL > CPL, is #GP(selector | EXT),
 * and only a descriptor that passes both is checked for presence
 * (#NP(selector | EXT)).  The caller adds the L/D check; a 32-bit CS that
 * passes is loaded and x86emu_step() then reports X86EMU_EXIT_BAD_MODE.
 */
int x86emu__check_code_desc(struct x86emu_ctx *c, uint16_t sel, uint64_t d, bool ext)
{
	uint32_t ec = (sel & 0xfffc) | (ext ? 1 : 0);

	if (!desc_is_code(d) || desc_dpl(d) > c->cpu.cpl)
		return raise_gp(c, ec);
	if (!desc_present(d))
		return raise_fault(c, X86EMU_EXC_NP, true, ec);
	return XS_OK;
}

/* ---- the TSS ------------------------------------------------------------------ */

/* Read RSPn (n=0..2) or ISTn (n=1..7, pass 3+n) from the 64-bit TSS (SDM 7.7). */
int x86emu__tss_stack(struct x86emu_ctx *c, unsigned slot, bool ext, uint64_t *rsp)
{
	/* RSP0 at 4, RSP1 at 12, RSP2 at 20, IST1 at 36 ... IST7 at 84. */
	unsigned off = slot < 3 ? 4 + 8 * slot : 36 + 8 * (slot - 4);
	uint8_t buf[8];
	int rc;

	if (!(c->cpu.tr.attr & X86EMU_SEG_ATTR_P) || off + 7 > c->cpu.tr.limit)
		return raise_fault(c, X86EMU_EXC_TS, true,
				   (c->cpu.tr.selector & 0xfffc) | (ext ? 1 : 0));
	rc = x86emu__mem_read(c, c->cpu.tr.base + off, 8, buf,
			      X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
	if (rc != XS_OK)
		return rc;
	*rsp = le64(buf);
	return XS_OK;
}

/* ---- delivery ------------------------------------------------------------------- */

int x86emu__deliver(struct x86emu_ctx *c, uint8_t vector, bool has_ec, uint32_t ec,
		    enum x86emu_event_source src, uint64_t return_rip)
{
	struct x86emu_cpu *cpu = &c->cpu;
	bool ext = src != EVENT_SOFTWARE;
	uint32_t idt_ec = (uint32_t)vector * 8 + 2 + (ext ? 1 : 0);	/* IDT bit set */
	uint8_t gate[16];
	int rc;

	/* SDM 6.14.1: 64-bit gates are 16 bytes; the whole gate must be inside the limit. */
	if ((uint64_t)vector * 16 + 15 > cpu->idtr.limit)
		return raise_gp(c, idt_ec);
	rc = x86emu__mem_read(c, cpu->idtr.base + (uint64_t)vector * 16, 16, gate,
			      X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
	if (rc != XS_OK)
		return rc;
	uint64_t lo = le64(gate), hi = le64(gate + 8);
	unsigned type = (unsigned)((lo >> 40) & 0xf), dpl = (unsigned)((lo >> 45) & 3);
	unsigned ist = (unsigned)((lo >> 32) & 7);
	uint16_t sel = (uint16_t)(lo >> 16);
	uint64_t target = (lo & 0xffff) | (((lo >> 48) & 0xffff) << 16) | (hi << 32);

	/* Only 64-bit interrupt (0xE) and trap (0xF) gates exist in long mode. */
	if (((lo >> 44) & 1) || (type != 0xe && type != 0xf))
		return raise_gp(c, idt_ec);
	/* INT n/INT3 may not reach a gate more privileged than the caller (SDM 6.12.1.1). */
	if (src == EVENT_SOFTWARE && dpl < cpu->cpl)
		return raise_gp(c, idt_ec);
	if (!((lo >> 47) & 1))
		return raise_fault(c, X86EMU_EXC_NP, true, idt_ec);

	/* The handler's code segment. */
	uint64_t cs_desc;
	if ((sel & 0xfffc) == 0)
		return raise_gp(c, ext ? 1 : 0);
	rc = x86emu__read_descriptor(c, sel, ext, &cs_desc);
	if (rc != XS_OK)
		return rc;
	rc = x86emu__check_code_desc(c, sel, cs_desc, ext);
	if (rc != XS_OK)
		return rc;
	bool conforming = (cs_desc >> 42) & 1;
	unsigned cs_dpl = desc_dpl(cs_desc);
	/* 64-bit handler required: L=1, D=0 (DPL > CPL was refused above). */
	if (!((cs_desc >> 53) & 1) || ((cs_desc >> 54) & 1))
		return raise_gp(c, (sel & 0xfffc) | (ext ? 1 : 0));
	unsigned new_cpl = conforming ? cpu->cpl : cs_dpl;

	/* The stack: IST if the gate names one, else RSPn on a privilege change. */
	uint64_t rsp = cpu->gpr[X86EMU_RSP];
	rc = XS_OK;
	if (ist) {
		rc = x86emu__tss_stack(c, 3 + ist, ext, &rsp);
	} else if (new_cpl < cpu->cpl) {
		rc = x86emu__tss_stack(c, new_cpl, ext, &rsp);
	}
	if (rc != XS_OK)
		return rc;
	rsp &= ~15ull;	/* SDM 6.14.2: aligned to 16 bytes before the pushes */
	/*
	 * SDM INT n (64-bit gate): a non-canonical stack address is #SS with
	 * the error code EXT alone, whether the stack is the current one, RSPn
	 * or ISTn.  Checked: the RSP after alignment and the frame's lowest
	 * byte (40 bytes, or 48 with an error code), so a frame that would
	 * cross into the non-canonical hole faults before anything is written.
	 */
	unsigned n = has_ec ? 6 : 5;
	if (!is_canonical(rsp) || !is_canonical(rsp - 8ull * n))
		return raise_fault(c, X86EMU_EXC_SS, true, ext ? 1 : 0);
	if (!is_canonical(target))
		return raise_gp(c, ext ? 1 : 0);

	/* The frame: SS, RSP, RFLAGS, CS, RIP, [error code], highest address first. */
	uint64_t image = cpu->rflags;
	/* SDM 17.3.1.1: faults push RFLAGS with RF set so the restart skips instruction breakpoints. */
	if (src == EVENT_EXCEPTION)
		image |= X86EMU_FLAG_RF;
	/* INT n and INT3 push RF=0, even right after an IRETQ that set it (as the host does). */
	if (src == EVENT_SOFTWARE)
		image &= ~X86EMU_FLAG_RF;
	uint64_t frame[6] = { cpu->seg[X86EMU_SS].selector, cpu->gpr[X86EMU_RSP], image,
			      cpu->seg[X86EMU_CS].selector, return_rip, ec };
	uint8_t bytes[48];
	for (unsigned i = 0; i < n; i++)
		for (unsigned b = 0; b < 8; b++)
			bytes[8 * (n - 1 - i) + b] = (uint8_t)(frame[i] >> (8 * b));
	/*
	 * Pushes onto a more privileged stack are implicit supervisor
	 * accesses; on the same level they are ordinary accesses at that CPL.
	 */
	bool priv_change = new_cpl < cpu->cpl;
	rc = x86emu__mem_write(c, rsp - 8ull * n, 8 * n, bytes,
			       priv_change ? X86EMU_ACCESS_IMPLICIT_SUPERVISOR
					   : X86EMU_ACCESS_DATA);
	if (rc != XS_OK)
		return rc;

	/* Commit the transfer on the working copy. */
	x86emu__seg_from_desc(&cpu->seg[X86EMU_CS], (uint16_t)((sel & 0xfffc) | new_cpl), cs_desc);
	if (priv_change) {
		/* SDM 6.14.4: on a privilege change SS is loaded with NULL, RPL = new CPL. */
		memset(&cpu->seg[X86EMU_SS], 0, sizeof(cpu->seg[X86EMU_SS]));
		cpu->seg[X86EMU_SS].selector = (uint16_t)new_cpl;
		cpu->seg[X86EMU_SS].attr = (uint16_t)(new_cpl << 5);
	}
	cpu->cpl = (uint8_t)new_cpl;
	cpu->gpr[X86EMU_RSP] = rsp - 8ull * n;
	cpu->rip = target;
	cpu->rflags &= ~(X86EMU_FLAG_TF | X86EMU_FLAG_NT | X86EMU_FLAG_RF | X86EMU_FLAG_VM);
	if (type == 0xe)	/* an interrupt gate also masks interrupts */
		cpu->rflags &= ~X86EMU_FLAG_IF;
	cpu->halted = false;
	return XS_OK;
}

/* SDM 6.15 table 6-4: which exceptions are "contributory". */
static inline bool contributory(uint8_t v)
{
	return v == X86EMU_EXC_DE || v == X86EMU_EXC_TS || v == X86EMU_EXC_NP || v == X86EMU_EXC_SS ||
	       v == X86EMU_EXC_GP;
}

int x86emu__raise(struct x86emu_ctx *c, const struct x86emu_fault *f,
		  enum x86emu_event_source src, uint64_t return_rip)
{
	struct x86emu_fault cur = *f;
	/* CR2 is loaded as each #PF is recognized, one raised while delivering
	 * another event included, and keeps its value through the rounds: a
	 * #DF handler sees the address of the last #PF (the second one when a
	 * #PF's delivery page-faults, the first when it raised #GP). */
	uint64_t cr2 = c->arch->cr2;

	/* Three rounds at most: the event, a second fault (or #DF), then shutdown. */
	for (unsigned round = 0; round < 4; round++) {
		int rc;

		c->cpu = *c->arch;
		c->cpu.intr_shadow = false;
		if (src == EVENT_EXCEPTION && cur.vector == X86EMU_EXC_PF)
			cr2 = cur.cr2;
		c->cpu.cr2 = cr2;
		rc = x86emu__deliver(c, cur.vector, cur.has_error_code, cur.error_code, src,
				     return_rip);
		if (rc == XS_OK) {
			if (src == EVENT_EXCEPTION || src == EVENT_TRAP) {
				c->cpu.last_exception = (struct x86emu_event){
					.valid = true, .vector = cur.vector,
					.has_error_code = cur.has_error_code,
					.error_code = cur.error_code, .cr2 = cur.cr2,
				};
			}
			*c->arch = c->cpu;
			return XS_OK;
		}
		if (rc != XS_FAULT)
			return rc;

		/* Delivering `cur` raised c->fault: decide between serial, #DF and shutdown. */
		struct x86emu_fault second = c->fault;
		if (second.vector == X86EMU_EXC_PF)
			cr2 = second.cr2;
		if (src == EVENT_EXCEPTION && cur.vector == X86EMU_EXC_DF)
			return XS_SHUTDOWN;	/* a fault while delivering #DF: triple fault */
		bool first_pf = src == EVENT_EXCEPTION && cur.vector == X86EMU_EXC_PF;
		bool first_contrib = src == EVENT_EXCEPTION && contributory(cur.vector);
		if ((first_contrib && contributory(second.vector)) ||
		    (first_pf && (contributory(second.vector) || second.vector == X86EMU_EXC_PF))) {
			cur = (struct x86emu_fault){ .vector = X86EMU_EXC_DF, .has_error_code = true };
		} else {
			cur = second;	/* benign: handle the second exception serially */
		}
		src = EVENT_EXCEPTION;
		return_rip = c->arch->rip;
	}
	return XS_SHUTDOWN;
}
