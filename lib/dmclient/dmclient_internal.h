/* SPDX-License-Identifier: MIT */
/* Inside the device-model client library.  Not installed. */
#ifndef VMMU_DMCLIENT_INTERNAL_H
#define VMMU_DMCLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmmu/dmclient.h"

/* A bucket: one mapping of guest RAM [start, end) from the vm's memfd. */
struct dmc_bucket {
    uint64_t key; /* start >> bucket_shift */
    uint64_t start, end;
    uint8_t *ptr;
    unsigned pins;
    bool writable;
    bool dead; /* invalidated while pinned: ptr now maps private memory */
    struct dmc_bucket *hnext;            /* hash chain, or dead list */
    struct dmc_bucket *older, *newer;    /* LRU list of live buckets */
};

#define DMC_HASH 1024u
/* How long a map waits for the vm to finish rewriting its region table. */
#define DMC_TABLE_WAIT_NS (100ull * 1000000ull)
/* Rounds of page-in and lookup before a map gives up (VMMU_EPAGEDOUT). */
#define DMC_PAGEIN_ROUNDS 4

struct vmmu_dmc {
    int sock, shm_fd, kick_efd, memfd;
    int svc_sock;        /* the service socket (PAGE_IN), -1 once it failed */
    uint64_t pagein_seq; /* last PAGE_IN sent */
    unsigned nslots;
    int *resp_efd;
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
/* Unmap everything (close). */
void vmmu__dmc_mapcache_fini(struct vmmu_dmc *c);

#endif /* VMMU_DMCLIENT_INTERNAL_H */
