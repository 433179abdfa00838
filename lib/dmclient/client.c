/* SPDX-License-Identifier: MIT */
/*
 * The device-model side of the protocol in vmmu/dmproto.h: receiving the
 * HELLO and its file descriptors, validating the shared page, taking
 * requests from the ring and the slots, answering them, and processing
 * invalidations.
 *
 * Ordering of buffered writes.  A vCPU that posts a buffered write and then
 * a slot request expects the device model to see the write first.  The vm
 * publishes ring->prod (release) before it marks the slot READY (release);
 * so after we read READY (acquire) we look at the ring again, and if it
 * holds anything we return that first and leave the slot for later.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dmclient_internal.h"

_Atomic unsigned long vmmu__dmc_fail_nth;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void close_fds(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Whether @fd is a datagram socket: what the vm's wake-up channels are. */
static bool is_dgram_socket(int fd)
{
    int type = 0;
    socklen_t len = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM;
}

/* Whether @fd is a file sealed against shrinking (a memfd the vm cannot
 * truncate under our mappings, which would then fault). */
static bool sealed_against_shrinking(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK);
}

/* Wait up to @until (now_ns() time) for @sock to be readable: 1, 0 when
 * the time is up, or VMMU_ESYS. */
static int wait_readable(int sock, uint64_t until)
{
    for (;;) {
        uint64_t now = now_ns();
        int ms = now >= until ? 0 : (int)((until - now + 999999) / 1000000);
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int pr = poll(&p, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return VMMU_ESYS;
        return pr;
    }
}

/* Receive one whole message and up to @maxfds descriptors, waiting up to
 * @timeout_ms for it.  Returns the number of fds, or a negative code.
 *
 * The vm sends each message with one send(), so it arrives whole.  The
 * socket is never read in a blocking call: a vm that sends part of a
 * message and stops would hold us there for ever.  The rest of a part is
 * waited for only within @timeout_ms; a message still cut short then is
 * VMMU_EPROTO, and since every later message would be read out of step,
 * the connection is shut down (the vm sees the device model hang up, and
 * later calls fail with VMMU_EDEAD). */
static int recv_msg_fds(int sock, struct vmmu_dm_msg *m, int *fds, unsigned maxfds, int timeout_ms)
{
    uint64_t until = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int pr = wait_readable(sock, until);
    if (pr == 0)
        return VMMU_ETIMEDOUT;
    if (pr < 0)
        return pr;
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMMU_DM_HELLO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return VMMU_ETIMEDOUT; /* readable, yet nothing there: a spurious wake-up */
    /* Failed: no descriptor came, and the control buffer holds nothing of
     * this call (an earlier message's may still be there: never parse it). */
    if (n < 0)
        return errno == ECONNRESET ? VMMU_EDEAD : VMMU_ESYS;
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if ((unsigned)nfds < maxfds)
                fds[nfds++] = fd;
            else
                close(fd);
        }
    }
    if (n == 0)
        return close_fds(fds, (unsigned)nfds), VMMU_EDEAD;
    if (mh.msg_flags & MSG_CTRUNC)
        return close_fds(fds, (unsigned)nfds), VMMU_EPROTO;
    /* A part: the rest, if it comes in time, carries no descriptors. */
    size_t got = (size_t)n;
    while (got < sizeof(*m)) {
        pr = wait_readable(sock, until);
        ssize_t k = -1;
        if (pr > 0) {
            do
                k = recv(sock, (char *)m + got, sizeof(*m) - got, MSG_DONTWAIT);
            while (k < 0 && errno == EINTR);
            if (k < 0 && errno == EAGAIN)
                continue;
        }
        if (k <= 0) {
            shutdown(sock, SHUT_RDWR);
            close_fds(fds, (unsigned)nfds);
            return pr < 0 ? pr : k == 0 ? VMMU_EDEAD : pr == 0 ? VMMU_EPROTO : VMMU_ESYS;
        }
        got += (size_t)k;
    }
    return nfds;
}

/* Whether [off, off + len) lies in [0, size), computed without wrapping. */
static bool fits(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* Validate the shared page's header and point @c into the page.  The vm
 * may rewrite the header at any time, so each field is read once, into a
 * private copy, and only the copy is checked and used. */
static int check_shared(struct vmmu_dmc *c, const struct vmmu_dm_shared *sh, size_t size,
                        unsigned nslots)
{
    struct vmmu_dm_shared h = {
        .magic = __atomic_load_n(&sh->magic, __ATOMIC_RELAXED),
        .version = __atomic_load_n(&sh->version, __ATOMIC_RELAXED),
        .nslots = __atomic_load_n(&sh->nslots, __ATOMIC_RELAXED),
        .ring_entries = __atomic_load_n(&sh->ring_entries, __ATOMIC_RELAXED),
        .max_regions = __atomic_load_n(&sh->max_regions, __ATOMIC_RELAXED),
        .slots_offset = __atomic_load_n(&sh->slots_offset, __ATOMIC_RELAXED),
        .ring_offset = __atomic_load_n(&sh->ring_offset, __ATOMIC_RELAXED),
        .regions_offset = __atomic_load_n(&sh->regions_offset, __ATOMIC_RELAXED),
        .size = __atomic_load_n(&sh->size, __ATOMIC_RELAXED),
    };
    if (h.magic != VMMU_DM_PROTO_MAGIC || h.version != VMMU_DM_PROTO_VERSION ||
        h.nslots != nslots || h.size != size || h.max_regions > 4096 ||
        (h.ring_entries & (h.ring_entries - 1)) || h.ring_entries > 4096)
        return VMMU_EPROTO;
    /* The counts are bounded above, so the lengths cannot overflow; the
     * offsets are anything the vm wrote. */
    uint64_t slots_len = (uint64_t)nslots * sizeof(struct vmmu_dm_slot);
    uint64_t ring_len = h.ring_entries ? sizeof(struct vmmu_dm_ring) +
                                             (uint64_t)h.ring_entries * sizeof(struct vmmu_dm_bufreq)
                                       : 0;
    uint64_t reg_len = sizeof(struct vmmu_dm_region_table) +
                       (uint64_t)h.max_regions * sizeof(struct vmmu_dm_region_ent);
    if (h.slots_offset % 64 || h.ring_offset % 64 || h.regions_offset % 8 ||
        h.slots_offset < sizeof(h) || !fits(h.slots_offset, slots_len, size) ||
        !fits(h.ring_offset, ring_len, size) || !fits(h.regions_offset, reg_len, size))
        return VMMU_EPROTO;
    char *base = (char *)c->shared;
    c->slots = (struct vmmu_dm_slot *)(base + h.slots_offset);
    c->ring_entries = h.ring_entries;
    if (h.ring_entries) {
        c->ring = (struct vmmu_dm_ring *)(base + h.ring_offset);
        c->ring_ent = (struct vmmu_dm_bufreq *)(c->ring + 1);
        c->ring_cons = __atomic_load_n(&c->ring->cons, __ATOMIC_ACQUIRE);
    }
    c->regions = (struct vmmu_dm_region_table *)(base + h.regions_offset);
    c->region_ent = (struct vmmu_dm_region_ent *)(c->regions + 1);
    c->max_regions = h.max_regions;
    return 0;
}

static int map_dirty(struct vmmu_dmc *c);

int vmmu_dmc_connect_fd(int sock, const struct vmmu_dmc_config *cfg, struct vmmu_dmc **out)
{
    if (sock < 0 || !out) {
        if (sock >= 0)
            close(sock);
        return VMMU_EINVAL;
    }
    unsigned shift = cfg && cfg->bucket_shift ? cfg->bucket_shift : 16;
    /* A limit below one bucket could map nothing: every map would fail
     * with VMMU_ELIMIT, pinned buckets or not. */
    if (shift < 12 || shift > 24 ||
        (cfg && cfg->mapcache_bytes && cfg->mapcache_bytes < ((size_t)1 << shift))) {
        close(sock);
        return VMMU_EINVAL;
    }
    struct vmmu_dmc *c = dmc_calloc(1, sizeof(*c));
    if (!c) {
        close(sock);
        return VMMU_ENOMEM;
    }
    c->sock = sock;
    c->shm_fd = c->kick_fd = c->memfd = c->svc_sock = c->dirty_fd = -1;
    c->bucket_shift = shift;
    c->limit = cfg && cfg->mapcache_bytes ? cfg->mapcache_bytes : 64u << 20;
    c->spin_us = cfg ? cfg->spin_us : 0;
    c->pagein_timeout_ms = cfg && cfg->pagein_timeout_ms ? cfg->pagein_timeout_ms : 10000;

    struct vmmu_dm_msg m;
    int fds[VMMU_DM_HELLO_MAX_FDS];
    int nfds = recv_msg_fds(sock, &m, fds, VMMU_DM_HELLO_MAX_FDS, 10000);
    int err = nfds < 0 ? nfds : 0;
    unsigned want = 0;
    if (!err) {
        unsigned nslots = (unsigned)m.seq;
        want = 3 + nslots + ((m.flags & VMMU_DM_HELLO_MEMFD) ? 1 : 0) +
               ((m.flags & VMMU_DM_HELLO_DIRTY) ? 1 : 0);
        if (m.type != VMMU_DM_MSG_HELLO ||
            (m.flags & ~(VMMU_DM_HELLO_MEMFD | VMMU_DM_HELLO_DIRTY)) || !m.seq ||
            m.seq > VMMU_DM_MAX_SLOTS || (unsigned)nfds != want || m.gpa < sizeof(struct vmmu_dm_shared) ||
            m.gpa > (64u << 20))
            err = VMMU_EPROTO;
    }
    if (err) {
        if (nfds > 0)
            close_fds(fds, (unsigned)nfds);
        vmmu_dmc_close(c);
        return err;
    }
    c->nslots = (unsigned)m.seq;
    c->shm_fd = fds[0];
    /* The channels are datagram sockets and the files sealed (checked
     * below, once each descriptor has its owner in @c). */
    c->kick_fd = fds[1];
    c->resp_fd = dmc_malloc(c->nslots * sizeof(int));
    if (!c->resp_fd) {
        close_fds(fds + 2, want - 2);
        vmmu_dmc_close(c);
        return VMMU_ENOMEM;
    }
    memcpy(c->resp_fd, fds + 2, c->nslots * sizeof(int));
    c->svc_sock = fds[2 + c->nslots];
    if (m.flags & VMMU_DM_HELLO_MEMFD)
        c->memfd = fds[3 + c->nslots];
    if (m.flags & VMMU_DM_HELLO_DIRTY)
        c->dirty_fd = fds[want - 1];

    bool kinds_ok = is_dgram_socket(c->kick_fd) && sealed_against_shrinking(c->shm_fd) &&
                    (c->memfd < 0 || sealed_against_shrinking(c->memfd));
    for (unsigned i = 0; i < c->nslots; i++)
        kinds_ok = kinds_ok && is_dgram_socket(c->resp_fd[i]);
    struct stat sb;
    if (!kinds_ok || fstat(c->shm_fd, &sb) != 0 || (uint64_t)sb.st_size != m.gpa) {
        vmmu_dmc_close(c);
        return VMMU_EPROTO;
    }
    void *p = mmap(NULL, m.gpa, PROT_READ | PROT_WRITE, MAP_SHARED, c->shm_fd, 0);
    if (p == MAP_FAILED) {
        vmmu_dmc_close(c);
        return VMMU_ESYS;
    }
    c->shared = p;
    c->shared_size = m.gpa;
    err = check_shared(c, p, m.gpa, c->nslots);
    if (!err && c->dirty_fd >= 0)
        err = map_dirty(c);
    if (err) {
        vmmu_dmc_close(c);
        return err;
    }
    *out = c;
    return 0;
}

/* Map the device dirty bitmap: exactly its size, and sealed so that the
 * vm cannot shrink it under our stores (which would then fault). */
static int map_dirty(struct vmmu_dmc *c)
{
    struct stat sb;
    int seals = fcntl(c->dirty_fd, F_GET_SEALS);
    if (fstat(c->dirty_fd, &sb) != 0 || (uint64_t)sb.st_size != VMMU_DM_DIRTY_PAGES / 8 ||
        seals < 0 || !(seals & F_SEAL_SHRINK))
        return VMMU_EPROTO;
    void *p = mmap(NULL, VMMU_DM_DIRTY_PAGES / 8, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, c->dirty_fd, 0);
    if (p == MAP_FAILED)
        return VMMU_ESYS;
    c->dirty = p;
    return 0;
}

int vmmu_dmc_connect_path(const char *path, const struct vmmu_dmc_config *cfg,
                          struct vmmu_dmc **out)
{
    if (!path || !out || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return VMMU_EINVAL;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return VMMU_ESYS;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(s);
        return VMMU_ESYS;
    }
    return vmmu_dmc_connect_fd(s, cfg, out);
}

void vmmu_dmc_close(struct vmmu_dmc *c)
{
    if (!c)
        return;
    vmmu__dmc_mapcache_fini(c);
    if (c->shared)
        munmap(c->shared, c->shared_size);
    if (c->dirty)
        munmap(c->dirty, VMMU_DM_DIRTY_PAGES / 8);
    int fixed[] = {c->sock, c->shm_fd, c->kick_fd, c->memfd, c->svc_sock, c->dirty_fd};
    close_fds(fixed, 6);
    if (c->resp_fd)
        close_fds(c->resp_fd, c->nslots);
    free(c->resp_fd);
    free(c);
}

/* ---- messages from the vm ------------------------------------------------------ */

/* Whether an acknowledgement is owed or partly sent. */
static bool ack_owed(const struct vmmu_dmc *c)
{
    return c->ack_off || c->ack_sent != c->inval_seen;
}

/* Send what can go now of the acknowledgement owed, never waiting: a vm
 * that does not read its socket gets the rest at a later call (a part of
 * a message sent stays sent: the stream must stay in step). */
static int send_acks(struct vmmu_dmc *c)
{
    while (ack_owed(c)) {
        if (!c->ack_off)
            c->ack_msg = (struct vmmu_dm_msg){.type = VMMU_DM_MSG_INVALIDATE_ACK,
                                              .seq = c->inval_seen};
        ssize_t n = send(c->sock, (const char *)&c->ack_msg + c->ack_off,
                         sizeof(c->ack_msg) - c->ack_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return VMMU_EDEAD;
        c->ack_off += (unsigned)n;
        if (c->ack_off == sizeof(c->ack_msg)) {
            c->ack_sent = c->ack_msg.seq;
            c->ack_off = 0;
        }
    }
    return 0;
}

int vmmu_dmc_process(struct vmmu_dmc *c)
{
    if (!c)
        return VMMU_EINVAL;
    int err = send_acks(c);
    if (err)
        return err;
    for (;;) {
        struct pollfd p = {.fd = c->sock, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            return 0;
        if ((p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLIN))
            return VMMU_EDEAD;
        /* Messages are whole and fixed-size; a MEMFD one carries a descriptor. */
        struct vmmu_dm_msg m;
        int fd = -1;
        int nfds = recv_msg_fds(c->sock, &m, &fd, 1, 0);
        if (nfds < 0)
            return nfds == VMMU_ETIMEDOUT ? 0 : nfds;
        if (m.type == VMMU_DM_MSG_MEMFD) {
            if (nfds != 1 || c->memfd >= 0 || !sealed_against_shrinking(fd)) {
                if (nfds == 1)
                    close(fd);
                return VMMU_EPROTO;
            }
            c->memfd = fd;
            continue;
        }
        if (nfds)
            close(fd);
        if (m.type != VMMU_DM_MSG_INVALIDATE || m.seq <= c->inval_seen)
            return VMMU_EPROTO;
        vmmu__dmc_invalidate(c, m.gpa, m.size);
        c->inval_seen = m.seq;
        c->st.invalidations++;
        err = send_acks(c);
        if (err)
            return err;
    }
}

/* ---- asking for paged-out memory -------------------------------------------- */

int vmmu__dmc_page_in(struct vmmu_dmc *c, uint64_t gpa, uint64_t size,
                      struct vmmu_dm_region_ent *run)
{
    if (c->svc_sock < 0)
        return VMMU_EHOLE; /* the service is gone: the pages stay out */
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_PAGE_IN, .seq = ++c->pagein_seq, .gpa = gpa,
                            .size = size};
    uint64_t deadline = now_ns() + (uint64_t)c->pagein_timeout_ms * 1000000ull;
    /* Sent without blocking: a vm that reads nothing from the service
     * socket costs us the timeout, not the thread. */
    for (;;) {
        ssize_t n = send(c->svc_sock, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof(m))
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n >= 0 || errno != EAGAIN)
            return VMMU_EHOLE; /* the service is gone: the pages stay out */
        uint64_t now = now_ns();
        if (now >= deadline)
            return VMMU_ETIMEDOUT;
        struct pollfd p = {.fd = c->svc_sock, .events = POLLOUT};
        if (poll(&p, 1, (int)((deadline - now) / 1000000 + 1)) < 0 && errno != EINTR)
            return VMMU_ESYS;
    }
    c->st.page_ins++;
    /* Invalidations wait until we are back: the caller may hold pinned
     * mappings (a DMA's destination while it maps the source), which an
     * invalidation would make harmless behind its back; and one processed
     * now could cover the run we are about to map.  The vm's page-in never
     * waits for our acknowledgements, so this cannot deadlock. */
    for (;;) {
        struct pollfd p = {.fd = c->svc_sock, .events = POLLIN};
        uint64_t now = now_ns();
        if (now >= deadline)
            return VMMU_ETIMEDOUT;
        int n = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return VMMU_ESYS;
        if (!n)
            continue;
        struct vmmu_dm_page_in_done r;
        uint8_t buf[sizeof(r) + 1];
        ssize_t got = recv(c->svc_sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got == (ssize_t)sizeof(r))
            memcpy(&r, buf, sizeof(r));
        /* A late answer to an earlier request we gave up on (timed out):
         * drop it and wait on for ours, within the same deadline. */
        if (got == (ssize_t)sizeof(r) && r.type == VMMU_DM_MSG_PAGE_IN_DONE && r.seq < m.seq)
            continue;
        /* A run must be a sound region-table entry (the same check as the
         * table's), page-aligned, hold the first byte asked for and lie
         * within the reach the protocol allows; the memfd offset is
         * checked against the file before anything is mapped (mapcache.c). */
        bool ok = got == (ssize_t)sizeof(r) && r.type == VMMU_DM_MSG_PAGE_IN_DONE &&
                  r.seq == m.seq && r.status <= VMMU_DM_PAGE_IN_AGAIN;
        if (ok && r.status == VMMU_DM_PAGE_IN_OK)
            ok = vmmu__dmc_ent_ok(&r.run) && !(r.run.gpa & 4095) && !(r.run.size & 4095) &&
                 gpa >= r.run.gpa && gpa - r.run.gpa < r.run.size &&
                 r.run.size <= 2 * VMMU_DM_PAGE_IN_REACH + 4096;
        if (!ok) {
            /* The vm hung up the service, or said something else: stop using it. */
            close(c->svc_sock);
            c->svc_sock = -1;
            return got == 0 ? VMMU_EHOLE : VMMU_EPROTO;
        }
        switch (r.status) {
        case VMMU_DM_PAGE_IN_OK:
            *run = r.run;
            return 0;
        case VMMU_DM_PAGE_IN_HOLE:
            return VMMU_EHOLE;
        case VMMU_DM_PAGE_IN_FAILED:
            return VMMU_EPAGEDOUT;
        case VMMU_DM_PAGE_IN_AGAIN:
            return VMMU_EBUSY;
        default:
            return VMMU_EINVAL; /* BAD: not sent by this library */
        }
    }
}

/* ---- requests ----------------------------------------------------------------- */

static bool ring_pop(struct vmmu_dmc *c, struct vmmu_dmc_req *req)
{
    if (!c->ring_entries)
        return false;
    uint32_t prod = __atomic_load_n(&c->ring->prod, __ATOMIC_ACQUIRE);
    if (prod == c->ring_cons)
        return false;
    const struct vmmu_dm_bufreq *e = &c->ring_ent[c->ring_cons & (c->ring_entries - 1)];
    *req = (struct vmmu_dmc_req){
        .space = __atomic_load_n(&e->space, __ATOMIC_RELAXED) ? VMMU_DM_SPACE_PIO
                                                              : VMMU_DM_SPACE_MMIO,
        .addr = __atomic_load_n(&e->addr, __ATOMIC_RELAXED),
        .size = __atomic_load_n(&e->size, __ATOMIC_RELAXED),
        .write = 1,
        .data = __atomic_load_n(&e->data, __ATOMIC_RELAXED),
        .vcpu_id = -1,
        .buffered = 1,
    };
    c->ring_cons++;
    __atomic_store_n(&c->ring->cons, c->ring_cons, __ATOMIC_RELEASE);
    c->st.buffered++;
    return true;
}

static bool slot_take(struct vmmu_dmc *c, struct vmmu_dmc_req *req)
{
    for (unsigned k = 0; k < c->nslots; k++) {
        unsigned i = (c->next_slot + k) % c->nslots;
        struct vmmu_dm_slot *s = &c->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != VMMU_DM_SLOT_READY)
            continue;
        if (ring_pop(c, req))
            return true; /* older buffered writes first */
        uint32_t expect = VMMU_DM_SLOT_READY;
        if (!__atomic_compare_exchange_n(&s->state, &expect, VMMU_DM_SLOT_IN_SERVICE, false,
                                         __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            continue;
        *req = (struct vmmu_dmc_req){
            .space = __atomic_load_n(&s->space, __ATOMIC_RELAXED) ? VMMU_DM_SPACE_PIO
                                                                  : VMMU_DM_SPACE_MMIO,
            .addr = __atomic_load_n(&s->addr, __ATOMIC_RELAXED),
            .size = __atomic_load_n(&s->size, __ATOMIC_RELAXED),
            .write = __atomic_load_n(&s->write, __ATOMIC_RELAXED) ? 1 : 0,
            .data = __atomic_load_n(&s->data, __ATOMIC_RELAXED),
            .vcpu_id = __atomic_load_n(&s->vcpu_id, __ATOMIC_RELAXED),
            .slot = i,
            .seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED),
        };
        c->next_slot = i + 1;
        c->st.requests++;
        return true;
    }
    return false;
}

int vmmu_dmc_wait(struct vmmu_dmc *c, int timeout_ms, struct vmmu_dmc_req *req)
{
    if (!c || !req)
        return VMMU_EINVAL;
    uint64_t start = now_ns();
    uint64_t spin_end = start + (uint64_t)c->spin_us * 1000ull;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int err = vmmu_dmc_process(c);
        if (err)
            return err;
        if (ring_pop(c, req) || slot_take(c, req))
            return 0;
        uint64_t now = now_ns();
        if (now >= deadline)
            return VMMU_ETIMEDOUT;
        if (now < spin_end) {
            for (int i = 0; i < 64; i++)
                __builtin_ia32_pause();
            continue;
        }
        struct pollfd p[2] = {{.fd = c->kick_fd, .events = POLLIN},
                              {.fd = c->sock,
                               .events = (short)(POLLIN | (ack_owed(c) ? POLLOUT : 0))}};
        uint64_t left = deadline == UINT64_MAX ? 1000 : (deadline - now + 999999) / 1000000;
        int n = poll(p, 2, left > 1000 ? 1000 : (int)left);
        if (n > 0 && (p[0].revents & POLLIN)) {
            /* Take the wake-ups queued (a bounded number: a vm that keeps
             * kicking cannot hold us here). */
            char b[16];
            for (int i = 0; i < 64 && recv(c->kick_fd, b, sizeof(b), MSG_DONTWAIT) >= 0; i++) {
            }
        }
    }
}

int vmmu_dmc_complete(struct vmmu_dmc *c, const struct vmmu_dmc_req *req, uint64_t data,
                      int status)
{
    if (!c || !req || req->buffered || req->slot >= c->nslots)
        return VMMU_EINVAL;
    struct vmmu_dm_slot *s = &c->slots[req->slot];
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != VMMU_DM_SLOT_IN_SERVICE)
        return VMMU_EPROTO;
    /* The slot's request is the one slot_take() handed out with its seq: an
     * answer carrying another would fail that request (VMMU_EPROTO). */
    if (req->seq != __atomic_load_n(&s->seq, __ATOMIC_RELAXED))
        return VMMU_EINVAL;
    __atomic_store_n(&s->data, req->write ? 0 : data, __ATOMIC_RELAXED);
    __atomic_store_n(&s->status, status ? VMMU_DM_STATUS_ERROR : VMMU_DM_STATUS_OK,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&s->resp_seq, req->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&s->state, VMMU_DM_SLOT_RESPONSE, __ATOMIC_RELEASE);
    static const char one = 1;
    if (send(c->resp_fd[req->slot], &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        if (errno == EAGAIN)
            return 0; /* the queue is full: a wake-up is pending */
        /* The vm closed its end: it is gone, or it destroyed the server. */
        if (errno == ECONNREFUSED || errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
            return VMMU_EDEAD;
        return VMMU_ESYS;
    }
    return 0;
}

int vmmu_dmc_stats(const struct vmmu_dmc *c, struct vmmu_dmc_stats *out)
{
    if (!c || !out)
        return VMMU_EINVAL;
    *out = c->st;
    out->mapped_bytes = c->mapped;
    return 0;
}
