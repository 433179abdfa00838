/*
 * System behaviour: exception delivery through the IDT (frames, error codes,
 * CR2, stack switches, IST, double and triple faults), IRETQ, INT n,
 * SYSCALL/SYSRET, control registers and their hooks, descriptor tables,
 * MSRs, CPUID, port I/O, interrupts and the STI shadow, atomics, and the
 * "retry" contract: a callback that says retry leaves the CPU untouched.
 */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

/* ---- exception delivery ---------------------------------------------------------------- */

GUEST(g_div0, "xor %ecx, %ecx\n mov $7, %eax\n div %ecx\n hlt");

static void divide_by_zero_delivers_de_with_a_precise_frame(void **state)
{
	(void)state;
	LOAD(g_div0);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DE));
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DE);
	/* No error code: RIP, CS, RFLAGS, RSP, SS; aligned to 16. */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 40);	/* TM_STACK is 16-aligned */
	assert_int_equal(stack_qword(0), TM_CODE + 7);		/* the DIV itself */
	assert_int_equal(stack_qword(1), TM_SEL_KCODE);
	assert_true(stack_qword(2) & X86EMU_FLAG_IF);
	assert_true(stack_qword(2) & X86EMU_FLAG_RF);		/* faults push RF=1 */
	assert_int_equal(stack_qword(3), TM_STACK);
	assert_int_equal(stack_qword(4), TM_SEL_KDATA);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_IF);		/* interrupt gate */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 7);		/* nothing committed */
}

GUEST(g_pf, "mov $0x123456, %rbx\n mov (%rbx), %rax\n hlt");

static void page_fault_from_the_memory_callback_sets_cr2_and_pushes_the_error_code(void **state)
{
	(void)state;
	LOAD(g_pf);
	tm_set_pages(&g_m, 0x123000, 1, TM_PAGE_ABSENT);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.cr2, 0x123456);
	assert_int_equal(stack_qword(0), 0);			/* error code: read, not present, CPL0 */
	assert_int_equal(stack_qword(1), TM_CODE + 7);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 48);
}

GUEST(g_user_hlt, "hlt");

static void privileged_instruction_at_cpl3_is_gp_delivered_on_the_rsp0_stack(void **state)
{
	(void)state;
	LOAD(g_user_hlt);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK - 8);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0);	/* NULL SS, RPL 0 */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_RSP0 - 48);
	assert_int_equal(stack_qword(0), 0);			/* #GP(0) */
	assert_int_equal(stack_qword(1), TM_CODE);
	assert_int_equal(stack_qword(2), TM_SEL_UCODE);
	assert_int_equal(stack_qword(4), TM_USER_STACK - 8);
	assert_int_equal(stack_qword(5), TM_SEL_UDATA);
}

/*
 * RF (SDM 17.3.1.1) lasts for one instruction: IRETQ may set it from the
 * frame, and the next instruction to complete clears it, so a later frame
 * does not carry it.  The host: IRETQ with RF=1, then NOP and INT3, pushes
 * RF=0 (and so does INT3 right after the IRETQ).
 */
GUEST(g_iret_rf, "iretq\n nop\n int $0x80\n hlt");
GUEST(g_iret_rf_int, "iretq\n int $0x80\n hlt");

static void rf_from_iretq_is_cleared_when_the_next_instruction_completes(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_iret_rf);
		else
			LOAD(g_iret_rf_int);
		uint64_t frame = TM_STACK - 64;
		g_m.cpu.gpr[X86EMU_RSP] = frame;
		tm_wr(&g_m, frame, 8, TM_CODE + 2);	/* just after the IRETQ */
		tm_wr(&g_m, frame + 8, 8, TM_SEL_KCODE);
		tm_wr(&g_m, frame + 16, 8, X86EMU_FLAG_FIXED | X86EMU_FLAG_RF);
		tm_wr(&g_m, frame + 24, 8, TM_STACK);
		tm_wr(&g_m, frame + 32, 8, TM_SEL_KDATA);
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
		assert_true(g_m.cpu.rflags & X86EMU_FLAG_RF);	/* IRETQ loaded it */
		assert_int_equal(tm_step(&g_m, k == 0 ? 2 : 1), X86EMU_EXIT_BUDGET);
		assert_int_equal(g_m.cpu.rip, tm_handler(0x80));
		assert_false(stack_qword(2) & X86EMU_FLAG_RF);
		assert_false(g_m.cpu.rflags & X86EMU_FLAG_RF);
	}
	/* An external interrupt taken right after the IRETQ pushes RF=1. */
	LOAD(g_iret_rf);
	uint64_t frame = TM_STACK - 64;
	g_m.cpu.gpr[X86EMU_RSP] = frame;
	tm_wr(&g_m, frame, 8, TM_CODE + 2);
	tm_wr(&g_m, frame + 8, 8, TM_SEL_KCODE);
	tm_wr(&g_m, frame + 16, 8, X86EMU_FLAG_FIXED | X86EMU_FLAG_RF | X86EMU_FLAG_IF);
	tm_wr(&g_m, frame + 24, 8, TM_STACK);
	tm_wr(&g_m, frame + 32, 8, TM_SEL_KDATA);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x40), X86EMU_EXIT_BUDGET);
	assert_true(stack_qword(2) & X86EMU_FLAG_RF);
	assert_int_equal(stack_qword(0), TM_CODE + 2);
}

/*
 * An interrupt taken between two chunks of a REP string instruction pushes
 * RF=1 (SDM 17.3.1.1), and the instruction clears it when it completes.
 */
GUEST(g_rep_rf, "rep stosb\n hlt");

static void interrupt_between_rep_iterations_pushes_rf(void **state)
{
	(void)state;
	LOAD(g_rep_rf);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = X86EMU_REP_ITERATIONS_PER_STEP + 5;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, TM_CODE);		/* not done yet */
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x40), X86EMU_EXIT_BUDGET);
	assert_true(stack_qword(2) & X86EMU_FLAG_RF);
	assert_int_equal(stack_qword(0), TM_CODE);
	/* Back in the instruction, it finishes and RF goes away. */
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.rflags = stack_qword(2);
	g_m.cpu.gpr[X86EMU_RSP] = stack_qword(3);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 2);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_RF);
}

GUEST(g_ud, "ud2");

static void gate_with_ist_switches_to_the_ist_stack(void **state)
{
	(void)state;
	LOAD(g_ud);
	tm_set_gate(&g_m, X86EMU_EXC_UD, 0xe, 0, 1);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_UD));
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_IST1 - 40);
	assert_int_equal(stack_qword(3), TM_STACK);
}

/*
 * SDM INT n, 64-bit gate: a non-canonical stack for the frame is #SS with
 * the error code EXT (0 for INT n, 1 for an exception or an external
 * interrupt): the current RSP, RSPn or ISTn, after alignment to 16, and the
 * frame's lowest byte.  #SS, #PF and #DF go through IST1 here, so they
 * arrive on a good stack.
 */
GUEST(g_int40, "int $0x40\n hlt");
GUEST(g_wrmsr_bad, "wrmsr\n hlt");	/* RCX an unknown MSR: #GP(0) */

static void ss_faults_on_ist(void)
{
	tm_set_gate(&g_m, X86EMU_EXC_SS, 0xe, 0, 1);
	tm_set_gate(&g_m, X86EMU_EXC_PF, 0xe, 0, 1);
	tm_set_gate(&g_m, X86EMU_EXC_DF, 0xe, 0, 1);
}

static void delivery_faults_ss_on_a_non_canonical_stack(void **state)
{
	(void)state;
	const uint64_t hole = 0x0000800000000000ull, upper = 0xffff800000000000ull;

	/* INT n at CPL 0 on the current stack: aligned down to the hole's start. */
	LOAD(g_int40);
	ss_faults_on_ist();
	g_m.cpu.gpr[X86EMU_RSP] = hole + 8;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_SS));
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_SS);
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_IST1 - 48);
	assert_int_equal(stack_qword(0), 0);		/* the error code */
	assert_int_equal(stack_qword(1), TM_CODE);	/* the INT itself */
	assert_int_equal(stack_qword(4), hole + 8);	/* RSP as it was */

	/* A 40-byte frame that would reach below the upper half: #SS. */
	LOAD(g_int40);
	ss_faults_on_ist();
	g_m.cpu.gpr[X86EMU_RSP] = upper + 0x20;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_SS);
	/* One that fits: the canonical check passes, and the write (outside the
	 * machine's memory) is a #PF at the frame. */
	LOAD(g_int40);
	ss_faults_on_ist();
	g_m.cpu.gpr[X86EMU_RSP] = upper + 0x3f;	/* aligned to upper + 0x30 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, upper + 0x30 - 40);

	/* An exception's 48-byte frame: #GP at upper + 0x30 fits (and page-faults,
	 * handled serially); at upper + 0x20 it does not, and #SS(1) after the
	 * #GP is a double fault. */
	LOAD(g_wrmsr_bad);
	ss_faults_on_ist();
	g_m.cpu.gpr[X86EMU_RCX] = 0x12345678;
	g_m.cpu.gpr[X86EMU_RSP] = upper + 0x30;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, upper);
	LOAD(g_wrmsr_bad);
	ss_faults_on_ist();
	g_m.cpu.gpr[X86EMU_RCX] = 0x12345678;
	g_m.cpu.gpr[X86EMU_RSP] = upper + 0x20;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DF);
	assert_int_equal(stack_qword(1), TM_CODE);

	/* INT n from CPL 3: RSP0 from the TSS, non-canonical once aligned. */
	LOAD(g_int40);
	ss_faults_on_ist();
	tm_set_gate(&g_m, 0x40, 0xe, 3, 0);
	tm_wr(&g_m, TM_TSS + 4, 8, hole + 8);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_SS));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(stack_qword(1), TM_CODE);
	assert_int_equal(stack_qword(2), TM_SEL_UCODE);
	assert_int_equal(stack_qword(4), TM_USER_STACK);

	/* An external interrupt at CPL 3 with the same RSP0: #SS(EXT). */
	LOAD(g_int40);
	ss_faults_on_ist();
	tm_wr(&g_m, TM_TSS + 4, 8, hole);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x40), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_SS));
	assert_int_equal(g_m.cpu.last_exception.error_code, 1);

	/* An IST pointer that is not canonical: #SS as well. */
	LOAD(g_int40);
	ss_faults_on_ist();
	tm_set_gate(&g_m, 0x40, 0xe, 0, 2);
	tm_wr(&g_m, TM_TSS + 44, 8, 0x8000000000000000ull);	/* IST2 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_SS));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(stack_qword(4), TM_STACK);
}

static void page_fault_while_delivering_a_page_fault_is_a_double_fault(void **state)
{
	(void)state;
	LOAD(g_pf);
	tm_set_pages(&g_m, 0x123000, 1, TM_PAGE_ABSENT);
	tm_set_pages(&g_m, TM_STACK - 4096, 4096, TM_PAGE_ABSENT);	/* the stack is gone */
	tm_set_gate(&g_m, X86EMU_EXC_DF, 0xe, 0, 1);			/* #DF on a good IST stack */
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DF));
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DF);
	assert_int_equal(stack_qword(0), 0);			/* #DF error code is 0 */
	assert_int_equal(stack_qword(1), TM_CODE + 7);
	/* CR2: the second #PF's address, in the stack page the frame went to. */
	assert_true(g_m.cpu.cr2 >= TM_STACK - 4096 && g_m.cpu.cr2 < TM_STACK);
}

static void page_fault_whose_gate_is_missing_is_a_double_fault_with_its_cr2(void **state)
{
	(void)state;
	LOAD(g_pf);
	tm_set_pages(&g_m, 0x123000, 1, TM_PAGE_ABSENT);
	tm_wr(&g_m, TM_IDT + 16 * X86EMU_EXC_PF, 8, 0);	/* #PF's gate: not present, #GP */
	tm_set_gate(&g_m, X86EMU_EXC_DF, 0xe, 0, 1);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DF));
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DF);
	/* #PF then #GP is a #DF (SDM Table 6-5); CR2 was loaded by the #PF. */
	assert_int_equal(g_m.cpu.cr2, 0x123456);
}

static void fault_while_delivering_a_double_fault_shuts_down(void **state)
{
	(void)state;
	LOAD(g_pf);
	tm_set_pages(&g_m, 0x123000, 1, TM_PAGE_ABSENT);
	tm_set_pages(&g_m, TM_STACK - 4096, 4096, TM_PAGE_ABSENT);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_SHUTDOWN);
	assert_true(g_m.cpu.shutdown);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_SHUTDOWN);
}

static void missing_gate_is_gp_with_the_idt_error_code(void **state)
{
	(void)state;
	LOAD(g_ud);
	tm_wr(&g_m, TM_IDT + 16 * X86EMU_EXC_UD, 8, 0);	/* not present, type 0 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	/* Error code: vector 6, IDT bit (2), EXT (1) since a processor exception was being delivered. */
	assert_int_equal(stack_qword(0), 6 * 8 + 2 + 1);
}

/* ---- software interrupts and IRETQ ------------------------------------------------------- */

GUEST(g_int80, "int $0x80\n hlt");

static void int_n_from_user_needs_a_dpl3_gate(void **state)
{
	(void)state;
	LOAD(g_int80);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(stack_qword(0), 0x80 * 8 + 2);		/* IDT bit, EXT clear */

	LOAD(g_int80);
	tm_set_gate(&g_m, 0x80, 0xf, 3, 0);	/* trap gate, DPL 3 */
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(0x80));
	assert_int_equal(stack_qword(0), TM_CODE + 2);		/* returns after INT */
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_IF);		/* trap gate keeps IF */
	assert_false(stack_qword(2) & X86EMU_FLAG_RF);
	assert_false(g_m.cpu.last_exception.valid);
}

GUEST(g_iret_to_user,
      "pushq $0x1b\n pushq $0x50000\n pushq $0x202\n pushq $0x23\n"
      "lea 1f(%rip), %rax\n push %rax\n iretq\n 1: mov $3, %ebx\n hlt");

static void iretq_returns_to_cpl3_with_the_popped_state(void **state)
{
	(void)state;
	LOAD(g_iret_to_user);
	assert_int_equal(tm_step(&g_m, 9), X86EMU_EXIT_BUDGET);	/* stops at the user HLT's #GP */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 3);
	/* The HLT at CPL 3 faulted: the frame shows where we were. */
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(stack_qword(2), TM_SEL_UCODE);
	assert_true(stack_qword(3) & X86EMU_FLAG_IF);
	assert_int_equal(stack_qword(4), 0x50000);
	assert_int_equal(stack_qword(5), TM_SEL_UDATA);
}

GUEST(g_iret_bad_cs,
      "pushq $0x10\n pushq %rsp\n pushq $0x2\n pushq $0x10\n pushq $0\n iretq");

static void iretq_to_a_data_segment_as_cs_is_gp_with_the_selector(void **state)
{
	(void)state;
	LOAD(g_iret_bad_cs);
	assert_int_equal(tm_step(&g_m, 6), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(stack_qword(0), 0x10);
}

GUEST(g_syscall_roundtrip,
      "syscall\n"			/* at CPL 3 */
      "mov $1, %r12d\n hlt\n"
      ".globl g_syscall_entry\n g_syscall_entry: mov $7, %r13d\n sysretq\n");
extern const uint8_t g_syscall_entry[];

static void syscall_enters_the_kernel_and_sysret_returns(void **state)
{
	(void)state;
	LOAD(g_syscall_roundtrip);
	g_m.cpu.star = ((uint64_t)0x10 << 48) | ((uint64_t)0x08 << 32);	/* user base 0x10: CS 0x23, SS 0x1b */
	uint64_t entry = TM_CODE + (uint64_t)(g_syscall_entry - g_syscall_roundtrip);
	g_m.cpu.lstar = entry;
	g_m.cpu.sfmask = X86EMU_FLAG_IF;
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(g_m.cpu.rip, entry);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], TM_CODE + 2);
	assert_true(g_m.cpu.gpr[X86EMU_R11] & X86EMU_FLAG_IF);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_IF);		/* masked by SFMASK */
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x08);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0x10);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.cpl, 3);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x23);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0x1b);
	assert_int_equal(g_m.cpu.gpr[X86EMU_R13], 7);
	assert_int_equal(g_m.cpu.gpr[X86EMU_R12], 1);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_IF);
}

/* ---- control registers, tables, MSRs, CPUID, I/O ----------------------------------------- */

GUEST(g_cr,
      "mov $0x5000, %rax\n mov %rax, %cr3\n mov %cr3, %rbx\n"
      "mov %cr4, %rcx\n or $0x80, %rcx\n mov %rcx, %cr4\n"	/* PGE */
      "invlpg 0x42(%rax)\n"
      "mov %cr0, %rdx\n and $0x7fffffff, %edx\n mov %rdx, %cr0\n hlt");

static void control_register_writes_are_validated_and_reported_to_the_machine(void **state)
{
	(void)state;
	LOAD(g_cr);
	assert_int_equal(tm_step(&g_m, 20), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x5000);
	assert_int_equal(g_m.cpu.cr3, 0x5000);
	assert_true(g_m.cpu.cr4 & X86EMU_CR4_PGE);
	assert_int_equal(g_m.invlpgs, 1);
	assert_int_equal(g_m.last_invlpg, 0x5042);
	assert_int_equal(g_m.cr_writes, 2);
	assert_int_equal(g_m.last_cr, 4);
	/* Clearing CR0.PG in 64-bit mode is #GP(0), and CR0 stays as it was. */
	assert_true(in_handler(X86EMU_EXC_GP));
	assert_true(g_m.cpu.cr0 & X86EMU_CR0_PG);
}

/*
 * CPUID does not offer FSGSBASE (leaf 7 EBX bit 0) and RDFSBASE is #UD, so
 * CR4.FSGSBASE is a reserved bit: setting it is #GP(0), CR4 unchanged.
 */
GUEST(g_cr4_fsgsbase, "mov %cr4, %rax\n or $0x10000, %rax\n mov %rax, %cr4\n hlt");
GUEST(g_rdfsbase, "rdfsbase %rax\n hlt");

static void cr4_fsgsbase_is_reserved_without_the_feature(void **state)
{
	(void)state;
	uint32_t out[4];
	x86emu_cpuid_default(7, 0, out);
	assert_false(out[1] & 1);
	LOAD(g_cr4_fsgsbase);
	uint64_t cr4 = g_m.cpu.cr4;
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_BUDGET);
	assert_true(in_handler(X86EMU_EXC_GP));
	assert_int_equal(stack_qword(0), 0);
	assert_int_equal(stack_qword(1), TM_CODE + 9);
	assert_int_equal(g_m.cpu.cr4, cr4);
	assert_int_equal(g_m.cr_writes, 0);
	LOAD(g_rdfsbase);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_true(in_handler(X86EMU_EXC_UD));
}

/*
 * SDM MOV DR: with CR4.DE=0, DR4 and DR5 are DR6 and DR7; with CR4.DE=1
 * they are #UD; writing a 1 to bits 63:32 of DR6 or DR7 is #GP(0).
 */
GUEST(g_dr_alias, ".byte 0x0f, 0x21, 0xe0\n .byte 0x0f, 0x21, 0xeb\n hlt");	/* mov %dr4,%rax; mov %dr5,%rbx */
GUEST(g_dr7_high, "mov $0x400, %eax\n .byte 0x0f, 0x23, 0xf8\n"			/* mov %rax,%dr7 */
		  "movabs $0x100000400, %rax\n .byte 0x0f, 0x23, 0xf8\n hlt");

static void debug_register_aliases_and_reserved_bits(void **state)
{
	(void)state;
	LOAD(g_dr_alias);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0xffff0ff0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x400);

	LOAD(g_dr_alias);
	g_m.cpu.cr4 |= 1u << 3;	/* CR4.DE */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_true(in_handler(X86EMU_EXC_UD));
	assert_int_equal(stack_qword(0), TM_CODE);

	LOAD(g_dr7_high);
	assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_BUDGET);
	assert_true(in_handler(X86EMU_EXC_GP));
	assert_int_equal(stack_qword(0), 0);
	assert_int_equal(stack_qword(1), TM_CODE + 8 + 10);	/* the second MOV to DR7 */
}

/* SDM RET, IA-32e mode: far RET to a code segment with L=1 and D=1 is #GP(selector). */
GUEST(g_retf_l_and_d, "pushq $0x38\n lea 1f(%rip), %rax\n push %rax\n lretq\n 1: hlt");

static void far_return_to_a_code_segment_with_l_and_d_is_gp(void **state)
{
	(void)state;
	uint64_t kcode = tm_rd(&g_m, TM_GDT + TM_SEL_KCODE, 8);
	for (unsigned d = 0; d < 2; d++) {
		/* A copy of the kernel code descriptor at 0x38, with D=1 the second time. */
		LOAD(g_retf_l_and_d);
		g_m.cpu.gdtr.limit = 0x3f;
		tm_wr(&g_m, TM_GDT + 0x38, 8, kcode | ((uint64_t)d << 54));
		if (d == 0) {
			assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
			assert_false(g_m.cpu.last_exception.valid);
			assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x38);
			continue;
		}
		assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_BUDGET);
		assert_true(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_GP);
		assert_int_equal(g_m.cpu.last_exception.error_code, 0x38);
		assert_int_equal(stack_qword(1), TM_CODE + 2 + 7 + 1);	/* the LRETQ */
	}
}

/*
 * Alignment checking (SDM 6.15, interrupt 17): at CPL 3 with CR0.AM and
 * RFLAGS.AC, a misaligned data access is #AC(0).  Every case matches what
 * the host (AMD EPYC, Linux sets CR0.AM) did with AC set: bytes are never
 * checked, words need 2, dwords 4, quadwords and pushes 8, SGDT a
 * quadword-aligned base after its word limit, and #AC comes ahead of a #PF.
 * An access made of several elements is checked per element, and a far
 * pointer as the data type it is (SDM table "Alignment Requirements by Data
 * Type"), not by its total size: ENTER's and a far CALL's pushes each at
 * their own size, m16:16 at 2 bytes, m16:32 at 4 and m16:64 at 8.
 */
static void misaligned_access_at_cpl3_with_am_and_ac_is_alignment_check(void **state)
{
	(void)state;
	static const struct {
		uint8_t code[6];
		unsigned len;
		uint64_t rsp_off, rsi_off;	/* below TM_USER_STACK, above TM_DATA */
		bool absent, ac;
	} cases[] = {
		{ { 0x8b, 0x43, 0x01 }, 3, 0, 0, false, true },		/* mov 1(%rbx),%eax */
		{ { 0x8b, 0x43, 0x04 }, 3, 0, 0, false, false },		/* mov 4(%rbx),%eax */
		{ { 0x48, 0x8b, 0x43, 0x04 }, 4, 0, 0, false, true },	/* mov 4(%rbx),%rax */
		{ { 0x8a, 0x43, 0x01 }, 3, 0, 0, false, false },		/* mov 1(%rbx),%al */
		{ { 0x66, 0x8b, 0x43, 0x01 }, 4, 0, 0, false, true },	/* mov 1(%rbx),%ax */
		{ { 0x50 }, 1, 4, 0, false, true },				/* push %rax, RSP%8 = 4 */
		{ { 0x66, 0x6a, 0x01 }, 3, 6, 0, false, false },		/* pushw $1, RSP%8 = 2 */
		{ { 0x0f, 0x01, 0x43, 0x06 }, 4, 0, 0, false, false },	/* sgdt 6(%rbx) */
		{ { 0x0f, 0x01, 0x43, 0x08 }, 4, 0, 0, false, true },	/* sgdt 8(%rbx) */
		{ { 0xad }, 1, 0, 2, false, true },				/* lods 2(%rsi),%eax */
		{ { 0x8b, 0x43, 0x01 }, 3, 0, 0, true, true },		/* ... to an absent page */
		{ { 0x66, 0xc8, 0, 0, 1 }, 5, 2, 0, false, false },	/* enterw $0,$1: 2 words, RSP%4 = 2 */
		{ { 0x66, 0xc8, 0, 0, 1 }, 5, 1, 0, false, true },	/* ... RSP odd */
		{ { 0xff, 0x5b, 0x20 }, 3, 4, 0, false, false },	/* lcall *0x20(%rbx): 2 dwords, RSP%8 = 4 */
		{ { 0xff, 0x5b, 0x20 }, 3, 2, 0, false, true },		/* ... RSP%4 = 2 */
		{ { 0x66, 0x0f, 0xb2, 0x43, 0x32 }, 5, 0, 0, false, false },	/* lss m16:16 at 2 mod 4 */
		{ { 0x66, 0x0f, 0xb2, 0x43, 0x39 }, 5, 0, 0, false, true },	/* ... odd */
		{ { 0x0f, 0xb2, 0x43, 0x44 }, 4, 0, 0, false, false },		/* lss m16:32 at 4 mod 8 */
		{ { 0x0f, 0xb2, 0x43, 0x52 }, 4, 0, 0, false, true },		/* ... at 2 mod 4 */
		{ { 0x48, 0x0f, 0xb2, 0x43, 0x60 }, 5, 0, 0, false, false },	/* lss m16:64 at 0 mod 8 */
		{ { 0x48, 0x0f, 0xb2, 0x43, 0x74 }, 5, 0, 0, false, true },	/* ... at 4 mod 8 */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (unsigned on = 0; on < 2; on++) {
			tm_fini(&g_m);
			tm_init(&g_m);
			tm_load(&g_m, TM_CODE, cases[i].code, cases[i].len);
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK - cases[i].rsp_off);
			g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
			g_m.cpu.gpr[X86EMU_RSI] = TM_DATA + cases[i].rsi_off;
			/* Far pointers for LCALL (m16:32) and LSS, each to a valid selector. */
			tm_wr(&g_m, TM_DATA + 0x20, 4, TM_CODE + 0x100);
			tm_wr(&g_m, TM_DATA + 0x24, 2, TM_SEL_UCODE);
			static const unsigned far_sel[] = { 0x32 + 2, 0x39 + 2, 0x44 + 4, 0x52 + 4,
							    0x60 + 8, 0x74 + 8 };
			for (unsigned k = 0; k < 6; k++)
				tm_wr(&g_m, TM_DATA + far_sel[k], 2, TM_SEL_UDATA);
			if (cases[i].absent)
				tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
			g_m.cpu.cr0 |= X86EMU_CR0_AM;
			if (on)
				g_m.cpu.rflags |= X86EMU_FLAG_AC;
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			if (!on || !cases[i].ac) {
				/* No check: the access is made (or faults as it would anyway). */
				if (cases[i].absent)
					assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
				else
					assert_false(g_m.cpu.last_exception.valid);
				continue;
			}
			assert_true(g_m.cpu.last_exception.valid);
			assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_AC);
			assert_int_equal(stack_qword(0), 0);
			assert_int_equal(stack_qword(1), TM_CODE);
			assert_int_equal(stack_qword(4), TM_USER_STACK - cases[i].rsp_off);
		}
	}
	/* At CPL 0 nothing is checked. */
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, TM_CODE, cases[0].code, cases[0].len);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.cr0 |= X86EMU_CR0_AM;
	g_m.cpu.rflags |= X86EMU_FLAG_AC;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
}

/*
 * Single-stepping (SDM 17.3.1.4): with TF set at the start of an
 * instruction, #DB follows it, with DR6.BS set and the next RIP pushed; the
 * POPF that sets TF is not trapped and the one that clears it is; a REP
 * string instruction traps after every iteration; after MOV SS the trap
 * waits for the next instruction.  The expected RIPs are the ones the host
 * reported (SIGTRAP) for the same three sequences.
 */
GUEST(g_tf_popf, "pushfq\n orl $0x100, (%rsp)\n popfq\n nop\n nop\n"
		 "pushfq\n andl $~0x100, (%rsp)\n popfq\n nop\n hlt");
GUEST(g_tf_rep, "pushfq\n orl $0x100, (%rsp)\n popfq\n rep movsb\n nop\n"
		"pushfq\n andl $~0x100, (%rsp)\n popfq\n hlt");
GUEST(g_tf_movss, "pushfq\n orl $0x100, (%rsp)\n popfq\n mov %eax, %ss\n nop\n nop\n"
		  "pushfq\n andl $~0x100, (%rsp)\n popfq\n hlt");

static unsigned single_step_trace(uint64_t *trace, unsigned max)
{
	bool tf_in_frame[16];
	unsigned n = 0;

	assert_true(max <= 16);
	g_m.mem[tm_handler(X86EMU_EXC_DB)] = 0x48;	/* the #DB handler is IRETQ */
	g_m.mem[tm_handler(X86EMU_EXC_DB) + 1] = 0xcf;
	for (unsigned i = 0; i < 100 && !g_m.cpu.halted; i++) {
		int rc = tm_step(&g_m, 1);
		assert_true(rc == X86EMU_EXIT_BUDGET || rc == X86EMU_EXIT_HLT);
		if (g_m.cpu.rip != tm_handler(X86EMU_EXC_DB))
			continue;
		assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DB);
		assert_true(g_m.cpu.dr[6] & (1u << 14));	/* BS */
		assert_false(g_m.cpu.rflags & X86EMU_FLAG_TF);	/* the handler is not stepped */
		g_m.cpu.dr[6] = 0;
		assert_true(n < max);
		tf_in_frame[n] = (stack_qword(2) & X86EMU_FLAG_TF) != 0;
		trace[n++] = stack_qword(0) - TM_CODE;
	}
	assert_true(g_m.cpu.halted);
	/* Stepping resumes after each IRETQ, until the POPF that cleared TF. */
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(tf_in_frame[i], i + 1 < n);
	return n;
}

static void trap_flag_single_steps_as_the_host_does(void **state)
{
	(void)state;
	uint64_t t[16];
	static const uint64_t popf[] = { 10, 11, 12, 19, 20 };
	static const uint64_t rep[] = { 9, 9, 11, 12, 13, 20, 21 };
	static const uint64_t movss[] = { 12, 13, 14, 21, 22 };

	LOAD(g_tf_popf);
	assert_int_equal(single_step_trace(t, 16), 5);
	assert_memory_equal(t, popf, sizeof(popf));

	LOAD(g_tf_rep);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
	g_m.cpu.gpr[X86EMU_RCX] = 3;
	assert_int_equal(single_step_trace(t, 16), 7);
	assert_memory_equal(t, rep, sizeof(rep));
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);

	LOAD(g_tf_movss);
	g_m.cpu.gpr[X86EMU_RAX] = TM_SEL_KDATA;
	assert_int_equal(single_step_trace(t, 16), 5);
	assert_memory_equal(t, movss, sizeof(movss));
}

/* INT1 (ICEBP) is #DB, trap-like and without the gate DPL check: from CPL 3
 * through a DPL 0 gate, with the next RIP pushed, as on the host. */
GUEST(g_icebp, ".byte 0xf1\n nop");

static void int1_raises_db_after_the_instruction_without_a_dpl_check(void **state)
{
	(void)state;
	LOAD(g_icebp);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DB));
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(stack_qword(0), TM_CODE + 1);
	assert_int_equal(stack_qword(1), TM_SEL_UCODE);
}

/* SDM IRET: at CPL 0 the image sets VIF and VIP as it sets IOPL; elsewhere they stay. */
GUEST(g_iret_vif, "pushfq\n orl $0x180000, (%rsp)\n popfq\n"	/* POPF never sets them */
		  "mov %rsp, %rax\n pushq $0x10\n push %rax\n pushfq\n orl $0x183000, (%rsp)\n"
		  "pushq $0x08\n lea 1f(%rip), %rax\n push %rax\n iretq\n 1: hlt");

static void iretq_at_cpl0_loads_vif_and_vip(void **state)
{
	(void)state;
	LOAD(g_iret_vif);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.rflags & (X86EMU_FLAG_VIF | X86EMU_FLAG_VIP));
	assert_int_equal(tm_step(&g_m, 20), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_VIF);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_VIP);
	assert_int_equal(g_m.cpu.rflags & X86EMU_FLAG_IOPL, X86EMU_FLAG_IOPL);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

/*
 * LTR and LLDT of a 16-byte descriptor whose 64-bit base is not canonical
 * are #GP(selector) (KVM checks the same); TR stays as it was, so no later
 * stack switch reads the TSS at a non-canonical address.
 */
GUEST(g_ltr_noncanonical, "mov $0x38, %eax\n ltr %ax\n hlt");
GUEST(g_lldt_noncanonical, "mov $0x38, %eax\n lldt %ax\n hlt");

static void ltr_and_lldt_with_a_noncanonical_base_are_gp(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		if (k == 0)
			LOAD(g_ltr_noncanonical);
		else
			LOAD(g_lldt_noncanonical);
		/* Base 0xffff7ffffffff000: type 9 (TSS) or 2 (LDT), present, limit 0x67. */
		uint64_t lo = 0x67 | (0xfff000ull << 16) | ((k == 0 ? 0x9ull : 0x2ull) << 40) |
			      (1ull << 47) | (0xffull << 56);
		g_m.cpu.gdtr.limit = 0x47;
		tm_wr(&g_m, TM_GDT + 0x38, 8, lo);
		tm_wr(&g_m, TM_GDT + 0x40, 8, 0xffff7fffull);
		struct x86emu_segment tr = g_m.cpu.tr, ldtr = g_m.cpu.ldtr;
		assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
		assert_true(in_handler(X86EMU_EXC_GP));
		assert_int_equal(stack_qword(0), 0x38);
		assert_memory_equal(&g_m.cpu.tr, &tr, sizeof(tr));
		assert_memory_equal(&g_m.cpu.ldtr, &ldtr, sizeof(ldtr));
		assert_int_equal(tm_rd(&g_m, TM_GDT + 0x38, 8), lo);	/* not marked busy */
	}
}

/*
 * A single-step trap is delivered as a step of its own, ahead of any
 * interrupt: the stepped instruction is done (the step reports it) and the
 * trap owed; a delivery the machine answers with "retry" changes nothing
 * and is made again by the next step.
 */
GUEST(g_tf_retry, "nop\n nop\n hlt");

static void single_step_trap_delivery_retried_keeps_the_instruction_done(void **state)
{
	(void)state;
	LOAD(g_tf_retry);
	g_m.cpu.rflags |= X86EMU_FLAG_TF;
	tm_set_pages(&g_m, TM_STACK - 4096, 4096, TM_PAGE_RETRY);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 1);
	assert_true(g_m.cpu.db_pending);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_false(x86emu_interrupts_enabled(&g_m.cpu));
	struct x86emu_cpu before = g_m.cpu;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_memory_equal(&g_m.cpu, &before, sizeof(before));
	tm_set_pages(&g_m, TM_STACK - 4096, 4096, TM_PAGE_RAM);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.db_pending);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DB));
	assert_int_equal(stack_qword(0), TM_CODE + 1);		/* the second NOP was not run */
}

GUEST(g_cr3_noflush,
      "mov %cr4, %rcx\n or $0x20000, %rcx\n mov %rcx, %cr4\n"	/* PCIDE */
      "movabs $0x8000000000005001, %rax\n mov %rax, %cr3\n mov %cr3, %rbx\n hlt");

static void cr3_no_flush_bit_reaches_the_machine_but_is_not_stored(void **state)
{
	(void)state;
	LOAD(g_cr3_noflush);
	g_m.cpu.cr3 &= ~0xfffull;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.last_cr, 3);
	assert_int_equal(g_m.last_cr_value, 0x8000000000005001ull);
	assert_int_equal(g_m.cpu.cr3, 0x5001);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x5001);
}

GUEST(g_cr3_bit63_no_pcide, "movabs $0x8000000000005000, %rax\n mov %rax, %cr3\n hlt");

static void cr3_bit63_without_pcide_is_gp(void **state)
{
	(void)state;
	LOAD(g_cr3_bit63_no_pcide);
	uint64_t cr3 = g_m.cpu.cr3;
	tm_step(&g_m, 2);
	assert_true(in_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.cr3, cr3);
}

GUEST(g_cr_user, "mov %cr3, %rax");

static void mov_from_cr_at_cpl3_is_gp(void **state)
{
	(void)state;
	LOAD(g_cr_user);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	tm_step(&g_m, 1);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
}

GUEST(g_tables,
      "lgdt 1f(%rip)\n lidt 2f(%rip)\n mov $0x28, %ax\n ltr %ax\n str %bx\n hlt\n"
      "1: .word 0x37\n .quad 0x1000\n 2: .word 0xfff\n .quad 0x2000\n");

static void lgdt_lidt_ltr_load_the_tables_and_mark_the_tss_busy(void **state)
{
	(void)state;
	LOAD(g_tables);
	memset(&g_m.cpu.gdtr, 0, sizeof(g_m.cpu.gdtr));
	memset(&g_m.cpu.tr, 0, sizeof(g_m.cpu.tr));
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gdtr.base, TM_GDT);
	assert_int_equal(g_m.cpu.gdtr.limit, 0x37);
	assert_int_equal(g_m.cpu.idtr.limit, 0xfff);
	assert_int_equal(g_m.cpu.tr.base, TM_TSS);
	assert_int_equal(g_m.cpu.tr.selector, 0x28);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX] & 0xffff, 0x28);
	assert_int_equal((tm_rd(&g_m, TM_GDT + 0x28 + 5, 1)) & 0xf, 0xb);	/* busy */
}

GUEST(g_msr,
      "mov $0xc0000080, %ecx\n rdmsr\n mov %eax, %ebx\n"
      "mov $0xc0000102, %ecx\n mov $0x1234, %eax\n xor %edx, %edx\n wrmsr\n swapgs\n"
      "mov $0x8b, %ecx\n rdmsr\n hlt");

static void msrs_efer_kernel_gs_base_swapgs_and_unknown_msr_gp(void **state)
{
	(void)state;
	LOAD(g_msr);
	g_m.cpu.seg[X86EMU_GS].base = 0x9999;
	assert_int_equal(tm_step(&g_m, 12), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], (uint32_t)g_m.cpu.efer);
	assert_int_equal(g_m.cpu.seg[X86EMU_GS].base, 0x1234);
	assert_int_equal(g_m.cpu.kernel_gs_base, 0x9999);
	assert_true(in_handler(X86EMU_EXC_GP));	/* MSR 0x8b unknown */
}

GUEST(g_cpuid, "mov $0x80000001, %eax\n cpuid\n hlt");

static void cpuid_reports_long_mode_and_syscall(void **state)
{
	(void)state;
	LOAD(g_cpuid);
	assert_int_equal(tm_step(&g_m, 5), X86EMU_EXIT_HLT);
	assert_true(g_m.cpu.gpr[X86EMU_RDX] & (1u << 29));
	assert_true(g_m.cpu.gpr[X86EMU_RDX] & (1u << 11));
}

GUEST(g_io, "mov $0x3f8, %dx\n mov $0x41, %al\n out %al, %dx\n in $0x60, %al\n hlt");

static void port_io_goes_to_the_machine_and_needs_iopl_at_cpl3(void **state)
{
	(void)state;
	LOAD(g_io);
	g_m.in_value = 0x99;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.io_outs, 1);
	assert_int_equal(g_m.last_out, 0x41);
	assert_int_equal(g_m.last_port, 0x60);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX] & 0xff, 0x99);

	LOAD(g_io);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	tm_step(&g_m, 3);
	assert_int_equal(g_m.io_outs, 0);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
}

/*
 * A TSS with an I/O permission bitmap at offset 0x68 (every port denied but
 * those allowed here) and the extra all-ones byte after it, the limit
 * covering that byte.
 */
#define IOMAP_BASE 0x68u
#define IOMAP_LIMIT (IOMAP_BASE + 0x2000u)

static void io_bitmap(void)
{
	memset(g_m.mem + TM_TSS + IOMAP_BASE, 0xff, 0x2001);
	tm_wr(&g_m, TM_TSS + 0x66, 2, IOMAP_BASE);
	g_m.cpu.tr.limit = IOMAP_LIMIT;
}

static void io_allow(uint16_t port)
{
	g_m.mem[TM_TSS + IOMAP_BASE + port / 8] &= (uint8_t)~(1u << (port & 7));
}

/* One port instruction at CPL 3 (IOPL 0); true when it completed, false on #GP(0). */
static bool user_io(const uint8_t *insn, size_t len)
{
	unsigned outs = g_m.io_outs;
	tm_load(&g_m, TM_CODE, insn, len);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags &= ~X86EMU_FLAG_IOPL;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	if (g_m.cpu.rip == TM_CODE + len)
		return true;
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(g_m.io_outs, outs);	/* the port was not touched */
	return false;
}

static void port_io_at_cpl3_follows_the_tss_io_bitmap(void **state)
{
	static const uint8_t out_dx_al[] = { 0xee }, out_dx_eax[] = { 0xef },
			     in_al_dx[] = { 0xec }, in_ax_imm[] = { 0x66, 0xe5, 0x60 };
	(void)state;

	/* An allowed port, and its neighbour that is not. */
	tm_fini(&g_m);
	tm_init(&g_m);
	io_bitmap();
	io_allow(0x3f8);
	g_m.cpu.gpr[X86EMU_RAX] = 0x41;
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	assert_true(user_io(out_dx_al, sizeof(out_dx_al)));
	assert_int_equal(g_m.io_outs, 1);
	assert_int_equal(g_m.last_port, 0x3f8);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f9;
	assert_false(user_io(out_dx_al, sizeof(out_dx_al)));
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	g_m.in_value = 0x5a;
	assert_true(user_io(in_al_dx, sizeof(in_al_dx)));
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX] & 0xff, 0x5a);

	/* A 4-byte access needs all four bits clear: 0x3fe/0x3ff allowed, 0x400 not
	 * (the straddle crosses a bitmap byte). */
	io_allow(0x3fe);
	io_allow(0x3ff);
	io_allow(0x401);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3fe;
	assert_false(user_io(out_dx_eax, sizeof(out_dx_eax)));
	io_allow(0x400);
	assert_true(user_io(out_dx_eax, sizeof(out_dx_eax)));
	assert_int_equal(g_m.last_port, 0x3fe);

	/* A 2-byte IN from an immediate port. */
	io_allow(0x60);
	assert_false(user_io(in_ax_imm, sizeof(in_ax_imm)));
	io_allow(0x61);
	assert_true(user_io(in_ax_imm, sizeof(in_ax_imm)));

	/* Port 0xffff: its byte is the bitmap's last, the second byte read is the
	 * extra one, at the limit. */
	io_allow(0xffff);
	g_m.cpu.gpr[X86EMU_RDX] = 0xffff;
	assert_true(user_io(out_dx_al, sizeof(out_dx_al)));
	/* The extra byte beyond the limit: the two-byte read crosses it. */
	g_m.cpu.tr.limit = IOMAP_LIMIT - 1;
	assert_false(user_io(out_dx_al, sizeof(out_dx_al)));
	/* ... which ports below the last byte do not notice. */
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	assert_true(user_io(out_dx_al, sizeof(out_dx_al)));

	/* The map base beyond the limit (the machine's default TSS): every port denied. */
	tm_fini(&g_m);
	tm_init(&g_m);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	assert_false(user_io(out_dx_al, sizeof(out_dx_al)));
	/* A base word itself beyond the limit. */
	g_m.cpu.tr.limit = 0x66;
	assert_false(user_io(out_dx_al, sizeof(out_dx_al)));

	/* IOPL 3 at CPL 3: no bitmap lookup. */
	tm_load(&g_m, TM_CODE, out_dx_al, sizeof(out_dx_al));
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.rflags |= X86EMU_FLAG_IOPL;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 1);
	assert_int_equal(g_m.io_outs, 1);
}

/* ---- interrupts ----------------------------------------------------------------------------- */

GUEST(g_sti_hlt, "sti\n hlt\n mov $5, %eax\n hlt");

static void sti_shadow_then_external_interrupt_wakes_hlt(void **state)
{
	(void)state;
	LOAD(g_sti_hlt);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(x86emu_interrupts_enabled(&g_m.cpu));	/* shadow after STI */
	assert_int_equal(tm_step(&g_m, 5), X86EMU_EXIT_HLT);
	assert_true(x86emu_interrupts_enabled(&g_m.cpu));
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x30), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.halted);
	assert_int_equal(g_m.cpu.rip, tm_handler(0x30));
	assert_int_equal(stack_qword(0), TM_CODE + 2);	/* returns after the HLT */
	assert_false(stack_qword(2) & X86EMU_FLAG_RF);
}

/* ---- atomics ------------------------------------------------------------------------------- */

GUEST(g_cx16,
      "mov $0x100000, %rsi\n mov $1, %eax\n mov $2, %edx\n mov $3, %ebx\n mov $4, %ecx\n"
      "lock cmpxchg16b (%rsi)\n setz %r8b\n lock cmpxchg16b (%rsi)\n setz %r9b\n"
      "lock cmpxchg16b 8(%rsi)\n hlt");

static void cmpxchg16b_swaps_reports_zf_and_needs_alignment(void **state)
{
	(void)state;
	LOAD(g_cx16);
	tm_wr(&g_m, TM_DATA, 8, 1);
	tm_wr(&g_m, TM_DATA + 8, 8, 2);
	assert_int_equal(tm_step(&g_m, 20), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_R8] & 0xff, 1);	/* first one swapped */
	assert_int_equal(g_m.cpu.gpr[X86EMU_R9] & 0xff, 0);	/* second one saw 3:4 */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 3);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 4);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 3);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 8, 8), 4);
	assert_true(in_handler(X86EMU_EXC_GP));	/* misaligned */
	assert_true(g_m.cmpxchgs >= 2);
}

GUEST(g_lock_add, "lock addq $5, 0x100000\n lock incl 0x100008\n xchg %rax, 0x100010\n hlt");

static void locked_read_modify_writes_go_through_cmpxchg(void **state)
{
	(void)state;
	LOAD(g_lock_add);
	g_m.cpu.gpr[X86EMU_RAX] = 77;
	tm_wr(&g_m, TM_DATA + 0x10, 8, 88);
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 5);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 8, 4), 1);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 0x10, 8), 77);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 88);
	assert_int_equal(g_m.cmpxchgs, 3);	/* XCHG with memory is locked too */
}

static void locked_write_to_a_readonly_page_faults_with_the_write_bit(void **state)
{
	(void)state;
	LOAD(g_lock_add);
	tm_set_pages(&g_m, TM_DATA, 1, TM_PAGE_READONLY);
	tm_step(&g_m, 1);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0x3);	/* present, write */
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 0);
}

/* ---- far pointers: LSS/LFS/LGS, far JMP and far CALL ----------------------------------------- */

/* Faults go through IST1, so the frame does not land on the stack the instruction uses. */
static void faults_on_ist(void)
{
	static const unsigned v[] = { X86EMU_EXC_UD, X86EMU_EXC_NP, X86EMU_EXC_SS, X86EMU_EXC_GP,
				      X86EMU_EXC_PF };
	for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		tm_set_gate(&g_m, v[i], 0xe, 0, 1);
}

/* The instruction at TM_CODE raised `vector` (error code `ec`, or none with ec < 0). */
static void assert_faulted(unsigned vector, long ec)
{
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_true(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.last_exception.vector, vector);
	assert_int_equal(g_m.cpu.rip, tm_handler(vector));
	if (ec >= 0) {
		assert_true(g_m.cpu.last_exception.has_error_code);
		assert_int_equal(g_m.cpu.last_exception.error_code, ec);
		assert_int_equal(stack_qword(1), TM_CODE);
	} else {
		assert_int_equal(stack_qword(0), TM_CODE);
	}
}

GUEST(g_lss64, ".byte 0x48, 0x0f, 0xb2, 0x03\n hlt");	/* lss (%rbx), %rax */
GUEST(g_lfs32, "lfs (%rbx), %ecx\n hlt");
GUEST(g_lgs16, "lgs (%rbx), %dx\n hlt");
GUEST(g_lfs_reg, ".byte 0x0f, 0xb4, 0xc0\n hlt");

/*
 * LSS/LFS/LGS read offset then selector (m16:64 with REX.W, m16:32, m16:16),
 * load the segment register with MOV's checks, and write the register only
 * when that worked; LSS does not start an interrupt shadow.
 */
static void lss_lfs_lgs_load_a_far_pointer(void **state)
{
	(void)state;
	LOAD(g_lss64);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, 8, 0x1122334455667788ull);
	tm_wr(&g_m, TM_DATA + 8, 2, TM_SEL_KDATA);
	g_m.cpu.seg[X86EMU_SS].selector = 0;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1122334455667788ull);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, TM_SEL_KDATA);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 4);
	assert_false(g_m.cpu.intr_shadow);

	LOAD(g_lfs32);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = ~0ull;
	g_m.cpu.seg[X86EMU_FS].base = 0x1234000;
	tm_wr(&g_m, TM_DATA, 4, 0x89abcdefu);
	tm_wr(&g_m, TM_DATA + 4, 2, TM_SEL_UDATA);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x89abcdefu);	/* zero-extended */
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].selector, TM_SEL_UDATA);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0);	/* from the descriptor */

	LOAD(g_lgs16);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDX] = 0x5555555555555555ull;
	g_m.cpu.seg[X86EMU_GS].selector = TM_SEL_KDATA;
	tm_wr(&g_m, TM_DATA, 2, 0xbeef);
	tm_wr(&g_m, TM_DATA + 2, 2, 0);	/* a null selector is fine for GS */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x555555555555beefull);
	assert_int_equal(g_m.cpu.seg[X86EMU_GS].selector, 0);
}

static void lss_lfs_lgs_faults_change_nothing(void **state)
{
	(void)state;
	const uint64_t kdata = tm_rd(&g_m, TM_GDT + TM_SEL_KDATA, 8);
	static const struct {
		const uint8_t *s, *e;
		uint16_t sel;
		uint64_t desc38;	/* the descriptor at 0x38 */
		bool user;		/* at CPL 3 */
		unsigned vector;
		long ec;
	} cases[] = {
		/* SS needs RPL = DPL = CPL and a writable data segment. */
		{ g_lss64, g_lss64_end, TM_SEL_UDATA, 0, false, X86EMU_EXC_GP, 0x18 },
		{ g_lss64, g_lss64_end, TM_SEL_KCODE, 0, false, X86EMU_EXC_GP, 0x08 },
		{ g_lss64, g_lss64_end, 0, 0, true, X86EMU_EXC_GP, 0 },		/* null SS at CPL 3 */
		{ g_lss64, g_lss64_end, 0x38, 1, false, X86EMU_EXC_SS, 0x38 },	/* not present */
		{ g_lfs32, g_lfs32_end, 0x38, 1, false, X86EMU_EXC_NP, 0x38 },
		{ g_lfs32, g_lfs32_end, 0x40, 0, false, X86EMU_EXC_GP, 0x40 },	/* beyond the GDT */
		{ g_lgs16, g_lgs16_end, TM_SEL_TSS, 0, false, X86EMU_EXC_GP, 0x28 },	/* system */
		{ g_lgs16, g_lgs16_end, TM_SEL_KDATA, 0, true, X86EMU_EXC_GP, 0x10 },	/* DPL < CPL */
		{ g_lfs_reg, g_lfs_reg_end, TM_SEL_KDATA, 0, false, X86EMU_EXC_UD, -1 },
		{ g_lfs32, g_lfs32_end, TM_SEL_KDATA, 2, false, X86EMU_EXC_PF, 0 },	/* absent */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_load_code(cases[i].s, cases[i].e);
		faults_on_ist();
		if (cases[i].desc38 == 1)
			gdt_put(0x38, kdata & ~(1ull << 47));
		if (cases[i].user)
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		for (unsigned r = 0; r < 4; r++)
			g_m.cpu.gpr[r] = 0x1111111111111111ull * (r + 1);
		g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 0x10;
		tm_wr(&g_m, TM_DATA + 0x10, 8, 0x7777);
		tm_wr(&g_m, TM_DATA + 0x10 + (cases[i].s == g_lss64 ? 8 : cases[i].s == g_lgs16 ? 2 : 4),
		      2, cases[i].sel);
		if (cases[i].desc38 == 2)
			tm_set_pages(&g_m, TM_DATA, 1, TM_PAGE_ABSENT);
		struct x86emu_cpu before = g_m.cpu;
		assert_faulted(cases[i].vector, cases[i].ec);
		for (unsigned r = 0; r < 4; r++)
			assert_int_equal(g_m.cpu.gpr[r], before.gpr[r]);
		for (unsigned s = 0; s < 6; s++)
			if (s != X86EMU_CS && s != X86EMU_SS)
				assert_memory_equal(&g_m.cpu.seg[s], &before.seg[s], sizeof(before.seg[s]));
		if (!cases[i].user)
			assert_memory_equal(&g_m.cpu.seg[X86EMU_SS], &before.seg[X86EMU_SS],
					    sizeof(before.seg[X86EMU_SS]));
	}
}

GUEST(g_ljmp64, ".byte 0x48, 0xff, 0x2b\n hlt");	/* jmp far m16:64 [rbx] */
GUEST(g_ljmp32, ".byte 0xff, 0x2b\n hlt");		/* jmp far m16:32 [rbx] */
GUEST(g_lcall64, ".byte 0x48, 0xff, 0x1b\n hlt");	/* call far m16:64 [rbx] */
GUEST(g_lcall32, ".byte 0xff, 0x1b\n hlt");		/* call far m16:32 [rbx] */
GUEST(g_ljmp16, ".byte 0x66, 0xff, 0x2b\n hlt");	/* jmp far m16:16 [rbx] */
GUEST(g_lcall16, ".byte 0x66, 0xff, 0x1b\n hlt");	/* call far m16:16 [rbx] */
GUEST(g_ljmp_reg, ".byte 0xff, 0xeb\n hlt");		/* the register form */
GUEST(g_ljmp_direct, ".byte 0xea, 0, 0, 0, 0, 0x08, 0\n hlt");	/* EA: invalid in 64-bit mode */
GUEST(g_far_target, "nop\n lretq\n lretl\n hlt");

#define FAR_TARGET (TM_CODE + 0x100)
#define FAR_STACK (TM_DATA + 0x1800)	/* a page of its own */

/* Put the far pointer sel:offset (offset `sz` bytes) at TM_DATA and point RBX at it. */
static void far_pointer(unsigned sz, uint64_t offset, uint16_t sel)
{
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, sz, offset);
	tm_wr(&g_m, TM_DATA + sz, 2, sel);
	tm_load(&g_m, FAR_TARGET, g_far_target, (size_t)(g_far_target_end - g_far_target));
}

/*
 * Far JMP and CALL through memory to code segments at the same privilege
 * level: CS gets the selector with RPL = CPL, CALL pushes CS and the return
 * RIP at the operand size (m16:64, m16:32, m16:16), and far RET of the
 * same size comes back.
 */
static void far_jmp_and_call_through_memory_load_cs(void **state)
{
	(void)state;
	const uint64_t kcode = tm_rd(&g_m, TM_GDT + TM_SEL_KCODE, 8);

	LOAD(g_ljmp64);
	gdt_put(0x38, kcode);
	far_pointer(8, FAR_TARGET, 0x38);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x38);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
	assert_int_equal(g_m.cpu.cpl, 0);

	LOAD(g_ljmp32);
	far_pointer(4, FAR_TARGET, TM_SEL_KCODE);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);

	/* CALL m16:64, then LRETQ back to the HLT after it. */
	LOAD(g_lcall64);
	gdt_put(0x38, kcode);
	far_pointer(8, FAR_TARGET, 0x38);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x38);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 16);
	assert_int_equal(stack_qword(0), TM_CODE + 3);
	assert_int_equal(stack_qword(1), TM_SEL_KCODE);
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 4);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);

	/* CALL m16:32 pushes two dwords; the 32-bit LRET at FAR_TARGET + 3 pops them. */
	LOAD(g_lcall32);
	gdt_put(0x38, kcode);
	far_pointer(4, FAR_TARGET + 3, 0x38);
	tm_wr(&g_m, TM_STACK - 8, 8, ~0ull);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 8);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 8, 4), TM_CODE + 2);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 4, 4), TM_SEL_KCODE);	/* zero-extended */
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 3);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);

	/* m16:16: a 16-bit offset; CALL pushes CS and IP as words. */
	LOAD(g_ljmp16);
	far_pointer(2, 0x8000, TM_SEL_KCODE);
	g_m.mem[0x8000] = 0xf4;	/* hlt */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, 0x8000);
	LOAD(g_lcall16);
	far_pointer(2, 0x8000, TM_SEL_KCODE);
	tm_wr(&g_m, TM_STACK - 8, 8, ~0ull);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, 0x8000);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 4);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 4, 2), (TM_CODE + 3) & 0xffff);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 2, 2), TM_SEL_KCODE);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 8, 4), 0xffffffffu);

	/* A conforming DPL 0 segment from CPL 3: the CPL stays 3, and so does CS.RPL. */
	LOAD(g_ljmp64);
	gdt_put(0x38, kcode | (1ull << 42));
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	far_pointer(8, FAR_TARGET, 0x38);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x3b);
	assert_int_equal(g_m.cpu.cpl, 3);
}

/*
 * 16-bit far RET (66 CB / 66 CA iw): IP and CS popped as words, IP
 * zero-extended into RIP; to an outer level also SP and SS as words.  The
 * code lives below 64 KiB, where a 16-bit IP can reach it.
 */
#define LOW_CODE 0x8000u
#define LOW_TARGET 0x8100u

static void load_low(const uint8_t *code, size_t len)
{
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, LOW_CODE, code, len);
	g_m.cpu.rip = LOW_CODE;
}

/* The last step returned to CPL 3 at rip with the user segments and rsp. */
static void returned_to_user(uint64_t rip, uint64_t rsp)
{
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cpl, 3);
	assert_int_equal(g_m.cpu.rip, rip);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_UCODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, TM_SEL_UDATA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], rsp);
}

/* A frame of 16-bit words from `at` up, and RSP pointing at it. */
static void word_frame(uint64_t at, unsigned n, const uint16_t *w)
{
	g_m.cpu.gpr[X86EMU_RSP] = at;
	for (unsigned i = 0; i < n; i++)
		tm_wr(&g_m, at + 2 * i, 2, w[i]);
}

static void far_return_with_a_16_bit_operand_size_pops_words(void **state)
{
	(void)state;
	static const uint8_t lcall16[] = { 0x66, 0xff, 0x1b, 0xf4 };	/* call far m16:16 [rbx]; hlt */
	static const uint8_t lretw[] = { 0x66, 0xcb }, lretw_imm[] = { 0x66, 0xca, 0x04, 0x00 };
	const uint64_t kcode = tm_rd(&g_m, TM_GDT + TM_SEL_KCODE, 8);

	/* CALL m16:16 to another selector, LRETW back to the HLT after it. */
	load_low(lcall16, sizeof(lcall16));
	gdt_put(0x38, kcode);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, 2, LOW_TARGET);
	tm_wr(&g_m, TM_DATA + 2, 2, 0x38);
	tm_load(&g_m, LOW_TARGET, lretw, sizeof(lretw));
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, LOW_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, 0x38);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 4);
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, LOW_CODE + 4);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);

	/* LRETW 4 releases four more bytes; the word above the IP is not part of it. */
	load_low(lretw_imm, sizeof(lretw_imm));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 16;
	tm_wr(&g_m, TM_STACK - 16, 8, 0xffffffff00000000ull | ((uint64_t)TM_SEL_KCODE << 16) |
					      LOW_TARGET);
	g_m.mem[LOW_TARGET] = 0xf4;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, LOW_TARGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 16 + 4 + 4);

	/* To CPL 3: SP and SS popped as words too, SP zero-extended into RSP. */
	load_low(lretw, sizeof(lretw));
	word_frame(TM_STACK - 8, 4,
		   (const uint16_t[]){ LOW_TARGET, TM_SEL_UCODE, 0x7ff0, TM_SEL_UDATA });
	tm_wr(&g_m, TM_STACK, 8, ~0ull);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	returned_to_user(LOW_TARGET, 0x7ff0);

	/* The same checks as the other sizes: a null CS is #GP(0), nothing popped. */
	load_low(lretw, sizeof(lretw));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 4;
	tm_wr(&g_m, TM_STACK - 4, 2, LOW_TARGET);
	tm_wr(&g_m, TM_STACK - 2, 2, 0);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(stack_qword(1), LOW_CODE);	/* after the error code */
	assert_int_equal(stack_qword(4), TM_STACK - 4);	/* the RSP before it */
	/* A data segment as CS: #GP(selector). */
	load_low(lretw, sizeof(lretw));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 4;
	tm_wr(&g_m, TM_STACK - 4, 2, LOW_TARGET);
	tm_wr(&g_m, TM_STACK - 2, 2, TM_SEL_KDATA);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, TM_SEL_KDATA);
	/* To an outer level with an SS whose RPL is not the new CPL: #GP(SS selector). */
	load_low(lretw, sizeof(lretw));
	word_frame(TM_STACK - 8, 4,
		   (const uint16_t[]){ LOW_TARGET, TM_SEL_UCODE, 0x7ff0, TM_SEL_UDATA & ~3u });
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, TM_SEL_UDATA & ~3u);
	assert_int_equal(g_m.cpu.cpl, 0);
	/* A stack page that is absent: #PF on the first pop. */
	load_low(lretw, sizeof(lretw));
	g_m.cpu.gpr[X86EMU_RSP] = TM_DATA + 0x2000;
	tm_set_pages(&g_m, TM_DATA + 0x2000, 1, TM_PAGE_ABSENT);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.cr2, TM_DATA + 0x2000);
}

/*
 * 16-bit IRET (66 CF): IP, CS, FLAGS, SP and SS popped as words, IP and SP
 * zero-extended; the FLAGS image changes only RFLAGS bits 15:0 (AC, RF,
 * VIF, VIP and ID above them stay), and RF, not in the image, is cleared
 * when the next instruction completes as usual.
 */
static void iret_with_a_16_bit_operand_size_pops_words(void **state)
{
	(void)state;
	static const uint8_t iretw[] = { 0x66, 0xcf };
	const uint64_t high = X86EMU_FLAG_AC | X86EMU_FLAG_ID | X86EMU_FLAG_VIF;

	/* At CPL 0, to CPL 0: IOPL, IF, DF and the arithmetic flags from the image. */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.rflags = X86EMU_FLAG_FIXED | high;
	word_frame(TM_STACK - 16, 6,
		   (const uint16_t[]){ LOW_TARGET, TM_SEL_KCODE,
				       0x3000 | X86EMU_FLAG_IF | X86EMU_FLAG_DF | 0xd5, 0x7ff0,
				       TM_SEL_KDATA, 0xffff /* beyond the frame: not popped */ });
	g_m.mem[LOW_TARGET] = 0x90;		/* nop */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, LOW_TARGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], 0x7ff0);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, TM_SEL_KDATA);
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_FIXED | high | 0x3000 | X86EMU_FLAG_IF |
						 X86EMU_FLAG_DF | 0xd5);

	/* RF set before the IRETW is not kept by it: cleared once it completes. */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.rflags = X86EMU_FLAG_FIXED | X86EMU_FLAG_RF;
	word_frame(TM_STACK - 16, 5,
		   (const uint16_t[]){ LOW_TARGET, TM_SEL_KCODE, 0, 0x7ff0, TM_SEL_KDATA });
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_RF);

	/* To CPL 3: SP and SS from the frame; at CPL 0 IF and IOPL come from the image too. */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.rflags = X86EMU_FLAG_FIXED;
	word_frame(TM_STACK - 16, 5,
		   (const uint16_t[]){ LOW_TARGET, TM_SEL_UCODE, X86EMU_FLAG_IF | 0x1, 0x7f00,
				       TM_SEL_UDATA });
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	returned_to_user(LOW_TARGET, 0x7f00);
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_FIXED | X86EMU_FLAG_IF | 0x1);

	/* The checks of the other sizes: a null CS is #GP(0), nothing popped. */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 16;
	tm_wr(&g_m, TM_STACK - 16, 2, LOW_TARGET);
	tm_wr(&g_m, TM_STACK - 14, 2, 0);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	assert_int_equal(stack_qword(1), LOW_CODE);
	assert_int_equal(stack_qword(4), TM_STACK - 16);
	/* NT set: #GP(0) (no task return in IA-32e mode). */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.rflags |= X86EMU_FLAG_NT;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 16;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	/* An absent page under the SS word, the last one popped: #PF, nothing changed. */
	load_low(iretw, sizeof(iretw));
	g_m.cpu.gpr[X86EMU_RSP] = TM_DATA + 0x2000 - 8;
	tm_wr(&g_m, TM_DATA + 0x2000 - 8, 2, LOW_TARGET);
	tm_wr(&g_m, TM_DATA + 0x2000 - 6, 2, TM_SEL_KCODE);
	tm_set_pages(&g_m, TM_DATA + 0x2000, 1, TM_PAGE_ABSENT);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.cr2, TM_DATA + 0x2000);
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(stack_qword(1), LOW_CODE);
	assert_int_equal(stack_qword(4), TM_DATA + 0x2000 - 8);
}

static void far_jmp_and_call_faults_change_nothing(void **state)
{
	(void)state;
	const uint64_t kcode = tm_rd(&g_m, TM_GDT + TM_SEL_KCODE, 8);
	const uint64_t ucode = tm_rd(&g_m, TM_GDT + TM_SEL_UCODE, 8);
	enum { NONE, ABSENT_STACK, RO_STACK, BAD_RSP, USER };
	static const uint64_t none = ~0ull;
	const struct {
		const uint8_t *s, *e;
		uint16_t sel;
		uint64_t desc38, offset;
		int how;
		unsigned vector;
		long ec;
	} cases[] = {
		{ g_ljmp64, g_ljmp64_end, 0, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0 },	/* null */
		{ g_ljmp64, g_ljmp64_end, 3, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0 },	/* null, RPL 3 */
		{ g_ljmp64, g_ljmp64_end, 0x48, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x48 },	/* limit */
		{ g_lcall64, g_lcall64_end, 0x4c, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x4c },	/* no LDT */
		{ g_ljmp64, g_ljmp64_end, TM_SEL_KDATA, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x10 },
		{ g_lcall64, g_lcall64_end, TM_SEL_TSS, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x28 },
		/* L and D both set. */
		{ g_ljmp64, g_ljmp64_end, 0x38, kcode | (1ull << 54), FAR_TARGET, NONE, X86EMU_EXC_GP, 0x38 },
		/* Non-conforming: DPL must equal CPL, RPL must not exceed it. */
		{ g_ljmp64, g_ljmp64_end, TM_SEL_UCODE, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x20 },
		{ g_lcall32, g_lcall32_end, TM_SEL_KCODE | 3, none, FAR_TARGET, NONE, X86EMU_EXC_GP, 0x08 },
		{ g_ljmp64, g_ljmp64_end, TM_SEL_KCODE | 3, none, FAR_TARGET, USER, X86EMU_EXC_GP, 0x08 },
		/* Conforming: DPL must not exceed CPL. */
		{ g_ljmp64, g_ljmp64_end, 0x38, ucode | (1ull << 42), FAR_TARGET, NONE, X86EMU_EXC_GP, 0x38 },
		/* Not present, after the privilege checks. */
		{ g_lcall64, g_lcall64_end, 0x38, kcode & ~(1ull << 47), FAR_TARGET, NONE, X86EMU_EXC_NP, 0x38 },
		{ g_ljmp64, g_ljmp64_end, 0x3b, kcode & ~(1ull << 47), FAR_TARGET, NONE, X86EMU_EXC_GP, 0x38 },
		/* A non-canonical offset is #GP(0). */
		{ g_ljmp64, g_ljmp64_end, 0x38, kcode, 0x0000800000000000ull, NONE, X86EMU_EXC_GP, 0 },
		{ g_lcall64, g_lcall64_end, 0x38, kcode, 0xffff7fffffffffffull, NONE, X86EMU_EXC_GP, 0 },
		/* The pushes are checked before CS changes. */
		{ g_lcall64, g_lcall64_end, 0x38, kcode, FAR_TARGET, ABSENT_STACK, X86EMU_EXC_PF, 2 },
		{ g_lcall32, g_lcall32_end, 0x38, kcode, FAR_TARGET, RO_STACK, X86EMU_EXC_PF, 3 },
		{ g_lcall64, g_lcall64_end, 0x38, kcode, FAR_TARGET, BAD_RSP, X86EMU_EXC_SS, 0 },
		{ g_ljmp_reg, g_ljmp_reg_end, 0x38, kcode, FAR_TARGET, NONE, X86EMU_EXC_UD, -1 },
		{ g_ljmp_direct, g_ljmp_direct_end, 0x38, kcode, FAR_TARGET, NONE, X86EMU_EXC_UD, -1 },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_load_code(cases[i].s, cases[i].e);
		faults_on_ist();
		unsigned sz = (cases[i].s == g_lcall32 || cases[i].s == g_ljmp32) ? 4 : 8;
		if (cases[i].desc38 != none)
			gdt_put(0x38, cases[i].desc38);
		far_pointer(sz, cases[i].offset, cases[i].sel);
		uint64_t rsp = FAR_STACK;
		if (cases[i].how == BAD_RSP)
			rsp = 0x0000800000000008ull;
		if (cases[i].how == USER)
			tm_enter_user(&g_m, TM_CODE, rsp);
		g_m.cpu.gpr[X86EMU_RSP] = rsp;
		for (unsigned k = 0; k < 4; k++)
			tm_wr(&g_m, FAR_STACK - 8 * (k + 1), 8, 0xa5a5a5a5a5a5a5a5ull);
		if (cases[i].how == ABSENT_STACK)
			tm_set_pages(&g_m, FAR_STACK - 8, 1, TM_PAGE_ABSENT);
		if (cases[i].how == RO_STACK)
			tm_set_pages(&g_m, FAR_STACK - 8, 1, TM_PAGE_READONLY);
		struct x86emu_cpu before = g_m.cpu;
		assert_faulted(cases[i].vector, cases[i].ec);
		if (cases[i].vector == X86EMU_EXC_PF)
			assert_int_equal(g_m.cpu.cr2, FAR_STACK - 2 * sz);
		/* The frame holds the state before the instruction. */
		unsigned f = cases[i].ec >= 0 ? 1 : 0;
		assert_int_equal(stack_qword(f + 1), before.seg[X86EMU_CS].selector);
		assert_int_equal(stack_qword(f + 3), rsp);
		for (unsigned k = 0; k < 4; k++)
			assert_int_equal(tm_rd(&g_m, FAR_STACK - 8 * (k + 1), 8),
					 0xa5a5a5a5a5a5a5a5ull);
	}
}

/* A 64-bit call gate at 0x38 (16 bytes) to sel:offset, with the GDT ending after it. */
static void put_call_gate(unsigned dpl, uint16_t sel, uint64_t offset, uint64_t hi_extra)
{
	uint64_t lo = (offset & 0xffff) | ((uint64_t)sel << 16) | (0xcull << 40) |
		      ((uint64_t)dpl << 45) | (1ull << 47) | (((offset >> 16) & 0xffff) << 48);
	gdt_put(0x38, lo);
	gdt_put(0x40, (offset >> 32) | hi_extra);
}

/*
 * Through a 64-bit call gate: JMP keeps the CPL; CALL to a more privileged
 * non-conforming segment takes RSPn from the TSS, a null SS, and pushes
 * SS, RSP, CS and RIP (8 bytes each), which far RET pops to go back.
 */
static void far_jmp_and_call_through_a_call_gate(void **state)
{
	(void)state;
	LOAD(g_ljmp64);
	put_call_gate(0, TM_SEL_KCODE, FAR_TARGET, 0);
	far_pointer(8, 0x1234, 0x38);	/* the pointer's offset is ignored */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);

	/* CALL m16:32 through a gate at the same level still pushes quadwords. */
	LOAD(g_lcall32);
	put_call_gate(0, TM_SEL_KCODE, FAR_TARGET, 0);
	far_pointer(4, 0, 0x38);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK - 16);
	assert_int_equal(stack_qword(0), TM_CODE + 2);
	assert_int_equal(stack_qword(1), TM_SEL_KCODE);

	/* From CPL 3 through a DPL 3 gate to CPL 0, and LRETQ back. */
	LOAD(g_lcall64);
	put_call_gate(3, TM_SEL_KCODE, FAR_TARGET, 0);
	far_pointer(8, 0, 0x3b);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK - 8);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cpl, 0);
	assert_int_equal(g_m.cpu.rip, FAR_TARGET);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0);	/* null, RPL 0 */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_RSP0 - 32);
	assert_int_equal(stack_qword(0), TM_CODE + 3);
	assert_int_equal(stack_qword(1), TM_SEL_UCODE);
	assert_int_equal(stack_qword(2), TM_USER_STACK - 8);
	assert_int_equal(stack_qword(3), TM_SEL_UDATA);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);	/* nop, lretq */
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cpl, 3);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 3);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_UCODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, TM_SEL_UDATA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_USER_STACK - 8);
}

static void far_jmp_and_call_through_a_call_gate_faults(void **state)
{
	(void)state;
	const uint64_t kcode = tm_rd(&g_m, TM_GDT + TM_SEL_KCODE, 8);
	enum { CPL0, CPL3, CPL3_RSP0_ABSENT };
	const struct {
		const uint8_t *s, *e;
		uint16_t psel;		/* the far pointer's selector */
		unsigned dpl;		/* the gate's */
		uint16_t tsel;		/* the gate's target */
		uint64_t offset, hi_extra, d48;	/* d48: the descriptor at 0x48 */
		uint16_t limit;		/* the GDT's */
		int how;
		unsigned vector;
		long ec;
	} cases[] = {
		/* The gate: DPL >= CPL and RPL, a zero type in the upper half, within the GDT, present. */
		{ g_lcall64, g_lcall64_end, 0x3b, 0, 0x08, FAR_TARGET, 0, 0, 0x47, CPL3, X86EMU_EXC_GP, 0x38 },
		{ g_ljmp64, g_ljmp64_end, 0x3b, 0, 0x08, FAR_TARGET, 0, 0, 0x47, CPL0, X86EMU_EXC_GP, 0x38 },
		{ g_ljmp64, g_ljmp64_end, 0x38, 0, 0x08, FAR_TARGET, 1ull << 40, 0, 0x47, CPL0, X86EMU_EXC_GP, 0x38 },
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x08, FAR_TARGET, 0, 0, 0x47, CPL0, X86EMU_EXC_NP, 0x38 },
		{ g_ljmp64, g_ljmp64_end, 0x38, 0, 0x08, FAR_TARGET, 0, 0, 0x3f, CPL0, X86EMU_EXC_GP, 0x38 },
		/* Its target: not null, a code segment, within the GDT. */
		{ g_ljmp64, g_ljmp64_end, 0x38, 0, 0x00, FAR_TARGET, 0, 0, 0x47, CPL0, X86EMU_EXC_GP, 0 },
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x10, FAR_TARGET, 0, 0, 0x47, CPL0, X86EMU_EXC_GP, 0x10 },
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x50, FAR_TARGET, 0, 0, 0x4f, CPL0, X86EMU_EXC_GP, 0x50 },
		/* The target must be 64-bit code (L=1, D=0), and present. */
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x48, FAR_TARGET, 0, kcode & ~(1ull << 53), 0x4f, CPL0,
		  X86EMU_EXC_GP, 0x48 },
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x48, FAR_TARGET, 0, kcode | (1ull << 54), 0x4f, CPL0,
		  X86EMU_EXC_GP, 0x48 },
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x48, FAR_TARGET, 0, kcode & ~(1ull << 47), 0x4f, CPL0,
		  X86EMU_EXC_NP, 0x48 },
		/* JMP through a gate does not change the CPL. */
		{ g_ljmp64, g_ljmp64_end, 0x3b, 3, 0x08, FAR_TARGET, 0, 0, 0x47, CPL3, X86EMU_EXC_GP, 0x08 },
		/* A non-canonical offset in the gate. */
		{ g_lcall64, g_lcall64_end, 0x38, 0, 0x08, 0x0000800000000000ull, 0, 0, 0x47, CPL0,
		  X86EMU_EXC_GP, 0 },
		/* The inner stack faults as a supervisor write, before anything changes. */
		{ g_lcall64, g_lcall64_end, 0x3b, 3, 0x08, FAR_TARGET, 0, 0, 0x47, CPL3_RSP0_ABSENT,
		  X86EMU_EXC_PF, 2 },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_load_code(cases[i].s, cases[i].e);
		faults_on_ist();
		put_call_gate(cases[i].dpl, cases[i].tsel, cases[i].offset, cases[i].hi_extra);
		if (cases[i].d48)
			gdt_put(0x48, cases[i].d48);
		g_m.cpu.gdtr.limit = cases[i].limit;
		if (i == 1)	/* a DPL 0 gate with RPL 3 */
			put_call_gate(0, cases[i].tsel, cases[i].offset, 0);
		if (cases[i].vector == X86EMU_EXC_NP && !cases[i].d48)	/* the gate not present */
			tm_wr(&g_m, TM_GDT + 0x38, 8, tm_rd(&g_m, TM_GDT + 0x38, 8) & ~(1ull << 47));
		far_pointer(8, 0, cases[i].psel);
		if (cases[i].how != CPL0)
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		if (cases[i].how == CPL3_RSP0_ABSENT)
			tm_set_pages(&g_m, TM_RSP0 - 8, 1, TM_PAGE_ABSENT);
		struct x86emu_cpu before = g_m.cpu;
		assert_faulted(cases[i].vector, cases[i].ec);
		unsigned f = cases[i].ec >= 0 ? 1 : 0;
		assert_int_equal(stack_qword(f + 1), before.seg[X86EMU_CS].selector);
		assert_int_equal(stack_qword(f + 3), before.gpr[X86EMU_RSP]);
		assert_int_equal(stack_qword(f + 4), before.seg[X86EMU_SS].selector);
	}
}

/* ---- XLAT, SMSW, LMSW ---------------------------------------------------------------------- */

GUEST(g_xlat, "xlat\n hlt");
GUEST(g_xlat_a32, "addr32 xlat\n hlt");
GUEST(g_xlat_fs, ".byte 0x64, 0xd7\n hlt");	/* xlat %fs:(%rbx) */

/*
 * XLAT: AL = [rBX + zero-extended AL]; nothing else changes (the host
 * agrees, flags included), 0x67 uses EBX, a segment override adds its
 * base, and a fault leaves AL alone.
 */
static void xlat_looks_al_up_in_the_table_at_rbx(void **state)
{
	(void)state;
	static uint8_t table[256];
	const uint8_t code[] = { 0xd7 };
	tseed(17);
	for (unsigned i = 0; i < 256; i++)
		table[i] = (uint8_t)trand();
	for (unsigned i = 0; i < 64; i++) {
		struct host_regs h;
		for (unsigned r = 0; r < 16; r++)
			h.gpr[r] = trand();
		h.rflags = X86EMU_FLAG_FIXED | (trand() & X86EMU_FLAGS_ARITH);
		struct host_regs n = h;
		n.gpr[X86EMU_RBX] = (uint64_t)(uintptr_t)table;
		assert_int_equal(host_exec(code, sizeof(code), &n), 0);

		LOAD(g_xlat);
		tm_load(&g_m, TM_DATA, table, sizeof(table));
		for (unsigned r = 0; r < 16; r++)
			if (r != X86EMU_RSP)
				g_m.cpu.gpr[r] = h.gpr[r];
		g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
		g_m.cpu.rflags = h.rflags;
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], n.gpr[X86EMU_RAX]);
		assert_int_equal(g_m.cpu.rflags & X86EMU_FLAGS_ARITH, n.rflags & X86EMU_FLAGS_ARITH);
		assert_int_equal(g_m.cpu.rip, TM_CODE + 1);
	}

	LOAD(g_xlat_a32);
	tm_wr(&g_m, TM_DATA + 0x10, 1, 0x5a);
	g_m.cpu.gpr[X86EMU_RBX] = 0xffffffff00000000ull | TM_DATA;	/* EBX only */
	g_m.cpu.gpr[X86EMU_RAX] = 0x1234567890abcd10ull;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1234567890abcd5aull);

	LOAD(g_xlat_fs);
	tm_wr(&g_m, TM_DATA + 0x1ff, 1, 0x77);
	g_m.cpu.seg[X86EMU_FS].base = TM_DATA;
	g_m.cpu.gpr[X86EMU_RBX] = 0x100;
	g_m.cpu.gpr[X86EMU_RAX] = 0xff;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);

	LOAD(g_xlat);
	faults_on_ist();
	tm_set_pages(&g_m, TM_DATA, 1, TM_PAGE_ABSENT);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 0x42;
	assert_faulted(X86EMU_EXC_PF, 0);
	assert_int_equal(g_m.cpu.cr2, TM_DATA + 0x42);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x42);
}

GUEST(g_smsw, "smsw %ax\n smsw %ecx\n smsw %rdx\n smsw 0x100000\n hlt");

/* SMSW: CR0 at the register's size (16 bits merge), a word to memory; CPL 3 may (no UMIP). */
static void smsw_stores_cr0_at_the_operand_size(void **state)
{
	(void)state;
	for (unsigned user = 0; user < 2; user++) {
		LOAD(g_smsw);
		if (user)
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
		g_m.cpu.cr0 |= X86EMU_CR0_TS | X86EMU_CR0_MP;
		uint64_t cr0 = g_m.cpu.cr0;
		g_m.cpu.gpr[X86EMU_RAX] = ~0ull;
		g_m.cpu.gpr[X86EMU_RCX] = ~0ull;
		tm_wr(&g_m, TM_DATA, 8, ~0ull);
		assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_BUDGET);
		assert_false(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0xffffffffffff0000ull | (cr0 & 0xffff));
		assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], cr0 & 0xffffffffull);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], cr0);
		assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 0xffffffffffff0000ull | (cr0 & 0xffff));
		assert_true(cr0 & X86EMU_CR0_PG);
	}
}

GUEST(g_lmsw, "lmsw %ax\n hlt");
GUEST(g_lmsw_mem, "lmsw 0x100000\n hlt");

/*
 * LMSW loads only MP, EM and TS and may set but not clear PE; it goes
 * through MOV CR0's hook; at CPL 3 it is #GP(0) and CR0 stays.
 */
static void lmsw_loads_the_low_cr0_bits_through_the_cr0_hook(void **state)
{
	(void)state;
	LOAD(g_lmsw);
	uint64_t cr0 = g_m.cpu.cr0;
	g_m.cpu.gpr[X86EMU_RAX] = 0xfff0 | X86EMU_CR0_TS | X86EMU_CR0_EM;	/* PE clear */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.cr0, (cr0 & ~0xfull) | X86EMU_CR0_PE | X86EMU_CR0_TS | X86EMU_CR0_EM);
	assert_int_equal(g_m.cr_writes, 1);
	assert_int_equal(g_m.last_cr, 0);
	assert_int_equal(g_m.last_cr_value, g_m.cpu.cr0);

	LOAD(g_lmsw_mem);
	g_m.cpu.cr0 |= X86EMU_CR0_TS | X86EMU_CR0_MP;
	cr0 = g_m.cpu.cr0;
	tm_wr(&g_m, TM_DATA, 2, X86EMU_CR0_EM);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.cr0, (cr0 & ~0xeull) | X86EMU_CR0_EM);

	LOAD(g_lmsw);
	faults_on_ist();
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	cr0 = g_m.cpu.cr0;
	g_m.cpu.gpr[X86EMU_RAX] = X86EMU_CR0_TS;
	assert_faulted(X86EMU_EXC_GP, 0);
	assert_int_equal(g_m.cpu.cr0, cr0);
	assert_int_equal(g_m.cr_writes, 0);
}

/* ---- LAR, LSL, VERR, VERW ---------------------------------------------------------------------- */

/* lar ecx,eax; lar rcx,rax; lar cx,ax; lsl ecx,eax; lsl rcx,rax; lsl cx,ax; verr cx; verw cx */
static const uint8_t g_verify_code[][4] = {
	{ 0x0f, 0x02, 0xc1 }, { 0x48, 0x0f, 0x02, 0xc1 }, { 0x66, 0x0f, 0x02, 0xc1 },
	{ 0x0f, 0x03, 0xc1 }, { 0x48, 0x0f, 0x03, 0xc1 }, { 0x66, 0x0f, 0x03, 0xc1 },
	{ 0x0f, 0x00, 0xe1 }, { 0x0f, 0x00, 0xe9 },
};
static const size_t g_verify_len[] = { 3, 4, 4, 3, 4, 4, 3, 3 };
enum { V_LAR32, V_LAR64, V_LAR16, V_LSL32, V_LSL64, V_LSL16, V_VERR, V_VERW, V_COUNT };

/* Run form k on selector `sel` in the test machine; RAX starts as `rax`. Returns ZF. */
static bool emu_verify(unsigned k, uint64_t sel, uint64_t rax)
{
	g_m.cpu.rip = TM_CODE;
	tm_load(&g_m, TM_CODE, g_verify_code[k], g_verify_len[k]);
	g_m.cpu.gpr[X86EMU_RAX] = rax;
	g_m.cpu.gpr[X86EMU_RCX] = sel;
	g_m.cpu.rflags = X86EMU_FLAG_FIXED | X86EMU_FLAGS_ARITH;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TM_CODE + g_verify_len[k]);
	/* Only ZF changes. */
	assert_int_equal(g_m.cpu.rflags | X86EMU_FLAG_ZF, X86EMU_FLAG_FIXED | X86EMU_FLAGS_ARITH);
	return (g_m.cpu.rflags & X86EMU_FLAG_ZF) != 0;
}

/*
 * At CPL 3 against the host: the test machine gets the host's GDT as far
 * as CPL 3 can read it (LAR and LSL of every entry the host lets it see),
 * and the DPL 0 entries as Linux writes them (kernel code and data, the
 * busy TSS); then every selector below 0x90, with each RPL and TI, must
 * give the host's ZF and destination for every form.  This covers DPL
 * against CPL and RPL, readable/writable, a null selector, an unusable
 * LDT, entries beyond the GDT limit, and that a failure leaves the
 * destination (all 64 bits) alone.
 */
static void lar_lsl_verr_verw_match_the_host_at_cpl3(void **state)
{
	(void)state;
	cpu_set_t old, one;
	sched_getaffinity(0, sizeof(old), &old);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	sched_setaffinity(0, sizeof(one), &one);	/* the CPU-number segment's limit */

	LOAD(g_user_hlt);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	memset(g_m.mem + TM_GDT, 0, 0x90);
	g_m.cpu.gdtr.limit = 0x7f;		/* Linux: 16 entries */
	tm_wr(&g_m, TM_GDT + 0x08, 8, 0x00cf9b000000ffffull);
	tm_wr(&g_m, TM_GDT + 0x10, 8, 0x00af9b000000ffffull);
	tm_wr(&g_m, TM_GDT + 0x18, 8, 0x00cf93000000ffffull);
	tm_wr(&g_m, TM_GDT + 0x40, 8, 0x00008b000000206full);	/* a busy TSS, DPL 0 */
	for (unsigned i = 1; i < 16; i++) {
		struct host_regs lar = { .rflags = X86EMU_FLAG_FIXED }, lsl;
		lar.gpr[X86EMU_RCX] = 8 * i + 3;
		lsl = lar;
		assert_int_equal(host_exec(g_verify_code[V_LAR32], g_verify_len[V_LAR32], &lar), 0);
		assert_int_equal(host_exec(g_verify_code[V_LSL32], g_verify_len[V_LSL32], &lsl), 0);
		if (!(lar.rflags & X86EMU_FLAG_ZF))
			continue;
		assert_true(lsl.rflags & X86EMU_FLAG_ZF);
		uint64_t ar = lar.gpr[X86EMU_RAX], lim = lsl.gpr[X86EMU_RAX];
		if (ar & (1u << 23))
			lim >>= 12;
		tm_wr(&g_m, TM_GDT + 8 * i, 8, (ar << 32) | (lim & 0xffff));
	}
	tseed(31);
	unsigned seen = 0;
	for (unsigned sel = 0; sel < 0x90; sel++)
		for (unsigned k = 0; k < V_COUNT; k++) {
			struct host_regs h = { .rflags = X86EMU_FLAG_FIXED | X86EMU_FLAGS_ARITH };
			uint64_t rax = trand(), rcx = (trand() << 16) | sel;
			h.gpr[X86EMU_RAX] = rax;
			h.gpr[X86EMU_RCX] = rcx;
			assert_int_equal(host_exec(g_verify_code[k], g_verify_len[k], &h), 0);
			bool zf = emu_verify(k, rcx, rax);
			if (zf != !!(h.rflags & X86EMU_FLAG_ZF) || g_m.cpu.gpr[X86EMU_RAX] != h.gpr[X86EMU_RAX])
				fail_msg("selector %#x form %u: host ZF %d RAX %#llx, emulator ZF %d RAX %#llx",
					 sel, k, !!(h.rflags & X86EMU_FLAG_ZF),
					 (unsigned long long)h.gpr[X86EMU_RAX], zf,
					 (unsigned long long)g_m.cpu.gpr[X86EMU_RAX]);
			seen += zf;
		}
	assert_true(seen >= 3 * 4 * 4);	/* at least the user code and data segments */
	sched_setaffinity(0, sizeof(old), &old);
}

GUEST(g_lar_mem, "lar (%rbx), %eax\n hlt");

/*
 * What CPL 3 on the host cannot show: 16-byte system descriptors (LDT,
 * TSS, call gate; LSL not for a gate; an upper half with a type, or past
 * the limit, is ZF = 0), conforming code, RPL above DPL at CPL 0, LSL's
 * granularity, and the memory form's faults.
 */
static void lar_lsl_verr_verw_descriptor_types_and_privilege(void **state)
{
	(void)state;
	const uint64_t ldt = 0x0000e2000000ffffull | (0x12345ull << 16);	/* DPL 3, limit 0xffff */
	const uint64_t gate = 0x0000ec0000001000ull | ((uint64_t)TM_SEL_KCODE << 16);
	const uint64_t intgate = 0x0000ee0000001000ull | ((uint64_t)TM_SEL_KCODE << 16);
	const uint64_t conf_xo = 0x00afdc000000ffffull;	/* conforming, execute-only, DPL 2 */
	const uint64_t data_g0 = 0x0000f2000000abcdull;	/* DPL 3 read/write data, byte granular */
	const struct {
		uint64_t d, hi;
		uint16_t limit;		/* GDT limit */
		bool user;
		uint64_t sel;
		bool zf[V_COUNT];	/* LAR32..VERW */
		uint64_t lar, lsl;
	} cases[] = {
		{ ldt, 0, 0x47, true, 0x3b, { 1, 1, 1, 1, 1, 1, 0, 0 }, 0xe200, 0xffff },
		{ ldt, 1ull << 40, 0x47, true, 0x3b, { 0 }, 0, 0 },	/* upper half with a type */
		{ ldt, 0, 0x3f, true, 0x3b, { 0 }, 0, 0 },		/* upper half past the limit */
		{ gate, 0, 0x47, true, 0x3b, { 1, 1, 1, 0, 0, 0, 0, 0 }, 0xec00, 0 },
		{ intgate, 0, 0x47, false, 0x38, { 0 }, 0, 0 },		/* not for LAR */
		{ conf_xo, 0, 0x3f, true, 0x3b, { 1, 1, 1, 1, 1, 1, 0, 0 }, 0xafdc00, 0xffffffff },
		{ conf_xo | (1ull << 41), 0, 0x3f, true, 0x3b, { 1, 1, 1, 1, 1, 1, 1, 0 }, 0xafde00, 0xffffffff },
		{ data_g0, 0, 0x3f, false, 0x3b, { 1, 1, 1, 1, 1, 1, 1, 1 }, 0xf200, 0xabcd },
		{ data_g0 & ~(3ull << 45), 0, 0x3f, false, 0x3b, { 0 }, 0, 0 },	/* RPL 3 > DPL 0 */
		{ data_g0 & ~(1ull << 47), 0, 0x3f, false, 0x38, { 1, 1, 1, 1, 1, 1, 1, 1 }, 0x7200, 0xabcd },	/* P is not checked */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (unsigned k = 0; k < V_COUNT; k++) {
			LOAD(g_user_hlt);
			if (cases[i].user)
				tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
			tm_wr(&g_m, TM_GDT + 0x38, 8, cases[i].d);
			tm_wr(&g_m, TM_GDT + 0x40, 8, cases[i].hi);
			g_m.cpu.gdtr.limit = cases[i].limit;
			const uint64_t rax = 0x5555555555555555ull;
			bool zf = emu_verify(k, cases[i].sel, rax);
			if (zf != cases[i].zf[k])
				fail_msg("case %u form %u: ZF %d", i, k, zf);
			uint64_t want = rax;
			if (zf && k <= V_LAR16)
				want = k == V_LAR16 ? (rax & ~0xffffull) | (cases[i].lar & 0xff00) : cases[i].lar;
			else if (zf && k <= V_LSL16)
				want = k == V_LSL16 ? (rax & ~0xffffull) | (cases[i].lsl & 0xffff) : cases[i].lsl;
			assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], want);
		}

	/* The TSS (DPL 0) is visible to LAR at CPL 0 only. */
	LOAD(g_user_hlt);
	assert_true(emu_verify(V_LAR32, TM_SEL_TSS, 0));
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x8900);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	assert_false(emu_verify(V_LAR32, TM_SEL_TSS | 3, 0));

	/* The memory form reads the selector; a #PF there changes nothing. */
	LOAD(g_lar_mem);
	tm_wr(&g_m, TM_DATA, 2, TM_SEL_KDATA);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_ZF);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0xcf9300);
	LOAD(g_lar_mem);
	faults_on_ist();
	tm_set_pages(&g_m, TM_DATA, 1, TM_PAGE_ABSENT);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 0x77;
	assert_faulted(X86EMU_EXC_PF, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);
}

/* ---- retry: nothing changes ------------------------------------------------------------------ */

GUEST(g_retry_push, "push %rax");
GUEST(g_retry_call, "call *0x100000");
GUEST(g_retry_add, "add %rbx, 0x100000");
GUEST(g_retry_xadd, "lock xadd %rbx, 0x100000");
GUEST(g_retry_pop, "pop %rcx");
GUEST(g_retry_iret, "iretq");
GUEST(g_retry_int, "int $0x40");
GUEST(g_retry_cx16, "lock cmpxchg16b 0x100000");
GUEST(g_retry_movs, "movsq");

static void retry_from_any_callback_leaves_every_register_untouched(void **state)
{
	(void)state;
	const struct { const uint8_t *s, *e; uint64_t page; } cases[] = {
		{ g_retry_push, g_retry_push_end, TM_STACK - 8 },
		{ g_retry_call, g_retry_call_end, TM_STACK - 8 },	/* read OK, push retries */
		{ g_retry_call, g_retry_call_end, TM_DATA },		/* the target read retries */
		{ g_retry_add, g_retry_add_end, TM_DATA },
		{ g_retry_xadd, g_retry_xadd_end, TM_DATA },
		{ g_retry_pop, g_retry_pop_end, TM_STACK },
		{ g_retry_iret, g_retry_iret_end, TM_STACK },
		{ g_retry_int, g_retry_int_end, TM_IDT },		/* the gate read retries */
		{ g_retry_int, g_retry_int_end, TM_STACK - 8 },		/* the frame write retries */
		{ g_retry_cx16, g_retry_cx16_end, TM_DATA },
		{ g_retry_movs, g_retry_movs_end, TM_DATA + 0x1000 },	/* destination */
		{ g_retry_push, g_retry_push_end, TM_CODE },		/* the fetch itself */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_load_code(cases[i].s, cases[i].e);
		tm_wr(&g_m, TM_DATA, 8, TM_CODE + 0x800);
		for (unsigned r = 0; r < 16; r++)
			if (r != X86EMU_RSP)
				g_m.cpu.gpr[r] = 0x1111111111111111ull * (r + 1);
		g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
		g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000;
		g_m.cpu.rflags |= X86EMU_FLAG_CF | X86EMU_FLAG_IF;
		tm_set_pages(&g_m, cases[i].page, 1, TM_PAGE_RETRY);
		struct x86emu_cpu before = g_m.cpu;
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
		assert_memory_equal(&before, &g_m.cpu, sizeof(before));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(divide_by_zero_delivers_de_with_a_precise_frame),
		cmocka_unit_test(page_fault_from_the_memory_callback_sets_cr2_and_pushes_the_error_code),
		cmocka_unit_test(privileged_instruction_at_cpl3_is_gp_delivered_on_the_rsp0_stack),
		cmocka_unit_test(gate_with_ist_switches_to_the_ist_stack),
		cmocka_unit_test(delivery_faults_ss_on_a_non_canonical_stack),
		cmocka_unit_test(rf_from_iretq_is_cleared_when_the_next_instruction_completes),
		cmocka_unit_test(interrupt_between_rep_iterations_pushes_rf),
		cmocka_unit_test(page_fault_while_delivering_a_page_fault_is_a_double_fault),
		cmocka_unit_test(page_fault_whose_gate_is_missing_is_a_double_fault_with_its_cr2),
		cmocka_unit_test(fault_while_delivering_a_double_fault_shuts_down),
		cmocka_unit_test(missing_gate_is_gp_with_the_idt_error_code),
		cmocka_unit_test(int_n_from_user_needs_a_dpl3_gate),
		cmocka_unit_test(iretq_returns_to_cpl3_with_the_popped_state),
		cmocka_unit_test(iretq_to_a_data_segment_as_cs_is_gp_with_the_selector),
		cmocka_unit_test(syscall_enters_the_kernel_and_sysret_returns),
		cmocka_unit_test(control_register_writes_are_validated_and_reported_to_the_machine),
		cmocka_unit_test(cr3_no_flush_bit_reaches_the_machine_but_is_not_stored),
		cmocka_unit_test(single_step_trap_delivery_retried_keeps_the_instruction_done),
		cmocka_unit_test(ltr_and_lldt_with_a_noncanonical_base_are_gp),
		cmocka_unit_test(iretq_at_cpl0_loads_vif_and_vip),
		cmocka_unit_test(int1_raises_db_after_the_instruction_without_a_dpl_check),
		cmocka_unit_test(trap_flag_single_steps_as_the_host_does),
		cmocka_unit_test(misaligned_access_at_cpl3_with_am_and_ac_is_alignment_check),
		cmocka_unit_test(far_return_to_a_code_segment_with_l_and_d_is_gp),
		cmocka_unit_test(debug_register_aliases_and_reserved_bits),
		cmocka_unit_test(cr4_fsgsbase_is_reserved_without_the_feature),
		cmocka_unit_test(cr3_bit63_without_pcide_is_gp),
		cmocka_unit_test(mov_from_cr_at_cpl3_is_gp),
		cmocka_unit_test(lgdt_lidt_ltr_load_the_tables_and_mark_the_tss_busy),
		cmocka_unit_test(msrs_efer_kernel_gs_base_swapgs_and_unknown_msr_gp),
		cmocka_unit_test(cpuid_reports_long_mode_and_syscall),
		cmocka_unit_test(port_io_goes_to_the_machine_and_needs_iopl_at_cpl3),
		cmocka_unit_test(port_io_at_cpl3_follows_the_tss_io_bitmap),
		cmocka_unit_test(sti_shadow_then_external_interrupt_wakes_hlt),
		cmocka_unit_test(cmpxchg16b_swaps_reports_zf_and_needs_alignment),
		cmocka_unit_test(locked_read_modify_writes_go_through_cmpxchg),
		cmocka_unit_test(locked_write_to_a_readonly_page_faults_with_the_write_bit),
		cmocka_unit_test(retry_from_any_callback_leaves_every_register_untouched),
		cmocka_unit_test(lss_lfs_lgs_load_a_far_pointer),
		cmocka_unit_test(lss_lfs_lgs_faults_change_nothing),
		cmocka_unit_test(far_jmp_and_call_through_memory_load_cs),
		cmocka_unit_test(far_jmp_and_call_faults_change_nothing),
		cmocka_unit_test(far_return_with_a_16_bit_operand_size_pops_words),
		cmocka_unit_test(iret_with_a_16_bit_operand_size_pops_words),
		cmocka_unit_test(far_jmp_and_call_through_a_call_gate),
		cmocka_unit_test(far_jmp_and_call_through_a_call_gate_faults),
		cmocka_unit_test(xlat_looks_al_up_in_the_table_at_rbx),
		cmocka_unit_test(smsw_stores_cr0_at_the_operand_size),
		cmocka_unit_test(lmsw_loads_the_low_cr0_bits_through_the_cr0_hook),
		cmocka_unit_test(lar_lsl_verr_verw_match_the_host_at_cpl3),
		cmocka_unit_test(lar_lsl_verr_verw_descriptor_types_and_privilege),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
