/* Error codes: every code has a distinct name and text; unknown codes are
 * named without crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmmu/vmmu.h"

static void every_code_has_a_distinct_name_and_text(void **state)
{
    (void)state;
    for (int a = 0; a > -VMMU_ERROR_COUNT; a--) {
        assert_string_not_equal(vmmu_strerror(a), "unknown vmmu error");
        assert_string_not_equal(vmmu_error_name(a), "VMMU_E?");
        for (int b = a - 1; b > -VMMU_ERROR_COUNT; b--) {
            assert_string_not_equal(vmmu_strerror(a), vmmu_strerror(b));
            assert_string_not_equal(vmmu_error_name(a), vmmu_error_name(b));
        }
    }
}

static void names_match_the_enum(void **state)
{
    (void)state;
    assert_string_equal(vmmu_error_name(VMMU_OK), "VMMU_OK");
    assert_string_equal(vmmu_error_name(VMMU_EHOLE), "VMMU_EHOLE");
    assert_string_equal(vmmu_error_name(VMMU_ELIMIT), "VMMU_ELIMIT");
    assert_string_equal(vmmu_strerror(VMMU_EOVERLAP), "region overlaps an existing region");
}

static void unknown_codes_get_a_placeholder(void **state)
{
    (void)state;
    assert_string_equal(vmmu_strerror(1), "unknown vmmu error");
    assert_string_equal(vmmu_strerror(-VMMU_ERROR_COUNT), "unknown vmmu error");
    assert_string_equal(vmmu_strerror(-1000000), "unknown vmmu error");
    assert_string_equal(vmmu_error_name(INT32_MIN), "VMMU_E?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_a_distinct_name_and_text),
        cmocka_unit_test(names_match_the_enum),
        cmocka_unit_test(unknown_codes_get_a_placeholder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
