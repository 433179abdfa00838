/* The vm object: creation limits and defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
    vmmu_vm_destroy(NULL);
    assert_int_equal(vmmu_vm_gpa_bits(NULL), 0);
    assert_int_equal(vmmu_vm_memfd(NULL), -1);
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
        cmocka_unit_test(version_matches_the_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
