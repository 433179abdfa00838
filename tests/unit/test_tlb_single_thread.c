/* SPDX-License-Identifier: MIT */
/* A vCPU run on one thread, which also changes the map between the
 * vCPU's calls (single-threaded use): its TLB is used while it is online
 * (vmmu/tlb.h).  A map change made on the thread of an online vCPU drops
 * that vCPU's stale translations at once; a vCPU that is not online keeps
 * them (a replaced region's unmapped memory, a paged-out page table's
 * released host page in the paging-structure cache) until it goes online,
 * where it drops them.  Each case holds the TLB to the walker, or to the
 * region's new memory, after the host changed the map between two of the
 * vCPU's calls. */
#include "test_tlb_env.h"
#include "tlb/tlb_internal.h"

static const uint64_t UP = E_P | E_RW | E_US;
#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
#define PT_GPA (64 * MiB) /* a RAM region vmmu allocates: the pager may take its pages */
#define PT_PAGES 8
static const uint64_t VA = 0x0000400000200000ull;

struct fx {
    struct tlb_env t;
    uint32_t pt_id;
    uint8_t *pt_host;
    uint64_t next_pt;
    struct vmmu_pager *pager;
};

static uint64_t pt_page(struct fx *f)
{
    uint64_t gpa = f->next_pt;
    f->next_pt += 4096;
    assert_true(f->next_pt <= PT_GPA + PT_PAGES * 4096ull);
    return gpa;
}

static void pt_put(struct fx *f, uint64_t gpa, uint64_t v)
{
    memcpy(f->pt_host + (gpa - PT_GPA), &v, 8);
}

static uint64_t pt_get(struct fx *f, uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, f->pt_host + (gpa - PT_GPA), 8);
    return v;
}

/* 4-level tables for @va in the vmmu-allocated region; returns the PT's gpa. */
static uint64_t build(struct fx *f, uint64_t root, uint64_t va)
{
    uint64_t table = root;
    for (unsigned level = 4; level > 1; level--) {
        uint64_t at = slot9(table, va, level);
        uint64_t e = pt_get(f, at);
        if (!(e & E_P)) {
            e = pt_page(f) | UP | E_A;
            pt_put(f, at, e);
        }
        table = e & ADDR_MASK;
    }
    return table;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || tlb_env_init(&f->t, 16 * MiB))
        return -1;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PT_GPA, .size = PT_PAGES * 4096ull,
                                 .name = "tables"};
    if (vmmu_region_add(f->t.env.vm, &d, &f->pt_id))
        return -1;
    struct vmmu_region_info info;
    if (vmmu_region_info(f->t.env.vm, f->pt_id, &info))
        return -1;
    f->pt_host = info.host;
    f->next_pt = PT_GPA;
    /* Released pages PROT_NONE: a stale access through the TLB crashes. */
    struct vmmu_pager_config pc = {.flags = VMMU_PAGER_PARANOID};
    if (vmmu_pager_create(f->t.env.vm, &pc, &f->pager))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vmmu_pager_destroy(f->pager);
    tlb_env_fini(&f->t);
    free(f);
    return 0;
}

/* Tables for VA and VA + 4 KiB in the region, the first page read (the
 * caches now hold the PDE and its table's host address), then the page
 * table paged out by the host between two calls of the vCPU. */
static void page_out_the_page_table(struct fx *f, bool online)
{
    uint64_t root = pt_page(f);
    uint64_t pt = build(f, root, VA);
    pt_put(f, slot9(pt, VA, 1), DATA(1) | E_P | E_RW | E_A | E_D);
    pt_put(f, slot9(pt, VA + 4096, 1), DATA(2) | E_P | E_RW | E_A | E_D);
    if (online)
        assert_int_equal(vmmu_vcpu_online(f->t.vcpu), 0);
    tlb_load(&f->t, root, 0, 0, 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), hpa(&f->t, DATA(1)));
    struct vmmu_gpa_range r = {pt, 4096};
    assert_int_equal(vmmu_pager_page_out(f->pager, &r, 1), 0);
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(f->t.env.vm, pt, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
}

static void check_second_page(struct fx *f)
{
    /* The walker brings the table back and translates. */
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(vmmu_vcpu_paging(f->t.vcpu), VA + 4096, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, DATA(2));
    /* Paged out again, so that the TLB's fill finds it out as well. */
    uint64_t pt = w.levels[w.nlevels - 1].gpa & ~0xfffull;
    struct vmmu_gpa_range r = {pt, 4096};
    assert_int_equal(vmmu_pager_page_out(f->pager, &r, 1), 0);
    struct vmmu_tlb_result res;
    void *host = vmmu_tlb_fill(f->t.vcpu, VA + 4096, 8, 0, &res);
    if (host != hpa(&f->t, DATA(2)))
        fail_msg("the TLB gave status %d (fault %d, error code %#x), host %p; the walker "
                 "gpa %#llx",
                 (int)res.status, (int)res.fault.vector, (unsigned)res.fault.error_code, host,
                 (unsigned long long)w.gpa);
}

static void an_online_vcpu_translates_through_a_paged_out_page_table(void **state)
{
    struct fx *f = *state;
    page_out_the_page_table(f, true);
    check_second_page(f);
    assert_int_equal(vmmu_vcpu_offline(f->t.vcpu), 0);
}

/* Paged out while the vCPU was offline: going online drops the cached
 * table address (with VMMU_PAGER_PARANOID, where released pages are
 * PROT_NONE, a stale read would crash). */
static void an_offline_vcpu_drops_a_paged_out_page_table_when_it_goes_online(void **state)
{
    struct fx *f = *state;
    page_out_the_page_table(f, false);
    assert_int_equal(vmmu_vcpu_online(f->t.vcpu), 0);
    check_second_page(f);
    assert_int_equal(vmmu_vcpu_offline(f->t.vcpu), 0);
}

/* The TLB's entries: a region replaced between two calls of the vCPU.
 * @online: the vCPU is online on this thread meanwhile; else it goes
 * online after the replacement. */
static void replace_under_the_vcpu(struct fx *f, bool online)
{
    uint64_t root = env_page(&f->t.env);
    tmap(&f->t, root, VA, 1, UP, PT_GPA | E_P | E_RW | E_A | E_D); /* data in the region */
    if (online)
        assert_int_equal(vmmu_vcpu_online(f->t.vcpu), 0);
    tlb_load(&f->t, root, 0, 0, 0);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), f->pt_host);
    uint32_t new_id;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PT_GPA, .size = PT_PAGES * 4096ull,
                                 .name = "new"};
    assert_int_equal(vmmu_region_replace(f->t.env.vm, f->pt_id, &d, &new_id), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(f->t.env.vm, new_id, &info), 0);
    f->pt_id = new_id;
    if (!online)
        assert_int_equal(vmmu_vcpu_online(f->t.vcpu), 0);
    void *hit = vmmu_tlb_lookup_read(f->t.vcpu, VA, 8); /* not dereferenced */
    if (hit && hit != (void *)info.host)
        fail_msg("the inline hit still gives the replaced region's memory %p (the new region "
                 "is at %p)",
                 hit, (void *)info.host);
    assert_ptr_equal(tacc(&f->t, VA, 8, 0, NULL), info.host);
    assert_int_equal(vmmu_vcpu_offline(f->t.vcpu), 0);
}

static void an_online_vcpu_sees_a_region_replaced_on_its_thread(void **state)
{
    replace_under_the_vcpu(*state, true);
}

static void an_offline_vcpu_sees_a_replaced_region_when_it_goes_online(void **state)
{
    replace_under_the_vcpu(*state, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(an_online_vcpu_translates_through_a_paged_out_page_table),
        T(an_offline_vcpu_drops_a_paged_out_page_table_when_it_goes_online),
        T(an_online_vcpu_sees_a_region_replaced_on_its_thread),
        T(an_offline_vcpu_sees_a_replaced_region_when_it_goes_online),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
