/* SVM world switch. Register slots follow hv::cpu::gprs (see libhv/cpu/vmx/switch.S);
 * RAX and RSP live in the VMCB and are copied by the C++ side.
 *
 * void hv_svm_enter(gprs* regs, uint64_t vmcb_pa, uint64_t host_save_pa)
 *   VMSAVE the host's hidden state (FS/GS/TR/LDTR bases, syscall MSRs) to host_save_pa,
 *   VMLOAD the guest's, VMRUN, VMSAVE the guest's, VMLOAD the host's back. GIF is
 *   cleared around the switch and set again afterwards. */
#include "libhv/cpu/gprs.inc"
    .text
    .globl hv_svm_enter
    .type hv_svm_enter, @function
hv_svm_enter:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                   /* 0x10(%rsp): regs */
    push %rdx                   /* 0x08(%rsp): host save area */
    push %rsi                   /* 0x00(%rsp): vmcb */
    clgi
    mov %rdx, %rax
    vmsave %rax
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x38(%rdi), %rdi
    mov (%rsp), %rax
    vmload %rax
    vmrun %rax
    vmsave %rax
    mov 0x10(%rsp), %rax
    store_guest_gprs_but_rax %rax
    mov 0x08(%rsp), %rax
    vmload %rax
    stgi
    add $0x18, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size hv_svm_enter, . - hv_svm_enter
    .section .note.GNU-stack, "", @progbits
