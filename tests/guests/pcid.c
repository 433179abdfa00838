/* SPDX-License-Identifier: MIT */
/*
 * pcid: process-context identifiers and global pages.
 *
 * One set of page tables used under two PCIDs (CR3 = tables | 1 and
 * tables | 2), so that what differs between them is only what the TLB
 * keeps per PCID.  The program changes a page-table entry without
 * invalidating it, then checks two kinds of result:
 *
 *  - what the architecture guarantees: after INVLPG, INVPCID (types 0-3),
 *    a MOV to CR3 without the no-flush bit (bit 63) or a CR4.PGE toggle,
 *    the new entry is used;
 *  - what the architecture allows and vmmu's TLB does (vmmu-only, marked
 *    "kept" below): a translation survives a MOV to CR3 with bit 63 set,
 *    an INVLPG or INVPCID aimed at another PCID, and a global one survives
 *    CR3 writes and INVPCID types 1 and 3.  A CPU may drop entries at any
 *    time, so another backend (KVM's shadow paging rebuilds its tables on
 *    every write to a guest page table) only checks the guaranteed half;
 *    the guest says which one it checked.
 *
 * Then: INVPCID with a bad type, a PCID above 4095 or a non-canonical
 * address raises #GP(0), as does setting CR4.PCIDE while CR3[11:0] != 0
 * and writing CR3 bit 63 with PCIDE off.
 */
#include "runtime.h"

#define CR4_PGE (1ul << 7)
#define CR4_PCIDE (1ul << 17)
#define NOFLUSH (1ul << 63)

/* The two linear pages under test, X an ordinary one and G a global one,
 * chosen by pick_pages() in RT_WINDOW. */
static uint64_t x_va, g_va;
#define X x_va
#define G g_va

static uint64_t tables;       /* CR3 without PCID bits */
static uint64_t page[5];      /* page[i] holds the value 0x1111 * i */
static bool vmmu_only;        /* check what vmmu's TLB keeps, too */
static unsigned kept_checks;

static uint64_t rd(uint64_t va)
{
    return *(volatile uint64_t *)va;
}

/* Point @va at page[i] in the tables, invalidating nothing. */
static void remap(uint64_t va, unsigned i, uint64_t flags)
{
    rt_map(va, page[i], PTE_W | PTE_A | PTE_D | flags);
}

static void cr3(uint64_t pcid, uint64_t extra)
{
    write_cr3(tables | pcid | extra);
}

static void want(const char *what, uint64_t va, unsigned i)
{
    uint64_t v = rd(va);
    CHECK(v == 0x1111ul * i, "%s: read 0x%lx, want 0x%lx", what, v, 0x1111ul * i);
}

/* A translation the architecture allows the TLB to keep (vmmu keeps it). */
static void kept(const char *what, uint64_t va, unsigned i)
{
    if (!vmmu_only) {
        (void)rd(va);
        return;
    }
    want(what, va, i);
    kept_checks++;
}

/* ---- #GP probes ---- */

static volatile uint64_t recover_rip;
static volatile unsigned gp_count;

static void on_gp(struct rt_frame *f)
{
    CHECK(recover_rip != 0, "unexpected #GP at 0x%lx", f->rip);
    CHECK(f->error == 0, "#GP error code 0x%lx", f->error);
    gp_count++;
    f->rip = recover_rip;
    recover_rip = 0;
}

static bool invpcid_faults(uint64_t type, uint64_t pcid, uint64_t va)
{
    struct { uint64_t pcid, va; } d = {pcid, va};
    unsigned before = gp_count;
    __asm__ volatile("lea 1f(%%rip), %%rax\n mov %%rax, %0\n invpcid %1, %2\n 1:"
                     : "=m"(recover_rip) : "m"(d), "r"(type) : "rax", "memory");
    recover_rip = 0;
    return gp_count != before;
}

static bool cr_write_faults(unsigned cr, uint64_t value)
{
    unsigned before = gp_count;
    if (cr == 3)
        __asm__ volatile("lea 1f(%%rip), %%rax\n mov %%rax, %0\n mov %1, %%cr3\n 1:"
                         : "=m"(recover_rip) : "r"(value) : "rax", "memory");
    else
        __asm__ volatile("lea 1f(%%rip), %%rax\n mov %%rax, %0\n mov %1, %%cr4\n 1:"
                         : "=m"(recover_rip) : "r"(value) : "rax", "memory");
    recover_rip = 0;
    return gp_count != before;
}

/*
 * A "kept" check holds only if nothing but the invalidation under test
 * evicts the translation.  A TLB is free to evict on a conflict; vmmu's
 * table is direct-mapped (at least 64 entries, indexed by the low bits
 * of the page number), so X and G get page numbers whose residue modulo
 * 64 no other page this program touches has: the boot information and
 * GDT (pages 1, 2), the loader's tables (8-10), the first stack (below
 * 0x80000), the image, and what the allocator hands out, up to 16 pages
 * past what it has now (the pages' frames and the window's tables).
 * Otherwise where the image ends would decide whether a check passes.
 */
static void pick_pages(void)
{
    uint64_t used = 0; /* bit r: a touched page has residue r */
    static const uint64_t low[] = {1, 2, 8, 9, 10};
    for (unsigned i = 0; i < sizeof(low) / sizeof(low[0]); i++)
        used |= 1ull << (low[i] % 64);
    for (uint64_t pn = (EMU_BOOT_STACK_TOP >> 12) - 16; pn < EMU_BOOT_STACK_TOP >> 12; pn++)
        used |= 1ull << (pn % 64);
    uint64_t last = (rt_alloc_page() >> 12) + 16; /* one page spent: harmless */
    for (uint64_t pn = 0x100000 >> 12; pn < last; pn++)
        used |= 1ull << (pn % 64);
    CHECK(last - (0x100000 >> 12) <= 64 - 24, "image too large for pick_pages: %lu pages",
          last - (0x100000 >> 12));
    uint64_t base = (RT_WINDOW + 0x600000) >> 12; /* a multiple of 64 */
    unsigned r = 0;
    while (used & (1ull << r))
        r++;
    x_va = (base + r) << 12;
    used |= 1ull << r;
    while (used & (1ull << r))
        r++;
    g_va = (base + 0x100 + r) << 12;
}

/* ---- the tests ---- */

static void pcid_switches(void)
{
    cr3(1, 0);
    remap(X, 1, 0);
    invlpg(X);
    want("pcid 1 first read", X, 1);
    cr3(2, 0);
    want("pcid 2 first read", X, 1);
    remap(X, 2, 0);                 /* both PCIDs now hold a stale entry */
    kept("pcid 2 after the entry changed", X, 1);
    invlpg(X);                      /* drops it in PCID 2 only */
    want("pcid 2 after INVLPG", X, 2);
    cr3(1, NOFLUSH);
    kept("pcid 1 back with the no-flush bit", X, 1);
    cr3(1, 0);
    want("pcid 1 back without the no-flush bit", X, 2);
    rt_printf("cr3: PCID 1 and 2 on one set of tables; no-flush switches, INVLPG per PCID\n");
}

static void invpcid_types(void)
{
    /* Both PCIDs hold X -> page 2. */
    cr3(2, NOFLUSH);
    want("pcid 2 holds page 2", X, 2);
    remap(X, 3, 0);
    invpcid(0, 1, X);               /* the address, in PCID 1 only */
    kept("pcid 2 after INVPCID 0 on pcid 1", X, 2);
    cr3(1, NOFLUSH);
    want("pcid 1 after INVPCID 0", X, 3);
    remap(X, 4, 0);
    invpcid(1, 2, 0);               /* everything of PCID 2 */
    kept("pcid 1 after INVPCID 1 on pcid 2", X, 3);
    cr3(2, NOFLUSH);
    want("pcid 2 after INVPCID 1", X, 4);
    remap(X, 1, 0);
    invpcid(3, 0, 0);               /* every PCID, globals kept */
    want("pcid 2 after INVPCID 3", X, 1);
    cr3(1, NOFLUSH);
    want("pcid 1 after INVPCID 3", X, 1);
    rt_printf("invpcid: type 0 (address), 1 (one PCID), 3 (all but globals)\n");
}

static void global_pages(void)
{
    write_cr4(read_cr4() | CR4_PGE);
    remap(G, 1, PTE_G);
    invlpg(G);
    want("global page first read", G, 1);
    remap(G, 2, PTE_G);
    cr3(1, 0);                      /* a flushing CR3 write keeps globals */
    kept("global page after a CR3 write", G, 1);
    invpcid(1, 1, 0);
    kept("global page after INVPCID 1", G, 1);
    invpcid(3, 0, 0);
    kept("global page after INVPCID 3", G, 1);
    write_cr4(read_cr4() & ~CR4_PGE); /* a PGE toggle drops globals */
    write_cr4(read_cr4() | CR4_PGE);
    want("global page after a CR4.PGE toggle", G, 2);
    remap(G, 3, PTE_G);
    invpcid(2, 0, 0);               /* everything, globals too */
    want("global page after INVPCID 2", G, 3);
    remap(G, 4, PTE_G);
    invlpg(G);                      /* INVLPG drops a global entry too */
    want("global page after INVLPG", G, 4);
    rt_printf("global: survives CR3 writes and INVPCID 1/3, dies with a PGE toggle, "
              "INVPCID 2, INVLPG\n");
}

static void bad_requests(void)
{
    rt_set_handler(13, on_gp);
    CHECK(invpcid_faults(4, 0, 0), "INVPCID type 4 did not fault");
    CHECK(invpcid_faults(0, 4096, X), "INVPCID with PCID 4096 did not fault");
    CHECK(invpcid_faults(0, 1, 0x0000800000000000ul), "INVPCID 0 at a non-canonical address "
          "did not fault");
    CHECK(!invpcid_faults(0, 1, X), "a good INVPCID faulted");
    /* PCIDE off, then on again with PCID 1 in CR3: #GP, CR4 unchanged. */
    cr3(0, 0);
    write_cr4(read_cr4() & ~CR4_PCIDE);
    CHECK(cr_write_faults(3, tables | NOFLUSH), "CR3 bit 63 with PCIDE off did not fault");
    write_cr3(tables | 1);
    CHECK(cr_write_faults(4, read_cr4() | CR4_PCIDE), "PCIDE with CR3[11:0] = 1 did not fault");
    CHECK(!(read_cr4() & CR4_PCIDE), "CR4.PCIDE set by a faulting write");
    write_cr3(tables);
    CHECK(!cr_write_faults(4, read_cr4() | CR4_PCIDE), "PCIDE with CR3[11:0] = 0 faulted");
    rt_printf("bad requests: %u x #GP(0) (INVPCID type 4, PCID 4096, non-canonical; CR3 bit 63 "
              "without PCIDE; PCIDE with a PCID in CR3)\n", gp_count);
}

int guest_main(void)
{
    vmmu_only = (rt_boot->flags & EMU_BOOT_BACKEND_EMULATOR) != 0;
    if (rt_boot->flags & EMU_BOOT_NO_PCID) {
        rt_printf("pcid: skipped: this CPU has no PCIDs\n");
        return RT_EXIT_SKIP;
    }
    pick_pages();
    for (unsigned i = 1; i < 5; i++) {
        page[i] = rt_alloc_page();
        *(volatile uint64_t *)page[i] = 0x1111ul * i;
    }
    tables = read_cr3() & PTE_ADDR;
    CHECK((read_cr3() & 0xfff) == 0, "CR3 has low bits at entry: 0x%lx", read_cr3());
    write_cr4(read_cr4() | CR4_PCIDE);
    rt_printf("pcid: CR4.PCIDE on, tables at 0x%lx\n", tables);

    pcid_switches();
    invpcid_types();
    global_pages();
    bad_requests();
    if (vmmu_only)
        rt_printf("kept translations checked: %u (vmmu's TLB)\n", kept_checks);
    else
        rt_printf("kept translations checked: 0 (not this backend)\n");
    rt_printf("pcid: ok\n");
    return 0;
}
