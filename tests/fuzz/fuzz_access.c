/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the instruction access layer (vmmu/access.h).
 *
 * An input is a register state, a guest-physical image with hostile page
 * tables, and a stream of at most MAX_OPS operations that calls every
 * entry point of access.h with arguments taken from the input, wrong ones
 * included: probes (faulting, non-faulting, the inline hit), prepared
 * accesses and their read/write/set/move (with stale descriptors,
 * out-of-range offsets, descriptors prepared for reading), reads, writes,
 * typed loads and stores, RMW and CMPXCHG (8B/16B, misaligned), REP MOVS
 * and STOS (forwards and backwards, huge counts and budgets, resumed),
 * watchpoints (len 0, wrapping, unknown flags, BEFORE or not, hits taken at
 * once or left to pile up), dirty logging and code marks (on RAM, ROM,
 * MMIO, device pages and holes), instructions with vmmu_insn_begin/end
 * (nested begin, end without begin, any status), vmmu_latch_discard,
 * vmmu_latch_disable/restore (with bogus tokens), safe points (and
 * offline/online), and between them guest-memory edits (data, live
 * page-table entries, ROM contents, device state), INVLPG, TLB flushes
 * and register writes (CPL, AC, PKRU, WP, SMEP, SMAP, PKE, PGE, PSE, NXE).
 * Wrong arguments come with NULL pointers, sizes 0/3/17/32/4097, unknown
 * access bits, WRITE|FETCH and the like.  An INSN operation runs 1 to 6
 * accesses as one instruction; when one ends with VMMU_EPENDING the
 * instruction is re-executed (up to 4 passes, with guest-memory edits,
 * flushes, code marks and host page-outs between them), discarded, or
 * left pending for whatever begins next.
 *
 * The host pager (an eighth of the inputs; a quarter of those paranoid,
 * most with a resident limit): the host pages RAM out, balloons it out,
 * pages and balloons it in, and runs the policy, over data pages, the
 * tables of the last walk, the pages of prepared descriptors, all of RAM
 * or any set of pages, between operations, before any access of an
 * instruction (in every pass) and between the passes of one that pended;
 * its wrong arguments are refused.  And from inside the callbacks vmmu
 * calls on the vCPU's thread while an access is in progress (an MMIO read
 * or write, the device handler, the code handler) an operation may make
 * one host change to the page being written (the code handler's page, a
 * REP's destination, a descriptor prepared for writing) or another: page
 * it out or in, run the policy, mark it as code, set or clear its code or
 * dirty bit, get and clear the dirty log, turn logging on or off.
 *
 * Guest-physical layout (fixed for the run; the vm is 36 bits wide, below
 * MAXPHYADDR 40, so entries can also map beyond it):
 *   [0, 128 KiB)         RAM from the vm's memfd (so that a pager can
 *                        manage it): the input's image, repeated (tables
 *                        in 0..15)
 *   1 MiB, 1 MiB + 4 KiB ROM that drops writes, ROM that reports them
 *   [2 MiB, +8 KiB)      MMIO backed by a memory, callbacks that log and
 *                        fail when the operation says
 *   2 MiB + 8 KiB        MMIO without callbacks (all-ones, writes dropped)
 *   [3 MiB, +8 KiB)      a device-model range: the handler completes, fails
 *                        (EDEAD, ETIMEDOUT, EPROTO, EDEVICE) or answers
 *                        VMMU_EPENDING, and completes the same access when
 *                        asked again
 *   everything else      holes
 * Page tables are either the image itself (fuzz_tlb's way, optionally
 * "tamed" so that entries point at the RAM and the pages above) or built
 * from two input windows of eight pages each (anywhere: low, the 4 GiB,
 * canonical and 2^64 edges) whose leaves map RAM data or table pages, the
 * ROMs, MMIO, the device pages, holes, or large pages, with input rights,
 * keys and A/D bits; the other entries of the table pages stay hostile.
 *
 * Checked after every operation (each failure prints one line saying what
 * differed, the paging state and the callbacks, then aborts):
 *  - the return code is one its function's table in access.h lists, and
 *    exactly VMMU_EINVAL (or the code the header names) for a wrong
 *    argument, which then changed nothing at all (no RAM byte, no
 *    callback, no walk, no hit); never a crash, hang or sanitizer report;
 *  - a fault is one the CPU can raise (#PF/#GP/#SS/#AC, #PF error code
 *    from the defined bits and the access's W/U/I, CR2 the first byte or a
 *    page start in the range, #GP/#SS only for non-canonical bytes or a
 *    misaligned CMPXCHG16B, #AC(0) only for a misaligned 2/4/8-byte typed
 *    operand at CPL 3 with CR0.AM and EFLAGS.AC); and when no stale TLB entry can matter
 *    (fuzz_tlb's "stale" rule, refined: only edits of pages that walks
 *    read since the last full flush make translations stale), the access
 *    agrees with vmmu_x86_walk_peek() of its pages now: the same fault, or
 *    a stop exactly when a BEFORE watchpoint covers the first page that
 *    does not fault, or completion with the data the memory model holds
 *    at the walk's gpas (RAM, ROM, holes as all-ones, the devices'
 *    memories), written bytes where the walk says, descriptors, probe
 *    gpas, host pointers and "why" bits as the map says;
 *  - fault before side effect: an access that faults, is stopped by a
 *    watchpoint, or fails before its first byte made no callback, called
 *    no code handler and changed no RAM byte (A/D bits of entries aside);
 *    a non-faulting probe or the inline probe changes nothing, A/D and TLB
 *    fills included;
 *  - ROM never changes; a write to the reporting ROM fails with VMMU_EROM;
 *  - callbacks get naturally aligned pieces of 1, 2, 4 or 8 bytes inside
 *    their region, ascending within an access (a jump only from a page end
 *    to a page start), reads before writes in a read-modify-write, aligned
 *    string elements one element after another (descending for backward
 *    operations); an error names the last callback, which failed with it;
 *  - REP registers move by the elements done; a negative code only with no
 *    progress; a stop with progress only for a fault, a watchpoint, the
 *    budget, a failed callback, the reporting ROM or a full latch;
 *  - watchpoint hits name live or removed watchpoints covering the bytes
 *    hit, with kinds the operation made; a stop records exactly one BEFORE
 *    hit; a completed access records a hit for every covering watchpoint
 *    of its kinds; probes record none;
 *  - dirty log: every page vmmu changed since the last get is reported,
 *    nothing when nothing was written; code marks: a write that passed its
 *    checks calls the handler once per marked RAM page, before the page
 *    changes, and nothing else does;
 *  - re-executions: the accesses before the one that pended return what
 *    the previous pass saw, whatever changed in between, and the first
 *    callback of the new pass is the device access that pended (a
 *    completed piece is never repeated);
 *  - latch statistics: cumulative counters never go down, `pass` follows
 *    the rules of access.h (1, kept while pending, +1 per re-execution, 0
 *    after), capacities hold, VMMU_EOVERFLOW counts, nothing is recorded
 *    outside an instruction, vmmu_access_fast()->slow is set exactly while
 *    the latch is on; TLB statistics never go down;
 *  - the pager: after every call and every operation the P2M says of each
 *    RAM page what the fuzzer asked (a page vmmu brought back is counted
 *    as a page-in), the statistics agree with that (out, ballooned,
 *    written, zero pages dropped, page-ins, nothing cancelled, resident
 *    within the RAM and, after the policy, within the limit), and a page
 *    that is out has no host page (so nothing touched it through a pointer
 *    it kept; paranoid mode makes that a crash); a page comes back bit for
 *    bit as it went out, a ballooned one as zeros, also from
 *    vmmu_pager_destroy(); a page-out on the vCPU's thread takes it
 *    offline for a grace period, which is no safe point: descriptors
 *    prepared before stay valid (only safe points end them) and write
 *    where they were prepared to, the page brought back;
 *    VMMU_EPAGEDOUT never comes from an access or the faulting probe with
 *    a pager, the non-faulting probe brings nothing back and answers
 *    VMMU_EPAGEDOUT (with the page) exactly when it needs a page that is
 *    out; reads, preparations and probes change no RAM byte beyond A/D
 *    bits; the code handler is never called for a page that is out;
 *  - host changes made inside a callback: pages written after a dirty-log
 *    call there are in the next bitmap, and a page marked as code there
 *    and written after it calls the handler (the held-descriptor rule of
 *    access.h, now for what vmmu itself holds); every other check above
 *    holds through them (no write lost, none in the wrong place).
 *
 * Found by this target: vmmu_access_probe() and vmmu_access_prepare()
 * return VMMU_EOVERFLOW under a full latch, and a preparation records no
 * "after" hit (access.h said neither; it now does, and this target
 * checks what it says); and a prepared write held across a dirty-log or
 * code-mark call made on the vCPU's own thread is lost to both (vmmu now
 * looks such a descriptor's pages up again: FUZZ_ACCESS_EXCUSE_HELD_PREPARED
 * below, now 0).  With the pager and host changes in callbacks: a code
 * handler that paged out the page being written left vmmu_access_write()
 * writing into the released page (the write was lost; a crash in paranoid
 * mode), and a device or MMIO callback that paged out the destination of a
 * REP MOVS or STOS made it stop early, or fail with VMMU_EINVAL for valid
 * arguments; vmmu now looks pages up again after such a wait.  What a code
 * handler that marks its own page again should see was not written down;
 * access.h now says its mark applies to later writes.  Its own A/D rule was
 * wrong for 8-byte entries (a store setting bit 37 or 38 of an entry
 * passed for an A/D update).
 *
 * FUZZ_ACCESS_STATS=1 prints totals at exit; FUZZ_ACCESS_TRACE=1 prints
 * every operation (to read a crash input). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmmu/vmmu.h"

/* ---- Layout ------------------------------------------------------------- */

#define RAM_PAGES 32u
#define RAM_SIZE (RAM_PAGES * 4096u)
#define TABLE_PAGES 16u /* built tables live in pages 0..15, data in 16..31 */
#define ROM_A_GPA 0x100000ull /* drops writes */
#define ROM_B_GPA 0x101000ull /* VMMU_REGION_ROM_REPORT_WRITES */
#define MMIO_GPA 0x200000ull  /* two pages, logging callbacks */
#define MMIO_SIZE 0x2000u
#define NULLIO_GPA 0x202000ull /* one page, MMIO without callbacks */
#define DEV_GPA 0x300000ull    /* two pages, the device handler */
#define DEV_SIZE 0x2000u
#define HOLE_GPA 0x400000ull
/* The vm's guest-physical width, below MAXPHYADDR (40): entries can map
 * addresses beyond it, which read as all-ones and drop writes. */
#define VM_GPA_BITS 36
#define BEYOND_GPA (1ull << VM_GPA_BITS)

/* Entry address bits taming clears: what stays reaches the RAM (bits
 * 12-16) and the pages at 1, 2 and 3 MiB (bits 20-21). */
#define TAME_MASK_64 0x000fffffffce0000ull
#define TAME_MASK_32 0xffce0000u
/* Reserved bits of a PAE PDPTE (bits 2:1, 8:5, and from MAXPHYADDR 40 up). */
#define PDPTE_RSVD (0x1e6ull | 0xffffff0000000000ull)

/* A prepared write access held across vmmu_dirty_log_get_and_clear(),
 * vmmu_dirty_log_enable(), vmmu_code_mark() or vmmu_page_state_change()
 * made on the vCPU's own thread (no safe point between), by the caller or
 * by vmmu inside an access whose callback made the call, must act on the
 * pages as they are after it: the write marks the page dirty and calls the
 * code handler (access.h, "Host pointers").  vmmu used to write through
 * the old translation, unseen by both; with this set to 1 the fuzzer
 * excuses exactly those writes from the dirty-log and code-handler checks
 * (for vmmu before it looked such pages up again). */
#ifndef FUZZ_ACCESS_EXCUSE_HELD_PREPARED
#define FUZZ_ACCESS_EXCUSE_HELD_PREPARED 0
#endif

/* access.h (vmmu_code_write_fn): a mark the code handler makes again on
 * the page it was called for (vmmu_code_mark, or vmmu_page_state_change
 * setting VMMU_PAGE_CODE) applies to the writes after the one in progress:
 * that write changes the page with the new mark set, unreported, and the
 * next write takes the mark.  remark_later() holds the fuzzer to that (a
 * mark on another page is checked as any other). */

#define MAX_OPS 64
#define MAX_SUB 6
#define MAX_PASSES 4
#define SLOTS 3
#define WATCH_MAX 12
#define IO_LOG_MAX 256
#define REP_BYTES_MAX 8192u /* elements a REP call may make, in bytes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model's byte loops (page compares, simulations) are checks, not
 * paths to explore: no comparison tracing there, which would cost more
 * than the rest of an input. */
#define NOCOV __attribute__((no_sanitize("coverage")))

/* ---- Global objects (fixed for the run) ---------------------------------- */

static struct vmmu_vm *vm;
static struct vmmu_vcpu *vcpu;
static const struct vmmu_access_fast *fast;
static int vcpu_id;
static uint8_t *ram, *shadow, *rom_a, *rom_b;
static uint8_t rom_a_model[4096], rom_b_model[4096];
static uint8_t mmio_mem[MMIO_SIZE], dev_mem[DEV_SIZE];
static uint32_t ram_id, rom_a_id, rom_b_id, mmio_id, nullio_id, dev_id;
static int mmio_tag, dev_tag, dev_handler_tag, code_tag; /* their addresses are opaques */

/* ---- Per input ---------------------------------------------------------- */

/* What the TLB may hold (fuzz_tlb's rule): stale is set when guest memory
 * that a cached translation was read from changes, or a register write
 * keeps translations the new state makes wrong; cleared only by what drops
 * every translation.  table_pages: the RAM pages holding entries the walks
 * read since then (the peeks of every access find them). */
static bool stale;
static uint32_t table_pages;

/* The replay latch as the caller sees it. */
static bool in_insn;         /* between vmmu_insn_begin() and _end() */
static bool insn_tainted;    /* something other than accesses ran in this instruction */
static unsigned model_pass;  /* what vmmu_latch_stats().pass must say */
static unsigned dis_stack[16]; /* tokens of vmmu_latch_disable() not yet restored */
static unsigned dis_n;
static bool dis_unknown;     /* a bogus token was restored since the stack was empty */
static struct vmmu_latch_stats last_ls;
#define NTLBSTATS (sizeof(struct vmmu_tlb_stats) / sizeof(uint64_t))
static uint64_t last_ts[NTLBSTATS];

/* The host pager of this input (or none), and each RAM page as the
 * fuzzer put it: resident, paged out, dropped as a zero page, ballooned. */
enum { PS_RES, PS_OUT, PS_ZERO, PS_BALLOON };
static struct vmmu_pager *pager;
static bool pager_paranoid;
static uint64_t pager_limit;
static uint8_t pstate[RAM_PAGES];

/* Safe points passed (prepared accesses of an older count are stale). */
static uint64_t epoch;

/* Prepared descriptors. */
struct slot {
    struct vmmu_prepared d;
    bool ok;        /* prepared successfully (else zeroed) */
    uint64_t epoch; /* safe points at the time */
    unsigned pass;  /* INSN pass it was prepared in (0 outside) */
    bool held;      /* a dirty-log or code-mark call was made since (same thread) */
};
static struct slot slots[SLOTS];

/* The REP registers, kept between calls so that a REP can resume. */
static struct vmmu_rep rep;
static bool rep_is_movs;
static unsigned rep_src_access;

/* Watchpoints (removed ones stay, dead, so that old hits name them). */
struct wp {
    uint64_t va, last;
    unsigned flags;
    uint32_t id;
    bool live;
};
static struct wp wps[WATCH_MAX];
static unsigned nwps;
static bool lazy_hits; /* leave hits pending between operations */

/* Dirty log of the RAM region. */
static bool dirty_on;
static uint32_t dirty_expect;  /* pages vmmu changed since logging began / the last get */
static bool dirty_writes_since; /* a write-kind operation ran since then */
static uint32_t dirty_excused;   /* pages written through held descriptors (known bug) */

/* Code marks of RAM pages: maybe marked / surely marked. */
static uint32_t code_maybe, code_sure;
static bool code_handler_on;
static unsigned code_calls;   /* handler calls in the current operation */
static uint32_t code_called;  /* their pages */

/* The device's outstanding VMMU_EPENDING answer. */
static struct {
    bool on;
    uint64_t gpa, data;
    unsigned size;
    int write;
} pend;

/* Callbacks of the current operation. */
struct io_call {
    uint64_t gpa, data;
    int rc;
    uint8_t dev, write, size, completed_pending;
};
static struct io_call io_log[IO_LOG_MAX];
static unsigned io_n;
static unsigned io_fail_at; /* 1-based callback of the operation that misbehaves, 0: none */
static unsigned io_fail_what;
/* Of the current INSN pass: the first callback, to see repeats. */
static bool pass_io_any;
static struct io_call pass_io_first;

/* Where the last walks went (for edits of live entries). */
static struct {
    uint64_t gpa;
    unsigned size;
} last_levels[VMMU_X86_LEVELS_MAX * 2];
static unsigned last_nlevels;
static uint64_t ring[4];
static unsigned ring_next;
/* RAM the last accesses reached (edits aim at it, between passes too). */
static uint64_t recent_gpa[4];
static unsigned recent_next;

/* Mapped windows of the built page tables (pick_va aims at them). */
struct window {
    uint64_t va;
    uint8_t leaf[8], frame[8], upper, large;
};
static struct window win[2];
static bool built;

static bool trace; /* FUZZ_ACCESS_TRACE: print each access */
static const char *cur_op = "setup";
static unsigned cur_op_index;

/* Totals for FUZZ_ACCESS_STATS. */
static unsigned long n_ops, n_exact, n_faults, n_exact_faults, n_stops, n_pending, n_replays,
    n_ok_access, n_io_calls, n_einval, n_pager_calls, n_paged_out, n_vmmu_pageins, n_cb_actions,
    n_align_faults;

static void print_totals(void)
{
    fprintf(stderr,
            "fuzz_access: %lu ops, %lu exact, %lu ok accesses, %lu faults (%lu compared, %lu "
            "#AC), %lu watch stops, %lu EINVAL, %lu pended, %lu re-executions, %lu callbacks; pager: %lu "
            "calls, %lu pages taken, %lu brought back by vmmu, %lu host changes in callbacks\n",
            n_ops, n_exact, n_ok_access, n_faults, n_exact_faults, n_align_faults, n_stops,
            n_einval, n_pending,
            n_replays, n_io_calls, n_pager_calls, n_paged_out, n_vmmu_pageins, n_cb_actions);
}

/* ---- Failure reports ------------------------------------------------------ */

static const struct vmmu_x86_paging *pg(void)
{
    return vmmu_vcpu_paging(vcpu);
}

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    const struct vmmu_x86_paging *p = pg();
    va_list ap;
    fprintf(stderr, "fuzz_access: op #%u %s: ", cur_op_index, cur_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "\n  [%s paging, cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx cpl %u rflags %#llx pkru "
            "%#x; stale %d, in_insn %d pass %u tainted %d, latch disabled %u%s]\n",
            vmmu_x86_mode_name(p->mode), (unsigned long long)p->cr0, (unsigned long long)p->cr3,
            (unsigned long long)p->cr4, (unsigned long long)p->efer, p->cpl,
            (unsigned long long)p->rflags, p->pkru, (int)stale, (int)in_insn, model_pass,
            (int)insn_tainted, dis_n, dis_unknown ? " (unknown)" : "");
    if (pager) {
        uint32_t out = 0;
        for (unsigned i = 0; i < RAM_PAGES; i++)
            out |= (uint32_t)(pstate[i] != PS_RES) << i;
        fprintf(stderr, "  [pager%s, resident limit %llu; RAM pages put out %#x]\n",
                pager_paranoid ? " (paranoid)" : "", (unsigned long long)pager_limit, out);
    }
    for (unsigned i = 0; i < io_n && i < IO_LOG_MAX; i++)
        fprintf(stderr, "  callback %u: %s %s gpa %#llx size %u data %#llx -> %d%s\n", i,
                io_log[i].dev ? "device" : "mmio", io_log[i].write ? "write" : "read",
                (unsigned long long)io_log[i].gpa, io_log[i].size,
                (unsigned long long)io_log[i].data, io_log[i].rc,
                io_log[i].completed_pending ? " (completes the pending one)" : "");
    abort();
}

/* ---- Return codes --------------------------------------------------------- */

#define RCB(code) (1ull << (unsigned)(-(code)))
#define RC_OK 1ull
#define RC_DEVICE                                                                                 \
    (RCB(VMMU_EPENDING) | RCB(VMMU_EDEAD) | RCB(VMMU_ETIMEDOUT) | RCB(VMMU_EPROTO) |              \
     RCB(VMMU_EDEVICE))
/* The tables of access.h, function by function. */
#define RCS_PROBE                                                                                 \
    (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_EPAGEDOUT) | RCB(VMMU_EBUSY) | RCB(VMMU_EOVERFLOW))
#define RCS_PREPARE                                                                               \
    (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_EPAGEDOUT) | RCB(VMMU_EBUSY) | RCB(VMMU_EOVERFLOW))
#define RCS_PREP_READ (RC_OK | RCB(VMMU_EINVAL) | RC_DEVICE | RCB(VMMU_EMMIO) | RCB(VMMU_EOVERFLOW))
#define RCS_PREP_WRITE (RCS_PREP_READ | RCB(VMMU_EROM))
#define RCS_READ (RCS_PREPARE | RCS_PREP_READ)
#define RCS_WRITE (RCS_PREPARE | RCS_PREP_WRITE)
#define RCS_REP (RCS_PREPARE | RCS_PREP_WRITE)
#define RCS_LATCH (RC_OK | RCB(VMMU_EINVAL))
#define RCS_WATCH_ADD (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_ENOMEM))
#define RCS_WATCH_REMOVE (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_ENOENT))
#define RCS_DIRTY (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_ENOENT))
#define RCS_CODE_MARK (RC_OK | RCB(VMMU_EINVAL) | RCB(VMMU_EHOLE) | RCB(VMMU_ERANGE))

static void check_rc(const char *fn, int rc, uint64_t allowed)
{
    uint64_t bit = rc == 0 ? RC_OK : (rc < 0 && rc > -64) ? RCB(rc) : 0;
    if (!(bit & allowed))
        fail("%s returned %d (%s), which its header does not list", fn, rc, vmmu_error_name(rc));
}

/* ---- Input ---------------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint64_t take(struct reader *r, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes && r->n; i++, r->p++, r->n--)
        v |= (uint64_t)*r->p << (8 * i);
    return v;
}

/* ---- The guest-physical map as built ------------------------------------ */

enum pk { PK_RAM, PK_ROM_A, PK_ROM_B, PK_MMIO, PK_NULLIO, PK_DEV, PK_HOLE };

struct place {
    enum pk pk;
    enum vmmu_mem_type type;
    uint32_t region_id;
};

static struct place place_of(uint64_t gpa)
{
    struct place p = {PK_HOLE, VMMU_MEM_HOLE, 0};
    if (gpa < RAM_SIZE)
        p = (struct place){PK_RAM, VMMU_MEM_RAM, ram_id};
    else if (gpa - ROM_A_GPA < 4096)
        p = (struct place){PK_ROM_A, VMMU_MEM_ROM, rom_a_id};
    else if (gpa - ROM_B_GPA < 4096)
        p = (struct place){PK_ROM_B, VMMU_MEM_ROM, rom_b_id};
    else if (gpa - MMIO_GPA < MMIO_SIZE)
        p = (struct place){PK_MMIO, VMMU_MEM_MMIO, mmio_id};
    else if (gpa - NULLIO_GPA < 4096)
        p = (struct place){PK_NULLIO, VMMU_MEM_MMIO, nullio_id};
    else if (gpa - DEV_GPA < DEV_SIZE)
        p = (struct place){PK_DEV, VMMU_MEM_DEVICE, dev_id};
    return p;
}

/* What a read of the byte at @gpa returns now. */
static uint8_t model_byte(uint64_t gpa)
{
    switch (place_of(gpa).pk) {
    case PK_RAM:
        return ram[gpa];
    case PK_ROM_A:
        return rom_a_model[gpa - ROM_A_GPA];
    case PK_ROM_B:
        return rom_b_model[gpa - ROM_B_GPA];
    case PK_MMIO:
        return mmio_mem[gpa - MMIO_GPA];
    case PK_DEV:
        return dev_mem[gpa - DEV_GPA];
    default:
        return 0xff;
    }
}

/* The host pointer a translation of @gpa gives, or NULL. */
static uint8_t *host_of(uint64_t gpa, bool write)
{
    struct place p = place_of(gpa);
    if (p.pk == PK_RAM)
        return ram + gpa;
    if (!write && p.pk == PK_ROM_A)
        return rom_a + (gpa - ROM_A_GPA);
    if (!write && p.pk == PK_ROM_B)
        return rom_b + (gpa - ROM_B_GPA);
    return NULL;
}

/* ---- The host pager ----------------------------------------------------------- */

/* What the fuzzer asked of the pager, page by page: the P2M and the
 * pager's statistics must say the same after every call and every
 * operation (vmmu brings pages back on its own: those are counted when
 * they are seen resident again). */
static bool pager_touched; /* something was asked of it since the last check */
static uint8_t *out_copy;           /* each page's contents when it went out */
static struct vmmu_pager_stats pst; /* what the statistics must say (resident aside) */

static const char *const ps_names[4] = {"resident", "paged out", "dropped as a zero page",
                                        "ballooned"};

static uint32_t model_out_mask(void)
{
    uint32_t m = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++)
        if (pstate[p] != PS_RES)
            m |= 1u << p;
    return m;
}

static uint32_t page_bit(uint64_t gpa)
{
    return gpa < RAM_SIZE ? 1u << (gpa >> 12) : 0;
}

/* The page-aligned ranges of a mask of RAM pages. */
static size_t ranges_of(uint32_t pages, struct vmmu_gpa_range *r)
{
    size_t n = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        if (!(pages & (1u << p)))
            continue;
        if (n && r[n - 1].gpa + r[n - 1].size == p * 4096ull)
            r[n - 1].size += 4096;
        else
            r[n++] = (struct vmmu_gpa_range){p * 4096ull, 4096};
    }
    return n;
}

static bool zero_page(const uint8_t *p)
{
    static const uint8_t zeros[4096];
    return memcmp(p, zeros, 4096) == 0;
}

/* The model follows the P2M: a page the fuzzer put out that is resident
 * now was brought back by vmmu (a walk, an access, a probe).  Then the
 * statistics must agree, and no page that is out may have a host page:
 * the pager released it, so a host page there means something touched it
 * through a pointer it kept (paranoid mode makes that a crash instead). */
static void pager_check_how(const char *where, bool full)
{
    if (!pager || (!pager_touched && !model_out_mask()))
        return; /* nothing asked of it since it was last seen with every page in */
    uint32_t out = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        uint32_t st = 0;
        if (vmmu_page_state_get(vm, p * 4096ull, &st) != 0)
            fail("%s: vmmu_page_state_get of RAM page %u failed", where, p);
        bool o = (st & VMMU_PAGE_PAGED_OUT) != 0, b = (st & VMMU_PAGE_BALLOONED) != 0;
        if (pstate[p] == PS_RES) {
            if (o || b)
                fail("%s: RAM page %u has state %#x, but the pager was not asked to take it",
                     where, p, st);
        } else if (!o) {
            if (b)
                fail("%s: RAM page %u is resident with the ballooned bit (state %#x)", where, p,
                     st);
            if (pstate[p] == PS_BALLOON)
                pst.ballooned--;
            else
                pst.out--;
            pst.paged_in++;
            pstate[p] = PS_RES;
            n_vmmu_pageins++;
        } else if (b != (pstate[p] == PS_BALLOON)) {
            fail("%s: RAM page %u, %s, has state %#x", where, p, ps_names[pstate[p]], st);
        }
        if (o)
            out |= 1u << p;
    }
    if (!full)
        return;
    struct vmmu_pager_stats s;
    if (vmmu_pager_stats(pager, &s) != 0)
        fail("%s: vmmu_pager_stats failed", where);
    if (s.out != pst.out || s.ballooned != pst.ballooned || s.written != pst.written ||
        s.zero_dropped != pst.zero_dropped || s.paged_in != pst.paged_in || s.cancelled != 0)
        fail("%s: pager statistics say out %llu ballooned %llu written %llu zero_dropped %llu "
             "paged_in %llu cancelled %llu; what it was asked gives %llu %llu %llu %llu %llu 0",
             where, (unsigned long long)s.out, (unsigned long long)s.ballooned,
             (unsigned long long)s.written, (unsigned long long)s.zero_dropped,
             (unsigned long long)s.paged_in, (unsigned long long)s.cancelled,
             (unsigned long long)pst.out, (unsigned long long)pst.ballooned,
             (unsigned long long)pst.written, (unsigned long long)pst.zero_dropped,
             (unsigned long long)pst.paged_in);
    pager_touched = out != 0;
    if (out) {
        unsigned char vec[RAM_PAGES];
        if (mincore(ram, RAM_SIZE, vec) != 0)
            fail("%s: mincore failed", where);
        for (unsigned p = 0; p < RAM_PAGES; p++)
            if ((out & (1u << p)) && (vec[p] & 1))
                fail("%s: RAM page %u is %s, yet it has a host page again: something wrote "
                     "or read it through a pointer it kept", where, p, ps_names[pstate[p]]);
    }
    if (s.resident + s.out + s.ballooned > RAM_PAGES)
        fail("%s: %llu pages resident, %llu out and %llu ballooned, of %u", where,
             (unsigned long long)s.resident, (unsigned long long)s.out,
             (unsigned long long)s.ballooned, RAM_PAGES);
    unsigned written_out = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++)
        written_out += pstate[p] == PS_OUT;
    if (s.file_slots < written_out)
        fail("%s: %u pages are in the backing file, which has %llu slots", where, written_out,
             (unsigned long long)s.file_slots);
}

/* The model and the P2M, with (@full) the statistics and the host pages:
 * at the start and end of every operation; the model alone in between. */
static void pager_check(const char *where)
{
    pager_check_how(where, true);
}

static void pager_sync(const char *where)
{
    pager_check_how(where, false);
}

/* Bring @pages back through the API (balloon_in when @balloon): each
 * comes back bit for bit as it went out, a ballooned or zero page as
 * zeros. */
static void ram_in(uint32_t pages, bool balloon, const char *where)
{
    bool settling = pages == ~0u && !balloon;
    if (!pager)
        return;
    pager_sync(where);
    uint32_t want = pages & model_out_mask();
    struct vmmu_gpa_range r[RAM_PAGES];
    size_t n = ranges_of(settling ? want : pages, r);
    if (!n)
        return;
    n_pager_calls++;
    pager_touched = true;
    int rc = balloon ? vmmu_pager_balloon_in(pager, r, n) : vmmu_pager_page_in(pager, r, n);
    if (rc != 0)
        fail("%s: vmmu_pager_%s_in of pages %#x returned %d (%s)", where,
             balloon ? "balloon" : "page", pages, rc, vmmu_error_name(rc));
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        if (!(want & (1u << p)))
            continue;
        const uint8_t *got = ram + p * 4096u, *was = out_copy + p * 4096u;
        if (memcmp(got, was, 4096) != 0) {
            unsigned i = 0;
            while (got[i] == was[i])
                i++;
            fail("%s: RAM page %u (%s) came back different: byte %u is %#x, was %#x", where, p,
                 ps_names[pstate[p]], i, got[i], was[i]);
        }
        if (pstate[p] == PS_BALLOON)
            pst.ballooned--;
        else
            pst.out--;
        pst.paged_in++;
        pstate[p] = PS_RES;
    }
    pager_sync(where);
}

/* Page out (or balloon) @pages.  A batch that took a resident page ran a
 * grace period, for which the vCPU went offline: that is no safe point,
 * its prepared accesses stay valid and look their pages up again when
 * next used (access.h, "Host pointers").  A balloon discards the contents:
 * the model's copy of the pages becomes zeros, as if the guest had
 * cleared them (never inside an operation). */
static void host_evict(uint32_t pages, bool balloon, const char *where)
{
    if (!pager || !pages)
        return;
    pager_sync(where);
    uint32_t victims = 0, zero = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        if (!(pages & (1u << p)) || pstate[p] != PS_RES)
            continue;
        victims |= 1u << p;
        memcpy(out_copy + p * 4096u, ram + p * 4096u, 4096);
        if (zero_page(ram + p * 4096u))
            zero |= 1u << p;
    }
    struct vmmu_gpa_range r[RAM_PAGES];
    size_t n = ranges_of(pages, r);
    n_pager_calls++;
    pager_touched = true;
    int rc = balloon ? vmmu_pager_balloon_out(pager, r, n) : vmmu_pager_page_out(pager, r, n);
    if (rc != 0)
        fail("%s: vmmu_pager_%s_out of pages %#x returned %d (%s)", where,
             balloon ? "balloon" : "page", pages, rc, vmmu_error_name(rc));
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        uint32_t bit = 1u << p;
        if (!(pages & bit))
            continue;
        if (victims & bit) {
            n_paged_out++;
            if (balloon) {
                pstate[p] = PS_BALLOON;
                pst.ballooned++;
            } else if (zero & bit) {
                pstate[p] = PS_ZERO;
                pst.out++;
                pst.zero_dropped++;
            } else {
                pstate[p] = PS_OUT;
                pst.out++;
                pst.written++;
            }
        } else if (balloon && pstate[p] != PS_BALLOON) {
            pstate[p] = PS_BALLOON; /* what the file held is discarded */
            pst.out--;
            pst.ballooned++;
        }
        if (balloon) {
            memset(out_copy + p * 4096u, 0, 4096);
            memset(shadow + p * 4096u, 0, 4096);
            if (bit & table_pages)
                stale = true;
        }
    }
    if (balloon && in_insn)
        insn_tainted = true; /* the guest's memory changed inside the instruction */
    pager_check(where);
}

/* The policy: what it takes is seen in the P2M; it must take exactly as
 * many pages as it says, resident ones, and leave no more resident than
 * the limit. */
static void host_balance(bool count, const char *where)
{
    if (!pager)
        return;
    pager_sync(where);
    uint32_t zero = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        if (pstate[p] != PS_RES)
            continue;
        memcpy(out_copy + p * 4096u, ram + p * 4096u, 4096);
        if (zero_page(ram + p * 4096u))
            zero |= 1u << p;
    }
    uint64_t n = 77;
    n_pager_calls++;
    pager_touched = true;
    int rc = vmmu_pager_balance(pager, count ? &n : NULL);
    if (rc != 0)
        fail("%s: vmmu_pager_balance returned %d (%s)", where, rc, vmmu_error_name(rc));
    uint32_t taken = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        uint32_t st = 0;
        (void)vmmu_page_state_get(vm, p * 4096ull, &st);
        if ((st & VMMU_PAGE_PAGED_OUT) && pstate[p] == PS_RES) {
            taken |= 1u << p;
            n_paged_out++;
            pstate[p] = (zero & (1u << p)) ? PS_ZERO : PS_OUT;
            pst.out++;
            if (zero & (1u << p))
                pst.zero_dropped++;
            else
                pst.written++;
        }
    }
    if (count && n != (uint64_t)__builtin_popcount(taken))
        fail("%s: vmmu_pager_balance says it paged out %llu pages, it took %#x",
             where, (unsigned long long)n, taken);
    if (!pager_limit && taken)
        fail("%s: vmmu_pager_balance without a limit took pages %#x", where, taken);
    pager_sync(where);
    struct vmmu_pager_stats s;
    if (pager_limit && vmmu_pager_stats(pager, &s) == 0 && s.resident > pager_limit)
        fail("%s: after vmmu_pager_balance %llu pages are resident, the limit is %llu", where,
             (unsigned long long)s.resident, (unsigned long long)pager_limit);
}

/* Which RAM pages a host change aims at: one page, the pages the last
 * accesses reached, the tables of the last walk, the descriptors' pages,
 * data pages, table pages, any set. */
static uint32_t pick_pages(unsigned sel, uint32_t rnd)
{
    uint32_t m = 0;
    switch (sel & 7) {
    case 0:
        return 1u << (rnd % RAM_PAGES);
    case 1:
        return page_bit(recent_gpa[rnd & 3]) | page_bit(recent_gpa[(rnd >> 2) & 3]);
    case 2:
        for (unsigned i = 0; i < last_nlevels; i++)
            m |= page_bit(last_levels[i].gpa);
        return m ? m : page_bit(pg()->cr3 & ~0xfffull & 0xffffffffull);
    case 3:
        return rnd & (rnd >> 7) & (rnd >> 13);
    case 4:
        for (unsigned i = 0; i < SLOTS; i++)
            for (unsigned k = 0; slots[i].ok && k < slots[i].d.npages && k < 2; k++)
                if (slots[i].d.page[k].type == VMMU_MEM_RAM)
                    m |= page_bit(slots[i].d.page[k].gpa);
        return m ? m : 1u << (rnd % RAM_PAGES);
    case 5:
        return (rnd & 0x80) ? ~0u : 0xffu << (rnd % 25);
    case 6:
        return (0xfu << (rnd % 13)) << TABLE_PAGES;
    default:
        return ((rnd & 0xffff) | 1u) << (rnd >> 28);
    }
}

/* One change of the host's: page out, balloon, page in, balloon in,
 * balance, or a page-out followed by the policy. */
static void host_action(unsigned what, unsigned sel, uint32_t rnd, const char *where)
{
    uint32_t pages = pick_pages(sel, rnd);
    switch (what & 7) {
    case 0:
    case 1:
        host_evict(pages, false, where);
        break;
    case 2:
        host_evict(pages, true, where);
        break;
    case 3:
    case 4:
        ram_in(pages, what & 1, where);
        break;
    case 5:
        host_balance(rnd & 1, where);
        break;
    case 6:
        host_evict(pages, false, where);
        host_balance(rnd & 1, where);
        break;
    default:
        host_evict(pages, (rnd >> 31) != 0, where);
        ram_in(pick_pages(sel + 1, rnd >> 5), false, where);
        break;
    }
}

/* An operation may make one host change from inside a callback vmmu calls
 * on the vCPU's thread while the access is in progress: the n-th MMIO
 * read, MMIO write, device or code-handler call of the operation pages a
 * page out or in, runs the policy, marks a page as code, changes its state
 * bits, gets and clears the dirty log, or turns it on or off.  The page is
 * the one being written where the fuzzer can tell (the code handler's
 * page, the REP destination, a descriptor prepared for writing), else one
 * the last accesses reached or a table page of the last walk. */
enum { CB_MMIO_READ, CB_MMIO_WRITE, CB_DEVICE, CB_CODE };
static const char *const cb_names[4] = {"inside an MMIO read callback",
                                        "inside an MMIO write callback",
                                        "inside the device handler", "inside the code handler"};
static struct {
    bool on;
    uint8_t where, at, what;
    unsigned seen;
} cb_plan;
static unsigned cur_kind = ~0u; /* the access operation running (OP_*), or ~0u */


/* After a dirty-log, code-mark or page-state call inside a callback: RAM
 * as it was then (pages that are out: as they went out), the pages the
 * operation wrote before it whose dirty bits it left, the pages whose
 * dirty bits it cleared, and the code marks it set that no handler call
 * has taken yet. */
static bool mid_on;
static uint8_t *mid_snap;
static uint32_t mid_expect, mid_cleared, mid_marked, mid_code_pages;
static uint32_t mid_remarked; /* marks the code handler set on its own page (for later writes) */

static const uint8_t *current_page(unsigned p)
{
    return pstate[p] == PS_RES ? ram + p * 4096u : out_copy + p * 4096u;
}

static void cb_action(unsigned where, uint64_t gpa_page);
static void mid_end(uint32_t diff_any);

static void expect_rc_cb(int rc, int want, const char *what, const char *where)
{
    if (rc != want)
        fail("%s: %s returned %d (%s), want %d (%s)", where, what, rc, vmmu_error_name(rc), want,
             vmmu_error_name(want));
}

/* ---- Linear addresses ------------------------------------------------------ */

static bool ia32e(void)
{
    return pg()->mode >= VMMU_X86_MODE_4LEVEL;
}

static uint64_t la_mask(void)
{
    return ia32e() ? ~0ull : 0xffffffffull;
}

static uint64_t lin(uint64_t va)
{
    return va & la_mask();
}

/* ---- Callbacks ------------------------------------------------------------ */

/* One MMIO or device callback: checked, logged, and answered from the
 * device's memory, or failed as the operation's plan says. */
static int io_call(bool dev, bool write, uint64_t gpa, unsigned size, uint64_t *value)
{
    uint64_t base = dev ? DEV_GPA : MMIO_GPA, rsize = dev ? DEV_SIZE : MMIO_SIZE;
    uint8_t *mem = dev ? dev_mem : mmio_mem;
    if (size != 1 && size != 2 && size != 4 && size != 8)
        fail("%s callback of size %u", dev ? "device" : "MMIO", size);
    if (gpa & (size - 1))
        fail("%s callback at gpa %#llx not aligned to its size %u", dev ? "device" : "MMIO",
             (unsigned long long)gpa, size);
    if (gpa < base || gpa - base + size > rsize)
        fail("%s callback at gpa %#llx size %u outside its region", dev ? "device" : "MMIO",
             (unsigned long long)gpa, size);
    if (write && size < 8 && (*value >> (8 * size)))
        fail("%s write of size %u with value %#llx: not zero-extended", dev ? "device" : "MMIO",
             size, (unsigned long long)*value);
    unsigned index = ++io_n;
    n_io_calls++;
    int rc = 0;
    bool completes = false;
    if (dev && pend.on) {
        if (pend.gpa == gpa && pend.size == size && pend.write == (int)write &&
            (!write || pend.data == *value))
            completes = true; /* p2m.h: called again with the same access, it completes */
        pend.on = false;      /* else the request was abandoned */
    }
    if (!completes && index == io_fail_at) {
        if (!dev) {
            rc = (io_fail_what & 1) ? -1 : -1000;
        } else {
            static const int codes[8] = {VMMU_EPENDING, VMMU_EPENDING, VMMU_EPENDING,
                                         VMMU_EPENDING, VMMU_EDEAD,    VMMU_ETIMEDOUT,
                                         VMMU_EPROTO,   VMMU_EDEVICE};
            rc = codes[io_fail_what & 7];
            if (rc == VMMU_EPENDING) {
                pend.on = true;
                pend.gpa = gpa;
                pend.size = size;
                pend.write = write;
                pend.data = write ? *value : 0;
            }
        }
    }
    if (rc == 0) {
        if (write) {
            uint64_t v = *value;
            memcpy(mem + (gpa - base), &v, size);
        } else {
            uint64_t v = 0;
            memcpy(&v, mem + (gpa - base), size);
            *value = v;
        }
    }
    struct io_call c = {gpa, write ? *value : (rc == 0 ? *value : 0), rc, dev, write,
                        (uint8_t)size, completes};
    if (index <= IO_LOG_MAX)
        io_log[index - 1] = c;
    if (!pass_io_any) {
        pass_io_any = true;
        pass_io_first = c;
    }
    cb_action(dev ? CB_DEVICE : write ? CB_MMIO_WRITE : CB_MMIO_READ, 0);
    return rc;
}

static int mmio_read_cb(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    if (opaque != &mmio_tag)
        fail("MMIO read callback got opaque %p", opaque);
    return io_call(false, false, MMIO_GPA + offset, size, value);
}

static int mmio_write_cb(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    if (opaque != &mmio_tag)
        fail("MMIO write callback got opaque %p", opaque);
    return io_call(false, true, MMIO_GPA + offset, size, &value);
}

static const struct vmmu_mmio_ops mmio_ops = {mmio_read_cb, mmio_write_cb};
static const struct vmmu_mmio_ops null_ops = {NULL, NULL};

static int device_cb(void *opaque, struct vmmu_device_req *req)
{
    if (opaque != &dev_handler_tag)
        fail("device handler got opaque %p", opaque);
    if (req->region_id != dev_id || req->region_opaque != &dev_tag ||
        req->offset != req->gpa - DEV_GPA || (req->write != 0 && req->write != 1))
        fail("device request: gpa %#llx offset %#llx region %u opaque %p write %d",
             (unsigned long long)req->gpa, (unsigned long long)req->offset, req->region_id,
             req->region_opaque, req->write);
    if (req->vcpu_id != vcpu_id)
        fail("device request names vCPU %d, the access was made by vCPU %d", req->vcpu_id,
             vcpu_id);
    return io_call(true, req->write != 0, req->gpa, req->size, &req->data);
}

/* Where entries start: 4-byte entries in 32-bit paging, else 8-byte ones
 * (byte 4 of an 8-byte entry holds address bits 37 and 38, not A/D: a
 * guest store that sets them rewrites the entry). */
static unsigned entry_mask(void)
{
    return pg()->mode == VMMU_X86_MODE_32 ? 3u : 7u;
}

/* Whether page @p of the RAM differs from the shadow in anything but A/D
 * bits a walk may set (bits 5 and 6 of the low byte of an entry, 0 -> 1). */
NOCOV static bool page_differs_beyond_ad(const uint8_t *a, const uint8_t *b)
{
    if (!memcmp(a, b, 4096))
        return false;
    for (unsigned i = 0; i < 4096; i++) {
        uint8_t d = a[i] ^ b[i];
        if (!d)
            continue;
        if ((i & entry_mask()) || (d & ~0x60u) || (a[i] & d) != d)
            return true;
    }
    return false;
}

static bool page_changed_beyond_ad(unsigned p)
{
    return page_differs_beyond_ad(ram + p * 4096u, shadow + p * 4096u);
}

static void code_cb(void *opaque, struct vmmu_vcpu *v, uint64_t gpa_page)
{
    if (opaque != &code_tag || v != vcpu)
        fail("code handler got opaque %p vcpu %p", opaque, (void *)v);
    if (gpa_page & 0xfff)
        fail("code handler got gpa %#llx, not a page", (unsigned long long)gpa_page);
    if (gpa_page >= RAM_SIZE || !(code_maybe & (1u << (gpa_page >> 12))))
        fail("code handler called for gpa %#llx, which is not marked",
             (unsigned long long)gpa_page);
    unsigned p = (unsigned)(gpa_page >> 12);
    uint32_t st = 0;
    (void)vmmu_page_state_get(vm, gpa_page, &st);
    /* The page is about to be written, so vmmu has it in; compared with
     * the shadow, or with RAM as it was at a call a callback made. */
    if (st & VMMU_PAGE_PAGED_OUT)
        fail("code handler called for gpa %#llx, which is paged out (state %#x): the write "
             "that follows has nowhere to go", (unsigned long long)gpa_page, st);
    if (!(mid_remarked & (1u << p)) &&
        page_differs_beyond_ad(ram + p * 4096u, (mid_on ? mid_snap : shadow) + p * 4096u))
        fail("code handler called for gpa %#llx after the page was written",
             (unsigned long long)gpa_page);
    code_maybe &= ~(1u << p);
    code_sure &= ~(1u << p);
    mid_marked &= ~(1u << p);
    code_calls++;
    code_called |= 1u << p;
    cb_action(CB_CODE, gpa_page);
}

/* ---- Setup ------------------------------------------------------------------ */

static void setup_once(void)
{
    if (vm)
        return;
    shadow = malloc(RAM_SIZE);
    out_copy = malloc(RAM_SIZE);
    mid_snap = malloc(RAM_SIZE);
    rom_a = aligned_alloc(4096, 4096);
    rom_b = aligned_alloc(4096, 4096);
    struct vmmu_vm_config cfg = {.gpa_bits = VM_GPA_BITS, .name = "fuzz_access"};
    if (!shadow || !out_copy || !mid_snap || !rom_a || !rom_b || vmmu_vm_create(&cfg, &vm) != 0)
        abort();
    /* RAM from the vm's memfd, which the pager can take away. */
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE};
    struct vmmu_region_desc a = {.type = VMMU_MEM_ROM, .gpa = ROM_A_GPA, .size = 4096,
                                 .host = rom_a};
    struct vmmu_region_desc b = {.type = VMMU_MEM_ROM, .gpa = ROM_B_GPA, .size = 4096,
                                 .host = rom_b, .flags = VMMU_REGION_ROM_REPORT_WRITES};
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = MMIO_SIZE,
                                 .mmio = &mmio_ops, .opaque = &mmio_tag};
    struct vmmu_region_desc n = {.type = VMMU_MEM_MMIO, .gpa = NULLIO_GPA, .size = 4096,
                                 .mmio = &null_ops};
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = DEV_SIZE,
                                 .opaque = &dev_tag};
    if (vmmu_region_add(vm, &r, &ram_id) || vmmu_region_add(vm, &a, &rom_a_id) ||
        vmmu_region_add(vm, &b, &rom_b_id) || vmmu_region_add(vm, &m, &mmio_id) ||
        vmmu_region_add(vm, &n, &nullio_id) || vmmu_region_add(vm, &d, &dev_id))
        abort();
    struct vmmu_region_info ri;
    if (vmmu_region_info(vm, ram_id, &ri) != 0 || !ri.host || ri.memfd < 0)
        abort();
    ram = ri.host;
    if (vmmu_p2m_set_device_handler(vm, device_cb, &dev_handler_tag) != 0)
        abort();
    /* All features, Intel, MAXPHYADDR 40; online on this thread. */
    if (vmmu_vcpu_create(vm, NULL, &vcpu) != 0 || vmmu_vcpu_online(vcpu) != 0)
        abort();
    vcpu_id = vmmu_vcpu_id(vcpu);
    fast = vmmu_access_fast(vcpu);
    if (!fast || fast->vcpu != vcpu)
        abort();
    if (getenv("FUZZ_ACCESS_STATS"))
        atexit(print_totals);
    trace = getenv("FUZZ_ACCESS_TRACE") != NULL;
}

/* ---- Watchpoints as the fuzzer added them -------------------------------- */

/* Whether @w covers a byte of the linear range [start, start + len), which
 * wraps at 4 GiB outside IA-32e paging (and at 2^64 in it). */
static bool wp_covers(const struct wp *w, uint64_t start, uint64_t len)
{
    uint64_t mask = la_mask();
    uint64_t s = start & mask, e = (s + len - 1) & mask;
    if (e >= s)
        return w->va <= e && s <= w->last;
    return (w->va <= mask && s <= w->last) || w->va <= e; /* [s, top] and [0, e] */
}

/* The live BEFORE watchpoint of one of @kinds covering a byte of the range. */
static const struct wp *before_wp(uint64_t start, uint64_t len, unsigned kinds)
{
    for (unsigned i = 0; i < nwps; i++)
        if (wps[i].live && (wps[i].flags & VMMU_WATCH_BEFORE) && (wps[i].flags & kinds) &&
            wp_covers(&wps[i], start, len))
            return &wps[i];
    return NULL;
}

static bool any_wp(uint64_t start, uint64_t len, unsigned kinds)
{
    for (unsigned i = 0; i < nwps; i++)
        if (wps[i].live && (wps[i].flags & kinds) && wp_covers(&wps[i], start, len))
            return true;
    return false;
}

static const struct wp *wp_by_id(uint32_t id)
{
    for (unsigned i = 0; i < nwps; i++)
        if (wps[i].id == id)
            return &wps[i];
    return NULL;
}

/* ---- Peeks: what the CPU does now ------------------------------------------ */

static void peek(uint64_t va, unsigned access, struct vmmu_x86_walk *w, uint32_t *pages)
{
    int rc = vmmu_x86_walk_peek(pg(), va, access & VMMU_X86_ACC_ALL, w);
    if (rc != 0)
        fail("vmmu_x86_walk_peek(%#llx, %#x) returned %d", (unsigned long long)va, access, rc);
    last_nlevels = 0;
    for (unsigned i = 0; i < w->nlevels; i++) {
        const struct vmmu_x86_walk_level *l = &w->levels[i];
        if (l->gpa < RAM_SIZE) {
            *pages |= 1u << (l->gpa >> 12);
            if (last_nlevels < sizeof(last_levels) / sizeof(last_levels[0])) {
                last_levels[last_nlevels].gpa = l->gpa;
                last_levels[last_nlevels].size = l->size;
                last_nlevels++;
            }
        }
    }
}

enum { PLAN_OK, PLAN_FAULT, PLAN_STOP };

struct plan_page {
    uint64_t lin;
    uint32_t len;
    uint64_t gpa;
    struct place pl;
    struct vmmu_x86_walk walk;
};

/* An access as the CPU makes it now: split at the page boundary, the
 * canonical check of the whole operand, the alignment check of a typed
 * operand, then each page translated and checked against BEFORE
 * watchpoints of @wkinds, in order. */
struct plan {
    int outcome;
    struct vmmu_x86_fault fault;
    unsigned npages;
    struct plan_page page[2];
    const struct wp *stop;
};

/* A page of the planned access is MMIO or a device model's. */
static bool plan_reaches_device(const struct plan *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].pl.type == VMMU_MEM_MMIO || p->page[i].pl.type == VMMU_MEM_DEVICE)
            return true;
    return false;
}

/* Whether a page of @p is a device model's: a write there may pend. */
static bool plan_may_pend(const struct plan *p)
{
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].pl.type == VMMU_MEM_DEVICE)
            return true;
    return false;
}

/* SDM 6.15: with CR0.AM and EFLAGS.AC set, a data or stack operand of 2,
 * 4 or 8 bytes at CPL 3 that is not naturally aligned raises #AC(0);
 * fetches and implicit supervisor accesses are not checked, and an
 * operand out of canonical form raises #GP/#SS instead. */
static bool align_faults(uint64_t va, uint32_t len, unsigned access)
{
    uint64_t l = lin(va);
    if ((len != 2 && len != 4 && len != 8) || !(l & (len - 1)) ||
        (access & (VMMU_X86_ACC_FETCH | VMMU_X86_ACC_IMPLICIT)) || pg()->cpl != 3 ||
        !(pg()->cr0 & VMMU_X86_CR0_AM) || !(pg()->rflags & VMMU_X86_RFLAGS_AC))
        return false;
    return !ia32e() || (vmmu_x86_canonical(pg(), l) && vmmu_x86_canonical(pg(), l + len - 1));
}

static void plan_access(uint64_t va, uint32_t len, unsigned access, unsigned wkinds, bool typed,
                        struct plan *p, uint32_t *pages)
{
    memset(p, 0, sizeof(*p));
    p->fault.vector = VMMU_X86_FAULT_NONE;
    uint64_t l = lin(va);
    uint32_t first = 4096 - (uint32_t)(l & 0xfff);
    if (first > len)
        first = len;
    if (first < len && ia32e() && !vmmu_x86_canonical(pg(), l + len - 1)) {
        p->outcome = PLAN_FAULT;
        p->fault.vector = (access & VMMU_X86_ACC_STACK) ? VMMU_X86_VEC_SS : VMMU_X86_VEC_GP;
        return;
    }
    if (typed && align_faults(va, len, access)) {
        p->outcome = PLAN_FAULT;
        p->fault.vector = VMMU_X86_VEC_AC;
        return;
    }
    for (unsigned i = 0; i < (first < len ? 2u : 1u); i++) {
        struct plan_page *pp = &p->page[i];
        pp->lin = i ? lin(l + first) : l;
        pp->len = i ? len - first : first;
        peek(pp->lin, access, &pp->walk, pages);
        if (!pp->walk.ok) {
            p->outcome = PLAN_FAULT;
            p->fault = pp->walk.fault;
            return;
        }
        pp->gpa = pp->walk.gpa;
        pp->pl = place_of(pp->gpa);
        p->npages = i + 1;
    }
    /* Every page translated, then the watchpoints: a fault anywhere in
     * the access comes before a stop. */
    for (unsigned i = 0; i < p->npages; i++)
        if (wkinds && (p->stop = before_wp(p->page[i].lin, p->page[i].len, wkinds)) != NULL) {
            p->outcome = PLAN_STOP;
            return;
        }
    p->outcome = PLAN_OK;
}

/* The byte at offset @off of a planned (translated) access. */
static uint64_t plan_gpa(const struct plan *p, uint32_t off)
{
    if (off < p->page[0].len)
        return p->page[0].gpa + off;
    return p->page[1].gpa + (off - p->page[0].len);
}

static bool fault_same(const struct vmmu_x86_fault *a, const struct vmmu_x86_fault *b)
{
    if (a->vector != b->vector || a->error_code != b->error_code)
        return false;
    return a->vector != VMMU_X86_VEC_PF || a->cr2 == b->cr2;
}

/* ---- RAM changes ------------------------------------------------------------ */

struct diff {
    uint32_t data; /* pages changed beyond A/D bits */
    uint32_t any;  /* pages changed at all */
};

NOCOV static struct diff ram_diff(void)
{
    struct diff d = {0, 0};
    if (!model_out_mask() && !memcmp(ram, shadow, RAM_SIZE))
        return d;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        if (pstate[p] != PS_RES || !memcmp(ram + p * 4096u, shadow + p * 4096u, 4096))
            continue; /* a page that is out is compared when it comes back */
        d.any |= 1u << p;
        if (page_changed_beyond_ad(p))
            d.data |= 1u << p;
    }
    return d;
}

static void shadow_sync(uint32_t pages)
{
    for (unsigned p = 0; p < RAM_PAGES; p++)
        if (pages & (1u << p))
            memcpy(shadow + p * 4096u, ram + p * 4096u, 4096);
}

/* The byte at @gpa before the operation, give or take A/D bits the
 * operation's own walks set: @got may have bits 5 and 6 set where the
 * shadow had them clear, in the low byte of an entry. */
NOCOV static bool pre_byte_matches(uint64_t gpa, uint8_t got, const uint8_t *mmio_pre,
                             const uint8_t *dev_pre)
{
    struct place pl = place_of(gpa);
    uint8_t want;
    switch (pl.pk) {
    case PK_RAM: {
        want = shadow[gpa];
        uint8_t d = got ^ want;
        return !d || (!(gpa & entry_mask()) && !(d & ~0x60u) && (got & d) == d);
    }
    case PK_MMIO:
        want = mmio_pre[gpa - MMIO_GPA];
        break;
    case PK_DEV:
        want = dev_pre[gpa - DEV_GPA];
        break;
    default:
        want = model_byte(gpa);
        break;
    }
    return got == want;
}

/* ---- The latch as the caller sees it ----------------------------------------- */

/* Whether the latch may be recording (or replaying) accesses now. */
static bool latch_maybe_on(void)
{
    return in_insn && (dis_n == 0 || dis_unknown);
}

static bool replaying(void)
{
    return latch_maybe_on() && model_pass >= 2;
}

/* Whether accesses now must agree with a peek of the current tables. */
static bool exact_ok(void)
{
    return !stale && !(in_insn && insn_tainted) && !replaying();
}

static void everything_dropped(void)
{
    stale = false;
    table_pages = 0;
}

/* A change of guest memory behind vmmu's back (the guest on another CPU,
 * a device's DMA): the pages' cached translations may be stale now. */
static void guest_changed(uint32_t pages)
{
    if (pages & table_pages)
        stale = true;
    shadow_sync(pages);
}

/* @before: the statistics before an access (which may only record while
 * the latch is on), or NULL. */
static void check_latch_stats(const struct vmmu_latch_stats *before, int rc, bool was_on)
{
    struct vmmu_latch_stats s;
    if (vmmu_latch_stats(vcpu, &s) != 0)
        fail("vmmu_latch_stats failed");
    if (s.entries_replayed < last_ls.entries_replayed ||
        s.xlates_replayed < last_ls.xlates_replayed ||
        s.events_replayed < last_ls.events_replayed || s.diverged < last_ls.diverged ||
        s.overflows < last_ls.overflows)
        fail("a cumulative latch statistic went down");
    if (s.pass != model_pass)
        fail("latch pass is %u, expected %u", s.pass, model_pass);
    if (s.entries > VMMU_LATCH_ENTRIES || s.xlates > VMMU_LATCH_XLATES ||
        s.events > VMMU_LATCH_EVENTS || s.bytes > VMMU_LATCH_BYTES)
        fail("latch holds more than its capacity: %u entries %u xlates %u events %u bytes",
             s.entries, s.xlates, s.events, s.bytes);
    if (model_pass == 0 && (s.entries || s.xlates || s.events || s.bytes))
        fail("no latch kept, but it holds %u entries %u xlates %u events %u bytes", s.entries,
             s.xlates, s.events, s.bytes);
    if (before && rc == VMMU_EOVERFLOW && s.overflows == before->overflows)
        fail("VMMU_EOVERFLOW returned but the overflow count did not grow");
    if (before && !was_on &&
        (s.entries != before->entries || s.xlates != before->xlates ||
         s.events != before->events || s.bytes != before->bytes))
        fail("the latch recorded while off: entries %u->%u xlates %u->%u events %u->%u",
             before->entries, s.entries, before->xlates, s.xlates, before->events, s.events);
    if (!dis_unknown && fast->slow != (unsigned)(in_insn && dis_n == 0))
        fail("vmmu_access_fast()->slow is %u, the latch is %s", fast->slow,
             (in_insn && dis_n == 0) ? "on" : "off");
    last_ls = s;
}

static void check_tlb_stats(void)
{
    struct vmmu_tlb_stats s;
    uint64_t now[NTLBSTATS];
    if (vmmu_vcpu_stats(vcpu, &s) != 0)
        fail("vmmu_vcpu_stats failed");
    memcpy(now, &s, sizeof(now));
    for (unsigned i = 0; i < NTLBSTATS; i++)
        if (now[i] < last_ts[i])
            fail("TLB statistic %u went down", i);
    memcpy(last_ts, now, sizeof(now));
}

/* ---- One operation ------------------------------------------------------------- */

enum hits_rule {
    HITS_NONE,  /* the operation records no hit (probes, faults, refused calls) */
    HITS_STOP,  /* exactly one BEFORE hit */
    HITS_AFTER, /* completed: hits of its kinds on the bytes it accessed */
    HITS_ANY,   /* only checked for consistency */
};

#define MAX_RANGES 8

struct ctx {
    const char *name;
    bool exact_pre;
    bool replay;
    bool plain;   /* not an access */
    bool latch_on; /* the latch may record (at the start) */
    struct vmmu_latch_stats ls;
    struct vmmu_tlb_stats ts;
    /* Ranges to peek after the operation (its pages). */
    unsigned nranges;
    struct {
        uint64_t va;
        uint32_t len;
        unsigned access, wkinds;
        bool typed; /* an operand whose alignment the CPU checks (#AC) */
    } range[MAX_RANGES];
    struct plan plan[MAX_RANGES];
    uint32_t plan_pages;
    struct diff diff;
    bool exact;
    int rc;
    /* Watch hits. */
    enum hits_rule hits;
    unsigned kinds;          /* VMMU_WATCH_READ/WRITE the operation makes */
    uint64_t acc_va;         /* the bytes it accessed (HITS_AFTER) */
    uint32_t acc_len;
    bool expect_after;       /* exact: every covering watchpoint must have hit */
    uint32_t pre_out;        /* RAM pages out when it began */
};

static void op_begin(struct ctx *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->name = cur_op = name;
    c->exact_pre = exact_ok();
    c->replay = replaying();
    c->latch_on = latch_maybe_on();
    c->pre_out = model_out_mask();
    io_n = 0;
    code_calls = 0;
    code_called = 0;
    if (vmmu_latch_stats(vcpu, &c->ls) != 0 || vmmu_vcpu_stats(vcpu, &c->ts) != 0)
        fail("statistics");
    c->hits = HITS_ANY;
}

static void add_range(struct ctx *c, uint64_t va, uint32_t len, unsigned access, unsigned wkinds,
                      bool typed)
{
    if (c->nranges < MAX_RANGES && len) {
        c->range[c->nranges].va = va;
        c->range[c->nranges].len = len;
        c->range[c->nranges].access = access;
        c->range[c->nranges].wkinds = wkinds;
        c->range[c->nranges].typed = typed;
        c->nranges++;
    }
}

/* After the operation: what changed, the peeks of its pages, and whether
 * its answers can be compared with them. */
static void settle(struct ctx *c)
{
    /* What the operation left out stays out until here; then the checks
     * read RAM, so it all comes back (bit for bit). */
    pager_check(c->name);
    if (!c->plain)
        ram_in(~0u, false, c->name);
    c->diff = ram_diff();
    for (unsigned i = 0; i < c->nranges; i++)
        plan_access(c->range[i].va, c->range[i].len, c->range[i].access, c->range[i].wkinds,
                    c->range[i].typed, &c->plan[i], &c->plan_pages);
    for (unsigned i = 0; i < c->nranges; i++)
        for (unsigned k = 0; k < c->plan[i].npages; k++)
            if (c->plan[i].page[k].pl.pk == PK_RAM)
                recent_gpa[recent_next++ & 3] = c->plan[i].page[k].gpa;
    table_pages |= c->plan_pages;
    if (c->diff.data & table_pages)
        stale = true;
    /* The operation's own writes may have changed the tables its pages
     * were translated through: then the peek no longer shows what it saw. */
    c->exact = c->exact_pre && !(c->diff.data & c->plan_pages);
    if (c->exact)
        n_exact++;
}

/* Nothing happened: no callback, no code handler, no RAM byte changed
 * (A/D bits of walks aside, unless @strict). */
static void expect_no_effect(const struct ctx *c, const char *why, bool strict)
{
    if (io_n)
        fail("%s, yet %u MMIO/device callbacks ran", why, io_n);
    if (code_calls)
        fail("%s, yet the code handler ran", why);
    if (c->diff.data || (strict && c->diff.any))
        fail("%s, yet RAM changed (pages %#x, beyond A/D bits: %#x)", why, c->diff.any,
             c->diff.data);
}

/* The callbacks of an access in one direction come in naturally aligned
 * pieces, ascending: each starts where the previous ended, unless that
 * one ended a page and this one starts one (the next linear page may be
 * any frame).  Reads never follow writes in a single access. */
static void check_io_stream(bool rmw)
{
    unsigned n = io_n < IO_LOG_MAX ? io_n : IO_LOG_MAX;
    for (int dir = 0; dir < 2; dir++) {
        const struct io_call *prev = NULL;
        for (unsigned i = 0; i < n; i++) {
            const struct io_call *c = &io_log[i];
            if (c->write != dir)
                continue;
            if (prev && c->gpa != prev->gpa + prev->size &&
                (((prev->gpa + prev->size) & 0xfff) || (c->gpa & 0xfff)))
                fail("callback %u at gpa %#llx does not follow the previous one (gpa %#llx size "
                     "%u) in ascending order", i, (unsigned long long)c->gpa,
                     (unsigned long long)prev->gpa, prev->size);
            prev = c;
        }
    }
    bool wrote = false;
    for (unsigned i = 0; i < n; i++) {
        if (io_log[i].write)
            wrote = true;
        else if (wrote)
            fail("callback %u reads after a write of the same %s", i,
                 rmw ? "read-modify-write" : "access");
    }
}

/* A string operation's element stream on one side: with elements aligned
 * to their size, each element is one callback; they ascend (or descend,
 * backwards) by one element within a page. */
static void check_io_elements(unsigned elem, bool backward, bool aligned)
{
    unsigned n = io_n < IO_LOG_MAX ? io_n : IO_LOG_MAX;
    if (!aligned)
        return;
    for (int dir = 0; dir < 2; dir++) {
        const struct io_call *prev = NULL;
        for (unsigned i = 0; i < n; i++) {
            const struct io_call *c = &io_log[i];
            if (c->write != dir)
                continue;
            if (c->size != elem)
                fail("callback %u of size %u for an aligned element of %u bytes", i, c->size,
                     elem);
            if (prev) {
                bool ok = backward ? (c->gpa + elem == prev->gpa ||
                                      (!(prev->gpa & 0xfff) && !((c->gpa + elem) & 0xfff)))
                                   : (c->gpa == prev->gpa + elem ||
                                      (!((prev->gpa + elem) & 0xfff) && !(c->gpa & 0xfff)));
                if (!ok)
                    fail("callback %u at gpa %#llx after an element at %#llx: not the next "
                         "element %s", i, (unsigned long long)c->gpa,
                         (unsigned long long)prev->gpa, backward ? "down" : "up");
            }
            prev = c;
        }
    }
}

/* A negative code from an access after its checks passed: the callbacks
 * before the failing one ran, the failing one is the last, and the code
 * is its own (VMMU_EMMIO for MMIO).  A successful access had no failing
 * callback. */
static void check_io_result(int rc, bool string_op)
{
    unsigned n = io_n < IO_LOG_MAX ? io_n : IO_LOG_MAX;
    for (unsigned i = 0; i + 1 < n; i++)
        if (io_log[i].rc)
            fail("callback %u failed with %d, yet callback %u ran after it", i, io_log[i].rc,
                 i + 1);
    const struct io_call *last = n ? &io_log[n - 1] : NULL;
    bool last_failed = last && last->rc && io_n <= IO_LOG_MAX;
    if (rc == VMMU_EMMIO && !(last_failed && !last->dev))
        fail("VMMU_EMMIO, but no MMIO callback failed");
    if ((RCB(rc) & RC_DEVICE) && rc != 0 && !(last_failed && last->dev && last->rc == rc))
        fail("%d (%s) from the device model, but no device call returned it", rc,
             vmmu_error_name(rc));
    if (last_failed) {
        int want = last->dev ? last->rc : VMMU_EMMIO;
        if (rc != want && !(string_op && rc == 0))
            fail("the last callback failed (%d), the access returned %d (want %d)", last->rc, rc,
                 want);
    }
    if (rc == VMMU_EOVERFLOW && !latch_maybe_on())
        fail("VMMU_EOVERFLOW outside an instruction");
}

/* A fault as the CPU can raise it for @len bytes at @va with @access
 * (a write-kind access when @write; an operand whose alignment the CPU
 * checks when @typed). */
static void check_fault_consistent(const struct vmmu_x86_fault *f, uint64_t va, uint64_t len,
                                   unsigned access, bool write, bool typed)
{
    uint64_t l = lin(va);
    switch (f->vector) {
    case VMMU_X86_VEC_GP:
    case VMMU_X86_VEC_SS: {
        if (f->error_code != 0)
            fail("#%s with error code %#x", f->vector == VMMU_X86_VEC_GP ? "GP" : "SS",
                 f->error_code);
        bool nc = ia32e() &&
                  (!vmmu_x86_canonical(pg(), l) || !vmmu_x86_canonical(pg(), l + len - 1));
        if (!nc)
            fail("#%s for a canonical access of %llu bytes at %#llx",
                 f->vector == VMMU_X86_VEC_GP ? "GP" : "SS", (unsigned long long)len,
                 (unsigned long long)va);
        if ((f->vector == VMMU_X86_VEC_SS) != !!(access & VMMU_X86_ACC_STACK))
            fail("#%s for an access %s STACK", f->vector == VMMU_X86_VEC_GP ? "GP" : "SS",
                 (access & VMMU_X86_ACC_STACK) ? "with" : "without");
        break;
    }
    case VMMU_X86_VEC_PF: {
        uint32_t ec = f->error_code;
        bool user = pg()->cpl == 3 && !(access & VMMU_X86_ACC_IMPLICIT);
        if ((ec & ~0x3fu) || ((ec & VMMU_X86_PF_RSVD) && !(ec & VMMU_X86_PF_P)) ||
            !(ec & VMMU_X86_PF_W) != !write || !(ec & VMMU_X86_PF_U) != !user ||
            ((ec & VMMU_X86_PF_I) && !(access & VMMU_X86_ACC_FETCH)) ||
            ((ec & VMMU_X86_PF_PK) && (access & VMMU_X86_ACC_FETCH)))
            fail("#PF error code %#x for a %s%s access (cpl %u)", ec, write ? "write" : "read",
                 (access & VMMU_X86_ACC_FETCH) ? " (fetch)" : "", pg()->cpl);
        uint64_t d = (f->cr2 - l) & la_mask();
        if (f->cr2 & ~la_mask())
            fail("CR2 %#llx is not a linear address of this mode", (unsigned long long)f->cr2);
        if (d != 0 && ((f->cr2 & 0xfff) || d >= len))
            fail("CR2 %#llx is neither the first byte of the access (%#llx, %llu bytes) nor a "
                 "page start inside it", (unsigned long long)f->cr2, (unsigned long long)l,
                 (unsigned long long)len);
        if (ia32e() && !vmmu_x86_canonical(pg(), f->cr2))
            fail("#PF with a non-canonical CR2 %#llx", (unsigned long long)f->cr2);
        break;
    }
    case VMMU_X86_VEC_AC:
        n_align_faults++;
        if (f->error_code != 0 || f->cr2 != 0)
            fail("#AC with error code %#x CR2 %#llx", f->error_code, (unsigned long long)f->cr2);
        if (!typed || !align_faults(va, (uint32_t)len, access))
            fail("#AC for a%s access of %llu bytes at %#llx (access %#x, cpl %u, AM %d, AC %d)",
                 typed ? " typed" : "n untyped", (unsigned long long)len,
                 (unsigned long long)va, access, pg()->cpl, !!(pg()->cr0 & VMMU_X86_CR0_AM),
                 !!(pg()->rflags & VMMU_X86_RFLAGS_AC));
        break;
    default:
        fail("fault vector %d", f->vector);
    }
}

/* After every operation. */
static void op_end(struct ctx *c)
{
    if (memcmp(rom_a, rom_a_model, 4096) || memcmp(rom_b, rom_b_model, 4096))
        fail("ROM changed");
    mid_end(c->diff.any);
    shadow_sync(c->diff.any);
    pager_check(c->name);
    check_latch_stats(c->plain ? NULL : &c->ls, c->rc, c->latch_on);
    check_tlb_stats();
    if (c->rc == VMMU_EINVAL)
        n_einval++;
    n_ops++;

    if (lazy_hits && c->hits != HITS_STOP)
        return;
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX];
    uint64_t dropped = 0;
    int n = vmmu_watch_take_hits(vcpu, h, VMMU_WATCH_HITS_MAX, &dropped);
    if (n < 0 || n > (int)VMMU_WATCH_HITS_MAX)
        fail("vmmu_watch_take_hits returned %d", n);
    bool lazy_backlog = lazy_hits; /* hits of earlier operations may be among them */
    unsigned before = 0;
    for (int i = 0; i < n; i++) {
        const struct wp *w = wp_by_id(h[i].id);
        unsigned kinds = h[i].flags & VMMU_WATCH_ACCESS;
        if (!w)
            fail("hit names watchpoint %u, never added", h[i].id);
        if ((h[i].flags & ~VMMU_WATCH_FLAGS_ALL) || !kinds || (kinds & ~w->flags) ||
            ((h[i].flags & VMMU_WATCH_BEFORE) && !(w->flags & VMMU_WATCH_BEFORE)))
            fail("hit flags %#x for watchpoint %u of flags %#x", h[i].flags, h[i].id, w->flags);
        if (!h[i].len || !wp_covers(w, h[i].va, h[i].len))
            fail("hit at %#llx (%u bytes) is outside watchpoint %u [%#llx, %#llx]",
                 (unsigned long long)h[i].va, h[i].len, h[i].id, (unsigned long long)w->va,
                 (unsigned long long)w->last);
        if (!lazy_backlog && (kinds & ~c->kinds))
            fail("hit of kinds %#x from an operation making %#x", kinds, c->kinds);
        if (h[i].flags & VMMU_WATCH_BEFORE)
            before++;
    }
    if (lazy_backlog)
        return;
    switch (c->hits) {
    case HITS_NONE:
        if (n || dropped)
            fail("%d watchpoint hits from an operation that records none", n);
        break;
    case HITS_STOP:
        if (before != 1 || n != 1)
            fail("stopped by a watchpoint: %d hits, %u BEFORE (want exactly one)", n, before);
        break;
    case HITS_AFTER:
        if (before)
            fail("a BEFORE hit from an operation that was not stopped");
        if (!c->expect_after || dropped || n == (int)VMMU_WATCH_HITS_MAX)
            break;
        for (unsigned i = 0; i < nwps; i++) {
            const struct wp *w = &wps[i];
            if (!w->live || (w->flags & VMMU_WATCH_BEFORE) || !(w->flags & c->kinds) ||
                !c->acc_len || !wp_covers(w, c->acc_va, c->acc_len))
                continue;
            bool found = false;
            for (int j = 0; j < n; j++)
                found |= h[j].id == w->id;
            if (!found)
                fail("watchpoint %u [%#llx, %#llx] flags %#x covers the access (%#llx, %u "
                     "bytes, kinds %#x) but recorded no hit", w->id, (unsigned long long)w->va,
                     (unsigned long long)w->last, w->flags, (unsigned long long)c->acc_va,
                     c->acc_len, c->kinds);
        }
        break;
    case HITS_ANY:
        break;
    }
}

/* ---- Operations: decoding ----------------------------------------------------- */

enum {
    OP_READ, OP_WRITE, OP_LOAD, OP_STORE, OP_RMW, OP_CMPXCHG, OP_REP_MOVS, OP_REP_STOS,
    OP_REP_RESUME, OP_PROBE, OP_PROBE_NOFAULT, OP_PROBE_HIT, OP_PREPARE, OP_PREP_READ,
    OP_PREP_WRITE, OP_PREP_SET, OP_PREP_MOVE,
    N_ACCESS_OPS
};

static const char *const op_names[N_ACCESS_OPS] = {
    "vmmu_access_read", "vmmu_access_write", "vmmu_access_load", "vmmu_access_store",
    "vmmu_access_rmw", "vmmu_access_cmpxchg", "vmmu_access_rep_movs", "vmmu_access_rep_stos",
    "vmmu_access_rep (resumed)", "vmmu_access_probe", "vmmu_access_probe_nofault",
    "vmmu_access_probe_hit", "vmmu_access_prepare", "vmmu_prepared_read",
    "vmmu_prepared_write", "vmmu_prepared_set", "vmmu_prepared_move",
};

/* ---- Host changes from callbacks ---------------------------------------------------- */

NOCOV static void mid_take(uint32_t cleared, const char *where)
{
    pager_sync(where);
    const uint8_t *ref = mid_on ? mid_snap : shadow;
    uint32_t changed = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        const uint8_t *now = current_page(p);
        if (memcmp(now, ref + p * 4096u, 4096) != 0)
            changed |= 1u << p;
        memcpy(mid_snap + p * 4096u, now, 4096);
    }
    mid_expect = (mid_expect | changed) & ~cleared;
    mid_cleared |= cleared;
    mid_on = true;
}

static void slots_held(void)
{
    for (unsigned i = 0; i < SLOTS; i++)
        slots[i].held = true;
}

static uint32_t cb_target(unsigned where, uint64_t gpa_page)
{
    unsigned t = cb_plan.what >> 5;
    switch (t & 3) {
    case 0:
        if (where == CB_CODE)
            return page_bit(gpa_page);
        if (cur_kind == OP_REP_MOVS || cur_kind == OP_REP_STOS || cur_kind == OP_REP_RESUME) {
            struct vmmu_x86_walk w;
            if (vmmu_x86_walk_peek(pg(), lin(rep.dst), VMMU_X86_ACC_WRITE, &w) == 0 && w.ok &&
                page_bit(w.gpa))
                return page_bit(w.gpa);
        }
        /* fall through: a page of a descriptor prepared for writing */
    case 1:
        for (unsigned k = 0; k < SLOTS; k++) {
            const struct slot *s = &slots[(k + (t >> 2)) % SLOTS];
            if (!s->ok || !(s->d.access & VMMU_X86_ACC_WRITE))
                continue;
            for (unsigned j = 0; j < s->d.npages && j < 2; j++)
                if (s->d.page[j].type == VMMU_MEM_RAM)
                    return page_bit(s->d.page[j].gpa);
        }
        /* fall through */
    case 2:
        return page_bit(recent_gpa[(t >> 2) & 3]);
    default:
        if (last_nlevels)
            return page_bit(last_levels[(t >> 2) % last_nlevels].gpa);
        return page_bit(pg()->cr3 & 0x1f000ull);
    }
}

static bool remark_later(unsigned where, uint64_t gpa_page, uint32_t page)
{
    if (where != CB_CODE || page != page_bit(gpa_page))
        return false;
    mid_remarked |= page; /* a later call for it may come after the write */
    return true;
}

static void cb_action(unsigned where, uint64_t gpa_page)
{
    if (!cb_plan.on || cb_plan.where != where || ++cb_plan.seen != cb_plan.at)
        return;
    cb_plan.on = false;
    uint32_t page = cb_target(where, gpa_page);
    if (!page)
        return;
    n_cb_actions++;
    const char *w = cb_names[where];
    unsigned what = cb_plan.what & 7, var = (cb_plan.what >> 3) & 3;
    if (!pager && what < 4)
        what += 4;
    struct vmmu_gpa_range range = {(uint64_t)__builtin_ctz(page) << 12, 4096};
    if (trace)
        fprintf(stderr, "trace:   %s: host change %u/%u on gpa %#llx\n", w, what, var,
                (unsigned long long)range.gpa);
    switch (what) {
    case 0:
        host_evict(page, false, w);
        break;
    case 1:
        host_evict(page, false, w);
        host_balance(var & 1, w);
        break;
    case 2:
        ram_in(page, var & 1, w);
        break;
    case 3:
        host_balance(var & 1, w);
        break;
    case 4:
        mid_take(0, w);
        expect_rc_cb(vmmu_code_mark(vm, range.gpa, 1), 0, "vmmu_code_mark", w);
        code_maybe |= page;
        if (code_handler_on && !remark_later(where, gpa_page, page))
            mid_marked |= page;
        mid_code_pages |= page;
        slots_held();
        break;
    case 5: {
        uint32_t set = var == 0 ? VMMU_PAGE_CODE : var == 3 ? VMMU_PAGE_DIRTY : 0;
        uint32_t clear = var == 1 ? VMMU_PAGE_CODE : var == 2 ? VMMU_PAGE_DIRTY : 0;
        mid_take((clear & VMMU_PAGE_DIRTY) ? page : 0, w);
        expect_rc_cb(vmmu_page_state_change(vm, &range, 1, set, clear), 0,
                     "vmmu_page_state_change", w);
        if (set & VMMU_PAGE_CODE) {
            code_maybe |= page;
            if (code_handler_on && !remark_later(where, gpa_page, page))
                mid_marked |= page;
        }
        if (clear & VMMU_PAGE_CODE) {
            code_sure &= ~page;
            mid_marked &= ~page;
        }
        if (clear & VMMU_PAGE_DIRTY)
            dirty_expect &= ~page;
        mid_code_pages |= page;
        slots_held();
        break;
    }
    case 6: {
        uint64_t bitmap[1] = {0};
        if (!dirty_on) {
            expect_rc_cb(vmmu_dirty_log_get_and_clear(vm, ram_id, bitmap, 1, NULL), VMMU_EINVAL,
                         "vmmu_dirty_log_get_and_clear (logging off)", w);
            break;
        }
        mid_take(0, w);
        expect_rc_cb(vmmu_dirty_log_get_and_clear(vm, ram_id, bitmap, 1, NULL), 0,
                     "vmmu_dirty_log_get_and_clear", w);
        uint32_t missed = (dirty_expect | mid_expect) & ~(uint32_t)bitmap[0];
#if FUZZ_ACCESS_EXCUSE_HELD_PREPARED
        missed &= ~dirty_excused;
#endif
        if (missed)
            fail("%s: dirty bitmap %#llx misses pages %#x that vmmu wrote", w,
                 (unsigned long long)bitmap[0], missed);
        dirty_expect = 0;
        dirty_excused = 0;
        mid_expect = 0;
        mid_cleared = ~0u;
        slots_held();
        break;
    }
    default: {
        bool on = var & 1;
        mid_take(on ? ~0u : 0, w);
        expect_rc_cb(vmmu_dirty_log_enable(vm, ram_id, on), 0, "vmmu_dirty_log_enable", w);
        dirty_on = on;
        if (on) {
            dirty_expect = 0;
            dirty_excused = 0;
            dirty_writes_since = false;
        }
        slots_held();
        break;
    }
    }
}

/* At the end of an operation that made such a call: pages written after
 * it must be in the next dirty bitmap, and a page it marked as code that
 * was written after it must have called the handler.  A write the
 * operation made through what it had translated before the call is the
 * held-descriptor case (FUZZ_ACCESS_EXCUSE_HELD_PREPARED). */
NOCOV static void mid_end(uint32_t diff_any)
{
    if (!mid_on) {
        if (dirty_on)
            dirty_expect |= diff_any;
        return;
    }
    uint32_t after = 0, after_data = 0;
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        const uint8_t *now = current_page(p), *then = mid_snap + p * 4096u;
        if (memcmp(now, then, 4096) == 0)
            continue;
        after |= 1u << p;
        if (page_differs_beyond_ad(now, then))
            after_data |= 1u << p;
    }
    if (dirty_on) {
        dirty_expect |= mid_expect | after;
#if FUZZ_ACCESS_EXCUSE_HELD_PREPARED
        dirty_excused |= after & mid_cleared;
#endif
    }
    uint32_t missed = after_data & mid_marked;
#if FUZZ_ACCESS_EXCUSE_HELD_PREPARED
    missed = 0;
#endif
    if (missed)
        fail("pages %#x were marked as code inside a callback and written after it, without "
             "calling the code handler", missed);
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        uint32_t bit = 1u << p, st = 0;
        if (!((mid_code_pages | mid_marked) & bit))
            continue;
        (void)vmmu_page_state_get(vm, p * 4096ull, &st);
        code_maybe &= ~bit;
        code_sure &= ~bit;
        if (st & VMMU_PAGE_CODE) {
            code_maybe |= bit;
            if (code_handler_on)
                code_sure |= bit;
        }
    }
    mid_on = false;
    mid_expect = mid_cleared = mid_marked = mid_code_pages = mid_remarked = 0;
}


/* One access operation, decoded once so that a re-execution repeats it. */
struct op {
    uint8_t kind;
    uint8_t bad;      /* 0, or which wrong argument (1-based) */
    uint8_t io_at, io_what;
    uint8_t slot, slot2, elem, flags;
    uint8_t cb, cb2; /* a host change from inside a callback (cb_plan) */
    unsigned access;
    uint32_t len, off, n;
    uint64_t va, va2, value, value2, count, budget;
    /* CMPXCHG's expected value, fixed by the first run (a re-execution
     * passes the same arguments). */
    bool exp_set;
    uint8_t exp[16];
};

/* What an access returned, for the comparison of passes. */
struct res {
    int rc;
    struct vmmu_x86_fault fault;
    uint64_t hash;
    bool exempt;   /* may differ between passes */
    bool stops;    /* the instruction ends here (fault, error, interrupted REP) */
};

NOCOV static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    h ^= 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t pick_va(struct reader *r)
{
    unsigned sel = (unsigned)take(r, 1);
    const struct window *w = &win[(sel >> 3) & 1];
    uint64_t page = (sel >> 4) & 7;
    switch (sel & 7) {
    case 0:
    case 1:
        if (built)
            return w->va + page * 4096 + (take(r, 2) & 0xfff);
        return take(r, 3) & 0x3fffff;
    case 2: /* the end of a page, so that the access crosses */
        if (built)
            return w->va + page * 4096 + 4096 - 1 - (take(r, 1) & 31);
        return ((take(r, 2) & 0x3ff) << 12) + 4096 - 1 - (take(r, 1) & 31);
    case 3:
        return (ring[(sel >> 3) & 3] & ~0xfffull) | (take(r, 2) & 0xfff);
    case 4:
        return take(r, 8);
    case 5: { /* edges: 4 GiB, canonical holes, the top */
        static const uint64_t edges[8] = {
            0x100000000ull,         0x0000800000000000ull, 0xffff800000000000ull, 0,
            0x0100000000000000ull,  0xff00000000000000ull, 0x40000000ull,         0x200000ull,
        };
        return edges[(sel >> 3) & 7] - 32 + (take(r, 1) & 63);
    }
    default: { /* physical pages of interest (paging off, large pages from gpa 0) */
        static const uint64_t at[8] = {0x10000, 0x1f000, ROM_A_GPA, ROM_B_GPA,
                                       MMIO_GPA,  NULLIO_GPA, DEV_GPA, HOLE_GPA};
        uint64_t off = take(r, 2) & 0x1fff;
        if ((sel & 7) == 7)
            off = 0x1000 - 8 + (off & 15); /* crossing into the next page */
        return at[(sel >> 3) & 7] + off;
    }
    }
}

static uint32_t pick_len(struct reader *r)
{
    static const uint32_t lens[32] = {1,   2,   3,   4,   5,   6,    7,    8,    9,    15,  16,
                                      17,  24,  31,  32,  33,  63,   64,   100,  255,  256, 511,
                                      512, 777, 1000, 2048, 4000, 4095, 4096, 8,   2,   4};
    unsigned b = (unsigned)take(r, 1);
    if (b & 0x80)
        return 1 + (uint32_t)(take(r, 2) % 4096);
    return lens[b & 31];
}

/* Access attributes: the kind from @kinds (0 read, 1 fetch, 2 write), plus
 * IMPLICIT and STACK from the input. */
static unsigned pick_access(unsigned b, unsigned kind)
{
    unsigned a = kind == 1 ? VMMU_X86_ACC_FETCH : kind == 2 ? VMMU_X86_ACC_WRITE : 0;
    if (b & 1)
        a |= VMMU_X86_ACC_IMPLICIT;
    if (b & 2)
        a |= VMMU_X86_ACC_STACK;
    return a;
}

static void decode_access(struct reader *r, struct op *o, unsigned kind)
{
    memset(o, 0, sizeof(*o));
    o->kind = (uint8_t)kind;
    unsigned b = (unsigned)take(r, 1);
    o->bad = (b & 7) == 7 ? (uint8_t)(1 + (b >> 3)) : 0;
    unsigned io = (unsigned)take(r, 1);
    o->io_at = (io & 0x18) ? (uint8_t)(io & 7) : 0; /* mostly a callback in the first few */
    o->io_what = (uint8_t)(io >> 5);
    o->flags = (uint8_t)take(r, 1);
    o->cb = (uint8_t)take(r, 1);
    if (o->cb & 1)
        o->cb2 = (uint8_t)take(r, 1);
    switch (kind) {
    case OP_READ:
    case OP_WRITE:
        o->va = pick_va(r);
        o->len = pick_len(r);
        o->access = pick_access(o->flags, kind == OP_WRITE ? 2 : (o->flags >> 2) & 1);
        o->value = take(r, 8);
        break;
    case OP_LOAD:
    case OP_STORE:
    case OP_RMW:
    case OP_CMPXCHG:
        o->va = pick_va(r);
        o->len = 1u << (take(r, 1) % 5); /* 1 .. 16 */
        o->access = pick_access(o->flags, kind == OP_LOAD ? (o->flags >> 2) & 1 : 0);
        o->value = take(r, 8);
        o->value2 = take(r, 8);
        o->n = (uint32_t)take(r, 1); /* RMW operation, CMPXCHG "expect the current value" */
        break;
    case OP_REP_MOVS:
    case OP_REP_STOS: {
        o->va = pick_va(r);  /* destination */
        o->va2 = pick_va(r); /* source */
        unsigned e = (unsigned)take(r, 1);
        o->elem = (uint8_t)(1u << (e & 3));
        unsigned c = (unsigned)take(r, 1);
        switch (c & 3) {
        case 0:
            o->count = 1 + (c >> 2);
            break;
        case 1:
            o->count = take(r, 2);
            break;
        case 2:
            o->count = ~0ull - (c >> 2);
            break;
        default:
            o->count = 0x100000000ull + take(r, 1);
            break;
        }
        switch ((c >> 4) & 3) {
        case 0:
            o->budget = ~0ull;
            break;
        case 1:
            o->budget = take(r, 1);
            break;
        case 2:
            o->budget = 4096;
            break;
        default:
            o->budget = take(r, 2);
            break;
        }
        o->value = take(r, 8);
        o->access = pick_access(o->flags, (o->flags >> 2) & 1) & ~VMMU_X86_ACC_WRITE;
        break;
    }
    case OP_REP_RESUME:
        o->budget = (o->flags & 1) ? ~0ull : take(r, 2);
        break;
    case OP_PROBE:
    case OP_PROBE_NOFAULT:
    case OP_PROBE_HIT:
        o->va = pick_va(r);
        o->len = (o->flags & 0x80) ? pick_len(r) : 1u << (take(r, 1) % 5);
        o->access = pick_access(o->flags, ((o->flags >> 2) & 3) % 3);
        break;
    case OP_PREPARE:
        o->slot = (uint8_t)(take(r, 1) % SLOTS);
        o->va = pick_va(r);
        o->len = pick_len(r);
        o->access = pick_access(o->flags, ((o->flags >> 2) & 3) % 3);
        if ((o->access & VMMU_X86_ACC_WRITE) && (o->flags & 0x10))
            o->access |= VMMU_ACCESS_READ_WRITE;
        break;
    default: { /* prepared operations */
        o->slot = (uint8_t)(take(r, 1) % SLOTS);
        o->slot2 = (uint8_t)(take(r, 1) % SLOTS);
        unsigned f = (unsigned)take(r, 1);
        o->off = (uint32_t)take(r, 2) & 0xfff;
        o->n = (f & 1) ? (uint32_t)take(r, 2) & 0x1fff : ~0u; /* ~0: to the end */
        o->elem = (uint8_t)(1u << ((f >> 1) & 3));
        o->value = take(r, 8);
        if (f & 0x10)
            o->off = 0; /* often the whole descriptor */
        break;
    }
    }
}

/* Bytes a write operation stores (deterministic from the op). */
NOCOV static void op_data(const struct op *o, uint8_t *buf, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((o->value >> (8 * (i & 7))) + (i >> 3) * 0x9d);
}

/* ---- Operations: checks shared by the accesses ------------------------------- */

/* A call with a wrong argument: VMMU_EINVAL, and nothing changed at all. */
static void refused(struct ctx *c, int rc, const char *what)
{
    c->rc = rc;
    if (rc != VMMU_EINVAL)
        fail("%s: returned %d (%s) instead of VMMU_EINVAL", what, rc, vmmu_error_name(rc));
    settle(c);
    expect_no_effect(c, "refused", true);
    struct vmmu_tlb_stats ts;
    if (vmmu_vcpu_stats(vcpu, &ts) != 0 || ts.walks != c->ts.walks || ts.fills != c->ts.fills)
        fail("%s: refused, yet the TLB walked or filled", what);
    c->hits = HITS_NONE;
    op_end(c);
}

static const char *outcome_name(int o)
{
    return o == PLAN_OK ? "complete" : o == PLAN_FAULT ? "fault" : "stop at a watchpoint";
}

/* The outcome of a single access (plan 0): its code from @table, then
 * either a stop by a BEFORE watchpoint covering it, a fault the CPU can
 * raise (the peek's when exact), an error after its checks passed, or
 * completion.  Returns true when it completed. */
static bool access_outcome(struct ctx *c, int rc, const struct vmmu_x86_fault *f, uint64_t va,
                           uint32_t len, unsigned access, unsigned wkinds, bool write,
                           bool typed, uint64_t table)
{
    const struct plan *p = &c->plan[0];
    c->rc = rc;
    check_rc(c->name, rc, table);
    if (rc == VMMU_EINVAL)
        fail("VMMU_EINVAL for valid arguments (va %#llx len %u access %#x)",
             (unsigned long long)va, len, access);
    if (rc == 0 && f->vector == VMMU_ACCESS_STOP_WATCH) {
        n_stops++;
        if (!wkinds || !before_wp(lin(va), len, wkinds))
            fail("stopped by a watchpoint, but no BEFORE watchpoint of kinds %#x covers [%#llx, "
                 "+%u)", wkinds, (unsigned long long)lin(va), len);
        if (c->exact && p->outcome != PLAN_STOP)
            fail("stopped by a watchpoint; the CPU would %s (fault %d/%#x/%#llx)",
                 outcome_name(p->outcome), p->fault.vector, p->fault.error_code,
                 (unsigned long long)p->fault.cr2);
        expect_no_effect(c, "stopped by a watchpoint", false);
        c->hits = HITS_STOP;
        return false;
    }
    if (rc == 0 && f->vector != VMMU_X86_FAULT_NONE) {
        n_faults++;
        check_fault_consistent(f, va, len, access, write, typed);
        if (c->exact) {
            n_exact_faults++;
            if (p->outcome != PLAN_FAULT || !fault_same(f, &p->fault))
                fail("fault %d/%#x/CR2 %#llx; the CPU would %s (fault %d/%#x/CR2 %#llx)",
                     f->vector, f->error_code, (unsigned long long)f->cr2,
                     outcome_name(p->outcome), p->fault.vector, p->fault.error_code,
                     (unsigned long long)p->fault.cr2);
        }
        expect_no_effect(c, "faulted", false);
        c->hits = HITS_NONE;
        return false;
    }
    if (rc == 0) {
        if (f->vector != VMMU_X86_FAULT_NONE)
            fail("fault vector %d", f->vector);
        if (c->exact && p->outcome != PLAN_OK)
            fail("completed; the CPU would %s (fault %d/%#x/CR2 %#llx)", outcome_name(p->outcome),
                 p->fault.vector, p->fault.error_code, (unsigned long long)p->fault.cr2);
        check_io_result(0, false);
        n_ok_access++;
        c->hits = HITS_AFTER;
        return true;
    }
    if (rc == VMMU_EPAGEDOUT && pager)
        fail("VMMU_EPAGEDOUT, but the pager brings every page back (pages %#x were out)",
             c->pre_out);
    if (rc == VMMU_EPAGEDOUT || rc == VMMU_EBUSY) {
        expect_no_effect(c, "failed before its first byte", false);
        c->hits = HITS_NONE;
        return false;
    }
    check_io_result(rc, false);
    if (c->exact && rc != VMMU_EOVERFLOW && p->outcome != PLAN_OK)
        fail("failed with %d after its checks; the CPU would %s first", rc,
             outcome_name(p->outcome));
    if (rc == VMMU_EROM && !write)
        fail("VMMU_EROM from a read");
    c->hits = HITS_ANY;
    return false;
}

/* Bytes the callbacks moved in each direction. */
static void io_bytes(uint32_t *rd, uint32_t *wr)
{
    *rd = *wr = 0;
    for (unsigned i = 0; i < io_n && i < IO_LOG_MAX; i++)
        *(io_log[i].write ? wr : rd) += io_log[i].size;
}

/* An exact access that completed made callbacks for exactly its MMIO and
 * device bytes (NULL-callback MMIO makes none). */
static void expect_io_for_plan(const struct plan *p, bool reads, bool writes)
{
    uint32_t want = 0, rd, wr;
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].pl.pk == PK_MMIO || p->page[i].pl.pk == PK_DEV)
            want += p->page[i].len;
    io_bytes(&rd, &wr);
    if (io_n > IO_LOG_MAX)
        return;
    if (rd != (reads ? want : 0) || wr != (writes ? want : 0))
        fail("callbacks moved %u bytes read, %u written; the access has %u MMIO/device bytes",
             rd, wr, want);
}

/* Whether the checks of a write passed (so code pages were reported). */
static bool write_proceeded(int rc, const struct vmmu_x86_fault *f)
{
    if (rc == 0)
        return f->vector == VMMU_X86_FAULT_NONE;
    return rc == VMMU_EMMIO || rc == VMMU_EROM || ((RCB(rc) & RC_DEVICE) != 0);
}

/* Exact write: each RAM page of the plan marked as code was reported once
 * (before it changed: the handler checks that), and nothing else was. */
static void expect_code_calls(const struct plan *p)
{
    uint32_t ram_pages = 0;
    for (unsigned i = 0; i < p->npages; i++)
        if (p->page[i].pl.pk == PK_RAM)
            ram_pages |= 1u << (p->page[i].gpa >> 12);
    if (code_called & ~ram_pages)
        fail("code handler called for pages %#x, the write reaches RAM pages %#x", code_called,
             ram_pages);
    /* code_sure was cleared by the handler: what it had before is what was
     * called plus what is still sure. */
    uint32_t missed = ram_pages & code_sure;
    if (missed)
        fail("a write reached RAM pages %#x marked as code without calling the handler", missed);
}

static bool pk_is_io(enum pk k)
{
    return k == PK_MMIO || k == PK_DEV;
}

/* Exact completed write of @data: it is where the plan says. */
NOCOV static void expect_written(const struct plan *p, const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        uint64_t gpa = plan_gpa(p, i);
        struct place pl = place_of(gpa);
        if (pl.pk == PK_ROM_B)
            fail("a write reached the ROM that reports writes, and returned 0");
        if ((pl.pk == PK_RAM || pk_is_io(pl.pk)) && model_byte(gpa) != data[i])
            fail("byte %u of the write: gpa %#llx holds %#x, the write stored %#x", i,
                 (unsigned long long)gpa, model_byte(gpa), data[i]);
    }
}

/* ---- Operations: the accesses ----------------------------------------------------- */

static unsigned bad_variant(const struct op *o, unsigned n)
{
    return o->bad ? (o->bad - 1u) % n + 1u : 0;
}

/* The wrong arguments a read, write, load or store shares (variants 1-5
 * of bad_variant()): no vCPU, no buffer, no fault record, a length of 0
 * (or 3 for a typed access), a length too long (17 or 32 for a typed
 * access, else 4097). */
static void bad_rw_args(unsigned bad, const struct op *o, bool typed, struct vmmu_vcpu **v,
                        bool *nobuf, struct vmmu_x86_fault **fp, uint32_t *len)
{
    switch (bad) {
    case 1:
        *v = NULL;
        break;
    case 2:
        *nobuf = true;
        break;
    case 3:
        *fp = NULL;
        break;
    case 4:
        *len = typed ? ((o->value & 1) ? 3 : 0) : 0;
        break;
    case 5:
        *len = typed ? ((o->value & 1) ? 17 : 32) : 4097;
        break;
    }
}

static void x_read(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    bool load = o->kind == OP_LOAD;
    uint8_t buf[4096 + 32];
    memset(buf, 0xa5, sizeof(buf));
    struct vmmu_x86_fault f;
    memset(&f, 0x77, sizeof(f));
    struct vmmu_vcpu *v = vcpu;
    void *b = buf;
    struct vmmu_x86_fault *fp = &f;
    uint32_t len = o->len;
    unsigned access = o->access;
    unsigned bad = bad_variant(o, 7);
    bool nobuf = false;
    bad_rw_args(bad, o, load, &v, &nobuf, &fp, &len);
    if (nobuf)
        b = NULL;
    switch (bad) {
    case 6:
        access |= VMMU_X86_ACC_WRITE;
        break;
    case 7:
        access |= (o->value & 1) ? VMMU_ACCESS_READ_WRITE : 1u << (4 + (o->value >> 1) % 12);
        break;
    }
    int rc = load ? vmmu_access_load(v, o->va, len, access, b, fp)
                  : vmmu_access_read(v, o->va, b, len, access, fp);
    res->rc = rc;
    res->fault = f;
    res->stops = true;
    if (bad) {
        refused(&c, rc, c.name);
        return;
    }
    c.kinds = VMMU_WATCH_READ;
    add_range(&c, o->va, len, access, VMMU_WATCH_READ, load);
    settle(&c);
    bool done = access_outcome(&c, rc, &f, o->va, len, access, VMMU_WATCH_READ, false, load,
                               RCS_READ);
    if (c.diff.data)
        fail("a read changed RAM pages %#x beyond A/D bits", c.diff.data);
    check_io_stream(false);
    uint32_t rd, wr;
    io_bytes(&rd, &wr);
    if (wr)
        fail("a read made write callbacks");
    if (done) {
        c.acc_va = lin(o->va);
        c.acc_len = len;
        c.expect_after = true;
        for (unsigned i = len; i < sizeof(buf); i++)
            if (buf[i] != 0xa5)
                fail("wrote past the %u bytes of the buffer", len);
        if (c.exact) {
            const struct plan *p = &c.plan[0];
            expect_io_for_plan(p, true, false);
            for (uint32_t i = 0; i < len; i++) {
                uint64_t gpa = plan_gpa(p, i);
                if (buf[i] != model_byte(gpa))
                    fail("byte %u read %#x; gpa %#llx (%s) holds %#x", i, buf[i],
                         (unsigned long long)gpa, vmmu_mem_type_name(place_of(gpa).type),
                         model_byte(gpa));
            }
        }
        res->stops = false;
        res->hash = hash_bytes(0, buf, len);
    }
    ring[ring_next++ & 3] = o->va;
    op_end(&c);
}

static void x_write(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    bool store = o->kind == OP_STORE;
    uint8_t data[4096 + 32];
    op_data(o, data, sizeof(data));
    struct vmmu_x86_fault f;
    memset(&f, 0x77, sizeof(f));
    struct vmmu_vcpu *v = vcpu;
    const void *b = data;
    struct vmmu_x86_fault *fp = &f;
    uint32_t len = o->len;
    unsigned access = o->access & ~VMMU_X86_ACC_WRITE;
    if (o->flags & 0x40)
        access |= VMMU_X86_ACC_WRITE; /* implied; saying it is fine */
    unsigned bad = bad_variant(o, 7);
    bool nobuf = false;
    bad_rw_args(bad, o, store, &v, &nobuf, &fp, &len);
    if (nobuf)
        b = NULL;
    switch (bad) {
    case 6:
        access |= VMMU_X86_ACC_FETCH;
        break;
    case 7:
        access |= 1u << (4 + (o->value >> 1) % 12);
        break;
    }
    int rc = store ? vmmu_access_store(v, o->va, len, access, b, fp)
                   : vmmu_access_write(v, o->va, b, len, access, fp);
    res->rc = rc;
    res->fault = f;
    res->stops = true;
    if (bad) {
        refused(&c, rc, c.name);
        return;
    }
    dirty_writes_since = true;
    c.kinds = VMMU_WATCH_WRITE;
    add_range(&c, o->va, len, access | VMMU_X86_ACC_WRITE, VMMU_WATCH_WRITE, store);
    settle(&c);
    bool done = access_outcome(&c, rc, &f, o->va, len, access, VMMU_WATCH_WRITE, true, store,
                               RCS_WRITE);
    check_io_stream(false);
    uint32_t rd, wr;
    io_bytes(&rd, &wr);
    if (rd)
        fail("a write made read callbacks");
    const struct plan *p = &c.plan[0];
    if (c.exact && write_proceeded(rc, &f))
        expect_code_calls(p);
    if (c.exact && rc == VMMU_EROM) {
        bool reports = false;
        for (unsigned i = 0; i < p->npages; i++)
            reports |= p->page[i].pl.pk == PK_ROM_B;
        if (!reports)
            fail("VMMU_EROM, but the write reaches no ROM that reports writes");
    }
    if (done) {
        c.acc_va = lin(o->va);
        c.acc_len = len;
        c.expect_after = true;
        if (c.exact && !c.replay) {
            expect_io_for_plan(p, false, true);
            expect_written(p, data, len);
        }
        res->stops = false;
    }
    ring[ring_next++ & 3] = o->va;
    op_end(&c);
}

static uint64_t rmw_apply(unsigned op, uint64_t old, uint64_t operand)
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

static uint8_t mmio_pre[MMIO_SIZE], dev_pre[DEV_SIZE];

static void x_atomic(struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    bool cas = o->kind == OP_CMPXCHG;
    memcpy(mmio_pre, mmio_mem, sizeof(mmio_pre));
    memcpy(dev_pre, dev_mem, sizeof(dev_pre));
    unsigned size = o->len;
    if (!cas && size == 16)
        size = 8;
    unsigned access = o->access;
    if (o->flags & 0x40)
        access |= VMMU_X86_ACC_WRITE;
    struct vmmu_x86_fault f;
    memset(&f, 0x77, sizeof(f));
    struct vmmu_x86_fault *fp = &f;
    struct vmmu_vcpu *v = vcpu;
    unsigned rop = o->n % 5;
    uint64_t old = 0x5555555555555555ull, *oldp = &old;
    uint8_t expected[16], desired[16], observed[16 + 8];
    for (unsigned i = 0; i < 16; i++) {
        expected[i] = (uint8_t)(o->value >> (8 * (i & 7))) ^ (uint8_t)(i & 8 ? 0x3c : 0);
        desired[i] = (uint8_t)(o->value2 >> (8 * (i & 7))) ^ (uint8_t)(i & 8 ? 0xc3 : 0);
    }
    memset(observed, 0xa5, sizeof(observed));
    bool swapped = true, *swp = (o->n & 0x40) ? NULL : &swapped;
    const void *ep = expected, *dp = desired;
    void *obp = observed;
    /* "Expect what memory holds", so that swaps happen. */
    if (cas && !o->exp_set && (o->n & 0x80) && exact_ok()) {
        struct plan p;
        uint32_t dummy = 0;
        plan_access(o->va, size, access | VMMU_X86_ACC_WRITE, 0, true, &p, &dummy);
        if (p.outcome == PLAN_OK)
            for (unsigned i = 0; i < size && i < 16; i++)
                expected[i] = place_of(plan_gpa(&p, i)).pk == PK_RAM ? shadow[plan_gpa(&p, i)]
                                                                     : model_byte(plan_gpa(&p, i));
    }
    if (o->exp_set)
        memcpy(expected, o->exp, 16);
    memcpy(o->exp, expected, 16);
    o->exp_set = true;
    unsigned bad = bad_variant(o, cas ? 9 : 7);
    switch (bad) {
    case 1:
        v = NULL;
        break;
    case 2:
        if (cas)
            obp = NULL;
        else
            oldp = NULL;
        break;
    case 3:
        fp = NULL;
        break;
    case 4:
        size = cas ? ((o->value & 1) ? 3 : 32) : ((o->value & 1) ? 16 : 0);
        break;
    case 5:
        if (cas)
            size = (o->value & 1) ? 0 : 5;
        else
            rop = 5 + (unsigned)(o->value % 1000);
        break;
    case 6:
        access |= VMMU_X86_ACC_FETCH;
        break;
    case 7:
        access |= 1u << (4 + (o->value >> 1) % 12);
        break;
    case 8:
        ep = NULL;
        break;
    case 9:
        dp = NULL;
        break;
    }
    int rc = cas ? vmmu_access_cmpxchg(v, o->va, size, ep, dp, obp, swp, access, fp)
                 : vmmu_access_rmw(v, o->va, size, (enum vmmu_rmw_op)rop, o->value, oldp,
                                   access, fp);
    res->rc = rc;
    res->fault = f;
    res->stops = true;
    if (bad) {
        refused(&c, rc, c.name);
        return;
    }
    dirty_writes_since = true;
    unsigned wk = VMMU_WATCH_READ | VMMU_WATCH_WRITE;
    c.kinds = wk;
    bool misaligned16 = cas && size == 16 && (o->va & 15);
    add_range(&c, o->va, size, access | VMMU_X86_ACC_WRITE, wk, true);
    settle(&c);
    if (misaligned16) {
        /* CMPXCHG16B: #GP(0) before anything else. */
        c.rc = rc;
        if (rc != 0 || f.vector != VMMU_X86_VEC_GP || f.error_code != 0)
            fail("misaligned CMPXCHG16B: rc %d fault %d/%#x, want #GP(0)", rc, f.vector,
                 f.error_code);
        expect_no_effect(&c, "misaligned CMPXCHG16B", true);
        c.hits = HITS_NONE;
        op_end(&c);
        return;
    }
    bool done = access_outcome(&c, rc, &f, o->va, size, access, wk, true, true, RCS_WRITE);
    check_io_stream(true);
    const struct plan *p = &c.plan[0];
    if (c.exact && write_proceeded(rc, &f))
        expect_code_calls(p);
    uint8_t oldb[16];
    if (cas)
        memcpy(oldb, observed, 16);
    else
        memcpy(oldb, &old, 8);
    if (done) {
        c.acc_va = lin(o->va);
        c.acc_len = size;
        c.expect_after = true;
        if (!cas && size < 8 && (old >> (8 * size)))
            fail("old value %#llx of a %u-byte RMW is not zero-extended", (unsigned long long)old,
                 size);
        if (cas) {
            for (unsigned i = size; i < sizeof(observed); i++)
                if (observed[i] != 0xa5)
                    fail("CMPXCHG wrote past the %u bytes of observed", size);
            if (swp && swapped != !memcmp(observed, expected, size))
                fail("swapped says %d, but observed %s expected", (int)swapped,
                     memcmp(observed, expected, size) ? "differs from" : "equals");
        }
        if (c.exact && !c.replay) {
            for (unsigned i = 0; i < size; i++)
                if (!pre_byte_matches(plan_gpa(p, i), oldb[i], mmio_pre, dev_pre))
                    fail("%s byte %u is %#x; memory held %#x", cas ? "observed" : "old", i,
                         oldb[i], model_byte(plan_gpa(p, i)));
            uint8_t now[16];
            if (cas) {
                bool sw = !memcmp(observed, expected, size);
                memcpy(now, sw ? desired : observed, size);
            } else {
                uint64_t nv = rmw_apply(rop, old, o->value);
                memcpy(now, &nv, 8);
            }
            /* RAM bytes keep A/D bits the walk set; compare the rest. */
            for (unsigned i = 0; i < size; i++) {
                uint64_t gpa = plan_gpa(p, i);
                enum pk k = place_of(gpa).pk;
                if (k == PK_ROM_B)
                    fail("a locked write reached the ROM that reports writes, and returned 0");
                uint8_t got = model_byte(gpa);
                if (k == PK_RAM || pk_is_io(k)) {
                    uint8_t d = got ^ now[i];
                    if (d && !(k == PK_RAM && !(gpa & entry_mask()) && !(d & ~0x60u) &&
                              (got & d) == d))
                        fail("after the %s, byte %u at gpa %#llx holds %#x, want %#x",
                             cas ? "CMPXCHG" : "RMW", i, (unsigned long long)gpa, got, now[i]);
                }
            }
            /* Callbacks: the MMIO/device bytes read, then written back. */
            uint32_t want = 0, rd, wr;
            for (unsigned i = 0; i < p->npages; i++)
                if (pk_is_io(p->page[i].pl.pk))
                    want += p->page[i].len;
            io_bytes(&rd, &wr);
            bool all_ram = true;
            for (unsigned i = 0; i < p->npages; i++)
                all_ram &= p->page[i].pl.pk == PK_RAM;
            if (io_n <= IO_LOG_MAX && (rd != want || wr != want) && !all_ram)
                fail("callbacks moved %u bytes read, %u written; the operand has %u MMIO/device "
                     "bytes", rd, wr, want);
            if (all_ram && io_n)
                fail("callbacks for a locked access to RAM");
        }
        res->stops = false;
        res->hash = hash_bytes(0, oldb, size);
        if (cas && swp)
            res->hash = hash_bytes(res->hash, &swapped, 1);
    }
    ring[ring_next++ & 3] = o->va;
    op_end(&c);
}

static uint8_t sim_ram[RAM_SIZE], sim_mmio[MMIO_SIZE], sim_dev[DEV_SIZE];

static uint8_t sim_read(uint64_t gpa)
{
    switch (place_of(gpa).pk) {
    case PK_RAM:
        return sim_ram[gpa];
    case PK_MMIO:
        return sim_mmio[gpa - MMIO_GPA];
    case PK_DEV:
        return sim_dev[gpa - DEV_GPA];
    default:
        return model_byte(gpa);
    }
}

static void sim_write(uint64_t gpa, uint8_t b)
{
    switch (place_of(gpa).pk) {
    case PK_RAM:
        sim_ram[gpa] = b;
        break;
    case PK_MMIO:
        sim_mmio[gpa - MMIO_GPA] = b;
        break;
    case PK_DEV:
        sim_dev[gpa - DEV_GPA] = b;
        break;
    default:
        break;
    }
}

/* The elements a REP made, one after another on the state before it, as
 * the CPU defines them (overlaps included), through the translations a
 * peek gives now: RAM (beyond A/D bits) and the devices' memories must
 * hold what that gives.  No write lost, none in the wrong place. */
NOCOV static void rep_check(const struct vmmu_rep *saved, uint64_t done, unsigned src_access,
                           uint32_t written)
{
    /* Table pages of the walks: if the REP wrote one, it moved under
     * itself, and which translation each chunk used is the TLB's business;
     * if it read one, it may have read A/D bits its own walks set. */
    uint32_t walked = 0, read = 0;
    unsigned e = saved->elem;
    struct {
        uint64_t page, gpa;
        bool ok;
    } cache[2] = {{~0ull, 0, false}, {~0ull, 0, false}};
    memcpy(sim_ram, shadow, RAM_SIZE);
    memcpy(sim_mmio, mmio_pre, MMIO_SIZE);
    memcpy(sim_dev, dev_pre, DEV_SIZE);
    for (uint64_t k = 0; k < done; k++) {
        uint64_t off = k * e;
        uint64_t d0 = saved->backward ? saved->dst - off : saved->dst + off;
        uint64_t s0 = saved->backward ? saved->src - off : saved->src + off;
        uint8_t tmp[8];
        for (int side = rep_is_movs ? 1 : 0; side >= 0; side--) {
            for (unsigned j = 0; j < e; j++) {
                uint64_t l = lin((side ? s0 : d0) + j);
                if (cache[side].page != (l & ~0xfffull)) {
                    struct vmmu_x86_walk w;
                    peek(l & ~0xfffull, side ? src_access : VMMU_X86_ACC_WRITE, &w, &walked);
                    cache[side].page = l & ~0xfffull;
                    cache[side].ok = w.ok;
                    cache[side].gpa = w.gpa & ~0xfffull;
                }
                if (!cache[side].ok)
                    return; /* the tables say otherwise now: nothing to compare */
                uint64_t gpa = cache[side].gpa | (l & 0xfff);
                if (side)
                    read |= page_bit(gpa);
                if (side)
                    tmp[j] = sim_read(gpa);
                else
                    sim_write(gpa, rep_is_movs ? tmp[j] : (uint8_t)(saved->value >> (8 * j)));
            }
        }
    }
    if (walked & (written | read))
        return;
    for (unsigned p = 0; p < RAM_PAGES; p++)
        if (page_differs_beyond_ad(ram + p * 4096u, sim_ram + p * 4096u)) {
            unsigned i = 0;
            while (ram[p * 4096u + i] == sim_ram[p * 4096u + i])
                i++;
            fail("after %llu elements of the REP %s, gpa %#x holds %#x; the elements give %#x",
                 (unsigned long long)done, rep_is_movs ? "MOVS" : "STOS", p * 4096u + i,
                 ram[p * 4096u + i], sim_ram[p * 4096u + i]);
        }
    for (unsigned i = 0; i < MMIO_SIZE; i++)
        if (sim_mmio[i] != mmio_mem[i])
            fail("after %llu elements of the REP, MMIO byte %#x is %#x; the elements give %#x",
                 (unsigned long long)done, i, mmio_mem[i], sim_mmio[i]);
    for (unsigned i = 0; i < DEV_SIZE; i++)
        if (sim_dev[i] != dev_mem[i])
            fail("after %llu elements of the REP, device byte %#x is %#x; the elements give %#x",
                 (unsigned long long)done, i, dev_mem[i], sim_dev[i]);
}

/* ---- REP MOVS / STOS ----------------------------------------------------------- */

/* The element a string register names, one side's plan; the first of src
 * (read) and dst (write) that faults or is watched decides. */
static void x_rep(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    struct vmmu_x86_fault f;
    memset(&f, 0x77, sizeof(f));
    struct vmmu_x86_fault *fp = &f;
    struct vmmu_vcpu *v = vcpu;
    struct vmmu_rep *rp = &rep;
    uint64_t budget = o->budget;
    unsigned bad = 0;
    if (o->kind != OP_REP_RESUME) {
        memset(&rep, 0, sizeof(rep));
        rep.dst = o->va;
        rep.src = o->va2;
        rep.count = o->count;
        rep.elem = o->elem;
        rep.backward = (o->flags & 0x40) != 0;
        rep.value = o->value;
        rep_is_movs = o->kind == OP_REP_MOVS;
        rep_src_access = o->access;
        bad = bad_variant(o, 6);
    } else if (!rep.elem) {
        rep.elem = 1; /* nothing set yet: an empty REP */
    }
    unsigned src_access = rep_src_access;
    {
        /* Huge counts and budgets, bounded work. */
        uint64_t most = budget < rep.count ? budget : rep.count;
        if (most > REP_BYTES_MAX / rep.elem)
            budget = REP_BYTES_MAX / rep.elem;
    }
    struct vmmu_rep saved = rep;
    memcpy(mmio_pre, mmio_mem, sizeof(mmio_pre));
    memcpy(dev_pre, dev_mem, sizeof(dev_pre));
    switch (bad) {
    case 1:
        rep.elem = (o->value & 1) ? 3 : (o->value & 2) ? 0 : 16;
        saved = rep;
        break;
    case 2:
        rp = NULL;
        break;
    case 3:
        fp = NULL;
        break;
    case 4:
        v = NULL;
        break;
    case 5:
        if (rep_is_movs)
            src_access |= VMMU_X86_ACC_WRITE;
        else
            rp = NULL;
        break;
    case 6:
        if (rep_is_movs)
            src_access |= 1u << (4 + o->value % 12);
        else
            v = NULL;
        break;
    }
    int rc = rep_is_movs ? vmmu_access_rep_movs(v, rp, budget, src_access, fp)
                         : vmmu_access_rep_stos(v, rp, budget, fp);
    res->rc = rc;
    res->fault = f;
    res->stops = true;
    if (bad) {
        refused(&c, rc, c.name);
        if (rep.dst != saved.dst || rep.src != saved.src || rep.count != saved.count)
            fail("a refused REP changed its registers");
        memset(&rep, 0, sizeof(rep));
        return;
    }
    c.rc = rc;
    check_rc(c.name, rc, RCS_REP);
    if (rc == VMMU_EINVAL)
        fail("VMMU_EINVAL for a valid REP");
    uint64_t e = rep.elem;
    uint64_t done = saved.count - rep.count;
    if (rep.elem != saved.elem || rep.backward != saved.backward || rep.value != saved.value ||
        rep.count > saved.count || done > budget)
        fail("REP registers: count %#llx -> %#llx with budget %#llx, elem %u -> %u",
             (unsigned long long)saved.count, (unsigned long long)rep.count,
             (unsigned long long)budget, saved.elem, rep.elem);
    uint64_t moved = done * e;
    uint64_t want_dst = saved.backward ? saved.dst - moved : saved.dst + moved;
    uint64_t want_src = !rep_is_movs ? saved.src : saved.backward ? saved.src - moved
                                                                   : saved.src + moved;
    if (rep.dst != want_dst || rep.src != want_src)
        fail("REP registers do not follow its %llu elements: dst %#llx (want %#llx) src %#llx "
             "(want %#llx)", (unsigned long long)done, (unsigned long long)rep.dst,
             (unsigned long long)want_dst, (unsigned long long)rep.src,
             (unsigned long long)want_src);
    if (saved.count && budget)
        dirty_writes_since = true; /* it may have translated a destination */
    /* Peeks: the element the registers name on each side, and the pages
     * the elements done went through (for the table tracking). */
    unsigned wsrc = VMMU_WATCH_READ, wdst = VMMU_WATCH_WRITE;
    add_range(&c, rep.dst, (uint32_t)e, VMMU_X86_ACC_WRITE, wdst, true);
    if (rep_is_movs)
        add_range(&c, rep.src, (uint32_t)e, src_access, wsrc, true);
    for (int side = 0; side < (rep_is_movs ? 2 : 1); side++) {
        uint64_t from = side ? saved.src : saved.dst;
        uint64_t lo = saved.backward ? from - moved + e : from;
        for (uint64_t at = 0; at < moved && c.nranges < MAX_RANGES; at += 4096)
            add_range(&c, lo + at, (uint32_t)(moved - at < 4096 ? moved - at : 4096),
                      side ? src_access : VMMU_X86_ACC_WRITE, 0, false);
    }
    settle(&c);
    c.kinds = rep_is_movs ? (wsrc | wdst) : wdst;
    c.hits = HITS_ANY;
    if (rc < 0) {
        if (done)
            fail("REP returned %d after %llu elements (progress must return 0)", rc,
                 (unsigned long long)done);
        if (rc == VMMU_EPAGEDOUT && pager)
            fail("VMMU_EPAGEDOUT, but the pager brings every page back (pages %#x were out)",
                 c.pre_out);
        if (rc == VMMU_EPAGEDOUT || rc == VMMU_EBUSY)
            expect_no_effect(&c, "failed before its first element", false);
        else
            check_io_result(rc, true);
    } else if (f.vector != VMMU_X86_FAULT_NONE) {
        if (!rep.count)
            fail("REP stopped (vector %d) with no element left", f.vector);
        const struct plan *pd = &c.plan[0], *ps = rep_is_movs ? &c.plan[1] : NULL;
        if (f.vector == VMMU_ACCESS_STOP_WATCH) {
            n_stops++;
            bool w = (rep_is_movs && before_wp(lin(rep.src), (uint32_t)e, wsrc)) ||
                     before_wp(lin(rep.dst), (uint32_t)e, wdst);
            if (!w)
                fail("REP stopped by a watchpoint, but none covers the element it names");
        } else {
            n_faults++;
            bool is_write = !rep_is_movs;
            if (f.vector == VMMU_X86_VEC_PF) {
                is_write = (f.error_code & VMMU_X86_PF_W) != 0;
            } else if (f.vector == VMMU_X86_VEC_AC) {
                /* the source's alignment is checked first */
                is_write = !(rep_is_movs && align_faults(rep.src, (uint32_t)e, src_access));
            } else if (rep_is_movs) {
                /* #GP/#SS: the source is prepared first. */
                bool nc_src = ia32e() && (!vmmu_x86_canonical(pg(), lin(rep.src)) ||
                                          !vmmu_x86_canonical(pg(), lin(rep.src) + e - 1));
                is_write = !nc_src;
            }
            check_fault_consistent(&f, is_write ? rep.dst : rep.src, e,
                                   is_write ? VMMU_X86_ACC_WRITE : src_access, is_write, true);
        }
        if (c.exact) {
            /* Each side of the element as a single access, the source
             * first: translated, then stopped by a BEFORE watchpoint (so
             * a fault comes before a stop on the same element). */
            const struct plan *want = (ps && ps->outcome != PLAN_OK) ? ps : pd;
            bool stop = want->outcome == PLAN_STOP;
            if (stop ? f.vector != VMMU_ACCESS_STOP_WATCH
                     : (want->outcome != PLAN_FAULT || !fault_same(&f, &want->fault))) {
                fail("REP stopped with %d/%#x/CR2 %#llx at dst %#llx src %#llx; the CPU would "
                     "%s (%d/%#x/CR2 %#llx)", f.vector, f.error_code, (unsigned long long)f.cr2,
                     (unsigned long long)rep.dst, (unsigned long long)rep.src,
                     stop ? "stop at a watchpoint" : outcome_name(want->outcome),
                     want->fault.vector, want->fault.error_code,
                     (unsigned long long)want->fault.cr2);
            }
            if (f.vector != VMMU_ACCESS_STOP_WATCH)
                n_exact_faults++;
        }
        if (!done)
            expect_no_effect(&c, "REP stopped at its first element", false);
        check_io_result(0, true);
    } else {
        check_io_result(0, true);
        if (rep.count && done != budget) {
            unsigned n = io_n < IO_LOG_MAX ? io_n : IO_LOG_MAX;
            bool io_failed = n && io_log[n - 1].rc;
            struct vmmu_latch_stats s;
            (void)vmmu_latch_stats(vcpu, &s);
            /* Or a write to the ROM that reports writes (VMMU_EROM, no
             * callback): the element the registers name is there.  (Only
             * exact: a stale translation may have taken the REP there.) */
            bool reports = !c.exact;
            for (unsigned i = 0; i < c.plan[0].npages; i++)
                reports |= c.plan[0].page[i].pl.pk == PK_ROM_B;
            /* Or the element goes into a device model's page, or from a
             * device to a device: the first of its call, always
             * (access.h). */
            bool alone = rep_is_movs && done &&
                         (plan_may_pend(&c.plan[0]) ||
                          (plan_reaches_device(&c.plan[0]) && plan_reaches_device(&c.plan[1])));
            if (!io_failed && !reports && !alone && s.overflows == c.ls.overflows) {
                /* What the next element gives (to say so). */
                struct vmmu_rep again = rep;
                struct vmmu_x86_fault f2;
                int rc2 = rep_is_movs ? vmmu_access_rep_movs(vcpu, &again, 1, src_access, &f2)
                                      : vmmu_access_rep_stos(vcpu, &again, 1, &f2);
                fail("REP returned 0 after %llu of %llu elements (budget %llu) with no fault, "
                     "no failed callback, no reporting ROM and no full latch; registers dst "
                     "%#llx src %#llx; the next element gives %d (fault %d)",
                     (unsigned long long)done, (unsigned long long)saved.count,
                     (unsigned long long)budget, (unsigned long long)rep.dst,
                     (unsigned long long)rep.src, rc2, f2.vector);
            }
        }
    }
    uint32_t rd, wr;
    io_bytes(&rd, &wr);
    if (!rep_is_movs && rd)
        fail("REP STOS made read callbacks");
    bool aligned = !(saved.dst % e) && (!rep_is_movs || !(saved.src % e));
    check_io_elements((unsigned)e, saved.backward, aligned);
    {
        /* Elements done, and no piece of the next one made (a failed
         * callback or a reporting ROM may have made part of it). */
        unsigned n = io_n < IO_LOG_MAX ? io_n : IO_LOG_MAX;
        bool io_failed = io_n > IO_LOG_MAX || (n && io_log[n - 1].rc);
        bool clean_stop = rep.count == 0 || done == budget || f.vector != VMMU_X86_FAULT_NONE;
        if (c.exact && !c.replay && rc == 0 && done && !io_failed && clean_stop)
            rep_check(&saved, done, src_access, c.diff.data);
    }
    res->rc = rc;
    res->hash = hash_bytes(hash_bytes(hash_bytes(0, &rep.dst, 8), &rep.src, 8), &rep.count, 8);
    res->stops = rc != 0 || f.vector != VMMU_X86_FAULT_NONE || rep.count != 0;
    op_end(&c);
}

/* ---- Probes ------------------------------------------------------------------------ */

static uint32_t page_state(uint64_t gpa)
{
    uint32_t st = 0;
    if (vmmu_page_state_get(vm, gpa, &st) != 0)
        return 0;
    return st;
}

/* Whether a walk the access makes would set an A or D bit in RAM. */
static bool walk_sets_ad(const struct vmmu_x86_walk *w)
{
    for (unsigned i = 0; i < w->nlevels; i++)
        if (w->levels[i].host && w->levels[i].new_value != w->levels[i].value)
            return true;
    return false;
}

static void x_probe(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    bool nofault = o->kind == OP_PROBE_NOFAULT;
    struct vmmu_probe out, *outp = &out;
    memset(&out, 0x3c, sizeof(out));
    struct vmmu_vcpu *v = vcpu;
    unsigned size = o->len, access = o->access;
    bool write = (access & VMMU_X86_ACC_WRITE) != 0;
    unsigned bad = bad_variant(o, 6);
    uint64_t l = lin(o->va);
    switch (bad) {
    case 1:
        size = 0;
        break;
    case 2:
        size = (o->value & 1) ? 4097 : 4096 - (unsigned)(l & 0xfff) + 1 + (unsigned)(o->value % 8);
        break;
    case 3:
        outp = NULL;
        break;
    case 4:
        v = NULL;
        break;
    case 5:
        access = VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH;
        break;
    case 6:
        access |= (o->value & 1) ? VMMU_ACCESS_READ_WRITE : 1u << (4 + o->value % 12);
        break;
    }
    if (!bad && (l & 0xfff) + size > 4096)
        bad = 7; /* crosses a page: refused too */
    int rc = nofault ? vmmu_access_probe_nofault(v, o->va, size, access, outp)
                     : vmmu_access_probe(v, o->va, size, access, outp);
    if (nofault && pager && c.pre_out) {
        /* It brings nothing back: what was out is out. */
        for (unsigned p = 0; p < RAM_PAGES; p++) {
            uint32_t st = 0;
            (void)vmmu_page_state_get(vm, p * 4096ull, &st);
            if ((c.pre_out & (1u << p)) && !(st & VMMU_PAGE_PAGED_OUT))
                fail("the non-faulting probe brought RAM page %u back", p);
        }
    }
    res->rc = rc;
    res->fault = bad ? res->fault : out.fault;
    res->stops = true;
    res->exempt = nofault;
    if (bad) {
        refused(&c, rc, c.name);
        return;
    }
    if (!nofault && write)
        dirty_writes_since = true; /* a write probe marks the page dirty */
    add_range(&c, o->va, size, access, 0, false);
    settle(&c);
    c.rc = rc;
    c.hits = HITS_NONE;
    check_rc(c.name, rc, RCS_PROBE);
    /* VMMU_EOVERFLOW: inside an instruction, the latch could not record
     * the translation (the non-faulting probe does not consult it). */
    if (rc == VMMU_EOVERFLOW && (nofault || !latch_maybe_on()))
        fail("VMMU_EOVERFLOW from a %sprobe %s", nofault ? "non-faulting " : "",
             latch_maybe_on() ? "inside an instruction" : "outside an instruction");
    if (rc == VMMU_EINVAL)
        fail("VMMU_EINVAL for a valid probe");
    if (rc == VMMU_EPAGEDOUT && (!nofault ? pager != NULL : !c.pre_out))
        fail("VMMU_EPAGEDOUT from a %sprobe with pages %#x out and %s pager",
             nofault ? "non-faulting " : "", c.pre_out, pager ? "a" : "no");
    if (nofault && c.exact && c.plan[0].outcome == PLAN_OK &&
        (c.pre_out & page_bit(c.plan[0].page[0].gpa)) &&
        c.plan[0].page[0].pl.pk == PK_RAM) {
        /* The data page is out: so the answer says, with the page. */
        bool tables_out = false;
        const struct vmmu_x86_walk *w = &c.plan[0].page[0].walk;
        for (unsigned i = 0; i < w->nlevels; i++)
            tables_out |= (c.pre_out & page_bit(w->levels[i].gpa)) != 0;
        if (rc != VMMU_EPAGEDOUT ||
            (!tables_out && (out.gpa != c.plan[0].page[0].gpa || out.type != VMMU_MEM_RAM)))
            fail("non-faulting probe of gpa %#llx, paged out: returned %d, gpa %#llx type %d",
                 (unsigned long long)c.plan[0].page[0].gpa, rc, (unsigned long long)out.gpa,
                 (int)out.type);
    }
    if (io_n || code_calls)
        fail("a probe ran %u callbacks and %u code handler calls", io_n, code_calls);
    if (c.diff.data || (nofault && c.diff.any))
        fail("a %sprobe changed RAM (pages %#x, beyond A/D bits %#x)",
             nofault ? "non-faulting " : "", c.diff.any, c.diff.data);
    if (nofault) {
        struct vmmu_tlb_stats ts;
        (void)vmmu_vcpu_stats(vcpu, &ts);
        if (ts.fills != c.ts.fills || ts.walks != c.ts.walks)
            fail("the non-faulting probe walked or filled the TLB (%llu -> %llu fills)",
                 (unsigned long long)c.ts.fills, (unsigned long long)ts.fills);
    }
    const struct plan *p = &c.plan[0];
    if (rc == 0 && out.fault.vector != VMMU_X86_FAULT_NONE) {
        n_faults++;
        check_fault_consistent(&out.fault, o->va, size, access, write, false);
        if (out.host)
            fail("a probe that faults gave a host pointer");
        if (c.exact) {
            n_exact_faults++;
            if (p->outcome != PLAN_FAULT || !fault_same(&out.fault, &p->fault))
                fail("probe fault %d/%#x/CR2 %#llx; the CPU would %s (%d/%#x/CR2 %#llx)",
                     out.fault.vector, out.fault.error_code, (unsigned long long)out.fault.cr2,
                     outcome_name(p->outcome), p->fault.vector, p->fault.error_code,
                     (unsigned long long)p->fault.cr2);
        }
    } else if (rc == 0) {
        struct place pl = place_of(out.gpa);
        uint32_t st = (pl.pk == PK_RAM) ? page_state(out.gpa) : 0;
        bool plain = pl.pk == PK_RAM || ((pl.pk == PK_ROM_A || pl.pk == PK_ROM_B) && !write);
        unsigned wk = write ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
        bool watched = any_wp(l, size, wk);
        bool code = write && pl.pk == PK_RAM && (st & VMMU_PAGE_CODE);
        if ((out.gpa & 0xfff) != (l & 0xfff))
            fail("probe gpa %#llx for va %#llx: another page offset", (unsigned long long)out.gpa,
                 (unsigned long long)l);
        if (out.type != pl.type)
            fail("probe type %d for gpa %#llx, which is %s", (int)out.type,
                 (unsigned long long)out.gpa, vmmu_mem_type_name(pl.type));
        if (c.exact) {
            if (p->outcome != PLAN_OK || p->page[0].gpa != out.gpa)
                fail("probe translated to gpa %#llx; the CPU would %s (gpa %#llx)",
                     (unsigned long long)out.gpa, outcome_name(p->outcome),
                     (unsigned long long)p->page[0].gpa);
        }
        if (out.host) {
            if (out.why)
                fail("probe gave a host pointer and why %#x", out.why);
            if (out.host != host_of(out.gpa, write) || !plain)
                fail("probe host pointer %p for gpa %#llx (%s), want %p", out.host,
                     (unsigned long long)out.gpa, vmmu_mem_type_name(pl.type),
                     (void *)host_of(out.gpa, write));
            if (watched)
                fail("probe gave a host pointer although a watchpoint covers the access");
            if (code)
                fail("write probe gave a host pointer into a page marked as code");
            if (nofault && c.exact && walk_sets_ad(&p->page[0].walk))
                fail("non-faulting probe gave a host pointer, but the access would set A/D");
            if (nofault && write && dirty_on && !(st & VMMU_PAGE_DIRTY))
                fail("non-faulting write probe gave a host pointer to a page not yet dirty");
        } else {
            unsigned allowed =
                VMMU_PROBE_WATCH | VMMU_PROBE_CODE | (nofault ? VMMU_PROBE_NOTDIRTY : 0);
            if (pl.pk == PK_DEV)
                allowed |= VMMU_PROBE_DEVICE;
            else if (!plain)
                allowed |= VMMU_PROBE_MMIO;
            if (!watched)
                allowed &= ~VMMU_PROBE_WATCH;
            if (!code)
                allowed &= ~VMMU_PROBE_CODE;
            if (!out.why || (out.why & ~allowed))
                fail("probe gave no host pointer, why %#x (allowed %#x) for gpa %#llx (%s)",
                     out.why, allowed, (unsigned long long)out.gpa, vmmu_mem_type_name(pl.type));
            if (!plain && !(out.why & (VMMU_PROBE_MMIO | VMMU_PROBE_DEVICE)))
                fail("probe of a page that is not plain memory says why %#x", out.why);
            if (c.exact && plain && !watched && !code && !nofault)
                fail("probe gave no host pointer (why %#x) to plain memory", out.why);
        }
        res->hash = hash_bytes(hash_bytes(0, &out.gpa, 8), &out.type, sizeof(out.type));
    }
    op_end(&c);
    /* The emulator writes through the pointer a write probe gave, as the
     * probe is for: the dirty log must report the page. */
    if (!nofault && write && rc == 0 && out.host && (o->flags & 0x20) &&
        (uintptr_t)out.host - (uintptr_t)ram < RAM_SIZE) {
        uint8_t data[4096];
        op_data(o, data, size);
        memcpy(out.host, data, size);
        uint32_t page = 1u << (((uintptr_t)out.host - (uintptr_t)ram) >> 12);
        if (dirty_on)
            dirty_expect |= page;
        if (page & table_pages)
            stale = true;
        shadow_sync(page);
    }
}

static void x_probe_hit(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    unsigned size = o->len;
    while (size & (size - 1))
        size &= size - 1; /* 1, 2, 4, 8 or 16, as the inline probe takes */
    if (size > 16)
        size = 16;
    enum vmmu_tlb_kind kind = (o->access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
                              : (o->access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                                                 : VMMU_TLB_READ;
    uint64_t va = (o->flags & 0x40) ? o->va : lin(o->va);
    static char sentinel;
    void *host = &sentinel;
    bool slow = fast->slow != 0;
    bool hit = vmmu_access_probe_hit(fast, va, size, kind, &host);
    res->rc = hit;
    res->fault.vector = VMMU_X86_FAULT_NONE;
    res->stops = false;
    res->exempt = true;
    settle(&c);
    c.hits = HITS_NONE;
    expect_no_effect(&c, "inline probe", true);
    if (slow && hit)
        fail("the inline probe hit while the latch is on");
    if (!hit && host != &sentinel)
        fail("the inline probe changed *host on a miss");
    if (hit) {
        uintptr_t h = (uintptr_t)host;
        bool in_ram = h - (uintptr_t)ram < RAM_SIZE;
        bool in_rom = h - (uintptr_t)rom_a < 4096 || h - (uintptr_t)rom_b < 4096;
        if ((!in_ram && !in_rom) || (h & 0xfff) != (va & 0xfff) ||
            (in_rom && kind == VMMU_TLB_WRITE))
            fail("inline probe hit with host %p for va %#llx", host, (unsigned long long)va);
        if (va & (size - 1))
            fail("inline probe hit for a misaligned %u-byte access at %#llx", size,
                 (unsigned long long)va);
        if (va != lin(va))
            fail("inline probe hit for va %#llx, not a linear address of this mode",
                 (unsigned long long)va);
        unsigned wk = kind == VMMU_TLB_WRITE ? VMMU_WATCH_WRITE : VMMU_WATCH_READ;
        if (any_wp(va, size, wk))
            fail("inline probe hit on bytes a watchpoint covers");
        if (c.exact_pre && !stale) {
            struct plan p;
            uint32_t dummy = 0;
            unsigned acc = kind == VMMU_TLB_WRITE ? VMMU_X86_ACC_WRITE
                           : kind == VMMU_TLB_FETCH ? VMMU_X86_ACC_FETCH : 0;
            plan_access(va, size, acc, 0, false, &p, &dummy);
            if (p.outcome != PLAN_OK || host_of(p.page[0].gpa, kind == VMMU_TLB_WRITE) != host)
                fail("inline probe hit (host %p); the CPU would %s (gpa %#llx)", host,
                     outcome_name(p.outcome), (unsigned long long)p.page[0].gpa);
            if (kind == VMMU_TLB_WRITE && (page_state(p.page[0].gpa) & VMMU_PAGE_CODE))
                fail("inline write probe hit a page marked as code");
            if (kind == VMMU_TLB_WRITE && dirty_on &&
                !(page_state(p.page[0].gpa) & VMMU_PAGE_DIRTY))
                fail("inline write probe hit a page the dirty log has not seen written");
            if (walk_sets_ad(&p.page[0].walk))
                fail("inline probe hit, but the access would set an A/D bit");
        }
        res->hash = (uint64_t)h;
    }
    op_end(&c);
}

/* ---- Prepared accesses ------------------------------------------------------------ */

static uint64_t desc_gpa(const struct vmmu_prepared *d, uint32_t off)
{
    if (off < d->page[0].len)
        return d->page[0].gpa + off;
    return d->page[1].gpa + (off - d->page[0].len);
}

static unsigned insn_pass; /* pass of the INSN running now, 0 outside */

static void x_prepare(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    struct slot *s = &slots[o->slot];
    struct vmmu_prepared d;
    memset(&d, 0xd5, sizeof(d));
    struct vmmu_prepared *dp = &d;
    struct vmmu_x86_fault f;
    memset(&f, 0x77, sizeof(f));
    struct vmmu_x86_fault *fp = &f;
    struct vmmu_vcpu *v = vcpu;
    uint32_t len = o->len;
    unsigned access = o->access;
    unsigned bad = bad_variant(o, 8);
    switch (bad) {
    case 1:
        len = 0;
        break;
    case 2:
        len = 4097 + (uint32_t)(o->value % 5000);
        break;
    case 3:
        dp = NULL;
        break;
    case 4:
        fp = NULL;
        break;
    case 5:
        v = NULL;
        break;
    case 6:
        access = VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH;
        break;
    case 7:
        access = (access & ~VMMU_X86_ACC_WRITE) | VMMU_ACCESS_READ_WRITE;
        break;
    case 8:
        access |= 1u << (4 + o->value % 12);
        break;
    }
    int rc = vmmu_access_prepare(v, o->va, len, access, dp, fp);
    res->rc = rc;
    res->fault = f;
    res->stops = true;
    if (bad) {
        refused(&c, rc, c.name);
        return;
    }
    bool write = (access & VMMU_X86_ACC_WRITE) != 0;
    unsigned wk = (access & VMMU_ACCESS_READ_WRITE) ? VMMU_WATCH_READ | VMMU_WATCH_WRITE
                  : write                            ? VMMU_WATCH_WRITE
                                                     : VMMU_WATCH_READ;
    if (write)
        dirty_writes_since = true;
    c.kinds = wk;
    add_range(&c, o->va, len, access & VMMU_X86_ACC_ALL, wk, false);
    settle(&c);
    bool done = access_outcome(&c, rc, &f, o->va, len, access, wk, write, false, RCS_PREPARE);
    if (c.diff.data)
        fail("a preparation changed RAM pages %#x beyond A/D bits", c.diff.data);
    if (io_n)
        fail("vmmu_access_prepare ran %u callbacks", io_n);
    memset(s, 0, sizeof(*s));
    const struct plan *p = &c.plan[0];
    if (c.exact && write && write_proceeded(rc, &f))
        expect_code_calls(p);
    if (!write && code_calls)
        fail("a read preparation called the code handler");
    if (done) {
        uint64_t l = lin(o->va);
        uint32_t first = 4096 - (uint32_t)(l & 0xfff);
        if (first > len)
            first = len;
        unsigned np = first < len ? 2 : 1;
        if (d.vcpu != vcpu || d.va != l || d.len != len || d.access != access || d.npages != np ||
            d.page[0].va != l || d.page[0].len != first ||
            (np == 2 && (d.page[1].va != lin(l + first) || d.page[1].len != len - first)))
            fail("descriptor: vcpu %p va %#llx len %u access %#x npages %u, page 0 va %#llx len "
                 "%u, page 1 va %#llx len %u (want va %#llx len %u access %#x npages %u)",
                 (void *)d.vcpu, (unsigned long long)d.va, d.len, d.access, d.npages,
                 (unsigned long long)d.page[0].va, d.page[0].len,
                 (unsigned long long)d.page[1].va, d.page[1].len, (unsigned long long)l, len,
                 access, np);
        for (unsigned i = 0; i < np; i++) {
            const struct vmmu_prepared_page *pp = &d.page[i];
            struct place pl = place_of(pp->gpa);
            if ((pp->gpa & 0xfff) != (pp->va & 0xfff) || pp->type != pl.type ||
                pp->region_id != pl.region_id || pp->host != host_of(pp->gpa, write))
                fail("descriptor page %u: gpa %#llx type %d region %u host %p (the map says %s, "
                     "region %u, host %p)", i, (unsigned long long)pp->gpa, (int)pp->type,
                     pp->region_id, (void *)pp->host, vmmu_mem_type_name(pl.type), pl.region_id,
                     (void *)host_of(pp->gpa, write));
            if (c.exact && (p->outcome != PLAN_OK || p->page[i].gpa != pp->gpa))
                fail("descriptor page %u at gpa %#llx; the CPU would %s (gpa %#llx)", i,
                     (unsigned long long)pp->gpa, outcome_name(p->outcome),
                     (unsigned long long)p->page[i].gpa);
        }
        s->d = d;
        s->ok = true;
        s->epoch = epoch;
        s->pass = insn_pass;
        res->stops = false;
        res->hash = hash_bytes(hash_bytes(0, &d.page[0].gpa, 8), &d.page[1].gpa, np == 2 ? 8 : 0);
        /* "After" watchpoints record their hits when the descriptor is
         * read or written: a preparation records none. */
        c.hits = HITS_NONE;
    }
    ring[ring_next++ & 3] = o->va;
    op_end(&c);
}

/* Callbacks of a prepared operation land in the descriptor's MMIO and
 * device pages. */
static void expect_io_in(const struct vmmu_prepared *d)
{
    for (unsigned i = 0; i < io_n && i < IO_LOG_MAX; i++) {
        bool in = false;
        for (unsigned k = 0; k < d->npages && k < 2; k++) {
            uint64_t g = d->page[k].gpa;
            in |= io_log[i].gpa >= g && io_log[i].gpa + io_log[i].size <= g + d->page[k].len;
        }
        if (!in)
            fail("callback %u at gpa %#llx outside the descriptor's pages", i,
                 (unsigned long long)io_log[i].gpa);
    }
}

static void x_prepared(const struct op *o, struct res *res)
{
    struct ctx c;
    op_begin(&c, op_names[o->kind]);
    struct slot *s = &slots[o->slot], *s2 = &slots[o->slot2];
    const struct vmmu_prepared *d = &s->d, *src = &s2->d;
    uint8_t buf[8192 + 32];
    memset(buf, 0xa5, sizeof(buf));
    uint32_t off = o->off > d->len ? d->len : o->off;
    uint32_t n = o->n == ~0u ? d->len - off : o->n;
    unsigned elem = o->elem;
    bool backward = (o->flags & 0x40) != 0;
    void *b = buf;
    unsigned bad = bad_variant(o, 5);
    switch (bad) {
    case 1:
        if (o->kind == OP_PREP_MOVE && (o->value & 4))
            src = NULL;
        else
            d = NULL;
        break;
    case 2:
        off = (o->value & 1) ? ~0u : d->len + 1 + (uint32_t)(o->value % 64);
        break;
    case 3:
        n = d->len - off + 1 + (uint32_t)(o->value % 64);
        break;
    case 4:
        b = NULL;
        if (!n)
            n = 1;
        break;
    case 5:
        elem = (o->value & 1) ? 3 : (o->value & 2) ? 0 : 16;
        break;
    }
    if (n > sizeof(buf) - 32 && b)
        n = sizeof(buf) - 32 + 1; /* beyond any descriptor: refused */
    bool stale_desc = !s->ok || s->epoch != epoch;
    bool write_op = o->kind != OP_PREP_READ;
    bool einval = !d || stale_desc;
    switch (o->kind) {
    case OP_PREP_READ:
    case OP_PREP_WRITE:
        einval |= d && (off > d->len || n > d->len - off);
        einval |= !b && n;
        einval |= o->kind == OP_PREP_WRITE && d && !(d->access & VMMU_X86_ACC_WRITE);
        break;
    case OP_PREP_SET:
        einval |= d && (off > d->len || n > d->len - off);
        einval |= (elem != 1 && elem != 2 && elem != 4 && elem != 8) || (elem && n % elem);
        einval |= d && !(d->access & VMMU_X86_ACC_WRITE);
        break;
    default: /* move */
        einval |= !src || !s2->ok || s2->epoch != epoch;
        einval |= (elem != 1 && elem != 2 && elem != 4 && elem != 8);
        einval |= d && src && (d->len != src->len || (elem && d->len % elem) ||
                        !(d->access & VMMU_X86_ACC_WRITE));
        break;
    }
    op_data(o, buf, n < sizeof(buf) ? n : sizeof(buf));
    memcpy(mmio_pre, mmio_mem, sizeof(mmio_pre));
    memcpy(dev_pre, dev_mem, sizeof(dev_pre));
    int rc;
    switch (o->kind) {
    case OP_PREP_READ:
        rc = vmmu_prepared_read(d, off, b, n);
        break;
    case OP_PREP_WRITE:
        rc = vmmu_prepared_write(d, off, b, n);
        break;
    case OP_PREP_SET:
        rc = vmmu_prepared_set(d, off, o->value, elem, n);
        break;
    default:
        rc = vmmu_prepared_move(d, src, elem, backward);
        break;
    }
    res->rc = rc;
    res->fault.vector = VMMU_X86_FAULT_NONE;
    res->stops = rc != 0;
    /* A descriptor prepared outside this pass of the instruction may be
     * stale in another pass. */
    res->exempt = s->pass != insn_pass || (o->kind == OP_PREP_MOVE && s2->pass != insn_pass) ||
                  !insn_pass;
    if (einval) {
        refused(&c, rc, c.name);
        return;
    }
    if (write_op)
        dirty_writes_since = true;
    settle(&c);
    c.rc = rc;
    check_rc(c.name, rc, write_op ? RCS_PREP_WRITE : RCS_PREP_READ);
    if (rc == VMMU_EINVAL)
        fail("VMMU_EINVAL for valid arguments (off %u n %u elem %u, descriptor len %u access "
             "%#x)", off, n, elem, d->len, d->access);
    /* A write through a descriptor held across a code mark reports the
     * write (access.h, "Host pointers"); nothing else here calls the
     * handler, and only for the descriptor's pages. */
    if (code_calls && !(write_op && s->held))
        fail("a prepared operation called the code handler");
    if (code_calls) {
        uint32_t mine = 0;
        for (unsigned k = 0; k < d->npages && k < 2; k++)
            if (d->page[k].type == VMMU_MEM_RAM)
                mine |= page_bit(d->page[k].gpa);
        if (code_called & ~mine)
            fail("a prepared write called the code handler for pages %#x, its pages are %#x",
                 code_called, mine);
    }
    if (o->kind == OP_PREP_READ && c.diff.data)
        fail("a prepared read changed RAM pages %#x beyond A/D bits", c.diff.data);
    if (write_op && s->held) {
        /* The pages this write reached may have been marked as code or
         * had their dirty bit cleared since the preparation. */
#if FUZZ_ACCESS_EXCUSE_HELD_PREPARED
        dirty_excused |= c.diff.any;
        code_sure &= ~c.diff.any;
#else
        if (c.diff.data & code_sure)
            fail("a write through a descriptor prepared before vmmu_code_mark() changed pages "
                 "%#x marked as code, without calling the code handler", c.diff.data & code_sure);
#endif
    }
    bool is_move = o->kind == OP_PREP_MOVE;
    check_io_result(rc, false);
    if (!is_move) {
        expect_io_in(d);
        uint32_t rd, wr;
        io_bytes(&rd, &wr);
        if ((o->kind == OP_PREP_READ && wr) || (o->kind != OP_PREP_READ && rd))
            fail("callbacks in the wrong direction (%u bytes read, %u written)", rd, wr);
    }
    if (o->kind == OP_PREP_READ || o->kind == OP_PREP_WRITE)
        check_io_stream(false);
    else if (o->kind == OP_PREP_SET)
        check_io_elements(elem, false, !(lin(d->va + off) % elem));
    else
        check_io_elements(elem, backward, !(d->va % elem) && !(src->va % elem));
    c.kinds = o->kind == OP_PREP_READ ? VMMU_WATCH_READ
              : is_move               ? VMMU_WATCH_READ | VMMU_WATCH_WRITE
                                      : VMMU_WATCH_WRITE;
    c.hits = HITS_ANY;
    if (o->kind == OP_PREP_READ || o->kind == OP_PREP_WRITE) {
        c.hits = rc == 0 ? HITS_AFTER : HITS_ANY;
        c.acc_va = lin(d->va + off);
        c.acc_len = n;
        c.expect_after = true;
    }
    if (rc == 0 && !c.replay) {
        uint32_t rd, wr;
        io_bytes(&rd, &wr);
        switch (o->kind) {
        case OP_PREP_READ:
            for (uint32_t i = 0; i < n; i++) {
                uint64_t gpa = desc_gpa(d, off + i);
                if (buf[i] != model_byte(gpa))
                    fail("prepared read: byte %u is %#x; gpa %#llx (%s) holds %#x", i, buf[i],
                         (unsigned long long)gpa, vmmu_mem_type_name(place_of(gpa).type),
                         model_byte(gpa));
            }
            break;
        case OP_PREP_WRITE:
        case OP_PREP_SET:
            for (uint32_t i = 0; i < n; i++) {
                uint64_t gpa = desc_gpa(d, off + i);
                enum pk k = place_of(gpa).pk;
                uint8_t want = o->kind == OP_PREP_WRITE ? buf[i]
                                                        : (uint8_t)(o->value >> (8 * (i % elem)));
                if (k == PK_ROM_B)
                    fail("prepared write to the ROM that reports writes returned 0");
                if ((k == PK_RAM || pk_is_io(k)) && model_byte(gpa) != want)
                    fail("prepared %s: byte %u at gpa %#llx holds %#x, want %#x",
                         o->kind == OP_PREP_WRITE ? "write" : "set", i, (unsigned long long)gpa,
                         model_byte(gpa), want);
            }
            break;
        default: {
            /* Element by element in the instruction's order, on the state
             * before: what REP MOVS defines, overlaps included. */
            memcpy(sim_ram, shadow, RAM_SIZE);
            memcpy(sim_mmio, mmio_pre, MMIO_SIZE);
            memcpy(sim_dev, dev_pre, DEV_SIZE);
            uint32_t count = d->len / elem;
            for (uint32_t k = 0; k < count; k++) {
                uint32_t i = backward ? count - 1 - k : k;
                uint8_t tmp[8];
                for (unsigned j = 0; j < elem; j++)
                    tmp[j] = sim_read(desc_gpa(src, i * elem + j));
                for (unsigned j = 0; j < elem; j++) {
                    uint64_t gpa = desc_gpa(d, i * elem + j);
                    if (place_of(gpa).pk == PK_ROM_B)
                        fail("prepared move to the ROM that reports writes returned 0");
                    sim_write(gpa, tmp[j]);
                }
            }
            for (uint32_t i = 0; i < d->len; i++) {
                uint64_t gpa = desc_gpa(d, i);
                if (sim_read(gpa) != model_byte(gpa))
                    fail("prepared move (elem %u, %s): byte %u at gpa %#llx holds %#x, want %#x",
                         elem, backward ? "backward" : "forward", i, (unsigned long long)gpa,
                         model_byte(gpa), sim_read(gpa));
            }
            break;
        }
        }
    }
    if (rc == 0)
        res->hash = hash_bytes(0, buf, o->kind == OP_PREP_READ ? n : 0);
    op_end(&c);
}

static void run_access(struct op *o, struct res *res)
{
    memset(res, 0, sizeof(*res));
    io_fail_at = o->io_at;
    io_fail_what = o->io_what;
    cur_kind = o->kind;
    cb_plan.on = (o->cb & 1) != 0;
    cb_plan.where = (uint8_t)((o->cb >> 2) & 3);
    cb_plan.at = (uint8_t)(1 + ((o->cb & 0x30) == 0x30) * ((o->cb >> 6) + 1));
    cb_plan.what = o->cb2;
    cb_plan.seen = 0;
    if (trace)
        fprintf(stderr,
                "trace: %s bad %u va %#llx va2 %#llx len %u access %#x off %u n %u elem %u "
                "slot %u/%u flags %#x value %#llx count %#llx budget %#llx io %u/%u cb %#x/%#x\n",
                op_names[o->kind], o->bad, (unsigned long long)o->va, (unsigned long long)o->va2,
                o->len, o->access, o->off, o->n, o->elem, o->slot, o->slot2, o->flags,
                (unsigned long long)o->value, (unsigned long long)o->count,
                (unsigned long long)o->budget, o->io_at, o->io_what, o->cb, o->cb2);
    switch (o->kind) {
    case OP_READ:
    case OP_LOAD:
        x_read(o, res);
        break;
    case OP_WRITE:
    case OP_STORE:
        x_write(o, res);
        break;
    case OP_RMW:
    case OP_CMPXCHG:
        x_atomic(o, res);
        break;
    case OP_REP_MOVS:
    case OP_REP_STOS:
    case OP_REP_RESUME:
        x_rep(o, res);
        break;
    case OP_PROBE:
    case OP_PROBE_NOFAULT:
        x_probe(o, res);
        break;
    case OP_PROBE_HIT:
        x_probe_hit(o, res);
        break;
    case OP_PREPARE:
        x_prepare(o, res);
        break;
    default:
        x_prepared(o, res);
        break;
    }
    io_fail_at = 0;
    cur_kind = ~0u;
    cb_plan.on = false;
    if (trace)
        fprintf(stderr, "trace:   -> rc %d fault %d/%#x/%#llx, %u callbacks\n", res->rc,
                res->fault.vector, res->fault.error_code, (unsigned long long)res->fault.cr2,
                io_n);
}

/* ---- Operations: everything else ------------------------------------------------------ */

static void plain_begin(struct ctx *c, const char *name)
{
    op_begin(c, name);
    if (trace)
        fprintf(stderr, "trace: %s\n", name);
    c->plain = true;
    c->hits = HITS_NONE;
    if (in_insn)
        insn_tainted = true;
}

static void plain_end(struct ctx *c)
{
    settle(c);
    expect_no_effect(c, "not an access", true);
    op_end(c);
}

static void expect_rc(int rc, int want, const char *what)
{
    if (rc != want)
        fail("%s returned %d (%s), want %d (%s)", what, rc, vmmu_error_name(rc), want,
             vmmu_error_name(want));
}

/* vmmu_insn_end() as the model sees it. */
static void model_insn_end(int status)
{
    in_insn = false;
    epoch++;
    if (status != VMMU_EPENDING || model_pass >= UINT16_MAX)
        model_pass = 0;
}

static void model_insn_begin(void)
{
    model_pass = model_pass ? model_pass + 1 : 1;
    in_insn = true;
    insn_tainted = false;
}

static void op_raw_begin(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    plain_begin(&c, "vmmu_insn_begin");
    if (b & 1) {
        expect_rc(vmmu_insn_begin(NULL), VMMU_EINVAL, "vmmu_insn_begin(NULL)");
    } else {
        int rc = vmmu_insn_begin(vcpu);
        expect_rc(rc, in_insn ? VMMU_EINVAL : 0, in_insn ? "nested vmmu_insn_begin" : c.name);
        if (rc == 0)
            model_insn_begin();
    }
    plain_end(&c);
}

static void op_raw_end(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    static const int statuses[8] = {0, VMMU_EPENDING, VMMU_EPENDING, VMMU_EINVAL, 14, 1,
                                    VMMU_EMMIO, -12345};
    int status = statuses[b & 7];
    plain_begin(&c, "vmmu_insn_end");
    if (b & 8) {
        expect_rc(vmmu_insn_end(NULL, status), VMMU_EINVAL, "vmmu_insn_end(NULL)");
    } else {
        int rc = vmmu_insn_end(vcpu, status);
        expect_rc(rc, in_insn ? 0 : VMMU_EINVAL, in_insn ? c.name : "vmmu_insn_end without begin");
        if (rc == 0)
            model_insn_end(status);
    }
    plain_end(&c);
}

static void op_raw_latch(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    switch (b & 3) {
    case 0:
        plain_begin(&c, "vmmu_latch_discard");
        if (b & 4) {
            expect_rc(vmmu_latch_discard(NULL), VMMU_EINVAL, "vmmu_latch_discard(NULL)");
        } else {
            expect_rc(vmmu_latch_discard(vcpu), 0, c.name);
            model_pass = in_insn ? 1 : 0;
        }
        break;
    case 1: {
        plain_begin(&c, "vmmu_latch_disable");
        if (b & 4) {
            if (vmmu_latch_disable(NULL) != 0)
                fail("vmmu_latch_disable(NULL) returned a token");
            break;
        }
        if (dis_n == sizeof(dis_stack) / sizeof(dis_stack[0]))
            break;
        unsigned t = vmmu_latch_disable(vcpu);
        if (!t && !dis_unknown)
            fail("vmmu_latch_disable returned token 0 for a vCPU");
        dis_stack[dis_n++] = t;
        break;
    }
    default: {
        plain_begin(&c, "vmmu_latch_restore");
        if (b & 4) {
            vmmu_latch_restore(NULL, (unsigned)take(r, 4)); /* no-op */
            break;
        }
        if (!dis_n)
            break;
        unsigned sel = (b >> 3) & 7;
        if (sel < 5) {
            /* The last token, or an older one (which ends the newer ones too). */
            unsigned i = sel < 3 ? dis_n - 1 : (unsigned)(take(r, 1) % dis_n);
            vmmu_latch_restore(vcpu, dis_stack[i]);
            dis_n = i;
            if (!i)
                dis_unknown = false;
        } else {
            /* A bogus token, while a real one is left to undo it. */
            unsigned t = sel == 5 ? dis_stack[dis_n - 1] + 1 + (unsigned)take(r, 1)
                                  : sel == 6 ? ~0u : (unsigned)take(r, 4);
            vmmu_latch_restore(vcpu, t);
            dis_unknown = true;
        }
        break;
    }
    }
    plain_end(&c);
}

static void op_safepoint(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    plain_begin(&c, "safe point");
    switch (b % 5) {
    case 0:
        expect_rc(vmmu_vcpu_safepoint(vcpu), 0, "vmmu_vcpu_safepoint");
        epoch++;
        break;
    case 1:
        expect_rc(vmmu_vcpu_safepoint(NULL), VMMU_EINVAL, "vmmu_vcpu_safepoint(NULL)");
        break;
    case 2:
        expect_rc(vmmu_vcpu_offline(vcpu), 0, "vmmu_vcpu_offline");
        epoch++;
        expect_rc(vmmu_vcpu_online(vcpu), 0, "vmmu_vcpu_online");
        break;
    case 3:
        expect_rc(vmmu_vcpu_offline(vcpu), 0, "vmmu_vcpu_offline");
        epoch++;
        expect_rc(vmmu_vcpu_safepoint(vcpu), VMMU_EINVAL, "vmmu_vcpu_safepoint while offline");
        expect_rc(vmmu_vcpu_offline(vcpu), VMMU_EINVAL, "vmmu_vcpu_offline while offline");
        expect_rc(vmmu_vcpu_online(vcpu), 0, "vmmu_vcpu_online");
        break;
    default:
        expect_rc(vmmu_vcpu_online(vcpu), VMMU_EBUSY, "vmmu_vcpu_online while online");
        break;
    }
    plain_end(&c);
}

static void op_watch(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    if ((b & 3) == 0 || (b & 3) == 1) {
        plain_begin(&c, "vmmu_watch_add");
        uint64_t va = pick_va(r), len;
        unsigned lsel = (unsigned)take(r, 1);
        switch (lsel & 7) {
        case 0:
        case 1:
        case 2:
            len = 1 + (lsel >> 3);
            break;
        case 3:
            len = 4096;
            break;
        case 4:
            len = 1ull << (12 + (lsel >> 3) % 30);
            break;
        case 5:
            len = 0;
            break;
        case 6: /* wraps past 2^64 */
            va = ~0ull - (lsel >> 3);
            len = 2 + (lsel >> 3) + (uint64_t)take(r, 1);
            break;
        default:
            len = take(r, 8);
            break;
        }
        unsigned flags = (b >> 2) & 7;
        if ((b >> 5) == 7)
            flags |= 8u << (unsigned)(take(r, 1) % 8); /* unknown flags */
        struct vmmu_vcpu *v = (b >> 5) == 6 ? NULL : vcpu;
        bool valid = v && len && va + (len - 1) >= va && !(flags & ~VMMU_WATCH_FLAGS_ALL) &&
                     (flags & VMMU_WATCH_ACCESS);
        uint32_t id = 0;
        if (valid && nwps == WATCH_MAX) {
            plain_end(&c);
            return;
        }
        int rc = vmmu_watch_add(v, va, len, flags, (valid || (b & 0x80)) ? &id : NULL);
        check_rc(c.name, rc, RCS_WATCH_ADD);
        if (!valid) {
            expect_rc(rc, VMMU_EINVAL, "vmmu_watch_add with a wrong argument");
        } else {
            expect_rc(rc, 0, c.name);
            if (!id || wp_by_id(id))
                fail("vmmu_watch_add gave id %u, which is 0 or not new", id);
            wps[nwps++] = (struct wp){va, va + len - 1, flags, id, true};
        }
    } else if ((b & 3) == 2) {
        plain_begin(&c, "vmmu_watch_remove");
        unsigned sel = (b >> 2) & 7;
        struct vmmu_vcpu *v = sel == 7 ? NULL : vcpu;
        uint32_t id = sel < 4 && nwps ? wps[take(r, 1) % nwps].id
                      : sel == 4      ? 0
                                      : (uint32_t)take(r, 4);
        struct wp *w = NULL;
        for (unsigned i = 0; i < nwps; i++)
            if (wps[i].id == id && wps[i].live)
                w = &wps[i];
        int rc = vmmu_watch_remove(v, id);
        check_rc(c.name, rc, RCS_WATCH_REMOVE);
        expect_rc(rc, !v ? VMMU_EINVAL : w ? 0 : VMMU_ENOENT, c.name);
        if (w && v)
            w->live = false;
    } else {
        plain_begin(&c, "vmmu_watch_take_hits");
        struct vmmu_watch_hit h[4];
        unsigned sel = (b >> 2) & 7;
        uint64_t dropped = 0;
        int rc;
        if (sel == 0)
            expect_rc(vmmu_watch_take_hits(NULL, h, 4, &dropped), VMMU_EINVAL, "take_hits(NULL)");
        else if (sel == 1)
            expect_rc(vmmu_watch_take_hits(vcpu, NULL, 3, NULL), VMMU_EINVAL,
                      "take_hits(NULL out, max 3)");
        else if (sel == 2)
            expect_rc(vmmu_watch_take_hits(vcpu, NULL, 0, NULL), 0, "take_hits(NULL out, max 0)");
        else if ((rc = vmmu_watch_take_hits(vcpu, h, sel & 3, (sel & 4) ? &dropped : NULL)) < 0 ||
                 rc > (int)(sel & 3))
            fail("vmmu_watch_take_hits(max %u) returned %d", sel & 3, rc);
    }
    plain_end(&c);
}

static void op_dirty(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    unsigned sel = (b >> 2) & 15;
    uint32_t id = ram_id;
    int want = 0;
    struct vmmu_vm *m = vm;
    if (sel == 8) {
        id = rom_b_id;
        want = VMMU_EINVAL;
    } else if (sel == 9) {
        id = (b & 0x40) ? mmio_id : dev_id;
        want = VMMU_EINVAL;
    } else if (sel == 10) {
        id = (b & 0x40) ? 0 : 7777;
        want = VMMU_ENOENT;
    } else if (sel == 11) {
        m = NULL;
        want = VMMU_EINVAL;
    } else if (sel == 12) {
        id = (b & 0x40) ? nullio_id : rom_a_id;
        want = VMMU_EINVAL;
    }
    if (b & 1) {
        plain_begin(&c, "vmmu_dirty_log_enable");
        bool on = (b & 2) != 0;
        int rc = vmmu_dirty_log_enable(m, id, on);
        check_rc(c.name, rc, RCS_DIRTY);
        expect_rc(rc, want, c.name);
        if (rc == 0) {
            dirty_on = on;
            if (on) {
                dirty_expect = 0;
                dirty_excused = 0;
                dirty_writes_since = false;
                for (unsigned i = 0; i < SLOTS; i++)
                    slots[i].held = true;
            }
        }
    } else {
        plain_begin(&c, "vmmu_dirty_log_get_and_clear");
        uint64_t bitmap[4];
        memset(bitmap, 0xee, sizeof(bitmap));
        uint64_t nd = 77, *ndp = (b & 2) ? &nd : NULL;
        size_t words = (b & 0x80) ? 4 : 1;
        uint64_t *bm = bitmap;
        if (want == 0 && (b & 0x40)) {
            if (b & 2)
                words = 0;
            else
                bm = NULL;
            want = VMMU_EINVAL;
        }
        if (want == 0 && !dirty_on)
            want = VMMU_EINVAL;
        int rc = vmmu_dirty_log_get_and_clear(m, id, bm, words, ndp);
        check_rc(c.name, rc, RCS_DIRTY);
        expect_rc(rc, want, c.name);
        if (rc == 0) {
            uint64_t got = bitmap[0];
            if (got >> RAM_PAGES)
                fail("dirty bitmap %#llx names pages beyond the region's %u",
                     (unsigned long long)got, RAM_PAGES);
            uint32_t missed = dirty_expect & ~(uint32_t)got;
#if FUZZ_ACCESS_EXCUSE_HELD_PREPARED
            missed &= ~dirty_excused;
#endif
            if (missed)
                fail("dirty bitmap %#llx misses pages %#x that vmmu wrote", (unsigned long long)got,
                     missed);
            if (!dirty_writes_since && !dirty_expect && got)
                fail("dirty bitmap %#llx, but nothing was written since", (unsigned long long)got);
            if (ndp && nd != (uint64_t)__builtin_popcountll(got))
                fail("ndirty %llu for bitmap %#llx", (unsigned long long)nd,
                     (unsigned long long)got);
            dirty_expect = 0;
            dirty_excused = 0;
            dirty_writes_since = false;
        }
        if (rc == 0)
            for (unsigned i = 0; i < SLOTS; i++)
                slots[i].held = true;
    }
    plain_end(&c);
}

static void op_code(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    if ((b & 7) == 7) {
        plain_begin(&c, "vmmu_access_set_code_handler");
        switch ((b >> 3) & 3) {
        case 0:
            expect_rc(vmmu_access_set_code_handler(NULL, code_cb, &code_tag), VMMU_EINVAL,
                      "vmmu_access_set_code_handler(NULL)");
            break;
        case 1:
            expect_rc(vmmu_access_set_code_handler(vcpu, NULL, NULL), 0, c.name);
            code_handler_on = false;
            code_sure = 0; /* marks may now go without a call */
            break;
        default:
            expect_rc(vmmu_access_set_code_handler(vcpu, code_cb, &code_tag), 0, c.name);
            code_handler_on = true;
            break;
        }
        plain_end(&c);
        return;
    }
    plain_begin(&c, "vmmu_code_mark");
    uint64_t gpa, npages = 1 + ((b >> 3) & 1);
    int want = 0;
    switch (b & 7) {
    case 0:
    case 1:
    case 2:
        gpa = (take(r, 1) % RAM_PAGES) * 4096ull + (take(r, 1) & 0x3f);
        if (b & 0x80)
            npages = 1 + take(r, 1) % 4;
        if ((gpa >> 12) + npages > RAM_PAGES)
            want = VMMU_EHOLE;
        break;
    case 3:
        gpa = (b & 0x10) ? ROM_B_GPA : ROM_A_GPA;
        npages = 1;
        break;
    case 4:
        gpa = (b & 0x10) ? MMIO_GPA : DEV_GPA;
        want = VMMU_EINVAL;
        break;
    case 5:
        gpa = (b & 0x10) ? HOLE_GPA : BEYOND_GPA + 4096;
        want = (b & 0x10) ? VMMU_EHOLE : VMMU_ERANGE;
        break;
    default:
        gpa = 0x1000;
        npages = 0;
        want = VMMU_EINVAL;
        break;
    }
    struct vmmu_vm *m = (b & 0x60) == 0x60 ? NULL : vm;
    if (!m)
        want = VMMU_EINVAL;
    int rc = vmmu_code_mark(m, gpa, npages);
    check_rc(c.name, rc, RCS_CODE_MARK);
    /* RAM ranges running past the RAM: any of the codes for a bad page. */
    bool exact_code = (b & 7) > 2;
    if ((rc == 0) != (want == 0) || (want && exact_code && rc != want))
        fail("vmmu_code_mark(%#llx, %llu) returned %d, want %d", (unsigned long long)gpa,
             (unsigned long long)npages, rc, want);
    if (rc == 0)
        for (unsigned i = 0; i < SLOTS; i++)
            slots[i].held = true;
    if (rc == 0 && gpa < RAM_SIZE) {
        for (uint64_t p = gpa >> 12; p < (gpa >> 12) + npages; p++) {
            code_maybe |= 1u << p;
            if (code_handler_on)
                code_sure |= 1u << p;
        }
    }
    /* Marks as the P2M has them: a refused call changed none. */
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        bool marked = (page_state(p * 4096ull) & VMMU_PAGE_CODE) != 0;
        if ((marked && !(code_maybe & (1u << p))) || (!marked && (code_sure & (1u << p))))
            fail("RAM page %u is %smarked as code, the model says maybe %d sure %d", p,
                 marked ? "" : "not ", !!(code_maybe & (1u << p)), !!(code_sure & (1u << p)));
    }
    plain_end(&c);
}

/* Guest memory changed behind vmmu's back. */
static void edit_memory(struct reader *r)
{
    static const uint8_t bits[] = {0, 1, 2, 5, 6, 7, 8, 12, 13, 14, 15, 16, 59, 63, 3, 4};
    unsigned b = (unsigned)take(r, 1);
    switch (b & 3) {
    case 0:
    case 1: {
        uint64_t x = (b & 1) ? 1ull << bits[take(r, 1) % sizeof(bits)] : take(r, 8);
        uint64_t gpa;
        unsigned size = 8;
        if (last_nlevels && (b & 4)) {
            gpa = last_levels[take(r, 1) % last_nlevels].gpa;
            size = last_levels[0].size;
        } else if (b & 0x10) {
            gpa = recent_gpa[(b >> 5) & 3] & ~7ull; /* data an access just used */
        } else {
            gpa = take(r, 3) % (RAM_SIZE - 8);
        }
        if (b & 8)
            x &= ~TAME_MASK_64;
        ram_in(page_bit(gpa) | page_bit(gpa + size - 1), (b & 0x40) != 0, "guest memory edit");
        for (unsigned i = 0; i < size && gpa + i < RAM_SIZE; i++)
            ram[gpa + i] ^= (uint8_t)(x >> (8 * i));
        guest_changed((1u << (gpa >> 12)) | (1u << ((gpa + size - 1) >> 12) % RAM_PAGES));
        break;
    }
    case 2: { /* the ROM's contents (a firmware update behind the bus) */
        uint8_t *rom = (b & 4) ? rom_b : rom_a, *model = (b & 4) ? rom_b_model : rom_a_model;
        unsigned off = (unsigned)take(r, 2) & 0xff8;
        uint64_t v = take(r, 8);
        memcpy(rom + off, &v, 8);
        memcpy(model + off, &v, 8);
        break;
    }
    default: { /* device state */
        uint8_t *mem = (b & 4) ? dev_mem : mmio_mem;
        unsigned off = (unsigned)take(r, 2) & 0x1ff8;
        uint64_t v = take(r, 8);
        memcpy(mem + off, &v, 8);
        break;
    }
    }
}

static void op_edit(struct reader *r)
{
    struct ctx c;
    plain_begin(&c, "guest memory edit");
    edit_memory(r);
    plain_end(&c);
}

static bool took_effect(int rc, const struct vmmu_x86_fault *f)
{
    if (rc != 0)
        fail("register write returned %d", rc);
    return f->vector == VMMU_X86_FAULT_NONE;
}

static void after_register_write(const uint64_t old_pdpte[4], bool flushed_all)
{
    if (flushed_all)
        everything_dropped();
    else if (memcmp(old_pdpte, pg()->pdpte, sizeof(pg()->pdpte)) != 0)
        stale = true;
}

static void op_regs(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    plain_begin(&c, "register write");
    struct vmmu_x86_fault f;
    uint64_t old_pdpte[4];
    memcpy(old_pdpte, pg()->pdpte, sizeof(old_pdpte));
    switch (b & 7) {
    case 0:
        expect_rc(vmmu_vcpu_set_cpl(vcpu, (b >> 3) & 3), 0, "vmmu_vcpu_set_cpl");
        break;
    case 1:
        expect_rc(vmmu_vcpu_set_rflags(vcpu, pg()->rflags ^ VMMU_X86_RFLAGS_AC), 0,
                  "vmmu_vcpu_set_rflags");
        break;
    case 2: {
        uint32_t v = (uint32_t)take(r, 4);
        if (b & 8)
            v &= 0xff;
        (void)took_effect(vmmu_vcpu_set_pkru(vcpu, v, &f), &f);
        break;
    }
    case 3: {
        uint64_t old = pg()->cr0;
        uint64_t bit = (b & 8) ? VMMU_X86_CR0_AM : VMMU_X86_CR0_WP;
        if (took_effect(vmmu_vcpu_set_cr0(vcpu, old ^ bit, &f), &f))
            after_register_write(old_pdpte, false);
        break;
    }
    case 4:
    case 5: {
        static const uint64_t bits4[6] = {VMMU_X86_CR4_SMEP, VMMU_X86_CR4_SMAP, VMMU_X86_CR4_PKE,
                                          VMMU_X86_CR4_PGE,  VMMU_X86_CR4_PSE,  VMMU_X86_CR4_SMAP};
        uint64_t old = pg()->cr4, bit = bits4[(b >> 3) % 6];
        if (took_effect(vmmu_vcpu_set_cr4(vcpu, old ^ bit, &f), &f))
            after_register_write(old_pdpte, (bit & (VMMU_X86_CR4_PGE | VMMU_X86_CR4_PSE)) != 0);
        break;
    }
    case 6: {
        uint64_t old = pg()->efer;
        if (took_effect(vmmu_vcpu_set_efer(vcpu, old ^ VMMU_X86_EFER_NXE, &f), &f))
            everything_dropped(); /* docs/tlb.md: an NXE change drops everything */
        break;
    }
    default:
        if (b & 8) {
            expect_rc(vmmu_vcpu_tlb_flush_all(vcpu), 0, "vmmu_vcpu_tlb_flush_all");
            everything_dropped();
        } else if (b & 16) {
            expect_rc(vmmu_vcpu_invlpg(vcpu, pick_va(r)), 0, "vmmu_vcpu_invlpg");
        } else {
            const struct vmmu_x86_paging *p = pg();
            struct vmmu_x86_regs regs;
            expect_rc(vmmu_x86_get_state(p, &regs), 0, "vmmu_x86_get_state");
            /* With b & 32, PAE paging reads the PDPTEs from memory again:
             * the guest may have given them reserved bits meanwhile (then
             * nothing changes).  Otherwise they are the registers saved. */
            bool reread = (b & 32) != 0;
            if (reread)
                regs.flags = 0;
            /* The setters let CPL and RFLAGS.VM contradict CR0 and EFER;
             * such a state does not load. */
            bool pe = (p->cr0 & VMMU_X86_CR0_PE) != 0;
            bool v86 = (p->rflags & (1ull << 17)) != 0;
            bool possible = (pe || p->cpl == 0) &&
                            !(v86 && (!pe || p->cpl != 3 || (p->efer & VMMU_X86_EFER_LMA)));
            int rc = vmmu_vcpu_set_state(vcpu, &regs);
            if (rc != 0 && !(rc == VMMU_EINVAL &&
                             (!possible || (reread && p->mode == VMMU_X86_MODE_PAE))))
                fail("vmmu_vcpu_set_state (reload) returned %d", rc);
            if (rc == 0)
                everything_dropped();
        }
        break;
    }
    plain_end(&c);
}

/* The pager's wrong arguments: each refused with its code, changing
 * nothing (the P2M and the statistics say so). */
static void pager_refusals(unsigned b, uint32_t rnd)
{
    struct vmmu_gpa_range r[2] = {{(rnd % RAM_PAGES) * 4096ull, 4096}, {0, 0}};
    const struct vmmu_gpa_range *rp = r;
    size_t n = 2;
    struct vmmu_pager *pgr = pager;
    int want = VMMU_EINVAL;
    switch (b & 7) {
    case 0:
        pgr = NULL;
        break;
    case 1:
        r[1] = (struct vmmu_gpa_range){0x1000 + 1 + (rnd >> 20) % 4095, 4096};
        if (rnd & 0x40)
            r[1] = (struct vmmu_gpa_range){0x1000, 4096 + 1 + (rnd >> 20) % 4095};
        want = VMMU_EALIGN;
        break;
    case 2:
        r[1] = (struct vmmu_gpa_range){0x2000, 0};
        break;
    case 3: { /* pages the pager cannot manage: the ROMs (caller memory), MMIO, a device */
        static const uint64_t at[4] = {ROM_A_GPA, ROM_B_GPA, MMIO_GPA, DEV_GPA};
        r[1] = (struct vmmu_gpa_range){at[(rnd >> 8) & 3], 4096};
        break;
    }
    case 4:
        r[1] = (rnd & 0x100) ? (struct vmmu_gpa_range){HOLE_GPA, 4096}
                             : (struct vmmu_gpa_range){RAM_SIZE - 4096, 8192};
        want = VMMU_EHOLE;
        break;
    case 5:
        r[1] = (rnd & 0x100) ? (struct vmmu_gpa_range){BEYOND_GPA, 4096}
                             : (struct vmmu_gpa_range){0, BEYOND_GPA + 4096};
        want = VMMU_ERANGE;
        break;
    case 6:
        rp = NULL;
        n = (rnd & 0x100) ? 0 : 1;
        want = n ? VMMU_EINVAL : 0;
        break;
    default: {
        struct vmmu_pager_config bad = {.flags = 2u << ((rnd >> 8) % 30)};
        struct vmmu_pager *other = NULL;
        struct vmmu_pager_stats st;
        uint64_t dummy;
        expect_rc(vmmu_pager_create(vm, &bad, &other), VMMU_EINVAL,
                  "vmmu_pager_create with unknown flags");
        expect_rc(vmmu_pager_create(NULL, NULL, &other), VMMU_EINVAL, "vmmu_pager_create(NULL)");
        expect_rc(vmmu_pager_create(vm, NULL, NULL), VMMU_EINVAL,
                  "vmmu_pager_create(vm, NULL, NULL)");
        expect_rc(vmmu_pager_stats(NULL, &st), VMMU_EINVAL, "vmmu_pager_stats(NULL)");
        expect_rc(vmmu_pager_balance(NULL, &dummy), VMMU_EINVAL, "vmmu_pager_balance(NULL)");
        if (pager) {
            expect_rc(vmmu_pager_create(vm, NULL, &other), VMMU_EBUSY,
                      "vmmu_pager_create while the vm has one");
            expect_rc(vmmu_pager_stats(pager, NULL), VMMU_EINVAL,
                      "vmmu_pager_stats(pager, NULL)");
        }
        if (other)
            fail("a refused vmmu_pager_create gave a pager");
        pager_check("the pager's wrong arguments");
        return;
    }
    }
    if (!pgr)
        want = VMMU_EINVAL;
    static const char *const names[4] = {"vmmu_pager_page_out", "vmmu_pager_balloon_out",
                                         "vmmu_pager_page_in", "vmmu_pager_balloon_in"};
    unsigned fn = (b >> 3) & 3;
    int rc;
    switch (fn) {
    case 0:
        rc = vmmu_pager_page_out(pgr, rp, n);
        break;
    case 1:
        rc = vmmu_pager_balloon_out(pgr, rp, n);
        break;
    case 2:
        rc = vmmu_pager_page_in(pgr, rp, n);
        break;
    default:
        rc = vmmu_pager_balloon_in(pgr, rp, n);
        break;
    }
    if (rc != want)
        fail("%s with a wrong range (%s) returned %d (%s), want %d (%s)", names[fn],
             "see the trace", rc, vmmu_error_name(rc), want, vmmu_error_name(want));
    pager_check("the pager's wrong arguments");
}

/* The host pager between operations: a change the input chooses, or a
 * call with wrong arguments. */
static void op_pager(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    uint32_t rnd = (uint32_t)take(r, 4);
    plain_begin(&c, "the host pager");
    if ((b & 0xc0) == 0xc0)
        pager_refusals(b, rnd);
    else if (pager)
        host_action(b & 7, (b >> 3) & 7, rnd, c.name);
    plain_end(&c);
}

static void op_misc(struct reader *r)
{
    struct ctx c;
    unsigned b = (unsigned)take(r, 1);
    plain_begin(&c, "vmmu_latch_stats");
    struct vmmu_latch_stats s;
    switch (b & 3) {
    case 0:
        expect_rc(vmmu_latch_stats(NULL, &s), VMMU_EINVAL, "vmmu_latch_stats(NULL)");
        break;
    case 1:
        expect_rc(vmmu_latch_stats(vcpu, NULL), VMMU_EINVAL, "vmmu_latch_stats(vcpu, NULL)");
        break;
    case 2:
        if (vmmu_access_fast(NULL) != NULL || vmmu_access_fast(vcpu) != fast)
            fail("vmmu_access_fast");
        break;
    default:
        if (vmmu_access_read(vcpu, 0, NULL, 0, 0, NULL) != VMMU_EINVAL ||
            vmmu_access_rmw(NULL, 0, 4, VMMU_RMW_ADD, 1, NULL, 0, NULL) != VMMU_EINVAL ||
            vmmu_access_rep_stos(vcpu, NULL, 1, NULL) != VMMU_EINVAL ||
            vmmu_prepared_move(NULL, NULL, 1, false) != VMMU_EINVAL)
            fail("a call with several NULL arguments was not refused");
        break;
    }
    plain_end(&c);
}

/* ---- An instruction and its re-executions ------------------------------------------- */

static unsigned pick_access_kind(unsigned b)
{
    static const uint8_t kinds[32] = {
        OP_READ,     OP_READ,     OP_WRITE,     OP_WRITE,          OP_LOAD,         OP_LOAD,
        OP_LOAD,     OP_STORE,    OP_STORE,     OP_STORE,          OP_RMW,          OP_RMW,
        OP_CMPXCHG,  OP_CMPXCHG,  OP_REP_MOVS,  OP_REP_STOS,       OP_REP_RESUME,   OP_PROBE,
        OP_PROBE,    OP_PROBE_NOFAULT, OP_PROBE_HIT, OP_PREPARE,   OP_PREPARE,      OP_PREPARE,
        OP_PREP_READ, OP_PREP_READ, OP_PREP_WRITE, OP_PREP_WRITE,  OP_PREP_SET,     OP_PREP_MOVE,
        OP_REP_MOVS, OP_READ,
    };
    return kinds[b & 31];
}

static bool same_request(const struct io_call *a, uint64_t gpa, unsigned size, int write,
                         uint64_t data)
{
    return a->dev && a->gpa == gpa && a->size == size && a->write == write &&
           (!write || a->data == data);
}

static void op_insn(struct reader *r)
{
    struct op sub[MAX_SUB];
    unsigned n = 1 + (unsigned)take(r, 1) % MAX_SUB;
    for (unsigned i = 0; i < n; i++)
        decode_access(r, &sub[i], pick_access_kind((unsigned)take(r, 1)));
    /* A host change before an access (in every pass). */
    uint8_t host[MAX_SUB];
    uint32_t host_rnd[MAX_SUB];
    for (unsigned i = 0; i < n; i++) {
        host[i] = (uint8_t)take(r, 1);
        host_rnd[i] = (host[i] & 3) == 0 ? (uint32_t)take(r, 4) : 0;
    }
    uint8_t ctl[MAX_PASSES];
    for (unsigned i = 0; i < MAX_PASSES; i++)
        ctl[i] = (uint8_t)take(r, 1);

    if (in_insn) {
        cur_op = "vmmu_insn_end (closing a raw instruction)";
        expect_rc(vmmu_insn_end(vcpu, 0), 0, cur_op);
        model_insn_end(0);
    }
    /* The checks of re-executions hold for an instruction that starts
     * with an empty latch that records. */
    bool fresh = model_pass == 0 && dis_n == 0 && !dis_unknown;
    struct vmmu_rep rep0 = rep;
    bool movs0 = rep_is_movs;
    unsigned src0 = rep_src_access;
    struct res prev[MAX_SUB], cur[MAX_SUB];
    int prev_pended = -1;
    struct {
        uint64_t gpa, data;
        unsigned size;
        int write;
    } req = {0, 0, 0, 0};
    for (unsigned pass = 1; pass <= MAX_PASSES; pass++) {
        rep = rep0; /* the instruction's registers as it began */
        rep_is_movs = movs0;
        rep_src_access = src0;
        cur_op = "vmmu_insn_begin";
        if (trace)
            fprintf(stderr, "trace: INSN pass %u\n", pass);
        expect_rc(vmmu_insn_begin(vcpu), 0, cur_op);
        model_insn_begin();
        insn_pass = pass;
        check_latch_stats(NULL, 0, false);
        pass_io_any = false;
        int status = 0, pended = -1;
        unsigned ran = 0;
        for (unsigned i = 0; i < n; i++) {
            struct op o = sub[i];
            if (pager && (host[i] & 3) == 0) {
                cur_op = "the host pager, inside an instruction";
                if (trace)
                    fprintf(stderr, "trace: host change %u/%u %#x\n", (host[i] >> 2) & 7,
                            host[i] >> 5, host_rnd[i]);
                host_action((host[i] >> 2) & 7, host[i] >> 5, host_rnd[i], cur_op);
            }
            if (pass > 1) {
                o.io_at = (uint8_t)(ctl[pass - 2] >> 5);
                o.io_what = (uint8_t)(ctl[pass - 2] & 7);
            }
            run_access(&o, &cur[i]);
            sub[i].exp_set = o.exp_set;
            memcpy(sub[i].exp, o.exp, sizeof(o.exp));
            ran = i + 1;
            if (cur[i].rc == VMMU_EPENDING) {
                status = VMMU_EPENDING;
                pended = (int)i;
                break;
            }
            if (cur[i].rc) {
                status = cur[i].rc;
                break;
            }
            if (cur[i].fault.vector != VMMU_X86_FAULT_NONE) {
                status = 1; /* the fault is raised: the latch goes */
                break;
            }
            if (cur[i].stops)
                break;
        }
        if (pass > 1 && fresh) {
            cur_op = "re-execution";
            unsigned upto = (unsigned)prev_pended < ran ? (unsigned)prev_pended : ran;
            for (unsigned i = 0; i < upto; i++) {
                if (cur[i].exempt || prev[i].exempt)
                    continue;
                if (cur[i].rc != prev[i].rc || !fault_same(&cur[i].fault, &prev[i].fault) ||
                    cur[i].hash != prev[i].hash)
                    fail("pass %u: access %u (%s) returned %d/%d/%#llx, pass %u saw %d/%d/%#llx",
                         pass, i, op_names[sub[i].kind], cur[i].rc, cur[i].fault.vector,
                         (unsigned long long)cur[i].hash, pass - 1, prev[i].rc,
                         prev[i].fault.vector, (unsigned long long)prev[i].hash);
            }
            if (pass_io_any && !same_request(&pass_io_first, req.gpa, req.size, req.write,
                                             req.data))
                fail("pass %u: the first callback (%s %s gpa %#llx size %u data %#llx) is not "
                     "the device access that pended (gpa %#llx size %u %s data %#llx): a "
                     "completed piece was repeated, or another access made", pass,
                     pass_io_first.dev ? "device" : "mmio", pass_io_first.write ? "write" : "read",
                     (unsigned long long)pass_io_first.gpa, pass_io_first.size,
                     (unsigned long long)pass_io_first.data, (unsigned long long)req.gpa,
                     req.size, req.write ? "write" : "read", (unsigned long long)req.data);
            if (ran > (unsigned)prev_pended && !pass_io_any && !cur[prev_pended].exempt &&
                cur[prev_pended].rc != VMMU_EOVERFLOW)
                fail("pass %u reached the access that pended, but made no callback", pass);
        }
        cur_op = "vmmu_insn_end";
        expect_rc(vmmu_insn_end(vcpu, status), 0, cur_op);
        model_insn_end(status);
        insn_pass = 0;
        check_latch_stats(NULL, 0, false);
        if (status != VMMU_EPENDING)
            break;
        n_pending++;
        if (!pend.on)
            fail("VMMU_EPENDING, but the device holds no pending request");
        req.gpa = pend.gpa;
        req.size = pend.size;
        req.write = pend.write;
        req.data = pend.data;
        memcpy(prev, cur, sizeof(prev));
        prev_pended = pended;
        unsigned act = ctl[pass - 1] & 3;
        if (act == 2 || pass == MAX_PASSES) {
            cur_op = "vmmu_latch_discard";
            expect_rc(vmmu_latch_discard(vcpu), 0, cur_op);
            model_pass = 0;
            check_latch_stats(NULL, 0, false);
            break;
        }
        if (act == 3)
            break; /* left pending: whatever begins next replays it */
        /* Between the passes the guest and the devices go on. */
        switch ((ctl[pass - 1] >> 2) & 7) {
        case 1:
        case 2:
            edit_memory(r);
            break;
        case 3:
            edit_memory(r);
            expect_rc(vmmu_vcpu_tlb_flush_all(vcpu), 0, "vmmu_vcpu_tlb_flush_all");
            everything_dropped();
            break;
        case 4:
            edit_memory(r);
            expect_rc(vmmu_vcpu_invlpg(vcpu, ring[take(r, 1) & 3]), 0, "vmmu_vcpu_invlpg");
            break;
        case 5:
            if (code_handler_on) {
                unsigned p = (unsigned)take(r, 1) % RAM_PAGES;
                expect_rc(vmmu_code_mark(vm, p * 4096ull, 1), 0, "vmmu_code_mark");
                code_maybe |= 1u << p;
                code_sure |= 1u << p;
            }
            break;
        case 6:
        case 7:
            if (pager) {
                unsigned hb = (unsigned)take(r, 1);
                cur_op = "the host pager, between passes";
                host_action(hb & 7, (hb >> 3) & 7, (uint32_t)take(r, 4), cur_op);
            }
            if (((ctl[pass - 1] >> 2) & 7) == 7)
                edit_memory(r);
            break;
        default:
            break;
        }
        n_replays++;
    }
    insn_pass = 0;
}

/* ---- The input ------------------------------------------------------------------- */

static void run_op(struct reader *r)
{
    unsigned op = (unsigned)take(r, 1);
    if (op < 0x90) {
        struct op o;
        struct res res;
        decode_access(r, &o, pick_access_kind(op));
        run_access(&o, &res);
        return;
    }
    switch (op % 13) {
    case 0:
    case 1:
    case 2:
        op_insn(r);
        break;
    case 3:
        op_raw_begin(r);
        break;
    case 4:
        op_raw_end(r);
        break;
    case 5:
        op_raw_latch(r);
        break;
    case 6:
        op_safepoint(r);
        break;
    case 7:
        op_watch(r);
        break;
    case 8:
        op_dirty(r);
        break;
    case 9:
        op_code(r);
        break;
    case 10:
        if (op & 0x10)
            op_edit(r);
        else
            op_regs(r);
        break;
    case 11:
        op_misc(r);
        break;
    default:
        op_pager(r);
        break;
    }
}

/* The input's header. */
struct header {
    uint8_t how;   /* bit 0 build tables, 1 tame, 2 zero the table pages, 3 lazy hits,
                      bits 4-6 mode, 7 load by setters */
    uint8_t regs;  /* bits 0-1 CPL, 2 AC, 3 WP, 4 SMEP, 5 SMAP, 6 PKE, 7 NXE */
    uint8_t regs2; /* bit 0 PSE, 1 PGE, bits 2-6 the root page (not built); built: bit 2
                      a watchpoint on window (bit 6) of kinds (bits 3-4, BEFORE bit 5), bit 7
                      dirty logging on */
    uint32_t pkru;
    uint8_t pager; /* bits 0-2: a pager if 7; 3-4 paranoid if 3; 3-7 resident
                      limit (0: none) */
    uint8_t regs3; /* bit 0 CR0.AM */
    uint16_t ops_len;
};

#define HOW_BUILD 1u
#define HOW_TAME 2u
#define HOW_ZERO 4u
#define HOW_LAZY 8u
#define HOW_SETTERS 0x80u

static void regs_from(const struct header *h, struct vmmu_x86_regs *r)
{
    memset(r, 0, sizeof(*r));
    r->cpl = h->regs & 3;
    r->pkru = h->pkru;
    r->rflags = 2 | ((h->regs & 4) ? VMMU_X86_RFLAGS_AC : 0);
    r->cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_ET | ((h->regs & 8) ? VMMU_X86_CR0_WP : 0) |
             ((h->regs3 & 1) ? VMMU_X86_CR0_AM : 0);
    r->cr4 = ((h->regs & 0x10) ? VMMU_X86_CR4_SMEP : 0) |
             ((h->regs & 0x20) ? VMMU_X86_CR4_SMAP : 0) |
             ((h->regs & 0x40) ? VMMU_X86_CR4_PKE : 0) | ((h->regs2 & 1) ? VMMU_X86_CR4_PSE : 0) |
             ((h->regs2 & 2) ? VMMU_X86_CR4_PGE : 0);
    r->efer = (h->regs & 0x80) ? VMMU_X86_EFER_NXE : 0;
    uint64_t root = (h->how & HOW_BUILD) ? 0 : (uint64_t)((h->regs2 >> 2) % RAM_PAGES) << 12;
    switch ((h->how >> 4) & 7) {
    case 0:
        r->cr3 = root;
        break;
    case 1:
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr3 = root;
        break;
    case 2:
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr4 |= VMMU_X86_CR4_PAE;
        r->cr3 = root;
        break;
    default:
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr4 |= VMMU_X86_CR4_PAE | ((((h->how >> 4) & 7) >= 5) ? VMMU_X86_CR4_LA57 : 0);
        r->efer |= VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA;
        r->cr3 = root;
        break;
    }
}

static void load_by_setters(const struct vmmu_x86_regs *r)
{
    struct vmmu_x86_fault f;
    (void)vmmu_vcpu_set_efer(vcpu, r->efer & ~VMMU_X86_EFER_LMA, &f);
    (void)vmmu_vcpu_set_cr3(vcpu, r->cr3, &f);
    (void)vmmu_vcpu_set_cr4(vcpu, r->cr4, &f);
    (void)vmmu_vcpu_set_cr0(vcpu, r->cr0, &f);
    (void)vmmu_vcpu_set_pkru(vcpu, r->pkru, &f);
    (void)vmmu_vcpu_set_rflags(vcpu, r->rflags);
    (void)vmmu_vcpu_set_cpl(vcpu, r->cpl);
}

NOCOV static void tame(bool entries32)
{
    if (entries32) {
        for (size_t i = 0; i + 4 <= RAM_SIZE; i += 4) {
            uint32_t w;
            memcpy(&w, ram + i, 4);
            w &= ~TAME_MASK_32;
            memcpy(ram + i, &w, 4);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= RAM_SIZE; i += 8) {
        uint64_t w;
        memcpy(&w, ram + i, 8);
        w &= ~TAME_MASK_64;
        memcpy(ram + i, &w, 8);
    }
}

/* ---- Page tables built from the input's windows ----------------------------------- */

static uint64_t window_va(struct reader *r, enum vmmu_x86_mode mode)
{
    unsigned sel = (unsigned)take(r, 1);
    uint64_t raw = take(r, 8);
    bool la57 = mode == VMMU_X86_MODE_5LEVEL;
    uint64_t va;
    switch (sel & 7) {
    case 0:
        va = (raw & 0x3f) << 12;
        break;
    case 1:
        va = 0x100000000ull - 0x4000 + ((raw & 3) << 12);
        break;
    case 2:
        va = (la57 ? 0x0100000000000000ull : 0x0000800000000000ull) - 0x4000;
        break;
    case 3:
        va = la57 ? 0xff00000000000000ull : 0xffff800000000000ull;
        break;
    case 4:
        va = 0ull - 0x4000;
        break;
    case 5:
        va = la57 ? (uint64_t)((int64_t)(raw << 7) >> 7) : (uint64_t)((int64_t)(raw << 16) >> 16);
        va &= ~0xfffull;
        break;
    case 6:
        va = 0x40000000ull - 0x4000;
        break;
    default:
        va = 0x200000ull - 0x4000;
        break;
    }
    if (mode < VMMU_X86_MODE_4LEVEL)
        va &= 0xffffffffull;
    return va;
}

static uint64_t frame_of(uint8_t s)
{
    unsigned hi = s >> 4;
    switch (s & 15) {
    case 7:
        return (uint64_t)hi << 12; /* a table page: the guest writes its tables */
    case 8:
        return ROM_A_GPA;
    case 9:
        return ROM_B_GPA;
    case 10:
        return MMIO_GPA;
    case 11:
        return MMIO_GPA + 0x1000;
    case 12:
        return NULLIO_GPA;
    case 13:
        return DEV_GPA;
    case 14:
        return DEV_GPA + 0x1000;
    case 15:
        return (hi & 8) ? BEYOND_GPA + ((uint64_t)hi << 12) : HOLE_GPA + ((uint64_t)hi << 12);
    default:
        return (uint64_t)(TABLE_PAGES + hi) << 12; /* a data page */
    }
}

static void put_entry(uint64_t gpa, unsigned size, uint64_t v)
{
    memcpy(ram + gpa, &v, size);
}

static uint64_t get_entry(uint64_t gpa, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, ram + gpa, size);
    return v;
}

/* Map each window's eight pages: the levels from the root down, a table
 * page from the pool for every entry not built yet, the leaf (or a large
 * page) from the input's flags. */
static void build_tables(struct reader *r, enum vmmu_x86_mode mode)
{
    struct {
        uint64_t gpa;
    } built_entries[64];
    unsigned nbuilt = 0, next_page = 1;
    bool e32 = mode == VMMU_X86_MODE_32;
    unsigned esize = e32 ? 4 : 8;
    unsigned levels = mode == VMMU_X86_MODE_32    ? 2
                      : mode == VMMU_X86_MODE_PAE ? 3
                      : mode == VMMU_X86_MODE_5LEVEL ? 5 : 4;
    for (unsigned w = 0; w < 2; w++) {
        struct window *wi = &win[w];
        wi->va = window_va(r, mode);
        for (unsigned i = 0; i < 8; i++)
            wi->leaf[i] = (uint8_t)take(r, 1);
        for (unsigned i = 0; i < 8; i++)
            wi->frame[i] = (uint8_t)take(r, 1);
        wi->upper = (uint8_t)take(r, 1);
        wi->large = (uint8_t)take(r, 1);
        if (mode == VMMU_X86_MODE_NONE)
            continue;
        for (unsigned i = 0; i < 8; i++) {
            uint64_t va = wi->va + i * 4096ull;
            if (mode < VMMU_X86_MODE_4LEVEL)
                va &= 0xffffffffull;
            uint64_t table = 0;
            bool done = false;
            for (unsigned l = levels; l >= 2 && !done; l--) {
                unsigned shift = e32 ? 12 + 10 * (l - 1) : 12 + 9 * (l - 1);
                uint64_t idx = (va >> shift) & (e32                                     ? 0x3ff
                                                : (mode == VMMU_X86_MODE_PAE && l == 3) ? 3
                                                                                        : 0x1ff);
                uint64_t e_gpa = table + idx * esize;
                bool ours = false;
                for (unsigned k = 0; k < nbuilt; k++)
                    ours |= built_entries[k].gpa == e_gpa;
                uint64_t e = get_entry(e_gpa, esize);
                bool large_ok = l == 2 && (wi->large & 1) && (!e32 || (wi->large & 2));
                if (ours) {
                    if (l == 2 && (e & VMMU_X86_PTE_PS))
                        done = true; /* a large page already maps it */
                    table = e & (e32 ? 0xfffff000ull : 0x000ffffffffff000ull);
                    continue;
                }
                if (nbuilt == 64)
                    return;
                if (large_ok) {
                    uint64_t frame = (wi->large & 4) ? (e32 ? 0 : 0x200000) : 0;
                    uint8_t lf = wi->leaf[i];
                    e = frame | VMMU_X86_PTE_P | VMMU_X86_PTE_PS | (lf & 0x3e);
                    if (!e32 && (lf & 0x40))
                        e |= VMMU_X86_PTE_NX;
                    put_entry(e_gpa, esize, e);
                    built_entries[nbuilt++].gpa = e_gpa;
                    done = true;
                    continue;
                }
                if (next_page >= TABLE_PAGES)
                    return;
                uint64_t child = (uint64_t)next_page++ << 12;
                if (wi->large & 8)
                    memset(ram + child, 0, 4096);
                if (mode == VMMU_X86_MODE_PAE && l == 3) {
                    e = child | VMMU_X86_PTE_P; /* PDPTE: P and the address only */
                } else {
                    e = child | VMMU_X86_PTE_P | VMMU_X86_PTE_RW | VMMU_X86_PTE_US | VMMU_X86_PTE_A;
                    if (wi->upper & (1u << (l & 7)))
                        e &= ~((wi->upper & 0x80) ? VMMU_X86_PTE_US : VMMU_X86_PTE_RW);
                    if (!e32 && (wi->upper & 1) && l == 2)
                        e |= VMMU_X86_PTE_NX;
                }
                put_entry(e_gpa, esize, e);
                built_entries[nbuilt++].gpa = e_gpa;
                table = child;
            }
            if (done)
                continue;
            uint64_t e_gpa = table + ((va >> 12) & (e32 ? 0x3ff : 0x1ff)) * esize;
            uint8_t lf = wi->leaf[i];
            uint64_t e = frame_of(wi->frame[i]) | (lf & 0x3e) | ((lf & 1) ? 0 : VMMU_X86_PTE_P);
            if (!e32 && (lf & 0x40))
                e |= VMMU_X86_PTE_NX;
            if (!e32 && (lf & 0x80) && mode >= VMMU_X86_MODE_4LEVEL)
                e |= 1ull << 59; /* protection key 1 */
            put_entry(e_gpa, esize, e);
        }
    }
}

/* ---- Reset between inputs ------------------------------------------------------------ */

static void reset_state(void)
{
    cur_op = "reset";
    cur_op_index = 0;
    if (in_insn) {
        (void)vmmu_insn_end(vcpu, 0);
        in_insn = false;
    }
    /* Every page comes back in (ballooned ones as zeros). */
    if (pager)
        vmmu_pager_destroy(pager);
    pager = NULL;
    pager_paranoid = false;
    pager_limit = 0;
    memset(pstate, 0, sizeof(pstate));
    memset(&pst, 0, sizeof(pst));
    mid_on = false;
    mid_expect = mid_cleared = mid_marked = mid_code_pages = mid_remarked = 0;
    memset(&cb_plan, 0, sizeof(cb_plan));
    cur_kind = ~0u;
    if (dis_n)
        vmmu_latch_restore(vcpu, dis_stack[0]);
    dis_n = 0;
    dis_unknown = false;
    if (vmmu_latch_discard(vcpu) != 0)
        abort();
    model_pass = 0;
    for (unsigned i = 0; i < nwps; i++)
        if (wps[i].live && vmmu_watch_remove(vcpu, wps[i].id) != 0)
            abort();
    nwps = 0;
    struct vmmu_watch_hit h[VMMU_WATCH_HITS_MAX];
    uint64_t dropped;
    while (vmmu_watch_take_hits(vcpu, h, VMMU_WATCH_HITS_MAX, &dropped) > 0)
        ;
    if (vmmu_access_set_code_handler(vcpu, code_cb, &code_tag) != 0)
        abort();
    code_handler_on = true;
    struct vmmu_gpa_range all[3] = {{0, RAM_SIZE}, {ROM_A_GPA, 4096}, {ROM_B_GPA, 4096}};
    if (vmmu_page_state_change(vm, all, 3, 0, VMMU_PAGE_CODE) != 0)
        abort();
    code_maybe = code_sure = 0;
    if (vmmu_dirty_log_enable(vm, ram_id, false) != 0)
        abort();
    dirty_on = false;
    dirty_expect = 0;
    dirty_excused = 0;
    dirty_writes_since = false;
    memset(&pend, 0, sizeof(pend));
    memset(slots, 0, sizeof(slots));
    memset(&rep, 0, sizeof(rep));
    rep_is_movs = false;
    rep_src_access = 0;
    insn_pass = 0;
    insn_tainted = false;
    io_fail_at = 0;
    memset(ring, 0, sizeof(ring));
    ring_next = 0;
    memset(recent_gpa, 0, sizeof(recent_gpa));
    recent_next = 0;
    last_nlevels = 0;
    built = false;
    memset(win, 0, sizeof(win));
    if (vmmu_latch_stats(vcpu, &last_ls) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();
    reset_state();

    struct reader in = {data, size};
    struct header h;
    h.how = (uint8_t)take(&in, 1);
    h.regs = (uint8_t)take(&in, 1);
    h.regs2 = (uint8_t)take(&in, 1);
    h.pkru = (uint32_t)take(&in, 1);
    h.pager = (uint8_t)take(&in, 1);
    h.regs3 = (uint8_t)take(&in, 1);
    h.ops_len = (uint16_t)take(&in, 2);
    struct reader ops = {in.p, h.ops_len < in.n ? h.ops_len : in.n};
    in.p += ops.n;
    in.n -= ops.n;
    /* The windows' descriptions follow (defaults where the input ends). */
    static const uint8_t default_win[54] = {
        0,    0, 0, 0, 0, 0, 0, 0, 0,                         /* va: low */
        0x1e, 0x1e, 0x1c, 0x1e, 0x1e, 0x1e, 0x1f, 0x1e,       /* leaves */
        0x00, 0x10, 0x0a, 0x0d, 0x08, 0x09, 0x20, 0x0f,       /* frames */
        0,    0,                                               /* upper, large */
        6,    0, 0, 0, 0, 0, 0, 0, 0,                         /* va: below 1 GiB */
        0x1e, 0x1a, 0x1e, 0x16, 0x1e, 0x1e, 0x1e, 0x1e,
        0x07, 0x30, 0x0b, 0x0e, 0x0c, 0x40, 0x50, 0x60,
        0,    0,
    };
    uint8_t wbuf[54];
    memcpy(wbuf, default_win, sizeof(wbuf));
    size_t wn = in.n < sizeof(wbuf) ? in.n : sizeof(wbuf);
    memcpy(wbuf, in.p, wn);
    struct reader wins = {wbuf, sizeof(wbuf)};
    in.p += wn;
    in.n -= wn;
    const uint8_t *image = in.p;
    size_t image_len = in.n;

    struct vmmu_x86_regs regs;
    regs_from(&h, &regs);
    enum vmmu_x86_mode mode = !(regs.cr0 & VMMU_X86_CR0_PG)        ? VMMU_X86_MODE_NONE
                              : !(regs.cr4 & VMMU_X86_CR4_PAE)     ? VMMU_X86_MODE_32
                              : !(regs.efer & VMMU_X86_EFER_LMA)   ? VMMU_X86_MODE_PAE
                              : (regs.cr4 & VMMU_X86_CR4_LA57)     ? VMMU_X86_MODE_5LEVEL
                                                                   : VMMU_X86_MODE_4LEVEL;
    if ((h.pager & 7) == 7) {
        /* The backing file on tmpfs where there is one: cheaper than a disk. */
        static const char *dir;
        if (!dir)
            dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "";
        struct vmmu_pager_config pc = {
            .dir = *dir ? dir : NULL,
            .resident_limit = (h.pager >> 3) ? 2u + (h.pager >> 3) : 0,
            .flags = (h.pager & 0x18) == 0x18 ? VMMU_PAGER_PARANOID : 0,
        };
        if (vmmu_pager_create(vm, &pc, &pager) != 0)
            abort();
        pager_paranoid = (h.pager & 0x18) == 0x18;
        pager_limit = pc.resident_limit;
    }
    /* Guest memory: the image repeated over the RAM; the ROMs and the
     * devices' memories from it too. */
    memset(ram, 0, RAM_SIZE);
    for (size_t off = 0; image_len && off < RAM_SIZE; off += image_len)
        memcpy(ram + off, image, image_len < RAM_SIZE - off ? image_len : RAM_SIZE - off);
    if (h.how & HOW_TAME)
        tame(mode == VMMU_X86_MODE_32);
    if (h.how & HOW_ZERO)
        memset(ram, 0, TABLE_PAGES * 4096u);
    memcpy(rom_a, ram + 0x1000, 4096);
    memcpy(rom_b, ram + 0x2000, 4096);
    memcpy(rom_a_model, rom_a, 4096);
    memcpy(rom_b_model, rom_b, 4096);
    memcpy(mmio_mem, ram + RAM_SIZE - MMIO_SIZE, MMIO_SIZE);
    memcpy(dev_mem, ram + RAM_SIZE - 2 * DEV_SIZE, DEV_SIZE);
    if (h.how & HOW_BUILD) {
        build_tables(&wins, mode);
        built = mode != VMMU_X86_MODE_NONE;
    }
    if (mode == VMMU_X86_MODE_PAE) {
        for (unsigned i = 0; i < 4; i++) {
            uint64_t at = (regs.cr3 & (RAM_SIZE - 1) & ~0x1full) + 8 * i, e;
            memcpy(&e, ram + at, 8);
            e &= ~PDPTE_RSVD;
            memcpy(ram + at, &e, 8);
        }
    }
    memcpy(shadow, ram, RAM_SIZE);
    lazy_hits = (h.how & HOW_LAZY) != 0;

    struct vmmu_x86_regs reset = {.cr0 = 0x60000010ull, .rflags = 2};
    if (vmmu_vcpu_set_state(vcpu, &reset) != 0)
        abort();
    if (h.how & HOW_SETTERS)
        load_by_setters(&regs);
    else if (vmmu_vcpu_set_state(vcpu, &regs) != 0)
        abort();
    if (vmmu_vcpu_tlb_flush_all(vcpu) != 0)
        abort();
    everything_dropped();
    epoch++;
    check_tlb_stats();

    if (built && (h.regs2 & 4) && win[(h.regs2 >> 6) & 1].va + 0x1c00 + 0x7ff > 0x7ff) {
        static const unsigned kinds[4] = {VMMU_WATCH_READ, VMMU_WATCH_WRITE, VMMU_WATCH_ACCESS,
                                          VMMU_WATCH_ACCESS};
        unsigned flags = kinds[(h.regs2 >> 3) & 3] | ((h.regs2 & 0x20) ? VMMU_WATCH_BEFORE : 0);
        uint64_t va = win[(h.regs2 >> 6) & 1].va + 0x1c00;
        uint32_t id = 0;
        if (vmmu_watch_add(vcpu, va, 0x800, flags, &id) != 0 || !id)
            abort();
        wps[nwps++] = (struct wp){va, va + 0x7ff, flags, id, true};
    }
    if (built && (h.regs2 & 0x80)) {
        if (vmmu_dirty_log_enable(vm, ram_id, true) != 0)
            abort();
        dirty_on = true;
    }
    for (unsigned i = 0; i < MAX_OPS && ops.n; i++) {
        cur_op_index = i;
        run_op(&ops);
    }
    /* The pager goes with the input (libFuzzer counts what an input
     * allocates and frees): every page comes back in, ballooned ones as
     * zeros, and nothing else changes. */
    if (pager) {
        cur_op = "vmmu_pager_destroy";
        pager_check(cur_op);
        uint32_t was_out = model_out_mask();
        vmmu_pager_destroy(pager);
        pager = NULL;
        for (unsigned p = 0; p < RAM_PAGES; p++) {
            uint32_t st = 0;
            (void)vmmu_page_state_get(vm, p * 4096ull, &st);
            if (st & (VMMU_PAGE_PAGED_OUT | VMMU_PAGE_BALLOONED))
                fail("RAM page %u is still out (state %#x) after vmmu_pager_destroy", p, st);
            if ((was_out & (1u << p)) && memcmp(ram + p * 4096u, out_copy + p * 4096u, 4096))
                fail("RAM page %u (%s) came back from vmmu_pager_destroy different", p,
                     ps_names[pstate[p]]);
        }
    }
    return 0;
}
