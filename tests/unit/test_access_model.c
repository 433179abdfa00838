/* SPDX-License-Identifier: MIT */
/* Randomized model test of the access layer: the access functions
 * (vmmu_access_read/write/load/store/rmw/cmpxchg, prepared accesses and
 * their read/write/set, REP MOVS and REP STOS) and a reference see the
 * same random stream of accesses, page-table edits, register writes and
 * host calls (dirty logging, code marks, watchpoints, paging out and in),
 * and must agree exactly.  Each seed runs in one paging mode (32-bit, PAE,
 * 4-level or 5-level).
 *
 * The reference is the test's own copy of guest memory (RAM, the ROMs'
 * contents, the MMIO devices' and the device model's registers) plus
 * vmmu_x86_walk_peek() for translation (identity with paging off), run
 * in a vm of the reference's own whose RAM is that copy: a walk pages in
 * what it reads (x86.h), and the reference must leave a page that is out
 * for the access under test to bring back.  An access of len bytes at va
 * touches one page, or two
 * when it crosses a page boundary (in 32-bit and PAE paging linear
 * addresses are 32 bits, so the second page of 0xfffffffe + 4 is page 0).
 * Each page is walked in ascending order for the access's kind, and the
 * first that faults gives the fault: vector, error code and CR2 (the
 * first byte of the access in that page) as the walk reports them; a
 * page out of canonical form in IA-32e paging gives #GP(0), or #SS(0)
 * through SS.  A faulting access changes nothing: guest RAM, the ROMs and
 * the MMIO registers keep their contents and no MMIO callback runs
 * (access.h, "fault before side effect").  Otherwise:
 *  - reads give RAM and ROM bytes, all-ones from holes, and what the MMIO
 *    callbacks return;
 *  - writes store into RAM, are dropped by a plain ROM and by holes, and
 *    fail with VMMU_EROM on a ROM that reports writes, after the pieces
 *    before it (ascending) were written;
 *  - MMIO goes through the callbacks in naturally aligned pieces of 1, 2,
 *    4 or 8 bytes, each the largest such piece that fits, in ascending
 *    address order, split at page boundaries; STOS and string moves
 *    touching MMIO make one access per element;
 *  - RMW and CMPXCHG translate as writes; on MMIO and ROM they read every
 *    piece, then write every piece; a failed compare writes nothing;
 *  - REP MOVS/STOS run element by element in the direction DF says, up to
 *    the budget; each element's source is read, then its destination
 *    written, after both were translated; at a fault the registers name
 *    the faulting element and every element before it is complete; a
 *    negative code after progress in the same call comes back as 0 with
 *    the progress (access.h).
 *  - the device-model page (VMMU_MEM_DEVICE) is served by the test's
 *    device handler like a third MMIO device: the same pieces, in the
 *    same order; each request names the page's region, offset and the
 *    vCPU's id.
 *  - one access in three may carry a failure: its k-th callback (MMIO
 *    callbacks and device requests counted together, k from the seed)
 *    fails and changes nothing in its device.  An MMIO callback returns
 *    some negative value (-1, INT_MIN, even VMMU_EPENDING), which the
 *    access returns as VMMU_EMMIO (p2m.h); the device handler returns
 *    VMMU_EDEAD, VMMU_ETIMEDOUT, VMMU_EPROTO, VMMU_EDEVICE or
 *    VMMU_EPENDING, which comes back unchanged (access.h, docs/access.md
 *    "the retry flow").  The callbacks before it ran, in order, and the
 *    pieces before it (RAM bytes included) were performed, as p2m.h says
 *    of guest-physical accesses ("the pieces before it have been
 *    performed"): access.h promises to undo nothing but faults.  Nothing
 *    after it runs or changes; an RMW or CMPXCHG whose read fails writes
 *    nothing; a string operation stops at the element, the registers
 *    naming it (see op_rep for what it returns).  A/D bits, dirty-log
 *    bits and code-handler calls are those of an access that passed its
 *    checks.  What a failed read leaves in the caller's buffer, the
 *    outputs of a failed RMW or CMPXCHG and which watchpoint hits a
 *    failed access records are not said, so not checked.  An
 *    instruction that pends is abandoned (vmmu_latch_discard()).
 * Now and then CR0.PG is cleared (in 4/5-level seeds that leaves long
 * mode, EFER.LMA=0) and set again later: while it is clear linear
 * addresses are physical addresses of 32 bits, nothing faults, no entry
 * is read, and the stream picks its addresses from physical runs (the
 * data pages, the large page's tail, the ROMs, each device, the hole, and
 * 0xfffff000, whose next page is page 0) instead of the windows.
 * The host side of the stream:
 *  - dirty logging of the RAM region goes on (all bits cleared) and off
 *    (bits kept), and vmmu_dirty_log_get_and_clear() is compared at
 *    random points and at the end: every RAM page a write through vmmu
 *    reached must be in it, data pages (any write that passed its checks,
 *    a failed CMPXCHG and a write preparation included) and page-table
 *    pages whose entries the walker gave an A or D bit; besides, only
 *    pages that an access translated for writing before it faulted may
 *    be; with logging off the call fails with VMMU_EINVAL;
 *  - data pages are marked as code (vmmu_code_mark) and unmarked: each
 *    write that passed its checks calls the code handler once per marked
 *    page it reaches, with the page's gpa, before any byte of the page
 *    changes (the handler compares the page with its contents before the
 *    operation); reads, fetches and accesses that fault or stop call
 *    nothing, and a second write finds no mark;
 *  - watchpoints (up to three, READ, WRITE or both, with or without
 *    BEFORE, on a few bytes, across a page boundary or whole pages) are
 *    added and removed.  A BEFORE watchpoint over a page of an access, of
 *    its kind, stops it once that page is translated (a fault on an
 *    earlier page comes first): fault->vector VMMU_ACCESS_STOP_WATCH,
 *    nothing accessed, one hit with BEFORE naming bytes of the access; a
 *    string operation stops before the element whose source or
 *    destination it covers, each side checked as one access, the source
 *    first (so a fault on that element comes first).  Every other hit names
 *    bytes the operation read or wrote, in that kind, overlapping its
 *    watchpoint, and each watchpoint over bytes read or written has a
 *    hit of that kind (how an access is cut into hits is the library's
 *    choice).
 * After every operation the test compares guest RAM (the pages data may
 * reach and every page-table page), the ROMs and the devices' registers
 * with its copy, the MMIO and device callbacks that ran with the ones it
 * expected, the code handler's calls, the watchpoint hits,
 * and each paging-structure entry with what the walks said: an access
 * that completed leaves exactly levels[].new_value (A, and D on a write's
 * leaf); the pages an access translated before it faulted may have their
 * A/D bits set or not (a CPU may set them for a translation it used);
 * nothing else changes.  At the end of a seed all of RAM is compared.
 *
 * Seven rules here were found broken by this test and are also checked
 * on their own at the end of the file: an access crossing out of
 * canonical form faults before paging; a failed CMPXCHG writes the old
 * value back; backward REP STOS stores in descending order; CR2 holds 32
 * bits outside IA-32e paging; a READ|BEFORE watchpoint stops RMW and
 * CMPXCHG; REP MOVS/STOS outside IA-32e paging look for watchpoints at
 * 32-bit linear addresses (RDI after a backward REP crossed 0, an
 * element wrapping at 4 GiB); a locked access wrapping at 4 GiB reports
 * the watchpoints on page 0.
 *
 * Probes (vmmu_access_probe(), vmmu_access_probe_nofault()) take the
 * stream's addresses, sizes (inside one page) and kinds and must answer
 * what the reference says: the fault (vector, error code, CR2; no host
 * pointer), or, with no fault, the gpa and type of the first byte and
 * either the host address of that byte (RAM, ROM reads) or NULL with
 * `why` bits, at least one and each true: MMIO (MMIO, a hole, a ROM
 * write), DEVICE, WATCH (a watchpoint of the access's kind covers a byte
 * of it; one of the other kind may give it too), CODE (a write to a
 * marked page), and, from the non-faulting probe only, NOTDIRTY (its walk
 * would set an A or D bit, or a write would set the page's dirty-log
 * bit).  A VMMU_WATCH_BEFORE watchpoint may also stop a probe
 * (VMMU_ACCESS_STOP_WATCH): access.h does not say which.  The faulting
 * probe sets the A/D bits of its walk once the access may proceed and
 * marks the dirty log of a RAM page it gives a write pointer for (the
 * test then writes through it); the non-faulting one changes nothing:
 * no A/D bit, no dirty bit, no TLB entry (the inline probe answers after
 * it as before it).  No probe makes a callback or calls the code handler.
 * A probe that would cross its page is refused with VMMU_EINVAL.  The
 * inline vmmu_access_probe_hit() runs before and after each probe that
 * suits it: it may miss, leaving *host alone; it never hits inside an
 * instruction, for a write that must set a D or dirty-log bit, or on a
 * page with a watchpoint of its kind; when it hits, its pointer is the
 * one the reference gives.  Which watchpoint hits a probe records is not
 * said, so not checked.
 *
 * Paging.  vmmu allocates the RAM region, so the vm's pager
 * (vmmu_pager_create(); paranoid in half the seeds, where a page it
 * releases is PROT_NONE until it comes back) may manage it, and between
 * operations the host, on the vCPU's thread like its other calls, takes
 * pages away and gives them back:
 *  - vmmu_pager_page_out() of batches of page-table pages (and page 0),
 *    data pages and pages of the large page's tail, and now and then of
 *    every table a linear page's walk reads with the data page it maps:
 *    then each is VMMU_PAGE_PAGED_OUT (one that was ballooned stays so);
 *  - vmmu_pager_balloon_out() of resident data pages without a code mark:
 *    the model's copy becomes zeros, which whatever brings them back
 *    brings;
 *  - vmmu_pager_page_in(), vmmu_pager_balloon_in(): then every page of
 *    the ranges is resident;
 *  - vmmu_pager_balance() under a resident limit: as many pages go out as
 *    it says;
 *  - any of those four with a ROM, MMIO or device-model page or a hole in
 *    the batch (the pager manages only RAM vmmu allocated): VMMU_EINVAL
 *    (VMMU_EHOLE for a hole), and no page's state changes.
 * While the pager's handler serves page-ins, every access function and
 * the faulting probe bring back what they need: reads see the model's
 * copy, writes land and survive later page-outs, faults, error codes and
 * CR2 are the reference's (a table that is out is walked once it is
 * back), A/D bits land in the tables that came back, and a page whose
 * bytes an operation read or wrote, or that a probe gave a pointer into,
 * is resident afterwards at the host address it had.  The inline probe
 * never hits on a page that is out (a page-out drops the entries that
 * map it).  The host edits a table that is out after bringing it back
 * with vmmu_pager_page_in().  vmmu_access_probe_nofault() brings nothing
 * back ("no page-in", access.h): every page out before it is out after
 * it, and for bytes in a page that is out it fails with VMMU_EPAGEDOUT
 * or answers without a host pointer and with reasons that hold; for a
 * walk through a table that is out it may also answer from a TLB entry.
 * A page-in is not a guest write: the dirty log reports what it did
 * without paging (a ballooned page that comes back as zeros may be
 * reported or not), and a code mark outlives a page-out, so the next
 * write to the page calls the handler.
 * Now and then the host unregisters the page-in handler, or registers
 * one that fails (VMMU_ESYS, VMMU_ENOMEM, VMMU_ETIMEDOUT or
 * VMMU_EPAGEDOUT), until vmmu_pager_destroy() brings every page back
 * (nothing is lost) and a new pager takes over.  Meanwhile nothing comes
 * back, the TLB is flushed before each operation (so every page it uses
 * is walked), and an access that needs a page that is out fails with
 * VMMU_EPAGEDOUT without a handler, or with the failing handler's own
 * code (p2m.h; x86.h for walks), having asked it, before any byte moves: no
 * callback, no code-handler call, no watchpoint hit; walks that completed
 * before may have set A/D bits.  It needs the page when a walk reads an
 * entry in it (the error comes whatever that entry holds), or when a
 * piece of the access is in it (a fault or a watchpoint stop the
 * reference finds later in the access may come first: neither document
 * orders that page-in against them).  A string
 * operation stops at the element, its registers naming it, returning 0
 * after completed elements.  Probes fail alike, the non-faulting one
 * with VMMU_EPAGEDOUT without asking the handler; and a register write
 * in PAE paging that loads the PDPTEs from a PDPT that is out fails so
 * and changes nothing (x86.h).  At the end of a seed the pager brings every
 * page back and all of RAM is compared.
 *
 * Not covered yet: the replay of an instruction (an instruction that
 * pends is abandoned, so no second pass runs), dirty logging of a region
 * that is removed, and other vCPUs and host threads (so no page leaves
 * during an operation).
 *
 * Page tables are never edited between an access and its check, and each
 * edit is followed by an invalidation that covers it (INVLPG of the page
 * whose leaf changed, or a flush of everything), so no translation is
 * stale: the rules for stale translations are test_tlb_model's business.
 * Register writes (CPL, EFLAGS.AC, CR0.WP, CR0.PG, CR4.SMEP/SMAP/PKE/PKS,
 * PKRU, PKRS, EFER.NXE) take effect at once, as the vCPU's setters promise.
 * One access in four (when what it reads fits in the replay latch) runs
 * inside vmmu_insn_begin()/vmmu_insn_end(), where the latch records it;
 * its first pass must behave the same.
 *
 * Layout (guest-physical):
 *   [0, 8 MiB)    RAM that vmmu allocates (the test writes it through
 *                 its host mapping): page tables from 0x1000, data
 *                 pages at 2 MiB, and at its top the last pages of the
 *                 large page (4 MiB at 4 MiB in 32-bit paging, else
 *                 2 MiB at 6 MiB)
 *   16 MiB        ROM (2 pages, writes dropped), then 1 page of ROM that
 *                 reports writes
 *   32 MiB        MMIO device A (2 pages), at 32 MiB + 64 KiB device B
 *                 (1 page): both behave as memory and log every callback
 *   40 MiB        a device-model page (1 page), device C, likewise
 *   48 MiB        a hole
 * Linear windows, runs of consecutive pages whose 4 KiB leaves the stream
 * rewrites (pointing at data pages, MMIO, ROM or the hole, with random
 * P, R/W, U/S, A, D, XD, protection key and now and then a reserved bit):
 *   W0  6 pages under one page table
 *   W1  6 pages across a PDE boundary (12 MiB)
 *   W2  the last 2 pages of a PDE that flips between a large page and a
 *       page table, then 2 pages of the next PDE
 *   W3  32-bit and PAE: 0xffffe000..0x1fff, wrapping at 4 GiB;
 *       4/5-level: the last canonical pages of the lower half and the
 *       first non-canonical page
 *   W4  4/5-level: the last non-canonical page below the upper half,
 *       then its first two pages
 *   W5  4/5-level: across the 512 GiB boundary (PML4 slot 0 to 1)
 *   W6  5-level: across 256 TiB (PML5 slot 0 to 1)
 * Upper-level entries of every window change R/W, U/S, XD and A, and now
 * and then get a reserved bit; each is later given full rights again. */
#include "test_access_env.h"

#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>

#define RAM_SIZE (8 * MiB)
#define DATA_BASE (2 * MiB)
#define NDATA 12
#define BIG_GPA_32 (4 * MiB) /* the 4 MiB page in 32-bit paging */
#define BIG_GPA (6 * MiB)    /* the 2 MiB page otherwise */
#define BIG_TAIL (RAM_SIZE - 4 * 4096) /* what accesses through the large page reach */
#define BIG_VA 0x01000000ull
#define ROM_GPA (16 * MiB)
#define ROM_PAGES 2
#define ROMR_GPA (ROM_GPA + ROM_PAGES * 4096)
#define MMIO_A_GPA (32 * MiB)
#define MMIO_A_PAGES 2
#define MMIO_B_GPA (MMIO_A_GPA + 64 * KiB)
#define HOLE_GPA (48 * MiB)
#define DM_GPA (40 * MiB) /* a device-model page */
#define RAM_PAGES (RAM_SIZE / 4096)
#define WRAP_GPA 0xfffff000ull /* with paging off: a hole, then page 0 */

#define NWIN_MAX 8
#define NVP_MAX 48
#define LEN_MAX 4096
#define NWALK_MAX 64
#define NSPAN_MAX (LEN_MAX + 512)
#define SPAN_BYTES (64 * 1024)
#define NLOG_MAX (2 * LEN_MAX)
#define NDEV 3         /* MMIO A, MMIO B, the device model */
#define NWATCH_MAX 3
#define NDONE_MAX 256
#define NPRE_MAX 8
#define NCALLS_MAX 8


/* What a guest-physical page is, in the model. */
enum kind { K_RAM, K_ROM, K_ROMR, K_MMIO_A, K_MMIO_B, K_DEV, K_HOLE };

/* One linear page of a window. */
struct vpage {
    uint64_t va;
    bool canonical; /* false: no entries (a non-canonical page) */
    bool big;       /* under the PDE that may be a large page */
    uint64_t ent[6]; /* gpa of its entry at each level (1 = PTE) */
};

struct window {
    unsigned first, n; /* vpages [first, first + n) */
};

/* A page walk the reference made for the current operation. */
struct wrec {
    uint64_t page;
    unsigned access;
    bool must;  /* the access completed: its A/D updates must be there */
    unsigned nlev;
    struct {
        uint64_t gpa, value, new_value;
        unsigned size;
        bool ram;
    } lev[VMMU_X86_LEVELS_MAX];
};

/* One MMIO callback, as the device saw it. */
struct dev_op {
    unsigned dev;
    uint64_t off;
    unsigned size;
    bool write;
    uint64_t value;
    bool failed; /* the stream made this call fail */
};

/* A run of bytes the reference sends to a device, which the library must
 * split into naturally aligned callbacks. */
struct span {
    unsigned dev;
    uint64_t off;
    uint32_t n;
    bool write;
    uint32_t data; /* where its bytes are in span_data */
};

struct model;

struct device {
    struct model *m;
    unsigned id;
    uint8_t mem[MMIO_A_PAGES * 4096];
};

/* The translation of an access by the reference: its pieces. */
struct rpiece {
    uint64_t va;
    uint32_t len;
    uint64_t gpa;
    enum kind kind;
};

struct rxl {
    unsigned n;
    bool write;
    struct rpiece p[2];
    unsigned walk[2]; /* indices into model.walks */
};

/* A watchpoint, as the model keeps it. */
struct mwatch {
    uint32_t id;
    uint64_t va, len;
    unsigned flags;
};

/* Linear bytes the operation read or wrote (VMMU_WATCH_READ / _WRITE). */
struct lrange {
    uint64_t va;
    uint64_t len;
    unsigned kind;
    bool may; /* bytes an access that failed partway did not reach */
};

/* A hit a VMMU_WATCH_BEFORE watchpoint must record: the access it stops
 * (@va, @len), the piece whose check stopped it, the kinds it was checked
 * for. */
struct bhit {
    unsigned kinds;
    uint64_t va, len;
    uint64_t pva, plen;
};

/* What a seed did, added up per mode and printed (all unsigned long: run_seed()
 * adds them as an array). */
struct counters {
    unsigned long ops, faults, mmio_ops, callbacks, crossings, locked, split_locks, rep_ops,
        rep_partial, rom_dropped, rom_reported, ad_checked, in_insn, prepared, noncanonical,
        unpaged, dirty_checks, dirty_pages, code_calls, watch_hits, watch_stops, dev_ops,
        mmio_failed, dev_failed, dev_pending, rep_failed_partway, probes, probe_faults,
        probe_hosts, probe_stops, probe_hits, probe_why[5], rep_chunk_failed[2], po_batches,
        po_pages, po_refused, balloons, host_pageins, balances, balance_pages, pi_episodes[2],
        in_tables, in_data, epagedout[2], nofault_out, code_after_out, clean_back, align_faults;
};

struct model {
    struct tlb_env t;
    enum mmode mode;
    unsigned ew;  /* entry width: 4 in 32-bit paging, else 8 */
    unsigned top; /* top paging level */
    uint64_t rng;
    uint64_t root;
    uint8_t *shadow; /* what guest RAM must hold */
    uint8_t *rom, *romr;  /* the ROMs' memory (the test's) */
    uint8_t *rom_copy, *romr_copy;
    uint32_t rom_id, romr_id, mmio_id[2], dev_id;
    struct device dev[NDEV];
    uint8_t dev_shadow[NDEV][MMIO_A_PAGES * 4096];
    struct vpage vp[NVP_MAX];
    unsigned nvp;
    struct window win[NWIN_MAX];
    unsigned nwin;
    uint64_t big_pde, big_table;
    bool big_large;
    uint64_t bad[16]; /* upper entries left with less than full rights */
    unsigned level_of_bad[16], nbad;
    /* Linear windows while paging is off: physical runs (linear = physical). */
    uint64_t pwin_va[8];
    unsigned pwin_n[8], npwin;

    bool paging_off; /* CR0.PG cleared: linear = physical, 32 bits */
    /* Dirty logging of the RAM region: pages that must be (must) or may be
     * (may) in the next bitmap. */
    bool logging;
    uint64_t dirty_must[RAM_PAGES / 64], dirty_may[RAM_PAGES / 64];
    /* Code pages: data page i is marked. */
    bool code[NDATA];
    struct mwatch watch[NWATCH_MAX];
    unsigned nwatch;
    char cb_err[256]; /* a callback's complaint, reported after the operation */
    uint64_t seed;
    unsigned step;

    /* The current operation. */
    char what[256];
    struct wrec walks[NWALK_MAX];
    unsigned nwalk;
    struct span spans[NSPAN_MAX];
    unsigned nspan;
    uint8_t span_data[SPAN_BYTES];
    uint32_t span_bytes;
    struct dev_op log[NLOG_MAX];
    unsigned nlog;
    bool log_overflow;
    bool crossed;
    bool locked_op; /* RMW or CMPXCHG: reads and writes */
    struct lrange done[NDONE_MAX];
    unsigned ndone;
    bool done_overflow;
    struct bhit bexp[2];
    unsigned nbexp;
    bool code_exp[NDATA];   /* the handler must be called for data page i */
    uint64_t pre_gpa[NPRE_MAX]; /* code pages' contents before the operation */
    uint8_t pre[NPRE_MAX][4096];
    unsigned npre;
    uint64_t calls[NCALLS_MAX];
    unsigned ncalls;
    unsigned latch_events; /* what the replay latch would record, roughly (see insn_start) */
    uint32_t latch_bytes;
    /* Failures the stream injects: callback number fail_at of the
     * operation (from 0, MMIO callbacks and device requests counted
     * together) fails; -1 for none.  An MMIO callback then returns
     * fail_mmio_rc, the device handler fail_dev_rc. */
    int fail_at;
    int fail_mmio_rc, fail_dev_rc;
    unsigned ncb;     /* callbacks made so far in the operation */
    unsigned ref_ncb; /* callbacks the reference has counted so far */
    int ref_failed;   /* the code the reference's failing callback gives, or 0 */

    /* Paging.  vmmu allocated the RAM region (the pager manages only such
     * regions), so @t.env.mem is vmmu's host mapping of it, which the test
     * reads only where a page is resident. */
    struct vmmu_pager *pager;
    bool paranoid; /* VMMU_PAGER_PARANOID: a released page is PROT_NONE */
    enum { PI_PAGER, PI_NONE, PI_FAILING } pi; /* what serves page-ins now */
    int pi_fail_rc;      /* what the failing handler returns */
    unsigned pi_calls;   /* its calls in the current operation */
    uint64_t out[RAM_PAGES / 64]; /* RAM pages that are out (paged out or ballooned) */
    uint64_t bal[RAM_PAGES / 64]; /* pages ballooned since the dirty log last saw them back */
    uint64_t back[RAM_PAGES / 64]; /* pages that came back since the last dirty log */
    uint64_t resident_limit;
    /* The reference translates in a vm of its own whose RAM is the model's
     * copy: vmmu_x86_walk_peek() pages in what it reads (x86.h), and the
     * reference must not bring back a page the access under test has to. */
    struct vmmu_vm *ref_vm;
    struct vmmu_x86_paging ref_pg;
    struct vmmu_x86_regs ref_regs;
    bool ref_loaded;
    /* The current operation with no way to page in (PI_NONE, PI_FAILING):
     * po_pending, a RAM page its translations reach is out, so it fails
     * with VMMU_EPAGEDOUT before any byte moves; po_rc, it certainly fails
     * so; po_either, it fails so or ends with the fault or stop the
     * reference found (see ref_xlate). */
    bool po_pending, po_either;
    int po_rc;
    bool no_pagein;      /* nothing may come back in this operation */
    bool nofault_op;     /* it is a non-faulting probe: no page-in asked */
    bool got_epagedout;  /* the operation returned VMMU_EPAGEDOUT */
    bool insn_pended;    /* it was an instruction that ended with VMMU_EPENDING */
    uint64_t touched[16]; /* RAM pages whose bytes it read or wrote: resident after it */
    unsigned ntouched;

    struct counters n;
};

static uint64_t rnd(struct model *m)
{
    return model_rnd(&m->rng);
}

static unsigned rn(struct model *m, unsigned n)
{
    return (unsigned)(rnd(m) % n);
}

/* IA-32e paging is on (with CR0.PG=0 long mode is off too: EFER.LMA=0). */
static bool long_mode(const struct model *m)
{
    return mode_long(m->mode) && !m->paging_off;
}

/* Whether @va is canonical: bits 63 down to 47 (56 with 5-level paging)
 * equal, in IA-32e paging; always outside it. */
static bool canon(const struct model *m, uint64_t va)
{
    if (!long_mode(m))
        return true;
    unsigned bits = m->mode == M5 ? 57 : 48;
    int64_t x = (int64_t)(va << (64 - bits)) >> (64 - bits);
    return (uint64_t)x == va;
}

static struct vmmu_vcpu *V(struct model *m)
{
    return m->t.vcpu;
}

static const struct vmmu_x86_paging *pg(struct model *m)
{
    return vmmu_vcpu_paging(m->t.vcpu);
}

/* ---- Pages that are out -------------------------------------------------------- */

static bool bit_of(const uint64_t *map, uint64_t gpa)
{
    return (map[gpa / 4096 / 64] >> (gpa / 4096 % 64)) & 1;
}

static void put_bit(uint64_t *map, uint64_t gpa, bool on)
{
    uint64_t b = 1ull << (gpa / 4096 % 64);
    map[gpa / 4096 / 64] = on ? map[gpa / 4096 / 64] | b : map[gpa / 4096 / 64] & ~b;
}

/* Whether the RAM page holding @gpa is out, as the model knows it: set by
 * the host's calls, cleared when a page is seen back (out_sync()). */
static bool is_out(const struct model *m, uint64_t gpa)
{
    return gpa < RAM_SIZE && bit_of(m->out, gpa);
}

static uint32_t page_state(struct model *m, uint64_t gpa)
{
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(m->t.env.vm, gpa, &st), 0);
    return st;
}

/* ---- The devices ------------------------------------------------------------- */

static void dev_log(struct device *d, uint64_t off, unsigned size, bool write, uint64_t value,
                    bool failed)
{
    struct model *m = d->m;
    if (m->nlog == NLOG_MAX) {
        m->log_overflow = true;
        return;
    }
    m->log[m->nlog++] = (struct dev_op){d->id, off, size, write, value, failed};
}

/* Whether this callback of the operation is the one the stream makes
 * fail.  A failing call changes nothing in the device and is logged. */
static bool dev_fails(struct device *d, uint64_t off, unsigned size, bool write, uint64_t value)
{
    struct model *m = d->m;
    if ((int)m->ncb++ != m->fail_at)
        return false;
    dev_log(d, off, size, write, write ? value : 0, true);
    return true;
}

static void dev_load(struct device *d, uint64_t off, unsigned size, uint64_t *value)
{
    *value = 0;
    memcpy(value, d->mem + off, size);
    dev_log(d, off, size, false, *value, false);
}

static void dev_store(struct device *d, uint64_t off, unsigned size, uint64_t value)
{
    memcpy(d->mem + off, &value, size);
    dev_log(d, off, size, true, value, false);
}

/* A failing read leaves junk in *value: vmmu must not use it. */
static int dev_read(void *opaque, uint64_t off, unsigned size, uint64_t *value)
{
    struct device *d = opaque;
    if (dev_fails(d, off, size, false, 0)) {
        *value = 0x5a5a5a5a5a5a5a5aull;
        return d->m->fail_mmio_rc;
    }
    dev_load(d, off, size, value);
    return 0;
}

static int dev_write(void *opaque, uint64_t off, unsigned size, uint64_t value)
{
    struct device *d = opaque;
    if (dev_fails(d, off, size, true, value))
        return d->m->fail_mmio_rc;
    dev_store(d, off, size, value);
    return 0;
}

static const struct vmmu_mmio_ops dev_ops = {dev_read, dev_write};

static void cb_complain(struct model *m, const char *msg, uint64_t a, uint64_t b)
{
    if (!m->cb_err[0])
        snprintf(m->cb_err, sizeof(m->cb_err), "%s (%#llx, %#llx)", msg, (unsigned long long)a,
                 (unsigned long long)b);
}

/* The device handler serves the device-model page as memory, logging
 * every request like the MMIO devices (device C); the request the stream
 * chose fails with fail_dev_rc (VMMU_EPENDING among them). */
static int dm_handler(void *opaque, struct vmmu_device_req *req)
{
    struct model *m = opaque;
    struct device *d = &m->dev[2];
    uint64_t off = req->gpa - DM_GPA;
    if (req->gpa < DM_GPA || off + req->size > 4096 || req->offset != off ||
        req->region_id != m->dev_id || req->region_opaque != d)
        cb_complain(m, "device request with a wrong gpa, offset or region", req->gpa, req->offset);
    else if (req->vcpu_id != vmmu_vcpu_id(m->t.vcpu))
        cb_complain(m, "device request names another vCPU", (uint64_t)req->vcpu_id, 0);
    else if (dev_fails(d, off, req->size, req->write != 0, req->data))
        return m->fail_dev_rc;
    else if (req->write)
        dev_store(d, off, req->size, req->data);
    else
        dev_load(d, off, req->size, &req->data);
    return 0;
}

/* The code-write handler: the mark is cleared and the write has not
 * happened yet, so the page still holds what it held before the
 * operation (a copy the reference kept when it wrote the page, or its
 * shadow, unchanged by this operation). */
static void code_handler(void *opaque, struct vmmu_vcpu *vcpu, uint64_t gpa_page)
{
    struct model *m = opaque;
    if (m->ncalls < NCALLS_MAX)
        m->calls[m->ncalls] = gpa_page;
    m->ncalls++;
    if (vcpu != m->t.vcpu)
        cb_complain(m, "code handler called for another vCPU", gpa_page, 0);
    if ((gpa_page & 0xfff) || gpa_page < DATA_BASE || gpa_page >= DATA_BASE + NDATA * 4096)
        return; /* not a page the model marked: check_code() reports it */
    if (is_out(m, gpa_page))
        m->n.code_after_out++; /* the mark outlived a page-out */
    uint32_t st = 0;
    if (vmmu_page_state_get(m->t.env.vm, gpa_page, &st) != 0)
        cb_complain(m, "code handler called for a page that is not RAM", gpa_page, 0);
    if (st & VMMU_PAGE_PAGED_OUT)
        return; /* still out: the write has certainly not happened */
    const uint8_t *pre = m->shadow + gpa_page;
    for (unsigned i = 0; i < m->npre; i++)
        if (m->pre_gpa[i] == gpa_page)
            pre = m->pre[i];
    if (memcmp(m->t.env.mem + gpa_page, pre, 4096) != 0)
        cb_complain(m, "code handler called after the write to the page", gpa_page, 0);
}

/* A page-in handler whose backing store fails: each call names the first
 * byte of a page that is out (p2m.h), and brings nothing back.  A
 * non-faulting probe must not ask it ("no page-in", access.h). */
static int failing_pagein(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    struct model *m = opaque;
    uint32_t st = 0;
    m->pi_calls++;
    if (vm != m->t.env.vm || (gpa & 0xfff) || vmmu_page_state_get(vm, gpa, &st) != 0 ||
        !(st & VMMU_PAGE_PAGED_OUT))
        cb_complain(m, "page-in handler called for a page that is not out, or not at its first "
                       "byte (gpa, state)",
                    gpa, st);
    else if (m->nofault_op)
        cb_complain(m, "a non-faulting probe asked the page-in handler for a page", gpa, 0);
    return m->pi_fail_rc;
}

/* The code an access that needs a page that is out, and cannot bring it
 * back, returns: the page-in handler's own code when one failed (p2m.h:
 * the access "returns [it] as it is"), VMMU_EPAGEDOUT without a handler. */
static int po_code(const struct model *m)
{
    return m->pi == PI_FAILING ? m->pi_fail_rc : VMMU_EPAGEDOUT;
}

static bool is_po_rc(const struct model *m, int rc)
{
    return m->pi != PI_PAGER && rc == po_code(m);
}

/* ---- Page tables -------------------------------------------------------------- */

/* The host brings pages back, with vmmu_pager_page_in() or (@balloon)
 * vmmu_pager_balloon_in(): then every page of @rg is resident (pager.h);
 * a ballooned one as a zero page, which the model's copy already holds. */
static void pages_in(struct model *m, const struct vmmu_gpa_range *rg, size_t n, bool balloon)
{
    int rc = balloon ? vmmu_pager_balloon_in(m->pager, rg, n)
                     : vmmu_pager_page_in(m->pager, rg, n);
    if (rc)
        fail_msg("%s paging, seed %llu step %u: %s of %zu ranges from %#llx returned %s",
                 mode_names[m->mode], (unsigned long long)m->seed, m->step,
                 balloon ? "vmmu_pager_balloon_in" : "vmmu_pager_page_in", n,
                 (unsigned long long)rg[0].gpa, vmmu_error_name(rc));
    for (size_t i = 0; i < n; i++)
        for (uint64_t g = rg[i].gpa; g < rg[i].gpa + rg[i].size; g += 4096) {
            uint32_t st = page_state(m, g);
            if (st & (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED))
                fail_msg("%s paging, seed %llu step %u: page %#llx has state %#x after %s",
                         mode_names[m->mode], (unsigned long long)m->seed, m->step,
                         (unsigned long long)g, st,
                         balloon ? "vmmu_pager_balloon_in" : "vmmu_pager_page_in");
            if (is_out(m, g))
                put_bit(m->back, g, true);
            put_bit(m->out, g, false);
        }
    m->n.host_pageins++;
}

/* Entries are written to guest RAM and to the model's copy alike.  The
 * host edits guest memory in place, so a page that is out comes back
 * first. */
static void put_e(struct model *m, uint64_t gpa, uint64_t v)
{
    if (is_out(m, gpa))
        pages_in(m, &(struct vmmu_gpa_range){gpa & ~0xfffull, 4096}, 1, false);
    if (m->ew == 4)
        put32(&m->t.env, gpa, (uint32_t)v);
    else
        put64(&m->t.env, gpa, v);
    memcpy(m->shadow + gpa, m->t.env.mem + gpa, m->ew);
}

/* An entry as guest RAM holds it; the model's copy holds the same (the
 * test compares them after every operation), and is read for a page that
 * is out. */
static uint64_t get_e(const struct model *m, uint64_t gpa)
{
    if (is_out(m, gpa)) {
        uint64_t v = 0;
        memcpy(&v, m->shadow + gpa, m->ew);
        return v;
    }
    return m->ew == 4 ? get32(&m->t.env, gpa) : get64(&m->t.env, gpa);
}

/* Record in vp->ent the entries of @vp->va from @level down to @stop,
 * making the missing tables on the way. */
static void ensure(struct model *m, struct vpage *vp, uint64_t table, unsigned level, unsigned stop)
{
    for (;; level--) {
        uint64_t at = mode_slot(m->mode, table, vp->va, level);
        vp->ent[level] = at;
        if (level == stop)
            return;
        uint64_t e = get_e(m, at);
        if (!(e & E_P)) {
            e = env_page(&m->t.env) | mode_upper_flags(m->mode, level);
            put_e(m, at, e);
        }
        table = mode_table(m->mode, e);
    }
}

/* A random 4 KiB leaf (or, @large, the large page). */
static uint64_t random_leaf(struct model *m, bool large)
{
    uint64_t v;
    if (large) {
        v = (m->mode == M32 ? BIG_GPA_32 : BIG_GPA) | E_PS;
    } else {
        unsigned k = rn(m, 22);
        v = k < 10   ? DATA_BASE + (uint64_t)rn(m, NDATA) * 4096
            : k < 13 ? MMIO_A_GPA + (uint64_t)rn(m, MMIO_A_PAGES) * 4096
            : k < 15 ? MMIO_B_GPA
            : k < 17 ? DM_GPA
            : k < 19 ? ROM_GPA + (uint64_t)rn(m, ROM_PAGES) * 4096
            : k < 21 ? ROMR_GPA
                     : HOLE_GPA;
    }
    if (rn(m, 16))
        v |= E_P;
    if (rn(m, 6))
        v |= E_RW;
    if (rn(m, 2))
        v |= E_US;
    if (rn(m, 2))
        v |= E_A;
    if (rn(m, 2))
        v |= E_D;
    if (m->mode != M32 && rn(m, 8) == 0)
        v |= E_NX; /* reserved while EFER.NXE=0 */
    if (long_mode(m) && rn(m, 4) == 0)
        v |= (uint64_t)(1 + rn(m, 3)) << 59; /* protection key 1..3 (else 0) */
    if (rn(m, 40) == 0) {
        /* A reserved bit: beyond MAXPHYADDR 40; in a 2 MiB PDE bit 13; in
         * a 4 MiB PDE bit 21 (a 32-bit 4 KiB PTE has none). */
        if (m->mode != M32)
            v |= large && rn(m, 2) ? 1ull << 13 : 1ull << 45;
        else if (large)
            v |= 1ull << 21;
    }
    return v;
}

static void add_window(struct model *m, uint64_t va, unsigned n)
{
    struct window *w = &m->win[m->nwin++];
    w->first = m->nvp;
    w->n = n;
    for (unsigned i = 0; i < n; i++) {
        struct vpage *vp = &m->vp[m->nvp++];
        memset(vp, 0, sizeof(*vp));
        vp->va = va + i * 4096ull;
        if (!long_mode(m))
            vp->va &= 0xffffffffull;
        vp->canonical = canon(m, vp->va);
    }
}

static void build(struct model *m)
{
    m->ew = m->mode == M32 ? 4 : 8;
    m->top = mode_top_level(m->mode);
    uint64_t big_size = m->mode == M32 ? 4 * MiB : 2 * MiB;
    m->root = env_page(&m->t.env);

    add_window(m, 0x00400000, 6);
    add_window(m, 0x00bfd000, 6);
    add_window(m, BIG_VA + big_size - 2 * 4096, 4);
    switch (m->mode) {
    case M32:
    case MPAE:
        add_window(m, 0xffffe000, 4);
        break;
    case M4:
        add_window(m, 0x00007fffffffd000ull, 4);
        add_window(m, 0xffff7ffffffff000ull, 3);
        add_window(m, 0x0000007fffffe000ull, 4);
        break;
    default:
        add_window(m, 0x00ffffffffffd000ull, 4);
        add_window(m, 0xfefffffffffff000ull, 3);
        add_window(m, 0x0000007fffffe000ull, 4);
        add_window(m, 0x0000ffffffffe000ull, 4);
        break;
    }

    /* The PDE that flips, and the page table it points at when it is not
     * a large page. */
    struct vpage bigv = {.va = BIG_VA};
    ensure(m, &bigv, m->root, m->top, 2);
    m->big_pde = bigv.ent[2];
    m->big_table = env_page(&m->t.env);
    for (unsigned i = 0; i < m->nvp; i++) {
        struct vpage *vp = &m->vp[i];
        if (!vp->canonical)
            continue;
        vp->big = vp->va >= BIG_VA && vp->va < BIG_VA + big_size;
        if (vp->big) {
            ensure(m, vp, m->root, m->top, 2);
            vp->ent[1] = mode_slot(m->mode, m->big_table, vp->va, 1);
        } else {
            ensure(m, vp, m->root, m->top, 1);
        }
        put_e(m, vp->ent[1], random_leaf(m, false));
    }
    m->big_large = true;
    put_e(m, m->big_pde, random_leaf(m, true));

    /* With paging off, accesses go to these physical runs (never to the
     * page tables): the data pages, the large page's tail (then a hole),
     * the ROMs, each device, the hole, and the last page below 4 GiB,
     * whose next page is page 0. */
    static const struct {
        uint64_t gpa;
        unsigned n;
    } runs[] = {{DATA_BASE, NDATA}, {BIG_TAIL, (RAM_SIZE - BIG_TAIL) / 4096},
                {ROM_GPA, ROM_PAGES + 1}, {MMIO_A_GPA, MMIO_A_PAGES}, {MMIO_B_GPA, 1},
                {DM_GPA, 1}, {HOLE_GPA, 1}, {WRAP_GPA, 1}};
    for (unsigned i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        m->pwin_va[i] = runs[i].gpa;
        m->pwin_n[i] = runs[i].n;
    }
    m->npwin = sizeof(runs) / sizeof(runs[0]);
}

static void load(struct model *m)
{
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG | R_CR0_WP, .cr3 = m->root, .rflags = 2};
    switch (m->mode) {
    case M32:
        r.cr4 = R_CR4_PSE;
        r.efer = R_EFER_NXE;
        break;
    case MPAE:
        r.cr4 = R_CR4_PAE;
        r.efer = R_EFER_NXE;
        break;
    default:
        r.cr4 = R_CR4_PAE | (m->mode == M5 ? R_CR4_LA57 : 0);
        r.efer = R_EFER_LME | R_EFER_LMA | R_EFER_NXE;
        break;
    }
    assert_int_equal(vmmu_vcpu_set_state(V(m), &r), 0);
    assert_int_equal(pg(m)->mode, (enum vmmu_x86_mode)(VMMU_X86_MODE_32 + m->mode));
}

/* ---- The reference ------------------------------------------------------------- */

static enum kind kind_of(uint64_t gpa)
{
    if (gpa < RAM_SIZE)
        return K_RAM;
    if (gpa >= ROM_GPA && gpa < ROMR_GPA)
        return K_ROM;
    if (gpa >= ROMR_GPA && gpa < ROMR_GPA + 4096)
        return K_ROMR;
    if (gpa >= MMIO_A_GPA && gpa < MMIO_A_GPA + MMIO_A_PAGES * 4096)
        return K_MMIO_A;
    if (gpa >= MMIO_B_GPA && gpa < MMIO_B_GPA + 4096)
        return K_MMIO_B;
    if (gpa >= DM_GPA && gpa < DM_GPA + 4096)
        return K_DEV;
    return K_HOLE;
}

static const char *kind_name(enum kind k)
{
    static const char *const names[] = {"RAM",    "ROM",          "reporting ROM", "MMIO A",
                                        "MMIO B", "device model", "hole"};
    return names[k];
}

static const char *regs_str(struct model *m)
{
    static char buf[240];
    const struct vmmu_x86_paging *p = pg(m);
    snprintf(buf, sizeof(buf),
             "seed %llu step %u, %scpl %u ac %d am %d wp %d smep %d smap %d pke %d pks %d pkru %#x pkrs %#llx nxe %d "
             "log %d watches %u",
             (unsigned long long)m->seed, m->step, m->paging_off ? "paging off, " : "", p->cpl, !!(p->rflags & R_RFLAGS_AC),
             !!(p->cr0 & R_CR0_AM), !!(p->cr0 & R_CR0_WP),
             !!(p->cr4 & R_CR4_SMEP), !!(p->cr4 & R_CR4_SMAP), !!(p->cr4 & R_CR4_PKE),
             !!(p->cr4 & R_CR4_PKS), p->pkru, (unsigned long long)p->pkrs,
             !!(p->efer & R_EFER_NXE), m->logging, m->nwatch);
    return buf;
}

static void op_begin(struct model *m)
{
    m->nwalk = 0;
    m->nspan = 0;
    m->span_bytes = 0;
    m->nlog = 0;
    m->log_overflow = false;
    m->crossed = false;
    m->locked_op = false;
    m->ndone = 0;
    m->done_overflow = false;
    m->nbexp = 0;
    memset(m->code_exp, 0, sizeof(m->code_exp));
    m->npre = 0;
    m->ncalls = 0;
    m->cb_err[0] = 0;
    m->latch_events = 0;
    m->latch_bytes = 0;
    m->fail_at = -1;
    m->ncb = 0;
    m->ref_ncb = 0;
    m->ref_failed = 0;
    m->po_pending = m->po_either = false;
    m->po_rc = 0;
    m->got_epagedout = false;
    m->insn_pended = false;
    m->ntouched = 0;
    m->pi_calls = 0;
    /* With no way to page in, nothing comes back; and the TLB is flushed
     * (as a host may at any time), so that every page the operation uses
     * is walked and the reference knows which pages it needs. */
    m->no_pagein = m->pi != PI_PAGER;
    m->nofault_op = false;
    if (m->pi != PI_PAGER)
        assert_int_equal(vmmu_vcpu_tlb_flush_all(V(m)), 0);
}

/* Now and then one callback of the operation fails: an MMIO callback
 * with some negative value (p2m.h: any negative value is a failure,
 * reported as VMMU_EMMIO, whatever the value), the device handler with
 * a code of the device model (returned unchanged, VMMU_EPENDING too). */
static void pick_failure(struct model *m)
{
    static const int mmio_rcs[] = {-1, -5, -22, VMMU_EPENDING, VMMU_EDEAD, INT_MIN};
    static const int dev_rcs[] = {VMMU_EDEAD, VMMU_ETIMEDOUT, VMMU_EPROTO, VMMU_EDEVICE,
                                  VMMU_EPENDING, VMMU_EPENDING};
    if (rn(m, 3))
        return;
    m->fail_at = (int)(rn(m, 4) ? rn(m, 4) : rn(m, 48));
    m->fail_mmio_rc = mmio_rcs[rn(m, sizeof(mmio_rcs) / sizeof(mmio_rcs[0]))];
    m->fail_dev_rc = dev_rcs[rn(m, sizeof(dev_rcs) / sizeof(dev_rcs[0]))];
}

/* The failure the operation carries, for its description. */
static const char *fail_str(const struct model *m)
{
    static char buf[96];
    if (m->fail_at < 0)
        return "";
    snprintf(buf, sizeof(buf), "; callback %d fails (MMIO returns %d, the device handler %s)",
             m->fail_at, m->fail_mmio_rc, vmmu_error_name(m->fail_dev_rc));
    return buf;
}

/* Linear addresses have 32 bits outside IA-32e paging, and wrap at 4 GiB. */
static uint64_t lin_mask(const struct model *m)
{
    return long_mode(m) ? ~0ull : 0xffffffffull;
}

/* Whether [a, a + alen) and [b, b + blen) share a linear byte. */
static bool lin_overlap(const struct model *m, uint64_t a, uint64_t alen, uint64_t b,
                        uint64_t blen)
{
    uint64_t mask = lin_mask(m);
    return ((b - a) & mask) < alen || ((a - b) & mask) < blen;
}

/* Whether [a, a + alen) lies inside [b, b + blen). */
static bool lin_inside(const struct model *m, uint64_t a, uint64_t alen, uint64_t b,
                       uint64_t blen)
{
    return ((a - b) & lin_mask(m)) + alen <= blen;
}

/* Whether watchpoint @w covers a byte of [va, va + len).  Outside IA-32e
 * paging a watchpoint above 4 GiB covers no linear address. */
static bool watch_covers(const struct model *m, const struct mwatch *w, uint64_t va, uint64_t len)
{
    if (!long_mode(m) && w->va > 0xffffffffull)
        return false;
    return lin_overlap(m, w->va, w->len, va, len);
}

/* A VMMU_WATCH_BEFORE watchpoint for one of @kinds covers [va, va + len). */
static bool before_watched(const struct model *m, uint64_t va, uint64_t len, unsigned kinds)
{
    for (unsigned i = 0; i < m->nwatch; i++) {
        const struct mwatch *w = &m->watch[i];
        if ((w->flags & VMMU_WATCH_BEFORE) && (w->flags & kinds) && watch_covers(m, w, va, len))
            return true;
    }
    return false;
}

static void expect_stop(struct model *m, unsigned kinds, uint64_t va, uint64_t len, uint64_t pva,
                        uint64_t plen, struct vmmu_x86_fault *f)
{
    assert_true(m->nbexp < 2);
    m->bexp[m->nbexp++] = (struct bhit){kinds, va, len, pva, plen};
    f->vector = VMMU_ACCESS_STOP_WATCH;
    f->error_code = 0;
    f->cr2 = 0;
}

static void set_bit(uint64_t *map, uint64_t gpa)
{
    map[gpa / 4096 / 64] |= 1ull << (gpa / 4096 % 64);
}

/* Dirty logging: a write through vmmu to the RAM page holding @gpa
 * happened (must) or may have been prepared (may). */
static void dirty_must(struct model *m, uint64_t gpa)
{
    if (m->logging && gpa < RAM_SIZE)
        set_bit(m->dirty_must, gpa);
}

static void dirty_may(struct model *m, uint64_t gpa)
{
    if (m->logging && gpa < RAM_SIZE)
        set_bit(m->dirty_may, gpa);
}

/* Data page index of @gpa, or -1. */
static int data_page(uint64_t gpa)
{
    return gpa >= DATA_BASE && gpa < DATA_BASE + NDATA * 4096 ? (int)((gpa - DATA_BASE) / 4096)
                                                                : -1;
}

/* The operation read (or wrote) the linear bytes [va, va + n): kept as
 * runs for the watchpoint check. */
static void note_done(struct model *m, uint64_t va, uint64_t n, bool write, bool may)
{
    unsigned kind = write ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
    uint64_t mask = lin_mask(m);
    for (unsigned i = m->ndone; i-- > 0;) {
        struct lrange *r = &m->done[i];
        if (r->kind != kind || r->may != may)
            continue;
        if (((r->va + r->len) & mask) == va) {
            r->len += n;
            return;
        }
        if (((va + n) & mask) == r->va) {
            r->va = va;
            r->len += n;
            return;
        }
        break;
    }
    if (m->ndone == NDONE_MAX) {
        m->done_overflow = true;
        return;
    }
    m->done[m->ndone++] = (struct lrange){va, n, kind, may};
}

/* The reference's paging state: the vCPU's registers, loaded into a
 * paging state over the reference vm (whose RAM is the model's copy)
 * when they change.  In PAE paging the PDPTE registers it loads must be
 * the vCPU's: the test never edits the PDPT. */
static const struct vmmu_x86_paging *ref_paging(struct model *m)
{
    const struct vmmu_x86_paging *p = pg(m);
    struct vmmu_x86_regs *r = &m->ref_regs;
    if (!m->ref_loaded || r->cr0 != p->cr0 || r->cr3 != p->cr3 || r->cr4 != p->cr4 ||
        r->efer != p->efer || r->rflags != p->rflags || r->cpl != p->cpl ||
        r->pkru != p->pkru || r->pkrs != p->pkrs) {
        *r = (struct vmmu_x86_regs){.cr0 = p->cr0, .cr3 = p->cr3, .cr4 = p->cr4,
                                    .efer = p->efer, .rflags = p->rflags, .cpl = p->cpl,
                                    .pkru = p->pkru, .pkrs = p->pkrs};
        assert_int_equal(vmmu_x86_set_state(&m->ref_pg, r), 0);
        m->ref_loaded = true;
    }
    assert_int_equal(m->ref_pg.mode, p->mode);
    if (p->mode == VMMU_X86_MODE_PAE)
        assert_memory_equal(m->ref_pg.pdpte, p->pdpte, sizeof(p->pdpte));
    return &m->ref_pg;
}

/* Whether walk @w read an entry in a RAM page that is out (PAE PDPTE
 * registers are not read from memory). */
static bool walk_reads_out(const struct model *m, const struct vmmu_x86_walk *w)
{
    for (unsigned l = 0; l < w->nlevels; l++)
        if (w->levels[l].host && is_out(m, w->levels[l].gpa))
            return true;
    return false;
}

/* The walk of the page at @page for @access, made once per operation
 * (the tables do not change during one); its index in m->walks. */
static unsigned ref_walk(struct model *m, uint64_t page, unsigned access, struct vmmu_x86_walk *w)
{
    assert_int_equal(vmmu_x86_walk_peek(ref_paging(m), page, access, w), 0);
    if (!w->ok)
        return ~0u;
    for (unsigned i = 0; i < m->nwalk; i++)
        if (m->walks[i].page == (page & ~0xfffull) && m->walks[i].access == access)
            return i;
    assert_true(m->nwalk < NWALK_MAX);
    struct wrec *r = &m->walks[m->nwalk];
    r->page = page & ~0xfffull;
    r->access = access;
    r->must = false;
    r->nlev = w->nlevels;
    for (unsigned l = 0; l < w->nlevels; l++) {
        r->lev[l].gpa = w->levels[l].gpa;
        r->lev[l].value = w->levels[l].value;
        r->lev[l].new_value = w->levels[l].new_value;
        r->lev[l].size = w->levels[l].size;
        r->lev[l].ram = w->levels[l].host != NULL;
    }
    return m->nwalk++;
}

/* With no way to page in (PI_NONE, PI_FAILING), an access that needs a
 * RAM page that is out cannot be made: it fails with po_code() (p2m.h:
 * "without [a handler], accesses to a paged-out page fail with
 * VMMU_EPAGEDOUT", and a failing handler's code is returned as it is;
 * x86.h: a walk whose table cannot be brought back fails so; the
 * non-faulting probe, which asks no handler, with VMMU_EPAGEDOUT), and,
 * as every piece is translated and checked
 * before the first byte moves (access.h), nothing is accessed.  When:
 *  - a walk reads an entry in a page that is out: then, whatever that
 *    entry would have said (the TLB is flushed before each such
 *    operation, so every page is walked);
 *  - a piece translates to a RAM page that is out: the page is needed
 *    before any byte moves, but neither document says whether before the
 *    next piece is walked or the piece's watchpoints are checked, so a
 *    fault or a watchpoint stop the reference finds after that point may
 *    come first (po_either). */
static void po_fault(struct model *m)
{
    if (m->po_pending)
        m->po_either = true;
}

static bool po_walk_out(struct model *m, struct vmmu_x86_fault *f)
{
    m->po_rc = m->nofault_op ? VMMU_EPAGEDOUT : po_code(m);
    m->po_either = false;
    *f = (struct vmmu_x86_fault){VMMU_X86_FAULT_NONE, 0, 0};
    return false;
}

/* After the translations of an access (both sides of a string element)
 * passed: whether it fails with VMMU_EPAGEDOUT for a data page. */
static bool po_data_out(struct model *m)
{
    if (!m->po_pending)
        return false;
    m->po_rc = m->nofault_op ? VMMU_EPAGEDOUT : po_code(m);
    return true;
}

/* The library returned @rc (and @f) for an access the reference says may
 * end either way (po_either): if it took the paging error, nothing was
 * accessed and no watchpoint stopped it.  @progress: a string operation
 * had completed elements, so the error comes back as 0 with no fault. */
static void po_settle(struct model *m, int rc, const struct vmmu_x86_fault *f, bool progress,
                      int *want_rc, struct vmmu_x86_fault *wf)
{
    if (!m->po_either)
        return;
    if (!progress && is_po_rc(m, rc)) {
        *want_rc = rc;
        m->nbexp = 0;
    } else if (progress && rc == 0 && f->vector == VMMU_X86_FAULT_NONE) {
        *wf = (struct vmmu_x86_fault){VMMU_X86_FAULT_NONE, 0, 0};
        m->nbexp = 0;
    }
}

/* Translate [va, va + len) for @access, as the CPU does: true with the
 * pieces in @x, or false with the fault in @f (or m->po_rc, see above). */
static bool ref_xlate(struct model *m, uint64_t va, uint32_t len, unsigned access, struct rxl *x,
                      struct vmmu_x86_fault *f)
{
    if (!long_mode(m))
        va &= 0xffffffffull;
    uint32_t first = (uint32_t)(4096 - (va & 0xfff));
    if (first > len)
        first = len;
    x->n = first < len ? 2 : 1;
    x->write = (access & VMMU_X86_ACC_WRITE) != 0;
    x->p[0].va = va;
    x->p[0].len = first;
    if (x->n == 2) {
        x->p[1].va = va + first;
        if (!long_mode(m))
            x->p[1].va &= 0xffffffffull;
        x->p[1].len = len - first;
        m->crossed = true;
    }
    /* SDM 3.3.7.1: canonical form is checked for every byte before paging. */
    if (long_mode(m) &&
        (!canon(m, va) || !canon(m, va + len - 1))) {
        f->vector = (access & VMMU_X86_ACC_STACK) ? VMMU_X86_VEC_SS : VMMU_X86_VEC_GP;
        f->error_code = 0;
        f->cr2 = 0;
        po_fault(m);
        return false;
    }
    /* Watchpoints that stop an access: of its kind; a locked access both
     * reads and writes. */
    unsigned kinds = x->write ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
    if (m->locked_op)
        kinds |= VMMU_WATCH_READ;
    for (unsigned i = 0; i < x->n; i++) {
        if (m->paging_off) {
            /* CR0.PG=0: the linear address is the physical address. */
            x->walk[i] = ~0u;
            x->p[i].gpa = x->p[i].va;
        } else {
            struct vmmu_x86_walk w;
            x->walk[i] = ref_walk(m, x->p[i].va, access, &w);
            if (m->pi != PI_PAGER && walk_reads_out(m, &w))
                return po_walk_out(m, f);
            if (!w.ok) {
                *f = w.fault;
                po_fault(m);
                return false;
            }
            x->p[i].gpa = w.gpa;
        }
        x->p[i].kind = kind_of(x->p[i].gpa);
        if (m->pi != PI_PAGER && x->p[i].kind == K_RAM && is_out(m, x->p[i].gpa))
            m->po_pending = true;
        /* Translating a write to RAM may mark the page dirty even if the
         * access then faults on its second page. */
        if (x->write && x->p[i].kind == K_RAM)
            dirty_may(m, x->p[i].gpa);
    }
    /* Then the watchpoints, page by page: a fault anywhere in the access
     * comes before a stop (access.h: every piece translated, then
     * checked). */
    for (unsigned i = 0; i < x->n; i++)
        if (m->nwatch && before_watched(m, x->p[i].va, x->p[i].len, kinds)) {
            expect_stop(m, kinds, va, len, x->p[i].va, x->p[i].len, f);
            po_fault(m);
            return false;
        }
    return true;
}

/* The access translated in @x was performed: its A/D updates must be there. */
static void ref_done(struct model *m, const struct rxl *x)
{
    for (unsigned i = 0; i < x->n; i++) {
        if (x->walk[i] != ~0u)
            m->walks[x->walk[i]].must = true;
        if (!x->write || x->p[i].kind != K_RAM)
            continue;
        /* A write that passed its checks: its RAM pages are dirty, and
         * each marked code page calls the handler (once: the call clears
         * the mark). */
        dirty_must(m, x->p[i].gpa);
        int d = data_page(x->p[i].gpa);
        if (d >= 0 && m->code[d])
            m->code_exp[d] = true;
    }
}

static unsigned mmio_dev(enum kind k)
{
    return k == K_MMIO_A ? 0 : k == K_MMIO_B ? 1 : 2;
}

static uint64_t mmio_base(unsigned dev)
{
    return dev == 0 ? MMIO_A_GPA : dev == 1 ? MMIO_B_GPA : DM_GPA;
}

static unsigned largest_piece(uint64_t off, uint32_t left);

/* The operation read or wrote bytes of the RAM page holding @gpa: the
 * page is resident once it returns (a page-in brings a page back and
 * nothing takes it away during an operation). */
static void touch(struct model *m, uint64_t gpa)
{
    uint64_t page = gpa & ~0xfffull;
    for (unsigned i = 0; i < m->ntouched; i++)
        if (m->touched[i] == page)
            return;
    if (m->ntouched < sizeof(m->touched) / sizeof(m->touched[0]))
        m->touched[m->ntouched++] = page;
}

/* @n bytes of the piece @p from byte @off: read into @buf, or written from
 * it.  Returns 0, VMMU_EROM, or the code of a callback the stream made
 * fail (VMMU_EMMIO, or the device handler's). */
static int ref_piece(struct model *m, const struct rpiece *p, uint32_t off, uint8_t *buf,
                     uint32_t n, bool write)
{
    uint64_t gpa = p->gpa + off;
    if (p->kind == K_DEV) {
        /* The latch records each device piece. */
        for (uint32_t k = 0; k < n; k += largest_piece(gpa + k, n - k))
            m->latch_events++;
        m->latch_bytes += n;
    } else if (!write || p->kind == K_MMIO_A || p->kind == K_MMIO_B) {
        m->latch_events++;
        m->latch_bytes += n;
    }
    note_done(m, p->va + off, n, write, false);
    switch (p->kind) {
    case K_RAM:
        touch(m, gpa);
        if (write) {
            int d = data_page(gpa);
            if (d >= 0 && m->code[d]) {
                /* What the code handler must still see. */
                uint64_t page = gpa & ~0xfffull;
                unsigned i;
                for (i = 0; i < m->npre && m->pre_gpa[i] != page; i++)
                    ;
                if (i == m->npre) {
                    assert_true(m->npre < NPRE_MAX);
                    m->pre_gpa[m->npre] = page;
                    memcpy(m->pre[m->npre++], m->shadow + page, 4096);
                }
            }
            memcpy(m->shadow + gpa, buf, n);
        } else
            memcpy(buf, m->shadow + gpa, n);
        return 0;
    case K_ROM:
    case K_ROMR: {
        const uint8_t *rom = p->kind == K_ROM ? m->rom_copy + (gpa - ROM_GPA)
                                              : m->romr_copy + (gpa - ROMR_GPA);
        if (!write) {
            memcpy(buf, rom, n);
            return 0;
        }
        if (p->kind == K_ROMR) {
            m->n.rom_reported++;
            return VMMU_EROM;
        }
        m->n.rom_dropped++;
        return 0;
    }
    case K_HOLE:
        if (!write)
            memset(buf, 0xff, n);
        return 0;
    default: {
        unsigned d = mmio_dev(p->kind);
        uint64_t doff = gpa - mmio_base(d);
        /* The callbacks of these bytes, one per naturally aligned piece:
         * the one the stream chose fails, the pieces before it are done,
         * and nothing after it runs.  The failing call itself reaches
         * the device (and is part of the span) but changes nothing. */
        uint32_t ok = n, reached = n;
        int rc = 0;
        for (uint32_t k = 0; k < n; k += largest_piece(doff + k, n - k)) {
            if ((int)m->ref_ncb++ == m->fail_at) {
                ok = k;
                reached = k + largest_piece(doff + k, n - k);
                rc = d == 2 ? m->fail_dev_rc : VMMU_EMMIO;
                m->ref_failed = rc;
                break;
            }
        }
        assert_true(m->nspan < NSPAN_MAX && m->span_bytes + reached <= SPAN_BYTES);
        if (write)
            memcpy(m->dev_shadow[d] + doff, buf, ok);
        else
            memcpy(buf, m->dev_shadow[d] + doff, ok);
        m->spans[m->nspan++] = (struct span){d, doff, reached, write, m->span_bytes};
        memcpy(m->span_data + m->span_bytes, buf, reached);
        m->span_bytes += reached;
        return rc;
    }
    }
}

/* Bytes [off, off + n) of the translated access: in ascending order, piece
 * by piece, stopping at the first piece that fails. */
static int ref_span(struct model *m, const struct rxl *x, uint32_t off, uint8_t *buf, uint32_t n,
                    bool write)
{
    uint32_t base = 0;
    for (unsigned i = 0; i < x->n && n; i++) {
        const struct rpiece *p = &x->p[i];
        if (off < base + p->len) {
            uint32_t in = off - base;
            uint32_t take = p->len - in < n ? p->len - in : n;
            int rc = ref_piece(m, p, in, buf, take, write);
            if (rc) {
                /* The access failed here (VMMU_EROM, a failing callback):
                 * a watchpoint hit may still name the bytes it did not
                 * reach. */
                for (uint64_t left = n - take, at = p->va + in + take; left;) {
                    uint64_t part = 4096 - (at & 0xfff) < left ? 4096 - (at & 0xfff) : left;
                    note_done(m, at & lin_mask(m), part, write, true);
                    at += part;
                    left -= part;
                }
                return rc;
            }
            off += take;
            buf += take;
            n -= take;
        }
        base += p->len;
    }
    return 0;
}

/* An access that failed before it reached the translated bytes @x in
 * kind @write (the write of a locked access whose read failed, the
 * destination of an element whose source failed): how the library
 * records watchpoint hits for a failed access is its choice, so a hit
 * may name them. */
static void note_unreached(struct model *m, const struct rxl *x, bool write)
{
    for (unsigned i = 0; i < x->n; i++)
        note_done(m, x->p[i].va, x->p[i].len, write, true);
}

/* What the translated bytes hold now, without touching anything. */
static void ref_peek(struct model *m, const struct rxl *x, uint8_t *buf)
{
    for (unsigned i = 0; i < x->n; i++) {
        const struct rpiece *p = &x->p[i];
        uint64_t g = p->gpa;
        switch (p->kind) {
        case K_RAM:
            memcpy(buf, m->shadow + g, p->len);
            break;
        case K_ROM:
            memcpy(buf, m->rom_copy + (g - ROM_GPA), p->len);
            break;
        case K_ROMR:
            memcpy(buf, m->romr_copy + (g - ROMR_GPA), p->len);
            break;
        case K_HOLE:
            memset(buf, 0xff, p->len);
            break;
        default:
            memcpy(buf, m->dev_shadow[mmio_dev(p->kind)] + (g - mmio_base(mmio_dev(p->kind))),
                   p->len);
            break;
        }
        buf += p->len;
    }
}

/* ---- Checks ----------------------------------------------------------------------- */

static const char *vec_name(int v)
{
    switch (v) {
    case VMMU_X86_FAULT_NONE:
        return "no fault";
    case VMMU_X86_VEC_PF:
        return "#PF";
    case VMMU_X86_VEC_GP:
        return "#GP";
    case VMMU_X86_VEC_SS:
        return "#SS";
    case VMMU_X86_VEC_AC:
        return "#AC";
    case VMMU_ACCESS_STOP_WATCH:
        return "watch stop";
    default:
        return "vector?";
    }
}

/* The access returned @rc and @f; the model expects @want_rc and @want. */
static void check_outcome(struct model *m, int rc, const struct vmmu_x86_fault *f, int want_rc,
                          const struct vmmu_x86_fault *want)
{
    bool ok = rc == want_rc;
    /* (A failing device may return the same code as a failing page-in
     * handler: only the model's paging failure counts here.) */
    if (rc == VMMU_EPAGEDOUT || (is_po_rc(m, rc) && m->po_rc == rc))
        m->got_epagedout = true;
    if (ok && rc == 0) {
        ok = f->vector == want->vector;
        if (ok && want->vector != VMMU_X86_FAULT_NONE)
            ok = f->error_code == want->error_code;
        if (ok && want->vector == VMMU_X86_VEC_PF)
            ok = f->cr2 == want->cr2;
    }
    if (!ok)
        fail_msg("%s paging, %s [%s]: returned %s, %s error code %#x cr2 %#llx; the model "
                 "expects %s, %s error code %#x cr2 %#llx",
                 mode_names[m->mode], m->what, regs_str(m), vmmu_error_name(rc),
                 vec_name(f->vector), f->error_code, (unsigned long long)f->cr2,
                 vmmu_error_name(want_rc), vec_name(want->vector), want->error_code,
                 (unsigned long long)want->cr2);
    if (rc == 0 && want->vector != VMMU_X86_FAULT_NONE) {
        m->n.faults++;
        if (want->vector == VMMU_X86_VEC_AC)
            m->n.align_faults++;
        else if (want->vector != VMMU_X86_VEC_PF)
            m->n.noncanonical++;
    }
}

static unsigned largest_piece(uint64_t off, uint32_t left)
{
    unsigned size = 8;
    while (size > 1 && ((off & (size - 1)) || size > left))
        size >>= 1;
    return size;
}

/* The callbacks that ran are the expected runs of bytes, in order, each
 * split into ascending, naturally aligned pieces of 1, 2, 4 or 8 bytes,
 * each the largest that fits. */
static void check_mmio(struct model *m)
{
    if (m->log_overflow)
        fail_msg("%s: more than %u MMIO callbacks", m->what, NLOG_MAX);
    /* A callback that failed ends the operation: nothing after it runs. */
    for (unsigned i = 0; i + 1 < m->nlog; i++)
        if (m->log[i].failed)
            fail_msg("%s paging, %s [%s]: MMIO callback %u failed, yet %u more ran after it "
                     "(the next: %s of device %c at %#llx)",
                     mode_names[m->mode], m->what, regs_str(m), i, m->nlog - 1 - i,
                     m->log[i + 1].write ? "write" : "read", 'A' + m->log[i + 1].dev,
                     (unsigned long long)m->log[i + 1].off);
    unsigned k = 0;
    for (unsigned s = 0; s < m->nspan; s++) {
        const struct span *sp = &m->spans[s];
        uint64_t off = sp->off;
        uint32_t left = sp->n;
        const uint8_t *data = m->span_data + sp->data;
        while (left) {
            if (k == m->nlog)
                fail_msg("%s paging, %s: MMIO %s of device %c at %#llx (%u bytes left) never "
                         "reached the device",
                         mode_names[m->mode], m->what, sp->write ? "write" : "read",
                         'A' + sp->dev, (unsigned long long)off, left);
            const struct dev_op *op = &m->log[k++];
            uint64_t v = 0;
            memcpy(&v, data, op->size <= left && op->size <= 8 ? op->size : 1);
            if (op->failed && !op->write)
                v = op->value; /* a failed read gave no value */
            if (op->dev != sp->dev || op->write != sp->write || op->off != off ||
                !(op->size == 1 || op->size == 2 || op->size == 4 || op->size == 8) ||
                op->off % op->size || op->size > left || op->value != v)
                fail_msg("%s paging, %s: MMIO callback %u is a %u-byte %s of device %c at %#llx "
                         "value %#llx; expected a %s of device %c at %#llx (%u bytes left, "
                         "value %#llx)",
                         mode_names[m->mode], m->what, k - 1, op->size,
                         op->write ? "write" : "read", 'A' + op->dev,
                         (unsigned long long)op->off, (unsigned long long)op->value,
                         sp->write ? "write" : "read", 'A' + sp->dev, (unsigned long long)off,
                         left, (unsigned long long)v);
            if (op->size != largest_piece(off, left))
                fail_msg("%s paging, %s: MMIO callback %u is %u bytes at %#llx; the largest "
                         "naturally aligned piece there is %u bytes",
                         mode_names[m->mode], m->what, k - 1, op->size,
                         (unsigned long long)off, largest_piece(off, left));
            off += op->size;
            data += op->size;
            left -= op->size;
        }
    }
    if (k != m->nlog)
        fail_msg("%s paging, %s: %u MMIO callbacks, the model expects %u (first extra: %s of "
                 "device %c at %#llx)",
                 mode_names[m->mode], m->what, m->nlog, k, m->log[k].write ? "write" : "read",
                 'A' + m->log[k].dev, (unsigned long long)m->log[k].off);
    if (m->nlog) {
        m->n.mmio_ops++;
        m->n.callbacks += m->nlog;
        for (unsigned i = 0; i < m->nlog; i++)
            if (m->log[i].dev == 2) {
                m->n.dev_ops++;
                break;
            }
    }
}

/* Each paging-structure entry the operation's walks used holds what they
 * say: the A/D bits of completed accesses (levels[].new_value), perhaps
 * those of pages translated before a fault, and nothing else new. */
static void check_ad(struct model *m)
{
    struct ad_entry {
        uint64_t gpa, must, may;
        unsigned size;
    } e[NWALK_MAX * VMMU_X86_LEVELS_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nwalk; i++) {
        const struct wrec *r = &m->walks[i];
        for (unsigned l = 0; l < r->nlev; l++) {
            if (!r->lev[l].ram)
                continue; /* a PAE PDPTE register */
            uint64_t bits = r->lev[l].new_value ^ r->lev[l].value;
            assert_true((bits & ~(E_A | E_D)) == 0);
            unsigned j;
            for (j = 0; j < n && e[j].gpa != r->lev[l].gpa; j++)
                ;
            if (j == n)
                e[n++] = (struct ad_entry){r->lev[l].gpa, 0, 0, r->lev[l].size};
            if (r->must)
                e[j].must |= bits;
            else
                e[j].may |= bits;
        }
    }
    for (unsigned j = 0; j < n; j++) {
        uint64_t pre = 0, now = 0;
        memcpy(&pre, m->shadow + e[j].gpa, e[j].size);
        if (is_out(m, e[j].gpa)) {
            /* Out all along (nothing takes a page away during an
             * operation): nobody read or wrote the entry, so no walk that
             * had to set A/D bits in it completed. */
            if (e[j].must)
                fail_msg("%s paging, %s [%s]: entry at gpa %#llx (%#llx) needed A/D bits %#llx "
                         "from the access, yet its page-table page is still out",
                         mode_names[m->mode], m->what, regs_str(m),
                         (unsigned long long)e[j].gpa, (unsigned long long)pre,
                         (unsigned long long)e[j].must);
            continue;
        }
        memcpy(&now, m->t.env.mem + e[j].gpa, e[j].size);
        if ((now ^ pre) & ~(e[j].must | e[j].may) || (now & e[j].must) != e[j].must)
            fail_msg("%s paging, %s [%s]: entry at gpa %#llx went from %#llx to %#llx; the walks "
                     "set %#llx and may set %#llx",
                     mode_names[m->mode], m->what, regs_str(m), (unsigned long long)e[j].gpa,
                     (unsigned long long)pre, (unsigned long long)now,
                     (unsigned long long)e[j].must, (unsigned long long)e[j].may);
        memcpy(m->shadow + e[j].gpa, &now, e[j].size);
        m->n.ad_checked++;
        /* An A/D update is a write by the walker: dirty logging sees it. */
        if (now != pre)
            dirty_must(m, e[j].gpa);
        else if (e[j].must | e[j].may)
            dirty_may(m, e[j].gpa);
    }
}

/* The code handler ran once for each marked page a write reached after
 * passing its checks, and for nothing else (never for reads, fetches or
 * accesses that faulted). */
static void check_code(struct model *m)
{
    bool called[NDATA] = {false};
    if (m->ncalls > NCALLS_MAX)
        fail_msg("%s paging, %s: %u code handler calls", mode_names[m->mode], m->what, m->ncalls);
    for (unsigned k = 0; k < m->ncalls; k++) {
        int d = data_page(m->calls[k]);
        if (d < 0 || (m->calls[k] & 0xfff) || !m->code_exp[d])
            fail_msg("%s paging, %s [%s]: code handler called for gpa %#llx, which %s",
                     mode_names[m->mode], m->what, regs_str(m), (unsigned long long)m->calls[k],
                     d < 0 || (m->calls[k] & 0xfff) ? "is not a marked page"
                     : m->code[d] ? "the operation did not write"
                                  : "is not marked");
        if (called[d])
            fail_msg("%s paging, %s: code handler called twice for gpa %#llx",
                     mode_names[m->mode], m->what, (unsigned long long)m->calls[k]);
        called[d] = true;
    }
    for (unsigned d = 0; d < NDATA; d++) {
        if (!m->code_exp[d])
            continue;
        if (!called[d])
            fail_msg("%s paging, %s [%s]: the operation wrote code page %#llx without calling "
                     "the code handler",
                     mode_names[m->mode], m->what, regs_str(m),
                     (unsigned long long)(DATA_BASE + d * 4096ull));
        m->code[d] = false;
        m->n.code_calls++;
    }
}

/* Whether the operation read (or wrote) the linear byte @va. */
static bool byte_done(const struct model *m, uint64_t va, unsigned kind)
{
    for (unsigned i = 0; i < m->ndone; i++)
        if (m->done[i].kind == kind && lin_inside(m, va, 1, m->done[i].va, m->done[i].len))
            return true;
    return false;
}

/* The watchpoint hits of the operation.  A VMMU_WATCH_BEFORE watchpoint
 * that stopped it recorded one hit (for each side of a string move)
 * naming a byte range of the stopped access; every other hit names bytes
 * the operation read or wrote, of a kind its watchpoint watches, and
 * overlaps the watchpoint; each watchpoint (without BEFORE) over bytes
 * read or written has a hit of that kind.  How an access is cut into
 * hits (per page, per chunk of a string operation) is the library's
 * choice. */
static void check_watch(struct model *m)
{
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX + 1];
    uint64_t dropped = 0;
    int n = vmmu_watch_take_hits(V(m), h, VMMU_WATCH_HITS_MAX + 1, &dropped);
    assert_true(n >= 0 && n <= VMMU_WATCH_HITS_MAX);
    bool seen[NWATCH_MAX][2] = {{false}};
    bool used[2] = {false, false};
    unsigned nbefore = 0;
    for (int k = 0; k < n; k++) {
        unsigned i;
        for (i = 0; i < m->nwatch && m->watch[i].id != h[k].id; i++)
            ;
        unsigned kind = h[k].flags & VMMU_WATCH_ACCESS;
        bool before = (h[k].flags & VMMU_WATCH_BEFORE) != 0;
        const char *bad = NULL;
        if (i == m->nwatch)
            bad = "names no watchpoint";
        else if (kind == 0 || (h[k].flags & ~(VMMU_WATCH_ACCESS | VMMU_WATCH_BEFORE)))
            bad = "has bad flags";
        else if ((m->watch[i].flags & kind) != kind ||
                 before != !!(m->watch[i].flags & VMMU_WATCH_BEFORE))
            bad = "is of a kind its watchpoint does not report";
        else if (before && m->locked_op ? kind != (m->watch[i].flags & VMMU_WATCH_ACCESS)
                                        : kind == VMMU_WATCH_ACCESS)
            bad = "names the wrong kinds (a locked access stopped names every kind its "
                  "watchpoint watches, anything else one)";
        else if (!long_mode(m) && h[k].va > 0xffffffffull)
            bad = "names a linear address of more than 32 bits";
        else if (h[k].len == 0 || !watch_covers(m, &m->watch[i], h[k].va, h[k].len))
            bad = "does not overlap its watchpoint";
        else if (!before && m->insn_pended)
            bad = "was recorded by an instruction that ended with VMMU_EPENDING (access.h: "
                  "its re-execution records it)";
        if (!bad && before) {
            unsigned j;
            for (j = 0; j < m->nbexp; j++)
                if (!used[j] && (m->bexp[j].kinds & kind) &&
                    watch_covers(m, &m->watch[i], m->bexp[j].pva, m->bexp[j].plen) &&
                    lin_inside(m, h[k].va, h[k].len, m->bexp[j].va, m->bexp[j].len))
                    break;
            if (j == m->nbexp)
                bad = "is a stop the model did not expect there";
            else
                used[j] = true;
            nbefore++;
        } else if (!bad) {
            if (!byte_done(m, h[k].va, kind) || !byte_done(m, h[k].va + h[k].len - 1, kind))
                bad = "names bytes the operation did not access that way";
            else
                seen[i][kind == VMMU_WATCH_WRITE] = true;
        }
        if (bad)
            fail_msg("%s paging, %s [%s]: watch hit %d (id %u, flags %#x, va %#llx, len %u) %s",
                     mode_names[m->mode], m->what, regs_str(m), k, h[k].id, h[k].flags,
                     (unsigned long long)h[k].va, h[k].len, bad);
    }
    /* (A stop's hit comes last: more than VMMU_WATCH_HITS_MAX hits before
     * it drop it.) */
    if (dropped ? nbefore > m->nbexp : nbefore != m->nbexp)
        fail_msg("%s paging, %s [%s]: %u watchpoint stops recorded, the model expects %u",
                 mode_names[m->mode], m->what, regs_str(m), nbefore, m->nbexp);
    m->n.watch_stops += nbefore > 0;
    m->n.watch_hits += (unsigned long)n - nbefore;
    if (dropped || m->done_overflow)
        return; /* hits beyond VMMU_WATCH_HITS_MAX are counted, not kept */
    if (m->ref_failed || m->insn_pended)
        return; /* access.h does not say which hits an access that failed records */
    for (unsigned i = 0; i < m->nwatch; i++) {
        const struct mwatch *w = &m->watch[i];
        if (w->flags & VMMU_WATCH_BEFORE)
            continue;
        for (unsigned kw = 0; kw < 2; kw++) {
            unsigned kind = kw ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
            if (!(w->flags & kind) || seen[i][kw])
                continue;
            for (unsigned r = 0; r < m->ndone; r++)
                if (m->done[r].kind == kind && !m->done[r].may && watch_covers(m, w, m->done[r].va, m->done[r].len))
                    fail_msg("%s paging, %s [%s]: no %s hit of watchpoint %u (%#llx, %llu bytes); "
                             "the operation %s %#llx, %llu bytes",
                             mode_names[m->mode], m->what, regs_str(m), kw ? "write" : "read",
                             w->id, (unsigned long long)w->va, (unsigned long long)w->len,
                             kw ? "wrote" : "read", (unsigned long long)m->done[r].va,
                             (unsigned long long)m->done[r].len);
        }
    }
}

static void compare_bytes(struct model *m, const char *what, uint64_t base, const uint8_t *real,
                          const uint8_t *want, size_t n)
{
    if (memcmp(real, want, n) == 0)
        return;
    size_t i = 0;
    while (real[i] == want[i])
        i++;
    fail_msg("%s paging, %s [%s]: %s at %#llx holds %#x, the model %#x", mode_names[m->mode],
             m->what, regs_str(m), what, (unsigned long long)(base + i), real[i], want[i]);
}

/* Pages [base, base + n) of guest RAM equal the model's copy; a page that
 * is out is compared once it is back (its host memory is a hole then,
 * PROT_NONE in paranoid mode). */
static void compare_ram(struct model *m, const char *what, uint64_t base, uint64_t n)
{
    for (uint64_t g = base; g < base + n; g += 4096)
        if (!is_out(m, g))
            compare_bytes(m, what, g, m->t.env.mem + g, m->shadow + g, 4096);
}

/* Everything the guest or the host can see equals the model's copy. */
static void compare_memory(struct model *m, bool all)
{
    compare_ram(m, "a page table", 0, m->t.env.next);
    compare_ram(m, "guest RAM", DATA_BASE, NDATA * 4096);
    compare_ram(m, "guest RAM", BIG_TAIL, RAM_SIZE - BIG_TAIL);
    if (all) {
        /* The rest of RAM is zero in the model.  A page of the memfd that
         * is not in memory reads as zero (never touched: the pager takes
         * none of these); reading it would only allocate it. */
        static unsigned char in[RAM_PAGES];
        assert_int_equal(mincore(m->t.env.mem, RAM_SIZE, in), 0);
        for (uint64_t g = m->t.env.next; g < RAM_SIZE; g += 4096)
            if ((g < DATA_BASE || g >= DATA_BASE + NDATA * 4096) && g < BIG_TAIL &&
                (in[g / 4096] & 1))
                compare_bytes(m, "guest RAM", g, m->t.env.mem + g, m->shadow + g, 4096);
    }
    compare_bytes(m, "ROM", ROM_GPA, m->rom, m->rom_copy, ROM_PAGES * 4096);
    compare_bytes(m, "reporting ROM", ROMR_GPA, m->romr, m->romr_copy, 4096);
    compare_bytes(m, "device A", MMIO_A_GPA, m->dev[0].mem, m->dev_shadow[0],
                  MMIO_A_PAGES * 4096);
    compare_bytes(m, "device B", MMIO_B_GPA, m->dev[1].mem, m->dev_shadow[1], 4096);
    compare_bytes(m, "the device model's page", DM_GPA, m->dev[2].mem, m->dev_shadow[2], 4096);
}

/* Pages that came back during the operation (@op) or a register write
 * (whose PDPTE load may page in the PDPT): the model notes they are in.
 * None may when nothing can bring them (no page-in handler, one that
 * fails) or nothing may (a non-faulting probe: "no page-in", access.h);
 * and a page whose bytes the operation read or wrote is back. */
static void out_sync(struct model *m, bool op)
{
    for (unsigned w = 0; w < RAM_PAGES / 64; w++)
        for (uint64_t bits = m->out[w]; bits; bits &= bits - 1) {
            uint64_t g = (w * 64ull + (unsigned)__builtin_ctzll(bits)) * 4096;
            if (page_state(m, g) & VMMU_PAGE_PAGED_OUT)
                continue;
            if (op && m->no_pagein)
                fail_msg("%s paging, %s [%s]: page %#llx came back in, although %s",
                         mode_names[m->mode], m->what, regs_str(m), (unsigned long long)g,
                         m->pi == PI_NONE      ? "no page-in handler is registered"
                         : m->pi == PI_FAILING ? "the page-in handler fails"
                                               : "a non-faulting probe pages nothing in");
            put_bit(m->out, g, false);
            put_bit(m->back, g, true);
            if (!op)
                continue;
            if (g < DATA_BASE)
                m->n.in_tables++;
            else
                m->n.in_data++;
        }
    for (unsigned i = 0; op && i < m->ntouched; i++)
        if (is_out(m, m->touched[i]))
            fail_msg("%s paging, %s [%s]: the operation read or wrote page %#llx, which is "
                     "still out",
                     mode_names[m->mode], m->what, regs_str(m),
                     (unsigned long long)m->touched[i]);
}

static void op_end(struct model *m)
{
    if (m->cb_err[0])
        fail_msg("%s paging, %s [%s]: %s", mode_names[m->mode], m->what, regs_str(m), m->cb_err);
    out_sync(m, true);
    if (m->got_epagedout) {
        /* p2m.h: with a handler registered, a page that is out is asked
         * of it; its code says it could not bring the page back. */
        if (m->pi == PI_FAILING && m->pi_calls == 0)
            fail_msg("%s paging, %s [%s]: a paging error without asking the page-in handler",
                     mode_names[m->mode], m->what, regs_str(m));
        if (m->pi != PI_PAGER)
            m->n.epagedout[m->pi - 1]++;
    }
    check_mmio(m);
    if (m->ref_failed == VMMU_EMMIO)
        m->n.mmio_failed++;
    else if (m->ref_failed == VMMU_EPENDING)
        m->n.dev_pending++;
    else if (m->ref_failed)
        m->n.dev_failed++;
    check_code(m);
    check_watch(m);
    check_ad(m);
    compare_memory(m, false);
    m->nofault_op = false;
    m->n.unpaged += m->paging_off;
    m->n.ops++;
    m->n.crossings += m->crossed;
}

/* One access in four is an instruction of its own for the replay latch,
 * when what the latch records fits in it with room to spare (each read
 * piece and each MMIO piece is an event; beyond its capacity an access
 * fails with VMMU_EOVERFLOW, as access.h says). */
static bool insn_start(struct model *m)
{
    if (rn(m, 4) || m->latch_events > VMMU_LATCH_EVENTS / 2 ||
        m->latch_bytes > VMMU_LATCH_BYTES / 2)
        return false;
    assert_int_equal(vmmu_insn_begin(V(m)), 0);
    m->n.in_insn++;
    return true;
}

/* An instruction that ends with VMMU_EPENDING keeps the latch for its
 * re-execution; the stream never re-executes (replays are not modelled),
 * so it drops the latch as a caller giving up on the instruction does. */
static void insn_stop(struct model *m, bool insn, int rc)
{
    if (!insn)
        return;
    assert_int_equal(vmmu_insn_end(V(m), rc), 0);
    m->insn_pended = rc == VMMU_EPENDING;
    if (rc == VMMU_EPENDING) {
        struct vmmu_latch_stats st;
        assert_int_equal(vmmu_latch_discard(V(m)), 0);
        assert_int_equal(vmmu_latch_stats(V(m), &st), 0);
        assert_int_equal(st.pass, 0);
    }
}

/* ---- Choosing accesses -------------------------------------------------------------- */

static uint32_t pick_len(struct model *m)
{
    switch (rn(m, 8)) {
    case 0:
        return 1 + rn(m, 16);
    case 1:
        return 1 + 2 * rn(m, 150); /* odd */
    case 2:
        return 1 + rn(m, LEN_MAX); /* up to a whole page: two pieces */
    default:
        return 1 + rn(m, 300);
    }
}

/* The first byte of a page of a window (with paging off, of a physical run). */
static uint64_t pick_page(struct model *m)
{
    if (m->paging_off) {
        unsigned i = rn(m, m->npwin);
        return m->pwin_va[i] + 4096ull * rn(m, m->pwin_n[i]);
    }
    const struct window *w = &m->win[rn(m, m->nwin)];
    return m->vp[w->first + rn(m, w->n)].va;
}

/* A linear address in a window, for @len bytes: anywhere, aligned to
 * @align, or ending in the next page. */
static uint64_t pick_va(struct model *m, uint32_t len, unsigned align)
{
    uint64_t va = pick_page(m);
    switch (rn(m, 4)) {
    case 0:
        va += rn(m, 4096);
        break;
    case 1: /* crosses into the next page */
        va += len > 1 ? 4096 - 1 - rn(m, len - 1 < 4095 ? len - 1 : 4095) : rn(m, 4096);
        break;
    default:
        va += align * rn(m, 4096 / align);
        break;
    }
    if (rn(m, 40) == 0) {
        /* Out of canonical form in IA-32e paging; above 4 GiB elsewhere,
         * where only bits 31:0 count. */
        static const uint64_t twist[] = {1ull << 47, 1ull << 56, 1ull << 60, 0xffff000000000000ull};
        va ^= long_mode(m) ? twist[rn(m, 4)] : rnd(m) << 32;
    }
    return va;
}

static unsigned pick_read_access(struct model *m)
{
    switch (rn(m, 10)) {
    case 0:
    case 1:
        return VMMU_X86_ACC_FETCH;
    case 2:
        return VMMU_X86_ACC_IMPLICIT;
    case 3:
        return VMMU_X86_ACC_STACK;
    default:
        return 0;
    }
}

static unsigned pick_write_access(struct model *m)
{
    switch (rn(m, 8)) {
    case 0:
        return VMMU_X86_ACC_IMPLICIT;
    case 1:
        return VMMU_X86_ACC_STACK;
    default:
        return 0;
    }
}

static void fill(struct model *m, uint8_t *buf, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        buf[i] = (uint8_t)rnd(m);
}

/* ---- Operations ---------------------------------------------------------------------- */

static uint64_t le64(const uint8_t *b)
{
    uint64_t v;
    memcpy(&v, b, 8);
    return v;
}

static const struct vmmu_x86_fault no_fault = {VMMU_X86_FAULT_NONE, 0, 0};

/* SDM 6.15 (#AC): with CR0.AM and EFLAGS.AC set, a data or stack access
 * at CPL 3 of a 2-, 4- or 8-byte operand that is not naturally aligned
 * raises #AC(0) before anything is translated; fetches and implicit
 * supervisor accesses are never checked, and an operand out of canonical
 * form raises #GP or #SS first.  Whether the access of @size bytes at @va
 * does; if so @f is its fault. */
static bool ref_align_fault(struct model *m, uint64_t va, unsigned size, unsigned access,
                            struct vmmu_x86_fault *f)
{
    const struct vmmu_x86_paging *p = pg(m);
    if ((size != 2 && size != 4 && size != 8) || !(va & (size - 1)) ||
        (access & (VMMU_X86_ACC_FETCH | VMMU_X86_ACC_IMPLICIT)) || p->cpl != 3 ||
        !(p->cr0 & R_CR0_AM) || !(p->rflags & R_RFLAGS_AC))
        return false;
    if (!canon(m, va) || !canon(m, va + size - 1))
        return false;
    f->vector = VMMU_X86_VEC_AC;
    f->error_code = 0;
    f->cr2 = 0;
    po_fault(m);
    return true;
}

/* A read or a write of len bytes: vmmu_access_read/write, or the typed
 * load/store of 1, 2, 4, 8 or 16 bytes. */
static void op_rw(struct model *m, bool write, bool typed)
{
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    uint32_t len = typed ? sizes[rn(m, 5)] : pick_len(m);
    uint64_t va = pick_va(m, len, typed ? len : 1);
    unsigned access = write ? pick_write_access(m) : pick_read_access(m);
    static uint8_t data[LEN_MAX], want[LEN_MAX], got[LEN_MAX];
    if (write)
        fill(m, data, len);
    op_begin(m);
    pick_failure(m);
    snprintf(m->what, sizeof(m->what), "%s of %u bytes at %#llx, access %#x%s",
             typed ? (write ? "store" : "load") : (write ? "write" : "read"), len,
             (unsigned long long)va, access, fail_str(m));

    struct vmmu_x86_fault wf = no_fault, f;
    struct rxl x;
    int want_rc = 0;
    if (typed && ref_align_fault(m, va, len, access, &wf)) {
        /* #AC: nothing translated, nothing done */
    } else if (ref_xlate(m, va, len, write ? access | VMMU_X86_ACC_WRITE : access, &x, &wf) &&
               !po_data_out(m)) {
        want_rc = write ? ref_span(m, &x, 0, data, len, true) : ref_span(m, &x, 0, want, len, false);
        ref_done(m, &x);
    } else {
        want_rc = m->po_rc;
    }

    memset(got, 0xa5, len);
    bool insn = insn_start(m);
    int rc;
    if (write)
        rc = typed ? vmmu_access_store(V(m), va, len, access, data, &f)
                   : vmmu_access_write(V(m), va, data, len, access, &f);
    else
        rc = typed ? vmmu_access_load(V(m), va, len, access, got, &f)
                   : vmmu_access_read(V(m), va, got, len, access, &f);
    insn_stop(m, insn, rc);
    po_settle(m, rc, &f, false, &want_rc, &wf);
    check_outcome(m, rc, &f, want_rc, &wf);
    if (!write && rc == 0 && wf.vector == VMMU_X86_FAULT_NONE && memcmp(got, want, len) != 0) {
        uint32_t i = 0;
        while (got[i] == want[i])
            i++;
        fail_msg("%s paging, %s [%s]: byte %u read %#x, the model %#x (%s at gpa %#llx)",
                 mode_names[m->mode], m->what, regs_str(m), i, got[i], want[i],
                 kind_name(x.p[i < x.p[0].len ? 0 : 1].kind),
                 (unsigned long long)(i < x.p[0].len ? x.p[0].gpa + i
                                                     : x.p[1].gpa + (i - x.p[0].len)));
    }
    op_end(m);
}

static uint64_t rmw_apply(enum vmmu_rmw_op op, uint64_t old, uint64_t operand)
{
    switch (op) {
    case VMMU_RMW_XCHG:
        return operand;
    case VMMU_RMW_ADD:
        return old + operand;
    case VMMU_RMW_AND:
        return old & operand;
    case VMMU_RMW_OR:
        return old | operand;
    default:
        return old ^ operand;
    }
}

/* Whether a locked access of @size bytes at @va is a split lock: it
 * crosses a page, or no aligned 8- or 16-byte word holds it. */
static bool split_lock(uint64_t va, unsigned size)
{
    return (va & 0xfff) + size > 4096 || ((va & 7) + size > 8 && (va & 15) + size > 16);
}


/* LOCK XCHG/XADD/AND/OR/XOR: a write's translation, the old value back,
 * old OP operand stored. */
static void op_rmw(struct model *m)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    unsigned size = sizes[rn(m, 4)];
    enum vmmu_rmw_op op = (enum vmmu_rmw_op)rn(m, 5);
    uint64_t operand = rnd(m);
    uint64_t va = pick_va(m, size, size);
    unsigned access = pick_write_access(m);
    op_begin(m);
    pick_failure(m);
    m->locked_op = true;
    snprintf(m->what, sizeof(m->what),
             "rmw op %d of %u bytes at %#llx operand %#llx, access %#x%s", (int)op, size,
             (unsigned long long)va, (unsigned long long)operand, access, fail_str(m));

    struct vmmu_x86_fault wf = no_fault, f;
    struct rxl x;
    int want_rc = 0;
    uint64_t want_old = 0;
    if (ref_align_fault(m, va, size, access, &wf)) {
        /* #AC: nothing translated, nothing done */
    } else if (!ref_xlate(m, va, size, access | VMMU_X86_ACC_WRITE, &x, &wf) || po_data_out(m)) {
        want_rc = m->po_rc;
    } else {
        uint8_t b[8];
        /* On MMIO every piece is read, then every piece written: a
         * read that fails writes nothing. */
        want_rc = ref_span(m, &x, 0, (uint8_t *)&want_old, size, false);
        uint64_t nv = rmw_apply(op, want_old, operand);
        memcpy(b, &nv, 8);
        if (!want_rc)
            want_rc = ref_span(m, &x, 0, b, size, true);
        else
            note_unreached(m, &x, true);
        ref_done(m, &x);
    }
    bool insn = insn_start(m);
    uint64_t old = 0xdeadbeefdeadbeefull;
    int rc = vmmu_access_rmw(V(m), va, size, op, operand, &old, access, &f);
    insn_stop(m, insn, rc);
    po_settle(m, rc, &f, false, &want_rc, &wf);
    check_outcome(m, rc, &f, want_rc, &wf);
    if (rc == 0 && wf.vector == VMMU_X86_FAULT_NONE && old != want_old)
        fail_msg("%s paging, %s [%s]: old value %#llx, the model %#llx", mode_names[m->mode],
                 m->what, regs_str(m), (unsigned long long)old, (unsigned long long)want_old);
    m->n.locked++;
    m->n.split_locks += split_lock(va, size) && rc == 0 && wf.vector == VMMU_X86_FAULT_NONE;
    op_end(m);
}

/* CMPXCHG (1, 2, 4, 8 bytes), CMPXCHG8B/16B: faults as a write whatever
 * the comparison gives; a misaligned CMPXCHG16B raises #GP(0). */
static void op_cmpxchg(struct model *m)
{
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    unsigned size = sizes[rn(m, 5)];
    uint64_t va = pick_va(m, size, size);
    if (size == 16 && rn(m, 4))
        va &= ~15ull;
    unsigned access = pick_write_access(m);
    uint8_t expected[16], desired[16], observed[16], cur[16];
    fill(m, expected, size);
    fill(m, desired, size);
    op_begin(m);
    pick_failure(m);
    m->locked_op = true;

    struct vmmu_x86_fault wf = no_fault, f;
    struct rxl x;
    int want_rc = 0;
    bool want_swap = false;
    if (size == 16 && (va & 15)) {
        wf.vector = VMMU_X86_VEC_GP;
    } else if (ref_align_fault(m, va, size, access, &wf)) {
        /* #AC: nothing translated, nothing done */
    } else if (!ref_xlate(m, va, size, access | VMMU_X86_ACC_WRITE, &x, &wf) ||
               po_data_out(m)) {
        want_rc = m->po_rc;
    } else {
        ref_peek(m, &x, cur);
        if (rn(m, 2))
            memcpy(expected, cur, size); /* the compare succeeds */
        else if (rn(m, 2)) {
            memcpy(expected, cur, size); /* it fails narrowly */
            expected[rn(m, size)] ^= 1;
        }
        want_rc = ref_span(m, &x, 0, cur, size, false);
        want_swap = memcmp(cur, expected, size) == 0;
        if (want_rc)
            note_unreached(m, &x, true); /* a read that failed: no write */
        else if (want_swap)
            want_rc = ref_span(m, &x, 0, desired, size, true);
        else /* SDM CMPXCHG: a write cycle whatever the result */
            want_rc = ref_span(m, &x, 0, cur, size, true);
        ref_done(m, &x);
    }
    snprintf(m->what, sizeof(m->what), "cmpxchg of %u bytes at %#llx (%s), access %#x%s", size,
             (unsigned long long)va, want_swap ? "equal" : "not equal", access, fail_str(m));
    bool insn = insn_start(m);
    bool swapped = !want_swap;
    memset(observed, 0xa5, sizeof(observed));
    int rc = vmmu_access_cmpxchg(V(m), va, size, expected, desired, observed, &swapped, access, &f);
    insn_stop(m, insn, rc);
    po_settle(m, rc, &f, false, &want_rc, &wf);
    check_outcome(m, rc, &f, want_rc, &wf);
    if (rc == 0 && wf.vector == VMMU_X86_FAULT_NONE &&
        (swapped != want_swap || memcmp(observed, cur, size) != 0))
        fail_msg("%s paging, %s [%s]: swapped %d, observed %#llx (low 8 bytes); the model: %d, "
                 "%#llx",
                 mode_names[m->mode], m->what, regs_str(m), swapped, (unsigned long long)le64(observed),
                 want_swap, (unsigned long long)le64(cur));
    m->n.locked++;
    m->n.split_locks += split_lock(va, size) && rc == 0 && wf.vector == VMMU_X86_FAULT_NONE;
    op_end(m);
}

/* What the descriptor of a prepared access must say about piece @p. */
static void check_page(struct model *m, const struct vmmu_prepared_page *pp,
                       const struct rpiece *p, bool write)
{
    static const enum vmmu_mem_type types[] = {VMMU_MEM_RAM,  VMMU_MEM_ROM,    VMMU_MEM_ROM,
                                               VMMU_MEM_MMIO, VMMU_MEM_MMIO,   VMMU_MEM_DEVICE,
                                               VMMU_MEM_HOLE};
    uint32_t ids[] = {m->t.env.ram_id, m->rom_id,    m->romr_id, m->mmio_id[0],
                      m->mmio_id[1],   m->dev_id,    0};
    uint8_t *host = NULL;
    if (p->kind == K_RAM)
        host = m->t.env.mem + p->gpa;
    else if (p->kind == K_ROM && !write)
        host = m->rom + (p->gpa - ROM_GPA);
    else if (p->kind == K_ROMR && !write)
        host = m->romr + (p->gpa - ROMR_GPA);
    if (pp->va != p->va || pp->gpa != p->gpa || pp->len != p->len || pp->type != types[p->kind] ||
        pp->host != host || pp->region_id != ids[p->kind])
        fail_msg("%s paging, %s [%s]: prepared page va %#llx gpa %#llx len %u type %d host %p "
                 "region %u; the model: va %#llx gpa %#llx len %u type %d host %p region %u",
                 mode_names[m->mode], m->what, regs_str(m), (unsigned long long)pp->va,
                 (unsigned long long)pp->gpa, pp->len, (int)pp->type, (void *)pp->host,
                 pp->region_id, (unsigned long long)p->va, (unsigned long long)p->gpa, p->len,
                 (int)types[p->kind], (void *)host, ids[p->kind]);
}

/* vmmu_access_prepare(), then one of vmmu_prepared_read/write/set on part
 * of it. */
static void op_prepared(struct model *m)
{
    uint32_t len = pick_len(m);
    uint64_t va = pick_va(m, len, 1);
    unsigned access = (unsigned[]){0, VMMU_X86_ACC_WRITE, VMMU_X86_ACC_WRITE,
                                   VMMU_X86_ACC_FETCH}[rn(m, 4)];
    if (access != VMMU_X86_ACC_FETCH && rn(m, 6) == 0)
        access |= VMMU_X86_ACC_IMPLICIT;
    bool write = access & VMMU_X86_ACC_WRITE;
    unsigned what = write ? rn(m, 3) : 0; /* 0 read, 1 write, 2 set */
    uint32_t off = rn(m, len), n = 1 + rn(m, len - off);
    unsigned elem = 1u << rn(m, 4);
    uint64_t value = rnd(m);
    if (what == 2) {
        if (len - off < elem)
            elem = 1;
        n = elem * (1 + rn(m, (len - off) / elem));
    }
    static uint8_t data[LEN_MAX], want[LEN_MAX], got[LEN_MAX];
    fill(m, data, n);
    op_begin(m);
    pick_failure(m);
    snprintf(m->what, sizeof(m->what),
             "prepare %u bytes at %#llx access %#x, then %s %u bytes at offset %u (elem %u)%s",
             len, (unsigned long long)va, access,
             (const char *[]){"prepared_read", "prepared_write", "prepared_set"}[what], n, off,
             elem, fail_str(m));

    struct vmmu_x86_fault wf = no_fault, f;
    struct rxl x;
    bool ok = ref_xlate(m, va, len, access, &x, &wf) && !po_data_out(m);
    int want_rc = 0, want_prep = m->po_rc;
    if (ok) {
        ref_done(m, &x);
        if (what == 0) {
            want_rc = ref_span(m, &x, off, want, n, false);
        } else if (what == 1) {
            want_rc = ref_span(m, &x, off, data, n, true);
        } else {
            for (uint32_t i = 0; i < n && !want_rc; i += elem)
                want_rc = ref_span(m, &x, off + i, (uint8_t *)&value, elem, true);
        }
    }

    bool insn = insn_start(m);
    struct vmmu_prepared p;
    int rc = vmmu_access_prepare(V(m), va, len, access, &p, &f);
    po_settle(m, rc, &f, false, &want_prep, &wf);
    check_outcome(m, rc, &f, want_prep, &wf);
    if (ok) {
        if (p.npages != x.n || p.len != len || p.va != x.p[0].va)
            fail_msg("%s paging, %s: prepared %u pages, %u bytes at %#llx", mode_names[m->mode],
                     m->what, p.npages, p.len, (unsigned long long)p.va);
        for (unsigned i = 0; i < x.n; i++)
            check_page(m, &p.page[i], &x.p[i], write);
        memset(got, 0xa5, n);
        if (what == 0)
            rc = vmmu_prepared_read(&p, off, got, n);
        else if (what == 1)
            rc = vmmu_prepared_write(&p, off, data, n);
        else
            rc = vmmu_prepared_set(&p, off, value, elem, n);
        check_outcome(m, rc, &no_fault, want_rc, &no_fault);
        if (what == 0 && rc == 0 && memcmp(got, want, n) != 0)
            fail_msg("%s paging, %s [%s]: the read differs from the model", mode_names[m->mode],
                     m->what, regs_str(m));
    }
    insn_stop(m, insn, rc);
    m->n.prepared++;
    op_end(m);
}

/* A linear address for the first element of a string operation: anywhere
 * in a window, or near a page boundary in the direction of travel. */
static uint64_t pick_rep_va(struct model *m, unsigned elem, uint64_t count, bool backward)
{
    uint64_t span = count * elem + elem;
    if (rn(m, 2))
        return pick_va(m, elem, elem);
    uint64_t va = pick_page(m);
    if (backward)
        return va + rn(m, (unsigned)span);
    return va + 4096 - 1 - rn(m, (unsigned)span);
}

/* Whether the elements of a string operation at (@s1, @d1) and (@s2, @d2)
 * may be moved by one chunk: chunks stay in one page on every side, so
 * neither element crosses a page and both share their pages. */
static bool same_chunk(const struct model *m, bool movs, unsigned elem, uint64_t s1, uint64_t d1,
                       uint64_t s2, uint64_t d2)
{
    uint64_t mask = lin_mask(m);
    const uint64_t a[4] = {d1, d2, s1, s2};
    for (unsigned i = 0; i < (movs ? 4u : 2u); i++)
        if (((a[i] & mask) >> 12) != (((a[i] + elem - 1) & mask) >> 12))
            return false;
    return ((d1 & mask) >> 12) == ((d2 & mask) >> 12) &&
           (!movs || ((s1 & mask) >> 12) == ((s2 & mask) >> 12));
}

/* Whether a piece of @x is MMIO or a device model's page. */
static bool rxl_reaches_device(const struct rxl *x)
{
    for (unsigned i = 0; i < x->n; i++)
        if (x->p[i].kind == K_MMIO_A || x->p[i].kind == K_MMIO_B || x->p[i].kind == K_DEV)
            return true;
    return false;
}

/* Whether @x reaches a device model's page (a write there may pend). */
static bool rxl_may_pend(const struct rxl *x)
{
    for (unsigned i = 0; i < x->n; i++)
        if (x->p[i].kind == K_DEV)
            return true;
    return false;
}

/* REP MOVS / REP STOS: element by element up to the budget; at a fault
 * the registers name the faulting element.  A callback that fails ends
 * the call at its element too: the registers name it and every element
 * before it is complete (docs/access.md: where a side is MMIO or a device
 * page the registers follow each element).  What comes back then:
 *  - nothing done in this call: the failure's code;
 *  - VMMU_EPENDING after elements completed: 0 with the progress
 *    (docs/access.md: a REP step that completed elements returns with
 *    progress, never VMMU_EPENDING);
 *  - any code after an earlier chunk completed: 0 with the progress
 *    (docs/access.md: the failure comes back when the caller resumes);
 *  - a chunk that fails after some of its own elements completed: the
 *    documents do not say, so 0 and the code are both taken. */
static void op_rep(struct model *m, bool movs)
{
    unsigned elem = 1u << rn(m, 4);
    uint64_t count = rn(m, 4) == 0 ? rn(m, 4) : rn(m, 40);
    uint64_t budget = rn(m, 4) == 0 ? rn(m, (unsigned)count + 1) : (rn(m, 2) ? count : ~0ull);
    bool backward = rn(m, 2);
    unsigned src_access = movs && rn(m, 8) == 0 ? VMMU_X86_ACC_IMPLICIT : 0;
    struct vmmu_rep r = {.elem = elem, .count = count, .backward = backward, .value = rnd(m)};
    r.dst = pick_rep_va(m, elem, count, backward);
    if (movs)
        r.src = rn(m, 8) == 0 ? r.dst + (rn(m, 2) ? elem : -(uint64_t)elem) - 1 + rn(m, 3)
                              : pick_rep_va(m, elem, count, backward);
    op_begin(m);
    pick_failure(m);
    snprintf(m->what, sizeof(m->what),
             "rep %s elem %u count %llu budget %llu %s src %#llx dst %#llx src access %#x%s",
             movs ? "movs" : "stos", elem, (unsigned long long)count,
             (unsigned long long)budget, backward ? "backward" : "forward",
             (unsigned long long)r.src, (unsigned long long)r.dst, src_access, fail_str(m));

    struct vmmu_rep want = r;
    struct vmmu_x86_fault wf = no_fault, f;
    int want_rc = 0, either_rc = 0;
    uint64_t done = 0;
    while (want.count && done < budget) {
        struct rxl xs, xd;
        uint8_t tmp[8];
        /* Each side of an element is checked as a single access is
         * (access.h), the source first: translated, then stopped by a
         * VMMU_WATCH_BEFORE watchpoint over its bytes, so a fault on the
         * element comes before a stop there.  Each element's sides are
         * one access for paging errors. */
        m->po_pending = m->po_either = false;
        m->po_rc = 0;
        bool src_fault = movs && (ref_align_fault(m, want.src, elem, src_access, &wf) ||
                                  !ref_xlate(m, want.src, elem, src_access, &xs, &wf));
        bool xl = !src_fault && !ref_align_fault(m, want.dst, elem, VMMU_X86_ACC_WRITE, &wf) &&
                  ref_xlate(m, want.dst, elem, VMMU_X86_ACC_WRITE, &xd, &wf);
        if (!xl && !m->po_rc)
            break;
        if (m->po_rc || po_data_out(m)) {
            /* A page the element needs is out and cannot come back: it
             * fails before it moves anything, like a failing callback at
             * its first piece. */
            if (!done)
                want_rc = m->po_rc;
            break;
        }
        /* Into a device model's page, and from a device to a device
         * (MMIO or a device model's page on both sides), an element is
         * the first of its call: the call stops before it once elements
         * completed (access.h). */
        if (movs && done &&
            (rxl_may_pend(&xd) || (rxl_reaches_device(&xs) && rxl_reaches_device(&xd)))) {
            /* Both sides were prepared before the stop: both count as
             * translated, as for an element that fails. */
            ref_done(m, &xs);
            ref_done(m, &xd);
            break;
        }
        /* The element's source is read, then its destination written; a
         * source read that fails writes nothing.  Both sides were
         * prepared, so both count as translated. */
        int rc = 0;
        if (movs)
            rc = ref_span(m, &xs, 0, tmp, elem, false);
        else
            memcpy(tmp, &want.value, elem);
        if (!rc)
            rc = ref_span(m, &xd, 0, tmp, elem, true);
        else
            note_unreached(m, &xd, true);
        if (movs)
            ref_done(m, &xs);
        ref_done(m, &xd);
        if (rc < 0) {
            if (!done)
                want_rc = rc;
            else if (rc != VMMU_EPENDING &&
                     same_chunk(m, movs, elem, r.src, r.dst, want.src, want.dst))
                either_rc = rc;
            break;
        }
        want.src = backward ? want.src - elem : want.src + elem;
        want.dst = backward ? want.dst - elem : want.dst + elem;
        want.count--;
        done++;
    }
    if (!movs)
        want.src = r.src;

    bool insn = insn_start(m);
    int rc = movs ? vmmu_access_rep_movs(V(m), &r, budget, src_access, &f)
                  : vmmu_access_rep_stos(V(m), &r, budget, &f);
    insn_stop(m, insn, rc);
    if (either_rc && rc == either_rc)
        want_rc = rc;
    po_settle(m, rc, &f, done > 0, &want_rc, &wf);
    check_outcome(m, rc, &f, want_rc, &wf);
    if (done && m->ref_failed) {
        m->n.rep_failed_partway++;
        if (either_rc)
            m->n.rep_chunk_failed[rc != 0]++;
    }
    if (r.dst != want.dst || r.src != want.src || r.count != want.count)
        fail_msg("%s paging, %s [%s]: stopped at src %#llx dst %#llx count %llu; the model at "
                 "src %#llx dst %#llx count %llu",
                 mode_names[m->mode], m->what, regs_str(m), (unsigned long long)r.src,
                 (unsigned long long)r.dst, (unsigned long long)r.count,
                 (unsigned long long)want.src, (unsigned long long)want.dst,
                 (unsigned long long)want.count);
    m->n.rep_ops++;
    if (done && wf.vector != VMMU_X86_FAULT_NONE)
        m->n.rep_partial++;
    op_end(m);
}

/* ---- Probes ----------------------------------------------------------------------------- */

/* What a probe of @size bytes at @va (inside one page) must answer, from
 * the state now. */
struct pref {
    struct vmmu_x86_fault fault; /* the fault the access raises, or vector NONE */
    uint64_t gpa;
    enum kind kind;
    uint8_t *host;   /* where the bytes are in host memory, if they may be accessed there */
    unsigned need;   /* VMMU_PROBE_* reasons that hold (NOTDIRTY aside) */
    unsigned maybe;  /* reasons a probe may give besides */
    bool notdirty;   /* the access would set an A or D bit, or a dirty-log bit */
    bool stop;       /* a VMMU_WATCH_BEFORE watchpoint of its kind covers it */
    bool page_watched; /* a watchpoint of its kind is on its page */
    unsigned walk;   /* its walk in m->walks, or ~0u */
    bool po_table;   /* its walk reads an entry in a page that is out */
    bool po_data;    /* no fault, and its bytes are in a RAM page that is out */
};

/* The watchpoint kind of an access: fetches count as reads. */
static unsigned watch_kind(unsigned access)
{
    return (access & VMMU_X86_ACC_WRITE) ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
}

/* The reference's answer for a probe.  @record keeps the walk in
 * m->walks for the A/D check (a probe that may set A/D bits). */
static void ref_probe(struct model *m, uint64_t va, unsigned size, unsigned access, bool record,
                      struct pref *r)
{
    bool write = (access & VMMU_X86_ACC_WRITE) != 0;
    memset(r, 0, sizeof(*r));
    r->fault = no_fault;
    r->walk = ~0u;
    va &= lin_mask(m);
    /* SDM 3.3.7.1: canonical form before paging. */
    if (long_mode(m) && (!canon(m, va) || !canon(m, va + size - 1))) {
        r->fault.vector = (access & VMMU_X86_ACC_STACK) ? VMMU_X86_VEC_SS : VMMU_X86_VEC_GP;
        return;
    }
    if (m->paging_off) {
        r->gpa = va;
    } else {
        struct vmmu_x86_walk w;
        if (record) {
            r->walk = ref_walk(m, va, access, &w);
        } else {
            assert_int_equal(vmmu_x86_walk_peek(ref_paging(m), va, access, &w), 0);
        }
        r->po_table = walk_reads_out(m, &w);
        if (!w.ok) {
            r->fault = w.fault;
            return;
        }
        r->gpa = w.gpa;
        for (unsigned l = 0; l < w.nlevels; l++)
            if (w.levels[l].new_value != w.levels[l].value)
                r->notdirty = true;
    }
    r->kind = kind_of(r->gpa);
    r->po_data = r->kind == K_RAM && is_out(m, r->gpa);
    switch (r->kind) {
    case K_RAM:
        r->host = m->t.env.mem + r->gpa;
        break;
    case K_ROM:
    case K_ROMR:
        if (write)
            r->need |= VMMU_PROBE_MMIO; /* a ROM write */
        else
            r->host = r->kind == K_ROM ? m->rom + (r->gpa - ROM_GPA)
                                       : m->romr + (r->gpa - ROMR_GPA);
        break;
    case K_DEV:
        r->need |= VMMU_PROBE_DEVICE;
        break;
    default: /* MMIO, a hole */
        r->need |= VMMU_PROBE_MMIO;
        break;
    }
    if (write && r->kind == K_RAM) {
        int d = data_page(r->gpa);
        if (d >= 0 && m->code[d])
            r->need |= VMMU_PROBE_CODE;
        uint32_t state = 0;
        assert_int_equal(vmmu_page_state_get(m->t.env.vm, r->gpa, &state), 0);
        if (m->logging && !(state & VMMU_PAGE_DIRTY))
            r->notdirty = true;
    }
    /* access.h: a watchpoint of this vCPU that covers part of it; one of
     * the access's kind must stop the direct access, one of the other
     * kind may (the header does not say). */
    for (unsigned i = 0; i < m->nwatch; i++) {
        const struct mwatch *w = &m->watch[i];
        if (watch_covers(m, w, va & ~0xfffull, 4096) && (w->flags & watch_kind(access)))
            r->page_watched = true;
        if (!watch_covers(m, w, va, size))
            continue;
        if (w->flags & watch_kind(access)) {
            r->need |= VMMU_PROBE_WATCH;
            r->stop |= (w->flags & VMMU_WATCH_BEFORE) != 0;
        } else {
            r->maybe |= VMMU_PROBE_WATCH;
        }
    }
}

#define NO_HOST ((void *)(uintptr_t)0x5afe5afe5afeull)

/* The inline probe answered @hit (and @host) for an access that the
 * reference @r describes.  It may miss; a hit must be what
 * vmmu_access_probe() would answer with a host pointer and no fault, on
 * a page whose comparator carries no flag (no watchpoint of its kind,
 * no MMIO or device, no code mark or dirty bit to set for a write), and
 * never while the replay latch is active (access.h). */
static void check_hit(struct model *m, const char *when, bool hit, void *host, bool write,
                      bool insn, const struct pref *r)
{
    if (!hit) {
        if (host != NO_HOST)
            fail_msg("%s paging, %s [%s]: vmmu_access_probe_hit() %s missed and changed *host",
                     mode_names[m->mode], m->what, regs_str(m), when);
        return;
    }
    m->n.probe_hits++;
    const char *bad = NULL;
    if (insn)
        bad = "inside an instruction (the replay latch is active)";
    else if (r->fault.vector != VMMU_X86_FAULT_NONE)
        bad = "on an access that faults";
    else if (r->po_data)
        bad = "on a page that is out (a page-out drops every entry that maps it, sync.h)";
    else if (r->need || r->page_watched)
        bad = "on an access with no direct host access (MMIO, device, watchpoint, code mark)";
    else if (write && r->notdirty)
        bad = "on a write that must set a D bit or a dirty-log bit";
    else if (host != r->host)
        bad = "with a host pointer other than the access's bytes";
    if (bad)
        fail_msg("%s paging, %s [%s]: vmmu_access_probe_hit() %s hit %s (host %p, the model %p, "
                 "%s at gpa %#llx)",
                 mode_names[m->mode], m->what, regs_str(m), when, bad, host, (void *)r->host,
                 kind_name(r->kind), (unsigned long long)r->gpa);
}

/* vmmu_access_probe() or vmmu_access_probe_nofault() of one access inside
 * a page, with vmmu_access_probe_hit() before and after it when the
 * access suits the inline probe (1, 2, 4, 8 or 16 bytes, naturally
 * aligned, not implicit).  A probe makes no MMIO callback and records
 * nothing a check would see (A/D bits and dirty-log bits aside, for the
 * faulting one).  When the faulting probe of a write gives a host
 * pointer, the test writes through it, as its caller would. */
static void op_probe(struct model *m)
{
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    static const enum vmmu_mem_type types[] = {VMMU_MEM_RAM,  VMMU_MEM_ROM,    VMMU_MEM_ROM,
                                               VMMU_MEM_MMIO, VMMU_MEM_MMIO,   VMMU_MEM_DEVICE,
                                               VMMU_MEM_HOLE};
    unsigned k = rn(m, 3); /* read, write, fetch */
    unsigned access = k == 1 ? VMMU_X86_ACC_WRITE : k == 2 ? VMMU_X86_ACC_FETCH : 0;
    if (k != 2 && rn(m, 8) == 0)
        access |= rn(m, 2) ? VMMU_X86_ACC_IMPLICIT : VMMU_X86_ACC_STACK;
    bool write = k == 1;
    bool typed = rn(m, 3) != 0;
    unsigned size = typed ? sizes[rn(m, 5)] : pick_len(m);
    uint64_t va = pick_va(m, size, typed ? size : 1);
    if (size > 4096 - (va & 0xfff))
        size = (unsigned)(4096 - (va & 0xfff)); /* a probe never crosses a page */
    bool nofault = rn(m, 2);
    op_begin(m);
    snprintf(m->what, sizeof(m->what), "%s of %u bytes at %#llx, access %#x",
             nofault ? "vmmu_access_probe_nofault" : "vmmu_access_probe", size,
             (unsigned long long)va, access);

    if (rn(m, 16) == 0) {
        /* access.h: a probe that would cross its page is refused with
         * VMMU_EINVAL, and a refused call changes nothing (error.h): no
         * A/D bit, no dirty bit, no callback, which op_end checks. */
        struct vmmu_probe out;
        m->no_pagein = true; /* nor does it page anything in */
        unsigned cross = (unsigned)(4096 - (va & 0xfff)) + 1 + rn(m, 8);
        int rc = rn(m, 2) ? vmmu_access_probe(V(m), va, cross, access, &out)
                          : vmmu_access_probe_nofault(V(m), va, cross, access, &out);
        if (rc != VMMU_EINVAL)
            fail_msg("%s paging, %s [%s]: a probe of %u bytes, crossing its page, returned %s",
                     mode_names[m->mode], m->what, regs_str(m), cross, vmmu_error_name(rc));
        m->n.probes++;
        op_end(m);
        return;
    }
    const struct vmmu_access_fast *fast = vmmu_access_fast(V(m));
    assert_non_null(fast);
    assert_ptr_equal(fast->vcpu, V(m));
    enum vmmu_tlb_kind tk = k == 1 ? VMMU_TLB_WRITE : k == 2 ? VMMU_TLB_FETCH : VMMU_TLB_READ;
    bool inline_ok = !(access & VMMU_X86_ACC_IMPLICIT) && !(size & (size - 1)) && size <= 16 &&
                     va % size == 0;

    struct pref r;
    ref_probe(m, va, size, access, !nofault, &r);
    bool insn = insn_start(m);
    if (insn && !fast->slow)
        fail_msg("%s paging, %s: the inline probe's slow word is clear inside an instruction",
                 mode_names[m->mode], m->what);
    void *h0 = NO_HOST;
    bool hit0 = inline_ok && vmmu_access_probe_hit(fast, va, size, tk, &h0);
    if (inline_ok)
        check_hit(m, "before the probe", hit0, h0, write, insn, &r);

    /* A page the probe needs is out.  The non-faulting probe brings
     * nothing back ("no page-in", access.h), nor does any probe with no
     * way to page in: then it may fail with VMMU_EPAGEDOUT (access.h), and
     * must when it cannot answer otherwise: when its walk reads an entry
     * in a page that is out and no TLB entry answers (with no way to page
     * in, the TLB was flushed before the operation), or when its bytes
     * are in such a page and no reason for withholding the host pointer
     * holds (a probe gives no host pointer to a page that is out, since
     * it has no host page, and `why` has no bit for one). */
    m->nofault_op = nofault;
    if (nofault)
        m->no_pagein = true;
    bool may_po = nofault || m->pi != PI_PAGER;
    bool po = may_po && (r.po_table || r.po_data);
    struct vmmu_probe out;
    memset(&out, 0xa5, sizeof(out));
    int rc = nofault ? vmmu_access_probe_nofault(V(m), va, size, access, &out)
                     : vmmu_access_probe(V(m), va, size, access, &out);
    int po_rc = nofault ? VMMU_EPAGEDOUT : po_code(m);
    if (rc != 0 && !(rc == po_rc && po))
        fail_msg("%s paging, %s [%s]: returned %s%s", mode_names[m->mode], m->what, regs_str(m),
                 vmmu_error_name(rc),
                 rc == VMMU_EPAGEDOUT ? " (no page it needs is out, or it may page in)" : "");
    if (nofault && (r.po_table || r.po_data))
        m->n.nofault_out++;
    if (rc != 0 && rc == po_rc && !nofault)
        m->got_epagedout = true;

    /* What it answered. */
    unsigned need = r.need | (nofault && r.notdirty ? VMMU_PROBE_NOTDIRTY : 0);
    const char *bad = NULL;
    bool done = false; /* no fault and not stopped: the access would proceed */
    if (rc != 0) {
        /* VMMU_EPAGEDOUT, where the reference allows it: no answer. */
    } else if (may_po && r.po_table && m->pi != PI_PAGER) {
        bad = "an answer although its walk needs a page-table page that is out, and nothing may "
              "bring it back (VMMU_EPAGEDOUT expected)";
    } else if (r.fault.vector != VMMU_X86_FAULT_NONE) {
        m->n.probe_faults++;
        if (out.fault.vector != r.fault.vector || out.fault.error_code != r.fault.error_code ||
            (r.fault.vector == VMMU_X86_VEC_PF && out.fault.cr2 != r.fault.cr2))
            bad = "a fault other than the model's";
        else if (out.host)
            bad = "a host pointer with a fault";
    } else if (out.fault.vector == VMMU_ACCESS_STOP_WATCH) {
        /* access.h does not say whether a VMMU_WATCH_BEFORE watchpoint
         * stops a probe or only takes its host pointer: either. */
        m->n.probe_stops++;
        if (!r.stop)
            bad = "a watchpoint stop where no VMMU_WATCH_BEFORE watchpoint of its kind covers it";
        else if (out.host)
            bad = "a host pointer with a watchpoint stop";
    } else if (out.fault.vector != VMMU_X86_FAULT_NONE) {
        bad = "a fault where the model has none";
    } else {
        done = true;
        if (out.gpa != r.gpa || out.type != types[r.kind])
            bad = "a gpa or type other than the model's";
        else if (may_po && r.po_data && out.host)
            bad = "a host pointer into a page that is out";
        else if (may_po && r.po_data && !(need | r.maybe))
            bad = "an answer for bytes in a page that is out, with no reason that holds "
                  "(VMMU_EPAGEDOUT expected)";
        else if (out.host && need)
            bad = "a host pointer although the access may not be made in host memory";
        else if (out.host && out.host != r.host)
            bad = "a host pointer other than the access's bytes";
        else if (!out.host && !(need | r.maybe))
            bad = "no host pointer although the whole access may be made in host memory";
        else if (!out.host && (out.why == 0 || (out.why & ~(need | r.maybe))))
            bad = "no host pointer, and reasons (why) that do not hold or none";
        else if (!out.host && !nofault && (out.why & VMMU_PROBE_NOTDIRTY))
            bad = "VMMU_PROBE_NOTDIRTY from the faulting probe";
    }
    if (bad)
        fail_msg("%s paging, %s [%s]: %s; it gave vector %s error code %#x cr2 %#llx host %p gpa "
                 "%#llx type %d why %#x; the model: vector %s error code %#x cr2 %#llx host %p "
                 "gpa %#llx (%s) why %#x (or %#x)",
                 mode_names[m->mode], m->what, regs_str(m), bad, vec_name(out.fault.vector),
                 out.fault.error_code, (unsigned long long)out.fault.cr2, out.host,
                 (unsigned long long)out.gpa, (int)out.type, out.why, vec_name(r.fault.vector),
                 r.fault.error_code, (unsigned long long)r.fault.cr2,
                 need | r.maybe ? NULL : (void *)r.host, (unsigned long long)r.gpa,
                 kind_name(r.kind), need, r.maybe);
    if (done) {
        if (out.host)
            m->n.probe_hosts++;
        else
            for (unsigned b = 0; b < 5; b++)
                m->n.probe_why[b] += (out.why >> b) & 1;
    }

    /* What the probe leaves: the faulting one, A/D bits as the access
     * would set them once it is to proceed, and the dirty-log bit of a
     * RAM page it gave a write pointer for; the non-faulting one,
     * nothing (its walk is not recorded, so any A/D bit it set shows as
     * a changed page table). */
    if (!nofault && done && r.walk != ~0u)
        m->walks[r.walk].must = true;

    /* The inline probe again.  The non-faulting probe filled nothing, so
     * it answers as before; after the faulting one it may hit now. */
    if (inline_ok) {
        void *h1 = NO_HOST;
        bool hit1 = vmmu_access_probe_hit(fast, va, size, tk, &h1);
        if (nofault) {
            if (hit1 != hit0 || h1 != h0)
                fail_msg("%s paging, %s [%s]: the inline probe %s before it and %s after it "
                         "(the non-faulting probe fills no TLB entry)",
                         mode_names[m->mode], m->what, regs_str(m), hit0 ? "hit" : "missed",
                         hit1 ? "hit" : "missed");
        } else {
            /* The reference reads the model's copy: give it the pages the
             * probe brought back and the A/D bits it set. */
            struct pref now;
            out_sync(m, true);
            check_ad(m);
            m->nwalk = 0;
            ref_probe(m, va, size, access, false, &now);
            check_hit(m, "after the probe", hit1, h1, write, insn, &now);
        }
    }
    insn_stop(m, insn, 0);
    void *host = rc == 0 ? out.host : NULL;
    if (!nofault && host && r.kind == K_RAM)
        touch(m, r.gpa); /* the caller may use the pointer: the page is back */

    if (!nofault && r.fault.vector == VMMU_X86_FAULT_NONE && write && r.kind == K_RAM) {
        if (host)
            dirty_must(m, r.gpa);
        else
            dirty_may(m, r.gpa); /* a code mark, a watchpoint, a page that could not come
                                    back: the header does not say */
    }
    if (!nofault && host && write && r.kind == K_RAM) {
        uint8_t b[4096];
        fill(m, b, size);
        memcpy(out.host, b, size);
        memcpy(m->shadow + r.gpa, b, size);
    }
    /* Whether a probe records watchpoint hits is not said: drop them. */
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX];
    assert_true(vmmu_watch_take_hits(V(m), h, VMMU_WATCH_HITS_MAX, NULL) >= 0);
    m->n.probes++;
    op_end(m);
}

/* ---- Page-table edits and register writes ------------------------------------------ */

static void flush_all(struct model *m)
{
    assert_int_equal(vmmu_vcpu_tlb_flush_all(V(m)), 0);
}

/* A random vpage with entries. */
static struct vpage *pick_vpage(struct model *m)
{
    for (;;) {
        struct vpage *vp = &m->vp[rn(m, m->nvp)];
        if (vp->canonical)
            return vp;
    }
}

static void edit(struct model *m)
{
    switch (rn(m, 8)) {
    case 0: { /* the PDE that is a large page or points at a page table */
        m->big_large = rn(m, 2);
        uint64_t v = m->big_large ? random_leaf(m, true)
                                  : m->big_table | E_P | E_RW | E_US | (rn(m, 2) ? E_A : 0);
        put_e(m, m->big_pde, v);
        flush_all(m);
        break;
    }
    case 1:
    case 2: { /* an upper-level entry's rights, NX, A, or a reserved bit */
        if (m->nbad && rn(m, 2)) {
            /* Full rights again: a shared entry (PML4 slot 0 holds most
             * windows) must not stay restrictive for long. */
            unsigned i = rn(m, m->nbad);
            uint64_t at = m->bad[i];
            put_e(m, at, mode_table(m->mode, get_e(m, at)) | mode_upper_flags(m->mode, m->level_of_bad[i]) |
                             (rn(m, 2) ? E_A : 0));
            m->bad[i] = m->bad[--m->nbad];
            m->level_of_bad[i] = m->level_of_bad[m->nbad];
            flush_all(m);
            break;
        }
        struct vpage *vp = pick_vpage(m);
        unsigned level = 2 + rn(m, m->top - 1);
        if ((m->mode == MPAE && level == 3) || (vp->big && level == 2))
            break; /* PDPTE registers; the flipping PDE */
        uint64_t v = mode_table(m->mode, get_e(m, vp->ent[level])) | E_P;
        unsigned i;
        for (i = 0; i < m->nbad && m->bad[i] != vp->ent[level]; i++)
            ;
        if (i == m->nbad && m->nbad < 16) {
            m->bad[m->nbad] = vp->ent[level];
            m->level_of_bad[m->nbad++] = level;
        }
        if (rn(m, 8))
            v |= E_RW;
        if (rn(m, 8))
            v |= E_US;
        if (rn(m, 2))
            v |= E_A;
        if (m->mode != M32 && rn(m, 12) == 0)
            v |= E_NX;
        if (m->mode != M32 && rn(m, 60) == 0)
            v |= level >= 4 && rn(m, 2) ? E_PS : 1ull << 45; /* PS is reserved in a PML4E/PML5E */
        put_e(m, vp->ent[level], v);
        flush_all(m);
        break;
    }
    default: { /* a leaf, then INVLPG of its page (or a flush of everything) */
        struct vpage *vp = pick_vpage(m);
        put_e(m, vp->ent[1], random_leaf(m, false));
        if (rn(m, 4))
            assert_int_equal(vmmu_vcpu_invlpg(V(m), vp->va + rn(m, 4096)), 0);
        else
            flush_all(m);
        break;
    }
    }
}

/* The register write took effect.  Or, in PAE paging, it had to load the
 * PDPTE registers from a PDPT that is out, with no way to bring it back:
 * then it fails with VMMU_EPAGEDOUT and changes nothing (x86.h, "a
 * negative return ... VMMU_EPAGEDOUT if a PDPTE load could not page its
 * table in ... leaves everything unchanged").  Which writes load the
 * PDPTEs is the SDM's business (4.4.1), so any may fail so then. */
static bool reg_written(struct model *m, int rc, const struct vmmu_x86_fault *f,
                        const struct vmmu_x86_paging *before)
{
    if (is_po_rc(m, rc) && m->mode == MPAE && is_out(m, m->root)) {
        const struct vmmu_x86_paging *p = pg(m);
        if (p->cr0 != before->cr0 || p->cr4 != before->cr4 || p->efer != before->efer ||
            memcmp(p->pdpte, before->pdpte, sizeof(p->pdpte)) != 0)
            fail_msg("PAE paging, seed %llu step %u: a register write failed with VMMU_EPAGEDOUT "
                     "and changed the registers",
                     (unsigned long long)m->seed, m->step);
        return false;
    }
    if (rc != 0)
        fail_msg("%s paging, seed %llu step %u: a register write returned %s",
                 mode_names[m->mode], (unsigned long long)m->seed, m->step, vmmu_error_name(rc));
    return f->vector == VMMU_X86_FAULT_NONE;
}

static void applied(struct model *m, int rc, const struct vmmu_x86_fault *f,
                    const struct vmmu_x86_paging *before)
{
    if (reg_written(m, rc, f, before) || rc)
        return;
    assert_int_equal(f->vector, VMMU_X86_FAULT_NONE);
}

static void set_register(struct model *m)
{
    struct vmmu_vcpu *v = V(m);
    struct vmmu_x86_fault f;
    const struct vmmu_x86_paging before = *pg(m);
    switch (rn(m, 12)) {
    case 0:
    case 1: /* CPL: user or supervisor */
        assert_int_equal(vmmu_vcpu_set_cpl(v, rn(m, 2) ? 3 : rn(m, 3)), 0);
        break;
    case 2: /* EFLAGS.AC */
        assert_int_equal(vmmu_vcpu_set_rflags(v, 2 | (rn(m, 2) ? R_RFLAGS_AC : 0)), 0);
        break;
    case 3: /* CR0.WP, CR0.AM */
        applied(m, vmmu_vcpu_set_cr0(v, pg(m)->cr0 ^ (rn(m, 2) ? R_CR0_WP : R_CR0_AM), &f), &f,
                &before);
        break;
    case 4: /* SMEP, SMAP */
        applied(m, vmmu_vcpu_set_cr4(v, pg(m)->cr4 ^ (rn(m, 2) ? R_CR4_SMEP : R_CR4_SMAP), &f),
                &f, &before);
        break;
    case 5: /* protection keys on or off (IA-32e paging only) */
        if (long_mode(m))
            applied(m, vmmu_vcpu_set_cr4(v, pg(m)->cr4 ^ (rn(m, 2) ? R_CR4_PKE : R_CR4_PKS), &f),
                    &f, &before);
        break;
    case 6: /* PKRU, PKRS: access- and write-disable bits of keys 0..3 */
        if (rn(m, 2)) {
            if (pg(m)->cr4 & R_CR4_PKE)
                applied(m, vmmu_vcpu_set_pkru(v, rn(m, 2) ? (uint32_t)rnd(m) & 0xff : 0, &f), &f,
                        &before);
        } else {
            applied(m, vmmu_vcpu_set_pkrs(v, rn(m, 2) ? rnd(m) & 0xff : 0, &f), &f, &before);
        }
        break;
    case 7: /* EFER.NXE: XD becomes a reserved bit, or takes effect */
        if (rn(m, 2))
            applied(m, vmmu_vcpu_set_efer(v, pg(m)->efer ^ R_EFER_NXE, &f), &f, &before);
        break;
    case 8: { /* CR0.PG: off now and then, on again at the next chance */
        if (!m->paging_off && rn(m, 5))
            break;
        int rc = vmmu_vcpu_set_cr0(v, pg(m)->cr0 ^ R_CR0_PG, &f);
        if (!reg_written(m, rc, &f, &before)) {
            if (rc)
                break;
            /* Only leaving IA-32e mode may be refused. */
            assert_true(mode_long(m->mode) && !m->paging_off);
            break;
        }
        m->paging_off = !m->paging_off;
        /* SDM 4.10.4.1: changing CR0.PG invalidates every translation.
         * Paging comes back in the seed's mode: EFER.LME, CR4.PAE and
         * LA57 stayed as they were. */
        if (!m->paging_off)
            assert_int_equal(pg(m)->mode, (enum vmmu_x86_mode)(VMMU_X86_MODE_32 + m->mode));
        break;
    }
    default: /* back to the common case now and then: CPL 0, AC=0, no SMAP, NXE=1 */
        assert_int_equal(vmmu_vcpu_set_cpl(v, 0), 0);
        assert_int_equal(vmmu_vcpu_set_rflags(v, 2), 0);
        applied(m, vmmu_vcpu_set_cr4(v, pg(m)->cr4 & ~R_CR4_SMAP, &f), &f, &before);
        const struct vmmu_x86_paging between = *pg(m);
        applied(m, vmmu_vcpu_set_efer(v, pg(m)->efer | R_EFER_NXE, &f), &f, &between);
        break;
    }
    if (m->mode == MPAE)
        out_sync(m, false);
}

/* ---- The host: dirty logging, code marks, watchpoints --------------------------------- */

/* vmmu_dirty_log_get_and_clear() of the RAM region: every page a write
 * through vmmu reached since logging started or the last call (data pages
 * and, for A/D updates, page-table pages) is in it; a page is in it only
 * if vmmu wrote it or translated a write to it that then faulted. */
static void check_dirty_log(struct model *m)
{
    uint64_t bm[RAM_PAGES / 64], n = ~0ull;
    int rc = vmmu_dirty_log_get_and_clear(m->t.env.vm, m->t.env.ram_id, bm, RAM_PAGES / 64, &n);
    if (!m->logging) {
        if (rc != VMMU_EINVAL)
            fail_msg("%s paging: get-and-clear with dirty logging off returned %s",
                     mode_names[m->mode], vmmu_error_name(rc));
        return;
    }
    assert_int_equal(rc, 0);
    uint64_t count = 0;
    for (unsigned w = 0; w < RAM_PAGES / 64; w++) {
        count += (uint64_t)__builtin_popcountll(bm[w]);
        uint64_t missing = m->dirty_must[w] & ~bm[w];
        /* Whether a ballooned page that comes back as a zero page is
         * dirty is not said: either. */
        uint64_t extra = bm[w] & ~(m->dirty_must[w] | m->dirty_may[w] | m->bal[w]);
        if (missing || extra) {
            uint64_t gpa = (w * 64ull + (unsigned)__builtin_ctzll(missing ? missing : extra)) * 4096;
            fail_msg("%s paging, after %s [%s]: the dirty log %s page %#llx (%s)",
                     mode_names[m->mode], m->what, regs_str(m),
                     missing ? "misses written" : "reports unwritten", (unsigned long long)gpa,
                     gpa < m->t.env.next ? "a page-table page" : "a data page");
        }
    }
    if (n != count)
        fail_msg("%s paging: get-and-clear reports %llu dirty pages, its bitmap %llu",
                 mode_names[m->mode], (unsigned long long)n, (unsigned long long)count);
    /* (Pages that came back without a write, rightly not reported.) */
    for (unsigned w = 0; w < RAM_PAGES / 64; w++)
        m->n.clean_back += (unsigned long)__builtin_popcountll(
            m->back[w] & ~(m->dirty_must[w] | m->dirty_may[w] | m->bal[w] | bm[w]));
    memset(m->back, 0, sizeof(m->back));
    memset(m->dirty_must, 0, sizeof(m->dirty_must));
    memset(m->dirty_may, 0, sizeof(m->dirty_may));
    for (unsigned w = 0; w < RAM_PAGES / 64; w++)
        m->bal[w] &= m->out[w]; /* those back came back before this call */
    m->n.dirty_checks++;
    m->n.dirty_pages += count;
}

static void add_watch(struct model *m)
{
    uint64_t va = pick_page(m), len;
    switch (rn(m, 4)) {
    case 0: /* across a page boundary */
        va += 4096 - 1 - rn(m, 16);
        len = 2 + rn(m, 32);
        break;
    case 1: /* whole pages */
        len = 4096ull * (1 + rn(m, 2));
        break;
    default:
        va += rn(m, 4096);
        len = 1 + rn(m, 16);
        break;
    }
    if (!long_mode(m) && va + len > 1ull << 32)
        len = (1ull << 32) - va; /* within the 32-bit linear space */
    unsigned flags = 1 + rn(m, 3); /* READ, WRITE or both */
    if (rn(m, 3) == 0)
        flags |= VMMU_WATCH_BEFORE;
    struct mwatch *w = &m->watch[m->nwatch];
    assert_int_equal(vmmu_watch_add(V(m), va, len, flags, &w->id), 0);
    w->va = va;
    w->len = len;
    w->flags = flags;
    m->nwatch++;
}

static void host_step(struct model *m)
{
    struct vmmu_vm *vm = m->t.env.vm;
    switch (rn(m, 9)) {
    case 0: /* dirty logging on (all bits clear) or off (bits stay) */
        m->logging = !m->logging;
        assert_int_equal(vmmu_dirty_log_enable(vm, m->t.env.ram_id, m->logging), 0);
        if (m->logging) {
            memset(m->dirty_must, 0, sizeof(m->dirty_must));
            memset(m->dirty_may, 0, sizeof(m->dirty_may));
            memset(m->back, 0, sizeof(m->back));
        }
        break;
    case 1:
    case 2:
        check_dirty_log(m);
        break;
    case 3:
    case 4: { /* mark a run of data pages as code */
        unsigned i = rn(m, NDATA), n = 1 + rn(m, NDATA - i < 3 ? NDATA - i : 3);
        assert_int_equal(vmmu_code_mark(vm, DATA_BASE + i * 4096ull, n), 0);
        for (unsigned k = 0; k < n; k++)
            m->code[i + k] = true;
        break;
    }
    case 5: { /* clear a mark without a write */
        unsigned i = rn(m, NDATA);
        assert_int_equal(
            vmmu_page_state_update(vm, DATA_BASE + i * 4096ull, 1, 0, VMMU_PAGE_CODE), 0);
        m->code[i] = false;
        break;
    }
    case 6:
    case 7:
        if (m->nwatch < NWATCH_MAX) {
            add_watch(m);
            break;
        }
        /* fall through */
    default:
        if (m->nwatch) {
            unsigned i = rn(m, m->nwatch);
            assert_int_equal(vmmu_watch_remove(V(m), m->watch[i].id), 0);
            m->watch[i] = m->watch[--m->nwatch];
        }
        break;
    }
}

/* ---- The host: paging out, ballooning, the policy ------------------------------------- */

/* The vm's pager, which registers its page-in handler (pager.h). */
static void pager_start(struct model *m)
{
    struct vmmu_pager_config cfg = {.resident_limit = m->resident_limit,
                                    .flags = m->paranoid ? VMMU_PAGER_PARANOID : 0};
    assert_int_equal(vmmu_pager_create(m->t.env.vm, &cfg, &m->pager), 0);
    m->pi = PI_PAGER;
}

/* A run of RAM pages the stream reaches: page 0 (paging off reaches it)
 * or a page table, data pages, pages of the large page's tail. */
static uint64_t pick_ram_run(struct model *m, unsigned *run)
{
    unsigned i, n;
    switch (rn(m, 3)) {
    case 0:
        *run = 1;
        return 4096ull * rn(m, (unsigned)(m->t.env.next / 4096));
    case 1:
        i = rn(m, NDATA);
        *run = 1 + rn(m, NDATA - i < 3 ? NDATA - i : 3);
        return DATA_BASE + 4096ull * i;
    default:
        n = (RAM_SIZE - BIG_TAIL) / 4096;
        i = rn(m, n);
        *run = 1 + rn(m, n - i);
        return BIG_TAIL + 4096ull * i;
    }
}

/* 1 to @max disjoint ranges of such runs. */
static size_t pick_ranges(struct model *m, struct vmmu_gpa_range *rg, size_t max)
{
    size_t n = 0, want = 1 + rn(m, (unsigned)max);
    while (n < want) {
        unsigned run;
        uint64_t g = pick_ram_run(m, &run), size = run * 4096ull;
        size_t i;
        for (i = 0; i < n && (g >= rg[i].gpa + rg[i].size || rg[i].gpa >= g + size); i++)
            ;
        if (i < n)
            want--; /* it overlaps one: fewer ranges */
        else
            rg[n++] = (struct vmmu_gpa_range){g, size};
    }
    return n;
}

/* The pages of the walk of a random linear page of a window, and the RAM
 * page it maps: its next access must bring them all back. */
static size_t pick_walk(struct model *m, struct vmmu_gpa_range *rg, size_t max)
{
    struct vpage *vp = pick_vpage(m);
    size_t n = 0;
    for (unsigned l = m->top; l >= 1 && n < max; l--) {
        if (vp->big && l == 1 && m->big_large)
            continue;
        uint64_t g = vp->ent[l] & ~0xfffull;
        if (m->mode == MPAE && l == 3)
            continue; /* the PDPT: its entries are in registers */
        size_t i;
        for (i = 0; i < n && rg[i].gpa != g; i++)
            ;
        if (i == n)
            rg[n++] = (struct vmmu_gpa_range){g, 4096};
    }
    uint64_t leaf = get_e(m, vp->ent[1]) & (m->ew == 4 ? 0xfffff000ull : ADDR_MASK);
    if (n < max && !(vp->big && m->big_large) && leaf >= DATA_BASE &&
        leaf < DATA_BASE + NDATA * 4096)
        rg[n++] = (struct vmmu_gpa_range){leaf, 4096};
    return n;
}

static const char *range_str(const struct vmmu_gpa_range *rg, size_t n)
{
    static char buf[160];
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && k < sizeof(buf) - 40; i++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s%#llx+%llu", i ? ", " : "",
                              (unsigned long long)rg[i].gpa,
                              (unsigned long long)(rg[i].size / 4096));
    return buf;
}

/* vmmu_pager_page_out(): afterwards every page of @rg is out; one that was
 * ballooned stays ballooned ("pages already out or ballooned are
 * skipped"), the others are not. */
static void page_out(struct model *m, const struct vmmu_gpa_range *rg, size_t n)
{
    uint32_t before[32];
    unsigned k = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t g = rg[i].gpa; g < rg[i].gpa + rg[i].size; g += 4096, k++)
            before[k] = page_state(m, g);
    snprintf(m->what, sizeof(m->what), "vmmu_pager_page_out() of %s", range_str(rg, n));
    int rc = vmmu_pager_page_out(m->pager, rg, n);
    if (rc)
        fail_msg("%s paging, seed %llu step %u: %s returned %s", mode_names[m->mode],
                 (unsigned long long)m->seed, m->step, m->what, vmmu_error_name(rc));
    k = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t g = rg[i].gpa; g < rg[i].gpa + rg[i].size; g += 4096, k++) {
            uint32_t st = page_state(m, g);
            if (!(st & VMMU_PAGE_PAGED_OUT) ||
                (st & VMMU_PAGE_BALLOONED) != (before[k] & VMMU_PAGE_BALLOONED))
                fail_msg("%s paging, seed %llu step %u: after %s page %#llx has state %#x "
                         "(before: %#x)",
                         mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                         (unsigned long long)g, st, before[k]);
            put_bit(m->out, g, true);
            m->n.po_pages++;
        }
    m->n.po_batches++;
}

/* vmmu_pager_balloon_out() of resident data pages without a code mark
 * (whether ballooning keeps a mark is not said): their contents are
 * discarded, and whatever brings them back brings zero pages (pager.h). */
static void balloon_out(struct model *m)
{
    unsigned run;
    uint64_t g = pick_ram_run(m, &run);
    if (g < DATA_BASE)
        return; /* the guest gives back no page table */
    for (unsigned k = 0; k < run; k++) {
        int d = data_page(g + k * 4096ull);
        if (is_out(m, g + k * 4096ull) || (d >= 0 && m->code[d])) {
            run = k;
            break;
        }
    }
    if (!run)
        return;
    struct vmmu_gpa_range r = {g, run * 4096ull};
    snprintf(m->what, sizeof(m->what), "vmmu_pager_balloon_out() of %s", range_str(&r, 1));
    int rc = vmmu_pager_balloon_out(m->pager, &r, 1);
    if (rc)
        fail_msg("%s paging, seed %llu step %u: %s returned %s", mode_names[m->mode],
                 (unsigned long long)m->seed, m->step, m->what, vmmu_error_name(rc));
    for (unsigned k = 0; k < run; k++, g += 4096) {
        uint32_t st = page_state(m, g);
        if ((st & (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED)) !=
            (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED))
            fail_msg("%s paging, seed %llu step %u: after %s page %#llx has state %#x",
                     mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                     (unsigned long long)g, st);
        put_bit(m->out, g, true);
        put_bit(m->bal, g, true);
        memset(m->shadow + g, 0, 4096);
        m->n.balloons++;
    }
}

/* A batch with a page the pager cannot manage (ROM, MMIO, the device
 * model's page: not RAM of a region vmmu allocated; or a hole) is refused
 * whole: VMMU_EINVAL (a hole: VMMU_EHOLE or VMMU_EINVAL, both listed),
 * and nothing changes ("else nothing changes", pager.h; error.h: a
 * refused call "leaves every object unchanged", which covers the
 * page-in calls, whose errors are "as vmmu_pager_page_out()"). */
static void refused(struct model *m)
{
    static const uint64_t other[] = {ROM_GPA, ROM_GPA + 4096, ROMR_GPA, MMIO_A_GPA,
                                     MMIO_B_GPA, DM_GPA, HOLE_GPA};
    static const char *const calls[] = {"vmmu_pager_page_out", "vmmu_pager_balloon_out",
                                        "vmmu_pager_page_in", "vmmu_pager_balloon_in"};
    struct vmmu_gpa_range rg[5];
    size_t n = pick_ranges(m, rg, 4);
    uint64_t bad = other[rn(m, sizeof(other) / sizeof(other[0]))];
    size_t at = rn(m, (unsigned)n + 1);
    memmove(rg + at + 1, rg + at, (n - at) * sizeof(rg[0]));
    rg[at] = (struct vmmu_gpa_range){bad, 4096};
    n++;
    uint32_t before[32];
    unsigned k = 0;
    for (size_t i = 0; i < n; i++)
        if (i != at)
            for (uint64_t g = rg[i].gpa; g < rg[i].gpa + rg[i].size; g += 4096)
                before[k++] = page_state(m, g);
    unsigned which = rn(m, 4);
    snprintf(m->what, sizeof(m->what), "%s() of %s (%s)", calls[which], range_str(rg, n),
             kind_name(kind_of(bad)));
    int rc = which == 0   ? vmmu_pager_page_out(m->pager, rg, n)
             : which == 1 ? vmmu_pager_balloon_out(m->pager, rg, n)
             : which == 2 ? vmmu_pager_page_in(m->pager, rg, n)
                          : vmmu_pager_balloon_in(m->pager, rg, n);
    if (rc != VMMU_EINVAL && !(rc == VMMU_EHOLE && bad == HOLE_GPA))
        fail_msg("%s paging, seed %llu step %u: %s returned %s, not VMMU_EINVAL",
                 mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                 vmmu_error_name(rc));
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (i != at)
            for (uint64_t g = rg[i].gpa; g < rg[i].gpa + rg[i].size; g += 4096, k++)
                if (page_state(m, g) != before[k])
                    fail_msg("%s paging, seed %llu step %u: %s was refused, yet page %#llx went "
                             "from state %#x to %#x",
                             mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                             (unsigned long long)g, before[k], page_state(m, g));
    m->n.po_refused++;
}

/* vmmu_pager_balance(): the pages it paged out are as many as it says. */
static void balance(struct model *m)
{
    uint64_t n = ~0ull, count = 0;
    snprintf(m->what, sizeof(m->what), "vmmu_pager_balance() with a limit of %llu pages",
             (unsigned long long)m->resident_limit);
    int rc = vmmu_pager_balance(m->pager, &n);
    if (rc)
        fail_msg("%s paging, seed %llu step %u: %s returned %s", mode_names[m->mode],
                 (unsigned long long)m->seed, m->step, m->what, vmmu_error_name(rc));
    for (uint64_t g = 0; g < RAM_SIZE; g += 4096) {
        bool out = (page_state(m, g) & VMMU_PAGE_PAGED_OUT) != 0;
        if (out && !is_out(m, g))
            count++;
        put_bit(m->out, g, out);
    }
    if (count != n)
        fail_msg("%s paging, seed %llu step %u: %s says it paged out %llu pages; %llu went out",
                 mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                 (unsigned long long)n, (unsigned long long)count);
    m->n.balances++;
    m->n.balance_pages += count;
}

/* The pager again, after a stretch without a working page-in handler:
 * vmmu_pager_destroy() brings every page back ("nothing is lost";
 * ballooned ones as zero pages), then a new pager takes over. */
static void pager_restore(struct model *m)
{
    snprintf(m->what, sizeof(m->what), "vmmu_pager_destroy() after a stretch with %s",
             m->pi == PI_NONE ? "no page-in handler" : "a failing page-in handler");
    vmmu_pager_destroy(m->pager);
    m->pager = NULL;
    for (unsigned w = 0; w < RAM_PAGES / 64; w++)
        for (uint64_t bits = m->out[w]; bits; bits &= bits - 1) {
            uint64_t g = (w * 64ull + (unsigned)__builtin_ctzll(bits)) * 4096;
            uint32_t st = page_state(m, g);
            if (st & (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED))
                fail_msg("%s paging, seed %llu step %u: after %s page %#llx has state %#x",
                         mode_names[m->mode], (unsigned long long)m->seed, m->step, m->what,
                         (unsigned long long)g, st);
            put_bit(m->out, g, false);
            put_bit(m->back, g, true);
        }
    compare_memory(m, false);
    pager_start(m);
}

/* What a host does with guest memory between the vCPU's instructions:
 * page out (batches of data and page-table pages, the whole walk of a
 * page now and then), page in, balloon, run the policy; and now and then
 * take the page-in handler away or make it fail, until the pager is
 * recreated. */
static void pager_step(struct model *m)
{
    struct vmmu_gpa_range rg[8];
    if (m->pi != PI_PAGER && rn(m, 3) == 0) {
        pager_restore(m);
        return;
    }
    switch (rn(m, 16)) {
    case 0:
    case 1:
    case 2:
    case 3:
        page_out(m, rg, pick_ranges(m, rg, 4));
        break;
    case 4:
    case 5:
        page_out(m, rg, pick_walk(m, rg, 8));
        break;
    case 6:
    case 7: {
        size_t n = pick_ranges(m, rg, 3);
        pages_in(m, rg, n, rn(m, 3) == 0);
        break;
    }
    case 8:
    case 9:
        balloon_out(m);
        break;
    case 10:
        refused(m);
        break;
    case 11:
        balance(m);
        break;
    case 12:
        if (m->pi == PI_PAGER) {
            if (rn(m, 2)) {
                assert_int_equal(vmmu_p2m_set_pagein_handler(m->t.env.vm, NULL, NULL), 0);
                m->pi = PI_NONE;
            } else {
                static const int rcs[] = {VMMU_ESYS, VMMU_ENOMEM, VMMU_EPAGEDOUT,
                                          VMMU_ETIMEDOUT};
                m->pi_fail_rc = rcs[rn(m, 4)];
                assert_int_equal(vmmu_p2m_set_pagein_handler(m->t.env.vm, failing_pagein, m),
                                 0);
                m->pi = PI_FAILING;
            }
            m->n.pi_episodes[m->pi - 1]++;
            break;
        }
        /* fall through */
    default:
        page_out(m, rg, pick_ranges(m, rg, 2));
        break;
    }
}

/* ---- Runs ------------------------------------------------------------------------------ */

static void add_region(struct model *m, enum vmmu_mem_type type, uint64_t gpa, uint64_t size,
                       void *host, uint32_t flags, void *opaque, uint32_t *id)
{
    struct vmmu_region_desc d = {.type = type, .gpa = gpa, .size = size, .host = host,
                                 .flags = flags, .opaque = opaque,
                                 .mmio = type == VMMU_MEM_MMIO ? &dev_ops : NULL};
    assert_int_equal(vmmu_region_add(m->t.env.vm, &d, id), 0);
}

/* The seed being run, for the teardown of a test that failed in it. */
static struct model *live;

/* The vm under test: 8 MiB of RAM at gpa 0 that vmmu allocates from the
 * vm's memfd, so that the pager may manage it (pager.h refuses regions
 * with caller-supplied memory).  The test reads and writes it through the
 * region's host mapping, as x86_env.h does with its own memory, wherever
 * a page is resident. */
static void env_start(struct model *m)
{
    struct x86_env *env = &m->t.env;
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE,
                                 .name = "ram"};
    struct vmmu_region_info info;
    assert_int_equal(vmmu_vm_create(NULL, &env->vm), 0);
    assert_int_equal(vmmu_region_add(env->vm, &d, &env->ram_id), 0);
    assert_int_equal(vmmu_region_info(env->vm, env->ram_id, &info), 0);
    assert_true(info.host != NULL && info.memfd >= 0);
    env->mem = info.host;
    env->size = RAM_SIZE;
    env->next = 0x1000;
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, NULL), 0);
    assert_int_equal(vmmu_vcpu_create(env->vm, NULL, &m->t.vcpu), 0);
}

/* The reference's vm: the same map, its RAM the model's copy, its ROMs the
 * model's copies; its MMIO and device ranges are never called (a walk
 * reads them as all-ones, x86.h). */
static void ref_start(struct model *m)
{
    static const struct vmmu_mmio_ops none = {NULL, NULL};
    const struct vmmu_region_desc d[] = {
        {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE, .host = m->shadow},
        {.type = VMMU_MEM_ROM, .gpa = ROM_GPA, .size = ROM_PAGES * 4096, .host = m->rom_copy},
        {.type = VMMU_MEM_ROM, .gpa = ROMR_GPA, .size = 4096, .host = m->romr_copy},
        {.type = VMMU_MEM_MMIO, .gpa = MMIO_A_GPA, .size = MMIO_A_PAGES * 4096, .mmio = &none},
        {.type = VMMU_MEM_MMIO, .gpa = MMIO_B_GPA, .size = 4096, .mmio = &none},
        {.type = VMMU_MEM_DEVICE, .gpa = DM_GPA, .size = 4096},
    };
    assert_int_equal(vmmu_vm_create(NULL, &m->ref_vm), 0);
    for (unsigned i = 0; i < sizeof(d) / sizeof(d[0]); i++)
        assert_int_equal(vmmu_region_add(m->ref_vm, &d[i], NULL), 0);
    assert_int_equal(vmmu_x86_paging_init(&m->ref_pg, m->ref_vm, NULL), 0);
}

static void free_model(struct model *m)
{
    /* (vmmu_vm_destroy() frees a pager that is still there.) */
    vmmu_vcpu_destroy(m->t.vcpu);
    vmmu_vm_destroy(m->t.env.vm);
    vmmu_vm_destroy(m->ref_vm);
    if (m->shadow)
        munmap(m->shadow, RAM_SIZE);
    free(m->rom);
    free(m->romr);
    free(m->rom_copy);
    free(m->romr_copy);
    free(m);
}

static int teardown(void **state)
{
    (void)state;
    if (live) {
        (void)vmmu_vcpu_offline(V(live));
        free_model(live);
        live = NULL;
    }
    return 0;
}

static void run_seed(enum mmode mode, uint64_t seed, unsigned steps, struct counters *tot)
{
    struct model *m = live = calloc(1, sizeof(*m));
    assert_non_null(m);
    env_start(m);
    m->mode = mode;
    m->seed = seed;
    m->rng = (seed * NMODES + mode) * 0x9e3779b97f4a7c15ull + 1;
    m->paranoid = (seed + mode) % 2;
    /* (Zero, and in memory only where written.) */
    m->shadow = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->shadow == MAP_FAILED)
        m->shadow = NULL;
    m->rom = aligned_alloc(4096, ROM_PAGES * 4096);
    m->romr = aligned_alloc(4096, 4096);
    m->rom_copy = aligned_alloc(4096, ROM_PAGES * 4096);
    m->romr_copy = aligned_alloc(4096, 4096);
    assert_true(m->shadow && m->rom && m->romr && m->rom_copy && m->romr_copy);
    ref_start(m);

    /* Data pages, the large page's tail, ROMs and devices start random. */
    fill(m, m->t.env.mem + DATA_BASE, NDATA * 4096);
    fill(m, m->t.env.mem + BIG_TAIL, RAM_SIZE - BIG_TAIL);
    fill(m, m->rom, ROM_PAGES * 4096);
    fill(m, m->romr, 4096);
    memcpy(m->rom_copy, m->rom, ROM_PAGES * 4096);
    memcpy(m->romr_copy, m->romr, 4096);
    for (unsigned d = 0; d < NDEV; d++) {
        m->dev[d].m = m;
        m->dev[d].id = d;
        fill(m, m->dev[d].mem, sizeof(m->dev[d].mem));
        memcpy(m->dev_shadow[d], m->dev[d].mem, sizeof(m->dev[d].mem));
    }
    add_region(m, VMMU_MEM_ROM, ROM_GPA, ROM_PAGES * 4096, m->rom, 0, NULL, &m->rom_id);
    add_region(m, VMMU_MEM_ROM, ROMR_GPA, 4096, m->romr, VMMU_REGION_ROM_REPORT_WRITES, NULL,
               &m->romr_id);
    add_region(m, VMMU_MEM_MMIO, MMIO_A_GPA, MMIO_A_PAGES * 4096, NULL, 0, &m->dev[0],
               &m->mmio_id[0]);
    add_region(m, VMMU_MEM_MMIO, MMIO_B_GPA, 4096, NULL, 0, &m->dev[1], &m->mmio_id[1]);
    add_region(m, VMMU_MEM_DEVICE, DM_GPA, 4096, NULL, 0, &m->dev[2], &m->dev_id);
    assert_int_equal(vmmu_p2m_set_device_handler(m->t.env.vm, dm_handler, m), 0);
    assert_int_equal(vmmu_access_set_code_handler(V(m), code_handler, m), 0);

    build(m);
    /* (Only these pages were written: copying the rest would make every
     * page of the region resident for the pager's policy.) */
    memcpy(m->shadow, m->t.env.mem, m->t.env.next);
    memcpy(m->shadow + DATA_BASE, m->t.env.mem + DATA_BASE, NDATA * 4096);
    memcpy(m->shadow + BIG_TAIL, m->t.env.mem + BIG_TAIL, RAM_SIZE - BIG_TAIL);
    load(m);
    m->resident_limit = (m->t.env.next / 4096 + NDATA + (RAM_SIZE - BIG_TAIL) / 4096) * 2 / 3;
    pager_start(m);
    assert_int_equal(vmmu_vcpu_online(V(m)), 0);

    for (unsigned s = 0; s < steps; s++) {
        m->step = s;
        unsigned what = rn(m, 118);
        if (what < 14)
            op_rw(m, false, rn(m, 2));
        else if (what < 28)
            op_rw(m, true, rn(m, 2));
        else if (what < 36)
            op_rmw(m);
        else if (what < 42)
            op_cmpxchg(m);
        else if (what < 50)
            op_prepared(m);
        else if (what < 57)
            op_rep(m, true);
        else if (what < 64)
            op_rep(m, false);
        else if (what < 78)
            edit(m);
        else if (what < 84)
            host_step(m);
        else if (what < 100)
            set_register(m);
        else if (what < 110)
            op_probe(m);
        else
            pager_step(m);
    }
    /* The pager brings every page back: nothing is lost, and paging in
     * wrote nothing the dirty log reports. */
    snprintf(m->what, sizeof(m->what), "vmmu_pager_page_in() of all RAM at the end");
    pages_in(m, &(struct vmmu_gpa_range){0, RAM_SIZE}, 1, false);
    compare_memory(m, true);
    check_dirty_log(m);
    vmmu_pager_destroy(m->pager);
    m->pager = NULL;
    assert_int_equal(vmmu_vcpu_offline(V(m)), 0);

    _Static_assert(sizeof(struct counters) % sizeof(unsigned long) == 0, "counters only");
    const unsigned long *from = (const unsigned long *)&m->n;
    unsigned long *to = (unsigned long *)tot;
    for (size_t i = 0; i < sizeof(struct counters) / sizeof(unsigned long); i++)
        to[i] += from[i];
    free_model(m);
    live = NULL;
}

static void in_mode(enum mmode mode)
{
    struct counters tot = {0};
    unsigned n = model_seeds("VMMU_ACCESS_MODEL_SEEDS", 16); /* more for a longer search */
    for (uint64_t seed = 1; seed <= n; seed++)
        run_seed(mode, seed, 3000, &tot);
    print_message("access model, %s paging: %lu accesses checked (%lu faults, %lu #GP/#SS, %lu #AC), "
                  "%lu MMIO accesses (%lu callbacks), %lu page crossings, %lu locked (%lu split), "
                  "%lu string ops (%lu stopped by a fault partway), %lu prepared, %lu ROM writes "
                  "dropped, %lu reported, %lu entries' A/D checked, %lu inside an instruction, "
                  "%lu with paging off, %lu dirty logs compared (%lu pages), %lu code handler "
                  "calls, %lu watchpoint hits, %lu stops, %lu reaching the device model\n",
                  mode_names[mode], tot.ops, tot.faults, tot.noncanonical, tot.align_faults, tot.mmio_ops,
                  tot.callbacks, tot.crossings, tot.locked, tot.split_locks, tot.rep_ops,
                  tot.rep_partial, tot.prepared, tot.rom_dropped, tot.rom_reported,
                  tot.ad_checked, tot.in_insn, tot.unpaged, tot.dirty_checks, tot.dirty_pages,
                  tot.code_calls, tot.watch_hits, tot.watch_stops, tot.dev_ops);
    print_message("  failures: %lu MMIO callbacks, %lu device requests, %lu pending, %lu string "
                  "ops cut short by one (%lu with 0, %lu with the code, in a chunk that had "
                  "progress); probes: %lu (%lu faults, %lu host pointers, %lu watchpoint "
                  "stops), why: %lu mmio %lu device %lu watch %lu notdirty %lu code; %lu inline "
                  "hits\n",
                  tot.mmio_failed, tot.dev_failed, tot.dev_pending, tot.rep_failed_partway,
                  tot.rep_chunk_failed[0], tot.rep_chunk_failed[1], tot.probes,
                  tot.probe_faults, tot.probe_hosts, tot.probe_stops, tot.probe_why[0],
                  tot.probe_why[1], tot.probe_why[2], tot.probe_why[3], tot.probe_why[4],
                  tot.probe_hits);
    print_message("  paging: %lu pages out in %lu batches, %lu ballooned, %lu by the policy "
                  "(%lu runs), %lu host page-ins, %lu batches refused; back by accesses and "
                  "probes: %lu page-table pages, %lu data pages; %lu non-faulting probes left "
                  "a page out; no page-in handler: %lu stretches, %lu VMMU_EPAGEDOUT; a failing "
                  "one: %lu, %lu; %lu code-handler calls after a page-out, %lu pages back "
                  "and not in the dirty log\n",
                  tot.po_pages, tot.po_batches, tot.balloons, tot.balance_pages, tot.balances,
                  tot.host_pageins, tot.po_refused, tot.in_tables, tot.in_data, tot.nofault_out,
                  tot.pi_episodes[0], tot.epagedout[0], tot.pi_episodes[1], tot.epagedout[1],
                  tot.code_after_out, tot.clean_back);
    /* The stream reached every outcome it is meant to check. */
    assert_true(tot.ops > 0);
    assert_true(tot.faults > 0 && tot.faults < tot.ops);
    assert_true(tot.mmio_ops > 0 && tot.crossings > 0);
    assert_true(tot.locked > 0 && tot.split_locks > 0);
    assert_true(tot.rep_ops > 0 && tot.rep_partial > 0);
    assert_true(tot.rom_dropped > 0 && tot.rom_reported > 0);
    assert_true(tot.ad_checked > 0 && tot.in_insn > 0 && tot.prepared > 0);
    if (mode >= M4)
        assert_true(tot.noncanonical > 0);
    assert_true(tot.align_faults > 0);
    assert_true(tot.unpaged > 0 && tot.dirty_checks > 0 && tot.dirty_pages > 0);
    assert_true(tot.code_calls > 0 && tot.watch_hits > 0 && tot.watch_stops > 0);
    assert_true(tot.dev_ops > 0);
    assert_true(tot.mmio_failed > 0 && tot.dev_failed > 0 && tot.dev_pending > 0);
    assert_true(tot.rep_failed_partway > 0);
    assert_true(tot.probe_faults > 0 && tot.probe_hosts > 0 && tot.probe_hits > 0);
    for (unsigned b = 0; b < 5; b++)
        assert_true(tot.probe_why[b] > 0); /* every reason a probe gives */
    assert_true(tot.po_pages > 0 && tot.po_refused > 0 && tot.balloons > 0);
    assert_true(tot.host_pageins > 0 && tot.balance_pages > 0);
    assert_true(tot.in_tables > 0 && tot.in_data > 0 && tot.nofault_out > 0);
    assert_true(tot.epagedout[0] > 0 && tot.epagedout[1] > 0 && tot.code_after_out > 0);
    assert_true(tot.clean_back > 0);
}

/* One test per paging mode; the test's state names the mode. */
static enum mmode mode_of[NMODES] = {M32, MPAE, M4, M5};

static void agrees_in_mode(void **state)
{
    in_mode(*(const enum mmode *)*state);
}

/* ---- The rules this test found broken, each on its own ------------------------------------- */
/* Each is the smallest case of a rule named at the top of this file, in
 * the environment of test_access_env.h (4-level paging, an MMIO page at
 * MMIO_GPA that logs its callbacks); the last loads 32-bit paging there. */

static const uint64_t KVA = 0x0000400000100000ull;

static int rule_setup(void **state)
{
    struct acc_env *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    acc_env_init(e);
    *state = e;
    return 0;
}

static int rule_teardown(void **state)
{
    struct acc_env *e = *state;
    acc_env_fini(e);
    free(e);
    return 0;
}

/* Bytes 0x7fffffffffff and 0x800000000000; the first
 * page is not present.  SDM: #GP(0) (the second byte is not canonical),
 * no page walked (vmmu used to raise #PF, CR2 0x7fffffffffff). */
static void access_crossing_out_of_canonical_form_raises_gp_before_paging(void **state)
{
    struct acc_env *e = *state;
    uint16_t v = 0;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(acc_vcpu(e), 0x00007fffffffffffull, 2, 0, &v, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_GP);
    assert_int_equal(f.error_code, 0);
    /* With the first page present and its PTE's A clear: still #GP, and
     * nothing translated, so A stays clear. */
    uint64_t pte = amap(e, 0x00007ffffffff000ull, 8 * MiB, E_P | E_RW);
    assert_int_equal(vmmu_access_load(acc_vcpu(e), 0x00007fffffffffffull, 2, 0, &v, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_GP);
    assert_int_equal(get64(&e->t.env, pte) & E_A, 0);
}

/* CMPXCHG on MMIO whose compare fails.  SDM: the
 * destination receives a write cycle whatever the result: a read, then a
 * write of the old value (vmmu used to make the read only). */
static void failed_cmpxchg_on_mmio_writes_the_old_value_back(void **state)
{
    struct acc_env *e = *state;
    amap(e, KVA, MMIO_GPA, PTE_RW);
    e->mmio.mem[0] = 1;
    uint32_t expected = 2, desired = 3, observed = 0;
    bool swapped = true;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_cmpxchg(acc_vcpu(e), KVA, 4, &expected, &desired, &observed,
                                         &swapped, 0, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_false(swapped);
    assert_int_equal(observed, 1);
    assert_int_equal(e->mmio.n, 2);
    assert_int_equal(e->mmio.op[0].write, 0);
    assert_int_equal(e->mmio.op[1].write, 1);
    assert_int_equal(e->mmio.op[1].offset, 0);
    assert_int_equal(e->mmio.op[1].size, 4);
    assert_int_equal(e->mmio.op[1].value, 1);
}

/* REP STOSD with DF=1 from offset 16 of an MMIO page,
 * 3 elements.  SDM: stores at 16, 12, 8 in that order (vmmu used to
 * store each chunk upwards). */
static void backward_rep_stos_to_mmio_stores_in_descending_order(void **state)
{
    struct acc_env *e = *state;
    amap(e, KVA, MMIO_GPA, PTE_RW);
    struct vmmu_rep r = {.dst = KVA + 16, .count = 3, .elem = 4, .backward = true,
                         .value = 0x11223344};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_stos(acc_vcpu(e), &r, 100, &f), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(e->mmio.n, 3);
    assert_int_equal(e->mmio.op[0].offset, 16);
    assert_int_equal(e->mmio.op[1].offset, 12);
    assert_int_equal(e->mmio.op[2].offset, 8);
}

/* 32-bit paging, page 0 mapped, page 0xfffff000 not;
 * REP STOSB with DF=1 from 3, 8 elements.  Elements 3..0 are stored,
 * then RDI is 0xffffffffffffffff, whose linear address is 0xffffffff.
 * SDM: #PF with CR2 = 0xffffffff (vmmu used to give RDI, all 64 bits). */
static void backward_rep_fault_in_32bit_paging_reports_a_32bit_cr2(void **state)
{
    struct acc_env *e = *state;
    struct x86_env *env = &e->t.env;
    uint64_t pd = env_page(env), pt = env_page(env), data = env_page(env);
    put32(env, pd, (uint32_t)(pt | E_P | E_RW | E_US));
    put32(env, pt, (uint32_t)(data | E_P | E_RW | E_US | E_A | E_D));
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pd, .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(acc_vcpu(e), &r), 0);
    struct vmmu_rep rep = {.dst = 3, .count = 8, .elem = 1, .backward = true, .value = 0x5a};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_stos(acc_vcpu(e), &rep, 100, &f), 0);
    assert_int_equal(rep.count, 4);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.cr2, 0xffffffffull);
}

/* A locked read-modify-write reads its operand before it writes it, so a
 * VMMU_WATCH_READ | VMMU_WATCH_BEFORE watchpoint stops it as it stops a
 * load; the hit names what the watchpoint watches (vmmu used to check
 * locked accesses against write watchpoints only). */
static void a_read_watchpoint_with_before_stops_a_locked_access(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, KVA, 8 * MiB, PTE_RW);
    uint8_t *host = hpa(&e->t, 8 * MiB);
    memset(host, 0x11, 8);
    static const unsigned watches[] = {VMMU_WATCH_READ, VMMU_WATCH_WRITE, VMMU_WATCH_ACCESS};
    for (unsigned i = 0; i < 3; i++) {
        uint32_t id;
        assert_int_equal(vmmu_watch_add(v, KVA + 2, 1, watches[i] | VMMU_WATCH_BEFORE, &id), 0);
        uint64_t old = 0;
        struct vmmu_x86_fault f;
        assert_int_equal(vmmu_access_rmw(v, KVA, 4, VMMU_RMW_ADD, 1, &old, 0, &f), 0);
        assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
        uint32_t expected = 0x11111111, desired = 0, observed = 0;
        assert_int_equal(vmmu_access_cmpxchg(v, KVA, 4, &expected, &desired, &observed, NULL,
                                             0, &f),
                         0);
        assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
        assert_int_equal(host[0], 0x11); /* neither was made */
        struct vmmu_watch_hit h[4];
        assert_int_equal(vmmu_watch_take_hits(v, h, 4, NULL), 2);
        for (unsigned k = 0; k < 2; k++) {
            assert_int_equal(h[k].id, id);
            assert_int_equal(h[k].flags, watches[i] | VMMU_WATCH_BEFORE);
            assert_int_equal(h[k].va, KVA);
            assert_int_equal(h[k].len, 4);
        }
        assert_int_equal(vmmu_watch_remove(v, id), 0);
    }
}

/* A write prepared as a read-modify-write (VMMU_ACCESS_READ_WRITE) is
 * stopped by a READ|BEFORE watchpoint; a plain write preparation is not
 * (a store does not read).  The bit needs a write. */
static void a_read_write_preparation_stops_at_read_watchpoints(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, KVA, 8 * MiB, PTE_RW);
    struct vmmu_prepared p;
    struct vmmu_x86_fault f;
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, KVA + 4, 2, VMMU_WATCH_READ | VMMU_WATCH_BEFORE, &id), 0);
    assert_int_equal(vmmu_access_prepare(v, KVA, 8, VMMU_X86_ACC_WRITE, &p, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_access_prepare(v, KVA, 8, VMMU_X86_ACC_WRITE | VMMU_ACCESS_READ_WRITE,
                                         &p, &f),
                     0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    struct vmmu_watch_hit h[2];
    assert_int_equal(vmmu_watch_take_hits(v, h, 2, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].flags, VMMU_WATCH_READ | VMMU_WATCH_BEFORE);
    /* Elsewhere on the page it prepares, and the descriptor writes. */
    assert_int_equal(vmmu_access_prepare(v, KVA + 8, 8, VMMU_X86_ACC_WRITE | VMMU_ACCESS_READ_WRITE,
                                         &p, &f),
                     0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    const uint64_t x = 0x0123456789abcdefull;
    assert_int_equal(vmmu_prepared_write(&p, 0, &x, 8), 0);
    assert_memory_equal(hpa(&e->t, 8 * MiB + 8), &x, 8);
    /* Without a write, or with a fetch, the bit is refused. */
    assert_int_equal(vmmu_access_prepare(v, KVA, 8, VMMU_ACCESS_READ_WRITE, &p, &f), VMMU_EINVAL);
    assert_int_equal(vmmu_access_prepare(v, KVA, 8,
                                         VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH |
                                             VMMU_ACCESS_READ_WRITE,
                                         &p, &f),
                     VMMU_EINVAL);
    assert_int_equal(vmmu_access_load(v, KVA + 8, 8, VMMU_ACCESS_READ_WRITE, &(uint64_t){0}, &f),
                     VMMU_EINVAL);
}

/* 32-bit paging with pages 0 and 0xfffff000 mapped: the linear address
 * after 0 is 0xffffffff, whatever RDI holds. */
static void map_both_ends_of_32bit_space(struct acc_env *e)
{
    struct x86_env *env = &e->t.env;
    uint64_t pd = env_page(env), pt0 = env_page(env), pt1 = env_page(env);
    put32(env, pd, (uint32_t)(pt0 | E_P | E_RW | E_US));
    put32(env, pd + 4 * 1023, (uint32_t)(pt1 | E_P | E_RW | E_US));
    put32(env, pt0, (uint32_t)(8 * MiB | E_P | E_RW | E_US | E_A | E_D));
    put32(env, pt1 + 4 * 1023, (uint32_t)((8 * MiB + 4096) | E_P | E_RW | E_US | E_A | E_D));
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pd, .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(acc_vcpu(e), &r), 0);
}

/* REP STOSB with DF=1 from 3, 8 elements, a write watchpoint with BEFORE
 * on 0xfffffffe: elements 3, 2, 1, 0 and 0xffffffff are stored, then the
 * instruction stops before 0xfffffffe with 3 elements left (vmmu used to
 * look for watchpoints at the 64-bit RDI and so stopped elsewhere). */
static void a_backward_rep_sees_watchpoints_at_the_32bit_addresses_it_wraps_to(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    map_both_ends_of_32bit_space(e);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, 0xfffffffeull, 1, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE,
                                    &id),
                     0);
    struct vmmu_rep rep = {.dst = 3, .count = 8, .elem = 1, .backward = true, .value = 0x5a};
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rep_stos(v, &rep, 100, &f), 0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(rep.count, 3);
    assert_int_equal(rep.dst & 0xffffffffull, 0xfffffffeull);
    uint8_t *low = hpa(&e->t, 8 * MiB), *high = hpa(&e->t, 8 * MiB + 4096);
    assert_int_equal(low[0] & low[1] & low[2] & low[3], 0x5a);
    assert_int_equal(high[4095], 0x5a);
    assert_int_equal(high[4094], 0);
    struct vmmu_watch_hit h[2];
    assert_int_equal(vmmu_watch_take_hits(v, h, 2, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].flags, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE);
    assert_int_equal(h[0].va, 0xfffffffeull);

    /* A 4-byte element at 0xfffffffe runs on at 0: a watchpoint on byte 1
     * stops it before anything is stored. */
    assert_int_equal(vmmu_watch_remove(v, id), 0);
    assert_int_equal(vmmu_watch_add(v, 1, 1, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, &id), 0);
    rep = (struct vmmu_rep){.dst = 0xfffffffeull, .count = 1, .elem = 4, .value = 0x01020304};
    assert_int_equal(vmmu_access_rep_stos(v, &rep, 100, &f), 0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(rep.count, 1);
    assert_int_equal(high[4094], 0);
    assert_int_equal(vmmu_watch_take_hits(v, h, 2, NULL), 1);
    assert_int_equal(h[0].id, id);
}

/* REP STOS and REP MOVS whose next element lies on a page that is not
 * present and is covered by a BEFORE watchpoint: the element faults (#PF,
 * CR2 its address), as a single store there would, and no hit is recorded
 * (vmmu used to look for watchpoints before translating the element, and
 * stopped with VMMU_ACCESS_STOP_WATCH).  A MOVS element is read before it
 * is written: a watched source stops it even when its destination faults. */
static void a_rep_element_on_a_not_present_page_faults_before_a_watchpoint_stops_it(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, KVA, 8 * MiB, PTE_RW);
    const uint64_t absent = KVA + 4096;
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, absent, 8, VMMU_WATCH_ACCESS | VMMU_WATCH_BEFORE, &id), 0);
    struct vmmu_x86_fault f;
    struct vmmu_watch_hit h[2];

    struct vmmu_rep rep = {.dst = absent, .count = 4, .elem = 1, .value = 0x5a};
    assert_int_equal(vmmu_access_rep_stos(v, &rep, 100, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.error_code, VMMU_X86_PF_W);
    assert_int_equal(f.cr2, absent);
    assert_int_equal(rep.count, 4);

    rep = (struct vmmu_rep){.src = absent, .dst = KVA, .count = 4, .elem = 2};
    assert_int_equal(vmmu_access_rep_movs(v, &rep, 100, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_VEC_PF);
    assert_int_equal(f.error_code, 0);
    assert_int_equal(f.cr2, absent);
    assert_int_equal(vmmu_watch_take_hits(v, h, 2, NULL), 0);

    /* The source watched on a present page, the destination absent. */
    assert_int_equal(vmmu_watch_remove(v, id), 0);
    assert_int_equal(vmmu_watch_add(v, KVA, 8, VMMU_WATCH_READ | VMMU_WATCH_BEFORE, &id), 0);
    rep = (struct vmmu_rep){.src = KVA, .dst = absent, .count = 4, .elem = 2};
    assert_int_equal(vmmu_access_rep_movs(v, &rep, 100, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_ACCESS_STOP_WATCH);
    assert_int_equal(rep.count, 4);
    assert_int_equal(vmmu_watch_take_hits(v, h, 2, NULL), 1);
    assert_int_equal(h[0].id, id);
    assert_int_equal(h[0].flags, VMMU_WATCH_READ | VMMU_WATCH_BEFORE);
}

/* A 2-byte locked add at 0xffffffff in 32-bit paging reads and writes
 * bytes 0xffffffff and 0: a watchpoint on byte 0 gets a read hit and a
 * write hit (vmmu used to look at [0xffffffff, 0x100000001) and miss it). */
static void a_locked_access_wrapping_at_4gib_hits_a_watchpoint_on_page_0(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    map_both_ends_of_32bit_space(e);
    uint32_t id;
    assert_int_equal(vmmu_watch_add(v, 0, 1, VMMU_WATCH_ACCESS, &id), 0);
    uint64_t old = 0;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_rmw(v, 0xffffffffull, 2, VMMU_RMW_ADD, 0x0101, &old, 0, &f), 0);
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    assert_int_equal(*(uint8_t *)hpa(&e->t, 8 * MiB), 1);
    struct vmmu_watch_hit h[4];
    int n = vmmu_watch_take_hits(v, h, 4, NULL);
    unsigned kinds = 0;
    for (int k = 0; k < n; k++) {
        assert_int_equal(h[k].id, id);
        assert_int_equal(h[k].va, 0);
        kinds |= h[k].flags;
    }
    assert_int_equal(kinds, VMMU_WATCH_ACCESS);
}

/* A WRITE watchpoint on bytes 0x800..0x803 does not cover an 8-byte write
 * at 0x10: the probe gives the host pointer (vmmu used to refuse every
 * probe of a page with a watchpoint of the probe's kind). */
static void a_probe_is_not_refused_by_a_watchpoint_on_other_bytes_of_its_page(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, KVA, 8 * MiB, PTE_RW);
    assert_int_equal(vmmu_watch_add(v, KVA + 0x800, 4, VMMU_WATCH_WRITE, NULL), 0);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(v, KVA + 0x10, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_int_equal(p.fault.vector, VMMU_X86_FAULT_NONE);
    assert_ptr_equal(p.host, hpa(&e->t, 8 * MiB + 0x10));
    assert_int_equal(vmmu_access_probe_nofault(v, KVA + 0x10, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_ptr_equal(p.host, hpa(&e->t, 8 * MiB + 0x10));
    /* Covering one byte is enough. */
    assert_int_equal(vmmu_access_probe(v, KVA + 0x7fd, 4, VMMU_X86_ACC_WRITE, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH);
}

/* A probe that a BEFORE watchpoint covers was translated (A/D set): gpa
 * and type name the page (vmmu used to leave 0 and HOLE), and the probe,
 * which makes no access, records no hit (vmmu used to record one, and the
 * access the caller then made recorded a second). */
static void a_probe_stopped_by_a_before_watchpoint_reports_its_gpa_and_records_no_hit(
    void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    amap(e, KVA, 8 * MiB, PTE_RW);
    assert_int_equal(
        vmmu_watch_add(v, KVA + 0x10, 4, VMMU_WATCH_WRITE | VMMU_WATCH_BEFORE, NULL), 0);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe(v, KVA + 0x10, 8, VMMU_X86_ACC_WRITE, &p), 0);
    assert_int_equal(p.fault.vector, VMMU_X86_FAULT_NONE);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH);
    assert_int_equal(p.gpa, 8 * MiB + 0x10);
    assert_int_equal(p.type, VMMU_MEM_RAM);
    struct vmmu_watch_hit h;
    assert_int_equal(vmmu_watch_take_hits(v, &h, 1, NULL), 0);
}

/* 32-bit paging: 0x100000010 is linear address 0x10, which a READ
 * watchpoint covers; both probes see it (the faulting one used to look
 * for watchpoints at the 64-bit number). */
static void a_probe_in_32bit_paging_sees_watchpoints_at_its_32bit_address(void **state)
{
    struct acc_env *e = *state;
    struct vmmu_vcpu *v = acc_vcpu(e);
    struct x86_env *env = &e->t.env;
    uint64_t pd = env_page(env), pt = env_page(env);
    put32(env, pd, (uint32_t)(pt | E_P | E_RW | E_US | E_A)); /* A set: the read sets nothing */
    put32(env, pt, (uint32_t)(8 * MiB | E_P | E_RW | E_US | E_A | E_D));
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pd, .rflags = 2};
    assert_int_equal(vmmu_vcpu_set_state(v, &r), 0);
    assert_int_equal(vmmu_watch_add(v, 0x10, 4, VMMU_WATCH_READ, NULL), 0);
    struct vmmu_probe p;
    assert_int_equal(vmmu_access_probe_nofault(v, 0x100000010ull, 4, 0, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH);
    assert_int_equal(vmmu_access_probe(v, 0x100000010ull, 4, 0, &p), 0);
    assert_null(p.host);
    assert_int_equal(p.why, VMMU_PROBE_WATCH);
    assert_int_equal(p.gpa, 8 * MiB + 0x10);
}

/* A vm whose RAM vmmu allocates (so the pager may take it), with its pager
 * and one online vCPU in 4-level paging: PML4 0x1000, PDPT 0x2000, PD
 * 0x3000, PT 0x4000, and PVA mapping the data page 0x5000, writable, A and
 * D set at every level (no walk writes anything). */
struct paged_vm {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v;
    struct vmmu_pager *pager;
    uint8_t *mem;
};
static const uint64_t PVA = 0x400000;

static void paged_vm_init(struct paged_vm *p)
{
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 * MiB};
    struct vmmu_region_info info;
    uint32_t id;
    assert_int_equal(vmmu_vm_create(NULL, &p->vm), 0);
    assert_int_equal(vmmu_region_add(p->vm, &d, &id), 0);
    assert_int_equal(vmmu_region_info(p->vm, id, &info), 0);
    p->mem = info.host;
    const uint64_t up = E_P | E_RW | E_US | E_A;
    const uint64_t e[4] = {0x2000 | up, 0x3000 | up, 0x4000 | up, 0x5000 | up | E_D};
    for (unsigned l = 4; l >= 1; l--)
        memcpy(p->mem + 0x1000 * (5 - l) + 8 * idx9(PVA, l), &e[4 - l], 8);
    memset(p->mem + 0x5000, 0x5a, 4096);
    assert_int_equal(vmmu_vcpu_create(p->vm, NULL, &p->v), 0);
    struct vmmu_x86_regs r = regs_4level(0x1000);
    assert_int_equal(vmmu_vcpu_set_state(p->v, &r), 0);
    struct vmmu_pager_config cfg = {0};
    assert_int_equal(vmmu_pager_create(p->vm, &cfg, &p->pager), 0);
    assert_int_equal(vmmu_vcpu_online(p->v), 0);
}

static void paged_vm_fini(struct paged_vm *p)
{
    assert_int_equal(vmmu_vcpu_offline(p->v), 0);
    vmmu_vcpu_destroy(p->v);
    vmmu_vm_destroy(p->vm);
}

static void paged_vm_out(struct paged_vm *p, uint64_t gpa)
{
    struct vmmu_gpa_range r = {gpa, 4096};
    assert_int_equal(vmmu_pager_page_out(p->pager, &r, 1), 0);
}

static uint32_t paged_vm_state(struct paged_vm *p, uint64_t gpa)
{
    uint32_t st = 0;
    assert_int_equal(vmmu_page_state_get(p->vm, gpa, &st), 0);
    return st;
}

/* access.h: the non-faulting probe changes nothing the guest or the host
 * could see, "no page-in": the page table it would walk stays out, and it
 * answers VMMU_EPAGEDOUT (vmmu used to page the table back in). */
static void a_nofault_probe_leaves_a_paged_out_page_table_out(void **state)
{
    (void)state;
    struct paged_vm p;
    paged_vm_init(&p);
    paged_vm_out(&p, 0x4000);
    struct vmmu_probe out;
    int rc = vmmu_access_probe_nofault(p.v, PVA, 8, 0, &out);
    uint32_t st = paged_vm_state(&p, 0x4000);
    paged_vm_fini(&p);
    assert_int_equal(rc, VMMU_EPAGEDOUT);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
}

/* access.h: the non-faulting probe of bytes in a RAM page that is paged
 * out brings nothing back and answers VMMU_EPAGEDOUT, with the gpa and
 * type of the page (vmmu used to answer 0, no host pointer and why
 * VMMU_PROBE_MMIO, which means "not plain memory"). */
static void a_nofault_probe_of_a_paged_out_ram_page_answers_epagedout(void **state)
{
    (void)state;
    struct paged_vm p;
    paged_vm_init(&p);
    paged_vm_out(&p, 0x5000);
    struct vmmu_probe out;
    memset(&out, 0, sizeof(out));
    int rc = vmmu_access_probe_nofault(p.v, PVA, 8, 0, &out);
    uint32_t st = paged_vm_state(&p, 0x5000);
    paged_vm_fini(&p);
    assert_true(st & VMMU_PAGE_PAGED_OUT);
    assert_int_equal(rc, VMMU_EPAGEDOUT);
    assert_int_equal(out.gpa, 0x5000);
    assert_int_equal(out.type, VMMU_MEM_RAM);
}

static int pagein_fails(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)opaque;
    (void)vm;
    (void)gpa;
    return VMMU_ESYS; /* the backing store could not be read */
}

/* A page-in handler that cannot bring the page back: the access returns
 * the handler's own code, for the data page, the page table and the probe
 * alike (p2m.h, vmmu_pagein_fn; the headers used to promise
 * VMMU_EPAGEDOUT, which is what comes back without a handler). */
static void an_access_whose_page_in_fails_returns_the_handlers_code(void **state)
{
    (void)state;
    struct paged_vm p;
    paged_vm_init(&p);
    paged_vm_out(&p, 0x5000);
    assert_int_equal(vmmu_p2m_set_pagein_handler(p.vm, pagein_fails, NULL), 0);
    uint64_t v = 0;
    struct vmmu_x86_fault f;
    int data_rc = vmmu_access_load(p.v, PVA, 8, 0, &v, &f);
    paged_vm_out(&p, 0x4000);
    assert_int_equal(vmmu_vcpu_tlb_flush_all(p.v), 0);
    int table_rc = vmmu_access_load(p.v, PVA, 8, 0, &v, &f);
    struct vmmu_probe out;
    int probe_rc = vmmu_access_probe(p.v, PVA, 8, 0, &out);
    assert_int_equal(vmmu_p2m_set_pagein_handler(p.vm, NULL, NULL), 0);
    int none_rc = vmmu_access_load(p.v, PVA, 8, 0, &v, &f);
    paged_vm_fini(&p);
    assert_int_equal(data_rc, VMMU_ESYS);
    assert_int_equal(table_rc, VMMU_ESYS);
    assert_int_equal(probe_rc, VMMU_ESYS);
    assert_int_equal(none_rc, VMMU_EPAGEDOUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"access_agrees_with_the_model_in_32bit_paging", agrees_in_mode, NULL, teardown, &mode_of[M32]},
        {"access_agrees_with_the_model_in_pae_paging", agrees_in_mode, NULL, teardown, &mode_of[MPAE]},
        {"access_agrees_with_the_model_in_4level_paging", agrees_in_mode, NULL, teardown, &mode_of[M4]},
        {"access_agrees_with_the_model_in_5level_paging", agrees_in_mode, NULL, teardown, &mode_of[M5]},
#define K(name) cmocka_unit_test_setup_teardown(name, rule_setup, rule_teardown)
        K(access_crossing_out_of_canonical_form_raises_gp_before_paging),
        K(failed_cmpxchg_on_mmio_writes_the_old_value_back),
        K(backward_rep_stos_to_mmio_stores_in_descending_order),
        K(backward_rep_fault_in_32bit_paging_reports_a_32bit_cr2),
        K(a_read_watchpoint_with_before_stops_a_locked_access),
        K(a_read_write_preparation_stops_at_read_watchpoints),
        K(a_backward_rep_sees_watchpoints_at_the_32bit_addresses_it_wraps_to),
        K(a_locked_access_wrapping_at_4gib_hits_a_watchpoint_on_page_0),
        K(a_rep_element_on_a_not_present_page_faults_before_a_watchpoint_stops_it),
        K(a_probe_is_not_refused_by_a_watchpoint_on_other_bytes_of_its_page),
        K(a_probe_stopped_by_a_before_watchpoint_reports_its_gpa_and_records_no_hit),
        K(a_probe_in_32bit_paging_sees_watchpoints_at_its_32bit_address),
        cmocka_unit_test(a_nofault_probe_leaves_a_paged_out_page_table_out),
        cmocka_unit_test(a_nofault_probe_of_a_paged_out_ram_page_answers_epagedout),
        cmocka_unit_test(an_access_whose_page_in_fails_returns_the_handlers_code),
#undef K
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
