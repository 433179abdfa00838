/*
 * System instructions: control registers, TLB invalidation, descriptor
 * tables, segment loads, far returns and IRETQ, INT n, HLT, CLI/STI, port
 * I/O, CPUID, MSRs, the TSC, SWAPGS and SYSCALL/SYSRET.
 *
 * Each handler validates everything first, calls the machine's hook (which
 * may ask to retry), and only then changes the working copy, so a retry or a
 * fault leaves the architectural state untouched.
 */
#include <string.h>

#include "internal.h"

/* Physical-address width the default CPUID (0x80000008) reports. */
#define MAXPHYADDR 48

static inline int require_cpl0(struct x86emu_ctx *c)
{
	return c->cpu.cpl == 0 ? XS_OK : raise_gp(c, 0);
}

static inline unsigned iopl(const struct x86emu_cpu *cpu)
{
	return (unsigned)((cpu->rflags >> 12) & 3);
}

/* A hook's answer: only "retry" stops the instruction. */
static inline int hook(int rc)
{
	return rc == X86EMU_CB_RETRY ? XS_RETRY : XS_OK;
}

/* ---- control and debug registers -------------------------------------------------- */

static void cpuid(const struct x86emu_ctx *c, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	if (c->env->cpuid)
		c->env->cpuid(c->env->opaque, leaf, subleaf, out);
	else
		x86emu_cpuid_default(leaf, subleaf, out);
}

/* CPUID registers, in the order of a leaf's answer. */
enum { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

/*
 * Whether this CPU offers a feature: bit @bit of register @reg of leaf
 * @leaf (subleaf 0).  An instruction or a CR4 bit of a feature the
 * machine's CPUID hides does not exist (#UD, or #GP for the CR4 bit).
 */
static bool offers(const struct x86emu_ctx *c, uint32_t leaf, unsigned reg, unsigned bit)
{
	uint32_t out[4];

	cpuid(c, leaf, 0, out);
	return (out[reg] >> bit) & 1;
}

/*
 * MAXPHYADDR as this CPU reports it (CPUID 0x80000008 EAX[7:0]), so that the
 * CR3 bits MOV rejects are the ones the machine's page walker treats as
 * reserved.
 */
static unsigned maxphyaddr(const struct x86emu_ctx *c)
{
	uint32_t out[4];

	cpuid(c, 0x80000000, 0, out);
	if (out[0] < 0x80000008)
		return 36;	/* SDM CPUID: without the leaf, 36 bits */
	cpuid(c, 0x80000008, 0, out);
	unsigned m = out[0] & 0xff;
	return m >= 32 && m <= 52 ? m : 52;
}

static int write_cr(struct x86emu_ctx *c, unsigned cr, uint64_t v)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint64_t old;

	switch (cr) {
	case 0:
		/* SDM MOV CR / 2.5: high bits reserved (#GP); reserved low bits are ignored. */
		if (v >> 32)
			return raise_gp(c, 0);
		v &= X86EMU_CR0_PE | X86EMU_CR0_MP | X86EMU_CR0_EM | X86EMU_CR0_TS |
		     X86EMU_CR0_NE | X86EMU_CR0_WP | X86EMU_CR0_AM | X86EMU_CR0_NW |
		     X86EMU_CR0_CD | X86EMU_CR0_PG;
		v |= X86EMU_CR0_ET;	/* hardwired to 1 */
		if ((v & X86EMU_CR0_PG) && !(v & X86EMU_CR0_PE))
			return raise_gp(c, 0);
		if ((v & X86EMU_CR0_NW) && !(v & X86EMU_CR0_CD))
			return raise_gp(c, 0);
		/* Clearing PG (or PE) in 64-bit mode is #GP: long mode is left via compat mode. */
		if ((cpu->efer & X86EMU_EFER_LMA) && !(v & X86EMU_CR0_PG))
			return raise_gp(c, 0);
		old = cpu->cr0;
		break;
	case 2:
		cpu->cr2 = v;
		return XS_OK;
	case 3:
		/*
		 * With CR4.PCIDE, bit 63 asks not to flush and is not stored
		 * (SDM 4.10.4.1): the hook sees it (so the TLB keeps the PCID's
		 * entries), CR3 does not.
		 */
		if ((v & ~((cpu->cr4 & X86EMU_CR4_PCIDE) ? 1ull << 63 : 0)) >> maxphyaddr(c))
			return raise_gp(c, 0);
		old = cpu->cr3;
		break;
	case 4: {
		/*
		 * FSGSBASE is not among them: CPUID.7.0:EBX[0] does not offer
		 * RDFSBASE and friends (they are #UD), and the bit of a feature
		 * the CPU lacks is reserved (KVM and QEMU fault it the same way).
		 */
		const uint64_t allowed = (1ull << 0) | (1ull << 1) | (1ull << 2) | (1ull << 3) |
					 X86EMU_CR4_PSE | X86EMU_CR4_PAE | (1ull << 6) |
					 X86EMU_CR4_PGE | (1ull << 8) | X86EMU_CR4_OSFXSR |
					 (1ull << 10) | X86EMU_CR4_PCIDE |
					 X86EMU_CR4_SMEP | X86EMU_CR4_SMAP;
		if (v & ~allowed)
			return raise_gp(c, 0);
		/* The bits whose features CPUID.1:EDX reports: VME and PVI (VME,
		 * bit 1), TSD (TSC, 4), DE (2), PSE (3), PAE (6), MCE (7), PGE
		 * (13), OSFXSR (FXSR, 24), OSXMMEXCPT (SSE, 25).  PCE needs
		 * none. */
		static const struct {
			uint8_t cr4_bit, edx_bit;
		} needs[] = {
			{ 0, 1 }, { 1, 1 }, { 2, 4 }, { 3, 2 }, { 4, 3 }, { 5, 6 },
			{ 6, 7 }, { 7, 13 }, { 9, 24 }, { 10, 25 },
		};
		for (unsigned i = 0; i < sizeof(needs) / sizeof(needs[0]); i++)
			if (((v >> needs[i].cr4_bit) & 1) && !offers(c, 1, CPUID_EDX, needs[i].edx_bit))
				return raise_gp(c, 0);
		/* PCID (CPUID.1:ECX[17]), SMEP and SMAP (CPUID.7.0:EBX[7], [20]). */
		if (((v & X86EMU_CR4_PCIDE) && !offers(c, 1, CPUID_ECX, 17)) ||
		    ((v & X86EMU_CR4_SMEP) && !offers(c, 7, CPUID_EBX, 7)) ||
		    ((v & X86EMU_CR4_SMAP) && !offers(c, 7, CPUID_EBX, 20)))
			return raise_gp(c, 0);
		if ((cpu->efer & X86EMU_EFER_LMA) && !(v & X86EMU_CR4_PAE))
			return raise_gp(c, 0);
		/* PCIDE may be set only with PCID 0 in CR3 (SDM MOV CR, 4.10.1). */
		if ((v & X86EMU_CR4_PCIDE) && !(cpu->cr4 & X86EMU_CR4_PCIDE) && (cpu->cr3 & 0xfff))
			return raise_gp(c, 0);
		old = cpu->cr4;
		break;
	}
	case 8:
		if (v >> 4)
			return raise_gp(c, 0);
		old = cpu->cr8;
		break;
	default:
		return raise_ud(c);
	}
	if (c->env->cr_write) {
		int rc = hook(c->env->cr_write(c->env->opaque, cr, old, v));
		if (rc != XS_OK)
			return rc;
	}
	if (cr == 0)
		cpu->cr0 = v;
	else if (cr == 3)
		cpu->cr3 = v & ~(1ull << 63);
	else if (cr == 4)
		cpu->cr4 = v;
	else
		cpu->cr8 = v;
	return XS_OK;
}

static inline bool cpu_cr4_de(const struct x86emu_ctx *c)
{
	return (c->cpu.cr4 & X86EMU_CR4_DE) != 0;
}

static int exec_mov_special(struct x86emu_ctx *c)
{
	const ZydisDecodedOperand *dst = &c->ops[0], *src = &c->ops[1];
	ZydisRegisterClass dcls = dst->type == ZYDIS_OPERAND_TYPE_REGISTER
				  ? ZydisRegisterGetClass(dst->reg.value) : ZYDIS_REGCLASS_INVALID;
	ZydisRegisterClass scls = src->type == ZYDIS_OPERAND_TYPE_REGISTER
				  ? ZydisRegisterGetClass(src->reg.value) : ZYDIS_REGCLASS_INVALID;
	uint64_t v;
	int rc;

	if (dcls == ZYDIS_REGCLASS_CONTROL || scls == ZYDIS_REGCLASS_CONTROL) {
		rc = require_cpl0(c);
		if (rc != XS_OK)
			return rc;
		if (dcls == ZYDIS_REGCLASS_CONTROL)
			return write_cr(c, (unsigned)(dst->reg.value - ZYDIS_REGISTER_CR0),
					x86emu__reg_read(&c->cpu, src->reg.value));
		unsigned cr = (unsigned)(src->reg.value - ZYDIS_REGISTER_CR0);
		if (cr != 0 && cr != 2 && cr != 3 && cr != 4 && cr != 8)
			return raise_ud(c);
		x86emu__reg_write(&c->cpu, dst->reg.value, x86emu__reg_read(&c->cpu, src->reg.value));
		return XS_OK;
	}
	if (dcls == ZYDIS_REGCLASS_DEBUG || scls == ZYDIS_REGCLASS_DEBUG) {
		/* The breakpoints they describe are debug.c's. */
		rc = require_cpl0(c);
		if (rc != XS_OK)
			return rc;
		bool to_dr = dcls == ZYDIS_REGCLASS_DEBUG;
		unsigned dr = (unsigned)((to_dr ? dst : src)->reg.value - ZYDIS_REGISTER_DR0);
		if (dr > 7)
			return raise_ud(c);	/* DR8-DR15 do not exist */
		/* SDM MOV DR: DR4/DR5 are #UD with CR4.DE, else they alias DR6/DR7. */
		if (dr == 4 || dr == 5) {
			if (cpu_cr4_de(c))
				return raise_ud(c);
			dr += 2;
		}
		/* General detect: any MOV DR is a #DB fault with DR6.BD, and
		 * DR7.GD is cleared for the handler (on delivery: cpu.c). */
		if (c->cpu.dr[7] & X86EMU_DR7_GD) {
			c->db_fault = X86EMU_DR6_BD;
			return raise_fault(c, X86EMU_EXC_DB, false, 0);
		}
		if (!to_dr) {
			v = c->cpu.dr[dr];
			/* Fixed bits: DR6 reads 1s outside B0-B3, BD, BS, BT; DR7 bit 10 is 1. */
			if (dr == 6)
				v = (v & 0xe00full) | 0xffff0ff0ull;
			else if (dr == 7)
				v = (v & 0xffff23ffull) | 0x400ull;
			x86emu__reg_write(&c->cpu, dst->reg.value, v);
			return XS_OK;
		}
		v = x86emu__reg_read(&c->cpu, src->reg.value);
		/* In 64-bit mode bits 63:32 of DR6 and DR7 are reserved (#GP(0)). */
		if ((dr == 6 || dr == 7) && (v >> 32))
			return raise_gp(c, 0);
		c->cpu.dr[dr] = v;
		return XS_OK;
	}
	if (dcls == ZYDIS_REGCLASS_SEGMENT) {
		unsigned sreg = (unsigned)(dst->reg.value - ZYDIS_REGISTER_ES);
		rc = x86emu__op_read(c, 1, &v);
		if (rc != XS_OK)
			return rc;
		if (sreg == X86EMU_CS)
			return raise_ud(c);
		return x86emu__load_data_segment(c, sreg, (uint16_t)v);
	}
	/* MOV r/m, Sreg: a register destination gets the selector zero-extended. */
	return x86emu__op_write(c, 0, x86emu__reg_read(&c->cpu, src->reg.value));
}

/* ---- MSRs, CPUID, TSC ---------------------------------------------------------------- */

static uint64_t read_tsc(struct x86emu_ctx *c)
{
	return c->env->rdtsc ? c->env->rdtsc(c->env->opaque) : c->cpu.tsc;
}

static int exec_msr(struct x86emu_ctx *c, bool write)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint32_t msr = (uint32_t)cpu->gpr[X86EMU_RCX];
	uint64_t v = (cpu->gpr[X86EMU_RDX] << 32) | (cpu->gpr[X86EMU_RAX] & 0xffffffffull);
	uint64_t *slot = NULL;
	bool needs_canonical = false;
	int rc = require_cpl0(c);

	if (rc != XS_OK)
		return rc;
	/*
	 * IA32_TSC is architectural (CPUID.1:EDX.TSC and MSR): without an
	 * env->rdtsc the counter is cpu->tsc, so WRMSR must be able to set it
	 * whether or not the machine has an msr_write hook.
	 */
	bool own_tsc = msr == X86EMU_MSR_TSC && !c->env->rdtsc;
	switch (msr) {
	case X86EMU_MSR_EFER: slot = &cpu->efer; break;
	case X86EMU_MSR_STAR: slot = &cpu->star; break;
	case X86EMU_MSR_LSTAR: slot = &cpu->lstar; needs_canonical = true; break;
	case X86EMU_MSR_CSTAR: slot = &cpu->cstar; needs_canonical = true; break;
	case X86EMU_MSR_SFMASK: slot = &cpu->sfmask; break;
	case X86EMU_MSR_FS_BASE: slot = &cpu->seg[X86EMU_FS].base; needs_canonical = true; break;
	case X86EMU_MSR_GS_BASE: slot = &cpu->seg[X86EMU_GS].base; needs_canonical = true; break;
	case X86EMU_MSR_KERNEL_GS_BASE: slot = &cpu->kernel_gs_base; needs_canonical = true; break;
	case X86EMU_MSR_TSC_AUX: slot = &cpu->tsc_aux; break;
	default: break;
	}
	if (!write) {
		if (msr == X86EMU_MSR_TSC) {
			v = read_tsc(c);
		} else if (slot) {
			v = *slot;
		} else {
			int cb = c->env->msr_read ? c->env->msr_read(c->env->opaque, msr, &v)
						  : X86EMU_CB_FAULT;
			if (cb == X86EMU_CB_RETRY)
				return XS_RETRY;
			if (cb != X86EMU_CB_OK)
				return raise_gp(c, 0);
		}
		x86emu__gpr_write(cpu, X86EMU_RAX, 32, v);
		x86emu__gpr_write(cpu, X86EMU_RDX, 32, v >> 32);
		return XS_OK;
	}
	if (needs_canonical && !is_canonical(v))
		return raise_gp(c, 0);
	if (msr == X86EMU_MSR_EFER) {
		/* SCE, LME, NXE are writable; LMA is read-only; LME may not change with paging on. */
		if (v & ~(X86EMU_EFER_SCE | X86EMU_EFER_LME | X86EMU_EFER_LMA | X86EMU_EFER_NXE))
			return raise_gp(c, 0);
		if ((cpu->cr0 & X86EMU_CR0_PG) && ((v ^ cpu->efer) & X86EMU_EFER_LME))
			return raise_gp(c, 0);
		v = (v & ~X86EMU_EFER_LMA) | (cpu->efer & X86EMU_EFER_LMA);
	}
	if (msr == X86EMU_MSR_TSC_AUX && (v >> 32))
		return raise_gp(c, 0);
	if (c->env->msr_write) {
		int cb = c->env->msr_write(c->env->opaque, msr, v);
		if (cb == X86EMU_CB_RETRY)
			return XS_RETRY;
		if (cb != X86EMU_CB_OK && !slot && !own_tsc)
			return raise_gp(c, 0);
	} else if (!slot && !own_tsc) {
		return raise_gp(c, 0);
	}
	if (slot)
		*slot = v;
	else if (msr == X86EMU_MSR_TSC)
		cpu->tsc = v;
	return XS_OK;
}

void x86emu_cpuid_default(uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	memset(out, 0, 4 * sizeof(uint32_t));
	switch (leaf) {
	case 0:
		out[0] = 7;
		memcpy(&out[1], "vmmu", 4);	/* EBX, EDX, ECX spell "vmmu x86emu " */
		memcpy(&out[3], " x86", 4);
		memcpy(&out[2], "emu ", 4);
		break;
	case 1:
		out[0] = 0x000606a0;	/* family 6 */
		/* ECX: CX16 (13), PCID (17), POPCNT (23), hypervisor (31). */
		out[2] = (1u << 13) | (1u << 17) | (1u << 23) | (1u << 31);
		/*
		 * EDX: DE (2: CR4.DE, I/O breakpoints, DR4/DR5 #UD, all
		 * implemented), PSE (3), TSC (4), MSR (5), PAE (6), CX8 (8),
		 * PGE (13), CMOV (15).
		 */
		out[3] = (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) |
			 (1u << 13) | (1u << 15);
		break;
	case 7:
		/* EBX: SMEP (7), INVPCID (10), SMAP (20). */
		if (subleaf == 0)
			out[1] = (1u << 7) | (1u << 10) | (1u << 20);
		break;
	case 0x80000000:
		out[0] = 0x80000008;
		break;
	case 0x80000001:
		out[2] = 1u << 0;	/* LAHF/SAHF in 64-bit mode */
		/* SYSCALL (11), NX (20), 1 GiB pages (26), RDTSCP (27), LM (29). */
		out[3] = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29);
		break;
	case 0x80000008:
		out[0] = MAXPHYADDR | (48u << 8);
		break;
	default:
		break;
	}
}

/* ---- SYSCALL / SYSRET (SDM vol. 2B) ----------------------------------------------------- */

static void flat_segment(struct x86emu_segment *s, uint16_t sel, bool code, unsigned dpl)
{
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffffu;
	/* SYSCALL/SYSRET load fixed descriptors, not the GDT's. */
	s->attr = (uint16_t)((code ? 0x9b : 0x93) | (dpl << 5) | (1u << 15) |
			     (code ? X86EMU_SEG_ATTR_L : X86EMU_SEG_ATTR_DB));
}

static int exec_syscall(struct x86emu_ctx *c)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint16_t base_sel = (uint16_t)(cpu->star >> 32);

	if (!(cpu->efer & X86EMU_EFER_SCE))
		return raise_ud(c);
	cpu->gpr[X86EMU_RCX] = c->next_rip;
	cpu->gpr[X86EMU_R11] = cpu->rflags & ~X86EMU_FLAG_RF;
	cpu->rflags = (cpu->rflags & ~cpu->sfmask & ~X86EMU_FLAG_RF) | X86EMU_FLAG_FIXED;
	flat_segment(&cpu->seg[X86EMU_CS], base_sel & 0xfffc, true, 0);
	flat_segment(&cpu->seg[X86EMU_SS], (uint16_t)(base_sel + 8), false, 0);
	cpu->cpl = 0;
	cpu->rip = cpu->lstar;
	return XS_OK;
}

static int exec_sysret(struct x86emu_ctx *c)
{
	struct x86emu_cpu *cpu = &c->cpu;
	uint16_t base_sel = (uint16_t)(cpu->star >> 48);
	bool to64 = c->insn.operand_width == 64;
	uint64_t rip = cpu->gpr[X86EMU_RCX];

	if (!(cpu->efer & X86EMU_EFER_SCE))
		return raise_ud(c);
	if (cpu->cpl != 0)
		return raise_gp(c, 0);
	if (to64 && !is_canonical(rip))
		return raise_gp(c, 0);	/* Intel checks RCX before leaving ring 0 */
	if (to64) {
		flat_segment(&cpu->seg[X86EMU_CS], (uint16_t)((base_sel + 16) | 3), true, 3);
	} else {
		/* A return to 32-bit compatibility mode: outside this interpreter's contract. */
		flat_segment(&cpu->seg[X86EMU_CS], (uint16_t)(base_sel | 3), true, 3);
		cpu->seg[X86EMU_CS].attr = (uint16_t)((cpu->seg[X86EMU_CS].attr & ~X86EMU_SEG_ATTR_L) |
						      X86EMU_SEG_ATTR_DB);
		rip &= 0xffffffffull;
	}
	flat_segment(&cpu->seg[X86EMU_SS], (uint16_t)((base_sel + 8) | 3), false, 3);
	cpu->rflags = (cpu->gpr[X86EMU_R11] & 0x3c7fd7ull) | X86EMU_FLAG_FIXED;
	cpu->cpl = 3;
	cpu->rip = rip;
	return XS_OK;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

bool x86emu__is_system(ZydisMnemonic m)
{
	switch (m) {
	case ZYDIS_MNEMONIC_IRETQ: case ZYDIS_MNEMONIC_IRETD: case ZYDIS_MNEMONIC_IRET:
	case ZYDIS_MNEMONIC_INT:
	case ZYDIS_MNEMONIC_INT3: case ZYDIS_MNEMONIC_INT1: case ZYDIS_MNEMONIC_HLT: case ZYDIS_MNEMONIC_CLI:
	case ZYDIS_MNEMONIC_STI: case ZYDIS_MNEMONIC_IN: case ZYDIS_MNEMONIC_OUT:
	case ZYDIS_MNEMONIC_CPUID: case ZYDIS_MNEMONIC_RDMSR: case ZYDIS_MNEMONIC_WRMSR:
	case ZYDIS_MNEMONIC_RDTSC: case ZYDIS_MNEMONIC_RDTSCP: case ZYDIS_MNEMONIC_SWAPGS:
	case ZYDIS_MNEMONIC_SYSCALL: case ZYDIS_MNEMONIC_SYSRET: case ZYDIS_MNEMONIC_LGDT:
	case ZYDIS_MNEMONIC_LIDT: case ZYDIS_MNEMONIC_SGDT: case ZYDIS_MNEMONIC_SIDT:
	case ZYDIS_MNEMONIC_LTR: case ZYDIS_MNEMONIC_STR: case ZYDIS_MNEMONIC_LLDT:
	case ZYDIS_MNEMONIC_SLDT: case ZYDIS_MNEMONIC_INVLPG: case ZYDIS_MNEMONIC_INVPCID:
	case ZYDIS_MNEMONIC_WBINVD: case ZYDIS_MNEMONIC_INVD: case ZYDIS_MNEMONIC_CLTS:
	case ZYDIS_MNEMONIC_CLAC: case ZYDIS_MNEMONIC_STAC: case ZYDIS_MNEMONIC_LSS:
	case ZYDIS_MNEMONIC_LFS: case ZYDIS_MNEMONIC_LGS: case ZYDIS_MNEMONIC_SMSW:
	case ZYDIS_MNEMONIC_LMSW: case ZYDIS_MNEMONIC_LAR: case ZYDIS_MNEMONIC_LSL:
	case ZYDIS_MNEMONIC_VERR: case ZYDIS_MNEMONIC_VERW:
		return true;
	default:
		return false;
	}
}

/*
 * SDM vol. 1 19.5: at CPL > IOPL the TSS's I/O permission bitmap decides.
 * The 16-bit map base is at TSS offset 0x66; the bits of every byte of the
 * access (ports port..port+size-1) must be clear.  The processor reads two
 * bitmap bytes, at base + port / 8, for every access, and both must lie
 * within the TSS limit; a TR that is not a present 64-bit TSS, or a base
 * word beyond the limit, also means #GP(0).
 */
int x86emu__io_permission(struct x86emu_ctx *c, uint16_t port, unsigned size)
{
	const struct x86emu_segment *tr = &c->cpu.tr;
	unsigned type = tr->attr & 0x1f;	/* S and type: 0x09 or 0x0b */
	uint8_t buf[2];
	int rc;

	if (c->cpu.cpl <= iopl(&c->cpu))
		return XS_OK;
	if (!(tr->attr & X86EMU_SEG_ATTR_P) || (type != 0x09 && type != 0x0b) ||
	    tr->limit < 0x67)
		return raise_gp(c, 0);
	rc = x86emu__mem_read(c, tr->base + 0x66, 2, buf, X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
	if (rc != XS_OK)
		return rc;
	uint64_t off = (uint64_t)(buf[0] | (buf[1] << 8)) + port / 8;
	if (off + 1 > tr->limit)
		return raise_gp(c, 0);
	rc = x86emu__mem_read(c, tr->base + off, 2, buf, X86EMU_ACCESS_IMPLICIT_SUPERVISOR);
	if (rc != XS_OK)
		return rc;
	unsigned bits = (unsigned)(buf[0] | (buf[1] << 8)) >> (port & 7);
	return (bits & ((1u << size) - 1)) ? raise_gp(c, 0) : XS_OK;
}

static int exec_io(struct x86emu_ctx *c, bool in)
{
	/* Port operand: imm8 or DX; data operand: AL/AX/EAX. */
	const ZydisDecodedOperand *port_op = &c->ops[in ? 1 : 0];
	const ZydisDecodedOperand *data_op = &c->ops[in ? 0 : 1];
	uint16_t port = port_op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE
			? (uint16_t)(port_op->imm.value.u & 0xff)
			: (uint16_t)c->cpu.gpr[X86EMU_RDX];
	unsigned size = data_op->size / 8;
	int cb;

	cb = x86emu__io_permission(c, port, size);
	if (cb != XS_OK)
		return cb;
	if (in) {
		uint32_t v = 0xffffffffu;
		cb = c->env->io_in ? c->env->io_in(c->env->opaque, port, size, &v) : X86EMU_CB_OK;
		if (cb == X86EMU_CB_RETRY)
			return XS_RETRY;
		x86emu__reg_write(&c->cpu, data_op->reg.value, v);
	} else {
		uint32_t v = (uint32_t)(c->cpu.gpr[X86EMU_RAX] & width_mask(size * 8));
		cb = c->env->io_out ? c->env->io_out(c->env->opaque, port, size, v) : X86EMU_CB_OK;
		if (cb == X86EMU_CB_RETRY)
			return XS_RETRY;
	}
	x86emu__io_breakpoints(c, port, size);
	return XS_OK;
}

static int exec_other(struct x86emu_ctx *c)
{
	struct x86emu_cpu *cpu = &c->cpu;
	ZydisMnemonic mn = c->insn.mnemonic;
	int rc;

	switch (mn) {
	case ZYDIS_MNEMONIC_HLT:
		rc = require_cpl0(c);
		return rc != XS_OK ? rc : XS_HALT;
	case ZYDIS_MNEMONIC_CLI:
	case ZYDIS_MNEMONIC_STI:
		/* SDM CLI/STI: protected mode without VME/PVI: CPL must be <= IOPL. */
		if (cpu->cpl > iopl(cpu))
			return raise_gp(c, 0);
		if (mn == ZYDIS_MNEMONIC_CLI) {
			cpu->rflags &= ~X86EMU_FLAG_IF;
		} else {
			/* STI with IF clear delays interrupts by one instruction (SDM 6.8.3). */
			if (!(cpu->rflags & X86EMU_FLAG_IF))
				cpu->intr_shadow = true;
			cpu->rflags |= X86EMU_FLAG_IF;
		}
		return XS_OK;
	case ZYDIS_MNEMONIC_CPUID: {
		uint32_t out[4];
		uint32_t leaf = (uint32_t)cpu->gpr[X86EMU_RAX], sub = (uint32_t)cpu->gpr[X86EMU_RCX];
		cpuid(c, leaf, sub, out);
		x86emu__gpr_write(cpu, X86EMU_RAX, 32, out[0]);
		x86emu__gpr_write(cpu, X86EMU_RBX, 32, out[1]);
		x86emu__gpr_write(cpu, X86EMU_RCX, 32, out[2]);
		x86emu__gpr_write(cpu, X86EMU_RDX, 32, out[3]);
		return XS_OK;
	}
	case ZYDIS_MNEMONIC_RDTSC:
	case ZYDIS_MNEMONIC_RDTSCP: {
		/* RDTSCP: CPUID.80000001H:EDX[27]. */
		if (mn == ZYDIS_MNEMONIC_RDTSCP && !offers(c, 0x80000001, CPUID_EDX, 27))
			return raise_ud(c);
		if ((cpu->cr4 & (1ull << 2)) && cpu->cpl != 0)	/* CR4.TSD */
			return raise_gp(c, 0);
		uint64_t t = read_tsc(c);
		x86emu__gpr_write(cpu, X86EMU_RAX, 32, t);
		x86emu__gpr_write(cpu, X86EMU_RDX, 32, t >> 32);
		if (mn == ZYDIS_MNEMONIC_RDTSCP)
			x86emu__gpr_write(cpu, X86EMU_RCX, 32, cpu->tsc_aux);
		return XS_OK;
	}
	case ZYDIS_MNEMONIC_SWAPGS: {
		rc = require_cpl0(c);
		if (rc != XS_OK)
			return rc;
		uint64_t t = cpu->seg[X86EMU_GS].base;
		cpu->seg[X86EMU_GS].base = cpu->kernel_gs_base;
		cpu->kernel_gs_base = t;
		return XS_OK;
	}
	case ZYDIS_MNEMONIC_INVLPG: {
		rc = require_cpl0(c);
		if (rc != XS_OK)
			return rc;
		/* The linear address, FS/GS base included; non-canonical is a no-op (SDM INVLPG). */
		uint64_t ea = x86emu__ea(c, &c->ops[0]), la = ea;
		if (c->ops[0].mem.segment == ZYDIS_REGISTER_FS)
			la += cpu->seg[X86EMU_FS].base;
		else if (c->ops[0].mem.segment == ZYDIS_REGISTER_GS)
			la += cpu->seg[X86EMU_GS].base;
		if (c->env->invlpg && is_canonical(la))
			return hook(c->env->invlpg(c->env->opaque, la));
		return XS_OK;
	}
	case ZYDIS_MNEMONIC_INVPCID: {
		uint64_t type, ea, la;
		uint8_t d[16];
		if (!offers(c, 7, CPUID_EBX, 10))	/* INVPCID: CPUID.7.0:EBX[10] */
			return raise_ud(c);
		rc = require_cpl0(c);
		if (rc == XS_OK)
			rc = x86emu__op_read(c, 0, &type);
		if (rc != XS_OK)
			return rc;
		ea = x86emu__ea(c, &c->ops[1]);
		rc = x86emu__linear(c, c->ops[1].mem.segment, ea, 16, &la);
		if (rc == XS_OK)
			rc = x86emu__mem_read(c, la, 16, d, X86EMU_ACCESS_DATA);
		if (rc != XS_OK)
			return rc;
		uint64_t pcid = 0, va = 0;
		for (unsigned i = 0; i < 8; i++) {
			pcid |= (uint64_t)d[i] << (8 * i);
			va |= (uint64_t)d[8 + i] << (8 * i);
		}
		/* SDM INVPCID: type > 3, descriptor bits 63:12, bad address, PCID without PCIDE. */
		if (type > 3 || (pcid >> 12))
			return raise_gp(c, 0);
		if (type == 0 && !is_canonical(va))
			return raise_gp(c, 0);
		if (type <= 1 && pcid && !(cpu->cr4 & X86EMU_CR4_PCIDE))
			return raise_gp(c, 0);
		if (c->env->invpcid)
			return hook(c->env->invpcid(c->env->opaque, type, pcid, va));
		return XS_OK;
	}
	case ZYDIS_MNEMONIC_WBINVD:
	case ZYDIS_MNEMONIC_INVD:
		return require_cpl0(c);	/* caches are not modelled */
	case ZYDIS_MNEMONIC_SMSW:
		/*
		 * CR0 at the operand size into a register (16 bits leave the
		 * rest, 32 zero-extend), its low word into memory.  Any CPL:
		 * CR4.UMIP is not offered (a reserved bit for MOV to CR4).
		 */
		return x86emu__op_write(c, 0, cpu->cr0);
	case ZYDIS_MNEMONIC_LMSW: {
		/*
		 * SDM LMSW: only PE, MP, EM and TS, and PE cannot be cleared;
		 * through MOV CR0's checks and hook, so the machine follows.
		 */
		uint64_t v;
		rc = require_cpl0(c);
		if (rc == XS_OK)
			rc = x86emu__op_read(c, 0, &v);
		if (rc != XS_OK)
			return rc;
		v = (cpu->cr0 & ~0xeull) | (v & 0xf);
		return write_cr(c, 0, v);
	}
	case ZYDIS_MNEMONIC_CLTS:
		/* A CR0 write like LMSW's: the machine's cr_write hook hears of it. */
		rc = require_cpl0(c);
		return rc != XS_OK ? rc : write_cr(c, 0, cpu->cr0 & ~X86EMU_CR0_TS);
	case ZYDIS_MNEMONIC_CLAC:
	case ZYDIS_MNEMONIC_STAC:
		/* SDM CLAC/STAC: #UD at CPL > 0, or without SMAP (CPUID.7.0:EBX[20]). */
		if (cpu->cpl != 0 || !offers(c, 7, CPUID_EBX, 20))
			return raise_ud(c);
		if (mn == ZYDIS_MNEMONIC_CLAC)
			cpu->rflags &= ~X86EMU_FLAG_AC;
		else
			cpu->rflags |= X86EMU_FLAG_AC;
		return XS_OK;
	default:
		return raise_ud(c);
	}
}

int x86emu__exec_system(struct x86emu_ctx *c)
{
	ZydisMnemonic mn = c->insn.mnemonic;
	int rc;

	/* Instructions that set RIP themselves. */
	if (c->insn.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) {
		if (mn == ZYDIS_MNEMONIC_RET)
			return x86emu__far_return(c, false);
		return x86emu__far_branch(c, mn == ZYDIS_MNEMONIC_CALL);
	}
	switch (mn) {
	case ZYDIS_MNEMONIC_IRETQ:
	case ZYDIS_MNEMONIC_IRETD:
	case ZYDIS_MNEMONIC_IRET:	/* 16-bit */
		return x86emu__far_return(c, true);
	case ZYDIS_MNEMONIC_INT:
	case ZYDIS_MNEMONIC_INT3: {
		uint8_t vector = mn == ZYDIS_MNEMONIC_INT3 ? X86EMU_EXC_BP
							    : (uint8_t)c->ops[0].imm.value.u;
		/* A software interrupt: trap-like, returns after the instruction. */
		return x86emu__deliver(c, vector, false, 0, EVENT_SOFTWARE, c->next_rip);
	}
	case ZYDIS_MNEMONIC_INT1:
		/*
		 * INT1 (ICEBP, F1) is #DB as the processor raises it: trap-like
		 * (RIP after the instruction), no gate DPL check, EXT set in
		 * error codes.  The host delivers it so from CPL 3.
		 */
		return x86emu__deliver(c, X86EMU_EXC_DB, false, 0, EVENT_TRAP, c->next_rip);
	case ZYDIS_MNEMONIC_SYSCALL:
		return exec_syscall(c);
	case ZYDIS_MNEMONIC_SYSRET:
		return exec_sysret(c);
	default:
		break;
	}

	switch (mn) {
	case ZYDIS_MNEMONIC_MOV:
		rc = exec_mov_special(c);
		break;
	case ZYDIS_MNEMONIC_POP: {
		uint64_t v;
		unsigned size = c->insn.operand_width / 8;
		unsigned sreg = (unsigned)(c->ops[0].reg.value - ZYDIS_REGISTER_ES);
		rc = x86emu__pop(c, size, &v);
		if (rc == XS_OK)
			rc = x86emu__load_data_segment(c, sreg, (uint16_t)v);
		break;
	}
	case ZYDIS_MNEMONIC_LGDT: case ZYDIS_MNEMONIC_LIDT: case ZYDIS_MNEMONIC_SGDT:
	case ZYDIS_MNEMONIC_SIDT: case ZYDIS_MNEMONIC_LTR: case ZYDIS_MNEMONIC_STR:
	case ZYDIS_MNEMONIC_LLDT: case ZYDIS_MNEMONIC_SLDT:
		rc = x86emu__exec_table(c);
		break;
	case ZYDIS_MNEMONIC_LSS: case ZYDIS_MNEMONIC_LFS: case ZYDIS_MNEMONIC_LGS:
		rc = x86emu__load_far_pointer(c);
		break;
	case ZYDIS_MNEMONIC_LAR: case ZYDIS_MNEMONIC_LSL: case ZYDIS_MNEMONIC_VERR:
	case ZYDIS_MNEMONIC_VERW:
		rc = x86emu__exec_verify(c);
		break;
	case ZYDIS_MNEMONIC_RDMSR:
	case ZYDIS_MNEMONIC_WRMSR:
		rc = exec_msr(c, mn == ZYDIS_MNEMONIC_WRMSR);
		break;
	case ZYDIS_MNEMONIC_IN:
	case ZYDIS_MNEMONIC_OUT:
		rc = exec_io(c, mn == ZYDIS_MNEMONIC_IN);
		break;
	default:
		rc = exec_other(c);
		break;
	}
	if (rc == XS_OK || rc == XS_HALT)
		c->cpu.rip = c->next_rip;
	return rc;
}
