/* SPDX-License-Identifier: MIT */
/* `vmmu run`: run a guest program on the reference emulator. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"
#include "tool.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vmmu run [--backend vmmu|kvm] [--vcpus N] [--ram MIB] [--stats]\n"
            "                [--max-insns N] [--dma | --dmdev PATH | --dm-listen SOCKET]\n"
            "                [--pager PAGES] [--migrate] [--chaos] GUEST\n"
            "\n"
            "Run GUEST (a 64-bit ELF image, see docs/emulator.md) on vmmu's reference\n"
            "x86-64 emulator: N vCPUs (default 1) on host threads, every memory access\n"
            "through vmmu.  The guest's serial console goes to stdout; the exit status is\n"
            "the low 8 bits of what the guest wrote to its EXIT port, or %d when the\n"
            "machine stopped it (triple fault, every vCPU halted, instruction limit,\n"
            "internal error).\n"
            "\n"
            "  --backend B     vmmu (default): vmmu's interpreter; kvm: the host CPU\n"
            "                  through /dev/kvm (no --pager, --migrate or --chaos;\n"
            "                  --max-insns is ignored).\n"
            "                  Without a usable /dev/kvm it says so in one line and\n"
            "                  exits with %d, or 77 (skipped) when the environment\n"
            "                  variable VMMU_KVM_SKIP is set\n"
            "  --vcpus N       vCPUs, 1..%u\n"
            "  --ram MIB       guest RAM in MiB, a multiple of 2 from 4 to 1024 (default %llu)\n"
            "  --stats         after the run, print what the memory system did\n"
            "  --max-insns N   stop (as a failure) when a vCPU has run N instructions\n"
            "                  (0, the default: no limit)\n"
            "  --dma           attach the DMA engine at 0x%llx: the device model\n"
            "                  vmmu-dmdev, found beside this program, in its own process\n"
            "  --dmdev PATH    the same with the device model at PATH\n"
            "  --dm-listen SOCKET  the same with a device model started by you, which\n"
            "                  connects to the unix socket SOCKET (vmmu-dmdev --socket\n"
            "                  SOCKET --mmio-base 0x%llx); waits 30 s for it\n"
            "  --pager PAGES   a host pager thread keeps the guest's resident set under\n"
            "                  PAGES 4 KiB pages while it runs\n"
            "  --migrate       copy guest RAM as a live migration does, from the dirty\n"
            "                  log, while the guest runs; at the end the copy must\n"
            "                  equal RAM, else the run fails (a write the log missed)\n"
            "  --chaos         a host thread keeps making changes the guest must not\n"
            "                  see: shootdowns, code marks, map reads, page-outs and\n"
            "                  page-ins (with --pager), device-model invalidations\n"
            "Numbers are decimal, or hexadecimal with 0x.\n",
            EMU_EXIT_MACHINE_FAILURE, EMU_EXIT_MACHINE_FAILURE, EMU_VCPUS_MAX, (unsigned long long)(EMU_RAM_DEFAULT >> 20),
            (unsigned long long)EMU_MMIO_BASE, (unsigned long long)EMU_MMIO_BASE);
}

/* Decimal, or hexadecimal with 0x: the whole string, no sign or blanks.  (A
 * leading 0 is not octal: --vcpus 010 is ten, not eight.) */
static int parse_u64(const char *s, uint64_t *out)
{
    int base = 10;
    char *end;
    if (!s)
        return -1;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s || !((*s >= '0' && *s <= '9') || (base == 16 && strchr("abcdefABCDEF", *s))))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* vmmu-dmdev beside the running program (both are built into one directory). */
static const char *default_dmdev(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0)
        return "vmmu-dmdev";
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    const char *name = "vmmu-dmdev";
    if (!slash || (size_t)(slash + 1 - buf) + strlen(name) + 1 > size)
        return "vmmu-dmdev";
    strcpy(slash + 1, name);
    return buf;
}

int vmmu_tool_run(int argc, char **argv)
{
    char dmdev[4096];
    struct emu_config cfg = {.nr_vcpus = 1, .ram_size = EMU_RAM_DEFAULT, .console = stdout};
    bool stats = false;
    const struct emu_backend_ops *ops = &emu_backend_vmmu;
    uint64_t v;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done) {
            if (cfg.guest_path) {
                fprintf(stderr, "vmmu run: one guest at a time\n");
                return 2;
            }
            cfg.guest_path = a;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else if (!strcmp(a, "--migrate")) {
            cfg.migrate = true;
        } else if (!strcmp(a, "--chaos")) {
            cfg.chaos = true;
        } else if (!strcmp(a, "--backend")) {
            const char *b = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(b, "vmmu")) {
                ops = &emu_backend_vmmu;
            } else if (!strcmp(b, "kvm")) {
                ops = &emu_backend_kvm;
            } else {
                fprintf(stderr, "vmmu run: --backend must be vmmu or kvm\n");
                return 2;
            }
        } else if (!strcmp(a, "--dma")) {
            cfg.dmdev_path = default_dmdev(dmdev, sizeof(dmdev));
        } else if (!strcmp(a, "--dmdev")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "vmmu run: --dmdev needs a path\n");
                return 2;
            }
            cfg.dmdev_path = argv[++i];
        } else if (!strcmp(a, "--dm-listen")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "vmmu run: --dm-listen needs a socket path\n");
                return 2;
            }
            cfg.dm_listen = argv[++i];
        } else if (!strcmp(a, "--vcpus") || !strcmp(a, "--ram") || !strcmp(a, "--max-insns") ||
                   !strcmp(a, "--pager")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vmmu run: %s needs a number\n", a);
                return 2;
            }
            if (parse_u64(argv[i + 1], &v) < 0) {
                fprintf(stderr,
                        "vmmu run: %s needs a number (decimal, or hexadecimal with 0x, "
                        "below 2^64), not '%s'\n",
                        a, argv[i + 1]);
                return 2;
            }
            i++;
            if (!strcmp(a, "--vcpus")) {
                if (v < 1 || v > EMU_VCPUS_MAX) {
                    fprintf(stderr, "vmmu run: --vcpus must be 1..%u\n", EMU_VCPUS_MAX);
                    return 2;
                }
                cfg.nr_vcpus = (unsigned)v;
            } else if (!strcmp(a, "--ram")) {
                if (v < (EMU_RAM_MIN >> 20) || v > (EMU_IDENTITY_MAX >> 20) || (v & 1)) {
                    fprintf(stderr, "vmmu run: --ram must be an even number of MiB, 4..1024\n");
                    return 2;
                }
                cfg.ram_size = v << 20;
            } else if (!strcmp(a, "--pager")) {
                if (v < 1) {
                    fprintf(stderr, "vmmu run: --pager needs at least 1 page\n");
                    return 2;
                }
                cfg.pager_pages = v;
            } else {
                cfg.max_insns = v;
            }
        } else if (!strcmp(a, "--")) {
            options_done = true; /* what follows is the guest, even "-x" */
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vmmu run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (cfg.guest_path) {
            fprintf(stderr, "vmmu run: one guest at a time\n");
            return 2;
        } else {
            cfg.guest_path = a;
        }
    }
    if (!cfg.guest_path) {
        fprintf(stderr, "vmmu run: no GUEST given\n");
        usage(stderr);
        return 2;
    }
    if (cfg.dm_listen && cfg.dmdev_path) {
        fprintf(stderr, "vmmu run: one device model: --dma/--dmdev or --dm-listen\n");
        return 2;
    }
    if (ops == &emu_backend_kvm) {
        char why[160];
        if (cfg.pager_pages) {
            fprintf(stderr, "vmmu run: --backend kvm cannot run a host pager (--pager)\n");
            return 2;
        }
        if (cfg.migrate) {
            fprintf(stderr, "vmmu run: --backend kvm cannot check a migration (--migrate)\n");
            return 2;
        }
        if (cfg.chaos) {
            fprintf(stderr, "vmmu run: --backend kvm has no host stress (--chaos)\n");
            return 2;
        }
        if (emu_kvm_probe(why, sizeof(why)) < 0) {
            fprintf(stderr, "vmmu run: --backend kvm: %s (KVM backend unavailable)\n", why);
            return getenv("VMMU_KVM_SKIP") ? 77 : EMU_EXIT_MACHINE_FAILURE;
        }
        cfg.max_insns = 0; /* KVM does not count instructions */
    }
    struct emu_machine *m;
    if (emu_machine_create(&cfg, ops, &m) < 0)
        return EMU_EXIT_MACHINE_FAILURE;
    int status = emu_machine_run(m);
    if (stats) {
        fflush(stdout);
        printf("---- vmmu run: %u vCPU%s on the %s backend, exit status %d ----\n",
               cfg.nr_vcpus, cfg.nr_vcpus == 1 ? "" : "s", m->ops->name, status);
        m->ops->summary(m, stdout, cfg.nr_vcpus > 1);
    }
    emu_machine_destroy(m);
    return status;
}
