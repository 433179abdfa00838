/* SPDX-License-Identifier: MIT */
/*
 * Instruction memory access benchmarks (4-level paging, 4 KiB pages, RAM).
 *
 *   access/prepare_ns        vmmu_access_prepare() of 64 bytes in a warm page
 *   access/move_gbps         4 KiB moves: prepare source and destination, then
 *                            vmmu_prepared_move()
 *   access/raw_memmove_gbps  baseline, same run: memmove() of the same 4 KiB
 *   access/latch_record_ns   one 8-byte load recorded by the replay latch (an
 *                            instruction of 4 loads, begin and end included, / 4)
 *   access/latch_replay_ns   the same load served from the latch on re-execution
 *   access/rep_movs_ram_ns   REP MOVSQ of 4 KiB (512 elements) from RAM to RAM,
 *                            per element (vmmu_access_rep_movs() inside
 *                            vmmu_insn_begin/end, called until RCX is 0)
 *   access/rep_movs_mmio_ns  the same into an MMIO page (a write callback per element)
 *   access/rep_movs_device_ns  the same into a device model's page (a device
 *                            handler that answers at once): one element per
 *                            call, since each write may pend
 *   access/rep_movs_mmio_online_ns, access/rep_movs_device_online_ns  the last
 *                            two with the vCPU online (vmmu_vcpu_online()), as
 *                            a consumer runs it; the figures above are taken
 *                            offline, where each guest-physical access opens a
 *                            read-side section of its own
 *
 *   bench_access --callgrind-kernel KIND N   (KIND: probe, probe_call, prepare, move, raw,
 *                                           rep_ram, rep_mmio, rep_device: N pages;
 *                                           store_mmio, store_device: N 8-byte
 *                                           stores outside an instruction;
 *                                           fill_mmio: N vmmu_tlb_fill() calls for an
 *                                           MMIO page whose entry is filled; any of
 *                                           them with "_online": the vCPU online) sets
 *                                           up, warms, then makes N inline probes
 *                                           (vmmu_access_probe_hit), N calls of
 *                                           vmmu_access_probe(), or N plain host
 *                                           loads, for bench/access_instructions.sh
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_guest.h"
#include "bench_util.h"
#include "vmmu/access.h"
#include "vmmu/vmmu.h"

#define MiB (1ull << 20)
#define TABLES (1 * MiB)
#define DATA (16 * MiB)
#define NPAGES 256u
static const uint64_t VA_BASE = 0x0000100000000000ull;

/* REP MOVS destinations: an MMIO page and a device model's page, above
 * the RAM, each mapped after the RAM pages. */
#define MMIO_GPA (64 * MiB)
#define DEVICE_GPA (64 * MiB + 4096)
static const uint64_t VA_MMIO = 0x0000100000000000ull + NPAGES * 4096ull;
static const uint64_t VA_DEVICE = 0x0000100000000000ull + (NPAGES + 1) * 4096ull;
static uint64_t sink;

static int mmio_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque, (void)offset, (void)size;
    *value = sink;
    return 0;
}

static int mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque, (void)offset, (void)size;
    sink += value;
    return 0;
}

static int device_now(void *opaque, struct vmmu_device_req *req)
{
    (void)opaque;
    if (req->write)
        sink += req->data;
    else
        req->data = sink;
    return 0;
}

static void setup(struct bench *b)
{
    uint64_t root = bench_guest_create(b, 64 * MiB, TABLES, "bench_access");
    for (unsigned i = 0; i < NPAGES; i++)
        map(b, root, VA_BASE + (uint64_t)i * 4096, DATA + (uint64_t)i * 4096);
    static const struct vmmu_mmio_ops ops = {.read = mmio_read, .write = mmio_write};
    struct vmmu_region_desc mmio = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                    .mmio = &ops};
    struct vmmu_region_desc dev = {.type = VMMU_MEM_DEVICE, .gpa = DEVICE_GPA, .size = 4096};
    if (vmmu_region_add(b->vm, &mmio, NULL) || vmmu_region_add(b->vm, &dev, NULL) ||
        vmmu_p2m_set_device_handler(b->vm, device_now, NULL))
        bench_die("bench_access", "device regions");
    map(b, root, VA_MMIO, MMIO_GPA);
    map(b, root, VA_DEVICE, DEVICE_GPA);
    bench_guest_enter(b, root, "bench_access");
    /* Warm every page for reads and writes. */
    for (unsigned i = 0; i < NPAGES; i++) {
        uint64_t v = 0;
        struct vmmu_x86_fault f;
        (void)vmmu_access_store(b->vcpu, VA_BASE + (uint64_t)i * 4096, 8, 0, &v, &f);
    }
}

static uint64_t va_of(unsigned i)
{
    return VA_BASE + (uint64_t)(i % NPAGES) * 4096 + (uint64_t)((i * 72) % 4032);
}

static double time_prepare(struct bench *b, unsigned n)
{
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++) {
        (void)vmmu_access_prepare(b->vcpu, va_of(i), 64, 0, &p, &f);
        bench_keep((uint64_t)(uintptr_t)p.page[0].host);
    }
    return (bench_now_ns() - t0) / n;
}

static double time_move(struct bench *b, unsigned n)
{
    struct vmmu_prepared s, d;
    struct vmmu_x86_fault f;
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++) {
        uint64_t src = VA_BASE + (uint64_t)(i % 64) * 4096;
        uint64_t dst = VA_BASE + (uint64_t)(128 + i % 64) * 4096;
        (void)vmmu_access_prepare(b->vcpu, src, 4096, 0, &s, &f);
        (void)vmmu_access_prepare(b->vcpu, dst, 4096, VMMU_X86_ACC_WRITE, &d, &f);
        (void)vmmu_prepared_move(&d, &s, 8, false);
    }
    return 4096.0 * n / (bench_now_ns() - t0);
}

static double time_raw_move(struct bench *b, unsigned n)
{
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++) {
        uint8_t *src = b->ram + DATA + (uint64_t)(i % 64) * 4096;
        uint8_t *dst = b->ram + DATA + (uint64_t)(128 + i % 64) * 4096;
        memmove(dst, src, 4096);
        bench_keep((uint64_t)(uintptr_t)dst);
    }
    return 4096.0 * n / (bench_now_ns() - t0);
}

/* One "instruction" of four 8-byte loads inside the latch. */
static void insn4(struct bench *b, unsigned i, int end_status)
{
    struct vmmu_x86_fault f;
    uint64_t v, sum = 0;
    (void)vmmu_insn_begin(b->vcpu);
    for (unsigned k = 0; k < 4; k++) {
        (void)vmmu_access_load(b->vcpu, va_of(i * 4 + k) & ~7ull, 8, 0, &v, &f);
        sum += v;
    }
    (void)vmmu_insn_end(b->vcpu, end_status);
    bench_keep(sum);
}

static double time_latch_record(struct bench *b, unsigned n)
{
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++)
        insn4(b, i, 0);
    return (bench_now_ns() - t0) / (4.0 * n);
}

static double time_latch_replay(struct bench *b, unsigned n)
{
    insn4(b, 0, VMMU_EPENDING); /* the first pass */
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++)
        insn4(b, 0, VMMU_EPENDING); /* re-executions of the same instruction */
    double ns = (bench_now_ns() - t0) / (4.0 * n);
    (void)vmmu_latch_discard(b->vcpu);
    return ns;
}

/* REP MOVSQ of one page from RAM to @dst, as an interpreter runs it: each
 * call inside vmmu_insn_begin/end, again until RCX is 0.  ns per element. */
static double time_rep_movs(struct bench *b, uint64_t dst, unsigned n)
{
    double t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++) {
        struct vmmu_rep r = {.dst = dst, .src = VA_BASE + (uint64_t)(i % 64) * 4096,
                             .count = 512, .elem = 8};
        struct vmmu_x86_fault f;
        while (r.count) {
            (void)vmmu_insn_begin(b->vcpu);
            int rc = vmmu_access_rep_movs(b->vcpu, &r, r.count, 0, &f);
            (void)vmmu_insn_end(b->vcpu, rc);
            if (rc || f.vector != VMMU_X86_FAULT_NONE)
                bench_die("bench_access", "rep movs");
        }
    }
    bench_keep(sink);
    return (bench_now_ns() - t0) / (512.0 * n);
}

static int kernel(struct bench *b, const char *kind_arg, unsigned n)
{
    struct vmmu_probe p;
    uint64_t sum = 0;
    /* KIND_online: the same with the vCPU online. */
    char kind[32];
    snprintf(kind, sizeof(kind), "%s", kind_arg);
    size_t klen = strlen(kind);
    if (klen > 7 && !strcmp(kind + klen - 7, "_online")) {
        kind[klen - 7] = 0;
        if (vmmu_vcpu_online(b->vcpu))
            bench_die("bench_access", "online");
    }
    if (!strcmp(kind, "probe")) {
        /* The inline hit, with the out-of-line probe behind it as a caller
         * writes it (never taken here: every page is warm). */
        const struct vmmu_access_fast *fast = vmmu_access_fast(b->vcpu);
        for (unsigned i = 0; i < n; i++) {
            uint64_t va = VA_BASE + (uint64_t)(i & 63) * 4096 + 8;
            void *host;
            if (!vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host)) {
                (void)vmmu_access_probe(b->vcpu, va, 8, 0, &p);
                host = p.host;
            }
            sum += *(const uint64_t *)host;
        }
    } else if (!strcmp(kind, "probe_call")) {
        for (unsigned i = 0; i < n; i++) {
            (void)vmmu_access_probe(b->vcpu, VA_BASE + (uint64_t)(i & 63) * 4096 + 8, 8, 0, &p);
            sum += *(const uint64_t *)p.host;
        }
    } else if (!strcmp(kind, "prepare")) {
        /* A prepared 64-byte read (some cross a page), then one 8-byte
         * read through it. */
        struct vmmu_prepared d;
        struct vmmu_x86_fault f;
        for (unsigned i = 0; i < n; i++) {
            uint64_t x = 0;
            (void)vmmu_access_prepare(b->vcpu, va_of(i), 64, 0, &d, &f);
            (void)vmmu_prepared_read(&d, 8, &x, 8);
            sum += x;
        }
    } else if (!strcmp(kind, "rep_ram")) {
        (void)time_rep_movs(b, VA_BASE + 128 * 4096ull, n);
    } else if (!strcmp(kind, "rep_mmio")) {
        (void)time_rep_movs(b, VA_MMIO, n);
    } else if (!strcmp(kind, "rep_device")) {
        (void)time_rep_movs(b, VA_DEVICE, n);
    } else if (!strcmp(kind, "store_mmio") || !strcmp(kind, "store_device")) {
        /* 8-byte stores to the page outside an instruction (no latch): the
         * TLB entry of the page answers, its comparator flagged MMIO. */
        uint64_t va = !strcmp(kind, "store_mmio") ? VA_MMIO : VA_DEVICE;
        struct vmmu_x86_fault f;
        for (unsigned i = 0; i < n; i++) {
            uint64_t x = i;
            if (vmmu_access_store(b->vcpu, va + (i & 511) * 8, 8, 0, &x, &f) ||
                f.vector != VMMU_X86_FAULT_NONE)
                bench_die("bench_access", "store");
        }
        sum = sink;
    } else if (!strcmp(kind, "fill_mmio")) {
        /* What a JIT's slow path does on each access to an MMIO page: the
         * inline hit fails (the comparator is flagged), vmmu_tlb_fill()
         * answers from the entry with the page's gpa for the caller's
         * device dispatch. */
        struct vmmu_tlb_result res;
        for (unsigned i = 0; i < n; i++) {
            if (vmmu_tlb_fill(b->vcpu, VA_MMIO + (i & 511) * 8, 8, VMMU_X86_ACC_WRITE, &res) ||
                res.status != VMMU_TLB_NOT_RAM)
                bench_die("bench_access", "fill_mmio");
            sum += res.gpa;
        }
    } else if (!strcmp(kind, "move")) {
        (void)time_move(b, n);
    } else if (!strcmp(kind, "raw")) {
        for (unsigned i = 0; i < n; i++) {
            const uint64_t *h = (const uint64_t *)(void *)(b->ram + DATA + (uint64_t)(i & 63) * 4096 + 8);
            bench_keep((uint64_t)(uintptr_t)h);
            sum += *h;
        }
    } else {
        fprintf(stderr, "bench_access: unknown kernel %s\n", kind);
        return 1;
    }
    bench_keep(sum);
    return 0;
}

int main(int argc, char **argv)
{
    struct bench b;
    memset(&b, 0, sizeof(b));
    setup(&b);
    if (argc == 4 && !strcmp(argv[1], "--callgrind-kernel"))
        return kernel(&b, argv[2], (unsigned)strtoul(argv[3], NULL, 10));

    double prep[BENCH_RUNS], mv[BENCH_RUNS], raw[BENCH_RUNS], rec[BENCH_RUNS], rep[BENCH_RUNS];
    double rram[BENCH_RUNS], rmmio[BENCH_RUNS], rdev[BENCH_RUNS], rmmio_on[BENCH_RUNS],
        rdev_on[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        prep[r] = time_prepare(&b, 200000);
        mv[r] = time_move(&b, 20000);
        raw[r] = time_raw_move(&b, 20000);
        rec[r] = time_latch_record(&b, 50000);
        rep[r] = time_latch_replay(&b, 50000);
        rram[r] = time_rep_movs(&b, VA_BASE + 128 * 4096ull, 2000);
        rmmio[r] = time_rep_movs(&b, VA_MMIO, 500);
        rdev[r] = time_rep_movs(&b, VA_DEVICE, 500);
    }
    if (vmmu_vcpu_online(b.vcpu))
        bench_die("bench_access", "online");
    for (int r = 0; r < BENCH_RUNS; r++) {
        rmmio_on[r] = time_rep_movs(&b, VA_MMIO, 500);
        rdev_on[r] = time_rep_movs(&b, VA_DEVICE, 500);
    }
    bench_figure("access/prepare_ns", bench_median(prep, BENCH_RUNS), "ns");
    bench_figure("access/move_gbps", bench_median(mv, BENCH_RUNS), "GB/s");
    bench_figure("access/raw_memmove_gbps", bench_median(raw, BENCH_RUNS), "GB/s");
    bench_figure("access/latch_record_ns", bench_median(rec, BENCH_RUNS), "ns");
    bench_figure("access/latch_replay_ns", bench_median(rep, BENCH_RUNS), "ns");
    bench_figure("access/rep_movs_ram_ns", bench_median(rram, BENCH_RUNS), "ns");
    bench_figure("access/rep_movs_mmio_ns", bench_median(rmmio, BENCH_RUNS), "ns");
    bench_figure("access/rep_movs_device_ns", bench_median(rdev, BENCH_RUNS), "ns");
    bench_figure("access/rep_movs_mmio_online_ns", bench_median(rmmio_on, BENCH_RUNS), "ns");
    bench_figure("access/rep_movs_device_online_ns", bench_median(rdev_on, BENCH_RUNS), "ns");
    vmmu_vcpu_destroy(b.vcpu);
    vmmu_vm_destroy(b.vm);
    return 0;
}
