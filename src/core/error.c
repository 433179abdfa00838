/* SPDX-License-Identifier: MIT */
/* Names for the error codes of vmmu/error.h. */
#include "vmmu/error.h"

struct error_text {
    const char *name;
    const char *text;
};

/* Indexed by -code.  Kept next to the enum's order; test_error checks that
 * every code in range has both strings. */
static const struct error_text error_table[VMMU_ERROR_COUNT] = {
    [0] = {"VMMU_OK", "success"},
    [-VMMU_EINVAL] = {"VMMU_EINVAL", "invalid argument"},
    [-VMMU_ENOMEM] = {"VMMU_ENOMEM", "out of host memory or address space"},
    [-VMMU_ERANGE] = {"VMMU_ERANGE", "address beyond the guest-physical width"},
    [-VMMU_EALIGN] = {"VMMU_EALIGN", "address or size not page aligned"},
    [-VMMU_EOVERLAP] = {"VMMU_EOVERLAP", "region overlaps an existing region"},
    [-VMMU_ENOENT] = {"VMMU_ENOENT", "no such region"},
    [-VMMU_EHOLE] = {"VMMU_EHOLE", "address not backed by any region"},
    [-VMMU_EROM] = {"VMMU_EROM", "write to read-only memory"},
    [-VMMU_EMMIO] = {"VMMU_EMMIO", "MMIO callback failed"},
    [-VMMU_EDEVICE] = {"VMMU_EDEVICE", "access needs a device model"},
    [-VMMU_EPAGEDOUT] = {"VMMU_EPAGEDOUT", "page is paged out"},
    [-VMMU_ESYS] = {"VMMU_ESYS", "host system call failed"},
    [-VMMU_EBUSY] = {"VMMU_EBUSY", "object busy"},
    [-VMMU_ELIMIT] = {"VMMU_ELIMIT", "configured limit reached"},
    [-VMMU_EPENDING] = {"VMMU_EPENDING", "device model answer pending: re-execute later"},
    [-VMMU_EDEAD] = {"VMMU_EDEAD", "device model died or disconnected"},
    [-VMMU_ETIMEDOUT] = {"VMMU_ETIMEDOUT", "peer did not answer in time"},
    [-VMMU_EOVERFLOW] = {"VMMU_EOVERFLOW", "fixed-capacity record is full"},
    [-VMMU_EPROTO] = {"VMMU_EPROTO", "malformed or out-of-protocol message"},
};

static const struct error_text *error_lookup(int err)
{
    if (err > 0 || err <= -VMMU_ERROR_COUNT)
        return 0;
    return &error_table[-err];
}

const char *vmmu_strerror(int err)
{
    const struct error_text *e = error_lookup(err);
    return e && e->text ? e->text : "unknown vmmu error";
}

const char *vmmu_error_name(int err)
{
    const struct error_text *e = error_lookup(err);
    return e && e->name ? e->name : "VMMU_E?";
}
