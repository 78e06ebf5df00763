#!/usr/bin/env python3
"""Boots Debian's Linux kernel as an HVM guest of examples/hvm (--hvm) or of a policy's
colors image (--policy: hvimage --policy=P --guest KERNEL --module initramfs.cpio) and
checks the run.

  run.py --cache DIR --work DIR --hvimage HVIMAGE (--hvm HVM.ELF | --policy P) --guest-cmdline S
         --cmdline S [--kernel FILE] -- CHECK.PY ARGS... (the argument @ISO@ becomes the image)

DIR (filled by `./dev linux-guest`, which `./dev test` runs) holds vmlinuz and busybox
extracted from Debian's packages. Without them the test is skipped (exit 77).
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkinitramfs  # noqa: E402

SKIP = 77


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--cache", "--work", "--hvimage", "--guest-cmdline", "--cmdline"):
        ap.add_argument(opt, required=True)
    hypervisor = ap.add_mutually_exclusive_group(required=True)
    hypervisor.add_argument("--hvm", help="examples/hvm's image")
    hypervisor.add_argument("--policy", help="a guest-mode policy: hvimage picks its colors image")
    ap.add_argument("--kernel", help="the guest kernel (default: vmlinuz in --cache)")
    ap.add_argument("check", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    check = a.check[1:] if a.check[:1] == ["--"] else a.check
    kernel = a.kernel or os.path.join(a.cache, "vmlinuz")
    busybox = os.path.join(a.cache, "busybox")
    # An empty kernel: vmlinux_pvh.py found no bzImage to extract from.
    missing = [p for p in (kernel, busybox) if not os.path.isfile(p) or os.path.getsize(p) == 0]
    if missing:
        print(f"SKIP: {', '.join(missing)} missing: run `./dev linux-guest` to fetch Debian's kernel and busybox")
        return SKIP
    os.makedirs(a.work, exist_ok=True)
    initrd = os.path.join(a.work, "initramfs.cpio")
    with open(busybox, "rb") as f:
        blob = mkinitramfs.build(f.read())
    with open(initrd, "wb") as f:
        f.write(blob)
    iso = os.path.join(a.work, "linux.iso")
    hypervisor = ["--policy", a.policy] if a.policy else ["--kernel", a.hvm]
    subprocess.run([a.hvimage] + hypervisor + ["--guest", kernel, "--guest-cmdline", a.guest_cmdline,
                    "--module", initrd, "--cmdline", a.cmdline, "-o", iso], check=True)
    cmd = [sys.executable] + [iso if x == "@ISO@" else x for x in check]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
