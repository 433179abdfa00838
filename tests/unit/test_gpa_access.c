/* Guest-physical reads and writes: splitting at pages and regions, MMIO in
 * natural sizes, ROM policies, holes, device-model ranges, paged-out pages,
 * dirty logging, and the rule that a bad byte anywhere stops the access
 * before it has any effect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/vm_internal.h"
#include "vmmu/vmmu.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* An MMIO device that records each call and serves a byte pattern:
 * byte at offset o reads as (o & 0xff). */
struct call {
    int write;
    uint64_t offset;
    unsigned size;
    uint64_t value;
};
struct rec_dev {
    struct call calls[64];
    unsigned n;
    int fail_at_call; /* 1-based; 0 = never fail */
};

static int rec_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct rec_dev *d = opaque;
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= ((offset + i) & 0xff) << (8 * i);
    if (d->n < 64)
        d->calls[d->n] = (struct call){0, offset, size, v};
    if (++d->n == (unsigned)d->fail_at_call)
        return -5;
    *value = v;
    return 0;
}

static int rec_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct rec_dev *d = opaque;
    if (d->n < 64)
        d->calls[d->n] = (struct call){1, offset, size, value};
    return ++d->n == (unsigned)d->fail_at_call ? -1 : 0;
}

static const struct vmmu_mmio_ops rec_ops = {.read = rec_read, .write = rec_write};

/* Layout used by most tests:
 *   RAM   [0, 16 KiB)                    id ram
 *   MMIO  [16 KiB, 20 KiB)               rec_dev
 *   hole  [20 KiB, 24 KiB)
 *   ROM   [24 KiB, 32 KiB)  ignores writes
 *   ROM   [32 KiB, 36 KiB)  reports writes
 *   DEVICE[36 KiB, 40 KiB)
 *   RAM   [40 KiB, 48 KiB)  dirty-logged
 */
struct fixture {
    struct vmmu_vm *vm;
    struct rec_dev dev;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || vmmu_vm_create(NULL, &f->vm))
        return -1;
    const struct vmmu_region_desc regions[] = {
        {.type = VMMU_MEM_RAM, .gpa = 0, .size = 16 * KiB},
        {.type = VMMU_MEM_MMIO, .gpa = 16 * KiB, .size = 4 * KiB, .mmio = &rec_ops,
         .opaque = &f->dev},
        {.type = VMMU_MEM_ROM, .gpa = 24 * KiB, .size = 8 * KiB},
        {.type = VMMU_MEM_ROM, .gpa = 32 * KiB, .size = 4 * KiB,
         .flags = VMMU_REGION_ROM_REPORT_WRITES},
        {.type = VMMU_MEM_DEVICE, .gpa = 36 * KiB, .size = 4 * KiB, .opaque = &f->dev.n},
        {.type = VMMU_MEM_RAM, .gpa = 40 * KiB, .size = 8 * KiB, .flags = VMMU_REGION_LOG_DIRTY},
    };
    for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
        if (vmmu_region_add(f->vm, &regions[i], NULL))
            return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    vmmu_vm_destroy(f->vm);
    free(f);
    return 0;
}

static void fill_pattern(uint8_t *buf, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(seed + i * 7);
}

/* ---- RAM ---------------------------------------------------------------- */

static void ram_round_trip_across_pages(void **state)
{
    struct fixture *f = *state;
    uint8_t out[10000], in[10000];
    fill_pattern(out, sizeof(out), 3);
    assert_int_equal(vmmu_gpa_write(f->vm, 100, out, sizeof(out), 0, NULL), 0);
    memset(in, 0, sizeof(in));
    assert_int_equal(vmmu_gpa_read(f->vm, 100, in, sizeof(in), 0, NULL), 0);
    assert_memory_equal(in, out, sizeof(out));
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(f->vm, 0, &e), 0);
    assert_memory_equal(e.hva + 100, out, sizeof(out)); /* the bytes live in host memory */
}

static void zero_length_access_succeeds_without_a_buffer(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vmmu_gpa_read(f->vm, 20 * KiB, NULL, 0, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(f->vm, 1ull << 60, NULL, 0, 0, NULL), 0);
    assert_int_equal(f->dev.n, 0);
}

static void bad_arguments_are_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t b[8];
    uint64_t failed = 7;
    assert_int_equal(vmmu_gpa_read(NULL, 0, b, 1, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_gpa_read(f->vm, 0, NULL, 1, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_gpa_write(f->vm, 0, b, 1, 1u << 9, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_gpa_read(f->vm, 1ull << 52, b, 1, 0, &failed), VMMU_ERANGE);
    assert_int_equal(failed, 1ull << 52);
    assert_int_equal(vmmu_gpa_read(f->vm, (1ull << 52) - 4, b, 8, 0, &failed), VMMU_ERANGE);
    assert_int_equal(failed, 1ull << 52);
    assert_int_equal(vmmu_gpa_read(f->vm, UINT64_MAX - 2, b, 8, 0, NULL), VMMU_ERANGE);
    assert_int_equal(vmmu_gpa_read(f->vm, 0, b, SIZE_MAX, 0, NULL), VMMU_ERANGE);
}

/* ---- MMIO --------------------------------------------------------------- */

static void mmio_is_split_into_naturally_aligned_pieces(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[13];
    /* offset 3, 13 bytes: 1 @3, 4 @4, 8 @8 */
    assert_int_equal(vmmu_gpa_read(f->vm, 16 * KiB + 3, buf, 13, 0, NULL), 0);
    assert_int_equal(f->dev.n, 3);
    assert_int_equal(f->dev.calls[0].offset, 3);
    assert_int_equal(f->dev.calls[0].size, 1);
    assert_int_equal(f->dev.calls[1].offset, 4);
    assert_int_equal(f->dev.calls[1].size, 4);
    assert_int_equal(f->dev.calls[2].offset, 8);
    assert_int_equal(f->dev.calls[2].size, 8);
    for (unsigned i = 0; i < 13; i++)
        assert_int_equal(buf[i], 3 + i);
}

static void mmio_write_passes_little_endian_values(void **state)
{
    struct fixture *f = *state;
    const uint8_t v[6] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66};
    assert_int_equal(vmmu_gpa_write(f->vm, 16 * KiB + 2, v, 6, 0, NULL), 0);
    /* 2 bytes @2, 4 bytes @4 */
    assert_int_equal(f->dev.n, 2);
    assert_true(f->dev.calls[0].write);
    assert_int_equal(f->dev.calls[0].size, 2);
    assert_int_equal(f->dev.calls[0].value, 0x2211);
    assert_int_equal(f->dev.calls[1].offset, 4);
    assert_int_equal(f->dev.calls[1].value, 0x66554433);
}

static void ram_to_mmio_access_spans_both(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[8];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(vmmu_gpa_write(f->vm, 16 * KiB - 4, "\x01\x02\x03\x04", 4, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(f->vm, 16 * KiB - 4, buf, 8, 0, NULL), 0);
    assert_memory_equal(buf, "\x01\x02\x03\x04\x00\x01\x02\x03", 8);
    assert_int_equal(f->dev.n, 1);
}

static void failing_mmio_callback_reports_where_it_failed(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[16];
    uint64_t failed = 0;
    f->dev.fail_at_call = 2;
    memset(buf, 0xcc, sizeof(buf));
    assert_int_equal(vmmu_gpa_read(f->vm, 16 * KiB, buf, 16, 0, &failed), VMMU_EMMIO);
    assert_int_equal(failed, 16 * KiB + 8);
    /* The piece before the failure has been read into the buffer. */
    assert_memory_equal(buf, "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
    f->dev.n = 0;
    assert_int_equal(vmmu_gpa_write(f->vm, 16 * KiB, buf, 16, 0, &failed), VMMU_EMMIO);
    assert_int_equal(failed, 16 * KiB + 8);
}

static void mmio_region_without_callbacks_reads_ones_and_drops_writes(void **state)
{
    struct fixture *f = *state;
    static const struct vmmu_mmio_ops none = {0};
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 1 * MiB, .size = 4096,
                                 .mmio = &none};
    assert_int_equal(vmmu_region_add(f->vm, &d, NULL), 0);
    uint32_t v = 0;
    assert_int_equal(vmmu_gpa_read(f->vm, 1 * MiB, &v, 4, 0, NULL), 0);
    assert_int_equal(v, 0xffffffff);
    assert_int_equal(vmmu_gpa_write(f->vm, 1 * MiB, &v, 4, 0, NULL), 0);
}

/* ---- ROM ---------------------------------------------------------------- */

static void rom_reads_its_memory_and_ignores_guest_writes(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vmmu_gpa_write(f->vm, 24 * KiB, "fw", 2, VMMU_GPA_ROM_WRITE, NULL), 0);
    assert_int_equal(vmmu_gpa_write(f->vm, 24 * KiB, "XX", 2, 0, NULL), 0);
    char b[2];
    assert_int_equal(vmmu_gpa_read(f->vm, 24 * KiB, b, 2, 0, NULL), 0);
    assert_memory_equal(b, "fw", 2);
}

static void rom_that_reports_writes_fails_the_whole_write_first(void **state)
{
    struct fixture *f = *state;
    /* RAM [.., 24K) is not adjacent to the reporting ROM; use the ignoring
     * ROM followed by the reporting one: the ignoring part must not be
     * loaded either, and a RAM write before it must not happen. */
    uint8_t buf[8192];
    memset(buf, 0x77, sizeof(buf));
    uint64_t failed = 0;
    assert_int_equal(vmmu_gpa_write(f->vm, 28 * KiB, buf, 8 * KiB, VMMU_GPA_ROM_WRITE, NULL), 0);
    memset(buf, 0x22, sizeof(buf));
    assert_int_equal(vmmu_gpa_write(f->vm, 30 * KiB, buf, 4 * KiB, 0, &failed), VMMU_EROM);
    assert_int_equal(failed, 32 * KiB);
    uint8_t b;
    assert_int_equal(vmmu_gpa_read(f->vm, 32 * KiB, &b, 1, 0, NULL), 0);
    assert_int_equal(b, 0x77);
    assert_int_equal(vmmu_gpa_write(f->vm, 32 * KiB, buf, 1, VMMU_GPA_ROM_WRITE, NULL), 0);
    assert_int_equal(vmmu_gpa_read(f->vm, 32 * KiB, &b, 1, 0, NULL), 0);
    assert_int_equal(b, 0x22);
}

/* ---- holes, device-model ranges, nothing happens before an error ----------- */

static void a_hole_fails_the_access_before_any_byte_is_written(void **state)
{
    struct fixture *f = *state;
    uint8_t zero[64] = {0}, ones[64], b[64];
    memset(ones, 0xee, sizeof(ones));
    assert_int_equal(vmmu_gpa_write(f->vm, 16 * KiB - 32, zero, 32, 0, NULL), 0);
    uint64_t failed = 0;
    /* RAM (32 bytes) + MMIO (4 KiB) + hole */
    uint8_t big[4200];
    memset(big, 0xee, sizeof(big));
    assert_int_equal(vmmu_gpa_write(f->vm, 16 * KiB - 32, big, sizeof(big), 0, &failed),
                     VMMU_EHOLE);
    assert_int_equal(failed, 20 * KiB);
    assert_int_equal(f->dev.n, 0); /* no MMIO write happened */
    assert_int_equal(vmmu_gpa_read(f->vm, 16 * KiB - 32, b, 32, 0, NULL), 0);
    assert_memory_equal(b, zero, 32); /* RAM unchanged */
    (void)ones;
}

static void a_hole_fails_a_read_before_any_mmio_callback_runs(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[4100];
    uint64_t failed = 0;
    assert_int_equal(vmmu_gpa_read(f->vm, 16 * KiB, buf, sizeof(buf), 0, &failed), VMMU_EHOLE);
    assert_int_equal(failed, 20 * KiB);
    assert_int_equal(f->dev.n, 0);
}

static void holes_read_as_all_ones_when_asked_and_drop_writes(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[8];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(vmmu_gpa_read(f->vm, 24 * KiB - 4, buf, 8, VMMU_GPA_UNBACKED_ONES, NULL), 0);
    assert_memory_equal(buf, "\xff\xff\xff\xff\x00\x00\x00\x00", 8); /* hole then zeroed ROM */
    assert_int_equal(vmmu_gpa_write(f->vm, 20 * KiB, buf, 8, VMMU_GPA_UNBACKED_ONES, NULL), 0);
    /* A huge hole is crossed in one step per empty slot, not page by page. */
    uint64_t far = 1ull << 51;
    assert_int_equal(vmmu_gpa_read(f->vm, far, buf, 8, VMMU_GPA_UNBACKED_ONES, NULL), 0);
    assert_memory_equal(buf, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
}

static void device_model_ranges_need_a_device_model(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[16];
    uint64_t failed = 0;
    assert_int_equal(vmmu_gpa_read(f->vm, 36 * KiB, buf, 4, 0, &failed), VMMU_EDEVICE);
    assert_int_equal(failed, 36 * KiB);
    /* device then RAM: the RAM half is not written */
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(vmmu_gpa_write(f->vm, 40 * KiB - 8, buf, 16, 0, &failed), VMMU_EDEVICE);
    assert_int_equal(failed, 40 * KiB - 8);
    uint8_t ram[8];
    assert_int_equal(vmmu_gpa_read(f->vm, 40 * KiB, ram, 8, 0, NULL), 0);
    assert_memory_equal(ram, "\0\0\0\0\0\0\0\0", 8);
    /* even with the unbacked-ones flag: a device range is not a hole */
    assert_int_equal(vmmu_gpa_read(f->vm, 36 * KiB, buf, 4, VMMU_GPA_UNBACKED_ONES, NULL),
                     VMMU_EDEVICE);
}

/* ---- per-page state: dirty log, code bit, paging out ------------------------- */

static void dirty_logging_marks_exactly_the_written_pages(void **state)
{
    struct fixture *f = *state;
    uint32_t st;
    assert_int_equal(vmmu_gpa_write(f->vm, 44 * KiB - 1, "ab", 2, 0, NULL), 0);
    assert_int_equal(vmmu_page_state_get(f->vm, 40 * KiB, &st), 0);
    assert_true(st & VMMU_PAGE_DIRTY);
    assert_int_equal(vmmu_page_state_get(f->vm, 44 * KiB, &st), 0);
    assert_true(st & VMMU_PAGE_DIRTY);
    assert_int_equal(vmmu_page_state_update(f->vm, 40 * KiB, 2, 0, VMMU_PAGE_DIRTY), 0);
    assert_int_equal(vmmu_page_state_get(f->vm, 44 * KiB, &st), 0);
    assert_false(st & VMMU_PAGE_DIRTY);
    /* Regions without the flag never get dirty bits from writes. */
    assert_int_equal(vmmu_gpa_write(f->vm, 0, "x", 1, 0, NULL), 0);
    assert_int_equal(vmmu_page_state_get(f->vm, 0, &st), 0);
    assert_int_equal(st, 0);
    /* Reads never dirty a page. */
    char b;
    assert_int_equal(vmmu_gpa_read(f->vm, 40 * KiB, &b, 1, 0, NULL), 0);
    assert_int_equal(vmmu_page_state_get(f->vm, 40 * KiB, &st), 0);
    assert_int_equal(st, 0);
}

static void page_state_update_checks_every_page_before_changing_any(void **state)
{
    struct fixture *f = *state;
    uint32_t st;
    assert_int_equal(vmmu_page_state_update(f->vm, 8 * KiB, 3, VMMU_PAGE_CODE, 0), VMMU_EINVAL);
    /* pages 2, 3 are RAM, page 4 is MMIO: nothing changed */
    assert_int_equal(vmmu_page_state_get(f->vm, 8 * KiB, &st), 0);
    assert_int_equal(st, 0);
    assert_int_equal(vmmu_page_state_update(f->vm, 0, 4, VMMU_PAGE_CODE, 0), 0);
    assert_int_equal(vmmu_page_state_get(f->vm, 12 * KiB, &st), 0);
    assert_int_equal(st, VMMU_PAGE_CODE);
    assert_int_equal(vmmu_page_state_update(f->vm, 0, 1, VMMU_PAGE_PAGED_OUT, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_update(f->vm, 0, 0, VMMU_PAGE_CODE, 0), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_update(f->vm, 20 * KiB, 1, VMMU_PAGE_CODE, 0), VMMU_EHOLE);
    assert_int_equal(vmmu_page_state_update(f->vm, (1ull << 52) - 4096, 2, VMMU_PAGE_CODE, 0),
                     VMMU_ERANGE);
    assert_int_equal(vmmu_page_state_get(f->vm, 16 * KiB, &st), VMMU_EINVAL); /* MMIO */
    assert_int_equal(vmmu_page_state_get(f->vm, 20 * KiB, &st), VMMU_EHOLE);
}

struct pager {
    int calls;
    int result;
    int really_page_in;
};

static int page_in(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct pager *p = opaque;
    p->calls++;
    if (p->really_page_in)
        vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
    return p->result;
}

static void paged_out_pages_need_the_pager(void **state)
{
    struct fixture *f = *state;
    struct vmmu_vm *vm = f->vm;
    assert_int_equal(vmmu_gpa_write(vm, 4 * KiB, "data", 5, 0, NULL), 0);
    assert_int_equal(vmmu__page_state_update(vm, 4 * KiB, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, 4 * KiB, &e), 0);
    assert_null(e.hva);
    assert_true(e.page_state & VMMU_PAGE_PAGED_OUT);

    char b[5];
    uint64_t failed = 0;
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB - 2, b, 5, 0, &failed), VMMU_EPAGEDOUT);
    assert_int_equal(failed, 4 * KiB);

    struct pager liar = {.result = 0, .really_page_in = 0};
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, page_in, &liar), 0);
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB, b, 5, 0, NULL), VMMU_EPAGEDOUT);
    /* A page still out after a successful page-in may have been taken
     * again by a concurrent page-out: asked again, a bounded number of times. */
    assert_int_equal(liar.calls, 16);

    struct pager failing = {.result = VMMU_ENOMEM};
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, page_in, &failing), 0);
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB, b, 5, 0, NULL), VMMU_ENOMEM);

    struct pager good = {.result = 0, .really_page_in = 1};
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, page_in, &good), 0);
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB, b, 5, 0, NULL), 0);
    assert_string_equal(b, "data");
    assert_int_equal(good.calls, 1);
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB, b, 5, 0, NULL), 0);
    assert_int_equal(good.calls, 1); /* resident now */
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, NULL, NULL), 0);
}

struct pagein_log {
    uint64_t gpas[8];
    unsigned n;
};

static int page_in_and_log(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct pagein_log *log = opaque;
    if (log->n < 8)
        log->gpas[log->n] = gpa;
    log->n++;
    return vmmu__page_state_update(vm, gpa, 1, 0, VMMU_PAGE_PAGED_OUT, VMMU_PAGE_PAGED_OUT);
}

static void the_pager_is_asked_for_each_paged_out_page_by_its_aligned_address(void **state)
{
    struct fixture *f = *state;
    struct vmmu_vm *vm = f->vm;
    uint8_t out[3 * 4096], in[sizeof(out)]; /* pages 0 to 3, RAM throughout */
    fill_pattern(out, sizeof(out), 9);
    assert_int_equal(vmmu_gpa_write(vm, 4 * KiB - 3, out, sizeof(out), 0, NULL), 0);
    /* Pages 1 and 2 of the RAM at 0 go out; 0 and 3 stay. */
    assert_int_equal(vmmu__page_state_update(vm, 4 * KiB, 2, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct pagein_log log = {0};
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, page_in_and_log, &log), 0);
    uint64_t failed = 0x1234;
    assert_int_equal(vmmu_gpa_read(vm, 4 * KiB - 3, in, sizeof(in), 0, &failed), 0);
    assert_memory_equal(in, out, sizeof(out));
    assert_int_equal(failed, 0x1234); /* left alone on success */
    assert_int_equal(log.n, 2);
    assert_int_equal(log.gpas[0], 4 * KiB);
    assert_int_equal(log.gpas[1], 8 * KiB);
    assert_int_equal(vmmu_p2m_set_pagein_handler(vm, NULL, NULL), 0);
}

/* ---- Device handler ----------------------------------------------------- */

struct fake_dm {
    int calls;
    int answer_after; /* calls that return VMMU_EPENDING first */
    struct vmmu_device_req last;
};

static int fake_dm_serve(void *opaque, struct vmmu_device_req *req)
{
    struct fake_dm *dm = opaque;
    dm->last = *req;
    if (dm->calls++ < dm->answer_after)
        return VMMU_EPENDING;
    if (!req->write)
        req->data = 0xab00 + req->offset;
    return 0;
}

static void device_pages_are_served_by_the_registered_handler(void **state)
{
    struct fixture *f = *state;
    struct vmmu_device_req req = {.gpa = 36 * KiB + 8, .size = 4, .vcpu_id = 3};
    /* No handler yet: the access needs a device model. */
    assert_int_equal(vmmu_p2m_device_access(f->vm, &req), VMMU_EDEVICE);

    struct fake_dm dm = {.answer_after = 1};
    assert_int_equal(vmmu_p2m_set_device_handler(f->vm, fake_dm_serve, &dm), 0);
    /* First call: pending (the retry flow); the re-executed access completes. */
    assert_int_equal(vmmu_p2m_device_access(f->vm, &req), VMMU_EPENDING);
    assert_int_equal(vmmu_p2m_device_access(f->vm, &req), 0);
    assert_int_equal(req.data, 0xab08);
    assert_int_equal(dm.last.offset, 8);
    assert_int_equal(dm.last.vcpu_id, 3);
    assert_int_equal(dm.last.write, 0);
    uint32_t id = 0;
    assert_int_equal(vmmu_region_find(f->vm, 36 * KiB, &id), 0);
    assert_int_equal(dm.last.region_id, id);
    assert_ptr_equal(dm.last.region_opaque, &f->dev.n); /* the region's own tag */

    /* Wrong arguments and non-device pages are refused before the handler runs. */
    int calls = dm.calls;
    struct vmmu_device_req bad = {.gpa = 36 * KiB + 2, .size = 4};
    assert_int_equal(vmmu_p2m_device_access(f->vm, &bad), VMMU_EINVAL); /* misaligned */
    bad = (struct vmmu_device_req){.gpa = 36 * KiB, .size = 3};
    assert_int_equal(vmmu_p2m_device_access(f->vm, &bad), VMMU_EINVAL);
    bad = (struct vmmu_device_req){.gpa = 0, .size = 4};
    assert_int_equal(vmmu_p2m_device_access(f->vm, &bad), VMMU_EINVAL); /* RAM */
    bad = (struct vmmu_device_req){.gpa = 1ull << 52, .size = 4};
    assert_int_equal(vmmu_p2m_device_access(f->vm, &bad), VMMU_ERANGE);
    assert_int_equal(vmmu_p2m_device_access(NULL, &req), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_device_access(f->vm, NULL), VMMU_EINVAL);
    assert_int_equal(dm.calls, calls);
    assert_int_equal(vmmu_p2m_set_device_handler(NULL, fake_dm_serve, &dm), VMMU_EINVAL);

    /* Removing the handler brings back VMMU_EDEVICE. */
    assert_int_equal(vmmu_p2m_set_device_handler(f->vm, NULL, NULL), 0);
    assert_int_equal(vmmu_p2m_device_access(f->vm, &req), VMMU_EDEVICE);
}

/* An MMIO callback that removes the region after its own, in the middle
 * of a read or write on a host thread: the access does every byte before
 * that region, then ends there with VMMU_EHOLE, failed_gpa naming the
 * first byte not done (it used to skip the rest of the MMIO page and name
 * the removed region's first byte, as if the skipped bytes were done). */
struct remover {
    struct vmmu_vm *vm;
    uint32_t victim;
    unsigned calls;
};

static int remover_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)offset;
    (void)size;
    struct remover *rm = opaque;
    if (rm->calls++ == 0)
        assert_int_equal(vmmu_region_remove(rm->vm, rm->victim), 0);
    *value = 0x4242424242424242ull;
    return 0;
}

static int remover_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)offset;
    (void)size;
    (void)value;
    struct remover *rm = opaque;
    if (rm->calls++ == 0)
        assert_int_equal(vmmu_region_remove(rm->vm, rm->victim), 0);
    return 0;
}

static const struct vmmu_mmio_ops remover_ops = {remover_read, remover_write};

/* A vm with the remover's MMIO page at 0x10000 (its id in rm->victim
 * unless @victim_next: the next region's will be). */
static void remover_vm(struct remover *rm, bool victim_next)
{
    assert_int_equal(vmmu_vm_create(NULL, &rm->vm), 0);
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = 0x10000, .size = 0x1000,
                                 .mmio = &remover_ops, .opaque = rm};
    assert_int_equal(vmmu_region_add(rm->vm, &m, victim_next ? NULL : &rm->victim), 0);
}

/* A read or a write of @len bytes of @buf at @gpa. */
static int remover_access(struct remover *rm, bool write, uint64_t gpa, uint8_t *buf, size_t len,
                          uint64_t *failed)
{
    return write ? vmmu_gpa_write(rm->vm, gpa, buf, len, 0, failed)
                 : vmmu_gpa_read(rm->vm, gpa, buf, len, 0, failed);
}

static void an_mmio_callback_that_removes_the_next_region_ends_the_access_there(void **state)
{
    (void)state;
    for (int write = 0; write < 2; write++) {
        struct remover rm = {0};
        remover_vm(&rm, true);
        struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0x11000, .size = 0x1000};
        assert_int_equal(vmmu_region_add(rm.vm, &r, &rm.victim), 0);
        static uint8_t buf[0x2000];
        memset(buf, 0x11, sizeof(buf));
        uint64_t failed = 0;
        int rc = remover_access(&rm, write, 0x10000, buf, sizeof(buf), &failed);
        assert_int_equal(rc, VMMU_EHOLE);
        assert_int_equal(failed, 0x11000);
        assert_int_equal(rm.calls, 0x1000 / 8); /* every piece of the MMIO page */
        for (unsigned i = 0; !write && i < sizeof(buf); i++)
            assert_int_equal(buf[i], i < 0x1000 ? 0x42 : 0x11);
        vmmu_vm_destroy(rm.vm);
    }
}

/* A one-page access whose first piece's callback removes its own region:
 * the pieces after it find a hole (the region is gone, and was freed once
 * the callback's grace period passed). */
static void an_mmio_callback_that_removes_its_own_region_ends_a_one_page_access_there(void **state)
{
    (void)state;
    for (int write = 0; write < 2; write++) {
        struct remover rm = {0};
        remover_vm(&rm, false);
        uint8_t buf[8];
        memset(buf, 0x11, sizeof(buf));
        uint64_t failed = 0;
        /* At offset 2: pieces of 2, 4 and 2 bytes. */
        int rc = remover_access(&rm, write, 0x10002, buf, sizeof(buf), &failed);
        assert_int_equal(rc, VMMU_EHOLE);
        assert_int_equal(failed, 0x10004);
        assert_int_equal(rm.calls, 1);
        for (unsigned i = 0; !write && i < sizeof(buf); i++)
            assert_int_equal(buf[i], i < 2 ? 0x42 : 0x11);
        vmmu_vm_destroy(rm.vm);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(ram_round_trip_across_pages),
        T(zero_length_access_succeeds_without_a_buffer),
        T(bad_arguments_are_refused),
        T(mmio_is_split_into_naturally_aligned_pieces),
        T(mmio_write_passes_little_endian_values),
        T(ram_to_mmio_access_spans_both),
        T(failing_mmio_callback_reports_where_it_failed),
        T(mmio_region_without_callbacks_reads_ones_and_drops_writes),
        T(rom_reads_its_memory_and_ignores_guest_writes),
        T(rom_that_reports_writes_fails_the_whole_write_first),
        T(a_hole_fails_the_access_before_any_byte_is_written),
        T(a_hole_fails_a_read_before_any_mmio_callback_runs),
        T(holes_read_as_all_ones_when_asked_and_drop_writes),
        T(device_model_ranges_need_a_device_model),
        T(dirty_logging_marks_exactly_the_written_pages),
        T(page_state_update_checks_every_page_before_changing_any),
        T(paged_out_pages_need_the_pager),
        T(the_pager_is_asked_for_each_paged_out_page_by_its_aligned_address),
        T(device_pages_are_served_by_the_registered_handler),
        cmocka_unit_test(an_mmio_callback_that_removes_the_next_region_ends_the_access_there),
        cmocka_unit_test(an_mmio_callback_that_removes_its_own_region_ends_a_one_page_access_there),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
