/* Guest runtime entry points: the first vCPU, the others, and the
 * interrupt and exception stubs that build a struct rt_frame. */
    .section .text.entry, "ax"
    .global _start
_start:
    /* rdi = boot info, rsi = vCPU index (0) */
    lea rt_boot_stack+16384(%rip), %rsp
    xor %ebp, %ebp
    call rt_start
1:  cli
    hlt
    jmp 1b

    .global rt_ap_entry
rt_ap_entry:
    /* rsp from the START hypercall, rdi = function, rsi = vCPU index */
    xor %ebp, %ebp
    call rt_ap_start
2:  cli
    hlt
    jmp 2b

/* Exception and interrupt stubs: push a zero error code when the CPU
 * does not, then the vector, then every general register. */
.macro stub vec, has_err
    .align 16
rt_stub_\vec:
    .if \has_err == 0
    push $0
    .endif
    push $\vec
    jmp rt_stub_common
.endm

    .text
rt_stub_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call rt_trap
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    stub 0, 0
    stub 1, 0
    stub 2, 0
    stub 3, 0
    stub 4, 0
    stub 5, 0
    stub 6, 0
    stub 7, 0
    stub 8, 1
    stub 9, 0
    stub 10, 1
    stub 11, 1
    stub 12, 1
    stub 13, 1
    stub 14, 1
    stub 15, 0
    stub 16, 0
    stub 17, 1
    stub 18, 0
    stub 19, 0
    .irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79
    stub \v, 0
    .endr

    .section .rodata
    .global rt_stub_table
    .align 8
rt_stub_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    .quad rt_stub_\v
    .endr
    .irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79
    .quad rt_stub_\v
    .endr

/* Probed accesses: a #PF at rt_probe_insn_* resumes at the fixup with
 * rax = the error code | 1<<32.  rt_probe_read64(va, out) returns 0 or that. */
    .text
    .global rt_probe_read64, rt_probe_write64, rt_probe_read_insn, rt_probe_write_insn
    .global rt_probe_fixup
rt_probe_read64:
    xor %eax, %eax
rt_probe_read_insn:
    mov (%rdi), %rdx
    mov %rdx, (%rsi)
    ret
rt_probe_write64:
    xor %eax, %eax
rt_probe_write_insn:
    mov %rsi, (%rdi)
    ret
rt_probe_fixup:
    ret

    .section .note.GNU-stack, "", @progbits
