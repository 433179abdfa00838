/* libFuzzer target for the x86 page walker: random guest memory and
 * random registers, walked in both forms.
 *
 * Guest-physical layout (fixed for the whole run):
 *   [0, 64 KiB)            RAM: the fuzzer's image (page tables live here)
 *   [1 MiB, 1 MiB + 4 KiB) ROM: the first 4 KiB of the image again
 *   [2 MiB, 2 MiB + 4 KiB) MMIO: its callbacks must never run
 *   everything else        holes
 *
 * Checked on every input: no crash and no read outside the regions (ASan),
 * no MMIO callback, at most five levels and a bounded number of restarts,
 * a result consistent with itself (offset kept, page size valid, error
 * code bits valid, RSVD only with P), and the side-effect-free walk giving
 * the same answer as the real one while leaving memory untouched. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_env.h"
#include "vmmu/vmmu.h"

#define IMAGE_SIZE (64u * 1024u)
#define ROM_GPA 0x100000ull
#define MMIO_GPA 0x200000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vmmu_vm *vm;
static uint8_t *ram, *rom, *snapshot;

static void setup_once(void)
{
    if (vm)
        return;
    ram = aligned_alloc(4096, IMAGE_SIZE);
    rom = aligned_alloc(4096, 4096);
    snapshot = malloc(IMAGE_SIZE);
    if (!ram || !rom || !snapshot || vmmu_vm_create(NULL, &vm) != 0)
        abort();
    struct vmmu_region_desc r = {.type = VMMU_MEM_RAM, .gpa = 0, .size = IMAGE_SIZE, .host = ram};
    struct vmmu_region_desc o = {.type = VMMU_MEM_ROM, .gpa = ROM_GPA, .size = 4096, .host = rom};
    struct vmmu_region_desc m = {.type = VMMU_MEM_MMIO, .gpa = MMIO_GPA, .size = 4096,
                                 .mmio = &mmio_ops};
    if (vmmu_region_add(vm, &r, NULL) || vmmu_region_add(vm, &o, NULL) ||
        vmmu_region_add(vm, &m, NULL))
        abort();
}

/* The input's header: registers, CPU model and accesses. */
struct header {
    uint64_t cr0, cr3, cr4, efer, rflags;
    uint64_t va[4];
    uint32_t features, pkru, pkrs;
    uint8_t cpl, maxphyaddr, vendor, how, access[4];
};

/* how: bit 0 raw register values (else built from a mode selector so most
 *      inputs reach a valid state), bit 1 load via setters instead of
 *      set_state, bit 2 tame the image (every 8-byte word's address bits
 *      limited to the RAM, so walks go deep), bits 4-6 the mode. */
static void regs_from(const struct header *h, struct vmmu_x86_regs *r)
{
    memset(r, 0, sizeof(*r));
    r->cpl = h->cpl & 3;
    r->rflags = h->rflags;
    r->pkru = h->pkru;
    r->pkrs = h->pkrs;
    if (h->how & 1) {
        r->cr0 = h->cr0;
        r->cr3 = h->cr3;
        r->cr4 = h->cr4;
        r->efer = h->efer;
        return;
    }
    unsigned mode = (h->how >> 4) & 7;
    r->cr0 = 0x11 | (h->cr0 & (1ull << 16)); /* PE, ET, maybe WP */
    r->cr4 = h->cr4 & ((1ull << 4) | (1ull << 7) | (1ull << 20) | (1ull << 21) | (1ull << 22) |
                       (1ull << 24));
    r->efer = h->efer & (1ull << 11); /* maybe NXE */
    r->cr3 = h->cr3 & (IMAGE_SIZE - 1) & ~0x7ull;
    switch (mode) {
    case 0:
        break; /* paging off */
    case 1:
        r->cr0 |= 1ull << 31; /* 32-bit paging */
        r->cr4 &= ~((1ull << 22) | (1ull << 24));
        break;
    case 2:
        r->cr0 |= 1ull << 31; /* PAE */
        r->cr4 |= 1ull << 5;
        r->cr4 &= ~((1ull << 22) | (1ull << 24));
        break;
    case 3:
    case 4:
        r->cr0 |= 1ull << 31; /* 4-level */
        r->cr4 |= 1ull << 5;
        r->efer |= (1ull << 8) | (1ull << 10);
        break;
    default:
        r->cr0 |= 1ull << 31; /* 5-level */
        r->cr4 |= (1ull << 5) | (1ull << 12);
        r->efer |= (1ull << 8) | (1ull << 10);
        break;
    }
}

/* Load registers one instruction at a time, as a guest would; faults just
 * leave the register as it was. */
static void load_by_setters(struct vmmu_x86_paging *pg, const struct vmmu_x86_regs *r)
{
    struct vmmu_x86_fault f;
    (void)vmmu_x86_set_efer(pg, r->efer & ~(1ull << 10), &f);
    (void)vmmu_x86_set_cr3(pg, r->cr3, &f);
    (void)vmmu_x86_set_cr4(pg, r->cr4 & ~(1ull << 17), &f);
    (void)vmmu_x86_set_cr0(pg, r->cr0, &f);
    (void)vmmu_x86_set_cr4(pg, r->cr4, &f);
    (void)vmmu_x86_set_pkru(pg, r->pkru, &f);
    (void)vmmu_x86_set_pkrs(pg, r->pkrs, &f);
    (void)vmmu_x86_set_rflags(pg, r->rflags);
    (void)vmmu_x86_set_cpl(pg, r->cpl);
}

static void check_result(const struct vmmu_x86_walk *w)
{
    if (w->nlevels > VMMU_X86_LEVELS_MAX || w->restarts > VMMU_X86_WALK_RESTARTS_MAX)
        abort();
    if (w->ok) {
        uint64_t s = w->page_size;
        if (s != 4096 && s != (2u << 20) && s != (4u << 20) && s != (1u << 30))
            abort();
        if ((w->gpa & (s - 1)) != (w->va & (s - 1)))
            abort();
        if (w->fault.vector != VMMU_X86_FAULT_NONE)
            abort();
        return;
    }
    switch (w->fault.vector) {
    case VMMU_X86_VEC_PF:
        if (w->fault.error_code & ~0x3fu)
            abort();
        if ((w->fault.error_code & VMMU_X86_PF_RSVD) && !(w->fault.error_code & VMMU_X86_PF_P))
            abort();
        if (w->fault.cr2 != w->va)
            abort();
        break;
    case VMMU_X86_VEC_GP:
    case VMMU_X86_VEC_SS:
        if (w->fault.error_code != 0 || w->nlevels != 0)
            abort();
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();

    struct header h;
    memset(&h, 0, sizeof(h));
    memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
    size_t off = size < sizeof(h) ? size : sizeof(h);

    memset(ram, 0, IMAGE_SIZE);
    memcpy(ram, data + off, size - off < IMAGE_SIZE ? size - off : IMAGE_SIZE);
    if (h.how & 4) {
        for (size_t i = 0; i < IMAGE_SIZE; i += 8) {
            uint64_t w;
            memcpy(&w, ram + i, 8);
            w &= ~0x000fffffffff0000ull; /* addresses stay within 64 KiB */
            memcpy(ram + i, &w, 8);
        }
    }
    memcpy(rom, ram, 4096);

    struct vmmu_x86_cpu cpu = {.vendor = (enum vmmu_x86_vendor)(h.vendor & 1),
                               .features = h.features & VMMU_X86_FEAT_ALL,
                               .maxphyaddr = 32 + h.maxphyaddr % 21};
    if (!(cpu.features & VMMU_X86_FEAT_LM))
        cpu.features &= ~(VMMU_X86_FEAT_LA57 | VMMU_X86_FEAT_1G);
    if (!(h.how & 1))
        cpu.features = VMMU_X86_FEAT_ALL & ~(h.features & (VMMU_X86_FEAT_1G | VMMU_X86_FEAT_PSE36));
    struct vmmu_x86_paging pg;
    if (vmmu_x86_paging_init(&pg, vm, &cpu) != 0)
        abort();

    struct vmmu_x86_regs r;
    regs_from(&h, &r);
    if (h.how & 2)
        load_by_setters(&pg, &r);
    else if (vmmu_x86_set_state(&pg, &r) != 0)
        return 0;

    mmio_calls = 0;
    for (int i = 0; i < 4; i++) {
        unsigned access = h.access[i] & VMMU_X86_ACC_ALL;
        if ((access & VMMU_X86_ACC_WRITE) && (access & VMMU_X86_ACC_FETCH))
            access &= ~VMMU_X86_ACC_FETCH;
        uint64_t va = h.va[i];

        struct vmmu_x86_walk peek, real;
        memcpy(snapshot, ram, IMAGE_SIZE);
        if (vmmu_x86_walk_peek(&pg, va, access, &peek) != 0)
            abort();
        check_result(&peek);
        if (memcmp(snapshot, ram, IMAGE_SIZE) != 0)
            abort(); /* the peek wrote guest memory */

        /* Single-threaded, so the only entry that can change under a walk
         * is one the walk itself updated (a table pointing into itself):
         * that converges within a restart or two. */
        if (vmmu_x86_walk(&pg, va, access, &real) != 0)
            abort();
        check_result(&real);
        if (real.ok != peek.ok || real.gpa != peek.gpa || real.page_size != peek.page_size ||
            real.fault.vector != peek.fault.vector || real.fault.error_code != peek.fault.error_code)
            abort();
        if (!real.ok && memcmp(snapshot, ram, IMAGE_SIZE) != 0)
            abort(); /* a faulting walk set A/D bits */
    }
    if (mmio_calls != 0)
        abort();
    return 0;
}
