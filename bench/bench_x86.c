/* SPDX-License-Identifier: MIT */
/*
 * The reference emulator's speed: guest instructions per second for a
 * compute-bound guest (x86/mips_compute) and a memory-bound one
 * (x86/mips_memory), each run on one vCPU, median of several runs.
 * x86/vmmu_share (the fraction of host time inside libvmmu) comes from
 * callgrind: bench/x86_instructions.sh.
 *
 * x86/vmmu_memory_s and x86/kvm_memory_s: the memory-bound guest's wall
 * time on each backend, measured in the same run (median of RUNS), and
 * their ratio x86/vmmu_over_kvm.  Where /dev/kvm cannot be used the KVM
 * figures say "unavailable" and why; no number is made up.
 */
#include <string.h>

#include "bench_util.h"
#include "vmmu_backend.h"

#ifndef EMU_GUEST_DIR
#error "EMU_GUEST_DIR must name the built guests"
#endif

#define RUNS 3

static double run_once(const char *guest, FILE *devnull)
{
    struct emu_config cfg = {.nr_vcpus = 1, .ram_size = EMU_RAM_DEFAULT, .guest_path = guest,
                             .console = devnull};
    struct emu_machine *m;
    if (emu_machine_create(&cfg, &emu_backend_vmmu, &m) < 0)
        exit(1);
    double t0 = bench_now_ns();
    int status = emu_machine_run(m);
    double ns = bench_now_ns() - t0;
    struct vb *b = m->backend;
    uint64_t insns = b->vcpu[0].cpu.icount;
    emu_machine_destroy(m);
    if (status != 0) {
        fprintf(stderr, "bench_x86: %s exited with %d\n", guest, status);
        exit(1);
    }
    return (double)insns / (ns / 1e9) / 1e6;
}

static void figure(const char *name, const char *guest)
{
    FILE *devnull = fopen("/dev/null", "w");
    if (!devnull)
        exit(1);
    double mips[RUNS];
    for (int i = 0; i < RUNS; i++)
        mips[i] = run_once(guest, devnull);
    fclose(devnull);
    bench_figure(name, bench_median(mips, RUNS), "MIPS");
}

/* Seconds one run of @p guest takes on @p ops (the machine built outside the timing). */
static double wall_once(const struct emu_backend_ops *ops, const char *guest, FILE *devnull)
{
    struct emu_config cfg = {.nr_vcpus = 1, .ram_size = EMU_RAM_DEFAULT, .guest_path = guest,
                             .console = devnull};
    struct emu_machine *m;
    if (emu_machine_create(&cfg, ops, &m) < 0)
        exit(1);
    double t0 = bench_now_ns();
    int status = emu_machine_run(m);
    double ns = bench_now_ns() - t0;
    emu_machine_destroy(m);
    if (status != 0) {
        fprintf(stderr, "bench_x86: %s on %s exited with %d\n", guest, ops->name, status);
        exit(1);
    }
    return ns / 1e9;
}

static void memory_side_by_side(const char *guest)
{
    FILE *devnull = fopen("/dev/null", "w");
    if (!devnull)
        exit(1);
    double vmmu_s[RUNS], kvm_s[RUNS];
    char why[160];
    bool kvm = emu_kvm_probe(why, sizeof(why)) == 0;
    for (int i = 0; i < RUNS; i++) {
        vmmu_s[i] = wall_once(&emu_backend_vmmu, guest, devnull);
        if (kvm)
            kvm_s[i] = wall_once(&emu_backend_kvm, guest, devnull);
    }
    fclose(devnull);
    double v = bench_median(vmmu_s, RUNS);
    bench_figure("x86/vmmu_memory_s", v, "s");
    if (!kvm) {
        printf("x86/kvm_memory_s: unavailable (%s)\n", why);
        printf("x86/vmmu_over_kvm: unavailable (no KVM figure)\n");
        return;
    }
    double k = bench_median(kvm_s, RUNS);
    bench_figure("x86/kvm_memory_s", k, "s");
    bench_figure("x86/vmmu_over_kvm", v / k, "x");
}

int main(void)
{
    figure("x86/mips_compute", EMU_GUEST_DIR "/bench_compute.elf");
    figure("x86/mips_memory", EMU_GUEST_DIR "/bench_memory.elf");
    memory_side_by_side(EMU_GUEST_DIR "/bench_memory.elf");
    return 0;
}
