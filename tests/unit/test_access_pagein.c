/* SPDX-License-Identifier: MIT */
/* An access that spans two pages must not keep the first page's host
 * address across a page-in of the second: the page-in may block, the
 * vCPU goes offline while it does, a grace period can pass, and the host
 * can take the first page away meanwhile.  The pager runs in paranoid mode,
 * so a stale host address would crash the test instead of losing data. */
#include <pthread.h>

#include "core/vm_internal.h"
#include "test_access_env.h"
#include "vmmu/pager.h"

#define PAGED_GPA 0x60000000ull /* vmmu-allocated RAM the pager may manage */
static const uint64_t VA = 0x0000400000200000ull;

struct chain {
    struct vmmu_pager *pager;
    vmmu_pagein_fn pagein; /* the pager's own handler */
    void *pagein_opaque;
    uint64_t victim; /* page out this page during the first page-in */
    int calls, stolen;
};

/* Page-in handler wrapped around the pager's: during the first page-in it
 * pages out @victim, as a host thread could while the vCPU waits. */
static int stealing_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct chain *c = opaque;
    c->calls++;
    if (!c->stolen && gpa != c->victim) {
        c->stolen = 1;
        struct vmmu_gpa_range r = {c->victim, 4096};
        assert_int_equal(vmmu_pager_page_out(c->pager, &r, 1), 0);
        uint32_t st = 0;
        assert_int_equal(vmmu_page_state_get(vm, c->victim, &st), 0);
        assert_true(st & VMMU_PAGE_PAGED_OUT);
    }
    return c->pagein(c->pagein_opaque, vm, gpa);
}

static void a_page_crossing_write_survives_the_first_page_leaving_during_the_second_page_in(
    void **state)
{
    (void)state;
    struct acc_env e;
    acc_env_init(&e);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PAGED_GPA, .size = 64 * 1024};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    amap(&e, VA, PAGED_GPA, PTE_RW);
    amap(&e, VA + 4096, PAGED_GPA + 4096, PTE_RW);

    /* Both pages hold data (so the page-out writes them to the file). */
    uint8_t fill[4096];
    memset(fill, 0x5a, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA, fill, 4096, 0, NULL), 0);
    memset(fill, 0xa5, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA + 4096, fill, 4096, 0, NULL), 0);

    struct vmmu_pager_config cfg = {.flags = VMMU_PAGER_PARANOID};
    struct chain c = {.victim = PAGED_GPA};
    assert_int_equal(vmmu_pager_create(vm, &cfg, &c.pager), 0);
    c.pagein = atomic_load(&vm->p2m.pagein);
    c.pagein_opaque = atomic_load(&vm->p2m.pagein_opaque);
    assert_non_null(c.pagein);
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, stealing_pagein, &c), 0);

    /* The second page is out; the first is resident and translated first. */
    struct vmmu_gpa_range second = {PAGED_GPA + 4096, 4096};
    assert_int_equal(vmmu_pager_page_out(c.pager, &second, 1), 0);

    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    const uint8_t data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_write(v, VA + 4096 - 6, data, sizeof(data), VMMU_X86_ACC_WRITE,
                                       &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    /* The first page left during the second's page-in and came back. */
    assert_int_equal(c.stolen, 1);
    assert_true(c.calls >= 2);

    /* Nothing lost: the write landed in both pages, and the rest of each
     * page is what it was. */
    uint8_t back[8192];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back + 4096 - 6, data, sizeof(data));
    for (unsigned i = 0; i < 4096 - 6; i++)
        assert_int_equal(back[i], 0x5a);
    for (unsigned i = 4096 + 6; i < 8192; i++)
        assert_int_equal(back[i], 0xa5);

    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, c.pagein, c.pagein_opaque), 0);
    vmmu_pager_destroy(c.pager);
    acc_env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            a_page_crossing_write_survives_the_first_page_leaving_during_the_second_page_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
