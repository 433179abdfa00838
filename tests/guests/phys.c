/* SPDX-License-Identifier: MIT */
/*
 * phys: the physical-address width CPUID reports (leaf 0x80000008) is the
 * one the machine walks and loads CR3 with.  A page-table entry naming an
 * address just below 2^MAXPHYADDR maps a hole (reads all-ones, no fault);
 * one naming 2^MAXPHYADDR has a reserved bit set (#PF with RSVD); MOV to
 * CR3 with bit MAXPHYADDR set raises #GP.  The hole read runs only on
 * vmmu's emulator (boot_info.flags): under KVM an access to no memory at
 * all is an MMIO exit nobody serves.
 */
#include "runtime.h"

#define WINDOW (RT_WINDOW + 0x600000)

static volatile unsigned gp_count;

static void on_gp(struct rt_frame *f)
{
    gp_count++;
    f->rip += 3; /* mov %reg, %cr3 */
}

static unsigned maxphyaddr(void)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000008u), "c"(0));
    return a & 0xff;
}

int guest_main(void)
{
    unsigned m = maxphyaddr();
    bool emulator = (rt_boot->flags & EMU_BOOT_BACKEND_EMULATOR) != 0;
    rt_printf("phys: CPUID says MAXPHYADDR %u\n", m);
    CHECK(m >= 36 && m <= 52, "MAXPHYADDR %u", m);

    uint64_t v = 0, e;
    if (emulator) {
        rt_map(WINDOW, 1ul << (m - 1), PTE_W | PTE_NX);
        invlpg(WINDOW);
        e = rt_probe_read64(WINDOW, &v);
        CHECK(e == 0 && v == ~0ul, "a page at 2^%u: #PF error 0x%lx, read 0x%lx", m - 1, e, v);
    }
    rt_printf("a page just below 2^MAXPHYADDR: a hole, no fault\n");

    if (m < 52) {
        rt_map(WINDOW, 1ul << m, PTE_W | PTE_NX);
        invlpg(WINDOW);
        e = rt_probe_read64(WINDOW, &v);
        CHECK(e == ((1ul << 32) | PF_P | PF_RSVD), "a page at 2^%u: #PF error 0x%lx", m, e);
    }
    rt_unmap(WINDOW);
    invlpg(WINDOW);
    rt_printf("a page at 2^MAXPHYADDR: #PF with RSVD\n");

    rt_set_handler(13, on_gp);
    uint64_t cr3 = read_cr3(), bad = cr3 | (1ul << m);
    __asm__ volatile(".byte 0x0f, 0x22, 0xd8" :: "a"(bad) : "memory"); /* mov %rax, %cr3 */
    CHECK(gp_count == 1 && read_cr3() == cr3, "MOV CR3 with bit %u: %u #GP, CR3 0x%lx", m,
          gp_count, read_cr3());
    rt_printf("MOV to CR3 with bit MAXPHYADDR set: #GP\n");
    rt_printf("phys: ok\n");
    return 0;
}
