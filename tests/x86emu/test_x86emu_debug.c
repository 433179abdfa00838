/*
 * Debug-register breakpoints (tools/x86emu/debug.c): instruction
 * breakpoints (a fault before the instruction, RF pushed as it is, RF
 * suppressing them), data breakpoints on writes or on reads and writes
 * (a trap after the instruction, after the REP iteration that hit),
 * I/O breakpoints with CR4.DE, the alignment and length of the watched
 * range, general detect (DR7.GD), DR6 as each #DB leaves it, a single
 * step and a breakpoint reported by one #DB, MOV SS holding the trap one
 * instruction, and a faulting instruction reporting no breakpoint.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

/* Guest address of a label inside guest code `name`. */
#define AT(name, label) (TM_CODE + (uint64_t)((label) - (name)))

enum { RW_EXEC = 0, RW_WRITE = 1, RW_IO = 2, RW_ACCESS = 3 };
enum { LEN_1 = 0, LEN_2 = 1, LEN_8 = 2, LEN_4 = 3 };
#define B(i) (1u << (i))

/* Breakpoint i at addr, enabled locally (or globally), of kind rw and length len. */
static void arm(unsigned i, uint64_t addr, unsigned rw, unsigned len, bool global)
{
	g_m.cpu.dr[i] = addr;
	uint64_t dr7 = g_m.cpu.dr[7];
	dr7 &= ~(3ull << (2 * i)) & ~(0xfull << (16 + 4 * i));
	dr7 |= (global ? 2ull : 1ull) << (2 * i);
	dr7 |= (uint64_t)(rw | len << 2) << (16 + 4 * i);
	g_m.cpu.dr[7] = dr7;
}

/* The CPU is at the #DB handler, the frame pushed for rip with RF as given. */
static void at_db(uint64_t rip, bool rf)
{
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DB));
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_DB);
	assert_false(g_m.cpu.last_exception.has_error_code);
	assert_int_equal(stack_qword(0), rip);
	assert_int_equal(!!(stack_qword(2) & X86EMU_FLAG_RF), rf);
}

/* ---- instruction breakpoints ------------------------------------------------------------- */

GUEST(g_two_movs, "mov $1, %eax\n .globl g_two_movs_2\n g_two_movs_2: mov $2, %ebx\n hlt");
extern const uint8_t g_two_movs_2[];

static void an_instruction_breakpoint_faults_before_the_instruction_and_rf_lets_it_run(
	void **state)
{
	(void)state;
	LOAD(g_two_movs);
	const uint64_t second = AT(g_two_movs, g_two_movs_2);
	arm(0, second, RW_EXEC, LEN_1, false);
	g_m.cpu.dr[6] = B(3);	/* left from an earlier #DB: replaced */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(second, false);	/* RF pushed as it was: clear */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0);	/* not executed */
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(0));

	/* The handler returns with RF set in the image: the instruction runs once. */
	g_m.cpu.rip = second;
	g_m.cpu.rflags |= X86EMU_FLAG_RF;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 2);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_RF);	/* cleared once it completed */

	/* Enabled globally it fires too; disabled (L0 = G0 = 0) it does not. */
	LOAD(g_two_movs);
	arm(0, TM_CODE, RW_EXEC, LEN_1, true);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(TM_CODE, false);
	LOAD(g_two_movs);
	arm(0, TM_CODE, RW_EXEC, LEN_1, false);
	g_m.cpu.dr[7] &= ~3ull;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);
	/* Only the instruction's first byte counts. */
	LOAD(g_two_movs);
	arm(0, TM_CODE + 1, RW_EXEC, LEN_1, false);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
}

/* ---- data breakpoints ---------------------------------------------------------------------- */

GUEST(g_store_load, "movl $5, (%rbx)\n .globl g_store_load_2\n g_store_load_2: mov (%rbx), %ecx\n"
		    ".globl g_store_load_3\n g_store_load_3: nop\n hlt");
extern const uint8_t g_store_load_2[], g_store_load_3[];

static void a_write_breakpoint_traps_after_the_store_and_not_on_reads(void **state)
{
	(void)state;
	LOAD(g_store_load);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 6;
	arm(1, TM_DATA + 5, RW_WRITE, LEN_4, true);	/* watches TM_DATA + 4 .. + 7 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 6, 4), 5);	/* the store was made */
	assert_true(g_m.cpu.db_pending);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(AT(g_store_load, g_store_load_2), false);	/* a trap: the next RIP */
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(1));
	assert_false(g_m.cpu.dr[6] & X86EMU_DR6_BS);

	/* The load from the same bytes does not hit a write breakpoint. */
	LOAD(g_store_load);
	g_m.cpu.rip = AT(g_store_load, g_store_load_2);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 6;
	arm(1, TM_DATA + 4, RW_WRITE, LEN_4, false);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
}

static void an_access_breakpoint_traps_on_reads_and_its_range_is_aligned_to_its_length(
	void **state)
{
	(void)state;
	/* Read/write kind: the load hits. */
	LOAD(g_store_load);
	g_m.cpu.rip = AT(g_store_load, g_store_load_2);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 6;
	arm(2, TM_DATA + 9, RW_ACCESS, LEN_8, false);	/* watches TM_DATA + 8 .. + 15 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);	/* 4 bytes at +6 reach +8, +9 */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(AT(g_store_load, g_store_load_3), false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(2));

	/* Every length, an access just below and just inside the range. */
	static const struct {
		unsigned len_field, bytes;
	} lens[] = { { LEN_1, 1 }, { LEN_2, 2 }, { LEN_4, 4 }, { LEN_8, 8 } };
	for (unsigned k = 0; k < 4; k++) {
		for (int inside = 0; inside < 2; inside++) {
			LOAD(g_store_load);
			g_m.cpu.rip = AT(g_store_load, g_store_load_2);
			/* A 4-byte load ending just before the range, or on its first byte. */
			g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 0x40 - 4 + (inside ? 1 : 0);
			arm(3, TM_DATA + 0x40 + lens[k].bytes - 1, RW_ACCESS, lens[k].len_field,
			    true);
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			assert_int_equal(g_m.cpu.db_pending, inside);
			/* Past its end: the next byte after the range is not watched. */
			LOAD(g_store_load);
			g_m.cpu.rip = AT(g_store_load, g_store_load_2);
			g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 0x40 + lens[k].bytes - (inside ? 1 : 0);
			arm(3, TM_DATA + 0x40, RW_ACCESS, lens[k].len_field, true);
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			assert_int_equal(g_m.cpu.db_pending, inside);
		}
	}
}

/* Two breakpoints hit by one instruction are reported together; B0-B3
 * name only this #DB's, whatever DR6 held. */
GUEST(g_push, "push %rax\n .globl g_push_2\n g_push_2: hlt");
extern const uint8_t g_push_2[];

static void one_instruction_hitting_two_breakpoints_reports_both(void **state)
{
	(void)state;
	LOAD(g_push);
	arm(0, TM_STACK - 8, RW_WRITE, LEN_1, false);
	arm(3, TM_STACK - 1, RW_ACCESS, LEN_1, false);
	arm(2, TM_STACK, RW_ACCESS, LEN_1, false);	/* just above the push: not hit */
	g_m.cpu.dr[6] = B(2) | B(1);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_DB));
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(0) | B(3));
}

/* ---- REP strings -------------------------------------------------------------------------- */

GUEST(g_rep_movsb, "rep movsb\n .globl g_rep_movsb_2\n g_rep_movsb_2: hlt");
extern const uint8_t g_rep_movsb_2[];

static void a_rep_string_traps_after_the_iteration_that_hit_and_resumes(void **state)
{
	(void)state;
	LOAD(g_rep_movsb);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
	g_m.cpu.gpr[X86EMU_RCX] = 16;
	for (unsigned i = 0; i < 16; i++)
		tm_wr(&g_m, TM_DATA + i, 1, 0xa0 + i);
	arm(1, TM_DATA + 0x105, RW_WRITE, LEN_1, false);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	/* Iterations 0..5 done, RIP still on the REP, the trap owed. */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 10);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x106);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 0x105, 1), 0xa5);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 0x106, 1), 0);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_true(g_m.cpu.db_pending);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	/* Not the last iteration: RF pushed set, so the resumed REP is no new #DB. */
	at_db(TM_CODE, true);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(1));

	/* Resume as the handler's IRETQ would: the rest is copied, no further trap. */
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.rflags = stack_qword(2);
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	g_m.cpu.dr[7] = 0;
	assert_int_equal(tm_step(&g_m, 10), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(tm_rd(&g_m, TM_DATA + 0x100 + i, 1), 0xa0 + i);

	/* Hit by the last iteration: the trap after the instruction, RF pushed clear. */
	LOAD(g_rep_movsb);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
	g_m.cpu.gpr[X86EMU_RCX] = 16;
	arm(1, TM_DATA + 0x10f, RW_WRITE, LEN_1, false);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(AT(g_rep_movsb, g_rep_movsb_2), false);
}

/* ---- I/O breakpoints -------------------------------------------------------------------- */

GUEST(g_out, "out %al, %dx\n .globl g_out_2\n g_out_2: in %dx, %al\n .globl g_out_3\n g_out_3: hlt");
extern const uint8_t g_out_2[], g_out_3[];

static void an_io_breakpoint_needs_cr4_de_and_watches_in_and_out(void **state)
{
	(void)state;
	LOAD(g_out);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f9;
	arm(2, 0x3f8, RW_IO, LEN_2, false);	/* ports 0x3f8-0x3f9 */
	g_m.cpu.cr4 |= X86EMU_CR4_DE;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(AT(g_out, g_out_2), false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(2));
	/* IN hits it too. */
	LOAD(g_out);
	g_m.cpu.rip = AT(g_out, g_out_2);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	arm(2, 0x3f8, RW_IO, LEN_1, false);
	g_m.cpu.cr4 |= X86EMU_CR4_DE;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(AT(g_out, g_out_3), false);
	/* Without CR4.DE the kind means nothing: no #DB. */
	LOAD(g_out);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	arm(2, 0x3f8, RW_IO, LEN_1, false);
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	/* A port next to the range: no #DB. */
	LOAD(g_out);
	g_m.cpu.gpr[X86EMU_RDX] = 0x3fa;
	arm(2, 0x3f8, RW_IO, LEN_2, false);
	g_m.cpu.cr4 |= X86EMU_CR4_DE;
	assert_int_equal(tm_step(&g_m, 3), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
}

/* ---- general detect ----------------------------------------------------------------------- */

GUEST(g_mov_dr, "mov %dr0, %rax\n hlt");

static void general_detect_makes_mov_dr_a_fault_and_clears_gd_for_the_handler(void **state)
{
	(void)state;
	LOAD(g_mov_dr);
	g_m.cpu.dr[0] = 0x1234;
	g_m.cpu.dr[7] = X86EMU_DR7_GD;
	g_m.cpu.gpr[X86EMU_RAX] = 7;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(TM_CODE, true);	/* a fault: RF pushed set */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 7);
	assert_true(g_m.cpu.dr[6] & X86EMU_DR6_BD);
	assert_false(g_m.cpu.dr[7] & X86EMU_DR7_GD);
	/* With GD clear the MOV works. */
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1234);
	/* At CPL 3 it is #GP(0) first. */
	LOAD(g_mov_dr);
	g_m.cpu.dr[7] = X86EMU_DR7_GD;
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
	assert_true(g_m.cpu.dr[7] & X86EMU_DR7_GD);
}

/* ---- with single steps, MOV SS and faults ------------------------------------------------- */

static void a_single_step_and_a_breakpoint_are_one_db(void **state)
{
	(void)state;
	LOAD(g_store_load);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.rflags |= X86EMU_FLAG_TF;
	arm(0, TM_DATA, RW_WRITE, LEN_4, false);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(AT(g_store_load, g_store_load_2), false);
	assert_int_equal(g_m.cpu.dr[6] & (0xf | X86EMU_DR6_BS), B(0) | X86EMU_DR6_BS);
	/* The next single step reports BS alone. */
	g_m.cpu.rip = AT(g_store_load, g_store_load_2);
	g_m.cpu.rflags = stack_qword(2);
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	g_m.cpu.dr[6] = 0;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(AT(g_store_load, g_store_load_3), false);
	assert_int_equal(g_m.cpu.dr[6] & (0xf | X86EMU_DR6_BS), X86EMU_DR6_BS);
}

GUEST(g_mov_ss, "mov (%rbx), %ss\n .globl g_mov_ss_2\n g_mov_ss_2: nop\n"
		".globl g_mov_ss_3\n g_mov_ss_3: hlt");
extern const uint8_t g_mov_ss_2[], g_mov_ss_3[];

static void a_breakpoint_hit_by_mov_ss_traps_after_the_next_instruction(void **state)
{
	(void)state;
	LOAD(g_mov_ss);
	tm_wr(&g_m, TM_DATA, 2, TM_SEL_KDATA);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	arm(1, TM_DATA, RW_ACCESS, LEN_2, false);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.db_pending);	/* held one instruction */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, AT(g_mov_ss, g_mov_ss_3));
	assert_true(g_m.cpu.db_pending);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(AT(g_mov_ss, g_mov_ss_3), false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(1));
}

/* MOVSQ reads its source (hitting a breakpoint), then its store faults:
 * the #PF alone is delivered, DR6 is untouched and no trap is owed. */
GUEST(g_movsq, "movsq\n hlt");

static void a_faulting_instruction_reports_no_breakpoint(void **state)
{
	(void)state;
	LOAD(g_movsq);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x3000;
	tm_set_pages(&g_m, TM_DATA + 0x3000, 1, TM_PAGE_ABSENT);
	arm(0, TM_DATA, RW_ACCESS, LEN_8, false);
	g_m.cpu.dr[6] = B(3);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_false(g_m.cpu.db_pending);
	assert_int_equal(g_m.cpu.dr[6], B(3));
	/* Once the page is there, the same MOVSQ completes and traps. */
	tm_set_pages(&g_m, TM_DATA + 0x3000, 1, TM_PAGE_RAM);
	g_m.cpu.rip = TM_CODE;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	at_db(TM_CODE + 2, false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(0));
}

/* LOCK CMPXCHG is a read and a write: a write breakpoint fires. */
GUEST(g_lock_cmpxchg, "lock cmpxchg %ecx, (%rbx)\n hlt");

static void a_locked_read_modify_write_hits_a_write_breakpoint(void **state)
{
	(void)state;
	LOAD(g_lock_cmpxchg);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 8;
	g_m.cpu.gpr[X86EMU_RCX] = 9;
	arm(0, TM_DATA + 8, RW_WRITE, LEN_4, false);
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 8, 4), 9);	/* EAX was 0 == memory */
	at_db(TM_CODE + 4, false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(0));
}

/* The frame INT n pushes (same privilege level) is a data write: the trap
 * comes at the handler's first instruction.  An exception's frame
 * reports none. */
GUEST(g_int80_bp, "int $0x80\n hlt");
GUEST(g_ud2_bp, "ud2\n hlt");

static void the_frame_int_n_pushes_hits_a_breakpoint_and_an_exception_frame_does_not(
	void **state)
{
	(void)state;
	LOAD(g_int80_bp);
	tm_set_gate(&g_m, 0x80, 0xe, 0, 0);
	arm(0, TM_STACK - 8, RW_WRITE, LEN_8, false);	/* the SS slot of the frame */
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(0x80));
	assert_true(g_m.cpu.db_pending);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	at_db(tm_handler(0x80), false);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, B(0));

	LOAD(g_ud2_bp);
	arm(0, TM_STACK - 8, RW_WRITE, LEN_8, false);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_UD));
	assert_false(g_m.cpu.db_pending);
	assert_int_equal(g_m.cpu.dr[6] & 0xf, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(an_instruction_breakpoint_faults_before_the_instruction_and_rf_lets_it_run),
		cmocka_unit_test(a_write_breakpoint_traps_after_the_store_and_not_on_reads),
		cmocka_unit_test(an_access_breakpoint_traps_on_reads_and_its_range_is_aligned_to_its_length),
		cmocka_unit_test(one_instruction_hitting_two_breakpoints_reports_both),
		cmocka_unit_test(a_rep_string_traps_after_the_iteration_that_hit_and_resumes),
		cmocka_unit_test(an_io_breakpoint_needs_cr4_de_and_watches_in_and_out),
		cmocka_unit_test(general_detect_makes_mov_dr_a_fault_and_clears_gd_for_the_handler),
		cmocka_unit_test(a_single_step_and_a_breakpoint_are_one_db),
		cmocka_unit_test(a_breakpoint_hit_by_mov_ss_traps_after_the_next_instruction),
		cmocka_unit_test(a_faulting_instruction_reports_no_breakpoint),
		cmocka_unit_test(a_locked_read_modify_write_hits_a_write_breakpoint),
		cmocka_unit_test(
			the_frame_int_n_pushes_hits_a_breakpoint_and_an_exception_frame_does_not),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
