/* SPDX-License-Identifier: MIT */
/* The parts of the paging oracles both backends share: the guest image,
 * the random case generator and the comparison with vmmu.
 *
 * A backend (run_qemu.c, run_kvm.c) gives the guest RAM as host memory of
 * OR_RAM_SIZE bytes, calls or_image_prepare() and or_generate(), runs the
 * guest until it has written a result for every case (restarting after a
 * case the guest could not survive), then calls or_compare(), which replays
 * every case through vmmu_x86_walk() on its own copy of the page tables
 * and compares fault, vector, error code, CR2 and the final value of every
 * entry the case wrote. */
#ifndef VMMU_ORACLE_H
#define VMMU_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmmu/vmmu.h"

#include "layout.h"

/* Which CPU answers, and what the comparison may excuse. */
enum or_backend {
    OR_BACKEND_KVM,
    OR_BACKEND_QEMU,
};

/* What the CPU under test offers and what the cases may use. */
struct or_profile {
    enum or_backend backend;
    const char *name;              /* for messages: "kvm", "qemu" */
    enum vmmu_x86_vendor vendor;   /* whose rules vmmu applies */
    uint32_t features;             /* VMMU_X86_FEAT_* the cases may use */
    unsigned maxphyaddr;
    /* KVM PVM: CPL-3 accesses in 0xffff800000000000..0xffff807fffffffff
     * misbehave there, so no case uses PML4 slot 256. */
    bool avoid_pml4_256;
};

/* Counts of one comparison run. */
struct or_stats {
    unsigned long cases, translated, page_faults, gp_faults, setup_faults;
    unsigned long mismatches, unfinished;
    /* QEMU 7.2 departs from the SDM here; each excused case is counted. */
    unsigned long qemu_rsvd_fault_without_p;
    unsigned long qemu_a_bits_on_faulting_walk;
    unsigned long qemu_pae_pdpte_a_bit;
    unsigned long qemu_pk_only_when_rights_allow;
    unsigned long qemu_pdpte_rsvd_not_checked_at_load;
    unsigned long qemu_pse36_bits_above_maxphyaddr;
    /* per paging mode (enum vmmu_x86_mode) */
    unsigned long by_mode[VMMU_X86_MODE_5LEVEL + 1];
};

/* splitmix64: small, seedable, reproducible. */
struct or_rng {
    uint64_t state;
};

static inline uint64_t or_rand(struct or_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A 32-bit little-endian field of guest memory. */
static inline uint32_t or_get32(const uint8_t *ram, uint64_t gpa)
{
    uint32_t v;
    __builtin_memcpy(&v, ram + gpa, 4);
    return v;
}

static inline void or_put32(uint8_t *ram, uint64_t gpa, uint32_t v)
{
    __builtin_memcpy(ram + gpa, &v, 4);
}

/* Load the guest program (a flat binary linked at OR_LOAD_ADDR).
 * Returns its size, or 0 with a message on stderr.  *entry receives the
 * 32-bit entry point from its multiboot header. */
size_t or_guest_load(const char *path, uint8_t **image, uint32_t *entry);

/* Write everything a boot needs except the cases and results: the guest
 * program, the header (mode, case range), the infra page tables for
 * @mode, a zeroed table pool and the ud2-filled data pool. */
void or_image_prepare(uint8_t *ram, const uint8_t *guest, size_t guest_len, unsigned mode,
                      uint32_t ncases, uint32_t first);

/* The root of the infra tables an IA-32e batch enters long mode with. */
uint32_t or_infra_root(unsigned mode);

/* Fill @ncases case descriptors for @mode from @seed and mark their
 * results unwritten. */
void or_generate(uint8_t *ram, const struct or_profile *p, unsigned mode, uint64_t seed,
                 uint32_t ncases);

/* Read the CPUID words the guest reported into a profile (features,
 * MAXPHYADDR); the vendor is left to the caller. */
void or_profile_from_cpuid(struct or_profile *p, const uint32_t cpuid[8]);

/* Compare cases [0, ncases) with vmmu.  Prints every mismatch (up to a
 * limit) with both outcomes, and adds to @st.  Returns the number of
 * mismatches. */
unsigned long or_compare(const uint8_t *ram, const struct or_profile *p, unsigned mode,
                         uint64_t seed, uint32_t ncases, struct or_stats *st);

/* Print the counts of @st on stdout. */
void or_stats_print(const struct or_stats *st, const struct or_profile *p);

/* Options common to both runners: case count and seed, from argv
 * (--cases N, --seed S|random, --guest PATH) and the environment
 * (VMMU_ORACLE_CASES, VMMU_ORACLE_SEED).  Returns false after printing
 * usage. */
struct or_options {
    unsigned long cases; /* per batch */
    uint64_t seed;
    const char *guest;
};
bool or_options_parse(struct or_options *o, int argc, char **argv, unsigned long default_cases);

/* CTest's skip code. */
#define OR_EXIT_SKIP 77

#endif /* VMMU_ORACLE_H */
