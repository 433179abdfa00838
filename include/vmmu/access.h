/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/access.h
 * @brief Instruction memory access: probes, prepared multi-page accesses,
 *        typed and atomic loads and stores, string moves, watchpoints,
 *        dirty logging, code-page tracking and the replay latch.
 *
 * This is what an interpreter or a JIT's helpers call for every guest
 * memory access of an instruction.  Everything runs on the vCPU's own
 * thread except the vm-wide calls of the dirty log and the
 * code-page marks, which any thread may make.
 *
 * ## Results
 *
 * An access function returns 0 when it evaluated the access.  Then
 * `fault->vector` says how it ended:
 *  - VMMU_X86_FAULT_NONE: done;
 *  - an x86 vector (#PF with its error code and CR2, #GP(0), #SS(0),
 *    #AC(0)): the CPU raises it; nothing was written (see "fault before
 *    side effect");
 *  - VMMU_ACCESS_STOP_WATCH: a watchpoint with VMMU_WATCH_BEFORE covers a
 *    byte of the access; nothing was accessed.  vmmu_watch_take_hits()
 *    says which watchpoint.
 * A negative return is a VMMU_E* code; the important one is
 * VMMU_EPENDING: a device model answers later.  The caller ends the
 * instruction with vmmu_insn_end(vcpu, VMMU_EPENDING), returns to its
 * loop, and re-executes the instruction once the device model has answered
 * (the retry flow; the replay latch makes the second pass see what the
 * first one saw).  Other codes: VMMU_EINVAL (bad argument), VMMU_EOVERFLOW
 * (the replay latch is full), VMMU_EMMIO (an MMIO callback failed),
 * VMMU_EROM (a write to ROM that reports writes), VMMU_EDEVICE, VMMU_EDEAD,
 * VMMU_ETIMEDOUT, VMMU_EPROTO (from the device model), VMMU_EPAGEDOUT (a
 * page stayed paged out) or the page-in handler's own code, VMMU_EBUSY (the guest rewrote its page tables faster than a walk could
 * complete).
 *
 * ## What each kind of guest-physical page does
 *
 * RAM is read and written in host memory (memcpy/memmove).  ROM reads come
 * from its memory; writes are dropped or fail with VMMU_EROM, per region.
 * Holes read as all-ones and drop writes, as the bus does.  MMIO goes
 * through the region's callbacks in naturally aligned pieces of 1, 2, 4 or
 * 8 bytes, in ascending address order; DEVICE pages go through
 * vmmu_p2m_device_access() in the same pieces.
 *
 * ## Alignment check
 *
 * At CPL 3 with CR0.AM and RFLAGS.AC set, the typed accesses
 * (vmmu_access_load/store(), vmmu_access_rmw/cmpxchg(), each element of
 * vmmu_access_rep_movs/stos()) of 2, 4 or 8 bytes at an address that is
 * not a multiple of their size raise #AC(0) (SDM 6.15), after the
 * canonical check (#GP/#SS come first) and before any page is walked.
 * Fetches and implicit supervisor accesses are never checked, nor are
 * 16-byte accesses (whether a misaligned 16-byte operand raises #AC or
 * #GP, or nothing, depends on the instruction), vmmu_access_read/write()
 * and vmmu_access_prepare() of any length (a descriptor, a far pointer,
 * an FXSAVE area has alignment rules of its own): for those the caller
 * checks, as it does for accesses it makes through the TLB directly.
 *
 * ## Fault before side effect
 *
 * Every access is split at page boundaries, and every piece is translated
 * and checked (rights, then watchpoints) before the first byte is read or
 * written.  An access that faults on its second page leaves the first page
 * untouched and reports the second page's first byte in CR2, even when a
 * VMMU_WATCH_BEFORE watchpoint covers its first page (the access would
 * not be made, so nothing stops before it).
 *
 * An error is not a fault: when an MMIO callback or the device model
 * fails midway (VMMU_EMMIO, VMMU_EDEAD, VMMU_EPENDING, ...), or a write
 * reaches a ROM that reports writes (VMMU_EROM), the pieces before the
 * failing one have been performed (an access's pieces go in ascending
 * address order, a backward string operation's elements descending), and
 * nothing after it.  A read's buffer and the outputs of an RMW or
 * CMPXCHG (old, observed, swapped) are then unspecified; a
 * locked access whose read failed writes nothing; a string operation's
 * registers name the element that failed.
 *
 * ## Host pointers
 *
 * A prepared access is valid until the vCPU's next safe point:
 * vmmu_insn_end(), vmmu_vcpu_safepoint() and vmmu_vcpu_offline() are safe
 * points; used after one it fails with VMMU_EINVAL.  Until then it may be
 * held across anything, other vmmu calls on the vCPU's thread included:
 * one that waits (a device model or a page-in handler that waits, a
 * contended lock, a page-out, a synchronous shootdown) takes the vCPU
 * offline, so the host may take pages away meanwhile, and one that
 * narrows what pages allow (vmmu_dirty_log_enable(),
 * vmmu_dirty_log_get_and_clear(), vmmu_code_mark(),
 * vmmu_page_state_change(); a device model's callback may make them in
 * the middle of an instruction) drops the vCPU's translations at once.
 * After either, an operation on the descriptor looks its pages up again
 * (the guest-physical addresses it translated to stay, as a CPU keeps the
 * translation of an instruction in flight), and a write through it marks
 * a logged page dirty and reports a write to a page marked as code, as a
 * write prepared after the call would.
 *
 * A probe's host pointer is a raw address and cannot be looked up again:
 * it is valid until the vCPU's next safe point or the next vmmu call on
 * the vCPU's thread that may wait or narrow (above; an access that
 * reaches a device model or a paged-out page may wait), whichever comes
 * first.  Use it at once, or probe again after such a call.  (Made on
 * another thread, those calls wait for the vCPU's next safe point.)
 *
 * The replay latch keeps copies of what was read, never host pointers, so
 * the host may reclaim guest pages between the two passes of an
 * instruction without waiting for the latch.
 *
 * ## The replay latch
 *
 * Between vmmu_insn_begin() and vmmu_insn_end() every independent read the
 * instruction makes is recorded in the vCPU's latch: page-table entries
 * read by walks, tagged by (guest-physical address, level); the
 * translations the instruction used, tagged by (page, access kind,
 * context); data reads, tagged by their order in the instruction; and MMIO
 * or device-model pieces that completed, in order.  If the instruction ends
 * with VMMU_EPENDING the latch is kept, and the next vmmu_insn_begin()
 * replays it: each read returns what the first pass saw, each translation
 * the first pass made is reused even if the TLB was flushed or the guest
 * rewrote its page tables meanwhile, and MMIO or device accesses that
 * already completed are not repeated, even if the host changed the page's
 * type between the passes (a device page made RAM, MMIO made a device
 * page): the recorded bytes are served to the access they belong to, and
 * a locked update recorded is not applied again.  A write the first pass
 * made to RAM is not recorded and is made again on the page as it is now
 * (once, if that is now MMIO or a device page).  Reads the first pass did
 * not make are performed and recorded for a further pass.  Writes never update
 * recorded reads.  A/D bits the first pass set stay set; a replayed walk
 * stores A/D only into entries that still hold what the first pass saw.
 * See docs/access.md for the design.
 */
#ifndef VMMU_ACCESS_H
#define VMMU_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p2m.h"
#include "tlb.h"
#include "vm.h"
#include "x86.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vcpu;

/** fault->vector when a VMMU_WATCH_BEFORE watchpoint stopped the access
 *  (not an x86 vector: the host's debugger, not the guest, handles it). */
#define VMMU_ACCESS_STOP_WATCH 256

/** Largest access vmmu_access_prepare() describes (at most two pages). */
#define VMMU_ACCESS_PREPARE_MAX 4096u

/* ---- Probe ----------------------------------------------------------------- */

/** Why a probe returned no host pointer although the access may proceed. */
#define VMMU_PROBE_MMIO (1u << 0)     /**< MMIO, a hole, or a ROM write: not plain memory */
#define VMMU_PROBE_DEVICE (1u << 1)   /**< a device-model page */
#define VMMU_PROBE_WATCH (1u << 2)    /**< a watchpoint of this vCPU for this kind of access
                                           covers a byte of it (the probe records no hit) */
#define VMMU_PROBE_NOTDIRTY (1u << 3) /**< (non-faulting probe) the access would set an A/D bit or a dirty-log bit */
#define VMMU_PROBE_CODE (1u << 4)     /**< a write to a page marked as code: use the access functions */

/** What a probe found. */
struct vmmu_probe {
    /** Host address of the first byte when the whole access may be made
     *  directly in host memory, else NULL (see @ref why). */
    void *host;
    uint64_t gpa;             /**< guest-physical address of the first byte (if translated) */
    enum vmmu_mem_type type;  /**< what the page is (if translated) */
    unsigned why;             /**< VMMU_PROBE_* when @ref host is NULL and no fault */
    struct vmmu_x86_fault fault; /**< the fault the access raises, or vector NONE */
};

/**
 * Check one access of @p size bytes at @p va as the CPU would make it,
 * without performing it: translate (setting A/D bits and filling the TLB,
 * as the access itself would), check rights and watchpoints, and return the
 * host pointer or why there is none.  A write probe to RAM marks the page
 * dirty for dirty logging (the caller is about to write through the
 * pointer).  A probe never crosses a page.
 * @param access VMMU_X86_ACC_WRITE or _FETCH (or 0 for a read), plus
 *               VMMU_X86_ACC_IMPLICIT / _STACK.
 * @param size   1 .. bytes left in the page.
 * @return 0 (see out->fault and out->host); VMMU_EINVAL (NULL, bad size,
 *         bad @p access, crosses a page); VMMU_EPAGEDOUT; VMMU_EBUSY;
 *         VMMU_EOVERFLOW (inside an instruction: the replay latch could
 *         not record the translation).
 */
int vmmu_access_probe(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, unsigned access,
                      struct vmmu_probe *out);

/**
 * What the inline probe reads besides the TLB: one per vCPU, owned by
 * vmmu, at a fixed address for the vCPU's life (fetch it once with
 * vmmu_access_fast()).  Read-only for callers.
 */
struct vmmu_access_fast {
    struct vmmu_vcpu *vcpu; /**< the vCPU, whose TLB the inline probe reads */
    /** Nonzero while every access of the vCPU must take the slow path: the
     *  replay latch records or replays the current instruction. */
    unsigned slow;
};

/** The vCPU's inline-probe block (NULL for NULL). */
const struct vmmu_access_fast *vmmu_access_fast(const struct vmmu_vcpu *vcpu);

/**
 * The probe's hit path, inline: true with *@p host set when an access of
 * @p kind and @p size bytes (1, 2, 4, 8 or 16, naturally aligned) at
 * @p va may be made directly in host memory, exactly as vmmu_access_probe()
 * would answer with a host pointer and no fault; false (*@p host untouched)
 * when the caller must call vmmu_access_probe() for the answer.  It is the
 * TLB's hit test (vmmu_tlb_probe()) behind one test of @p fast->slow: pages
 * with watchpoints, MMIO, device models, code marks or writes that must
 * set a dirty bit never hit, because their comparators carry a flag, and
 * while the replay latch is active nothing hits, so the slow path records
 * the translation.  Implicit supervisor accesses use vmmu_access_probe().
 * Unlike vmmu_access_probe() it reports no guest-physical address.
 *
 *     const struct vmmu_access_fast *fast = vmmu_access_fast(vcpu); // once
 *     void *host;
 *     if (!vmmu_access_probe_hit(fast, va, 8, VMMU_TLB_READ, &host)) {
 *         struct vmmu_probe p;
 *         rc = vmmu_access_probe(vcpu, va, 8, 0, &p);
 *         ...                          // fault, p.why, or host = p.host
 *     }
 */
static inline bool vmmu_access_probe_hit(const struct vmmu_access_fast *fast, uint64_t va,
                                         unsigned size, enum vmmu_tlb_kind kind, void **host)
{
    if (__builtin_expect(fast->slow != 0, 0))
        return false;
    return vmmu_tlb_probe(vmmu_tlb_view(fast->vcpu), va, size, kind, host);
}

/**
 * The non-faulting form: report whether and how the access would fault,
 * changing nothing the guest or the host could see (no A/D bit, no TLB
 * fill, no page-in, no dirty bit).  On a fault out->fault describes it; the
 * caller decides whether to raise it.  Uses a TLB entry when one answers.
 * @return as vmmu_access_probe(), except that a paged-out page is never
 *         brought back: VMMU_EPAGEDOUT when a page the access needs (a
 *         page-table page, or the data page: then out->gpa and out->type
 *         are set) is paged out.
 */
int vmmu_access_probe_nofault(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size,
                              unsigned access, struct vmmu_probe *out);

/* ---- Prepared accesses ----------------------------------------------------- */

/** One page of a prepared access (read-only for callers). */
struct vmmu_prepared_page {
    uint64_t va;       /**< first byte of this part */
    uint64_t gpa;      /**< its guest-physical address */
    uint8_t *host;     /**< host address for RAM (and ROM reads), else NULL; used
                            directly, valid as a probe's pointer is (see "Host pointers") */
    uint32_t len;      /**< bytes in this part */
    uint32_t region_id;
    enum vmmu_mem_type type;
};

/**
 * A checked access of up to VMMU_ACCESS_PREPARE_MAX bytes over at most two
 * pages.  Filled by vmmu_access_prepare(); valid until the vCPU's next safe
 * point (the operations below then return VMMU_EINVAL), across other vmmu
 * calls too (see "Host pointers" above).  Read-only for callers: it may be
 * copied, but the operations refuse one with any field changed (VMMU_EINVAL).
 */
struct vmmu_prepared {
    struct vmmu_vcpu *vcpu;
    uint64_t va;       /**< first byte */
    uint32_t len;      /**< bytes */
    unsigned access;   /**< as prepared: VMMU_X86_ACC_WRITE allows writes (and reads) */
    unsigned npages;   /**< 1 or 2 */
    struct vmmu_prepared_page page[2];
    uint64_t epoch;    /**< the vCPU's safe-point epoch when prepared */
    uint64_t host_gen; /**< when its host addresses were found (vmmu looks them up again) */
    uint64_t seal;     /**< digest of the fields above: a descriptor changed after its
                            preparation is refused (VMMU_EINVAL), never trusted */
};

/**
 * An access bit for vmmu_access_prepare(), with VMMU_X86_ACC_WRITE: the
 * instruction reads the bytes before it writes them (ADD [mem], reg; a
 * non-locked read-modify-write).  The preparation is a write's, and a
 * VMMU_WATCH_BEFORE watchpoint of either kind stops it (hit flags: every
 * kind the watchpoint watches), as for vmmu_access_rmw().
 */
#define VMMU_ACCESS_READ_WRITE (1u << 16)

/**
 * Translate and check every page of [@p va, @p va + @p len) for @p access
 * (VMMU_X86_ACC_* bits, plus VMMU_ACCESS_READ_WRITE with a write)
 * before anything is touched: rights, watchpoints (VMMU_WATCH_BEFORE stops
 * it here; an "after" watchpoint records its hit when an operation on the
 * descriptor reads or writes its bytes, so a preparation never used
 * records none), and what each page is.  A write preparation allows reads too (x86 pages that may be written
 * may be read).  A write to a page marked as code calls the code handler
 * here, after every check passed.
 * @param len 1 .. VMMU_ACCESS_PREPARE_MAX; the range may span two pages.
 * @return 0 (see @p fault); VMMU_EINVAL; VMMU_EPAGEDOUT; VMMU_EBUSY;
 *         VMMU_EOVERFLOW (inside an instruction: the replay latch could
 *         not record a translation).
 */
int vmmu_access_prepare(struct vmmu_vcpu *vcpu, uint64_t va, uint32_t len, unsigned access,
                        struct vmmu_prepared *out, struct vmmu_x86_fault *fault);

/**
 * Read @p n bytes at @p offset of a prepared access into @p buf: memcpy
 * for RAM, callbacks for MMIO, the device model for DEVICE pages.
 * Recorded in (or replayed from) the latch.
 * @return 0; VMMU_EINVAL (stale descriptor, or one changed since it was
 *         prepared; range outside it); VMMU_EPENDING
 *         and the device model's codes; VMMU_EMMIO; VMMU_EOVERFLOW.
 */
int vmmu_prepared_read(const struct vmmu_prepared *p, uint32_t offset, void *buf, uint32_t n);

/**
 * Write @p n bytes from @p buf at @p offset of a prepared write access.
 * @return as vmmu_prepared_read(), plus VMMU_EROM; VMMU_EINVAL for a
 *         descriptor prepared for reading.
 */
int vmmu_prepared_write(const struct vmmu_prepared *p, uint32_t offset, const void *buf,
                        uint32_t n);

/**
 * Store @p n copies of the @p elem-byte little-endian @p value (elem 1, 2,
 * 4 or 8; n a multiple of elem) at @p offset (STOS, memset).
 * @return as vmmu_prepared_write().
 */
int vmmu_prepared_set(const struct vmmu_prepared *p, uint32_t offset, uint64_t value,
                      unsigned elem, uint32_t n);

/**
 * Copy the whole of @p src (prepared for reading) to @p dst (prepared for
 * writing, same length) as a string move of @p elem-byte elements (1, 2, 4
 * or 8) does: forwards, or backwards from the last element when
 * @p backward (DF=1).  Where both sides are RAM this is memmove, unless the
 * host ranges overlap so that an element would read bytes an earlier
 * element wrote (dst = src + 1 going forwards): then the copy goes element
 * by element, as REP MOVS defines.  Other pages go element by element
 * through their callbacks.  Under the replay latch the source is read
 * through the latch first (VMMU_EOVERFLOW, nothing moved, if it has no
 * room), then the destination is written, so that a re-executed
 * instruction moves what the first pass read.
 * @return as vmmu_prepared_write().
 */
int vmmu_prepared_move(const struct vmmu_prepared *dst, const struct vmmu_prepared *src,
                       unsigned elem, bool backward);

/* ---- Reads, writes, typed loads and stores ----------------------------------- */

/**
 * Read @p len bytes (1 .. VMMU_ACCESS_PREPARE_MAX) at @p va: prepare, then
 * read.  @p access: 0, VMMU_X86_ACC_FETCH, plus IMPLICIT / STACK.
 * @return 0 (see @p fault) or a negative code as vmmu_prepared_read().
 */
int vmmu_access_read(struct vmmu_vcpu *vcpu, uint64_t va, void *buf, uint32_t len,
                     unsigned access, struct vmmu_x86_fault *fault);

/**
 * Write @p len bytes at @p va: prepare (every page checked first), then
 * write.  @p access: IMPLICIT / STACK (WRITE is implied).
 * @return 0 (see @p fault) or a negative code as vmmu_prepared_write().
 */
int vmmu_access_write(struct vmmu_vcpu *vcpu, uint64_t va, const void *buf, uint32_t len,
                      unsigned access, struct vmmu_x86_fault *fault);

/**
 * Typed load of @p size bytes (1, 2, 4, 8 or 16) at @p va into @p value
 * (little-endian, @p size bytes written).  A TLB hit costs one compare and
 * a copy; misaligned and page-crossing loads work (a fault on either page
 * faults the load).
 * @return as vmmu_access_read().
 */
int vmmu_access_load(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, unsigned access,
                     void *value, struct vmmu_x86_fault *fault);

/**
 * Typed store of @p size bytes (1, 2, 4, 8 or 16) from @p value.  A
 * page-crossing store checks both pages before writing: a fault on the
 * second leaves the first untouched, with CR2 the second page's first byte.
 * @return as vmmu_access_write().
 */
int vmmu_access_store(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, unsigned access,
                      const void *value, struct vmmu_x86_fault *fault);

/* ---- Atomic read-modify-write ------------------------------------------------ */

/** Operations of vmmu_access_rmw(). */
enum vmmu_rmw_op {
    VMMU_RMW_XCHG = 0, /**< store the operand */
    VMMU_RMW_ADD,      /**< XADD / LOCK ADD (LOCK SUB: add the negation) */
    VMMU_RMW_AND,
    VMMU_RMW_OR,
    VMMU_RMW_XOR,
};

/**
 * Atomic read-modify-write of @p size bytes (1, 2, 4 or 8) at @p va: the
 * old value goes to @p old (zero-extended), old OP @p operand is stored.
 * On RAM it is atomic against every other vCPU's atomic accesses, whatever
 * the alignment inside a page.  A locked access whose bytes no aligned 8-
 * or 16-byte word holds (it crosses a page or a 16-byte boundary: a split
 * lock, where a real CPU takes a bus lock) runs while every other online
 * vCPU of the vm is parked at a safe point (vmmu_vcpu_safepoint()), so it
 * is atomic against everything they do; it costs a round trip to each of
 * them, and the calling vCPU may go offline while it waits for another
 * vCPU's split lock or for the others to park (not a safe point: as after
 * a page-in that waits, its prepared accesses stay valid and look their
 * pages up again, and its probe pointers may be stale; see "Host
 * pointers").
 * On MMIO and DEVICE pages it is a read followed by a write, not atomic.
 * The access needs write rights (and faults as a write) in every case.
 * @return 0 (see @p fault); negative codes as vmmu_access_write().
 */
int vmmu_access_rmw(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, enum vmmu_rmw_op op,
                    uint64_t operand, uint64_t *old, unsigned access,
                    struct vmmu_x86_fault *fault);

/**
 * Atomic compare-and-exchange of @p size bytes (1, 2, 4, 8 or 16:
 * CMPXCHG, CMPXCHG8B, CMPXCHG16B): if memory equals @p expected, store
 * @p desired.  @p observed receives what memory held.  Faults as a write
 * even when the comparison fails (the CPU writes back the old value: an
 * MMIO or device page then sees that write, a ROM that reports writes
 * reports it).
 * A 16-byte access not aligned to 16 raises #GP(0) as CMPXCHG16B does.
 * Atomicity as vmmu_access_rmw().
 * @p observed may be the same buffer as @p expected (an emulator's
 * accumulator).
 * @param swapped if non-NULL, receives whether @p desired was stored.
 * @return as vmmu_access_rmw().
 */
int vmmu_access_cmpxchg(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, const void *expected,
                        const void *desired, void *observed, bool *swapped, unsigned access,
                        struct vmmu_x86_fault *fault);

/* ---- String operations in chunks ---------------------------------------------- */

/**
 * The registers of a REP MOVS / REP STOS, updated as elements complete,
 * so that an interrupted instruction resumes where it stopped.
 *
 * dst and src are linear addresses (segment base included) and step as
 * 64-bit values; outside IA-32e paging only their bits 31:0 are used, so
 * they wrap at 4 GiB as 32-bit linear addresses do, and bits 63:32 are
 * unspecified once they wrapped.  The address size is the caller's: where
 * the CPU would wrap RSI/RDI at 16 or 32 bits before the linear address
 * wraps (a 16-bit address size, a segment base, an address-size prefix in
 * 64-bit mode), the caller gives a budget that stops at the wrap and
 * wraps its registers itself.
 */
struct vmmu_rep {
    uint64_t dst;     /**< RDI: next destination element */
    uint64_t src;     /**< RSI: next source element (MOVS) */
    uint64_t count;   /**< RCX: elements left */
    unsigned elem;    /**< element size: 1, 2, 4 or 8 */
    bool backward;    /**< DF=1: addresses decrease */
    uint64_t value;   /**< STOS: the element value (low @ref elem bytes) */
};

/**
 * Run up to @p budget elements of REP MOVS (source read with @p src_access
 * attributes, destination written), in chunks that stay within a page on
 * both sides: each chunk is prepared (both sides checked) and moved as
 * vmmu_prepared_move() does.  Stops early at a fault (@p r then names the
 * faulting element, as the CPU leaves RSI/RDI/RCX), before an element that
 * touches a VMMU_WATCH_BEFORE watchpoint, on a negative code, and when the
 * replay latch could not record more.  Each side of an element is checked
 * as a single access is (every page translated, then its watchpoints), the
 * source first and whole: a fault on a side comes before a stop at that
 * side's watchpoint, and a stop at the source before anything about the
 * destination (the CPU reads the source before it writes the
 * destination).
 * Into a device model's page, and from a device to a device (MMIO or a
 * device model's page on both sides), an element is always the first of
 * its call, which stops before it once elements completed: its write may
 * pend, and a write that pends in the first element returns
 * VMMU_EPENDING with the read kept in the latch, so the re-execution
 * never reads the source again (a device read has side effects; RAM may
 * have changed).  Such an element starts only when the latch has room for
 * both its sides (else VMMU_EOVERFLOW, nothing read).  A
 * VMMU_WATCH_BEFORE watchpoint a callback adds stops the call before the
 * next element it covers.
 * @return 0 (see @p fault and r->count: 0 means the instruction is done);
 *         negative codes as vmmu_prepared_move().
 */
int vmmu_access_rep_movs(struct vmmu_vcpu *vcpu, struct vmmu_rep *r, uint64_t budget,
                         unsigned src_access, struct vmmu_x86_fault *fault);

/** REP STOS: as vmmu_access_rep_movs() with r->value as the source. */
int vmmu_access_rep_stos(struct vmmu_vcpu *vcpu, struct vmmu_rep *r, uint64_t budget,
                         struct vmmu_x86_fault *fault);

/* ---- Watchpoints ----------------------------------------------------------------- */

#define VMMU_WATCH_READ (1u << 0)   /**< data reads (and instruction fetches) */
#define VMMU_WATCH_WRITE (1u << 1)  /**< data writes */
#define VMMU_WATCH_ACCESS (VMMU_WATCH_READ | VMMU_WATCH_WRITE)
/** Report before the access, which is then not made (fault->vector
 *  VMMU_ACCESS_STOP_WATCH); without it the access completes and the hit is
 *  recorded for vmmu_watch_take_hits(). */
#define VMMU_WATCH_BEFORE (1u << 2)
#define VMMU_WATCH_FLAGS_ALL ((1u << 3) - 1)

/** A watchpoint hit. */
struct vmmu_watch_hit {
    uint32_t id;        /**< the watchpoint */
    unsigned flags;     /**< VMMU_WATCH_READ or _WRITE: the access that hit (a locked
                             read-modify-write stopped by a watchpoint of both kinds:
                             both); | BEFORE if it was stopped */
    uint64_t va;        /**< first byte of the access that hit */
    uint32_t len;       /**< its length */
};

/** Hits kept until taken; later hits are counted but dropped. */
#define VMMU_WATCH_HITS_MAX 32

/**
 * Watch the linear range [@p va, @p va + @p len) of this vCPU for the
 * accesses in @p flags.  Any number of watchpoints may exist; the pages
 * they cover take the slow path (the TLB marks them VMMU_TLB_FLAG_WATCH).
 * @param id receives the watchpoint's id (never 0); may be NULL.
 * @return 0; VMMU_EINVAL (len 0, range wraps, no READ/WRITE, unknown
 *         flags); VMMU_ENOMEM.
 */
int vmmu_watch_add(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t len, unsigned flags,
                   uint32_t *id);

/** Remove a watchpoint.  @return 0, VMMU_ENOENT or VMMU_EINVAL. */
int vmmu_watch_remove(struct vmmu_vcpu *vcpu, uint32_t id);

/**
 * Take up to @p max recorded hits, oldest first.
 *
 * A hit without VMMU_WATCH_BEFORE is recorded once its piece of the
 * access was made (a piece that failed records none; a write that a ROM
 * dropped was made).  An instruction that ends with VMMU_EPENDING
 * records none: vmmu_insn_end() gives back what it recorded, and its
 * re-execution records each hit once, whether it makes the access again
 * or the latch serves it (hits taken inside the instruction stay taken).
 * @param dropped if non-NULL, receives how many hits were dropped because
 *        more than VMMU_WATCH_HITS_MAX were pending (then reset to 0).
 * @return the number of hits copied, or VMMU_EINVAL.
 */
int vmmu_watch_take_hits(struct vmmu_vcpu *vcpu, struct vmmu_watch_hit *out, unsigned max,
                         uint64_t *dropped);

/* ---- Dirty logging and code pages -------------------------------------------------- */

/**
 * Turn dirty logging of a RAM region on or off while vCPUs run.  Turning
 * it on clears the region's dirty bits and makes every vCPU drop its
 * translations of the region, so that the next write to each page is
 * seen; turning it off leaves the bits as they are.
 * @return 0; VMMU_EINVAL (NULL, not a RAM region); VMMU_ENOENT; VMMU_EBUSY
 *         (from inside vmmu_region_foreach()).
 */
int vmmu_dirty_log_enable(struct vmmu_vm *vm, uint32_t region_id, bool on);

/**
 * Get and clear the dirty bitmap of a RAM region (the KVM_GET_DIRTY_LOG
 * model): bit i of @p bitmap (64 pages per word, little-endian bit order)
 * is set when page i of the region was written since the last call.
 * Each bit is cleared atomically as it is read, then every vCPU drops
 * its translations of the pages that were dirty before this returns, so
 * a write that happens after the call is seen by the next call; a write
 * that races with the call is either reported now (and its page's contents
 * are read by the caller after the call) or by the next call.  No write is
 * lost: vCPU accesses, the page walker's A/D updates, vmmu_gpa_write()
 * and what out-of-process device models write through their own mappings
 * (reported by the client library after the stores, at each unmap and
 * copy: vmmu/dmclient.h) are all seen.  Stores through a host address of
 * guest RAM (from vmmu_p2m_lookup(), say) are the storer's to mark
 * (vmmu_page_state_update() with VMMU_PAGE_DIRTY).
 * @param words size of @p bitmap in uint64_t words; at least
 *        ceil(region pages / 64).
 * @param ndirty if non-NULL, receives the number of dirty pages.
 * @return 0; VMMU_EINVAL (NULL, not RAM, dirty logging off, bitmap too
 *         small); VMMU_ENOENT; VMMU_EBUSY (from inside vmmu_region_foreach()).
 */
int vmmu_dirty_log_get_and_clear(struct vmmu_vm *vm, uint32_t region_id, uint64_t *bitmap,
                                 size_t words, uint64_t *ndirty);

/**
 * Called when a vCPU writes a page marked VMMU_PAGE_CODE: the mark has
 * just been cleared (exactly one vCPU sees each mark), the write has not
 * happened yet.  Drop the translated code of the page here.  The handler
 * runs on the vCPU's thread after every check of the access passed; it
 * may call vmmu (mark pages again, page out, wait): if it waits, the
 * access is translated again before the write, and the handler is not
 * called a second time for it.  A mark it makes on the page again
 * applies to the writes after this one (so translating the page's code
 * again belongs after the write, not in the handler: the write follows).
 */
typedef void (*vmmu_code_write_fn)(void *opaque, struct vmmu_vcpu *vcpu, uint64_t gpa_page);

/**
 * Register the code-write handler of this vCPU (NULL removes it).
 * @return 0 or VMMU_EINVAL.
 */
int vmmu_access_set_code_handler(struct vmmu_vcpu *vcpu, vmmu_code_write_fn fn, void *opaque);

/**
 * Mark @p npages RAM pages from @p gpa as holding translated code: the next
 * write to each calls the writing vCPU's code handler, after which writes
 * to it take the fast path again until it is marked again.  Every vCPU
 * drops its write translations of the pages before this returns.
 * @return as vmmu_page_state_update().
 */
int vmmu_code_mark(struct vmmu_vm *vm, uint64_t gpa, uint64_t npages);

/* ---- The replay latch ------------------------------------------------------------ */

/**
 * Start an instruction.  If the previous pass of this vCPU ended with
 * VMMU_EPENDING, this is its re-execution: the latch replays.  Otherwise
 * the latch starts empty and records.
 * @return 0 or VMMU_EINVAL (NULL, or an instruction already begun).
 */
int vmmu_insn_begin(struct vmmu_vcpu *vcpu);

/**
 * End an instruction; a safe point for the vCPU's prepared accesses and
 * probe pointers.  @p status VMMU_EPENDING keeps the latch for the
 * re-execution; any other value (0, a fault, an error) drops it.
 * @return 0 or VMMU_EINVAL (NULL, no instruction begun).
 */
int vmmu_insn_end(struct vmmu_vcpu *vcpu, int status);

/**
 * Drop a latch kept for a re-execution that will not happen (the vCPU is
 * reset, or the caller gives up on the instruction).  Inside an
 * instruction the instruction goes on as a first pass that recorded
 * nothing yet (its reads from here on are live and recorded), and the
 * TLB entries a replayed walk filled from recorded entries are dropped
 * at once.  @return 0 or VMMU_EINVAL.
 */
int vmmu_latch_discard(struct vmmu_vcpu *vcpu);

/**
 * Stop recording and replaying until vmmu_latch_restore(): for work inside
 * an instruction that must see live memory (a debugger's peek, an
 * introspection hook).  Nests; each call returns its own token (a level
 * undone and entered again gets a new one).  Beyond 16 levels the latch is
 * off already: such a call changes nothing and returns 0.
 * @return a token for vmmu_latch_restore() (0 for NULL).
 */
unsigned vmmu_latch_disable(struct vmmu_vcpu *vcpu);

/** Undo the vmmu_latch_disable() that returned @p token, and any made
 *  after it that are still in force.  A token no disable still in force
 *  returned (0, or one already undone) changes nothing. */
void vmmu_latch_restore(struct vmmu_vcpu *vcpu, unsigned token);

/** Capacity of the latch: recorded reads beyond it fail with VMMU_EOVERFLOW. */
#define VMMU_LATCH_ENTRIES 64    /**< page-table entries */
#define VMMU_LATCH_XLATES 32     /**< translations */
#define VMMU_LATCH_EVENTS 256    /**< data reads and completed MMIO/device pieces */
#define VMMU_LATCH_BYTES 16384u  /**< bytes of recorded data */

/** What the latch holds and did (for tests and diagnostics). */
struct vmmu_latch_stats {
    unsigned pass;        /**< 1 first pass, 2+ replays; between the passes of an
                               instruction that pended, the pass that pended (the next
                               vmmu_insn_begin() starts pass + 1); 0 when no latch is kept */
    unsigned entries;     /**< page-table entries recorded */
    unsigned xlates;      /**< translations recorded */
    unsigned events;      /**< data events recorded */
    unsigned bytes;       /**< data bytes recorded */
    uint64_t entries_replayed; /**< entry reads served from the latch (cumulative) */
    uint64_t xlates_replayed;  /**< translations served from the latch (cumulative) */
    uint64_t events_replayed;  /**< data events served from the latch (cumulative) */
    uint64_t diverged;    /**< replays that found a different access than recorded (cumulative) */
    uint64_t overflows;   /**< VMMU_EOVERFLOW returned (cumulative) */
};

/** Copy the latch statistics.  @return 0 or VMMU_EINVAL. */
int vmmu_latch_stats(const struct vmmu_vcpu *vcpu, struct vmmu_latch_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_ACCESS_H */
