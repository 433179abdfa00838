/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmark programs: a monotonic clock, a median of
 * repeated runs, a small fast random generator, and the one output format
 * every figure uses:  <part>/<figure>: <value> <unit>
 */
#ifndef VMMU_BENCH_UTIL_H
#define VMMU_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Runs per figure; the median is reported. */
#define BENCH_RUNS 7

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void bench_figure(const char *name, double value, const char *unit)
{
    if (value >= 100)
        printf("%s: %.0f %s\n", name, value, unit);
    else if (value >= 10)
        printf("%s: %.1f %s\n", name, value, unit);
    else
        printf("%s: %.2f %s\n", name, value, unit);
    fflush(stdout);
}

/* xorshift64*: fast enough not to dominate a few-nanosecond operation. */
static inline uint64_t bench_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Keep a value alive without a store the compiler could drop. */
static inline void bench_keep(uint64_t v)
{
    __asm__ volatile("" : : "r"(v) : "memory");
}

#endif /* VMMU_BENCH_UTIL_H */
