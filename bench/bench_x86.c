/* SPDX-License-Identifier: MIT */
/*
 * The reference emulator's speed: guest instructions per second for a
 * compute-bound guest (x86/mips_compute) and a memory-bound one
 * (x86/mips_memory), each run on one vCPU, median of several runs.
 * x86/vmmu_share (the fraction of host time inside libvmmu) comes from
 * callgrind: bench/x86_instructions.sh.
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

int main(void)
{
    figure("x86/mips_compute", EMU_GUEST_DIR "/bench_compute.elf");
    figure("x86/mips_memory", EMU_GUEST_DIR "/bench_memory.elf");
    return 0;
}
