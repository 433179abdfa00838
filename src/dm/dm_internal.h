/* SPDX-License-Identifier: MIT */
/*
 * Inside the device-model layer (vm side).  Not installed.
 *
 * Objects.  One struct vmmu_dm per vm holds the servers, the tables that
 * route MMIO regions and port ranges to them, one record per vCPU (its
 * outstanding request and its invalidation flag) and the invalidation
 * sequence.  Every server, in-process or not, has nslots request slots in
 * the layout of vmmu/dmproto.h: shared memory for an out-of-process
 * server, private memory for an in-process one (used only when a callback
 * pends), and one response eventfd per slot.
 *
 * Ownership.  A vCPU's record is written only by the thread running that
 * vCPU; the host's record, one per server, only under that server's
 * host_lock.  Slot words are
 * shared with the device model and read with atomics; anything read from
 * a remote slot is validated before use.  Routing tables are immutable
 * snapshots swapped under dm->lock and freed after a grace period.
 */
#ifndef VMMU_DM_INTERNAL_H
#define VMMU_DM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmmu/dm.h"
#include "vmmu/error.h"

struct vmmu_dm_server;

/* A routed range: an MMIO region or a port range.  @srv is NULL once the
 * range is an orphan: its server was destroyed while the tables could not
 * be rebuilt without it (out of memory), so the range routes nowhere until
 * a later rebuild drops it (dm.c). */
struct dm_range {
    struct vmmu_dm_server *_Atomic srv;
    uint64_t start, count; /* gpa and bytes, or port and ports */
    uint32_t region_id;    /* MMIO: the DEVICE region; 0 for ports */
    unsigned flags;        /* VMMU_DM_RANGE_* */
    void *opaque;
};

/* Immutable routing snapshot, sorted by key (region id or port). */
struct dm_table {
    unsigned n;
    struct dm_range *r[];
};

#define DM_MAX_RANGES 256u
/* Invalidations whose send time a server keeps (struct vmmu_dm_server). */
#define DM_INVAL_CLOCKS 64u
#define DM_MAX_PORT_RANGES 64u

/* What a vCPU (or the host) has outstanding.  Owned by its thread. */
struct dm_vcpu {
    /* Set (to 1) by an asynchronous invalidation that this vCPU must wait
     * for; read with a relaxed load at every safe point.  Alone on its
     * cache line so the safe point reads a line no other vCPU writes. */
    _Alignas(64) uint32_t inval_flag;
    _Alignas(64) struct vmmu_dm_server *srv; /* NULL: nothing outstanding */
    uint32_t seq;        /* of the outstanding request */
    uint32_t next_seq;
    uint8_t space, write, size;
    uint64_t addr, wdata;
    uint64_t deadline_ns;
};

struct vmmu_dm {
    struct vmmu_vm *vm;
    unsigned max_vcpus, nslots; /* nslots = max_vcpus + 1; the last is the host's */

    pthread_mutex_t lock; /* servers list, routing tables, region tables */
    struct vmmu_dm_server **servers;
    unsigned nservers, cap;
    struct dm_table *_Atomic mmio; /* keyed by region id */
    struct dm_table *_Atomic ports; /* keyed by port */
    _Atomic uint64_t seen_generation; /* P2M generation the region tables reflect */
    _Atomic uint64_t seen_resident;    /* and its count of regions wholly resident again */
    /* The largest id of a RAM/ROM region present when the tables were last
     * built (ids only grow, until they wrap after 4 billion adds: a region
     * with a larger one is newer than the tables, and no page-in answer
     * reveals it; pagein.c). */
    _Atomic uint32_t seen_max_region;

    struct dm_vcpu *vcpu; /* max_vcpus records (and one unused: the host's are per server) */

    /* Invalidation: posted and completed sequence numbers. */
    pthread_mutex_t inval_lock;
    _Atomic uint64_t inval_posted, inval_done;
};

/* A private slot state an in-process completer holds while it writes the
 * answer (vmmu_dm_complete()); the vCPU waits it out before it gives the
 * slot back (ioreq.c). */
#define DM_SLOT_COMPLETING 0x100u

struct vmmu_dm_server {
    struct vmmu_dm *dm;
    bool remote;
    struct vmmu_dm_ops ops; /* in-process */
    void *opaque;

    /* Slots: the shared page (remote) or private memory (in-process). */
    void *shared;
    size_t shared_size;
    int shm_fd;
    struct vmmu_dm_slot *slots;
    struct vmmu_dm_ring *ring;
    struct vmmu_dm_bufreq *ring_ent;
    unsigned ring_entries;
    uint32_t ring_prod;        /* private producer index, under ring_lock */
    pthread_mutex_t ring_lock; /* producers of the ring */
    struct vmmu_dm_region_table *regions;
    struct vmmu_dm_region_ent *region_ent;
    unsigned max_regions;
    uint32_t region_seq; /* private copy: never read back from shared memory */
    struct vmmu_dm_region_ent *priv_regions; /* what we published, max_regions entries */
    unsigned npriv;
    /* Wake-up channels (see vmmu__dm_chan_open()): per slot, the end the
     * vm waits on and the device model's end, which the vm keeps too (to
     * wake its own waiters when the server dies); the vm's end of the kick
     * channel (remote servers: the device model's end went with HELLO). */
    int *resp_fd, *resp_peer;
    int kick_fd;

    int sock;
    /* The service socket (PAGE_IN requests, pagein.c) and its thread. */
    int svc_sock;
    pthread_t svc_thread;
    bool svc_started;
    int pidfd;
    pid_t pid;
    bool memfd_sent;
    unsigned timeout_ms, wait_us;

    /* Bytes of a partly received message (under dm->inval_lock). */
    uint8_t rx[sizeof(struct vmmu_dm_msg)];
    unsigned rx_len;

    /* Invalidation progress (under dm->inval_lock). */
    uint64_t inval_sent, inval_acked;
    uint64_t inval_sent_ns; /* when the oldest unacknowledged one was sent */
    uint64_t inval_busy_base; /* svc_busy_ns at inval_sent_ns */
    /* When each of the last DM_INVAL_CLOCKS invalidations was sent (by
     * sequence number modulo that), and svc_busy_ns then: after a partial
     * acknowledgement the deadline runs from the next one's. */
    struct {
        uint64_t ns, busy;
    } inval_clock[DM_INVAL_CLOCKS];
    /* The service thread's time paging memory in for PAGE_IN requests
     * (finished page-ins), and when the one under way began (0: none), in
     * vmmu__dm_now_ns() time.  A device model waiting for an answer
     * acknowledges nothing, so that time does not count against its
     * deadline (inval.c, pagein.c). */
    _Atomic uint64_t svc_busy_ns, svc_busy_since;

    /* Threads using this server that may be offline while they do (every
     * access, which may wait offline for its answer or kill the server,
     * and vmmu_dm_vcpu_wait()), so that no grace period covers them.  A
     * waiter counts itself in while still online, before it first looks
     * at the slot, and out after its last use of the server;
     * vmmu_dm_server_destroy() kills the server (which wakes them), waits
     * for the count to reach zero, and only then frees it. */
    _Atomic unsigned waiters;

    /* Host accesses (the last slot) to this server, one at a time: the
     * holder of host_lock owns the slot and @host, the host's record for
     * this server.  Per server, so that a host access waiting for a slow
     * device model holds up no host access to another server, and a
     * callback serving a host access may make one to another server.
     * host_owner is the holding thread while host_held is set: a host
     * access to this server from inside that access (its callback) would
     * wait for itself, and is refused instead (ioreq.c). */
    pthread_mutex_t host_lock;
    _Atomic bool host_held;
    _Atomic(pthread_t) host_owner;
    struct dm_vcpu *host;

    _Atomic int dead;        /* 0, or the reason (VMMU_EDEAD, VMMU_ETIMEDOUT, VMMU_EPROTO) */
    _Atomic int dead_claimed;
    _Atomic uint64_t st_requests, st_pending, st_buffered, st_proto, st_inval, st_pageins;
};

uint64_t vmmu__dm_now_ns(void);
/* Wake-up channels between the vm and a device model: a datagram socket
 * pair, each end used only with MSG_DONTWAIT.  Not eventfds: both sides
 * of an eventfd share one open file, so a device model could clear its
 * O_NONBLOCK or fill its counter and hang the vm in a write or a read;
 * a flag on a call is the caller's own.  Returns 0 or VMMU_ESYS. */
int vmmu__dm_chan_open(int fds[2]);
/* Send one wake-up on @fd; a full queue already holds one. */
void vmmu__dm_chan_notify(int fd);
/* Take the wake-ups queued on @fd (a bounded number: a device model that
 * keeps sending cannot hold the caller here). */
void vmmu__dm_chan_drain(int fd);

/* Declare @srv dead for @reason: hang up, kill and wait for its process if
 * known, wake every waiter.  Idempotent; safe from any thread. */
void vmmu__dm_server_kill(struct vmmu_dm_server *srv, int reason);

/* Serve one access routed to @srv on slot @slot (vCPU id, or nslots-1 for
 * the host).  @req->data carries a write's value and receives a read's.
 * The caller holds @srv among its waiters (route() in dm.c). */
int vmmu__dm_server_access(struct vmmu_dm_server *srv, unsigned slot, const struct dm_range *range,
                           struct vmmu_dm_ioreq *req);

/* Remote servers: set up the shared page and say hello; publish the region
 * table; drop an invalidated range from the table. */
int vmmu__dm_remote_init(struct vmmu_dm_server *srv, int sock,
                         const struct vmmu_dm_remote_config *cfg);
void vmmu__dm_remote_fini(struct vmmu_dm_server *srv);
void vmmu__dm_refresh_regions_locked(struct vmmu_dm *dm);
void vmmu__dm_regions_punch(struct vmmu_dm_server *srv, uint64_t gpa, uint64_t size);
/* Send one message (and @fds).  0; VMMU_EDEAD, VMMU_EPROTO; when the
 * device model leaves no room in its socket: VMMU_EBUSY at once without
 * @wait, else VMMU_ETIMEDOUT after waiting up to its timeout. */
int vmmu__dm_send_msg(struct vmmu_dm_server *srv, const struct vmmu_dm_msg *m, const int *fds,
                      unsigned nfds, bool wait);

/* The service socket's thread (pagein.c): start it once HELLO is sent;
 * stop it (shut the socket down, join, close) before the server is freed. */
int vmmu__dm_service_start(struct vmmu_dm_server *srv);
void vmmu__dm_service_stop(struct vmmu_dm_server *srv);

/* Take dm->inval_lock, whose holder may wait for device models up to
 * their deadlines: a vCPU thread waits for it, and under it, offline (so
 * a shootdown meanwhile does not wait for the device models too), and
 * comes back online in vmmu__dm_inval_unlock(), after the unlock.
 * Returns what the unlock needs. */
struct vmmu__blocked vmmu__dm_inval_lock(struct vmmu_dm *dm);
void vmmu__dm_inval_unlock(struct vmmu_dm *dm, struct vmmu__blocked blk);

/* Check socket and pidfd without blocking: VMMU_EDEAD if the peer is gone. */
int vmmu__dm_peer_gone(struct vmmu_dm_server *srv);

/* Validate one message a device model sent on its socket.  Returns 0 for a
 * well-formed INVALIDATE_ACK whose seq lies in (acked, sent], else
 * VMMU_EPROTO.  Pure; the fuzz target calls it too. */
int vmmu__dm_check_ack(const void *buf, size_t len, uint64_t acked, uint64_t sent, uint64_t *seq);

/* Read what a device model left in a slot for the request (@seq, @size):
 * 0 with *data; VMMU_EPENDING if not answered yet; VMMU_EPROTO for a
 * mismatched sequence or status; VMMU_EDEVICE for a device error.  Pure
 * apart from the atomic loads; the fuzz target calls it too. */
int vmmu__dm_slot_read_answer(struct vmmu_dm_slot *slot, uint32_t seq, unsigned size,
                              uint64_t *data);

#endif /* VMMU_DM_INTERNAL_H */
