/* SVM world switch and the backend's exit loop. Register slots follow hv::cpu::gprs
 * (see libhv/cpu/vmx/switch.S); RAX and RSP live in the VMCB and are copied by the
 * C++ side.
 *
 * void hv_svm_run(gprs* regs, uint64_t vmcb_pa, uint64_t host_save_pa, void* vcpu)
 *   VMSAVE the host's hidden state (FS/GS/TR/LDTR, KernelGSBase, syscall and sysenter
 *   MSRs) to host_save_pa once; then per entry: CLGI, VMLOAD the guest's, VMRUN,
 *   VMSAVE the guest's, VMLOAD the host's back, STGI, and hv_svm_exit_handler(vcpu):
 *   0 = enter again at once, else return. The host's callee-saved registers are saved
 *   once per call. The host's hidden state is loaded back at every exit, not kept off
 *   until the loop ends: TR (the TSS with the IST stacks of NMI, #DF and #MC) must be
 *   the host's whenever host code runs, and VMRUN/#VMEXIT do not switch it.
 *
 * Frame (16-byte aligned at the call): 0x00 regs  0x08 vmcb  0x10 host save  0x18 vcpu
 *   0x20 pad  0x28.. rbp rbx r12..r15 (reversed) */
#include "libhv/cpu/gprs.inc"
    .text
    .globl hv_svm_run
    .type hv_svm_run, @function
hv_svm_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $0x28, %rsp
    mov %rdi, 0x00(%rsp)
    mov %rsi, 0x08(%rsp)
    mov %rdx, 0x10(%rsp)
    mov %rcx, 0x18(%rsp)
    mov %rdx, %rax
    vmsave %rax
.Lenter:
    clgi
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x38(%rdi), %rdi
    mov 0x08(%rsp), %rax
    vmload %rax
    vmrun %rax
    vmsave %rax
    mov 0x00(%rsp), %rax
    store_guest_gprs_but_rax %rax
    mov 0x10(%rsp), %rax
    vmload %rax
    stgi
    mov 0x18(%rsp), %rdi
    call hv_svm_exit_handler
    mov 0x00(%rsp), %rdi
    test %eax, %eax
    jz .Lenter
    add $0x28, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size hv_svm_run, . - hv_svm_run
    .section .note.GNU-stack, "", @progbits
