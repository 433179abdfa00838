/* SPDX-License-Identifier: MIT */
/* The sync part on one thread: vCPU ids and life cycle, local and remote
 * flushes to offline vCPUs, what each host-initiated P2M change drops,
 * and the reclaim hooks (with a fake consumer). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "test_sync_env.h"
#include "vmmu/vmmu.h"

/* ---- ids and life cycle ---------------------------------------------------- */

static void vcpu_ids_are_small_distinct_and_reused_after_destroy(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_vcpu *a, *b, *c;
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &a), 0);
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &b), 0);
    assert_int_equal(vmmu_vcpu_id(a), 0);
    assert_int_equal(vmmu_vcpu_id(b), 1);
    vmmu_vcpu_destroy(a);
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &c), 0);
    assert_int_equal(vmmu_vcpu_id(c), 0);
    assert_int_equal(vmmu_vcpu_id(b), 1);
    assert_int_equal(vmmu_vcpu_id(NULL), VMMU_EINVAL);
    vmmu_vcpu_destroy(b);
    vmmu_vcpu_destroy(c);
    vmmu_vm_destroy(vm);
}

static void many_vcpus_get_ids_beyond_one_chunk(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    enum { N = 150 };
    static struct vmmu_vcpu *v[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(vmmu_vcpu_create(vm, NULL, &v[i]), 0);
        assert_int_equal(vmmu_vcpu_id(v[i]), i);
    }
    /* A flush to all of them, none online: returns at once; posted to
     * each, asynchronously too. */
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(vm, NULL, NULL, &f), 0);
    assert_int_equal(vmmu_shootdown_async(vm, NULL, NULL, &f), 0);
    struct vmmu_cpuset *set;
    assert_int_equal(vmmu_cpuset_create(&set), 0);
    assert_int_equal(vmmu_cpuset_add(set, N - 1), 0);
    assert_int_equal(vmmu_cpuset_add(set, 5000), 0); /* unknown ids are skipped */
    assert_int_equal(vmmu_shootdown_async(vm, NULL, set, &f), 0);
    assert_int_equal(vmmu_shootdown_sync(vm, NULL, set, &f), 0);
    vmmu_cpuset_destroy(set);
    struct sync_slot *last = sync_slot_of(vm->sync, N - 1);
    assert_int_equal(atomic_load(&last->req_gen), 4);
    for (int i = 0; i < N; i++)
        vmmu_vcpu_destroy(v[i]);
    vmmu_vm_destroy(vm);
}

static void online_offline_and_safepoint_refuse_misuse(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_vcpu *a, *b;
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &a), 0);
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &b), 0);
    assert_int_equal(vmmu_vcpu_online(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_offline(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_safepoint(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_safepoint(a), VMMU_EINVAL); /* not online */
    assert_int_equal(vmmu_vcpu_offline(a), VMMU_EINVAL);   /* not online */
    assert_int_equal(vmmu_vcpu_online(a), 0);
    assert_int_equal(vmmu_vcpu_online(a), VMMU_EBUSY);
    assert_int_equal(vmmu_vcpu_online(b), VMMU_EBUSY); /* one per thread */
    assert_int_equal(vmmu_vcpu_offline(b), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_safepoint(a), 0);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    assert_int_equal(vmmu_vcpu_online(b), 0);
    assert_int_equal(vmmu_vcpu_offline(b), 0);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    vmmu_vm_destroy(vm);
}

/* ---- vCPU sets -------------------------------------------------------------- */

static void cpuset_grows_and_counts(void **state)
{
    (void)state;
    struct vmmu_cpuset *s;
    assert_int_equal(vmmu_cpuset_create(&s), 0);
    assert_int_equal(vmmu_cpuset_add(s, 3), 0);
    assert_int_equal(vmmu_cpuset_add(s, 1000), 0);
    assert_int_equal(vmmu_cpuset_add(s, -1), VMMU_EINVAL);
    /* Ids stop at the largest a vm gives: no set grows past that. */
    assert_int_equal(vmmu_cpuset_add(s, VMMU_VCPU_ID_MAX), 0);
    assert_true(vmmu_cpuset_has(s, VMMU_VCPU_ID_MAX));
    assert_int_equal(vmmu_cpuset_add(s, VMMU_VCPU_ID_MAX + 1), VMMU_EINVAL);
    assert_int_equal(vmmu_cpuset_add(s, INT_MAX), VMMU_EINVAL);
    assert_false(vmmu_cpuset_has(s, VMMU_VCPU_ID_MAX + 1));
    assert_int_equal(vmmu_cpuset_del(s, VMMU_VCPU_ID_MAX), 0);
    assert_true(vmmu_cpuset_has(s, 3));
    assert_true(vmmu_cpuset_has(s, 1000));
    assert_false(vmmu_cpuset_has(s, 4));
    assert_false(vmmu_cpuset_has(s, 5000));
    assert_int_equal(vmmu_cpuset_count(s), 2);
    assert_int_equal(vmmu_cpuset_del(s, 3), 0);
    assert_int_equal(vmmu_cpuset_del(s, 99999), 0);
    assert_int_equal(vmmu_cpuset_count(s), 1);
    assert_int_equal(vmmu_cpuset_clear(s), 0);
    assert_int_equal(vmmu_cpuset_count(s), 0);
    assert_int_equal(vmmu_cpuset_create(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_cpuset_clear(NULL), VMMU_EINVAL);
    vmmu_cpuset_destroy(s);
    vmmu_cpuset_destroy(NULL);
}

/* ---- flush requests ----------------------------------------------------------- */

static void bad_flush_requests_are_refused(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *v = sync_vcpu(&s);
    struct vmmu_vm *vm = s.env.vm;
    struct vmmu_flush bad[] = {
        {.type = VMMU_FLUSH_CONTEXTS, .contexts = 0},
        {.type = VMMU_FLUSH_CONTEXTS, .contexts = 8},
        {.type = VMMU_FLUSH_PCID, .pcid = 4096},
        {.type = VMMU_FLUSH_PCID, .pcid = -1},
        {.type = VMMU_FLUSH_RANGE, .va = 0, .npages = 0},
        {.type = VMMU_FLUSH_RANGE, .va = 0, .npages = 1, .pcid = -2},
        {.type = VMMU_FLUSH_RANGE, .va = ~0ull & VMMU_PAGE_MASK, .npages = 2},
        {.type = (enum vmmu_flush_type)99},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(vmmu_flush_local(v, &bad[i]), VMMU_EINVAL);
        assert_int_equal(vmmu_shootdown_sync(vm, NULL, NULL, &bad[i]), VMMU_EINVAL);
        assert_int_equal(vmmu_shootdown_async(vm, NULL, NULL, &bad[i]), VMMU_EINVAL);
    }
    struct vmmu_flush ok = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_flush_local(NULL, &ok), VMMU_EINVAL);
    assert_int_equal(vmmu_flush_local(v, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_shootdown_sync(NULL, NULL, NULL, &ok), VMMU_EINVAL);
    /* self must be online on the calling thread */
    assert_int_equal(vmmu_shootdown_sync(vm, v, NULL, &ok), VMMU_EINVAL);
    vmmu_vcpu_destroy(v);
    sync_env_fini(&s);
}

static void local_flush_drops_only_the_callers_entries(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s), *b = sync_vcpu(&s);
    assert_int_equal(sync_read(a, 1), DATA_GPA + 4096);
    assert_int_equal(sync_read(b, 1), DATA_GPA + 4096);
    sync_env_remap(&s, 1, 2);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + 4096, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    assert_int_equal(vmmu_flush_local(a, &f), 0);
    assert_int_equal(sync_read(a, 1), DATA_GPA + 2 * 4096);
    /* b's stale entry is the guest's business: it skipped the remote flush */
    assert_int_equal(sync_read(b, 1), DATA_GPA + 4096);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    sync_env_fini(&s);
}

static void requests_to_an_offline_vcpu_are_done_when_it_comes_online(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(sync_read(a, 0), DATA_GPA);
    assert_int_equal(sync_read(a, 3), DATA_GPA + 3 * 4096);
    sync_env_remap(&s, 0, 1);
    struct vmmu_cpuset *set;
    assert_int_equal(vmmu_cpuset_create(&set), 0);
    assert_int_equal(vmmu_cpuset_add(set, vmmu_vcpu_id(a)), 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA, .npages = 1, .pcid = 0};
    /* offline target: sync returns without waiting, async too */
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, NULL, set, &f), 0);
    assert_true(sync_hits(a, 0)); /* not woken, not touched by another thread */
    assert_int_equal(vmmu_vcpu_online(a), 0);
    assert_false(sync_hits(a, 0));
    assert_true(sync_hits(a, 3)); /* a page flush, not a full one */
    assert_int_equal(sync_read(a, 0), DATA_GPA + 4096);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_cpuset_destroy(set);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

static void requests_merge_and_one_safepoint_acts_on_all(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(sync_read(a, (uint64_t)i), DATA_GPA + (uint64_t)i * 4096);
    for (int i = 0; i < 3; i++) {
        struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + (uint64_t)i * 4096,
                               .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
        assert_int_equal(vmmu_shootdown_async(s.env.vm, NULL, NULL, &f), 0);
    }
    struct sync_slot *slot = sync_slot_of(s.env.vm->sync, vmmu_vcpu_id(a));
    assert_int_equal(atomic_load(&slot->req_gen) - slot->handled_gen, 3);
    assert_true(sync_hits(a, 0)); /* nothing happens between safe points */
    assert_int_equal(vmmu_vcpu_safepoint(a), 0);
    assert_int_equal(atomic_load(&slot->done_gen), atomic_load(&slot->req_gen));
    for (int i = 0; i < 8; i++)
        assert_int_equal(sync_hits(a, (uint64_t)i), i >= 3);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

static void a_requesting_vcpu_flushes_its_own_part_at_once(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s), *b = sync_vcpu(&s);
    assert_int_equal(sync_read(a, 2), DATA_GPA + 2 * 4096);
    assert_int_equal(sync_read(b, 2), DATA_GPA + 2 * 4096);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_CONTEXTS, .contexts = VMMU_FLUSH_CTX_ALL};
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, a, NULL, &f), 0);
    assert_false(sync_hits(a, 2));
    assert_true(sync_hits(b, 2)); /* offline: marked, flushed when it runs */
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    assert_int_equal(vmmu_vcpu_online(b), 0);
    assert_false(sync_hits(b, 2));
    assert_int_equal(vmmu_vcpu_offline(b), 0);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    sync_env_fini(&s);
}

/* sync.h, struct vmmu_flush: va is the range's "first page (rounded
 * down)": an address inside page 1 names page 1, not page 2. */
static void a_range_flush_starts_at_the_page_holding_va(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(sync_read(a, i), DATA_GPA + i * 4096);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + 4096 + 0xff8, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    assert_int_equal(vmmu_flush_local(a, &f), 0);
    assert_true(sync_hits(a, 0));
    assert_false(sync_hits(a, 1));
    assert_true(sync_hits(a, 2));
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

/* The last page of the 64-bit address space is a range of one page, not
 * one that wraps (two pages from there do wrap: bad_flush_requests...),
 * and, being one page, it is not turned into a flush of everything. */
static void a_range_flush_may_name_the_last_page_of_the_address_space(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(sync_read(a, 0), DATA_GPA);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = ~0ull, .npages = 1, .pcid = 4095};
    assert_int_equal(vmmu_flush_local(a, &f), 0);
    assert_int_equal(vmmu_shootdown_async(s.env.vm, NULL, NULL, &f), 0);
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, NULL, NULL, &f), 0);
    assert_int_equal(vmmu_vcpu_online(a), 0); /* acts on the two it was sent */
    assert_true(sync_hits(a, 0));
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

/* sync.h, vmmu_shootdown_async(): "@p self's part, if it is a target, is
 * done at once"; the other targets act on it when they next run.  A
 * caller that is not a target keeps its entries. */
static void an_async_shootdown_drops_the_callers_own_part_before_it_returns(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s), *b = sync_vcpu(&s);
    assert_int_equal(sync_read(a, 2), DATA_GPA + 2 * 4096);
    assert_int_equal(sync_read(a, 3), DATA_GPA + 3 * 4096);
    assert_int_equal(sync_read(b, 2), DATA_GPA + 2 * 4096);
    assert_int_equal(sync_read(b, 3), DATA_GPA + 3 * 4096);
    struct vmmu_cpuset *set;
    assert_int_equal(vmmu_cpuset_create(&set), 0);
    assert_int_equal(vmmu_cpuset_add(set, vmmu_vcpu_id(a)), 0);
    assert_int_equal(vmmu_cpuset_add(set, vmmu_vcpu_id(b)), 0);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + 2 * 4096, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    assert_int_equal(vmmu_shootdown_async(s.env.vm, a, set, &f), 0);
    assert_false(sync_hits(a, 2)); /* at once, before any safe point */
    assert_true(sync_hits(a, 3));
    assert_true(sync_hits(b, 2)); /* offline: done when it comes online */
    /* Not a target: the caller's page 3 stays. */
    assert_int_equal(vmmu_cpuset_del(set, vmmu_vcpu_id(a)), 0);
    f.va = DATA_VA + 3 * 4096;
    assert_int_equal(vmmu_shootdown_async(s.env.vm, a, set, &f), 0);
    assert_true(sync_hits(a, 3));
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    assert_int_equal(vmmu_vcpu_online(b), 0);
    assert_false(sync_hits(b, 2));
    assert_false(sync_hits(b, 3));
    assert_int_equal(vmmu_vcpu_offline(b), 0);
    vmmu_cpuset_destroy(set);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    sync_env_fini(&s);
}

/* sync.h: "Functions that take a @p self vCPU are safe points for it": a
 * shootdown by a vCPU acts on what others asked of that vCPU, as
 * vmmu_vcpu_safepoint() would, even when the vCPU is no target of its
 * own request. */
static void a_shootdown_acts_on_what_others_asked_of_its_caller(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(sync_read(a, i), DATA_GPA + i * 4096);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + 4096, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    assert_int_equal(vmmu_shootdown_async(s.env.vm, NULL, NULL, &f), 0); /* a host's */
    assert_true(sync_hits(a, 1));
    struct vmmu_cpuset *none;
    assert_int_equal(vmmu_cpuset_create(&none), 0);
    f.va = DATA_VA + 3 * 4096;
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, a, none, &f), 0);
    assert_false(sync_hits(a, 1));
    assert_true(sync_hits(a, 3)); /* not a target of its own request */
    vmmu_cpuset_destroy(none);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

/* ---- host-initiated changes ------------------------------------------------------ */

/* A fake consumer that caches host pointers to guest pages, like a
 * device model's mapcache. */
struct fake_consumer {
    struct vmmu_vm *vm;
    uint8_t *cached[8];
    uint64_t cached_gpa[8];
    int calls;
    struct vmmu_gpa_range seen[8];
    size_t nseen;
    enum vmmu__reclaim_why why;
    int readable_during_call; /* the memory is still there while we drop it */
};

static void fake_reclaim(void *opaque, struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges,
                         size_t n, enum vmmu__reclaim_why why)
{
    struct fake_consumer *fc = opaque;
    assert_ptr_equal(vm, fc->vm);
    fc->calls++;
    fc->why = why;
    fc->nseen = n < 8 ? n : 8;
    memcpy(fc->seen, ranges, fc->nseen * sizeof(*ranges));
    for (int i = 0; i < 8; i++) {
        if (!fc->cached[i])
            continue;
        for (size_t k = 0; k < n; k++) {
            if (fc->cached_gpa[i] - ranges[k].gpa < ranges[k].size) {
                uint64_t word;
                memcpy(&word, fc->cached[i], 8);
                fc->readable_during_call += word == fc->cached_gpa[i];
                fc->cached[i] = NULL;
            }
        }
    }
}

static void reclaim_hooks_see_removed_ranges_before_the_memory_goes(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vm *vm = s.env.vm;
    struct fake_consumer fc = {.vm = vm};
    for (int i = 0; i < 2; i++) {
        struct vmmu_p2m_entry e;
        fc.cached_gpa[i] = DATA_GPA + (uint64_t)i * 4096;
        assert_int_equal(vmmu_p2m_lookup(vm, fc.cached_gpa[i], &e), 0);
        fc.cached[i] = e.hva;
    }
    assert_int_equal(vmmu__reclaim_hook_add(vm, fake_reclaim, &fc), 0);
    assert_int_equal(vmmu__reclaim_hook_add(vm, fake_reclaim, &fc), VMMU_EBUSY);
    assert_int_equal(vmmu__reclaim_hook_add(NULL, fake_reclaim, &fc), VMMU_EINVAL);
    assert_int_equal(vmmu__reclaim_hook_add(vm, NULL, &fc), VMMU_EINVAL);

    assert_int_equal(vmmu_region_remove(vm, s.data_id), 0);
    assert_int_equal(fc.calls, 1);
    assert_int_equal(fc.why, VMMU_RECLAIM_REMOVE);
    assert_int_equal(fc.nseen, 1);
    assert_int_equal(fc.seen[0].gpa, DATA_GPA);
    assert_int_equal(fc.seen[0].size, 4 * 4096);
    assert_int_equal(fc.readable_during_call, 2);
    assert_null(fc.cached[0]);
    assert_null(fc.cached[1]);

    assert_int_equal(vmmu__reclaim_hook_remove(vm, fake_reclaim, &fc), 0);
    assert_int_equal(vmmu__reclaim_hook_remove(vm, fake_reclaim, &fc), VMMU_ENOENT);
    /* removed: not called again */
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = 4096};
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_int_equal(fc.calls, 1);
    sync_env_fini(&s);
}

static void region_removal_drops_every_vcpus_entries_for_it(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vcpu *a = sync_vcpu(&s), *b = sync_vcpu(&s);
    /* an entry for a page-table page's region stays: only data goes */
    assert_int_equal(sync_read(a, 1), DATA_GPA + 4096);
    assert_int_equal(sync_read(b, 1), DATA_GPA + 4096);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    assert_int_equal(vmmu_region_remove(s.env.vm, s.data_id), 0);
    /* a is this thread's online vCPU: its part was done at once */
    assert_false(sync_hits(a, 1));
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    assert_int_equal(vmmu_vcpu_online(b), 0);
    assert_false(sync_hits(b, 1));
    struct vmmu_tlb_result res;
    assert_null(vmmu_tlb_translate(b, DATA_VA + 4096, 8, 0, &res));
    assert_int_equal(res.status, VMMU_TLB_NOT_RAM);
    assert_int_equal(res.type, VMMU_MEM_HOLE);
    assert_int_equal(vmmu_vcpu_offline(b), 0);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    sync_env_fini(&s);
}

static void adding_a_region_over_a_cached_hole_drops_the_hole_entry(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vm *vm = s.env.vm;
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_region_remove(vm, s.data_id), 0);
    struct vmmu_tlb_result res;
    assert_null(vmmu_tlb_translate(a, DATA_VA, 8, 0, &res));
    assert_int_equal(res.type, VMMU_MEM_HOLE);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = 4 * 4096};
    assert_int_equal(vmmu_region_add(vm, &d, &s.data_id), 0);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    assert_non_null(vmmu_tlb_translate(a, DATA_VA, 8, 0, &res));
    assert_int_equal(res.type, VMMU_MEM_RAM);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

static void region_replace_is_atomic_and_drops_old_entries(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vm *vm = s.env.vm;
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    assert_int_equal(sync_read(a, 2), DATA_GPA + 2 * 4096);
    struct fake_consumer fc = {.vm = vm};
    assert_int_equal(vmmu__reclaim_hook_add(vm, fake_reclaim, &fc), 0);

    struct vmmu_region_desc bad = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = 8 * 4096};
    uint32_t nid;
    assert_int_equal(vmmu_region_replace(vm, s.data_id, &bad, &nid), VMMU_EINVAL);
    assert_int_equal(vmmu_region_replace(vm, 12345, &bad, &nid), VMMU_ENOENT);
    assert_int_equal(vmmu_region_replace(NULL, s.data_id, &bad, &nid), VMMU_EINVAL);
    assert_int_equal(fc.calls, 0);

    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = 4 * 4096};
    assert_int_equal(vmmu_region_replace(vm, s.data_id, &d, &nid), 0);
    assert_int_not_equal(nid, s.data_id);
    assert_int_equal(fc.calls, 1);
    assert_int_equal(fc.why, VMMU_RECLAIM_REPLACE);
    assert_false(sync_hits(a, 2));
    /* the new region is fresh memory: zero where the identity was */
    assert_int_equal(sync_read(a, 2), 0);
    uint32_t found;
    assert_int_equal(vmmu_region_find(vm, DATA_GPA + 4096, &found), 0);
    assert_int_equal(found, nid);
    assert_int_equal(vmmu__reclaim_hook_remove(vm, fake_reclaim, &fc), 0);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

static void marking_a_page_as_code_makes_cached_writes_report_it(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vm *vm = s.env.vm;
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    struct vmmu_tlb_result res;
    assert_non_null(vmmu_tlb_translate(a, DATA_VA + 4096, 8, VMMU_X86_ACC_WRITE, &res));
    assert_non_null(vmmu_tlb_lookup_write(a, DATA_VA + 4096, 8));
    struct vmmu_gpa_range r = {DATA_GPA + 4096, 4096};
    assert_int_equal(vmmu_page_state_change(vm, &r, 1, VMMU_PAGE_CODE, 0), 0);
    assert_null(vmmu_tlb_lookup_write(a, DATA_VA + 4096, 8));
    assert_non_null(vmmu_tlb_translate(a, DATA_VA + 4096, 8, VMMU_X86_ACC_WRITE, &res));
    assert_true(res.flags & VMMU_TLB_FLAG_CODE);
    /* bad input changes nothing */
    struct vmmu_gpa_range hole = {DATA_GPA + 64 * 4096, 4096};
    struct vmmu_gpa_range odd = {DATA_GPA + 1, 4096};
    assert_int_equal(vmmu_page_state_change(vm, &hole, 1, VMMU_PAGE_CODE, 0), VMMU_EHOLE);
    assert_int_equal(vmmu_page_state_change(vm, &odd, 1, VMMU_PAGE_CODE, 0), VMMU_EALIGN);
    assert_int_equal(vmmu_page_state_change(vm, &r, 1, VMMU_PAGE_PAGED_OUT, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_change(NULL, &r, 1, VMMU_PAGE_CODE, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

/* sync.h, vmmu_page_state_change(): "a page whose VMMU_PAGE_DIRTY is
 * cleared must be marked again at the next write".  A vCPU that wrote a
 * page under dirty logging holds a write entry that needs no marking; once
 * the bit is cleared that entry is gone, and the next write sets the bit
 * again. */
static void clearing_a_dirty_bit_makes_the_next_write_mark_the_page_again(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 4);
    struct vmmu_vm *vm = s.env.vm;
    assert_int_equal(vmmu_dirty_log_enable(vm, s.data_id, true), 0);
    struct vmmu_vcpu *a = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    struct vmmu_tlb_result res;
    uint32_t st;
    assert_non_null(vmmu_tlb_translate(a, DATA_VA + 4096, 8, VMMU_X86_ACC_WRITE, &res));
    assert_int_equal(vmmu_page_state_get(vm, DATA_GPA + 4096, &st), 0);
    assert_true(st & VMMU_PAGE_DIRTY);
    assert_non_null(vmmu_tlb_lookup_write(a, DATA_VA + 4096, 8));
    struct vmmu_gpa_range r = {DATA_GPA + 4096, 4096};
    assert_int_equal(vmmu_page_state_change(vm, &r, 1, 0, VMMU_PAGE_DIRTY), 0);
    assert_int_equal(vmmu_page_state_get(vm, DATA_GPA + 4096, &st), 0);
    assert_false(st & VMMU_PAGE_DIRTY);
    assert_null(vmmu_tlb_lookup_write(a, DATA_VA + 4096, 8));
    assert_non_null(vmmu_tlb_translate(a, DATA_VA + 4096, 8, VMMU_X86_ACC_WRITE, &res));
    assert_int_equal(vmmu_page_state_get(vm, DATA_GPA + 4096, &st), 0);
    assert_true(st & VMMU_PAGE_DIRTY);
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    vmmu_vcpu_destroy(a);
    sync_env_fini(&s);
}

/* Fill @v's write entries for data pages 0 .. @n - 1. */
static void write_all(struct vmmu_vcpu *v, uint64_t n)
{
    struct vmmu_tlb_result res;
    for (uint64_t i = 0; i < n; i++)
        assert_non_null(vmmu_tlb_translate(v, DATA_VA + i * 4096, 8, VMMU_X86_ACC_WRITE, &res));
}

static int write_hits(struct vmmu_vcpu *v, uint64_t i)
{
    return vmmu_tlb_lookup_write(v, DATA_VA + i * 4096, 8) != NULL;
}

/* docs/sync.md: more guest-physical ranges than a request holds (8) are
 * joined across their smallest gaps, "so a batch of scattered pages drops
 * a little more than it names rather than everything"; requests that
 * reach an offline vCPU before it runs merge the same way.  Every named
 * page must lose its write entry; pages in the largest gaps and beyond
 * the batch keep theirs. */
static void scattered_batches_drop_every_named_page_and_keep_the_largest_gaps(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 32);
    struct vmmu_vm *vm = s.env.vm;
    struct vmmu_vcpu *a = sync_vcpu(&s), *b = sync_vcpu(&s);
    write_all(a, 32);
    write_all(b, 32);
    /* Ten single pages: 0, 2, .. 16 one page apart, then 30. */
    struct vmmu_gpa_range batch[10];
    for (unsigned i = 0; i < 9; i++)
        batch[i] = (struct vmmu_gpa_range){DATA_GPA + 2 * i * 4096ull, 4096};
    batch[9] = (struct vmmu_gpa_range){DATA_GPA + 30 * 4096ull, 4096};
    assert_int_equal(vmmu_page_state_change(vm, batch, 10, VMMU_PAGE_CODE, 0), 0);
    /* A second batch for b, which is offline: merged with the first. */
    struct vmmu_gpa_range one = {DATA_GPA + 24 * 4096ull, 4096};
    assert_int_equal(vmmu_vcpu_online(a), 0);
    for (unsigned i = 0; i < 10; i++)
        assert_false(write_hits(a, (batch[i].gpa - DATA_GPA) / 4096));
    for (uint64_t i = 17; i < 30; i++)
        assert_true(write_hits(a, i)); /* the largest gap */
    assert_true(write_hits(a, 31));
    assert_int_equal(vmmu_vcpu_offline(a), 0);
    assert_int_equal(vmmu_page_state_change(vm, &one, 1, VMMU_PAGE_CODE, 0), 0);
    assert_int_equal(vmmu_vcpu_online(b), 0);
    for (unsigned i = 0; i < 10; i++)
        assert_false(write_hits(b, (batch[i].gpa - DATA_GPA) / 4096));
    assert_false(write_hits(b, 24));
    for (uint64_t i = 17; i < 24; i++)
        assert_true(write_hits(b, i));
    for (uint64_t i = 25; i < 30; i++)
        assert_true(write_hits(b, i));
    assert_true(write_hits(b, 31));
    assert_int_equal(vmmu_vcpu_offline(b), 0);
    vmmu_vcpu_destroy(a);
    vmmu_vcpu_destroy(b);
    sync_env_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vcpu_ids_are_small_distinct_and_reused_after_destroy),
        cmocka_unit_test(many_vcpus_get_ids_beyond_one_chunk),
        cmocka_unit_test(online_offline_and_safepoint_refuse_misuse),
        cmocka_unit_test(cpuset_grows_and_counts),
        cmocka_unit_test(bad_flush_requests_are_refused),
        cmocka_unit_test(local_flush_drops_only_the_callers_entries),
        cmocka_unit_test(requests_to_an_offline_vcpu_are_done_when_it_comes_online),
        cmocka_unit_test(requests_merge_and_one_safepoint_acts_on_all),
        cmocka_unit_test(a_requesting_vcpu_flushes_its_own_part_at_once),
        cmocka_unit_test(a_range_flush_starts_at_the_page_holding_va),
        cmocka_unit_test(a_range_flush_may_name_the_last_page_of_the_address_space),
        cmocka_unit_test(an_async_shootdown_drops_the_callers_own_part_before_it_returns),
        cmocka_unit_test(a_shootdown_acts_on_what_others_asked_of_its_caller),
        cmocka_unit_test(reclaim_hooks_see_removed_ranges_before_the_memory_goes),
        cmocka_unit_test(region_removal_drops_every_vcpus_entries_for_it),
        cmocka_unit_test(adding_a_region_over_a_cached_hole_drops_the_hole_entry),
        cmocka_unit_test(region_replace_is_atomic_and_drops_old_entries),
        cmocka_unit_test(marking_a_page_as_code_makes_cached_writes_report_it),
        cmocka_unit_test(clearing_a_dirty_bit_makes_the_next_write_mark_the_page_again),
        cmocka_unit_test(scattered_batches_drop_every_named_page_and_keep_the_largest_gaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
