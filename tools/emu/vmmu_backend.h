/* SPDX-License-Identifier: MIT */
/* The vmmu backend's private state, shared by vmmu_backend.c and vmmu_mem.c. */
#ifndef EMU_VMMU_BACKEND_H
#define EMU_VMMU_BACKEND_H

#include "machine.h"
#include "x86emu/cpu.h"
#include "vmmu/vmmu.h"
#include "vmmu/access.h"
#include "vmmu/dm.h"
#include "vmmu/pager.h"

#include <sys/types.h>

/* Instructions per x86emu_step() call: between calls a vCPU takes
 * interrupts and flush requests, so this bounds their latency. */
#define VB_BUDGET 256u
/* The physical-address width of the vCPUs' page walker, and what CPUID reports. */
#define VB_MAXPHYADDR 40u
_Static_assert(VB_MAXPHYADDR == EMU_START_CR3_BITS, "START refuses the CR3s the CPU model cannot load");

/* Counters of one vCPU's memory accesses (written only by its thread). */
struct vb_mem_stats {
    uint64_t reads, writes, fetches, rmws; /* callbacks from the interpreter */
    uint64_t pieces;       /* per-page parts of those accesses */
    uint64_t splits;       /* accesses that crossed a page */
    uint64_t faults;       /* accesses that raised a fault */
    uint64_t pending;      /* accesses a device model answered later (VMMU_EPENDING) */
    uint64_t busy;         /* walks that lost to the guest rewriting its tables (VMMU_EBUSY) */
    uint64_t to_latch;     /* instructions run again in the latch: they reached a non-RAM
                              page, or a latched REP completed an iteration */
};

struct vb_vcpu {
    struct emu_machine *m;
    unsigned index;
    struct vmmu_vcpu *vcpu;
    struct x86emu_cpu cpu;
    struct x86emu_env env;
    pthread_t thread;
    bool thread_started;     /* with vb.halt_lock */

    pthread_cond_t wake;     /* with vb.halt_lock */
    bool blocked;            /* with vb.halt_lock: asleep in HLT, counted in vb.blocked */

    struct vb_mem_stats mem;
    bool pending;              /* this instruction's access pends: keep the latch */
    bool in_latch;             /* this instruction runs between vmmu_insn_begin/end */
    bool latched_next;         /* run the next instruction in the latch (vmmu_mem.c) */
    unsigned irq_pended;       /* with pending: the vector whose delivery waits for a
                                  device model (0: an instruction waits) */
    int dm_id;                 /* vmmu_vcpu_id(): its id for the device-model layer */
    const uint32_t *dm_flags;  /* vmmu_dm_vcpu_flags() of it */
    uint64_t flushes_local;    /* PV flushes of its own TLB only */
    uint64_t flushes_posted;   /* asynchronous PV flushes it made */
    uint64_t flush_waits;      /* synchronous PV flushes it made */
    uint64_t halts;
    uint64_t retries;          /* instructions abandoned and executed again */
    uint64_t replays;          /* ... of which re-executions after a device model answered */
    char error[128];           /* set with the status VB_ERROR */
};

struct vb {
    struct vmmu_vm *vm;
    uint32_t ram_id;
    pthread_mutex_t halt_lock;
    /* With halt_lock: threads started and blocked in HLT (all-halted
     * detection), and whether the run is over (no more starts). */
    unsigned started, blocked;
    bool closing;
    struct vb_vcpu vcpu[EMU_VCPUS_MAX];
    struct vmmu_cpuset *targets[EMU_VCPUS_MAX]; /* per caller: a PV flush's vCPU set */

    /* The DMA engine (cfg.dmdev_path): the device-model layer and its server. */
    struct vmmu_dm *dm;
    struct vmmu_dm_server *dmdev;
    pid_t dmdev_pid;

    /* The host pager (cfg.pager_pages) and its thread. */
    struct vmmu_pager *pager;
    pthread_t pager_thread;
    bool pager_started;
    uint64_t pager_runs, pager_errors;

    /* The migration check (cfg.migrate): RAM's copy, the dirty bitmap and
     * the thread that keeps the copy current. */
    uint8_t *mig_copy;
    uint64_t *mig_bitmap;
    size_t mig_words;
    pthread_t mig_thread;
    bool mig_started;
    uint64_t mig_rounds, mig_pages, mig_checked, mig_differ;

    /* The host stress thread (cfg.chaos) and what it did, by kind. */
    pthread_t chaos_thread;
    bool chaos_started;
    uint64_t chaos_done[8];
};

/* The interpreter's memory callbacks (vmmu_mem.c). */
int vb_mem_read(void *opaque, const struct x86emu_access *a, void *out, struct x86emu_fault *f);
int vb_mem_write(void *opaque, const struct x86emu_access *a, const void *in,
                 struct x86emu_fault *f);
int vb_mem_write_check(void *opaque, const struct x86emu_access *a, struct x86emu_fault *f);
int vb_mem_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
                   const void *desired, void *observed, struct x86emu_fault *f);

/* The interpreter's hooks that reach vmmu (vmmu_mem.c): CR0/CR3/CR4 and
 * EFER writes, INVLPG and INVPCID become the vCPU's register writes and
 * invalidations (vmmu disagreeing with the interpreter fails the machine);
 * CPUID is the interpreter's, without 1 GiB pages. */
int vb_hook_cr_write(void *opaque, unsigned cr, uint64_t old, uint64_t value);
int vb_hook_msr_write(void *opaque, uint32_t msr, uint64_t value);
int vb_hook_invlpg(void *opaque, uint64_t va);
int vb_hook_invpcid(void *opaque, uint64_t type, uint64_t pcid, uint64_t va);
void vb_hook_cpuid(void *opaque, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/* Stop the machine because vmmu failed under vCPU @v (returns X86EMU_CB_RETRY). */
int vb_fail(struct vb_vcpu *v, const char *what, int err);

#endif
