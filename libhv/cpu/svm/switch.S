/* SVM world switch and the backend's exit loop. Register slots follow hv::cpu::gprs
 * (see libhv/cpu/vmx/switch.S); RAX, RSP and RIP live in the VMCB: the C++ exit handler
 * copies them out, this loop copies RAX and RIP back in.
 *
 * void hv_svm_run(vcpu* v, uint64_t vmcb_pa, uint64_t host_save_pa,
 *                 int (*settle)(void* vcpu),
 *                 void (*exit_handler)(void* vcpu, void* vmcb, uint64_t, uint64_t guest_rcx))
 *   v->state.regs is at the start of the vCPU (static_asserted in vcpu.cpp), so one
 *   pointer is both. VMSAVE the host's hidden state (FS/GS/TR/LDTR, KernelGSBase,
 *   syscall and sysenter MSRs) to host_save_pa once; then per entry: CLGI, VMLOAD the
 *   guest's, VMRUN, VMSAVE the guest's, VMLOAD the host's back, STGI, and
 *   exit_handler(vcpu, vmcb, -, guest RCX) (the VMCB by its physical address, which is
 *   its virtual one: libhv's pages are identity-mapped, cpu::pa_of). It ends in the
 *   exit's handler. Then the vCPU's loop word (HV_VCPU_LOOP_WORD, vcpu::loop_word()): 0 =
 *   enter again at once, after copying the guest's RAX and RIP from regs (RIP follows the
 *   GPRs, hv::cpu::guest_state) into the VMCB (the rest of what a handler changed is
 *   marked dirty, which makes the word non-zero); else settle(vcpu): 0 = the same, else
 *   return. The host's callee-saved registers are saved once per call. The host's hidden
 *   state is loaded back at every exit, not kept off until the loop ends: handlers run
 *   on the host's GS base (the per-CPU block: x86::this_cpu()) and TR (the TSS with the
 *   IST stacks of NMI, #DF and #MC), which VMRUN/#VMEXIT do not switch.
 *
 * void hv_svm_run_lean(same arguments, bool* hidden_in_cpu)
 *   The loop for leaf handlers (vcpu::handler_kind::leaf; svm/backend.cpp "lean"): it
 *   saves the host's hidden state, clears GIF and loads the guest's once, and keeps it
 *   so through the hot exits, with no CLGI, VMLOAD, VMSAVE or STGI per exit. The exit
 *   handler switches to the host's state itself for any other exit (and back); settle
 *   always runs on the host's (switched here; back only to enter again), so the loop
 *   returns on it. *hidden_in_cpu says which state the CPU holds (svm::vcpu_arch).
 *
 * Frame (16-byte aligned at the call): 0x00 vcpu  0x08 vmcb_pa  0x10 host save  0x18 settle
 *   0x20 exit_handler  0x28 hidden_in_cpu (lean)  0x30 -  0x38.. rbp rbx r12..r15 (reversed) */
#include "libhv/cpu/gprs.inc"
#include "libhv/cpu/loop_word.h"
    .macro svm_loop name, lean
    .text
    .globl \name
    .type \name, @function
\name:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $0x38, %rsp
    mov %rdi, 0x00(%rsp)
    mov %rsi, 0x08(%rsp)
    mov %rdx, 0x10(%rsp)
    mov %rcx, 0x18(%rsp)
    mov %r8, 0x20(%rsp)
    mov %r9, 0x28(%rsp)
    mov %rdx, %rax
    vmsave %rax
    mov %rsi, %rax
    .if \lean
    clgi
    vmload %rax
    movb $1, (%r9)
    .endif
    jmp 2f
1:  /* stay */
    mov 0x08(%rsp), %rax
    mov 0x00(%rdi), %rsi
    mov %rsi, 0x5f8(%rax)       /* VMCB RAX */
    mov 0x80(%rdi), %rsi
    mov %rsi, 0x578(%rax)       /* VMCB RIP */
2:  /* enter */
    .if !\lean
    clgi
    .endif
    load_guest_gprs_but_rax_rdi %rdi
    mov 0x38(%rdi), %rdi
    .if !\lean
    vmload %rax
    .endif
    vmrun %rax
    .if !\lean
    vmsave %rax
    .endif
    mov 0x00(%rsp), %rax
    store_guest_gprs_but_rax %rax
    mov %rax, %rdi
    .if !\lean
    mov 0x10(%rsp), %rax
    vmload %rax
    stgi
    .endif
    mov 0x08(%rsp), %rsi
    call *0x20(%rsp)            /* RCX: still the guest's */
    mov 0x00(%rsp), %rdi
    cmpq $0, HV_VCPU_LOOP_WORD(%rdi)
    je 1b
    .if \lean
    mov 0x08(%rsp), %rax
    vmsave %rax
    mov 0x10(%rsp), %rax
    vmload %rax
    stgi
    mov 0x28(%rsp), %rax
    movb $0, (%rax)
    .endif
    call *0x18(%rsp)
    mov 0x00(%rsp), %rdi
    test %eax, %eax
    .if \lean
    jnz 3f
    mov 0x08(%rsp), %rax
    clgi
    vmload %rax
    mov 0x28(%rsp), %rsi
    movb $1, (%rsi)
    jmp 1b
3:
    .else
    jz 1b
    .endif
    add $0x38, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size \name, . - \name
    .endm

    svm_loop hv_svm_run, 0
    svm_loop hv_svm_run_lean, 1
    .section .note.GNU-stack, "", @progbits
