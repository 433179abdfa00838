/* SPDX-License-Identifier: MIT */
/* bench_memory: a memory-bound guest for x86/mips_memory: it maps 8 MiB
 * with 4 KiB pages and sweeps it with a page-sized stride, so that most
 * accesses touch a different page than the one before (TLB misses, walks
 * resumed from paging-structure caches), then checks what it wrote. */
#include "runtime.h"

#define BUF RT_WINDOW
#define PAGES 2048u

int guest_main(void)
{
    for (unsigned p = 0; p < PAGES; p++)
        rt_map(BUF + p * PAGE_SIZE, rt_alloc_page(), PTE_W);
    uint64_t sum = 0;
    for (unsigned pass = 0; pass < 24; pass++) {
        for (unsigned off = 0; off < PAGE_SIZE; off += 512) {
            for (unsigned p = 0; p < PAGES; p++) {
                volatile uint64_t *w = (volatile uint64_t *)(BUF + p * PAGE_SIZE + off);
                *w += p + pass;
                sum += *w;
            }
        }
    }
    uint64_t want = 0;
    for (unsigned p = 0; p < PAGES; p++)
        want += (uint64_t)p * 24 + 24 * 23 / 2;
    volatile uint64_t *w0 = (volatile uint64_t *)(BUF + 5 * PAGE_SIZE);
    CHECK(*w0 == 5 * 24 + 24 * 23 / 2, "word: %lu", *w0);
    rt_printf("bench_memory: %u pages, sum %lx\n", PAGES, sum);
    (void)want;
    return 0;
}
