/* SPDX-License-Identifier: MIT */
/*
 * Torture test of cross-vCPU invalidation and host reclaim.
 *
 *   torture_sync [--vcpus N] [--editors E] [--seconds S] [--seed X] [--quiet]
 *
 * N vCPU threads run random guest reads and writes through their TLBs.
 * The first E of them also edit the guest page tables (point a virtual
 * page at another data page) and shoot the others down, synchronously or
 * asynchronously.  A host thread meanwhile, in paranoid mode, pages out
 * and in random data and page-table pages, balloons pages out and back,
 * replaces whole data regions (a remap to fresh memory) and runs the
 * resident-set policy; the editors also page out, change page states and
 * shoot down from inside a vmmu_region_foreach() callback now and then,
 * as host work on a vCPU thread.  A device model (the client library, on its own
 * thread, served by an out-of-process-style server over a socketpair)
 * meanwhile writes and reads back tokens through its mapcache in pages of
 * its own, which the host pages out and in too: it must acknowledge the
 * invalidations, ask for paged-out pages back, and never read a stale or
 * zero word nor lose a write.  The vCPUs also make locked adds to one
 * counter whose 8 bytes cross a page (split locks, which park every other
 * vCPU) and aligned ones to its upper half, on pages the host pages out
 * too: at the end the counter must hold every add.
 *
 * Every data page carries its identity: word 0 is its own gpa and word k
 * is pattern(gpa, k).  A read through a translation must find a page the
 * virtual page may map at that moment: for virtual page i, remaps number
 * done[i] (the last whose synchronous shootdown returned before the read
 * began) to seq[i] (the last started when it ended).  Anything else is a
 * stale access.  A reclaimed host page is PROT_NONE, so a stale pointer
 * into one crashes the test.  At the end every data page must hold its
 * identity in full: nothing lost, nothing corrupted.  Exit status 0 only
 * if the counts of stale accesses, errors and bad pages are all zero.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "vmmu/dmclient.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#define PT_GPA 0ull
#define PT_SIZE (4ull << 20)
#define DATA_GPA (1ull << 30)
#define REGIONS 4
#define REGION_PAGES 64
#define REGION_STRIDE (16ull << 20)
#define DPAGES (REGIONS * REGION_PAGES)
#define NVA 256
#define DATA_VA 0x40000000000ull
#define HIST 16
#define WORDS (4096 / 8)
#define DMA_GPA (2ull << 30) /* the device model's own pages */
#define DMA_PAGES 64
#define DMA_WORDS 8 /* words per page the device model writes */
#define LOCK_GPA (3ull << 30) /* two pages: the split counter's */
#define LOCK_VA 0x50000000000ull

static const uint64_t P = 1, RW = 2, US = 4, A = 32, D = 64;
#define ADDR_MASK 0x000ffffffffff000ull

struct va_state {
    _Atomic uint64_t seq;  /* remaps started */
    _Atomic uint64_t done; /* remaps whose synchronous shootdown returned */
    _Atomic uint32_t hist[HIST]; /* data page of remap k at k % HIST */
    uint64_t pte_gpa;      /* where its PTE lives */
};

static struct {
    struct vmmu_vm *vm;
    struct vmmu_pager *pager;
    uint32_t region_id[REGIONS];
    uint64_t root;
    uint64_t pt_pages[64];
    unsigned npt;
    struct va_state va[NVA];
    _Atomic int flux[DPAGES]; /* > 0 while the host rewrites a page's identity */
    atomic_int stop;
    atomic_ulong reads, writes, stale, errors, remaps_sync, remaps_async, fill_retries;
    atomic_ulong pageouts, pageins, balloons, replaces, balances;
    atomic_ulong vcpu_pageouts, vcpu_state_changes, vcpu_foreach_shootdowns;
    /* Held by the host thread while it writes identities through host
     * pointers, and by an editor's page-out, which would take such a
     * page away in the middle (PROT_NONE: the host thread would crash). */
    pthread_mutex_t identity_lock;
    /* the device model */
    struct vmmu_dm *dm;
    struct vmmu_dmc *dmc;
    uint64_t dma_shadow[DMA_PAGES][DMA_WORDS]; /* what it last wrote */
    atomic_ulong dma_writes, dma_reads, dma_bad;
    atomic_ulong lock_adds, split_adds;
    unsigned vcpus, editors;
    double seconds;
    uint64_t seed;
    bool quiet;
} T;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Count an error (and say where, unless --quiet). */
static void note_error(int line)
{
    atomic_fetch_add(&T.errors, 1);
    if (!T.quiet)
        fprintf(stderr, "torture: error at line %d\n", line);
}

static uint64_t data_gpa(unsigned page)
{
    return DATA_GPA + (page / REGION_PAGES) * REGION_STRIDE + (page % REGION_PAGES) * 4096ull;
}

static uint64_t pattern(uint64_t gpa, unsigned word)
{
    if (word == 0)
        return gpa;
    uint64_t x = gpa ^ ((uint64_t)word * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    return x | 1; /* never zero: zero means "fresh page" */
}

/* Host address of guest-physical @gpa, paging it in if needed.  Valid
 * until the caller's next safe point (vCPU) or next change (host). */
static uint64_t *host_of(uint64_t gpa)
{
    for (;;) {
        struct vmmu_p2m_entry e;
        if (vmmu_p2m_lookup(T.vm, gpa, &e) != 0 || e.type != VMMU_MEM_RAM)
            return NULL;
        if (e.hva)
            return (uint64_t *)(void *)e.hva;
        uint8_t b;
        if (vmmu_gpa_read(T.vm, gpa, &b, 1, 0, NULL) != 0)
            return NULL;
    }
}

/* Write a data page's identity (host thread, after it made the page fresh). */
static void write_identity(unsigned page)
{
    uint64_t gpa = data_gpa(page);
    uint64_t *h = host_of(gpa);
    for (unsigned w = 0; w < WORDS; w++)
        __atomic_store_n(&h[w], pattern(gpa, w), __ATOMIC_RELAXED);
}

/* ---- setup --------------------------------------------------------------------- */

/* The page-in handler: the pager's page-in through its public call (which
 * takes the map's lock), then every fourth time a page-state change (the
 * change lock, and a flush of every vCPU), as a handler that keeps its
 * own books might.  A split lock's page-in runs inside its exclusive
 * section, so the section's code takes both locks: a vCPU that parked for
 * the section holding one of them would never let it finish.  Either may
 * wait offline on a vCPU thread, so the access that asked looks the page
 * up again.  While the device model's page-in is served, the change is
 * refused (the change lock's holder may be waiting for the device model):
 * then it is left out. */
static atomic_ulong pagein_marks, pagein_marks_refused;

static int page_in_and_mark(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)opaque;
    static atomic_uint calls;
    struct vmmu_gpa_range r = {gpa, 4096};
    int rc = vmmu_pager_page_in(T.pager, &r, 1);
    if (!rc && (atomic_fetch_add(&calls, 1) & 3) == 0) {
        rc = vmmu_page_state_change(vm, &r, 1, 0, VMMU_PAGE_DIRTY);
        atomic_fetch_add(rc == VMMU_EBUSY ? &pagein_marks_refused : &pagein_marks, 1);
        if (rc == VMMU_EBUSY)
            rc = 0;
    }
    return rc;
}

static uint64_t pt_alloc(void)
{
    uint64_t gpa = PT_GPA + 0x1000 + (uint64_t)T.npt * 4096;
    T.pt_pages[T.npt++] = gpa;
    return gpa;
}

/* Map the 4 KiB page @va to @gpa (present, writable, user, A and D);
 * returns where its PTE lives. */
static uint64_t map_page(uint64_t va, uint64_t gpa)
{
    uint64_t table = T.root;
    for (unsigned level = 4; level > 1; level--) {
        uint64_t at = table + 8 * ((va >> (12 + 9 * (level - 1))) & 511);
        uint64_t e;
        vmmu_gpa_read(T.vm, at, &e, 8, 0, NULL);
        if (!(e & P)) {
            e = pt_alloc() | P | RW | US | A;
            vmmu_gpa_write(T.vm, at, &e, 8, 0, NULL);
        }
        table = e & ADDR_MASK;
    }
    uint64_t pte_gpa = table + 8 * ((va >> 12) & 511);
    uint64_t pte = gpa | P | RW | US | A | D;
    vmmu_gpa_write(T.vm, pte_gpa, &pte, 8, 0, NULL);
    return pte_gpa;
}

static void setup(void)
{
    if (vmmu_vm_create(NULL, &T.vm))
        exit(2);
    struct vmmu_region_desc pt = {.type = VMMU_MEM_RAM, .gpa = PT_GPA, .size = PT_SIZE,
                                  .name = "pt"};
    if (vmmu_region_add(T.vm, &pt, NULL))
        exit(2);
    for (unsigned r = 0; r < REGIONS; r++) {
        struct vmmu_region_desc d = {.type = VMMU_MEM_RAM,
                                     .gpa = DATA_GPA + r * REGION_STRIDE,
                                     .size = REGION_PAGES * 4096, .name = "data"};
        if (vmmu_region_add(T.vm, &d, &T.region_id[r]))
            exit(2);
    }
    for (unsigned p = 0; p < DPAGES; p++)
        write_identity(p);
    T.root = pt_alloc();
    uint64_t s = T.seed;
    for (unsigned i = 0; i < NVA; i++) {
        unsigned page = (unsigned)(rnd(&s) % DPAGES);
        T.va[i].pte_gpa = map_page(DATA_VA + (uint64_t)i * 4096, data_gpa(page));
        atomic_store(&T.va[i].hist[0], page);
    }
    struct vmmu_region_desc locks = {.type = VMMU_MEM_RAM, .gpa = LOCK_GPA, .size = 2 * 4096,
                                     .name = "locks"};
    if (vmmu_region_add(T.vm, &locks, NULL))
        exit(2);
    map_page(LOCK_VA, LOCK_GPA);
    map_page(LOCK_VA + 4096, LOCK_GPA + 4096);
    struct vmmu_region_desc dma = {.type = VMMU_MEM_RAM, .gpa = DMA_GPA,
                                   .size = DMA_PAGES * 4096, .name = "dma"};
    if (vmmu_region_add(T.vm, &dma, NULL))
        exit(2);
    struct vmmu_pager_config cfg = {.flags = VMMU_PAGER_PARANOID,
                                    .resident_limit = DPAGES / 2 + 8};
    if (vmmu_pager_create(T.vm, &cfg, &T.pager) ||
        vmmu_p2m_set_pagein_handler(T.vm, page_in_and_mark, NULL))
        exit(2);
    int sv[2];
    struct vmmu_dm_server *srv;
    struct vmmu_dm_remote_config rc = {.timeout_ms = 60000};
    if (vmmu_dm_create(T.vm, NULL, &T.dm) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ||
        vmmu_dm_server_create_remote(T.dm, sv[0], &rc, &srv) ||
        vmmu_dmc_connect_fd(sv[1], NULL, &T.dmc))
        exit(2);
}

/* ---- the device model ---------------------------------------------------------------- */

/* Count a device-model transfer that failed (and say which, unless --quiet). */
static void dma_error(const char *what, unsigned page, int err)
{
    atomic_fetch_add(&T.errors, 1);
    if (!T.quiet)
        fprintf(stderr, "dma %s of page %u: %s\n", what, page, vmmu_strerror(err));
}

static void *dm_main(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
    uint64_t count = 0;
    while (!atomic_load_explicit(&T.stop, memory_order_relaxed)) {
        int perr = vmmu_dmc_process(T.dmc);
        if (perr) {
            atomic_fetch_add(&T.errors, 1);
            if (!T.quiet)
                fprintf(stderr, "device model: %s\n", vmmu_strerror(perr));
        }
        unsigned p = (unsigned)(rnd(&rng) % DMA_PAGES), w = (unsigned)(rnd(&rng) % DMA_WORDS);
        uint64_t gpa = DMA_GPA + p * 4096ull + w * 8;
        if (rnd(&rng) & 1) {
            uint64_t token = ((uint64_t)p << 48) | ((uint64_t)w << 40) | ++count;
            int err = vmmu_dmc_write(T.dmc, gpa, &token, 8);
            if (err) {
                dma_error("write", p, err);
                continue;
            }
            T.dma_shadow[p][w] = token;
            atomic_fetch_add_explicit(&T.dma_writes, 1, memory_order_relaxed);
        } else {
            uint64_t got;
            int err = vmmu_dmc_read(T.dmc, gpa, &got, 8);
            if (err) {
                dma_error("read", p, err);
                continue;
            }
            if (got != T.dma_shadow[p][w]) {
                atomic_fetch_add(&T.dma_bad, 1);
                if (!T.quiet)
                    fprintf(stderr, "dma page %u word %u: %#llx, wrote %#llx\n", p, w,
                            (unsigned long long)got, (unsigned long long)T.dma_shadow[p][w]);
            }
            atomic_fetch_add_explicit(&T.dma_reads, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

/* After the device model stopped: every word it wrote, as the vm sees it. */
static unsigned dma_verify(void)
{
    unsigned bad = 0;
    for (unsigned p = 0; p < DMA_PAGES; p++) {
        uint64_t got[DMA_WORDS];
        if (vmmu_gpa_read(T.vm, DMA_GPA + p * 4096ull, got, sizeof(got), 0, NULL) ||
            memcmp(got, T.dma_shadow[p], sizeof(got)))
            bad++;
    }
    return bad;
}

/* ---- vCPU threads ------------------------------------------------------------------- */

struct vcpu_thread {
    unsigned index;
    struct vmmu_vcpu *v;
    pthread_t th;
    uint64_t rng;
    /* editors: virtual pages remapped with an asynchronous shootdown and
     * not yet covered by a synchronous one */
    unsigned pend[NVA];
    unsigned npend;
};

static bool page_in_flux(unsigned page)
{
    return atomic_load_explicit(&T.flux[page], memory_order_acquire) > 0;
}

/* Is @id (the identity read) one the virtual page @i may map now? */
static bool allowed(unsigned i, uint64_t id, uint64_t d, uint64_t s, bool *zero_ok)
{
    for (uint64_t k = d; k <= s; k++) {
        unsigned page = atomic_load_explicit(&T.va[i].hist[k % HIST], memory_order_acquire);
        if (page_in_flux(page))
            *zero_ok = true;
        if (data_gpa(page) == id)
            return true;
    }
    return false;
}

static void one_access(struct vcpu_thread *t)
{
    unsigned i = (unsigned)(rnd(&t->rng) % NVA);
    struct va_state *vs = &T.va[i];
    uint64_t d = atomic_load_explicit(&vs->done, memory_order_acquire);
    bool zero_before = false;
    for (uint64_t k = d; k <= atomic_load(&vs->seq); k++)
        zero_before |= page_in_flux(atomic_load(&vs->hist[k % HIST]));
    struct vmmu_tlb_result res;
    uint64_t *h = vmmu_tlb_translate(t->v, DATA_VA + (uint64_t)i * 4096, 8, 0, &res);
    if (!h && res.status == VMMU_TLB_ERROR && res.error == VMMU_EPAGEDOUT) {
        /* The fill paged the page in, and a page-out took it again before
         * the fill looked it up: retry, as the vCPU loop would. */
        atomic_fetch_add(&T.fill_retries, 1);
        return;
    }
    if (!h) {
        note_error(__LINE__);
        if (!T.quiet)
            fprintf(stderr, "vcpu %u: va page %u: status %d error %d\n", t->index, i,
                    (int)res.status, res.error);
        return;
    }
    uint64_t id = __atomic_load_n(h, __ATOMIC_RELAXED);
    unsigned w = 1 + (unsigned)(rnd(&t->rng) % (WORDS - 1));
    uint64_t word = __atomic_load_n(h + w, __ATOMIC_RELAXED);
    uint64_t s = atomic_load_explicit(&vs->seq, memory_order_acquire);
    bool zero_ok = zero_before;
    bool ok = allowed(i, id, d, s, &zero_ok);
    if (ok && word != pattern(id, w))
        ok = false;
    if (!ok && zero_ok && (id == 0 || word == 0))
        ok = true; /* the host is rewriting a fresh page's identity */
    if (!ok) {
        atomic_fetch_add(&T.stale, 1);
        if (!T.quiet)
            fprintf(stderr, "vcpu %u: STALE va page %u read id %#llx word[%u] %#llx (remaps %llu..%llu)\n",
                    t->index, i, (unsigned long long)id, w, (unsigned long long)word,
                    (unsigned long long)d, (unsigned long long)s);
        return;
    }
    atomic_fetch_add_explicit(&T.reads, 1, memory_order_relaxed);
    if (id && (rnd(&t->rng) & 3) == 0) {
        /* A write that keeps the page's identity: through a stale
         * translation it would land in another page and be found at the
         * end; into a reclaimed page it would crash. */
        uint64_t *wh = vmmu_tlb_translate(t->v, DATA_VA + (uint64_t)i * 4096 + w * 8, 8,
                                          VMMU_X86_ACC_WRITE, &res);
        if (wh) {
            uint64_t again = __atomic_load_n(wh - w, __ATOMIC_RELAXED);
            if (again)
                __atomic_store_n(wh, pattern(again, w), __ATOMIC_RELAXED);
            atomic_fetch_add_explicit(&T.writes, 1, memory_order_relaxed);
        } else {
            note_error(__LINE__);
        }
    }
}

/* A locked add to the counter: 1 << 32 to the 8 bytes that cross from the
 * first lock page into the second (a split lock), or 1 to the 4 bytes
 * that start the second page (an aligned one): either adds 1 there. */
static void lock_add(struct vcpu_thread *t)
{
    bool split = rnd(&t->rng) & 1;
    uint64_t old;
    struct vmmu_x86_fault f = {.vector = VMMU_X86_FAULT_NONE};
    int rc = split ? vmmu_access_rmw(t->v, LOCK_VA + 4092, 8, VMMU_RMW_ADD, 1ull << 32, &old, 0, &f)
                   : vmmu_access_rmw(t->v, LOCK_VA + 4096, 4, VMMU_RMW_ADD, 1, &old, 0, &f);
    if (rc == VMMU_EPAGEDOUT) {
        atomic_fetch_add(&T.fill_retries, 1); /* paged in, and out again: retry later */
        return;
    }
    if (rc || f.vector != VMMU_X86_FAULT_NONE) {
        note_error(__LINE__);
        return;
    }
    atomic_fetch_add_explicit(&T.lock_adds, 1, memory_order_relaxed);
    if (split)
        atomic_fetch_add_explicit(&T.split_adds, 1, memory_order_relaxed);
}

/* Make every pending asynchronous remap of @t done with one synchronous
 * shootdown. */
static void settle(struct vcpu_thread *t)
{
    if (!t->npend)
        return;
    uint64_t seqs[NVA];
    for (unsigned k = 0; k < t->npend; k++)
        seqs[k] = atomic_load(&T.va[t->pend[k]].seq);
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    if (t->npend == 1)
        f = (struct vmmu_flush){.type = VMMU_FLUSH_RANGE, .va = DATA_VA + t->pend[0] * 4096ull,
                                .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
    if (vmmu_shootdown_sync(T.vm, t->v, NULL, &f))
        note_error(__LINE__);
    for (unsigned k = 0; k < t->npend; k++)
        atomic_store_explicit(&T.va[t->pend[k]].done, seqs[k], memory_order_release);
    t->npend = 0;
}

static void remap(struct vcpu_thread *t)
{
    /* Editor e owns the virtual pages i with i % editors == e. */
    unsigned i = (unsigned)(rnd(&t->rng) % (NVA / T.editors)) * T.editors + t->index;
    if (i >= NVA)
        return;
    struct va_state *vs = &T.va[i];
    uint64_t k = atomic_load(&vs->seq) + 1;
    if (k - atomic_load(&vs->done) >= HIST / 2) {
        settle(t);
        if (k - atomic_load(&vs->done) >= HIST / 2)
            return;
    }
    unsigned page = (unsigned)(rnd(&t->rng) % DPAGES);
    atomic_store_explicit(&vs->hist[k % HIST], page, memory_order_release);
    atomic_store_explicit(&vs->seq, k, memory_order_release);
    uint64_t *pte = host_of(vs->pte_gpa);
    if (!pte) {
        note_error(__LINE__);
        return;
    }
    __atomic_store_n(pte, data_gpa(page) | P | RW | US | A | D, __ATOMIC_RELEASE);
    bool sync = rnd(&t->rng) & 1;
    if (sync) {
        struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + i * 4096ull,
                               .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
        if (vmmu_shootdown_sync(T.vm, t->v, NULL, &f))
            note_error(__LINE__);
        /* Earlier async remaps of i are covered too. */
        for (unsigned q = 0; q < t->npend; q++)
            if (t->pend[q] == i)
                t->pend[q--] = t->pend[--t->npend];
        atomic_store_explicit(&vs->done, k, memory_order_release);
        atomic_fetch_add_explicit(&T.remaps_sync, 1, memory_order_relaxed);
    } else {
        struct vmmu_flush f = {.type = VMMU_FLUSH_RANGE, .va = DATA_VA + i * 4096ull,
                               .npages = 1, .pcid = VMMU_FLUSH_ANY_PCID};
        if (vmmu_shootdown_async(T.vm, t->v, NULL, &f))
            note_error(__LINE__);
        bool known = false;
        for (unsigned q = 0; q < t->npend; q++)
            known |= t->pend[q] == i;
        if (!known)
            t->pend[t->npend++] = i;
        atomic_fetch_add_explicit(&T.remaps_async, 1, memory_order_relaxed);
    }
}

/* A foreach callback on a vCPU thread: a synchronous shootdown of
 * everything, under the map's lock. */
static int shoot_inside_foreach(const struct vmmu_region_info *info, void *arg)
{
    (void)info;
    struct vcpu_thread *t = arg;
    struct vmmu_flush f = {.type = VMMU_FLUSH_ALL};
    if (vmmu_shootdown_sync(T.vm, t->v, NULL, &f))
        note_error(__LINE__);
    return 1;
}

/* Host work on a vCPU thread, between instructions, as a guest's
 * hypercall would ask for it: a page-out (a balloon driver), a page-state
 * change that flushes every vCPU, or a shootdown from inside a foreach
 * callback.  Each holds one of vmmu's locks while it waits for the other
 * vCPUs, so none may park for a split lock until it releases it. */
static void host_work(struct vcpu_thread *t)
{
    struct vmmu_gpa_range r = {data_gpa((unsigned)(rnd(&t->rng) % DPAGES)), 4096};
    switch (rnd(&t->rng) % 3) {
    case 0:
        /* Not waiting for the lock online: its holder may wait for us. */
        if (pthread_mutex_trylock(&T.identity_lock) != 0)
            break;
        if (vmmu_pager_page_out(T.pager, &r, 1))
            note_error(__LINE__);
        pthread_mutex_unlock(&T.identity_lock);
        atomic_fetch_add(&T.vcpu_pageouts, 1);
        break;
    case 1:
        if (vmmu_page_state_change(T.vm, &r, 1, 0, VMMU_PAGE_DIRTY))
            note_error(__LINE__);
        atomic_fetch_add(&T.vcpu_state_changes, 1);
        break;
    default:
        if (vmmu_region_foreach(T.vm, shoot_inside_foreach, t) != 1)
            note_error(__LINE__);
        atomic_fetch_add(&T.vcpu_foreach_shootdowns, 1);
        break;
    }
}

static void *vcpu_main(void *arg)
{
    struct vcpu_thread *t = arg;
    vmmu_vcpu_online(t->v);
    bool editor = t->index < T.editors;
    while (!atomic_load_explicit(&T.stop, memory_order_relaxed)) {
        vmmu_vcpu_safepoint(t->v);
        for (int k = 0; k < 16; k++)
            one_access(t);
        if ((rnd(&t->rng) & 3) == 0)
            lock_add(t);
        if (editor && (rnd(&t->rng) & 7) == 0)
            remap(t);
        if (editor && (rnd(&t->rng) & 63) == 0)
            settle(t);
        if (editor && (rnd(&t->rng) & 63) == 0)
            host_work(t);
        if ((rnd(&t->rng) & 255) == 0) {
            /* halt for a moment: offline, not woken by requests */
            vmmu_vcpu_offline(t->v);
            sched_yield();
            vmmu_vcpu_online(t->v);
        }
    }
    settle(t);
    vmmu_vcpu_offline(t->v);
    return NULL;
}

/* ---- the host thread ------------------------------------------------------------------ */

static void host_step(uint64_t *s)
{
    unsigned op = (unsigned)(rnd(s) % 16);
    struct vmmu_gpa_range r[8];
    unsigned n = 1 + (unsigned)(rnd(s) % 8);
    if (op < 6) { /* page out random data pages, sometimes page tables */
        for (unsigned k = 0; k < n; k++) {
            unsigned pick = (unsigned)(rnd(s) & 7);
            uint64_t gpa = pick < 1   ? T.pt_pages[rnd(s) % T.npt]
                           : pick < 2 ? LOCK_GPA + (rnd(s) & 1) * 4096ull
                           : pick < 4 ? DMA_GPA + (rnd(s) % DMA_PAGES) * 4096ull
                                      : data_gpa((unsigned)(rnd(s) % DPAGES));
            r[k] = (struct vmmu_gpa_range){gpa, 4096};
        }
        if (vmmu_pager_page_out(T.pager, r, n))
            note_error(__LINE__);
        atomic_fetch_add(&T.pageouts, n);
    } else if (op < 9) {
        for (unsigned k = 0; k < n; k++)
            r[k] = (struct vmmu_gpa_range){data_gpa((unsigned)(rnd(s) % DPAGES)), 4096};
        if (vmmu_pager_page_in(T.pager, r, n))
            note_error(__LINE__);
        atomic_fetch_add(&T.pageins, n);
    } else if (op < 12) { /* balloon a page out and back */
        unsigned page = (unsigned)(rnd(s) % DPAGES);
        r[0] = (struct vmmu_gpa_range){data_gpa(page), 4096};
        atomic_fetch_add(&T.flux[page], 1);
        pthread_mutex_lock(&T.identity_lock);
        if (vmmu_pager_balloon_out(T.pager, r, 1) || vmmu_pager_balloon_in(T.pager, r, 1))
            note_error(__LINE__);
        write_identity(page);
        pthread_mutex_unlock(&T.identity_lock);
        atomic_fetch_sub(&T.flux[page], 1);
        atomic_fetch_add(&T.balloons, 1);
    } else if (op < 14) { /* remap a whole data region to fresh memory */
        unsigned reg = (unsigned)(rnd(s) % REGIONS);
        for (unsigned p = 0; p < REGION_PAGES; p++)
            atomic_fetch_add(&T.flux[reg * REGION_PAGES + p], 1);
        struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = DATA_GPA + reg * REGION_STRIDE,
                                     .size = REGION_PAGES * 4096, .name = "data"};
        pthread_mutex_lock(&T.identity_lock);
        if (vmmu_region_replace(T.vm, T.region_id[reg], &d, &T.region_id[reg]))
            note_error(__LINE__);
        for (unsigned p = 0; p < REGION_PAGES; p++)
            write_identity(reg * REGION_PAGES + p);
        pthread_mutex_unlock(&T.identity_lock);
        for (unsigned p = 0; p < REGION_PAGES; p++)
            atomic_fetch_sub(&T.flux[reg * REGION_PAGES + p], 1);
        atomic_fetch_add(&T.replaces, 1);
    } else {
        uint64_t out;
        if (vmmu_pager_balance(T.pager, &out))
            note_error(__LINE__);
        atomic_fetch_add(&T.balances, 1);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned verify_all(void)
{
    unsigned bad = 0;
    static uint64_t buf[WORDS];
    for (unsigned p = 0; p < DPAGES; p++) {
        uint64_t gpa = data_gpa(p);
        if (vmmu_gpa_read(T.vm, gpa, buf, 4096, 0, NULL) != 0) {
            bad++;
            continue;
        }
        for (unsigned w = 0; w < WORDS; w++) {
            if (buf[w] != pattern(gpa, w)) {
                bad++;
                if (!T.quiet)
                    fprintf(stderr, "page %#llx word %u: %#llx, want %#llx\n",
                            (unsigned long long)gpa, w, (unsigned long long)buf[w],
                            (unsigned long long)pattern(gpa, w));
                break;
            }
        }
    }
    return bad;
}

int main(int argc, char **argv)
{
    pthread_mutex_init(&T.identity_lock, NULL);
    T.vcpus = 3;
    T.editors = 2;
    T.seconds = 2;
    T.seed = 0x5eed;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vcpus") && i + 1 < argc)
            T.vcpus = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--editors") && i + 1 < argc)
            T.editors = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            T.seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            T.seed = strtoull(argv[++i], NULL, 0) | 1;
        else if (!strcmp(argv[i], "--quiet"))
            T.quiet = true;
        else {
            fprintf(stderr, "usage: %s [--vcpus N] [--editors E] [--seconds S] [--seed X] [--quiet]\n",
                    argv[0]);
            return 2;
        }
    }
    if (T.vcpus < 1 || T.vcpus > 64 || T.editors < 1 || T.editors > T.vcpus) {
        fprintf(stderr, "torture: need 1 <= editors <= vcpus <= 64\n");
        return 2;
    }
    setup();
    struct vcpu_thread *th = calloc(T.vcpus, sizeof(*th));
    for (unsigned i = 0; i < T.vcpus; i++) {
        th[i].index = i;
        th[i].rng = T.seed * (i + 7) | 1;
        struct vmmu_x86_regs regs = {0};
        regs.cr0 = 1 | (1u << 31);
        regs.cr4 = 1u << 5;
        regs.efer = (1u << 8) | (1u << 10);
        regs.cr3 = T.root;
        regs.rflags = 2;
        if (vmmu_vcpu_create(T.vm, NULL, &th[i].v) || vmmu_vcpu_set_state(th[i].v, &regs))
            return 2;
        pthread_create(&th[i].th, NULL, vcpu_main, &th[i]);
    }
    pthread_t dm_thread;
    pthread_create(&dm_thread, NULL, dm_main, (void *)(uintptr_t)(T.seed ^ 0xd3a));
    uint64_t hs = T.seed ^ 0xabcdef;
    double end = now_s() + T.seconds, next_report = now_s() + 60;
    while (now_s() < end) {
        host_step(&hs);
        if (!T.quiet && now_s() > next_report) {
            next_report += 60;
            fprintf(stderr, "torture: %lu reads, %lu stale, %lu errors so far\n",
                    atomic_load(&T.reads), atomic_load(&T.stale), atomic_load(&T.errors));
        }
    }
    atomic_store(&T.stop, 1);
    for (unsigned i = 0; i < T.vcpus; i++)
        pthread_join(th[i].th, NULL);
    pthread_join(dm_thread, NULL);
    struct vmmu_pager_stats ps;
    vmmu_pager_stats(T.pager, &ps);
    unsigned bad = verify_all();
    unsigned dma_lost = dma_verify();
    uint64_t counter = 0;
    if (vmmu_gpa_read(T.vm, LOCK_GPA + 4092, &counter, 8, 0, NULL))
        note_error(__LINE__);
    uint32_t lock_low = (uint32_t)counter, lock_high = (uint32_t)(counter >> 32);
    bool lock_ok = lock_low == 0 && lock_high == (uint32_t)atomic_load(&T.lock_adds);
    struct vmmu_dmc_stats ds;
    vmmu_dmc_stats(T.dmc, &ds);
    printf("torture: %u vCPUs (%u editing), %.0f s: %lu reads, %lu writes, %lu remaps "
           "(%lu sync, %lu async); host: %lu page-outs asked, %lu page-ins asked, %lu balloons, "
           "%lu region remaps, %lu balances; pager: %llu written, %llu zero, %llu paged in, "
           "%llu cancelled\n",
           T.vcpus, T.editors, T.seconds, atomic_load(&T.reads), atomic_load(&T.writes),
           atomic_load(&T.remaps_sync) + atomic_load(&T.remaps_async),
           atomic_load(&T.remaps_sync), atomic_load(&T.remaps_async), atomic_load(&T.pageouts),
           atomic_load(&T.pageins), atomic_load(&T.balloons), atomic_load(&T.replaces),
           atomic_load(&T.balances), (unsigned long long)ps.written,
           (unsigned long long)ps.zero_dropped, (unsigned long long)ps.paged_in,
           (unsigned long long)ps.cancelled);
    printf("torture: device model: %lu writes, %lu reads checked, %llu invalidations, "
           "%llu paged-out ranges asked back\n",
           atomic_load(&T.dma_writes), atomic_load(&T.dma_reads),
           (unsigned long long)ds.invalidations, (unsigned long long)ds.page_ins);
    printf("torture: stale accesses %lu, errors %lu, lost or corrupted pages %u, device-model "
           "words read wrong %lu, its pages lost or corrupted %u "
           "(fills that raced a page-out and were retried: %lu)\n",
           atomic_load(&T.stale), atomic_load(&T.errors), bad, atomic_load(&T.dma_bad), dma_lost,
           atomic_load(&T.fill_retries));
    printf("torture: from vCPU threads: %lu page-outs, %lu page-state changes, %lu shootdowns "
           "inside a foreach callback; page-in handler: %lu page-state changes (%lu refused "
           "while a device model waited)\n",
           atomic_load(&T.vcpu_pageouts), atomic_load(&T.vcpu_state_changes),
           atomic_load(&T.vcpu_foreach_shootdowns), atomic_load(&pagein_marks),
           atomic_load(&pagein_marks_refused));
    printf("torture: locked adds %lu (%lu split across pages), counter %u%s\n",
           atomic_load(&T.lock_adds), atomic_load(&T.split_adds), lock_high,
           lock_ok ? "" : " WRONG (adds lost, or bytes outside the counter changed)");
    for (unsigned i = 0; i < T.vcpus; i++)
        vmmu_vcpu_destroy(th[i].v);
    free(th);
    vmmu_dmc_close(T.dmc);
    vmmu_dm_destroy(T.dm);
    vmmu_pager_destroy(T.pager);
    vmmu_vm_destroy(T.vm);
    bool ok = !atomic_load(&T.stale) && !atomic_load(&T.errors) && !bad &&
              !atomic_load(&T.dma_bad) && !dma_lost && atomic_load(&T.reads) > 0 &&
              atomic_load(&T.dma_reads) > 0 && lock_ok && atomic_load(&T.split_adds) > 0;
    return ok ? 0 : 1;
}
