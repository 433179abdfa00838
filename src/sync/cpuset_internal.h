/* SPDX-License-Identifier: MIT */
/* The layout of a vCPU set, for the request code that walks it. */
#ifndef VMMU_CPUSET_INTERNAL_H
#define VMMU_CPUSET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmmu/sync.h"

struct vmmu_cpuset {
    uint64_t *words; /* bit i of word w: id w * 64 + i */
    size_t nwords;
};

#endif /* VMMU_CPUSET_INTERNAL_H */
