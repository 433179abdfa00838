/*
 * Test support for the x86emu interpreter tests:
 *  - a small machine: 2 MiB of flat memory (linear == physical), a GDT, an
 *    IDT whose every vector points at its own HLT stub, a 64-bit TSS, and
 *    per-page fault injection (absent, read-only, "retry");
 *  - the host oracle: run one instruction natively on this CPU;
 *  - a tiny encoder wrapper around Zydis's encoder.
 */
#ifndef X86EMU_TEST_H
#define X86EMU_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <Zydis/Zydis.h>

#include "cpu.h"

#define TM_MEM_SIZE (2u << 20)
#define TM_PAGES (TM_MEM_SIZE / 4096)

#define TM_GDT 0x1000u
#define TM_IDT 0x2000u
#define TM_TSS 0x3000u
#define TM_CODE 0x10000u
#define TM_HANDLERS 0x20000u	/* vector v's stub at TM_HANDLERS + 16 * v */
#define TM_USER_STACK 0x50000u
#define TM_RSP0 0x60000u	/* TSS.RSP0 */
#define TM_IST1 0x68000u	/* TSS.IST1 */
#define TM_STACK 0x80000u	/* initial kernel RSP */
#define TM_DATA 0x100000u

#define TM_SEL_KCODE 0x08
#define TM_SEL_KDATA 0x10
#define TM_SEL_UDATA 0x1b	/* index 3, RPL 3 */
#define TM_SEL_UCODE 0x23	/* index 4, RPL 3 */
#define TM_SEL_TSS 0x28		/* 16-byte descriptor at indices 5-6 */

enum tm_page { TM_PAGE_RAM, TM_PAGE_ABSENT, TM_PAGE_READONLY, TM_PAGE_RETRY, TM_PAGE_USER };

struct tm {
	struct x86emu_env env;
	struct x86emu_cpu cpu;
	uint8_t *mem;
	uint8_t page[TM_PAGES];		/* enum tm_page per 4 KiB page */
	uint8_t user[TM_PAGES];		/* 1: user-accessible */
	unsigned reads, writes, fetches, cmpxchgs;
	uint32_t retry_rep_done;		/* rep_done of the last access answered RETRY */
	unsigned io_outs, io_ins, write_checks;
	/* When armed: after write_retry_after more writes that pass their checks,
	 * the next one answers RETRY (once; that disarms it). */
	bool write_retry_armed;
	unsigned write_retry_after;
	uint16_t last_port;
	uint32_t last_out, in_value;
	uint32_t in_step;		/* IN number k reads in_value + k * in_step */
	unsigned last_io_size;
	uint32_t out_log[64];		/* the values of the first 64 OUTs */
	unsigned invlpgs;
	uint64_t last_invlpg;
	unsigned cr_writes;
	unsigned last_cr;
	uint64_t last_cr_value;
};

/* Guest code `body` (assembly) as the bytes name[] .. name_end[]. */
#define GUEST(name, body)                                                        \
	__asm__(".pushsection .rodata\n.globl " #name "\n" #name ":\n" body "\n" \
		".globl " #name "_end\n" #name "_end:\n.popsection\n");          \
	extern const uint8_t name[], name##_end[]

/* The machine each test program works on, and cmocka setup/teardown
 * functions that initialise and release it. */
extern struct tm g_m;
int tm_group_setup(void **state);
int tm_group_teardown(void **state);
/* A fresh g_m with the guest code [start, end) at TM_CODE. */
void tm_load_code(const uint8_t *start, const uint8_t *end);
#define LOAD(name) tm_load_code(name, name##_end)
/* Quadword i above g_m's RSP (an exception frame's parts). */
#define stack_qword(i) tm_rd(&g_m, g_m.cpu.gpr[X86EMU_RSP] + 8ull * (i), 8)

/* A machine at CPL 0 in 64-bit mode, RIP = TM_CODE, RSP = TM_STACK, all pages user+RAM. */
void tm_init(struct tm *m);
void tm_fini(struct tm *m);
void tm_load(struct tm *m, uint64_t addr, const void *bytes, size_t n);
void tm_set_pages(struct tm *m, uint64_t addr, size_t len, enum tm_page kind);
uint64_t tm_rd(const struct tm *m, uint64_t addr, unsigned size);
void tm_wr(struct tm *m, uint64_t addr, unsigned size, uint64_t v);
/* Gate for `vector`: type 0xe (interrupt) or 0xf (trap), dpl, ist. */
void tm_set_gate(struct tm *m, unsigned vector, unsigned type, unsigned dpl, unsigned ist);
static inline uint64_t tm_handler(unsigned vector)
{
	return TM_HANDLERS + 16ull * vector;
}

/* g_m sits at the HLT stub of @vector's handler, before or after it ran. */
static inline bool in_handler(unsigned vector)
{
	return g_m.cpu.rip == tm_handler(vector) || g_m.cpu.rip == tm_handler(vector) + 1;
}

#define NONCANONICAL 0x0000800000000000ull	/* the first address of the hole */
#define NO_ERROR_CODE (-1)

/* The descriptor @d at selector @sel of g_m's GDT, its limit grown to hold it. */
static inline void gdt_put(uint16_t sel, uint64_t d)
{
	tm_wr(&g_m, TM_GDT + (sel & 0xfff8), 8, d);
	if (g_m.cpu.gdtr.limit < (sel & 0xfff8) + 7)
		g_m.cpu.gdtr.limit = (uint16_t)((sel & 0xfff8) + 7);
}
/* Drop to CPL 3 with user segments, RIP and RSP given. */
void tm_enter_user(struct tm *m, uint64_t rip, uint64_t rsp);
int tm_step(struct tm *m, unsigned budget);

#ifdef cmocka_unit_test	/* the test programs, which include cmocka.h first */
/*
 * The last event was `vector` (error code `ec`, or none with NO_ERROR_CODE)
 * raised by the instruction at `rip`, and g_m sits in its handler.
 */
static inline void assert_fault(unsigned vector, long ec, uint64_t rip)
{
	assert_true(in_handler(vector));
	assert_true(g_m.cpu.last_exception.valid);
	assert_int_equal(g_m.cpu.last_exception.vector, vector);
	if (ec == NO_ERROR_CODE) {
		assert_int_equal(stack_qword(0), rip);
	} else {
		assert_int_equal(stack_qword(0), ec);
		assert_int_equal(stack_qword(1), rip);
	}
}

/* Run g_m until a HLT: the guest's own, or the one in a handler. */
static inline void run_to_hlt(void)
{
	assert_int_equal(tm_step(&g_m, 64), X86EMU_EXIT_HLT);
}
#endif

/* ---- host oracle ---- */

struct host_regs {
	uint64_t gpr[16];	/* RSP (index 4) is neither loaded nor stored */
	uint64_t rflags;
};

/* Run `len` bytes of one instruction natively; returns 0 or the signal it raised. */
int host_exec(const uint8_t *insn, size_t len, struct host_regs *r);

/* ---- encoder ---- */

struct tenc_op {
	ZydisOperandType type;
	ZydisRegister reg;
	uint64_t imm;
	ZydisRegister base;
	int64_t disp;
	unsigned size;		/* memory operand bytes */
};

static inline struct tenc_op R(ZydisRegister r)
{
	return (struct tenc_op){ .type = ZYDIS_OPERAND_TYPE_REGISTER, .reg = r };
}

static inline struct tenc_op I(uint64_t v)
{
	return (struct tenc_op){ .type = ZYDIS_OPERAND_TYPE_IMMEDIATE, .imm = v };
}

static inline struct tenc_op M(ZydisRegister base, int64_t disp, unsigned size)
{
	return (struct tenc_op){ .type = ZYDIS_OPERAND_TYPE_MEMORY, .base = base, .disp = disp,
				 .size = size };
}

/* Encode; returns the length, or 0 if Zydis cannot encode the combination. */
size_t tenc(uint8_t out[15], ZydisMnemonic mn, unsigned n, const struct tenc_op *ops);
size_t tenc_prefixed(uint8_t out[15], ZydisMnemonic mn, uint64_t prefixes, unsigned n,
		     const struct tenc_op *ops);

/* Deterministic pseudo-random numbers (xorshift), seeded per test. */
uint64_t trand(void);
void tseed(uint64_t seed);

#endif
