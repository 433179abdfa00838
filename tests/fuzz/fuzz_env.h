/* SPDX-License-Identifier: MIT */
/* Shared by the libFuzzer targets: an MMIO device that only counts its
 * callbacks, for targets that check that translation never reaches a
 * device.  Header-only: each target includes it once. */
#ifndef VMMU_FUZZ_ENV_H
#define VMMU_FUZZ_ENV_H

#include <stdint.h>

#include "vmmu/vmmu.h"

static unsigned mmio_calls; /* callbacks run so far */

static int mmio_count_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    mmio_calls++;
    *value = 0;
    return 0;
}

static int mmio_count_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    (void)value;
    mmio_calls++;
    return 0;
}

static const struct vmmu_mmio_ops mmio_ops = {mmio_count_read, mmio_count_write};

#endif /* VMMU_FUZZ_ENV_H */
