/* SPDX-License-Identifier: MIT */
/*
 * The device-model layer: routing MMIO regions and port ranges to servers,
 * in-process servers, and the vCPU side of the pending/retry flow.
 *
 * Routing.  Each DEVICE region vmmu_dm_map_mmio() adds carries no pointer
 * the layer trusts: the device handler looks its region id up in an
 * immutable, sorted snapshot (dm->mmio), so a DEVICE region someone else
 * added (with an arbitrary opaque) is simply "not ours" (VMMU_EDEVICE).
 * Snapshots are replaced under dm->lock and the old one is freed after a
 * grace period, so a vCPU thread (a registered reader) never takes a lock
 * or writes shared memory to route an access.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "dm/dm_internal.h"
#include "sync/sync_internal.h"

uint64_t vmmu__dm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- routing tables --------------------------------------------------------- */

static const struct dm_range *table_find(const struct dm_table *t, uint64_t key, bool by_region)
{
    if (!t)
        return NULL;
    unsigned lo = 0, hi = t->n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const struct dm_range *r = t->r[mid];
        uint64_t first = by_region ? r->region_id : r->start;
        uint64_t last = by_region ? r->region_id : r->start + r->count - 1;
        if (key < first)
            hi = mid;
        else if (key > last)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

/* Build a new snapshot from @old with @add inserted and @drop_srv's
 * ranges removed (either may be NULL).  Called under dm->lock. */
static struct dm_table *table_rebuild(const struct dm_table *old, struct dm_range *add,
                                      const struct vmmu_dm_server *drop_srv, bool by_region)
{
    unsigned n = old ? old->n : 0;
    struct dm_table *t = vmmu__malloc(sizeof(*t) + (n + 1) * sizeof(t->r[0]));
    if (!t)
        return NULL;
    t->n = 0;
    bool placed = !add;
    uint64_t add_key = add ? (by_region ? add->region_id : add->start) : 0;
    for (unsigned i = 0; i < n; i++) {
        struct dm_range *r = old->r[i];
        struct vmmu_dm_server *owner = atomic_load_explicit(&r->srv, memory_order_relaxed);
        if (!owner || owner == drop_srv)
            continue; /* orphans go too: table_retire() frees them */

        uint64_t key = by_region ? r->region_id : r->start;
        if (!placed && add_key < key) {
            t->r[t->n++] = add;
            placed = true;
        }
        t->r[t->n++] = r;
    }
    if (!placed)
        t->r[t->n++] = add;
    return t;
}

/* Free a snapshot nobody reads any more (after a grace period) with the
 * orphaned ranges it held: the snapshot that replaced it dropped them. */
static void table_retire(struct dm_table *t)
{
    for (unsigned i = 0; t && i < t->n; i++)
        if (!atomic_load_explicit(&t->r[i]->srv, memory_order_relaxed))
            free(t->r[i]);
    free(t);
}

/* ---- the vm's device handler ---------------------------------------------- */

/* Find the range of @slot's snapshot that holds @key and copy it to
 * @copy, its server (NULL for an orphan) held: counted among the server's
 * waiters, which vmmu_dm_server_destroy() waits for before it frees the
 * server.  A snapshot, and an orphan range with it, is freed a grace
 * period after another replaced it (a range mapped, a server destroyed),
 * and a server after a grace period and its waiters: so all of this
 * happens in one read-side section, the vCPU's when it runs online, else
 * one of its own (a host thread's access, which may go on while the
 * layer is destroyed).  False when no range holds @key.  Release the
 * server with unroute() once the access is over. */
static bool route(struct dm_table *_Atomic *slot, uint64_t key, bool by_region,
                  struct dm_range *copy)
{
    unsigned section = vmmu__read_begin();
    const struct dm_range *range =
        table_find(atomic_load_explicit(slot, memory_order_acquire), key, by_region);
    if (range) {
        struct vmmu_dm_server *srv = atomic_load_explicit(&range->srv, memory_order_relaxed);
        if (srv)
            atomic_fetch_add(&srv->waiters, 1);
        atomic_init(&copy->srv, srv);
        copy->start = range->start;
        copy->count = range->count;
        copy->region_id = range->region_id;
        copy->flags = range->flags;
        copy->opaque = range->opaque;
    }
    vmmu__read_end(section);
    return range != NULL;
}

static void unroute(struct dm_range *copy)
{
    struct vmmu_dm_server *srv = atomic_load_explicit(&copy->srv, memory_order_relaxed);
    if (srv)
        atomic_fetch_sub_explicit(&srv->waiters, 1, memory_order_release); /* last use of srv */
}

static unsigned slot_of(const struct vmmu_dm *dm, int vcpu_id)
{
    return vcpu_id < 0 ? dm->nslots - 1 : (unsigned)vcpu_id;
}

static int dm_dispatch(struct vmmu_dm *dm, const struct dm_range *range, struct vmmu_dm_ioreq *io)
{
    if (io->vcpu_id < -1 || io->vcpu_id >= (int)dm->max_vcpus)
        return VMMU_EINVAL;
    struct vmmu_dm_server *srv = atomic_load_explicit(&range->srv, memory_order_relaxed);
    if (!srv)
        return io->space == VMMU_DM_SPACE_PIO ? VMMU_ENOENT : VMMU_EDEVICE; /* an orphan */
    return vmmu__dm_server_access(srv, slot_of(dm, io->vcpu_id), range, io);
}

/* Rebuild the region tables when the P2M changed since they were built, or
 * a region's last paged-out page came back (the tables leave out regions
 * with paged-out pages). */
static void maybe_refresh_regions(struct vmmu_dm *dm)
{
    uint64_t gen = vmmu_p2m_generation(dm->vm);
    uint64_t resident =
        atomic_load_explicit(&dm->vm->p2m.resident_regions, memory_order_acquire);
    if (atomic_load_explicit(&dm->seen_generation, memory_order_relaxed) == gen &&
        atomic_load_explicit(&dm->seen_resident, memory_order_relaxed) == resident)
        return;
    pthread_mutex_lock(&dm->lock);
    vmmu__dm_refresh_regions_locked(dm);
    pthread_mutex_unlock(&dm->lock);
}

static int dm_device_handler(void *opaque, struct vmmu_device_req *req)
{
    struct vmmu_dm *dm = opaque;
    struct dm_range range;
    if (!route(&dm->mmio, req->region_id, true, &range))
        return VMMU_EDEVICE; /* a DEVICE region nobody serves */
    maybe_refresh_regions(dm);
    /* Values are zero-extended to the access size both ways (vmmu/p2m.h),
     * whatever the caller or an in-process callback leaves above it. */
    uint64_t mask = req->size >= 8 ? ~0ull : (1ull << (req->size * 8)) - 1;
    struct vmmu_dm_ioreq io = {
        .space = VMMU_DM_SPACE_MMIO,
        .addr = req->gpa,
        .offset = req->offset,
        .size = req->size,
        .write = req->write ? 1 : 0,
        .data = req->write ? req->data & mask : 0,
        .vcpu_id = req->vcpu_id,
        .range_opaque = range.opaque,
    };
    int err = dm_dispatch(dm, &range, &io);
    unroute(&range);
    if (!err && !req->write)
        req->data = io.data & mask;
    return err;
}

int vmmu_dm_port_access(struct vmmu_dm *dm, int vcpu_id, uint16_t port, unsigned size, int write,
                        uint64_t *data)
{
    if (!dm || !data || (size != 1 && size != 2 && size != 4))
        return VMMU_EINVAL;
    struct dm_range range;
    if (!route(&dm->ports, port, false, &range))
        return VMMU_ENOENT;
    if ((uint64_t)port + size > range.start + range.count) {
        unroute(&range);
        return VMMU_EINVAL; /* straddles the end of the range */
    }
    maybe_refresh_regions(dm);
    uint64_t mask = size == 4 ? 0xffffffffull : (1ull << (size * 8)) - 1;
    struct vmmu_dm_ioreq io = {
        .space = VMMU_DM_SPACE_PIO,
        .addr = port,
        .offset = port - range.start,
        .size = size,
        .write = write ? 1 : 0,
        .data = write ? *data & mask : 0,
        .vcpu_id = vcpu_id,
        .range_opaque = range.opaque,
    };
    int err = dm_dispatch(dm, &range, &io);
    unroute(&range);
    if (!err && !write)
        *data = io.data & mask;
    return err;
}

/* ---- the layer ------------------------------------------------------------ */

/* The sync part calls this after it unpublished @ranges and flushed every
 * vCPU, before the grace period and before the pages are freed or reused:
 * every device model must drop its mappings now.  (A page-state change
 * takes no memory away: nothing to do.) */
static void dm_reclaim(void *opaque, struct vmmu_vm *vm, const struct vmmu_gpa_range *ranges,
                       size_t nranges, enum vmmu__reclaim_why why)
{
    (void)vm;
    if (why == VMMU_RECLAIM_STATE)
        return;
    for (size_t i = 0; i < nranges; i++)
        vmmu_dm_invalidate(opaque, ranges[i].gpa, ranges[i].size);
}

int vmmu_dm_create(struct vmmu_vm *vm, const struct vmmu_dm_config *cfg, struct vmmu_dm **out)
{
    if (!vm || !out)
        return VMMU_EINVAL;
    unsigned max_vcpus = cfg && cfg->max_vcpus ? cfg->max_vcpus : 8;
    if (max_vcpus > VMMU_DM_MAX_VCPUS)
        return VMMU_EINVAL;
    if (atomic_load(&vm->p2m.device))
        return VMMU_EINVAL; /* somebody else serves DEVICE pages (checked again below) */
    struct vmmu_dm *dm = vmmu__calloc(1, sizeof(*dm));
    if (!dm)
        return VMMU_ENOMEM;
    dm->vm = vm;
    dm->max_vcpus = max_vcpus;
    dm->nslots = max_vcpus + 1;
    if (vmmu__posix_memalign((void **)&dm->vcpu, 64, dm->nslots * sizeof(*dm->vcpu))) {
        free(dm);
        return VMMU_ENOMEM;
    }
    memset(dm->vcpu, 0, dm->nslots * sizeof(*dm->vcpu));
    pthread_mutex_init(&dm->lock, NULL);
    pthread_mutex_init(&dm->inval_lock, NULL);
    atomic_store(&dm->seen_generation, ~0ull);
    int err = vmmu__reclaim_hook_add(vm, dm_reclaim, dm);
    if (!err) {
        err = vmmu__p2m_install_device_handler(vm, dm_device_handler, dm);
        if (err)
            vmmu__reclaim_hook_remove(vm, dm_reclaim, dm);
    }
    if (err) {
        free(dm->vcpu);
        free(dm);
        return err;
    }
    *out = dm;
    return 0;
}

int vmmu_dm_destroy(struct vmmu_dm *dm)
{
    if (!dm)
        return 0;
    /* Inside the layer's device handler on this thread (an in-process
     * callback, or what one calls), uninstalling it would wait for the
     * thread itself. */
    if (vmmu__vm_refuses_changes(dm->vm) || vmmu__callback_uses(dm) ||
        vmmu__p2m_in_device_handler(dm->vm))
        return VMMU_EBUSY;
    while (dm->nservers)
        vmmu_dm_server_destroy(dm->servers[dm->nservers - 1]);
    /* Once this returns, no thread is inside dm_device_handler() with @dm
     * or about to enter it (device accesses go on meanwhile, and fail
     * with VMMU_EDEVICE from now on).  It cannot refuse: the checks above
     * covered its reasons. */
    vmmu_p2m_set_device_handler(dm->vm, NULL, NULL);
    vmmu__reclaim_hook_remove(dm->vm, dm_reclaim, dm);
    table_retire(atomic_load(&dm->mmio)); /* every server is gone: only orphans are left */
    table_retire(atomic_load(&dm->ports));
    free(dm->servers);
    pthread_mutex_destroy(&dm->lock);
    pthread_mutex_destroy(&dm->inval_lock);
    free(dm->vcpu);
    free(dm);
    return 0;
}

/* ---- servers ---------------------------------------------------------------- */

static struct vmmu_dm_server *server_new(struct vmmu_dm *dm)
{
    struct vmmu_dm_server *srv = vmmu__calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->dm = dm;
    srv->shm_fd = srv->kick_fd = srv->sock = srv->svc_sock = srv->pidfd = -1;
    srv->resp_fd = vmmu__malloc(2 * dm->nslots * sizeof(int));
    if (!srv->resp_fd || vmmu__posix_memalign((void **)&srv->host, 64, sizeof(*srv->host))) {
        free(srv->resp_fd);
        free(srv);
        return NULL;
    }
    memset(srv->host, 0, sizeof(*srv->host));
    pthread_mutex_init(&srv->ring_lock, NULL);
    pthread_mutex_init(&srv->host_lock, NULL);
    srv->resp_peer = srv->resp_fd + dm->nslots;
    for (unsigned i = 0; i < 2 * dm->nslots; i++)
        srv->resp_fd[i] = -1;
    return srv;
}

static int server_make_channels(struct vmmu_dm_server *srv)
{
    for (unsigned i = 0; i < srv->dm->nslots; i++) {
        int pair[2];
        if (vmmu__dm_chan_open(pair) != 0)
            return VMMU_ESYS;
        srv->resp_fd[i] = pair[0];
        srv->resp_peer[i] = pair[1];
    }
    return 0;
}

static void server_free(struct vmmu_dm_server *srv)
{
    if (srv->remote)
        vmmu__dm_remote_fini(srv);
    else
        free(srv->slots);
    for (unsigned i = 0; i < 2 * srv->dm->nslots; i++)
        if (srv->resp_fd[i] >= 0)
            close(srv->resp_fd[i]);
    free(srv->resp_fd);
    free(srv->host);
    pthread_mutex_destroy(&srv->ring_lock);
    pthread_mutex_destroy(&srv->host_lock);
    free(srv);
}

static int server_attach(struct vmmu_dm *dm, struct vmmu_dm_server *srv)
{
    if (vmmu__vm_refuses_changes(dm->vm))
        return VMMU_EBUSY; /* attaching waits for the device models */
    /* The server list changes under both locks (see inval.c). */
    struct vmmu__blocked blk = vmmu__dm_inval_lock(dm);
    pthread_mutex_lock(&dm->lock);
    if (dm->nservers == dm->cap) {
        unsigned cap = dm->cap ? dm->cap * 2 : 4;
        void *p = vmmu__realloc(dm->servers, cap * sizeof(*dm->servers));
        if (!p) {
            pthread_mutex_unlock(&dm->lock);
            vmmu__dm_inval_unlock(dm, blk);
            return VMMU_ENOMEM;
        }
        dm->servers = p;
        dm->cap = cap;
    }
    dm->servers[dm->nservers++] = srv;
    if (srv->remote)
        atomic_store(&dm->seen_generation, ~0ull); /* publish its region table */
    pthread_mutex_unlock(&dm->lock);
    vmmu__dm_inval_unlock(dm, blk);
    return 0;
}

int vmmu_dm_server_create_inproc(struct vmmu_dm *dm, const struct vmmu_dm_ops *ops, void *opaque,
                                 struct vmmu_dm_server **out)
{
    if (!dm || !ops || !ops->access || !out)
        return VMMU_EINVAL;
    struct vmmu_dm_server *srv = server_new(dm);
    if (!srv)
        return VMMU_ENOMEM;
    srv->ops = *ops;
    srv->opaque = opaque;
    srv->timeout_ms = 5000;
    srv->slots = vmmu__calloc(dm->nslots, sizeof(*srv->slots));
    int err = srv->slots ? server_make_channels(srv) : VMMU_ENOMEM;
    if (!err)
        err = server_attach(dm, srv);
    if (err) {
        server_free(srv);
        return err;
    }
    *out = srv;
    return 0;
}

/* Whether the open descriptor @sock is a connected unix stream socket:
 * 0 or VMMU_EINVAL.  A peer that already hung up is still connected here;
 * the HELLO finds it gone (VMMU_EDEAD). */
static int remote_socket_check(int sock)
{
    int type = 0, domain = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return VMMU_EINVAL; /* not a socket (ENOTSOCK), or datagrams, packets */
    len = sizeof(domain);
    if (getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX)
        return VMMU_EINVAL; /* descriptors pass over unix sockets only */
    struct sockaddr_storage peer;
    len = sizeof(peer);
    if (getpeername(sock, (struct sockaddr *)&peer, &len) != 0)
        return VMMU_EINVAL; /* ENOTCONN: nobody to talk to */
    return 0;
}

int vmmu_dm_server_create_remote(struct vmmu_dm *dm, int sock,
                                 const struct vmmu_dm_remote_config *cfg,
                                 struct vmmu_dm_server **out)
{
    /* @sock is vmmu's even when this fails: closed on every refusal, but
     * not if it is no open descriptor (another thread may open that
     * number meanwhile). */
    if (sock < 0 || fcntl(sock, F_GETFD) < 0)
        return VMMU_EINVAL;
    if (!dm || !out || remote_socket_check(sock) != 0) {
        close(sock);
        return VMMU_EINVAL;
    }
    struct vmmu_dm_server *srv = server_new(dm);
    if (!srv) {
        close(sock);
        return VMMU_ENOMEM;
    }
    srv->remote = true;
    srv->sock = sock;
    int err = server_make_channels(srv);
    if (!err)
        err = vmmu__dm_remote_init(srv, sock, cfg);
    if (!err)
        err = server_attach(dm, srv);
    if (err) {
        server_free(srv);
        return err;
    }
    pthread_mutex_lock(&dm->lock);
    vmmu__dm_refresh_regions_locked(dm);
    pthread_mutex_unlock(&dm->lock);
    *out = srv;
    return 0;
}

/* Wait until no thread waits on @srv (killed: each waiter wakes up, sees
 * it dead and leaves).  Offline: a waiter that comes back online must not
 * wait for this thread, nor must a grace period meanwhile.  Destroy holds
 * no lock here, and a waiter takes none after it wakes, so this ends. */
static void wait_for_waiters(struct vmmu_dm_server *srv)
{
    if (!atomic_load_explicit(&srv->waiters, memory_order_acquire))
        return;
    struct vmmu__blocked blk = vmmu__sync_block_begin();
    while (atomic_load_explicit(&srv->waiters, memory_order_acquire)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    vmmu__sync_block_end(blk);
}

int vmmu_dm_server_destroy(struct vmmu_dm_server *srv)
{
    if (!srv)
        return 0;
    struct vmmu_dm *dm = srv->dm;
    if (vmmu__vm_refuses_changes(dm->vm) || vmmu__callback_uses(srv))
        return VMMU_EBUSY;
    /* Dead first, while still listed: a device model that hung up gets
     * its deadline to exit, and an invalidation meanwhile (a region
     * removed on another thread) must wait for it, since it may still map
     * the memory; once off the list it is no longer waited for.  (Its
     * accesses meanwhile fail with VMMU_EDEAD.) */
    vmmu__dm_server_kill(srv, VMMU_EDEAD);
    /* Unroute: remove its DEVICE regions (each waits a grace period) and
     * drop it from the port table. */
    struct vmmu__blocked blk = vmmu__dm_inval_lock(dm);
    pthread_mutex_lock(&dm->lock);
    struct dm_table *mm = atomic_load(&dm->mmio);
    uint32_t ids[DM_MAX_RANGES];
    struct dm_range *mine[DM_MAX_RANGES + DM_MAX_PORT_RANGES];
    unsigned nids = 0, nmine = 0;
    for (unsigned i = 0; mm && i < mm->n; i++)
        if (mm->r[i]->srv == srv) {
            ids[nids++] = mm->r[i]->region_id;
            mine[nmine++] = mm->r[i];
        }
    struct dm_table *pt = atomic_load(&dm->ports);
    for (unsigned i = 0; pt && i < pt->n; i++)
        if (pt->r[i]->srv == srv)
            mine[nmine++] = pt->r[i];
    struct dm_table *nmm = table_rebuild(mm, NULL, srv, true);
    struct dm_table *npt = table_rebuild(pt, NULL, srv, false);
    if (nmm && npt) {
        atomic_store_explicit(&dm->mmio, nmm, memory_order_release);
        atomic_store_explicit(&dm->ports, npt, memory_order_release);
    } else {
        /* Out of memory: the old snapshots stay, so its ranges stay in
         * them, but as orphans that name no server (an access finds
         * nothing to route to).  A vCPU that read the server pointer
         * before this is covered by the grace period below; the ranges
         * are freed by the next rebuild, or with the layer. */
        free(nmm);
        free(npt);
        nmm = npt = NULL;
        for (unsigned i = 0; i < nmine; i++)
            atomic_store_explicit(&mine[i]->srv, NULL, memory_order_relaxed);
        nmine = 0;
    }
    for (unsigned i = 0; i < dm->nservers; i++)
        if (dm->servers[i] == srv) {
            dm->servers[i] = dm->servers[--dm->nservers];
            break;
        }
    pthread_mutex_unlock(&dm->lock);
    vmmu__dm_inval_unlock(dm, blk);

    /* No vCPU's record names it from now on (a vCPU that records another
     * server meanwhile keeps that one); one that read it before is online
     * until the grace period below, or counted among the waiters.  A
     * callback still running pends after this: its vCPU finds the server
     * dead (marked above, sequentially consistent with this) and takes its
     * record back (ioreq.c). */
    for (unsigned i = 0; i < dm->max_vcpus; i++) {
        struct vmmu_dm_server *expect = srv;
        __atomic_compare_exchange_n(&dm->vcpu[i].srv, &expect, NULL, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED);
    }
    for (unsigned i = 0; i < nids; i++)
        vmmu_region_remove(dm->vm, ids[i]);
    vmmu__sync_grace_period();
    wait_for_waiters(srv);
    if (nmm || npt) {
        table_retire(mm);
        table_retire(pt);
    }
    for (unsigned i = 0; i < nmine; i++)
        free(mine[i]);
    server_free(srv);
    return 0;
}

/* The region ids of MMIO ranges whose DEVICE region is no longer in the
 * map: the caller removed it with vmmu_region_remove() (or replaced it),
 * which the layer is not told of.  Asked only when the table is full.
 * The ids are read under dm->lock and looked up after it is released
 * (the map's lock may not be taken under dm->lock); a region id is not
 * handed out again while ids have not wrapped, so an id found gone stays
 * gone.  Returns how many ids went to @gone. */
static unsigned ranges_gone(struct vmmu_dm *dm, uint32_t *gone)
{
    uint32_t ids[DM_MAX_RANGES];
    unsigned n = 0, ngone = 0;
    pthread_mutex_lock(&dm->lock);
    const struct dm_table *t = atomic_load(&dm->mmio);
    if (t && t->n >= DM_MAX_RANGES)
        for (unsigned i = 0; i < t->n && n < DM_MAX_RANGES; i++)
            if (atomic_load_explicit(&t->r[i]->srv, memory_order_relaxed))
                ids[n++] = t->r[i]->region_id;
    pthread_mutex_unlock(&dm->lock);
    for (unsigned i = 0; i < n; i++) {
        struct vmmu_region_info info;
        if (vmmu_region_info(dm->vm, ids[i], &info) == VMMU_ENOENT)
            gone[ngone++] = ids[i];
    }
    return ngone;
}

/* Add @r to the MMIO (@by_region) or port table.  MMIO ranges whose
 * region ids are among @gone[0..@ngone) become orphans first: they route
 * nothing, leave the table with this rebuild and are freed with the old
 * table, so a range unmapped by removing its region gives its place back. */
static int add_range(struct vmmu_dm_server *srv, struct dm_range *r, bool by_region,
                     const uint32_t *gone, unsigned ngone)
{
    struct vmmu_dm *dm = srv->dm;
    pthread_mutex_lock(&dm->lock);
    _Atomic(struct dm_table *) *slot = by_region ? &dm->mmio : &dm->ports;
    struct dm_table *old = atomic_load(slot);
    unsigned limit = by_region ? DM_MAX_RANGES : DM_MAX_PORT_RANGES;
    unsigned live = 0;
    for (unsigned i = 0; old && i < old->n; i++) {
        struct dm_range *o = old->r[i];
        for (unsigned k = 0; k < ngone; k++)
            if (o->region_id == gone[k])
                atomic_store_explicit(&o->srv, NULL, memory_order_relaxed);
        if (atomic_load_explicit(&o->srv, memory_order_relaxed))
            live++;
    }
    int err = 0;
    if (live >= limit)
        err = VMMU_ELIMIT;
    for (unsigned i = 0; !err && !by_region && old && i < old->n; i++)
        if (atomic_load_explicit(&old->r[i]->srv, memory_order_relaxed) &&
            r->start < old->r[i]->start + old->r[i]->count &&
            old->r[i]->start < r->start + r->count)
            err = VMMU_EOVERLAP;
    struct dm_table *t = err ? NULL : table_rebuild(old, r, NULL, by_region);
    if (!err && !t)
        err = VMMU_ENOMEM;
    if (!err)
        atomic_store_explicit(slot, t, memory_order_release);
    pthread_mutex_unlock(&dm->lock);
    if (!err) {
        vmmu__sync_grace_period();
        table_retire(old);
    }
    return err;
}

int vmmu_dm_map_mmio(struct vmmu_dm_server *srv, uint64_t gpa, uint64_t size, unsigned flags,
                     void *range_opaque, uint32_t *region_id)
{
    if (!srv || (flags & ~VMMU_DM_RANGE_BUFFERED) ||
        ((flags & VMMU_DM_RANGE_BUFFERED) && !srv->ring_entries))
        return VMMU_EINVAL;
    struct dm_range *r = vmmu__calloc(1, sizeof(*r));
    if (!r)
        return VMMU_ENOMEM;
    *r = (struct dm_range){.srv = srv, .start = gpa, .count = size, .flags = flags,
                           .opaque = range_opaque};
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = gpa, .size = size,
                                 .opaque = r, .name = "dm"};
    int err = vmmu_region_add(srv->dm->vm, &d, &r->region_id);
    if (err) {
        free(r);
        return err;
    }
    uint32_t gone[DM_MAX_RANGES];
    unsigned ngone = ranges_gone(srv->dm, gone);
    err = add_range(srv, r, true, gone, ngone);
    if (err) {
        vmmu_region_remove(srv->dm->vm, r->region_id);
        free(r);
        return err;
    }
    if (region_id)
        *region_id = r->region_id;
    return 0;
}

int vmmu_dm_map_ports(struct vmmu_dm_server *srv, uint16_t port, uint32_t count, unsigned flags,
                      void *range_opaque)
{
    if (!srv || !count || (uint64_t)port + count > 0x10000 || (flags & ~VMMU_DM_RANGE_BUFFERED) ||
        ((flags & VMMU_DM_RANGE_BUFFERED) && !srv->ring_entries))
        return VMMU_EINVAL;
    struct dm_range *r = vmmu__calloc(1, sizeof(*r));
    if (!r)
        return VMMU_ENOMEM;
    *r = (struct dm_range){.srv = srv, .start = port, .count = count, .flags = flags,
                           .opaque = range_opaque};
    int err = add_range(srv, r, false, NULL, 0);
    if (err)
        free(r);
    return err;
}

/* ---- in-process completion and waiting --------------------------------------- */

int vmmu_dm_complete(struct vmmu_dm_server *srv, const struct vmmu_dm_ioreq *req, uint64_t data,
                     int status)
{
    if (!srv || !req || srv->remote || req->vcpu_id < 0 ||
        req->vcpu_id >= (int)srv->dm->max_vcpus)
        return VMMU_EINVAL;
    struct vmmu_dm_slot *s = &srv->slots[req->vcpu_id];
    /* A late answer (its request is over, the vCPU may have made another
     * since) must not hold the slot even for a moment: an answer to the
     * current request finding it held would be refused, and the request
     * would wait for its deadline.  So the number is compared first, and
     * an answer finding the slot held by another completer (a late one
     * with a number the slot had a moment ago, or a second answer) waits
     * the few stores it holds it for and looks again. */
    for (unsigned spins = 0;; spins++) {
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) != req->seq)
            return VMMU_ENOENT;
        uint32_t expect = VMMU_DM_SLOT_IN_SERVICE;
        if (__atomic_compare_exchange_n(&s->state, &expect, DM_SLOT_COMPLETING, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            break;
        if (expect != DM_SLOT_COMPLETING)
            return VMMU_ENOENT;
        if (spins < 64)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
    /* The slot's request is this one?  The number may have changed before
     * the compare-and-swap (the request ended and the vCPU made another);
     * it cannot while we hold the slot: the vCPU sets it before the slot
     * goes in service and does not take the slot back from us (ioreq.c). */
    if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) != req->seq) {
        __atomic_store_n(&s->state, VMMU_DM_SLOT_IN_SERVICE, __ATOMIC_RELEASE);
        return VMMU_ENOENT;
    }
    s->data = data;
    s->status = status ? VMMU_DM_STATUS_ERROR : VMMU_DM_STATUS_OK;
    s->resp_seq = req->seq;
    __atomic_store_n(&s->state, VMMU_DM_SLOT_RESPONSE, __ATOMIC_RELEASE);
    vmmu__dm_chan_notify(srv->resp_peer[req->vcpu_id]);
    return 0;
}

int vmmu_dm_vcpu_wait(struct vmmu_dm *dm, int vcpu_id, int timeout_ms)
{
    if (!dm || vcpu_id < 0 || vcpu_id >= (int)dm->max_vcpus)
        return VMMU_EINVAL;
    struct dm_vcpu *v = &dm->vcpu[vcpu_id];
    /* Counted among the server's waiters before going offline (see struct
     * vmmu_dm_server): a destroy meanwhile frees it only after we leave. */
    struct vmmu_dm_server *srv = __atomic_load_n(&v->srv, __ATOMIC_SEQ_CST);
    if (!srv)
        return 0;
    atomic_fetch_add(&srv->waiters, 1);
    struct vmmu_dm_slot *s = &srv->slots[vcpu_id];
    uint64_t now = vmmu__dm_now_ns();
    uint64_t until = timeout_ms < 0 ? v->deadline_ns : now + (uint64_t)timeout_ms * 1000000ull;
    if (until > v->deadline_ns)
        until = v->deadline_ns;
    /* Asleep, the calling thread's online vCPU is offline: shootdowns, P2M
     * changes and split locks do not wait for a device model's answer. */
    struct vmmu__blocked blk = {0};
    bool asleep = false;
    int rc;
    for (;;) {
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == VMMU_DM_SLOT_RESPONSE ||
            atomic_load(&srv->dead)) {
            rc = 0;
            break;
        }
        now = vmmu__dm_now_ns();
        if (now >= until) {
            rc = now >= v->deadline_ns ? 0 : VMMU_ETIMEDOUT;
            break;
        }
        if (!asleep) {
            blk = vmmu__sync_block_begin();
            asleep = true;
        }
        struct pollfd pfd[3] = {{.fd = srv->resp_fd[vcpu_id], .events = POLLIN},
                                {.fd = srv->sock, .events = POLLRDHUP},
                                {.fd = srv->pidfd, .events = POLLIN}};
        uint64_t left_ms = (until - now + 999999) / 1000000;
        int n = poll(pfd, 3, left_ms > 1000 ? 1000 : (int)left_ms);
        if (n > 0 && (pfd[0].revents & POLLIN))
            vmmu__dm_chan_drain(srv->resp_fd[vcpu_id]); /* the state check above decides */
        if (n > 0 && (pfd[1].revents | pfd[2].revents))
            vmmu__dm_server_kill(srv, VMMU_EDEAD);
    }
    atomic_fetch_sub_explicit(&srv->waiters, 1, memory_order_release); /* last use of srv */
    if (asleep)
        vmmu__sync_block_end(blk);
    return rc;
}

int vmmu_dm_server_stats(const struct vmmu_dm_server *srv, struct vmmu_dm_server_stats *out)
{
    if (!srv || !out)
        return VMMU_EINVAL;
    struct vmmu_dm_server *m = (struct vmmu_dm_server *)srv;
    *out = (struct vmmu_dm_server_stats){
        .requests = atomic_load(&m->st_requests),
        .pending = atomic_load(&m->st_pending),
        .buffered = atomic_load(&m->st_buffered),
        .proto_errors = atomic_load(&m->st_proto),
        .invalidations = atomic_load(&m->st_inval),
        .page_ins = atomic_load(&m->st_pageins),
        .dead = atomic_load(&m->dead) != 0,
        .dead_reason = atomic_load(&m->dead),
    };
    return 0;
}

int vmmu_dm_server_check(struct vmmu_dm_server *srv)
{
    if (!srv)
        return VMMU_EINVAL;
    if (!atomic_load(&srv->dead) && srv->remote && vmmu__dm_peer_gone(srv))
        vmmu__dm_server_kill(srv, VMMU_EDEAD);
    return atomic_load(&srv->dead) ? VMMU_EDEAD : 0;
}
