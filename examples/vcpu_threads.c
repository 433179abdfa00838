/* SPDX-License-Identifier: MIT */
/*
 * vCPUs on threads of their own, and what keeps their TLBs honest
 * (vmmu/sync.h, vmmu/pager.h).
 *
 * Two vCPUs share the guest's page tables.  vCPU 1 reads one guest word
 * in a loop, through its TLB, reaching a safe point between "instructions".
 * vCPU 0 remaps the page under that word (it edits the PTE) and shoots the
 * translation down on every vCPU with vmmu_shootdown_sync(): when that
 * returns, no vCPU uses the old page again, and vCPU 1's reads prove it.
 * Then vCPU 1 halts (goes offline), the host pages the new page out to a
 * file, and vCPU 1 comes back: its next access brings the page back (the
 * pager's page-in handler), with its contents.  The pager runs in paranoid
 * mode, so a stale host pointer into the released page would crash the
 * program.  (A page a running vCPU keeps touching is not paged out: its
 * page-out is cancelled when the vCPU touches it again, so a vCPU never
 * waits for a page-out that waits for it.)
 *
 *   cc vcpu_threads.c $(pkg-config --cflags --libs vmmu) && ./a.out
 *
 * The rules a vCPU thread follows: vmmu_vcpu_online() before it runs guest
 * code, vmmu_vcpu_safepoint() between instructions, vmmu_vcpu_offline()
 * when it stops for a while, and no host pointer from the TLB kept across
 * a safe point.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <vmmu/vmmu.h>

#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD 0x3000ull
#define PT 0x4000ull
#define OLD_GPA 0x100000ull
#define NEW_GPA 0x101000ull
#define WORD_VA 0x400000ull
#define OLD_VALUE 0x01d01d01d01d01dull
#define NEW_VALUE 0x0e90e90e90e90e9ull

struct shared {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu[2];
    atomic_int reads;      /* vCPU 1's reads so far */
    atomic_int remapped;   /* vCPU 0's shootdown has returned */
    atomic_int halted;     /* vCPU 1 is offline, waiting for wake */
    atomic_int wake;       /* the host's page-out has returned */
    atomic_int stop;
    /* what vCPU 1 saw */
    unsigned old_reads, new_reads, new_reads_after_pageout, stale, errors;
};

static void put64(struct vmmu_vm *vm, uint64_t gpa, uint64_t value)
{
    vmmu_gpa_write(vm, gpa, &value, sizeof(value), 0, NULL);
}

static int load_state(struct vmmu_vcpu *vcpu)
{
    struct vmmu_x86_regs regs = {
        .cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP | VMMU_X86_CR0_ET,
        .cr3 = PML4,
        .cr4 = VMMU_X86_CR4_PAE,
        .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA | VMMU_X86_EFER_NXE,
        .rflags = 2,
    };
    return vmmu_vcpu_set_state(vcpu, &regs);
}

/* vCPU 1: read the word until told to stop. */
static void *reader(void *arg)
{
    struct shared *s = arg;
    struct vmmu_vcpu *v = s->vcpu[1];
    int after_pageout = 0;
    vmmu_vcpu_online(v);
    while (!atomic_load(&s->stop)) {
        vmmu_vcpu_safepoint(v); /* between instructions: act on requests */
        /* Read the flag first: if the shootdown had returned before this
         * instruction began, the read must not use the old page. */
        int after_remap = atomic_load(&s->remapped);
        if (after_remap && !after_pageout && s->new_reads >= 1000) {
            /* HLT: nobody waits for an offline vCPU; requests posted
             * meanwhile are acted on when it comes back online. */
            vmmu_vcpu_offline(v);
            atomic_store(&s->halted, 1);
            while (!atomic_load(&s->wake))
                sched_yield();
            vmmu_vcpu_online(v);
            after_pageout = 1;
        }
        struct vmmu_tlb_result res;
        const uint64_t *host = vmmu_tlb_translate(v, WORD_VA, 8, 0, &res);
        if (!host) {
            s->errors++;
            break;
        }
        uint64_t value = *host;
        if (value == OLD_VALUE) {
            s->old_reads++;
            if (after_remap)
                s->stale++;
        } else if (value == NEW_VALUE) {
            s->new_reads++;
            s->new_reads_after_pageout += after_pageout;
        } else {
            s->errors++;
        }
        atomic_fetch_add(&s->reads, 1);
        if (atomic_load(&s->reads) % 64 == 0)
            sched_yield(); /* 2 vCPU threads and a host thread may share one core */
    }
    vmmu_vcpu_offline(v);
    return NULL;
}

/* vCPU 0: remap the page and shoot the old translation down everywhere. */
static void *remapper(void *arg)
{
    struct shared *s = arg;
    struct vmmu_vcpu *v = s->vcpu[0];
    vmmu_vcpu_online(v);
    while (atomic_load(&s->reads) < 1000) /* let vCPU 1 cache the old page */
        vmmu_vcpu_safepoint(v);
    /* The guest's MOV [pte], new: shared page tables, plain memory. */
    put64(s->vm, PT + ((WORD_VA >> 12) & 511) * 8,
          NEW_GPA | VMMU_X86_PTE_P | VMMU_X86_PTE_RW | VMMU_X86_PTE_A);
    /* The guest's TLB shootdown (INVLPG here, an IPI to the others). */
    struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .pcid = VMMU_FLUSH_ANY_PCID,
                           .va = WORD_VA, .npages = 1};
    int err = vmmu_shootdown_sync(s->vm, v, NULL, &f);
    if (err)
        fprintf(stderr, "vmmu_shootdown_sync: %s\n", vmmu_strerror(err));
    atomic_store(&s->remapped, 1);
    vmmu_vcpu_offline(v);
    return NULL;
}

int main(void)
{
    static struct shared s;
    struct vmmu_pager *pager;
    int err = vmmu_vm_create(NULL, &s.vm);
    if (err) {
        fprintf(stderr, "vmmu_vm_create: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 16ull << 20};
    struct vmmu_pager_config pcfg = {.flags = VMMU_PAGER_PARANOID};
    if ((err = vmmu_region_add(s.vm, &ram, NULL)) || (err = vmmu_pager_create(s.vm, &pcfg, &pager))) {
        fprintf(stderr, "setup: %s\n", vmmu_strerror(err));
        return 1;
    }
    const uint64_t rw = VMMU_X86_PTE_P | VMMU_X86_PTE_RW;
    put64(s.vm, PML4, PDPT | rw);
    put64(s.vm, PDPT, PD | rw);
    put64(s.vm, PD + ((WORD_VA >> 21) & 511) * 8, PT | rw);
    put64(s.vm, PT + ((WORD_VA >> 12) & 511) * 8, OLD_GPA | rw | VMMU_X86_PTE_A);
    put64(s.vm, OLD_GPA, OLD_VALUE);
    put64(s.vm, NEW_GPA, NEW_VALUE);
    for (int i = 0; i < 2; i++)
        if ((err = vmmu_vcpu_create(s.vm, NULL, &s.vcpu[i])) || (err = load_state(s.vcpu[i]))) {
            fprintf(stderr, "vCPU %d: %s\n", i, vmmu_strerror(err));
            return 1;
        }

    pthread_t t0, t1;
    pthread_create(&t1, NULL, reader, &s);
    pthread_create(&t0, NULL, remapper, &s);
    pthread_join(t0, NULL);

    /* The host: once vCPU 1 halts, page the new page out.  This returns
     * when no vCPU can reach the old host page any more. */
    while (!atomic_load(&s.halted))
        sched_yield();
    struct vmmu_gpa_range page = {NEW_GPA, 4096};
    struct vmmu_pager_stats ps;
    if ((err = vmmu_pager_page_out(pager, &page, 1)))
        fprintf(stderr, "vmmu_pager_page_out: %s\n", vmmu_strerror(err));
    int before = atomic_load(&s.reads);
    atomic_store(&s.wake, 1);
    while (atomic_load(&s.reads) < before + 2000)
        sched_yield();
    atomic_store(&s.stop, 1);
    pthread_join(t1, NULL);

    vmmu_pager_stats(pager, &ps);
    printf("vCPU 1 read the old page %u times and the new page %u times (%u after the page-out)\n",
           s.old_reads, s.new_reads, s.new_reads_after_pageout);
    printf("reads of the old page after the shootdown returned: %u\n", s.stale);
    printf("pager: %" PRIu64 " page written out, %" PRIu64 " paged back in on access\n",
           ps.written, ps.paged_in);
    int ok = !err && s.errors == 0 && s.stale == 0 && s.old_reads > 0 &&
             s.new_reads_after_pageout > 0 && ps.written == 1 && ps.paged_in >= 1;

    for (int i = 0; i < 2; i++)
        vmmu_vcpu_destroy(s.vcpu[i]);
    /* Destroying the pager pages everything back in; it fails (and keeps
     * the pager) only if the backing file cannot be read. */
    if ((err = vmmu_pager_destroy(pager)) != 0) {
        fprintf(stderr, "vmmu_pager_destroy: %s\n", vmmu_strerror(err));
        ok = 0;
    }
    vmmu_vm_destroy(s.vm);
    if (!ok) {
        fprintf(stderr, "FAILED (errors %u)\n", s.errors);
        return 1;
    }
    printf("ok\n");
    return 0;
}
