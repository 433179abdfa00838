/* SPDX-License-Identifier: MIT */
/* Access with threads: locked adds from two vCPUs never lose an update
 * (aligned, and misaligned across two 8-byte words), and the retry flow
 * end to end: a device model answers later from another thread while a
 * third thread rewrites the guest's page tables and data between the
 * instruction's two passes; the same flow through the device-model layer's
 * in-process server; and dirty logging's get-and-clear racing writer vCPUs
 * that write through the TLB's inline hit. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "test_access_env.h"
#include "vmmu/dm.h"

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000100000ull;
static const uint64_t VDEV = 0x0000400000200000ull;
#define ADDS 20000u

struct adder {
    struct vmmu_vm *vm;
    uint64_t cr3;
    uint64_t offset;
    unsigned size;
    int failures;
};

/* A vCPU for a test thread, in 64-bit mode on @cr3 (NULL, counted in
 * @failures, if it could not be made). */
static struct vmmu_vcpu *thread_vcpu(struct vmmu_vm *vm, uint64_t cr3, int *failures)
{
    struct vmmu_vcpu *v;
    if (vmmu_vcpu_create(vm, NULL, &v)) {
        ++*failures;
        return NULL;
    }
    struct vmmu_x86_regs r = regs_4level(cr3);
    if (vmmu_vcpu_set_state(v, &r))
        ++*failures;
    return v;
}

static void *add_thread(void *arg)
{
    struct adder *a = arg;
    struct vmmu_vcpu *v = thread_vcpu(a->vm, a->cr3, &a->failures);
    if (!v)
        return NULL;
    for (unsigned i = 0; i < ADDS; i++) {
        uint64_t old;
        struct vmmu_x86_fault f;
        if (vmmu_access_rmw(v, VA + a->offset, a->size, VMMU_RMW_ADD, 1, &old, 0, &f) ||
            f.vector != VMMU_X86_FAULT_NONE)
            a->failures++;
    }
    vmmu_vcpu_destroy(v);
    return NULL;
}

static void two_vcpus_locked_adds_lose_no_update(uint64_t offset, unsigned size)
{
    struct acc_env e;
    acc_env_init(&e);
    amap(&e, VA, DATA(0), PTE_RW);
    struct adder a[2] = {{e.t.env.vm, e.root, offset, size, 0}, {e.t.env.vm, e.root, offset, size, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, add_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(a[0].failures + a[1].failures, 0);
    uint64_t total = 0;
    memcpy(&total, e.t.env.mem + DATA(0) + offset, size);
    assert_int_equal(total, 2 * ADDS);
    acc_env_fini(&e);
}

static void two_threads_locked_add_aligned_loses_no_update(void **state)
{
    (void)state;
    two_vcpus_locked_adds_lose_no_update(64, 8);
}

static void two_threads_locked_add_straddling_words_loses_no_update(void **state)
{
    (void)state;
    two_vcpus_locked_adds_lose_no_update(70, 4); /* bytes 70..73 straddle 64..71 / 72..79 */
}

/* Locked adds whose operand crosses a page (split locks) against aligned
 * locked adds on the same bytes, or against each other, from vCPUs that
 * are online and pass safe points as an emulator's loop does; a third
 * vCPU may shoot down every TLB meanwhile (it waits for the others, they
 * park for the split adds).  A split add adds 1 << 32 to the 8 bytes
 * that start 4 bytes before a page ends; an aligned one adds 1 to the 4
 * bytes that start the next page: the same bytes either way. */
enum { SPLIT_ADD, ALIGNED_ADD, SHOOTDOWNS };

struct split_adder {
    struct vmmu_vm *vm;
    uint64_t cr3;
    int what;
    atomic_int *ready, *running;
    int nthreads;
    int failures;
};

static void *split_add_thread(void *arg)
{
    struct split_adder *a = arg;
    struct vmmu_vcpu *v = thread_vcpu(a->vm, a->cr3, &a->failures);
    if (!v) { /* counted: the others must not wait for this one */
        atomic_fetch_add(a->ready, 1);
        if (a->what != SHOOTDOWNS)
            atomic_fetch_sub(a->running, 1);
        return NULL;
    }
    if (vmmu_vcpu_online(v))
        a->failures++;
    atomic_fetch_add(a->ready, 1);
    while (atomic_load(a->ready) < a->nthreads)
        vmmu_vcpu_safepoint(v);
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    for (unsigned i = 0; a->what == SHOOTDOWNS ? atomic_load(a->running) > 0 : i < ADDS; i++) {
        uint64_t old;
        struct vmmu_x86_fault f = {.vector = VMMU_X86_FAULT_NONE};
        int rc = a->what == SPLIT_ADD
                     ? vmmu_access_rmw(v, VA + 4092, 8, VMMU_RMW_ADD, 1ull << 32, &old, 0, &f)
                 : a->what == ALIGNED_ADD
                     ? vmmu_access_rmw(v, VA + 4096, 4, VMMU_RMW_ADD, 1, &old, 0, &f)
                     : vmmu_shootdown_sync(a->vm, v, NULL, &all);
        if (rc || f.vector != VMMU_X86_FAULT_NONE)
            a->failures++;
        vmmu_vcpu_safepoint(v);
    }
    if (a->what != SHOOTDOWNS)
        atomic_fetch_sub(a->running, 1);
    vmmu_vcpu_offline(v);
    vmmu_vcpu_destroy(v);
    return NULL;
}

static void split_adds_lose_no_update(const int *what, int nthreads)
{
    struct acc_env e;
    acc_env_init(&e);
    amap(&e, VA, DATA(0), PTE_RW);
    amap(&e, VA + 4096, DATA(1), PTE_RW);
    atomic_int ready = 0, running = 0;
    struct split_adder a[3];
    pthread_t t[3];
    for (int i = 0; i < nthreads; i++) {
        a[i] = (struct split_adder){e.t.env.vm, e.root, what[i], &ready, &running, nthreads, 0};
        if (what[i] != SHOOTDOWNS)
            atomic_fetch_add(&running, 1);
    }
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, split_add_thread, &a[i]), 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    int failures = 0, adders = 0;
    for (int i = 0; i < nthreads; i++) {
        failures += a[i].failures;
        adders += what[i] != SHOOTDOWNS;
    }
    assert_int_equal(failures, 0);
    uint32_t low, high;
    memcpy(&low, e.t.env.mem + DATA(0) + 4092, 4);
    memcpy(&high, e.t.env.mem + DATA(1), 4);
    assert_int_equal(low, 0);
    assert_int_equal(high, (uint32_t)adders * ADDS);
    acc_env_fini(&e);
}

static void a_split_locked_add_is_atomic_against_aligned_ones_on_its_bytes(void **state)
{
    (void)state;
    static const int what[] = {SPLIT_ADD, ALIGNED_ADD};
    split_adds_lose_no_update(what, 2);
}

static void split_locked_adds_are_atomic_against_each_other_during_shootdowns(void **state)
{
    (void)state;
    static const int what[] = {SPLIT_ADD, SPLIT_ADD, SHOOTDOWNS};
    split_adds_lose_no_update(what, 3);
}

/* ---- The retry flow ---------------------------------------------------------- */

struct retry {
    struct acc_env e;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool request_posted; /* the vCPU's device access is waiting */
    bool answered;       /* the device thread has the value ready */
    bool rewritten;      /* the rewriter has changed tables and data */
    uint64_t answer;
    unsigned device_calls;
};

static int device(void *opaque, struct vmmu_device_req *req)
{
    struct retry *r = opaque;
    pthread_mutex_lock(&r->lock);
    r->device_calls++;
    int rc = VMMU_EPENDING;
    if (r->answered) {
        req->data = r->answer;
        rc = 0;
    } else {
        r->request_posted = true;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void wait_for(struct retry *r, bool *flag)
{
    pthread_mutex_lock(&r->lock);
    while (!*flag)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

static void *device_thread(void *arg)
{
    struct retry *r = arg;
    wait_for(r, &r->request_posted);
    pthread_mutex_lock(&r->lock);
    r->answer = 0xfeed;
    r->answered = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void *rewriter_thread(void *arg)
{
    struct retry *r = arg;
    wait_for(r, &r->request_posted);
    pthread_mutex_lock(&r->lock);
    /* Between the passes: the guest remaps the operand's page elsewhere
     * and rewrites the old page's contents. */
    amap(&r->e, VA, DATA(9), PTE_RW);
    put64(&r->e.t.env, DATA(9), 0x9999);
    put64(&r->e.t.env, DATA(0), 0x2222);
    r->rewritten = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* "ADD [VA], [VDEV]"-like instruction: read the RAM operand, read the device,
 * write the sum back to the RAM operand. */
static int instruction(struct retry *r, uint64_t *ram_seen)
{
    struct vmmu_vcpu *v = r->e.t.vcpu;
    struct vmmu_x86_fault f;
    uint64_t a = 0, b = 0;
    assert_int_equal(vmmu_insn_begin(v), 0);
    int rc = vmmu_access_load(v, VA, 8, 0, &a, &f);
    if (rc == 0)
        rc = vmmu_access_load(v, VDEV, 8, 0, &b, &f);
    if (rc == 0) {
        uint64_t sum = a + b;
        rc = vmmu_access_store(v, VA, 8, 0, &sum, &f);
    }
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    *ram_seen = a;
    assert_int_equal(vmmu_insn_end(v, rc), 0);
    return rc;
}

static void device_answers_later_while_another_thread_rewrites_tables_and_data(void **state)
{
    (void)state;
    struct retry *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    acc_env_init(&r->e);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(r->e.t.env.vm, &d, NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(r->e.t.env.vm, device, r), 0);
    amap(&r->e, VA, DATA(0), PTE_RW);
    amap(&r->e, VDEV, DEV_GPA, PTE_RW);
    put64(&r->e.t.env, DATA(0), 0x1000);

    pthread_t dev, rew;
    assert_int_equal(pthread_create(&dev, NULL, device_thread, r), 0);
    assert_int_equal(pthread_create(&rew, NULL, rewriter_thread, r), 0);

    uint64_t seen;
    assert_int_equal(instruction(r, &seen), VMMU_EPENDING);
    assert_int_equal(seen, 0x1000);
    /* The vCPU loop: wait for the answer, then re-execute. */
    wait_for(r, &r->answered);
    wait_for(r, &r->rewritten);
    pthread_join(dev, NULL);
    pthread_join(rew, NULL);
    /* The guest flushed after remapping; the TLB must not matter. */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(r->e.t.vcpu), 0);
    assert_int_equal(instruction(r, &seen), 0);
    /* The second pass saw the first pass's operand and translation. */
    assert_int_equal(seen, 0x1000);
    assert_int_equal(get64(&r->e.t.env, DATA(0)), 0x1000 + 0xfeed);
    assert_int_equal(get64(&r->e.t.env, DATA(9)), 0x9999);
    assert_int_equal(r->device_calls, 2);
    /* The next instruction uses the new mapping. */
    uint64_t now;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(r->e.t.vcpu, VA, 8, 0, &now, &f), 0);
    assert_int_equal(now, 0x9999);

    acc_env_fini(&r->e);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* ---- The retry flow through the device-model layer ------------------------------ */

struct dm_fx {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vmmu_dm_server *srv;
    unsigned calls;
    int seen_vcpu;      /* vcpu_id of the last request */
    struct vmmu_dm_ioreq seen; /* the last request */
    bool pending;       /* a request waits for the completer */
};

static int dm_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct dm_fx *d = opaque;
    pthread_mutex_lock(&d->lock);
    d->calls++;
    d->seen_vcpu = req->vcpu_id;
    d->seen = *req;
    d->pending = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return VMMU_EPENDING; /* answered later, from the completer thread */
}

static void *dm_completer(void *arg)
{
    struct dm_fx *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->pending)
        pthread_cond_wait(&d->cond, &d->lock);
    struct vmmu_dm_ioreq req = d->seen;
    pthread_mutex_unlock(&d->lock);
    if (vmmu_dm_complete(d->srv, &req, 0xabcd1234, 0) != 0)
        return (void *)1;
    return NULL;
}

static void device_model_answers_later_and_the_reexecution_completes(void **state)
{
    (void)state;
    struct acc_env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    struct vmmu_vcpu *v = e->t.vcpu;
    struct dm_fx d = {.seen_vcpu = -2};
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    static const struct vmmu_dm_ops ops = {dm_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, &d, &d.srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(d.srv, DEV_GPA, 4096, 0, NULL, NULL), 0);
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VDEV, DEV_GPA, PTE_RW);
    put64(&e->t.env, DATA(0), 0x10);
    int id = vmmu_vcpu_id(v);
    assert_true(id >= 0);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dm_completer, &d), 0);
    /* First pass: the RAM operand is read, the device pends. */
    struct vmmu_x86_fault f;
    uint64_t a = 0, b = 0;
    assert_int_equal(vmmu_insn_begin(v), 0);
    assert_int_equal(vmmu_access_load(v, VA, 8, 0, &a, &f), 0);
    assert_int_equal(vmmu_access_load(v, VDEV + 8, 4, 0, &b, &f), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(v, VMMU_EPENDING), 0);
    /* The request carried the vCPU's id, not the host's -1. */
    pthread_mutex_lock(&d.lock);
    while (!d.pending)
        pthread_cond_wait(&d.cond, &d.lock);
    assert_int_equal(d.seen_vcpu, id);
    pthread_mutex_unlock(&d.lock);
    /* Meanwhile the operand changes; the vCPU loop waits for the answer. */
    put64(&e->t.env, DATA(0), 0x20);
    assert_int_equal(vmmu_dm_vcpu_wait(dm, id, -1), 0);
    void *ret;
    pthread_join(t, &ret);
    assert_null(ret);
    /* Re-execution: the operand as the first pass saw it, the answer now. */
    a = b = 0;
    assert_int_equal(vmmu_insn_begin(v), 0);
    assert_int_equal(vmmu_access_load(v, VA, 8, 0, &a, &f), 0);
    assert_int_equal(vmmu_access_load(v, VDEV + 8, 4, 0, &b, &f), 0);
    uint64_t sum = a + b;
    assert_int_equal(vmmu_access_store(v, VA, 8, 0, &sum, &f), 0);
    assert_int_equal(vmmu_insn_end(v, 0), 0);
    assert_int_equal(a, 0x10);
    assert_int_equal(b, 0xabcd1234);
    assert_int_equal(get64(&e->t.env, DATA(0)), 0x10 + 0xabcd1234ull);
    assert_int_equal(d.calls, 1); /* the device model served the access once */

    vmmu_dm_destroy(dm);
    acc_env_fini(e);
    free(e);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.cond);
}

/* A vCPU asleep in vmmu_dm_vcpu_wait() is offline: a synchronous shootdown
 * from another thread returns before the device model answers (else it
 * would wait for the answer, which comes only after it returned, and the
 * vCPU would see its access time out). */
struct waiter {
    struct acc_env *e;
    struct vmmu_dm *dm;
    uint64_t b;
    int rc_wait, rc_again;
};

static void *waiting_vcpu(void *arg)
{
    struct waiter *w = arg;
    struct vmmu_vcpu *v = w->e->t.vcpu;
    struct vmmu_x86_fault f;
    if (vmmu_vcpu_online(v) || vmmu_insn_begin(v) ||
        vmmu_access_load(v, VDEV + 8, 4, 0, &w->b, &f) != VMMU_EPENDING ||
        vmmu_insn_end(v, VMMU_EPENDING) || vmmu_vcpu_safepoint(v)) {
        w->rc_wait = -100;
        return NULL;
    }
    w->rc_wait = vmmu_dm_vcpu_wait(w->dm, vmmu_vcpu_id(v), -1);
    w->rc_again = vmmu_insn_begin(v);
    if (!w->rc_again)
        w->rc_again = vmmu_access_load(v, VDEV + 8, 4, 0, &w->b, &f);
    vmmu_insn_end(v, w->rc_again);
    vmmu_vcpu_offline(v);
    return NULL;
}

static void a_vcpu_waiting_for_a_device_model_does_not_hold_up_a_shootdown(void **state)
{
    (void)state;
    struct waiter w = {.e = calloc(1, sizeof(struct acc_env))};
    assert_non_null(w.e);
    acc_env_init(w.e);
    struct dm_fx d = {.seen_vcpu = -2};
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    assert_int_equal(vmmu_dm_create(w.e->t.env.vm, NULL, &w.dm), 0);
    static const struct vmmu_dm_ops ops = {dm_access};
    assert_int_equal(vmmu_dm_server_create_inproc(w.dm, &ops, &d, &d.srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(d.srv, DEV_GPA, 4096, 0, NULL, NULL), 0);
    amap(w.e, VDEV, DEV_GPA, PTE_RW);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiting_vcpu, &w), 0);
    pthread_mutex_lock(&d.lock);
    while (!d.pending)
        pthread_cond_wait(&d.cond, &d.lock);
    pthread_mutex_unlock(&d.lock);
    /* The vCPU is asleep (or about to be) waiting for the answer. */
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(w.e->t.env.vm, NULL, NULL, &all), 0);
    assert_int_equal(vmmu_dm_complete(d.srv, &d.seen, 0x5678, 0), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc_wait, 0);
    assert_int_equal(w.rc_again, 0);
    assert_int_equal(w.b, 0x5678);
    vmmu_dm_destroy(w.dm);
    acc_env_fini(w.e);
    free(w.e);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.cond);
}


/* ---- Dirty logging racing writers ----------------------------------------------- */

#define DL_PAGES 64u
#define DL_WRITERS 2u
#define DL_WRITES 20000u
#define DL_ROUNDS 100u /* writers keep writing until the host made this many calls */
#define DL_DATA(n) (4 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VDL = 0x0000400001000000ull;

struct dl_writer {
    struct vmmu_vm *vm;
    uint64_t cr3;
    unsigned index;
    uint64_t written[(DL_PAGES + 63) / 64]; /* pages this writer wrote */
    int failures;
    _Atomic bool *done;
    _Atomic unsigned *rounds;
};

/* Each writer owns the 8-byte word at offset 8 * index of every page and
 * stores increasing sequence numbers there, through the inline probe hit
 * when the TLB has a fast write entry (a JIT's store), else through the
 * out-of-line probe, which fills and sets the page's dirty bit. */
static void *dl_writer_thread(void *arg)
{
    struct dl_writer *w = arg;
    struct vmmu_vcpu *v;
    if (vmmu_vcpu_create(w->vm, NULL, &v)) {
        w->failures++;
        return NULL;
    }
    struct vmmu_x86_regs r = regs_4level(w->cr3);
    if (vmmu_vcpu_set_state(v, &r) || vmmu_vcpu_online(v))
        w->failures++;
    const struct vmmu_access_fast *fast = vmmu_access_fast(v);
    uint64_t x = 0x9e3779b97f4a7c15ull * (w->index + 1);
    for (unsigned i = 1; i <= DL_WRITES || atomic_load(w->rounds) < DL_ROUNDS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned page = (unsigned)(x % DL_PAGES);
        uint64_t va = VDL + (uint64_t)page * 4096 + 8 * w->index;
        void *host;
        if (!vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_WRITE, &host)) {
            struct vmmu_probe p;
            if (vmmu_access_probe(v, va, 8, VMMU_X86_ACC_WRITE, &p) || !p.host) {
                w->failures++;
                continue;
            }
            host = p.host;
        }
        __atomic_store_n((uint64_t *)host, ((uint64_t)w->index << 32) | i, __ATOMIC_RELAXED);
        w->written[page / 64] |= 1ull << (page % 64);
        if (i % 16 == 0 && vmmu_vcpu_safepoint(v))
            w->failures++;
    }
    if (vmmu_vcpu_offline(v))
        w->failures++;
    atomic_store(w->done, true);
    vmmu_vcpu_destroy(v);
    return NULL;
}

/* Copy the reported data pages into @shadow (as a migration would). */
static void dl_copy(struct acc_env *e, const uint64_t *bm, uint64_t *shadow, uint64_t *seen)
{
    for (unsigned p = 0; p < DL_PAGES; p++) {
        uint64_t gfn = DL_DATA(p) >> 12;
        if (!(bm[gfn / 64] & (1ull << (gfn % 64))))
            continue;
        seen[p / 64] |= 1ull << (p % 64);
        const uint64_t *src = (const uint64_t *)(void *)(e->t.env.mem + DL_DATA(p));
        for (unsigned k = 0; k < DL_WRITERS; k++)
            shadow[p * DL_WRITERS + k] = __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
}

static void dirty_log_get_and_clear_racing_writers_loses_no_write(void **state)
{
    (void)state;
    struct acc_env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    for (unsigned p = 0; p < DL_PAGES; p++)
        amap(e, VDL + (uint64_t)p * 4096, DL_DATA(p), PTE_RW);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, true), 0);

    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, e->t.env.ram_id, &info), 0);
    size_t words = (size_t)((info.size >> 12) + 63) / 64;
    uint64_t *bm = calloc(words, sizeof(*bm));
    uint64_t *shadow = calloc(DL_PAGES * DL_WRITERS, sizeof(*shadow));
    assert_non_null(bm);
    assert_non_null(shadow);
    uint64_t seen[(DL_PAGES + 63) / 64] = {0};

    _Atomic bool done[DL_WRITERS];
    _Atomic unsigned rounds = 0;
    struct dl_writer w[DL_WRITERS];
    pthread_t t[DL_WRITERS];
    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < DL_WRITERS; i++) {
        atomic_init(&done[i], false);
        w[i].vm = vm;
        w[i].cr3 = e->root;
        w[i].index = i;
        w[i].done = &done[i];
        w[i].rounds = &rounds;
        assert_int_equal(pthread_create(&t[i], NULL, dl_writer_thread, &w[i]), 0);
    }
    /* The host: get-and-clear in a loop while the writers run. */
    for (;;) {
        bool all_done = true;
        for (unsigned i = 0; i < DL_WRITERS; i++)
            all_done = all_done && atomic_load(&done[i]);
        assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, words, NULL), 0);
        dl_copy(e, bm, shadow, seen);
        atomic_fetch_add(&rounds, 1);
        if (all_done)
            break; /* this round began after every writer's last write */
        sched_yield();
    }
    for (unsigned i = 0; i < DL_WRITERS; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&rounds) > DL_ROUNDS);

    for (unsigned i = 0; i < DL_WRITERS; i++) {
        assert_int_equal(w[i].failures, 0);
        /* Every page a writer wrote was reported by some call... */
        for (unsigned k = 0; k < (DL_PAGES + 63) / 64; k++)
            assert_int_equal(w[i].written[k] & ~seen[k], 0);
    }
    /* ...and what the host copied after the calls is the final memory:
     * no write came after the last report of its page. */
    for (unsigned p = 0; p < DL_PAGES; p++) {
        const uint64_t *now = (const uint64_t *)(void *)(e->t.env.mem + DL_DATA(p));
        for (unsigned k = 0; k < DL_WRITERS; k++)
            assert_int_equal(shadow[p * DL_WRITERS + k], now[k]);
    }
    free(bm);
    free(shadow);
    acc_env_fini(e);
    free(e);
}

/* ---- Code marks from another thread ----------------------------------------------- */

#define CM_WRITERS 2u
#define CM_MARKS 32u
static const uint64_t VCM = 0x0000400002000000ull;

struct cm_writer {
    struct vmmu_vm *vm;
    uint64_t cr3;
    unsigned index;
    const uint64_t *word;        /* this writer's word, in the host's RAM */
    uint64_t pending;            /* the value this writer is about to store */
    _Atomic unsigned *calls;     /* code-handler calls, all writers */
    _Atomic unsigned writes;     /* stores this writer completed */
    _Atomic bool *stop;
    _Atomic int failures; /* read by the host while the writer runs */
    int early, wrong_page;
};

/* On the writing vCPU's thread, before its write: the writer's word still
 * holds what the previous store left. */
static void cm_handler(void *opaque, struct vmmu_vcpu *v, uint64_t gpa_page)
{
    struct cm_writer *w = opaque;
    (void)v;
    if (gpa_page != DATA(0))
        w->wrong_page++;
    if (__atomic_load_n(w->word, __ATOMIC_RELAXED) == w->pending)
        w->early++;
    atomic_fetch_add(w->calls, 1);
}

/* Stores increasing values into its word of the page, through
 * vmmu_access_store() (the TLB's hit path when the write entry is fast),
 * with a safe point after each. */
static void *cm_writer_thread(void *arg)
{
    struct cm_writer *w = arg;
    struct vmmu_vcpu *v;
    if (vmmu_vcpu_create(w->vm, NULL, &v)) {
        w->failures++;
        return NULL;
    }
    struct vmmu_x86_regs r = regs_4level(w->cr3);
    if (vmmu_vcpu_set_state(v, &r) || vmmu_vcpu_online(v) ||
        vmmu_access_set_code_handler(v, cm_handler, w))
        w->failures++;
    for (uint64_t i = 1; !atomic_load(w->stop); i++) {
        struct vmmu_x86_fault f;
        w->pending = ((uint64_t)(w->index + 1) << 48) | i;
        if (vmmu_access_store(v, VCM + 8 * w->index, 8, 0, &w->pending, &f) ||
            f.vector != VMMU_X86_FAULT_NONE)
            w->failures++;
        atomic_fetch_add(&w->writes, 1);
        if (vmmu_vcpu_safepoint(v))
            w->failures++;
    }
    if (vmmu_vcpu_offline(v))
        w->failures++;
    vmmu_vcpu_destroy(v);
    return NULL;
}


/* Start the writers on DATA(0), each on its own word. */
static void cm_writers_start(struct acc_env *e, struct cm_writer *w, pthread_t *t,
                             _Atomic unsigned *calls, _Atomic bool *stop)
{
    memset(w, 0, CM_WRITERS * sizeof(*w));
    for (unsigned i = 0; i < CM_WRITERS; i++) {
        w[i].vm = e->t.env.vm;
        w[i].cr3 = e->root;
        w[i].index = i;
        w[i].word = (const uint64_t *)(void *)(e->t.env.mem + DATA(0) + 8 * i);
        w[i].calls = calls;
        w[i].stop = stop;
        atomic_init(&w[i].writes, 0);
        atomic_init(&w[i].failures, 0);
        assert_int_equal(pthread_create(&t[i], NULL, cm_writer_thread, &w[i]), 0);
    }
}

/* Wait for two more stores of each writer (or its failure). */
static void cm_writers_two_more(struct cm_writer *w)
{
    unsigned at[CM_WRITERS];
    for (unsigned i = 0; i < CM_WRITERS; i++)
        at[i] = atomic_load(&w[i].writes);
    for (unsigned i = 0; i < CM_WRITERS; i++)
        while (atomic_load(&w[i].writes) < at[i] + 2 && !w[i].failures)
            sched_yield();
}

/* vmmu_code_mark() from the host's thread while two vCPUs keep writing the
 * page through fast write entries: when the mark returns no vCPU writes
 * the page fast any more, so a write that starts after it calls a code
 * handler, before the page changes; exactly one vCPU sees each mark. */
static void a_code_mark_from_another_thread_is_seen_by_exactly_one_writing_vcpu(void **state)
{
    (void)state;
    struct acc_env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VCM, DATA(0), PTE_RW);

    _Atomic bool stop = false;
    _Atomic unsigned calls = 0;
    struct cm_writer w[CM_WRITERS];
    pthread_t t[CM_WRITERS];
    cm_writers_start(e, w, t, &calls, &stop);
    for (unsigned m = 0; m < CM_MARKS; m++) {
        assert_int_equal(vmmu_code_mark(vm, DATA(0), 1), 0);
        cm_writers_two_more(w); /* that began after the mark returned */
        assert_int_equal(atomic_load(&calls), m + 1);
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < CM_WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
        assert_int_equal(w[i].early, 0);
        assert_int_equal(w[i].wrong_page, 0);
    }
    assert_int_equal(atomic_load(&calls), CM_MARKS);
    acc_env_fini(e);
    free(e);
}

/* Dirty logging turned on from the host's thread while two vCPUs keep
 * writing the page through fast write entries (filled while logging was
 * off): when vmmu_dirty_log_enable() returns, every vCPU has dropped them,
 * so a write that starts after it sets the page's dirty bit. */
static void dirty_log_enabled_from_another_thread_sees_the_next_write_of_each_vcpu(void **state)
{
    (void)state;
    struct acc_env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    uint32_t ram = e->t.env.ram_id;
    amap(e, VCM, DATA(0), PTE_RW);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, ram, &info), 0);
    size_t words = (size_t)((info.size >> 12) + 63) / 64;
    uint64_t *bm = calloc(words, sizeof(*bm));
    assert_non_null(bm);
    const uint64_t gfn = DATA(0) >> 12;

    _Atomic bool stop = false;
    _Atomic unsigned calls = 0;
    struct cm_writer w[CM_WRITERS];
    pthread_t t[CM_WRITERS];
    cm_writers_start(e, w, t, &calls, &stop);
    for (unsigned round = 0; round < CM_MARKS / 2; round++) {
        for (unsigned on = 0; on < 2; on++) {
            assert_int_equal(vmmu_dirty_log_enable(vm, ram, on != 0), 0);
            cm_writers_two_more(w); /* that began after the call returned */
        }
        assert_int_equal(vmmu_dirty_log_get_and_clear(vm, ram, bm, words, NULL), 0);
        assert_true(bm[gfn / 64] & (1ull << (gfn % 64)));
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < CM_WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(atomic_load(&calls), 0);
    free(bm);
    acc_env_fini(e);
    free(e);
}

/* SDM 8.1.1: an aligned access of up to 8 bytes is single-copy atomic, so
 * a vCPU reading a word another vCPU keeps storing sees one of the values
 * stored, never a mix.  vmmu makes such an access one load or store, on
 * the inline hit (vmmu_guest_load/store) and through the access layer;
 * under ThreadSanitizer a plain byte copy is a reported race. */
#define TEAR_ROUNDS 20000u
static const uint64_t TEAR_A = 0x1111111122222222ull, TEAR_B = 0x3333333344444444ull;

struct tearer {
    struct vmmu_vm *vm;
    uint64_t cr3;
    bool writer;
    atomic_bool *done;
    int failures, torn;
};

static bool tear_ok(uint64_t x, unsigned size)
{
    uint64_t mask = size == 8 ? ~0ull : 0xffffffffull;
    return x == 0 || x == (TEAR_A & mask) || x == (TEAR_B & mask);
}

static void *tear_thread(void *arg)
{
    struct tearer *t = arg;
    struct vmmu_vcpu *v = thread_vcpu(t->vm, t->cr3, &t->failures);
    if (!v)
        return NULL;
    struct vmmu_x86_fault f;
    for (unsigned i = 0; i < TEAR_ROUNDS; i++) {
        for (unsigned size = 4; size <= 8; size *= 2) {
            uint64_t va = VA + 64 + (size == 4 ? 8 : 0);
            if (t->writer) {
                uint64_t x = (i & 1) ? TEAR_A : TEAR_B;
                if (vmmu_access_store(v, va, size, 0, &x, &f) || f.vector != VMMU_X86_FAULT_NONE)
                    t->failures++;
                continue;
            }
            uint64_t x = 0, y = 0;
            if (vmmu_access_load(v, va, size, 0, &x, &f) || f.vector != VMMU_X86_FAULT_NONE)
                t->failures++;
            void *host = vmmu_tlb_lookup_read(v, va, size);
            if (host)
                vmmu_guest_load(&y, host, size);
            if (!tear_ok(x, size) || !tear_ok(y, size))
                t->torn++;
        }
    }
    if (t->writer)
        atomic_store(t->done, true);
    vmmu_vcpu_destroy(v);
    return NULL;
}

static void aligned_words_another_vcpu_keeps_storing_are_read_whole(void **state)
{
    (void)state;
    struct acc_env e;
    acc_env_init(&e);
    amap(&e, VA, DATA(0), PTE_RW);
    atomic_bool done = false;
    struct tearer t[2] = {{e.t.env.vm, e.root, true, &done, 0, 0},
                          {e.t.env.vm, e.root, false, &done, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, tear_thread, &t[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&done));
    assert_int_equal(t[0].failures + t[1].failures, 0);
    assert_int_equal(t[1].torn, 0);
    acc_env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aligned_words_another_vcpu_keeps_storing_are_read_whole),
        cmocka_unit_test(two_threads_locked_add_aligned_loses_no_update),
        cmocka_unit_test(two_threads_locked_add_straddling_words_loses_no_update),
        cmocka_unit_test(a_split_locked_add_is_atomic_against_aligned_ones_on_its_bytes),
        cmocka_unit_test(split_locked_adds_are_atomic_against_each_other_during_shootdowns),
        cmocka_unit_test(device_answers_later_while_another_thread_rewrites_tables_and_data),
        cmocka_unit_test(device_model_answers_later_and_the_reexecution_completes),
        cmocka_unit_test(a_vcpu_waiting_for_a_device_model_does_not_hold_up_a_shootdown),
        cmocka_unit_test(dirty_log_get_and_clear_racing_writers_loses_no_write),
        cmocka_unit_test(a_code_mark_from_another_thread_is_seen_by_exactly_one_writing_vcpu),
        cmocka_unit_test(dirty_log_enabled_from_another_thread_sees_the_next_write_of_each_vcpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
