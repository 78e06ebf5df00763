/* SVM world switch. Register slots follow hv::cpu::gprs (see libhv/cpu/vmx/switch.S);
 * RAX and RSP live in the VMCB and are copied by the C++ side.
 *
 * void hv_svm_enter(gprs* regs, uint64_t vmcb_pa, uint64_t host_save_pa)
 *   VMSAVE the host's hidden state (FS/GS/TR/LDTR bases, syscall MSRs) to host_save_pa,
 *   VMLOAD the guest's, VMRUN, VMSAVE the guest's, VMLOAD the host's back. GIF is
 *   cleared around the switch and set again afterwards. */
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
    mov 0x08(%rdi), %rcx
    mov 0x10(%rdi), %rdx
    mov 0x18(%rdi), %rbx
    mov 0x28(%rdi), %rbp
    mov 0x30(%rdi), %rsi
    mov 0x40(%rdi), %r8
    mov 0x48(%rdi), %r9
    mov 0x50(%rdi), %r10
    mov 0x58(%rdi), %r11
    mov 0x60(%rdi), %r12
    mov 0x68(%rdi), %r13
    mov 0x70(%rdi), %r14
    mov 0x78(%rdi), %r15
    mov 0x38(%rdi), %rdi
    mov (%rsp), %rax
    vmload %rax
    vmrun %rax
    vmsave %rax
    mov 0x10(%rsp), %rax
    mov %rcx, 0x08(%rax)
    mov %rdx, 0x10(%rax)
    mov %rbx, 0x18(%rax)
    mov %rbp, 0x28(%rax)
    mov %rsi, 0x30(%rax)
    mov %rdi, 0x38(%rax)
    mov %r8, 0x40(%rax)
    mov %r9, 0x48(%rax)
    mov %r10, 0x50(%rax)
    mov %r11, 0x58(%rax)
    mov %r12, 0x60(%rax)
    mov %r13, 0x68(%rax)
    mov %r14, 0x70(%rax)
    mov %r15, 0x78(%rax)
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
