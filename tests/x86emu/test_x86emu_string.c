/*
 * String instructions: MOVS/STOS/LODS/CMPS/SCAS and INS/OUTS, with REP/REPE/REPNE, the
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

static void reset(const uint8_t *code, size_t len)
{
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, TM_CODE, code, len);
}

/* Load @code at CPL 3 with a TSS I/O bitmap that allows only ports
 * 0x80-0x83, DX = @port, two elements from TM_DATA to TM_DATA + 0x100. */
static void user_with_port_bitmap(const uint8_t *code, size_t len, uint16_t port)
{
	reset(code, len);
	memset(g_m.mem + TM_TSS + 0x68, 0xff, 0x2001);
	g_m.mem[TM_TSS + 0x68 + 0x80 / 8] = 0xf0;
	g_m.cpu.tr.limit = 0x68 + 0x2000;
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.gpr[X86EMU_RDX] = port;
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
	g_m.cpu.gpr[X86EMU_RCX] = 2;
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

/* ---- INS and OUTS -------------------------------------------------------------------- */

static void ins_and_outs_single_elements(void **state)
{
	(void)state;
	static const struct { uint8_t code[2]; size_t len; unsigned size; bool in; } cases[] = {
		{ { 0x6c }, 1, 1, true }, { { 0x66, 0x6d }, 2, 2, true }, { { 0x6d }, 1, 4, true },
		{ { 0x48, 0x6d }, 2, 4, true },	/* REX.W leaves INSD at 4 bytes */
		{ { 0x6e }, 1, 1, false }, { { 0x66, 0x6f }, 2, 2, false }, { { 0x6f }, 1, 4, false },
	};
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		unsigned size = cases[k].size;
		reset(cases[k].code, cases[k].len);
		memset(g_m.mem + TM_DATA, 0xee, 16);
		tm_wr(&g_m, TM_DATA + 0x100, 8, 0x8877665544332211ull);
		g_m.in_value = 0xa1b2c3d4;
		g_m.cpu.gpr[X86EMU_RDX] = 0xffff0000u | 0x1f0;	/* the port is DX */
		g_m.cpu.gpr[X86EMU_RSI] = TM_DATA + 0x100;
		g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
		g_m.cpu.gpr[X86EMU_RCX] = 7;
		run_to_completion(cases[k].len);
		assert_int_equal(g_m.last_port, 0x1f0);
		assert_int_equal(g_m.last_io_size, size);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 7);	/* no REP: the count stays */
		if (cases[k].in) {
			assert_int_equal(g_m.io_ins, 1);
			assert_int_equal(tm_rd(&g_m, TM_DATA, size), 0xa1b2c3d4u & (uint32_t)((1ull << (8 * size)) - 1));
			assert_int_equal(g_m.mem[TM_DATA + size], 0xee);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + size);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 0x100);
		} else {
			assert_int_equal(g_m.io_outs, 1);
			assert_int_equal(g_m.last_out, 0x44332211u & (uint32_t)((1ull << (8 * size)) - 1));
			assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA + 0x100 + size);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA);
		}
	}
}

static void rep_ins_and_outs_count_direction_and_address_size(void **state)
{
	(void)state;
	/* REP INSW, forwards: five words, one port read each. */
	const uint8_t insw[] = { 0xf3, 0x66, 0x6d };
	reset(insw, sizeof(insw));
	g_m.in_value = 0x1000;
	g_m.in_step = 0x0101;
	g_m.cpu.gpr[X86EMU_RDX] = 0x60;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = 5;
	run_to_completion(sizeof(insw));
	assert_int_equal(g_m.io_ins, 5);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(tm_rd(&g_m, TM_DATA + 2 * i, 2), 0x1000 + 0x0101 * i);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 10);

	/* REP OUTSD with DF=1: from the highest element down. */
	const uint8_t outsd[] = { 0xf3, 0x6f };
	reset(outsd, sizeof(outsd));
	for (unsigned i = 0; i < 3; i++)
		tm_wr(&g_m, TM_DATA + 4 * i, 4, 0xc0de0000u + i);
	g_m.cpu.rflags |= X86EMU_FLAG_DF;
	g_m.cpu.gpr[X86EMU_RDX] = 0x3f8;
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA + 8;
	g_m.cpu.gpr[X86EMU_RCX] = 3;
	run_to_completion(sizeof(outsd));
	assert_int_equal(g_m.io_outs, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(g_m.out_log[i], 0xc0de0000u + 2 - i);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA - 4);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);

	/* REP INSB with a 32-bit address size: EDI and ECX, zero-extended. */
	const uint8_t insb32[] = { 0x67, 0xf3, 0x6c };
	reset(insb32, sizeof(insb32));
	g_m.in_value = 0x40;
	g_m.in_step = 1;
	g_m.cpu.gpr[X86EMU_RDI] = 0xdead000000000000ull | TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = 0x5555000000000004ull;	/* ECX = 4 */
	run_to_completion(sizeof(insb32));
	assert_int_equal(g_m.io_ins, 4);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 0x43424140u);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 4);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0);

	/* More than one step's worth: resumed until done. */
	const uint8_t outsb[] = { 0xf3, 0x6e };
	reset(outsb, sizeof(outsb));
	g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = 150;
	for (unsigned i = 0; i < 150; i++)
		g_m.mem[TM_DATA + i] = (uint8_t)i;
	unsigned steps = run_to_completion(sizeof(outsb));
	assert_int_equal(steps, 3);
	assert_int_equal(g_m.io_outs, 150);
	assert_int_equal(g_m.last_out, 149);
}

static void outs_takes_a_segment_override_and_ins_does_not(void **state)
{
	(void)state;
	const uint8_t outsb_fs[] = { 0x64, 0x6e };	/* outsb from fs:[rsi] */
	reset(outsb_fs, sizeof(outsb_fs));
	g_m.cpu.seg[X86EMU_FS].base = TM_DATA + 0x200;
	g_m.mem[TM_DATA + 0x205] = 0x77;
	g_m.mem[TM_DATA + 5] = 0x11;
	g_m.cpu.gpr[X86EMU_RSI] = 5;
	run_to_completion(sizeof(outsb_fs));
	assert_int_equal(g_m.last_out, 0x77);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], 6);

	/* An FS prefix on INS changes nothing: the destination is ES:rDI. */
	const uint8_t insb_fs[] = { 0x64, 0x6c };
	reset(insb_fs, sizeof(insb_fs));
	g_m.cpu.seg[X86EMU_FS].base = TM_DATA + 0x200;
	g_m.in_value = 0x99;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 5;
	run_to_completion(sizeof(insb_fs));
	assert_int_equal(g_m.mem[TM_DATA + 5], 0x99);
	assert_int_equal(g_m.mem[TM_DATA + 0x205], 0);
}

static void ins_destination_fault_leaves_the_port_unread(void **state)
{
	(void)state;
	/* REP INSB running into an absent page after four bytes. */
	const uint8_t code[] = { 0xf3, 0x6c };
	reset(code, sizeof(code));
	tm_set_pages(&g_m, TM_DATA + 0x1000, 0x1000, TM_PAGE_ABSENT);
	g_m.in_value = 0x30;
	g_m.in_step = 1;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000 - 4;
	g_m.cpu.gpr[X86EMU_RCX] = 10;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.cr2, TM_DATA + 0x1000);
	assert_int_equal(g_m.cpu.last_exception.error_code, 2);	/* not present, write */
	assert_int_equal(g_m.io_ins, 4);			/* the fifth input never read */
	assert_int_equal(tm_rd(&g_m, TM_DATA + 0x1000 - 4, 4), 0x33323130u);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 6);		/* at the faulting iteration */
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x1000);
	/* The handler maps the page; the instruction resumes with the fifth input. */
	tm_set_pages(&g_m, TM_DATA + 0x1000, 0x1000, TM_PAGE_RAM);
	g_m.cpu.rip = TM_CODE;
	run_to_completion(sizeof(code));
	assert_int_equal(g_m.io_ins, 10);
	assert_int_equal(g_m.mem[TM_DATA + 0x1000], 0x34);
	assert_int_equal(g_m.mem[TM_DATA + 0x1000 + 5], 0x39);

	/* A single INSD whose second half is read-only: no input read at all. */
	const uint8_t insd[] = { 0x6d };
	reset(insd, sizeof(insd));
	tm_set_pages(&g_m, TM_DATA + 0x1000, 1, TM_PAGE_READONLY);
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000 - 2;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.last_exception.error_code, 3);	/* protection, write */
	assert_int_equal(g_m.io_ins, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x1000 - 2);

	/* Without write_check the port is read first and the input is lost. */
	reset(insd, sizeof(insd));
	g_m.env.write_check = NULL;
	tm_set_pages(&g_m, TM_DATA + 0x1000, 1, TM_PAGE_READONLY);
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x1000 - 2;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.io_ins, 1);
	assert_int_equal(tm_rd(&g_m, TM_DATA + 0x1000 - 2, 4), 0);
}

/*
 * A store the machine answers "retry" after the port was read (a device
 * model has not answered yet): the re-execution stores the input already
 * read instead of reading the port again, and only that element's.
 */
static void ins_store_answered_retry_keeps_its_input_for_the_re_execution(void **state)
{
	(void)state;
	const uint8_t code[] = { 0xf3, 0x6c };	/* rep insb */
	for (int with_check = 0; with_check < 2; with_check++) {
		reset(code, sizeof(code));
		if (!with_check)
			g_m.env.write_check = NULL;
		g_m.in_value = 0x40;
		g_m.in_step = 1;
		g_m.cpu.gpr[X86EMU_RDX] = 0x60;
		g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
		g_m.cpu.gpr[X86EMU_RCX] = 4;
		g_m.write_retry_armed = true;
		g_m.write_retry_after = 2;	/* the third element's store */
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
		assert_int_equal(g_m.retry_rep_done, 2);
		assert_int_equal(g_m.io_ins, 3);
		assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 2);
		assert_int_equal(g_m.cpu.rip, TM_CODE);
		assert_true(g_m.cpu.held_input.valid);
		/* Answered again "retry": still the same input, the port untouched. */
		g_m.write_retry_armed = true;
		g_m.write_retry_after = 0;
		assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
		assert_int_equal(g_m.io_ins, 3);
		run_to_completion(sizeof(code));
		assert_int_equal(g_m.io_ins, 4);	/* one read per element */
		assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 0x43424140u);
		assert_false(g_m.cpu.held_input.valid);
	}

	/* The held input is for that element alone: an instruction that
	 * completes in between (the machine moved RIP elsewhere) drops it. */
	static const uint8_t two[] = { 0x6c, 0x90 };	/* insb; nop */
	reset(two, sizeof(two));
	g_m.in_value = 0x70;
	g_m.in_step = 1;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.write_retry_armed = true;
	g_m.write_retry_after = 0;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_true(g_m.cpu.held_input.valid);
	g_m.cpu.rip = TM_CODE + 1;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);	/* the NOP */
	assert_false(g_m.cpu.held_input.valid);
	g_m.cpu.rip = TM_CODE;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.io_ins, 2);
	assert_int_equal(g_m.mem[TM_DATA], 0x71);

	/* A different destination or port does not take it either. */
	reset(two, sizeof(two));
	g_m.in_value = 0x10;
	g_m.in_step = 1;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.write_retry_armed = true;
	g_m.write_retry_after = 0;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 8;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
	assert_int_equal(g_m.io_ins, 2);
	assert_int_equal(g_m.mem[TM_DATA + 8], 0x11);
	assert_false(g_m.cpu.held_input.valid);

	/* An interrupt delivered in between abandons the element for good. */
	reset(two, sizeof(two));
	tm_set_gate(&g_m, 0x40, 0xe, 0, 0);
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA;
	g_m.write_retry_armed = true;
	g_m.write_retry_after = 0;
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_RETRY);
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x40), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.held_input.valid);
}

static void ins_and_outs_need_io_permission_before_any_iteration(void **state)
{
	(void)state;
	static const uint8_t codes[][2] = { { 0xf3, 0x6c }, { 0xf3, 0x6f }, { 0x6d }, { 0x66, 0x6e } };
	static const size_t lens[] = { 2, 2, 1, 2 };
	for (unsigned k = 0; k < 4; k++) {
		for (unsigned count = 0; count < 2; count++) {
			/* CPL 3, IOPL 0, the machine's TSS without a bitmap. */
			reset(codes[k], lens[k]);
			tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
			g_m.cpu.gpr[X86EMU_RDX] = 0x80;
			g_m.cpu.gpr[X86EMU_RSI] = TM_DATA;
			g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 0x100;
			g_m.cpu.gpr[X86EMU_RCX] = count ? 5 : 0;	/* a zero count faults too */
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
			assert_int_equal(g_m.cpu.last_exception.error_code, 0);
			assert_int_equal(g_m.io_ins + g_m.io_outs, 0);
			assert_int_equal(tm_rd(&g_m, TM_DATA + 0x100, 8), 0);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], count ? 5 : 0);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RSI], TM_DATA);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RDI], TM_DATA + 0x100);
		}

		/* A bitmap that allows ports 0x80-0x83: the instruction runs at CPL 3. */
		user_with_port_bitmap(codes[k], lens[k], 0x80);
		run_to_completion(lens[k]);
		assert_int_equal(g_m.io_ins + g_m.io_outs, lens[k] == 2 && codes[k][0] == 0xf3 ? 2 : 1);

		/* Port 0x82 with a 4-byte OUTSD/INSD reaches denied 0x84-0x85: #GP. */
		if (codes[k][0] == 0x6d || codes[k][1] == 0x6f) {
			user_with_port_bitmap(codes[k], lens[k], 0x82);
			assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);
			assert_int_equal(g_m.cpu.rip, tm_handler(X86EMU_EXC_GP));
			assert_int_equal(g_m.io_ins + g_m.io_outs, 0);
		}
	}
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
		cmocka_unit_test(ins_store_answered_retry_keeps_its_input_for_the_re_execution),
		cmocka_unit_test(cmps_and_scas_flags_match_host),
		cmocka_unit_test(address_size_prefix_wraps_pointers_at_32_bits),
		cmocka_unit_test(ins_and_outs_single_elements),
		cmocka_unit_test(rep_ins_and_outs_count_direction_and_address_size),
		cmocka_unit_test(outs_takes_a_segment_override_and_ins_does_not),
		cmocka_unit_test(ins_destination_fault_leaves_the_port_unread),
		cmocka_unit_test(ins_and_outs_need_io_permission_before_any_iteration),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
