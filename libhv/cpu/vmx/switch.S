/* VMX world switch. Register slots follow hv::cpu::gprs (rax 0x00, rcx 0x08, rdx 0x10,
 * rbx 0x18, rsp 0x20 unused: the VMCS holds RSP, rbp 0x28, rsi 0x30, rdi 0x38,
 * r8..r15 0x40..0x78), static_asserted in libhv/cpu/state.hpp.
 *
 * int hv_vmx_enter(gprs* regs, uint64_t launched)
 *   returns 0 after a VM exit, 1 on VMfailInvalid, 2 on VMfailValid.
 * HOST_RIP must be hv_vmx_exit; HOST_RSP is written here. */
#include "libhv/cpu/gprs.inc"
    .text
    .globl hv_vmx_enter
    .type hv_vmx_enter, @function
hv_vmx_enter:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                   /* the exit path finds regs at (%rsp) */
    mov $0x6c14, %eax           /* HOST_RSP */
    vmwrite %rsp, %rax
    test %rsi, %rsi
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x00(%rdi), %rax
    mov 0x38(%rdi), %rdi        /* flags from the test above survive the movs */
    jnz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  mov $2, %eax                /* still here: the entry failed */
    jnc 3f
    mov $1, %eax
3:  pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size hv_vmx_enter, . - hv_vmx_enter

    .globl hv_vmx_exit
    .type hv_vmx_exit, @function
hv_vmx_exit:
    xchg %rax, (%rsp)           /* RAX = regs; the guest's RAX takes its stack slot */
    store_guest_gprs_but_rax %rax
    popq 0x00(%rax)
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    xor %eax, %eax
    ret
    .size hv_vmx_exit, . - hv_vmx_exit
    .section .note.GNU-stack, "", @progbits
