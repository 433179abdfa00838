/* SPDX-License-Identifier: MIT */
/* The oracle guest: runs a batch of paging test cases on a real (KVM) or
 * emulated (QEMU) x86 CPU and records what the CPU did.
 *
 * It is entered in 32-bit protected mode with paging off, flat segments
 * and interrupts disabled: by QEMU's multiboot loader (the header below
 * uses the address fields, so the file is a flat binary), or by the KVM
 * runner, which sets that state itself.  The host has already written the
 * batch header, the infra page tables and the case descriptors into guest
 * memory (layout.h).
 *
 * For each case the guest writes the case's paging-structure entries,
 * loads EFER, CR4, PKRU/PKRS, CR0 and CR3 as the descriptor says (a CR3
 * load also empties the TLB: CR4.PGE stays 0, so nothing is global), and
 * performs one access at CPL 0 or 3.  Every case ends in an exception:
 *  - the access faulted (#PF, #GP), or
 *  - it succeeded: a read or write is followed by ud2, and a fetch jumps
 *    to the data pool, which is all ud2 - so #UD means "translated".
 * The handler stores vector, error code, CR2, RIP and the phase (register
 * load or access) into the case's result record, reads back the final
 * value of every entry the case wrote (A/D bits) and clears them, then
 * unwinds to the case loop.  Ring 3 never needs OUT, INT n or SYSCALL.
 *
 * Legacy batches (32-bit and PAE paging) turn paging off between cases;
 * IA-32e batches enter long mode once and keep PAE/LA57 for the batch. */
#include "layout.h"

#define CR0_PG 0x80000000
#define CR4_PAE (1 << 5)
#define CR4_LA57 (1 << 12)
#define CR4_PKE (1 << 22)
#define MSR_EFER 0xc0000080
#define MSR_PKRS 0x6e1
#define EFER_LME (1 << 8)

    .section .mbheader, "a"
    .balign 4
mb_header:
    .long 0x1badb002                   /* multiboot magic */
    .long 0x00010000                   /* flags: the address fields are valid */
    .long -(0x1badb002 + 0x00010000)   /* checksum */
    .long mb_header                    /* header_addr */
    .long OR_LOAD_ADDR                 /* load_addr */
    .long 0                            /* load_end_addr: the whole file */
    .long 0                            /* bss_end_addr: no bss */
    .long entry32                      /* entry_addr (the KVM runner reads it too) */

    .section .data
    .balign 16
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff /* 0x08 code, 32-bit, DPL 0 */
    .quad 0x00cf92000000ffff /* 0x10 data, DPL 0 */
    .quad 0x00af9a000000ffff /* 0x18 code, 64-bit, DPL 0 */
    .quad 0x00cffa000000ffff /* 0x20 code, 32-bit, DPL 3 */
    .quad 0x00cff2000000ffff /* 0x28 data, DPL 3 */
    .quad 0x00affa000000ffff /* 0x30 code, 64-bit, DPL 3 */
    /* 0x38 TSS at OR_TSS, limit 0x67, available (9), present, DPL 0;
     * in long mode the next quad holds base 63:32 */
    .quad 0x0000890000000067 | ((OR_TSS & 0xffffff) << 16) | ((OR_TSS >> 24) << 56)
    .quad 0
gdt_end:
    .balign 8
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .long 0
    .word 0
idt32_desc:
    .word 32 * 8 - 1
    .long OR_IDT
    .word 0
idt64_desc:
    .word 32 * 16 - 1
    .quad OR_IDT

/* ======================================================================
 * 32-bit part
 * ====================================================================== */
    .text
    .code32
entry32:
    cli
    lgdt gdt_desc
    ljmp $SEL_CODE32, $1f
1:  mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $OR_KSTACK_TOP, %esp
    cld

    cmpl $OR_MAGIC, OR_HEADER + H_MAGIC
    je 2f
    movl $OR_STATUS_BAD_HEADER, OR_HEADER + H_STATUS
    jmp finish32
2:  movl $OR_STATUS_RUNNING, OR_HEADER + H_STATUS
    call cpuid_report

    /* TSS: the stack for exceptions from CPL 3, no I/O bitmap */
    movl $OR_XSTACK_TOP, OR_TSS + 4   /* ESP0, and RSP0 low half */
    movl $0, OR_TSS + 8               /* RSP0 high half in a 64-bit TSS */
    movw $104, OR_TSS + 102           /* I/O map base beyond the limit */

    mov OR_HEADER + H_MODE, %eax
    cmp $OR_MODE_LEGACY, %eax
    je legacy_main
    cmp $OR_MODE_LONG4, %eax
    je long_enter
    cmp $OR_MODE_LONG5, %eax
    je long_enter
    jmp finish32                      /* OR_MODE_PROBE */

cpuid_report:
    xor %eax, %eax
    cpuid
    mov %ebx, OR_HEADER + H_CPUID + 4 * OR_CPUID_VENDOR_EBX
    mov %edx, OR_HEADER + H_CPUID + 4 * OR_CPUID_VENDOR_EDX
    mov %ecx, OR_HEADER + H_CPUID + 4 * OR_CPUID_VENDOR_ECX
    mov $1, %eax
    cpuid
    mov %edx, OR_HEADER + H_CPUID + 4 * OR_CPUID_1_EDX
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov %ebx, OR_HEADER + H_CPUID + 4 * OR_CPUID_7_EBX
    mov %ecx, OR_HEADER + H_CPUID + 4 * OR_CPUID_7_ECX
    mov $0x80000001, %eax
    cpuid
    mov %edx, OR_HEADER + H_CPUID + 4 * OR_CPUID_X1_EDX
    mov $0x80000008, %eax
    cpuid
    mov %eax, OR_HEADER + H_CPUID + 4 * OR_CPUID_X8_EAX
    ret

finish32:
    /* status first: the host trusts the header, not the exit path */
    cmpl $OR_STATUS_BAD_HEADER, OR_HEADER + H_STATUS
    je 1f
    movl $OR_STATUS_DONE, OR_HEADER + H_STATUS
1:  xor %eax, %eax
    out %al, $OR_PORT_DONE
2:  hlt
    jmp 2b

/* ---- legacy batches: 32-bit and PAE paging ---------------------------- */
legacy_main:
    /* IDT: 32 interrupt gates to stub32_0 + 16 * vector */
    mov $OR_IDT, %edi
    mov $stub32_0, %edx
    mov $32, %ecx
1:  mov %edx, %eax
    and $0xffff, %eax
    or $(SEL_CODE32 << 16), %eax
    mov %eax, (%edi)
    mov %edx, %eax
    and $0xffff0000, %eax
    or $0x8e00, %eax
    mov %eax, 4(%edi)
    add $8, %edi
    add $16, %edx
    loop 1b
    lidt idt32_desc
    movl $SEL_DATA, OR_TSS + 8        /* SS0 */
    mov $SEL_TSS, %ax
    ltr %ax

    mov $OR_PORT_HELLO, %dx
    mov $1, %al
    out %al, %dx

    mov OR_HEADER + H_FIRST, %eax
    mov %eax, OR_VARS + V_INDEX
legacy_loop:
    mov OR_VARS + V_INDEX, %eax
    cmp OR_HEADER + H_NCASES, %eax
    jae finish32
    imul $OR_CASE_SIZE, %eax, %ebx
    add $OR_CASES, %ebx
    mov %ebx, OR_VARS + V_CUR_CASE
    imul $OR_RESULT_SIZE, %eax, %ecx
    add $OR_RESULTS, %ecx
    mov %ecx, OR_VARS + V_CUR_RESULT
    call run_case32
    mov OR_VARS + V_INDEX, %eax
    inc %eax
    mov %eax, OR_VARS + V_INDEX
    mov %eax, OR_HEADER + H_PROGRESS
    jmp legacy_loop

/* ebx: case descriptor.  Returns through case_end32. */
run_case32:
    mov %esp, OR_VARS + V_SAVED_SP
    movl $1, OR_VARS + V_PHASE
    mov %cr0, %eax
    and $~CR0_PG, %eax
    mov %eax, %cr0                    /* paging off: linear = physical */
    movzwl C_NWRITES(%ebx), %ecx
    lea C_W(%ebx), %esi
1:  test %ecx, %ecx
    jz 3f
    mov W_GPA(%esi), %edi
    mov W_VALUE(%esi), %eax
    mov %eax, (%edi)
    cmpl $4, W_SIZE(%esi)
    je 2f
    mov W_VALUE + 4(%esi), %eax
    mov %eax, 4(%edi)
2:  add $OR_W_SIZE, %esi
    dec %ecx
    jmp 1b
3:  mov $MSR_EFER, %ecx
    mov C_EFER(%ebx), %eax
    xor %edx, %edx
    wrmsr
    mov C_CR4(%ebx), %eax
    mov %eax, %cr4
    mov C_CR3(%ebx), %eax
    mov %eax, %cr3
    mov C_CR0(%ebx), %eax
    mov %eax, %cr0                    /* PAE: loads the PDPTEs */
    movl $2, OR_VARS + V_PHASE
    mov C_VA(%ebx), %edi
    mov C_ACCESS(%ebx), %esi
    mov C_RFLAGS(%ebx), %edx
    or $2, %edx
    mov $0x0f, %eax                   /* what writes store: keeps the ud2 pattern */
    cmpl $3, C_CPL(%ebx)
    je 4f
    push %edx
    popf
    cmp $OR_ACC_WRITE, %esi
    je 5f
    cmp $OR_ACC_FETCH, %esi
    je 6f
    movb (%edi), %al
    ud2
5:  movb %al, (%edi)
    ud2
6:  jmp *%edi
4:  mov $(SEL_UDATA | 3), %cx
    mov %cx, %ds
    mov %cx, %es
    push $(SEL_UDATA | 3)
    push $OR_USER_STACK_TOP
    push %edx
    push $(SEL_UCODE32 | 3)
    push $user_stub32
    iret

    .balign 16
stub32_0:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
.if (\v == 8) || ((\v >= 10) && (\v <= 14)) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
.else
    push $0
.endif
    push $\v
    jmp common32
.endr

/* [esp] vector, error code, eip, cs, eflags (esp, ss from CPL 3) */
common32:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    push $2
    popf
    mov OR_VARS + V_CUR_RESULT, %ebx
    mov (%esp), %eax
    mov %eax, R_VECTOR(%ebx)
    mov 4(%esp), %eax
    mov %eax, R_ERROR(%ebx)
    movl $0, R_ERROR + 4(%ebx)
    mov 8(%esp), %eax
    mov %eax, R_RIP(%ebx)
    movl $0, R_RIP + 4(%ebx)
    mov 12(%esp), %eax
    mov %eax, R_CS(%ebx)
    mov %cr2, %eax
    mov %eax, R_CR2(%ebx)
    movl $0, R_CR2 + 4(%ebx)
    mov OR_VARS + V_PHASE, %eax
    mov %eax, R_PHASE(%ebx)
    mov OR_VARS + V_SAVED_SP, %esp
    /* read back and clear the case's entries (infra maps them 1:1) */
    mov OR_VARS + V_CUR_CASE, %esi
    movzwl C_NWRITES(%esi), %ecx
    lea R_FINAL(%ebx), %ebp
    lea C_W(%esi), %esi
1:  test %ecx, %ecx
    jz 3f
    mov W_GPA(%esi), %edi
    mov (%edi), %eax
    mov %eax, (%ebp)
    movl $0, (%edi)
    movl $0, 4(%ebp)
    cmpl $4, W_SIZE(%esi)
    je 2f
    mov 4(%edi), %eax
    mov %eax, 4(%ebp)
    movl $0, 4(%edi)
2:  add $OR_W_SIZE, %esi
    add $8, %ebp
    dec %ecx
    jmp 1b
3:  movl $OR_RESULT_DONE, R_DONE(%ebx)
    ret                               /* to legacy_loop */

/* ---- entering IA-32e mode --------------------------------------------- */
long_enter:
    mov %cr4, %eax
    or $CR4_PAE, %eax
    cmpl $OR_MODE_LONG5, OR_HEADER + H_MODE
    jne 1f
    or $CR4_LA57, %eax
1:  mov %eax, %cr4
    mov OR_HEADER + H_ROOT, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $CR0_PG, %eax
    mov %eax, %cr0
    ljmp $SEL_CODE64, $long_main

/* ======================================================================
 * 64-bit part
 * ====================================================================== */
    .code64
long_main:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $OR_KSTACK_TOP, %esp
    /* IDT: 32 interrupt gates to stub64_0 + 16 * vector */
    mov $OR_IDT, %edi
    mov $stub64_0, %edx
    mov $32, %ecx
1:  mov %edx, %eax
    and $0xffff, %eax
    or $(SEL_CODE64 << 16), %eax
    mov %eax, (%rdi)
    mov %edx, %eax
    and $0xffff0000, %eax
    or $0x8e00, %eax
    mov %eax, 4(%rdi)
    movq $0, 8(%rdi)
    add $16, %edi
    add $16, %edx
    loop 1b
    lidt idt64_desc
    mov $SEL_TSS, %ax
    ltr %ax

    mov $OR_PORT_HELLO, %dx
    mov $1, %al
    out %al, %dx

    mov OR_HEADER + H_FIRST, %eax
    mov %eax, OR_VARS + V_INDEX
long_loop:
    mov OR_VARS + V_INDEX, %eax
    cmp OR_HEADER + H_NCASES, %eax
    jae finish64
    imul $OR_CASE_SIZE, %eax, %ebx
    add $OR_CASES, %ebx
    mov %rbx, OR_VARS + V_CUR_CASE
    imul $OR_RESULT_SIZE, %eax, %ecx
    add $OR_RESULTS, %ecx
    mov %rcx, OR_VARS + V_CUR_RESULT
    call run_case64
    mov OR_VARS + V_INDEX, %eax
    inc %eax
    mov %eax, OR_VARS + V_INDEX
    mov %eax, OR_HEADER + H_PROGRESS
    jmp long_loop

finish64:
    movl $OR_STATUS_DONE, OR_HEADER + H_STATUS
    xor %eax, %eax
    out %al, $OR_PORT_DONE
1:  hlt
    jmp 1b

/* rbx: case descriptor.  Returns through common64. */
run_case64:
    mov %rsp, OR_VARS + V_SAVED_SP
    movl $1, OR_VARS + V_PHASE
    movzwl C_NWRITES(%rbx), %ecx
    lea C_W(%rbx), %rsi
1:  test %ecx, %ecx
    jz 3f
    mov W_GPA(%rsi), %edi
    mov W_VALUE(%rsi), %rax
    cmpl $4, W_SIZE(%rsi)
    je 2f
    mov %rax, (%rdi)
    jmp 4f
2:  mov %eax, (%rdi)
4:  add $OR_W_SIZE, %rsi
    dec %ecx
    jmp 1b
3:  mov $MSR_EFER, %ecx
    mov C_EFER(%rbx), %eax
    mov C_EFER + 4(%rbx), %edx
    wrmsr
    mov C_CR4(%rbx), %rax
    mov %rax, %cr4
    test $CR4_PKE, %eax
    jz 5f
    mov C_PKRU(%rbx), %eax
    xor %ecx, %ecx
    xor %edx, %edx
    wrpkru
5:  testw $OR_CF_SET_PKRS, C_FLAGS(%rbx)
    jz 6f
    mov $MSR_PKRS, %ecx
    mov C_PKRS(%rbx), %eax
    xor %edx, %edx
    wrmsr
6:  mov C_CR0(%rbx), %rax
    mov %rax, %cr0
    mov C_CR3(%rbx), %rax
    mov %rax, %cr3                    /* empties the TLB (no global pages) */
    movl $2, OR_VARS + V_PHASE
    mov C_VA(%rbx), %rdi
    mov C_ACCESS(%rbx), %esi
    mov C_RFLAGS(%rbx), %edx
    or $2, %edx
    mov $0x0f, %eax
    cmpl $3, C_CPL(%rbx)
    je 7f
    push %rdx
    popfq
    cmp $OR_ACC_WRITE, %esi
    je 8f
    cmp $OR_ACC_FETCH, %esi
    je 9f
    movb (%rdi), %al
    ud2
8:  movb %al, (%rdi)
    ud2
9:  jmp *%rdi
7:  pushq $(SEL_UDATA | 3)
    pushq $OR_USER_STACK_TOP
    push %rdx
    pushq $(SEL_UCODE64 | 3)
    pushq $user_stub64
    iretq

    .balign 16
stub64_0:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
.if (\v == 8) || ((\v >= 10) && (\v <= 14)) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
.else
    pushq $0
.endif
    pushq $\v
    jmp common64
.endr

/* [rsp] vector, error code, rip, cs, rflags, rsp, ss */
common64:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    pushq $2
    popfq
    mov OR_VARS + V_CUR_RESULT, %rbx
    mov (%rsp), %eax
    mov %eax, R_VECTOR(%rbx)
    mov 8(%rsp), %rax
    mov %rax, R_ERROR(%rbx)
    mov 16(%rsp), %rax
    mov %rax, R_RIP(%rbx)
    mov 24(%rsp), %eax
    mov %eax, R_CS(%rbx)
    mov %cr2, %rax
    mov %rax, R_CR2(%rbx)
    mov OR_VARS + V_PHASE, %eax
    mov %eax, R_PHASE(%rbx)
    mov OR_VARS + V_SAVED_SP, %rsp
    mov OR_VARS + V_CUR_CASE, %rsi
    movzwl C_NWRITES(%rsi), %ecx
    lea R_FINAL(%rbx), %rbp
    lea C_W(%rsi), %rsi
1:  test %ecx, %ecx
    jz 3f
    mov W_GPA(%rsi), %edi
    cmpl $4, W_SIZE(%rsi)
    je 2f
    mov (%rdi), %rax
    movq $0, (%rdi)
    jmp 4f
2:  mov (%rdi), %eax
    movl $0, (%rdi)
4:  mov %rax, (%rbp)
    add $OR_W_SIZE, %rsi
    add $8, %rbp
    dec %ecx
    jmp 1b
3:  movl $OR_RESULT_DONE, R_DONE(%rbx)
    ret                               /* to long_loop */

/* ======================================================================
 * The user page (U=1): CPL-3 accesses.  edi/rdi = address, esi = kind.
 * ====================================================================== */
    .section .user, "ax"
    .code32
user_stub32:
    cmp $OR_ACC_WRITE, %esi
    je 1f
    cmp $OR_ACC_FETCH, %esi
    je 2f
    movb (%edi), %al
    ud2
1:  movb %al, (%edi)
    ud2
2:  jmp *%edi

    .code64
    .balign 16
user_stub64:
    cmp $OR_ACC_WRITE, %esi
    je 1f
    cmp $OR_ACC_FETCH, %esi
    je 2f
    movb (%rdi), %al
    ud2
1:  movb %al, (%rdi)
    ud2
2:  jmp *%rdi
