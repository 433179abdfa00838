/* The test machine: flat memory with fault injection, GDT/IDT/TSS. */
#include <stdlib.h>
#include <string.h>

#include "x86emu_test.h"

static uint64_t g_rand = 0x9e3779b97f4a7c15ull;

void tseed(uint64_t seed)
{
	g_rand = seed ? seed : 1;
}

uint64_t trand(void)
{
	g_rand ^= g_rand << 13;
	g_rand ^= g_rand >> 7;
	g_rand ^= g_rand << 17;
	return g_rand;
}

/*
 * Check every page an access touches before touching memory (as vmmu
 * does: fault before side effect), and build the #PF error code of SDM 4.7: P (bit 0) for a
 * protection fault, W/R (bit 1), U/S (bit 2), I/D (bit 4).
 */
static int check(struct tm *m, const struct x86emu_access *a, bool write,
		 struct x86emu_fault *f)
{
	bool user = a->kind != X86EMU_ACCESS_IMPLICIT_SUPERVISOR && a->cpl == 3;
	uint64_t ec = (write ? 2u : 0u) | (user ? 4u : 0u) |
		      (a->kind == X86EMU_ACCESS_FETCH ? 16u : 0u);

	for (uint64_t off = 0; off < a->size; off = ((a->va + off) | 4095) + 1 - a->va) {
		uint64_t va = a->va + off, pg = va / 4096;
		int kind = pg < TM_PAGES ? m->page[pg] : TM_PAGE_ABSENT;
		bool fault = false;
		if (kind == TM_PAGE_RETRY) {
			m->retry_rep_done = a->rep_done;
			return X86EMU_CB_RETRY;
		}
		if (kind == TM_PAGE_ABSENT) {
			fault = true;
		} else if ((write && kind == TM_PAGE_READONLY) || (user && !m->user[pg])) {
			fault = true;
			ec |= 1;
		}
		if (fault) {
			f->vector = X86EMU_EXC_PF;
			f->has_error_code = true;
			f->error_code = (uint32_t)ec;
			f->cr2 = va;
			return X86EMU_CB_FAULT;
		}
	}
	return X86EMU_CB_OK;
}

static int tm_read(void *opaque, const struct x86emu_access *a, void *out,
		   struct x86emu_fault *f)
{
	struct tm *m = opaque;
	int rc = check(m, a, false, f);

	if (rc != X86EMU_CB_OK)
		return rc;
	if (a->kind == X86EMU_ACCESS_FETCH)
		m->fetches++;
	else
		m->reads++;
	memcpy(out, m->mem + a->va, a->size);
	return X86EMU_CB_OK;
}

static int tm_write(void *opaque, const struct x86emu_access *a, const void *in,
		    struct x86emu_fault *f)
{
	struct tm *m = opaque;
	int rc = check(m, a, true, f);

	if (rc != X86EMU_CB_OK)
		return rc;
	if (m->write_retry_armed && m->write_retry_after-- == 0) {
		m->write_retry_armed = false;
		m->retry_rep_done = a->rep_done;
		return X86EMU_CB_RETRY;
	}
	m->writes++;
	memcpy(m->mem + a->va, in, a->size);
	return X86EMU_CB_OK;
}

static int tm_write_check(void *opaque, const struct x86emu_access *a, struct x86emu_fault *f)
{
	struct tm *m = opaque;
	int rc = check(m, a, true, f);

	if (rc == X86EMU_CB_OK)
		m->write_checks++;
	return rc;
}

static int tm_cmpxchg(void *opaque, const struct x86emu_access *a, const void *expected,
		      const void *desired, void *observed, struct x86emu_fault *f)
{
	struct tm *m = opaque;
	int rc = check(m, a, true, f);

	if (rc != X86EMU_CB_OK)
		return rc;
	m->cmpxchgs++;
	memcpy(observed, m->mem + a->va, a->size);
	if (memcmp(observed, expected, a->size) == 0)
		memcpy(m->mem + a->va, desired, a->size);
	return X86EMU_CB_OK;
}

static int tm_in(void *opaque, uint16_t port, unsigned size, uint32_t *v)
{
	struct tm *m = opaque;
	m->last_io_size = size;
	m->last_port = port;
	*v = m->in_value + m->io_ins * m->in_step;
	m->io_ins++;
	return X86EMU_CB_OK;
}

static int tm_out(void *opaque, uint16_t port, unsigned size, uint32_t v)
{
	struct tm *m = opaque;
	m->last_io_size = size;
	if (m->io_outs < 64)
		m->out_log[m->io_outs] = v;
	m->io_outs++;
	m->last_port = port;
	m->last_out = v;
	return X86EMU_CB_OK;
}

static int tm_cr_write(void *opaque, unsigned cr, uint64_t old, uint64_t v)
{
	struct tm *m = opaque;
	(void)old;
	m->cr_writes++;
	m->last_cr = cr;
	m->last_cr_value = v;
	return X86EMU_CB_OK;
}

static int tm_invlpg(void *opaque, uint64_t va)
{
	struct tm *m = opaque;
	m->invlpgs++;
	m->last_invlpg = va;
	return X86EMU_CB_OK;
}

void tm_wr(struct tm *m, uint64_t addr, unsigned size, uint64_t v)
{
	for (unsigned i = 0; i < size; i++)
		m->mem[addr + i] = (uint8_t)(v >> (8 * i));
}

uint64_t tm_rd(const struct tm *m, uint64_t addr, unsigned size)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)m->mem[addr + i] << (8 * i);
	return v;
}

void tm_load(struct tm *m, uint64_t addr, const void *bytes, size_t n)
{
	memcpy(m->mem + addr, bytes, n);
}

void tm_set_pages(struct tm *m, uint64_t addr, size_t len, enum tm_page kind)
{
	for (uint64_t pg = addr / 4096; pg <= (addr + len - 1) / 4096 && pg < TM_PAGES; pg++) {
		if (kind == TM_PAGE_USER)
			m->user[pg] = 1;
		else
			m->page[pg] = (uint8_t)kind;
	}
}

void tm_set_gate(struct tm *m, unsigned vector, unsigned type, unsigned dpl, unsigned ist)
{
	uint64_t target = tm_handler(vector);
	uint64_t lo = (target & 0xffff) | ((uint64_t)TM_SEL_KCODE << 16) | ((uint64_t)ist << 32) |
		      ((uint64_t)type << 40) | ((uint64_t)dpl << 45) | (1ull << 47) |
		      (((target >> 16) & 0xffff) << 48);
	tm_wr(m, TM_IDT + 16 * vector, 8, lo);
	tm_wr(m, TM_IDT + 16 * vector + 8, 8, target >> 32);
}

/* A flat code/data descriptor: base 0, limit 4G, G=1. */
static uint64_t seg_desc(bool code, unsigned dpl)
{
	uint64_t d = 0xffffull | (0xfull << 48) | (1ull << 55) | (1ull << 47) | (1ull << 44) |
		     ((uint64_t)dpl << 45);
	if (code)
		d |= (0xbull << 40) | (1ull << 53);	/* execute/read, accessed, L */
	else
		d |= (0x3ull << 40) | (1ull << 54);	/* read/write, accessed, B */
	return d;
}

void tm_init(struct tm *m)
{
	memset(m, 0, sizeof(*m));
	m->mem = calloc(1, TM_MEM_SIZE);
	memset(m->user, 1, sizeof(m->user));
	m->env = (struct x86emu_env){
		.opaque = m, .read = tm_read, .write = tm_write, .cmpxchg = tm_cmpxchg,
		.write_check = tm_write_check,
		.io_in = tm_in, .io_out = tm_out, .cr_write = tm_cr_write, .invlpg = tm_invlpg,
	};
	/* GDT: null, kernel code, kernel data, user data, user code, TSS (16 bytes). */
	tm_wr(m, TM_GDT + 0x08, 8, seg_desc(true, 0));
	tm_wr(m, TM_GDT + 0x10, 8, seg_desc(false, 0));
	tm_wr(m, TM_GDT + 0x18, 8, seg_desc(false, 3));
	tm_wr(m, TM_GDT + 0x20, 8, seg_desc(true, 3));
	uint64_t tss = TM_TSS, tss_limit = 0x67;
	uint64_t lo = tss_limit | ((tss & 0xffffff) << 16) | (0x9ull << 40) | (1ull << 47) |
		      (((tss >> 24) & 0xff) << 56);
	tm_wr(m, TM_GDT + 0x28, 8, lo);
	tm_wr(m, TM_GDT + 0x30, 8, tss >> 32);
	tm_wr(m, TM_TSS + 4, 8, TM_RSP0);
	tm_wr(m, TM_TSS + 36, 8, TM_IST1);
	tm_wr(m, TM_TSS + 0x66, 2, 0x68);	/* I/O map base past the limit: no bitmap */
	for (unsigned v = 0; v < 256; v++) {
		tm_set_gate(m, v, 0xe, 0, 0);
		m->mem[tm_handler(v)] = 0xf4;	/* hlt */
	}

	x86emu_cpu_init_long_mode(&m->cpu);
	m->cpu.gdtr = (struct x86emu_dtr){ .base = TM_GDT, .limit = 0x37 };
	m->cpu.idtr = (struct x86emu_dtr){ .base = TM_IDT, .limit = 256 * 16 - 1 };
	m->cpu.tr = (struct x86emu_segment){ .selector = TM_SEL_TSS, .base = TM_TSS,
					     .limit = 0x67, .attr = 0x8b };
	m->cpu.rip = TM_CODE;
	m->cpu.gpr[X86EMU_RSP] = TM_STACK;
}

void tm_fini(struct tm *m)
{
	free(m->mem);
	m->mem = NULL;
}

void tm_enter_user(struct tm *m, uint64_t rip, uint64_t rsp)
{
	struct x86emu_cpu *c = &m->cpu;
	c->cpl = 3;
	c->seg[X86EMU_CS].selector = TM_SEL_UCODE;
	c->seg[X86EMU_CS].attr |= 3u << 5;
	for (unsigned s = 0; s < 6; s++) {
		if (s == X86EMU_CS)
			continue;
		c->seg[s].selector = TM_SEL_UDATA;
		c->seg[s].attr |= 3u << 5;
	}
	c->rip = rip;
	c->gpr[X86EMU_RSP] = rsp;
}

int tm_step(struct tm *m, unsigned budget)
{
	return x86emu_step(&m->cpu, &m->env, budget);
}

struct tm g_m;

int tm_group_setup(void **state)
{
	(void)state;
	tm_init(&g_m);
	return 0;
}

int tm_group_teardown(void **state)
{
	(void)state;
	tm_fini(&g_m);
	return 0;
}

void tm_load_code(const uint8_t *start, const uint8_t *end)
{
	tm_fini(&g_m);
	tm_init(&g_m);
	tm_load(&g_m, TM_CODE, start, (size_t)(end - start));
}
