/*
 * Segments and descriptor tables: MOV/POP to a segment register, LSS/LFS/
 * LGS, far JMP/CALL through memory, far RET and IRETQ (which load CS and
 * SS), and LGDT/LIDT/SGDT/SIDT/LTR/STR/LLDT/SLDT.  Long mode only: bases
 * and limits of CS/DS/ES/SS are ignored for addressing (SDM 3.2.4), but the
 * privilege checks of SDM vol. 2 (MOV, JMP, CALL, RET, IRET, LTR) are made.
 */
#include <string.h>

#include "internal.h"

static inline int require_cpl0(struct x86emu_ctx *c)
{
	return c->cpu.cpl == 0 ? XS_OK : raise_gp(c, 0);
}

static inline unsigned iopl(const struct x86emu_cpu *cpu)
{
	return (unsigned)((cpu->rflags >> 12) & 3);
}

/* ---- segments ------------------------------------------------------------------------ */

int x86emu__load_data_segment(struct x86emu_ctx *c, unsigned sreg, uint16_t sel)
{
	struct x86emu_cpu *cpu = &c->cpu;
	struct x86emu_segment s = { .selector = sel };
	uint32_t ec = sel & 0xfffc;
	unsigned rpl = sel & 3;
	uint64_t d;
	int rc;

	if ((sel & 0xfffc) == 0) {
		/* SDM MOV: a null SS is #GP(0) at CPL 3; elsewhere null loads an unusable segment. */
		if (sreg == X86EMU_SS && (cpu->cpl == 3 || rpl != cpu->cpl))
			return raise_gp(c, 0);
		cpu->seg[sreg] = s;
		if (sreg == X86EMU_SS) {
			cpu->seg[sreg].attr = (uint16_t)(cpu->cpl << 5);
			cpu->intr_shadow = true;
			c->mov_ss = true;
		}
		return XS_OK;
	}
	rc = x86emu__read_descriptor(c, sel, false, &d);
	if (rc != XS_OK)
		return rc;
	bool is_sys = !((d >> 44) & 1), code = (d >> 43) & 1;
	bool writable = !code && ((d >> 41) & 1), readable = !code || ((d >> 41) & 1);
	bool conforming = code && ((d >> 42) & 1);
	unsigned dpl = (unsigned)((d >> 45) & 3);

	if (sreg == X86EMU_SS) {
		if (is_sys || !writable || rpl != cpu->cpl || dpl != cpu->cpl)
			return raise_gp(c, ec);
		if (!((d >> 47) & 1))
			return raise_fault(c, X86EMU_EXC_SS, true, ec);
		/* SDM 6.8.3: MOV SS holds off interrupts, and debug traps, for one instruction. */
		cpu->intr_shadow = true;
		c->mov_ss = true;
	} else {
		if (is_sys || !readable)
			return raise_gp(c, ec);
		if (!conforming && (rpl > dpl || cpu->cpl > dpl))
			return raise_gp(c, ec);
		if (!((d >> 47) & 1))
			return raise_fault(c, X86EMU_EXC_NP, true, ec);
	}
	x86emu__seg_from_desc(&cpu->seg[sreg], sel, d);
	/* The descriptor's accessed bit is not written back (not modelled). */
	return XS_OK;
}

/*
 * Far return and IRETQ (SDM RET, IRET "IA-32e mode"): pop RIP, CS, [RFLAGS],
 * then RSP and SS (IRETQ always; far RET only to an outer level), check the
 * selectors, and move to the new privilege level.  Every pop is of the
 * operand size: quadwords, doublewords, or words (66 prefix), whose IP
 * and SP are zero-extended into RIP and RSP; a 16-bit IRET's FLAGS image
 * changes only the low 16 bits of RFLAGS (so not RF, AC, VIF, VIP, ID).
 */
int x86emu__far_return(struct x86emu_ctx *c, bool iret)
{
	struct x86emu_cpu *cpu = &c->cpu;
	unsigned sz = c->insn.operand_width / 8;
	uint64_t rsp = cpu->gpr[X86EMU_RSP];
	uint64_t rip, cs, fl = 0, new_rsp = 0, ss = 0;
	uint64_t imm = (!iret && c->insn.operand_count_visible) ? c->ops[0].imm.value.u & 0xffff : 0;
	int rc;

	if (sz != 8 && sz != 4 && sz != 2)
		return raise_ud(c);
	if (iret && (cpu->rflags & X86EMU_FLAG_NT))
		return raise_gp(c, 0);	/* task return does not exist in IA-32e mode */
	rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, rsp, sz, &rip);
	if (rc == XS_OK)
		rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, rsp + sz, sz, &cs);
	if (rc == XS_OK && iret)
		rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, rsp + 2 * sz, sz, &fl);
	if (rc != XS_OK)
		return rc;
	uint16_t csel = (uint16_t)cs;
	unsigned new_cpl = csel & 3;
	bool outer = new_cpl > cpu->cpl;
	uint64_t after = rsp + (iret ? 3 : 2) * sz + imm;
	if (iret || outer) {
		rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, after, sz, &new_rsp);
		if (rc == XS_OK)
			rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, after + sz, sz, &ss);
		if (rc != XS_OK)
			return rc;
	}

	/* The code segment (SDM IRET: "return-to-outer/same privilege level" checks). */
	uint64_t cd;
	if ((csel & 0xfffc) == 0)
		return raise_gp(c, 0);
	if (new_cpl < cpu->cpl)
		return raise_gp(c, csel & 0xfffc);
	rc = x86emu__read_descriptor(c, csel, false, &cd);
	if (rc != XS_OK)
		return rc;
	if (!((cd >> 44) & 1) || !((cd >> 43) & 1))
		return raise_gp(c, csel & 0xfffc);
	/* SDM RET (IA-32e mode): a code segment with both L and D set is #GP(selector). */
	if (!iret && ((cd >> 53) & 1) && ((cd >> 54) & 1))
		return raise_gp(c, csel & 0xfffc);
	unsigned cdpl = (unsigned)((cd >> 45) & 3);
	bool conforming = (cd >> 42) & 1;
	if (conforming ? cdpl > new_cpl : cdpl != new_cpl)
		return raise_gp(c, csel & 0xfffc);
	if (!((cd >> 47) & 1))
		return raise_fault(c, X86EMU_EXC_NP, true, csel & 0xfffc);
	bool cs64 = (cd >> 53) & 1;

	/* The stack segment, when one is popped. */
	struct x86emu_segment ssreg = cpu->seg[X86EMU_SS];
	uint16_t ssel = (uint16_t)ss;
	if (iret || outer) {
		if ((ssel & 0xfffc) == 0) {
			/* A null SS is allowed only for a 64-bit return to CPL < 3. */
			if (new_cpl == 3 || !cs64 || (ssel & 3) != new_cpl)
				return raise_gp(c, 0);
			memset(&ssreg, 0, sizeof(ssreg));
			ssreg.selector = ssel;
			ssreg.attr = (uint16_t)(new_cpl << 5);
		} else {
			uint64_t sd;
			if ((ssel & 3) != new_cpl)
				return raise_gp(c, ssel & 0xfffc);
			rc = x86emu__read_descriptor(c, ssel, false, &sd);
			if (rc != XS_OK)
				return rc;
			bool writable_data = ((sd >> 44) & 1) && !((sd >> 43) & 1) && ((sd >> 41) & 1);
			if (!writable_data || ((sd >> 45) & 3) != new_cpl)
				return raise_gp(c, ssel & 0xfffc);
			if (!((sd >> 47) & 1))
				return raise_fault(c, X86EMU_EXC_SS, true, ssel & 0xfffc);
			x86emu__seg_from_desc(&ssreg, ssel, sd);
		}
	}
	/* The popped offset, zero-extended (the reads above took sz bytes). */
	rip &= width_mask(sz * 8);
	if (!is_canonical(rip))
		return raise_gp(c, 0);

	/* All checks passed: update the working copy. */
	if (iret) {
		/* Flags the old CPL may change (SDM IRET, POPF rules). */
		uint64_t can = X86EMU_FLAGS_ARITH | X86EMU_FLAG_TF | X86EMU_FLAG_DF |
			       X86EMU_FLAG_NT | X86EMU_FLAG_RF | X86EMU_FLAG_AC | X86EMU_FLAG_ID;
		if (cpu->cpl <= iopl(cpu))
			can |= X86EMU_FLAG_IF;
		/* SDM IRET: at CPL 0 the image also sets IOPL, and VIF and VIP. */
		if (cpu->cpl == 0)
			can |= X86EMU_FLAG_IOPL | X86EMU_FLAG_VIF | X86EMU_FLAG_VIP;
		if (sz == 4)
			can &= 0xffffffffull;
		else if (sz == 2)
			can &= 0xffffull;
		cpu->rflags = (cpu->rflags & ~can) | (fl & can) | X86EMU_FLAG_FIXED;
		/* RF from a 32- or 64-bit image holds for one instruction; a
		 * 16-bit image has none, so RF is cleared as after any other. */
		c->keep_rf = sz != 2;
	}
	x86emu__seg_from_desc(&cpu->seg[X86EMU_CS], csel, cd);
	if (iret || outer) {
		cpu->seg[X86EMU_SS] = ssreg;
		cpu->gpr[X86EMU_RSP] = new_rsp + (iret ? 0 : imm);
	} else {
		cpu->gpr[X86EMU_RSP] = after;
	}
	if (outer) {
		/* SDM RET/IRET: data segments the outer level may not use are nulled. */
		static const unsigned data_segs[] = { X86EMU_ES, X86EMU_DS, X86EMU_FS, X86EMU_GS };
		for (unsigned i = 0; i < 4; i++) {
			struct x86emu_segment *s = &cpu->seg[data_segs[i]];
			bool code = (s->attr >> 3) & 1, conf = code && ((s->attr >> 2) & 1);
			unsigned dpl = (s->attr >> 5) & 3;
			if ((s->selector & 0xfffc) && (!code || !conf) && dpl < new_cpl) {
				uint64_t base = s->base;
				memset(s, 0, sizeof(*s));
				/* 64-bit FS/GS keep their base (set by MSR, not descriptor). */
				if (data_segs[i] == X86EMU_FS || data_segs[i] == X86EMU_GS)
					s->base = base;
			}
		}
	}
	cpu->cpl = (uint8_t)new_cpl;
	cpu->rip = rip;
	return XS_OK;
}

/* ---- descriptor tables ---------------------------------------------------------------- */

int x86emu__exec_table(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	struct x86emu_cpu *cpu = &c->cpu;
	uint64_t la, ea;
	uint8_t buf[10];
	int rc;

	if (mn == ZYDIS_MNEMONIC_STR || mn == ZYDIS_MNEMONIC_SLDT) {
		uint16_t sel = mn == ZYDIS_MNEMONIC_STR ? cpu->tr.selector : cpu->ldtr.selector;
		return x86emu__op_write(c, 0, sel);
	}
	if (mn == ZYDIS_MNEMONIC_LTR || mn == ZYDIS_MNEMONIC_LLDT) {
		uint64_t v, lo, hi;
		uint8_t raw[16];
		rc = require_cpl0(c);
		if (rc == XS_OK)
			rc = x86emu__op_read(c, 0, &v);
		if (rc != XS_OK)
			return rc;
		uint16_t sel = (uint16_t)v;
		bool ltr = mn == ZYDIS_MNEMONIC_LTR;
		if ((sel & 0xfffc) == 0) {
			if (ltr)
				return raise_gp(c, 0);
			memset(&cpu->ldtr, 0, sizeof(cpu->ldtr));	/* null LDT: unusable */
			return XS_OK;
		}
		/* System descriptors are 16 bytes in IA-32e mode and live in the GDT. */
		if ((sel & 4) || (uint64_t)(sel & 0xfff8) + 15 > cpu->gdtr.limit)
			return raise_gp(c, sel & 0xfffc);
		rc = x86emu__mem_read(c, cpu->gdtr.base + (sel & 0xfff8), 16, raw,
				      X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
		if (rc != XS_OK)
			return rc;
		lo = 0;
		hi = 0;
		for (unsigned i = 0; i < 8; i++) {
			lo |= (uint64_t)raw[i] << (8 * i);
			hi |= (uint64_t)raw[8 + i] << (8 * i);
		}
		unsigned type = (unsigned)((lo >> 40) & 0xf);
		/* LTR wants an available 64-bit TSS (9), LLDT an LDT (2); S must be 0. */
		if (((lo >> 44) & 1) || type != (ltr ? 9u : 2u) || ((hi >> 40) & 0x1f))
			return raise_gp(c, sel & 0xfffc);
		if (!((lo >> 47) & 1))
			return raise_fault(c, X86EMU_EXC_NP, true, sel & 0xfffc);
		/* A 64-bit base that is not canonical is #GP(selector), as KVM does it. */
		uint64_t base = ((lo >> 16) & 0xffffff) | (((lo >> 56) & 0xff) << 24) |
				((hi & 0xffffffffull) << 32);
		if (!is_canonical(base))
			return raise_gp(c, sel & 0xfffc);
		if (ltr) {
			/* Mark the descriptor busy (type 11) in the GDT, as the CPU does. */
			uint8_t access = (uint8_t)((lo >> 40) | 0x2);
			rc = x86emu__mem_write(c, cpu->gdtr.base + (sel & 0xfff8) + 5, 1, &access,
					       X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
			if (rc != XS_OK)
				return rc;
			lo |= 2ull << 40;
		}
		struct x86emu_segment *s = ltr ? &cpu->tr : &cpu->ldtr;
		x86emu__seg_from_desc(s, sel, lo);
		s->base |= (hi & 0xffffffffull) << 32;
		return XS_OK;
	}

	/* LGDT/LIDT/SGDT/SIDT: a 10-byte pseudo-descriptor (limit, 64-bit base). */
	ea = x86emu__ea(c, &c->ops[0]);
	rc = x86emu__linear(c, c->ops[0].mem.segment, ea, 10, &la);
	if (rc != XS_OK)
		return rc;
	struct x86emu_dtr *t = (mn == ZYDIS_MNEMONIC_LGDT || mn == ZYDIS_MNEMONIC_SGDT)
			       ? &cpu->gdtr : &cpu->idtr;
	if (mn == ZYDIS_MNEMONIC_SGDT || mn == ZYDIS_MNEMONIC_SIDT) {
		/* The limit is a word and the base a quadword, each checked for alignment (as the host does). */
		rc = x86emu__check_alignment(c, la + 2, 8, X86EMU_ACCESS_DATA);
		if (rc != XS_OK)
			return rc;
		buf[0] = (uint8_t)t->limit;
		buf[1] = (uint8_t)(t->limit >> 8);
		for (unsigned i = 0; i < 8; i++)
			buf[2 + i] = (uint8_t)(t->base >> (8 * i));
		return x86emu__mem_write(c, la, 10, buf, X86EMU_ACCESS_DATA);
	}
	rc = require_cpl0(c);
	if (rc == XS_OK)
		rc = x86emu__mem_read(c, la, 10, buf, X86EMU_ACCESS_DATA);
	if (rc != XS_OK)
		return rc;
	uint64_t base = 0;
	for (unsigned i = 0; i < 8; i++)
		base |= (uint64_t)buf[2 + i] << (8 * i);
	if (!is_canonical(base))
		return raise_gp(c, 0);
	t->limit = (uint16_t)(buf[0] | (buf[1] << 8));
	t->base = base;
	return XS_OK;
}


/* ---- far pointers: LSS/LFS/LGS, far JMP and CALL ---------------------------------------- */

/* A quadword of a descriptor table at linear @la (a supervisor access). */
static int read_table_qword(struct x86emu_ctx *c, uint64_t la, uint64_t *v)
{
	uint8_t buf[8];
	int rc = x86emu__mem_read(c, la, 8, buf, X86EMU_ACCESS_IMPLICIT_SUPERVISOR);

	if (rc == XS_OK)
		*v = le64(buf);
	return rc;
}

/*
 * Read a far pointer m16:16/m16:32/m16:64 (offset, then selector) from memory
 * operand i.  Alignment checking treats it as one far pointer, which needs 2-,
 * 4- or 8-byte alignment (SDM 6.15: 32-, 48- and 80-bit far pointers), not
 * the alignment its 4-, 6- or 10-byte size would suggest.
 */
static int read_far_pointer(struct x86emu_ctx *c, unsigned i, unsigned sz, uint64_t *off,
			    uint16_t *sel)
{
	uint64_t la;
	uint8_t buf[10];
	int rc = x86emu__linear(c, c->ops[i].mem.segment, x86emu__ea(c, &c->ops[i]), sz + 2, &la);

	if (rc == XS_OK)
		rc = x86emu__mem_read_aligned(c, la, sz + 2, buf, X86EMU_ACCESS_DATA,
					      sz == 2 ? 2 : sz == 4 ? 4 : 8);
	if (rc != XS_OK)
		return rc;
	*off = 0;
	for (unsigned k = 0; k < sz; k++)
		*off |= (uint64_t)buf[k] << (8 * k);
	*sel = (uint16_t)(buf[sz] | (buf[sz + 1] << 8));
	return XS_OK;
}

/*
 * LSS/LFS/LGS (SDM LDS/LES/LFS/LGS/LSS): the selector goes through the
 * checks MOV to the segment register makes, and the register is written
 * only when the segment load succeeded.  The register form is #UD (the
 * decoder rejects it).  Unlike MOV SS, LSS does not hold off interrupts.
 */
int x86emu__load_far_pointer(struct x86emu_ctx *c)
{
	struct x86emu_cpu *cpu = &c->cpu;
	unsigned sz = op_bits(c, 0) / 8;
	uint64_t off;
	uint16_t sel;
	int rc;

	if (!is_mem(c, 1) || c->ops[2].type != ZYDIS_OPERAND_TYPE_REGISTER)
		return raise_ud(c);
	rc = read_far_pointer(c, 1, sz, &off, &sel);
	if (rc != XS_OK)
		return rc;
	bool shadow = cpu->intr_shadow;
	rc = x86emu__load_data_segment(c, (unsigned)(c->ops[2].reg.value - ZYDIS_REGISTER_ES), sel);
	if (rc != XS_OK)
		return rc;
	cpu->intr_shadow = shadow;
	c->mov_ss = false;
	x86emu__reg_write(cpu, c->ops[0].reg.value, off);
	return XS_OK;
}

/*
 * The pushes of a far CALL: CS above the return RIP, `sz` bytes each, in
 * one write made before anything changes; onto a more privileged stack
 * (new_rsp from the TSS) also SS and RSP above them, as supervisor
 * accesses.
 */
static int far_call_push(struct x86emu_ctx *c, unsigned sz, bool outer_to_inner,
			 uint64_t new_rsp, uint64_t *rsp_out)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint64_t vals[4] = { c->next_rip, cpu->seg[X86EMU_CS].selector,
			     cpu->gpr[X86EMU_RSP], cpu->seg[X86EMU_SS].selector };
	unsigned n = outer_to_inner ? 4 : 2;
	uint64_t rsp = (outer_to_inner ? new_rsp : cpu->gpr[X86EMU_RSP]) - n * sz, la;
	uint8_t frame[32];
	int rc;

	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < sz; k++)
			frame[i * sz + k] = (uint8_t)(vals[i] >> (8 * k));
	rc = x86emu__linear(c, ZYDIS_REGISTER_SS, rsp, n * sz, &la);
	if (rc == XS_OK)
		rc = x86emu__mem_write_aligned(c, la, n * sz, frame,
					       outer_to_inner ? X86EMU_ACCESS_IMPLICIT_SUPERVISOR
							      : X86EMU_ACCESS_DATA,
					       sz);	/* #AC per pushed element */
	if (rc != XS_OK)
		return rc;
	*rsp_out = rsp;
	return XS_OK;
}

/*
 * Far JMP or CALL through a 64-bit call gate (SDM JMP and CALL, "IA-32e
 * mode", and 5.8.3.1): the gate is 16 bytes with a zero type in its upper
 * half, and names a 64-bit code segment and offset (the far pointer's
 * offset is ignored).  JMP stays at the CPL; CALL to a non-conforming
 * segment of higher privilege switches to the TSS's RSPn with a null SS
 * and pushes SS, RSP, CS and RIP there, 8 bytes each as every call-gate
 * push in 64-bit mode is.
 */
static int far_through_gate(struct x86emu_ctx *c, bool call, uint16_t gsel, uint64_t g)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint32_t gec = gsel & 0xfffc;
	uint64_t base = cpu->gdtr.base, limit = cpu->gdtr.limit, hi, cd;
	int rc;

	if (gsel & 4) {
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	}
	if ((uint64_t)(gsel & 0xfff8) + 15 > limit)
		return raise_gp(c, gec);
	rc = read_table_qword(c, base + (gsel & 0xfff8) + 8, &hi);
	if (rc != XS_OK)
		return rc;
	if ((hi >> 40) & 0x1f)
		return raise_gp(c, gec);
	unsigned gdpl = (unsigned)((g >> 45) & 3);
	if (gdpl < cpu->cpl || (gsel & 3u) > gdpl)
		return raise_gp(c, gec);
	if (!((g >> 47) & 1))
		return raise_fault(c, X86EMU_EXC_NP, true, gec);

	uint16_t csel = (uint16_t)(g >> 16);
	uint32_t cec = csel & 0xfffc;
	uint64_t off = (g & 0xffff) | (((g >> 48) & 0xffff) << 16) | ((hi & 0xffffffffull) << 32);
	if (cec == 0)
		return raise_gp(c, 0);
	rc = x86emu__read_descriptor(c, csel, false, &cd);
	if (rc != XS_OK)
		return rc;
	bool code = ((cd >> 44) & 1) && ((cd >> 43) & 1), conforming = (cd >> 42) & 1;
	unsigned cdpl = (unsigned)((cd >> 45) & 3);
	if (!code || cdpl > cpu->cpl || (!call && !conforming && cdpl != cpu->cpl))
		return raise_gp(c, cec);
	/* The target must be a 64-bit code segment: L set, D clear. */
	if (!((cd >> 53) & 1) || ((cd >> 54) & 1))
		return raise_gp(c, cec);
	if (!((cd >> 47) & 1))
		return raise_fault(c, X86EMU_EXC_NP, true, cec);
	if (!is_canonical(off))
		return raise_gp(c, 0);

	unsigned new_cpl = (call && !conforming) ? cdpl : cpu->cpl;
	uint64_t rsp = cpu->gpr[X86EMU_RSP];
	if (call) {
		uint64_t new_rsp = 0;
		bool inner = new_cpl < cpu->cpl;
		if (inner) {
			/* RSPn of the new CPL from the 64-bit TSS (SDM 7.7). */
			rc = x86emu__tss_stack(c, new_cpl, false, &new_rsp);
			if (rc != XS_OK)
				return rc;
		}
		rc = far_call_push(c, 8, inner, new_rsp, &rsp);
		if (rc != XS_OK)
			return rc;
		if (inner) {
			memset(&cpu->seg[X86EMU_SS], 0, sizeof(cpu->seg[X86EMU_SS]));
			cpu->seg[X86EMU_SS].selector = (uint16_t)new_cpl;
			cpu->seg[X86EMU_SS].attr = (uint16_t)(new_cpl << 5);
		}
	}
	x86emu__seg_from_desc(&cpu->seg[X86EMU_CS], (uint16_t)(cec | new_cpl), cd);
	cpu->cpl = (uint8_t)new_cpl;
	cpu->gpr[X86EMU_RSP] = rsp;
	cpu->rip = off;
	return XS_OK;
}

/*
 * Far JMP and far CALL through memory (FF /5, FF /3) in 64-bit mode (SDM
 * JMP and CALL, "IA-32e mode"): to a conforming or non-conforming code
 * segment at the same privilege level, or through a call gate.  Task gates
 * and TSSs do not exist in IA-32e mode (#GP(selector)).  Direct far
 * JMP/CALL (EA, 9A) are invalid in 64-bit mode, and the decoder rejects
 * them, as it does the register forms of FF /3 and FF /5.
 */
int x86emu__far_branch(struct x86emu_ctx *c, bool call)
{
	struct x86emu_cpu *cpu = &c->cpu;
	unsigned sz = c->insn.operand_width / 8;
	uint64_t off, d;
	uint16_t sel;
	int rc;

	if (!is_mem(c, 0))
		return raise_ud(c);
	rc = read_far_pointer(c, 0, sz, &off, &sel);
	if (rc != XS_OK)
		return rc;
	uint32_t ec = sel & 0xfffc;
	if (ec == 0)
		return raise_gp(c, 0);
	rc = x86emu__read_descriptor(c, sel, false, &d);
	if (rc != XS_OK)
		return rc;
	if (!((d >> 44) & 1)) {
		if (((d >> 40) & 0xf) == 0xc)
			return far_through_gate(c, call, sel, d);
		return raise_gp(c, ec);
	}
	if (!((d >> 43) & 1))
		return raise_gp(c, ec);	/* a data segment */
	/* SDM: L and D both set is #GP(selector), then the privilege rules, then P. */
	if (((d >> 53) & 1) && ((d >> 54) & 1))
		return raise_gp(c, ec);
	bool conforming = (d >> 42) & 1;
	unsigned dpl = (unsigned)((d >> 45) & 3), rpl = sel & 3;
	if (conforming ? dpl > cpu->cpl : (rpl > cpu->cpl || dpl != cpu->cpl))
		return raise_gp(c, ec);
	if (!((d >> 47) & 1))
		return raise_fault(c, X86EMU_EXC_NP, true, ec);
	/* The CPL does not change: CS.RPL becomes the CPL. */
	struct x86emu_segment cs;
	x86emu__seg_from_desc(&cs, (uint16_t)(ec | cpu->cpl), d);
	/* A compatibility-mode target (L=0) is checked against the segment limit. */
	if (!((d >> 53) & 1) && off > cs.limit)
		return raise_gp(c, 0);
	if (!is_canonical(off))
		return raise_gp(c, 0);
	if (call) {
		/* CS (zero-extended) above the return RIP, each at the operand size. */
		uint64_t rsp;
		rc = far_call_push(c, sz, false, 0, &rsp);
		if (rc != XS_OK)
			return rc;
		cpu->gpr[X86EMU_RSP] = rsp;
	}
	cpu->seg[X86EMU_CS] = cs;
	cpu->rip = off;
	return XS_OK;
}

/* ---- LAR, LSL, VERR, VERW -------------------------------------------------------------------- */

/*
 * LAR, LSL, VERR and VERW in 64-bit mode: ZF says whether the selector
 * names a descriptor the instruction accepts at this CPL and RPL.  A null
 * selector, an unusable LDT, an entry beyond the table, a type the
 * instruction does not take, or DPL < max(CPL, RPL) (conforming code
 * excepted) is ZF = 0 and no fault; the destination is written only with
 * ZF = 1.  System descriptors are 16 bytes here: LAR takes an LDT, an
 * available or busy 64-bit TSS and a call gate, LSL the first three,
 * each only with a zero type field in the upper half (AMD APM LAR/LSL;
 * the host agrees for the selectors it lets CPL 3 see).  LAR returns the
 * descriptor's dword 1 masked with 0x00ffff00 (the host leaves limit
 * bits 19:16 in, which Intel's mask 0x00fxff00 allows), 0xff00 for 16 bits.
 */
int x86emu__exec_verify(struct x86emu_ctx *c)
{
	struct x86emu_cpu *cpu = &c->cpu;
	ZydisMnemonic mn = c->insn.mnemonic;
	bool verr = mn == ZYDIS_MNEMONIC_VERR, verw = mn == ZYDIS_MNEMONIC_VERW;
	bool lar = mn == ZYDIS_MNEMONIC_LAR;
	uint64_t v, lo, hi, base, limit;
	bool ok = false;
	int rc = x86emu__op_read(c, (verr || verw) ? 0 : 1, &v);

	if (rc != XS_OK)
		return rc;
	uint16_t sel = (uint16_t)v;
	if (sel & 4) {
		if (!(cpu->ldtr.attr & X86EMU_SEG_ATTR_P))
			goto done;
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	} else {
		if ((sel & 0xfffc) == 0)
			goto done;
		base = cpu->gdtr.base;
		limit = cpu->gdtr.limit;
	}
	if ((uint64_t)(sel & 0xfff8) + 7 > limit)
		goto done;
	rc = read_table_qword(c, base + (sel & 0xfff8), &lo);
	if (rc != XS_OK)
		return rc;
	bool s = (lo >> 44) & 1, code = s && ((lo >> 43) & 1);
	bool conforming = code && ((lo >> 42) & 1), rw = (lo >> 41) & 1;
	unsigned type = (unsigned)((lo >> 40) & 0xf), dpl = (unsigned)((lo >> 45) & 3);
	if (!s) {
		bool valid = type == 2 || type == 9 || type == 0xb || (lar && type == 0xc);
		if (verr || verw || !valid || (uint64_t)(sel & 0xfff8) + 15 > limit)
			goto done;
		rc = read_table_qword(c, base + (sel & 0xfff8) + 8, &hi);
		if (rc != XS_OK)
			return rc;
		if ((hi >> 40) & 0x1f)
			goto done;
	}
	if (!conforming && (cpu->cpl > dpl || (sel & 3u) > dpl))
		goto done;
	if (verr)
		ok = !code || rw;
	else if (verw)
		ok = s && !code && rw;
	else
		ok = true;
	if (ok && lar) {
		v = (lo >> 32) & (op_bits(c, 0) == 16 ? 0xff00u : 0x00ffff00u);
		rc = x86emu__op_write(c, 0, v);
	} else if (ok) {
		v = (lo & 0xffff) | ((lo >> 32) & 0xf0000);
		if ((lo >> 55) & 1)
			v = (v << 12) | 0xfff;
		rc = x86emu__op_write(c, 0, v);
	}
	if (rc != XS_OK)
		return rc;
done:
	if (ok)
		cpu->rflags |= X86EMU_FLAG_ZF;
	else
		cpu->rflags &= ~X86EMU_FLAG_ZF;
	return XS_OK;
}
