/* SPDX-License-Identifier: MIT */
/* Counting this process's open descriptors, for tests that check an error
 * path closed what it received or opened (include after cmocka.h). */
#ifndef VMMU_TEST_FDS_H
#define VMMU_TEST_FDS_H

#include <dirent.h>

/* Entries of /proc/self/fd: the open descriptors, plus the same constant
 * (".", "..", the directory's own descriptor) at every call, so two
 * counts compare. */
static inline unsigned open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#endif
