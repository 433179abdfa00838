/* libFuzzer target for the reference emulator's CPU (tools/x86emu) running
 * on vmmu's instruction access layer, as `vmmu run` does.
 *
 * What it feeds: a header (CPL 0 or 3, eight general registers, RFLAGS,
 * CR0.WP/CR0.AM/CR4/EFER.NXE choices, rights and frames of the mapped pages, an
 * IDT gate to vary, an external interrupt to inject) and then guest code,
 * placed at TM_CODE.  Every header field is XORed with a sane default, so
 * an all-zero header is a kernel at CPL 0 with every page present.
 *
 * The machine is the x86emu unit tests' one (tests/x86emu/x86emu_test.h:
 * GDT, IDT with a HLT stub per vector, 64-bit TSS, the same linear
 * addresses), but memory is a vmmu vm reached through tools/emu/vmmu_mem.c,
 * the emulator's own memory callbacks, with real 4-level page tables:
 *
 *   guest-physical [0, 64 KiB)          16 frames: the pages the tests use
 *                  [64 KiB, 80 KiB)     PML4, PDPT, PD, PT (not mapped)
 *                  [80 KiB, 128 KiB)    RAM no page table maps (guard)
 *                  [128 KiB, +4 KiB)    MMIO (the device must only be
 *                                       reached inside the replay latch)
 *                  beyond               holes
 *
 * The top-level tables are shared between several slots, so the same 16
 * pages also appear just below the non-canonical hole and at the top of
 * the address space (accesses can cross the canonical boundary).  The
 * host memory has PROT_NONE guard pages on both sides.
 *
 * Checked after every instruction (one x86emu_step() at a time, with the
 * vmmu backend's unbracketed run and latched re-run):
 *  - no sanitizer report, no vb_fail() (vmmu refusing what the interpreter
 *    accepted, or an internal error), no #MC (a callback status the
 *    interpreter did not know), retries end within a few passes;
 *  - RIP is canonical, CPL == CS.RPL, RFLAGS bit 1 set and its reserved
 *    bits clear;
 *  - a step that returned "retry" changed no register (cpu.h);
 *  - a step that delivered an exception, and an injected external
 *    interrupt (internal.h: faults are precise, an instruction does its
 *    reads first and at most one write, last): every general register but
 *    RSP, the data segments, control registers, descriptor tables and MSRs
 *    are as before; the only write that succeeded is the exception frame
 *    at the new RSP, which holds the old RIP, CS, RFLAGS (RF set for an
 *    exception), RSP and SS (and the error code); RIP and CS are the
 *    gate's, from the IDT as the guest left it; IF is cleared by an
 *    interrupt gate; CR2 changes only with a #PF (not checked for #DF).
 *    REP string instructions commit each iteration (string.c) and are
 *    exempt;
 *  - a completed instruction other than a REP string made at most one
 *    write (internal.h);
 *  - memory: while the page tables are the fuzzer's own (CR3 unchanged, no
 *    page mapping a table), RAM no table maps is never written, table
 *    entries change only by A/D bits being set, and every byte of the
 *    mapped frames that changed was covered by a write the memory layer
 *    accepted.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmmu_backend.h"
/* The test machine's struct tm shares its name with <time.h>'s, which
 * vmmu_backend.h brings in: rename it here (same layout, same functions). */
#define tm x86emu_tm
#include "x86emu_test.h"
#undef tm

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NFRAMES 16u
#define RAM_SIZE 0x20000u
#define PT_BASE 0x10000u /* PML4, PDPT, PD, PT */
#define GUARD_BASE 0x14000u
#define MMIO_GPA 0x20000ull
#define HOLE_GPA 0x30000ull
#define BUDGET 64u

/* Linear pages of the test machine's layout, one frame each. */
static const uint64_t frame_va[NFRAMES] = {
    TM_GDT, TM_IDT, TM_TSS, TM_CODE, TM_CODE + 0x1000, TM_HANDLERS,
    TM_USER_STACK - 0x1000, TM_RSP0 - 0x1000, TM_IST1 - 0x1000, TM_STACK - 0x1000,
    TM_DATA, TM_DATA + 0x1000, 0x0, 0x1ff000, /* the last two: input-chosen */ 0x1fe000, 0x1fd000,
};

/* The input's header; every field is XORed with its default (zero = sane). */
struct header {
    uint64_t reg[8];     /* RAX, RCX, RDX, RBX, RBP, RSI, RDI, R8 */
    uint16_t reg_shape;  /* 2 bits per register: near a mapped page, raw, canonical edges */
    uint16_t rsp_adj;
    uint32_t rflags;     /* masked to the flags a guest can hold */
    uint8_t flags;       /* bit 0 CPL 3, 1 code near a page end, 2 NXE off, 3 WP off,
                          * 4 AM on (with RFLAGS.AC at CPL 3: #AC) */
    uint8_t cr4;         /* bit 0 PGE, 1 SMEP, 2 SMAP, 3 PCIDE, 4 FSGSBASE, 5 DE */
    uint8_t page[NFRAMES]; /* bit 0 not present, 1 read-only, 2 supervisor, 3 NX, 4 global,
                            * 5-6 frame: own, MMIO, hole, the PT itself */
    uint8_t extra_va[2];   /* linear page index of the last two frames */
    uint8_t gate_vec, gate_mod; /* mod bit 0 trap gate, 1 IST1, 2 DPL 3, 3 not present */
    uint8_t irq_step, irq_vec;  /* inject irq_vec before step irq_step (if IF allows) */
    uint8_t code_off;
    uint8_t bp[4];              /* DR0-DR3: bit 0 enabled, 1-2 R/W, 3-4 LEN, 5-7 the
                                 * register (reg[] order) whose value is the address */
};

/* One memory callback as the fuzzer saw it. */
struct logged {
    uint64_t va;
    uint32_t size;
    bool write, ok;
};

static struct {
    struct vmmu_vm *vm;
    struct vb_vcpu v;
    struct x86emu_tm tm;      /* the unit tests' machine: its image and CPU state */
    uint8_t *ram;             /* RAM_SIZE bytes between PROT_NONE guard pages */
    _Alignas(8) uint8_t image[RAM_SIZE]; /* RAM as the input started */
    uint8_t written[RAM_SIZE / 8]; /* bytes covered by an accepted write, one bit each */
    uint8_t guard[RAM_SIZE - GUARD_BASE]; /* what the unmapped RAM holds */
    struct logged log[64];
    unsigned nlog;
    bool fetched_rep; /* a fetch in this step returned a REP string instruction */
    bool own_tables;          /* the page tables are still the fuzzer's */
    uint32_t io_value;
} fz;

/* ---- callbacks -------------------------------------------------------------- */

int vb_fail(struct vb_vcpu *v, const char *what, int err)
{
    fprintf(stderr, "fuzz_x86emu: vb_fail at rip 0x%llx: %s: %s\n",
            (unsigned long long)v->cpu.rip, what, vmmu_strerror(err));
    abort();
}

static int mmio_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)size;
    if (!fz.v.in_latch)
        abort(); /* vmmu_mem.c: no device access outside the latch */
    *value = 0x0123456789abcdefull ^ offset;
    return 0;
}

static int mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    (void)value;
    if (!fz.v.in_latch)
        abort();
    return 0;
}

static const struct vmmu_mmio_ops mmio = {mmio_read, mmio_write};

static void log_access(const struct x86emu_access *a, bool write, int rc)
{
    if (fz.nlog < sizeof(fz.log) / sizeof(fz.log[0]))
        fz.log[fz.nlog] = (struct logged){a->va, a->size, write, rc == X86EMU_CB_OK};
    fz.nlog++;
}

static bool rep_string_bytes(const uint8_t *bytes, unsigned n, bool unreadable);

static int f_read(void *opaque, const struct x86emu_access *a, void *out, struct x86emu_fault *f)
{
    int rc = vb_mem_read(opaque, a, out, f);
    log_access(a, false, rc);
    /* What the CPU fetched, which a stale TLB entry may have taken from
     * other bytes than the fuzzer's tables now map at RIP. */
    if (rc == X86EMU_CB_OK && a->kind == X86EMU_ACCESS_FETCH &&
        rep_string_bytes(out, a->size, false))
        fz.fetched_rep = true;
    return rc;
}

static int f_write(void *opaque, const struct x86emu_access *a, const void *in,
                   struct x86emu_fault *f)
{
    int rc = vb_mem_write(opaque, a, in, f);
    log_access(a, true, rc);
    return rc;
}

/* INS's check of its destination writes nothing: logged as a read. */
static int f_write_check(void *opaque, const struct x86emu_access *a, struct x86emu_fault *f)
{
    int rc = vb_mem_write_check(opaque, a, f);
    log_access(a, false, rc);
    return rc;
}

static int f_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
                     const void *desired, void *observed, struct x86emu_fault *f)
{
    int rc = vb_mem_cmpxchg(opaque, a, expected, desired, observed, f);
    /* A compare that failed stored nothing: it is a read.  (A locked
     * update retries then, e.g. when its own walk set the D bit of the
     * page-table entry it updates.) */
    bool stored = rc != X86EMU_CB_OK || !memcmp(expected, observed, a->size);
    log_access(a, stored, rc);
    return rc;
}

/* The machine's port I/O: a port that reads back the input's value. */
static int hook_io_in(void *opaque, uint16_t port, unsigned size, uint32_t *value)
{
    (void)opaque;
    (void)port;
    (void)size;
    *value = fz.io_value;
    return X86EMU_CB_OK;
}

static int hook_io_out(void *opaque, uint16_t port, unsigned size, uint32_t value)
{
    (void)opaque;
    (void)port;
    (void)size;
    (void)value;
    return X86EMU_CB_OK;
}

/* ---- setup -------------------------------------------------------------------- */

static void setup_once(void)
{
    if (fz.vm)
        return;
    uint8_t *area = mmap(NULL, RAM_SIZE + 2 * 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED || mprotect(area, 4096, PROT_NONE) ||
        mprotect(area + 4096 + RAM_SIZE, 4096, PROT_NONE))
        abort();
    fz.ram = area + 4096;
    struct vmmu_vm_config vc = {.gpa_bits = 40, .name = "fuzz_x86emu"};
    if (vmmu_vm_create(&vc, &fz.vm) != 0)
        abort();
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE, .host = fz.ram};
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                 .mmio = &mmio};
    if (vmmu_region_add(fz.vm, &r, NULL) || vmmu_region_add(fz.vm, &m, NULL))
        abort();
    /* The vmmu backend's CPU model. */
    struct vmmu_x86_cpu model = {
        .vendor = VMMU_X86_VENDOR_INTEL,
        .features = VMMU_X86_FEAT_NX | VMMU_X86_FEAT_LM | VMMU_X86_FEAT_PCID |
                    VMMU_X86_FEAT_SMEP | VMMU_X86_FEAT_SMAP,
        .maxphyaddr = VB_MAXPHYADDR,
    };
    if (vmmu_vcpu_create(fz.vm, &model, &fz.v.vcpu) != 0 || vmmu_vcpu_online(fz.v.vcpu) != 0)
        abort();
    fz.v.env = (struct x86emu_env){
        .opaque = &fz.v, .read = f_read, .write = f_write, .cmpxchg = f_cmpxchg,
        .write_check = f_write_check, .io_in = hook_io_in, .io_out = hook_io_out,
        .cr_write = vb_hook_cr_write,
        .invlpg = vb_hook_invlpg, .invpcid = vb_hook_invpcid, .msr_write = vb_hook_msr_write,
        .cpuid = vb_hook_cpuid,
    };
    tm_init(&fz.tm);
    for (unsigned i = 0; i < sizeof(fz.guard); i++)
        fz.guard[i] = (uint8_t)(i * 7 + 1);
}

static void put64(uint64_t gpa, uint64_t v)
{
    memcpy(fz.ram + gpa, &v, 8);
}

static uint64_t get64(uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, fz.ram + gpa, 8);
    return v;
}

/* The fuzzer's own walk of its tables (rights ignored): the guest-physical
 * address of va, or ~0 when a level is not present or not RAM. */
static uint64_t lin2phys(uint64_t va)
{
    uint64_t table = PT_BASE;
    for (int level = 3; level >= 0; level--) {
        uint64_t e = get64(table + ((va >> (12 + 9 * level)) & 511) * 8);
        uint64_t next = e & 0x000ffffffffff000ull;
        if (!(e & 1) || (level > 0 && (e & 0x80)))
            return ~0ull;
        if (level == 0)
            return next < RAM_SIZE ? next + (va & 4095) : ~0ull;
        if (next + 4096 > RAM_SIZE)
            return ~0ull;
        table = next;
    }
    return ~0ull;
}

/* Read n bytes of guest-linear memory through the fuzzer's tables. */
static bool lin_read(uint64_t va, void *out, unsigned n)
{
    uint8_t *o = out;
    for (unsigned i = 0; i < n; i++) {
        uint64_t pa = lin2phys(va + i);
        if (pa == ~0ull)
            return false;
        o[i] = fz.ram[pa];
    }
    return true;
}

static uint64_t shape(uint64_t v, unsigned how)
{
    switch (how & 3) {
    case 0: /* inside one of the mapped pages */
        return frame_va[v % NFRAMES] + ((v >> 8) & 0xfff);
    case 1:
        return v;
    case 2: /* around the top of the lower canonical half */
        return 0x00007ffffffff000ull + (v & 0x1fff) - 0x800;
    default: /* just below 2^64, or a small negative number */
        return (uint64_t)0 - (v & 0x1fff);
    }
}

/* Build RAM from the header: the frames, the page tables, the gate to vary. */
static void build(const struct header *h)
{
    memset(fz.ram, 0, RAM_SIZE);
    for (unsigned i = 0; i < NFRAMES; i++) {
        uint64_t va = frame_va[i];
        if (i >= NFRAMES - 2)
            va = (uint64_t)(h->extra_va[i - (NFRAMES - 2)] ^ (0x1fe - (i - (NFRAMES - 2)))) << 12;
        if (va + 4096 <= TM_MEM_SIZE)
            memcpy(fz.ram + i * 4096ull, fz.tm.mem + va, 4096);
    }
    memset(fz.ram + 3 * 4096, 0xf4, 2 * 4096); /* code pages: HLT after the input's code */
    memcpy(fz.ram + GUARD_BASE, fz.guard, RAM_SIZE - GUARD_BASE);

    /* Tables: PML4 slots 0, 255, 256, 511 -> PDPT; PDPT 0, 511 -> PD; PD 0, 511 -> PT. */
    const uint64_t tab = 0x7; /* P, RW, US */
    put64(PT_BASE + 0 * 8, (PT_BASE + 0x1000) | tab);
    put64(PT_BASE + 255 * 8, (PT_BASE + 0x1000) | tab);
    put64(PT_BASE + 256 * 8, (PT_BASE + 0x1000) | tab);
    put64(PT_BASE + 511 * 8, (PT_BASE + 0x1000) | tab);
    put64(PT_BASE + 0x1000 + 0 * 8, (PT_BASE + 0x2000) | tab);
    put64(PT_BASE + 0x1000 + 511 * 8, (PT_BASE + 0x2000) | tab);
    put64(PT_BASE + 0x2000 + 0 * 8, (PT_BASE + 0x3000) | tab);
    put64(PT_BASE + 0x2000 + 511 * 8, (PT_BASE + 0x3000) | tab);
    fz.own_tables = true;
    for (unsigned i = 0; i < NFRAMES; i++) {
        uint64_t va = frame_va[i];
        if (i >= NFRAMES - 2)
            va = (uint64_t)(h->extra_va[i - (NFRAMES - 2)] ^ (0x1fe - (i - (NFRAMES - 2)))) << 12;
        unsigned p = h->page[i];
        uint64_t frame = i * 4096ull;
        switch ((p >> 5) & 3) {
        case 1: frame = MMIO_GPA; break;
        case 2: frame = HOLE_GPA; break;
        case 3: frame = PT_BASE + 0x3000; fz.own_tables = false; break;
        default: break;
        }
        uint64_t e = frame | 1 | 2 | 4;
        if (p & 1)
            e &= ~1ull;
        if (p & 2)
            e &= ~2ull;
        if (p & 4)
            e &= ~4ull;
        if (p & 8)
            e |= 1ull << 63;
        if (p & 16)
            e |= 1ull << 8;
        put64(PT_BASE + 0x3000 + ((va >> 12) & 511) * 8, e);
    }
    /* A gate to vary (in the IDT frame, linear TM_IDT). */
    uint64_t gate = 1 * 4096ull + 16ull * h->gate_vec, lo = get64(gate);
    if (h->gate_mod & 1)
        lo |= 1ull << 40; /* type 0xf */
    if (h->gate_mod & 2)
        lo |= 1ull << 32; /* IST1 */
    if (h->gate_mod & 4)
        lo |= 3ull << 45;
    if (h->gate_mod & 8)
        lo &= ~(1ull << 47);
    put64(gate, lo);
}

/* ---- checks ----------------------------------------------------------------------- */

static bool is_canonical(uint64_t va)
{
    return (uint64_t)((int64_t)(va << 16) >> 16) == va;
}

static bool same_seg(const struct x86emu_segment *a, const struct x86emu_segment *b)
{
    return a->selector == b->selector && a->attr == b->attr && a->limit == b->limit &&
           a->base == b->base;
}

static void fail(const char *why, const struct x86emu_cpu *pre)
{
    fprintf(stderr, "fuzz_x86emu: %s (instruction at 0x%llx, vector %u); its accesses:\n", why,
            (unsigned long long)pre->rip, fz.v.cpu.last_exception.vector);
    for (unsigned i = 0; i < fz.nlog && i < sizeof(fz.log) / sizeof(fz.log[0]); i++)
        fprintf(stderr, "  %s 0x%llx, %u bytes%s\n", fz.log[i].write ? "write" : "read",
                (unsigned long long)fz.log[i].va, fz.log[i].size, fz.log[i].ok ? "" : " (refused)");
    abort();
}

/* The first address above the lower canonical half (4-level paging: the
 * fuzzer never sets CR4.LA57). */
#define LOWER_HALF_END (1ull << 47)

static void check_always(const struct x86emu_cpu *c, const struct x86emu_cpu *pre)
{
    /* RIP stays canonical, but for one case the CPU allows too: an
     * instruction that ends at the top of the lower half completes and
     * leaves RIP just past it (a SYSCALL there hands the kernel that RIP
     * in RCX); the next fetch then raises #GP(0) (checked in the loop). */
    bool at_edge = c->rip == LOWER_HALF_END && pre->rip < c->rip && c->rip - pre->rip <= 15 &&
                   !c->last_exception.valid;
    if (!is_canonical(c->rip) && !at_edge)
        fail("RIP is not canonical", pre);
    if (c->cpl > 3 || c->cpl != (c->seg[X86EMU_CS].selector & 3))
        fail("CPL is not CS.RPL", pre);
    if (!(c->rflags & X86EMU_FLAG_FIXED) || (c->rflags & ~0x3f7fd7ull) || (c->rflags & X86EMU_FLAG_VM))
        fail("RFLAGS has reserved bits wrong", pre);
    if (c->last_exception.valid && c->last_exception.vector == X86EMU_EXC_MC)
        fail("#MC: the interpreter saw a callback status it does not know", pre);
}

/* Whether these bytes start a REP string instruction (commits per iteration);
 * `unreadable` is the answer when they do not decode. */
static bool rep_string_bytes(const uint8_t *bytes, unsigned n, bool unreadable)
{
    ZydisDecoder d;
    ZydisDecodedInstruction insn;
    ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&d, NULL, bytes, n, &insn)))
        return unreadable;
    /* INS and OUTS are Zydis's "I/O string" category. */
    return (insn.meta.category == ZYDIS_CATEGORY_STRINGOP ||
            insn.meta.category == ZYDIS_CATEGORY_IOSTRINGOP) &&
           (insn.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE |
                               ZYDIS_ATTRIB_HAS_REPNE));
}

/* Whether the instruction at rip, through the fuzzer's tables, is one. */
static bool rep_string_at(uint64_t rip)
{
    uint8_t bytes[15];
    unsigned n = 0;
    while (n < sizeof(bytes) && lin2phys(rip + n) != ~0ull) {
        bytes[n] = fz.ram[lin2phys(rip + n)];
        n++;
    }
    return rep_string_bytes(bytes, n, true); /* not readable here: do not judge it */
}

static bool same_outside(const struct x86emu_cpu *a, const struct x86emu_cpu *b, bool rsp)
{
    for (unsigned i = 0; i < 16; i++)
        if ((i != X86EMU_RSP || rsp) && a->gpr[i] != b->gpr[i])
            return false;
    for (unsigned s = 0; s < 6; s++)
        if (s != X86EMU_CS && s != X86EMU_SS && !same_seg(&a->seg[s], &b->seg[s]))
            return false;
    return a->cr0 == b->cr0 && a->cr3 == b->cr3 && a->cr4 == b->cr4 && a->cr8 == b->cr8 &&
           a->efer == b->efer && a->kernel_gs_base == b->kernel_gs_base &&
           a->star == b->star && a->lstar == b->lstar && a->cstar == b->cstar &&
           a->sfmask == b->sfmask && a->tsc_aux == b->tsc_aux &&
           a->gdtr.base == b->gdtr.base && a->gdtr.limit == b->gdtr.limit &&
           a->idtr.base == b->idtr.base && a->idtr.limit == b->idtr.limit &&
           same_seg(&a->ldtr, &b->ldtr) && same_seg(&a->tr, &b->tr);
}

/* An enabled instruction breakpoint (DR7 R/W 00) at the CPU's RIP, which
 * fires unless RFLAGS.RF is set. */
static bool insn_breakpoint(const struct x86emu_cpu *cpu)
{
    for (unsigned i = 0; i < 4; i++)
        if (((cpu->dr[7] >> (2 * i)) & 3) && !((cpu->dr[7] >> (16 + 4 * i)) & 3) &&
            cpu->dr[i] == cpu->rip)
            return !(cpu->rflags & X86EMU_FLAG_RF);
    return false;
}

/* A step that delivered event e (an exception, or an external interrupt
 * when !exception): the instruction changed nothing, the frame holds the
 * state before it, and the CPU went to the gate's handler.  A #DB owed by
 * the previous instruction (single step, data breakpoint) is a step of its
 * own, a trap, and an instruction breakpoint's #DB keeps RF as it is: their
 * frames hold RFLAGS as they are (no RF forced in). */
static void check_delivery(const struct x86emu_cpu *pre, const struct x86emu_cpu *c,
                           const struct x86emu_event *e, bool exception)
{
    bool fault = exception && !(e->vector == X86EMU_EXC_DB &&
                                (pre->db_pending || insn_breakpoint(pre)));
    if (!same_outside(pre, c, false))
        fail("an event's delivery changed registers it must not", pre);
    if (e->vector == X86EMU_EXC_PF && exception && c->cr2 != e->cr2)
        fail("#PF without CR2", pre);
    if ((e->vector != X86EMU_EXC_PF || !exception) && e->vector != X86EMU_EXC_DF &&
        c->cr2 != pre->cr2)
        fail("CR2 changed without #PF", pre);
    if (c->halted)
        fail("halted after an exception", pre);
    unsigned writes = 0;
    const struct logged *frame = NULL;
    for (unsigned i = 0; i < fz.nlog && i < 64; i++)
        if (fz.log[i].write && fz.log[i].ok) {
            writes++;
            frame = &fz.log[i];
        }
    if (fz.nlog > 64)
        return;
    unsigned n = e->has_error_code ? 6 : 5;
    if (writes != 1 || frame->va != c->gpr[X86EMU_RSP] || frame->size != 8 * n)
        fail("a faulting instruction wrote memory (or no frame)", pre);
    if (!fz.own_tables)
        return;
    uint64_t f[6];
    if (!lin_read(frame->va, f, 8 * n))
        return; /* the frame went to the device or a hole */
    const uint64_t *g = f + (n - 5);
    if (g[0] != pre->rip || g[1] != pre->seg[X86EMU_CS].selector ||
        g[2] != (pre->rflags | (fault ? X86EMU_FLAG_RF : 0)) ||
        g[3] != pre->gpr[X86EMU_RSP] ||
        g[4] != pre->seg[X86EMU_SS].selector)
        fail("the exception frame does not hold the state before the instruction", pre);
    if (n == 6 && f[0] != e->error_code)
        fail("the frame's error code is not the exception's", pre);
    /* The handler: the gate of the vector delivered, in the IDT as it is now. */
    uint8_t gate[16];
    uint64_t gva = c->idtr.base + 16ull * e->vector;
    if (gva + 16 > frame->va && gva < frame->va + frame->size)
        return; /* the frame overwrote the gate */
    if (!lin_read(gva, gate, 16))
        return;
    uint64_t lo, hi;
    memcpy(&lo, gate, 8);
    memcpy(&hi, gate + 8, 8);
    uint64_t target = (lo & 0xffff) | (((lo >> 48) & 0xffff) << 16) | (hi << 32);
    if (c->rip != target || (c->seg[X86EMU_CS].selector & ~3) != ((lo >> 16) & 0xfffc))
        fail("the exception did not go to its IDT handler", pre);
    uint64_t want = pre->rflags & ~(X86EMU_FLAG_TF | X86EMU_FLAG_NT | X86EMU_FLAG_RF);
    if (((lo >> 40) & 0xf) == 0xe)
        want &= ~X86EMU_FLAG_IF;
    if (c->rflags != want)
        fail("RFLAGS after delivery", pre);
}

static void mark_writes(void)
{
    for (unsigned i = 0; i < fz.nlog && i < 64; i++) {
        const struct logged *l = &fz.log[i];
        if (!l->write || !l->ok)
            continue;
        for (uint32_t b = 0; b < l->size; b++) {
            uint64_t pa = lin2phys(l->va + b);
            if (pa < RAM_SIZE)
                fz.written[pa / 8] |= (uint8_t)(1u << (pa % 8));
        }
    }
    if (fz.nlog > 64)
        fz.own_tables = false; /* lost track: stop judging memory */
}

/* RAM against the image: guard untouched, tables only gained A/D, frames only where written. */
static void check_memory(void)
{
    /* Compare whole ranges first: byte loops are slow under coverage. */
    if (memcmp(fz.ram + GUARD_BASE, fz.image + GUARD_BASE, RAM_SIZE - GUARD_BASE))
        fail("RAM no page table maps was written", &fz.v.cpu);
    const uint64_t *old_e = (const uint64_t *)(const void *)(fz.image + PT_BASE);
    const uint64_t *now_e = (const uint64_t *)(const void *)(fz.ram + PT_BASE);
    for (unsigned i = 0; i < (GUARD_BASE - PT_BASE) / 8; i++) {
        uint64_t old = old_e[i], now = now_e[i];
        if (((old ^ now) & ~0x60ull) || (old & ~now))
            fail("a page-table entry changed beyond its A/D bits", &fz.v.cpu);
    }
    for (unsigned p = 0; p < PT_BASE; p += 4096) {
        if (!memcmp(fz.ram + p, fz.image + p, 4096))
            continue;
        for (unsigned i = p; i < p + 4096; i++)
            if (fz.ram[i] != fz.image[i] && !(fz.written[i / 8] & (1u << (i % 8))))
                fail("a byte changed that no accepted write covered", &fz.v.cpu);
    }
}

/* ---- the run -------------------------------------------------------------------------- */

/* One instruction the way the vmmu backend runs it (run_block).  A REP in
 * the latch makes one iteration per pass: passes that completed one
 * (RCX moved) do not count towards the limit, and after 64 of them the
 * run ends there, as a block's budget would.  *rep becomes true when a
 * fetch of the step returned a REP string instruction. */
static int step(const struct x86emu_cpu *pre, bool *rep_io)
{
    unsigned iterations = 0;
    bool rep = *rep_io;
    for (unsigned pass = 0;; pass++) {
        if (pass >= 4)
            fail("an instruction retried without end", pre);
        uint64_t rcx = fz.v.cpu.gpr[X86EMU_RCX];
        bool latched = fz.v.latched_next;
        fz.v.latched_next = false;
        fz.v.pending = false;
        fz.nlog = 0;
        if (latched) {
            if (vmmu_insn_begin(fz.v.vcpu) != 0)
                abort();
            fz.v.in_latch = true;
        }
        fz.fetched_rep = false;
        int rc = x86emu_step(&fz.v.cpu, &fz.v.env, 1);
        rep = *rep_io = rep || fz.fetched_rep;
        if (latched) {
            if (vmmu_insn_end(fz.v.vcpu, 0) != 0)
                abort();
            fz.v.in_latch = false;
        }
        if (fz.v.pending)
            abort(); /* no device model here */
        if (fz.own_tables)
            mark_writes();
        if (rc != X86EMU_EXIT_RETRY)
            return rc;
        if (rep && fz.v.cpu.gpr[X86EMU_RCX] != rcx) {
            if (++iterations == 64)
                return rc;
            pass = 0; /* an iteration done */
        }
        if (!rep && (!same_outside(pre, &fz.v.cpu, true) || fz.v.cpu.rip != pre->rip ||
                     fz.v.cpu.rflags != pre->rflags || fz.v.cpu.cpl != pre->cpl))
            fail("a retried instruction changed registers", pre);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();

    struct header h;
    memset(&h, 0, sizeof(h));
    size_t hs = size < sizeof(h) ? size : sizeof(h);
    memcpy(&h, data, hs);
    build(&h);

    /* The code, at TM_CODE or ending near the first code page's end. */
    size_t ncode = size - hs;
    uint64_t rip = TM_CODE;
    if (h.flags & 2)
        rip = TM_CODE + 0x1000 - 1 - (h.code_off & 15);
    else
        rip = TM_CODE + (h.code_off & 0x3f);
    size_t room = TM_CODE + 0x2000 - rip;
    if (ncode > room)
        ncode = room;
    memcpy(fz.ram + 3 * 4096 + (rip - TM_CODE), data + hs, ncode);

    /* CPU: the test machine's, then the header's choices. */
    struct x86emu_cpu *c = &fz.v.cpu;
    fz.tm.cpu.cpl = 0;
    struct x86emu_tm saved = fz.tm;
    if (h.flags & 1)
        tm_enter_user(&fz.tm, rip, TM_USER_STACK);
    *c = fz.tm.cpu;
    fz.tm = saved;
    static const unsigned gpr_of[8] = {X86EMU_RAX, X86EMU_RCX, X86EMU_RDX, X86EMU_RBX,
                                       X86EMU_RBP, X86EMU_RSI, X86EMU_RDI, X86EMU_R8};
    for (unsigned i = 0; i < 8; i++)
        c->gpr[gpr_of[i]] = shape(h.reg[i], h.reg_shape >> (2 * i));
    c->rip = rip;
    c->gpr[X86EMU_RSP] = ((h.flags & 1) ? TM_USER_STACK : TM_STACK) - (h.rsp_adj & 0x1fff);
    c->rflags = X86EMU_FLAG_FIXED |
                (h.rflags & (X86EMU_FLAGS_ARITH | X86EMU_FLAG_IF | X86EMU_FLAG_DF |
                             X86EMU_FLAG_IOPL | X86EMU_FLAG_AC | X86EMU_FLAG_ID));
    c->cr3 = PT_BASE;
    if (h.flags & 4)
        c->efer &= ~X86EMU_EFER_NXE;
    if (h.flags & 8)
        c->cr0 &= ~X86EMU_CR0_WP;
    if (h.flags & 16)
        c->cr0 |= X86EMU_CR0_AM;
    if (h.cr4 & 1)
        c->cr4 |= X86EMU_CR4_PGE;
    if (h.cr4 & 2)
        c->cr4 |= X86EMU_CR4_SMEP;
    if (h.cr4 & 4)
        c->cr4 |= X86EMU_CR4_SMAP;
    if (h.cr4 & 8)
        c->cr4 |= X86EMU_CR4_PCIDE;
    if (h.cr4 & 16)
        c->cr4 |= X86EMU_CR4_FSGSBASE;
    if (h.cr4 & 32)
        c->cr4 |= X86EMU_CR4_DE;
    c->dr[7] = 0;
    for (unsigned i = 0; i < 4; i++) {
        c->dr[i] = c->gpr[gpr_of[h.bp[i] >> 5]];
        c->dr[7] |= (uint64_t)(h.bp[i] & 1) << (2 * i);
        c->dr[7] |= (uint64_t)((h.bp[i] >> 1) & 0xf) << (16 + 4 * i);
    }
    fz.io_value = (uint32_t)h.reg[7];

    struct vmmu_x86_regs regs = {.cr0 = c->cr0, .cr3 = c->cr3, .cr4 = c->cr4, .efer = c->efer,
                                 .rflags = c->rflags, .cpl = c->cpl};
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    if (vmmu_vcpu_safepoint(fz.v.vcpu) != 0 || vmmu_vcpu_set_state(fz.v.vcpu, &regs) != 0 ||
        vmmu_flush_local(fz.v.vcpu, &all) != 0)
        abort();
    fz.v.latched_next = false;
    memcpy(fz.image, fz.ram, RAM_SIZE);
    memset(fz.written, 0, sizeof(fz.written));

    for (unsigned n = 0; n < BUDGET; n++) {
        struct x86emu_cpu pre = *c;
        if (n == h.irq_step && h.irq_vec >= 32 && x86emu_interrupts_enabled(c)) {
            c->last_exception.valid = false;
            pre = *c;
            fz.nlog = 0;
            vmmu_insn_begin(fz.v.vcpu);
            fz.v.in_latch = true;
            int rc = x86emu_interrupt(c, &fz.v.env, h.irq_vec);
            fz.v.in_latch = false;
            vmmu_insn_end(fz.v.vcpu, 0);
            if (fz.own_tables)
                mark_writes();
            check_always(c, &pre);
            if (rc == X86EMU_EXIT_SHUTDOWN)
                break;
            if (rc != X86EMU_EXIT_BUDGET)
                fail("an interrupt was neither delivered nor a triple fault", &pre);
            struct x86emu_event irq = {.valid = true, .vector = h.irq_vec};
            if (c->last_exception.valid)
                check_delivery(&pre, c, &c->last_exception, true); /* delivering it faulted */
            else
                check_delivery(&pre, c, &irq, false);
            pre = *c;
        }
        bool rep = rep_string_at(c->rip);
        c->last_exception.valid = false;
        int rc = step(&pre, &rep);
        check_always(c, &pre);
        if (!is_canonical(pre.rip) && rc != X86EMU_EXIT_SHUTDOWN &&
            !(c->last_exception.valid && c->last_exception.vector == X86EMU_EXC_GP))
            fail("a fetch at a non-canonical RIP did not raise #GP", &pre);
        if (c->last_exception.valid && !rep && rc != X86EMU_EXIT_SHUTDOWN)
            check_delivery(&pre, c, &c->last_exception, true);
        if (!c->last_exception.valid && !rep && rc != X86EMU_EXIT_SHUTDOWN) {
            unsigned writes = 0;
            for (unsigned i = 0; i < fz.nlog && i < 64; i++)
                writes += fz.log[i].write;
            if (writes > 1)
                fail("an instruction made more than one write", &pre);
        }
        if (fz.own_tables && c->cr3 != PT_BASE) {
            check_memory();
            fz.own_tables = false; /* the guest's own tables from here on */
        }
        if (rc != X86EMU_EXIT_BUDGET)
            break;
    }
    if (fz.own_tables)
        check_memory();
    return 0;
}
