/*
 * The interpreter's frame: registers, operands, memory access, instruction
 * fetch and decode, and the step loop.  See internal.h for the execution
 * model (work on a copy, commit when the instruction completed).
 */
#include <string.h>

#include "internal.h"

/* ---- registers ------------------------------------------------------------------ */

/*
 * Map a Zydis GPR to (index, width, byte shift).  AH/CH/DH/BH are bits 15:8
 * of RAX..RBX (SDM vol. 1 3.4.1.1); every other GPR starts at bit 0.
 */
static inline bool gpr_of(ZydisRegister r, unsigned *idx, unsigned *bits, unsigned *shift)
{
	*shift = 0;
	if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_R15B) {
		unsigned n = r - ZYDIS_REGISTER_AL;
		*bits = 8;
		if (n >= 4 && n <= 7) {	/* AH, CH, DH, BH */
			*idx = n - 4;
			*shift = 8;
		} else {
			/* SPL, BPL, SIL, DIL follow BH in Zydis's order, then R8B.. */
			*idx = n < 4 ? n : n - 4;
		}
		return true;
	}
	if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) {
		*idx = r - ZYDIS_REGISTER_AX;
		*bits = 16;
		return true;
	}
	if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) {
		*idx = r - ZYDIS_REGISTER_EAX;
		*bits = 32;
		return true;
	}
	if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) {
		*idx = r - ZYDIS_REGISTER_RAX;
		*bits = 64;
		return true;
	}
	return false;
}

uint64_t x86emu__reg_read(const struct x86emu_cpu *cpu, ZydisRegister r)
{
	unsigned idx, bits, shift;

	if (gpr_of(r, &idx, &bits, &shift))
		return (cpu->gpr[idx] >> shift) & width_mask(bits);
	if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS)
		return cpu->seg[r - ZYDIS_REGISTER_ES].selector;
	switch (r) {
	case ZYDIS_REGISTER_RIP:
		return cpu->rip;
	case ZYDIS_REGISTER_RFLAGS:
		return cpu->rflags;
	case ZYDIS_REGISTER_CR0:
		return cpu->cr0;
	case ZYDIS_REGISTER_CR2:
		return cpu->cr2;
	case ZYDIS_REGISTER_CR3:
		return cpu->cr3;
	case ZYDIS_REGISTER_CR4:
		return cpu->cr4;
	case ZYDIS_REGISTER_CR8:
		return cpu->cr8;
	default:
		return 0;
	}
}

void x86emu__gpr_write(struct x86emu_cpu *cpu, unsigned idx, unsigned bits, uint64_t v)
{
	/* SDM vol. 1 3.4.1.1: 32-bit results zero-extend, 8/16-bit ones merge. */
	if (bits == 64)
		cpu->gpr[idx] = v;
	else if (bits == 32)
		cpu->gpr[idx] = v & 0xffffffffull;
	else
		cpu->gpr[idx] = (cpu->gpr[idx] & ~width_mask(bits)) | (v & width_mask(bits));
}

void x86emu__reg_write(struct x86emu_cpu *cpu, ZydisRegister r, uint64_t v)
{
	unsigned idx, bits, shift;

	if (gpr_of(r, &idx, &bits, &shift)) {
		if (shift) {
			cpu->gpr[idx] = (cpu->gpr[idx] & ~0xff00ull) | ((v & 0xff) << 8);
			return;
		}
		x86emu__gpr_write(cpu, idx, bits, v);
		return;
	}
	if (r == ZYDIS_REGISTER_RIP)
		cpu->rip = v;
}

/* ---- addresses -------------------------------------------------------------------- */

uint64_t x86emu__ea(const struct x86emu_ctx *c, const ZydisDecodedOperand *op)
{
	const ZydisDecodedOperandMem *m = &op->mem;
	uint64_t ea = (uint64_t)m->disp.value;

	if (m->base == ZYDIS_REGISTER_RIP)
		ea += c->next_rip;	/* RIP-relative: from the next instruction (SDM 2.2.1.6) */
	else if (m->base == ZYDIS_REGISTER_EIP)
		ea += c->next_rip & 0xffffffffull;
	else if (m->base != ZYDIS_REGISTER_NONE)
		ea += x86emu__reg_read(&c->cpu, m->base);
	if (m->index != ZYDIS_REGISTER_NONE)
		ea += x86emu__reg_read(&c->cpu, m->index) * (m->scale ? m->scale : 1);
	/* A 0x67 prefix makes the address 32 bits wide, wrapping before FS/GS bases. */
	if (c->insn.address_width == 32)
		ea &= 0xffffffffull;
	return ea;
}

int x86emu__linear(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		   uint64_t *la)
{
	/* SDM 3.2.4: in 64-bit mode only FS and GS have a base; no limits are checked. */
	uint64_t base = 0;
	if (seg == ZYDIS_REGISTER_FS)
		base = c->cpu.seg[X86EMU_FS].base;
	else if (seg == ZYDIS_REGISTER_GS)
		base = c->cpu.seg[X86EMU_GS].base;
	*la = base + ea;
	/*
	 * Every byte of the access must be canonical: one that starts below
	 * the hole and runs into it faults like one that starts inside it.
	 * An access that runs from 2^64 - 1 on to 0 is all canonical: it is
	 * made, on the last page and the first one (SDM 3.3.7.1).
	 */
	uint64_t last = *la + (size ? size - 1 : 0);
	if (!is_canonical(*la) || !is_canonical(last)) {
		/* SDM 6.15: a non-canonical stack reference is #SS(0), others #GP(0). */
		if (seg == ZYDIS_REGISTER_SS)
			return raise_fault(c, X86EMU_EXC_SS, true, 0);
		return raise_gp(c, 0);
	}
	return XS_OK;
}

/* ---- memory ---------------------------------------------------------------------- */

/*
 * An access whose first or last byte is not canonical faults #GP(0) before
 * any byte is touched (SDM 3.3.7.1); one that wraps at 2^64 is canonical.  Accesses through a segment were
 * checked by x86emu__linear() already, with #SS for the stack; this catches
 * the implicit ones (descriptor tables, the TSS, fetches).
 */
static inline int check_span(struct x86emu_ctx *c, uint64_t la, unsigned size)
{
	if (!is_canonical(la) || !is_canonical(la + size - 1))
		return raise_gp(c, 0);
	return XS_OK;
}

/*
 * Alignment check (SDM 6.15, interrupt 17): with CR0.AM and RFLAGS.AC, a
 * data access at CPL 3 whose address is not a multiple of `align` is #AC(0),
 * raised before the access (the host raises it ahead of a #PF, too).
 * Implicit supervisor accesses and fetches are never checked.
 */
int x86emu__check_alignment(struct x86emu_ctx *c, uint64_t la, unsigned align,
			    enum x86emu_access_kind kind)
{
	if (kind != X86EMU_ACCESS_DATA || c->cpu.cpl != 3 || align < 2 ||
	    !(c->cpu.cr0 & X86EMU_CR0_AM) || !(c->cpu.rflags & X86EMU_FLAG_AC))
		return XS_OK;
	if (la & (align - 1))
		return raise_fault(c, X86EMU_EXC_AC, true, 0);
	return XS_OK;
}

/*
 * The alignment a scalar access of `size` bytes needs: its largest
 * power-of-two divisor up to 8 (an event frame of quadwords is checked per
 * quadword).  Accesses made of other elements (far pointers, the pushes of
 * ENTER or a far CALL) say their alignment: x86emu__mem_*_aligned().
 */
static inline unsigned natural_alignment(unsigned size)
{
	unsigned a = size & (~size + 1);
	return a > 8 ? 8 : a;
}

static inline void fill_access(const struct x86emu_ctx *c, struct x86emu_access *a, uint64_t la,
			       unsigned size, enum x86emu_access_kind kind)
{
	a->va = la;
	a->size = size;
	a->kind = kind;
	a->cpl = kind == X86EMU_ACCESS_IMPLICIT_SUPERVISOR ? 0 : c->cpu.cpl;
	a->ac = (c->cpu.rflags & X86EMU_FLAG_AC) != 0;
	a->rep_done = c->rep_done;
}

/* Turn a callback's answer into an internal status. */
static inline int from_callback(struct x86emu_ctx *c, int rc)
{
	if (rc == X86EMU_CB_OK)
		return XS_OK;
	if (rc == X86EMU_CB_RETRY)
		return XS_RETRY;
	if (rc != X86EMU_CB_FAULT) {
		/* A machine bug, not the guest's: surface it as a machine check. */
		return raise_fault(c, X86EMU_EXC_MC, false, 0);
	}
	return XS_FAULT;
}

int x86emu__mem_read_aligned(struct x86emu_ctx *c, uint64_t la, unsigned size, void *out,
			     enum x86emu_access_kind kind, unsigned align)
{
	struct x86emu_access a;

	if (check_span(c, la, size) != XS_OK ||
	    x86emu__check_alignment(c, la, align, kind) != XS_OK)
		return XS_FAULT;
	fill_access(c, &a, la, size, kind);
	memset(&c->fault, 0, sizeof(c->fault));
	int rc = from_callback(c, c->env->read(c->env->opaque, &a, out, &c->fault));
	if (rc == XS_OK && kind == X86EMU_ACCESS_DATA)
		x86emu__data_breakpoints(c, la, size, false);
	return rc;
}

int x86emu__mem_read(struct x86emu_ctx *c, uint64_t la, unsigned size, void *out,
		     enum x86emu_access_kind kind)
{
	return x86emu__mem_read_aligned(c, la, size, out, kind, natural_alignment(size));
}

int x86emu__mem_write_aligned(struct x86emu_ctx *c, uint64_t la, unsigned size, const void *in,
			      enum x86emu_access_kind kind, unsigned align)
{
	struct x86emu_access a;

	if (check_span(c, la, size) != XS_OK ||
	    x86emu__check_alignment(c, la, align, kind) != XS_OK)
		return XS_FAULT;
	fill_access(c, &a, la, size, kind);
	memset(&c->fault, 0, sizeof(c->fault));
	int rc = from_callback(c, c->env->write(c->env->opaque, &a, in, &c->fault));
	if (rc == XS_OK && kind == X86EMU_ACCESS_DATA)
		x86emu__data_breakpoints(c, la, size, true);
	return rc;
}

int x86emu__mem_write(struct x86emu_ctx *c, uint64_t la, unsigned size, const void *in,
		      enum x86emu_access_kind kind)
{
	return x86emu__mem_write_aligned(c, la, size, in, kind, natural_alignment(size));
}

int x86emu__mem_write_check(struct x86emu_ctx *c, uint64_t la, unsigned size,
			    enum x86emu_access_kind kind)
{
	struct x86emu_access a;

	if (check_span(c, la, size) != XS_OK ||
	    x86emu__check_alignment(c, la, natural_alignment(size), kind) != XS_OK)
		return XS_FAULT;
	if (!c->env->write_check)
		return XS_OK;
	fill_access(c, &a, la, size, kind);
	memset(&c->fault, 0, sizeof(c->fault));
	return from_callback(c, c->env->write_check(c->env->opaque, &a, &c->fault));
}

int x86emu__mem_cmpxchg(struct x86emu_ctx *c, uint64_t la, unsigned size,
			const void *expected, const void *desired, void *observed)
{
	struct x86emu_access a;
	int rc;

	if (check_span(c, la, size) != XS_OK ||
	    x86emu__check_alignment(c, la, natural_alignment(size), X86EMU_ACCESS_DATA) != XS_OK)
		return XS_FAULT;
	fill_access(c, &a, la, size, X86EMU_ACCESS_DATA);
	memset(&c->fault, 0, sizeof(c->fault));
	if (c->env->cmpxchg) {
		rc = from_callback(c, c->env->cmpxchg(c->env->opaque, &a, expected, desired,
						      observed, &c->fault));
	} else {
		/*
		 * No atomic primitive: a plain read and a write.  The write
		 * happens even when the comparison fails, writing back what was
		 * read, as the SDM says the processor does for CMPXCHG, so a
		 * read-only page faults either way.
		 */
		rc = from_callback(c, c->env->read(c->env->opaque, &a, observed, &c->fault));
		if (rc != XS_OK)
			return rc;
		const void *val = memcmp(observed, expected, size) == 0 ? desired : observed;
		rc = from_callback(c, c->env->write(c->env->opaque, &a, val, &c->fault));
	}
	if (rc == XS_OK)
		x86emu__data_breakpoints(c, la, size, true);	/* a locked read and write */
	return rc;
}

int x86emu__read_seg(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		     uint64_t *v)
{
	uint64_t la;
	uint8_t buf[8] = { 0 };
	int rc = x86emu__linear(c, seg, ea, size, &la);

	if (rc != XS_OK)
		return rc;
	rc = x86emu__mem_read(c, la, size, buf, X86EMU_ACCESS_DATA);
	if (rc != XS_OK)
		return rc;
	/* x86 is little-endian; assemble explicitly so the host's order does not matter. */
	*v = 0;
	for (unsigned i = 0; i < size; i++)
		*v |= (uint64_t)buf[i] << (8 * i);
	return XS_OK;
}

int x86emu__write_seg(struct x86emu_ctx *c, ZydisRegister seg, uint64_t ea, unsigned size,
		      uint64_t v)
{
	uint64_t la;
	uint8_t buf[8];
	int rc = x86emu__linear(c, seg, ea, size, &la);

	if (rc != XS_OK)
		return rc;
	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(v >> (8 * i));
	return x86emu__mem_write(c, la, size, buf, X86EMU_ACCESS_DATA);
}

/* ---- operands ----------------------------------------------------------------------- */

int x86emu__op_read(struct x86emu_ctx *c, unsigned i, uint64_t *v)
{
	const ZydisDecodedOperand *op = &c->ops[i];

	switch (op->type) {
	case ZYDIS_OPERAND_TYPE_REGISTER:
		*v = x86emu__reg_read(&c->cpu, op->reg.value);
		return XS_OK;
	case ZYDIS_OPERAND_TYPE_IMMEDIATE:
		/* Zydis has already sign-extended signed immediates to 64 bits. */
		*v = op->imm.value.u;
		return XS_OK;
	case ZYDIS_OPERAND_TYPE_MEMORY:
		if (op->size == 0 || op->size > 64)
			return raise_ud(c);
		return x86emu__read_seg(c, op->mem.segment, x86emu__ea(c, op), op->size / 8, v);
	default:
		return raise_ud(c);
	}
}

int x86emu__op_write(struct x86emu_ctx *c, unsigned i, uint64_t v)
{
	const ZydisDecodedOperand *op = &c->ops[i];

	switch (op->type) {
	case ZYDIS_OPERAND_TYPE_REGISTER:
		x86emu__reg_write(&c->cpu, op->reg.value, v);
		return XS_OK;
	case ZYDIS_OPERAND_TYPE_MEMORY:
		if (op->size == 0 || op->size > 64)
			return raise_ud(c);
		return x86emu__write_seg(c, op->mem.segment, x86emu__ea(c, op), op->size / 8, v);
	default:
		return raise_ud(c);
	}
}

/* ---- the stack ------------------------------------------------------------------------ */

int x86emu__push(struct x86emu_ctx *c, unsigned size, uint64_t v)
{
	/* The store happens before RSP changes, so a fault leaves RSP as it was. */
	uint64_t rsp = c->cpu.gpr[X86EMU_RSP] - size;
	int rc = x86emu__write_seg(c, ZYDIS_REGISTER_SS, rsp, size, v);

	if (rc != XS_OK)
		return rc;
	c->cpu.gpr[X86EMU_RSP] = rsp;
	return XS_OK;
}

int x86emu__pop(struct x86emu_ctx *c, unsigned size, uint64_t *v)
{
	uint64_t rsp = c->cpu.gpr[X86EMU_RSP];
	int rc = x86emu__read_seg(c, ZYDIS_REGISTER_SS, rsp, size, v);

	if (rc != XS_OK)
		return rc;
	c->cpu.gpr[X86EMU_RSP] = rsp + size;
	return XS_OK;
}

/* ---- fetch and decode ------------------------------------------------------------------ */

#define PAGE_SIZE_4K 4096u

/*
 * Fetch and decode the instruction at RIP.  Bytes are fetched only up to the
 * end of RIP's page first; the next page is touched only when the decoder
 * needs more bytes, so an instruction that ends at a page boundary never
 * faults on the following page, and one that crosses it faults with that
 * page's address, as hardware does (SDM 6.15, #PF on instruction fetch).
 */
static int fetch_decode(struct x86emu_ctx *c)
{
	uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
	uint64_t rip = c->cpu.rip;
	unsigned have = PAGE_SIZE_4K - (unsigned)(rip & (PAGE_SIZE_4K - 1));
	ZyanStatus st;
	int rc;

	if (!is_canonical(rip))
		return raise_gp(c, 0);
	if (have > sizeof(bytes))
		have = sizeof(bytes);
	rc = x86emu__mem_read(c, rip, have, bytes, X86EMU_ACCESS_FETCH);
	if (rc != XS_OK)
		return rc;
	st = ZydisDecoderDecodeFull(&c->decoder, bytes, have, &c->insn, c->ops);
	if (st == ZYDIS_STATUS_NO_MORE_DATA && have < sizeof(bytes)) {
		uint64_t next = rip + have;
		if (!is_canonical(next))
			return raise_gp(c, 0);
		rc = x86emu__mem_read(c, next, sizeof(bytes) - have, bytes + have,
				      X86EMU_ACCESS_FETCH);
		if (rc != XS_OK)
			return rc;
		st = ZydisDecoderDecodeFull(&c->decoder, bytes, sizeof(bytes), &c->insn, c->ops);
	}
	if (st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG)
		return raise_gp(c, 0);	/* SDM 2.3.11: more than 15 bytes is #GP(0) */
	if (!ZYAN_SUCCESS(st))
		return raise_ud(c);
	/*
	 * PAUSE is F3 90 alone: with REX.B the 90 names R8, and F3 REX.B 90 is
	 * XCHG r8, rAX with an ignored REP prefix (SDM XCHG, PAUSE).  Zydis
	 * reads it as PAUSE, so decode it again with each F3 (all before the
	 * REX) turned into a DS override, which XCHG on registers also ignores.
	 */
	if (c->insn.mnemonic == ZYDIS_MNEMONIC_PAUSE && c->insn.raw.rex.B) {
		for (unsigned i = 0; i < c->insn.raw.rex.offset; i++)
			if (bytes[i] == 0xf3)
				bytes[i] = 0x3e;
		st = ZydisDecoderDecodeFull(&c->decoder, bytes, c->insn.length, &c->insn, c->ops);
		if (!ZYAN_SUCCESS(st))
			return raise_ud(c);
	}
	c->next_rip = rip + c->insn.length;
	return XS_OK;
}

/* ---- the step loop ----------------------------------------------------------------------- */

static bool in_long_mode(const struct x86emu_cpu *cpu)
{
	return (cpu->efer & X86EMU_EFER_LMA) && (cpu->cr0 & X86EMU_CR0_PG) &&
	       (cpu->seg[X86EMU_CS].attr & X86EMU_SEG_ATTR_L);
}

static void ctx_init(struct x86emu_ctx *c, struct x86emu_cpu *cpu, const struct x86emu_env *env)
{
	c->arch = cpu;
	c->env = env;
	c->rep_done = 0;
	c->keep_rf = false;
	c->mov_ss = false;
	ZydisDecoderInit(&c->decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	/*
	 * We advertise neither BMI1 nor LZCNT, so F3 0F BC/BD are REP BSF/BSR,
	 * exactly what a CPU without those features executes.
	 */
	ZydisDecoderEnableMode(&c->decoder, ZYDIS_DECODER_MODE_TZCNT, ZYAN_FALSE);
	ZydisDecoderEnableMode(&c->decoder, ZYDIS_DECODER_MODE_LZCNT, ZYAN_FALSE);
	/*
	 * Nor MPX, CET (CPUID.7.0: EBX bit 14, ECX bit 7, EDX bit 20) or
	 * CLDEMOTE (ECX bit 25): their encodings in the 0F 18-1F hint space
	 * (BNDMK/BNDLDX/..., ENDBR32/64, RDSSP, CLDEMOTE) are then the reserved
	 * NOPs such a CPU executes (SDM NOP, "0F 1F" and the hint space).
	 */
	ZydisDecoderEnableMode(&c->decoder, ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
	ZydisDecoderEnableMode(&c->decoder, ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
	ZydisDecoderEnableMode(&c->decoder, ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
}

/*
 * The debug trap (SDM 17.3.1): #DB after an instruction that began with TF
 * set (DR6.BS), or whose accesses hit data or I/O breakpoints (DR6.B0-B3),
 * with the next instruction's RIP pushed (the same instruction's when a
 * REP stopped between iterations).  It is owed (db_pending) until
 * delivered; a delivery the machine retries changes nothing and is made
 * again by the next step.
 */
static int deliver_debug_trap(struct x86emu_ctx *c)
{
	struct x86emu_fault f = { .vector = X86EMU_EXC_DB };

	int rc = x86emu__raise(c, &f, EVENT_TRAP, c->arch->rip);
	if (rc == XS_OK) {
		x86emu__db_delivered(c->arch, c->arch->db_status);
		c->arch->db_pending = false;
		c->arch->db_status = 0;
	}
	return rc;
}

/*
 * An instruction breakpoint (SDM 17.3.1.1): #DB before the instruction,
 * its own RIP pushed, with RFLAGS.RF as it is (clear: the breakpoint would
 * not fire otherwise), so the handler sets RF in the image to go on.
 */
static int deliver_insn_breakpoint(struct x86emu_ctx *c, unsigned hits)
{
	struct x86emu_fault f = { .vector = X86EMU_EXC_DB };

	int rc = x86emu__raise(c, &f, EVENT_TRAP, c->arch->rip);
	if (rc == XS_OK) {
		x86emu__db_delivered(c->arch, hits);
		c->arch->db_status = 0;
	}
	return rc;
}

/* Execute one instruction; deliver whatever exception it raised. */
static int step_one(struct x86emu_ctx *c)
{
	int rc;

	if (c->arch->db_pending)
		return deliver_debug_trap(c);
	unsigned ibp = x86emu__insn_breakpoints(c->arch);
	if (ibp)
		return deliver_insn_breakpoint(c, ibp);
	bool tf = (c->arch->rflags & X86EMU_FLAG_TF) != 0;
	c->cpu = *c->arch;
	c->rep_done = 0;
	c->keep_rf = false;
	c->mov_ss = false;
	c->db_hits = 0;
	c->db_fault = 0;
	/* The shadow covers exactly one instruction (SDM 6.8.3). */
	c->cpu.intr_shadow = false;
	rc = fetch_decode(c);
	if (rc == XS_OK) {
		if (x86emu__is_system(c->insn.mnemonic))
			rc = x86emu__exec_system(c);
		else if (c->insn.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR)
			rc = x86emu__exec_system(c);	/* far RET/JMP/CALL load CS */
		else
			rc = x86emu__exec(c);
	}
	switch (rc) {
	case XS_OK:
	case XS_HALT:
		/*
		 * SDM 17.3.1.1: RF is cleared when an instruction completes, so
		 * the one IRETQ sets lasts for the next instruction only.  IRETQ
		 * itself, and a REP string instruction that stops between
		 * iterations, leave it as they set it.
		 */
		if (!c->keep_rf)
			c->cpu.rflags &= ~X86EMU_FLAG_RF;
		c->cpu.icount++;
		if (!c->env->rdtsc)
			c->cpu.tsc++;
		*c->arch = c->cpu;
		if (rc == XS_HALT) {
			c->arch->halted = true;
			return XS_HALT;
		}
		/*
		 * The trap is owed from here and delivered as the next step,
		 * before any instruction or interrupt (x86emu_interrupts_enabled()
		 * says no meanwhile), so a step is an instruction or an event,
		 * and a delivery the machine retries changes nothing.  After
		 * MOV SS it waits for the next instruction (db_status holds it).
		 */
		c->arch->db_status |= (uint16_t)(c->db_hits | (tf ? X86EMU_DR6_BS : 0));
		if (c->arch->db_status && !c->mov_ss)
			c->arch->db_pending = true;
		return XS_OK;
	case XS_FAULT: {
		struct x86emu_fault f = c->fault;
		rc = x86emu__raise(c, &f, EVENT_EXCEPTION, c->arch->rip);
		if (rc == XS_OK) {
			/* A trap held over from MOV SS is lost with the faulting instruction. */
			c->arch->db_status = 0;
			if (f.vector == X86EMU_EXC_DB && c->db_fault)
				x86emu__db_delivered(c->arch, c->db_fault);
		}
		return rc;
	}
	default:
		return rc;
	}
}

int x86emu_step(struct x86emu_cpu *cpu, const struct x86emu_env *env, unsigned budget)
{
	struct x86emu_ctx c;

	if (cpu->shutdown)
		return X86EMU_EXIT_SHUTDOWN;
	if (!in_long_mode(cpu))
		return X86EMU_EXIT_BAD_MODE;
	ctx_init(&c, cpu, env);
	for (unsigned i = 0; i < budget; i++) {
		if (cpu->halted)
			return X86EMU_EXIT_HLT;
		int rc = step_one(&c);
		if (rc == XS_RETRY)
			return X86EMU_EXIT_RETRY;
		cpu->held_input.valid = false;	/* the element it held for is past */
		switch (rc) {
		case XS_OK:
			break;
		case XS_HALT:
			return X86EMU_EXIT_HLT;
		case XS_SHUTDOWN:
			cpu->shutdown = true;
			return X86EMU_EXIT_SHUTDOWN;
		default:
			break;
		}
		/* MOV CR0 could in principle leave 64-bit mode; that is outside our contract. */
		if (!in_long_mode(cpu))
			return X86EMU_EXIT_BAD_MODE;
	}
	return X86EMU_EXIT_BUDGET;
}

bool x86emu_interrupts_enabled(const struct x86emu_cpu *cpu)
{
	return (cpu->rflags & X86EMU_FLAG_IF) && !cpu->intr_shadow && !cpu->shutdown &&
	       !cpu->db_pending;	/* a single-step trap goes first (SDM 6.9) */
}

int x86emu_interrupt(struct x86emu_cpu *cpu, const struct x86emu_env *env, uint8_t vector)
{
	struct x86emu_ctx c;
	struct x86emu_fault f = { .vector = vector };
	int rc;

	if (cpu->shutdown)
		return X86EMU_EXIT_SHUTDOWN;
	ctx_init(&c, cpu, env);
	c.cpu = *cpu;
	rc = x86emu__raise(&c, &f, EVENT_EXTERNAL, cpu->rip);
	if (rc == XS_RETRY)
		return X86EMU_EXIT_RETRY;
	if (rc == XS_SHUTDOWN) {
		cpu->shutdown = true;
		return X86EMU_EXIT_SHUTDOWN;
	}
	cpu->halted = false;
	cpu->held_input.valid = false;	/* the abandoned element will not resume */
	return X86EMU_EXIT_BUDGET;
}

void x86emu_cpu_init_long_mode(struct x86emu_cpu *cpu)
{
	memset(cpu, 0, sizeof(*cpu));
	cpu->rflags = X86EMU_FLAG_FIXED;
	cpu->cr0 = X86EMU_CR0_PE | X86EMU_CR0_MP | X86EMU_CR0_ET | X86EMU_CR0_NE |
		   X86EMU_CR0_WP | X86EMU_CR0_PG;
	cpu->cr4 = X86EMU_CR4_PAE;
	cpu->efer = X86EMU_EFER_LME | X86EMU_EFER_LMA | X86EMU_EFER_NXE | X86EMU_EFER_SCE;
	/* Flat segments as a 64-bit GDT would describe them: code 0x08, data 0x10. */
	for (unsigned i = 0; i < 6; i++) {
		cpu->seg[i].selector = 0x10;
		cpu->seg[i].attr = 0x93 | (1u << 15) | X86EMU_SEG_ATTR_DB;	/* data RW, P, G */
		cpu->seg[i].limit = 0xffffffffu;
	}
	cpu->seg[X86EMU_CS].selector = 0x08;
	cpu->seg[X86EMU_CS].attr = 0x9b | (1u << 15) | X86EMU_SEG_ATTR_L;	/* code RX, P, L, G */
	cpu->tr.attr = 0x8b;	/* busy 64-bit TSS, as after LTR */
	/* Empty tables: until the machine installs an IDT any exception shuts down. */
}

const char *x86emu_exit_name(int exit_reason)
{
	switch (exit_reason) {
	case X86EMU_EXIT_BUDGET: return "budget";
	case X86EMU_EXIT_HLT: return "hlt";
	case X86EMU_EXIT_RETRY: return "retry";
	case X86EMU_EXIT_SHUTDOWN: return "shutdown";
	case X86EMU_EXIT_BAD_MODE: return "bad-mode";
	default: return "unknown";
	}
}
