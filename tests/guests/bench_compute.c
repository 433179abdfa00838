/* SPDX-License-Identifier: MIT */
/* bench_compute: a compute-bound guest for x86/mips_compute: register
 * arithmetic, shifts, multiplies and branches, almost no data memory. */
#include "runtime.h"

int guest_main(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ul, acc = 0;
    for (unsigned i = 0; i < 300000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += (x * 0x2545f4914f6cdd1dul) >> 32;
        if (acc & 1)
            acc = (acc >> 1) | (1ul << 63);
    }
    rt_printf("bench_compute: checksum %lx\n", acc);
    return acc ? 0 : 1;
}
