/* Host memory running out: every allocation of the main operations is
 * made to fail in turn (the test hook of src/core/alloc.h).  Each
 * operation runs once to count its allocations (N); then for k = 1..N a
 * fresh setup runs it with the k-th allocation failing.  The call must
 * return VMMU_ENOMEM and leave its object as it was (or, where the failed
 * allocation has a fallback, succeed), the object must still work (the
 * same call made again succeeds and gives the right result), and nothing
 * may leak (the suite also runs under LeakSanitizer, which judges what
 * the teardown leaves behind). */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_sync_env.h"
#include "test_fds.h"

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "../../lib/dmclient/dmclient_internal.h"
#include "vmmu/dmclient.h"
#include "vmmu/vmmu.h"

#define NDATA 256
#define NEW_GPA 0x123456000ull /* in no radix node the setup creates */
#define MAX_EXTRA 80

struct fx {
    struct sync_env s;
    bool env;
    struct vmmu_vcpu *v;
    struct vmmu_vm *vm; /* vm_create's result */
    struct vmmu_pager *pg;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    int peer; /* the device model's end of an out-of-process server's socket */
    unsigned nfds; /* open file descriptors after the setup */
    struct vmmu_cpuset *set;
    struct vmmu_vcpu *extra[MAX_EXTRA];
    unsigned nextra;
    uint32_t ids[16];
    unsigned nids;
    uint32_t id;
    uint64_t nodes, gen, base_nodes;
    uint64_t went; /* pages vmmu_pager_balance() paged out */
    unsigned nregions;
    struct vmmu_tlb_stats st;
    /* The call succeeded although an allocation inside failed (a
     * documented fallback). */
    bool degraded;
};

/* One operation: how to set it up, run it, and check it. */
struct op {
    const char *name;
    void (*setup)(struct fx *f);
    int (*run)(struct fx *f);
    /* After a success (f->degraded: with a failed allocation inside). */
    void (*ok)(struct fx *f);
    /* After VMMU_ENOMEM: nothing changed. */
    void (*unchanged)(struct fx *f);
};

static struct vmmu_vm *VM(struct fx *f)
{
    return f->s.env.vm;
}

static void data_intact(struct fx *f, uint64_t i)
{
    sync_data_intact(&f->s, i);
}

static void all_data_intact(struct fx *f)
{
    for (uint64_t i = 0; i < NDATA; i++)
        data_intact(f, i);
}

static int count_region(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    (*(unsigned *)arg)++;
    return 0;
}

static unsigned nregions(struct vmmu_vm *vm)
{
    unsigned n = 0;
    assert_int_equal(vmmu_region_foreach(vm, count_region, &n), 0);
    return n;
}

/* Remember what a failed change must leave as it was. */
static void snapshot(struct fx *f)
{
    f->nodes = VM(f)->p2m.nodes;
    f->gen = vmmu_p2m_generation(VM(f));
    f->nregions = nregions(VM(f));
}

static void map_unchanged(struct fx *f)
{
    /* The radix tree has the nodes it had (an array grown for the region
     * may stay: capacity, not content). */
    assert_int_equal(VM(f)->p2m.nodes, f->nodes);
    assert_int_equal(vmmu_p2m_generation(VM(f)), f->gen);
    assert_int_equal(nregions(VM(f)), f->nregions);
}

static void env_up(struct fx *f)
{
    sync_env_init(&f->s, NDATA);
    f->env = true;
}

static void env_vcpu_up(struct fx *f)
{
    env_up(f);
    f->v = sync_vcpu(&f->s);
}

static void fx_down(struct fx *f)
{
    for (unsigned i = 0; i < f->nextra; i++)
        vmmu_vcpu_destroy(f->extra[i]);
    vmmu_vcpu_destroy(f->v);
    if (f->dm)
        vmmu_dm_destroy(f->dm);
    if (f->pg)
        assert_int_equal(vmmu_pager_destroy(f->pg), 0);
    vmmu_cpuset_destroy(f->set);
    vmmu_vm_destroy(f->vm);
    if (f->env)
        sync_env_fini(&f->s);
}

/* Run @op with no failure (counting its allocations), then once for each
 * of them failing. */
static void walk(const struct op *op)
{
    struct fx *f = calloc(1, sizeof(*f));
    op->setup(f);
    vmmu__alloc_fail_nth(0);
    int rc = op->run(f);
    unsigned long n = vmmu__alloc_count();
    vmmu__alloc_disarm();
    assert_int_equal(rc, 0);
    op->ok(f);
    fx_down(f);
    print_message("%s: %lu allocations\n", op->name, n);

    for (unsigned long k = 1; k <= n; k++) {
        memset(f, 0, sizeof(*f));
        op->setup(f);
        vmmu__alloc_fail_nth(k);
        rc = op->run(f);
        bool failed = vmmu__alloc_failed();
        vmmu__alloc_disarm();
        if (!failed)
            fail_msg("%s: allocation %lu of %lu was not made", op->name, k, n);
        if (rc == 0) {
            f->degraded = true;
            op->ok(f);
        } else {
            if (rc != VMMU_ENOMEM)
                fail_msg("%s: allocation %lu of %lu failing gave %s", op->name, k, n,
                         vmmu_error_name(rc));
            op->unchanged(f);
            /* The same call works once memory is back. */
            assert_int_equal(op->run(f), 0);
            op->ok(f);
        }
        fx_down(f);
    }
    free(f);
}

/* ---- vm and regions ------------------------------------------------------------ */

static void no_setup(struct fx *f)
{
    (void)f;
}

static int vm_create_run(struct fx *f)
{
    struct vmmu_vm *vm = NULL;
    struct vmmu_vm_config cfg = {.name = "nomem"};
    int rc = vmmu_vm_create(&cfg, &vm);
    if (rc)
        assert_null(vm);
    f->vm = vm;
    return rc;
}

static void vm_works(struct fx *f)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = NEW_GPA, .size = 2 * 4096};
    uint32_t id;
    assert_int_equal(vmmu_region_add(f->vm, &d, &id), 0);
    uint64_t x = 0x1234, y = 0;
    assert_int_equal(vmmu_gpa_write(f->vm, NEW_GPA + 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(f->vm, NEW_GPA + 4096, &y, 8, 0, NULL), 0);
    assert_int_equal(y, 0x1234);
}

static void vm_none(struct fx *f)
{
    assert_null(f->vm);
}

static void vm_create_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_vm_create", no_setup, vm_create_run, vm_works, vm_none};
    walk(&op);
}

/* A RAM region of 3 pages at NEW_GPA (not slot aligned: it needs radix
 * nodes of every level). */
static int add_run(struct fx *f)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = NEW_GPA, .size = 3 * 4096,
                                 .name = "new"};
    f->id = 0;
    int rc = vmmu_region_add(VM(f), &d, &f->id);
    if (rc)
        assert_int_equal(f->id, 0);
    return rc;
}

static void add_setup(struct fx *f)
{
    env_vcpu_up(f);
    snapshot(f);
}

static void add_ok(struct fx *f)
{
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), NEW_GPA + 2 * 4096, &id), 0);
    assert_int_equal(id, f->id);
    uint64_t x = 77, y = 0;
    assert_int_equal(vmmu_gpa_write(VM(f), NEW_GPA + 2 * 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(VM(f), NEW_GPA + 2 * 4096, &y, 8, 0, NULL), 0);
    assert_int_equal(y, 77);
    assert_int_equal(nregions(VM(f)), f->nregions + 1);
    data_intact(f, 3);
    assert_int_equal(sync_read(f->v, 5), DATA_GPA + 5 * 4096);
}

static void add_unchanged(struct fx *f)
{
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), NEW_GPA, &id), VMMU_EHOLE);
    map_unchanged(f);
    data_intact(f, 3);
    assert_int_equal(sync_read(f->v, 5), DATA_GPA + 5 * 4096);
}

static void region_add_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_add", add_setup, add_run, add_ok, add_unchanged};
    walk(&op);
}

/* The map's region array is full (16 entries): the add grows it. */
static void add_full_setup(struct fx *f)
{
    env_vcpu_up(f);
    for (unsigned i = nregions(VM(f)); i < 16; i++) {
        struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = (8ull << 30) + i * 4096,
                                     .size = 4096};
        assert_int_equal(vmmu_region_add(VM(f), &d, NULL), 0);
    }
    snapshot(f);
}

static void region_add_growing_the_region_array_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_add (array grows)", add_full_setup, add_run,
                                 add_ok, add_unchanged};
    walk(&op);
}

/* The same with a pager attached and some pages out. */
static void pager_up(struct fx *f, uint64_t limit)
{
    struct vmmu_pager_config cfg = {.resident_limit = limit};
    assert_int_equal(vmmu_pager_create(VM(f), &cfg, &f->pg), 0);
}

static void page_out_some(struct fx *f)
{
    struct vmmu_gpa_range r = {DATA_GPA + 4096, 4 * 4096};
    assert_int_equal(vmmu_pager_page_out(f->pg, &r, 1), 0);
}

static void add_pager_setup(struct fx *f)
{
    env_vcpu_up(f);
    pager_up(f, 0);
    page_out_some(f);
    snapshot(f);
}

static void region_add_with_a_pager_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_add (pager)", add_pager_setup, add_run, add_ok,
                                 add_unchanged};
    walk(&op);
}

/* Empty radix nodes kept in the tree (a removal could not retire them)
 * under a 2 MiB slot that a new region then covers whole. */
#define BIG_GPA (NEW_GPA & ~((2ull << 20) - 1))

static void kept_nodes_setup(struct fx *f)
{
    env_vcpu_up(f);
    f->base_nodes = VM(f)->p2m.nodes;
    uint32_t id;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = NEW_GPA, .size = 3 * 4096};
    assert_int_equal(vmmu_region_add(VM(f), &d, &id), 0);
    vmmu__alloc_fail_nth(1);
    assert_int_equal(vmmu_region_remove(VM(f), id), 0);
    assert_true(vmmu__alloc_failed());
    vmmu__alloc_disarm();
    assert_true(VM(f)->p2m.nodes > f->base_nodes);
    snapshot(f);
}

static int big_add_run(struct fx *f)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = BIG_GPA, .size = 2ull << 20};
    f->id = 0;
    return vmmu_region_add(VM(f), &d, &f->id);
}

static void big_add_ok(struct fx *f)
{
    for (uint64_t gpa = BIG_GPA; gpa < BIG_GPA + (2ull << 20); gpa += 0x3000) {
        uint32_t id;
        assert_int_equal(vmmu_region_find(VM(f), gpa, &id), 0);
        assert_int_equal(id, f->id);
    }
    uint64_t x = 9, y = 0;
    assert_int_equal(vmmu_gpa_write(VM(f), NEW_GPA + 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(VM(f), NEW_GPA + 4096, &y, 8, 0, NULL), 0);
    assert_int_equal(y, 9);
    /* Removing it frees every node the range used, kept ones included. */
    assert_int_equal(vmmu_region_remove(VM(f), f->id), 0);
    assert_int_equal(VM(f)->p2m.nodes, f->base_nodes);
    uint32_t none;
    assert_int_equal(vmmu_region_find(VM(f), NEW_GPA, &none), VMMU_EHOLE);
}

static void big_add_unchanged(struct fx *f)
{
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), BIG_GPA, &id), VMMU_EHOLE);
    map_unchanged(f);
}

static void region_add_over_nodes_a_removal_kept_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_add (over kept nodes)", kept_nodes_setup,
                                 big_add_run, big_add_ok, big_add_unchanged};
    walk(&op);
}

/* Empty nodes a removal kept (it had no memory to prune them) two levels
 * below a 1 GiB slot that a new region then covers whole: the covered
 * slot's node is retired with them, and removing the new region leaves
 * the tree as it was (they leaked: the node was freed, not its child). */
static int zero_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    *value = 0;
    return 0;
}

static void nodes_kept_two_levels_below_a_covered_slot_are_freed(void **state)
{
    (void)state;
    static const struct vmmu_mmio_ops ops = {.read = zero_read};
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0); /* 52 bits: a root and three levels */
    uint64_t base = vm->p2m.nodes;
    struct vmmu_region_desc one = {.type = VMMU_MEM_MMIO, .gpa = 0x1000000, .size = 4096,
                                   .mmio = &ops};
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &one, &id), 0);
    vmmu__alloc_fail_nth(1);
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_true(vmmu__alloc_failed());
    vmmu__alloc_disarm();
    assert_true(vm->p2m.nodes >= base + 2);
    struct vmmu_region_desc gib = {.type = VMMU_MEM_MMIO, .gpa = 0, .size = 1ull << 30,
                                   .mmio = &ops};
    assert_int_equal(vmmu_region_add(vm, &gib, &id), 0);
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_int_equal(vm->p2m.nodes, base);
    vmmu_vm_destroy(vm);
}

/* Replace the data region by fresh RAM. */
static void replace_setup(struct fx *f)
{
    env_vcpu_up(f);
    assert_int_equal(sync_read(f->v, 1), DATA_GPA + 4096); /* a TLB entry for it */
    snapshot(f);
}

static int replace_run(struct fx *f)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA, .size = NDATA * 4096};
    f->id = 0;
    int rc = vmmu_region_replace(VM(f), f->s.data_id, &d, &f->id);
    if (rc)
        assert_int_equal(f->id, 0);
    return rc;
}

static void replace_ok(struct fx *f)
{
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_info(VM(f), f->id, &info), 0);
    uint64_t x = 1;
    assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA + 4096, &x, 8, 0, NULL), 0);
    assert_int_equal(x, 0); /* the new region's memory */
    assert_int_equal(nregions(VM(f)), f->nregions);
}

static void replace_unchanged(struct fx *f)
{
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    map_unchanged(f);
    all_data_intact(f);
    assert_int_equal(sync_read(f->v, 1), DATA_GPA + 4096);
}

static void region_replace_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_replace", replace_setup, replace_run, replace_ok,
                                 replace_unchanged};
    walk(&op);
}

static void replace_pager_setup(struct fx *f)
{
    replace_setup(f);
    pager_up(f, 0);
    page_out_some(f);
    snapshot(f);
}

static void replace_pager_ok(struct fx *f)
{
    replace_ok(f);
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 0); /* the pages went with the old region */
}

static void region_replace_with_a_pager_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_replace (pager)", replace_pager_setup,
                                 replace_run, replace_pager_ok, replace_unchanged};
    walk(&op);
}

/* Remove the data region (the pager has some of its pages out). */
static int remove_run(struct fx *f)
{
    return vmmu_region_remove(VM(f), f->s.data_id);
}

/* Radix nodes left after the data region went (no allocation failing). */
static uint64_t nodes_after_remove;

static void remove_ok(struct fx *f)
{
    uint64_t x;
    assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA, &x, 8, 0, NULL), VMMU_EHOLE);
    assert_int_equal(nregions(VM(f)), f->nregions - 1);
    if (!f->degraded) {
        nodes_after_remove = VM(f)->p2m.nodes;
    } else {
        /* Nodes that could not be retired stayed in the tree, not lost:
         * the next change over the range uses them, and removing it again
         * frees them. */
        struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA,
                                     .size = NDATA * 4096};
        uint32_t id;
        assert_int_equal(vmmu_region_add(VM(f), &d, &id), 0);
        uint64_t y = 3;
        assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA + 5 * 4096, &y, 8, 0, NULL), 0);
        assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA + 5 * 4096, &x, 8, 0, NULL), 0);
        assert_int_equal(x, 3);
        assert_int_equal(vmmu_region_remove(VM(f), id), 0);
        assert_int_equal(VM(f)->p2m.nodes, nodes_after_remove);
    }
    if (f->pg) {
        struct vmmu_pager_stats st;
        assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
        assert_int_equal(st.out, 0);
    }
}

static void remove_unchanged(struct fx *f)
{
    map_unchanged(f);
    all_data_intact(f);
}

static void region_remove_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_remove", replace_setup, remove_run, remove_ok,
                                 remove_unchanged};
    walk(&op);
}

static void region_remove_with_a_pager_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_region_remove (pager)", replace_pager_setup, remove_run,
                                 remove_ok, remove_unchanged};
    walk(&op);
}

/* ---- vCPUs and the TLB ----------------------------------------------------------- */

static int vcpu_create_run(struct fx *f)
{
    struct vmmu_vcpu *v = NULL;
    int rc = vmmu_vcpu_create(VM(f), NULL, &v);
    if (rc) {
        assert_null(v);
        return rc;
    }
    struct vmmu_x86_regs r = regs_4level(f->s.root);
    assert_int_equal(vmmu_vcpu_set_state(v, &r), 0);
    f->extra[f->nextra++] = v;
    return 0;
}

static void vcpu_create_ok(struct fx *f)
{
    struct vmmu_vcpu *v = f->extra[f->nextra - 1];
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(sync_read(v, i), DATA_GPA + i * 4096);
    uint64_t x = 0;
    struct vmmu_x86_fault fl;
    assert_int_equal(vmmu_access_load(v, DATA_VA + 7 * 4096, 8, 0, &x, &fl), 0);
    assert_int_equal(x, DATA_GPA + 7 * 4096);
    /* A flush reaches every vCPU, the new one too. */
    struct vmmu_flush fa = {.type = VMMU_FLUSH_ALL};
    assert_int_equal(vmmu_shootdown_sync(VM(f), NULL, NULL, &fa), 0);
    assert_int_equal(vmmu_vcpu_id(v) >= 0, 1);
}

static void vcpu_create_unchanged(struct fx *f)
{
    all_data_intact(f);
    for (unsigned i = 0; i < f->nextra; i++)
        assert_int_equal(sync_read(f->extra[i], 2), DATA_GPA + 2 * 4096);
}

static void vcpu_create_of_the_first_vcpu_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_vcpu_create (first)", env_up, vcpu_create_run,
                                 vcpu_create_ok, vcpu_create_unchanged};
    walk(&op);
}

/* 64 vCPUs exist: the 65th needs a new id word and request-slot chunk. */
static void vcpus64_setup(struct fx *f)
{
    env_up(f);
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(vcpu_create_run(f), 0);
}

static void vcpu_create_of_the_65th_vcpu_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_vcpu_create (65th)", vcpus64_setup, vcpu_create_run,
                                 vcpu_create_ok, vcpu_create_unchanged};
    walk(&op);
}

/* Every data page read through the TLB: at the next flush the context's
 * demand (NDATA pages in a 256-entry table) makes it grow. */
static void grow_setup(struct fx *f)
{
    env_vcpu_up(f);
    for (uint64_t i = 0; i < NDATA; i++)
        assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
    assert_int_equal(vmmu_vcpu_stats(f->v, &f->st), 0);
}

static int grow_run(struct fx *f)
{
    return vmmu_vcpu_tlb_flush_all(f->v);
}

static void grow_ok(struct fx *f)
{
    struct vmmu_tlb_stats st;
    assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
    /* A failed grow keeps the old table (and still flushes it). */
    assert_int_equal(st.resize_grow, f->st.resize_grow + (f->degraded ? 0 : 1));
    if (f->degraded)
        assert_int_equal(vmmu_vcpu_tlb_entries(f->v), VMMU_TLB_ENTRIES_DEFAULT);
    else
        assert_true(vmmu_vcpu_tlb_entries(f->v) > VMMU_TLB_ENTRIES_DEFAULT);
    for (uint64_t i = 0; i < NDATA; i++)
        assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
    for (uint64_t i = 0; i < NDATA; i++)
        assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
    if (f->degraded) {
        /* The next flush tries again. */
        assert_int_equal(vmmu_vcpu_tlb_flush_all(f->v), 0);
        assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
        assert_int_equal(st.resize_grow, f->st.resize_grow + 1);
        for (uint64_t i = 0; i < NDATA; i++)
            assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
    }
}

static void fail_never(struct fx *f)
{
    (void)f;
    fail_msg("this operation has a fallback for every allocation");
}

static void tlb_growth_at_a_flush_keeps_the_old_table_when_memory_runs_out(void **state)
{
    (void)state;
    static const struct op op = {"TLB growth at a flush", grow_setup, grow_run, grow_ok,
                                 fail_never};
    walk(&op);
}

/* Pages 1 and 257 of DATA_VA (data pages 1 and 3) share an index of the
 * 256-entry table: read in turn, they keep swapping through the victim
 * array, and with no flush the context grows at once after
 * TLB_CONFLICT_GROW (1024) swaps (after 2048 when the first try found no
 * memory). */
#define CONFLICT_PAGE (1 + VMMU_TLB_ENTRIES_DEFAULT)
#define CONFLICT_SWAPS 1024

static void conflict_setup(struct fx *f)
{
    env_vcpu_up(f);
    sync_env_remap(&f->s, CONFLICT_PAGE, 3);
    assert_int_equal(sync_read(f->v, 1), DATA_GPA + 4096);
    assert_int_equal(sync_read(f->v, CONFLICT_PAGE), DATA_GPA + 3 * 4096);
    assert_int_equal(vmmu_vcpu_stats(f->v, &f->st), 0);
}

/* One read of each page, checked. */
static void conflict_round(struct fx *f)
{
    assert_int_equal(sync_read(f->v, 1), DATA_GPA + 4096);
    assert_int_equal(sync_read(f->v, CONFLICT_PAGE), DATA_GPA + 3 * 4096);
}

static uint64_t victim_hits(struct fx *f)
{
    struct vmmu_tlb_stats st;
    assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
    return st.victim_hits - f->st.victim_hits;
}

/* Swap until the swap that grows the table (and no further). */
static int conflict_run(struct fx *f)
{
    uint64_t pages[2] = {1, CONFLICT_PAGE}, want[2] = {DATA_GPA + 4096, DATA_GPA + 3 * 4096};
    for (unsigned i = 0; victim_hits(f) < CONFLICT_SWAPS; i ^= 1)
        assert_int_equal(sync_read(f->v, pages[i]), want[i]);
    return 0;
}

static void conflict_ok(struct fx *f)
{
    struct vmmu_tlb_stats st;
    assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
    if (f->degraded) {
        /* The table keeps its size and its entries. */
        assert_int_equal(st.resize_grow, f->st.resize_grow);
        assert_int_equal(vmmu_vcpu_tlb_entries(f->v), VMMU_TLB_ENTRIES_DEFAULT);
        const uint64_t *h = vmmu_tlb_lookup_read(f->v, DATA_VA + 1 * 4096, 8);
        if (!h)
            h = vmmu_tlb_lookup_read(f->v, DATA_VA + CONFLICT_PAGE * 4096ull, 8);
        assert_non_null(h);
        assert_true(*h == DATA_GPA + 4096 || *h == DATA_GPA + 3 * 4096);
        /* No new try until the swaps have doubled: no allocation, same
         * table; then the table grows. */
        vmmu__alloc_fail_nth(0);
        uint64_t pages[2] = {1, CONFLICT_PAGE}, want[2] = {DATA_GPA + 4096, DATA_GPA + 3 * 4096};
        for (unsigned i = 0; victim_hits(f) < 2 * CONFLICT_SWAPS - 1; i ^= 1) {
            assert_int_equal(sync_read(f->v, pages[i]), want[i]);
            assert_int_equal(vmmu_vcpu_tlb_entries(f->v), VMMU_TLB_ENTRIES_DEFAULT);
        }
        unsigned long tries = vmmu__alloc_count();
        vmmu__alloc_disarm();
        assert_int_equal(tries, 0);
        assert_int_equal(vmmu_vcpu_tlb_entries(f->v), VMMU_TLB_ENTRIES_DEFAULT);
        assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
        assert_int_equal(st.resize_grow, f->st.resize_grow);
        conflict_round(f);
        assert_int_equal(vmmu_vcpu_stats(f->v, &st), 0);
    }
    assert_int_equal(st.resize_grow, f->st.resize_grow + 1);
    assert_int_equal(vmmu_vcpu_tlb_entries(f->v), 2 * VMMU_TLB_ENTRIES_DEFAULT);
    /* Both pages now have an index each: no more swaps, inline hits. */
    conflict_round(f);
    uint64_t swaps = victim_hits(f);
    for (unsigned i = 0; i < 50; i++)
        conflict_round(f);
    assert_int_equal(victim_hits(f), swaps);
    const uint64_t *a = vmmu_tlb_lookup_read(f->v, DATA_VA + 1 * 4096, 8);
    const uint64_t *b = vmmu_tlb_lookup_read(f->v, DATA_VA + CONFLICT_PAGE * 4096ull, 8);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(*a, DATA_GPA + 4096);
    assert_int_equal(*b, DATA_GPA + 3 * 4096);
    for (uint64_t i = 0; i < NDATA; i++)
        assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
    all_data_intact(f);
}

static void tlb_growth_between_flushes_keeps_the_old_table_when_memory_runs_out(void **state)
{
    (void)state;
    static const struct op op = {"TLB growth at a victim swap", conflict_setup, conflict_run,
                                 conflict_ok, fail_never};
    walk(&op);
}

/* ---- access layer ---------------------------------------------------------------- */

static int dirty_run(struct fx *f)
{
    return vmmu_dirty_log_enable(VM(f), f->s.data_id, true);
}

static void dirty_ok(struct fx *f)
{
    uint64_t bm[NDATA / 64];
    assert_int_equal(vmmu_dirty_log_get_and_clear(VM(f), f->s.data_id, bm, NDATA / 64, NULL),
                     0);
    uint64_t x = 5;
    assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA + 3 * 4096 + 8, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(VM(f), f->s.data_id, bm, NDATA / 64, NULL),
                     0);
    assert_int_equal(bm[0], 1ull << 3);
}

static void dirty_unchanged(struct fx *f)
{
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(VM(f), f->s.data_id, &info), 0);
    assert_int_equal(info.flags & VMMU_REGION_LOG_DIRTY, 0);
}

static void dirty_log_enable_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dirty_log_enable", env_vcpu_up, dirty_run, dirty_ok,
                                 dirty_unchanged};
    walk(&op);
}

/* Watchpoints: the first one, and the ninth (the array grows). */
static int watch_run(struct fx *f)
{
    uint32_t id = 0;
    int rc = vmmu_watch_add(f->v, DATA_VA + f->nids * 4096, 8, VMMU_WATCH_WRITE, &id);
    if (!rc)
        f->ids[f->nids++] = id;
    return rc;
}

static void watch_ok(struct fx *f)
{
    /* Every watchpoint reports its hit. */
    for (unsigned i = 0; i < f->nids; i++) {
        struct vmmu_x86_fault fl;
        uint64_t x = 0x99;
        assert_int_equal(vmmu_access_store(f->v, DATA_VA + i * 4096, 8, 0, &x, &fl), 0);
        struct vmmu_watch_hit hit;
        assert_int_equal(vmmu_watch_take_hits(f->v, &hit, 1, NULL), 1);
        assert_int_equal(hit.id, f->ids[i]);
    }
    for (unsigned i = 0; i < f->nids; i++)
        assert_int_equal(vmmu_watch_remove(f->v, f->ids[i]), 0);
}

static void watch_unchanged(struct fx *f)
{
    assert_int_equal(vmmu_watch_remove(f->v, f->ids[f->nids - 1] + 1), VMMU_ENOENT);
}

static void watch8_setup(struct fx *f)
{
    env_vcpu_up(f);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(watch_run(f), 0);
}

static void watch0_unchanged(struct fx *f)
{
    assert_int_equal(vmmu_watch_remove(f->v, 1), VMMU_ENOENT);
}

static void watch_add_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op first = {"vmmu_watch_add (first)", env_vcpu_up, watch_run, watch_ok,
                                    watch0_unchanged};
    static const struct op ninth = {"vmmu_watch_add (ninth)", watch8_setup, watch_run,
                                    watch_ok, watch_unchanged};
    walk(&first);
    walk(&ninth);
}

/* ---- sync ------------------------------------------------------------------------- */

static void cpuset_setup(struct fx *f)
{
    assert_int_equal(vmmu_cpuset_create(&f->set), 0);
    assert_int_equal(vmmu_cpuset_add(f->set, 3), 0);
}

static int cpuset_run(struct fx *f)
{
    return vmmu_cpuset_add(f->set, 700);
}

static void cpuset_ok(struct fx *f)
{
    assert_true(vmmu_cpuset_has(f->set, 3));
    assert_true(vmmu_cpuset_has(f->set, 700));
    assert_int_equal(vmmu_cpuset_count(f->set), 2);
}

static void cpuset_unchanged(struct fx *f)
{
    assert_true(vmmu_cpuset_has(f->set, 3));
    assert_false(vmmu_cpuset_has(f->set, 700));
    assert_int_equal(vmmu_cpuset_count(f->set), 1);
}

static void cpuset_add_growing_fails_cleanly(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_cpuset_add (grows)", cpuset_setup, cpuset_run,
                                 cpuset_ok, cpuset_unchanged};
    walk(&op);
}

/* 70 vCPUs, each with an entry for page 1: a shootdown that waits keeps
 * the generation it posted to each (an array for more than 64). */
static void many_vcpus_setup(struct fx *f)
{
    env_up(f);
    for (unsigned i = 0; i < 70; i++) {
        assert_int_equal(vcpu_create_run(f), 0);
        assert_int_equal(sync_read(f->extra[i], 1), DATA_GPA + 4096);
    }
    /* Page 1 of DATA_VA now maps data page 2: only a flush shows it. */
    sync_env_remap(&f->s, 1, 2);
}

/* Each vCPU in turn comes online on this thread, which makes it act on
 * what was posted to it while offline, and reads page 1. */
static void remapped_seen(struct fx *f)
{
    for (unsigned i = 0; i < f->nextra; i++) {
        assert_int_equal(vmmu_vcpu_online(f->extra[i]), 0);
        assert_int_equal(sync_read(f->extra[i], 1), DATA_GPA + 2 * 4096);
        assert_int_equal(vmmu_vcpu_offline(f->extra[i]), 0);
    }
}

static int shootdown_sync_run(struct fx *f)
{
    struct vmmu_flush fl = {.type = VMMU_FLUSH_RANGE, .pcid = VMMU_FLUSH_ANY_PCID,
                            .va = DATA_VA + 4096, .npages = 1};
    return vmmu_shootdown_sync(VM(f), NULL, NULL, &fl);
}

static int shootdown_async_run(struct fx *f)
{
    struct vmmu_flush fl = {.type = VMMU_FLUSH_ALL};
    return vmmu_shootdown_async(VM(f), NULL, NULL, &fl);
}

static void shootdowns_with_many_vcpus_need_no_memory(void **state)
{
    (void)state;
    static const struct op sync_op = {"vmmu_shootdown_sync (70 vCPUs)", many_vcpus_setup,
                                      shootdown_sync_run, remapped_seen, fail_never};
    static const struct op async_op = {"vmmu_shootdown_async (70 vCPUs)", many_vcpus_setup,
                                       shootdown_async_run, remapped_seen, fail_never};
    walk(&sync_op);
    walk(&async_op);
}

/* A page-state change of 20 separate ranges: more than a flush request
 * holds, so they are merged (in a sorted copy; without one, everything
 * is flushed). */
static void code_setup(struct fx *f)
{
    env_vcpu_up(f);
    for (uint64_t i = 0; i < 40; i++)
        assert_int_equal(sync_read(f->v, i), DATA_GPA + i * 4096);
}

static int code_run(struct fx *f)
{
    struct vmmu_gpa_range r[20];
    for (unsigned i = 0; i < 20; i++)
        r[i] = (struct vmmu_gpa_range){DATA_GPA + (39 - 2 * i) * 4096ull, 4096};
    return vmmu_page_state_change(VM(f), r, 20, VMMU_PAGE_CODE, 0);
}

static void code_ok(struct fx *f)
{
    /* Writes to the code pages leave the inline path: their write
     * entries went (the vCPU acts on the flush when it comes online). */
    assert_int_equal(vmmu_vcpu_online(f->v), 0);
    for (uint64_t i = 1; i < 40; i += 2) {
        uint32_t st;
        assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA + i * 4096, &st), 0);
        assert_true(st & VMMU_PAGE_CODE);
        assert_null(vmmu_tlb_lookup_write(f->v, DATA_VA + i * 4096, 8));
    }
    assert_int_equal(vmmu_vcpu_offline(f->v), 0);
    all_data_intact(f);
}

static void page_state_change_of_many_ranges_needs_no_memory(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_page_state_change (20 ranges)", code_setup, code_run,
                                 code_ok, fail_never};
    walk(&op);
}

/* ---- the pager ------------------------------------------------------------------- */

static int pager_create_run(struct fx *f)
{
    struct vmmu_pager *pg = NULL;
    int rc = vmmu_pager_create(VM(f), NULL, &pg);
    if (rc)
        assert_null(pg);
    f->pg = pg;
    return rc;
}

static void pager_create_ok(struct fx *f)
{
    page_out_some(f);
    uint32_t st;
    assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA + 2 * 4096, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    all_data_intact(f); /* pages come back */
    assert_int_equal(sync_read(f->v, 3), DATA_GPA + 3 * 4096);
}

static void pager_create_unchanged(struct fx *f)
{
    assert_null(atomic_load(&VM(f)->p2m.pagein));
    assert_null(atomic_load(&VM(f)->sync->pager));
    all_data_intact(f);
}

static void pager_create_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_pager_create", env_vcpu_up, pager_create_run,
                                 pager_create_ok, pager_create_unchanged};
    walk(&op);
}

static void pager_setup(struct fx *f)
{
    env_vcpu_up(f);
    pager_up(f, NDATA / 4);
    /* Some pages are out already, one of them zero. */
    uint64_t zero = 0;
    assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA + 9 * 4096, &zero, 8, 0, NULL), 0);
    struct vmmu_gpa_range r = {DATA_GPA + 8 * 4096, 2 * 4096};
    assert_int_equal(vmmu_pager_page_out(f->pg, &r, 1), 0);
    uint64_t back = DATA_GPA + 9 * 4096;
    assert_int_equal(vmmu_gpa_write(VM(f), DATA_GPA + 9 * 4096, &back, 8, 0, NULL), 0);
    assert_int_equal(vmmu_pager_page_out(f->pg, &r, 1), 0);
    assert_int_equal(vmmu_pager_stats(f->pg, &(struct vmmu_pager_stats){0}), 0);
}

static unsigned pages_out(struct fx *f)
{
    unsigned n = 0;
    for (uint64_t i = 0; i < NDATA; i++) {
        uint32_t st;
        assert_int_equal(vmmu_page_state_get(VM(f), DATA_GPA + i * 4096, &st), 0);
        n += (st & VMMU_PAGE_PAGED_OUT) != 0;
    }
    return n;
}

static int page_out_run(struct fx *f)
{
    /* Every other page of the data region, in 100 ranges. */
    struct vmmu_gpa_range r[100];
    for (unsigned i = 0; i < 100; i++)
        r[i] = (struct vmmu_gpa_range){DATA_GPA + (20 + 2 * i) * 4096ull, 4096};
    return vmmu_pager_page_out(f->pg, r, 100);
}

static int balloon_out_run(struct fx *f)
{
    struct vmmu_gpa_range r = {DATA_GPA + 20 * 4096, 200 * 4096};
    return vmmu_pager_balloon_out(f->pg, &r, 1);
}

static void page_out_ok(struct fx *f)
{
    assert_int_equal(pages_out(f), 2 + 100);
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 102);
    all_data_intact(f);
    assert_int_equal(pages_out(f), 0);
}

static void balloon_out_ok(struct fx *f)
{
    assert_int_equal(pages_out(f), 2 + 200);
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.ballooned, 200);
    for (uint64_t i = 20; i < 220; i++) {
        uint64_t x = 1;
        assert_int_equal(vmmu_gpa_read(VM(f), DATA_GPA + i * 4096, &x, 8, 0, NULL), 0);
        assert_int_equal(x, 0);
    }
    for (uint64_t i = 0; i < 20; i++)
        data_intact(f, i);
}

/* A batch that failed took nothing: the two pages of the setup are still
 * the only ones out. */
static void pager_unchanged(struct fx *f)
{
    assert_int_equal(pages_out(f), 2);
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 2);
    assert_int_equal(st.ballooned, 0);
    for (uint64_t i = 10; i < NDATA; i++)
        data_intact(f, i);
    assert_int_equal(sync_read(f->v, 30), DATA_GPA + 30 * 4096);
}

static void pager_page_out_batch_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_pager_page_out (100 pages)", pager_setup, page_out_run,
                                 page_out_ok, pager_unchanged};
    walk(&op);
}

static void pager_balloon_out_batch_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_pager_balloon_out (200 pages)", pager_setup,
                                 balloon_out_run, balloon_out_ok, pager_unchanged};
    walk(&op);
}

static int balance_run(struct fx *f)
{
    uint64_t went = 12345;
    int rc = vmmu_pager_balance(f->pg, &went);
    if (rc)
        assert_int_equal(went, 0);
    f->went = went;
    return rc;
}

static void balance_ok(struct fx *f)
{
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 2 + f->went);
    assert_int_equal(pages_out(f), 2 + f->went);
    if (!f->degraded)
        assert_true(f->went > 0);
    all_data_intact(f);
}

static void pager_balance_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_pager_balance", pager_setup, balance_run, balance_ok,
                                 pager_unchanged};
    walk(&op);
}

/* ---- device models ------------------------------------------------------------- */

#define DEV_GPA 0x80000000ull

static int dev_access(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    if (!req->write)
        req->data = 0xd0d0 + req->offset;
    return 0;
}

static const struct vmmu_dm_ops dev_ops = {dev_access};

/* A host read of the device page at @gpa. */
static int dev_read(struct fx *f, uint64_t gpa, uint64_t *x)
{
    struct vmmu_device_req r = {.gpa = gpa, .size = 8, .vcpu_id = -1};
    int rc = vmmu_p2m_device_access(VM(f), &r);
    *x = r.data;
    return rc;
}

static void dm_works(struct fx *f)
{
    if (!f->srv)
        assert_int_equal(vmmu_dm_server_create_inproc(f->dm, &dev_ops, NULL, &f->srv), 0);
    uint32_t rid;
    assert_int_equal(vmmu_dm_map_mmio(f->srv, DEV_GPA + 0x10000, 4096, 0, NULL, &rid), 0);
    uint64_t x = 0;
    assert_int_equal(dev_read(f, DEV_GPA + 0x10000 + 8, &x), 0);
    assert_int_equal(x, 0xd0d0 + 8);
    all_data_intact(f);
}

static int dm_create_run(struct fx *f)
{
    struct vmmu_dm *dm = NULL;
    int rc = vmmu_dm_create(VM(f), NULL, &dm);
    if (rc)
        assert_null(dm);
    f->dm = dm;
    return rc;
}

static void dm_create_unchanged(struct fx *f)
{
    assert_null(atomic_load(&VM(f)->p2m.device));
    all_data_intact(f);
}

static void dm_create_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_create", env_up, dm_create_run, dm_works,
                                 dm_create_unchanged};
    walk(&op);
}

static void dm_setup(struct fx *f)
{
    env_up(f);
    assert_int_equal(dm_create_run(f), 0);
}

static int server_run(struct fx *f)
{
    struct vmmu_dm_server *srv = NULL;
    int rc = vmmu_dm_server_create_inproc(f->dm, &dev_ops, NULL, &srv);
    if (rc)
        assert_null(srv);
    f->srv = srv;
    return rc;
}

static void server_unchanged(struct fx *f)
{
    all_data_intact(f);
}

static void dm_server_create_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_server_create_inproc", dm_setup, server_run, dm_works,
                                 server_unchanged};
    walk(&op);
}

/* Mapping ranges: an MMIO range (a region and the range table) and ports. */
static void srv_setup(struct fx *f)
{
    dm_setup(f);
    assert_int_equal(server_run(f), 0);
    uint32_t rid;
    assert_int_equal(vmmu_dm_map_mmio(f->srv, DEV_GPA, 4096, 0, NULL, &rid), 0);
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x60, 4, 0, NULL), 0);
    snapshot(f);
}

static int map_mmio_run(struct fx *f)
{
    f->id = 0;
    return vmmu_dm_map_mmio(f->srv, DEV_GPA + 0x4000, 2 * 4096, 0, NULL, &f->id);
}

static void map_mmio_ok(struct fx *f)
{
    uint64_t x = 0;
    assert_int_equal(dev_read(f, DEV_GPA + 0x5000, &x), 0);
    assert_int_equal(x, 0xd0d0 + 0x1000);
    assert_int_equal(nregions(VM(f)), f->nregions + 1);
    assert_int_equal(dev_read(f, DEV_GPA + 16, &x), 0);
    assert_int_equal(x, 0xd0d0 + 16);
}

static void map_unchanged_dev(struct fx *f)
{
    uint64_t x;
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), DEV_GPA + 0x4000, &id), VMMU_EHOLE);
    assert_int_equal(dev_read(f, DEV_GPA + 0x5000, &x), VMMU_EINVAL);
    assert_int_equal(nregions(VM(f)), f->nregions);
    assert_int_equal(dev_read(f, DEV_GPA + 16, &x), 0);
    assert_int_equal(x, 0xd0d0 + 16);
}

static void dm_map_mmio_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_map_mmio", srv_setup, map_mmio_run, map_mmio_ok,
                                 map_unchanged_dev};
    walk(&op);
}

static int map_ports_run(struct fx *f)
{
    return vmmu_dm_map_ports(f->srv, 0x70, 2, 0, NULL);
}

static void map_ports_ok(struct fx *f)
{
    /* Mapping the same ports again overlaps: they are taken. */
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x71, 1, 0, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x72, 1, 0, NULL), 0);
}

static void map_ports_unchanged(struct fx *f)
{
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x60, 1, 0, NULL), VMMU_EOVERLAP);
}

static void dm_map_ports_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_map_ports", srv_setup, map_ports_run, map_ports_ok,
                                 map_ports_unchanged};
    walk(&op);
}

/* Destroying a server rebuilds the routing tables without it.  It cannot
 * fail: without memory for the new tables its ranges stay in the old ones
 * but route nowhere, so no access reaches the freed server. */
static int server_destroy_run(struct fx *f)
{
    int rc = vmmu_dm_server_destroy(f->srv);
    f->srv = NULL;
    return rc;
}

static void server_destroy_ok(struct fx *f)
{
    uint64_t x = 0;
    assert_int_equal(vmmu_dm_port_access(f->dm, 0, 0x60, 1, 0, &x), VMMU_ENOENT);
    assert_int_equal(vmmu_dm_port_access(f->dm, -1, 0x61, 1, 0, &x), VMMU_ENOENT);
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), DEV_GPA, &id), VMMU_EHOLE);
    assert_int_equal(nregions(VM(f)), f->nregions - 1);
    dm_works(f); /* a new server, a new range: the tables are rebuilt again */
    assert_int_equal(vmmu_dm_port_access(f->dm, 0, 0x60, 1, 0, &x), VMMU_ENOENT);
}

static void dm_server_destroy_never_leaves_a_route_to_the_freed_server(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_server_destroy", srv_setup, server_destroy_run,
                                 server_destroy_ok, server_unchanged};
    walk(&op);
}

/* An out-of-process server over a socketpair, with the device model (the
 * client library) on this thread. */
static void remote_setup(struct fx *f)
{
    env_up(f);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(VM(f), &cfg, &f->dm), 0);
    f->peer = -1;
    f->nfds = open_fds();
}

static int remote_run(struct fx *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vmmu_dm_server *srv = NULL;
    struct vmmu_dm_remote_config rc = {.ring_entries = 4};
    int err = vmmu_dm_server_create_remote(f->dm, sv[0], &rc, &srv);
    f->srv = srv;
    f->peer = sv[1];
    if (err)
        assert_null(srv);
    return err;
}

static void remote_ok(struct fx *f)
{
    struct vmmu_dmc *c;
    assert_int_equal(vmmu_dmc_connect_fd(f->peer, NULL, &c), 0);
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x80, 4, 0, NULL), 0);
    uint64_t x = 0;
    assert_int_equal(vmmu_dm_port_access(f->dm, 0, 0x81, 1, 0, &x), VMMU_EPENDING);
    struct vmmu_dmc_req req;
    assert_int_equal(vmmu_dmc_wait(c, 5000, &req), 0);
    assert_int_equal(req.addr, 0x81);
    assert_int_equal(vmmu_dmc_complete(c, &req, 0x5a, 0), 0);
    assert_int_equal(vmmu_dm_vcpu_wait(f->dm, 0, 5000), 0);
    assert_int_equal(vmmu_dm_port_access(f->dm, 0, 0x81, 1, 0, &x), 0);
    assert_int_equal(x, 0x5a);
    /* The device model sees guest RAM through the region table. */
    for (uint64_t i = 0; i < NDATA; i += 37) {
        uint64_t y = 0;
        assert_int_equal(vmmu_dmc_read(c, DATA_GPA + i * 4096, &y, 8), 0);
        assert_int_equal(y, DATA_GPA + i * 4096);
    }
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(f->srv, &st), 0);
    assert_int_equal(st.proto_errors, 0);
    assert_int_equal(st.dead, 0);
    vmmu_dmc_close(c);
    all_data_intact(f);
}

static void remote_unchanged(struct fx *f)
{
    /* No server: nothing serves the ports, and the vm's end of the socket
     * was closed (the device model sees the vm hang up). */
    assert_int_equal(vmmu_dm_map_ports(f->srv, 0x80, 4, 0, NULL), VMMU_EINVAL);
    uint64_t x = 0;
    assert_int_equal(vmmu_dm_port_access(f->dm, 0, 0x81, 1, 0, &x), VMMU_ENOENT);
    struct vmmu_dmc *c = NULL;
    int rc = vmmu_dmc_connect_fd(f->peer, NULL, &c);
    if (rc == 0) {
        /* The HELLO went out before the failure: the connection is dead. */
        struct vmmu_dmc_req req;
        assert_int_equal(vmmu_dmc_wait(c, 5000, &req), VMMU_EDEAD);
        vmmu_dmc_close(c);
    }
    f->peer = -1;
    /* The device dirty bitmap, once made, belongs to the vm: it stays. */
    int kept = atomic_load(&VM(f)->dev_dirty) != NULL;
    assert_int_equal(open_fds(), f->nfds + kept);
    all_data_intact(f);
}

static void dm_server_create_remote_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    static const struct op op = {"vmmu_dm_server_create_remote", remote_setup, remote_run,
                                 remote_ok, remote_unchanged};
    walk(&op);
}

/* ---- the device-model client library ------------------------------------------------ */

/* The client library has a hook of its own (lib/dmclient/dmclient_internal.h):
 * its allocations fail in turn here, until the one asked for is not made. */

/* Connecting: refused with VMMU_ENOMEM, every descriptor the HELLO brought
 * closed, and the vm sees its device model gone. */
static void dmc_connect_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    unsigned k;
    for (k = 1;; k++) {
        struct fx f = {0};
        remote_setup(&f);
        assert_int_equal(remote_run(&f), 0);
        unsigned nfds = open_fds();
        struct vmmu_dmc *c = NULL;
        atomic_store(&vmmu__dmc_fail_nth, k);
        int rc = vmmu_dmc_connect_fd(f.peer, NULL, &c);
        bool reached = atomic_exchange(&vmmu__dmc_fail_nth, 0) == 0;
        if (!reached) {
            assert_int_equal(rc, 0);
            vmmu_dmc_close(c);
            fx_down(&f);
            break;
        }
        assert_int_equal(rc, VMMU_ENOMEM);
        assert_null(c);
        assert_int_equal(open_fds(), nfds - 1); /* its socket, and nothing else */
        assert_int_equal(vmmu_dm_server_check(f.srv), VMMU_EDEAD);
        uint64_t x;
        assert_int_equal(vmmu_dm_map_ports(f.srv, 0x80, 1, 0, NULL), 0);
        assert_int_equal(vmmu_dm_port_access(f.dm, 0, 0x80, 1, 0, &x), VMMU_EDEAD);
        all_data_intact(&f);
        fx_down(&f);
    }
    print_message("vmmu_dmc_connect_fd: %u allocations\n", k - 1);
    assert_int_equal(k - 1, 2);
}

/* Mapping guest RAM: a new bucket that cannot be allocated fails the map
 * with VMMU_ENOMEM and maps nothing; buckets already mapped stay, and the
 * same map works once memory is back.  A read across two buckets fails
 * at either. */
static void dmc_mapcache_growth_fails_cleanly(void **state)
{
    (void)state;
    struct fx f = {0};
    remote_setup(&f);
    assert_int_equal(remote_run(&f), 0);
    struct vmmu_dmc *c;
    assert_int_equal(vmmu_dmc_connect_fd(f.peer, NULL, &c), 0);
    uint64_t y = 0;
    assert_int_equal(vmmu_dmc_read(c, DATA_GPA, &y, 8), 0); /* the first 64 KiB bucket */
    assert_int_equal(y, DATA_GPA);
    struct vmmu_dmc_stats st0, st;
    assert_int_equal(vmmu_dmc_stats(c, &st0), 0);

    void *p = (void *)1;
    atomic_store(&vmmu__dmc_fail_nth, 1);
    assert_int_equal(vmmu_dmc_map(c, DATA_GPA + 0x20000, 8, 1, &p), VMMU_ENOMEM);
    assert_int_equal(atomic_load(&vmmu__dmc_fail_nth), 0);
    assert_ptr_equal(p, (void *)1);
    assert_int_equal(vmmu_dmc_stats(c, &st), 0);
    assert_int_equal(st.mapped_bytes, st0.mapped_bytes);
    assert_int_equal(vmmu_dmc_unmap(c, DATA_GPA + 0x20000), VMMU_ENOENT);
    assert_int_equal(vmmu_dmc_map(c, DATA_GPA + 0x20000, 8, 1, &p), 0);
    assert_int_equal(*(uint64_t *)p, DATA_GPA + 0x20000);
    assert_int_equal(vmmu_dmc_unmap(c, DATA_GPA + 0x20000), 0);

    /* 16 bytes across the edge of the buckets at 0x30000 and 0x40000. */
    uint64_t two[2];
    for (unsigned k = 1; k <= 2; k++) {
        atomic_store(&vmmu__dmc_fail_nth, k);
        assert_int_equal(vmmu_dmc_read(c, DATA_GPA + 0x40000 - 8, two, 16), VMMU_ENOMEM);
        assert_int_equal(atomic_load(&vmmu__dmc_fail_nth), 0);
        /* Nothing stays pinned: a map of either bucket can be unmapped once. */
        for (uint64_t g = DATA_GPA + 0x30000; g <= DATA_GPA + 0x40000; g += 0x10000) {
            assert_int_equal(vmmu_dmc_map(c, g, 8, 0, &p), 0);
            assert_int_equal(vmmu_dmc_unmap(c, g), 0);
            assert_int_equal(vmmu_dmc_unmap(c, g), VMMU_ENOENT);
        }
        /* Drop both again so the next round allocates both. */
        vmmu__dmc_invalidate(c, DATA_GPA + 0x30000, 0x20000);
    }
    assert_int_equal(vmmu_dmc_read(c, DATA_GPA + 0x40000 - 8, two, 16), 0);
    assert_int_equal(two[1], DATA_GPA + 0x40000);
    assert_int_equal(vmmu_dmc_read(c, DATA_GPA + 0x3f000, two, 8), 0);
    assert_int_equal(two[0], DATA_GPA + 0x3f000);
    vmmu_dmc_close(c);
    fx_down(&f);
}

/* ---- the hook itself --------------------------------------------------------------- */

static void the_hook_counts_and_fails_only_the_allocation_asked_for(void **state)
{
    (void)state;
    vmmu__alloc_fail_nth(2);
    void *a = vmmu__malloc(8);
    errno = 0;
    void *b = vmmu__calloc(1, 8);
    int err = errno;
    void *c = vmmu__realloc(NULL, 8);
    void *d = NULL;
    int pm = vmmu__posix_memalign(&d, 64, 64);
    assert_int_equal(vmmu__alloc_count(), 4);
    assert_true(vmmu__alloc_failed());
    vmmu__alloc_disarm();
    assert_non_null(a);
    assert_null(b);
    assert_int_equal(err, ENOMEM);
    assert_non_null(c);
    assert_int_equal(pm, 0);
    free(a);
    free(c);
    free(d);
    vmmu__alloc_fail_nth(1);
    assert_int_equal(vmmu__posix_memalign(&d, 64, 64), ENOMEM);
    vmmu__alloc_fail_nth(1);
    assert_null(vmmu__aligned_alloc(64, 64));
    vmmu__alloc_disarm();
    /* Disarmed: nothing counted, nothing fails. */
    d = vmmu__aligned_alloc(64, 64);
    assert_non_null(d);
    free(d);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_hook_counts_and_fails_only_the_allocation_asked_for),
        cmocka_unit_test(vm_create_fails_cleanly_at_every_allocation),
        cmocka_unit_test(region_add_fails_cleanly_at_every_allocation),
        cmocka_unit_test(region_add_growing_the_region_array_fails_cleanly),
        cmocka_unit_test(region_add_with_a_pager_fails_cleanly),
        cmocka_unit_test(region_add_over_nodes_a_removal_kept_fails_cleanly),
        cmocka_unit_test(nodes_kept_two_levels_below_a_covered_slot_are_freed),
        cmocka_unit_test(region_replace_fails_cleanly_at_every_allocation),
        cmocka_unit_test(region_replace_with_a_pager_fails_cleanly),
        cmocka_unit_test(region_remove_fails_cleanly_at_every_allocation),
        cmocka_unit_test(region_remove_with_a_pager_fails_cleanly),
        cmocka_unit_test(vcpu_create_of_the_first_vcpu_fails_cleanly),
        cmocka_unit_test(vcpu_create_of_the_65th_vcpu_fails_cleanly),
        cmocka_unit_test(tlb_growth_at_a_flush_keeps_the_old_table_when_memory_runs_out),
        cmocka_unit_test(tlb_growth_between_flushes_keeps_the_old_table_when_memory_runs_out),
        cmocka_unit_test(dirty_log_enable_fails_cleanly_at_every_allocation),
        cmocka_unit_test(watch_add_fails_cleanly_at_every_allocation),
        cmocka_unit_test(cpuset_add_growing_fails_cleanly),
        cmocka_unit_test(shootdowns_with_many_vcpus_need_no_memory),
        cmocka_unit_test(page_state_change_of_many_ranges_needs_no_memory),
        cmocka_unit_test(pager_create_fails_cleanly_at_every_allocation),
        cmocka_unit_test(pager_page_out_batch_fails_cleanly_at_every_allocation),
        cmocka_unit_test(pager_balloon_out_batch_fails_cleanly_at_every_allocation),
        cmocka_unit_test(pager_balance_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dm_create_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dm_server_create_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dm_map_mmio_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dm_map_ports_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dm_server_destroy_never_leaves_a_route_to_the_freed_server),
        cmocka_unit_test(dm_server_create_remote_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dmc_connect_fails_cleanly_at_every_allocation),
        cmocka_unit_test(dmc_mapcache_growth_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
