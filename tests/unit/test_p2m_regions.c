/* The guest-physical map: adding, removing, finding and describing regions,
 * lookups over many layouts, and every way a region can be refused. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "access/access_internal.h"
#include "core/vm_internal.h"
#include "p2m/p2m_internal.h"
#include "vmmu/dmproto.h"
#include "vmmu/vmmu.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

static int setup_vm(void **state)
{
    struct vmmu_vm *vm;
    if (vmmu_vm_create(NULL, &vm))
        return -1;
    *state = vm;
    return 0;
}

static int teardown_vm(void **state)
{
    vmmu__pagemap_pread = pread; /* a test that failed with it replaced */
    vmmu_vm_destroy(*state);
    return 0;
}

static int mmio_read_zero(void *o, uint64_t off, unsigned size, uint64_t *v)
{
    (void)o, (void)off, (void)size;
    *v = 0;
    return 0;
}
static const struct vmmu_mmio_ops zero_ops = {.read = mmio_read_zero};

static struct vmmu_region_desc ram(uint64_t gpa, uint64_t size)
{
    return (struct vmmu_region_desc){.type = VMMU_MEM_RAM, .gpa = gpa, .size = size};
}

static enum vmmu_mem_type type_at(struct vmmu_vm *vm, uint64_t gpa)
{
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, gpa, &e), 0);
    return e.type;
}

/* ---- happy paths -------------------------------------------------------- */

static void added_ram_is_found_at_both_ends_and_not_beyond(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc d = ram(0x10000, 0x5000);
    uint32_t id = 0;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    assert_int_not_equal(id, 0);

    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, 0x10000, &e), 0);
    assert_int_equal(e.type, VMMU_MEM_RAM);
    assert_int_equal(e.region_id, id);
    assert_int_equal(e.region_gpa, 0x10000);
    assert_int_equal(e.region_size, 0x5000);
    assert_non_null(e.hva);
    uint8_t *base = e.hva;
    assert_int_equal(vmmu_p2m_lookup(vm, 0x14fff, &e), 0);
    assert_ptr_equal(e.hva, base + 0x4fff); /* host memory is contiguous */
    assert_int_equal(type_at(vm, 0xffff), VMMU_MEM_HOLE);
    assert_int_equal(type_at(vm, 0x15000), VMMU_MEM_HOLE);
}

static void lookup_of_a_hole_reports_hole_with_no_host_pointer(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_p2m_entry e;
    memset(&e, 0xaa, sizeof(e));
    assert_int_equal(vmmu_p2m_lookup(vm, 123 * GiB, &e), 0);
    assert_int_equal(e.type, VMMU_MEM_HOLE);
    assert_int_equal(e.region_id, 0);
    assert_null(e.hva);
    assert_int_equal(e.region_size, 0);
}

static void each_region_type_is_reported_by_lookup(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc rom = {.type = VMMU_MEM_ROM, .gpa = 1 * MiB, .size = 64 * KiB};
    struct vmmu_region_desc mmio = {.type = VMMU_MEM_MMIO, .gpa = 2 * MiB, .size = 4 * KiB,
                                    .mmio = &zero_ops};
    struct vmmu_region_desc dev = {.type = VMMU_MEM_DEVICE, .gpa = 3 * MiB, .size = 4 * KiB};
    struct vmmu_region_desc r = ram(0, 64 * KiB);
    assert_int_equal(vmmu_region_add(vm, &rom, NULL), 0);
    assert_int_equal(vmmu_region_add(vm, &mmio, NULL), 0);
    assert_int_equal(vmmu_region_add(vm, &dev, NULL), 0);
    assert_int_equal(vmmu_region_add(vm, &r, NULL), 0);
    assert_int_equal(type_at(vm, 0), VMMU_MEM_RAM);
    assert_int_equal(type_at(vm, 1 * MiB + 5), VMMU_MEM_ROM);
    assert_int_equal(type_at(vm, 2 * MiB + 4095), VMMU_MEM_MMIO);
    assert_int_equal(type_at(vm, 3 * MiB), VMMU_MEM_DEVICE);
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, 2 * MiB, &e), 0);
    assert_null(e.hva); /* MMIO has no host memory */
    assert_string_equal(vmmu_mem_type_name(VMMU_MEM_MMIO), "mmio");
    assert_string_equal(vmmu_mem_type_name(VMMU_MEM_HOLE), "hole");
}

static void removed_region_becomes_a_hole_and_its_range_can_be_reused(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc d = ram(4 * GiB + 12 * KiB, 3 * MiB); /* unaligned edges */
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    uint64_t nodes_with = vm->p2m.nodes;
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_int_equal(type_at(vm, 4 * GiB + 12 * KiB), VMMU_MEM_HOLE);
    assert_int_equal(type_at(vm, 4 * GiB + 3 * MiB), VMMU_MEM_HOLE);
    assert_true(vm->p2m.nodes < nodes_with); /* emptied nodes were freed */
    assert_int_equal(vm->p2m.nodes, 0);      /* only the root remains */
    uint32_t id2;
    assert_int_equal(vmmu_region_add(vm, &d, &id2), 0);
    assert_int_not_equal(id2, id); /* ids are not reused */
    assert_int_equal(type_at(vm, 4 * GiB + 12 * KiB), VMMU_MEM_RAM);
    assert_int_equal(vmmu_region_remove(vm, id), VMMU_ENOENT);
}

static void adjacent_regions_touch_without_overlapping(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc a = ram(0, 2 * MiB + 4 * KiB), b = ram(2 * MiB + 4 * KiB, 4 * KiB);
    uint32_t ia, ib;
    assert_int_equal(vmmu_region_add(vm, &a, &ia), 0);
    assert_int_equal(vmmu_region_add(vm, &b, &ib), 0);
    uint32_t id;
    assert_int_equal(vmmu_region_find(vm, 2 * MiB + 4 * KiB - 1, &id), 0);
    assert_int_equal(id, ia);
    assert_int_equal(vmmu_region_find(vm, 2 * MiB + 4 * KiB, &id), 0);
    assert_int_equal(id, ib);
    assert_int_equal(vmmu_region_find(vm, 2 * MiB + 8 * KiB, &id), VMMU_EHOLE);
}

static void region_at_the_top_of_a_52_bit_space_is_reachable(void **state)
{
    struct vmmu_vm *vm = *state;
    uint64_t top = 1ull << 52;
    struct vmmu_region_desc d = ram(top - 8 * KiB, 8 * KiB);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    assert_int_equal(type_at(vm, top - 1), VMMU_MEM_RAM);
    uint8_t v = 0x5a, back = 0;
    assert_int_equal(vmmu_gpa_write(vm, top - 1, &v, 1, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(vm, top - 1, &back, 1, 0, NULL), 0);
    assert_int_equal(back, 0x5a);
}

static void info_describes_the_region_and_its_memfd_mapping(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc d = ram(16 * MiB, 8 * KiB);
    d.name = "a-name-that-is-longer-than-thirty-two-bytes";
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, id, &info), 0);
    assert_int_equal(info.id, id);
    assert_int_equal(info.type, VMMU_MEM_RAM);
    assert_int_equal(info.gpa, 16 * MiB);
    assert_int_equal(info.size, 8 * KiB);
    assert_int_equal(strlen(info.name), sizeof(info.name) - 1);
    assert_int_equal(info.memfd, vmmu_vm_memfd(vm));
    assert_true(info.memfd >= 0);

    /* What a device model would do: map the memfd at the region's offset
     * and see the guest's bytes. */
    assert_int_equal(vmmu_gpa_write(vm, 16 * MiB + 4100, "dm", 3, 0, NULL), 0);
    char *p = mmap(NULL, 8 * KiB, PROT_READ, MAP_SHARED, info.memfd, (off_t)info.memfd_offset);
    assert_true(p != MAP_FAILED);
    assert_string_equal(p + 4100, "dm");
    munmap(p, 8 * KiB);

    assert_int_equal(vmmu_region_info(vm, id + 100, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_info(vm, 0, &info), VMMU_ENOENT);
    assert_int_equal(vmmu_region_info(vm, id, NULL), VMMU_EINVAL);
}

static int mmio_read_seven(void *o, uint64_t off, unsigned size, uint64_t *v)
{
    (void)o, (void)off, (void)size;
    *v = 7;
    return 0;
}

static void the_descriptor_its_callbacks_and_its_name_are_copied(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_mmio_ops ops = {.read = mmio_read_seven};
    char name[] = "uart";
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 1 * MiB, .size = 4096,
                                 .mmio = &ops, .name = name};
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    /* The caller reuses all three for something else. */
    ops.read = mmio_read_zero;
    strcpy(name, "XXXX");
    d.gpa = 5 * MiB;
    uint8_t v = 0;
    assert_int_equal(vmmu_gpa_read(vm, 1 * MiB, &v, 1, 0, NULL), 0);
    assert_int_equal(v, 7);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, id, &info), 0);
    assert_string_equal(info.name, "uart");
    assert_int_equal(info.gpa, 1 * MiB);
    assert_null(info.host);
    assert_int_equal(info.memfd, -1);
}

static void caller_supplied_memory_is_used_and_not_freed(void **state)
{
    struct vmmu_vm *vm = *state;
    uint8_t *mem = aligned_alloc(4096, 3 * 4096);
    memset(mem, 0x11, 3 * 4096);
    struct vmmu_region_desc d = ram(1 * GiB, 3 * 4096);
    d.host = mem;
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, id, &info), 0);
    assert_ptr_equal(info.host, mem);
    assert_int_equal(info.memfd, -1);
    assert_int_equal(vmmu_gpa_write(vm, 1 * GiB + 4095, "xy", 2, 0, NULL), 0);
    assert_int_equal(mem[4095], 'x');
    assert_int_equal(mem[4096], 'y');
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_int_equal(mem[0], 0x11); /* still ours to read and free */
    free(mem);
}

static void region_ids_wrap_past_zero_and_past_ids_still_in_use(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc a = ram(0, 4096), b = ram(1 * MiB, 4096), c = ram(2 * MiB, 4096);
    uint32_t ia, ib, ic = 0;
    assert_int_equal(vmmu_region_add(vm, &a, &ia), 0);
    assert_int_equal(ia, 1);
    /* Four billion additions later, the counter is about to wrap while
     * region 1 is still in the map. */
    vm->p2m.next_id = UINT32_MAX;
    assert_int_equal(vmmu_region_add(vm, &b, &ib), 0);
    assert_int_equal(ib, UINT32_MAX);
    assert_int_equal(vmmu_region_add(vm, &c, &ic), 0);
    assert_int_not_equal(ic, 0);
    assert_int_not_equal(ic, ia); /* an id in use is not handed out again */
    assert_int_not_equal(ic, ib);
    /* Each id still names its own region. */
    assert_int_equal(vmmu_region_remove(vm, ic), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, ia, &info), 0);
    assert_int_equal(info.gpa, 0);
    assert_int_equal(type_at(vm, 0), VMMU_MEM_RAM);
    assert_int_equal(type_at(vm, 2 * MiB), VMMU_MEM_HOLE);
}

static void removing_a_region_gives_its_memfd_pages_back_to_the_host(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc keep = ram(0, 64 * KiB), gone = ram(1 * GiB, 4 * MiB);
    uint32_t ik, ig;
    assert_int_equal(vmmu_region_add(vm, &keep, &ik), 0);
    assert_int_equal(vmmu_region_add(vm, &gone, &ig), 0);
    static uint8_t page[4096];
    memset(page, 0x5a, sizeof(page));
    for (uint64_t off = 0; off < 4 * MiB; off += 4096)
        assert_int_equal(vmmu_gpa_write(vm, 1 * GiB + off, page, sizeof(page), 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, 0, page, sizeof(page), 0, NULL), 0);
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, ig, &info), 0);
    int fd = vmmu_vm_memfd(vm);
    struct stat before, after;
    assert_int_equal(fstat(fd, &before), 0);

    assert_int_equal(vmmu_region_remove(vm, ig), 0);
    assert_int_equal(fstat(fd, &after), 0);
    /* The 4 MiB the guest touched are no longer held by the file ... */
    assert_true((uint64_t)(before.st_blocks - after.st_blocks) * 512 >= 4 * MiB);
    /* ... and read back as zeros, while the other region keeps its bytes. */
    uint8_t back[4096];
    assert_int_equal(pread(fd, back, sizeof(back), (off_t)info.memfd_offset), (ssize_t)sizeof(back));
    static const uint8_t zero[4096];
    assert_memory_equal(back, zero, sizeof(back));
    assert_int_equal(vmmu_gpa_read(vm, 0, back, sizeof(back), 0, NULL), 0);
    assert_memory_equal(back, page, sizeof(back));
}

static uint64_t memfd_offset_of(struct vmmu_vm *vm, uint32_t id)
{
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(vm, id, &info), 0);
    return info.memfd_offset;
}

static uint32_t add_ram(struct vmmu_vm *vm, uint64_t gpa, uint64_t size)
{
    struct vmmu_region_desc d = ram(gpa, size);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    return id;
}

/* A removed region's span of the memfd (2 MiB granules) goes to the next
 * region that fits, first fit, adjacent free spans merged, and reads as
 * zeros there; a free span at the top of the file is the top again.  So a
 * vm that adds and removes RAM all its life stays low in the file, where
 * the device dirty bitmap covers it. */
static void a_removed_regions_memfd_span_is_reused_first_fit(void **state)
{
    struct vmmu_vm *vm = *state;
    uint32_t a = add_ram(vm, 0, 3 * MiB); /* span 4 MiB */
    uint32_t b = add_ram(vm, 1 * GiB, 2 * MiB);
    uint32_t c = add_ram(vm, 2 * GiB, 64 * KiB);
    uint64_t oa = memfd_offset_of(vm, a), ob = memfd_offset_of(vm, b),
             oc = memfd_offset_of(vm, c);
    assert_int_equal(oa, 0);
    assert_int_equal(ob, 4 * MiB);
    assert_int_equal(oc, 6 * MiB);
    assert_int_equal(vmmu_gpa_write(vm, 2 * MiB, "old bytes", 9, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, 2 * GiB, "kept", 4, 0, NULL), 0);

    /* A's span: too small for 6 MiB (which goes on top), taken by 4 MiB,
     * whose memory starts zeroed. */
    assert_int_equal(vmmu_region_remove(vm, a), 0);
    uint32_t big = add_ram(vm, 3 * GiB, 6 * MiB);
    assert_int_equal(memfd_offset_of(vm, big), 8 * MiB);
    uint32_t d = add_ram(vm, 4 * GiB, 4 * MiB);
    assert_int_equal(memfd_offset_of(vm, d), oa);
    char back[9];
    assert_int_equal(vmmu_gpa_read(vm, 4 * GiB + 2 * MiB, back, 9, 0, NULL), 0);
    static const char zeros[9];
    assert_memory_equal(back, zeros, 9);

    /* D's and B's spans merge (removed in either order) into 6 MiB. */
    assert_int_equal(vmmu_region_remove(vm, b), 0);
    assert_int_equal(vmmu_region_remove(vm, d), 0);
    uint32_t e = add_ram(vm, 5 * GiB, 6 * MiB);
    assert_int_equal(memfd_offset_of(vm, e), 0);
    assert_int_equal(vmmu_gpa_read(vm, 2 * GiB, back, 4, 0, NULL), 0);
    assert_memory_equal(back, "kept", 4); /* C untouched throughout */

    /* The top span (BIG's) is the top again: a larger region fits there. */
    assert_int_equal(vmmu_region_remove(vm, big), 0);
    uint32_t f = add_ram(vm, 6 * GiB, 10 * MiB);
    assert_int_equal(memfd_offset_of(vm, f), 8 * MiB);
    (void)oc;
}

/* Out of memory for the list of free spans, a removed region's span is
 * just not reused: the removal succeeds, and the next region goes above.
 * (The list's allocation is the removal's last: counted on a first vm,
 * made to fail on a second.) */
static void a_span_that_cannot_be_listed_is_not_reused(void **state)
{
    (void)state;
    unsigned long n = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct vmmu_vm *vm;
        assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
        uint32_t a = add_ram(vm, 0, 2 * MiB);
        uint32_t b = add_ram(vm, 1 * GiB, 2 * MiB);
        assert_int_equal(memfd_offset_of(vm, b), 2 * MiB);
        vmmu__alloc_fail_nth(pass ? n : 0);
        int rc = vmmu_region_remove(vm, a);
        if (!pass)
            n = vmmu__alloc_count();
        bool failed = vmmu__alloc_failed();
        vmmu__alloc_disarm();
        assert_int_equal(rc, 0);
        assert_true(n > 0);
        assert_true(failed == (pass == 1));
        uint32_t c = add_ram(vm, 2 * GiB, 2 * MiB);
        /* Pass 0 reuses A's span; pass 1 could not list it. */
        assert_int_equal(memfd_offset_of(vm, c), pass ? 4 * MiB : 0);
        uint64_t v = 0x77, back = 0;
        assert_int_equal(vmmu_gpa_write(vm, 2 * GiB + 8, &v, 8, 0, NULL), 0);
        assert_int_equal(vmmu_gpa_read(vm, 2 * GiB + 8, &back, 8, 0, NULL), 0);
        assert_int_equal(back, v);
        /* Later removals are listed again: B's span goes to the next one. */
        assert_int_equal(vmmu_region_remove(vm, b), 0);
        uint32_t d = add_ram(vm, 3 * GiB, 2 * MiB);
        assert_int_equal(memfd_offset_of(vm, d), 2 * MiB);
        vmmu_vm_destroy(vm);
    }
}

static int punch_fails(int fd, int mode, off_t offset, off_t len)
{
    (void)fd, (void)mode, (void)offset, (void)len;
    errno = EOPNOTSUPP;
    return -1;
}

/* A removed region whose pages could not be punched out of the memfd
 * still holds its bytes there: its span is not reused, so the next region
 * starts zeroed, above it. */
static void a_span_that_could_not_be_punched_is_not_reused(void **state)
{
    struct vmmu_vm *vm = *state;
    uint32_t a = add_ram(vm, 0, 2 * MiB);
    (void)add_ram(vm, 1 * GiB, 2 * MiB);
    assert_int_equal(vmmu_gpa_write(vm, 4096, "secret", 6, 0, NULL), 0);
    vmmu__memfd_fallocate = punch_fails;
    int rc = vmmu_region_remove(vm, a);
    vmmu__memfd_fallocate = fallocate;
    assert_int_equal(rc, 0);
    uint32_t c = add_ram(vm, 2 * GiB, 2 * MiB);
    assert_int_equal(memfd_offset_of(vm, c), 4 * MiB);
    char back[6];
    static const char zeros[6];
    assert_int_equal(vmmu_gpa_read(vm, 2 * GiB + 4096, back, 6, 0, NULL), 0);
    assert_memory_equal(back, zeros, 6);
}

/* The memfd holds what the device dirty bitmap covers (16 TiB) and no
 * more: a region that would reach past it is refused with VMMU_ENOMEM and
 * changes nothing; once space is given back it fits.  (With the limit
 * lowered to 16 MiB: the host need not map 16 TiB.) */
static void the_memfd_holds_what_the_device_dirty_bitmap_covers(void **state)
{
    struct vmmu_vm *vm = *state;
    assert_int_equal(vmmu__memfd_limit, VMMU_DM_DIRTY_PAGES << 12);
    assert_int_equal(vmmu__memfd_limit, 16 * TiB);
    const uint64_t limit = 16 * MiB;
    vmmu__memfd_limit = limit;
    uint32_t small = add_ram(vm, 0, 2 * MiB);
    uint32_t big = add_ram(vm, 1 * GiB, limit - 4 * MiB);
    assert_int_equal(memfd_offset_of(vm, big), 2 * MiB);
    uint32_t last = add_ram(vm, 2 * GiB, 2 * MiB); /* the last granule */
    assert_int_equal(memfd_offset_of(vm, last), limit - 2 * MiB);
    uint64_t gen = vmmu_p2m_generation(vm);
    struct vmmu_region_desc more = ram(3 * GiB, 4096);
    assert_int_equal(vmmu_region_add(vm, &more, NULL), VMMU_ENOMEM);
    assert_int_equal(vmmu_p2m_generation(vm), gen);
    assert_int_equal(type_at(vm, 3 * GiB), VMMU_MEM_HOLE);
    assert_int_equal(vmmu_region_remove(vm, small), 0);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &more, &id), 0);
    assert_int_equal(memfd_offset_of(vm, id), 0);
    vmmu__memfd_limit = VMMU_DM_DIRTY_PAGES << 12;
    uint64_t v = 0xfeed, back = 0;
    assert_int_equal(vmmu_gpa_write(vm, 1 * GiB + limit - 4 * MiB - 8, &v, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(vm, 1 * GiB + limit - 4 * MiB - 8, &back, 8, 0, NULL), 0);
    assert_int_equal(back, v);
}

static void a_1_tib_region_costs_almost_nothing_until_touched(void **state)
{
    struct vmmu_vm *vm = *state;
    uint64_t before = vmmu__p2m_metadata_bytes(vm);
    struct vmmu_region_desc d = ram(1 * TiB, 1 * TiB);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    /* Aligned to the root's 512 GiB slots: two root slots hold the tag and
     * no node is built at all. */
    assert_int_equal(vm->p2m.nodes, 0);
    assert_int_equal(vmmu__p2m_metadata_bytes(vm) - before - sizeof(struct vmmu_region),
                     (1 * TiB >> 12) /* state bytes, lazily backed */ +
                         (vm->p2m.cap * sizeof(void *)));
    uint64_t last = 2 * TiB - 8;
    uint64_t v = 0x0123456789abcdefull, back = 0;
    assert_int_equal(vmmu_gpa_write(vm, last, &v, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(vm, last, &back, 8, 0, NULL), 0);
    assert_int_equal(back, v);
    assert_int_equal(vmmu_gpa_read(vm, 1 * TiB + 77 * GiB, &back, 8, 0, NULL), 0);
    assert_int_equal(back, 0); /* untouched RAM reads as zero */
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lu %lu", &size, &res), 2);
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Dirty logging a large region nobody wrote commits none of its page
 * states: enabling the log and harvesting it only read them (the state
 * array, one byte a page, is 16 MiB here). */
static void dirty_logging_an_untouched_region_commits_no_page_state(void **state)
{
    struct vmmu_vm *vm = *state;
    const uint64_t size = 64 * GiB, words = (size >> 12) / 64;
    struct vmmu_region_desc d = ram(0, size);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    uint64_t *bitmap = calloc(words, sizeof(*bitmap));
    assert_non_null(bitmap);
    memset(bitmap, 1, words * sizeof(*bitmap)); /* its pages resident before the first look */
    uint64_t before = rss_bytes(), ndirty = 7;
    assert_int_equal(vmmu_dirty_log_enable(vm, id, true), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, id, bitmap, words, &ndirty), 0);
    assert_int_equal(ndirty, 0);
    uint64_t grew = rss_bytes() - before;
    /* Written pages are still found, and only they: in the first state
     * page and in one far from it. */
    uint64_t v = 1;
    assert_int_equal(vmmu_gpa_write(vm, 40 * GiB + 8, &v, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, 5 * 4096, &v, 8, 0, NULL), 0);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, id, bitmap, words, &ndirty), 0);
    assert_int_equal(ndirty, 2);
    uint64_t bit = (40 * GiB) >> 12;
    assert_int_equal(bitmap[bit / 64], 1ull << (bit % 64));
    assert_int_equal(bitmap[0], 1ull << 5);
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, id, bitmap, words, &ndirty), 0);
    assert_int_equal(ndirty, 0);
    free(bitmap);
    print_message("resident memory grew by %llu KiB\n", (unsigned long long)(grew >> 10));
    assert_true(grew < 4 * MiB);
}

/* What /proc/self/pagemap says of a page swapped out: not present. */
static ssize_t all_swapped(int fd, void *buf, size_t n, off_t offset)
{
    (void)fd;
    (void)offset;
    uint64_t *ent = buf;
    for (size_t k = 0; k < n / sizeof(*ent); k++)
        ent[k] = 1ull << 62;
    return (ssize_t)n;
}

/* A state page the host swapped out holds its bits still: the harvest
 * reads it (it skips only pages never touched). */
/* A 16384-page region under dirty logging whose page 5000 (its state in
 * the second state page) was written; its id. */
static uint32_t logged_region_with_page_5000_written(struct vmmu_vm *vm)
{
    struct vmmu_region_desc d = ram(0, 16384 * 4096ull);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    assert_int_equal(vmmu_dirty_log_enable(vm, id, true), 0);
    uint64_t v = 1;
    assert_int_equal(vmmu_gpa_write(vm, 5000 * 4096ull, &v, 8, 0, NULL), 0);
    return id;
}

/* The harvest of that region reports page 5000, and only it. */
static void assert_harvest_is_page_5000(struct vmmu_vm *vm, uint32_t id)
{
    uint64_t bitmap[256] = {0}, ndirty = 0;
    assert_int_equal(vmmu_dirty_log_get_and_clear(vm, id, bitmap, 256, &ndirty), 0);
    assert_int_equal(ndirty, 1);
    assert_int_equal(bitmap[5000 / 64], 1ull << (5000 % 64));
}

static void a_dirty_bit_in_a_swapped_out_state_page_is_reported(void **state)
{
    struct vmmu_vm *vm = *state;
    uint32_t id = logged_region_with_page_5000_written(vm);
    vmmu__pagemap_pread = all_swapped;
    assert_harvest_is_page_5000(vm, id);
    vmmu__pagemap_pread = pread;
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* The same with the host's own swap: the state page is pushed out with
 * MADV_PAGEOUT (skipped where there is no swap to push it to). */
static void a_dirty_bit_in_a_state_page_the_host_swapped_out_is_reported(void **state)
{
    struct vmmu_vm *vm = *state;
    uint32_t id = logged_region_with_page_5000_written(vm);
    const struct vmmu_region *r = p2m_resolve(&vm->p2m, 0, NULL);
    uint8_t *sp = (uint8_t *)r->state + 4096; /* holds page 5000's state */
    unsigned char vec = 1;
    if (madvise(sp, 4096, MADV_PAGEOUT) == 0)
        for (int i = 0; i < 100 && mincore(sp, 4096, &vec) == 0 && (vec & 1); i++)
            usleep(10000);
    if (vec & 1) {
        print_message("the state page stayed resident (no swap here): skipped\n");
        skip();
    }
    assert_harvest_is_page_5000(vm, id);
}

static int count_regions(const struct vmmu_region_info *info, void *arg)
{
    uint64_t *prev_end = arg;
    assert_true(info->gpa >= *prev_end); /* ascending and disjoint */
    *prev_end = info->gpa + info->size;
    return 0;
}

static int stop_at_second(const struct vmmu_region_info *info, void *arg)
{
    int *n = arg;
    (void)info;
    return ++*n == 2 ? 42 : 0;
}

static int try_to_change_the_map(const struct vmmu_region_info *info, void *arg)
{
    struct vmmu_vm *vm = arg;
    struct vmmu_region_desc d = ram(100 * GiB, 4096);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), VMMU_EBUSY);
    assert_int_equal(vmmu_region_remove(vm, info->id), VMMU_EBUSY);
    struct vmmu_region_info again;
    assert_int_equal(vmmu_region_info(vm, info->id, &again), 0); /* reading is fine */
    return 0;
}

static void foreach_visits_in_order_stops_early_and_refuses_changes(void **state)
{
    struct vmmu_vm *vm = *state;
    uint64_t gpas[] = {5 * GiB, 1 * GiB, 3 * GiB, 2 * GiB};
    for (size_t i = 0; i < 4; i++) {
        struct vmmu_region_desc d = ram(gpas[i], 64 * KiB);
        assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    }
    uint64_t prev_end = 0;
    assert_int_equal(vmmu_region_foreach(vm, count_regions, &prev_end), 0);
    assert_int_equal(prev_end, 5 * GiB + 64 * KiB);
    int n = 0;
    assert_int_equal(vmmu_region_foreach(vm, stop_at_second, &n), 42);
    assert_int_equal(n, 2);
    assert_int_equal(vmmu_region_foreach(vm, try_to_change_the_map, vm), 0);
    assert_int_equal(type_at(vm, 100 * GiB), VMMU_MEM_HOLE);
    assert_int_equal(vmmu_region_foreach(vm, NULL, NULL), VMMU_EINVAL);
}

static void generation_changes_with_every_add_and_remove_only(void **state)
{
    struct vmmu_vm *vm = *state;
    uint64_t g0 = vmmu_p2m_generation(vm);
    struct vmmu_region_desc d = ram(0, 4096);
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    uint64_t g1 = vmmu_p2m_generation(vm);
    assert_true(g1 > g0);
    struct vmmu_p2m_entry e;
    assert_int_equal(vmmu_p2m_lookup(vm, 0, &e), 0);
    assert_int_equal(e.generation, g1);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), VMMU_EOVERLAP);
    assert_int_equal(vmmu_p2m_generation(vm), g1); /* a refused add changes nothing */
    assert_int_equal(vmmu_region_remove(vm, id), 0);
    assert_true(vmmu_p2m_generation(vm) > g1);
}

/* ---- refusals: each leaves the map as it was ---------------------------- */

struct bad_case {
    const char *what;
    struct vmmu_region_desc d;
    int err;
};

static void bad_regions_are_refused_with_a_clear_code_and_change_nothing(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc base = ram(1 * GiB, 2 * MiB);
    assert_int_equal(vmmu_region_add(vm, &base, NULL), 0);
    static char host_buf[8192] __attribute__((aligned(4096)));
    const uint64_t top = 1ull << 52;
    struct bad_case cases[] = {
        {"overlap start", ram(1 * GiB - 4096, 8192), VMMU_EOVERLAP},
        {"overlap end", ram(1 * GiB + 2 * MiB - 4096, 8192), VMMU_EOVERLAP},
        {"inside", ram(1 * GiB + 4096, 4096), VMMU_EOVERLAP},
        {"covering", ram(0, 4 * GiB), VMMU_EOVERLAP},
        {"identical", ram(1 * GiB, 2 * MiB), VMMU_EOVERLAP},
        {"misaligned gpa", ram(0x1001, 4096), VMMU_EALIGN},
        {"misaligned size", ram(0, 4095), VMMU_EALIGN},
        {"empty", ram(0, 0), VMMU_EINVAL},
        {"beyond width", ram(top, 4096), VMMU_ERANGE},
        {"ends beyond width", ram(top - 4096, 8192), VMMU_ERANGE},
        {"size wraps", ram(top - 4096, UINT64_MAX & VMMU_PAGE_MASK), VMMU_ERANGE},
        {"hole type", {.type = VMMU_MEM_HOLE, .gpa = 0, .size = 4096}, VMMU_EINVAL},
        {"unknown type", {.type = (enum vmmu_mem_type)99, .gpa = 0, .size = 4096}, VMMU_EINVAL},
        {"mmio without ops", {.type = VMMU_MEM_MMIO, .gpa = 0, .size = 4096}, VMMU_EINVAL},
        {"mmio with host memory",
         {.type = VMMU_MEM_MMIO, .gpa = 0, .size = 4096, .mmio = &zero_ops, .host = host_buf},
         VMMU_EINVAL},
        {"device with ops",
         {.type = VMMU_MEM_DEVICE, .gpa = 0, .size = 4096, .mmio = &zero_ops}, VMMU_EINVAL},
        {"ram with ops", {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096, .mmio = &zero_ops},
         VMMU_EINVAL},
        {"misaligned host",
         {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096, .host = host_buf + 8}, VMMU_EINVAL},
        {"unknown flag", {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096, .flags = 1u << 31},
         VMMU_EINVAL},
        {"rom flag on ram",
         {.type = VMMU_MEM_RAM, .gpa = 0, .size = 4096, .flags = VMMU_REGION_ROM_REPORT_WRITES},
         VMMU_EINVAL},
        {"dirty flag on mmio",
         {.type = VMMU_MEM_MMIO, .gpa = 0, .size = 4096, .mmio = &zero_ops,
          .flags = VMMU_REGION_LOG_DIRTY},
         VMMU_EINVAL},
    };
    uint64_t gen = vmmu_p2m_generation(vm);
    uint64_t meta = vmmu__p2m_metadata_bytes(vm);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t id = 0xdeadbeef;
        int err = vmmu_region_add(vm, &cases[i].d, &id);
        if (err != cases[i].err)
            fail_msg("%s: got %s, want %s", cases[i].what, vmmu_error_name(err),
                     vmmu_error_name(cases[i].err));
        assert_int_equal(id, 0xdeadbeef);
    }
    assert_int_equal(vmmu_p2m_generation(vm), gen);
    assert_int_equal(vmmu__p2m_metadata_bytes(vm), meta);
    assert_int_equal(vm->p2m.nregions, 1);
    assert_int_equal(type_at(vm, 0), VMMU_MEM_HOLE);
    assert_int_equal(type_at(vm, 1 * GiB), VMMU_MEM_RAM);
}

static void null_arguments_are_refused(void **state)
{
    struct vmmu_vm *vm = *state;
    struct vmmu_region_desc d = ram(0, 4096);
    struct vmmu_p2m_entry e;
    uint32_t id, st;
    assert_int_equal(vmmu_region_add(NULL, &d, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_region_add(vm, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_region_remove(NULL, 1), VMMU_EINVAL);
    assert_int_equal(vmmu_region_find(NULL, 0, &id), VMMU_EINVAL);
    assert_int_equal(vmmu_region_find(vm, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_lookup(NULL, 0, &e), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_lookup(vm, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_get(vm, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_page_state_get(NULL, 0, &st), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_set_pagein_handler(NULL, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_p2m_generation(NULL), 0);
}

static void addresses_beyond_the_width_are_out_of_range(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.gpa_bits = 32};
    assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
    struct vmmu_p2m_entry e;
    uint32_t id;
    assert_int_equal(vmmu_p2m_lookup(vm, 4 * GiB, &e), VMMU_ERANGE);
    assert_int_equal(vmmu_p2m_lookup(vm, 4 * GiB - 1, &e), 0);
    assert_int_equal(vmmu_region_find(vm, UINT64_MAX, &id), VMMU_ERANGE);
    struct vmmu_region_desc d = ram(4 * GiB - 4096, 8192);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), VMMU_ERANGE);
    vmmu_vm_destroy(vm);
}

static void region_limit_is_enforced(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.max_regions = 3};
    assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
    uint32_t ids[3];
    for (int i = 0; i < 3; i++) {
        struct vmmu_region_desc d = ram((uint64_t)i * MiB, 4096);
        assert_int_equal(vmmu_region_add(vm, &d, &ids[i]), 0);
    }
    struct vmmu_region_desc d = ram(10 * MiB, 4096);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), VMMU_ELIMIT);
    assert_int_equal(vmmu_region_remove(vm, ids[1]), 0);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);
    vmmu_vm_destroy(vm);
}

/* Every width from 20 to 52 bits.  For many of them the radix tree's root
 * has fewer slots than a node's 512 (20 bits: 256, 36 bits: 64).  The last
 * page is reachable, the first address beyond is out of range, and
 * removing the regions prunes every node again without reading past the
 * root. */
static void every_width_maps_its_last_page_and_prunes_on_removal(void **state)
{
    (void)state;
    for (unsigned bits = VMMU_GPA_BITS_MIN; bits <= VMMU_GPA_BITS_MAX; bits++) {
        struct vmmu_vm *vm;
        struct vmmu_vm_config cfg = {.gpa_bits = bits};
        assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
        const uint64_t top = 1ull << bits;
        struct vmmu_region_desc last = ram(top - 4096, 4096), low = ram(4096, 3 * 4096);
        uint32_t il, ilow;
        assert_int_equal(vmmu_region_add(vm, &last, &il), 0);
        assert_int_equal(vmmu_region_add(vm, &low, &ilow), 0);
        uint8_t v = (uint8_t)bits, back = 0;
        assert_int_equal(vmmu_gpa_write(vm, top - 1, &v, 1, 0, NULL), 0);
        assert_int_equal(vmmu_gpa_read(vm, top - 1, &back, 1, 0, NULL), 0);
        assert_int_equal(back, v);
        struct vmmu_p2m_entry e;
        assert_int_equal(vmmu_p2m_lookup(vm, top, &e), VMMU_ERANGE);
        struct vmmu_region_desc beyond = ram(top, 4096);
        assert_int_equal(vmmu_region_add(vm, &beyond, NULL), VMMU_ERANGE);
        assert_int_equal(vmmu_region_remove(vm, il), 0);
        assert_int_equal(vmmu_region_remove(vm, ilow), 0);
        assert_int_equal(type_at(vm, top - 1), VMMU_MEM_HOLE);
        assert_int_equal(type_at(vm, 4096), VMMU_MEM_HOLE);
        assert_int_equal(vm->p2m.nodes, 0);
        vmmu_vm_destroy(vm);
    }
}

/* The memfd appears with the first region whose memory vmmu allocates; an
 * addition that fails, at whichever allocation, leaves none behind. */
static void a_refused_first_ram_region_leaves_the_vm_without_a_memfd(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc dev = {.type = VMMU_MEM_DEVICE, .gpa = 1 * GiB, .size = 4096};
    assert_int_equal(vmmu_region_add(vm, &dev, NULL), 0);
    static uint8_t mine[4096] __attribute__((aligned(4096)));
    struct vmmu_region_desc own = ram(2 * GiB, 4096);
    own.host = mine;
    assert_int_equal(vmmu_region_add(vm, &own, NULL), 0);
    assert_int_equal(vmmu_vm_memfd(vm), -1); /* nothing vmmu allocated yet */

    /* Unaligned edges: the addition builds nodes after mapping its memory. */
    struct vmmu_region_desc d = ram(4 * GiB + 4096, 3 * 4096);
    int err = VMMU_ENOMEM;
    for (unsigned long nth = 1; err == VMMU_ENOMEM && nth < 100; nth++) {
        vmmu__alloc_fail_nth(nth);
        err = vmmu_region_add(vm, &d, NULL);
        bool failed = vmmu__alloc_failed();
        vmmu__alloc_disarm();
        if (err) {
            assert_true(failed);
            assert_int_equal(err, VMMU_ENOMEM);
            assert_int_equal(vmmu_vm_memfd(vm), -1);
            assert_int_equal(type_at(vm, 4 * GiB + 4096), VMMU_MEM_HOLE);
        }
    }
    assert_int_equal(err, 0);
    assert_true(vmmu_vm_memfd(vm) >= 0);
    vmmu_vm_destroy(vm);
}

/* The host refuses what a RAM region of vmmu's own needs: no descriptor
 * left for the memfd (VMMU_ESYS, errno EMFILE), then a file size limit
 * below the memfd's new end (VMMU_ENOMEM; SIGXFSZ ignored meanwhile).
 * Each addition fails with the map unchanged, and succeeds once the host
 * allows it. */
static void a_ram_region_the_host_cannot_back_is_refused_and_changes_nothing(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    uint64_t gen = vmmu_p2m_generation(vm);

    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest = dup(0); /* the next descriptor the process would get */
    assert_true(lowest >= 0);
    close(lowest);
    lim = saved;
    lim.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    struct vmmu_region_desc d = ram(1 * GiB, 64 * KiB);
    int rc = vmmu_region_add(vm, &d, NULL);
    int err = errno;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(rc, VMMU_ESYS);
    assert_int_equal(err, EMFILE);
    assert_int_equal(vmmu_vm_memfd(vm), -1);
    assert_int_equal(type_at(vm, 1 * GiB), VMMU_MEM_HOLE);
    assert_int_equal(vmmu_p2m_generation(vm), gen);
    assert_int_equal(vmmu_region_add(vm, &d, NULL), 0);

    /* The next region starts 2 MiB into the memfd: a 1 MiB limit refuses it. */
    struct sigaction ign = {0}, old_xfsz;
    ign.sa_handler = SIG_IGN;
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_xfsz), 0);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 1 * MiB;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    gen = vmmu_p2m_generation(vm);
    struct vmmu_region_desc d2 = ram(2 * GiB, 64 * KiB);
    rc = vmmu_region_add(vm, &d2, NULL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_xfsz, NULL), 0);
    assert_int_equal(rc, VMMU_ENOMEM);
    assert_int_equal(type_at(vm, 2 * GiB), VMMU_MEM_HOLE);
    assert_int_equal(vmmu_p2m_generation(vm), gen);
    assert_int_equal(vmmu_region_add(vm, &d2, NULL), 0);
    uint64_t x = 0x1234, y = 0;
    assert_int_equal(vmmu_gpa_write(vm, 2 * GiB + 8, &x, 8, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(vm, 2 * GiB + 8, &y, 8, 0, NULL), 0);
    assert_int_equal(y, x);
    vmmu_vm_destroy(vm);
}

static void destroying_the_vm_leaves_caller_memory_mapped_and_intact(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    uint8_t *mem = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    struct vmmu_region_desc r = ram(0, 4096), o = {.type = VMMU_MEM_ROM, .gpa = 1 * MiB,
                                                    .size = 4096, .host = mem + 4096};
    r.host = mem;
    assert_int_equal(vmmu_region_add(vm, &r, NULL), 0);
    assert_int_equal(vmmu_region_add(vm, &o, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, 4095, "r", 1, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_write(vm, 1 * MiB, "o", 1, VMMU_GPA_ROM_WRITE, NULL), 0);
    vmmu_vm_destroy(vm);
    /* Still mapped (a munmap would make these reads fault) and unchanged. */
    assert_int_equal(mem[4095], 'r');
    assert_int_equal(mem[4096], 'o');
    mem[0] = 1;
    assert_int_equal(munmap(mem, 2 * 4096), 0);
}

/* ---- a model test: random layouts against a plain list ------------------ */

struct model_region {
    uint64_t lo, hi; /* frames */
    uint32_t id;
    int live;
    uint64_t off, span; /* its span of the memfd (2 MiB granules) */
};

/* Where the memfd's allocator must put a span of @span bytes: the lowest
 * gap between the live regions' spans that fits (free spans are exactly
 * those gaps, merged), else just above the highest. */
static uint64_t model_memfd_place(const struct model_region *m, size_t n, uint64_t span)
{
    uint64_t at = 0;
    for (;;) {
        uint64_t top = 0;
        bool blocked = false;
        for (size_t i = 0; i < n; i++) {
            if (m[i].live && m[i].off < at + span && at < m[i].off + m[i].span) {
                blocked = true;
                if (m[i].off + m[i].span > top)
                    top = m[i].off + m[i].span;
            }
        }
        if (!blocked)
            return at;
        at = top; /* past the live span(s) in the way, then try again */
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint32_t model_find(const struct model_region *m, size_t n, uint64_t gfn)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].live && gfn >= m[i].lo && gfn < m[i].hi)
            return m[i].id;
    return 0;
}

/* Random sizes and alignments over a 40-bit space, mixing 4 KiB-aligned
 * edges with 2 MiB, 1 GiB and 512 GiB alignments so that every radix level
 * sees whole-slot tags, partial slots and leaves.  Lookups probe edges and
 * random addresses and must agree with the list every time. */
static void random_layouts_agree_with_a_reference_list(void **state)
{
    (void)state;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.gpa_bits = 40, .max_regions = 1000};
    assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
    enum { N = 600 };
    static struct model_region m[N];
    size_t n = 0;
    const uint64_t gfn_limit = 1ull << 28;
    static const unsigned align_bits[] = {0, 0, 0, 9, 9, 18, 27};
    for (int round = 0; round < 4000; round++) {
        if (n < N && (rnd() % 3 != 0 || n == 0)) {
            unsigned ab = align_bits[rnd() % 7];
            uint64_t lo = (rnd() % gfn_limit) & ~((1ull << ab) - 1);
            uint64_t len = 1 + rnd() % ((1ull << (ab + 2)) + 7);
            if (lo + len > gfn_limit)
                len = gfn_limit - lo;
            struct vmmu_region_desc d = ram(lo << 12, len << 12);
            uint32_t id = 0;
            int err = vmmu_region_add(vm, &d, &id);
            int clash = 0;
            for (size_t i = 0; i < n; i++)
                if (m[i].live && lo < m[i].hi && m[i].lo < lo + len)
                    clash = 1;
            assert_int_equal(err, clash ? VMMU_EOVERLAP : 0);
            if (!err) {
                uint64_t span = ((len << 12) + (2 * MiB - 1)) & ~(2 * MiB - 1);
                uint64_t off = model_memfd_place(m, n, span);
                assert_int_equal(memfd_offset_of(vm, id), off);
                m[n++] = (struct model_region){lo, lo + len, id, 1, off, span};
            }
        } else {
            size_t i = rnd() % n;
            if (m[i].live) {
                assert_int_equal(vmmu_region_remove(vm, m[i].id), 0);
                m[i].live = 0;
            }
        }
        for (int probe = 0; probe < 40; probe++) {
            uint64_t gfn;
            size_t k = rnd() % n;
            switch (rnd() % 4) {
            case 0: gfn = m[k].lo; break;
            case 1: gfn = m[k].hi - 1; break;
            case 2: gfn = m[k].hi; break;
            default: gfn = rnd() % gfn_limit; break;
            }
            if (gfn >= gfn_limit)
                continue;
            uint32_t want = model_find(m, n, gfn), got = 0;
            int err = vmmu_region_find(vm, gfn << 12, &got);
            if (want) {
                assert_int_equal(err, 0);
                assert_int_equal(got, want);
            } else {
                assert_int_equal(err, VMMU_EHOLE);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (m[i].live)
            assert_int_equal(vmmu_region_remove(vm, m[i].id), 0);
    assert_int_equal(vm->p2m.nodes, 0); /* every node pruned again */
    vmmu_vm_destroy(vm);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_vm, teardown_vm)
    const struct CMUnitTest tests[] = {
        T(added_ram_is_found_at_both_ends_and_not_beyond),
        T(dirty_logging_an_untouched_region_commits_no_page_state),
        T(a_dirty_bit_in_a_swapped_out_state_page_is_reported),
        T(a_dirty_bit_in_a_state_page_the_host_swapped_out_is_reported),
        T(lookup_of_a_hole_reports_hole_with_no_host_pointer),
        T(each_region_type_is_reported_by_lookup),
        T(removed_region_becomes_a_hole_and_its_range_can_be_reused),
        T(adjacent_regions_touch_without_overlapping),
        T(region_at_the_top_of_a_52_bit_space_is_reachable),
        T(info_describes_the_region_and_its_memfd_mapping),
        T(the_descriptor_its_callbacks_and_its_name_are_copied),
        T(caller_supplied_memory_is_used_and_not_freed),
        T(region_ids_wrap_past_zero_and_past_ids_still_in_use),
        T(removing_a_region_gives_its_memfd_pages_back_to_the_host),
        T(a_1_tib_region_costs_almost_nothing_until_touched),
        T(foreach_visits_in_order_stops_early_and_refuses_changes),
        T(generation_changes_with_every_add_and_remove_only),
        T(bad_regions_are_refused_with_a_clear_code_and_change_nothing),
        T(null_arguments_are_refused),
        cmocka_unit_test(addresses_beyond_the_width_are_out_of_range),
        cmocka_unit_test(region_limit_is_enforced),
        cmocka_unit_test(every_width_maps_its_last_page_and_prunes_on_removal),
        cmocka_unit_test(a_refused_first_ram_region_leaves_the_vm_without_a_memfd),
        cmocka_unit_test(a_ram_region_the_host_cannot_back_is_refused_and_changes_nothing),
        cmocka_unit_test(destroying_the_vm_leaves_caller_memory_mapped_and_intact),
        cmocka_unit_test(random_layouts_agree_with_a_reference_list),
        cmocka_unit_test_setup_teardown(a_removed_regions_memfd_span_is_reused_first_fit,
                                        setup_vm, teardown_vm),
        cmocka_unit_test_setup_teardown(the_memfd_holds_what_the_device_dirty_bitmap_covers,
                                        setup_vm, teardown_vm),
        cmocka_unit_test(a_span_that_cannot_be_listed_is_not_reused),
        cmocka_unit_test_setup_teardown(a_span_that_could_not_be_punched_is_not_reused,
                                        setup_vm, teardown_vm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
