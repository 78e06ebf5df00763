# A real-mode image (loaded whole at 0000:7c00: more than the boot sector) that checks real-mode software interrupts as the
# CPU delivers them: INT 60h to a handler of its own in another code segment with SP
# wrapping at 0, INT3, INTO taken (OF set) and not taken (OF clear), and INT 61h through
# an IVT moved with LIDT; then PIT interrupts (IRQ0, vector 08h) taken with IF set, while
# running and from HLT; then a fault (UD2) that returns to the faulting instruction; and
# reports what an INT n + IRET round trip costs (HV-BENCH); INSB and REP OUTSB (the pass
# line) are string I/O, which vm86 hands to the hypervisor too. Each handler checks the FLAGS, CS and IP it finds on its stack,
# that IF and TF are clear, and its CS; IRET must bring back the flags (as the handler
# left them in the frame), SP and registers. It ends with a line on COM1 and the debug-exit
# port 0xf4: 0x31 (pass) or 0x40 + the number of the failed check.
# Built with `as --32` and linked at 0x7c00 (tests/boot/meson.build).
        .code16
        .text
        .globl _start
_start:
        cli
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movb $0xff, %al                 # mask both PICs: no IRQ while IF is set below
        outb %al, $0x21
        outb %al, $0xa1
        movw $0x1000, %ax               # SS base 0x10000, SP 0: the first push wraps
        movw %ax, %ss
        xorw %sp, %sp
        movw $(int60 - _start), 0x60 * 4
        movw $0x07c0, 0x60 * 4 + 2
        movw $int3, 3 * 4
        movw $0, 3 * 4 + 2
        movw $into, 4 * 4
        movw $0, 4 * 4 + 2

        # 1: INT 60h with FLAGS = CF | IF | OF (0x0a03).
        movb $1, %cl
        xorw %bx, %bx
        pushw $0x0a03
        popfw
        int $0x60
after_int60:
        pushfw
        popw %ax
        cli
        movb $7, %cl
        cmpw $0x1234, %bx               # the handler's result
        jne fail
        movb $8, %cl
        andw $0xcfff, %ax               # IOPL aside (vm86 runs the guest with IOPL 3: PUSHF shows it)
        cmpw $0x0a02, %ax               # IF and OF back, CF as the handler left it (clear)
        jne fail
        movb $9, %cl
        testw %sp, %sp                  # SP back to 0
        jnz fail

        # 2: INT3 (one byte) with FLAGS = TF clear, IF clear, ZF set.
        movw $0x8000, %sp
        movb $10, %cl
        pushw $0x0042
        popfw
        int3
after_int3:
        movb $14, %cl
        cmpw $0x8000, %sp
        jne fail
        movb $15, %cl
        cmpw $0x5678, %bx
        jne fail

        # 3: INTO with OF clear does nothing; with OF set it takes vector 4.
        movb $16, %cl
        xorw %bx, %bx
        pushw $0x0002
        popfw
        into
        testw %bx, %bx
        jnz fail
        pushw $0x0802
        popfw
        into
after_into:
        movb $20, %cl
        cmpw $0x9abc, %bx
        jne fail

        # 4: the IVT moved with LIDT: vector 61h at 0x0800 + 4 * 0x61.
        movw $int61, 0x0800 + 0x61 * 4
        movw $0, 0x0800 + 0x61 * 4 + 2
        lidtw moved_ivt
        movb $21, %cl
        xorw %bx, %bx
        int $0x61
        movb $22, %cl
        cmpw $0xdef0, %bx
        jne fail
        lidtw real_ivt

        # 5: an external interrupt in real mode (PIT channel 0 through the PIC, vector 08h)
        # taken while running with IF set, then one waking a HLT.
        movw $irq0, 8 * 4
        movw $0, 8 * 4 + 2
        movb $0x11, %al                 # ICW1: edge, cascade, ICW4 follows
        outb %al, $0x20
        movb $0x08, %al                 # ICW2: vectors 08h-0Fh
        outb %al, $0x21
        movb $0x04, %al                 # ICW3: the slave on IR2
        outb %al, $0x21
        movb $0x01, %al                 # ICW4: 8086 mode
        outb %al, $0x21
        movb $0xfe, %al                 # IR0 only
        outb %al, $0x21
        movb $0x34, %al                 # channel 0, low then high byte, rate generator
        outb %al, $0x43
        xorb %al, %al
        outb %al, $0x40
        movb $0x10, %al                 # 0x1000 counts
        outb %al, $0x40
        movb $23, %cl                   # checks 24, 25 in the handler
        sti
1:      cmpw $0, ticks
        je 1b
        hlt
after_hlt:
        cli
        movb $0xff, %al
        outb %al, $0x21
        movb $26, %cl
        cmpw $2, ticks
        jb fail
        movb $27, %cl
        cmpw $after_hlt, last_ip
        jne fail

        # 6: a fault (UD2: #UD, vector 6) returns to the faulting instruction; the handler
        # steps over it.
        movw $ud, 6 * 4
        movw $0, 6 * 4 + 2
        movb $28, %cl
        xorw %bx, %bx
ud2_at:
        ud2
        movb $29, %cl
        cmpw $0x0606, %bx
        jne fail

        # 7: what an INT n and its IRET cost (HV-BENCH: TSC ticks per round trip, 16 of them).
        movw $int61, 0x62 * 4
        movw $0, 0x62 * 4 + 2
        rdtsc
        movl %eax, %edi
        movw $16, %cx
1:      int $0x62
        loop 1b
        rdtsc
        subl %edi, %eax
        shrl $4, %eax
        movl %eax, %edi
        movw $bench_text, %si
        call print
        movl %edi, %eax
        call print_decimal
        movw $ticks_text, %si
        call print

        # 8: string I/O: INSB from COM1's scratch register, the pass line by REP OUTSB.
        movb $30, %cl
        movw $0x3ff, %dx
        movb $0x5a, %al
        outb %al, %dx
        movw $scratch, %di
        cld
        insb
        cmpb $0x5a, scratch
        jne fail
        movb $31, %cl
        cmpw $scratch + 1, %di
        jne fail
        movw $pass_text, %si
        movw $(pass_end - pass_text), %cx
        movw $0x3f8, %dx
        rep outsb
        movb $32, %cl
        cmpw $pass_end, %si
        jne fail
        movb $0x31, %al
        outb %al, $0xf4
        hlt

        .org 510                        # the boot signature hvimage looks for; the rest follows
        .word 0xaa55

# Handler checks: the frame at SS:SP is IP, CS, FLAGS as expected (DX = IP, DI = FLAGS).
frame_ok:                               # called: the frame is 2 bytes further up
        movw %sp, %bp
        incb %cl
        cmpw %dx, 2(%bp)
        jne fail
        incb %cl
        cmpw $0, 4(%bp)
        jne fail
        incb %cl
        cmpw %di, 6(%bp)
        jne fail
        ret

int60:                                  # runs at CS 07c0
        movb $2, %cl
        movw %cs, %ax
        cmpw $0x07c0, %ax
        jne fail
        movb $3, %cl
        cmpw $0xfffa, %sp
        jne fail
        pushfw
        popw %ax
        testw $0x0300, %ax              # IF and TF clear
        jnz fail
        movb $3, %cl                    # checks 4, 5, 6: IP, CS, FLAGS
        movw $after_int60, %dx
        movw $0x0a03, %di
        call frame_ok
        movw %sp, %bp
        andw $0xfffe, 4(%bp)            # return with CF clear
        movw $0x1234, %bx
        iret

int3:
        movb $10, %cl                   # checks 11, 12, 13
        movw $after_int3, %dx
        movw $0x0042, %di
        call frame_ok
        movw $0x5678, %bx
        iret

into:
        movb $16, %cl                   # checks 17, 18, 19
        movw $after_into, %dx
        movw $0x0802, %di
        call frame_ok
        movw $0x9abc, %bx
        iret

ud:
        movw %sp, %bp
        movb $28, %cl
        cmpw $ud2_at, (%bp)
        jne fail
        addw $2, (%bp)
        movw $0x0606, %bx
        iret

int61:
        movw $0xdef0, %bx
        iret

irq0:                                   # frame: IP, CS, FLAGS above AX and BP
        pushw %ax
        pushw %bp
        movw %sp, %bp
        movb $24, %cl
        pushfw
        popw %ax
        testw $0x0300, %ax              # IF and TF clear in the handler
        jnz fail
        movb $25, %cl
        testw $0x0200, 8(%bp)           # IF set in the interrupted code's FLAGS
        jz fail
        cmpw $0, 6(%bp)
        jne fail
        movw 4(%bp), %ax
        movw %ax, last_ip
        incw ticks
        movb $0x20, %al                 # EOI
        outb %al, $0x20
        movb $23, %cl
        popw %bp
        popw %ax
        iret

# CL: the failed check.
fail:
        cli
        xorw %ax, %ax
        movw %ax, %ss
        movw $0x7c00, %sp
        movw $fail_text, %si
        call print
        movb %cl, %al
        addb $0x40, %al
        movw $0x3f8, %dx
        outb %al, %dx
        movb $'\n', %al
        outb %al, %dx
        movb %cl, %al
        addb $0x40, %al
        outb %al, $0xf4
        hlt

# The zero-terminated text at DS:SI to COM1.
print:
        movw $0x3f8, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      ret

# EAX in decimal to COM1.
print_decimal:
        movl $10, %ebx
        xorw %cx, %cx
1:      xorl %edx, %edx
        divl %ebx
        pushw %dx
        incw %cx
        testl %eax, %eax
        jnz 1b
        movw $0x3f8, %dx
2:      popw %ax
        addb $'0', %al
        outb %al, %dx
        loop 2b
        ret

bench_text:
        .asciz "HV-BENCH: realmode.int-iret 16 "
ticks_text:
        .asciz " ticks\n"
pass_text:
        .ascii "realmode-int: all checks pass\n"
pass_end:
fail_text:
        .asciz "realmode-int: FAIL 0x40+"
        .balign 2
ticks:
        .word 0
scratch:
        .word 0
last_ip:
        .word 0
moved_ivt:
        .word 0x3ff
        .long 0x0800
real_ivt:
        .word 0x3ff
        .long 0
