; Boot-sector probe: prints CPUID leaves and capability MSRs to port 0xE9, then ends
; Bochs through port 0x8900. Used once to record the Bochs models' values in
; tests/unit/cpu/bochs_caps.hpp (see probe.sh). Real mode, CPL 0: rdmsr works.
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, cpuids
.cpuid_loop:
    mov eax, [si]
    cmp eax, 0xffffffff
    je .msrs
    mov al, 'C'
    out 0xe9, al
    mov eax, [si]
    call hex32
    xor ecx, ecx
    mov eax, [si]
    cpuid
    push edx
    push ecx
    push ebx
    call sp_hex32
    mov eax, [esp]
    call sp_hex32
    pop eax
    pop eax
    call sp_hex32
    pop eax
    call sp_hex32
    call nl
    add si, 4
    jmp .cpuid_loop
.msrs:
    mov si, msrs
.msr_loop:
    mov ecx, [si]
    cmp ecx, 0xffffffff
    je .done
    mov al, 'M'
    out 0xe9, al
    mov eax, ecx
    call hex32
    mov ecx, [si]
    rdmsr
    push eax
    mov eax, edx
    call sp_hex32
    pop eax
    call hex32
    call nl
    add si, 4
    jmp .msr_loop
.done:
    mov dx, 0x8900
    mov al, 'D'
    out dx, al
    hlt
    jmp .done

sp_hex32:
    push eax
    mov al, ' '
    out 0xe9, al
    pop eax
hex32:
    mov cx, 8
.l: rol eax, 4
    push eax
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .o
    add al, 7
.o: out 0xe9, al
    pop eax
    loop .l
    ret
nl:
    mov al, 10
    out 0xe9, al
    ret

align 4
cpuids: dd 0x1, 0x80000001, 0x8000000a, 0xffffffff
msrs:   dd MSRLIST, 0xffffffff
times 510-($-$$) db 0
dw 0xaa55
