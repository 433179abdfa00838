/* A device model built against libvmmu-dmclient alone (pkg-config
 * vmmu-dmclient): the client calls and the error names of vmmu/error.h,
 * which its header declares, link without libvmmu. */
#include <stdio.h>
#include <string.h>
#include <vmmu/dmclient.h>

int main(void)
{
    struct vmmu_dmc *c = NULL;
    int err = vmmu_dmc_connect_path("/nonexistent/vmmu.sock", NULL, &c);
    printf("connect: %s (%s)\n", vmmu_error_name(err), vmmu_strerror(err));
    return err == VMMU_ESYS && c == NULL && !strcmp(vmmu_error_name(err), "VMMU_ESYS") ? 0 : 1;
}
