/* SPDX-License-Identifier: MIT */
/*
 * One access to a server: the vCPU side of the slot state machine
 * (vmmu/dmproto.h) and of the pending/retry flow.
 *
 * A vCPU has at most one request outstanding, recorded in its private
 * struct dm_vcpu: which server, which access, which sequence number, and
 * the deadline.  The re-executed instruction presents the same access; we
 * recognise it by comparing with that record (never with what the device
 * model may have rewritten in shared memory), take the answer if there is
 * one, and free the slot.
 *
 * Worked example of a lying device model: vCPU 2 posts seq 7 (read, 4
 * bytes).  The device model writes RESPONSE into slot 3 (nobody asked) and
 * RESPONSE with resp_seq 6 into slot 2.  vCPU 3 has nothing outstanding,
 * so slot 3 is never read and is overwritten by its next request.  vCPU 2
 * sees resp_seq != 7 and fails its access with VMMU_EPROTO.  Nothing else
 * happens: no other request, no guest memory, no vm structure is touched.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/vm_internal.h"
#include "dm/dm_internal.h"
#include "sync/sync_internal.h"

/* How long a vCPU spins on the slot before it sleeps in poll(): long
 * enough to catch a device model that answers from a busy loop on the
 * other core, short enough not to matter when it does not. */
#define DM_SPIN_NS 20000ull

int vmmu__dm_slot_read_answer(struct vmmu_dm_slot *slot, uint32_t seq, unsigned size,
                              uint64_t *data)
{
    uint32_t state = __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
    if (state != VMMU_DM_SLOT_RESPONSE)
        return VMMU_EPENDING;
    /* Read each field once: the device model may be rewriting them. */
    uint32_t resp_seq = __atomic_load_n(&slot->resp_seq, __ATOMIC_RELAXED);
    uint8_t status = __atomic_load_n(&slot->status, __ATOMIC_RELAXED);
    uint64_t value = __atomic_load_n(&slot->data, __ATOMIC_RELAXED);
    if (resp_seq != seq || status > VMMU_DM_STATUS_ERROR)
        return VMMU_EPROTO;
    if (status == VMMU_DM_STATUS_ERROR)
        return VMMU_EDEVICE;
    *data = size >= 8 ? value : value & ((1ull << (size * 8)) - 1);
    return 0;
}

static bool same_access(const struct dm_vcpu *v, const struct vmmu_dm_server *srv,
                        const struct vmmu_dm_ioreq *req)
{
    return __atomic_load_n(&v->srv, __ATOMIC_RELAXED) == srv &&
           v->space == (uint8_t)req->space && v->addr == req->addr && v->size == req->size &&
           v->write == (uint8_t)req->write &&
           (!req->write || v->wdata == req->data);
}

int vmmu__dm_chan_open(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) ? VMMU_ESYS : 0;
}

void vmmu__dm_chan_notify(int fd)
{
    static const char one = 1;
    if (send(fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* EAGAIN: the queue is full, so a wake-up is pending; a device
         * model gone (its end closed) is noticed on the main socket. */
    }
}

void vmmu__dm_chan_drain(int fd)
{
    char b[16];
    for (int i = 0; i < 64 && recv(fd, b, sizeof(b), MSG_DONTWAIT) >= 0; i++) {
    }
}

static void kick(struct vmmu_dm_server *srv)
{
    vmmu__dm_chan_notify(srv->kick_fd);
}

/* Give the slot back after an answer or a failure.  A remote slot goes
 * RESPONSE -> FREE (ours to do); a slot a dead or lying device model left
 * elsewhere is simply overwritten by the next request. */
static void release(struct vmmu_dm_server *srv, struct vmmu_dm_slot *s, struct dm_vcpu *v)
{
    uint32_t expect = VMMU_DM_SLOT_RESPONSE;
    __atomic_compare_exchange_n(&s->state, &expect, VMMU_DM_SLOT_FREE, false, __ATOMIC_RELEASE,
                                __ATOMIC_RELAXED);
    if (!srv->remote) {
        /* An in-process request that timed out: take it back from a
         * completer that may still come (it then finds nothing).  One
         * that is writing its answer now is let finish first: otherwise
         * it would write after the next request took the slot, with that
         * request's sequence number, and the next request would take the
         * old answer for its own. */
        for (unsigned spins = 0;; spins++) {
            expect = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
            if (expect == DM_SLOT_COMPLETING) {
                /* A few stores away, unless its thread lost the CPU. */
                if (spins < 64)
                    __builtin_ia32_pause();
                else
                    sched_yield();
                continue;
            }
            if (expect != VMMU_DM_SLOT_IN_SERVICE && expect != VMMU_DM_SLOT_RESPONSE)
                break;
            if (__atomic_compare_exchange_n(&s->state, &expect, VMMU_DM_SLOT_FREE, false,
                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                break;
        }
    }
    __atomic_store_n(&v->srv, NULL, __ATOMIC_RELAXED);
    atomic_fetch_add_explicit(&srv->st_requests, 1, memory_order_relaxed);
}

/* Sleep until the slot changes, the server dies, or @until. */
static void wait_slot(struct vmmu_dm_server *srv, unsigned idx, uint64_t until)
{
    struct vmmu_dm_slot *s = &srv->slots[idx];
    uint64_t now = vmmu__dm_now_ns();
    uint64_t spin_end = now + (until - now < DM_SPIN_NS ? until - now : DM_SPIN_NS);
    while (now < spin_end) {
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == VMMU_DM_SLOT_RESPONSE)
            return;
        for (int i = 0; i < 64; i++)
            __builtin_ia32_pause();
        now = vmmu__dm_now_ns();
    }
    while (now < until && !atomic_load(&srv->dead) &&
           __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != VMMU_DM_SLOT_RESPONSE) {
        struct pollfd pfd[3] = {{.fd = srv->resp_fd[idx], .events = POLLIN},
                                {.fd = srv->sock, .events = POLLRDHUP},
                                {.fd = srv->pidfd, .events = POLLIN}};
        uint64_t left_us = (until - now + 999) / 1000;
        struct timespec ts = {.tv_sec = (time_t)(left_us / 1000000),
                              .tv_nsec = (long)(left_us % 1000000) * 1000};
        int n = ppoll(pfd, 3, &ts, NULL);
        if (n > 0 && (pfd[0].revents & POLLIN))
            vmmu__dm_chan_drain(srv->resp_fd[idx]);
        if (n > 0 && (pfd[1].revents | pfd[2].revents))
            vmmu__dm_server_kill(srv, VMMU_EDEAD);
        now = vmmu__dm_now_ns();
    }
}

/* The outstanding request of @v, presented again: answer, failure, or
 * still pending. */
static int finish_request(struct vmmu_dm_server *srv, unsigned idx, struct dm_vcpu *v,
                          struct vmmu_dm_ioreq *req, bool host, struct vmmu__blocked *blk,
                          bool *asleep)
{
    struct vmmu_dm_slot *s = &srv->slots[idx];
    uint64_t wait_until = vmmu__dm_now_ns() + (uint64_t)srv->wait_us * 1000ull;
    for (;;) {
        uint64_t data = 0;
        int r = vmmu__dm_slot_read_answer(s, v->seq, v->size, &data);
        if (r != VMMU_EPENDING) {
            if (r == VMMU_EPROTO)
                atomic_fetch_add_explicit(&srv->st_proto, 1, memory_order_relaxed);
            if (!r && !req->write)
                req->data = data;
            release(srv, s, v);
            return r;
        }
        int dead = atomic_load(&srv->dead);
        uint64_t now = vmmu__dm_now_ns();
        if (dead) {
            /* VMMU_ETIMEDOUT only for a request that itself went unanswered
             * past its deadline; one still within it when the server was
             * declared dead (for another request's or an invalidation's
             * timeout, or a hang-up) fails as any request in flight does. */
            release(srv, s, v);
            return dead == VMMU_ETIMEDOUT && now >= v->deadline_ns ? VMMU_ETIMEDOUT : VMMU_EDEAD;
        }
        if (now >= v->deadline_ns) {
            if (srv->remote)
                vmmu__dm_server_kill(srv, VMMU_ETIMEDOUT);
            release(srv, s, v);
            return VMMU_ETIMEDOUT;
        }
        if (!host && now >= wait_until) {
            atomic_fetch_add_explicit(&srv->st_pending, 1, memory_order_relaxed);
            return VMMU_EPENDING;
        }
        if (host) {
            /* A host request waits up to its deadline: an online vCPU of
             * the calling thread waits offline, so that shootdowns and
             * page-outs do not wait for the device model too.  It stays
             * offline until finish() is done with the server. */
            if (!*asleep) {
                *blk = vmmu__sync_block_begin();
                *asleep = true;
            }
            wait_slot(srv, idx, v->deadline_ns);
        } else {
            wait_slot(srv, idx, wait_until < v->deadline_ns ? wait_until : v->deadline_ns);
        }
    }
}

/* As finish_request().  A host access may wait offline up to its deadline,
 * beyond any grace period: it counts itself among the server's waiters
 * for the whole time (see struct vmmu_dm_server), so that a destroy that
 * kills the server meanwhile frees it only after this is done with it.
 * It comes back online only after that: coming online may park the
 * thread (an exclusive section), and the destroy must not wait for it. */
static int finish(struct vmmu_dm_server *srv, unsigned idx, struct dm_vcpu *v,
                  struct vmmu_dm_ioreq *req, bool host)
{
    struct vmmu__blocked blk = {0};
    bool asleep = false;
    if (!host)
        return finish_request(srv, idx, v, req, false, &blk, &asleep);
    atomic_fetch_add(&srv->waiters, 1);
    int r = finish_request(srv, idx, v, req, true, &blk, &asleep);
    atomic_fetch_sub_explicit(&srv->waiters, 1, memory_order_release); /* last use of srv */
    if (asleep)
        vmmu__sync_block_end(blk);
    return r;
}

static void record(struct dm_vcpu *v, struct vmmu_dm_server *srv, const struct vmmu_dm_ioreq *req)
{
    /* Sequentially consistent: against vmmu_dm_server_destroy() clearing
     * the records (see the in-process path of server_access()). */
    __atomic_store_n(&v->srv, srv, __ATOMIC_SEQ_CST);
    v->seq = ++v->next_seq;
    v->space = (uint8_t)req->space;
    v->addr = req->addr;
    v->size = (uint8_t)req->size;
    v->write = (uint8_t)req->write;
    v->wdata = req->write ? req->data : 0;
    v->deadline_ns = vmmu__dm_now_ns() + (uint64_t)srv->timeout_ms * 1000000ull;
}

/* Post a buffered write; false if the ring is full (or its consumer index
 * is impossible), in which case the write goes through a slot. */
static bool ring_post(struct vmmu_dm_server *srv, const struct vmmu_dm_ioreq *req)
{
    pthread_mutex_lock(&srv->ring_lock);
    /* Our private copy: the device model may scribble on the shared one. */
    uint32_t prod = srv->ring_prod;
    uint32_t cons = __atomic_load_n(&srv->ring->cons, __ATOMIC_ACQUIRE);
    uint32_t used = prod - cons;
    if (used > srv->ring_entries) {
        atomic_fetch_add_explicit(&srv->st_proto, 1, memory_order_relaxed);
        pthread_mutex_unlock(&srv->ring_lock);
        return false;
    }
    if (used == srv->ring_entries) {
        pthread_mutex_unlock(&srv->ring_lock);
        return false;
    }
    struct vmmu_dm_bufreq *e = &srv->ring_ent[prod & (srv->ring_entries - 1)];
    __atomic_store_n(&e->addr, req->addr, __ATOMIC_RELAXED);
    __atomic_store_n(&e->data, req->data, __ATOMIC_RELAXED);
    __atomic_store_n(&e->space, (uint8_t)req->space, __ATOMIC_RELAXED);
    __atomic_store_n(&e->size, (uint8_t)req->size, __ATOMIC_RELAXED);
    srv->ring_prod = prod + 1;
    __atomic_store_n(&srv->ring->prod, prod + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&srv->ring_lock);
    atomic_fetch_add_explicit(&srv->st_buffered, 1, memory_order_relaxed);
    kick(srv);
    return true;
}

static int server_access(struct vmmu_dm_server *srv, unsigned idx, const struct dm_range *range,
                         struct vmmu_dm_ioreq *req)
{
    struct vmmu_dm *dm = srv->dm;
    bool host = idx == dm->nslots - 1;
    struct dm_vcpu *v = host ? srv->host : &dm->vcpu[idx];

    /* vmmu_dm_server_destroy() may clear the record meanwhile (atomics). */
    struct vmmu_dm_server *old = __atomic_load_n(&v->srv, __ATOMIC_RELAXED);
    if (old) {
        if (same_access(v, srv, req))
            return finish(srv, idx, v, req, host);
        /* Something else while a request is out: allowed only once that
         * one is over (answered, failed, its server dead, or past its
         * deadline: the instruction may never come back, its range gone;
         * a remote device model that missed the deadline is declared dead,
         * as when the request itself comes back late). */
        uint32_t st = __atomic_load_n(&old->slots[idx].state, __ATOMIC_ACQUIRE);
        if (!atomic_load(&old->dead) && st != VMMU_DM_SLOT_RESPONSE) {
            if (vmmu__dm_now_ns() < v->deadline_ns)
                return VMMU_EBUSY;
            if (old->remote) {
                /* Killing waits offline: counted, as below. */
                atomic_fetch_add(&old->waiters, 1);
                vmmu__dm_server_kill(old, VMMU_ETIMEDOUT);
                release(old, &old->slots[idx], v);
                atomic_fetch_sub_explicit(&old->waiters, 1, memory_order_release);
                old = NULL;
            }
        }
        if (old)
            release(old, &old->slots[idx], v);
    }
    if (atomic_load(&srv->dead))
        return VMMU_EDEAD;

    if (!srv->remote) {
        /* The slot is in service before the callback runs: a callback that
         * hands the request to another thread may see it completed before
         * it even returns VMMU_EPENDING. */
        struct vmmu_dm_slot *s = &srv->slots[idx];
        /* The vCPU's slot here is FREE whenever it has no request on this
         * server: it leaves FREE just before the callback runs, and goes
         * back when the callback answers (or is recorded as pending).  So
         * a slot in use with nothing recorded here is this vCPU's own
         * callback on this server, further up this thread: an access from
         * inside it would take the same sequence number and free the slot
         * under the outer request, whose answer would then be lost. */
        if (!host && __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != VMMU_DM_SLOT_FREE)
            return VMMU_EBUSY;
        req->seq = 0;
        if (!host) {
            req->seq = v->next_seq + 1;
            __atomic_store_n(&s->seq, req->seq, __ATOMIC_RELAXED);
            __atomic_store_n(&s->state, VMMU_DM_SLOT_IN_SERVICE, __ATOMIC_RELEASE);
        }
        /* The callback may not destroy the server, nor the layer: both are
         * used below (struct vmmu__callback). */
        struct vmmu__callback cb = {.vm = dm->vm, .dm = dm, .server = srv};
        vmmu__callback_enter(&cb);
        int r = srv->ops.access(srv->opaque, req);
        vmmu__callback_leave(&cb);
        if (r == VMMU_EPENDING && !host && __atomic_load_n(&v->srv, __ATOMIC_RELAXED)) {
            /* The callback made an access of this vCPU to another server
             * that pends, and pends too: a vCPU has one request
             * outstanding (vmmu/dm.h).  The nested request keeps the
             * record (the vCPU had none when the callback began: see
             * above); this one fails, and its slot is free again, so that
             * an answer to it is turned away. */
            __atomic_store_n(&s->state, VMMU_DM_SLOT_FREE, __ATOMIC_RELEASE);
            return VMMU_EBUSY;
        }
        if (r == VMMU_EPENDING && !host) {
            /* Even if a completer already answered, the access pends as
             * the callback said: the answer waits for the re-execution. */
            record(v, srv, req); /* takes next_seq + 1, as the slot says */
            /* A destroy that began while the callback ran cleared the
             * records before this one existed: it would name the server
             * after it is freed.  The destroy marks the server dead before
             * it clears the records, and both sides are sequentially
             * consistent: either the destroy finds this record and clears
             * it, or this sees the server dead and takes it back. */
            if (atomic_load_explicit(&srv->dead, memory_order_seq_cst)) {
                __atomic_store_n(&v->srv, NULL, __ATOMIC_SEQ_CST);
                return VMMU_EDEAD;
            }
            atomic_fetch_add_explicit(&srv->st_pending, 1, memory_order_relaxed);
            return VMMU_EPENDING;
        }
        if (!host)
            __atomic_store_n(&s->state, VMMU_DM_SLOT_FREE, __ATOMIC_RELEASE);
        atomic_fetch_add_explicit(&srv->st_requests, 1, memory_order_relaxed);
        return r == 0 ? 0 : VMMU_EDEVICE;
    }

    if (req->write && (range->flags & VMMU_DM_RANGE_BUFFERED) && ring_post(srv, req))
        return 0;

    /* Post on our slot.  Whatever the device model left there is
     * overwritten: the slot is ours while we have nothing outstanding. */
    record(v, srv, req);
    struct vmmu_dm_slot *s = &srv->slots[idx];
    __atomic_store_n(&s->seq, v->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&s->resp_seq, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->space, (uint8_t)req->space, __ATOMIC_RELAXED);
    __atomic_store_n(&s->write, (uint8_t)req->write, __ATOMIC_RELAXED);
    __atomic_store_n(&s->size, (uint8_t)req->size, __ATOMIC_RELAXED);
    __atomic_store_n(&s->status, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->addr, req->addr, __ATOMIC_RELAXED);
    __atomic_store_n(&s->data, req->write ? req->data : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->vcpu_id, req->vcpu_id, __ATOMIC_RELAXED);
    __atomic_store_n(&s->state, VMMU_DM_SLOT_READY, __ATOMIC_RELEASE);
    kick(srv);
    return finish(srv, idx, v, req, host);
}

/* An access may go offline while it uses @srv, beyond any grace period:
 * a vCPU that finds the device model gone (or late) kills it, and killing
 * waits offline for its process; a host thread is no reader at all.  So
 * every access is counted among the server's waiters (struct
 * vmmu_dm_server) from before its first use of the server, in the
 * read-side section that found its range (route() in dm.c, which counts
 * it), to after its last; vmmu_dm_server_destroy() frees the server only
 * once none is left.  (It used to free it under a vCPU that was killing
 * it, and under a host thread between the lookup and the count.) */
/* Whether the calling thread holds @srv's host lock: it is inside a host
 * access to @srv (in its in-process callback, or in a callback that one
 * runs). */
static bool host_lock_is_mine(struct vmmu_dm_server *srv)
{
    return atomic_load(&srv->host_held) &&
           pthread_equal(atomic_load(&srv->host_owner), pthread_self());
}

/* A host access: the host slot and record of @srv are the lock holder's
 * (vmmu/dm.h: a vCPU's thread waits for them offline).
 * A callback serving a host access may make a host access to another
 * server (its lock is another), but not to this one: it would wait for
 * itself.  That one is refused with VMMU_EBUSY. */
static int host_access(struct vmmu_dm_server *srv, unsigned idx, const struct dm_range *range,
                       struct vmmu_dm_ioreq *req)
{
    if (host_lock_is_mine(srv))
        return VMMU_EBUSY;
    if (pthread_mutex_trylock(&srv->host_lock) != 0) {
        /* Another host access holds it, maybe waiting for its device
         * model up to the deadline: an online vCPU of this thread waits
         * offline, so that shootdowns and page-outs do not wait too.  It
         * comes back online with the lock held, before it uses the slot
         * (a vCPU parked meanwhile by an exclusive section holds up only
         * host accesses to this server, whose threads wait offline). */
        struct vmmu__blocked blk = vmmu__sync_block_begin();
        pthread_mutex_lock(&srv->host_lock);
        vmmu__sync_block_end(blk);
    }
    atomic_store(&srv->host_owner, pthread_self());
    atomic_store(&srv->host_held, true);
    int r = server_access(srv, idx, range, req);
    atomic_store(&srv->host_held, false);
    pthread_mutex_unlock(&srv->host_lock);
    return r;
}

int vmmu__dm_server_access(struct vmmu_dm_server *srv, unsigned idx, const struct dm_range *range,
                           struct vmmu_dm_ioreq *req)
{
    return idx == srv->dm->nslots - 1 ? host_access(srv, idx, range, req)
                                      : server_access(srv, idx, range, req);
}
