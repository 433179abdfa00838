/* Wrong arguments to every public function: each gets the error its header
 * names (or the documented harmless answer), and the object it was given
 * still works afterwards.  The checks other tests already make (the
 * region descriptor table, flush requests, register setters with NULL,
 * TLB fill arguments ...) are not repeated here; this covers the rest:
 * NULL pointers not tested elsewhere, out-of-range sizes and flags,
 * objects of another vm or another vCPU, calls in the wrong state or on
 * the wrong thread, calls made from inside vmmu_region_foreach(), and
 * destroys made from inside the callbacks of a call that goes on using
 * what they would free. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_sync_env.h"

#include "vmmu/dmclient.h"
#include "vmmu/vmmu.h"

#define NDATA 4

struct fx {
    struct sync_env s;
    struct vmmu_vcpu *v;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    sync_env_init(&f->s, NDATA);
    f->v = sync_vcpu(&f->s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vmmu_vcpu_destroy(f->v);
    sync_env_fini(&f->s);
    free(f);
    return 0;
}

static struct vmmu_vm *VM(struct fx *f)
{
    return f->s.env.vm;
}

static void data_intact(struct fx *f, uint64_t i)
{
    sync_data_intact(&f->s, i);
}

/* The vCPU still translates and reads data page @i through the TLB. */
static void vcpu_works(struct vmmu_vcpu *v, uint64_t i)
{
    uint64_t x = 0;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_load(v, DATA_VA + i * 4096, 8, 0, &x, &fl), 0);
    assert_int_equal(fl.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(x, DATA_GPA + i * 4096);
}

/* ---- vm and P2M ------------------------------------------------------------- */

static void region_calls_with_a_null_vm_or_unknown_id_are_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_region_info info;
    uint32_t st;
    assert_int_equal(vmmu_region_info(NULL, f->s.data_id, &info), VMMU_EINVAL);
    assert_int_equal(vmmu_region_info(VM(f), 0, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_info(VM(f), 12345, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_remove(VM(f), 0), VMMU_ENOENT);
    assert_int_equal(vmmu_region_remove(VM(f), 12345), VMMU_ENOENT);
    assert_int_equal(vmmu_region_foreach(NULL, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_generation(NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(NULL, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_get(VM(f), 1ull << 52, &st), VMMU_ERANGE);
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA + NDATA * 4096, &st), VMMU_EHOLE);
    assert_string_equal(vmmu_mem_type_name((enum vmmu_mem_type)99), "unknown");
    /* Nothing was removed. */
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    assert_int_equal(info.gpa, DATA_GPA);
    data_intact(f, NDATA - 1);
}

static void region_ids_of_another_vm_are_not_found(void **state)
{
    struct fx *f = *state;
    struct vmmu_vm *other;
    assert_int_equal(vmmu_vm_create(NULL, &other), 0);
    struct vmmu_region_info info;
    uint64_t bm[1];
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = NDATA * 4096};
    assert_int_equal(vmmu_region_info(other, f->s.data_id, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_remove(other, f->s.data_id), VMMU_ENOENT);
    assert_int_equal(vmmu_region_replace(other, f->s.data_id, &d, NULL), VMMU_ENOENT);
    assert_int_equal(vmmu_dirty_log_enable(other, f->s.data_id, true), VMMU_ENOENT);
    assert_int_equal(vmmu_dirty_log_get_and_clear(other, f->s.data_id, bm, 1, NULL),
                     VMMU_ENOENT);
    vmmu_vm_destroy(other);
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    data_intact(f, 0);
}

static void replace_with_a_null_unknown_or_misplaced_region_is_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = NDATA * 4096};
    uint32_t nid = 77;
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, NULL, &nid), VMMU_EINVAL);
    assert_int_equal(vmmu_region_replace(VM(f), 0, &d, &nid), VMMU_ENOENT);
    assert_int_equal(vmmu_region_replace(VM(f), 12345, &d, &nid), VMMU_ENOENT);
    struct vmmu_region_desc rom_dirty = d;
    rom_dirty.type = VMMU_MEM_ROM;
    rom_dirty.flags = VMMU_REGION_LOG_DIRTY;
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &rom_dirty, &nid), VMMU_EINVAL);
    /* The descriptor is checked as vmmu_region_add() checks it, before the
     * id and before the range is compared with the old region's. */
    struct vmmu_region_desc odd = d;
    odd.size += 1;
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &odd, &nid), VMMU_EALIGN);
    assert_int_equal(vmmu_region_replace(VM(f), 12345, &odd, &nid), VMMU_EALIGN);
    odd = d;
    odd.gpa += 8;
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &odd, &nid), VMMU_EALIGN);
    struct vmmu_region_desc far = d;
    far.gpa = 1ull << vmmu_vm_gpa_bits(VM(f));
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &far, &nid), VMMU_ERANGE);
    assert_int_equal(vmmu_region_replace(VM(f), 12345, &far, &nid), VMMU_ERANGE);
    far.gpa -= 4096; /* starts inside the width, ends past it */
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &far, &nid), VMMU_ERANGE);
    assert_int_equal(nid, 77); /* untouched on failure */
    data_intact(f, 2);
    /* A valid replace still works. */
    assert_int_equal(vmmu_region_replace(VM(f), f->s.data_id, &d, &nid), 0);
    assert_int_not_equal(nid, f->s.data_id);
    f->s.data_id = nid;
}

static void page_state_update_with_an_overflowing_count_is_out_of_range(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_page_state_update(NULL, DATA_GPA, 1, VMMU_PAGE_CODE, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_update(VM(f), DATA_GPA, UINT64_MAX, VMMU_PAGE_CODE, 0),
                     VMMU_ERANGE);
    assert_int_equal(vmmu_page_state_update(VM(f), DATA_GPA, NDATA + 1, VMMU_PAGE_CODE, 0),
                     VMMU_EHOLE);
    assert_int_equal(vmmu_page_state_update(VM(f), DATA_GPA, 1, 1u << 7, 0), VMMU_EINVAL);
    uint32_t st = 99;
    for (unsigned i = 0; i < NDATA; i++) {
        assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA + i * 4096, &st), 0);
        assert_int_equal(st, 0); /* the refused calls changed no page */
    }
    assert_int_equal(vmmu_page_state_update(VM(f), DATA_GPA, NDATA, VMMU_PAGE_CODE, 0), 0);
}

static void page_state_change_refuses_bad_ranges_and_changes_nothing(void **state)
{
    struct fx *f = *state;
    struct vmmu_gpa_range ok = {DATA_GPA, 4096};
    struct vmmu_gpa_range bad[] = {
        {DATA_GPA, 0},                            /* empty */
        {(1ull << 52) - 4096, 8192},              /* ends beyond the width */
        {~0ull & VMMU_PAGE_MASK, 8192},           /* wraps */
        {DATA_GPA + (NDATA - 1) * 4096, 8192},    /* runs into a hole */
    };
    int want[] = {VMMU_EINVAL, VMMU_ERANGE, VMMU_ERANGE, VMMU_EHOLE};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmmu_gpa_range two[2] = {ok, bad[i]};
        assert_int_equal(vmmu_page_state_change(VM(f), two, 2, VMMU_PAGE_CODE, 0), want[i]);
    }
    assert_int_equal(vmmu_page_state_change(VM(f), NULL, 1, VMMU_PAGE_CODE, 0), VMMU_EINVAL);
    /* The good range of each pair was not marked: a bad range changes nothing. */
    uint32_t st = 99;
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA, &st), 0);
    assert_int_equal(st, 0);
    /* No ranges is nothing to do. */
    assert_int_equal(vmmu_page_state_change(VM(f), NULL, 0, VMMU_PAGE_CODE, 0), 0);
    assert_int_equal(vmmu_page_state_change(VM(f), &ok, 1, VMMU_PAGE_CODE, 0), 0);
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA, &st), 0);
    assert_int_equal(st, VMMU_PAGE_CODE);
}

static void gpa_write_without_a_buffer_or_with_unknown_flags_is_rejected(void **state)
{
    struct fx *f = *state;
    uint64_t failed = 7;
    assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA, NULL, 8, 0, &failed), VMMU_EINVAL);
    assert_int_equal(vmmu_gpa_write(NULL, DATA_GPA, "x", 1, 0, &failed), VMMU_EINVAL);
    assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA, &failed, 8, 1u << 5, &failed), VMMU_EINVAL);
    assert_int_equal(failed, 7);
    /* Zero bytes need no buffer. */
    assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA, NULL, 0, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA, NULL, 0, 0, NULL), 0);
    data_intact(f, 0);
}

/* ---- Calls from inside vmmu_region_foreach() ----------------------------------- */

struct nested {
    struct fx *f;
    struct vmmu_pager *pg;
    struct vmmu_dm *dm;
    int rc[16];
    unsigned n;
};

static int call_from_inside(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct nested *t = arg;
    struct vmmu_vm *vm = VM(t->f);
    uint32_t id = t->f->s.data_id;
    uint64_t bm[1];
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = NDATA * 4096};
    struct vmmu_pager *pg2 = NULL;
    uint64_t out = 0;
    t->rc[t->n++] = vmmu_region_replace(vm, id, &d, NULL);
    t->rc[t->n++] = vmmu_dirty_log_enable(vm, id, true);
    t->rc[t->n++] = vmmu_dirty_log_get_and_clear(vm, id, bm, 1, NULL);
    t->rc[t->n++] = vmmu_p2m_set_pagein_handler(vm, NULL, NULL);
    t->rc[t->n++] = vmmu_p2m_set_device_handler(vm, NULL, NULL);
    t->rc[t->n++] = vmmu_pager_page_out(t->pg, &r, 1);
    t->rc[t->n++] = vmmu_pager_balloon_out(t->pg, &r, 1);
    t->rc[t->n++] = vmmu_pager_page_in(t->pg, &r, 1);
    t->rc[t->n++] = vmmu_pager_balloon_in(t->pg, &r, 1);
    t->rc[t->n++] = vmmu_pager_balance(t->pg, &out);
    t->rc[t->n++] = vmmu_pager_create(vm, NULL, &pg2);
    t->rc[t->n++] = vmmu_dm_create(vm, NULL, &t->dm);
    t->rc[t->n++] = vmmu_pager_destroy(t->pg);
    return 1;
}

/* The callback holds the map's lock: every call that would take it again
 * refuses with VMMU_EBUSY instead of deadlocking.  (The alarm turns a
 * deadlock into a failure.) */
static void changes_from_inside_foreach_are_busy_not_deadlocked(void **state)
{
    struct fx *f = *state;
    struct nested t = {.f = f};
    assert_int_equal(vmmu_pager_create(VM(f), NULL, &t.pg), 0);
    alarm(60);
    assert_int_equal(vmmu_region_foreach(VM(f), call_from_inside, &t), 1);
    alarm(0);
    assert_int_equal(t.n, 13);
    for (unsigned i = 0; i < t.n; i++) {
        if (t.rc[i] != VMMU_EBUSY)
            fail_msg("call %u from inside foreach returned %s", i, vmmu_error_name(t.rc[i]));
    }
    assert_null(t.dm);
    /* Read-only statistics need no change of the map. */
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(t.pg, &st), 0);
    assert_int_equal(st.out, 0);
    /* Nothing changed, and everything works outside. */
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    assert_int_equal(info.flags, 0);
    data_intact(f, 0);
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    assert_int_equal(vmmu_pager_page_out(t.pg, &r, 1), 0);
    assert_int_equal(vmmu_pager_page_in(t.pg, &r, 1), 0);
    data_intact(f, 0);
    assert_int_equal(vmmu_dirty_log_enable(VM(f), f->s.data_id, true), 0);
    assert_int_equal(vmmu_pager_destroy(t.pg), 0);
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(VM(f), NULL, &dm), 0);
    vmmu_dm_destroy(dm);
}

static int stats_from_inside(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct vmmu_pager_stats st;
    return vmmu_pager_stats(arg, &st) == 0 ? 2 : 3;
}

static void pager_stats_from_inside_foreach_still_answer(void **state)
{
    struct fx *f = *state;
    struct vmmu_pager *pg;
    assert_int_equal(vmmu_pager_create(VM(f), NULL, &pg), 0);
    alarm(60);
    assert_int_equal(vmmu_region_foreach(VM(f), stats_from_inside, pg), 2);
    alarm(0);
    vmmu_pager_destroy(pg);
}

struct dm_nested {
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    int rc[4];
    struct vmmu_dm_server *made[2];
    int sock;
};

static int dm_echo(void *opaque, struct vmmu_dm_ioreq *req);

static int destroy_from_inside(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct dm_nested *t = arg;
    t->rc[0] = vmmu_dm_server_destroy(t->srv);
    t->rc[1] = vmmu_dm_destroy(t->dm);
    struct vmmu_dm_ops ops = {.access = dm_echo};
    t->rc[2] = vmmu_dm_server_create_inproc(t->dm, &ops, NULL, &t->made[0]);
    t->rc[3] = vmmu_dm_server_create_remote(t->dm, t->sock, NULL, &t->made[1]);
    return 1;
}

/* Removing a server's ranges takes the map's lock, which the callback
 * holds: both destroy calls refuse and leave the layer working.  So do
 * the creates (a new server's table needs the map), closing a remote
 * server's socket as every refusal does. */
static void dm_destroy_from_inside_foreach_is_busy_and_keeps_the_layer(void **state)
{
    struct fx *f = *state;
    struct dm_nested t = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    t.sock = sv[0];
    assert_int_equal(vmmu_dm_create(VM(f), NULL, &t.dm), 0);
    struct vmmu_dm_ops ops = {.access = dm_echo};
    assert_int_equal(vmmu_dm_server_create_inproc(t.dm, &ops, NULL, &t.srv), 0);
    const uint64_t dev = 1ull << 40;
    assert_int_equal(vmmu_dm_map_mmio(t.srv, dev, 4096, 0, NULL, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(t.srv, 0x70, 2, 0, NULL), 0);
    alarm(60);
    assert_int_equal(vmmu_region_foreach(VM(f), destroy_from_inside, &t), 1);
    alarm(0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(t.rc[i], VMMU_EBUSY);
    assert_null(t.made[0]);
    assert_null(t.made[1]);
    assert_int_equal(fcntl(sv[0], F_GETFD), -1); /* closed */
    close(sv[1]);
    /* The server keeps its ranges and still answers. */
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(VM(f), dev + 8, &e), 0);
    assert_int_equal(e.type, VMMU_MEM_DEVICE);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(t.dm, -1, 0x71, 1, 0, &v), 0);
    assert_int_equal(v, 0x71);
    /* Outside the callback both go, and the ranges with them. */
    assert_int_equal(vmmu_dm_server_destroy(t.srv), 0);
    assert_int_equal(vmmu_p2m_lookup(VM(f), dev + 8, &e), 0);
    assert_int_equal(e.type, VMMU_MEM_HOLE);
    assert_int_equal(vmmu_dm_port_access(t.dm, -1, 0x71, 1, 0, &v), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_destroy(t.dm), 0);
    assert_int_equal(vmmu_dm_destroy(NULL), 0);
    assert_int_equal(vmmu_dm_server_destroy(NULL), 0);
}

/* ---- Destroying what a callback's caller still uses ----------------------------- */

/* What a callback tries to destroy, and what the destroy calls returned. */
struct doomed {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v;
    struct vmmu_pager *pg;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    int rc[2];
    unsigned calls;
};

static int destroy_vm_in_foreach(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct doomed *d = arg;
    d->rc[d->calls++ % 2] = vmmu_vm_destroy(d->vm);
    return 0;
}

/* The foreach goes on to the next region after the callback: the vm it
 * walks is not freed under it. */
static void vm_destroy_from_inside_foreach_is_busy_and_keeps_the_vm(void **state)
{
    (void)state;
    struct doomed d = {0};
    assert_int_equal(vmmu_vm_create(NULL, &d.vm), 0);
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 0x10000};
    assert_int_equal(vmmu_region_add(d.vm, &r, NULL), 0);
    r.gpa = 0x10000;
    assert_int_equal(vmmu_region_add(d.vm, &r, NULL), 0);
    assert_int_equal(vmmu_region_foreach(d.vm, destroy_vm_in_foreach, &d), 0);
    assert_int_equal(d.calls, 2);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(d.rc[1], VMMU_EBUSY);
    uint32_t id;
    assert_int_equal(vmmu_region_find(d.vm, 0x10000, &id), 0);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

static int doomed_mmio_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)size;
    struct doomed *d = opaque;
    d->rc[d->calls++ % 2] = d->v ? vmmu_vcpu_destroy(d->v) : vmmu_vm_destroy(d->vm);
    *value = offset;
    return 0;
}

static const struct vmmu_mmio_ops doomed_mmio = {doomed_mmio_read, NULL};

/* A vm with an MMIO page at 0 whose read callback destroys d->v, or the
 * vm without one; a vCPU in it with paging off if @vcpu. */
static void doomed_mmio_vm(struct doomed *d, bool vcpu)
{
    assert_int_equal(vmmu_vm_create(NULL, &d->vm), 0);
    struct vmmu_region_desc r = {.type = VMMU_MEM_MMIO, .gpa = 0, .size = 4096,
                                 .mmio = &doomed_mmio, .opaque = d};
    assert_int_equal(vmmu_region_add(d->vm, &r, NULL), 0);
    if (vcpu)
        assert_int_equal(vmmu_vcpu_create(d->vm, NULL, &d->v), 0);
}

/* The access goes on after the callback: the vCPU stays, online or not. */
static void vcpu_destroy_from_inside_an_mmio_callback_of_its_own_access_is_busy(void **state)
{
    (void)state;
    struct doomed d = {0};
    doomed_mmio_vm(&d, true);
    struct vmmu_x86_fault fl;
    uint64_t x = 0;
    assert_int_equal(vmmu_vcpu_online(d.v), 0);
    assert_int_equal(vmmu_access_load(d.v, 0x10, 8, 0, &x, &fl), 0);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(x, 0x10);
    assert_int_equal(vmmu_vcpu_offline(d.v), 0);
    assert_int_equal(vmmu_access_load(d.v, 0x18, 8, 0, &x, &fl), 0);
    assert_int_equal(d.rc[1], VMMU_EBUSY);
    assert_int_equal(x, 0x18);
    assert_int_equal(fl.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_vcpu_destroy(d.v), 0);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

/* The host's access (no vCPU) goes on after the callback too. */
static void vm_destroy_from_inside_an_mmio_callback_of_a_host_access_is_busy(void **state)
{
    (void)state;
    struct doomed d = {0};
    doomed_mmio_vm(&d, false);
    uint64_t x = 0;
    assert_int_equal(vmmu_gpa_read(d.vm, 0x20, &x, 8, 0, NULL), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(x, 0x20);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

static int doomed_device(void *opaque, struct vmmu_device_req *req)
{
    struct doomed *d = opaque;
    d->rc[d->calls++ % 2] = d->v ? vmmu_vcpu_destroy(d->v) : vmmu_vm_destroy(d->vm);
    req->data = req->offset;
    return 0;
}

static void destroys_from_inside_the_device_handler_are_busy(void **state)
{
    (void)state;
    struct doomed d = {0};
    assert_int_equal(vmmu_vm_create(NULL, &d.vm), 0);
    struct vmmu_region_desc r = {.type = VMMU_MEM_DEVICE, .gpa = 0, .size = 4096};
    assert_int_equal(vmmu_region_add(d.vm, &r, NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(d.vm, doomed_device, &d), 0);
    /* The host's access: the vm stays. */
    struct vmmu_device_req req = {.gpa = 0x40, .size = 8, .vcpu_id = -1};
    assert_int_equal(vmmu_p2m_device_access(d.vm, &req), 0);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(req.data, 0x40);
    /* A vCPU's access: the vCPU stays. */
    assert_int_equal(vmmu_vcpu_create(d.vm, NULL, &d.v), 0);
    struct vmmu_x86_fault fl;
    uint64_t x = 0;
    assert_int_equal(vmmu_access_load(d.v, 0x48, 8, 0, &x, &fl), 0);
    assert_int_equal(d.rc[1], VMMU_EBUSY);
    assert_int_equal(x, 0x48);
    assert_int_equal(vmmu_vcpu_destroy(d.v), 0);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

static void doomed_code_write(void *opaque, struct vmmu_vcpu *v, uint64_t gpa_page)
{
    (void)gpa_page;
    struct doomed *d = opaque;
    d->rc[d->calls++ % 2] = vmmu_vcpu_destroy(v);
}

/* The write the code handler is called for is made after it. */
static void vcpu_destroy_from_inside_its_code_handler_is_busy(void **state)
{
    (void)state;
    struct doomed d = {0};
    assert_int_equal(vmmu_vm_create(NULL, &d.vm), 0);
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 0x10000};
    assert_int_equal(vmmu_region_add(d.vm, &r, NULL), 0);
    assert_int_equal(vmmu_vcpu_create(d.vm, NULL, &d.v), 0);
    assert_int_equal(vmmu_access_set_code_handler(d.v, doomed_code_write, &d), 0);
    assert_int_equal(vmmu_code_mark(d.vm, 0x1000, 1), 0);
    struct vmmu_x86_fault fl;
    uint64_t x = 0x1234;
    assert_int_equal(vmmu_access_store(d.v, 0x1008, 8, 0, &x, &fl), 0);
    assert_int_equal(fl.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    x = 0;
    assert_int_equal(vmmu_gpa_read(d.vm, 0x1008, &x, 8, 0, NULL), 0);
    assert_int_equal(x, 0x1234);
    assert_int_equal(vmmu_vcpu_destroy(d.v), 0);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

/* A page-in handler that tries to destroy the vCPU (or, for the host's
 * access, the vm), then brings the page back through the pager. */
static int doomed_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct doomed *d = opaque;
    d->rc[d->calls++ % 2] = d->v ? vmmu_vcpu_destroy(d->v) : vmmu_vm_destroy(vm);
    struct vmmu_gpa_range r = {gpa, 4096};
    return vmmu_pager_page_in(d->pg, &r, 1);
}

/* A vm with a RAM page at 0x1000 holding 0x5678, paged out, and
 * doomed_pagein() as its page-in handler. */
static void doomed_paged_vm(struct doomed *d)
{
    assert_int_equal(vmmu_vm_create(NULL, &d->vm), 0);
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 0x10000};
    assert_int_equal(vmmu_region_add(d->vm, &r, NULL), 0);
    uint64_t x = 0x5678;
    assert_int_equal(vmmu_gpa_write(d->vm, 0x1000, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_pager_create(d->vm, NULL, &d->pg), 0);
    struct vmmu_gpa_range out = {0x1000, 4096};
    assert_int_equal(vmmu_pager_page_out(d->pg, &out, 1), 0);
    assert_int_equal(vmmu_p2m_set_pagein_handler(d->vm, doomed_pagein, d), 0);
}

static void destroys_from_inside_the_pagein_handler_are_busy(void **state)
{
    (void)state;
    struct doomed d = {0};
    doomed_paged_vm(&d);
    /* The host's access: the vm (and its pager) stay. */
    uint64_t x = 0;
    assert_int_equal(vmmu_gpa_read(d.vm, 0x1000, &x, 8, 0, NULL), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(x, 0x5678);
    /* A vCPU's access: the vCPU stays. */
    struct vmmu_gpa_range out = {0x1000, 4096};
    assert_int_equal(vmmu_pager_page_out(d.pg, &out, 1), 0);
    assert_int_equal(vmmu_vcpu_create(d.vm, NULL, &d.v), 0);
    struct vmmu_x86_fault fl;
    x = 0;
    assert_int_equal(vmmu_access_load(d.v, 0x1000, 8, 0, &x, &fl), 0);
    assert_int_equal(fl.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(d.calls, 2);
    assert_int_equal(d.rc[1], VMMU_EBUSY);
    assert_int_equal(x, 0x5678);
    assert_int_equal(vmmu_vcpu_destroy(d.v), 0);
    assert_int_equal(vmmu_pager_destroy(d.pg), 0);
    assert_int_equal(vmmu_vm_destroy(d.vm), 0);
}

static int doomed_dm_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    struct doomed *d = opaque;
    d->rc[0] = vmmu_dm_server_destroy(d->srv);
    d->rc[1] = vmmu_dm_destroy(d->dm);
    d->calls++;
    if (!req->write)
        req->data = req->addr;
    return 0;
}

/* The layer finishes the request after the callback returns: neither the
 * server nor the layer goes, and both work afterwards. */
static void dm_destroys_from_inside_an_inproc_callback_are_busy(void **state)
{
    struct fx *f = *state;
    struct doomed d = {0};
    assert_int_equal(vmmu_dm_create(VM(f), NULL, &d.dm), 0);
    struct vmmu_dm_ops ops = {.access = doomed_dm_access};
    assert_int_equal(vmmu_dm_server_create_inproc(d.dm, &ops, &d, &d.srv), 0);
    assert_int_equal(vmmu_dm_map_ports(d.srv, 0x70, 2, 0, NULL), 0);
    alarm(60);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(d.dm, -1, 0x71, 1, 0, &v), 0);
    alarm(0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc[0], VMMU_EBUSY);
    assert_int_equal(d.rc[1], VMMU_EBUSY);
    assert_int_equal(v, 0x71);
    assert_int_equal(vmmu_dm_port_access(d.dm, -1, 0x70, 1, 0, &v), 0);
    assert_int_equal(v, 0x70);
    assert_int_equal(vmmu_dm_server_destroy(d.srv), 0);
    assert_int_equal(vmmu_dm_port_access(d.dm, -1, 0x71, 1, 0, &v), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_destroy(d.dm), 0);
}

/* ---- x86 paging ---------------------------------------------------------------- */

static void x86_setters_and_walks_refuse_null_arguments(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_paging *pg = &f->s.env.pg;
    struct vmmu_x86_fault fl;
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_set_cr0(pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr3(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr4(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr4(pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_efer(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_efer(pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkru(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkru(pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkrs(NULL, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkrs(pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_rflags(NULL, 2), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cpl(NULL, 0), VMMU_EINVAL);
    struct vmmu_x86_regs r = regs_4level(f->s.root);
    assert_int_equal(vmmu_x86_set_state(NULL, &r), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_get_state(NULL, &r), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_get_state(pg, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk(NULL, DATA_VA, 0, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk(pg, DATA_VA, 0, NULL), VMMU_EINVAL);
    assert_false(vmmu_x86_canonical(NULL, 0));
    assert_string_equal(vmmu_x86_mode_name((enum vmmu_x86_mode)99), "?");
    /* The paging state is still the RESET one and works. */
    assert_int_equal(pg->mode, VMMU_X86_MODE_NONE);
    assert_int_equal(vmmu_x86_set_state(pg, &r), 0);
    assert_int_equal(vmmu_x86_walk(pg, DATA_VA, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, DATA_GPA);
}

static void x86_calls_on_a_paging_state_never_set_up_are_refused(void **state)
{
    struct fx *f = *state;
    /* Zeroed, as an embedder's vCPU struct is before vmmu_x86_paging_init(). */
    struct vmmu_x86_paging pg, zero;
    memset(&pg, 0, sizeof(pg));
    memset(&zero, 0, sizeof(zero));
    struct vmmu_x86_fault fl;
    struct vmmu_x86_walk w;
    /* Entering PAE paging loads the PDPTEs: read through the missing vm,
     * that crashed. */
    assert_int_equal(vmmu_x86_set_cr4(&pg, R_CR4_PAE, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr0(&pg, R_CR0_PE | R_CR0_PG, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr3(&pg, 0x1000, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_efer(&pg, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkru(&pg, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_pkrs(&pg, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_rflags(&pg, 2), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cpl(&pg, 3), VMMU_EINVAL);
    struct vmmu_x86_regs pae = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = 0x1000, .cr4 = R_CR4_PAE};
    assert_int_equal(vmmu_x86_set_state(&pg, &pae), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_get_state(&pg, &pae), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk_peek(&pg, DATA_VA, 0, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk(&pg, DATA_VA, 0, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk_commit(&pg, &w), VMMU_EINVAL);
    assert_memory_equal(&pg, &zero, sizeof(pg));
    /* Once set up it works. */
    assert_int_equal(vmmu_x86_paging_init(&pg, VM(f), NULL), 0);
    struct vmmu_x86_regs r = regs_4level(f->s.root);
    assert_int_equal(vmmu_x86_set_state(&pg, &r), 0);
    assert_int_equal(vmmu_x86_walk(&pg, DATA_VA, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.gpa, DATA_GPA);
}

static void walk_commit_refuses_null_and_impossible_walks(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_paging *pg = &f->s.env.pg;
    struct vmmu_x86_regs r = regs_4level(f->s.root);
    assert_int_equal(vmmu_x86_set_state(pg, &r), 0);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(pg, DATA_VA, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(vmmu_x86_walk_commit(NULL, &w), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_walk_commit(pg, NULL), VMMU_EINVAL);
    struct vmmu_x86_walk bad = w;
    bad.nlevels = VMMU_X86_LEVELS_MAX + 1;
    assert_int_equal(vmmu_x86_walk_commit(pg, &bad), VMMU_EINVAL);
    assert_false(bad.committed);
    /* A faulted walk commits nothing and succeeds. */
    struct vmmu_x86_walk pf;
    assert_int_equal(vmmu_x86_walk_peek(pg, DATA_VA + NDATA * 4096ull * 512, 0, &pf), 0);
    assert_false(pf.ok);
    assert_int_equal(vmmu_x86_walk_commit(pg, &pf), 0);
    assert_false(pf.committed);
    assert_int_equal(vmmu_x86_walk_commit(pg, &w), 0);
    assert_true(w.committed);
}

/* Every entry of walk @w holds what the walk read: nothing was stored. */
static void entries_untouched(const struct vmmu_x86_walk *w)
{
    for (unsigned i = 0; i < w->nlevels; i++)
        assert_int_equal(__atomic_load_n((const uint64_t *)w->levels[i].host, __ATOMIC_ACQUIRE),
                         w->levels[i].value);
}

/* A walk record changed after the walk (by a buggy or hostile caller) is
 * checked before anything is stored: a host address that is not the
 * entry's, an update that changes more than A and D, an entry of a size,
 * alignment or address no walk gives are refused with VMMU_EINVAL; a
 * record whose region is gone (here: another region id) is stale,
 * VMMU_EBUSY, so vmmu_x86_walk() would walk again.  Either way no level
 * is stored, not even the ones above the bad one. */
static void walk_commit_refuses_a_record_altered_after_the_walk_and_stores_nothing(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_paging *pg = &f->s.env.pg;
    struct vmmu_x86_regs r = regs_4level(f->s.root);
    assert_int_equal(vmmu_x86_set_state(pg, &r), 0);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(pg, DATA_VA, VMMU_X86_ACC_WRITE, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.nlevels, 4);
    /* Clear A and D at every level, so that every level has an update. */
    for (unsigned i = 0; i < 4; i++)
        __atomic_store_n((uint64_t *)w.levels[i].host,
                         w.levels[i].value & ~(VMMU_X86_PTE_A | VMMU_X86_PTE_D), __ATOMIC_RELEASE);
    assert_int_equal(vmmu_x86_walk_peek(pg, DATA_VA, VMMU_X86_ACC_WRITE, &w), 0);
    assert_true(w.ok);
    for (unsigned i = 0; i < 4; i++)
        assert_true(w.levels[i].new_value != w.levels[i].value); /* every level has work */
    uint64_t elsewhere = 0;
    struct vmmu_x86_walk bad;
#define REFUSED(change, rc)                                                                        \
    do {                                                                                           \
        bad = w;                                                                                   \
        change;                                                                                    \
        assert_int_equal(vmmu_x86_walk_commit(pg, &bad), rc);                                      \
        assert_false(bad.committed);                                                               \
        entries_untouched(&w);                                                                     \
        assert_int_equal(elsewhere, 0);                                                            \
    } while (0)
    REFUSED(bad.levels[3].host = &elsewhere, VMMU_EINVAL);
    REFUSED(bad.levels[3].host = bad.levels[2].host, VMMU_EINVAL);
    REFUSED(bad.levels[3].new_value ^= 1ull << 1, VMMU_EINVAL);     /* R/W is not A or D */
    REFUSED(bad.levels[3].new_value &= ~1ull, VMMU_EINVAL);         /* nor is P */
    REFUSED(bad.levels[3].size = 2, VMMU_EINVAL);
    REFUSED(bad.levels[3].gpa += 4, VMMU_EINVAL);                   /* another entry's half */
    REFUSED(bad.levels[3].gpa += 1, VMMU_EINVAL);                   /* misaligned */
    REFUSED(bad.levels[3].gpa |= 1ull << 60, VMMU_EINVAL);          /* beyond the vm's width */
    REFUSED(bad.levels[3].region_id = f->s.data_id + 1000, VMMU_EBUSY);
#undef REFUSED
    /* The record as the walk left it still commits. */
    assert_int_equal(vmmu_x86_walk_commit(pg, &w), 0);
    assert_true(w.committed);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(*(const uint64_t *)w.levels[i].host, w.levels[i].new_value);
}

/* ---- vCPUs ------------------------------------------------------------------- */

static void vcpu_queries_of_null_give_the_documented_answers(void **state)
{
    struct fx *f = *state;
    assert_null(vmmu_vcpu_paging(NULL));
    assert_int_equal(vmmu_vcpu_tlb_entries(NULL), 0);
    assert_null(vmmu_access_fast(NULL));
    assert_int_equal(vmmu_vcpu_id(NULL), VMMU_EINVAL);
    vmmu_vcpu_destroy(NULL);
    assert_non_null(vmmu_vcpu_paging(f->v));
    assert_int_equal(vmmu_vcpu_tlb_entries(f->v), VMMU_TLB_ENTRIES_DEFAULT);
    assert_ptr_equal(vmmu_access_fast(f->v)->vcpu, f->v);
}

static void invpcid_of_an_unknown_type_raises_gp_and_flushes_nothing(void **state)
{
    struct fx *f = *state;
    vcpu_works(f->v, 0);
    struct vmmu_tlb_stats before, after;
    assert_int_equal(vmmu_vcpu_stats(f->v, &before), 0);
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_vcpu_invpcid(f->v, 4, 0, 0, &fl), 0);
    assert_int_equal(fl.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_invpcid(f->v, ~0u, 0, 0, &fl), 0);
    assert_int_equal(fl.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_vcpu_stats(f->v, &after), 0);
    assert_int_equal(after.flush_all, before.flush_all);
    assert_int_equal(after.flush_page, before.flush_page);
    assert_non_null(vmmu_tlb_lookup_read(f->v, DATA_VA, 8)); /* still cached */
}

static void destroying_an_online_vcpu_takes_it_offline_first(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *a = sync_vcpu(&f->s);
    assert_int_equal(vmmu_vcpu_online(a), 0);
    vmmu_vcpu_destroy(a);
    /* The thread runs no vCPU now: another may go online on it. */
    assert_int_equal(vmmu_vcpu_online(f->v), 0);
    assert_int_equal(vmmu_vcpu_safepoint(f->v), 0);
    vcpu_works(f->v, 1);
    assert_int_equal(vmmu_vcpu_offline(f->v), 0);
}

/* ---- Cross-vCPU invalidation ------------------------------------------------- */

static void shootdown_with_a_vcpu_of_another_vm_is_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_vm *other;
    assert_int_equal(vmmu_vm_create(NULL, &other), 0);
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    vcpu_works(f->v, 0);
    assert_int_equal(vmmu_vcpu_online(f->v), 0);
    assert_int_equal(vmmu_shootdown_sync(other, f->v, NULL, &all), VMMU_EINVAL);
    assert_int_equal(vmmu_shootdown_async(other, f->v, NULL, &all), VMMU_EINVAL);
    /* Refused before anything was done: the caller's TLB kept its entry. */
    assert_non_null(vmmu_tlb_lookup_read(f->v, DATA_VA, 8));
    assert_int_equal(vmmu_shootdown_sync(VM(f), f->v, NULL, &all), 0);
    assert_null(vmmu_tlb_lookup_read(f->v, DATA_VA, 8));
    assert_int_equal(vmmu_vcpu_offline(f->v), 0);
    vmmu_vm_destroy(other);
}

static void shootdown_async_with_an_offline_self_is_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_async(VM(f), f->v, NULL, &all), VMMU_EINVAL);
    assert_int_equal(vmmu_shootdown_async(NULL, NULL, NULL, &all), VMMU_EINVAL);
    assert_int_equal(vmmu_shootdown_async(VM(f), NULL, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_shootdown_async(VM(f), NULL, NULL, &all), 0);
}

struct remote_vcpu {
    struct vmmu_vcpu *v;
    atomic_int stage; /* 1: online on the thread; 2: the main thread is done */
    int rc_safepoint, rc_offline;
};

static void *run_online(void *arg)
{
    struct remote_vcpu *r = arg;
    assert_int_equal(vmmu_vcpu_online(r->v), 0);
    atomic_store(&r->stage, 1);
    while (atomic_load(&r->stage) != 2)
        sched_yield();
    r->rc_safepoint = vmmu_vcpu_safepoint(r->v);
    r->rc_offline = vmmu_vcpu_offline(r->v);
    return NULL;
}

/* Safe points and going offline belong to the vCPU's own thread: from any
 * other they are refused, and the vCPU carries on on its thread. */
static void safepoint_and_offline_from_another_thread_are_rejected(void **state)
{
    struct fx *f = *state;
    struct remote_vcpu r = {.v = f->v};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_online, &r), 0);
    while (atomic_load(&r.stage) != 1)
        sched_yield();
    assert_int_equal(vmmu_vcpu_safepoint(f->v), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_offline(f->v), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_online(f->v), VMMU_EBUSY);
    atomic_store(&r.stage, 2);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc_safepoint, 0);
    assert_int_equal(r.rc_offline, 0);
    /* Grace periods still end (no thread was left looking online). */
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 1ull << 40, .size = 4096};
    uint32_t id;
    assert_int_equal(vmmu_region_add(VM(f), &d, &id), 0);
    alarm(60);
    assert_int_equal(vmmu_region_remove(VM(f), id), 0);
    alarm(0);
}

static void cpuset_calls_with_null_or_negative_ids_are_harmless(void **state)
{
    (void)state;
    struct vmmu_cpuset *s;
    assert_int_equal(vmmu_cpuset_create(&s), 0);
    assert_int_equal(vmmu_cpuset_add(NULL, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_cpuset_del(NULL, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_cpuset_del(s, -1), VMMU_EINVAL);
    assert_int_equal(vmmu_cpuset_has(NULL, 1), 0);
    assert_int_equal(vmmu_cpuset_has(s, -1), 0);
    assert_int_equal(vmmu_cpuset_count(NULL), 0);
    assert_int_equal(vmmu_cpuset_clear(s), 0); /* clearing an empty set */
    assert_int_equal(vmmu_cpuset_add(s, 70), 0);
    assert_int_equal(vmmu_cpuset_count(s), 1);
    assert_true(vmmu_cpuset_has(s, 70));
    vmmu_cpuset_destroy(s);
}

/* ---- Pager ------------------------------------------------------------------- */

static void pager_in_a_missing_directory_fails_and_leaves_room_for_another(void **state)
{
    struct fx *f = *state;
    struct vmmu_pager *pg = (struct vmmu_pager *)0x1;
    struct vmmu_pager_config cfg = {.dir = "/nonexistent/vmmu-test-dir"};
    assert_int_equal(vmmu_pager_create(VM(f), &cfg, &pg), VMMU_ESYS);
    assert_ptr_equal(pg, (struct vmmu_pager *)0x1);
    assert_int_equal(vmmu_pager_create(VM(f), NULL, &pg), 0);
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    assert_int_equal(vmmu_pager_page_out(pg, &r, 1), 0);
    data_intact(f, 0); /* paged back in by the handler */
    vmmu_pager_destroy(pg);
}

static void pager_calls_with_null_or_no_ranges_are_handled(void **state)
{
    struct fx *f = *state;
    struct vmmu_pager *pg;
    assert_int_equal(vmmu_pager_create(VM(f), NULL, &pg), 0);
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_page_in(NULL, &r, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_pager_page_in(pg, NULL, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_pager_balloon_in(NULL, &r, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_pager_balloon_out(NULL, &r, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_pager_stats(NULL, &st), VMMU_EINVAL);
    assert_int_equal(vmmu_pager_page_out(pg, NULL, 0), 0);
    assert_int_equal(vmmu_pager_page_in(pg, NULL, 0), 0);
    struct vmmu_gpa_range odd = {DATA_GPA + 1, 4096};
    assert_int_equal(vmmu_pager_page_in(pg, &odd, 1), VMMU_EALIGN);
    assert_int_equal(vmmu_pager_stats(pg, &st), 0);
    assert_int_equal(st.out, 0);
    assert_int_equal(vmmu_pager_balloon_out(pg, &r, 1), 0);
    assert_int_equal(vmmu_pager_balloon_in(pg, &r, 1), 0);
    vmmu_pager_destroy(pg);
    vmmu_pager_destroy(NULL);
}

static void pager_ranges_name_pages_of_the_pagers_own_vm(void **state)
{
    struct fx *f = *state;
    struct vmmu_vm *other;
    assert_int_equal(vmmu_vm_create(NULL, &other), 0);
    struct vmmu_pager *pg;
    assert_int_equal(vmmu_pager_create(other, NULL, &pg), 0);
    struct vmmu_gpa_range r = {DATA_GPA, 4096};
    assert_int_equal(vmmu_pager_page_out(pg, &r, 1), VMMU_EHOLE);
    data_intact(f, 0);
    uint32_t st = 99;
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA, &st), 0);
    assert_int_equal(st, 0);
    vmmu_pager_destroy(pg);
    vmmu_vm_destroy(other);
}

/* ---- Instruction memory access ----------------------------------------------- */

static void probes_refuse_null_sizes_and_unknown_access_bits(void **state)
{
    struct fx *f = *state;
    struct vmmu_probe p;
    for (int nofault = 0; nofault < 2; nofault++) {
        int (*probe)(struct vmmu_vcpu *, uint64_t, unsigned, unsigned, struct vmmu_probe *) =
            nofault ? vmmu_access_probe_nofault : vmmu_access_probe;
        assert_int_equal(probe(NULL, DATA_VA, 8, 0, &p), VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA, 8, 0, NULL), VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA, 0, 0, &p), VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA, 4097, 0, &p), VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA, 8, 1u << 4, &p), VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA, 8, VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH, &p),
                         VMMU_EINVAL);
        assert_int_equal(probe(f->v, DATA_VA + 4090, 8, 0, &p), VMMU_EINVAL);
    }
    assert_int_equal(vmmu_access_probe(f->v, DATA_VA, 8, 0, &p), 0);
    assert_non_null(p.host);
    assert_int_equal(p.gpa, DATA_GPA);
}

static void reads_and_writes_refuse_the_wrong_access_kind(void **state)
{
    struct fx *f = *state;
    uint8_t buf[16] = {0};
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_read(f->v, DATA_VA, buf, 8, VMMU_X86_ACC_WRITE, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_read(f->v, DATA_VA, NULL, 8, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_read(f->v, DATA_VA, buf, 8, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_access_read(NULL, DATA_VA, buf, 8, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_write(f->v, DATA_VA, buf, 8, VMMU_X86_ACC_FETCH, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_write(f->v, DATA_VA, NULL, 8, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_write(f->v, DATA_VA, buf, 0, 0, &fl), VMMU_EINVAL);
    /* VMMU_ACCESS_READ_WRITE belongs to vmmu_access_prepare(): here it is an
     * unknown bit, as for vmmu_access_store().  Taken, it let a watchpoint
     * on reads stop a plain write. */
    uint32_t wid;
    assert_int_equal(vmmu_watch_add(f->v, DATA_VA, 8, VMMU_WATCH_READ | VMMU_WATCH_BEFORE, &wid), 0);
    buf[0] = 0xaa;
    assert_int_equal(vmmu_access_write(f->v, DATA_VA, buf, 8, VMMU_ACCESS_READ_WRITE, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_write(f->v, DATA_VA, buf, 8, 1u << 4, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_read(f->v, DATA_VA, buf, 8, 1u << 4, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_store(f->v, DATA_VA, 8, VMMU_ACCESS_READ_WRITE, buf, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_watch_remove(f->v, wid), 0);
    buf[0] = 0;
    assert_int_equal(vmmu_access_store(f->v, DATA_VA, 8, 0, NULL, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_store(f->v, DATA_VA, 3, 0, buf, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_store(f->v, DATA_VA, 8, 1u << 4, buf, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_load(f->v, DATA_VA, 8, 0, NULL, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_load(f->v, DATA_VA, 8, 0, buf, NULL), VMMU_EINVAL);
    data_intact(f, 0);
    vcpu_works(f->v, 0);
}

static void prepared_operations_refuse_bad_descriptors_and_sizes(void **state)
{
    struct fx *f = *state;
    struct vmmu_prepared p;
    struct vmmu_x86_fault fl;
    uint8_t buf[16] = {0};
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA, 16, VMMU_X86_ACC_WRITE, &p, &fl), 0);
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA, 16, 0, NULL, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA, 16, 0, &p, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_read(NULL, 0, buf, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_read(&p, 0, NULL, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_read(&p, UINT32_MAX, buf, 2), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_write(NULL, 0, buf, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_write(&p, 0, NULL, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_set(NULL, 0, 0, 1, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_set(&p, 0, 0, 3, 6), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_set(&p, 0, 0, 4, 6), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_set(&p, 8, 0, 8, 16), VMMU_EINVAL);
    struct vmmu_prepared corrupt = p;
    corrupt.npages = 3;
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 8), VMMU_EINVAL);
    /* Pages that no longer cover the access (changed after the
     * preparation) are refused, not read in part. */
    uint8_t canary[16];
    memset(buf, 0xee, sizeof(buf));
    memcpy(canary, buf, sizeof(buf));
    corrupt = p;
    corrupt.page[0].len = 4;
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 16), VMMU_EINVAL);
    corrupt = p;
    corrupt.len = 8;
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 8), VMMU_EINVAL);
    corrupt = p;
    corrupt.npages = 2;
    corrupt.page[1] = corrupt.page[0];
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 16), VMMU_EINVAL);
    corrupt = p;
    corrupt.page[0].va += 8;
    assert_int_equal(vmmu_prepared_write(&corrupt, 0, buf, 16), VMMU_EINVAL);
    corrupt = p;
    corrupt.len = corrupt.page[0].len = 0;
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 0), VMMU_EINVAL);
    corrupt = p;
    corrupt.va = corrupt.page[0].va = DATA_VA + 4090; /* 16 bytes in one page from there? */
    assert_int_equal(vmmu_prepared_read(&corrupt, 0, buf, 16), VMMU_EINVAL);
    assert_memory_equal(buf, canary, sizeof(buf));
    data_intact(f, 0);
    /* The descriptor itself still works. */
    assert_int_equal(vmmu_prepared_read(&p, 0, buf, 8), 0);
    uint64_t x;
    memcpy(&x, buf, 8);
    assert_int_equal(x, DATA_GPA);
}

/* Every field an operation uses is sealed at the preparation: a read
 * turned into a write, a page's host address, gpa, type or region moved,
 * or another vCPU named, is refused and nothing is written anywhere. */
static void prepared_operations_refuse_a_descriptor_changed_after_preparation(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *w = sync_vcpu(&f->s);
    struct vmmu_prepared p, c;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA, 16, 0, &p, &fl), 0);
    uint8_t host[64], canary[64], buf[16];
    memset(host, 0x55, sizeof(host));
    memcpy(canary, host, sizeof(host));
    memset(buf, 0x88, sizeof(buf));
    for (unsigned k = 0; k < 8; k++) {
        c = p;
        switch (k) {
        case 0: c.access |= VMMU_X86_ACC_WRITE; break;
        case 1: c.page[0].host = host; break;
        case 2: c.page[0].host = host + sizeof(host) - 8; break;
        case 3: c.page[0].host = NULL; c.page[0].gpa += 4096; break;
        case 4: c.page[0].type = VMMU_MEM_MMIO; break;
        case 5: c.page[0].region_id ^= 1; break;
        case 6: c.vcpu = w; c.epoch = 0; break;
        case 7: c.host_gen ^= 1; break;
        }
        assert_int_equal(vmmu_prepared_write(&c, 0, buf, 16), VMMU_EINVAL);
        assert_int_equal(vmmu_prepared_set(&c, 0, 0x88, 1, 16), VMMU_EINVAL);
        assert_int_equal(vmmu_prepared_read(&c, 0, buf, 16), VMMU_EINVAL);
        assert_memory_equal(host, canary, sizeof(host));
    }
    data_intact(f, 0);
    data_intact(f, 1);
    /* A copy left alone works, and the original still does. */
    c = p;
    assert_int_equal(vmmu_prepared_read(&c, 0, buf, 8), 0);
    uint64_t x;
    memcpy(&x, buf, 8);
    assert_int_equal(x, DATA_GPA);
    assert_int_equal(vmmu_prepared_write(&p, 0, buf, 8), VMMU_EINVAL); /* prepared for reading */
    vmmu_vcpu_destroy(w);
}

static void prepared_move_between_different_vcpus_is_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_vcpu *w = sync_vcpu(&f->s);
    struct vmmu_prepared src, dst, dst_short, ro;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_prepare(w, DATA_VA, 16, 0, &src, &fl), 0);
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA + 4096, 16, VMMU_X86_ACC_WRITE, &dst, &fl),
                     0);
    assert_int_equal(vmmu_prepared_move(&dst, &src, 8, false), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_move(NULL, &src, 8, false), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_move(&dst, NULL, 8, false), VMMU_EINVAL);
    /* Same vCPU, but a length, element or direction of access that does not fit. */
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA, 16, 0, &src, &fl), 0);
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA + 8192, 8, VMMU_X86_ACC_WRITE, &dst_short,
                                         &fl),
                     0);
    assert_int_equal(vmmu_access_prepare(f->v, DATA_VA + 8192, 16, 0, &ro, &fl), 0);
    assert_int_equal(vmmu_prepared_move(&dst_short, &src, 8, false), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_move(&dst, &src, 3, false), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_move(&ro, &src, 8, false), VMMU_EINVAL);
    data_intact(f, 1);
    data_intact(f, 2);
    assert_int_equal(vmmu_prepared_move(&dst, &src, 8, false), 0);
    uint64_t x = 0;
    assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA + 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(x, DATA_GPA);
    vmmu_vcpu_destroy(w);
}

static void atomics_refuse_unknown_ops_sizes_and_access_bits(void **state)
{
    struct fx *f = *state;
    uint64_t old = 0, exp = DATA_GPA, des = 1, obs = 0;
    bool swapped = true;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_rmw(f->v, DATA_VA, 8, (enum vmmu_rmw_op)99, 1, &old, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_rmw(f->v, DATA_VA, 8, VMMU_RMW_ADD, 1, NULL, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_rmw(f->v, DATA_VA, 8, VMMU_RMW_ADD, 1, &old, 0, NULL),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_rmw(f->v, DATA_VA, 8, VMMU_RMW_ADD, 1, &old,
                                     VMMU_X86_ACC_FETCH, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_rmw(NULL, DATA_VA, 8, VMMU_RMW_ADD, 1, &old, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 3, &exp, &des, &obs, &swapped, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 8, NULL, &des, &obs, &swapped, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 8, &exp, NULL, &obs, &swapped, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 8, &exp, &des, NULL, &swapped, 0, &fl),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 8, &exp, &des, &obs, &swapped,
                                         VMMU_X86_ACC_FETCH, &fl),
                     VMMU_EINVAL);
    assert_true(swapped);
    data_intact(f, 0);
    /* swapped may be NULL. */
    assert_int_equal(vmmu_access_cmpxchg(f->v, DATA_VA, 8, &exp, &des, &obs, NULL, 0, &fl), 0);
    assert_int_equal(obs, DATA_GPA);
    assert_int_equal(vmmu_access_rmw(f->v, DATA_VA, 8, VMMU_RMW_ADD, 1, &old, 0, &fl), 0);
    assert_int_equal(old, 1);
}

static void string_operations_refuse_bad_element_sizes(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault fl;
    struct vmmu_rep r = {.dst = DATA_VA + 4096, .src = DATA_VA, .count = 2, .elem = 3};
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 10, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_stos(f->v, &r, 10, &fl), VMMU_EINVAL);
    r.elem = 8;
    assert_int_equal(vmmu_access_rep_movs(NULL, &r, 10, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_movs(f->v, NULL, 10, 0, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 10, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 10, VMMU_X86_ACC_WRITE, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 10, 1u << 4, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_stos(f->v, NULL, 10, &fl), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rep_stos(f->v, &r, 10, NULL), VMMU_EINVAL);
    /* Nothing moved, the registers did not advance. */
    assert_int_equal(r.count, 2);
    assert_int_equal(r.dst, DATA_VA + 4096);
    data_intact(f, 1);
    /* A zero budget is no work. */
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 0, 0, &fl), 0);
    assert_int_equal(r.count, 2);
    assert_int_equal(vmmu_access_rep_movs(f->v, &r, 10, 0, &fl), 0);
    assert_int_equal(r.count, 0);
}

static void watchpoint_calls_refuse_null_flags_and_buffers(void **state)
{
    struct fx *f = *state;
    struct vmmu_watch_hit hits[2];
    uint32_t id = 0;
    assert_int_equal(vmmu_watch_add(NULL, DATA_VA, 8, VMMU_WATCH_READ, &id), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_add(f->v, DATA_VA, 8, VMMU_WATCH_BEFORE, &id), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_add(f->v, DATA_VA, 8, VMMU_WATCH_READ | (1u << 3), &id),
                     VMMU_EINVAL);
    assert_int_equal(id, 0);
    assert_int_equal(vmmu_watch_remove(NULL, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_remove(f->v, 0), VMMU_ENOENT);
    assert_int_equal(vmmu_watch_take_hits(NULL, hits, 2, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_take_hits(f->v, NULL, 2, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_take_hits(f->v, NULL, 0, NULL), 0);
    /* No watchpoint was added: the page takes the hit path. */
    vcpu_works(f->v, 0);
    assert_non_null(vmmu_tlb_lookup_read(f->v, DATA_VA, 8));
    assert_int_equal(vmmu_watch_add(f->v, DATA_VA, 8, VMMU_WATCH_READ, &id), 0);
    assert_int_not_equal(id, 0);
    assert_int_equal(vmmu_watch_remove(f->v, id), 0);
}

static void dirty_log_and_code_marks_refuse_non_ram_and_null(void **state)
{
    struct fx *f = *state;
    struct vmmu_region_desc rom = {.type = VMMU_MEM_ROM, .gpa = 1ull << 40, .size = 4096};
    uint32_t rom_id;
    assert_int_equal(vmmu_region_add(VM(f), &rom, &rom_id), 0);
    uint64_t bm[1] = {~0ull};
    assert_int_equal(vmmu_dirty_log_enable(NULL, f->s.data_id, true), VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_enable(VM(f), rom_id, true), VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_enable(VM(f), 0, true), VMMU_ENOENT);
    assert_int_equal(vmmu_dirty_log_get_and_clear(NULL, f->s.data_id, bm, 1, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_get_and_clear(VM(f), f->s.data_id, NULL, 1, NULL),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_get_and_clear(VM(f), rom_id, bm, 1, NULL), VMMU_EINVAL);
    assert_int_equal(bm[0], ~0ull); /* untouched */
    assert_int_equal(vmmu_access_set_code_handler(NULL, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_code_mark(NULL, DATA_GPA, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_code_mark(VM(f), DATA_GPA, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_code_mark(VM(f), DATA_GPA + NDATA * 4096, 1), VMMU_EHOLE);
    assert_int_equal(vmmu_code_mark(VM(f), 1ull << 52, 1), VMMU_ERANGE);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    assert_int_equal(info.flags, 0);
    uint32_t st = 99;
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA, &st), 0);
    assert_int_equal(st, 0);
    assert_int_equal(vmmu_dirty_log_enable(VM(f), f->s.data_id, true), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(VM(f), f->s.data_id, bm, 1, NULL), 0);
    assert_int_equal(bm[0], 0);
}

static void latch_calls_of_null_are_refused_or_harmless(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_insn_begin(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_insn_end(NULL, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_latch_discard(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_latch_disable(NULL), 0);
    vmmu_latch_restore(NULL, 1);
    vmmu_latch_restore(f->v, 0); /* the token of a NULL disable */
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(f->v, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_latch_stats(f->v, &st), 0);
    assert_int_equal(st.pass, 0);
}

/* Whether an instruction begun now records its reads in the latch. */
static bool latch_records(struct fx *f)
{
    assert_int_equal(vmmu_insn_begin(f->v), 0);
    uint64_t x;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_load(f->v, DATA_VA, 8, 0, &x, &fl), 0);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(f->v, &st), 0);
    assert_int_equal(vmmu_insn_end(f->v, 0), 0);
    return st.events == 1;
}

/* A token no live disable handed out (here: one already undone) must not
 * switch the latch off: the next instruction records its reads. */
static void latch_restore_with_a_stale_token_changes_nothing(void **state)
{
    struct fx *f = *state;
    unsigned outer = vmmu_latch_disable(f->v);
    unsigned inner = vmmu_latch_disable(f->v);
    assert_int_not_equal(outer, 0);
    assert_int_not_equal(inner, 0);
    assert_int_not_equal(outer, inner);
    vmmu_latch_restore(f->v, outer); /* undoes both */
    vmmu_latch_restore(f->v, inner); /* stale */
    vmmu_latch_restore(f->v, 1000);  /* never handed out */
    assert_true(latch_records(f));
    /* A level undone and entered again gets a new token: the old one,
     * restored late (a caller's bug), does not end the new disable. */
    unsigned again = vmmu_latch_disable(f->v);
    assert_int_not_equal(again, 0);
    assert_int_not_equal(again, outer);
    vmmu_latch_restore(f->v, outer);
    assert_false(latch_records(f));
    vmmu_latch_restore(f->v, again);
    assert_true(latch_records(f));
    /* Deeper than 16 levels a disable changes nothing and returns 0; the
     * outer tokens still undo everything. */
    unsigned first = vmmu_latch_disable(f->v);
    for (int i = 1; i < 16; i++)
        assert_int_not_equal(vmmu_latch_disable(f->v), 0);
    assert_int_equal(vmmu_latch_disable(f->v), 0);
    vmmu_latch_restore(f->v, 0);
    assert_false(latch_records(f));
    vmmu_latch_restore(f->v, first);
    assert_true(latch_records(f));
}

/* ---- Device models, in process ----------------------------------------------- */

static int dm_echo(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    if (!req->write)
        req->data = req->addr;
    return 0;
}

static void dm_calls_with_null_or_mismatched_arguments_are_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(VM(f), NULL, &dm), 0);
    struct vmmu_dm_ops ops = {.access = dm_echo};
    struct vmmu_dm_server *srv = (struct vmmu_dm_server *)0x1;
    assert_int_equal(vmmu_dm_server_create_inproc(NULL, &ops, NULL, &srv), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_create_inproc(dm, NULL, NULL, &srv), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, NULL, NULL), VMMU_EINVAL);
    assert_ptr_equal(srv, (struct vmmu_dm_server *)0x1);
    assert_int_equal(vmmu_dm_server_create_inproc(dm, &ops, NULL, &srv), 0);
    uint64_t v = 0;
    /* Nobody has the port yet; NULL layer. */
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x70, 1, 0, &v), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_port_access(NULL, 0, 0x70, 1, 0, &v), VMMU_EINVAL);
    /* Mapping: NULL server, buffered without a ring, unknown flags, overlap. */
    assert_int_equal(vmmu_dm_map_ports(NULL, 0x70, 2, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_ports(srv, 0x70, 2, VMMU_DM_RANGE_BUFFERED, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_mmio(NULL, 1ull << 40, 4096, 0, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_mmio(srv, 1ull << 40, 4096, VMMU_DM_RANGE_BUFFERED, NULL, NULL),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_dm_map_mmio(srv, DATA_GPA, 4096, 0, NULL, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_dm_map_ports(srv, 0x70, 2, 0, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(srv, 0x71, 2, 0, NULL), VMMU_EOVERLAP);
    /* A port access that runs past its range, an unknown vCPU. */
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x71, 2, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(dm, 8, 0x70, 1, 0, &v), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_port_access(dm, -2, 0x70, 1, 0, &v), VMMU_EINVAL);
    /* Nothing outstanding: complete finds nothing, wait returns at once. */
    struct vmmu_dm_ioreq none = {.vcpu_id = 0, .seq = 1};
    assert_int_equal(vmmu_dm_complete(srv, &none, 1, 0), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_vcpu_wait(NULL, 0, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_wait(dm, -1, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_wait(dm, 0, 0), 0);
    /* Invalidation arguments and tickets. */
    uint64_t ticket = 0;
    assert_int_equal(vmmu_dm_invalidate(NULL, 0, 4096), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate_async(NULL, 0, 4096, &ticket), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate_async(dm, 0, 0, &ticket), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate_async(dm, ~0ull, 2, &ticket), VMMU_EINVAL);
    assert_int_equal(ticket, 0);
    assert_int_equal(vmmu_dm_invalidate_wait(NULL, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_safe_point_slow(dm, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_vcpu_safe_point_slow(NULL, 0), VMMU_EINVAL);
    assert_int_equal(*vmmu_dm_vcpu_flags(NULL, 0), 0);
    assert_int_equal(*vmmu_dm_vcpu_flags(dm, 8), 0);
    /* Statistics and checks. */
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(srv, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_check(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_server_check(srv), 0);
    assert_int_equal(vmmu_dm_server_stats(srv, &st), 0);
    assert_int_equal(st.requests, 0);
    /* The layer and the server still work. */
    assert_int_equal(vmmu_dm_port_access(dm, 0, 0x71, 1, 0, &v), 0);
    assert_int_equal(v, 0x71);
    vmmu_dm_server_destroy(NULL);
    vmmu_dm_destroy(dm);
    vmmu_dm_destroy(NULL);
    data_intact(f, 0);
}

/* A ticket vmmu_dm_invalidate_async() never handed out names no
 * invalidation: waiting for it is a bad argument, not a success. */
static void invalidate_wait_for_a_ticket_never_handed_out_is_rejected(void **state)
{
    struct fx *f = *state;
    struct vmmu_dm *dm;
    assert_int_equal(vmmu_dm_create(VM(f), NULL, &dm), 0);
    uint64_t ticket = 0;
    assert_int_equal(vmmu_dm_invalidate_async(dm, DATA_GPA, 4096, &ticket), 0);
    assert_int_equal(vmmu_dm_invalidate_wait(dm, ticket + 1), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate_wait(dm, UINT64_MAX), VMMU_EINVAL);
    assert_int_equal(vmmu_dm_invalidate_wait(dm, ticket), 0);
    assert_int_equal(vmmu_dm_invalidate_wait(dm, 0), 0);
    vmmu_dm_destroy(dm);
}

/* ---- Device models, out of process (the client library in this thread) ------- */

struct remote {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    struct vmmu_dmc *c;
};

static void remote_open(struct remote *r)
{
    assert_int_equal(vmmu_vm_create(NULL, &r->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    assert_int_equal(vmmu_region_add(r->vm, &ram, NULL), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(r->vm, &cfg, &r->dm), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_remote_config rc = {.ring_entries = 4};
    assert_int_equal(vmmu_dm_server_create_remote(r->dm, sv[0], &rc, &r->srv), 0);
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, &r->c), 0);
    assert_int_equal(vmmu_dm_map_ports(r->srv, 0x80, 4, 0, NULL), 0);
}

static void remote_close(struct remote *r)
{
    vmmu_dmc_close(r->c);
    vmmu_dm_destroy(r->dm);
    vmmu_vm_destroy(r->vm);
}

/* remote_open(), then vCPU 0's read of port 0x81 pending, as the device
 * model received it in @req. */
static void remote_open_pending(struct remote *r, struct vmmu_dmc_req *req)
{
    remote_open(r);
    uint64_t v = 0;
    assert_int_equal(vmmu_dm_port_access(r->dm, 0, 0x81, 1, 0, &v), VMMU_EPENDING);
    assert_int_equal(vmmu_dmc_wait(r->c, 5000, req), 0);
    assert_int_equal(req->addr, 0x81);
}

/* The device model answers a request with a sequence number it was not
 * handed: refused, and the real answer still reaches the vCPU. */
static void dmc_complete_with_a_sequence_not_handed_out_is_rejected(void **state)
{
    (void)state;
    struct remote r;
    struct vmmu_dmc_req req;
    uint64_t v = 0;
    remote_open_pending(&r, &req);
    struct vmmu_dmc_req wrong = req;
    wrong.seq++;
    assert_int_equal(vmmu_dmc_complete(r.c, &wrong, 0x11, 0), VMMU_EINVAL);
    wrong = req;
    wrong.slot = 1000;
    assert_int_equal(vmmu_dmc_complete(r.c, &wrong, 0x11, 0), VMMU_EINVAL);
    wrong = req;
    wrong.buffered = 1;
    assert_int_equal(vmmu_dmc_complete(r.c, &wrong, 0x11, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_complete(NULL, &req, 0x11, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_complete(r.c, NULL, 0x11, 0), VMMU_EINVAL);
    /* The vm side refuses to complete for an out-of-process server. */
    struct vmmu_dm_ioreq vm_req = {.vcpu_id = 0, .seq = 1};
    assert_int_equal(vmmu_dm_complete(r.srv, &vm_req, 0x11, 0), VMMU_EINVAL);
    /* Still in service: the right answer goes through. */
    assert_int_equal(vmmu_dmc_complete(r.c, &req, 0x5a, 0), 0);
    assert_int_equal(vmmu_dm_vcpu_wait(r.dm, 0, 5000), 0);
    assert_int_equal(vmmu_dm_port_access(r.dm, 0, 0x81, 1, 0, &v), 0);
    assert_int_equal(v, 0x5a);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(r.srv, &st), 0);
    assert_int_equal(st.proto_errors, 0);
    assert_int_equal(st.dead, 0);
    remote_close(&r);
}

/* An answer to a request whose server the vm destroyed meanwhile goes
 * nowhere: the device model hears that the vm is gone, as from
 * vmmu_dmc_wait(), not that a system call failed. */
static void dmc_complete_after_the_vm_destroyed_the_server_says_dead(void **state)
{
    (void)state;
    struct remote r;
    struct vmmu_dmc_req req;
    uint64_t v = 0;
    remote_open_pending(&r, &req);
    assert_int_equal(vmmu_dm_server_destroy(r.srv), 0);
    assert_int_equal(vmmu_dmc_complete(r.c, &req, 0x5a, 0), VMMU_EDEAD);
    assert_int_equal(vmmu_dmc_wait(r.c, 1000, &req), VMMU_EDEAD);
    /* The vCPU's access ends: its ports went with the server. */
    assert_int_equal(vmmu_dm_port_access(r.dm, 0, 0x81, 1, 0, &v), VMMU_ENOENT);
    remote_close(&r);
}

static void dmc_calls_with_null_or_wrapping_arguments_are_rejected(void **state)
{
    (void)state;
    struct remote r;
    remote_open(&r);
    struct vmmu_dmc_req req;
    struct vmmu_dmc_stats st;
    uint8_t buf[8];
    assert_int_equal(vmmu_dmc_wait(NULL, 0, &req), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_wait(r.c, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_wait(r.c, 0, &req), VMMU_ETIMEDOUT);
    assert_int_equal(vmmu_dmc_process(NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_stats(NULL, &st), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_stats(r.c, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_unmap(NULL, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_unmap(r.c, 0), VMMU_ENOENT);
    assert_int_equal(vmmu_dmc_map(r.c, 0, 8, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_read(NULL, 0, buf, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_read(r.c, 0, NULL, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_read(r.c, ~0ull - 2, buf, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_write(r.c, 0, NULL, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_write(r.c, ~0ull - 2, buf, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_fill(NULL, 0, 0xaa, 8), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_fill(r.c, ~0ull - 2, 0xaa, 8), VMMU_EINVAL);
    /* Zero bytes are nothing to copy. */
    assert_int_equal(vmmu_dmc_read(r.c, 0, NULL, 0), 0);
    assert_int_equal(vmmu_dmc_write(r.c, 0, NULL, 0), 0);
    assert_int_equal(vmmu_dmc_fill(r.c, 0, 0xaa, 0), 0);
    /* Guest memory was not touched; the client still works. */
    uint64_t x = 1;
    assert_int_equal(vmmu_gpa_read(r.vm, 0, &x, 8, 0, NULL), 0);
    assert_int_equal(x, 0);
    assert_int_equal(vmmu_dmc_write(r.c, 0, "devmodel", 8), 0);
    assert_int_equal(vmmu_gpa_read(r.vm, 0, buf, 8, 0, NULL), 0);
    assert_memory_equal(buf, "devmodel", 8);
    remote_close(&r);
}

static void dmc_connect_with_a_bad_bucket_size_closes_the_socket(void **state)
{
    (void)state;
    struct vmmu_dmc *c = (struct vmmu_dmc *)0x1;
    unsigned bad[] = {11, 25, 64};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        struct vmmu_dmc_config cfg = {.bucket_shift = bad[i]};
        assert_int_equal(vmmu_dmc_connect_fd(sv[1], &cfg, &c), VMMU_EINVAL);
        assert_ptr_equal(c, (struct vmmu_dmc *)0x1);
        errno = 0;
        assert_int_equal(fcntl(sv[1], F_GETFD), -1); /* the client owned it, even on failure */
        assert_int_equal(errno, EBADF);
        close(sv[0]);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vmmu_dmc_connect_fd(sv[1], NULL, NULL), VMMU_EINVAL);
    errno = 0;
    assert_int_equal(fcntl(sv[1], F_GETFD), -1);
    close(sv[0]);
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(vmmu_dmc_connect_path(NULL, NULL, &c), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_connect_path(longpath, NULL, &c), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_connect_path("/nonexistent/vmmu.sock", NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_dmc_connect_path("/nonexistent/vmmu.sock", NULL, &c), VMMU_ESYS);
    assert_ptr_equal(c, (struct vmmu_dmc *)0x1);
    vmmu_dmc_close(NULL);
}

/* An optional argument runs only the tests whose names match it (cmocka's
 * filter pattern, '*' and '?'). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(region_calls_with_a_null_vm_or_unknown_id_are_rejected),
        T(region_ids_of_another_vm_are_not_found),
        T(replace_with_a_null_unknown_or_misplaced_region_is_rejected),
        T(page_state_update_with_an_overflowing_count_is_out_of_range),
        T(page_state_change_refuses_bad_ranges_and_changes_nothing),
        T(gpa_write_without_a_buffer_or_with_unknown_flags_is_rejected),
        T(changes_from_inside_foreach_are_busy_not_deadlocked),
        T(pager_stats_from_inside_foreach_still_answer),
        T(dm_destroy_from_inside_foreach_is_busy_and_keeps_the_layer),
        T(vm_destroy_from_inside_foreach_is_busy_and_keeps_the_vm),
        T(vcpu_destroy_from_inside_an_mmio_callback_of_its_own_access_is_busy),
        T(vm_destroy_from_inside_an_mmio_callback_of_a_host_access_is_busy),
        T(destroys_from_inside_the_device_handler_are_busy),
        T(vcpu_destroy_from_inside_its_code_handler_is_busy),
        T(destroys_from_inside_the_pagein_handler_are_busy),
        T(dm_destroys_from_inside_an_inproc_callback_are_busy),
        T(x86_setters_and_walks_refuse_null_arguments),
        T(x86_calls_on_a_paging_state_never_set_up_are_refused),
        T(walk_commit_refuses_null_and_impossible_walks),
        T(walk_commit_refuses_a_record_altered_after_the_walk_and_stores_nothing),
        T(vcpu_queries_of_null_give_the_documented_answers),
        T(invpcid_of_an_unknown_type_raises_gp_and_flushes_nothing),
        T(destroying_an_online_vcpu_takes_it_offline_first),
        T(shootdown_with_a_vcpu_of_another_vm_is_rejected),
        T(shootdown_async_with_an_offline_self_is_rejected),
        T(safepoint_and_offline_from_another_thread_are_rejected),
        cmocka_unit_test(cpuset_calls_with_null_or_negative_ids_are_harmless),
        T(pager_in_a_missing_directory_fails_and_leaves_room_for_another),
        T(pager_calls_with_null_or_no_ranges_are_handled),
        T(pager_ranges_name_pages_of_the_pagers_own_vm),
        T(probes_refuse_null_sizes_and_unknown_access_bits),
        T(reads_and_writes_refuse_the_wrong_access_kind),
        T(prepared_operations_refuse_bad_descriptors_and_sizes),
        T(prepared_operations_refuse_a_descriptor_changed_after_preparation),
        T(prepared_move_between_different_vcpus_is_rejected),
        T(atomics_refuse_unknown_ops_sizes_and_access_bits),
        T(string_operations_refuse_bad_element_sizes),
        T(watchpoint_calls_refuse_null_flags_and_buffers),
        T(dirty_log_and_code_marks_refuse_non_ram_and_null),
        T(latch_calls_of_null_are_refused_or_harmless),
        T(latch_restore_with_a_stale_token_changes_nothing),
        T(dm_calls_with_null_or_mismatched_arguments_are_rejected),
        T(invalidate_wait_for_a_ticket_never_handed_out_is_rejected),
        cmocka_unit_test(dmc_complete_with_a_sequence_not_handed_out_is_rejected),
        cmocka_unit_test(dmc_complete_after_the_vm_destroyed_the_server_says_dead),
        cmocka_unit_test(dmc_calls_with_null_or_wrapping_arguments_are_rejected),
        cmocka_unit_test(dmc_connect_with_a_bad_bucket_size_closes_the_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
