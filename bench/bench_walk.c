/* SPDX-License-Identifier: MIT */
/*
 * x86 page-walk benchmarks.
 *
 *   walk/4level_4k_ns   vmmu_x86_walk() of a read through 4-level tables to
 *                       4 KiB pages
 *   walk/4level_2m_ns   the same to 2 MiB pages (one level fewer)
 *   walk/5level_4k_ns   5-level tables to 4 KiB pages
 *
 * The tables map 4096 pages spread over 8 page tables (2 MiB leaves: 4096
 * over 8 page directories) in 1 GiB of guest RAM; the linear addresses are
 * drawn in random order before timing.  Page tables are warm: one pass sets
 * every accessed bit first, so the timed walks read entries and write
 * nothing, as in steady state.  Walks are independent (throughput).  Each
 * figure is the median of BENCH_RUNS runs.
 *
 *   bench_walk --callgrind-kernel N   only builds the tables and performs N
 *                                     4-level 4 KiB walks, for
 *                                     bench/walk_instructions.sh
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "vmmu/vmmu.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

enum { NPAGES = 4096, NTABLES = 8, WALKS = 1 << 20 };

#define PTE_P 1ull
#define PTE_RW 2ull
#define PTE_US 4ull
#define PTE_PS 128ull

struct setup {
    struct vmmu_vm *vm;
    struct vmmu_x86_paging pg;
    uint64_t next; /* next free table page */
    uint64_t va[NPAGES];
};

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_walk: %s: %s\n", what, vmmu_strerror(err));
    exit(1);
}

static uint64_t new_table(struct setup *s)
{
    uint64_t gpa = s->next;
    s->next += 4096;
    return gpa; /* vmmu-allocated RAM reads as zero */
}

static uint64_t rd(struct setup *s, uint64_t gpa)
{
    uint64_t v;
    int err = vmmu_gpa_read(s->vm, gpa, &v, 8, 0, NULL);
    if (err)
        die("read", err);
    return v;
}

static void wr(struct setup *s, uint64_t gpa, uint64_t v)
{
    int err = vmmu_gpa_write(s->vm, gpa, &v, 8, 0, NULL);
    if (err)
        die("write", err);
}

/* Map @va to @frame with a leaf at @leaf_level under the root at @root. */
static void map(struct setup *s, uint64_t root, unsigned top, uint64_t va, unsigned leaf_level,
                uint64_t frame)
{
    uint64_t table = root;
    for (unsigned level = top; level > leaf_level; level--) {
        uint64_t at = table + 8 * ((va >> (12 + 9 * (level - 1))) & 511);
        uint64_t e = rd(s, at);
        if (!(e & PTE_P)) {
            e = new_table(s) | PTE_P | PTE_RW | PTE_US;
            wr(s, at, e);
        }
        table = e & 0x000ffffffffff000ull;
    }
    uint64_t leaf = frame | PTE_P | PTE_RW | PTE_US | (leaf_level > 1 ? PTE_PS : 0);
    wr(s, table + 8 * ((va >> (12 + 9 * (leaf_level - 1))) & 511), leaf);
}

/* Build a vm and tables for one figure.  @leaf_level 1 (4 KiB) or 2 (2 MiB). */
static void build(struct setup *s, unsigned top, unsigned leaf_level)
{
    memset(s, 0, sizeof(*s));
    int err = vmmu_vm_create(NULL, &s->vm);
    if (err)
        die("vm", err);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 * GiB, .name = "ram"};
    if ((err = vmmu_region_add(s->vm, &d, NULL)))
        die("region", err);
    if ((err = vmmu_x86_paging_init(&s->pg, s->vm, NULL)))
        die("paging", err);
    s->next = 16 * MiB;
    uint64_t root = new_table(s);

    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint64_t page = leaf_level == 1 ? 4096 : 2 * MiB;
    /* NPAGES pages in NTABLES runs of 512, each run in its own last-level
     * table, at scattered places of the canonical lower half. */
    for (unsigned i = 0; i < NPAGES; i++) {
        unsigned run = i / 512, slot = i % 512;
        /* Top-level index run*29+1 <= 204: the canonical lower half. */
        uint64_t base = (uint64_t)(run * 29 + 1) << (top == 5 ? 48 : 39);
        uint64_t va = base + (uint64_t)slot * page;
        uint64_t frame = leaf_level == 1 ? (uint64_t)(bench_rand(&seed) % (256 * 1024)) << 12
                                         : (uint64_t)(bench_rand(&seed) % 512) << 21;
        map(s, root, top, va, leaf_level, frame);
        s->va[i] = va + (bench_rand(&seed) & 0xfff);
    }
    /* Random order. */
    for (unsigned i = NPAGES - 1; i > 0; i--) {
        unsigned j = (unsigned)(bench_rand(&seed) % (i + 1));
        uint64_t t = s->va[i];
        s->va[i] = s->va[j];
        s->va[j] = t;
    }

    struct vmmu_x86_regs r = {.cr0 = 0x80010011, .cr3 = root, .cr4 = 0x20, .efer = 0xd00,
                              .rflags = 2};
    if (top == 5)
        r.cr4 |= 1ull << 12;
    if ((err = vmmu_x86_set_state(&s->pg, &r)))
        die("state", err);
    /* Warm: set every A bit once. */
    for (unsigned i = 0; i < NPAGES; i++) {
        struct vmmu_x86_walk w;
        if (vmmu_x86_walk(&s->pg, s->va[i], 0, &w) || !w.ok) {
            fprintf(stderr, "bench_walk: setup walk of %#llx failed\n",
                    (unsigned long long)s->va[i]);
            exit(1);
        }
    }
}

static uint64_t walk_many(struct setup *s, unsigned n)
{
    uint64_t sum = 0;
    struct vmmu_x86_walk w;
    for (unsigned i = 0; i < n; i++) {
        vmmu_x86_walk(&s->pg, s->va[i % NPAGES], 0, &w);
        sum += w.gpa;
    }
    return sum;
}

static double measure(unsigned top, unsigned leaf_level)
{
    struct setup *s = malloc(sizeof(*s));
    if (!s)
        exit(1);
    build(s, top, leaf_level);
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        bench_keep(walk_many(s, WALKS));
        runs[r] = (bench_now_ns() - t0) / WALKS;
    }
    vmmu_vm_destroy(s->vm);
    free(s);
    return bench_median(runs, BENCH_RUNS);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--callgrind-kernel")) {
        unsigned n = (unsigned)strtoul(argv[2], NULL, 10);
        struct setup *s = malloc(sizeof(*s));
        if (!s)
            return 1;
        build(s, 4, 1);
        bench_keep(walk_many(s, n));
        vmmu_vm_destroy(s->vm);
        free(s);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: bench_walk [--callgrind-kernel N]\n");
        return 2;
    }
    bench_figure("walk/4level_4k_ns", measure(4, 1), "ns");
    bench_figure("walk/4level_2m_ns", measure(4, 2), "ns");
    bench_figure("walk/5level_4k_ns", measure(5, 1), "ns");
    return 0;
}
