/* SPDX-License-Identifier: MIT */
/*
 * The service socket of an out-of-process server: device models asking
 * for paged-out guest memory to come back.
 *
 * The region table a device model maps through leaves paged-out pages out
 * (remote.c), so a DMA into one finds a hole.  The device model then sends
 * PAGE_IN on its service socket; this server's thread brings the pages in
 * through the P2M's page-in path, publishes every region table again and
 * answers PAGE_IN_DONE.  The thread is a grace-period reader, online only
 * while it serves a request (it looks regions up), offline while it waits
 * for the next one.
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

/* Bring [gpa, gpa + size) in and publish the region tables again. */
static uint32_t serve_page_in(struct vmmu_dm *dm, uint64_t gpa, uint64_t size)
{
    struct vmmu_vm *vm = dm->vm;
    if (!size || size > VMMU_DM_PAGE_IN_MAX || gpa + size < gpa)
        return VMMU_DM_PAGE_IN_BAD;
    /* Only pages the pager took come back this way: a P2M change the
     * tables do not show yet reaches device models at their next device
     * access, never in the middle of a transfer (a DMA racing the removal
     * of its RAM must not spill into RAM added at the same place). */
    if (vmmu_p2m_generation(vm) != atomic_load(&dm->seen_generation))
        return VMMU_DM_PAGE_IN_HOLE;
    uint64_t first = gpa >> VMMU_PAGE_SHIFT, last = (gpa + size - 1) >> VMMU_PAGE_SHIFT;
    uint32_t status = VMMU_DM_PAGE_IN_OK;
    for (uint64_t g = first; g <= last && status == VMMU_DM_PAGE_IN_OK; g++) {
        const struct vmmu_region *r = g < vm->p2m.gfn_limit ? p2m_resolve(&vm->p2m, g, NULL) : NULL;
        if (!r || !r->host_owned || (r->type != VMMU_MEM_RAM && r->type != VMMU_MEM_ROM)) {
            status = VMMU_DM_PAGE_IN_HOLE;
        } else if (region_page_state(r, g) & VMMU_PAGE_BALLOONED) {
            status = VMMU_DM_PAGE_IN_HOLE; /* the guest gave it away: a DMA does not take it back */
        } else if (region_page_state(r, g) & VMMU_PAGE_PAGED_OUT) {
            if (vmmu__gpa_make_resident(vm, g << VMMU_PAGE_SHIFT) != 0)
                status = VMMU_DM_PAGE_IN_FAILED;
        }
    }
    /* Publish even when nothing was out: the pages may have come back
     * through a vCPU since the table was last built. */
    pthread_mutex_lock(&dm->lock);
    if (vmmu_p2m_generation(vm) == atomic_load(&dm->seen_generation))
        vmmu__dm_refresh_regions_locked(dm);
    else
        status = VMMU_DM_PAGE_IN_HOLE;
    pthread_mutex_unlock(&dm->lock);
    return status;
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
        vmmu__reader_online();
        uint32_t status = serve_page_in(srv->dm, m.gpa, m.size);
        vmmu__reader_offline();
        atomic_fetch_add(&srv->st_pageins, 1);
        struct vmmu_dm_msg r = {.type = VMMU_DM_MSG_PAGE_IN_DONE, .flags = status, .seq = m.seq,
                                .gpa = m.gpa, .size = m.size};
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
