/* SPDX-License-Identifier: MIT */
/* Randomized model test of cross-vCPU invalidation: 3 or 4 vCPUs of one vm,
 * in one paging mode per seed (CR4.PGE, SMEP, SMAP and CR0.WP always;
 * EFER.NXE where XD exists), share guest page tables, and one seeded
 * stream drives them all.  The modes take turns by seed (seed 1 first):
 *   - 4-level paging with CR4.PCIDE=1: root p runs as PCID p;
 *   - 4-level paging with CR4.PCIDE=0: every root is PCID 0, every MOV to
 *     CR3 drops PCID 0's non-global entries and caches, and requests that
 *     name a PCID mostly name PCID 0;
 *   - 5-level paging (CR4.LA57) with PCIDs: regions above 2^47 and 2^48,
 *     a PML5E on every walk;
 *   - PAE paging: the walk starts at the vCPU's four PDPTE registers, which
 *     only MOV to CR3 (here) loads; the guest edits PDPTEs in memory, and a
 *     walk must not see the edit until then;
 *   - 32-bit paging: two levels of 4-byte entries, 4 MiB pages (CR4.PSE),
 *     global pages, no XD.
 * What differs between them is one table (struct mode) that the
 * evaluator, the table builder and the edit stream read.
 * VMMU_SYNC_MODEL_MODE=<name or index> runs every seed in one mode.
 *
 * Each vCPU has a host thread of its own, run in lockstep by the main
 * thread: one command at a time, and the main thread waits for it to
 * complete.  An online vCPU that has no command calls
 * vmmu_vcpu_safepoint() every 100 us or so, so synchronous shootdowns
 * and host changes find it; when it acts on an asynchronous request is
 * the only thing the stream does not decide, and nothing checked depends
 * on it.
 *
 * The stream:
 *   - accesses by one vCPU (read, write, fetch; implicit supervisor reads
 *     and writes; CPL 0 or 3 and EFLAGS.AC 0 or 1, so all three TLB
 *     contexts), through vmmu_tlb_translate(), the inline
 *     vmmu_tlb_lookup_read/write/fetch/implicit() and vmmu_tlb_probe()
 *     (then vmmu_tlb_fill() on a miss), or vmmu_tlb_fill() alone;
 *   - guest page-table edits, made by the main thread in the shared
 *     tables: leaves rewritten, retargeted, one attribute flipped (P, R/W,
 *     U/S, XD, G), A and D cleared; region A's PDE rights; region B's PDE
 *     flipping between a large page (2 MiB, 4 MiB in 32-bit paging) and a
 *     table; region D's PDPTE flipping between a 1 GiB page and a
 *     directory (32-bit paging: its PDE, between a 4 MiB page and a table;
 *     PAE paging: its PDPTE in memory, present or not, an ignored bit
 *     flipped); region E's top-level entry (PML5E, PML4E, PDPTE, PDE)
 *     with new rights.  An edit of an entry that each root has a copy of
 *     (a top-level entry of a shared region) writes every root's copy,
 *     one after the other, as kernels keep such entries equal;
 *   - local invalidations by one vCPU: INVLPG, INVPCID 0-3 (a few at CPL 3,
 *     which must #GP and drop nothing; without PCIDs, type 0 or 1 naming a
 *     PCID other than 0 must #GP too), MOV to CR3 with and without the
 *     no-flush bit (without PCIDs: never with it),
 *     vmmu_vcpu_tlb_flush_all(), vmmu_flush_local();
 *   - vmmu_shootdown_sync() and vmmu_shootdown_async() of every request
 *     type (ALL; CONTEXTS with random context bits; PCID, also of PCIDs
 *     nobody uses; RANGE of 1-3 pages or of 17-40, in one PCID or
 *     VMMU_FLUSH_ANY_PCID, from an unaligned address now and then), self a
 *     vCPU or NULL (then the main thread issues it), targets NULL or a set
 *     with or without self, with ids no vCPU has, or empty;
 *   - the patterns guests use them in: a page remapped, then shot down;
 *     a target that used some pages (and often went offline) getting one
 *     asynchronous RANGE per remapped page, which merge, then using them
 *     again; a target that switched to another PCID without flushing
 *     getting its old PCID flushed remotely (by PCID, range or contexts;
 *     or INVLPG in the new PCID, for global pages), then switching back
 *     without flushing; bursts of asynchronous requests to one target
 *     (often offline) past 8 PCIDs or 16 pages;
 *   - safe points, and vCPUs going offline and online (briefly: a vCPU
 *     that comes back to everything posted meanwhile flushes everything);
 *   - host changes from the main thread, while some vCPUs are offline or
 *     not: pages marked as code and unmarked (vmmu_page_state_change),
 *     dirty logging on and off and its log read (now and then between two
 *     writes of one vCPU to a page it maps), a second region replaced by
 *     new RAM, ROM or MMIO, removed and added back, and a paranoid pager
 *     paging data and page-table pages out and in, ballooning data pages
 *     out and in, and keeping a resident limit (half the pages these take
 *     are pages the hot linear pages map).
 * Most accesses and edits go to six hot pages, in pairs that share a TLB
 * index (so the victim arrays are used), so that translations are reused
 * and edited while cached.
 *
 * What is checked.  Every page-table entry the tracked pages' walks read
 * has a log of the values it held and when.  For each vCPU the model keeps,
 * per tracked page, PCID, context and paging level, the oldest time the
 * TLB's non-global entries may have taken that level's value from; the
 * same per page, context and level for global entries; and per PCID and
 * upper-level entry, the same for the paging-structure caches.  An access
 * may fill from those caches, so after it the entries' bounds are no newer
 * than the caches' (a fill every allowed translation of which is global
 * is a global entry, and only the global bounds move).  An invalidation
 * that covers something lifts its bound to "nothing held".  So an access's answer may be built from the values
 * each entry of its walk held since that level's bound: when no entry was
 * written since, the answer must be exactly what vmmu_x86_walk_peek() gives
 * now (the same fault and error code, or the same host byte, memory type
 * and status) and the walk's entries must hold the accessed and dirty bits
 * the walk says a CPU leaves; otherwise it must be the answer of one of
 * those combinations of old values (which catches garbage as well as
 * missed drops).  A small evaluator of translation in each mode computes
 * the old combinations; on every access it must agree with the walker on
 * the current tables.  In PAE paging the top "entry" of a walk is the
 * vCPU's PDPTE register, logged like an entry but written only when MOV
 * to CR3 loads it: the registers must hold what the last load read (SDM
 * 4.4.1: MOV to CR3 in PAE paging loads them; so do MOV to CR0/CR4
 * changing CD, NW, PG, PAE, PGE, PSE or SMEP, which the stream does not
 * make; INVLPG, INVPCID, shootdowns and host changes do not), and a stale
 * translation may come from an older register value (global entries
 * survive the MOV to CR3 that loaded new ones).  Accessed and dirty bits
 * of an entry that each root has a copy of may be in another root's copy:
 * a global translation filled there is used in every root.  Whatever the
 * guest tables allow, the guest-physical map is never allowed to be stale: the answer's host address is that of the
 * current map, a host pointer never points into a page that is out, a
 * write to a code page is reported (and to no other), a write to a logged
 * page marks it dirty, and a data page holds its contents.
 *
 * When an invalidation takes effect:
 *   - the architectural ones, vmmu_vcpu_tlb_flush_all() and
 *     vmmu_flush_local(): at once, for that vCPU only (SDM 4.10.4.1: INVLPG
 *     drops the page in the current PCID, its global entries, and every
 *     paging-structure-cache entry of the current PCID; INVPCID 0 the
 *     page's non-global entries in that PCID and, in the weakest reading,
 *     the cache entries used to translate it; 1 and a flushing MOV to CR3
 *     the PCID's non-global entries and caches; 2 everything; 3 every
 *     PCID's non-global entries and caches).  With CR4.PCIDE=0 the
 *     current PCID is always 0 (SDM 4.10.1), so MOV to CR3 always drops
 *     PCID 0's non-global entries and caches and keeps global ones
 *     (4.10.4.1), and INVPCID 0/1 are allowed for PCID 0 only, 2/3 act on
 *     PCID 0 (SDM Vol. 2 INVPCID);
 *   - a request's part for its self vCPU: at once;
 *   - a synchronous request's part for an online target: when it returns;
 *   - anything else (asynchronous, or to an offline target): only at the
 *     target's next vmmu_vcpu_safepoint() command, its next
 *     vmmu_vcpu_online(), or its next shootdown as self; and then only what
 *     it held when the request was posted (entries it filled since may
 *     come from caches the request did not drop, so their bounds are kept
 *     per posting and applied then).
 * What a request drops (sync.h, docs/sync.md, src/sync/sync.c): ALL
 * everything; CONTEXTS the entries of those contexts in every PCID, global
 * ones too, but no paging-structure cache; PCID that PCID's non-global
 * entries and its caches; RANGE the pages' entries in the PCID it names
 * (every PCID with VMMU_FLUSH_ANY_PCID), their global entries, and the
 * caches of the PCIDs it names.  Without PCIDs everything a vCPU holds is
 * PCID 0's: a request naming another PCID drops only what RANGE drops in
 * every PCID (the pages' global entries).  Where the documents leave room
 * the test takes the weakest reading: a RANGE of more than 16 pages
 * counts for its pages only (vmmu flushes everything), a RANGE in one
 * PCID for that PCID only (vmmu drops the pages in every PCID), a
 * synchronous request does not stand for earlier asynchronous ones to the
 * same target, and host changes drop nothing the guest tables made stale
 * (nor load PDPTE registers).  (Outside IA-32e paging INVPCID 0 gets
 * 32-bit addresses only; vmmu takes the descriptor's whole address there,
 * as the SDM says, and test_tlb_rules checks one above 4 GiB.)  Merging
 * is checked where it is certain: requests posted to an offline vCPU that
 * add up to more than 8
 * PCIDs or 16 pages must make it flush everything when it comes online
 * (vmmu_tlb_stats::flush_all).
 *
 * Layout (guest-physical): RAM owned by the test at 0 (4 MiB; the large
 * pages of regions B and D map it), page tables in a vmmu-allocated region
 * at 8 MiB (the pager may take them), 32 data pages at 16 MiB (each holds
 * its identity in its first 8 bytes), a second region of 8 pages at
 * 24 MiB, a hole at 64 MiB.  Linear: region A (16 pages under one table,
 * its PDE's rights edited), B (12 pages under a PDE that flips between a
 * large page and a table), C (6 pages private to each root, never
 * global), D (6 pages under the entry described above) and E (6 pages at
 * the top of the address space); six roots, whose tables below the top
 * level for A, B, D and E are shared (32-bit paging: only the page
 * tables; PAE paging: the directories and tables).  Where each region is
 * in each mode: the table `modes`.  Some tracked pages are neighbours
 * (for ranges) and some share a TLB index.
 *
 * Not checked here: anything that needs two vCPUs to run at once (in
 * lockstep a target always finishes acting on a request before it runs
 * its next command, so a done generation published before the flush it
 * stands for goes unseen; torture_sync and test_sync_concurrent race
 * them), host changes or shootdowns made from a vCPU thread other than as
 * self, vCPUs destroyed and their ids reused, changes of paging mode or of
 * CR0/CR4 bits within a seed (so PDPTE loads by MOV to CR0/CR4), PAE
 * PDPTEs with reserved bits (a #GP at MOV to CR3), protection keys, and
 * paging off.
 *
 * A command that does not complete in 60 s fails the test (naming the
 * vCPU); a call of the main thread's that does not return in 90 s (a
 * shootdown waiting for an offline vCPU, say) makes a watchdog print the
 * seed and step and abort.
 *
 * VMMU_SYNC_MODEL_SEEDS=N runs N seeds (12 by default); VMMU_SYNC_MODEL_SEED=S
 * runs only seed S.  A failure names the seed, the step and the vCPU; the
 * stream is the seed's, but when a failure depends on the moment an idle
 * vCPU acted on a request, it may need a few runs to show again. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "test_tlb_env.h"

#define MAXV 4
#define NPCID 6 /* roots; with CR4.PCIDE=1 root p runs as PCID p, else every root is PCID 0 */
#define NCTX 3 /* USER, SUP, SUP_AC: the order of VMMU_FLUSH_CTX_* bits */
#define NLVL 5 /* most entries a walk reads (5-level paging); l = 0 is the top */
#define NA 16
#define NB 12
#define NC 6
#define ND 6
#define NE 6
#define NVA (NA + NB + NC + ND + NE)
#define IA 0
#define IB (IA + NA)
#define IC (IB + NB)
#define ID (IC + NC)
#define IE (ID + ND)
#define NSLOT 256    /* page-table entries on the tracked walks, and PDPTE registers */
#define MAXMARK 8    /* postings whose bounds a vCPU keeps until its next safe point */
#define MAXPEND 64   /* requests a vCPU may have outstanding in the model */
#define MAXW 48      /* values one entry may have had in a window */
#define MAXCOMBOS 100000
#define STEPS 3000
#define DEFAULT_SEEDS 12
#define INF UINT64_MAX

#define RAM0_SIZE (4 * MiB)
#define BIG_BASE (2 * MiB) /* region B's 2 MiB page */
#define LOW_DATA (1 * MiB) /* test-owned pages leaves may point at */
#define PT_GPA (8 * MiB)
#define PT_PAGES 48
#define DATA_GPA (16 * MiB)
#define NDATA 32
#define R2_GPA (24 * MiB)
#define R2_PAGES 8
#define HOLE_GPA (64 * MiB)
#define IDENT_TAG 0x5eed000000000000ull
#define AD_MASK (E_A | E_D)
#define UPPER (E_P | E_RW | E_US | E_A)

enum { CTX_USER = 0, CTX_SUP = 1, CTX_SUP_AC = 2 };

/* ---- Paging modes ------------------------------------------------------------ */

/* What differs between the paging modes a seed may run in, and nothing
 * else: every function below reads these fields rather than having a copy
 * per mode.  Levels are numbered as the SDM does (1: PTE, 2: PDE, ...);
 * a walk reads nlvl entries, the top one first (in PAE paging the top one
 * is a PDPTE register, not memory). */
struct mode {
    const char *name;
    enum mmode mm;     /* for mode_slot() and friends (test_tlb_env.h) */
    enum vmmu_x86_mode vm_mode;
    unsigned nlvl;     /* entries per walk: 5, 4, 3 (PDPTE register, PDE, PTE), 2 */
    unsigned esize;    /* bytes per entry in memory */
    bool pcid;         /* CR4.PCIDE=1 */
    bool regs;         /* the top level is the four PDPTE registers (PAE paging) */
    bool nx;           /* EFER.NXE=1: XD exists (not in 32-bit paging) */
    bool big3;         /* PDPTE.PS maps 1 GiB (IA-32e paging only) */
    unsigned big2;     /* log2 of a level-2 page: 21, or 22 (4 MiB, 32-bit with CR4.PSE) */
    uint64_t big2_gpa; /* where a level-2 large page maps */
    unsigned d_level;  /* level of region D's edited entry (a large page or a table; in
                        * PAE paging a PDPTE, present or not) */
    uint64_t base[5];  /* linear bases of regions A, B, C, D, E */
    uint64_t cr0, cr4, efer;
};

#define CR0_ON (R_CR0_PE | R_CR0_PG | R_CR0_WP)
#define CR4_ON (R_CR4_PGE | R_CR4_SMEP | R_CR4_SMAP)
#define EFER_LONG (R_EFER_LME | R_EFER_LMA | R_EFER_NXE)
enum { MD_4PCID, MD_4, MD_5, MD_PAE, MD_32, NMD };
static const struct mode modes[NMD] = {
    /* A: PD index 2; B: PD index 4; C: PML4 index 1; D: PDPT index 1;
     * E: PML4 index 511. */
    [MD_4PCID] = {.name = "4-level+PCID", .mm = M4, .vm_mode = VMMU_X86_MODE_4LEVEL, .nlvl = 4,
                  .esize = 8, .pcid = true, .nx = true, .big3 = true, .big2 = 21,
                  .big2_gpa = BIG_BASE, .d_level = 3,
                  .base = {0x00400000ull, 0x00800000ull, 0x8000000000ull, 0x40000000ull,
                           0xffffff8000000000ull},
                  .cr0 = CR0_ON, .cr4 = CR4_ON | R_CR4_PAE | R_CR4_PCIDE, .efer = EFER_LONG},
    [MD_4] = {.name = "4-level", .mm = M4, .vm_mode = VMMU_X86_MODE_4LEVEL, .nlvl = 4,
              .esize = 8, .nx = true, .big3 = true, .big2 = 21, .big2_gpa = BIG_BASE,
              .d_level = 3,
              .base = {0x00400000ull, 0x00800000ull, 0x8000000000ull, 0x40000000ull,
                       0xffffff8000000000ull},
              .cr0 = CR0_ON, .cr4 = CR4_ON | R_CR4_PAE, .efer = EFER_LONG},
    /* C under PML5 index 1 (bit 48 set) and D under PML4 index 256 (bit 47
     * set), both non-canonical in 4-level paging; E under PML5 index 511. */
    [MD_5] = {.name = "5-level+PCID", .mm = M5, .vm_mode = VMMU_X86_MODE_5LEVEL, .nlvl = 5,
              .esize = 8, .pcid = true, .nx = true, .big3 = true, .big2 = 21,
              .big2_gpa = BIG_BASE, .d_level = 3,
              .base = {0x00400000ull, 0x00800000ull, 0x0001000000000000ull,
                       0x0000800040000000ull, 0xffffff8000000000ull},
              .cr0 = CR0_ON, .cr4 = CR4_ON | R_CR4_PAE | R_CR4_PCIDE | R_CR4_LA57,
              .efer = EFER_LONG},
    /* A and B under PDPTE 0, D under PDPTE 1 (the PDPTE is what is edited),
     * C under PDPTE 2 (a directory per root), E under PDPTE 3. */
    [MD_PAE] = {.name = "PAE", .mm = MPAE, .vm_mode = VMMU_X86_MODE_PAE, .nlvl = 3, .esize = 8,
                .regs = true, .nx = true, .big2 = 21, .big2_gpa = BIG_BASE, .d_level = 3,
                .base = {0x00400000ull, 0x00800000ull, 0x80000000ull, 0x40000000ull,
                         0xffc00000ull},
                .cr0 = CR0_ON, .cr4 = CR4_ON | R_CR4_PAE, .efer = R_EFER_NXE},
    /* Every region has a PDE in each root; B's and D's flip between a 4 MiB
     * page (CR4.PSE) and a table. */
    [MD_32] = {.name = "32-bit", .mm = M32, .vm_mode = VMMU_X86_MODE_32, .nlvl = 2, .esize = 4,
               .big2 = 22, .big2_gpa = 0, .d_level = 2,
               .base = {0x00400000ull, 0x00800000ull, 0x80000000ull, 0x40000000ull,
                        0xffc00000ull},
               .cr0 = CR0_ON, .cr4 = CR4_ON | R_CR4_PSE, .efer = 0},
};

static const uint16_t pages_a[NA] = {0, 1, 2, 3, 256, 257, 37, 38, 100, 356, 200, 201, 202, 456,
                                     511, 255};
static const uint16_t pages_b[NB] = {0, 1, 2, 256, 131, 387, 50, 51, 306, 500, 10, 266};
static const uint16_t pages_c[NC] = {0, 1, 2, 256, 5, 261};
static const uint16_t pages_d[ND] = {0, 1, 71, 327, 142, 143};
static const uint16_t pages_e[NE] = {0, 1, 53, 309, 106, 107};
/* PCIDs requests name: the six the vCPUs use, then six nobody uses. */
static const uint16_t pcid_pool[12] = {0, 1, 2, 3, 4, 5, 17, 99, 300, 1000, 2047, 4095};

/* ---- The vCPU threads ------------------------------------------------------------ */

/* Where RAM is in the host, for the vCPU threads (copied into each access). */
struct hostmap {
    struct {
        uint64_t gpa, size;
        uint8_t *host;
        bool managed; /* vmmu's memory: the pager may take its pages */
    } r[4];
    unsigned n;
};

enum cmd_kind {
    CMD_START, CMD_ACCESS, CMD_INVLPG, CMD_INVPCID, CMD_CR3, CMD_FLUSH_ALL, CMD_FLUSH_LOCAL,
    CMD_SHOOT, CMD_SAFEPOINT, CMD_OFFLINE, CMD_ONLINE, CMD_EXIT,
};
static const char *const cmd_names[CMD_EXIT + 1] = {
    "start", "access", "INVLPG", "INVPCID", "MOV to CR3", "vmmu_vcpu_tlb_flush_all",
    "vmmu_flush_local", "shootdown", "vmmu_vcpu_safepoint", "vmmu_vcpu_offline",
    "vmmu_vcpu_online", "exit",
};

struct cmd {
    enum cmd_kind kind;
    uint64_t va, value, pcid;
    unsigned size, access, cpl, method, type;
    bool ac, sync;
    struct vmmu_flush f;
    const struct vmmu_cpuset *targets;
    struct vmmu_x86_regs regs;
    struct hostmap map;
};

struct reply {
    int rc, rc_regs;
    void *host;
    bool hit; /* answered by the inline hit path */
    struct vmmu_tlb_result res;
    struct vmmu_x86_fault fault;
    int walk_rc;
    struct vmmu_x86_walk w;
    int where; /* hostmap index of host, -1 if none */
    uint64_t host_gpa;
    bool paged_out, touched;
    uint64_t word0; /* the first 8 bytes of the page host points into */
    uint64_t flush_all_before, flush_all_after;
    enum vmmu_x86_mode mode; /* the vCPU's paging mode after the access */
    uint64_t pdpte[4];       /* and its PDPTE registers */
};

struct worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    uint64_t seq, done;
    struct cmd cmd;
    struct reply rep;
    struct vmmu_vm *vm;
    struct vmmu_vcpu *v;
    bool online; /* the thread's own record */
};

static enum vmmu_tlb_kind kind_of(unsigned access)
{
    return (access & VMMU_X86_ACC_WRITE)   ? VMMU_TLB_WRITE
           : (access & VMMU_X86_ACC_FETCH) ? VMMU_TLB_FETCH
                                           : VMMU_TLB_READ;
}

/* One access, by one of four paths, then the touch of the page the host
 * pointer is in (unless the map says it is out), then the walk. */
static void run_access(struct worker *w, const struct cmd *c, struct reply *r)
{
    struct vmmu_vcpu *v = w->v;
    r->rc_regs = vmmu_vcpu_set_cpl(v, c->cpl);
    if (!r->rc_regs)
        r->rc_regs = vmmu_vcpu_set_rflags(v, 2 | (c->ac ? R_RFLAGS_AC : 0));
    memset(&r->res, 0, sizeof(r->res));
    r->res.flags = ~0ull;
    enum vmmu_tlb_kind kind = kind_of(c->access);
    bool implicit = c->access & VMMU_X86_ACC_IMPLICIT;
    void *host = NULL;
    switch (c->method) {
    case 0: /* translate: hit path, then slow path; res->flags stays ~0 on a hit */
        host = vmmu_tlb_translate(v, c->va, c->size, c->access, &r->res);
        r->hit = r->res.flags == ~0ull;
        break;
    case 1: /* the inline lookups */
        if (implicit)
            host = vmmu_tlb_lookup_implicit(v, c->va, c->size, kind);
        else if (kind == VMMU_TLB_READ)
            host = vmmu_tlb_lookup_read(v, c->va, c->size);
        else if (kind == VMMU_TLB_WRITE)
            host = vmmu_tlb_lookup_write(v, c->va, c->size);
        else
            host = vmmu_tlb_lookup_fetch(v, c->va, c->size);
        r->hit = host != NULL;
        if (!host)
            host = vmmu_tlb_fill(v, c->va, c->size, c->access, &r->res);
        break;
    case 2: { /* the probe on a view (implicit accesses: translate) */
        if (implicit) {
            host = vmmu_tlb_translate(v, c->va, c->size, c->access, &r->res);
            r->hit = r->res.flags == ~0ull;
            break;
        }
        struct vmmu_tlb_view view = vmmu_tlb_view(v);
        r->hit = vmmu_tlb_probe(view, c->va, c->size, kind, &host);
        if (!r->hit)
            host = vmmu_tlb_fill(v, c->va, c->size, c->access, &r->res);
        break;
    }
    default:
        host = vmmu_tlb_fill(v, c->va, c->size, c->access, &r->res);
        break;
    }
    if (r->hit) {
        r->res.status = VMMU_TLB_OK;
        r->res.host = host;
    }
    r->host = host;
    r->where = -1;
    if (host) {
        uint8_t *h = host;
        for (unsigned i = 0; i < c->map.n; i++) {
            if (h >= c->map.r[i].host && h < c->map.r[i].host + c->map.r[i].size) {
                r->where = (int)i;
                r->host_gpa = c->map.r[i].gpa + (uint64_t)(h - c->map.r[i].host);
            }
        }
        if (r->where >= 0) {
            uint32_t state = 0;
            if (c->map.r[r->where].managed &&
                vmmu_page_state_get(w->vm, r->host_gpa, &state) == 0 &&
                (state & VMMU_PAGE_PAGED_OUT)) {
                r->paged_out = true;
            } else {
                memcpy(&r->word0, h - (r->host_gpa & 0xfff), 8);
                r->touched = true;
            }
        }
    }
    const struct vmmu_x86_paging *pg = vmmu_vcpu_paging(v);
    r->walk_rc = vmmu_x86_walk_peek(pg, c->va, c->access, &r->w);
    r->mode = pg->mode;
    memcpy(r->pdpte, pg->pdpte, sizeof(r->pdpte));
}

static void flush_all_count(struct vmmu_vcpu *v, uint64_t *out)
{
    struct vmmu_tlb_stats st;
    *out = vmmu_vcpu_stats(v, &st) == 0 ? st.flush_all : 0;
}

/* Run one command on the vCPU's thread; true when the thread must exit. */
static bool run_cmd(struct worker *w, const struct cmd *c, struct reply *r)
{
    struct vmmu_vcpu *v = w->v;
    switch (c->kind) {
    case CMD_START:
        r->rc = vmmu_vcpu_online(v);
        w->online = r->rc == 0;
        if (!r->rc)
            r->rc = vmmu_vcpu_set_state(v, &c->regs);
        break;
    case CMD_ACCESS:
        run_access(w, c, r);
        break;
    case CMD_INVLPG:
        r->rc = vmmu_vcpu_invlpg(v, c->va);
        break;
    case CMD_INVPCID:
        r->rc_regs = vmmu_vcpu_set_cpl(v, c->cpl);
        r->rc = vmmu_vcpu_invpcid(v, c->type, c->pcid, c->va, &r->fault);
        break;
    case CMD_CR3:
        r->rc = vmmu_vcpu_set_cr3(v, c->value, &r->fault);
        break;
    case CMD_FLUSH_ALL:
        r->rc = vmmu_vcpu_tlb_flush_all(v);
        break;
    case CMD_FLUSH_LOCAL:
        r->rc = vmmu_flush_local(v, &c->f);
        break;
    case CMD_SHOOT:
        r->rc = c->sync ? vmmu_shootdown_sync(w->vm, v, c->targets, &c->f)
                        : vmmu_shootdown_async(w->vm, v, c->targets, &c->f);
        break;
    case CMD_SAFEPOINT:
        r->rc = vmmu_vcpu_safepoint(v);
        break;
    case CMD_OFFLINE:
        r->rc = vmmu_vcpu_offline(v);
        w->online = false;
        break;
    case CMD_ONLINE:
        flush_all_count(v, &r->flush_all_before);
        r->rc = vmmu_vcpu_online(v);
        w->online = r->rc == 0;
        flush_all_count(v, &r->flush_all_after);
        break;
    case CMD_EXIT:
        r->rc = w->online ? vmmu_vcpu_offline(v) : 0;
        w->online = false;
        return true;
    }
    return false;
}

static void deadline_in(struct timespec *ts, long ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += ns;
    while (ts->tv_nsec >= 1000000000L) {
        ts->tv_nsec -= 1000000000L;
        ts->tv_sec++;
    }
}

/* The vCPU's thread: commands in order; between them, while online, a
 * safe point every 100 us.  A command runs as soon as it is seen, with no
 * safe point before it (that would act on requests the model still counts
 * as outstanding, and hide a request that was not acted on). */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->seq == w->done) {
            if (!w->online) {
                pthread_cond_wait(&w->cv, &w->mu);
                continue;
            }
            struct timespec ts;
            deadline_in(&ts, 100000);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            if (w->seq != w->done)
                break;
            pthread_mutex_unlock(&w->mu);
            (void)vmmu_vcpu_safepoint(w->v);
            pthread_mutex_lock(&w->mu);
        }
        struct cmd c = w->cmd;
        pthread_mutex_unlock(&w->mu);
        struct reply r;
        memset(&r, 0, sizeof(r));
        bool leave = run_cmd(w, &c, &r);
        pthread_mutex_lock(&w->mu);
        w->rep = r;
        w->done = w->seq;
        pthread_cond_signal(&w->done_cv);
        if (leave)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- The model --------------------------------------------------------------- */

/* The values one page-table entry held, with the time each was written. */
struct slotlog {
    uint64_t gpa;
    bool reg; /* a vCPU's PDPTE register (PAE paging), not memory: gpa is unused */
    unsigned n, cap;
    uint64_t *t, *val;
};

/* The oldest time a vCPU's cached translations may have taken each entry's
 * value from (INF: nothing cached).  ng: non-global TLB entries per page,
 * PCID, context and level; g: global ones per page, context and level;
 * psc: the paging-structure caches per PCID and upper-level entry. */
struct bounds {
    uint64_t ng[NVA][NPCID][NCTX][NLVL];
    uint64_t g[NVA][NCTX][NLVL];
    uint64_t psc[NPCID][NSLOT];
};

/* A posting of requests not yet known to be acted on: the bounds of what
 * the target filled since (lowered at its accesses), which is what it may
 * hold of what the requests drop once they are acted on. */
struct mark {
    struct bounds *since;
};

struct preq {
    struct vmmu_flush f;
    unsigned mark;
};

struct vmod {
    struct worker w;
    int id;
    bool online;
    unsigned root; /* the root CR3 names; its PCID is root_pcid() */
    unsigned reg[4]; /* PAE paging: the slots of the PDPTE registers */
    unsigned cpl;
    bool ac;
    struct bounds *cur;
    struct mark marks[MAXMARK];
    unsigned nmarks;
    bool accessed; /* since the newest mark */
    struct preq pend[MAXPEND];
    unsigned npend;
    /* Requests posted while offline, as vmmu merges them. */
    unsigned off_reqs, off_pages, off_npcids;
    uint16_t off_pcids[16];
    bool off_all;
};

enum host_kind { H_CODE, H_UNCODE, H_LOG, H_LOG_READ, H_R2, H_PAGE_OUT, H_PAGE_IN, H_BALLOON_OUT,
                 H_BALLOON_IN, H_BALANCE, NHOST };
static const char *const host_names[NHOST] = {"code", "uncode", "log on/off", "log read",
                                              "region 2", "page-out", "page-in", "balloon-out",
                                              "balloon-in", "balance"};

struct counters {
    unsigned long strict, stale, stale_differs, unchecked, hits, faults, not_ram, ad_checked;
    unsigned long ctx_used[NCTX], edits, upper_edits;
    unsigned long invlpg, invpcid[4], invpcid_gp, cr3, cr3_noflush, flush_all, flush_local;
    unsigned long req_type[4], req_sync, req_async, req_from_host, req_null_targets, req_empty,
        req_unknown, req_self_in, req_big_range, req_any_pcid, req_deferred;
    unsigned long merges, overflow_predicted, overflow_seen, bursts, remaps, batches, dances;
    unsigned long settle_safepoint, settle_online, settle_self, safepoints, offlines, onlines;
    unsigned long host[NHOST], host_offline, pt_pageouts, primed, code_writes, logged_writes,
        ident_checked, paged_in;
    unsigned long ad_other_root, invpcid_gp_nopcid, pdpte_loads, pdpte_lag, pdpte_lag_stale;
    unsigned long seeds_in[NMD], strict_in[NMD], stale_in[NMD], stale_differs_in[NMD];
};

struct tkey {
    int owner;       /* the root of a private table, -1 for a shared one */
    unsigned level;  /* the level of its entries */
    uint64_t prefix; /* the linear-address bits above what it maps */
    uint64_t gpa;
};

struct model {
    const struct mode *md;
    unsigned mi; /* index of md in modes[] */
    struct x86_env env; /* the vm and the test's RAM at 0 */
    uint64_t seed, rng, now;
    unsigned step, nv;
    struct vmod v[MAXV];
    struct vmmu_pager *pager;
    uint32_t pt_id, data_id, r2_id;
    uint8_t *pt_host, *data_host, *r2_host;
    unsigned pt_used;
    enum vmmu_mem_type r2_type; /* VMMU_MEM_HOLE while removed */
    bool data_log;
    uint64_t data_written; /* data pages written while logging, since the log was read */
    bool code[NDATA + R2_PAGES];
    uint64_t ident[NDATA];
    uint64_t root[NPCID];
    struct tkey tables[PT_PAGES];
    unsigned ntables;
    /* Tables the edited upper-level entries point at: region A's page
     * table, B's, the table below D's edited entry, below E's top entry. */
    uint64_t t_a, t_b, t_d, t_e;
    uint64_t va[NVA];
    unsigned path[NVA][NPCID][NLVL]; /* slot indices, by root; l = 0 is the top */
    struct slotlog slots[NSLOT];
    unsigned nslots;
    struct vmmu_cpuset *set;
    unsigned hot[6]; /* pages most accesses and edits go to, in pairs that share a TLB index */
    unsigned last;   /* the vCPU that made the last access */
    bool wedged; /* a command never completed: leave the threads alone */
    struct counters c;
};

static struct model *live_model; /* for the teardown of a failed seed */

/* The watchdog: a call the main thread makes itself (a shootdown from the
 * host thread, a host change) that never returns cannot fail through
 * cmocka; after 90 s without a step the watchdog says where and aborts. */
static _Atomic unsigned long watch_progress;
static _Atomic unsigned long long watch_seed;
static _Atomic unsigned watch_step;
static _Atomic int watch_stop;
static pthread_t watch_thread;
static bool watch_running;

static void *watchdog_main(void *arg)
{
    (void)arg;
    unsigned long last = atomic_load(&watch_progress);
    unsigned idle = 0;
    while (!atomic_load(&watch_stop)) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        unsigned long now = atomic_load(&watch_progress);
        if (now != last) {
            last = now;
            idle = 0;
        } else if (++idle == 900) {
            fprintf(stderr, "sync model, seed %llu step %u: no progress in 90 s (a shootdown or "
                            "host change from the main thread waiting forever?)\n",
                    atomic_load(&watch_seed), atomic_load(&watch_step));
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

static void watchdog_start(void)
{
    atomic_store(&watch_stop, 0);
    assert_int_equal(pthread_create(&watch_thread, NULL, watchdog_main, NULL), 0);
    watch_running = true;
}

static void watchdog_stop(void)
{
    if (!watch_running)
        return;
    atomic_store(&watch_stop, 1);
    pthread_join(watch_thread, NULL);
    watch_running = false;
}

static uint64_t rnd(struct model *m)
{
    return model_rnd(&m->rng);
}

static unsigned rn(struct model *m, unsigned n)
{
    return (unsigned)(rnd(m) % n);
}

/* A tracked page that shares a TLB index with @x (in a table of 64 or 256
 * entries), so that the two push each other into the victim array; or
 * any page if none does. */
static unsigned partner_of(struct model *m, unsigned x);

static void hot_pair(struct model *m, unsigned i)
{
    unsigned x = rn(m, NVA);
    m->hot[2 * i] = x;
    m->hot[2 * i + 1] = partner_of(m, x);
}

/* A tracked page: mostly one of the hot ones, so that translations are
 * used again (inline hits) and edited while cached (stale ones). */
static unsigned pick_page(struct model *m)
{
    if (rn(m, 128) == 0)
        hot_pair(m, rn(m, 3));
    return rn(m, 4) ? m->hot[rn(m, 6)] : rn(m, NVA);
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

#define FAIL(m, vi, ...)                                                                           \
    do {                                                                                           \
        char what_[1024];                                                                          \
        snprintf(what_, sizeof(what_), __VA_ARGS__);                                               \
        fail_msg("sync model, seed %llu (%s) step %u, vCPU %d: %s",                               \
                 (unsigned long long)(m)->seed, (m)->md->name, (m)->step, (int)(vi), what_);      \
    } while (0)

/* ---- Guest memory ------------------------------------------------------------------ */

/* Page-table entries are 4 or 8 bytes (the mode's); little-endian, so the
 * low bytes of @v are the entry. */
static void pt_put(struct model *m, uint64_t gpa, uint64_t v)
{
    int rc = vmmu_gpa_write(m->env.vm, gpa, &v, m->md->esize, 0, NULL);
    if (rc)
        FAIL(m, -1, "writing the entry at %#llx returned %s", (unsigned long long)gpa,
             vmmu_error_name(rc));
}

static uint64_t pt_get(struct model *m, uint64_t gpa)
{
    uint64_t v = 0;
    int rc = vmmu_gpa_read(m->env.vm, gpa, &v, m->md->esize, 0, NULL);
    if (rc)
        FAIL(m, -1, "reading the entry at %#llx returned %s", (unsigned long long)gpa,
             vmmu_error_name(rc));
    return v;
}

static uint64_t pt_alloc(struct model *m)
{
    assert_true(m->pt_used < PT_PAGES);
    return PT_GPA + 4096ull * m->pt_used++;
}

static unsigned slot_new(struct model *m, uint64_t gpa, bool reg, uint64_t v)
{
    assert_true(m->nslots < NSLOT);
    struct slotlog *s = &m->slots[m->nslots];
    s->gpa = gpa;
    s->reg = reg;
    s->cap = 8;
    s->t = malloc(s->cap * sizeof(*s->t));
    s->val = malloc(s->cap * sizeof(*s->val));
    assert_non_null(s->t);
    assert_non_null(s->val);
    s->n = 1;
    s->t[0] = 0;
    s->val[0] = v;
    return m->nslots++;
}

static unsigned slot_of(struct model *m, uint64_t gpa)
{
    for (unsigned i = 0; i < m->nslots; i++)
        if (!m->slots[i].reg && m->slots[i].gpa == gpa)
            return i;
    return slot_new(m, gpa, false, pt_get(m, gpa));
}

static uint64_t slot_now(const struct model *m, unsigned s)
{
    return m->slots[s].val[m->slots[s].n - 1];
}

/* Entry @s takes value @v (one event of its own on the clock). */
static void slot_log(struct model *m, unsigned s, uint64_t v)
{
    struct slotlog *l = &m->slots[s];
    if (l->n == l->cap) {
        l->cap *= 2;
        l->t = realloc(l->t, l->cap * sizeof(*l->t));
        l->val = realloc(l->val, l->cap * sizeof(*l->val));
        assert_non_null(l->t);
        assert_non_null(l->val);
    }
    l->t[l->n] = ++m->now;
    l->val[l->n] = v;
    l->n++;
}

/* The guest writes entry @s. */
static void slot_write(struct model *m, unsigned s, uint64_t v)
{
    assert_false(m->slots[s].reg);
    pt_put(m, m->slots[s].gpa, v);
    slot_log(m, s, v);
    m->c.edits++;
}

/* ---- Building ------------------------------------------------------------------ */

/* A leaf: a 4 KiB page (@large 0) or a large page of level @large, which
 * maps the test's RAM at 0 (1 GiB pages: at gpa 0; level 2: the mode's). */
static uint64_t random_leaf(struct model *m, bool may_global, unsigned large)
{
    const struct mode *md = m->md;
    uint64_t v;
    if (large == 3) {
        v = E_PS; /* 1 GiB at gpa 0 */
    } else if (large == 2) {
        v = md->big2_gpa | E_PS;
    } else {
        unsigned k = rn(m, 16);
        v = k == 0   ? HOLE_GPA + 4096ull * rn(m, 4)
            : k < 3  ? R2_GPA + 4096ull * rn(m, R2_PAGES)
            : k == 3 ? PT_GPA + 4096ull * rn(m, PT_PAGES)
            : k == 4 ? LOW_DATA + 4096ull * rn(m, 32)
                     : DATA_GPA + 4096ull * rn(m, NDATA);
    }
    if (rn(m, 10))
        v |= E_P;
    if (rn(m, 4))
        v |= E_RW;
    if (rn(m, 2))
        v |= E_US;
    if (rn(m, 2))
        v |= E_A;
    if (rn(m, 2))
        v |= E_D;
    if (may_global && rn(m, 3) == 0)
        v |= E_G;
    if (rn(m, 8) == 0 && md->nx)
        v |= E_NX;
    return v;
}

/* An entry of level @level that points at the table at @child, with
 * random rights (a PAE PDPTE has none: present or not, and an ignored bit
 * now and then, so that its register and memory differ in value but not
 * in meaning). */
static uint64_t random_upper(struct model *m, unsigned level, uint64_t child)
{
    const struct mode *md = m->md;
    if (md->regs && level == md->nlvl)
        return child | (rn(m, 4) ? E_P : 0) | (rn(m, 3) ? 0 : 1ull << (9 + rn(m, 3)));
    uint64_t v = child | E_A;
    v |= rn(m, 12) ? E_P : 0;
    v |= rn(m, 4) ? E_RW : 0;
    v |= rn(m, 4) ? E_US : 0;
    v |= rn(m, 4) || !md->nx ? 0 : E_NX;
    return v;
}

/* The entry of level @level that points at @child as the tables are built
 * (and as an edit that turns a large page back into a table writes it). */
static uint64_t table_entry(const struct model *m, unsigned level, uint64_t child)
{
    return child | mode_upper_flags(m->md->mm, level) |
           (m->md->regs && level == m->md->nlvl ? 0 : E_A);
}

static bool private_page(unsigned x)
{
    return x >= IC && x < ID;
}

/* The slot of the leaf table entry of page @x in root @p's tables. */
static unsigned pte_slot(const struct model *m, unsigned x, unsigned p)
{
    return m->path[x][private_page(x) ? p : 0][m->md->nlvl - 1];
}

/* The PCID root @p runs as. */
static unsigned root_pcid(const struct model *m, unsigned p)
{
    return m->md->pcid ? p : 0;
}

/* The slot the walk of page @x by vCPU @vi in root @p reads at index @l
 * (0: the top): memory, but for the PDPTE registers of PAE paging, which
 * are the vCPU's own. */
static unsigned walk_slot(const struct model *m, unsigned vi, unsigned x, unsigned p, unsigned l)
{
    if (l == 0 && m->md->regs)
        return m->v[vi].reg[(m->va[x] >> 30) & 3];
    return m->path[x][p][l];
}

/* The table the walk of page @x in root @p reads at level @level: the
 * root, or a table shared by every root (region C: one per root), made
 * at the first walk that needs it. */
static uint64_t table_for(struct model *m, unsigned x, unsigned p, unsigned level)
{
    const struct mode *md = m->md;
    if (level == md->nlvl)
        return m->root[p];
    unsigned bits = md->esize == 4 ? 10 : 9;
    uint64_t prefix = m->va[x] >> (12 + bits * level);
    int owner = private_page(x) ? (int)p : -1;
    for (unsigned i = 0; i < m->ntables; i++) {
        const struct tkey *k = &m->tables[i];
        if (k->owner == owner && k->level == level && k->prefix == prefix)
            return k->gpa;
    }
    assert_true(m->ntables < PT_PAGES);
    struct tkey *k = &m->tables[m->ntables++];
    k->owner = owner;
    k->level = level;
    k->prefix = prefix;
    k->gpa = pt_alloc(m);
    return k->gpa;
}

static void build(struct model *m)
{
    const struct mode *md = m->md;
    const uint16_t *pages[5] = {pages_a, pages_b, pages_c, pages_d, pages_e};
    const unsigned first[5] = {IA, IB, IC, ID, IE}, count[5] = {NA, NB, NC, ND, NE};
    for (unsigned r = 0; r < 5; r++)
        for (unsigned i = 0; i < count[r]; i++)
            m->va[first[r] + i] = md->base[r] + 4096ull * pages[r][i];

    for (unsigned p = 0; p < NPCID; p++)
        m->root[p] = pt_alloc(m);
    /* Every walk, one table per level; leaves: shared ones may be global,
     * region C's are private to each root. */
    for (unsigned x = 0; x < NVA; x++) {
        for (unsigned p = 0; p < NPCID; p++) {
            uint64_t table = m->root[p];
            for (unsigned level = md->nlvl; level > 1; level--) {
                uint64_t child = table_for(m, x, p, level - 1);
                pt_put(m, mode_slot(md->mm, table, m->va[x], level), table_entry(m, level, child));
                table = child;
            }
            if (p == 0 || private_page(x))
                pt_put(m, mode_slot(md->mm, table, m->va[x], 1),
                       random_leaf(m, !private_page(x), 0));
        }
    }
    /* The walk of every tracked page in every root's tables, one slot per
     * entry (the table a non-leaf entry points at never changes). */
    for (unsigned x = 0; x < NVA; x++) {
        for (unsigned p = 0; p < NPCID; p++) {
            for (unsigned l = 0; l < md->nlvl; l++) {
                unsigned level = md->nlvl - l;
                uint64_t at = mode_slot(md->mm, table_for(m, x, p, level), m->va[x], level);
                m->path[x][p][l] = slot_of(m, at);
            }
        }
    }
    m->t_a = table_for(m, IA, 0, 1);
    m->t_b = table_for(m, IB, 0, 1);
    m->t_d = table_for(m, ID, 0, md->d_level - 1);
    m->t_e = table_for(m, IE, 0, md->nlvl - 1);
}

/* The guest writes the entry of level @level on shared page @x's walk:
 * one entry of a shared table, or the entry in every root when @level is
 * the top (kept equal in every root, as kernels keep the top-level
 * entries they share: so a global translation filled in another root
 * came from the same values). */
static void shared_write(struct model *m, unsigned x, unsigned level, uint64_t v)
{
    unsigned l = m->md->nlvl - level, done[NPCID], n = 0;
    for (unsigned q = 0; q < NPCID; q++) {
        unsigned s = m->path[x][q][l];
        bool dup = false;
        for (unsigned i = 0; i < n; i++)
            dup |= done[i] == s;
        if (dup)
            continue;
        done[n++] = s;
        slot_write(m, s, v);
    }
    m->c.upper_edits++;
}

static unsigned partner_of(struct model *m, unsigned x)
{
    unsigned found[NVA], n = 0;
    for (unsigned y = 0; y < NVA; y++)
        if (y != x && ((m->va[x] ^ m->va[y]) >> 12 & (rn(m, 2) ? 255 : 63)) == 0)
            found[n++] = y;
    return n ? found[rn(m, n)] : rn(m, NVA);
}

/* A data page (or a page of the second region) that a hot page maps now,
 * so that host changes take pages the TLBs hold; else a random one. */
static uint64_t mapped_gpa(struct model *m)
{
    unsigned x = m->hot[rn(m, 6)], p = rn(m, NPCID);
    uint64_t e = slot_now(m, pte_slot(m, x, p));
    uint64_t gpa = e & ADDR_MASK;
    if (gpa >= DATA_GPA && gpa < DATA_GPA + NDATA * 4096ull)
        return gpa;
    if (gpa >= R2_GPA && gpa < R2_GPA + R2_PAGES * 4096ull && m->r2_type == VMMU_MEM_RAM)
        return gpa;
    return DATA_GPA + 4096ull * rn(m, NDATA);
}

/* ---- Bounds: what each invalidation drops, and what an access may fill ---------- */

static void bounds_clear(struct bounds *b)
{
    memset(b, 0xff, sizeof(*b)); /* INF everywhere: nothing cached */
}

/* Drop: each bound becomes what @src says was filled since the request was
 * posted (NULL: nothing, the drop is now), unless it already says less. */
static void lift(uint64_t *dst, const uint64_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src ? max64(dst[i], src[i]) : INF;
}

static void drop_ng(struct bounds *d, const struct bounds *s, unsigned x, unsigned p, unsigned ctxs)
{
    for (unsigned c = 0; c < NCTX; c++)
        if (ctxs & (1u << c))
            lift(d->ng[x][p][c], s ? s->ng[x][p][c] : NULL, NLVL);
}

static void drop_g(struct bounds *d, const struct bounds *s, unsigned x, unsigned ctxs)
{
    for (unsigned c = 0; c < NCTX; c++)
        if (ctxs & (1u << c))
            lift(d->g[x][c], s ? s->g[x][c] : NULL, NLVL);
}

static void drop_psc(struct bounds *d, const struct bounds *s, unsigned p)
{
    lift(d->psc[p], s ? s->psc[p] : NULL, NSLOT);
}

/* Everything: every entry, global or not, and every cache. */
static void drop_everything(struct bounds *d, const struct bounds *s)
{
    for (unsigned x = 0; x < NVA; x++) {
        for (unsigned p = 0; p < NPCID; p++)
            drop_ng(d, s, x, p, 7);
        drop_g(d, s, x, 7);
    }
    for (unsigned p = 0; p < NPCID; p++)
        drop_psc(d, s, p);
}

/* One PCID's non-global entries and its caches (INVPCID 1, MOV to CR3). */
static void drop_pcid(struct bounds *d, const struct bounds *s, unsigned p)
{
    for (unsigned x = 0; x < NVA; x++)
        drop_ng(d, s, x, p, 7);
    drop_psc(d, s, p);
}

static int model_pcid(int pcid)
{
    return pcid >= 0 && pcid < NPCID ? pcid : -1;
}

/* What request @f drops (see the comment at the top). */
static void apply_flush(const struct model *m, struct bounds *d, const struct bounds *s,
                        const struct vmmu_flush *f)
{
    switch (f->type) {
    case VMMU_FLUSH_ALL:
        drop_everything(d, s);
        break;
    case VMMU_FLUSH_CONTEXTS:
        for (unsigned x = 0; x < NVA; x++) {
            for (unsigned p = 0; p < NPCID; p++)
                drop_ng(d, s, x, p, f->contexts);
            drop_g(d, s, x, f->contexts);
        }
        break;
    case VMMU_FLUSH_PCID:
        if (model_pcid(f->pcid) >= 0)
            drop_pcid(d, s, (unsigned)f->pcid);
        break;
    case VMMU_FLUSH_RANGE: {
        uint64_t first = f->va & ~0xfffull, end = first + f->npages * 4096;
        int p = model_pcid(f->pcid);
        for (unsigned x = 0; x < NVA; x++) {
            if (m->va[x] < first || m->va[x] >= end)
                continue;
            for (unsigned q = 0; q < NPCID; q++)
                if (f->pcid == VMMU_FLUSH_ANY_PCID || (int)q == p)
                    drop_ng(d, s, x, q, 7);
            drop_g(d, s, x, 7);
        }
        for (unsigned q = 0; q < NPCID; q++)
            if (f->pcid == VMMU_FLUSH_ANY_PCID || (int)q == p)
                drop_psc(d, s, q);
        break;
    }
    }
}

/* An access of page @x by vCPU @vi in root @r (PCID @p) and context @c at
 * time @ta: it may fill the caches on its walk (from memory now) and a TLB
 * entry of that context, non-global if @nonglobal, global if @global,
 * whose levels come from the caches (bounds @tf).  Applied to the vCPU's
 * bounds and to each posting's. */
static void note_fill(const struct model *m, struct bounds *b, unsigned vi, unsigned x,
                      unsigned r, unsigned p, unsigned c, const uint64_t tf[NLVL],
                      bool nonglobal, bool global, uint64_t ta)
{
    unsigned n = m->md->nlvl;
    for (unsigned l = 0; l + 1 < n; l++) {
        unsigned s = walk_slot(m, vi, x, r, l);
        b->psc[p][s] = min64(b->psc[p][s], ta);
    }
    for (unsigned l = 0; l < n; l++) {
        if (nonglobal)
            b->ng[x][p][c][l] = min64(b->ng[x][p][c][l], tf[l]);
        if (global)
            b->g[x][c][l] = min64(b->g[x][c][l], tf[l]);
    }
}

/* The request's part for vCPU @vi is known to be done now. */
static void drop_now(struct model *m, unsigned vi, const struct vmmu_flush *f)
{
    apply_flush(m, m->v[vi].cur, NULL, f);
}

/* A request to vCPU @vi that it acts on at some point before its next
 * safe point, online or own shootdown. */
static void post_deferred(struct model *m, unsigned vi, const struct vmmu_flush *f)
{
    struct vmod *v = &m->v[vi];
    assert_true(v->npend < MAXPEND);
    if (!v->nmarks || (v->accessed && v->nmarks < MAXMARK)) {
        bounds_clear(v->marks[v->nmarks++].since);
        v->accessed = false;
    }
    v->pend[v->npend].f = *f;
    v->pend[v->npend].mark = v->nmarks - 1;
    v->npend++;
    m->c.req_deferred++;
    if (!v->online) {
        /* vmmu's merge of the pending set (src/sync/sync.c): more than 8
         * PCIDs or 16 pages become a flush of everything. */
        if (v->off_reqs)
            m->c.merges++;
        v->off_reqs++;
        if (f->type == VMMU_FLUSH_ALL || (f->type == VMMU_FLUSH_RANGE && f->npages > 16))
            v->off_all = true;
        if (f->type == VMMU_FLUSH_RANGE && f->npages <= 16)
            v->off_pages += (unsigned)f->npages;
        if (f->type == VMMU_FLUSH_PCID) {
            bool dup = false;
            for (unsigned i = 0; i < v->off_npcids; i++)
                dup |= v->off_pcids[i] == f->pcid;
            if (!dup && v->off_npcids < 16)
                v->off_pcids[v->off_npcids++] = (uint16_t)f->pcid;
        }
    }
}

/* vCPU @vi passed a point where it has acted on every request posted
 * before: each drops what the target held when it was posted. */
static void settle(struct model *m, unsigned vi, unsigned long *counter)
{
    struct vmod *v = &m->v[vi];
    if (v->npend)
        (*counter)++;
    for (unsigned i = 0; i < v->npend; i++)
        apply_flush(m, v->cur, v->marks[v->pend[i].mark].since, &v->pend[i].f);
    v->npend = 0;
    v->nmarks = 0;
    v->accessed = false;
}

static void offline_reset(struct vmod *v)
{
    v->off_reqs = v->off_pages = v->off_npcids = 0;
    v->off_all = false;
}

/* ---- Translation as the model sees it ----------------------------------------- */

struct outcome {
    bool ok;
    bool leaf;   /* a present leaf was reached (whatever the rights) */
    bool global; /* that leaf has G */
    uint64_t gpa;
    uint32_t err; /* #PF error code when !ok */
};

/* Translation in mode @md with CR0.WP, CR4.PGE, SMEP and SMAP set,
 * EFER.NXE set where XD exists, CR4.PKE clear, no reserved bits (the
 * stream writes none).  @e: the walk's entries, top first; in PAE paging
 * the first is the PDPTE register, which has no rights bits (SDM 4.4.2,
 * Table 4-8).  Large pages: PS in a PDE (2 MiB, or 4 MiB in 32-bit paging
 * with CR4.PSE) or, in IA-32e paging, in a PDPTE (1 GiB).  Implicit
 * accesses are supervisor accesses with AC=0. */
static struct outcome evaluate(const struct mode *md, const uint64_t e[NLVL], uint64_t va,
                               unsigned access, unsigned cpl, bool ac)
{
    struct outcome o;
    memset(&o, 0, sizeof(o));
    bool implicit = access & VMMU_X86_ACC_IMPLICIT, write = access & VMMU_X86_ACC_WRITE,
         fetch = access & VMMU_X86_ACC_FETCH;
    bool user = cpl == 3 && !implicit;
    o.err = (write ? VMMU_X86_PF_W : 0) | (user ? VMMU_X86_PF_U : 0) | (fetch ? VMMU_X86_PF_I : 0);
    bool rw = true, us = true, xd = false;
    if (md->nlvl < 4)
        va &= 0xffffffffull;
    for (unsigned l = 0; l < md->nlvl; l++) {
        unsigned level = md->nlvl - l;
        uint64_t v = e[l];
        if (!(v & E_P))
            return o;
        if (md->regs && l == 0)
            continue;
        rw = rw && (v & E_RW);
        us = us && (v & E_US);
        xd = xd || (md->nx && (v & E_NX));
        bool large = (v & E_PS) && (level == 2 || (level == 3 && md->big3));
        if (level > 1 && !large)
            continue;
        uint64_t size = level == 3 ? GiB : level == 2 ? 1ull << md->big2 : 4096;
        o.leaf = true;
        o.global = (v & E_G) != 0;
        o.gpa = (v & ADDR_MASK & ~(size - 1)) | (va & (size - 1));
        bool allowed;
        if (user)
            allowed = us && (!write || rw) && (!fetch || !xd);
        else if (fetch)
            allowed = !xd && !us; /* SMEP */
        else
            allowed = (!us || (ac && !implicit)) && (!write || rw); /* SMAP, WP */
        if (allowed) {
            o.ok = true;
            o.err = 0;
        } else {
            o.err |= VMMU_X86_PF_P;
        }
        return o;
    }
    return o;
}

struct expectation {
    enum vmmu_tlb_status status;
    uint8_t *host;
    enum vmmu_mem_type type;
};

/* What an access to @gpa must give under the current guest-physical map. */
static struct expectation expect(const struct model *m, uint64_t gpa, unsigned access)
{
    struct expectation e = {VMMU_TLB_NOT_RAM, NULL, VMMU_MEM_HOLE};
    bool write = access & VMMU_X86_ACC_WRITE;
    if (gpa < RAM0_SIZE) {
        e.host = m->env.mem + gpa;
    } else if (gpa >= PT_GPA && gpa < PT_GPA + PT_PAGES * 4096ull) {
        e.host = m->pt_host + (gpa - PT_GPA);
    } else if (gpa >= DATA_GPA && gpa < DATA_GPA + NDATA * 4096ull) {
        e.host = m->data_host + (gpa - DATA_GPA);
    } else if (gpa >= R2_GPA && gpa < R2_GPA + R2_PAGES * 4096ull) {
        e.type = m->r2_type;
        if (m->r2_type == VMMU_MEM_RAM || (m->r2_type == VMMU_MEM_ROM && !write)) {
            e.status = VMMU_TLB_OK;
            e.host = m->r2_host + (gpa - R2_GPA);
        }
        return e;
    } else {
        return e;
    }
    e.status = VMMU_TLB_OK;
    e.type = VMMU_MEM_RAM;
    return e;
}

/* Index into code[] of the page at @gpa, or -1. */
static int code_index(uint64_t gpa)
{
    if (gpa >= DATA_GPA && gpa < DATA_GPA + NDATA * 4096ull)
        return (int)((gpa - DATA_GPA) >> 12);
    if (gpa >= R2_GPA && gpa < R2_GPA + R2_PAGES * 4096ull)
        return NDATA + (int)((gpa - R2_GPA) >> 12);
    return -1;
}

static void hostmap_make(const struct model *m, struct hostmap *h)
{
    memset(h, 0, sizeof(*h));
    h->r[h->n].gpa = 0;
    h->r[h->n].size = RAM0_SIZE;
    h->r[h->n++].host = m->env.mem;
    h->r[h->n].gpa = PT_GPA;
    h->r[h->n].size = PT_PAGES * 4096ull;
    h->r[h->n].managed = true;
    h->r[h->n++].host = m->pt_host;
    h->r[h->n].gpa = DATA_GPA;
    h->r[h->n].size = NDATA * 4096ull;
    h->r[h->n].managed = true;
    h->r[h->n++].host = m->data_host;
    if (m->r2_type == VMMU_MEM_RAM || m->r2_type == VMMU_MEM_ROM) {
        h->r[h->n].gpa = R2_GPA;
        h->r[h->n].size = R2_PAGES * 4096ull;
        h->r[h->n].managed = true;
        h->r[h->n++].host = m->r2_host;
    }
}

/* Does the TLB's answer @r to access @c match the translation @o? */
static bool answer_matches(const struct model *m, const struct cmd *c, const struct reply *r,
                           const struct outcome *o)
{
    const struct vmmu_tlb_result *res = &r->res;
    switch (res->status) {
    case VMMU_TLB_FAULT:
        return !o->ok && !r->host && res->fault.vector == VMMU_X86_VEC_PF &&
               res->fault.error_code == o->err && res->fault.cr2 == c->va;
    case VMMU_TLB_OK: {
        if (!o->ok)
            return false;
        struct expectation e = expect(m, o->gpa, c->access);
        return e.status == VMMU_TLB_OK && (uint8_t *)r->host == e.host &&
               (r->hit || res->type == e.type);
    }
    case VMMU_TLB_NOT_RAM: {
        if (!o->ok || r->host)
            return false;
        struct expectation e = expect(m, o->gpa, c->access);
        return e.status == VMMU_TLB_NOT_RAM && res->gpa == o->gpa && res->type == e.type;
    }
    default:
        return false;
    }
}

static const char *describe(const struct reply *r, char *buf, size_t n)
{
    const struct vmmu_tlb_result *res = &r->res;
    switch (res->status) {
    case VMMU_TLB_FAULT:
        snprintf(buf, n, "fault %d error %#x cr2 %#llx", res->fault.vector, res->fault.error_code,
                 (unsigned long long)res->fault.cr2);
        break;
    case VMMU_TLB_OK:
        if (r->where >= 0)
            snprintf(buf, n, "host %p (gpa %#llx by the map)%s, type %d", r->host,
                     (unsigned long long)r->host_gpa, r->hit ? " from the inline hit path" : "",
                     r->hit ? -1 : (int)res->type);
        else
            snprintf(buf, n, "host %p (in no region of the map)%s, type %d", r->host,
                     r->hit ? " from the inline hit path" : "", r->hit ? -1 : (int)res->type);
        break;
    case VMMU_TLB_NOT_RAM:
        snprintf(buf, n, "not RAM, gpa %#llx type %d", (unsigned long long)res->gpa,
                 (int)res->type);
        break;
    default:
        snprintf(buf, n, "status %d error %s", (int)res->status, vmmu_error_name(res->error));
        break;
    }
    return buf;
}

static unsigned ctx_of(unsigned access, unsigned cpl, bool ac)
{
    if (access & VMMU_X86_ACC_IMPLICIT)
        return CTX_SUP;
    return cpl == 3 ? CTX_USER : ac ? CTX_SUP_AC : CTX_SUP;
}

/* The distinct values (A and D masked) entry @s held from time @t on;
 * MAXW + 1 if there are more than MAXW. */
static unsigned window(const struct model *m, unsigned s, uint64_t t, uint64_t *out)
{
    const struct slotlog *l = &m->slots[s];
    unsigned k = l->n - 1;
    while (k > 0 && l->t[k] > t)
        k--;
    unsigned n = 0;
    for (; k < l->n; k++) {
        uint64_t v = l->val[k] & ~AD_MASK;
        bool dup = false;
        for (unsigned i = 0; i < n; i++)
            dup |= out[i] == v;
        if (dup)
            continue;
        if (n == MAXW)
            return MAXW + 1;
        out[n++] = v;
    }
    return n;
}

/* ---- Commands ------------------------------------------------------------------ */

static void send(struct model *m, unsigned vi, struct cmd *c, struct reply *out)
{
    struct worker *w = &m->v[vi].w;
    if (c->kind == CMD_ACCESS)
        hostmap_make(m, &c->map);
    pthread_mutex_lock(&w->mu);
    w->cmd = *c;
    w->seq++;
    pthread_cond_signal(&w->cv);
    struct timespec ts;
    deadline_in(&ts, 0);
    ts.tv_sec += 60;
    while (w->done != w->seq) {
        if (pthread_cond_timedwait(&w->done_cv, &w->mu, &ts) == ETIMEDOUT) {
            pthread_mutex_unlock(&w->mu);
            m->wedged = true;
            FAIL(m, vi, "command '%s' did not complete in 60 s (a shootdown or host change "
                        "waiting forever?)", cmd_names[c->kind]);
        }
    }
    *out = w->rep;
    pthread_mutex_unlock(&w->mu);
}

static void send_simple(struct model *m, unsigned vi, enum cmd_kind kind)
{
    struct cmd c;
    struct reply r;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    send(m, vi, &c, &r);
    if (r.rc)
        FAIL(m, vi, "%s returned %s", cmd_names[kind], vmmu_error_name(r.rc));
}

static void go_online(struct model *m, unsigned vi)
{
    struct vmod *v = &m->v[vi];
    struct cmd c;
    struct reply r;
    memset(&c, 0, sizeof(c));
    c.kind = CMD_ONLINE;
    send(m, vi, &c, &r);
    if (r.rc)
        FAIL(m, vi, "vmmu_vcpu_online returned %s", vmmu_error_name(r.rc));
    m->now++;
    v->online = true;
    m->c.onlines++;
    if (v->off_reqs) {
        bool overflow = !v->off_all && (v->off_npcids > 8 || v->off_pages > 16);
        if (overflow) {
            m->c.overflow_predicted++;
            if (r.flush_all_after == r.flush_all_before)
                FAIL(m, vi, "requests posted while it was offline named %u PCIDs and %u pages, "
                            "more than a pending set holds, yet coming online flushed everything "
                            "%llu times", v->off_npcids, v->off_pages,
                     (unsigned long long)(r.flush_all_after - r.flush_all_before));
            m->c.overflow_seen++;
        }
    }
    offline_reset(v);
    settle(m, vi, &m->c.settle_online);
}

static void go_offline(struct model *m, unsigned vi)
{
    send_simple(m, vi, CMD_OFFLINE);
    m->now++;
    m->v[vi].online = false;
    offline_reset(&m->v[vi]);
    m->c.offlines++;
}

static void safepoint(struct model *m, unsigned vi)
{
    send_simple(m, vi, CMD_SAFEPOINT);
    m->now++;
    m->c.safepoints++;
    settle(m, vi, &m->c.settle_safepoint);
}

/* A vCPU that is online (brought online if none is). */
static unsigned pick_online(struct model *m)
{
    unsigned vi = rn(m, m->nv);
    for (unsigned k = 0; k < m->nv; k++)
        if (m->v[(vi + k) % m->nv].online)
            return (vi + k) % m->nv;
    go_online(m, vi);
    return vi;
}

/* ---- Accesses ------------------------------------------------------------------ */

/* The entries @e of a walk of @n levels, for messages. */
static const char *entries_str(const uint64_t *e, unsigned n, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = 0;
    for (unsigned l = 0; l < n && k < size; l++)
        k += (size_t)snprintf(buf + k, size - k, "%s%#llx", l ? " " : "", (unsigned long long)e[l]);
    return buf;
}

static void check_access(struct model *m, unsigned vi, unsigned x, const struct cmd *c,
                         const struct reply *r)
{
    const struct mode *md = m->md;
    struct vmod *v = &m->v[vi];
    uint64_t ta = ++m->now;
    unsigned rt = v->root, p = root_pcid(m, rt), ctx = ctx_of(c->access, c->cpl, c->ac);
    unsigned n = md->nlvl;
    char got[160], ebuf[160];
    if (r->rc_regs)
        FAIL(m, vi, "setting CPL %u and AC %d returned %s", c->cpl, c->ac,
             vmmu_error_name(r->rc_regs));
    if (r->walk_rc)
        FAIL(m, vi, "vmmu_x86_walk_peek of %#llx returned %s", (unsigned long long)c->va,
             vmmu_error_name(r->walk_rc));
    if (r->mode != md->vm_mode)
        FAIL(m, vi, "the vCPU is in paging mode %s, not %s", vmmu_x86_mode_name(r->mode),
             vmmu_x86_mode_name(md->vm_mode));
    const struct vmmu_x86_walk *w = &r->w;
    m->c.ctx_used[ctx]++;

    /* PAE paging: the PDPTE registers hold what the last MOV to CR3 loaded
     * (SDM 4.4.1), whatever the guest wrote to memory since, and whatever
     * else happened (INVLPG, INVPCID, shootdowns and host changes load
     * nothing). */
    if (md->regs) {
        for (unsigned j = 0; j < 4; j++) {
            uint64_t want = slot_now(m, v->reg[j]);
            if (r->pdpte[j] != want)
                FAIL(m, vi, "PDPTE register %u holds %#llx; the last MOV to CR3 (root %u) "
                            "loaded %#llx (the entry in memory holds %#llx now)",
                     j, (unsigned long long)r->pdpte[j], rt, (unsigned long long)want,
                     (unsigned long long)pt_get(m, m->root[rt] + 8 * j));
        }
        unsigned s0 = m->path[x][rt][0];
        if (slot_now(m, s0) != slot_now(m, walk_slot(m, vi, x, rt, 0)))
            m->c.pdpte_lag++;
    }

    /* The model's evaluator on the current tables against the walker. */
    uint64_t curv[NLVL];
    for (unsigned l = 0; l < n; l++)
        curv[l] = slot_now(m, walk_slot(m, vi, x, rt, l));
    struct outcome o = evaluate(md, curv, c->va, c->access, c->cpl, c->ac);
    if (o.ok != w->ok || (o.ok && (o.gpa != w->gpa || o.global != w->global)) ||
        (!o.ok && (w->fault.vector != VMMU_X86_VEC_PF || w->fault.error_code != o.err ||
                   w->fault.cr2 != c->va)))
        FAIL(m, vi, "(test bug, or the walker used other entries than the model: PDPTE "
                    "registers?) the model translates va %#llx (access %#x, CPL %u, AC %d, "
                    "root %u; entries %s) to ok %d gpa %#llx error %#x; the walker to ok %d "
                    "gpa %#llx vector %d error %#x",
             (unsigned long long)c->va, c->access, c->cpl, c->ac, rt,
             entries_str(curv, n, ebuf, sizeof(ebuf)), o.ok, (unsigned long long)o.gpa, o.err,
             w->ok, (unsigned long long)w->gpa, w->fault.vector, w->fault.error_code);

    /* How old may what the TLB answers from be, level by level? */
    const struct bounds *b = v->cur;
    uint64_t t[NLVL];
    bool strict = true;
    for (unsigned l = 0; l < n; l++) {
        unsigned s = walk_slot(m, vi, x, rt, l);
        t[l] = min64(min64(b->ng[x][p][ctx][l], b->g[x][ctx][l]), ta);
        if (l + 1 < n)
            t[l] = min64(t[l], b->psc[p][s]);
        const struct slotlog *lg = &m->slots[s];
        if (lg->t[lg->n - 1] > t[l])
            strict = false;
    }

    /* Whether what the access may fill is global: possibly (then the
     * global bounds drop too), or certainly (then only they do). */
    bool any_global = o.leaf && o.global, all_global = !o.leaf || o.global;
    if (r->hit)
        m->c.hits++;
    if (strict) {
        m->c.strict++;
        m->c.strict_in[m->mi]++;
        if (!answer_matches(m, c, r, &o)) {
            char want[160];
            if (w->ok) {
                struct expectation e = expect(m, w->gpa, c->access);
                snprintf(want, sizeof(want), "gpa %#llx: status %d, host %p, type %d",
                         (unsigned long long)w->gpa, (int)e.status, (void *)e.host, (int)e.type);
            } else {
                snprintf(want, sizeof(want), "fault %d error %#x", w->fault.vector,
                         w->fault.error_code);
            }
            FAIL(m, vi, "va %#llx size %u access %#x CPL %u AC %d root %u (method %u), nothing "
                        "stale allowed: the TLB gave %s; the walk gives %s",
                 (unsigned long long)c->va, c->size, c->access, c->cpl, c->ac, rt, c->method,
                 describe(r, got, sizeof(got)), want);
        }
        if (w->ok) {
            /* The entries hold the accessed and dirty bits the walk says a
             * CPU leaves: the translation was filled after the last edit of
             * each, by a walk that set them.  An entry that each root has a
             * copy of (the top level of a shared page) may have had them
             * set in another root's copy instead, by the walk that filled a
             * global translation there. */
            for (unsigned l = 0; l < w->nlevels; l++) {
                const struct vmmu_x86_walk_level *e = &w->levels[l];
                if (!e->host)
                    continue;
                uint64_t now_v = pt_get(m, e->gpa);
                for (unsigned q = 0; q < NPCID && now_v != e->new_value && l < n &&
                                     !private_page(x) && o.global;
                     q++) {
                    uint64_t cq = pt_get(m, m->slots[m->path[x][q][l]].gpa);
                    if (!((cq ^ e->new_value) & ~AD_MASK) &&
                        (cq & e->new_value & AD_MASK) == (e->new_value & AD_MASK)) {
                        now_v = e->new_value;
                        m->c.ad_other_root++;
                    }
                }
                if (now_v != e->new_value)
                    FAIL(m, vi, "va %#llx access %#x: the level-%u entry at %#llx holds %#llx "
                                "after the access; the walk leaves %#llx",
                         (unsigned long long)c->va, c->access, e->level,
                         (unsigned long long)e->gpa, (unsigned long long)now_v,
                         (unsigned long long)e->new_value);
                m->c.ad_checked++;
            }
        }
    } else {
        m->c.stale++;
        m->c.stale_in[m->mi]++;
        if (md->regs) {
            const struct slotlog *reg = &m->slots[walk_slot(m, vi, x, rt, 0)];
            m->c.pdpte_lag_stale += reg->t[reg->n - 1] > t[0]; /* a register loaded since */
        }
        uint64_t vals[NLVL][MAXW];
        unsigned nv[NLVL];
        uint64_t combos = 1;
        bool too_many = false;
        for (unsigned l = 0; l < n; l++) {
            nv[l] = window(m, walk_slot(m, vi, x, rt, l), t[l], vals[l]);
            too_many |= nv[l] > MAXW;
            combos *= nv[l];
        }
        bool found = false;
        if (too_many || combos > MAXCOMBOS) {
            m->c.unchecked++;
            any_global = true;
            all_global = false;
        } else {
            for (uint64_t k = 0; k < combos; k++) {
                uint64_t e[NLVL], rest = k;
                for (unsigned l = n; l-- > 0;) {
                    e[l] = vals[l][rest % nv[l]];
                    rest /= nv[l];
                }
                struct outcome oc = evaluate(md, e, c->va, c->access, c->cpl, c->ac);
                any_global |= oc.leaf && oc.global;
                all_global &= !oc.leaf || oc.global;
                found |= answer_matches(m, c, r, &oc);
            }
            if (!found) {
                char nbuf[80];
                size_t k = 0;
                for (unsigned l = 0; l < n; l++)
                    k += (size_t)snprintf(nbuf + k, sizeof(nbuf) - k, "%s%u", l ? " " : "", nv[l]);
                FAIL(m, vi, "va %#llx size %u access %#x CPL %u AC %d root %u (method %u): the "
                            "TLB gave %s, which none of the %llu translations the entries "
                            "allow gives (values since the bounds: %s; now the entries are "
                            "%s and the walk gives %s %#llx error %#x)",
                     (unsigned long long)c->va, c->size, c->access, c->cpl, c->ac, rt, c->method,
                     describe(r, got, sizeof(got)), (unsigned long long)combos, nbuf,
                     entries_str(curv, n, ebuf, sizeof(ebuf)), w->ok ? "gpa" : "a fault,",
                     (unsigned long long)w->gpa, w->fault.error_code);
            }
            if (!answer_matches(m, c, r, &o)) {
                m->c.stale_differs++;
                m->c.stale_differs_in[m->mi]++;
            }
        }
    }

    /* The guest-physical map is never stale. */
    if (r->res.status == VMMU_TLB_FAULT)
        m->c.faults++;
    if (r->res.status == VMMU_TLB_NOT_RAM)
        m->c.not_ram++;
    if (r->res.status == VMMU_TLB_OK) {
        if (r->where < 0)
            FAIL(m, vi, "va %#llx: host pointer %p is in no region of the current map",
                 (unsigned long long)c->va, r->host);
        if (r->paged_out)
            FAIL(m, vi, "va %#llx: host pointer %p is in page %#llx, which is paged out",
                 (unsigned long long)c->va, r->host, (unsigned long long)r->host_gpa);
        int ci = code_index(r->host_gpa);
        if (ci >= 0 && ci < NDATA && r->touched) {
            m->c.ident_checked++;
            if (r->word0 != m->ident[ci])
                FAIL(m, vi, "data page %#llx holds %#llx, not %#llx", (unsigned long long)
                     (r->host_gpa & ~0xfffull), (unsigned long long)r->word0,
                     (unsigned long long)m->ident[ci]);
        }
        if (c->access & VMMU_X86_ACC_WRITE) {
            bool reported = !r->hit && (r->res.flags & VMMU_TLB_FLAG_CODE);
            bool is_code = ci >= 0 && m->code[ci];
            if (reported != is_code)
                FAIL(m, vi, "a write to page %#llx (%s code page) was %s",
                     (unsigned long long)(r->host_gpa & ~0xfffull), is_code ? "a" : "not a",
                     reported ? "reported" : "not reported");
            m->c.code_writes += is_code;
            if (ci >= 0 && ci < NDATA && m->data_log) {
                uint32_t state = 0;
                assert_int_equal(vmmu_page_state_get(m->env.vm, r->host_gpa, &state), 0);
                if (!(state & VMMU_PAGE_DIRTY))
                    FAIL(m, vi, "a write to logged page %#llx left it clean",
                         (unsigned long long)r->host_gpa);
                m->data_written |= 1ull << ci;
                m->c.logged_writes++;
            }
        }
    }

    /* What the access may have filled. */
    uint64_t tf[NLVL];
    for (unsigned l = 0; l < n; l++)
        tf[l] = l + 1 < n ? min64(b->psc[p][walk_slot(m, vi, x, rt, l)], ta) : ta;
    bool nonglobal = !any_global || !all_global;
    note_fill(m, v->cur, vi, x, rt, p, ctx, tf, nonglobal, any_global, ta);
    for (unsigned k = 0; k < v->nmarks; k++)
        note_fill(m, v->marks[k].since, vi, x, rt, p, ctx, tf, nonglobal, any_global, ta);
    v->accessed = true;
}

/* One access by online vCPU @vi to tracked page @x: of kind @access
 * (VMMU_X86_ACC_*), or of a random kind if it is -1. */
static void access_kind(struct model *m, unsigned vi, unsigned x, int access)
{
    struct vmod *v = &m->v[vi];
    static const unsigned sizes[] = {1, 2, 4, 8, 16};
    struct cmd c;
    memset(&c, 0, sizeof(c));
    c.kind = CMD_ACCESS;
    c.size = sizes[rn(m, 5)];
    c.va = m->va[x] + (rn(m, 4) == 0 ? rn(m, 4096 - 16) : c.size * rn(m, 4096 / c.size));
    c.access = (unsigned[]){0, 0, VMMU_X86_ACC_WRITE, VMMU_X86_ACC_WRITE, VMMU_X86_ACC_FETCH}[rn(m, 5)];
    if (c.access != VMMU_X86_ACC_FETCH && rn(m, 10) == 0)
        c.access |= VMMU_X86_ACC_IMPLICIT;
    if (access >= 0)
        c.access = (unsigned)access;
    if (rn(m, 6) == 0) { /* a context switch now and then: translations are reused */
        v->cpl = rn(m, 3) ? 0 : 3;
        v->ac = rn(m, 3) != 0;
    }
    c.cpl = v->cpl;
    c.ac = v->ac;
    c.method = rn(m, 4);
    struct reply r;
    send(m, vi, &c, &r);
    check_access(m, vi, x, &c, &r);
}

static void access_page(struct model *m, unsigned vi, unsigned x)
{
    access_kind(m, vi, x, -1);
}

static void act_access(struct model *m)
{
    /* Runs of accesses by one vCPU, as a scheduler gives them. */
    unsigned vi = m->v[m->last].online && rn(m, 4) ? m->last : pick_online(m);
    m->last = vi;
    access_page(m, vi, pick_page(m));
}

/* ---- Guest page-table edits ------------------------------------------------------ */

static void act_edit(struct model *m)
{
    const struct mode *md = m->md;
    unsigned x = pick_page(m), p = private_page(x) ? rn(m, NPCID) : 0;
    unsigned s = pte_slot(m, x, p);
    uint64_t old = slot_now(m, s);
    switch (rn(m, 11)) {
    case 0:
    case 1:
    case 2: /* a new leaf */
        slot_write(m, s, random_leaf(m, !private_page(x), 0));
        break;
    case 3: { /* one attribute flipped (no XD in 32-bit paging) */
        static const uint64_t bits[] = {E_P, E_RW, E_US, E_G, E_NX};
        uint64_t bit = private_page(x) ? bits[rn(m, 3)] : bits[rn(m, 4)];
        if (md->nx && rn(m, 5) == 0)
            bit = E_NX;
        slot_write(m, s, old ^ bit);
        break;
    }
    case 4: { /* retargeted, the same rights */
        uint64_t target = random_leaf(m, false, 0) & ADDR_MASK;
        slot_write(m, s, (old & ~ADDR_MASK) | target);
        break;
    }
    case 5: /* A and D cleared */
        slot_write(m, s, old & ~AD_MASK);
        break;
    case 6: /* region A's PDE rights (the paging-structure caches hold them) */
        shared_write(m, IA, 2, random_upper(m, 2, m->t_a));
        break;
    case 7: /* region B's PDE: the large page or the table */
        shared_write(m, IB, 2, rn(m, 2) ? random_leaf(m, true, 2)
                                        : table_entry(m, 2, m->t_b) |
                                              (rn(m, 4) || !md->nx ? 0 : E_NX));
        break;
    case 8: /* region D's entry: a PDPTE flipping between a 1 GiB page and the
             * directory; in 32-bit paging a PDE flipping between a 4 MiB page and
             * the table; in PAE paging a PDPTE, present or not (its registers
             * see it at the next MOV to CR3 only) */
        if (md->regs)
            shared_write(m, ID, md->d_level, random_upper(m, md->d_level, m->t_d));
        else
            shared_write(m, ID, md->d_level,
                         rn(m, 2) ? random_leaf(m, true, md->d_level)
                                  : table_entry(m, md->d_level, m->t_d) |
                                        (rn(m, 4) || !md->nx ? 0 : E_NX));
        break;
    case 9: /* region E's top-level entry (PML5E, PML4E, PDPTE, PDE) in every root */
        shared_write(m, IE, md->nlvl, random_upper(m, md->nlvl, m->t_e));
        break;
    default: { /* a leaf of region C in any root's tables */
        unsigned q = rn(m, NPCID);
        unsigned s2 = pte_slot(m, IC + rn(m, NC), q);
        slot_write(m, s2, random_leaf(m, false, 0));
        break;
    }
    }
}

/* ---- Requests ---------------------------------------------------------------------- */

/* A PCID for a request: mostly one the vCPUs run (without CR4.PCIDE only
 * PCID 0), else any. */
static int pick_pcid(struct model *m)
{
    return rn(m, 3) ? (int)root_pcid(m, rn(m, NPCID)) : pcid_pool[rn(m, 12)];
}

static struct vmmu_flush random_flush(struct model *m)
{
    struct vmmu_flush f;
    memset(&f, 0, sizeof(f));
    unsigned k = rn(m, 32);
    if (k == 0) {
        f.type = VMMU_FLUSH_ALL;
    } else if (k < 5) {
        f.type = VMMU_FLUSH_CONTEXTS;
        f.contexts = 1 + rn(m, 7);
    } else if (k < 13) {
        f.type = VMMU_FLUSH_PCID;
        f.pcid = pick_pcid(m);
    } else {
        f.type = VMMU_FLUSH_RANGE;
        unsigned x = pick_page(m);
        f.va = m->va[x] - 4096ull * rn(m, 3) + (rn(m, 4) ? 0 : rn(m, 4096));
        f.npages = rn(m, 20) ? 1 + rn(m, 3) : 17 + rn(m, 24);
        f.pcid = rn(m, 3) ? pick_pcid(m) : VMMU_FLUSH_ANY_PCID;
    }
    return f;
}

static void count_request(struct model *m, const struct vmmu_flush *f)
{
    m->c.req_type[f->type]++;
    if (f->type == VMMU_FLUSH_RANGE) {
        m->c.req_big_range += f->npages > 16;
        m->c.req_any_pcid += f->pcid == VMMU_FLUSH_ANY_PCID;
    }
}

/* The targets: NULL (every vCPU) or the model's cpuset with a random
 * choice of ids, perhaps ids no vCPU has, perhaps none. */
static const struct vmmu_cpuset *random_targets(struct model *m)
{
    if (rn(m, 5) == 0) {
        m->c.req_null_targets++;
        return NULL;
    }
    assert_int_equal(vmmu_cpuset_clear(m->set), 0);
    if (rn(m, 12)) {
        for (unsigned i = 0; i < m->nv; i++)
            if (rn(m, 2))
                assert_int_equal(vmmu_cpuset_add(m->set, m->v[i].id), 0);
    }
    if (rn(m, 4) == 0) {
        static const int unknown[] = {5, 7, 63, 64, 200};
        assert_int_equal(vmmu_cpuset_add(m->set, unknown[rn(m, 5)]), 0);
        m->c.req_unknown++;
    }
    if (vmmu_cpuset_count(m->set) == 0)
        m->c.req_empty++;
    return m->set;
}

static bool targeted(const struct model *m, const struct vmmu_cpuset *set, unsigned vi)
{
    return !set || vmmu_cpuset_has(set, m->v[vi].id);
}

/* A shootdown by vCPU @self (or the main thread, -1) has returned. */
static void model_shootdown(struct model *m, int self, const struct vmmu_cpuset *set,
                            const struct vmmu_flush *f, bool sync)
{
    m->now++;
    count_request(m, f);
    if (sync)
        m->c.req_sync++;
    else
        m->c.req_async++;
    if (self < 0)
        m->c.req_from_host++;
    else
        settle(m, (unsigned)self, &m->c.settle_self); /* a safe point for self */
    for (unsigned vi = 0; vi < m->nv; vi++) {
        if (!targeted(m, set, vi))
            continue;
        if ((int)vi == self) {
            m->c.req_self_in++;
            drop_now(m, vi, f);
        } else if (sync && m->v[vi].online) {
            drop_now(m, vi, f);
        } else {
            post_deferred(m, vi, f);
        }
    }
}

/* Make room for more outstanding requests: a vCPU close to the model's
 * limit passes a safe point (or comes online). */
static void make_room(struct model *m)
{
    for (unsigned vi = 0; vi < m->nv; vi++) {
        if (m->v[vi].npend + 16 < MAXPEND)
            continue;
        if (m->v[vi].online)
            safepoint(m, vi);
        else
            go_online(m, vi);
    }
}

static void shoot(struct model *m, int self, const struct vmmu_cpuset *set,
                  const struct vmmu_flush *f, bool sync)
{
    int rc;
    if (self < 0) {
        rc = sync ? vmmu_shootdown_sync(m->env.vm, NULL, set, f)
                  : vmmu_shootdown_async(m->env.vm, NULL, set, f);
    } else {
        struct cmd c;
        struct reply r;
        memset(&c, 0, sizeof(c));
        c.kind = CMD_SHOOT;
        c.sync = sync;
        c.targets = set;
        c.f = *f;
        send(m, (unsigned)self, &c, &r);
        rc = r.rc;
    }
    if (rc)
        FAIL(m, self, "vmmu_shootdown_%s (type %d) returned %s", sync ? "sync" : "async",
             (int)f->type, vmmu_error_name(rc));
    model_shootdown(m, self, set, f, sync);
}

static void act_shootdown(struct model *m)
{
    make_room(m);
    int self = rn(m, 3) == 0 ? -1 : (int)pick_online(m);
    const struct vmmu_cpuset *set = random_targets(m);
    struct vmmu_flush f = random_flush(m);
    shoot(m, self, set, &f, rn(m, 2));
}

/* What a guest does to change a mapping: rewrite the leaves of one to
 * three neighbouring pages (or a page's PDE), then shoot those pages down
 * in one PCID or all, synchronously or not, from a vCPU or the host. */
static void act_remap(struct model *m)
{
    make_room(m);
    unsigned x = pick_page(m), n = 1 + rn(m, 3), p = rn(m, NPCID);
    int pcid = private_page(x) || rn(m, 2) ? (int)root_pcid(m, p) : VMMU_FLUSH_ANY_PCID;
    if (rn(m, 8) == 0 && x >= IB && x < IC) {
        shared_write(m, IB, 2, rn(m, 2) ? random_leaf(m, true, 2)
                                        : table_entry(m, 2, m->t_b) |
                                              (rn(m, 4) || !m->md->nx ? 0 : E_NX));
    } else {
        for (unsigned k = 0; k < NVA; k++)
            if (m->va[k] >= m->va[x] && m->va[k] < m->va[x] + 4096ull * n)
                slot_write(m, pte_slot(m, k, p), random_leaf(m, !private_page(k), 0));
    }
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = m->va[x], .npages = n, .pcid = pcid};
    int self = rn(m, 3) == 0 ? -1 : (int)pick_online(m);
    const struct vmmu_cpuset *set = rn(m, 2) ? NULL : random_targets(m);
    m->c.remaps++;
    shoot(m, self, set, &f, rn(m, 3) != 0);
}

/* A guest's batched remote flush: the target uses a few pages, often goes
 * offline, each page is remapped and shot down asynchronously to it (one
 * page each, so the requests merge without overflowing), then it passes a
 * safe point or comes online, or neither, and uses the pages again. */
static void act_batch(struct model *m)
{
    make_room(m);
    unsigned vi = rn(m, m->nv), n = 2 + rn(m, 5), xs[6];
    if (!m->v[vi].online)
        go_online(m, vi);
    for (unsigned k = 0; k < n; k++) {
        xs[k] = pick_page(m);
        access_page(m, vi, xs[k]);
    }
    if (rn(m, 2))
        go_offline(m, vi);
    int self = -1;
    for (unsigned k = 0; k < m->nv && rn(m, 2); k++)
        if (k != vi && m->v[k].online)
            self = (int)k;
    assert_int_equal(vmmu_cpuset_clear(m->set), 0);
    assert_int_equal(vmmu_cpuset_add(m->set, m->v[vi].id), 0);
    for (unsigned k = 0; k < n; k++) {
        unsigned p = m->v[vi].root;
        slot_write(m, pte_slot(m, xs[k], p), random_leaf(m, !private_page(xs[k]), 0));
        struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = m->va[xs[k]], .npages = 1,
                               .pcid = rn(m, 2) ? (int)root_pcid(m, p) : VMMU_FLUSH_ANY_PCID};
        shoot(m, self, m->set, &f, false);
    }
    m->c.batches++;
    if (!m->v[vi].online)
        go_online(m, vi);
    else if (rn(m, 3))
        safepoint(m, vi);
    for (unsigned k = 0; k < n; k++)
        access_page(m, vi, xs[k]);
}

static void mov_cr3(struct model *m, unsigned vi, unsigned p, bool noflush);
static void invlpg(struct model *m, unsigned vi, unsigned x);

/* A flush of a PCID the target is not running: it uses a few pages in PCID
 * p, switches to another PCID without flushing, the pages are remapped and
 * p is flushed remotely (by PCID, by range in p or in every PCID, or by
 * the contexts the pages were used in), and it switches back to p without
 * flushing and uses the pages again.  Without CR4.PCIDE the same steps
 * switch roots, every MOV to CR3 flushes PCID 0's non-global entries, and
 * what is left to flush are the global ones. */
static void act_pcid_dance(struct model *m)
{
    make_room(m);
    unsigned vi = pick_online(m), n = 1 + rn(m, 4), xs[5];
    struct vmod *v = &m->v[vi];
    unsigned p = v->root, q = (p + 1 + rn(m, NPCID - 1)) % NPCID;
    for (unsigned k = 0; k < n; k++) {
        xs[k] = rn(m, 2) ? IC + rn(m, NC) : pick_page(m);
        access_page(m, vi, xs[k]);
    }
    mov_cr3(m, vi, q, true);
    for (unsigned k = 0; k < n; k++)
        slot_write(m, pte_slot(m, xs[k], p), random_leaf(m, !private_page(xs[k]), 0));
    m->c.dances++;
    if (rn(m, 5) == 0) {
        /* INVLPG in the other PCID: drops the pages' global entries in p
         * (only those: the rest may stay stale). */
        for (unsigned k = 0; k < n; k++)
            invlpg(m, vi, xs[k]);
        mov_cr3(m, vi, p, true);
        for (unsigned k = 0; k < n; k++)
            access_page(m, vi, xs[k]);
        return;
    }
    struct vmmu_flush f;
    memset(&f, 0, sizeof(f));
    unsigned kind = rn(m, 4);
    if (kind == 0) {
        f.type = VMMU_FLUSH_PCID;
        f.pcid = (int)root_pcid(m, p);
    } else if (kind == 3) {
        f.type = VMMU_FLUSH_CONTEXTS;
        f.contexts = 1u << ctx_of(0, v->cpl, v->ac);
        f.contexts |= rn(m, 2) ? 1u << rn(m, 3) : 0;
    } else {
        f.type = VMMU_FLUSH_RANGE;
        f.va = m->va[xs[0]];
        f.npages = 1;
        f.pcid = kind == 1 ? (int)root_pcid(m, p) : VMMU_FLUSH_ANY_PCID;
    }
    /* From the target itself, another vCPU or the host; to it alone or to all. */
    int self = rn(m, 3) == 0 ? (int)vi : rn(m, 2) ? -1 : (int)pick_online(m);
    const struct vmmu_cpuset *set = NULL;
    if (rn(m, 2)) {
        assert_int_equal(vmmu_cpuset_clear(m->set), 0);
        assert_int_equal(vmmu_cpuset_add(m->set, v->id), 0);
        set = m->set;
    }
    bool sync = rn(m, 2);
    shoot(m, self, set, &f, sync);
    if ((!sync && self != (int)vi && rn(m, 3)) || !v->online) {
        if (v->online)
            safepoint(m, vi);
        else
            go_online(m, vi);
    }
    mov_cr3(m, vi, p, true);
    for (unsigned k = 0; k < n; k++)
        access_page(m, vi, xs[k]);
}

/* Several asynchronous requests to one target before its next safe point:
 * more than 8 PCIDs, more than 16 pages, or both, often while it is
 * offline, so that they merge and overflow. */
static void act_burst(struct model *m)
{
    make_room(m);
    unsigned vi = rn(m, m->nv);
    if (m->v[vi].online && rn(m, 3))
        go_offline(m, vi);
    m->c.bursts++;
    unsigned kind = rn(m, 3), n = kind == 0 ? 9 + rn(m, 4) : 5 + rn(m, 8);
    uint16_t pool[12];
    memcpy(pool, pcid_pool, sizeof(pool));
    for (unsigned i = 11; i > 0; i--) {
        unsigned j = rn(m, i + 1);
        uint16_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
    }
    int self = rn(m, 2) ? -1 : (int)pick_online(m);
    assert_int_equal(vmmu_cpuset_clear(m->set), 0);
    assert_int_equal(vmmu_cpuset_add(m->set, m->v[vi].id), 0);
    if (rn(m, 3) == 0)
        assert_int_equal(vmmu_cpuset_add(m->set, m->v[rn(m, m->nv)].id), 0);
    for (unsigned i = 0; i < n && m->v[vi].npend + 2 < MAXPEND; i++) {
        struct vmmu_flush f;
        memset(&f, 0, sizeof(f));
        bool pcid = kind == 0 || (kind == 2 && rn(m, 2));
        if (pcid) {
            f.type = VMMU_FLUSH_PCID;
            f.pcid = pool[i % 12];
        } else {
            unsigned x = pick_page(m);
            f.type = VMMU_FLUSH_RANGE;
            f.va = m->va[x] - 4096ull * rn(m, 2);
            f.npages = 1 + rn(m, 3);
            f.pcid = rn(m, 3) ? pick_pcid(m) : VMMU_FLUSH_ANY_PCID;
        }
        if (self >= 0 && !m->v[self].online)
            self = -1;
        shoot(m, self, m->set, &f, false);
    }
    if (!m->v[vi].online && rn(m, 2))
        go_online(m, vi);
}

/* ---- Local invalidations ---------------------------------------------------------- */

/* PAE paging: vCPU @vi loads its PDPTE registers from root @p's PDPT. */
static void pdpte_load(struct model *m, unsigned vi, unsigned p)
{
    struct vmod *v = &m->v[vi];
    for (unsigned j = 0; j < 4; j++) {
        uint64_t e = pt_get(m, m->root[p] + 8 * j);
        if (e != slot_now(m, v->reg[j])) {
            slot_log(m, v->reg[j], e);
            m->c.pdpte_loads++;
        }
    }
}

/* MOV to CR3 by vCPU @vi: root @p, as PCID p with CR4.PCIDE.  What it
 * drops (SDM 4.10.4.1): with CR4.PCIDE=0 every non-global entry and every
 * paging-structure-cache entry (all PCID 0); with PCIDE=1 those of the new
 * PCID unless bit 63 is set.  Bit 63 exists only with PCIDE=1 (with it
 * clear and EFER.LMA=1 it is a #GP, SDM Vol. 2 MOV to CR: so it is never
 * set then).  In PAE paging it also loads the four PDPTE registers from
 * the new CR3 (SDM 4.4.1); global entries filled from the old ones stay. */
static void mov_cr3(struct model *m, unsigned vi, unsigned p, bool noflush)
{
    struct vmod *v = &m->v[vi];
    struct cmd c;
    struct reply r;
    noflush = noflush && m->md->pcid;
    memset(&c, 0, sizeof(c));
    c.kind = CMD_CR3;
    c.value = m->root[p] | root_pcid(m, p) | (noflush ? VMMU_X86_CR3_NOFLUSH : 0);
    send(m, vi, &c, &r);
    if (r.rc || r.fault.vector != VMMU_X86_FAULT_NONE)
        FAIL(m, vi, "MOV to CR3 returned %s, vector %d", vmmu_error_name(r.rc), r.fault.vector);
    v->root = p;
    if (m->md->regs)
        pdpte_load(m, vi, p);
    if (noflush) {
        m->c.cr3_noflush++;
    } else {
        m->c.cr3++;
        drop_pcid(v->cur, NULL, root_pcid(m, p));
    }
    m->now++;
}

/* INVLPG of page @x by vCPU @vi: the page in the current PCID, its global
 * entries in every PCID, every cache of the current PCID.  It loads no
 * PDPTE register (SDM 4.4.1 lists what does; 4.10.4.1: INVLPG). */
static void invlpg(struct model *m, unsigned vi, unsigned x)
{
    struct vmod *v = &m->v[vi];
    unsigned p = root_pcid(m, v->root);
    struct cmd c;
    struct reply r;
    memset(&c, 0, sizeof(c));
    c.kind = CMD_INVLPG;
    c.va = m->va[x] + rn(m, 4096);
    send(m, vi, &c, &r);
    if (r.rc)
        FAIL(m, vi, "INVLPG returned %s", vmmu_error_name(r.rc));
    m->c.invlpg++;
    drop_ng(v->cur, NULL, x, p, 7);
    drop_g(v->cur, NULL, x, 7);
    drop_psc(v->cur, NULL, p);
    m->now++;
}

static void act_local(struct model *m)
{
    unsigned vi = pick_online(m);
    struct vmod *v = &m->v[vi];
    struct bounds *b = v->cur;
    struct cmd c;
    struct reply r;
    memset(&c, 0, sizeof(c));
    unsigned x = rn(m, NVA);
    switch (rn(m, 10)) {
    case 0:
    case 1:
    case 7:
        invlpg(m, vi, x);
        break;
    case 2: { /* INVPCID, now and then at CPL 3 (#GP, nothing dropped); with
               * CR4.PCIDE=0, types 0 and 1 naming a PCID other than 0 are a
               * #GP too (SDM Vol. 2 INVPCID, as vcpu.h says) */
        c.kind = CMD_INVPCID;
        c.type = rn(m, 4);
        c.pcid = (uint64_t)pick_pcid(m);
        c.va = m->va[x] + rn(m, 4096);
        c.cpl = rn(m, 12) ? 0 : 3;
        send(m, vi, &c, &r);
        v->cpl = c.cpl;
        if (r.rc || r.rc_regs)
            FAIL(m, vi, "INVPCID returned %s", vmmu_error_name(r.rc ? r.rc : r.rc_regs));
        if (c.cpl) {
            if (r.fault.vector != VMMU_X86_VEC_GP)
                FAIL(m, vi, "INVPCID at CPL 3 gave vector %d, not #GP", r.fault.vector);
            m->c.invpcid_gp++;
            break;
        }
        if (!m->md->pcid && c.type <= 1 && c.pcid != 0) {
            if (r.fault.vector != VMMU_X86_VEC_GP)
                FAIL(m, vi, "INVPCID type %u of PCID %llu with CR4.PCIDE=0 gave vector %d, "
                            "not #GP", c.type, (unsigned long long)c.pcid, r.fault.vector);
            m->c.invpcid_gp_nopcid++;
            break;
        }
        if (r.fault.vector != VMMU_X86_FAULT_NONE)
            FAIL(m, vi, "INVPCID type %u PCID %llu faulted (%d)", c.type,
                 (unsigned long long)c.pcid, r.fault.vector);
        m->c.invpcid[c.type]++;
        int p = model_pcid((int)c.pcid);
        if (c.type == 0 && p >= 0) {
            /* The caches used to translate it: of the walk in the PCID's
             * root (without PCIDE, PCID 0 holds only the current root's). */
            unsigned rt = m->md->pcid ? (unsigned)p : v->root;
            drop_ng(b, NULL, x, (unsigned)p, 7);
            for (unsigned l = 0; l + 1 < m->md->nlvl; l++)
                b->psc[p][walk_slot(m, vi, x, rt, l)] = INF;
        } else if (c.type == 1 && p >= 0) {
            drop_pcid(b, NULL, (unsigned)p);
        } else if (c.type == 2) {
            drop_everything(b, NULL);
        } else if (c.type == 3) {
            for (unsigned q = 0; q < NPCID; q++)
                drop_pcid(b, NULL, q);
        }
        break;
    }
    case 3:
    case 4:
    case 8: /* MOV to CR3, with or without the no-flush bit */
        mov_cr3(m, vi, rn(m, NPCID), rn(m, 2));
        break;
    case 5: /* everything, or the guest's local-only flush */
        if (rn(m, 3))
            goto local_only;
        c.kind = CMD_FLUSH_ALL;
        send(m, vi, &c, &r);
        if (r.rc)
            FAIL(m, vi, "vmmu_vcpu_tlb_flush_all returned %s", vmmu_error_name(r.rc));
        m->c.flush_all++;
        drop_everything(b, NULL);
        break;
    default: /* the guest's local-only flush */
    local_only:
        c.kind = CMD_FLUSH_LOCAL;
        c.f = random_flush(m);
        send(m, vi, &c, &r);
        if (r.rc)
            FAIL(m, vi, "vmmu_flush_local (type %d) returned %s", (int)c.f.type,
                 vmmu_error_name(r.rc));
        m->c.flush_local++;
        count_request(m, &c.f);
        drop_now(m, vi, &c.f);
        break;
    }
    m->now++;
}

/* ---- Host changes --------------------------------------------------------------- */

static uint64_t data_ident(unsigned i)
{
    return IDENT_TAG | (DATA_GPA + 4096ull * i);
}

/* (Re)make the second region: RAM, ROM or MMIO, or remove it (HOLE). */
static void r2_set(struct model *m, enum vmmu_mem_type type)
{
    static const struct vmmu_mmio_ops ops = {0};
    struct vmmu_vm *vm = m->env.vm;
    int rc;
    if (type == VMMU_MEM_HOLE) {
        rc = vmmu_region_remove(vm, m->r2_id);
        m->r2_id = 0;
        m->r2_host = NULL;
    } else {
        struct vmmu_region_desc d = {.type = type, .gpa = R2_GPA, .size = R2_PAGES * 4096ull,
                                     .name = "r2", .mmio = type == VMMU_MEM_MMIO ? &ops : NULL};
        rc = m->r2_id ? vmmu_region_replace(vm, m->r2_id, &d, &m->r2_id)
                      : vmmu_region_add(vm, &d, &m->r2_id);
        if (!rc) {
            struct vmmu_region_info info;
            assert_int_equal(vmmu_region_info(vm, m->r2_id, &info), 0);
            m->r2_host = info.host;
        }
    }
    if (rc)
        FAIL(m, -1, "making region 2 of type %d returned %s", (int)type, vmmu_error_name(rc));
    m->r2_type = type;
    memset(m->code + NDATA, 0, sizeof(m->code[0]) * R2_PAGES);
}

/* Up to @max pages the pager may take: data pages, page-table pages, and
 * the second region's when it is RAM. */
static size_t pager_ranges(struct model *m, struct vmmu_gpa_range *r, size_t max, bool tables)
{
    size_t n = 1 + rn(m, (unsigned)max);
    for (size_t i = 0; i < n; i++) {
        unsigned k = rn(m, 8);
        if (tables && k < 3)
            r[i].gpa = PT_GPA + 4096ull * rn(m, m->pt_used);
        else if (k == 3 && m->r2_type == VMMU_MEM_RAM)
            r[i].gpa = R2_GPA + 4096ull * rn(m, R2_PAGES);
        else if (k < 6)
            r[i].gpa = mapped_gpa(m);
        else
            r[i].gpa = DATA_GPA + 4096ull * rn(m, NDATA);
        r[i].size = 4096;
    }
    return n;
}

static void host_rc(struct model *m, int rc, enum host_kind k)
{
    if (rc)
        FAIL(m, -1, "host change '%s' returned %s", host_names[k], vmmu_error_name(rc));
}

static void act_host(struct model *m)
{
    struct vmmu_vm *vm = m->env.vm;
    struct vmmu_gpa_range r[4];
    enum host_kind k = (enum host_kind)rn(m, NHOST);
    /* Changes after which a write must take the slow path (a code mark,
     * dirty logging turned on, the log read): now and then a vCPU writes a
     * hot page before (so a fast write entry may be cached) and after. */
    int pvi = -1;
    unsigned px = 0;
    if ((k == H_CODE || (k == H_LOG && !m->data_log) || k == H_LOG_READ) && rn(m, 2)) {
        pvi = (int)pick_online(m);
        px = m->hot[rn(m, 6)];
        access_kind(m, (unsigned)pvi, px, VMMU_X86_ACC_WRITE);
        m->c.primed++;
    }
    switch (k) {
    case H_CODE:
    case H_UNCODE: {
        bool r2 = m->r2_type == VMMU_MEM_RAM || m->r2_type == VMMU_MEM_ROM;
        size_t n = 1 + rn(m, 3);
        bool on = k == H_CODE;
        int idx[4];
        for (size_t i = 0; i < n; i++) {
            idx[i] = (int)(r2 ? rn(m, NDATA + R2_PAGES) : rn(m, NDATA));
            if (rn(m, 2))
                idx[i] = code_index(mapped_gpa(m));
            if (i == 0 && pvi >= 0) { /* the page the primed write went to */
                uint64_t e = slot_now(m, pte_slot(m, px, m->v[pvi].root));
                int ci = code_index(e & ADDR_MASK);
                if (ci >= 0 && (ci < NDATA || r2))
                    idx[i] = ci;
            }
            r[i].gpa = idx[i] < NDATA ? DATA_GPA + 4096ull * (unsigned)idx[i]
                                      : R2_GPA + 4096ull * (unsigned)(idx[i] - NDATA);
            r[i].size = 4096;
        }
        host_rc(m, vmmu_page_state_change(vm, r, n, on ? VMMU_PAGE_CODE : 0,
                                          on ? 0 : VMMU_PAGE_CODE), k);
        for (size_t i = 0; i < n; i++)
            m->code[idx[i]] = on;
        break;
    }
    case H_LOG:
        m->data_log = !m->data_log;
        host_rc(m, vmmu_dirty_log_enable(vm, m->data_id, m->data_log), k);
        m->data_written = 0;
        break;
    case H_LOG_READ: {
        if (!m->data_log)
            return;
        uint64_t bitmap = 0;
        host_rc(m, vmmu_dirty_log_get_and_clear(vm, m->data_id, &bitmap, 1, NULL), k);
        if ((bitmap & m->data_written) != m->data_written)
            FAIL(m, -1, "the dirty log %#llx misses pages written since it was read (%#llx)",
                 (unsigned long long)bitmap, (unsigned long long)m->data_written);
        m->data_written = 0;
        break;
    }
    case H_R2:
        if (m->r2_type == VMMU_MEM_HOLE) {
            r2_set(m, rn(m, 3) ? VMMU_MEM_RAM : VMMU_MEM_ROM);
        } else {
            static const enum vmmu_mem_type types[] = {VMMU_MEM_RAM, VMMU_MEM_RAM, VMMU_MEM_ROM,
                                                       VMMU_MEM_MMIO, VMMU_MEM_HOLE};
            r2_set(m, types[rn(m, 5)]);
        }
        break;
    case H_PAGE_OUT: {
        size_t n = pager_ranges(m, r, 4, true);
        for (size_t i = 0; i < n; i++)
            m->c.pt_pageouts += r[i].gpa >= PT_GPA && r[i].gpa < PT_GPA + PT_PAGES * 4096ull;
        host_rc(m, vmmu_pager_page_out(m->pager, r, n), k);
        break;
    }
    case H_PAGE_IN: {
        size_t n = pager_ranges(m, r, 4, true);
        host_rc(m, vmmu_pager_page_in(m->pager, r, n), k);
        break;
    }
    case H_BALLOON_OUT: {
        size_t n = pager_ranges(m, r, 3, false);
        host_rc(m, vmmu_pager_balloon_out(m->pager, r, n), k);
        for (size_t i = 0; i < n; i++)
            if (r[i].gpa >= DATA_GPA && r[i].gpa < DATA_GPA + NDATA * 4096ull)
                m->ident[(r[i].gpa - DATA_GPA) >> 12] = 0;
        break;
    }
    case H_BALLOON_IN: {
        size_t n = pager_ranges(m, r, 3, false);
        host_rc(m, vmmu_pager_balloon_in(m->pager, r, n), k);
        for (size_t i = 0; i < n; i++) {
            if (r[i].gpa < DATA_GPA || r[i].gpa >= DATA_GPA + NDATA * 4096ull)
                continue;
            unsigned di = (unsigned)((r[i].gpa - DATA_GPA) >> 12);
            if (m->ident[di])
                continue;
            m->ident[di] = data_ident(di);
            host_rc(m, vmmu_gpa_write(vm, r[i].gpa, &m->ident[di], 8, 0, NULL), k);
        }
        break;
    }
    default: {
        uint64_t out = 0;
        host_rc(m, vmmu_pager_balance(m->pager, &out), k);
        break;
    }
    }
    m->c.host[k]++;
    for (unsigned vi = 0; vi < m->nv; vi++)
        if (!m->v[vi].online) {
            m->c.host_offline++;
            break;
        }
    m->now++;
    if (pvi >= 0)
        access_kind(m, (unsigned)pvi, px, VMMU_X86_ACC_WRITE);
}

/* ---- A seed ---------------------------------------------------------------------- */

static void stop_workers(struct model *m)
{
    for (unsigned vi = 0; vi < m->nv; vi++) {
        struct vmod *v = &m->v[vi];
        if (!v->w.v)
            continue;
        struct cmd c;
        struct reply r;
        memset(&c, 0, sizeof(c));
        c.kind = CMD_EXIT;
        send(m, vi, &c, &r);
        pthread_join(v->w.th, NULL);
        pthread_cond_destroy(&v->w.cv);
        pthread_cond_destroy(&v->w.done_cv);
        pthread_mutex_destroy(&v->w.mu);
        vmmu_vcpu_destroy(v->w.v);
        v->w.v = NULL;
    }
}

static void free_model(struct model *m)
{
    if (!m->wedged) {
        stop_workers(m);
        if (m->pager)
            vmmu_pager_destroy(m->pager);
        env_fini(&m->env);
    }
    for (unsigned vi = 0; vi < MAXV; vi++) {
        free(m->v[vi].cur);
        for (unsigned k = 0; k < MAXMARK; k++)
            free(m->v[vi].marks[k].since);
    }
    for (unsigned s = 0; s < m->nslots; s++) {
        free(m->slots[s].t);
        free(m->slots[s].val);
    }
    vmmu_cpuset_destroy(m->set);
    free(m);
}

static uint8_t *region_host(struct model *m, uint32_t id)
{
    struct vmmu_region_info info;
    assert_int_equal(vmmu_region_info(m->env.vm, id, &info), 0);
    return info.host;
}

static void start_vcpu(struct model *m, unsigned vi)
{
    struct vmod *v = &m->v[vi];
    struct worker *w = &v->w;
    v->cur = malloc(sizeof(*v->cur));
    assert_non_null(v->cur);
    bounds_clear(v->cur);
    for (unsigned k = 0; k < MAXMARK; k++) {
        v->marks[k].since = malloc(sizeof(struct bounds));
        assert_non_null(v->marks[k].since);
    }
    assert_int_equal(vmmu_vcpu_create(m->env.vm, NULL, &w->v), 0);
    v->id = vmmu_vcpu_id(w->v);
    assert_true(v->id >= 0);
    w->vm = m->env.vm;
    pthread_condattr_t ca;
    assert_int_equal(pthread_condattr_init(&ca), 0);
    assert_int_equal(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), 0);
    assert_int_equal(pthread_mutex_init(&w->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&w->cv, &ca), 0);
    assert_int_equal(pthread_cond_init(&w->done_cv, &ca), 0);
    pthread_condattr_destroy(&ca);
    assert_int_equal(pthread_create(&w->th, NULL, worker_main, w), 0);

    v->root = vi % NPCID;
    struct cmd c;
    struct reply r;
    memset(&c, 0, sizeof(c));
    c.kind = CMD_START;
    c.regs.cr0 = m->md->cr0;
    c.regs.cr4 = m->md->cr4;
    c.regs.efer = m->md->efer;
    c.regs.cr3 = m->root[v->root] | root_pcid(m, v->root);
    c.regs.rflags = 2;
    send(m, vi, &c, &r);
    if (r.rc)
        FAIL(m, vi, "starting the vCPU returned %s", vmmu_error_name(r.rc));
    v->online = true;
    /* PAE paging: vmmu_vcpu_set_state() loaded the PDPTE registers. */
    if (m->md->regs)
        for (unsigned j = 0; j < 4; j++)
            v->reg[j] = slot_new(m, 0, true, pt_get(m, m->root[v->root] + 8 * j));
}

static void add_counters(struct counters *to, const struct counters *from)
{
    const unsigned long *f = (const unsigned long *)from;
    unsigned long *t = (unsigned long *)to;
    for (size_t i = 0; i < sizeof(*from) / sizeof(unsigned long); i++)
        t[i] += f[i];
}

/* The paging mode of seed @seed: VMMU_SYNC_MODEL_MODE names one for every
 * seed (4-level+PCID, 4-level, 5-level+PCID, PAE, 32-bit, or an index);
 * else they take turns, seed 1 in 4-level paging with PCIDs. */
static unsigned mode_of_seed(uint64_t seed)
{
    const char *want = getenv("VMMU_SYNC_MODEL_MODE");
    if (want && *want) {
        for (unsigned i = 0; i < NMD; i++)
            if (!strcmp(want, modes[i].name))
                return i;
        char *end;
        unsigned long i = strtoul(want, &end, 10);
        if (!*end && i < NMD)
            return (unsigned)i;
        fail_msg("VMMU_SYNC_MODEL_MODE=%s names no mode", want);
    }
    return (unsigned)((seed + NMD - 1) % NMD);
}

static void run_seed(uint64_t seed, unsigned steps, struct counters *tot)
{
    struct model *m = live_model = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->mi = mode_of_seed(seed);
    m->md = &modes[m->mi];
    m->c.seeds_in[m->mi]++;
    m->seed = seed;
    m->rng = seed * 0x9e3779b97f4a7c15ull + 0x5151;
    m->nv = 3 + (unsigned)(seed & 1);
    assert_int_equal(env_init(&m->env, RAM0_SIZE, NULL), 0);
    assert_int_equal(vmmu_cpuset_create(&m->set), 0);
    struct vmmu_vm *vm = m->env.vm;
    struct vmmu_region_desc pt = {.type = VMMU_MEM_RAM, .gpa = PT_GPA,
                                  .size = PT_PAGES * 4096ull, .name = "tables"};
    struct vmmu_region_desc data = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA,
                                    .size = NDATA * 4096ull, .name = "data"};
    assert_int_equal(vmmu_region_add(vm, &pt, &m->pt_id), 0);
    assert_int_equal(vmmu_region_add(vm, &data, &m->data_id), 0);
    m->pt_host = region_host(m, m->pt_id);
    m->data_host = region_host(m, m->data_id);
    r2_set(m, VMMU_MEM_RAM);
    for (unsigned i = 0; i < NDATA; i++) {
        m->ident[i] = data_ident(i);
        assert_int_equal(vmmu_gpa_write(vm, DATA_GPA + 4096ull * i, &m->ident[i], 8, 0, NULL), 0);
    }
    struct vmmu_pager_config pc = {.resident_limit = 64, .flags = VMMU_PAGER_PARANOID};
    assert_int_equal(vmmu_pager_create(vm, &pc, &m->pager), 0);
    build(m);
    for (unsigned vi = 0; vi < m->nv; vi++)
        start_vcpu(m, vi);
    for (unsigned i = 0; i < 3; i++)
        hot_pair(m, i);

    atomic_store(&watch_seed, (unsigned long long)seed);
    for (m->step = 0; m->step < steps; m->step++) {
        atomic_store(&watch_step, m->step);
        atomic_fetch_add(&watch_progress, 1);
        unsigned what = rn(m, 200);
        if (what < 110)
            act_access(m);
        else if (what < 130)
            act_edit(m);
        else if (what < 146)
            act_local(m);
        else if (what < 156)
            act_shootdown(m);
        else if (what < 164)
            act_remap(m);
        else if (what < 167)
            act_burst(m);
        else if (what < 170)
            act_batch(m);
        else if (what < 173)
            act_pcid_dance(m);
        else if (what < 179) {
            unsigned vi = rn(m, m->nv);
            if (m->v[vi].online)
                safepoint(m, vi);
        } else if (what < 187) {
            /* Offline stretches are short: a vCPU that comes back to
             * everything posted meanwhile flushes everything. */
            unsigned vi = rn(m, m->nv), off = m->nv;
            for (unsigned k = 0; k < m->nv; k++)
                if (!m->v[(vi + k) % m->nv].online)
                    off = (vi + k) % m->nv;
            if (off < m->nv && rn(m, 3))
                go_online(m, off);
            else if (m->v[vi].online)
                go_offline(m, vi);
        } else {
            act_host(m);
        }
    }

    /* The tables hold what the model wrote (A and D aside). */
    for (unsigned s = 0; s < m->nslots; s++) {
        if (m->slots[s].reg)
            continue;
        uint64_t now_v = pt_get(m, m->slots[s].gpa);
        if ((now_v ^ slot_now(m, s)) & ~AD_MASK)
            FAIL(m, -1, "(test bug) the entry at %#llx holds %#llx, the model %#llx",
                 (unsigned long long)m->slots[s].gpa, (unsigned long long)now_v,
                 (unsigned long long)slot_now(m, s));
    }
    stop_workers(m);
    struct vmmu_pager_stats ps;
    assert_int_equal(vmmu_pager_stats(m->pager, &ps), 0);
    m->c.paged_in += ps.paged_in;
    add_counters(tot, &m->c);
    free_model(m);
    live_model = NULL;
}

static void print_counters(const struct counters *t, unsigned seeds)
{
    print_message("sync model, %u seeds: %lu accesses checked exactly (%lu A/D entries), %lu "
                  "against the translations allowed since their bounds (%lu answered from an "
                  "older one, %lu too many to enumerate); %lu inline hits, %lu faults, %lu not "
                  "RAM; contexts user %lu, sup %lu, sup+AC %lu\n",
                  seeds, t->strict, t->ad_checked, t->stale, t->stale_differs, t->unchecked,
                  t->hits, t->faults, t->not_ram, t->ctx_used[CTX_USER], t->ctx_used[CTX_SUP],
                  t->ctx_used[CTX_SUP_AC]);
    print_message("  guest: %lu entry writes (%lu upper-level); INVLPG %lu, INVPCID %lu/%lu/%lu/%lu "
                  "(%lu #GP at CPL 3), MOV CR3 %lu flushing and %lu not, %lu flushes of "
                  "everything, %lu local-only flushes\n",
                  t->edits, t->upper_edits, t->invlpg, t->invpcid[0], t->invpcid[1],
                  t->invpcid[2], t->invpcid[3], t->invpcid_gp, t->cr3, t->cr3_noflush,
                  t->flush_all, t->flush_local);
    print_message("  requests: ALL %lu, CONTEXTS %lu, PCID %lu, RANGE %lu (%lu of more than 16 "
                  "pages, %lu of any PCID); %lu sync, %lu async, %lu from the host thread, %lu to "
                  "every vCPU, %lu to empty sets, %lu naming unknown ids, %lu including self; "
                  "%lu deferred parts, %lu remaps (edit, then shootdown), %lu batches of them, "
                  "%lu flushes of a PCID not running, "
                  "%lu bursts, %lu merged "
                  "while offline, %lu overflows predicted and %lu seen\n",
                  t->req_type[0], t->req_type[1], t->req_type[2], t->req_type[3],
                  t->req_big_range, t->req_any_pcid, t->req_sync, t->req_async, t->req_from_host,
                  t->req_null_targets, t->req_empty, t->req_unknown, t->req_self_in,
                  t->req_deferred, t->remaps, t->batches, t->dances, t->bursts, t->merges, t->overflow_predicted, t->overflow_seen);
    print_message("  outstanding requests done at: %lu safe points (of %lu), %lu onlines (of "
                  "%lu; %lu offlines), %lu own shootdowns\n",
                  t->settle_safepoint, t->safepoints, t->settle_online, t->onlines, t->offlines,
                  t->settle_self);
    print_message("  host: code %lu, uncode %lu, log on/off %lu, log read %lu, region 2 %lu, "
                  "page-out %lu (%lu page-table pages asked), page-in %lu, balloon-out %lu, "
                  "balloon-in %lu, balance %lu; %lu made while a vCPU was offline, %lu between "
                  "two writes of a vCPU; %lu writes "
                  "to code pages, %lu to logged pages, %lu data pages' contents checked, %lu "
                  "page-ins\n",
                  t->host[H_CODE], t->host[H_UNCODE], t->host[H_LOG], t->host[H_LOG_READ],
                  t->host[H_R2], t->host[H_PAGE_OUT], t->pt_pageouts, t->host[H_PAGE_IN],
                  t->host[H_BALLOON_OUT], t->host[H_BALLOON_IN], t->host[H_BALANCE],
                  t->host_offline, t->primed, t->code_writes, t->logged_writes,
                  t->ident_checked, t->paged_in);
    for (unsigned i = 0; i < NMD; i++)
        if (t->seeds_in[i])
            print_message("  %s: %lu seeds, %lu accesses checked exactly, %lu against older "
                          "entries (%lu answered from an older one)\n",
                          modes[i].name, t->seeds_in[i], t->strict_in[i], t->stale_in[i],
                          t->stale_differs_in[i]);
    print_message("  %lu A/D bits found in another root's copy of a top-level entry; "
                  "without PCIDs: %lu INVPCID #GP (type 0/1 naming a PCID other than 0); "
                  "PAE: %lu PDPTE register loads that changed one, %lu accesses while the "
                  "register differed from memory, %lu checked against registers loaded since "
                  "their bounds\n",
                  t->ad_other_root, t->invpcid_gp_nopcid, t->pdpte_loads, t->pdpte_lag, t->pdpte_lag_stale);
}

static void vcpus_agree_with_the_model(void **state)
{
    (void)state;
    struct counters tot;
    memset(&tot, 0, sizeof(tot));
    watchdog_start();
    const char *one = getenv("VMMU_SYNC_MODEL_SEED");
    if (one && *one) {
        run_seed(strtoull(one, NULL, 10), STEPS, &tot);
        watchdog_stop();
        print_counters(&tot, 1);
        return;
    }
    unsigned n = model_seeds("VMMU_SYNC_MODEL_SEEDS", DEFAULT_SEEDS);
    for (uint64_t seed = 1; seed <= n; seed++)
        run_seed(seed, STEPS, &tot);
    watchdog_stop();
    print_counters(&tot, n);
    /* Every kind of event happened, so a generator bug cannot skip one. */
    const unsigned long few = 3;
    assert_true(tot.strict > tot.stale / 4 && tot.stale >= few && tot.stale_differs >= few);
    assert_true(tot.hits >= few && tot.faults >= few && tot.not_ram >= few && tot.ad_checked >= few);
    for (unsigned c = 0; c < NCTX; c++)
        assert_true(tot.ctx_used[c] >= few);
    assert_true(tot.upper_edits >= few && tot.invlpg >= few && tot.invpcid_gp >= 1);
    for (unsigned i = 0; i < 4; i++)
        assert_true(tot.invpcid[i] >= few && tot.req_type[i] >= few);
    assert_true(tot.cr3 >= few && tot.flush_all >= few && tot.flush_local >= few);
    /* And in each mode that ran: its own events too. */
    for (unsigned i = 0; i < NMD; i++)
        if (tot.seeds_in[i])
            assert_true(tot.strict_in[i] >= few && tot.stale_in[i] >= few &&
                        tot.stale_differs_in[i] >= 1);
    if (tot.seeds_in[MD_4PCID] + tot.seeds_in[MD_5])
        assert_true(tot.cr3_noflush >= few);
    if (tot.seeds_in[MD_4] + tot.seeds_in[MD_PAE] + tot.seeds_in[MD_32])
        assert_true(tot.invpcid_gp_nopcid >= 1);
    if (tot.seeds_in[MD_PAE])
        assert_true(tot.pdpte_loads >= few && tot.pdpte_lag >= few && tot.pdpte_lag_stale >= 1);
    assert_true(tot.req_big_range >= few && tot.req_any_pcid >= few && tot.req_sync >= few &&
                tot.req_async >= few && tot.req_from_host >= few && tot.req_null_targets >= few &&
                tot.req_empty >= 1 && tot.req_unknown >= few && tot.req_self_in >= few);
    assert_true(tot.remaps >= few && tot.batches >= few && tot.dances >= few &&
                tot.bursts >= few);
    assert_true(tot.merges >= few && tot.overflow_predicted >= 1 && tot.overflow_seen >= 1);
    assert_true(tot.settle_safepoint >= few && tot.settle_online >= few && tot.settle_self >= few);
    for (unsigned k = 0; k < NHOST; k++)
        assert_true(tot.host[k] >= few);
    assert_true(tot.host_offline >= few && tot.pt_pageouts >= few && tot.primed >= few);
    assert_true(tot.code_writes >= few && tot.logged_writes >= few && tot.ident_checked >= few &&
                tot.paged_in >= few);
}

static int teardown(void **state)
{
    (void)state;
    watchdog_stop();
    if (live_model) {
        free_model(live_model);
        live_model = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(vcpus_agree_with_the_model, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
