/* SPDX-License-Identifier: MIT */
/* Inside the device-model client library.  Not installed. */
#ifndef VMMU_DMCLIENT_INTERNAL_H
#define VMMU_DMCLIENT_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmmu/dmclient.h"

/* Heap allocation in the client library goes through these, with a test
 * hook like the vm side's (src/core/alloc.h, which this library does not
 * link): a test sets vmmu__dmc_fail_nth to n and the nth allocation from
 * then on fails (NULL, errno ENOMEM); the counter is back at 0 once it
 * has.  Cost when it is 0: one relaxed load and a branch never taken. */
extern _Atomic unsigned long vmmu__dmc_fail_nth;

static inline bool dmc_alloc_fails(void)
{
    unsigned long n = atomic_load_explicit(&vmmu__dmc_fail_nth, memory_order_relaxed);
    while (__builtin_expect(n != 0, 0))
        if (atomic_compare_exchange_weak_explicit(&vmmu__dmc_fail_nth, &n, n - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return n == 1;
    return false;
}

static inline void *dmc_malloc(size_t size)
{
    if (dmc_alloc_fails()) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(size);
}

static inline void *dmc_calloc(size_t n, size_t size)
{
    if (dmc_alloc_fails()) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(n, size);
}

/* A bucket: one mapping of guest RAM [start, end) from the vm's memfd. */
struct dmc_bucket {
    uint64_t key; /* start >> bucket_shift */
    uint64_t start, end;
    uint8_t *ptr;
    uint64_t memfd_off; /* where @start lives in the vm's memfd */
    /* Guest-physical span mapped for writing since the writes were last
     * reported (wlo == whi: none); reported in the device dirty bitmap at
     * each unmap and at an invalidation (mapcache.c). */
    uint64_t wlo, whi;
    unsigned pins;
    bool writable;
    bool dead; /* invalidated while pinned: ptr now maps private memory */
    struct dmc_bucket *hnext;            /* hash chain, dead list, or retired list */
    /* Pinned buckets of the same span this one overlapped when it was
     * made: they keep their mappings (their users' pointers) and live and
     * die with this one, whose pins count theirs too (mapcache.c). */
    struct dmc_bucket *retired;
    struct dmc_bucket *older, *newer;    /* LRU list of live buckets */
};

#define DMC_HASH 1024u
/* How long a map waits for the vm to finish rewriting its region table. */
#define DMC_TABLE_WAIT_NS (100ull * 1000000ull)
/* Rounds of page-in and lookup before a map gives up (VMMU_EPAGEDOUT). */
#define DMC_PAGEIN_ROUNDS 4

struct vmmu_dmc {
    /* The wake-up channels (datagram sockets, used only with MSG_DONTWAIT:
     * the vm holds their other ends and cannot make a call here block). */
    int sock, shm_fd, kick_fd, memfd;
    int dirty_fd;       /* the device dirty bitmap (VMMU_DM_HELLO_DIRTY), or -1 */
    uint64_t *dirty;    /* its mapping, VMMU_DM_DIRTY_PAGES bits, or NULL */
    int svc_sock;        /* the service socket (PAGE_IN), -1 once it failed */
    uint64_t pagein_seq; /* last PAGE_IN sent */
    unsigned nslots;
    int *resp_fd;
    void *shared;
    size_t shared_size;
    struct vmmu_dm_slot *slots;
    struct vmmu_dm_ring *ring;
    struct vmmu_dm_bufreq *ring_ent;
    unsigned ring_entries;
    uint32_t ring_cons;
    struct vmmu_dm_region_table *regions;
    struct vmmu_dm_region_ent *region_ent;
    unsigned max_regions;
    unsigned next_slot; /* round-robin start of the slot scan */
    unsigned spin_us;
    unsigned pagein_timeout_ms;
    uint64_t inval_seen; /* last invalidation seq processed */
    /* Acknowledgements are sent without waiting (a vm that does not read
     * them must not block us): the one being sent, ack_off of its bytes
     * gone, and the seq of the last one sent whole; inval_seen is the one
     * owed (acknowledgements are cumulative: only the latest is sent). */
    struct vmmu_dm_msg ack_msg;
    unsigned ack_off;
    uint64_t ack_sent;

    /* mapcache */
    unsigned bucket_shift;
    size_t limit, mapped;
    struct dmc_bucket *hash[DMC_HASH];
    struct dmc_bucket *oldest, *newest; /* LRU ends */
    struct dmc_bucket *dead;            /* pinned, invalidated */

    struct vmmu_dmc_stats st;
};

/* Drop every mapping overlapping [gpa, gpa + size). */
void vmmu__dmc_invalidate(struct vmmu_dmc *c, uint64_t gpa, uint64_t size);
/* Ask the vm to make [gpa, gpa + size) mappable (bring its pages back in
 * if the pager took them) and wait for its answer (invalidations wait):
 * 0 with @run, the resident memory around @gpa as a region-table entry;
 * VMMU_EHOLE (not memory, given back by the guest, a memory map the table
 * does not show yet, or no service); VMMU_EPAGEDOUT (could not be brought
 * back); VMMU_EBUSY (taken again: ask again); VMMU_ETIMEDOUT; VMMU_EPROTO. */
int vmmu__dmc_page_in(struct vmmu_dmc *c, uint64_t gpa, uint64_t size,
                      struct vmmu_dm_region_ent *run);
/* Whether @e, from the vm's region table or a page-in answer, can be
 * mapped without arithmetic going wrong: not empty, neither its guest
 * range nor its memfd range wraps or ends past what a file offset can
 * hold, and no flag this library does not know.  Whether the memfd holds
 * the range is for the caller to ask (the file may grow). */
bool vmmu__dmc_ent_ok(const struct vmmu_dm_region_ent *e);
/* Unmap everything (close). */
void vmmu__dmc_mapcache_fini(struct vmmu_dmc *c);

#endif /* VMMU_DMCLIENT_INTERNAL_H */
