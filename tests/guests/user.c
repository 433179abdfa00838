/* SPDX-License-Identifier: MIT */
/*
 * user: ring 3 and the rights it is checked against.  The guest loads a
 * GDT of its own (kernel and user segments, a TSS whose RSP0 takes the
 * exceptions of ring 3), maps user pages in the window (code, stack,
 * read/write, read-only, no-execute) beside supervisor ones, and makes
 * one ring-3 access per case.  Every case ends in an exception: #PF when
 * the access is refused (its error code printed, CR2 checked), #UD from
 * the UD2 that follows an access that passed, #GP for a privileged
 * instruction.  The handler brings the CPU back to ring 0 where the case
 * began.  Then the kernel's side: CR4.SMEP (a call into a user page) and
 * CR4.SMAP (reads and writes of a user page, with and without
 * EFLAGS.AC), and ring 3 again afterwards; last, CR0.WP and EFER.NXE
 * turned off and on around ring 0's own writes and reads.  Every vCPU
 * runs every case at once, each with its own TSS, pages and state (vCPU
 * 0 prints), so the vCPUs' rings and rights change side by side.
 *
 * Ring 3 uses no OUT, INT n or SYSCALL (KVM here cannot), and no address
 * in 0xffff800000000000..0xffff807fffffffff.
 */
#include "runtime.h"

#define SEL_KCODE 0x08ul
#define SEL_KDATA 0x10ul
#define SEL_UDATA (0x18ul | 3)
#define SEL_UCODE (0x20ul | 3)
#define SEL_TSS 0x28ul

/* Each vCPU's pages, 64 KiB apart in the window: */
#define SPAN 0x10000ul
#define BASE (RT_WINDOW + SPAN * cpu()->id)
#define U_CODE (BASE + 0x0000)
#define U_STACK (BASE + 0x1000) /* its top at U_STACK + 4096 */
#define U_RW (BASE + 0x2000)
#define U_RO (BASE + 0x3000)
#define U_NX (BASE + 0x4000)
#define K_RW (BASE + 0x5000)   /* supervisor */
#define K_RO (BASE + 0x6000)   /* supervisor, read-only */
#define K_CODE (BASE + 0x7000) /* supervisor, executable */
#define NONE (BASE + 0x8000)   /* never mapped */

#define RFLAGS_AC (1ul << 18)
#define CR4_SMEP (1ul << 20)
#define CR4_SMAP (1ul << 21)

/* What ring 3 does (user_code's RSI): read (%rdi) into RAX, write RDX to
 * (%rdi), jump to RDI, or HLT.  Each but the jump ends in UD2. */
enum kind { READ, WRITE, FETCH, PRIVILEGED };

/*
 * user_code..user_code_end is copied to U_CODE: position independent.
 * user_ret (at user_code + user_ret - user_code) is a lone RET, for the
 * kernel's call into a user page.  ud2_at is where a jump to U_CODE +
 * (ud2_at - user_code) lands: a UD2.
 *
 * enter_user(rip, rsp, address, kind, value, save_rsp) saves the
 * callee-saved registers, and the stack pointer in *@save_rsp, then IRETQs
 * to ring 3 at @rip with @rsp; the trap handler resumes at user_back with
 * that stack pointer, which returns from enter_user.
 */
extern const char user_code[], user_code_end[], user_ret[], ud2_at[];
void enter_user(uint64_t rip, uint64_t rsp, uint64_t address, uint64_t kind, uint64_t value,
                uint64_t *save_rsp);
extern const char user_back[];
__asm__(".pushsection .rodata\n"
        ".globl user_code, user_code_end, user_ret, ud2_at\n"
        "user_code:\n"
        "    cmp $1, %rsi\n"
        "    jb 1f\n"
        "    je 2f\n"
        "    cmp $2, %rsi\n"
        "    je 3f\n"
        "    hlt\n"
        "    ud2\n"
        "1:  mov (%rdi), %rax\n"
        "    ud2\n"
        "2:  mov %rdx, (%rdi)\n"
        "    ud2\n"
        "3:  jmp *%rdi\n"
        "user_ret:\n"
        "    ret\n"
        "ud2_at:\n"
        "    ud2\n"
        "user_code_end:\n"
        ".popsection\n"
        ".text\n"
        ".globl enter_user, user_back\n"
        "enter_user:\n"
        "    push %rbx\n"
        "    push %rbp\n"
        "    push %r12\n"
        "    push %r13\n"
        "    push %r14\n"
        "    push %r15\n"
        "    mov %rsp, (%r9)\n"
        "    mov %rdx, %rax\n"  /* address */
        "    mov %r8, %rdx\n"   /* value */
        "    push $0x1b\n"      /* SS: user data */
        "    push %rsi\n"       /* RSP */
        "    pushfq\n"
        "    push $0x23\n"      /* CS: user code */
        "    push %rdi\n"       /* RIP */
        "    mov %rax, %rdi\n"
        "    mov %rcx, %rsi\n"  /* kind */
        "    iretq\n"
        "user_back:\n"
        "    pop %r15\n"
        "    pop %r14\n"
        "    pop %r13\n"
        "    pop %r12\n"
        "    pop %rbp\n"
        "    pop %rbx\n"
        "    ret\n"
        ".globl kernel_call, kernel_call_back\n"
        "kernel_call:\n"
        "    mov %rsp, (%rsi)\n"
        "    call *%rdi\n"
        "kernel_call_back:\n"
        "    ret\n");
/* kernel_call(target, save_rsp) calls @target from ring 0, its stack
 * pointer in *@save_rsp; a fault there that the handler resumes at
 * kernel_call_back with that stack pointer returns from kernel_call too. */
void kernel_call(uint64_t target, uint64_t *save_rsp);
extern const char kernel_call_back[];

/* What each vCPU keeps: its index, the stack pointers its rings return
 * to, and the last exception its handler took. */
struct cpu {
    unsigned id;
    uint64_t user_rsp_save;   /* enter_user's, for user_back */
    uint64_t call_rsp_save;   /* kernel_call's, for kernel_call_back */
    bool expect_kernel_fault; /* a fault in ring 0 resumes at kernel_call_back */
    struct {
        uint64_t vector, error, cr2, rip, rax, cs;
    } ex;
};
static struct cpu cpus[RT_VCPUS_MAX];

static struct cpu *cpu(void)
{
    return &cpus[rt_vcpu_id()];
}

/* The last exception of the vCPU running. */
#define last (cpu()->ex)

static void on_trap(struct rt_frame *f)
{
    struct cpu *c = cpu();
    c->ex.vector = f->vector;
    c->ex.error = f->error;
    c->ex.cr2 = f->vector == 14 ? read_cr2() : 0;
    c->ex.rip = f->rip;
    c->ex.rax = f->rax;
    c->ex.cs = f->cs;
    if ((f->cs & 3) == 3) {
        f->rip = (uint64_t)user_back;
        f->cs = SEL_KCODE;
        f->ss = SEL_KDATA;
        f->rsp = c->user_rsp_save;
        return;
    }
    CHECK(c->expect_kernel_fault, "vcpu %u: unexpected vector %lu in ring 0 at 0x%lx, error 0x%lx",
          c->id, f->vector, f->rip, f->error);
    f->rip = (uint64_t)kernel_call_back;
    f->rsp = c->call_rsp_save;
    c->expect_kernel_fault = false;
}

/* vCPU 0 says what each case gave; the others check it silently. */
#define SAY(...) do { if (cpu()->id == 0) rt_printf(__VA_ARGS__); } while (0)

/* One ring-3 case: the exception it ended in. */
static void ring3(uint64_t address, enum kind kind, uint64_t value)
{
    last.vector = ~0ul;
    enter_user(U_CODE, U_STACK + PAGE_SIZE, address, kind, value, &cpu()->user_rsp_save);
    CHECK(last.vector != ~0ul, "ring 3 came back without an exception");
    CHECK((last.cs & 3) == 3, "the exception came from ring %lu", last.cs & 3);
}

/* The case ended in #PF with @error at @address, or print why not. */
static void expect_pf(const char *what, uint64_t address, uint64_t error)
{
    CHECK(last.vector == 14, "%s: vector %lu, not #PF", what, last.vector);
    CHECK(last.cr2 == address, "%s: CR2 0x%lx, not 0x%lx", what, last.cr2, address);
    CHECK(last.error == error, "%s: error code 0x%lx, not 0x%lx", what, last.error, error);
    SAY("%s: #PF 0x%lx at the page\n", what, last.error);
}

/* The access passed: the UD2 after it raised #UD. */
static void expect_passed(const char *what)
{
    CHECK(last.vector == 6, "%s: vector %lu (error 0x%lx, CR2 0x%lx), not the #UD after it", what,
          last.vector, last.error, last.cr2);
}

static uint64_t user_at(const char *label)
{
    return U_CODE + (uint64_t)(label - user_code);
}

/* A GDT with user segments and a TSS for each vCPU (selector SEL_TSS +
 * 16 * id), built by vCPU 0; each vCPU loads it and its own TSS. */
#define TSS_SIZE 104
static uint64_t gdt[5 + 2 * RT_VCPUS_MAX] __attribute__((aligned(16)));
static uint8_t tss[RT_VCPUS_MAX][TSS_SIZE] __attribute__((aligned(16)));

static void build_gdt(void)
{
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffull; /* kernel code: the loader's */
    gdt[2] = 0x00cf93000000ffffull; /* kernel data */
    gdt[3] = 0x00cff3000000ffffull; /* user data, DPL 3 */
    gdt[4] = 0x00affb000000ffffull; /* user code, L, DPL 3 */
    for (unsigned i = 0; i < rt_nr_vcpus; i++) {
        uint64_t rsp0 = rt_alloc_pages(2) + 2 * PAGE_SIZE;
        rt_memcpy(tss[i] + 4, &rsp0, 8);
        uint16_t iomap = TSS_SIZE; /* no I/O bitmap */
        rt_memcpy(tss[i] + 102, &iomap, 2);
        uint64_t base = (uint64_t)tss[i];
        gdt[5 + 2 * i] = (TSS_SIZE - 1) | (base & 0xffffff) << 16 | 0x89ull << 40 |
                         (base >> 24 & 0xff) << 56;
        gdt[6 + 2 * i] = base >> 32;
    }
}

static void load_gdt_and_tss(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } d = {(uint16_t)((5 + 2 * rt_nr_vcpus) * 8 - 1), (uint64_t)gdt};
    uint16_t sel = (uint16_t)(SEL_TSS + 16 * cpu()->id);
    __asm__ volatile("lgdt %0\n ltr %w1" :: "m"(d), "r"(sel) : "memory");
}

/* Every vCPU's pages (one user code page for all), by vCPU 0 before the
 * others start. */
static void map_pages(void)
{
    uint64_t code = rt_alloc_page();
    rt_memcpy((void *)code, user_code, (size_t)(user_code_end - user_code));
    uint64_t nx = rt_alloc_page();
    rt_memcpy((void *)nx, ud2_at, 2); /* reached only if NX were ignored */
    uint64_t kcode = rt_alloc_page();
    rt_memcpy((void *)kcode, ud2_at, 2);
    for (unsigned i = 0; i < rt_nr_vcpus; i++) {
        uint64_t base = RT_WINDOW + SPAN * i;
        rt_map(base + 0x0000, code, PTE_U);
        rt_map(base + 0x1000, rt_alloc_page(), PTE_U | PTE_W | PTE_NX);
        rt_map(base + 0x2000, rt_alloc_page(), PTE_U | PTE_W | PTE_NX);
        rt_map(base + 0x3000, rt_alloc_page(), PTE_U | PTE_NX);
        rt_map(base + 0x4000, nx, PTE_U | PTE_NX);
        rt_map(base + 0x5000, rt_alloc_page(), PTE_W | PTE_NX);
        rt_map(base + 0x6000, rt_alloc_page(), PTE_NX);
        rt_map(base + 0x7000, kcode, 0);
        /* The tables above the pages let ring 3 through (their U bits):
         * the leaves decide. */
        volatile uint64_t *pml4 = (volatile uint64_t *)(read_cr3() & PTE_ADDR);
        volatile uint64_t *e = &pml4[(base >> 39) & 511];
        *e |= PTE_U;
        volatile uint64_t *pdpt = (volatile uint64_t *)(*e & PTE_ADDR);
        e = &pdpt[(base >> 30) & 511];
        *e |= PTE_U;
        volatile uint64_t *pd = (volatile uint64_t *)(*e & PTE_ADDR);
        pd[(base >> 21) & 511] |= PTE_U;
    }
    write_cr3(read_cr3()); /* rights widened: a flush, for the TLBs' sake */
}

static bool cpuid7_ebx(unsigned bit)
{
    uint32_t a = 7, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return (b >> bit) & 1;
}

/* Ring 3 itself: reads, writes and fetches of user and supervisor pages. */
static void ring3_cases(void)
{
    *(volatile uint64_t *)U_RW = 0x1122334455667788ul;
    *rt_pte(U_RW) &= ~PTE_D; /* the kernel's store set it */
    invlpg(U_RW);
    ring3(U_RW, READ, 0);
    expect_passed("read a user page");
    CHECK(last.rax == 0x1122334455667788ul, "read 0x%lx", last.rax);
    SAY("read a user page: ok\n");

    CHECK(!(*rt_pte(U_RW) & PTE_D), "D set before the write");
    ring3(U_RW, WRITE, 0x5a5a5a5a5a5a5a5aul);
    expect_passed("write a user page");
    CHECK(*(volatile uint64_t *)U_RW == 0x5a5a5a5a5a5a5a5aul, "the write did not land");
    CHECK(*rt_pte(U_RW) & PTE_D, "the write left D clear");
    SAY("write a user page: ok, D set\n");

    ring3(U_RO, WRITE, 1);
    expect_pf("write a read-only user page", U_RO, PF_P | PF_W | PF_U);
    CHECK(*(volatile uint64_t *)U_RO == 0, "the refused write landed");
    ring3(K_RW, READ, 0);
    expect_pf("read a supervisor page", K_RW, PF_P | PF_U);
    ring3(K_RO, WRITE, 1);
    expect_pf("write a read-only supervisor page", K_RO, PF_P | PF_W | PF_U);
    ring3(NONE + 8, READ, 0);
    expect_pf("read a page that is not mapped", NONE + 8, PF_U);

    ring3(user_at(ud2_at), FETCH, 0);
    expect_passed("fetch from a user page");
    CHECK(last.rip == user_at(ud2_at), "#UD at 0x%lx", last.rip);
    SAY("fetch from a user page: ok\n");
    ring3(U_NX, FETCH, 0);
    expect_pf("fetch from a no-execute user page", U_NX, PF_P | PF_U | PF_I);
    ring3(K_CODE, FETCH, 0);
    expect_pf("fetch from a supervisor page", K_CODE, PF_P | PF_U | PF_I);

    ring3(0, PRIVILEGED, 0);
    CHECK(last.vector == 13 && last.error == 0, "hlt: vector %lu, error 0x%lx", last.vector,
          last.error);
    SAY("hlt in ring 3: #GP 0x0\n");
}

/* A call from ring 0 into the user page's RET: returns, or faults under
 * SMEP (then resumes after it). */
static void kernel_call_user(void)
{
    cpu()->expect_kernel_fault = true;
    last.vector = ~0ul;
    kernel_call(user_at(user_ret), &cpu()->call_rsp_save);
    cpu()->expect_kernel_fault = false;
}

/* EFLAGS.AC with STAC and CLAC, or with POPF on KVM: the KVM here runs a
 * guest's ring 0 in the host's ring 3, where STAC traps and KVM's
 * instruction emulator cannot do it (the guest would stop with an
 * internal error).  Both set the same flag SMAP looks at. */
static void set_ac(bool on)
{
    if (rt_boot->flags & EMU_BOOT_BACKEND_EMULATOR) {
        if (on)
            __asm__ volatile("stac" ::: "memory");
        else
            __asm__ volatile("clac" ::: "memory");
        return;
    }
    uint64_t f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f));
    f = on ? f | RFLAGS_AC : f & ~RFLAGS_AC;
    __asm__ volatile("pushq %0; popfq" : : "r"(f) : "memory", "cc");
}

static void smep_smap_cases(void)
{
    if (!cpuid7_ebx(7) || !cpuid7_ebx(20)) {
        SAY("smep and smap: not offered\n");
        return;
    }
    uint64_t cr4 = read_cr4();
    kernel_call_user();
    CHECK(last.vector == ~0ul, "the call into a user page faulted without SMEP");
    write_cr4(cr4 | CR4_SMEP);
    kernel_call_user();
    CHECK(last.vector == 14 && (last.cs & 3) == 0, "SMEP: vector %lu", last.vector);
    expect_pf("smep: a call into a user page", user_at(user_ret), PF_P | PF_I);

    uint64_t v;
    write_cr4(cr4 | CR4_SMEP | CR4_SMAP);
    uint64_t r = rt_probe_read64(U_RW, &v);
    CHECK(r == ((1ul << 32) | PF_P), "smap: a read of a user page gave 0x%lx", r);
    r = rt_probe_write64(U_RW, 7);
    CHECK(r == ((1ul << 32) | PF_P | PF_W), "smap: a write of a user page gave 0x%lx", r);
    set_ac(true);
    r = rt_probe_read64(U_RW, &v);
    uint64_t w = rt_probe_write64(U_RW, 9);
    set_ac(false);
    CHECK(r == 0 && v == 0x5a5a5a5a5a5a5a5aul, "smap with AC: a read gave 0x%lx (0x%lx)", r, v);
    CHECK(w == 0, "smap with AC: a write gave 0x%lx", w); /* ring 3 reads it below */
    r = rt_probe_read64(U_RW, &v);
    CHECK(r == ((1ul << 32) | PF_P), "smap after CLAC: a read gave 0x%lx", r);
    SAY("smap: a user page read or written from ring 0: #PF 0x1, 0x3; with EFLAGS.AC: ok\n");

    /* Ring 3 is not bound by either. */
    ring3(U_RW, READ, 0);
    expect_passed("ring 3 under SMEP and SMAP");
    CHECK(last.rax == 9, "ring 3 read 0x%lx under SMAP", last.rax);
    write_cr4(cr4);
    kernel_call_user();
    CHECK(last.vector == ~0ul, "the call into a user page faulted after SMEP went off");
    SAY("ring 3 under SMEP and SMAP, and ring 0 after them: ok\n");
}

static inline uint64_t read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" :: "r"(v) : "memory"); }
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
#define CR0_WP (1ul << 16)
#define MSR_EFER 0xc0000080u
#define EFER_NXE (1ul << 11)

/* Ring 0's own rights: CR0.WP and EFER.NXE, written and written back. */
static void control_cases(void)
{
    uint64_t cr0 = read_cr0();
    CHECK(cr0 & CR0_WP, "CR0.WP clear at boot");
    uint64_t r = rt_probe_write64(K_RO, 5);
    CHECK(r == ((1ul << 32) | PF_P | PF_W), "a write to a read-only page under WP gave 0x%lx", r);
    write_cr0(cr0 & ~CR0_WP);
    r = rt_probe_write64(K_RO, 5);
    CHECK(r == 0 && *(volatile uint64_t *)K_RO == 5, "a write without WP gave 0x%lx", r);
    write_cr0(cr0);
    r = rt_probe_write64(K_RO, 6);
    CHECK(r == ((1ul << 32) | PF_P | PF_W) && *(volatile uint64_t *)K_RO == 5,
          "WP set again: a write gave 0x%lx", r);
    SAY("cr0.wp: a read-only page written from ring 0: #PF 0x3; with WP clear: ok\n");

    /* Without EFER.NXE bit 63 of an entry is reserved: the no-execute
     * pages fault on any access, with RSVD. */
    uint64_t efer = rdmsr(MSR_EFER);
    CHECK(efer & EFER_NXE, "EFER.NXE clear at boot");
    uint64_t v;
    wrmsr(MSR_EFER, efer & ~EFER_NXE);
    r = rt_probe_read64(K_RW, &v);
    wrmsr(MSR_EFER, efer);
    CHECK(r == ((1ul << 32) | PF_P | PF_RSVD), "a read with NXE clear gave 0x%lx", r);
    r = rt_probe_read64(K_RW, &v);
    CHECK(r == 0, "NXE set again: a read gave 0x%lx", r);
    SAY("efer.nxe clear: a read of a page with bit 63 set: #PF 0x9; set again: ok\n");
}

static volatile unsigned done;

/* Every case on this vCPU. */
static void run_cases(unsigned index)
{
    (void)index;
    cpu()->id = rt_vcpu_id();
    if (cpu()->id != 0)
        write_cr3(read_cr3()); /* the tables vCPU 0 widened */
    load_gdt_and_tss();
    ring3_cases();
    smep_smap_cases();
    control_cases();
    __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
}

int guest_main(void)
{
    rt_printf("user: ring 3 through a TSS, user pages in the window\n");
    build_gdt();
    map_pages();
    rt_set_handler(6, on_trap);
    rt_set_handler(13, on_trap);
    rt_set_handler(14, on_trap);
    rt_start_others(run_cases);
    run_cases(0);
    while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) != rt_nr_vcpus)
        cpu_relax();
    rt_printf("user: ok\n");
    return 0;
}
