/*
 * System registers and the instructions around them: MOV CRn/DRn/Sreg,
 * RDMSR/WRMSR, RDTSC/RDTSCP, CPUID, SYSCALL/SYSRET corner cases,
 * RD/WR FS/GS BASE, WBINVD/INVD, CLTS, CLAC/STAC, CLI, SWAPGS, INVLPG,
 * INVPCID, POP FS/GS and the invalid POP Sreg forms of 64-bit mode.
 * Expectations follow the Intel SDM; where AMD differs, the test says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"


/* A data segment descriptor: base, type (bits 43:40), DPL, P, G. */
static uint64_t data_desc(uint32_t base, unsigned type, unsigned dpl, bool present)
{
	return 0xffffull | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)type << 40) |
	       (1ull << 44) | ((uint64_t)dpl << 45) | ((uint64_t)present << 47) |
	       (0xfull << 48) | (1ull << 55) | ((uint64_t)(base >> 24) << 56);
}

/* ---- control registers ------------------------------------------------------------------- */

GUEST(g_cr2, "movabs $0xffff800012345678, %rax\n mov %rax, %cr2\n mov %cr2, %rbx\n hlt");

static void mov_to_cr2_stores_it_and_mov_from_cr2_reads_it_back(void **state)
{
	(void)state;
	LOAD(g_cr2);
	run_to_hlt();
	assert_int_equal(g_m.cpu.cr2, 0xffff800012345678ull);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0xffff800012345678ull);
	assert_false(g_m.cpu.last_exception.valid);
}

GUEST(g_cr8, "mov $0xf, %eax\n mov %rax, %cr8\n mov %cr8, %rbx\n hlt");

static void cr8_holds_the_task_priority_and_reads_back(void **state)
{
	(void)state;
	LOAD(g_cr8);
	g_m.cpu.gpr[X86EMU_RBX] = ~0ull;
	run_to_hlt();
	assert_int_equal(g_m.cpu.cr8, 0xf);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0xf);	/* all 64 bits written */
	assert_int_equal(g_m.cr_writes, 1);
	assert_int_equal(g_m.last_cr, 8);
	assert_int_equal(g_m.last_cr_value, 0xf);
}

/* SDM MOV CR: bits 63:4 of CR8 are reserved; setting one is #GP(0). */
GUEST(g_cr8_reserved, "mov $0x10, %eax\n mov %rax, %cr8\n hlt");

static void cr8_reserved_bits_are_gp_and_keep_the_tpr(void **state)
{
	(void)state;
	LOAD(g_cr8_reserved);
	g_m.cpu.cr8 = 5;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE + 5);
	assert_int_equal(g_m.cpu.cr8, 5);
	assert_int_equal(g_m.cr_writes, 0);
}

/* SDM MOV CR: CR1, CR5-CR7 and CR9-CR15 do not exist; naming one is #UD (both directions). */
static void mov_to_or_from_a_missing_control_register_is_ud(void **state)
{
	(void)state;
	static const uint8_t codes[][4] = {
		{ 0x0f, 0x22, 0xc8 },		/* mov %rax, %cr1 */
		{ 0x0f, 0x22, 0xe8 },		/* mov %rax, %cr5 */
		{ 0x0f, 0x22, 0xf0 },		/* mov %rax, %cr6 */
		{ 0x0f, 0x22, 0xf8 },		/* mov %rax, %cr7 */
		{ 0x44, 0x0f, 0x22, 0xc8 },	/* mov %rax, %cr9 */
		{ 0x44, 0x0f, 0x22, 0xf8 },	/* mov %rax, %cr15 */
		{ 0x0f, 0x20, 0xc8 },		/* mov %cr1, %rax */
		{ 0x0f, 0x20, 0xe8 },		/* mov %cr5, %rax */
		{ 0x44, 0x0f, 0x20, 0xd0 },	/* mov %cr10, %rax */
	};
	for (unsigned i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		tm_load_code(codes[i], codes[i] + 4);
		g_m.cpu.gpr[X86EMU_RAX] = 0x1234;
		run_to_hlt();
		assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1234);
		assert_int_equal(g_m.cr_writes, 0);
	}
}

/*
 * SDM MOV CR, 2.5: a 1 in CR0 bits 63:32, PG=1 with PE=0, and NW=1 with
 * CD=0 are each #GP(0), and CR0 keeps its value.
 */
GUEST(g_cr0_write, "mov %rax, %cr0\n hlt");

static void invalid_cr0_values_are_gp_and_change_nothing(void **state)
{
	(void)state;
	const uint64_t base = X86EMU_CR0_PE | X86EMU_CR0_ET | X86EMU_CR0_NE | X86EMU_CR0_PG;
	const uint64_t bad[] = {
		base | (1ull << 32),
		base | (1ull << 63),
		base & ~X86EMU_CR0_PE,			/* PG without PE */
		base | X86EMU_CR0_NW,			/* NW without CD */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		LOAD(g_cr0_write);
		uint64_t cr0 = g_m.cpu.cr0;
		g_m.cpu.gpr[X86EMU_RAX] = bad[i];
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
		assert_int_equal(g_m.cpu.cr0, cr0);
		assert_int_equal(g_m.cr_writes, 0);
	}
	/* NW together with CD is fine. */
	LOAD(g_cr0_write);
	g_m.cpu.gpr[X86EMU_RAX] = base | X86EMU_CR0_NW | X86EMU_CR0_CD;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cr0, base | X86EMU_CR0_NW | X86EMU_CR0_CD);
}

/* SDM MOV CR, 64-bit mode: clearing CR4.PAE while IA32_EFER.LMA = 1 is #GP(0). */
GUEST(g_cr4_write, "mov %rax, %cr4\n hlt");

static void clearing_cr4_pae_in_long_mode_is_gp(void **state)
{
	(void)state;
	LOAD(g_cr4_write);
	uint64_t cr4 = g_m.cpu.cr4;
	g_m.cpu.gpr[X86EMU_RAX] = cr4 & ~X86EMU_CR4_PAE;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr4, cr4);
}

/* SDM MOV CR / 4.10.1: CR4.PCIDE may go from 0 to 1 only with CR3[11:0] = 0. */
static void setting_cr4_pcide_needs_pcid_zero_in_cr3(void **state)
{
	(void)state;
	LOAD(g_cr4_write);
	g_m.cpu.cr3 = 0x5001;
	uint64_t cr4 = g_m.cpu.cr4;
	g_m.cpu.gpr[X86EMU_RAX] = cr4 | X86EMU_CR4_PCIDE;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr4, cr4);

	LOAD(g_cr4_write);
	g_m.cpu.cr3 = 0x5000;
	g_m.cpu.gpr[X86EMU_RAX] = cr4 | X86EMU_CR4_PCIDE;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cr4, cr4 | X86EMU_CR4_PCIDE);
}

static int cr_write_retry(void *opaque, unsigned cr, uint64_t old, uint64_t v)
{
	(void)opaque;
	(void)cr;
	(void)old;
	(void)v;
	return X86EMU_CB_RETRY;
}

GUEST(g_cr_writes, "mov %rax, %cr8\n hlt");

static void cr_write_hook_that_retries_leaves_the_cpu_untouched(void **state)
{
	(void)state;
	LOAD(g_cr_writes);
	g_m.env.cr_write = cr_write_retry;
	g_m.cpu.gpr[X86EMU_RAX] = 3;
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&before, &g_m.cpu, sizeof(before));
}

/*
 * The CR3 bits MOV rejects follow the machine's CPUID: MAXPHYADDR from
 * leaf 0x80000008, or 36 when that leaf is not offered (SDM CPUID).
 */
static uint32_t g_max_ext_leaf, g_maxphyaddr;

static void cpuid_policy(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	(void)opaque;
	(void)subleaf;
	memset(out, 0, 4 * sizeof(uint32_t));
	if (leaf == 0x80000000)
		out[0] = g_max_ext_leaf;
	else if (leaf == 0x80000008)
		out[0] = g_maxphyaddr;
	else if (leaf == 0x4d4d5600)
		out[0] = 0x11, out[1] = 0x22, out[2] = 0x33, out[3] = 0x44;
}

GUEST(g_cr3_write, "mov %rax, %cr3\n hlt");

static void cr3_reserved_bits_follow_the_machines_maxphyaddr(void **state)
{
	(void)state;
	const struct { uint32_t max_ext, width; uint64_t cr3; bool ok; } cases[] = {
		{ 0x80000000, 0, 1ull << 35, true },	/* no leaf 0x80000008: 36 bits */
		{ 0x80000000, 0, 1ull << 36, false },
		{ 0x80000008, 40, 1ull << 39, true },
		{ 0x80000008, 40, 1ull << 40, false },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		LOAD(g_cr3_write);
		g_m.env.cpuid = cpuid_policy;
		g_max_ext_leaf = cases[i].max_ext;
		g_maxphyaddr = cases[i].width;
		uint64_t cr3 = g_m.cpu.cr3;
		g_m.cpu.gpr[X86EMU_RAX] = cases[i].cr3;
		run_to_hlt();
		if (cases[i].ok) {
			assert_false(g_m.cpu.last_exception.valid);
			assert_int_equal(g_m.cpu.cr3, cases[i].cr3);
		} else {
			assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
			assert_int_equal(g_m.cpu.cr3, cr3);
		}
	}
}

/* ---- debug registers ----------------------------------------------------------------------- */

/* SDM MOV DR: DR8-DR15 do not exist (a REX.R names them): #UD both ways. */
GUEST(g_dr8_write, ".byte 0x44, 0x0f, 0x23, 0xc0\n hlt");	/* mov %rax, %dr8 */
GUEST(g_dr8_read, ".byte 0x44, 0x0f, 0x21, 0xc0\n hlt");	/* mov %dr8, %rax */

static void mov_to_or_from_dr8_and_above_is_ud(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_dr8_write);
		else
			LOAD(g_dr8_read);
		g_m.cpu.gpr[X86EMU_RAX] = 0x77;
		run_to_hlt();
		assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);
		assert_int_equal(g_m.cpu.dr[0], 0);
	}
}

/*
 * SDM MOV DR: with CR4.DE = 1 a MOV to DR4/DR5 is #UD too (the read side
 * is in test_x86emu_system.c); with CR4.DE = 0 it writes DR6/DR7.
 */
GUEST(g_dr5_write, "mov $0x401, %eax\n .byte 0x0f, 0x23, 0xe8\n hlt");	/* mov %rax, %dr5 */

static void mov_to_dr5_is_ud_with_cr4_de_and_writes_dr7_without(void **state)
{
	(void)state;
	LOAD(g_dr5_write);
	g_m.cpu.cr4 |= X86EMU_CR4_DE;
	run_to_hlt();
	assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE + 5);
	assert_int_equal(g_m.cpu.dr[7], 0);

	LOAD(g_dr5_write);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.dr[7], 0x401);
}

/* ---- MOV to and from segment registers ---------------------------------------------------- */

/*
 * SDM MOV: a segment register into a 32- or 64-bit register is zero-
 * extended (P6 and later), into a 16-bit register merges, and into memory
 * is always a word whatever the operand size.
 */
GUEST(g_mov_from_sreg,
      "mov %fs, %eax\n mov %gs, %rbx\n mov %fs, %cx\n"
      "mov $0x100000, %edi\n .byte 0x48, 0x8c, 0x2f\n hlt");	/* rex.w mov %gs, (%rdi) */

static void mov_from_a_segment_register_zero_extends_or_stores_a_word(void **state)
{
	(void)state;
	LOAD(g_mov_from_sreg);
	g_m.cpu.seg[X86EMU_FS].selector = 0x1b;
	g_m.cpu.seg[X86EMU_GS].selector = 0x2b;
	g_m.cpu.gpr[X86EMU_RAX] = ~0ull;
	g_m.cpu.gpr[X86EMU_RBX] = ~0ull;
	g_m.cpu.gpr[X86EMU_RCX] = 0x1111222233334444ull;
	tm_wr(&g_m, TM_DATA, 8, 0x8877665544332211ull);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1b);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x2b);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x111122223333001bull);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 0x887766554433002bull);
}

/* SDM MOV: CS cannot be a destination (#UD). */
GUEST(g_mov_cs, ".byte 0x8e, 0xc8\n hlt");	/* mov %ax, %cs */

static void mov_to_cs_is_ud(void **state)
{
	(void)state;
	LOAD(g_mov_cs);
	g_m.cpu.gpr[X86EMU_RAX] = TM_SEL_KCODE;
	run_to_hlt();
	assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
}

GUEST(g_mov_ds_mem, "mov $0x123000, %ebx\n mov (%rbx), %ds\n hlt");

static void mov_to_ds_from_memory_that_faults_is_pf(void **state)
{
	(void)state;
	LOAD(g_mov_ds_mem);
	tm_set_pages(&g_m, 0x123000, 1, TM_PAGE_ABSENT);
	g_m.cpu.seg[X86EMU_DS].selector = 0x1b;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE + 5);
	assert_int_equal(g_m.cpu.cr2, 0x123000);
	assert_int_equal(g_m.cpu.seg[X86EMU_DS].selector, 0x1b);
}

/* ---- POP FS / POP GS ---------------------------------------------------------------------- */

/* SDM POP: in 64-bit mode POP FS/GS pops 8 bytes, or 2 with a 66 prefix. */
GUEST(g_pop_fs, "pop %fs\n hlt");
GUEST(g_pop_gs16, "popw %gs\n hlt");

static void pop_fs_loads_the_selector_and_the_descriptor_base(void **state)
{
	(void)state;
	LOAD(g_pop_fs);
	gdt_put(0x38, data_desc(0x00345678, 0x3, 0, true));
	g_m.cpu.seg[X86EMU_FS].base = 0x9999000;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 8;
	tm_wr(&g_m, TM_STACK - 8, 8, 0xffffffffffff0038ull);	/* only the low word counts */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].selector, 0x38);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0x345678);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

static void pop_gs_with_a_16_bit_operand_size_pops_a_word(void **state)
{
	(void)state;
	LOAD(g_pop_gs16);
	gdt_put(0x38, data_desc(0x00abc000, 0x3, 0, true));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 8;
	tm_wr(&g_m, TM_STACK - 8, 8, 0x1234567800000038ull);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.seg[X86EMU_GS].selector, 0x38);
	assert_int_equal(g_m.cpu.seg[X86EMU_GS].base, 0xabc000);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 6);
}

/*
 * SDM POP (and MOV Sreg): a selector beyond the GDT limit, an execute-only
 * code segment, or DPL below CPL/RPL of a non-conforming segment is
 * #GP(selector); a not-present segment is #NP(selector).  The instruction
 * faults as a whole: RSP and FS are as before.
 */
static void pop_fs_with_a_bad_selector_faults_with_the_stack_unchanged(void **state)
{
	(void)state;
	const uint64_t exec_only = data_desc(0, 0x9, 0, true) | (1ull << 53);	/* code, L */
	const struct { uint16_t sel; uint64_t desc; bool user; unsigned vector; } cases[] = {
		{ 0x80, 0, false, X86EMU_EXC_GP },		/* beyond the limit */
		{ 0x38, exec_only, false, X86EMU_EXC_GP },	/* execute-only code */
		{ 0x38, data_desc(0, 0x3, 0, true), true, X86EMU_EXC_GP },	/* DPL 0, CPL 3 */
		{ 0x3b, data_desc(0, 0x3, 0, true), false, X86EMU_EXC_GP },	/* RPL 3, DPL 0 */
		{ 0x38, data_desc(0, 0x3, 0, false), false, X86EMU_EXC_NP },	/* not present */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		LOAD(g_pop_fs);
		tm_set_gate(&g_m, cases[i].vector, 0xe, 0, 1);	/* the frame on IST1 */
		if (cases[i].desc)
			gdt_put(cases[i].sel, cases[i].desc);
		if (cases[i].user)
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK - 8);
		else
			g_m.cpu.gpr[X86EMU_RSP] = TM_USER_STACK - 8;
		tm_wr(&g_m, TM_USER_STACK - 8, 8, cases[i].sel);
		struct x86emu_segment fs = g_m.cpu.seg[X86EMU_FS];
		run_to_hlt();
		assert_fault(cases[i].vector, cases[i].sel & 0xfffc, TM_CODE);
		assert_int_equal(stack_qword(4), TM_USER_STACK - 8);	/* the RSP it faulted with */
		assert_memory_equal(&g_m.cpu.seg[X86EMU_FS], &fs, sizeof(fs));
	}
}

/*
 * A null selector loads an unusable FS at any CPL.  Intel clears the base
 * (AMD without NullSelectorClearsBase keeps it); the interpreter is Intel's.
 */
static void pop_fs_of_a_null_selector_clears_the_base(void **state)
{
	(void)state;
	LOAD(g_pop_fs);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK - 8);
	g_m.cpu.seg[X86EMU_FS].base = 0x5000;
	tm_wr(&g_m, TM_USER_STACK - 8, 8, 3);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].selector, 3);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_USER_STACK);
}

GUEST(g_pop_fs_pf, "pop %fs\n hlt");

static void pop_fs_whose_stack_read_faults_is_pf_with_fs_unchanged(void **state)
{
	(void)state;
	LOAD(g_pop_fs_pf);
	tm_set_gate(&g_m, X86EMU_EXC_PF, 0xe, 0, 1);
	tm_set_pages(&g_m, 0x70000, 1, TM_PAGE_ABSENT);
	g_m.cpu.gpr[X86EMU_RSP] = 0x70000;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(stack_qword(4), 0x70000);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].selector, 0x10);
}

/* SDM POP: POP DS, POP ES and POP SS (07, 17, 1F) are invalid in 64-bit mode. */
static void pop_ds_es_ss_are_ud_in_64_bit_mode(void **state)
{
	(void)state;
	static const uint8_t codes[] = { 0x07, 0x17, 0x1f };
	for (unsigned i = 0; i < sizeof(codes); i++) {
		tm_load_code(&codes[i], &codes[i] + 1);
		g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 8;
		tm_wr(&g_m, TM_STACK - 8, 8, TM_SEL_KDATA);
		run_to_hlt();
		assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
		assert_int_equal(stack_qword(3), TM_STACK - 8);
		assert_false(g_m.cpu.intr_shadow);
	}
}

/* ---- MSRs ------------------------------------------------------------------------------------ */

GUEST(g_wrmsr, "wrmsr\n hlt");
GUEST(g_rdmsr, "rdmsr\n hlt");
GUEST(g_wrmsr_rdmsr, "wrmsr\n xor %eax, %eax\n xor %edx, %edx\n rdmsr\n hlt");

/* EDX:EAX for WRMSR, with junk in the upper halves (ignored: SDM WRMSR). */
static void set_msr_args(uint32_t msr, uint64_t v)
{
	g_m.cpu.gpr[X86EMU_RCX] = 0xdead000000000000ull | msr;	/* RCX[63:32] ignored too */
	g_m.cpu.gpr[X86EMU_RAX] = 0xaaaaaaaa00000000ull | (v & 0xffffffffull);
	g_m.cpu.gpr[X86EMU_RDX] = 0xbbbbbbbb00000000ull | (v >> 32);
}

static uint64_t edx_eax(void)
{
	return (g_m.cpu.gpr[X86EMU_RDX] << 32) | g_m.cpu.gpr[X86EMU_RAX];
}

static void msrs_the_interpreter_keeps_read_back_what_wrmsr_wrote(void **state)
{
	(void)state;
	const struct { uint32_t msr; uint64_t v; } cases[] = {
		{ X86EMU_MSR_STAR, 0x0023001000081234ull },
		{ X86EMU_MSR_LSTAR, 0xffffffff81000000ull },
		{ X86EMU_MSR_CSTAR, 0x00007fffffffffffull },
		{ X86EMU_MSR_SFMASK, 0x47700 },
		{ X86EMU_MSR_FS_BASE, 0xffff800000001000ull },
		{ X86EMU_MSR_GS_BASE, 0x00007f0000002000ull },
		{ X86EMU_MSR_TSC_AUX, 0x89abcdef },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		LOAD(g_wrmsr_rdmsr);
		set_msr_args(cases[i].msr, cases[i].v);
		run_to_hlt();
		assert_false(g_m.cpu.last_exception.valid);
		/* RDMSR zero-extends EAX and EDX into RAX and RDX. */
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], cases[i].v & 0xffffffffull);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], cases[i].v >> 32);
		assert_int_equal(edx_eax(), cases[i].v);
	}
	assert_int_equal(g_m.cpu.tsc_aux, 0x89abcdef);
	LOAD(g_wrmsr);
	set_msr_args(X86EMU_MSR_FS_BASE, 0x12345000);
	run_to_hlt();
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0x12345000);
	LOAD(g_wrmsr);
	set_msr_args(X86EMU_MSR_LSTAR, 0xffff800000400000ull);
	run_to_hlt();
	assert_int_equal(g_m.cpu.lstar, 0xffff800000400000ull);
}

/* SDM WRMSR: a non-canonical address for LSTAR, CSTAR, FS_BASE or GS_BASE is #GP(0). */
static void wrmsr_of_a_non_canonical_address_is_gp_and_changes_nothing(void **state)
{
	(void)state;
	const uint32_t msrs[] = { X86EMU_MSR_LSTAR, X86EMU_MSR_CSTAR, X86EMU_MSR_FS_BASE,
				  X86EMU_MSR_GS_BASE, X86EMU_MSR_KERNEL_GS_BASE };
	for (unsigned i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++) {
		for (unsigned k = 0; k < 2; k++) {
			LOAD(g_wrmsr);
			g_m.cpu.lstar = g_m.cpu.cstar = 0x1000;
			g_m.cpu.seg[X86EMU_FS].base = g_m.cpu.seg[X86EMU_GS].base = 0x2000;
			g_m.cpu.kernel_gs_base = 0x3000;
			set_msr_args(msrs[i], k ? 0xffff7fffffffffffull : NONCANONICAL);
			struct x86emu_cpu before = g_m.cpu;
			run_to_hlt();
			assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
			assert_int_equal(g_m.cpu.lstar, before.lstar);
			assert_int_equal(g_m.cpu.cstar, before.cstar);
			assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, before.seg[X86EMU_FS].base);
			assert_int_equal(g_m.cpu.seg[X86EMU_GS].base, before.seg[X86EMU_GS].base);
			assert_int_equal(g_m.cpu.kernel_gs_base, before.kernel_gs_base);
		}
	}
}

/*
 * Intel: IA32_TSC_AUX bits 63:32 are reserved and WRMSR with one set is
 * #GP(0).  (AMD documents no such fault; the interpreter is Intel's.)
 */
static void wrmsr_tsc_aux_with_high_bits_is_gp(void **state)
{
	(void)state;
	LOAD(g_wrmsr);
	g_m.cpu.tsc_aux = 7;
	set_msr_args(X86EMU_MSR_TSC_AUX, 0x100000001ull);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.tsc_aux, 7);
}

/*
 * IA32_TSC (MSR 10H) is architectural with CPUID.1:EDX.TSC and .MSR: RDMSR
 * reads the counter, WRMSR sets it and it counts on from there.
 */
static uint64_t fixed_tsc(void *opaque)
{
	(void)opaque;
	return 0x0123456789abcdefull;
}

static void rdmsr_and_wrmsr_of_the_tsc(void **state)
{
	(void)state;
	LOAD(g_rdmsr);
	g_m.env.rdtsc = fixed_tsc;
	set_msr_args(X86EMU_MSR_TSC, 0);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(edx_eax(), 0x0123456789abcdefull);

	/* Without env->rdtsc the interpreter keeps the counter itself. */
	LOAD(g_wrmsr_rdmsr);
	set_msr_args(X86EMU_MSR_TSC, 0x0000100000000000ull);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	uint64_t t = edx_eax();
	assert_true(t >= 0x0000100000000000ull && t < 0x0000100000000000ull + 8);
}

/*
 * IA32_EFER (SDM 2.2.1, WRMSR): bits other than SCE, LME, LMA, NXE are
 * reserved (#GP(0)); LMA is read-only, a written value is ignored.
 */
static void wrmsr_efer_with_a_reserved_bit_is_gp(void **state)
{
	(void)state;
	const uint64_t reserved[] = { 1ull << 1, 1ull << 9, 1ull << 12, 1ull << 15, 1ull << 63 };
	for (unsigned i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		LOAD(g_wrmsr);
		uint64_t efer = g_m.cpu.efer;
		set_msr_args(X86EMU_MSR_EFER, efer | reserved[i]);
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
		assert_int_equal(g_m.cpu.efer, efer);
	}
}

static void wrmsr_efer_keeps_lma_and_changes_the_writable_bits(void **state)
{
	(void)state;
	LOAD(g_wrmsr_rdmsr);
	/* LMA written as 0, NXE cleared: NXE follows, LMA does not. */
	set_msr_args(X86EMU_MSR_EFER, X86EMU_EFER_SCE | X86EMU_EFER_LME);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.efer, X86EMU_EFER_SCE | X86EMU_EFER_LME | X86EMU_EFER_LMA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], g_m.cpu.efer);	/* RDMSR sees the same */
}

/* SDM 9.8.5 (AMD APM 14.6.1 likewise): changing EFER.LME while CR0.PG = 1 is #GP(0). */
static void wrmsr_efer_changing_lme_with_paging_on_is_gp(void **state)
{
	(void)state;
	LOAD(g_wrmsr);
	uint64_t efer = g_m.cpu.efer;
	set_msr_args(X86EMU_MSR_EFER, efer & ~X86EMU_EFER_LME);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.efer, efer);
}

/* SDM RDMSR/WRMSR: #GP(0) at CPL > 0, before the MSR is looked at. */
static void rdmsr_and_wrmsr_at_cpl3_are_gp(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_rdmsr);
		else
			LOAD(g_wrmsr);
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		g_m.cpu.lstar = 0x4000;
		set_msr_args(X86EMU_MSR_LSTAR, 0x5000);
		uint64_t rax = g_m.cpu.gpr[X86EMU_RAX], rdx = g_m.cpu.gpr[X86EMU_RDX];
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
		assert_int_equal(stack_qword(2), TM_SEL_UCODE);
		assert_int_equal(g_m.cpu.lstar, 0x4000);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], rax);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], rdx);
	}
}

/* The machine's callbacks for the MSRs the interpreter does not keep. */
static int g_msr_answer;
static uint32_t g_msr_seen;
static uint64_t g_msr_value;
static unsigned g_msr_calls;

static int msr_read_cb(void *opaque, uint32_t msr, uint64_t *v)
{
	(void)opaque;
	g_msr_calls++;
	g_msr_seen = msr;
	*v = 0x1122334455667788ull;
	return g_msr_answer;
}

static int msr_write_cb(void *opaque, uint32_t msr, uint64_t v)
{
	(void)opaque;
	g_msr_calls++;
	g_msr_seen = msr;
	g_msr_value = v;
	return g_msr_answer;
}

static void load_msr_cb(const uint8_t *s, const uint8_t *e, int answer)
{
	tm_load_code(s, e);
	g_m.env.msr_read = msr_read_cb;
	g_m.env.msr_write = msr_write_cb;
	g_msr_answer = answer;
	g_msr_calls = 0;
	g_msr_seen = 0;
	g_msr_value = 0;
}

static void unknown_msr_reads_go_to_the_machine(void **state)
{
	(void)state;
	load_msr_cb(g_rdmsr, g_rdmsr_end, X86EMU_CB_OK);
	set_msr_args(0x1b, 0);	/* IA32_APIC_BASE */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_msr_seen, 0x1b);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x55667788);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x11223344);

	load_msr_cb(g_rdmsr, g_rdmsr_end, X86EMU_CB_FAULT);
	set_msr_args(0x1b, 0);
	uint64_t rax = g_m.cpu.gpr[X86EMU_RAX];
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], rax);

	load_msr_cb(g_rdmsr, g_rdmsr_end, X86EMU_CB_RETRY);
	set_msr_args(0x1b, 0);
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&before, &g_m.cpu, sizeof(before));
	assert_int_equal(g_msr_calls, 1);
}

static void unknown_msr_writes_go_to_the_machine(void **state)
{
	(void)state;
	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_OK);
	set_msr_args(0x277, 0x0007040600070406ull);	/* IA32_PAT */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_msr_seen, 0x277);
	assert_int_equal(g_msr_value, 0x0007040600070406ull);

	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_FAULT);
	set_msr_args(0x277, 1);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);

	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_RETRY);
	set_msr_args(0x277, 1);
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&before, &g_m.cpu, sizeof(before));
}

/*
 * cpu.h: msr_write also hears of the MSRs the interpreter keeps, after
 * their checks; a retry there stops the write, and a value that fails the
 * checks never reaches it.
 */
static void msr_write_hook_hears_of_kept_msrs_after_validation(void **state)
{
	(void)state;
	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_OK);
	set_msr_args(X86EMU_MSR_EFER, X86EMU_EFER_SCE | X86EMU_EFER_LME);
	run_to_hlt();
	assert_int_equal(g_msr_seen, X86EMU_MSR_EFER);
	/* The hook sees the value that takes effect: LMA as it was. */
	assert_int_equal(g_msr_value, X86EMU_EFER_SCE | X86EMU_EFER_LME | X86EMU_EFER_LMA);

	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_OK);
	set_msr_args(X86EMU_MSR_GS_BASE, NONCANONICAL);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_msr_calls, 0);

	load_msr_cb(g_wrmsr, g_wrmsr_end, X86EMU_CB_RETRY);
	set_msr_args(X86EMU_MSR_STAR, 0x1234);
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&before, &g_m.cpu, sizeof(before));
}

/* ---- RDTSC / RDTSCP ---------------------------------------------------------------------- */

GUEST(g_rdtsc, "rdtsc\n hlt");
GUEST(g_rdtscp, "rdtscp\n hlt");

static void rdtsc_loads_edx_eax_from_the_machines_counter(void **state)
{
	(void)state;
	LOAD(g_rdtsc);
	g_m.env.rdtsc = fixed_tsc;
	g_m.cpu.gpr[X86EMU_RAX] = ~0ull;
	g_m.cpu.gpr[X86EMU_RDX] = ~0ull;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x89abcdef);	/* upper halves cleared */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x01234567);
}

static void rdtsc_without_a_callback_reads_cpu_tsc(void **state)
{
	(void)state;
	LOAD(g_rdtsc);
	g_m.cpu.tsc = 0x0000000500000010ull;
	run_to_hlt();
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x10);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 5);
}

/* SDM RDTSCP: EDX:EAX as RDTSC, and ECX = IA32_TSC_AUX[31:0]. */
static void rdtscp_also_loads_ecx_with_tsc_aux(void **state)
{
	(void)state;
	LOAD(g_rdtscp);
	g_m.env.rdtsc = fixed_tsc;
	g_m.cpu.tsc_aux = 0x8765;
	g_m.cpu.gpr[X86EMU_RCX] = ~0ull;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x89abcdef);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x01234567);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x8765);
}

/* SDM RDTSC/RDTSCP: with CR4.TSD set, #GP(0) at CPL > 0 (CPL 0 still reads). */
static void rdtsc_and_rdtscp_with_cr4_tsd_are_gp_at_cpl3_only(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		const uint8_t *s = k ? g_rdtscp : g_rdtsc, *e = k ? g_rdtscp_end : g_rdtsc_end;
		const uint64_t tsd = 1ull << 2;

		tm_load_code(s, e);	/* CPL 3, TSD */
		g_m.env.rdtsc = fixed_tsc;
		g_m.cpu.cr4 |= tsd;
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		g_m.cpu.gpr[X86EMU_RAX] = 1;
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);

		tm_load_code(s, e);	/* CPL 0, TSD */
		g_m.env.rdtsc = fixed_tsc;
		g_m.cpu.cr4 |= tsd;
		run_to_hlt();
		assert_false(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x89abcdef);

		tm_load_code(s, e);	/* CPL 3, no TSD */
		g_m.env.rdtsc = fixed_tsc;
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
		assert_false(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x89abcdef);
	}
}

/* ---- CPUID --------------------------------------------------------------------------------- */

GUEST(g_cpuid, "cpuid\n hlt");

static void run_cpuid(uint32_t leaf, uint32_t subleaf)
{
	LOAD(g_cpuid);
	for (unsigned r = 0; r < 4; r++)
		g_m.cpu.gpr[r] = 0xffffffff00000000ull;
	g_m.cpu.gpr[X86EMU_RAX] |= leaf;
	g_m.cpu.gpr[X86EMU_RCX] |= subleaf;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	for (unsigned r = 0; r < 4; r++)
		assert_int_equal(g_m.cpu.gpr[r] >> 32, 0);	/* 32-bit results zero-extend */
}

static void cpuid_leaf_0_reports_the_max_leaf_and_the_vendor(void **state)
{
	(void)state;
	char vendor[13] = { 0 };
	run_cpuid(0, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 7);	/* leaves 0..7: leaf 7 is offered */
	/* The vendor string is EBX, EDX, ECX in that order. */
	uint32_t parts[3] = { (uint32_t)g_m.cpu.gpr[X86EMU_RBX], (uint32_t)g_m.cpu.gpr[X86EMU_RDX],
			      (uint32_t)g_m.cpu.gpr[X86EMU_RCX] };
	memcpy(vendor, parts, 12);
	assert_string_equal(vendor, "vmmu x86emu ");
}

/*
 * Leaf 1 names the features the interpreter implements: PSE, TSC, MSR,
 * PAE, CX8, PGE, CMOV in EDX; CX16, PCID, POPCNT in ECX; and DE (EDX 2),
 * since CR4.DE is honoured (DR4/DR5 #UD, I/O breakpoints).
 */
static void cpuid_leaf_1_reports_the_implemented_features(void **state)
{
	(void)state;
	run_cpuid(1, 0);
	uint32_t edx = (uint32_t)g_m.cpu.gpr[X86EMU_RDX], ecx = (uint32_t)g_m.cpu.gpr[X86EMU_RCX];
	const unsigned edx_bits[] = { 2, 3, 4, 5, 6, 8, 13, 15 };
	for (unsigned i = 0; i < sizeof(edx_bits) / sizeof(edx_bits[0]); i++)
		assert_true(edx & (1u << edx_bits[i]));
	assert_true(ecx & (1u << 13));
	assert_true(ecx & (1u << 17));
	assert_true(ecx & (1u << 23));
	/* Family 6 in EAX[11:8]. */
	assert_int_equal((g_m.cpu.gpr[X86EMU_RAX] >> 8) & 0xf, 6);
	/* Not offered: XSAVE/OSXSAVE (ECX 26/27), so CR4.OSXSAVE is not accepted either. */
	assert_false(ecx & (3u << 26));
}

/*
 * A leaf the CPU does not define: AMD returns zeros, Intel the highest
 * basic leaf's data.  The interpreter returns zeros (AMD's behaviour).
 */
static void cpuid_of_an_undefined_leaf_returns_zeros(void **state)
{
	(void)state;
	const uint32_t leaves[] = { 8, 0x12345678, 0x80000009 };
	for (unsigned i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		run_cpuid(leaves[i], 0);
		for (unsigned r = 0; r < 4; r++)
			assert_int_equal(g_m.cpu.gpr[r], 0);
	}
}

static void cpuid_asks_the_machines_policy_when_there_is_one(void **state)
{
	(void)state;
	LOAD(g_cpuid);
	g_m.env.cpuid = cpuid_policy;
	g_m.cpu.gpr[X86EMU_RAX] = 0x4d4d5600;
	run_to_hlt();
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x11);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x22);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x33);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x44);
}

/* ---- SYSCALL / SYSRET ---------------------------------------------------------------------- */

GUEST(g_sysretl, "sysretl");
GUEST(g_sysretq, "sysretq");
GUEST(g_syscall, "syscall");

/*
 * SDM SYSRET with a 32-bit operand size: CS = STAR[63:48] | 3 with L = 0,
 * D = 1 (compatibility mode), SS = (STAR[63:48] + 8) | 3, RIP = ECX.  The
 * interpreter commits that and stops: compatibility mode is outside its
 * contract (X86EMU_EXIT_BAD_MODE).
 */
static void sysret_with_a_32_bit_operand_size_returns_to_compatibility_mode(void **state)
{
	(void)state;
	LOAD(g_sysretl);
	g_m.cpu.star = (uint64_t)0x10 << 48;
	g_m.cpu.gpr[X86EMU_RCX] = 0xffffffff00401000ull;
	g_m.cpu.gpr[X86EMU_R11] = X86EMU_FLAG_IF | X86EMU_FLAG_CF | X86EMU_FLAG_RF | X86EMU_FLAG_VM;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BAD_MODE);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cpl, 3);
	assert_int_equal(g_m.cpu.rip, 0x00401000);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x13);
	assert_false(g_m.cpu.seg[X86EMU_CS].attr & X86EMU_SEG_ATTR_L);
	assert_true(g_m.cpu.seg[X86EMU_CS].attr & X86EMU_SEG_ATTR_DB);
	assert_int_equal((g_m.cpu.seg[X86EMU_CS].attr >> 5) & 3, 3);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0x1b);
	/* RFLAGS from R11 with RF and VM cleared, bit 1 set. */
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_IF | X86EMU_FLAG_CF | X86EMU_FLAG_FIXED);
}

/*
 * SDM SYSRET: a non-canonical RCX for a return to 64-bit mode is #GP(0)
 * taken at CPL 0, before anything changes.  (AMD returns and faults at
 * CPL 3 on the fetch; the interpreter does what Intel does.)
 */
static void sysret_to_a_non_canonical_rcx_is_gp_at_cpl0(void **state)
{
	(void)state;
	LOAD(g_sysretq);
	g_m.cpu.star = (uint64_t)0x10 << 48;
	g_m.cpu.gpr[X86EMU_RCX] = NONCANONICAL;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(stack_qword(2), TM_SEL_KCODE);		/* pushed from ring 0 */
	assert_int_equal(stack_qword(4), TM_STACK);		/* on the kernel stack */
	assert_int_equal(g_m.cpu.cpl, 0);
}

static void sysret_at_cpl3_is_gp(void **state)
{
	(void)state;
	LOAD(g_sysretq);
	g_m.cpu.gpr[X86EMU_RCX] = TM_CODE;
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(stack_qword(2), TM_SEL_UCODE);
}

/* SDM SYSCALL/SYSRET: #UD when IA32_EFER.SCE = 0 (checked before the CPL for SYSRET). */
static void syscall_and_sysret_are_ud_without_efer_sce(void **state)
{
	(void)state;
	const struct { const uint8_t *s, *e; bool user; } cases[] = {
		{ g_syscall, g_syscall_end, true },
		{ g_syscall, g_syscall_end, false },
		{ g_sysretq, g_sysretq_end, false },
		{ g_sysretq, g_sysretq_end, true },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_load_code(cases[i].s, cases[i].e);
		g_m.cpu.efer &= ~X86EMU_EFER_SCE;
		g_m.cpu.lstar = TM_CODE + 0x100;
		g_m.cpu.gpr[X86EMU_RCX] = TM_CODE + 0x200;
		if (cases[i].user)
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		run_to_hlt();
		assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], TM_CODE + 0x200);
	}
}

/* ---- RDFSBASE and friends ----------------------------------------------------------------- */

/*
 * CPUID.7.0:EBX.FSGSBASE is 0 and CR4.FSGSBASE cannot be set, so the four
 * instructions are #UD (SDM: #UD if CR4.FSGSBASE = 0), even with an
 * operand that WR*BASE would otherwise reject with #GP.
 */
GUEST(g_fsgsbase,
      "rdfsbase %rax\n rdgsbase %rax\n wrfsbase %rbx\n wrgsbase %rbx\n");

static void rd_wr_fs_gs_base_are_ud(void **state)
{
	(void)state;
	static const unsigned offsets[] = { 0, 5, 10, 15 };	/* each is 5 bytes */
	for (unsigned k = 0; k < 2; k++) {
		for (unsigned i = 0; i < 4; i++) {
			LOAD(g_fsgsbase);
			g_m.cpu.rip = TM_CODE + offsets[i];
			g_m.cpu.seg[X86EMU_FS].base = 0x1000;
			g_m.cpu.seg[X86EMU_GS].base = 0x2000;
			g_m.cpu.gpr[X86EMU_RAX] = 0x55;
			g_m.cpu.gpr[X86EMU_RBX] = k ? NONCANONICAL : 0x3000;
			run_to_hlt();
			assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE + offsets[i]);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x55);
			assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0x1000);
			assert_int_equal(g_m.cpu.seg[X86EMU_GS].base, 0x2000);
		}
	}
}

/* ---- cache control, CLTS, CLAC/STAC, CLI --------------------------------------------------- */

GUEST(g_wbinvd, "wbinvd\n hlt");
GUEST(g_invd, "invd\n hlt");

static void wbinvd_and_invd_run_at_cpl0_and_are_gp_at_cpl3(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		const uint8_t *s = k ? g_invd : g_wbinvd, *e = k ? g_invd_end : g_wbinvd_end;
		tm_load_code(s, e);
		run_to_hlt();
		assert_false(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.rip, TM_CODE + 3);

		tm_load_code(s, e);
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	}
}

GUEST(g_clts, "clts\n hlt");

/* CLTS changes CR0, so the machine's CR0 hook hears of it (as for LMSW). */
static void clts_clears_cr0_ts_at_cpl0(void **state)
{
	(void)state;
	LOAD(g_clts);
	g_m.cpu.cr0 |= X86EMU_CR0_TS;
	uint64_t cr0 = g_m.cpu.cr0;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cr0, cr0 & ~X86EMU_CR0_TS);
	assert_int_equal(g_m.cr_writes, 1);
	assert_int_equal(g_m.last_cr, 0);
	assert_int_equal(g_m.last_cr_value, cr0 & ~X86EMU_CR0_TS);
}

static void clts_at_cpl3_is_gp(void **state)
{
	(void)state;
	LOAD(g_clts);
	g_m.cpu.cr0 |= X86EMU_CR0_TS;
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_true(g_m.cpu.cr0 & X86EMU_CR0_TS);
}

/*
 * SDM CLAC/STAC: clear/set RFLAGS.AC; #UD at CPL > 0 and when CPUID.7.0:
 * EBX.SMAP = 0.  CR4.SMAP does not matter.  The default CPU offers SMAP.
 */
GUEST(g_stac_clac, "stac\n pushfq\n pop %rax\n clac\n pushfq\n pop %rbx\n hlt");

static void stac_and_clac_set_and_clear_rflags_ac_at_cpl0(void **state)
{
	(void)state;
	uint32_t out[4];
	x86emu_cpuid_default(7, 0, out);
	assert_true(out[1] & (1u << 20));
	LOAD(g_stac_clac);
	assert_false(g_m.cpu.cr4 & X86EMU_CR4_SMAP);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_true(g_m.cpu.gpr[X86EMU_RAX] & X86EMU_FLAG_AC);
	assert_false(g_m.cpu.gpr[X86EMU_RBX] & X86EMU_FLAG_AC);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_AC);
}

GUEST(g_stac, "stac\n hlt");
GUEST(g_clac, "clac\n hlt");

static void stac_and_clac_are_ud_at_cpl3(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_stac);
		else
			LOAD(g_clac);
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		g_m.cpu.rflags |= k ? X86EMU_FLAG_AC : 0;
		uint64_t fl = g_m.cpu.rflags;
		run_to_hlt();
		assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
		assert_int_equal(stack_qword(2) & X86EMU_FLAG_AC, fl & X86EMU_FLAG_AC);
	}
}

/* SDM CLI: in protected mode without PVI, CPL <= IOPL clears IF, else #GP(0). */
GUEST(g_cli, "cli\n hlt");

static void cli_clears_if_when_cpl_is_within_iopl(void **state)
{
	(void)state;
	LOAD(g_cli);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_IF);

	LOAD(g_cli);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IF | X86EMU_FLAG_IOPL;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_IF);
}

static void cli_at_cpl3_above_iopl_is_gp(void **state)
{
	(void)state;
	LOAD(g_cli);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IF | (2ull << 12);	/* IOPL 2 */
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_true(stack_qword(3) & X86EMU_FLAG_IF);
}

/* ---- SWAPGS, INVLPG, INVPCID ---------------------------------------------------------------- */

GUEST(g_swapgs, "swapgs\n hlt");
GUEST(g_invlpg, "invlpg (%rax)\n hlt");

static void swapgs_and_invlpg_at_cpl3_are_gp(void **state)
{
	(void)state;
	LOAD(g_swapgs);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.seg[X86EMU_GS].base = 0x1000;
	g_m.cpu.kernel_gs_base = 0x2000;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_GS].base, 0x1000);
	assert_int_equal(g_m.cpu.kernel_gs_base, 0x2000);

	LOAD(g_invlpg);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.gpr[X86EMU_RAX] = TM_DATA;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.invlpgs, 0);
}

/*
 * SDM INVLPG: the operand is a linear address, so an FS or GS override adds
 * that base; a non-canonical address makes it a NOP (no fault).
 */
GUEST(g_invlpg_fs, "invlpg %fs:0x10(%rax)\n hlt");
GUEST(g_invlpg_gs, "invlpg %gs:0x10(%rax)\n hlt");

static void invlpg_adds_the_fs_or_gs_base_and_ignores_non_canonical(void **state)
{
	(void)state;
	LOAD(g_invlpg_fs);
	g_m.cpu.seg[X86EMU_FS].base = 0x7000000;
	g_m.cpu.seg[X86EMU_GS].base = 0x9000000;
	g_m.cpu.gpr[X86EMU_RAX] = 0x5000;
	run_to_hlt();
	assert_int_equal(g_m.invlpgs, 1);
	assert_int_equal(g_m.last_invlpg, 0x7005010);

	LOAD(g_invlpg_gs);
	g_m.cpu.seg[X86EMU_GS].base = 0x9000000;
	g_m.cpu.gpr[X86EMU_RAX] = 0x5000;
	run_to_hlt();
	assert_int_equal(g_m.invlpgs, 1);
	assert_int_equal(g_m.last_invlpg, 0x9005010);

	LOAD(g_invlpg_gs);
	g_m.cpu.seg[X86EMU_GS].base = NONCANONICAL;
	g_m.cpu.gpr[X86EMU_RAX] = 0;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.invlpgs, 0);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 6);	/* past the HLT */
}

static unsigned g_invpcids;
static uint64_t g_invpcid_args[3];
static int g_invpcid_answer;

static int invpcid_cb(void *opaque, uint64_t type, uint64_t pcid, uint64_t va)
{
	(void)opaque;
	g_invpcids++;
	g_invpcid_args[0] = type;
	g_invpcid_args[1] = pcid;
	g_invpcid_args[2] = va;
	return g_invpcid_answer;
}

GUEST(g_invpcid, "invpcid (%rbx), %rax\n hlt");

/*
 * The default CPU, less what the machine's CPUID hides: PCID
 * (CPUID.1:ECX[17]), SMEP, INVPCID, SMAP (CPUID.7.0:EBX[7], [10], [20]),
 * RDTSCP (CPUID.80000001H:EDX[27]).
 */
static void cpuid_hiding(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	(void)opaque;
	x86emu_cpuid_default(leaf, subleaf, out);
	if (leaf == 1)
		out[2] &= ~(1u << 17);
	else if (leaf == 7)
		out[1] &= ~((1u << 7) | (1u << 10) | (1u << 20));
	else if (leaf == 0x80000001)
		out[3] &= ~(1u << 27);
}

GUEST(g_set_cr4, "mov %rax, %cr4\n hlt");

/* The default CPU, plus VME, MCE, FXSR and SSE (CPUID.1:EDX[1], [7], [24], [25]). */
static void cpuid_offering(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	(void)opaque;
	x86emu_cpuid_default(leaf, subleaf, out);
	if (leaf == 1)
		out[3] |= (1u << 1) | (1u << 7) | (1u << 24) | (1u << 25);
}

/*
 * A CR4 bit is reserved when CPUID does not report its feature: VME and
 * PVI (VME), MCE, OSFXSR (FXSR), OSXMMEXCPT (SSE), which the default CPU
 * does not offer (the interpreter has no virtual-8086 mode, machine
 * checks architecture or SSE); a machine whose CPUID offers them may set
 * them.  PCE needs no feature.
 */
static void cr4_bits_of_features_cpuid_does_not_report_are_reserved(void **state)
{
	(void)state;
	static const uint64_t bits[] = { 1ull << 0, 1ull << 1, 1ull << 6, X86EMU_CR4_OSFXSR,
					 1ull << 10 };
	for (unsigned offered = 0; offered < 2; offered++) {
		for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
			LOAD(g_set_cr4);
			if (offered)
				g_m.env.cpuid = cpuid_offering;
			uint64_t cr4 = g_m.cpu.cr4;
			g_m.cpu.gpr[X86EMU_RAX] = cr4 | bits[i];
			run_to_hlt();
			if (offered) {
				assert_false(g_m.cpu.last_exception.valid);
				assert_int_equal(g_m.cpu.cr4, cr4 | bits[i]);
			} else {
				assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
				assert_int_equal(g_m.cpu.cr4, cr4);
			}
		}
	}
	LOAD(g_set_cr4);
	g_m.cpu.gpr[X86EMU_RAX] = g_m.cpu.cr4 | (1ull << 8);	/* PCE */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_true(g_m.cpu.cr4 & (1ull << 8));
}

/*
 * An instruction of a feature the machine's CPUID hides is #UD (SDM
 * STAC, CLAC, RDTSCP, INVPCID), and the CR4 bit of one is reserved
 * (#GP(0), CR4 unchanged); with the feature offered each works.
 */
static void features_the_machines_cpuid_hides_are_absent(void **state)
{
	(void)state;
	static const struct {
		const uint8_t *start, *end;
	} insns[] = {
		{ g_stac, g_stac_end }, { g_clac, g_clac_end }, { g_rdtscp, g_rdtscp_end },
		{ g_invpcid, g_invpcid_end },
	};
	for (unsigned hide = 0; hide < 2; hide++) {
		for (unsigned i = 0; i < sizeof(insns) / sizeof(insns[0]); i++) {
			tm_load_code(insns[i].start, insns[i].end);
			if (hide)
				g_m.env.cpuid = cpuid_hiding;
			g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;	/* INVPCID: type 2 (all), a zero descriptor */
			g_m.cpu.gpr[X86EMU_RAX] = 2;
			run_to_hlt();
			if (hide)
				assert_fault(X86EMU_EXC_UD, NO_ERROR_CODE, TM_CODE);
			else
				assert_false(g_m.cpu.last_exception.valid);
		}
		static const uint64_t bits[] = { X86EMU_CR4_SMEP, X86EMU_CR4_SMAP, X86EMU_CR4_PCIDE };
		for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
			LOAD(g_set_cr4);
			if (hide)
				g_m.env.cpuid = cpuid_hiding;
			uint64_t cr4 = g_m.cpu.cr4;
			g_m.cpu.gpr[X86EMU_RAX] = cr4 | bits[i];
			run_to_hlt();
			if (hide) {
				assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
				assert_int_equal(g_m.cpu.cr4, cr4);
			} else {
				assert_false(g_m.cpu.last_exception.valid);
				assert_int_equal(g_m.cpu.cr4, cr4 | bits[i]);
			}
		}
	}
}

/* INVPCID type RAX with the descriptor {pcid, va} at TM_DATA. */
static void load_invpcid(uint64_t type, uint64_t pcid, uint64_t va, bool pcide)
{
	LOAD(g_invpcid);
	g_m.env.invpcid = invpcid_cb;
	g_invpcids = 0;
	g_invpcid_answer = X86EMU_CB_OK;
	memset(g_invpcid_args, 0, sizeof(g_invpcid_args));
	if (pcide)
		g_m.cpu.cr4 |= X86EMU_CR4_PCIDE;
	g_m.cpu.gpr[X86EMU_RAX] = type;
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, 8, pcid);
	tm_wr(&g_m, TM_DATA + 8, 8, va);
}

static void invpcid_passes_the_type_and_descriptor_to_the_machine(void **state)
{
	(void)state;
	const struct { uint64_t type, pcid, va; bool pcide; } ok[] = {
		{ 0, 5, 0xffff800000001000ull, true },	/* one address in one PCID */
		{ 1, 0xfff, 0, true },			/* one PCID */
		{ 0, 0, 0x2000, false },		/* PCID 0 without PCIDE */
		{ 2, 0x123, NONCANONICAL, false },	/* all, globals too: no checks on them */
		{ 3, 0, NONCANONICAL, false },		/* all but globals */
	};
	for (unsigned i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		load_invpcid(ok[i].type, ok[i].pcid, ok[i].va, ok[i].pcide);
		run_to_hlt();
		assert_false(g_m.cpu.last_exception.valid);
		assert_int_equal(g_invpcids, 1);
		assert_int_equal(g_invpcid_args[0], ok[i].type);
		assert_int_equal(g_invpcid_args[1], ok[i].pcid);
		assert_int_equal(g_invpcid_args[2], ok[i].va);
	}
	/* Without the hook it completes as a no-op. */
	load_invpcid(2, 0, 0, false);
	g_m.env.invpcid = NULL;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 6);	/* past the HLT */
}

/*
 * SDM INVPCID, 64-bit mode: #GP(0) for a type above 3, descriptor bits
 * 63:12 set, type 0 with a non-canonical address, types 0 and 1 with a
 * non-zero PCID while CR4.PCIDE = 0, and at CPL > 0.
 */
static void invpcid_faults_are_gp_and_reach_no_machine(void **state)
{
	(void)state;
	const struct { uint64_t type, pcid, va; bool pcide; } bad[] = {
		{ 4, 0, 0, true },
		{ 1ull << 32, 0, 0, true },
		{ 2, 1ull << 12, 0, true },
		{ 3, 1ull << 63, 0, true },
		{ 0, 1, NONCANONICAL, true },
		{ 0, 1, 0x1000, false },
		{ 1, 1, 0, false },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		load_invpcid(bad[i].type, bad[i].pcid, bad[i].va, bad[i].pcide);
		run_to_hlt();
		assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
		assert_int_equal(g_invpcids, 0);
	}
	load_invpcid(2, 0, 0, false);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_invpcids, 0);
}

static void invpcid_descriptor_read_fault_and_hook_retry(void **state)
{
	(void)state;
	load_invpcid(2, 0, 0, false);
	tm_set_pages(&g_m, TM_DATA, 1, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
	assert_int_equal(g_invpcids, 0);

	load_invpcid(2, 0, 0, false);
	g_invpcid_answer = X86EMU_CB_RETRY;
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&before, &g_m.cpu, sizeof(before));
}

/* ---- port I/O callbacks that retry, I/O bitmap reads that fault ----------------------------- */

static int io_in_retry(void *opaque, uint16_t port, unsigned size, uint32_t *v)
{
	(void)opaque;
	(void)port;
	(void)size;
	*v = 0x12345678;
	return X86EMU_CB_RETRY;
}

static int io_out_retry(void *opaque, uint16_t port, unsigned size, uint32_t v)
{
	(void)opaque;
	(void)port;
	(void)size;
	(void)v;
	return X86EMU_CB_RETRY;
}

GUEST(g_in, "in $0x60, %eax\n hlt");
GUEST(g_out, "out %eax, $0x60\n hlt");

static void port_callbacks_that_retry_leave_the_cpu_untouched(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_in);
		else
			LOAD(g_out);
		g_m.env.io_in = io_in_retry;
		g_m.env.io_out = io_out_retry;
		g_m.cpu.gpr[X86EMU_RAX] = 0xaaaaaaaabbbbbbbbull;
		struct x86emu_cpu before = g_m.cpu;
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
		assert_memory_equal(&before, &g_m.cpu, sizeof(before));
	}
}

/*
 * The I/O permission bitmap is read through the TSS's linear address with
 * supervisor rights (SDM 4.6): a read that faults is #PF with U/S = 0, and
 * the port is not touched.
 */
static void io_bitmap_read_that_faults_is_a_supervisor_page_fault(void **state)
{
	(void)state;
	/* The TSS's RSP0 stays readable, so the #PF itself can be delivered. */
	const struct { uint64_t tss; uint16_t map_base; uint64_t cr2; } cases[] = {
		{ 0x6ffa0, 0x68, 0x70006 },		/* the map base word, on the next page */
		{ 0x6f000, 0x1000, 0x7000c },		/* the bitmap (port 0x60: byte 12) */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		LOAD(g_in);
		uint64_t tss = cases[i].tss;
		g_m.cpu.tr.base = tss;
		g_m.cpu.tr.limit = 0x2000;
		tm_wr(&g_m, tss + 4, 8, TM_RSP0);
		tm_wr(&g_m, tss + 0x66, 2, cases[i].map_base);
		tm_set_pages(&g_m, 0x70000, 1, TM_PAGE_ABSENT);
		tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		run_to_hlt();
		assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
		assert_int_equal(g_m.cpu.cr2, cases[i].cr2);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_RSP0 - 48);
		assert_int_equal(g_m.io_ins, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mov_to_cr2_stores_it_and_mov_from_cr2_reads_it_back),
		cmocka_unit_test(cr8_holds_the_task_priority_and_reads_back),
		cmocka_unit_test(cr8_reserved_bits_are_gp_and_keep_the_tpr),
		cmocka_unit_test(mov_to_or_from_a_missing_control_register_is_ud),
		cmocka_unit_test(invalid_cr0_values_are_gp_and_change_nothing),
		cmocka_unit_test(clearing_cr4_pae_in_long_mode_is_gp),
		cmocka_unit_test(setting_cr4_pcide_needs_pcid_zero_in_cr3),
		cmocka_unit_test(cr_write_hook_that_retries_leaves_the_cpu_untouched),
		cmocka_unit_test(cr3_reserved_bits_follow_the_machines_maxphyaddr),
		cmocka_unit_test(mov_to_or_from_dr8_and_above_is_ud),
		cmocka_unit_test(mov_to_dr5_is_ud_with_cr4_de_and_writes_dr7_without),
		cmocka_unit_test(mov_from_a_segment_register_zero_extends_or_stores_a_word),
		cmocka_unit_test(mov_to_cs_is_ud),
		cmocka_unit_test(mov_to_ds_from_memory_that_faults_is_pf),
		cmocka_unit_test(pop_fs_loads_the_selector_and_the_descriptor_base),
		cmocka_unit_test(pop_gs_with_a_16_bit_operand_size_pops_a_word),
		cmocka_unit_test(pop_fs_with_a_bad_selector_faults_with_the_stack_unchanged),
		cmocka_unit_test(pop_fs_of_a_null_selector_clears_the_base),
		cmocka_unit_test(pop_fs_whose_stack_read_faults_is_pf_with_fs_unchanged),
		cmocka_unit_test(pop_ds_es_ss_are_ud_in_64_bit_mode),
		cmocka_unit_test(msrs_the_interpreter_keeps_read_back_what_wrmsr_wrote),
		cmocka_unit_test(wrmsr_of_a_non_canonical_address_is_gp_and_changes_nothing),
		cmocka_unit_test(wrmsr_tsc_aux_with_high_bits_is_gp),
		cmocka_unit_test(rdmsr_and_wrmsr_of_the_tsc),
		cmocka_unit_test(wrmsr_efer_with_a_reserved_bit_is_gp),
		cmocka_unit_test(wrmsr_efer_keeps_lma_and_changes_the_writable_bits),
		cmocka_unit_test(wrmsr_efer_changing_lme_with_paging_on_is_gp),
		cmocka_unit_test(rdmsr_and_wrmsr_at_cpl3_are_gp),
		cmocka_unit_test(unknown_msr_reads_go_to_the_machine),
		cmocka_unit_test(unknown_msr_writes_go_to_the_machine),
		cmocka_unit_test(msr_write_hook_hears_of_kept_msrs_after_validation),
		cmocka_unit_test(rdtsc_loads_edx_eax_from_the_machines_counter),
		cmocka_unit_test(rdtsc_without_a_callback_reads_cpu_tsc),
		cmocka_unit_test(rdtscp_also_loads_ecx_with_tsc_aux),
		cmocka_unit_test(rdtsc_and_rdtscp_with_cr4_tsd_are_gp_at_cpl3_only),
		cmocka_unit_test(cpuid_leaf_0_reports_the_max_leaf_and_the_vendor),
		cmocka_unit_test(cpuid_leaf_1_reports_the_implemented_features),
		cmocka_unit_test(cpuid_of_an_undefined_leaf_returns_zeros),
		cmocka_unit_test(cpuid_asks_the_machines_policy_when_there_is_one),
		cmocka_unit_test(sysret_with_a_32_bit_operand_size_returns_to_compatibility_mode),
		cmocka_unit_test(sysret_to_a_non_canonical_rcx_is_gp_at_cpl0),
		cmocka_unit_test(sysret_at_cpl3_is_gp),
		cmocka_unit_test(syscall_and_sysret_are_ud_without_efer_sce),
		cmocka_unit_test(rd_wr_fs_gs_base_are_ud),
		cmocka_unit_test(wbinvd_and_invd_run_at_cpl0_and_are_gp_at_cpl3),
		cmocka_unit_test(clts_clears_cr0_ts_at_cpl0),
		cmocka_unit_test(clts_at_cpl3_is_gp),
		cmocka_unit_test(stac_and_clac_set_and_clear_rflags_ac_at_cpl0),
		cmocka_unit_test(stac_and_clac_are_ud_at_cpl3),
		cmocka_unit_test(features_the_machines_cpuid_hides_are_absent),
		cmocka_unit_test(cr4_bits_of_features_cpuid_does_not_report_are_reserved),
		cmocka_unit_test(cli_clears_if_when_cpl_is_within_iopl),
		cmocka_unit_test(cli_at_cpl3_above_iopl_is_gp),
		cmocka_unit_test(swapgs_and_invlpg_at_cpl3_are_gp),
		cmocka_unit_test(invlpg_adds_the_fs_or_gs_base_and_ignores_non_canonical),
		cmocka_unit_test(invpcid_passes_the_type_and_descriptor_to_the_machine),
		cmocka_unit_test(invpcid_faults_are_gp_and_reach_no_machine),
		cmocka_unit_test(invpcid_descriptor_read_fault_and_hook_retry),
		cmocka_unit_test(port_callbacks_that_retry_leave_the_cpu_untouched),
		cmocka_unit_test(io_bitmap_read_that_faults_is_a_supervisor_page_fault),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
