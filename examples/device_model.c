/* SPDX-License-Identifier: MIT */
/*
 * A device model in a process of its own, mapping guest memory safely
 * (vmmu/dm.h on the vm's side, vmmu/dmclient.h on the device model's).
 *
 * The program forks before it creates the vm: the child is the device
 * model, a "checksum engine" built only on the client library.  The guest
 * writes a buffer's address and length to its registers and writes GO; the
 * engine maps the buffer from the vm's memory, computes its Adler-32, stores
 * it in RESULT and also in guest RAM right after the buffer.  Like a device
 * that keeps its rings mapped, it keeps the buffer mapped afterwards; PEEK
 * reads the buffer's first 8 bytes through that kept pointer.
 *
 * The parent is the emulator.  It makes the register accesses as
 * instructions of a vCPU on the access layer (vmmu/access.h).  The server
 * is created with wait_us 0: an access that does not find the answer there
 * returns VMMU_EPENDING at once, the vCPU sleeps in vmmu_dm_vcpu_wait() and
 * executes the instruction again, which then completes with the device
 * model's answer.  It prints what happened:
 *
 *   1. a checksum over a buffer in guest RAM, checked against one computed
 *      here, in RESULT and in guest RAM;
 *   2. the host unplugs the RAM that holds the buffer (vmmu_region_remove).
 *      That call returns only after the device model dropped its mappings
 *      of it: its kept pointer now reads zeros (harmless private memory,
 *      never the vm's pages), and a new GO on the buffer fails with
 *      VMMU_EHOLE;
 *   3. the vm hangs up and the device model exits with status 0.
 *
 * It exits 1 if anything differs from what dm.h and dmclient.h promise.
 *
 *   cc device_model.c $(pkg-config --cflags --libs vmmu vmmu-dmclient) && ./a.out
 */
#define _POSIX_C_SOURCE 200809L /* fork, socketpair, waitpid with -std=c11 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmmu/dmclient.h>
#include <vmmu/vmmu.h>

#define RAM_GPA 0x0ull         /* the guest's RAM: 1 MiB */
#define DIMM_GPA 0x100000ull   /* 64 KiB of RAM the host unplugs later */
#define DEV_GPA 0xfe000000ull  /* the checksum engine's registers */
#define BUF_GPA (DIMM_GPA + 0x100)
#define BUF_LEN 3000u

/* The checksum engine's registers, 8 bytes each. */
enum { REG_ADDR = 0x00,   /* r/w  the buffer's guest-physical address */
       REG_LEN = 0x08,    /* r/w  its length, at most 60 KiB */
       REG_GO = 0x10,     /* w    checksum the buffer */
       REG_RESULT = 0x18, /* r    the Adler-32 of the last GO */
       REG_STATUS = 0x20, /* r    0, or the VMMU_E* code that failed the last GO */
       REG_PEEK = 0x28 }; /* r    the first 8 bytes of the buffer the engine keeps mapped */

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAILED: " __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                                  \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

static uint32_t adler32(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

/* ---- The device model (the child; only the client library) ---------------- */

struct engine {
    struct vmmu_dmc *c;
    uint64_t addr, len, result, status;
    /* The buffer as the last GO mapped it, still pinned.  Keeping it across
     * requests is safe: an invalidation the vm sends turns it into private
     * memory (see vmmu/dmclient.h) before the vm reuses the pages. */
    const uint8_t *kept;
    uint64_t kept_gpa;
};

static void engine_go(struct engine *e)
{
    if (e->kept) {
        vmmu_dmc_unmap(e->c, e->kept_gpa);
        e->kept = NULL;
    }
    /* The guest's values are not trusted: the length is bounded before it
     * is used (the mapping must lie within one 64 KiB bucket anyway). */
    void *p = NULL;
    int err = e->len > 60 * 1024 ? VMMU_ERANGE : vmmu_dmc_map(e->c, e->addr, e->len + 4, 1, &p);
    e->status = (uint64_t)(int64_t)err;
    if (err)
        return;
    uint32_t sum = adler32(p, e->len);
    memcpy((uint8_t *)p + e->len, &sum, 4); /* little-endian, as the guest reads it */
    e->result = sum;
    e->kept = p;
    e->kept_gpa = e->addr;
}

/* Serve one register access; 1 fails it (the vCPU sees VMMU_EDEVICE). */
static int engine_access(struct engine *e, const struct vmmu_dmc_req *r, uint64_t *value)
{
    if (r->space != VMMU_DM_SPACE_MMIO || r->size != 8)
        return 1;
    uint64_t offset = r->addr - DEV_GPA;
    if (r->write) {
        if (offset == REG_ADDR)
            e->addr = r->data;
        else if (offset == REG_LEN)
            e->len = r->data;
        else if (offset == REG_GO)
            engine_go(e);
        else
            return 1;
        return 0;
    }
    switch (offset) {
    case REG_ADDR: *value = e->addr; return 0;
    case REG_LEN: *value = e->len; return 0;
    case REG_RESULT: *value = e->result; return 0;
    case REG_STATUS: *value = e->status; return 0;
    case REG_PEEK:
        if (!e->kept)
            return 1;
        memcpy(value, e->kept, 8);
        return 0;
    default: return 1;
    }
}

static int device_model(int sock)
{
    struct engine e = {0};
    int err = vmmu_dmc_connect_fd(sock, NULL, &e.c);
    if (err)
        return 1;
    /* vmmu_dmc_wait() also processes the vm's invalidations: by the time
     * it acknowledges one, e.kept no longer reaches the vm's memory. */
    struct vmmu_dmc_req r;
    while ((err = vmmu_dmc_wait(e.c, -1, &r)) == 0) {
        uint64_t value = 0;
        int fail = engine_access(&e, &r, &value);
        if (!r.buffered)
            vmmu_dmc_complete(e.c, &r, value, fail);
    }
    vmmu_dmc_close(e.c);
    return err == VMMU_EDEAD ? 0 : 1; /* the vm hung up: done */
}

/* ---- The emulator (the parent) --------------------------------------------- */

static struct vmmu_vcpu *vcpu;
static struct vmmu_dm *dm;
static unsigned insns, pended;

/* One guest instruction, a MOV to or from a register of the engine, as an
 * emulator's vCPU loop runs it.  VMMU_EPENDING ends the instruction with
 * nothing done; the vCPU sleeps until the device model has answered and
 * executes the instruction again, which then completes.  (An answer that
 * is already there when the access looks completes it at once.) */
static uint64_t reg(unsigned offset, int write, uint64_t value)
{
    struct vmmu_x86_fault fault;
    int err;
    insns++;
    for (int pass = 1;; pass++) {
        vmmu_insn_begin(vcpu);
        if (write)
            err = vmmu_access_store(vcpu, DEV_GPA + offset, 8, 0, &value, &fault);
        else
            err = vmmu_access_load(vcpu, DEV_GPA + offset, 8, 0, &value, &fault);
        vmmu_insn_end(vcpu, err);
        if (err != VMMU_EPENDING || pass == 2) /* the re-execution must not pend */
            break;
        pended++;
        err = vmmu_dm_vcpu_wait(dm, vmmu_vcpu_id(vcpu), -1);
        CHECK(err == 0, "vmmu_dm_vcpu_wait: %s", vmmu_strerror(err));
    }
    CHECK(err == 0 && fault.vector == VMMU_X86_FAULT_NONE, "%s register 0x%x: %s",
          write ? "writing" : "reading", offset, vmmu_strerror(err));
    return value;
}

int main(void)
{
    /* Fork first: the child must not inherit the threads a vm starts. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(sv[0]);
        exit(device_model(sv[1]));
    }
    close(sv[1]);

    /* RAM that vmmu allocates (no .host) lives in the vm's memfd, which
     * the device model is handed and maps from. */
    struct vmmu_vm *vm;
    struct vmmu_dm_server *srv;
    uint32_t dimm;
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = RAM_GPA, .size = 1 << 20};
    struct vmmu_region_desc dimm_r = {.type = VMMU_MEM_RAM, .gpa = DIMM_GPA, .size = 64 << 10};
    struct vmmu_dm_remote_config rc = {.wait_us = 0, .pid = child}; /* never wait inline */
    int err = vmmu_vm_create(NULL, &vm);
    if (err || (err = vmmu_region_add(vm, &ram, NULL)) ||
        (err = vmmu_region_add(vm, &dimm_r, &dimm)) ||
        (err = vmmu_dm_create(vm, &(struct vmmu_dm_config){.max_vcpus = 1}, &dm)) ||
        (err = vmmu_dm_server_create_remote(dm, sv[0], &rc, &srv)) ||
        (err = vmmu_dm_map_mmio(srv, DEV_GPA, 4096, 0, NULL, NULL)) ||
        (err = vmmu_vcpu_create(vm, NULL, &vcpu)) ||
        /* This thread runs the vCPU: its TLB is used while it is online. */
        (err = vmmu_vcpu_online(vcpu))) {
        fprintf(stderr, "setup: %s\n", vmmu_strerror(err));
        return 1;
    }
    /* The vCPU stays in its reset state: paging off, so the addresses of
     * its accesses are guest-physical. */
    printf("device model: process %d serves [0x%llx, +4 KiB)\n", (int)child, DEV_GPA);

    /* 1. The guest's driver puts a buffer in RAM and rings GO. */
    uint8_t buf[BUF_LEN];
    for (unsigned i = 0; i < BUF_LEN; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    err = vmmu_gpa_write(vm, BUF_GPA, buf, BUF_LEN, 0, NULL);
    CHECK(err == 0, "writing the buffer: %s", vmmu_strerror(err));
    reg(REG_ADDR, 1, BUF_GPA);
    reg(REG_LEN, 1, BUF_LEN);
    reg(REG_GO, 1, 0);
    uint64_t status = reg(REG_STATUS, 0, 0), result = reg(REG_RESULT, 0, 0);
    uint32_t in_ram = 0;
    err = vmmu_gpa_read(vm, BUF_GPA + BUF_LEN, &in_ram, 4, 0, NULL);
    CHECK(err == 0, "reading the result: %s", vmmu_strerror(err));
    printf("1. checksum of %u bytes at 0x%llx: RESULT 0x%08" PRIx64 ", in guest RAM 0x%08" PRIx32
           ", computed here 0x%08" PRIx32 "\n",
           BUF_LEN, BUF_GPA, result, in_ram, adler32(buf, BUF_LEN));
    printf("   %u register accesses; %u pended and completed when executed again, the others"
           " found the answer there at once\n",
           insns, pended);
    CHECK(status == 0, "GO failed: %s", vmmu_strerror((int)(int64_t)status));
    CHECK(result == adler32(buf, BUF_LEN) && in_ram == result, "wrong checksum");

    /* 2. The host takes the buffer's RAM away.  vmmu_region_remove()
     *    invalidates the device models' mappings by itself and returns only
     *    once each has acknowledged: the engine's kept pointer no longer
     *    reaches the vm's memory, and the range is gone from its table. */
    uint64_t peek = reg(REG_PEEK, 0, 0), first8;
    memcpy(&first8, buf, 8);
    CHECK(peek == first8, "PEEK before the unplug: 0x%016" PRIx64, peek);
    struct vmmu_dm_server_stats before, after;
    vmmu_dm_server_stats(srv, &before);
    err = vmmu_region_remove(vm, dimm);
    CHECK(err == 0, "vmmu_region_remove: %s", vmmu_strerror(err));
    vmmu_dm_server_stats(srv, &after);
    uint64_t peek_after = reg(REG_PEEK, 0, 0);
    reg(REG_GO, 1, 0);
    status = reg(REG_STATUS, 0, 0);
    printf("2. PEEK through the engine's kept pointer: 0x%016" PRIx64 " before the unplug\n",
           peek);
    printf("   the host unplugs the RAM: %" PRIu64 " invalidation acknowledged before"
           " vmmu_region_remove() returned\n",
           after.invalidations - before.invalidations);
    printf("   PEEK now reads 0x%016" PRIx64 "; GO on the buffer again: %s\n", peek_after,
           vmmu_strerror((int)(int64_t)status));
    CHECK(after.invalidations > before.invalidations && !after.dead,
          "the device model acknowledged no invalidation");
    CHECK(peek_after == 0, "the kept pointer still reads guest memory");
    CHECK((int64_t)status == VMMU_EHOLE, "GO on unplugged RAM did not fail with VMMU_EHOLE");

    /* 3. Tear down: the vm hangs up and the device model exits on its own. */
    vmmu_dm_server_destroy(srv);
    vmmu_dm_destroy(dm);
    vmmu_vcpu_destroy(vcpu);
    vmmu_vm_destroy(vm);
    int ws = 0;
    pid_t reaped = waitpid(child, &ws, 0);
    printf("3. the vm hung up; the device model exited with status %d\n",
           WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    CHECK(reaped == child && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
          "the device model did not exit cleanly");

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
