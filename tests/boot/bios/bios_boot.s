# A classic boot sector of libhv's own for the BIOS services (libhv/dev/bios.hpp) of the
# hvm policy's real-mode start: hvimage --policy=hvm --guest bios-boot.img.
#
# Sector 0 (at 0000:7C00, DL = the boot drive) prints with INT 10h AH=0Eh, erases its
# stage 2 (sectors 1-3, already copied by the loader) and loads it back from the IDE disk
# with INT 13h AH=42h, then runs it. Stage 2 reads the same sectors with AH=02h (CHS) and
# compares, checks a read past the disk's end fails (CF, AH=04h) and AH=48h's sector
# count, times one-sector AH=42h
# reads (RDTSC; HV-BENCH), walks INT 15h E820h and checks its RAM top against fw_cfg's
# etc/e820, checks INT 12h and INT 15h AH=88h, and that an unserviced call returns CF set.
# It ends with libhv's pass value 0x31 at port 0xf4, or 0x33 after "bios: FAIL step N".
# Assembled with `as --32`, linked at 0x7c00 as a flat binary.
    .set STAGE2_SECTORS, 3
    .set SMAP, 0x534d4150
    .set BENCH_READS, 16

    .code16
    .text
    .globl _start
_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $0x7c00, %sp
    movb %dl, boot_drive
    movw $msg_hello, %si
    call puts
    # Erase stage 2, then load it back from the disk.
    movw $stage2, %di
    movw $(STAGE2_SECTORS * 512), %cx
    xorb %al, %al
    rep stosb
    movw $dap_stage2, %si
    movb $0x42, %ah
    movb boot_drive, %dl
    int $0x13
    movb $1, step
    jc fail
    cmpw $0x5342, stage2_magic               # "BS": stage 2 is back
    movb $2, step
    jne fail
    jmp stage2

# Prints the NUL-terminated string at DS:SI through INT 10h AH=0Eh.
puts:
    pushw %ax
1:  lodsb
    testb %al, %al
    jz 2f
    call putc
    jmp 1b
2:  popw %ax
    ret
putc:
    pushw %ax
    pushw %bx
    movb $0x0e, %ah
    xorw %bx, %bx
    int $0x10
    popw %bx
    popw %ax
    ret
# Prints EAX in decimal.
print_dec:
    pushal
    movl $10, %ecx
    xorw %si, %si
1:  xorl %edx, %edx
    divl %ecx
    pushw %dx
    incw %si
    testl %eax, %eax
    jnz 1b
2:  popw %ax
    addb $'0', %al
    call putc
    decw %si
    jnz 2b
    popal
    ret
# `step` = the failing step (set before each check: a MOV to memory keeps the flags).
fail:
    xorw %dx, %dx
    movw %dx, %ds
    movw $msg_fail, %si
    call puts
    movzbl step, %eax
    call print_dec
    movw $msg_crlf, %si
    call puts
    movb $0x33, %al
    outb %al, $0xf4
3:  hlt
    jmp 3b

boot_drive: .byte 0
step:       .byte 0
dap_stage2: .byte 0x10, 0
            .word STAGE2_SECTORS, stage2, 0
            .quad 1
msg_hello:  .asciz "bios: hello from the boot sector through INT 10h\r\n"
msg_fail:   .asciz "bios: FAIL step "
msg_crlf:   .asciz "\r\n"
    .org 510
    .byte 0x55, 0xaa

# ---- stage 2: sectors 1-3, loaded by sector 0 ----
stage2:
    movw $msg_loaded, %si
    call puts

    # The same sectors through CHS (cylinder 0, head 0, sector 2) to 1000:0000.
    movw $0x1000, %ax
    movw %ax, %es
    xorw %bx, %bx
    movw $(0x0200 | STAGE2_SECTORS), %ax
    movw $0x0002, %cx
    movb $0, %dh
    movb boot_drive, %dl
    int $0x13
    movb $3, step
    jc fail
    movw $stage2, %si
    xorw %di, %di
    movw $(STAGE2_SECTORS * 512), %cx
    repe cmpsb
    movb $4, step
    jne fail
    xorw %ax, %ax
    movw %ax, %es

    # A read at the first sector past the end (AH=15h: CX:DX sectors) fails: CF, AH=04h.
    movb $0x15, %ah
    movb boot_drive, %dl
    int $0x13
    movb $5, step
    jc fail
    movw %dx, dap_past_end + 8
    movw %cx, dap_past_end + 10
    movw $dap_past_end, %si
    movb $0x42, %ah
    movb boot_drive, %dl
    clc
    int $0x13
    movb $6, step
    jnc fail
    cmpb $0x04, %ah
    jne fail
    cmpw $0, dap_past_end + 2               # no sectors transferred
    jne fail
    # AH=48h: the same sector count as AH=15h (still in dap_past_end's LBA).
    movw $26, 0x800
    movw $0x800, %si
    movb $0x48, %ah
    movb boot_drive, %dl
    int $0x13
    movb $21, step
    jc fail
    movl 0x800 + 16, %eax
    cmpl dap_past_end + 8, %eax
    jne fail
    cmpw $512, 0x800 + 24
    jne fail
    movw $msg_past_end, %si
    call puts

    # One-sector AH=42h reads, timed.
    movw $BENCH_READS, %bp
1:  rdtsc
    movl %eax, bench_t0
    movw $dap_bench, %si
    movb $0x42, %ah
    movb boot_drive, %dl
    int $0x13
    movb $7, step
    jc fail
    rdtsc
    subl bench_t0, %eax
    addl %eax, bench_total
    decw %bp
    jnz 1b
    movw $msg_bench, %si
    call puts
    movl bench_total, %eax
    shrl $4, %eax                           # BENCH_READS = 16
    call print_dec
    movw $msg_ticks, %si
    call puts

    # INT 15h E820h into 3000:0000.
    movw $0x3000, %ax
    movw %ax, %es
    xorw %di, %di
    xorl %ebx, %ebx
    xorw %bp, %bp
2:  movl $0xe820, %eax
    movl $SMAP, %edx
    movl $24, %ecx
    int $0x15
    movb $10, step
    jc fail
    cmpl $SMAP, %eax
    movb $11, step
    jne fail
    incw %bp
    addw $20, %di
    cmpw $16, %bp
    movb $12, step
    jae fail
    testl %ebx, %ebx
    jnz 2b
    movw %bp, e820_count
    cmpl $0, %es:0                          # the first entry: RAM from 0
    movb $13, step
    jne fail
    cmpl $1, %es:16
    jne fail
    xorw %si, %si
    movw %bp, %cx
    call ram_top
    movl %edx, e820_top
    xorw %ax, %ax
    movw %ax, %es

    # fw_cfg's file directory (selector 0x19): find etc/e820, read it to 0000:0600.
    movw $0x510, %dx
    movw $0x19, %ax
    outw %ax, %dx
    movw $0x500, %di
    movw $4, %cx
    call fw_read
    movl 0x500, %eax
    bswapl %eax
    movw %ax, %bp
3:  movw $0x500, %di
    movw $64, %cx
    call fw_read
    movw $0x508, %di
    movw $name_e820, %si
    movw $9, %cx
    repe cmpsb
    je 4f
    decw %bp
    jnz 3b
    movb $14, step
    jmp fail
4:  movw 0x504, %ax
    xchgb %al, %ah
    movw $0x510, %dx
    outw %ax, %dx
    movl 0x500, %eax
    bswapl %eax
    cmpl $320, %eax
    movb $15, step
    ja fail
    movl 0x500, %eax
    bswapl %eax
    movw %ax, %cx
    movw $0x600, %di
    call fw_read
    movl 0x500, %eax
    bswapl %eax
    xorl %edx, %edx
    movl $20, %ecx
    divl %ecx
    movw %ax, fw_count
    movw %ax, %cx
    movw $0x600, %si
    call ram_top
    movl %edx, fw_top
    cmpl e820_top, %edx
    movb $16, step
    jne fail
    movw $msg_e820, %si
    call puts
    movzwl e820_count, %eax
    call print_dec
    movw $msg_e820_top, %si
    call puts
    movl e820_top, %eax
    shrl $10, %eax
    call print_dec
    movw $msg_fw, %si
    call puts
    movzwl fw_count, %eax
    call print_dec
    movw $msg_fw_top, %si
    call puts
    movl fw_top, %eax
    shrl $10, %eax
    call print_dec
    movw $msg_kib, %si
    call puts

    # INT 12h: 640 KiB; INT 15h AH=88h: the KiB from 1 MiB to the RAM top.
    int $0x12
    cmpw $640, %ax
    movb $17, step
    jne fail
    movb $0x88, %ah
    int $0x15
    movb $18, step
    jc fail
    movl e820_top, %edx
    subl $0x100000, %edx
    shrl $10, %edx
    cmpw %dx, %ax
    movb $19, step
    jne fail
    # An unserviced call (INT 10h AH=02h, set cursor) returns CF set.
    movb $0x02, %ah
    xorw %bx, %bx
    xorw %dx, %dx
    clc
    int $0x10
    movb $20, step
    jnc fail

    movw $msg_pass, %si
    call puts
    movb $0x31, %al
    outb %al, $0xf4
5:  hlt
    jmp 5b

# CX fw_cfg data bytes to ES:DI.
fw_read:
    pushw %dx
    movw $0x511, %dx
1:  inb %dx, %al
    stosb
    loop 1b
    popw %dx
    ret

# EDX = the highest end (low 32 bits) of the CX type-1 entries of 20 bytes at ES:SI.
ram_top:
    xorl %edx, %edx
1:  cmpl $1, %es:16(%si)
    jne 2f
    movl %es:0(%si), %eax
    addl %es:8(%si), %eax
    cmpl %edx, %eax
    jbe 2f
    movl %eax, %edx
2:  addw $20, %si
    loop 1b
    ret

stage2_magic: .word 0x5342
dap_past_end: .byte 0x10, 0
              .word 1, 0, 0x2000
              .quad 0
dap_bench:    .byte 0x10, 0
              .word 1, 0, 0x2000
              .quad 1
bench_t0:     .long 0
bench_total:  .long 0
e820_top:     .long 0
fw_top:       .long 0
e820_count:   .word 0
fw_count:     .word 0
name_e820:    .asciz "etc/e820"
msg_loaded:   .asciz "bios: stage 2 loaded by INT 13h AH=42h\r\n"
msg_past_end: .asciz "bios: CHS read (AH=02h) matches; a read past the disk's end fails with AH=04h\r\n"
msg_bench:    .asciz "HV-BENCH: bios.int13h-read-1-sector 16 "
msg_ticks:    .asciz " ticks\r\n"
msg_e820:     .asciz "bios: E820 "
msg_e820_top: .asciz " entries, RAM top "
msg_fw:       .asciz " KiB; fw_cfg etc/e820 "
msg_fw_top:   .asciz " entries, RAM top "
msg_kib:      .asciz " KiB\r\n"
msg_pass:     .asciz "bios: PASS\r\n"
    .org 512 * (1 + STAGE2_SECTORS)
