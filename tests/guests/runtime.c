/* SPDX-License-Identifier: MIT */
/* The guest runtime (see runtime.h). */
#include "runtime.h"

const struct emu_boot_info *rt_boot;
unsigned rt_nr_vcpus;

uint8_t rt_boot_stack[16384] __attribute__((aligned(16)));

extern const uint64_t rt_stub_table[];
extern char rt_ap_entry[], rt_probe_read_insn[], rt_probe_write_insn[], rt_probe_fixup[];

/* ---- memory primitives (gcc may call these) ---- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

void *memset(void *d, int c, size_t n)
{
    void *r = d;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return r;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *r = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) :: "memory");
    return r;
}

void *memmove(void *d, const void *s, size_t n)
{
    if ((uintptr_t)d <= (uintptr_t)s || (uintptr_t)d >= (uintptr_t)s + n)
        return memcpy(d, s, n);
    void *r = d;
    d = (char *)d + n - 1;
    s = (const char *)s + n - 1;
    __asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) :: "memory");
    return r;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

void *rt_memset(void *d, int c, size_t n) { return memset(d, c, n); }
void *rt_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }

/* ---- console ---- */

static rt_spinlock print_lock;

void rt_putc(char c)
{
    outb(EMU_PORT_SERIAL, (uint8_t)c);
}

static void put_str(const char *s, int width, bool left)
{
    int len = 0;
    while (s[len])
        len++;
    if (!left)
        for (; width > len; width--)
            rt_putc(' ');
    for (int i = 0; i < len; i++)
        rt_putc(s[i]);
    for (; width > len; width--)
        rt_putc(' ');
}

static void put_num(uint64_t v, unsigned base, bool neg, int width, char pad, bool left)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg)
        buf[n++] = '-';
    char out[25];
    for (int i = 0; i < n; i++)
        out[i] = buf[n - 1 - i];
    out[n] = 0;
    if (pad == '0' && !left) {
        for (; width > n; width--)
            rt_putc('0');
    }
    put_str(out, width, left);
}

void rt_vprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            rt_putc(*fmt);
            continue;
        }
        fmt++;
        bool left = false;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '-') {
            left = true;
            fmt++;
        }
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 'd': {
            int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad, left);
            break;
        }
        case 'u':
            put_num(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, false, width, pad,
                    left);
            break;
        case 'x':
            put_num(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, false, width, pad,
                    left);
            break;
        case 'p':
            rt_putc('0');
            rt_putc('x');
            put_num((uint64_t)va_arg(ap, void *), 16, false, width, pad, left);
            break;
        case 's':
            put_str(va_arg(ap, const char *), width, left);
            break;
        case 'c':
            rt_putc((char)va_arg(ap, int));
            break;
        case '%':
            rt_putc('%');
            break;
        default:
            rt_putc('?');
            break;
        }
    }
}

void rt_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_lock(&print_lock);
    rt_vprintf(fmt, ap);
    rt_unlock(&print_lock);
    va_end(ap);
}

void rt_exit(int status)
{
    for (;;)
        outl(EMU_PORT_EXIT, (uint32_t)status);
}

void rt_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_lock(&print_lock);
    rt_vprintf("FAIL: ", ap);
    rt_vprintf(fmt, ap);
    rt_putc('\n');
    rt_unlock(&print_lock);
    va_end(ap);
    rt_exit(1);
}

unsigned rt_vcpu_id(void)
{
    return inl(EMU_PORT_VCPU_ID);
}

/* ---- locks: xchg with memory is locked by the CPU ---- */

void rt_lock(rt_spinlock *l)
{
    while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
            cpu_relax();
}

void rt_unlock(rt_spinlock *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

/* ---- traps ---- */

struct idt_gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
};

static struct idt_gate idt[80] __attribute__((aligned(16)));
static rt_handler handlers[80];

static void load_idt(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } d = {sizeof(idt) - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" :: "m"(d));
}

static void setup_idt(void)
{
    for (unsigned i = 0; i < 68; i++) {
        unsigned vec = i < 20 ? i : i + 12;
        uint64_t off = rt_stub_table[i];
        idt[vec] = (struct idt_gate){
            .off0 = (uint16_t)off, .sel = EMU_SEL_CODE64, .ist = 0,
            .type = 0x8e, /* present, DPL 0, 64-bit interrupt gate */
            .off1 = (uint16_t)(off >> 16), .off2 = (uint32_t)(off >> 32)};
    }
    load_idt();
}

void rt_set_handler(unsigned vector, rt_handler h)
{
    if (vector < 80)
        handlers[vector] = h;
}

void rt_trap(struct rt_frame *f);
void rt_trap(struct rt_frame *f)
{
    if (f->vector == 14 && (f->rip == (uint64_t)rt_probe_read_insn ||
                            f->rip == (uint64_t)rt_probe_write_insn)) {
        f->rax = (1ull << 32) | f->error;
        f->rip = (uint64_t)rt_probe_fixup;
        return;
    }
    if (f->vector < 80 && handlers[f->vector]) {
        handlers[f->vector](f);
        return;
    }
    rt_fail("vcpu %u: unexpected vector %lu, error 0x%lx, rip 0x%lx, cr2 0x%lx", rt_vcpu_id(),
            f->vector, f->error, f->rip, read_cr2());
}

/* ---- memory ---- */

static rt_spinlock alloc_lock;
static uint64_t next_free, free_end;

uint64_t rt_alloc_pages(unsigned count)
{
    uint64_t size = (uint64_t)count * PAGE_SIZE;
    rt_lock(&alloc_lock);
    uint64_t pa = next_free;
    if (count == 0 || size > free_end - pa) {
        rt_unlock(&alloc_lock);
        rt_fail("out of guest memory");
    }
    next_free += size;
    rt_unlock(&alloc_lock);
    void *d = (void *)pa;
    uint64_t n = size / 8;
    __asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0ul) : "memory");
    return pa;
}

uint64_t rt_alloc_page(void)
{
    return rt_alloc_pages(1);
}

static rt_spinlock map_lock;

static volatile uint64_t *walk(uint64_t va, bool create)
{
    volatile uint64_t *table = (volatile uint64_t *)(read_cr3() & PTE_ADDR);
    for (int shift = 39; shift > 12; shift -= 9) {
        volatile uint64_t *e = &table[(va >> shift) & 511];
        if (!(*e & PTE_P)) {
            if (!create)
                return 0;
            *e = rt_alloc_page() | PTE_P | PTE_W;
        }
        if (*e & PTE_PS)
            rt_fail("0x%lx lies in a large page", va);
        table = (volatile uint64_t *)(*e & PTE_ADDR);
    }
    return &table[(va >> 12) & 511];
}

volatile uint64_t *rt_pte(uint64_t va)
{
    return walk(va, false);
}

uint64_t rt_map(uint64_t va, uint64_t pa, uint64_t flags)
{
    rt_lock(&map_lock);
    volatile uint64_t *e = walk(va, true);
    uint64_t old = *e;
    *e = (pa & PTE_ADDR) | flags | PTE_P;
    rt_unlock(&map_lock);
    return old;
}

uint64_t rt_unmap(uint64_t va)
{
    rt_lock(&map_lock);
    volatile uint64_t *e = walk(va, false);
    uint64_t old = e ? *e : 0;
    if (e)
        *e = 0;
    rt_unlock(&map_lock);
    return old;
}

uint64_t rt_clone_pml4(void)
{
    uint64_t pa = rt_alloc_page();
    memcpy((void *)pa, (void *)(read_cr3() & PTE_ADDR), PAGE_SIZE);
    return pa;
}

/* ---- SMP ---- */

static struct emu_hypercall hcall[RT_VCPUS_MAX] __attribute__((aligned(8)));
#define AP_STACK_PAGES 4
static void (*ap_fn)(unsigned);
static volatile unsigned aps_started;

static int hypercall(struct emu_hypercall *hc)
{
    hc->result = 1;
    outl(EMU_PORT_HYPERCALL, (uint32_t)(uint64_t)hc);
    return ((volatile struct emu_hypercall *)hc)->result;
}

int rt_flush(uint64_t vcpu_mask, uint64_t va, uint64_t count, uint32_t flags)
{
    struct emu_hypercall *hc = &hcall[rt_vcpu_id()];
    *hc = (struct emu_hypercall){.op = EMU_HC_FLUSH, .flags = flags, .vcpu_mask = vcpu_mask,
                                 .va = va, .count = count};
    return hypercall(hc);
}

void rt_ap_start(void (*fn)(unsigned), uint64_t index);
void rt_ap_start(void (*fn)(unsigned), uint64_t index)
{
    load_idt();
    __atomic_fetch_add(&aps_started, 1, __ATOMIC_ACQ_REL);
    fn((unsigned)index);
    for (;;) {
        irq_enable();
        __asm__ volatile("hlt");
    }
}

void rt_start_others(void (*fn)(unsigned index))
{
    ap_fn = fn;
    for (unsigned i = 1; i < rt_nr_vcpus; i++) {
        /* A stack from the allocator, so that the image does not grow
         * with the most vCPUs a machine may have. */
        uint64_t stack = rt_alloc_pages(AP_STACK_PAGES);
        struct emu_hypercall *hc = &hcall[0];
        *hc = (struct emu_hypercall){.op = EMU_HC_START_VCPU, .vcpu = i,
                                     .rip = (uint64_t)rt_ap_entry,
                                     .rsp = stack + AP_STACK_PAGES * PAGE_SIZE,
                                     .arg = (uint64_t)fn, .cr3 = read_cr3()};
        int rc = hypercall(hc);
        if (rc != EMU_HC_OK)
            rt_fail("starting vcpu %u: %d", i, rc);
    }
    while (__atomic_load_n(&aps_started, __ATOMIC_ACQUIRE) != rt_nr_vcpus - 1)
        cpu_relax();
}

static volatile unsigned bar_count, bar_sense;

void rt_barrier(unsigned n)
{
    unsigned sense = __atomic_load_n(&bar_sense, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&bar_count, 1, __ATOMIC_ACQ_REL) == n) {
        bar_count = 0;
        __atomic_store_n(&bar_sense, !sense, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&bar_sense, __ATOMIC_ACQUIRE) == sense)
            cpu_relax();
    }
}

/* ---- start ---- */

void rt_start(const struct emu_boot_info *bi, uint64_t index);
void rt_start(const struct emu_boot_info *bi, uint64_t index)
{
    (void)index;
    rt_boot = bi;
    if (bi->magic != EMU_BOOT_MAGIC)
        rt_exit(2);
    if (bi->nr_vcpus < 1 || bi->nr_vcpus > RT_VCPUS_MAX)
        rt_exit(2);
    rt_nr_vcpus = bi->nr_vcpus;
    next_free = bi->image_end;
    free_end = bi->ram_size;
    setup_idt();
    rt_exit(guest_main());
}
int rt_memcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }
