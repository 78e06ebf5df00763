# bzhello: a minimal kernel in the Linux bzImage format (boot protocol 2.12, 64-bit entry),
# for booting through libhv/loader's Linux path (hvm.boot bzimage=bzhello.bin). One setup
# sector after the boot sector; the protected-mode part (loaded at 1 MiB) has a 32-bit
# entry at +0 and the 64-bit entry at +0x200. It prints what the loader gave it on COM1
# (boot_params address, command line, e820 entry count, ACPI RSDP) and writes libhv's pass
# value 0x31 to port 0xf4. Assembled with `as`, flattened with `objcopy -O binary`.
    .text
    .code16
file_start:
    # Boot sector: never run (the loader enters the protected-mode part directly).
    .org 0x1f1
setup_sects:    .byte 1
root_flags:     .word 0
syssize:        .long (payload_end - payload) / 16
ram_size:       .word 0
vid_mode:       .word 0xffff
root_dev:       .word 0
boot_flag:      .word 0xaa55
    .org 0x200
jump:           .byte 0xeb, setup_code - file_start - 0x202
header:         .ascii "HdrS"
version:        .word 0x020c
realmode_swtch: .long 0
start_sys_seg:  .word 0
kernel_version: .word 0
type_of_loader: .byte 0
loadflags:      .byte 0x01                  # LOADED_HIGH
setup_move_size: .word 0
code32_start:   .long 0x100000
ramdisk_image:  .long 0
ramdisk_size:   .long 0
bootsect_kludge: .long 0
heap_end_ptr:   .word 0
ext_loader_ver: .byte 0
ext_loader_type: .byte 0
cmd_line_ptr:   .long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:  .byte 0
xloadflags:     .word 0x0001                # XLF_KERNEL_64
cmdline_size:   .long 255
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long 0
payload_length: .long 0
setup_data:     .quad 0
pref_address:   .quad 0x100000
init_size:      .long (payload_end - payload) + 0x1000
handover_offset: .long 0
kernel_info_offset: .long 0
setup_code:
    hlt                                      # the real-mode setup is not used
    jmp setup_code
    .org 0x400                               # (1 + setup_sects) * 512

# ---- protected-mode kernel, loaded at 0x100000 ----
payload:
    .code32
startup_32:                                  # ESI = boot_params; flat 32-bit, paging off
    mov $0x3f8, %dx
    mov $(msg32 - payload + 0x100000), %esi
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0xf4, %dx
    mov $0x31, %al
    out %al, %dx
3:  hlt
    jmp 3b

    .org 0x200 + (payload - file_start)
    .code64
startup_64:                                  # RSI = boot_params; long mode, identity-mapped
    lea stack_top(%rip), %rsp
    mov %rsi, %r12
    lea msg_banner(%rip), %rsi
    call puts
    mov %r12, %rax
    call puthex
    lea msg_cmdline(%rip), %rsi
    call puts
    mov 0x228(%r12), %esi                    # hdr.cmd_line_ptr
    call puts
    lea msg_e820(%rip), %rsi
    call puts
    movzbl 0x1e8(%r12), %eax                 # e820_entries
    call puthex
    lea msg_first(%rip), %rsi
    call puts
    mov 0x2d0 + 8(%r12), %rax                # e820_table[0].size
    call puthex
    lea msg_rsdp(%rip), %rsi
    call puts
    mov 0x70(%r12), %rax                     # acpi_rsdp_addr
    call puthex
    lea msg_end(%rip), %rsi
    call puts
    mov $0xf4, %dx
    mov $0x31, %al
    out %al, %dx
4:  hlt
    jmp 4b

puts:                                        # RSI: NUL-terminated string
    mov $0x3f8, %dx
5:  lodsb
    test %al, %al
    jz 6f
    out %al, %dx
    jmp 5b
6:  ret

puthex:                                      # RAX as 0x..., without leading zeros
    mov %rax, %r8
    mov $0x3f8, %dx
    mov $0x30, %al
    out %al, %dx
    mov $0x78, %al
    out %al, %dx
    mov $60, %ecx
    xor %r9d, %r9d                           # a digit was printed
7:  mov %r8, %rax
    shr %cl, %rax
    and $0xf, %eax
    test %ecx, %ecx
    jz 8f
    test %r9d, %r9d
    jnz 8f
    test %eax, %eax
    jz 9f
8:  mov $1, %r9d
    cmp $10, %al
    jb 10f
    add $0x27, %al
10: add $0x30, %al
    out %al, %dx
9:  sub $4, %ecx
    jns 7b
    ret

msg32:       .asciz "bzhello: 32-bit entry\n"
msg_banner:  .asciz "bzhello: 64-bit entry, boot_params at "
msg_cmdline: .asciz ", cmdline \""
msg_e820:    .asciz "\", e820 entries "
msg_first:   .asciz ", first of size "
msg_rsdp:    .asciz ", RSDP "
msg_end:     .asciz "\n"
    .balign 16
stack:       .fill 512, 1, 0
stack_top:
    .balign 16
payload_end:
