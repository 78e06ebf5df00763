#!/usr/bin/env python3
"""Checks vmlinux_pvh.py on synthetic bzImages: the shrunk ELF must put exactly the
original bytes (and zeros) at the original physical addresses and keep the PVH note;
a payload that is not xz, not an ELF, or an ELF without the note must be refused with
its own message.

  vmlinux_pvh_test.py [BZIMAGE]   (with BZIMAGE: also check the real kernel's extraction)
"""
import lzma
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlinux_pvh as vp  # noqa: E402

PAGE = vp.PAGE


def note(name, ntype, desc):
    n = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return vp.NHDR.pack(len(n), len(desc), ntype) + pad(n) + pad(desc)


def make_elf(with_note=True):
    """Two PT_LOAD segments with data, short and long zero runs, and zero tails."""
    rng = random.Random(7)
    seg1 = bytearray(40 * PAGE)
    seg1[0:3 * PAGE] = bytes(rng.randrange(256) for _ in range(3 * PAGE))
    seg1[5 * PAGE + 17] = 0x5a                       # after a short hole: same piece
    seg1[30 * PAGE:30 * PAGE + 100] = b"\x11" * 100  # after a long hole: a new piece
    notes = note(b"GNU", 3, b"abcd") + (note(b"Xen", vp.XEN_ELFNOTE_PHYS32_ENTRY, struct.pack("<I", 0x1000040))
                                        if with_note else b"")
    note_at = 2 * PAGE
    seg1[note_at:note_at + len(notes)] = notes
    seg2 = bytearray(20 * PAGE)                      # leading zeros, data, zero tail
    seg2[18 * PAGE:18 * PAGE + 5] = b"hello"
    segs = [(0x1000000, 0xffffffff81000000, bytes(seg1), len(seg1) + 0x3000),
            (0x2000000, 0xffffffff82000000, bytes(seg2), len(seg2) + 0x100000)]
    phnum = len(segs) + 1
    off = PAGE
    phdrs, body = [], bytearray(PAGE)
    for paddr, vaddr, data, memsz in segs:
        phdrs.append(vp.PHDR.pack(vp.PT_LOAD, 7, off, vaddr, paddr, len(data), memsz, 0x200000))
        body += data
        off += len(data)
    phdrs.append(vp.PHDR.pack(vp.PT_NOTE, 4, PAGE + note_at, 0xffffffff81000000 + note_at, 0x1000000 + note_at,
                              len(notes), len(notes), 4))
    ehdr = vp.EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), 2, 62, 1, 0x1000000, 64, 0, 0, 64, vp.PHDR.size,
                        phnum, 64, 0, 0)
    body[0:64] = ehdr
    body[64:64 + phnum * vp.PHDR.size] = b"".join(phdrs)
    return bytes(body)


def bzimage(payload):
    setup_sects = 3
    bz = bytearray((setup_sects + 1) * 512)
    bz[0x1f1] = setup_sects
    bz[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", bz, 0x206, 0x20f)
    struct.pack_into("<II", bz, 0x248, 0x40, len(payload))
    return bytes(bz) + bytes(0x40) + payload + b"relocs"


def memory(elf):
    """The ranges the ELF's PT_LOADs cover (merged) and one bytearray per range with
    what they put there (file bytes, zeros past them)."""
    ident, etype, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, *_ = vp.EHDR.unpack_from(elf)
    loads = []
    for i in range(phnum):
        ptype, pf, off, vaddr, paddr, filesz, memsz, align = vp.PHDR.unpack_from(elf, phoff + i * vp.PHDR.size)
        if ptype == vp.PT_LOAD:
            loads.append((paddr, memsz, elf[off:off + filesz]))
    loads.sort(key=lambda l: l[0])
    merged = []
    for paddr, memsz, data in loads:
        assert not merged or merged[-1][1] <= paddr, "segments overlap"
        if merged and merged[-1][1] == paddr:
            merged[-1][1] = paddr + memsz
        else:
            merged.append([paddr, paddr + memsz])
    images = [bytearray(b - a) for a, b in merged]
    for paddr, memsz, data in loads:
        k = next(i for i, (a, b) in enumerate(merged) if a <= paddr < b)
        at = paddr - merged[k][0]
        images[k][at:at + len(data)] = data
    return [tuple(r) for r in merged], images


def expect_refused(payload, words):
    try:
        vp.shrink(vp.payload(bzimage(payload)))
    except vp.Bad as e:
        assert words in str(e), f"message {e!r} lacks {words!r}"
        return
    raise AssertionError(f"accepted a payload that should fail with {words!r}")


def check_equivalent(original, shrunk):
    ra, a = memory(original)
    rb, b = memory(shrunk)
    assert ra == rb, f"covered ranges differ: {ra} vs {rb}"
    assert a == b, "loaded bytes differ"


def main(argv):
    elf = make_elf()
    out, entry, nseg = vp.shrink(vp.payload(bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ))))
    assert entry == 0x1000040, hex(entry)
    assert nseg == 4, nseg        # seg1: data + long-hole piece; seg2: empty head + data
    assert len(out) < len(elf) // 2, (len(out), len(elf))
    check_equivalent(elf, out)
    assert vp.shrink(out)[0] == out, "shrinking twice changes the file"

    expect_refused(lzma.compress(elf, format=lzma.FORMAT_ALONE), "not xz-compressed")
    expect_refused(lzma.compress(b"not an elf at all", format=lzma.FORMAT_XZ), "not an ELF")
    expect_refused(lzma.compress(make_elf(with_note=False), format=lzma.FORMAT_XZ), "no Xen PVH entry note")
    expect_refused(b"\xfd7zXZ\x00garbage", "does not decompress")
    try:
        vp.payload(b"MZ" + bytes(0x300))
        raise AssertionError("accepted a file without HdrS")
    except vp.Bad as e:
        assert "not a bzImage" in str(e)

    if len(argv) > 1 and os.path.isfile(argv[1]):
        with open(argv[1], "rb") as f:
            real = vp.payload(f.read())
        shrunk, entry, nseg = vp.shrink(real)
        check_equivalent(real, shrunk)
        print(f"real kernel: {len(real)} -> {len(shrunk)} bytes, {nseg} segments, entry {entry:#x}, same memory image")
    print("vmlinux_pvh: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
