/* SPDX-License-Identifier: MIT */
/*
 * Copying a running guest's RAM with the dirty log, as a live migration
 * does (vmmu/access.h: vmmu_dirty_log_enable, vmmu_dirty_log_get_and_clear).
 *
 * A vCPU thread keeps storing into 256 pages of guest RAM through its TLB
 * (the guest's stores: the inline probe, the slow path on a miss).  The
 * host copies RAM to a "destination" buffer while it runs: first every
 * page, then in rounds only the pages the dirty log names, each round
 * reading the pages after the call that reported them.  When a round
 * finds few pages left, the vCPU is paused (it goes offline, as at a
 * HLT) and one last round copies what it wrote since.  The copy must
 * equal the guest's RAM byte for byte: no write is lost, however the
 * vCPU's stores race the host's rounds.
 *
 *   cc live_migration.c $(pkg-config --cflags --libs vmmu) && ./a.out
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmmu/vmmu.h>

#define RAM_SIZE (2ull << 20) /* guest RAM at gpa 0, mapped 1:1 by one 2 MiB page */
#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD 0x3000ull
#define DATA 0x100000ull /* the pages the guest writes */
#define DATA_PAGES 256u
#define PAGE 4096u

struct shared {
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu;
    atomic_int pause;   /* the host asks the vCPU to stop */
    atomic_int paused;  /* the vCPU is offline and writes no more */
    atomic_ulong stores;
    int errors;
};

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAILED: " __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void put64(struct vmmu_vm *vm, uint64_t gpa, uint64_t value)
{
    int err = vmmu_gpa_write(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "page-table write: %s", vmmu_strerror(err));
}

/* One guest store of 8 bytes: the inline hit test, the slow path on a
 * miss (which marks the page dirty when logging is on). */
static int guest_store64(struct vmmu_vcpu *vcpu, uint64_t va, uint64_t value)
{
    void *host;
    if (!vmmu_tlb_probe(vmmu_tlb_view(vcpu), va, 8, VMMU_TLB_WRITE, &host)) {
        struct vmmu_tlb_result res;
        host = vmmu_tlb_fill(vcpu, va, 8, VMMU_X86_ACC_WRITE, &res);
        if (!host)
            return res.status == VMMU_TLB_FAULT ? -1 : res.error;
    }
    /* Atomic so that the host's copy, which reads the page meanwhile,
     * sees whole words (as a CPU's aligned stores are). */
    __atomic_store_n((uint64_t *)host, value, __ATOMIC_RELAXED);
    return 0;
}

/* The vCPU: store a counter at pseudo-random places in the data pages,
 * with a safe point between stores, until asked to pause. */
static void *guest(void *arg)
{
    struct shared *s = arg;
    uint64_t x = 0x2545f4914f6cdd1dull, n = 0;
    vmmu_vcpu_online(s->vcpu);
    while (!atomic_load(&s->pause)) {
        vmmu_vcpu_safepoint(s->vcpu);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* Most stores go to the first 16 pages (a working set), one in
         * 256 anywhere: so rounds shrink, as they do for a real guest. */
        unsigned page = (x & 255) ? (unsigned)(x >> 8) % 16 : (unsigned)(x >> 8) % DATA_PAGES;
        uint64_t va = DATA + (uint64_t)page * PAGE + ((x >> 32) % (PAGE / 8)) * 8;
        if (guest_store64(s->vcpu, va, ++n) != 0) {
            s->errors++;
            break;
        }
        atomic_store(&s->stores, n);
        if (n % 256 == 0)
            sched_yield(); /* the host thread may share the core */
    }
    vmmu_vcpu_offline(s->vcpu); /* HLT: nobody waits for this vCPU now */
    atomic_store(&s->paused, 1);
    return NULL;
}

/* Copy the pages @bitmap names (bit i: data page i) from guest RAM. */
static unsigned copy_pages(struct vmmu_vm *vm, uint8_t *dest, const uint64_t *bitmap,
                           uint64_t first_page)
{
    unsigned n = 0;
    for (unsigned i = 0; i < DATA_PAGES; i++) {
        uint64_t p = first_page + i;
        if (!(bitmap[p / 64] >> (p % 64) & 1))
            continue;
        int err = vmmu_gpa_read(vm, p * PAGE, dest + p * PAGE, PAGE, 0, NULL);
        CHECK(err == 0, "copy of page %" PRIu64 ": %s", p, vmmu_strerror(err));
        n++;
    }
    return n;
}

int main(void)
{
    struct shared s = {0};
    struct vmmu_vm_config cfg = {.gpa_bits = 32};
    int err = vmmu_vm_create(&cfg, &s.vm);
    CHECK(err == 0, "vmmu_vm_create: %s", vmmu_strerror(err));
    if (err)
        return 1;
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = RAM_SIZE, .name = "ram"};
    uint32_t ram_id;
    err = vmmu_region_add(s.vm, &ram, &ram_id);
    CHECK(err == 0, "vmmu_region_add: %s", vmmu_strerror(err));

    /* 4-level tables mapping linear 0..2 MiB to gpa 0..2 MiB (one large
     * page, writable, A and D set). */
    const uint64_t up = VMMU_X86_PTE_P | VMMU_X86_PTE_RW;
    put64(s.vm, PML4, PDPT | up);
    put64(s.vm, PDPT, PD | up);
    put64(s.vm, PD, 0 | up | VMMU_X86_PTE_PS | VMMU_X86_PTE_A | VMMU_X86_PTE_D);
    err = vmmu_vcpu_create(s.vm, NULL, &s.vcpu);
    CHECK(err == 0, "vmmu_vcpu_create: %s", vmmu_strerror(err));
    struct vmmu_x86_regs regs = {
        .cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP | VMMU_X86_CR0_ET,
        .cr3 = PML4,
        .cr4 = VMMU_X86_CR4_PAE,
        .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA | VMMU_X86_EFER_NXE,
        .rflags = 2,
    };
    err = vmmu_vcpu_set_state(s.vcpu, &regs);
    CHECK(err == 0, "vmmu_vcpu_set_state: %s", vmmu_strerror(err));
    if (failures)
        return 1;

    /* Logging on before the first copy: from here every write is seen. */
    err = vmmu_dirty_log_enable(s.vm, ram_id, true);
    CHECK(err == 0, "vmmu_dirty_log_enable: %s", vmmu_strerror(err));
    pthread_t th;
    pthread_create(&th, NULL, guest, &s);
    while (atomic_load(&s.stores) < 10000)
        sched_yield();

    uint8_t *dest = calloc(1, RAM_SIZE);
    static uint64_t bitmap[RAM_SIZE / PAGE / 64];
    const uint64_t first = DATA / PAGE;
    /* Round 0: every data page. */
    memset(bitmap, 0xff, sizeof(bitmap));
    unsigned copied = copy_pages(s.vm, dest, bitmap, first);
    printf("round 0: %u pages copied while the guest runs\n", copied);

    /* Rounds: what was written since the last round's call.  Each call
     * clears the bits it returns and makes the vCPU drop its translations
     * of those pages, so its next store there is logged again; the pages
     * are read after the call, so a store that raced it is either in
     * this copy or in the next round. */
    unsigned round = 1, dirty;
    uint64_t ndirty = 0;
    for (;; round++) {
        err = vmmu_dirty_log_get_and_clear(s.vm, ram_id, bitmap,
                                           sizeof(bitmap) / sizeof(bitmap[0]), &ndirty);
        CHECK(err == 0, "vmmu_dirty_log_get_and_clear: %s", vmmu_strerror(err));
        dirty = copy_pages(s.vm, dest, bitmap, first);
        printf("round %u: %u dirty pages copied again\n", round, dirty);
        if (dirty <= 32 || round == 50 || err)
            break; /* few enough to copy with the guest stopped */
    }

    /* Stop the guest, then the last round: nothing changes any more. */
    atomic_store(&s.pause, 1);
    pthread_join(th, NULL);
    err = vmmu_dirty_log_get_and_clear(s.vm, ram_id, bitmap, sizeof(bitmap) / sizeof(bitmap[0]),
                                       &ndirty);
    CHECK(err == 0, "vmmu_dirty_log_get_and_clear: %s", vmmu_strerror(err));
    dirty = copy_pages(s.vm, dest, bitmap, first);
    printf("last round (guest paused after %lu stores): %u pages\n",
           (unsigned long)atomic_load(&s.stores), dirty);
    CHECK(s.errors == 0, "the guest's stores failed");

    /* The destination now holds exactly the guest's data pages. */
    uint8_t *now = malloc(DATA_PAGES * PAGE);
    err = vmmu_gpa_read(s.vm, DATA, now, DATA_PAGES * PAGE, 0, NULL);
    CHECK(err == 0, "vmmu_gpa_read: %s", vmmu_strerror(err));
    CHECK(memcmp(now, dest + DATA, DATA_PAGES * PAGE) == 0, "the copy differs from guest RAM");
    if (!failures)
        printf("the copy equals the guest's RAM\n");

    free(now);
    free(dest);
    vmmu_vcpu_destroy(s.vcpu);
    vmmu_vm_destroy(s.vm);
    printf(failures ? "live_migration: FAILED\n" : "live_migration: ok\n");
    return failures ? 1 : 0;
}
