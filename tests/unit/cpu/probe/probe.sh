#!/bin/sh
# Record a Bochs CPU model's CPUID leaves and capability MSRs:
#   tests/unit/cpu/probe/probe.sh corei7_skylake_x intel
# Prints "C leaf eax ebx ecx edx" and "M msr hi lo" lines.
set -e
model=$1; vendor=$2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
if [ "$vendor" = intel ]; then
  list="0x3a,0x480,0x481,0x482,0x483,0x484,0x485,0x486,0x487,0x488,0x489,0x48a,0x48b,0x48c,0x48d,0x48e,0x48f,0x490,0x491"
else
  list="0xc0000080"
fi
nasm -f bin -DMSRLIST="$list" -o "$dir/boot.img.bs" "$here/msrprobe.asm"
dd if=/dev/zero of="$dir/boot.img" bs=512 count=2880 2>/dev/null
dd if="$dir/boot.img.bs" of="$dir/boot.img" conv=notrunc 2>/dev/null
printf 'c\nquit\n' > "$dir/rc"
cat > "$dir/bochsrc" <<RC
megs: 32
cpu: model=$model, ips=50000000
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
floppya: 1_44=$dir/boot.img, status=inserted
boot: floppy
display_library: rfb, options="timeout=0"
port_e9_hack: enabled=1
clock: sync=none
log: $dir/log
panic: action=fatal
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=0
RC
unshare --net timeout 60 bochs-bin -q -f "$dir/bochsrc" -rc "$dir/rc" </dev/null 2>/dev/null | grep -a '^[CM]' || { cat "$dir/log" >&2; exit 1; }
