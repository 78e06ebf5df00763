/* A 64-bit guest for shadow paging, copied to guest-physical 0x10000 and run identity
   mapped (see shadow_guest.cpp for the memory layout). R12 = the shared PD (identity
   map of 0-4 MiB), R13 = 0: checks, 1: benchmarks, R15 = 1: VMMCALL, 0: VMCALL.
   Results go to 0x4100 (checks) and 0x4200 (benchmarks); the #PF handler records the
   error code (0x4000) and CR2 (0x4008), counts (0x4010), and resumes at the recovery
   point (0x4018, stack 0x4020) in ring 0. */
    .section .rodata.hv_sg, "a"
    .balign 4096
    .globl hv_sg_start, hv_sg_end, hv_sg_pf
    .code64
hv_sg_start:
    mov %cr3, %r14
    test %r13, %r13
    jnz bench_entry

    mov $1, %eax
    cpuid
    and $0x20000, %ecx
    mov %rcx, 0x4100
    mov %cr3, %rax
    mov %rax, 0x4108

    call build_spaces_a_b
    mov $0x300000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    mov %rax, 0x4110
    mov $0x304000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    mov %rax, 0x4118
    mov $0x300000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    mov %rax, 0x4120
    /* A and D as the CPU sets them */
    mov 0x303000, %rax
    mov %rax, 0x4128
    movq $0x1111, 0x40000000
    mov 0x303000, %rax
    mov %rax, 0x4130
    mov 0x302000, %rax
    mov %rax, 0x4138
    /* edit a live entry, INVLPG, read the new frame */
    movq $0x281003, 0x303000
    invlpg 0x40000000
    mov 0x40000000, %rax
    mov %rax, 0x4140
    /* not present */
    lea 1f(%rip), %rax
    mov %rax, 0x4018
    mov %rsp, 0x4020
    mov 0x40001000, %rax
1:  mov 0x4000, %rax
    mov %rax, 0x4148
    mov 0x4008, %rax
    mov %rax, 0x4150
    /* write to a read-only page: allowed with CR0.WP = 0 (the initial state), #PF once
       the guest sets CR0.WP */
    movq $0x280001, 0x303010
    movq $5, 0x40002008
    mov 0x280008, %rax
    mov %rax, 0x41a8
    mov %cr0, %rax
    or $0x10000, %rax
    mov %rax, %cr0
    lea 1f(%rip), %rax
    mov %rax, 0x4018
    mov %rsp, 0x4020
    movq $5, 0x40002000
1:  mov 0x4000, %rax
    mov %rax, 0x4158
    mov 0x4008, %rax
    mov %rax, 0x4160
    /* fetch from a no-execute page */
    movabs $0x8000000000280003, %rax
    mov %rax, 0x303018
    lea 1f(%rip), %rax
    mov %rax, 0x4018
    mov %rsp, 0x4020
    mov $0x40003000, %rax
    call *%rax
1:  mov 0x4000, %rax
    mov %rax, 0x4168
    mov 0x4008, %rax
    mov %rax, 0x4170
    /* ring 3 reads a supervisor page */
    lea 1f(%rip), %rax
    mov %rax, 0x4018
    mov %rsp, 0x4020
    push $0x1b
    push $0x21000
    pushfq
    push $0x23
    push $0x11000
    iretq
1:  mov 0x4000, %rax
    mov %rax, 0x4178
    mov 0x4008, %rax
    mov %rax, 0x4180
    /* a global page across CR3 switches with CR4.PGE */
    mov %cr4, %rax
    or $0x80, %rax
    mov %rax, %cr4
    movq $0x280103, 0x303020
    mov 0x40004000, %rax
    mov $0x304000, %rax
    mov %rax, %cr3
    mov $0x300000, %rax
    mov %rax, %cr3
    mov 0x40004000, %rax
    mov %rax, 0x4188
    mov %cr4, %rax
    and $0x80, %rax
    mov %rax, 0x4190
    mov %cr4, %rax
    and $~0x80, %rax
    mov %rax, %cr4
    mov 0x4010, %rax
    mov %rax, 0x4198
    mov %cr3, %rax
    mov %rax, 0x41a0
    /* EFER as the guest wrote it (the real one may differ): write it back, read it */
    mov $0xc0000080, %ecx
    rdmsr
    wrmsr
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, 0x41b0
    mov $2, %eax
    call hypercall
2:  jmp 2b

/* RDI = 4 zeroed pages: PML4, PDPT, PD, PT; PML4[0] -> PDPT, PDPT[0] -> the shared PD,
   PDPT[1] -> PD, PD[0] -> PT (so the PT maps 0x40000000..0x401fffff). */
build_space:
    lea 0x1007(%rdi), %rax
    mov %rax, (%rdi)
    lea 7(%r12), %rax
    mov %rax, 0x1000(%rdi)
    lea 0x2007(%rdi), %rax
    mov %rax, 0x1008(%rdi)
    lea 0x3007(%rdi), %rax
    mov %rax, 0x2000(%rdi)
    ret

/* The two address spaces the checks and the CR3-switch benchmark use, differing only
   at 0x40000000: A (PML4 0x300000, PT 0x303000) maps frame 0x280000 there, B (PML4
   0x304000, PT 0x307000) frame 0x281000. */
build_spaces_a_b:
    mov $0x300000, %rdi
    call build_space
    movq $0x280003, 0x303000
    mov $0x304000, %rdi
    call build_space
    movq $0x281003, 0x307000
    ret

hypercall:
    test %r15, %r15
    jnz 1f
    vmcall
    ret
1:  vmmcall
    ret

rdtsc64:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    ret

bench_entry:
    /* fault fill: 256 fresh pages, each touched once */
    mov $0x308000, %rdi
    call build_space
    xor %ecx, %ecx
1:  mov %rcx, %rax
    shl $12, %rax
    add $0x200003, %rax
    mov %rax, 0x30b000(,%rcx,8)
    inc %ecx
    cmp $256, %ecx
    jb 1b
    mov $0x308000, %rax
    mov %rax, %cr3
    call rdtsc64
    mov %rax, %rbx
    xor %ecx, %ecx
2:  mov %rcx, %rax
    shl $12, %rax
    mov 0x40000000(%rax), %rdx
    inc %ecx
    cmp $256, %ecx
    jb 2b
    call rdtsc64
    sub %rbx, %rax
    mov %rax, 0x4200

    /* CR3 switch, shadows warm: A <-> B, each followed by one access */
    call build_spaces_a_b
    mov $0x300000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    mov $0x304000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    call rdtsc64
    mov %rax, %rbx
    mov $500, %ecx
3:  mov $0x300000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    mov $0x304000, %rax
    mov %rax, %cr3
    mov 0x40000000, %rax
    dec %ecx
    jnz 3b
    call rdtsc64
    sub %rbx, %rax
    mov %rax, 0x4208

    /* CR3 switch, cold: each to a PML4 never seen before (sharing A's PDPT), one access */
    call rdtsc64
    mov %rax, %rbx
    mov $0x310000, %rdi
4:  movq $0x301007, (%rdi)
    mov %rdi, %cr3
    mov 0x40000000, %rax
    add $0x1000, %rdi
    cmp $0x3d8000, %rdi
    jb 4b
    call rdtsc64
    sub %rbx, %rax
    mov %rax, 0x4210

    /* page-table-heavy: create a space in one of 4 slots, map 16 pages, write them,
       switch back, tear the entries down; 100 times */
    mov %r14, %cr3
    mov $4, %eax                 /* mark: churn starts (counted only in the breakdown run) */
    call hypercall
    call rdtsc64
    mov %rax, %rbx
    xor %r8d, %r8d
5:  mov %r8, %rdi
    and $3, %rdi
    shl $14, %rdi
    add $0x3e0000, %rdi
    call build_space
    xor %ecx, %ecx
6:  mov %rcx, %rax
    shl $12, %rax
    add $0x200003, %rax
    mov %rax, 0x3000(%rdi,%rcx,8)
    inc %ecx
    cmp $16, %ecx
    jb 6b
    mov %rdi, %cr3
    xor %ecx, %ecx
7:  mov %rcx, %rax
    shl $12, %rax
    mov %rcx, 0x40000000(%rax)
    inc %ecx
    cmp $16, %ecx
    jb 7b
    mov %r14, %cr3
    xor %ecx, %ecx
8:  movq $0, 0x3000(%rdi,%rcx,8)
    inc %ecx
    cmp $16, %ecx
    jb 8b
    movq $0, (%rdi)
    movq $0, 0x1000(%rdi)
    movq $0, 0x1008(%rdi)
    movq $0, 0x2000(%rdi)
    inc %r8d
    cmp $100, %r8d
    jb 5b
    call rdtsc64
    sub %rbx, %rax
    mov %rax, 0x4218
    mov $5, %eax                 /* mark: churn ends */
    call hypercall
    mov $3, %eax
    call hypercall
9:  jmp 9b

/* #PF: record, then resume ring 0 at the recovery point */
hv_sg_pf:
    popq 0x4000
    push %rax
    mov %cr2, %rax
    mov %rax, 0x4008
    incq 0x4010
    mov 0x4018, %rax
    mov %rax, 8(%rsp)
    movq $0x08, 16(%rsp)
    mov 0x4020, %rax
    mov %rax, 32(%rsp)
    movq $0x10, 40(%rsp)
    pop %rax
    iretq

    /* ring-3 code: its own page (mapped user at 0x11000) */
    .balign 4096
user_code:
    mov 0x40000000, %rax
    ud2
hv_sg_end:

/* A 32-bit guest (legacy paging, CR4.PSE) on a PAE shadow, copied to 0x10000: the PD at
   0x100000 maps 0-4 MiB with the PT at 0x103000 and 0x40400000 with a 4 MiB page on
   guest-physical 0. EDI = 1: VMMCALL. Results at 0x4100, #PF record as above. */
    .balign 4096
    .globl hv_sg32_start, hv_sg32_end, hv_sg32_pf
    .code32
hv_sg32_start:
    mov 0x40680000, %eax         /* 4 MiB page: frame 0x280000 */
    mov %eax, 0x4100
    /* space B: PD 0x300000 (0-4 MiB as the boot space, 0x40000000 -> PT 0x301000) */
    movl $0x103007, 0x300000
    movl $0x301007, 0x300400
    movl $0x281003, 0x301000
    mov $0x300000, %eax
    mov %eax, %cr3
    mov 0x40000000, %eax
    mov %eax, 0x4104
    mov 0x301000, %eax           /* A set, D clear */
    mov %eax, 0x4108
    mov %cr3, %eax
    mov %eax, 0x410c
    mov $0x100000, %eax
    mov %eax, %cr3
    mov 0x40680000, %eax
    mov %eax, 0x4110
    mov $0x300000, %eax
    mov %eax, %cr3
    /* not present */
    movl $1f - hv_sg32_start + 0x10000, 0x4018
    mov 0x40001000, %eax
1:  mov 0x4000, %eax
    mov %eax, 0x4114
    mov 0x4008, %eax
    mov %eax, 0x4118
    /* write to a read-only page (CR0.WP = 1) */
    movl $0x280001, 0x301008
    movl $1f - hv_sg32_start + 0x10000, 0x4018
    movl $7, 0x40002000
1:  mov 0x4000, %eax
    mov %eax, 0x411c
    mov 0x4008, %eax
    mov %eax, 0x4120
    /* edit the live entry, INVLPG, read the new frame */
    movl $0x280003, 0x301000
    invlpg 0x40000000
    mov 0x40000000, %eax
    mov %eax, 0x4124
    mov 0x4010, %eax
    mov %eax, 0x4128
    mov $2, %eax
    test %edi, %edi
    jnz 2f
    vmcall
    jmp 3f
2:  vmmcall
3:  jmp 3b

hv_sg32_pf:
    popl 0x4000
    push %eax
    mov %cr2, %eax
    mov %eax, 0x4008
    incl 0x4010
    mov 0x4018, %eax
    mov %eax, 4(%esp)
    pop %eax
    iret
hv_sg32_end:
    .code64
