/* SPDX-License-Identifier: MIT */
/*
 * Grace periods.  vCPU threads (and any thread the user registers) are
 * liburcu QSBR readers: they announce quiescent states at safe points and
 * go offline when they block.  Whoever unpublishes shared state waits here
 * before freeing it.  With no registered readers this returns at once.
 *
 * ThreadSanitizer does not see liburcu's own ordering (it is built from
 * compiler fences and futexes), so under TSan the reader side releases and
 * the grace period acquires one token, which is exactly the happens-before
 * that QSBR guarantees: everything a reader did before its quiescent state
 * happens before the freeing that follows the grace period.
 */
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

void vmmu__grace_period(void)
{
    /* Safe from a registered, online reader too: QSBR's synchronize takes
     * the caller offline for the wait, so it never waits for itself. */
    urcu_qsbr_synchronize_rcu();
    tsan_acquire();
}

void vmmu__reader_register(void)
{
    urcu_qsbr_register_thread();
}

void vmmu__reader_unregister(void)
{
    tsan_release();
    urcu_qsbr_unregister_thread();
}

void vmmu__reader_quiescent(void)
{
    tsan_release();
    urcu_qsbr_quiescent_state();
}

void vmmu__reader_offline(void)
{
    tsan_release();
    urcu_qsbr_thread_offline();
}

void vmmu__reader_online(void)
{
    urcu_qsbr_thread_online();
}
