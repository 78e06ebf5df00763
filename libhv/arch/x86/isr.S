/* Exception entry stubs: push a dummy error code where the CPU pushes none, then the
 * vector, then the GPRs, forming hv::x86::exception_frame (offsets asserted in C++). */
    .text
    .macro isr vector, has_error
    .balign 16
isr_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp isr_common
    .endm

    isr 0, 0
    isr 1, 0
    isr 2, 0
    isr 3, 0
    isr 4, 0
    isr 5, 0
    isr 6, 0
    isr 7, 0
    isr 8, 1
    isr 9, 0
    isr 10, 1
    isr 11, 1
    isr 12, 1
    isr 13, 1
    isr 14, 1
    isr 15, 0
    isr 16, 0
    isr 17, 1
    isr 18, 0
    isr 19, 0
    isr 20, 0
    isr 21, 1
    isr 22, 0
    isr 23, 0
    isr 24, 0
    isr 25, 0
    isr 26, 0
    isr 27, 0
    isr 28, 0
    isr 29, 1
    isr 30, 1
    isr 31, 0
    isr 32, 0       /* vectors >= 32 share one stub: interrupts the hypervisor did not expect */

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    movq %rsp, %rbx
    andq $-16, %rsp
    call hv_exception
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    .section .rodata
    .balign 8
    .globl hv_isr_table
hv_isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32
    .quad isr_\v
    .endr
    .section .note.GNU-stack, "", @progbits
