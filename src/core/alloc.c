/* SPDX-License-Identifier: MIT */
/* The allocation wrappers' test hook (see alloc.h). */
#include "core/alloc.h"

_Atomic int vmmu__alloc_armed;
/* Allocations left before the one that fails (0: none fails). */
static _Atomic unsigned long countdown;
static _Atomic unsigned long count;
static _Atomic int failed;

bool vmmu__alloc_hook(void)
{
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    unsigned long left = atomic_load_explicit(&countdown, memory_order_relaxed);
    /* Only the thread that takes the counter from 1 to 0 fails. */
    while (left) {
        if (atomic_compare_exchange_weak_explicit(&countdown, &left, left - 1,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            if (left == 1) {
                atomic_store_explicit(&failed, 1, memory_order_relaxed);
                return true;
            }
            return false;
        }
    }
    return false;
}

void vmmu__alloc_fail_nth(unsigned long nth)
{
    atomic_store(&count, 0);
    atomic_store(&failed, 0);
    atomic_store(&countdown, nth);
    atomic_store(&vmmu__alloc_armed, 1);
}

unsigned long vmmu__alloc_count(void)
{
    return atomic_load(&count);
}

bool vmmu__alloc_failed(void)
{
    return atomic_load(&failed) != 0;
}

void vmmu__alloc_disarm(void)
{
    atomic_store(&vmmu__alloc_armed, 0);
    atomic_store(&countdown, 0);
}
