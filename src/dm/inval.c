/* SPDX-License-Identifier: MIT */
/*
 * Invalidating device-model mappings before RAM leaves the guest.
 *
 * Every invalidation gets a sequence number.  Posting one (under
 * inval_lock) first punches the range out of each server's region table,
 * so a device model that maps after acknowledging cannot find the range
 * again, then sends INVALIDATE{seq} to every live out-of-process server.
 * A device model acknowledges cumulatively (ACK{seq} covers everything up
 * to seq).  An invalidation is complete when every server that was live
 * when it was posted has acknowledged it or was declared dead, and a dead
 * server is declared only once its process is gone (remote.c), so at that
 * point no device model maps the range: the caller may reuse the pages.
 *
 * In-process servers are not sent anything: they reach guest memory
 * through the P2M, whose own grace period covers them.
 *
 * The asynchronous form sets every vCPU's inval_flag.  A vCPU clears its
 * flag before it reads inval_posted, and the poster publishes inval_posted
 * before it sets the flags (both with full fences), so a vCPU either sees
 * the new sequence number or finds its flag set again at its next safe
 * point: it can never run guest code past an invalidation it did not wait
 * for.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "dm/dm_internal.h"
#include "sync/sync_internal.h"

/* Start the acknowledgement deadline of @srv now. */
static void restart_clock(struct vmmu_dm_server *srv)
{
    srv->inval_sent_ns = vmmu__dm_now_ns();
    srv->inval_busy_base = atomic_load(&srv->svc_busy_ns);
}

/* When @srv is late with its acknowledgement, as of @now: its deadline
 * after the oldest unacknowledged invalidation, moved on by the time the
 * vm spent paging memory in for its PAGE_IN requests meanwhile (a device
 * model waiting for an answer acknowledges nothing), and never while such
 * a page-in is under way. */
static uint64_t ack_deadline(const struct vmmu_dm_server *srv, uint64_t now)
{
    uint64_t timeout = (uint64_t)srv->timeout_ms * 1000000ull;
    if (atomic_load(&srv->svc_busy_since))
        return now + timeout; /* looked at again within a second (wait_locked) */
    uint64_t served = atomic_load(&srv->svc_busy_ns) - srv->inval_busy_base;
    return srv->inval_sent_ns + timeout + served;
}

/* Send INVALIDATE{@seq} to @srv; a server that cannot take it is doomed. */
static void send_inval(struct vmmu_dm_server *srv, uint64_t seq, uint64_t gpa, uint64_t size,
                       struct vmmu_dm_server **doomed, int *why, unsigned *ndoomed)
{
    struct vmmu_dm_msg m = {.type = VMMU_DM_MSG_INVALIDATE, .seq = seq, .gpa = gpa, .size = size};
    int err = vmmu__dm_send_msg(srv, &m, NULL, 0, true);
    if (err && *ndoomed < 64) {
        doomed[*ndoomed] = srv;
        why[(*ndoomed)++] = err == VMMU_ETIMEDOUT ? VMMU_ETIMEDOUT : VMMU_EDEAD;
    }
}

static int post_locked(struct vmmu_dm *dm, uint64_t gpa, uint64_t size, uint64_t *seq_out)
{
    uint64_t seq = atomic_load(&dm->inval_posted) + 1;
    struct vmmu_dm_server *doomed[64];
    int why[64];
    unsigned ndoomed = 0;
    pthread_mutex_lock(&dm->lock);
    /* The servers to send to, sent to after dm->lock is released: a
     * device model that does not read its socket makes the send wait up
     * to its timeout, and a vCPU's device access takes dm->lock (to
     * refresh the region tables).  The servers cannot go away meanwhile:
     * destroying one takes inval_lock, which the caller holds, and so
     * does every other post, so the messages go out in order.  (Without
     * memory for the list, they are sent under the lock.) */
    struct vmmu_dm_server **to = vmmu__malloc((dm->nservers + 1) * sizeof(*to));
    unsigned nto = 0;
    for (unsigned i = 0; i < dm->nservers; i++) {
        struct vmmu_dm_server *srv = dm->servers[i];
        if (!srv->remote || atomic_load(&srv->dead))
            continue;
        vmmu__dm_regions_punch(srv, gpa, size);
        if (srv->inval_acked == srv->inval_sent)
            restart_clock(srv);
        srv->inval_clock[seq % DM_INVAL_CLOCKS].ns = vmmu__dm_now_ns();
        srv->inval_clock[seq % DM_INVAL_CLOCKS].busy = atomic_load(&srv->svc_busy_ns);
        srv->inval_sent = seq;
        if (to)
            to[nto++] = srv;
        else
            send_inval(srv, seq, gpa, size, doomed, why, &ndoomed);
    }
    pthread_mutex_unlock(&dm->lock);
    for (unsigned i = 0; i < nto; i++)
        send_inval(to[i], seq, gpa, size, doomed, why, &ndoomed);
    free(to);
    /* Killing may wait for a process to exit: not under dm->lock. */
    for (unsigned i = 0; i < ndoomed; i++)
        vmmu__dm_server_kill(doomed[i], why[i]);
    atomic_store(&dm->inval_posted, seq);
    *seq_out = seq;
    return 0;
}

/* Reads drain_socket() makes from one server in one pass (each takes at
 * most one message).  A device model can write garbage faster than we
 * read it; the pass then ends after this many, and wait_locked() looks at
 * the deadlines before the next one, so a flood cannot hold inval_lock
 * (and every invalidation, region removal and page-out behind it) past
 * its sender's deadline. */
#define DRAIN_BUDGET 256u

/* Read what a server sent: acknowledgements advance inval_acked; anything
 * else is counted and dropped.  End of file or an error kills it.  At most
 * DRAIN_BUDGET reads; what is left waits for the next pass. */
static void drain_socket(struct vmmu_dm_server *srv)
{
    for (unsigned reads = 0; reads < DRAIN_BUDGET; reads++) {
        ssize_t n = recv(srv->sock, srv->rx + srv->rx_len, sizeof(srv->rx) - srv->rx_len,
                         MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            vmmu__dm_server_kill(srv, VMMU_EDEAD);
            return;
        }
        srv->rx_len += (unsigned)n;
        if (srv->rx_len < sizeof(srv->rx))
            continue;
        srv->rx_len = 0;
        uint64_t seq;
        if (vmmu__dm_check_ack(srv->rx, sizeof(srv->rx), srv->inval_acked, srv->inval_sent,
                               &seq) == 0) {
            srv->inval_acked = seq;
            if (seq < srv->inval_sent && srv->inval_sent - seq < DM_INVAL_CLOCKS) {
                /* The rest are late from the deadline of the oldest of
                 * them, the one after @seq (a server is sent every
                 * invalidation from its creation on): acknowledging one
                 * at a time must not move it. */
                srv->inval_sent_ns = srv->inval_clock[(seq + 1) % DM_INVAL_CLOCKS].ns;
                srv->inval_busy_base = srv->inval_clock[(seq + 1) % DM_INVAL_CLOCKS].busy;
            } else {
                restart_clock(srv); /* none left; or too many to know: from now */
            }
            atomic_fetch_add_explicit(&srv->st_inval, 1, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&srv->st_proto, 1, memory_order_relaxed);
        }
    }
}

static int wait_locked(struct vmmu_dm *dm, uint64_t ticket)
{
    while (atomic_load(&dm->inval_done) < ticket) {
        struct pollfd pfd[64];
        struct vmmu_dm_server *who[64];
        unsigned n = 0;
        uint64_t now = vmmu__dm_now_ns(), soonest = UINT64_MAX;
        struct vmmu_dm_server *late = NULL;
        /* The server list changes only under both locks; we hold inval_lock. */
        for (unsigned i = 0; i < dm->nservers && n < 64; i++) {
            struct vmmu_dm_server *srv = dm->servers[i];
            if (!srv->remote || atomic_load(&srv->dead) || srv->inval_acked >= srv->inval_sent)
                continue;
            uint64_t deadline = ack_deadline(srv, now);
            if (deadline <= now) {
                late = srv;
                break;
            }
            if (deadline < soonest)
                soonest = deadline;
            pfd[n] = (struct pollfd){.fd = srv->sock, .events = POLLIN | POLLRDHUP};
            who[n++] = srv;
        }
        if (late) {
            vmmu__dm_server_kill(late, VMMU_ETIMEDOUT);
            continue;
        }
        if (!n) {
            atomic_store(&dm->inval_done, atomic_load(&dm->inval_posted));
            break;
        }
        uint64_t left_ms = (soonest - now + 999999) / 1000000;
        int r = poll(pfd, n, left_ms > 1000 ? 1000 : (int)left_ms);
        for (unsigned i = 0; r > 0 && i < n; i++) {
            if (pfd[i].revents & POLLIN)
                drain_socket(who[i]);
            else if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
                vmmu__dm_server_kill(who[i], VMMU_EDEAD);
        }
    }
    return 0;
}

static bool range_ok(uint64_t gpa, uint64_t size)
{
    return size && gpa + size > gpa;
}

struct vmmu__blocked vmmu__dm_inval_lock(struct vmmu_dm *dm)
{
    struct vmmu__blocked blk = vmmu__sync_block_begin();
    pthread_mutex_lock(&dm->inval_lock);
    return blk;
}

void vmmu__dm_inval_unlock(struct vmmu_dm *dm, struct vmmu__blocked blk)
{
    pthread_mutex_unlock(&dm->inval_lock);
    vmmu__sync_block_end(blk);
}

int vmmu_dm_invalidate(struct vmmu_dm *dm, uint64_t gpa, uint64_t size)
{
    if (!dm || !range_ok(gpa, size))
        return VMMU_EINVAL;
    if (vmmu__in_dm_pagein())
        return VMMU_EBUSY; /* a device model may be waiting for this page-in */
    struct vmmu__blocked blk = vmmu__dm_inval_lock(dm);
    uint64_t seq;
    post_locked(dm, gpa, size, &seq);
    wait_locked(dm, seq);
    vmmu__dm_inval_unlock(dm, blk);
    return 0;
}

int vmmu_dm_invalidate_async(struct vmmu_dm *dm, uint64_t gpa, uint64_t size, uint64_t *ticket)
{
    if (!dm || !range_ok(gpa, size))
        return VMMU_EINVAL;
    if (vmmu__in_dm_pagein())
        return VMMU_EBUSY;
    struct vmmu__blocked blk = vmmu__dm_inval_lock(dm);
    uint64_t seq;
    post_locked(dm, gpa, size, &seq);
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned i = 0; i < dm->max_vcpus; i++)
        __atomic_store_n(&dm->vcpu[i].inval_flag, 1, __ATOMIC_RELAXED);
    vmmu__dm_inval_unlock(dm, blk);
    if (ticket)
        *ticket = seq;
    return 0;
}

int vmmu_dm_invalidate_wait(struct vmmu_dm *dm, uint64_t ticket)
{
    if (!dm || ticket > atomic_load(&dm->inval_posted))
        return VMMU_EINVAL; /* no invalidation has that ticket */
    if (atomic_load(&dm->inval_done) >= ticket)
        return 0;
    if (vmmu__in_dm_pagein())
        return VMMU_EBUSY;
    struct vmmu__blocked blk = vmmu__dm_inval_lock(dm);
    wait_locked(dm, ticket);
    vmmu__dm_inval_unlock(dm, blk);
    return 0;
}

int vmmu_dm_vcpu_safe_point_slow(struct vmmu_dm *dm, int vcpu_id)
{
    if (!dm || vcpu_id < 0 || vcpu_id >= (int)dm->max_vcpus)
        return VMMU_EINVAL;
    __atomic_store_n(&dm->vcpu[vcpu_id].inval_flag, 0, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_seq_cst);
    return vmmu_dm_invalidate_wait(dm, atomic_load(&dm->inval_posted));
}

const uint32_t *vmmu_dm_vcpu_flags(const struct vmmu_dm *dm, int vcpu_id)
{
    static const uint32_t zero;
    if (!dm || vcpu_id < 0 || vcpu_id >= (int)dm->max_vcpus)
        return &zero;
    return &dm->vcpu[vcpu_id].inval_flag;
}
