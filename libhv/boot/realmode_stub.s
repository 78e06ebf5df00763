# libhv's real-mode stub: the first 512-byte sector of a flat real-mode image made by
# toolchain/realmode_image.py from a libhv ELF image. Started at 0000:7C00 in real mode
# (loader::protocol::real_mode: no BIOS, interrupts off, DL = the boot drive), it
#
#   records the TSC of its first instruction, the machine status word (CR0.PE clear
#   proves real mode) and EDX in its hand-off block,
#   turns A20 on (system control port A), enters 32-bit protected mode on flat segments,
#   copies the image's loaded bytes (which follow this sector) to their address (1 MiB),
#   and jumps to the image's 32-bit entry (hv_entry32) with %eax = "HVRM" and %ebx = the
#   hand-off block (libhv/boot/boot_info.hpp real_mode_handoff), from where the image
#   reads its command line and memory map from fw_cfg (boot::parse_real_mode).
#
# Linked at 0x7c00 (ld -Ttext=0x7c00 --oformat=binary). The hand-off block's payload
# fields are zero here; realmode_image.py fills them.
    .set REAL_MODE_MAGIC, 0x4d525648        # boot::real_mode_magic
    .set HANDOFF_OFFSET, 472                 # boot::real_mode_handoff_offset

    .code16
    .text
    .globl _start
_start:
    movl %edx, %ebp                          # DL: the boot drive, before RDTSC takes EDX
    rdtsc
    cli
    cld
    xorw %cx, %cx
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %ss
    movw $0x7c00, %sp
    movl %eax, handoff_tsc
    movl %edx, handoff_tsc + 4
    movl %ebp, handoff_edx
    smsw %ax
    movzwl %ax, %eax
    movl %eax, handoff_cr0

    movb $0x02, %al                          # port 0x92 bit 1: A20 on (bit 0 would reset)
    outb %al, $0x92
    lgdtl gdt_ptr
    movl %cr0, %eax
    orb $1, %al                              # PE
    movl %eax, %cr0
    ljmpl $0x08, $protected32

    .code32
protected32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $(_start + 512), %esi               # the payload follows this sector
    movl handoff_paddr, %edi
    movl handoff_bytes, %ecx
    shrl $2, %ecx                            # realmode_image.py pads it to dwords
    rep movsl
    movl $REAL_MODE_MAGIC, %eax
    movl $handoff, %ebx
    jmp *handoff_entry

    .balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                 # 0x08: 32-bit code, flat
    .quad 0x00cf92000000ffff                 # 0x10: data, flat
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .org HANDOFF_OFFSET
handoff:
    .long REAL_MODE_MAGIC
handoff_paddr:
    .long 0
handoff_bytes:
    .long 0
handoff_entry:
    .long 0
handoff_tsc:
    .quad 0
handoff_cr0:
    .long 0
handoff_edx:
    .long 0

    .org 510
    .byte 0x55, 0xaa
