/* SPDX-License-Identifier: MIT */
/* The reference emulator's memory callbacks (tools/emu/vmmu_mem.c) on a
 * small vm: one behaviour per test, calling the callbacks as the
 * interpreter does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "vmmu_backend.h"

#define RAM_SIZE 0x10000u
#define MMIO_GPA 0x20000ull
#define PML4 0x1000u /* PDPT, PD, PT follow */
#define STACK_VA 0x7f000ull /* mapped to the MMIO page */

struct env {
    struct vmmu_vm *vm;
    struct vb_vcpu v;
    uint8_t *ram;
    unsigned mmio_reads, mmio_writes;
};

static struct env *cur;

int vb_fail(struct vb_vcpu *v, const char *what, int err)
{
    (void)v;
    fail_msg("vb_fail: %s: %s", what, vmmu_strerror(err));
    return X86EMU_CB_RETRY;
}

static int mmio_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    cur->mmio_reads++;
    *value = 0x5a5a5a5a5a5a5a5aull;
    return 0;
}

static int mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    (void)value;
    cur->mmio_writes++;
    return 0;
}

static const struct vmmu_mmio_ops mmio = {mmio_read, mmio_write};

static void put64(struct env *e, uint64_t gpa, uint64_t v)
{
    memcpy(e->ram + gpa, &v, 8);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    e->ram = aligned_alloc(4096, RAM_SIZE);
    memset(e->ram, 0, RAM_SIZE);
    struct vmmu_vm_config vc = {.gpa_bits = 40};
    if (vmmu_vm_create(&vc, &e->vm))
        return -1;
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE, .host = e->ram};
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                 .mmio = &mmio};
    if (vmmu_region_add(e->vm, &r, NULL) || vmmu_region_add(e->vm, &m, NULL))
        return -1;
    /* 4-level tables: STACK_VA -> the MMIO page, everything else absent. */
    put64(e, PML4, (PML4 + 0x1000) | 7);
    put64(e, PML4 + 0x1000, (PML4 + 0x2000) | 7);
    put64(e, PML4 + 0x2000, (PML4 + 0x3000) | 7);
    put64(e, PML4 + 0x3000 + ((STACK_VA >> 12) & 511) * 8, MMIO_GPA | 7);
    struct vmmu_x86_cpu model = {.vendor = VMMU_X86_VENDOR_INTEL,
                                 .features = VMMU_X86_FEAT_NX | VMMU_X86_FEAT_LM,
                                 .maxphyaddr = VB_MAXPHYADDR};
    struct x86emu_cpu c;
    x86emu_cpu_init_long_mode(&c);
    struct vmmu_x86_regs regs = {.cr0 = c.cr0, .cr3 = PML4, .cr4 = c.cr4, .efer = c.efer,
                                 .rflags = c.rflags};
    if (vmmu_vcpu_create(e->vm, &model, &e->v.vcpu) || vmmu_vcpu_online(e->v.vcpu) ||
        vmmu_vcpu_set_state(e->v.vcpu, &regs))
        return -1;
    cur = e;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    vmmu_vcpu_offline(e->v.vcpu);
    vmmu_vcpu_destroy(e->v.vcpu);
    vmmu_vm_destroy(e->vm);
    free(e->ram);
    free(e);
    return 0;
}

static struct x86emu_access data_access(uint64_t va, uint32_t size)
{
    return (struct x86emu_access){.va = va, .size = size, .kind = X86EMU_ACCESS_DATA};
}

/* Leave a TLB entry for the MMIO page (flagged, so every access takes the
 * slow path): the first, unbracketed pass of an 8-byte store fills it and
 * sends the instruction to the latch, where the device sees the store. */
static void fill_tlb_with_the_mmio_page(struct env *e)
{
    struct x86emu_access a = data_access(STACK_VA + 0xf60, 8);
    struct x86emu_fault f;
    uint64_t v = 1;
    assert_int_equal(vb_mem_write(&e->v, &a, &v, &f), X86EMU_CB_RETRY);
    assert_true(e->v.latched_next);
    e->v.latched_next = false;
    assert_int_equal(vmmu_insn_begin(e->v.vcpu), 0);
    e->v.in_latch = true;
    assert_int_equal(vb_mem_write(&e->v, &a, &v, &f), X86EMU_CB_OK);
    e->v.in_latch = false;
    assert_int_equal(vmmu_insn_end(e->v.vcpu, 0), 0);
    assert_int_equal(e->mmio_writes, 1);
}

/* An exception frame with an error code is one 48-byte write.  The TLB's
 * hit path takes sizes up to 16 only: asked about 48 bytes it compares
 * bit 5 of the address in place of the MMIO flag, so at 0x...f60 it used
 * to "hit" the device page and store to a host address made of the guest
 * address.  It must go to the latch like any device access. */
static void exception_frame_write_to_a_device_page_goes_to_the_latch(void **state)
{
    struct env *e = *state;
    fill_tlb_with_the_mmio_page(e);
    uint8_t frame[48] = {0};
    struct x86emu_access a = data_access(STACK_VA + 0xf60, sizeof(frame));
    struct x86emu_fault f;
    assert_int_equal(vb_mem_write(&e->v, &a, frame, &f), X86EMU_CB_RETRY);
    assert_true(e->v.latched_next);
}

/* The same for a read larger than 16 bytes (IRETQ reads its 40-byte frame). */
static void large_read_from_a_device_page_goes_to_the_latch(void **state)
{
    struct env *e = *state;
    fill_tlb_with_the_mmio_page(e);
    uint8_t frame[40];
    struct x86emu_access a = data_access(STACK_VA + 0xf60, sizeof(frame));
    struct x86emu_fault f;
    assert_int_equal(vb_mem_read(&e->v, &a, frame, &f), X86EMU_CB_RETRY);
    assert_true(e->v.latched_next);
    assert_int_equal(e->mmio_reads, 0);
}

/* A latched REP from a device page: once an iteration of this execution
 * completed, the next one is not started (the device is not read again
 * nor written); the instruction runs on in the latch at once, where that
 * iteration is the first, so a device access of it that pends is the
 * only thing its re-execution replays.  Outside REP, or in the first
 * iteration, accesses go ahead. */
static void a_latched_rep_runs_one_iteration_per_execution(void **state)
{
    struct env *e = *state;
    struct x86emu_access a = data_access(STACK_VA + 0x10, 1);
    struct x86emu_fault f;
    uint8_t b = 0;
    assert_int_equal(vmmu_insn_begin(e->v.vcpu), 0);
    e->v.in_latch = true;
    assert_int_equal(vb_mem_read(&e->v, &a, &b, &f), X86EMU_CB_OK); /* iteration 0 */
    assert_int_equal(vb_mem_write(&e->v, &a, &b, &f), X86EMU_CB_OK);
    a.va++;
    a.rep_done = 1;
    assert_int_equal(vb_mem_read(&e->v, &a, &b, &f), X86EMU_CB_RETRY);
    assert_true(e->v.latched_next);
    assert_false(e->v.pending);
    e->v.latched_next = false;
    assert_int_equal(vb_mem_write(&e->v, &a, &b, &f), X86EMU_CB_RETRY); /* REP STOS */
    assert_true(e->v.latched_next);
    e->v.in_latch = false;
    assert_int_equal(vmmu_insn_end(e->v.vcpu, 0), 0);
    assert_int_equal(e->mmio_reads, 1);
    assert_int_equal(e->mmio_writes, 1);
}

/* MOV to CR3 with a bit at or above the walker's MAXPHYADDR (40) but below
 * the 48 the interpreter used to assume: the interpreter raises #GP(0)
 * itself, as the CPUID it reports says, instead of passing the value to
 * vmmu, which refused it and stopped the machine (vb_fail).  With no IDT
 * the #GP ends in a triple fault. */
static void cr3_above_the_walkers_maxphyaddr_is_gp_in_the_interpreter(void **state)
{
    struct env *e = *state;
    const uint64_t code = 0x8000;
    put64(e, PML4 + 0x3000 + ((code >> 12) & 511) * 8, code | 7);
    const uint8_t insn[] = {0x48, 0xb8, 0, 0, 0, 0, 0, 0x10, 0, 0, /* mov $1<<44, %rax */
                            0x0f, 0x22, 0xd8 /* mov %rax, %cr3 */};
    memcpy(e->ram + code, insn, sizeof(insn));
    e->v.env = (struct x86emu_env){.opaque = &e->v, .read = vb_mem_read, .write = vb_mem_write,
                                   .cmpxchg = vb_mem_cmpxchg, .cr_write = vb_hook_cr_write,
                                   .cpuid = vb_hook_cpuid};
    x86emu_cpu_init_long_mode(&e->v.cpu);
    e->v.cpu.cr3 = PML4;
    e->v.cpu.rip = code;
    uint32_t out[4];
    vb_hook_cpuid(&e->v, 0x80000008, 0, out);
    assert_int_equal(out[0] & 0xff, VB_MAXPHYADDR);
    assert_int_equal(x86emu_step(&e->v.cpu, &e->v.env, 1), X86EMU_EXIT_BUDGET);
    assert_int_equal(e->v.cpu.gpr[X86EMU_RAX], 1ull << 44);
    assert_int_equal(x86emu_step(&e->v.cpu, &e->v.env, 1), X86EMU_EXIT_SHUTDOWN);
    assert_int_equal(e->v.cpu.cr3, PML4);
    assert_int_equal(vmmu_vcpu_paging(e->v.vcpu)->cr3, PML4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(exception_frame_write_to_a_device_page_goes_to_the_latch,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(large_read_from_a_device_page_goes_to_the_latch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_latched_rep_runs_one_iteration_per_execution, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cr3_above_the_walkers_maxphyaddr_is_gp_in_the_interpreter,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
