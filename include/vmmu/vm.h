/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/vm.h
 * @brief The vm object: one guest and its guest-physical address space.
 *
 * A vm owns the guest-physical map (see vmmu/p2m.h) and, for RAM that vmmu
 * allocates itself, one memfd that backs all of it, so that a device-model
 * process can map guest RAM later.  Every other vmmu object (vCPUs, device
 * models) belongs to exactly one vm.
 */
#ifndef VMMU_VM_H
#define VMMU_VM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the library these headers describe. */
#define VMMU_VERSION_MAJOR 0
#define VMMU_VERSION_MINOR 1
#define VMMU_VERSION_PATCH 0
#define VMMU_VERSION_STRING "0.1.0"

/** Guest pages are 4 KiB; larger guest mappings are built from them. */
#define VMMU_PAGE_SHIFT 12
#define VMMU_PAGE_SIZE (1ull << VMMU_PAGE_SHIFT)
#define VMMU_PAGE_MASK (~(VMMU_PAGE_SIZE - 1))

/** Widest guest-physical address space vmmu supports (x86 MAXPHYADDR limit). */
#define VMMU_GPA_BITS_MAX 52
/** Narrowest useful guest-physical address space. */
#define VMMU_GPA_BITS_MIN 20

/** Default cap on the number of regions in one vm. */
#define VMMU_REGIONS_DEFAULT_MAX 4096u

struct vmmu_vm;

/** How to build a vm.  Zero-initialise it, then set what you need. */
struct vmmu_vm_config {
    /** Guest-physical address width in bits, VMMU_GPA_BITS_MIN..52;
     *  0 selects 52.  Addresses at or above 1 << gpa_bits are rejected. */
    unsigned gpa_bits;
    /** Most regions the vm may hold at once; 0 selects
     *  VMMU_REGIONS_DEFAULT_MAX.  Protects the host against a runaway
     *  caller; adding beyond it fails with VMMU_ELIMIT. */
    unsigned max_regions;
    /** Name used in diagnostics and for the memfd ("vmmu" if NULL). Copied. */
    const char *name;
};

/**
 * Create a vm with an empty guest-physical map.
 * @param cfg configuration, or NULL for all defaults.
 * @param out receives the new vm on success; untouched on failure.
 * @return 0, VMMU_EINVAL (NULL @p out, width out of range), VMMU_ENOMEM.
 */
int vmmu_vm_create(const struct vmmu_vm_config *cfg, struct vmmu_vm **out);

/**
 * Destroy a vm and every region in it, releasing memory vmmu allocated.
 * Memory the caller supplied for RAM or ROM regions is left alone.
 * No other thread may use the vm during or after this call.  Destroy its
 * vCPUs and its device-model layer first (they refer to the vm); a pager
 * still there is freed here.  NULL is a no-op.
 * @return 0; VMMU_EBUSY (a vCPU or the device-model layer still exists,
 *         or the call is made from inside a callback vmmu runs for this
 *         vm on this thread, which goes on using the vm once the callback
 *         returns: a vmmu_region_foreach() callback, an MMIO callback, the
 *         page-in or device handler; nothing is changed).
 */
int vmmu_vm_destroy(struct vmmu_vm *vm);

/** The vm's guest-physical address width in bits; 0 for NULL. */
unsigned vmmu_vm_gpa_bits(const struct vmmu_vm *vm);

/**
 * The memfd backing all RAM and ROM that vmmu allocated for this vm, or -1
 * if no such region has been added yet (a refused addition leaves it -1)
 * or @p vm is NULL.
 * The vm owns the descriptor; a device model maps a region at the offset
 * vmmu_region_info() reports.
 */
int vmmu_vm_memfd(const struct vmmu_vm *vm);

/** The library's version string, e.g. "0.1.0" (the library linked, which
 *  may differ from VMMU_VERSION_STRING in the headers compiled against). */
const char *vmmu_version(void);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_VM_H */
