/* SPDX-License-Identifier: MIT */
/* A page coming back in while another thread removes its region.
 *
 * The pager's page-in runs on the thread that touched the page, offline
 * when that thread is a host thread inside vmmu_gpa_read() (the handler
 * may wait) and on a device model's page-in service thread.  The removal
 * must neither free the region under the copy (the copy would land in the
 * next region given the same host memory, or punch its page) nor leave the
 * page counted as out once the region is gone.  The pager's read of its
 * file is replaced by one that blocks or fails, so that the removal runs
 * while the page-in is inside it. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/vm_internal.h"
#include "sync/sync_internal.h"
#include "vmmu/pager.h"
#include "vmmu/vmmu.h"

#define RAM_GPA 0x100000ull
#define PAGE3 (RAM_GPA + 3 * 4096)

static ssize_t (*const real_pread)(int, void *, size_t, off_t) = pread;
static sem_t in_read, go_on;

/* Says it is inside, then waits for the test before reading. */
static ssize_t held_pread(int fd, void *buf, size_t n, off_t off)
{
    sem_post(&in_read);
    sem_wait(&go_on);
    return real_pread(fd, buf, n, off);
}

/* Says it is inside, then waits for the test and fails. */
static ssize_t failing_pread(int fd, void *buf, size_t n, off_t off)
{
    (void)fd;
    (void)buf;
    (void)n;
    (void)off;
    sem_post(&in_read);
    sem_wait(&go_on);
    errno = EIO;
    return -1;
}

struct fx {
    struct vmmu_vm *vm;
    struct vmmu_pager *pg;
    uint32_t id;
};

/* A 16-page RAM region whose page 3 (0x11 bytes) is paged out. */
static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct vmmu_vm_config vc = {.gpa_bits = 32};
    assert_int_equal(vmmu_vm_create(&vc, &f->vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = RAM_GPA, .size = 16 * 4096};
    assert_int_equal(vmmu_region_add(f->vm, &ram, &f->id), 0);
    static uint8_t page[4096];
    memset(page, 0x11, sizeof(page));
    assert_int_equal(vmmu_gpa_write(f->vm, PAGE3, page, 4096, 0, NULL), 0);
    assert_int_equal(vmmu_pager_create(f->vm, NULL, &f->pg), 0);
    struct vmmu_gpa_range r = {PAGE3, 4096};
    assert_int_equal(vmmu_pager_page_out(f->pg, &r, 1), 0);
    assert_int_equal(sem_init(&in_read, 0, 0), 0);
    assert_int_equal(sem_init(&go_on, 0, 0), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vmmu__pager_pread = real_pread;
    assert_int_equal(vmmu_pager_destroy(f->pg), 0);
    vmmu_vm_destroy(f->vm);
    sem_destroy(&in_read);
    sem_destroy(&go_on);
    free(f);
    return 0;
}

struct reader {
    struct vmmu_vm *vm;
    int rc;
    enum { HOST, SERVICE, ONLINE } as; /* host thread, page-in service, online reader */
};

static void *read_page3(void *arg)
{
    struct reader *rd = arg;
    uint8_t buf[64];
    if (rd->as != SERVICE) {
        /* An online reader is a vCPU thread's kind: its page-in runs
         * online, and the removal's grace period waits for the access. */
        if (rd->as == ONLINE)
            vmmu__reader_register();
        rd->rc = vmmu_gpa_read(rd->vm, PAGE3, buf, sizeof(buf), 0, NULL);
        if (rd->as == ONLINE)
            vmmu__reader_unregister();
        return NULL;
    }
    /* What dm/pagein.c does: an online reader that is no vCPU. */
    vmmu__reader_register();
    vmmu__dm_pagein_enter();
    rd->rc = vmmu__gpa_make_resident(rd->vm, PAGE3);
    vmmu__dm_pagein_leave();
    vmmu__reader_unregister();
    return NULL;
}

struct remover {
    struct vmmu_vm *vm;
    uint32_t id;
    int rc;
    atomic_bool done;
};

static void *remove_region(void *arg)
{
    struct remover *rm = arg;
    rm->rc = vmmu_region_remove(rm->vm, rm->id);
    atomic_store(&rm->done, true);
    return NULL;
}

/* Page 3 is read on a reader thread whose page-in stops inside the
 * pager's read, @fn; the region is removed meanwhile on another thread.
 * Whether the removal finished while the page-in was still inside. */
static bool remove_during_page_in(struct fx *f, ssize_t (*fn)(int, void *, size_t, off_t),
                                  int as, struct reader *rd, struct remover *rm)
{
    vmmu__pager_pread = fn;
    rd->vm = f->vm;
    rd->as = as;
    pthread_t tr, tm;
    assert_int_equal(pthread_create(&tr, NULL, read_page3, rd), 0);
    assert_int_equal(sem_wait(&in_read), 0);
    vmmu__pager_pread = real_pread;
    rm->vm = f->vm;
    rm->id = f->id;
    assert_int_equal(pthread_create(&tm, NULL, remove_region, rm), 0);
    usleep(200000);
    bool early = atomic_load(&rm->done);
    assert_int_equal(sem_post(&go_on), 0);
    assert_int_equal(pthread_join(tr, NULL), 0);
    assert_int_equal(pthread_join(tm, NULL), 0);
    assert_int_equal(rm->rc, 0);
    return early;
}

/* The page is counted out no more, and the file keeps nothing of it: a
 * page of a new region paged out afterwards is the only page out and
 * takes the one slot. */
static void assert_nothing_left_out(struct fx *f)
{
    struct vmmu_pager_stats st;
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 0);
    struct vmmu_region_desc ram2 = {.type = VMMU_MEM_RAM, .gpa = 0x200000, .size = 4096};
    assert_int_equal(vmmu_region_add(f->vm, &ram2, NULL), 0);
    uint64_t v = 5;
    assert_int_equal(vmmu_gpa_write(f->vm, 0x200000, &v, 8, 0, NULL), 0);
    struct vmmu_gpa_range r2 = {0x200000, 4096};
    assert_int_equal(vmmu_pager_page_out(f->pg, &r2, 1), 0);
    assert_int_equal(vmmu_pager_stats(f->pg, &st), 0);
    assert_int_equal(st.out, 1);
    assert_int_equal(st.file_slots, 1);
}

/* A host thread's page-in holds up the removal until its copy is done,
 * and the region added at the same place afterwards gets none of it. */
static void a_host_threads_page_in_holds_up_the_removal_of_its_region(void **state)
{
    struct fx *f = *state;
    struct reader rd = {0};
    struct remover rm = {0};
    assert_false(remove_during_page_in(f, held_pread, HOST, &rd, &rm));
    /* The read finished before the removal, or found the page gone. */
    assert_true(rd.rc == 0 || rd.rc == VMMU_EHOLE);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = RAM_GPA, .size = 16 * 4096};
    assert_int_equal(vmmu_region_add(f->vm, &ram, NULL), 0);
    uint8_t got[4096], zeros[4096] = {0};
    assert_int_equal(vmmu_gpa_read(f->vm, PAGE3, got, 4096, 0, NULL), 0);
    assert_memory_equal(got, zeros, 4096);
    assert_nothing_left_out(f);
}

/* A host thread's page-in whose read fails while the region goes: no page
 * of the region added afterwards is punched, and nothing stays counted. */
static void a_failed_host_page_in_during_the_removal_leaves_nothing_behind(void **state)
{
    struct fx *f = *state;
    struct reader rd = {0};
    struct remover rm = {0};
    assert_false(remove_during_page_in(f, failing_pread, HOST, &rd, &rm));
    assert_int_not_equal(rd.rc, 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = RAM_GPA, .size = 16 * 4096};
    assert_int_equal(vmmu_region_add(f->vm, &ram, NULL), 0);
    uint8_t page[4096], got[4096];
    memset(page, 0xee, sizeof(page));
    assert_int_equal(vmmu_gpa_write(f->vm, PAGE3, page, 4096, 0, NULL), 0);
    assert_int_equal(vmmu_gpa_read(f->vm, PAGE3, got, 4096, 0, NULL), 0);
    assert_memory_equal(got, page, 4096);
    assert_nothing_left_out(f);
}

/* The same on a device model's page-in service thread. */
static void a_failed_service_page_in_during_the_removal_leaves_nothing_behind(void **state)
{
    struct fx *f = *state;
    struct reader rd = {0};
    struct remover rm = {0};
    (void)remove_during_page_in(f, failing_pread, SERVICE, &rd, &rm);
    assert_nothing_left_out(f);
}

/* On a thread that stays online through its page-in (a vCPU's), an
 * access to a page whose region went away meanwhile sees the map as it is
 * then: a hole. */
static void an_online_readers_access_to_a_region_removed_during_its_page_in_finds_a_hole(
    void **state)
{
    struct fx *f = *state;
    struct reader rd = {0};
    struct remover rm = {0};
    assert_false(remove_during_page_in(f, held_pread, ONLINE, &rd, &rm));
    assert_int_equal(rd.rc, VMMU_EHOLE);
    assert_nothing_left_out(f);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_host_threads_page_in_holds_up_the_removal_of_its_region),
        T(a_failed_host_page_in_during_the_removal_leaves_nothing_behind),
        T(a_failed_service_page_in_during_the_removal_leaves_nothing_behind),
        T(an_online_readers_access_to_a_region_removed_during_its_page_in_finds_a_hole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
