/*
 * String instructions: MOVS/STOS/LODS/CMPS/SCAS, with REP/REPE/REPNE, the
 * direction flag, resumption after a bounded chunk, and faults in the
 * middle of a REP (SDM vol. 2B REP: state describes the remaining work).
 * Register and flag results are also checked against the host CPU by
 * running the same bytes natively on host buffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

static struct tm g_m;

static int setup(void **state)
{
	(void)state;
	tm_init(&g_m);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tm_fini(&g_m);
	return 0;
}

static void reset(const uint8_t *code, size_t len)
{
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, TM_CODE, code, len);
}

/* Run until the instruction at TM_CODE is finished (RIP moved past it). */
static unsigned run_to_completion(size_t len)
{
	unsigned steps = 0;
	while (g_m.cpu.rip == TM_CODE && steps < 100000) {
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
		steps++;
	}
	assert_int_equal(g_m.cpu.rip, TM_CODE + len);
	return steps;
}

static void rep_movsb_copies_forward_and_updates_registers(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0xa4 };	/* rep movsb */
	reset(code, sizeof(code));
	for (unsigned i = 0; i < 300; i++)
		g_m.mem[TM_DATA + i] = (uint8_t)(i * 7);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000;
	g_m.cpu.gpr[X86EMU_RCX] = 300;
	unsigned steps = run_to_completion(sizeof(code));
	/* 300 iterations at 64 per step: five steps, each one resumable. */
	assert_int_equal(steps, (300 + X86EMU_REP_ITERATIONS_PER_STEP - 1) / X86EMU_REP_ITERATIONS_PER_STEP);
	assert_memory_equal(g_m.mem + TM_DATA, g_m.mem + TM_DATA + 0x1000, 300);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 300);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x1000 + 300);
}

static void rep_stosq_with_direction_flag_fills_downwards(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0x48, 0xab };	/* rep stosq */
	reset(code, sizeof(code));
	g_m.cpu.rflags |= X86EMU_FLAG_DF;
	g_m.cpu.gpr[X86EMU_RAX] = 0x0123456789abcdefull;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 8 * 99;
	g_m.cpu.gpr[X86EMU_RCX] = 100;
	run_to_completion(sizeof(code));
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(tm_rd(&g_m, TM_DATA + 8 * i, 8), 0x0123456789abcdefull);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 8 * 100, 8), 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA - 8);
}

static void rep_with_zero_count_does_nothing(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0xaa };	/* rep stosb */
	reset(code, sizeof(code));
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = 0;
	g_m.cpu.gpr[X86EMU_RAX] = 0xff;
	run_to_completion(sizeof(code));
	assert_int_equal(g_m.mem[TM_DATA], 0);
	assert_int_equal(g_m.writes, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA);
}

static void repe_cmpsb_stops_at_the_first_difference(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0xa6 };	/* repe cmpsb */
	reset(code, sizeof(code));
	memcpy(g_m.mem + TM_DATA, "hello world", 11);
	memcpy(g_m.mem + TM_DATA + 0x100, "hello there", 11);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
	g_m.cpu.gpr[X86EMU_RCX] = 11;
	run_to_completion(sizeof(code));
	/* Stops after comparing 'w' with 't' (7th byte): RCX = 11 - 7. */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 4);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 7);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_ZF);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_CF);	/* 'w' > 't' */
}

static void repne_scasb_finds_the_terminator(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf2, 0xae };	/* repne scasb: strlen */
	reset(code, sizeof(code));
	memset(g_m.mem + TM_DATA, 'x', 1000);
	g_m.mem[TM_DATA + 1000] = 0;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = ~0ull;
	g_m.cpu.gpr[X86EMU_RAX] = 0;
	run_to_completion(sizeof(code));
	assert_int_equal(~g_m.cpu.gpr[X86EMU_RCX] - 1, 1000);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_ZF);
}

static void lodsd_zero_extends_into_rax(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xad };	/* lodsd */
	reset(code, sizeof(code));
	tm_wr(&g_m, TM_DATA, 4, 0xdeadbeef);
	g_m.cpu.gpr[X86EMU_RAX] = ~0ull;
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	run_to_completion(sizeof(code));
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0xdeadbeef);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 4);
}

static void fault_in_the_middle_of_rep_movs_reports_the_remaining_work(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0x48, 0xa5 };	/* rep movsq */
	reset(code, sizeof(code));
	/* Destination runs into an absent page after 10 quadwords. */
	uint64_t dst = TM_DATA + 0x2000 - 80;
	tm_set_pages(&g_m, TM_DATA + 0x2000, 1, TM_PAGE_ABSENT);
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = dst;
	g_m.cpu.gpr[X86EMU_RCX] = 20;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.last_exception.vector, X86EMU_EXC_PF);
	assert_int_equal(g_m.cpu.cr2, TM_DATA + 0x2000);
	assert_int_equal(g_m.cpu.last_exception.error_code, 0x2);	/* write, not present */
	/* The pushed frame: RIP at the REP instruction; RCX/RSI/RDI after 10 moves. */
	uint64_t sp = g_m.cpu.gpr[X86EMU_RSP];
	assert_int_equal(tm_rd(&g_m, sp + 8, 8), TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 10);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 80);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x2000);
}

static void retry_in_the_middle_of_rep_stos_keeps_completed_iterations(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0xaa };	/* rep stosb */
	reset(code, sizeof(code));
	tm_set_pages(&g_m, TM_DATA + 0x1000, 1, TM_PAGE_RETRY);
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000 - 5;
	g_m.cpu.gpr[X86EMU_RCX] = 10;
	g_m.cpu.gpr[X86EMU_RAX] = 0xab;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	/* An interrupted REP: five done, RIP still at it, nothing else changed;
	 * the access answered RETRY said five iterations were done before it. */
	assert_int_equal(g_m.retry_rep_done, 5);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 5);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x1000);
	assert_false(g_m.cpu.last_exception.valid);
	/* The device answers: the re-executed instruction finishes the job. */
	tm_set_pages(&g_m, TM_DATA + 0x1000, 1, TM_PAGE_RAM);
	run_to_completion(sizeof(code));
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(g_m.mem[TM_DATA + 0x1000 - 5 + i], 0xab);
}

static void cmps_and_scas_flags_match_host(void **state)
{
	(void)state;
	/* cmpsb/w/d/q and scasb/w/d/q, no REP, registers pointing at equal-content buffers. */
	static uint8_t a[64], b[64];
	const uint8_t codes[][3] = {
		{ 0xa6 }, { 0x66, 0xa7 }, { 0xa7 }, { 0x48, 0xa7 },
		{ 0xae }, { 0x66, 0xaf }, { 0xaf }, { 0x48, 0xaf },
	};
	const size_t lens[] = { 1, 2, 1, 2, 1, 2, 1, 2 };
	tseed(9);
	for (unsigned k = 0; k < 8; k++)
		for (unsigned i = 0; i < 200; i++) {
			struct host_regs h;
			for (unsigned j = 0; j < 64; j++) {
				a[j] = (uint8_t)(trand() % 4 == 0 ? 0x80 : trand());
				b[j] = trand() % 2 ? a[j] : (uint8_t)trand();
			}
			for (unsigned r = 0; r < 16; r++)
				h.gpr[r] = trand();
			h.rflags = X86EMU_FLAG_FIXED | X86EMU_FLAG_IF | (trand() & X86EMU_FLAGS_ARITH);
			struct host_regs n = h;
			n.gpr[X86EMU_RSI] = (uint64_t)(uintptr_t)a;
			n.gpr[X86EMU_RDI] = (uint64_t)(uintptr_t)b;
			assert_int_equal(host_exec(codes[k], lens[k], &n), 0);

			reset(codes[k], lens[k]);
			tm_load(&g_m, TM_DATA, a, 64);
			tm_load(&g_m, TM_DATA + 64, b, 64);
			memcpy(g_m.cpu.gpr, h.gpr, sizeof(h.gpr));
			g_m.cpu.gpr[X86EMU_RSP] = TM_STACK;
			g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
			g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 64;
			g_m.cpu.rflags = h.rflags;
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			assert_int_equal(n.rflags & X86EMU_FLAGS_ARITH, g_m.cpu.rflags & X86EMU_FLAGS_ARITH);
			assert_int_equal(n.gpr[X86EMU_RSI] - (uint64_t)(uintptr_t)a,
					 g_m.cpu.gpr[X86EMU_RSI] - TM_DATA);
			assert_int_equal(n.gpr[X86EMU_RDI] - (uint64_t)(uintptr_t)b,
					 g_m.cpu.gpr[X86EMU_RDI] - TM_DATA - 64);
		}
}

static void address_size_prefix_wraps_pointers_at_32_bits(void **state)
{
	(void)state;
	const uint8_t code[] = { 0x67, 0xaa };	/* stosb with 32-bit addressing: [edi] */
	reset(code, sizeof(code));
	g_m.cpu.gpr[X86EMU_RDI] = 0xffffffff00000000ull | (TM_DATA);
	g_m.cpu.gpr[X86EMU_RAX] = 0x5a;
	run_to_completion(sizeof(code));
	assert_int_equal(g_m.mem[TM_DATA], 0x5a);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 1);	/* 32-bit write zero-extends */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rep_movsb_copies_forward_and_updates_registers),
		cmocka_unit_test(rep_stosq_with_direction_flag_fills_downwards),
		cmocka_unit_test(rep_with_zero_count_does_nothing),
		cmocka_unit_test(repe_cmpsb_stops_at_the_first_difference),
		cmocka_unit_test(repne_scasb_finds_the_terminator),
		cmocka_unit_test(lodsd_zero_extends_into_rax),
		cmocka_unit_test(fault_in_the_middle_of_rep_movs_reports_the_remaining_work),
		cmocka_unit_test(retry_in_the_middle_of_rep_stos_keeps_completed_iterations),
		cmocka_unit_test(cmps_and_scas_flags_match_host),
		cmocka_unit_test(address_size_prefix_wraps_pointers_at_32_bits),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
