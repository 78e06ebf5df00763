#include "libhv/boot/boot_info.hpp"
#include "libhv/arch/x86/acpi_madt.hpp"

namespace hv::boot {
namespace {

template <class T>
hv::status read_obj(const memory_reader& mem, std::uint64_t paddr, T& out) {
    return mem.read(mem.ctx, paddr, &out, sizeof(T));
}

// Copies a NUL-terminated string from physical memory into the pool.
hv::result<std::string_view> read_string(const memory_reader& mem, std::uint64_t paddr, info& out) {
    if (paddr == 0) return std::string_view{};
    char* dst = out.pool + out.pool_used;
    std::size_t room = sizeof out.pool - out.pool_used;
    for (std::size_t i = 0; i < info::max_string; ++i) {
        if (i + 1 > room) return hv::fail(hv::errc::overflow, "boot strings exceed the 4 KiB string pool");
        char c;
        HV_TRY(mem.read(mem.ctx, paddr + i, &c, 1));
        dst[i] = c;
        if (c == '\0') {
            out.pool_used += i + 1;
            return std::string_view(dst, i);
        }
    }
    return hv::fail(hv::errc::bad_format, "boot string not NUL-terminated within 1024 bytes");
}

hv::status add_region(info& out, std::uint64_t base, std::uint64_t length, std::uint32_t type) {
    if (out.region_count == info::max_regions) return hv::fail(hv::errc::overflow, "more than 64 memory map entries");
    if (base + length < base) return hv::fail(hv::errc::bad_format, "memory map entry wraps past 2^64");
    // Unknown E820 types are treated as reserved, as the spec asks.
    auto t = (type >= 1 && type <= 5) ? region_type(type) : region_type::reserved;
    out.regions[out.region_count++] = region{base, length, t};
    return {};
}

hv::status add_module(info& out, std::uint64_t start, std::uint64_t end, std::string_view cmdline) {
    if (out.module_count == info::max_modules) return hv::fail(hv::errc::overflow, "more than 16 boot modules");
    if (end < start) return hv::fail(hv::errc::bad_format, "boot module ends before it starts");
    out.modules[out.module_count++] = module{start, end, cmdline};
    return {};
}

void reset(info& out, loader l, std::uint64_t start, std::uint64_t end) {
    out.source = l;
    out.cmdline = out.loader_name = {};
    out.rsdp = 0;
    out.first_instruction_tsc = 0;
    out.boot_drive = 0;
    out.info_start = start;
    out.info_end = end;
    out.region_count = out.module_count = out.pool_used = 0;
}

} // namespace

hv::status parse_multiboot2(std::uint64_t paddr, const memory_reader& mem, info& out) {
    mb2::fixed_header hdr;
    HV_TRY(read_obj(mem, paddr, hdr));
    if (hdr.total_size < sizeof hdr + sizeof(mb2::tag) || hdr.total_size > (1u << 20))
        return hv::fail(hv::errc::bad_format, "multiboot2 info total_size out of range");
    reset(out, loader::multiboot2, paddr, paddr + hdr.total_size);

    bool saw_end = false;
    for (std::uint64_t off = sizeof hdr; off + sizeof(mb2::tag) <= hdr.total_size;) {
        mb2::tag t;
        std::uint64_t at = paddr + off;
        HV_TRY(read_obj(mem, at, t));
        if (t.size < sizeof t) return hv::fail(hv::errc::bad_format, "multiboot2 tag smaller than its header");
        if (off + t.size > hdr.total_size) return hv::fail(hv::errc::bad_format, "multiboot2 tag runs past total_size");
        switch (t.type) {
        case mb2::end:
            saw_end = true;
            break;
        case mb2::cmdline: {
            auto s = read_string(mem, at + sizeof t, out);
            HV_TRY(s);
            if (s->size() >= t.size - sizeof t) return hv::fail(hv::errc::bad_format, "multiboot2 cmdline runs past its tag");
            out.cmdline = *s;
            break;
        }
        case mb2::loader_name: {
            auto s = read_string(mem, at + sizeof t, out);
            HV_TRY(s);
            out.loader_name = *s;
            break;
        }
        case mb2::module: {
            if (t.size < sizeof(mb2::module_tag)) return hv::fail(hv::errc::bad_format, "multiboot2 module tag too small");
            mb2::module_tag m;
            HV_TRY(read_obj(mem, at, m));
            auto s = read_string(mem, at + sizeof m, out);
            HV_TRY(s);
            HV_TRY(add_module(out, m.mod_start, m.mod_end, *s));
            break;
        }
        case mb2::mmap: {
            mb2::mmap_tag m;
            if (t.size < sizeof m) return hv::fail(hv::errc::bad_format, "multiboot2 mmap tag too small");
            HV_TRY(read_obj(mem, at, m));
            if (m.entry_size < sizeof(mb2::mmap_entry) || m.entry_size % 8)
                return hv::fail(hv::errc::bad_format, "multiboot2 mmap entry_size invalid");
            for (std::uint64_t e = sizeof m; e + m.entry_size <= t.size; e += m.entry_size) {
                mb2::mmap_entry ent;
                HV_TRY(read_obj(mem, at + e, ent));
                HV_TRY(add_region(out, ent.base_addr, ent.length, ent.type));
            }
            break;
        }
        case mb2::acpi_old:
        case mb2::acpi_new:
            // The tag holds a copy of the RSDP itself; prefer the ACPI 2.0 one.
            if (out.rsdp == 0 || t.type == mb2::acpi_new) out.rsdp = at + sizeof t;
            break;
        default:
            break;
        }
        if (saw_end) break;
        off += (t.size + 7) & ~std::uint64_t{7};
    }
    if (!saw_end) return hv::fail(hv::errc::bad_format, "multiboot2 info has no end tag");
    if (out.region_count == 0) return hv::fail(hv::errc::bad_format, "multiboot2 info has no memory map");
    return {};
}

hv::status parse_multiboot1(std::uint64_t paddr, const memory_reader& mem, info& out) {
    mb1::info mi;
    HV_TRY(read_obj(mem, paddr, mi));
    reset(out, loader::multiboot1, paddr, paddr + sizeof mi);

    if (mi.flags & mb1::has_cmdline) {
        auto s = read_string(mem, mi.cmdline, out);
        HV_TRY(s);
        out.cmdline = *s;
    }
    if (mi.flags & mb1::has_loader_name) {
        auto s = read_string(mem, mi.boot_loader_name, out);
        HV_TRY(s);
        out.loader_name = *s;
    }
    if (mi.flags & mb1::has_mods) {
        if (mi.mods_count > info::max_modules) return hv::fail(hv::errc::overflow, "more than 16 boot modules");
        for (std::uint32_t i = 0; i < mi.mods_count; ++i) {
            mb1::module m;
            HV_TRY(read_obj(mem, std::uint64_t(mi.mods_addr) + i * sizeof m, m));
            auto s = read_string(mem, m.string, out);
            HV_TRY(s);
            HV_TRY(add_module(out, m.mod_start, m.mod_end, *s));
        }
    }
    if (!(mi.flags & mb1::has_mmap)) return hv::fail(hv::errc::bad_format, "multiboot1 info has no memory map");
    for (std::uint64_t off = 0; off < mi.mmap_length;) {
        mb1::mmap_entry e;
        if (off + sizeof e > mi.mmap_length) return hv::fail(hv::errc::bad_format, "multiboot1 mmap entry runs past mmap_length");
        HV_TRY(read_obj(mem, std::uint64_t(mi.mmap_addr) + off, e));
        if (e.size < sizeof e - sizeof e.size) return hv::fail(hv::errc::bad_format, "multiboot1 mmap entry size too small");
        HV_TRY(add_region(out, e.base_addr, e.length, e.type));
        off += e.size + sizeof e.size;
    }
    if (out.region_count == 0) return hv::fail(hv::errc::bad_format, "multiboot1 memory map is empty");
    return {};
}

hv::status parse_pvh(std::uint64_t paddr, const memory_reader& mem, info& out) {
    pvh::start_info si;
    HV_TRY(read_obj(mem, paddr, si));
    if (si.magic != pvh_magic) return hv::fail(hv::errc::bad_format, "PVH start_info magic is not 0x336ec578");
    if (si.version < 1) return hv::fail(hv::errc::not_supported, "PVH start_info version 0 has no memory map");
    reset(out, loader::pvh, paddr, paddr + sizeof si);
    out.rsdp = si.rsdp_paddr;

    auto s = read_string(mem, si.cmdline_paddr, out);
    HV_TRY(s);
    out.cmdline = *s;
    if (si.nr_modules > info::max_modules) return hv::fail(hv::errc::overflow, "more than 16 boot modules");
    for (std::uint32_t i = 0; i < si.nr_modules; ++i) {
        pvh::modlist_entry m;
        HV_TRY(read_obj(mem, si.modlist_paddr + i * sizeof m, m));
        if (m.paddr + m.size < m.paddr) return hv::fail(hv::errc::bad_format, "PVH module wraps past 2^64");
        auto c = read_string(mem, m.cmdline_paddr, out);
        HV_TRY(c);
        HV_TRY(add_module(out, m.paddr, m.paddr + m.size, *c));
    }
    if (si.memmap_entries == 0) return hv::fail(hv::errc::bad_format, "PVH memory map is empty");
    if (si.memmap_entries > info::max_regions) return hv::fail(hv::errc::overflow, "more than 64 memory map entries");
    for (std::uint32_t i = 0; i < si.memmap_entries; ++i) {
        pvh::memmap_entry e;
        HV_TRY(read_obj(mem, si.memmap_paddr + i * sizeof e, e));
        HV_TRY(add_region(out, e.addr, e.size, e.type));
    }
    return {};
}

namespace {

// fw_cfg's traditional interface (QEMU's layout; libhv/dev/fw_cfg is the emulated one).
struct fw_cfg_reader {
    static constexpr std::uint16_t selector_port = 0x510, data_port = 0x511;
    static constexpr std::uint16_t signature = 0x0000, cmdline_size = 0x0014, cmdline_data = 0x0015, file_dir = 0x0019;
    const port_io& io;

    void select(std::uint16_t key) const { io.out16(io.ctx, selector_port, key); }
    void read(void* dst, std::size_t n) const {
        auto* d = static_cast<std::uint8_t*>(dst);
        for (std::size_t i = 0; i < n; ++i) d[i] = io.in8(io.ctx, data_port);
    }
    std::uint32_t read_be32() const {
        std::uint8_t b[4];
        read(b, 4);
        return std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3];
    }
    // The key of file `name` (0: none) and its size.
    std::uint16_t find_file(std::string_view name, std::uint32_t& size) const {
        select(file_dir);
        const std::uint32_t count = read_be32();
        for (std::uint32_t i = 0; i < count && i < 256; ++i) {
            std::uint8_t e[64];  // u32 size, u16 key, u16 reserved (big-endian), name[56]
            read(e, sizeof e);
            const char* n = reinterpret_cast<const char*>(e + 8);
            std::size_t len = 0;
            while (len < 56 && n[len]) ++len;
            if (std::string_view(n, len) != name) continue;
            size = std::uint32_t{e[0]} << 24 | std::uint32_t{e[1]} << 16 | std::uint32_t{e[2]} << 8 | e[3];
            return static_cast<std::uint16_t>(e[4] << 8 | e[5]);
        }
        return 0;
    }
};

// A PC's [640 KiB, 1 MiB) is VGA memory and ROM whatever a RAM-sized e820 entry says.
constexpr std::uint64_t legacy_window = 0xa0000, legacy_window_end = 0x100000;
hv::status add_ram_around_legacy_window(info& out, std::uint64_t base, std::uint64_t length, std::uint32_t type) {
    const std::uint64_t end = base + length;
    if (type != static_cast<std::uint32_t>(region_type::available) || end <= legacy_window || base >= legacy_window_end)
        return add_region(out, base, length, type);
    if (base < legacy_window) HV_TRY(add_region(out, base, legacy_window - base, type));
    if (end > legacy_window_end) HV_TRY(add_region(out, legacy_window_end, end - legacy_window_end, type));
    return {};
}

} // namespace

hv::status parse_real_mode(std::uint64_t handoff_paddr, const memory_reader& mem, const port_io& ports, info& out) {
    real_mode_handoff h;
    HV_TRY(read_obj(mem, handoff_paddr, h));
    if (h.magic != real_mode_magic) return hv::fail(hv::errc::bad_format, "real-mode hand-off magic is not \"HVRM\"");
    if (h.entry_cr0 & 1) return hv::fail(hv::errc::bad_format, "the real-mode stub ran with CR0.PE set: not a real-mode start");
    reset(out, loader::real_mode, handoff_paddr, handoff_paddr + sizeof h);
    out.first_instruction_tsc = h.first_tsc;
    out.boot_drive = static_cast<std::uint8_t>(h.entry_edx);

    const fw_cfg_reader fw{ports};
    char sig[4];
    fw.select(fw_cfg_reader::signature);
    fw.read(sig, sizeof sig);
    if (__builtin_memcmp(sig, "QEMU", 4) != 0)
        return hv::fail(hv::errc::not_found, "real-mode start: no fw_cfg at ports 0x510/0x511 (command line, memory map)");

    fw.select(fw_cfg_reader::cmdline_size);
    std::uint8_t le[4];
    fw.read(le, sizeof le);
    const std::uint32_t with_nul = std::uint32_t{le[0]} | std::uint32_t{le[1]} << 8 | std::uint32_t{le[2]} << 16 |
                                   std::uint32_t{le[3]} << 24;
    if (with_nul > info::max_string) return hv::fail(hv::errc::overflow, "fw_cfg command line longer than 1024 bytes");
    if (with_nul > sizeof out.pool - out.pool_used) return hv::fail(hv::errc::overflow, "boot strings exceed the 4 KiB string pool");
    if (with_nul) {
        char* dst = out.pool + out.pool_used;
        fw.select(fw_cfg_reader::cmdline_data);
        fw.read(dst, with_nul);
        dst[with_nul - 1] = '\0';
        std::size_t len = 0;
        while (dst[len]) ++len;
        out.cmdline = {dst, len};
        out.pool_used += with_nul;
    }

    std::uint32_t e820_bytes = 0;
    const std::uint16_t e820 = fw.find_file("etc/e820", e820_bytes);
    if (!e820 || e820_bytes < 20) return hv::fail(hv::errc::not_found, "real-mode start: fw_cfg has no etc/e820 memory map");
    if (e820_bytes % 20) return hv::fail(hv::errc::bad_format, "fw_cfg etc/e820 is not whole 20-byte entries");
    fw.select(e820);
    for (std::uint32_t i = 0; i < e820_bytes / 20; ++i) {
        std::uint8_t e[20];
        fw.read(e, sizeof e);
        std::uint64_t base, length;
        std::uint32_t type;
        __builtin_memcpy(&base, e, 8);
        __builtin_memcpy(&length, e + 8, 8);
        __builtin_memcpy(&type, e + 16, 4);
        HV_TRY(add_ram_around_legacy_window(out, base, length, type));
    }
    // Where a BIOS leaves it (the EBDA, then 0xe0000-0xfffff): libhv's PC has it at 0xe0000.
    if (auto rsdp = acpi::find_rsdp_bios(mem)) out.rsdp = *rsdp;
    return {};
}

hv::status parse(std::uint32_t magic, std::uint64_t info_paddr, const memory_reader& mem, info& out,
                 const port_io* ports) {
    switch (magic) {
    case multiboot2_magic: return parse_multiboot2(info_paddr, mem, out);
    case multiboot1_magic: return parse_multiboot1(info_paddr, mem, out);
    case pvh_magic: return parse_pvh(info_paddr, mem, out);
    case real_mode_magic:
        if (!ports) return hv::fail(hv::errc::invalid_argument, "a real-mode start is parsed with port I/O (fw_cfg)");
        return parse_real_mode(info_paddr, mem, *ports, out);
    default: return hv::fail(hv::errc::not_supported, "unknown boot magic: not multiboot1, multiboot2, PVH or real mode");
    }
}

} // namespace hv::boot
