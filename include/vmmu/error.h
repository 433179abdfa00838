/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/error.h
 * @brief Error codes shared by every vmmu function.
 *
 * Public functions return 0 on success or one of the negative codes below.
 * Functions that return a result record carry the code in a field of that
 * record.  vmmu never aborts, exits or prints because of a caller's mistake:
 * a wrong argument is reported as VMMU_EINVAL (or a more specific code) and
 * leaves every object unchanged.
 */
#ifndef VMMU_ERROR_H
#define VMMU_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes.  Every code is negative; 0 means success. */
enum vmmu_error {
    VMMU_OK = 0,
    VMMU_EINVAL = -1,      /**< an argument is invalid (null pointer, bad flag, bad size) */
    VMMU_ENOMEM = -2,      /**< host memory or address space could not be allocated */
    VMMU_ERANGE = -3,      /**< an address lies beyond the vm's guest-physical width */
    VMMU_EALIGN = -4,      /**< an address or size is not page aligned where it must be */
    VMMU_EOVERLAP = -5,    /**< a new region overlaps an existing one */
    VMMU_ENOENT = -6,      /**< no region with that id or at that address */
    VMMU_EHOLE = -7,       /**< the guest-physical address is not backed by any region */
    VMMU_EROM = -8,        /**< a write hit a ROM region that reports writes */
    VMMU_EMMIO = -9,       /**< an MMIO callback reported failure */
    VMMU_EDEVICE = -10,    /**< the access needs a device model to complete it */
    VMMU_EPAGEDOUT = -11,  /**< the page is paged out and no pager brought it back */
    VMMU_ESYS = -12,       /**< a host system call failed (errno is preserved) */
    VMMU_EBUSY = -13,      /**< the object is in use and cannot be changed now */
    VMMU_ELIMIT = -14,     /**< a configured limit (region count, size) was reached */
    VMMU_EPENDING = -15,   /**< a device model will answer later: return to the vCPU loop and
                                re-execute the instruction when it has (the retry flow) */
    VMMU_EDEAD = -16,      /**< the device model serving the access died or was disconnected */
    VMMU_ETIMEDOUT = -17,  /**< a peer (device model, vCPU) did not answer in time */
    VMMU_EOVERFLOW = -18,  /**< a fixed-capacity record (latch, request queue) is full */
    VMMU_EPROTO = -19,     /**< a peer sent a malformed or out-of-protocol message */
};

/** Number of distinct codes, VMMU_OK included (for tests and tables). */
#define VMMU_ERROR_COUNT 20

/**
 * Name an error code.
 * @param err a value returned by a vmmu function (0 or a VMMU_E* code).
 * @return a static, human-readable string such as "address not backed by any
 *         region"; never NULL.  Unknown codes yield "unknown vmmu error".
 */
const char *vmmu_strerror(int err);

/**
 * The symbolic name of an error code ("VMMU_EHOLE"), for logs and tests.
 * @return a static string; "VMMU_E?" for unknown codes.
 */
const char *vmmu_error_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* VMMU_ERROR_H */
