/* SPDX-License-Identifier: MIT */
/* The backend-neutral machine: console, EXIT port, paravirtual IPIs and hypercalls. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

static int read_file(const char *path, void **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap)
            break;
        if (cap >= (256u << 20)) { /* no guest image is this big */
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = buf && ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *size = len;
    return 0;
}

int emu_machine_create(const struct emu_config *cfg, const struct emu_backend_ops *ops,
                       struct emu_machine **out)
{
    if (!cfg || !ops || !out || !cfg->guest_path)
        return -1;
    if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > EMU_VCPUS_MAX) {
        fprintf(stderr, "vmmu run: --vcpus must be 1..%u\n", EMU_VCPUS_MAX);
        return -1;
    }
    if (cfg->ram_size < EMU_RAM_MIN || cfg->ram_size > EMU_IDENTITY_MAX ||
        cfg->ram_size % (2u << 20)) {
        fprintf(stderr, "vmmu run: RAM must be a multiple of 2 MiB from 4 MiB to 1 GiB\n");
        return -1;
    }
    struct emu_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    m->cfg = *cfg;
    if (!m->cfg.console)
        m->cfg.console = stdout;
    m->ops = ops;
    pthread_mutex_init(&m->console_lock, NULL);
    pthread_mutex_init(&m->stop_lock, NULL);

    void *image = NULL;
    size_t size = 0;
    if (read_file(cfg->guest_path, &image, &size) < 0) {
        fprintf(stderr, "vmmu run: cannot read %s: %s\n", cfg->guest_path, strerror(errno));
        emu_machine_destroy(m);
        return -1;
    }
    if (ops->create(m) < 0) {
        fprintf(stderr, "vmmu run: the %s backend could not build the machine\n", ops->name);
        free(image);
        emu_machine_destroy(m);
        return -1;
    }
    char err[160];
    int rc = emu_load_guest(m, image, size, err, sizeof(err));
    free(image);
    if (rc < 0) {
        fprintf(stderr, "vmmu run: %s: %s\n", cfg->guest_path, err);
        emu_machine_destroy(m);
        return -1;
    }
    *out = m;
    return 0;
}

int emu_machine_run(struct emu_machine *m)
{
    struct emu_vcpu_state *bsp = &m->vcpu[0];
    bsp->boot = (struct emu_vcpu_boot){
        .rip = m->entry, .rsp = EMU_BOOT_STACK_TOP, .rdi = EMU_BOOT_INFO_GPA, .rsi = 0,
        .cr3 = EMU_PML4_GPA};
    atomic_store(&bsp->started, true);
    if (m->ops->run(m) < 0)
        emu_machine_stop(m, EMU_STOP_ERROR, "the %s backend failed to run", m->ops->name);
    pthread_mutex_lock(&m->console_lock);
    fflush(m->cfg.console);
    pthread_mutex_unlock(&m->console_lock);
    pthread_mutex_lock(&m->stop_lock);
    int reason = atomic_load(&m->stop), code = m->exit_code;
    pthread_mutex_unlock(&m->stop_lock);
    if (reason == EMU_STOP_EXIT)
        return code & 0xff;
    fprintf(stderr, "vmmu run: %s\n", m->stop_message[0] ? m->stop_message : "stopped");
    return EMU_EXIT_MACHINE_FAILURE;
}

void emu_machine_destroy(struct emu_machine *m)
{
    if (!m)
        return;
    if (m->backend)
        m->ops->destroy(m);
    pthread_mutex_destroy(&m->console_lock);
    pthread_mutex_destroy(&m->stop_lock);
    free(m);
}

static void stop_va(struct emu_machine *m, enum emu_stop_reason reason, int exit_code,
                    const char *fmt, va_list ap)
{
    /* The first stop wins; its message and status are written before the
     * reason is published, under the lock, so readers of a set reason see them. */
    pthread_mutex_lock(&m->stop_lock);
    if (atomic_load(&m->stop) == EMU_STOP_NONE) {
        if (fmt)
            vsnprintf(m->stop_message, sizeof(m->stop_message), fmt, ap);
        m->exit_code = exit_code;
        atomic_store_explicit(&m->stop, (int)reason, memory_order_release);
    }
    pthread_mutex_unlock(&m->stop_lock);
    for (unsigned i = 0; i < m->cfg.nr_vcpus; i++)
        m->ops->kick(m, i);
}

void emu_machine_stop(struct emu_machine *m, enum emu_stop_reason reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stop_va(m, reason, 0, fmt, ap);
    va_end(ap);
}

void emu_machine_fail(struct emu_machine *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&m->stop_lock);
    vsnprintf(m->stop_message, sizeof(m->stop_message), fmt, ap);
    atomic_store_explicit(&m->stop, (int)EMU_STOP_ERROR, memory_order_release);
    pthread_mutex_unlock(&m->stop_lock);
    va_end(ap);
}

static void stop_exit(struct emu_machine *m, int code, ...)
{
    va_list ap;
    va_start(ap, code);
    stop_va(m, EMU_STOP_EXIT, code, NULL, ap);
    va_end(ap);
}

/* ---- interrupts ---------------------------------------------------------------- */

int emu_irq_post(struct emu_machine *m, unsigned index, unsigned vector)
{
    if (index >= m->cfg.nr_vcpus || vector < EMU_IPI_VECTOR_MIN || vector > 255)
        return -1;
    if (!atomic_load(&m->vcpu[index].started))
        return -1;
    atomic_fetch_or(&m->vcpu[index].pending[vector / 64], 1ull << (vector % 64));
    atomic_fetch_add_explicit(&m->stats.ipis_sent, 1, memory_order_relaxed);
    m->ops->kick(m, index);
    return 0;
}

bool emu_irq_pending(struct emu_machine *m, unsigned index)
{
    struct emu_vcpu_state *v = &m->vcpu[index];
    for (unsigned i = 0; i < 4; i++)
        if (atomic_load_explicit(&v->pending[i], memory_order_acquire))
            return true;
    return false;
}

int emu_irq_take(struct emu_machine *m, unsigned index)
{
    struct emu_vcpu_state *v = &m->vcpu[index];
    for (int i = 3; i >= 0; i--) {
        uint64_t word = atomic_load_explicit(&v->pending[i], memory_order_acquire);
        while (word) {
            int bit = 63 - __builtin_clzll(word);
            uint64_t mask = 1ull << bit;
            uint64_t old = atomic_fetch_and(&v->pending[i], ~mask);
            if (old & mask) {
                atomic_fetch_add_explicit(&m->stats.interrupts, 1, memory_order_relaxed);
                return i * 64 + bit;
            }
            word = old & ~mask;
        }
    }
    return -1;
}

void emu_irq_untake(struct emu_machine *m, unsigned index, unsigned vector)
{
    atomic_fetch_or(&m->vcpu[index].pending[vector / 64], 1ull << (vector % 64));
    atomic_fetch_sub_explicit(&m->stats.interrupts, 1, memory_order_relaxed);
}

/* ---- hypercalls ------------------------------------------------------------------- */

static int hc_start(struct emu_machine *m, const struct emu_hypercall *hc)
{
    if (hc->vcpu >= m->cfg.nr_vcpus || hc->vcpu == 0)
        return EMU_HC_EINVAL;
    struct emu_vcpu_state *v = &m->vcpu[hc->vcpu];
    if (atomic_load(&v->started))
        return EMU_HC_EBUSY;
    /* A CR3 the vCPU could not load would stop the machine when the vCPU
     * boots: the caller hears of it now instead. */
    if (hc->cr3 >> EMU_START_CR3_BITS)
        return EMU_HC_EINVAL;
    bool expected = false;
    /* Only the START that wins writes the boot state: a refused one must not
     * change what the vCPU, perhaps booting now on its own thread, reads. */
    if (!atomic_compare_exchange_strong(&v->started, &expected, true))
        return EMU_HC_EBUSY;
    v->boot = (struct emu_vcpu_boot){
        .rip = hc->rip, .rsp = hc->rsp, .rdi = hc->arg, .rsi = hc->vcpu, .cr3 = hc->cr3};
    if (m->ops->start_vcpu(m, hc->vcpu) < 0) {
        atomic_store(&v->started, false);
        return EMU_HC_EINVAL;
    }
    return EMU_HC_OK;
}

static int hc_flush(struct emu_machine *m, unsigned caller, const struct emu_hypercall *hc)
{
    if (hc->flags & ~EMU_FLUSH_FLAGS)
        return EMU_HC_EINVAL;
    uint64_t all = m->cfg.nr_vcpus == 64 ? ~0ull : (1ull << m->cfg.nr_vcpus) - 1;
    if (hc->vcpu_mask & ~all)
        return EMU_HC_EINVAL;
    if (!(hc->flags & EMU_FLUSH_ALL)) {
        if (hc->count < 1 || hc->count > EMU_FLUSH_PAGES_MAX || (hc->va & 0xfff))
            return EMU_HC_EINVAL;
        /* The pages must not run past the top of the address space. */
        if (hc->count - 1 > (~0ull - hc->va) >> 12)
            return EMU_HC_EINVAL;
    }
    atomic_fetch_add_explicit(&m->stats.flush_calls, 1, memory_order_relaxed);
    if (hc->flags & EMU_FLUSH_ASYNC)
        atomic_fetch_add_explicit(&m->stats.flush_async, 1, memory_order_relaxed);
    uint64_t targets = hc->vcpu_mask;
    if (hc->flags & EMU_FLUSH_LOCAL) {
        /* The guest vouches that only the caller used these translations.
         * Honouring that can leave only the guest's own view stale: the
         * translations are guest-virtual to guest-physical, and the host
         * never relies on the guest's TLB for its own safety. */
        atomic_fetch_add_explicit(&m->stats.flush_local_hint, 1, memory_order_relaxed);
        targets &= 1ull << caller;
    }
    return m->ops->flush(m, caller, targets, hc);
}

static void hypercall(struct emu_machine *m, unsigned caller, uint32_t gpa)
{
    struct emu_hypercall hc;
    atomic_fetch_add_explicit(&m->stats.hypercalls, 1, memory_order_relaxed);
    if ((gpa & 7) || m->ops->gpa_read(m, gpa, &hc, sizeof(hc)) < 0)
        return; /* nowhere to put a result: the call is ignored */
    switch (hc.op) {
    case EMU_HC_START_VCPU:
        hc.result = hc_start(m, &hc);
        break;
    case EMU_HC_FLUSH:
        hc.result = hc_flush(m, caller, &hc);
        break;
    default:
        hc.result = EMU_HC_EINVAL;
        break;
    }
    (void)m->ops->gpa_write(m, gpa + offsetof(struct emu_hypercall, result), &hc.result,
                            sizeof(hc.result));
}

/* ---- ports -------------------------------------------------------------------------- */

void emu_port_in(struct emu_machine *m, unsigned index, uint16_t port, unsigned size,
                 uint32_t *value)
{
    uint32_t v = ~0u;
    if (port == EMU_PORT_SERIAL_LSR)
        v = 0x60; /* transmitter holding register and shift register empty */
    else if (port >= EMU_PORT_SERIAL && port < EMU_PORT_SERIAL + 8)
        v = 0;
    else if (port == EMU_PORT_VCPU_ID)
        v = index;
    else if (port == EMU_PORT_NR_VCPUS)
        v = m->cfg.nr_vcpus;
    else if (port == EMU_PORT_TICKET)
        v = atomic_fetch_add_explicit(&m->stats.tickets, 1, memory_order_relaxed);
    if (size < 4)
        v &= (1u << (8 * size)) - 1;
    *value = v;
}

void emu_port_out(struct emu_machine *m, unsigned index, uint16_t port, unsigned size,
                  uint32_t value)
{
    switch (port) {
    case EMU_PORT_SERIAL:
        pthread_mutex_lock(&m->console_lock);
        fputc((int)(value & 0xff), m->cfg.console);
        if ((value & 0xff) == '\n')
            fflush(m->cfg.console);
        pthread_mutex_unlock(&m->console_lock);
        atomic_fetch_add_explicit(&m->stats.console_bytes, 1, memory_order_relaxed);
        break;
    case EMU_PORT_EXIT:
        stop_exit(m, (int)(value & 0xff));
        break;
    case EMU_PORT_HYPERCALL:
        if (size == 4)
            hypercall(m, index, value);
        break;
    case EMU_PORT_IPI:
        if (size == 4) {
            unsigned vector = value & 0xff, dest = value >> 16;
            if (dest == EMU_IPI_OTHERS) {
                for (unsigned i = 0; i < m->cfg.nr_vcpus; i++)
                    if (i != index)
                        (void)emu_irq_post(m, i, vector);
            } else {
                (void)emu_irq_post(m, dest, vector);
            }
        }
        break;
    default:
        break; /* an empty bus */
    }
}
