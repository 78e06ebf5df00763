/* libhv entry: multiboot2 (GRUB), multiboot1 a.out kludge (QEMU -kernel) and Xen PVH.
 * All three enter in 32-bit protected mode, paging off, with a magic in %eax
 * (PVH: we load it) and the loader's info pointer in %ebx.
 *
 *   loader --> hv_entry32 / hv_entry_pvh
 *                 zero .bss, boot stack, identity-map 0..4 GiB with 2 MiB pages,
 *                 PAE + EFER.LME(+NXE) + PG, 64-bit GDT
 *             --> hv_entry64 --> hv_start(magic, info) in C++, never returns
 */
#define MB2_MAGIC      0xe85250d6
#define MB1_MAGIC      0x1badb002
#define MB1_FLAGS      0x00010003      /* page-align modules, memory info, a.out kludge */
#define PVH_MAGIC      0x336ec578
#define MSR_EFER       0xc0000080
#define PTE_P_RW       0x003
#define PTE_P_RW_PS    0x083

    .section .multiboot_header, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                     /* i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    /* information request: basic meminfo(4), mmap(6), cmdline(1), modules(3), ACPI(14,15) */
    .balign 8
    .word 1, 1                                  /* optional: GRUB may lack some */
    .long 32
    .long 1, 3, 6, 14, 15, 4
    /* end tag */
    .balign 8
    .word 0, 0
    .long 8
mb2_header_end:

#ifndef HV_BOOT_PVH_ONLY   /* QEMU -kernel prefers multiboot1: leave it out to test PVH */
    .balign 4
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long mb1_header                            /* header_addr */
    .long __hv_image_start                      /* load_addr */
    .long __hv_load_end                         /* load_end_addr */
    .long __hv_image_end                        /* bss_end_addr */
    .long hv_entry32                            /* entry_addr */
#endif

    .section .note.Xen, "a"
    .balign 4
    .long 4                                     /* namesz */
    .long 4                                     /* descsz */
    .long 18                                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long hv_entry_pvh

    .section .boot.text, "ax"
    .code32
    .globl hv_entry_pvh
hv_entry_pvh:
    movl $PVH_MAGIC, %eax
    /* fall through */

    .globl hv_entry32
hv_entry32:
    cli
    cld
    movl %eax, %esi
    movl %ebx, %ebp

    /* Zero .bss (page tables and stacks live there): by dwords, then the odd bytes.
       Emulators count each REP iteration as an instruction, so a byte-wide fill of
       ~200 KiB cost a guest ~0.2 M ticks of its start-up. */
    movl $__hv_load_end, %edi
    movl $__hv_image_end, %ecx
    subl %edi, %ecx
    movl %ecx, %edx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl
    movl %edx, %ecx
    andl $3, %ecx
    rep stosb

    movl $(hv_boot_stack + 16384), %esp

    /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3; PDx[i] = 2 MiB page. */
    movl $boot_pdpt, %eax
    orl $PTE_P_RW, %eax
    movl %eax, boot_pml4

    movl $boot_pd, %eax
    movl $boot_pdpt, %edi
    movl $4, %ecx
1:  movl %eax, %edx
    orl $PTE_P_RW, %edx
    movl %edx, (%edi)
    addl $4096, %eax
    addl $8, %edi
    loop 1b

    movl $boot_pd, %edi
    xorl %eax, %eax                             /* low half of the physical address */
    xorl %edx, %edx                             /* high half */
    movl $2048, %ecx
2:  movl %eax, %ebx
    orl $PTE_P_RW_PS, %ebx
    movl %ebx, (%edi)
    movl %edx, 4(%edi)
    addl $0x200000, %eax
    adcl $0, %edx
    addl $8, %edi
    loop 2b

    movl %cr4, %eax
    orl $0x20, %eax                             /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    /* EFER.LME, and NXE when the CPU has NX (CPUID 0x80000001 EDX bit 20). */
    movl $0x80000001, %eax
    cpuid
    movl $0x100, %edi                           /* LME */
    btl $20, %edx
    jnc 3f
    orl $0x800, %edi                            /* NXE */
3:  movl $MSR_EFER, %ecx
    rdmsr
    orl %edi, %eax
    wrmsr

    movl %cr0, %eax
    orl $0x80010001, %eax                       /* PG | WP | PE */
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $hv_entry64

    .code64
hv_entry64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $(hv_boot_stack + 16384), %rsp
    xorl %ebx, %ebx
    movl %esi, %edi                             /* magic */
    movl %ebp, %esi                             /* info pointer */
    call hv_start
4:  cli
    hlt
    jmp 4b

    .section .rodata
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff                    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff                    /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss
    .balign 4096
    .globl boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
    .globl hv_boot_stack
hv_boot_stack: .skip 16384
    .section .note.GNU-stack, "", @progbits
