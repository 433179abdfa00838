/* The vm and vCPU objects: creation limits and defaults, the memfd, and
 * refused register writes. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmu/vmmu.h"

static void create_with_null_config_uses_52_bits(void **state)
{
    (void)state;
    struct vmmu_vm *vm = NULL;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_non_null(vm);
    assert_int_equal(vmmu_vm_gpa_bits(vm), 52);
    assert_int_equal(vmmu_vm_memfd(vm), -1); /* no RAM allocated yet */
    vmmu_vm_destroy(vm);
}

static void create_accepts_every_width_from_20_to_52(void **state)
{
    (void)state;
    for (unsigned bits = VMMU_GPA_BITS_MIN; bits <= VMMU_GPA_BITS_MAX; bits++) {
        struct vmmu_vm *vm = NULL;
        struct vmmu_vm_config cfg = {.gpa_bits = bits};
        assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
        assert_int_equal(vmmu_vm_gpa_bits(vm), bits);
        vmmu_vm_destroy(vm);
    }
}

static void create_rejects_widths_outside_the_range(void **state)
{
    (void)state;
    unsigned bad[] = {1, 12, VMMU_GPA_BITS_MIN - 1, VMMU_GPA_BITS_MAX + 1, 64, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmmu_vm *vm = (struct vmmu_vm *)0x1;
        struct vmmu_vm_config cfg = {.gpa_bits = bad[i]};
        assert_int_equal(vmmu_vm_create(&cfg, &vm), VMMU_EINVAL);
        assert_ptr_equal(vm, (struct vmmu_vm *)0x1); /* untouched on failure */
    }
}

static void create_without_out_pointer_fails(void **state)
{
    (void)state;
    assert_int_equal(vmmu_vm_create(NULL, NULL), VMMU_EINVAL);
}

static void destroy_null_is_a_no_op(void **state)
{
    (void)state;
    assert_int_equal(vmmu_vm_destroy(NULL), 0);
    assert_int_equal(vmmu_vcpu_destroy(NULL), 0);
    assert_int_equal(vmmu_vm_gpa_bits(NULL), 0);
    assert_int_equal(vmmu_vm_memfd(NULL), -1);
}

/* A vm that a vCPU or a device-model layer still refers to is not freed
 * under them: VMMU_EBUSY, and everything keeps working.  A pager does not
 * hold the vm up (vmmu_vm_destroy() frees it). */
static void destroy_refuses_a_vm_its_vcpus_or_device_models_still_use(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(vm, &ram, NULL), 0);

    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &v), 0);
    assert_int_equal(vmmu_vm_destroy(vm), VMMU_EBUSY);
    uint64_t x = 0x1122334455667788ull, y = 0;
    assert_int_equal(vmmu_gpa_write(vm, 0x1000, &x, sizeof(x), 0, NULL), 0);
    assert_int_equal(vmmu_vcpu_id(v), 0);
    assert_int_equal(vmmu_vcpu_destroy(v), 0);

    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    assert_int_equal(vmmu_vm_destroy(vm), VMMU_EBUSY);
    assert_int_equal(vmmu_gpa_read(vm, 0x1000, &y, sizeof(y), 0, NULL), 0);
    assert_true(y == x);
    assert_int_equal(vmmu_dm_destroy(dm), 0);

    struct vmmu_pager *pg;
    struct vmmu_pager_config pc = {0};
    assert_int_equal(vmmu_pager_create(vm, &pc, &pg), 0);
    assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* What /proc says the vm's memfd is called ("/memfd:NAME (deleted)"). */
static void memfd_label(struct vmmu_vm *vm, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", vmmu_vm_memfd(vm));
    ssize_t n = readlink(path, out, len - 1);
    assert_true(n > 0);
    out[n] = 0;
}

static void the_vm_name_labels_its_memfd_and_defaults_to_vmmu(void **state)
{
    (void)state;
    char name[] = "guest-7", label[PATH_MAX];
    struct vmmu_vm_config cfg = {.name = name};
    struct vmmu_vm *named, *plain;
    assert_int_equal(vmmu_vm_create(&cfg, &named), 0);
    assert_int_equal(vmmu_vm_create(NULL, &plain), 0);
    name[0] = 'X'; /* the vm keeps its own copy */
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096};
    assert_int_equal(vmmu_region_add(named, &d, NULL), 0);
    assert_int_equal(vmmu_region_add(plain, &d, NULL), 0);
    memfd_label(named, label, sizeof(label));
    assert_non_null(strstr(label, "memfd:guest-7"));
    memfd_label(plain, label, sizeof(label));
    assert_non_null(strstr(label, "memfd:vmmu"));
    vmmu_vm_destroy(named);
    vmmu_vm_destroy(plain);
}

static void zero_max_regions_selects_the_default_cap(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.gpa_bits = 40, .max_regions = 0};
    assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
    /* Device-model ranges: no memory to map, so the cap is reached quickly. */
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .size = 4096};
    for (unsigned i = 0; i < VMMU_REGIONS_DEFAULT_MAX; i++) {
        d.gpa = (uint64_t)i * 8192;
        assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    }
    d.gpa = (uint64_t)VMMU_REGIONS_DEFAULT_MAX * 8192;
    uint64_t gen = vmmu_p2m_generation(vm);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), VMMU_ELIMIT);
    assert_int_equal(vmmu_p2m_generation(vm), gen);
    uint32_t id;
    assert_int_equal(vmmu_region_find(vm, d.gpa, &id), VMMU_EHOLE);
    vmmu_vm_destroy(vm);
}

/* A register write the CPU refuses raises its fault and leaves the vCPU as
 * it was: the same registers, and not one flush in the statistics. */
static void a_refused_register_write_changes_and_flushes_nothing(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &v), 0);
    struct vmmu_x86_paging before; /* byte for byte, derived fields included */
    memcpy(&before, vmmu_vcpu_paging(v), sizeof(before));
    struct vmmu_tlb_stats s0, s1;
    assert_int_equal(vmmu_vcpu_stats(v, &s0), 0);

    struct vmmu_x86_fault fault;
    /* PG without PE */
    assert_int_equal(vmmu_vcpu_set_cr0(v, before.cr0 | VMMU_X86_CR0_PG, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    /* a reserved CR4 bit */
    assert_int_equal(vmmu_vcpu_set_cr4(v, before.cr4 | (1ull << 63), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    /* a reserved EFER bit */
    assert_int_equal(vmmu_vcpu_set_efer(v, before.efer | (1ull << 63), &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);
    /* WRPKRU with CR4.PKE clear */
    assert_int_equal(vmmu_vcpu_set_pkru(v, ~0u, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_UD);
    /* PKRS bits 63:32 */
    assert_int_equal(vmmu_vcpu_set_pkrs(v, 1ull << 40, &fault), 0);
    assert_int_equal(fault.vector, VMMU_X86_VEC_GP);

    assert_memory_equal(vmmu_vcpu_paging(v), &before, sizeof(before));
    assert_int_equal(vmmu_vcpu_stats(v, &s1), 0);
    assert_memory_equal(&s1, &s0, sizeof(s0));
    vmmu_vcpu_destroy(v);
    vmmu_vm_destroy(vm);
}

static void version_matches_the_headers(void **state)
{
    (void)state;
    assert_string_equal(vmmu_version(), VMMU_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_with_null_config_uses_52_bits),
        cmocka_unit_test(create_accepts_every_width_from_20_to_52),
        cmocka_unit_test(create_rejects_widths_outside_the_range),
        cmocka_unit_test(create_without_out_pointer_fails),
        cmocka_unit_test(destroy_null_is_a_no_op),
        cmocka_unit_test(destroy_refuses_a_vm_its_vcpus_or_device_models_still_use),
        cmocka_unit_test(the_vm_name_labels_its_memfd_and_defaults_to_vmmu),
        cmocka_unit_test(zero_max_regions_selects_the_default_cap),
        cmocka_unit_test(a_refused_register_write_changes_and_flushes_nothing),
        cmocka_unit_test(version_matches_the_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
