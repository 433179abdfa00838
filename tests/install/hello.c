/* A program built against an installed vmmu: one vm, one RAM region, a
 * round trip through guest-physical memory. */
#include <stdio.h>
#include <string.h>
#include <vmmu/vmmu.h>

int main(void)
{
    struct vmmu_vm *vm;
    int err = vmmu_vm_create(NULL, &vm);
    if (err) {
        fprintf(stderr, "vm: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 1 << 20};
    char buf[6] = {0};
    if ((err = vmmu_region_add(vm, &ram, NULL)) || (err = vmmu_gpa_write(vm, 0x1000, "hello", 6, 0, NULL)) ||
        (err = vmmu_gpa_read(vm, 0x1000, buf, 6, 0, NULL))) {
        fprintf(stderr, "vmmu: %s\n", vmmu_strerror(err));
        return 1;
    }
    printf("%s from vmmu %s\n", buf, vmmu_version());
    vmmu_vm_destroy(vm);
    return strcmp(buf, "hello") != 0;
}
