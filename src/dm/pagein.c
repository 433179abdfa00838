/* SPDX-License-Identifier: MIT */
/*
 * The service socket of an out-of-process server: device models asking
 * for paged-out guest memory to come back.
 *
 * The region table a device model maps through leaves out regions that
 * have paged-out pages (remote.c), so a DMA into one finds a hole.  The
 * device model then sends PAGE_IN on its service socket; this server's
 * thread brings the pages in through the P2M's page-in path and answers
 * where the resident memory around the address lives, which the device
 * model maps as if the table had said it.  The thread is a grace-period
 * reader, online only while it serves a request (it looks regions up),
 * offline while it waits for the next one.
 *
 * Trust.  Everything in a request is checked; a malformed request is
 * answered VMMU_DM_PAGE_IN_BAD, and a message of another type or size ends
 * the service (the thread closes its end) without touching anything else
 * of the server.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/vm_internal.h"
#include "dm/dm_internal.h"
#include "p2m/p2m_internal.h"

/* The resident run around page @g of region @r: the pages on both sides
 * that are not paged out, within the region and VMMU_DM_PAGE_IN_REACH. */
static void resident_run(const struct vmmu_region *r, uint64_t g, struct vmmu_dm_region_ent *out)
{
    const uint64_t reach = VMMU_DM_PAGE_IN_REACH >> VMMU_PAGE_SHIFT;
    uint64_t lo = g - r->gfn > reach ? g - reach : r->gfn;
    uint64_t hi = r->gfn + r->npages - g > reach ? g + reach : r->gfn + r->npages;
    uint64_t first = g, end = g + 1;
    while (first > lo && !(region_page_state(r, first - 1) & VMMU_PAGE_PAGED_OUT))
        first--;
    while (end < hi && !(region_page_state(r, end) & VMMU_PAGE_PAGED_OUT))
        end++;
    *out = (struct vmmu_dm_region_ent){
        .gpa = first << VMMU_PAGE_SHIFT,
        .size = (end - first) << VMMU_PAGE_SHIFT,
        .memfd_offset = r->memfd_offset + ((first - r->gfn) << VMMU_PAGE_SHIFT),
        .flags = r->type == VMMU_MEM_RAM ? VMMU_DM_REGION_WRITABLE : 0,
    };
}

/* Bring the pages of [gpa, gpa + size) in and describe the resident memory
 * around @gpa.
 *
 * No lock orders the answer against page-outs, and none is needed: a
 * page-out marks its page before it sends its invalidation, and the device
 * model does not process invalidations while it waits for this answer.  So
 * either the run below excludes the page, or the invalidation reaches the
 * device model after it mapped the run, and it drops the mapping before it
 * acknowledges, before the page's memory is released. */
/* Bring the page at @gpa in for @srv's device model, which waits for the
 * answer and acknowledges nothing meanwhile: inval.c does not count this
 * time against its deadline.  Only paging in counts, not the request
 * (else a device model could excuse itself forever by asking for resident
 * memory without pause); and paging in ends once everything is in. */
static int page_in_for(struct vmmu_dm_server *srv, uint64_t gpa)
{
    uint64_t since = vmmu__dm_now_ns();
    atomic_store(&srv->svc_busy_since, since);
    vmmu__dm_pagein_enter();
    int rc = vmmu__gpa_make_resident(srv->dm->vm, gpa);
    vmmu__dm_pagein_leave();
    /* The total first, then "idle": a reader between the two counts this
     * page-in twice (a little more time), never not at all. */
    atomic_fetch_add(&srv->svc_busy_ns, vmmu__dm_now_ns() - since);
    atomic_store(&srv->svc_busy_since, 0);
    return rc;
}

/* Passes over a request whose page-ins keep waiting before the answer is
 * PAGE_IN_AGAIN. */
#define SERVE_PASSES 16

static uint32_t serve_page_in(struct vmmu_dm_server *srv, uint64_t gpa, uint64_t size,
                              struct vmmu_dm_region_ent *run)
{
    struct vmmu_dm *dm = srv->dm;
    struct vmmu_vm *vm = dm->vm;
    if (!size || size > VMMU_DM_PAGE_IN_MAX || gpa + size < gpa)
        return VMMU_DM_PAGE_IN_BAD;
    /* Only memory the tables knew comes back this way: a region added
     * since they were built reaches device models with the next table, at
     * a device access, never in the middle of a transfer (a DMA racing the
     * removal of its RAM must not spill into RAM added at the same place). */
    uint32_t known = atomic_load(&dm->seen_max_region);
    uint64_t first = gpa >> VMMU_PAGE_SHIFT, last = (gpa + size - 1) >> VMMU_PAGE_SHIFT;
    /* A page-in that waited offline (for a lock of vmmu's that a page-out
     * held, say) may have let a grace period pass: what was looked up
     * before it may be gone.  The pass goes on (each page is looked up
     * afresh), and the answer comes only from a pass without a wait. */
    const struct vmmu_region *r0 = NULL;
    for (unsigned pass = 0;; pass++) {
        if (pass == SERVE_PASSES)
            return VMMU_DM_PAGE_IN_AGAIN; /* the device model asks again */
        uint64_t section = vmmu__reader_sections();
        r0 = NULL;
        for (uint64_t g = first; g <= last; g++) {
            const struct vmmu_region *r =
                g < vm->p2m.gfn_limit ? p2m_resolve(&vm->p2m, g, NULL) : NULL;
            if (!r || !r->host_owned || (r->type != VMMU_MEM_RAM && r->type != VMMU_MEM_ROM) ||
                r->id > known || (region_page_state(r, g) & VMMU_PAGE_BALLOONED)) {
                if (g == first)
                    return VMMU_DM_PAGE_IN_HOLE; /* the guest gave it away, or never had
                                                  * it, or not as far as the tables know */
                break; /* the run below ends before it */
            }
            if (g == first)
                r0 = r;
            if ((region_page_state(r, g) & VMMU_PAGE_PAGED_OUT) &&
                page_in_for(srv, g << VMMU_PAGE_SHIFT) != 0)
                return VMMU_DM_PAGE_IN_FAILED;
        }
        if (vmmu__reader_sections() == section)
            break;
    }
    if (!r0 || (region_page_state(r0, first) & VMMU_PAGE_PAGED_OUT))
        return VMMU_DM_PAGE_IN_AGAIN;
    resident_run(r0, first, run);
    return VMMU_DM_PAGE_IN_OK;
}

static void *service_run(void *arg)
{
    struct vmmu_dm_server *srv = arg;
    vmmu__reader_register();
    vmmu__reader_offline();
    for (;;) {
        /* One byte more than a message: a longer one shows as too long. */
        uint8_t buf[sizeof(struct vmmu_dm_msg) + 1];
        ssize_t n = recv(srv->svc_sock, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* hung up, or the server is going away */
        struct vmmu_dm_msg m;
        if (n != (ssize_t)sizeof(m)) {
            atomic_fetch_add(&srv->st_proto, 1);
            break;
        }
        memcpy(&m, buf, sizeof(m));
        if (m.type != VMMU_DM_MSG_PAGE_IN || m.flags) {
            atomic_fetch_add(&srv->st_proto, 1);
            break;
        }
        struct vmmu_dm_page_in_done r = {.type = VMMU_DM_MSG_PAGE_IN_DONE, .seq = m.seq};
        vmmu__reader_online();
        r.status = serve_page_in(srv, m.gpa, m.size, &r.run);
        vmmu__reader_offline();
        atomic_fetch_add(&srv->st_pageins, 1);
        if (send(srv->svc_sock, &r, sizeof(r), MSG_NOSIGNAL) != (ssize_t)sizeof(r))
            break;
    }
    /* Stop serving: the device model's next request finds the socket closed. */
    shutdown(srv->svc_sock, SHUT_RDWR);
    vmmu__reader_unregister();
    return NULL;
}

int vmmu__dm_service_start(struct vmmu_dm_server *srv)
{
    if (pthread_create(&srv->svc_thread, NULL, service_run, srv) != 0)
        return VMMU_ESYS;
    srv->svc_started = true;
    return 0;
}

void vmmu__dm_service_stop(struct vmmu_dm_server *srv)
{
    if (srv->svc_sock >= 0)
        shutdown(srv->svc_sock, SHUT_RDWR);
    if (srv->svc_started)
        pthread_join(srv->svc_thread, NULL);
    srv->svc_started = false;
    if (srv->svc_sock >= 0)
        close(srv->svc_sock);
    srv->svc_sock = -1;
}
