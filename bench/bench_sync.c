/* SPDX-License-Identifier: MIT */
/*
 * Cross-vCPU invalidation figures, side by side with the kernel's own
 * shootdown measured in the same run:
 *   sync/shootdown_1_us       synchronous one-page shootdown, 1 online running target (median)
 *   sync/shootdown_4_us       the same with 4 targets (median)
 *   sync/shootdown_4_p99_us   its 99th percentile
 *   sync/async_flushes_per_s  asynchronous one-page flushes posted to 1 running target
 *   sync/pageout_pages_per_s  batched page-out of written pages to the backing file
 *   sync/pagein_pages_per_s   batched page-in of those pages
 *   sync/linux_shootdown_us   mprotect() of a page another thread keeps touching,
 *                             minus the same with that thread idle
 * Targets are vCPU threads that loop: safe point, a few TLB hits.  This
 * machine may have fewer cores than threads; with 4 targets they share.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_util.h"
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

/* ---- target vCPU threads ----------------------------------------------------- */

struct target {
    struct env *e;
    struct vmmu_vcpu *v;
    atomic_int *stop;
    atomic_int ready;
    uint64_t work;
};

static void *target_main(void *arg)
{
    struct target *t = arg;
    vmmu_vcpu_online(t->v);
    atomic_store(&t->ready, 1);
    uint64_t sum = 0, i = 0;
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
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

/* Median and p99 of @iters synchronous shootdowns to @n targets. */
static void shootdown_figures(struct env *e, int n, int iters, double *median, double *p99)
{
    struct target t[8];
    pthread_t th[8];
    atomic_int stop;
    struct vmmu_vcpu *self = make_vcpu(e);
    vmmu_vcpu_online(self);
    start_targets(e, t, th, n, &stop);
    struct vmmu_cpuset *set;
    vmmu_cpuset_create(&set);
    for (int i = 0; i < n; i++)
        vmmu_cpuset_add(set, vmmu_vcpu_id(t[i].v));
    double *lat = malloc((size_t)iters * sizeof(*lat));
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
    for (int i = 0; i < iters; i++) {
        f.va = DATA_VA + ((uint64_t)(i & 15) << 12);
        double t0 = bench_now_ns();
        vmmu_shootdown_sync(e->vm, self, set, &f);
        lat[i] = bench_now_ns() - t0;
        vmmu_vcpu_safepoint(self);
    }
    stop_targets(t, th, n, &stop);
    qsort(lat, (size_t)iters, sizeof(*lat), bench_cmp_double);
    *median = lat[iters / 2] / 1000;
    *p99 = lat[iters * 99 / 100] / 1000;
    free(lat);
    vmmu_cpuset_destroy(set);
    vmmu_vcpu_offline(self);
    vmmu_vcpu_destroy(self);
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
    atomic_int stop;
    atomic_int busy; /* 1: keep touching, 0: sleep */
};

static void *toucher_main(void *arg)
{
    struct toucher *t = arg;
    uint64_t sum = 0;
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        if (atomic_load_explicit(&t->busy, memory_order_relaxed))
            sum += t->page[0];
        else
            usleep(1000);
    }
    bench_keep(sum);
    return NULL;
}

static double mprotect_median(struct toucher *t, int iters)
{
    double *lat = malloc((size_t)iters * sizeof(*lat));
    for (int i = 0; i < iters; i++) {
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

static double linux_shootdown(void)
{
    struct toucher t = {0};
    t.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    t.page[0] = 1;
    pthread_t th;
    atomic_store(&t.busy, 1);
    pthread_create(&th, NULL, toucher_main, &t);
    usleep(10000);
    double busy = mprotect_median(&t, 20000);
    atomic_store(&t.busy, 0);
    usleep(20000);
    double idle = mprotect_median(&t, 20000);
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    munmap((void *)t.page, 4096);
    return (busy - idle) / 1000;
}

int main(void)
{
    struct env e;
    env_init(&e);
    double m1, p1, m4, p4;
    shootdown_figures(&e, 1, 20000, &m1, &p1);
    bench_figure("sync/shootdown_1_us", m1, "us");
    shootdown_figures(&e, 4, 5000, &m4, &p4);
    bench_figure("sync/shootdown_4_us", m4, "us");
    bench_figure("sync/shootdown_4_p99_us", p4, "us");
    bench_figure("sync/async_flushes_per_s", async_rate(&e), "flushes/s");
    double pout, pin;
    paging_rates(&e, &pout, &pin);
    bench_figure("sync/pageout_pages_per_s", pout, "pages/s");
    bench_figure("sync/pagein_pages_per_s", pin, "pages/s");
    bench_figure("sync/linux_shootdown_us", linux_shootdown(), "us");
    vmmu_vm_destroy(e.vm);
    free(e.pt_mem);
    return 0;
}
