/* SPDX-License-Identifier: MIT */
/* The memory layout and record formats shared by the oracle guest
 * (guest.S, through the C preprocessor) and the host side (oracle.c).
 * Only #defines: the assembler reads this file too.
 *
 * Guest-physical memory (identity-mapped for the guest by the "infra"
 * page tables in every mode, supervisor-only except the user pages):
 *
 *   0x00100000  guest program (multiboot header first), < 32 KiB
 *   0x00108000  user page: the CPL-3 access stubs (U=1)
 *   0x0010a000  user stack page (U=1; never touched)
 *   0x00180000  IDT, TSS, guest variables, kernel and exception stacks
 *   0x00200000  batch header (host <-> guest)
 *   0x00400000  infra page tables (built by the host, per batch mode)
 *   0x00800000  table pool: pages the random walks use as tables
 *   0x01000000  data pool: every translation the tests make lands here;
 *               filled with "0f 0b" (ud2) so that a successful fetch
 *               raises #UD at the linear address fetched
 *   0x01400000  case descriptors (host writes, guest reads)
 *   0x02c00000  result records (guest writes, host reads)
 *   0x04000000  end of what the infra maps (64 MiB)
 */
#ifndef VMMU_ORACLE_LAYOUT_H
#define VMMU_ORACLE_LAYOUT_H

#define OR_LOAD_ADDR 0x00100000
#define OR_USER_CODE 0x00108000
#define OR_USER_STACK 0x0010a000
#define OR_USER_STACK_TOP 0x0010b000
#define OR_IDT 0x00180000
#define OR_TSS 0x00181000
#define OR_VARS 0x00182000
#define OR_KSTACK_TOP 0x00186000 /* case loop */
#define OR_XSTACK_TOP 0x00188000 /* exceptions from CPL 3 (TSS RSP0/ESP0) */
#define OR_HEADER 0x00200000
#define OR_INFRA 0x00400000
#define OR_INFRA_END 0x00500000
#define OR_POOL 0x00800000
#define OR_POOL_PAGES 1024
#define OR_DATA 0x01000000
#define OR_DATA_SIZE 0x00400000
#define OR_CASES 0x01400000
#define OR_RESULTS 0x02c00000
#define OR_RESULTS_END 0x04000000
#define OR_MAPPED 0x04000000
/* Guest RAM the backends give the vm (QEMU's SeaBIOS keeps its own data
 * near the top of RAM, above OR_MAPPED). */
#define OR_RAM_SIZE 0x08000000

/* Batch header at OR_HEADER: offsets of 32-bit fields. */
#define H_MAGIC 0
#define H_MODE 4
#define H_NCASES 8
#define H_STATUS 12
#define H_ROOT 16     /* infra root loaded before entering long mode */
#define H_PROGRESS 20 /* cases finished */
#define H_FIRST 24    /* first case to run */
#define H_CPUID 64    /* 16 words, see OR_CPUID_* */

#define OR_MAGIC 0x564d4d4f /* "OMMV" */

#define OR_MODE_PROBE 0  /* report CPUID only */
#define OR_MODE_LEGACY 1 /* 32-bit protected mode: 32-bit and PAE paging */
#define OR_MODE_LONG4 2  /* IA-32e mode, 4-level paging */
#define OR_MODE_LONG5 3  /* IA-32e mode, 5-level paging */

#define OR_STATUS_RUNNING 1
#define OR_STATUS_DONE 2
#define OR_STATUS_BAD_HEADER 3

/* CPUID words in the header (index * 4 from H_CPUID). */
#define OR_CPUID_VENDOR_EBX 0
#define OR_CPUID_VENDOR_EDX 1
#define OR_CPUID_VENDOR_ECX 2
#define OR_CPUID_1_EDX 3
#define OR_CPUID_7_EBX 4
#define OR_CPUID_7_ECX 5
#define OR_CPUID_X1_EDX 6 /* 0x80000001 */
#define OR_CPUID_X8_EAX 7 /* 0x80000008 */

/* Ports: the guest says hello on OR_PORT_HELLO when its case loop starts
 * (the KVM runner's "first report") and OR_PORT_DONE when it has finished
 * (QEMU's isa-debug-exit sits there). */
#define OR_PORT_HELLO 0xf5
#define OR_PORT_DONE 0xf4

/* Case descriptor: OR_CASE_SIZE bytes at OR_CASES + i * OR_CASE_SIZE. */
#define C_CR0 0
#define C_CR3 8
#define C_CR4 16
#define C_EFER 24
#define C_VA 32
#define C_PKRU 40
#define C_PKRS 44
#define C_ACCESS 48 /* OR_ACC_* */
#define C_CPL 52    /* 0 or 3 */
#define C_RFLAGS 56 /* RFLAGS to run the access with (AC or not) */
#define C_NWRITES 60
#define C_FLAGS 62  /* 16 bits: OR_CF_* */
#define C_W 64      /* OR_CASE_WRITES entries of OR_W_SIZE bytes */
#define W_GPA 0
#define W_SIZE 4 /* 4 or 8 */
#define W_VALUE 8
#define OR_W_SIZE 16
#define OR_CASE_WRITES 6
#define OR_CASE_SIZE 160

#define OR_ACC_READ 0
#define OR_ACC_WRITE 1
#define OR_ACC_FETCH 2

#define OR_CF_SET_PKRS 1 /* the CPU has IA32_PKRS: load C_PKRS */

/* Result record: OR_RESULT_SIZE bytes at OR_RESULTS + i * OR_RESULT_SIZE. */
#define R_DONE 0 /* OR_RESULT_DONE once the record is complete */
#define R_VECTOR 4
#define R_ERROR 8
#define R_CR2 16
#define R_RIP 24
#define R_PHASE 32 /* 1: the fault came while loading registers; 2: from the access */
#define R_CS 36
#define R_FINAL 40 /* OR_CASE_WRITES entries, 8 bytes each */
#define OR_RESULT_SIZE 96
#define OR_RESULT_DONE 0x444f4e45

/* Guest variables at OR_VARS. */
#define V_SAVED_SP 0
#define V_CUR_CASE 8
#define V_CUR_RESULT 16
#define V_PHASE 24
#define V_INDEX 28

/* Selectors of the guest's GDT. */
#define SEL_CODE32 0x08
#define SEL_DATA 0x10
#define SEL_CODE64 0x18
#define SEL_UCODE32 0x20
#define SEL_UDATA 0x28
#define SEL_UCODE64 0x30
#define SEL_TSS 0x38

#endif /* VMMU_ORACLE_LAYOUT_H */
