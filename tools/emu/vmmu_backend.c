/* SPDX-License-Identifier: MIT */
/*
 * The vmmu backend: guest RAM in a vmmu vm, one vmmu vCPU and one host
 * thread per guest vCPU, x86emu interpreting, and every guest memory
 * access going through vmmu (vmmu_mem.c).
 */
#include <errno.h>
#include <sched.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmmu_backend.h"

static struct vb *vb_of(struct emu_machine *m)
{
    return m->backend;
}

int vb_fail(struct vb_vcpu *v, const char *what, int err)
{
    emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u at rip 0x%llx: %s failed: %s", v->index,
                     (unsigned long long)v->cpu.rip, what, vmmu_strerror(err));
    return X86EMU_CB_RETRY;
}

/* ---- the interpreter's hooks ------------------------------------------------- */

static int hook_io_in(void *opaque, uint16_t port, unsigned size, uint32_t *value)
{
    struct vb_vcpu *v = opaque;
    emu_port_in(v->m, v->index, port, size, value);
    return X86EMU_CB_OK;
}

static int hook_io_out(void *opaque, uint16_t port, unsigned size, uint32_t value)
{
    struct vb_vcpu *v = opaque;
    emu_port_out(v->m, v->index, port, size, value);
    return X86EMU_CB_OK;
}

/* ---- the PV flush, on vmmu's remote flushes (vmmu/sync.h) ---------------------- */

static int vb_flush(struct emu_machine *m, unsigned caller, uint64_t targets,
                    const struct emu_hypercall *hc)
{
    struct vb *b = vb_of(m);
    struct vb_vcpu *self = &b->vcpu[caller];
    /* INVLPG-like, in every PCID: the target's current PCID is not known
     * here, and dropping more than asked is always correct. */
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    if (!(hc->flags & EMU_FLUSH_ALL))
        f = (struct vmmu_flush){.type = VMMU_FLUSH_RANGE, .pcid = VMMU_FLUSH_ANY_PCID,
                                .va = hc->va, .npages = hc->count};
    int rc;
    if (targets == (1ull << caller)) {
        rc = vmmu_flush_local(self->vcpu, &f);
        self->flushes_local++;
    } else {
        vmmu_cpuset_clear(b->targets[caller]);
        for (unsigned i = 0; i < m->cfg.nr_vcpus; i++)
            if ((targets & (1ull << i)) &&
                (rc = vmmu_cpuset_add(b->targets[caller], vmmu_vcpu_id(b->vcpu[i].vcpu))) < 0)
                return vb_fail(self, "building a vCPU set", rc), EMU_HC_EINVAL;
        if (hc->flags & EMU_FLUSH_ASYNC) {
            rc = vmmu_shootdown_async(b->vm, self->vcpu, b->targets[caller], &f);
            self->flushes_posted++;
        } else {
            rc = vmmu_shootdown_sync(b->vm, self->vcpu, b->targets[caller], &f);
            self->flush_waits++;
        }
    }
    if (rc < 0) {
        vb_fail(self, "flush", rc);
        return EMU_HC_EINVAL;
    }
    return EMU_HC_OK;
}

/* ---- halting and waking ---------------------------------------------------------------- */

static void vb_kick(struct emu_machine *m, unsigned index)
{
    struct vb *b = vb_of(m);
    if (!b)
        return;
    struct vb_vcpu *v = &b->vcpu[index];
    pthread_mutex_lock(&b->halt_lock);
    /* It stops counting as blocked now, not when its thread gets to run:
     * until then a vCPU that halts next must not find every vCPU blocked. */
    if (v->blocked) {
        v->blocked = false;
        b->blocked--;
        pthread_cond_signal(&v->wake);
    }
    pthread_mutex_unlock(&b->halt_lock);
}

static bool has_work(struct vb_vcpu *v)
{
    struct emu_machine *m = v->m;
    if (emu_machine_stopping(m))
        return true;
    return x86emu_interrupts_enabled(&v->cpu) && emu_irq_pending(m, v->index);
}

/* HLT: sleep until an interrupt can be taken or the machine stops.  The
 * vCPU is offline meanwhile: flush requests are not waited for, and are
 * acted on when it comes back online. */
static void halt_wait(struct vb_vcpu *v)
{
    struct vb *b = vb_of(v->m);
    bool all_halted = false;
    v->halts++;
    int rc = vmmu_vcpu_offline(v->vcpu);
    if (rc < 0) {
        vb_fail(v, "going offline", rc);
        return;
    }
    pthread_mutex_lock(&b->halt_lock);
    while (!has_work(v)) {
        if (b->blocked + 1 == b->started) {
            /* Only vCPUs post interrupts, and every other one sleeps with
             * no kick on its way: nothing can ever wake us. */
            all_halted = true;
            break;
        }
        b->blocked++;
        v->blocked = true;
        while (v->blocked) /* until a kick, which also uncounts us */
            pthread_cond_wait(&v->wake, &b->halt_lock);
    }
    pthread_mutex_unlock(&b->halt_lock);
    rc = vmmu_vcpu_online(v->vcpu);
    if (rc < 0)
        vb_fail(v, "coming online", rc);
    if (all_halted)
        emu_machine_stop(v->m, EMU_STOP_ALL_HALTED,
                         "every vCPU is halted and none can be woken (last: vcpu %u at rip 0x%llx)",
                         v->index, (unsigned long long)v->cpu.rip);
}

/* ---- the vCPU thread --------------------------------------------------------------------- */

static int vcpu_boot(struct vb_vcpu *v)
{
    const struct emu_vcpu_boot *boot = &v->m->vcpu[v->index].boot;
    struct x86emu_cpu *cpu = &v->cpu;
    x86emu_cpu_init_long_mode(cpu);
    cpu->rip = boot->rip;
    cpu->gpr[X86EMU_RSP] = boot->rsp;
    cpu->gpr[X86EMU_RDI] = boot->rdi;
    cpu->gpr[X86EMU_RSI] = boot->rsi;
    cpu->cr3 = boot->cr3;
    cpu->gdtr.base = EMU_GDT_GPA;
    cpu->gdtr.limit = EMU_GDT_ENTRIES * 8 - 1;
    struct vmmu_x86_regs regs = {
        .cr0 = cpu->cr0, .cr3 = cpu->cr3, .cr4 = cpu->cr4, .efer = cpu->efer,
        .rflags = cpu->rflags, .cpl = 0,
    };
    int rc = vmmu_vcpu_set_state(v->vcpu, &regs);
    if (rc < 0) {
        emu_machine_stop(v->m, EMU_STOP_ERROR, "vcpu %u: boot state refused (cr3 0x%llx): %s",
                         v->index, (unsigned long long)boot->cr3, vmmu_strerror(rc));
        return -1;
    }
    return 0;
}

enum irq_outcome {
    IRQ_GO_ON, /* none to take, or delivered: run instructions */
    IRQ_AGAIN, /* not delivered yet: back to the top of the loop (a device model
                  answers first, or the walk lost to a page-table rewrite) */
    IRQ_STOP,  /* the machine stops */
};

/*
 * Deliver a pending interrupt, as one instruction of its own for the latch
 * (its IDT read and frame pushes may reach device pages).  A delivery that
 * pends on a device model keeps the latch and its vector in
 * v->irq_pended: the loop waits, then delivers that vector again, which
 * replays what the first pass read.  One abandoned for another reason
 * (VMMU_EBUSY) gives the vector back, to be taken again.
 */
static enum irq_outcome take_interrupt(struct vb_vcpu *v)
{
    struct emu_machine *m = v->m;
    int vec;
    if (v->irq_pended) {
        vec = (int)v->irq_pended;
        v->irq_pended = 0;
    } else {
        if (!x86emu_interrupts_enabled(&v->cpu) || !emu_irq_pending(m, v->index))
            return IRQ_GO_ON;
        vec = emu_irq_take(m, v->index);
        if (vec < 0)
            return IRQ_GO_ON;
    }
    v->pending = false;
    vmmu_insn_begin(v->vcpu);
    v->in_latch = true;
    int rc = x86emu_interrupt(&v->cpu, &v->env, (uint8_t)vec);
    v->in_latch = false;
    vmmu_insn_end(v->vcpu, v->pending ? VMMU_EPENDING : 0);
    if (rc == X86EMU_EXIT_SHUTDOWN) {
        emu_machine_stop(m, EMU_STOP_TRIPLE, "vcpu %u: triple fault delivering vector %d",
                         v->index, vec);
        return IRQ_STOP;
    }
    if (v->pending) {
        v->irq_pended = (unsigned)vec;
        return IRQ_AGAIN;
    }
    if (rc == X86EMU_EXIT_RETRY) {
        emu_irq_untake(m, v->index, (unsigned)vec);
        v->retries++;
        return IRQ_AGAIN;
    }
    return IRQ_GO_ON;
}

/*
 * Up to @budget instructions.  Each runs unbracketed first; one that
 * reaches a non-RAM page is abandoned and run again at once between
 * vmmu_insn_begin() and vmmu_insn_end(), so that the replay latch sees
 * exactly that instruction (vmmu_mem.c).  A pending device access ends the
 * block with the latch kept; the re-execution is bracketed again.
 * Returns the x86emu exit of the last instruction.
 */
static int run_block(struct vb_vcpu *v, unsigned budget)
{
    int rc = X86EMU_EXIT_BUDGET;
    uint64_t limit = v->m->cfg.max_insns;
    for (unsigned n = 0; n < budget && rc == X86EMU_EXIT_BUDGET; n++) {
        if (limit && v->cpu.icount >= limit)
            break; /* not one instruction more: the caller stops the machine */
        bool latched = v->latched_next;
        v->latched_next = false;
        v->pending = false;
        if (latched) {
            vmmu_insn_begin(v->vcpu);
            v->in_latch = true;
        }
        rc = x86emu_step(&v->cpu, &v->env, 1);
        if (latched) {
            vmmu_insn_end(v->vcpu, v->pending ? VMMU_EPENDING : 0);
            v->in_latch = false;
        }
        if (v->pending) {
            v->latched_next = true; /* the re-execution replays */
            break;
        }
        if (rc == X86EMU_EXIT_RETRY && v->latched_next)
            rc = X86EMU_EXIT_BUDGET; /* again, in the latch, now */
        if (emu_machine_stopping(v->m))
            break;
    }
    return rc;
}

static void *vcpu_thread(void *arg)
{
    struct vb_vcpu *v = arg;
    struct emu_machine *m = v->m;
    struct vb *b = vb_of(m);
    int rc = vmmu_vcpu_online(v->vcpu);
    if (rc < 0) {
        vb_fail(v, "coming online", rc);
        return NULL;
    }
    if (vcpu_boot(v) < 0) {
        vmmu_vcpu_offline(v->vcpu);
        return NULL;
    }
    while (!emu_machine_stopping(m)) {
        /* Between blocks of instructions no translation is held: act on
         * remote flushes and P2M changes, report a quiescent state. */
        rc = vmmu_vcpu_safepoint(v->vcpu);
        if (rc == 0 && b->dm)
            rc = vmmu_dm_vcpu_safe_point(b->dm, v->dm_id, v->dm_flags);
        if (rc < 0) {
            vb_fail(v, "safe point", rc);
            break;
        }
        enum irq_outcome irq = IRQ_GO_ON;
        if (v->pending) {
            /* The last instruction (or interrupt delivery) waits for a
             * device model: sleep until it answered (or died), then execute
             * that instruction again, alone; no interrupt comes in between,
             * as no instruction boundary passed.  After it one has: the
             * next turn of the loop looks at interrupts, so a guest polling
             * a device still takes them. */
            rc = vmmu_dm_vcpu_wait(b->dm, v->dm_id, -1);
            if (rc < 0 && rc != VMMU_ETIMEDOUT) {
                vb_fail(v, "waiting for the device model", rc);
                break;
            }
            v->replays++;
            if (v->irq_pended) {
                irq = take_interrupt(v);
                if (irq == IRQ_STOP)
                    break;
                continue;
            }
            rc = run_block(v, 1);
        } else {
            if (v->cpu.halted) {
                halt_wait(v);
                if (emu_machine_stopping(m))
                    break;
            }
            irq = take_interrupt(v);
            if (irq == IRQ_STOP)
                break;
            if (irq == IRQ_AGAIN || v->cpu.halted)
                continue;
            rc = run_block(v, VB_BUDGET);
        }
        switch (rc) {
        case X86EMU_EXIT_BUDGET:
        case X86EMU_EXIT_HLT:
            break;
        case X86EMU_EXIT_RETRY:
            v->retries++;
            break;
        case X86EMU_EXIT_SHUTDOWN:
            /* RIP is the instruction whose event could not be delivered;
             * the last exception delivered, if any, came before it. */
            if (v->cpu.last_exception.valid)
                emu_machine_stop(m, EMU_STOP_TRIPLE,
                                 "vcpu %u: triple fault at rip 0x%llx (the last exception "
                                 "delivered before it: vector %u)",
                                 v->index, (unsigned long long)v->cpu.rip,
                                 v->cpu.last_exception.vector);
            else
                emu_machine_stop(m, EMU_STOP_TRIPLE,
                                 "vcpu %u: triple fault at rip 0x%llx (no exception delivered "
                                 "before it)", v->index, (unsigned long long)v->cpu.rip);
            break;
        default:
            emu_machine_stop(m, EMU_STOP_ERROR, "vcpu %u: left 64-bit mode at rip 0x%llx",
                             v->index, (unsigned long long)v->cpu.rip);
            break;
        }
        if (m->cfg.max_insns && v->cpu.icount >= m->cfg.max_insns)
            emu_machine_stop(m, EMU_STOP_LIMIT, "vcpu %u reached the instruction limit (%llu)",
                             v->index, (unsigned long long)m->cfg.max_insns);
    }
    if (v->pending)
        vmmu_latch_discard(v->vcpu);
    if (v->irq_pended)
        emu_irq_untake(m, v->index, v->irq_pended); /* never delivered */
    vmmu_vcpu_offline(v->vcpu);
    return NULL;
}

static int vb_start_vcpu(struct emu_machine *m, unsigned index)
{
    struct vb *b = vb_of(m);
    struct vb_vcpu *v = &b->vcpu[index];
    int rc = -1;
    /* Under the lock, so that vb_run() sees every thread it must join. */
    pthread_mutex_lock(&b->halt_lock);
    if (!b->closing && !pthread_create(&v->thread, NULL, vcpu_thread, v)) {
        v->thread_started = true;
        b->started++;
        rc = 0;
    }
    pthread_mutex_unlock(&b->halt_lock);
    return rc;
}

/*
 * The host pager's thread: while the guest runs, keep its resident set
 * under the limit, as a host under memory pressure would, every
 * millisecond.  Pages it takes come back when a vCPU touches them.
 */
static void *pager_thread(void *arg)
{
    struct emu_machine *m = arg;
    struct vb *b = vb_of(m);
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 1000000};
    while (!emu_machine_stopping(m)) {
        int rc = vmmu_pager_balance(b->pager, NULL);
        b->pager_runs++;
        if (rc < 0) {
            b->pager_errors++;
            emu_machine_stop(m, EMU_STOP_ERROR, "the host pager failed: %s", vmmu_strerror(rc));
            break;
        }
        nanosleep(&tick, NULL);
    }
    return NULL;
}

/*
 * The migration check (--migrate): a thread copies guest RAM the way a
 * live migration sends it: all of it once before the guest starts, then,
 * round after round while the guest runs, the pages the dirty log says
 * were written since the last round.  Once the machine has stopped, a last
 * round; then the copy must equal RAM page for page.  A write the dirty
 * log missed (a guest store, an accessed or dirty bit the page walker set,
 * a device model's DMA) leaves a stale page in the copy, and fails the run.
 */
static int mig_round(struct vb *b)
{
    uint64_t n = 0;
    int rc = vmmu_dirty_log_get_and_clear(b->vm, b->ram_id, b->mig_bitmap, b->mig_words, &n);
    if (rc < 0)
        return rc;
    for (size_t w = 0; w < b->mig_words; w++) {
        for (uint64_t bits = b->mig_bitmap[w]; bits; bits &= bits - 1) {
            uint64_t gpa = (w * 64 + (unsigned)__builtin_ctzll(bits)) << VMMU_PAGE_SHIFT;
            rc = vmmu_gpa_read(b->vm, gpa, b->mig_copy + gpa, VMMU_PAGE_SIZE, 0, NULL);
            if (rc < 0)
                return rc;
        }
    }
    b->mig_rounds++;
    b->mig_pages += n;
    return 0;
}

static void *mig_thread(void *arg)
{
    struct emu_machine *m = arg;
    struct vb *b = vb_of(m);
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 1000000};
    while (!emu_machine_stopping(m)) {
        int rc = mig_round(b);
        if (rc < 0) {
            emu_machine_stop(m, EMU_STOP_ERROR, "the migration thread failed: %s",
                             vmmu_strerror(rc));
            break;
        }
        nanosleep(&tick, NULL);
    }
    return NULL;
}

/* Before the guest starts: dirty logging on, then the first full copy. */
static int mig_start(struct emu_machine *m, struct vb *b)
{
    uint64_t pages = m->cfg.ram_size >> VMMU_PAGE_SHIFT;
    b->mig_words = (size_t)((pages + 63) / 64);
    b->mig_copy = malloc(m->cfg.ram_size);
    b->mig_bitmap = calloc(b->mig_words, sizeof(*b->mig_bitmap));
    if (!b->mig_copy || !b->mig_bitmap) {
        fprintf(stderr, "vmmu run: no memory for the migration copy\n");
        return -1;
    }
    int rc = vmmu_dirty_log_enable(b->vm, b->ram_id, true);
    if (rc == 0)
        rc = vmmu_gpa_read(b->vm, 0, b->mig_copy, m->cfg.ram_size, 0, NULL);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: starting the migration: %s\n", vmmu_strerror(rc));
        return -1;
    }
    if (pthread_create(&b->mig_thread, NULL, mig_thread, m)) {
        fprintf(stderr, "vmmu run: cannot start the migration thread\n");
        return -1;
    }
    b->mig_started = true;
    return 0;
}

/* Once every vCPU has stopped: the last round, then the copy against RAM. */
static void mig_finish(struct emu_machine *m, struct vb *b)
{
    pthread_join(b->mig_thread, NULL);
    b->mig_started = false;
    int rc = mig_round(b);
    if (rc < 0) {
        emu_machine_fail(m, "the migration's last round failed: %s", vmmu_strerror(rc));
        return;
    }
    uint8_t page[VMMU_PAGE_SIZE];
    uint64_t first = 0;
    for (uint64_t gpa = 0; gpa < m->cfg.ram_size; gpa += VMMU_PAGE_SIZE) {
        rc = vmmu_gpa_read(b->vm, gpa, page, VMMU_PAGE_SIZE, 0, NULL);
        if (rc < 0) {
            emu_machine_fail(m, "reading RAM for the migration check: %s", vmmu_strerror(rc));
            return;
        }
        b->mig_checked++;
        if (memcmp(page, b->mig_copy + gpa, VMMU_PAGE_SIZE) && b->mig_differ++ == 0)
            first = gpa;
    }
    if (b->mig_differ)
        emu_machine_fail(m, "the dirty log missed writes: %llu page(s) of the migrated copy "
                         "differ from RAM, the first at gpa %#llx",
                         (unsigned long long)b->mig_differ, (unsigned long long)first);
}

/*
 * Host stress (--chaos): a thread that, every 100 microseconds while the
 * guest runs, makes one host-initiated change the guest must not see, in
 * an order drawn from a fixed seed: a synchronous or an asynchronous
 * shootdown of every vCPU, code marks on a few RAM pages (no code handler
 * is set: the next write clears them), reads of the map (foreach, region
 * info), and, with a pager, a few pages paged out and back in, and, with
 * a device model, an invalidation of 64 KiB of its mappings.  The
 * transcript must be the same as without it.
 */
enum { CHAOS_SYNC, CHAOS_ASYNC, CHAOS_CODE, CHAOS_FOREACH, CHAOS_INFO, CHAOS_PAGE_OUT,
       CHAOS_PAGE_IN, CHAOS_DM_INVAL, CHAOS_KINDS };
static const char *const chaos_names[CHAOS_KINDS] = {
    "synchronous shootdowns", "asynchronous shootdowns", "code marks", "map walks",
    "region reads", "page-outs", "page-ins", "device-model invalidations"};
_Static_assert(CHAOS_KINDS <= sizeof(((struct vb *)0)->chaos_done) / sizeof(uint64_t),
               "a counter per kind");

static int chaos_count(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    ++*(unsigned *)arg;
    return 0;
}

static int chaos_one(struct emu_machine *m, struct vb *b, unsigned kind, uint64_t r)
{
    static const struct vmmu_flush all = {.type = VMMU_FLUSH_ALL};
    uint64_t pages = m->cfg.ram_size >> VMMU_PAGE_SHIFT;
    struct vmmu_gpa_range range = {((r >> 8) % (pages - 8)) << VMMU_PAGE_SHIFT,
                                   (1 + (r & 7)) << VMMU_PAGE_SHIFT};
    switch (kind) {
    case CHAOS_SYNC:
        return vmmu_shootdown_sync(b->vm, NULL, NULL, &all);
    case CHAOS_ASYNC:
        return vmmu_shootdown_async(b->vm, NULL, NULL, &all);
    case CHAOS_CODE:
        return vmmu_code_mark(b->vm, range.gpa, range.size >> VMMU_PAGE_SHIFT);
    case CHAOS_FOREACH: {
        unsigned n = 0;
        int rc = vmmu_region_foreach(b->vm, chaos_count, &n);
        return rc ? rc : (n ? 0 : VMMU_ENOENT);
    }
    case CHAOS_INFO: {
        struct vmmu_region_info info;
        return vmmu_region_info(b->vm, b->ram_id, &info);
    }
    case CHAOS_PAGE_OUT:
        return b->pager ? vmmu_pager_page_out(b->pager, &range, 1) : 1;
    case CHAOS_PAGE_IN:
        return b->pager ? vmmu_pager_page_in(b->pager, &range, 1) : 1;
    default:
        return b->dmdev ? vmmu_dm_invalidate(b->dm, range.gpa & ~0xffffull, 1ull << 16) : 1;
    }
}

static void *chaos_thread(void *arg)
{
    struct emu_machine *m = arg;
    struct vb *b = vb_of(m);
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 100000};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    while (!emu_machine_stopping(m)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        unsigned kind = (unsigned)(x >> 59) % CHAOS_KINDS;
        int rc = chaos_one(m, b, kind, x);
        if (rc < 0) {
            emu_machine_stop(m, EMU_STOP_ERROR, "host stress: %s failed: %s",
                             chaos_names[kind], vmmu_strerror(rc));
            break;
        }
        if (rc == 0)
            b->chaos_done[kind]++;
        nanosleep(&tick, NULL);
    }
    return NULL;
}

/* Join the host threads (pager, host stress, migration copier) that run. */
static void join_host_threads(struct vb *b)
{
    if (b->pager_started)
        pthread_join(b->pager_thread, NULL);
    b->pager_started = false;
    if (b->chaos_started)
        pthread_join(b->chaos_thread, NULL);
    b->chaos_started = false;
    if (b->mig_started)
        pthread_join(b->mig_thread, NULL);
    b->mig_started = false;
}

/* The run could not start: stop the machine (so the host threads end) and
 * join them. */
static int run_refused(struct emu_machine *m, struct vb *b, const char *what)
{
    fprintf(stderr, "vmmu run: %s\n", what);
    emu_machine_stop(m, EMU_STOP_ERROR, "%s", what);
    join_host_threads(b);
    return -1;
}

static int vb_run(struct emu_machine *m)
{
    struct vb *b = vb_of(m);
    if (m->cfg.migrate && mig_start(m, b) < 0)
        return -1;
    if (m->cfg.chaos) {
        if (pthread_create(&b->chaos_thread, NULL, chaos_thread, m))
            return run_refused(m, b, "cannot start the host stress thread");
        b->chaos_started = true;
    }
    if (b->pager) {
        if (pthread_create(&b->pager_thread, NULL, pager_thread, m))
            return run_refused(m, b, "cannot start the pager thread");
        b->pager_started = true;
    }
    if (vb_start_vcpu(m, 0) < 0)
        return run_refused(m, b, "cannot start vcpu 0");
    /* vCPU 0 returns only once the machine stops; then no more may start. */
    pthread_join(b->vcpu[0].thread, NULL);
    pthread_mutex_lock(&b->halt_lock);
    b->closing = true;
    pthread_mutex_unlock(&b->halt_lock);
    for (unsigned i = 1; i < m->cfg.nr_vcpus; i++)
        if (b->vcpu[i].thread_started)
            pthread_join(b->vcpu[i].thread, NULL);
    /* The copier last: its last round follows every other writer. */
    bool migrating = b->mig_started;
    b->mig_started = false;
    join_host_threads(b);
    if (migrating)
        mig_finish(m, b);
    return 0;
}

/* ---- creation ------------------------------------------------------------------------------ */

/* Seconds `vmmu run --dm-listen` waits for the device model to connect. */
#define VB_DM_CONNECT_TIMEOUT_S 30

/* Listen on a unix socket at @p path for one device model; its connection
 * or -1 (said on stderr).  The path is removed once connected. */
static int accept_device_model(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "vmmu run: --dm-listen: path too long: %s\n", path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0) {
        fprintf(stderr, "vmmu run: --dm-listen %s: %s\n", path, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    fprintf(stderr, "vmmu run: waiting for a device model on %s\n", path);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int n;
    while ((n = poll(&pfd, 1, VB_DM_CONNECT_TIMEOUT_S * 1000)) < 0 && errno == EINTR)
        ;
    int fd = n > 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
    if (fd < 0)
        fprintf(stderr, "vmmu run: no device model connected to %s in %d s\n", path,
                VB_DM_CONNECT_TIMEOUT_S);
    close(lfd);
    unlink(path);
    return fd;
}

/*
 * Start the DMA engine (vmmu-dmdev) in its own process on one end of a
 * socket pair and attach its register window at EMU_MMIO_BASE.  Every
 * access pends (wait_us 0): the vCPU goes back to its loop and re-executes
 * the instruction when the answer is in, as a hypervisor does.
 */
static int attach_dmdev(struct emu_machine *m, struct vb *b)
{
    /* The access layer names each device access's vCPU by vmmu_vcpu_id(). */
    int max_id = 0;
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        int id = vmmu_vcpu_id(b->vcpu[i].vcpu);
        if (id < 0 || id >= (int)VMMU_DM_MAX_VCPUS) {
            fprintf(stderr, "vmmu run: vCPU %u has id %d, beyond the device-model layer\n", i,
                    id);
            return -1;
        }
        b->vcpu[i].dm_id = id;
        if (id > max_id)
            max_id = id;
    }
    struct vmmu_dm_config dc = {.max_vcpus = (unsigned)max_id + 1};
    int rc = vmmu_dm_create(b->vm, &dc, &b->dm);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: vmmu_dm_create: %s\n", vmmu_strerror(rc));
        return -1;
    }
    if (m->cfg.dm_listen) {
        int sock = accept_device_model(m->cfg.dm_listen);
        if (sock < 0)
            return -1;
        struct vmmu_dm_remote_config lcfg = {.timeout_ms = 10000, .wait_us = 0};
        rc = vmmu_dm_server_create_remote(b->dm, sock, &lcfg, &b->dmdev);
        goto map;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        fprintf(stderr, "vmmu run: socketpair: %s\n", strerror(errno));
        return -1;
    }
    char base[32];
    snprintf(base, sizeof(base), "%llu", (unsigned long long)EMU_MMIO_BASE);
    char *argv[] = {(char *)m->cfg.dmdev_path, "--fd", "3", "--mmio-base", base, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    extern char **environ;
    int err = posix_spawn(&b->dmdev_pid, m->cfg.dmdev_path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (err) {
        close(sv[0]);
        b->dmdev_pid = 0;
        fprintf(stderr, "vmmu run: cannot start the device model %s: %s\n",
                m->cfg.dmdev_path, strerror(err));
        return -1;
    }
    struct vmmu_dm_remote_config rcfg = {.timeout_ms = 10000, .wait_us = 0,
                                         .pid = b->dmdev_pid};
    rc = vmmu_dm_server_create_remote(b->dm, sv[0], &rcfg, &b->dmdev);
map:
    if (rc == 0)
        rc = vmmu_dm_map_mmio(b->dmdev, EMU_MMIO_BASE, EMU_MMIO_SIZE, 0, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: attaching the device model %s: %s\n", m->cfg.dmdev_path,
                vmmu_strerror(rc));
        return -1;
    }
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++)
        b->vcpu[i].dm_flags = vmmu_dm_vcpu_flags(b->dm, b->vcpu[i].dm_id);
    return 0;
}

static int vb_create(struct emu_machine *m)
{
    struct vb *b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    pthread_mutex_init(&b->halt_lock, NULL);
    m->backend = b;
    /* Guest-physical addresses as wide as the CPU model's MAXPHYADDR below. */
    struct vmmu_vm_config vc = {.gpa_bits = VB_MAXPHYADDR, .name = "vmmu-run"};
    int rc = vmmu_vm_create(&vc, &b->vm);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: vmmu_vm_create: %s\n", vmmu_strerror(rc));
        return -1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = m->cfg.ram_size,
                                   .name = "ram"};
    rc = vmmu_region_add(b->vm, &ram, &b->ram_id);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: adding RAM: %s\n", vmmu_strerror(rc));
        return -1;
    }
    /* What this machine's KVM offers too: no LA57, PKU/PKS or 1 GiB pages.
     * MAXPHYADDR is VB_MAXPHYADDR, which the machine's CPUID reports
     * (vb_hook_cpuid) and the interpreter's MOV to CR3 checks: with
     * another width the guest would be told one thing and walked by
     * another, and a CR3 the interpreter accepts but vmmu refuses would
     * stop the machine. */
    struct vmmu_x86_cpu model = {
        .vendor = VMMU_X86_VENDOR_INTEL,
        .features = VMMU_X86_FEAT_NX | VMMU_X86_FEAT_LM | VMMU_X86_FEAT_PCID |
                    VMMU_X86_FEAT_SMEP | VMMU_X86_FEAT_SMAP,
        .maxphyaddr = VB_MAXPHYADDR,
    };
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        struct vb_vcpu *v = &b->vcpu[i];
        v->m = m;
        v->index = i;
        pthread_cond_init(&v->wake, NULL);
        rc = vmmu_cpuset_create(&b->targets[i]);
        if (rc == 0)
            rc = vmmu_vcpu_create(b->vm, &model, &v->vcpu);
        if (rc < 0) {
            fprintf(stderr, "vmmu run: vmmu_vcpu_create: %s\n", vmmu_strerror(rc));
            return -1;
        }
        v->env = (struct x86emu_env){
            .opaque = v,
            .read = vb_mem_read,
            .write = vb_mem_write,
            .cmpxchg = vb_mem_cmpxchg,
            .write_check = vb_mem_write_check,
            .io_in = hook_io_in,
            .io_out = hook_io_out,
            .cr_write = vb_hook_cr_write,
            .invlpg = vb_hook_invlpg,
            .invpcid = vb_hook_invpcid,
            .msr_write = vb_hook_msr_write,
            .cpuid = vb_hook_cpuid,
        };
    }
    if ((m->cfg.dmdev_path || m->cfg.dm_listen) && attach_dmdev(m, b) < 0)
        return -1;
    if (m->cfg.pager_pages) {
        struct vmmu_pager_config pc = {.resident_limit = m->cfg.pager_pages};
        rc = vmmu_pager_create(b->vm, &pc, &b->pager);
        if (rc < 0) {
            fprintf(stderr, "vmmu run: vmmu_pager_create: %s\n", vmmu_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void vb_destroy(struct emu_machine *m)
{
    struct vb *b = vb_of(m);
    int rc = vmmu_pager_destroy(b->pager); /* the vm frees it if it stays */
    if (rc)
        fprintf(stderr, "vmmu run: vmmu_pager_destroy: %s\n", vmmu_strerror(rc));
    /* Hanging up makes the device model exit on its own. */
    vmmu_dm_destroy(b->dm);
    if (b->dmdev_pid > 0) {
        int status;
        while (waitpid(b->dmdev_pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        struct vb_vcpu *v = &b->vcpu[i];
        if (v->m) {
            vmmu_vcpu_destroy(v->vcpu);
            vmmu_cpuset_destroy(b->targets[i]);
            pthread_cond_destroy(&v->wake);
        }
    }
    rc = vmmu_vm_destroy(b->vm);
    if (rc)
        fprintf(stderr, "vmmu run: vmmu_vm_destroy: %s\n", vmmu_strerror(rc));
    pthread_mutex_destroy(&b->halt_lock);
    free(b->mig_copy);
    free(b->mig_bitmap);
    free(b);
    m->backend = NULL;
}

static int vb_gpa_read(struct emu_machine *m, uint64_t gpa, void *buf, size_t len)
{
    return vmmu_gpa_read(vb_of(m)->vm, gpa, buf, len, 0, NULL) < 0 ? -1 : 0;
}

static int vb_gpa_write(struct emu_machine *m, uint64_t gpa, const void *buf, size_t len)
{
    return vmmu_gpa_write(vb_of(m)->vm, gpa, buf, len, 0, NULL) < 0 ? -1 : 0;
}

/* ---- the summary --------------------------------------------------------------------------- */

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void vb_summary(struct emu_machine *m, FILE *out, bool per_vcpu)
{
    struct vb *b = vb_of(m);
    struct vmmu_tlb_stats t = {0};
    struct vb_mem_stats s = {0};
    struct vmmu_latch_stats l = {0};
    uint64_t insns = 0, local = 0, posted = 0, waits = 0, halts = 0, retries = 0, replays = 0;
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++) {
        struct vb_vcpu *v = &b->vcpu[i];
        struct vmmu_tlb_stats vt;
        struct vmmu_latch_stats vl;
        if (vmmu_vcpu_stats(v->vcpu, &vt) < 0 || vmmu_latch_stats(v->vcpu, &vl) < 0)
            continue;
        /* Page parts that did not go to the TLB's slow path hit inline. */
        uint64_t slow = vt.slow_hits + vt.victim_hits + vt.misses;
        uint64_t inline_hits = v->mem.pieces > slow ? v->mem.pieces - slow : 0;
        if (per_vcpu && atomic_load(&m->vcpu[i].started))
            fprintf(out, "  vcpu %u: %llu instructions, %llu accesses (%llu page parts), "
                    "%.1f%% TLB hits, %llu walks, %llu flush-all\n", i,
                    (unsigned long long)v->cpu.icount,
                    (unsigned long long)(v->mem.fetches + v->mem.reads + v->mem.writes +
                                         v->mem.rmws),
                    (unsigned long long)v->mem.pieces,
                    pct(inline_hits + vt.slow_hits + vt.victim_hits, v->mem.pieces),
                    (unsigned long long)vt.walks, (unsigned long long)vt.flush_all);
        insns += v->cpu.icount;
        s.reads += v->mem.reads;
        s.writes += v->mem.writes;
        s.fetches += v->mem.fetches;
        s.rmws += v->mem.rmws;
        s.pieces += v->mem.pieces;
        s.splits += v->mem.splits;
        s.faults += v->mem.faults;
        s.pending += v->mem.pending;
        s.busy += v->mem.busy;
        s.to_latch += v->mem.to_latch;
        t.hits += inline_hits;
        t.slow_hits += vt.slow_hits;
        t.victim_hits += vt.victim_hits;
        t.misses += vt.misses;
        t.walks += vt.walks;
        t.psc_hits += vt.psc_hits;
        t.warm_misses += vt.warm_misses;
        t.fills += vt.fills;
        t.not_ram += vt.not_ram;
        t.flush_all += vt.flush_all;
        t.flush_pcid += vt.flush_pcid;
        t.flush_page += vt.flush_page;
        t.pcid_switches += vt.pcid_switches;
        l.entries_replayed += vl.entries_replayed;
        l.xlates_replayed += vl.xlates_replayed;
        l.events_replayed += vl.events_replayed;
        l.diverged += vl.diverged;
        local += v->flushes_local;
        posted += v->flushes_posted;
        waits += v->flush_waits;
        halts += v->halts;
        retries += v->retries;
        replays += v->replays;
    }
    struct emu_machine_stats *ms = &m->stats;
    fprintf(out, "instructions:       %llu\n", (unsigned long long)insns);
    fprintf(out, "accesses:           %llu (%llu fetches, %llu reads, %llu writes, %llu locked)\n",
            (unsigned long long)(s.fetches + s.reads + s.writes + s.rmws),
            (unsigned long long)s.fetches, (unsigned long long)s.reads,
            (unsigned long long)s.writes, (unsigned long long)s.rmws);
    fprintf(out, "page parts:         %llu (%llu accesses crossed a page)\n",
            (unsigned long long)s.pieces, (unsigned long long)s.splits);
    fprintf(out, "TLB:                %.2f%% hits (%llu inline, %llu slow-path, %llu victim), "
            "%llu misses\n", pct(t.hits + t.slow_hits + t.victim_hits, s.pieces),
            (unsigned long long)t.hits, (unsigned long long)t.slow_hits,
            (unsigned long long)t.victim_hits, (unsigned long long)t.misses);
    fprintf(out, "page walks:         %llu (%llu resumed from paging-structure caches, "
            "%llu of them one PTE read), %llu faults\n", (unsigned long long)t.walks,
            (unsigned long long)t.psc_hits, (unsigned long long)t.warm_misses,
            (unsigned long long)s.faults);
    fprintf(out, "TLB flushes:        %llu all, %llu PCID, %llu page, %llu PCID switches\n",
            (unsigned long long)t.flush_all, (unsigned long long)t.flush_pcid,
            (unsigned long long)t.flush_page, (unsigned long long)t.pcid_switches);
    fprintf(out, "shootdowns:         %llu IPIs sent, %llu interrupts taken; flush hypercalls "
            "%llu (%llu local hint, %llu async)\n",
            (unsigned long long)ms->ipis_sent, (unsigned long long)ms->interrupts,
            (unsigned long long)ms->flush_calls, (unsigned long long)ms->flush_local_hint,
            (unsigned long long)ms->flush_async);
    fprintf(out, "PV flushes:         %llu synchronous shootdowns, %llu asynchronous, "
            "%llu local only\n", (unsigned long long)waits, (unsigned long long)posted,
            (unsigned long long)local);
    fprintf(out, "MMIO/device:        %llu translations to non-RAM pages\n",
            (unsigned long long)t.not_ram);
    struct vmmu_dm_server_stats ds = {0};
    if (b->dmdev && vmmu_dm_server_stats(b->dmdev, &ds) == 0)
        fprintf(out, "device model:       %llu requests (%llu pending), %llu mapcache "
                "invalidations, %llu page-in requests (maps outside the region table), "
                "%llu protocol errors%s\n",
                (unsigned long long)ds.requests, (unsigned long long)ds.pending,
                (unsigned long long)ds.invalidations, (unsigned long long)ds.page_ins,
                (unsigned long long)ds.proto_errors, ds.dead ? ", dead" : "");
    else
        fprintf(out, "device model:       none attached\n");
    struct vmmu_pager_stats ps = {0};
    if (b->pager && vmmu_pager_stats(b->pager, &ps) == 0)
        fprintf(out, "pager:              %llu page-outs (%llu written, %llu zero pages "
                "dropped), %llu page-ins, %llu cancelled, %llu resident\n",
                (unsigned long long)(ps.written + ps.zero_dropped),
                (unsigned long long)ps.written, (unsigned long long)ps.zero_dropped,
                (unsigned long long)ps.paged_in, (unsigned long long)ps.cancelled,
                (unsigned long long)ps.resident);
    else
        fprintf(out, "pager:              off\n");
    if (m->cfg.migrate)
        fprintf(out, "migration:          %llu rounds of the dirty log, %llu pages copied "
                "again; %llu pages checked, %llu differ\n",
                (unsigned long long)b->mig_rounds, (unsigned long long)b->mig_pages,
                (unsigned long long)b->mig_checked, (unsigned long long)b->mig_differ);
    else
        fprintf(out, "migration:          off\n");
    if (m->cfg.chaos) {
        fprintf(out, "host stress:       ");
        for (unsigned k = 0; k < CHAOS_KINDS; k++)
            fprintf(out, " %llu %s%s", (unsigned long long)b->chaos_done[k], chaos_names[k],
                    k + 1 < CHAOS_KINDS ? "," : "\n");
    } else {
        fprintf(out, "host stress:        off\n");
    }
    fprintf(out, "replay latch:       %llu instructions run in it (they reached a non-RAM "
            "page, or a REP in it went on to its next iteration), %llu replays (%llu reads, %llu translations, %llu table entries served "
            "again, %llu diverged)\n",
            (unsigned long long)s.to_latch, (unsigned long long)replays, (unsigned long long)l.events_replayed,
            (unsigned long long)l.xlates_replayed, (unsigned long long)l.entries_replayed,
            (unsigned long long)l.diverged);
    fprintf(out, "halts:              %llu; retried instructions %llu (%llu pending device, "
            "%llu lost walk races)\n", (unsigned long long)halts, (unsigned long long)retries,
            (unsigned long long)s.pending, (unsigned long long)s.busy);
}

const struct emu_backend_ops emu_backend_vmmu = {
    .name = "vmmu",
    .create = vb_create,
    .gpa_read = vb_gpa_read,
    .gpa_write = vb_gpa_write,
    .run = vb_run,
    .start_vcpu = vb_start_vcpu,
    .kick = vb_kick,
    .flush = vb_flush,
    .summary = vb_summary,
    .destroy = vb_destroy,
};
