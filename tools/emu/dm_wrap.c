/* SPDX-License-Identifier: MIT */
/*
 * Which vCPU makes a device-model access.
 *
 * The device-model layer (vmmu/dm.h) lets an access pend (VMMU_EPENDING,
 * the retry flow) only when it knows the accessing vCPU: host accesses
 * (vcpu_id -1) wait for the answer instead.  The instruction access layer
 * (vmmu/access.h) has no way yet to say which vCPU it serves, and hands the
 * P2M's device handler -1.  Until it does, the emulator stands between the
 * two: the link wraps vmmu_p2m_set_device_handler() (ld --wrap, see
 * CMakeLists.txt), so the handler the device-model layer installs is
 * called through the trampoline below, which fills in the id of the vCPU
 * whose thread makes the access.  Host threads (the loader, the pager)
 * keep -1.  One vm with a device handler per process, as in `vmmu run`.
 */
#include "vmmu_backend.h"

static _Thread_local int thread_vcpu = -1;
static vmmu_device_fn inner_fn;
static void *inner_opaque;

int __real_vmmu_p2m_set_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque);
int __wrap_vmmu_p2m_set_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque);

void vb_dm_set_thread_vcpu(int dm_id)
{
    thread_vcpu = dm_id;
}

static int trampoline(void *opaque, struct vmmu_device_req *req)
{
    (void)opaque;
    if (req->vcpu_id < 0)
        req->vcpu_id = thread_vcpu;
    return inner_fn(inner_opaque, req);
}

int __wrap_vmmu_p2m_set_device_handler(struct vmmu_vm *vm, vmmu_device_fn fn, void *opaque)
{
    if (!fn)
        return __real_vmmu_p2m_set_device_handler(vm, NULL, NULL);
    /* Published before the handler is, and never changed while it is installed. */
    inner_fn = fn;
    inner_opaque = opaque;
    return __real_vmmu_p2m_set_device_handler(vm, trampoline, NULL);
}
