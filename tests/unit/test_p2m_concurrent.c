/* Lock-free readers against a changing map.  Reader threads (registered
 * QSBR readers, as vCPUs will be) look up and read guest RAM while a writer
 * adds, tags and removes regions.  Every page carries the id of the region
 * it belongs to; a reader that reached freed or reused memory through a
 * stale lookup would read a wrong id (or crash on an unmapped page). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/vm_internal.h"
#include "vmmu/vmmu.h"

enum { SLOTS = 64, PAGES = 4, READERS = 2, ROUNDS = 2000 };
#define SLOT_GPA(i) ((uint64_t)(i) << 21) /* 2 MiB apart, regions 16 KiB long */

struct shared {
    struct vmmu_vm *vm;
    atomic_int stop;
    atomic_ulong reads_ok, wrong;
};

static void *reader(void *arg)
{
    struct shared *sh = arg;
    vmmu__reader_register();
    unsigned seed = 12345;
    while (!atomic_load(&sh->stop)) {
        seed = seed * 1103515245 + 12345;
        unsigned slot = (seed >> 8) % SLOTS, page = (seed >> 20) % PAGES;
        uint64_t gpa = SLOT_GPA(slot) + page * 4096;
        struct vmmu_p2m_entry e;
        if (vmmu_p2m_lookup(sh->vm, gpa, &e) != 0)
            atomic_fetch_add(&sh->wrong, 1);
        else if (e.type == VMMU_MEM_RAM) {
            /* The tag is written after the region is published: 0 or the
             * region's own id are both fine, anything else is not. */
            uint64_t tag = atomic_load_explicit((_Atomic uint64_t *)e.hva, memory_order_relaxed);
            if (tag != 0 && tag != e.region_id)
                atomic_fetch_add(&sh->wrong, 1);
            else
                atomic_fetch_add_explicit(&sh->reads_ok, 1, memory_order_relaxed);
        } else if (e.type != VMMU_MEM_HOLE) {
            atomic_fetch_add(&sh->wrong, 1);
        }
        vmmu__reader_quiescent();
    }
    vmmu__reader_unregister();
    return NULL;
}

static void readers_never_see_freed_or_foreign_memory_while_regions_change(void **state)
{
    (void)state;
    struct shared sh = {0};
    assert_int_equal(vmmu_vm_create(NULL, &sh.vm), 0);
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &sh), 0);

    uint32_t ids[SLOTS] = {0};
    unsigned seed = 777;
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 1103515245 + 12345;
        unsigned slot = (seed >> 8) % SLOTS;
        if (ids[slot]) {
            assert_int_equal(vmmu_region_remove(sh.vm, ids[slot]), 0);
            ids[slot] = 0;
        } else {
            struct vmmu_region_desc d = {.type = VMMU_MEM_RAM, .gpa = SLOT_GPA(slot),
                                         .size = PAGES * 4096};
            assert_int_equal(vmmu_region_add(sh.vm, &d, &ids[slot]), 0);
            for (int p = 0; p < PAGES; p++) {
                struct vmmu_p2m_entry e;
                assert_int_equal(vmmu_p2m_lookup(sh.vm, d.gpa + p * 4096, &e), 0);
                atomic_store_explicit((_Atomic uint64_t *)e.hva, ids[slot], memory_order_relaxed);
            }
        }
    }
    atomic_store(&sh.stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&sh.wrong), 0);
    assert_true(atomic_load(&sh.reads_ok) > 0);
    vmmu_vm_destroy(sh.vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(readers_never_see_freed_or_foreign_memory_while_regions_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
