/* SPDX-License-Identifier: MIT */
/* Reading paging-structure entries from guest-physical memory.
 *
 * Every entry the walker and the PDPTE loader use comes through here, so
 * the entry read policy of vmmu/x86.h lives in one place: RAM and ROM are
 * read from host memory with an atomic load (another vCPU or the guest may
 * be writing the entry at the same moment); everything else reads as
 * all-ones, like a bus master abort, without running MMIO callbacks. */
#include "x86/x86_internal.h"

#include "core/vm_internal.h"
#include "vmmu/error.h"
#include "vmmu/p2m.h"

static void entry_all_ones(unsigned size, struct vmmu__x86_entry *out)
{
    out->value = size == 4 ? 0xffffffffull : ~0ull;
    out->host = NULL;
    out->region_id = 0;
}

static uint64_t entry_load(const uint8_t *hva, unsigned size)
{
    /* Entries are naturally aligned: tables are 4 KiB aligned (the PAE
     * PDPT 32-byte aligned) and regions' host memory is page aligned. */
    if (size == 4)
        return __atomic_load_n((const uint32_t *)(const void *)hva, __ATOMIC_ACQUIRE);
    return __atomic_load_n((const uint64_t *)(const void *)hva, __ATOMIC_ACQUIRE);
}

static int read_entry_memory(struct vmmu_vm *vm, uint64_t gpa, unsigned size,
                             struct vmmu__x86_entry *out)
{
    /* The common case, resident RAM or ROM, straight from the map's radix
     * tree: a walk reads up to five entries, so the public lookup's record
     * filling would be a third of the walk's cost. */
    if (!(gpa >> vm->gpa_bits)) {
        uint64_t gfn = gpa >> VMMU_PAGE_SHIFT;
        const struct vmmu_region *r = p2m_resolve(&vm->p2m, gfn, NULL);
        if (!r || (r->type != VMMU_MEM_RAM && r->type != VMMU_MEM_ROM)) {
            entry_all_ones(size, out);
            return 0;
        }
        if (!(region_page_state(r, gfn) & VMMU_PAGE_PAGED_OUT)) {
            const uint8_t *hva = r->host + (gpa - (r->gfn << VMMU_PAGE_SHIFT));
            out->value = entry_load(hva, size);
            /* ROM drops writes, so A/D updates have nowhere to go. */
            out->host = r->type == VMMU_MEM_RAM ? (void *)hva : NULL;
            out->region_id = r->id;
            return 0;
        }
    }

    struct vmmu_p2m_entry pe;
    int rc = vmmu_p2m_lookup(vm, gpa, &pe);

    if (rc == VMMU_ERANGE) {
        /* Beyond the vm's width: nothing answers, as for a hole. */
        entry_all_ones(size, out);
        return 0;
    }
    if (rc < 0)
        return rc;

    if (pe.type != VMMU_MEM_RAM && pe.type != VMMU_MEM_ROM) {
        entry_all_ones(size, out);
        return 0;
    }
    if (!pe.hva) {
        if (vmmu__x86_entry_no_pagein)
            return VMMU_EPAGEDOUT;
        /* Paged out: the pager's page-in handler brings it back (without
         * a copy of the entry: other vCPUs may be writing it); afterwards
         * the page must be resident. */
        rc = vmmu__gpa_make_resident(vm, gpa);
        if (rc < 0)
            return rc;
        rc = vmmu_p2m_lookup(vm, gpa, &pe);
        if (rc < 0)
            return rc;
        if ((pe.type != VMMU_MEM_RAM && pe.type != VMMU_MEM_ROM) || !pe.hva)
            return VMMU_EPAGEDOUT;
    }
    out->value = entry_load(pe.hva, size);
    /* ROM drops writes, so A/D updates have nowhere to go. */
    out->host = pe.type == VMMU_MEM_RAM ? pe.hva : NULL;
    out->region_id = pe.region_id;
    return 0;
}

_Thread_local const struct vmmu__x86_entry_hook *vmmu__x86_entry_hook
    __attribute__((tls_model("initial-exec")));
_Thread_local bool vmmu__x86_entry_no_pagein __attribute__((tls_model("initial-exec")));

int vmmu__x86_read_entry_level(struct vmmu_vm *vm, uint64_t gpa, unsigned size, unsigned level,
                               struct vmmu__x86_entry *out)
{
    /* The replay latch's hook (see x86_internal.h): one thread-local load
     * when no instruction is being recorded. */
    const struct vmmu__x86_entry_hook *hook = vmmu__x86_entry_hook;
    if (__builtin_expect(hook == NULL, 1))
        return read_entry_memory(vm, gpa, size, out);
    int rc = hook->lookup(hook->ctx, vm, gpa, size, level, out);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = read_entry_memory(vm, gpa, size, out);
    if (rc < 0)
        return rc;
    return hook->record(hook->ctx, vm, gpa, size, level, out);
}

int vmmu__x86_read_entry(struct vmmu_vm *vm, uint64_t gpa, unsigned size,
                         struct vmmu__x86_entry *out)
{
    return vmmu__x86_read_entry_level(vm, gpa, size, 0, out);
}
