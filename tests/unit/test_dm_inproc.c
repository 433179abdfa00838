/* Device models, in-process servers: routing of MMIO regions and port
 * ranges, answers at once and later (the pending/retry flow), and refusals. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "vmmu/vmmu.h"

#define DEV_GPA 0x100000ull

struct dev {
    uint64_t reg[8];
    int pend_next;       /* answer the next access later */
    int fail_next;       /* fail the next access */
    int calls;
    struct vmmu_dm_ioreq last;
    struct vmmu_dm_ioreq pending; /* the last request left pending */
};

static int dev_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct dev *d = opaque;
    d->calls++;
    d->last = *req;
    if (d->fail_next) {
        d->fail_next = 0;
        return -1;
    }
    if (d->pend_next) {
        d->pend_next = 0;
        d->pending = *req;
        return VMMU_EPENDING;
    }
    unsigned idx = (unsigned)(req->offset / 8) % 8;
    if (req->write)
        d->reg[idx] = req->data;
    else
        req->data = d->reg[idx] + (req->space == VMMU_DM_SPACE_PIO ? 0x1000 : 0);
    return 0;
}

static const struct vmmu_dm_ops dev_ops = {.access = dev_access};

struct env {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    struct dev dev;
    uint32_t region;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(vmmu_vm_create(NULL, &e->vm), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 4};
    assert_int_equal(vmmu_dm_create(e->vm, &cfg, &e->dm), 0);
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &dev_ops, &e->dev, &e->srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA, 4096, 0, (void *)0x77, &e->region), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    vmmu_dm_destroy(e->dm);
    vmmu_vm_destroy(e->vm);
    free(e);
    return 0;
}

static int mmio(struct env *e, int vcpu, uint64_t gpa, unsigned size, int write, uint64_t *val)
{
    struct vmmu_device_req r = {.gpa = gpa, .size = size, .write = write,
                                .data = write ? *val : 0, .vcpu_id = vcpu};
    int err = vmmu_p2m_device_access(e->vm, &r);
    if (!err && !write)
        *val = r.data;
    return err;
}

static void mmio_write_then_read_reaches_the_callback_with_offset_and_opaque(void **state)
{
    struct env *e = *state;
    uint64_t v = 0x1122334455667788ull;
    assert_int_equal(mmio(e, 0, DEV_GPA + 16, 8, 1, &v), 0);
    assert_int_equal(e->dev.last.offset, 16);
    assert_int_equal(e->dev.last.addr, DEV_GPA + 16);
    assert_int_equal(e->dev.last.space, VMMU_DM_SPACE_MMIO);
    assert_ptr_equal(e->dev.last.range_opaque, (void *)0x77);
    assert_int_equal(e->dev.last.vcpu_id, 0);
    v = 0;
    assert_int_equal(mmio(e, 1, DEV_GPA + 16, 8, 0, &v), 0);
    assert_int_equal(v, 0x1122334455667788ull);
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(e->vm, DEV_GPA, &pe), 0);
    assert_int_equal(pe.type, VMMU_MEM_DEVICE);
    assert_int_equal(pe.region_id, e->region);
}

static void pending_answer_completes_on_reexecution_of_the_same_access(void **state)
{
    struct env *e = *state;
    e->dev.pend_next = 1;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 2, DEV_GPA + 8, 4, 0, &v), VMMU_EPENDING);
    assert_int_equal(e->dev.calls, 1);
    /* Not answered yet: re-execution pends again without calling back. */
    assert_int_equal(mmio(e, 2, DEV_GPA + 8, 4, 0, &v), VMMU_EPENDING);
    assert_int_equal(e->dev.calls, 1);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 0xabcdef0123ull, 0), 0);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 2, 0), 0);
    assert_int_equal(mmio(e, 2, DEV_GPA + 8, 4, 0, &v), 0);
    assert_int_equal(v, 0xcdef0123ull); /* masked to the access size */
    assert_int_equal(e->dev.calls, 1);
    /* The slot is free again: the next access calls back. */
    assert_int_equal(mmio(e, 2, DEV_GPA + 8, 4, 0, &v), 0);
    assert_int_equal(e->dev.calls, 2);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_true(st.pending >= 1);
}

static void pending_completed_with_an_error_fails_with_edevice(void **state)
{
    struct env *e = *state;
    e->dev.pend_next = 1;
    uint64_t v = 5;
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 1, &v), VMMU_EPENDING);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 0, -1), 0);
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 1, &v), VMMU_EDEVICE);
}

static void a_different_access_while_one_is_pending_is_busy(void **state)
{
    struct env *e = *state;
    e->dev.pend_next = 1;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 0, &v), VMMU_EPENDING);
    assert_int_equal(mmio(e, 1, DEV_GPA + 8, 8, 0, &v), VMMU_EBUSY);
    v = 1;
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 1, &v), VMMU_EBUSY); /* a write is different */
    /* Other vCPUs are not affected. */
    assert_int_equal(mmio(e, 3, DEV_GPA + 8, 8, 0, &v), 0);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 9, 0), 0);
    /* Once answered, a different access abandons the answer and proceeds. */
    assert_int_equal(mmio(e, 1, DEV_GPA + 8, 8, 0, &v), 0);
}

static void completing_what_is_not_pending_is_refused(void **state)
{
    struct env *e = *state;
    struct vmmu_dm_ioreq r = {.vcpu_id = 0, .seq = 1};
    assert_int_equal(vmmu_dm_complete(e->srv, &r, 1, 0), VMMU_ENOENT);
    r.vcpu_id = 4;
    assert_int_equal(vmmu_dm_complete(e->srv, &r, 1, 0), VMMU_EINVAL);
    r.vcpu_id = -1;
    assert_int_equal(vmmu_dm_complete(e->srv, &r, 1, 0), VMMU_EINVAL);
    r.vcpu_id = 0;
    assert_int_equal(vmmu_dm_complete(NULL, &r, 1, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_complete(e->srv, NULL, 1, 0), VMMU_EINVAL);
    e->dev.pend_next = 1;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 0, &v), VMMU_EPENDING);
    /* An answer to another request of the vCPU (an earlier one that timed
     * out, say) is not this one's. */
    r = e->dev.pending;
    r.seq--;
    assert_int_equal(vmmu_dm_complete(e->srv, &r, 7, 0), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 1, 0), 0);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 2, 0), VMMU_ENOENT); /* twice */
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 0, &v), 0);
    assert_int_equal(v, 1);
}

static void callback_failure_is_reported_as_edevice(void **state)
{
    struct env *e = *state;
    e->dev.fail_next = 1;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 0, DEV_GPA, 4, 0, &v), VMMU_EDEVICE);
}

static void host_access_may_not_pend(void **state)
{
    struct env *e = *state;
    e->dev.pend_next = 1;
    uint64_t v = 0;
    assert_int_equal(mmio(e, -1, DEV_GPA, 4, 0, &v), VMMU_EDEVICE);
    assert_int_equal(mmio(e, -1, DEV_GPA, 4, 0, &v), 0); /* and answers at once otherwise */
}

static void vcpu_ids_beyond_the_configured_count_are_invalid(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 4, DEV_GPA, 4, 0, &v), VMMU_EINVAL);
    assert_int_equal(mmio(e, -2, DEV_GPA, 4, 0, &v), VMMU_EINVAL);
    assert_int_equal(e->dev.calls, 0);
}

static void ports_route_to_their_range_and_refuse_straddling_accesses(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x3f8, 8, 0, NULL), 0);
    uint64_t v = 0x55;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 1, 1, &v), 0);
    assert_int_equal(e->dev.last.space, VMMU_DM_SPACE_PIO);
    assert_int_equal(e->dev.last.offset, 0);
    v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 1, 0, &v), 0);
    assert_int_equal(v, (0x55 + 0x1000) & 0xff);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3fe, 4, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x400, 1, 0, &v), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 8, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 3, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 1, 0, NULL), VMMU_EINVAL);
}

static void port_ranges_may_not_overlap_or_wrap(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x60, 4, 0, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x63, 1, 0, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x5f, 2, 0, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x64, 1, 0, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0xffff, 2, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x70, 0, 0, NULL), VMMU_EINVAL);
    /* buffered needs a ring, which an in-process server has not */
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x70, 1, VMMU_DM_RANGE_BUFFERED, NULL),
                     VMMU_EINVAL);
}

static void mmio_ranges_follow_region_rules(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA, 4096, 0, NULL, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA + 0x10001, 4096, 0, NULL, NULL),
                     VMMU_EALIGN);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA + 0x10000, 4096, 8, NULL, NULL),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_mmio(NULL, DEV_GPA + 0x10000, 4096, 0, NULL, NULL),
                     VMMU_EINVAL);
}

static void a_device_region_nobody_serves_fails_with_edevice(void **state)
{
    struct env *e = *state;
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = 0x200000, .size = 4096,
                                 .opaque = (void *)0xdeadbeef};
    assert_int_equal(vmmu_region_add(e->vm, &d, NULL), 0);
    uint64_t v = 0;
    assert_int_equal(mmio(e, 0, 0x200000, 4, 0, &v), VMMU_EDEVICE);
    assert_int_equal(e->dev.calls, 0);
}

static void destroying_a_server_removes_its_regions(void **state)
{
    struct env *e = *state;
    vmmu_dm_server_destroy(e->srv);
    e->srv = NULL;
    struct vmmu_p2m_entry pe;
    assert_int_equal(vmmu_p2m_lookup(e->vm, DEV_GPA, &pe), 0);
    assert_int_equal(pe.type, VMMU_MEM_HOLE);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x3f8, 1, 0, &v), VMMU_ENOENT);
}

static void layer_refuses_bad_arguments_and_a_second_instance(void **state)
{
    struct env *e = *state;
    struct vmmu_dm *dm2 = NULL;
    assert_int_equal(vmmu_dm_create(e->vm, NULL, &dm2), VMMU_EINVAL); /* handler taken */
    assert_int_equal(vmmu_dm_create(NULL, NULL, &dm2), VMMU_EINVAL);
    struct vmmu_vm *vm2;
    assert_int_equal(vmmu_vm_create(NULL, &vm2), 0);
    struct vmmu_dm_config big = {.max_vcpus = VMMU_DM_MAX_VCPUS + 1};
    assert_int_equal(vmmu_dm_create(vm2, &big, &dm2), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_create(vm2, NULL, NULL), VMMU_EINVAL);
    vmmu_vm_destroy(vm2);
    struct vmmu_dm_ops none = {0};
    struct vmmu_dm_server *s;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &none, NULL, &s), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, -1, NULL, &s), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 9, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, 0), 0); /* nothing outstanding */
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate(e->dm, ~0ull, 2), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_stats(NULL, NULL), VMMU_EINVAL);
    vmmu_dm_destroy(NULL);
    vmmu_dm_server_destroy(NULL);
}

static void safe_point_is_free_until_an_async_invalidation_marks_the_vcpu(void **state)
{
    struct env *e = *state;
    const uint32_t *flags = vmmu_dm_vcpu_flags(e->dm, 1);
    assert_int_equal(*flags, 0);
    assert_int_equal(vmmu_dm_vcpu_safe_point(e->dm, 1, flags), 0);
    uint64_t ticket = 0;
    assert_int_equal(vmmu_dm_invalidate_async(e->dm, 0, 4096, &ticket), 0);
    assert_true(ticket > 0);
    assert_int_equal(*flags, 1);
    /* No out-of-process server: the invalidation completes at the safe point. */
    assert_int_equal(vmmu_dm_vcpu_safe_point(e->dm, 1, flags), 0);
    assert_int_equal(*flags, 0);
    assert_int_equal(vmmu_dm_invalidate_wait(e->dm, ticket), 0);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
}

/* Values are zero-extended to the access size (vmmu/p2m.h), whatever the
 * callback leaves above it, as on the port path and for answers given
 * later: a 4-byte read of a register holding all ones reads 0xffffffff,
 * and a 1-byte write reaches the callback as one byte. */
static void mmio_values_are_zero_extended_to_the_access_size(void **state)
{
    struct env *e = *state;
    uint64_t v = ~0ull;
    assert_int_equal(mmio(e, 0, DEV_GPA + 8, 8, 1, &v), 0);
    v = 0;
    assert_int_equal(mmio(e, 0, DEV_GPA + 8, 4, 0, &v), 0);
    assert_int_equal(v, 0xffffffffull);
    assert_int_equal(mmio(e, 0, DEV_GPA + 8, 1, 0, &v), 0);
    assert_int_equal(v, 0xff);
    assert_int_equal(mmio(e, 0, DEV_GPA + 8, 8, 0, &v), 0);
    assert_int_equal(v, ~0ull);
    struct vmmu_device_req r = {.gpa = DEV_GPA + 16, .size = 1, .write = 1, .data = 0x1a5,
                                .vcpu_id = 0};
    assert_int_equal(vmmu_p2m_device_access(e->vm, &r), 0);
    assert_int_equal(e->dev.last.data, 0xa5);
    assert_int_equal(e->dev.reg[2], 0xa5);
}

static struct vmmu_dm_server_stats stats_of(struct vmmu_dm_server *srv)
{
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(srv, &st), 0);
    return st;
}

/* requests counts each access once when it is over (answered or failed),
 * pending each time an access returned VMMU_EPENDING, re-executions that
 * still wait included. */
static void server_counters_count_served_accesses_and_each_pend(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 0, &v), 0);
    e->dev.fail_next = 1;
    assert_int_equal(mmio(e, 0, DEV_GPA, 8, 0, &v), VMMU_EDEVICE);
    struct vmmu_dm_server_stats st = stats_of(e->srv);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.pending, 0);
    e->dev.pend_next = 1;
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 0, &v), VMMU_EPENDING);
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 0, &v), VMMU_EPENDING); /* not answered yet */
    st = stats_of(e->srv);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.pending, 2);
    assert_int_equal(vmmu_dm_complete(e->srv, &e->dev.pending, 5, 0), 0);
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 0, &v), 0);
    st = stats_of(e->srv);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.buffered, 0);
    assert_int_equal(st.invalidations, 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.dead_reason, 0);
}

/* At most 256 MMIO ranges: the 257th is refused with VMMU_ELIMIT and
 * leaves no DEVICE region behind. */
static void a_257th_mmio_range_is_refused_with_elimit_and_adds_no_region(void **state)
{
    struct env *e = *state;
    /* setup mapped one range; 255 more. */
    for (uint64_t i = 1; i < 256; i++)
        assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA + i * 4096, 4096, 0, NULL, NULL), 0);
    const uint64_t gpa = DEV_GPA + 256 * 4096;
    assert_int_equal(vmmu_dm_map_mmio(e->srv, gpa, 4096, 0, NULL, NULL), VMMU_ELIMIT);
    uint32_t id;
    assert_int_equal(vmmu_region_find(e->vm, gpa, &id), VMMU_EHOLE);
    uint64_t v = 9;
    assert_int_equal(mmio(e, 0, DEV_GPA + 255 * 4096, 8, 1, &v), 0);
}

/* vmmu_region_remove() of a range's DEVICE region unmaps the range (there
 * is no other way short of destroying the server): the range no longer
 * counts toward the 256, so a device whose window the guest moves again
 * and again (a PCI BAR) can always map it anew.  Before, each removed
 * range kept its place and the 256th move failed with VMMU_ELIMIT. */
static void ranges_whose_region_was_removed_do_not_count_toward_the_limit(void **state)
{
    struct env *e = *state;
    /* setup mapped one range at DEV_GPA; it stays mapped throughout. */
    const uint64_t bar = DEV_GPA + 0x100000;
    for (unsigned i = 0; i < 600; i++) {
        uint32_t id;
        uint64_t gpa = bar + (i % 3) * 4096;
        assert_int_equal(vmmu_dm_map_mmio(e->srv, gpa, 4096, 0, (void *)0x88, &id), 0);
        uint64_t v = i;
        assert_int_equal(mmio(e, 0, gpa, 8, 1, &v), 0);
        assert_int_equal(vmmu_region_remove(e->vm, id), 0);
    }
    /* The range mapped by setup still routes, and the table still fills
     * up to 256 live ranges and refuses the 257th. */
    uint64_t v = 5;
    assert_int_equal(mmio(e, 1, DEV_GPA, 8, 1, &v), 0);
    for (uint64_t i = 1; i < 256; i++)
        assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA + i * 4096, 4096, 0, NULL, NULL), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, bar, 4096, 0, NULL, NULL), VMMU_ELIMIT);
    uint32_t id;
    assert_int_equal(vmmu_region_find(e->vm, bar, &id), VMMU_EHOLE);
    /* Removing one of them makes room for one more. */
    assert_int_equal(vmmu_region_find(e->vm, DEV_GPA + 7 * 4096, &id), 0);
    assert_int_equal(vmmu_region_remove(e->vm, id), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, bar, 4096, 0, NULL, NULL), 0);
    assert_int_equal(mmio(e, 2, bar, 8, 1, &v), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, bar + 4096, 4096, 0, NULL, NULL), VMMU_ELIMIT);
    /* Destroying the server removes the live ranges' regions only. */
    assert_int_equal(vmmu_dm_server_destroy(e->srv), 0);
    e->srv = NULL;
    assert_int_equal(vmmu_region_find(e->vm, DEV_GPA, &id), VMMU_EHOLE);
    assert_int_equal(vmmu_region_find(e->vm, bar, &id), VMMU_EHOLE);
}

/* A request left pending on a server that is then destroyed is dropped:
 * the vCPU has nothing outstanding any more (its wait returns at once,
 * a different access is not busy), and the re-executed access finds no
 * server: VMMU_ENOENT for a port, no DEVICE page for MMIO. */
static void destroying_a_server_drops_its_pending_requests(void **state)
{
    struct env *e = *state;
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x3f8, 8, 0, NULL), 0);
    uint64_t v = 0;
    e->dev.pend_next = 1;
    assert_int_equal(mmio(e, 0, DEV_GPA, 4, 0, &v), VMMU_EPENDING);
    e->dev.pend_next = 1;
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, 0x3f8, 1, 0, &v), VMMU_EPENDING);
    assert_int_equal(vmmu_dm_server_destroy(e->srv), 0);
    e->srv = NULL;
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, 0), 0);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 1, 0), 0);
    assert_int_equal(mmio(e, 0, DEV_GPA, 4, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, 0x3f8, 1, 0, &v), VMMU_ENOENT);
    /* A new server on the same port serves vCPU 1 at once, not busy. */
    struct vmmu_dm_server *srv;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &dev_ops, &e->dev, &srv), 0);
    assert_int_equal(vmmu_dm_map_ports(srv, 0x3f8, 8, 0, NULL), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, 0x3f8, 1, 0, &v), 0);
}

static void a_65th_port_range_is_refused_with_elimit(void **state)
{
    struct env *e = *state;
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(vmmu_dm_map_ports(e->srv, (uint16_t)(0x1000 + 4 * i), 2, 0, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x2000, 1, 0, NULL), VMMU_ELIMIT);
    /* The 64 ranges still route. */
    uint64_t v = 7;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x1000 + 4 * 63 + 1, 1, 1, &v), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x2000, 1, 1, &v), VMMU_ENOENT);
}

/* ---- accesses made from inside a callback ------------------------------------ */

/* A bus-like device on port 0x10: its callback forwards each access to
 * port @to_port as @to_vcpu and answers with what that returned.  Its
 * other ports answer 0x66 at once. */
struct bus {
    struct vmmu_dm *dm;
    int to_vcpu;
    uint16_t to_port;
    int nested_rc;
    uint64_t nested_val;
    bool pend;                  /* answer the forwarded access later */
    struct vmmu_dm_ioreq saved; /* the access left pending */
};

static int bus_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct bus *b = opaque;
    if (req->addr != 0x10) {
        req->data = 0x66;
        return 0;
    }
    b->nested_val = 0;
    b->nested_rc = vmmu_dm_port_access(b->dm, b->to_vcpu, b->to_port, 1, 0, &b->nested_val);
    if (b->pend) {
        b->saved = *req;
        return VMMU_EPENDING;
    }
    req->data = b->nested_val;
    return 0;
}

static const struct vmmu_dm_ops bus_ops = {.access = bus_access};

struct host_call {
    struct vmmu_dm *dm;
    uint16_t port;
    int rc;
    uint64_t val;
    atomic_bool done;
};

static void *host_call_run(void *arg)
{
    struct host_call *c = arg;
    c->rc = vmmu_dm_port_access(c->dm, -1, c->port, 1, 0, &c->val);
    atomic_store(&c->done, true);
    return NULL;
}

/* A host read of @port on a thread of its own; fails the test if it has
 * not returned within 20 s (a deadlock; it then leaks the stuck thread). */
static void host_read_or_fail(struct vmmu_dm *dm, uint16_t port, int *rc, uint64_t *val)
{
    struct host_call c = {.dm = dm, .port = port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, host_call_run, &c), 0);
    for (unsigned ms = 0; ms < 20000 && !atomic_load(&c.done); ms++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    if (!atomic_load(&c.done)) {
        pthread_detach(t);
        fail_msg("the host access to port %#x is still blocked after 20 s", port);
    }
    pthread_join(t, NULL);
    *rc = c.rc;
    *val = c.val;
}

/* A callback serving a host access may make a host access to another
 * server: each server serialises its own host accesses.  (Before, one
 * lock of the layer did, and the nested access waited for itself.) */
static void a_host_access_from_a_callback_serving_a_host_access_reaches_another_server(
    void **state)
{
    struct env *e = *state;
    struct bus bus = {.dm = e->dm, .to_vcpu = -1, .to_port = 0x20};
    struct vmmu_dm_server *bsrv, *target;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &bus_ops, &bus, &bsrv), 0);
    assert_int_equal(vmmu_dm_map_ports(bsrv, 0x10, 1, 0, NULL), 0);
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &dev_ops, &e->dev, &target), 0);
    assert_int_equal(vmmu_dm_map_ports(target, 0x20, 1, 0, NULL), 0);
    e->dev.reg[0] = 0x55;
    int rc;
    uint64_t v;
    host_read_or_fail(e->dm, 0x10, &rc, &v);
    assert_int_equal(rc, 0);
    assert_int_equal(bus.nested_rc, 0);
    assert_int_equal(v, 0x55); /* (reg + 0x1000) masked to the byte read */
}

/* The same server, though, would wait for itself: the nested host access
 * is refused with VMMU_EBUSY, and the outer one completes. */
static void a_host_access_to_the_server_serving_a_host_access_from_its_callback_is_busy(
    void **state)
{
    struct env *e = *state;
    struct bus bus = {.dm = e->dm, .to_vcpu = -1, .to_port = 0x11};
    struct vmmu_dm_server *bsrv;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &bus_ops, &bus, &bsrv), 0);
    assert_int_equal(vmmu_dm_map_ports(bsrv, 0x10, 2, 0, NULL), 0);
    int rc;
    uint64_t v;
    host_read_or_fail(e->dm, 0x10, &rc, &v);
    assert_int_equal(rc, 0);
    assert_int_equal(bus.nested_rc, VMMU_EBUSY);
    /* A vCPU's access from the callback is no host access: it goes ahead. */
    bus.to_vcpu = 0;
    host_read_or_fail(e->dm, 0x10, &rc, &v);
    assert_int_equal(rc, 0);
    assert_int_equal(bus.nested_rc, 0);
    assert_int_equal(v, 0x66);
}

/* A vCPU's access from inside its own callback to the same server is
 * refused with VMMU_EBUSY (its slot there is the callback's request's),
 * and the outer request, left pending, gets its answer.  (Before, the
 * nested access took the outer's sequence number and freed its slot: the
 * answer was refused with VMMU_ENOENT and the request timed out.) */
static void a_vcpus_access_from_its_callback_to_the_same_server_is_busy(void **state)
{
    struct env *e = *state;
    struct bus bus = {.dm = e->dm, .to_vcpu = 0, .to_port = 0x11, .pend = true};
    struct vmmu_dm_server *bsrv;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &bus_ops, &bus, &bsrv), 0);
    assert_int_equal(vmmu_dm_map_ports(bsrv, 0x10, 2, 0, NULL), 0);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x10, 1, 0, &v), VMMU_EPENDING);
    assert_int_equal(bus.nested_rc, VMMU_EBUSY);
    assert_int_equal(vmmu_dm_complete(bsrv, &bus.saved, 0x34, 0), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x10, 1, 0, &v), 0);
    assert_int_equal(v, 0x34);
    /* Another server is another slot: the same vCPU's access there goes ahead. */
    bus.pend = false;
    bus.to_port = 0x3f8;
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x3f8, 1, 0, NULL), 0);
    e->dev.reg[0] = 0x21;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x10, 1, 0, &v), 0);
    assert_int_equal(bus.nested_rc, 0);
    assert_int_equal(v, 0x21);
}

/* A device that answers every access later. */
struct later {
    struct vmmu_dm_ioreq saved;
    unsigned calls;
};

static int later_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct later *l = opaque;
    l->saved = *req;
    l->calls++;
    return VMMU_EPENDING;
}

static const struct vmmu_dm_ops later_ops = {.access = later_access};

/* A vCPU has one request outstanding: a callback whose nested access of
 * the same vCPU to another server pends, and which then pends too, gets
 * VMMU_EBUSY for the outer access (the nested request keeps the vCPU's
 * record and is answered as usual; an answer to the outer one is turned
 * away).  (Before, the outer request's record replaced the nested one's:
 * the nested request's answer was lost, and the vCPU's next access saw a
 * request it did not make.) */
static void a_callback_that_pends_after_a_nested_access_pended_gets_busy(void **state)
{
    struct env *e = *state;
    struct bus bus = {.dm = e->dm, .to_vcpu = 0, .to_port = 0x20, .pend = true};
    struct later later = {0};
    struct vmmu_dm_server *bsrv, *lsrv;
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &bus_ops, &bus, &bsrv), 0);
    assert_int_equal(vmmu_dm_map_ports(bsrv, 0x10, 1, 0, NULL), 0);
    assert_int_equal(vmmu_dm_server_create_inproc(e->dm, &later_ops, &later, &lsrv), 0);
    assert_int_equal(vmmu_dm_map_ports(lsrv, 0x20, 1, 0, NULL), 0);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x10, 1, 0, &v), VMMU_EBUSY);
    assert_int_equal(bus.nested_rc, VMMU_EPENDING);
    assert_int_not_equal(vmmu_dm_complete(bsrv, &bus.saved, 0x34, 0), 0);
    /* The nested request is the vCPU's: answered, its re-execution completes. */
    assert_int_equal(vmmu_dm_complete(lsrv, &later.saved, 0x77, 0), 0);
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x20, 1, 0, &v), 0);
    assert_int_equal(v, 0x77);
    assert_int_equal(later.calls, 1);
    /* And the vCPU is free again: the bus, answering at once, works. */
    bus.pend = false;
    bus.to_port = 0x3f8;
    assert_int_equal(vmmu_dm_map_ports(e->srv, 0x3f8, 1, 0, NULL), 0);
    e->dev.reg[0] = 0x21;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, 0x10, 1, 0, &v), 0);
    assert_int_equal(v, 0x21);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(mmio_write_then_read_reaches_the_callback_with_offset_and_opaque),
        T(pending_answer_completes_on_reexecution_of_the_same_access),
        T(pending_completed_with_an_error_fails_with_edevice),
        T(a_different_access_while_one_is_pending_is_busy),
        T(completing_what_is_not_pending_is_refused),
        T(callback_failure_is_reported_as_edevice),
        T(host_access_may_not_pend),
        T(vcpu_ids_beyond_the_configured_count_are_invalid),
        T(ports_route_to_their_range_and_refuse_straddling_accesses),
        T(port_ranges_may_not_overlap_or_wrap),
        T(mmio_ranges_follow_region_rules),
        T(a_device_region_nobody_serves_fails_with_edevice),
        T(destroying_a_server_removes_its_regions),
        T(layer_refuses_bad_arguments_and_a_second_instance),
        T(safe_point_is_free_until_an_async_invalidation_marks_the_vcpu),
        T(mmio_values_are_zero_extended_to_the_access_size),
        T(destroying_a_server_drops_its_pending_requests),
        T(server_counters_count_served_accesses_and_each_pend),
        T(a_257th_mmio_range_is_refused_with_elimit_and_adds_no_region),
        T(ranges_whose_region_was_removed_do_not_count_toward_the_limit),
        T(a_65th_port_range_is_refused_with_elimit),
        T(a_host_access_from_a_callback_serving_a_host_access_reaches_another_server),
        T(a_host_access_to_the_server_serving_a_host_access_from_its_callback_is_busy),
        T(a_vcpus_access_from_its_callback_to_the_same_server_is_busy),
        T(a_callback_that_pends_after_a_nested_access_pended_gets_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
