/* libFuzzer target: the device-model protocol from both ends.
 *
 * Mode 0 (first byte even): the input is a script for a hostile device
 * model talking to a real vm-side server: vCPU accesses (read/write, any
 * size, pending), arbitrary rewrites of request slots and of the ring's
 * consumer index, garbage and acknowledgements on the socket, posted and
 * awaited invalidations, page-in requests and garbage on the service
 * socket.  The vm must never crash, read outside its
 * buffers, report an answer it did not receive, or hang.
 *
 * Mode 1 (first byte odd): the input is a hostile vm's HELLO (message and
 * shared-page header) for the client library, followed by slot contents
 * and messages for vmmu_dmc_wait()/vmmu_dmc_process().
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dm/dm_internal.h"
#include "vmmu/dmclient.h"
#include "vmmu/vmmu.h"

#define DEV_GPA 0x100000ull
#define NVCPU 2

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take8(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t take64(struct input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)take8(in) << (8 * i);
    return v;
}

static void fail(const char *what)
{
    (void)what;
    __builtin_trap();
}

static void recv_hello(int sock, struct vmmu_dm_shared **sh, int *fds, int *nfds)
{
    struct vmmu_dm_msg m;
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMMU_DM_HELLO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != sizeof(m))
        fail("hello");
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    *nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(fds, CMSG_DATA(c), (size_t)*nfds * sizeof(int));
    *sh = mmap(NULL, m.gpa, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (*sh == MAP_FAILED)
        fail("mmap");
}

/* The vm side and the fake device model's end persist across inputs (a
 * server costs several system calls and grace periods to build); each
 * input starts from a quiet state: nothing outstanding, ring empty, socket
 * drained.  A server that died is rebuilt. */
static struct fuzz_env {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    int sock; /* the device model's end */
    struct vmmu_dm_shared *sh;
    int fds[VMMU_DM_HELLO_MAX_FDS], nfds;
    struct vmmu_dm_slot *slots;
    struct vmmu_dm_ring *ring;
    size_t sent_bytes;      /* bytes the device model put on its socket */
    uint64_t posted;        /* the last invalidation posted to this server */
    int pending[NVCPU];     /* a vCPU has a request outstanding ... */
    struct vmmu_device_req req[NVCPU]; /* ... this one */
} E;

static void env_drop(void)
{
    munmap(E.sh, E.sh->size);
    for (int i = 0; i < E.nfds; i++)
        close(E.fds[i]);
    close(E.sock);
    vmmu_dm_server_destroy(E.srv);
    E.srv = NULL;
}

static void env_build(void)
{
    if (!E.vm) {
        struct vmmu_dm_config cfg = {.max_vcpus = NVCPU};
        struct vmmu_vm_config vc = {.gpa_bits = 32};
        if (vmmu_vm_create(&vc, &E.vm) || vmmu_dm_create(E.vm, &cfg, &E.dm))
            fail("vm");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        fail("socketpair");
    struct vmmu_dm_remote_config rc = {.timeout_ms = 2000, .ring_entries = 4};
    if (vmmu_dm_server_create_remote(E.dm, sv[0], &rc, &E.srv))
        fail("server");
    if (vmmu_dm_map_mmio(E.srv, DEV_GPA, 4096, VMMU_DM_RANGE_BUFFERED, NULL, NULL))
        fail("map");
    E.sock = sv[1];
    recv_hello(E.sock, &E.sh, E.fds, &E.nfds);
    E.slots = (struct vmmu_dm_slot *)((char *)E.sh + E.sh->slots_offset);
    E.ring = (struct vmmu_dm_ring *)((char *)E.sh + E.sh->ring_offset);
    E.sent_bytes = 0;
    E.posted = 0;
    memset(E.pending, 0, sizeof(E.pending));
}

/* Answer what is outstanding properly, empty the ring and the socket. */
static void env_quiesce(void)
{
    if (!E.srv)
        return env_build();
    if (vmmu_dm_server_check(E.srv)) {
        env_drop();
        return env_build();
    }
    uint8_t buf[512];
    while (recv(E.sock, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
    __atomic_store_n(&E.ring->cons, __atomic_load_n(&E.ring->prod, __ATOMIC_ACQUIRE),
                     __ATOMIC_RELEASE);
    for (int v = 0; v < NVCPU; v++) {
        if (!E.pending[v])
            continue;
        struct vmmu_dm_slot *sl = &E.slots[v];
        sl->status = VMMU_DM_STATUS_OK;
        sl->resp_seq = sl->seq; /* the vm wrote seq; the script never does */
        __atomic_store_n(&sl->state, VMMU_DM_SLOT_RESPONSE, __ATOMIC_RELEASE);
        struct vmmu_device_req r = E.req[v];
        int err = vmmu_p2m_device_access(E.vm, &r);
        E.pending[v] = 0;
        if (err == VMMU_EDEAD || err == VMMU_ETIMEDOUT) {
            env_drop();
            return env_build();
        }
        if (err)
            fail("a proper answer was refused");
    }
}

static void hostile_device_model(struct input *in)
{
    env_quiesce();
    struct vmmu_vm *vm = E.vm;
    struct vmmu_dm *dm = E.dm;
    struct vmmu_dm_slot *slots = E.slots;
    struct vmmu_dm_ring *ring = E.ring;
    int sock = E.sock;
    uint64_t posted = E.posted;

    for (int steps = 0; in->n && steps < 64; steps++) {
        uint8_t op = take8(in);
        switch (op % 9) {
        case 0: { /* a vCPU (or the host, if it would not block) accesses the device */
            int vcpu = take8(in) % NVCPU;
            uint8_t k = take8(in);
            unsigned size = 1u << (k & 3);
            struct vmmu_device_req r = {.gpa = DEV_GPA + ((k >> 2) & 7) * 8, .size = size,
                                        .write = (k >> 5) & 1, .data = take64(in),
                                        .vcpu_id = vcpu};
            struct vmmu_device_req asked = r;
            int err = vmmu_p2m_device_access(vm, &r);
            if (err == VMMU_EPENDING) { /* this access is now the outstanding one */
                E.req[vcpu] = asked;
                E.pending[vcpu] = 1;
            } else if (err != VMMU_EBUSY) {
                E.pending[vcpu] = 0;
            }
            if (err == 0 && !r.write && size < 8 && (r.data >> (size * 8)))
                fail("answer wider than the access");
            if (err && err != VMMU_EPENDING && err != VMMU_EPROTO && err != VMMU_EDEVICE &&
                err != VMMU_EBUSY && err != VMMU_EDEAD && err != VMMU_ETIMEDOUT)
                fail("unexpected error");
            break;
        }
        case 1: { /* rewrite a slot, any slot, any way */
            struct vmmu_dm_slot *s = &slots[take8(in) % (NVCPU + 1)];
            uint8_t k = take8(in);
            uint32_t seq = s->seq + (uint32_t)(int8_t)take8(in);
            s->data = take64(in);
            s->status = (k & 1) ? take8(in) : 0;
            s->resp_seq = (k & 2) ? seq : s->seq;
            __atomic_store_n(&s->state, (k >> 2) & 7, __ATOMIC_RELEASE);
            break;
        }
        case 2: /* an impossible or plausible ring consumer index */
            __atomic_store_n(&ring->cons, (uint32_t)take64(in), __ATOMIC_RELEASE);
            break;
        case 3: { /* garbage on the socket, of any length */
            uint8_t buf[40];
            size_t len = take8(in) % sizeof(buf);
            for (size_t i = 0; i < len; i++)
                buf[i] = take8(in);
            ssize_t n = send(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                E.sent_bytes += (size_t)n;
            break;
        }
        case 4: /* the vm posts an invalidation */
            if (vmmu_dm_invalidate_async(dm, take64(in) & 0xffffff000ull, 4096, &posted))
                fail("post");
            break;
        case 5: { /* the device model acknowledges (after realigning its stream) and the vm waits */
            uint8_t pad[32] = {0};
            size_t fix = (32 - E.sent_bytes % 32) % 32;
            if (fix && send(sock, pad, fix, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)fix)
                E.sent_bytes += fix;
            struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_INVALIDATE_ACK, .seq = posted};
            if (!posted || E.sent_bytes % 32 ||
                send(sock, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(m))
                break;
            E.sent_bytes += sizeof(m);
            /* The stream is aligned, so the ack is read whole: no timeout. */
            if (vmmu_dm_invalidate_wait(dm, posted))
                fail("wait");
            break;
        }
        case 6: { /* the pure validators */
            uint8_t buf[32];
            for (int i = 0; i < 32; i++)
                buf[i] = take8(in);
            uint64_t seq = 0, acked = take8(in), sent = take8(in);
            if (vmmu__dm_check_ack(buf, take8(in) % 33, acked, sent, &seq) == 0 &&
                (seq <= acked || seq > sent))
                fail("ack outside the window");
            struct vmmu_dm_slot s;
            memcpy(&s, buf, sizeof(buf));
            memset((char *)&s + 32, 0, sizeof(s) - 32);
            uint64_t data = 0;
            unsigned size = 1u << (take8(in) & 3);
            if (vmmu__dm_slot_read_answer(&s, (uint32_t)take64(in), size, &data) == 0 &&
                size < 8 && (data >> (size * 8)))
                fail("unmasked data");
            break;
        }
        case 7: { /* drain what the vm sent, as a device model would */
            uint8_t buf[512];
            while (recv(sock, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
            }
            break;
        }
        case 8: { /* the service socket: a page-in request, well formed or not */
            int svc = E.fds[2 + E.sh->nslots];
            uint8_t k = take8(in);
            struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_PAGE_IN, .seq = take8(in),
                                    .gpa = take64(in), .size = take64(in)};
            if (k & 1)
                m.type = take8(in);
            if (k & 2)
                m.flags = take8(in);
            size_t len = (k & 4) ? take8(in) % (sizeof(m) + 1) : sizeof(m);
            if (send(svc, &m, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len)
                break; /* the vm closed the service after earlier garbage */
            struct vmmu_dm_page_in_done r;
            ssize_t n = recv(svc, &r, sizeof(r), 0);
            if (n == 0)
                break; /* that was garbage: the service ended */
            if (n != sizeof(r) || r.type != VMMU_DM_MSG_PAGE_IN_DONE || r.seq != m.seq ||
                r.status > VMMU_DM_PAGE_IN_AGAIN || (r.status && r.run.size))
                fail("page-in answer");
            if (len != sizeof(m) || m.type != VMMU_DM_MSG_PAGE_IN || m.flags)
                fail("garbage answered");
            if (r.status == VMMU_DM_PAGE_IN_OK)
                fail("this vm has no RAM to bring back");
            break;
        }
        }
    }
    E.posted = posted;
}

static void hostile_vm(struct input *in)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        fail("socketpair");
    /* Sealed as a vm seals it, unless the input says otherwise. */
    int shm = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t size = 4096;
    if (shm < 0 || ftruncate(shm, (off_t)size))
        fail("memfd");
    if (!(take8(in) & 1) && fcntl(shm, F_ADD_SEALS, F_SEAL_SHRINK))
        fail("seal");
    uint8_t *page = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
    if (page == MAP_FAILED)
        fail("mmap");
    /* A mostly plausible header with fuzzed fields. */
    struct vmmu_dm_shared h = {.magic = VMMU_DM_PROTO_MAGIC, .version = VMMU_DM_PROTO_VERSION,
                               .nslots = 2, .ring_entries = 4, .max_regions = 4,
                               .slots_offset = 128, .ring_offset = 256, .regions_offset = 512,
                               .size = size};
    uint8_t k = take8(in);
    if (k & 1) h.nslots = take8(in);
    if (k & 2) h.ring_entries = take8(in);
    if (k & 4) h.max_regions = (uint32_t)take64(in);
    if (k & 8) h.slots_offset = take64(in);
    if (k & 16) h.ring_offset = take64(in);
    if (k & 32) h.regions_offset = take64(in);
    if (k & 64) h.magic ^= take8(in);
    memcpy(page, &h, sizeof(h));
    /* Fuzzed bytes for the rest of the page: slots, ring, region table. */
    for (size_t i = sizeof(h); i < size && in->n > 64; i++)
        page[i] = take8(in);
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_HELLO, .seq = 2, .gpa = size};
    uint8_t k2 = take8(in);
    if (k2 & 1) m.type = take8(in);
    if (k2 & 2) m.seq = take8(in);
    if (k2 & 4) m.flags = take8(in);
    /* Wake-up channels: the device model's ends go in the HELLO. */
    int chan[4][2];
    for (int i = 0; i < 4; i++)
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, chan[i]))
            fail("socketpair");
    int svc[2]; /* the service socket: the client's end goes in the HELLO */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, svc))
        fail("socketpair");
    int fds[6] = {shm, chan[0][1], chan[1][1], chan[2][1], (take8(in) & 1) ? chan[3][1] : svc[1],
                  shm};
    unsigned nfds = 1 + take8(in) % 6;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 6)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof(u));
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    if (sendmsg(sv[0], &mh, 0) != sizeof(m))
        fail("send");
    /* The answer to the client's first page-in request, waiting for it:
     * plausible, or lying about its run, its status, its size. */
    struct vmmu_dm_page_in_done a = {.type = VMMU_DM_MSG_PAGE_IN_DONE, .seq = 1,
                                     .run = {.gpa = 0, .size = 4096, .flags = 1}};
    uint8_t k3 = take8(in);
    if (k3 & 1) a.status = take8(in) % 6;
    if (k3 & 2) a.run.gpa = take64(in);
    if (k3 & 4) a.run.size = take64(in);
    if (k3 & 8) a.run.memfd_offset = take64(in);
    if (k3 & 16) a.run.flags = take8(in);
    if (k3 & 32) a.seq = take8(in);
    if (k3 & 64) a.type = take8(in);
    size_t alen = (k3 & 128) ? take8(in) % (sizeof(a) + 1) : sizeof(a);
    (void)!send(svc[0], &a, alen, MSG_DONTWAIT | MSG_NOSIGNAL);
    /* Then whatever messages the vm likes. */
    while (in->n >= sizeof(struct vmmu_dm_msg)) {
        struct vmmu_dm_msg x;
        memcpy(&x, in->p, sizeof(x));
        in->p += sizeof(x);
        in->n -= sizeof(x);
        if (send(sv[0], &x, sizeof(x), MSG_DONTWAIT) != sizeof(x))
            break;
    }
    struct vmmu_dmc_config cc = {.mapcache_bytes = 1 << 20, .pagein_timeout_ms = 5};
    struct vmmu_dmc *cl = NULL;
    if (vmmu_dmc_connect_fd(sv[1], &cc, &cl) == 0) {
        struct vmmu_dmc_req r;
        for (int i = 0; i < 8; i++) {
            int err = vmmu_dmc_wait(cl, 0, &r);
            if (err == 0 && !r.buffered)
                vmmu_dmc_complete(cl, &r, 0, 0);
            if (err && err != VMMU_ETIMEDOUT)
                break;
        }
        void *p;
        if (vmmu_dmc_map(cl, 0, 8, 0, &p) == 0)
            vmmu_dmc_unmap(cl, 0);
        vmmu_dmc_close(cl);
    }
    munmap(page, size);
    close(shm);
    for (int i = 0; i < 4; i++) {
        close(chan[i][0]);
        close(chan[i][1]);
    }
    close(svc[0]);
    close(svc[1]);
    close(sv[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    if (take8(&in) & 1)
        hostile_vm(&in);
    else
        hostile_device_model(&in);
    return 0;
}
