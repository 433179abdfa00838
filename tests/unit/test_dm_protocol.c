/* Device models, hostile peers: the test plays a device model that speaks
 * the raw protocol of vmmu/dmproto.h and lies (wrong slot, wrong state,
 * wrong sequence, impossible values, answers to requests never made,
 * garbage on the socket), and a vm that sends the client library garbage.
 * Each lie hurts at most the liar's own request; nothing crashes or hangs. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_fds.h"
#include "vmmu/dmclient.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#include "dm/dm_internal.h"
#include "sync/sync_internal.h"

#define DEV_GPA 0x100000ull

struct fake_dm {
    int sock;
    int fds[VMMU_DM_HELLO_MAX_FDS];
    int nfds;
    struct vmmu_dm_shared *sh;
    struct vmmu_dm_slot *slots;
    struct vmmu_dm_ring *ring;
};

struct env {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    struct fake_dm f;
};

static void fake_hello(struct fake_dm *f)
{
    struct vmmu_dm_msg m;
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMMU_DM_HELLO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    assert_int_equal(recvmsg(f->sock, &mh, MSG_CMSG_CLOEXEC), sizeof(m));
    assert_int_equal(m.type, VMMU_DM_MSG_HELLO);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    assert_non_null(c);
    f->nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(f->fds, CMSG_DATA(c), (size_t)f->nfds * sizeof(int));
    f->sh = mmap(NULL, m.gpa, PROT_READ | PROT_WRITE, MAP_SHARED, f->fds[0], 0);
    assert_true(f->sh != MAP_FAILED);
    assert_int_equal(f->sh->magic, VMMU_DM_PROTO_MAGIC);
    f->slots = (struct vmmu_dm_slot *)((char *)f->sh + f->sh->slots_offset);
    if (f->sh->ring_entries)
        f->ring = (struct vmmu_dm_ring *)((char *)f->sh + f->sh->ring_offset);
}

static int setup_with_timeout(void **state, unsigned timeout_ms)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(vmmu_vm_create(NULL, &e->vm), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(e->vm, &cfg, &e->dm), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config rc = {.timeout_ms = timeout_ms, .ring_entries = 4};
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], &rc, &e->srv), 0);
    e->f.sock = sv[1];
    fake_hello(&e->f);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA, 4096, VMMU_DM_RANGE_BUFFERED, NULL, NULL),
                     0);
    *state = e;
    return 0;
}

static int setup(void **state)
{
    return setup_with_timeout(state, 200);
}

/* A device model that takes its time: requests wait up to 5 s. */
static int setup_patient(void **state)
{
    return setup_with_timeout(state, 5000);
}

static int teardown(void **state)
{
    struct env *e = *state;
    vmmu_dm_destroy(e->dm);
    munmap(e->f.sh, e->f.sh->size);
    for (int i = 0; i < e->f.nfds; i++)
        close(e->f.fds[i]);
    close(e->f.sock);
    vmmu_vm_destroy(e->vm);
    free(e);
    return 0;
}

static int access1(struct env *e, int vcpu, int write, uint64_t *v)
{
    struct vmmu_device_req r = {.gpa = DEV_GPA + 8, .size = 4, .write = write,
                                .data = write ? *v : 0, .vcpu_id = vcpu};
    int err = vmmu_p2m_device_access(e->vm, &r);
    if (!write)
        *v = r.data;
    return err;
}

/* The fake device model answers slot @i as it likes. */
static void answer(struct env *e, unsigned i, uint32_t resp_seq, uint8_t status, uint64_t data)
{
    struct vmmu_dm_slot *s = &e->f.slots[i];
    s->data = data;
    s->status = status;
    s->resp_seq = resp_seq;
    __atomic_store_n(&s->state, VMMU_DM_SLOT_RESPONSE, __ATOMIC_RELEASE);
}

static uint64_t proto_errors(struct env *e)
{
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    return st.proto_errors;
}

static void a_correct_answer_is_taken_and_masked_to_the_access_size(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    struct vmmu_dm_slot *s = &e->f.slots[0];
    assert_int_equal(s->state, VMMU_DM_SLOT_READY);
    assert_int_equal(s->addr, DEV_GPA + 8);
    answer(e, 0, s->seq, VMMU_DM_STATUS_OK, 0xffffffff12345678ull);
    assert_int_equal(access1(e, 0, 0, &v), 0);
    assert_int_equal(v, 0x12345678);
    assert_int_equal(s->state, VMMU_DM_SLOT_FREE);
}

static void an_answer_with_the_wrong_sequence_fails_with_eproto(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    answer(e, 0, e->f.slots[0].seq + 1, VMMU_DM_STATUS_OK, 1);
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPROTO);
    assert_int_equal(proto_errors(e), 1);
    /* The next request works. */
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    answer(e, 0, e->f.slots[0].seq, VMMU_DM_STATUS_OK, 7);
    assert_int_equal(access1(e, 0, 0, &v), 0);
    assert_int_equal(v, 7);
}

static void an_impossible_status_fails_with_eproto(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 1, 0, &v), VMMU_EPENDING);
    answer(e, 1, e->f.slots[1].seq, 200, 1);
    assert_int_equal(access1(e, 1, 0, &v), VMMU_EPROTO);
}

static void an_answer_in_another_vcpus_slot_is_ignored(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    uint32_t seq0 = e->f.slots[0].seq;
    answer(e, 1, seq0, VMMU_DM_STATUS_OK, 99); /* vCPU 1 asked nothing */
    answer(e, 2, seq0, VMMU_DM_STATUS_OK, 99); /* the host's slot: asked nothing */
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    /* vCPU 1's own next request overwrites the lie and is unaffected. */
    assert_int_equal(access1(e, 1, 0, &v), VMMU_EPENDING);
    assert_int_equal(e->f.slots[1].state, VMMU_DM_SLOT_READY);
    answer(e, 1, e->f.slots[1].seq, VMMU_DM_STATUS_OK, 5);
    assert_int_equal(access1(e, 1, 0, &v), 0);
    assert_int_equal(v, 5);
    answer(e, 0, seq0, VMMU_DM_STATUS_OK, 6);
    assert_int_equal(access1(e, 0, 0, &v), 0);
    assert_int_equal(v, 6);
}

static void a_slot_the_device_model_frees_times_out(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    __atomic_store_n(&e->f.slots[0].state, VMMU_DM_SLOT_FREE, __ATOMIC_RELEASE);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0);
    assert_int_equal(access1(e, 0, 0, &v), VMMU_ETIMEDOUT);
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EDEAD);
    /* The host is not the device model's process (a socketpair): nothing
     * was killed, the server is just dead. */
    assert_int_equal(vmmu_dm_server_check(e->srv), VMMU_EDEAD);
}

/* A pending request whose instruction is never re-executed (the emulator
 * took an interrupt, or the range went away) ends at its deadline all
 * the same: a different access of the vCPU after it is served (here: it
 * finds the device model declared dead for missing the deadline).  It
 * used to fail with VMMU_EBUSY for ever, the request being re-checked
 * only when the same access came back. */
static void a_pending_request_never_presented_again_ends_at_its_deadline(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    struct vmmu_device_req other = {.gpa = DEV_GPA + 16, .size = 4, .vcpu_id = 0};
    usleep(300000); /* the deadline is 200 ms */
    assert_int_equal(vmmu_p2m_device_access(e->vm, &other), VMMU_EDEAD);
    assert_int_equal(vmmu_dm_server_check(e->srv), VMMU_EDEAD);
}

/* The wake-up channels are the vm's own sockets: a device model that
 * clears O_NONBLOCK on its ends, lets the kick queue fill and floods the
 * vm's response queues cannot make the vm block in a send or a receive.
 * A vCPU's access and a host access still end at the deadline (with
 * eventfds, whose one open file both sides share, the vm blocked for
 * ever in the kick's write). */
static void a_device_model_cannot_make_the_vm_block_on_its_channels(void **state)
{
    struct env *e = *state;
    int kick = e->f.fds[1];
    assert_int_equal(fcntl(kick, F_SETFL, 0), 0);
    while (send(e->srv->kick_fd, "k", 1, MSG_DONTWAIT) == 1) {
    } /* as many kicks as the queue holds, unread */
    for (unsigned i = 0; i < 3; i++) { /* two vCPUs and the host */
        int resp = e->f.fds[2 + i];
        assert_int_equal(fcntl(resp, F_SETFL, 0), 0);
        while (send(resp, "r", 1, MSG_DONTWAIT) == 1) {
        }
    }
    alarm(20); /* a vm that blocks fails here, not for ever */
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0);
    assert_int_equal(access1(e, 0, 0, &v), VMMU_ETIMEDOUT);
    alarm(0);
}

static void a_host_access_is_not_blocked_by_a_device_models_channels(void **state)
{
    struct env *e = *state;
    assert_int_equal(fcntl(e->f.fds[1], F_SETFL, 0), 0);
    while (send(e->srv->kick_fd, "k", 1, MSG_DONTWAIT) == 1) {
    }
    int resp = e->f.fds[2 + 2];
    assert_int_equal(fcntl(resp, F_SETFL, 0), 0);
    while (send(resp, "r", 1, MSG_DONTWAIT) == 1) {
    }
    alarm(20);
    uint64_t v = 0;
    assert_int_equal(access1(e, -1, 0, &v), VMMU_ETIMEDOUT);
    alarm(0);
}

/* The files a device model maps cannot be truncated under the vm's own
 * mappings (a SIGBUS in the vm): the shared page is sealed at its size,
 * the vm's memfd against shrinking (it still grows as RAM is added). */
static void the_files_a_device_model_maps_cannot_be_shrunk(void **state)
{
    struct env *e = *state;
    assert_int_equal(ftruncate(e->f.fds[0], 0), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(ftruncate(e->f.fds[0], 1 << 20), -1);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(e->vm, &ram, NULL), 0);
    int memfd = vmmu_vm_memfd(e->vm);
    assert_true(memfd >= 0);
    assert_int_equal(ftruncate(memfd, 0), -1);
    assert_int_equal(errno, EPERM);
    struct vmmu_region_desc more = {.type = VMMU_MEM_RAM, .gpa = 16 << 20, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(e->vm, &more, NULL), 0);
    uint32_t x = 0x12345678, y = 0;
    assert_int_equal(vmmu_gpa_write(e->vm, (16 << 20) + 8, &x, 4, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(e->vm, (16 << 20) + 8, &y, 4, 0, NULL), 0);
    assert_int_equal(y, x);
}

static void an_impossible_ring_index_sends_writes_through_the_slot(void **state)
{
    struct env *e = *state;
    uint64_t v = 1;
    assert_int_equal(access1(e, 0, 1, &v), 0); /* posted */
    assert_int_equal(__atomic_load_n(&e->f.ring->prod, __ATOMIC_ACQUIRE), 1);
    __atomic_store_n(&e->f.ring->cons, 1000, __ATOMIC_RELEASE);
    assert_int_equal(access1(e, 0, 1, &v), VMMU_EPENDING);
    assert_true(proto_errors(e) >= 1);
    assert_int_equal(e->f.slots[0].write, 1);
    answer(e, 0, e->f.slots[0].seq, VMMU_DM_STATUS_OK, 0);
    assert_int_equal(access1(e, 0, 1, &v), 0);
}

static void a_full_ring_sends_writes_through_the_slot(void **state)
{
    struct env *e = *state;
    uint64_t v = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(access1(e, 1, 1, &v), 0);
    assert_int_equal(access1(e, 1, 1, &v), VMMU_EPENDING);
    assert_int_equal(proto_errors(e), 0);
}

static void send_raw(struct env *e, uint32_t type, uint64_t seq, uint64_t gpa)
{
    struct vmmu_dm_msg m = {.type = type, .seq = seq, .gpa = gpa};
    assert_int_equal(send(e->f.sock, &m, sizeof(m), 0), sizeof(m));
}

struct late_acker {
    struct env *e;
    uint64_t first;
};

static void *late_acker_run(void *arg)
{
    struct late_acker *l = arg;
    for (uint64_t k = 0; k < 3; k++) {
        usleep(150000);
        /* (The vm may have hung up on us by then: no assert on this thread.) */
        struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_INVALIDATE_ACK, .seq = l->first + k};
        (void)!send(l->e->f.sock, &m, sizeof(m), MSG_NOSIGNAL);
    }
    return NULL;
}

/* Each invalidation has its own deadline from when it was posted.  A
 * device model that acknowledged several one at a time, each within the
 * deadline of the one before, restarted the clock for the rest each time
 * and so held them all up to k deadlines.  Here three are posted at once
 * (deadline 200 ms) and acknowledged every 150 ms: the second is late. */
static void acknowledging_invalidations_one_at_a_time_does_not_stretch_their_deadlines(
    void **state)
{
    struct env *e = *state;
    uint64_t t[3];
    for (unsigned k = 0; k < 3; k++)
        assert_int_equal(vmmu_dm_invalidate_async(e->dm, 4096 * k, 4096, &t[k]), 0);
    assert_int_equal(t[1], t[0] + 1);
    struct late_acker l = {e, t[0]};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_acker_run, &l), 0);
    assert_int_equal(vmmu_dm_invalidate_wait(e->dm, t[2]), 0);
    assert_int_equal(vmmu_dm_server_check(e->srv), VMMU_EDEAD);
    assert_int_equal(pthread_join(th, NULL), 0);
}

static void garbage_and_unasked_acks_are_counted_and_ignored(void **state)
{
    struct env *e = *state;
    /* Queued before the invalidation is even posted: read after it. */
    send_raw(e, 99, 0, 0);                              /* unknown type */
    send_raw(e, VMMU_DM_MSG_INVALIDATE_ACK, 5, 0);      /* never asked */
    send_raw(e, VMMU_DM_MSG_INVALIDATE_ACK, 1, 0x1000); /* malformed */
    send_raw(e, VMMU_DM_MSG_INVALIDATE_ACK, 1, 0);      /* the real one */
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.proto_errors, 3);
    assert_int_equal(st.invalidations, 1);
    assert_int_equal(st.dead, 0);
    /* The invalidation was on the socket for the device model. */
    struct vmmu_dm_msg m;
    assert_int_equal(recv(e->f.sock, &m, sizeof(m), MSG_DONTWAIT), sizeof(m));
    assert_int_equal(m.type, VMMU_DM_MSG_INVALIDATE);
    assert_int_equal(m.seq, 1);
    assert_int_equal(m.size, 4096);
}

static void a_silent_device_model_is_declared_dead_by_the_invalidation(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EDEAD);
}

static void hanging_up_kills_requests_in_flight(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    shutdown(e->f.sock, SHUT_RDWR);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0);
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EDEAD);
}

/* Only the request that got no answer within the deadline fails with
 * VMMU_ETIMEDOUT; another vCPU's request, made just before the server was
 * declared dead for that, fails with VMMU_EDEAD like any request in flight
 * when a server dies. */
static void a_request_in_flight_when_another_times_out_fails_with_edead(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0); /* vCPU 0's deadline passed */
    assert_int_equal(access1(e, 1, 0, &v), VMMU_EPENDING); /* a fresh deadline */
    assert_int_equal(access1(e, 0, 0, &v), VMMU_ETIMEDOUT);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    assert_int_equal(access1(e, 1, 0, &v), VMMU_EDEAD);
}

/* A device model that writes garbage to its socket faster than the vm
 * reads it (several threads at once): the garbage is counted and dropped,
 * and the invalidation it never acknowledges still ends, with the server
 * dead for its deadline (200 ms here).  The bound checked is a hundred
 * times that: four flooding threads on a loaded two-core machine can hold
 * the invalidating thread off the CPU for seconds, and what matters is
 * that the wait ends at all (it used to wait as long as the flood went on). */
struct flooder {
    int sock;
    pthread_t thread;
};

static void *flooder_run(void *arg)
{
    struct flooder *f = arg;
    char *junk = malloc(1 << 16);
    assert_non_null(junk);
    memset(junk, 0x5a, 1 << 16);
    while (send(f->sock, junk, 1 << 16, MSG_NOSIGNAL) > 0) {
    }
    free(junk);
    return NULL; /* the vm shut its end down */
}

static void a_device_model_flooding_its_socket_still_misses_the_invalidation_deadline(
    void **state)
{
    struct env *e = *state;
    struct flooder f[4];
    for (int i = 0; i < 4; i++) {
        f[i].sock = e->f.sock;
        assert_int_equal(pthread_create(&f[i].thread, NULL, flooder_run, &f[i]), 0);
    }
    usleep(20000); /* the socket is full */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    for (int i = 0; i < 4; i++)
        pthread_join(f[i].thread, NULL);
    assert_true(ms < 20000);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    assert_true(st.proto_errors > 0);
    assert_int_equal(st.invalidations, 0);
}

/* Destroying a server while threads wait for its answers (offline, so no
 * grace period covers them): they are woken, and the server is freed and
 * its shared page unmapped only once they have left.  To make the race
 * certain, the waiting thread is held in a signal handler (as if it were
 * preempted in its wait) while the destroy runs, and let go a little
 * later by another thread. */
static atomic_int waiter_held, waiter_go;

static void hold_waiter(int sig)
{
    (void)sig;
    atomic_store(&waiter_held, 1);
    while (!atomic_load(&waiter_go)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void *let_waiter_go(void *arg)
{
    (void)arg;
    usleep(300000);
    atomic_store(&waiter_go, 1);
    return NULL;
}

/* Hold @t in hold_waiter(), destroy the server meanwhile, and let @t go on
 * 300 ms later (while the destroy may be waiting for it). */
static void destroy_while_held(struct env *e, pthread_t t)
{
    struct sigaction sa = {.sa_handler = hold_waiter}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    atomic_store(&waiter_held, 0);
    atomic_store(&waiter_go, 0);
    assert_int_equal(pthread_kill(t, SIGUSR1), 0);
    while (!atomic_load(&waiter_held))
        usleep(1000);
    pthread_t go;
    assert_int_equal(pthread_create(&go, NULL, let_waiter_go, NULL), 0);
    assert_int_equal(vmmu_dm_server_destroy(e->srv), 0);
    e->srv = NULL;
    pthread_join(go, NULL);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

struct host_reader {
    struct env *e;
    int rc;
};

static void *host_read(void *arg)
{
    struct host_reader *h = arg;
    uint64_t v = 0;
    h->rc = access1(h->e, -1, 0, &v);
    return NULL;
}

static void destroying_a_server_a_host_access_waits_on_fails_it_with_edead(void **state)
{
    struct env *e = *state;
    struct host_reader h = {.e = e};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, host_read, &h), 0);
    struct vmmu_dm_slot *host_slot = &e->f.slots[e->f.sh->nslots - 1];
    while (__atomic_load_n(&host_slot->state, __ATOMIC_ACQUIRE) != VMMU_DM_SLOT_READY)
        usleep(1000);
    usleep(50000); /* past its spin: asleep, offline */
    destroy_while_held(e, t);
    pthread_join(t, NULL);
    assert_int_equal(h.rc, VMMU_EDEAD);
}

/* ---- host accesses waiting for each other ------------------------------------------ */

static uint64_t ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000 +
           (uint64_t)((t1.tv_nsec - t0->tv_nsec) / 1000000);
}

/* Wait (up to 6 s, past the patient deadline) until the fake device
 * model sees the host slot READY.  Returns whether it did. */
static bool wait_host_request(struct env *e)
{
    struct vmmu_dm_slot *host_slot = &e->f.slots[e->f.sh->nslots - 1];
    for (unsigned ms = 0; ms < 6000; ms++) {
        if (__atomic_load_n(&host_slot->state, __ATOMIC_ACQUIRE) == VMMU_DM_SLOT_READY)
            return true;
        usleep(1000);
    }
    return false;
}

/* Answer the host request, if one comes (a server declared dead meanwhile
 * sees none). */
static void answer_host_request(struct env *e, uint64_t data)
{
    unsigned i = e->f.sh->nslots - 1;
    if (wait_host_request(e))
        answer(e, i, __atomic_load_n(&e->f.slots[i].seq, __ATOMIC_RELAXED), VMMU_DM_STATUS_OK,
               data);
}

struct vcpu_host_reader {
    struct env *e;
    _Atomic int online;
    int rc;
};

static void *vcpu_host_read(void *arg)
{
    struct vcpu_host_reader *h = arg;
    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vcpu_create(h->e->vm, NULL, &v), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    atomic_store(&h->online, 1);
    uint64_t val = 0;
    h->rc = access1(h->e, -1, 0, &val);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    vmmu_vcpu_destroy(v);
    return NULL;
}

/* A vCPU's thread whose host access waits for another host access to the
 * same server (to its device model's answer) waits offline: a shootdown
 * meanwhile does not wait for the device model.  (Before, it waited for
 * the lock online, and the shootdown for the first access's deadline.) */
static void a_vcpu_thread_waiting_for_another_host_access_holds_up_no_shootdown(void **state)
{
    struct env *e = *state;
    struct host_reader slow = {.e = e};
    pthread_t ts, tv;
    assert_int_equal(pthread_create(&ts, NULL, host_read, &slow), 0);
    assert_true(wait_host_request(e)); /* the first host access waits for its answer */
    struct vcpu_host_reader second = {.e = e};
    assert_int_equal(pthread_create(&tv, NULL, vcpu_host_read, &second), 0);
    while (!atomic_load(&second.online))
        usleep(1000);
    usleep(100000); /* waiting for the first */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(e->vm, NULL, NULL, &all), 0);
    uint64_t shoot_ms = ms_since(&t0);
    answer_host_request(e, 1); /* the first */
    assert_int_equal(pthread_join(ts, NULL), 0);
    answer_host_request(e, 2); /* the second */
    assert_int_equal(pthread_join(tv, NULL), 0);
    print_message("shootdown: %llu ms\n", (unsigned long long)shoot_ms);
    /* Answered, not timed out: the shootdown returned before the first
     * access's deadline, though its answer came only after it. */
    assert_int_equal(slow.rc, 0);
    assert_int_equal(second.rc, 0);
}

static int answer_at_once(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    req->data = 7;
    return 0;
}

/* Host accesses wait for each other per server: one waiting for a device
 * model's answer holds up no host access to another server.  (Before, one
 * lock of the layer serialised them all: the second waited for the first's
 * deadline.) */
static void a_host_access_waiting_for_a_device_model_holds_up_none_to_another_server(
    void **state)
{
    struct env *e = *state;
    static const struct vmmu_dm_ops ops = {.access = answer_at_once};
    struct vmmu_dm_server *fast;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &ops, NULL, &fast), 0);
    assert_int_equal(vmmu_dm_map_ports(fast, 0x30, 1, 0, NULL), 0);
    struct host_reader slow = {.e = e};
    pthread_t ts;
    assert_int_equal(pthread_create(&ts, NULL, host_read, &slow), 0);
    assert_true(wait_host_request(e));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, -1, 0x30, 1, 0, &v), 0);
    uint64_t fast_ms = ms_since(&t0);
    answer_host_request(e, 1);
    assert_int_equal(pthread_join(ts, NULL), 0);
    assert_int_equal(v, 7);
    print_message("the other server's host access: %llu ms\n", (unsigned long long)fast_ms);
    /* Answered, not timed out: the other access did not wait for this
     * one's deadline. */
    assert_int_equal(slow.rc, 0);
}

struct vcpu_waiter {
    struct env *e;
    int rc;
};

static void *vcpu_wait_run(void *arg)
{
    struct vcpu_waiter *w = arg;
    w->rc = vmmu_dm_vcpu_wait(w->e->dm, 0, -1);
    return NULL;
}

static void destroying_a_server_a_vcpu_waits_on_wakes_the_vcpu(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
    struct vcpu_waiter w = {.e = e, .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, vcpu_wait_run, &w), 0);
    usleep(50000); /* asleep, offline, until the 5 s deadline */
    destroy_while_held(e, t);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0); /* re-execute: the access now finds no server */
    assert_int_not_equal(access1(e, 0, 0, &v), VMMU_EPENDING);
}

/* The socket is vmmu's from vmmu_dm_server_create_remote() on, even when
 * it fails: a refused configuration closes it (the peer sees the hang-up),
 * and a peer that already hung up makes it fail with VMMU_EDEAD. */
static bool peer_hung_up(int sock)
{
    char b;
    return recv(sock, &b, 1, MSG_DONTWAIT) == 0;
}

/* A device model process that hangs up but lives on: the vCPU whose
 * request notices it waits for the process to exit (up to the server's
 * deadline) before it calls the server dead, and waits offline, as every
 * wait in vmmu does, so a grace period meanwhile (a page-out's, a region
 * removal's) does not wait for it. */
struct hung_access {
    struct vmmu_vm *vm;
    int rc;
    atomic_bool done;
};

static void *hung_access_run(void *arg)
{
    struct hung_access *h = arg;
    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vcpu_create(h->vm, NULL, &v), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    struct vmmu_device_req r = {.gpa = DEV_GPA + 8, .size = 4, .vcpu_id = 0};
    /* Presented again while it pends, as a vCPU re-executes: on a loaded
     * machine the short wait for the answer may end before the hang-up is
     * seen. */
    do
        h->rc = vmmu_p2m_device_access(h->vm, &r);
    while (h->rc == VMMU_EPENDING);
    atomic_store(&h->done, true);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    vmmu_vcpu_destroy(v);
    return NULL;
}

/* A device model process that reads the HELLO, then hangs up (@hang_up)
 * or just reads nothing more, says so on *@ready, and lives on for 30 s
 * unless killed.  *@vm_sock: the vm's end of its socket. */
static pid_t fork_lingering_device_model(bool hang_up, int *vm_sock, int *ready)
{
    int sv[2], pp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(sv[0]);
        close(pp[0]);
        char b[64];
        struct pollfd p = {.fd = sv[1], .events = POLLIN};
        (void)poll(&p, 1, 5000);
        (void)!read(sv[1], b, sizeof(b)); /* the HELLO */
        if (hang_up)
            close(sv[1]);
        (void)!write(pp[1], "r", 1);
        sleep(30);
        _exit(0);
    }
    close(sv[1]);
    close(pp[1]);
    *vm_sock = sv[0];
    *ready = pp[0];
    return child;
}

/* A vm with a device-model layer and a lingering device model (see
 * fork_lingering_device_model()) serving DEV_GPA as its remote server,
 * which has read the HELLO (and hung up, with @hang_up) by the return. */
struct lingering {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    pid_t child;
};

static void lingering_setup(struct lingering *l, bool hang_up, unsigned timeout_ms,
                            unsigned wait_us)
{
    assert_int_equal(vmmu_vm_create(NULL, &l->vm), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(l->vm, &cfg, &l->dm), 0);
    int sock, ready;
    l->child = fork_lingering_device_model(hang_up, &sock, &ready);
    struct vmmu_dm_remote_config rc = {.timeout_ms = timeout_ms, .wait_us = wait_us,
                                       .pid = l->child};
    assert_int_equal(vmmu_dm_server_create_remote(l->dm, sock, &rc, &l->srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(l->srv, DEV_GPA, 4096, 0, NULL, NULL), 0);
    char b;
    assert_int_equal(read(ready, &b, 1), 1);
    close(ready);
}

static void a_vcpu_waiting_for_a_hung_up_device_model_to_exit_holds_up_no_grace_period(
    void **state)
{
    (void)state;
    struct lingering l;
    lingering_setup(&l, true, 5000, 5000); /* the child has hung up */
    struct vmmu_vm *vm = l.vm;
    struct vmmu_dm *dm = l.dm;
    pid_t child = l.child;

    struct hung_access h = {.vm = vm};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hung_access_run, &h), 0);
    usleep(300000); /* its request found the hang-up, and waits for the exit */
    vmmu__sync_grace_period();
    assert_false(atomic_load(&h.done)); /* the grace period did not wait for it */
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.rc, VMMU_EDEAD);
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

/* A vCPU that finds its device model hung up kills the server, and
 * killing waits offline for the process.  A destroy meanwhile (which hangs
 * up itself) freed the server under that vCPU, whose grace period had
 * passed; now every access counts itself among the server's waiters, so
 * the destroy frees it only after the vCPU is done with it.  (Under
 * AddressSanitizer the old code read freed memory in most runs.) */
static void destroying_a_server_a_vcpu_is_killing_frees_it_after_the_vcpu_is_done(void **state)
{
    (void)state;
    struct lingering l;
    lingering_setup(&l, false, 300, 3000000); /* it answers nothing */
    struct vmmu_vm *vm = l.vm;
    struct vmmu_dm *dm = l.dm;
    struct vmmu_dm_server *srv = l.srv;
    pid_t child = l.child;

    struct hung_access h = {.vm = vm};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hung_access_run, &h), 0);
    usleep(100000); /* the vCPU waits for the answer, online */
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.rc, VMMU_EDEAD);
    assert_int_equal(waitpid(child, NULL, 0), child);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

/* A device model that reads nothing from its socket makes an invalidation
 * wait up to its deadline for room to send.  That wait held the lock a
 * device access takes after any change of the map (to give device models
 * the new region tables), so an unrelated in-process device's access on a
 * vCPU waited as long.  Now nothing waits under that lock. */
struct poster {
    struct vmmu_dm *dm;
    atomic_uint posts;
    atomic_bool in_post, stop;
};

static void *poster_run(void *arg)
{
    struct poster *p = arg;
    while (!atomic_load(&p->stop)) {
        uint64_t ticket;
        atomic_store(&p->in_post, true);
        int rc = vmmu_dm_invalidate_async(p->dm, 0, 4096, &ticket);
        atomic_store(&p->in_post, false);
        if (rc)
            break;
        atomic_fetch_add(&p->posts, 1);
    }
    return NULL;
}

static int answer_42(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    req->data = 42;
    return 0;
}

#define OTHER_DEV 0x10000000ull /* above the RAM */

static void a_device_model_that_reads_nothing_holds_up_no_other_devices_access(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 2u << 20};
    uint32_t ram_id;
    assert_int_equal(vmmu_region_add(vm, &ram, &ram_id), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(vm, &cfg, &dm), 0);
    struct vmmu_dm_ops ops = {.access = answer_42};
    struct vmmu_dm_server *inproc, *remote;
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, NULL, &inproc), 0);
    assert_int_equal(vmmu_dm_map_mmio(inproc, OTHER_DEV, 4096, 0, NULL, NULL), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config rc = {.timeout_ms = 3000};
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], &rc, &remote), 0);
    struct fake_dm f = {.sock = sv[1]};
    fake_hello(&f); /* and nothing read from here on */

    /* Post until a post waits for room in the device model's socket. */
    struct poster p = {.dm = dm};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poster_run, &p), 0);
    unsigned last = ~0u, still = 0;
    while (still < 30) {
        usleep(10000);
        unsigned now = atomic_load(&p.posts);
        still = now == last && atomic_load(&p.in_post) ? still + 1 : 0;
        last = now;
    }
    /* A new map generation, then the in-process device, from a vCPU. */
    struct vmmu_region_desc more = {.type = VMMU_MEM_RAM, .gpa = 1ull << 30, .size = 4096};
    uint32_t more_id;
    assert_int_equal(vmmu_region_add(vm, &more, &more_id), 0);
    struct vmmu_vcpu *v;
    assert_int_equal(vmmu_vcpu_create(vm, NULL, &v), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    struct vmmu_device_req r = {.gpa = OTHER_DEV, .size = 4, .vcpu_id = 0};
    assert_int_equal(vmmu_p2m_device_access(vm, &r), 0);
    assert_int_equal(r.data, 42);
    assert_true(atomic_load(&p.in_post)); /* answered while the post still waits */
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    assert_int_equal(vmmu_vcpu_destroy(v), 0);

    atomic_store(&p.stop, true);
    assert_int_equal(pthread_join(t, NULL), 0); /* the post gave up at the deadline */
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(remote, &st), 0);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    vmmu_dm_destroy(dm);
    munmap(f.sh, f.sh->size);
    for (int i = 0; i < f.nfds; i++)
        close(f.fds[i]);
    close(f.sock);
    vmmu_vm_destroy(vm);
}

static void *destroy_run(void *arg)
{
    (void)vmmu_dm_server_destroy(arg);
    return NULL;
}

/* vmmu_dm_server_destroy() gives a device model that hung up but lives on
 * its deadline to exit.  It took the server off the list first, so an
 * invalidation on another thread meanwhile (a region removed) skipped the
 * device model, which still mapped the memory, and returned at once: the
 * memory could be reused under it.  The invalidation now waits until the
 * process is gone. */
static void an_invalidation_during_a_servers_destroy_waits_for_its_process_to_exit(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 2u << 20};
    uint32_t ram_id;
    assert_int_equal(vmmu_region_add(vm, &ram, &ram_id), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    int sock, ready;
    pid_t child = fork_lingering_device_model(false, &sock, &ready);
    struct vmmu_dm_remote_config rc = {.timeout_ms = 1000, .pid = child};
    assert_int_equal(vmmu_dm_server_create_remote(dm, sock, &rc, &srv), 0);
    char b;
    assert_int_equal(read(ready, &b, 1), 1); /* it read the HELLO, and reads no more */
    close(ready);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, destroy_run, srv), 0);
    usleep(200000); /* the destroy waits for the process to exit */
    assert_int_equal(vmmu_region_remove(vm, ram_id), 0);
    assert_int_equal(waitpid(child, NULL, WNOHANG), child); /* gone before the memory */
    assert_int_equal(pthread_join(t, NULL), 0);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

static void refused_remote_servers_close_the_socket_and_a_gone_peer_is_edead(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    const struct vmmu_dm_remote_config bad[] = {
        {.ring_entries = 3},    /* not a power of two */
        {.ring_entries = 8192}, /* above 4096 */
        {.max_regions = 257},   /* above 256 */
        {.timeout_ms = (unsigned)INT_MAX + 1}, /* not a poll() timeout */
    };
    struct vmmu_dm_server *srv = NULL;
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], &bad[i], &srv), VMMU_EINVAL);
        assert_true(peer_hung_up(sv[1]));
        close(sv[1]);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(NULL, sv[0], NULL, &srv), VMMU_EINVAL);
    assert_true(peer_hung_up(sv[1]));
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], NULL, &srv), VMMU_EDEAD);
    /* The limits themselves are accepted. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config most = {.ring_entries = 4096, .max_regions = 256,
                                         .timeout_ms = INT_MAX};
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], &most, &srv), 0);
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
    close(sv[1]);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

/* What is not a connected unix stream socket is refused with VMMU_EINVAL
 * before anything is made: closed (it is vmmu's, as above) if it is an
 * open descriptor, left alone if it is not one. */
static void refuse_socket(struct vmmu_dm *dm, int fd, const char *what)
{
    struct vmmu_dm_server *srv = NULL;
    unsigned before = open_fds();
    int rc = vmmu_dm_server_create_remote(dm, fd, NULL, &srv);
    if (rc != VMMU_EINVAL)
        fail_msg("%s: %s, not VMMU_EINVAL", what, vmmu_error_name(rc));
    assert_null(srv);
    assert_int_equal(open_fds(), before - 1);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
}

/* The pid in the configuration is the process killed when the server
 * dies: this process, a negative pid or one that names no process is
 * refused at once (the socket closed), never discovered at the kill. */
static void remote_servers_refuse_a_pid_that_is_this_process_or_none(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    pid_t gone = fork();
    assert_true(gone >= 0);
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, NULL, 0), gone); /* reaped: names no process now */
    const pid_t pids[] = {getpid(), -1, INT_MIN, gone};
    for (unsigned i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        struct vmmu_dm_remote_config rc = {.timeout_ms = 100, .pid = pids[i]};
        struct vmmu_dm_server *srv = NULL;
        unsigned before = open_fds();
        int r = vmmu_dm_server_create_remote(dm, sv[0], &rc, &srv);
        if (r != VMMU_EINVAL)
            fail_msg("pid %d: %s, not VMMU_EINVAL", (int)pids[i], vmmu_error_name(r));
        assert_null(srv);
        assert_int_equal(open_fds(), before - 1);
        close(sv[1]);
    }
    /* Still alive here; and the socket's own peer (this process) is not
     * watched when no pid is given, so a destroy kills nothing. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config rc = {.timeout_ms = 100};
    struct vmmu_dm_server *srv = NULL;
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], &rc, &srv), 0);
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
    close(sv[1]);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

static void remote_servers_refuse_what_is_not_a_connected_unix_stream_socket(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    refuse_socket(dm, sv[0], "a unix datagram socket");
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    refuse_socket(dm, sv[0], "a unix seqpacket socket");
    close(sv[1]);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    refuse_socket(dm, p[1], "a pipe");
    close(p[0]);
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    refuse_socket(dm, fd, "/dev/null");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    refuse_socket(dm, fd, "an unconnected unix stream socket");
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    refuse_socket(dm, fd, "a TCP socket");
    /* A descriptor that is not open: nothing to close. */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    close(fd);
    struct vmmu_dm_server *srv = NULL;
    unsigned before = open_fds();
    assert_int_equal(vmmu_dm_server_create_remote(dm, fd, NULL, &srv), VMMU_EINVAL);
    assert_null(srv);
    assert_int_equal(open_fds(), before);
    /* A connected unix stream socket is taken, after all of those. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], NULL, &srv), 0);
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
    close(sv[1]);
    assert_int_equal(vmmu_dm_destroy(dm), 0);
    vmmu_vm_destroy(vm);
}

/* ---- the client library against a lying vm ---------------------------------- */

/* ---- the service socket --------------------------------------------------------- */

static int service_sock(struct env *e)
{
    return e->f.fds[2 + e->f.sh->nslots];
}

/* Ask for [gpa, gpa + size) on the service socket; the answer's status,
 * and its run in @run (may be NULL). */
static uint32_t ask_page_in(struct env *e, uint64_t seq, uint64_t gpa, uint64_t size,
                            struct vmmu_dm_region_ent *run)
{
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_PAGE_IN, .seq = seq, .gpa = gpa, .size = size};
    assert_int_equal(send(service_sock(e), &m, sizeof(m), 0), sizeof(m));
    struct vmmu_dm_page_in_done r;
    assert_int_equal(recv(service_sock(e), &r, sizeof(r), 0), sizeof(r));
    assert_int_equal(r.type, VMMU_DM_MSG_PAGE_IN_DONE);
    assert_int_equal(r.seq, seq);
    if (r.status != VMMU_DM_PAGE_IN_OK)
        assert_int_equal(r.run.size, 0);
    if (run)
        *run = r.run;
    return r.status;
}

static uint32_t state_of(struct env *e, uint64_t gpa)
{
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(e->vm, gpa, &st), 0);
    return st;
}

/* The fake device model's main socket, served by a thread that
 * acknowledges every invalidation (while the test's thread pages out). */
struct acker {
    struct env *e;
    atomic_int stop;
    pthread_t thread;
};

static void *acker_run(void *arg)
{
    struct acker *a = arg;
    while (!atomic_load(&a->stop)) {
        struct pollfd p = {.fd = a->e->f.sock, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        struct vmmu_dm_msg m;
        if (recv(a->e->f.sock, &m, sizeof(m), MSG_WAITALL) != sizeof(m))
            return NULL;
        if (m.type == VMMU_DM_MSG_INVALIDATE)
            send_raw(a->e, VMMU_DM_MSG_INVALIDATE_ACK, m.seq, 0);
    }
    return NULL;
}

static void acker_start(struct acker *a, struct env *e)
{
    a->e = e;
    atomic_store(&a->stop, 0);
    assert_int_equal(pthread_create(&a->thread, NULL, acker_run, a), 0);
}

static void acker_stop(struct acker *a)
{
    atomic_store(&a->stop, 1);
    pthread_join(a->thread, NULL);
}

/* RAM, a pager, and region tables that show both (a buffered device write
 * refreshes them). */
static struct vmmu_pager *ram_and_pager(struct env *e)
{
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(e->vm, &ram, NULL), 0);
    struct vmmu_pager *pager;
    assert_int_equal(vmmu_pager_create(e->vm, NULL, &pager), 0);
    uint64_t v = 1;
    assert_int_equal(access1(e, -1, 1, &v), 0);
    return pager;
}

static void page_in_requests_are_checked_and_answered(void **state)
{
    struct env *e = *state;
    struct vmmu_pager *pager = ram_and_pager(e);
    struct acker ack;
    acker_start(&ack, e);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x5000, "back", 4, 0, NULL), 0);
    struct vmmu_gpa_range r = {.gpa = 0x5000, .size = 0x1000};
    assert_int_equal(vmmu_pager_page_out(pager, &r, 1), 0);
    assert_true(state_of(e, 0x5000) & VMMU_PAGE_PAGED_OUT);

    /* A good request brings the page back and says where the resident
     * memory around it lives: here the whole region. */
    struct vmmu_dm_region_ent run;
    assert_int_equal(ask_page_in(e, 7, 0x5ff0, 0x20, &run), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(state_of(e, 0x5000) & VMMU_PAGE_PAGED_OUT, 0);
    assert_int_equal(run.gpa, 0);
    assert_int_equal(run.size, 1 << 20);
    assert_int_equal(run.memfd_offset, 0);
    assert_int_equal(run.flags, VMMU_DM_REGION_WRITABLE);
    char buf[4];
    assert_int_equal(vmmu_gpa_read(e->vm, 0x5000, buf, 4, 0, NULL), 0);
    assert_memory_equal(buf, "back", 4);
    /* With other pages out, the run stops at them. */
    struct vmmu_gpa_range two[2] = {{.gpa = 0x3000, .size = 0x1000}, {.gpa = 0x9000, .size = 0x1000}};
    assert_int_equal(vmmu_pager_page_out(pager, two, 2), 0);
    assert_int_equal(ask_page_in(e, 8, 0x6000, 0x1000, &run), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(run.gpa, 0x4000);
    assert_int_equal(run.size, 0x5000);
    assert_int_equal(run.memfd_offset, 0x4000);
    assert_true(state_of(e, 0x3000) & VMMU_PAGE_PAGED_OUT); /* not asked for: still out */
    /* Malformed ones are refused and change nothing. */
    assert_int_equal(ask_page_in(e, 9, 0x3000, 0, NULL), VMMU_DM_PAGE_IN_BAD);
    assert_int_equal(ask_page_in(e, 10, 0x3000, VMMU_DM_PAGE_IN_MAX + 1, NULL), VMMU_DM_PAGE_IN_BAD);
    assert_int_equal(ask_page_in(e, 11, ~0ull - 8, 0x20, NULL), VMMU_DM_PAGE_IN_BAD);
    assert_true(state_of(e, 0x3000) & VMMU_PAGE_PAGED_OUT);
    /* Memory the vm does not have, or a device, is a hole. */
    assert_int_equal(ask_page_in(e, 12, 0x200000, 8, NULL), VMMU_DM_PAGE_IN_HOLE);
    assert_int_equal(ask_page_in(e, 13, DEV_GPA, 8, NULL), VMMU_DM_PAGE_IN_HOLE);
    assert_int_equal(ask_page_in(e, 14, 1ull << 50, 8, NULL), VMMU_DM_PAGE_IN_HOLE);
    /* RAM, then not: the pages asked for come back, the run ends at the hole. */
    assert_int_equal(ask_page_in(e, 15, 0xff000, 0x2000, &run), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(run.gpa + run.size, 0x100000);
    /* A page the guest gave back stays given back. */
    struct vmmu_gpa_range b = {.gpa = 0x6000, .size = 0x1000};
    assert_int_equal(vmmu_pager_balloon_out(pager, &b, 1), 0);
    assert_int_equal(ask_page_in(e, 16, 0x6000, 8, NULL), VMMU_DM_PAGE_IN_HOLE);
    assert_int_equal(state_of(e, 0x6000), VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED);
    assert_int_equal(ask_page_in(e, 17, 0x5000, 8, &run), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(run.gpa + run.size, 0x6000); /* the run ends before it */
    /* A region added since the tables were published stays a hole until a
     * device access publishes it; the regions they knew are served on. */
    struct vmmu_region_desc more = {.type = VMMU_MEM_RAM, .gpa = 0x400000, .size = 0x1000};
    assert_int_equal(vmmu_region_add(e->vm, &more, NULL), 0);
    assert_int_equal(ask_page_in(e, 18, 0x400000, 8, NULL), VMMU_DM_PAGE_IN_HOLE);
    assert_int_equal(ask_page_in(e, 19, 0x3000, 8, NULL), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(state_of(e, 0x3000) & VMMU_PAGE_PAGED_OUT, 0);
    uint64_t v = 2;
    assert_int_equal(access1(e, -1, 1, &v), 0);
    assert_int_equal(ask_page_in(e, 20, 0x400000, 8, &run), VMMU_DM_PAGE_IN_OK);
    assert_int_equal(run.gpa, 0x400000);
    assert_int_equal(run.size, 0x1000);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.page_ins, 14);
    assert_int_equal(st.proto_errors, 0);
    assert_int_equal(st.invalidations, 4); /* one per range paged out or ballooned */
    assert_int_equal(st.dead, 0);
    acker_stop(&ack);
    vmmu_pager_destroy(pager);
}

/* A fake device model that asks for resident memory without pause and
 * acknowledges nothing, until the service socket closes. */
struct asker {
    int sock;
    uint64_t asked;
    pthread_t thread;
};

static void *asker_run(void *arg)
{
    struct asker *a = arg;
    for (;;) {
        struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_PAGE_IN, .seq = ++a->asked, .gpa = 0x1000,
                                .size = 0x1000};
        struct vmmu_dm_page_in_done r;
        if (send(a->sock, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m) ||
            recv(a->sock, &r, sizeof(r), 0) != sizeof(r))
            return NULL;
    }
}

/* Time the vm spends serving a device model's page-ins does not count
 * against its deadline, but only that time: one that keeps the service
 * busy with quick requests and never acknowledges is still late. */
static void asking_for_page_ins_does_not_excuse_a_missing_acknowledgement(void **state)
{
    struct env *e = *state;
    struct vmmu_pager *pager = ram_and_pager(e);
    struct asker a = {.sock = service_sock(e)};
    assert_int_equal(pthread_create(&a.thread, NULL, asker_run, &a), 0);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    pthread_join(a.thread, NULL); /* the service ended with the server */
    assert_true(a.asked > 1);
    vmmu_pager_destroy(pager);
}

/* Anything but a PAGE_IN of the right size ends the service, and only the
 * service: the server keeps serving accesses. */
static void service_ends_after(struct env *e, const void *msg, size_t len)
{
    assert_int_equal(send(service_sock(e), msg, len, 0), (ssize_t)len);
    struct vmmu_dm_msg r;
    assert_int_equal(recv(service_sock(e), &r, sizeof(r), 0), 0); /* closed */
    assert_int_equal(proto_errors(e), 1);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 0);
    uint64_t v = 5;
    assert_int_equal(access1(e, -1, 1, &v), 0); /* buffered: still served */
}

static void a_short_message_on_the_service_socket_ends_only_the_service(void **state)
{
    uint8_t shortmsg[5] = {VMMU_DM_MSG_PAGE_IN};
    service_ends_after(*state, shortmsg, sizeof(shortmsg));
}

static void another_type_on_the_service_socket_ends_only_the_service(void **state)
{
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_INVALIDATE_ACK, .seq = 1};
    service_ends_after(*state, &m, sizeof(m));
}

/* Send a HELLO (@m) with descriptors @fds on @sock, as a vm would. */
static void send_hello(int sock, const struct vmmu_dm_msg *m, const int *fds, int nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } u;
    assert_true(nfds <= 8);
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    assert_int_equal(sendmsg(sock, &mh, 0), sizeof(*m));
}

static int client_on(const struct vmmu_dm_msg *m, const int *fds, int nfds)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    send_hello(sv[0], m, fds, nfds);
    struct vmmu_dmc *c = NULL;
    int err = vmmu_dmc_connect_fd(sv[1], NULL, &c);
    if (!err)
        vmmu_dmc_close(c);
    close(sv[0]);
    return err;
}

/* A memfd of @size bytes with @seals, as a vm makes its files. */
static int sealed_memfd(const char *name, off_t size, unsigned seals)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    if (seals)
        assert_int_equal(fcntl(fd, F_ADD_SEALS, (int)seals), 0);
    return fd;
}

/* The device model's end of a wake-up channel (a datagram socket pair);
 * the vm's end goes in @vm_end, or is closed when @vm_end is NULL. */
static int chan_end(int *vm_end)
{
    int p[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p), 0);
    if (vm_end)
        *vm_end = p[0];
    else
        close(p[0]);
    return p[1];
}

/* The client's page-in timeout with the fake vm below. */
static unsigned fake_vm_pagein_ms = 2000;

/* A fake vm for the client: a valid shared page with an empty region
 * table, its memfd (4 pages of "guest RAM"), and the vm's end of the
 * service socket in @svc.  With @shared, the vm's mapping of the shared
 * page stays there (4096 bytes; the region table at offset 256). */
static struct vmmu_dmc *client_with_fake_vm_opts(int *svc, int *vm_sock, int *ram,
                                                 struct vmmu_dm_shared **shared, bool with_memfd)
{
    int shm = sealed_memfd("shared", 4096, F_SEAL_SHRINK | F_SEAL_GROW);
    *ram = sealed_memfd("ram", 4 * 4096, F_SEAL_SHRINK);
    struct vmmu_dm_shared *h = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
    assert_true(h != MAP_FAILED);
    *h = (struct vmmu_dm_shared){.magic = VMMU_DM_PROTO_MAGIC, .version = VMMU_DM_PROTO_VERSION,
                                 .nslots = 2, .max_regions = 4, .slots_offset = 128,
                                 .regions_offset = 256, .size = 4096};
    if (shared)
        *shared = h;
    else
        munmap(h, 4096);
    int sp[2], sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int fds[6] = {shm, chan_end(NULL), chan_end(NULL), chan_end(NULL), sp[1], *ram};
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_HELLO, .seq = 2, .gpa = 4096,
                            .flags = with_memfd ? VMMU_DM_HELLO_MEMFD : 0};
    send_hello(sv[0], &m, fds, with_memfd ? 6 : 5);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    /* Long enough for an answering thread on a loaded machine; the one
     * test of a silent vm waits it out once. */
    struct vmmu_dmc_config cc = {.pagein_timeout_ms = fake_vm_pagein_ms};
    struct vmmu_dmc *cl;
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], &cc, &cl), 0);
    *svc = sp[0];
    *vm_sock = sv[0];
    return cl;
}

static struct vmmu_dmc *client_with_fake_vm_shared(int *svc, int *vm_sock, int *ram,
                                                   struct vmmu_dm_shared **shared)
{
    return client_with_fake_vm_opts(svc, vm_sock, ram, shared, true);
}

static struct vmmu_dmc *client_with_fake_vm(int *svc, int *vm_sock, int *ram)
{
    return client_with_fake_vm_shared(svc, vm_sock, ram, NULL);
}

/* The fake vm answers the client's next page-in request with @a (its seq
 * replaced by the request's unless @keep_seq). */
static void answer_page_in(int svc, struct vmmu_dm_page_in_done a, bool keep_seq)
{
    struct vmmu_dm_msg m;
    assert_int_equal(recv(svc, &m, sizeof(m), 0), sizeof(m));
    assert_int_equal(m.type, VMMU_DM_MSG_PAGE_IN);
    if (!keep_seq)
        a.seq = m.seq;
    assert_int_equal(send(svc, &a, sizeof(a), 0), sizeof(a));
}

struct answer_arg {
    int svc;
    struct vmmu_dm_page_in_done a;
    bool keep_seq;
};

static void *answer_thread(void *arg)
{
    struct answer_arg *x = arg;
    answer_page_in(x->svc, x->a, x->keep_seq);
    return NULL;
}

/* Map @gpa while a thread answers the page-in request with @a. */
static int map_answered(struct vmmu_dmc *c, int svc, uint64_t gpa,
                        struct vmmu_dm_page_in_done a, bool keep_seq)
{
    struct answer_arg x = {.svc = svc, .a = a, .keep_seq = keep_seq};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answer_thread, &x), 0);
    void *p;
    int err = vmmu_dmc_map(c, gpa, 8, 1, &p);
    pthread_join(t, NULL);
    if (!err)
        vmmu_dmc_unmap(c, gpa);
    return err;
}

/* A good answer to a page-in at 0x1000..0x2fff: the fake vm's memfd from
 * offset 0x1000, writable. */
static const struct vmmu_dm_page_in_done PAGE_IN_OK = {
    .type = VMMU_DM_MSG_PAGE_IN_DONE,
    .run = {.gpa = 0x1000, .size = 0x2000, .memfd_offset = 0x1000, .flags = VMMU_DM_REGION_WRITABLE}};

static void client_checks_page_in_answers_and_gives_up_on_a_silent_vm(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dmc *c = client_with_fake_vm(&svc, &vm_sock, &ram);
    const struct vmmu_dm_page_in_done ok = PAGE_IN_OK;
    /* A good answer is mapped: the page is the memfd's. */
    assert_int_equal(pwrite(ram, "ram!", 4, 0x1800), 4);
    char buf[4];
    struct answer_arg x = {.svc = svc, .a = ok};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answer_thread, &x), 0);
    assert_int_equal(vmmu_dmc_read(c, 0x1800, buf, 4), 0);
    pthread_join(t, NULL);
    assert_memory_equal(buf, "ram!", 4);
    /* Statuses. */
    struct vmmu_dm_page_in_done a = ok;
    a.status = VMMU_DM_PAGE_IN_HOLE;
    a.run = (struct vmmu_dm_region_ent){0};
    assert_int_equal(map_answered(c, svc, 0x3000, a, false), VMMU_EHOLE);
    a.status = VMMU_DM_PAGE_IN_FAILED;
    assert_int_equal(map_answered(c, svc, 0x3000, a, false), VMMU_EPAGEDOUT);
    /* A silent vm: the map gives up after pagein_timeout_ms. */
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_ETIMEDOUT);
    struct vmmu_dm_msg m;
    assert_int_equal(recv(svc, &m, sizeof(m), 0), sizeof(m)); /* the request it made */
    /* Its answer comes late, just before the next request's: dropped, and
     * the next map takes its own answer. */
    struct vmmu_dm_page_in_done late = a;
    late.seq = m.seq;
    assert_int_equal(send(svc, &late, sizeof(late), 0), sizeof(late));
    assert_int_equal(map_answered(c, svc, 0x3000, a, false), VMMU_EPAGEDOUT);
    /* Runs that do not hold the address, lie outside the memfd, or carry
     * unknown flags: refused, and the service is not used again. */
    a = ok;
    a.run.gpa = 0x8000;
    assert_int_equal(map_answered(c, svc, 0x3000, a, false), VMMU_EPROTO);
    assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_EHOLE); /* no service */
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);

    c = client_with_fake_vm(&svc, &vm_sock, &ram);
    a = ok;
    a.run.memfd_offset = 1ull << 40; /* beyond the memfd: passes the checks, fails the fstat */
    assert_int_equal(map_answered(c, svc, 0x1000, a, false), VMMU_EHOLE);
    a = ok;
    a.run.flags = 0x80;
    assert_int_equal(map_answered(c, svc, 0x1000, a, false), VMMU_EPROTO);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);

    c = client_with_fake_vm(&svc, &vm_sock, &ram);
    a = ok;
    a.seq = 77; /* an answer to another request */
    assert_int_equal(map_answered(c, svc, 0x1000, a, true), VMMU_EPROTO);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
}

/* The fake vm answers the client's next @n page-in requests with @a[i]. */
struct answers_arg {
    int svc;
    unsigned n;
    struct vmmu_dm_page_in_done a[8];
};

static void *answers_thread(void *arg)
{
    struct answers_arg *x = arg;
    for (unsigned i = 0; i < x->n; i++)
        answer_page_in(x->svc, x->a[i], false);
    return NULL;
}

static uint64_t client_page_ins(struct vmmu_dmc *c)
{
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(c, &st), 0);
    return st.page_ins;
}

/* "Ask again" is asked again, a few rounds at most (then the page counts
 * as paged out); "bad request" is the client's own error, VMMU_EINVAL, and
 * leaves the service in use. */
static void client_asks_again_when_told_to_and_takes_a_bad_request_as_its_own_error(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dmc *c = client_with_fake_vm(&svc, &vm_sock, &ram);
    const struct vmmu_dm_page_in_done ok = PAGE_IN_OK;
    struct vmmu_dm_page_in_done again = {.type = VMMU_DM_MSG_PAGE_IN_DONE,
                                         .status = VMMU_DM_PAGE_IN_AGAIN};
    assert_int_equal(pwrite(ram, "back", 4, 0x1800), 4);

    /* Again, again, then the run: mapped after three requests. */
    struct answers_arg x = {.svc = svc, .n = 3, .a = {again, again, ok}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answers_thread, &x), 0);
    char buf[4];
    assert_int_equal(vmmu_dmc_read(c, 0x1800, buf, 4), 0);
    pthread_join(t, NULL);
    assert_memory_equal(buf, "back", 4);
    assert_int_equal(client_page_ins(c), 3);

    /* Again in every round: given up after DMC_PAGEIN_ROUNDS (4) requests. */
    x = (struct answers_arg){.svc = svc, .n = 4, .a = {again, again, again, again}};
    assert_int_equal(pthread_create(&t, NULL, answers_thread, &x), 0);
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_EPAGEDOUT);
    pthread_join(t, NULL);
    assert_int_equal(client_page_ins(c), 7);

    /* A bad request: VMMU_EINVAL, and the service still answers. */
    struct vmmu_dm_page_in_done bad = {.type = VMMU_DM_MSG_PAGE_IN_DONE,
                                       .status = VMMU_DM_PAGE_IN_BAD};
    struct vmmu_dm_page_in_done hole = {.type = VMMU_DM_MSG_PAGE_IN_DONE,
                                        .status = VMMU_DM_PAGE_IN_HOLE};
    x = (struct answers_arg){.svc = svc, .n = 2, .a = {bad, hole}};
    assert_int_equal(pthread_create(&t, NULL, answers_thread, &x), 0);
    assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_EHOLE);
    pthread_join(t, NULL);
    assert_int_equal(client_page_ins(c), 9);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
}

/* The fake vm publishes @ent as its whole region table. */
static void publish_one_region(struct vmmu_dm_shared *h, struct vmmu_dm_region_ent ent)
{
    struct vmmu_dm_region_table *t =
        (struct vmmu_dm_region_table *)((char *)h + h->regions_offset);
    struct vmmu_dm_region_ent *e = (struct vmmu_dm_region_ent *)(t + 1);
    __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
    e[0] = ent;
    t->count = 1;
    __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
}

static void vm_sends(int vm_sock, uint32_t type, uint64_t seq, int fd)
{
    struct vmmu_dm_msg m = {.type = type, .seq = seq, .gpa = 0, .size = 4096};
    send_hello(vm_sock, &m, &fd, fd >= 0 ? 1 : 0);
}

/* A client whose fake vm gave no memfd at hello, with the whole memfd
 * (4 pages) published as one writable region at gpa 0. */
static struct vmmu_dmc *client_without_memfd(int *svc, int *vm_sock, int *ram,
                                             struct vmmu_dm_shared **h)
{
    struct vmmu_dmc *c = client_with_fake_vm_opts(svc, vm_sock, ram, h, false);
    publish_one_region(*h, (struct vmmu_dm_region_ent){.gpa = 0, .size = 4 * 4096,
                                                       .flags = VMMU_DM_REGION_WRITABLE});
    return c;
}

/* What the vm sends on the main socket: one memfd (in the hello or in a
 * MEMFD message, never a second one, and never a MEMFD message without
 * it), invalidations with growing sequence numbers, nothing else.  Any
 * other message is VMMU_EPROTO with the descriptors it carried closed; a
 * vm that hung up is VMMU_EDEAD. */
static void client_takes_one_memfd_and_refuses_messages_it_does_not_expect(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dm_shared *h;
    struct vmmu_dmc *c = client_without_memfd(&svc, &vm_sock, &ram, &h);
    assert_int_equal(pwrite(ram, "late", 4, 0x2000), 4);
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0x2000, 4, 0, &p), VMMU_ENOENT); /* no memfd yet */
    vm_sends(vm_sock, VMMU_DM_MSG_MEMFD, 0, ram);
    assert_int_equal(vmmu_dmc_process(c), 0);
    assert_int_equal(vmmu_dmc_map(c, 0x2000, 4, 0, &p), 0);
    assert_memory_equal(p, "late", 4);
    assert_int_equal(vmmu_dmc_unmap(c, 0x2000), 0);

    /* A second memfd: refused, and the descriptor that came with it closed. */
    unsigned before = open_fds();
    vm_sends(vm_sock, VMMU_DM_MSG_MEMFD, 0, ram);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    assert_int_equal(open_fds(), before);
    /* A memfd the vm could shrink under the device model's mappings. */
    int loose = memfd_create("loose", MFD_CLOEXEC);
    assert_true(loose >= 0);
    vm_sends(vm_sock, VMMU_DM_MSG_MEMFD, 0, loose);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    close(loose);
    assert_int_equal(open_fds(), before); /* its copy closed too */
    /* A MEMFD message without a descriptor. */
    vm_sends(vm_sock, VMMU_DM_MSG_MEMFD, 0, -1);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    /* A type the vm never sends here, with a descriptor: closed too. */
    vm_sends(vm_sock, VMMU_DM_MSG_PAGE_IN, 0, ram);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    assert_int_equal(open_fds(), before);

    /* Invalidations: acknowledged in order; one not newer than the last
     * is refused. */
    vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, 5, -1);
    assert_int_equal(vmmu_dmc_process(c), 0);
    struct vmmu_dm_msg ack;
    assert_int_equal(recv(vm_sock, &ack, sizeof(ack), 0), sizeof(ack));
    assert_int_equal(ack.type, VMMU_DM_MSG_INVALIDATE_ACK);
    assert_int_equal(ack.seq, 5);
    vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, 5, -1);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, 4, -1);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EPROTO);
    vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, 6, -1);
    assert_int_equal(vmmu_dmc_process(c), 0);
    assert_int_equal(recv(vm_sock, &ack, sizeof(ack), 0), sizeof(ack));
    assert_int_equal(ack.seq, 6);

    /* Nothing waiting: nothing to do.  The vm gone: VMMU_EDEAD. */
    assert_int_equal(vmmu_dmc_process(c), 0);
    close(vm_sock);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EDEAD);
    vmmu_dmc_close(c);
    munmap(h, 4096);
    close(svc);
    close(ram);
}

/* A vm that reads nothing cannot block the client: acknowledgements it
 * does not take are kept (cumulative: the latest is owed) and sent at a
 * later call, a part of one sent stays in step; a page-in request the
 * service socket has no room for fails after pagein_timeout_ms. */
static void a_vm_that_reads_nothing_cannot_block_the_client(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dmc *c = client_with_fake_vm(&svc, &vm_sock, &ram);
    alarm(30); /* a client that blocks fails here, not for ever */
    const uint64_t n = 20000;
    for (uint64_t seq = 1; seq <= n; seq++) {
        vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, seq, -1);
        if (seq % 64 == 0 || seq == n)
            assert_int_equal(vmmu_dmc_process(c), 0);
    }
    /* Every acknowledgement received is whole and newer than the last;
     * the last owed comes once the vm has made room. */
    uint64_t last = 0;
    for (int round = 0; round < 2 && last < n; round++) {
        struct vmmu_dm_msg ack;
        ssize_t got;
        while ((got = recv(vm_sock, &ack, sizeof(ack), MSG_DONTWAIT | MSG_WAITALL)) > 0) {
            assert_int_equal(got, sizeof(ack));
            assert_int_equal(ack.type, VMMU_DM_MSG_INVALIDATE_ACK);
            assert_true(ack.seq > last && ack.seq <= n);
            last = ack.seq;
        }
        assert_int_equal(vmmu_dmc_process(c), 0);
    }
    assert_int_equal(last, n);

    /* The service socket: the vm never reads its requests. */
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
    fake_vm_pagein_ms = 1;
    c = client_with_fake_vm(&svc, &vm_sock, &ram);
    fake_vm_pagein_ms = 2000;
    void *p;
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(vmmu_dmc_map(c, 0x3000, 8, 0, &p), VMMU_ETIMEDOUT);
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(c, &st), 0);
    assert_true(st.page_ins < 1000); /* the queue filled: later ones were never sent */
    alarm(0);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
}

/* A vm that hangs up with an acknowledgement unread resets the
 * connection: the failed receive brings no descriptor, and what an
 * earlier message left in the control buffer is not taken for one (the
 * client closed the memfd it held, and mapped whatever file took its
 * number next). */
static void a_reset_connection_leaves_the_descriptors_already_taken_alone(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dm_shared *h;
    struct vmmu_dmc *c = client_without_memfd(&svc, &vm_sock, &ram, &h);
    assert_int_equal(pwrite(ram, "guest", 5, 0), 5);
    vm_sends(vm_sock, VMMU_DM_MSG_INVALIDATE, 1, -1);
    assert_int_equal(vmmu_dmc_process(c), 0); /* its acknowledgement stays unread */
    vm_sends(vm_sock, VMMU_DM_MSG_MEMFD, 0, ram);
    close(vm_sock);
    assert_int_equal(vmmu_dmc_process(c), VMMU_EDEAD);
    int other = memfd_create("other", MFD_CLOEXEC);
    assert_true(other >= 0);
    assert_int_equal(ftruncate(other, 4 * 4096), 0);
    assert_int_equal(pwrite(other, "other", 5, 0), 5);
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0, 5, 0, &p), 0);
    assert_memory_equal(p, "guest", 5);
    assert_int_equal(vmmu_dmc_unmap(c, 0), 0);
    vmmu_dmc_close(c);
    assert_true(fcntl(other, F_GETFD) >= 0); /* not the client's to close */
    close(other);
    munmap(h, 4096);
    close(svc);
    close(ram);
}

/* A region-table entry whose guest range runs past 2^64, or whose memfd
 * range wraps, is refused like the same run in a page-in answer
 * (VMMU_EPROTO): a copy at the top of the address space reads only into
 * the caller's buffer, never past it.  An entry beyond the end of the
 * memfd is a hole, as in an answer. */
static void client_refuses_region_table_entries_that_wrap(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dm_shared *h;
    struct vmmu_dmc *c = client_with_fake_vm_shared(&svc, &vm_sock, &ram, &h);
    /* The memfd is 4 pages; the entry claims 3 pages from 2^64 - 2 pages. */
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0xFFFFFFFFFFFFE000ull,
                                                       .size = 0x3000,
                                                       .flags = VMMU_DM_REGION_WRITABLE});
    char *buf = malloc(16);
    assert_non_null(buf);
    assert_int_equal(vmmu_dmc_read(c, 0xFFFFFFFFFFFFE000ull, buf, 16), VMMU_EPROTO);
    assert_int_equal(vmmu_dmc_fill(c, 0xFFFFFFFFFFFFE000ull, 0, 16), VMMU_EPROTO);
    /* A sound entry in the last bucket below 2^64 is cut there too. */
    assert_int_equal(pwrite(ram, "top!", 4, 0x1000), 4);
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0xFFFFFFFFFFFF0000ull,
                                                       .size = 0x2000, .memfd_offset = 0x1000});
    assert_int_equal(vmmu_dmc_read(c, 0xFFFFFFFFFFFF0000ull, buf, 16), 0);
    assert_memory_equal(buf, "top!", 4);
    assert_int_equal(vmmu_dmc_read(c, 0xFFFFFFFFFFFF1ff0ull, buf, 16), 0); /* to its end */
    free(buf);
    /* Ending exactly at 2^64 is refused too. */
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0xFFFFFFFFFFFFF000ull,
                                                       .size = 0x1000});
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0xFFFFFFFFFFFFF000ull, 8, 0, &p), VMMU_EPROTO);
    /* A memfd offset that wraps. */
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0x1000, .size = 0x1000,
                                                       .memfd_offset = 0ull - 0x1000});
    assert_int_equal(vmmu_dmc_map(c, 0x1000, 8, 0, &p), VMMU_EPROTO);
    /* Beyond the memfd. */
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0x1000, .size = 0x1000,
                                                       .memfd_offset = 0x4000});
    assert_int_equal(vmmu_dmc_map(c, 0x1000, 8, 0, &p), VMMU_EHOLE);
    /* And a sound entry is mapped. */
    assert_int_equal(pwrite(ram, "ram!", 4, 0x2000), 4);
    publish_one_region(h, (struct vmmu_dm_region_ent){.gpa = 0x1000, .size = 0x1000,
                                                       .memfd_offset = 0x2000});
    char got[4];
    assert_int_equal(vmmu_dmc_read(c, 0x1000, got, 4), 0);
    assert_memory_equal(got, "ram!", 4);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);

    /* The same memfd wrap in a page-in answer. */
    c = client_with_fake_vm(&svc, &vm_sock, &ram);
    struct vmmu_dm_page_in_done a = {
        .type = VMMU_DM_MSG_PAGE_IN_DONE,
        .run = {.gpa = 0x1000, .size = 0x1000, .memfd_offset = 0ull - 0x1000}};
    assert_int_equal(map_answered(c, svc, 0x1000, a, false), VMMU_EPROTO);
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
    munmap(h, 4096);
}

/* A vm that sends half a message and stops: the client waits for the
 * rest no longer than the caller asked, then fails with VMMU_EPROTO and
 * hangs up (every later message would be read out of step). */
static void client_fails_a_message_cut_short_within_the_timeout(void **state)
{
    (void)state;
    int svc, vm_sock, ram;
    struct vmmu_dmc *c = client_with_fake_vm(&svc, &vm_sock, &ram);
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_INVALIDATE, .seq = 1, .size = 4096};
    assert_int_equal(send(vm_sock, &m, 16, 0), 16);
    alarm(20); /* a client that blocks for the rest fails here, not for ever */
    struct vmmu_dmc_req r;
    assert_int_equal(vmmu_dmc_wait(c, 100, &r), VMMU_EPROTO);
    assert_int_equal(vmmu_dmc_wait(c, 100, &r), VMMU_EDEAD);
    alarm(0);
    char b;
    assert_int_equal(recv(vm_sock, &b, 1, 0), 0); /* the vm sees the hang-up */
    vmmu_dmc_close(c);
    close(svc);
    close(vm_sock);
    close(ram);
}

static void client_refuses_a_malformed_hello(void **state)
{
    (void)state;
    int shm = sealed_memfd("t", 4096, F_SEAL_SHRINK);
    int svc[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, svc), 0);
    int fds[5] = {shm, chan_end(NULL), chan_end(NULL), chan_end(NULL),
                  svc[1]}; /* page, kick, 2 slots, service */
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_HELLO, .seq = 2, .gpa = 4096};
    /* wrong type */
    m.type = VMMU_DM_MSG_INVALIDATE;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    m.type = VMMU_DM_MSG_HELLO;
    /* descriptor count does not match the slot count (the service socket missing) */
    assert_int_equal(client_on(&m, fds, 4), VMMU_EPROTO);
    /* impossible slot counts and sizes */
    m.seq = 0;
    assert_int_equal(client_on(&m, fds, 3), VMMU_EPROTO);
    m.seq = 100000;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    m.seq = 2;
    m.gpa = 1ull << 40;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    /* the shared page is all zeros: no magic */
    m.gpa = 4096;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    /* a header whose offsets point outside the page */
    struct vmmu_dm_shared *h = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
    assert_true(h != MAP_FAILED);
    *h = (struct vmmu_dm_shared){.magic = VMMU_DM_PROTO_MAGIC, .version = VMMU_DM_PROTO_VERSION,
                                 .nslots = 2, .slots_offset = 4032, .regions_offset = 128,
                                 .size = 4096};
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    h->slots_offset = 128;
    h->regions_offset = 4090;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    h->regions_offset = 256;
    h->ring_entries = 3; /* not a power of two */
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    /* Offsets so large that offset + length wraps past 2^64 and lands
     * inside the page: each would put a pointer before the mapping. */
    h->ring_entries = 4096;
    h->ring_offset = 0ull - 98432; /* the ring's end wraps to 0 */
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    h->ring_offset = 512;
    h->ring_entries = 4;
    h->slots_offset = 0ull - 64;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    h->slots_offset = 128;
    h->regions_offset = 0ull - 8;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    h->regions_offset = 256;
    assert_int_equal(client_on(&m, fds, 5), 0); /* with a ring at 512 */
    h->ring_offset = 0;
    h->ring_entries = 0;
    assert_int_equal(client_on(&m, fds, 5), 0); /* and now it is acceptable */
    /* Channels that are not datagram sockets (a vm could make an eventfd,
     * a pipe or a stream socket block the device model's wake-ups), and
     * a shared page the vm could truncate under the device model. */
    int kick = fds[1];
    fds[1] = shm;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    fds[1] = kick;
    int resp = fds[3];
    fds[3] = svc[1]; /* a socket, but not a datagram one */
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    fds[3] = resp;
    int loose = memfd_create("loose", MFD_CLOEXEC);
    assert_true(loose >= 0);
    assert_int_equal(ftruncate(loose, 4096), 0);
    void *lh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, loose, 0);
    assert_true(lh != MAP_FAILED);
    memcpy(lh, h, 4096);
    munmap(lh, 4096);
    fds[0] = loose;
    assert_int_equal(client_on(&m, fds, 5), VMMU_EPROTO);
    fds[0] = shm;
    close(loose);
    assert_int_equal(client_on(&m, fds, 5), 0);
    /* A dirty bitmap the vm could shrink under the device model's stores
     * (not sealed), or of the wrong size, is refused; a sealed one of the
     * right size is taken. */
    int dirty = memfd_create("dirty", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(dirty >= 0);
    assert_int_equal(ftruncate(dirty, (off_t)(VMMU_DM_DIRTY_PAGES / 8)), 0);
    int dfds[6] = {fds[0], fds[1], fds[2], fds[3], fds[4], dirty};
    m.flags = VMMU_DM_HELLO_DIRTY;
    assert_int_equal(client_on(&m, dfds, 5), VMMU_EPROTO); /* the descriptor missing */
    assert_int_equal(client_on(&m, dfds, 6), VMMU_EPROTO); /* not sealed */
    assert_int_equal(ftruncate(dirty, 4096), 0);
    assert_int_equal(fcntl(dirty, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    assert_int_equal(client_on(&m, dfds, 6), VMMU_EPROTO); /* too small */
    close(dirty);
    dirty = memfd_create("dirty", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(dirty >= 0);
    assert_int_equal(ftruncate(dirty, (off_t)(VMMU_DM_DIRTY_PAGES / 8)), 0);
    assert_int_equal(fcntl(dirty, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    dfds[5] = dirty;
    assert_int_equal(client_on(&m, dfds, 6), 0);
    close(dirty);
    m.flags = 0;
    munmap(h, 4096);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    close(svc[0]);
    /* a vm that hangs up at once */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[0]);
    struct vmmu_dmc *c;
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, &c), VMMU_EDEAD);
    assert_int_equal(vmmu_dmc_connect_fd(-1, NULL, &c), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_connect_path("/nonexistent/socket", NULL, &c), VMMU_ESYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
/* T: a test that sees no deadline pass, with a patient device model (a
 * loaded machine can hold a thread off the CPU for longer than 200 ms);
 * TO: a test that waits for the 200 ms deadline to pass. */
#define T(f) cmocka_unit_test_setup_teardown(f, setup_patient, teardown)
#define TO(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(a_correct_answer_is_taken_and_masked_to_the_access_size),
        T(an_answer_with_the_wrong_sequence_fails_with_eproto),
        T(an_impossible_status_fails_with_eproto),
        T(an_answer_in_another_vcpus_slot_is_ignored),
        TO(a_slot_the_device_model_frees_times_out),
        TO(a_pending_request_never_presented_again_ends_at_its_deadline),
        TO(acknowledging_invalidations_one_at_a_time_does_not_stretch_their_deadlines),
        TO(a_device_model_cannot_make_the_vm_block_on_its_channels),
        TO(a_host_access_is_not_blocked_by_a_device_models_channels),
        TO(the_files_a_device_model_maps_cannot_be_shrunk),
        T(an_impossible_ring_index_sends_writes_through_the_slot),
        T(a_full_ring_sends_writes_through_the_slot),
        T(garbage_and_unasked_acks_are_counted_and_ignored),
        TO(a_silent_device_model_is_declared_dead_by_the_invalidation),
        T(hanging_up_kills_requests_in_flight),
        TO(a_request_in_flight_when_another_times_out_fails_with_edead),
        TO(a_device_model_flooding_its_socket_still_misses_the_invalidation_deadline),
        T(destroying_a_server_a_host_access_waits_on_fails_it_with_edead),
        T(a_vcpu_thread_waiting_for_another_host_access_holds_up_no_shootdown),
        T(a_host_access_waiting_for_a_device_model_holds_up_none_to_another_server),
        T(destroying_a_server_a_vcpu_waits_on_wakes_the_vcpu),
        T(page_in_requests_are_checked_and_answered),
        TO(asking_for_page_ins_does_not_excuse_a_missing_acknowledgement),
        T(a_short_message_on_the_service_socket_ends_only_the_service),
        T(another_type_on_the_service_socket_ends_only_the_service),
        cmocka_unit_test(refused_remote_servers_close_the_socket_and_a_gone_peer_is_edead),
        cmocka_unit_test(an_invalidation_during_a_servers_destroy_waits_for_its_process_to_exit),
        cmocka_unit_test(destroying_a_server_a_vcpu_is_killing_frees_it_after_the_vcpu_is_done),
        cmocka_unit_test(a_device_model_that_reads_nothing_holds_up_no_other_devices_access),
        cmocka_unit_test(remote_servers_refuse_what_is_not_a_connected_unix_stream_socket),
        cmocka_unit_test(remote_servers_refuse_a_pid_that_is_this_process_or_none),
        cmocka_unit_test(a_vcpu_waiting_for_a_hung_up_device_model_to_exit_holds_up_no_grace_period),
        cmocka_unit_test(client_refuses_a_malformed_hello),
        cmocka_unit_test(client_checks_page_in_answers_and_gives_up_on_a_silent_vm),
        cmocka_unit_test(client_asks_again_when_told_to_and_takes_a_bad_request_as_its_own_error),
        cmocka_unit_test(client_takes_one_memfd_and_refuses_messages_it_does_not_expect),
        cmocka_unit_test(a_reset_connection_leaves_the_descriptors_already_taken_alone),
        cmocka_unit_test(a_vm_that_reads_nothing_cannot_block_the_client),
        cmocka_unit_test(client_refuses_region_table_entries_that_wrap),
        cmocka_unit_test(client_fails_a_message_cut_short_within_the_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
