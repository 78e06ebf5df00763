// Image identification: ELF program headers and notes, multiboot1/2 headers, the Linux
// setup header. Each structure is copied out of the image before it is looked at.
#include <cstddef>
#include <cstdint>
#include "libhv/loader/formats.hpp"
#include "libhv/loader/loader.hpp"

namespace hv::loader {
namespace {

using bytes = std::span<const std::byte>;

template <class T>
bool copy_out(bytes img, std::uint64_t off, T& out) {
    if (off > img.size() || img.size() - off < sizeof(T)) return false;
    __builtin_memcpy(&out, img.data() + off, sizeof(T));
    return true;
}

bool within(bytes img, std::uint64_t off, std::uint64_t len) { return off <= img.size() && len <= img.size() - off; }

// Two segments' guest-physical ranges [paddr, paddr + mem_size) intersect.
bool overlap(const load_segment& a, const load_segment& b) {
    return a.mem_size && b.mem_size && a.paddr < b.paddr + b.mem_size && b.paddr < a.paddr + a.mem_size;
}

status add_segment(image_info& out, bytes img, std::uint64_t off, std::uint64_t filesz, std::uint64_t paddr,
                   std::uint64_t memsz) {
    if (filesz > memsz) return fail(errc::bad_format, "ELF segment file size exceeds its memory size");
    if (!within(img, off, filesz)) return fail(errc::bad_format, "ELF segment runs past the end of the file");
    if (paddr + memsz < paddr) return fail(errc::bad_format, "ELF segment wraps the physical address space");
    if (memsz == 0) return {};
    if (out.elf_segment_count == image_info::max_segments) return fail(errc::overflow, "more than 16 ELF load segments");
    const load_segment s{off, filesz, paddr, memsz};
    for (std::size_t i = 0; i < out.elf_segment_count; ++i)
        if (overlap(out.elf_segments[i], s)) return fail(errc::bad_format, "ELF load segments overlap");
    out.elf_segments[out.elf_segment_count++] = s;
    return {};
}

// Looks for Xen's PHYS32_ENTRY note in [off, off + size).
status scan_notes(image_info& out, bytes img, std::uint64_t off, std::uint64_t size) {
    if (!within(img, off, size)) return fail(errc::bad_format, "ELF note area runs past the end of the file");
    std::uint64_t at = off;
    const std::uint64_t end = off + size;
    while (end - at >= sizeof(elf::nhdr)) {
        elf::nhdr n;
        (void)copy_out(img, at, n);
        const std::uint64_t name_at = at + sizeof n;
        const std::uint64_t name_len = (std::uint64_t{n.namesz} + 3) & ~std::uint64_t{3};
        const std::uint64_t desc_at = name_at + name_len;
        const std::uint64_t desc_len = (std::uint64_t{n.descsz} + 3) & ~std::uint64_t{3};
        if (name_len > end - name_at || desc_len > end - desc_at)
            return fail(errc::bad_format, "ELF note runs past its note area");
        char name[4];
        if (n.type == xen_elfnote_phys32_entry && n.namesz == 4 && copy_out(img, name_at, name) &&
            name[0] == 'X' && name[1] == 'e' && name[2] == 'n' && name[3] == 0) {
            if (n.descsz != 4 && n.descsz != 8) return fail(errc::bad_format, "PVH entry note descriptor is not 4 or 8 bytes");
            std::uint64_t entry = 0;
            __builtin_memcpy(&entry, img.data() + desc_at, n.descsz);
            if (entry > 0xffff'ffff) return fail(errc::bad_format, "PVH entry point above 4 GiB");
            out.pvh = true;
            out.pvh_entry = static_cast<std::uint32_t>(entry);
        }
        at = desc_at + desc_len;
    }
    return {};
}

template <class Ehdr, class Phdr, class Shdr>
status parse_elf_class(image_info& out, bytes img) {
    Ehdr eh;
    if (!copy_out(img, 0, eh)) return fail(errc::bad_format, "file smaller than its ELF header");
    if (eh.type != elf::type_exec) return fail(errc::not_supported, "ELF file is not an executable (ET_EXEC)");
    if (eh.machine != (out.elf64 ? elf::machine_x86_64 : elf::machine_386))
        return fail(errc::not_supported, "ELF machine is not x86 (EM_386 for ELF32, EM_X86_64 for ELF64)");
    out.elf_entry = eh.entry;
    if (eh.phnum == 0) return fail(errc::bad_format, "ELF file has no program headers");
    if (eh.phentsize != sizeof(Phdr)) return fail(errc::bad_format, "ELF program header size is wrong for its class");
    if (!within(img, eh.phoff, std::uint64_t{eh.phnum} * sizeof(Phdr)))
        return fail(errc::bad_format, "ELF program headers run past the end of the file");
    bool saw_note_segment = false;
    for (unsigned i = 0; i < eh.phnum; ++i) {
        Phdr ph;
        (void)copy_out(img, eh.phoff + std::uint64_t{i} * sizeof ph, ph);
        if (ph.type == elf::pt_load) {
            HV_TRY(add_segment(out, img, ph.offset, ph.filesz, ph.paddr, ph.memsz));
        } else if (ph.type == elf::pt_note) {
            saw_note_segment = true;
            HV_TRY(scan_notes(out, img, ph.offset, ph.filesz));
        }
    }
    if (out.elf_segment_count == 0) return fail(errc::bad_format, "ELF file has no PT_LOAD segment");
    // Sections only matter when no note segment carried the entry note.
    if (!out.pvh && !saw_note_segment && eh.shnum != 0) {
        if (eh.shentsize != sizeof(Shdr)) return fail(errc::bad_format, "ELF section header size is wrong for its class");
        if (!within(img, eh.shoff, std::uint64_t{eh.shnum} * sizeof(Shdr)))
            return fail(errc::bad_format, "ELF section headers run past the end of the file");
        for (unsigned i = 0; i < eh.shnum; ++i) {
            Shdr sh;
            (void)copy_out(img, eh.shoff + std::uint64_t{i} * sizeof sh, sh);
            if (sh.type == elf::sht_note) HV_TRY(scan_notes(out, img, sh.offset, sh.size));
        }
    }
    return {};
}

status parse_elf(image_info& out, bytes img) {
    std::uint8_t ident[16];
    if (!copy_out(img, 0, ident)) return fail(errc::bad_format, "file smaller than its ELF header");
    if (ident[5] != elf::data_lsb) return fail(errc::not_supported, "ELF file is not little-endian");
    if (ident[4] == elf::class32) return parse_elf_class<elf::ehdr32, elf::phdr32, elf::shdr32>(out, img);
    if (ident[4] == elf::class64) {
        out.elf64 = true;
        return parse_elf_class<elf::ehdr64, elf::phdr64, elf::shdr64>(out, img);
    }
    return fail(errc::bad_format, "ELF class is neither ELF32 nor ELF64");
}

// The a.out kludge (mb1 flag 16, mb2 address tag): the header says where its own
// magic is loaded; the image's bytes from load_addr's file offset go to load_addr.
status kludge_segment(bytes img, std::uint64_t header_off, std::uint32_t header_addr, std::uint32_t load_addr,
                      std::uint32_t load_end_addr, std::uint32_t bss_end_addr, load_segment& seg) {
    if (load_addr > header_addr || header_addr - load_addr > header_off)
        return fail(errc::bad_format, "multiboot load_addr puts the image start before the file start");
    const std::uint64_t file_off = header_off - (header_addr - load_addr);
    std::uint64_t filesz = img.size() - file_off;
    if (load_end_addr != 0) {
        if (load_end_addr < load_addr) return fail(errc::bad_format, "multiboot load_end_addr below load_addr");
        filesz = load_end_addr - load_addr;
        if (!within(img, file_off, filesz)) return fail(errc::bad_format, "file size < multiboot header's load_end_addr claims");
    }
    std::uint64_t memsz = filesz;
    if (bss_end_addr != 0) {
        if (bss_end_addr < load_addr + filesz) return fail(errc::bad_format, "multiboot bss_end_addr below the loaded image's end");
        memsz = bss_end_addr - load_addr;
    }
    if (memsz == 0) return fail(errc::bad_format, "multiboot image loads no bytes");
    seg = {file_off, filesz, load_addr, memsz};
    return {};
}

// Returns the first failed candidate's message through `diag` when no header is found.
status find_mb1(image_info& out, bytes img, const char*& diag) {
    const std::size_t limit = img.size() < mb1::search_limit ? img.size() : mb1::search_limit;
    for (std::size_t off = 0; off + 12 <= limit; off += 4) {
        std::uint32_t w[3];
        (void)copy_out(img, off, w);
        if (w[0] != mb1::header_magic) continue;
        if (w[0] + w[1] + w[2] != 0) {
            if (!diag) diag = "multiboot1 header checksum does not sum to zero";
            continue;
        }
        const std::uint32_t flags = w[1];
        if (flags & mb1::required_mask & ~(mb1::page_align_modules | mb1::want_memory_info))
            return fail(errc::not_supported, "multiboot1 header requires a feature this loader lacks (video mode or unknown)");
        out.mb1_flags = flags;
        if (flags & mb1::aout_kludge) {
            mb1::header h;
            if (!copy_out(img, off, h)) return fail(errc::bad_format, "multiboot1 header address fields run past the end of the file");
            HV_TRY(kludge_segment(img, off, h.header_addr, h.load_addr, h.load_end_addr, h.bss_end_addr, out.mb1_segment));
            out.mb1_aout = true;
            out.mb1_entry = h.entry_addr;
        }
        out.multiboot1 = true;
        return {};
    }
    return {};
}

// Info tags this loader can always write (ACPI ones need an RSDP, checked at load).
constexpr std::uint32_t mb2_providable = (1u << boot::mb2::cmdline) | (1u << boot::mb2::loader_name) |
                                         (1u << boot::mb2::module) | (1u << boot::mb2::basic_meminfo) |
                                         (1u << boot::mb2::mmap) | (1u << boot::mb2::acpi_old) |
                                         (1u << boot::mb2::acpi_new);

status parse_mb2_tags(image_info& out, bytes img, std::uint64_t off, std::uint32_t length) {
    bool saw_end = false;
    for (std::uint64_t at = off + sizeof(mb2::header); at + sizeof(mb2::header_tag) <= off + length;) {
        mb2::header_tag t;
        (void)copy_out(img, at, t);
        if (t.size < sizeof t || t.size > off + length - at)
            return fail(errc::bad_format, "multiboot2 header tag size runs past header_length");
        const bool optional = t.flags & mb2::tag_optional;
        switch (t.type) {
        case mb2::end: saw_end = true; break;
        case mb2::info_request:
            for (std::uint64_t i = sizeof t; i + 4 <= t.size; i += 4) {
                std::uint32_t type = 0;
                (void)copy_out(img, at + i, type);
                if (optional) continue;
                if (type >= 32 || !(mb2_providable & (1u << type)))
                    return fail(errc::not_supported, "multiboot2 header requires an info tag this loader cannot provide");
                out.mb2_required_info |= 1u << type;
            }
            break;
        case mb2::address: {
            mb2::address_tag a;
            if (t.size < sizeof a || !copy_out(img, at, a)) return fail(errc::bad_format, "multiboot2 address tag too small");
            HV_TRY(kludge_segment(img, off, a.header_addr, a.load_addr, a.load_end_addr, a.bss_end_addr, out.mb2_segment));
            out.mb2_address = true;
            break;
        }
        case mb2::entry_address: {
            mb2::entry_tag e;
            if (t.size < sizeof e || !copy_out(img, at, e)) return fail(errc::bad_format, "multiboot2 entry address tag too small");
            out.mb2_has_entry = true;
            out.mb2_entry = e.entry_addr;
            break;
        }
        case mb2::console_flags:
        case mb2::module_align:  // modules are always page-aligned
        case mb2::relocatable:   // loading at the link address is always allowed
            break;
        default:
            if (!optional) return fail(errc::not_supported, "multiboot2 header has a required tag this loader does not support (framebuffer or EFI)");
        }
        if (saw_end) break;
        at += (std::uint64_t{t.size} + 7) & ~std::uint64_t{7};
    }
    if (!saw_end) return fail(errc::bad_format, "multiboot2 header has no end tag");
    return {};
}

status find_mb2(image_info& out, bytes img, const char*& diag) {
    const std::size_t limit = img.size() < mb2::search_limit ? img.size() : mb2::search_limit;
    for (std::size_t off = 0; off + sizeof(mb2::header) <= limit; off += 8) {
        mb2::header h;
        (void)copy_out(img, off, h);
        if (h.magic != mb2::header_magic) continue;
        if (h.magic + h.architecture + h.header_length + h.checksum != 0) {
            if (!diag) diag = "multiboot2 header checksum does not sum to zero";
            continue;
        }
        if (h.architecture != mb2::arch_i386) return fail(errc::not_supported, "multiboot2 header architecture is not i386");
        if (h.header_length < sizeof h + sizeof(mb2::header_tag) || !within(img, off, h.header_length))
            return fail(errc::bad_format, "multiboot2 header_length runs past the end of the file");
        HV_TRY(parse_mb2_tags(out, img, off, h.header_length));
        out.multiboot2 = true;
        return {};
    }
    return {};
}

status parse_linux(image_info& out, bytes img) {
    using namespace linux_boot;
    setup_header h;
    if (!copy_out(img, setup_header_offset, h)) return fail(errc::bad_format, "bzImage smaller than its setup header");
    if (h.boot_flag != boot_flag_value) return fail(errc::bad_format, "Linux setup header boot_flag is not 0xAA55");
    if (h.version < 0x0206) return fail(errc::not_supported, "Linux boot protocol older than 2.06 is not supported");
    if (!(h.loadflags & loaded_high)) return fail(errc::not_supported, "Linux image is a zImage (LOADED_HIGH clear)");
    const std::uint64_t setup_sects = h.setup_sects ? h.setup_sects : 4;
    const std::uint64_t kernel_off = (setup_sects + 1) * 512;
    if (kernel_off >= img.size()) return fail(errc::bad_format, "bzImage ends inside its setup sectors");
    const std::uint64_t kernel_size = img.size() - kernel_off;
    if (std::uint64_t{h.syssize} * 16 > kernel_size) return fail(errc::bad_format, "bzImage smaller than its syssize claims");
    out.linux_bzimage = true;
    out.linux_version = h.version;
    out.linux_entry64 = h.version >= 0x020c && (h.xloadflags & xlf_kernel_64);
    out.linux_kernel_offset = kernel_off;
    out.linux_kernel_size = kernel_size;
    out.linux_init_size = h.version >= 0x020a ? h.init_size : 0;
    out.linux_relocatable = h.relocatable_kernel != 0;
    out.linux_kernel_alignment = h.kernel_alignment;
    out.linux_pref_address = h.version >= 0x020a ? h.pref_address : 0;
    if (out.linux_relocatable && h.kernel_alignment && (h.kernel_alignment & (h.kernel_alignment - 1)))
        return fail(errc::bad_format, "Linux kernel_alignment is not a power of two");
    out.linux_initrd_addr_max = h.initrd_addr_max;
    out.linux_cmdline_size = h.cmdline_size;
    return {};
}

} // namespace

result<image_info> probe_entries(bytes img) {
    image_info out;
    std::uint32_t sig = 0;
    if (copy_out(img, 0x202, sig) && sig == linux_boot::header_signature) {
        HV_TRY(parse_linux(out, img));
        return out;
    }
    const char* diag = nullptr;
    HV_TRY(find_mb1(out, img, diag));
    HV_TRY(find_mb2(out, img, diag));
    std::uint8_t magic[4] = {};
    const bool is_elf = copy_out(img, 0, magic) && magic[0] == elf::magic[0] && magic[1] == elf::magic[1] &&
                        magic[2] == elf::magic[2] && magic[3] == elf::magic[3];
    if (is_elf) {
        out.elf = true;
        HV_TRY(parse_elf(out, img));
    }
    // Multiboot without an ELF image needs the header's own load addresses; a header
    // without them offers no entry (e.g. an ELF's header copied into a flat image).
    if (out.multiboot1 && !out.mb1_aout && !is_elf) {
        out.multiboot1 = false;
        out.unusable_header = "bad ELF magic: multiboot1 image is neither ELF nor uses the a.out kludge";
    }
    if (out.multiboot2 && !out.mb2_address && !is_elf) {
        out.multiboot2 = false;
        if (!out.unusable_header)
            out.unusable_header = "bad ELF magic: multiboot2 image is neither ELF nor has an address tag";
    }
    if (out.multiboot2 && !out.mb2_has_entry && !is_elf)
        return fail(errc::bad_format, "multiboot2 a.out-style image has no entry address tag");
    if (out.multiboot1 && out.mb1_aout && out.mb1_entry == 0)
        return fail(errc::bad_format, "multiboot1 a.out kludge has no entry_addr");
    if (!out.offers_entry() && !out.unusable_header && diag) return fail(errc::bad_format, diag);
    return out;
}

result<image_info> probe(bytes img) {
    auto out = probe_entries(img);
    HV_TRY(out);
    if (out->unusable_header) return fail(errc::bad_format, out->unusable_header);
    if (!out->offers_entry()) {
        if (out->elf) return fail(errc::not_supported, "ELF image has no multiboot header and no PVH entry note");
        return fail(errc::bad_format, "bad ELF magic and no multiboot or Linux header: not a kernel image");
    }
    return out;
}

} // namespace hv::loader
