#include "libhv/boot/boot_info.hpp"

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

hv::status parse(std::uint32_t magic, std::uint64_t info_paddr, const memory_reader& mem, info& out) {
    switch (magic) {
    case multiboot2_magic: return parse_multiboot2(info_paddr, mem, out);
    case multiboot1_magic: return parse_multiboot1(info_paddr, mem, out);
    case pvh_magic: return parse_pvh(info_paddr, mem, out);
    default: return hv::fail(hv::errc::not_supported, "unknown boot magic: not multiboot1, multiboot2 or PVH");
    }
}

} // namespace hv::boot
