/* VMX world switch and the backend's exit loop. Register slots follow hv::cpu::gprs
 * (rax 0x00, rcx 0x08, rdx 0x10, rbx 0x18, rsp 0x20 unused: the VMCS holds RSP,
 * rbp 0x28, rsi 0x30, rdi 0x38, r8..r15 0x40..0x78), static_asserted in
 * libhv/cpu/state.hpp.
 *
 * int hv_vmx_run(gprs* regs, uint64_t launched, void* vcpu)
 *   Enters the guest (VMLAUNCH unless launched, else VMRESUME). At each exit the
 *   guest's GPRs go to *regs and hv_vmx_exit_handler(vcpu) runs: 0 = re-enter at
 *   once (VMRESUME), else return 0. Returns 1 on VMfailInvalid, 2 on VMfailValid.
 *   The host's callee-saved registers are saved once per call, not per exit, and
 *   HOST_RSP is written once per call: it points at the frame below.
 *
 * HOST_RIP must be hv_vmx_exit. Frame at HOST_RSP (16-byte aligned, for the call):
 *   0x00 regs   0x08 vcpu   0x10 pad   0x18.. rbp rbx r12 r13 r14 r15 (reversed), return */
#include "libhv/cpu/gprs.inc"
    .text
    .globl hv_vmx_run
    .type hv_vmx_run, @function
hv_vmx_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $0x18, %rsp
    mov %rdi, 0x00(%rsp)
    mov %rdx, 0x08(%rsp)
    mov $0x6c14, %eax           /* HOST_RSP */
    vmwrite %rsp, %rax
    test %rsi, %rsi
    jnz .Lresume
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x00(%rdi), %rax
    mov 0x38(%rdi), %rdi
    vmlaunch
    jmp .Lfailed

    .globl hv_vmx_exit
    .type hv_vmx_exit, @function
hv_vmx_exit:
    push %rax                   /* the guest's RAX, while RAX finds regs */
    mov 0x08(%rsp), %rax
    store_guest_gprs_but_rax %rax
    popq 0x00(%rax)
    mov 0x08(%rsp), %rdi
    call hv_vmx_exit_handler
    test %eax, %eax
    jnz .Lleave
    mov 0x00(%rsp), %rdi
.Lresume:
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x00(%rdi), %rax
    mov 0x38(%rdi), %rdi
    vmresume
.Lfailed:
    mov $2, %eax                /* still here: the entry failed */
    jnc .Lpop
    mov $1, %eax
    jmp .Lpop
.Lleave:
    xor %eax, %eax
.Lpop:
    add $0x18, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size hv_vmx_run, . - hv_vmx_run
    .section .note.GNU-stack, "", @progbits
