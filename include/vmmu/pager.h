/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/pager.h
 * @brief Host paging and ballooning of guest RAM: pages written to a
 *        backing file (zero pages simply dropped), brought back on the
 *        next guest access, and a policy that keeps the resident set under
 *        a limit.
 *
 * A pager manages the RAM regions vmmu allocated itself (backed by the vm's
 * memfd, see vmmu_vm_memfd()); their host pages are released with
 * fallocate(FALLOC_FL_PUNCH_HOLE).  Regions with caller-supplied memory
 * are refused (VMMU_EINVAL).
 *
 * Paging out follows the reclaim sequence of vmmu/sync.h: the pages are
 * marked VMMU_PAGE_PAGED_OUT in the P2M (new lookups get no host
 * address), every vCPU drops its TLB entries for them, the reclaim hooks
 * run, one grace period passes for the whole batch, and only then is each
 * page read, written to the file and released.  A guest access to a page
 * that is out goes through the P2M's page-in handler, which the pager
 * registers: the TLB fill (or vmmu_gpa_read/write) brings the page back
 * and retries.  A page that is accessed while its page-out is still in
 * its first phase simply stays (the page-out skips it), so a vCPU never
 * waits for a page-out that waits for that vCPU.
 *
 * Paranoid mode (VMMU_PAGER_PARANOID) makes every released host page
 * PROT_NONE until it is paged in again, so a stale access through a
 * translation vmmu failed to drop crashes at once instead of reading a
 * zero page or corrupting the next user's data.  It splits the host
 * mapping, one VMA per protected page: for tests and debugging.
 *
 * Threads: every function here may be called from any thread; batches are
 * serialised.  On a vCPU's thread they may also be called from inside an
 * access (an MMIO or device-model callback, the code handler): the vCPU
 * is offline while the call waits, which is no safe point, and the access
 * in progress looks up again what it holds (access.h, "Host pointers");
 * a probe's pointer is the only thing it cannot keep.  The page-in
 * handler runs on the thread that touched the page.
 *
 * Host I/O failures lose nothing.  A page that cannot be written to the
 * backing file (disk full, RLIMIT_FSIZE, an I/O error) is not paged out
 * (the SIGXFSZ a write past RLIMIT_FSIZE raises is held back and taken,
 * so it never ends the process):
 * it stays resident with its contents, is not counted in the statistics,
 * and the call returns VMMU_ESYS with errno as the failed write left it;
 * the other pages of the batch still go.  A page that cannot be read back
 * stays out, its contents kept in the file: the access that needed it
 * fails with VMMU_ESYS (vmmu_gpa_read() and the like return it, a TLB fill
 * reports VMMU_TLB_ERROR with it), never with zeros, and the next access
 * or call tries again.
 */
#ifndef VMMU_PAGER_H
#define VMMU_PAGER_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_pager;

/** Released host pages are PROT_NONE until they are paged in again. */
#define VMMU_PAGER_PARANOID (1u << 0)
/** Every pager flag, for validation. */
#define VMMU_PAGER_FLAGS_ALL VMMU_PAGER_PARANOID

/** How to build a pager.  Zero-initialise it, then set what you need. */
struct vmmu_pager_config {
    /** Directory for the backing file (an unnamed O_TMPFILE file, gone
     *  when the pager is destroyed); NULL selects $TMPDIR or /tmp. */
    const char *dir;
    /** Resident-set limit in pages for vmmu_pager_balance(); 0: none. */
    uint64_t resident_limit;
    unsigned flags; /**< VMMU_PAGER_* */
};

/**
 * Create the vm's pager and register its page-in handler.
 * @return 0; VMMU_EINVAL (NULL vm or out, unknown flags); VMMU_EBUSY (the
 *         vm already has a pager, from inside vmmu_region_foreach(), or
 *         from inside the page-in handler it would replace); VMMU_ESYS
 *         (the backing file could not be created); VMMU_ENOMEM.
 */
int vmmu_pager_create(struct vmmu_vm *vm, const struct vmmu_pager_config *cfg,
                      struct vmmu_pager **out);

/**
 * Bring every page the pager holds back in (nothing is lost), unregister
 * the handler and free the pager.  Ballooned pages come back as zero
 * pages.  NULL is a no-op.  vCPUs and host threads may go on accessing
 * guest memory meanwhile: the pager is freed only once no access is inside
 * its page-in handler (vmmu_p2m_set_pagein_handler()).  vmmu_vm_destroy()
 * frees a pager that is still there (without paging anything in); do not
 * call this after it.
 * @return 0 (the pager is gone); VMMU_ESYS if a page could not be read
 *         back from the backing file: the pager is then not freed (its
 *         handler and file stay, every page that could come back did),
 *         so call it again once the cause is gone; VMMU_EBUSY from inside
 *         vmmu_region_foreach() (nothing done), or from inside the
 *         installed page-in handler, on this thread (every page was
 *         brought back in, but the pager stays, handler and file: call it
 *         again from outside).
 */
int vmmu_pager_destroy(struct vmmu_pager *pager);

/**
 * Page out every page of @p ranges (batched: one TLB flush and one grace
 * period for all).  Pages already out or ballooned are skipped; zero pages
 * are dropped without a write.  Every page must be RAM of a region vmmu
 * allocated, else nothing changes.  No ranges (@p n 0) is nothing to do.
 * @return 0; VMMU_EINVAL (NULL, bad ranges, pages the pager cannot manage);
 *         VMMU_EALIGN; VMMU_ERANGE; VMMU_EHOLE; VMMU_ESYS (the backing
 *         file could not be written: those pages stay resident, the others
 *         of the batch went); VMMU_ENOMEM (nothing changed: the batch
 *         goes whole or not at all); VMMU_EBUSY (from inside
 *         vmmu_region_foreach(), as every call here but vmmu_pager_stats()).
 */
int vmmu_pager_page_out(struct vmmu_pager *pager, const struct vmmu_gpa_range *ranges, size_t n);

/**
 * Page in every page of @p ranges that is out (ballooned pages too, as
 * zero pages).  Resident pages are left alone.
 * @return 0; errors as vmmu_pager_page_out(), VMMU_ESYS if the file could
 *         not be read (those pages stay out, their contents in the file;
 *         the others came in).
 */
int vmmu_pager_page_in(struct vmmu_pager *pager, const struct vmmu_gpa_range *ranges, size_t n);

/**
 * Balloon inflation: the guest gives @p ranges back; their contents are
 * discarded and their host pages released, as one batch.  A guest access
 * before vmmu_pager_balloon_in() gets a zero page.
 * @return as vmmu_pager_page_out().
 */
int vmmu_pager_balloon_out(struct vmmu_pager *pager, const struct vmmu_gpa_range *ranges,
                           size_t n);

/**
 * Balloon deflation: give ballooned pages of @p ranges back to the guest
 * as zero pages (and pages that are paged out, paged in).
 * @return as vmmu_pager_page_in().
 */
int vmmu_pager_balloon_in(struct vmmu_pager *pager, const struct vmmu_gpa_range *ranges, size_t n);

/**
 * The policy: if more than the configured resident limit of managed pages
 * are resident, page out victims (one batch) until the limit holds.
 * Victims are chosen by a clock hand over the resident pages: a page paged
 * in since the hand last passed (it was just accessed) gets a second
 * chance, and so does a page whose VMMU_PAGE_DIRTY bit is set (written
 * while dirty logging was on); the others go.  Resident means backed by a
 * host page (mincore()): pages the guest never touched do not count.
 * @param paged_out receives the number of pages paged out, also when the
 *        batch failed in part (VMMU_ESYS); may be NULL.
 * @return 0, VMMU_EINVAL, or an error of vmmu_pager_page_out().
 */
int vmmu_pager_balance(struct vmmu_pager *pager, uint64_t *paged_out);

/** What a pager has done (see vmmu_pager_stats()). */
struct vmmu_pager_stats {
    uint64_t resident;    /**< managed pages resident now (mincore) */
    uint64_t out;         /**< pages out now (written or dropped) */
    uint64_t ballooned;   /**< pages ballooned now */
    uint64_t written;     /**< page-outs that wrote the page to the file */
    uint64_t zero_dropped;/**< page-outs of zero pages (no write) */
    uint64_t paged_in;    /**< page-ins, on access or by the API */
    uint64_t cancelled;   /**< page-outs abandoned because the page was touched */
    uint64_t file_slots;  /**< pages the backing file has room for */
};

/** Copy the pager's statistics.  @return 0 or VMMU_EINVAL. */
int vmmu_pager_stats(struct vmmu_pager *pager, struct vmmu_pager_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_PAGER_H */
