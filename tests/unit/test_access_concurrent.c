/* SPDX-License-Identifier: MIT */
/* Access with threads: locked adds from two vCPUs never lose an update
 * (aligned, and misaligned across two 8-byte words), and the retry flow
 * end to end: a device model answers later from another thread while a
 * third thread rewrites the guest's page tables and data between the
 * instruction's two passes. */
#include <pthread.h>

#include "test_access_env.h"

#define DATA(n) (8 * MiB + (uint64_t)(n) * 4096)
static const uint64_t VA = 0x0000400000100000ull;
static const uint64_t VDEV = 0x0000400000200000ull;
#define ADDS 20000u

struct adder {
    struct vmmu_vm *vm;
    uint64_t cr3;
    uint64_t offset;
    unsigned size;
    int failures;
};

static void *add_thread(void *arg)
{
    struct adder *a = arg;
    struct vmmu_vcpu *v;
    if (vmmu_vcpu_create(a->vm, NULL, &v)) {
        a->failures++;
        return NULL;
    }
    struct vmmu_x86_regs r = regs_4level(a->cr3);
    if (vmmu_vcpu_set_state(v, &r))
        a->failures++;
    for (unsigned i = 0; i < ADDS; i++) {
        uint64_t old;
        struct vmmu_x86_fault f;
        if (vmmu_access_rmw(v, VA + a->offset, a->size, VMMU_RMW_ADD, 1, &old, 0, &f) ||
            f.vector != VMMU_X86_FAULT_NONE)
            a->failures++;
    }
    vmmu_vcpu_destroy(v);
    return NULL;
}

static void two_vcpus_locked_adds_lose_no_update(uint64_t offset, unsigned size)
{
    struct acc_env e;
    acc_env_init(&e);
    amap(&e, VA, DATA(0), PTE_RW);
    struct adder a[2] = {{e.t.env.vm, e.root, offset, size, 0}, {e.t.env.vm, e.root, offset, size, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, add_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(a[0].failures + a[1].failures, 0);
    uint64_t total = 0;
    memcpy(&total, e.t.env.mem + DATA(0) + offset, size);
    assert_int_equal(total, 2 * ADDS);
    acc_env_fini(&e);
}

static void two_threads_locked_add_aligned_loses_no_update(void **state)
{
    (void)state;
    two_vcpus_locked_adds_lose_no_update(64, 8);
}

static void two_threads_locked_add_straddling_words_loses_no_update(void **state)
{
    (void)state;
    two_vcpus_locked_adds_lose_no_update(70, 4); /* bytes 70..73 straddle 64..71 / 72..79 */
}

/* ---- The retry flow ---------------------------------------------------------- */

struct retry {
    struct acc_env e;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool request_posted; /* the vCPU's device access is waiting */
    bool answered;       /* the device thread has the value ready */
    bool rewritten;      /* the rewriter has changed tables and data */
    uint64_t answer;
    unsigned device_calls;
};

static int device(void *opaque, struct vmmu_device_req *req)
{
    struct retry *r = opaque;
    pthread_mutex_lock(&r->lock);
    r->device_calls++;
    int rc = VMMU_EPENDING;
    if (r->answered) {
        req->data = r->answer;
        rc = 0;
    } else {
        r->request_posted = true;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void wait_for(struct retry *r, bool *flag)
{
    pthread_mutex_lock(&r->lock);
    while (!*flag)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

static void *device_thread(void *arg)
{
    struct retry *r = arg;
    wait_for(r, &r->request_posted);
    pthread_mutex_lock(&r->lock);
    r->answer = 0xfeed;
    r->answered = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void *rewriter_thread(void *arg)
{
    struct retry *r = arg;
    wait_for(r, &r->request_posted);
    pthread_mutex_lock(&r->lock);
    /* Between the passes: the guest remaps the operand's page elsewhere
     * and rewrites the old page's contents. */
    amap(&r->e, VA, DATA(9), PTE_RW);
    put64(&r->e.t.env, DATA(9), 0x9999);
    put64(&r->e.t.env, DATA(0), 0x2222);
    r->rewritten = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* "ADD [VA], [VDEV]"-like instruction: read the RAM operand, read the device,
 * write the sum back to the RAM operand. */
static int instruction(struct retry *r, uint64_t *ram_seen)
{
    struct vmmu_vcpu *v = r->e.t.vcpu;
    struct vmmu_x86_fault f;
    uint64_t a = 0, b = 0;
    assert_int_equal(vmmu_insn_begin(v), 0);
    int rc = vmmu_access_load(v, VA, 8, 0, &a, &f);
    if (rc == 0)
        rc = vmmu_access_load(v, VDEV, 8, 0, &b, &f);
    if (rc == 0) {
        uint64_t sum = a + b;
        rc = vmmu_access_store(v, VA, 8, 0, &sum, &f);
    }
    assert_int_equal(f.vector, VMMU_X86_FAULT_NONE);
    *ram_seen = a;
    assert_int_equal(vmmu_insn_end(v, rc), 0);
    return rc;
}

static void device_answers_later_while_another_thread_rewrites_tables_and_data(void **state)
{
    (void)state;
    struct retry *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    acc_env_init(&r->e);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    struct vmmu_region_desc d = {.type = VMMU_MEM_DEVICE, .gpa = DEV_GPA, .size = 4096};
    assert_int_equal(vmmu_region_add(r->e.t.env.vm, &d, NULL), 0);
    assert_int_equal(vmmu_p2m_set_device_handler(r->e.t.env.vm, device, r), 0);
    amap(&r->e, VA, DATA(0), PTE_RW);
    amap(&r->e, VDEV, DEV_GPA, PTE_RW);
    put64(&r->e.t.env, DATA(0), 0x1000);

    pthread_t dev, rew;
    assert_int_equal(pthread_create(&dev, NULL, device_thread, r), 0);
    assert_int_equal(pthread_create(&rew, NULL, rewriter_thread, r), 0);

    uint64_t seen;
    assert_int_equal(instruction(r, &seen), VMMU_EPENDING);
    assert_int_equal(seen, 0x1000);
    /* The vCPU loop: wait for the answer, then re-execute. */
    wait_for(r, &r->answered);
    wait_for(r, &r->rewritten);
    pthread_join(dev, NULL);
    pthread_join(rew, NULL);
    /* The guest flushed after remapping; the TLB must not matter. */
    assert_int_equal(vmmu_vcpu_tlb_flush_all(r->e.t.vcpu), 0);
    assert_int_equal(instruction(r, &seen), 0);
    /* The second pass saw the first pass's operand and translation. */
    assert_int_equal(seen, 0x1000);
    assert_int_equal(get64(&r->e.t.env, DATA(0)), 0x1000 + 0xfeed);
    assert_int_equal(get64(&r->e.t.env, DATA(9)), 0x9999);
    assert_int_equal(r->device_calls, 2);
    /* The next instruction uses the new mapping. */
    uint64_t now;
    struct vmmu_x86_fault f;
    assert_int_equal(vmmu_access_load(r->e.t.vcpu, VA, 8, 0, &now, &f), 0);
    assert_int_equal(now, 0x9999);

    acc_env_fini(&r->e);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_threads_locked_add_aligned_loses_no_update),
        cmocka_unit_test(two_threads_locked_add_straddling_words_loses_no_update),
        cmocka_unit_test(device_answers_later_while_another_thread_rewrites_tables_and_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
