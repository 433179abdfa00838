/*
 * Corners of the interpreter that the other test programs leave alone: the
 * step loop and x86emu_interrupt() at their edges, fetches at page and
 * canonical boundaries, EIP-relative operands, machine callbacks that
 * misbehave or race, the checks of exception delivery (gate, handler CS,
 * TSS), far RET/IRET's CS and SS checks, LTR/LLDT/LGDT, call gates in the
 * LDT, and the faults of memory operands of SHLD, BSF, PUSH, CMPXCHG and
 * the read-modify-write instructions.  Expectations follow the Intel SDM;
 * where AMD differs, the test says so.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "x86emu_test.h"

#define TARGET (TM_CODE + 0x100)		/* a HLT the branch tests go to */
#define LDT_BASE (TM_DATA + 0x2000)
#define ABSENT_PAGE 0x4000u			/* GDT + 0x3000: made absent where needed */

/* Descriptor flag nibble (bits 55:52): G, D/B, L. */
#define F_G 8u
#define F_DB 4u
#define F_L 2u

/* A code or data segment descriptor (S=1). */
static uint64_t seg_desc(uint32_t base, uint32_t limit, unsigned type, unsigned dpl, bool present,
			 unsigned flags)
{
	return (limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)type << 40) |
	       (1ull << 44) | ((uint64_t)dpl << 45) | ((uint64_t)present << 47) |
	       ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)flags << 52) |
	       ((uint64_t)(base >> 24) << 56);
}

static uint64_t kcode_desc(bool present)
{
	return seg_desc(0, 0xfffff, 0xb, 0, present, F_G | F_L);
}

/* A 16-byte system descriptor (LDT 2, TSS 9/0xb) at GDT selector `sel`. */
static void put_system(uint16_t sel, unsigned type, uint64_t base, uint32_t limit, bool present)
{
	uint64_t lo = (limit & 0xffff) | ((base & 0xffffff) << 16) | ((uint64_t)type << 40) |
		      ((uint64_t)present << 47) | ((uint64_t)((limit >> 16) & 0xf) << 48) |
		      (((base >> 24) & 0xff) << 56);
	gdt_put(sel, lo);
	gdt_put(sel + 8, base >> 32);
}

/* IDT entry `v`: a 64-bit interrupt gate to sel:target. */
static void put_gate(unsigned v, uint16_t sel, uint64_t target, bool present, unsigned ist)
{
	uint64_t lo = (target & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)ist << 32) |
		      (0xeull << 40) | ((uint64_t)present << 47) | (((target >> 16) & 0xffff) << 48);
	tm_wr(&g_m, TM_IDT + 16 * v, 8, lo);
	tm_wr(&g_m, TM_IDT + 16 * v + 8, 8, target >> 32);
}

/* A present LDT at LDT_BASE, as LLDT would leave LDTR (GDT selector 0x38). */
static void use_ldt(void)
{
	g_m.cpu.ldtr = (struct x86emu_segment){ .selector = 0x38, .base = LDT_BASE, .limit = 0xff,
						.attr = 0x82 };
}

/* Grow the GDT to 64 KiB and make the page at GDT + 0x3000 absent. */
static void gdt_reaching_an_absent_page(void)
{
	g_m.cpu.gdtr.limit = 0xffff;
	tm_set_pages(&g_m, ABSENT_PAGE, 4096, TM_PAGE_ABSENT);
}

/*
 * A machine built on g_m's whose callbacks the tests can wrap: g_base is
 * g_m.env as tm_init made it, g_env the one a test runs with.
 */
static struct x86emu_env g_base, g_env;

static void wrap_env(void)
{
	g_base = g_m.env;
	g_env = g_m.env;
}

static int step_env(unsigned budget)
{
	return x86emu_step(&g_m.cpu, &g_env, budget);
}

/* ---- the step loop and x86emu_interrupt() ------------------------------------------------- */

static void exit_names_name_every_exit_reason(void **state)
{
	(void)state;
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_BUDGET), "budget");
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_HLT), "hlt");
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_RETRY), "retry");
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_SHUTDOWN), "shutdown");
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_BAD_MODE), "bad-mode");
	assert_string_equal(x86emu_exit_name(-1), "unknown");
	assert_string_equal(x86emu_exit_name(X86EMU_EXIT_BAD_MODE + 1), "unknown");
}

GUEST(g_inc_hlt, "inc %eax\n hlt");

/* cpu.h: outside 64-bit mode (EFER.LMA, CR0.PG, CS.L) the interpreter executes nothing. */
static void step_outside_64_bit_mode_executes_nothing(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.efer &= ~X86EMU_EFER_LMA;
	assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_BAD_MODE);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0);
	assert_int_equal(g_m.cpu.icount, 0);

	LOAD(g_inc_hlt);
	g_m.cpu.seg[X86EMU_CS].attr &= (uint16_t)~X86EMU_SEG_ATTR_L;	/* compatibility mode */
	assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_BAD_MODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0);
}

/* SDM HLT: a halted CPU stays halted until an interrupt; stepping runs nothing. */
static void step_on_a_halted_cpu_executes_nothing(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.halted = true;
	assert_int_equal(tm_step(&g_m, 4), X86EMU_EXIT_HLT);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0);
	assert_int_equal(g_m.cpu.icount, 0);
}

/* SDM 6.15 (#DF): after a triple fault the processor is in shutdown and takes no interrupt. */
static void interrupt_to_a_shut_down_cpu_is_not_delivered(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.shutdown = true;
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x20), X86EMU_EXIT_SHUTDOWN);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

/* cpu.h: a delivery the machine answers "retry" changes nothing, a halted CPU stays halted. */
static void interrupt_delivery_the_machine_retries_changes_nothing(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	g_m.cpu.halted = true;
	tm_set_pages(&g_m, TM_IDT, 4096, TM_PAGE_RETRY);
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x20), X86EMU_EXIT_RETRY);
	assert_true(g_m.cpu.halted);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_IF);
	assert_false(g_m.cpu.last_exception.valid);
}

/*
 * SDM 6.15: an external interrupt whose gate lies beyond the IDT limit is
 * #GP; that #GP's gate is beyond it too (#GP during #GP: #DF), and so is
 * #DF's: shutdown.
 */
static void interrupt_with_an_empty_idt_ends_in_shutdown(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.idtr.limit = 0;
	assert_int_equal(x86emu_interrupt(&g_m.cpu, &g_m.env, 0x20), X86EMU_EXIT_SHUTDOWN);
	assert_true(g_m.cpu.shutdown);
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_SHUTDOWN);
}

/* ---- fetch and addressing --------------------------------------------------------------------- */

/* SDM 3.3.7.1 / 6.15 (#GP): an instruction fetch from a non-canonical RIP is #GP(0). */
static void fetch_at_a_non_canonical_rip_is_gp(void **state)
{
	(void)state;
	LOAD(g_inc_hlt);
	g_m.cpu.rip = NONCANONICAL;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, NONCANONICAL);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0);
}

/* The last page below the hole, backed by g_m.mem at HIGH_BACKING. */
#define HIGH_PAGE 0x00007ffffffff000ull
#define HIGH_BACKING 0x30000u

static int high_read(void *opaque, const struct x86emu_access *a, void *out,
		     struct x86emu_fault *f)
{
	if (a->va >= HIGH_PAGE && a->va + a->size <= HIGH_PAGE + 4096) {
		memcpy(out, g_m.mem + HIGH_BACKING + (a->va - HIGH_PAGE), a->size);
		return X86EMU_CB_OK;
	}
	return g_base.read(opaque, a, out, f);
}

/*
 * SDM 3.3.7.1: every byte of an instruction must be canonical; one that
 * starts on the last canonical page and runs into the hole is #GP(0),
 * before the part in the hole is fetched, and the page before it is the
 * only one read.
 */
static void instruction_running_into_the_non_canonical_hole_is_gp(void **state)
{
	(void)state;
	static const uint8_t movabs[] = { 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 };
	LOAD(g_inc_hlt);
	wrap_env();
	g_env.read = high_read;
	tm_load(&g_m, HIGH_BACKING + 0xffc, movabs, sizeof(movabs));
	g_m.cpu.rip = HIGH_PAGE + 0xffc;
	assert_int_equal(step_env(1), X86EMU_EXIT_BUDGET);
	assert_fault(X86EMU_EXC_GP, 0, HIGH_PAGE + 0xffc);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0);
}

/*
 * An instruction whose last byte is the last canonical one runs: RIP then
 * holds the first address of the hole (a SYSCALL there would hand it to
 * the kernel in RCX), and only the next fetch raises #GP(0), pushing that
 * RIP.
 */
static void instruction_ending_at_the_top_of_the_lower_half_runs_and_the_next_fetch_is_gp(void **state)
{
	(void)state;
	static const uint8_t inc_rax[] = { 0x48, 0xff, 0xc0 };
	const uint64_t end = HIGH_PAGE + 0x1000;	/* 1 << 47 */
	LOAD(g_inc_hlt);
	wrap_env();
	g_env.read = high_read;
	tm_load(&g_m, HIGH_BACKING + 0x1000 - sizeof(inc_rax), inc_rax, sizeof(inc_rax));
	g_m.cpu.rip = end - sizeof(inc_rax);
	assert_int_equal(step_env(1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);
	assert_int_equal(g_m.cpu.rip, end);
	assert_int_equal(step_env(1), X86EMU_EXIT_BUDGET);
	assert_fault(X86EMU_EXC_GP, 0, end);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);
}

/* An instruction that crosses a page boundary is fetched from both pages and runs whole. */
static void instruction_crossing_a_page_boundary_runs(void **state)
{
	(void)state;
	static const uint8_t code[] = { 0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
					0xf4 };	/* movabs $0x1122334455667788, %rax; hlt */
	const uint64_t at = TM_CODE + 0xffc;	/* 4 bytes on the first page, 7 on the next */
	LOAD(g_inc_hlt);
	tm_load(&g_m, at, code, sizeof(code));
	g_m.cpu.rip = at;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1122334455667788ull);
	assert_int_equal(g_m.cpu.rip, at + sizeof(code));
}

/* A machine whose last page of the address space reads as the low bytes of its addresses. */
#define TOP_PAGE 0xfffffffffffff000ull
static uint64_t g_top_va;
static unsigned g_top_size;

static int top_read(void *opaque, const struct x86emu_access *a, void *out,
		    struct x86emu_fault *f)
{
	if (a->kind == X86EMU_ACCESS_DATA && a->va >= TOP_PAGE) {
		g_top_va = a->va;
		g_top_size = a->size;
		for (unsigned i = 0; i < a->size; i++)
			((uint8_t *)out)[i] = (uint8_t)(a->va + i);	/* wraps to page 0 */
		return X86EMU_CB_OK;
	}
	return g_base.read(opaque, a, out, f);
}

GUEST(g_load_rax, "mov (%rax), %rbx\n hlt");
GUEST(g_store_rax, "mov %rbx, (%rax)\n hlt");

/*
 * Linear addresses wrap at 2^64 in 64-bit mode: an access that starts on
 * the last page and runs on past 2^64 - 1 to address 0 has every byte
 * canonical, so it is no #GP.  It is made as an access to the last page and
 * the first one, and an unmapped page among them is a #PF at the access's
 * address.  The machine is handed one access whose va + size wraps.
 */
static void access_wrapping_at_2_64_is_translated_not_gp(void **state)
{
	(void)state;
	LOAD(g_load_rax);
	g_m.cpu.gpr[X86EMU_RAX] = 0xfffffffffffffffcull;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);	/* the last page is absent here */
	assert_int_equal(g_m.cpu.cr2, 0xfffffffffffffffcull);

	LOAD(g_store_rax);
	g_m.cpu.gpr[X86EMU_RAX] = 0xfffffffffffffffaull;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 2, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, 0xfffffffffffffffaull);

	LOAD(g_load_rax);
	wrap_env();
	g_env.read = top_read;
	g_m.cpu.gpr[X86EMU_RAX] = 0xfffffffffffffffcull;
	assert_int_equal(step_env(1), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_top_va, 0xfffffffffffffffcull);
	assert_int_equal(g_top_size, 8);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RBX], 0x03020100fffefdfcull);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 3);
}

/* mov disp32(%eip), %eax; hlt */
static void load_eip_relative(int32_t disp)
{
	uint8_t code[8] = { 0x67, 0x8b, 0x05, 0, 0, 0, 0, 0xf4 };
	for (unsigned i = 0; i < 4; i++)
		code[3 + i] = (uint8_t)((uint32_t)disp >> (8 * i));
	tm_load_code(code, code + sizeof(code));
}

/*
 * SDM 2.2.1.6: with a 67 prefix the RIP-relative form is EIP-relative:
 * the next instruction's address plus the displacement, wrapped to 32 bits.
 */
static void eip_relative_operand_wraps_to_32_bits(void **state)
{
	(void)state;
	const uint64_t next = TM_CODE + 7;
	load_eip_relative((int32_t)(TM_DATA - next));
	tm_wr(&g_m, TM_DATA, 4, 0xcafef00d);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0xcafef00d);

	/* Below zero: the address wraps to 0xfffffff0, not 0xfffffffffffffff0. */
	load_eip_relative(-(int32_t)next - 0x10);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, 0xfffffff0ull);
}

/* ---- machine callbacks ------------------------------------------------------------------------ */

static int write_bad_status_at_data(void *opaque, const struct x86emu_access *a, const void *in,
				    struct x86emu_fault *f)
{
	if (a->va == TM_DATA)
		return 42;
	return g_base.write(opaque, a, in, f);
}

GUEST(g_store_data, "movq $1, 0x100000\n hlt");

/* cpu.h: a callback status outside the contract is the machine's bug, reported as #MC (no error code). */
static void callback_status_outside_the_contract_is_a_machine_check(void **state)
{
	(void)state;
	LOAD(g_store_data);
	wrap_env();
	g_env.write = write_bad_status_at_data;
	assert_int_equal(step_env(64), X86EMU_EXIT_HLT);
	assert_fault(X86EMU_EXC_MC, NO_ERROR_CODE, TM_CODE);
	assert_false(g_m.cpu.last_exception.has_error_code);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 0);
}

static int read_bad_status(void *opaque, const struct x86emu_access *a, void *out,
			   struct x86emu_fault *f)
{
	if (a->kind != X86EMU_ACCESS_FETCH)
		return 42;
	return g_base.read(opaque, a, out, f);
}

GUEST(g_load_data, "mov 0x100000, %rax\n hlt");

/*
 * SDM vol. 3B 15.3.1.2 (MCG_STATUS.MCIP): a machine check while one is
 * being handled shuts the processor down.  Here every delivery reads the
 * IDT through a broken callback, so each #MC raises another.
 */
static void machine_check_while_delivering_a_machine_check_shuts_down(void **state)
{
	(void)state;
	LOAD(g_load_data);
	wrap_env();
	g_env.read = read_bad_status;
	assert_int_equal(step_env(4), X86EMU_EXIT_SHUTDOWN);
	assert_true(g_m.cpu.shutdown);
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

/* An agent that changes the location just before each of the next g_steals compare-exchanges. */
static unsigned g_steals;

static int racing_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
			  const void *desired, void *observed, struct x86emu_fault *f)
{
	if (g_steals) {
		g_steals--;
		tm_wr(&g_m, a->va, a->size, tm_rd(&g_m, a->va, a->size) + 100);
	}
	return g_base.cmpxchg(opaque, a, expected, desired, observed, f);
}

GUEST(g_lock_add, "lock addl $5, 0x100000\n hlt");

/*
 * SDM 8.1.2.2: a LOCK-prefixed read-modify-write is atomic; when another
 * agent wrote the location between the read and the compare-exchange, the
 * operation is made on the value that agent left.
 */
static void locked_add_that_loses_a_race_adds_to_the_winners_value(void **state)
{
	(void)state;
	LOAD(g_lock_add);
	wrap_env();
	g_env.cmpxchg = racing_cmpxchg;
	tm_wr(&g_m, TM_DATA, 4, 10);
	g_steals = 1;
	assert_int_equal(step_env(64), X86EMU_EXIT_HLT);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 115);
	assert_int_equal(g_m.cmpxchgs, 2);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_ZF);
}

/* cpu.h (X86EMU_CB_RETRY): a LOCK that never wins is abandoned with "retry", nothing committed. */
static void locked_add_that_never_wins_is_abandoned_with_retry(void **state)
{
	(void)state;
	LOAD(g_lock_add);
	wrap_env();
	g_env.cmpxchg = racing_cmpxchg;
	g_m.cpu.rflags |= X86EMU_FLAG_CF;
	g_steals = UINT_MAX;
	assert_int_equal(step_env(1), X86EMU_EXIT_RETRY);
	g_steals = 0;
	assert_int_equal(g_m.cpu.rip, TM_CODE);
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_FIXED | X86EMU_FLAG_CF);
	assert_int_equal(g_m.cpu.icount, 0);
	assert_false(g_m.cpu.last_exception.valid);
}

GUEST(g_cmpxchg_rbx, "cmpxchg %ecx, (%rbx)\n hlt");

/*
 * SDM CMPXCHG: "the destination operand receives a write cycle without
 * regard to the result of the comparison".  A machine without an atomic
 * primitive gets a read and a write: the new value on a match, the old one
 * written back otherwise, so a read-only page faults either way.
 */
static void cmpxchg_without_a_machine_primitive_reads_then_writes(void **state)
{
	(void)state;
	LOAD(g_cmpxchg_rbx);
	g_m.env.cmpxchg = NULL;
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 7;
	g_m.cpu.gpr[X86EMU_RCX] = 9;
	tm_wr(&g_m, TM_DATA, 4, 7);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 9);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_ZF);
	assert_int_equal(g_m.writes, 1);

	/* A mismatch loads EAX and still writes, the old value. */
	LOAD(g_cmpxchg_rbx);
	g_m.env.cmpxchg = NULL;
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 1;
	g_m.cpu.gpr[X86EMU_RCX] = 9;
	tm_wr(&g_m, TM_DATA, 4, 7);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 7);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 7);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_ZF);
	assert_int_equal(g_m.writes, 1);

	/* The mismatch on a read-only page: #PF for the write (P and W/R set). */
	LOAD(g_cmpxchg_rbx);
	g_m.env.cmpxchg = NULL;
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 1;
	tm_wr(&g_m, TM_DATA, 4, 7);
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_READONLY);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 3, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);

	/* An absent page faults on the read, and nothing is written. */
	LOAD(g_cmpxchg_rbx);
	g_m.env.cmpxchg = NULL;
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 1;
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_true(in_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.last_exception.error_code & 1, 0);	/* not present */
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 1);
	assert_int_equal(g_m.writes, 1);	/* the exception frame only */
}

/* ---- alignment checks on the less common paths --------------------------------------------- */

/* CPL 3 with CR0.AM and RFLAGS.AC: alignment checking on (SDM 6.15, interrupt 17). */
static void user_with_alignment_checks(void)
{
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.cr0 |= X86EMU_CR0_AM;
	g_m.cpu.rflags |= X86EMU_FLAG_AC;
}

GUEST(g_insw, "insw\n hlt");

/* SDM INS: a misaligned destination at CPL 3 with AM and AC is #AC(0), and the port stays unread. */
static void ins_to_a_misaligned_destination_is_ac_before_the_port_is_read(void **state)
{
	(void)state;
	LOAD(g_insw);
	user_with_alignment_checks();
	g_m.cpu.rflags |= X86EMU_FLAG_IOPL;
	g_m.cpu.gpr[X86EMU_RDI] = TM_DATA + 1;
	g_m.cpu.gpr[X86EMU_RDX] = 0x60;
	run_to_hlt();
	assert_fault(X86EMU_EXC_AC, 0, TM_CODE);
	assert_int_equal(g_m.io_ins, 0);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 0);
}

/* SDM CMPXCHG: #AC(0) for a misaligned operand at CPL 3 with AM and AC; nothing is compared. */
static void cmpxchg_to_a_misaligned_operand_is_ac(void **state)
{
	(void)state;
	LOAD(g_cmpxchg_rbx);
	user_with_alignment_checks();
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA + 1;
	g_m.cpu.gpr[X86EMU_RAX] = 0;
	g_m.cpu.gpr[X86EMU_RCX] = 0x55;
	run_to_hlt();
	assert_fault(X86EMU_EXC_AC, 0, TM_CODE);
	assert_int_equal(g_m.cmpxchgs, 0);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 8), 0);
}

/* ---- exception delivery: descriptors, gates, the TSS ---------------------------------------- */

GUEST(g_ud, "ud2");

/* SDM 6.12.1.1, 6.13: a gate whose selector names a data segment is #GP(selector | EXT). */
static void gate_naming_a_data_segment_is_gp_with_the_selector(void **state)
{
	(void)state;
	LOAD(g_ud);
	put_gate(X86EMU_EXC_UD, TM_SEL_KDATA, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, TM_SEL_KDATA | 1, TM_CODE);
}

/* SDM 6.12.1.1: a handler code segment that is not present is #NP(selector | EXT). */
static void gate_naming_an_absent_code_segment_is_np(void **state)
{
	(void)state;
	LOAD(g_ud);
	gdt_put(0x38, kcode_desc(false));
	put_gate(X86EMU_EXC_UD, 0x38, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_NP, 0x38 | 1, TM_CODE);
}

/*
 * Delivery checks the handler's CS in a fixed order: a descriptor that is not
 * code, or whose DPL is above the CPL, is #GP(selector | EXT) whatever its P
 * bit says; only a CS that passes that is refused as absent (#NP).  So an
 * absent CS of DPL 3 reached at CPL 0 is #GP, not #NP.
 */
static void gate_to_an_absent_cs_above_the_cpl_is_gp_not_np(void **state)
{
	(void)state;
	LOAD(g_ud);
	gdt_put(0x38, seg_desc(0, 0xfffff, 0xb, 3, false, F_G | F_L));
	put_gate(X86EMU_EXC_UD, 0x38, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x38 | 1, TM_CODE);
}

/* SDM 6.12.1.1: a null selector in the gate is #GP(EXT). */
static void gate_with_a_null_selector_is_gp(void **state)
{
	(void)state;
	LOAD(g_ud);
	put_gate(X86EMU_EXC_UD, 0, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 1, TM_CODE);
}

/* SDM 6.13: a gate selector beyond the GDT limit is #GP(selector | EXT). */
static void gate_selector_beyond_the_gdt_is_gp(void **state)
{
	(void)state;
	LOAD(g_ud);
	put_gate(X86EMU_EXC_UD, 0x80, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x80 | 1, TM_CODE);
}

/* SDM 6.14.1: the handler must be 64-bit code (L=1, D=0); a 32-bit one is #GP(selector | EXT). */
static void gate_to_a_32_bit_code_segment_is_gp(void **state)
{
	(void)state;
	LOAD(g_ud);
	gdt_put(0x38, seg_desc(0, 0xfffff, 0xb, 0, true, F_G | F_DB));
	put_gate(X86EMU_EXC_UD, 0x38, tm_handler(X86EMU_EXC_UD), true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x38 | 1, TM_CODE);
}

/* SDM 6.14.1 (64-bit gates): a non-canonical handler offset is #GP(EXT). */
static void gate_with_a_non_canonical_offset_is_gp(void **state)
{
	(void)state;
	LOAD(g_ud);
	put_gate(X86EMU_EXC_UD, TM_SEL_KCODE, NONCANONICAL, true, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 1, TM_CODE);
}

/* SDM 6.12.1.1: a gate that is not present is #NP with the IDT error code (vector * 8 + 2 + EXT). */
static void absent_gate_is_np_with_the_idt_error_code(void **state)
{
	(void)state;
	LOAD(g_ud);
	put_gate(X86EMU_EXC_UD, TM_SEL_KCODE, tm_handler(X86EMU_EXC_UD), false, 0);
	run_to_hlt();
	assert_fault(X86EMU_EXC_NP, X86EMU_EXC_UD * 8 + 2 + 1, TM_CODE);
}

GUEST(g_int80, "int $0x80\n hlt");

/* SDM 6.14.1: a vector whose 16-byte gate is beyond the IDT limit is #GP(vector * 8 + 2), EXT = 0 for INT n. */
static void vector_beyond_the_idt_limit_is_gp(void **state)
{
	(void)state;
	LOAD(g_int80);
	g_m.cpu.idtr.limit = 16 * 0x80 + 14;	/* gate 0x80's last byte just outside */
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x80 * 8 + 2, TM_CODE);
}

/* SDM 7.7, 6.14.5: an IST slot beyond the TSS limit is #TS(TSS selector | EXT). */
static void ist_beyond_the_tss_limit_is_ts(void **state)
{
	(void)state;
	LOAD(g_ud);
	tm_set_gate(&g_m, X86EMU_EXC_UD, 0xe, 0, 1);
	g_m.cpu.tr.limit = 36 + 6;	/* IST1 is bytes 36-43 */
	run_to_hlt();
	assert_fault(X86EMU_EXC_TS, TM_SEL_TSS | 1, TM_CODE);
	assert_int_equal(stack_qword(4), TM_STACK);	/* delivered on the old stack */
}

/* The TSS read is a supervisor access (SDM 4.6): its page fault is #PF with U/S clear. */
static void tss_read_that_page_faults_is_pf(void **state)
{
	(void)state;
	LOAD(g_ud);
	tm_set_gate(&g_m, X86EMU_EXC_UD, 0xe, 0, 1);
	g_m.cpu.tr.base = ABSENT_PAGE - 0x20;	/* IST1 at ABSENT_PAGE + 4 */
	tm_set_pages(&g_m, ABSENT_PAGE, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE + 4);
}

GUEST(g_mov_ds, "mov %ax, %ds\n hlt");

/* SDM 4.6: descriptor-table reads are implicit supervisor accesses; from CPL 3 the #PF has U/S = 0. */
static void descriptor_read_that_page_faults_is_a_supervisor_pf(void **state)
{
	(void)state;
	LOAD(g_mov_ds);
	gdt_reaching_an_absent_page();
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	g_m.cpu.gpr[X86EMU_RAX] = 0x3003;	/* index 0x600, RPL 3 */
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE);
	assert_int_equal(g_m.cpu.seg[X86EMU_DS].selector, TM_SEL_UDATA);
}

GUEST(g_mov_fs_ldt, "mov $0x38, %eax\n lldt %ax\n mov $0xf, %eax\n mov %ax, %fs\n hlt");

/* SDM 3.4.2: TI = 1 selects the LDT; MOV FS loads the descriptor's base (SDM 3.4.4). */
static void segment_load_from_the_ldt(void **state)
{
	(void)state;
	LOAD(g_mov_fs_ldt);
	put_system(0x38, 2, LDT_BASE, 0xff, true);
	tm_wr(&g_m, LDT_BASE + 8, 8, seg_desc(0x12345000, 0xfffff, 0x3, 3, true, F_G | F_DB));
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.ldtr.selector, 0x38);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].selector, 0xf);
	assert_int_equal(g_m.cpu.seg[X86EMU_FS].base, 0x12345000);
}

/* ---- MOV SS, far RET, IRET ---------------------------------------------------------------------- */

GUEST(g_mov_ss_null, "xor %eax, %eax\n mov %ax, %ss\n nop\n hlt");

/*
 * SDM MOV: in 64-bit mode a null selector may be loaded into SS at CPL < 3
 * when its RPL equals the CPL; like any MOV SS it holds off interrupts for
 * one instruction (SDM 6.8.3).
 */
static void mov_null_to_ss_at_cpl0_loads_it_and_holds_off_interrupts(void **state)
{
	(void)state;
	LOAD(g_mov_ss_null);
	g_m.cpu.rflags |= X86EMU_FLAG_IF;
	assert_int_equal(tm_step(&g_m, 2), X86EMU_EXIT_BUDGET);
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0);
	assert_true(g_m.cpu.intr_shadow);
	assert_false(x86emu_interrupts_enabled(&g_m.cpu));
	assert_int_equal(tm_step(&g_m, 1), X86EMU_EXIT_BUDGET);	/* nop */
	assert_true(x86emu_interrupts_enabled(&g_m.cpu));
}

GUEST(g_lretq, "lretq");
GUEST(g_iretq, "iretq");
GUEST(g_iretl, "iretl");
GUEST(g_target, "hlt");

/* Quadwords q[0..n) at RSP (a far RET or IRET frame), and a HLT at TARGET. */
static void frame(const uint64_t *q, unsigned n, unsigned size)
{
	uint64_t rsp = g_m.cpu.gpr[X86EMU_RSP] - (uint64_t)n * size;
	g_m.cpu.gpr[X86EMU_RSP] = rsp;
	for (unsigned i = 0; i < n; i++)
		tm_wr(&g_m, rsp + (uint64_t)i * size, size, q[i]);
	tm_load(&g_m, TARGET, g_target, (size_t)(g_target_end - g_target));
}

/* SDM RET (far): returning to a CS whose RPL is below the CPL is #GP(selector). */
static void far_return_to_a_more_privileged_rpl_is_gp(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_KCODE };
	LOAD(g_lretq);
	tm_enter_user(&g_m, TM_CODE, TM_USER_STACK);
	frame(q, 2, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, TM_SEL_KCODE, TM_CODE);
	assert_int_equal(stack_qword(5), TM_SEL_UDATA);	/* from CPL 3: SS of the frame */
}

/* SDM RET (far): a non-conforming CS must have DPL = RPL; a DPL 3 segment with RPL 0 is #GP(selector). */
static void far_return_to_a_cs_of_another_dpl_is_gp(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_UCODE & ~3 };
	LOAD(g_lretq);
	frame(q, 2, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, TM_SEL_UCODE & ~3, TM_CODE);
	assert_int_equal(g_m.cpu.cpl, 0);
}

/* SDM RET (far): a CS that is not present is #NP(selector). */
static void far_return_to_an_absent_cs_is_np(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, 0x38 };
	LOAD(g_lretq);
	gdt_put(0x38, kcode_desc(false));
	frame(q, 2, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_NP, 0x38, TM_CODE);
}

/*
 * SDM IRET (IA-32e mode): returning to 64-bit code at CPL < 3 may pop a
 * null SS (its RPL equal to the new CPL).
 */
static void iretq_to_cpl0_accepts_a_null_ss(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_KCODE, X86EMU_FLAG_FIXED | X86EMU_FLAG_CF, 0x70000, 0 };
	LOAD(g_iretq);
	frame(q, 5, 8);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TARGET + 1);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, 0);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], 0x70000);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_CF);
}

/* SDM IRET: a null SS for a return to CPL 3 is #GP(0). */
static void iretq_to_cpl3_with_a_null_ss_is_gp(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_UCODE, X86EMU_FLAG_FIXED, TM_USER_STACK, 3 };
	LOAD(g_iretq);
	frame(q, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cpl, 0);
}

/* SDM IRET: an SS selector beyond the GDT limit is #GP(selector). */
static void iretq_with_ss_beyond_the_gdt_is_gp(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_UCODE, X86EMU_FLAG_FIXED, TM_USER_STACK, 0x83 };
	LOAD(g_iretq);
	frame(q, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x80, TM_CODE);
}

/* SDM IRET: SS must be a writable data segment with DPL = the new CPL, else #GP(selector). */
static void iretq_with_an_unsuitable_ss_is_gp(void **state)
{
	(void)state;
	/* Kernel data (DPL 0) for a return to CPL 3. */
	const uint64_t q[] = { TARGET, TM_SEL_UCODE, X86EMU_FLAG_FIXED, TM_USER_STACK,
			       TM_SEL_KDATA | 3 };
	LOAD(g_iretq);
	frame(q, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, TM_SEL_KDATA, TM_CODE);

	/* Read-only user data. */
	const uint64_t r[] = { TARGET, TM_SEL_UCODE, X86EMU_FLAG_FIXED, TM_USER_STACK, 0x3b };
	LOAD(g_iretq);
	gdt_put(0x38, seg_desc(0, 0xfffff, 0x1, 3, true, F_G | F_DB));
	frame(r, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x38, TM_CODE);
}

/* SDM IRET: an SS that is not present is #SS(selector). */
static void iretq_with_an_absent_ss_is_ss_fault(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_UCODE, X86EMU_FLAG_FIXED, TM_USER_STACK, 0x3b };
	LOAD(g_iretq);
	gdt_put(0x38, seg_desc(0, 0xfffff, 0x3, 3, false, F_G | F_DB));
	frame(q, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_SS, 0x38, TM_CODE);
	assert_int_equal(g_m.cpu.cpl, 0);
}

/* SDM IRET (IA-32e mode): a non-canonical return RIP is #GP(0) at the IRET. */
static void iretq_to_a_non_canonical_rip_is_gp(void **state)
{
	(void)state;
	const uint64_t q[] = { NONCANONICAL, TM_SEL_KCODE, X86EMU_FLAG_FIXED, 0x70000, TM_SEL_KDATA };
	LOAD(g_iretq);
	frame(q, 5, 8);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
}

/*
 * SDM IRET: with a 32-bit operand size (CF, no REX.W) in 64-bit mode EIP,
 * CS, EFLAGS, ESP and SS are popped as doublewords and zero-extended; the
 * EFLAGS image includes AC.
 */
static void iretd_pops_a_frame_of_doublewords(void **state)
{
	(void)state;
	const uint64_t q[] = { TARGET, TM_SEL_KCODE,
			       X86EMU_FLAG_FIXED | X86EMU_FLAG_CF | X86EMU_FLAG_AC, 0x70000,
			       TM_SEL_KDATA };
	LOAD(g_iretl);
	frame(q, 5, 4);
	tm_wr(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 20, 8, ~0ull);	/* above the frame: not read */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TARGET + 1);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], 0x70000);
	assert_int_equal(g_m.cpu.seg[X86EMU_SS].selector, TM_SEL_KDATA);
	assert_int_equal(g_m.cpu.rflags & (X86EMU_FLAG_CF | X86EMU_FLAG_AC),
			 X86EMU_FLAG_CF | X86EMU_FLAG_AC);
}

/* ---- LTR, LLDT, LGDT ------------------------------------------------------------------------------ */

GUEST(g_ltr, "ltr %ax\n hlt");
GUEST(g_lldt, "lldt %ax\n hlt");
GUEST(g_ltr_mem, "ltr (%rbx)\n hlt");
GUEST(g_lldt_null, "xor %eax, %eax\n lldt %ax\n mov $0x7, %eax\n mov %ax, %ds\n hlt");

/* SDM LTR: a memory operand that page-faults is #PF, and TR is unchanged. */
static void ltr_from_an_absent_page_is_pf(void **state)
{
	(void)state;
	LOAD(g_ltr_mem);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
}

/*
 * SDM LLDT: a null selector marks the LDT invalid; a later reference
 * through it (TI = 1) is #GP(selector).
 */
static void lldt_with_a_null_selector_makes_the_ldt_unusable(void **state)
{
	(void)state;
	LOAD(g_lldt_null);
	use_ldt();
	tm_wr(&g_m, LDT_BASE, 8, seg_desc(0, 0xfffff, 0x3, 0, true, F_G | F_DB));
	run_to_hlt();
	assert_int_equal(g_m.cpu.ldtr.selector, 0);
	assert_false(g_m.cpu.ldtr.attr & X86EMU_SEG_ATTR_P);
	assert_fault(X86EMU_EXC_GP, 0x4, TM_CODE + 10);	/* the MOV DS */
}

/* SDM LTR: a null selector is #GP(0). */
static void ltr_with_a_null_selector_is_gp(void **state)
{
	(void)state;
	LOAD(g_ltr);
	g_m.cpu.gpr[X86EMU_RAX] = 3;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.tr.selector, TM_SEL_TSS);
}

/* SDM LTR/LLDT: the descriptor must be in the GDT (TI = 0) and within its limit, else #GP(selector). */
static void ltr_and_lldt_outside_the_gdt_are_gp(void **state)
{
	(void)state;
	LOAD(g_ltr);
	g_m.cpu.gpr[X86EMU_RAX] = 0x2c;	/* TI = 1 */
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x2c, TM_CODE);

	LOAD(g_lldt);
	g_m.cpu.gpr[X86EMU_RAX] = 0x30;	/* the 16-byte entry would end past the limit 0x37 */
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x30, TM_CODE);
}

/* SDM LTR: the descriptor read is an implicit supervisor access; its page fault is #PF. */
static void ltr_whose_descriptor_page_faults_is_pf(void **state)
{
	(void)state;
	LOAD(g_ltr);
	gdt_reaching_an_absent_page();
	g_m.cpu.gpr[X86EMU_RAX] = 0x3000;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE);
}

/* SDM LTR: a busy TSS is #GP(selector); SDM LLDT: anything but an LDT descriptor is #GP(selector). */
static void ltr_of_a_busy_tss_and_lldt_of_a_tss_are_gp(void **state)
{
	(void)state;
	LOAD(g_ltr);
	put_system(0x38, 0xb, TM_TSS, 0x67, true);
	g_m.cpu.gpr[X86EMU_RAX] = 0x38;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x38, TM_CODE);
	assert_int_equal(g_m.cpu.tr.selector, TM_SEL_TSS);

	LOAD(g_lldt);
	put_system(0x38, 9, TM_TSS, 0x67, true);
	g_m.cpu.gpr[X86EMU_RAX] = 0x38;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0x38, TM_CODE);
	assert_int_equal(g_m.cpu.ldtr.selector, 0);
}

/* SDM LTR: a TSS descriptor that is not present is #NP(selector). */
static void ltr_of_an_absent_tss_is_np(void **state)
{
	(void)state;
	LOAD(g_ltr);
	put_system(0x38, 9, TM_TSS, 0x67, false);
	g_m.cpu.gpr[X86EMU_RAX] = 0x38;
	run_to_hlt();
	assert_fault(X86EMU_EXC_NP, 0x38, TM_CODE);
	assert_int_equal(g_m.cpu.tr.selector, TM_SEL_TSS);
}

/*
 * SDM LTR: the descriptor is marked busy in the GDT, a supervisor write; on
 * a read-only GDT page that is #PF (P and W/R set, U/S clear) and TR stays.
 */
static void ltr_whose_busy_bit_write_faults_is_pf_and_loads_nothing(void **state)
{
	(void)state;
	LOAD(g_ltr);
	put_system(0x38, 9, TM_TSS, 0x67, true);
	tm_set_pages(&g_m, TM_GDT, 4096, TM_PAGE_READONLY);
	g_m.cpu.gpr[X86EMU_RAX] = 0x38;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 3, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_GDT + 0x38 + 5);
	assert_int_equal(g_m.cpu.tr.selector, TM_SEL_TSS);
	assert_int_equal((tm_rd(&g_m, TM_GDT + 0x38, 8) >> 40) & 0xf, 9);
}

GUEST(g_lgdt, "lgdt (%rbx)\n hlt");

/* SDM LGDT (64-bit mode): a non-canonical memory operand is #GP(0). */
static void lgdt_at_a_non_canonical_address_is_gp(void **state)
{
	(void)state;
	LOAD(g_lgdt);
	g_m.cpu.gpr[X86EMU_RBX] = NONCANONICAL - 4;	/* the 10 bytes run into the hole */
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gdtr.base, TM_GDT);
}

/* SDM LGDT: a page fault on the operand is #PF and GDTR is unchanged. */
static void lgdt_from_an_absent_page_is_pf(void **state)
{
	(void)state;
	LOAD(g_lgdt);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gdtr.base, TM_GDT);
}

/*
 * LGDT of a non-canonical base is #GP(0) and GDTR is unchanged.  Intel's
 * exception list names only a non-canonical operand address; the emulator
 * refuses the base as KVM's instruction emulator does (not checked against
 * hardware here).
 */
static void lgdt_of_a_non_canonical_base_is_gp(void **state)
{
	(void)state;
	LOAD(g_lgdt);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, 2, 0xfff);
	tm_wr(&g_m, TM_DATA + 2, 8, NONCANONICAL);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gdtr.base, TM_GDT);
	assert_int_equal(g_m.cpu.gdtr.limit, 0x37);
}

/* ---- far JMP through gates and to compatibility mode; LAR --------------------------------------- */

GUEST(g_ljmp64, ".byte 0x48, 0xff, 0x2b\n hlt");	/* jmp far m16:64 [rbx] */

/* The far pointer sel:offset (8-byte offset) at TM_DATA, RBX pointing at it. */
static void far_pointer(uint64_t offset, uint16_t sel)
{
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	tm_wr(&g_m, TM_DATA, 8, offset);
	tm_wr(&g_m, TM_DATA + 8, 2, sel);
	tm_load(&g_m, TARGET, g_target, (size_t)(g_target_end - g_target));
}

/* SDM JMP (IA-32e mode) and 3.4.2: a call gate may live in the LDT (TI = 1). */
static void far_jmp_through_a_call_gate_in_the_ldt(void **state)
{
	(void)state;
	LOAD(g_ljmp64);
	use_ldt();
	uint64_t lo = (TARGET & 0xffff) | ((uint64_t)TM_SEL_KCODE << 16) | (0xcull << 40) |
		      (1ull << 47) | (((uint64_t)TARGET >> 16) << 48);
	tm_wr(&g_m, LDT_BASE, 8, lo);
	tm_wr(&g_m, LDT_BASE + 8, 8, 0);
	far_pointer(0x1234, 0x4);	/* LDT index 0, RPL 0; the offset is ignored */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TARGET + 1);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
}

/* The upper half of a call gate is read like its lower half (SDM 5.8.3.1); a page fault there is #PF. */
static void call_gate_whose_upper_half_page_faults_is_pf(void **state)
{
	(void)state;
	LOAD(g_ljmp64);
	gdt_reaching_an_absent_page();
	uint64_t lo = (TARGET & 0xffff) | ((uint64_t)TM_SEL_KCODE << 16) | (0xcull << 40) |
		      (1ull << 47) | (((uint64_t)TARGET >> 16) << 48);
	tm_wr(&g_m, ABSENT_PAGE - 8, 8, lo);
	far_pointer(0, (uint16_t)(ABSENT_PAGE - 8 - TM_GDT));
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
}

/*
 * SDM JMP (far, IA-32e mode): to a compatibility-mode code segment (L = 0)
 * the offset is checked against the segment limit: beyond it is #GP(0).
 */
static void far_jmp_to_a_compatibility_segment_beyond_its_limit_is_gp(void **state)
{
	(void)state;
	LOAD(g_ljmp64);
	gdt_put(0x38, seg_desc(0, 0xfff, 0xb, 0, true, F_DB));	/* byte-granular, 4 KiB */
	far_pointer(0x2000, 0x38);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.seg[X86EMU_CS].selector, TM_SEL_KCODE);
}

GUEST(g_lar, ".byte 0x0f, 0x02, 0xc8\n hlt");	/* lar %eax, %ecx */

/* SDM LAR: a selector with TI = 1 names an LDT descriptor; ZF = 1 and the access rights load. */
static void lar_reads_a_descriptor_from_the_ldt(void **state)
{
	(void)state;
	const uint64_t d = seg_desc(0, 0xfffff, 0x3, 3, true, F_G | F_DB);
	LOAD(g_lar);
	use_ldt();
	tm_wr(&g_m, LDT_BASE + 8, 8, d);
	g_m.cpu.gpr[X86EMU_RAX] = 0xf;	/* index 1, TI, RPL 3 */
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_true(g_m.cpu.rflags & X86EMU_FLAG_ZF);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], (d >> 32) & 0x00ffff00);
}

/* SDM LAR (64-bit mode exceptions): a page fault reading the descriptor is #PF. */
static void lar_whose_descriptor_page_faults_is_pf(void **state)
{
	(void)state;
	LOAD(g_lar);
	gdt_reaching_an_absent_page();
	g_m.cpu.gpr[X86EMU_RAX] = 0x3000;
	g_m.cpu.gpr[X86EMU_RCX] = 0x1111;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x1111);

	/* A 16-byte TSS descriptor whose upper half is on the absent page. */
	LOAD(g_lar);
	gdt_reaching_an_absent_page();
	gdt_put((uint16_t)(ABSENT_PAGE - 8 - TM_GDT), 0x0000890000000067ull | (uint64_t)TM_TSS << 16);
	g_m.cpu.gpr[X86EMU_RAX] = ABSENT_PAGE - 8 - TM_GDT;
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, ABSENT_PAGE);
}

/* ---- faults of memory operands ------------------------------------------------------------------- */

/* Load `start..end`, point RAX at an absent page, run: the instruction at TM_CODE page-faults on a read. */
static void read_fault_at_rax(const uint8_t *start, const uint8_t *end)
{
	tm_load_code(start, end);
	g_m.cpu.gpr[X86EMU_RAX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RCX] = 0x5555;
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 0, TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
}

GUEST(g_shld_mem, "shld $4, %ebx, (%rax)\n hlt");
GUEST(g_bsf_mem, "bsf (%rax), %ecx\n hlt");
GUEST(g_push_mem, "pushq (%rax)\n hlt");

/* SDM SHLD: a page fault on the destination is #PF before anything changes. */
static void shld_with_an_absent_destination_is_pf(void **state)
{
	(void)state;
	read_fault_at_rax(g_shld_mem, g_shld_mem_end);
}

/* SDM BSF: a page fault on the source is #PF; the destination keeps its value. */
static void bsf_from_an_absent_source_is_pf(void **state)
{
	(void)state;
	read_fault_at_rax(g_bsf_mem, g_bsf_mem_end);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RCX], 0x5555);
}

/* SDM PUSH: a page fault reading the source is #PF; RSP is unchanged (the frame holds it). */
static void push_from_an_absent_source_is_pf(void **state)
{
	(void)state;
	read_fault_at_rax(g_push_mem, g_push_mem_end);
	assert_int_equal(stack_qword(4), TM_STACK);
}

GUEST(g_call_rax, "call *%rax\n hlt");

/*
 * SDM CALL (64-bit mode): a non-canonical target is #GP(0), reported on the
 * CALL, before the return address is pushed (Intel; AMD reports it when
 * the target is fetched).
 */
static void call_to_a_non_canonical_target_is_gp_before_the_push(void **state)
{
	(void)state;
	LOAD(g_call_rax);
	tm_set_gate(&g_m, X86EMU_EXC_GP, 0xe, 0, 1);	/* the frame lands on IST1 */
	g_m.cpu.gpr[X86EMU_RAX] = NONCANONICAL;
	tm_wr(&g_m, TM_STACK - 8, 8, 0xa5a5a5a5a5a5a5a5ull);
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(stack_qword(4), TM_STACK);
	assert_int_equal(tm_rd(&g_m, TM_STACK - 8, 8), 0xa5a5a5a5a5a5a5a5ull);
}

GUEST(g_popfw, ".byte 0x66, 0x9d\n hlt");	/* popfw */

/* SDM POPF: with a 16-bit operand size only FLAGS (bits 15:0) is loaded; AC and ID stay. */
static void popf_with_a_16_bit_operand_keeps_the_upper_flags(void **state)
{
	(void)state;
	LOAD(g_popfw);
	g_m.cpu.rflags = X86EMU_FLAG_FIXED | X86EMU_FLAG_AC | X86EMU_FLAG_ID;
	g_m.cpu.gpr[X86EMU_RSP] = TM_STACK - 2;
	tm_wr(&g_m, TM_STACK - 2, 2, X86EMU_FLAG_CF | X86EMU_FLAG_ZF);
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_FIXED | X86EMU_FLAG_AC | X86EMU_FLAG_ID |
					 X86EMU_FLAG_CF | X86EMU_FLAG_ZF);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RSP], TM_STACK);
}

GUEST(g_mfence, "mfence\n hlt");

/* SDM MFENCE: a serialising fence with no architectural effect on registers or flags. */
static void mfence_runs_and_changes_no_register(void **state)
{
	(void)state;
	LOAD(g_mfence);
	g_m.cpu.gpr[X86EMU_RAX] = 0x1234;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.rip, TM_CODE + 4);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x1234);
	assert_int_equal(g_m.cpu.rflags, X86EMU_FLAG_FIXED);
}

/*
 * 0F 18-1F is the reserved-NOP (hint) space: an encoding there that belongs
 * to a feature the CPU lacks runs as a NOP, touching neither registers nor
 * memory.  The interpreter's CPUID offers no MPX, CET or CLDEMOTE, so their
 * instructions (ENDBR32/64, RDSSP, BNDLDX/BNDMK/BNDCL/BNDMOV, CLDEMOTE) are
 * NOPs, not #UD, even with a memory operand no access could reach.
 */
static void hint_space_encodings_of_absent_features_are_nops(void **state)
{
	(void)state;
	static const uint8_t code[][6] = {
		{ 4, 0xf3, 0x0f, 0x1e, 0xfb },		/* endbr32 */
		{ 4, 0xf3, 0x0f, 0x1e, 0xfa },		/* endbr64 */
		{ 4, 0xf3, 0x0f, 0x1e, 0xc8 },		/* rdsspd eax */
		{ 5, 0xf3, 0x48, 0x0f, 0x1e, 0xc8 },	/* rdsspq rax */
		{ 3, 0x0f, 0x1a, 0x00 },		/* bndldx bnd0, [rax] */
		{ 3, 0x0f, 0x1b, 0x00 },		/* bndstx [rax], bnd0 */
		{ 4, 0xf3, 0x0f, 0x1b, 0x00 },		/* bndmk bnd0, [rax] */
		{ 4, 0xf3, 0x0f, 0x1a, 0x00 },		/* bndcl bnd0, [rax] */
		{ 4, 0x66, 0x0f, 0x1a, 0x00 },		/* bndmov bnd0, [rax] */
		{ 3, 0x0f, 0x1c, 0x00 },		/* cldemote [rax] */
	};
	uint32_t out[4];
	x86emu_cpuid_default(7, 0, out);
	assert_int_equal(out[1] & (1u << 14), 0);			/* MPX */
	assert_int_equal(out[2] & ((1u << 7) | (1u << 25)), 0);	/* CET_SS, CLDEMOTE */
	assert_int_equal(out[3] & (1u << 20), 0);			/* CET_IBT */
	for (unsigned i = 0; i < sizeof(code) / sizeof(code[0]); i++) {
		for (int nc = 0; nc < 2; nc++) {
			tm_load_code(code[i] + 1, code[i] + 1 + code[i][0]);
			uint64_t rax = nc ? NONCANONICAL : TM_DATA;
			g_m.cpu.gpr[X86EMU_RAX] = rax;
			tm_step(&g_m, 1);
			assert_false(g_m.cpu.last_exception.valid);
			assert_int_equal(g_m.cpu.rip, TM_CODE + code[i][0]);
			assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], rax);
			assert_int_equal(g_m.reads + g_m.writes, 0);
		}
	}
}

GUEST(g_add_mem, "add %ebx, (%rax)\n hlt");

/*
 * SDM 6.5: a fault is precise.  ADD to a read-only page reads, then faults
 * on the write (#PF, P and W/R): memory and the flags are as before.
 */
static void add_to_a_read_only_page_faults_on_the_write_and_changes_nothing(void **state)
{
	(void)state;
	LOAD(g_add_mem);
	g_m.cpu.gpr[X86EMU_RAX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RBX] = 1;
	tm_wr(&g_m, TM_DATA, 4, 0xffffffff);
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_READONLY);
	run_to_hlt();
	assert_fault(X86EMU_EXC_PF, 3, TM_CODE);
	assert_int_equal(tm_rd(&g_m, TM_DATA, 4), 0xffffffff);
	assert_int_equal(stack_qword(3) & X86EMU_FLAGS_ARITH, 0);	/* the RFLAGS image */
}

GUEST(g_bts_a32, ".byte 0x67, 0x0f, 0xab, 0x08\n hlt");	/* bts %ecx, (%eax) */

/*
 * SDM BT/BTS (bit base and register bit offset): the operand moves by
 * offset / 32 doublewords, and with a 32-bit address size (67) the
 * address wraps to 32 bits: 0xfffffff0 + 8 dwords is 0x10.
 */
static void bts_with_32_bit_addressing_wraps_the_bit_base(void **state)
{
	(void)state;
	LOAD(g_bts_a32);
	g_m.cpu.gpr[X86EMU_RAX] = 0xfffffff0;
	g_m.cpu.gpr[X86EMU_RCX] = 8 * 32 + 3;
	run_to_hlt();
	assert_false(g_m.cpu.last_exception.valid);
	assert_int_equal(tm_rd(&g_m, 0x10, 4), 1u << 3);
	assert_false(g_m.cpu.rflags & X86EMU_FLAG_CF);
}

/* SDM CMPXCHG: a non-canonical operand is #GP(0); a page fault is #PF; EAX keeps its value. */
static void cmpxchg_memory_faults_change_nothing(void **state)
{
	(void)state;
	LOAD(g_cmpxchg_rbx);
	g_m.cpu.gpr[X86EMU_RBX] = NONCANONICAL;
	g_m.cpu.gpr[X86EMU_RAX] = 0x77;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);

	LOAD(g_cmpxchg_rbx);
	g_m.cpu.gpr[X86EMU_RBX] = TM_DATA;
	g_m.cpu.gpr[X86EMU_RAX] = 0x77;
	tm_set_pages(&g_m, TM_DATA, 4096, TM_PAGE_ABSENT);
	run_to_hlt();
	assert_true(in_handler(X86EMU_EXC_PF));
	assert_int_equal(g_m.cpu.last_exception.error_code & 1, 0);	/* not present */
	assert_int_equal(stack_qword(1), TM_CODE);
	assert_int_equal(g_m.cpu.cr2, TM_DATA);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);
}

GUEST(g_cmpxchg8b, "cmpxchg8b (%rbx)\n hlt");

/* SDM CMPXCHG8B (64-bit mode): a non-canonical operand is #GP(0). */
static void cmpxchg8b_at_a_non_canonical_address_is_gp(void **state)
{
	(void)state;
	LOAD(g_cmpxchg8b);
	g_m.cpu.gpr[X86EMU_RBX] = NONCANONICAL - 4;	/* the last 4 bytes in the hole */
	g_m.cpu.gpr[X86EMU_RAX] = 0x77;
	run_to_hlt();
	assert_fault(X86EMU_EXC_GP, 0, TM_CODE);
	assert_int_equal(g_m.cpu.gpr[X86EMU_RAX], 0x77);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exit_names_name_every_exit_reason),
		cmocka_unit_test(step_outside_64_bit_mode_executes_nothing),
		cmocka_unit_test(step_on_a_halted_cpu_executes_nothing),
		cmocka_unit_test(interrupt_to_a_shut_down_cpu_is_not_delivered),
		cmocka_unit_test(interrupt_delivery_the_machine_retries_changes_nothing),
		cmocka_unit_test(interrupt_with_an_empty_idt_ends_in_shutdown),
		cmocka_unit_test(fetch_at_a_non_canonical_rip_is_gp),
		cmocka_unit_test(instruction_running_into_the_non_canonical_hole_is_gp),
		cmocka_unit_test(instruction_ending_at_the_top_of_the_lower_half_runs_and_the_next_fetch_is_gp),
		cmocka_unit_test(instruction_crossing_a_page_boundary_runs),
		cmocka_unit_test(access_wrapping_at_2_64_is_translated_not_gp),
		cmocka_unit_test(eip_relative_operand_wraps_to_32_bits),
		cmocka_unit_test(callback_status_outside_the_contract_is_a_machine_check),
		cmocka_unit_test(machine_check_while_delivering_a_machine_check_shuts_down),
		cmocka_unit_test(locked_add_that_loses_a_race_adds_to_the_winners_value),
		cmocka_unit_test(locked_add_that_never_wins_is_abandoned_with_retry),
		cmocka_unit_test(cmpxchg_without_a_machine_primitive_reads_then_writes),
		cmocka_unit_test(ins_to_a_misaligned_destination_is_ac_before_the_port_is_read),
		cmocka_unit_test(cmpxchg_to_a_misaligned_operand_is_ac),
		cmocka_unit_test(gate_naming_a_data_segment_is_gp_with_the_selector),
		cmocka_unit_test(gate_naming_an_absent_code_segment_is_np),
		cmocka_unit_test(gate_to_an_absent_cs_above_the_cpl_is_gp_not_np),
		cmocka_unit_test(gate_with_a_null_selector_is_gp),
		cmocka_unit_test(gate_selector_beyond_the_gdt_is_gp),
		cmocka_unit_test(gate_to_a_32_bit_code_segment_is_gp),
		cmocka_unit_test(gate_with_a_non_canonical_offset_is_gp),
		cmocka_unit_test(absent_gate_is_np_with_the_idt_error_code),
		cmocka_unit_test(vector_beyond_the_idt_limit_is_gp),
		cmocka_unit_test(ist_beyond_the_tss_limit_is_ts),
		cmocka_unit_test(tss_read_that_page_faults_is_pf),
		cmocka_unit_test(descriptor_read_that_page_faults_is_a_supervisor_pf),
		cmocka_unit_test(segment_load_from_the_ldt),
		cmocka_unit_test(mov_null_to_ss_at_cpl0_loads_it_and_holds_off_interrupts),
		cmocka_unit_test(far_return_to_a_more_privileged_rpl_is_gp),
		cmocka_unit_test(far_return_to_a_cs_of_another_dpl_is_gp),
		cmocka_unit_test(far_return_to_an_absent_cs_is_np),
		cmocka_unit_test(iretq_to_cpl0_accepts_a_null_ss),
		cmocka_unit_test(iretq_to_cpl3_with_a_null_ss_is_gp),
		cmocka_unit_test(iretq_with_ss_beyond_the_gdt_is_gp),
		cmocka_unit_test(iretq_with_an_unsuitable_ss_is_gp),
		cmocka_unit_test(iretq_with_an_absent_ss_is_ss_fault),
		cmocka_unit_test(iretq_to_a_non_canonical_rip_is_gp),
		cmocka_unit_test(iretd_pops_a_frame_of_doublewords),
		cmocka_unit_test(ltr_from_an_absent_page_is_pf),
		cmocka_unit_test(lldt_with_a_null_selector_makes_the_ldt_unusable),
		cmocka_unit_test(ltr_with_a_null_selector_is_gp),
		cmocka_unit_test(ltr_and_lldt_outside_the_gdt_are_gp),
		cmocka_unit_test(ltr_whose_descriptor_page_faults_is_pf),
		cmocka_unit_test(ltr_of_a_busy_tss_and_lldt_of_a_tss_are_gp),
		cmocka_unit_test(ltr_of_an_absent_tss_is_np),
		cmocka_unit_test(ltr_whose_busy_bit_write_faults_is_pf_and_loads_nothing),
		cmocka_unit_test(lgdt_at_a_non_canonical_address_is_gp),
		cmocka_unit_test(lgdt_from_an_absent_page_is_pf),
		cmocka_unit_test(lgdt_of_a_non_canonical_base_is_gp),
		cmocka_unit_test(far_jmp_through_a_call_gate_in_the_ldt),
		cmocka_unit_test(call_gate_whose_upper_half_page_faults_is_pf),
		cmocka_unit_test(far_jmp_to_a_compatibility_segment_beyond_its_limit_is_gp),
		cmocka_unit_test(lar_reads_a_descriptor_from_the_ldt),
		cmocka_unit_test(lar_whose_descriptor_page_faults_is_pf),
		cmocka_unit_test(shld_with_an_absent_destination_is_pf),
		cmocka_unit_test(bsf_from_an_absent_source_is_pf),
		cmocka_unit_test(push_from_an_absent_source_is_pf),
		cmocka_unit_test(call_to_a_non_canonical_target_is_gp_before_the_push),
		cmocka_unit_test(popf_with_a_16_bit_operand_keeps_the_upper_flags),
		cmocka_unit_test(mfence_runs_and_changes_no_register),
		cmocka_unit_test(hint_space_encodings_of_absent_features_are_nops),
		cmocka_unit_test(add_to_a_read_only_page_faults_on_the_write_and_changes_nothing),
		cmocka_unit_test(bts_with_32_bit_addressing_wraps_the_bit_base),
		cmocka_unit_test(cmpxchg_memory_faults_change_nothing),
		cmocka_unit_test(cmpxchg8b_at_a_non_canonical_address_is_gp),
	};
	return cmocka_run_group_tests(tests, tm_group_setup, tm_group_teardown);
}
