/* SPDX-License-Identifier: MIT */
/*
 * The reference emulator's machine: what is the same whichever backend
 * runs the guest (vmmu's interpreter now, /dev/kvm later).
 *
 * The machine owns the model of abi.h: the console, the EXIT port, the
 * paravirtual IPI (pending vectors per vCPU), the hypercalls and the
 * loader.  A backend owns guest memory, the vCPUs and their threads, and
 * answers the few questions the machine asks it (struct emu_backend_ops).
 * Port I/O reaches the machine through emu_port_in()/emu_port_out(),
 * called on the vCPU's own thread.
 */
#ifndef EMU_MACHINE_H
#define EMU_MACHINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "abi.h"

struct emu_machine;

/** How to build a machine. */
struct emu_config {
    unsigned nr_vcpus;       /**< 1..EMU_VCPUS_MAX */
    uint64_t ram_size;       /**< bytes, multiple of 2 MiB, 4 MiB .. 1 GiB */
    const char *guest_path;  /**< the guest's ELF image */
    FILE *console;           /**< where the serial port writes (stdout) */
    uint64_t max_insns;      /**< per vCPU; 0: no limit (the run fails when reached) */
    /** Attach the DMA engine (the out-of-process device model vmmu-dmdev)
     *  at EMU_MMIO_BASE; NULL: no device.  The program's path. */
    const char *dmdev_path;
    /** Or wait for the DMA engine to connect to a unix socket at this
     *  path (`vmmu-dmdev --socket PATH`); NULL: not this way. */
    const char *dm_listen;
    /** Run a host pager keeping the guest's resident set under this many
     *  pages; 0: no pager. */
    uint64_t pager_pages;
    /** Copy guest RAM as a live migration does, from the dirty log, while
     *  the guest runs, and check the copy against RAM at the end. */
    bool migrate;
    /** Run a host thread that keeps making changes the guest must not see
     *  (shootdowns, code marks, page-outs, map reads, device-model
     *  invalidations) while it runs. */
    bool chaos;
};

#define EMU_RAM_DEFAULT (64ull << 20)
#define EMU_RAM_MIN (4ull << 20)

/** Why a run ended. */
enum emu_stop_reason {
    EMU_STOP_NONE = 0,
    EMU_STOP_EXIT,        /**< the guest wrote the EXIT port */
    EMU_STOP_TRIPLE,      /**< a vCPU triple-faulted */
    EMU_STOP_ALL_HALTED,  /**< every started vCPU is halted and nothing can wake one */
    EMU_STOP_LIMIT,       /**< a vCPU reached max_insns */
    EMU_STOP_ERROR,       /**< the machine or the backend failed (see the message) */
};

/** Exit status of `vmmu run` when the machine, not the guest, ended the run. */
#define EMU_EXIT_MACHINE_FAILURE 125

/** Machine-level counters (hypercalls, IPIs), summed over vCPUs. */
struct emu_machine_stats {
    _Atomic uint64_t ipis_sent;        /**< IPIs accepted (one per destination) */
    _Atomic uint64_t interrupts;       /**< interrupts delivered to vCPUs */
    _Atomic uint64_t hypercalls;
    _Atomic uint64_t flush_calls;      /**< EMU_HC_FLUSH calls */
    _Atomic uint64_t flush_local_hint; /**< ... that carried EMU_FLUSH_LOCAL */
    _Atomic uint64_t flush_async;      /**< ... that carried EMU_FLUSH_ASYNC */
    _Atomic uint64_t console_bytes;
    _Atomic uint32_t tickets; /**< EMU_PORT_TICKET reads so far */
};

/** What a backend does for the machine.  Every function is required. */
struct emu_backend_ops {
    const char *name;
    /** Create guest memory of m->cfg.ram_size and the vCPUs (not running). */
    int (*create)(struct emu_machine *m);
    /** Guest-physical reads/writes for the loader and the hypercalls: 0 or -1. */
    int (*gpa_read)(struct emu_machine *m, uint64_t gpa, void *buf, size_t len);
    int (*gpa_write)(struct emu_machine *m, uint64_t gpa, const void *buf, size_t len);
    /** Run the first vCPU from the boot state until the machine stops. */
    int (*run)(struct emu_machine *m);
    /** Start vCPU @p index (called on the starter's thread): 0 or -1. */
    int (*start_vcpu)(struct emu_machine *m, unsigned index);
    /** Make vCPU @p index look at its pending interrupts soon (wake it if halted). */
    void (*kick)(struct emu_machine *m, unsigned index);
    /**
     * EMU_HC_FLUSH from vCPU @p caller: the machine has validated the
     * block and resolved the target set (@p targets, with LOCAL applied).
     * Returns EMU_HC_*.
     */
    int (*flush)(struct emu_machine *m, unsigned caller, uint64_t targets,
                 const struct emu_hypercall *hc);
    /** Print what the memory system did. */
    void (*summary)(struct emu_machine *m, FILE *out, bool per_vcpu);
    void (*destroy)(struct emu_machine *m);
};

/** The boot state of one vCPU (the entry state of abi.h plus these). */
struct emu_vcpu_boot {
    uint64_t rip, rsp, rdi, rsi, cr3;
};

/** A vCPU as the machine sees it. */
struct emu_vcpu_state {
    /* pending[v / 64] bit v % 64: vector v waits for delivery */
    _Atomic uint64_t pending[4];
    _Atomic bool started;
    struct emu_vcpu_boot boot;
};

struct emu_machine {
    struct emu_config cfg;
    const struct emu_backend_ops *ops;
    void *backend;   /**< the backend's own state */

    struct emu_vcpu_state vcpu[EMU_VCPUS_MAX];
    uint64_t image_start, image_end, entry;

    pthread_mutex_t stop_lock;
    _Atomic int stop;        /**< enum emu_stop_reason; first one wins */
    int exit_code;           /**< EMU_STOP_EXIT: the guest's status */
    char stop_message[160];  /**< for the reasons other than EXIT */

    pthread_mutex_t console_lock;
    struct emu_machine_stats stats;
};

/* ---- the machine's side ---------------------------------------------------- */

/** Build a machine (memory, vCPUs, the guest loaded).  0, or -1 with a message on stderr. */
int emu_machine_create(const struct emu_config *cfg, const struct emu_backend_ops *ops,
                       struct emu_machine **out);
/** Run until the guest exits or the machine stops; returns the run's exit status. */
int emu_machine_run(struct emu_machine *m);
void emu_machine_destroy(struct emu_machine *m);

/** Stop the machine for @p reason (the first call wins); printf-style message. */
void emu_machine_stop(struct emu_machine *m, enum emu_stop_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** A check made once the machine stopped failed: the run fails whatever
 *  stopped it (the guest's own exit status included). */
void emu_machine_fail(struct emu_machine *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline bool emu_machine_stopping(struct emu_machine *m)
{
    return atomic_load_explicit(&m->stop, memory_order_acquire) != EMU_STOP_NONE;
}

/**
 * Port I/O from vCPU @p index (size 1, 2 or 4).  Unknown ports read as
 * all-ones and ignore writes, as an empty ISA bus does.
 */
void emu_port_in(struct emu_machine *m, unsigned index, uint16_t port, unsigned size,
                 uint32_t *value);
void emu_port_out(struct emu_machine *m, unsigned index, uint16_t port, unsigned size,
                  uint32_t value);

/** Post vector @p vector to vCPU @p index (as an IPI does).  0, or -1 if invalid. */
int emu_irq_post(struct emu_machine *m, unsigned index, unsigned vector);
/** Whether vCPU @p index has an interrupt pending. */
bool emu_irq_pending(struct emu_machine *m, unsigned index);
/** Take the highest pending vector of vCPU @p index (counted as taken); -1
 *  when none. */
int emu_irq_take(struct emu_machine *m, unsigned index);
/** Give back @p vector, taken from vCPU @p index but not delivered (its
 *  delivery must be tried again): pending again, no longer counted. */
void emu_irq_untake(struct emu_machine *m, unsigned index, unsigned vector);

/* ---- the loader (loader.c) -------------------------------------------------- */

/**
 * Check an ELF image and put it in guest memory, then write the boot info,
 * the GDT and the identity page tables.  @p err receives a sentence on
 * failure.  0 or -1.
 */
int emu_load_guest(struct emu_machine *m, const void *image, size_t size, char *err,
                   size_t errlen);

/** The loader's GDT (EMU_GDT_ENTRIES descriptors). */
extern const uint64_t emu_gdt[EMU_GDT_ENTRIES];

/* ---- backends -------------------------------------------------------------- */

extern const struct emu_backend_ops emu_backend_vmmu;
/** Guest code on the host CPU through /dev/kvm (kvm_backend.c). */
extern const struct emu_backend_ops emu_backend_kvm;

/**
 * Whether /dev/kvm can be used: 0, or -1 with the reason in @p why (e.g.
 * "/dev/kvm: No such file or directory").
 */
int emu_kvm_probe(char *why, size_t len);

#endif /* EMU_MACHINE_H */
