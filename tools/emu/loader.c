/* SPDX-License-Identifier: MIT */
/*
 * The loader: checks a guest's ELF image (it is untrusted input like any
 * other) and lays out the boot state of abi.h in guest memory: the image,
 * the boot info, a GDT and identity page tables, so that the guest starts
 * directly in 64-bit mode.
 */
#include <elf.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

/* Flat descriptors: 64-bit code (L=1, DPL 0) and read/write data. */
const uint64_t emu_gdt[EMU_GDT_ENTRIES] = {
    0,
    0x00af9b000000ffffull,
    0x00cf93000000ffffull,
};

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull
#define MAX_PHDRS 64u

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Whether [a, a + len) lies inside [0, limit) without wrapping. */
static bool inside(uint64_t a, uint64_t len, uint64_t limit)
{
    return a <= limit && len <= limit - a;
}

static int check_header(const Elf64_Ehdr *eh, size_t size, char *err, size_t errlen)
{
    if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG))
        return fail(err, errlen, "not an ELF file");
    if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return fail(err, errlen, "not a little-endian 64-bit ELF file");
    if (eh->e_machine != EM_X86_64)
        return fail(err, errlen, "not an x86-64 image (e_machine %u)", eh->e_machine);
    if (eh->e_type != ET_EXEC)
        return fail(err, errlen, "not a statically linked executable (e_type %u)", eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > MAX_PHDRS)
        return fail(err, errlen, "bad program header table (%u entries of %u bytes)",
                    eh->e_phnum, eh->e_phentsize);
    if (!inside(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), size))
        return fail(err, errlen, "program header table lies outside the file");
    return 0;
}

static int check_segment(const struct emu_machine *m, const Elf64_Phdr *ph, size_t size,
                         unsigned i, char *err, size_t errlen)
{
    if (!inside(ph->p_offset, ph->p_filesz, size))
        return fail(err, errlen, "segment %u lies outside the file", i);
    if (ph->p_filesz > ph->p_memsz)
        return fail(err, errlen, "segment %u has more file bytes than memory bytes", i);
    if (ph->p_vaddr != ph->p_paddr)
        return fail(err, errlen, "segment %u: virtual 0x%llx differs from physical 0x%llx "
                    "(the loader maps the image 1:1)", i, (unsigned long long)ph->p_vaddr,
                    (unsigned long long)ph->p_paddr);
    if (ph->p_paddr < EMU_IMAGE_BASE || !inside(ph->p_paddr, ph->p_memsz, m->cfg.ram_size))
        return fail(err, errlen, "segment %u at 0x%llx+0x%llx is outside RAM from 0x%x to 0x%llx",
                    i, (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz,
                    EMU_IMAGE_BASE, (unsigned long long)m->cfg.ram_size);
    return 0;
}

static int put(struct emu_machine *m, uint64_t gpa, const void *buf, size_t len, char *err,
               size_t errlen)
{
    if (m->ops->gpa_write(m, gpa, buf, len) < 0)
        return fail(err, errlen, "cannot write guest memory at 0x%llx", (unsigned long long)gpa);
    return 0;
}

static int zero(struct emu_machine *m, uint64_t gpa, uint64_t len, char *err, size_t errlen)
{
    static const uint8_t zeros[4096];
    while (len) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        if (put(m, gpa, zeros, n, err, errlen) < 0)
            return -1;
        gpa += n;
        len -= n;
    }
    return 0;
}

static int build_boot_state(struct emu_machine *m, char *err, size_t errlen)
{
    uint64_t pml4[512] = {0}, pdpt[512] = {0}, pd[512] = {0};
    /* One page directory of 2 MiB pages: 1 GiB at most (`vmmu run` allows
     * no more; a caller that did would overrun pd[] without this). */
    if (m->cfg.ram_size > 512ull << 21)
        return fail(err, errlen, "%llu MiB of RAM: the boot page tables map at most 1024",
                    (unsigned long long)(m->cfg.ram_size >> 20));
    pml4[0] = EMU_PDPT_GPA | PTE_P | PTE_RW;
    pdpt[0] = EMU_PD_GPA | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < m->cfg.ram_size >> 21; i++)
        pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
    struct emu_boot_info bi = {
        .magic = EMU_BOOT_MAGIC,
        .ram_size = m->cfg.ram_size,
        .nr_vcpus = m->cfg.nr_vcpus,
        .flags = EMU_BOOT_BACKEND_EMULATOR,
        .image_start = m->image_start,
        .image_end = m->image_end,
        .mmio_base = (m->cfg.dmdev_path || m->cfg.dm_listen) ? EMU_MMIO_BASE : 0,
    };
    if (put(m, EMU_PML4_GPA, pml4, sizeof(pml4), err, errlen) < 0 ||
        put(m, EMU_PDPT_GPA, pdpt, sizeof(pdpt), err, errlen) < 0 ||
        put(m, EMU_PD_GPA, pd, sizeof(pd), err, errlen) < 0 ||
        put(m, EMU_GDT_GPA, emu_gdt, sizeof(emu_gdt), err, errlen) < 0 ||
        put(m, EMU_BOOT_INFO_GPA, &bi, sizeof(bi), err, errlen) < 0)
        return -1;
    return 0;
}

int emu_load_guest(struct emu_machine *m, const void *image, size_t size, char *err,
                   size_t errlen)
{
    Elf64_Ehdr eh;
    if (!image || size < sizeof(eh))
        return fail(err, errlen, "not an ELF file");
    memcpy(&eh, image, sizeof(eh));
    if (check_header(&eh, size, err, errlen) < 0)
        return -1;

    const unsigned char *bytes = image;
    uint64_t lo = UINT64_MAX, hi = 0;
    bool entry_ok = false;
    unsigned loads = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, bytes + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (check_segment(m, &ph, size, i, err, errlen) < 0)
            return -1;
        loads++;
        if (ph.p_paddr < lo)
            lo = ph.p_paddr;
        if (ph.p_paddr + ph.p_memsz > hi)
            hi = ph.p_paddr + ph.p_memsz;
        if ((ph.p_flags & PF_X) && eh.e_entry >= ph.p_vaddr &&
            eh.e_entry - ph.p_vaddr < ph.p_memsz)
            entry_ok = true;
    }
    if (!loads)
        return fail(err, errlen, "no loadable segment");
    if (!entry_ok)
        return fail(err, errlen, "entry point 0x%llx is not in an executable segment",
                    (unsigned long long)eh.e_entry);
    /* Copy only after every segment passed: a refused image writes nothing. */
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, bytes + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (put(m, ph.p_paddr, bytes + ph.p_offset, ph.p_filesz, err, errlen) < 0 ||
            zero(m, ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz, err, errlen) < 0)
            return -1;
    }
    m->image_start = lo;
    m->image_end = (hi + 0xfff) & ~0xfffull;
    m->entry = eh.e_entry;
    return build_boot_state(m, err, errlen);
}
