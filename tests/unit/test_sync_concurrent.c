/* SPDX-License-Identifier: MIT */
/* Remote flushes between threads: a synchronous shootdown returns only
 * after a running target dropped the entry; an offline target is not
 * waited for and flushes when it comes back; two vCPUs shooting each
 * other down do not deadlock. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_sync_env.h"
#include "vmmu/vmmu.h"

enum { ROUNDS = 2000 };

struct shared {
    struct sync_env s;
    struct vmmu_vcpu *target;
    atomic_int stop, ready;
    atomic_uint round;  /* remaps whose shootdown returned */
    atomic_ulong stale, reads;
};

/* Page 0 of DATA_VA maps data page round % 8 once shootdown number
 * `round` has returned.  After the target's safe point the main thread can
 * publish that round, write the next PTE, and no more (the next shootdown
 * waits for the target's next safe point); and the target may have loaded
 * `round` just before the publication.  So a read may see rounds r .. r + 2
 * for the r it loaded; older pages are stale. */
static void *target_main(void *arg)
{
    struct shared *sh = arg;
    assert_int_equal(vmmu_vcpu_online(sh->target), 0);
    atomic_store(&sh->ready, 1);
    while (!atomic_load(&sh->stop)) {
        assert_int_equal(vmmu_vcpu_safepoint(sh->target), 0);
        unsigned r = atomic_load_explicit(&sh->round, memory_order_acquire);
        uint64_t id = sync_read(sh->target, 0);
        bool ok = false;
        for (unsigned k = r; k <= r + 2; k++)
            ok |= id == DATA_GPA + (k % 8) * 4096;
        if (!ok)
            atomic_fetch_add(&sh->stale, 1);
        atomic_fetch_add(&sh->reads, 1);
    }
    assert_int_equal(vmmu_vcpu_offline(sh->target), 0);
    return NULL;
}

static void a_sync_shootdown_returns_after_the_running_target_dropped_the_entry(void **state)
{
    (void)state;
    static struct shared sh;
    memset(&sh, 0, sizeof(sh));
    sync_env_init(&sh.s, 8);
    sh.target = sync_vcpu(&sh.s);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, target_main, &sh), 0);
    while (!atomic_load(&sh.ready))
        ;
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    for (unsigned r = 1; r <= ROUNDS; r++) {
        sync_env_remap(&sh.s, 0, r % 8);
        assert_int_equal(vmmu_shootdown_sync(sh.s.env.vm, NULL, NULL, &f), 0);
        atomic_store_explicit(&sh.round, r, memory_order_release);
    }
    atomic_store(&sh.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&sh.stale), 0);
    assert_true(atomic_load(&sh.reads) > 0);
    vmmu_vcpu_destroy(sh.target);
    sync_env_fini(&sh.s);
}

struct sleeper {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    pthread_mutex_t m;
    pthread_cond_t c;
    int phase; /* 1: offline and waiting; 2: released */
    uint64_t after;
    int hit_after;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *sl = arg;
    assert_int_equal(vmmu_vcpu_online(sl->v), 0);
    assert_int_equal(sync_read(sl->v, 1), DATA_GPA + 4096);
    assert_int_equal(vmmu_vcpu_offline(sl->v), 0);
    pthread_mutex_lock(&sl->m);
    sl->phase = 1;
    pthread_cond_broadcast(&sl->c);
    while (sl->phase != 2)
        pthread_cond_wait(&sl->c, &sl->m);
    pthread_mutex_unlock(&sl->m);
    assert_int_equal(vmmu_vcpu_online(sl->v), 0);
    sl->hit_after = sync_hits(sl->v, 1);
    sl->after = sync_read(sl->v, 1);
    assert_int_equal(vmmu_vcpu_offline(sl->v), 0);
    return NULL;
}

static void an_offline_target_is_not_waited_for_and_flushes_before_it_runs(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct sleeper sl = {.s = &s, .v = sync_vcpu(&s)};
    pthread_mutex_init(&sl.m, NULL);
    pthread_cond_init(&sl.c, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sleeper_main, &sl), 0);
    pthread_mutex_lock(&sl.m);
    while (sl.phase != 1)
        pthread_cond_wait(&sl.c, &sl.m);
    pthread_mutex_unlock(&sl.m);
    /* the target is blocked offline: this returns without it */
    sync_env_remap(&s, 1, 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, NULL, NULL, &f), 0);
    pthread_mutex_lock(&sl.m);
    sl.phase = 2;
    pthread_cond_broadcast(&sl.c);
    pthread_mutex_unlock(&sl.m);
    pthread_join(th, NULL);
    assert_false(sl.hit_after);
    assert_int_equal(sl.after, DATA_GPA);
    pthread_mutex_destroy(&sl.m);
    pthread_cond_destroy(&sl.c);
    vmmu_vcpu_destroy(sl.v);
    sync_env_fini(&s);
}

struct mutual {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    atomic_int *go;
    int done;
};

static void *mutual_main(void *arg)
{
    struct mutual *m = arg;
    assert_int_equal(vmmu_vcpu_online(m->v), 0);
    while (!atomic_load(m->go))
        ;
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA, .npages = 1, .pcid = 0};
    for (int i = 0; i < ROUNDS; i++) {
        (void)sync_read(m->v, 0);
        assert_int_equal(vmmu_shootdown_sync(m->s->env.vm, m->v, NULL, &f), 0);
        assert_int_equal(vmmu_vcpu_safepoint(m->v), 0);
        m->done++;
    }
    assert_int_equal(vmmu_vcpu_offline(m->v), 0);
    return NULL;
}

static void two_vcpus_shooting_each_other_down_do_not_deadlock(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    atomic_int go = 0;
    struct mutual m[2] = {{&s, sync_vcpu(&s), &go, 0}, {&s, sync_vcpu(&s), &go, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mutual_main, &m[i]), 0);
    atomic_store(&go, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(m[0].done, ROUNDS);
    assert_int_equal(m[1].done, ROUNDS);
    for (int i = 0; i < 2; i++)
        vmmu_vcpu_destroy(m[i].v);
    sync_env_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_sync_shootdown_returns_after_the_running_target_dropped_the_entry),
        cmocka_unit_test(an_offline_target_is_not_waited_for_and_flushes_before_it_runs),
        cmocka_unit_test(two_vcpus_shooting_each_other_down_do_not_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
