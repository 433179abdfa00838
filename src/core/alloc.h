/* SPDX-License-Identifier: MIT */
/*
 * Host memory allocation inside vmmu.  Every heap allocation the library
 * makes goes through these wrappers, which behave exactly like the libc
 * functions they are named after, plus a test hook: a test can count the
 * allocations an operation makes and make the Nth one from now fail (the
 * wrapper then returns NULL with errno ENOMEM, or ENOMEM for
 * posix_memalign, as libc does when memory runs out).  Not installed, not
 * exported from the shared library (its names start with vmmu__).
 *
 * Cost when no test has armed the hook: one relaxed load of a flag and one
 * branch that is never taken.
 */
#ifndef VMMU_CORE_ALLOC_H
#define VMMU_CORE_ALLOC_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* Nonzero while a test counts allocations or has one pending failure. */
extern _Atomic int vmmu__alloc_armed;

/* The slow side of the hook: counts this allocation and says whether it
 * is the one that must fail. */
bool vmmu__alloc_hook(void);

static inline bool vmmu__alloc_fails(void)
{
    if (__builtin_expect(atomic_load_explicit(&vmmu__alloc_armed, memory_order_relaxed), 0))
        return vmmu__alloc_hook();
    return false;
}

/* What a failed allocation gives, as libc does when memory runs out. */
static inline void *vmmu__alloc_null(void)
{
    errno = ENOMEM;
    return NULL;
}

static inline void *vmmu__malloc(size_t size)
{
    return vmmu__alloc_fails() ? vmmu__alloc_null() : malloc(size);
}

static inline void *vmmu__calloc(size_t n, size_t size)
{
    return vmmu__alloc_fails() ? vmmu__alloc_null() : calloc(n, size);
}

/* Like realloc: on failure @p is untouched and still owned by the caller. */
static inline void *vmmu__realloc(void *p, size_t size)
{
    return vmmu__alloc_fails() ? vmmu__alloc_null() : realloc(p, size);
}

static inline void *vmmu__aligned_alloc(size_t align, size_t size)
{
    return vmmu__alloc_fails() ? vmmu__alloc_null() : aligned_alloc(align, size);
}

static inline int vmmu__posix_memalign(void **p, size_t align, size_t size)
{
    if (vmmu__alloc_fails())
        return ENOMEM;
    return posix_memalign(p, align, size);
}

/* ---- For tests only ------------------------------------------------------------
 * Start counting allocations and make the @nth one from now fail (1: the
 * next one); @nth 0 only counts.  Only that one allocation fails; later
 * ones succeed again. */
void vmmu__alloc_fail_nth(unsigned long nth);

/* Allocations made (failed one included) since the last
 * vmmu__alloc_fail_nth(). */
unsigned long vmmu__alloc_count(void);

/* Whether the failure asked for has happened. */
bool vmmu__alloc_failed(void);

/* Stop counting and forget a failure not yet reached. */
void vmmu__alloc_disarm(void);

#endif /* VMMU_CORE_ALLOC_H */
