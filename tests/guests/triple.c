/* SPDX-License-Identifier: MIT */
/*
 * triple: a guest that cannot deliver an exception.  It loads an empty IDT
 * and executes UD2: #UD finds no gate (#GP), the #GP none either (#DF),
 * the #DF none either: a triple fault, which stops the machine (status
 * 125 and the stop's line on stderr; tests/guests/stops.sh).
 */
#include "runtime.h"

int guest_main(void)
{
    rt_printf("triple: an empty IDT, then UD2\n");
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } d = {0, 0};
    __asm__ volatile("lidt %0\n ud2" :: "m"(d) : "memory");
    rt_printf("FAIL: UD2 returned\n");
    return 1;
}
