/* SPDX-License-Identifier: MIT */
/*
 * `vmmu demo`: a newcomer's first look.  Builds a small vm with RAM, ROM,
 * an MMIO device and a device-model range, performs accesses through the
 * guest-physical API and says what happened, one line each.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"
#include "vmmu/vmmu.h"

/* A tiny MMIO device: register 0 counts the reads of it, register 8 holds
 * the last value written, everything else reads as zero. */
struct counter_dev {
    uint64_t reads, last_write;
    unsigned calls;
};

static int counter_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct counter_dev *d = opaque;
    d->calls++;
    *value = offset == 0 ? ++d->reads : offset == 8 ? d->last_write : 0;
    (void)size;
    return 0;
}

static int counter_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct counter_dev *d = opaque;
    d->calls++;
    if (offset != 8 || size != 8)
        return -1; /* the device only takes 8-byte writes to register 8 */
    d->last_write = value;
    return 0;
}

static int print_region(const struct vmmu_region_info *info, void *arg)
{
    FILE *out = arg;
    fprintf(out, "  region %" PRIu32 ": %-6s gpa 0x%010" PRIx64 "-0x%010" PRIx64 " %s\n", info->id,
            vmmu_mem_type_name(info->type), info->gpa, info->gpa + info->size - 1, info->name);
    return 0;
}

static void report(FILE *out, const char *what, int err)
{
    fprintf(out, "  %-52s -> %s\n", what, err ? vmmu_error_name(err) : "ok");
}

int vmmu_tool_demo(int argc, char **argv)
{
    static const char usage[] = "usage: vmmu demo\n"
                                "Builds a small vm (RAM, ROM, MMIO, a device-model range, holes),\n"
                                "performs accesses and says what each one did.  No options.\n";
    if (argc > 1) {
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        fprintf(stderr, "vmmu demo: unexpected argument '%s'\n%s", argv[1], usage);
        return 2;
    }
    FILE *out = stdout;
    struct vmmu_vm *vm;
    struct vmmu_vm_config cfg = {.gpa_bits = 40, .name = "demo"};
    int err = vmmu_vm_create(&cfg, &vm);
    if (err) {
        fprintf(stderr, "vmmu demo: cannot create vm: %s\n", vmmu_strerror(err));
        return 1;
    }

    static const uint8_t firmware[] = "vmmu demo firmware";
    struct counter_dev dev = {0};
    const struct vmmu_mmio_ops ops = {.read = counter_read, .write = counter_write};
    const struct vmmu_region_desc regions[] = {
        {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1ull << 30, .name = "ram-low",
         .flags = VMMU_REGION_LOG_DIRTY},
        {.type = VMMU_MEM_RAM, .gpa = 1ull << 36, .size = 1ull << 39, .name = "ram-512g"},
        {.type = VMMU_MEM_ROM, .gpa = 0xfff00000, .size = 1 << 20, .name = "firmware",
         .flags = VMMU_REGION_ROM_REPORT_WRITES},
        {.type = VMMU_MEM_MMIO, .gpa = 0xfee00000, .size = 4096, .name = "counter",
         .mmio = &ops, .opaque = &dev},
        {.type = VMMU_MEM_DEVICE, .gpa = 0xfe000000, .size = 1 << 16, .name = "dm-nic"},
    };
    fprintf(out, "vmmu %s demo: a vm with a 40-bit guest-physical space\n", vmmu_version());
    for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
        err = vmmu_region_add(vm, &regions[i], NULL);
        if (err) {
            fprintf(stderr, "vmmu demo: adding %s: %s\n", regions[i].name, vmmu_strerror(err));
            vmmu_vm_destroy(vm);
            return 1;
        }
    }
    vmmu_region_foreach(vm, print_region, out);

    fprintf(out, "accesses:\n");
    err = vmmu_gpa_write(vm, 0xfff00000, firmware, sizeof(firmware), VMMU_GPA_ROM_WRITE, NULL);
    report(out, "load firmware into ROM (loader flag)", err);

    char text[64] = {0};
    err = vmmu_gpa_read(vm, 0xfff00000, text, sizeof(firmware), 0, NULL);
    fprintf(out, "  %-52s -> %s \"%s\"\n", "read ROM", err ? vmmu_error_name(err) : "ok", text);

    err = vmmu_gpa_write(vm, 0xfff00000, "x", 1, 0, NULL);
    report(out, "guest write to ROM (reports writes)", err);

    static const char msg[] = "hello across a page boundary";
    err = vmmu_gpa_write(vm, 0x1ff0, msg, sizeof(msg), 0, NULL);
    report(out, "write 29 bytes at 0x1ff0 (crosses a page)", err);
    memset(text, 0, sizeof(text));
    err = vmmu_gpa_read(vm, 0x1ff0, text, sizeof(msg), 0, NULL);
    fprintf(out, "  %-52s -> %s \"%s\"\n", "read it back", err ? vmmu_error_name(err) : "ok", text);

    uint32_t st1 = 0, st2 = 0, st3 = 0;
    vmmu_page_state_get(vm, 0x1000, &st1);
    vmmu_page_state_get(vm, 0x2000, &st2);
    vmmu_page_state_get(vm, 0x3000, &st3);
    fprintf(out, "  %-52s -> %s %s %s\n", "dirty log of pages 1, 2, 3",
            st1 & VMMU_PAGE_DIRTY ? "dirty" : "clean", st2 & VMMU_PAGE_DIRTY ? "dirty" : "clean",
            st3 & VMMU_PAGE_DIRTY ? "dirty" : "clean");

    uint64_t far = (1ull << 36) + (300ull << 30) + 123;
    err = vmmu_gpa_write(vm, far, msg, 5, 0, NULL);
    report(out, "write into the 512 GiB region at +300 GiB", err);

    uint64_t v = 0;
    err = vmmu_gpa_read(vm, 0xfee00000, &v, 8, 0, NULL);
    fprintf(out, "  %-52s -> %s value %" PRIu64 "\n", "MMIO read of the counter",
            err ? vmmu_error_name(err) : "ok", v);
    err = vmmu_gpa_read(vm, 0xfee00000, &v, 8, 0, NULL);
    fprintf(out, "  %-52s -> %s value %" PRIu64 "\n", "MMIO read again",
            err ? vmmu_error_name(err) : "ok", v);
    uint64_t w = 0x1122334455667788ull;
    err = vmmu_gpa_write(vm, 0xfee00008, &w, 8, 0, NULL);
    report(out, "MMIO 8-byte write to register 8", err);
    uint32_t w4 = 1;
    uint64_t failed = 0;
    err = vmmu_gpa_write(vm, 0xfee00008, &w4, 4, 0, &failed);
    fprintf(out, "  %-52s -> %s at 0x%" PRIx64 "\n", "MMIO 4-byte write (device refuses)",
            vmmu_error_name(err), failed);

    err = vmmu_gpa_read(vm, 0xfe000000, &v, 4, 0, NULL);
    report(out, "read from the device-model range", err);
    err = vmmu_gpa_read(vm, 0x80000000, &v, 4, 0, &failed);
    report(out, "read from a hole", err);
    v = 0;
    err = vmmu_gpa_read(vm, 0x80000000, &v, 4, VMMU_GPA_UNBACKED_ONES, NULL);
    fprintf(out, "  %-52s -> %s value 0x%" PRIx64 "\n", "read from a hole, as hardware would",
            err ? vmmu_error_name(err) : "ok", v);
    char two[2];
    err = vmmu_gpa_read(vm, (1ull << 30) - 1, two, 2, 0, &failed);
    fprintf(out, "  %-52s -> %s at 0x%" PRIx64 "\n", "read running off the end of RAM",
            vmmu_error_name(err), failed);

    const struct vmmu_region_desc clash = {.type = VMMU_MEM_RAM, .gpa = 0x3ff00000,
                                           .size = 2 << 20};
    err = vmmu_region_add(vm, &clash, NULL);
    report(out, "add RAM overlapping ram-low", err);
    err = vmmu_gpa_read(vm, 1ull << 40, &v, 1, 0, NULL);
    report(out, "read beyond the 40-bit width", err);

    fprintf(out, "the MMIO device saw %u callbacks; map generation %" PRIu64 "\n", dev.calls,
            vmmu_p2m_generation(vm));
    vmmu_vm_destroy(vm);
    return 0;
}
