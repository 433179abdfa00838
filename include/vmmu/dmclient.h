/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/dmclient.h
 * @brief The device-model client library (libvmmu-dmclient): what a device
 *        model process links to serve a vm's I/O requests and map its
 *        guest memory.
 *
 * A separate small library, not part of libvmmu: a device model needs
 * none of the P2M, TLB, walker or liburcu, only this protocol
 * (vmmu/dmproto.h) and mmap; it usually runs with fewer privileges than the
 * vm; and keeping it apart lets the vm's library change without relinking
 * device models as long as the protocol version stays.  Link with
 * `pkg-config --libs vmmu-dmclient` or CMake's vmmu::dmclient.
 *
 * Use.  Connect on the socket the vm handed you (or a path), then loop:
 * vmmu_dmc_wait() returns the next request; serve it, reading and writing
 * guest memory through the mapcache, and vmmu_dmc_complete() it (buffered
 * writes need no completion).  Invalidations the vm sends are processed
 * and acknowledged inside vmmu_dmc_wait() and vmmu_dmc_process(): a device
 * model doing long work calls vmmu_dmc_process() now and then, or the vm
 * declares it hung after its timeout and kills it.
 *
 * Mapcache.  Guest memory is mapped from the vm's memfd in buckets (64 KiB
 * by default, aligned, cut at region edges), up to a byte limit; unpinned
 * buckets are evicted least recently used first.  Regions the pager took
 * pages from are left out of the vm's region table; a map there asks the
 * vm over the service socket, which brings the pages back and says what
 * may be mapped.  A pointer from
 * vmmu_dmc_map() stays valid until vmmu_dmc_unmap() or until an
 * invalidation of its range is processed; after that the pointer still
 * refers to harmless private memory (reads give zeros, writes are lost),
 * never to a page the vm reused.
 *
 * Threads.  One client object is used by one thread at a time.
 */
#ifndef VMMU_DMCLIENT_H
#define VMMU_DMCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "dmproto.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_dmc;

/** Client options.  Zero-initialise it. */
struct vmmu_dmc_config {
    /** Most bytes of guest memory mapped at once, at least one bucket;
     *  0 selects 64 MiB. */
    size_t mapcache_bytes;
    /** log2 of a bucket's size, 12..24; 0 selects 16 (64 KiB). */
    unsigned bucket_shift;
    /** Microseconds vmmu_dmc_wait() polls the slots before it sleeps (lower
     *  latency at the price of a busy core); 0 sleeps at once. */
    unsigned spin_us;
    /** Milliseconds a map waits for the vm to answer a request for
     *  paged-out memory (see the mapcache above) before it fails with
     *  VMMU_ETIMEDOUT; 0 selects 10000. */
    unsigned pagein_timeout_ms;
};

/**
 * Take over a connected socket @p sock (the client owns it from now on,
 * even on failure), receive the vm's HELLO and map the shared page.
 * @return 0; VMMU_EINVAL (also bucket_shift outside 12..24, mapcache_bytes
 *         below one bucket); VMMU_ENOMEM; VMMU_EPROTO (not a valid HELLO or
 *         shared page, a HELLO cut short, channels that are not datagram
 *         sockets or files not sealed as vmmu/dmproto.h says); VMMU_EDEAD
 *         (the vm hung up);
 *         VMMU_ETIMEDOUT (no HELLO within 10 s); VMMU_ESYS.
 */
int vmmu_dmc_connect_fd(int sock, const struct vmmu_dmc_config *cfg, struct vmmu_dmc **out);

/** Connect to a unix socket @p path, then as vmmu_dmc_connect_fd(). */
int vmmu_dmc_connect_path(const char *path, const struct vmmu_dmc_config *cfg,
                          struct vmmu_dmc **out);

/** Unmap everything (the pages of write mappings still held are reported
 *  to the vm's dirty log, as their unmap would), close every descriptor,
 *  free.  NULL is a no-op. */
void vmmu_dmc_close(struct vmmu_dmc *c);

/** One request from the vm. */
struct vmmu_dmc_req {
    enum vmmu_dm_space space; /**< MMIO (addr is a gpa) or PIO (addr is a port) */
    uint64_t addr;
    unsigned size;   /**< 1, 2, 4 or 8 */
    int write;       /**< 1 for a write */
    uint64_t data;   /**< a write's value */
    int vcpu_id;     /**< the accessing vCPU, -1 for the host (as the vm says) */
    int buffered;    /**< 1: a posted write; do not complete it */
    unsigned slot;   /**< for vmmu_dmc_complete() */
    uint32_t seq;    /**< for vmmu_dmc_complete() */
};

/**
 * Process invalidations, then return the next request: buffered writes
 * first, in order, then slot requests.
 * @param timeout_ms -1 (or any negative value) waits for ever, 0 polls.
 * @return 0 with @p req; VMMU_ETIMEDOUT; VMMU_EDEAD (the vm hung up);
 *         VMMU_EPROTO (the vm sent garbage; a message cut short ends the
 *         connection: the client hangs up, and later calls fail with
 *         VMMU_EDEAD); VMMU_EINVAL.
 */
int vmmu_dmc_wait(struct vmmu_dmc *c, int timeout_ms, struct vmmu_dmc_req *req);

/**
 * Answer a slot request.  @p data is a read's value (ignored for writes);
 * @p status 0 succeeds, non-zero makes the vm fail the access.
 * @return 0; VMMU_EINVAL (buffered, or a slot/sequence this client did not
 *         hand out); VMMU_EPROTO (the slot is no longer in service);
 *         VMMU_EDEAD (the vm hung up: the answer went nowhere);
 *         VMMU_ESYS (the wake-up could not be sent for another reason).
 */
int vmmu_dmc_complete(struct vmmu_dmc *c, const struct vmmu_dmc_req *req, uint64_t data,
                      int status);

/** Process pending invalidations without waiting.  Their acknowledgements
 *  are sent as the socket takes them: one a vm does not read yet is kept
 *  and sent by a later call (acknowledgements are cumulative: the latest
 *  stands for the others).  0, VMMU_EDEAD, VMMU_EPROTO (as
 *  vmmu_dmc_wait()), VMMU_ESYS (a socket call failed), VMMU_EINVAL (NULL
 *  @p c). */
int vmmu_dmc_process(struct vmmu_dmc *c);

/**
 * Map guest RAM [gpa, gpa + len) and pin it.  The range must lie in one
 * bucket and one region (use vmmu_dmc_read/write/fill for larger spans).
 * @param write 1 to map for writing.
 * Memory the region table leaves out (a region the pager took pages from)
 * is asked of the vm first, which brings paged-out pages back; this waits
 * for the vm's answer and processes no invalidation meanwhile.
 * @return 0 with *ptr; VMMU_EINVAL (len 0, wraps); VMMU_ERANGE (crosses a
 *         bucket or region edge, or resident memory ends inside the range);
 *         VMMU_EHOLE (no RAM there, or pages the guest ballooned away, or a
 *         memory map not published yet: see vmmu/dmproto.h, PAGE_IN);
 *         VMMU_EROM (write to read-only memory); VMMU_ELIMIT (every bucket
 *         pinned); VMMU_ENOENT (the vm gave no memfd); VMMU_EPAGEDOUT (the
 *         vm could not bring a page back, or the pager took it again four
 *         times); VMMU_ETIMEDOUT (no answer within pagein_timeout_ms);
 *         VMMU_EPROTO (a malformed answer: the service is not used again;
 *         or a region-table entry whose guest or memfd range wraps);
 *         VMMU_EBUSY (the vm's region table stayed half rewritten for 100 ms:
 *         call it again); VMMU_ESYS.  (A vm that asks to try again is asked
 *         again here, up to the four rounds of VMMU_EPAGEDOUT.)
 */
int vmmu_dmc_map(struct vmmu_dmc *c, uint64_t gpa, size_t len, int write, void **ptr);

/** Unpin what vmmu_dmc_map(@p gpa) pinned.  The pages the bucket was
 *  mapped for writing since are reported to the vm's dirty log here (a
 *  write through a mapping still held is reported at its unmap, or when
 *  an invalidation takes the mapping).  0, VMMU_ENOENT (nothing pinned
 *  there), or VMMU_EINVAL (NULL @p c). */
int vmmu_dmc_unmap(struct vmmu_dmc *c, uint64_t gpa);

/** Copy guest memory of any length into @p buf (through the mapcache).
 *  On failure bytes before the failing bucket may have been copied.
 *  @p len 0 succeeds and does nothing (here and in the two below).
 *  @return as vmmu_dmc_map(). */
int vmmu_dmc_read(struct vmmu_dmc *c, uint64_t gpa, void *buf, size_t len);
/** Copy @p buf into guest memory (the pages are reported to the vm's
 *  dirty log before this returns).  @return as vmmu_dmc_map(). */
int vmmu_dmc_write(struct vmmu_dmc *c, uint64_t gpa, const void *buf, size_t len);
/** Set guest memory to @p byte.  @return as vmmu_dmc_map(). */
int vmmu_dmc_fill(struct vmmu_dmc *c, uint64_t gpa, int byte, size_t len);

/** Mapcache and protocol counters. */
struct vmmu_dmc_stats {
    uint64_t requests;      /**< slot requests returned */
    uint64_t buffered;      /**< buffered writes returned */
    uint64_t map_hits, map_misses, evictions;
    uint64_t invalidations; /**< invalidation messages processed */
    uint64_t dropped;       /**< buckets dropped by invalidations */
    uint64_t mapped_bytes;  /**< bytes mapped now */
    uint64_t page_ins;      /**< paged-out ranges the vm was asked to bring back */
};

/** Copy the counters.  0 or VMMU_EINVAL. */
int vmmu_dmc_stats(const struct vmmu_dmc *c, struct vmmu_dmc_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_DMCLIENT_H */
