/* SPDX-License-Identifier: MIT */
/* The QEMU paging oracle: the guest runs under qemu-system-x86_64 (TCG,
 * -cpu max) with its RAM in a shared file, so the host writes the cases
 * and reads the results directly; then every case is replayed through
 * vmmu and compared (oracle.c).  Covers what KVM here cannot: 32-bit and
 * PAE paging, 5-level paging, 1 GiB pages, PKU and PKS, plus everything
 * 4-level paging has.  Exit: 0 all agree, 1 a mismatch, 77 skipped
 * (no QEMU, or it cannot run the guest). */
#include "oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ORACLE_GUEST_BIN
#define ORACLE_GUEST_BIN "guest.bin"
#endif

/* A guest that has not finished by then is stuck. */
#define QEMU_TIMEOUT_SECONDS 120

static char mem_path[64];

static void remove_mem_file(void)
{
    if (mem_path[0])
        unlink(mem_path);
}

/* The QEMU binary: $VMMU_QEMU, else qemu-system-x86_64 from $PATH. */
static const char *find_qemu(char *buf, size_t len)
{
    const char *env = getenv("VMMU_QEMU");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, len, "%.*s/qemu-system-x86_64", (int)n, path);
        if (n && access(buf, X_OK) == 0)
            return buf;
        path += n + (path[n] == ':');
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Boot the guest once.  Returns 0 when QEMU ran and exited (whatever the
 * guest did: the header says), -1 if it could not be started or hung. */
static const char *qemu_cpu = "max";

static int qemu_boot(const char *qemu, const char *guest)
{
    char backend[160], machine[64];
    snprintf(backend, sizeof(backend),
             "memory-backend-file,id=ram,size=%u,mem-path=%s,share=on", OR_RAM_SIZE, mem_path);
    snprintf(machine, sizeof(machine), "pc,accel=tcg,memory-backend=ram");
    char mem[16];
    snprintf(mem, sizeof(mem), "%uM", OR_RAM_SIZE >> 20);
    char *argv[] = {(char *)qemu, "-nodefaults", "-display", "none", "-no-reboot",
                    "-machine", machine, "-cpu", (char *)qemu_cpu, "-m", mem, "-object", backend,
                    "-kernel", (char *)guest, "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
                    "-serial", "none", "-monitor", "none", NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
        }
        execv(qemu, argv);
        _exit(127);
    }
    double deadline = now() + QEMU_TIMEOUT_SECONDS;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 127 ? -1 : 0;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "oracle: QEMU did not finish within %d s\n", QEMU_TIMEOUT_SECONDS);
            return -1;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Run cases [0, n) of a batch, booting again after a case the guest did
 * not survive (that case stays unfinished and is reported).  Returns the
 * number of boots, or -1 if the guest never got going. */
static int run_batch(const char *qemu, const char *guest_path, uint8_t *ram, const uint8_t *guest,
                     size_t guest_len, unsigned mode, uint32_t n)
{
    uint32_t first = 0;
    int boots = 0;
    do {
        or_image_prepare(ram, guest, guest_len, mode, n, first);
        boots++;
        if (qemu_boot(qemu, guest_path) < 0)
            return -1;
        uint32_t status = or_get32(ram, OR_HEADER + H_STATUS);
        if (status == OR_STATUS_DONE)
            break;
        uint32_t progress = or_get32(ram, OR_HEADER + H_PROGRESS);
        uint32_t stuck = progress > first ? progress : first;
        if (status != OR_STATUS_RUNNING) {
            fprintf(stderr, "oracle: the guest did not start (status %u)\n", status);
            return -1;
        }
        printf("oracle: the guest stopped in case %" PRIu32 " of mode %u; continuing after it\n",
               stuck, mode);
        first = stuck + 1;
    } while (first < n);
    return boots;
}

int main(int argc, char **argv)
{
    struct or_options opt = {0};
    if (!or_options_parse(&opt, argc, argv, 8000))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *guest_path = opt.guest ? opt.guest : ORACLE_GUEST_BIN;
    /* VMMU_ORACLE_QEMU_CPU: another -cpu, e.g. the feature set the KVM
     * oracle uses (max,pdpe1gb=off,la57=off,pku=off,pks=off). */
    const char *cpu_env = getenv("VMMU_ORACLE_QEMU_CPU");
    if (cpu_env && *cpu_env)
        qemu_cpu = cpu_env;

    char qbuf[4096];
    const char *qemu = find_qemu(qbuf, sizeof(qbuf));
    if (!qemu) {
        printf("SKIP: qemu-system-x86_64 not found (set VMMU_QEMU)\n");
        return OR_EXIT_SKIP;
    }
    uint8_t *guest = NULL, *ram = MAP_FAILED;
    uint32_t entry;
    int rc = OR_EXIT_SKIP;
    size_t guest_len = or_guest_load(guest_path, &guest, &entry);
    if (!guest_len)
        return 1;

    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(mem_path, sizeof(mem_path), "%s/vmmu-oracle-XXXXXX", dir);
    int fd = mkstemp(mem_path);
    if (fd < 0 || ftruncate(fd, OR_RAM_SIZE) < 0) {
        printf("SKIP: cannot create guest RAM file in %s: %s\n", dir, strerror(errno));
        goto out;
    }
    atexit(remove_mem_file);
    ram = mmap(NULL, OR_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (ram == MAP_FAILED) {
        printf("SKIP: cannot map guest RAM: %s\n", strerror(errno));
        goto out;
    }

    /* What does this QEMU's -cpu max offer? */
    double t0 = now();
    if (run_batch(qemu, guest_path, ram, guest, guest_len, OR_MODE_PROBE, 0) < 0 ||
        or_get32(ram, OR_HEADER + H_STATUS) != OR_STATUS_DONE) {
        printf("SKIP: QEMU (%s) could not run the oracle guest\n", qemu);
        goto out;
    }
    uint32_t cpuid[8];
    for (unsigned i = 0; i < 8; i++)
        cpuid[i] = or_get32(ram, OR_HEADER + H_CPUID + 4 * i);
    char vendor[13];
    memcpy(vendor, &cpuid[OR_CPUID_VENDOR_EBX], 4);
    memcpy(vendor + 4, &cpuid[OR_CPUID_VENDOR_EDX], 4);
    memcpy(vendor + 8, &cpuid[OR_CPUID_VENDOR_ECX], 4);
    vendor[12] = 0;

    struct or_profile prof = {.backend = OR_BACKEND_QEMU, .name = "qemu"};
    or_profile_from_cpuid(&prof, cpuid);
    /* QEMU's walker ignores bit 8 of PML4Es/PML5Es whatever vendor it
     * reports (its -cpu max says AuthenticAMD under TCG): Intel's rule. */
    prof.vendor = VMMU_X86_VENDOR_INTEL;
    printf("qemu oracle: %s -cpu %s, CPUID vendor %s, MAXPHYADDR %u, features 0x%x, seed %" PRIu64
           ", %lu cases per mode\n",
           qemu, qemu_cpu, vendor, prof.maxphyaddr, prof.features, opt.seed, opt.cases);

    struct or_stats st = {0};
    static const unsigned modes[] = {OR_MODE_LEGACY, OR_MODE_LONG4, OR_MODE_LONG5};
    for (unsigned k = 0; k < 3; k++) {
        unsigned mode = modes[k];
        if (mode == OR_MODE_LONG5 && !(prof.features & VMMU_X86_FEAT_LA57)) {
            printf("qemu oracle: no LA57 in this QEMU: 5-level paging not compared\n");
            continue;
        }
        uint32_t n = (uint32_t)opt.cases;
        or_generate(ram, &prof, mode, opt.seed, n);
        double t = now();
        int boots = run_batch(qemu, guest_path, ram, guest, guest_len, mode, n);
        if (boots < 0) {
            printf("SKIP: QEMU could not run the oracle guest in mode %u\n", mode);
            goto out;
        }
        double tq = now() - t;
        t = now();
        or_compare(ram, &prof, mode, opt.seed, n, &st);
        printf("qemu oracle: mode %u: %" PRIu32 " cases, %d boot(s), QEMU %.2f s, vmmu %.2f s\n",
               mode, n, boots, tq, now() - t);
    }
    or_stats_print(&st, &prof);
    printf("qemu oracle: %.1f s in all; rerun with --seed %" PRIu64 " to reproduce\n", now() - t0,
           opt.seed);
    rc = st.mismatches ? 1 : 0;
out:
    if (ram != MAP_FAILED)
        munmap(ram, OR_RAM_SIZE);
    free(guest);
    return rc;
}
