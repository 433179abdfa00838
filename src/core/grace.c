/* SPDX-License-Identifier: MIT */
/*
 * Grace periods.  vCPU threads (and any thread the user registers) are
 * liburcu QSBR readers: they announce quiescent states at safe points and
 * go offline when they block.  Whoever unpublishes shared state waits here
 * before freeing it.  With no registered readers this returns at once.
 */
#include <urcu/urcu-qsbr.h>

#include "core/vm_internal.h"

void vmmu__grace_period(void)
{
    /* Safe from a registered, online reader too: QSBR's synchronize takes
     * the caller offline for the wait, so it never waits for itself. */
    urcu_qsbr_synchronize_rcu();
}
