/* The client library's mapcache: guest RAM mapped from the vm's memfd in
 * buckets, hits and misses, eviction under a size limit, refusals, and
 * invalidation (pinned mappings are left harmless, never stale).  The vm
 * and the device model live in this one process, connected by a
 * socketpair; invalidations are posted asynchronously so one thread can
 * play both sides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include "dm/dm_internal.h" /* vmmu_dm::inval_posted: the invalidation was sent */
#include "sync/sync_internal.h" /* vmmu__sync_block_begin(): a wait */

#include "vmmu/dmclient.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#define BUCKET 65536ull

struct env {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    struct vmmu_dmc *c;
    uint32_t rom_id;
};

static int setup_with_limit(void **state, size_t limit)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(vmmu_vm_create(NULL, &e->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(e->vm, &ram, NULL), 0);
    struct vmmu_region_desc rom = {.type = VMMU_MEM_ROM, .gpa = 0x100000, .size = 0x8000};
    assert_int_equal(vmmu_region_add(e->vm, &rom, &e->rom_id), 0);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x100000, "firmware", 8, VMMU_GPA_ROM_WRITE, NULL), 0);
    assert_int_equal(vmmu_dm_create(e->vm, NULL, &e->dm), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], NULL, &e->srv), 0);
    struct vmmu_dmc_config cc = {.mapcache_bytes = limit};
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], &cc, &e->c), 0);
    *state = e;
    return 0;
}

static int setup(void **state)
{
    return setup_with_limit(state, 0);
}

static int setup_small(void **state)
{
    return setup_with_limit(state, 2 * BUCKET);
}

static int teardown(void **state)
{
    struct env *e = *state;
    vmmu_dmc_close(e->c);
    vmmu_dm_destroy(e->dm);
    vmmu_vm_destroy(e->vm);
    free(e);
    return 0;
}

static uint64_t dmc_page_ins(struct vmmu_dmc *c)
{
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(c, &st), 0);
    return st.page_ins;
}

/* Invalidate [gpa, gpa + size) with the device model in this thread. */
static void invalidate(struct env *e, uint64_t gpa, uint64_t size)
{
    uint64_t ticket;
    assert_int_equal(vmmu_dm_invalidate_async(e->dm, gpa, size, &ticket), 0);
    assert_int_equal(vmmu_dmc_process(e->c), 0);
    assert_int_equal(vmmu_dm_invalidate_wait(e->dm, ticket), 0);
}

static void mapped_memory_is_the_guests_memory_both_ways(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_gpa_write(e->vm, 0x1234, "guest", 5, 0, NULL), 0);
    void *p;
    assert_int_equal(vmmu_dmc_map(e->c, 0x1234, 5, 1, &p), 0);
    assert_memory_equal(p, "guest", 5);
    memcpy(p, "model", 5);
    char back[5];
    assert_int_equal(vmmu_gpa_read(e->vm, 0x1234, back, 5, 0, NULL), 0);
    assert_memory_equal(back, "model", 5);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1234), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1234), VMMU_ENOENT); /* not pinned any more */
}

static void a_second_map_of_the_same_bucket_is_a_hit(void **state)
{
    struct env *e = *state;
    void *p, *q;
    assert_int_equal(vmmu_dmc_map(e->c, 0x20010, 16, 0, &p), 0);
    assert_int_equal(vmmu_dmc_map(e->c, 0x2ff00, 256, 1, &q), 0);
    assert_ptr_equal((char *)q - (char *)p, 0x2ff00 - 0x20010);
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.map_misses, 1);
    assert_int_equal(st.map_hits, 1);
    assert_int_equal(st.mapped_bytes, BUCKET);
    vmmu_dmc_unmap(e->c, 0x20010);
    vmmu_dmc_unmap(e->c, 0x2ff00);
}

static void maps_are_refused_across_buckets_holes_and_read_only_memory(void **state)
{
    struct env *e = *state;
    void *p;
    assert_int_equal(vmmu_dmc_map(e->c, BUCKET - 8, 16, 0, &p), VMMU_ERANGE);
    assert_int_equal(vmmu_dmc_map(e->c, 0x200000, 16, 0, &p), VMMU_EHOLE);
    assert_int_equal(vmmu_dmc_map(e->c, 0x100000, 8, 1, &p), VMMU_EROM);
    assert_int_equal(vmmu_dmc_map(e->c, 0x100000, 8, 0, &p), 0);
    assert_memory_equal(p, "firmware", 8);
    vmmu_dmc_unmap(e->c, 0x100000);
    /* the ROM is 32 KiB: a bucket is cut at the region's end */
    assert_int_equal(vmmu_dmc_map(e->c, 0x107ff8, 16, 0, &p), VMMU_ERANGE);
    assert_int_equal(vmmu_dmc_map(e->c, 0, 0, 0, &p), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_map(e->c, ~0ull - 4, 8, 0, &p), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_map(NULL, 0, 8, 0, &p), VMMU_EINVAL);
    char buf[16];
    assert_int_equal(vmmu_dmc_read(e->c, 0xffff8, buf, 16), 0); /* RAM into ROM */
    assert_memory_equal(buf + 8, "firmware", 8);
    assert_int_equal(vmmu_dmc_read(e->c, 0x107ff8, buf, 16), VMMU_EHOLE); /* off the ROM */
    assert_int_equal(vmmu_dmc_write(e->c, 0x100000, buf, 4), VMMU_EROM);
}

static void copy_helpers_span_buckets(void **state)
{
    struct env *e = *state;
    enum { LEN = 3 * 65536 + 100 };
    uint8_t *a = malloc(LEN), *b = malloc(LEN);
    for (unsigned i = 0; i < LEN; i++)
        a[i] = (uint8_t)(i ^ (i >> 8));
    assert_int_equal(vmmu_dmc_write(e->c, 0x8000, a, LEN), 0);
    assert_int_equal(vmmu_gpa_read(e->vm, 0x8000, b, LEN, 0, NULL), 0);
    assert_memory_equal(a, b, LEN);
    assert_int_equal(vmmu_dmc_fill(e->c, 0x9000, 0xcc, 70000), 0);
    memset(b, 0, LEN);
    assert_int_equal(vmmu_dmc_read(e->c, 0x9000, b, 70000), 0);
    for (unsigned i = 0; i < 70000; i++)
        assert_int_equal(b[i], 0xcc);
    free(a);
    free(b);
}

static void unpinned_buckets_are_evicted_least_recently_used_first(void **state)
{
    struct env *e = *state;
    void *p;
    for (uint64_t k = 0; k < 3; k++) {
        assert_int_equal(vmmu_dmc_map(e->c, k * BUCKET, 8, 0, &p), 0);
        assert_int_equal(vmmu_dmc_unmap(e->c, k * BUCKET), 0);
    }
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.mapped_bytes, 2 * BUCKET);
    /* bucket 0 went: mapping it again misses; bucket 2 is still there */
    assert_int_equal(vmmu_dmc_map(e->c, 2 * BUCKET, 8, 0, &p), 0);
    assert_int_equal(vmmu_dmc_map(e->c, 0, 8, 0, &p), 0);
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.map_hits, 1);
    assert_int_equal(st.map_misses, 4);
    /* both resident buckets are pinned now: nothing can be evicted */
    assert_int_equal(vmmu_dmc_map(e->c, 5 * BUCKET, 8, 0, &p), VMMU_ELIMIT);
    vmmu_dmc_unmap(e->c, 0);
    assert_int_equal(vmmu_dmc_map(e->c, 5 * BUCKET, 8, 0, &p), 0);
    vmmu_dmc_unmap(e->c, 5 * BUCKET);
    vmmu_dmc_unmap(e->c, 2 * BUCKET);
}

static void invalidation_drops_mappings_and_the_range(void **state)
{
    struct env *e = *state;
    void *p;
    assert_int_equal(vmmu_dmc_map(e->c, 0x40000, 8, 1, &p), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x40000), 0);
    invalidate(e, 0x40000, 0x1000);
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.invalidations, 1);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.mapped_bytes, 0);
    /* The rest of its bucket is still in the device model's table ... */
    assert_int_equal(vmmu_dmc_map(e->c, 0x41000, 8, 1, &p), 0);
    vmmu_dmc_unmap(e->c, 0x41000);
    assert_int_equal(vmmu_dmc_map(e->c, 0x3f000, 8, 1, &p), 0);
    vmmu_dmc_unmap(e->c, 0x3f000);
    assert_int_equal(dmc_page_ins(e->c), 0);
    /* ... the invalidated page is not: mapping it asks the vm, which
     * answers from the P2M (this test left the page there; a real caller
     * removes it from the P2M before it invalidates, and then the answer
     * is a hole). */
    assert_int_equal(vmmu_dmc_map(e->c, 0x40000, 8, 1, &p), 0);
    vmmu_dmc_unmap(e->c, 0x40000);
    assert_int_equal(dmc_page_ins(e->c), 1);
}

static void a_pinned_mapping_becomes_harmless_when_invalidated(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_gpa_write(e->vm, 0x50000, "old", 3, 0, NULL), 0);
    char *p;
    assert_int_equal(vmmu_dmc_map(e->c, 0x50000, 8, 1, (void **)&p), 0);
    invalidate(e, 0x50000, 0x10000);
    /* The pointer still works but no longer reaches the guest. */
    memcpy(p, "new", 3);
    char back[3];
    assert_int_equal(vmmu_gpa_read(e->vm, 0x50000, back, 3, 0, NULL), 0);
    assert_memory_equal(back, "old", 3);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x50000), 0);
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.mapped_bytes, 0);
}

/* ---- pages the pager takes ---------------------------------------------------- */

/* A thread that acknowledges the invalidations of device models @c[0..n)
 * while the test's thread waits for a page-out. */
struct pump {
    struct vmmu_dmc *c[2];
    unsigned n;
    atomic_int stop;
    pthread_t thread;
};

static void *pump_run(void *arg)
{
    struct pump *p = arg;
    while (!atomic_load(&p->stop)) {
        for (unsigned i = 0; i < p->n; i++)
            assert_int_equal(vmmu_dmc_process(p->c[i]), 0);
        usleep(100);
    }
    return NULL;
}

static void page_out(struct vmmu_pager *pager, struct vmmu_dmc *c0, struct vmmu_dmc *c1,
                     uint64_t gpa)
{
    struct pump p = {.c = {c0, c1}, .n = c1 ? 2 : 1};
    assert_int_equal(pthread_create(&p.thread, NULL, pump_run, &p), 0);
    struct vmmu_gpa_range r = {.gpa = gpa, .size = 0x1000};
    assert_int_equal(vmmu_pager_page_out(pager, &r, 1), 0);
    atomic_store(&p.stop, 1);
    pthread_join(p.thread, NULL);
}

static int count_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    (*(int *)opaque)++;
    req->data = 0;
    return 0;
}

/* A paged-out page is in no region table a device model sees: not in the
 * table the page-out punched, nor in one rebuilt afterwards (for a device
 * model that connects later, or after a P2M change: those leave out the
 * page's whole region), because the memfd holds zeros there and a write
 * would be lost when the page comes back.  A device model that needs it
 * asks the vm to bring it back (each such request is counted), and reads
 * and writes the guest's own contents. */
static void device_models_bring_paged_out_pages_back_and_never_see_the_hole(void **state)
{
    struct env *e = *state;
    struct vmmu_pager *pager;
    assert_int_equal(vmmu_pager_create(e->vm, NULL, &pager), 0);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x5000, "precious", 8, 0, NULL), 0);
    char buf[8];
    assert_int_equal(vmmu_dmc_read(e->c, 0x5000, buf, 8), 0);
    assert_int_equal(dmc_page_ins(e->c), 0);

    /* Read from a paged-out page: brought back on request. */
    page_out(pager, e->c, NULL, 0x5000);
    assert_int_equal(vmmu_dmc_read(e->c, 0x4ff8, buf, 8), 0); /* its neighbours stay */
    assert_int_equal(vmmu_dmc_read(e->c, 0x6000, buf, 8), 0);
    assert_int_equal(dmc_page_ins(e->c), 0);
    assert_int_equal(vmmu_dmc_read(e->c, 0x5000, buf, 8), 0);
    assert_memory_equal(buf, "precious", 8);
    assert_int_equal(dmc_page_ins(e->c), 1);
    struct vmmu_pager_stats ps;
    assert_int_equal(vmmu_pager_stats(pager, &ps), 0);
    assert_int_equal(ps.paged_in, 1);

    /* Write into a paged-out page: the write reaches the guest and stays
     * through another round trip to the backing file. */
    page_out(pager, e->c, NULL, 0x5000);
    assert_int_equal(vmmu_dmc_write(e->c, 0x5000, "dmawrote", 8), 0);
    assert_int_equal(dmc_page_ins(e->c), 2);
    page_out(pager, e->c, NULL, 0x5000);
    assert_int_equal(vmmu_gpa_read(e->vm, 0x5000, buf, 8, 0, NULL), 0);
    assert_memory_equal(buf, "dmawrote", 8);

    /* A device model that connects while the page is out gets a table
     * without the page's region: it asks for what it maps of it, and gets
     * only that back. */
    page_out(pager, e->c, NULL, 0x5000);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_server *srv2;
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], NULL, &srv2), 0);
    struct vmmu_dmc *c2;
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, &c2), 0);
    assert_int_equal(vmmu_dmc_read(c2, 0x80000, buf, 8), 0); /* resident, in that region */
    assert_int_equal(dmc_page_ins(c2), 1);
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(e->vm, 0x5000, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    assert_int_equal(vmmu_dmc_read(c2, 0x5000, buf, 8), 0);
    assert_memory_equal(buf, "dmawrote", 8);
    assert_int_equal(dmc_page_ins(c2), 2);
    assert_int_equal(vmmu_dmc_read(c2, 0x6000, buf, 8), 0); /* the same bucket: no question */
    assert_int_equal(dmc_page_ins(c2), 2);
    struct vmmu_dm_server_stats ss;
    assert_int_equal(vmmu_dm_server_stats(srv2, &ss), 0);
    assert_int_equal(ss.page_ins, 2);

    /* A P2M change rebuilds every table at the next device access, still
     * without the region of the paged-out page. */
    page_out(pager, e->c, c2, 0x5000);
    int accesses = 0;
    struct vmmu_dm_ops ops = {.access = count_access};
    struct vmmu_dm_server *io;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &ops, &accesses, &io), 0);
    assert_int_equal(vmmu_dm_map_ports(io, 0x80, 1, 0, NULL), 0);
    struct vmmu_region_desc more = {.type = VMMU_MEM_RAM, .gpa = 0x200000, .size = 0x10000};
    assert_int_equal(vmmu_region_add(e->vm, &more, NULL), 0);
    /* (until that access, the new region is a hole even when asked for: a
     * device model learns of new memory at a device access, never in the
     * middle of a transfer; the regions it knew are served on) */
    assert_int_equal(vmmu_dmc_read(e->c, 0x200000, buf, 8), VMMU_EHOLE);
    assert_int_equal(dmc_page_ins(e->c), 3);
    uint64_t data = 1;
    assert_int_equal(vmmu_dm_port_access(e->dm, -1, 0x80, 1, 1, &data), 0);
    assert_int_equal(accesses, 1);
    assert_int_equal(vmmu_dmc_read(e->c, 0x200000, buf, 8), 0); /* the table is new */
    assert_int_equal(dmc_page_ins(e->c), 3);
    assert_int_equal(vmmu_dmc_read(e->c, 0x5000, buf, 8), 0); /* ... and asks again */
    assert_memory_equal(buf, "dmawrote", 8);
    assert_int_equal(dmc_page_ins(e->c), 4);

    /* Paged in by someone else: the next device access publishes it, and
     * nobody needs to ask. */
    page_out(pager, e->c, c2, 0x5000);
    struct vmmu_gpa_range r = {.gpa = 0x5000, .size = 0x1000};
    assert_int_equal(vmmu_pager_page_in(pager, &r, 1), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, -1, 0x80, 1, 1, &data), 0);
    assert_int_equal(vmmu_dmc_read(c2, 0x5000, buf, 8), 0);
    assert_memory_equal(buf, "dmawrote", 8);
    assert_int_equal(vmmu_dmc_read(c2, 0xf0000, buf, 8), 0);
    assert_int_equal(dmc_page_ins(c2), 2);

    /* Memory the vm does not have is still a hole (the vm says so). */
    assert_int_equal(vmmu_dmc_read(c2, 0x400000, buf, 8), VMMU_EHOLE);
    assert_int_equal(dmc_page_ins(c2), 3);
    vmmu_dmc_close(c2);
    vmmu_dm_server_destroy(srv2);
    vmmu_pager_destroy(pager);
}

/* A page-in slower than the server's acknowledgement deadline, while an
 * invalidation waits for the same device model. */
struct slow_pagein {
    struct vmmu_pager *pager;
    unsigned delay_ms;
    atomic_int entered;
};

static int slow_page_in(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    struct slow_pagein *s = opaque;
    atomic_store(&s->entered, 1);
    usleep(s->delay_ms * 1000u);
    struct vmmu_gpa_range r = {.gpa = gpa & ~0xfffull, .size = 0x1000};
    return vmmu_pager_page_in(s->pager, &r, 1);
}

struct dma_reader {
    struct vmmu_dmc *c;
    char buf[8];
    int err;
    atomic_int stop;
};

static void *dma_read_then_process(void *arg)
{
    struct dma_reader *d = arg;
    d->err = vmmu_dmc_read(d->c, 0x5000, d->buf, 8);
    while (!atomic_load(&d->stop)) {
        int err = vmmu_dmc_process(d->c);
        if (err && !d->err)
            d->err = err;
        usleep(1000);
    }
    return NULL;
}

/* While a device model waits for the vm to bring memory back it
 * acknowledges nothing; the time the vm takes does not count against the
 * device model's deadline, so a slow page-in (a backing store on a slow
 * disk) does not get it declared hung when an invalidation is pending. */
static void a_slow_page_in_does_not_make_the_device_model_late(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(vm, &ram, NULL), 0);
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config rc = {.timeout_ms = 200};
    struct vmmu_dm_server *srv;
    assert_int_equal(vmmu_dm_server_create_remote(dm, sv[0], &rc, &srv), 0);
    struct vmmu_dmc *c;
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, &c), 0);

    struct slow_pagein slow = {.delay_ms = 800};
    assert_int_equal(vmmu_pager_create(vm, NULL, &slow.pager), 0);
    assert_int_equal(vmmu_gpa_write(vm, 0x5000, "precious", 8, 0, NULL), 0);
    page_out(slow.pager, c, NULL, 0x5000);
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, slow_page_in, &slow), 0);

    struct dma_reader d = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dma_read_then_process, &d), 0);
    while (!atomic_load(&slow.entered)) /* the device model's request is in the vm's hands */
        usleep(1000);
    /* Close to four deadlines of page-in still to go after this is posted. */
    assert_int_equal(vmmu_dm_invalidate(dm, 0x80000, 0x1000), 0);
    atomic_store(&d.stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(d.err, 0);
    assert_memory_equal(d.buf, "precious", 8);
    assert_int_equal(dmc_page_ins(c), 1);
    struct vmmu_dm_server_stats ss;
    assert_int_equal(vmmu_dm_server_stats(srv, &ss), 0);
    assert_int_equal(ss.dead, 0);
    assert_int_equal(ss.invalidations, 2); /* the page-out's, then this one */
    assert_int_equal(ss.page_ins, 1);

    vmmu_dmc_close(c);
    vmmu_pager_destroy(slow.pager);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

struct path_client {
    char path[108];
    struct vmmu_dmc *c;
    int err;
};

static void *connect_by_path(void *arg)
{
    struct path_client *pc = arg;
    pc->err = vmmu_dmc_connect_path(pc->path, NULL, &pc->c);
    return NULL;
}

static void a_device_model_connects_by_socket_path(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(vm, &ram, NULL), 0);
    assert_int_equal(vmmu_dm_create(vm, NULL, &dm), 0);
    struct path_client pc = {0};
    snprintf(pc.path, sizeof(pc.path), "/tmp/vmmu-test-dm-%d.sock", (int)getpid());
    unlink(pc.path);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, pc.path);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 1), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, connect_by_path, &pc), 0);
    int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    struct vmmu_dm_server *srv;
    assert_int_equal(vmmu_dm_server_create_remote(dm, s, NULL, &srv), 0);
    pthread_join(t, NULL);
    assert_int_equal(pc.err, 0);
    assert_int_equal(vmmu_gpa_write(vm, 0x100, "path", 4, 0, NULL), 0);
    char buf[4];
    assert_int_equal(vmmu_dmc_read(pc.c, 0x100, buf, 4), 0);
    assert_memory_equal(buf, "path", 4);
    vmmu_dmc_close(pc.c);
    /* The client hung up: the server notices. */
    assert_int_equal(vmmu_dm_server_check(srv), VMMU_EDEAD);
    close(ls);
    unlink(pc.path);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

/* Two pinned mappings of one address in different buckets of a span (the
 * region table changed in between, or the first was invalidated): an
 * unmap of that address, whichever mapping it was meant for, leaves the
 * other one usable; after an invalidation it reads zeros, never faults.
 * (Before, the unmap could unpin the newer bucket while its user still
 * held it, and the invalidation then unmapped it under the pointer.) */
/* The whole RAM region in the device model's table again, as a second
 * device model connecting makes the vm publish it. */
static void republish_ram(struct env *e)
{
    int sv[2];
    struct vmmu_dm_server *srv2;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], NULL, &srv2), 0);
    close(sv[1]);
    assert_int_equal(vmmu_dm_server_destroy(srv2), 0);
}

static void an_unmap_never_releases_a_mapping_still_in_use_beside_an_older_one(void **state)
{
    struct env *e = *state;
    invalidate(e, 0x8000, 0x1000); /* punched out of the table */
    void *p1, *p2;
    assert_int_equal(vmmu_dmc_map(e->c, 0x1000, 8, 1, &p1), 0); /* bucket [0, 0x8000) */
    republish_ram(e);
    assert_int_equal(vmmu_dmc_map(e->c, 0x8000, 8, 1, &p2), 0); /* bucket [0, 0x10000) */
    assert_int_equal(vmmu_gpa_write(e->vm, 0x8000, "live", 4, 0, NULL), 0);
    assert_memory_equal(p2, "live", 4);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1000), 0); /* done with p1, p2 in use */
    assert_memory_equal(p2, "live", 4);
    invalidate(e, 0, BUCKET);
    assert_int_equal(*(volatile uint64_t *)p2, 0); /* harmless, mapped */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x8000), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x8000), VMMU_ENOENT);

    /* The same with a mapping an invalidation left harmless: a new map of
     * its address must not be released by the old mapping's unmap. */
    assert_int_equal(vmmu_dmc_map(e->c, 0x2000, 8, 1, &p1), 0);
    invalidate(e, 0x2000, 0x1000);
    /* The region is still there: the vm maps it again on request. */
    assert_int_equal(vmmu_dmc_map(e->c, 0x1000, 0x2000, 1, &p2), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x2000), 0); /* meant for p1 */
    invalidate(e, 0x1000, 0x1000);
    assert_int_equal(*(volatile uint64_t *)p2, 0);
    assert_int_equal(*(volatile uint64_t *)p1, 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1000), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1000), VMMU_ENOENT);
    struct vmmu_dmc_stats st;
    invalidate(e, 0, 1 << 20);
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.mapped_bytes, 0); /* every mapping went with its last unpin */
}

static size_t mapped_bytes(struct env *e)
{
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    return st.mapped_bytes;
}

/* Buckets of one span taken over three times while pinned: each new
 * bucket takes the older ones with their own retired lists, an unmap finds
 * its address in a retired mapping when the newest bucket does not cover
 * it, a new bucket that overlaps only a retired mapping still takes the
 * pinned unit over, and every pointer keeps working (live or harmless)
 * until the last unpin of the unit. */
static void pinned_buckets_taken_over_in_a_chain_are_each_released_by_their_unmap(void **state)
{
    struct env *e = *state;
    char *pa, *pb, *pb2, *pc, *pd;
    invalidate(e, 0x8000, 0x1000); /* the table: [0, 0x8000) [0x9000, ...) */
    assert_int_equal(vmmu_dmc_map(e->c, 0x1000, 8, 1, (void **)&pa), 0); /* A: [0, 0x8000) */
    republish_ram(e);
    assert_int_equal(vmmu_dmc_map(e->c, 0x8000, 8, 1, (void **)&pb), 0); /* B: [0, 0x10000) */
    assert_int_equal(vmmu_dmc_map(e->c, 0xe000, 8, 1, (void **)&pb2), 0); /* B again */
    assert_ptr_equal(pb2, pb + 0x6000);
    /* B is left harmless (pinned), A on its retired list; 0xc000 leaves
     * the table. */
    invalidate(e, 0xc000, 0x1000);
    memcpy(pb2, "gone", 4);
    assert_int_equal(vmmu_dmc_map(e->c, 0x2000, 8, 1, (void **)&pc), 0); /* C: [0, 0xc000) */
    assert_int_equal(vmmu_gpa_write(e->vm, 0x2000, "live", 4, 0, NULL), 0);
    assert_memory_equal(pc, "live", 4);
    char back[4];
    assert_int_equal(vmmu_gpa_read(e->vm, 0xe000, back, 4, 0, NULL), 0);
    assert_memory_equal(back, "\0\0\0\0", 4); /* B's write went to private memory */
    /* 0xe000 is beyond C: the unmap finds it in B, retired into C. */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0xe000), 0);
    /* D: [0xd000, 0x10000) overlaps none of C's own pages, only B: it
     * takes C over with everything C holds. */
    assert_int_equal(vmmu_dmc_map(e->c, 0xd000, 8, 1, (void **)&pd), 0);
    assert_int_equal(vmmu_gpa_write(e->vm, 0xd000, "dddd", 4, 0, NULL), 0);
    assert_memory_equal(pd, "dddd", 4);
    size_t all = mapped_bytes(e);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1000), 0); /* A's */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x8000), 0); /* B's */
    /* C is still pinned through D: its pointer reaches the guest. */
    assert_int_equal(vmmu_gpa_write(e->vm, 0x2000, "more", 4, 0, NULL), 0);
    assert_memory_equal(pc, "more", 4);
    assert_int_equal(mapped_bytes(e), all);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x2000), 0); /* C's */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0xd000), 0); /* D's: the last pin */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0xd000), VMMU_ENOENT);
    assert_int_equal(vmmu_dmc_unmap(e->c, 0x1000), VMMU_ENOENT);
    invalidate(e, 0, 1 << 20);
    assert_int_equal(mapped_bytes(e), 0);

    /* A pinned mapping left harmless and never unmapped goes with the
     * client (vmmu_dmc_close() in the teardown; the sanitizer builds
     * check nothing leaks). */
    assert_int_equal(vmmu_dmc_map(e->c, 0x3000, 8, 1, (void **)&pa), 0);
    invalidate(e, 0x3000, 0x1000);
    assert_int_equal(mapped_bytes(e), BUCKET);
}

/* Invalidate [gpa, gpa + size) with both device models in this thread. */
static void invalidate2(struct env *e, struct vmmu_dmc *c2, uint64_t gpa, uint64_t size)
{
    uint64_t ticket;
    assert_int_equal(vmmu_dm_invalidate_async(e->dm, gpa, size, &ticket), 0);
    assert_int_equal(vmmu_dmc_process(e->c), 0);
    assert_int_equal(vmmu_dmc_process(c2), 0);
    assert_int_equal(vmmu_dm_invalidate_wait(e->dm, ticket), 0);
}

/* A device model's region table holds max_regions entries.  A vm with more
 * regions, or an invalidation that splits an entry of a full table, leaves
 * the last ones out: the device model reaches them through the page-in
 * service, reading and writing the guest's own memory with the rights of
 * the region. */
static void regions_beyond_a_full_table_are_reached_through_the_page_in_service(void **state)
{
    struct env *e = *state; /* RAM [0, 1 MiB), ROM [1 MiB, +32 KiB) */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config cfg = {.max_regions = 1};
    struct vmmu_dm_server *srv2;
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], &cfg, &srv2), 0);
    struct vmmu_dmc *c2;
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, &c2), 0);
    char buf[8];
    /* The table holds the RAM; the ROM comes through the service. */
    assert_int_equal(vmmu_dmc_read(c2, 0x1000, buf, 8), 0);
    assert_int_equal(dmc_page_ins(c2), 0);
    assert_int_equal(vmmu_dmc_read(c2, 0x100000, buf, 8), 0);
    assert_memory_equal(buf, "firmware", 8);
    assert_int_equal(dmc_page_ins(c2), 1);
    void *p;
    assert_int_equal(vmmu_dmc_map(c2, 0x100000, 8, 1, &p), VMMU_EROM);

    /* Punching a page out of the RAM's entry would make two: the part
     * above the hole is left out. */
    invalidate2(e, c2, 0x8000, 0x1000);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x20000, "upper!!!", 8, 0, NULL), 0);
    uint64_t before = dmc_page_ins(c2);
    assert_int_equal(vmmu_dmc_read(c2, 0x20000, buf, 8), 0);
    assert_memory_equal(buf, "upper!!!", 8);
    assert_true(dmc_page_ins(c2) > before);
    assert_int_equal(vmmu_dmc_write(c2, 0x30000, "dmawrite", 8), 0);
    assert_int_equal(vmmu_gpa_read(e->vm, 0x30000, buf, 8, 0, NULL), 0);
    assert_memory_equal(buf, "dmawrite", 8);
    /* The part below stays in the table. */
    before = dmc_page_ins(c2);
    assert_int_equal(vmmu_dmc_read(c2, 0x7000, buf, 8), 0);
    assert_int_equal(dmc_page_ins(c2), before);
    vmmu_dmc_close(c2);
    assert_int_equal(vmmu_dm_server_destroy(srv2), 0);
}

/* A mapcache must hold at least one bucket: a smaller limit is refused at
 * connect (VMMU_EINVAL, the socket closed) instead of failing every map
 * with VMMU_ELIMIT while nothing is pinned; exactly one bucket works. */
/* The RAM region's dirty bitmap (16 words: its 256 pages) after a
 * get-and-clear; the number of dirty pages. */
static uint64_t take_dirty(struct env *e, uint64_t bm[4])
{
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(e->vm, 0, &pe), 0);
    uint64_t n = ~0ull;
    assert_int_equal(vmmu_dirty_log_get_and_clear(e->vm, pe.region_id, bm, 4, &n), 0);
    return n;
}

/* Turn the RAM region's dirty log on, check it starts empty; its id. */
static uint32_t log_dirty(struct env *e, uint64_t bm[4])
{
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(e->vm, 0, &pe), 0);
    assert_int_equal(vmmu_dirty_log_enable(e->vm, pe.region_id, true), 0);
    assert_int_equal(take_dirty(e, bm), 0);
    return pe.region_id;
}

static bool page_bit(const uint64_t bm[4], unsigned page)
{
    return (bm[page / 64] >> (page % 64)) & 1;
}

/* What a device model writes through its own mappings is in the vm's dirty
 * log (a live migration sends those pages again): the copy helpers' pages,
 * a write mapping's pages from its unmap on (not while it is held), the
 * pages of a pinned write mapping when an invalidation takes it; never
 * what it only read, and each page once. */
static void a_device_models_writes_are_in_the_dirty_log(void **state)
{
    struct env *e = *state;
    uint64_t bm[4];
    uint32_t region_id = log_dirty(e, bm);

    /* The copy helpers. */
    assert_int_equal(vmmu_dmc_write(e->c, 3 * 4096 + 10, "abcdefgh", 8), 0);
    assert_int_equal(take_dirty(e, bm), 1);
    assert_true(page_bit(bm, 3));
    char buf[64];
    assert_int_equal(vmmu_dmc_read(e->c, 9 * 4096, buf, sizeof(buf)), 0);
    assert_int_equal(take_dirty(e, bm), 0);
    /* A fill across a bucket edge (pages 14..17), and a write of two bytes
     * straddling pages 20 and 21. */
    assert_int_equal(vmmu_dmc_fill(e->c, 14 * 4096 + 100, 0x5a, 3 * 4096), 0);
    assert_int_equal(vmmu_dmc_write(e->c, 21 * 4096 - 1, "xy", 2), 0);
    assert_int_equal(take_dirty(e, bm), 6);
    for (unsigned p = 14; p <= 17; p++)
        assert_true(page_bit(bm, p));
    assert_true(page_bit(bm, 20) && page_bit(bm, 21));

    /* A read mapping reports nothing; a write mapping its pages once it
     * is unmapped. */
    void *p;
    assert_int_equal(vmmu_dmc_map(e->c, 30 * 4096, 8, 0, &p), 0);
    assert_int_equal(vmmu_dmc_unmap(e->c, 30 * 4096), 0);
    assert_int_equal(vmmu_dmc_map(e->c, 33 * 4096, 2 * 4096, 1, &p), 0);
    memset(p, 0x11, 2 * 4096);
    assert_int_equal(take_dirty(e, bm), 0); /* still mapped */
    assert_int_equal(vmmu_dmc_unmap(e->c, 33 * 4096), 0);
    assert_int_equal(take_dirty(e, bm), 2);
    assert_true(page_bit(bm, 33) && page_bit(bm, 34));
    assert_int_equal(take_dirty(e, bm), 0);

    /* A pinned write mapping that an invalidation takes: what was stored
     * before it reached guest memory and is reported. */
    assert_int_equal(vmmu_dmc_map(e->c, 40 * 4096, 8, 1, &p), 0);
    memcpy(p, "stored!!", 8);
    invalidate(e, 40 * 4096, 4096);
    assert_int_equal(take_dirty(e, bm), 1);
    assert_true(page_bit(bm, 40));
    assert_int_equal(vmmu_dmc_unmap(e->c, 40 * 4096), 0);
    assert_int_equal(take_dirty(e, bm), 0);

    /* Turning logging on again starts from nothing, device bits too. */
    assert_int_equal(vmmu_dmc_write(e->c, 50 * 4096, "z", 1), 0);
    assert_int_equal(vmmu_dirty_log_enable(e->vm, region_id, true), 0);
    assert_int_equal(take_dirty(e, bm), 0);
}

/* Two write mappings held at once in one bucket: the unmap of one, and
 * the vm taking the bits, do not lose the other's later stores; its
 * unmap reports them (a page may then be reported again: the vm copies
 * it again, which costs time, never data). */
static void a_write_mapping_still_held_reports_its_stores_at_its_own_unmap(void **state)
{
    struct env *e = *state;
    uint64_t bm[4];
    (void)log_dirty(e, bm);
    void *a, *b;
    assert_int_equal(vmmu_dmc_map(e->c, 0, 8, 1, &a), 0);
    assert_int_equal(vmmu_dmc_map(e->c, 2 * 4096, 8, 1, &b), 0);
    memcpy(b, "B", 1);
    assert_int_equal(vmmu_dmc_unmap(e->c, 2 * 4096), 0);
    assert_true(take_dirty(e, bm) >= 1);
    assert_true(page_bit(bm, 2));
    memcpy(a, "A", 1); /* after the vm took the bits */
    assert_int_equal(vmmu_dmc_unmap(e->c, 0), 0);
    assert_true(take_dirty(e, bm) >= 1);
    assert_true(page_bit(bm, 0));
    /* Nothing held: nothing reported again. */
    assert_int_equal(vmmu_dmc_write(e->c, 5 * 4096, "c", 1), 0);
    assert_int_equal(take_dirty(e, bm), 1);
    assert_true(page_bit(bm, 5));
}

/* A device model that closes while it holds a write mapping: what it
 * stored is in guest memory and in the dirty log, as if it had unmapped
 * first (close unmaps everything). */
static void a_write_mapping_held_at_close_reports_its_stores(void **state)
{
    struct env *e = *state;
    uint64_t bm[4];
    (void)log_dirty(e, bm);
    void *p, *q;
    assert_int_equal(vmmu_dmc_map(e->c, 7 * 4096, 8, 1, &p), 0);
    memcpy(p, "written!", 8);
    assert_int_equal(vmmu_dmc_map(e->c, 9 * 4096, 8, 0, &q), 0); /* read only */
    vmmu_dmc_close(e->c);
    e->c = NULL;
    char back[8];
    assert_int_equal(vmmu_gpa_read(e->vm, 7 * 4096, back, 8, 0, NULL), 0);
    assert_memory_equal(back, "written!", 8);
    assert_int_equal(take_dirty(e, bm), 1);
    assert_true(page_bit(bm, 7));
}

struct dm_pump {
    struct vmmu_dmc *c;
    atomic_int stop;
};

/* The device model's loop: acknowledge invalidations until told to stop. */
static void *pump_invalidations(void *arg)
{
    struct dm_pump *p = arg;
    while (!atomic_load(&p->stop)) {
        assert_int_equal(vmmu_dmc_process(p->c), 0);
        usleep(500);
    }
    return NULL;
}

/* Device models learn of added regions with the next device access: make
 * one (vCPU 0 reads port 0x80, the device model answers). */
static void publish_tables(struct env *e)
{
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x80, 1, 0, &v), VMMU_EPENDING);
    struct vmmu_dmc_req req;
    assert_int_equal(vmmu_dmc_wait(e->c, 5000, &req), 0);
    assert_int_equal(vmmu_dmc_complete(e->c, &req, 0x11, 0), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x80, 1, 0, &v), 0);
    assert_int_equal(v, 0x11);
}

/* A region that a device model wrote to is removed before anyone took its
 * device dirty bits; the next region gets its span of the memfd and starts
 * with dirty logging on: its log is empty (the bits went with the old
 * region), and the device model's writes to the new one are logged. */
static void a_region_reusing_a_span_does_not_inherit_device_dirty_bits(void **state)
{
    struct env *e = *state;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0x400000, .size = 0x10000};
    uint32_t old_id, new_id;
    assert_int_equal(vmmu_region_add(e->vm, &d, &old_id), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x80, 4, 0, NULL), 0);
    publish_tables(e);
    for (uint64_t p = 0; p < 16; p++)
        assert_int_equal(vmmu_dmc_write(e->c, 0x400000 + p * 4096, "w", 1), 0);
    struct vmmu_region_info old_info;
    assert_int_equal(vmmu_region_info(e->vm, old_id, &old_info), 0);

    struct dm_pump pump = {.c = e->c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pump_invalidations, &pump), 0);
    assert_int_equal(vmmu_region_remove(e->vm, old_id), 0);
    atomic_store(&pump.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);

    d.gpa = 0x800000;
    d.flags = VMMU_REGION_LOG_DIRTY;
    assert_int_equal(vmmu_region_add(e->vm, &d, &new_id), 0);
    publish_tables(e);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(e->vm, new_id, &info), 0);
    assert_int_equal(info.memfd_offset, old_info.memfd_offset); /* the same span */
    uint64_t bm[1] = {0}, n = ~0ull;
    assert_int_equal(vmmu_dirty_log_get_and_clear(e->vm, new_id, bm, 1, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(bm[0], 0);
    assert_int_equal(vmmu_dmc_write(e->c, 0x800000 + 5 * 4096, "n", 1), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(e->vm, new_id, bm, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(bm[0], 1ull << 5);
}

struct host_wait {
    struct env *e;
    struct vmmu_vcpu *v;
    atomic_int seen, shot, gave_up;
    int rc;
    uint64_t value;
};

/* A vCPU's thread, online, makes a host access (vcpu_id -1) to the
 * out-of-process server, which waits for the answer. */
static void *host_access_on_vcpu_thread(void *arg)
{
    struct host_wait *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->v), 0);
    h->rc = vmmu_dm_port_access(h->e->dm, -1, 0x81, 1, 0, &h->value);
    assert_int_equal(vmmu_vcpu_offline(h->v), 0);
    return NULL;
}

/* The device model: answers only once the shootdown has returned (or,
 * after 10 s, gives up waiting for it and answers anyway). */
static void *answer_after_the_shootdown(void *arg)
{
    struct host_wait *h = arg;
    struct vmmu_dmc_req req;
    assert_int_equal(vmmu_dmc_wait(h->e->c, 5000, &req), 0);
    atomic_store(&h->seen, 1);
    for (int i = 0; i < 10000 && !atomic_load(&h->shot); i++)
        usleep(1000);
    atomic_store(&h->gave_up, !atomic_load(&h->shot));
    assert_int_equal(vmmu_dmc_complete(h->e->c, &req, 0x5a, 0), 0);
    return NULL;
}

/* A host access to a device model waits up to the server's deadline; a
 * vCPU thread that makes one waits offline, so a synchronous shootdown
 * meanwhile does not wait for the device model (it used to: the vCPU
 * waited online). */
static void a_host_access_on_a_vcpu_thread_waits_offline(void **state)
{
    struct env *e = *state;
    struct host_wait h = {.e = e};
    assert_int_equal(vmmu_vcpu_create(e->vm, NULL, &h.v), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x80, 4, 0, NULL), 0);
    pthread_t dev, cpu;
    assert_int_equal(pthread_create(&dev, NULL, answer_after_the_shootdown, &h), 0);
    assert_int_equal(pthread_create(&cpu, NULL, host_access_on_vcpu_thread, &h), 0);
    while (!atomic_load(&h.seen))
        usleep(1000);
    static const struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(e->vm, NULL, NULL, &all), 0);
    atomic_store(&h.shot, 1);
    assert_int_equal(pthread_join(dev, NULL), 0);
    assert_int_equal(pthread_join(cpu, NULL), 0);
    assert_int_equal(atomic_load(&h.gave_up), 0);
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.value, 0x5a);
    vmmu_vcpu_destroy(h.v);
}

struct inval_wait {
    struct env *e;
    struct vmmu_vcpu *v;
    uint32_t region; /* 0: invalidate a range; else remove this region */
    atomic_int shot, gave_up, done;
    int rc;
};

/* A vCPU's thread, online, invalidates a range or removes a RAM region
 * (whose reclaim invalidates it): it waits for the out-of-process device
 * model's acknowledgement. */
static void *invalidate_on_vcpu_thread(void *arg)
{
    struct inval_wait *h = arg;
    assert_int_equal(vmmu_vcpu_online(h->v), 0);
    if (h->region)
        h->rc = vmmu_region_remove(h->e->vm, h->region);
    else
        h->rc = vmmu_dm_invalidate(h->e->dm, 0x3000, 0x2000);
    assert_int_equal(vmmu_vcpu_offline(h->v), 0);
    atomic_store(&h->done, 1);
    return NULL;
}

/* The device model: acknowledges only once the shootdown has returned
 * (or, after 10 s, gives up waiting for it and acknowledges anyway). */
static void *ack_after_the_shootdown(void *arg)
{
    struct inval_wait *h = arg;
    for (int i = 0; i < 10000 && !atomic_load(&h->shot); i++)
        usleep(1000);
    atomic_store(&h->gave_up, !atomic_load(&h->shot));
    while (!atomic_load(&h->done)) {
        assert_int_equal(vmmu_dmc_process(h->e->c), 0);
        usleep(1000);
    }
    return NULL;
}

/* vmmu_dm_invalidate() waits for the device models up to their deadline;
 * a vCPU thread that calls it, or removes a region, waits offline, so a
 * synchronous shootdown meanwhile does not wait for the device model (it
 * used to: the vCPU waited online, holding the shootdown up until the
 * acknowledgement, or the device model's deadline). */
static void check_invalidation_waits_offline(struct env *e, uint32_t region)
{
    struct inval_wait h = {.e = e, .region = region};
    assert_int_equal(vmmu_vcpu_create(e->vm, NULL, &h.v), 0);
    uint64_t posted = atomic_load(&e->dm->inval_posted);
    pthread_t dev, cpu;
    assert_int_equal(pthread_create(&dev, NULL, ack_after_the_shootdown, &h), 0);
    assert_int_equal(pthread_create(&cpu, NULL, invalidate_on_vcpu_thread, &h), 0);
    /* The invalidation is sent: the vCPU thread now waits for the ack. */
    while (atomic_load(&e->dm->inval_posted) == posted)
        usleep(1000);
    static const struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(e->vm, NULL, NULL, &all), 0);
    atomic_store(&h.shot, 1);
    assert_int_equal(pthread_join(cpu, NULL), 0);
    assert_int_equal(pthread_join(dev, NULL), 0);
    assert_int_equal(atomic_load(&h.gave_up), 0);
    assert_int_equal(h.rc, 0);
    struct vmmu_dm_server_stats ss;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &ss), 0);
    assert_int_equal(ss.invalidations, 1);
    assert_int_equal(ss.dead, 0);
    vmmu_vcpu_destroy(h.v);
}

static void an_invalidation_on_a_vcpu_thread_waits_offline(void **state)
{
    check_invalidation_waits_offline(*state, 0);
}

static void a_region_removal_on_a_vcpu_thread_waits_for_device_models_offline(void **state)
{
    struct env *e = *state;
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0x400000, .size = 0x10000};
    uint32_t id;
    assert_int_equal(vmmu_region_add(e->vm, &ram, &id), 0);
    check_invalidation_waits_offline(e, id);
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(e->vm, 0x400000, &pe), 0);
    assert_int_equal(pe.type, VMMU_MEM_HOLE);
}

static void a_mapcache_smaller_than_a_bucket_is_refused(void **state)
{
    struct env *e = *state;
    int sv[2];
    struct vmmu_dm_server *srv;
    struct vmmu_dmc *c = NULL;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], NULL, &srv), 0);
    struct vmmu_dmc_config small = {.mapcache_bytes = BUCKET - 4096};
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], &small, &c), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_check(srv), VMMU_EDEAD); /* it hung up */
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
    small.mapcache_bytes = 4096;
    small.bucket_shift = 12;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sv[0], NULL, &srv), 0);
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], &small, &c), 0);
    void *p;
    assert_int_equal(vmmu_dmc_map(c, 0x5000, 8, 0, &p), 0);
    assert_int_equal(vmmu_dmc_unmap(c, 0x5000), 0);
    assert_int_equal(vmmu_dmc_map(c, 0x7000, 8, 0, &p), 0); /* evicts the first */
    assert_int_equal(vmmu_dmc_unmap(c, 0x7000), 0);
    vmmu_dmc_close(c);
    assert_int_equal(vmmu_dm_server_destroy(srv), 0);
}

/* vmmu_dmc_complete() on a slot that is not in service, or completing the
 * same request twice, is VMMU_EPROTO and does not touch the answer the
 * vCPU gets.  (Other slots and sequences: test_api_args.) */
static void completing_a_slot_no_longer_in_service_is_eproto(void **state)
{
    struct env *e = *state;
    const uint64_t dev = 0x200000;
    assert_int_equal(vmmu_dm_map_mmio(e->srv, dev, 4096, 0, NULL, NULL), 0);
    struct vmmu_device_req io = {.gpa = dev + 16, .size = 4, .vcpu_id = 1};
    assert_int_equal(vmmu_p2m_device_access(e->vm, &io), VMMU_EPENDING);
    struct vmmu_dmc_req r;
    assert_int_equal(vmmu_dmc_wait(e->c, 0, &r), 0);
    assert_int_equal(r.vcpu_id, 1);
    struct vmmu_dmc_req other = r;
    other.slot = r.slot == 0 ? 1 : 0; /* nothing in service there */
    assert_int_equal(vmmu_dmc_complete(e->c, &other, 4, 0), VMMU_EPROTO);
    assert_int_equal(vmmu_dmc_complete(e->c, &r, 0xabcd, 0), 0);
    assert_int_equal(vmmu_dmc_complete(e->c, &r, 6, 1), VMMU_EPROTO); /* answered already */
    assert_int_equal(vmmu_p2m_device_access(e->vm, &io), 0);
    assert_int_equal(io.data, 0xabcd);
    /* Taken by the vm: completing it now is no better. */
    assert_int_equal(vmmu_dmc_complete(e->c, &r, 7, 0), VMMU_EPROTO);
    struct vmmu_dmc_stats st;
    assert_int_equal(vmmu_dmc_stats(e->c, &st), 0);
    assert_int_equal(st.requests, 1);
    struct vmmu_dm_server_stats ss;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &ss), 0);
    assert_int_equal(ss.requests, 1);
    assert_int_equal(ss.proto_errors, 0);
}

/* A page-in handler that serves a device model's request for paged-out
 * memory runs while the device model waits for the answer and
 * acknowledges no invalidation: whatever would wait for device models, or
 * for the change lock whose holder may (a page-out waiting for this very
 * device model's acknowledgement), returns VMMU_EBUSY there and changes
 * nothing, instead of waiting for the device model until its deadline.
 * The same calls from the handler on a host thread go ahead. */
struct busy_pagein {
    struct env *e;
    struct vmmu_pager *pager;
    uint32_t spare_id; /* a region the handler tries to remove */
    int calls;
    int state_rc, inval_rc, remove_rc, pageout_rc;
};

static int busy_page_in(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct busy_pagein *b = opaque;
    b->calls++;
    struct vmmu_gpa_range page = {gpa & ~0xfffull, 0x1000}, other = {0x9000, 0x1000};
    b->state_rc = vmmu_page_state_change(vm, &page, 1, 0, VMMU_PAGE_DIRTY);
    b->pageout_rc = vmmu_pager_page_out(b->pager, &other, 1);
    b->remove_rc = vmmu_region_remove(vm, b->spare_id);
    return vmmu_pager_page_in(b->pager, &page, 1);
}

static int busy_page_in_for_a_device(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct busy_pagein *b = opaque;
    b->inval_rc = vmmu_dm_invalidate(b->e->dm, 0x80000, 0x1000);
    return busy_page_in(opaque, vm, gpa);
}

static void a_page_in_for_a_device_model_refuses_what_would_wait_for_it(void **state)
{
    struct env *e = *state;
    struct busy_pagein b = {.e = e, .state_rc = 1, .inval_rc = 1, .remove_rc = 1, .pageout_rc = 1};
    assert_int_equal(vmmu_pager_create(e->vm, NULL, &b.pager), 0);
    struct vmmu_region_desc spare = {.type = VMMU_MEM_RAM, .gpa = 0x200000, .size = 0x1000};
    assert_int_equal(vmmu_region_add(e->vm, &spare, &b.spare_id), 0);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x5000, "precious", 8, 0, NULL), 0);
    page_out(b.pager, e->c, NULL, 0x5000);
    assert_int_equal(vmmu_p2m_set_pagein_handler(e->vm, busy_page_in_for_a_device, &b), 0);

    /* The device model reads the page: its request is served in the vm. */
    char buf[8];
    assert_int_equal(vmmu_dmc_read(e->c, 0x5000, buf, 8), 0);
    assert_memory_equal(buf, "precious", 8);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.state_rc, VMMU_EBUSY);
    assert_int_equal(b.inval_rc, VMMU_EBUSY);
    assert_int_equal(b.pageout_rc, VMMU_EBUSY);
    assert_int_equal(b.remove_rc, VMMU_EBUSY);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(e->vm, b.spare_id, &info), 0); /* still there */
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(e->vm, 0x9000, &st), 0);
    assert_false(st & VMMU_PAGE_PAGED_OUT);

    /* On a host thread the same calls go ahead (the device model is not
     * waiting: its thread is this one, idle). */
    page_out(b.pager, e->c, NULL, 0x5000);
    assert_int_equal(vmmu_p2m_set_pagein_handler(e->vm, busy_page_in, &b), 0);
    b.state_rc = b.remove_rc = b.pageout_rc = 1;
    struct pump p = {.c = {e->c}, .n = 1};
    assert_int_equal(pthread_create(&p.thread, NULL, pump_run, &p), 0);
    char host[8];
    assert_int_equal(vmmu_gpa_read(e->vm, 0x5000, host, 8, 0, NULL), 0);
    atomic_store(&p.stop, 1);
    pthread_join(p.thread, NULL);
    assert_memory_equal(host, "precious", 8);
    assert_int_equal(b.calls, 2);
    assert_int_equal(b.state_rc, 0);
    assert_int_equal(b.pageout_rc, 0);
    assert_int_equal(b.remove_rc, 0);
    assert_int_equal(vmmu_page_state_get(e->vm, 0x9000, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    assert_int_equal(vmmu_region_info(e->vm, b.spare_id, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_p2m_set_pagein_handler(e->vm, NULL, NULL), 0);
    assert_int_equal(vmmu_pager_destroy(b.pager), 0);
}

/* A device model's request for several paged-out pages whose page-ins
 * each wait (offline: a grace period may pass): the vm goes on with the
 * next page, looking it up afresh, and answers once a pass over the range
 * waited for nothing, so one request brings them all back.  (It used to
 * answer "again" at the first wait: with more pages than the device
 * model's rounds, the read failed.) */
struct waiting_pagein {
    struct vmmu_pager *pager;
    int calls;
};

static int page_in_after_a_wait(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    struct waiting_pagein *w = opaque;
    w->calls++;
    struct vmmu__blocked b = vmmu__sync_block_begin(); /* what a lock wait does */
    vmmu__sync_block_end(b);
    struct vmmu_gpa_range r = {gpa & ~0xfffull, 0x1000};
    return vmmu_pager_page_in(w->pager, &r, 1);
}

static void a_device_models_page_in_of_many_pages_that_each_wait_is_one_request(void **state)
{
    struct env *e = *state;
    enum { PAGES = 6 };
    struct waiting_pagein w = {0};
    assert_int_equal(vmmu_pager_create(e->vm, NULL, &w.pager), 0);
    static uint8_t data[PAGES * 4096], back[PAGES * 4096];
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x10000, data, sizeof(data), 0, NULL), 0);
    for (unsigned i = 0; i < PAGES; i++)
        page_out(w.pager, e->c, NULL, 0x10000 + i * 4096ull);
    assert_int_equal(vmmu_p2m_set_pagein_handler(e->vm, page_in_after_a_wait, &w), 0);
    uint64_t before = dmc_page_ins(e->c);
    assert_int_equal(vmmu_dmc_read(e->c, 0x10000, back, sizeof(back)), 0);
    assert_memory_equal(back, data, sizeof(data));
    assert_int_equal(dmc_page_ins(e->c) - before, 1);
    assert_int_equal(w.calls, PAGES);
    assert_int_equal(vmmu_p2m_set_pagein_handler(e->vm, NULL, NULL), 0);
    assert_int_equal(vmmu_pager_destroy(w.pager), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(mapped_memory_is_the_guests_memory_both_ways, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_second_map_of_the_same_bucket_is_a_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            maps_are_refused_across_buckets_holes_and_read_only_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_helpers_span_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(unpinned_buckets_are_evicted_least_recently_used_first,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(invalidation_drops_mappings_and_the_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_pinned_mapping_becomes_harmless_when_invalidated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(device_models_bring_paged_out_pages_back_and_never_see_the_hole,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            an_unmap_never_releases_a_mapping_still_in_use_beside_an_older_one, setup, teardown),
        cmocka_unit_test_setup_teardown(
            pinned_buckets_taken_over_in_a_chain_are_each_released_by_their_unmap, setup, teardown),
        cmocka_unit_test_setup_teardown(
            regions_beyond_a_full_table_are_reached_through_the_page_in_service, setup, teardown),
        cmocka_unit_test_setup_teardown(a_device_models_writes_are_in_the_dirty_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_write_mapping_still_held_reports_its_stores_at_its_own_unmap,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_write_mapping_held_at_close_reports_its_stores, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_region_reusing_a_span_does_not_inherit_device_dirty_bits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_host_access_on_a_vcpu_thread_waits_offline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_invalidation_on_a_vcpu_thread_waits_offline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_region_removal_on_a_vcpu_thread_waits_for_device_models_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(a_mapcache_smaller_than_a_bucket_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(completing_a_slot_no_longer_in_service_is_eproto,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_page_in_for_a_device_model_refuses_what_would_wait_for_it, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_device_models_page_in_of_many_pages_that_each_wait_is_one_request, setup, teardown),
        cmocka_unit_test(a_slow_page_in_does_not_make_the_device_model_late),
        cmocka_unit_test(a_device_model_connects_by_socket_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
