/* SPDX-License-Identifier: MIT */
/*
 * Read-side sections of host threads: a thread that is not an online vCPU
 * (or other QSBR reader) and calls something that reads the map (a
 * lookup, a walk, a guest-physical access, a page-state call) holds a
 * section of liburcu's "bulletproof" flavour for the call.  Its read side
 * is a thread-local counter and compiler barriers (liburcu uses the
 * membarrier system call on the grace-period side): about 8 ns for a lock
 * and an unlock, where going QSBR-online and offline again for each call
 * costs two full barriers and a wake-up check (about 80 ns).  The grace
 * period (grace.c) waits for both flavours.
 *
 * The bulletproof flavour registers a thread on its first section and
 * unregisters it when it exits, by itself, and registering again is
 * harmless: an application that uses that flavour too shares it with
 * vmmu, and one that uses liburcu's default (membarrier) flavour is not
 * touched at all.
 *
 * This file holds everything of that flavour: its names clash with the
 * QSBR flavour's, so the two never meet in one file.
 */
#include <urcu/urcu-bp.h>

#include "core/vm_internal.h"

_Thread_local bool vmmu__host_held __attribute__((tls_model("initial-exec")));

void vmmu__host_read_lock(void)
{
    urcu_bp_read_lock();
    vmmu__host_held = true;
}

void vmmu__host_read_unlock(void)
{
    vmmu__host_held = false;
    vmmu__reader_section_ended();
    urcu_bp_read_unlock();
}

void vmmu__host_synchronize(void)
{
    urcu_bp_synchronize_rcu();
}
