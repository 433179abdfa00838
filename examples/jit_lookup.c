/* SPDX-License-Identifier: MIT */
/*
 * A JIT's guest loads and stores on vmmu's software TLB: x86-64 machine
 * code generated at run time that does the hit test of vmmu/tlb.h itself,
 * with a C function as its slow path.
 *
 * A binary translator does not call vmmu_tlb_probe(): it emits the hit
 * test into the code it generates, reading the vCPU's index mask and
 * table pointer from the vCPU (struct vmmu_tlb_fast is its first member),
 * and jumps to a helper on a miss.  This program generates one such
 * function per access (load or store of 1, 2, 4 or 8 bytes), byte by
 * byte, from the layout and the instruction sequence tlb.h documents:
 * RORX and ANDN where the host has BMI1 and BMI2, SHR and AND otherwise.
 * Then it runs guest accesses through the generated code and checks that
 * they hit where they should, that the slow path runs where it must (the
 * first access to a page, the first store to a clean page, a misaligned
 * or page-crossing access, MMIO, a fault, a change of CPL), and that every
 * value read or written is the guest's.  It exits 1 if anything differs.
 *
 *   cc jit_lookup.c $(pkg-config --cflags --libs vmmu) && ./a.out
 *
 * The generated code follows the SysV calling convention:
 *
 *     uint64_t load(struct vmmu_vcpu *vcpu, uint64_t va);
 *     void store(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t value);
 *
 * and, for a load of 8 bytes on a BMI host, is
 *
 *     rorx  $7, %rsi, %rax          ; the entry's offset, once masked
 *     and   (%rdi), %rax            ; vcpu->index_mask
 *     mov   $0xff8, %r8d            ; the offset bits an aligned access has clear
 *     andn  %rsi, %r8, %r8          ; the compared value: va & ~0xff8
 *     mov   8(%rdi), %rcx           ; vcpu->table
 *     cmp   0(%rcx,%rax), %r8       ; cmp[VMMU_TLB_READ]
 *     jne   slow
 *     add   24(%rcx,%rax), %rsi     ; addend: the host address
 *     mov   (%rsi), %rax
 *     ret
 *   slow:
 *     mov   $8, %edx                ; the access's size
 *     movabs $slow_load, %rax
 *     jmp   *%rax                   ; slow_load(vcpu, va, 8)
 *
 * Reading the mask and table from the vCPU at each access, as here, needs
 * no reload after the slow path or a change of CPL; code that keeps them
 * in registers across a block reloads them after every call into vmmu.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <vmmu/vmmu.h>

#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD 0x3000ull
#define PT 0x4000ull
#define DATA_GPA 0x100000ull   /* 16 data pages from 1 MiB */
#define DATA_VA 0x400000ull    /* mapped at 4 MiB */
#define NPAGES 16
#define MMIO_GPA 0x10000000ull /* a counter device at 256 MiB ... */
#define MMIO_VA (DATA_VA + NPAGES * 4096ull) /* ... mapped right after the data */
#define UNMAPPED_VA ((uint64_t)MMIO_VA + 4096)

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAILED: " __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                                  \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* ---- The guest side the slow path needs ---------------------------------- */

/* What the slow path reports to the run loop (one vCPU, one thread). */
static struct {
    struct vmmu_vm *vm;
    unsigned long slow_calls;   /* every entry into the slow path */
    int vector;                 /* the fault a slow path raised, or -1 */
    struct vmmu_x86_fault fault;
    unsigned long mmio_reads, mmio_writes;
    uint64_t mmio_last;
} g;

static int counter_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)size;
    g.mmio_reads++;
    *value = 0x1000 + offset; /* registers that read back their offset */
    return 0;
}

static int counter_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    g.mmio_writes++;
    g.mmio_last = value;
    return 0;
}

static const struct vmmu_mmio_ops counter_ops = {.read = counter_read, .write = counter_write};

/* One access the generated code could not do: walk, fill, and do it here.
 * A page-crossing access goes to the access layer, which checks both
 * pages before it touches either (a fault on the second page leaves the
 * first as it was, as the CPU does); MMIO goes to the device through the
 * guest-physical map; a fault is recorded for the run loop (a real JIT
 * would leave the block and raise it). */
static int slow_access(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, bool write,
                       uint64_t *value)
{
    struct vmmu_tlb_result res;
    void *host = vmmu_tlb_fill(vcpu, va, size, write ? VMMU_X86_ACC_WRITE : 0, &res);
    if (host) {
        if (write)
            vmmu_guest_store(host, value, size);
        else
            vmmu_guest_load(value, host, size);
        return 0;
    }
    switch (res.status) {
    case VMMU_TLB_FAULT:
        g.vector = res.fault.vector;
        g.fault = res.fault;
        return -1;
    case VMMU_TLB_NOT_RAM:
        return write ? vmmu_gpa_write(g.vm, res.gpa, value, size, 0, NULL)
                     : vmmu_gpa_read(g.vm, res.gpa, value, size, 0, NULL);
    case VMMU_TLB_CROSSES: {
        /* Not byte by byte through the TLB: a store would write its first
         * page and then fault on the second. */
        struct vmmu_x86_fault f;
        int err = write ? vmmu_access_store(vcpu, va, size, 0, value, &f)
                        : vmmu_access_load(vcpu, va, size, 0, value, &f);
        if (err) {
            fprintf(stderr, "access at 0x%" PRIx64 ": %s\n", va, vmmu_strerror(err));
            g.vector = -2;
            return -1;
        }
        if (f.vector != VMMU_X86_FAULT_NONE) {
            g.vector = f.vector;
            g.fault = f;
            return -1;
        }
        return 0;
    }
    default:
        fprintf(stderr, "access at 0x%" PRIx64 ": %s\n", va, vmmu_strerror(res.error));
        g.vector = -2;
        return -1;
    }
}

/* The helpers the generated code jumps to on a miss (same arguments as
 * the generated function, plus the size the code passes in a register). */
static uint64_t slow_load(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size)
{
    uint64_t value = 0;
    g.slow_calls++;
    if (slow_access(vcpu, va, size, false, &value))
        return 0;
    return value;
}

static void slow_store(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t value, unsigned size)
{
    g.slow_calls++;
    (void)slow_access(vcpu, va, size, true, &value);
}

/* ---- A code generator for the hit test ------------------------------------ */

struct code {
    uint8_t *p;
    uint8_t *end;
};

static void emit(struct code *c, const void *bytes, size_t n)
{
    if ((size_t)(c->end - c->p) < n) {
        fprintf(stderr, "code buffer full\n");
        failures++;
        return;
    }
    memcpy(c->p, bytes, n);
    c->p += n;
}

#define EMIT(c, ...)                                                                              \
    do {                                                                                          \
        const uint8_t bytes_[] = {__VA_ARGS__};                                                   \
        emit((c), bytes_, sizeof(bytes_));                                                        \
    } while (0)

static void emit32(struct code *c, uint32_t v)
{
    EMIT(c, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24));
}

static void emit64(struct code *c, uint64_t v)
{
    emit32(c, (uint32_t)v);
    emit32(c, (uint32_t)(v >> 32));
}

typedef uint64_t (*load_fn)(struct vmmu_vcpu *vcpu, uint64_t va);
typedef void (*store_fn)(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t value);

/*
 * Emit one access of @size bytes (1, 2, 4, 8) for @kind (VMMU_TLB_READ:
 * a load returning the zero-extended value; VMMU_TLB_WRITE: a store of
 * the low @size bytes of the third argument).  Registers: rdi the vCPU,
 * rsi va (then the host address), rdx the stored value, rax the entry's
 * offset (then the loaded value), rcx the table, r8 the compared value.
 */
static void *emit_access(struct code *c, enum vmmu_tlb_kind kind, unsigned size, bool bmi)
{
    void *start = c->p;
    const uint32_t offset_bits = VMMU_PAGE_SIZE - size; /* 0xff8 for 8 bytes */
    const uint8_t shift = VMMU_PAGE_SHIFT - VMMU_TLB_ENTRY_SHIFT;
    const uint8_t table_off = offsetof(struct vmmu_tlb_fast, table);
    const uint8_t cmp_off = (uint8_t)(offsetof(struct vmmu_tlb_entry, cmp) + 8 * kind);
    const uint8_t addend_off = offsetof(struct vmmu_tlb_entry, addend);

    if (bmi) {
        EMIT(c, 0xc4, 0xe3, 0xfb, 0xf0, 0xc6, shift);     /* rorx $7, %rsi, %rax */
        EMIT(c, 0x48, 0x23, 0x07);                        /* and (%rdi), %rax */
        EMIT(c, 0x41, 0xb8);                              /* mov $offset_bits, %r8d */
        emit32(c, offset_bits);
        EMIT(c, 0xc4, 0x62, 0xb8, 0xf2, 0xc6);            /* andn %rsi, %r8, %r8 */
    } else {
        EMIT(c, 0x48, 0x89, 0xf0);                        /* mov %rsi, %rax */
        EMIT(c, 0x48, 0xc1, 0xe8, shift);                 /* shr $7, %rax */
        EMIT(c, 0x48, 0x23, 0x07);                        /* and (%rdi), %rax */
        EMIT(c, 0x49, 0x89, 0xf0);                        /* mov %rsi, %r8 */
        EMIT(c, 0x49, 0x81, 0xe0);                        /* and $~offset_bits, %r8 */
        emit32(c, ~offset_bits);                          /* (sign-extended) */
    }
    EMIT(c, 0x48, 0x8b, 0x4f, table_off);                 /* mov table(%rdi), %rcx */
    EMIT(c, 0x4c, 0x3b, 0x44, 0x01, cmp_off);             /* cmp cmp_off(%rcx,%rax), %r8 */
    uint8_t *jne = c->p;
    EMIT(c, 0x75, 0x00);                                  /* jne slow (patched below) */
    EMIT(c, 0x48, 0x03, 0x74, 0x01, addend_off);          /* add 24(%rcx,%rax), %rsi */
    if (kind == VMMU_TLB_READ) {
        switch (size) {
        case 1: EMIT(c, 0x0f, 0xb6, 0x06); break;         /* movzbl (%rsi), %eax */
        case 2: EMIT(c, 0x0f, 0xb7, 0x06); break;         /* movzwl (%rsi), %eax */
        case 4: EMIT(c, 0x8b, 0x06); break;               /* mov (%rsi), %eax */
        default: EMIT(c, 0x48, 0x8b, 0x06); break;        /* mov (%rsi), %rax */
        }
    } else {
        switch (size) {
        case 1: EMIT(c, 0x88, 0x16); break;               /* mov %dl, (%rsi) */
        case 2: EMIT(c, 0x66, 0x89, 0x16); break;         /* mov %dx, (%rsi) */
        case 4: EMIT(c, 0x89, 0x16); break;               /* mov %edx, (%rsi) */
        default: EMIT(c, 0x48, 0x89, 0x16); break;        /* mov %rdx, (%rsi) */
        }
    }
    EMIT(c, 0xc3);                                        /* ret */
    jne[1] = (uint8_t)(c->p - (jne + 2));
    /* slow: the helper's extra argument is the size, in the first free
     * argument register; then a tail jump (the helper returns for us). */
    if (kind == VMMU_TLB_READ) {
        EMIT(c, 0xba);                                    /* mov $size, %edx */
        emit32(c, size);
        EMIT(c, 0x48, 0xb8);                              /* movabs $slow_load, %rax */
        emit64(c, (uint64_t)(uintptr_t)slow_load);
    } else {
        EMIT(c, 0xb9);                                    /* mov $size, %ecx */
        emit32(c, size);
        EMIT(c, 0x48, 0xb8);                              /* movabs $slow_store, %rax */
        emit64(c, (uint64_t)(uintptr_t)slow_store);
    }
    EMIT(c, 0xff, 0xe0);                                  /* jmp *%rax */
    while ((uintptr_t)c->p & 15)
        EMIT(c, 0xcc);                                    /* int3 between functions */
    return start;
}

/* Generated functions, by size: [0] 1 byte, [1] 2, [2] 4, [3] 8. */
static load_fn load[4];
static store_fn store[4];

static unsigned size_index(unsigned size)
{
    return size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3;
}

/* ISO C has no conversion from a data pointer to a function pointer; the
 * bytes of one are the other's on every host this code can run on. */
static load_fn as_load(void *p)
{
    load_fn f;
    memcpy(&f, &p, sizeof(f));
    return f;
}

static store_fn as_store(void *p)
{
    store_fn f;
    memcpy(&f, &p, sizeof(f));
    return f;
}

/* Generate the eight functions into fresh pages, then make the pages
 * executable and no longer writable. */
static void *generate(bool bmi, size_t *len)
{
    size_t size = 4096;
    uint8_t *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        perror("mmap");
        return NULL;
    }
    struct code c = {buf, buf + size};
    void *ld[4], *st[4];
    for (unsigned i = 0; i < 4; i++) {
        ld[i] = emit_access(&c, VMMU_TLB_READ, 1u << i, bmi);
        st[i] = emit_access(&c, VMMU_TLB_WRITE, 1u << i, bmi);
    }
    if (mprotect(buf, size, PROT_READ | PROT_EXEC)) {
        perror("mprotect");
        munmap(buf, size);
        return NULL;
    }
    for (unsigned i = 0; i < 4; i++) {
        load[i] = as_load(ld[i]);
        store[i] = as_store(st[i]);
    }
    printf("generated %td bytes of %s code for 8 accesses\n", c.p - buf,
           bmi ? "BMI1/BMI2 (RORX, ANDN)" : "baseline x86-64 (SHR, AND)");
    *len = size;
    return buf;
}

/* ---- The guest -------------------------------------------------------------- */

static void put64(struct vmmu_vm *vm, uint64_t gpa, uint64_t value)
{
    int err = vmmu_gpa_write(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "writing 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
}

static uint64_t get(struct vmmu_vm *vm, uint64_t gpa, unsigned size)
{
    uint64_t value = 0;
    int err = vmmu_gpa_read(vm, gpa, &value, size, 0, NULL);
    CHECK(err == 0, "reading 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
    return value;
}

static uint64_t pte_gpa(uint64_t va)
{
    return PT + ((va >> 12) & 511) * 8;
}

static uint64_t gpa_of(uint64_t va)
{
    return DATA_GPA + (va - DATA_VA);
}

/* A load through the generated code; checks that it is the guest's value
 * and that the slow path ran exactly when @slow says. */
static uint64_t jit_load(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, bool slow,
                         const char *what)
{
    unsigned long before = g.slow_calls;
    uint64_t v = load[size_index(size)](vcpu, va);
    CHECK((g.slow_calls != before) == slow, "%s: the slow path %s", what,
          slow ? "did not run" : "ran");
    return v;
}

static void jit_store(struct vmmu_vcpu *vcpu, uint64_t va, unsigned size, uint64_t value,
                      bool slow, const char *what)
{
    unsigned long before = g.slow_calls;
    store[size_index(size)](vcpu, va, value);
    CHECK((g.slow_calls != before) == slow, "%s: the slow path %s", what,
          slow ? "did not run" : "ran");
}

static bool host_has_bmi(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
}

static int run(bool bmi)
{
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu;
    struct vmmu_vm_config cfg = {.gpa_bits = 40};
    int err = vmmu_vm_create(&cfg, &vm);
    if (err) {
        fprintf(stderr, "vmmu_vm_create: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 16ull << 20};
    struct vmmu_region_desc dev = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                   .mmio = &counter_ops};
    if ((err = vmmu_region_add(vm, &ram, NULL)) || (err = vmmu_region_add(vm, &dev, NULL)) ||
        (err = vmmu_vcpu_create(vm, NULL, &vcpu)) ||
        /* This thread runs the vCPU: its TLB is used while it is online. */
        (err = vmmu_vcpu_online(vcpu))) {
        fprintf(stderr, "setup: %s\n", vmmu_strerror(err));
        vmmu_vm_destroy(vm);
        return 1;
    }
    memset(&g, 0, sizeof(g));
    g.vm = vm;
    g.vector = -1;

    /* 4-level tables: the data pages, present, writable, supervisor only,
     * A set, D clear; then the device page; then nothing. */
    const uint64_t upper = VMMU_X86_PTE_P | VMMU_X86_PTE_RW | VMMU_X86_PTE_US;
    const uint64_t leaf = VMMU_X86_PTE_P | VMMU_X86_PTE_RW | VMMU_X86_PTE_A;
    put64(vm, PML4, PDPT | upper);
    put64(vm, PDPT, PD | upper);
    put64(vm, PD + 2 * 8, PT | upper); /* PDE 2 covers [4 MiB, 6 MiB) */
    for (unsigned i = 0; i < NPAGES; i++) {
        uint64_t va = DATA_VA + i * 4096ull;
        put64(vm, pte_gpa(va), gpa_of(va) | leaf);
        for (unsigned w = 0; w < 512; w++) /* word w of page i: i << 16 | w */
            put64(vm, gpa_of(va) + w * 8, (uint64_t)i << 16 | w);
    }
    put64(vm, pte_gpa(MMIO_VA), MMIO_GPA | leaf | VMMU_X86_PTE_D);

    struct vmmu_x86_regs regs = {
        .cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP | VMMU_X86_CR0_ET,
        .cr3 = PML4,
        .cr4 = VMMU_X86_CR4_PAE,
        .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA | VMMU_X86_EFER_NXE,
        .rflags = 2,
        .cpl = 0,
    };
    if ((err = vmmu_vcpu_set_state(vcpu, &regs))) {
        fprintf(stderr, "vmmu_vcpu_set_state: %s\n", vmmu_strerror(err));
        vmmu_vcpu_destroy(vcpu);
        vmmu_vm_destroy(vm);
        return 1;
    }
    size_t code_len = 0;
    void *code = generate(bmi, &code_len);
    if (!code) {
        vmmu_vcpu_destroy(vcpu);
        vmmu_vm_destroy(vm);
        return 1;
    }

    /* 1. Eight-byte loads over every page, ten rounds: the slow path runs
     *    once per page (the first round), the generated code does the rest. */
    uint64_t sum = 0, want = 0;
    for (unsigned round = 0; round < 10; round++)
        for (unsigned i = 0; i < NPAGES; i++) {
            uint64_t va = DATA_VA + i * 4096ull + round * 8;
            sum += jit_load(vcpu, va, 8, round == 0, "8-byte load");
            want += (uint64_t)i << 16 | round;
        }
    printf("10 rounds of loads over %d pages: sum %" PRIu64 " (expected %" PRIu64
           "), %lu slow paths\n", NPAGES, sum, want, g.slow_calls);
    CHECK(sum == want, "wrong sum");

    /* 2. Every size, aligned, from pages already in the TLB: all hits. */
    uint64_t va = DATA_VA + 2 * 4096ull + 0x40;
    for (unsigned size = 1; size <= 8; size *= 2) {
        uint64_t got = jit_load(vcpu, va, size, false, "aligned load");
        uint64_t expect = get(vm, gpa_of(va), size);
        CHECK(got == expect, "%u-byte load: 0x%" PRIx64 ", expected 0x%" PRIx64, size, got,
              expect);
    }

    /* 3. A store to a clean page misses (the write comparator carries
     *    NOTDIRTY until the PTE's D bit is set); the slow path sets D, and
     *    the next stores to the page hit. */
    va = DATA_VA + 3 * 4096ull + 0x100;
    jit_store(vcpu, va, 8, 0x1122334455667788ull, true, "first store to a clean page");
    uint64_t pte = get(vm, pte_gpa(va), 8);
    printf("first store to page 3: slow path, PTE D bit %s\n",
           (pte & VMMU_X86_PTE_D) ? "set" : "clear");
    CHECK(pte & VMMU_X86_PTE_D, "the store did not set D");
    jit_store(vcpu, va + 8, 4, 0xaabbccdd, false, "second store");
    jit_store(vcpu, va + 12, 2, 0xeeff, false, "2-byte store");
    jit_store(vcpu, va + 14, 1, 0x99, false, "1-byte store");
    CHECK(get(vm, gpa_of(va), 8) == 0x1122334455667788ull, "8-byte store lost");
    CHECK(get(vm, gpa_of(va) + 8, 8) == 0x99eeffaabbccddull, "narrow stores: 0x%" PRIx64,
          get(vm, gpa_of(va) + 8, 8));

    /* 4. Misaligned and page-crossing accesses leave the generated code
     *    (the compared value keeps the low bits) and the slow path does them. */
    va = DATA_VA + 3 * 4096ull + 0x103;
    uint64_t got = jit_load(vcpu, va, 4, true, "misaligned load");
    CHECK(got == get(vm, gpa_of(va), 4), "misaligned load: 0x%" PRIx64, got);
    va = DATA_VA + 5 * 4096ull - 4; /* the last 4 bytes of page 4, the first 4 of page 5 */
    got = jit_load(vcpu, va, 8, true, "page-crossing load");
    CHECK(got == (uint64_t)5 << 48, /* page 5's word 0 (5 << 16) in the high half */
          "page-crossing load: 0x%" PRIx64, got);
    CHECK(got == get(vm, gpa_of(va), 8), "page-crossing load differs from the guest's");
    printf("misaligned and page-crossing loads: slow path, values right\n");

    /* 5. MMIO: the entry's comparators carry the MMIO flag, so every
     *    access leaves the generated code and reaches the device. */
    for (unsigned i = 0; i < 3; i++) {
        got = jit_load(vcpu, MMIO_VA + 0x10, 4, true, "MMIO load");
        CHECK(got == 0x1010, "MMIO load: 0x%" PRIx64, got);
    }
    jit_store(vcpu, MMIO_VA + 0x20, 4, 0x5a5a, true, "MMIO store");
    printf("MMIO: %lu reads, %lu writes reached the device (last 0x%" PRIx64 ")\n",
           g.mmio_reads, g.mmio_writes, g.mmio_last);
    CHECK(g.mmio_reads == 3 && g.mmio_writes == 1 && g.mmio_last == 0x5a5a, "MMIO counts");

    /* 6. A page that is not mapped: the slow path reports #PF(0). */
    got = jit_load(vcpu, UNMAPPED_VA + 8, 8, true, "unmapped load");
    printf("load at 0x%" PRIx64 ": vector %d, error code 0x%x, CR2 0x%" PRIx64 "\n",
           UNMAPPED_VA + 8, g.vector, g.fault.error_code, g.fault.cr2);
    CHECK(g.vector == VMMU_X86_VEC_PF && g.fault.error_code == 0 &&
              g.fault.cr2 == UNMAPPED_VA + 8, "expected #PF(0)");
    /* A store from the device page into the unmapped one faults before
     * either page is written: the device sees no part of it. */
    unsigned long writes = g.mmio_writes;
    g.vector = -1;
    jit_store(vcpu, UNMAPPED_VA - 4, 8, 0x1122334455667788ull, true, "page-crossing store");
    printf("store across 0x%" PRIx64 ": vector %d, error code 0x%x, CR2 0x%" PRIx64
           ", %lu device writes\n",
           UNMAPPED_VA, g.vector, g.fault.error_code, g.fault.cr2, g.mmio_writes - writes);
    CHECK(g.vector == VMMU_X86_VEC_PF && g.fault.error_code == VMMU_X86_PF_W &&
              g.fault.cr2 == UNMAPPED_VA, "expected #PF(W) at the second page");
    CHECK(g.mmio_writes == writes, "a faulting store reached the device");

    /* 7. CPL 3 (vmmu_vcpu_set_cpl flushes nothing): the vCPU now points at
     *    its user context's table, which the generated code reads at the
     *    next access; the pages are supervisor only, so the load faults
     *    with #PF(P|U) instead of hitting the supervisor entry.  Back at
     *    CPL 0 the supervisor entries hit again (but the faulting page's:
     *    a #PF drops the entries of its page, as the CPU's does). */
    CHECK(vmmu_vcpu_set_cpl(vcpu, 3) == 0, "CPL 3");
    g.vector = -1;
    (void)jit_load(vcpu, DATA_VA, 8, true, "user load of a supervisor page");
    printf("CPL 3 load of a supervisor page: vector %d, error code 0x%x\n", g.vector,
           g.fault.error_code);
    CHECK(g.vector == VMMU_X86_VEC_PF &&
              g.fault.error_code == (VMMU_X86_PF_P | VMMU_X86_PF_U), "expected #PF(P|U)");
    CHECK(vmmu_vcpu_set_cpl(vcpu, 0) == 0, "CPL 0");
    got = jit_load(vcpu, DATA_VA + 4096 + 8, 8, false, "supervisor load after the switch back");
    CHECK(got == get(vm, gpa_of(DATA_VA + 4096 + 8), 8), "supervisor load: 0x%" PRIx64, got);

    /* 8. The guest remaps page 7 and invalidates it: the generated code
     *    misses once, then hits on the new page. */
    va = DATA_VA + 7 * 4096ull;
    put64(vm, gpa_of(DATA_VA + 9 * 4096ull) + 0x800, 0x4242);
    put64(vm, pte_gpa(va), gpa_of(DATA_VA + 9 * 4096ull) | leaf);
    vmmu_vcpu_invlpg(vcpu, va);
    CHECK(jit_load(vcpu, va + 0x800, 8, true, "after INVLPG") == 0x4242, "INVLPG: old page");
    CHECK(jit_load(vcpu, va + 0x800, 8, false, "again") == 0x4242, "remapped page");

    struct vmmu_tlb_stats st;
    vmmu_vcpu_stats(vcpu, &st);
    printf("TLB: %lu slow paths, %" PRIu64 " walks (%" PRIu64
           " from the paging-structure caches), %" PRIu64 " fills, %" PRIu64 " faults\n",
           g.slow_calls, st.walks, st.psc_hits, st.fills, st.faults);

    munmap(code, code_len);
    vmmu_vcpu_destroy(vcpu);
    vmmu_vm_destroy(vm);
    return 0;
}

int main(void)
{
    /* The baseline sequence runs everywhere; the BMI one where the CPU has
     * BMI1 and BMI2 (every x86-64-v3 host). */
    if (run(false))
        return 1;
    if (host_has_bmi()) {
        if (run(true))
            return 1;
    } else {
        printf("this host has no BMI1/BMI2: the RORX/ANDN sequence was not run\n");
    }
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
