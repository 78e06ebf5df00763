#!/usr/bin/env python3
"""Writes the Linux guest's initramfs: a newc cpio with a static busybox and an /init
that reports what the test checks, then powers the machine off (ACPI S5).

  mkinitramfs.py BUSYBOX OUT.cpio

No root needed: the device node /dev/console is a cpio entry, not a file on disk.
"""
import stat
import sys

INIT = """#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
flag=absent
$bb grep -qw hypervisor /proc/cpuinfo && flag=present
echo "linux-guest: init: kernel $($bb uname -r), $($bb grep -c ^processor /proc/cpuinfo) CPU(s), hypervisor flag $flag"
echo "linux-guest: cmdline: $($bb cat /proc/cmdline)"
echo "linux-guest: powering off"
$bb poweroff -f
echo "linux-guest: poweroff returned"
"""


def entry(ino, name, mode, data=b"", rdev=(0, 0)):
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build(busybox_bytes):
    parts = []
    ino = 1
    for d in ("bin", "dev", "proc", "sys"):
        parts.append(entry(ino, d, stat.S_IFDIR | 0o755))
        ino += 1
    parts.append(entry(ino, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    ino += 1
    parts.append(entry(ino, "bin/busybox", stat.S_IFREG | 0o755, busybox_bytes))
    ino += 1
    parts.append(entry(ino, "init", stat.S_IFREG | 0o755, INIT.encode()))
    parts.append(entry(0, "TRAILER!!!", 0))
    blob = b"".join(parts)
    return blob + b"\0" * (-len(blob) % 512)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        blob = build(f.read())
    with open(argv[2], "wb") as f:
        f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
