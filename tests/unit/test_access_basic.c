/* SPDX-License-Identifier: MIT */
/* Instruction memory access, one behaviour per test: page-crossing loads
 * and stores with exact fault semantics, probes, prepared accesses and
 * their MMIO fallbacks, string moves, watchpoints, atomics, code pages. */
#include "test_access_env.h"

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000100000ull;

static int setup(void **state)
{
    struct acc_env *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    acc_env_init(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct acc_env *e = *state;
    acc_env_fini(e);
    free(e);
    return 0;
}

/* A vm 36 bits wide under a CPU with MAXPHYADDR 40: a guest entry may name
 * a frame the CPU accepts but the vm does not have. */
#define NARROW_BITS 36
#define FAR (1ull << 38)           /* beyond the vm, below MAXPHYADDR */
#define NEAR_HOLE 0x20000000ull    /* inside the vm, backed by nothing */

static int setup_narrow(void **state)
{
    struct acc_env *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    acc_env_init_bits(e, NARROW_BITS);
    *state = e;
    return 0;
}

static uint8_t *ram(struct acc_env *e, uint64_t gpa)
{
    return e->t.env.mem + gpa;
}

/* ---- Page crossing ------------------------------------------------------------ */

static void store8_crossing_into_not_present_page_leaves_first_page_and_reports_cr2(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW); /* VA + 4096 is not mapped */
    memset(ram(e, DATA(0)), 0xaa, 4096);
    uint64_t value = 0x1122334455667788ull;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 4092, 8, 0, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.error_code, VMMU_X86_PF_W); /* not present, write, supervisor */
    assert_int_equal(f.cr2, VA + 4096);
    for (unsigned i = 4092; i < 4096; i++)
        assert_int_equal(ram(e, DATA(0))[i], 0xaa);
}

/* A watchpoint that stops before the access does not hide its fault: the
 * access faults on its second page, so it would never be made. */
static void a_crossing_store_faults_before_a_watchpoint_on_its_first_page_stops_it(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW); /* VA + 4096 is not mapped */
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA + 4092, 1,
                                    VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, NULL),
                     0);
    uint64_t value = 1;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 4092, 8, 0, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.cr2, VA + 4096);
    struct vmmu_watch_hit h[2];
    assert_int_equal(vmmu_watch_take_hits(acc_vcpu(e), h, 2, NULL), 0);
    /* Once the second page is there, the watchpoint stops it. */
    amap(e, VA + 4096, DATA(1), PTE_RW);
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 4092, 8, 0, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(vmmu_watch_take_hits(acc_vcpu(e), h, 2, NULL), 1);
}

static void store8_crossing_into_readonly_page_faults_with_p_set(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), E_P | E_A);
    memset(ram(e, DATA(0)), 0xaa, 4096);
    uint64_t value = 1;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 4095, 8, 0, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.error_code, VMMU_X86_PF_W | VMMU_X86_PF_P);
    assert_int_equal(f.cr2, VA + 4096);
    assert_int_equal(ram(e, DATA(0))[4095], 0xaa);
}

static void load16_crossing_two_pages_reads_both_parts(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(5), PTE_RW);
    amap(e, VA + 4096, DATA(2), PTE_RW); /* not contiguous in guest-physical memory */
    for (unsigned i = 0; i < 8; i++) {
        ram(e, DATA(5))[4088 + i] = (uint8_t)i;
        ram(e, DATA(2))[i] = (uint8_t)(8 + i);
    }
    uint8_t out[16];
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA + 4088, 16, 0, out, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    for (unsigned i = 0; i < 16; i++)
        assert_int_equal(out[i], i);
}

static void store_crossing_writes_both_pages_when_both_allow(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(3), PTE_RW);
    uint64_t value = 0x0807060504030201ull;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 4093, 8, 0, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_memory_equal(ram(e, DATA(0)) + 4093, "\x01\x02\x03", 3);
    assert_memory_equal(ram(e, DATA(3)), "\x04\x05\x06\x07\x08", 5);
}

static void bad_arguments_are_einval(void **state)
{
    struct acc_env *e = *state;
    uint64_t v = 0;
    struct vmmu_x86_fault f;
    struct vmmu_prepared p;
    assert_int_equal(vmmu_access_load(NULL, VA, 8, 0, &v, &f), VMMU_EINVAL);
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA, 3, 0, &v, &f), VMMU_EINVAL);
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA, 8, VMMU_X86_ACC_FETCH, &v, &f),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_prepare(acc_vcpu(e), VA, 0, 0, &p, &f), VMMU_EINVAL);
    assert_int_equal(vmmu_access_prepare(acc_vcpu(e), VA, 4097, 0, &p, &f), VMMU_EINVAL);
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA, 16, VMMU_RMW_ADD, 1, &v, 0, &f),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA, 0, VMMU_WATCH_READ, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), ~0ull, 2, VMMU_WATCH_READ, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_watch_remove(acc_vcpu(e), 12345), VMMU_ENOENT);
    assert_int_equal(vmmu_insn_end(acc_vcpu(e), 0), VMMU_EINVAL); /* none begun */
}

/* ---- Probes ------------------------------------------------------------------- */

static void probe_of_ram_returns_the_host_pointer(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(acc_vcpu(e), VA + 16, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_ptr_equal(p.host, ram(e, DATA(0)) + 16);
    assert_int_equal(p.gpa, DATA(0) + 16);
    assert_int_equal(p.type, VMMU_MEM_RAM);
}

static void inline_probe_hits_a_warm_ram_page_as_the_probe_answers(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    const struct vmmu_access_fast *fast = vmmu_access_fast(v);
    assert_non_null(fast);
    assert_null(vmmu_access_fast(NULL));
    void *host = NULL;
    /* Cold: the inline form declines and the probe fills. */
    assert_false(vmmu_access_probe_hit(fast, VA + 16, 8, VMMU_TLB_READ, &host));
    assert_null(host);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(v, VA + 16, 8, 0, &p), 0);
    assert_true(vmmu_access_probe_hit(fast, VA + 16, 8, VMMU_TLB_READ, &host));
    assert_ptr_equal(host, p.host);
    /* Misaligned: declined (the out-of-line probe serves it). */
    assert_false(vmmu_access_probe_hit(fast, VA + 17, 8, VMMU_TLB_READ, &host));
    assert_int_equal(vmmu_access_probe(v, VA + 17, 8, 0, &p), 0);
    assert_ptr_equal(p.host, ram(e, DATA(0)) + 17);
}

static void inline_probe_declines_while_the_latch_records(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    const struct vmmu_access_fast *fast = vmmu_access_fast(v);
    struct vmmu_probe p;
    void *host = NULL;
    assert_int_equal(vmmu_access_probe(v, VA, 8, 0, &p), 0);
    assert_true(vmmu_access_probe_hit(fast, VA, 8, VMMU_TLB_READ, &host));
    assert_int_equal(vmmu_insn_begin(v), 0);
    host = NULL;
    assert_false(vmmu_access_probe_hit(fast, VA, 8, VMMU_TLB_READ, &host));
    assert_null(host);
    /* The out-of-line probe records the translation the instruction used. */
    assert_int_equal(vmmu_access_probe(v, VA, 8, 0, &p), 0);
    assert_ptr_equal(p.host, ram(e, DATA(0)));
    struct vmmu_latch_stats st;
    assert_int_equal(vmmu_latch_stats(v, &st), 0);
    assert_int_equal(st.xlates, 1);
    assert_int_equal(vmmu_insn_end(v, 0), 0);
    assert_true(vmmu_access_probe_hit(fast, VA, 8, VMMU_TLB_READ, &host));
}

static void inline_probe_declines_watched_and_mmio_pages(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, MMIO_GPA, PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    const struct vmmu_access_fast *fast = vmmu_access_fast(v);
    struct vmmu_probe p;
    void *host = NULL;
    assert_int_equal(vmmu_access_probe(v, VA + 4096, 4, 0, &p), 0);
    assert_false(vmmu_access_probe_hit(fast, VA + 4096, 4, VMMU_TLB_READ, &host));
    assert_int_equal(e->mmio.n, 0);
    assert_int_equal(vmmu_watch_add(v, VA + 100, 1, VMMU_WATCH_WRITE, NULL), 0);
    assert_int_equal(vmmu_access_probe(v, VA, 8, 0, &p), 0);
    assert_true(vmmu_access_probe_hit(fast, VA, 8, VMMU_TLB_READ, &host)); /* reads unwatched */
    assert_int_equal(vmmu_access_probe(v, VA + 96, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH); /* covers byte 100 */
    assert_int_equal(p.gpa, DATA(0) + 96);
    /* Other bytes of the watched page may be written directly, but only
     * the slow probe says so: the page's write comparator carries a flag. */
    assert_int_equal(vmmu_access_probe(v, VA, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_int_equal(p.why, 0);
    assert_non_null(p.host);
    assert_false(vmmu_access_probe_hit(fast, VA, 8, VMMU_TLB_WRITE, &host));
    /* A probe makes no access: it records no hit. */
    struct vmmu_watch_hit hit;
    assert_int_equal(vmmu_watch_take_hits(v, &hit, 1, NULL), 0);
}

static void prepare_served_by_tlb_hits_matches_the_slow_path(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(5), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct vmmu_prepared slow, fast;
    struct vmmu_x86_fault f;
    /* First prepare fills (slow path); the second is served by hits. */
    assert_int_equal(vmmu_access_prepare(v, VA + 4000, 200, VMMU_X86_ACC_WRITE, &slow, &f), 0);
    struct vmmu_tlb_stats before, after;
    assert_int_equal(vmmu_vcpu_stats(v, &before), 0);
    assert_int_equal(vmmu_access_prepare(v, VA + 4000, 200, VMMU_X86_ACC_WRITE, &fast, &f), 0);
    assert_int_equal(vmmu_vcpu_stats(v, &after), 0);
    assert_int_equal(after.misses + after.slow_hits, before.misses + before.slow_hits);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(fast.npages, 2);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(fast.page[i].va, slow.page[i].va);
        assert_int_equal(fast.page[i].gpa, slow.page[i].gpa);
        assert_ptr_equal(fast.page[i].host, slow.page[i].host);
        assert_int_equal(fast.page[i].len, slow.page[i].len);
        assert_int_equal(fast.page[i].region_id, slow.page[i].region_id);
        assert_int_equal(fast.page[i].type, VMMU_MEM_RAM);
    }
    assert_int_equal(fast.page[1].gpa, DATA(5));
}

static void probe_of_mmio_returns_null_and_says_why(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, MMIO_GPA, PTE_RW);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(acc_vcpu(e), VA, 4, 0, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_MMIO);
    assert_int_equal(p.gpa, MMIO_GPA);
    assert_int_equal(e->mmio.n, 0); /* nothing performed */
}

static void probe_never_crosses_a_page(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(acc_vcpu(e), VA + 4090, 8, 0, &p), VMMU_EINVAL);
}

static void nofault_probe_reports_the_fault_and_sets_no_accessed_bit(void **state)
{
    struct acc_env *e = *state;
    uint64_t pte = amap(e, VA, DATA(0), E_P | E_RW); /* A and D clear */
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe_nofault(acc_vcpu(e), VA + 8192, 8, 0, &p), 0);
    assert_int_equal(p.fault.vector, VMMU_X86_VEC_PF);
    assert_int_equal(p.fault.cr2, VA + 8192);
    assert_int_equal(vmmu_access_probe_nofault(acc_vcpu(e), VA, 8, 0, &p), 0);
    assert_int_equal(p.fault.vector, VMMU_X86_FAULT_NONE);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_NOTDIRTY);
    assert_int_equal(get64(&e->t.env, pte) & E_A, 0);
    /* The faulting form sets A, as the access would. */
    assert_int_equal(vmmu_access_probe(acc_vcpu(e), VA, 8, 0, &p), 0);
    assert_non_null(p.host);
    assert_int_equal(get64(&e->t.env, pte) & E_A, E_A);
}

/* ---- MMIO fallbacks --------------------------------------------------------------- */

static void misaligned_mmio_load_uses_naturally_aligned_callbacks(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, MMIO_GPA, PTE_RW);
    for (unsigned i = 0; i < 16; i++)
        e->mmio.mem[i] = (uint8_t)(0x10 + i);
    uint64_t v;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA + 2, 8, 0, &v, &f), 0);
    assert_int_equal(v, 0x1918171615141312ull);
    /* 2 at offset 2, 4 at 4, 2 at 8 */
    assert_int_equal(e->mmio.n, 3);
    assert_int_equal(e->mmio.op[0].offset, 2);
    assert_int_equal(e->mmio.op[0].size, 2);
    assert_int_equal(e->mmio.op[1].offset, 4);
    assert_int_equal(e->mmio.op[1].size, 4);
    assert_int_equal(e->mmio.op[2].offset, 8);
    assert_int_equal(e->mmio.op[2].size, 2);
}

static void rep_stosb_to_mmio_writes_one_byte_per_element(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, MMIO_GPA, PTE_RW);
    struct vmmu_rep r = {.dst = VA, .count = 5, .elem = 1, .value = 0x5a};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_stos(acc_vcpu(e), &r, 100, &f), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.dst, VA + 5);
    assert_int_equal(e->mmio.n, 5);
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(e->mmio.op[i].size, 1);
        assert_int_equal(e->mmio.op[i].offset, i);
        assert_int_equal(e->mmio.mem[i], 0x5a);
    }
}

/* ---- Prepared accesses and string moves ------------------------------------------------ */

static void prepare_checks_both_pages_before_touching_either(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, MMIO_GPA, PTE_RW);
    /* second page not present */
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_prepare(acc_vcpu(e), VA + 4000, 200, VMMU_X86_ACC_WRITE, &p, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.cr2, VA + 4096);
    assert_int_equal(e->mmio.n, 0);
}

static void overlapping_forward_move_by_one_byte_repeats_the_first_byte(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    for (unsigned i = 0; i < 64; i++)
        ram(e, DATA(0))[i] = (uint8_t)i;
    struct vmmu_rep r = {.dst = VA + 1, .src = VA, .count = 32, .elem = 1};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 1000, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    for (unsigned i = 0; i <= 32; i++)
        assert_int_equal(ram(e, DATA(0))[i], 0);
    assert_int_equal(ram(e, DATA(0))[33], 33);
}

static void non_overlapping_move_across_pages_copies_like_memmove(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), PTE_RW);
    amap(e, VA + 8192, DATA(4), PTE_RW);
    for (unsigned i = 0; i < 8192; i++)
        ram(e, DATA(0))[i] = (uint8_t)(i * 7);
    struct vmmu_rep r = {.dst = VA + 8192 + 100, .src = VA + 3000, .count = 500, .elem = 4};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 1000, 0, &f), 0);
    assert_int_equal(r.count, 0);
    assert_memory_equal(ram(e, DATA(4)) + 100, ram(e, DATA(0)) + 3000, 2000);
}

static void rep_movs_stops_at_the_budget_and_resumes(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    for (unsigned i = 0; i < 256; i++)
        ram(e, DATA(0))[i] = (uint8_t)i;
    struct vmmu_rep r = {.dst = VA + 1024, .src = VA, .count = 100, .elem = 2};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 30, 0, &f), 0);
    assert_int_equal(r.count, 70);
    assert_int_equal(r.src, VA + 60);
    assert_int_equal(r.dst, VA + 1024 + 60);
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 1000, 0, &f), 0);
    assert_int_equal(r.count, 0);
    assert_memory_equal(ram(e, DATA(0)) + 1024, ram(e, DATA(0)), 200);
}

static void rep_movs_fault_leaves_registers_at_the_faulting_element(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW); /* VA + 4096: not present */
    struct vmmu_rep r = {.dst = VA + 4000, .src = VA, .count = 50, .elem = 4};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 1000, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.cr2, VA + 4096);
    assert_int_equal(r.count, 26); /* 24 elements fit before the page end */
    assert_int_equal(r.dst, VA + 4096);
}

/* ---- Alignment check ----------------------------------------------------------- */

static void set_user_mode(struct acc_env *e, bool am, bool ac, unsigned cpl)
{
    struct vmmu_x86_regs r = regs_4level(e->root);
    r.cr0 |= R_CR0_WP | (am ? VMMU_X86_CR0_AM : 0);
    r.rflags |= ac ? VMMU_X86_RFLAGS_AC : 0;
    r.cpl = cpl;
    assert_int_equal(vmmu_vcpu_set_state(acc_vcpu(e), &r), 0);
}

static void assert_ac(const struct vmmu_x86_fault *f)
{
    assert_int_equal(f->vector, VMMU_X86_VEC_AC);
    assert_int_equal(f->error_code, 0);
}

/* SDM 6.15: at CPL 3 with CR0.AM and RFLAGS.AC, a misaligned data access
 * of 2, 4 or 8 bytes raises #AC(0) before its page is walked (no A bit
 * set, nothing read or written), for every kind of access vmmu makes. */
static void a_misaligned_user_access_with_am_and_ac_raises_ac(void **state)
{
    struct acc_env *e = *state;
    uint64_t pte = amap(e, VA, DATA(0), E_P | E_RW | E_US);
    memset(ram(e, DATA(0)), 0xaa, 64);
    set_user_mode(e, true, true, 3);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct vmmu_x86_fault f;
    uint64_t val = 0x1122334455667788ull, old = 0;
    assert_int_equal(vmmu_access_load(v, VA + 1, 4, 0, &val, &f), 0);
    assert_ac(&f);
    assert_int_equal(get64(&e->t.env, pte) & E_A, 0); /* not walked */
    assert_int_equal(vmmu_access_store(v, VA + 4, 8, 0, &val, &f), 0);
    assert_ac(&f);
    assert_int_equal(vmmu_access_rmw(v, VA + 1, 2, VMMU_RMW_ADD, 1, &old, 0, &f), 0);
    assert_ac(&f);
    assert_int_equal(vmmu_access_cmpxchg(v, VA + 2, 4, &val, &val, &old, NULL, 0, &f), 0);
    assert_ac(&f);
    struct vmmu_rep r = {.dst = VA + 32, .src = VA + 1, .count = 4, .elem = 2};
    assert_int_equal(vmmu_access_rep_movs(v, &r, 10, 0, &f), 0);
    assert_ac(&f);
    assert_int_equal(r.count, 4);
    r = (struct vmmu_rep){.dst = VA + 3, .count = 4, .elem = 4};
    assert_int_equal(vmmu_access_rep_stos(v, &r, 10, &f), 0);
    assert_ac(&f);
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(ram(e, DATA(0))[i], 0xaa);
    assert_int_equal(get64(&e->t.env, pte) & E_A, 0);
    /* Bytes, aligned accesses, implicit supervisor accesses and fetches
     * are not checked. */
    uint8_t b;
    assert_int_equal(vmmu_access_load(v, VA + 1, 1, 0, &b, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_load(v, VA + 4, 4, 0, &val, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_load(v, VA + 1, 4, VMMU_X86_ACC_IMPLICIT, &val, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_load(v, VA + 1, 4, VMMU_X86_ACC_FETCH, &val, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
}

/* Without CR0.AM, without RFLAGS.AC, or below CPL 3: no #AC. */
static void no_alignment_check_without_am_ac_and_cpl3(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), E_P | E_RW | E_US | E_A | E_D);
    const struct { bool am, ac; unsigned cpl; } cases[] = {
        {false, true, 3}, {true, false, 3}, {true, true, 0}, {true, true, 2}};
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_user_mode(e, cases[i].am, cases[i].ac, cases[i].cpl);
        uint64_t val = 0;
        struct vmmu_x86_fault f;
        assert_int_equal(vmmu_access_load(acc_vcpu(e), VA + 1, 8, 0, &val, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    }
}

/* An operand that leaves canonical form raises #GP (#SS through SS) even
 * when it is misaligned: its address is never formed. */
static void a_misaligned_non_canonical_access_raises_gp_not_ac(void **state)
{
    struct acc_env *e = *state;
    set_user_mode(e, true, true, 3);
    uint64_t val = 0;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), 0x00007ffffffffffdull, 4, 0, &val, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_GP);
    assert_int_equal(vmmu_access_load(acc_vcpu(e), 0x00007ffffffffffdull, 4, VMMU_X86_ACC_STACK,
                                      &val, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_VEC_SS);
}

static void backward_rep_stos_fills_downwards(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_rep r = {.dst = VA + 96, .count = 4, .elem = 8, .backward = true,
                         .value = 0x0101010101010101ull};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_stos(acc_vcpu(e), &r, 100, &f), 0);
    assert_int_equal(r.dst, VA + 64);
    for (unsigned i = 72; i < 104; i++)
        assert_int_equal(ram(e, DATA(0))[i], 1);
    assert_int_equal(ram(e, DATA(0))[71], 0);
    assert_int_equal(ram(e, DATA(0))[104], 0);
}

/* A probe's answer for a hole at @gpa: no fault, no host pointer, "MMIO". */
static void assert_probed_hole(const struct vmmu_probe *p, uint64_t gpa)
{
    assert_int_equal(p->fault.vector, VMMU_X86_FAULT_NONE);
    assert_null(p->host);
    assert_int_equal(p->why, VMMU_PROBE_MMIO);
    assert_int_equal(p->type, VMMU_MEM_HOLE);
    assert_int_equal(p->gpa, gpa);
}

/* Every access form treats a frame beyond the vm's width as a hole:
 * reads see all ones, writes go nowhere, nothing faults. */
static void a_data_page_beyond_the_vms_width_is_a_hole_for_every_access_form(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, VA, FAR, PTE_RW);
    amap(e, VA + 4096, NEAR_HOLE, PTE_RW);
    static const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    for (unsigned i = 0; i < 2; i++) {
        uint64_t va = VA + i * 4096ull, gpa = i ? NEAR_HOLE : FAR;
        /* The probes first, while the TLB holds nothing of the page: the
         * non-faulting one walks without filling. */
        struct vmmu_probe p;
        assert_int_equal(vmmu_access_probe_nofault(v, va + 16, 4, 0, &p), 0);
        assert_probed_hole(&p, gpa + 16);
        assert_int_equal(vmmu_access_probe(v, va + 16, 4, 0, &p), 0);
        assert_probed_hole(&p, gpa + 16);
        /* The slow path of the TLB. */
        assert_int_equal(vmmu_vcpu_tlb_flush_all(v), 0);
        struct vmmu_tlb_result r;
        assert_null(tacc(&e->t, va + 8, 8, 0, &r));
        assert_int_equal(r.status, VMMU_TLB_NOT_RAM);
        assert_int_equal(r.type, VMMU_MEM_HOLE);
        assert_int_equal(r.gpa, gpa + 8);
        /* Reads and writes through the access functions. */
        assert_int_equal(vmmu_vcpu_tlb_flush_all(v), 0);
        struct vmmu_x86_fault f;
        uint8_t buf[8];
        memset(buf, 0, sizeof(buf));
        assert_int_equal(vmmu_access_read(v, va, buf, 8, 0, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
        assert_memory_equal(buf, ones, 8);
        assert_int_equal(vmmu_access_write(v, va, "abcdefgh", 8, 0, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
        memset(buf, 0, sizeof(buf));
        assert_int_equal(vmmu_access_read(v, va, buf, 8, 0, &f), 0);
        assert_memory_equal(buf, ones, 8);
        /* A prepared access of an instruction. */
        assert_int_equal(vmmu_vcpu_tlb_flush_all(v), 0);
        struct vmmu_prepared pr;
        assert_int_equal(vmmu_insn_begin(v), 0);
        assert_int_equal(vmmu_access_prepare(v, va + 4, 8, 0, &pr, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
        memset(buf, 0, sizeof(buf));
        assert_int_equal(vmmu_prepared_read(&pr, 0, buf, 8), 0);
        assert_memory_equal(buf, ones, 8);
        assert_int_equal(vmmu_insn_end(v, 0), 0);
    }
    /* Nothing reached RAM or the MMIO device. */
    for (uint64_t g = e->t.env.next; g < 16 * MiB; g += 8)
        assert_int_equal(get64(&e->t.env, g), 0);
    assert_int_equal(e->mmio.n, 0);
}

/* A page table beyond the vm's width reads as all ones, as one in a hole
 * does: its entries are present with reserved bits set, a #PF with RSVD. */
static void a_page_table_beyond_the_vms_width_reads_as_all_ones(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    uint64_t pte = amap(e, VA, DATA(0), PTE_RW);
    uint64_t pt = pte & ~0xfffull;
    /* The PDE that points at that table. */
    uint64_t pdpte = get64(&e->t.env, slot9(e->root, VA, 4)) & ADDR_MASK;
    uint64_t pd = get64(&e->t.env, slot9(pdpte, VA, 3)) & ADDR_MASK;
    uint64_t pde_at = slot9(pd, VA, 2);
    assert_int_equal(get64(&e->t.env, pde_at) & ADDR_MASK, pt);
    static const uint64_t tables[] = {FAR, NEAR_HOLE};
    for (unsigned i = 0; i < 2; i++) {
        put64(&e->t.env, pde_at, tables[i] | UPPER);
        assert_int_equal(vmmu_vcpu_tlb_flush_all(v), 0);
        struct vmmu_tlb_result r;
        assert_null(tacc(&e->t, VA + 8, 8, 0, &r));
        assert_int_equal(r.status, VMMU_TLB_FAULT);
        assert_int_equal(r.fault.vector, VMMU_X86_VEC_PF);
        assert_int_equal(r.fault.error_code, VMMU_X86_PF_P | VMMU_X86_PF_RSVD);
        assert_int_equal(r.fault.cr2, VA + 8);
        struct vmmu_x86_fault f;
        uint8_t b = 0;
        assert_int_equal(vmmu_access_write(v, VA, &b, 1, 0, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_VEC_PF);
        assert_int_equal(f.error_code, VMMU_X86_PF_P | VMMU_X86_PF_W | VMMU_X86_PF_RSVD);
    }
    /* Back to the real table: the page is reached again. */
    put64(&e->t.env, pde_at, pt | UPPER);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(v), 0);
    assert_ptr_equal(tacc(&e->t, VA + 8, 8, 0, NULL), ram(e, DATA(0) + 8));
}

static void prepared_descriptor_is_stale_after_the_instruction_ends(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    uint8_t b = 0;
    assert_int_equal(vmmu_insn_begin(acc_vcpu(e)), 0);
    assert_int_equal(vmmu_access_prepare(acc_vcpu(e), VA, 16, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &b, 1), 0);
    assert_int_equal(vmmu_insn_end(acc_vcpu(e), 0), 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &b, 1), VMMU_EINVAL);
}

static void prepared_descriptor_is_refused_after_a_safepoint(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    uint8_t b = 0x5a;
    assert_int_equal(vmmu_vcpu_online(v), 0);
    /* Prepared outside any instruction (no vmmu_insn_end() to end it). */
    assert_int_equal(vmmu_access_prepare(v, VA, 16, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &b, 1), 0);
    assert_int_equal(vmmu_vcpu_safepoint(v), 0);
    b = 0xa5;
    assert_int_equal(vmmu_prepared_write(&p, 1, &b, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_read(&p, 0, &b, 1), VMMU_EINVAL);
    assert_int_equal(ram(e, DATA(0))[0], 0x5a);
    assert_int_equal(ram(e, DATA(0))[1], 0); /* the refused write wrote nothing */
    /* Going offline is a safe point too. */
    assert_int_equal(vmmu_access_prepare(v, VA, 16, 0, &p, &f), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    assert_int_equal(vmmu_prepared_read(&p, 0, &b, 1), VMMU_EINVAL);
}

static void prepared_read_only_refuses_writes(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    uint8_t b = 0;
    assert_int_equal(vmmu_access_prepare(acc_vcpu(e), VA, 16, 0, &p, &f), 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &b, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_prepared_read(&p, 10, &b, 7), VMMU_EINVAL); /* beyond it */
}

/* ---- Watchpoints -------------------------------------------------------------------- */

static void string_move_over_a_watchpoint_stops_before_the_watched_byte(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA + 2048 + 37, 1,
                                    VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, &id),
                     0);
    memset(ram(e, DATA(0)), 0x11, 1024);
    struct vmmu_rep r = {.dst = VA + 2048, .src = VA, .count = 100, .elem = 1};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(acc_vcpu(e), &r, 1000, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(r.count, 63);
    assert_int_equal(r.dst, VA + 2048 + 37);
    assert_int_equal(ram(e, DATA(0))[2048 + 36], 0x11);
    assert_int_equal(ram(e, DATA(0))[2048 + 37], 0); /* not written */
    struct vmmu_watch_hit h[4];
    assert_int_equal(vmmu_watch_take_hits(acc_vcpu(e), h, 4, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].flags, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE);
    assert_int_equal(h[0].va, VA + 2048 + 37);
}

static void after_watchpoint_lets_the_access_complete_and_records_it(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA + 100, 8, VMMU_WATCH_READ, &id), 0);
    uint64_t v;
    struct vmmu_x86_fault f;
    ram(e, DATA(0))[104] = 9;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA + 104, 1, 0, &v, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(v & 0xff, 9);
    /* a write is not watched */
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 104, 1, 0, &v, &f), 0);
    struct vmmu_watch_hit h[4];
    assert_int_equal(vmmu_watch_take_hits(acc_vcpu(e), h, 4, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].flags, VMMU_WATCH_READ);
    assert_int_equal(h[0].va, VA + 104);
}

/* A REP STOS element run (and vmmu_prepared_set()) writes RAM 64 bytes at
 * a time; each page piece it writes is one hit per watchpoint, as for
 * every other access.  It took one per 64 bytes: one STOSB over a watched
 * page filled the hit buffer and lost the hit of the next access. */
static void rep_stos_over_a_watched_page_records_one_hit_per_page_piece(void **state)
{
    struct acc_env *e = *state;
    for (unsigned i = 0; i < 3; i++)
        amap(e, VA + i * 4096ull, DATA(i), PTE_RW);
    uint32_t page, other;
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA, 8192, VMMU_WATCH_WRITE, &page), 0);
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA + 8192, 8, VMMU_WATCH_READ, &other), 0);
    struct vmmu_x86_fault f;
    struct vmmu_rep r = {.dst = VA + 2048, .count = 4096, .elem = 1, .value = 0x5a};
    assert_int_equal(vmmu_access_rep_stos(acc_vcpu(e), &r, 4096, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(r.count, 0);
    assert_int_equal(ram(e, DATA(1))[2047], 0x5a);
    uint64_t x;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA + 8192, 8, 0, &x, &f), 0);
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX];
    uint64_t dropped = 1;
    assert_int_equal(vmmu_watch_take_hits(acc_vcpu(e), h, VMMU_WATCH_HITS_MAX, &dropped), 3);
    assert_int_equal(dropped, 0);
    assert_int_equal(h[0].id, page);
    assert_int_equal(h[0].va, VA + 2048);
    assert_int_equal(h[0].len, 2048);
    assert_int_equal(h[1].id, page);
    assert_int_equal(h[1].va, VA + 4096);
    assert_int_equal(h[1].len, 2048);
    assert_int_equal(h[2].id, other);
}

/* VMMU_WATCH_HITS_MAX hits are kept, oldest first, and taken in order
 * across calls; later ones are only counted, and the count resets when it
 * is read. */
static void watch_hits_past_the_maximum_are_counted_as_dropped_until_read(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, VA, DATA(0), PTE_RW);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, VA, 4096, VMMU_WATCH_READ, &id), 0);
    const unsigned extra = 3;
    struct vmmu_x86_fault f;
    uint64_t x;
    for (unsigned i = 0; i < VMMU_WATCH_HITS_MAX + extra; i++) {
        assert_int_equal(vmmu_access_load(v, VA + i, 1, 0, &x, &f), 0);
        assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    }
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX + 8];
    uint64_t dropped = 99;
    assert_int_equal(vmmu_watch_take_hits(v, h, 1, &dropped), 1);
    assert_int_equal(dropped, extra);
    assert_int_equal(h[0].va, VA);
    /* The rest, in order; the count of dropped hits was reset. */
    assert_int_equal(vmmu_watch_take_hits(v, h, VMMU_WATCH_HITS_MAX + 8, &dropped),
                     VMMU_WATCH_HITS_MAX - 1);
    assert_int_equal(dropped, 0);
    for (unsigned i = 0; i < VMMU_WATCH_HITS_MAX - 1; i++) {
        assert_int_equal(h[i].id, id);
        assert_int_equal(h[i].flags, VMMU_WATCH_READ);
        assert_int_equal(h[i].va, VA + 1 + i);
        assert_int_equal(h[i].len, 1);
    }
    /* Taking made room: the next hit is kept. */
    assert_int_equal(vmmu_access_load(v, VA + 7, 1, 0, &x, &f), 0);
    assert_int_equal(vmmu_watch_take_hits(v, h, 4, &dropped), 1);
    assert_int_equal(dropped, 0);
    assert_int_equal(h[0].va, VA + 7);
}

/* A watchpoint over more pages than vmmu drops one by one (it flushes the
 * vCPU's whole TLB then): warm pages inside it stop hitting inline, and
 * hit again once it is removed. */
static void a_watchpoint_over_many_pages_drops_their_warm_entries(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    const unsigned npages = 100;
    for (unsigned i = 0; i < npages; i++)
        amap(e, VA + (uint64_t)i * 4096, DATA(i), PTE_RW);
    const struct vmmu_access_fast *fast = vmmu_access_fast(v);
    struct vmmu_x86_fault f;
    uint64_t x;
    void *host;
    const unsigned probe[] = {0, 50, 99};
    for (unsigned k = 0; k < 3; k++) {
        uint64_t va = VA + (uint64_t)probe[k] * 4096;
        assert_int_equal(vmmu_access_load(v, va, 8, 0, &x, &f), 0);
        assert_true(vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host));
    }
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, VA, (uint64_t)npages * 4096, VMMU_WATCH_READ, &id), 0);
    for (unsigned k = 0; k < 3; k++) {
        uint64_t va = VA + (uint64_t)probe[k] * 4096;
        assert_false(vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host));
        assert_int_equal(vmmu_access_load(v, va, 8, 0, &x, &f), 0);
        assert_false(vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host));
    }
    struct vmmu_watch_hit h[4];
    assert_int_equal(vmmu_watch_take_hits(v, h, 4, NULL), 3);
    assert_int_equal(vmmu_watch_remove(v, id), 0);
    for (unsigned k = 0; k < 3; k++) {
        uint64_t va = VA + (uint64_t)probe[k] * 4096;
        assert_int_equal(vmmu_access_load(v, va, 8, 0, &x, &f), 0);
        assert_true(vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host));
    }
    assert_int_equal(vmmu_watch_take_hits(v, h, 4, NULL), 0);
}

static void watched_page_never_hits_inline_and_is_fast_again_after_removal(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint64_t v;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA, 8, 0, &v, &f), 0);
    assert_non_null(vmmu_tlb_lookup_read(acc_vcpu(e), VA, 8));
    uint32_t id;
    assert_int_equal(vmmu_watch_add(acc_vcpu(e), VA + 3000, 4, VMMU_WATCH_ACCESS, &id), 0);
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA, 8, 0, &v, &f), 0);
    assert_null(vmmu_tlb_lookup_read(acc_vcpu(e), VA, 8));
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(acc_vcpu(e), VA + 3000, 4, 0, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH);
    assert_int_equal(vmmu_watch_remove(acc_vcpu(e), id), 0);
    assert_int_equal(vmmu_access_load(acc_vcpu(e), VA, 8, 0, &v, &f), 0);
    assert_non_null(vmmu_tlb_lookup_read(acc_vcpu(e), VA, 8));
}

/* ---- Atomics -------------------------------------------------------------------- */

static void rmw_ops_return_the_old_value(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint64_t old;
    struct vmmu_x86_fault f;
    put32(&e->t.env, DATA(0) + 13, 100); /* straddles two 8-byte words */
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 13, 4, VMMU_RMW_ADD, 5, &old, 0, &f), 0);
    assert_int_equal(old, 100);
    assert_int_equal(get32(&e->t.env, DATA(0) + 13), 105);
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 13, 4, VMMU_RMW_XCHG, 7, &old, 0, &f), 0);
    assert_int_equal(old, 105);
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 13, 4, VMMU_RMW_OR, 0x30, &old, 0, &f), 0);
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 13, 4, VMMU_RMW_AND, 0x3c, &old, 0, &f), 0);
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 13, 4, VMMU_RMW_XOR, 0xff, &old, 0, &f), 0);
    assert_int_equal(old, 0x34);
    assert_int_equal(get32(&e->t.env, DATA(0) + 13), 0xcb);
    assert_int_equal(ram(e, DATA(0))[12], 0);
    assert_int_equal(ram(e, DATA(0))[17], 0);
}

static void cmpxchg16_on_aligned_ram_swaps_only_on_match(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint64_t expect[2] = {1, 2}, desired[2] = {3, 4}, observed[2];
    put64(&e->t.env, DATA(0) + 32, 1);
    put64(&e->t.env, DATA(0) + 40, 2);
    bool swapped;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA + 32, 16, expect, desired, observed,
                                         &swapped, 0, &f), 0);
    assert_true(swapped);
    assert_int_equal(get64(&e->t.env, DATA(0) + 40), 4);
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA + 32, 16, expect, desired, observed,
                                         &swapped, 0, &f), 0);
    assert_false(swapped);
    assert_int_equal(observed[0], 3);
    assert_int_equal(observed[1], 4);
}

/* CMPXCHG with the accumulator as both the value compared and the one
 * that receives memory (one buffer for @expected and @observed, as an
 * emulator passes RAX): a failed compare says so, and a matching one
 * swaps. */
static void cmpxchg_with_one_buffer_for_expected_and_observed_reports_a_failed_compare(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    put32(&e->t.env, DATA(0), 0x11111111);
    uint32_t rax = 0x22222222, desired = 0x33333333;
    bool swapped = true;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA, 4, &rax, &desired, &rax, &swapped, 0,
                                         &f), 0);
    assert_false(swapped);
    assert_int_equal(rax, 0x11111111);
    assert_int_equal(get32(&e->t.env, DATA(0)), 0x11111111);
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA, 4, &rax, &desired, &rax, &swapped, 0,
                                         &f), 0);
    assert_true(swapped);
    assert_int_equal(rax, 0x11111111);
    assert_int_equal(get32(&e->t.env, DATA(0)), 0x33333333);
}

static void cmpxchg16_misaligned_raises_gp(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    uint64_t x[2] = {0, 0}, o[2];
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA + 8, 16, x, x, o, NULL, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_GP);
}

static void cmpxchg_on_readonly_page_faults_as_a_write_even_without_match(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), E_P | E_A);
    uint32_t x = 5, d = 6, o;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), VA, 4, &x, &d, &o, NULL, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.error_code, VMMU_X86_PF_P | VMMU_X86_PF_W);
}

static void locked_add_crossing_a_page_updates_both_parts(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), PTE_RW);
    put64(&e->t.env, DATA(0) + 4092, 0xffffffffull);
    uint64_t old;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rmw(acc_vcpu(e), VA + 4092, 8, VMMU_RMW_ADD, 1, &old, 0, &f), 0);
    assert_int_equal(old, 0xffffffffull);
    assert_int_equal(get64(&e->t.env, DATA(0) + 4092), 0x100000000ull);
}

/* In 64-bit mode linear addresses wrap at 2^64: an access at the last
 * bytes of the upper half goes on at 0 (both pages canonical), a page
 * crossing like any other; a fault on page 0 has CR2 0 and leaves the top
 * page as it was. */
static void an_access_across_the_top_of_the_address_space_goes_on_at_0(void **state)
{
    struct acc_env *e = *state;
    const uint64_t top = 0xfffffffffffffffcull;
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct vmmu_x86_fault f;
    amap(e, top & VMMU_PAGE_MASK, DATA(0), PTE_RW);
    put64(&e->t.env, DATA(0) + 4088, 0x4433221100000000ull);
    uint64_t value = 0x0102030405060708ull, got;
    assert_int_equal(vmmu_access_store(v, top, 8, VMMU_X86_ACC_WRITE, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.cr2, 0);
    assert_int_equal(f.error_code, VMMU_X86_PF_W);
    assert_int_equal(get64(&e->t.env, DATA(0) + 4088), 0x4433221100000000ull);

    amap(e, 0, DATA(1), PTE_RW);
    put64(&e->t.env, DATA(1), 0x8877665544332211ull);
    assert_int_equal(vmmu_access_load(v, top, 8, 0, &got, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(got, 0x4433221144332211ull);
    assert_int_equal(vmmu_access_store(v, top, 8, VMMU_X86_ACC_WRITE, &value, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(get64(&e->t.env, DATA(0) + 4088), 0x0506070800000000ull);
    assert_int_equal(get64(&e->t.env, DATA(1)), 0x8877665501020304ull);
    uint64_t old;
    assert_int_equal(vmmu_access_rmw(v, top, 8, VMMU_RMW_ADD, 0x100000000ull, &old, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(old, value);
    assert_int_equal(get64(&e->t.env, DATA(1)), 0x8877665501020305ull);
}

/* ---- Code pages ------------------------------------------------------------------- */

struct code_seen {
    unsigned calls;
    uint64_t gpa;
};

static void code_written(void *opaque, struct vmmu_vcpu *vcpu, uint64_t gpa_page)
{
    (void)vcpu;
    struct code_seen *s = opaque;
    s->calls++;
    s->gpa = gpa_page;
}

static void writing_a_code_page_calls_the_handler_once_then_is_fast(void **state)
{
    struct acc_env *e = *state;
    amap(e, VA, DATA(0), PTE_RW);
    struct code_seen seen = {0, 0};
    assert_int_equal(vmmu_access_set_code_handler(acc_vcpu(e), code_written, &seen), 0);
    assert_int_equal(vmmu_vcpu_online(acc_vcpu(e)), 0);
    assert_int_equal(vmmu_code_mark(e->t.env.vm, DATA(0), 1), 0);
    uint32_t v = 0x90909090;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 64, 4, 0, &v, &f), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.gpa, DATA(0));
    assert_int_equal(get32(&e->t.env, DATA(0) + 64), v);
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 68, 4, 0, &v, &f), 0);
    assert_int_equal(seen.calls, 1);
    assert_non_null(vmmu_tlb_lookup_write(acc_vcpu(e), VA + 72, 4));
    /* Marked again: the fast write entry is dropped and the next write reports. */
    assert_int_equal(vmmu_code_mark(e->t.env.vm, DATA(0), 1), 0);
    assert_null(vmmu_tlb_lookup_write(acc_vcpu(e), VA + 72, 4));
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 72, 4, 0, &v, &f), 0);
    assert_int_equal(seen.calls, 2);
    assert_int_equal(vmmu_vcpu_offline(acc_vcpu(e)), 0);
}

/* ---- Dirty logging ---------------------------------------------------------------- */

static void dirty_log_reports_each_written_page_once_and_sees_writes_after_the_clear(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), PTE_RW);
    assert_int_equal(vmmu_vcpu_online(acc_vcpu(e)), 0);
    uint64_t v = 1;
    struct vmmu_x86_fault f;
    /* A fast write entry exists before logging starts. */
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA, 8, 0, &v, &f), 0);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, true), 0);
    uint64_t bm[64], n;
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA, 8, 0, &v, &f), 0);
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 8, 8, 0, &v, &f), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    uint64_t page = DATA(0) >> 12;
    assert_true(bm[page / 64] & (1ull << (page % 64)));
    /* The entry filled while the page was dirty must not hide the next write. */
    assert_int_equal(vmmu_access_store(acc_vcpu(e), VA + 16, 8, 0, &v, &f), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    assert_true(bm[page / 64] & (1ull << (page % 64)));
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 1, &n), VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, false), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), VMMU_EINVAL);
    assert_int_equal(vmmu_dirty_log_enable(vm, 999, true), VMMU_ENOENT);
    assert_int_equal(vmmu_vcpu_offline(acc_vcpu(e)), 0);
}

/* More separate dirty ranges than get-and-clear flushes one by one: every
 * page it reports still loses its fast write entry, so the next write to
 * each is seen by the next call. */
static void dirty_log_read_with_many_separate_dirty_pages_sees_every_next_write(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    struct vmmu_vcpu *v = acc_vcpu(e);
    const unsigned n = 80; /* every other page: 80 ranges */
    for (unsigned i = 0; i < n; i++)
        amap(e, VA + (uint64_t)i * 4096, DATA(2 * i), PTE_RW);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, true), 0);
    uint64_t bm[64], x = 7;
    struct vmmu_x86_fault f;
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < n; i++) {
            /* Twice: the second store goes through the fast entry. */
            assert_int_equal(vmmu_access_store(v, VA + (uint64_t)i * 4096, 8, 0, &x, &f), 0);
            assert_int_equal(vmmu_access_store(v, VA + (uint64_t)i * 4096 + 8, 8, 0, &x, &f), 0);
        }
        assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, NULL), 0);
        for (unsigned i = 0; i < n; i++) {
            uint64_t gfn = DATA(2 * i) >> 12;
            assert_true(bm[gfn / 64] & (1ull << (gfn % 64)));
            assert_false(bm[(gfn + 1) / 64] & (1ull << ((gfn + 1) % 64)));
        }
    }
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, false), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
}

/* A prepared write held across calls made on the vCPU's own thread that
 * narrow what the page allows (the dirty log read, a code mark) is seen
 * like a write prepared after them: vmmu drops the vCPU's translations at
 * once, so the descriptor must not keep writing past the log or the code
 * handler.  (A device model's MMIO callback may read the log in the middle
 * of a REP MOVS whose destination is already prepared.) */
static void a_prepared_write_held_across_the_dirty_log_read_on_its_thread_is_logged(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, true), 0);
    uint64_t bm[64], n;
    uint64_t page = DATA(0) >> 12;
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    /* The walk's first A-bit writes dirtied page-table pages: read those. */
    uint8_t byte;
    assert_int_equal(vmmu_access_read(v, VA, &byte, 1, 0, &f), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(vmmu_access_prepare(v, VA + 8, 8, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    /* The preparation marked the page; the read reports and clears it. */
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    assert_true(bm[page / 64] & (1ull << (page % 64)));
    /* The write after the read marks it again. */
    uint64_t x = 0x1122334455667788ull;
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 8), 0);
    assert_int_equal(get64(&e->t.env, DATA(0) + 8), x);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    assert_true(bm[page / 64] & (1ull << (page % 64)));
    /* So does a fill of the same descriptor, and a read does not. */
    assert_int_equal(vmmu_prepared_read(&p, 0, &x, 8), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vmmu_prepared_set(&p, 0, 0xab, 1, 8), 0);
    assert_int_equal(get64(&e->t.env, DATA(0) + 8), 0xababababababababull);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    /* Logging turned on after the preparation: the write is logged too. */
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, false), 0);
    assert_int_equal(vmmu_access_prepare(v, VA + 16, 8, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, true), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 8), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, e->t.env.ram_id, bm, 64, &n), 0);
    assert_int_equal(n, 1);
    assert_true(bm[page / 64] & (1ull << (page % 64)));
    assert_int_equal(vmmu_dirty_log_enable(vm, e->t.env.ram_id, false), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
}

static void a_prepared_write_held_across_a_code_mark_on_its_thread_calls_the_handler(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct code_seen seen = {0, 0};
    assert_int_equal(vmmu_access_set_code_handler(v, code_written, &seen), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    /* Both pages of a crossing write: the second becomes code. */
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_prepare(v, VA + 4092, 8, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(p.npages, 2);
    assert_int_equal(vmmu_code_mark(vm, DATA(1), 1), 0);
    assert_int_equal(seen.calls, 0);
    uint64_t x = 0x0102030405060708ull;
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 8), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.gpa, DATA(1));
    assert_int_equal(get32(&e->t.env, DATA(0) + 4092), 0x05060708u);
    assert_int_equal(get32(&e->t.env, DATA(1)), 0x01020304u);
    /* The mark is gone: another write through it reports nothing. */
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 8), 0);
    assert_int_equal(seen.calls, 1);
    /* A move into a page marked after its preparation reports too. */
    struct vmmu_prepared src, dst;
    assert_int_equal(vmmu_access_prepare(v, VA + 100, 4, 0, &src, &f), 0);
    assert_int_equal(vmmu_access_prepare(v, VA + 4096 + 200, 4, VMMU_X86_ACC_WRITE, &dst, &f), 0);
    assert_int_equal(vmmu_code_mark(vm, DATA(1), 1), 0);
    assert_int_equal(vmmu_prepared_move(&dst, &src, 4, false), 0);
    assert_int_equal(seen.calls, 2);
    assert_int_equal(get32(&e->t.env, DATA(1) + 200), get32(&e->t.env, DATA(0) + 100));
    assert_int_equal(vmmu_access_set_code_handler(v, NULL, NULL), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
}

/* A code handler that marks its page again (as a JIT that translated it
 * at once would) is called once per write: its new mark applies to the
 * next write. */
struct remarker {
    struct vmmu_vm *vm;
    int calls;
};

static void remarking_handler(void *opaque, struct vmmu_vcpu *vcpu, uint64_t gpa_page)
{
    (void)vcpu;
    struct remarker *r = opaque;
    r->calls++;
    assert_int_equal(vmmu_code_mark(r->vm, gpa_page, 1), 0);
}

static void a_code_handler_that_marks_its_page_again_is_called_once_per_write(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VA, DATA(0), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct remarker r = {vm, 0};
    assert_int_equal(vmmu_access_set_code_handler(v, remarking_handler, &r), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    assert_int_equal(vmmu_code_mark(vm, DATA(0), 1), 0);
    uint32_t x = 0x12345678;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_write(v, VA + 8, &x, 4, VMMU_X86_ACC_WRITE, &f), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(get32(&e->t.env, DATA(0) + 8), x);
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(vm, DATA(0), &st), 0);
    assert_true(st & VMMU_PAGE_CODE);
    assert_int_equal(vmmu_access_write(v, VA + 12, &x, 4, VMMU_X86_ACC_WRITE, &f), 0);
    assert_int_equal(r.calls, 2);
    /* A write held across a mark: reported once when it is made. */
    struct vmmu_prepared p;
    assert_int_equal(vmmu_access_prepare(v, VA + 16, 4, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(r.calls, 3);
    assert_int_equal(vmmu_code_mark(vm, DATA(0), 1), 0);
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 4), 0);
    assert_int_equal(r.calls, 4);
    assert_int_equal(get32(&e->t.env, DATA(0) + 16), x);
    assert_int_equal(vmmu_access_set_code_handler(v, NULL, NULL), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
}

/* The same for a locked update that no aligned word holds (a split lock:
 * vmmu translates it again inside its exclusive section) and for one that
 * crosses into the marked page: one handler call per locked write, and
 * the handler's new mark stays for the next write. */
static void a_code_handler_that_marks_its_page_again_is_called_once_per_split_lock(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vm *vm = e->t.env.vm;
    amap(e, VA, DATA(0), PTE_RW);
    amap(e, VA + 4096, DATA(1), PTE_RW);
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct remarker r = {vm, 0};
    assert_int_equal(vmmu_access_set_code_handler(v, remarking_handler, &r), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    assert_int_equal(vmmu_code_mark(vm, DATA(0), 1), 0);
    struct vmmu_x86_fault f;
    uint64_t old = 0;
    /* Bytes 14..17 of the page: across a 16-byte boundary. */
    assert_int_equal(vmmu_access_rmw(v, VA + 14, 4, VMMU_RMW_ADD, 1, &old, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(r.calls, 1);
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(vm, DATA(0), &st), 0);
    assert_true(st & VMMU_PAGE_CODE);
    uint64_t exp = 1, des = 2, obs = 0;
    bool swapped = false;
    assert_int_equal(vmmu_access_cmpxchg(v, VA + 14, 4, &exp, &des, &obs, &swapped, 0, &f), 0);
    assert_true(swapped);
    assert_int_equal(r.calls, 2);
    /* Across the page boundary into the marked page. */
    assert_int_equal(vmmu_code_mark(vm, DATA(1), 1), 0);
    assert_int_equal(vmmu_access_rmw(v, VA + 4094, 4, VMMU_RMW_OR, 0x10000, &old, 0, &f), 0);
    assert_int_equal(r.calls, 4); /* both pages, once each */
    assert_int_equal(get32(&e->t.env, DATA(0) + 14) & 0xffff0000u, 0);
    assert_int_equal(get32(&e->t.env, DATA(1)), 1);
    assert_int_equal(vmmu_access_set_code_handler(v, NULL, NULL), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(store8_crossing_into_not_present_page_leaves_first_page_and_reports_cr2),
        T(a_crossing_store_faults_before_a_watchpoint_on_its_first_page_stops_it),
        T(store8_crossing_into_readonly_page_faults_with_p_set),
        T(load16_crossing_two_pages_reads_both_parts),
        T(store_crossing_writes_both_pages_when_both_allow),
        T(bad_arguments_are_einval),
        T(dirty_log_read_with_many_separate_dirty_pages_sees_every_next_write),
        T(a_prepared_write_held_across_the_dirty_log_read_on_its_thread_is_logged),
        T(a_prepared_write_held_across_a_code_mark_on_its_thread_calls_the_handler),
        T(a_code_handler_that_marks_its_page_again_is_called_once_per_write),
        T(a_code_handler_that_marks_its_page_again_is_called_once_per_split_lock),
        T(probe_of_ram_returns_the_host_pointer),
        T(inline_probe_hits_a_warm_ram_page_as_the_probe_answers),
        T(inline_probe_declines_while_the_latch_records),
        T(inline_probe_declines_watched_and_mmio_pages),
        T(prepare_served_by_tlb_hits_matches_the_slow_path),
        T(probe_of_mmio_returns_null_and_says_why),
        cmocka_unit_test_setup_teardown(a_data_page_beyond_the_vms_width_is_a_hole_for_every_access_form,
                                        setup_narrow, teardown),
        cmocka_unit_test_setup_teardown(a_page_table_beyond_the_vms_width_reads_as_all_ones,
                                        setup_narrow, teardown),
        T(probe_never_crosses_a_page),
        T(nofault_probe_reports_the_fault_and_sets_no_accessed_bit),
        T(misaligned_mmio_load_uses_naturally_aligned_callbacks),
        T(rep_stosb_to_mmio_writes_one_byte_per_element),
        T(prepare_checks_both_pages_before_touching_either),
        T(overlapping_forward_move_by_one_byte_repeats_the_first_byte),
        T(non_overlapping_move_across_pages_copies_like_memmove),
        T(rep_movs_stops_at_the_budget_and_resumes),
        T(rep_movs_fault_leaves_registers_at_the_faulting_element),
        T(backward_rep_stos_fills_downwards),
        T(a_misaligned_user_access_with_am_and_ac_raises_ac),
        T(no_alignment_check_without_am_ac_and_cpl3),
        T(a_misaligned_non_canonical_access_raises_gp_not_ac),
        T(prepared_descriptor_is_stale_after_the_instruction_ends),
        T(prepared_descriptor_is_refused_after_a_safepoint),
        T(prepared_read_only_refuses_writes),
        T(string_move_over_a_watchpoint_stops_before_the_watched_byte),
        T(after_watchpoint_lets_the_access_complete_and_records_it),
        T(rep_stos_over_a_watched_page_records_one_hit_per_page_piece),
        T(watched_page_never_hits_inline_and_is_fast_again_after_removal),
        T(watch_hits_past_the_maximum_are_counted_as_dropped_until_read),
        T(a_watchpoint_over_many_pages_drops_their_warm_entries),
        T(rmw_ops_return_the_old_value),
        T(cmpxchg16_on_aligned_ram_swaps_only_on_match),
        T(cmpxchg_with_one_buffer_for_expected_and_observed_reports_a_failed_compare),
        T(cmpxchg16_misaligned_raises_gp),
        T(cmpxchg_on_readonly_page_faults_as_a_write_even_without_match),
        T(locked_add_crossing_a_page_updates_both_parts),
        T(an_access_across_the_top_of_the_address_space_goes_on_at_0),
        T(writing_a_code_page_calls_the_handler_once_then_is_fast),
        T(dirty_log_reports_each_written_page_once_and_sees_writes_after_the_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
