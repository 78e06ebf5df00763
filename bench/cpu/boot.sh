#!/bin/sh
# Boot an image with a command line on one emulator target and print its serial output.
# A stand-in until main's hvrun exists.
#   bench/cpu/boot.sh build/bench/cpu/cpu-guests.elf run=cpu.smoke bochs-intel
# Targets: bochs-intel (corei7_skylake_x), bochs-haswell (corei7_haswell_4770),
#          bochs-amd (ryzen), bochs-phenom (phenom_8650_toliman, no NRIPS), qemu-svm.
# Exit status: 0 when the serial log ends with HV-RESULT: PASS. KEEP=1 keeps the run directory.
set -u
elf=$1; cmdline=$2; target=$3
dir=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "run dir: $dir" >&2 || trap 'rm -rf "$dir"' EXIT
case $target in
  qemu-svm)
    timeout 60 qemu-system-x86_64 -cpu max -m 256 -kernel "$elf" -append "$cmdline" -display none -nic none \
      -serial file:"$dir/serial" -device isa-debug-exit,iobase=0xf4,iosize=4 -no-reboot -icount shift=0,sleep=off \
      >/dev/null 2>&1
    ;;
  bochs-*)
    case $target in
      bochs-intel) model=corei7_skylake_x ;;
      bochs-haswell) model=corei7_haswell_4770 ;;
      bochs-amd) model=ryzen ;;
      bochs-phenom) model=phenom_8650_toliman ;;
      *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    mkdir -p "$dir/iso/boot/grub"
    cp "$elf" "$dir/iso/boot/hv.elf"
    printf 'set timeout=0\nmenuentry hv {\n  multiboot2 /boot/hv.elf %s\n  boot\n}\n' "$cmdline" > "$dir/iso/boot/grub/grub.cfg"
    grub-mkrescue --install-modules="normal multiboot2 iso9660 biosdisk" --locales= --fonts= --themes= \
      -o "$dir/hv.iso" "$dir/iso" >/dev/null 2>&1 || { echo "grub-mkrescue failed" >&2; exit 2; }
    # Debug builds of Bochs break into the debugger on every triple fault, guests' included
    # (before the VM exit): BREAKS=n continues past n of them before the final 'quit'.
    { echo c; i=0; while [ $i -lt "${BREAKS:-0}" ]; do echo c; i=$((i+1)); done; echo quit; } > "$dir/rc"
    cat > "$dir/bochsrc" <<RC
megs: 256
cpu: model=$model, ips=50000000, reset_on_triple_fault=1, ignore_bad_msrs=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
ata0-master: type=cdrom, path=$dir/hv.iso, status=inserted
boot: cdrom
display_library: rfb, options="timeout=0"
com1: enabled=1, mode=file, dev=$dir/serial
clock: sync=none
log: $dir/bochs.log
panic: action=fatal
error: action=report
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=0
RC
    unshare --net timeout 120 bochs-bin -q -f "$dir/bochsrc" -rc "$dir/rc" </dev/null >/dev/null 2>&1
    ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
cat "$dir/serial" 2>/dev/null
if [ -f "$dir/bochs.log" ]; then grep -a -i -E "panic|vmlaunch|vmenter|vmexit|vmrun|check|error" "$dir/bochs.log" | grep -v -i "ignore" | tail -15 >&2; fi
tail -n 1 "$dir/serial" 2>/dev/null | grep -q "HV-RESULT: PASS"
