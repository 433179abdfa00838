/* x86 paging registers: writes validate as the CPU does and report the
 * fault it raises, leaving the state unchanged; PAE PDPTEs are loaded (and
 * checked) exactly when the SDM says; whole-state loads refuse impossible
 * states; CPU models are validated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "p2m/p2m_internal.h"
#include "x86_env.h"

static int setup(void **state)
{
    struct x86_env *env = calloc(1, sizeof(*env));
    if (!env || env_init(env, 256 * KiB, NULL))
        return -1;
    *state = env;
    return 0;
}

static int teardown(void **state)
{
    struct x86_env *env = *state;
    env_fini(env);
    free(env);
    return 0;
}

static struct vmmu_x86_fault fault;

/* The vector a setter raised (VMMU_X86_FAULT_NONE if none), given the
 * setter's return value; the setter must have evaluated the write. */
static int vec_of(int rc)
{
    assert_int_equal(rc, 0);
    return fault.vector;
}

static void enter_long_mode(struct x86_env *env)
{
    struct vmmu_x86_regs r = regs_4level(env_page(env));
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
}

/* ---- Configuration and reset ---------------------------------------------- */

static void init_resets_to_paging_off_with_architectural_cr0(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(env->pg.cr0, 0x60000010ull);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
    assert_int_equal(env->pg.cpu.maxphyaddr, VMMU_X86_MAXPHYADDR_DEFAULT);
}

static void init_refuses_impossible_cpu_models(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging pg;
    struct vmmu_x86_cpu bad_phys = {.features = VMMU_X86_FEAT_ALL, .maxphyaddr = 53};
    struct vmmu_x86_cpu bad_feat = {.features = 1u << 30};
    struct vmmu_x86_cpu la57_no_lm = {.features = VMMU_X86_FEAT_LA57};
    struct vmmu_x86_cpu bad_vendor = {.vendor = (enum vmmu_x86_vendor)7};
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &bad_phys), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &bad_feat), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &la57_no_lm), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &bad_vendor), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_paging_init(&pg, NULL, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_paging_init(NULL, env->vm, NULL), VMMU_EINVAL);
}

static void setters_refuse_null_arguments(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vmmu_x86_set_cr0(NULL, 0, &fault), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cr3(&env->pg, 0, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_cpl(&env->pg, 4), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_set_state(&env->pg, NULL), VMMU_EINVAL);
    struct vmmu_x86_regs r;
    struct vmmu_x86_paging zeroed;
    memset(&zeroed, 0, sizeof(zeroed));
    assert_int_equal(vmmu_x86_get_state(NULL, &r), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_get_state(&env->pg, NULL), VMMU_EINVAL);
    assert_int_equal(vmmu_x86_get_state(&zeroed, &r), VMMU_EINVAL);
}

/* ---- CR0 ------------------------------------------------------------------ */

static void cr0_with_upper_bits_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, 1ull << 32 | R_CR0_PE, &fault)),
                     VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.cr0, 0x60000010ull);
}

static void cr0_pg_without_pe_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PG, &fault)), VMMU_X86_VEC_GP);
}

static void cr0_nw_without_cd_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, 1ull << 29, &fault)), VMMU_X86_VEC_GP);
}

static void cr0_reserved_low_bits_are_ignored_and_et_reads_one(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | (1ull << 7), &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.cr0, R_CR0_PE | (1ull << 4));
}

static void cr0_pg_with_lme_and_no_pae_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
}

static void cr0_pg_with_lme_and_pae_activates_long_mode(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_true(env->pg.efer & R_EFER_LMA);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_4LEVEL);
}

static void cr0_clearing_pg_leaves_long_mode(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_FAULT_NONE);
    assert_false(env->pg.efer & R_EFER_LMA);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
}

static void cr0_clearing_pg_with_pcide_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PCIDE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_4LEVEL);
}

static void cr0_clearing_wp_with_cet_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_WP, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, VMMU_X86_CR4_CET, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_VEC_GP);
}

/* ---- CR3 ------------------------------------------------------------------ */

static void cr3_above_maxphyaddr_in_long_mode_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    uint64_t before = env->pg.cr3;
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 1ull << 40, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.cr3, before);
}

static void cr3_bit63_without_pcide_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, (1ull << 63) | 0x5000, &fault)),
                     VMMU_X86_VEC_GP);
}

static void cr3_bit63_with_pcide_is_a_hint_and_not_stored(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PCIDE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, (1ull << 63) | 0x5003, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.cr3, 0x5003);
}

static void cr3_outside_long_mode_takes_a_32_bit_operand(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0xabcd00005000ull, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.cr3, 0x5000);
}

/* ---- CR4 ------------------------------------------------------------------ */

static void cr4_reserved_bit_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 15, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 32, &fault)), VMMU_X86_VEC_GP);
}

static void cr4_bit_of_a_missing_feature_raises_gp(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_SMAP};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &cpu), 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_SMAP, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_SMEP, &fault)), VMMU_X86_FAULT_NONE);
}

static void cr4_clearing_pae_in_long_mode_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 0, &fault)), VMMU_X86_VEC_GP);
}

static void cr4_toggling_la57_in_long_mode_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_LA57, &fault)),
                     VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_4LEVEL);
}

static void cr4_la57_set_before_paging_selects_five_level_paging(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_LA57, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_5LEVEL);
}

static void cr4_pcide_with_nonzero_cr3_low_bits_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0x5008, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PCIDE, &fault)),
                     VMMU_X86_VEC_GP);
}

static void cr4_pcide_outside_long_mode_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PCIDE, &fault)), VMMU_X86_VEC_GP);
}

/* ---- EFER, PKRU, PKRS -------------------------------------------------------- */

static void efer_nxe_without_nx_feature_raises_gp(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_NX};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &cpu), 0);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_NXE, &fault)), VMMU_X86_VEC_GP);
}

static void efer_lme_without_long_mode_feature_raises_gp(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_NX | VMMU_X86_FEAT_PSE36};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &cpu), 0);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME, &fault)), VMMU_X86_VEC_GP);
    /* LMA is a reserved bit too without long mode, not an ignored one. */
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LMA | R_EFER_NXE, &fault)),
                     VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.efer, 0);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_NXE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.efer, R_EFER_NXE);
}

static void efer_reserved_bit_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, 1ull << 20, &fault)), VMMU_X86_VEC_GP);
}

static void efer_svme_is_reserved_on_intel_and_allowed_on_amd(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, 1ull << 12, &fault)), VMMU_X86_VEC_GP);
    struct vmmu_x86_cpu amd = {.vendor = VMMU_X86_VENDOR_AMD, .features = VMMU_X86_FEAT_ALL};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &amd), 0);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, 1ull << 12, &fault)), VMMU_X86_FAULT_NONE);
}

static void cr4_vmxe_and_smxe_are_allowed_on_intel_and_reserved_on_amd(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 13, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 14, &fault)), VMMU_X86_FAULT_NONE);
    struct vmmu_x86_cpu amd = {.vendor = VMMU_X86_VENDOR_AMD, .features = VMMU_X86_FEAT_ALL};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &amd), 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 13, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 1ull << 14, &fault)), VMMU_X86_VEC_GP);
}

static void efer_changing_lme_with_paging_on_raises_gp(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, 0, &fault)), VMMU_X86_VEC_GP);
}

static void efer_write_cannot_change_lma(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LMA | R_EFER_NXE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.efer, R_EFER_NXE);
}

static void efer_nxe_makes_xd_a_permission_bit_not_a_reserved_bit(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    uint64_t pdpt = env_page(env), pd = env_page(env);
    put64(env, env->pg.cr3, pdpt | E_P | E_RW);
    put64(env, pdpt, pd | E_P | E_RW);
    put64(env, pd, 0x200000 | E_P | E_RW | E_PS | E_NX);
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&env->pg, 0x1000, 0, &w), 0);
    assert_int_equal(w.fault.error_code, 0x9); /* P | RSVD */
    assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME | R_EFER_LMA | R_EFER_NXE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vmmu_x86_walk_peek(&env->pg, 0x1000, 0, &w), 0);
    assert_true(w.ok);
}

static void wrpkru_without_cr4_pke_raises_ud(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_pkru(&env->pg, 4, &fault)), VMMU_X86_VEC_UD);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PKE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_pkru(&env->pg, 4, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pkru, 4);
}

static void pkrs_with_upper_bits_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_pkrs(&env->pg, 1ull << 32, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_pkrs(&env->pg, 0xc, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pkrs, 0xc);
}

/* ---- What refused writes leave ------------------------------------------------ */

/* A byte-exact copy of the paging state (memcpy, so padding compares too). */
static void snapshot(const struct x86_env *env, struct vmmu_x86_paging *copy)
{
    memcpy(copy, &env->pg, sizeof(*copy));
}

static void assert_unchanged(const struct x86_env *env, const struct vmmu_x86_paging *copy)
{
    assert_memory_equal(&env->pg, copy, sizeof(*copy));
}

/* Every write the CPU refuses, from a long-mode state that has PCIDE, CET,
 * PKE and PKS on (so that each rule can fire), reports a fault and leaves
 * every field, derived data included, as it was. */
static void every_refused_register_write_leaves_the_whole_state_unchanged(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = regs_4level(env_page(env));
    r.cr0 |= R_CR0_WP;
    r.cr4 |= R_CR4_PCIDE | VMMU_X86_CR4_CET | R_CR4_PKE | R_CR4_PKS;
    r.efer |= R_EFER_NXE;
    r.pkru = 0x0c;
    r.pkrs = 0x30;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    uint64_t cr4 = env->pg.cr4;

    struct vmmu_x86_paging before;
    snapshot(env, &before);
#define REFUSED(call, vec)                                                                         \
    do {                                                                                           \
        fault.vector = 12345;                                                                      \
        assert_int_equal(vec_of(call), vec);                                                       \
        assert_int_equal(fault.error_code, 0);                                                     \
        assert_unchanged(env, &before);                                                            \
    } while (0)
    REFUSED(vmmu_x86_set_cr0(&env->pg, env->pg.cr0 | (1ull << 32), &fault), VMMU_X86_VEC_GP);
    /* Clearing PG with PCIDE=1; clearing WP with CET=1. */
    REFUSED(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_WP, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr0(&env->pg, (env->pg.cr0 | (1ull << 29)) & ~(1ull << 30), &fault),
            VMMU_X86_VEC_GP); /* NW without CD */
    REFUSED(vmmu_x86_set_cr3(&env->pg, 1ull << 40, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr4(&env->pg, cr4 & ~R_CR4_PAE, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr4(&env->pg, cr4 | R_CR4_LA57, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr4(&env->pg, cr4 | (1ull << 15), &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_efer(&env->pg, R_EFER_NXE, &fault), VMMU_X86_VEC_GP); /* LME off, PG on */
    REFUSED(vmmu_x86_set_efer(&env->pg, env->pg.efer | (1ull << 20), &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_pkrs(&env->pg, 1ull << 32, &fault), VMMU_X86_VEC_GP);

    /* From RESET: WP=0, LMA=0, PKE=0. */
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, NULL), 0);
    snapshot(env, &before);
    REFUSED(vmmu_x86_set_cr4(&env->pg, VMMU_X86_CR4_CET, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr4(&env->pg, R_CR4_PCIDE, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_cr0(&env->pg, R_CR0_PG, &fault), VMMU_X86_VEC_GP);
    REFUSED(vmmu_x86_set_pkru(&env->pg, 4, &fault), VMMU_X86_VEC_UD);
#undef REFUSED
}

static void cr4_setting_cet_with_wp_clear_raises_gp(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, VMMU_X86_CR4_CET, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.cr4, 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_WP, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, VMMU_X86_CR4_CET, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.cr4, VMMU_X86_CR4_CET);
}

static void pkru_and_pkrs_writes_fault_on_a_cpu_without_the_feature(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_cpu cpu = {
        .features = VMMU_X86_FEAT_ALL & ~(VMMU_X86_FEAT_PKU | VMMU_X86_FEAT_PKS)};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &cpu), 0);
    enter_long_mode(env);
    assert_int_equal(vec_of(vmmu_x86_set_pkru(&env->pg, 0, &fault)), VMMU_X86_VEC_UD);
    assert_int_equal(vec_of(vmmu_x86_set_pkrs(&env->pg, 0, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PKE, &fault)),
                     VMMU_X86_VEC_GP);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PKS, &fault)),
                     VMMU_X86_VEC_GP);
}

/* As POPF: the reserved RFLAGS bits cannot be set, and bit 1 stays 1, so
 * vmmu_x86_set_rflags() never builds a value a state load refuses. */
static void rflags_setter_keeps_the_reserved_bits_at_their_fixed_values(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vmmu_x86_set_rflags(&env->pg, ~0ull), 0);
    assert_int_equal(env->pg.rflags, 0x3f7fd7ull);
    assert_int_equal(vmmu_x86_set_rflags(&env->pg, (1ull << 63) | (1ull << 15) | R_RFLAGS_AC), 0);
    assert_int_equal(env->pg.rflags, R_RFLAGS_AC | 2);
}

static void rflags_bit1_reads_one_and_cpl_above_three_is_refused(void **state)
{
    struct x86_env *env = *state;
    assert_int_equal(vmmu_x86_set_rflags(&env->pg, 0), 0);
    assert_int_equal(env->pg.rflags, 2);
    assert_int_equal(vmmu_x86_set_rflags(&env->pg, R_RFLAGS_AC), 0);
    assert_int_equal(env->pg.rflags, R_RFLAGS_AC | 2);
    assert_int_equal(vmmu_x86_set_cpl(&env->pg, 3), 0);
    assert_int_equal(vmmu_x86_set_cpl(&env->pg, 4), VMMU_EINVAL);
    assert_int_equal(env->pg.cpl, 3);
}

static void init_accepts_the_maxphyaddr_bounds_and_refuses_1g_pages_without_long_mode(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging pg;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL, .maxphyaddr = 32};
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &cpu), 0);
    assert_int_equal(pg.cpu.maxphyaddr, 32);
    cpu.maxphyaddr = 52;
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &cpu), 0);
    cpu.maxphyaddr = 31;
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &cpu), VMMU_EINVAL);
    struct vmmu_x86_cpu g1_no_lm = {.features = VMMU_X86_FEAT_1G};
    assert_int_equal(vmmu_x86_paging_init(&pg, env->vm, &g1_no_lm), VMMU_EINVAL);
    assert_string_equal(vmmu_x86_mode_name(VMMU_X86_MODE_NONE), "none");
    assert_string_equal(vmmu_x86_mode_name(VMMU_X86_MODE_32), "32");
    assert_string_equal(vmmu_x86_mode_name(VMMU_X86_MODE_PAE), "pae");
    assert_string_equal(vmmu_x86_mode_name(VMMU_X86_MODE_4LEVEL), "4level");
    assert_string_equal(vmmu_x86_mode_name(VMMU_X86_MODE_5LEVEL), "5level");
}

/* ---- PAE PDPTE registers ------------------------------------------------------ */

/* Bring the vCPU to PAE paging with a PDPT at @pdpt (PDPTE 0 -> a PD). */
static void enter_pae(struct x86_env *env, uint64_t pdpt)
{
    put64(env, pdpt, env_page(env) | E_P);
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, pdpt, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
}

static void pdptes_are_loaded_when_paging_is_enabled(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    assert_int_equal(env->pg.pdpte[0], get64(env, pdpt));
}

static void present_pdpte_with_reserved_bits_makes_mov_to_cr3_raise_gp(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env), other = env_page(env);
    enter_pae(env, pdpt);
    put64(env, other + 8, env_page(env) | E_P | E_RW); /* R/W is reserved in a PDPTE */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, other, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(fault.error_code, 0);
    assert_int_equal(env->pg.cr3, pdpt);
    assert_int_equal(env->pg.pdpte[0], get64(env, pdpt));
}

static void not_present_pdpte_reserved_bits_are_not_checked(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env), other = env_page(env);
    enter_pae(env, pdpt);
    put64(env, other + 8, 0xfff0000000000006ull); /* P=0 */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, other, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pdpte[1], 0xfff0000000000006ull);
}

static void pdptes_reload_when_cr4_pge_changes(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    put64(env, pdpt + 16, 0x9000 | E_P);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | R_CR4_PGE, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pdpte[2], 0x9000 | E_P);
}

static void pdptes_do_not_reload_when_an_unrelated_cr4_bit_changes(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    put64(env, pdpt + 16, 0x9000 | E_P);
    /* OSFXSR (bit 9) is not among PAE, PGE, PSE, SMEP (SDM 4.4.1). */
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE | (1ull << 9), &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pdpte[2], 0);
}

static void pdptes_reload_when_cr0_cd_changes(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    put64(env, pdpt + 24, 0xa000 | E_P);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG | (1ull << 30), &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pdpte[3], 0xa000 | E_P);
}

static void enabling_paging_with_a_bad_pdpte_raises_gp_and_stays_unpaged(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    put64(env, pdpt, env_page(env) | E_P | (1ull << 63)); /* bit 63 reserved in PDPTEs */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, pdpt, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
}

static void pdpt_in_unbacked_memory_makes_the_load_raise_gp(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    /* All-ones PDPTEs: present with reserved bits. */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0x80000000ull, &fault)), VMMU_X86_VEC_GP);
}


/* SDM 4.4.1 lists the bits whose change reloads the PDPTEs: CR0.PG, CD, NW
 * and CR4.PAE, PGE, PSE, SMEP (and every MOV to CR3).  Others do not. */
static void pdptes_reload_exactly_when_a_listed_bit_changes(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    const uint64_t cd = 1ull << 30, nw = 1ull << 29;
    const uint64_t cr0 = R_CR0_PE | R_CR0_PG, cr4 = R_CR4_PAE;
    struct {
        int reg; /* 0 CR0, 3 CR3, 4 CR4, 8 EFER */
        uint64_t value;
        bool reloads;
    } steps[] = {
        {0, cr0 | R_CR0_WP, false},  {0, cr0 | cd, true},        {0, cr0 | cd | nw, true},
        {0, cr0, true},              {4, cr4 | R_CR4_PSE, true}, {4, cr4 | R_CR4_SMEP, true},
        {4, cr4 | R_CR4_SMEP | R_CR4_SMAP, false},
        {4, cr4 | R_CR4_SMEP | R_CR4_SMAP | R_CR4_PKE, false},
        {8, R_EFER_NXE, false},
        {3, pdpt, true},
    };
    uint64_t reg2 = env->pg.pdpte[2];
    for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        uint64_t fresh = (0x10000 + 0x1000 * (uint64_t)i) | E_P;
        put64(env, pdpt + 16, fresh);
        int rc = steps[i].reg == 0   ? vmmu_x86_set_cr0(&env->pg, steps[i].value, &fault)
                 : steps[i].reg == 3 ? vmmu_x86_set_cr3(&env->pg, steps[i].value, &fault)
                 : steps[i].reg == 4 ? vmmu_x86_set_cr4(&env->pg, steps[i].value, &fault)
                                     : vmmu_x86_set_efer(&env->pg, steps[i].value, &fault);
        assert_int_equal(vec_of(rc), VMMU_X86_FAULT_NONE);
        assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
        if (steps[i].reloads)
            reg2 = fresh;
        assert_int_equal(env->pg.pdpte[2], reg2);
    }
}

static void setting_cr4_pae_under_32bit_paging_loads_the_pdptes_or_raises_gp(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    put64(env, pdpt, 0x5000 | E_P | E_RW); /* R/W is reserved in a PDPTE */
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pdpt, .rflags = 2};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    assert_int_equal(env->pg.cr4, 0);
    put64(env, pdpt, 0x5000 | E_P);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
    assert_int_equal(env->pg.pdpte[0], 0x5000 | E_P);
}

static void cr3_write_under_32bit_paging_loads_no_pdptes(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = env_page(env), .rflags = 2};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    /* Unbacked memory would be all-ones PDPTEs (#GP in PAE paging). */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0x80000000ull, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.cr3, 0x80000000ull);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(env->pg.pdpte[i], 0);
}

static void pdpt_in_mmio_raises_gp_without_calling_the_device(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_region_desc d = {
        .type = VMMU_MEM_MMIO, .gpa = 0x10000000, .size = 0x1000, .mmio = &x86_env_counting_mmio};
    assert_int_equal(vmmu_region_add(env->vm, &d, NULL), 0);
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    x86_env_mmio_calls = 0;
    x86_env_mmio_value = 0x1001; /* a valid present PDPTE, were it used */
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0x10000000ull, &fault)), VMMU_X86_VEC_GP);
    assert_int_equal(x86_env_mmio_calls, 0);
    assert_int_equal(env->pg.cr3, pdpt);
}

static void pdpt_in_rom_loads_like_ram(void **state)
{
    struct x86_env *env = *state;
    uint8_t *rom = aligned_alloc(4096, 4096);
    assert_non_null(rom);
    memset(rom, 0, 4096);
    uint64_t e = 0x7000 | E_P;
    memcpy(rom + 8, &e, 8);
    struct vmmu_region_desc d = {
        .type = VMMU_MEM_ROM, .gpa = 0x20000000, .size = 4096, .host = rom};
    assert_int_equal(vmmu_region_add(env->vm, &d, NULL), 0);
    enter_pae(env, env_page(env));
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, 0x20000000ull, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.pdpte[1], e);
    assert_int_equal(env->pg.pdpte[0], 0);
    vmmu_vm_destroy(env->vm); /* before freeing the ROM's memory */
    env->vm = NULL;
    free(rom);
}

static int pagein_fails(void *opaque, struct vmmu_vm *vm, uint64_t gpa)
{
    (void)vm;
    (void)gpa;
    ++*(unsigned *)opaque;
    return VMMU_ENOMEM;
}

/* A PDPT that cannot be paged in: MOV to CR3 and set_state return the
 * error (VMMU_EPAGEDOUT without a handler, else the handler's own code)
 * and change nothing. */
static void pdpt_load_that_cannot_page_in_returns_the_error_and_changes_nothing(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env), other = env_page(env);
    enter_pae(env, pdpt);
    put64(env, other, env_page(env) | E_P);
    assert_int_equal(vmmu__page_state_update(env->vm, other, 1, VMMU_PAGE_PAGED_OUT, 0,
                                             VMMU_PAGE_PAGED_OUT),
                     0);
    struct vmmu_x86_paging before;
    snapshot(env, &before);
    assert_int_equal(vmmu_x86_set_cr3(&env->pg, other, &fault), VMMU_EPAGEDOUT);
    assert_unchanged(env, &before);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = other, .cr4 = R_CR4_PAE};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EPAGEDOUT);
    assert_unchanged(env, &before);

    unsigned calls = 0;
    assert_int_equal(vmmu_p2m_set_pagein_handler(env->vm, pagein_fails, &calls), 0);
    assert_int_equal(vmmu_x86_set_cr3(&env->pg, other, &fault), VMMU_ENOMEM);
    assert_true(calls >= 1);
    assert_unchanged(env, &before);
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_ENOMEM);
    assert_unchanged(env, &before);
}

/* ---- Whole-state loads -------------------------------------------------------- */

static void set_state_refuses_lma_without_paging(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = regs_4level(0x1000);
    r.cr0 = R_CR0_PE;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
}

static void set_state_refuses_long_mode_without_pae(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = regs_4level(0x1000);
    r.cr4 = 0;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
}

static void set_state_refuses_cr3_above_maxphyaddr(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = regs_4level(1ull << 45);
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
}

/* Clearing CR0.PG leaves IA-32e mode and keeps CR3 as it was, bits above
 * 31 included: a state load of those very registers must take them. */
static void set_state_accepts_the_cr3_a_cpu_keeps_after_leaving_long_mode(void **state)
{
    struct x86_env *env = *state;
    enter_long_mode(env);
    uint64_t pml4 = env->pg.cr3;
    assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, (1ull << 35) | pml4, &fault)),
                     VMMU_X86_FAULT_NONE);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.efer & R_EFER_LMA, 0);
    assert_int_equal(env->pg.cr3, (1ull << 35) | pml4);

    struct vmmu_x86_paging before;
    snapshot(env, &before);
    struct vmmu_x86_regs r = {.cr0 = env->pg.cr0, .cr3 = env->pg.cr3, .cr4 = env->pg.cr4,
                              .efer = env->pg.efer, .rflags = env->pg.rflags,
                              .cpl = env->pg.cpl, .pkru = env->pg.pkru, .pkrs = env->pg.pkrs};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_unchanged(env, &before);
}

/* SDM 4.3, 4.4: 32-bit and PAE paging use CR3 bits 31:0 only. */
static void walks_outside_long_mode_use_only_cr3_bits_31_to_0(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_walk w;

    uint64_t pd = env_page(env), pt = env_page(env);
    put32(env, pd, (uint32_t)(pt | E_P | E_RW));
    put32(env, pt, 0x7000 | E_P | E_RW);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = (1ull << 35) | pd, .rflags = 2};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    assert_int_equal(vmmu_x86_walk_peek(&env->pg, 0x123, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.levels[0].gpa, pd);
    assert_int_equal(w.gpa, 0x7123);

    uint64_t pdpt = env_page(env), pd2 = env_page(env), pt2 = env_page(env);
    put64(env, pdpt, pd2 | E_P);
    put64(env, pd2, pt2 | E_P | E_RW);
    put64(env, pt2, 0x9000 | E_P | E_RW);
    r.cr4 = R_CR4_PAE;
    r.cr3 = (1ull << 35) | pdpt;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
    assert_int_equal(env->pg.pdpte[0], pd2 | E_P);
    assert_int_equal(vmmu_x86_walk_peek(&env->pg, 0x456, 0, &w), 0);
    assert_true(w.ok);
    assert_int_equal(w.levels[0].gpa, pdpt);
    assert_int_equal(w.gpa, 0x9456);
}

static void set_state_refuses_bad_pdptes_and_keeps_the_old_state(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    put64(env, pdpt, 0x5000 | E_P | E_US);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pdpt, .cr4 = R_CR4_PAE};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
}

/* Real mode runs at CPL 0: CPL 1..3 with CR0.PE=0 is no state of the CPU. */
static void set_state_refuses_a_nonzero_cpl_in_real_mode(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging before;
    snapshot(env, &before);
    struct vmmu_x86_regs r = {.cr0 = 0x60000010ull, .rflags = 2};
    for (unsigned cpl = 1; cpl <= 3; cpl++) {
        r.cpl = cpl;
        assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
        assert_unchanged(env, &before);
    }
    r.cpl = 0;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    r.cr0 |= R_CR0_PE;
    r.cpl = 3;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.cpl, 3);
}

/* RFLAGS bits 63:22, 15, 5 and 3 read 0: a state with one of them set is
 * refused; bit 1 reads 1 and is set whatever the caller gave. */
static void set_state_refuses_rflags_reserved_bits_and_sets_bit_1(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging before;
    snapshot(env, &before);
    static const unsigned zero_bits[] = {3, 5, 15, 22, 31, 32, 63};
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE, .rflags = 2};
    for (unsigned i = 0; i < sizeof(zero_bits) / sizeof(zero_bits[0]); i++) {
        r.rflags = 2 | (1ull << zero_bits[i]);
        assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
        assert_unchanged(env, &before);
    }
    /* Every other bit below 22 is the guest's (VM aside, see below). */
    r.rflags = 0x3f7fd7ull & ~(1ull << 17);
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.rflags, 0x3d7fd7ull);
    r.rflags = R_RFLAGS_AC;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.rflags, R_RFLAGS_AC | 2);
}

/* RFLAGS.VM: virtual-8086 mode is protected mode outside IA-32e mode at
 * CPL 3; with IA-32e mode active, in real mode or below CPL 3 it is no
 * state of the CPU. */
static void set_state_allows_virtual_8086_mode_only_in_legacy_protected_mode_at_cpl_3(void **state)
{
    struct x86_env *env = *state;
    const uint64_t vm = 1ull << 17;
    struct vmmu_x86_regs r = regs_4level(env_page(env));
    r.cpl = 3;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    struct vmmu_x86_paging before;
    snapshot(env, &before);

    r.rflags = 2 | vm; /* IA-32e mode */
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
    assert_unchanged(env, &before);
    struct vmmu_x86_regs real = {.cr0 = 0x60000010ull, .rflags = 2 | vm};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &real), VMMU_EINVAL);
    assert_unchanged(env, &before);
    struct vmmu_x86_regs legacy = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = env_page(env),
                                   .rflags = 2 | vm, .cpl = 0};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &legacy), VMMU_EINVAL);
    assert_unchanged(env, &before);

    legacy.cpl = 3;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &legacy), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    assert_int_equal(env->pg.rflags, 2 | vm);
}

/* A PAE PD that maps linear page 0 to @frame, user and writable. */
static uint64_t pae_pd(struct x86_env *env, uint64_t frame)
{
    uint64_t pd = env_page(env), pt = env_page(env);
    put64(env, pd, pt | E_P | E_RW | E_US);
    put64(env, pt, frame | E_P | E_RW | E_US);
    return pd;
}

/* A PAE PDPT whose entry for linear 0..1 GiB holds pae_pd(@frame). */
static uint64_t pae_tables(struct x86_env *env, uint64_t frame)
{
    uint64_t pdpt = env_page(env);
    put64(env, pdpt, pae_pd(env, frame) | E_P);
    return pdpt;
}

static uint64_t gpa_of(struct x86_env *env, uint64_t va)
{
    struct vmmu_x86_walk w;
    assert_int_equal(vmmu_x86_walk_peek(&env->pg, va, 0, &w), 0);
    return w.ok ? w.gpa : ~0ull;
}

/* SDM 4.4.1: the PDPTE registers change only on MOV to CR0/CR3/CR4; a
 * guest may rewrite its PDPT after that.  A state load with
 * VMMU_X86_REGS_PDPTE takes the registers it is given and reads nothing. */
static void set_state_with_the_pdpte_flag_loads_the_given_pdptes_without_reading_memory(
    void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = pae_tables(env, 0x10000);
    uint64_t other_pd = pae_pd(env, 0x20000);
    put64(env, pdpt + 8, 0x5000 | E_P | E_RW); /* R/W is reserved in a PDPTE */

    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pdpt, .cr4 = R_CR4_PAE,
                              .rflags = 2};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL); /* read: refused */
    r.flags = VMMU_X86_REGS_PDPTE;
    r.pdpte[0] = other_pd | E_P;
    r.pdpte[3] = 0x3000 | E_P;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
    assert_memory_equal(env->pg.pdpte, r.pdpte, sizeof(r.pdpte));
    assert_int_equal(gpa_of(env, 0x123), 0x20123);
}

/* The given PDPTEs are checked as a load would: a present one with a
 * reserved bit is refused, a non-present one is not looked at. */
static void set_state_refuses_a_given_present_pdpte_with_reserved_bits(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging before;
    snapshot(env, &before);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pae_tables(env, 0x10000),
                              .cr4 = R_CR4_PAE, .rflags = 2, .flags = VMMU_X86_REGS_PDPTE};
    static const uint64_t rsvd[] = {1ull << 1, 1ull << 2, 1ull << 5, 1ull << 8, 1ull << 40,
                                    1ull << 63};
    for (unsigned i = 0; i < sizeof(rsvd) / sizeof(rsvd[0]); i++) {
        r.pdpte[2] = 0x5000 | E_P | rsvd[i];
        assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
        assert_unchanged(env, &before);
    }
    r.pdpte[2] = 0x5000 | (1ull << 63) | (1ull << 5); /* not present */
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.pdpte[2], r.pdpte[2]);
}

/* Flag bits vmmu does not know are refused, so that a caller built for a
 * later vmmu does not get a silently different load. */
static void set_state_refuses_unknown_flag_bits(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_paging before;
    snapshot(env, &before);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE, .rflags = 2};
    for (unsigned bit = 1; bit < 32; bit++) {
        r.flags = 1u << bit;
        assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
        assert_unchanged(env, &before);
    }
}

/* Outside PAE paging the given PDPTEs are ignored (KVM_SET_SREGS2 does
 * the same) and the registers read 0. */
static void set_state_ignores_given_pdptes_outside_pae_paging(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs r = regs_4level(env_page(env));
    r.flags = VMMU_X86_REGS_PDPTE;
    r.pdpte[0] = 0x5000 | E_P | E_RW; /* reserved bits, were it PAE */
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(env->pg.pdpte[i], 0);
}

/* Leaving PAE paging zeroes the PDPTE registers (they mean nothing
 * outside it), so a saved state holds all there is to a paging state. */
static void leaving_pae_paging_zeroes_the_pdpte_registers(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    enter_pae(env, pdpt);
    assert_int_not_equal(env->pg.pdpte[0], 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 0, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    assert_int_equal(env->pg.pdpte[0], 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, R_CR4_PAE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_not_equal(env->pg.pdpte[0], 0);
    assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)), VMMU_X86_FAULT_NONE);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
    assert_int_equal(env->pg.pdpte[0], 0);
}

/* A PAE guest that rewrote its PDPT after its last CR3 load (here even
 * with a reserved bit, legal until the next load) is saved and loaded
 * again with the same PDPTE registers, so its translations do not change
 * and the load is not refused. */
static void get_state_then_set_state_gives_back_the_same_pae_state_whatever_the_pdpt_holds(
    void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = pae_tables(env, 0x10000);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG | R_CR0_WP, .cr3 = pdpt,
                              .cr4 = R_CR4_PAE, .efer = R_EFER_NXE, .rflags = 2 | R_RFLAGS_AC,
                              .cpl = 3};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(gpa_of(env, 0x123), 0x10123);
    put64(env, pdpt, pae_pd(env, 0x20000) | E_P); /* another PD for 0..1 GiB */
    put64(env, pdpt + 8, 0x5000 | E_P | E_RW);     /* a reserved bit */
    assert_int_equal(gpa_of(env, 0x123), 0x10123);

    struct vmmu_x86_paging before;
    snapshot(env, &before);
    struct vmmu_x86_regs saved;
    assert_int_equal(vmmu_x86_get_state(&env->pg, &saved), 0);
    assert_int_equal(saved.flags, VMMU_X86_REGS_PDPTE);
    assert_memory_equal(saved.pdpte, env->pg.pdpte, sizeof(saved.pdpte));
    assert_int_equal(vmmu_x86_set_state(&env->pg, &saved), 0);
    assert_unchanged(env, &before);
    assert_int_equal(gpa_of(env, 0x123), 0x10123);

    /* Into another paging state of the same CPU model. */
    struct vmmu_x86_paging other;
    assert_int_equal(vmmu_x86_paging_init(&other, env->vm, NULL), 0);
    assert_int_equal(vmmu_x86_set_state(&other, &saved), 0);
    assert_memory_equal(&other, &env->pg, sizeof(other));
}

/* The same round trip in every other mode, from states built by the
 * setters: no flag, no PDPTEs, and the state comes back byte for byte. */
static void get_state_then_set_state_gives_back_the_same_state_outside_pae_paging(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_regs saved;
    struct vmmu_x86_paging before;
    for (unsigned step = 0; step < 4; step++) {
        switch (step) {
        case 0: /* RESET */
            break;
        case 1: /* 4-level, after PAE paging was used on the way */
            enter_pae(env, env_page(env));
            assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, R_EFER_LME, &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, env_page(env), &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(env->pg.mode, VMMU_X86_MODE_4LEVEL);
            break;
        case 2: /* back out of IA-32e mode with a CR3 above 4 GiB */
            assert_int_equal(vec_of(vmmu_x86_set_cr3(&env->pg, (1ull << 36) | 0x3000, &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE, &fault)),
                             VMMU_X86_FAULT_NONE);
            break;
        case 3: /* 32-bit paging at CPL 3 with AC */
            assert_int_equal(vec_of(vmmu_x86_set_efer(&env->pg, 0, &fault)), VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_cr4(&env->pg, 0, &fault)), VMMU_X86_FAULT_NONE);
            assert_int_equal(vec_of(vmmu_x86_set_cr0(&env->pg, R_CR0_PE | R_CR0_PG, &fault)),
                             VMMU_X86_FAULT_NONE);
            assert_int_equal(vmmu_x86_set_cpl(&env->pg, 3), 0);
            assert_int_equal(vmmu_x86_set_rflags(&env->pg, R_RFLAGS_AC), 0);
            assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
            break;
        }
        snapshot(env, &before);
        assert_int_equal(vmmu_x86_get_state(&env->pg, &saved), 0);
        assert_int_equal(saved.flags, 0);
        for (unsigned i = 0; i < 4; i++)
            assert_int_equal(saved.pdpte[i], 0);
        assert_int_equal(vmmu_x86_set_state(&env->pg, &saved), 0);
        assert_unchanged(env, &before);
    }
}

static void set_state_selects_each_mode(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
    r.cr0 |= R_CR0_PG;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_32);
    r.cr4 = R_CR4_PAE;
    r.cr3 = pdpt;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_PAE);
    r.efer = R_EFER_LME | R_EFER_LMA;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_4LEVEL);
    r.cr4 |= R_CR4_LA57;
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), 0);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_5LEVEL);
}

/* Every rule of vmmu_x86_set_state's "a state the CPU can be in", one
 * impossible state each; a refusal leaves the old state byte for byte. */
static void set_state_refuses_each_impossible_state_and_keeps_the_old_one(void **state)
{
    struct x86_env *env = *state;
    struct vmmu_x86_cpu cpu = {.features = VMMU_X86_FEAT_ALL & ~VMMU_X86_FEAT_PKU};
    assert_int_equal(vmmu_x86_paging_init(&env->pg, env->vm, &cpu), 0);
    const struct vmmu_x86_regs good = regs_4level(env_page(env));
    assert_int_equal(vmmu_x86_set_state(&env->pg, &good), 0);
    struct vmmu_x86_paging before;
    snapshot(env, &before);

    struct vmmu_x86_regs bad[17];
    unsigned n = 0;
    for (unsigned i = 0; i < 17; i++)
        bad[i] = good;
    bad[n++].cr0 = R_CR0_PG | R_CR0_PE | (1ull << 32);                    /* CR0 63:32 */
    bad[n++].cr0 = R_CR0_PG | R_CR0_PE | (1ull << 7);                     /* CR0 reserved bit */
    bad[n].cr0 = R_CR0_PG, bad[n++].efer = 0;                              /* PG without PE */
    bad[n++].cr0 = R_CR0_PG | R_CR0_PE | (1ull << 29);                    /* NW without CD */
    bad[n++].efer = R_EFER_LMA;                                            /* LMA without LME */
    bad[n++].efer = R_EFER_LME;                                            /* LME && PG, no LMA */
    bad[n++].efer |= 1ull << 20;                                           /* EFER reserved */
    bad[n++].cr4 |= 1ull << 15;                                            /* CR4 reserved */
    bad[n].cr4 = R_CR4_PAE | R_CR4_PCIDE, bad[n++].efer = R_EFER_LME;     /* PCIDE, LMA=0 */
    bad[n++].cr4 |= VMMU_X86_CR4_CET;                                      /* CET without WP */
    bad[n++].cr3 |= 1ull << 63;                                            /* CR3 bit 63 */
    bad[n].cr0 = R_CR0_PE | R_CR0_PG, bad[n].cr4 = 0, bad[n].efer = 0,
    bad[n++].cr3 = 1ull << 40;                       /* CR3 above MAXPHYADDR, LMA=0 */
    bad[n++].cpl = 4;
    bad[n++].pkrs = 1ull << 32;
    bad[n++].pkru = 4; /* the CPU has no PKU */
    bad[n++].cr4 |= R_CR4_PKE;
    bad[n++].efer |= VMMU_X86_EFER_SVME; /* Intel */
    assert_int_equal(n, 17);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(vmmu_x86_set_state(&env->pg, &bad[i]), VMMU_EINVAL);
        assert_unchanged(env, &before);
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(init_resets_to_paging_off_with_architectural_cr0),
        T(init_refuses_impossible_cpu_models),
        T(setters_refuse_null_arguments),
        T(cr0_with_upper_bits_raises_gp),
        T(cr0_pg_without_pe_raises_gp),
        T(cr0_nw_without_cd_raises_gp),
        T(cr0_reserved_low_bits_are_ignored_and_et_reads_one),
        T(cr0_pg_with_lme_and_no_pae_raises_gp),
        T(cr0_pg_with_lme_and_pae_activates_long_mode),
        T(cr0_clearing_pg_leaves_long_mode),
        T(cr0_clearing_pg_with_pcide_raises_gp),
        T(cr0_clearing_wp_with_cet_raises_gp),
        T(cr3_above_maxphyaddr_in_long_mode_raises_gp),
        T(cr3_bit63_without_pcide_raises_gp),
        T(cr3_bit63_with_pcide_is_a_hint_and_not_stored),
        T(cr3_outside_long_mode_takes_a_32_bit_operand),
        T(cr4_reserved_bit_raises_gp),
        T(cr4_bit_of_a_missing_feature_raises_gp),
        T(cr4_clearing_pae_in_long_mode_raises_gp),
        T(cr4_toggling_la57_in_long_mode_raises_gp),
        T(cr4_la57_set_before_paging_selects_five_level_paging),
        T(cr4_pcide_with_nonzero_cr3_low_bits_raises_gp),
        T(cr4_pcide_outside_long_mode_raises_gp),
        T(efer_nxe_without_nx_feature_raises_gp),
        T(efer_reserved_bit_raises_gp),
        T(efer_svme_is_reserved_on_intel_and_allowed_on_amd),
        T(cr4_vmxe_and_smxe_are_allowed_on_intel_and_reserved_on_amd),
        T(efer_changing_lme_with_paging_on_raises_gp),
        T(efer_write_cannot_change_lma),
        T(efer_nxe_makes_xd_a_permission_bit_not_a_reserved_bit),
        T(wrpkru_without_cr4_pke_raises_ud),
        T(pkrs_with_upper_bits_raises_gp),
        T(pdptes_are_loaded_when_paging_is_enabled),
        T(present_pdpte_with_reserved_bits_makes_mov_to_cr3_raise_gp),
        T(not_present_pdpte_reserved_bits_are_not_checked),
        T(pdptes_reload_when_cr4_pge_changes),
        T(pdptes_do_not_reload_when_an_unrelated_cr4_bit_changes),
        T(pdptes_reload_when_cr0_cd_changes),
        T(enabling_paging_with_a_bad_pdpte_raises_gp_and_stays_unpaged),
        T(pdpt_in_unbacked_memory_makes_the_load_raise_gp),
        T(set_state_refuses_lma_without_paging),
        T(set_state_refuses_long_mode_without_pae),
        T(set_state_refuses_cr3_above_maxphyaddr),
        T(set_state_accepts_the_cr3_a_cpu_keeps_after_leaving_long_mode),
        T(walks_outside_long_mode_use_only_cr3_bits_31_to_0),
        T(set_state_refuses_bad_pdptes_and_keeps_the_old_state),
        T(set_state_selects_each_mode),
        T(set_state_with_the_pdpte_flag_loads_the_given_pdptes_without_reading_memory),
        T(set_state_refuses_a_given_present_pdpte_with_reserved_bits),
        T(set_state_refuses_unknown_flag_bits),
        T(set_state_ignores_given_pdptes_outside_pae_paging),
        T(leaving_pae_paging_zeroes_the_pdpte_registers),
        T(get_state_then_set_state_gives_back_the_same_pae_state_whatever_the_pdpt_holds),
        T(get_state_then_set_state_gives_back_the_same_state_outside_pae_paging),
        T(set_state_refuses_a_nonzero_cpl_in_real_mode),
        T(set_state_refuses_rflags_reserved_bits_and_sets_bit_1),
        T(set_state_allows_virtual_8086_mode_only_in_legacy_protected_mode_at_cpl_3),
        T(every_refused_register_write_leaves_the_whole_state_unchanged),
        T(cr4_setting_cet_with_wp_clear_raises_gp),
        T(pkru_and_pkrs_writes_fault_on_a_cpu_without_the_feature),
        T(rflags_bit1_reads_one_and_cpl_above_three_is_refused),
        T(rflags_setter_keeps_the_reserved_bits_at_their_fixed_values),
        T(init_accepts_the_maxphyaddr_bounds_and_refuses_1g_pages_without_long_mode),
        T(pdptes_reload_exactly_when_a_listed_bit_changes),
        T(setting_cr4_pae_under_32bit_paging_loads_the_pdptes_or_raises_gp),
        T(cr3_write_under_32bit_paging_loads_no_pdptes),
        T(pdpt_in_mmio_raises_gp_without_calling_the_device),
        T(pdpt_in_rom_loads_like_ram),
        T(pdpt_load_that_cannot_page_in_returns_the_error_and_changes_nothing),
        T(set_state_refuses_each_impossible_state_and_keeps_the_old_one),
        T(efer_lme_without_long_mode_feature_raises_gp),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
