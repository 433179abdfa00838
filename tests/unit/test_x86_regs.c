/* x86 paging registers: writes validate as the CPU does and report the
 * fault it raises, leaving the state unchanged; PAE PDPTEs are loaded (and
 * checked) exactly when the SDM says; whole-state loads refuse impossible
 * states; CPU models are validated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

static void set_state_refuses_bad_pdptes_and_keeps_the_old_state(void **state)
{
    struct x86_env *env = *state;
    uint64_t pdpt = env_page(env);
    put64(env, pdpt, 0x5000 | E_P | E_US);
    struct vmmu_x86_regs r = {.cr0 = R_CR0_PE | R_CR0_PG, .cr3 = pdpt, .cr4 = R_CR4_PAE};
    assert_int_equal(vmmu_x86_set_state(&env->pg, &r), VMMU_EINVAL);
    assert_int_equal(env->pg.mode, VMMU_X86_MODE_NONE);
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
        T(set_state_refuses_bad_pdptes_and_keeps_the_old_state),
        T(set_state_selects_each_mode),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
