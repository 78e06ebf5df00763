#!/usr/bin/env python3
"""Extracts a PVH-bootable vmlinux ELF from a bzImage and shrinks it for the guest test.

  vmlinux_pvh.py BZIMAGE OUT.elf [--depfile OUT.d] [--missing-ok]

A bzImage's protected-mode part carries the kernel's vmlinux ELF compressed (boot
protocol 2.08+: payload_offset at 0x248 and payload_length at 0x24c, counted from the
protected-mode code, which starts after the (setup_sects + 1) * 512 bytes of real-mode
setup). Debian compresses it with xz. The ELF keeps Xen's PVH entry note
(XEN_ELFNOTE_PHYS32_ENTRY), which a bzImage has no way to expose.

The written ELF holds only what a PVH loader reads: the ELF header, PT_LOAD segments
and one PT_NOTE segment with the Xen notes; section headers are dropped. Each PT_LOAD
is cut where its file bytes hold a long run of zero pages (Linux's .bss, .brk and
.init.scratch are stored as zeros in the file): the pieces keep their addresses and
memory sizes, and the zeros become memory size past file size, which a loader zeroes.
The guest sees exactly the same bytes at the same physical addresses.

--missing-ok: when BZIMAGE does not exist, write an empty OUT.elf (the test then skips)
instead of failing. --depfile names BZIMAGE as the input, for ninja.
"""
import argparse
import lzma
import os
import struct
import sys

PT_LOAD, PT_NOTE = 1, 4
XEN_ELFNOTE_PHYS32_ENTRY = 18
PAGE = 4096
ZERO_RUN_PAGES = 16       # drop runs of at least 64 KiB of zeros from the file
MAX_LOAD_SEGMENTS = 16    # libhv/loader's image_info::max_segments
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
NHDR = struct.Struct("<III")


class Bad(Exception):
    pass


def payload(bz):
    if len(bz) < 0x250 or bz[0x202:0x206] != b"HdrS":
        raise Bad("not a bzImage: no 'HdrS' boot protocol signature at 0x202")
    version = struct.unpack_from("<H", bz, 0x206)[0]
    if version < 0x208:
        raise Bad(f"boot protocol {version >> 8}.{version & 0xff} has no payload_offset (needs 2.08+)")
    setup_sects = bz[0x1f1] or 4
    offset, length = struct.unpack_from("<II", bz, 0x248)
    start = (setup_sects + 1) * 512 + offset
    data = bz[start:start + length]
    if len(data) != length:
        raise Bad(f"payload [{start:#x}, +{length:#x}) runs past the end of the bzImage")
    if not data.startswith(b"\xfd7zXZ\x00"):
        raise Bad(f"payload is not xz-compressed (starts with {data[:6].hex()}); only xz is supported")
    try:
        # A bzImage may append the relocation table after the xz stream: ignore trailing bytes.
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    except lzma.LZMAError as e:
        raise Bad(f"payload does not decompress as xz: {e}")


def pvh_entry(elf, off, size):
    at, end = off, off + size
    while end - at >= NHDR.size:
        namesz, descsz, ntype = NHDR.unpack_from(elf, at)
        name_at = at + NHDR.size
        desc_at = name_at + (namesz + 3) // 4 * 4
        name = elf[name_at:name_at + namesz]
        if ntype == XEN_ELFNOTE_PHYS32_ENTRY and name == b"Xen\0" and descsz in (4, 8):
            return int.from_bytes(elf[desc_at:desc_at + descsz], "little")
        at = desc_at + (descsz + 3) // 4 * 4
    return None


def pieces(data, paddr, vaddr, memsz):
    """Splits one segment's file bytes at long zero-page runs: (paddr, vaddr, bytes, memsz)."""
    npages = (len(data) + PAGE - 1) // PAGE
    nonzero = [data[i * PAGE:(i + 1) * PAGE].rstrip(b"\0") != b"" for i in range(npages)]
    runs, i = [], 0  # [first page, end page) of data to keep
    while i < npages:
        if not nonzero[i]:
            j = i
            while j < npages and not nonzero[j]:
                j += 1
            if j - i < ZERO_RUN_PAGES and runs and j < npages:
                runs[-1][1] = j  # a short hole: keep it inside the current piece
            i = j
            continue
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
        i += 1
    if not runs or runs[0][0] != 0:
        runs.insert(0, [0, 0])  # the segment's start keeps a (maybe empty) piece: memory size covers the zeros
    out = []
    for k, (first, last) in enumerate(runs):
        start = first * PAGE
        end = runs[k + 1][0] * PAGE if k + 1 < len(runs) else memsz
        body = data[start:last * PAGE].rstrip(b"\0")
        out.append((paddr + start, vaddr + start, body, end - start))
    return out


def shrink(elf):
    if len(elf) < EHDR.size or elf[:4] != b"\x7fELF":
        raise Bad("decompressed payload is not an ELF file")
    if elf[4] != 2 or elf[5] != 1:
        raise Bad("decompressed payload is not a little-endian ELF64 file")
    ident, etype, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, *_ = EHDR.unpack_from(elf)
    if phentsize != PHDR.size or phnum == 0:
        raise Bad("ELF file has no usable program headers")
    loads, notes = [], []
    for i in range(phnum):
        ptype, pflags, off, vaddr, paddr, filesz, memsz, align = PHDR.unpack_from(elf, phoff + i * PHDR.size)
        if ptype == PT_LOAD:
            loads.append((pflags, elf[off:off + filesz], paddr, vaddr, memsz))
        elif ptype == PT_NOTE:
            notes.append((off, filesz, vaddr, paddr))
    entry32 = None
    note = None
    for n in notes:
        entry32 = pvh_entry(elf, n[0], n[1])
        if entry32 is not None:
            note = n
            break
    if entry32 is None:
        raise Bad("ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel lacks CONFIG_PVH")

    segments = []  # (flags, paddr, vaddr, bytes, memsz)
    for pflags, data, paddr, vaddr, memsz in loads:
        for p, v, body, m in pieces(data, paddr, vaddr, memsz):
            segments.append((pflags, p, v, body, m))
    if len(segments) > MAX_LOAD_SEGMENTS:
        raise Bad(f"{len(segments)} load segments after shrinking: more than the loader's {MAX_LOAD_SEGMENTS}")

    nph = len(segments) + 1
    at = (EHDR.size + nph * PHDR.size + PAGE - 1) // PAGE * PAGE
    phdrs, blobs = [], []
    note_off = None
    for pflags, p, v, body, m in segments:
        phdrs.append(PHDR.pack(PT_LOAD, pflags, at, v, p, len(body), m, PAGE))
        blobs.append((at, body))
        if p <= note[3] and note[3] + note[1] <= p + len(body):
            note_off = at + (note[3] - p)
        at = (at + len(body) + PAGE - 1) // PAGE * PAGE
    if note_off is None:
        raise Bad("the PVH note lies outside the loaded bytes")
    phdrs.append(PHDR.pack(PT_NOTE, 4, note_off, note[2], note[3], note[1], note[1], 4))
    out = bytearray(at)
    out[0:EHDR.size] = EHDR.pack(ident, etype, machine, version, entry, EHDR.size, 0, flags, EHDR.size,
                                 PHDR.size, nph, 64, 0, 0)
    out[EHDR.size:EHDR.size + nph * PHDR.size] = b"".join(phdrs)
    for off, body in blobs:
        out[off:off + len(body)] = body
    if pvh_entry(out, note_off, note[1]) != entry32:
        raise Bad("internal error: the note moved wrongly")
    return bytes(out), entry32, len(segments)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bzimage")
    ap.add_argument("out")
    ap.add_argument("--depfile")
    ap.add_argument("--missing-ok", action="store_true")
    a = ap.parse_args(argv)
    if a.depfile:
        with open(a.depfile, "w") as f:
            f.write(f"{a.out}: {a.bzimage}\n")
    if not os.path.isfile(a.bzimage):
        if not a.missing_ok:
            print(f"vmlinux_pvh: {a.bzimage} not found", file=sys.stderr)
            return 1
        open(a.out, "wb").close()
        # Older than any bzImage that appears later (./dev linux-guest keeps the
        # package's old file times), so ninja extracts it then.
        os.utime(a.out, (0, 0))
        return 0
    try:
        with open(a.bzimage, "rb") as f:
            elf = payload(f.read())
        out, entry, nseg = shrink(elf)
    except Bad as e:
        print(f"vmlinux_pvh: {a.bzimage}: {e}", file=sys.stderr)
        return 1
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, a.out)
    print(f"vmlinux_pvh: {a.out}: {len(out)} bytes (vmlinux {len(elf)}), {nseg} load segments, PVH entry {entry:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
