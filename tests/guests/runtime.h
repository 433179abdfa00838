/* SPDX-License-Identifier: MIT */
/*
 * The guest runtime: what every guest program of tests/guests links with.
 * Freestanding (no libc): serial printf, an IDT with handlers per vector,
 * spinlocks built on lock-prefixed instructions, the start of the other
 * vCPUs through the machine's START hypercall, a physical page allocator
 * and 4 KiB mappings in the guest's own page tables.
 *
 * A guest program defines `int guest_main(void)`, run on vCPU 0; its
 * return value is the run's exit status (0: every check passed).
 */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#define RT_VCPUS_MAX EMU_VCPUS_MAX /* as many as the machine can have */
#define PAGE_SIZE 4096ul

/* Page-table entry bits. */
#define PTE_P (1ul << 0)
#define PTE_W (1ul << 1)
#define PTE_U (1ul << 2)
#define PTE_PWT (1ul << 3)
#define PTE_PCD (1ul << 4)
#define PTE_A (1ul << 5)
#define PTE_D (1ul << 6)
#define PTE_PS (1ul << 7)
#define PTE_G (1ul << 8)
#define PTE_NX (1ul << 63)
#define PTE_ADDR 0x000ffffffffff000ul

/* #PF error code bits. */
#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_RSVD 8u
#define PF_I 16u

/* Where programs put their own 4 KiB mappings: PML4 slot 0, PDPT slot 1
 * (the loader's identity map uses PDPT slot 0). */
#define RT_WINDOW 0x40000000ul
#define RT_WINDOW_SIZE 0x40000000ul

/* What the stubs push (see entry.S), lowest address first. */
struct rt_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*rt_handler)(struct rt_frame *f);

extern const struct emu_boot_info *rt_boot;
extern unsigned rt_nr_vcpus;

/* The bit of each vCPU below @n (1..64), for a flush hypercall's mask. */
static inline uint64_t rt_vcpus_mask(unsigned n)
{
    return n >= 64 ? ~0ull : (1ull << n) - 1;
}

/* ---- console and exit ---- */
void rt_putc(char c);
void rt_vprintf(const char *fmt, va_list ap);
/* printf subset: %d %u %x %s %c %p with l/ll, width and 0-padding.  One
 * call is printed as a whole (a lock keeps vCPUs' lines apart). */
void rt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void rt_exit(int status);
/* The exit status of a guest that cannot run on this backend (its CPU
 * lacks what the guest tests): the test scripts count it as skipped. */
#define RT_EXIT_SKIP 77
/* Print "FAIL: ..." and exit with status 1. */
__attribute__((noreturn, format(printf, 1, 2))) void rt_fail(const char *fmt, ...);
#define CHECK(cond, ...) do { if (!(cond)) rt_fail(__VA_ARGS__); } while (0)

/* ---- CPU ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port) : "memory"); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port) : "memory"); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline uint64_t read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" :: "r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" :: "r"(va) : "memory"); }
static inline void invpcid(uint64_t type, uint64_t pcid, uint64_t va)
{
    struct { uint64_t pcid, va; } d = {pcid, va};
    __asm__ volatile("invpcid %0, %1" :: "m"(d), "r"(type) : "memory");
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
unsigned rt_vcpu_id(void);

/* ---- traps ---- */
/* Install @h for @vector (0..19 exceptions, 32..79 interrupts). */
void rt_set_handler(unsigned vector, rt_handler h);
/* Probed 64-bit accesses: 0, or (1 << 32) | the #PF error code. */
uint64_t rt_probe_read64(uint64_t va, uint64_t *out);
uint64_t rt_probe_write64(uint64_t va, uint64_t value);

/* ---- locks ---- */
typedef struct { volatile uint32_t locked; } rt_spinlock;
void rt_lock(rt_spinlock *l);
void rt_unlock(rt_spinlock *l);

/* ---- SMP ---- */
/* Start every other vCPU running @fn(index); returns once all have started. */
void rt_start_others(void (*fn)(unsigned index));
/* A barrier across @n vCPUs (sense-reversing, lock-prefixed counting). */
void rt_barrier(unsigned n);
/* Send @vector to vCPU @dest (EMU_IPI_OTHERS: all but self). */
static inline void rt_ipi(unsigned dest, unsigned vector) { outl(EMU_PORT_IPI, (dest << 16) | vector); }
/* The machine's PV flush (see abi.h): returns EMU_HC_*. */
int rt_flush(uint64_t vcpu_mask, uint64_t va, uint64_t count, uint32_t flags);

/* ---- memory ---- */
void *rt_memset(void *d, int c, size_t n);
void *rt_memcpy(void *d, const void *s, size_t n);
int rt_memcmp(const void *a, const void *b, size_t n);
/* A zeroed physical page (identity-mapped, so also its address). */
uint64_t rt_alloc_page(void);
/* @count consecutive zeroed pages (identity-mapped), or fail. */
uint64_t rt_alloc_pages(unsigned count);
/* Map the 4 KiB page at @va (in the current page tables) to @pa with
 * @flags (PTE_*; P is added); page-table pages are allocated as needed.
 * Returns the previous entry.  Nothing is flushed. */
uint64_t rt_map(uint64_t va, uint64_t pa, uint64_t flags);
/* Clear the entry of @va; returns the previous entry.  Nothing is flushed. */
uint64_t rt_unmap(uint64_t va);
/* The entry mapping @va (NULL if a table above it is missing). */
volatile uint64_t *rt_pte(uint64_t va);
/* A new PML4 sharing the current one's lower half entries (the identity
 * map and the window's tables). */
uint64_t rt_clone_pml4(void);

int guest_main(void);

#endif
