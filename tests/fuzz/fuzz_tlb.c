/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the per-vCPU software TLB against the bare walker.
 *
 * An input is a register state, a guest-physical image full of hostile
 * page tables, and a stream of at most MAX_OPS operations: accesses
 * through every form of the TLB (vmmu_tlb_translate, vmmu_tlb_fill, the
 * inline lookups and vmmu_tlb_probe), 8-byte writes of guest memory,
 * INVLPG, INVPCID, register writes through the vCPU setters, whole-TLB
 * flushes and code-page marks.  Before each access the walker
 * (vmmu_x86_walk_peek, side-effect free) says what the CPU would do now.
 *
 * The agreement rule.  The fuzzer writes guest memory behind the TLB's
 * back, as a guest editing its page tables does, and the architecture lets
 * a TLB use what it cached until an invalidation covers it.  One flag,
 * `stale`, says "a cached translation may disagree with memory": set by
 * every write of guest memory, and by register writes that keep cached
 * translations of other page tables (a MOV to CR3 that changes the root
 * while global entries or other PCIDs survive, a reload of the PAE PDPTE
 * registers that does not flush everything).  Only an operation that
 * drops every translation, global ones and the paging-structure caches of
 * every PCID included, clears it (everything_dropped()): the state load,
 * vmmu_vcpu_tlb_flush_all(), INVPCID type 2, and what docs/tlb.md lists
 * as flushing everything (a change of CR4.PGE, PAE, PSE or LA57, of CR0.PG
 * or of EFER.NXE; CR4.PCIDE 1 -> 0); and, while CR4.PGE=0 leaves no global
 * translation, INVPCID type 3, and with CR4.PCIDE=0 too (PCID 0 holds
 * everything) a MOV to CR3 or INVPCID type 1.
 * While it is clear the TLB must answer exactly as the walk:
 * the same fault (vector, error code, CR2), or the same guest-physical
 * address, memory type, region, page size and host pointer; and each
 * paging-structure entry the walk used must now hold the accessed and
 * dirty bits the walk says the CPU leaves there.  While it is set the
 * accesses still run (they must not crash or trip a sanitizer) and their
 * answers are only checked for consistency with themselves and with the
 * guest-physical map, which the fuzzer never changes behind vmmu's back:
 * a host pointer inside the RAM or ROM at the page offset of the address,
 * never ROM for a write, error codes from the defined bits, CR2 the
 * (32-bit outside IA-32e paging) linear address, #GP/#SS exactly for
 * non-canonical addresses, VMMU_TLB_CROSSES exactly for page crossings,
 * writes to code pages reported.  After every operation: no MMIO callback
 * ran (the TLB only translates) and no statistics counter went down.
 *
 * Guest-physical layout (fixed for the whole run):
 *   [0, 64 KiB)             RAM: the input's image, repeated (page tables)
 *   [1 MiB, 1 MiB + 4 KiB)  ROM: the first 4 KiB of the RAM image
 *   [2 MiB, 2 MiB + 4 KiB)  MMIO: its callbacks must never run
 *   [3 MiB, 3 MiB + 4 KiB)  a device-model range (no handler)
 *   everything else         holes
 * With the "tame" option every entry's address bits stay inside the RAM,
 * so walks go deep; large pages then map from gpa 0 and reach the ROM,
 * MMIO and device pages and the holes.
 *
 * A failure prints one line saying what differed, then aborts. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_env.h"
#include "vmmu/vmmu.h"

#define RAM_SIZE (64u * 1024u)
#define RAM_PAGES (RAM_SIZE / 4096u)
#define ROM_GPA 0x100000ull
#define MMIO_GPA 0x200000ull
#define DEV_GPA 0x300000ull
#define MAX_OPS 64
#define RING 4

/* Address bits of 8-byte entries above the RAM (taming clears them), and
 * of 4-byte (32-bit paging) entries. */
#define TAME_MASK_64 0x000fffffffff0000ull
#define TAME_MASK_32 0xffff0000u

/* Reserved bits of a PAE PDPTE (bits 2:1, 8:5, and from MAXPHYADDR up). */
#define PDPTE_RSVD (0x1e6ull | 0xffffff0000000000ull)

/* The CR4 and CR0 bits operations toggle. */
static const uint64_t cr4_bits[] = {
    VMMU_X86_CR4_PSE,  VMMU_X86_CR4_PAE,  VMMU_X86_CR4_PGE, VMMU_X86_CR4_LA57,
    VMMU_X86_CR4_PCIDE, VMMU_X86_CR4_SMEP, VMMU_X86_CR4_SMAP, VMMU_X86_CR4_PKE,
    VMMU_X86_CR4_PKS,  VMMU_X86_CR4_CET,
};
static const uint64_t cr0_bits[] = {
    VMMU_X86_CR0_WP, VMMU_X86_CR0_PG, VMMU_X86_CR0_PE,
    VMMU_X86_CR0_CD, VMMU_X86_CR0_NW, VMMU_X86_CR0_CD | VMMU_X86_CR0_NW,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vmmu_vm *vm;
static struct vmmu_vcpu *vcpu;
static uint8_t *ram, *rom;
static uint32_t ram_id, rom_id, mmio_id, dev_id;

/* The statistics as last read: counters never go down. */
#define NSTATS (sizeof(struct vmmu_tlb_stats) / sizeof(uint64_t))
_Static_assert(sizeof(struct vmmu_tlb_stats) % sizeof(uint64_t) == 0, "counters only");
static uint64_t last_stats[NSTATS];

/* Per input. */
static bool stale;           /* a cached translation may disagree with memory */
static uint16_t code_pages;  /* RAM pages marked VMMU_PAGE_CODE */
static uint64_t ring[RING];  /* recent addresses, so that accesses hit again */
static unsigned ring_next;
/* The RAM entries the last walk read, for writes that hit them. */
struct last_level {
    uint64_t gpa;
    unsigned size;
};
static struct last_level last_levels[VMMU_X86_LEVELS_MAX];
static unsigned last_nlevels;

/* Totals, printed at exit when FUZZ_TLB_STATS is set. */
static unsigned long n_compared, n_stale, n_inline, n_ad, n_faults, n_ok, n_not_ram;

static void print_totals(void)
{
    fprintf(stderr,
            "fuzz_tlb: %lu accesses compared (%lu ok, %lu not RAM, %lu faults; %lu inline hits), "
            "%lu made while stale, %lu entries' A/D checked\n",
            n_compared, n_ok, n_not_ram, n_faults, n_inline, n_stale, n_ad);
}

static void setup_once(void)
{
    if (vm)
        return;
    ram = aligned_alloc(4096, RAM_SIZE);
    rom = aligned_alloc(4096, 4096);
    if (!ram || !rom || vmmu_vm_create(NULL, &vm) != 0)
        abort();
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE, .host = ram};
    struct vmmu_region_desc o = {.type = VMMU_MEM_ROM, .gpa = ROM_GPA, .size = 4096, .host = rom};
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                 .mmio = &mmio_ops};
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    if (vmmu_region_add(vm, &r, &ram_id) || vmmu_region_add(vm, &o, &rom_id) ||
        vmmu_region_add(vm, &m, &mmio_id) || vmmu_region_add(vm, &d, &dev_id))
        abort();
    /* All features, Intel, MAXPHYADDR 40.  Online on this thread, so that a
     * code-page mark drops this vCPU's write translations at once. */
    if (vmmu_vcpu_create(vm, NULL, &vcpu) != 0 || vmmu_vcpu_online(vcpu) != 0)
        abort();
    if (getenv("FUZZ_TLB_STATS"))
        atexit(print_totals);
}

/* ---- Input ------------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t n;
};

/* The next @bytes bytes, little-endian; zeros past the end. */
static uint64_t take(struct reader *r, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes && r->n; i++, r->p++, r->n--)
        v |= (uint64_t)*r->p << (8 * i);
    return v;
}

/* The input's header. */
struct header {
    uint8_t how; /* bit 0 raw registers, bit 1 load by setters, bit 2 tame, bits 4-6 mode */
    uint8_t cpl;
    uint16_t ops_len;
    uint32_t pkru;
    uint64_t cr0, cr3, cr4, efer, rflags, pkrs;
};

#define HOW_RAW 1u
#define HOW_SETTERS 2u
#define HOW_TAME 4u

static void read_header(struct reader *r, struct header *h)
{
    h->how = (uint8_t)take(r, 1);
    h->cpl = (uint8_t)take(r, 1);
    h->ops_len = (uint16_t)take(r, 2);
    h->pkru = (uint32_t)take(r, 4);
    h->cr0 = take(r, 8);
    h->cr3 = take(r, 8);
    h->cr4 = take(r, 8);
    h->efer = take(r, 8);
    h->rflags = take(r, 8);
    h->pkrs = take(r, 8);
}

/* Registers from the header: raw, or built from a mode selector so that
 * most inputs reach a state vmmu_vcpu_set_state() accepts. */
static void regs_from(const struct header *h, struct vmmu_x86_regs *r)
{
    memset(r, 0, sizeof(*r));
    r->cpl = h->cpl & 3;
    r->pkru = h->pkru;
    if (h->how & HOW_RAW) {
        r->cr0 = h->cr0;
        r->cr3 = h->cr3;
        r->cr4 = h->cr4;
        r->efer = h->efer;
        r->rflags = h->rflags;
        r->pkrs = h->pkrs;
        return;
    }
    r->rflags = 2 | (h->rflags & VMMU_X86_RFLAGS_AC);
    r->pkrs = h->pkrs & 0xffffffffull;
    r->cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_ET |
             (h->cr0 & (VMMU_X86_CR0_WP | VMMU_X86_CR0_CD | VMMU_X86_CR0_NW));
    if (r->cr0 & VMMU_X86_CR0_NW)
        r->cr0 |= VMMU_X86_CR0_CD;
    r->cr4 = h->cr4 & (VMMU_X86_CR4_PSE | VMMU_X86_CR4_PGE | VMMU_X86_CR4_SMEP |
                       VMMU_X86_CR4_SMAP | VMMU_X86_CR4_PKE | VMMU_X86_CR4_PKS);
    r->efer = h->efer & VMMU_X86_EFER_NXE;
    switch ((h->how >> 4) & 7) {
    case 0: /* paging off */
        r->cr3 = h->cr3 & 0xf018;
        break;
    case 1: /* 32-bit paging */
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr3 = h->cr3 & 0xf018;
        break;
    case 2: /* PAE paging */
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr4 |= VMMU_X86_CR4_PAE;
        r->cr3 = h->cr3 & 0xffe0;
        break;
    default: /* 4-level (3, 4) or 5-level (5..7) paging, maybe with PCIDs */
        r->cr0 |= VMMU_X86_CR0_PG;
        r->cr4 |= VMMU_X86_CR4_PAE | (h->cr4 & VMMU_X86_CR4_PCIDE);
        if (((h->how >> 4) & 7) >= 5)
            r->cr4 |= VMMU_X86_CR4_LA57;
        r->efer |= VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA;
        r->cr3 = (h->cr3 & 0xf000) | (h->cr3 & ((r->cr4 & VMMU_X86_CR4_PCIDE) ? 0xfff : 0x18));
        break;
    }
}

/* Load registers one instruction at a time, as a guest would; a write
 * that faults just leaves the register as it was. */
static void load_by_setters(const struct vmmu_x86_regs *r)
{
    struct vmmu_x86_fault f;
    (void)vmmu_vcpu_set_efer(vcpu, r->efer & ~VMMU_X86_EFER_LMA, &f);
    (void)vmmu_vcpu_set_cr3(vcpu, r->cr3, &f);
    (void)vmmu_vcpu_set_cr4(vcpu, r->cr4 & ~VMMU_X86_CR4_PCIDE, &f);
    (void)vmmu_vcpu_set_cr0(vcpu, r->cr0, &f);
    (void)vmmu_vcpu_set_cr4(vcpu, r->cr4, &f);
    (void)vmmu_vcpu_set_pkru(vcpu, r->pkru, &f);
    (void)vmmu_vcpu_set_pkrs(vcpu, r->pkrs, &f);
    (void)vmmu_vcpu_set_rflags(vcpu, r->rflags);
    (void)vmmu_vcpu_set_cpl(vcpu, r->cpl);
}

/* Keep every entry's address bits inside the RAM. */
static void tame(uint8_t *p, size_t len, bool entries32)
{
    if (entries32) {
        for (size_t i = 0; i + 4 <= len; i += 4) {
            uint32_t w;
            memcpy(&w, p + i, 4);
            w &= ~TAME_MASK_32;
            memcpy(p + i, &w, 4);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w &= ~TAME_MASK_64;
        memcpy(p + i, &w, 8);
    }
}

/* ---- Failure reports ---------------------------------------------------- */

static const struct vmmu_x86_paging *pg_now(void)
{
    return vmmu_vcpu_paging(vcpu);
}

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    const struct vmmu_x86_paging *pg = pg_now();
    va_list ap;
    fprintf(stderr, "fuzz_tlb: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [%s paging, cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx cpl %u rflags %#llx "
                    "pkru %#x pkrs %#llx, stale %d]\n",
            vmmu_x86_mode_name(pg->mode), (unsigned long long)pg->cr0,
            (unsigned long long)pg->cr3, (unsigned long long)pg->cr4,
            (unsigned long long)pg->efer, pg->cpl, (unsigned long long)pg->rflags, pg->pkru,
            (unsigned long long)pg->pkrs, (int)stale);
    abort();
}

/* One access, as asked, and both answers. */
struct access {
    uint64_t va;     /* as given to the TLB */
    uint64_t lin;    /* the linear address (bits 31:0 outside IA-32e paging) */
    unsigned size;
    unsigned access; /* VMMU_X86_ACC_* */
    unsigned method; /* 0 translate, 1 fill, 2 lookup then fill, 3 probe then fill */
    bool slow;       /* the slow path answered: every field of res is set */
    void *host;
    struct vmmu_tlb_result res;
    struct vmmu_x86_walk walk;
};

static void __attribute__((noreturn)) fail_access(const struct access *a, const char *what)
{
    const struct vmmu_tlb_result *r = &a->res;
    const struct vmmu_x86_walk *w = &a->walk;
    char tlb[256];
    if (a->slow)
        snprintf(tlb, sizeof(tlb),
                 "status %d host %p gpa %#llx type %d region %u page %#llx flags %#llx fault "
                 "%d/%#x/%#llx error %d",
                 (int)r->status, a->host, (unsigned long long)r->gpa, (int)r->type, r->region_id,
                 (unsigned long long)r->page_size, (unsigned long long)r->flags, r->fault.vector,
                 r->fault.error_code, (unsigned long long)r->fault.cr2, r->error);
    else
        snprintf(tlb, sizeof(tlb), "inline hit, host %p (gpa %#llx if RAM)", a->host,
                 (unsigned long long)((uintptr_t)a->host - (uintptr_t)ram));
    fail("%s: va %#llx size %u access %#x method %u; tlb: %s; walk: ok %d gpa %#llx page %#llx "
         "fault %d/%#x/%#llx levels %u",
         what, (unsigned long long)a->va, a->size, a->access, a->method, tlb, (int)w->ok,
         (unsigned long long)w->gpa, (unsigned long long)w->page_size, w->fault.vector,
         w->fault.error_code, (unsigned long long)w->fault.cr2, w->nlevels);
}

/* ---- The guest-physical map as the fuzzer built it ---------------------- */

struct place {
    enum vmmu_tlb_status status; /* for this access kind */
    enum vmmu_mem_type type;
    uint32_t region_id;
    uint8_t *host; /* RAM and ROM */
};

static struct place place_of(uint64_t gpa, bool write)
{
    struct place p = {VMMU_TLB_NOT_RAM, VMMU_MEM_HOLE, 0, NULL};
    if (gpa < RAM_SIZE) {
        p.status = VMMU_TLB_OK;
        p.type = VMMU_MEM_RAM;
        p.region_id = ram_id;
        p.host = ram + gpa;
    } else if (gpa - ROM_GPA < 4096) {
        p.status = write ? VMMU_TLB_NOT_RAM : VMMU_TLB_OK;
        p.type = VMMU_MEM_ROM;
        p.region_id = rom_id;
        p.host = write ? NULL : rom + (gpa - ROM_GPA);
    } else if (gpa - MMIO_GPA < 4096) {
        p.type = VMMU_MEM_MMIO;
        p.region_id = mmio_id;
    } else if (gpa - DEV_GPA < 4096) {
        p.type = VMMU_MEM_DEVICE;
        p.region_id = dev_id;
    }
    return p;
}

static bool page_size_valid(uint64_t s, enum vmmu_x86_mode mode)
{
    switch (s) {
    case 4096:
        return true;
    case 2ull << 20:
        return mode >= VMMU_X86_MODE_PAE;
    case 4ull << 20:
        return mode == VMMU_X86_MODE_32;
    case 1ull << 30:
        return mode >= VMMU_X86_MODE_4LEVEL;
    default:
        return false;
    }
}

/* ---- Checks ------------------------------------------------------------- */

/* What holds whatever the TLB may have cached: the answer agrees with
 * itself and with the guest-physical map. */
static void check_consistent(const struct access *a)
{
    const struct vmmu_x86_paging *pg = pg_now();
    const struct vmmu_tlb_result *r = &a->res;
    bool write = (a->access & VMMU_X86_ACC_WRITE) != 0;
    bool crosses = (a->lin & 0xfff) + a->size > 4096;
    bool noncanonical = !vmmu_x86_canonical(pg, a->lin);
    uint64_t off = a->lin & 0xfff;

    if (mmio_calls)
        fail_access(a, "an MMIO callback ran");
    if (crosses != (r->status == VMMU_TLB_CROSSES))
        fail_access(a, "page crossing not reported as VMMU_TLB_CROSSES, or the reverse");
    if ((r->status == VMMU_TLB_OK) != (a->host != NULL) || (a->slow && r->host != a->host))
        fail_access(a, "host pointer and status disagree");

    switch (r->status) {
    case VMMU_TLB_OK: {
        uintptr_t h = (uintptr_t)a->host;
        bool in_ram = h - (uintptr_t)ram < RAM_SIZE, in_rom = h - (uintptr_t)rom < 4096;
        if (!in_ram && !in_rom)
            fail_access(a, "host pointer outside the RAM and the ROM");
        if ((h & 0xfff) != off)
            fail_access(a, "host pointer at another page offset");
        if (in_rom && write)
            fail_access(a, "a write got a host pointer into the ROM");
        if (!a->slow)
            break;
        struct place p = place_of(r->gpa, write);
        if ((r->gpa & 0xfff) != off || p.status != VMMU_TLB_OK || (uintptr_t)p.host != h ||
            p.type != r->type || p.region_id != r->region_id)
            fail_access(a, "gpa, host pointer, type and region disagree");
        if (!page_size_valid(r->page_size, pg->mode))
            fail_access(a, "page size");
        /* A write to a code page is reported, and nothing else is (a mark
         * the host cleared is no longer reported, though it dropped no
         * entry). */
        bool ram_write = write && r->type == VMMU_MEM_RAM; /* so r->gpa < RAM_SIZE */
        uint16_t page = ram_write ? (uint16_t)(1u << (r->gpa >> 12)) : 0;
        if (ram_write && (code_pages & page) && r->flags != VMMU_TLB_FLAG_CODE)
            fail_access(a, "a write to a code page was not reported");
        if (r->flags != 0 && !(ram_write && (code_pages & page)))
            fail_access(a, "unexpected flags (CODE only on a write to a code page)");
        break;
    }
    case VMMU_TLB_NOT_RAM: {
        struct place p = place_of(r->gpa, write);
        if ((r->gpa & 0xfff) != off || p.status != VMMU_TLB_NOT_RAM || p.type != r->type ||
            p.region_id != r->region_id)
            fail_access(a, "not-RAM answer disagrees with the map");
        if (!page_size_valid(r->page_size, pg->mode))
            fail_access(a, "page size");
        break;
    }
    case VMMU_TLB_FAULT:
        switch (r->fault.vector) {
        case VMMU_X86_VEC_PF: {
            uint32_t ec = r->fault.error_code;
            bool user = pg->cpl == 3 && !(a->access & VMMU_X86_ACC_IMPLICIT);
            if (noncanonical)
                fail_access(a, "#PF for a non-canonical address");
            if ((ec & ~0x3fu) || ((ec & VMMU_X86_PF_RSVD) && !(ec & VMMU_X86_PF_P)) ||
                !(ec & VMMU_X86_PF_W) != !write || !(ec & VMMU_X86_PF_U) != !user ||
                ((ec & VMMU_X86_PF_I) && !(a->access & VMMU_X86_ACC_FETCH)) ||
                ((ec & VMMU_X86_PF_PK) && (a->access & VMMU_X86_ACC_FETCH)))
                fail_access(a, "#PF error code");
            if (r->fault.cr2 != a->lin)
                fail_access(a, "CR2 is not the linear address");
            break;
        }
        case VMMU_X86_VEC_GP:
        case VMMU_X86_VEC_SS:
            if (!noncanonical || r->fault.error_code != 0 ||
                (r->fault.vector == VMMU_X86_VEC_SS) != !!(a->access & VMMU_X86_ACC_STACK))
                fail_access(a, "#GP/#SS");
            break;
        default:
            fail_access(a, "fault vector");
        }
        break;
    case VMMU_TLB_CROSSES:
        break;
    default:
        fail_access(a, "unexpected status");
    }
    if (noncanonical && !crosses &&
        !(r->status == VMMU_TLB_FAULT &&
          (r->fault.vector == VMMU_X86_VEC_GP || r->fault.vector == VMMU_X86_VEC_SS)))
        fail_access(a, "a non-canonical address did not fault with #GP/#SS");
}

/* Each entry the walk read now holds what the walk says the CPU leaves
 * there: A on every level and D on a write's leaf after a translation,
 * nothing new after a fault.  An entry the walk used at two levels (page
 * tables that point into themselves) holds the updates of both. */
static void check_accessed_dirty(const struct access *a)
{
    const struct vmmu_x86_walk *w = &a->walk;
    for (unsigned i = 0; i < w->nlevels; i++) {
        const struct vmmu_x86_walk_level *l = &w->levels[i];
        /* No host: ROM, or a PAE PDPTE register, whose gpa names the
         * memory it was loaded from but whose value need not be that
         * memory's now. */
        if (!l->host)
            continue;
        uint64_t want = 0;
        for (unsigned j = 0; j < w->nlevels; j++)
            if (w->levels[j].host && w->levels[j].gpa == l->gpa)
                want |= w->ok ? w->levels[j].new_value : w->levels[j].value;
        uint64_t now;
        if (l->size == 4) {
            uint32_t v;
            memcpy(&v, l->host, 4);
            now = v;
        } else {
            memcpy(&now, l->host, 8);
        }
        if (now != want) {
            char what[160];
            snprintf(what, sizeof(what),
                     "level %u entry at gpa %#llx holds %#llx, the walk leaves %#llx", l->level,
                     (unsigned long long)l->gpa, (unsigned long long)now,
                     (unsigned long long)want);
            fail_access(a, what);
        }
        n_ad++;
    }
}

/* The TLB against the walk (taken before the access). */
static void check_agrees(const struct access *a)
{
    const struct vmmu_tlb_result *r = &a->res;
    const struct vmmu_x86_walk *w = &a->walk;
    bool write = (a->access & VMMU_X86_ACC_WRITE) != 0;

    if (r->status == VMMU_TLB_CROSSES)
        return; /* decided before any walk; check_consistent() checked it */
    n_compared++;
    if (!w->ok) {
        if (r->status != VMMU_TLB_FAULT || r->fault.vector != w->fault.vector ||
            r->fault.error_code != w->fault.error_code || r->fault.cr2 != w->fault.cr2)
            fail_access(a, "the walk faults, the TLB does not agree");
        n_faults++;
        check_accessed_dirty(a);
        return;
    }
    struct place p = place_of(w->gpa, write);
    if (r->status != p.status || a->host != p.host)
        fail_access(a, "status or host pointer differs from the walk's translation");
    if (a->slow && (r->gpa != w->gpa || r->type != p.type || r->region_id != p.region_id ||
                    r->page_size != w->page_size))
        fail_access(a, "gpa, type, region or page size differs from the walk's translation");
    if (p.status == VMMU_TLB_OK)
        n_ok++;
    else
        n_not_ram++;
    check_accessed_dirty(a);
}

static void check_stats(void)
{
    struct vmmu_tlb_stats s;
    uint64_t now[NSTATS];
    if (vmmu_vcpu_stats(vcpu, &s) != 0)
        fail("vmmu_vcpu_stats failed");
    memcpy(now, &s, sizeof(now));
    for (unsigned i = 0; i < NSTATS; i++)
        if (now[i] < last_stats[i])
            fail("statistics counter %u went down from %llu to %llu", i,
                 (unsigned long long)last_stats[i], (unsigned long long)now[i]);
    memcpy(last_stats, now, sizeof(now));
    if (mmio_calls)
        fail("an MMIO callback ran");
}

/* ---- Operations --------------------------------------------------------- */

static uint64_t pick_va(struct reader *r)
{
    unsigned sel = (unsigned)take(r, 1);
    uint64_t va;
    switch (sel >> 6) {
    case 0: /* anything */
        va = take(r, 8);
        break;
    case 1: /* canonical for 4-level (or, with bit 0, 5-level) paging */
        va = take(r, 8);
        va = (sel & 1) ? (uint64_t)((int64_t)(va << 7) >> 7)
                       : (uint64_t)((int64_t)(va << 16) >> 16);
        break;
    case 2: /* low: paging off, and large pages that map from gpa 0 */
        va = take(r, 4) & 0x3fffff;
        break;
    default: /* a recent address's page again, at another offset */
        va = (ring[sel & (RING - 1)] & ~0xfffull) | (take(r, 2) & 0xfff);
        break;
    }
    return va;
}

static unsigned pick_size(struct reader *r, unsigned cls)
{
    static const unsigned small[] = {1, 2, 4, 8, 16};
    switch (cls & 3) {
    case 0:
        return small[take(r, 1) % 5];
    case 1:
        return 8;
    case 2:
        return 1 + (unsigned)(take(r, 2) % 4096);
    default:
        return 4;
    }
}

static enum vmmu_tlb_kind kind_of(unsigned access)
{
    if (access & VMMU_X86_ACC_WRITE)
        return VMMU_TLB_WRITE;
    return (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH : VMMU_TLB_READ;
}

/* The inline hit path in the form @method names; NULL on a miss. */
static void *inline_hit(unsigned method, uint64_t lin, unsigned size, unsigned access)
{
    enum vmmu_tlb_kind kind = kind_of(access);
    if (access & VMMU_X86_ACC_IMPLICIT)
        return vmmu_tlb_lookup_implicit(vcpu, lin, size, kind);
    if (method == 3) {
        void *host = NULL;
        if (!vmmu_tlb_probe(vmmu_tlb_view(vcpu), lin, size, kind, &host))
            return NULL;
        if (!host)
            fail("vmmu_tlb_probe hit with a NULL host pointer at va %#llx",
                 (unsigned long long)lin);
        return host;
    }
    switch (kind) {
    case VMMU_TLB_WRITE:
        return vmmu_tlb_lookup_write(vcpu, lin, size);
    case VMMU_TLB_FETCH:
        return vmmu_tlb_lookup_fetch(vcpu, lin, size);
    default:
        return vmmu_tlb_lookup_read(vcpu, lin, size);
    }
}

static void do_access(uint64_t va, unsigned size, unsigned access, unsigned method)
{
    const struct vmmu_x86_paging *pg = pg_now();
    struct access a;
    memset(&a, 0, sizeof(a));
    a.va = va;
    a.lin = pg->mode < VMMU_X86_MODE_4LEVEL ? (va & 0xffffffffull) : va;
    a.size = size;
    a.access = access;
    a.method = method;
    ring[ring_next++ % RING] = a.lin;

    /* The walk first: the access sets A/D bits, which a later walk sees. */
    if (vmmu_x86_walk_peek(pg, va, access, &a.walk) != 0)
        fail("vmmu_x86_walk_peek failed for va %#llx access %#x", (unsigned long long)va,
             access);

    last_nlevels = 0;
    for (unsigned i = 0; i < a.walk.nlevels; i++) {
        const struct vmmu_x86_walk_level *l = &a.walk.levels[i];
        if (l->host && l->gpa + l->size <= RAM_SIZE)
            last_levels[last_nlevels++] = (struct last_level){l->gpa, l->size};
    }

    /* Fields the slow path does not set stay poisoned; flags is the mark. */
    memset(&a.res, 0xa5, sizeof(a.res));
    a.res.flags = ~0ull;
    bool small = size <= VMMU_TLB_ACCESS_MAX && !(size & (size - 1));
    void *host = NULL;
    if (method >= 2 && small)
        host = inline_hit(method, a.lin, size, access);
    if (host) {
        a.res.status = VMMU_TLB_OK;
        a.res.host = host;
    } else if (method == 0) {
        host = vmmu_tlb_translate(vcpu, va, size, access, &a.res);
    } else {
        host = vmmu_tlb_fill(vcpu, va, size, access, &a.res);
    }
    a.host = host;
    a.slow = a.res.flags != ~0ull;
    if (!a.slow)
        n_inline++;
    if (a.slow && a.res.status == VMMU_TLB_OK && a.res.host != host)
        fail_access(&a, "returned host pointer differs from res->host");

    check_consistent(&a);
    if (stale)
        n_stale++;
    else
        check_agrees(&a);
}

static void op_access(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    unsigned access = b & VMMU_X86_ACC_ALL;
    if ((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH))
        access &= ~VMMU_X86_ACC_FETCH;
    unsigned size = pick_size(r, b >> 6);
    uint64_t va = pick_va(r);
    do_access(va, size, access, (b >> 4) & 3);
}

/* The guest (or a device) writes guest memory behind the TLB's back:
 * anywhere, or into an entry the last walk used (flipping a bit that
 * matters, or XORing a pattern), which is where staleness shows. */
static void op_write_memory(struct reader *r)
{
    static const uint8_t bits[] = {0, 1, 2, 5, 6, 7, 8, 12, 13, 14, 15, 59, 63, 3, 4, 9};
    unsigned b = (unsigned)take(r, 1);
    if ((b & 3) && last_nlevels) {
        const struct last_level *l = &last_levels[take(r, 1) % last_nlevels];
        uint64_t x = (b & 3) == 1 ? 1ull << bits[take(r, 1) % sizeof(bits)] : take(r, 8);
        if (b & 4)
            x &= ~TAME_MASK_64;
        if (l->size == 4) {
            uint32_t v;
            memcpy(&v, ram + l->gpa, 4);
            v ^= (uint32_t)x;
            memcpy(ram + l->gpa, &v, 4);
        } else {
            uint64_t v;
            memcpy(&v, ram + l->gpa, 8);
            v ^= x;
            memcpy(ram + l->gpa, &v, 8);
        }
        stale = true;
        return;
    }
    unsigned off = (unsigned)take(r, 2);
    uint64_t v = take(r, 8);
    if (b & 4)
        v &= ~TAME_MASK_64; /* stays inside the RAM (and keeps 32-bit entries low) */
    if (b & 8) {
        off &= 4096 - 8;
        memcpy(rom + off, &v, (b & 16) ? 4 : 8);
    } else {
        off &= RAM_SIZE - 8;
        memcpy(ram + off, &v, 8);
    }
    stale = true;
}

/* The TLB just dropped every translation it held. */
static void everything_dropped(void)
{
    stale = false;
}

/* Whether the registers now let no global translation exist and every
 * cached translation belongs to PCID 0: then dropping PCID 0's non-global
 * translations and paging-structure caches drops everything.  (Global
 * entries exist only while CR4.PGE=1, and every change of PGE, and
 * PCIDE 1 -> 0, flushes everything.) */
static bool only_pcid0_nonglobal(void)
{
    return !(pg_now()->cr4 & (VMMU_X86_CR4_PGE | VMMU_X86_CR4_PCIDE));
}

/* After a register write that took effect: @flushed_all says whether it
 * dropped every translation (docs/tlb.md, "Invalidation"), else a reload
 * of the PAE PDPTE registers that changed them leaves translations
 * cached from the old ones. */
static void after_register_write(const uint64_t old_pdpte[4], bool flushed_all)
{
    const struct vmmu_x86_paging *pg = pg_now();
    if (flushed_all)
        everything_dropped();
    else if (memcmp(old_pdpte, pg->pdpte, sizeof(pg->pdpte)) != 0)
        stale = true;
}

static bool took_effect(int rc, const struct vmmu_x86_fault *f)
{
    if (rc != 0 && rc != VMMU_EPAGEDOUT)
        fail("register write returned %d", rc);
    return rc == 0 && f->vector == VMMU_X86_FAULT_NONE;
}

static void op_invlpg(struct reader *r)
{
    if (vmmu_vcpu_invlpg(vcpu, pick_va(r)) != 0)
        fail("vmmu_vcpu_invlpg failed");
}

static void op_invpcid(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    unsigned type = (b & 7) ? (b & 3) : 4 + ((b >> 3) & 1); /* mostly 0..3, now and then invalid */
    uint64_t pcid = take(r, 2) & ((b & 0x80) ? 0xffff : 0xfff);
    if (b & 0x40)
        pcid &= 3; /* the PCIDs constructed states use most */
    uint64_t va = pick_va(r);
    bool pcide = (pg_now()->cr4 & VMMU_X86_CR4_PCIDE) != 0;
    bool pge = (pg_now()->cr4 & VMMU_X86_CR4_PGE) != 0;
    struct vmmu_x86_fault f;
    if (vmmu_vcpu_invpcid(vcpu, type, pcid, va, &f) != 0)
        fail("vmmu_vcpu_invpcid failed");
    if (f.vector != VMMU_X86_FAULT_NONE)
        return;
    /* Type 2 drops everything; types 3 and (with PCIDE=0, so PCID 0) 1
     * drop every non-global translation of every PCID that can hold any. */
    if (type == VMMU_INVPCID_ALL_GLOBAL ||
        (!pge && (type == VMMU_INVPCID_ALL_NONGLOBAL ||
                  (type == VMMU_INVPCID_SINGLE && !pcide))))
        everything_dropped();
}

static void op_cr3(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    uint64_t v = take(r, 2);
    const struct vmmu_x86_paging *pg = pg_now();
    uint64_t old_cr3 = pg->cr3, old_pdpte[4];
    memcpy(old_pdpte, pg->pdpte, sizeof(old_pdpte));
    uint64_t value;
    if (b & 1) {
        value = take(r, 8); /* raw */
    } else if (pg->cr4 & VMMU_X86_CR4_PCIDE) {
        /* A root in the RAM, a PCID (mostly small, so that slots are reused). */
        uint64_t pcid = (b & 2) ? (v >> 12 & 3) : (take(r, 2) & 0xfff);
        value = (v & 0xf000) | pcid;
        if (b & 4)
            value = (old_cr3 & ~0xfffull) | pcid; /* same root, another PCID */
    } else {
        value = v & 0xffff;
        value &= pg->mode == VMMU_X86_MODE_PAE ? 0xffe0 : 0xf018;
        if (b & 4)
            value = old_cr3;
    }
    if (b & 8)
        value |= VMMU_X86_CR3_NOFLUSH;
    struct vmmu_x86_fault f;
    if (!took_effect(vmmu_vcpu_set_cr3(vcpu, value, &f), &f))
        return;
    pg = pg_now();
    /* With PCIDE=0 and PGE=0 a MOV to CR3 drops everything.  Otherwise
     * global translations (and other PCIDs') of the old root survive: a
     * new root makes them possibly wrong, and so do new PDPTEs. */
    bool pcide = (pg->cr4 & VMMU_X86_CR4_PCIDE) != 0;
    uint64_t keep = pcide ? ~0xfffull : ~0ull;
    if (only_pcid0_nonglobal())
        everything_dropped();
    else if ((old_cr3 & keep) != (pg->cr3 & keep) ||
             memcmp(old_pdpte, pg->pdpte, sizeof(old_pdpte)) != 0)
        stale = true;
}

static void op_cr4(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    const struct vmmu_x86_paging *pg = pg_now();
    uint64_t old = pg->cr4, old_pdpte[4];
    memcpy(old_pdpte, pg->pdpte, sizeof(old_pdpte));
    uint64_t bit = cr4_bits[(b & 0x7f) % (sizeof(cr4_bits) / sizeof(cr4_bits[0]))];
    uint64_t value = (b & 0x80) ? take(r, 8) : old ^ bit;
    struct vmmu_x86_fault f;
    if (!took_effect(vmmu_vcpu_set_cr4(vcpu, value, &f), &f))
        return;
    uint64_t now = pg_now()->cr4, changed = old ^ now;
    bool all = (changed & (VMMU_X86_CR4_PGE | VMMU_X86_CR4_PAE | VMMU_X86_CR4_PSE |
                           VMMU_X86_CR4_LA57)) ||
               ((changed & VMMU_X86_CR4_PCIDE) && !(now & VMMU_X86_CR4_PCIDE));
    after_register_write(old_pdpte, all);
}

static void op_cr0(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    const struct vmmu_x86_paging *pg = pg_now();
    uint64_t old = pg->cr0, old_pdpte[4];
    memcpy(old_pdpte, pg->pdpte, sizeof(old_pdpte));
    uint64_t bit = cr0_bits[(b & 0x7f) % (sizeof(cr0_bits) / sizeof(cr0_bits[0]))];
    uint64_t value = (b & 0x80) ? take(r, 8) : old ^ bit;
    struct vmmu_x86_fault f;
    if (!took_effect(vmmu_vcpu_set_cr0(vcpu, value, &f), &f))
        return;
    after_register_write(old_pdpte, ((old ^ pg_now()->cr0) & VMMU_X86_CR0_PG) != 0);
}

static void op_efer(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    const struct vmmu_x86_paging *pg = pg_now();
    uint64_t old = pg->efer, old_pdpte[4];
    memcpy(old_pdpte, pg->pdpte, sizeof(old_pdpte));
    uint64_t value = (b & 0x80) ? take(r, 8)
                     : (b & 1)  ? old ^ VMMU_X86_EFER_LME
                                : old ^ VMMU_X86_EFER_NXE;
    struct vmmu_x86_fault f;
    if (!took_effect(vmmu_vcpu_set_efer(vcpu, value, &f), &f))
        return;
    /* docs/tlb.md: an NXE change drops everything. */
    after_register_write(old_pdpte, ((old ^ pg_now()->efer) & VMMU_X86_EFER_NXE) != 0);
}

static void op_keys(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    uint64_t v = take(r, 4);
    if (b & 2)
        v &= 0xff; /* keys 0..3, the ones taming leaves in entries */
    if (b & 4)
        v |= take(r, 4) << 32; /* PKRS: reserved bits */
    struct vmmu_x86_fault f;
    int rc = (b & 1) ? vmmu_vcpu_set_pkrs(vcpu, v, &f) : vmmu_vcpu_set_pkru(vcpu, (uint32_t)v, &f);
    (void)took_effect(rc, &f);
}

static void op_cpl_rflags(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    if (b & 1) {
        int rc = vmmu_vcpu_set_cpl(vcpu, (b >> 1) & 7);
        if (rc != (((b >> 1) & 7) > 3 ? VMMU_EINVAL : 0))
            fail("vmmu_vcpu_set_cpl(%u) returned %d", (b >> 1) & 7, rc);
        return;
    }
    uint64_t v = (b & 2) ? take(r, 8) : (pg_now()->rflags ^ VMMU_X86_RFLAGS_AC);
    if (vmmu_vcpu_set_rflags(vcpu, v) != 0)
        fail("vmmu_vcpu_set_rflags failed");
}

/* Drop everything: the host's flush, or a state load (VM entry). */
static void op_flush(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    if (b & 1) {
        if (vmmu_vcpu_tlb_flush_all(vcpu) != 0)
            fail("vmmu_vcpu_tlb_flush_all failed");
        everything_dropped();
        return;
    }
    /* Reload the current registers (PAE: with their PDPTE registers, or
     * reading the PDPT again with b & 4), or others (then the PDPTEs are
     * read from the new PDPT). */
    struct vmmu_x86_regs regs;
    if (vmmu_x86_get_state(pg_now(), &regs) != 0)
        fail("vmmu_x86_get_state failed");
    if (b & 4)
        regs.flags = 0;
    if (b & 2) {
        regs.cr3 = (regs.cr3 & ~0xf000ull) | (take(r, 1) & 0xf) << 12;
        regs.cpl = (unsigned)take(r, 1) & 3;
        regs.flags = 0;
    }
    int rc = vmmu_vcpu_set_state(vcpu, &regs);
    if (rc == 0)
        everything_dropped();
    else if (rc != VMMU_EINVAL)
        fail("vmmu_vcpu_set_state returned %d", rc);
}

/* The host marks a RAM page as holding translated code, or no longer. */
static void op_code(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    unsigned page = b & (RAM_PAGES - 1);
    if (b & 0x80) {
        struct vmmu_gpa_range range = {page * 4096ull, 4096};
        if (vmmu_page_state_change(vm, &range, 1, 0, VMMU_PAGE_CODE) != 0)
            fail("vmmu_page_state_change failed");
        code_pages &= (uint16_t)~(1u << page);
    } else {
        if (vmmu_code_mark(vm, page * 4096ull, 1) != 0)
            fail("vmmu_code_mark failed");
        code_pages |= (uint16_t)(1u << page);
    }
}

/* Arguments the slow path must refuse, changing nothing. */
static void op_bad_arguments(struct reader *r)
{
    unsigned b = (unsigned)take(r, 1);
    uint64_t va = pick_va(r);
    unsigned size = 4, access = 0;
    switch (b & 3) {
    case 0:
        size = 0;
        break;
    case 1:
        size = 4097 + (unsigned)take(r, 2);
        break;
    case 2:
        access = VMMU_X86_ACC_WRITE | VMMU_X86_ACC_FETCH;
        break;
    default:
        access = VMMU_X86_ACC_ALL + 1 + (unsigned)take(r, 1);
        break;
    }
    struct vmmu_tlb_result res;
    memset(&res, 0, sizeof(res));
    void *host = vmmu_tlb_fill(vcpu, va, size, access, &res);
    if (host || res.status != VMMU_TLB_ERROR || res.error != VMMU_EINVAL)
        fail("vmmu_tlb_fill(va %#llx, size %u, access %#x) accepted bad arguments: status %d, "
             "error %d", (unsigned long long)va, size, access, (int)res.status, res.error);
}

static void run_op(struct reader *r)
{
    unsigned op = (unsigned)take(r, 1) % 20;
    switch (op) {
    case 0: case 1: case 2: case 3: case 4: case 5:
        op_access(r);
        break;
    case 6:
    case 7:
        op_write_memory(r);
        break;
    case 8:
        op_invlpg(r);
        break;
    case 9:
        op_invpcid(r);
        break;
    case 10:
        op_cr3(r);
        break;
    case 11:
        op_cr4(r);
        break;
    case 12:
        op_cr0(r);
        break;
    case 13:
        op_efer(r);
        break;
    case 14:
        op_keys(r);
        break;
    case 15:
        op_cpl_rflags(r);
        break;
    case 16:
        op_flush(r);
        break;
    case 17:
        op_code(r);
        break;
    case 18:
        op_bad_arguments(r);
        break;
    default: /* an access to a recent page at another offset */
        do_access((ring[take(r, 1) & (RING - 1)] & ~0xfffull) | (take(r, 2) & 0xfff),
                  1u << (take(r, 1) & 3), (unsigned)take(r, 1) & VMMU_X86_ACC_WRITE, 0);
        break;
    }
    check_stats();
}

/* ---- The input ------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();

    struct reader in = {data, size};
    struct header h;
    read_header(&in, &h);
    struct reader ops = {in.p, h.ops_len < in.n ? h.ops_len : in.n};
    const uint8_t *image = in.p + ops.n;
    size_t image_len = in.n - ops.n;

    /* Guest memory: the image repeated over the RAM, so that every table a
     * walk reaches holds the input's bytes. */
    memset(ram, 0, RAM_SIZE);
    for (size_t off = 0; image_len && off < RAM_SIZE; off += image_len)
        memcpy(ram + off, image, image_len < RAM_SIZE - off ? image_len : RAM_SIZE - off);
    struct vmmu_x86_regs regs;
    regs_from(&h, &regs);
    bool paging32 = (regs.cr0 & VMMU_X86_CR0_PG) && !(regs.cr4 & VMMU_X86_CR4_PAE);
    if (h.how & HOW_TAME)
        tame(ram, RAM_SIZE, paging32);
    if (!(h.how & HOW_RAW) && (regs.cr4 & VMMU_X86_CR4_PAE) && !(regs.efer & VMMU_X86_EFER_LMA)) {
        /* PAE paging: PDPTEs the state load accepts. */
        for (unsigned i = 0; i < 4; i++) {
            uint64_t e, at = (regs.cr3 & 0xffe0) + 8 * i;
            memcpy(&e, ram + at, 8);
            e &= ~PDPTE_RSVD;
            memcpy(ram + at, &e, 8);
        }
    }
    memcpy(rom, ram, 4096);

    /* Every input starts from the same state: no code pages, the RESET
     * registers, then the input's, and an empty TLB. */
    struct vmmu_gpa_range all = {0, RAM_SIZE};
    if (vmmu_page_state_change(vm, &all, 1, 0, VMMU_PAGE_CODE) != 0)
        abort();
    code_pages = 0;
    struct vmmu_x86_regs reset = {.cr0 = 0x60000010ull, .rflags = 2};
    if (vmmu_vcpu_set_state(vcpu, &reset) != 0)
        abort();
    if (h.how & HOW_SETTERS)
        load_by_setters(&regs);
    else
        (void)vmmu_vcpu_set_state(vcpu, &regs); /* an impossible state stays at RESET */
    if (vmmu_vcpu_tlb_flush_all(vcpu) != 0)
        abort();
    everything_dropped();
    memset(ring, 0, sizeof(ring));
    ring_next = 0;
    last_nlevels = 0;
    check_stats();

    for (unsigned i = 0; i < MAX_OPS && ops.n; i++)
        run_op(&ops);
    return 0;
}
