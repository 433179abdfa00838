/* SPDX-License-Identifier: MIT */
/* Sets of vCPU ids: a bitmap that grows with the largest id added. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "sync/cpuset_internal.h"
#include "vmmu/error.h"

int vmmu_cpuset_create(struct vmmu_cpuset **out)
{
    if (!out)
        return VMMU_EINVAL;
    struct vmmu_cpuset *s = vmmu__calloc(1, sizeof(*s));
    if (!s)
        return VMMU_ENOMEM;
    *out = s;
    return 0;
}

void vmmu_cpuset_destroy(struct vmmu_cpuset *set)
{
    if (!set)
        return;
    free(set->words);
    free(set);
}

int vmmu_cpuset_add(struct vmmu_cpuset *set, int id)
{
    /* No vm has an id above the limit: a set never needs more than 8 KiB. */
    if (!set || id < 0 || id > VMMU_VCPU_ID_MAX)
        return VMMU_EINVAL;
    size_t w = (size_t)id / 64;
    if (w >= set->nwords) {
        size_t n = set->nwords ? set->nwords : 1;
        while (n <= w)
            n *= 2;
        uint64_t *grown = vmmu__realloc(set->words, n * sizeof(*grown));
        if (!grown)
            return VMMU_ENOMEM;
        memset(grown + set->nwords, 0, (n - set->nwords) * sizeof(*grown));
        set->words = grown;
        set->nwords = n;
    }
    set->words[w] |= 1ull << (id % 64);
    return 0;
}

int vmmu_cpuset_del(struct vmmu_cpuset *set, int id)
{
    if (!set || id < 0)
        return VMMU_EINVAL;
    if ((size_t)id / 64 < set->nwords)
        set->words[id / 64] &= ~(1ull << (id % 64));
    return 0;
}

int vmmu_cpuset_has(const struct vmmu_cpuset *set, int id)
{
    return set && id >= 0 && (size_t)id / 64 < set->nwords &&
           ((set->words[id / 64] >> (id % 64)) & 1);
}

int vmmu_cpuset_clear(struct vmmu_cpuset *set)
{
    if (!set)
        return VMMU_EINVAL;
    if (set->words)
        memset(set->words, 0, set->nwords * sizeof(*set->words));
    return 0;
}

size_t vmmu_cpuset_count(const struct vmmu_cpuset *set)
{
    size_t n = 0;
    for (size_t i = 0; set && i < set->nwords; i++)
        n += (size_t)__builtin_popcountll(set->words[i]);
    return n;
}
