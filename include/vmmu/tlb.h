/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/tlb.h
 * @brief The per-vCPU software TLB: a hit path of a few instructions that
 *        a C caller inlines or a JIT emits, and the out-of-line slow path
 *        that walks, looks up the P2M and fills.
 *
 * A vCPU (vmmu/vcpu.h) has one TLB table per mmu context (user,
 * supervisor, supervisor with EFLAGS.AC=1) and per PCID slot.  The vCPU
 * always points at the table of its current context, so the hit path
 * compares no CPL, no AC and no PCID.
 *
 * ## The hot entry (layout for JIT authors)
 *
 *     offset  0  uint64_t  cmp[VMMU_TLB_READ]   comparator for data reads
 *     offset  8  uint64_t  cmp[VMMU_TLB_WRITE]  comparator for data writes
 *     offset 16  uint64_t  cmp[VMMU_TLB_FETCH]  comparator for instruction fetches
 *     offset 24  uintptr_t addend               host address = va + addend
 *     size 32 (VMMU_TLB_ENTRY_SHIFT = 5)
 *
 * A comparator is the page-aligned linear address the entry translates,
 * ORed with VMMU_TLB_FLAG_* bits 4..11 that force the slow path.  A
 * comparator of all ones (VMMU_TLB_CMP_INVALID) matches nothing.  The hit
 * test for an access of `size` bytes (1, 2, 4, 8 or 16; never more than
 * 16, whose size - 1 would reach the flag bits: larger accesses always
 * take the slow path) is one compare:
 *
 *     fast  = (const struct vmmu_tlb_fast *)vcpu;          // first member
 *     entry = (char *)fast->table + ((va >> 7) & fast->index_mask);
 *     hit   = entry->cmp[kind] == (va & (VMMU_PAGE_MASK | (size - 1)));
 *     host  = va + entry->addend;
 *
 * (7 = VMMU_PAGE_SHIFT - VMMU_TLB_ENTRY_SHIFT; index_mask is
 * (entries - 1) << VMMU_TLB_ENTRY_SHIFT, so the masked value is already a
 * byte offset.)  Keeping bits 0..3 of va in the compared value makes a
 * misaligned access miss, and so every page-crossing one: both go to the
 * slow path, which serves misaligned in-page accesses and reports page
 * crossings.  The flags sit above bit 3 so that even a 16-byte access
 * compares them.  The table pointer and mask change on context switches,
 * PCID switches and resizes: reload them from the vCPU after any call into
 * vmmu (vmmu_tlb_view() copies both; vmmu_tlb_lookup() reads them at each
 * lookup).  Rotating va right by 7 instead of shifting gives the same
 * offset (the mask keeps bits 5..16 only).
 *
 * ## The sequence for JIT authors (x86-64 with BMI1 and BMI2)
 *
 * With the table in register T, the mask in M (or at [vcpu + 0]), the
 * in-page offset bits an access must not compare in O (0xff8 for an
 * aligned 8-byte access: (4096 - 1) & ~(size - 1)) and va in V, a hit
 * costs six instructions besides the access itself:
 *
 *     rorx  $7, V, X          ; X = va rotated: the entry offset once masked
 *     and   M, X              ; X = byte offset of the entry
 *     andn  V, O, K           ; K = va & ~O: page, alignment bits
 *     cmp   K, kind*8(T, X)   ; the comparator of this access kind
 *     jne   slow              ; vmmu_tlb_fill(), then reload T and M
 *     add   24(T, X), V       ; V = host address
 *
 * bench/bench_tlb.c runs exactly this sequence (tlb/hit_instructions);
 * examples/jit_lookup.c generates it as machine code at run time, with
 * the bytes of each instruction.
 * Without BMI, `mov V, X; shr $7, X` and `mov V, K; and $imm, K` replace
 * RORX and ANDN: eight instructions.
 *
 * ## Threads
 *
 * Everything here runs on the thread that runs the vCPU (the one writer of
 * its TLB), while the vCPU is online there (vmmu/sync.h): an offline
 * vCPU's TLB may still hold translations that P2M changes and flushes
 * made meanwhile have ended (it drops them in vmmu_vcpu_online()), so a
 * debugger or monitor reading through a halted vCPU puts it online
 * first, or walks with vmmu/x86.h and reads with vmmu_gpa_read().
 * Single-threaded use is no exception: put the vCPU online once on the
 * thread (vmmu_vcpu_online()).  A map change that thread makes (a region
 * replaced or removed, a page paged out) then drops the vCPU's stale
 * translations before it returns; a vCPU that is not online keeps them,
 * the host addresses of memory that is gone among them, until it goes
 * online.
 * A host pointer obtained from the TLB is valid until the vCPU's next
 * call into vmmu.
 */
#ifndef VMMU_TLB_H
#define VMMU_TLB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p2m.h"
#include "vm.h"
#include "x86.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vcpu;

/** The three access kinds, each with its own comparator. */
enum vmmu_tlb_kind {
    VMMU_TLB_READ = 0,
    VMMU_TLB_WRITE = 1,
    VMMU_TLB_FETCH = 2,
};
#define VMMU_TLB_KINDS 3

/** Comparator flags (bits 4..11): any one forces the slow path. */
#define VMMU_TLB_FLAG_INVALID (1ull << 4)  /**< no translation for this kind */
#define VMMU_TLB_FLAG_MMIO (1ull << 5)     /**< not RAM: MMIO, device model, hole, or a ROM write */
#define VMMU_TLB_FLAG_WATCH (1ull << 6)    /**< a watchpoint of this vCPU covers the page */
#define VMMU_TLB_FLAG_NOTDIRTY (1ull << 7) /**< write: the guest D bit, or the dirty log, needs setting */
#define VMMU_TLB_FLAG_CODE (1ull << 8)     /**< write: the page holds translated code (VMMU_PAGE_CODE) */
/** Every comparator flag bit, including those reserved for later use. */
#define VMMU_TLB_FLAGS_MASK 0xff0ull
/** A comparator that matches no access. */
#define VMMU_TLB_CMP_INVALID (~0ull)

/** log2 of sizeof(struct vmmu_tlb_entry). */
#define VMMU_TLB_ENTRY_SHIFT 5
/** Largest access size the hit path handles (a power of two). */
#define VMMU_TLB_ACCESS_MAX 16

/** A hot entry (see the layout above). */
struct vmmu_tlb_entry {
    uint64_t cmp[VMMU_TLB_KINDS];
    uintptr_t addend;
};

/**
 * The part of a vCPU the hit path reads; a struct vmmu_vcpu begins with
 * it, so a vCPU pointer converts to a pointer to it.
 */
struct vmmu_tlb_fast {
    uintptr_t index_mask;          /**< (entries - 1) << VMMU_TLB_ENTRY_SHIFT, current context */
    struct vmmu_tlb_entry *table;  /**< current context's table */
    uintptr_t sup_index_mask;      /**< the supervisor context of the current PCID, ... */
    struct vmmu_tlb_entry *sup_table; /**< ... used by implicit supervisor accesses */
    uint64_t hits; /**< inline hits, counted only when VMMU_TLB_COUNT_HITS is defined */
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct vmmu_tlb_entry) == (1u << VMMU_TLB_ENTRY_SHIFT),
               "hot entry size is part of the JIT ABI");
_Static_assert(offsetof(struct vmmu_tlb_entry, cmp) == 0, "cmp[] at offset 0");
_Static_assert(offsetof(struct vmmu_tlb_entry, addend) == 24, "addend at offset 24");
_Static_assert(offsetof(struct vmmu_tlb_fast, index_mask) == 0, "index_mask at offset 0");
_Static_assert(offsetof(struct vmmu_tlb_fast, table) == sizeof(uintptr_t), "table follows mask");
#endif

/**
 * The hot entry a lookup of @p va examines in one context's table: the
 * page number of @p va, scaled to the entry size, masked to the table.
 * For JIT helpers that probe a table themselves, as vmmu_tlb_lookup()
 * does.
 * @param mask  the context's index mask (vmmu_tlb_fast::index_mask or
 *              ::sup_index_mask).
 * @param table the same context's table (vmmu_tlb_fast::table or
 *              ::sup_table).
 * @param va    the linear address (32 bits outside IA-32e paging).
 * @return the entry in @p table whose comparators decide the lookup.
 */
static inline const struct vmmu_tlb_entry *vmmu_tlb_entry_for(uintptr_t mask,
                                                              const struct vmmu_tlb_entry *table,
                                                              uint64_t va)
{
    /* A rotate, not a shift: the mask keeps bits 5..16 only, so the bits
     * rotated in at the top never matter, and on BMI2 hosts the compiler
     * can use the three-operand RORX instead of copying va to shift it. */
    const unsigned r = VMMU_PAGE_SHIFT - VMMU_TLB_ENTRY_SHIFT;
    uintptr_t off = (uintptr_t)((va >> r) | (va << (64 - r))) & mask;
    return (const struct vmmu_tlb_entry *)(const void *)((const char *)table + off);
}

/**
 * Whether the hit test can answer for an access of @p size bytes: 1 to
 * VMMU_TLB_ACCESS_MAX.  The compared value keeps bits 0..(size - 1) of va;
 * up to 16 bytes those are bits 0..3 only, so an access that hits never
 * crosses its page and never matches a comparator's flags (bits 4..11).
 * A larger size (an exception frame, a descriptor table, a buffer) would
 * compare flag bits as address bits, and size 0 the whole low part: both
 * must take the slow path.  One compare when @p size is not a constant,
 * none when it is.
 * @param size the access size in bytes.
 * @return true if a hit may serve the access; false if it must take the
 *         slow path (vmmu_tlb_fill()).
 */
static inline bool vmmu_tlb_size_ok(unsigned size)
{
    return size - 1u < VMMU_TLB_ACCESS_MAX;
}

/**
 * Whether @p kind names a comparator (VMMU_TLB_READ, _WRITE or _FETCH).
 * The hit tests below treat any other value as a miss, so that a wrong
 * kind never reads outside the entry; with a constant kind the test
 * costs nothing.
 * @param kind the access kind.
 * @return true for one of the three kinds.
 */
static inline bool vmmu_tlb_kind_ok(enum vmmu_tlb_kind kind)
{
    return (unsigned)kind < VMMU_TLB_KINDS;
}

/**
 * The hit path: the host address of @p va for an access of @p kind and
 * @p size bytes in the vCPU's current context, or NULL when the slow path
 * must run (vmmu_tlb_fill()).  @p size is 1, 2, 4, 8 or 16 in the common
 * case; such an access not naturally aligned returns NULL, and so does any
 * size the hit test cannot answer for (0, or above 16: the slow path
 * takes 1 to 4096 bytes), and a @p kind that is none of the three.
 * Other sizes up to 16 hit only where
 * va & (size - 1) is 0, which never lets the access run past its page.
 * In paging modes other than IA-32e, pass 32-bit linear addresses.
 */
static inline void *vmmu_tlb_lookup(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size,
                                    enum vmmu_tlb_kind kind)
{
    struct vmmu_tlb_fast *fast = (struct vmmu_tlb_fast *)(void *)vcpu;
    const struct vmmu_tlb_entry *e = vmmu_tlb_entry_for(fast->index_mask, fast->table, va);
    if (!vmmu_tlb_size_ok(size) || !vmmu_tlb_kind_ok(kind) ||
        e->cmp[kind] != (va & (VMMU_PAGE_MASK | (uint64_t)(size - 1))))
        return NULL;
#ifdef VMMU_TLB_COUNT_HITS
    fast->hits++;
#endif
    return (void *)(uintptr_t)(va + e->addend);
}

/**
 * The hit path's inputs for the current context, copied out of the vCPU
 * so that a loop (an interpreter's block, a JIT's generated code) can keep
 * them in registers.  Valid until the vCPU's next call into vmmu: reload
 * it with vmmu_tlb_view() after every slow path or register write.
 */
struct vmmu_tlb_view {
    uintptr_t index_mask;               /**< as vmmu_tlb_fast::index_mask */
    const struct vmmu_tlb_entry *table; /**< as vmmu_tlb_fast::table */
};

/** The view of the vCPU's current context (two loads). */
static inline struct vmmu_tlb_view vmmu_tlb_view(const struct vmmu_vcpu *vcpu)
{
    const struct vmmu_tlb_fast *fast = (const struct vmmu_tlb_fast *)(const void *)vcpu;
    struct vmmu_tlb_view view = {fast->index_mask, fast->table};
    return view;
}

/**
 * The hit path in the form a caller branches on directly: true with
 * *@p host set when @p va hits for an access of @p kind and @p size bytes
 * (1, 2, 4, 8 or 16; 0, sizes above 16 and an unknown kind never hit), false (and *@p host
 * untouched) when the slow path must run.  Unlike vmmu_tlb_lookup() the answer is the comparison itself,
 * so after inlining the caller's `if` is the compare's branch, with no
 * second test of a returned pointer.  Inline hits are not counted here.
 *
 *     struct vmmu_tlb_view view = vmmu_tlb_view(vcpu);
 *     for (each access) {
 *         void *host;
 *         if (!vmmu_tlb_probe(view, va, 8, VMMU_TLB_READ, &host)) {
 *             host = vmmu_tlb_fill(vcpu, va, 8, 0, &res);
 *             view = vmmu_tlb_view(vcpu);
 *             if (!host) ...;      // fault, MMIO, crossing: see res
 *         }
 *         use(host);
 *     }
 */
static inline bool vmmu_tlb_probe(struct vmmu_tlb_view view, uint64_t va, unsigned size,
                                  enum vmmu_tlb_kind kind, void **host)
{
    const struct vmmu_tlb_entry *e = vmmu_tlb_entry_for(view.index_mask, view.table, va);
    if (__builtin_expect(!vmmu_tlb_size_ok(size) || !vmmu_tlb_kind_ok(kind) ||
                             e->cmp[kind] != (va & (VMMU_PAGE_MASK | (uint64_t)(size - 1))),
                         0))
        return false;
    *host = (void *)(uintptr_t)(va + e->addend);
    return true;
}

/** vmmu_tlb_lookup() for a data read. */
static inline void *vmmu_tlb_lookup_read(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size)
{
    return vmmu_tlb_lookup(vcpu, va, size, VMMU_TLB_READ);
}

/** vmmu_tlb_lookup() for a data write. */
static inline void *vmmu_tlb_lookup_write(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size)
{
    return vmmu_tlb_lookup(vcpu, va, size, VMMU_TLB_WRITE);
}

/** vmmu_tlb_lookup() for an instruction fetch. */
static inline void *vmmu_tlb_lookup_fetch(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size)
{
    return vmmu_tlb_lookup(vcpu, va, size, VMMU_TLB_FETCH);
}

/**
 * The hit path for an implicit supervisor-mode access (GDT, LDT, IDT, TSS;
 * VMMU_X86_ACC_IMPLICIT): it uses the supervisor context without
 * EFLAGS.AC of the current PCID, whatever the CPL.
 */
static inline void *vmmu_tlb_lookup_implicit(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size,
                                             enum vmmu_tlb_kind kind)
{
    struct vmmu_tlb_fast *fast = (struct vmmu_tlb_fast *)(void *)vcpu;
    const struct vmmu_tlb_entry *e = vmmu_tlb_entry_for(fast->sup_index_mask, fast->sup_table, va);
    if (!vmmu_tlb_size_ok(size) || !vmmu_tlb_kind_ok(kind) ||
        e->cmp[kind] != (va & (VMMU_PAGE_MASK | (uint64_t)(size - 1))))
        return NULL;
#ifdef VMMU_TLB_COUNT_HITS
    fast->hits++;
#endif
    return (void *)(uintptr_t)(va + e->addend);
}

/**
 * Read @p size bytes of guest RAM at @p host (a hit's host address) into
 * @p out as a CPU reads them.  x86 makes an aligned access of 1, 2, 4 or
 * 8 bytes single-copy atomic (SDM 8.1.1): another vCPU's aligned store to
 * the bytes is seen whole or not at all.  A memcpy() promises no such
 * thing (and is a data race in C while another vCPU's thread writes the
 * bytes); this makes such an access one relaxed atomic load, and anything
 * else relaxed atomic loads of its aligned 8-byte words and single bytes.
 * As for memcpy(), both pointers must be valid for
 * @p size bytes: this is the hit path, it checks nothing (a hit's host
 * address from vmmu_tlb_lookup() or vmmu_tlb_probe() always is).
 */
/** @cond internal */
/* Copies of guest RAM that another thread may race (a vCPU, a thread
 * copying pages for a migration): relaxed atomic accesses, 8 bytes at a
 * time where the guest side is aligned, single bytes elsewhere, so that
 * each aligned word goes whole and the race is one C defines.  Used by
 * the functions below and inside vmmu. */
static inline void vmmu__guest_copy_in(void *out, const void *host, size_t size)
{
    const uint8_t *h = (const uint8_t *)host;
    uint8_t *o = (uint8_t *)out;
    for (; size && ((uintptr_t)h & 7); size--)
        *o++ = __atomic_load_n(h++, __ATOMIC_RELAXED);
    for (; size >= 8; size -= 8, h += 8, o += 8) {
        uint64_t x = __atomic_load_n((const uint64_t *)(const void *)h, __ATOMIC_RELAXED);
        __builtin_memcpy(o, &x, 8);
    }
    for (; size; size--)
        *o++ = __atomic_load_n(h++, __ATOMIC_RELAXED);
}

static inline void vmmu__guest_copy_out(void *host, const void *in, size_t size)
{
    uint8_t *h = (uint8_t *)host;
    const uint8_t *i = (const uint8_t *)in;
    for (; size && ((uintptr_t)h & 7); size--)
        __atomic_store_n(h++, *i++, __ATOMIC_RELAXED);
    for (; size >= 8; size -= 8, h += 8, i += 8) {
        uint64_t x;
        __builtin_memcpy(&x, i, 8);
        __atomic_store_n((uint64_t *)(void *)h, x, __ATOMIC_RELAXED);
    }
    for (; size; size--)
        __atomic_store_n(h++, *i++, __ATOMIC_RELAXED);
}
/** @endcond */

static inline void vmmu_guest_load(void *out, const void *host, unsigned size)
{
#define VMMU_GUEST_LOAD_(n, type)                                                                  \
    if (size == (n) && !((uintptr_t)host & ((n) - 1))) {                                           \
        type x_ = __atomic_load_n((const type *)host, __ATOMIC_RELAXED);                           \
        __builtin_memcpy(out, &x_, (n));                                                           \
        return;                                                                                    \
    }
    VMMU_GUEST_LOAD_(1, uint8_t)
    VMMU_GUEST_LOAD_(2, uint16_t)
    VMMU_GUEST_LOAD_(4, uint32_t)
    VMMU_GUEST_LOAD_(8, uint64_t)
#undef VMMU_GUEST_LOAD_
    vmmu__guest_copy_in(out, host, size);
}

/** The store of vmmu_guest_load(): @p size bytes of @p in to guest RAM at @p host. */
static inline void vmmu_guest_store(void *host, const void *in, unsigned size)
{
#define VMMU_GUEST_STORE_(n, type)                                                                 \
    if (size == (n) && !((uintptr_t)host & ((n) - 1))) {                                           \
        type x_;                                                                                   \
        __builtin_memcpy(&x_, in, (n));                                                            \
        __atomic_store_n((type *)host, x_, __ATOMIC_RELAXED);                                      \
        return;                                                                                    \
    }
    VMMU_GUEST_STORE_(1, uint8_t)
    VMMU_GUEST_STORE_(2, uint16_t)
    VMMU_GUEST_STORE_(4, uint32_t)
    VMMU_GUEST_STORE_(8, uint64_t)
#undef VMMU_GUEST_STORE_
    vmmu__guest_copy_out(host, in, size);
}

/* ---- The slow path ------------------------------------------------------ */

/** What the slow path found. */
enum vmmu_tlb_status {
    VMMU_TLB_OK = 0,    /**< host memory: @ref vmmu_tlb_result::host is valid */
    VMMU_TLB_FAULT,     /**< the CPU raises @ref vmmu_tlb_result::fault */
    VMMU_TLB_NOT_RAM,   /**< translated to gpa, but the page is MMIO, a device
                             range, a hole, or ROM for a write: the access
                             layer must dispatch it (no host pointer) */
    VMMU_TLB_CROSSES,   /**< the access spans two pages: split it, checking
                             both parts before writing either (as
                             vmmu_access_load/store() do) */
    VMMU_TLB_ERROR,     /**< vmmu could not do its job: see @ref vmmu_tlb_result::error */
};

/** Result record of vmmu_tlb_fill(). */
struct vmmu_tlb_result {
    enum vmmu_tlb_status status;
    void *host;                  /**< VMMU_TLB_OK: host address of va */
    uint64_t gpa;                /**< OK and NOT_RAM: guest-physical address of va */
    enum vmmu_mem_type type;     /**< OK and NOT_RAM: what the page is */
    uint32_t region_id;          /**< OK and NOT_RAM: its region (0 for a hole) */
    /** OK: VMMU_TLB_FLAG_CODE when a write reached a page holding
     *  translated code (the caller must invalidate its translations). */
    uint64_t flags;
    struct vmmu_x86_fault fault; /**< VMMU_TLB_FAULT: the fault (#PF with CR2, #GP, #SS) */
    int error;                   /**< VMMU_TLB_ERROR: a negative VMMU_E* code */
    uint64_t page_size;          /**< OK and NOT_RAM: size of the guest page that maps va */
};

/**
 * The slow path: translate @p va for one access, fill the TLB when the
 * result may be cached, and return the host address (or NULL).
 *
 * It serves misaligned accesses inside a page; an access crossing a page
 * gets VMMU_TLB_CROSSES (split it and call again for each part, both
 * before a byte is written: a store whose second part faults must leave
 * the first page as it was; vmmu_access_store() does all that).  A write
 * to a page whose guest D bit is clear walks again as a write, so D is set
 * exactly when the CPU would set it; a write to a RAM page of a region
 * with VMMU_REGION_LOG_DIRTY sets the page's VMMU_PAGE_DIRTY bit.
 *
 * @param access VMMU_X86_ACC_WRITE or _FETCH (or neither: a read), plus
 *               VMMU_X86_ACC_IMPLICIT and VMMU_X86_ACC_STACK.
 * @param size   1 .. 4096 bytes.
 * @param res    receives the result; may be NULL if only the host address
 *               matters.
 * @return the host address of @p va (res->status VMMU_TLB_OK), or NULL.
 *         Bad arguments give NULL with VMMU_TLB_ERROR / VMMU_EINVAL.
 */
void *vmmu_tlb_fill(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, unsigned access,
                    struct vmmu_tlb_result *res);

/**
 * Hit path, then slow path: the host address of @p va for an access (see
 * vmmu_tlb_fill() for @p access and @p res).  On an inline hit only
 * res->status (VMMU_TLB_OK) and res->host are written; the other fields
 * keep what the caller left there.  The slow path writes the record as
 * vmmu_tlb_fill() does.
 * @return as vmmu_tlb_fill() (bad arguments: NULL, with res->status
 *         VMMU_TLB_ERROR and res->error VMMU_EINVAL).  @p vcpu may not be
 *         NULL: the hit path reads it before any check.
 */
static inline void *vmmu_tlb_translate(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size,
                                       unsigned access, struct vmmu_tlb_result *res)
{
    enum vmmu_tlb_kind kind = (access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
                              : (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                                              : VMMU_TLB_READ;
    void *host = NULL;
    /* Only an access vmmu_tlb_fill() would take may hit: a size of 1, 2,
     * 4, 8 or 16 and known access bits, never WRITE with FETCH (the slow
     * path refuses the others). */
    if (size && size <= VMMU_TLB_ACCESS_MAX && !(size & (size - 1)) &&
        !(access & ~VMMU_X86_ACC_ALL) &&
        (access & (VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH)) !=
            (VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH))
        host = (access & VMMU_X86_ACC_IMPLICIT) ? vmmu_tlb_lookup_implicit(vcpu, va, size, kind)
                                                : vmmu_tlb_lookup(vcpu, va, size, kind);
    if (host) {
        if (res) {
            res->status = VMMU_TLB_OK;
            res->host = host;
        }
        return host;
    }
    return vmmu_tlb_fill(vcpu, va, size, access, res);
}

/* ---- Statistics --------------------------------------------------------- */

/** Per-vCPU TLB statistics (see vmmu_vcpu_stats()). */
struct vmmu_tlb_stats {
    uint64_t hits;          /**< inline hits of vmmu_tlb_lookup*() and vmmu_tlb_translate(), counted
                                 only where the caller defines VMMU_TLB_COUNT_HITS (never by
                                 vmmu_tlb_probe()) */
    uint64_t slow_hits;     /**< slow-path calls served by the entry already in the table (the
                                 access functions' answers from an MMIO entry count here too) */
    uint64_t victim_hits;   /**< slow-path calls served from the victim array */
    uint64_t misses;        /**< slow-path calls that had to walk */
    uint64_t walks;         /**< page walks started (full or resumed) */
    uint64_t psc_hits;      /**< walks that resumed below a paging-structure-cache entry */
    uint64_t warm_misses;   /**< of those, misses served by the short path: one PTE read, a
                                 4 KiB RAM page, nothing to set (A, and D for a write, already set) */
    uint64_t fills;         /**< entries written into a table */
    uint64_t faults;        /**< slow-path calls that ended in a fault */
    uint64_t not_ram;       /**< slow-path calls that ended in MMIO/device/hole/ROM write
                                 (VMMU_TLB_NOT_RAM), whether they walked or not, and the access
                                 functions' answers from such an entry */
    uint64_t flush_all;     /**< whole-TLB flushes (every PCID, globals included) */
    uint64_t flush_pcid;    /**< flushes of one PCID's non-global entries (CR3, INVPCID 1, and
                                 one per resident PCID for INVPCID 3) */
    uint64_t flush_page;    /**< single-address invalidations (INVLPG, INVPCID 0) */
    uint64_t flush_rights;  /**< register writes' rights narrowings that flushed contexts: one
                                 per rule applied (CR0.WP, CR4.SMEP, CR4.SMAP, CR4.PKE/PKS
                                 set, a tightened key some context holds), however many
                                 contexts it dropped (those count in flush_contexts) */
    uint64_t flush_contexts;/**< context tables flushed, for any reason */
    uint64_t flush_elided;  /**< context flushes that found nothing to do (cost O(1)) */
    uint64_t pcid_switches; /**< changes of the current PCID slot: by CR3 writes, and by
                                 CR4.PCIDE 1->0 and vmmu_vcpu_set_state() */
    uint64_t pcid_evictions;/**< PCID slots recycled for a new PCID */
    uint64_t resize_grow;   /**< context tables grown: at a flush (to the size the demand
                                 needs), or doubled at once by a context that keeps
                                 swapping victims */
    uint64_t resize_shrink; /**< context tables shrunk at a flush */
};

#ifdef __cplusplus
}
#endif
#endif /* VMMU_TLB_H */
