/* SPDX-License-Identifier: MIT */
/*
 * Out-of-process servers: the shared page, the HELLO that hands the device
 * model its file descriptors, the region table it maps guest RAM through,
 * and death (hang-up, exit, kill).
 *
 * Death must be provable, so that no stale mapping of guest memory
 * outlives a server: a device model that vmmu gave up on may still have
 * guest pages mapped.  When its pid is known (given, or
 * the socket's peer credentials) we hold a pidfd: a server is marked dead
 * only after its process has exited (pidfd readable), which the kernel
 * signals after the process's address space is torn down.  A process that
 * hung or broke the protocol is killed first; one that hung up is given
 * its timeout to exit on its own, then killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "dm/dm_internal.h"
#include "sync/sync_internal.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

int vmmu__dm_send_msg(struct vmmu_dm_server *srv, const struct vmmu_dm_msg *m, const int *fds,
                      unsigned nfds, bool wait)
{
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMMU_DM_HELLO_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    uint64_t deadline = vmmu__dm_now_ns() + (uint64_t)srv->timeout_ms * 1000000ull;
    for (;;) {
        ssize_t n = sendmsg(srv->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)sizeof(*m))
            return 0;
        if (n >= 0)
            return VMMU_EPROTO; /* a stream socket never sends 32 bytes in part here */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return VMMU_EDEAD;
        if (!wait)
            return VMMU_EBUSY;
        /* The device model is not reading: wait for room, up to the timeout. */
        uint64_t now = vmmu__dm_now_ns();
        if (now >= deadline)
            return VMMU_ETIMEDOUT;
        struct pollfd p = {.fd = srv->sock, .events = POLLOUT};
        poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
    }
}

int vmmu__dm_peer_gone(struct vmmu_dm_server *srv)
{
    struct pollfd p[2] = {{.fd = srv->sock, .events = POLLRDHUP}, {.fd = srv->pidfd, .events = POLLIN}};
    if (poll(p, 2, 0) > 0 && ((p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) || p[1].revents))
        return VMMU_EDEAD;
    return 0;
}

/* Wait up to @ms for the process behind @pidfd to exit. */
static bool wait_exit(int pidfd, int ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    uint64_t end = vmmu__dm_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        int n = poll(&p, 1, ms);
        if (n > 0)
            return true;
        if (n == 0 || errno != EINTR)
            return false;
        uint64_t now = vmmu__dm_now_ns();
        if (now >= end)
            return false;
        ms = (int)((end - now) / 1000000);
    }
}

/* The waits of vmmu__dm_server_kill(): for the process to exit (up to the
 * server's deadline when it hung up but lives on), or for another thread
 * killing it.  Offline, as every wait in vmmu: a vCPU that noticed the
 * hang-up must not hold up grace periods (page-outs, shootdowns) that
 * long. */
static void kill_and_wait(struct vmmu_dm_server *srv, int reason);

void vmmu__dm_server_kill(struct vmmu_dm_server *srv, int reason)
{
    struct vmmu__blocked blk = vmmu__sync_block_begin();
    kill_and_wait(srv, reason);
    vmmu__sync_block_end(blk);
}

static void kill_and_wait(struct vmmu_dm_server *srv, int reason)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&srv->dead_claimed, &expect, 1)) {
        /* Another thread is killing it; dead is set once the process is gone. */
        while (!atomic_load(&srv->dead)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        return;
    }
    if (srv->sock >= 0)
        shutdown(srv->sock, SHUT_RDWR);
    if (srv->svc_sock >= 0)
        shutdown(srv->svc_sock, SHUT_RDWR); /* its service thread stops serving */
    if (srv->pidfd >= 0) {
        bool gone = false;
        if (reason == VMMU_EDEAD)
            gone = wait_exit(srv->pidfd, (int)srv->timeout_ms);
        if (!gone) {
            syscall(SYS_pidfd_send_signal, srv->pidfd, SIGKILL, NULL, 0);
            wait_exit(srv->pidfd, 10000);
        }
    }
    atomic_store(&srv->dead, reason);
    /* Wake every vCPU sleeping on this server. */
    for (unsigned i = 0; i < srv->dm->nslots; i++)
        if (srv->resp_peer[i] >= 0)
            vmmu__dm_chan_notify(srv->resp_peer[i]);
}

int vmmu__dm_check_ack(const void *buf, size_t len, uint64_t acked, uint64_t sent, uint64_t *seq)
{
    struct vmmu_dm_msg m;
    if (len != sizeof(m))
        return VMMU_EPROTO;
    memcpy(&m, buf, sizeof(m));
    if (m.type != VMMU_DM_MSG_INVALIDATE_ACK || m.flags || m.gpa || m.size)
        return VMMU_EPROTO;
    if (m.seq <= acked || m.seq > sent)
        return VMMU_EPROTO; /* an answer to an invalidation never made, or repeated */
    *seq = m.seq;
    return 0;
}

/* ---- the region table ------------------------------------------------------- */

static void publish_regions(struct vmmu_dm_server *srv)
{
    struct vmmu_dm_region_table *t = srv->regions;
    uint32_t seq = srv->region_seq + 1; /* odd: being rewritten */
    __atomic_store_n(&t->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (unsigned i = 0; i < srv->npriv; i++) {
        const struct vmmu_dm_region_ent *p = &srv->priv_regions[i];
        struct vmmu_dm_region_ent *e = &srv->region_ent[i];
        __atomic_store_n(&e->gpa, p->gpa, __ATOMIC_RELAXED);
        __atomic_store_n(&e->size, p->size, __ATOMIC_RELAXED);
        __atomic_store_n(&e->memfd_offset, p->memfd_offset, __ATOMIC_RELAXED);
        __atomic_store_n(&e->flags, p->flags, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&t->count, srv->npriv, __ATOMIC_RELAXED);
    __atomic_store_n(&t->generation, vmmu_p2m_generation(srv->dm->vm), __ATOMIC_RELAXED);
    srv->region_seq = seq + 1;
    __atomic_store_n(&t->seq, seq + 1, __ATOMIC_RELEASE);
}

/* Every RAM/ROM region vmmu allocated, found by walking the radix tree
 * without the vm's lock: this runs on vCPU threads (a device access that
 * notices a new P2M generation), which must never wait for the lock a P2M
 * change holds while it waits for them.  Holes are skipped a whole tree
 * slot at a time, so the walk costs about one step per region or slot.
 *
 * Regions with paged-out pages are left out whole: the memfd holds zeros
 * at a paged-out page, and a write there would be lost when the page comes
 * back.  A device model asks for what it needs of them over its service
 * socket (pagein.c), one mapping at a time; leaving them out whole keeps
 * the table as small as the region list, however scattered the pages the
 * pager took.  (A page-out marks its page before it invalidates device
 * models, which punches the page out of their tables under dm->lock, held
 * here: either this walk sees the mark or the punch comes after it.) */
static unsigned collect_regions(const struct vmmu_vm *vm, struct vmmu_dm_region_ent *out,
                                unsigned max, uint32_t *max_id)
{
    unsigned n = 0;
    *max_id = 0;
    for (uint64_t gfn = 0, end; gfn < vm->p2m.gfn_limit && n < max; gfn = end) {
        const struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, &end);
        if (!r || !r->host_owned || (r->type != VMMU_MEM_RAM && r->type != VMMU_MEM_ROM))
            continue;
        if (r->id > *max_id)
            *max_id = r->id;
        if (atomic_load_explicit(&((struct vmmu_region *)r)->paged_out, memory_order_acquire))
            continue;
        out[n++] = (struct vmmu_dm_region_ent){
            .gpa = r->gfn << VMMU_PAGE_SHIFT,
            .size = r->npages << VMMU_PAGE_SHIFT,
            .memfd_offset = r->memfd_offset,
            .flags = r->type == VMMU_MEM_RAM ? VMMU_DM_REGION_WRITABLE : 0,
        };
    }
    return n;
}

void vmmu__dm_refresh_regions_locked(struct vmmu_dm *dm)
{
    /* Read before the walk: a change after these reads is seen next time. */
    uint64_t gen = vmmu_p2m_generation(dm->vm);
    uint64_t resident =
        atomic_load_explicit(&dm->vm->p2m.resident_regions, memory_order_acquire);
    struct vmmu_dm_region_ent *ent = vmmu__malloc(256 * sizeof(*ent));
    if (!ent)
        return; /* try again on the next access */
    uint32_t max_id;
    /* A read-side section on a host thread (a host port access): the
     * walk reads nodes and regions a change may retire. */
    unsigned section = vmmu__read_begin();
    unsigned n = collect_regions(dm->vm, ent, 256, &max_id);
    vmmu__read_end(section);
    int memfd = vmmu_vm_memfd(dm->vm);
    bool again = false;
    for (unsigned i = 0; i < dm->nservers; i++) {
        struct vmmu_dm_server *srv = dm->servers[i];
        if (!srv->remote || atomic_load(&srv->dead))
            continue;
        if (!srv->memfd_sent && memfd >= 0) {
            /* Never a wait under dm->lock (a vCPU's device access takes
             * it): a device model that does not read gets it at a later
             * refresh, or is declared dead by the invalidation it leaves
             * unread. */
            struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_MEMFD};
            int err = vmmu__dm_send_msg(srv, &m, &memfd, 1, false);
            if (err == 0)
                srv->memfd_sent = true;
            else if (err == VMMU_EBUSY)
                again = true;
        }
        srv->npriv = n < srv->max_regions ? n : srv->max_regions;
        memcpy(srv->priv_regions, ent, srv->npriv * sizeof(ent[0]));
        publish_regions(srv);
    }
    free(ent);
    atomic_store_explicit(&dm->seen_max_region, max_id, memory_order_relaxed);
    if (again)
        gen--; /* no generation seen: the next device access refreshes again */
    atomic_store_explicit(&dm->seen_generation, gen, memory_order_relaxed);
    atomic_store_explicit(&dm->seen_resident, resident, memory_order_relaxed);
}

void vmmu__dm_regions_punch(struct vmmu_dm_server *srv, uint64_t gpa, uint64_t size)
{
    uint64_t end = gpa + size;
    struct vmmu_dm_region_ent out[256 + 2];
    unsigned n = 0;
    for (unsigned i = 0; i < srv->npriv; i++) {
        struct vmmu_dm_region_ent e = srv->priv_regions[i];
        uint64_t e_end = e.gpa + e.size;
        if (e_end <= gpa || e.gpa >= end) {
            out[n++] = e;
            continue;
        }
        if (e.gpa < gpa) /* the part below the hole */
            out[n++] = (struct vmmu_dm_region_ent){e.gpa, gpa - e.gpa, e.memfd_offset, e.flags, 0};
        if (e_end > end) /* the part above it */
            out[n++] = (struct vmmu_dm_region_ent){end, e_end - end,
                                                   e.memfd_offset + (end - e.gpa), e.flags, 0};
    }
    if (n > srv->max_regions)
        n = srv->max_regions; /* the tail is unmappable until the next refresh: safe side */
    memcpy(srv->priv_regions, out, n * sizeof(out[0]));
    srv->npriv = n;
    publish_regions(srv);
}

/* ---- set-up and tear-down --------------------------------------------------- */

int vmmu__dm_remote_init(struct vmmu_dm_server *srv, int sock,
                         const struct vmmu_dm_remote_config *cfg)
{
    struct vmmu_dm *dm = srv->dm;
    unsigned ring = cfg ? cfg->ring_entries : 0;
    unsigned max_regions = cfg && cfg->max_regions ? cfg->max_regions : 64;
    /* (The deadline is also a poll() timeout in milliseconds: an int.) */
    /* A pid that is this process, or none at all, would have the
     * server's death kill this process or nothing: refused. */
    if ((ring & (ring - 1)) || ring > 4096 || max_regions > 256 ||
        (cfg && cfg->timeout_ms > INT_MAX) || (cfg && (cfg->pid < 0 || cfg->pid == getpid())))
        return VMMU_EINVAL;
    srv->timeout_ms = cfg && cfg->timeout_ms ? cfg->timeout_ms : 5000;
    srv->wait_us = cfg ? cfg->wait_us : 0;
    srv->ring_entries = ring;
    srv->max_regions = max_regions;
    srv->priv_regions = vmmu__calloc(max_regions, sizeof(*srv->priv_regions));
    if (!srv->priv_regions)
        return VMMU_ENOMEM;

    uint64_t slots_off = align_up(sizeof(struct vmmu_dm_shared), 64);
    uint64_t ring_off = align_up(slots_off + dm->nslots * sizeof(struct vmmu_dm_slot), 64);
    uint64_t ring_bytes = ring ? sizeof(struct vmmu_dm_ring) + ring * sizeof(struct vmmu_dm_bufreq) : 0;
    uint64_t regions_off = align_up(ring_off + ring_bytes, 64);
    uint64_t size = align_up(regions_off + sizeof(struct vmmu_dm_region_table) +
                                 max_regions * sizeof(struct vmmu_dm_region_ent),
                             4096);
    /* Sealed at its size: the device model maps it too, and could
     * otherwise shrink it under the vm's stores (SIGBUS). */
    srv->shm_fd = memfd_create("vmmu-dm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (srv->shm_fd < 0 || ftruncate(srv->shm_fd, (off_t)size) != 0 ||
        fcntl(srv->shm_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        return VMMU_ESYS;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, srv->shm_fd, 0);
    if (p == MAP_FAILED)
        return VMMU_ESYS;
    srv->shared = p;
    srv->shared_size = size;
    struct vmmu_dm_shared *h = p;
    *h = (struct vmmu_dm_shared){
        .magic = VMMU_DM_PROTO_MAGIC,
        .version = VMMU_DM_PROTO_VERSION,
        .nslots = dm->nslots,
        .ring_entries = ring,
        .max_regions = max_regions,
        .slots_offset = slots_off,
        .ring_offset = ring ? ring_off : 0,
        .regions_offset = regions_off,
        .size = size,
    };
    srv->slots = (struct vmmu_dm_slot *)((char *)p + slots_off);
    if (ring) {
        srv->ring = (struct vmmu_dm_ring *)((char *)p + ring_off);
        srv->ring_ent = (struct vmmu_dm_bufreq *)(srv->ring + 1);
    }
    srv->regions = (struct vmmu_dm_region_table *)((char *)p + regions_off);
    srv->region_ent = (struct vmmu_dm_region_ent *)(srv->regions + 1);

    /* Whose process is it? */
    pid_t pid = cfg ? cfg->pid : 0;
    if (!pid) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid != getpid())
            pid = cred.pid; /* a socketpair's peer is ourselves: no process to watch */
    }
    if (pid > 0) {
        srv->pid = pid;
        srv->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        /* A pid given that names no process (ESRCH; EINVAL: a thread
         * that leads no process) is a mistake; a kernel without pidfds
         * (ENOSYS) leaves the server unwatched, as an unknown pid does. */
        if (srv->pidfd < 0 && cfg && cfg->pid && errno != ENOSYS)
            return VMMU_EINVAL;
    }

    /* The bitmap in which it reports the pages it writes (the dirty log). */
    struct vmmu_dev_dirty *dirty = vmmu__dev_dirty_get(dm->vm);
    if (!dirty)
        return errno == ENOMEM ? VMMU_ENOMEM : VMMU_ESYS;

    /* The kick channel and the service socket: the vm keeps one end of
     * each, the device model gets the other. */
    int kick[2];
    if (vmmu__dm_chan_open(kick) != 0)
        return VMMU_ESYS;
    srv->kick_fd = kick[0];
    int svc[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, svc) != 0) {
        close(kick[1]);
        return VMMU_ESYS;
    }
    srv->svc_sock = svc[0];

    int fds[VMMU_DM_HELLO_MAX_FDS];
    unsigned nfds = 0;
    fds[nfds++] = srv->shm_fd;
    fds[nfds++] = kick[1];
    for (unsigned i = 0; i < dm->nslots; i++)
        fds[nfds++] = srv->resp_peer[i];
    fds[nfds++] = svc[1];
    int memfd = vmmu_vm_memfd(dm->vm);
    struct vmmu_dm_msg hello = {.type = VMMU_DM_MSG_HELLO, .seq = dm->nslots, .gpa = size};
    if (memfd >= 0) {
        fds[nfds++] = memfd;
        hello.flags = VMMU_DM_HELLO_MEMFD;
        srv->memfd_sent = true;
    }
    fds[nfds++] = dirty->fd;
    hello.flags |= VMMU_DM_HELLO_DIRTY;
    int err = vmmu__dm_send_msg(srv, &hello, fds, nfds, true);
    close(svc[1]);
    close(kick[1]);
    if (err)
        return err == VMMU_ETIMEDOUT ? VMMU_EDEAD : err;
    return vmmu__dm_service_start(srv);
}

void vmmu__dm_remote_fini(struct vmmu_dm_server *srv)
{
    vmmu__dm_service_stop(srv);
    if (srv->shared)
        munmap(srv->shared, srv->shared_size);
    if (srv->shm_fd >= 0)
        close(srv->shm_fd);
    if (srv->kick_fd >= 0)
        close(srv->kick_fd);
    if (srv->sock >= 0)
        close(srv->sock);
    if (srv->pidfd >= 0)
        close(srv->pidfd);
    free(srv->priv_regions);
}
