/* SPDX-License-Identifier: MIT */
/* The KVM paging oracle: the same guest and cases as the QEMU oracle, run
 * on /dev/kvm, compared with vmmu by the same code (oracle.c).  Covers
 * what KVM offers everywhere: 4-level paging, 4 KiB and 2 MiB pages, WP,
 * NX, SMEP, SMAP, reserved bits, CPL 0 and 3, with the vendor's rules
 * (bit 8 of a PML4E is reserved on AMD).
 *
 * The backend is deliberately plain: one fresh VM per boot (so no memory
 * slot ever sees host writes to guest page tables after it was
 * registered), the guest entered in 32-bit protected mode exactly as
 * QEMU's multiboot loader leaves it, and the CPUID KVM supports minus 1 GiB
 * pages, LA57, PKU and PKS.  Anything it cannot set up - no /dev/kvm, an
 * ioctl that fails, a guest that never says hello - is a skip (77); only a
 * comparison mismatch fails (1). */
#include "oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef ORACLE_GUEST_BIN
#define ORACLE_GUEST_BIN "guest.bin"
#endif

#define KVM_TIMEOUT_SECONDS 120
#define CPUID_MAX_ENTRIES 256

/* What one boot achieved. */
enum boot_result {
    BOOT_DONE,     /* the guest finished its batch */
    BOOT_STOPPED,  /* it said hello, then stopped (triple fault, error) */
    BOOT_FAILED,   /* it never said hello, or KVM refused something */
};

struct kvm {
    int fd;
    struct kvm_cpuid2 *cpuid; /* what the guest sees */
    uint32_t entry;
    uint8_t *ram;
    char why[160];            /* the first thing that went wrong */
};

static void on_alarm(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

static uint32_t cpuid_reg(struct kvm_cpuid2 *c, uint32_t fn, int reg)
{
    struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, 0);
    if (!e)
        return 0;
    return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->db = 1;
    s->s = 1;
    s->g = 1;
    (void)code;
}

/* One boot in a fresh VM. */
static enum boot_result kvm_boot(struct kvm *k)
{
    enum boot_result res = BOOT_FAILED;
    int vm = -1, vcpu = -1;
    struct kvm_run *run = MAP_FAILED;
    long run_size = 0;
    bool hello = false;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(k->why, sizeof(k->why), __VA_ARGS__);                                             \
        goto out;                                                                                  \
    } while (0)

    vm = ioctl(k->fd, KVM_CREATE_VM, 0);
    if (vm < 0)
        FAIL("KVM_CREATE_VM: %s", strerror(errno));
    struct kvm_userspace_memory_region mr = {.slot = 0, .guest_phys_addr = 0,
                                             .memory_size = OR_RAM_SIZE,
                                             .userspace_addr = (uintptr_t)k->ram};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
        FAIL("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        FAIL("KVM_CREATE_VCPU: %s", strerror(errno));
    run_size = ioctl(k->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        FAIL("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        FAIL("mmap of kvm_run: %s", strerror(errno));
    if (ioctl(vcpu, KVM_SET_CPUID2, k->cpuid) < 0)
        FAIL("KVM_SET_CPUID2: %s", strerror(errno));

    /* 32-bit protected mode, flat segments, paging off: the multiboot
     * entry state. */
    struct kvm_sregs sr;
    if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0)
        FAIL("KVM_GET_SREGS: %s", strerror(errno));
    seg(&sr.cs, SEL_CODE32, 11, true);
    seg(&sr.ds, SEL_DATA, 3, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    memset(&sr.tr, 0, sizeof(sr.tr));
    sr.tr.limit = 0x67;
    sr.tr.type = 11; /* busy 32-bit TSS: VM entry insists on a usable TR */
    sr.tr.present = 1;
    memset(&sr.ldt, 0, sizeof(sr.ldt));
    sr.ldt.type = 2;
    sr.ldt.unusable = 1;
    sr.cr0 = 0x11; /* PE, ET */
    sr.cr4 = 0;
    sr.efer = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0)
        FAIL("KVM_SET_SREGS: %s", strerror(errno));
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = k->entry;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        FAIL("KVM_SET_REGS: %s", strerror(errno));

    alarm(KVM_TIMEOUT_SECONDS);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                FAIL("the guest did not finish within %d s", KVM_TIMEOUT_SECONDS);
            FAIL("KVM_RUN: %s", strerror(errno));
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == OR_PORT_HELLO)
                hello = true;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == OR_PORT_DONE) {
                res = BOOT_DONE;
                goto out;
            }
            break;
        case KVM_EXIT_HLT:
            res = BOOT_DONE;
            goto out;
        case KVM_EXIT_SHUTDOWN:
            FAIL("the guest triple-faulted");
        case KVM_EXIT_FAIL_ENTRY:
            FAIL("VM entry failed (reason 0x%llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        case KVM_EXIT_INTERNAL_ERROR:
            FAIL("KVM internal error %u", run->internal.suberror);
        default:
            FAIL("unexpected exit reason %u", run->exit_reason);
        }
    }
out:
#undef FAIL
    alarm(0);
    if (res == BOOT_FAILED && hello)
        res = BOOT_STOPPED;
    if (run != MAP_FAILED)
        munmap(run, (size_t)run_size);
    if (vcpu >= 0)
        close(vcpu);
    if (vm >= 0)
        close(vm);
    return res;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct or_options opt = {0};
    if (!or_options_parse(&opt, argc, argv, 20000))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *guest_path = opt.guest ? opt.guest : ORACLE_GUEST_BIN;
    uint8_t *guest = NULL;
    struct kvm k = {.fd = -1, .ram = MAP_FAILED};
    int rc = OR_EXIT_SKIP;

    k.fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k.fd < 0) {
        printf("SKIP: /dev/kvm is not usable: %s\n", strerror(errno));
        goto out;
    }
    if (ioctl(k.fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        printf("SKIP: /dev/kvm speaks another API version\n");
        goto out;
    }
    size_t guest_len = or_guest_load(guest_path, &guest, &k.entry);
    if (!guest_len) {
        rc = 1;
        goto out;
    }
    k.cpuid = calloc(1, sizeof(*k.cpuid) + CPUID_MAX_ENTRIES * sizeof(k.cpuid->entries[0]));
    if (!k.cpuid) {
        rc = 1;
        goto out;
    }
    k.cpuid->nent = CPUID_MAX_ENTRIES;
    if (ioctl(k.fd, KVM_GET_SUPPORTED_CPUID, k.cpuid) < 0) {
        printf("SKIP: KVM_GET_SUPPORTED_CPUID: %s\n", strerror(errno));
        goto out;
    }
    /* Hide what this oracle leaves to QEMU, so that KVM and vmmu agree on
     * which bits are reserved: PDPTE.PS without 1 GiB pages, LA57, PKU,
     * PKS. */
    struct kvm_cpuid_entry2 *e;
    if ((e = cpuid_find(k.cpuid, 0x80000001, 0)))
        e->edx &= ~(1u << 26);
    if ((e = cpuid_find(k.cpuid, 7, 0)))
        e->ecx &= ~((1u << 16) | (1u << 3) | (1u << 31));

    uint32_t words[8] = {
        [OR_CPUID_VENDOR_EBX] = cpuid_reg(k.cpuid, 0, 1),
        [OR_CPUID_VENDOR_EDX] = cpuid_reg(k.cpuid, 0, 3),
        [OR_CPUID_VENDOR_ECX] = cpuid_reg(k.cpuid, 0, 2),
        [OR_CPUID_1_EDX] = cpuid_reg(k.cpuid, 1, 3),
        [OR_CPUID_7_EBX] = cpuid_reg(k.cpuid, 7, 1),
        [OR_CPUID_7_ECX] = cpuid_reg(k.cpuid, 7, 2),
        [OR_CPUID_X1_EDX] = cpuid_reg(k.cpuid, 0x80000001, 3),
        [OR_CPUID_X8_EAX] = cpuid_reg(k.cpuid, 0x80000008, 0),
    };
    char vendor[13];
    memcpy(vendor, &words[OR_CPUID_VENDOR_EBX], 4);
    memcpy(vendor + 4, &words[OR_CPUID_VENDOR_EDX], 4);
    memcpy(vendor + 8, &words[OR_CPUID_VENDOR_ECX], 4);
    vendor[12] = 0;
    struct or_profile prof = {.backend = OR_BACKEND_KVM, .name = "kvm", .avoid_pml4_256 = true};
    or_profile_from_cpuid(&prof, words);
    prof.features &= VMMU_X86_FEAT_NX | VMMU_X86_FEAT_PSE36 | VMMU_X86_FEAT_LM |
                     VMMU_X86_FEAT_SMEP | VMMU_X86_FEAT_SMAP;
    prof.vendor = (!strcmp(vendor, "AuthenticAMD") || !strcmp(vendor, "HygonGenuine"))
                      ? VMMU_X86_VENDOR_AMD
                      : VMMU_X86_VENDOR_INTEL;
    if (!(prof.features & VMMU_X86_FEAT_LM) || prof.maxphyaddr < VMMU_X86_MAXPHYADDR_MIN ||
        prof.maxphyaddr > VMMU_X86_MAXPHYADDR_MAX) {
        printf("SKIP: KVM offers no long mode or an odd MAXPHYADDR (%u)\n", prof.maxphyaddr);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART: KVM_RUN returns EINTR */
    sigaction(SIGALRM, &sa, NULL);

    k.ram = mmap(NULL, OR_RAM_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (k.ram == MAP_FAILED) {
        printf("SKIP: cannot map guest RAM: %s\n", strerror(errno));
        goto out;
    }
    uint32_t n = (uint32_t)opt.cases;
    printf("kvm oracle: CPUID vendor %s (vmmu: %s rules), MAXPHYADDR %u, features 0x%x, seed %"
           PRIu64 ", %" PRIu32 " cases\n",
           vendor, prof.vendor == VMMU_X86_VENDOR_AMD ? "AMD" : "Intel", prof.maxphyaddr,
           prof.features, opt.seed, n);

    double t0 = now();
    or_generate(k.ram, &prof, OR_MODE_LONG4, opt.seed, n);
    uint32_t first = 0;
    int boots = 0;
    unsigned long stopped = 0;
    do {
        or_image_prepare(k.ram, guest, guest_len, OR_MODE_LONG4, n, first);
        boots++;
        enum boot_result r = kvm_boot(&k);
        if (r == BOOT_DONE && or_get32(k.ram, OR_HEADER + H_STATUS) == OR_STATUS_DONE)
            break;
        uint32_t progress = or_get32(k.ram, OR_HEADER + H_PROGRESS);
        uint32_t stuck = progress > first ? progress : first;
        if (r == BOOT_FAILED) {
            /* Never reached its first report: this KVM cannot run it. */
            printf("SKIP: KVM could not run the oracle guest: %s\n",
                   k.why[0] ? k.why : "it stopped before its first report");
            goto out;
        }
        stopped++;
        printf("kvm oracle: the guest stopped in case %" PRIu32 " (%s); continuing after it\n",
               stuck, k.why);
        first = stuck + 1;
    } while (first < n);
    double tk = now() - t0;

    struct or_stats st = {0};
    double t = now();
    or_compare(k.ram, &prof, OR_MODE_LONG4, opt.seed, n, &st);
    printf("kvm oracle: %d boot(s), KVM %.2f s, vmmu %.2f s\n", boots, tk, now() - t);
    or_stats_print(&st, &prof);
    if (stopped)
        printf("kvm oracle: %lu case(s) stopped the guest; they are listed above\n", stopped);
    printf("kvm oracle: rerun with --seed %" PRIu64 " to reproduce\n", opt.seed);
    rc = st.mismatches ? 1 : 0;
out:
    if (k.ram != MAP_FAILED)
        munmap(k.ram, OR_RAM_SIZE);
    if (k.fd >= 0)
        close(k.fd);
    free(k.cpuid);
    free(guest);
    return rc;
}
