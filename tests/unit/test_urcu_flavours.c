/* SPDX-License-Identifier: MIT */
/* An application that uses liburcu itself, beside vmmu.
 *
 * vmmu's vCPU threads are QSBR readers, and any other thread that reads
 * the map does so in a read-side section of liburcu's bulletproof flavour
 * for the length of the call (src/core/grace_host.c).  An application
 * thread registered with liburcu's default flavour (the membarrier one,
 * what a bare <urcu.h> gives) must be able to call vmmu, before and after
 * its own registration; and one that uses the bulletproof flavour itself
 * shares it with vmmu.  (With the membarrier flavour inside vmmu, the
 * first of these aborted in liburcu's double-registration check.) */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <urcu/urcu-memb.h>

#include "vmmu/vmmu.h"

static struct vmmu_vm *make_vm(void)
{
    struct vmmu_vm *vm;
    assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1048576};
    assert_int_equal(vmmu_region_add(vm, &ram, NULL), 0);
    return vm;
}

/* A region added and removed: the removal waits for a grace period. */
static void add_and_remove(struct vmmu_vm *vm)
{
    static const struct vmmu_mmio_ops no_ops;
    struct vmmu_region_desc d = {.type = VMMU_MEM_MMIO, .gpa = 1ull << 30, .size = 4096,
                                 .mmio = &no_ops};
    uint32_t id;
    assert_int_equal(vmmu_region_add(vm, &d, &id), 0);
    assert_int_equal(vmmu_region_remove(vm, id), 0);
}

/* @fn on a thread of its own over a fresh vm (it returns NULL when all
 * went well); then a removal on this thread. */
static void run_thread(void *(*fn)(void *))
{
    struct vmmu_vm *vm = make_vm();
    pthread_t t;
    void *rc;
    assert_int_equal(pthread_create(&t, NULL, fn, vm), 0);
    assert_int_equal(pthread_join(t, &rc), 0);
    assert_null(rc);
    add_and_remove(vm);
    vmmu_vm_destroy(vm);
}

static void *default_flavour_thread(void *arg)
{
    struct vmmu_vm *vm = arg;
    struct vmmu_p2m_entry e;
    /* vmmu first, then the application's registration, then vmmu again,
     * inside and outside the application's own read-side section. */
    if (vmmu_p2m_lookup(vm, 4096, &e) != 0 || e.type != VMMU_MEM_RAM)
        return (void *)1;
    urcu_memb_register_thread();
    urcu_memb_read_lock();
    int rc = vmmu_p2m_lookup(vm, 8192, &e);
    urcu_memb_read_unlock();
    if (rc != 0 || e.type != VMMU_MEM_RAM)
        return (void *)2;
    add_and_remove(vm); /* outside its section: may wait for grace periods */
    urcu_memb_synchronize_rcu();
    urcu_memb_unregister_thread();
    return NULL;
}

static void a_thread_of_liburcus_default_flavour_calls_vmmu_before_and_after_registering(
    void **state)
{
    (void)state;
    run_thread(default_flavour_thread);
}

/* The bulletproof flavour's own calls (their header's short names would
 * clash with the default flavour's, included above). */
void urcu_bp_register_thread(void);
void urcu_bp_read_lock(void);
void urcu_bp_read_unlock(void);
void urcu_bp_synchronize_rcu(void);

static void *bulletproof_thread(void *arg)
{
    struct vmmu_vm *vm = arg;
    struct vmmu_p2m_entry e;
    if (vmmu_p2m_lookup(vm, 4096, &e) != 0)
        return (void *)1;
    urcu_bp_register_thread(); /* already registered by vmmu: a no-op */
    urcu_bp_read_lock();
    int rc = vmmu_p2m_lookup(vm, 8192, &e); /* a section nested in the application's */
    urcu_bp_read_unlock();
    if (rc != 0 || e.type != VMMU_MEM_RAM)
        return (void *)2;
    add_and_remove(vm);
    urcu_bp_synchronize_rcu();
    return NULL;
}

static void a_thread_that_uses_the_bulletproof_flavour_itself_shares_it_with_vmmu(void **state)
{
    (void)state;
    run_thread(bulletproof_thread);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_thread_of_liburcus_default_flavour_calls_vmmu_before_and_after_registering),
        cmocka_unit_test(a_thread_that_uses_the_bulletproof_flavour_itself_shares_it_with_vmmu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
