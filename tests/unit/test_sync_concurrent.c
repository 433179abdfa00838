/* SPDX-License-Identifier: MIT */
/* Remote flushes between threads: a synchronous shootdown returns only
 * after a running target dropped the entry; an offline target is not
 * waited for and flushes when it comes back; two vCPUs shooting each
 * other down do not deadlock; a thread that exits with its vCPU online
 * leaves it offline.  And a page-out racing a region replace on another
 * thread. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "tlb/tlb_internal.h"
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

struct leaver {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    uint64_t read;
};

/* Online, fill an entry for page 1, and leave without going offline. */
static void *leaver_main(void *arg)
{
    struct leaver *l = arg;
    assert_int_equal(vmmu_vcpu_online(l->v), 0);
    l->read = sync_read(l->v, 1);
    return NULL;
}

/* docs/sync.md: "A thread that exits with a vCPU online takes it offline
 * and unregisters from QSBR on its way out."  Nobody waits for that vCPU
 * afterwards (a synchronous shootdown returns, a region removal's grace
 * period ends), another thread may run it, and it acts there on what was
 * asked of it meanwhile.  (The alarm turns a wait for ever into a
 * failure.) */
static void a_thread_that_exits_with_its_vcpu_online_leaves_it_offline(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct leaver l = {.s = &s, .v = sync_vcpu(&s)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, leaver_main, &l), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(l.read, DATA_GPA + 4096);
    alarm(60);
    sync_env_remap(&s, 1, 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + 4096, .npages = 1,
                           .pcid = VMMU_FLUSH_ANY_PCID};
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, NULL, NULL, &f), 0);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 1ull << 40, .size = 4096};
    uint32_t id;
    assert_int_equal(vmmu_region_add(s.env.vm, &d, &id), 0);
    assert_int_equal(vmmu_region_remove(s.env.vm, id), 0);
    alarm(0);
    assert_int_equal(vmmu_vcpu_online(l.v), 0);
    assert_false(sync_hits(l.v, 1));
    assert_int_equal(sync_read(l.v, 1), DATA_GPA);
    assert_int_equal(vmmu_vcpu_offline(l.v), 0);
    vmmu_vcpu_destroy(l.v);
    sync_env_fini(&s);
}

/* vmmu_vcpu_online() of a vCPU that another thread runs returns
 * VMMU_EBUSY, also while that thread waits offline inside vmmu (here a
 * synchronous shootdown waiting for a busy vCPU b): the vCPU is offline
 * for requesters then, but it is still that thread's.  It used to go
 * online on the second thread as well. */
struct claim {
    struct sync_env *s;
    struct vmmu_vcpu *a, *b;
    atomic_int b_online, asked, shot;
    int rc;
};

static void *claim_busy_main(void *arg)
{
    struct claim *c = arg;
    assert_int_equal(vmmu_vcpu_online(c->b), 0);
    atomic_store(&c->b_online, 1);
    while (!atomic_load(&c->asked)) /* no safe point meanwhile */
        sched_yield();
    assert_int_equal(vmmu_vcpu_safepoint(c->b), 0);
    assert_int_equal(vmmu_vcpu_offline(c->b), 0);
    return NULL;
}

static void *claim_other_main(void *arg)
{
    struct claim *c = arg;
    /* Until a's thread waits for b offline. */
    while (atomic_load(&c->a->sync->state) != SYNC_OFFLINE)
        sched_yield();
    assert_int_equal(atomic_load(&c->shot), 0);
    c->rc = vmmu_vcpu_online(c->a);
    if (c->rc == 0)
        vmmu_vcpu_offline(c->a);
    atomic_store(&c->asked, 1);
    return NULL;
}

static void a_vcpu_waiting_inside_vmmu_cannot_be_taken_online_by_another_thread(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct claim c = {.s = &s, .a = sync_vcpu(&s), .b = sync_vcpu(&s), .rc = -1};
    pthread_t tb, tu;
    alarm(60);
    assert_int_equal(pthread_create(&tb, NULL, claim_busy_main, &c), 0);
    while (!atomic_load(&c.b_online))
        sched_yield();
    assert_int_equal(vmmu_vcpu_online(c.a), 0);
    assert_int_equal(pthread_create(&tu, NULL, claim_other_main, &c), 0);
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, c.a, NULL, &f), 0);
    atomic_store(&c.shot, 1);
    assert_int_equal(pthread_join(tu, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    alarm(0);
    assert_int_equal(c.rc, VMMU_EBUSY);
    assert_int_equal(vmmu_vcpu_safepoint(c.a), 0); /* still this thread's */
    assert_int_equal(vmmu_vcpu_offline(c.a), 0);
    vmmu_vcpu_destroy(c.a);
    vmmu_vcpu_destroy(c.b);
    sync_env_fini(&s);
}

/* A vCPU another thread has online is not destroyed under it: VMMU_EBUSY,
 * and the thread goes on using it.  Once it is offline, destroy works. */
struct online_holder {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    atomic_int online, release;
    uint64_t read;
};

static void *online_holder_main(void *arg)
{
    struct online_holder *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->v), 0);
    atomic_store(&h->online, 1);
    while (!atomic_load(&h->release))
        assert_int_equal(vmmu_vcpu_safepoint(h->v), 0);
    h->read = sync_read(h->v, 1);
    assert_int_equal(vmmu_vcpu_offline(h->v), 0);
    return NULL;
}

static void destroying_a_vcpu_another_thread_has_online_is_refused(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct online_holder h = {.s = &s, .v = sync_vcpu(&s)};
    pthread_t th;
    alarm(60);
    assert_int_equal(pthread_create(&th, NULL, online_holder_main, &h), 0);
    while (!atomic_load(&h.online))
        sched_yield();
    assert_int_equal(vmmu_vcpu_destroy(h.v), VMMU_EBUSY);
    assert_int_equal(vmmu_vm_destroy(s.env.vm), VMMU_EBUSY);
    atomic_store(&h.release, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    alarm(0);
    assert_int_equal(h.read, DATA_GPA + 4096);
    assert_int_equal(vmmu_vcpu_destroy(h.v), 0);
    /* On its own thread, destroy takes the vCPU offline first. */
    struct vmmu_vcpu *w = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(w), 0);
    assert_int_equal(vmmu_vcpu_destroy(w), 0);
    struct vmmu_vcpu *next = sync_vcpu(&s);
    assert_int_equal(vmmu_vcpu_online(next), 0); /* the thread holds no vCPU now */
    assert_int_equal(vmmu_vcpu_offline(next), 0);
    vmmu_vcpu_destroy(next);
    sync_env_fini(&s);
}

/* Two threads that take the same vCPU online at once: one gets it, the
 * other VMMU_EBUSY.  Both used to get it (in about half the rounds). */
struct online_race {
    struct vmmu_vcpu *v;
    atomic_int go, holders, both;
};

static void *online_racer_main(void *arg)
{
    struct online_race *r = arg;
    while (!atomic_load(&r->go))
        ;
    int rc = vmmu_vcpu_online(r->v);
    if (rc == 0) {
        if (atomic_fetch_add(&r->holders, 1) != 0)
            atomic_store(&r->both, 1);
        struct timespec ms1 = {0, 1000 * 1000};
        nanosleep(&ms1, NULL);
        atomic_fetch_sub(&r->holders, 1);
        assert_int_equal(vmmu_vcpu_offline(r->v), 0);
    } else {
        assert_int_equal(rc, VMMU_EBUSY);
    }
    return NULL;
}

static void two_threads_taking_one_vcpu_online_at_once_do_not_both_get_it(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct online_race r = {.v = sync_vcpu(&s)};
    for (int round = 0; round < 500 && !atomic_load(&r.both); round++) {
        atomic_store(&r.go, 0);
        pthread_t t1, t2;
        assert_int_equal(pthread_create(&t1, NULL, online_racer_main, &r), 0);
        assert_int_equal(pthread_create(&t2, NULL, online_racer_main, &r), 0);
        struct timespec us200 = {0, 200 * 1000};
        nanosleep(&us200, NULL);
        atomic_store(&r.go, 1);
        assert_int_equal(pthread_join(t1, NULL), 0);
        assert_int_equal(pthread_join(t2, NULL), 0);
    }
    /* Both may get it one after the other, never both at once. */
    assert_int_equal(atomic_load(&r.both), 0);
    vmmu_vcpu_destroy(r.v);
    sync_env_fini(&s);
}

/* A region replaced on another thread while a page-out is between looking
 * up one of its pages and marking it paged out (vmmu__pager_evict_hook
 * stops it there). */
struct replace_race {
    struct sync_env *s;
    pthread_t th;
    pthread_mutex_t m;
    pthread_cond_t c;
    int started, done, rc;
    uint32_t new_id;
};
static struct replace_race *race;

static void *replace_main(void *arg)
{
    struct replace_race *r = arg;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = 2 * 4096};
    int rc = vmmu_region_replace(r->s->env.vm, r->s->data_id, &d, &r->new_id);
    pthread_mutex_lock(&r->m);
    r->rc = rc;
    r->done = 1;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
    return NULL;
}

/* Start the replace, and give it up to 200 ms to finish before the
 * page-out goes on.  It cannot finish while the page-out holds the map,
 * so when the wait ends does not matter; it only lets a vmmu that does
 * not hold it show the race every time. */
static void replace_during_page_out(struct vmmu_vm *vm, uint64_t gfn)
{
    (void)vm;
    (void)gfn;
    if (race->started)
        return;
    race->started = 1;
    assert_int_equal(pthread_create(&race->th, NULL, replace_main, race), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&race->m);
    while (!race->done && pthread_cond_timedwait(&race->c, &race->m, &until) == 0)
        ;
    pthread_mutex_unlock(&race->m);
}

/* pager.h: "every function here may be called from any thread".  A page
 * of a region that is replaced (or removed) on another thread while a
 * page-out looks at it goes with the old region: the new region's page is
 * resident, usable, and nothing counts it as out.  (vmmu used to mark the
 * new region's page paged out with no record of it, so that every access
 * to it failed with VMMU_EPAGEDOUT for good; a stress run of page-outs
 * against replaces on two threads showed it about once in 700 rounds.) */
static void a_region_replaced_during_a_page_out_keeps_its_new_pages_usable(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 2);
    struct vmmu_pager *pg;
    assert_int_equal(vmmu_pager_create(s.env.vm, NULL, &pg), 0);
    struct replace_race r = {.s = &s};
    pthread_mutex_init(&r.m, NULL);
    pthread_cond_init(&r.c, NULL);
    race = &r;
    vmmu__pager_evict_hook = replace_during_page_out;
    struct vmmu_gpa_range one = {DATA_GPA, 4096};
    alarm(60);
    assert_int_equal(vmmu_pager_page_out(pg, &one, 1), 0);
    assert_true(r.started);
    assert_int_equal(pthread_join(r.th, NULL), 0);
    alarm(0);
    vmmu__pager_evict_hook = NULL;
    assert_int_equal(r.rc, 0);
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(s.env.vm, DATA_GPA, &st), 0);
    assert_int_equal(st & VMMU_PAGE_PAGED_OUT, 0);
    uint64_t word = 1;
    assert_int_equal(vmmu_gpa_read(s.env.vm, DATA_GPA, &word, 8, 0, NULL), 0);
    assert_int_equal(word, 0); /* the new region's memory */
    assert_int_equal(vmmu_pager_page_in(pg, &one, 1), 0);
    struct vmmu_pager_stats ps;
    assert_int_equal(vmmu_pager_stats(pg, &ps), 0);
    assert_int_equal(ps.out, 0);
    /* and it pages out and back like any other */
    word = 77;
    assert_int_equal(vmmu_gpa_write(s.env.vm, DATA_GPA, &word, 8, 0, NULL), 0);
    assert_int_equal(vmmu_pager_page_out(pg, &one, 1), 0);
    word = 0;
    assert_int_equal(vmmu_gpa_read(s.env.vm, DATA_GPA, &word, 8, 0, NULL), 0);
    assert_int_equal(word, 77);
    assert_int_equal(vmmu_pager_destroy(pg), 0);
    pthread_mutex_destroy(&r.m);
    pthread_cond_destroy(&r.c);
    sync_env_fini(&s);
}

/* A vCPU thread that asks for the map's lock between instructions while
 * another thread holds it and waits for every online vCPU (from inside
 * vmmu_region_foreach(), which holds the lock: a synchronous shootdown, a
 * page-state change that flushes every vCPU, a device-model port range
 * whose addition waits a grace period): the vCPU goes offline while it
 * waits for the lock, or the two would wait for each other for ever.  Each round has the vCPU call
 * one of the public functions that take the lock, started only once the
 * holder has it, and the shootdown begins once the vCPU is in that call.
 * (The alarm turns the deadlock into a failure.) */
enum asker_call { ASK_INFO, ASK_FOREACH, ASK_DIRTY, ASK_PAGER_STATS, ASK_PAGE_IN, ASK_CALLS };
enum holder_wait { HOLD_SHOOTDOWN, HOLD_PAGE_STATE, HOLD_DM_PORTS, HOLD_WAITS };

struct lock_asker {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    struct vmmu_pager *pg;
    struct vmmu_dm_server *srv;
    atomic_int stop;
    atomic_int go, entered, done; /* round asked for, started, finished */
    atomic_ulong failed;
    struct vmmu_flush flush;
};

static int count_one(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    ++*(unsigned *)arg;
    return 0;
}

static void *lock_asker_main(void *arg)
{
    struct lock_asker *a = arg;
    struct vmmu_vm *vm = a->s->env.vm;
    assert_int_equal(vmmu_vcpu_online(a->v), 0);
    while (!atomic_load(&a->stop)) {
        assert_int_equal(vmmu_vcpu_safepoint(a->v), 0);
        int round = atomic_load(&a->go);
        if (round == atomic_load(&a->done)) {
            sched_yield();
            continue;
        }
        atomic_store(&a->entered, round);
        int rc = 0;
        switch (round % ASK_CALLS) {
        case ASK_INFO: {
            struct vmmu_region_info info;
            rc = vmmu_region_info(vm, a->s->data_id, &info);
            break;
        }
        case ASK_FOREACH: {
            unsigned n = 0;
            rc = vmmu_region_foreach(vm, count_one, &n);
            rc = rc ? rc : n == 0;
            break;
        }
        case ASK_DIRTY: {
            uint64_t bitmap[512 / 64];
            rc = vmmu_dirty_log_get_and_clear(vm, a->s->data_id, bitmap, 512 / 64, NULL);
            break;
        }
        case ASK_PAGER_STATS: {
            struct vmmu_pager_stats st;
            rc = vmmu_pager_stats(a->pg, &st);
            break;
        }
        case ASK_PAGE_IN: {
            struct vmmu_gpa_range one = {DATA_GPA, 4096};
            rc = vmmu_pager_page_in(a->pg, &one, 1);
            break;
        }
        }
        if (rc)
            atomic_fetch_add(&a->failed, 1);
        atomic_store(&a->done, round);
    }
    assert_int_equal(vmmu_vcpu_offline(a->v), 0);
    return NULL;
}

static int no_device_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    (void)req;
    return 0;
}

/* Under the map's lock: wait until the vCPU has started a call that needs
 * the lock, then wait for every online vCPU. */
static int shoot_while_it_waits(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct lock_asker *a = arg;
    int round = atomic_load(&a->done) + 1;
    atomic_store(&a->go, round);
    while (atomic_load(&a->entered) != round)
        sched_yield();
    struct vmmu_gpa_range one = {DATA_GPA + 4096, 4096};
    switch (round / ASK_CALLS % HOLD_WAITS) {
    case HOLD_SHOOTDOWN:
        assert_int_equal(vmmu_shootdown_sync(a->s->env.vm, NULL, NULL, &a->flush), 0);
        break;
    case HOLD_PAGE_STATE:
        assert_int_equal(vmmu_page_state_change(a->s->env.vm, &one, 1, VMMU_PAGE_CODE, 0), 0);
        break;
    case HOLD_DM_PORTS:
        assert_int_equal(vmmu_dm_map_ports(a->srv, (uint16_t)(0x100 + round), 1, 0, NULL), 0);
        break;
    }
    return 1;
}

static void a_vcpu_waiting_for_the_maps_lock_does_not_hold_up_its_holder(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct lock_asker a = {.s = &s, .v = sync_vcpu(&s), .flush = {.type = VMMU_FLUSH_ALL}};
    assert_int_equal(vmmu_pager_create(s.env.vm, NULL, &a.pg), 0);
    assert_int_equal(vmmu_dirty_log_enable(s.env.vm, s.data_id, true), 0);
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(s.env.vm, NULL, &dm), 0);
    static const struct vmmu_dm_ops ops = {.access = no_device_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, NULL, &a.srv), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lock_asker_main, &a), 0);
    alarm(60);
    for (int round = 1; round <= 8 * ASK_CALLS * HOLD_WAITS; round++) {
        assert_int_equal(vmmu_region_foreach(s.env.vm, shoot_while_it_waits, &a), 1);
        while (atomic_load(&a.done) != round)
            sched_yield();
    }
    alarm(0);
    atomic_store(&a.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&a.failed), 0);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    assert_int_equal(vmmu_pager_destroy(a.pg), 0);
    vmmu_vcpu_destroy(a.v);
    sync_env_fini(&s);
}

/* The PD of DATA_VA in @s's tables. */
static uint64_t data_pd(struct sync_env *s)
{
    uint64_t pdpt = get64(&s->env, slot9(s->root, DATA_VA, 4)) & SE_ADDR_MASK;
    return get64(&s->env, slot9(pdpt, DATA_VA, 3)) & SE_ADDR_MASK;
}

/* Wait (yielding) until @flag is set, at most @seconds; whether it was. */
static bool wait_flag(atomic_int *flag, int seconds)
{
    time_t until = time(NULL) + seconds;
    while (!atomic_load(flag) && time(NULL) <= until)
        sched_yield();
    return atomic_load(flag) != 0;
}

struct walker {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    atomic_int go, in_handler, done, done_remap;
    uint64_t first, second; /* what page 0 of DATA_VA read, twice */
};

static void *walker_main(void *arg)
{
    struct walker *w = arg;
    assert_int_equal(vmmu_vcpu_online(w->v), 0);
    while (!atomic_load(&w->go)) {
        assert_int_equal(vmmu_vcpu_safepoint(w->v), 0);
        sched_yield();
    }
    w->first = sync_read(w->v, 0);
    w->second = sync_read(w->v, 0);
    atomic_store(&w->done, 1);
    assert_int_equal(vmmu_vcpu_offline(w->v), 0);
    return NULL;
}

/* Under the map's lock: start the walker, and say whether its walk
 * finished meanwhile. */
static int walk_while_locked(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct walker *w = arg;
    atomic_store(&w->go, 1);
    return wait_flag(&w->done, 10) ? 1 : 2;
}

/* An A/D update in a page table under dirty logging marks the table's page
 * dirty without the map's lock: a vCPU thread waits for that lock offline,
 * and a walk that went offline halfway would hand back a translation older
 * than the flushes the vCPU acted on meanwhile (a guest's page-table write
 * was lost that way under a pager).  So the walk finishes while another
 * thread holds the lock. */
static void a_walk_under_dirty_logging_does_not_wait_for_the_maps_lock(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct walker w = {.s = &s, .v = sync_vcpu(&s)};
    uint64_t pte_at = slot9(s.pt, DATA_VA, 1);
    put64(&s.env, pte_at, DATA_GPA | E_P | E_RW | E_US); /* A clear: the walk sets it */
    assert_int_equal(vmmu_dirty_log_enable(s.env.vm, s.env.ram_id, true), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walker_main, &w), 0);
    int held = vmmu_region_foreach(s.env.vm, walk_while_locked, &w);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(held, 1);
    assert_int_equal(w.first, DATA_GPA);
    assert_true(get64(&s.env, pte_at) & E_A);
    /* The table's page is in the dirty log. */
    uint64_t bitmap[4 * MiB / 4096 / 64] = {0};
    assert_int_equal(vmmu_dirty_log_get_and_clear(s.env.vm, s.env.ram_id, bitmap,
                                                  sizeof(bitmap) / 8, NULL), 0);
    uint64_t pfn = s.pt >> 12;
    assert_true(bitmap[pfn / 64] & (1ull << (pfn % 64)));
    vmmu_vcpu_destroy(w.v);
    sync_env_fini(&s);
}

/* The page-in handler of the next test: on the vCPU's thread, it asks for
 * the map's lock, which the main thread holds, so the vCPU waits offline;
 * then the page is resident. */
static int page_in_slowly(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct walker *w = opaque;
    atomic_store(&w->in_handler, 1);
    struct vmmu_region_info info;
    int rc = vmmu_region_info(vm, w->s->env.ram_id, &info);
    if (rc)
        return rc;
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

/* Under the map's lock: once the walker's walk is in the page-in of its
 * page table, point DATA_VA at another table (page 0 -> data page 1) and
 * shoot every vCPU down. */
static int remap_during_the_page_in(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct walker *w = arg;
    atomic_store(&w->go, 1);
    if (!wait_flag(&w->in_handler, 10))
        return 2;
    uint64_t pt2 = env_page(&w->s->env);
    put64(&w->s->env, slot9(pt2, DATA_VA, 1), (DATA_GPA + 4096) | E_P | E_RW | E_US | E_A | E_D);
    put64(&w->s->env, slot9(data_pd(w->s), DATA_VA, 2), pt2 | E_P | E_RW | E_US | E_A);
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(w->s->env.vm, NULL, NULL, &all), 0);
    return 1;
}

/* A fill whose walk waited offline (here in the page-in of a page table)
 * may have acted on flushes meanwhile: what it read before is older than
 * they are, so it walks again.  Once the shootdown that follows a remap
 * has returned, the vCPU uses the new translation, in the access that was
 * under way and in the TLB afterwards. */
static void a_fill_whose_walk_waited_offline_walks_again(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct walker w = {.s = &s, .v = sync_vcpu(&s)};
    assert_int_equal(vmmu_p2m_set_pagein_handler(s.env.vm, page_in_slowly, &w), 0);
    assert_int_equal(vmmu__page_state_update(s.env.vm, s.pt, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walker_main, &w), 0);
    int held = vmmu_region_foreach(s.env.vm, remap_during_the_page_in, &w);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(held, 1);
    assert_int_equal(w.first, DATA_GPA + 4096);
    assert_int_equal(w.second, DATA_GPA + 4096);
    vmmu_vcpu_destroy(w.v);
    sync_env_fini(&s);
}

/* The count of vmmu's locks a thread holds stays right when a thread
 * without a vCPU waited for the change lock: a vCPU it runs afterwards
 * parks for an exclusive section as any other.  (The count used to miss
 * that lock and wrap below zero at its release, and the vCPU then never
 * parked: the section ran beside it.) */
struct count_after_wait {
    struct sync_env *s;
    struct vmmu_vcpu *a, *b;
    atomic_int waiting, online, section_done;
    int done_at_safepoint;
};

static void *host_then_vcpu_main(void *arg)
{
    struct count_after_wait *c = arg;
    atomic_store(&c->waiting, 1);
    vmmu__sync_change_lock(c->s->env.vm); /* held by the test: waits */
    vmmu__sync_change_unlock(c->s->env.vm);
    assert_int_equal(vmmu_vcpu_online(c->a), 0);
    atomic_store(&c->online, 1);
    /* vCPU b's section posts a request to this vCPU and waits for it:
     * once the request is here, the safe point parks it until the section
     * is over. */
    while (atomic_load(&c->a->sync->req_gen) == c->a->sync->handled_gen)
        sched_yield();
    assert_int_equal(vmmu_vcpu_safepoint(c->a), 0);
    c->done_at_safepoint = atomic_load(&c->section_done);
    assert_int_equal(vmmu_vcpu_offline(c->a), 0);
    return NULL;
}

static void *short_section_main(void *arg)
{
    struct count_after_wait *c = arg;
    assert_int_equal(vmmu_vcpu_online(c->b), 0);
    while (!atomic_load(&c->online)) {
        assert_int_equal(vmmu_vcpu_safepoint(c->b), 0);
        sched_yield();
    }
    vmmu__sync_exclusive_begin(c->s->env.vm);
    atomic_store(&c->section_done, 1);
    vmmu__sync_exclusive_end(c->s->env.vm);
    assert_int_equal(vmmu_vcpu_offline(c->b), 0);
    return NULL;
}

static void a_thread_that_waited_for_the_change_lock_without_a_vcpu_parks_later(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct count_after_wait c = {.s = &s, .a = sync_vcpu(&s), .b = sync_vcpu(&s)};
    vmmu__sync_change_lock(s.env.vm);
    pthread_t ta, tb;
    alarm(60);
    assert_int_equal(pthread_create(&ta, NULL, host_then_vcpu_main, &c), 0);
    while (!atomic_load(&c.waiting))
        sched_yield();
    struct timespec ms20 = {0, 20 * 1000 * 1000};
    nanosleep(&ms20, NULL); /* in the lock wait by now */
    vmmu__sync_change_unlock(s.env.vm);
    assert_int_equal(pthread_create(&tb, NULL, short_section_main, &c), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    alarm(0);
    assert_int_equal(c.done_at_safepoint, 1);
    vmmu_vcpu_destroy(c.a);
    vmmu_vcpu_destroy(c.b);
    sync_env_fini(&s);
}

/* The same when the page-in handler takes the vCPU offline itself, as
 * vmmu_vcpu_offline() says to before blocking (on a slow backing store,
 * say), and online again before it returns: the fill walks again. */
static int page_in_offline_by_hand(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct walker *w = opaque;
    assert_int_equal(vmmu_vcpu_offline(w->v), 0);
    atomic_store(&w->in_handler, 1);
    while (!atomic_load(&w->done_remap))
        sched_yield();
    assert_int_equal(vmmu_vcpu_online(w->v), 0);
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

static void a_fill_whose_page_in_went_offline_by_hand_walks_again(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct walker w = {.s = &s, .v = sync_vcpu(&s)};
    assert_int_equal(vmmu_p2m_set_pagein_handler(s.env.vm, page_in_offline_by_hand, &w), 0);
    assert_int_equal(vmmu__page_state_update(s.env.vm, s.pt, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walker_main, &w), 0);
    atomic_store(&w.go, 1);
    while (!atomic_load(&w.in_handler))
        sched_yield();
    /* The vCPU is offline: point DATA_VA at another table (page 0 -> data
     * page 1) and shoot it down (not waited for: it acts when online). */
    uint64_t pt2 = env_page(&s.env);
    put64(&s.env, slot9(pt2, DATA_VA, 1), (DATA_GPA + 4096) | E_P | E_RW | E_US | E_A | E_D);
    put64(&s.env, slot9(data_pd(&s), DATA_VA, 2), pt2 | E_P | E_RW | E_US | E_A);
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(s.env.vm, NULL, NULL, &all), 0);
    atomic_store(&w.done_remap, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.first, DATA_GPA + 4096);
    assert_int_equal(w.second, DATA_GPA + 4096);
    vmmu_vcpu_destroy(w.v);
    sync_env_fini(&s);
}

/* A page-in handler that takes its vCPU offline by hand still runs inside
 * that vCPU's access, which goes on once it returns: meanwhile no other
 * thread may destroy the vCPU or put it online (both get VMMU_EBUSY; the
 * claim used to be given up, so a destroy freed the vCPU under its own
 * fill).  A handler that returns with the vCPU offline gives it up when
 * the access is over. */
struct kept {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    bool online_again;            /* the handler puts the vCPU online before returning */
    atomic_int in_handler, other_done;
    int online_rc;                /* the handler's vmmu_vcpu_online() */
    uint64_t gpa;                 /* what the access translated to */
};

static int page_in_kept_offline(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct kept *k = opaque;
    assert_int_equal(vmmu_vcpu_offline(k->v), 0);
    atomic_store(&k->in_handler, 1);
    while (!atomic_load(&k->other_done))
        sched_yield();
    if (k->online_again)
        k->online_rc = vmmu_vcpu_online(k->v);
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

static void *kept_main(void *arg)
{
    struct kept *k = arg;
    assert_int_equal(vmmu_vcpu_online(k->v), 0);
    k->gpa = sync_read(k->v, 0); /* the walk pages its table in */
    if (k->online_again)
        assert_int_equal(vmmu_vcpu_offline(k->v), 0);
    else
        assert_int_equal(vmmu_vcpu_offline(k->v), VMMU_EINVAL); /* offline already */
    return NULL;
}

static void kept_run(bool online_again)
{
    struct sync_env s;
    sync_env_init(&s, 8);
    struct kept k = {.s = &s, .v = sync_vcpu(&s), .online_again = online_again};
    assert_int_equal(vmmu_p2m_set_pagein_handler(s.env.vm, page_in_kept_offline, &k), 0);
    assert_int_equal(vmmu__page_state_update(s.env.vm, s.pt, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, kept_main, &k), 0);
    while (!atomic_load(&k.in_handler))
        sched_yield();
    /* The vCPU's thread is in the handler, inside the vCPU's fill. */
    assert_int_equal(vmmu_vcpu_destroy(k.v), VMMU_EBUSY);
    assert_int_equal(vmmu_vcpu_online(k.v), VMMU_EBUSY);
    atomic_store(&k.other_done, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (online_again)
        assert_int_equal(k.online_rc, 0);
    assert_int_equal(k.gpa, DATA_GPA);
    /* The access is over: the vCPU is free for any thread. */
    assert_int_equal(vmmu_vcpu_online(k.v), 0);
    assert_int_equal(vmmu_vcpu_offline(k.v), 0);
    assert_int_equal(vmmu_vcpu_destroy(k.v), 0);
    sync_env_fini(&s);
}

static void a_vcpu_its_page_in_handler_took_offline_stays_its_threads(void **state)
{
    (void)state;
    kept_run(true);
}

static void a_vcpu_left_offline_by_its_page_in_handler_is_given_up_after_the_access(void **state)
{
    (void)state;
    kept_run(false);
}

/* A vCPU thread that waited for the change lock offline comes back
 * online, which may park it for another vCPU's exclusive section, only
 * without the lock: the section's own code may take it (a user page-in
 * handler that changes page states, run by a split lock in the section).
 * It used to come online holding the lock and park there, so the section
 * waited for the lock and the lock for the section.  (The alarm turns
 * that deadlock into a failure.) */
struct change_park {
    struct sync_env *s;
    struct vmmu_vcpu *a, *b;
    atomic_int in_section, released, a_done;
};

static void *change_asker_main(void *arg)
{
    struct change_park *c = arg;
    assert_int_equal(vmmu_vcpu_online(c->a), 0);
    vmmu__sync_change_lock(c->s->env.vm); /* held by the test: waits offline */
    vmmu__sync_change_unlock(c->s->env.vm);
    assert_int_equal(vmmu_vcpu_safepoint(c->a), 0);
    assert_int_equal(vmmu_vcpu_offline(c->a), 0);
    atomic_store(&c->a_done, 1);
    return NULL;
}

static void *section_main(void *arg)
{
    struct change_park *c = arg;
    struct vmmu_vm *vm = c->s->env.vm;
    assert_int_equal(vmmu_vcpu_online(c->b), 0);
    vmmu__sync_exclusive_begin(vm); /* vCPU a is offline, in the lock wait */
    atomic_store(&c->in_section, 1);
    while (!atomic_load(&c->released))
        sched_yield();
    /* Time for vCPU a to take the lock and come back online, which parks
     * it: this section runs. */
    struct timespec ms50 = {0, 50 * 1000 * 1000};
    nanosleep(&ms50, NULL);
    vmmu__sync_change_lock(vm);
    vmmu__sync_change_unlock(vm);
    assert_int_equal(atomic_load(&c->a_done), 0); /* still parked */
    vmmu__sync_exclusive_end(vm);
    assert_int_equal(vmmu_vcpu_offline(c->b), 0);
    return NULL;
}

static void a_vcpu_never_parks_holding_the_change_lock(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct change_park c = {.s = &s, .a = sync_vcpu(&s), .b = sync_vcpu(&s)};
    vmmu__sync_change_lock(s.env.vm); /* not a vCPU thread */
    pthread_t ta, tb;
    alarm(60);
    assert_int_equal(pthread_create(&ta, NULL, change_asker_main, &c), 0);
    assert_int_equal(pthread_create(&tb, NULL, section_main, &c), 0);
    while (!atomic_load(&c.in_section))
        sched_yield();
    vmmu__sync_change_unlock(s.env.vm);
    atomic_store(&c.released, 1);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    alarm(0);
    assert_int_equal(atomic_load(&c.a_done), 1);
    vmmu_vcpu_destroy(c.a);
    vmmu_vcpu_destroy(c.b);
    sync_env_fini(&s);
}

/* A vCPU thread inside a vmmu_region_foreach() callback holds the map's
 * lock, so it never parks for another vCPU's exclusive section there: the
 * section's code may need that lock (a split lock whose page must be paged
 * in), and the two would wait for each other.  Here the callback's
 * page-state change waits offline for vCPU c, busy until vCPU b's section
 * has begun; once c acknowledges (and parks), vCPU a comes back online
 * inside the callback (it used to park there) and the section asks for
 * the map's lock.  vCPU a parks instead when vmmu_region_foreach() has
 * released the lock, before it returns.  (The alarm turns the deadlock
 * into a failure.) */
struct foreach_park {
    struct sync_env *s;
    struct vmmu_vcpu *a, *b, *c;
    atomic_int c_online, in_callback, section_has_lock, a_done, c_done;
    int change_rc;
};

static int change_state_inside(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct foreach_park *f = arg;
    atomic_store(&f->in_callback, 1);
    struct vmmu_gpa_range one = {DATA_GPA, 4096};
    /* Waits offline for vCPU c, which is busy; back online inside the
     * callback once c acknowledged, the section under way. */
    f->change_rc = vmmu_page_state_change(f->s->env.vm, &one, 1, VMMU_PAGE_CODE, 0);
    return 1;
}

static void *foreach_vcpu_main(void *arg)
{
    struct foreach_park *f = arg;
    assert_int_equal(vmmu_vcpu_online(f->a), 0);
    assert_int_equal(vmmu_region_foreach(f->s->env.vm, change_state_inside, f), 1);
    /* Parked once the lock was released, until the section ended (it took
     * the map's lock by then). */
    assert_int_equal(atomic_load(&f->section_has_lock), 1);
    assert_int_equal(vmmu_vcpu_safepoint(f->a), 0);
    assert_int_equal(vmmu_vcpu_offline(f->a), 0);
    atomic_store(&f->a_done, 1);
    return NULL;
}

static void *foreach_busy_main(void *arg)
{
    struct foreach_park *f = arg;
    assert_int_equal(vmmu_vcpu_online(f->c), 0);
    atomic_store(&f->c_online, 1);
    /* Busy (no safe point) until the section has begun. */
    while (!atomic_load(&f->s->env.vm->sync->excl_on))
        sched_yield();
    /* Acknowledges a's flush, then parks until the section ends. */
    assert_int_equal(vmmu_vcpu_safepoint(f->c), 0);
    assert_int_equal(vmmu_vcpu_offline(f->c), 0);
    atomic_store(&f->c_done, 1);
    return NULL;
}

static void *foreach_section_main(void *arg)
{
    struct foreach_park *f = arg;
    struct vmmu_vm *vm = f->s->env.vm;
    assert_int_equal(vmmu_vcpu_online(f->b), 0);
    while (!atomic_load(&f->in_callback)) {
        assert_int_equal(vmmu_vcpu_safepoint(f->b), 0);
        sched_yield();
    }
    vmmu__sync_exclusive_begin(vm); /* a waits offline, c parks */
    /* Time for vCPU a to leave the callback and park (it would hold the
     * map's lock if it parked inside). */
    struct timespec ms50 = {0, 50 * 1000 * 1000};
    nanosleep(&ms50, NULL);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, f->s->data_id, &info), 0); /* the map's lock */
    atomic_store(&f->section_has_lock, 1);
    assert_int_equal(atomic_load(&f->a_done), 0); /* still parked */
    assert_int_equal(atomic_load(&f->c_done), 0);
    vmmu__sync_exclusive_end(vm);
    assert_int_equal(vmmu_vcpu_offline(f->b), 0);
    return NULL;
}

static void a_vcpu_inside_a_foreach_callback_does_not_park_holding_the_maps_lock(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct foreach_park f = {.s = &s, .a = sync_vcpu(&s), .b = sync_vcpu(&s), .c = sync_vcpu(&s),
                             .change_rc = -1};
    pthread_t ta, tb, tc;
    alarm(60);
    assert_int_equal(pthread_create(&tc, NULL, foreach_busy_main, &f), 0);
    while (!atomic_load(&f.c_online))
        sched_yield();
    assert_int_equal(pthread_create(&ta, NULL, foreach_vcpu_main, &f), 0);
    assert_int_equal(pthread_create(&tb, NULL, foreach_section_main, &f), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tc, NULL), 0);
    alarm(0);
    assert_int_equal(f.change_rc, 0);
    assert_int_equal(atomic_load(&f.a_done), 1);
    vmmu_vcpu_destroy(f.a);
    vmmu_vcpu_destroy(f.b);
    vmmu_vcpu_destroy(f.c);
    sync_env_fini(&s);
}

/* A page-state change from inside a vmmu_region_foreach() callback (which
 * holds the map's lock) while another thread pages out: the page-out
 * holds the change lock and waits for the map's lock, so the change must
 * not wait for the change lock.  The two used to wait for each other for
 * ever.  (The alarm turns that deadlock into a failure.) */
struct foreach_pageout {
    struct sync_env *s;
    struct vmmu_pager *pg;
    atomic_int in_callback;
    int out_rc, change_rc;
};

static void *pageout_beside_foreach_main(void *arg)
{
    struct foreach_pageout *f = arg;
    while (!atomic_load(&f->in_callback))
        sched_yield();
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    f->out_rc = vmmu_pager_page_out(f->pg, &r, 1);
    return NULL;
}

static int change_state_beside_a_page_out(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct foreach_pageout *f = arg;
    pthread_mutex_t *change_lock = &f->s->env.vm->sync->change_lock;
    atomic_store(&f->in_callback, 1);
    /* Until the page-out holds the change lock: it then waits for the
     * map's lock, which this callback holds. */
    while (pthread_mutex_trylock(change_lock) == 0) {
        pthread_mutex_unlock(change_lock);
        sched_yield();
    }
    struct vmmu_gpa_range r = {DATA_GPA + 4096, 4096};
    f->change_rc = vmmu_page_state_change(f->s->env.vm, &r, 1, VMMU_PAGE_CODE, 0);
    return 1;
}

static void a_page_state_change_inside_a_foreach_callback_does_not_deadlock_with_a_page_out(
    void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct foreach_pageout f = {.s = &s, .out_rc = -1, .change_rc = -1};
    struct vmmu_pager_config cfg = {0};
    assert_int_equal(vmmu_pager_create(s.env.vm, &cfg, &f.pg), 0);
    pthread_t t;
    alarm(60);
    assert_int_equal(pthread_create(&t, NULL, pageout_beside_foreach_main, &f), 0);
    assert_int_equal(vmmu_region_foreach(s.env.vm, change_state_beside_a_page_out, &f), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    alarm(0);
    assert_int_equal(f.change_rc, 0);
    assert_int_equal(f.out_rc, 0);
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(s.env.vm, DATA_GPA, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    assert_int_equal(vmmu_page_state_get(s.env.vm, DATA_GPA + 4096, &st), 0);
    assert_true(st & VMMU_PAGE_CODE);
    assert_int_equal(vmmu_pager_destroy(f.pg), 0);
    sync_data_intact(&s, 0);
    sync_env_fini(&s);
}

/* A vCPU thread that holds the change lock (in a page-state change) and
 * waits offline for another vCPU's acknowledgement does not park for an
 * exclusive section that began meanwhile when it comes back online: the
 * section's code may take the change lock (a page-in handler that changes
 * page states).  It parks when it releases the lock instead.  Here vCPU a's
 * change waits for vCPU c, which is busy for 300 ms; vCPU b's section
 * begins while a waits (c parks for it once it has acknowledged a's flush)
 * and then makes a page-state change of its own.  (The alarm turns the
 * deadlock into a failure.) */
struct holder_park {
    struct sync_env *s;
    struct vmmu_vcpu *a, *b, *c;
    atomic_int c_online, a_calling, in_section, b_changed;
    int a_rc, b_rc, b_changed_when_a_returned;
};

static void *holder_busy_main(void *arg)
{
    struct holder_park *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->c), 0);
    atomic_store(&h->c_online, 1);
    struct timespec ms300 = {0, 300 * 1000 * 1000};
    nanosleep(&ms300, NULL); /* no safe point meanwhile */
    assert_int_equal(vmmu_vcpu_safepoint(h->c), 0); /* acknowledges, then parks */
    assert_int_equal(vmmu_vcpu_offline(h->c), 0);
    return NULL;
}

static void *holder_main(void *arg)
{
    struct holder_park *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->a), 0);
    while (!atomic_load(&h->c_online))
        sched_yield();
    atomic_store(&h->a_calling, 1);
    struct vmmu_gpa_range one = {DATA_GPA, 4096};
    h->a_rc = vmmu_page_state_change(h->s->env.vm, &one, 1, VMMU_PAGE_CODE, 0);
    /* Parked at the unlock until the section ended. */
    h->b_changed_when_a_returned = atomic_load(&h->b_changed);
    assert_int_equal(vmmu_vcpu_offline(h->a), 0);
    return NULL;
}

static void *holder_section_main(void *arg)
{
    struct holder_park *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->b), 0);
    /* Until vCPU a is offline in its wait for c (holding the change lock). */
    while (!atomic_load(&h->a_calling) ||
           atomic_load(&h->a->sync->state) == SYNC_ONLINE) {
        assert_int_equal(vmmu_vcpu_safepoint(h->b), 0);
        sched_yield();
    }
    vmmu__sync_exclusive_begin(h->s->env.vm); /* waits for c to park */
    atomic_store(&h->in_section, 1);
    struct vmmu_gpa_range one = {DATA_GPA + 4096, 4096};
    h->b_rc = vmmu_page_state_change(h->s->env.vm, &one, 1, VMMU_PAGE_CODE, 0);
    atomic_store(&h->b_changed, 1);
    vmmu__sync_exclusive_end(h->s->env.vm);
    assert_int_equal(vmmu_vcpu_offline(h->b), 0);
    return NULL;
}

static void a_vcpu_holding_the_change_lock_parks_only_when_it_releases_it(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct holder_park h = {.s = &s, .a = sync_vcpu(&s), .b = sync_vcpu(&s), .c = sync_vcpu(&s),
                            .a_rc = -1, .b_rc = -1};
    pthread_t ta, tb, tc;
    alarm(60);
    assert_int_equal(pthread_create(&tc, NULL, holder_busy_main, &h), 0);
    assert_int_equal(pthread_create(&ta, NULL, holder_main, &h), 0);
    assert_int_equal(pthread_create(&tb, NULL, holder_section_main, &h), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tc, NULL), 0);
    alarm(0);
    assert_int_equal(h.a_rc, 0);
    assert_int_equal(h.b_rc, 0);
    assert_int_equal(atomic_load(&h.in_section), 1);
    assert_int_equal(h.b_changed_when_a_returned, 1);
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(s.env.vm, DATA_GPA, &st), 0);
    assert_true(st & VMMU_PAGE_CODE);
    assert_int_equal(vmmu_page_state_get(s.env.vm, DATA_GPA + 4096, &st), 0);
    assert_true(st & VMMU_PAGE_CODE);
    vmmu_vcpu_destroy(h.a);
    vmmu_vcpu_destroy(h.b);
    vmmu_vcpu_destroy(h.c);
    sync_env_fini(&s);
}

/* A page-in handler on a vCPU thread may wait offline (for a lock of
 * vmmu's, say): a grace period may pass meanwhile, and the region of the
 * page it brings back may be gone when it returns.  The access must look
 * the page up again then, not touch what it found before.  Here the
 * handler goes offline while the main thread removes the data region; the
 * read then finds a hole.  (Under AddressSanitizer the old code read the
 * freed region's page states.) */
struct offline_pagein {
    struct sync_env *s;
    struct vmmu_vcpu *v;
    atomic_int in_handler, removed;
    int calls;
    uint64_t got;
    struct vmmu_tlb_result res;
    void *host;
};

static int page_in_offline(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct offline_pagein *o = opaque;
    o->calls++;
    struct vmmu__blocked blk = vmmu__sync_block_begin(); /* what a lock wait does */
    atomic_store(&o->in_handler, 1);
    while (!atomic_load(&o->removed))
        sched_yield();
    vmmu__sync_block_end(blk);
    (void)vm;
    (void)gpa;
    return 0; /* the page is not resident: asked again, if still there */
}

static void *offline_pagein_main(void *arg)
{
    struct offline_pagein *o = arg;
    assert_int_equal(vmmu_vcpu_online(o->v), 0);
    o->host = vmmu_tlb_translate(o->v, DATA_VA, 8, 0, &o->res);
    assert_int_equal(vmmu_vcpu_offline(o->v), 0);
    return NULL;
}

static void a_page_in_that_waited_offline_looks_the_page_up_again(void **state)
{
    (void)state;
    struct sync_env s;
    sync_env_init(&s, 8);
    struct offline_pagein o = {.s = &s, .v = sync_vcpu(&s)};
    assert_int_equal(vmmu_p2m_set_pagein_handler(s.env.vm, page_in_offline, &o), 0);
    assert_int_equal(vmmu__page_state_update(s.env.vm, DATA_GPA, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, offline_pagein_main, &o), 0);
    while (!atomic_load(&o.in_handler))
        sched_yield();
    /* The vCPU is offline: the removal does not wait for it. */
    assert_int_equal(vmmu_region_remove(s.env.vm, s.data_id), 0);
    atomic_store(&o.removed, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(o.calls, 1);
    assert_null(o.host);
    assert_int_equal(o.res.type, VMMU_MEM_HOLE);
    vmmu_vcpu_destroy(o.v);
    sync_env_fini(&s);
}

/* A guest-physical read of many paged-out pages whose page-in handler
 * goes offline every time (by hand, as before blocking on a slow store):
 * each wait makes the access look again, but from the page that waited,
 * so the read completes (it used to start from its first page at each
 * wait, and gave up with VMMU_EPAGEDOUT after 16). */
struct many_pageins {
    struct vmmu_vcpu *v;
    int calls;
};

static int page_in_offline_each_time(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct many_pageins *m = opaque;
    m->calls++;
    assert_int_equal(vmmu_vcpu_offline(m->v), 0);
    assert_int_equal(vmmu_vcpu_online(m->v), 0);
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

static void a_read_of_many_pages_whose_page_ins_go_offline_completes(void **state)
{
    (void)state;
    enum { PAGES = 40 };
    struct sync_env s;
    sync_env_init(&s, PAGES);
    struct many_pageins m = {.v = sync_vcpu(&s)};
    assert_int_equal(vmmu_p2m_set_pagein_handler(s.env.vm, page_in_offline_each_time, &m), 0);
    assert_int_equal(vmmu__page_state_update(s.env.vm, DATA_GPA, PAGES, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT), 0);
    assert_int_equal(vmmu_vcpu_online(m.v), 0);
    static uint64_t buf[PAGES * 512];
    uint64_t failed = 0;
    assert_int_equal(vmmu_gpa_read(s.env.vm, DATA_GPA, buf, sizeof(buf), 0, &failed), 0);
    assert_int_equal(vmmu_vcpu_offline(m.v), 0);
    assert_int_equal(m.calls, PAGES);
    for (unsigned i = 0; i < PAGES; i++)
        assert_int_equal(buf[i * 512], DATA_GPA + i * 4096ull); /* each page's first word */
    vmmu_vcpu_destroy(m.v);
    sync_env_fini(&s);
}

/* The same for an MMIO callback: one that waited offline in the middle of
 * a guest-physical access of several pieces may have let the region go.
 * The access looks the rest up again: here the region was removed during
 * the first piece's callback, so the second piece finds a hole.  And with
 * the region still there, the access completes. */
#define MMIO_GPA (3ull << 30)

struct offline_mmio {
    struct vmmu_vcpu *v;
    atomic_int in_callback, go_on;
    int reads;
    int rc;
    uint64_t failed;
    uint8_t buf[16];
};

static int mmio_read_offline(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct offline_mmio *m = opaque;
    if (m->reads++ == 0) {
        struct vmmu__blocked blk = vmmu__sync_block_begin(); /* what a lock wait does */
        atomic_store(&m->in_callback, 1);
        while (!atomic_load(&m->go_on))
            sched_yield();
        vmmu__sync_block_end(blk);
    }
    *value = 0x1111111111111111ull * (offset / 8 + 1);
    (void)size;
    return 0;
}

static void *offline_mmio_main(void *arg)
{
    struct offline_mmio *m = arg;
    assert_int_equal(vmmu_vcpu_online(m->v), 0);
    m->rc = vmmu_gpa_read(m->v->vm, MMIO_GPA, m->buf, 16, 0, &m->failed);
    assert_int_equal(vmmu_vcpu_offline(m->v), 0);
    return NULL;
}

static void an_mmio_callback_that_waited_offline_lets_the_rest_be_looked_up_again(void **state)
{
    (void)state;
    static const struct vmmu_mmio_ops ops = {.read = mmio_read_offline};
    for (int remove = 0; remove < 2; remove++) {
        struct sync_env s;
        sync_env_init(&s, 8);
        struct offline_mmio m = {.v = sync_vcpu(&s), .rc = 1};
        struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                     .mmio = &ops, .opaque = &m};
        uint32_t id;
        assert_int_equal(vmmu_region_add(s.env.vm, &d, &id), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, offline_mmio_main, &m), 0);
        while (!atomic_load(&m.in_callback))
            sched_yield();
        if (remove) /* the vCPU is offline: the removal does not wait for it */
            assert_int_equal(vmmu_region_remove(s.env.vm, id), 0);
        atomic_store(&m.go_on, 1);
        assert_int_equal(pthread_join(th, NULL), 0);
        uint64_t first, second;
        memcpy(&first, m.buf, 8);
        memcpy(&second, m.buf + 8, 8);
        assert_int_equal(first, 0x1111111111111111ull);
        if (remove) {
            assert_int_equal(m.rc, VMMU_EHOLE);
            assert_int_equal(m.failed, MMIO_GPA + 8);
            assert_int_equal(m.reads, 1);
        } else {
            assert_int_equal(m.rc, 0);
            assert_int_equal(second, 0x2222222222222222ull);
            assert_int_equal(m.reads, 2);
        }
        vmmu_vcpu_destroy(m.v);
        sync_env_fini(&s);
    }
}

/* A host thread's read-side section (liburcu's bulletproof flavour) is
 * paused while the thread waits for the map's lock or the change lock,
 * and must go on once the lock is taken: the caller ends it later, and
 * ending a section that is not held would leave liburcu's counter of the
 * thread wrapped, so that no grace period would ever end again. */
struct lock_holder {
    pthread_mutex_t *lock;
    atomic_int locked, trying;
    pid_t waiter; /* the thread that waits for the lock */
};

/* Whether thread @tid of this process is asleep (in the lock's wait). */
static bool thread_asleep(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* the name may hold spaces */
    return paren && paren[1] == ' ' && paren[2] == 'S';
}

static void *hold_lock_until_waited_for(void *arg)
{
    struct lock_holder *h = arg;
    pthread_mutex_lock(h->lock);
    atomic_store(&h->locked, 1);
    while (!atomic_load(&h->trying))
        sched_yield();
    /* Released once the waiter sleeps in the lock, or after a while: the
     * waiter's failed try is what matters, and it comes before either. */
    for (unsigned i = 0; i < 2000 && !thread_asleep(h->waiter); i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_unlock(h->lock);
    return NULL;
}

static void lock_taken_inside_a_host_section_keeps_the_section(bool change_lock)
{
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct lock_holder h = {.lock = change_lock ? &vm->sync->change_lock : &vm->lock,
                            .waiter = (pid_t)syscall(SYS_gettid)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_lock_until_waited_for, &h), 0);
    while (!atomic_load(&h.locked))
        sched_yield();
    /* This thread is no online reader: the section is one of its own. */
    assert_false(vmmu__reader_is_online());
    unsigned section = vmmu__read_begin();
    assert_true(vmmu__host_held);
    atomic_store(&h.trying, 1);
    if (change_lock)
        vmmu__sync_change_lock(vm);
    else
        vmmu__sync_map_lock(vm);
    bool held = vmmu__host_held;
    if (change_lock)
        vmmu__sync_change_unlock(vm);
    else
        pthread_mutex_unlock(&vm->lock);
    if (held)
        vmmu__read_end(section);
    else
        vmmu__read_own = false; /* ending it would wrap liburcu's counter */
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(held);
    vmmu_vm_destroy(vm);
}

static void a_host_section_goes_on_after_waiting_for_the_maps_lock(void **state)
{
    (void)state;
    lock_taken_inside_a_host_section_keeps_the_section(false);
}

static void a_host_section_goes_on_after_waiting_for_the_change_lock(void **state)
{
    (void)state;
    lock_taken_inside_a_host_section_keeps_the_section(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_sync_shootdown_returns_after_the_running_target_dropped_the_entry),
        cmocka_unit_test(an_offline_target_is_not_waited_for_and_flushes_before_it_runs),
        cmocka_unit_test(two_vcpus_shooting_each_other_down_do_not_deadlock),
        cmocka_unit_test(a_thread_that_exits_with_its_vcpu_online_leaves_it_offline),
        cmocka_unit_test(a_vcpu_waiting_inside_vmmu_cannot_be_taken_online_by_another_thread),
        cmocka_unit_test(two_threads_taking_one_vcpu_online_at_once_do_not_both_get_it),
        cmocka_unit_test(destroying_a_vcpu_another_thread_has_online_is_refused),
        cmocka_unit_test(a_region_replaced_during_a_page_out_keeps_its_new_pages_usable),
        cmocka_unit_test(a_vcpu_waiting_for_the_maps_lock_does_not_hold_up_its_holder),
        cmocka_unit_test(a_walk_under_dirty_logging_does_not_wait_for_the_maps_lock),
        cmocka_unit_test(a_fill_whose_walk_waited_offline_walks_again),
        cmocka_unit_test(a_fill_whose_page_in_went_offline_by_hand_walks_again),
        cmocka_unit_test(a_vcpu_its_page_in_handler_took_offline_stays_its_threads),
        cmocka_unit_test(a_vcpu_left_offline_by_its_page_in_handler_is_given_up_after_the_access),
        cmocka_unit_test(a_vcpu_never_parks_holding_the_change_lock),
        cmocka_unit_test(a_vcpu_inside_a_foreach_callback_does_not_park_holding_the_maps_lock),
        cmocka_unit_test(
            a_page_state_change_inside_a_foreach_callback_does_not_deadlock_with_a_page_out),
        cmocka_unit_test(a_vcpu_holding_the_change_lock_parks_only_when_it_releases_it),
        cmocka_unit_test(a_thread_that_waited_for_the_change_lock_without_a_vcpu_parks_later),
        cmocka_unit_test(a_page_in_that_waited_offline_looks_the_page_up_again),
        cmocka_unit_test(a_read_of_many_pages_whose_page_ins_go_offline_completes),
        cmocka_unit_test(an_mmio_callback_that_waited_offline_lets_the_rest_be_looked_up_again),
        cmocka_unit_test(a_host_section_goes_on_after_waiting_for_the_maps_lock),
        cmocka_unit_test(a_host_section_goes_on_after_waiting_for_the_change_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
