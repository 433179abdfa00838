/*
 * Control flow and the stack: push/pop, call/ret, enter/leave, jumps and
 * loops, RIP-relative addressing, and the bad-input rules of fetch and
 * decode.  Guest code is written in assembly below and assembled by the
 * host toolchain, then copied into the test machine at TM_CODE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

/* Load a snippet at TM_CODE and run until HLT (or a limit); returns the exit. */
static int run(const uint8_t *start, const uint8_t *end)
{
	tm_load_code(start, end);
	return tm_step(&g_m, 10000);
}

#define RUN(name) run(name, name##_end)

GUEST(g_push_pop,
      "mov $0x1111, %rax\n mov $0x2222, %rbx\n push %rax\n push %rbx\n"
      "pop %rcx\n pop %rdx\n push $-2\n pop %rsi\n pushw $0x1234\n popw %di\n hlt");

static void push_pop_move_values_through_the_stack(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_push_pop), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x2222);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDX], 0x1111);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], (uint64_t)-2);	/* imm8 sign-extended */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI] & 0xffff, 0x1234);	/* 16-bit push/pop */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 16, 8), 0x2222);
}

GUEST(g_push_rsp, "push %rsp\n pop %rax\n push %rsp\n pop %rsp\n hlt");

static void push_rsp_pushes_the_old_value_and_pop_rsp_loads_the_popped_one(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_push_rsp), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], TM_STACK);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

GUEST(g_call_ret,
      "call 1f\n mov %rax, %rbx\n hlt\n"
      "1: mov $42, %eax\n ret");

static void call_pushes_the_return_address_and_ret_returns(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_call_ret), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 42);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 8, 8), TM_CODE + 5);	/* after the call */
}

GUEST(g_indirect,
      "lea 1f(%rip), %rax\n call *%rax\n lea 2f(%rip), %rcx\n mov %rcx, -64(%rsp)\n"
      "call *-64(%rsp)\n hlt\n"
      "1: inc %rbx\n ret\n 2: add $10, %rbx\n ret $0");

static void indirect_calls_through_register_and_memory(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_indirect), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 11);
}

GUEST(g_ret_imm, "push $1\n push $2\n call 1f\n hlt\n 1: ret $16");

static void ret_imm16_releases_the_arguments(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_ret_imm), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

GUEST(g_enter_leave,
      "mov $0x5555, %rbp\n enter $32, $0\n mov %rsp, %rax\n mov %rbp, %rbx\n leave\n hlt");

static void enter_builds_a_frame_and_leave_tears_it_down(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_enter_leave), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], TM_STACK - 8);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], TM_STACK - 8 - 32);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 8, 8), 0x5555);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], 0x5555);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

GUEST(g_enter_nested,
      "enter $0, $0\n"		/* frame 1: RBP = TM_STACK-8 */
      "enter $16, $3\n hlt");	/* copies 2 outer frame pointers */

static void enter_with_nesting_level_copies_the_display(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_enter_nested), X86EMU_EXIT_HLT);
	uint64_t f1 = TM_STACK - 8, ft = f1 - 8;
	/*
	 * SDM ENTER: push RBP; push [RBP-8], [RBP-16] (old RBP, read as the
	 * pushes go: here f1-8 is the slot just pushed, f1-16 the next one);
	 * push the frame temp; RSP -= size.
	 */
	assert_int_equal(tm_rd(&g_m, ft, 8), f1);
	assert_int_equal(tm_rd(&g_m, ft - 8, 8), f1);
	assert_int_equal(tm_rd(&g_m, ft - 16, 8), f1);
	assert_int_equal(tm_rd(&g_m, ft - 24, 8), ft);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], ft);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], ft - 24 - 16);
}

/*
 * ENTER pushes RBP before it reads the display, and each display read comes
 * after the copies pushed before it: a slot [RBP - k*8] that overlaps the
 * bytes this ENTER already pushed reads those bytes, even in part (RBP not
 * a multiple of 8 away from RSP), and only the rest comes from memory.
 * Here RBP = RSP + 4: the first slot is half the pushed RBP, half the
 * stack above it; the second lies wholly in what was pushed.  A read that
 * faults (its memory half on an absent page) changes no register and no
 * memory, even though ENTER "pushed" before it.
 */
GUEST(g_enter2_raw, ".byte 0xc8, 0, 0, 2\n hlt");
GUEST(g_enter3_raw, ".byte 0xc8, 0, 0, 3\n hlt");
GUEST(g_enter16_2_raw, ".byte 0x66, 0xc8, 0, 0, 2\n hlt");

static void enter_display_reads_see_the_bytes_already_pushed(void **state)
{
	(void)state;
	const uint64_t p = TM_STACK - 0x100, r = p + 4;

	for (int lvl = 2; lvl <= 3; lvl++) {
		if (lvl == 2)
			tm_load_code(g_enter2_raw, g_enter2_raw_end);
		else
			tm_load_code(g_enter3_raw, g_enter3_raw_end);
		for (unsigned i = 1; i <= 5; i++)
			tm_wr(&g_m, p - 8 * i, 8, 0xb0b0b0b0b0b0b0b0ull + i);
		tm_wr(&g_m, p, 8, 0xa7a6a5a4a3a2a1a0ull);
		g_m.cpu.gpr[X86EMU_RSP] = p;
		g_m.cpu.gpr[X86EMU_RBP] = r;
		assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
		assert_false(g_m.cpu.last_exception.valid);
		uint64_t v1 = (r >> 32) | (0xa3a2a1a0ull << 32);	/* [p-4, p+4) */
		uint64_t v2 = (v1 >> 32) | ((r & 0xffffffffull) << 32);	/* [p-12, p-4) */
		assert_int_equal(tm_rd(&g_m, p - 8, 8), r);
		assert_int_equal(tm_rd(&g_m, p - 16, 8), v1);
		if (lvl == 3)
			assert_int_equal(tm_rd(&g_m, p - 24, 8), v2);
		assert_int_equal(tm_rd(&g_m, p - 8 * (lvl + 1), 8), p - 8);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], p - 8);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], p - 8 * (lvl + 1));
	}

	/* Words: BP = SP + 1, so [BP-2] is the pushed BP's high byte and one byte above. */
	tm_load_code(g_enter16_2_raw, g_enter16_2_raw_end);
	tm_wr(&g_m, p - 8, 8, 0);
	tm_wr(&g_m, p, 8, 0xa7a6a5a4a3a2a1a0ull);
	g_m.cpu.gpr[X86EMU_RSP] = p;
	g_m.cpu.gpr[X86EMU_RBP] = p + 1;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, p - 2, 2), (p + 1) & 0xffff);
	assert_int_equal(tm_rd(&g_m, p - 4, 2), (((p + 1) >> 8) & 0xff) | 0xa000);
	assert_int_equal(tm_rd(&g_m, p - 6, 2), (p - 2) & 0xffff);

	/* The memory half on an absent page: #PF there, and nothing changed. */
	const uint64_t x = TM_STACK - 0x1000;
	tm_load_code(g_enter2_raw, g_enter2_raw_end);
	tm_set_gate(&g_m, X86EMU_EXC_PF, 0xe, 0, 1);	/* on IST1, away from x */
	tm_set_pages(&g_m, x, 4096, TM_PAGE_ABSENT);
	for (unsigned i = 1; i <= 4; i++)
		tm_wr(&g_m, x - 8 * i, 8, 0xc0c0c0c0c0c0c0c0ull + i);
	g_m.cpu.gpr[X86EMU_RSP] = x;
	g_m.cpu.gpr[X86EMU_RBP] = x + 4;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_true(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, x);
	assert_int_equal(stack_qword(1), TM_CODE);	/* RIP, after the error code */
	assert_int_equal(stack_qword(4), x);		/* RSP as it was */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], x + 4);
	for (unsigned i = 1; i <= 4; i++)
		assert_int_equal(tm_rd(&g_m, x - 8 * i, 8), 0xc0c0c0c0c0c0c0c0ull + i);

	/* The old frame and the new stack both absent: ENTER pushes RBP before
	 * its first display read, so that push is the fault (a write, CR2 its
	 * slot), not the read. */
	g_m.cpu.last_exception.valid = false;
	g_m.cpu.halted = false;
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.gpr[X86EMU_RSP] = x + 8;
	g_m.cpu.gpr[X86EMU_RBP] = x + 0x800;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_true(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, x);
	assert_int_equal(stack_qword(0), 2);		/* W, not present, supervisor */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], x + 0x800);
}

/*
 * With a 0x66 prefix ENTER and LEAVE work on words and change only BP; RSP
 * still moves at 64 bits.  The host gives the same registers and stack
 * bytes for these three sequences.
 */
GUEST(g_leave16, ".byte 0x66, 0xc9\n hlt");
GUEST(g_enter16, ".byte 0x66, 0xc8, 0x08, 0x00, 0x00\n hlt");
GUEST(g_enter16_nested, ".byte 0x66, 0xc8, 0x08, 0x00, 0x02\n hlt");

static void load_only(const uint8_t *start, const uint8_t *end)
{
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, TM_CODE, start, (size_t)(end - start));
}

static void enter_and_leave_with_an_operand_size_prefix_use_words(void **state)
{
	(void)state;
	uint64_t base = TM_STACK - 0x100, outer = base + 64;

	load_only(g_leave16, g_leave16_end);
	tm_wr(&g_m, base, 8, 0x1111222233334444ull);
	g_m.cpu.gpr[X86EMU_RBP] = base;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], base + 2);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], (base & ~0xffffull) | 0x4444);

	load_only(g_enter16, g_enter16_end);
	g_m.cpu.gpr[X86EMU_RSP] = base;
	g_m.cpu.gpr[X86EMU_RBP] = 0xaaaabbbbccccddddull;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, base - 2, 2), 0xdddd);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], base - 2 - 8);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], 0xaaaabbbbcccc0000ull | ((base - 2) & 0xffff));

	load_only(g_enter16_nested, g_enter16_nested_end);
	tm_wr(&g_m, outer - 8, 8, 0x5555666677778888ull);
	g_m.cpu.gpr[X86EMU_RSP] = base;
	g_m.cpu.gpr[X86EMU_RBP] = outer;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, base - 2, 2), outer & 0xffff);	/* BP */
	assert_int_equal(tm_rd(&g_m, base - 4, 2), 0x5555);		/* the word at BP-2 */
	assert_int_equal(tm_rd(&g_m, base - 6, 2), (base - 2) & 0xffff);	/* the frame temp */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], base - 6 - 8);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBP], (outer & ~0xffffull) | ((base - 2) & 0xffff));
}

GUEST(g_loops,
      "xor %eax, %eax\n mov $10, %ecx\n"
      "1: add %rcx, %rax\n loop 1b\n"		/* 55 */
      "xor %ebx, %ebx\n mov $5, %edx\n"
      "2: inc %ebx\n cmp %edx, %ebx\n jb 2b\n"	/* 5 */
      "xor %ecx, %ecx\n jrcxz 3f\n mov $99, %ebx\n 3: hlt");

static void loop_jcc_and_jrcxz_branch_as_documented(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_loops), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 55);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 5);
}

GUEST(g_rip_rel, "mov 1f(%rip), %rax\n lea 1f(%rip), %rbx\n hlt\n 1: .quad 0x1122334455667788");

static void rip_relative_operands_use_the_next_instruction_address(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_rip_rel), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1122334455667788ull);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], TM_CODE + 7 + 7 + 1);
}

GUEST(g_jmp_noncanonical, "mov $0x0000800000000000, %rax\n jmp *%rax");

static void jump_to_a_noncanonical_address_faults_gp_at_the_jump(void **state)
{
	(void)state;
	assert_int_equal(RUN(g_jmp_noncanonical), X86EMU_EXIT_HLT);
	assert_true(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_GP);
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
	/* The pushed RIP is the jump itself: faults are precise. */
	assert_int_equal(tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 8, 8), TM_CODE + 10);
}

/*
 * An access that starts just below the non-canonical hole and runs into it
 * faults like one that starts inside it: #SS(0) when it goes through SS (a
 * push, a pop, an RSP- or RBP-based operand), #GP(0) otherwise.  The host
 * (AMD EPYC here) raises #SS for the first four and #GP for the last.
 */
static void stack_access_running_into_the_noncanonical_hole_is_ss(void **state)
{
	(void)state;
	static const struct {
		uint8_t code[4];
		unsigned len, reg;
		uint64_t value;
		uint8_t vector;
	} cases[] = {
		{ { 0x50 }, 1, X86EMU_RSP, 0x0000800000000004ull, X86EMU_EXC_SS },	/* push %rax */
		{ { 0x58 }, 1, X86EMU_RSP, 0x00007ffffffffffcull, X86EMU_EXC_SS },	/* pop %rax */
		{ { 0x48, 0x8b, 0x04, 0x24 }, 4, X86EMU_RSP, 0x00007ffffffffffcull,
		  X86EMU_EXC_SS },						/* mov (%rsp),%rax */
		{ { 0x48, 0x8b, 0x45, 0x00 }, 4, X86EMU_RBP, 0x00007ffffffffffcull,
		  X86EMU_EXC_SS },						/* mov 0(%rbp),%rax */
		{ { 0x48, 0x8b, 0x03 }, 3, X86EMU_RBX, 0x00007ffffffffffcull,
		  X86EMU_EXC_GP },						/* mov (%rbx),%rax */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tm_fini(&g_m);
		tm_init(&g_m);
		tm_load(&g_m, TM_CODE, cases[i].code, cases[i].len);
		/* The handlers run on IST1, so a bad RSP does not stop delivery. */
		tm_set_gate(&g_m, X86EMU_EXC_SS, 0xe, 0, 1);
		tm_set_gate(&g_m, X86EMU_EXC_GP, 0xe, 0, 1);
		g_m.cpu.gpr[cases[i].reg] = cases[i].value;
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
		assert_true(g_m.cpu.last_exception.valid);
		assert_int_equal(g_m.cpu.last_exception.vector, cases[i].vector);
		assert_int_equal(g_m.cpu.last_exception.error_code, 0);
		assert_int_equal(g_m.cpu.rip, tm_handler(cases[i].vector));
		assert_int_equal(tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 8, 8), TM_CODE);
		assert_int_equal(tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 32, 8), cases[i].reg == X86EMU_RSP
			? cases[i].value : TM_STACK);
	}
}

/* ---- fetch and decode of bad input ---------------------------------------------------- */

static void undecodable_bytes_raise_ud(void **state)
{
	(void)state;
	const uint8_t bad[][4] = {
		{ 0x0f, 0x0b },		/* ud2 */
		{ 0x0f, 0xff, 0xc0 },	/* ud0 */
		{ 0x06 },		/* push es: invalid in 64-bit mode */
		{ 0xd9, 0xc0 },		/* x87 fld: outside the subset */
		{ 0xf0, 0x90 },		/* lock nop */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		run(bad[i], bad[i] + 4);
		assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_UD);
		assert_int_equal(tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP], 8), TM_CODE);
	}
}

static void sixteen_byte_instruction_raises_gp(void **state)
{
	(void)state;
	uint8_t code[16];
	memset(code, 0x2e, 15);	/* 15 CS prefixes, then the opcode: 16 bytes */
	code[15] = 0x90;
	run(code, code + 16);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_GP);
	assert_int_equal(g_m.cpu.last_exception.error_code, 0);
}

static void fetch_crossing_into_an_absent_page_faults_with_that_page(void **state)
{
	(void)state;
	/* mov $imm32, %eax split 2 bytes / 3 bytes across a page boundary. */
	const uint8_t mov[] = { 0xb8, 0x78, 0x56, 0x34, 0x12 };
	tm_fini(&g_m);
	tm_init(&g_m);
	uint64_t at = TM_CODE + 4096 - 2;
	tm_load(&g_m, at, mov, sizeof(mov));
	tm_set_pages(&g_m, TM_CODE + 4096, 1, TM_PAGE_ABSENT);
	g_m.cpu.rip = at;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, TM_CODE + 4096);
	assert_int_equal(g_m.cpu.last_exception.error_code, 0x10);	/* I/D, not present */
	assert_int_equal(tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 8, 8), at);
}

static void instruction_ending_at_a_page_boundary_does_not_touch_the_next_page(void **state)
{
	(void)state;
	const uint8_t mov[] = { 0xb8, 0x78, 0x56, 0x34, 0x12 };
	tm_fini(&g_m);
	tm_init(&g_m);
	uint64_t at = TM_CODE + 4096 - sizeof(mov);
	tm_load(&g_m, at, mov, sizeof(mov));
	tm_set_pages(&g_m, TM_CODE + 4096, 1, TM_PAGE_ABSENT);
	g_m.cpu.rip = at;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x12345678);
}

static void random_byte_streams_never_crash(void **state)
{
	(void)state;
	/* Bad input is normal input: whatever the bytes, the interpreter stays sane. */
	tseed(77);
	for (unsigned i = 0; i < 3000; i++) {
		uint8_t code[32];
		for (unsigned b = 0; b < sizeof(code); b++)
			code[b] = (uint8_t)trand();
		tm_fini(&g_m);
		tm_init(&g_m);
		tm_load(&g_m, TM_CODE, code, sizeof(code));
		for (unsigned r = 0; r < 16; r++)
			if (r != X86EMU_RSP)
				g_m.cpu.gpr[r] = trand() % 2 ? trand() % TM_MEM_SIZE : trand();
		int rc = tm_step(&g_m, 8);
		assert_true(rc >= X86EMU_EXIT_BUDGET && rc <= X86EMU_EXIT_BAD_MODE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(push_pop_move_values_through_the_stack),
		cmocka_unit_test(push_rsp_pushes_the_old_value_and_pop_rsp_loads_the_popped_one),
		cmocka_unit_test(call_pushes_the_return_address_and_ret_returns),
		cmocka_unit_test(indirect_calls_through_register_and_memory),
		cmocka_unit_test(ret_imm16_releases_the_arguments),
		cmocka_unit_test(enter_builds_a_frame_and_leave_tears_it_down),
		cmocka_unit_test(enter_with_nesting_level_copies_the_display),
		cmocka_unit_test(enter_display_reads_see_the_bytes_already_pushed),
		cmocka_unit_test(enter_and_leave_with_an_operand_size_prefix_use_words),
		cmocka_unit_test(loop_jcc_and_jrcxz_branch_as_documented),
		cmocka_unit_test(rip_relative_operands_use_the_next_instruction_address),
		cmocka_unit_test(jump_to_a_noncanonical_address_faults_gp_at_the_jump),
		cmocka_unit_test(stack_access_running_into_the_noncanonical_hole_is_ss),
		cmocka_unit_test(undecodable_bytes_raise_ud),
		cmocka_unit_test(sixteen_byte_instruction_raises_gp),
		cmocka_unit_test(fetch_crossing_into_an_absent_page_faults_with_that_page),
		cmocka_unit_test(instruction_ending_at_a_page_boundary_does_not_touch_the_next_page),
		cmocka_unit_test(random_byte_streams_never_crash),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
