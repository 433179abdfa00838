/* Device models under concurrency: vCPU threads hammering an in-process
 * server that answers from another thread and an out-of-process one
 * (vmmu-dmdev), asynchronous invalidations racing the vCPUs' safe points,
 * and a DMA racing the removal of its target RAM. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmu/vmmu.h"

#include "dm/dm_internal.h"

extern char **environ;

#define NVCPU 3
#define DEV_GPA 0x40000000ull
#define INPROC_GPA 0x50000000ull
#define DMDEV_ID 0x31616d64756d6d76ull
enum { R_SRC = 0x00, R_DST = 0x08, R_LEN = 0x10, R_CMD = 0x18, R_FILL = 0x20, R_STATUS = 0x28,
       R_ERROR = 0x30, R_ID = 0x40, R_BELL = 0x48 };

static pid_t spawn_dmdev(int *vm_end, const char *delay_us)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    char base[32];
    snprintf(base, sizeof(base), "%llu", DEV_GPA);
    char *argv[] = {VMMU_DMDEV_PATH, "--fd", "3", "--mmio-base", base, "--chunk-delay-us",
                    (char *)delay_us, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, VMMU_DMDEV_PATH, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    *vm_end = sv[0];
    return pid;
}

/* ---- an in-process server that answers from its own thread -------------------- */

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vmmu_dm_ioreq req[64];
    unsigned head, tail;
    int stop;
};

struct world {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *remote, *inproc;
    struct queue q;
    pid_t pid;
    _Atomic int invals_done;
    _Atomic int stop_inval;
};

static int inproc_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct queue *q = opaque;
    if (req->write)
        return 0;
    pthread_mutex_lock(&q->lock);
    q->req[q->tail % 64] = *req;
    q->tail++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return VMMU_EPENDING;
}

static void *completer(void *arg)
{
    struct world *w = arg;
    struct queue *q = &w->q;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->head == q->tail && !q->stop)
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->head == q->tail)
            break;
        struct vmmu_dm_ioreq req = q->req[q->head % 64];
        q->head++;
        pthread_mutex_unlock(&q->lock);
        assert_int_equal(vmmu_dm_complete(w->inproc, &req, req.addr * 3 + (uint64_t)req.vcpu_id, 0),
                         0);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static int access_loop(struct world *w, int vcpu, uint64_t gpa, int write, uint64_t *v)
{
    struct vmmu_device_req r = {.gpa = gpa, .size = 8, .write = write, .data = *v,
                                .vcpu_id = vcpu};
    int err;
    while ((err = vmmu_p2m_device_access(w->vm, &r)) == VMMU_EPENDING)
        assert_int_equal(vmmu_dm_vcpu_wait(w->dm, vcpu, -1), 0);
    *v = r.data;
    return err;
}

struct vcpu_arg {
    struct world *w;
    int id;
    int rounds;
};

static void *vcpu_thread(void *arg)
{
    struct vcpu_arg *a = arg;
    struct world *w = a->w;
    const uint32_t *flags = vmmu_dm_vcpu_flags(w->dm, a->id);
    for (int i = 0; i < a->rounds; i++) {
        assert_int_equal(vmmu_dm_vcpu_safe_point(w->dm, a->id, flags), 0);
        uint64_t v = 0;
        uint64_t gpa = INPROC_GPA + (uint64_t)((i * 8) % 4096);
        assert_int_equal(access_loop(w, a->id, gpa, 0, &v), 0);
        assert_int_equal(v, gpa * 3 + (uint64_t)a->id);
        v = 0;
        assert_int_equal(access_loop(w, a->id, DEV_GPA + R_ID, 0, &v), 0);
        assert_int_equal(v, DMDEV_ID);
        v = 1;
        assert_int_equal(access_loop(w, a->id, DEV_GPA + 4096 + R_BELL, 1, &v), 0);
    }
    return NULL;
}

static void *invalidator(void *arg)
{
    struct world *w = arg;
    while (!atomic_load(&w->stop_inval)) {
        uint64_t ticket;
        assert_int_equal(vmmu_dm_invalidate_async(w->dm, 0x1000, 0x1000, &ticket), 0);
        assert_int_equal(vmmu_dm_invalidate_wait(w->dm, ticket), 0);
        atomic_fetch_add(&w->invals_done, 1);
    }
    return NULL;
}

static void world_init(struct world *w, const char *delay_us)
{
    memset(w, 0, sizeof(*w));
    assert_int_equal(vmmu_vm_create(NULL, &w->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 16 << 20};
    assert_int_equal(vmmu_region_add(w->vm, &ram, NULL), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = NVCPU};
    assert_int_equal(vmmu_dm_create(w->vm, &cfg, &w->dm), 0);
    int sock;
    w->pid = spawn_dmdev(&sock, delay_us);
    struct vmmu_dm_remote_config rc = {.timeout_ms = 20000, .wait_us = 200, .ring_entries = 8,
                                       .pid = w->pid};
    assert_int_equal(vmmu_dm_server_create_remote(w->dm, sock, &rc, &w->remote), 0);
    assert_int_equal(vmmu_dm_map_mmio(w->remote, DEV_GPA, 4096, 0, NULL, NULL), 0);
    assert_int_equal(vmmu_dm_map_mmio(w->remote, DEV_GPA + 4096, 4096, VMMU_DM_RANGE_BUFFERED,
                                      NULL, NULL), 0);
    pthread_mutex_init(&w->q.lock, NULL);
    pthread_cond_init(&w->q.cond, NULL);
    static const struct vmmu_dm_ops ops = {.access = inproc_access};
    assert_int_equal(vmmu_dm_server_create_inproc(w->dm, &ops, &w->q, &w->inproc), 0);
    assert_int_equal(vmmu_dm_map_mmio(w->inproc, INPROC_GPA, 4096, 0, NULL, NULL), 0);
}

static void world_fini(struct world *w)
{
    vmmu_dm_destroy(w->dm);
    int status;
    assert_int_equal(waitpid(w->pid, &status, 0), w->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    vmmu_vm_destroy(w->vm);
    pthread_mutex_destroy(&w->q.lock);
    pthread_cond_destroy(&w->q.cond);
}

static void vcpus_share_both_servers_while_invalidations_race_their_safe_points(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, "0");
    pthread_t comp, inval, t[NVCPU];
    struct vcpu_arg args[NVCPU];
    assert_int_equal(pthread_create(&comp, NULL, completer, &w), 0);
    assert_int_equal(pthread_create(&inval, NULL, invalidator, &w), 0);
    enum { ROUNDS = 300 };
    for (int i = 0; i < NVCPU; i++) {
        args[i] = (struct vcpu_arg){.w = &w, .id = i, .rounds = ROUNDS};
        assert_int_equal(pthread_create(&t[i], NULL, vcpu_thread, &args[i]), 0);
    }
    for (int i = 0; i < NVCPU; i++)
        pthread_join(t[i], NULL);
    atomic_store(&w.stop_inval, 1);
    pthread_join(inval, NULL);
    pthread_mutex_lock(&w.q.lock);
    w.q.stop = 1;
    pthread_cond_signal(&w.q.cond);
    pthread_mutex_unlock(&w.q.lock);
    pthread_join(comp, NULL);

    /* Every posted doorbell write arrived, none twice. */
    uint64_t bell = 0;
    assert_int_equal(access_loop(&w, 0, DEV_GPA + R_BELL, 0, &bell), 0);
    assert_int_equal(bell, NVCPU * ROUNDS);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(w.remote, &st), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.proto_errors, 0);
    assert_int_equal(st.invalidations, (uint64_t)atomic_load(&w.invals_done));
    assert_true(atomic_load(&w.invals_done) > 0);
    world_fini(&w);
}

/* ---- a DMA racing the removal of its target -------------------------------------- */

/* A DMA the guest would program: a fill of dst with 0x99 (cmd 2), or a
 * copy from src (cmd 1). */
struct dma_arg {
    struct world *w;
    uint64_t cmd, src, dst, len;
    uint64_t status, error;
};

static void *dma_thread(void *arg)
{
    struct dma_arg *a = arg;
    uint64_t v;
    if (a->cmd == 1) {
        v = a->src;
        assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_SRC, 1, &v), 0);
    } else {
        v = 0x99;
        assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_FILL, 1, &v), 0);
    }
    v = a->dst;
    assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_DST, 1, &v), 0);
    v = a->len;
    assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_LEN, 1, &v), 0);
    v = a->cmd;
    assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_CMD, 1, &v), 0);
    assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_STATUS, 0, &a->status), 0);
    assert_int_equal(access_loop(a->w, 0, DEV_GPA + R_ERROR, 0, &a->error), 0);
    return NULL;
}

/* Wait until a fill's first piece landed at @gpa (the transfer runs). */
static void wait_for_first_piece(struct world *w, uint64_t gpa)
{
    uint8_t first = 0;
    for (int i = 0; i < 20000 && first != 0x99; i++) {
        usleep(500);
        assert_int_equal(vmmu_gpa_read(w->vm, gpa, &first, 1, 0, NULL), 0);
    }
    assert_int_equal(first, 0x99);
}

static void dma_racing_region_removal_finishes_first_or_fails_and_never_writes_new_ram(void **s)
{
    (void)s;
    struct world w;
    world_init(&w, "200"); /* 200 us between 4 KiB pieces: the removal lands mid-transfer */
    const uint64_t gpa = 0x2000000, size = 1 << 20;
    int completed = 0, failed = 0;
    for (int round = 0; round < 6; round++) {
        struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = gpa, .size = size};
        uint32_t id;
        assert_int_equal(vmmu_region_add(w.vm, &ram, &id), 0);
        /* a device access refreshes the device model's region table */
        uint64_t v = 0;
        assert_int_equal(access_loop(&w, 1, DEV_GPA + R_ID, 0, &v), 0);
        struct dma_arg a = {.w = &w, .cmd = 2, .dst = gpa, .len = size};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, dma_thread, &a), 0);
        /* Wait until the transfer runs (its first piece landed), so the
         * vCPU's command access is past; then remove mid-transfer. */
        wait_for_first_piece(&w, gpa);
        usleep((useconds_t)(round * 2000));
        assert_int_equal(vmmu_region_remove(w.vm, id), 0);
        /* New RAM at the same place; no device access happens until the
         * DMA has finished, so the device model cannot learn of it. */
        assert_int_equal(vmmu_region_add(w.vm, &ram, &id), 0);
        pthread_join(t, NULL);
        if (a.status == 1) {
            completed++;
        } else {
            assert_int_equal(a.status, 2);
            assert_int_equal((int64_t)a.error, VMMU_EHOLE);
            failed++;
        }
        uint8_t *buf = malloc(size);
        assert_int_equal(vmmu_gpa_read(w.vm, gpa, buf, size, 0, NULL), 0);
        for (uint64_t i = 0; i < size; i++)
            if (buf[i])
                fail_msg("new RAM written by the device model at +0x%llx", (unsigned long long)i);
        free(buf);
        assert_int_equal(vmmu_region_remove(w.vm, id), 0);
    }
    assert_int_equal(completed + failed, 6);
    print_message("dma vs removal: %d completed first, %d failed cleanly\n", completed, failed);
    world_fini(&w);
}

/* ---- a DMA racing the balloon, in paranoid mode ------------------------------------ */

static void dma_racing_balloon_finishes_first_or_fails_and_never_writes_a_reused_page(void **s)
{
    (void)s;
    struct world w;
    world_init(&w, "200");
    struct vmmu_pager *pager;
    struct vmmu_pager_config pc = {.flags = VMMU_PAGER_PARANOID};
    assert_int_equal(vmmu_pager_create(w.vm, &pc, &pager), 0);
    const uint64_t gpa = 0x400000, size = 512 << 10;
    int completed = 0, failed = 0;
    for (int round = 0; round < 6; round++) {
        uint8_t zero[4096] = {0};
        for (uint64_t off = 0; off < size; off += sizeof(zero))
            assert_int_equal(vmmu_gpa_write(w.vm, gpa + off, zero, sizeof(zero), 0, NULL), 0);
        struct dma_arg a = {.w = &w, .cmd = 2, .dst = gpa, .len = size};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, dma_thread, &a), 0);
        /* Once the transfer runs, the guest balloons the second half away. */
        wait_for_first_piece(&w, gpa);
        usleep((useconds_t)(round * 4000));
        struct vmmu_gpa_range half = {.gpa = gpa + size / 2, .size = size / 2};
        assert_int_equal(vmmu_pager_balloon_out(pager, &half, 1), 0);
        pthread_join(t, NULL);
        if (a.status == 1) {
            completed++;
        } else {
            assert_int_equal(a.status, 2);
            assert_int_equal((int64_t)a.error, VMMU_EHOLE);
            failed++;
        }
        /* The pages come back as zero pages: nothing the device model
         * wrote after the balloon took them may show through. */
        assert_int_equal(vmmu_pager_balloon_in(pager, &half, 1), 0);
        uint8_t *buf = malloc(size / 2);
        assert_int_equal(vmmu_gpa_read(w.vm, half.gpa, buf, size / 2, 0, NULL), 0);
        for (uint64_t i = 0; i < size / 2; i++)
            if (buf[i])
                fail_msg("ballooned page written by the device model at +0x%llx",
                         (unsigned long long)i);
        free(buf);
    }
    assert_int_equal(completed + failed, 6);
    print_message("dma vs balloon: %d completed first, %d failed cleanly\n", completed, failed);
    vmmu_pager_destroy(pager);
    world_fini(&w);
}

/* ---- a DMA copy racing page-outs of both its buffers ------------------------------ */

struct pager_arg {
    struct vmmu_pager *pager;
    uint64_t base, pages;
    atomic_int stop;
    unsigned long rounds;
};

/* Page out random pages of [base, base + pages) until told to stop. */
static void *page_out_thread(void *arg)
{
    struct pager_arg *a = arg;
    uint64_t seed = 12345;
    while (!atomic_load(&a->stop)) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        struct vmmu_gpa_range r = {.gpa = a->base + ((seed >> 33) % a->pages) * 4096,
                                   .size = 4096};
        assert_int_equal(vmmu_pager_page_out(a->pager, &r, 1), 0);
        a->rounds++;
    }
    return NULL;
}

/* The device model finds pages gone in the middle of the copy, asks for
 * them back, and carries on: the copy completes and every byte arrives
 * (a write into a page that was out would be lost at its page-in, a read
 * of one would copy zeros). */
static void dma_copy_racing_page_outs_of_its_buffers_loses_nothing(void **s)
{
    (void)s;
    struct world w;
    world_init(&w, "100");
    struct vmmu_pager *pager;
    assert_int_equal(vmmu_pager_create(w.vm, NULL, &pager), 0);
    const uint64_t src = 0x800000, dst = 0xa00000, len = 256 << 10;
    uint8_t *want = malloc(len), *got = malloc(len);
    int completed = 0;
    unsigned long outs = 0;
    for (int round = 0; round < 4; round++) {
        for (uint64_t i = 0; i < len; i++)
            want[i] = (uint8_t)(i * 7 + round * 13 + (i >> 12));
        assert_int_equal(vmmu_gpa_write(w.vm, src, want, len, 0, NULL), 0);
        memset(got, 0, len);
        assert_int_equal(vmmu_gpa_write(w.vm, dst, got, len, 0, NULL), 0);
        /* Both buffers lie in [src, dst + len): one range for the pager. */
        struct pager_arg pa = {.pager = pager, .base = src, .pages = (dst + len - src) / 4096};
        pthread_t pt, ct;
        assert_int_equal(pthread_create(&pt, NULL, page_out_thread, &pa), 0);
        struct dma_arg ca = {.w = &w, .cmd = 1, .src = src, .dst = dst, .len = len};
        assert_int_equal(pthread_create(&ct, NULL, dma_thread, &ca), 0);
        pthread_join(ct, NULL);
        atomic_store(&pa.stop, 1);
        pthread_join(pt, NULL);
        outs += pa.rounds;
        /* (It could fail with VMMU_EPAGEDOUT only if the pager took a
         * page again between its page-in and the answer, four times in a
         * row: about one chance in 10^20 here.) */
        assert_int_equal(ca.status, 1);
        completed++;
        assert_int_equal(vmmu_gpa_read(w.vm, dst, got, len, 0, NULL), 0);
        for (uint64_t i = 0; i < len; i++)
            if (got[i] != want[i])
                fail_msg("byte +0x%llx of the copy: 0x%02x, want 0x%02x", (unsigned long long)i,
                         got[i], want[i]);
    }
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(w.remote, &st), 0);
    print_message("dma vs page-outs: %d of 4 copies completed, %lu page-outs, %llu page-in "
                  "requests\n", completed, outs, (unsigned long long)st.page_ins);
    assert_int_equal(completed, 4);
    assert_true(st.page_ins > 0);
    assert_int_equal(st.dead, 0);
    free(want);
    free(got);
    vmmu_pager_destroy(pager);
    world_fini(&w);
}

/* An in-process device model that answers late: some answers come after
 * the request's deadline, while the vCPU already gives the slot back and
 * asks again.  Every answer the vCPU takes is the one for its own request
 * (a completer writing its answer as the request timed out must not have
 * it taken by the next request). */
struct late {
    struct vmmu_dm_server *srv;
    pthread_mutex_t lock;
    struct vmmu_dm_ioreq asked; /* the request waiting for an answer */
    bool have;
    _Atomic int stop;
};

static int late_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct late *l = opaque;
    pthread_mutex_lock(&l->lock);
    l->asked = *req;
    l->have = true;
    pthread_mutex_unlock(&l->lock);
    return VMMU_EPENDING;
}

static void *late_completer(void *arg)
{
    struct late *l = arg;
    unsigned n = 0;
    while (!atomic_load(&l->stop)) {
        pthread_mutex_lock(&l->lock);
        bool have = l->have;
        struct vmmu_dm_ioreq req = l->asked;
        l->have = false;
        pthread_mutex_unlock(&l->lock);
        if (!have) {
            sched_yield();
            continue;
        }
        /* From at once to well past the 1 ms deadline. */
        struct timespec ts = {0, (long)(n++ % 7) * 300000};
        nanosleep(&ts, NULL);
        int rc = vmmu_dm_complete(l->srv, &req, req.addr * 7 + 1, 0);
        assert_true(rc == 0 || rc == VMMU_ENOENT); /* ENOENT: it timed out */
    }
    return NULL;
}

static void late_answers_are_never_taken_by_the_next_request(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct late l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 1};
    assert_int_equal(vmmu_dm_create(vm, &cfg, &dm), 0);
    static const struct vmmu_dm_ops ops = {.access = late_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, &l, &l.srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(l.srv, INPROC_GPA, 4096, 0, NULL, NULL), 0);
    l.srv->timeout_ms = 1; /* (not configurable for in-process servers) */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, late_completer, &l), 0);
    unsigned answered = 0, timed_out = 0;
    for (unsigned i = 0; i < 600; i++) {
        struct vmmu_device_req r = {.gpa = INPROC_GPA + (i % 512) * 8, .size = 8, .vcpu_id = 0};
        int err;
        while ((err = vmmu_p2m_device_access(vm, &r)) == VMMU_EPENDING)
            ;
        if (err == VMMU_ETIMEDOUT) {
            timed_out++;
            continue;
        }
        assert_int_equal(err, 0);
        assert_int_equal(r.data, r.gpa * 7 + 1);
        answered++;
    }
    atomic_store(&l.stop, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(answered > 0);
    assert_true(timed_out > 0);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

/* ---- a server destroyed while its callback runs ---------------------------------- */

struct doomed {
    struct vmmu_dm_server *srv;
    _Atomic int in_callback;
    int destroyed;
};

static int doomed_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)req;
    struct doomed *d = opaque;
    atomic_store(&d->in_callback, 1);
    struct timespec ts = {0, 300000000}; /* the destroy runs meanwhile */
    nanosleep(&ts, NULL);
    return VMMU_EPENDING;
}

static int fast_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    req->data = 0x42;
    return 0;
}

static void *doomed_destroyer(void *arg)
{
    struct doomed *d = arg;
    while (!atomic_load(&d->in_callback))
        sched_yield();
    d->destroyed = vmmu_dm_server_destroy(d->srv);
    return NULL;
}

/* A callback that pends after its server's destroy began leaves the vCPU
 * nothing outstanding: the access fails with VMMU_EDEAD, no record names
 * the freed server, a wait returns at once and the next access goes to
 * another server.  (Before, the pending request was recorded after the
 * destroy had cleared the records, naming the freed server: the next
 * access read it.  ASan: use-after-free.) */
static void a_server_destroyed_while_its_callback_runs_leaves_the_vcpu_nothing_outstanding(
    void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct doomed d = {0};
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    static const struct vmmu_dm_ops ops = {.access = doomed_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, &d, &d.srv), 0);
    assert_int_equal(vmmu_dm_map_ports(d.srv, 0x10, 1, 0, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, doomed_destroyer, &d), 0);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x10, 1, 0, &v), VMMU_EDEAD);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(d.destroyed, 0);
    assert_null(__atomic_load_n(&dm->vcpu[0].srv, __ATOMIC_RELAXED));
    assert_int_equal(vmmu_dm_vcpu_wait(dm, 0, 0), 0);
    struct doomed other = {0};
    static const struct vmmu_dm_ops fast = {.access = fast_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &fast, &other, &other.srv), 0);
    assert_int_equal(vmmu_dm_map_ports(other.srv, 0x20, 1, 0, NULL), 0);
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x20, 1, 0, &v), 0);
    assert_int_equal(v, 0x42);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

/* ---- a late answer beside the current one ---------------------------------------- */

struct beside {
    struct vmmu_dm_server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vmmu_dm_ioreq asked; /* the request waiting for an answer */
    bool have;
    struct vmmu_dm_ioreq over;  /* a request answered long ago */
    _Atomic int stop;
    _Atomic unsigned turned_away; /* answers to a pending request refused */
    _Atomic unsigned late;        /* answers to the old request sent */
};

static int beside_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct beside *b = opaque;
    pthread_mutex_lock(&b->lock);
    b->asked = *req;
    b->have = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return VMMU_EPENDING;
}

static void *beside_completer(void *arg)
{
    struct beside *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->have && !atomic_load(&b->stop))
            pthread_cond_wait(&b->cond, &b->lock);
        if (!b->have)
            break;
        struct vmmu_dm_ioreq req = b->asked;
        b->have = false;
        pthread_mutex_unlock(&b->lock);
        if (vmmu_dm_complete(b->srv, &req, req.addr, 0) != 0)
            atomic_fetch_add(&b->turned_away, 1);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void *beside_late(void *arg)
{
    struct beside *b = arg;
    while (!atomic_load(&b->stop)) {
        assert_int_equal(vmmu_dm_complete(b->srv, &b->over, 0, 0), VMMU_ENOENT);
        atomic_fetch_add(&b->late, 1);
    }
    return NULL;
}

/* An answer to a request that is over finds nothing (VMMU_ENOENT), and
 * never turns away the answer to the vCPU's current request meanwhile.
 * (Before, the late answer held the slot while it compared the sequence
 * number, the current answer found it held and was refused: its request
 * waited for its deadline.) */
static void a_late_answer_never_turns_away_the_answer_to_the_current_request(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct beside b = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 1};
    assert_int_equal(vmmu_dm_create(vm, &cfg, &dm), 0);
    static const struct vmmu_dm_ops ops = {.access = beside_access};
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, &b, &b.srv), 0);
    assert_int_equal(vmmu_dm_map_ports(b.srv, 0x10, 16, 0, NULL), 0);
    b.srv->timeout_ms = 200; /* a lost answer costs 200 ms (not configurable in process) */
    /* The old request: answered and taken. */
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x10, 1, 0, &v), VMMU_EPENDING);
    b.over = b.asked;
    b.have = false;
    assert_int_equal(vmmu_dm_complete(b.srv, &b.over, 0x10, 0), 0);
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x10, 1, 0, &v), 0);
    pthread_t tc, tl;
    assert_int_equal(pthread_create(&tc, NULL, beside_completer, &b), 0);
    assert_int_equal(pthread_create(&tl, NULL, beside_late, &b), 0);
    unsigned answered = 0, timed_out = 0;
    for (unsigned i = 0; i < 3000 && timed_out < 3; i++) {
        uint16_t port = (uint16_t)(0x10 + i % 16);
        int err;
        while ((err = vmmu_dm_port_access(dm, 0, port, 1, 0, &v)) == VMMU_EPENDING)
            assert_int_equal(vmmu_dm_vcpu_wait(dm, 0, -1), 0);
        if (err == VMMU_ETIMEDOUT) {
            timed_out++;
            continue;
        }
        assert_int_equal(err, 0);
        assert_int_equal(v, port);
        answered++;
    }
    atomic_store(&b.stop, 1);
    pthread_mutex_lock(&b.lock);
    pthread_cond_broadcast(&b.cond);
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(pthread_join(tc, NULL), 0);
    assert_int_equal(pthread_join(tl, NULL), 0);
    print_message("%u answered, %u timed out, %u answers turned away, %u late answers\n",
                  answered, timed_out, atomic_load(&b.turned_away), atomic_load(&b.late));
    assert_int_equal(atomic_load(&b.turned_away), 0);
    assert_int_equal(timed_out, 0);
    assert_true(atomic_load(&b.late) > 0);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

/* ---- the layer destroyed under device accesses ----------------------------------- */

struct foreign {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v; /* NULL: a host thread */
    atomic_int stop;
    atomic_ulong calls, wrong;
};

/* Accesses to a DEVICE region the layer does not serve (added by hand, not
 * by vmmu_dm_map_mmio()): the layer's handler answers VMMU_EDEVICE at
 * once, and without a layer there is no handler, with the same answer. */
static void *foreign_accesses(void *arg)
{
    struct foreign *a = arg;
    if (a->v && vmmu_vcpu_online(a->v) != 0)
        atomic_fetch_add(&a->wrong, 1);
    while (!atomic_load(&a->stop)) {
        struct vmmu_device_req r = {.gpa = DEV_GPA + 8, .size = 8,
                                    .vcpu_id = a->v ? vmmu_vcpu_id(a->v) : -1};
        if (vmmu_p2m_device_access(a->vm, &r) != VMMU_EDEVICE)
            atomic_fetch_add(&a->wrong, 1);
        atomic_fetch_add_explicit(&a->calls, 1, memory_order_relaxed);
        if (a->v)
            vmmu_vcpu_safepoint(a->v);
    }
    if (a->v)
        vmmu_vcpu_offline(a->v);
    return NULL;
}

/* A vCPU thread (an online reader) and a host thread keep accessing a
 * DEVICE region while the layer is created and destroyed again and again:
 * the destroy frees the layer only once no thread is inside its device
 * handler or about to enter it.  (The handler was uninstalled and the
 * layer freed at once, while a thread could still be inside the handler
 * with the layer as its argument, or have loaded it just before.  TSan: a
 * race of the free with the handler's read of the layer; ASan, when a
 * thread is preempted in between: use-after-free.) */
static void a_layer_destroyed_under_device_accesses_is_never_used_after_it_is_freed(void **state)
{
    (void)state;
    enum { VCPUS = 1, CALLERS = VCPUS + 1 };
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc dev = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(vm, &dev, NULL), 0);
    struct foreign fa[CALLERS];
    pthread_t t[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        fa[i] = (struct foreign){.vm = vm};
        if (i < VCPUS)
            assert_int_equal(vmmu_vcpu_create(vm, NULL, &fa[i].v), 0);
        assert_int_equal(pthread_create(&t[i], NULL, foreign_accesses, &fa[i]), 0);
    }
    for (int i = 0; i < CALLERS; i++)
        while (!atomic_load(&fa[i].calls))
            usleep(100); /* every thread accesses already */
    for (int i = 0; i < 500; i++) {
        struct vmmu_dm *dm;
        assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
        /* Each thread's next accesses go through this layer's handler. */
        unsigned long from[CALLERS];
        for (int k = 0; k < CALLERS; k++)
            from[k] = atomic_load(&fa[k].calls);
        for (int k = 0; k < CALLERS; k++)
            while (atomic_load(&fa[k].calls) - from[k] < 2)
                sched_yield();
        assert_int_equal(vmmu_dm_destroy(dm), 0);
    }
    unsigned long calls = 0;
    for (int i = 0; i < CALLERS; i++) {
        atomic_store(&fa[i].stop, 1);
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&fa[i].wrong), 0);
        calls += atomic_load(&fa[i].calls);
        if (fa[i].v)
            assert_int_equal(vmmu_vcpu_destroy(fa[i].v), 0);
    }
    print_message("%lu device accesses\n", calls);
    assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* ---- routing tables replaced under a host thread's accesses ----------------------- */

struct routed {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    atomic_int stop;
    atomic_ulong calls, wrong;
};

/* A host thread (never an online reader) serving IN and MMIO reads of one
 * server's ranges. */
static void *routed_accesses(void *arg)
{
    struct routed *a = arg;
    while (!atomic_load(&a->stop)) {
        uint64_t v = 0;
        if (vmmu_dm_port_access(a->dm, -1, 0x60, 1, 0, &v) != 0 || v != 0x42)
            atomic_fetch_add(&a->wrong, 1);
        struct vmmu_device_req r = {.gpa = INPROC_GPA + 8, .size = 4, .vcpu_id = -1};
        if (vmmu_p2m_device_access(a->vm, &r) != 0 || r.data != 0x42)
            atomic_fetch_add(&a->wrong, 1);
        atomic_fetch_add_explicit(&a->calls, 1, memory_order_relaxed);
    }
    return NULL;
}

/* Mapping a range, or destroying a server, replaces the layer's routing
 * snapshot and frees the old one after a grace period.  A host thread's
 * access to another server's ranges reads the snapshot in a read-side
 * section of its own, which that grace period waits for.  (It read the
 * snapshot outside any section: TSan, a race of the free with
 * table_find(); ASan when the thread is preempted in between.) */
static void host_accesses_beside_routes_changing_read_no_freed_routing_table(void **state)
{
    (void)state;
    struct routed a = {0};
    assert_int_equal(vmmu_vm_create(NULL, &a.vm), 0);
    assert_int_equal(vmmu_dm_create(a.vm, NULL, &a.dm), 0);
    static const struct vmmu_dm_ops ops = {.access = fast_access};
    struct vmmu_dm_server *keep;
    assert_int_equal(vmmu_dm_server_create_inproc(a.dm, &ops, NULL, &keep), 0);
    assert_int_equal(vmmu_dm_map_ports(keep, 0x60, 4, 0, NULL), 0);
    assert_int_equal(vmmu_dm_map_mmio(keep, INPROC_GPA, 4096, 0, NULL, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, routed_accesses, &a), 0);
    while (!atomic_load(&a.calls))
        sched_yield();
    unsigned long first = atomic_load(&a.calls);
    for (unsigned round = 0; round < 300 || atomic_load(&a.calls) - first < 1000; round++) {
        struct vmmu_dm_server *other;
        assert_int_equal(vmmu_dm_server_create_inproc(a.dm, &ops, NULL, &other), 0);
        assert_int_equal(vmmu_dm_map_ports(other, 0x70, 4, 0, NULL), 0);
        assert_int_equal(vmmu_dm_map_mmio(other, INPROC_GPA + 65536, 4096, 0, NULL, NULL), 0);
        assert_int_equal(vmmu_dm_server_destroy(other), 0);
    }
    atomic_store(&a.stop, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    print_message("%lu host accesses\n", atomic_load(&a.calls));
    assert_int_equal(atomic_load(&a.wrong), 0);
    assert_int_equal(vmmu_dm_destroy(a.dm), 0);
    assert_int_equal(vmmu_vm_destroy(a.vm), 0);
}

/* ---- the layer destroyed under accesses to a range it serves -------------------- */

#define HAMMER_HOSTS 2

struct hammer {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v; /* NULL: host threads */
    atomic_int stop;
    atomic_ulong calls, served, wrong;
};

/* A host thread (never an online reader), or the vCPU's thread (online),
 * reading the served range. */
static void *host_reads(void *arg)
{
    struct hammer *h = arg;
    if (h->v && vmmu_vcpu_online(h->v) != 0)
        atomic_fetch_add(&h->wrong, 1);
    while (!atomic_load(&h->stop)) {
        struct vmmu_device_req r = {.gpa = INPROC_GPA + 8, .size = 4,
                                    .vcpu_id = h->v ? vmmu_vcpu_id(h->v) : -1};
        int rc = vmmu_p2m_device_access(h->vm, &r);
        if (rc == 0 && r.data == 0x42)
            atomic_fetch_add(&h->served, 1);
        else if (rc != VMMU_EDEVICE && rc != VMMU_EINVAL && rc != VMMU_EDEAD)
            atomic_fetch_add(&h->wrong, 1); /* served by nobody: gone or not ours */
        atomic_fetch_add_explicit(&h->calls, 1, memory_order_relaxed);
        if (h->v)
            vmmu_vcpu_safepoint(h->v);
    }
    if (h->v)
        vmmu_vcpu_offline(h->v);
    return NULL;
}

/* Create the layer with one in-process server serving INPROC_GPA, let the
 * host threads be served, destroy the layer; again and again. */
static void destroy_layers_under_accesses(bool vcpu)
{
    struct hammer h = {0};
    assert_int_equal(vmmu_vm_create(NULL, &h.vm), 0);
    if (vcpu)
        assert_int_equal(vmmu_vcpu_create(h.vm, NULL, &h.v), 0);
    int threads = vcpu ? 1 : HAMMER_HOSTS;
    pthread_t t[HAMMER_HOSTS];
    for (int i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, host_reads, &h), 0);
    static const struct vmmu_dm_ops ops = {.access = fast_access};
    for (unsigned round = 0; round < (vcpu ? 300u : 1000u); round++) {
        struct vmmu_dm *dm;
        struct vmmu_dm_server *srv;
        assert_int_equal(vmmu_dm_create(h.vm, NULL, &dm), 0);
        assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, NULL, &srv), 0);
        assert_int_equal(vmmu_dm_map_mmio(srv, INPROC_GPA, 4096, 0, NULL, NULL), 0);
        unsigned long served = atomic_load(&h.served);
        for (unsigned spin = 0; atomic_load(&h.served) == served && spin < 100000; spin++)
            sched_yield();
        assert_int_equal(vmmu_dm_destroy(dm), 0);
    }
    atomic_store(&h.stop, 1);
    for (int i = 0; i < threads; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    print_message("%lu %s accesses, %lu served\n", atomic_load(&h.calls), vcpu ? "vCPU" : "host",
                  atomic_load(&h.served));
    assert_int_equal(atomic_load(&h.wrong), 0);
    if (h.v)
        assert_int_equal(vmmu_vcpu_destroy(h.v), 0);
    assert_int_equal(vmmu_vm_destroy(h.vm), 0);
}

/* Host threads (no readers) keep accessing a range the layer serves while
 * the layer is destroyed: each access holds the range's server from the
 * read-side section that found the range, and the server's destroy waits
 * for it.  (The section ended with the lookup and the access counted
 * itself only later: ASan and TSan, use-after-free of the range and the
 * server in dm_device_handler() and dm_dispatch(); a crash without them.) */
static void a_layer_destroyed_under_host_accesses_to_its_served_range_frees_nothing_in_use(
    void **state)
{
    (void)state;
    destroy_layers_under_accesses(false);
}

/* The same with a vCPU thread, online from the lookup of the range on. */
static void a_layer_destroyed_under_vcpu_accesses_to_its_served_range_frees_nothing_in_use(
    void **state)
{
    (void)state;
    destroy_layers_under_accesses(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vcpus_share_both_servers_while_invalidations_race_their_safe_points),
        cmocka_unit_test(dma_racing_region_removal_finishes_first_or_fails_and_never_writes_new_ram),
        cmocka_unit_test(dma_racing_balloon_finishes_first_or_fails_and_never_writes_a_reused_page),
        cmocka_unit_test(dma_copy_racing_page_outs_of_its_buffers_loses_nothing),
        cmocka_unit_test(late_answers_are_never_taken_by_the_next_request),
        cmocka_unit_test(
            a_server_destroyed_while_its_callback_runs_leaves_the_vcpu_nothing_outstanding),
        cmocka_unit_test(a_late_answer_never_turns_away_the_answer_to_the_current_request),
        cmocka_unit_test(
            a_layer_destroyed_under_device_accesses_is_never_used_after_it_is_freed),
        cmocka_unit_test(host_accesses_beside_routes_changing_read_no_freed_routing_table),
        cmocka_unit_test(
            a_layer_destroyed_under_vcpu_accesses_to_its_served_range_frees_nothing_in_use),
        cmocka_unit_test(
            a_layer_destroyed_under_host_accesses_to_its_served_range_frees_nothing_in_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
