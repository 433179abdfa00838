/* SPDX-License-Identifier: MIT */
/*
 * atomics: every vCPU counts with lock-prefixed instructions into shared
 * words; the totals must come out exact.  Covers LOCK INC/ADD/SUB/OR/AND,
 * XADD, XCHG (implicitly locked), CMPXCHG loops, CMPXCHG16B, and a
 * spinlock protecting a plain read-modify-write.  Some operands straddle
 * a cache line and one straddles a page.
 */
#include "runtime.h"

#define ROUNDS 4000u

static struct {
    volatile uint64_t inc, add, sub, xadd, cas;
    volatile uint64_t or_bits, and_bits; /* one bit per vCPU */
    volatile uint64_t locked_plain;
    rt_spinlock lock;
    volatile unsigned __int128 pair __attribute__((aligned(16)));
} s;

/* A counter that straddles a page boundary (a split lock on hardware). */
static uint8_t split_page[2 * 4096] __attribute__((aligned(4096)));
#define SPLIT ((volatile uint64_t *)(split_page + 4096 - 4))

static volatile unsigned finished;
static bool pairs; /* CMPXCHG16B runs here (not on a KVM that cannot emulate it) */
static bool split_atomic; /* a page-straddling LOCK INC is atomic here */

static void cas_add(volatile uint64_t *p, uint64_t n)
{
    uint64_t old = *p;
    while (!__atomic_compare_exchange_n(p, &old, old + n, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
        ;
}

/* CMPXCHG16B on the 16-byte pair (gcc calls libatomic for __int128). */
static bool cmpxchg16b(volatile unsigned __int128 *p, unsigned __int128 *old,
                       unsigned __int128 new)
{
    uint64_t lo = (uint64_t)*old, hi = (uint64_t)(*old >> 64);
    bool ok;
    __asm__ volatile("lock cmpxchg16b %2"
                     : "+a"(lo), "+d"(hi), "+m"(*p), "=@ccz"(ok)
                     : "b"((uint64_t)new), "c"((uint64_t)(new >> 64))
                     : "memory");
    *old = ((unsigned __int128)hi << 64) | lo;
    return ok;
}

static void pair_add(unsigned hi_inc)
{
    unsigned __int128 old = 0, new;
    do {
        new = old + 1 + ((unsigned __int128)hi_inc << 64);
    } while (!cmpxchg16b(&s.pair, &old, new));
}

static void work(unsigned index)
{
    for (unsigned i = 0; i < ROUNDS; i++) {
        __asm__ volatile("lock incq %0" : "+m"(s.inc));
        __asm__ volatile("lock addq %1, %0" : "+m"(s.add) : "r"((uint64_t)3));
        __asm__ volatile("lock subq %1, %0" : "+m"(s.sub) : "r"((uint64_t)2));
        __atomic_fetch_add(&s.xadd, 5, __ATOMIC_SEQ_CST); /* lock xadd (result used below) */
        cas_add(&s.cas, 7);
        if ((i & 31) == 0) {
            __asm__ volatile("lock orq %1, %0" : "+m"(s.or_bits) : "r"(1ull << index));
            __asm__ volatile("lock andq %1, %0" : "+m"(s.and_bits) : "r"(~(1ull << index)));
        }
        rt_lock(&s.lock);
        s.locked_plain = s.locked_plain + 1;
        rt_unlock(&s.lock);
        if (pairs && (i & 7) == 0)
            pair_add(index + 1);
        __asm__ volatile("lock incq %0" : "+m"(*SPLIT));
    }
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
}

int guest_main(void)
{
    unsigned n = rt_nr_vcpus;
    s.sub = 1000000;
    s.and_bits = ~0ull;
    pairs = !(rt_boot->flags & EMU_BOOT_NO_CMPXCHG16B);
    split_atomic = !(rt_boot->flags & EMU_BOOT_SPLIT_LOCK_NOT_ATOMIC);
    rt_printf("atomics: %u vCPUs x %u rounds\n", n, ROUNDS);
    rt_start_others(work);
    work(0);
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) != n)
        cpu_relax();

    uint64_t r = ROUNDS, total = n * r;
    uint64_t mask = rt_vcpus_mask(n);
    unsigned __int128 want_pair = 0;
    for (unsigned i = 0; pairs && i < n; i++)
        want_pair += ((unsigned __int128)(i + 1) << 64) * (r / 8) + r / 8;
    CHECK(s.inc == total, "lock inc: %lu, expected %lu", s.inc, total);
    CHECK(s.add == 3 * total, "lock add: %lu, expected %lu", s.add, 3 * total);
    CHECK(s.sub == 1000000 - 2 * total, "lock sub: %lu", s.sub);
    CHECK(s.xadd == 5 * total, "xadd: %lu", s.xadd);
    CHECK(s.cas == 7 * total, "cmpxchg loop: %lu", s.cas);
    CHECK(s.or_bits == mask, "lock or: 0x%lx", s.or_bits);
    CHECK(s.and_bits == ~mask, "lock and: 0x%lx", s.and_bits);
    CHECK(s.locked_plain == total, "spinlocked counter: %lu", s.locked_plain);
    CHECK(s.pair == want_pair, "cmpxchg16b pair: hi %lu lo %lu", (uint64_t)(s.pair >> 64),
          (uint64_t)s.pair);
    CHECK(!split_atomic || *SPLIT == total, "page-straddling lock inc: %lu", *SPLIT);
    rt_printf("lock inc/add/sub, xadd, cmpxchg: exact\n");
    rt_printf("lock or/and: every vCPU's bit\n");
    rt_printf("xchg spinlock around a plain increment: exact\n");
    if (pairs)
        rt_printf("cmpxchg16b: both halves exact\n");
    else
        rt_printf("cmpxchg16b: not run (this KVM cannot emulate it)\n");
    if (split_atomic)
        rt_printf("page-straddling lock inc: exact\n");
    else
        rt_printf("page-straddling lock inc: not checked (this KVM does not keep it atomic)\n");
    rt_printf("atomics: ok\n");
    return 0;
}
