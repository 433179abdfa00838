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

/* The whole enum, spelled out: each code is named by its own symbol, and
 * VMMU_ERROR_COUNT counts exactly these. */
static void every_code_is_named_by_its_own_symbol(void **state)
{
    (void)state;
#define CODE(c) {c, #c}
    static const struct {
        int code;
        const char *name;
    } codes[] = {
        CODE(VMMU_OK),        CODE(VMMU_EINVAL),  CODE(VMMU_ENOMEM),   CODE(VMMU_ERANGE),
        CODE(VMMU_EALIGN),    CODE(VMMU_EOVERLAP), CODE(VMMU_ENOENT),  CODE(VMMU_EHOLE),
        CODE(VMMU_EROM),      CODE(VMMU_EMMIO),   CODE(VMMU_EDEVICE),  CODE(VMMU_EPAGEDOUT),
        CODE(VMMU_ESYS),      CODE(VMMU_EBUSY),   CODE(VMMU_ELIMIT),   CODE(VMMU_EPENDING),
        CODE(VMMU_EDEAD),     CODE(VMMU_ETIMEDOUT), CODE(VMMU_EOVERFLOW), CODE(VMMU_EPROTO),
    };
#undef CODE
    const size_t n = sizeof(codes) / sizeof(codes[0]);
    assert_int_equal(n, VMMU_ERROR_COUNT);
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i].code <= 0);
        assert_true(codes[i].code > -VMMU_ERROR_COUNT);
        assert_string_equal(vmmu_error_name(codes[i].code), codes[i].name);
        assert_non_null(vmmu_strerror(codes[i].code));
    }
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
        cmocka_unit_test(every_code_is_named_by_its_own_symbol),
        cmocka_unit_test(unknown_codes_get_a_placeholder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
