/* SPDX-License-Identifier: MIT */
/*
 * Read-side sections of host threads: a thread that is not an online vCPU
 * (or other QSBR reader) and calls something that reads the map (a
 * lookup, a walk, a guest-physical access, a page-state call) holds a
 * section of liburcu's membarrier flavour for the call.  Its read side is
 * a thread-local counter and compiler barriers: a few instructions, where
 * going QSBR-online and offline again for each call costs two full
 * barriers and a wake-up check (about 80 ns a call on this project's
 * machines).  The grace period (grace.c) waits for both flavours.
 *
 * This file holds everything of that flavour: its names clash with the
 * QSBR flavour's, so the two never meet in one file.
 */
#include <pthread.h>
#include <urcu/urcu-memb.h>

#include "core/vm_internal.h"

_Thread_local bool vmmu__host_held __attribute__((tls_model("initial-exec")));
static _Thread_local bool host_registered __attribute__((tls_model("initial-exec")));

/* A registered thread that exits would leave liburcu a dangling registry
 * entry: unregister it at exit (never inside a section: every section
 * ends in the call that began it). */
static pthread_key_t host_key;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_exit(void *unused)
{
    (void)unused;
    if (host_registered) {
        urcu_memb_unregister_thread();
        host_registered = false;
    }
}

static void host_key_make(void)
{
    (void)pthread_key_create(&host_key, host_exit);
}

void vmmu__host_read_lock(void)
{
    if (!host_registered) {
        pthread_once(&host_once, host_key_make);
        urcu_memb_register_thread();
        host_registered = true;
        (void)pthread_setspecific(host_key, (void *)1);
    }
    urcu_memb_read_lock();
    vmmu__host_held = true;
}

void vmmu__host_read_unlock(void)
{
    vmmu__host_held = false;
    vmmu__reader_section_ended();
    urcu_memb_read_unlock();
}

void vmmu__host_synchronize(void)
{
    urcu_memb_synchronize_rcu();
}
