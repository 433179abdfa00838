/* SPDX-License-Identifier: MIT */
/*
 * vmmu-dmdev: an example device model in its own process, built only on
 * the client library (vmmu/dmclient.h).  It is a small DMA engine: the
 * guest writes source, destination, length and a command to its MMIO
 * registers, and the engine copies or fills guest memory through the
 * mapcache.
 *
 * Registers (8 bytes each, offsets from the MMIO range's start, repeated
 * every 4 KiB so that a second page can be mapped as a buffered alias; narrower
 * accesses read or write the low bytes of the register):
 *   0x00 SRC     source gpa                      r/w
 *   0x08 DST     destination gpa                 r/w
 *   0x10 LEN     bytes                           r/w
 *   0x18 CMD     1 copy, 2 fill (a write runs it); 3 fill, then stall for ever
 *                inside the request (a hung device model, for the tests)
 *   0x20 FILL    fill byte                       r/w
 *   0x28 STATUS  0 idle, 1 done, 2 failed        r
 *   0x30 ERROR   the VMMU_E* code of the failure r
 *   0x38 COUNT   commands completed              r
 *   0x40 ID      "vmmudma1"                      r
 *   0x48 BELL    buffered doorbell: writes add to it; reads return the sum
 * I/O ports (from the port range's start): +0 reads the low half of ID;
 * +4 is a 32-bit scratch register.
 *
 *   vmmu-dmdev (--fd N | --socket PATH) [--spin-us N] [--cache-bytes N]
 *              [--chunk-delay-us N] [--mmio-base GPA] [--port-base P]
 *
 * Numbers are decimal, or hexadecimal with 0x.  It exits 0 when the vm
 * hangs up, 1 on a protocol or set-up error or a bad argument.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmmu/dmclient.h"

#define DMDEV_ID 0x31616d64756d6d76ull /* "vmmudma1" */

enum { REG_SRC, REG_DST, REG_LEN, REG_CMD, REG_FILL, REG_STATUS, REG_ERROR, REG_COUNT, REG_ID,
       REG_BELL, NREGS };

struct dmdev {
    struct vmmu_dmc *c;
    uint64_t reg[NREGS];
    uint32_t scratch;
    unsigned chunk_delay_us;
};

static void pause_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Copy or fill in pieces that each lie in one mapcache bucket of both
 * source and destination, processing invalidations between pieces: a
 * transfer racing a balloon either finishes first or fails cleanly at the
 * first piece whose memory is gone. */
static int dma_run(struct dmdev *d, int fill)
{
    uint64_t src = d->reg[REG_SRC], dst = d->reg[REG_DST], len = d->reg[REG_LEN];
    const uint64_t piece = 4096;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < piece ? len - done : piece;
        uint64_t room = piece - ((dst + done) & (piece - 1));
        if (n > room)
            n = room;
        if (!fill) {
            room = piece - ((src + done) & (piece - 1));
            if (n > room)
                n = room;
        }
        int err = vmmu_dmc_process(d->c);
        if (err)
            return err;
        void *to;
        err = vmmu_dmc_map(d->c, dst + done, n, 1, &to);
        if (err)
            return err;
        if (fill) {
            memset(to, (int)(d->reg[REG_FILL] & 0xff), n);
        } else {
            void *from;
            err = vmmu_dmc_map(d->c, src + done, n, 0, &from);
            if (err) {
                vmmu_dmc_unmap(d->c, dst + done);
                return err;
            }
            memmove(to, from, n);
            vmmu_dmc_unmap(d->c, src + done);
        }
        vmmu_dmc_unmap(d->c, dst + done);
        done += n;
        if (d->chunk_delay_us)
            pause_us(d->chunk_delay_us);
    }
    return 0;
}

static uint64_t mmio(struct dmdev *d, const struct vmmu_dmc_req *r, uint64_t offset, int *fail)
{
    unsigned idx = (unsigned)(offset / 8), shift = (unsigned)(offset % 8) * 8;
    if (idx >= NREGS || shift + r->size * 8 > 64) {
        *fail = 1;
        return 0;
    }
    uint64_t mask = r->size == 8 ? ~0ull : ((1ull << (r->size * 8)) - 1) << shift;
    if (!r->write) {
        uint64_t v = idx == REG_ID ? DMDEV_ID : d->reg[idx];
        return (v & mask) >> shift;
    }
    uint64_t v = (d->reg[idx] & ~mask) | ((r->data << shift) & mask);
    switch (idx) {
    case REG_STATUS: case REG_ERROR: case REG_COUNT: case REG_ID:
        break; /* read-only */
    case REG_BELL:
        d->reg[REG_BELL] += r->data;
        break;
    case REG_CMD:
        d->reg[REG_CMD] = v;
        if (v == 3) {
            /* The fill tells the test the request is being served. */
            dma_run(d, 1);
            for (;;)
                pause();
        }
        if (v == 1 || v == 2) {
            int err = dma_run(d, v == 2);
            d->reg[REG_STATUS] = err ? 2 : 1;
            d->reg[REG_ERROR] = (uint64_t)(int64_t)err;
            if (!err)
                d->reg[REG_COUNT]++;
        }
        break;
    default:
        d->reg[idx] = v;
    }
    return 0;
}

static uint64_t pio(struct dmdev *d, const struct vmmu_dmc_req *r, uint64_t offset, int *fail)
{
    if (offset == 0 && !r->write)
        return DMDEV_ID & 0xffffffffu;
    if (offset == 4) {
        if (r->write)
            d->scratch = (uint32_t)r->data;
        return d->scratch;
    }
    *fail = 1;
    return 0;
}

/* Decimal, or hexadecimal with 0x: the whole string, no sign or blanks, at
 * most @p max.  Else say which option wanted a number. */
static int parse_num(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    int base = 10;
    const char *p = s, *digits = "0123456789";
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        digits = "0123456789abcdefABCDEF";
    }
    char *end = NULL;
    unsigned long long v = 0;
    errno = 0;
    if (*p && strchr(digits, *p))
        v = strtoull(p, &end, base);
    if (!end || errno || *end || v > max) {
        fprintf(stderr, "vmmu-dmdev: %s needs a number up to %llu, not '%s'\n", opt,
                (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: vmmu-dmdev (--fd N | --socket PATH) [--spin-us N] "
                    "[--cache-bytes N] [--chunk-delay-us N] [--mmio-base GPA] [--port-base P]\n");
    return 1;
}

int main(int argc, char **argv)
{
    int fd = -1;
    const char *path = NULL;
    struct vmmu_dmc_config cfg = {0};
    struct dmdev d = {0};
    uint64_t mmio_base = 0, port_base = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        uint64_t n = 0;
        if (!strcmp(a, "--socket")) {
            path = v;
            continue;
        }
        if (!strcmp(a, "--fd")) {
            if (parse_num(a, v, INT_MAX, &n))
                return 1;
            fd = (int)n;
        } else if (!strcmp(a, "--spin-us") || !strcmp(a, "--chunk-delay-us")) {
            if (parse_num(a, v, UINT_MAX, &n))
                return 1;
            if (a[2] == 's')
                cfg.spin_us = (unsigned)n;
            else
                d.chunk_delay_us = (unsigned)n;
        } else if (!strcmp(a, "--cache-bytes") || !strcmp(a, "--mmio-base")) {
            if (parse_num(a, v, UINT64_MAX, &n))
                return 1;
            if (a[2] == 'c')
                cfg.mapcache_bytes = n;
            else
                mmio_base = n;
        } else if (!strcmp(a, "--port-base")) {
            if (parse_num(a, v, UINT16_MAX, &n))
                return 1;
            port_base = n;
        } else {
            return usage();
        }
    }
    if ((fd < 0) == !path)
        return usage();
    int err = path ? vmmu_dmc_connect_path(path, &cfg, &d.c) : vmmu_dmc_connect_fd(fd, &cfg, &d.c);
    if (err) {
        fprintf(stderr, "vmmu-dmdev: connect: %s\n", vmmu_strerror(err));
        return 1;
    }
    for (;;) {
        struct vmmu_dmc_req r;
        err = vmmu_dmc_wait(d.c, -1, &r);
        if (err == VMMU_EDEAD)
            break;
        if (err) {
            fprintf(stderr, "vmmu-dmdev: wait: %s\n", vmmu_strerror(err));
            vmmu_dmc_close(d.c);
            return 1;
        }
        int fail = 0;
        uint64_t v = r.space == VMMU_DM_SPACE_MMIO
                         ? mmio(&d, &r, (r.addr - mmio_base) & 0xfff, &fail)
                         : pio(&d, &r, r.addr - port_base, &fail);
        if (!r.buffered)
            vmmu_dmc_complete(d.c, &r, v, fail);
    }
    vmmu_dmc_close(d.c);
    return 0;
}
