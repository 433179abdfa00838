/* SPDX-License-Identifier: MIT */
/*
 * Guest-physical map benchmarks.
 *
 *   p2m/lookup_ns          random vmmu_p2m_lookup() over a dense 4 GiB PC layout
 *   p2m/flat_lookup_ns     baseline, same run: the same addresses through a flat
 *                          array of 8-byte entries, one per page (the simplest
 *                          map there is, 2 MiB per GiB of address space)
 *   p2m/lookup_sparse_ns   random lookups over a sparse 1 TiB layout of 500
 *                          regions with unaligned edges (half inside regions)
 *   p2m/bytes_per_gib      map metadata per GiB of guest RAM (PC layout)
 *   p2m/bytes_per_gib_sparse  the same for the sparse layout
 *
 * Addresses are drawn before timing; each figure is the median of
 * BENCH_RUNS runs.  Lookups are independent (throughput, not latency).
 *
 *   bench_p2m --callgrind-kernel N   builds the PC layout and performs N
 *                                    lookups, for bench/p2m_instructions.sh
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/vm_internal.h"
#include "vmmu/vmmu.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

enum { NADDR = 1 << 20, REPS = 8 };

static int zero_read(void *o, uint64_t off, unsigned size, uint64_t *v)
{
    (void)o, (void)off, (void)size;
    *v = 0;
    return 0;
}
static const struct vmmu_mmio_ops zero_ops = {.read = zero_read};

static void add(struct vmmu_vm *vm, enum vmmu_mem_type type, uint64_t gpa, uint64_t size)
{
    struct vmmu_region_desc d = {.type = type, .gpa = gpa, .size = size};
    if (type == VMMU_MEM_MMIO)
        d.mmio = &zero_ops;
    int err = vmmu_region_add(vm, &d, NULL);
    if (err) {
        fprintf(stderr, "bench_p2m: region at 0x%llx: %s\n", (unsigned long long)gpa,
                vmmu_strerror(err));
        exit(1);
    }
}

/* A PC-like layout filling the first 4 GiB: low RAM, VGA and BIOS ROMs,
 * RAM to 3 GiB, PCI MMIO windows, LAPIC/IOAPIC pages, firmware ROM. */
static uint64_t pc_layout(struct vmmu_vm *vm)
{
    add(vm, VMMU_MEM_RAM, 0, 640 * KiB);
    add(vm, VMMU_MEM_MMIO, 640 * KiB, 128 * KiB);
    add(vm, VMMU_MEM_ROM, 768 * KiB, 256 * KiB);
    add(vm, VMMU_MEM_RAM, 1 * MiB, 3 * GiB - 1 * MiB);
    add(vm, VMMU_MEM_MMIO, 3 * GiB, 512 * MiB);
    add(vm, VMMU_MEM_DEVICE, 3 * GiB + 512 * MiB, 256 * MiB);
    add(vm, VMMU_MEM_MMIO, 0xfec00000, 4 * KiB);
    add(vm, VMMU_MEM_MMIO, 0xfee00000, 4 * KiB);
    add(vm, VMMU_MEM_ROM, 4 * GiB - 16 * MiB, 16 * MiB);
    return 640 * KiB + 3 * GiB - 1 * MiB + 256 * KiB + 16 * MiB; /* RAM + ROM bytes */
}

static uint64_t sparse_layout(struct vmmu_vm *vm, uint64_t *seed, uint64_t *starts, int n)
{
    uint64_t ram = 0;
    /* One region per 2 GiB window of the 1 TiB space, at a random 4 KiB
     * offset and with a random size from 4 KiB to ~1 GiB. */
    for (int i = 0; i < n; i++) {
        uint64_t window = (uint64_t)i * 2 * GiB;
        uint64_t off = (bench_rand(seed) % (512 * MiB)) & VMMU_PAGE_MASK;
        uint64_t size = ((bench_rand(seed) % (1 * GiB)) & VMMU_PAGE_MASK) + 4 * KiB;
        enum vmmu_mem_type t = i % 10 == 9 ? VMMU_MEM_MMIO : VMMU_MEM_RAM;
        add(vm, t, window + off, size);
        starts[2 * i] = window + off;
        starts[2 * i + 1] = size;
        if (t == VMMU_MEM_RAM)
            ram += size;
    }
    return ram;
}

static double time_lookups(struct vmmu_vm *vm, const uint64_t *addr)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        uint64_t sum = 0;
        double t0 = bench_now_ns();
        for (int rep = 0; rep < REPS; rep++) {
            for (int i = 0; i < NADDR; i++) {
                struct vmmu_p2m_entry e;
                vmmu_p2m_lookup(vm, addr[i], &e);
                sum += (uintptr_t)e.hva + e.type;
            }
        }
        runs[r] = (bench_now_ns() - t0) / ((double)NADDR * REPS);
        bench_keep(sum);
    }
    return bench_median(runs, BENCH_RUNS);
}

static double time_flat(const uint64_t *flat, const uint64_t *addr)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        uint64_t sum = 0;
        double t0 = bench_now_ns();
        for (int rep = 0; rep < REPS; rep++)
            for (int i = 0; i < NADDR; i++)
                sum += flat[addr[i] >> VMMU_PAGE_SHIFT] + (addr[i] & 0xfff);
        runs[r] = (bench_now_ns() - t0) / ((double)NADDR * REPS);
        bench_keep(sum);
    }
    return bench_median(runs, BENCH_RUNS);
}

static int callgrind_kernel(unsigned long n, uint64_t *addr, uint64_t *seed)
{
    struct vmmu_vm *vm;
    if (vmmu_vm_create(NULL, &vm))
        return 1;
    pc_layout(vm);
    for (int i = 0; i < NADDR; i++)
        addr[i] = bench_rand(seed) % (4 * GiB);
    uint64_t sum = 0;
    for (unsigned long i = 0; i < n; i++) {
        struct vmmu_p2m_entry e;
        vmmu_p2m_lookup(vm, addr[i & (NADDR - 1)], &e);
        sum += (uintptr_t)e.hva;
    }
    bench_keep(sum);
    vmmu_vm_destroy(vm);
    free(addr);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 0x1234567887654321ull;
    uint64_t *addr = malloc(NADDR * sizeof(*addr));
    if (!addr)
        return 1;
    if (argc == 3 && !strcmp(argv[1], "--callgrind-kernel"))
        return callgrind_kernel(strtoul(argv[2], NULL, 10), addr, &seed);
    if (argc != 1) {
        fprintf(stderr, "usage: bench_p2m [--callgrind-kernel N]\n");
        return 2;
    }

    /* dense 4 GiB */
    struct vmmu_vm *vm;
    if (vmmu_vm_create(NULL, &vm))
        return 1;
    uint64_t backed = pc_layout(vm);
    for (int i = 0; i < NADDR; i++)
        addr[i] = bench_rand(&seed) % (4 * GiB);
    double dense = time_lookups(vm, addr);

    uint64_t npages = 4 * GiB >> VMMU_PAGE_SHIFT;
    uint64_t *flat = malloc(npages * sizeof(*flat));
    if (!flat)
        return 1;
    for (uint64_t p = 0; p < npages; p++)
        flat[p] = p << VMMU_PAGE_SHIFT; /* touch every entry before timing */
    double flat_ns = time_flat(flat, addr);
    free(flat);
    double dense_bytes = (double)vmmu__p2m_metadata_bytes(vm) / ((double)backed / GiB);
    vmmu_vm_destroy(vm);

    /* sparse 1 TiB, 500 regions */
    enum { NREG = 500 };
    static uint64_t regs[2 * NREG];
    if (vmmu_vm_create(NULL, &vm))
        return 1;
    uint64_t ram = sparse_layout(vm, &seed, regs, NREG);
    for (int i = 0; i < NADDR; i++) {
        int k = (int)(bench_rand(&seed) % NREG);
        addr[i] = i % 2 ? regs[2 * k] + bench_rand(&seed) % regs[2 * k + 1]
                        : bench_rand(&seed) % (1 * TiB);
    }
    double sparse = time_lookups(vm, addr);
    double sparse_bytes = (double)vmmu__p2m_metadata_bytes(vm) / ((double)ram / GiB);
    vmmu_vm_destroy(vm);

    bench_figure("p2m/lookup_ns", dense, "ns");
    bench_figure("p2m/flat_lookup_ns", flat_ns, "ns");
    bench_figure("p2m/lookup_over_flat", dense / flat_ns, "x");
    bench_figure("p2m/lookup_sparse_ns", sparse, "ns");
    bench_figure("p2m/bytes_per_gib", dense_bytes, "bytes");
    bench_figure("p2m/bytes_per_page", dense_bytes / (GiB >> VMMU_PAGE_SHIFT), "bytes");
    bench_figure("p2m/bytes_per_gib_sparse", sparse_bytes, "bytes");
    free(addr);
    return 0;
}
