/* SPDX-License-Identifier: MIT */
/*
 * Software TLB benchmarks (4-level paging, 4 KiB guest pages, RAM).
 *
 *   tlb/hit_ns            8-byte guest reads that hit: inline lookup + the load
 *   tlb/raw_load_ns       baseline, same run: the same loads at host = va + constant
 *   tlb/miss_warm_ns      reads that miss the TLB and resume the walk from the
 *                         paging-structure caches (one PTE read), then fill;
 *                         16384 linear pages over the 64 data pages of the hit
 *                         figures, so the read itself hits the data caches
 *   tlb/miss_warm_2regions_ns  the same, with the data pages of odd linear
 *                         pages in a second RAM region (two regions in turn)
 *   tlb/miss_cold_ns      the same reads with the paging-structure caches off:
 *                         a full 4-level walk, then fill
 *   tlb/miss_warm_spread_ns  warm misses whose reads land anywhere in 16 MiB
 *                         (4096 data pages): each read also misses the data caches
 *   tlb/raw_spread_ns     baseline, same run: those reads without the TLB
 *   tlb/hit_jit_ns        the same reads through the JIT sequence of vmmu/tlb.h (BMI hosts)
 *   tlb/hit_lookup_ns     the same reads through vmmu_tlb_lookup() (tlb/hit_ns: the probe)
 *   tlb/flush_empty_ns    vmmu_vcpu_tlb_flush_all() with nothing cached (12 contexts;
 *                         the mean over loops of 10000)
 *   tlb/flush_used10_ns   ... with the current context 10 % full
 *   tlb/flush_full_ns     ... with the current context full (4096 entries)
 *
 * Accesses go in a random order fixed before timing; loads are independent
 * (throughput).  Each figure is the median of BENCH_RUNS runs.
 *
 *   tlb/resize_*          the demand sizing rule against QEMU's 30/70 % rule on one
 *                         stream of growing and shrinking working sets
 *
 *   bench_tlb --callgrind-kernel KIND N   (KIND: hit, probe, jit, raw, miss_warm,
 *                                        miss_warm_2regions, flush_empty) sets up,
 *                                        warms, then performs N accesses,
 *                                        for bench/tlb_instructions.sh
 *   bench_tlb --chart FILE               writes access cost against working-set
 *                                        size (bench/tlb_chart.gp plots it)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_guest.h"
#include "bench_util.h"
#include "tlb/tlb_internal.h"
#include "vmmu/vmmu.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* Guest layout: page tables from TABLES, data at DATA (NDATA pages). Linear
 * pages VA_BASE + i map data page i % NDATA, so the first NDATA pages are a
 * linear image of the data and the raw baseline reads the same bytes. */
#define TABLES (1 * MiB)
#define DATA (64 * MiB)
#define NDATA 4096u
#define NPAGES 65536u /* 256 MiB of linear space, 128 page tables */
#define NADDR (1u << 20) /* addresses drawn before timing */
static const uint64_t VA_BASE = 0x0000100000000000ull;
/* A second linear range for the miss benchmarks: NSMALL_VA pages over only
 * NSMALL data pages (those of the hit benchmark), so that the read after a
 * miss hits the data caches as a read after a hit does, and the figure is
 * the miss itself. */
static const uint64_t VA_SMALL = 0x0000200000000000ull;
#define NSMALL_VA 16384u
#define NSMALL 64u
/* A third range for misses whose data pages alternate between two RAM
 * regions (a PC's memory below and above 4 GiB): odd linear pages map the
 * NSMALL pages of a second region at HIGH_RAM. */
static const uint64_t VA_TWO = 0x0000300000000000ull;
#define HIGH_RAM (4 * GiB)

static void setup(struct bench *b)
{
    uint64_t root = bench_guest_create(b, 128 * MiB, TABLES, "bench_tlb");
    for (uint64_t i = 0; i < NPAGES; i++)
        map(b, root, VA_BASE + i * 4096, DATA + (i % NDATA) * 4096);
    for (uint64_t i = 0; i < NSMALL_VA; i++)
        map(b, root, VA_SMALL + i * 4096, DATA + (i % NSMALL) * 4096);
    struct vmmu_region_desc high = {.type = VMMU_MEM_RAM, .gpa = HIGH_RAM, .size = NSMALL * 4096};
    uint32_t high_id;
    if (vmmu_region_add(b->vm, &high, &high_id))
        bench_die("bench_tlb", "second region");
    for (uint64_t i = 0; i < NSMALL_VA; i++)
        map(b, root, VA_TWO + i * 4096,
            (i & 1 ? HIGH_RAM : DATA) + (i % NSMALL) * 4096);
    for (uint64_t i = 0; i < NDATA; i++)
        memset(b->ram + DATA + i * 4096, (int)i, 4096);
    bench_guest_enter(b, root, "bench_tlb");
    /* Online, as a vCPU's thread runs it (vmmu/tlb.h): a walk made
     * offline is a read-side section of its own, whose entry and exit
     * would be timed with it. */
    if (vmmu_vcpu_online(b->vcpu))
        bench_die("bench_tlb", "online");
}

/* NADDR addresses: a random permutation of @ws pages starting at page
 * @first of the range at @base, repeated, each at a random 8-byte-aligned
 * offset. */
static uint64_t *addresses_at(uint64_t base, unsigned first, unsigned ws, uint64_t *seed)
{
    size_t n = NADDR;
    uint64_t *va = malloc(n * sizeof(*va));
    unsigned *perm = malloc(ws * sizeof(*perm));
    if (!va || !perm)
        exit(1);
    for (unsigned i = 0; i < ws; i++)
        perm[i] = i;
    for (unsigned i = ws - 1; i > 0; i--) {
        unsigned j = (unsigned)(bench_rand(seed) % (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        va[i] = base + (uint64_t)(first + perm[i % ws]) * 4096 + (bench_rand(seed) % 512) * 8;
    free(perm);
    return va;
}

static uint64_t *addresses(unsigned first, unsigned ws, uint64_t *seed)
{
    return addresses_at(VA_BASE, first, ws, seed);
}

/* The measured loops.  noinline so callgrind and the timer see one loop. */
/* Both loops walk the NADDR-entry address array @n times round-robin. */
static __attribute__((noinline, aligned(64))) uint64_t run_tlb(struct vmmu_vcpu *v, const uint64_t *va, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = va[i & (NADDR - 1)];
        const uint64_t *p = vmmu_tlb_lookup_read(v, a, 8);
        if (__builtin_expect(!p, 0))
            p = vmmu_tlb_fill(v, a, 8, 0, NULL);
        sum += *p;
    }
    return sum;
}

/* The same accesses in the form an interpreter uses: the view (table and
 * mask) held in registers across accesses, reloaded after each slow path,
 * and the probe's answer as the branch. */
static __attribute__((noinline, aligned(64))) uint64_t run_probe(struct vmmu_vcpu *v, const uint64_t *va,
                                                    size_t n)
{
    uint64_t sum = 0;
    struct vmmu_tlb_view view = vmmu_tlb_view(v);
    for (size_t i = 0; i < n; i++) {
        uint64_t a = va[i & (NADDR - 1)];
        void *p;
        if (!vmmu_tlb_probe(view, a, 8, VMMU_TLB_READ, &p)) {
            p = vmmu_tlb_fill(v, a, 8, 0, NULL);
            view = vmmu_tlb_view(v);
        }
        sum += *(const uint64_t *)p;
    }
    return sum;
}

/* The sequence docs/tlb.md gives JIT authors for hosts with BMI1 and BMI2
 * (x86-64-v3), written here as the code a JIT emits: the view in registers,
 * then RORX, AND, ANDN, CMP, JNE and the addend's ADD.  The comparison's
 * flags are the branch (asm flag output), exactly like generated code. */
static __attribute__((noinline, aligned(64))) uint64_t run_jit(struct vmmu_vcpu *v, const uint64_t *va, size_t n)
{
    uint64_t sum = 0;
    struct vmmu_tlb_view view = vmmu_tlb_view(v);
    /* The in-page offset bits an aligned 8-byte access must not compare. */
    const uint64_t offset_bits = VMMU_PAGE_SIZE - 8;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = va[i & (NADDR - 1)];
        uintptr_t off;
        uint64_t key;
        int miss;
        __asm__("rorx $7, %[va], %[off]\n\t"
                "and %[mask], %[off]\n\t"
                "andn %[va], %[ob], %[key]\n\t"
                "cmp %[key], (%[tab],%[off])"
                : [off] "=&r"(off), [key] "=&r"(key), "=@ccnz"(miss)
                : [va] "r"(a), [mask] "r"(view.index_mask), [tab] "r"(view.table),
                  [ob] "r"(offset_bits)
                : "memory");
        const uint64_t *p;
        if (__builtin_expect(miss, 0)) {
            p = vmmu_tlb_fill(v, a, 8, 0, NULL);
            view = vmmu_tlb_view(v);
        } else {
            const struct vmmu_tlb_entry *e =
                (const struct vmmu_tlb_entry *)(const void *)((const char *)view.table + off);
            p = (const uint64_t *)(uintptr_t)(a + e->addend);
        }
        sum += *p;
    }
    return sum;
}

static bool host_has_bmi(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
}

static __attribute__((noinline, aligned(64))) uint64_t run_raw(uintptr_t delta, const uint64_t *va, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t *p = (const uint64_t *)(uintptr_t)(va[i & (NADDR - 1)] + delta);
        sum += *p;
    }
    return sum;
}

static uintptr_t raw_delta(struct bench *b)
{
    return (uintptr_t)(b->ram + DATA) - (uintptr_t)VA_BASE;
}

/* The raw loop over addresses of the first range beyond its NDATA pages:
 * the same data reads as through the TLB (page i reads data page
 * i % NDATA), at host = base + (va - VA_BASE) % (NDATA pages). */
static __attribute__((noinline, aligned(64))) uint64_t run_raw_wrapped(uintptr_t base, const uint64_t *va,
                                                          size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = (va[i & (NADDR - 1)] - VA_BASE) & ((uint64_t)NDATA * 4096 - 1);
        sum += *(const uint64_t *)(base + off);
    }
    return sum;
}

/* Let the table size adapt to @va's working set (resizing happens at flushes). */
static void adapt(struct bench *b, const uint64_t *va, size_t n)
{
    for (int i = 0; i < 8; i++) {
        bench_keep(run_tlb(b->vcpu, va, n));
        vmmu_vcpu_tlb_flush_all(b->vcpu);
    }
    bench_keep(run_tlb(b->vcpu, va, n));
}

static double time_tlb(struct bench *b, const uint64_t *va, size_t n)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        bench_keep(run_tlb(b->vcpu, va, n));
        runs[r] = (bench_now_ns() - t0) / (double)n;
    }
    return bench_median(runs, BENCH_RUNS);
}

static double time_loop(uint64_t (*loop)(struct vmmu_vcpu *, const uint64_t *, size_t),
                        struct bench *b, const uint64_t *va, size_t n)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        bench_keep(loop(b->vcpu, va, n));
        runs[r] = (bench_now_ns() - t0) / (double)n;
    }
    return bench_median(runs, BENCH_RUNS);
}

static double time_raw(struct bench *b, const uint64_t *va, size_t n)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        bench_keep(run_raw(raw_delta(b), va, n));
        runs[r] = (bench_now_ns() - t0) / (double)n;
    }
    return bench_median(runs, BENCH_RUNS);
}

enum { HIT_WS = 64, MISS_WS = 16384, N = 1 << 20 };

static void fill_pages(struct bench *b, unsigned count)
{
    for (unsigned i = 0; i < count; i++)
        (void)vmmu_tlb_fill(b->vcpu, VA_BASE + (uint64_t)i * 4096, 8, 0, NULL);
}

/* Median time of one vmmu_vcpu_tlb_flush_all() after filling @fraction of
 * the current context (0: nothing). */
static double time_flush(struct bench *b, double fraction)
{
    enum { REPS = 201 };
    static double t[REPS];
    double clock_cost[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = bench_now_ns();
        clock_cost[r] = bench_now_ns() - t0;
    }
    double overhead = bench_median(clock_cost, REPS);
    for (int r = 0; r < REPS; r++) {
        fill_pages(b, (unsigned)(fraction * vmmu_vcpu_tlb_entries(b->vcpu)));
        double t0 = bench_now_ns();
        vmmu_vcpu_tlb_flush_all(b->vcpu);
        t[r] = bench_now_ns() - t0 - overhead;
    }
    return bench_median(t, REPS);
}

/* ---- Resize policies ------------------------------------------------------ */

/* A guest whose working set grows and shrinks: phases of RESIZE_EPOCHS
 * epochs, each epoch RESIZE_ACCESSES reads then a flush of everything (a
 * context switch: MOV to CR3 without PCIDs).  Both rules see the same
 * stream; the figures are the share of reads that left the inline hit path
 * (table misses: filled or found among the victims) and the mean table size
 * over the epochs (memory: 80 bytes per entry). */
enum { RESIZE_EPOCHS = 12, RESIZE_ACCESSES = 1 << 16 };
static const unsigned resize_phases[] = {64, 2048, 256, 4096, 128, 1024, 64, 3072, 512, 64};
#define RESIZE_NPHASES (sizeof(resize_phases) / sizeof(resize_phases[0]))

struct resize_figures {
    double miss_pct, mean_entries, ns;
};

static struct resize_figures resize_run(uint64_t *const *streams, bool qemu)
{
    struct bench b;
    setup(&b);
    b.vcpu->resize_qemu = qemu;
    vmmu_vcpu_stats_reset(b.vcpu);
    double entries = 0, t = 0;
    for (unsigned p = 0; p < RESIZE_NPHASES; p++) {
        for (unsigned e = 0; e < RESIZE_EPOCHS; e++) {
            entries += vmmu_vcpu_tlb_entries(b.vcpu);
            double t0 = bench_now_ns();
            bench_keep(run_probe(b.vcpu, streams[p], RESIZE_ACCESSES));
            t += bench_now_ns() - t0;
            vmmu_vcpu_tlb_flush_all(b.vcpu);
        }
    }
    struct vmmu_tlb_stats s;
    vmmu_vcpu_stats(b.vcpu, &s);
    double reads = (double)RESIZE_NPHASES * RESIZE_EPOCHS * RESIZE_ACCESSES;
    struct resize_figures f = {
        .miss_pct = 100.0 * (double)(s.misses + s.victim_hits + s.slow_hits) / reads,
        .mean_entries = entries / (RESIZE_NPHASES * RESIZE_EPOCHS),
        .ns = t / reads,
    };
    vmmu_vcpu_destroy(b.vcpu);
    vmmu_vm_destroy(b.vm);
    return f;
}

static void resize_figures(void)
{
    uint64_t seed = 11;
    uint64_t *streams[RESIZE_NPHASES];
    for (unsigned p = 0; p < RESIZE_NPHASES; p++)
        streams[p] = addresses(0, resize_phases[p], &seed);
    struct resize_figures demand = resize_run(streams, false);
    struct resize_figures qemu = resize_run(streams, true);
    bench_figure("tlb/resize_demand_miss_pct", demand.miss_pct, "%");
    bench_figure("tlb/resize_qemu_miss_pct", qemu.miss_pct, "%");
    bench_figure("tlb/resize_demand_mean_entries", demand.mean_entries, "entries");
    bench_figure("tlb/resize_qemu_mean_entries", qemu.mean_entries, "entries");
    bench_figure("tlb/resize_demand_ns", demand.ns, "ns");
    bench_figure("tlb/resize_qemu_ns", qemu.ns, "ns");
    for (unsigned p = 0; p < RESIZE_NPHASES; p++)
        free(streams[p]);
}

/* vmmu_vcpu_tlb_flush_all() of a vCPU that holds nothing: too quick for
 * one clock reading, so the median of BENCH_RUNS loops of 10000. */
static double time_flush_empty(struct bench *b)
{
    enum { FLUSHES = 10000 };
    double runs[BENCH_RUNS];
    vmmu_vcpu_tlb_flush_all(b->vcpu);
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < FLUSHES; i++)
            vmmu_vcpu_tlb_flush_all(b->vcpu);
        runs[r] = (bench_now_ns() - t0) / FLUSHES;
    }
    return bench_median(runs, BENCH_RUNS);
}

static int callgrind_kernel(const char *kind, size_t n)
{
    struct bench b;
    uint64_t seed = 42;
    setup(&b);
    if (!strcmp(kind, "hit") || !strcmp(kind, "raw")) {
        uint64_t *va = addresses(0, HIT_WS, &seed);
        bench_keep(run_tlb(b.vcpu, va, HIT_WS * 4)); /* warm: every page filled */
        if (!strcmp(kind, "hit"))
            bench_keep(run_tlb(b.vcpu, va, n));
        else
            bench_keep(run_raw(raw_delta(&b), va, n));
        return 0;
    }
    if (!strcmp(kind, "jit")) {
        uint64_t *va = addresses(0, HIT_WS, &seed);
        if (!host_has_bmi())
            return 3;
        bench_keep(run_jit(b.vcpu, va, HIT_WS * 4));
        bench_keep(run_jit(b.vcpu, va, n));
        return 0;
    }
    if (!strcmp(kind, "probe")) {
        uint64_t *va = addresses(0, HIT_WS, &seed);
        bench_keep(run_probe(b.vcpu, va, HIT_WS * 4));
        bench_keep(run_probe(b.vcpu, va, n));
        return 0;
    }
    if (!strcmp(kind, "flush_empty")) {
        vmmu_vcpu_tlb_flush_all(b.vcpu);
        for (size_t i = 0; i < n; i++)
            vmmu_vcpu_tlb_flush_all(b.vcpu);
        return 0;
    }
    if (!strcmp(kind, "miss_warm") || !strcmp(kind, "miss_warm_2regions")) {
        uint64_t *va = addresses_at(strcmp(kind, "miss_warm") ? VA_TWO : VA_SMALL, 0, MISS_WS, &seed);
        bench_keep(run_tlb(b.vcpu, va, MISS_WS));
        bench_keep(run_tlb(b.vcpu, va, n));
        return 0;
    }
    fprintf(stderr, "bench_tlb: unknown kernel %s\n", kind);
    return 2;
}

static int chart(const char *path)
{
    FILE *out = fopen(path, "w");
    if (!out)
        return 1;
    static const unsigned sizes[] = {16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536};
    fprintf(out, "# pages  tlb_ns  tlb_no_psc_ns  raw_ns  (4 KiB pages, random order)\n");
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct bench b;
        uint64_t seed = 7;
        setup(&b);
        unsigned ws = sizes[i];
        uint64_t *va = addresses(0, ws, &seed);
        adapt(&b, va, N);
        double tlb = time_loop(run_probe, &b, va, N);
        b.vcpu->psc_off = true;
        vmmu__tlb_warm_refresh(b.vcpu);
        vmmu__tlb_warm_refresh(b.vcpu);
        adapt(&b, va, N);
        double cold = time_loop(run_probe, &b, va, N);
        if (ws <= NDATA)
            fprintf(out, "%u %.3f %.3f %.3f\n", ws, tlb, cold, time_raw(&b, va, N));
        else
            fprintf(out, "%u %.3f %.3f NaN\n", ws, tlb, cold);
        free(va);
        vmmu_vcpu_destroy(b.vcpu);
        vmmu_vm_destroy(b.vm);
    }
    fclose(out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--callgrind-kernel"))
        return callgrind_kernel(argv[2], strtoul(argv[3], NULL, 10));
    if (argc == 3 && !strcmp(argv[1], "--chart"))
        return chart(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: bench_tlb [--callgrind-kernel hit|probe|jit|raw|miss_warm|miss_warm_2regions|flush_empty N | --chart FILE]\n");
        return 2;
    }
    struct bench b;
    uint64_t seed = 1;
    setup(&b);

    uint64_t *hit = addresses(0, HIT_WS, &seed);
    adapt(&b, hit, N);
    bench_figure("tlb/hit_ns", time_loop(run_probe, &b, hit, N), "ns");
    if (host_has_bmi()) {
        if (run_jit(b.vcpu, hit, N) != run_probe(b.vcpu, hit, N)) {
            fprintf(stderr, "bench_tlb: the JIT sequence read other data than the probe\n");
            return 1;
        }
        bench_figure("tlb/hit_jit_ns", time_loop(run_jit, &b, hit, N), "ns");
    }
    bench_figure("tlb/hit_lookup_ns", time_tlb(&b, hit, N), "ns");
    bench_figure("tlb/raw_load_ns", time_raw(&b, hit, N), "ns");

    uint64_t *miss = addresses_at(VA_SMALL, 0, MISS_WS, &seed);
    bench_keep(run_tlb(b.vcpu, miss, N));
    bench_figure("tlb/miss_warm_ns", time_tlb(&b, miss, N), "ns");
    uint64_t *two = addresses_at(VA_TWO, 0, MISS_WS, &seed);
    bench_keep(run_tlb(b.vcpu, two, N));
    bench_figure("tlb/miss_warm_2regions_ns", time_tlb(&b, two, N), "ns");
    free(two);
    b.vcpu->psc_off = true;
    vmmu__tlb_warm_refresh(b.vcpu);
    bench_figure("tlb/miss_cold_ns", time_tlb(&b, miss, N), "ns");
    b.vcpu->psc_off = false;
    vmmu__tlb_warm_refresh(b.vcpu);
    /* The same misses with each read landing anywhere in 16 MiB of data
     * (NDATA pages), and those reads alone without the TLB. */
    uint64_t *spread = addresses(0, MISS_WS, &seed);
    bench_keep(run_tlb(b.vcpu, spread, N));
    bench_figure("tlb/miss_warm_spread_ns", time_tlb(&b, spread, N), "ns");
    {
        double runs[BENCH_RUNS];
        for (int r = 0; r < BENCH_RUNS; r++) {
            double t0 = bench_now_ns();
            bench_keep(run_raw_wrapped((uintptr_t)(b.ram + DATA), spread, N));
            runs[r] = (bench_now_ns() - t0) / (double)N;
        }
        bench_figure("tlb/raw_spread_ns", bench_median(runs, BENCH_RUNS), "ns");
    }
    free(spread);

    vmmu_vcpu_tlb_flush_all(b.vcpu);
    bench_figure("tlb/flush_empty_ns", time_flush_empty(&b), "ns");
    bench_figure("tlb/flush_used10_ns", time_flush(&b, 0.10), "ns");
    /* Let the context grow to its maximum before timing full flushes. */
    for (int i = 0; i < 8; i++) {
        fill_pages(&b, vmmu_vcpu_tlb_entries(b.vcpu));
        vmmu_vcpu_tlb_flush_all(b.vcpu);
    }
    bench_figure("tlb/flush_full_ns", time_flush(&b, 1.0), "ns");

    free(hit);
    free(miss);
    vmmu_vcpu_destroy(b.vcpu);
    vmmu_vm_destroy(b.vm);
    resize_figures();
    return 0;
}
