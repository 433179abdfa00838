/*
 * String instructions: MOVS, STOS, LODS, CMPS, SCAS, with REP/REPE/REPNE,
 * and the port string instructions INS and OUTS with REP.
 *
 * SDM vol. 2B, REP/REPE/REPZ/REPNE/REPNZ: a repeated string instruction may
 * be interrupted between iterations; the processor then leaves rCX/rSI/rDI
 * describing the remaining work and RIP at the instruction, so returning
 * from the interrupt resumes it.  We use exactly that: one step runs at most
 * X86EMU_REP_ITERATIONS_PER_STEP iterations, and every finished iteration is
 * committed to the architectural state at once, so a fault (or a "retry")
 * in iteration k is reported with iterations 0..k-1 done, as on hardware.
 */
#include "internal.h"

enum string_kind { STR_MOVS, STR_STOS, STR_LODS, STR_CMPS, STR_SCAS, STR_INS, STR_OUTS };

static enum string_kind kind_of(ZydisMnemonic mn)
{
	switch (mn) {
	case ZYDIS_MNEMONIC_MOVSB: case ZYDIS_MNEMONIC_MOVSW:
	case ZYDIS_MNEMONIC_MOVSD: case ZYDIS_MNEMONIC_MOVSQ:
		return STR_MOVS;
	case ZYDIS_MNEMONIC_STOSB: case ZYDIS_MNEMONIC_STOSW:
	case ZYDIS_MNEMONIC_STOSD: case ZYDIS_MNEMONIC_STOSQ:
		return STR_STOS;
	case ZYDIS_MNEMONIC_LODSB: case ZYDIS_MNEMONIC_LODSW:
	case ZYDIS_MNEMONIC_LODSD: case ZYDIS_MNEMONIC_LODSQ:
		return STR_LODS;
	case ZYDIS_MNEMONIC_CMPSB: case ZYDIS_MNEMONIC_CMPSW:
	case ZYDIS_MNEMONIC_CMPSD: case ZYDIS_MNEMONIC_CMPSQ:
		return STR_CMPS;
	case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_INSD:
		return STR_INS;
	case ZYDIS_MNEMONIC_OUTSB: case ZYDIS_MNEMONIC_OUTSW: case ZYDIS_MNEMONIC_OUTSD:
		return STR_OUTS;
	default:
		return STR_SCAS;
	}
}

/* The source segment: DS unless overridden (only FS/GS change anything in 64-bit mode). */
static ZydisRegister source_segment(const struct x86emu_ctx *c)
{
	for (unsigned i = 0; i < c->insn.operand_count; i++) {
		const ZydisDecodedOperand *op = &c->ops[i];
		if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.base != ZYDIS_REGISTER_RDI &&
		    op->mem.base != ZYDIS_REGISTER_EDI)
			return op->mem.segment;
	}
	return ZYDIS_REGISTER_DS;
}

/*
 * INS's element: the port's input to ES:rDI (no segment override).  The
 * destination is checked as a write first (env->write_check), so a fault
 * there leaves the port unread, as on hardware, where the instruction
 * restarts after the fault handler and reads the port then.  A store the
 * machine answers "retry" keeps the input it read (cpu->held_input) for
 * the re-execution, so no port is read twice for one element.
 */
static int input_element(struct x86emu_ctx *c, unsigned size, uint64_t rdi)
{
	uint32_t v = 0xffffffffu;
	uint8_t buf[4];
	uint64_t la;
	int rc = x86emu__linear(c, ZYDIS_REGISTER_ES, rdi, size, &la);

	if (rc == XS_OK)
		rc = x86emu__mem_write_check(c, la, size, X86EMU_ACCESS_DATA);
	if (rc != XS_OK)
		return rc;
	uint16_t port = (uint16_t)c->cpu.gpr[X86EMU_RDX];
	struct x86emu_held_input *h = &c->arch->held_input;
	if (h->valid && h->rip == c->arch->rip && h->rdi == rdi && h->port == port &&
	    h->size == size)
		v = h->value;	/* read by an execution that was abandoned after it */
	else if (c->env->io_in &&
		 c->env->io_in(c->env->opaque, port, size, &v) == X86EMU_CB_RETRY)
		return XS_RETRY;
	h->valid = false;
	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(v >> (8 * i));
	rc = x86emu__mem_write(c, la, size, buf, X86EMU_ACCESS_DATA);
	if (rc == XS_RETRY)
		*h = (struct x86emu_held_input){ .valid = true, .size = (uint8_t)size,
						 .port = port, .value = v,
						 .rip = c->arch->rip, .rdi = rdi };
	return rc;
}

/* One iteration on the working copy. */
static int one_element(struct x86emu_ctx *c, enum string_kind kind, unsigned size,
		       unsigned aw, ZydisRegister src_seg)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint64_t am = width_mask(aw);
	uint64_t rsi = cpu->gpr[X86EMU_RSI] & am, rdi = cpu->gpr[X86EMU_RDI] & am;
	uint64_t delta = (cpu->rflags & X86EMU_FLAG_DF) ? (uint64_t)0 - size : size;
	uint64_t a = 0, b = 0;
	int rc = XS_OK;

	/* Reads first, then the single write (MOVS/STOS/INS). */
	if (kind == STR_MOVS || kind == STR_LODS || kind == STR_CMPS || kind == STR_OUTS)
		rc = x86emu__read_seg(c, src_seg, rsi, size, &a);
	if (rc == XS_OK && (kind == STR_CMPS || kind == STR_SCAS))
		rc = x86emu__read_seg(c, ZYDIS_REGISTER_ES, rdi, size, &b);
	if (rc == XS_OK && kind == STR_MOVS)
		rc = x86emu__write_seg(c, ZYDIS_REGISTER_ES, rdi, size, a);
	if (rc == XS_OK && kind == STR_STOS)
		rc = x86emu__write_seg(c, ZYDIS_REGISTER_ES, rdi, size, cpu->gpr[X86EMU_RAX]);
	if (rc == XS_OK && kind == STR_INS)
		rc = input_element(c, size, rdi);
	if (rc == XS_OK && kind == STR_OUTS && c->env->io_out &&
	    c->env->io_out(c->env->opaque, (uint16_t)cpu->gpr[X86EMU_RDX], size,
			   (uint32_t)a) == X86EMU_CB_RETRY)
		rc = XS_RETRY;
	if (rc != XS_OK)
		return rc;
	if (kind == STR_INS || kind == STR_OUTS)
		x86emu__io_breakpoints(c, (uint16_t)cpu->gpr[X86EMU_RDX], size);

	switch (kind) {
	case STR_LODS:
		x86emu__gpr_write(cpu, X86EMU_RAX, size * 8, a);
		break;
	case STR_CMPS:
		x86emu__alu(ALU_CMP, size * 8, a, b, &cpu->rflags);	/* [rSI] - [rDI] */
		break;
	case STR_SCAS:
		x86emu__alu(ALU_CMP, size * 8, cpu->gpr[X86EMU_RAX], b, &cpu->rflags);
		break;
	default:
		break;
	}
	/* Pointers advance at the address size; 32-bit results zero-extend. */
	if (kind != STR_STOS && kind != STR_SCAS && kind != STR_INS)
		x86emu__gpr_write(cpu, X86EMU_RSI, aw, rsi + delta);
	if (kind != STR_LODS && kind != STR_OUTS)
		x86emu__gpr_write(cpu, X86EMU_RDI, aw, rdi + delta);
	return XS_OK;
}

/* Publish a finished iteration: only these registers change in a string op. */
static void commit_iteration(struct x86emu_ctx *c)
{
	static const unsigned regs[] = { X86EMU_RAX, X86EMU_RCX, X86EMU_RSI, X86EMU_RDI };

	for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		c->arch->gpr[regs[i]] = c->cpu.gpr[regs[i]];
	c->arch->rflags = c->cpu.rflags;
}

int x86emu__exec_string(struct x86emu_ctx *c)
{
	enum string_kind kind = kind_of(c->insn.mnemonic);
	unsigned size = c->insn.operand_width / 8;
	unsigned aw = c->insn.address_width;
	uint64_t attrs = c->insn.attributes;
	bool rep = attrs & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE);
	bool repne = attrs & ZYDIS_ATTRIB_HAS_REPNE;
	ZydisRegister src_seg = source_segment(c);
	int rc;

	/* MOVSD and CMPSD share their mnemonic with SSE2 instructions we do not implement. */
	if (c->insn.opcode_map != ZYDIS_OPCODE_MAP_DEFAULT)
		return raise_ud(c);

	if (kind == STR_INS || kind == STR_OUTS) {
		/* INSD/OUTSD stay 4 bytes with REX.W. */
		if (size > 4)
			size = 4;
		/*
		 * The I/O permission check of IN/OUT, before any iteration and
		 * also when rCX is 0 (the host faults then too).  A REP resumed
		 * in a later step checks again, finding the same answer.
		 */
		rc = x86emu__io_permission(c, (uint16_t)c->cpu.gpr[X86EMU_RDX], size);
		if (rc != XS_OK)
			return rc;
	}

	if (!rep) {
		rc = one_element(c, kind, size, aw, src_seg);
		if (rc == XS_OK)
			c->cpu.rip = c->next_rip;
		return rc;
	}

	uint64_t am = width_mask(aw);
	/* Single-stepping (TF) traps after every iteration (SDM 17.3.1.4). */
	unsigned chunk = (c->cpu.rflags & X86EMU_FLAG_TF) ? 1 : X86EMU_REP_ITERATIONS_PER_STEP;
	for (unsigned n = 0; n < chunk; n++) {
		uint64_t rcx = c->cpu.gpr[X86EMU_RCX] & am;
		c->rep_done = n;
		if (rcx == 0) {
			c->cpu.rip = c->next_rip;
			return XS_OK;
		}
		rc = one_element(c, kind, size, aw, src_seg);
		if (rc != XS_OK)
			return rc;
		x86emu__gpr_write(&c->cpu, X86EMU_RCX, aw, rcx - 1);
		commit_iteration(c);
		/*
		 * REPE/REPNE (CMPS/SCAS only) also stop on ZF; F3 on CMPS/SCAS is
		 * REPE, F2 is REPNE.  On MOVS/STOS/LODS either prefix is plain REP.
		 */
		if (kind == STR_CMPS || kind == STR_SCAS) {
			bool zf = c->cpu.rflags & X86EMU_FLAG_ZF;
			if (repne ? zf : !zf) {
				c->cpu.rip = c->next_rip;
				return XS_OK;
			}
		}
		if (rcx - 1 == 0) {
			c->cpu.rip = c->next_rip;
			return XS_OK;
		}
		/* A data or I/O breakpoint traps after the iteration that hit it. */
		if (c->db_hits)
			break;
	}
	/*
	 * Budget for this step used up, or a breakpoint's trap owed: RIP
	 * stays on the instruction, which resumes.  An interrupt or a trap
	 * taken here pushes RF=1 (SDM 17.3.1.1); the last chunk clears it as
	 * any completed instruction does.
	 */
	c->cpu.rflags |= X86EMU_FLAG_RF;
	c->keep_rf = true;
	return XS_OK;
}
