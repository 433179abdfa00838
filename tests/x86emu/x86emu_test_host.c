/*
 * The host oracle: execute one instruction natively on this CPU with a
 * chosen register file and RFLAGS, and capture the result.  The bytes run
 * are the very bytes the interpreter decodes, so the comparison covers
 * decoding as well as semantics.  A divide fault arrives as SIGFPE and is
 * reported as such (the interpreter must then raise #DE).
 */
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "x86emu_test.h"

void x86emu_test_host_call(struct host_regs *r, void *code);

/*
 * Load every GPR but RSP and RFLAGS from *r, call the code (the instruction
 * followed by RET), store them back.  Callee-saved registers are preserved.
 */
__asm__(
	".text\n"
	".globl x86emu_test_host_call\n"
	".type x86emu_test_host_call, @function\n"
	"x86emu_test_host_call:\n"
	"  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"  push %rdi\n"			/* regs pointer */
	"  push %rsi\n"			/* code pointer */
	"  pushq 128(%rdi)\n popfq\n"
	"  mov 0(%rdi), %rax\n mov 8(%rdi), %rcx\n mov 16(%rdi), %rdx\n"
	"  mov 24(%rdi), %rbx\n mov 40(%rdi), %rbp\n mov 48(%rdi), %rsi\n"
	"  mov 64(%rdi), %r8\n mov 72(%rdi), %r9\n mov 80(%rdi), %r10\n"
	"  mov 88(%rdi), %r11\n mov 96(%rdi), %r12\n mov 104(%rdi), %r13\n"
	"  mov 112(%rdi), %r14\n mov 120(%rdi), %r15\n mov 56(%rdi), %rdi\n"
	"  call *(%rsp)\n"
	"  pushfq\n"
	"  push %rdi\n"
	"  mov 24(%rsp), %rdi\n"	/* [rdi][flags][code][regs] */
	"  popq 56(%rdi)\n"
	"  popq 128(%rdi)\n"
	"  mov %rax, 0(%rdi)\n mov %rcx, 8(%rdi)\n mov %rdx, 16(%rdi)\n"
	"  mov %rbx, 24(%rdi)\n mov %rbp, 40(%rdi)\n mov %rsi, 48(%rdi)\n"
	"  mov %r8, 64(%rdi)\n mov %r9, 72(%rdi)\n mov %r10, 80(%rdi)\n"
	"  mov %r11, 88(%rdi)\n mov %r12, 96(%rdi)\n mov %r13, 104(%rdi)\n"
	"  mov %r14, 112(%rdi)\n mov %r15, 120(%rdi)\n"
	"  add $16, %rsp\n"
	"  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"  cld\n"
	"  ret\n"
	".size x86emu_test_host_call, .-x86emu_test_host_call\n");

static uint8_t *g_code;
static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_sig;

static void on_signal(int sig)
{
	g_sig = sig;
	siglongjmp(g_jmp, 1);
}

int host_exec(const uint8_t *insn, size_t len, struct host_regs *r)
{
	struct sigaction sa, old_fpe;

	if (!g_code) {
		g_code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (g_code == MAP_FAILED)
			return -1;
	}
	memcpy(g_code, insn, len);
	g_code[len] = 0xc3;	/* ret */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGFPE, &sa, &old_fpe);
	g_sig = 0;
	if (sigsetjmp(g_jmp, 1) == 0)
		x86emu_test_host_call(r, g_code);
	sigaction(SIGFPE, &old_fpe, NULL);
	return g_sig;
}

size_t tenc_prefixed(uint8_t out[15], ZydisMnemonic mn, uint64_t prefixes, unsigned n,
		     const struct tenc_op *ops)
{
	ZydisEncoderRequest req;
	ZyanUSize len = 15;

	memset(&req, 0, sizeof(req));
	req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	req.mnemonic = mn;
	req.prefixes = prefixes;
	req.operand_count = (ZyanU8)n;
	for (unsigned i = 0; i < n; i++) {
		ZydisEncoderOperand *o = &req.operands[i];
		o->type = ops[i].type;
		if (ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER) {
			o->reg.value = ops[i].reg;
		} else if (ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
			o->imm.u = ops[i].imm;
		} else {
			o->mem.base = ops[i].base;
			o->mem.displacement = ops[i].disp;
			o->mem.size = (ZyanU16)ops[i].size;
		}
	}
	if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, out, &len)))
		return 0;
	return len;
}

size_t tenc(uint8_t out[15], ZydisMnemonic mn, unsigned n, const struct tenc_op *ops)
{
	return tenc_prefixed(out, mn, 0, n, ops);
}
