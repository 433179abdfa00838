/* Lock-free readers against a changing map.  Reader threads (registered
 * QSBR readers, as vCPUs will be) look up and read guest RAM while a writer
 * adds, tags and removes regions.  Every page carries the id of the region
 * it belongs to; a reader that reached freed or reused memory through a
 * stale lookup would read a wrong id (or crash on an unmapped page). */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "vmmu/vmmu.h"

enum { SLOTS = 64, PAGES = 4, READERS = 2, ROUNDS = 2000 };
#define SLOT_GPA(i) ((uint64_t)(i) << 21) /* 2 MiB apart, regions 16 KiB long */

struct shared {
    struct vmmu_vm *vm;
    atomic_int stop;
    atomic_ulong reads_ok, wrong;
};

static void *reader(void *arg)
{
    struct shared *sh = arg;
    vmmu__reader_register();
    unsigned seed = 12345;
    while (!atomic_load(&sh->stop)) {
        seed = seed * 1103515245 + 12345;
        unsigned slot = (seed >> 8) % SLOTS, page = (seed >> 20) % PAGES;
        uint64_t gpa = SLOT_GPA(slot) + page * 4096;
        struct vmmu_p2m_entry e;
        if (vmmu_p2m_lookup(sh->vm, gpa, &e) != 0)
            atomic_fetch_add(&sh->wrong, 1);
        else if (e.type == VMMU_MEM_RAM) {
            /* The tag is written after the region is published: 0 or the
             * region's own id are both fine, anything else is not. */
            uint64_t tag = atomic_load_explicit((_Atomic uint64_t *)e.hva, memory_order_relaxed);
            if (tag != 0 && tag != e.region_id)
                atomic_fetch_add(&sh->wrong, 1);
            else
                atomic_fetch_add_explicit(&sh->reads_ok, 1, memory_order_relaxed);
        } else if (e.type != VMMU_MEM_HOLE) {
            atomic_fetch_add(&sh->wrong, 1);
        }
        vmmu__reader_quiescent();
    }
    vmmu__reader_unregister();
    return NULL;
}

static void readers_never_see_freed_or_foreign_memory_while_regions_change(void **state)
{
    (void)state;
    struct shared sh = {0};
    assert_int_equal(vmmu_vm_create(NULL, &sh.vm), 0);
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &sh), 0);

    uint32_t ids[SLOTS] = {0};
    unsigned seed = 777;
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 1103515245 + 12345;
        unsigned slot = (seed >> 8) % SLOTS;
        if (ids[slot]) {
            assert_int_equal(vmmu_region_remove(sh.vm, ids[slot]), 0);
            ids[slot] = 0;
        } else {
            struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = SLOT_GPA(slot),
                                         .size = PAGES * 4096};
            assert_int_equal(vmmu_region_add(sh.vm, &d, &ids[slot]), 0);
            for (int p = 0; p < PAGES; p++) {
                struct vmmu_p2m_entry e;
                assert_int_equal(vmmu_p2m_lookup(sh.vm, d.gpa + p * 4096, &e), 0);
                atomic_store_explicit((_Atomic uint64_t *)e.hva, ids[slot], memory_order_relaxed);
            }
        }
    }
    atomic_store(&sh.stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&sh.wrong), 0);
    assert_true(atomic_load(&sh.reads_ok) > 0);
    vmmu_vm_destroy(sh.vm);
}

/* ---- writers against writers ------------------------------------------- */

enum { WRITERS = 4, RACE_ROUNDS = 100 };

struct race {
    struct vmmu_vm *vm;
    _Atomic uint32_t ids[RACE_ROUNDS];
    atomic_int won[RACE_ROUNDS], removed[RACE_ROUNDS], busy_or_wrong;
};

struct racer {
    struct race *race;
    int thread;
};

/* Every writer adds, for each round, a region overlapping every other
 * writer's region of that round (WRITERS pages, shifted by a page per
 * writer, with edges that need radix leaves). */
static void *add_racer(void *arg)
{
    struct racer *me = arg;
    struct race *rc = me->race;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        struct vmmu_region_desc d = {.type = VMMU_MEM_RAM,
                                     .gpa = ((uint64_t)r << 21) + 4096 * (uint64_t)(me->thread + 1),
                                     .size = WRITERS * 4096};
        uint32_t id = 0;
        int err = vmmu_region_add(rc->vm, &d, &id);
        if (err == 0) {
            atomic_fetch_add(&rc->won[r], 1);
            atomic_store(&rc->ids[r], id);
        } else if (err != VMMU_EOVERLAP) {
            atomic_fetch_add(&rc->busy_or_wrong, 1);
        }
    }
    return NULL;
}

static void *remove_racer(void *arg)
{
    struct racer *me = arg;
    struct race *rc = me->race;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        int err = vmmu_region_remove(rc->vm, atomic_load(&rc->ids[r]));
        if (err == 0)
            atomic_fetch_add(&rc->removed[r], 1);
        else if (err != VMMU_ENOENT)
            atomic_fetch_add(&rc->busy_or_wrong, 1);
    }
    return NULL;
}

static void run_racers(struct race *rc, void *(*fn)(void *))
{
    pthread_t th[WRITERS];
    struct racer who[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        who[i] = (struct racer){rc, i};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &who[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
}

static int count_region(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    ++*(int *)arg;
    return 0;
}

static void concurrent_overlapping_additions_and_removals_each_succeed_once(void **state)
{
    (void)state;
    static struct race rc;
    memset(&rc, 0, sizeof(rc));
    assert_int_equal(vmmu_vm_create(NULL, &rc.vm), 0);
    run_racers(&rc, add_racer);
    int n = 0;
    assert_int_equal(vmmu_region_foreach(rc.vm, count_region, &n), 0);
    assert_int_equal(n, RACE_ROUNDS);
    for (int r = 0; r < RACE_ROUNDS; r++)
        assert_int_equal(atomic_load(&rc.won[r]), 1);

    run_racers(&rc, remove_racer);
    for (int r = 0; r < RACE_ROUNDS; r++)
        assert_int_equal(atomic_load(&rc.removed[r]), 1);
    assert_int_equal(atomic_load(&rc.busy_or_wrong), 0);
    n = 0;
    assert_int_equal(vmmu_region_foreach(rc.vm, count_region, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(rc.vm->p2m.nodes, 0);
    vmmu_vm_destroy(rc.vm);
}

/* ---- foreach on several threads ---------------------------------------- */

struct walkers {
    struct vmmu_vm *vm;
    uint32_t id;
    atomic_int wrong;
};

/* From inside the callback the walking thread reads the map (fine) and
 * tries to change it (refused): neither waits for the lock it holds. */
static int look_inside(const struct vmmu_region_info *info, void *arg)
{
    struct walkers *w = arg;
    struct vmmu_region_info again;
    if (vmmu_region_info(w->vm, info->id, &again) != 0 || again.gpa != info->gpa)
        atomic_fetch_add(&w->wrong, 1);
    if (vmmu_region_remove(w->vm, info->id) != VMMU_EBUSY)
        atomic_fetch_add(&w->wrong, 1);
    return 0;
}

static void *walker(void *arg)
{
    struct walkers *w = arg;
    for (int i = 0; i < 300; i++)
        if (vmmu_region_foreach(w->vm, look_inside, w) != 0)
            atomic_fetch_add(&w->wrong, 1);
    return NULL;
}

static void *describer(void *arg)
{
    struct walkers *w = arg;
    for (int i = 0; i < 1500; i++) {
        struct vmmu_region_info info;
        if (vmmu_region_info(w->vm, w->id, &info) != 0)
            atomic_fetch_add(&w->wrong, 1);
    }
    return NULL;
}

/* Two threads walk the map over and over while two others describe a
 * region: each walking thread is refused its own changes, the others
 * wait for the lock, and no thread mistakes itself for the walker (the
 * walker's identity is read without the lock while the next walker sets
 * it: ThreadSanitizer checks that this is not a data race). */
static void foreach_on_several_threads_refuses_only_its_own_thread(void **state)
{
    (void)state;
    static struct walkers w;
    memset(&w, 0, sizeof(w));
    assert_int_equal(vmmu_vm_create(NULL, &w.vm), 0);
    for (int i = 0; i < 16; i++) {
        struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = (uint64_t)i << 21,
                                     .size = 4096};
        assert_int_equal(vmmu_region_add(w.vm, &d, &w.id), 0);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, i < 2 ? walker : describer, &w), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&w.wrong), 0);
    vmmu_vm_destroy(w.vm);
}

/* A registered reader that also asks the map questions between its
 * quiescent states, as a vCPU thread does between instructions
 * (vmmu_region_info takes the map's lock). */
struct asker {
    struct vmmu_vm *vm;
    uint32_t id;
    atomic_int stop;
    atomic_ulong asked, wrong;
};

static void *ask(void *arg)
{
    struct asker *a = arg;
    vmmu__reader_register();
    while (!atomic_load(&a->stop)) {
        struct vmmu_region_info info;
        if (vmmu_region_info(a->vm, a->id, &info) != 0 || info.gpa != 0)
            atomic_fetch_add(&a->wrong, 1);
        atomic_fetch_add(&a->asked, 1);
        vmmu__reader_quiescent();
    }
    vmmu__reader_unregister();
    return NULL;
}

/* An addition that runs out of memory halfway prunes the nodes it built
 * and waits a grace period before freeing them: never while it holds the
 * map's lock, or a reader blocked on that lock (which cannot pass a
 * quiescent state) would wait for the writer that waits for it.  (The
 * alarm turns that deadlock into a failure.) */
static void an_addition_out_of_memory_waits_for_readers_outside_the_lock(void **state)
{
    (void)state;
    static struct asker a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(vmmu_vm_create(NULL, &a.vm), 0);
    struct vmmu_region_desc first = {.type = VMMU_MEM_DEVICE, .gpa = 0, .size = 4096};
    assert_int_equal(vmmu_region_add(a.vm, &first, &a.id), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ask, &a), 0);
    /* Far from the first region, so that the addition builds a node at
     * each level below the root. */
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = 0x7f12345000ull, .size = 4096};
    unsigned long refused = 0;
    const uint64_t nodes = a.vm->p2m.nodes; /* those of the first region */
    alarm(60);
    for (int round = 0; round < 50; round++) {
        /* The reader is running: each round overlaps its questions. */
        unsigned long seen = atomic_load(&a.asked);
        while (atomic_load(&a.asked) < seen + 2)
            sched_yield();
        int err = VMMU_ENOMEM;
        uint32_t id = 0;
        for (unsigned long nth = 1; err == VMMU_ENOMEM && nth < 16; nth++) {
            vmmu__alloc_fail_nth(nth);
            err = vmmu_region_add(a.vm, &d, &id);
            vmmu__alloc_disarm();
            if (err) {
                assert_int_equal(err, VMMU_ENOMEM);
                refused++;
            }
        }
        assert_int_equal(err, 0);
        assert_int_equal(vmmu_region_remove(a.vm, id), 0);
    }
    alarm(0);
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    assert_true(refused >= 50 * 2); /* a node or more built before each late failure */
    assert_true(atomic_load(&a.asked) > 0);
    assert_int_equal(atomic_load(&a.wrong), 0);
    assert_int_equal(a.vm->p2m.nodes, nodes); /* every pruned node freed */
    vmmu_vm_destroy(a.vm);
}

/* Read page 0's state until told to stop: it must always hold exactly
 * one of CODE and DIRTY (reads_ok counts the reads, wrong the others). */
static void *state_reader(void *arg)
{
    struct shared *fl = arg;
    while (!atomic_load(&fl->stop)) {
        uint32_t st;
        if (vmmu_page_state_get(fl->vm, 0, &st) != 0)
            atomic_fetch_add(&fl->wrong, 1);
        unsigned both = st & (VMMU_PAGE_CODE | VMMU_PAGE_DIRTY);
        if (both != VMMU_PAGE_CODE && both != VMMU_PAGE_DIRTY)
            atomic_fetch_add(&fl->wrong, 1);
        atomic_fetch_add(&fl->reads_ok, 1);
    }
    return NULL;
}

/* vmmu_page_state_update() sets and clears in one atomic step: a page
 * flipped between CODE and DIRTY never reads as both, or neither, on
 * another thread (the set and the clear used to be two steps). */
static void a_state_update_that_sets_and_clears_is_one_step(void **state)
{
    (void)state;
    struct shared fl = {0};
    assert_int_equal(vmmu_vm_create(NULL, &fl.vm), 0);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096, .name = "page"};
    assert_int_equal(vmmu_region_add(fl.vm, &d, NULL), 0);
    assert_int_equal(vmmu_page_state_update(fl.vm, 0, 1, VMMU_PAGE_DIRTY, 0), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, state_reader, &fl), 0);
    while (atomic_load(&fl.reads_ok) == 0)
        sched_yield();
    for (int i = 0; i < 100000; i++) {
        bool code = i & 1;
        assert_int_equal(vmmu_page_state_update(fl.vm, 0, 1,
                                                code ? VMMU_PAGE_CODE : VMMU_PAGE_DIRTY,
                                                code ? VMMU_PAGE_DIRTY : VMMU_PAGE_CODE),
                         0);
    }
    atomic_store(&fl.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&fl.wrong), 0);
    vmmu_vm_destroy(fl.vm);
}

/* Host threads that never registered as readers look up holes (and
 * change their page states, and make device accesses there) that
 * share the map's last-level node with a region another thread adds and
 * removes: removal prunes that node and frees it after a grace period,
 * which must wait for the lookups (each is a read-side section of its
 * own).  Under AddressSanitizer a lookup that read the freed node is a
 * use-after-free report. */
struct hole_race {
    struct vmmu_vm *vm;
    atomic_int stop;
    atomic_ulong lookups, wrong;
};

static void *hole_looker(void *arg)
{
    struct hole_race *h = arg;
    while (!atomic_load(&h->stop)) {
        uint32_t id, st;
        struct vmmu_p2m_entry e;
        if (vmmu_region_find(h->vm, 2 * 1048576ull, &id) != VMMU_EHOLE)
            atomic_fetch_add(&h->wrong, 1);
        if (vmmu_p2m_lookup(h->vm, 2 * 1048576ull + 8192, &e) != 0 || e.type != VMMU_MEM_HOLE)
            atomic_fetch_add(&h->wrong, 1);
        if (vmmu_page_state_get(h->vm, 2 * 1048576ull + 12288, &st) != VMMU_EHOLE)
            atomic_fetch_add(&h->wrong, 1);
        struct vmmu_gpa_range hole = {2 * 1048576ull, 4096};
        if (vmmu_page_state_change(h->vm, &hole, 1, VMMU_PAGE_DIRTY, 0) != VMMU_EHOLE)
            atomic_fetch_add(&h->wrong, 1);
        struct vmmu_device_req req = {.gpa = 2 * 1048576ull + 8192, .size = 4, .vcpu_id = -1};
        if (vmmu_p2m_device_access(h->vm, &req) != VMMU_EINVAL)
            atomic_fetch_add(&h->wrong, 1);
        atomic_fetch_add_explicit(&h->lookups, 1, memory_order_relaxed);
    }
    return NULL;
}

static void host_thread_lookups_beside_a_removed_region_read_no_freed_node(void **state)
{
    (void)state;
    struct hole_race h = {0};
    assert_int_equal(vmmu_vm_create(NULL, &h.vm), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hole_looker, &h), 0);
    static const struct vmmu_mmio_ops no_ops;
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 2 * 1048576ull + 4096,
                                 .size = 4096, .mmio = &no_ops};
    /* The lookups must overlap the changes: wait for the first, and go on
     * past 3000 rounds until 1000 ran beside them (a loaded machine may
     * not schedule the lookers at once). */
    while (!atomic_load(&h.lookups))
        sched_yield();
    unsigned long first = atomic_load(&h.lookups);
    for (unsigned round = 0; round < 3000 || atomic_load(&h.lookups) - first < 1000; round++) {
        uint32_t id;
        assert_int_equal(vmmu_region_add(h.vm, &d, &id), 0);
        assert_int_equal(vmmu_region_remove(h.vm, id), 0);
    }
    atomic_store(&h.stop, 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    vmmu_vm_destroy(h.vm);
    assert_int_equal(atomic_load(&h.wrong), 0);
}

/* A host thread's first call that reads the map registers it as a reader
 * of the bulletproof flavour (src/core/grace_host.c); it must be
 * unregistered when it exits, or a later grace period would wait for, or
 * walk, the dead thread's record. */
static void *lookup_once(void *arg)
{
    struct vmmu_vm *vm = arg;
    struct vmmu_p2m_entry e;
    uintptr_t rc = (uintptr_t)vmmu_p2m_lookup(vm, 4096, &e) | (e.type != VMMU_MEM_RAM);
    return (void *)rc;
}

static void host_threads_that_read_the_map_and_exited_leave_removals_working(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1048576};
    assert_int_equal(vmmu_region_add(vm, &ram, NULL), 0);
    static const struct vmmu_mmio_ops no_ops;
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 1ull << 30, .size = 4096,
                                 .mmio = &no_ops};
    for (unsigned batch = 0; batch < 8; batch++) {
        pthread_t th[16];
        for (unsigned i = 0; i < 16; i++)
            assert_int_equal(pthread_create(&th[i], NULL, lookup_once, vm), 0);
        for (unsigned i = 0; i < 16; i++) {
            void *rc;
            assert_int_equal(pthread_join(th[i], &rc), 0);
            assert_null(rc);
        }
        /* Each removal waits for a grace period over every reader. */
        uint32_t id;
        assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
        assert_int_equal(vmmu_region_remove(vm, id), 0);
    }
    /* This thread reads too, then removes: its own section has ended. */
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, 4096, &e), 0);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    vmmu_vm_destroy(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(readers_never_see_freed_or_foreign_memory_while_regions_change),
        cmocka_unit_test(concurrent_overlapping_additions_and_removals_each_succeed_once),
        cmocka_unit_test(foreach_on_several_threads_refuses_only_its_own_thread),
        cmocka_unit_test(an_addition_out_of_memory_waits_for_readers_outside_the_lock),
        cmocka_unit_test(a_state_update_that_sets_and_clears_is_one_step),
        cmocka_unit_test(host_thread_lookups_beside_a_removed_region_read_no_freed_node),
        cmocka_unit_test(host_threads_that_read_the_map_and_exited_leave_removals_working),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
