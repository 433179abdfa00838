/* SPDX-License-Identifier: MIT */
/*
 * Device-model figures:
 *   dm/mmio_inproc_us        a vCPU's MMIO read served by an in-process callback
 *   dm/mmio_outofproc_us     the same served by vmmu-dmdev in its own process
 *                            (median round trip: slot, kick, answer, wake-up)
 *   dm/mmio_outofproc_p99_us its 99th percentile
 *   dm/mapcache_map_ns       vmmu_dmc_map + unmap of a resident bucket
 *   dm/mapcache_miss_us      the same when every map misses (mmap + munmap)
 *   dm/mapcache_miss_pagein_us  a miss in a region the pager took a page from
 *                            (left out of the region table): one PAGE_IN round
 *                            trip to the vm's service thread, then mmap + munmap
 *   dm/invalidate_1dm_us     vmmu_dm_invalidate with one device model connected
 *   dm/invalidate_4dm_us     ... with four
 * The device model of the out-of-process figure spins for requests (as a
 * dedicated device-model core would); the invalidation ones sleep in poll.
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "vmmu/dmclient.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

extern char **environ;

#define DEV_GPA 0x40000000ull
#define R_ID 0x40

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_dm: %s: %s\n", what, vmmu_strerror(err));
    exit(1);
}

static pid_t spawn_dmdev(int *vm_end, const char *spin_us)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        die("socketpair", VMMU_ESYS);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    char base[32];
    snprintf(base, sizeof(base), "%llu", DEV_GPA);
    char *argv[] = {VMMU_DMDEV_PATH, "--fd", "3", "--mmio-base", base, "--spin-us",
                    (char *)spin_us, NULL};
    pid_t pid;
    if (posix_spawn(&pid, VMMU_DMDEV_PATH, &fa, NULL, argv, environ))
        die("spawn vmmu-dmdev", VMMU_ESYS);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    *vm_end = sv[0];
    return pid;
}

static struct vmmu_vm *make_vm(struct vmmu_dm **dm)
{
    struct vmmu_vm *vm;
    int err = vmmu_vm_create(NULL, &vm);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 64 << 20};
    if (!err)
        err = vmmu_region_add(vm, &ram, NULL);
    if (!err)
        err = vmmu_dm_create(vm, NULL, dm);
    if (err)
        die("vm", err);
    return vm;
}

static int answer_at_once(void *opaque, struct vmmu_dm_ioreq *req)
{
    (void)opaque;
    req->data = req->offset;
    return 0;
}

static void mmio_inproc(void)
{
    struct vmmu_dm *dm;
    struct vmmu_vm *vm = make_vm(&dm);
    static const struct vmmu_dm_ops ops = {.access = answer_at_once};
    struct vmmu_dm_server *srv;
    int err = vmmu_dm_server_create_inproc(dm, &ops, NULL, &srv);
    if (!err)
        err = vmmu_dm_map_mmio(srv, DEV_GPA, 4096, 0, NULL, NULL);
    if (err)
        die("in-process server", err);
    enum { N = 200000 };
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < N; i++) {
            struct vmmu_device_req q = {.gpa = DEV_GPA + (uint64_t)(i & 511) * 8, .size = 8};
            if (vmmu_p2m_device_access(vm, &q))
                die("access", VMMU_EDEVICE);
            bench_keep(q.data);
        }
        runs[r] = (bench_now_ns() - t0) / N / 1000.0;
    }
    bench_figure("dm/mmio_inproc_us", bench_median(runs, BENCH_RUNS), "us");
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

static void mmio_outofproc(void)
{
    struct vmmu_dm *dm;
    struct vmmu_vm *vm = make_vm(&dm);
    int sock;
    pid_t pid = spawn_dmdev(&sock, "2000");
    struct vmmu_dm_remote_config rc = {.wait_us = 1000000, .pid = pid};
    struct vmmu_dm_server *srv;
    int err = vmmu_dm_server_create_remote(dm, sock, &rc, &srv);
    if (!err)
        err = vmmu_dm_map_mmio(srv, DEV_GPA, 4096, 0, NULL, NULL);
    if (err)
        die("remote server", err);
    enum { WARM = 2000, N = 20000 };
    static double lat[N];
    for (int i = 0; i < WARM + N; i++) {
        struct vmmu_device_req q = {.gpa = DEV_GPA + R_ID, .size = 8, .vcpu_id = 0};
        double t0 = bench_now_ns();
        err = vmmu_p2m_device_access(vm, &q);
        double t1 = bench_now_ns();
        if (err)
            die("remote access", err);
        if (i >= WARM)
            lat[i - WARM] = (t1 - t0) / 1000.0;
    }
    qsort(lat, N, sizeof(lat[0]), bench_cmp_double);
    bench_figure("dm/mmio_outofproc_us", lat[N / 2], "us");
    bench_figure("dm/mmio_outofproc_p99_us", lat[N * 99 / 100], "us");
    vmmu_dm_destroy(dm);
    waitpid(pid, NULL, 0);
    vmmu_vm_destroy(vm);
}

/* Map + unmap alternating between two buckets of a one-bucket cache, so
 * every map misses: the median microseconds per map over BENCH_RUNS runs. */
enum { MISSES = 20000 };
static double miss_us(struct vmmu_dmc *c)
{
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < MISSES; i++) {
            uint64_t gpa = (uint64_t)(i & 1) << 16;
            void *p;
            if (vmmu_dmc_map(c, gpa, 8, 1, &p))
                die("map", VMMU_EINVAL);
            vmmu_dmc_unmap(c, gpa);
        }
        runs[r] = (bench_now_ns() - t0) / MISSES / 1000.0;
    }
    return bench_median(runs, BENCH_RUNS);
}

static void mapcache(void)
{
    struct vmmu_dm *dm;
    struct vmmu_vm *vm = make_vm(&dm);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        die("socketpair", VMMU_ESYS);
    struct vmmu_dm_server *srv;
    int err = vmmu_dm_server_create_remote(dm, sv[0], NULL, &srv);
    struct vmmu_dmc *c = NULL;
    struct vmmu_dmc_config cc = {.mapcache_bytes = 16 << 20};
    if (!err)
        err = vmmu_dmc_connect_fd(sv[1], &cc, &c);
    if (err)
        die("client", err);
    /* 64 resident buckets (4 MiB), visited in a scattered order. */
    enum { N = 1000000 };
    uint64_t seed = 1;
    double runs[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < N; i++) {
            uint64_t gpa = (bench_rand(&seed) & ((4 << 20) - 1)) & ~7ull;
            void *p;
            if (vmmu_dmc_map(c, gpa, 8, 1, &p))
                die("map", VMMU_EINVAL);
            bench_keep((uint64_t)(uintptr_t)p);
            vmmu_dmc_unmap(c, gpa);
        }
        runs[r] = (bench_now_ns() - t0) / N;
    }
    bench_figure("dm/mapcache_map_ns", bench_median(runs, BENCH_RUNS), "ns");
    vmmu_dmc_close(c);
    /* Misses: a one-bucket cache, alternating buckets. */
    cc.mapcache_bytes = 64 << 10;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        die("socketpair", VMMU_ESYS);
    struct vmmu_dm_server *srv2;
    err = vmmu_dm_server_create_remote(dm, sv[0], NULL, &srv2);
    if (!err)
        err = vmmu_dmc_connect_fd(sv[1], &cc, &c);
    if (err)
        die("client", err);
    bench_figure("dm/mapcache_miss_us", miss_us(c), "us");
    vmmu_dmc_close(c);
    vmmu_dm_destroy(dm);
    vmmu_vm_destroy(vm);
}

static void mapcache_pagein(void)
{
    struct vmmu_dm *dm;
    struct vmmu_vm *vm = make_vm(&dm);
    /* One page out, far from the buckets used: the region leaves the table. */
    struct vmmu_pager *pager;
    struct vmmu_gpa_range out = {.gpa = 32 << 20, .size = 4096};
    int err = vmmu_pager_create(vm, NULL, &pager);
    if (!err)
        err = vmmu_pager_page_out(pager, &out, 1);
    int sv[2];
    if (!err && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        err = VMMU_ESYS;
    struct vmmu_dm_server *srv;
    if (!err)
        err = vmmu_dm_server_create_remote(dm, sv[0], NULL, &srv);
    struct vmmu_dmc *c = NULL;
    struct vmmu_dmc_config cc = {.mapcache_bytes = 64 << 10};
    if (!err)
        err = vmmu_dmc_connect_fd(sv[1], &cc, &c);
    if (err)
        die("page-in set-up", err);
    double us = miss_us(c);
    struct vmmu_dmc_stats st;
    vmmu_dmc_stats(c, &st);
    if (st.page_ins < (uint64_t)MISSES * BENCH_RUNS)
        die("every miss should have asked the vm", VMMU_EINVAL);
    bench_figure("dm/mapcache_miss_pagein_us", us, "us");
    vmmu_dmc_close(c);
    vmmu_dm_destroy(dm);
    vmmu_pager_destroy(pager);
    vmmu_vm_destroy(vm);
}

static void invalidate(int ndm, const char *name)
{
    struct vmmu_dm *dm;
    struct vmmu_vm *vm = make_vm(&dm);
    pid_t pid[4];
    for (int i = 0; i < ndm; i++) {
        int sock;
        pid[i] = spawn_dmdev(&sock, "0");
        struct vmmu_dm_remote_config rc = {.pid = pid[i]};
        struct vmmu_dm_server *srv;
        int err = vmmu_dm_server_create_remote(dm, sock, &rc, &srv);
        if (err)
            die("remote server", err);
    }
    enum { WARM = 50, N = 1000 };
    static double lat[N];
    for (int i = 0; i < WARM + N; i++) {
        double t0 = bench_now_ns();
        int err = vmmu_dm_invalidate(dm, (uint64_t)(i % 1024) << 12, 4096);
        double t1 = bench_now_ns();
        if (err)
            die("invalidate", err);
        if (i >= WARM)
            lat[i - WARM] = (t1 - t0) / 1000.0;
    }
    qsort(lat, N, sizeof(lat[0]), bench_cmp_double);
    bench_figure(name, lat[N / 2], "us");
    vmmu_dm_destroy(dm);
    for (int i = 0; i < ndm; i++)
        waitpid(pid[i], NULL, 0);
    vmmu_vm_destroy(vm);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    mmio_inproc();
    mmio_outofproc();
    mapcache();
    mapcache_pagein();
    invalidate(1, "dm/invalidate_1dm_us");
    invalidate(4, "dm/invalidate_4dm_us");
    return 0;
}
