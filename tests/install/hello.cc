// A C++ program built against an installed vmmu: every public header
// compiles as C++ (the static inline hit path included), and the TLB
// translates a guest address (paging off: guest-virtual is guest-physical)
// to the same bytes guest-physical memory holds.
#include <cstdio>
#include <cstring>

#include <vmmu/dmclient.h>
#include <vmmu/vmmu.h>

int main()
{
    vmmu_vm *vm = nullptr;
    vmmu_vcpu *vcpu = nullptr;
    vmmu_region_desc ram = {};
    ram.type = VMMU_MEM_RAM;
    ram.size = 1 << 20;
    int err = vmmu_vm_create(nullptr, &vm);
    if (!err)
        err = vmmu_region_add(vm, &ram, nullptr);
    if (!err)
        err = vmmu_gpa_write(vm, 0x2000, "c++", 4, 0, nullptr);
    if (!err)
        err = vmmu_vcpu_create(vm, nullptr, &vcpu);
    if (err) {
        std::fprintf(stderr, "vmmu: %s\n", vmmu_strerror(err));
        return 1;
    }
    // The first access fills the entry, the second hits inline.
    vmmu_tlb_result res = {};
    void *first = vmmu_tlb_translate(vcpu, 0x2000, 4, 0, &res);
    const void *again = vmmu_tlb_lookup_read(vcpu, 0x2000, 4);
    char buf[4] = {};
    if (first)
        vmmu_guest_load(buf, first, 4);
    int ok = first && again == first && std::strcmp(buf, "c++") == 0;
    std::printf("hello from %s (%s)\n", buf, ok ? "translated" : "not translated");
    vmmu_vcpu_destroy(vcpu);
    vmmu_vm_destroy(vm);
    return ok ? 0 : 1;
}
