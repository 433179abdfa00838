/* The map's page-in and device handlers while other threads replace them.
 *
 * A setter publishes a handler's function and argument as one, and returns
 * only when the old handler is neither running nor about to be called, so
 * that its caller may free the old argument (a device-model layer, a
 * pager).  Callers are a vCPU thread (an online reader, which stays online
 * around the handler) and a host thread (whose handler runs offline, beyond
 * any grace period).  The page-in handler is reached through a RAM page
 * marked paged out, the device handler through a DEVICE region. */
#include <pthread.h>
#include <semaphore.h>
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

#include "core/vm_internal.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#define PAGE_GPA 0x3000ull   /* RAM, marked paged out */
#define DEV_GPA 0x100000ull  /* a DEVICE region */

enum kind { DEVICE, PAGEIN };

struct fx {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(vmmu_vm_create(NULL, &f->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 0x10000};
    assert_int_equal(vmmu_region_add(f->vm, &ram, NULL), 0);
    struct vmmu_region_desc dev = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(f->vm, &dev, NULL), 0);
    assert_int_equal(vmmu__page_state_update(f->vm, PAGE_GPA, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    assert_int_equal(vmmu_vcpu_create(f->vm, NULL, &f->v), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_destroy(f->v), 0);
    assert_int_equal(vmmu_vm_destroy(f->vm), 0);
    free(f);
    return 0;
}

/* One access that calls the handler of @kind once, if one is installed
 * and answers with an error (as every handler here does): its result, or
 * VMMU_EDEVICE / VMMU_EPAGEDOUT without a handler. */
static int call_handler(struct vmmu_vm *vm, enum kind kind, int vcpu_id)
{
    if (kind == DEVICE) {
        struct vmmu_device_req r = {.gpa = DEV_GPA, .size = 8, .vcpu_id = vcpu_id};
        return vmmu_p2m_device_access(vm, &r);
    }
    uint64_t x;
    return vmmu_gpa_read(vm, PAGE_GPA, &x, sizeof(x), 0, NULL);
}

static int no_handler(enum kind kind)
{
    return kind == DEVICE ? VMMU_EDEVICE : VMMU_EPAGEDOUT;
}

/* A handler of each kind; set_handler() installs the one of its kind. */
struct handler {
    vmmu_device_fn device;
    vmmu_pagein_fn pagein;
};

/* Install @h's handler of @kind with @opaque (@h NULL: uninstall). */
static int set_handler(struct vmmu_vm *vm, enum kind kind, const struct handler *h, void *opaque)
{
    if (kind == DEVICE)
        return vmmu_p2m_set_device_handler(vm, h ? h->device : NULL, opaque);
    return vmmu_p2m_set_pagein_handler(vm, h ? h->pagein : NULL, opaque);
}

/* ---- a loop of calls on a vCPU thread and on a host thread ------------------------ */

struct caller {
    struct fx *f;
    enum kind kind;
    bool vcpu;          /* online vCPU, else a host thread */
    atomic_int stop;
    atomic_ulong calls;
    atomic_ulong wrong; /* results that are neither a handler's nor "no handler" */
    int want;           /* what a handler answers */
};

static void *caller_loop(void *arg)
{
    struct caller *c = arg;
    if (c->vcpu && vmmu_vcpu_online(c->f->v) != 0)
        atomic_fetch_add(&c->wrong, 1);
    while (!atomic_load(&c->stop)) {
        int rc = call_handler(c->f->vm, c->kind, c->vcpu ? 0 : -1);
        if (rc != c->want && rc != no_handler(c->kind))
            atomic_fetch_add(&c->wrong, 1);
        atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
        if (c->vcpu)
            vmmu_vcpu_safepoint(c->f->v);
    }
    if (c->vcpu)
        vmmu_vcpu_offline(c->f->v);
    return NULL;
}

/* ---- pairs: a function runs with its own argument, while it is its own ---------- */

/* One installation's argument: the tag of the function installed with it,
 * 'X' once the setter that replaced it returned (its caller may then free
 * it: the test poisons it instead, and frees it much later). */
struct tagged {
    _Atomic char tag;
};

static atomic_ulong mismatches, calls_of[2];

/* The argument is this function's, and stays live for the whole call
 * (looked at again and again, so that a setter that returns too early has
 * time to retire it under the call). */
static void tagged_call(void *opaque, char tag)
{
    struct tagged *t = opaque;
    for (int i = 0; i < 64; i++)
        if (atomic_load_explicit(&t->tag, memory_order_relaxed) != tag) {
            atomic_fetch_add(&mismatches, 1);
            break;
        }
    atomic_fetch_add_explicit(&calls_of[tag == 'B'], 1, memory_order_relaxed);
}

static int device_a(void *opaque, struct vmmu_device_req *req)
{
    (void)req;
    tagged_call(opaque, 'A');
    return VMMU_EDEAD;
}

static int device_b(void *opaque, struct vmmu_device_req *req)
{
    (void)req;
    tagged_call(opaque, 'B');
    return VMMU_EDEAD;
}

static int pagein_a(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    tagged_call(opaque, 'A');
    return VMMU_EDEAD;
}

static int pagein_b(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    tagged_call(opaque, 'B');
    return VMMU_EDEAD;
}

/* Retired arguments wait here, poisoned, before they are freed. */
#define RETIRED 1024

/* A vCPU thread and a host thread call the handler while it is swapped
 * between A and B again and again, each installation with an argument of
 * its own that the test retires once the setter returned: A's function
 * always gets an argument of A's, B's of B's, and it stays live until the
 * call returns.  (The function and the argument were stored one after the
 * other and loaded one after the other, so a caller could take B's
 * function with A's argument; and the setter returned at once, while a
 * call of the old handler was under way.) */
static void swaps(struct fx *f, enum kind kind)
{
    static const struct handler fa = {device_a, pagein_a}, fb = {device_b, pagein_b};
    static struct tagged *retired[RETIRED];
    atomic_store(&mismatches, 0);
    atomic_store(&calls_of[0], 0);
    atomic_store(&calls_of[1], 0);
    struct tagged *cur = calloc(1, sizeof(*cur));
    assert_non_null(cur);
    atomic_store(&cur->tag, 'A');
    assert_int_equal(set_handler(f->vm, kind, &fa, cur), 0);
    struct caller cv = {.f = f, .kind = kind, .vcpu = true, .want = VMMU_EDEAD};
    struct caller ch = {.f = f, .kind = kind, .vcpu = false, .want = VMMU_EDEAD};
    pthread_t tv, th;
    assert_int_equal(pthread_create(&tv, NULL, caller_loop, &cv), 0);
    assert_int_equal(pthread_create(&th, NULL, caller_loop, &ch), 0);
    while (!atomic_load(&cv.calls) || !atomic_load(&ch.calls))
        usleep(100); /* both call already */
    /* Swaps, and calls during them, in numbers. */
    unsigned long from_v = atomic_load(&cv.calls), from_h = atomic_load(&ch.calls);
    unsigned nswaps = 0;
    for (; nswaps < 4000 || atomic_load(&cv.calls) - from_v < 300000 ||
           atomic_load(&ch.calls) - from_h < 300000;
         nswaps++) {
        bool b = nswaps % 2 == 0;
        struct tagged *next = calloc(1, sizeof(*next));
        assert_non_null(next);
        atomic_store(&next->tag, b ? 'B' : 'A');
        assert_int_equal(set_handler(f->vm, kind, b ? &fb : &fa, next), 0);
        atomic_store(&cur->tag, 'X');
        free(retired[nswaps % RETIRED]);
        retired[nswaps % RETIRED] = cur;
        cur = next;
    }
    atomic_store(&cv.stop, 1);
    atomic_store(&ch.stop, 1);
    assert_int_equal(pthread_join(tv, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(set_handler(f->vm, kind, NULL, NULL), 0);
    free(cur);
    for (unsigned i = 0; i < RETIRED; i++) {
        free(retired[i]);
        retired[i] = NULL;
    }
    print_message("%u swaps, %lu + %lu calls, %lu of A, %lu of B, %lu mismatched\n", nswaps,
                  atomic_load(&cv.calls), atomic_load(&ch.calls), atomic_load(&calls_of[0]),
                  atomic_load(&calls_of[1]), atomic_load(&mismatches));
    assert_int_equal(atomic_load(&mismatches), 0);
    assert_int_equal(atomic_load(&cv.wrong), 0);
    assert_int_equal(atomic_load(&ch.wrong), 0);
    assert_true(atomic_load(&calls_of[0]) > 0);
    assert_true(atomic_load(&calls_of[1]) > 0);
}

static void a_device_handler_swapped_under_calls_always_gets_its_own_live_argument(void **state)
{
    swaps(*state, DEVICE);
}

static void a_pagein_handler_swapped_under_calls_always_gets_its_own_live_argument(void **state)
{
    swaps(*state, PAGEIN);
}

/* ---- the setter waits for a call under way --------------------------------------- */

struct slow {
    sem_t inside, release;
    atomic_int calls;
};

/* The first call says it is inside and waits for the test; later calls
 * return at once. */
static void slow_call(struct slow *s)
{
    if (atomic_fetch_add(&s->calls, 1) == 0) {
        sem_post(&s->inside);
        sem_wait(&s->release);
    }
}

static int slow_device(void *opaque, struct vmmu_device_req *req)
{
    (void)req;
    slow_call(opaque);
    return VMMU_EDEAD;
}

static int slow_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    slow_call(opaque);
    return VMMU_EDEAD;
}

struct one_call {
    struct vmmu_vm *vm;
    enum kind kind;
    int rc;
};

static void *call_once(void *arg)
{
    struct one_call *c = arg;
    c->rc = call_handler(c->vm, c->kind, -1);
    return NULL;
}

struct unsetter {
    struct vmmu_vm *vm;
    enum kind kind;
    int rc;
    atomic_bool returned;
};

static void *unset(void *arg)
{
    struct unsetter *u = arg;
    u->rc = set_handler(u->vm, u->kind, NULL, NULL);
    atomic_store(&u->returned, true);
    return NULL;
}

/* A host thread's call (its handler runs offline, beyond any grace period)
 * is inside the handler; another thread uninstalls it.  The uninstall is
 * visible at once (new calls find no handler), but the setter returns only
 * after the call under way did: until then its caller may not free the
 * handler's argument.  (It returned at once.) */
static void setter_waits(struct fx *f, enum kind kind)
{
    struct slow s = {0};
    assert_int_equal(sem_init(&s.inside, 0, 0), 0);
    assert_int_equal(sem_init(&s.release, 0, 0), 0);
    static const struct handler slow = {slow_device, slow_pagein};
    assert_int_equal(set_handler(f->vm, kind, &slow, &s), 0);
    struct one_call c = {.vm = f->vm, .kind = kind};
    pthread_t tc, tu;
    assert_int_equal(pthread_create(&tc, NULL, call_once, &c), 0);
    assert_int_equal(sem_wait(&s.inside), 0);
    struct unsetter u = {.vm = f->vm, .kind = kind};
    assert_int_equal(pthread_create(&tu, NULL, unset, &u), 0);
    /* Wait until the handler is gone for new calls (the setter swapped
     * it), then give a setter that would not wait the time to return. */
    while (call_handler(f->vm, kind, -1) != no_handler(kind))
        usleep(100);
    usleep(100000);
    assert_false(atomic_load(&u.returned));
    assert_int_equal(sem_post(&s.release), 0);
    assert_int_equal(pthread_join(tu, NULL), 0);
    assert_int_equal(pthread_join(tc, NULL), 0);
    assert_true(atomic_load(&u.returned));
    assert_int_equal(u.rc, 0);
    assert_int_equal(c.rc, VMMU_EDEAD);
    assert_int_equal(call_handler(f->vm, kind, -1), no_handler(kind));
    sem_destroy(&s.inside);
    sem_destroy(&s.release);
}

static void uninstalling_the_device_handler_returns_after_the_call_under_way(void **state)
{
    setter_waits(*state, DEVICE);
}

static void uninstalling_the_pagein_handler_returns_after_the_call_under_way(void **state)
{
    setter_waits(*state, PAGEIN);
}

/* ---- a handler that replaces itself ---------------------------------------------- */

struct selfish {
    struct vmmu_vm *vm;
    enum kind kind;
    int calls;
    int rc[2];
};

static int selfish_device(void *opaque, struct vmmu_device_req *req);
static int selfish_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa);
static const struct handler selfish = {selfish_device, selfish_pagein};

static void selfish_call(struct selfish *s)
{
    /* Uninstalling it, or installing it again (the setter retires the
     * record it runs), would wait for this call. */
    s->rc[0] = set_handler(s->vm, s->kind, NULL, NULL);
    s->rc[1] = set_handler(s->vm, s->kind, &selfish, s);
    s->calls++;
}

static int selfish_device(void *opaque, struct vmmu_device_req *req)
{
    (void)req;
    selfish_call(opaque);
    return VMMU_EDEAD;
}

static int selfish_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    selfish_call(opaque);
    return VMMU_EDEAD;
}

/* From inside the handler, on a host thread and on a vCPU thread, its
 * setter refuses with VMMU_EBUSY and changes nothing; from outside, it
 * works. */
static void handler_replaces_itself(struct fx *f, enum kind kind)
{
    struct selfish s = {.vm = f->vm, .kind = kind};
    assert_int_equal(set_handler(f->vm, kind, &selfish, &s), 0);
    alarm(60); /* a deadlock ends the test */
    assert_int_equal(call_handler(f->vm, kind, -1), VMMU_EDEAD);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.rc[0], VMMU_EBUSY);
    assert_int_equal(s.rc[1], VMMU_EBUSY);
    assert_int_equal(vmmu_vcpu_online(f->v), 0);
    assert_int_equal(call_handler(f->vm, kind, 0), VMMU_EDEAD);
    assert_int_equal(vmmu_vcpu_offline(f->v), 0);
    alarm(0);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.rc[0], VMMU_EBUSY);
    assert_int_equal(s.rc[1], VMMU_EBUSY);
    assert_int_equal(set_handler(f->vm, kind, NULL, NULL), 0);
    assert_int_equal(call_handler(f->vm, kind, -1), no_handler(kind));
    assert_int_equal(s.calls, 2);
}

static void the_device_handler_cannot_replace_itself_from_inside(void **state)
{
    handler_replaces_itself(*state, DEVICE);
}

static void the_pagein_handler_cannot_replace_itself_from_inside(void **state)
{
    handler_replaces_itself(*state, PAGEIN);
}

/* ---- a pager that comes and goes under page-ins ---------------------------------- */

/* A vCPU thread and a host thread keep asking for a page that no pager
 * holds (the pager's handler finds nothing to bring back) while pagers
 * are created and destroyed: the destroy frees the pager only once no
 * thread is in its handler.  (ASan/TSan: a handler call on a freed
 * pager.) */
static void pagers_destroyed_under_page_ins_are_never_used_after_they_are_freed(void **state)
{
    struct fx *f = *state;
    struct caller cv = {.f = f, .kind = PAGEIN, .vcpu = true, .want = VMMU_EPAGEDOUT};
    struct caller ch = {.f = f, .kind = PAGEIN, .vcpu = false, .want = VMMU_EPAGEDOUT};
    pthread_t tv, th;
    assert_int_equal(pthread_create(&tv, NULL, caller_loop, &cv), 0);
    assert_int_equal(pthread_create(&th, NULL, caller_loop, &ch), 0);
    while (!atomic_load(&cv.calls) || !atomic_load(&ch.calls))
        usleep(100); /* both call already */
    for (int i = 0; i < 300; i++) {
        struct vmmu_pager *pg;
        assert_int_equal(vmmu_pager_create(f->vm, NULL, &pg), 0);
        assert_int_equal(vmmu_pager_destroy(pg), 0);
    }
    atomic_store(&cv.stop, 1);
    atomic_store(&ch.stop, 1);
    assert_int_equal(pthread_join(tv, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&cv.wrong), 0);
    assert_int_equal(atomic_load(&ch.wrong), 0);
    assert_true(atomic_load(&cv.calls) > 0);
    assert_true(atomic_load(&ch.calls) > 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_device_handler_swapped_under_calls_always_gets_its_own_live_argument),
        T(a_pagein_handler_swapped_under_calls_always_gets_its_own_live_argument),
        T(uninstalling_the_device_handler_returns_after_the_call_under_way),
        T(uninstalling_the_pagein_handler_returns_after_the_call_under_way),
        T(the_device_handler_cannot_replace_itself_from_inside),
        T(the_pagein_handler_cannot_replace_itself_from_inside),
        T(pagers_destroyed_under_page_ins_are_never_used_after_they_are_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
