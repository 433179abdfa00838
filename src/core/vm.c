/* SPDX-License-Identifier: MIT */
/* Creating and destroying a vm. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/dmproto.h"
#include "vmmu/error.h"

int vmmu_vm_create(const struct vmmu_vm_config *cfg, struct vmmu_vm **out)
{
    static const struct vmmu_vm_config defaults;
    if (!out)
        return VMMU_EINVAL;
    if (!cfg)
        cfg = &defaults;

    unsigned bits = cfg->gpa_bits ? cfg->gpa_bits : VMMU_GPA_BITS_MAX;
    if (bits < VMMU_GPA_BITS_MIN || bits > VMMU_GPA_BITS_MAX)
        return VMMU_EINVAL;
    unsigned max_regions = cfg->max_regions ? cfg->max_regions : VMMU_REGIONS_DEFAULT_MAX;

    struct vmmu_vm *vm = vmmu__calloc(1, sizeof(*vm));
    if (!vm)
        return VMMU_ENOMEM;
    vm->gpa_bits = bits;
    vm->memfd = -1;
    atomic_init(&vm->memfd_public, -1);
    snprintf(vm->name, sizeof(vm->name), "%s", cfg->name ? cfg->name : "vmmu");
    if (pthread_mutex_init(&vm->lock, NULL) != 0) {
        free(vm);
        return VMMU_ENOMEM;
    }
    int err = vmmu__p2m_init(&vm->p2m, bits, max_regions);
    if (err) {
        pthread_mutex_destroy(&vm->lock);
        free(vm);
        return err;
    }
    err = vmmu__sync_init(vm);
    if (err) {
        vmmu__p2m_fini(vm);
        pthread_mutex_destroy(&vm->lock);
        free(vm);
        return err;
    }
    *out = vm;
    return 0;
}

/* ---- The device dirty bitmap ------------------------------------------------------- */

#define DEV_DIRTY_BYTES (VMMU_DM_DIRTY_PAGES / 8)

struct vmmu_dev_dirty *vmmu__dev_dirty_get(struct vmmu_vm *vm)
{
    struct vmmu_dev_dirty *d = atomic_load_explicit(&vm->dev_dirty, memory_order_acquire);
    if (d)
        return d;
    d = vmmu__calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->fd = memfd_create("vmmu-dev-dirty", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *p = MAP_FAILED;
    if (d->fd >= 0 && ftruncate(d->fd, (off_t)DEV_DIRTY_BYTES) == 0 &&
        fcntl(d->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
        p = mmap(NULL, DEV_DIRTY_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                 d->fd, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        if (d->fd >= 0)
            close(d->fd);
        free(d);
        errno = err;
        return NULL;
    }
    d->words = p;
    struct vmmu_dev_dirty *none = NULL;
    if (!atomic_compare_exchange_strong(&vm->dev_dirty, &none, d)) {
        munmap(p, DEV_DIRTY_BYTES); /* another thread made it first */
        close(d->fd);
        free(d);
        return none;
    }
    return d;
}

uint64_t vmmu__dev_dirty_take(struct vmmu_vm *vm, const struct vmmu_region *r, uint64_t *bitmap)
{
    struct vmmu_dev_dirty *d = atomic_load_explicit(&vm->dev_dirty, memory_order_acquire);
    if (!d || !r->host_owned)
        return 0;
    /* Regions start 2 MiB apart in the memfd, so at a word of the bitmap;
     * the bits past a region's last page in its last word belong to no
     * region (the next one starts at the next 2 MiB). */
    uint64_t first = r->memfd_offset >> VMMU_PAGE_SHIFT;
    if (first % 64 || first >= VMMU_DM_DIRTY_PAGES)
        return 0;
    uint64_t npages = r->npages;
    if (npages > VMMU_DM_DIRTY_PAGES - first)
        npages = VMMU_DM_DIRTY_PAGES - first; /* beyond the bitmap: nothing reported */
    uint64_t added = 0;
    for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
        _Atomic uint64_t *word = &d->words[first / 64 + w];
        if (!atomic_load_explicit(word, memory_order_relaxed))
            continue;
        uint64_t bits = atomic_exchange_explicit(word, 0, memory_order_acq_rel);
        if (npages - w * 64 < 64)
            bits &= (1ull << (npages - w * 64)) - 1;
        if (bitmap) {
            added += (uint64_t)__builtin_popcountll(bits & ~bitmap[w]);
            bitmap[w] |= bits;
        }
    }
    return added;
}

int vmmu_vm_destroy(struct vmmu_vm *vm)
{
    if (!vm)
        return 0;
    /* Inside a vmmu_region_foreach() callback or another callback of this
     * vm's on this thread, the call that runs it goes on using the vm. */
    if (vmmu__vm_in_foreach(vm) || vmmu__callback_uses(vm) || vmmu__sync_in_use(vm))
        return VMMU_EBUSY;
    vmmu__p2m_fini(vm);
    vmmu__sync_fini(vm);
    if (vm->memfd >= 0)
        close(vm->memfd);
    struct vmmu_dev_dirty *d = atomic_load(&vm->dev_dirty);
    if (d) {
        munmap((void *)d->words, DEV_DIRTY_BYTES);
        close(d->fd);
        free(d);
    }
    pthread_mutex_destroy(&vm->lock);
    free(vm);
    return 0;
}

unsigned vmmu_vm_gpa_bits(const struct vmmu_vm *vm)
{
    return vm ? vm->gpa_bits : 0;
}

int vmmu_vm_memfd(const struct vmmu_vm *vm)
{
    return vm ? atomic_load_explicit(&vm->memfd_public, memory_order_acquire) : -1;
}

const char *vmmu_version(void)
{
    return VMMU_VERSION_STRING;
}
