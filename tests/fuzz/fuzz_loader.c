/* libFuzzer target for the reference emulator's loader (tools/emu/loader.c):
 * emu_load_guest() called as `vmmu run` calls it from emu_machine_create(),
 * on a machine whose configuration `vmmu run` accepts, without vCPUs.
 *
 * What it feeds: 4 bytes of machine configuration (RAM 4..1024 MiB in steps
 * of 2, 1..64 vCPUs, a device attached or not, the mode, and optionally
 * which write of guest memory fails, as a backend's may), then either
 *  - raw mode: the rest of the input is the image, byte for byte; or
 *  - built mode (the default): a small ELF64 x86-64 executable built from
 *    the input's choices: up to 66 program headers (type, flags, where,
 *    file and memory sizes, file offset, virtual != physical), the entry
 *    point, up to 4 patches (any 1, 2, 4 or 8 bytes written anywhere in the
 *    built file, so any header field can take any value, huge ones too),
 *    and the rest of the input as the segments' file bytes.  Every choice
 *    is XORed with a sane default, so an all-zero input is a valid image.
 *
 * The loader writes guest memory only through the backend's gpa_write, so
 * this target is that backend: it models RAM of the configured size,
 * sparsely (a 1 GiB segment of zeros costs no memory), where every byte
 * the loader did not write still holds a pattern that depends on its
 * address and is never zero.  Valid images loading more than 8 MiB in all
 * are skipped to keep runs fast (the loader writes 1 GiB of zeros 4 KiB at
 * a time); VMMU_FUZZ_LOADER_MAX_MIB=1024 in the environment tries them all.
 *
 * Checked, against this file's own reading of the image:
 *  - no crash, hang or sanitizer report (the image is an exact-size heap
 *    copy, so any read past its end is reported);
 *  - the loader accepts the image exactly when it is an ELF64 little-endian
 *    x86-64 ET_EXEC with 1..64 program headers of 56 bytes inside the
 *    file, every PT_LOAD segment with memory bytes lies inside the file,
 *    has no more file bytes than memory bytes, has virtual == physical and
 *    lies in RAM from EMU_IMAGE_BASE, at least one such segment exists and
 *    the entry point is inside an executable one (docs/emulator.md,
 *    loader.c), with every sum computed without wrapping;
 *  - a refused image: -1, a one-line printable message, and not a single
 *    byte of guest memory written;
 *  - a write that fails: -1 and the loader's "cannot write guest memory";
 *  - every write of an accepted image lies inside RAM and inside either
 *    one loaded segment or one boot structure (boot info, GDT, PML4, PDPT,
 *    PD): nothing else in guest memory changes;
 *  - after an accepted image: each segment's file bytes are in guest
 *    memory at p_paddr, the rest up to p_memsz is zero (where segments
 *    overlap, the later program header's bytes win, the order the loader
 *    writes them in); the boot info, GDT and identity page tables are
 *    those of abi.h for this RAM size and vCPU count; the machine's entry,
 *    image_start and image_end are the image's.
 */
#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE 4096u
#define RAM_MAX EMU_IDENTITY_MAX
#define NPAGES (RAM_MAX / PAGE)
#define MAX_BUILT_PHDRS 66u
#define MAX_PATCHES 4u
#define ERRLEN 160u /* what emu_machine_create() passes */

static void bug(const char *what, unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "fuzz_loader: %s (0x%llx, 0x%llx)\n", what, a, b);
    abort();
}

/* ---- guest RAM, as the loader sees it through gpa_write ------------------------- */

/* A page is untouched (data NULL, zlo == zhi: all pattern), pattern with one
 * zeroed interval [zlo, zhi) (data NULL), or held in full in data. */
struct page {
    uint8_t *data;
    uint16_t zlo, zhi;
    bool listed;
};

static struct page pages[NPAGES];
static uint8_t *free_pages; /* page buffers kept for reuse, linked through their first bytes */
static uint32_t touched[NPAGES];
static size_t ntouched;
static uint64_t ram_size;
static unsigned long writes;
static unsigned long fail_at; /* the write that fails (from 1), 0: none */

static uint8_t pattern(uint64_t gpa)
{
    return (uint8_t)((gpa ^ (gpa >> 8) ^ (gpa >> 16) ^ 0x5a) | 1);
}

static void zinterval(const struct page *p, unsigned *lo, unsigned *hi)
{
    *lo = p->zlo;
    *hi = p->zhi;
}

static uint8_t ram_byte(uint64_t gpa)
{
    const struct page *p = &pages[gpa / PAGE];
    unsigned off = (unsigned)(gpa % PAGE), lo, hi;
    if (p->data)
        return p->data[off];
    zinterval(p, &lo, &hi);
    return off >= lo && off < hi ? 0 : pattern(gpa);
}

static void touch(uint64_t idx)
{
    if (!pages[idx].listed) {
        pages[idx].listed = true;
        touched[ntouched++] = (uint32_t)idx;
    }
}

static void materialize(uint64_t idx)
{
    struct page *p = &pages[idx];
    if (p->data)
        return;
    uint8_t *d = free_pages;
    if (d)
        memcpy(&free_pages, d, sizeof(free_pages));
    else if (!(d = malloc(PAGE)))
        bug("out of memory", idx, 0);
    for (unsigned i = 0; i < PAGE; i++)
        d[i] = pattern(idx * PAGE + i);
    memset(d + p->zlo, 0, p->zhi - p->zlo);
    p->data = d;
}

static const uint8_t zero_page[PAGE];

static bool all_zero(const uint8_t *b, size_t n)
{
    while (n) {
        size_t k = n < PAGE ? n : PAGE;
        if (memcmp(b, zero_page, k))
            return false;
        b += k;
        n -= k;
    }
    return true;
}

/* Store n bytes at offset off of page idx (zero: whether they are all zero). */
static void store(uint64_t idx, unsigned off, const uint8_t *b, unsigned n, bool zero)
{
    struct page *p = &pages[idx];
    touch(idx);
    if (!p->data && zero) {
        unsigned lo, hi;
        zinterval(p, &lo, &hi);
        if (lo == hi) {
            lo = off;
            hi = off + n;
        } else if (off <= hi && off + n >= lo) {
            lo = off < lo ? off : lo;
            hi = off + n > hi ? off + n : hi;
        } else {
            goto full;
        }
        p->zlo = (uint16_t)lo;
        p->zhi = (uint16_t)hi;
        return;
    }
full:
    materialize(idx);
    memcpy(p->data + off, b, n);
}

static void ram_reset(void)
{
    for (size_t i = 0; i < ntouched; i++) {
        struct page *p = &pages[touched[i]];
        if (p->data) {
            memcpy(p->data, &free_pages, sizeof(free_pages));
            free_pages = p->data;
        }
        *p = (struct page){0};
    }
    ntouched = 0;
}

/* ---- this file's own reading of the image ----------------------------------------- */

struct seg {
    uint64_t paddr, memsz, offset, filesz;
};

struct verdict {
    bool accept;
    uint64_t entry, lo, hi;
    unsigned nsegs;
    struct seg segs[64]; /* the loaded ones, in program header order */
};

static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Whether [a, a + len) fits in [0, limit), the sum taken in 128 bits. */
static bool fits(uint64_t a, uint64_t len, uint64_t limit)
{
    return (unsigned __int128)a + len <= limit;
}

static void judge(const uint8_t *img, size_t n, struct verdict *v)
{
    memset(v, 0, sizeof(*v));
    if (n < 64 || memcmp(img, "\177ELF", 4) || img[4] != 2 || img[5] != 1)
        return;
    if (rd(img + 16, 2) != 2 || rd(img + 18, 2) != 62) /* ET_EXEC, EM_X86_64 */
        return;
    uint64_t entry = rd(img + 24, 8), phoff = rd(img + 32, 8);
    unsigned phentsize = (unsigned)rd(img + 54, 2), phnum = (unsigned)rd(img + 56, 2);
    if (phentsize != 56 || phnum < 1 || phnum > 64 || !fits(phoff, phnum * 56ull, n))
        return;
    bool entry_ok = false;
    v->lo = UINT64_MAX;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = img + phoff + i * 56ull;
        uint32_t type = (uint32_t)rd(ph, 4), flags = (uint32_t)rd(ph + 4, 4);
        uint64_t off = rd(ph + 8, 8), va = rd(ph + 16, 8), pa = rd(ph + 24, 8);
        uint64_t fsz = rd(ph + 32, 8), msz = rd(ph + 40, 8);
        if (type != 1 || msz == 0)
            continue;
        if (!fits(off, fsz, n) || fsz > msz || va != pa || pa < EMU_IMAGE_BASE ||
            !fits(pa, msz, ram_size))
            return;
        v->segs[v->nsegs++] = (struct seg){pa, msz, off, fsz};
        if (pa < v->lo)
            v->lo = pa;
        if (pa + msz > v->hi)
            v->hi = pa + msz;
        if ((flags & 1) && entry >= va && entry - va < msz) /* PF_X */
            entry_ok = true;
    }
    v->entry = entry;
    v->accept = v->nsegs && entry_ok;
}

/* ---- the backend the loader writes through ---------------------------------------- */

static struct verdict want;

/* The boot structures of abi.h: where the loader may write besides segments. */
static const struct {
    uint64_t gpa, len;
} boot_ranges[] = {
    {EMU_BOOT_INFO_GPA, sizeof(struct emu_boot_info)},
    {EMU_GDT_GPA, EMU_GDT_ENTRIES * 8},
    {EMU_PML4_GPA, PAGE},
    {EMU_PDPT_GPA, PAGE},
    {EMU_PD_GPA, PAGE},
};

static bool within(uint64_t gpa, uint64_t len, uint64_t base, uint64_t size)
{
    return gpa >= base && fits(gpa - base, len, size);
}

static int fuzz_gpa_write(struct emu_machine *m, uint64_t gpa, const void *buf, size_t len)
{
    (void)m;
    writes++;
    if (!want.accept)
        bug("the loader wrote guest memory for an image it must refuse", gpa, len);
    if (!fits(gpa, len, ram_size))
        bug("the loader wrote outside guest RAM", gpa, len);
    bool ok = false;
    for (size_t i = 0; i < sizeof(boot_ranges) / sizeof(boot_ranges[0]) && !ok; i++)
        ok = within(gpa, len, boot_ranges[i].gpa, boot_ranges[i].len);
    for (unsigned i = 0; i < want.nsegs && !ok; i++)
        ok = within(gpa, len, want.segs[i].paddr, want.segs[i].memsz);
    if (!ok)
        bug("the loader wrote outside every segment and boot structure", gpa, len);
    if (writes == fail_at)
        return -1;
    const uint8_t *b = buf;
    bool zero = all_zero(b, len);
    while (len) {
        unsigned off = (unsigned)(gpa % PAGE);
        unsigned n = PAGE - off < len ? PAGE - off : (unsigned)len;
        store(gpa / PAGE, off, b, n, zero);
        gpa += n;
        b += n;
        len -= n;
    }
    return 0;
}

static int fuzz_gpa_read(struct emu_machine *m, uint64_t gpa, void *buf, size_t len)
{
    (void)m;
    if (!fits(gpa, len, ram_size))
        return -1;
    uint8_t *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = ram_byte(gpa + i);
    return 0;
}

static const struct emu_backend_ops fuzz_ops = {
    .name = "fuzz",
    .gpa_read = fuzz_gpa_read,
    .gpa_write = fuzz_gpa_write,
};

/* ---- checks of a loaded image -------------------------------------------------------- */

static void expect_bytes(uint64_t gpa, const void *want_bytes, size_t len, const char *what)
{
    const uint8_t *w = want_bytes;
    while (len) {
        const struct page *p = &pages[gpa / PAGE];
        unsigned off = (unsigned)(gpa % PAGE);
        size_t n = len < PAGE - off ? len : PAGE - off;
        if (!p->data || memcmp(p->data + off, w, n)) {
            for (size_t i = 0; i < n; i++)
                if (ram_byte(gpa + i) != w[i])
                    bug(what, gpa + i, w[i]);
        }
        gpa += n;
        w += n;
        len -= n;
    }
}

/* [lo, hi) of guest memory holds zeros. */
static void expect_zero(uint64_t lo, uint64_t hi)
{
    while (lo < hi) {
        uint64_t idx = lo / PAGE;
        unsigned off = (unsigned)(lo % PAGE);
        unsigned n = hi - lo < PAGE - off ? (unsigned)(hi - lo) : PAGE - off;
        const struct page *p = &pages[idx];
        if (p->data) {
            if (!all_zero(p->data + off, n))
                bug("a segment's bytes beyond p_filesz are not zero", lo, n);
        } else {
            unsigned zlo, zhi;
            zinterval(p, &zlo, &zhi);
            if (off < zlo || off + n > zhi)
                bug("a segment's bytes beyond p_filesz are not zero", lo, n);
        }
        lo += n;
    }
}

/* Check [lo, hi) of segment i, the parts no later segment covers. */
static void check_seg_part(const uint8_t *img, unsigned i, unsigned from, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return;
    for (unsigned j = from; j < want.nsegs; j++) {
        const struct seg *s = &want.segs[j];
        if (s->paddr < hi && s->paddr + s->memsz > lo) {
            check_seg_part(img, i, j + 1, lo, s->paddr);
            check_seg_part(img, i, j + 1, s->paddr + s->memsz, hi);
            return;
        }
    }
    const struct seg *s = &want.segs[i];
    uint64_t file_end = s->paddr + s->filesz;
    if (lo < file_end) {
        uint64_t e = hi < file_end ? hi : file_end;
        expect_bytes(lo, img + s->offset + (lo - s->paddr), e - lo,
                     "a segment's file bytes are not in guest memory");
        lo = e;
    }
    expect_zero(lo, hi);
}

static void check_loaded(const struct emu_machine *m, const uint8_t *img)
{
    if (m->entry != want.entry)
        bug("machine entry differs from e_entry", m->entry, want.entry);
    if (m->image_start != want.lo || m->image_end != ((want.hi + PAGE - 1) & ~(uint64_t)(PAGE - 1)))
        bug("image_start/image_end differ from the segments", m->image_start, m->image_end);
    for (unsigned i = 0; i < want.nsegs; i++)
        check_seg_part(img, i, i + 1, want.segs[i].paddr, want.segs[i].paddr + want.segs[i].memsz);

    struct emu_boot_info bi = {
        .magic = EMU_BOOT_MAGIC,
        .ram_size = ram_size,
        .nr_vcpus = m->cfg.nr_vcpus,
        .flags = EMU_BOOT_BACKEND_EMULATOR,
        .image_start = want.lo,
        .image_end = m->image_end,
        .mmio_base = (m->cfg.dmdev_path || m->cfg.dm_listen) ? EMU_MMIO_BASE : 0,
    };
    expect_bytes(EMU_BOOT_INFO_GPA, &bi, sizeof(bi), "boot info differs from abi.h");
    /* abi.h: null, 64-bit code at 0x08, data at 0x10, all flat. */
    static const uint64_t gdt[3] = {0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
    expect_bytes(EMU_GDT_GPA, gdt, sizeof(gdt), "GDT differs from abi.h");
    /* abi.h: PML4[0] -> PDPT, PDPT[0] -> PD, the PD maps RAM 1:1 with
     * 2 MiB pages (present, writable, supervisor); nothing else. */
    static uint64_t pml4[512] = {EMU_PDPT_GPA | 3}, pdpt[512] = {EMU_PD_GPA | 3}, pd[512];
    for (unsigned i = 0; i < 512; i++)
        pd[i] = (uint64_t)i < ram_size >> 21 ? ((uint64_t)i << 21) | 0x83 : 0;
    expect_bytes(EMU_PML4_GPA, pml4, sizeof(pml4), "PML4 differs from abi.h");
    expect_bytes(EMU_PDPT_GPA, pdpt, sizeof(pdpt), "PDPT differs from abi.h");
    expect_bytes(EMU_PD_GPA, pd, sizeof(pd), "PD is not the identity map of RAM");
}

/* ---- building an image from the input ----------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t n;
};

/* The next n (<= 8) bytes, little-endian; zeros past the end of the input. */
static uint64_t take(struct reader *r, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        if (r->n) {
            v |= (uint64_t)*r->p << (8 * i);
            r->p++;
            r->n--;
        }
    }
    return v;
}

static void wr(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static const uint32_t ptypes[8] = {PT_LOAD, PT_LOAD, PT_LOAD, PT_LOAD,
                                   PT_NULL, PT_NOTE, PT_GNU_STACK, PT_PHDR};

/* A heap copy of the image built from r, its size in *size. */
static uint8_t *build(struct reader *r, size_t *size)
{
    unsigned nph = 1 + (unsigned)(take(r, 1) % MAX_BUILT_PHDRS);
    uint64_t entry_off = take(r, 4);
    unsigned npatch = (unsigned)(take(r, 1) % (MAX_PATCHES + 1));
    struct {
        uint32_t type, flags;
        uint64_t off, va, pa, fsz, msz;
    } ph[MAX_BUILT_PHDRS];
    for (unsigned i = 0; i < nph; i++) {
        uint32_t type = ptypes[take(r, 1) % 8];
        uint32_t flags = (PF_R | PF_W | PF_X) ^ (uint32_t)take(r, 1);
        uint64_t pa = (EMU_IMAGE_BASE + i * 0x10000ull) ^ take(r, 4);
        uint64_t fsz = take(r, 4);
        uint64_t msz = fsz + (0x1000 ^ take(r, 4));
        uint64_t off = take(r, 4);
        unsigned misc = (unsigned)take(r, 1);
        if (misc & 1)
            msz = 0;
        if ((misc & 2) && fsz)
            msz = fsz - 1;
        ph[i].type = type;
        ph[i].flags = flags;
        ph[i].pa = pa;
        ph[i].va = (misc & 4) ? pa ^ 0x1000 : pa;
        ph[i].fsz = fsz;
        ph[i].msz = msz;
        ph[i].off = off;
    }
    struct {
        uint64_t off, val;
        unsigned width;
    } patch[MAX_PATCHES];
    for (unsigned i = 0; i < npatch; i++) {
        patch[i].off = take(r, 2);
        patch[i].width = 1u << (take(r, 1) % 4);
        patch[i].val = take(r, 8);
    }
    size_t payload = 64 + nph * 56ull, n = payload + r->n;
    uint8_t *img = malloc(n);
    if (!img)
        bug("out of memory", n, 0);
    memset(img, 0, payload);
    memcpy(img + payload, r->p, r->n);
    memcpy(img, ELFMAG, SELFMAG);
    img[EI_CLASS] = ELFCLASS64;
    img[EI_DATA] = ELFDATA2LSB;
    img[EI_VERSION] = EV_CURRENT;
    wr(img + 16, ET_EXEC, 2);
    wr(img + 18, EM_X86_64, 2);
    wr(img + 20, EV_CURRENT, 4);
    wr(img + 24, ph[0].pa + entry_off, 8);
    wr(img + 32, 64, 8);
    wr(img + 52, 64, 2);
    wr(img + 54, 56, 2);
    wr(img + 56, nph, 2);
    for (unsigned i = 0; i < nph; i++) {
        uint8_t *p = img + 64 + i * 56;
        wr(p, ph[i].type, 4);
        wr(p + 4, ph[i].flags, 4);
        wr(p + 8, payload + ph[i].off, 8);
        wr(p + 16, ph[i].va, 8);
        wr(p + 24, ph[i].pa, 8);
        wr(p + 32, ph[i].fsz, 8);
        wr(p + 40, ph[i].msz, 8);
        wr(p + 48, PAGE, 8);
    }
    for (unsigned i = 0; i < npatch; i++) {
        uint64_t at = patch[i].off % n;
        unsigned w = n - at < patch[i].width ? (unsigned)(n - at) : patch[i].width;
        wr(img + at, patch[i].val, w);
    }
    *size = n;
    return img;
}

/* ---- the target ------------------------------------------------------------------------- */

/* The loader writes a segment's zeros 4 KiB at a time, and so does it for
 * 1 GiB: valid images loading more than this many bytes in all are not
 * tried, so that a run stays fast.  VMMU_FUZZ_LOADER_MAX_MIB in the
 * environment changes it (1024: every image). */
static uint64_t load_limit(void)
{
    static uint64_t limit;
    if (!limit) {
        const char *s = getenv("VMMU_FUZZ_LOADER_MAX_MIB");
        unsigned long mib = s ? strtoul(s, NULL, 0) : 0;
        limit = (mib ? (uint64_t)mib : 8) << 20;
    }
    return limit;
}

static uint64_t loaded_bytes(void)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < want.nsegs; i++)
        sum += want.segs[i].memsz;
    return sum;
}

static struct emu_machine machine;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    unsigned ram_mib = 4 + 2 * (unsigned)(take(&r, 2) % 511);
    unsigned vbyte = (unsigned)take(&r, 1);
    unsigned vcpus = 1 + vbyte % EMU_VCPUS_MAX;
    unsigned mode = (unsigned)take(&r, 1);
    fail_at = (mode & 4) ? 1 + (mode >> 3) : 0;

    uint8_t *img;
    size_t n;
    if (mode & 2) {
        n = r.n;
        img = malloc(n ? n : 1);
        if (!img)
            bug("out of memory", n, 0);
        memcpy(img, r.p, n);
    } else {
        img = build(&r, &n);
    }

    /* What emu_machine_create() does before loading: a zeroed machine with
     * the checked configuration and a backend. */
    ram_size = (uint64_t)ram_mib << 20;
    memset(&machine, 0, sizeof(machine));
    machine.cfg = (struct emu_config){
        .nr_vcpus = vcpus,
        .ram_size = ram_size,
        .guest_path = "guest.elf",
        .console = stdout,
        /* a device attached (--dmdev or --dm-listen) only changes the boot info */
        .dmdev_path = (mode & 1) && !(vbyte & 0x80) ? "vmmu-dmdev" : NULL,
        .dm_listen = (mode & 1) && (vbyte & 0x80) ? "dm.sock" : NULL,
    };
    machine.ops = &fuzz_ops;
    judge(img, n, &want);
    writes = 0;
    if (want.accept && loaded_bytes() > load_limit()) {
        free(img);
        return 0;
    }

    char err[ERRLEN];
    memset(err, 0, sizeof(err));
    int rc = emu_load_guest(&machine, img, n, err, sizeof(err));
    if (rc != 0 && rc != -1)
        bug("emu_load_guest returned neither 0 nor -1", (unsigned long long)rc, 0);
    if (rc == 0 && !want.accept)
        bug("the loader accepted an image it must refuse", n, 0);
    if (rc < 0 && want.accept && !(fail_at && writes >= fail_at))
        bug("the loader refused a valid image", n, 0);
    if (rc == 0 && fail_at && writes >= fail_at)
        bug("the loader loaded an image although a write failed", writes, fail_at);
    if (rc < 0 && want.accept) {
        if (!strstr(err, "cannot write guest memory at 0x"))
            bug("a failed write without the loader's message", writes, fail_at);
    } else if (rc < 0) {
        if (writes)
            bug("a refused image wrote guest memory", writes, 0);
        size_t len = strnlen(err, sizeof(err));
        if (len == 0 || len == sizeof(err))
            bug("a refusal without a terminated message", len, 0);
        for (size_t i = 0; i < len; i++)
            if (err[i] < 0x20 || err[i] > 0x7e)
                bug("a refusal message that is not one printable line", i, (unsigned char)err[i]);
    } else {
        check_loaded(&machine, img);
    }
    ram_reset();
    free(img);
    return 0;
}
