/* SPDX-License-Identifier: MIT */
/* Creating and destroying a vm. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/vm_internal.h"
#include "sync/sync_internal.h"
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

void vmmu_vm_destroy(struct vmmu_vm *vm)
{
    if (!vm)
        return;
    vmmu__p2m_fini(vm);
    vmmu__sync_fini(vm);
    if (vm->memfd >= 0)
        close(vm->memfd);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
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
