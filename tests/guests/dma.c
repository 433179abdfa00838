/* SPDX-License-Identifier: MIT */
/*
 * dma: drive the machine's DMA engine (`vmmu run --dma`: the device model
 * vmmu-dmdev in its own process, its registers at boot_info.mmio_base).
 * Every register access is served by the other process: the vCPU's access
 * pends, the vCPU returns to its loop, and the instruction is executed
 * again once the answer is in (the retry flow, with the replay latch).
 *
 * Checks: the ID register (64-bit and 32-bit reads); register read-back;
 * a fill and a copy of guest memory across page boundaries, with the bytes
 * around them untouched and the results seen at once by the CPU; the
 * command count; a DMA aimed outside RAM fails and says so; REP MOVSQ
 * from the register window into RAM and MOVSQ from RAM into a register
 * (one instruction touching both RAM and the device); REP INSD from a
 * port into registers, each port read once; every vCPU reading and
 * writing registers at the same time.
 */
#include "runtime.h"

#define REG_SRC 0x00
#define REG_DST 0x08
#define REG_LEN 0x10
#define REG_CMD 0x18
#define REG_FILL 0x20
#define REG_STATUS 0x28
#define REG_ERROR 0x30
#define REG_COUNT 0x38
#define REG_ID 0x40
#define DMA_ID 0x31616d64756d6d76ul /* "vmmudma1" */
#define CMD_COPY 1
#define CMD_FILL 2

/* The register window, mapped uncached in the program's window. */
#define REGS (RT_WINDOW + 0x500000)

/* Identity-mapped image memory: guest-physical address == this address. */
static uint8_t area_a[4 * PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t area_b[4 * PAGE_SIZE] __attribute__((aligned(4096)));

static volatile uint64_t *reg(unsigned off)
{
    return (volatile uint64_t *)(REGS + off);
}

static uint64_t run(unsigned cmd)
{
    *reg(REG_CMD) = cmd;
    return *reg(REG_STATUS);
}

static void fill_and_check(void)
{
    rt_memset(area_a, 0x11, sizeof(area_a));
    uint64_t off = 100, len = 2 * PAGE_SIZE + 1000;
    *reg(REG_DST) = (uint64_t)area_a + off;
    *reg(REG_LEN) = len;
    *reg(REG_FILL) = 0xa5;
    CHECK(*reg(REG_LEN) == len && *reg(REG_FILL) == 0xa5, "register read-back: len %lu fill 0x%lx",
          *reg(REG_LEN), *reg(REG_FILL));
    uint64_t st = run(CMD_FILL);
    CHECK(st == 1, "fill: status %lu error %ld", st, (long)*reg(REG_ERROR));
    for (uint64_t i = 0; i < sizeof(area_a); i++) {
        uint8_t want = i >= off && i < off + len ? 0xa5 : 0x11;
        CHECK(area_a[i] == want, "fill: byte %lu is 0x%x, want 0x%x", i, area_a[i], want);
    }
    rt_printf("fill: %lu bytes at page offset 0x%lx across 3 pages, neighbours untouched\n",
              len, off);
}

static void copy_and_check(void)
{
    for (uint64_t i = 0; i < sizeof(area_b); i++)
        area_b[i] = (uint8_t)(i * 7 + (i >> 12));
    rt_memset(area_a, 0, sizeof(area_a));
    uint64_t soff = 7, doff = 3, len = 3 * PAGE_SIZE + 333;
    *reg(REG_SRC) = (uint64_t)area_b + soff;
    *reg(REG_DST) = (uint64_t)area_a + doff;
    *reg(REG_LEN) = len;
    uint64_t st = run(CMD_COPY);
    CHECK(st == 1, "copy: status %lu error %ld", st, (long)*reg(REG_ERROR));
    for (uint64_t i = 0; i < sizeof(area_a); i++) {
        uint8_t want = i >= doff && i < doff + len ? area_b[i - doff + soff] : 0;
        CHECK(area_a[i] == want, "copy: byte %lu is 0x%x, want 0x%x", i, area_a[i], want);
    }
    rt_printf("copy: %lu bytes, source and destination at different page offsets\n", len);
}

static void bad_dma(void)
{
    uint64_t count = *reg(REG_COUNT);
    *reg(REG_DST) = rt_boot->ram_size + 16 * PAGE_SIZE; /* no RAM there */
    *reg(REG_LEN) = 64;
    uint64_t st = run(CMD_FILL);
    CHECK(st == 2, "a fill outside RAM: status %lu", st);
    CHECK(*reg(REG_ERROR) != 0, "a failed fill leaves ERROR 0");
    CHECK(*reg(REG_COUNT) == count, "a failed fill counted as done");
    rt_printf("fill outside RAM: status 2 (failed), error set, count unchanged\n");
}

/* One instruction, both sides: REP MOVSQ from the registers into RAM, and
 * MOVSQ from RAM into a register. */
static void string_moves(void)
{
    uint64_t out[9];
    *reg(REG_SRC) = 0x1111;
    *reg(REG_DST) = 0x2222;
    *reg(REG_LEN) = 0x3333;
    *reg(REG_FILL) = 0x44;
    void *si = (void *)reg(0), *di = out;
    uint64_t cx = 9;
    __asm__ volatile("cld; rep movsq" : "+S"(si), "+D"(di), "+c"(cx) : : "memory");
    CHECK(cx == 0, "rep movsq from the device: rcx %lu", cx);
    CHECK(out[0] == 0x1111 && out[1] == 0x2222 && out[2] == 0x3333 && out[4] == 0x44 &&
          out[8] == DMA_ID, "rep movsq from the device: %lx %lx %lx %lx %lx", out[0], out[1],
          out[2], out[4], out[8]);
    uint64_t v = 0xfeedface;
    si = &v;
    di = (void *)reg(REG_FILL);
    __asm__ volatile("movsq" : "+S"(si), "+D"(di) : : "memory");
    CHECK(*reg(REG_FILL) == 0xfeedface, "movsq into the device: 0x%lx", *reg(REG_FILL));
    rt_printf("rep movsq from 9 registers into RAM, movsq from RAM into a register: ok\n");
}

/*
 * REP INSD from the machine's ticket port straight into two registers:
 * each element's store pends on the device model and the instruction is
 * executed again, yet each element reads the port once (a ticket read
 * twice would leave a gap).
 */
static void port_into_device(void)
{
    uint32_t first = inl(EMU_PORT_TICKET);
    void *di = (void *)reg(REG_SRC);
    uint64_t cx = 4;
    __asm__ volatile("cld; rep insl" : "+D"(di), "+c"(cx) : "d"(EMU_PORT_TICKET) : "memory");
    uint32_t next = inl(EMU_PORT_TICKET);
    uint64_t src = *reg(REG_SRC), dst = *reg(REG_DST);
    CHECK(cx == 0 && di == (void *)reg(REG_LEN), "rep insd into the device: rcx %lu", cx);
    CHECK(src == ((uint64_t)(first + 2) << 32 | (first + 1)) &&
              dst == ((uint64_t)(first + 4) << 32 | (first + 3)) && next == first + 5,
          "rep insd into the device: ticket %u before, registers 0x%lx 0x%lx, %u after", first,
          src, dst, next);
    rt_printf("rep insd from a port into 2 registers: each port read once\n");
}

static volatile uint32_t others_failed;

static void hammer(unsigned index)
{
    /* Each vCPU has its own pending request; all read the same registers. */
    for (unsigned i = 0; i < 200; i++) {
        if (*reg(REG_ID) != DMA_ID || *(volatile uint32_t *)reg(REG_ID) != (uint32_t)DMA_ID)
            __atomic_fetch_add(&others_failed, 1, __ATOMIC_SEQ_CST);
    }
    (void)index;
    rt_barrier(rt_nr_vcpus);
}

int guest_main(void)
{
    rt_printf("dma: the DMA engine in its own process\n");
    CHECK(rt_boot->mmio_base == EMU_MMIO_BASE, "no device attached (run with --dma): 0x%lx",
          rt_boot->mmio_base);
    rt_map(REGS, rt_boot->mmio_base, PTE_W | PTE_PCD | PTE_PWT | PTE_NX);
    invlpg(REGS);

    uint64_t id = *reg(REG_ID);
    uint32_t id_low = *(volatile uint32_t *)reg(REG_ID);
    CHECK(id == DMA_ID && id_low == (uint32_t)DMA_ID, "ID register: 0x%lx / 0x%x", id, id_low);
    rt_printf("id: \"%c%c%c%c%c%c%c%c\"\n", (char)id, (char)(id >> 8), (char)(id >> 16),
              (char)(id >> 24), (char)(id >> 32), (char)(id >> 40), (char)(id >> 48),
              (char)(id >> 56));

    fill_and_check();
    copy_and_check();
    CHECK(*reg(REG_COUNT) == 2, "count after two commands: %lu", *reg(REG_COUNT));
    rt_printf("count: 2 commands done\n");
    bad_dma();
    string_moves();
    port_into_device();

    if (rt_nr_vcpus > 1)
        rt_start_others(hammer);
    hammer(0);
    CHECK(others_failed == 0, "%u wrong ID reads with every vCPU at the device", others_failed);
    rt_printf("every vCPU: 200 ID reads each, all right\n");
    rt_printf("dma: ok\n");
    return 0;
}
