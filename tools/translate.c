/* SPDX-License-Identifier: MIT */
/* `vmmu translate`: walk x86 page tables held in a raw guest-physical
 * memory image, as a CPU with the given registers would, and print one JSON
 * object per access.  With --commit the accessed and dirty bits the walks
 * set are written back into the image.  See docs/translate.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vmmu/vmmu.h"

int vmmu_tool_translate(int argc, char **argv);

static const char usage_text[] =
    "usage: vmmu translate --image FILE [options] ACCESS...\n"
    "\n"
    "Translate linear addresses through the x86 page tables in FILE (a raw\n"
    "guest-physical memory image mapped at gpa 0) and print one JSON line per\n"
    "access.\n"
    "\n"
    "ACCESS is KIND@VA, KIND one of read, write, fetch, optionally followed by\n"
    "',implicit' (an implicit supervisor access) and/or ',stack' (through SS).\n"
    "\n"
    "registers (hexadecimal with 0x, or decimal; default 0, RFLAGS 2):\n"
    "  --cr0 V --cr3 V --cr4 V --efer V --rflags V --cpl N --pkru V --pkrs V\n"
    "  EFER.LMA is derived from EFER.LME and CR0.PG, as the CPU does.\n"
    "  --pdpte A,B,C,D     PAE paging: the four PDPTE registers as given, instead\n"
    "                      of reading them from the PDPT at CR3 (the guest may\n"
    "                      have rewritten its PDPT since it last loaded CR3)\n"
    "CPU model:\n"
    "  --maxphyaddr N      32..52 (default 40)\n"
    "  --vendor intel|amd  (default intel)\n"
    "  --features LIST     comma-separated, or 'all' (default) or 'none':\n"
    "                      nx pse36 lm 1g la57 pcid smep smap pku pks cet\n"
    "  --without LIST      remove features from the set\n"
    "  --commit            perform the walks as the CPU does and write the\n"
    "                      accessed/dirty bits back into FILE (default: walks\n"
    "                      without side effects, FILE is only read)\n"
    "Options come before the accesses.\n";

struct feature_name {
    const char *name;
    uint32_t bit;
};

static const struct feature_name feature_names[] = {
    {"nx", VMMU_X86_FEAT_NX},     {"pse36", VMMU_X86_FEAT_PSE36}, {"lm", VMMU_X86_FEAT_LM},
    {"1g", VMMU_X86_FEAT_1G},     {"la57", VMMU_X86_FEAT_LA57},   {"pcid", VMMU_X86_FEAT_PCID},
    {"smep", VMMU_X86_FEAT_SMEP}, {"smap", VMMU_X86_FEAT_SMAP},   {"pku", VMMU_X86_FEAT_PKU},
    {"pks", VMMU_X86_FEAT_PKS},   {"cet", VMMU_X86_FEAT_CET},
};

/* "0x..." hexadecimal or decimal, the whole string, no sign. */
static bool parse_u64(const char *s, uint64_t *out)
{
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_features(const char *list, uint32_t *out)
{
    if (!strcmp(list, "all")) {
        *out = VMMU_X86_FEAT_ALL;
        return true;
    }
    if (!strcmp(list, "none")) {
        *out = 0;
        return true;
    }
    uint32_t set = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
            if (strlen(feature_names[i].name) == n && !strncmp(p, feature_names[i].name, n)) {
                set |= feature_names[i].bit;
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "vmmu translate: unknown feature '%.*s'\n", (int)n, p);
            return false;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    *out = set;
    return true;
}

/* Four comma-separated numbers, the PDPTE registers. */
static bool parse_pdptes(const char *list, uint64_t out[4])
{
    const char *p = list;
    for (unsigned k = 0; k < 4; k++) {
        char num[32];
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof(num))
            return false;
        memcpy(num, p, n);
        num[n] = 0;
        if (!parse_u64(num, &out[k]))
            return false;
        p += n;
        if (k < 3 && *p++ != ',')
            return false;
    }
    return *p == 0;
}

/* KIND[,implicit][,stack]@VA */
static bool parse_access(const char *s, unsigned *access, uint64_t *va)
{
    const char *at = strchr(s, '@');
    if (!at)
        return false;
    if (!parse_u64(at + 1, va))
        return false;
    unsigned acc = 0;
    bool kind_seen = false;
    const char *p = s;
    while (p < at) {
        size_t n = strcspn(p, ",@");
        if (!kind_seen) {
            if (n == 4 && !strncmp(p, "read", 4))
                acc = 0;
            else if (n == 5 && !strncmp(p, "write", 5))
                acc = VMMU_X86_ACC_WRITE;
            else if (n == 5 && !strncmp(p, "fetch", 5))
                acc = VMMU_X86_ACC_FETCH;
            else
                return false;
            kind_seen = true;
        } else if (n == 8 && !strncmp(p, "implicit", 8)) {
            acc |= VMMU_X86_ACC_IMPLICIT;
        } else if (n == 5 && !strncmp(p, "stack", 5)) {
            acc |= VMMU_X86_ACC_STACK;
        } else {
            return false;
        }
        p += n;
        if (*p == ',' && ++p == at)
            return false; /* "read,@VA": an empty modifier */
    }
    *access = acc;
    return kind_seen;
}

/* The image, read whole into page-aligned memory rounded up to pages. */
struct image {
    uint8_t *mem;
    uint64_t file_size, size;
};

static int image_load(const char *path, struct image *img)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vmmu translate: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* A directory opens for reading, and its "size" is no image size. */
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "vmmu translate: %s is not a regular file\n", path);
        fclose(f);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "vmmu translate: %s: cannot seek\n", path);
        fclose(f);
        return -1;
    }
    long len = ftell(f);
    rewind(f);
    if (len <= 0) {
        fprintf(stderr, "vmmu translate: %s is empty or unreadable\n", path);
        fclose(f);
        return -1;
    }
    img->file_size = (uint64_t)len;
    img->size = (img->file_size + VMMU_PAGE_SIZE - 1) & VMMU_PAGE_MASK;
    img->mem = aligned_alloc(VMMU_PAGE_SIZE, img->size);
    if (!img->mem) {
        fprintf(stderr, "vmmu translate: out of memory for %s\n", path);
        fclose(f);
        return -1;
    }
    memset(img->mem + img->file_size, 0, img->size - img->file_size);
    size_t got = fread(img->mem, 1, img->file_size, f);
    fclose(f);
    if (got != img->file_size) {
        fprintf(stderr, "vmmu translate: short read of %s\n", path);
        free(img->mem);
        return -1;
    }
    return 0;
}

static int image_store(const char *path, const struct image *img)
{
    FILE *f = fopen(path, "r+b");
    if (!f || fwrite(img->mem, 1, img->file_size, f) != img->file_size) {
        fprintf(stderr, "vmmu translate: cannot write %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "vmmu translate: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_result(uint64_t va, int rc, const struct vmmu_x86_walk *w)
{
    if (rc < 0) {
        printf("{\"va\":\"0x%" PRIx64 "\",\"ok\":false,\"error\":\"%s\"}\n", va,
               vmmu_error_name(rc));
    } else if (w->ok) {
        printf("{\"va\":\"0x%" PRIx64 "\",\"ok\":true,\"gpa\":\"0x%" PRIx64 "\",\"size\":%" PRIu64
               "}\n",
               va, w->gpa, w->page_size);
    } else if (w->fault.vector == VMMU_X86_VEC_PF) {
        printf("{\"va\":\"0x%" PRIx64 "\",\"ok\":false,\"vector\":14,\"error_code\":\"0x%" PRIx32
               "\",\"cr2\":\"0x%" PRIx64 "\"}\n",
               va, w->fault.error_code, w->fault.cr2);
    } else {
        printf("{\"va\":\"0x%" PRIx64 "\",\"ok\":false,\"vector\":%d,\"error_code\":\"0x%" PRIx32
               "\"}\n",
               va, w->fault.vector, w->fault.error_code);
    }
}

struct options {
    const char *image;
    struct vmmu_x86_regs regs;
    struct vmmu_x86_cpu cpu;
    bool commit;
    int first_access; /* index in argv of the first ACCESS */
};

/* Returns 0, or the exit status for a usage error (2) / help (0 via *done). */
static int parse_options(int argc, char **argv, struct options *o, bool *done)
{
    o->cpu.features = VMMU_X86_FEAT_ALL;
    o->cpu.vendor = VMMU_X86_VENDOR_INTEL;
    o->regs.rflags = 2;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--")) {
            i++;
            break;
        }
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            fputs(usage_text, stdout);
            *done = true;
            return 0;
        }
        if (!strcmp(opt, "--commit")) {
            o->commit = true;
            continue;
        }
        static const char *const valued[] = {"--image",  "--cr0",  "--cr3",        "--cr4",
                                             "--efer",   "--rflags", "--cpl",      "--pkru",
                                             "--pkrs",   "--maxphyaddr", "--vendor",
                                             "--features", "--without", "--pdpte"};
        bool known = false;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
            known |= !strcmp(opt, valued[k]);
        if (!known) {
            fprintf(stderr, "vmmu translate: unknown option %s\n", opt);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vmmu translate: %s needs a value\n", opt);
            return 2;
        }
        const char *val = argv[++i];
        uint64_t v = 0;
        bool numeric = strcmp(opt, "--image") && strcmp(opt, "--vendor") &&
                       strcmp(opt, "--features") && strcmp(opt, "--without") &&
                       strcmp(opt, "--pdpte");
        if (numeric && !parse_u64(val, &v)) {
            fprintf(stderr, "vmmu translate: %s: '%s' is not a number\n", opt, val);
            return 2;
        }
        if (!strcmp(opt, "--image")) {
            o->image = val;
        } else if (!strcmp(opt, "--cr0")) {
            o->regs.cr0 = v;
        } else if (!strcmp(opt, "--cr3")) {
            o->regs.cr3 = v;
        } else if (!strcmp(opt, "--cr4")) {
            o->regs.cr4 = v;
        } else if (!strcmp(opt, "--efer")) {
            o->regs.efer = v;
        } else if (!strcmp(opt, "--rflags")) {
            o->regs.rflags = v;
        } else if (!strcmp(opt, "--cpl")) {
            if (v > 3) {
                fprintf(stderr, "vmmu translate: --cpl must be 0..3\n");
                return 2;
            }
            o->regs.cpl = (unsigned)v;
        } else if (!strcmp(opt, "--pkru")) {
            if (v > UINT32_MAX) {
                fprintf(stderr, "vmmu translate: --pkru is 32 bits\n");
                return 2;
            }
            o->regs.pkru = (uint32_t)v;
        } else if (!strcmp(opt, "--pkrs")) {
            o->regs.pkrs = v;
        } else if (!strcmp(opt, "--maxphyaddr")) {
            if (v < VMMU_X86_MAXPHYADDR_MIN || v > VMMU_X86_MAXPHYADDR_MAX) {
                fprintf(stderr, "vmmu translate: --maxphyaddr must be 32..52\n");
                return 2;
            }
            o->cpu.maxphyaddr = (unsigned)v;
        } else if (!strcmp(opt, "--vendor")) {
            if (!strcmp(val, "intel")) {
                o->cpu.vendor = VMMU_X86_VENDOR_INTEL;
            } else if (!strcmp(val, "amd")) {
                o->cpu.vendor = VMMU_X86_VENDOR_AMD;
            } else {
                fprintf(stderr, "vmmu translate: --vendor is intel or amd\n");
                return 2;
            }
        } else if (!strcmp(opt, "--features")) {
            if (!parse_features(val, &o->cpu.features))
                return 2;
        } else if (!strcmp(opt, "--pdpte")) {
            if (!parse_pdptes(val, o->regs.pdpte)) {
                fprintf(stderr, "vmmu translate: --pdpte wants four numbers A,B,C,D, not '%s'\n",
                        val);
                return 2;
            }
            o->regs.flags |= VMMU_X86_REGS_PDPTE;
        } else if (!strcmp(opt, "--without")) {
            uint32_t drop;
            if (!parse_features(val, &drop))
                return 2;
            o->cpu.features &= ~drop;
        } else {
            fprintf(stderr, "vmmu translate: unknown option %s\n", opt);
            return 2;
        }
    }
    if (!o->image) {
        fprintf(stderr, "vmmu translate: --image FILE is required\n%s", usage_text);
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "vmmu translate: no ACCESS given\n%s", usage_text);
        return 2;
    }
    for (int j = i; j < argc; j++) {
        unsigned acc;
        uint64_t va;
        if (argv[j][0] == '-') {
            fprintf(stderr, "vmmu translate: option %s after the accesses (options come first)\n",
                    argv[j]);
            return 2;
        }
        if (!parse_access(argv[j], &acc, &va)) {
            fprintf(stderr, "vmmu translate: bad access '%s' (want read@VA, write@VA, fetch@VA)\n",
                    argv[j]);
            return 2;
        }
    }
    o->first_access = i;
    return 0;
}

int vmmu_tool_translate(int argc, char **argv)
{
    struct options o = {0};
    bool done = false;
    int status = parse_options(argc, argv, &o, &done);
    if (status || done)
        return status;

    /* LMA follows LME and CR0.PG (SDM 9.8.5): derive it so that callers can
     * give the EFER value they would write with WRMSR. */
    o.regs.efer &= ~VMMU_X86_EFER_LMA;
    if ((o.regs.efer & VMMU_X86_EFER_LME) && (o.regs.cr0 & VMMU_X86_CR0_PG))
        o.regs.efer |= VMMU_X86_EFER_LMA;
    bool pae = (o.regs.cr0 & VMMU_X86_CR0_PG) && (o.regs.cr4 & VMMU_X86_CR4_PAE) &&
               !(o.regs.efer & VMMU_X86_EFER_LMA);
    if ((o.regs.flags & VMMU_X86_REGS_PDPTE) && !pae) {
        fprintf(stderr, "vmmu translate: --pdpte is for PAE paging (CR0.PG, CR4.PAE, no long "
                        "mode); these registers select another mode\n");
        return 2;
    }

    struct image img;
    if (image_load(o.image, &img) != 0)
        return 1;

    struct vmmu_vm *vm = NULL;
    struct vmmu_vm_config cfg = {.gpa_bits = VMMU_GPA_BITS_MAX, .name = "translate"};
    int rc = vmmu_vm_create(&cfg, &vm);
    struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = 0, .size = img.size,
                                 .host = img.mem, .name = "image"};
    if (rc == 0)
        rc = vmmu_region_add(vm, &d, NULL);
    if (rc != 0) {
        fprintf(stderr, "vmmu translate: cannot map the image: %s\n", vmmu_strerror(rc));
        vmmu_vm_destroy(vm);
        free(img.mem);
        return 1;
    }

    struct vmmu_x86_paging pg;
    rc = vmmu_x86_paging_init(&pg, vm, &o.cpu);
    if (rc != 0) {
        fprintf(stderr, "vmmu translate: impossible CPU model (la57 and 1g need lm)\n");
        status = 2;
        goto out;
    }
    rc = vmmu_x86_set_state(&pg, &o.regs);
    if (rc != 0) {
        fprintf(stderr,
                "vmmu translate: the registers are not a state this CPU can be in "
                "(reserved bits, missing features, bad PDPTEs?): %s\n",
                vmmu_error_name(rc));
        status = 1;
        goto out;
    }

    for (int j = o.first_access; j < argc; j++) {
        unsigned acc = 0;
        uint64_t va = 0;
        struct vmmu_x86_walk w;
        (void)parse_access(argv[j], &acc, &va); /* validated above */
        rc = o.commit ? vmmu_x86_walk(&pg, va, acc, &w) : vmmu_x86_walk_peek(&pg, va, acc, &w);
        print_result(va, rc, &w);
        if (rc < 0)
            status = 1;
    }
    if (fflush(stdout) != 0)
        status = 1;
    if (o.commit && image_store(o.image, &img) != 0)
        status = 1;
out:
    vmmu_vm_destroy(vm);
    free(img.mem);
    return status;
}
