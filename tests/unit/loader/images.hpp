// Synthesized guest kernel images for unit tests: ELF32/64 with multiboot1/2 headers or
// PVH notes, raw multiboot2, Linux bzImages and flat real-mode images. Used by
// unit-loader and unit-vm (vm::choose_entry).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>
#include "libhv/loader/formats.hpp"

namespace hv::loader::test {

using image = std::vector<std::byte>;

template <class T>
inline void put(image& img, std::size_t off, const T& v) {
    if (img.size() < off + sizeof v) img.resize(off + sizeof v);
    std::memcpy(img.data() + off, &v, sizeof v);
}
template <class T>
inline T get(const image& img, std::size_t off) {
    T v;
    std::memcpy(&v, img.data() + off, sizeof v);
    return v;
}
inline void append(image& img, const void* p, std::size_t n) {
    const std::size_t at = img.size();
    img.resize(at + n);
    if (n) std::memcpy(img.data() + at, p, n);
}
inline void pad_to(image& img, std::size_t align) {
    while (img.size() % align) img.push_back(std::byte{0});
}

inline image random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    image v(n);
    for (auto& b : v) b = std::byte(rng());
    return v;
}

// ---- Image builders ----

struct seg {
    std::uint64_t paddr;
    image data;
    std::uint64_t memsz;
};

struct elf_spec {
    bool is64 = false;
    std::uint64_t entry = 0;
    std::vector<seg> segs;
    image header_blob;        // multiboot header(s), placed right after the program headers
    image notes;              // note area
    bool notes_as_section = false;
};

// Returns the image; offsets of the blob and the program headers are fixed by layout.
inline image build_elf(const elf_spec& s) {
    const std::size_t ehsize = s.is64 ? 64 : 52, phsize = s.is64 ? 56 : 32, shsize = s.is64 ? 64 : 40;
    const bool note_ph = !s.notes.empty() && !s.notes_as_section;
    const std::size_t phnum = s.segs.size() + (note_ph ? 1 : 0);
    image img(ehsize + phnum * phsize);
    std::size_t blob_off = img.size();
    pad_to(img, 8);
    blob_off = img.size();
    append(img, s.header_blob.data(), s.header_blob.size());
    pad_to(img, 4);
    const std::size_t notes_off = img.size();
    append(img, s.notes.data(), s.notes.size());
    std::vector<std::size_t> seg_off;
    for (const seg& sg : s.segs) {
        pad_to(img, 16);
        seg_off.push_back(img.size());
        append(img, sg.data.data(), sg.data.size());
    }
    pad_to(img, 8);
    const std::size_t sh_off = img.size();
    if (s.notes_as_section) img.resize(img.size() + 2 * shsize);  // null section + .note

    img[0] = std::byte{0x7f}; img[1] = std::byte{'E'}; img[2] = std::byte{'L'}; img[3] = std::byte{'F'};
    img[4] = std::byte(s.is64 ? 2 : 1);
    img[5] = std::byte{1};
    img[6] = std::byte{1};
    put<std::uint16_t>(img, 16, 2);
    put<std::uint16_t>(img, 18, s.is64 ? 62 : 3);
    put<std::uint32_t>(img, 20, 1);
    auto phdr = [&](std::size_t i, std::uint32_t type, std::uint64_t off, std::uint64_t paddr, std::uint64_t filesz,
                    std::uint64_t memsz) {
        const std::size_t at = ehsize + i * phsize;
        if (s.is64) {
            elf::phdr64 p{type, 7, off, paddr, paddr, filesz, memsz, 16};
            put(img, at, p);
        } else {
            elf::phdr32 p{type, std::uint32_t(off), std::uint32_t(paddr), std::uint32_t(paddr), std::uint32_t(filesz),
                          std::uint32_t(memsz), 7, 16};
            put(img, at, p);
        }
    };
    for (std::size_t i = 0; i < s.segs.size(); ++i)
        phdr(i, elf::pt_load, seg_off[i], s.segs[i].paddr, s.segs[i].data.size(), s.segs[i].memsz);
    if (note_ph) phdr(s.segs.size(), elf::pt_note, notes_off, 0, s.notes.size(), 0);
    if (s.is64) {
        put<std::uint64_t>(img, 24, s.entry);
        put<std::uint64_t>(img, 32, ehsize);  // phoff
        put<std::uint64_t>(img, 40, s.notes_as_section ? sh_off : 0);
        put<std::uint16_t>(img, 52, ehsize);
        put<std::uint16_t>(img, 54, phsize);
        put<std::uint16_t>(img, 56, phnum);
        put<std::uint16_t>(img, 58, shsize);
        put<std::uint16_t>(img, 60, s.notes_as_section ? 2 : 0);
        if (s.notes_as_section) {
            elf::shdr64 sh{1, elf::sht_note, 2, 0, notes_off, s.notes.size(), 0, 0, 4, 0};
            put(img, sh_off + shsize, sh);
        }
    } else {
        put<std::uint32_t>(img, 24, std::uint32_t(s.entry));
        put<std::uint32_t>(img, 28, ehsize);
        put<std::uint32_t>(img, 32, s.notes_as_section ? std::uint32_t(sh_off) : 0);
        put<std::uint16_t>(img, 40, ehsize);
        put<std::uint16_t>(img, 42, phsize);
        put<std::uint16_t>(img, 44, phnum);
        put<std::uint16_t>(img, 46, shsize);
        put<std::uint16_t>(img, 48, s.notes_as_section ? 2 : 0);
        if (s.notes_as_section) {
            elf::shdr32 sh{1, elf::sht_note, 2, 0, std::uint32_t(notes_off), std::uint32_t(s.notes.size()), 0, 0, 4, 0};
            put(img, sh_off + shsize, sh);
        }
    }
    (void)blob_off;
    return img;
}

inline image note(std::string_view name, std::uint32_t type, const void* desc, std::uint32_t descsz) {
    image n;
    const std::uint32_t h[3] = {std::uint32_t(name.size() + 1), descsz, type};
    append(n, h, sizeof h);
    append(n, name.data(), name.size());
    n.push_back(std::byte{0});
    pad_to(n, 4);
    append(n, desc, descsz);
    pad_to(n, 4);
    return n;
}

inline image pvh_note(std::uint32_t entry) { return note("Xen", xen_elfnote_phys32_entry, &entry, 4); }

inline image mb1_header(std::uint32_t flags) {
    image h;
    const std::uint32_t w[3] = {mb1::header_magic, flags, std::uint32_t(0u - mb1::header_magic - flags)};
    append(h, w, sizeof w);
    return h;
}

struct mb2_tag_spec {
    std::uint16_t type, flags;
    std::vector<std::uint32_t> body;
};

inline image mb2_header(const std::vector<mb2_tag_spec>& tags, bool end_tag = true) {
    image t;
    for (const auto& tag : tags) {
        const std::uint32_t size = std::uint32_t(8 + tag.body.size() * 4);
        const mb2::header_tag h{tag.type, tag.flags, size};
        append(t, &h, sizeof h);
        append(t, tag.body.data(), tag.body.size() * 4);
        pad_to(t, 8);
    }
    if (end_tag) {
        const mb2::header_tag e{0, 0, 8};
        append(t, &e, sizeof e);
    }
    const std::uint32_t len = std::uint32_t(16 + t.size());
    const std::uint32_t h[4] = {mb2::header_magic, 0, len, std::uint32_t(0u - mb2::header_magic - 0 - len)};
    image out;
    append(out, h, sizeof h);
    append(out, t.data(), t.size());
    return out;
}

// A kernel: text at 2 MiB holding the entry, data + bss at 3 MiB.
inline elf_spec kernel(bool is64) {
    elf_spec s;
    s.is64 = is64;
    s.entry = 0x200000 + 0x40;
    s.segs.push_back({0x200000, random_bytes(0x1234, 1), 0x1234});
    s.segs.push_back({0x300000, random_bytes(0x800, 2), 0x5000});
    return s;
}

struct bz_spec {
    std::uint16_t version = 0x020f;
    std::uint8_t setup_sects = 4;
    std::uint16_t xloadflags = linux_boot::xlf_kernel_64 | linux_boot::xlf_can_be_loaded_above_4g;
    std::uint8_t loadflags = linux_boot::loaded_high;
    std::uint32_t init_size = 0x400000;
    std::uint32_t initrd_addr_max = 0x7fffffff;
    std::uint32_t cmdline_size = 2047;
    std::size_t kernel_size = 0x10000;
    std::uint64_t pref_address = 0;
    std::uint32_t kernel_alignment = 0x200000;
    std::uint8_t relocatable = 1;
};

inline image build_bzimage(const bz_spec& b) {
    const std::size_t setup = (std::size_t(b.setup_sects ? b.setup_sects : 4) + 1) * 512;
    image img = random_bytes(setup, 9);
    const image k = random_bytes(b.kernel_size, 10);
    img.insert(img.end(), k.begin(), k.end());
    // Offsets straight from the boot protocol's header table, not the loader's struct.
    put<std::uint8_t>(img, 0x1f1, b.setup_sects);
    put<std::uint32_t>(img, 0x1f4, std::uint32_t(b.kernel_size / 16));
    put<std::uint16_t>(img, 0x1fe, 0xaa55);
    put<std::uint8_t>(img, 0x200, 0xeb);
    put<std::uint8_t>(img, 0x201, 0x26c - 0x202);
    put<std::uint32_t>(img, 0x202, 0x53726448);
    put<std::uint16_t>(img, 0x206, b.version);
    put<std::uint8_t>(img, 0x210, 0);
    put<std::uint8_t>(img, 0x211, b.loadflags);
    put<std::uint32_t>(img, 0x214, 0x100000);
    put<std::uint32_t>(img, 0x218, 0);
    put<std::uint32_t>(img, 0x21c, 0);
    put<std::uint32_t>(img, 0x228, 0);
    put<std::uint32_t>(img, 0x22c, b.initrd_addr_max);
    put<std::uint32_t>(img, 0x230, b.kernel_alignment);
    put<std::uint8_t>(img, 0x234, b.relocatable);
    put<std::uint16_t>(img, 0x236, b.xloadflags);
    put<std::uint32_t>(img, 0x238, b.cmdline_size);
    put<std::uint64_t>(img, 0x258, b.pref_address);
    put<std::uint32_t>(img, 0x260, b.init_size);
    return img;
}

inline image boot_image(std::size_t size, unsigned seed) {
    image img = random_bytes(size, seed);
    img[510] = std::byte{0x55};
    img[511] = std::byte{0xaa};
    return img;
}

} // namespace hv::loader::test
