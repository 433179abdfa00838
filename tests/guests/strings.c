/* SPDX-License-Identifier: MIT */
/*
 * strings: REP STOS and REP MOVS across page boundaries into pages that
 * are not mapped yet.  Each fault is taken in the middle of the string
 * instruction, the #PF handler maps the page, and the instruction resumes
 * where it stopped: the result must be as if nothing happened.  Forward
 * and backward (DF=1), bytes and quadwords, a source that crosses pages,
 * and REPE CMPS / REPNE SCAS over the result; REP INSD from a port whose
 * every read counts into unmapped pages, and REP OUTSB to the console.
 */
#include "runtime.h"

#define DST (RT_WINDOW + 0x300000)
#define SRC (RT_WINDOW + 0x400000)

static unsigned faults;
static uint64_t fault_pages[64];

static void on_pf(struct rt_frame *f)
{
    uint64_t cr2 = read_cr2();
    CHECK(!(f->error & PF_P), "protection fault 0x%lx at 0x%lx", f->error, cr2);
    CHECK(cr2 >= DST && cr2 < SRC + 0x100000, "#PF outside the test range: 0x%lx", cr2);
    if (faults < 64)
        fault_pages[faults] = (cr2 & ~(PAGE_SIZE - 1)) - DST;
    faults++;
    rt_map(cr2 & ~(PAGE_SIZE - 1), rt_alloc_page(), PTE_W);
}

static void report(const char *what)
{
    rt_printf("%s: %u fault(s) at page offsets", what, faults);
    for (unsigned i = 0; i < faults && i < 64; i++)
        rt_printf(" 0x%lx", fault_pages[i]);
    rt_printf("\n");
    faults = 0;
}

static void unmap_range(uint64_t va, unsigned pages)
{
    for (unsigned i = 0; i < pages; i++) {
        rt_unmap(va + i * PAGE_SIZE);
        invlpg(va + i * PAGE_SIZE);
    }
}

int guest_main(void)
{
    rt_set_handler(14, on_pf);
    rt_printf("strings: rep stos/movs into unmapped pages\n");

    /* rep stosb: 3 pages and a bit, from the middle of a page. */
    uint8_t *d = (uint8_t *)(DST + 0x800);
    uint64_t n = 3 * PAGE_SIZE + 100;
    void *di = d;
    uint64_t cx = n;
    __asm__ volatile("rep stosb" : "+D"(di), "+c"(cx) : "a"(0x5a) : "memory");
    CHECK(cx == 0 && di == d + n, "rep stosb registers: rcx %lu, rdi moved %lu", cx,
          (uint64_t)((uint8_t *)di - d));
    for (uint64_t i = 0; i < n; i++)
        CHECK(d[i] == 0x5a, "rep stosb byte %lu: 0x%x", i, d[i]);
    CHECK(d[-1] == 0 && d[n] == 0, "rep stosb wrote outside its range");
    report("rep stosb 12388 bytes");

    /* Source: filled with a pattern, crossing pages; destination unmapped again. */
    unmap_range(DST, 5);
    uint64_t *s = (uint64_t *)(SRC + PAGE_SIZE - 24);
    for (unsigned i = 0; i < 1100; i++)
        s[i] = 0x1000000000ull + i * 3;
    faults = 0;

    /* rep movsq: misaligned destination crossing two pages. */
    uint64_t *dq = (uint64_t *)(DST + 2 * PAGE_SIZE - 12);
    void *si = s;
    di = dq;
    cx = 1100;
    __asm__ volatile("rep movsq" : "+D"(di), "+S"(si), "+c"(cx) :: "memory");
    CHECK(cx == 0, "rep movsq rcx %lu", cx);
    for (unsigned i = 0; i < 1100; i++) {
        uint64_t v;
        rt_memcpy(&v, (uint8_t *)dq + 8 * i, 8);
        CHECK(v == 0x1000000000ull + i * 3, "rep movsq word %u: 0x%lx", i, v);
    }
    report("rep movsq 1100 quadwords");

    /* Backwards: rep movsb with DF=1 into a fresh unmapped range. */
    unmap_range(DST, 5);
    uint8_t *src_end = (uint8_t *)s + 5000 - 1;
    uint8_t *dst_end = (uint8_t *)(DST + 3 * PAGE_SIZE + 50);
    si = src_end;
    di = dst_end;
    cx = 5000;
    __asm__ volatile("std; rep movsb; cld" : "+D"(di), "+S"(si), "+c"(cx) :: "memory");
    CHECK(cx == 0 && di == dst_end - 5000, "backward rep movsb registers");
    CHECK(!rt_memcmp(dst_end - 4999, (uint8_t *)s, 5000), "backward rep movsb contents");
    report("rep movsb backwards 5000 bytes");

    /* repe cmpsb over equal buffers crossing pages: runs to the end. */
    si = (uint8_t *)s;
    di = dst_end - 4999;
    cx = 5000;
    uint8_t zf;
    __asm__ volatile("repe cmpsb" : "+D"(di), "+S"(si), "+c"(cx), "=@ccz"(zf) :: "memory");
    CHECK(cx == 0 && zf, "repe cmpsb stopped early: rcx %lu", cx);
    /* repne scasb finds the first 0x5a. */
    ((uint8_t *)(DST + 4 * PAGE_SIZE))[7] = 0x5a;
    report("setting up scas");
    di = (void *)(DST + 3 * PAGE_SIZE + 100);
    cx = 10000;
    __asm__ volatile("repne scasb" : "+D"(di), "+c"(cx), "=@ccz"(zf) : "a"(0x5a) : "memory");
    CHECK(zf && di == (void *)(DST + 4 * PAGE_SIZE + 8), "repne scasb: rdi 0x%lx",
          (uint64_t)di);
    rt_printf("repe cmpsb and repne scasb across pages: ok\n");

    /* rep insd from the machine's ticket port into unmapped pages.  vmmu's
     * emulator checks an element's destination before it reads the port,
     * so the element whose page faults reads the port only when it
     * resumes: no ticket is lost or read twice.  KVM's emulator reads
     * ahead to the end of the destination page and drops what it read
     * when the store faults, so there only the order is checked. */
    unmap_range(DST, 5);
    uint32_t *dd = (uint32_t *)(DST + PAGE_SIZE - 8);
    uint32_t first = inl(EMU_PORT_TICKET);
    bool exact = (rt_boot->flags & EMU_BOOT_BACKEND_EMULATOR) != 0;
    di = dd;
    cx = 2100;
    __asm__ volatile("rep insl" : "+D"(di), "+c"(cx) : "d"(EMU_PORT_TICKET) : "memory");
    CHECK(cx == 0 && di == dd + 2100, "rep insd registers: rcx %lu", cx);
    uint32_t last = first;
    for (unsigned i = 0; i < 2100; i++) {
        CHECK(exact ? dd[i] == last + 1 : dd[i] > last,
              "rep insd element %u: ticket %u after %u", i, dd[i], last);
        last = dd[i];
    }
    CHECK(inl(EMU_PORT_TICKET) == last + 1, "rep insd: a ticket was read and not stored");
    report("rep insd 2100 tickets");

    /* rep outsb of a line to the console, its source crossing a page. */
    static const char line[] = "rep outsb: this line went out one byte per port write\n";
    char *text = (char *)(DST + 2 * PAGE_SIZE - 20);
    rt_memcpy(text, line, sizeof(line) - 1);
    si = text;
    cx = sizeof(line) - 1;
    __asm__ volatile("rep outsb" : "+S"(si), "+c"(cx) : "d"(EMU_PORT_SERIAL) : "memory");
    CHECK(cx == 0 && si == text + sizeof(line) - 1, "rep outsb registers: rcx %lu", cx);
    rt_printf("strings: ok\n");
    return 0;
}
