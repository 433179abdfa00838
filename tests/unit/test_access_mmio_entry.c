/* SPDX-License-Identifier: MIT */
/* Accesses to MMIO and device-model pages whose TLB entry is already
 * filled: the entry's cold half answers (guest-physical page, type,
 * region) without a fill or a walk, and everything that must end or
 * narrow that answer still does: map changes, INVLPG, rights, the D bit,
 * the victim array, and the replay latch. */
#include "test_access_env.h"
#include "tlb/tlb_internal.h"

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
/* Pages of different TLB indices (in a table of 64 entries or more). */
static const uint64_t VA = 0x0000400000100000ull;   /* the MMIO page */
static const uint64_t VDEV = 0x0000400000201000ull; /* the device page */

/* A device model that answers at once, or pends the next call. */
struct dev {
    unsigned calls, writes, reads;
    bool pend_next;
    uint64_t value;
    uint64_t wlog[8];
};

static int dev_handler(void *opaque, struct vmmu_device_req *req)
{
    struct dev *d = opaque;
    d->calls++;
    if (d->pend_next) {
        d->pend_next = false;
        return VMMU_EPENDING;
    }
    if (req->write) {
        if (d->writes < 8)
            d->wlog[d->writes] = req->data;
        d->writes++;
    } else {
        d->reads++;
        req->data = d->value;
    }
    return 0;
}

struct fx {
    struct acc_env e;
    struct dev dev;
    struct mmio_log other; /* a second MMIO device's log */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    acc_env_init(&f->e);
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(f->e.t.env.vm, &d, NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(f->e.t.env.vm, dev_handler, &f->dev), 0);
    amap(&f->e, VA, MMIO_GPA, PTE_RW);
    amap(&f->e, VDEV, DEV_GPA, PTE_RW);
    *state = f;
    return 0;
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

static struct vmmu_vm *VM(struct fx *f)
{
    return f->e.t.env.vm;
}

static struct vmmu_tlb_stats stats(struct fx *f)
{
    struct vmmu_tlb_stats s;
    assert_int_equal(vmmu_vcpu_stats(V(f), &s), 0);
    return s;
}

static void store(struct fx *f, uint64_t va, uint64_t value)
{
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_store(V(f), va, 8, 0, &value, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
}

static uint64_t load(struct fx *f, uint64_t va)
{
    struct vmmu_x86_fault flt;
    uint64_t value = 0;
    assert_int_equal(vmmu_access_load(V(f), va, 8, 0, &value, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_FAULT_NONE);
    return value;
}

/* Remove the region holding @gpa. */
static void remove_region_at(struct fx *f, uint64_t gpa)
{
    uint32_t id;
    assert_int_equal(vmmu_region_find(VM(f), gpa, &id), 0);
    assert_int_equal(vmmu_region_remove(VM(f), id), 0);
}

static void add_region(struct fx *f, enum vmmu_mem_type type, uint64_t gpa, struct mmio_log *log)
{
    struct vmmu_region_desc d = {.type = type, .gpa = gpa, .size = 4096};
    if (type == VMMU_MEM_MMIO) {
        d.mmio = &mmio_log_ops;
        d.opaque = log;
    }
    assert_int_equal(vmmu_region_add(VM(f), &d, NULL), 0);
}

/* ---- The entry answers ------------------------------------------------------ */

static void mmio_and_device_accesses_through_filled_entries_make_no_walk(void **state)
{
    struct fx *f = *state;
    store(f, VA + 8, 1);   /* fills the MMIO page's entry */
    store(f, VDEV + 8, 1); /* and the device page's */
    struct vmmu_tlb_stats before = stats(f);
    for (unsigned i = 0; i < 4; i++) {
        store(f, VA + 16, 0x100 + i);
        assert_int_equal(load(f, VA + 16), 0x100 + i);
        store(f, VDEV + 16, 0x200 + i);
    }
    struct vmmu_tlb_stats after = stats(f);
    assert_int_equal(after.walks, before.walks);
    assert_int_equal(after.misses, before.misses);
    assert_int_equal(after.slow_hits - before.slow_hits, 12);
    assert_int_equal(after.not_ram - before.not_ram, 12);
    /* Each reached its page at its offset. */
    assert_int_equal(f->e.mmio.n, 9);
    assert_int_equal(f->e.mmio.op[8].offset, 16);
    assert_int_equal(f->e.mmio.op[8].value, 0x103);
    assert_int_equal(f->dev.writes, 5);
    assert_int_equal(f->dev.wlog[4], 0x203);
}

static void a_probe_of_a_filled_device_page_gives_its_gpa_and_type(void **state)
{
    struct fx *f = *state;
    store(f, VDEV, 1);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(V(f), VDEV + 0x18, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_DEVICE);
    assert_int_equal(p.type, VMMU_MEM_DEVICE);
    assert_int_equal(p.gpa, DEV_GPA + 0x18);
    assert_int_equal(f->dev.calls, 1); /* the probe made no access */
}

/* ---- Map changes ------------------------------------------------------------------ */

static void an_mmio_page_replaced_by_ram_is_ram_for_the_next_access(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VA, 0x11);
    assert_int_equal(f->e.mmio.n, 1);
    remove_region_at(f, MMIO_GPA);
    add_region(f, VMMU_MEM_RAM, MMIO_GPA, NULL);
    store(f, VA, 0x22);
    assert_int_equal(load(f, VA), 0x22);
    assert_int_equal(f->e.mmio.n, 1); /* the old device saw nothing more */
    uint64_t in_ram = 0;
    assert_int_equal(vmmu_gpa_read(VM(f), MMIO_GPA, &in_ram, 8, 0, NULL), 0);
    assert_int_equal(in_ram, 0x22);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(V(f), VA, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_non_null(p.host);
    assert_int_equal(p.type, VMMU_MEM_RAM);
}

static void an_mmio_region_replaced_at_the_same_address_gets_the_next_access(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VA + 8, 0x11);
    remove_region_at(f, MMIO_GPA);
    add_region(f, VMMU_MEM_MMIO, MMIO_GPA, &f->other);
    store(f, VA + 8, 0x22);
    assert_int_equal(f->e.mmio.n, 1);
    assert_int_equal(f->other.n, 1);
    assert_int_equal(f->other.op[0].offset, 8);
    assert_int_equal(f->other.op[0].value, 0x22);
}

static void an_mmio_region_moved_elsewhere_leaves_a_hole_behind(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VA, 0x11);
    remove_region_at(f, MMIO_GPA);
    add_region(f, VMMU_MEM_MMIO, MMIO_GPA + 0x10000, &f->other);
    store(f, VA, 0x22); /* a hole drops writes */
    assert_int_equal(load(f, VA), ~0ull);
    assert_int_equal(f->e.mmio.n, 1);
    assert_int_equal(f->other.n, 0);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(V(f), VA, 8, 0, &p), 0);
    assert_int_equal(p.type, VMMU_MEM_HOLE);
}

static void a_map_change_while_the_vcpu_is_offline_reaches_its_entry_when_it_returns(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VDEV, 0x11);
    assert_int_equal(vmmu_vcpu_offline(V(f)), 0);
    remove_region_at(f, DEV_GPA);
    add_region(f, VMMU_MEM_MMIO, DEV_GPA, &f->other);
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VDEV, 0x22);
    assert_int_equal(f->dev.calls, 1);
    assert_int_equal(f->other.n, 1);
    assert_int_equal(f->other.op[0].value, 0x22);
}

/* The conflict: a page whose entry has the same index in a table of @n. */
static uint64_t same_index(uint64_t va, unsigned n, unsigned k)
{
    return va + (uint64_t)k * n * VMMU_PAGE_SIZE;
}

static unsigned table_entries(struct fx *f)
{
    const struct vmmu_vcpu *v = V(f);
    return v->slot[v->cur_slot].ctx[v->cur_ctx].n;
}

static void an_mmio_entry_pushed_to_the_victims_answers_and_goes_with_a_map_change(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmmu_vcpu_online(V(f)), 0);
    store(f, VA, 0x11);
    uint64_t other = same_index(VA, table_entries(f), 1);
    amap(&f->e, other, DATA(3), PTE_RW);
    store(f, other, 0x33); /* pushes the MMIO page's entry into its victim slot */
    struct vmmu_tlb_stats before = stats(f);
    store(f, VA, 0x12);
    struct vmmu_tlb_stats after = stats(f);
    assert_int_equal(after.walks, before.walks);
    assert_int_equal(after.victim_hits, before.victim_hits + 1);
    assert_int_equal(f->e.mmio.n, 2);
    /* Back to the victims, then the map changes under it. */
    store(f, other, 0x34);
    remove_region_at(f, MMIO_GPA);
    add_region(f, VMMU_MEM_RAM, MMIO_GPA, NULL);
    store(f, VA, 0x22);
    assert_int_equal(f->e.mmio.n, 2);
    uint64_t in_ram = 0;
    assert_int_equal(vmmu_gpa_read(VM(f), MMIO_GPA, &in_ram, 8, 0, NULL), 0);
    assert_int_equal(in_ram, 0x22);
}

static void two_not_ram_pages_of_one_index_each_reach_their_own_device(void **state)
{
    struct fx *f = *state;
    uint64_t other = same_index(VA, table_entries(f), 1);
    amap(&f->e, other, DEV_GPA, PTE_RW);
    for (unsigned i = 0; i < 3; i++) {
        store(f, VA + 8, 0x10 + i);
        store(f, other + 8, 0x20 + i);
    }
    assert_int_equal(f->e.mmio.n, 3);
    assert_int_equal(f->dev.writes, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(f->e.mmio.op[i].value, 0x10 + i);
        assert_int_equal(f->dev.wlog[i], 0x20 + i);
    }
}

/* ---- Page tables ------------------------------------------------------------------ */

static void invlpg_after_a_pte_change_moves_an_mmio_page_to_its_new_frame(void **state)
{
    struct fx *f = *state;
    store(f, VA, 0x11);
    amap(&f->e, VA, DATA(1), PTE_RW);
    assert_int_equal(vmmu_vcpu_invlpg(V(f), VA), 0);
    store(f, VA, 0x22);
    assert_int_equal(f->e.mmio.n, 1);
    assert_int_equal(get64(&f->e.t.env, DATA(1)), 0x22);
    /* And back: RAM to the device page. */
    amap(&f->e, VA, DEV_GPA, PTE_RW);
    assert_int_equal(vmmu_vcpu_invlpg(V(f), VA), 0);
    store(f, VA + 8, 0x33);
    assert_int_equal(f->dev.writes, 1);
    assert_int_equal(f->dev.wlog[0], 0x33);
}

static void invlpg_drops_an_mmio_entry_so_a_pte_made_not_present_faults(void **state)
{
    struct fx *f = *state;
    store(f, VA, 0x11);
    amap(&f->e, VA, MMIO_GPA, 0);
    assert_int_equal(vmmu_vcpu_invlpg(V(f), VA), 0);
    uint64_t x = 0x22;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_store(V(f), VA + 4, 4, 0, &x, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_VEC_PF);
    assert_int_equal(flt.error_code, VMMU_X86_PF_W);
    assert_int_equal(flt.cr2, VA + 4);
    assert_int_equal(f->e.mmio.n, 1);
}

/* ---- Rights and the D bit ------------------------------------------------------- */

static void a_write_to_a_readonly_mmio_page_faults_after_reads_filled_its_entry(void **state)
{
    struct fx *f = *state;
    amap(&f->e, VA, MMIO_GPA, E_P | E_A | E_D);
    assert_int_equal(load(f, VA), 0);
    assert_int_equal(load(f, VA + 8), 0); /* the entry answers reads */
    uint64_t x = 0x22;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &x, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_VEC_PF);
    assert_int_equal(flt.error_code, VMMU_X86_PF_P | VMMU_X86_PF_W);
    assert_int_equal(flt.cr2, VA + 8);
    assert_int_equal(f->e.mmio.n, 2); /* the two reads only */
    struct vmmu_rep r = {.dst = VA, .count = 4, .elem = 4, .value = 7};
    assert_int_equal(vmmu_access_rep_stos(V(f), &r, 4, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_VEC_PF);
    assert_int_equal(flt.error_code, VMMU_X86_PF_P | VMMU_X86_PF_W);
    assert_int_equal(r.count, 4);
    assert_int_equal(f->e.mmio.n, 2);
}

static void a_user_read_of_a_supervisor_mmio_page_faults_after_supervisor_accesses(void **state)
{
    struct fx *f = *state;
    amap(&f->e, VA, MMIO_GPA, PTE_RW); /* no U/S in the leaf */
    store(f, VA, 0x11);
    assert_int_equal(load(f, VA), 0x11);
    assert_int_equal(vmmu_vcpu_set_cpl(V(f), 3), 0);
    uint64_t x = 0;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &x, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_VEC_PF);
    assert_int_equal(flt.error_code, VMMU_X86_PF_P | VMMU_X86_PF_U);
    assert_int_equal(f->e.mmio.n, 2);
}

static void a_supervisor_read_of_a_user_mmio_page_under_smap_faults_after_ac_set_reads(void **state)
{
    struct fx *f = *state;
    struct vmmu_x86_regs r = regs_4level(f->e.root);
    r.cr0 |= R_CR0_WP;
    r.cr4 |= VMMU_X86_CR4_SMAP;
    r.rflags |= VMMU_X86_RFLAGS_AC;
    assert_int_equal(vmmu_vcpu_set_state(V(f), &r), 0);
    amap(&f->e, VA, MMIO_GPA, PTE_RW | E_US);
    assert_int_equal(load(f, VA), 0); /* allowed with EFLAGS.AC set */
    assert_int_equal(vmmu_vcpu_set_rflags(V(f), r.rflags & ~VMMU_X86_RFLAGS_AC), 0);
    uint64_t x = 0;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &x, &flt), 0);
    assert_int_equal(flt.vector, VMMU_X86_VEC_PF);
    assert_int_equal(flt.error_code, VMMU_X86_PF_P);
    assert_int_equal(f->e.mmio.n, 1);
}

static void a_write_through_a_clean_mmio_pte_sets_d_after_reads_filled_its_entry(void **state)
{
    struct fx *f = *state;
    uint64_t pte = amap(&f->e, VA, MMIO_GPA, E_P | E_RW | E_A);
    assert_int_equal(load(f, VA), 0);
    assert_int_equal(get64(&f->e.t.env, pte) & E_D, 0);
    store(f, VA, 0x22);
    assert_int_equal(get64(&f->e.t.env, pte) & E_D, E_D);
    assert_int_equal(f->e.mmio.n, 2);
    assert_int_equal(f->e.mmio.op[1].value, 0x22);
}

/* ---- Watchpoints ---------------------------------------------------------------- */

static void a_watchpoint_on_a_filled_mmio_page_stops_the_write_before_the_device(void **state)
{
    struct fx *f = *state;
    store(f, VA, 0x11);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(V(f), VA + 8, 4, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, &id), 0);
    uint64_t x = 0x22;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_access_store(V(f), VA + 8, 8, 0, &x, &flt), 0);
    assert_int_equal(flt.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(f->e.mmio.n, 1);
    store(f, VA + 16, 0x33); /* outside the watched bytes */
    assert_int_equal(f->e.mmio.n, 2);
}

/* ---- The replay latch ------------------------------------------------------------- */

static void a_rep_movs_from_mmio_replays_the_element_it_read_before_the_device_pended(void **state)
{
    struct fx *f = *state;
    /* Both entries filled before the instruction. */
    assert_int_equal(load(f, VA), 0);
    store(f, VDEV, 0);
    unsigned mmio_before = f->e.mmio.n;
    memcpy(f->e.mmio.mem + 8, &(uint64_t){0xaaaa}, 8);
    f->dev.pend_next = true;
    struct vmmu_rep r = {.dst = VDEV + 8, .src = VA + 8, .count = 2, .elem = 8};
    struct vmmu_x86_fault flt;
    struct vmmu_tlb_stats before = stats(f);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 2, 0, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);
    assert_int_equal(stats(f).walks, before.walks);
    assert_int_equal(r.count, 2);
    assert_int_equal(f->e.mmio.n, mmio_before + 1);

    /* The device register changes between the passes. */
    memcpy(f->e.mmio.mem + 8, &(uint64_t){0xbbbb}, 8);
    memcpy(f->e.mmio.mem + 16, &(uint64_t){0xcccc}, 8);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 2, 0, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    /* The first element carries what the first pass read, read once. */
    assert_int_equal(f->dev.writes, 2);
    assert_int_equal(f->dev.wlog[1], 0xaaaa);
    assert_int_equal(f->e.mmio.n, mmio_before + 1);
    /* The call stops before the next element (its write may pend). */
    assert_int_equal(r.count, 1);
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_rep_movs(V(f), &r, 1, 0, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(f->dev.wlog[2], 0xcccc);
    assert_int_equal(f->e.mmio.n, mmio_before + 2);
}

/* An instruction's first pass loads 8 bytes of the MMIO register at VA
 * (0x1111, through its filled entry) and pends at the device page; then
 * the guest points VA at RAM (0x2222) and the register changes (0x3333)
 * before the instruction runs again. */
static void mmio_load_pends_then_the_page_moves_to_ram(struct fx *f)
{
    memcpy(f->e.mmio.mem, &(uint64_t){0x1111}, 8);
    assert_int_equal(load(f, VA), 0x1111); /* the entry is filled */
    f->dev.pend_next = true;
    uint64_t a = 0, b = 0;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 0x1111);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), VMMU_EPENDING);
    assert_int_equal(vmmu_insn_end(V(f), VMMU_EPENDING), 0);

    put64(&f->e.t.env, DATA(2), 0x2222);
    amap(&f->e, VA, DATA(2), PTE_RW);
    assert_int_equal(vmmu_vcpu_invlpg(V(f), VA), 0);
    memcpy(f->e.mmio.mem, &(uint64_t){0x3333}, 8);
}

static void a_replayed_mmio_read_keeps_its_first_translation_after_a_remap(void **state)
{
    struct fx *f = *state;
    mmio_load_pends_then_the_page_moves_to_ram(f);
    uint64_t a = 0, b = 0;
    struct vmmu_x86_fault flt;
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    assert_int_equal(vmmu_access_load(V(f), VA, 8, 0, &a, &flt), 0);
    assert_int_equal(a, 0x1111);
    assert_int_equal(vmmu_access_load(V(f), VDEV, 8, 0, &b, &flt), 0);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(f->e.mmio.n, 2); /* the warm-up and the first pass */
    /* The next instruction uses the new translation. */
    assert_int_equal(load(f, VA), 0x2222);
}

static void a_diverging_replay_reads_an_mmio_page_through_the_first_pass_translation(void **state)
{
    struct fx *f = *state;
    mmio_load_pends_then_the_page_moves_to_ram(f);
    uint64_t a = 0;
    struct vmmu_x86_fault flt;

    /* The re-execution reads 4 bytes where the first pass read 8: the
     * record no longer serves it, and it reads live, through the
     * translation the instruction used (the MMIO page), not the new one. */
    assert_int_equal(vmmu_insn_begin(V(f)), 0);
    a = 0;
    assert_int_equal(vmmu_access_load(V(f), VA, 4, 0, &a, &flt), 0);
    assert_int_equal(a, 0x3333);
    assert_int_equal(f->e.mmio.n, 3);
    assert_int_equal(vmmu_insn_end(V(f), 0), 0);
    assert_int_equal(load(f, VA), 0x2222);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(mmio_and_device_accesses_through_filled_entries_make_no_walk),
        T(a_probe_of_a_filled_device_page_gives_its_gpa_and_type),
        T(an_mmio_page_replaced_by_ram_is_ram_for_the_next_access),
        T(an_mmio_region_replaced_at_the_same_address_gets_the_next_access),
        T(an_mmio_region_moved_elsewhere_leaves_a_hole_behind),
        T(a_map_change_while_the_vcpu_is_offline_reaches_its_entry_when_it_returns),
        T(an_mmio_entry_pushed_to_the_victims_answers_and_goes_with_a_map_change),
        T(two_not_ram_pages_of_one_index_each_reach_their_own_device),
        T(invlpg_after_a_pte_change_moves_an_mmio_page_to_its_new_frame),
        T(invlpg_drops_an_mmio_entry_so_a_pte_made_not_present_faults),
        T(a_write_to_a_readonly_mmio_page_faults_after_reads_filled_its_entry),
        T(a_user_read_of_a_supervisor_mmio_page_faults_after_supervisor_accesses),
        T(a_supervisor_read_of_a_user_mmio_page_under_smap_faults_after_ac_set_reads),
        T(a_write_through_a_clean_mmio_pte_sets_d_after_reads_filled_its_entry),
        T(a_watchpoint_on_a_filled_mmio_page_stops_the_write_before_the_device),
        T(a_rep_movs_from_mmio_replays_the_element_it_read_before_the_device_pended),
        T(a_replayed_mmio_read_keeps_its_first_translation_after_a_remap),
        T(a_diverging_replay_reads_an_mmio_page_through_the_first_pass_translation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
