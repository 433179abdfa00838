/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend of the reference emulator: the same machine (abi.h) with
 * guest code running on the host CPU through /dev/kvm.
 *
 * What it shares with the vmmu backend: the machine is built by that
 * backend's create step (a vmmu vm with the RAM region, the vmmu vCPUs that
 * give each vCPU its id for the device-model layer, and the DMA engine
 * attached through vmmu_dm_*), and the loader fills that RAM.  KVM maps the
 * very same host memory with KVM_SET_USER_MEMORY_REGION, so the image, the
 * boot info, the GDT and the page tables the guest sees are the ones the
 * loader wrote, and the out-of-process device model's DMA reaches the same
 * bytes.
 *
 * What it does itself: one KVM vCPU per host thread, started in the entry
 * state of abi.h (long mode, the loader's GDT and CR3); port I/O exits go
 * to the machine (emu_port_in/out), MMIO exits to the device-model layer
 * (vmmu_p2m_device_access, waiting with vmmu_dm_vcpu_wait while the device
 * model answers), HLT exits sleep until an interrupt is pending.  There is
 * no in-kernel interrupt controller: the machine's paravirtual IPIs are
 * injected with KVM_INTERRUPT when the vCPU opens an interrupt window.
 *
 * TLB flushes: on KVM the guest's own INVLPG / CR3 writes act on the real
 * (or shadow) TLB.  The PV flush hypercall marks each target and kicks the
 * remote ones out of KVM_RUN; a marked vCPU, before it enters the guest
 * again, writes its CR4 with PGE toggled and then back through
 * KVM_SET_SREGS, which makes KVM rebuild its MMU context and flush every
 * translation of the vCPU (more than the guest asked for, which is always
 * allowed).  A synchronous call waits until each running target did so,
 * doing meanwhile the flushes asked of its own vCPU (a target may be
 * waiting for the caller in a flush of its own).
 *
 * A kick is SIGUSR1 sent to the vCPU's thread: the thread blocks it except
 * inside KVM_RUN (KVM_SET_SIGNAL_MASK), so it interrupts only KVM_RUN and a
 * kick sent just before KVM_RUN makes KVM_RUN return at once.
 *
 * Not supported with this backend: the host pager (KVM maps the RAM as it
 * is; vmmu cannot page it behind KVM's back), and an instruction limit
 * (KVM does not count instructions).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmmu_backend.h"

#define KB_KICK_SIGNAL SIGUSR1
#define KB_CPUID_ENTRIES 256u

struct kb_vcpu {
    struct emu_machine *m;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;     /* with kb.lock */
    bool thread_done;        /* with kb.lock: its thread no longer takes kicks */
    pthread_cond_t wake;     /* with kb.lock */
    bool halted;             /* with kb.lock */
    bool asleep;             /* with kb.lock: waiting in HLT, counted in kb.blocked */
    _Atomic bool kicked;
    _Atomic uint64_t exits;  /* times it left KVM_RUN */
    _Atomic bool flush_pending;   /* a PV flush targets it */
    _Atomic uint64_t flushes_done; /* flushes it performed; synchronous callers wait on it */
    _Atomic bool running;    /* inside its run loop (started, not finished) */
    uint64_t io_exits, mmio_exits, hlt_exits, irq_injected, flushes_remote;
};

struct kb {
    struct vb *vb;           /* the vmmu backend's machine: RAM, device model */
    int kvm_fd, vm_fd;
    long run_size;
    struct kvm_cpuid2 *cpuid;
    void *ram;
    pthread_mutex_t lock;
    unsigned started, blocked;
    bool closing;
    struct kb_vcpu vcpu[EMU_VCPUS_MAX];
};

static struct kb *kb_of(struct emu_machine *m)
{
    return m->backend;
}

int emu_kvm_probe(char *why, size_t len)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len, "/dev/kvm: %s", strerror(errno));
        return -1;
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        snprintf(why, len, "/dev/kvm: API version %d, this program speaks %d", version,
                 KVM_API_VERSION);
        close(fd);
        return -1;
    }
    int ext = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
    close(fd);
    if (ext <= 0) {
        snprintf(why, len, "/dev/kvm: no KVM_CAP_USER_MEMORY");
        return -1;
    }
    return 0;
}

/* ---- creation ---------------------------------------------------------------------- */

static void kick_handler(int sig)
{
    (void)sig; /* only makes KVM_RUN return with EINTR */
}

/* KVM_RUN ends with EINTR when a kick arrives, but the signal stays
 * pending: the thread's own mask, which blocks it, is back in force before
 * the handler could run.  Take it off the queue, or every KVM_RUN after
 * this one would end at once. */
static void eat_kicks(void)
{
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, KB_KICK_SIGNAL);
    const struct timespec now = {0, 0};
    while (sigtimedwait(&kick, NULL, &now) == KB_KICK_SIGNAL)
        ;
}

/* KVM PVM (guests in the host's ring 3, shadow paging) is loaded: it
 * sends CMPXCHG16B to KVM's instruction emulator, which cannot do it, and
 * page-straddling LOCKed operations too, which that emulator does not
 * keep atomic (seen: 47997 of 48000 increments with 12 vCPUs). */
static bool kb_is_pvm(void)
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

#define KB_FAIL(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "vmmu run: --backend kvm: " __VA_ARGS__);                                  \
        return -1;                                                                                 \
    } while (0)

static int kb_create_vcpu(struct emu_machine *m, struct kb *k, unsigned i)
{
    struct kb_vcpu *v = &k->vcpu[i];
    v->m = m;
    v->index = i;
    v->fd = -1;
    pthread_cond_init(&v->wake, NULL);
    v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
    if (v->fd < 0)
        KB_FAIL("KVM_CREATE_VCPU %u: %s\n", i, strerror(errno));
    void *run = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED)
        KB_FAIL("mmap of vcpu %u's kvm_run: %s\n", i, strerror(errno));
    v->run = run;
    if (ioctl(v->fd, KVM_SET_CPUID2, k->cpuid) < 0)
        KB_FAIL("KVM_SET_CPUID2 on vcpu %u: %s\n", i, strerror(errno));
    /* Inside KVM_RUN every signal but those the thread blocks anyway may
     * arrive; the kick signal is unblocked there only. */
    sigset_t set;
    pthread_sigmask(SIG_SETMASK, NULL, &set);
    sigdelset(&set, KB_KICK_SIGNAL);
    /* struct kvm_signal_mask: len, then the kernel's 64-bit sigset. */
    _Alignas(struct kvm_signal_mask) uint8_t buf[sizeof(struct kvm_signal_mask) + 8];
    struct kvm_signal_mask *mask = (struct kvm_signal_mask *)buf;
    mask->len = 8;
    memcpy(mask->sigset, &set, 8);
    if (ioctl(v->fd, KVM_SET_SIGNAL_MASK, mask) < 0)
        KB_FAIL("KVM_SET_SIGNAL_MASK on vcpu %u: %s\n", i, strerror(errno));
    return 0;
}

static int kb_create(struct emu_machine *m)
{
    if (m->cfg.pager_pages) {
        fprintf(stderr, "vmmu run: --backend kvm: no host pager (KVM maps guest RAM directly)\n");
        return -1;
    }
    if (m->cfg.max_insns) {
        /* `vmmu run` drops the limit for KVM; an embedder asked for it. */
        fprintf(stderr, "vmmu run: --backend kvm: KVM cannot count instructions (max_insns)\n");
        return -1;
    }
    char why[160];
    if (emu_kvm_probe(why, sizeof(why)) < 0) {
        fprintf(stderr, "vmmu run: --backend kvm: %s (KVM backend unavailable)\n", why);
        return -1;
    }
    struct kb *k = calloc(1, sizeof(*k));
    if (!k)
        return -1;
    k->kvm_fd = k->vm_fd = -1;
    pthread_mutex_init(&k->lock, NULL);
    for (unsigned i = 0; i < EMU_VCPUS_MAX; i++)
        k->vcpu[i].fd = -1;

    /* The vmmu backend builds the RAM and attaches the device model; it
     * keeps its state in m->backend, which then becomes ours. */
    if (emu_backend_vmmu.create(m) < 0) {
        k->vb = m->backend;
        m->backend = k;
        return -1;
    }
    k->vb = m->backend;
    m->backend = k;

    struct vmmu_region_info ri;
    int rc = vmmu_region_info(k->vb->vm, k->vb->ram_id, &ri);
    if (rc < 0 || !ri.host)
        KB_FAIL("the RAM region has no host memory (%s)\n", rc < 0 ? vmmu_strerror(rc) : "NULL");
    k->ram = ri.host;

    k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k->kvm_fd < 0)
        KB_FAIL("/dev/kvm: %s (KVM backend unavailable)\n", strerror(errno));
    k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
    if (k->vm_fd < 0)
        KB_FAIL("KVM_CREATE_VM: %s\n", strerror(errno));
    k->run_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (k->run_size < (long)sizeof(struct kvm_run))
        KB_FAIL("KVM_GET_VCPU_MMAP_SIZE: %s\n", strerror(errno));
    struct kvm_userspace_memory_region mr = {.slot = 0, .guest_phys_addr = 0,
                                             .memory_size = m->cfg.ram_size,
                                             .userspace_addr = (uintptr_t)k->ram};
    if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
        KB_FAIL("KVM_SET_USER_MEMORY_REGION (%llu MiB): %s\n",
                (unsigned long long)(m->cfg.ram_size >> 20), strerror(errno));

    k->cpuid = calloc(1, sizeof(*k->cpuid) + KB_CPUID_ENTRIES * sizeof(k->cpuid->entries[0]));
    if (!k->cpuid)
        KB_FAIL("out of memory\n");
    k->cpuid->nent = KB_CPUID_ENTRIES;
    if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, k->cpuid) < 0)
        KB_FAIL("KVM_GET_SUPPORTED_CPUID: %s\n", strerror(errno));
    /* The vmmu backend's CPU model: no 1 GiB pages, LA57, PKU or PKS. */
    struct kvm_cpuid_entry2 *e;
    if ((e = cpuid_find(k->cpuid, 0x80000001, 0)))
        e->edx &= ~(1u << 26);
    if ((e = cpuid_find(k->cpuid, 7, 0)))
        e->ecx &= ~((1u << 16) | (1u << 3) | (1u << 31));

    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    if (sigaction(KB_KICK_SIGNAL, &sa, NULL) < 0)
        KB_FAIL("sigaction: %s\n", strerror(errno));
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++)
        if (kb_create_vcpu(m, k, i) < 0)
            return -1;
    return 0;
}

static void kb_destroy(struct emu_machine *m)
{
    struct kb *k = kb_of(m);
    for (unsigned i = 0; i < EMU_VCPUS_MAX; i++) {
        struct kb_vcpu *v = &k->vcpu[i];
        if (v->run)
            munmap(v->run, (size_t)k->run_size);
        if (v->fd >= 0)
            close(v->fd);
        if (v->m)
            pthread_cond_destroy(&v->wake);
    }
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    if (k->kvm_fd >= 0)
        close(k->kvm_fd);
    free(k->cpuid);
    pthread_mutex_destroy(&k->lock);
    /* The vmmu backend's part goes last: KVM no longer maps its RAM. */
    m->backend = k->vb;
    if (m->backend)
        emu_backend_vmmu.destroy(m);
    free(k);
    m->backend = NULL;
}

static int kb_gpa_read(struct emu_machine *m, uint64_t gpa, void *buf, size_t len)
{
    return vmmu_gpa_read(kb_of(m)->vb->vm, gpa, buf, len, 0, NULL) < 0 ? -1 : 0;
}

static int kb_gpa_write(struct emu_machine *m, uint64_t gpa, const void *buf, size_t len)
{
    return vmmu_gpa_write(kb_of(m)->vb->vm, gpa, buf, len, 0, NULL) < 0 ? -1 : 0;
}

/* ---- kicks, halts, interrupts ----------------------------------------------------------- */

static void kb_kick(struct emu_machine *m, unsigned index)
{
    struct kb *k = kb_of(m);
    if (!k || index >= m->cfg.nr_vcpus)
        return;
    struct kb_vcpu *v = &k->vcpu[index];
    pthread_mutex_lock(&k->lock);
    atomic_store(&v->kicked, true);
    /* It stops counting as blocked now, not when its thread gets to run:
     * until then a vCPU that halts next must not find every vCPU blocked. */
    if (v->asleep) {
        v->asleep = false;
        k->blocked--;
    }
    pthread_cond_signal(&v->wake);
    /* Not a thread that has left its loop: the run may have joined it, and
     * the signal would reach a thread that is gone (an IPI posted when the
     * machine stopped comes that late). */
    if (v->thread_started && !v->thread_done && !v->halted)
        pthread_kill(v->thread, KB_KICK_SIGNAL);
    pthread_mutex_unlock(&k->lock);
}

/* HLT: sleep until an interrupt can be taken (one is pending and the
 * guest halted with IF=1: with IF=0 only what this machine never sends,
 * an NMI or INIT, would wake it) or the machine stops. */
static void halt_wait(struct kb_vcpu *v)
{
    struct emu_machine *m = v->m;
    struct kb *k = kb_of(m);
    bool all_halted = false;
    bool can_wake = v->run->if_flag != 0;
    v->hlt_exits++;
    pthread_mutex_lock(&k->lock);
    v->halted = true;
    while (!emu_machine_stopping(m) && !(can_wake && emu_irq_pending(m, v->index))) {
        if (k->blocked + 1 == k->started) {
            all_halted = true;
            break;
        }
        k->blocked++;
        v->asleep = true;
        while (v->asleep) /* until a kick, which also uncounts us */
            pthread_cond_wait(&v->wake, &k->lock);
    }
    v->halted = false;
    pthread_mutex_unlock(&k->lock);
    if (all_halted)
        emu_machine_stop(m, EMU_STOP_ALL_HALTED,
                         "every vCPU is halted and none can be woken (last: vcpu %u)", v->index);
}

/* Before KVM_RUN: inject the highest pending vector if the guest can take
 * it now, else ask KVM to exit when it can. */
static int deliver_interrupt(struct kb_vcpu *v)
{
    struct kvm_run *run = v->run;
    run->request_interrupt_window = 0;
    if (!emu_irq_pending(v->m, v->index))
        return 0;
    if (run->ready_for_interrupt_injection && run->if_flag) {
        int vector = emu_irq_take(v->m, v->index);
        if (vector < 0)
            return 0;
        struct kvm_interrupt irq = {.irq = (uint32_t)vector};
        if (ioctl(v->fd, KVM_INTERRUPT, &irq) < 0) {
            emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_INTERRUPT %d: %s", v->index,
                             vector, strerror(errno));
            return -1;
        }
        v->irq_injected++;
        return 0;
    }
    run->request_interrupt_window = 1;
    return 0;
}

/* ---- the vCPU thread --------------------------------------------------------------------- */

static void segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
    memset(s, 0, sizeof(*s));
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->g = 1;
    s->l = code64;
    s->db = !code64;
}

/* The entry state of abi.h, as the vmmu backend's x86emu_cpu_init_long_mode() gives it. */
static int vcpu_boot(struct kb_vcpu *v)
{
    const struct emu_vcpu_boot *boot = &v->m->vcpu[v->index].boot;
    struct kvm_sregs sr;
    if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
        goto fail_get;
    segment(&sr.cs, EMU_SEL_CODE64, 11, true);
    segment(&sr.ds, EMU_SEL_DATA, 3, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    memset(&sr.tr, 0, sizeof(sr.tr));
    sr.tr.limit = 0x67;
    sr.tr.type = 11; /* busy 64-bit TSS: VM entry requires a usable TR */
    sr.tr.present = 1;
    memset(&sr.ldt, 0, sizeof(sr.ldt));
    sr.ldt.type = 2;
    sr.ldt.unusable = 1;
    sr.gdt.base = EMU_GDT_GPA;
    sr.gdt.limit = EMU_GDT_ENTRIES * 8 - 1;
    sr.idt.base = 0;
    sr.idt.limit = 0;
    /* PE|MP|ET|NE|WP|PG, PAE, LME|LMA|NXE|SCE */
    sr.cr0 = 0x1u | 0x2u | 0x10u | 0x20u | 0x10000u | 0x80000000u;
    sr.cr4 = 0x20u;
    sr.efer = 0x100u | 0x400u | 0x800u | 0x1u;
    sr.cr3 = boot->cr3;
    if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0) {
        emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_SET_SREGS (cr3 0x%llx): %s",
                         v->index, (unsigned long long)boot->cr3, strerror(errno));
        return -1;
    }
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = boot->rip;
    regs.rsp = boot->rsp;
    regs.rdi = boot->rdi;
    regs.rsi = boot->rsi;
    regs.rflags = 2;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
        emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_SET_REGS: %s", v->index,
                         strerror(errno));
        return -1;
    }
    return 0;
fail_get:
    emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_GET_SREGS: %s", v->index,
                     strerror(errno));
    return -1;
}

/* Drop every translation of the vCPU: CR4.PGE toggled and restored. */
static int flush_tlb(struct kb_vcpu *v)
{
    struct kvm_sregs sr;
    if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0) {
        emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_GET_SREGS for a flush: %s",
                         v->index, strerror(errno));
        return -1;
    }
    uint64_t cr4 = sr.cr4;
    sr.cr4 = cr4 ^ 0x80u; /* PGE */
    if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
        goto fail;
    sr.cr4 = cr4;
    if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
        goto fail;
    atomic_fetch_add(&v->flushes_done, 1);
    return 0;
fail:
    emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM_SET_SREGS for a flush (cr4 0x%llx): %s",
                     v->index, (unsigned long long)sr.cr4, strerror(errno));
    return -1;
}

static void exit_io(struct kb_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    unsigned size = run->io.size;
    v->io_exits++;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        uint32_t value = 0;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            memcpy(&value, data, size);
            emu_port_out(v->m, v->index, run->io.port, size, value);
        } else {
            emu_port_in(v->m, v->index, run->io.port, size, &value);
            memcpy(data, &value, size);
        }
    }
}

static void exit_mmio(struct kb_vcpu *v)
{
    struct kb *k = kb_of(v->m);
    struct kvm_run *run = v->run;
    struct vb_vcpu *vv = &k->vb->vcpu[v->index];
    v->mmio_exits++;
    unsigned len = run->mmio.len;
    if (!k->vb->dm || (len != 1 && len != 2 && len != 4 && len != 8)) {
        /* Nothing there: reads see all-ones, writes are dropped (as a hole). */
        if (!run->mmio.is_write)
            memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
        return;
    }
    struct vmmu_device_req req = {.gpa = run->mmio.phys_addr, .size = len,
                                  .write = run->mmio.is_write, .vcpu_id = vv->dm_id};
    if (req.write)
        memcpy(&req.data, run->mmio.data, len);
    int rc;
    while ((rc = vmmu_p2m_device_access(k->vb->vm, &req)) == VMMU_EPENDING) {
        /* The device model answers later: wait, then ask again (the same
         * access from the same vCPU completes). */
        int w = vmmu_dm_vcpu_wait(k->vb->dm, vv->dm_id, -1);
        if (w < 0 && w != VMMU_ETIMEDOUT) {
            rc = w;
            break;
        }
        if (emu_machine_stopping(v->m))
            return;
    }
    if (rc < 0) {
        emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: MMIO %s of %u bytes at 0x%llx: %s",
                         v->index, req.write ? "write" : "read", len,
                         (unsigned long long)req.gpa, vmmu_strerror(rc));
        return;
    }
    if (!req.write)
        memcpy(run->mmio.data, &req.data, len);
}

/* KVM could not go on (it failed to emulate an instruction, say): stop,
 * naming the guest's RIP and the bytes there so the cause can be found. */
static void internal_error(struct kb_vcpu *v)
{
    char where[160] = "";
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0) {
        int n = snprintf(where, sizeof(where), ", rip 0x%llx", (unsigned long long)regs.rip);
        struct kvm_translation tr = {.linear_address = regs.rip};
        uint8_t bytes[8];
        if (ioctl(v->fd, KVM_TRANSLATE, &tr) == 0 && tr.valid &&
            vmmu_gpa_read(kb_of(v->m)->vb->vm, tr.physical_address, bytes, sizeof(bytes), 0,
                          NULL) == 0) {
            n += snprintf(where + n, sizeof(where) - (size_t)n, ", bytes");
            for (unsigned i = 0; i < sizeof(bytes) && n < (int)sizeof(where) - 4; i++)
                n += snprintf(where + n, sizeof(where) - (size_t)n, " %02x", bytes[i]);
        }
    }
    emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: KVM internal error %u%s", v->index,
                     v->run->internal.suberror, where);
}

static void *vcpu_thread(void *arg)
{
    struct kb_vcpu *v = arg;
    struct emu_machine *m = v->m;
    struct kb *k = kb_of(m);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, KB_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    atomic_store(&v->running, true);
    if (vcpu_boot(v) < 0)
        goto out;
    while (!emu_machine_stopping(m)) {
        if (k->vb->dm) {
            struct vb_vcpu *vv = &k->vb->vcpu[v->index];
            int rc = vmmu_dm_vcpu_safe_point(k->vb->dm, vv->dm_id, vv->dm_flags);
            if (rc < 0) {
                emu_machine_stop(m, EMU_STOP_ERROR, "vcpu %u: device-model safe point: %s",
                                 v->index, vmmu_strerror(rc));
                break;
            }
        }
        atomic_store(&v->kicked, false);
        if (atomic_exchange(&v->flush_pending, false) && flush_tlb(v) < 0)
            break;
        if (deliver_interrupt(v) < 0)
            break;
        int rc = ioctl(v->fd, KVM_RUN, 0);
        atomic_fetch_add(&v->exits, 1);
        if (rc < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                eat_kicks(); /* kicked: look at interrupts and the stop flag */
                continue;
            }
            emu_machine_stop(m, EMU_STOP_ERROR, "vcpu %u: KVM_RUN: %s", v->index,
                             strerror(errno));
            break;
        }
        switch (v->run->exit_reason) {
        case KVM_EXIT_IO:
            exit_io(v);
            break;
        case KVM_EXIT_MMIO:
            exit_mmio(v);
            break;
        case KVM_EXIT_HLT:
            halt_wait(v);
            break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_SHUTDOWN:
            emu_machine_stop(m, EMU_STOP_TRIPLE, "vcpu %u: triple fault (KVM_EXIT_SHUTDOWN)",
                             v->index);
            break;
        case KVM_EXIT_FAIL_ENTRY:
            emu_machine_stop(m, EMU_STOP_ERROR, "vcpu %u: KVM could not enter the guest "
                             "(hardware reason 0x%llx)", v->index,
                             (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            internal_error(v);
            break;
        default:
            emu_machine_stop(m, EMU_STOP_ERROR, "vcpu %u: unexpected KVM exit %u", v->index,
                             v->run->exit_reason);
            break;
        }
    }
out:
    pthread_mutex_lock(&k->lock);
    v->thread_done = true;
    pthread_mutex_unlock(&k->lock);
    atomic_store(&v->running, false);
    return NULL;
}

static int kb_start_vcpu(struct emu_machine *m, unsigned index)
{
    struct kb *k = kb_of(m);
    struct kb_vcpu *v = &k->vcpu[index];
    int rc = -1;
    pthread_mutex_lock(&k->lock);
    if (!k->closing && !pthread_create(&v->thread, NULL, vcpu_thread, v)) {
        v->thread_started = true;
        k->started++;
        rc = 0;
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

static int kb_run(struct emu_machine *m)
{
    struct kb *k = kb_of(m);
    /* The boot info tells the guest which backend runs it, and what this
     * KVM cannot do.  The guest cannot find that out itself: where ring 0
     * runs in the host's ring 3 (KVM PVM), CPUID is the host CPU's. */
    struct emu_boot_info bi;
    if (kb_gpa_read(m, EMU_BOOT_INFO_GPA, &bi, sizeof(bi)) == 0) {
        bi.flags &= ~EMU_BOOT_BACKEND_EMULATOR;
        struct kvm_cpuid_entry2 *e = cpuid_find(k->cpuid, 1, 0);
        if (!e || !(e->ecx & (1u << 17)))
            bi.flags |= EMU_BOOT_NO_PCID;
        if (kb_is_pvm())
            bi.flags |= EMU_BOOT_NO_CMPXCHG16B | EMU_BOOT_SPLIT_LOCK_NOT_ATOMIC;
        (void)kb_gpa_write(m, EMU_BOOT_INFO_GPA, &bi, sizeof(bi));
    }
    if (kb_start_vcpu(m, 0) < 0) {
        emu_machine_stop(m, EMU_STOP_ERROR, "cannot start vcpu 0");
        return -1;
    }
    pthread_join(k->vcpu[0].thread, NULL);
    pthread_mutex_lock(&k->lock);
    k->closing = true;
    pthread_mutex_unlock(&k->lock);
    for (unsigned i = 1; i < m->cfg.nr_vcpus; i++)
        if (k->vcpu[i].thread_started)
            pthread_join(k->vcpu[i].thread, NULL);
    return 0;
}

/* EMU_HC_FLUSH: mark the targets (the caller flushes before its `out`
 * completes, i.e. before it enters the guest again), kick the others, and
 * unless asynchronous wait until each running, non-halted one flushed. */
static int kb_flush(struct emu_machine *m, unsigned caller, uint64_t targets,
                    const struct emu_hypercall *hc)
{
    struct kb *k = kb_of(m);
    uint64_t seen[EMU_VCPUS_MAX];
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        if (!(targets & (1ull << i)))
            continue;
        seen[i] = atomic_load(&k->vcpu[i].flushes_done);
        atomic_store(&k->vcpu[i].flush_pending, true);
        if (i != caller) {
            kb_kick(m, i);
            k->vcpu[caller].flushes_remote++;
        }
    }
    if (hc->flags & EMU_FLUSH_ASYNC)
        return EMU_HC_OK;
    struct kb_vcpu *self = &k->vcpu[caller];
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        if (i == caller || !(targets & (1ull << i)))
            continue;
        struct kb_vcpu *v = &k->vcpu[i];
        /* A halted vCPU counts as flushed: it flushes before it runs again. */
        while (atomic_load(&v->running) && atomic_load(&v->flushes_done) == seen[i] &&
               !emu_machine_stopping(m)) {
            /* The target may be waiting in a flush of its own that names
             * the caller: the caller flushes meanwhile, or each would wait
             * for the other for ever. */
            if (atomic_exchange(&self->flush_pending, false) && flush_tlb(self) < 0)
                break;
            pthread_mutex_lock(&k->lock);
            bool halted = v->halted;
            pthread_mutex_unlock(&k->lock);
            if (halted)
                break;
            sched_yield();
        }
    }
    return EMU_HC_OK;
}

static void kb_summary(struct emu_machine *m, FILE *out, bool per_vcpu)
{
    struct kb *k = kb_of(m);
    uint64_t io = 0, mmio = 0, hlt = 0, irq = 0, remote = 0;
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        struct kb_vcpu *v = &k->vcpu[i];
        if (per_vcpu && atomic_load(&m->vcpu[i].started))
            fprintf(out, "  vcpu %u: %llu exits (%llu port I/O, %llu MMIO, %llu HLT), "
                    "%llu interrupts injected\n", i, (unsigned long long)atomic_load(&v->exits),
                    (unsigned long long)v->io_exits, (unsigned long long)v->mmio_exits,
                    (unsigned long long)v->hlt_exits, (unsigned long long)v->irq_injected);
        io += v->io_exits;
        mmio += v->mmio_exits;
        hlt += v->hlt_exits;
        irq += v->irq_injected;
        remote += v->flushes_remote;
    }
    fprintf(out, "kvm: exits: %llu port I/O, %llu MMIO, %llu HLT; %llu interrupts injected; "
            "%llu remote flush kicks\n", (unsigned long long)io, (unsigned long long)mmio,
            (unsigned long long)hlt, (unsigned long long)irq, (unsigned long long)remote);
    fprintf(out, "machine: %llu hypercalls (%llu flush), %llu IPIs, %llu console bytes\n",
            (unsigned long long)m->stats.hypercalls, (unsigned long long)m->stats.flush_calls,
            (unsigned long long)m->stats.ipis_sent, (unsigned long long)m->stats.console_bytes);
}

const struct emu_backend_ops emu_backend_kvm = {
    .name = "kvm",
    .create = kb_create,
    .gpa_read = kb_gpa_read,
    .gpa_write = kb_gpa_write,
    .run = kb_run,
    .start_vcpu = kb_start_vcpu,
    .kick = kb_kick,
    .flush = kb_flush,
    .summary = kb_summary,
    .destroy = kb_destroy,
};
