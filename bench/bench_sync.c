/* SPDX-License-Identifier: MIT */
/*
 * Cross-vCPU invalidation figures, side by side with the kernel's own
 * shootdown measured in the same run:
 *   sync/safepoint_ns         vmmu_vcpu_safepoint() with nothing pending
 *   sync/shootdown_1_us       synchronous one-page shootdown, 1 online running target (median)
 *   sync/shootdown_4_us       the same with 4 targets (median)
 *   sync/shootdown_4_p99_us   its 99th percentile
 *   sync/async_flushes_per_s  asynchronous one-page flushes posted to 1 running target
 *   sync/aligned_lock_ns      vmmu_access_rmw() ADD on 8 aligned bytes, 1 running target
 *   sync/split_lock_N_ns      the same on 8 bytes that cross a page (a split lock: every
 *                             other online vCPU parks for it), N = 0, 1, 3 running targets
 *   sync/pageout_pages_per_s  batched page-out of written pages to the backing file
 *   sync/pagein_pages_per_s   batched page-in of those pages
 *   sync/linux_shootdown_us   mprotect() of a page another thread keeps touching,
 *                             minus the same with that thread idle
 *   sync/linux_mprotect_busy_us, sync/linux_mprotect_idle_us  the two medians
 *   sync/reclaim_scan_us      a vCPU holding 256 entries drops the one for a reclaimed
 *                             guest-physical page (scan by gpa) and touches its 256 pages again
 *   sync/reclaim_flushall_us  the alternative: it flushes everything and touches them again
 * Targets are vCPU threads that loop: safe point, a few TLB hits.  The
 * requester is pinned to CPU 0 and target k to CPU k (modulo the CPUs
 * there are), as are the kernel shootdown's two threads; on a 2-CPU
 * machine 4 targets share one core and a synchronous shootdown then
 * waits for the scheduler to run each of them.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_util.h"
#include "sync/sync_internal.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#define RAM_PAGES 4096ull
#define DATA_GPA (1ull << 30)
#define DATA_VA 0x40000000000ull

struct env {
    struct vmmu_vm *vm;
    uint8_t *pt_mem; /* page tables, test-owned, at gpa 0 */
    uint64_t root;
};

static void put64(struct env *e, uint64_t gpa, uint64_t v)
{
    memcpy(e->pt_mem + gpa, &v, 8);
}

static uint64_t get64(struct env *e, uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, e->pt_mem + gpa, 8);
    return v;
}

/* vm: 8 MiB of page-table RAM at 0, RAM_PAGES data pages at DATA_GPA (memfd),
 * mapped at DATA_VA with 4 KiB pages. */
static void env_init(struct env *e)
{
    if (vmmu_vm_create(NULL, &e->vm))
        abort();
    e->pt_mem = aligned_alloc(4096, 8 << 20);
    memset(e->pt_mem, 0, 8 << 20);
    struct vmmu_region_desc pt = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 8 << 20,
                                  .host = e->pt_mem};
    struct vmmu_region_desc data = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA,
                                    .size = RAM_PAGES * 4096};
    if (vmmu_region_add(e->vm, &pt, NULL) || vmmu_region_add(e->vm, &data, NULL))
        abort();
    uint64_t next = 0x1000;
    e->root = next;
    next += 4096;
    const uint64_t P = 1, RW = 2, US = 4, A = 32, D = 64;
    for (uint64_t i = 0; i < RAM_PAGES; i++) {
        uint64_t va = DATA_VA + i * 4096, table = e->root;
        for (unsigned level = 4; level > 1; level--) {
            uint64_t at = table + 8 * ((va >> (12 + 9 * (level - 1))) & 511);
            uint64_t ent = get64(e, at);
            if (!(ent & P)) {
                ent = next | P | RW | US | A;
                next += 4096;
                put64(e, at, ent);
            }
            table = ent & 0x000ffffffffff000ull;
        }
        put64(e, table + 8 * ((va >> 12) & 511), (DATA_GPA + i * 4096) | P | RW | US | A | D);
    }
}

static struct vmmu_vcpu *make_vcpu(struct env *e)
{
    struct vmmu_vcpu *v;
    if (vmmu_vcpu_create(e->vm, NULL, &v))
        abort();
    struct vmmu_x86_regs r = {0};
    r.cr0 = 1 | (1u << 31);
    r.cr4 = 1u << 5;
    r.efer = (1u << 8) | (1u << 10);
    r.cr3 = e->root;
    r.rflags = 2;
    if (vmmu_vcpu_set_state(v, &r))
        abort();
    return v;
}

/* Pin the calling thread to CPU @cpu (modulo the CPUs there are), so that
 * a requester and its target, or the kernel's two threads, run on
 * different cores whenever the machine has two. */
static void pin(unsigned cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2 || getenv("BENCH_SYNC_NOPIN"))
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (unsigned)n, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void unpin(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    CPU_ZERO(&set);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* ---- target vCPU threads ----------------------------------------------------- */

struct target {
    unsigned cpu;
    struct env *e;
    struct vmmu_vcpu *v;
    atomic_int *stop;
    atomic_int ready;
    _Atomic uint64_t beat; /* loop iterations: proof that it is running */
    uint64_t work;
};

/* Wait until @beat moves: its thread is running right now (so a sample
 * measures a running target, not the scheduler). */
static void wait_running(_Atomic uint64_t *beat)
{
    uint64_t b = atomic_load_explicit(beat, memory_order_relaxed);
    for (unsigned i = 0; atomic_load_explicit(beat, memory_order_relaxed) == b; i++)
        if ((i & 1023) == 1023)
            sched_yield();
}

static void *target_main(void *arg)
{
    struct target *t = arg;
    pin(t->cpu);
    vmmu_vcpu_online(t->v);
    atomic_store(&t->ready, 1);
    uint64_t sum = 0, i = 0;
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
        atomic_store_explicit(&t->beat, i, memory_order_relaxed);
        vmmu_vcpu_safepoint(t->v);
        /* a "block" of guest work: a few accesses through the TLB */
        for (int k = 0; k < 4; k++) {
            uint64_t va = DATA_VA + ((i++ & 15) << 12);
            void *h = vmmu_tlb_translate(t->v, va, 8, 0, NULL);
            if (h)
                sum += *(volatile uint64_t *)h;
        }
    }
    t->work = sum;
    vmmu_vcpu_offline(t->v);
    return NULL;
}

static void start_targets(struct env *e, struct target *t, pthread_t *th, int n, atomic_int *stop)
{
    atomic_store(stop, 0);
    for (int i = 0; i < n; i++) {
        t[i].cpu = 1 + (unsigned)i;
        t[i].e = e;
        t[i].v = make_vcpu(e);
        t[i].stop = stop;
        atomic_store(&t[i].ready, 0);
        pthread_create(&th[i], NULL, target_main, &t[i]);
    }
    for (int i = 0; i < n; i++)
        while (!atomic_load(&t[i].ready))
            sched_yield();
}

static void stop_targets(struct target *t, pthread_t *th, int n, atomic_int *stop)
{
    atomic_store(stop, 1);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        vmmu_vcpu_destroy(t[i].v);
    }
}

/* An online vCPU on core 0 and @n running targets on the other cores:
 * what the shootdown and locked-access figures measure from. */
struct crew {
    struct target t[8];
    pthread_t th[8];
    atomic_int stop;
    int n;
    struct vmmu_vcpu *self;
};

static void crew_start(struct env *e, struct crew *c, int n)
{
    c->n = n;
    c->self = make_vcpu(e);
    pin(0);
    vmmu_vcpu_online(c->self);
    start_targets(e, c->t, c->th, n, &c->stop);
}

static void crew_stop(struct crew *c)
{
    stop_targets(c->t, c->th, c->n, &c->stop);
    vmmu_vcpu_offline(c->self);
    vmmu_vcpu_destroy(c->self);
    unpin();
}

/* Median and p99 of @iters synchronous shootdowns to @n targets. */
static void shootdown_figures(struct env *e, int n, int iters, double *median, double *p99)
{
    struct crew c;
    crew_start(e, &c, n);
    struct vmmu_cpuset *set;
    vmmu_cpuset_create(&set);
    for (int i = 0; i < n; i++)
        vmmu_cpuset_add(set, vmmu_vcpu_id(c.t[i].v));
    double *lat = malloc((size_t)iters * sizeof(*lat));
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < iters; i++) {
        f.va = DATA_VA + ((uint64_t)(i & 15) << 12);
        /* With a core for each, start when every target is running; with
         * fewer cores they cannot all run at once, and the figure includes
         * the scheduler's turns. */
        if (n < ncpu)
            for (int k = 0; k < n; k++)
                wait_running(&c.t[k].beat);
        double t0 = bench_now_ns();
        vmmu_shootdown_sync(e->vm, c.self, set, &f);
        lat[i] = bench_now_ns() - t0;
        vmmu_vcpu_safepoint(c.self);
    }
    crew_stop(&c);
    qsort(lat, (size_t)iters, sizeof(*lat), bench_cmp_double);
    *median = lat[iters / 2] / 1000;
    *p99 = lat[iters * 99 / 100] / 1000;
    free(lat);
    vmmu_cpuset_destroy(set);
}

/* Median time of a locked add from an online vCPU with @n running
 * targets: to 8 bytes that cross a page (a split lock: every target parks
 * for it) if @split, else to 8 aligned bytes (a compare-and-swap). */
static double locked_add_ns(struct env *e, int n, bool split)
{
    struct crew c;
    crew_start(e, &c, n);
    enum { ADDS = 2000 };
    double runs[BENCH_RUNS];
    uint64_t va = split ? DATA_VA + 4096 - 4 : DATA_VA + 64;
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < ADDS; i++) {
            uint64_t old;
            struct vmmu_x86_fault f;
            if (vmmu_access_rmw(c.self, va, 8, VMMU_RMW_ADD, 1, &old, 0, &f) ||
                f.vector != VMMU_X86_FAULT_NONE)
                abort();
            vmmu_vcpu_safepoint(c.self);
        }
        runs[r] = (bench_now_ns() - t0) / ADDS;
    }
    crew_stop(&c);
    return bench_median(runs, BENCH_RUNS);
}

static double async_rate(struct env *e)
{
    struct target t[1];
    pthread_t th[1];
    atomic_int stop;
    start_targets(e, t, th, 1, &stop);
    struct vmmu_cpuset *set;
    vmmu_cpuset_create(&set);
    vmmu_cpuset_add(set, vmmu_vcpu_id(t[0].v));
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
    uint64_t n = 0;
    double t0 = bench_now_ns(), t1;
    do {
        for (int k = 0; k < 256; k++, n++) {
            f.va = DATA_VA + ((n & 15) << 12);
            vmmu_shootdown_async(e->vm, NULL, set, &f);
        }
        t1 = bench_now_ns();
    } while (t1 - t0 < 2e8);
    /* every request posted has been acted on before the figure counts it */
    f.type = VMMU_FLUSH_ALL;
    vmmu_shootdown_sync(e->vm, NULL, set, &f);
    t1 = bench_now_ns();
    stop_targets(t, th, 1, &stop);
    vmmu_cpuset_destroy(set);
    return (double)n / ((t1 - t0) / 1e9);
}

/* ---- paging ------------------------------------------------------------------ */

static void paging_rates(struct env *e, double *out_rate, double *in_rate)
{
    struct vmmu_pager *pg;
    struct vmmu_pager_config cfg = {0};
    if (vmmu_pager_create(e->vm, &cfg, &pg))
        abort();
    enum { BATCH = 1024 };
    struct vmmu_gpa_range r = {DATA_GPA, BATCH * 4096};
    double outs[BENCH_RUNS], ins[BENCH_RUNS];
    for (int run = 0; run < BENCH_RUNS; run++) {
        for (uint64_t i = 0; i < BATCH; i++) {
            uint64_t w = i * 0x9e3779b97f4a7c15ull + (uint64_t)run;
            vmmu_gpa_write(e->vm, DATA_GPA + i * 4096, &w, 8, 0, NULL);
        }
        double t0 = bench_now_ns();
        if (vmmu_pager_page_out(pg, &r, 1))
            abort();
        double t1 = bench_now_ns();
        if (vmmu_pager_page_in(pg, &r, 1))
            abort();
        double t2 = bench_now_ns();
        outs[run] = BATCH / ((t1 - t0) / 1e9);
        ins[run] = BATCH / ((t2 - t1) / 1e9);
    }
    *out_rate = bench_median(outs, BENCH_RUNS);
    *in_rate = bench_median(ins, BENCH_RUNS);
    vmmu_pager_destroy(pg);
}

/* ---- the kernel's shootdown ------------------------------------------------------ */

struct toucher {
    volatile uint64_t *page;
    _Atomic uint64_t beat;
    atomic_int stop;
    atomic_int busy; /* 1: keep touching, 0: sleep */
};

static void *toucher_main(void *arg)
{
    struct toucher *t = arg;
    pin(1);
    uint64_t sum = 0;
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        if (atomic_load_explicit(&t->busy, memory_order_relaxed)) {
            sum += t->page[0];
            atomic_store_explicit(&t->beat, sum, memory_order_relaxed);
        }
        else
            usleep(1000);
    }
    bench_keep(sum);
    return NULL;
}

static double mprotect_median(struct toucher *t, int iters, bool busy)
{
    double *lat = malloc((size_t)iters * sizeof(*lat));
    for (int i = 0; i < iters; i++) {
        if (busy)
            wait_running(&t->beat);
        double t0 = bench_now_ns();
        mprotect((void *)t->page, 4096, PROT_READ); /* narrowing: needs a flush */
        lat[i] = bench_now_ns() - t0;
        mprotect((void *)t->page, 4096, PROT_READ | PROT_WRITE);
        if ((i & 63) == 0)
            sched_yield();
    }
    double m = bench_median(lat, iters);
    free(lat);
    return m;
}

static double linux_busy_us, linux_idle_us;

static double linux_shootdown(void)
{
    struct toucher t = {0};
    t.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    t.page[0] = 1;
    pthread_t th;
    pin(0);
    atomic_store(&t.busy, 1);
    pthread_create(&th, NULL, toucher_main, &t);
    usleep(10000);
    double busy = mprotect_median(&t, 20000, true);
    atomic_store(&t.busy, 0);
    usleep(20000);
    double idle = mprotect_median(&t, 20000, false);
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    munmap((void *)t.page, 4096);
    unpin();
    linux_busy_us = busy / 1000;
    linux_idle_us = idle / 1000;
    return (busy - idle) / 1000;
}

/* A safe point with nothing pending: one load and compare, and QSBR's
 * check of the grace-period counter. */
static double safepoint_ns(struct env *e)
{
    struct vmmu_vcpu *v = make_vcpu(e);
    vmmu_vcpu_online(v);
    double runs[BENCH_RUNS];
    enum { N = 2000000 };
    for (int run = 0; run < BENCH_RUNS; run++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < N; i++)
            vmmu_vcpu_safepoint(v);
        runs[run] = (bench_now_ns() - t0) / N;
    }
    vmmu_vcpu_offline(v);
    vmmu_vcpu_destroy(v);
    return bench_median(runs, BENCH_RUNS);
}

/* How a vCPU finds the entries of a reclaimed page: scan by gpa (what
 * vmmu does) against flushing everything, each followed by touching the
 * working set again, which is where a full flush pays. */
static void reclaim_choice(struct env *e, double *scan_us, double *flushall_us)
{
    enum { WS = 256, REPS = 200 };
    struct vmmu_vcpu *v = make_vcpu(e);
    double scan[BENCH_RUNS], all[BENCH_RUNS];
    struct sync_pending gpas, everything = {.want = SYNC_WANT_ALL};
    struct vmmu_gpa_range one = {DATA_GPA + 7 * 4096, 4096};
    vmmu__sync_set_gpas(&gpas, &one, 1);
    uint64_t sum = 0;
    for (int run = 0; run < BENCH_RUNS; run++) {
        for (int pass = 0; pass < 2; pass++) {
            const struct sync_pending *p = pass ? &everything : &gpas;
            for (uint64_t i = 0; i < WS; i++)
                sum += *(volatile uint8_t *)vmmu_tlb_translate(v, DATA_VA + i * 4096, 1, 0, NULL);
            double t0 = bench_now_ns();
            for (int r = 0; r < REPS; r++) {
                vmmu__sync_apply(v, p);
                for (uint64_t i = 0; i < WS; i++)
                    sum += *(volatile uint8_t *)vmmu_tlb_translate(v, DATA_VA + i * 4096, 1, 0,
                                                                   NULL);
            }
            double us = (bench_now_ns() - t0) / REPS / 1000;
            if (pass)
                all[run] = us;
            else
                scan[run] = us;
        }
    }
    bench_keep(sum);
    *scan_us = bench_median(scan, BENCH_RUNS);
    *flushall_us = bench_median(all, BENCH_RUNS);
    vmmu_vcpu_destroy(v);
}

int main(int argc, char **argv)
{
    struct env e;
    env_init(&e);
    if (argc > 1 && !strcmp(argv[1], "--shootdown-only")) {
        double m, p;
        shootdown_figures(&e, 1, 20000, &m, &p);
        bench_figure("sync/shootdown_1_us", m, "us");
        bench_figure("sync/linux_shootdown_us", linux_shootdown(), "us");
        return 0;
    }
    double m1, p1, m4, p4;
    bench_figure("sync/safepoint_ns", safepoint_ns(&e), "ns");
    shootdown_figures(&e, 1, 20000, &m1, &p1);
    bench_figure("sync/shootdown_1_us", m1, "us");
    shootdown_figures(&e, 4, 5000, &m4, &p4);
    bench_figure("sync/shootdown_4_us", m4, "us");
    bench_figure("sync/shootdown_4_p99_us", p4, "us");
    bench_figure("sync/async_flushes_per_s", async_rate(&e), "flushes/s");
    bench_figure("sync/aligned_lock_ns", locked_add_ns(&e, 1, false), "ns");
    bench_figure("sync/split_lock_0_ns", locked_add_ns(&e, 0, true), "ns");
    bench_figure("sync/split_lock_1_ns", locked_add_ns(&e, 1, true), "ns");
    bench_figure("sync/split_lock_3_ns", locked_add_ns(&e, 3, true), "ns");
    double pout, pin;
    paging_rates(&e, &pout, &pin);
    bench_figure("sync/pageout_pages_per_s", pout, "pages/s");
    bench_figure("sync/pagein_pages_per_s", pin, "pages/s");
    bench_figure("sync/linux_shootdown_us", linux_shootdown(), "us");
    bench_figure("sync/linux_mprotect_busy_us", linux_busy_us, "us");
    bench_figure("sync/linux_mprotect_idle_us", linux_idle_us, "us");
    double scan, flushall;
    reclaim_choice(&e, &scan, &flushall);
    bench_figure("sync/reclaim_scan_us", scan, "us");
    bench_figure("sync/reclaim_flushall_us", flushall, "us");
    vmmu_vm_destroy(e.vm);
    free(e.pt_mem);
    return 0;
}
