/* SPDX-License-Identifier: MIT */
/* The replay latch and the retry flow on one thread: a device model that
 * answers "later", memory and page tables changed between the passes, and
 * the second pass seeing what the first one saw. */
#include "test_access_env.h"

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000100000ull;
static const uint64_t VDEV = 0x0000400000200000ull;
static const uint64_t VMMIO = 0x0000400000300000ull;
/* A second device page, and a page whose type the host changes between
 * the passes. */
static const uint64_t VDEV2 = 0x0000400000400000ull;
static const uint64_t VCHG = 0x0000400000500000ull;
#define DEV2_GPA (DEV_GPA + 0x1000)
#define CHG_GPA 0x60000000ull

/* A device that pends once per access, then answers; counts calls. */
struct dev {
    unsigned calls, writes;
    bool pend_next;
    unsigned pend_call; /* also pend the call of this number (1-based) */
    uint64_t value;
    uint64_t last_write;
    unsigned chg_calls;   /* calls for the page at CHG_GPA */
    unsigned dev2_writes; /* writes to the page at DEV2_GPA */
    uint64_t wlog[8];     /* the first writes' values, in order */
};

static bool in_page(uint64_t gpa, uint64_t page)
{
    return gpa >= page && gpa < page + 4096;
}

static int dev_handler(void *opaque, struct vmmu_device_req *req)
{
    struct dev *d = opaque;
    d->calls++;
    if (in_page(req->gpa, CHG_GPA))
        d->chg_calls++;
    if (d->pend_next || d->calls == d->pend_call) {
        d->pend_next = false;
        return VMMU_EPENDING;
    }
    if (req->write) {
        if (d->writes < 8)
            d->wlog[d->writes] = req->data;
        d->writes++;
        if (in_page(req->gpa, DEV2_GPA))
            d->dev2_writes++;
        d->last_write = req->data;
    } else {
        req->data = d->value;
    }
    return 0;
}

struct fx {
    struct acc_env e;
    struct dev dev;
    struct mmio_log chg_mmio; /* the page at CHG_GPA while it is MMIO */
};

static int setup_bits(void **state, unsigned gpa_bits)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    acc_env_init_bits(&f->e, gpa_bits);
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(f->e.t.env.vm, &d, NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(f->e.t.env.vm, dev_handler, &f->dev), 0);
    amap(&f->e, VA, DATA(0), PTE_RW);
    amap(&f->e, VDEV, DEV_GPA, PTE_RW);
    struct vmmu_region_desc d2 = {.type = VMMU_MEM_DEVICE, .gpa = DEV2_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(f->e.t.env.vm, &d2, NULL), 0);
    amap(&f->e, VDEV2, DEV2_GPA, PTE_RW);
    amap(&f->e, VCHG, CHG_GPA, PTE_RW);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_bits(state, 0);
}

/* A vm 36 bits wide under a CPU with MAXPHYADDR 40. */
static int setup_narrow(void **state)
{
    return setup_bits(state, 36);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    acc_env_fini(&f->e);
    free(f);
    return 0;
}

static struct vmmu_vcpu *V(struct fx *f)
{
    return f->e.t.vcpu;
}

static void device_read_that_pends_returns_pending_and_the_retry_completes(void **state)
{
    struct fx *f = *state;
    f->dev.pend_next = true;
    f->dev.value = 0x1234;
    uint64_t v = 0;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 4, 0, &v, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 4, 0, &v, &flt), 0);
    assert_int_equal(v & 0xffffffff, 0x1234);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, 2);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, 0);
}

static void replay_returns_what_the_first_pass_read_after_memory_changed(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t a = 0, b = 0;
    put64(&f->e.t.env, DATA(0) + 8, 111);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA + 8, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 111);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    put64(&f->e.t.env, DATA(0) + 8, 222); /* another agent writes the operand */

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA + 8, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 111);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    /* The next instruction sees memory as it is. */
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA + 8, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 222);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
}

static void replay_uses_the_first_translation_after_tables_are_rewritten_and_flushed(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t a = 0, b = 0;
    put64(&f->e.t.env, DATA(0), 1);
    put64(&f->e.t.env, DATA(7), 7);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    amap(&f->e, VA, DATA(7), PTE_RW); /* the guest remaps the page */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 1);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.xlates_replayed >= 1);
    assert_true(st.events_replayed >= 1);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
}

static void tlb_hit_in_the_first_pass_is_recorded_and_replayed_after_a_remap(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t v = 0x55, b = 0;
    /* Warm write entry before the instruction. */
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    f->dev.pend_next = true;
    struct vmmu_tlb_stats before, after;
    assert_int_equal(vmmu_vcpu_stats(V(f), &before), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    v = 0x66;
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    assert_int_equal(vmmu_vcpu_stats(V(f), &after), 0);
    /* Served by the TLB entry: no slow-path call, yet recorded. */
    assert_int_equal(after.misses + after.slow_hits + after.victim_hits,
                     before.misses + before.slow_hits + before.victim_hits);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.xlates, 1);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    amap(&f->e, VA, DATA(7), PTE_RW); /* the guest remaps the page */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    v = 0x77;
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    /* The re-execution wrote through the first pass's translation. */
    assert_int_equal(get64(&f->e.t.env, DATA(0) + 8), 0x77);
    assert_int_equal(get64(&f->e.t.env, DATA(7) + 8), 0);
}

/* A first pass that wrote to a frame beyond the vm's width (a hole: the
 * write went nowhere) replays that translation, not the guest's new one. */
static void a_replayed_write_to_a_frame_beyond_the_vms_width_still_goes_nowhere(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    const uint64_t far = 1ull << 38;
    uint64_t v = 0x66, b = 0;
    amap(&f->e, VA, far, PTE_RW);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    amap(&f->e, VA, DATA(7), PTE_RW); /* the guest remaps the page */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    /* A probe in the replay sees the recorded translation: the hole. */
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(V(f), VA + 8, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.type, VMMU_MEM_HOLE);
    assert_int_equal(p.gpa, far + 8);
    v = 0x77;
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.xlates_replayed >= 1);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(get64(&f->e.t.env, DATA(7) + 8), 0);
    /* The next instruction uses the new translation. */
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &v, &flt), 0);
    assert_int_equal(get64(&f->e.t.env, DATA(7) + 8), 0x77);
}

static void replayed_walk_serves_recorded_entries_for_a_new_access(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t a = 0, b = 0;
    /* Pass 1 walks VA (recording the upper entries), then pends. */
    f->dev.pend_next = true;
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.entries >= 4); /* PML4E, PDPTE, PDE, PTE of VA at least */
    uint64_t before = st.entries_replayed;
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0); /* so that the write walks */
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    /* A write to VA was not made by pass 1: its walk reads recorded entries. */
    assert_int_equal(vmmu_access_store(V(f), VA + 64, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.entries_replayed > before);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
}

/* The guest-physical address of the page-directory entry that maps @va. */
static uint64_t pde_of(struct fx *f, uint64_t va)
{
    uint64_t table = f->e.root;
    for (unsigned level = 4; level > 2; level--)
        table = get64(&f->e.t.env, slot9(table, va, level)) & ADDR_MASK;
    return slot9(table, va, 2);
}

/* Between the passes the guest points the page directory entry of VA and
 * VB at a new page table (VB: DATA(9) instead of DATA(8)) and flushes.  The
 * re-execution first walks VB through the recorded upper entries (the old
 * table), then the caller gives up on it with vmmu_latch_discard() before
 * vmmu_insn_end().  The next instruction must see the guest's tables as
 * they are: the entry that replayed walk filled must not outlive the
 * instruction, discard or not. */
static void a_discard_inside_a_replay_drops_what_its_walks_filled_from_recorded_entries(
    void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    const uint64_t VB = VA + 4096;
    uint64_t a = 0, b = 0;
    amap(&f->e, VB, DATA(8), PTE_RW);
    put64(&f->e.t.env, DATA(8), 8);
    put64(&f->e.t.env, DATA(9), 9);

    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    /* The guest moves VA and VB to a new page table, and flushes. */
    uint64_t pde_at = pde_of(f, VA);
    uint64_t old_pt = get64(&f->e.t.env, pde_at) & ADDR_MASK;
    uint64_t new_pt = env_page(&f->e.t.env);
    put64(&f->e.t.env, slot9(new_pt, VA, 1), DATA(0) | PTE_RW);
    put64(&f->e.t.env, slot9(new_pt, VB, 1), DATA(9) | PTE_RW);
    put64(&f->e.t.env, pde_at, new_pt | UPPER | E_A);
    assert_int_not_equal(old_pt, new_pt);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    /* VB was not reached by the first pass: its walk is served the
     * recorded upper entries, so it goes through the old table. */
    assert_int_equal(vmmu_access_load(V(f), VB, 8, 0, &a, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(a, 8);
    assert_int_equal(vmmu_latch_discard(V(f)), 0); /* the caller gives up */
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VB, 8, 0, &a, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(a, 9);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    /* And outside an instruction (the inline hit path) too. */
    assert_int_equal(vmmu_access_load(V(f), VB, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 9);
}

/* As above, but the re-execution's new walk finds the translation records
 * full: the access fails with VMMU_EOVERFLOW after its walk (through the
 * recorded upper entries) filled the TLB.  That fill is recorded nowhere,
 * yet it must not serve the next instruction either. */
static void a_replayed_walk_that_overflows_the_translations_leaves_no_stale_entry(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    const unsigned n = VMMU_LATCH_XLATES - 1; /* and the device page: full */
    const uint64_t VB = VA + (uint64_t)n * 4096;
    uint64_t a = 0, b = 0;
    for (unsigned i = 1; i < n; i++)
        amap(&f->e, VA + (uint64_t)i * 4096, DATA(0), PTE_RW);
    amap(&f->e, VB, DATA(8), PTE_RW);
    put64(&f->e.t.env, DATA(8), 8);
    put64(&f->e.t.env, DATA(9), 9);

    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(vmmu_access_load(V(f), VA + (uint64_t)i * 4096, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.xlates, VMMU_LATCH_XLATES);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    /* The guest moves the pages to a new page table, and flushes. */
    uint64_t pde_at = pde_of(f, VA);
    uint64_t new_pt = env_page(&f->e.t.env);
    for (unsigned i = 0; i < n; i++)
        put64(&f->e.t.env, slot9(new_pt, VA + (uint64_t)i * 4096, 1), DATA(0) | PTE_RW);
    put64(&f->e.t.env, slot9(new_pt, VB, 1), DATA(9) | PTE_RW);
    put64(&f->e.t.env, pde_at, new_pt | UPPER | E_A);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(f)), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(vmmu_access_load(V(f), VA + (uint64_t)i * 4096, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    int rc = vmmu_access_load(V(f), VB, 8, 0, &a, &flt);
    assert_int_equal(rc, VMMU_EOVERFLOW);
    assert_int_equal(vmmu_insn_end(V(f), rc), 0);

    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VB, 8, 0, &a, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(a, 9);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(vmmu_access_load(V(f), VB, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 9);
}

/* A task switch loads CR3 inside one instruction: what the instruction
 * reads of a linear page afterwards goes through the new tables, in its
 * first pass and in its replay, although it read the same page (same
 * access kind, same context) under the old tables before. */
static void a_cr3_load_inside_an_instruction_translates_the_rest_through_the_new_tables(
    void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t root1 = f->e.root, root2 = env_page(&f->e.t.env);
    tmap(&f->e.t, root2, VA, 1, UPPER, DATA(3) | PTE_RW);
    tmap(&f->e.t, root2, VDEV, 1, UPPER, DEV_GPA | PTE_RW);
    put64(&f->e.t.env, DATA(0), 1);
    put64(&f->e.t.env, DATA(3), 3);
    f->dev.pend_next = true;
    for (unsigned pass = 1; pass <= 2; pass++) {
        uint64_t a = 0, b = 0;
        assert_int_equal(vmmu_vcpu_set_cr3(V(f), root1, &flt), 0);
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
        assert_int_equal(a, 1);
        assert_int_equal(vmmu_vcpu_set_cr3(V(f), root2, &flt), 0);
        assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
        assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
        assert_int_equal(a, 3);
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass == 1 ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        put64(&f->e.t.env, DATA(0), 10); /* the replay reads what the first pass read */
        put64(&f->e.t.env, DATA(3), 30);
    }
    /* Both translations were served from the record in the replay. */
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    uint64_t a = 0;
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 30);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
}

static void device_write_completed_in_the_first_pass_is_not_repeated(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t w = 0x55, b = 0;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV + 8, 8, 0, &w, &flt), 0);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(f->dev.writes, 1);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV + 8, 8, 0, &w, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->dev.writes, 1);
}

/* A latch kept across more passes than a record's 16-bit pass number
 * counts still serves what the first pass did: the device write is made
 * once, and the translations of the first pass are still frozen.  (It used
 * to be dropped at the 65,535th pass, and the next one wrote again.) */
static void a_latch_kept_across_70000_passes_still_repeats_nothing(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t w = 0x55, b = 0;
    const unsigned passes = 70000;
    for (unsigned pass = 1; pass <= passes; pass++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_store(V(f), VDEV + 8, 8, 0, &w, &flt), 0);
        f->dev.pend_next = true;
        assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
        assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    }
    assert_int_equal(f->dev.writes, 1);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, passes);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV + 8, 8, 0, &w, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, passes + 1);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->dev.writes, 1);
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, 0);
}

/* A re-execution that writes 4 bytes to a device where the first pass
 * wrote 2 (it took another path) makes the whole 4-byte write: the first
 * pass's 2-byte write is not taken for half of it (which left a 2-byte
 * write of the upper half). */
static void a_replayed_device_write_of_another_size_is_made_whole(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t w2 = 0x1111, w4 = 0x22222222, b;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV + 16, 2, 0, &w2, &flt), 0);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_access_load(V(f), VDEV2, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV + 16, 4, 0, &w4, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV2, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->dev.writes, 2);
    assert_int_equal(f->dev.last_write, 0x22222222);
}

/* The first pass loads a qword and pends; another agent changes it; the
 * re-execution takes another path and makes a locked add of that qword.
 * The add is made live on the current value: the recorded load is not
 * taken for the read half of a locked update (which then made a plain,
 * non-atomic store of the load's value plus one, losing the change). */
static void a_locked_add_where_the_first_pass_loaded_is_made_live(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    put64(&f->e.t.env, DATA(0) + 64, 5);
    uint64_t a = 0, b = 0, old = 0;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA + 64, 8, 0, &a, &flt), 0);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    put64(&f->e.t.env, DATA(0) + 64, 10);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rmw(V(f), VA + 64, 8, VMMU_RMW_ADD, 1, &old, 0, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(old, 10);
    assert_int_equal(get64(&f->e.t.env, DATA(0) + 64), 11);
}

static void latch_overflow_returns_eoverflow(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint8_t buf[4096];
    int rc = 0;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    for (unsigned i = 0; i < 8 && rc == 0; i++)
        rc = vmmu_access_read(V(f), VA, buf, sizeof(buf), 0, &flt);
    assert_int_equal(rc, VMMU_EOVERFLOW);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.overflows >= 1);
    assert_true(st.bytes <= VMMU_LATCH_BYTES);
    assert_int_equal(vmmu_insn_end(V(f), rc), 0);
}

static unsigned mmio_reads_at(const struct fx *f, uint64_t offset)
{
    unsigned n = 0;
    for (unsigned i = 0; i < f->e.mmio.n; i++)
        if (!f->e.mmio.op[i].write && f->e.mmio.op[i].offset == offset)
            n++;
    return n;
}

/* REP MOVSB from MMIO to a device page whose write of element 1 pends,
 * run as an emulator runs it: resume after a step with progress, re-execute
 * after VMMU_EPENDING.  Each source byte is read once (a FIFO loses
 * nothing): element 1 is the first of its call, so its pending write
 * keeps its read in the latch for the re-execution. */
static void rep_movs_from_mmio_to_a_pending_device_reads_each_element_once(void **state)
{
    struct fx *f = *state;
    amap(&f->e, VMMIO, MMIO_GPA, PTE_RW);
    f->dev.pend_call = 2;
    struct vmmu_rep r = {.dst = VDEV, .src = VMMIO, .count = 3, .elem = 1};
    struct vmmu_x86_fault flt;
    unsigned pending = 0;
    for (unsigned step = 0; r.count && step < 10; step++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        int rc = vmmu_access_rep_movs(V(f), &r, 100, 0, &flt);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        assert_true(rc == 0 || rc == VMMU_EPENDING);
        assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
        pending += rc == VMMU_EPENDING;
    }
    assert_int_equal(r.count, 0);
    assert_int_equal(pending, 1);
    assert_int_equal(f->dev.writes, 3);
    for (uint64_t off = 0; off < 3; off++)
        assert_int_equal(mmio_reads_at(f, off), 1);
}

/* The same copy when the latch has room for one more event only: the
 * element's read is not made, since its write could not be recorded after
 * it (the re-execution would read the device again). */
static void rep_movs_between_devices_reads_nothing_when_the_latch_is_nearly_full(void **state)
{
    struct fx *f = *state;
    amap(&f->e, VMMIO, MMIO_GPA, PTE_RW);
    struct vmmu_x86_fault flt;
    uint8_t b;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    for (unsigned i = 0; i < VMMU_LATCH_EVENTS - 1; i++)
        assert_int_equal(vmmu_access_load(V(f), VA + i, 1, 0, &b, &flt), 0);
    struct vmmu_rep r = {.dst = VMMIO + 0x800, .src = VMMIO, .count = 4, .elem = 1};
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 100, 0, &flt), VMMU_EOVERFLOW);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EOVERFLOW), 0);
    assert_int_equal(f->e.mmio.n, 0);
    assert_int_equal(r.count, 4);
    assert_int_equal(r.src, VMMIO);
    /* With room, the copy goes one element per call and reads each once. */
    for (unsigned step = 0; r.count && step < 10; step++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        int rc = vmmu_access_rep_movs(V(f), &r, 100, 0, &flt);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        assert_int_equal(rc, 0);
    }
    assert_int_equal(r.count, 0);
    for (uint64_t off = 0; off < 4; off++)
        assert_int_equal(mmio_reads_at(f, off), 1);
}

/* REP MOVSD from RAM to a device page, run as an emulator runs it, the
 * write of element 1 pending.  A step that completed elements returns 0
 * and drops the latch, so element 1 must be the first of its call: its
 * pending write then returns VMMU_EPENDING and the re-execution writes
 * what the first pass read, though the source changed in between (another
 * vCPU, the device model's own DMA).  Each element is read once and
 * written once, as the CPU does. */
static void rep_movs_from_ram_to_a_pending_device_writes_what_it_read_first(void **state)
{
    struct fx *f = *state;
    for (uint32_t i = 0; i < 4; i++)
        memcpy(f->e.t.env.mem + DATA(0) + 4 * i, &(uint32_t){0x100 + i}, 4);
    f->dev.pend_call = 2;
    struct vmmu_rep r = {.dst = VDEV, .src = VA, .count = 4, .elem = 4};
    struct vmmu_x86_fault flt;
    unsigned pending = 0;
    for (unsigned step = 0; r.count && step < 10; step++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        int rc = vmmu_access_rep_movs(V(f), &r, 100, 0, &flt);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        assert_true(rc == 0 || rc == VMMU_EPENDING);
        assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
        if (rc == VMMU_EPENDING) {
            pending++;
            assert_int_equal(r.count, 3); /* element 1 is next */
            memcpy(f->e.t.env.mem + DATA(0) + 4, &(uint32_t){0xdead}, 4);
        }
    }
    assert_int_equal(r.count, 0);
    assert_int_equal(pending, 1);
    assert_int_equal(f->dev.writes, 4);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(f->dev.wlog[i], 0x100 + i);
}

/* The same copy with nothing changed between the steps and a watchpoint
 * on source element 1: the instruction reads it once, so one hit. */
static void rep_movs_from_ram_to_a_pending_device_records_a_read_hit_once(void **state)
{
    struct fx *f = *state;
    uint32_t id;
    assert_int_equal(vmmu_watch_add(V(f), VA + 4, 4, VMMU_WATCH_READ, &id), 0);
    f->dev.pend_call = 2;
    struct vmmu_rep r = {.dst = VDEV, .src = VA, .count = 4, .elem = 4};
    struct vmmu_x86_fault flt;
    for (unsigned step = 0; r.count && step < 10; step++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        int rc = vmmu_access_rep_movs(V(f), &r, 100, 0, &flt);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        assert_true(rc == 0 || rc == VMMU_EPENDING);
    }
    assert_int_equal(r.count, 0);
    assert_int_equal(f->dev.writes, 4);
    struct vmmu_watch_hit h[8];
    assert_int_equal(vmmu_watch_take_hits(V(f), h, 8, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].va, VA + 4);
    assert_int_equal(h[0].flags, VMMU_WATCH_READ);
}

/* An instruction that pends records its watchpoint hits in the pass
 * that completes it, once: a read served again from the latch, and a
 * RAM write made again, add none. */
static void a_replayed_instruction_records_each_watch_hit_once(void **state)
{
    struct fx *f = *state;
    uint32_t rid, wid;
    assert_int_equal(vmmu_watch_add(V(f), VA, 8, VMMU_WATCH_READ, &rid), 0);
    assert_int_equal(vmmu_watch_add(V(f), VA + 64, 8, VMMU_WATCH_WRITE, &wid), 0);
    struct vmmu_x86_fault flt;
    uint64_t a = 0, b = 0, w = 7;
    struct vmmu_watch_hit h[8];
    f->dev.pend_next = true;
    for (unsigned pass = 0; pass < 2; pass++) {
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
        assert_int_equal(vmmu_access_store(V(f), VA + 64, 8, 0, &w, &flt), 0);
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass == 0 ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        if (pass == 0) /* the instruction is not done: nothing to report yet */
            assert_int_equal(vmmu_watch_take_hits(V(f), h, 8, NULL), 0);
    }
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_true(st.events_replayed >= 1); /* the RAM read, served again */
    assert_int_equal(vmmu_watch_take_hits(V(f), h, 8, NULL), 2);
    assert_int_equal(h[0].id, rid);
    assert_int_equal(h[0].flags, VMMU_WATCH_READ);
    assert_int_equal(h[1].id, wid);
    assert_int_equal(h[1].flags, VMMU_WATCH_WRITE);
}

/* A device write that pends is made by the re-execution: one hit, then. */
static void a_device_write_that_pends_records_its_hit_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_watch_add(V(f), VDEV, 8, VMMU_WATCH_WRITE, NULL), 0);
    f->dev.pend_next = true;
    struct vmmu_x86_fault flt;
    uint64_t w = 5;
    struct vmmu_watch_hit h[8];
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV, 8, 0, &w, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(vmmu_watch_take_hits(V(f), h, 8, NULL), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_store(V(f), VDEV, 8, 0, &w, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->dev.writes, 1);
    assert_int_equal(vmmu_watch_take_hits(V(f), h, 8, NULL), 1);
    assert_int_equal(h[0].flags, VMMU_WATCH_WRITE);
}

/* An MMIO device whose read callback adds a watchpoint on the vCPU (a
 * debugger stub reacting to a device access, on the vCPU's thread). */
struct adding_mmio {
    struct vmmu_vcpu *vcpu;
    uint64_t watch_va;
    uint32_t id;
    int rc;
};

static int adding_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)offset;
    (void)size;
    struct adding_mmio *d = opaque;
    *value = 0;
    if (!d->id)
        d->rc = vmmu_watch_add(d->vcpu, d->watch_va, 1, VMMU_WATCH_WRITE, &d->id);
    return 0;
}

static int adding_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    (void)value;
    return 0;
}

static const struct vmmu_mmio_ops adding_ops = {adding_read, adding_write};

/* Watchpoints added by a callback in the middle of a locked update of
 * MMIO stay, beside the ones there before, and both are removable. */
static void a_watchpoint_added_inside_a_locked_mmio_update_keeps_the_others(void **state)
{
    struct fx *f = *state;
    struct adding_mmio d = {.vcpu = V(f), .watch_va = VA + 0x4000};
    struct vmmu_region_desc r = {.type = VMMU_MEM_MMIO, .gpa = 0x60000000ull, .size = 4096,
                                 .mmio = &adding_ops, .opaque = &d};
    assert_int_equal(vmmu_region_add(f->e.t.env.vm, &r, NULL), 0);
    amap(&f->e, VMMIO, 0x60000000ull, PTE_RW);
    uint32_t id1;
    assert_int_equal(vmmu_watch_add(V(f), VA + 0x3000, 1, VMMU_WATCH_READ, &id1), 0);
    uint64_t old;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_rmw(V(f), VMMIO, 4, VMMU_RMW_ADD, 1, &old, 0, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(d.rc, 0);
    assert_int_not_equal(d.id, id1);
    assert_int_equal(vmmu_watch_remove(V(f), id1), 0);
    assert_int_equal(vmmu_watch_remove(V(f), d.id), 0);
}

/* An MMIO device whose write callback, for the element at offset 0,
 * adds a VMMU_WATCH_BEFORE watchpoint on the element at offset 8 of the
 * same REP (a debugger stub acting from a device callback). */
struct before_adding_mmio {
    struct vmmu_vcpu *vcpu;
    uint64_t watch_va;
    uint64_t offsets[16];
    unsigned writes, reads;
    int rc;
};

static int before_adding_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct before_adding_mmio *d = opaque;
    (void)size;
    *value = 0x11 * (offset + 1);
    if (offset == 0)
        d->rc = vmmu_watch_add(d->vcpu, d->watch_va, 4,
                               VMMU_WATCH_READ | VMMU_WATCH_BEFORE, NULL);
    d->reads++;
    return 0;
}

static int before_adding_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct before_adding_mmio *d = opaque;
    (void)size;
    (void)value;
    if (d->writes < 16)
        d->offsets[d->writes] = offset;
    if (offset == 0)
        d->rc = vmmu_watch_add(d->vcpu, d->watch_va, 4,
                               VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, NULL);
    d->writes++;
    return 0;
}

static const struct vmmu_mmio_ops before_adding_ops = {before_adding_read, before_adding_write};

static struct before_adding_mmio *before_adding_page(struct fx *f)
{
    static struct before_adding_mmio d;
    memset(&d, 0, sizeof(d));
    d.vcpu = V(f);
    d.watch_va = VMMIO + 8;
    struct vmmu_region_desc r = {.type = VMMU_MEM_MMIO, .gpa = 0x60000000ull, .size = 4096,
                                 .mmio = &before_adding_ops, .opaque = &d};
    assert_int_equal(vmmu_region_add(f->e.t.env.vm, &r, NULL), 0);
    amap(&f->e, VMMIO, 0x60000000ull, PTE_RW);
    return &d;
}

/* The call stopped at a VMMU_WATCH_BEFORE watchpoint at @va, and its
 * one hit says so. */
static void assert_stopped_before(struct fx *f, const struct vmmu_x86_fault *flt, uint64_t va,
                                  unsigned flags)
{
    assert_int_equal(flt->vector, VMMU_ACCESS_STOP_WATCH);
    struct vmmu_watch_hit h[4];
    assert_int_equal(vmmu_watch_take_hits(V(f), h, 4, NULL), 1);
    assert_int_equal(h[0].va, va);
    assert_int_equal(h[0].flags, flags | VMMU_WATCH_BEFORE);
}

/* A BEFORE watchpoint a callback adds in the middle of a REP STOS to MMIO
 * stops the instruction before the element it covers, in the same call:
 * elements 0 and 1 written, the registers naming element 2, the hit. */
static void a_before_watchpoint_added_by_a_callback_stops_the_rest_of_a_rep_stos(void **state)
{
    struct fx *f = *state;
    struct before_adding_mmio *d = before_adding_page(f);
    struct vmmu_rep r = {.dst = VMMIO, .count = 8, .elem = 4, .value = 1};
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_rep_stos(V(f), &r, 100, &flt), 0);
    assert_int_equal(d->rc, 0);
    assert_stopped_before(f, &flt, VMMIO + 8, VMMU_WATCH_WRITE);
    assert_int_equal(d->writes, 2);
    assert_int_equal(r.dst, VMMIO + 8);
    assert_int_equal(r.count, 6);
}

/* The same for REP MOVS from that MMIO page to RAM, the watchpoint on
 * the source: elements 0 and 1 moved, stopped before element 2. */
static void a_before_watchpoint_added_by_a_callback_stops_the_rest_of_a_rep_movs(void **state)
{
    struct fx *f = *state;
    struct before_adding_mmio *d = before_adding_page(f);
    struct vmmu_rep r = {.dst = VA, .src = VMMIO, .count = 8, .elem = 4};
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 100, 0, &flt), 0);
    assert_int_equal(d->rc, 0);
    assert_stopped_before(f, &flt, VMMIO + 8, VMMU_WATCH_READ);
    assert_int_equal(d->reads, 2);
    assert_int_equal(r.src, VMMIO + 8);
    assert_int_equal(r.dst, VA + 8);
    assert_int_equal(r.count, 6);
    assert_int_equal(get64(&f->e.t.env, DATA(0)) & 0xffffffffu, 0x11);
    assert_int_equal(get64(&f->e.t.env, DATA(0) + 4) & 0xffffffffu, 0x55);
}

static void disabled_latch_reads_live_memory(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint64_t a = 0, b = 0;
    put64(&f->e.t.env, DATA(0) + 16, 5);
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA + 16, 8, 0, &a, &flt), 0);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    put64(&f->e.t.env, DATA(0) + 16, 6);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    unsigned token = vmmu_latch_disable(V(f));
    assert_int_equal(vmmu_access_load(V(f), VA + 16, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 6);
    vmmu_latch_restore(V(f), token);
    assert_int_equal(vmmu_access_load(V(f), VA + 16, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 5);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
}

static void begin_twice_and_discard_outside_are_handled(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_insn_begin(V(f)), VMMU_EINVAL);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(vmmu_latch_discard(V(f)), 0);
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.pass, 0);
    assert_int_equal(vmmu_latch_stats(NULL, &st), VMMU_EINVAL);
}

/* ---- Pages that change type between the passes ------------------------------ */

enum page_kind { PAGE_RAM, PAGE_MMIO, PAGE_DEVICE };
enum chg_op { OP_READ, OP_WRITE, OP_LOCKED_ADD };

/* Make the page at CHG_GPA of @kind (replacing region @id when @replace);
 * RAM added here holds 0x11 bytes, MMIO 0x33 bytes, the device answers
 * 0x2222...; RAM that replaces a page is zeroed.  Returns the region. */
static uint32_t chg_page(struct fx *f, enum page_kind kind, bool replace, uint32_t id)
{
    struct vmmu_vm *vm = f->e.t.env.vm;
    struct vmmu_region_desc d = {.gpa = CHG_GPA, .size = 4096};
    d.type = kind == PAGE_RAM ? VMMU_MEM_RAM : kind == PAGE_MMIO ? VMMU_MEM_MMIO : VMMU_MEM_DEVICE;
    if (kind == PAGE_MMIO) {
        d.mmio = &mmio_log_ops;
        d.opaque = &f->chg_mmio;
        memset(f->chg_mmio.mem, 0x33, 16);
    }
    if (replace) {
        assert_int_equal(vmmu_region_replace(vm, id, &d, NULL), 0);
    } else {
        assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
        if (kind == PAGE_RAM) {
            uint8_t fill[16];
            memset(fill, 0x11, sizeof(fill));
            assert_int_equal(vmmu_gpa_write(vm, CHG_GPA, fill, 16, 0, NULL), 0);
        }
    }
    f->dev.value = 0x2222222222222222ull;
    return id;
}

/* One pass of the instruction: @op on 16 bytes (8 for the locked add) of
 * the changing page, a store to the second device page (it completes),
 * then a load from it that pends in passes 1 and 2. */
static void chg_insn(struct fx *f, enum chg_op op, int pass, uint8_t got[16], uint64_t *old)
{
    struct vmmu_x86_fault flt;
    uint8_t w[16];
    uint64_t w8 = 0x77, b = 0;
    memset(w, 0x5a, sizeof(w));
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    switch (op) {
    case OP_READ:
        assert_int_equal(vmmu_access_read(V(f), VCHG, got, 16, 0, &flt), 0);
        break;
    case OP_WRITE:
        assert_int_equal(vmmu_access_write(V(f), VCHG, w, 16, 0, &flt), 0);
        break;
    case OP_LOCKED_ADD:
        assert_int_equal(vmmu_access_rmw(V(f), VCHG, 8, VMMU_RMW_ADD, 1, old, 0, &flt), 0);
        break;
    }
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_store(V(f), VDEV2, 8, 0, &w8, &flt), 0);
    f->dev.pend_next = pass < 3;
    int rc = vmmu_access_load(V(f), VDEV2 + 8, 8, 0, &b, &flt);
    assert_int_equal(rc, pass < 3 ? VMMU_EPENDING : 0);
    assert_int_equal(vmmu_insn_end(V(f), rc), 0);
}

/* The first pass makes @op on a page of kind @from; the host makes it a
 * page of kind @to; two more passes follow (the second pends again).
 * What the first pass completed is not made again, whatever the page is
 * now: a read returns the first pass's bytes, a locked add its old value,
 * and the page sees no access, except a write the first pass made to RAM
 * (RAM records none), which is made once on the new page.  The completed
 * device write after it is never repeated. */
static void type_change(void **state, enum page_kind from, enum page_kind to, enum chg_op op)
{
    struct fx *f = *state;
    struct vmmu_vm *vm = f->e.t.env.vm;
    uint32_t id = chg_page(f, from, false, 0);
    uint8_t first[16] = {0}, again[16];
    uint64_t old1 = 0, old2 = 0;
    chg_insn(f, op, 1, first, &old1);
    assert_int_equal(f->dev.dev2_writes, 1);
    chg_page(f, to, true, id);
    unsigned calls0 = f->dev.chg_calls, writes0 = f->dev.writes, mmio0 = f->chg_mmio.n;
    uint8_t zero[16] = {0}, ram[16];
    for (int pass = 2; pass <= 3; pass++) {
        memset(again, 0, sizeof(again));
        old2 = 0;
        chg_insn(f, op, pass, again, &old2);
        assert_int_equal(f->dev.dev2_writes, 1);
        if (op == OP_READ)
            assert_memory_equal(again, first, 16);
        if (op == OP_LOCKED_ADD)
            assert_int_equal(old2, old1);
    }
    unsigned accesses = (f->dev.chg_calls - calls0) + (f->chg_mmio.n - mmio0);
    if (to == PAGE_RAM) {
        assert_int_equal(vmmu_gpa_read(vm, CHG_GPA, ram, 16, 0, NULL), 0);
        assert_memory_equal(ram, zero, 16); /* nothing made again on the new RAM */
    }
    if (op == OP_WRITE && from == PAGE_RAM) {
        /* Made once on the new page: two 8-byte pieces. */
        assert_int_equal(accesses, 2);
        if (to == PAGE_DEVICE) {
            assert_int_equal(f->dev.writes - writes0, 2);
            assert_int_equal(f->dev.last_write, 0x5a5a5a5a5a5a5a5aull);
        }
    } else {
        assert_int_equal(accesses, 0);
    }
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(V(f), &st), 0);
    assert_int_equal(st.diverged, 0);
}

static void a_replayed_read_of_a_device_page_now_ram_returns_the_device_bytes(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_RAM, OP_READ);
}

static void a_replayed_read_of_a_ram_page_now_a_device_returns_the_ram_bytes(void **state)
{
    type_change(state, PAGE_RAM, PAGE_DEVICE, OP_READ);
}

static void a_replayed_read_of_an_mmio_page_now_a_device_returns_the_mmio_bytes(void **state)
{
    type_change(state, PAGE_MMIO, PAGE_DEVICE, OP_READ);
}

static void a_replayed_read_of_a_device_page_now_mmio_returns_the_device_bytes(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_MMIO, OP_READ);
}

static void a_replayed_write_to_a_device_page_now_ram_is_not_made_again(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_RAM, OP_WRITE);
}

static void a_replayed_write_to_a_ram_page_now_a_device_is_made_once_and_repeats_nothing_else(
    void **state)
{
    type_change(state, PAGE_RAM, PAGE_DEVICE, OP_WRITE);
}

static void a_replayed_write_to_an_mmio_page_now_a_device_is_not_made_again(void **state)
{
    type_change(state, PAGE_MMIO, PAGE_DEVICE, OP_WRITE);
}

static void a_replayed_write_to_a_device_page_now_mmio_is_not_made_again(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_MMIO, OP_WRITE);
}

static void a_replayed_locked_add_on_a_device_page_now_ram_is_not_applied_again(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_RAM, OP_LOCKED_ADD);
}

static void a_replayed_locked_add_on_a_ram_page_now_a_device_is_not_applied_again(void **state)
{
    type_change(state, PAGE_RAM, PAGE_DEVICE, OP_LOCKED_ADD);
}

static void a_replayed_locked_add_on_an_mmio_page_now_a_device_is_not_applied_again(void **state)
{
    type_change(state, PAGE_MMIO, PAGE_DEVICE, OP_LOCKED_ADD);
}

static void a_replayed_locked_add_on_a_device_page_now_mmio_is_not_applied_again(void **state)
{
    type_change(state, PAGE_DEVICE, PAGE_MMIO, OP_LOCKED_ADD);
}

/* A device read, a locked add on unchanged RAM, then a device read that
 * pends; the host makes the first device page RAM.  The add is made once. */
static void a_locked_add_after_a_read_of_a_page_that_changed_type_is_applied_once(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint32_t id = chg_page(f, PAGE_DEVICE, false, 0);
    put64(&f->e.t.env, DATA(0) + 128, 0);
    for (int pass = 1; pass <= 2; pass++) {
        uint64_t a = 0, b = 0, old = 0;
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_load(V(f), VCHG, 8, 0, &a, &flt), 0);
        assert_int_equal(a, 0x2222222222222222ull);
        assert_int_equal(vmmu_access_rmw(V(f), VA + 128, 8, VMMU_RMW_ADD, 1, &old, 0, &flt), 0);
        assert_int_equal(old, 0);
        f->dev.pend_next = pass == 1;
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass == 1 ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        if (pass == 1)
            chg_page(f, PAGE_RAM, true, id);
    }
    assert_int_equal(get64(&f->e.t.env, DATA(0) + 128), 1);
}

/* A 16-byte device read whose first 8 bytes completed and whose second
 * half pended; the host makes the page RAM: the replay gets the first
 * half from the latch and reads the rest from the RAM. */
static void a_device_read_that_pended_halfway_keeps_its_first_half_after_the_page_became_ram(
    void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint32_t id = chg_page(f, PAGE_DEVICE, false, 0);
    uint8_t got[16];
    f->dev.pend_call = f->dev.calls + 2;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_read(V(f), VCHG, got, 16, 0, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    chg_page(f, PAGE_RAM, true, id);
    uint8_t fill[8];
    memset(fill, 0x44, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(f->e.t.env.vm, CHG_GPA + 8, fill, 8, 0, NULL), 0);
    unsigned calls = f->dev.calls;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_read(V(f), VCHG, got, 16, 0, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->dev.calls, calls);
    for (int i = 0; i < 8; i++)
        assert_int_equal(got[i], 0x22);
    assert_memory_equal(got + 8, fill, 8);
}

/* ---- Overlapping prepared moves ----------------------------------------------- */

/* An element-by-element move of @len bytes from @src_off to @dst_off in @m. */
static void ref_move(uint8_t *m, unsigned dst_off, unsigned src_off, unsigned len, unsigned elem,
                     bool backward)
{
    unsigned count = len / elem;
    for (unsigned k = 0; k < count; k++) {
        unsigned i = backward ? count - 1 - k : k;
        uint8_t tmp[8];
        memcpy(tmp, m + src_off + i * elem, elem);
        memcpy(m + dst_off + i * elem, tmp, elem);
    }
}

/* An instruction moves @len bytes between overlapping ranges of RAM (the
 * range crosses a page when @at is near its end), then reads a device
 * that pends; the re-execution leaves what one move leaves. */
static void overlapping_move(void **state, unsigned at, unsigned dst_off, unsigned src_off,
                             unsigned len, unsigned elem, bool backward)
{
    struct fx *f = *state;
    amap(&f->e, VA + 4096, DATA(1), PTE_RW);
    uint8_t init[64], want[64], now[64];
    for (unsigned i = 0; i < sizeof(init); i++)
        init[i] = (uint8_t)(i + 1);
    memcpy(want, init, sizeof(want));
    ref_move(want, dst_off, src_off, len, elem, backward);
    uint8_t *m = hpa(&f->e.t, DATA(0) + at);
    unsigned first = 4096 - at < sizeof(init) ? 4096 - at : (unsigned)sizeof(init);
    memcpy(m, init, first);
    memcpy(hpa(&f->e.t, DATA(1)), init + first, sizeof(init) - first);
    for (int pass = 1; pass <= 2; pass++) {
        struct vmmu_x86_fault flt;
        struct vmmu_prepared ps, pd;
        uint64_t b;
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_prepare(V(f), VA + at + src_off, len, 0, &ps, &flt), 0);
        assert_int_equal(vmmu_access_prepare(V(f), VA + at + dst_off, len, VMMU_X86_ACC_WRITE, &pd,
                                             &flt),
                         0);
        assert_int_equal(vmmu_prepared_move(&pd, &ps, elem, backward), 0);
        f->dev.pend_next = pass == 1;
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass == 1 ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
    }
    memcpy(now, m, first);
    memcpy(now + first, hpa(&f->e.t, DATA(1)), sizeof(now) - first);
    assert_memory_equal(now, want, sizeof(want));
}

/* REP MOVSQ from RAM to a device page whose write pends; the source is
 * rewritten and the destination page becomes RAM before the re-execution.
 * The element still moves what the first pass read (the re-execution used
 * to take the RAM-to-RAM path, which reads live). */
static void a_rep_movs_element_replayed_after_its_destination_became_ram_moves_what_it_read(
    void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint32_t id = chg_page(f, PAGE_DEVICE, false, 0);
    uint8_t *m = hpa(&f->e.t, DATA(0) + 512);
    memset(m, 0xaa, 8);
    struct vmmu_rep r = {.src = VA + 512, .dst = VCHG, .count = 1, .elem = 8};
    f->dev.pend_next = true;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 16, 0, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    memset(m, 0xbb, 8);
    chg_page(f, PAGE_RAM, true, id);
    struct vmmu_rep r2 = {.src = VA + 512, .dst = VCHG, .count = 1, .elem = 8};
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rep_movs(V(f), &r2, 16, 0, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    uint8_t got[8];
    assert_int_equal(vmmu_gpa_read(f->e.t.env.vm, CHG_GPA, got, 8, 0, NULL), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(got[i], 0xaa);
}

static void an_overlapping_prepared_move_made_again_moves_what_the_first_pass_read(void **state)
{
    overlapping_move(state, 0, 0, 1, 8, 1, false); /* dst = src - 1 */
}

/* (A fill leaves the same bytes when made twice: this one checks that the
 * move under the latch keeps the element order, dst = src + 1 repeating
 * the first byte.) */
static void an_overlapping_move_that_repeats_its_first_byte_does_so_once_when_made_again(
    void **state)
{
    overlapping_move(state, 0, 1, 0, 8, 1, false);
}

static void a_backward_overlapping_move_across_a_page_made_again_leaves_one_moves_bytes(
    void **state)
{
    overlapping_move(state, 4096 - 20, 4, 0, 32, 2, true); /* dst = src + 4, from the top */
}

/* With too little room in the latch for its source, an overlapping move
 * returns VMMU_EOVERFLOW and moves nothing. */
static void an_overlapping_move_the_latch_has_no_room_for_does_nothing(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint8_t *m = hpa(&f->e.t, DATA(0));
    for (unsigned i = 0; i < 64; i++)
        m[i] = (uint8_t)(i + 1);
    uint8_t before[64];
    memcpy(before, m, sizeof(before));
    uint8_t buf[4096];
    struct vmmu_prepared ps, pd;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_prepare(V(f), VA + 1, 32, 0, &ps, &flt), 0);
    assert_int_equal(vmmu_access_prepare(V(f), VA, 32, VMMU_X86_ACC_WRITE, &pd, &flt), 0);
    /* Fill the latch's data to within 16 bytes. */
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < VMMU_LATCH_BYTES / 4096 - 1; i++)
        rc = vmmu_access_read(V(f), VA, buf, 4096, 0, &flt);
    assert_int_equal(rc, 0);
    rc = vmmu_access_read(V(f), VA, buf, 4096 - 16, 0, &flt);
    assert_int_equal(rc, 0);
    assert_int_equal(vmmu_prepared_move(&pd, &ps, 1, false), VMMU_EOVERFLOW);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EOVERFLOW), 0);
    assert_memory_equal(m, before, sizeof(before));
}

/* ---- Replayed locked updates and other vCPUs ------------------------------------- */

/* A locked add of 1 on a 2-byte counter at 0x00ff (leaving 0x0100), then
 * a device read that pends; between the passes another vCPU adds 0xff
 * (0x01ff, every byte of it equal to a byte the first vCPU's update saw
 * or left).  The re-execution keeps that add: 0x01ff. */
/* The counter 0x00ff; the instruction adds 1 with a locked add (0x0100),
 * then pends @npasses - 1 times on a device read; between its first and
 * second pass another vCPU adds 0xff (0x01ff).  Every re-execution keeps
 * that add: each byte of 0x01ff matches a byte the instruction saw or
 * left, and the old rule stored 0x0100 again.  With three passes the
 * snapshot taken when the second pass pended held the other vCPU's bytes,
 * and the third pass took them for the instruction's own. */
static void locked_add_beside_another_vcpu(struct fx *f, int npasses)
{
    struct vmmu_x86_fault flt;
    uint16_t init = 0x00ff;
    memcpy(hpa(&f->e.t, DATA(0) + 64), &init, 2);
    struct vmmu_vcpu *other;
    assert_int_equal(vmmu_vcpu_create(f->e.t.env.vm, NULL, &other), 0);
    struct vmmu_x86_regs r = regs_4level(f->e.root);
    assert_int_equal(vmmu_vcpu_set_state(other, &r), 0);
    for (int pass = 1; pass <= npasses; pass++) {
        uint64_t old = 0, b;
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_rmw(V(f), VA + 64, 2, VMMU_RMW_ADD, 1, &old, 0, &flt), 0);
        assert_int_equal(old, 0xff);
        f->dev.pend_next = pass < npasses;
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass < npasses ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
        if (pass == 1) {
            assert_int_equal(
                vmmu_access_rmw(other, VA + 64, 2, VMMU_RMW_ADD, 0xff, &old, 0, &flt), 0);
            assert_int_equal(old, 0x100);
        }
        uint16_t now;
        memcpy(&now, hpa(&f->e.t, DATA(0) + 64), 2);
        assert_int_equal(now, 0x1ff);
    }
    vmmu_vcpu_destroy(other);
}

static void a_replayed_locked_add_keeps_another_vcpus_add_whose_bytes_look_like_its_own(
    void **state)
{
    locked_add_beside_another_vcpu(*state, 2);
}

static void a_locked_add_replayed_twice_keeps_another_vcpus_add_too(void **state)
{
    locked_add_beside_another_vcpu(*state, 3);
}

/* The instruction stores 0x00ff to the counter, adds 1 to it with a
 * locked add, then pends.  The re-execution redoes the store, then stores
 * the add's bytes over it again: 0x0100, as one run leaves. */
static void a_replayed_locked_add_after_a_store_to_its_bytes_leaves_what_one_run_leaves(
    void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_fault flt;
    uint16_t init = 0x1234;
    memcpy(hpa(&f->e.t, DATA(0) + 64), &init, 2);
    for (int pass = 1; pass <= 2; pass++) {
        uint64_t old = 0, b;
        uint16_t s = 0x00ff;
        assert_int_equal(vmmu_insn_begin(V(f)), 0);
        assert_int_equal(vmmu_access_store(V(f), VA + 64, 2, 0, &s, &flt), 0);
        assert_int_equal(vmmu_access_rmw(V(f), VA + 64, 2, VMMU_RMW_ADD, 1, &old, 0, &flt), 0);
        assert_int_equal(old, 0xff);
        f->dev.pend_next = pass == 1;
        int rc = vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt);
        assert_int_equal(rc, pass == 1 ? VMMU_EPENDING : 0);
        assert_int_equal(vmmu_insn_end(V(f), rc), 0);
    }
    uint16_t now;
    memcpy(&now, hpa(&f->e.t, DATA(0) + 64), 2);
    assert_int_equal(now, 0x100);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(device_read_that_pends_returns_pending_and_the_retry_completes),
        T(rep_movs_from_mmio_to_a_pending_device_reads_each_element_once),
        T(rep_movs_between_devices_reads_nothing_when_the_latch_is_nearly_full),
        T(a_replayed_instruction_records_each_watch_hit_once),
        T(a_device_write_that_pends_records_its_hit_once),
        T(a_watchpoint_added_inside_a_locked_mmio_update_keeps_the_others),
        T(replay_returns_what_the_first_pass_read_after_memory_changed),
        T(replay_uses_the_first_translation_after_tables_are_rewritten_and_flushed),
        T(tlb_hit_in_the_first_pass_is_recorded_and_replayed_after_a_remap),
        cmocka_unit_test_setup_teardown(a_replayed_write_to_a_frame_beyond_the_vms_width_still_goes_nowhere,
                                        setup_narrow, teardown),
        T(replayed_walk_serves_recorded_entries_for_a_new_access),
        T(a_discard_inside_a_replay_drops_what_its_walks_filled_from_recorded_entries),
        T(a_replayed_walk_that_overflows_the_translations_leaves_no_stale_entry),
        T(a_cr3_load_inside_an_instruction_translates_the_rest_through_the_new_tables),
        T(device_write_completed_in_the_first_pass_is_not_repeated),
        T(a_latch_kept_across_70000_passes_still_repeats_nothing),
        T(a_replayed_device_write_of_another_size_is_made_whole),
        T(a_locked_add_where_the_first_pass_loaded_is_made_live),
        T(a_rep_movs_element_replayed_after_its_destination_became_ram_moves_what_it_read),
        T(rep_movs_from_ram_to_a_pending_device_writes_what_it_read_first),
        T(rep_movs_from_ram_to_a_pending_device_records_a_read_hit_once),
        T(a_before_watchpoint_added_by_a_callback_stops_the_rest_of_a_rep_stos),
        T(a_before_watchpoint_added_by_a_callback_stops_the_rest_of_a_rep_movs),
        T(latch_overflow_returns_eoverflow),
        T(disabled_latch_reads_live_memory),
        T(begin_twice_and_discard_outside_are_handled),
        T(a_replayed_read_of_a_device_page_now_ram_returns_the_device_bytes),
        T(a_replayed_read_of_a_ram_page_now_a_device_returns_the_ram_bytes),
        T(a_replayed_read_of_an_mmio_page_now_a_device_returns_the_mmio_bytes),
        T(a_replayed_read_of_a_device_page_now_mmio_returns_the_device_bytes),
        T(a_replayed_write_to_a_device_page_now_ram_is_not_made_again),
        T(a_replayed_write_to_a_ram_page_now_a_device_is_made_once_and_repeats_nothing_else),
        T(a_replayed_write_to_an_mmio_page_now_a_device_is_not_made_again),
        T(a_replayed_write_to_a_device_page_now_mmio_is_not_made_again),
        T(a_replayed_locked_add_on_a_device_page_now_ram_is_not_applied_again),
        T(a_replayed_locked_add_on_a_ram_page_now_a_device_is_not_applied_again),
        T(a_replayed_locked_add_on_an_mmio_page_now_a_device_is_not_applied_again),
        T(a_replayed_locked_add_on_a_device_page_now_mmio_is_not_applied_again),
        T(a_locked_add_after_a_read_of_a_page_that_changed_type_is_applied_once),
        T(a_device_read_that_pended_halfway_keeps_its_first_half_after_the_page_became_ram),
        T(an_overlapping_prepared_move_made_again_moves_what_the_first_pass_read),
        T(an_overlapping_move_that_repeats_its_first_byte_does_so_once_when_made_again),
        T(a_backward_overlapping_move_across_a_page_made_again_leaves_one_moves_bytes),
        T(an_overlapping_move_the_latch_has_no_room_for_does_nothing),
        T(a_replayed_locked_add_keeps_another_vcpus_add_whose_bytes_look_like_its_own),
        T(a_locked_add_replayed_twice_keeps_another_vcpus_add_too),
        T(a_replayed_locked_add_after_a_store_to_its_bytes_leaves_what_one_run_leaves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
