/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/vmmu.h
 * @brief Umbrella header: include this to get the whole public API.
 */
#ifndef VMMU_VMMU_H
#define VMMU_VMMU_H

#include "error.h"
#include "vm.h"
#include "p2m.h"
#include "x86.h"
#include "tlb.h"
#include "vcpu.h"
#include "access.h"
#include "sync.h"
#include "pager.h"
#include "dm.h"

#endif /* VMMU_VMMU_H */
