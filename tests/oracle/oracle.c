/* SPDX-License-Identifier: MIT */
/* Shared half of the paging oracles: guest image, case generator and the
 * comparison with vmmu (see oracle.h and docs/oracle.md). */
#include "oracle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Entry bits, spelled out here so that the oracle does not lean on the
 * names of the code it checks. */
#define P (1ull << 0)
#define RW (1ull << 1)
#define US (1ull << 2)
#define PS (1ull << 7)
#define A (1ull << 5)
#define D (1ull << 6)
#define NX (1ull << 63)

#define CR0_PE (1ull << 0)
#define CR0_ET (1ull << 4)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define CR4_PKE (1ull << 22)
#define CR4_PKS (1ull << 24)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)
#define RFLAGS_AC (1ull << 18)

#define KiB 0x400ull
#define MiB 0x100000ull
#define GiB 0x40000000ull

/* Infra tables (layout.h: OR_INFRA).  The PD is shared by IA-32e and PAE
 * paging: both use the same 8-byte PDE format. */
#define INFRA_PML5 (OR_INFRA + 0x0000)
#define INFRA_PML4 (OR_INFRA + 0x1000)
#define INFRA_PDPT (OR_INFRA + 0x2000)
#define INFRA_PD (OR_INFRA + 0x3000)
#define INFRA_PT64 (OR_INFRA + 0x4000)  /* 4 KiB pages of the first 2 MiB */
#define INFRA_PAE_PDPT (OR_INFRA + 0x5000)
#define INFRA_PD32 (OR_INFRA + 0x6000)
#define INFRA_PT32 (OR_INFRA + 0x7000)  /* 16 pages: 4 KiB pages of 64 MiB */

/* The paging modes a case runs in (a legacy batch mixes the first two). */
enum sub {
    SUB_32,
    SUB_PAE,
    SUB_4,
    SUB_5,
};

static uint64_t bits(unsigned hi, unsigned lo)
{
    return hi < lo ? 0 : ((~0ull >> (63 - hi)) & ~((1ull << lo) - 1));
}

/* SDM 4.3, Table 4-4: a 4 MiB PDE in 32-bit paging with PSE-36 holds
 * physical-address bits (M-1):32 in bits (M-20):13, M = min(MAXPHYADDR,
 * 40); bits 21:(M-19) are reserved. */
static uint64_t pse36_pde_reserved(unsigned maxphyaddr)
{
    unsigned m = maxphyaddr < 40 ? maxphyaddr : 40;
    return bits(21, m - 19);
}

/* SDM 4.4.1, Table 4-8: a present PAE PDPTE reserves bits 63:MAXPHYADDR,
 * 8:5 and 2:1. */
static uint64_t pae_pdpte_reserved(unsigned maxphyaddr)
{
    return bits(63, maxphyaddr) | bits(8, 5) | bits(2, 1);
}

static void put64(uint8_t *ram, uint64_t gpa, uint64_t v)
{
    memcpy(ram + gpa, &v, 8);
}

static uint64_t get64(const uint8_t *ram, uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, ram + gpa, 8);
    return v;
}

size_t or_guest_load(const char *path, uint8_t **image, uint32_t *entry)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "oracle: cannot open guest %s: %s\n", path, strerror(errno));
        return 0;
    }
    size_t cap = 64 * KiB, len;
    uint8_t *buf = malloc(cap);
    len = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    /* The multiboot header is first: magic, flags, checksum, then the
     * address fields; entry_addr is the eighth word. */
    if (len < 32 || len >= cap || or_get32(buf, 0) != 0x1badb002) {
        fprintf(stderr, "oracle: %s is not the oracle guest\n", path);
        free(buf);
        return 0;
    }
    *entry = or_get32(buf, 28);
    *image = buf;
    return len;
}

static void build_infra(uint8_t *ram)
{
    memset(ram + OR_INFRA, 0, OR_INFRA_END - OR_INFRA);
    /* IA-32e: PML5[0] -> PML4[0] -> PDPT[0] -> PD; PD[0] -> 4 KiB PTEs,
     * PD[1..31] 2 MiB pages: 64 MiB 1:1.  Upper levels allow everything;
     * the leaves are supervisor-only except the two user pages. */
    put64(ram, INFRA_PML5, INFRA_PML4 | P | RW | US);
    put64(ram, INFRA_PML4, INFRA_PDPT | P | RW | US);
    put64(ram, INFRA_PDPT, INFRA_PD | P | RW | US);
    put64(ram, INFRA_PD, INFRA_PT64 | P | RW | US);
    for (uint64_t i = 1; i < OR_MAPPED / (2 * MiB); i++)
        put64(ram, INFRA_PD + 8 * i, i * 2 * MiB | P | RW | PS);
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t pa = i * 4 * KiB;
        bool user = pa == OR_USER_CODE || pa == OR_USER_STACK;
        put64(ram, INFRA_PT64 + 8 * i, pa | P | RW | (user ? US : 0));
    }
    /* PAE: PDPTE 0 -> the same PD (a PDPTE has no R/W or U/S bits). */
    put64(ram, INFRA_PAE_PDPT, INFRA_PD | P);
    /* 32-bit: 16 PDEs -> 16 PTs of 4 KiB pages (CR4.PSE may be 0). */
    for (uint32_t i = 0; i < OR_MAPPED / (4 * MiB); i++) {
        uint32_t pt = INFRA_PT32 + i * 0x1000;
        or_put32(ram, INFRA_PD32 + 4 * i, pt | P | RW | US);
        for (uint32_t j = 0; j < 1024; j++) {
            uint32_t pa = i * 4 * MiB + j * 4 * KiB;
            bool user = pa == OR_USER_CODE || pa == OR_USER_STACK;
            or_put32(ram, pt + 4 * j, pa | P | RW | (user ? US : 0));
        }
    }
}

uint32_t or_infra_root(unsigned mode)
{
    return mode == OR_MODE_LONG5 ? INFRA_PML5 : INFRA_PML4;
}

void or_image_prepare(uint8_t *ram, const uint8_t *guest, size_t guest_len, unsigned mode,
                      uint32_t ncases, uint32_t first)
{
    memcpy(ram + OR_LOAD_ADDR, guest, guest_len);
    memset(ram + OR_HEADER, 0, 4 * KiB);
    or_put32(ram, OR_HEADER + H_MAGIC, OR_MAGIC);
    or_put32(ram, OR_HEADER + H_MODE, mode);
    or_put32(ram, OR_HEADER + H_NCASES, ncases);
    or_put32(ram, OR_HEADER + H_FIRST, first);
    or_put32(ram, OR_HEADER + H_ROOT, or_infra_root(mode));
    build_infra(ram);
    memset(ram + OR_POOL, 0, OR_POOL_PAGES * 4 * KiB);
    for (uint64_t i = 0; i < OR_DATA_SIZE; i += 2) {
        ram[OR_DATA + i] = 0x0f; /* ud2 */
        ram[OR_DATA + i + 1] = 0x0b;
    }
}

void or_profile_from_cpuid(struct or_profile *p, const uint32_t cpuid[8])
{
    uint32_t f = 0;
    if (cpuid[OR_CPUID_X1_EDX] & (1u << 20))
        f |= VMMU_X86_FEAT_NX;
    if (cpuid[OR_CPUID_1_EDX] & (1u << 17))
        f |= VMMU_X86_FEAT_PSE36;
    if (cpuid[OR_CPUID_X1_EDX] & (1u << 29))
        f |= VMMU_X86_FEAT_LM;
    if (cpuid[OR_CPUID_X1_EDX] & (1u << 26))
        f |= VMMU_X86_FEAT_1G;
    if (cpuid[OR_CPUID_7_ECX] & (1u << 16))
        f |= VMMU_X86_FEAT_LA57;
    if (cpuid[OR_CPUID_7_EBX] & (1u << 7))
        f |= VMMU_X86_FEAT_SMEP;
    if (cpuid[OR_CPUID_7_EBX] & (1u << 20))
        f |= VMMU_X86_FEAT_SMAP;
    if (cpuid[OR_CPUID_7_ECX] & (1u << 3))
        f |= VMMU_X86_FEAT_PKU;
    if (cpuid[OR_CPUID_7_ECX] & (1u << 31))
        f |= VMMU_X86_FEAT_PKS;
    p->features = f;
    p->maxphyaddr = cpuid[OR_CPUID_X8_EAX] & 0xff;
}

/* ---- the case generator ------------------------------------------------ */

struct gen {
    struct or_rng rng;
    const struct or_profile *p;
    uint8_t *desc;
    unsigned nwrites;
};

static uint64_t rnd(struct gen *g, uint64_t n)
{
    return or_rand(&g->rng) % n;
}

/* true with probability num/den */
static bool chance(struct gen *g, unsigned num, unsigned den)
{
    return rnd(g, den) < num;
}

static bool has(const struct gen *g, uint32_t feature)
{
    return (g->p->features & feature) != 0;
}

static void add_write(struct gen *g, uint64_t gpa, unsigned size, uint64_t value)
{
    uint8_t *w = g->desc + C_W + OR_W_SIZE * g->nwrites++;
    or_put32(w, W_GPA, (uint32_t)gpa);
    or_put32(w, W_SIZE, size);
    put64(w, W_VALUE, value);
}

/* One random bit of @mask (0 if empty). */
static uint64_t pick_bit(struct gen *g, uint64_t mask)
{
    unsigned n = (unsigned)__builtin_popcountll(mask);
    if (!n)
        return 0;
    unsigned k = (unsigned)rnd(g, n);
    while (k--)
        mask &= mask - 1;
    return mask & -mask;
}

/* Flag bits of an 8-byte entry (PAE or IA-32e) at @level: everything but
 * the address and PS, at random.  Reserved bits come from inject(). */
static uint64_t flags64(struct gen *g, enum sub sub, bool nxe, bool leaf, bool large)
{
    uint64_t v = 0;
    if (chance(g, 15, 16))
        v |= P;
    if (chance(g, 3, 4))
        v |= RW;
    if (chance(g, 3, 4))
        v |= US;
    v |= rnd(g, 4) << 3;  /* PWT, PCD */
    v |= rnd(g, 4) << 5;  /* A, D (D is ignored above the leaf) */
    if (chance(g, 1, 4))
        v |= 1ull << 8;   /* G; AMD reserves it in PML4Es and PML5Es */
    v |= rnd(g, 8) << 9;  /* ignored */
    if (sub >= SUB_4) {
        if (chance(g, 1, 4))
            v |= rnd(g, 128) << 52; /* ignored */
        v |= rnd(g, 16) << 59;      /* protection key in a leaf, else ignored */
    }
    if (leaf && chance(g, 1, 4))
        v |= large ? (1ull << 12) : PS; /* PAT */
    /* XD: reserved without EFER.NXE, so rarer there */
    if (chance(g, 1, nxe ? 6 : 40))
        v |= NX;
    return v;
}

/* With some probability, one bit the manual reserves in this entry. */
static uint64_t inject(struct gen *g, enum sub sub, unsigned level, bool leaf, bool large)
{
    unsigned m = g->p->maxphyaddr;
    uint64_t cand = 0;

    if (!chance(g, 1, 20))
        return 0;
    switch (sub) {
    case SUB_32:
        /* a 4 MiB PDE: bit 21, and PSE-36 bits beyond MAXPHYADDR */
        if (large)
            cand = pse36_pde_reserved(m);
        break;
    case SUB_PAE:
        if (level == 3)
            return 0; /* PDPTEs: a #GP at load time, which QEMU skips */
        cand = bits(62, m);
        if (large)
            cand |= bits(20, 13);
        break;
    case SUB_4:
    case SUB_5:
        cand = bits(51, m);
        if (level >= 4)
            cand |= PS;
        if (level == 3 && !has(g, VMMU_X86_FEAT_1G))
            cand |= PS;
        if (large)
            cand |= level == 3 ? bits(29, 13) : bits(20, 13);
        break;
    }
    (void)leaf;
    return pick_bit(g, cand);
}

/* Distinct random pages of the table pool. */
static void pick_tables(struct gen *g, uint64_t *t, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        for (;;) {
            t[i] = OR_POOL + rnd(g, OR_POOL_PAGES) * 4 * KiB;
            bool dup = false;
            for (unsigned j = 0; j < i; j++)
                dup = dup || t[j] == t[i];
            if (!dup)
                break;
        }
    }
}

/* Build one case: registers, access, and a random walk to the data pool. */
static void gen_case(struct gen *g, unsigned mode)
{
    const struct or_profile *p = g->p;
    enum sub sub = mode == OR_MODE_LONG5 ? SUB_5
                   : mode == OR_MODE_LONG4 ? SUB_4
                   : chance(g, 1, 2) ? SUB_PAE
                                     : SUB_32;
    uint8_t *d = g->desc;
    memset(d, 0, OR_CASE_SIZE);
    g->nwrites = 0;

    /* registers */
    uint64_t cr0 = CR0_PE | CR0_ET | CR0_PG | (chance(g, 1, 2) ? CR0_WP : 0);
    uint64_t cr4 = 0, efer = 0, cr3;
    bool nxe = has(g, VMMU_X86_FEAT_NX) && chance(g, 3, 4);
    if (nxe)
        efer |= EFER_NXE;
    if (has(g, VMMU_X86_FEAT_SMEP) && chance(g, 1, 2))
        cr4 |= CR4_SMEP;
    if (has(g, VMMU_X86_FEAT_SMAP) && chance(g, 1, 2))
        cr4 |= CR4_SMAP;
    bool pse = chance(g, 1, 2);
    switch (sub) {
    case SUB_32:
        cr4 |= pse ? CR4_PSE : 0;
        cr3 = INFRA_PD32;
        break;
    case SUB_PAE:
        cr4 |= CR4_PAE | (pse ? CR4_PSE : 0); /* PSE is ignored with PAE */
        cr3 = INFRA_PAE_PDPT;
        break;
    default:
        cr4 |= CR4_PAE | (sub == SUB_5 ? CR4_LA57 : 0);
        efer |= EFER_LME | EFER_LMA;
        cr3 = sub == SUB_5 ? INFRA_PML5 : INFRA_PML4;
        if (has(g, VMMU_X86_FEAT_PKU) && chance(g, 1, 2)) {
            cr4 |= CR4_PKE;
            or_put32(d, C_PKRU, (uint32_t)or_rand(&g->rng));
        }
        if (has(g, VMMU_X86_FEAT_PKS)) {
            if (chance(g, 1, 2))
                cr4 |= CR4_PKS;
            /* key 0 stays open: the guest's own pages use it */
            or_put32(d, C_PKRS, (uint32_t)or_rand(&g->rng) & ~3u);
            d[C_FLAGS] |= OR_CF_SET_PKRS;
        }
        break;
    }
    put64(d, C_CR0, cr0);
    put64(d, C_CR3, cr3);
    put64(d, C_CR4, cr4);
    put64(d, C_EFER, efer);
    unsigned access = rnd(g, 20) < 8 ? OR_ACC_READ : rnd(g, 12) < 7 ? OR_ACC_WRITE : OR_ACC_FETCH;
    or_put32(d, C_ACCESS, access);
    or_put32(d, C_CPL, chance(g, 1, 2) ? 3 : 0);
    or_put32(d, C_RFLAGS, chance(g, 1, 2) ? (uint32_t)RFLAGS_AC : 0);

    /* the shape of the walk */
    unsigned top, esize, ibits;
    switch (sub) {
    case SUB_32: top = 2; esize = 4; ibits = 10; break;
    case SUB_PAE: top = 3; esize = 8; ibits = 9; break;
    case SUB_4: top = 4; esize = 8; ibits = 9; break;
    default: top = 5; esize = 8; ibits = 9; break;
    }
    /* leaf level and page size */
    unsigned leaf = 1;
    uint64_t r = rnd(g, 100);
    if (sub == SUB_32) {
        leaf = (pse && r < 40) ? 2 : 1;
    } else {
        if (r < 35)
            leaf = 2;
        else if (r < 50 && sub >= SUB_4 && has(g, VMMU_X86_FEAT_1G))
            leaf = 3;
    }
    unsigned shift = 12 + ibits * (leaf - 1);
    uint64_t size = 1ull << shift;
    uint64_t frame, offset;
    if (size >= GiB) {
        frame = 0;
        offset = OR_DATA + rnd(g, OR_DATA_SIZE / 2) * 2;
    } else {
        frame = OR_DATA + rnd(g, OR_DATA_SIZE / size) * size;
        offset = rnd(g, size / 2) * 2;
    }

    /* indices above the leaf: the top one avoids the infra's slots */
    uint64_t idx[6] = {0};
    uint64_t va = offset;
    for (unsigned l = top; l >= leaf; l--) {
        if (l == top) {
            if (sub == SUB_32)
                idx[l] = OR_MAPPED / (4 * MiB) + rnd(g, 1024 - OR_MAPPED / (4 * MiB));
            else if (sub == SUB_PAE)
                idx[l] = rnd(g, 4);
            else
                do
                    idx[l] = 1 + rnd(g, 511);
                while (p->avoid_pml4_256 && sub == SUB_4 && idx[l] == 256);
        } else {
            idx[l] = rnd(g, 1ull << ibits);
        }
        /* PAE, first GiB: the PDE is in the infra PD, beyond its 32 slots */
        if (sub == SUB_PAE && l == 2 && idx[3] == 0)
            idx[2] = OR_MAPPED / (2 * MiB) + rnd(g, 512 - OR_MAPPED / (2 * MiB));
        va |= idx[l] << (12 + ibits * (l - 1));
    }
    /* PAE with a 1 GiB "leaf" is impossible: leaf <= 2 there */
    if (sub >= SUB_4) {
        unsigned vbits = sub == SUB_5 ? 57 : 48;
        if (va & (1ull << (vbits - 1)))
            va |= ~0ull << vbits;
        /* now and then a non-canonical address: #GP, no walk */
        if (chance(g, 1, 50))
            va ^= 1ull << (vbits + rnd(g, 64 - vbits));
    }
    put64(d, C_VA, va);

    /* the entries, top down */
    uint64_t tables[6];
    pick_tables(g, tables, 5);
    uint64_t table = cr3;
    unsigned first = top;
    if (sub == SUB_PAE) {
        if (idx[3] == 0) {
            table = INFRA_PD; /* the infra's PDPTE 0 */
            first = 2;
        } else {
            uint64_t pdpte = tables[3] | (chance(g, 15, 16) ? P : 0);
            /* now and then a reserved bit (SDM 4.4.1: #GP when CR0.PG
             * loads it; QEMU does not check, see or_compare) */
            if (chance(g, 1, 40))
                pdpte |= pick_bit(g, pae_pdpte_reserved(p->maxphyaddr));
            add_write(g, INFRA_PAE_PDPT + 8 * idx[3], 8, pdpte);
            table = tables[3];
            first = 2;
        }
    }
    for (unsigned l = first; l >= leaf; l--) {
        bool is_leaf = l == leaf;
        bool large = is_leaf && l > 1;
        uint64_t gpa = table + idx[l] * esize;
        uint64_t v;
        if (sub == SUB_32) {
            v = flags64(g, sub, false, is_leaf, large) & 0xfff & ~PS;
            if (large)
                v |= PS | (frame & 0xffc00000ull) | (chance(g, 1, 4) ? (1ull << 12) : 0);
            else if (is_leaf)
                v |= frame | (chance(g, 1, 4) ? PS : 0); /* PTE bit 7: PAT */
            else
                v |= tables[l - 1] | (!pse && chance(g, 1, 4) ? PS : 0); /* ignored without PSE */
        } else {
            v = flags64(g, sub, nxe, is_leaf, large) & ~PS;
            if (is_leaf && l == 1) {
                v |= frame;
                if (chance(g, 1, 4))
                    v |= PS; /* PAT */
            } else if (large) {
                v |= frame | PS;
            } else {
                v |= tables[l - 1];
            }
        }
        v |= inject(g, sub, l, is_leaf, large);
        add_write(g, gpa, esize, v);
        if (l == 1)
            break;
        table = tables[l - 1];
    }
    d[C_NWRITES] = (uint8_t)g->nwrites;
}

void or_generate(uint8_t *ram, const struct or_profile *p, unsigned mode, uint64_t seed,
                 uint32_t ncases)
{
    struct gen g = {.rng = {seed * 4 + mode}, .p = p};
    for (uint32_t i = 0; i < ncases; i++) {
        g.desc = ram + OR_CASES + (uint64_t)i * OR_CASE_SIZE;
        gen_case(&g, mode);
        memset(ram + OR_RESULTS + (uint64_t)i * OR_RESULT_SIZE, 0, OR_RESULT_SIZE);
    }
}

/* ---- the comparison ------------------------------------------------------ */

/* What one side did with a case. */
struct outcome {
    bool setup;       /* faulted while loading the registers */
    int vector;       /* VMMU_X86_FAULT_NONE: translated */
    uint32_t error_code;
    uint64_t cr2;
    uint64_t final[OR_CASE_WRITES];
};

/* vmmu's side: its own vm over a private copy of the infra tables. */
struct replay {
    struct vmmu_vm *vm;
    uint8_t *mem;
    struct vmmu_x86_paging pg;
    struct vmmu_x86_walk walk;
};

static int replay_init(struct replay *rp, const struct or_profile *p)
{
    memset(rp, 0, sizeof(*rp));
    rp->mem = mmap(NULL, OR_MAPPED, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rp->mem == MAP_FAILED)
        return VMMU_ENOMEM;
    build_infra(rp->mem);
    int rc = vmmu_vm_create(NULL, &rp->vm);
    if (rc)
        return rc;
    struct vmmu_region_desc rd = {.type = VMMU_MEM_RAM, .gpa = 0, .size = OR_MAPPED,
                                  .host = rp->mem, .name = "oracle"};
    rc = vmmu_region_add(rp->vm, &rd, NULL);
    if (rc)
        return rc;
    struct vmmu_x86_cpu cpu = {.vendor = p->vendor,
                               .features = p->features | VMMU_X86_FEAT_LM,
                               .maxphyaddr = p->maxphyaddr};
    return vmmu_x86_paging_init(&rp->pg, rp->vm, &cpu);
}

static void replay_fini(struct replay *rp)
{
    vmmu_vm_destroy(rp->vm);
    if (rp->mem && rp->mem != MAP_FAILED)
        munmap(rp->mem, OR_MAPPED);
}

static unsigned case_nwrites(const uint8_t *d)
{
    unsigned n = d[C_NWRITES];
    return n > OR_CASE_WRITES ? OR_CASE_WRITES : n;
}

static void case_write(const uint8_t *d, unsigned j, uint64_t *gpa, unsigned *size, uint64_t *value)
{
    const uint8_t *w = d + C_W + OR_W_SIZE * j;
    *gpa = or_get32(w, W_GPA);
    *size = or_get32(w, W_SIZE);
    *value = get64(w, W_VALUE);
    if (*size == 4)
        *value &= 0xffffffffull;
}

/* Run a case through vmmu as the guest runs it.  Returns 0, or a negative
 * VMMU_E* code when vmmu could not evaluate it (a harness problem). */
static int replay_case(struct replay *rp, unsigned mode, const uint8_t *d, struct outcome *o)
{
    unsigned n = case_nwrites(d);
    memset(o, 0, sizeof(*o));
    o->vector = VMMU_X86_FAULT_NONE;
    for (unsigned j = 0; j < n; j++) {
        uint64_t gpa, value;
        unsigned size;
        case_write(d, j, &gpa, &size, &value);
        memcpy(rp->mem + gpa, &value, size);
    }

    struct vmmu_x86_regs regs = {
        .cr0 = get64(d, C_CR0), .cr3 = get64(d, C_CR3), .cr4 = get64(d, C_CR4),
        .efer = get64(d, C_EFER), .rflags = or_get32(d, C_RFLAGS) | 2u,
        .cpl = or_get32(d, C_CPL),
        .pkru = (get64(d, C_CR4) & CR4_PKE) ? or_get32(d, C_PKRU) : 0,
        .pkrs = (d[C_FLAGS] & OR_CF_SET_PKRS) ? or_get32(d, C_PKRS) : 0,
    };
    int rc;
    if (mode == OR_MODE_LEGACY) {
        /* The guest loads CR4 and CR3 with paging off, then sets CR0.PG,
         * which loads the PAE PDPTEs (SDM 4.4.1). */
        uint64_t cr0 = regs.cr0;
        struct vmmu_x86_fault f;
        regs.cr0 &= ~CR0_PG;
        rc = vmmu_x86_set_state(&rp->pg, &regs);
        if (rc == 0)
            rc = vmmu_x86_set_cr0(&rp->pg, cr0, &f);
        if (rc == 0 && f.vector != VMMU_X86_FAULT_NONE) {
            o->setup = true;
            o->vector = f.vector;
            o->error_code = f.error_code;
        }
    } else {
        rc = vmmu_x86_set_state(&rp->pg, &regs);
    }

    if (rc == 0 && !o->setup) {
        static const unsigned acc[] = {[OR_ACC_READ] = 0, [OR_ACC_WRITE] = VMMU_X86_ACC_WRITE,
                                       [OR_ACC_FETCH] = VMMU_X86_ACC_FETCH};
        unsigned a = or_get32(d, C_ACCESS);
        rc = vmmu_x86_walk(&rp->pg, get64(d, C_VA), acc[a > 2 ? 0 : a], &rp->walk);
        if (rc == 0 && !rp->walk.ok) {
            o->vector = rp->walk.fault.vector;
            o->error_code = rp->walk.fault.error_code;
            o->cr2 = rp->walk.fault.cr2;
        }
    }

    for (unsigned j = 0; j < n; j++) {
        uint64_t gpa, value;
        unsigned size;
        case_write(d, j, &gpa, &size, &value);
        memcpy(&o->final[j], rp->mem + gpa, size);
        memset(rp->mem + gpa, 0, size);
    }
    return rc;
}

/* The oracle's side, from the result record. */
static bool oracle_outcome(const uint8_t *d, const uint8_t *res, struct outcome *o, bool *odd)
{
    memset(o, 0, sizeof(*o));
    *odd = false;
    if (or_get32(res, R_DONE) != OR_RESULT_DONE)
        return false;
    unsigned vec = or_get32(res, R_VECTOR);
    o->setup = or_get32(res, R_PHASE) != 2;
    o->vector = (int)vec;
    o->error_code = (uint32_t)get64(res, R_ERROR);
    o->cr2 = get64(res, R_CR2);
    if (!o->setup && vec == 6) {
        /* #UD: the access went through (see guest.S).  A fetch must
         * have raised it at the address fetched. */
        o->vector = VMMU_X86_FAULT_NONE;
        o->error_code = 0;
        o->cr2 = 0;
        uint64_t va = get64(d, C_VA);
        if (!(get64(d, C_EFER) & EFER_LMA))
            va &= 0xffffffffull;
        if (or_get32(d, C_ACCESS) == OR_ACC_FETCH && get64(res, R_RIP) != va)
            *odd = true;
    }
    /* The exception came from the privilege level the case asked for. */
    if (!o->setup && (or_get32(res, R_CS) & 3) != or_get32(d, C_CPL))
        *odd = true;
    if (o->vector != VMMU_X86_VEC_PF) {
        o->cr2 = 0; /* CR2 is only written by #PF */
        if (o->vector != VMMU_X86_FAULT_NONE && o->vector != VMMU_X86_VEC_GP)
            *odd = true; /* nothing else should come from a walk */
    }
    unsigned n = case_nwrites(d);
    for (unsigned j = 0; j < n; j++) {
        uint64_t gpa, value;
        unsigned size;
        case_write(d, j, &gpa, &size, &value);
        o->final[j] = get64(res, R_FINAL + 8 * j);
        if (size == 4)
            o->final[j] &= 0xffffffffull;
    }
    return true;
}

/* QEMU 7.2 (target/i386 mmu_translate) reports a reserved-bit fault with
 * RSVD=1 but P=0; SDM 4.7 says P=1 (a reserved bit is only checked in a
 * present entry). */
static bool qemu_known_deviation_rsvd_without_p(const struct outcome *v, const struct outcome *q)
{
    uint32_t both = VMMU_X86_PF_P | VMMU_X86_PF_RSVD;
    return v->vector == VMMU_X86_VEC_PF && q->vector == VMMU_X86_VEC_PF &&
           (v->error_code & both) == both && q->error_code == (v->error_code & ~VMMU_X86_PF_P) &&
           v->cr2 == q->cr2;
}

/* QEMU 7.2 sets the A bit of each paging-structure entry as it descends,
 * before it knows whether the walk will fault; KVM, whose behaviour vmmu
 * follows, sets no A/D bit on a walk that faults.  QEMU does so for every
 * PML5E, PML4E and PDPTE it reads (a 1 GiB leaf included) and for a PDE
 * that points to a page table, but not for a 2 MiB/4 MiB leaf or a PTE.
 * Excused only when the difference is the A bit alone, in such an entry
 * of the walk vmmu made. */
static bool qemu_known_deviation_a_bits_on_faulting_walk(const struct vmmu_x86_walk *w,
                                                         const uint8_t *d, unsigned j,
                                                         uint64_t vmmu_final, uint64_t qemu_final)
{
    uint64_t gpa, value;
    unsigned size;

    if (w->ok || w->fault.vector != VMMU_X86_VEC_PF)
        return false;
    if ((vmmu_final ^ qemu_final) != A || (vmmu_final & A))
        return false;
    case_write(d, j, &gpa, &size, &value);
    for (unsigned i = 0; i < w->nlevels; i++)
        if (w->levels[i].gpa == gpa && w->levels[i].host)
            return i + 1 < w->nlevels || w->levels[i].level >= 3;
    return false;
}

/* QEMU 7.2 sets bit 5 of a PAE PDPTE in memory when it walks through it
 * (it re-reads the PDPTE on every walk and treats it like any other
 * entry).  SDM 4.4.1: PDPTEs are loaded into registers when CR3 is loaded
 * and have no A bit (bits 8:5 are reserved), so the CPU never writes
 * them. */
static bool qemu_known_deviation_pae_pdpte_a_bit(const struct vmmu_x86_walk *w, const uint8_t *d,
                                                 unsigned j, uint64_t vmmu_final,
                                                 uint64_t qemu_final)
{
    uint64_t gpa, value;
    unsigned size;

    if (w->mode != VMMU_X86_MODE_PAE || w->nlevels == 0 || (vmmu_final ^ qemu_final) != A ||
        (vmmu_final & A))
        return false;
    case_write(d, j, &gpa, &size, &value);
    return w->levels[0].level == 3 && w->levels[0].gpa == gpa;
}

/* QEMU 7.2 checks protection keys only after the page's other rights
 * allowed the access, so a fault that both rights and key cause has PK=0.
 * SDM 4.7 defines PK by the key alone (KVM's permission_fault computes it
 * the same way), and vmmu follows it.  Excused only if vmmu, run again
 * with CR4.PKE and CR4.PKS clear, faults with the same error code minus
 * PK: the rights alone forbid the access. */
static bool qemu_known_deviation_pk_only_when_rights_allow(struct replay *rp, unsigned mode,
                                                           const uint8_t *d,
                                                           const struct outcome *v,
                                                           const struct outcome *q)
{
    if (v->vector != VMMU_X86_VEC_PF || q->vector != VMMU_X86_VEC_PF ||
        !(v->error_code & VMMU_X86_PF_PK) || q->error_code != (v->error_code & ~VMMU_X86_PF_PK))
        return false;
    uint8_t nokeys[OR_CASE_SIZE];
    struct outcome o;
    memcpy(nokeys, d, OR_CASE_SIZE);
    put64(nokeys, C_CR4, get64(d, C_CR4) & ~(CR4_PKE | CR4_PKS));
    struct vmmu_x86_walk saved = rp->walk;
    int rc = replay_case(rp, mode, nokeys, &o);
    rp->walk = saved;
    return rc == 0 && o.vector == VMMU_X86_VEC_PF && o.error_code == q->error_code;
}

/* QEMU 7.2 does not check PAE PDPTEs when CR0, CR3 or CR4 loads them; it
 * re-reads them on every walk.  SDM 4.4.1: a present PDPTE with a reserved
 * bit makes that MOV to CR0 raise #GP(0).  Excused when vmmu raised #GP on
 * the register load, QEMU went on to the access (whatever it then did:
 * the rest of QEMU's case has no SDM counterpart), and the case wrote a
 * present PDPTE with a reserved bit into the PDPT that CR3 names in PAE
 * paging; any other #GP at load is vmmu's own and a mismatch. */
static bool qemu_known_deviation_pdpte_rsvd_not_checked_at_load(const struct or_profile *p,
                                                                const uint8_t *d,
                                                                const struct outcome *v,
                                                                const struct outcome *q)
{
    if (!v->setup || v->vector != VMMU_X86_VEC_GP || q->setup)
        return false;
    if (!(get64(d, C_CR4) & CR4_PAE) || (get64(d, C_EFER) & EFER_LMA))
        return false;
    uint64_t pdpt = get64(d, C_CR3) & 0xffffffe0ull;
    for (unsigned j = 0; j < case_nwrites(d); j++) {
        uint64_t gpa, value;
        unsigned size;
        case_write(d, j, &gpa, &size, &value);
        if (size == 8 && gpa >= pdpt && gpa < pdpt + 32 && (value & P) &&
            (value & pae_pdpte_reserved(p->maxphyaddr)))
            return true;
    }
    return false;
}

/* QEMU 7.2 checks only bit 21 of a 4 MiB PDE in 32-bit paging with
 * PSE-36, not the PSE-36 address bits at or above MAXPHYADDR (bits 20:17
 * when MAXPHYADDR is 36).  SDM 4.3, Table 4-4: they are reserved, and
 * vmmu raises a reserved-bit #PF.  QEMU instead maps the page at a
 * physical address the CPU does not have, so what its access then does
 * (translate, another #PF, CR2 and A/D bits of that access) has no SDM
 * counterpart.  Excused only when vmmu's walk is that one 4 MiB PDE, with
 * bit 21 clear and such an address bit set, vmmu faulted with P and RSVD,
 * QEMU reported no RSVD, and the PDE differs at most in A and D. */
static bool qemu_known_deviation_pse36_bits_above_maxphyaddr(const struct or_profile *p,
                                                             const struct vmmu_x86_walk *w,
                                                             const uint8_t *d,
                                                             const struct outcome *v,
                                                             const struct outcome *q)
{
    uint32_t both = VMMU_X86_PF_P | VMMU_X86_PF_RSVD;
    uint64_t above_m = pse36_pde_reserved(p->maxphyaddr) & ~(1ull << 21);

    if (v->setup || q->setup || v->vector != VMMU_X86_VEC_PF || (v->error_code & both) != both)
        return false;
    if (q->vector == VMMU_X86_VEC_PF && (q->error_code & VMMU_X86_PF_RSVD))
        return false;
    if (w->mode != VMMU_X86_MODE_32 || !(get64(d, C_CR4) & CR4_PSE) || w->nlevels != 1 ||
        case_nwrites(d) != 1)
        return false;
    uint64_t pde = w->levels[0].value;
    if (w->levels[0].level != 2 || !(pde & PS) || (pde & (1ull << 21)) || !(pde & above_m))
        return false;
    return ((v->final[0] ^ q->final[0]) & ~(A | D)) == 0;
}

static const char *access_name(unsigned a)
{
    return a == OR_ACC_WRITE ? "write" : a == OR_ACC_FETCH ? "fetch" : "read";
}

static void print_outcome(const char *who, const struct outcome *o)
{
    if (o->vector == VMMU_X86_FAULT_NONE)
        printf("    %-6s translated\n", who);
    else
        printf("    %-6s %svector %d error 0x%x cr2 0x%016" PRIx64 "\n", who,
               o->setup ? "(register load) " : "", o->vector, o->error_code, o->cr2);
}

static void print_mismatch(const struct or_profile *p, unsigned mode, uint64_t seed, uint32_t i,
                           const uint8_t *d, const struct outcome *q, const struct outcome *v,
                           const struct replay *rp, const char *why)
{
    printf("MISMATCH %s: %s, seed %" PRIu64 " batch mode %u case %" PRIu32 " (%s paging)\n",
           p->name, why, seed, mode, i, vmmu_x86_mode_name(rp->pg.mode));
    printf("    cr0 0x%" PRIx64 " cr3 0x%" PRIx64 " cr4 0x%" PRIx64 " efer 0x%" PRIx64
           " pkru 0x%x pkrs 0x%x\n",
           get64(d, C_CR0), get64(d, C_CR3), get64(d, C_CR4), get64(d, C_EFER),
           or_get32(d, C_PKRU), or_get32(d, C_PKRS));
    printf("    %s of 0x%016" PRIx64 " at CPL %u, EFLAGS.AC=%u\n",
           access_name(or_get32(d, C_ACCESS)), get64(d, C_VA), or_get32(d, C_CPL),
           (or_get32(d, C_RFLAGS) & RFLAGS_AC) ? 1 : 0);
    unsigned n = case_nwrites(d);
    for (unsigned j = 0; j < n; j++) {
        uint64_t gpa, value;
        unsigned size;
        case_write(d, j, &gpa, &size, &value);
        printf("    entry @0x%08" PRIx64 " written 0x%016" PRIx64 " %-6s 0x%016" PRIx64
               " vmmu 0x%016" PRIx64 "\n",
               gpa, value, p->name, q->final[j], v->final[j]);
    }
    print_outcome(p->name, q);
    print_outcome("vmmu", v);
    if (!v->setup) {
        const struct vmmu_x86_walk *w = &rp->walk;
        printf("    vmmu walk:");
        for (unsigned k = 0; k < w->nlevels; k++)
            printf(" L%u@0x%" PRIx64 "=0x%" PRIx64, w->levels[k].level, w->levels[k].gpa,
                   w->levels[k].value);
        printf("\n");
    }
}

unsigned long or_compare(const uint8_t *ram, const struct or_profile *p, unsigned mode,
                         uint64_t seed, uint32_t ncases, struct or_stats *st)
{
    struct replay rp;
    unsigned long mism = 0;
    int rc = replay_init(&rp, p);
    if (rc) {
        printf("MISMATCH %s: vmmu could not set up its replay: %s\n", p->name, vmmu_strerror(rc));
        replay_fini(&rp);
        st->mismatches++;
        return 1;
    }

    for (uint32_t i = 0; i < ncases; i++) {
        const uint8_t *d = ram + OR_CASES + (uint64_t)i * OR_CASE_SIZE;
        const uint8_t *res = ram + OR_RESULTS + (uint64_t)i * OR_RESULT_SIZE;
        struct outcome q, v;
        bool odd;
        const char *why = NULL;

        rc = replay_case(&rp, mode, d, &v);
        if (!oracle_outcome(d, res, &q, &odd)) {
            st->unfinished++;
            continue;
        }
        st->cases++;
        st->by_mode[rp.pg.mode <= VMMU_X86_MODE_5LEVEL ? rp.pg.mode : 0]++;
        if (rc < 0) {
            why = vmmu_strerror(rc);
        } else if (p->backend == OR_BACKEND_QEMU &&
                   qemu_known_deviation_pdpte_rsvd_not_checked_at_load(p, d, &v, &q)) {
            st->qemu_pdpte_rsvd_not_checked_at_load++;
            continue;
        } else if (p->backend == OR_BACKEND_QEMU &&
                   qemu_known_deviation_pse36_bits_above_maxphyaddr(p, &rp.walk, d, &v, &q)) {
            st->qemu_pse36_bits_above_maxphyaddr++;
            continue;
        } else if (odd) {
            why = "the guest reported an exception a page walk cannot raise";
        } else if (q.setup != v.setup || q.vector != v.vector || q.cr2 != v.cr2) {
            why = "different outcome";
        } else if (q.error_code != v.error_code) {
            if (p->backend == OR_BACKEND_QEMU && qemu_known_deviation_rsvd_without_p(&v, &q))
                st->qemu_rsvd_fault_without_p++;
            else if (p->backend == OR_BACKEND_QEMU &&
                     qemu_known_deviation_pk_only_when_rights_allow(&rp, mode, d, &v, &q))
                st->qemu_pk_only_when_rights_allow++;
            else
                why = "different error code";
        }
        if (!why) {
            bool upper_a = false, pdpte_a = false;
            bool qemu = p->backend == OR_BACKEND_QEMU && !v.setup;
            for (unsigned j = 0; j < case_nwrites(d) && !why; j++) {
                if (q.final[j] == v.final[j])
                    continue;
                if (qemu && qemu_known_deviation_pae_pdpte_a_bit(&rp.walk, d, j, v.final[j],
                                                                 q.final[j]))
                    pdpte_a = true;
                else if (qemu && qemu_known_deviation_a_bits_on_faulting_walk(
                                     &rp.walk, d, j, v.final[j], q.final[j]))
                    upper_a = true;
                else
                    why = "different final entry (A/D bits)";
            }
            if (!why) {
                st->qemu_a_bits_on_faulting_walk += upper_a;
                st->qemu_pae_pdpte_a_bit += pdpte_a;
            }
        }
        if (why) {
            if (++mism <= 20)
                print_mismatch(p, mode, seed, i, d, &q, &v, &rp, why);
            continue;
        }
        if (q.setup)
            st->setup_faults++;
        else if (q.vector == VMMU_X86_FAULT_NONE)
            st->translated++;
        else if (q.vector == VMMU_X86_VEC_PF)
            st->page_faults++;
        else
            st->gp_faults++;
    }
    if (mism > 20)
        printf("... %lu more mismatches not shown\n", mism - 20);
    st->mismatches += mism;
    replay_fini(&rp);
    return mism;
}

void or_stats_print(const struct or_stats *st, const struct or_profile *p)
{
    printf("%s oracle: %lu cases compared (32-bit %lu, PAE %lu, 4-level %lu, 5-level %lu): "
           "%lu translated, %lu #PF, %lu #GP, %lu register-load faults; %lu mismatches",
           p->name, st->cases, st->by_mode[VMMU_X86_MODE_32], st->by_mode[VMMU_X86_MODE_PAE],
           st->by_mode[VMMU_X86_MODE_4LEVEL], st->by_mode[VMMU_X86_MODE_5LEVEL], st->translated,
           st->page_faults, st->gp_faults, st->setup_faults, st->mismatches);
    if (st->unfinished)
        printf(", %lu cases the guest did not finish", st->unfinished);
    printf("\n");
    if (p->backend == OR_BACKEND_QEMU)
        printf("known QEMU 7.2 deviations excused: reserved-bit fault without P: %lu; "
               "A bits set on a faulting walk: %lu; A bit set in a PAE PDPTE: %lu; "
               "PK clear when the rights fault too: %lu; PDPTE reserved bits not checked at "
               "load: %lu; PSE-36 bits at or above MAXPHYADDR not reserved: %lu\n",
               st->qemu_rsvd_fault_without_p, st->qemu_a_bits_on_faulting_walk,
               st->qemu_pae_pdpte_a_bit, st->qemu_pk_only_when_rights_allow,
               st->qemu_pdpte_rsvd_not_checked_at_load, st->qemu_pse36_bits_above_maxphyaddr);
}

bool or_options_parse(struct or_options *o, int argc, char **argv, unsigned long default_cases)
{
    /* The command line holds CI's fixed choice; the environment overrides
     * it for longer or randomly seeded campaigns under ctest. */
    const char *env, *seed = NULL;
    o->cases = default_cases;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cases") && i + 1 < argc)
            o->cases = strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = argv[++i];
        else if (!strcmp(argv[i], "--guest") && i + 1 < argc)
            o->guest = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--cases N] [--seed N|random] [--guest guest.bin]\n"
                            "  environment: VMMU_ORACLE_CASES, VMMU_ORACLE_SEED\n",
                    argv[0]);
            return false;
        }
    }
    if ((env = getenv("VMMU_ORACLE_CASES")) && *env)
        o->cases = strtoul(env, NULL, 0);
    if ((env = getenv("VMMU_ORACLE_SEED")) && *env)
        seed = env;
    if (seed && !strcmp(seed, "random")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = (uint64_t)ts.tv_sec * 1000003u + (uint64_t)ts.tv_nsec;
    } else if (seed && *seed) {
        o->seed = strtoull(seed, NULL, 0);
    }
    uint64_t max = (OR_RESULTS - OR_CASES) / OR_CASE_SIZE;
    if ((OR_RESULTS_END - OR_RESULTS) / OR_RESULT_SIZE < max)
        max = (OR_RESULTS_END - OR_RESULTS) / OR_RESULT_SIZE;
    if (o->cases > max)
        o->cases = max;
    return true;
}
