/* SPDX-License-Identifier: MIT */
/*
 * An emulator's instructions on vmmu's access layer (vmmu/access.h).
 *
 * The guest has RAM, a UART (an MMIO region: callbacks), and a "sensor" in
 * a device-model range whose answers take time: the device handler says
 * VMMU_EPENDING the first time it sees a read, and answers it when the
 * instruction is executed again.  The program runs four instructions the
 * way an interpreter does (vmmu_insn_begin(), its accesses,
 * vmmu_insn_end()) and prints what happened:
 *
 *   1. MOV [uart], AL        three of them print "hi\n" through the callback;
 *   2. ADD RAX, [sensor] + [counter]: reads RAM, then the sensor, which
 *      pends; meanwhile another agent rewrites the RAM; the re-execution
 *      gets the first pass's RAM value back from the replay latch and the
 *      sensor's answer, so the instruction behaves as one execution;
 *   3. a 16-byte store that crosses into an unmapped page: #PF with CR2 at
 *      the second page, and the first page is left untouched;
 *   4. LOCK XADD on a guest variable.
 *
 * It exits 1 if anything differs from what x86 and access.h require.
 *
 *   cc insn_access.c $(pkg-config --cflags --libs vmmu) && ./a.out
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <vmmu/vmmu.h>

#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD_LOW 0x3000ull  /* the first GiB, 2 MiB pages, identity */
#define PD_HIGH 0x4000ull /* the fourth GiB: the devices */
#define PD_ONE 0x5000ull  /* the second GiB */
#define PT_HOLE 0x6000ull /* a page table with one page missing */
#define UART_GPA 0xfe000000ull
#define SENSOR_GPA 0xfe001000ull
#define COUNTER_VA 0x10000ull
#define HOLE_VA 0x40000000ull /* [1 GiB, 1 GiB + 4 KiB) mapped, the next page not */

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAILED: " __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                                  \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* ---- Devices -------------------------------------------------------------- */

struct uart {
    char line[64];
    size_t len;
};

static int uart_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    *value = 0x60; /* line status: transmitter empty */
    return 0;
}

static int uart_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct uart *u = opaque;
    (void)size;
    if (offset == 0 && u->len + 1 < sizeof(u->line)) {
        u->line[u->len++] = (char)value;
        putchar((int)value);
    }
    return 0;
}

/* A device model that needs time for each reading: the first request of
 * a read is "sent to the device" and pends; when the vCPU asks again with
 * the same access (its re-execution), the answer is there. */
struct sensor {
    int in_flight;  /* a read was asked for and not answered yet */
    uint64_t next;  /* the value the device produces */
    unsigned asked, answered;
};

static int sensor_handler(void *opaque, struct vmmu_device_req *req)
{
    struct sensor *s = opaque;
    if (req->write)
        return 0; /* this sensor ignores writes */
    if (!s->in_flight) {
        s->in_flight = 1;
        s->asked++;
        return VMMU_EPENDING;
    }
    s->in_flight = 0;
    s->answered++;
    req->data = s->next;
    return 0;
}

/* ---- Guest setup ---------------------------------------------------------- */

static void put64(struct vmmu_vm *vm, uint64_t gpa, uint64_t value)
{
    int err = vmmu_gpa_write(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "writing 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
}

static uint64_t get64(struct vmmu_vm *vm, uint64_t gpa)
{
    uint64_t value = 0;
    int err = vmmu_gpa_read(vm, gpa, &value, sizeof(value), 0, NULL);
    CHECK(err == 0, "reading 0x%" PRIx64 ": %s", gpa, vmmu_strerror(err));
    return value;
}

/* Identity-map the first GiB with 2 MiB pages and the devices' 2 MiB at
 * 0xfe000000 (uncached, as a guest maps MMIO); map one 4 KiB page at
 * HOLE_VA and leave the page after it unmapped. */
static void build_page_tables(struct vmmu_vm *vm)
{
    const uint64_t rw = VMMU_X86_PTE_P | VMMU_X86_PTE_RW;
    put64(vm, PML4, PDPT | rw);
    put64(vm, PDPT + 0 * 8, PD_LOW | rw);
    put64(vm, PDPT + 1 * 8, PD_ONE | rw);
    put64(vm, PDPT + 3 * 8, PD_HIGH | rw);
    for (uint64_t i = 0; i < 512; i++)
        put64(vm, PD_LOW + i * 8, (i << 21) | rw | VMMU_X86_PTE_PS);
    put64(vm, PD_HIGH + ((UART_GPA >> 21) & 511) * 8,
          (UART_GPA & ~0x1fffffull) | rw | VMMU_X86_PTE_PS | VMMU_X86_PTE_PCD);
    /* 1 GiB: PD entry 0 -> PT_HOLE, whose entry 0 maps the RAM page at
     * 0x200000 and entry 1 nothing. */
    put64(vm, PD_ONE, PT_HOLE | rw);
    put64(vm, PT_HOLE, 0x200000ull | rw);
}

int main(void)
{
    struct vmmu_vm *vm;
    struct vmmu_vcpu *vcpu;
    struct uart uart = {{0}, 0};
    struct sensor sensor = {0, 0, 0, 0};
    static const struct vmmu_mmio_ops uart_ops = {.read = uart_read, .write = uart_write};
    int err = vmmu_vm_create(NULL, &vm);
    if (err) {
        fprintf(stderr, "vmmu_vm_create: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_region_desc ram = {.type = VMMU_MEM_RAM, .gpa = 0, .size = 64ull << 20};
    struct vmmu_region_desc uart_r = {.type = VMMU_MEM_MMIO, .gpa = UART_GPA, .size = 4096,
                                      .mmio = &uart_ops, .opaque = &uart, .name = "uart"};
    struct vmmu_region_desc sensor_r = {.type = VMMU_MEM_DEVICE, .gpa = SENSOR_GPA, .size = 4096,
                                        .name = "sensor"};
    if ((err = vmmu_region_add(vm, &ram, NULL)) || (err = vmmu_region_add(vm, &uart_r, NULL)) ||
        (err = vmmu_region_add(vm, &sensor_r, NULL)) ||
        (err = vmmu_p2m_set_device_handler(vm, sensor_handler, &sensor)) ||
        (err = vmmu_vcpu_create(vm, NULL, &vcpu)) ||
        /* This thread runs the vCPU: its TLB is used while it is online. */
        (err = vmmu_vcpu_online(vcpu))) {
        fprintf(stderr, "setup: %s\n", vmmu_strerror(err));
        return 1;
    }
    build_page_tables(vm);
    struct vmmu_x86_regs regs = {
        .cr0 = VMMU_X86_CR0_PE | VMMU_X86_CR0_PG | VMMU_X86_CR0_WP | VMMU_X86_CR0_ET,
        .cr3 = PML4,
        .cr4 = VMMU_X86_CR4_PAE,
        .efer = VMMU_X86_EFER_LME | VMMU_X86_EFER_LMA | VMMU_X86_EFER_NXE,
        .rflags = 2,
    };
    if ((err = vmmu_vcpu_set_state(vcpu, &regs))) {
        fprintf(stderr, "vmmu_vcpu_set_state: %s\n", vmmu_strerror(err));
        return 1;
    }
    struct vmmu_x86_fault fault;

    /* 1. Three one-byte stores to the UART's data register, one
     *    instruction each.  MMIO goes through the region's callbacks. */
    printf("1. the guest writes to its UART: ");
    for (const char *c = "hi\n"; *c; c++) {
        vmmu_insn_begin(vcpu);
        err = vmmu_access_store(vcpu, UART_GPA, 1, 0, c, &fault);
        vmmu_insn_end(vcpu, err);
        CHECK(err == 0 && fault.vector == VMMU_X86_FAULT_NONE, "UART store: %s",
              vmmu_strerror(err));
    }
    CHECK(uart.len == 3 && memcmp(uart.line, "hi\n", 3) == 0, "the UART got the wrong bytes");

    /* 2. RAX = [counter] + [sensor], the way an interpreter runs it: the
     *    sensor read pends, the instruction is abandoned (no register
     *    written) and executed again once the device has answered. */
    put64(vm, COUNTER_VA, 100);
    sensor.next = 23;
    uint64_t rax = 0;
    unsigned passes = 0;
    for (;;) {
        uint64_t counter = 0, reading = 0;
        passes++;
        vmmu_insn_begin(vcpu);
        err = vmmu_access_load(vcpu, COUNTER_VA, 8, 0, &counter, &fault);
        if (!err && fault.vector == VMMU_X86_FAULT_NONE)
            err = vmmu_access_load(vcpu, SENSOR_GPA, 8, 0, &reading, &fault);
        vmmu_insn_end(vcpu, err);
        if (err == VMMU_EPENDING) {
            struct vmmu_latch_stats ls;
            vmmu_latch_stats(vcpu, &ls);
            printf("2. pass %u pended on the sensor (latch: %u data read(s) recorded)\n",
                   ls.pass, ls.events);
            /* Between the passes the world moves on: another vCPU or a
             * device rewrites the counter.  The instruction already read
             * it, so its re-execution must see 100, not 555. */
            put64(vm, COUNTER_VA, 555);
            continue;
        }
        CHECK(err == 0 && fault.vector == VMMU_X86_FAULT_NONE, "sensor instruction: %s",
              vmmu_strerror(err));
        rax = counter + reading; /* the instruction completes: now write registers */
        break;
    }
    printf("   pass %u completed: RAX = %" PRIu64 " (100 from RAM as the first pass read it"
           " + 23 from the sensor)\n",
           passes, rax);
    CHECK(passes == 2 && rax == 123, "expected 2 passes and 123");
    CHECK(sensor.asked == 1 && sensor.answered == 1, "the device saw %u requests and %u answers",
          sensor.asked, sensor.answered);

    /* 3. A 16-byte store at HOLE_VA + 4088: 8 bytes on the mapped page, 8
     *    on the unmapped one.  Every page is checked before anything is
     *    written, so the fault leaves the first page untouched. */
    uint8_t sixteen[16];
    memset(sixteen, 0xee, sizeof(sixteen));
    put64(vm, 0x200000ull + 4088, 0x1111);
    vmmu_insn_begin(vcpu);
    err = vmmu_access_store(vcpu, HOLE_VA + 4088, 16, 0, sixteen, &fault);
    vmmu_insn_end(vcpu, err);
    printf("3. store across into an unmapped page: vector %d, error code 0x%x, CR2 0x%" PRIx64
           "; first page still holds 0x%" PRIx64 "\n",
           fault.vector, fault.error_code, fault.cr2, get64(vm, 0x200000ull + 4088));
    CHECK(err == 0 && fault.vector == VMMU_X86_VEC_PF &&
              fault.error_code == VMMU_X86_PF_W && fault.cr2 == HOLE_VA + 4096,
          "expected #PF(W) at the second page");
    CHECK(get64(vm, 0x200000ull + 4088) == 0x1111, "the faulting store wrote the first page");

    /* 4. LOCK XADD [counter], 5: atomic against every other vCPU. */
    uint64_t old = 0;
    vmmu_insn_begin(vcpu);
    err = vmmu_access_rmw(vcpu, COUNTER_VA, 8, VMMU_RMW_ADD, 5, &old, 0, &fault);
    vmmu_insn_end(vcpu, err);
    printf("4. LOCK XADD: old %" PRIu64 ", now %" PRIu64 "\n", old, get64(vm, COUNTER_VA));
    CHECK(err == 0 && old == 555 && get64(vm, COUNTER_VA) == 560, "XADD went wrong");

    vmmu_vcpu_destroy(vcpu);
    vmmu_vm_destroy(vm);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
