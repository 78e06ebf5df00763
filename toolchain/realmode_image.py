#!/usr/bin/env python3
"""Makes a flat real-mode image (loader::protocol::real_mode) of a libhv ELF image.

    realmode_image.py STUB.bin IMAGE.elf OUT.img

OUT.img = libhv's real-mode stub (libhv/boot/realmode_stub.s, one 512-byte sector with
the 0x55 0xAA signature) followed by the ELF's loaded bytes as one flat range (zeros
between segments, none for a trailing .bss, padded to dwords). The stub's hand-off block
gets the range's physical address, its size and the ELF entry (libhv's hv_entry32, the
32-bit entry that multiboot1 uses too). The image must fit between 0x7c00 and the EBDA
at 0x9fc00 (608 KiB) and its range may not overlap [0x7c00, 0x9fc00).
"""
import struct
import sys

SECTOR = 512
LOAD_AT = 0x7C00
EBDA = 0x9FC00
HANDOFF_OFFSET = 472  # boot::real_mode_handoff_offset
MAGIC = 0x4D525648  # boot::real_mode_magic, "HVRM"
PT_LOAD = 1


def fail(msg):
    sys.exit(f"realmode_image.py: {msg}")


def loaded_range(elf):
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        fail("not an ELF64 file")
    entry, phoff = struct.unpack_from("<QQ", elf, 0x18)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _flags, off, _vaddr, paddr, filesz, _memsz = struct.unpack_from("<IIQQQQQ", elf, phoff + i * phentsize)
        if p_type == PT_LOAD and filesz:
            segments.append((paddr, elf[off:off + filesz]))
    if not segments:
        fail("the ELF has no loaded bytes")
    lo = min(p for p, _ in segments)
    hi = max(p + len(b) for p, b in segments)
    flat = bytearray(hi - lo)
    for p, b in segments:
        flat[p - lo:p - lo + len(b)] = b
    flat += bytes(-len(flat) % 4)
    if entry >= 1 << 32 or hi > 1 << 32:
        fail("the ELF's entry or loaded bytes lie above 4 GiB (the stub jumps in 32-bit mode)")
    if lo < EBDA and hi > LOAD_AT:
        fail(f"the ELF loads at {lo:#x}-{hi:#x}, over the flat image's own place {LOAD_AT:#x}-{EBDA:#x}")
    return lo, bytes(flat), entry


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    stub = bytearray(open(sys.argv[1], "rb").read())
    if len(stub) != SECTOR or stub[510:512] != b"\x55\xaa":
        fail("the stub is not one 512-byte sector with the boot signature")
    if struct.unpack_from("<I", stub, HANDOFF_OFFSET)[0] != MAGIC:
        fail("the stub's hand-off block is not at offset 472")
    lo, payload, entry = loaded_range(open(sys.argv[2], "rb").read())
    if SECTOR + len(payload) > EBDA - LOAD_AT:
        fail(f"{SECTOR + len(payload)} bytes: larger than the {EBDA - LOAD_AT} between 0x7c00 and the EBDA")
    struct.pack_into("<III", stub, HANDOFF_OFFSET + 4, lo, len(payload), entry)
    with open(sys.argv[3], "wb") as out:
        out.write(stub + payload)


if __name__ == "__main__":
    main()
