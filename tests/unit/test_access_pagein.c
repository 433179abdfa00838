/* SPDX-License-Identifier: MIT */
/* An access must not keep a page's host address across anything that may
 * wait while it is made: a page-in of its other page, the code handler, a
 * device model's callback for another piece or element.  The vCPU goes
 * offline while it waits, a grace period can pass, and the host can take
 * the page away meanwhile.  Tests whose pager runs in paranoid mode would
 * crash on a stale host address instead of losing data; the others do
 * not, so a lost write (or a read of a page that left) fails them. */
#include <pthread.h>

#include "core/vm_internal.h"
#include "test_access_env.h"
#include "vmmu/pager.h"

#define PAGED_GPA 0x60000000ull /* vmmu-allocated RAM the pager may manage */
static const uint64_t VA = 0x0000400000200000ull;

struct chain {
    struct vmmu_pager *pager;
    vmmu_pagein_fn pagein; /* the pager's own handler */
    void *pagein_opaque;
    uint64_t victim; /* page out this page during the first page-in */
    int calls, stolen;
};

/* Page-in handler wrapped around the pager's: during the first page-in it
 * pages out @victim, as a host thread could while the vCPU waits. */
static int stealing_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct chain *c = opaque;
    c->calls++;
    if (!c->stolen && gpa != c->victim) {
        c->stolen = 1;
        struct vmmu_gpa_range r = {c->victim, 4096};
        assert_int_equal(vmmu_pager_page_out(c->pager, &r, 1), 0);
        uint32_t st = 0;
        assert_int_equal(vmmu_page_state_get(vm, c->victim, &st), 0);
        assert_true(st & VMMU_PAGE_PAGED_OUT);
    }
    return c->pagein(c->pagein_opaque, vm, gpa);
}

/* Two RAM pages the pager manages at VA (PAGED_GPA, holding @first) and
 * VA + 4096 (0xa5 bytes), so that each page-out writes them to the file;
 * the pager paranoid; the second page out, and its page-in pages the first
 * out (@c), as a host thread could while the page-in waits. */
static void first_leaves_while_second_comes_back(struct acc_env *e, struct chain *c,
                                                 const uint8_t *first)
{
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PAGED_GPA, .size = 64 * 1024};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    amap(e, VA, PAGED_GPA, PTE_RW);
    amap(e, VA + 4096, PAGED_GPA + 4096, PTE_RW);
    uint8_t fill[4096];
    memset(fill, 0xa5, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA, first, 4096, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA + 4096, fill, 4096, 0, NULL), 0);

    struct vmmu_pager_config cfg = {.flags = VMMU_PAGER_PARANOID};
    *c = (struct chain){.victim = PAGED_GPA};
    assert_int_equal(vmmu_pager_create(vm, &cfg, &c->pager), 0);
    struct p2m_hook *h = atomic_load(&vm->p2m.pagein);
    assert_non_null(h);
    c->pagein = h->fn.pagein;
    c->pagein_opaque = h->opaque;
    assert_non_null(c->pagein);
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, stealing_pagein, c), 0);
    struct vmmu_gpa_range second = {PAGED_GPA + 4096, 4096};
    assert_int_equal(vmmu_pager_page_out(c->pager, &second, 1), 0);
}

static void a_page_crossing_write_survives_the_first_page_leaving_during_the_second_page_in(
    void **state)
{
    (void)state;
    struct acc_env e;
    struct chain c;
    uint8_t fill[4096];
    memset(fill, 0x5a, sizeof(fill));
    first_leaves_while_second_comes_back(&e, &c, fill);
    struct vmmu_vm *vm = e.t.env.vm;
    /* The second page is out; the first is resident and translated first. */

    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    const uint8_t data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_write(v, VA + 4096 - 6, data, sizeof(data), VMMU_X86_ACC_WRITE,
                                       &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_vcpu_offline(v), 0);
    /* The first page left during the second's page-in and came back. */
    assert_int_equal(c.stolen, 1);
    assert_true(c.calls >= 2);

    /* Nothing lost: the write landed in both pages, and the rest of each
     * page is what it was. */
    uint8_t back[8192];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back + 4096 - 6, data, sizeof(data));
    for (unsigned i = 0; i < 4096 - 6; i++)
        assert_int_equal(back[i], 0x5a);
    for (unsigned i = 4096 + 6; i < 8192; i++)
        assert_int_equal(back[i], 0xa5);

    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, c.pagein, c.pagein_opaque), 0);
    vmmu_pager_destroy(c.pager);
    acc_env_fini(&e);
}

struct evict {
    struct vmmu_pager *pager;
    int calls;
};

/* A code handler that pages out the page being written, as one that
 * waits for anything may let a host thread do: the vCPU is offline while
 * it waits. */
static void evicting_code_handler(void *opaque, struct vmmu_vcpu *vcpu, uint64_t gpa_page)
{
    (void)vcpu;
    struct evict *ev = opaque;
    ev->calls++;
    struct vmmu_gpa_range r = {gpa_page, 4096};
    assert_int_equal(vmmu_pager_page_out(ev->pager, &r, 1), 0);
}

/* The code handler runs after the access's pages were translated and
 * before it writes; if it blocks, the host may take the page away
 * meanwhile, and the write must then go to the page as it is after the
 * handler, not to the host address found before it. */
static void a_write_survives_a_code_handler_that_pages_its_page_out(void **state)
{
    (void)state;
    struct acc_env e;
    acc_env_init(&e);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PAGED_GPA, .size = 64 * 1024};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    amap(&e, VA, PAGED_GPA, PTE_RW);
    uint8_t fill[4096];
    memset(fill, 0x5a, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA, fill, 4096, 0, NULL), 0);

    struct vmmu_pager_config cfg = {0};
    struct evict ev = {0};
    assert_int_equal(vmmu_pager_create(vm, &cfg, &ev.pager), 0);
    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_access_set_code_handler(v, evicting_code_handler, &ev), 0);
    assert_int_equal(vmmu_vcpu_online(v), 0);

    /* A plain write, then a prepared one, each to a page marked as code. */
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_code_mark(vm, PAGED_GPA, 1), 0);
    assert_int_equal(vmmu_access_write(v, VA + 100, data, sizeof(data), VMMU_X86_ACC_WRITE, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(ev.calls, 1);

    assert_int_equal(vmmu_code_mark(vm, PAGED_GPA, 1), 0);
    struct vmmu_prepared p;
    assert_int_equal(vmmu_access_prepare(v, VA + 200, 8, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(ev.calls, 2);
    assert_int_equal(vmmu_prepared_write(&p, 0, data, sizeof(data)), 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    /* Both writes are in the page, and the rest is what it was. */
    uint8_t back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back + 100, data, sizeof(data));
    assert_memory_equal(back + 200, data, sizeof(data));
    for (unsigned i = 0; i < 4096; i++)
        if (i < 100 || (i >= 108 && i < 200) || i >= 208)
            assert_int_equal(back[i], 0x5a);

    assert_int_equal(vmmu_access_set_code_handler(v, NULL, NULL), 0);
    vmmu_pager_destroy(ev.pager);
    acc_env_fini(&e);
}

/* REP MOVS prepares its source, then its destination: bringing the
 * destination back blocks, which ends what the source's preparation
 * found; the move must still complete, with the source's bytes. */
static void rep_movs_completes_when_its_destination_must_be_paged_in(void **state)
{
    (void)state;
    struct acc_env e;
    struct chain c;
    uint8_t fill[4096];
    for (unsigned i = 0; i < 4096; i++)
        fill[i] = (uint8_t)(i * 7);
    /* While the destination comes back, the source is paged out. */
    first_leaves_while_second_comes_back(&e, &c, fill);
    struct vmmu_vm *vm = e.t.env.vm;

    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    struct vmmu_rep r = {.dst = VA + 4096 + 64, .src = VA + 32, .count = 100, .elem = 4};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(v, &r, 1000, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(r.count, 0);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    uint8_t src[4096], back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, src, sizeof(src), 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA + 4096, back, sizeof(back), 0, NULL), 0);
    assert_int_equal(c.stolen, 1);
    assert_memory_equal(back + 64, src + 32, 400);
    for (unsigned i = 0; i < 4096; i++)
        if (i < 64 || i >= 464)
            assert_int_equal(back[i], 0xa5);
    for (unsigned i = 0; i < 4096; i++)
        assert_int_equal(src[i], (uint8_t)(i * 7));
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, c.pagein, c.pagein_opaque), 0);
    vmmu_pager_destroy(c.pager);
    acc_env_fini(&e);
}

struct evicting_mmio {
    struct vmmu_pager *pager;
    uint64_t victim;
    int reads, writes;
    uint8_t written[8];
};

/* A device register whose read waits, as a device model may: meanwhile
 * the host pages out @victim. */
static int evicting_mmio_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct evicting_mmio *m = opaque;
    *value = 0;
    for (unsigned i = 0; i < size; i++)
        *value |= (uint64_t)(uint8_t)(0x30 + m->reads * 4 + offset % 4 + i) << (8 * i);
    m->reads++;
    struct vmmu_gpa_range r = {m->victim, 4096};
    assert_int_equal(vmmu_pager_page_out(m->pager, &r, 1), 0);
    return 0;
}

static int evicting_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct evicting_mmio *m = opaque;
    for (unsigned i = 0; i < size; i++) { /* the page's last 8 bytes */
        uint64_t at = (offset & 4095) + i;
        if (at >= 4088 && at < 4096)
            m->written[at - 4088] = (uint8_t)(value >> (8 * i));
    }
    m->writes++;
    struct vmmu_gpa_range r = {m->victim, 4096};
    assert_int_equal(vmmu_pager_page_out(m->pager, &r, 1), 0);
    return 0;
}

static const struct vmmu_mmio_ops evicting_mmio_ops = {evicting_mmio_read, evicting_mmio_write};

/* REP MOVS from a device register to RAM goes element by element; when
 * the device's read waits and the destination page leaves meanwhile, each
 * element still lands in the page, none is lost and none read twice. */
static void rep_movs_from_a_waiting_device_keeps_every_element(void **state)
{
    (void)state;
    struct acc_env e;
    acc_env_init(&e);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PAGED_GPA, .size = 64 * 1024};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    struct evicting_mmio m = {.victim = PAGED_GPA};
    const uint64_t dev = 0x70000000ull;
    struct vmmu_region_desc md = {.type = VMMU_MEM_MMIO, .gpa = dev, .size = 4096,
                                  .mmio = &evicting_mmio_ops, .opaque = &m};
    assert_int_equal(vmmu_region_add(vm, &md, NULL), 0);
    amap(&e, VA, PAGED_GPA, PTE_RW);
    amap(&e, VA + 4096, dev, PTE_RW);
    uint8_t fill[4096];
    memset(fill, 0x5a, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA, fill, 4096, 0, NULL), 0);
    struct vmmu_pager_config cfg = {.flags = VMMU_PAGER_PARANOID};
    assert_int_equal(vmmu_pager_create(vm, &cfg, &m.pager), 0);

    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    /* Four one-byte reads of the device, each paging the destination out. */
    struct vmmu_rep r = {.dst = VA + 16, .src = VA + 4096, .count = 4, .elem = 1};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_movs(v, &r, 100, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(r.count, 0);
    assert_int_equal(m.reads, 4);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    uint8_t back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(back[16 + i], 0x30 + i * 4 + i);
    for (unsigned i = 0; i < 4096; i++)
        if (i < 16 || i >= 20)
            assert_int_equal(back[i], 0x5a);
    vmmu_pager_destroy(m.pager);
    acc_env_fini(&e);
}

/* A device page at VA whose callbacks page out the RAM page at VA + 4096
 * (PAGED_GPA, filled with 0x5a; the pager not paranoid, so a write to
 * the page after it left is lost, not a crash). */
static void device_then_ram(struct acc_env *e, struct evicting_mmio *m)
{
    acc_env_init(e);
    struct vmmu_vm *vm = e->t.env.vm;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = PAGED_GPA, .size = 64 * 1024};
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    const uint64_t dev = 0x70000000ull;
    struct vmmu_region_desc md = {.type = VMMU_MEM_MMIO, .gpa = dev, .size = 4096,
                                  .mmio = &evicting_mmio_ops, .opaque = m};
    assert_int_equal(vmmu_region_add(vm, &md, NULL), 0);
    amap(e, VA, dev, PTE_RW);
    amap(e, VA + 4096, PAGED_GPA, PTE_RW);
    uint8_t fill[4096];
    memset(fill, 0x5a, sizeof(fill));
    assert_int_equal(vmmu_gpa_write(vm, PAGED_GPA, fill, 4096, 0, NULL), 0);
    struct vmmu_pager_config cfg = {0};
    assert_int_equal(vmmu_pager_create(vm, &cfg, &m->pager), 0);
}

/* A write that spans a device page and a RAM page: the device's part
 * goes first, and when the device model waits and the RAM page leaves
 * meanwhile, the RAM part still lands in the page. */
static void a_write_from_a_waiting_device_page_into_ram_keeps_its_ram_part(void **state)
{
    (void)state;
    struct acc_env e;
    struct evicting_mmio m = {.victim = PAGED_GPA};
    device_then_ram(&e, &m);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    const uint8_t data[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_write(v, VA + 4088, data, 16, VMMU_X86_ACC_WRITE, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_true(m.writes >= 1);
    assert_memory_equal(m.written, data, 8);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    uint8_t back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back, data + 8, 8);
    for (unsigned i = 8; i < 4096; i++)
        assert_int_equal(back[i], 0x5a);
    vmmu_pager_destroy(m.pager);
    acc_env_fini(&e);
}

/* A locked XCHG that spans a device page and a RAM page is a read then a
 * write of each part (not atomic on a device); the device's read waits
 * and the RAM page leaves meanwhile: the RAM part is still read from and
 * written to the page. */
static void a_locked_update_across_a_waiting_device_keeps_its_ram_part(void **state)
{
    (void)state;
    struct acc_env e;
    struct evicting_mmio m = {.victim = PAGED_GPA};
    device_then_ram(&e, &m);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    uint64_t old = 0;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rmw(v, VA + 4092, 8, VMMU_RMW_XCHG, 0x1122334455667788ull, &old,
                                     0, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_true(m.reads >= 1);
    assert_int_equal(old >> 32, 0x5a5a5a5au); /* the RAM part read after the wait */
    assert_memory_equal(m.written + 4, "\x88\x77\x66\x55", 4);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    uint8_t back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back, "\x44\x33\x22\x11", 4);
    for (unsigned i = 4; i < 4096; i++)
        assert_int_equal(back[i], 0x5a);
    vmmu_pager_destroy(m.pager);
    acc_env_fini(&e);
}

/* An interpreter prepares an instruction's destination, then reads its
 * source from a device that waits while the host pages the destination
 * out: the prepared write is still valid (no safe point came) and lands
 * in the page; after the instruction ends it is refused. */
static void a_prepared_write_held_across_a_waiting_device_read_lands(void **state)
{
    (void)state;
    struct acc_env e;
    struct evicting_mmio m = {.victim = PAGED_GPA};
    device_then_ram(&e, &m);
    struct vmmu_vm *vm = e.t.env.vm;
    struct vmmu_vcpu *v = acc_vcpu(&e);
    assert_int_equal(vmmu_vcpu_online(v), 0);
    assert_int_equal(vmmu_insn_begin(v), 0);
    struct vmmu_prepared dst;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_prepare(v, VA + 4096 + 32, 4, VMMU_X86_ACC_WRITE, &dst, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    uint32_t x = 0;
    assert_int_equal(vmmu_access_read(v, VA + 8, &x, 4, 0, &f), 0);
    assert_int_equal(m.reads, 1);
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(vm, PAGED_GPA, &st), 0);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    assert_int_equal(vmmu_prepared_write(&dst, 0, &x, 4), 0);
    assert_int_equal(vmmu_insn_end(v, 0), 0);
    assert_int_equal(vmmu_prepared_write(&dst, 0, &x, 4), VMMU_EINVAL);
    assert_int_equal(vmmu_vcpu_offline(v), 0);

    uint8_t back[4096];
    assert_int_equal(vmmu_gpa_read(vm, PAGED_GPA, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back + 32, &x, 4);
    for (unsigned i = 0; i < 4096; i++)
        if (i < 32 || i >= 36)
            assert_int_equal(back[i], 0x5a);
    vmmu_pager_destroy(m.pager);
    acc_env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            a_page_crossing_write_survives_the_first_page_leaving_during_the_second_page_in),
        cmocka_unit_test(a_write_survives_a_code_handler_that_pages_its_page_out),
        cmocka_unit_test(rep_movs_completes_when_its_destination_must_be_paged_in),
        cmocka_unit_test(rep_movs_from_a_waiting_device_keeps_every_element),
        cmocka_unit_test(a_write_from_a_waiting_device_page_into_ram_keeps_its_ram_part),
        cmocka_unit_test(a_locked_update_across_a_waiting_device_keeps_its_ram_part),
        cmocka_unit_test(a_prepared_write_held_across_a_waiting_device_read_lands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
