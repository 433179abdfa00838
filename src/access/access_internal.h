/* SPDX-License-Identifier: MIT */
/*
 * Inside the access part: the per-vCPU state (latch, watchpoints, code
 * handler), the translated piece every access is built from, and the
 * functions the part's files share.  Not installed.
 *
 * Shape of an access.  Every public access function splits its range at
 * page boundaries into at most two pieces, translates and checks each
 * (access_xlate), and only then performs them (piece_read / piece_write).
 * The latch sits between the two steps: translation records and data
 * events are looked up before anything is translated or read, and appended
 * after.
 */
#ifndef VMMU_ACCESS_INTERNAL_H
#define VMMU_ACCESS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "tlb/tlb_internal.h"
#include "vmmu/access.h"
#include "x86/x86_internal.h"

/* ---- The latch ------------------------------------------------------------ */

/* A page-table entry read by a walk: tag (gpa, level). */
struct latch_entry {
    uint64_t gpa;
    uint64_t value;
    uint8_t level;
    uint8_t size;
    uint16_t pass; /* recorded in this pass; earlier passes are frozen */
};

/* A translation the instruction used: tag (va page, access kind, context). */
struct latch_xlate {
    uint64_t va_page;
    uint64_t gpa_page;
    uint16_t key;  /* access bits (WRITE/FETCH/IMPLICIT) << 2 | context */
    uint16_t pass;
    uint16_t regime; /* paging registers loaded before it in its pass */
};

/* EV_ATOMIC: a locked update of RAM; its data is described in
 * src/access/atomic.c.  A locked update of other pages is recorded as its
 * pieces' reads and writes. */
enum latch_event_kind { EV_READ = 1, EV_IO_READ, EV_IO_WRITE, EV_ATOMIC };

/* A data read (one page piece) or an MMIO/device piece that completed. */
struct latch_event {
    uint64_t addr; /* linear address of its first byte, whatever the page type */
    uint32_t size;
    uint32_t off;  /* where its bytes are in data[] */
    uint8_t kind;
    bool fresh;    /* recorded by the current pass (until it ends) */
    bool locked;   /* a piece of a locked update of a page that is not RAM */
};

/* Guest-physical ranges a pass translated for writing (src/access/atomic.c:
 * what a replayed locked update stores over). */
#define LATCH_WRITES 32
struct latch_range {
    uint64_t gpa;
    uint64_t end; /* exclusive */
};

/* Nesting levels of vmmu_latch_disable() that hand out tokens (deeper
 * calls find the latch off already and return 0). */
#define LATCH_DISABLE_DEPTH 16

struct latch {
    unsigned pass;      /* 0: no instruction; 1: first pass; 2+: replays */
    /* Passes before @pass that records no longer tell apart: records keep
     * their pass in 16 bits, so a latch kept that long has them all
     * renumbered 1 (the only thing a record's pass decides is whether it
     * is of the current pass); statistics count @pass_base + @pass. */
    unsigned pass_base;
    bool in_insn;       /* between begin and end */
    unsigned disabled;  /* nesting depth of vmmu_latch_disable() */
    /* The token each level of that nesting handed out (serials, never 0,
     * so that a token already undone matches no level again). */
    unsigned disable_token[LATCH_DISABLE_DEPTH];
    unsigned disable_serial;
    unsigned nentries, nxlates, nevents;
    uint32_t nbytes;
    unsigned cursor;    /* next event a replay consumes */
    unsigned frozen_events; /* events recorded by earlier passes */
    unsigned served_this_pass; /* entry reads served from earlier passes */
    uint16_t regime;    /* paging registers loaded so far in this pass */
    /* A locked update of pages that are not RAM is making its pieces (a
     * read, then a write): their events are its own, and only it may be
     * served them (src/access/atomic.c). */
    bool in_locked;
    /* What this pass translated for writing so far, locked updates not
     * counted until they are done; past LATCH_WRITES ranges, @writes_lost. */
    unsigned nwrites;
    bool writes_lost;
    struct latch_range writes[LATCH_WRITES];
    struct latch_entry entries[VMMU_LATCH_ENTRIES];
    struct latch_xlate xlates[VMMU_LATCH_XLATES];
    struct latch_event events[VMMU_LATCH_EVENTS];
    uint8_t data[VMMU_LATCH_BYTES];
    struct vmmu_latch_stats stats;
};

/* ---- Watchpoints ------------------------------------------------------------ */

struct watchpoint {
    uint64_t va, last; /* [va, last] inclusive */
    unsigned flags;
    uint32_t id;
};

/* ---- Per-vCPU state ----------------------------------------------------------- */

struct vmmu__access_vcpu {
    struct vmmu_vcpu *vcpu;
    /* What vmmu_access_probe_hit() reads (vmmu_access_fast()); fast.slow
     * mirrors vcpu->latch_walks. */
    struct vmmu_access_fast fast;
    /* Bumped at every safe point (vmmu_insn_end(), and through the sync
     * part's safe-point function at vmmu_vcpu_safepoint() and
     * vmmu_vcpu_offline()): prepared accesses of an older epoch fail. */
    uint64_t epoch;

    struct latch latch;
    struct vmmu__x86_entry_hook hook; /* the latch's entry-read hook (ctx = this) */

    struct watchpoint *watch;
    unsigned nwatch, watch_cap;
    uint32_t next_watch_id;
    struct vmmu_watch_hit hits[VMMU_WATCH_HITS_MAX];
    unsigned nhits;
    uint64_t hits_dropped;
    /* Hits (kept and dropped) when the instruction in progress began: an
     * instruction that ends with VMMU_EPENDING gives back what it
     * recorded, so its re-execution records each hit once. */
    unsigned hits_mark;
    uint64_t dropped_mark;
    /* Set while pieces run whose hits the caller records itself (a
     * locked update of MMIO): they record none. */
    bool hits_quiet;

    vmmu_code_write_fn code_fn;
    void *code_opaque;
};

static inline struct vmmu__access_vcpu *acc_of(struct vmmu_vcpu *v)
{
    return v->access;
}

/* Whether the latch records/replays now. */
static inline bool latch_on(const struct vmmu__access_vcpu *a)
{
    return a->latch.in_insn && !a->latch.disabled;
}

/* ---- One translated piece --------------------------------------------------------- */

struct piece {
    uint64_t va;
    uint64_t gpa;
    uint8_t *host;   /* RAM (or ROM for reads), else NULL */
    uint32_t len;
    uint32_t region_id;
    enum vmmu_mem_type type;
    bool code;       /* a write reaches a page marked as code: notify before writing */
};

static inline void vmmu__fault_none(struct vmmu_x86_fault *f)
{
    f->vector = VMMU_X86_FAULT_NONE;
    f->error_code = 0;
    f->cr2 = 0;
}

static inline bool vmmu__fault_raised(const struct vmmu_x86_fault *f)
{
    return f->vector != VMMU_X86_FAULT_NONE;
}

static inline enum vmmu_tlb_kind access_kind_of(unsigned access)
{
    return (access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
           : (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                           : VMMU_TLB_READ;
}

/* The inline TLB hit for any access inside the page of @va: rights,
 * MMIO-ness, watchpoints and dirty state are per page (and per kind), and
 * a comparator with no flag says all of them allow the access, so the
 * 1-byte form of the hit (no alignment bits) answers for every byte of the
 * page, whatever the length.  The host address of @va, or NULL when the
 * slow path must run.  Not while the latch is on (it records translations). */
static inline void *access_page_hit(struct vmmu_vcpu *v, uint64_t va, unsigned access)
{
    enum vmmu_tlb_kind kind = access_kind_of(access);
    return (access & VMMU_X86_ACC_IMPLICIT) ? vmmu_tlb_lookup_implicit(v, va, 1, kind)
                                            : vmmu_tlb_lookup(v, va, 1, kind);
}

/* The cold half of the TLB entry an inline hit of @va used (same index):
 * its guest-physical page, region and memory type. */
static inline const struct tlb_cold *access_hit_cold(const struct vmmu_vcpu *v, uint64_t va,
                                                     unsigned access)
{
    const struct tlb_ctx *c = tlb_ctx_of(v, access);
    unsigned idx = (unsigned)(va >> VMMU_PAGE_SHIFT) & c->mask;
    return &c->cold[idx];
}

/* Access kinds for watchpoint checks. */
#define ACC_KIND_READ VMMU_WATCH_READ
#define ACC_KIND_WRITE VMMU_WATCH_WRITE
/* VMMU_ACCESS_READ_WRITE (outside VMMU_X86_ACC_ALL, never passed on to the
 * TLB): a read-modify-write, locked or not, translated as a write, whose
 * BEFORE watchpoints of either kind stop it. */
_Static_assert((VMMU_ACCESS_READ_WRITE & VMMU_X86_ACC_ALL) == 0, "an access-part bit");
/* ACCESS_NO_WATCH (internal to the access part): translate without the
 * watchpoint check.  A probe asks about watchpoints itself: it makes no
 * access, so it neither stops at one nor records a hit. */
#define ACCESS_NO_WATCH (1u << 17)
_Static_assert((ACCESS_NO_WATCH & (VMMU_X86_ACC_ALL | VMMU_ACCESS_READ_WRITE)) == 0,
               "an access-part bit");

/* ACCESS_LOCKED (internal to the access part): the translation of a
 * locked update, which the latch does not note among the pass's writes
 * before the update is done (src/access/atomic.c). */
#define ACCESS_LOCKED (1u << 19)

/* ACCESS_REPORTED (internal to the access part, for
 * vmmu__access_xlate_range()): the writes of this access to pages marked
 * as code were reported already, by an earlier translation of the same
 * access (a locked update translated again inside its exclusive section);
 * a mark found now was made since and applies to the next write. */
#define ACCESS_REPORTED (1u << 18)
_Static_assert((ACCESS_REPORTED & (VMMU_X86_ACC_ALL | VMMU_ACCESS_READ_WRITE | ACCESS_NO_WATCH)) ==
                   0,
               "an access-part bit");

/* access.c */
/* Translate and check [va, va + len) (inside one page) for @access: the
 * piece, or a fault in @fault (watchpoints are not looked at: see
 * vmmu__watch_stops()).  Returns 0 or a negative code. */
int vmmu__access_xlate(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                       struct piece *out, struct vmmu_x86_fault *fault);
/* Times a two-page translation is redone because a blocking wait (page-in)
 * ended the vCPU's epoch in the middle of it, before giving VMMU_EBUSY. */
#define ACCESS_XLATE_RETRIES 16
/* SDM 6.15 (#AC): at CPL 3 with CR0.AM and RFLAGS.AC set, a data access
 * of @size bytes (2, 4 or 8; other sizes are not checked) at an address
 * that is not a multiple of @size raises #AC(0), before the pages are
 * walked; implicit supervisor accesses and fetches are never checked.
 * True with the fault in @fault. */
bool vmmu__alignment_fault(const struct vmmu_vcpu *v, uint64_t va, unsigned size, unsigned access,
                           struct vmmu_x86_fault *fault);
/* Whether a VMMU_WATCH_BEFORE watchpoint stops the access @access (unless
 * ACCESS_NO_WATCH) to the translated pieces @p: then the hit is recorded
 * and @fault says VMMU_ACCESS_STOP_WATCH. */
bool vmmu__watch_stops(struct vmmu_vcpu *v, const struct piece *p, unsigned n, unsigned access,
                       struct vmmu_x86_fault *fault);
/* Split and translate [va, va + len) into 1 or 2 pieces, all checked:
 * every piece translated, then the watchpoints.
 * Returns 0 (fault in @fault) or a negative code; *npieces set on success. */
int vmmu__access_xlate_range(struct vmmu_vcpu *v, uint64_t va, uint32_t len, unsigned access,
                             struct piece out[2], unsigned *npieces,
                             struct vmmu_x86_fault *fault);
/* The piece [va, va + len) of guest-physical @gpa as the map and the
 * page's state are now, for @access (a write marks a logged page dirty and
 * sets ->code for a page marked as code); pages it in if it is out. */
int vmmu__piece_from_gpa(struct vmmu_vcpu *v, uint64_t va, uint32_t len, uint64_t gpa,
                         unsigned access, struct piece *out);
/* @p as the map and its page's state are now, after host addresses the
 * vCPU found may have gone stale (vmmu_vcpu::host_gen moved):
 * vmmu__piece_from_gpa(), and for a write with @report its report to a
 * page marked as code (once); again while waits intervene.  Returns 0 or
 * a negative code (VMMU_EBUSY after ACCESS_XLATE_RETRIES). */
int vmmu__piece_again(struct vmmu_vcpu *v, struct piece *p, bool write, bool report);
/* Report the writes of pieces to pages marked as code (the writes follow). */
void vmmu__pieces_commit(struct vmmu_vcpu *v, struct piece *p, unsigned n);
/* Perform @n bytes of a piece from byte @off: read into @buf / write from @buf. */
int vmmu__piece_read(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, void *buf,
                     uint32_t n);
int vmmu__piece_write(struct vmmu_vcpu *v, const struct piece *p, uint32_t off, const void *buf,
                      uint32_t n);
/* Drop this vCPU's TLB entries of the linear page @page (every slot and context). */
void vmmu__access_flush_va_page(struct vmmu_vcpu *v, uint64_t page);

/* latch.c */
void vmmu__latch_reset(struct latch *l);
/* Translation lookup/record for (va page, access, context). */
bool vmmu__latch_xlate_find(struct vmmu__access_vcpu *a, uint64_t va_page, unsigned access,
                            uint64_t *gpa_page);
int vmmu__latch_xlate_record(struct vmmu__access_vcpu *a, uint64_t va_page, unsigned access,
                             uint64_t gpa_page);
/* Data events. */
const uint8_t *vmmu__latch_event_data(const struct vmmu__access_vcpu *a,
                                      const struct latch_event *e);
/* The next event of an earlier pass the replay has to consume, or NULL;
 * take() consumes it; diverge() drops it and every later one (the
 * re-execution took another path: reads are live from here on). */
const struct latch_event *vmmu__latch_event_peek(const struct vmmu__access_vcpu *a);
void vmmu__latch_event_take(struct vmmu__access_vcpu *a);
void vmmu__latch_diverge(struct vmmu__access_vcpu *a);
/* Room for one more event of @size bytes? (VMMU_EOVERFLOW if not) */
int vmmu__latch_event_room(struct vmmu__access_vcpu *a, uint32_t size);
/* The instruction pends: note the bytes each recorded locked update's
 * operand holds now (src/access/atomic.c). */
void vmmu__atomic_latch_pended(struct vmmu_vcpu *v);
/* Record an event at the cursor (behind it: the events of earlier
 * passes still to be consumed). */
int vmmu__latch_event_record(struct vmmu__access_vcpu *a, unsigned kind, uint64_t addr,
                             const void *data, uint32_t size);
/* Room for @events more events holding @bytes bytes in all?
 * (VMMU_EOVERFLOW if not, counted as event_room() counts it) */
int vmmu__latch_room(struct vmmu__access_vcpu *a, unsigned events, uint32_t bytes);
/* Note that this pass translated [gpa, gpa + len) for writing. */
void vmmu__latch_note_write(struct vmmu__access_vcpu *a, uint64_t gpa, uint64_t len);
/* Put this vCPU's latch hook on the calling thread (or take it off). */
void vmmu__latch_hook_update(struct vmmu__access_vcpu *a);

/* watch.c */
/* Check [va, va + len) against the watchpoints for @kind.  Returns true
 * when a BEFORE watchpoint stops the access (hit recorded); records
 * "after" hits when @record_after. */
bool vmmu__watch_check(struct vmmu__access_vcpu *a, uint64_t va, uint32_t len, unsigned kind,
                       bool record_after);
/* Offset in [va, va + len) of the first byte a BEFORE watchpoint for
 * @kind covers, or len if none.  (Both take linear addresses as the
 * access computed them: outside IA-32e paging only bits 31:0 count, and
 * a range past 0xffffffff goes on at 0.) */
uint32_t vmmu__watch_first_before(const struct vmmu__access_vcpu *a, uint64_t va, uint32_t len,
                                  unsigned kind);
/* Whether a watchpoint for @kind (BEFORE or not) covers a byte of
 * [va, va + len); records nothing. */
bool vmmu__watch_covers(const struct vmmu__access_vcpu *a, uint64_t va, uint32_t len,
                        unsigned kind);
void vmmu__watch_fini(struct vmmu__access_vcpu *a);

/* code / dirty (dirty.c) */
/* A write reaches RAM page @gpa_page marked as code: clear the mark and call
 * the handler if this vCPU cleared it. */
void vmmu__code_write(struct vmmu_vcpu *v, uint64_t gpa_page);

/* Life cycle, called from src/tlb/vcpu.c. */
int vmmu__access_vcpu_init(struct vmmu_vcpu *v);
void vmmu__access_vcpu_fini(struct vmmu_vcpu *v);

/* The read of /proc/self/pagemap the dirty-log scan makes (dirty.c);
 * tests replace it to show state pages swapped out or never touched. */
#include <sys/types.h>
extern ssize_t (*vmmu__pagemap_pread)(int fd, void *buf, size_t n, off_t offset);

#endif /* VMMU_ACCESS_INTERNAL_H */
