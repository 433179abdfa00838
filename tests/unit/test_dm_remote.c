/* Device models, out of process: the tests spawn vmmu-dmdev (a DMA engine
 * in its own process) and drive it through MMIO and ports: registers, DMA
 * through its mapcache, buffered writes, the pending flow, invalidation,
 * and a device model that is killed or hangs mid-request. */
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmu/vmmu.h"

extern char **environ;

#define RAM_SIZE (16ull << 20)
#define DEV_GPA 0x40000000ull /* registers; +0x1000 is the buffered alias */
#define PORT_BASE 0x100
#define DMDEV_ID 0x31616d64756d6d76ull

enum { R_SRC = 0x00, R_DST = 0x08, R_LEN = 0x10, R_CMD = 0x18, R_FILL = 0x20, R_STATUS = 0x28,
       R_ERROR = 0x30, R_COUNT = 0x38, R_ID = 0x40, R_BELL = 0x48 };

struct env {
    struct vmmu_vm *vm;
    struct vmmu_dm *dm;
    struct vmmu_dm_server *srv;
    pid_t pid;
    int reaped;
};

static pid_t spawn_dmdev(int *vm_end)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    char base[32], port[32];
    snprintf(base, sizeof(base), "%llu", DEV_GPA);
    snprintf(port, sizeof(port), "%d", PORT_BASE);
    char *argv[] = {VMMU_DMDEV_PATH, "--fd", "3", "--mmio-base", base, "--port-base", port, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, VMMU_DMDEV_PATH, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    *vm_end = sv[0];
    return pid;
}

static struct env *make_env(unsigned timeout_ms, unsigned wait_us)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(vmmu_vm_create(NULL, &e->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE};
    assert_int_equal(vmmu_region_add(e->vm, &ram, NULL), 0);
    struct vmmu_dm_config cfg = {.max_vcpus = 2};
    assert_int_equal(vmmu_dm_create(e->vm, &cfg, &e->dm), 0);
    int sock;
    e->pid = spawn_dmdev(&sock);
    struct vmmu_dm_remote_config rc = {.timeout_ms = timeout_ms, .wait_us = wait_us,
                                       .ring_entries = 16, .pid = e->pid};
    assert_int_equal(vmmu_dm_server_create_remote(e->dm, sock, &rc, &e->srv), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA, 4096, 0, NULL, NULL), 0);
    assert_int_equal(vmmu_dm_map_mmio(e->srv, DEV_GPA + 4096, 4096, VMMU_DM_RANGE_BUFFERED,
                                      NULL, NULL), 0);
    assert_int_equal(vmmu_dm_map_ports(e->srv, PORT_BASE, 8, 0, NULL), 0);
    return e;
}

static int setup(void **state)
{
    *state = make_env(5000, 5000000); /* answers awaited on the vCPU */
    return 0;
}

static int setup_pending(void **state)
{
    *state = make_env(5000, 0); /* every access pends */
    return 0;
}

static int setup_short_timeout(void **state)
{
    /* Short, so that the hung device model is declared dead soon; but
     * the requests that set up the stall must not miss it on a loaded
     * machine under ThreadSanitizer (300 ms did). */
    *state = make_env(2000, 0);
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    vmmu_dm_destroy(e->dm); /* hangs up: dmdev exits on its own */
    if (!e->reaped) {
        int status;
        assert_int_equal(waitpid(e->pid, &status, 0), e->pid);
    }
    vmmu_vm_destroy(e->vm);
    free(e);
    return 0;
}

/* One access as a vCPU loop makes it: re-executed after each VMMU_EPENDING. */
static int rd(struct env *e, int vcpu, uint64_t gpa, unsigned size, uint64_t *v)
{
    int err;
    struct vmmu_device_req r = {.gpa = gpa, .size = size, .vcpu_id = vcpu};
    while ((err = vmmu_p2m_device_access(e->vm, &r)) == VMMU_EPENDING)
        assert_int_equal(vmmu_dm_vcpu_wait(e->dm, vcpu, -1), 0);
    *v = r.data;
    return err;
}

static int wr(struct env *e, int vcpu, uint64_t gpa, unsigned size, uint64_t v)
{
    int err;
    struct vmmu_device_req r = {.gpa = gpa, .size = size, .write = 1, .data = v, .vcpu_id = vcpu};
    while ((err = vmmu_p2m_device_access(e->vm, &r)) == VMMU_EPENDING)
        assert_int_equal(vmmu_dm_vcpu_wait(e->dm, vcpu, -1), 0);
    return err;
}

/* One execution only: may return VMMU_EPENDING. */
static int access_once(struct env *e, int vcpu, uint64_t gpa, int write, uint64_t *v)
{
    struct vmmu_device_req r = {.gpa = gpa, .size = 8, .write = write, .data = *v,
                                .vcpu_id = vcpu};
    int err = vmmu_p2m_device_access(e->vm, &r);
    *v = r.data;
    return err;
}

static uint64_t reg(struct env *e, unsigned off)
{
    uint64_t v = 0;
    assert_int_equal(rd(e, 0, DEV_GPA + off, 8, &v), 0);
    return v;
}

static void dma(struct env *e, uint64_t src, uint64_t dst, uint64_t len, unsigned cmd, uint8_t fill)
{
    assert_int_equal(wr(e, 0, DEV_GPA + R_SRC, 8, src), 0);
    assert_int_equal(wr(e, 0, DEV_GPA + R_DST, 8, dst), 0);
    assert_int_equal(wr(e, 0, DEV_GPA + R_LEN, 8, len), 0);
    assert_int_equal(wr(e, 0, DEV_GPA + R_FILL, 8, fill), 0);
    assert_int_equal(wr(e, 0, DEV_GPA + R_CMD, 8, cmd), 0);
}

/* Start a command that makes the device model stall inside the request
 * (on vCPU @vcpu, pending) and wait until it has begun serving it: it
 * marks guest memory first. */
static void stall_device_model(struct env *e, int vcpu)
{
    static const uint64_t mark = 0x7000;
    uint8_t zero = 0, b = 0;
    assert_int_equal(vmmu_gpa_write(e->vm, mark, &zero, 1, 0, NULL), 0);
    dma(e, 0, mark, 1, 2, 0xee); /* leaves DST/LEN/FILL set for the stall */
    assert_int_equal(vmmu_gpa_write(e->vm, mark, &zero, 1, 0, NULL), 0);
    uint64_t cmd = 3;
    assert_int_equal(access_once(e, vcpu, DEV_GPA + R_CMD, 1, &cmd), VMMU_EPENDING);
    for (int i = 0; i < 20000 && b != 0xee; i++) {
        usleep(1000);
        assert_int_equal(vmmu_gpa_read(e->vm, mark, &b, 1, 0, NULL), 0);
    }
    assert_int_equal(b, 0xee);
}

static void id_register_reads_through_the_device_model(void **state)
{
    struct env *e = *state;
    assert_int_equal(reg(e, R_ID), DMDEV_ID);
    uint64_t v;
    assert_int_equal(rd(e, 1, DEV_GPA + R_ID + 4, 4, &v), 0);
    assert_int_equal(v, DMDEV_ID >> 32);
    assert_int_equal(rd(e, -1, DEV_GPA + R_ID, 2, &v), 0); /* the host's slot */
    assert_int_equal(v, DMDEV_ID & 0xffff);
}

static void port_scratch_register_round_trips(void **state)
{
    struct env *e = *state;
    uint64_t v = 0xcafef00d;
    assert_int_equal(vmmu_dm_port_access(e->dm, 0, PORT_BASE + 4, 4, 1, &v), 0);
    v = 0;
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, PORT_BASE + 4, 4, 0, &v), 0);
    assert_int_equal(v, 0xcafef00d);
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, PORT_BASE, 4, 0, &v), 0);
    assert_int_equal(v, DMDEV_ID & 0xffffffff);
    /* The device model fails an unknown port: VMMU_EDEVICE. */
    assert_int_equal(vmmu_dm_port_access(e->dm, 1, PORT_BASE + 2, 1, 0, &v), VMMU_EDEVICE);
}

static void dma_copy_moves_guest_memory_across_buckets(void **state)
{
    struct env *e = *state;
    enum { LEN = 200000 };
    uint8_t *src = malloc(LEN), *back = malloc(LEN);
    for (unsigned i = 0; i < LEN; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(vmmu_gpa_write(e->vm, 0x10123, src, LEN, 0, NULL), 0);
    dma(e, 0x10123, 0x300456, LEN, 1, 0);
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(reg(e, R_COUNT), 1);
    assert_int_equal(vmmu_gpa_read(e->vm, 0x300456, back, LEN, 0, NULL), 0);
    assert_memory_equal(src, back, LEN);
    free(src);
    free(back);
}

static void dma_fill_sets_guest_memory(void **state)
{
    struct env *e = *state;
    dma(e, 0, 0x5000, 3 * 4096 + 5, 2, 0xa5);
    assert_int_equal(reg(e, R_STATUS), 1);
    uint8_t buf[3 * 4096 + 7];
    assert_int_equal(vmmu_gpa_read(e->vm, 0x4fff, buf, sizeof(buf), 0, NULL), 0);
    assert_int_equal(buf[0], 0);
    for (unsigned i = 1; i <= 3 * 4096 + 5; i++)
        assert_int_equal(buf[i], 0xa5);
    assert_int_equal(buf[3 * 4096 + 6], 0);
}

static void dma_outside_ram_fails_cleanly(void **state)
{
    struct env *e = *state;
    dma(e, 0, RAM_SIZE - 4096, 8192, 2, 0x11); /* runs off the end of RAM */
    assert_int_equal(reg(e, R_STATUS), 2);
    assert_int_equal((int64_t)reg(e, R_ERROR), VMMU_EHOLE);
    uint8_t b;
    assert_int_equal(vmmu_gpa_read(e->vm, RAM_SIZE - 1, &b, 1, 0, NULL), 0);
    assert_int_equal(b, 0x11); /* the part inside RAM was done, nothing beyond */
}

static void buffered_writes_arrive_before_a_later_read(void **state)
{
    struct env *e = *state;
    for (int i = 0; i < 40; i++) /* more than the ring holds: some go through the slot */
        assert_int_equal(wr(e, 0, DEV_GPA + 4096 + R_BELL, 8, 1), 0);
    assert_int_equal(reg(e, R_BELL), 40);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_true(st.buffered >= 16);
    assert_int_equal(st.proto_errors, 0);
}

static void pending_access_completes_after_vcpu_wait(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    assert_int_equal(access_once(e, 1, DEV_GPA + R_ID, 0, &v), VMMU_EPENDING);
    int err;
    while ((err = access_once(e, 1, DEV_GPA + R_ID, 0, &v)) == VMMU_EPENDING)
        assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 1, -1), 0);
    assert_int_equal(err, 0);
    assert_int_equal(v, DMDEV_ID);
    /* Host accesses never pend. */
    assert_int_equal(rd(e, -1, DEV_GPA + R_ID, 8, &v), 0);
    assert_int_equal(v, DMDEV_ID);
}

static void invalidation_is_acknowledged_and_the_range_leaves_the_table(void **state)
{
    struct env *e = *state;
    dma(e, 0, 0x20000, 4096, 2, 0x5a); /* the device model now maps that bucket */
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0x20000, 0x10000), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.invalidations, 1);
    assert_int_equal(st.dead, 0);
    dma(e, 0, 0x40000, 16, 2, 0x77); /* the rest of RAM is still in its table */
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.page_ins, 0);
    /* The invalidated range is not: the device model asks the vm, which
     * answers from the P2M.  (This test left the range in the P2M; a real
     * caller takes it out first, and then the answer is a hole: see the
     * next test.) */
    dma(e, 0, 0x20000, 16, 2, 0x77);
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.page_ins, 1);
    uint8_t b;
    assert_int_equal(vmmu_gpa_read(e->vm, 0x20000, &b, 1, 0, NULL), 0);
    assert_int_equal(b, 0x77);
}

static void removing_a_region_invalidates_device_model_mappings_first(void **state)
{
    struct env *e = *state;
    const uint64_t gpa = 0x2000000;
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = gpa, .size = 1 << 20};
    uint32_t id;
    assert_int_equal(vmmu_region_add(e->vm, &ram, &id), 0);
    dma(e, 0, gpa, 8192, 2, 0x3c); /* a region added after connecting is mappable */
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(vmmu_region_remove(e->vm, id), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_true(st.invalidations >= 1);
    dma(e, 0, gpa, 16, 2, 0x3d);
    assert_int_equal(reg(e, R_STATUS), 2);
    assert_int_equal((int64_t)reg(e, R_ERROR), VMMU_EHOLE);
    /* New RAM at the same address is fresh memory, untouched by the device. */
    assert_int_equal(vmmu_region_add(e->vm, &ram, &id), 0);
    uint8_t buf[8192];
    assert_int_equal(vmmu_gpa_read(e->vm, gpa, buf, sizeof(buf), 0, NULL), 0);
    for (unsigned i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    dma(e, 0, gpa, 16, 2, 0x3e);
    assert_int_equal(reg(e, R_STATUS), 1);
    assert_int_equal(vmmu_gpa_read(e->vm, gpa, buf, 17, 0, NULL), 0);
    assert_int_equal(buf[15], 0x3e);
    assert_int_equal(buf[16], 0);
}

static void device_model_killed_mid_request_fails_it_with_edead(void **state)
{
    struct env *e = *state;
    stall_device_model(e, 0);
    assert_int_equal(kill(e->pid, SIGKILL), 0);
    uint64_t cmd = 3;
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0);
    assert_int_equal(access_once(e, 0, DEV_GPA + R_CMD, 1, &cmd), VMMU_EDEAD);
    uint64_t v;
    assert_int_equal(rd(e, 1, DEV_GPA + R_ID, 8, &v), VMMU_EDEAD);
    assert_int_equal(vmmu_dm_server_check(e->srv), VMMU_EDEAD);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 1);
    /* The vm carries on. */
    assert_int_equal(vmmu_gpa_write(e->vm, 0x1000, "ok", 2, 0, NULL), 0);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, 4096), 0);
    int status;
    assert_int_equal(waitpid(e->pid, &status, 0), e->pid);
    assert_true(WIFSIGNALED(status));
    e->reaped = 1;
}

static void hung_device_model_times_out_and_is_killed(void **state)
{
    struct env *e = *state;
    stall_device_model(e, 0);
    assert_int_equal(vmmu_dm_vcpu_wait(e->dm, 0, -1), 0); /* up to the server's deadline */
    uint64_t cmd = 3;
    assert_int_equal(access_once(e, 0, DEV_GPA + R_CMD, 1, &cmd), VMMU_ETIMEDOUT);
    uint64_t v; /* later accesses find the server dead */
    assert_int_equal(rd(e, 0, DEV_GPA + R_ID, 8, &v), VMMU_EDEAD);
    int status;
    assert_int_equal(waitpid(e->pid, &status, 0), e->pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    e->reaped = 1;
}

static void invalidation_completes_when_a_hung_device_model_is_declared_dead(void **state)
{
    struct env *e = *state;
    /* vCPU 1 leaves a stalling command pending; the device model no
     * longer reads its socket. */
    stall_device_model(e, 1);
    assert_int_equal(vmmu_dm_invalidate(e->dm, 0, RAM_SIZE), 0);
    struct vmmu_dm_server_stats st;
    assert_int_equal(vmmu_dm_server_stats(e->srv, &st), 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_reason, VMMU_ETIMEDOUT);
    /* Its process is gone, so it maps nothing: reap it. */
    int status;
    assert_int_equal(waitpid(e->pid, &status, WNOHANG), e->pid);
    assert_true(WIFSIGNALED(status));
    e->reaped = 1;
    uint64_t cmd = 3;
    assert_int_equal(access_once(e, 1, DEV_GPA + R_CMD, 1, &cmd), VMMU_ETIMEDOUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(id_register_reads_through_the_device_model, setup, teardown),
        cmocka_unit_test_setup_teardown(port_scratch_register_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(dma_copy_moves_guest_memory_across_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(dma_fill_sets_guest_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(dma_outside_ram_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(buffered_writes_arrive_before_a_later_read, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_access_completes_after_vcpu_wait, setup_pending,
                                        teardown),
        cmocka_unit_test_setup_teardown(invalidation_is_acknowledged_and_the_range_leaves_the_table,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(removing_a_region_invalidates_device_model_mappings_first,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(device_model_killed_mid_request_fails_it_with_edead,
                                        setup_pending, teardown),
        cmocka_unit_test_setup_teardown(hung_device_model_times_out_and_is_killed,
                                        setup_short_timeout, teardown),
        cmocka_unit_test_setup_teardown(
            invalidation_completes_when_a_hung_device_model_is_declared_dead, setup_short_timeout,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
