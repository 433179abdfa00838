/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/dm.h
 * @brief Device models, vm side: I/O request servers (in-process callbacks
 *        or out-of-process over shared memory), MMIO and port ranges, the
 *        pending/retry flow, and invalidation of device-model mappings.
 *
 * One @ref vmmu_dm per vm routes accesses: it installs the P2M device
 * handler (vmmu_p2m_set_device_handler) and owns every server.  A server
 * registers guest-physical ranges (vmmu_dm_map_mmio adds a VMMU_MEM_DEVICE
 * region for it) and x86 port ranges; vmmu_dm_port_access() serves IN/OUT.
 *
 * In-process servers answer from a callback, at once (0) or later
 * (VMMU_EPENDING, then vmmu_dm_complete() from any thread).
 * Out-of-process servers speak the protocol of vmmu/dmproto.h over a
 * connected unix socket; the device model uses vmmu/dmclient.h.
 *
 * The retry flow.  When an access returns VMMU_EPENDING the vCPU goes back
 * to its loop, may call vmmu_dm_vcpu_wait(), and re-executes the
 * instruction; the same access from the same vCPU then completes (0 and the
 * value), or fails: VMMU_EDEAD (the server died or was disconnected),
 * VMMU_ETIMEDOUT (no answer in the server's timeout; an out-of-process
 * server is then declared dead, an in-process one, whose timeout is 5 s,
 * is not), VMMU_EPROTO (a malformed answer), VMMU_EDEVICE (the device
 * model failed it).  A vCPU has at most one request outstanding: a different
 * access while one is in service fails with VMMU_EBUSY, up to that
 * request's deadline; after it the request is over (an out-of-process
 * server that let it pass is declared dead, as when the request itself
 * comes back), and the different access goes ahead.  Host accesses
 * (vcpu_id -1) never pend: they wait for the answer (a vCPU's thread that
 * makes one waits offline, so shootdowns do not wait for it meanwhile),
 * one at a time per server.
 *
 * Invalidation.  Before RAM leaves the guest, every out-of-process device
 * model must drop its mappings of it.  The layer registers on the sync
 * part's reclaim hooks, so region removal and replacement, page-out and
 * balloon do this by themselves; vmmu_dm_invalidate() is the same step for
 * changes vmmu does not see.  It returns only when each device model has
 * acknowledged or was declared dead (a dead or hung process that vmmu knows
 * the pid of is killed and reaped first, so it provably maps nothing).
 * vmmu_dm_invalidate_async() posts the same and marks the affected vCPUs;
 * each vCPU calls vmmu_dm_vcpu_safe_point() before running guest code,
 * which costs one plain load when nothing is pending.
 *
 * Death.  A server is declared dead when its socket hangs up, its process
 * exits (pidfd), or it misses a timeout (a request's or an invalidation's).
 * Its requests fail with VMMU_EDEAD (VMMU_ETIMEDOUT for the one that timed
 * out); the vm carries on.  Malformed messages are counted and ignored: a
 * device model that only lies ends up timing out.
 *
 * Threads.  Accesses and waits run on vCPU threads concurrently (each
 * vCPU id used by one thread at a time).  Creating and destroying servers
 * and mapping ranges must not race with accesses to the same ranges;
 * threads that access device ranges while others unmap them must be
 * registered readers (see vmmu/p2m.h).
 */
#ifndef VMMU_DM_H
#define VMMU_DM_H

#include <stdint.h>
#include <sys/types.h>

#include "dmproto.h"
#include "p2m.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_dm;
struct vmmu_dm_server;

/** Most vCPUs a device-model layer serves (slots are per vCPU). */
#define VMMU_DM_MAX_VCPUS (VMMU_DM_MAX_SLOTS - 1)

/** Configuration of the device-model layer.  Zero-initialise it. */
struct vmmu_dm_config {
    /** vCPU ids 0..max_vcpus-1 may make accesses; 0 selects 8. */
    unsigned max_vcpus;
};

/**
 * Create the device-model layer of @p vm and install its P2M device handler.
 * @return 0; VMMU_EINVAL (NULL, max_vcpus above VMMU_DM_MAX_VCPUS, a device
 *         handler already installed, also by another thread meanwhile);
 *         VMMU_EBUSY (from inside vmmu_region_foreach()); VMMU_ENOMEM.
 */
int vmmu_dm_create(struct vmmu_vm *vm, const struct vmmu_dm_config *cfg, struct vmmu_dm **out);

/**
 * Destroy every server (their ranges are removed), uninstall the handler
 * and free the layer.  No other thread may call the layer's functions
 * meanwhile (or after), but vCPUs and host threads may go on accessing
 * DEVICE pages: such an access is served by the layer or, once the
 * handler is gone, fails with VMMU_EDEVICE; the layer is freed only once
 * no access is inside its handler (vmmu_p2m_set_device_handler()).
 * @return 0 (NULL is a no-op); VMMU_EBUSY from inside
 *         vmmu_region_foreach() (removing the ranges takes the map's lock
 *         the callback holds), or from inside the layer's device handler
 *         or an in-process callback of one of its servers (the layer
 *         finishes the request after it): nothing done, call it again
 *         afterwards.
 */
int vmmu_dm_destroy(struct vmmu_dm *dm);

/** One I/O request as an in-process server sees it. */
struct vmmu_dm_ioreq {
    enum vmmu_dm_space space; /**< MMIO (addr is a gpa) or PIO (addr is a port) */
    uint64_t addr;
    uint64_t offset;   /**< addr minus the start of the server's range */
    unsigned size;     /**< 1, 2, 4 or 8 */
    int write;         /**< 1 for a write */
    uint64_t data;     /**< write: the value; read: set it to the answer */
    int vcpu_id;       /**< -1 for the host */
    void *range_opaque;/**< the opaque given when the range was mapped */
    uint32_t seq;      /**< which request of its vCPU this is (0 for the host's):
                            vmmu_dm_complete() answers this request only */
};

/** Callbacks of an in-process server. */
struct vmmu_dm_ops {
    /**
     * Serve one access.  Return 0 when done (reads set req->data);
     * VMMU_EPENDING to answer later with vmmu_dm_complete() (not allowed
     * for vcpu_id -1: host accesses must be answered at once); any other
     * negative value fails the access with VMMU_EDEVICE.  Called on the
     * accessing vCPU's thread, concurrently for different vCPUs.
     * It may make device accesses of its own (a bus forwarding to another
     * device), except to this server as the vCPU (or host) it serves: the
     * request in service holds that vCPU's slot here (the host's would
     * wait for itself), and such an access fails with VMMU_EBUSY.  A
     * vCPU has one request outstanding: if a nested access of the same
     * vCPU to another server pends, this one must not, or the access it
     * serves fails with VMMU_EBUSY (the nested request stays the vCPU's,
     * answered and re-executed as usual; an answer to this one is turned
     * away).
     */
    int (*access)(void *opaque, struct vmmu_dm_ioreq *req);
};

/** Options of an out-of-process server.  Zero-initialise it. */
struct vmmu_dm_remote_config {
    /** Per-request and per-invalidation deadline in milliseconds; 0
     *  selects 5000, at most INT_MAX (about 24 days).  A server that
     *  misses it is declared dead. */
    unsigned timeout_ms;
    /** How long an access waits for the answer on the vCPU before it
     *  returns VMMU_EPENDING, in microseconds.  0: no waiting, the access
     *  pends unless the answer is already there when it looks (a device
     *  model woken by the request may answer that fast).
     *  The vm spins briefly, then sleeps in poll(). */
    unsigned wait_us;
    /** Entries of the buffered-write ring (power of two, at most 4096);
     *  0: no ring, every write waits for its answer. */
    unsigned ring_entries;
    /** Capacity of the region table shared with the device model; 0
     *  selects 64, at most 256. */
    unsigned max_regions;
    /** The device model's process, if known (else 0: the socket's peer
     *  credentials are used, unless the peer is this process).  A
     *  negative pid, this process's own, or one that names no process is
     *  refused (VMMU_EINVAL): the process named here is the one killed
     *  when the server dies.  Watched
     *  through a pidfd.  A server is marked dead only after that process
     *  exited, so that it provably maps nothing: one that hung or missed a
     *  deadline is killed (SIGKILL) at once, one that hung up gets
     *  timeout_ms to exit on its own first.  The caller still reaps it
     *  (waitpid) if it is the caller's child. */
    pid_t pid;
};

/**
 * Create an in-process server.
 * @return 0; VMMU_EINVAL (NULL, no access callback); VMMU_ENOMEM;
 *         VMMU_ESYS (its wake-up channel could not be made: out of
 *         descriptors); VMMU_EBUSY (called from inside a
 *         vmmu_region_foreach() callback).  On failure nothing is created.
 */
int vmmu_dm_server_create_inproc(struct vmmu_dm *dm, const struct vmmu_dm_ops *ops,
                                 void *opaque, struct vmmu_dm_server **out);

/**
 * Create an out-of-process server on a connected unix stream socket
 * @p sock (the vm's end; vmmu owns it from now on, even on failure) and
 * send the HELLO with the shared page, wake-up channels and the vm's memfd.
 * The device model can map the RAM and ROM regions vmmu allocated (added
 * without a host pointer: they live in the vm's memfd); regions backed by
 * the caller's memory are not shared with it, and its maps there fail.
 *
 * Trust.  vmmu protects itself from the device model: nothing it sends
 * or writes in the shared page can crash vmmu or corrupt its memory, and
 * one that misses a deadline is declared dead (killed first, if its pid
 * is known).  vmmu does not protect guest memory from it: the memfd is
 * handed over whole and writable, so a hostile device model can read and
 * write all that RAM, write ROM, and keep writing through a mapping it
 * was told to drop (into a span a later region reuses).  Read-only ROM,
 * the region table and invalidations bind only a device model that
 * follows the protocol (the client library does).  Connect a device
 * model you do not trust with the guest's memory only to a vm whose
 * memory it may see anyway, or keep that memory out of the memfd (host
 * pointers), or serve the device in-process.  See docs/devices.md,
 * Robustness.
 * @return 0; VMMU_EINVAL (NULL @p dm or @p out, a bad socket: not an open
 *         descriptor, not a socket, not a unix stream socket, or not
 *         connected; or @p cfg out of its limits); VMMU_ENOMEM; VMMU_ESYS
 *         (memfd, socketpair, mmap, sendmsg failed); VMMU_EDEAD (the peer
 *         of a connected socket already hung up); VMMU_EBUSY (called from
 *         inside a vmmu_region_foreach() callback).  On any failure nothing
 *         is created and @p sock is closed, unless it was not an open
 *         descriptor.
 */
int vmmu_dm_server_create_remote(struct vmmu_dm *dm, int sock,
                                 const struct vmmu_dm_remote_config *cfg,
                                 struct vmmu_dm_server **out);

/**
 * Remove a server's ranges and free it.  Requests in flight are dropped:
 * their vCPUs have nothing outstanding any more, and a re-executed access
 * finds no server (VMMU_ENOENT for a port; the MMIO range is no longer a
 * DEVICE page); an access whose in-process callback was running when the
 * destroy began and then pends fails with VMMU_EDEAD instead.  An out-of-process server's socket is shut down and its
 * process, if known, is given the server's timeout to exit before it is
 * killed.  No access to its ranges may be starting, but threads may be
 * waiting for its answers: a host access waiting up to its deadline fails
 * with VMMU_EDEAD, and vmmu_dm_vcpu_wait() returns 0 (re-execute); the
 * server is freed only after they have left it (this call waits for them,
 * offline).  Never fails for want of memory: its ranges then stay in the
 * routing tables, routing nowhere, until they are next rebuilt.
 * @return 0 (NULL is a no-op); VMMU_EBUSY from inside
 *         vmmu_region_foreach(), or from inside this server's own
 *         in-process callback (the request is finished after it): nothing
 *         done, call it again afterwards.
 */
int vmmu_dm_server_destroy(struct vmmu_dm_server *srv);

/** Buffered range: writes are posted to the ring and complete at once. */
#define VMMU_DM_RANGE_BUFFERED (1u << 0)

/**
 * Route guest-physical [gpa, gpa + size) to @p srv: adds a VMMU_MEM_DEVICE
 * region (page aligned, as vmmu_region_add()).  vmmu_region_remove() of
 * that region unmaps the range (it then no longer counts toward the
 * limit below); destroying the server unmaps all of its ranges.
 * @param flags VMMU_DM_RANGE_BUFFERED or 0 (buffered needs a ring).
 * @param range_opaque handed to in-process callbacks.
 * @param region_id receives the region id; may be NULL.
 * @return 0 or what vmmu_region_add() returns; VMMU_EINVAL for unknown flags;
 *         VMMU_ELIMIT (256 MMIO ranges in the layer; no region is added).
 */
int vmmu_dm_map_mmio(struct vmmu_dm_server *srv, uint64_t gpa, uint64_t size, unsigned flags,
                     void *range_opaque, uint32_t *region_id);

/**
 * Route x86 ports [port, port + count) to @p srv.
 * @return 0; VMMU_EINVAL (count 0, beyond port 0xffff, unknown flags);
 *         VMMU_EOVERLAP (another range covers a port); VMMU_ELIMIT (64 ranges);
 *         VMMU_ENOMEM.
 */
int vmmu_dm_map_ports(struct vmmu_dm_server *srv, uint16_t port, uint32_t count, unsigned flags,
                      void *range_opaque);

/**
 * Serve an x86 IN or OUT: @p size 1, 2 or 4 bytes at @p port (the access
 * must lie inside one range).  Same results as the MMIO path (0,
 * VMMU_EPENDING and retry, VMMU_EDEAD ...); VMMU_ENOENT when no server has
 * the port (the emulator then reads all-ones / drops the write).
 * @param data write: the value; read: receives it (zero-extended).
 * @return as above; VMMU_EINVAL (NULL @p dm or @p data, @p size not 1, 2
 *         or 4, an access running past the end of its range, @p vcpu_id
 *         neither -1 nor below the layer's max_vcpus); VMMU_EBUSY (as
 *         above, or an access to a server from inside its in-process
 *         callback serving the same vCPU, or the host).
 */
int vmmu_dm_port_access(struct vmmu_dm *dm, int vcpu_id, uint16_t port, unsigned size, int write,
                        uint64_t *data);

/**
 * Answer a request an in-process callback left pending (any thread).
 * @param req the request as the callback saw it (a copy: its vCPU and its
 *        sequence number say which request this answers).  A request that
 *        timed out is over: an answer to it finds nothing, even when its
 *        vCPU has made another request since (that one is not answered).
 * @param status 0, or a negative value to fail the access (VMMU_EDEVICE).
 * @return 0; VMMU_EINVAL (NULL, not an in-process server, bad vcpu id);
 *         VMMU_ENOENT (that request is not pending on @p srv: answered
 *         already, timed out, or never left pending).
 */
int vmmu_dm_complete(struct vmmu_dm_server *srv, const struct vmmu_dm_ioreq *req, uint64_t data,
                     int status);

/**
 * Block until the request vCPU @p vcpu_id has outstanding is answered, its
 * server dies, or @p timeout_ms passes (-1, or any negative value: the
 * server's own deadline).
 * Call it at a safe point: while it sleeps, the calling thread's online
 * vCPU (if any) is offline, so shootdowns, P2M changes and split locks do
 * not wait for the device model; it acts on what arrived meanwhile before
 * it returns (as vmmu_vcpu_online() does).
 * Returns 0 when the vCPU should re-execute (answer ready, failure to
 * report, or nothing outstanding); VMMU_ETIMEDOUT when @p timeout_ms ran
 * out first; VMMU_EINVAL.
 */
int vmmu_dm_vcpu_wait(struct vmmu_dm *dm, int vcpu_id, int timeout_ms);

/**
 * Invalidate device-model mappings of [gpa, gpa + size): send an
 * invalidation to every live out-of-process server and return when each
 * acknowledged or was declared dead.  Call it after the range is
 * unpublished from the P2M and before its host pages are reused.  On a
 * thread whose vCPU is online the vCPU waits offline (as in
 * vmmu_dm_vcpu_wait()), so shootdowns do not wait for the device models;
 * it is no safe point: as after a page-in that waits, the vCPU's prepared
 * accesses stay valid and look their pages up again, and its probe
 * pointers may be stale (vmmu/access.h, "Host pointers").  The same holds
 * for vmmu_dm_invalidate_async(), vmmu_dm_invalidate_wait() and the
 * safe-point wait, and for region removal and page-outs, which
 * invalidate this way.
 * @return 0; VMMU_EINVAL; VMMU_EBUSY (from a page-in handler serving a
 *         device model, which would wait for itself: see vmmu_pagein_fn).
 */
int vmmu_dm_invalidate(struct vmmu_dm *dm, uint64_t gpa, uint64_t size);

/**
 * Post the invalidation and return at once; every vCPU is marked so that
 * vmmu_dm_vcpu_safe_point() holds it until the invalidation completes.
 * @param ticket receives a number for vmmu_dm_invalidate_wait(); may be NULL.
 * @return 0; VMMU_EINVAL; VMMU_EBUSY (as vmmu_dm_invalidate()).
 */
int vmmu_dm_invalidate_async(struct vmmu_dm *dm, uint64_t gpa, uint64_t size, uint64_t *ticket);

/** Wait until the invalidation @p ticket (and every earlier one) completed.
 *  0, VMMU_EINVAL (NULL, or a ticket vmmu_dm_invalidate_async() has not
 *  handed out yet) or VMMU_EBUSY (as vmmu_dm_invalidate(), when it would
 *  wait). */
int vmmu_dm_invalidate_wait(struct vmmu_dm *dm, uint64_t ticket);

/** Slow part of vmmu_dm_vcpu_safe_point(); do not call directly.
 *  @return as vmmu_dm_vcpu_safe_point(). */
int vmmu_dm_vcpu_safe_point_slow(struct vmmu_dm *dm, int vcpu_id);

/** Per-vCPU flag words, for vmmu_dm_vcpu_safe_point() only.  Never NULL:
 *  for a NULL @p dm or an id outside 0..max_vcpus-1 it is a word that
 *  stays 0, so such a safe point never waits. */
const uint32_t *vmmu_dm_vcpu_flags(const struct vmmu_dm *dm, int vcpu_id);

/**
 * Call on vCPU @p vcpu_id before it runs guest code: if an asynchronous
 * invalidation is pending for it, waits until every device model dropped
 * the mappings.  When nothing is pending this is one plain load of a word
 * only this vCPU's invalidations write (no atomic, no shared write).
 * @param flags vmmu_dm_vcpu_flags(dm, vcpu_id), fetched once per vCPU.
 * @return 0; VMMU_EINVAL.
 */
static inline int vmmu_dm_vcpu_safe_point(struct vmmu_dm *dm, int vcpu_id,
                                          const uint32_t *flags)
{
    /* A relaxed load is a plain load on x86 (and keeps race checkers informed). */
    if (__builtin_expect(__atomic_load_n(flags, __ATOMIC_RELAXED) == 0, 1))
        return 0;
    return vmmu_dm_vcpu_safe_point_slow(dm, vcpu_id);
}

/** Counters of one server (vmmu_dm_server_stats()). */
struct vmmu_dm_server_stats {
    uint64_t requests;      /**< accesses served (completed or failed) */
    uint64_t pending;       /**< VMMU_EPENDING returns (a re-executed access
                                 still waiting counts again) */
    uint64_t buffered;      /**< writes posted to the ring */
    uint64_t proto_errors;  /**< malformed or out-of-protocol messages ignored */
    uint64_t invalidations; /**< invalidations acknowledged */
    uint64_t page_ins;      /**< PAGE_IN requests answered (out of process) */
    int dead;               /**< 1 once declared dead */
    int dead_reason;        /**< VMMU_EDEAD (hang-up/exit), VMMU_ETIMEDOUT, VMMU_EPROTO */
};

/** Copy a server's counters.  0 or VMMU_EINVAL. */
int vmmu_dm_server_stats(const struct vmmu_dm_server *srv, struct vmmu_dm_server_stats *out);

/**
 * Check a server's socket and process for death now (accesses and
 * invalidations also notice it on their own).
 * @return 0 alive; VMMU_EDEAD dead; VMMU_EINVAL.
 */
int vmmu_dm_server_check(struct vmmu_dm_server *srv);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_DM_H */
