/* x86 page walks racing other agents: a guest thread that rewrites a
 * page-table entry in a loop cannot keep a walk busy for ever (the restart
 * is bounded), and A/D updates made while the guest changes the same entry
 * never erase the guest's change. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "x86_env.h"

static const uint64_t PRWU = E_P | E_RW | E_US;

struct shared {
    struct x86_env env;
    uint64_t pml4, pdpt, pd, pt;
    uint64_t *pte; /* host pointer of the PTE for va 0x3000 */
    int stop;
};

static void build(struct shared *s)
{
    assert_int_equal(env_init(&s->env, 64 * KiB, NULL), 0);
    s->pml4 = env_page(&s->env);
    s->pdpt = env_page(&s->env);
    s->pd = env_page(&s->env);
    s->pt = env_page(&s->env);
    put64(&s->env, s->pml4, s->pdpt | PRWU);
    put64(&s->env, s->pdpt, s->pd | PRWU);
    put64(&s->env, s->pd, s->pt | PRWU);
    for (unsigned i = 0; i < 16; i++)
        put64(&s->env, s->pt + 8 * i, ((0x100ull + i) << 12) | PRWU);
    s->pte = (uint64_t *)(void *)(s->env.mem + s->pt + 8 * 3);
    struct vmmu_x86_regs r = regs_4level(s->pml4);
    assert_int_equal(vmmu_x86_set_state(&s->env.pg, &r), 0);
}

/* The guest: flip an available bit (bit 9, ignored by the walk) of the PTE
 * and clear its A bit, as fast as it can. */
static void *guest_rewrites(void *arg)
{
    struct shared *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_xor(s->pte, 1ull << 9, __ATOMIC_ACQ_REL);
        __atomic_fetch_and(s->pte, ~E_A, __ATOMIC_ACQ_REL);
    }
    return NULL;
}

static void walk_returns_within_the_restart_bound_while_the_guest_rewrites_the_pte(void **state)
{
    (void)state;
    struct shared s = {0};
    build(&s);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, guest_rewrites, &s), 0);

    unsigned ok = 0, busy = 0;
    for (unsigned i = 0; i < 20000; i++) {
        struct vmmu_x86_walk w;
        int rc = vmmu_x86_walk(&s.env.pg, 0x3000, 0, &w);
        assert_true(rc == 0 || rc == VMMU_EBUSY);
        assert_true(w.restarts <= VMMU_X86_WALK_RESTARTS_MAX);
        if (rc == 0) {
            assert_true(w.ok);
            assert_int_equal(w.gpa, 0x103000);
            ok++;
        } else {
            busy++;
        }
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    assert_int_equal(ok + busy, 20000);
    env_fini(&s.env);
}

/* Bits 61:52 of a non-leaf entry are ignored by 4-level paging: the guest
 * keeps a counter there. */
#define COUNT_SHIFT 52
#define COUNT_MASK (0x3ffull << COUNT_SHIFT)
#define GUEST_UPDATES 1000u

struct vcpu_arg {
    struct shared *s;
    struct vmmu_x86_paging pg; /* each vCPU has its own paging state */
    unsigned walks;
    int failed;
};

/* A vCPU writing to the 16 mapped pages until the guest is done. */
static void *vcpu_walks(void *arg)
{
    struct vcpu_arg *a = arg;
    while (!__atomic_load_n(&a->s->stop, __ATOMIC_ACQUIRE)) {
        struct vmmu_x86_walk w;
        unsigned n = __atomic_load_n(&a->walks, __ATOMIC_RELAXED);
        int rc = vmmu_x86_walk(&a->pg, (uint64_t)(n % 16) << 12, VMMU_X86_ACC_WRITE, &w);
        if (rc != 0 && rc != VMMU_EBUSY)
            a->failed = 1;
        if (rc == 0 && !w.ok)
            a->failed = 1;
        __atomic_store_n(&a->walks, n + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void accessed_bit_updates_never_erase_concurrent_guest_writes_to_the_entry(void **state)
{
    (void)state;
    struct shared s = {0};
    build(&s);
    uint64_t *pde = (uint64_t *)(void *)(s.env.mem + s.pd);
    struct vcpu_arg a[2] = {{&s, s.env.pg, 0, 0}, {&s, s.env.pg, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, vcpu_walks, &a[i]), 0);

    /* Start counting once both vCPUs are walking. */
    while (__atomic_load_n(&a[0].walks, __ATOMIC_ACQUIRE) == 0 ||
           __atomic_load_n(&a[1].walks, __ATOMIC_ACQUIRE) == 0)
        sched_yield();

    /* The guest: count up in the PDE's ignored bits and clear its A bit,
     * each time by compare-and-swap, so vCPUs keep setting A again.  A
     * walk that stored a stale value instead of compare-and-swapping would
     * lose some of these increments. */
    for (unsigned i = 0; i < GUEST_UPDATES; i++) {
        uint64_t old = __atomic_load_n(pde, __ATOMIC_ACQUIRE), nv;
        do {
            uint64_t count = ((old & COUNT_MASK) >> COUNT_SHIFT) + 1;
            nv = (old & ~COUNT_MASK & ~E_A) | (count << COUNT_SHIFT);
        } while (!__atomic_compare_exchange_n(pde, &old, nv, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_ACQUIRE));
        for (volatile int spin = 0; spin < 200; spin++)
            ;
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);

    assert_false(a[0].failed);
    assert_false(a[1].failed);
    assert_true(a[0].walks > 0 && a[1].walks > 0);
    uint64_t final = __atomic_load_n(pde, __ATOMIC_ACQUIRE);
    assert_int_equal((final & COUNT_MASK) >> COUNT_SHIFT, GUEST_UPDATES);
    assert_int_equal(final & 0x000ffffffffff000ull, s.pt);
    env_fini(&s.env);
}

/* A walk on a host thread (no vCPU, never a registered reader) whose
 * root table is a hole sharing the map's last-level node with a region
 * another thread adds and removes: the removal prunes that node and
 * frees it after a grace period, which must wait for the walk (a
 * read-side section of its own).  Under AddressSanitizer a walk that read
 * the freed node is a use-after-free report.  The hole reads as
 * all-ones, so every walk ends in a reserved-bit #PF. */
struct hole_walk {
    struct x86_env env;
    int stop;
    unsigned walks, wrong;
};

static void *walk_through_a_hole(void *arg)
{
    struct hole_walk *h = arg;
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        struct vmmu_x86_walk w;
        if (vmmu_x86_walk(&h->env.pg, 0x1000, 0, &w) != 0 || w.ok ||
            w.fault.vector != VMMU_X86_VEC_PF || !(w.fault.error_code & VMMU_X86_PF_RSVD))
            h->wrong++;
        __atomic_fetch_add(&h->walks, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void a_host_threads_walk_beside_a_removed_region_reads_no_freed_node(void **state)
{
    (void)state;
    struct hole_walk h = {0};
    assert_int_equal(env_init(&h.env, 64 * KiB, NULL), 0);
    struct vmmu_x86_regs r = regs_4level(1024 * MiB); /* a hole, far from the RAM */
    assert_int_equal(vmmu_x86_set_state(&h.env.pg, &r), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, walk_through_a_hole, &h), 0);
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 1024 * MiB + 4 * KiB, .size = 4 * KiB,
                                 .mmio = &x86_env_counting_mmio};
    /* The walks must overlap the changes: wait for the first walk, and go
     * on past 3000 rounds until 1000 walks ran beside them (a loaded
     * machine may not schedule the walker at once). */
    while (!__atomic_load_n(&h.walks, __ATOMIC_RELAXED))
        sched_yield();
    unsigned first = __atomic_load_n(&h.walks, __ATOMIC_RELAXED);
    for (unsigned round = 0;
         round < 3000 || __atomic_load_n(&h.walks, __ATOMIC_RELAXED) - first < 1000; round++) {
        uint32_t id;
        assert_int_equal(vmmu_region_add(h.env.vm, &d, &id), 0);
        assert_int_equal(vmmu_region_remove(h.env.vm, id), 0);
    }
    __atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.wrong, 0);
    env_fini(&h.env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(walk_returns_within_the_restart_bound_while_the_guest_rewrites_the_pte),
        cmocka_unit_test(accessed_bit_updates_never_erase_concurrent_guest_writes_to_the_entry),
        cmocka_unit_test(a_host_threads_walk_beside_a_removed_region_reads_no_freed_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
