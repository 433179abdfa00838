/* SPDX-License-Identifier: MIT */
/*
 * Grace periods.  vCPU threads (and any thread the user registers) are
 * liburcu QSBR readers: they announce quiescent states at safe points and
 * go offline when they block.  Other threads read the map in sections of
 * the bulletproof flavour, one per call (grace_host.c).  Whoever
 * unpublishes shared state waits here, for both, before freeing it.
 *
 * ThreadSanitizer does not see liburcu's own ordering (it is built from
 * compiler fences and futexes), so under TSan the reader side releases and
 * the grace period acquires one token, which is exactly the happens-before
 * that QSBR guarantees: everything a reader did before its quiescent state
 * happens before the freeing that follows the grace period.
 */
#include <pthread.h>
#include <urcu/urcu-qsbr.h>

#include "core/vm_internal.h"

#if defined(__SANITIZE_THREAD__)
#define VMMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMMU_TSAN 1
#endif
#endif

#ifdef VMMU_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char grace_token;
#define tsan_release() __tsan_release(&grace_token)
#define tsan_acquire() __tsan_acquire(&grace_token)
#else
#define tsan_release() ((void)0)
#define tsan_acquire() ((void)0)
#endif

/* The calling thread's reader: online now, and the read-side sections it
 * has ended (vmmu__reader_sections()). */
static _Thread_local bool reader_on __attribute__((tls_model("initial-exec")));
static _Thread_local bool reader_registered __attribute__((tls_model("initial-exec")));
static _Thread_local uint64_t reader_sections __attribute__((tls_model("initial-exec")));
_Thread_local bool vmmu__read_own __attribute__((tls_model("initial-exec")));

void vmmu__grace_period(void)
{
    /* Safe from a registered, online reader too: QSBR's synchronize takes
     * the caller offline for the wait, so it never waits for itself (and
     * its read-side section ends there).  A host thread's section
     * (grace_host.c) ends for the wait the same way. */
    bool held = vmmu__host_held;
    if (held)
        vmmu__host_read_unlock();
    reader_sections++;
    urcu_qsbr_synchronize_rcu();
    vmmu__host_synchronize();
    tsan_acquire();
    if (held)
        vmmu__host_read_lock();
}

void vmmu__reader_section_ended(void)
{
    reader_sections++;
    tsan_release();
}

void vmmu__reader_register(void)
{
    urcu_qsbr_register_thread();
    reader_registered = true;
    reader_on = true;
}

void vmmu__reader_unregister(void)
{
    reader_sections++;
    reader_on = false;
    reader_registered = false;
    tsan_release();
    urcu_qsbr_unregister_thread();
}

/* A thread that exits while registered would leave liburcu a dangling
 * registry entry: unregister it at exit. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void reader_exit(void *unused)
{
    (void)unused;
    if (reader_registered)
        vmmu__reader_unregister();
}

static void exit_key_make(void)
{
    (void)pthread_key_create(&exit_key, reader_exit);
}

void vmmu__reader_enter(void)
{
    if (reader_registered) {
        vmmu__reader_online();
        return;
    }
    pthread_once(&exit_once, exit_key_make);
    vmmu__reader_register(); /* registered threads start online */
    (void)pthread_setspecific(exit_key, (void *)1);
}

void vmmu__reader_quiescent(void)
{
    reader_sections++;
    tsan_release();
    urcu_qsbr_quiescent_state();
}

void vmmu__reader_offline(void)
{
    reader_sections++;
    reader_on = false;
    tsan_release();
    urcu_qsbr_thread_offline();
}

void vmmu__reader_online(void)
{
    urcu_qsbr_thread_online();
    reader_on = true;
}

bool vmmu__reader_is_online(void)
{
    return reader_on;
}

uint64_t vmmu__reader_sections(void)
{
    return reader_sections;
}

/* ---- Device-model page-ins (vmmu__dm_pagein_enter()) ---------------------- */

static _Thread_local unsigned dm_pagein __attribute__((tls_model("initial-exec")));

void vmmu__dm_pagein_enter(void)
{
    dm_pagein++;
}

void vmmu__dm_pagein_leave(void)
{
    dm_pagein--;
}

bool vmmu__in_dm_pagein(void)
{
    return dm_pagein != 0;
}

/* ---- Callbacks running on this thread (struct vmmu__callback) ------------- */

static _Thread_local struct vmmu__callback *callbacks __attribute__((tls_model("initial-exec")));

void vmmu__callback_enter(struct vmmu__callback *cb)
{
    cb->outer = callbacks;
    callbacks = cb;
}

void vmmu__callback_leave(struct vmmu__callback *cb)
{
    callbacks = cb->outer;
    if (cb->vcpu)
        vmmu__sync_callback_left(cb->vcpu);
}

bool vmmu__callback_uses(const void *obj)
{
    if (!obj)
        return false;
    for (const struct vmmu__callback *cb = callbacks; cb; cb = cb->outer)
        if (cb->vm == obj || cb->vcpu == obj || cb->dm == obj || cb->server == obj ||
            cb->hook == obj)
            return true;
    return false;
}
