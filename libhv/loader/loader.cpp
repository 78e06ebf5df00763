// Loading: check every placement against the guest's memory map, then copy the kernel,
// modules and command line, write the protocol's boot structures, and describe the
// first vCPU. Placements are validated before the first byte is written.
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"
#include "libhv/loader/formats.hpp"
#include "libhv/loader/layout.hpp"
#include "libhv/loader/loader.hpp"

namespace hv::loader {
namespace {

using bytes = std::span<const std::byte>;
constexpr std::uint64_t four_gib = std::uint64_t{1} << 32;

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// The end of available RAM that runs contiguously from `at` (== at when none).
std::uint64_t ram_run_end(const boot_config& cfg, std::uint64_t at) {
    for (bool grew = true; grew;) {
        grew = false;
        for (const memory_range& r : cfg.memory_map) {
            if (r.type == boot::region_type::available && r.base <= at && at < r.base + r.size) {
                at = r.base + r.size;
                grew = true;
            }
        }
    }
    return at;
}

bool in_ram(const boot_config& cfg, std::uint64_t base, std::uint64_t size) {
    if (size == 0) return true;
    return base + size >= base && ram_run_end(cfg, base) >= base + size;
}

status write(const memory_target& g, std::uint64_t gpa, const void* src, std::size_t n) {
    return n ? g.write(g.ctx, gpa, src, n) : status{};
}

status write_zeros(const memory_target& g, std::uint64_t gpa, std::uint64_t n) {
    if (g.zero && n) return g.zero(g.ctx, gpa, static_cast<std::size_t>(n));
    // A page at a time: each write checks and translates its whole range first.
    static constexpr std::byte zeros[4096]{};
    while (n) {
        const std::size_t chunk = n < sizeof zeros ? static_cast<std::size_t>(n) : sizeof zeros;
        HV_TRY(g.write(g.ctx, gpa, zeros, chunk));
        gpa += chunk;
        n -= chunk;
    }
    return {};
}

status write_string(const memory_target& g, std::uint64_t gpa, std::string_view s) {
    HV_TRY(write(g, gpa, s.data(), s.size()));
    const char nul = 0;
    return write(g, gpa + s.size(), &nul, 1);
}

// Appends structures to the boot-info area.
struct info_area {
    const memory_target& g;
    std::uint64_t cur = layout::boot_info;

    result<std::uint64_t> put(const void* src, std::size_t n, std::uint64_t align = 8) {
        const std::uint64_t at = align_up(cur, align);
        if (at + n > layout::boot_info + layout::boot_info_size) return fail(errc::overflow, "boot info exceeds its 64 KiB area");
        HV_TRY(write(g, at, src, n));
        cur = at + n;
        return at;
    }
    result<std::uint64_t> put_string(std::string_view s) {
        const std::uint64_t at = cur;
        if (at + s.size() + 1 > layout::boot_info + layout::boot_info_size)
            return fail(errc::overflow, "boot info exceeds its 64 KiB area");
        HV_TRY(write_string(g, at, s));
        cur = at + s.size() + 1;
        return at;
    }
};

constexpr std::string_view loader_name = "libhv";

// ---- vCPU state ----
// Flat 4 GiB descriptors: base 0, limit 0xfffff pages, present, DPL 0.
constexpr std::uint64_t gdt_code32 = 0x00cf'9b00'0000'ffff;  // execute/read, accessed, D=1, G=1
constexpr std::uint64_t gdt_code64 = 0x00af'9b00'0000'ffff;  // execute/read, accessed, L=1, G=1
constexpr std::uint64_t gdt_data = 0x00cf'9300'0000'ffff;    // read/write, accessed, D/B=1, G=1
constexpr std::uint16_t access_rights(std::uint64_t d) {
    return static_cast<std::uint16_t>(((d >> 40) & 0xff) | (((d >> 52) & 0xf) << 12));
}

status setup_cpu(const memory_target& g, cpu_mode mode, vcpu_state& s) {
    const std::uint64_t code = mode == cpu_mode::long64 ? gdt_code64 : gdt_code32;
    const std::uint64_t gdt[4] = {0, 0, code, gdt_data};
    static_assert(layout::code_selector == 2 * 8 && layout::data_selector == 3 * 8);
    HV_TRY(write(g, layout::gdt, gdt, sizeof gdt));
    s.mode = mode;
    s.gdt_base = layout::gdt;
    s.gdt_limit = sizeof gdt - 1;
    s.cs = {layout::code_selector, 0, 0xffff'ffff, access_rights(code)};
    s.ds = {layout::data_selector, 0, 0xffff'ffff, access_rights(gdt_data)};
    s.cr0 = x86::cr0::pe | x86::cr0::et;
    if (mode == cpu_mode::long64) {
        s.cr0 |= x86::cr0::pg;
        s.cr3 = layout::pml4;
        s.cr4 = x86::cr4::pae;
        s.efer = x86::efer::lme | x86::efer::lma;
    }
    return {};
}

// PML4 -> one PDPT -> identity_map_gib page directories of 2 MiB pages.
status build_identity_map(const memory_target& g) {
    constexpr std::uint64_t present_rw = 0x3, large = 0x80;
    static_assert(layout::identity_map_gib <= 512);
    HV_TRY(write_zeros(g, layout::pml4, 0x1000));
    HV_TRY(write_zeros(g, layout::pdpt, 0x1000));
    const std::uint64_t pml4e = layout::pdpt | present_rw;
    HV_TRY(write(g, layout::pml4, &pml4e, sizeof pml4e));
    std::uint64_t entries[64];
    for (unsigned gib = 0; gib < layout::identity_map_gib; ++gib) {
        const std::uint64_t pd = layout::page_directories + gib * 0x1000;
        const std::uint64_t pdpte = pd | present_rw;
        HV_TRY(write(g, layout::pdpt + gib * 8, &pdpte, sizeof pdpte));
        for (unsigned chunk = 0; chunk < 512; chunk += 64) {
            for (unsigned i = 0; i < 64; ++i)
                entries[i] = ((std::uint64_t{gib} << 30) + (std::uint64_t{chunk + i} << 21)) | present_rw | large;
            HV_TRY(write(g, pd + chunk * 8, entries, sizeof entries));
        }
    }
    return {};
}

// ---- Placement checks shared by all protocols ----

status check_config(const boot_config& cfg) {
    if (cfg.memory_map.empty()) return fail(errc::invalid_argument, "guest memory map is empty");
    if (cfg.memory_map.size() > boot_config::max_memory_map) return fail(errc::overflow, "more than 64 memory map entries");
    for (const memory_range& r : cfg.memory_map)
        if (r.base + r.size < r.base) return fail(errc::invalid_argument, "memory map entry wraps past 2^64");
    if (cfg.modules.size() > boot_config::max_modules) return fail(errc::overflow, "more than 16 modules");
    if (cfg.cmdline.size() + 1 > layout::cmdline_max) return fail(errc::overflow, "command line longer than 64 KiB");
    if (!in_ram(cfg, layout::low_start, layout::low_end - layout::low_start))
        return fail(errc::out_of_range, "guest RAM does not cover the loader's low boot area (0x500-0x30000)");
    return {};
}

status check_segment(const boot_config& cfg, const load_segment& s) {
    if (s.paddr < layout::low_end) return fail(errc::out_of_range, "kernel segment overlaps the loader's low boot area (below 0x30000)");
    if (!in_ram(cfg, s.paddr, s.mem_size)) return fail(errc::out_of_range, "kernel segment outside guest RAM");
    return {};
}

status copy_segment(const memory_target& g, bytes img, const load_segment& s) {
    HV_TRY(write(g, s.paddr, img.data() + s.file_offset, static_cast<std::size_t>(s.file_size)));
    return write_zeros(g, s.paddr + s.file_size, s.mem_size - s.file_size);
}

// Places modules page-aligned from `above`; checks only (no writes).
status place_modules(const boot_config& cfg, std::uint64_t above, std::uint64_t limit, const char* above_limit,
                     load_result& out) {
    std::uint64_t at = align_up(above, layout::module_align);
    for (const module_spec& m : cfg.modules) {
        if (!in_ram(cfg, at, m.bytes.size())) return fail(errc::out_of_range, "module does not fit in guest RAM above the kernel");
        if (at + m.bytes.size() > limit) return fail(errc::out_of_range, above_limit);
        out.modules[out.module_count++] = {at, m.bytes.size()};
        at = align_up(at + m.bytes.size(), layout::module_align);
    }
    return {};
}

status copy_modules(const memory_target& g, const boot_config& cfg, const load_result& out) {
    for (std::size_t i = 0; i < out.module_count; ++i)
        HV_TRY(write(g, out.modules[i].base, cfg.modules[i].bytes.data(), cfg.modules[i].bytes.size()));
    return {};
}

bool entry_in_segments(std::uint64_t entry, const load_segment* segs, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (segs[i].paddr <= entry && entry - segs[i].paddr < segs[i].file_size) return true;
    return false;
}

// ---- Multiboot and PVH: a 32-bit entry into segments loaded where they ask ----

status load_segments(const memory_target& g, bytes img, const boot_config& cfg, const load_segment* segs,
                     std::size_t n, std::uint64_t entry, load_result& out) {
    if (entry >= four_gib) return fail(errc::out_of_range, "entry point above 4 GiB for a 32-bit entry");
    if (!entry_in_segments(entry, segs, n)) return fail(errc::bad_format, "entry point is not inside any loaded segment");
    out.kernel_start = ~std::uint64_t{0};
    for (std::size_t i = 0; i < n; ++i) {
        HV_TRY(check_segment(cfg, segs[i]));
        if (segs[i].paddr < out.kernel_start) out.kernel_start = segs[i].paddr;
        if (segs[i].paddr + segs[i].mem_size > out.kernel_end) out.kernel_end = segs[i].paddr + segs[i].mem_size;
    }
    HV_TRY(place_modules(cfg, out.kernel_end, four_gib, "module would end above 4 GiB", out));
    for (std::size_t i = 0; i < n; ++i) HV_TRY(copy_segment(g, img, segs[i]));
    HV_TRY(copy_modules(g, cfg, out));
    HV_TRY(write_string(g, layout::cmdline, cfg.cmdline));
    return setup_cpu(g, cpu_mode::protected32, out.cpu);
}

std::uint32_t kib_below(const boot_config& cfg, std::uint64_t from, std::uint64_t limit) {
    std::uint64_t end = ram_run_end(cfg, from);
    if (end > limit) end = limit;
    const std::uint64_t kib = end > from ? (end - from) >> 10 : 0;
    return kib > 0xffff'ffff ? 0xffff'ffff : static_cast<std::uint32_t>(kib);
}

status write_multiboot1(const memory_target& g, const boot_config& cfg, load_result& out) {
    info_area area{g};
    boot::mb1::info mi{};
    HV_TRY(area.put(&mi, sizeof mi));  // reserved, rewritten at the end
    mi.flags = boot::mb1::has_mem | boot::mb1::has_cmdline | boot::mb1::has_mods | boot::mb1::has_mmap |
               boot::mb1::has_loader_name;
    mi.mem_lower = kib_below(cfg, 0, 0xa0000);
    mi.mem_upper = kib_below(cfg, 0x100000, four_gib);
    mi.cmdline = static_cast<std::uint32_t>(layout::cmdline);
    boot::mb1::module mods[boot_config::max_modules]{};
    for (std::size_t i = 0; i < out.module_count; ++i) {
        auto s = area.put_string(cfg.modules[i].cmdline);
        if (!s) return s.err();
        mods[i] = {static_cast<std::uint32_t>(out.modules[i].base),
                   static_cast<std::uint32_t>(out.modules[i].base + out.modules[i].size), static_cast<std::uint32_t>(*s), 0};
    }
    auto name = area.put_string(loader_name);
    if (!name) return name.err();
    mi.boot_loader_name = static_cast<std::uint32_t>(*name);
    auto mods_at = area.put(mods, sizeof(mods[0]) * out.module_count);
    if (!mods_at) return mods_at.err();
    mi.mods_count = static_cast<std::uint32_t>(out.module_count);
    mi.mods_addr = static_cast<std::uint32_t>(*mods_at);
    const std::uint64_t mmap_at = align_up(area.cur, 8);
    for (const memory_range& r : cfg.memory_map) {
        const boot::mb1::mmap_entry e{sizeof(e) - sizeof(e.size), r.base, r.size, static_cast<std::uint32_t>(r.type)};
        auto at = area.put(&e, sizeof e, 4);
        if (!at) return at.err();
    }
    mi.mmap_addr = static_cast<std::uint32_t>(mmap_at);
    mi.mmap_length = static_cast<std::uint32_t>(area.cur - mmap_at);
    HV_TRY(write(g, layout::boot_info, &mi, sizeof mi));
    out.cpu.rax = boot::multiboot1_magic;
    out.cpu.rbx = layout::boot_info;
    return {};
}

struct mb2_writer {
    info_area& area;
    status put_tag(std::uint32_t type, const void* body, std::size_t body_size, std::string_view str = {}, bool with_str = false) {
        const std::uint32_t size = static_cast<std::uint32_t>(sizeof(boot::mb2::tag) + body_size + (with_str ? str.size() + 1 : 0));
        const boot::mb2::tag t{type, size};
        auto at = area.put(&t, sizeof t);
        if (!at) return at.err();
        if (body_size) HV_TRY(area.put(body, body_size, 1));
        if (with_str) HV_TRY(area.put_string(str));
        return {};
    }
};

status write_multiboot2(const memory_target& g, const boot_config& cfg, load_result& out) {
    info_area area{g};
    const boot::mb2::fixed_header fh{};
    HV_TRY(area.put(&fh, sizeof fh));
    mb2_writer w{area};
    HV_TRY(w.put_tag(boot::mb2::cmdline, nullptr, 0, cfg.cmdline, true));
    HV_TRY(w.put_tag(boot::mb2::loader_name, nullptr, 0, loader_name, true));
    for (std::size_t i = 0; i < out.module_count; ++i) {
        const std::uint32_t range[2] = {static_cast<std::uint32_t>(out.modules[i].base),
                                        static_cast<std::uint32_t>(out.modules[i].base + out.modules[i].size)};
        HV_TRY(w.put_tag(boot::mb2::module, range, sizeof range, cfg.modules[i].cmdline, true));
    }
    const std::uint32_t mem[2] = {kib_below(cfg, 0, 0xa0000), kib_below(cfg, 0x100000, four_gib)};
    HV_TRY(w.put_tag(boot::mb2::basic_meminfo, mem, sizeof mem));
    const std::uint32_t mmap_hdr[2] = {sizeof(boot::mb2::mmap_entry), 0};
    const boot::mb2::tag mt{boot::mb2::mmap, static_cast<std::uint32_t>(sizeof(boot::mb2::mmap_tag) +
                                                                        cfg.memory_map.size() * sizeof(boot::mb2::mmap_entry))};
    HV_TRY(area.put(&mt, sizeof mt));
    HV_TRY(area.put(mmap_hdr, sizeof mmap_hdr, 1));
    for (const memory_range& r : cfg.memory_map) {
        const boot::mb2::mmap_entry e{r.base, r.size, static_cast<std::uint32_t>(r.type), 0};
        HV_TRY(area.put(&e, sizeof e, 1));
    }
    if (cfg.rsdp) {
        // The tags carry copies of the RSDP: 20 bytes (ACPI 1.0), 36 with revision >= 2.
        std::uint8_t rsdp[36];
        HV_TRY(g.read(g.ctx, cfg.rsdp, rsdp, 20));
        if (__builtin_memcmp(rsdp, "RSD PTR ", 8) != 0) return fail(errc::bad_format, "no RSDP signature at the given RSDP address");
        HV_TRY(w.put_tag(boot::mb2::acpi_old, rsdp, 20));
        if (rsdp[15] >= 2) {
            HV_TRY(g.read(g.ctx, cfg.rsdp, rsdp, 36));
            HV_TRY(w.put_tag(boot::mb2::acpi_new, rsdp, 36));
        }
    }
    HV_TRY(w.put_tag(boot::mb2::end, nullptr, 0));
    const boot::mb2::fixed_header total{static_cast<std::uint32_t>(area.cur - layout::boot_info), 0};
    HV_TRY(write(g, layout::boot_info, &total, sizeof total));
    out.cpu.rax = boot::multiboot2_magic;
    out.cpu.rbx = layout::boot_info;
    return {};
}

status write_pvh(const memory_target& g, const boot_config& cfg, load_result& out) {
    info_area area{g};
    boot::pvh::start_info si{};
    HV_TRY(area.put(&si, sizeof si));
    si.magic = boot::pvh_magic;
    si.version = 1;
    si.nr_modules = static_cast<std::uint32_t>(out.module_count);
    si.cmdline_paddr = layout::cmdline;
    si.rsdp_paddr = cfg.rsdp;
    boot::pvh::modlist_entry mods[boot_config::max_modules]{};
    for (std::size_t i = 0; i < out.module_count; ++i) {
        auto s = area.put_string(cfg.modules[i].cmdline);
        if (!s) return s.err();
        mods[i] = {out.modules[i].base, out.modules[i].size, *s, 0};
    }
    if (out.module_count) {
        auto at = area.put(mods, sizeof(mods[0]) * out.module_count);
        if (!at) return at.err();
        si.modlist_paddr = *at;
    }
    const std::uint64_t memmap_at = align_up(area.cur, 8);
    for (const memory_range& r : cfg.memory_map) {
        const boot::pvh::memmap_entry e{r.base, r.size, static_cast<std::uint32_t>(r.type), 0};
        HV_TRY(area.put(&e, sizeof e));
    }
    si.memmap_paddr = memmap_at;
    si.memmap_entries = static_cast<std::uint32_t>(cfg.memory_map.size());
    HV_TRY(write(g, layout::boot_info, &si, sizeof si));
    out.cpu.rax = boot::pvh_magic;  // unspecified by the protocol; set for recognisability
    out.cpu.rbx = layout::boot_info;
    return {};
}

// ---- Linux ----

status load_linux(const memory_target& g, bytes img, const boot_config& cfg, const image_info& info, load_result& out) {
    using namespace linux_boot;
    const bool entry64 = info.linux_entry64 && !cfg.linux_entry32;
    if (cfg.cmdline.size() + 1 > info.linux_cmdline_size)
        return fail(errc::out_of_range, "command line longer than the kernel's cmdline_size");
    if (cfg.modules.size() > 1) return fail(errc::invalid_argument, "Linux takes at most one module (the initrd)");
    // The kernel decompresses itself to its run-time address and uses init_size bytes
    // from there (a Debian kernel: 16 MiB + ~64 MiB), wherever the loader put the file.
    std::uint64_t run_at = layout::linux_kernel;
    if (info.linux_relocatable) {
        if (run_at < info.linux_pref_address) run_at = info.linux_pref_address;
        if (info.linux_kernel_alignment) run_at = align_up(run_at, info.linux_kernel_alignment);
    } else if (info.linux_pref_address) {
        run_at = info.linux_pref_address;
    }
    if (!in_ram(cfg, layout::linux_kernel, info.linux_kernel_size) || !in_ram(cfg, run_at, info.linux_init_size))
        return fail(errc::out_of_range, "guest RAM too small for the kernel (its file at 1 MiB, init_size at its run-time address)");
    out.kernel_start = layout::linux_kernel;
    out.kernel_end = layout::linux_kernel + info.linux_kernel_size;
    if (run_at + info.linux_init_size > out.kernel_end) out.kernel_end = run_at + info.linux_init_size;
    // initrd_addr_max is the highest address the initrd's last byte may have.
    HV_TRY(place_modules(cfg, out.kernel_end, std::uint64_t{info.linux_initrd_addr_max} + 1,
                         "initrd would lie above the kernel's initrd_addr_max", out));

    // The zero page is written in place, field by field: 4 KiB is too much for a stack.
    setup_header hdr;
    __builtin_memset(&hdr, 0, sizeof hdr);
    // The header runs to 0x202 + the byte at 0x201 (the short jump's displacement).
    std::uint8_t jump_disp = 0;
    __builtin_memcpy(&jump_disp, img.data() + 0x201, 1);
    std::uint64_t hdr_end = 0x202 + std::uint64_t{jump_disp};
    if (hdr_end > setup_header_offset + sizeof hdr) hdr_end = setup_header_offset + sizeof hdr;
    __builtin_memcpy(&hdr, img.data() + setup_header_offset, hdr_end - setup_header_offset);
    hdr.vid_mode = vid_mode_normal;
    hdr.type_of_loader = loader_undefined;
    hdr.loadflags = static_cast<std::uint8_t>(hdr.loadflags & ~can_use_heap);
    hdr.code32_start = static_cast<std::uint32_t>(layout::linux_kernel);
    hdr.cmd_line_ptr = static_cast<std::uint32_t>(layout::cmdline);
    std::uint32_t ext_ramdisk[2] = {};
    if (out.module_count) {
        hdr.ramdisk_image = static_cast<std::uint32_t>(out.modules[0].base);
        hdr.ramdisk_size = static_cast<std::uint32_t>(out.modules[0].size);
        ext_ramdisk[0] = static_cast<std::uint32_t>(out.modules[0].base >> 32);
        ext_ramdisk[1] = static_cast<std::uint32_t>(out.modules[0].size >> 32);
    }
    static_assert(boot_config::max_memory_map <= e820_max);
    const auto e820_count = static_cast<std::uint8_t>(cfg.memory_map.size());

    HV_TRY(write(g, layout::linux_kernel, img.data() + info.linux_kernel_offset, info.linux_kernel_size));
    HV_TRY(copy_modules(g, cfg, out));
    HV_TRY(write_string(g, layout::cmdline, cfg.cmdline));
    constexpr std::uint64_t zp = layout::zero_page;
    HV_TRY(write_zeros(g, zp, sizeof(boot_params)));
    HV_TRY(write(g, zp + offsetof(boot_params, hdr), &hdr, sizeof hdr));
    HV_TRY(write(g, zp + offsetof(boot_params, acpi_rsdp_addr), &cfg.rsdp, sizeof cfg.rsdp));
    HV_TRY(write(g, zp + offsetof(boot_params, ext_ramdisk_image), ext_ramdisk, sizeof ext_ramdisk));
    HV_TRY(write(g, zp + offsetof(boot_params, e820_entries), &e820_count, 1));
    for (std::size_t i = 0; i < cfg.memory_map.size(); ++i) {
        const memory_range& r = cfg.memory_map[i];
        const e820_entry e{r.base, r.size, static_cast<std::uint32_t>(r.type)};
        HV_TRY(write(g, zp + offsetof(boot_params, e820_table) + i * sizeof e, &e, sizeof e));
    }
    HV_TRY(setup_cpu(g, entry64 ? cpu_mode::long64 : cpu_mode::protected32, out.cpu));
    if (entry64) {
        HV_TRY(build_identity_map(g));
        out.cpu.rip = layout::linux_kernel + entry64_offset;
    } else {
        out.cpu.rip = layout::linux_kernel;
    }
    out.cpu.rsi = layout::zero_page;
    out.boot_info = layout::zero_page;
    return {};
}

// ---- Real mode: the flat image at 0x7c00, nothing else written ----

status load_real_mode(const memory_target& g, bytes img, const boot_config& cfg, load_result& out) {
    if (const char* why = real_mode_image_problem(img)) return fail(errc::bad_format, why);
    if (!cfg.modules.empty()) return fail(errc::invalid_argument, "a real-mode start takes no modules");
    // The image and its stack below it: from the IVT up to the image's end.
    if (!in_ram(cfg, 0, layout::real_mode_image + img.size()))
        return fail(errc::out_of_range, "guest RAM does not cover 0x0 to the real-mode image's end");
    HV_TRY(write(g, layout::real_mode_image, img.data(), img.size()));
    out.kernel_start = layout::real_mode_image;
    out.kernel_end = layout::real_mode_image + img.size();
    vcpu_state& s = out.cpu;
    s.mode = cpu_mode::real16;
    s.rip = layout::real_mode_image;  // CS = 0, IP = 0x7c00
    s.rsp = layout::real_mode_image;
    s.rdx = real_mode_boot_drive;
    s.cs = {0, 0, 0xffff, 0x9b};      // present, execute/read, accessed
    s.ds = {0, 0, 0xffff, 0x93};      // present, read/write, accessed
    s.cr0 = x86::cr0::et;
    return {};
}

protocol choose(const image_info& info, const boot_config& cfg) {
    if (cfg.use != protocol::none) return info.supports(cfg.use) ? cfg.use : protocol::none;
    return info.first_offered();
}

} // namespace

result<load_result> load(const memory_target& g, bytes img, const boot_config& cfg) {
    if (cfg.use == protocol::real_mode) {
        // A flat image has no header to probe; its command line and memory map are the
        // device model's (fw_cfg), not the loader's.
        if (cfg.memory_map.empty()) return fail(errc::invalid_argument, "guest memory map is empty");
        load_result out;
        out.used = protocol::real_mode;
        HV_TRY(load_real_mode(g, img, cfg, out));
        return out;
    }
    // Asked for a protocol, a header that offers none (unusable_header) does not matter.
    result<image_info> probed = cfg.use == protocol::none ? probe(img)
                                : cfg.probed            ? result<image_info>(*cfg.probed)
                                                        : probe_entries(img);
    if (!probed) return probed.err();
    const image_info& info = *probed;
    if (!info.supports(cfg.use) && info.unusable_header) return fail(errc::bad_format, info.unusable_header);
    HV_TRY(check_config(cfg));
    load_result out;
    out.used = choose(info, cfg);
    switch (out.used) {
    case protocol::none: return fail(errc::not_supported, "image does not support the requested boot protocol");
    case protocol::real_mode: return fail(errc::not_supported, "real mode is loaded only when asked for");
    case protocol::linux_bzimage: HV_TRY(load_linux(g, img, cfg, info, out)); return out;
    case protocol::multiboot1: {
        const bool aout = info.mb1_aout;
        HV_TRY(load_segments(g, img, cfg, aout ? &info.mb1_segment : info.elf_segments, aout ? 1 : info.elf_segment_count,
                             aout ? info.mb1_entry : info.elf_entry, out));
        out.cpu.rip = aout ? info.mb1_entry : info.elf_entry;
        HV_TRY(write_multiboot1(g, cfg, out));
        break;
    }
    case protocol::multiboot2: {
        const bool aout = info.mb2_address;
        const std::uint64_t entry = info.mb2_has_entry ? info.mb2_entry : info.elf_entry;
        const std::uint32_t acpi_bits = (1u << boot::mb2::acpi_old) | (1u << boot::mb2::acpi_new);
        if ((info.mb2_required_info & acpi_bits) && cfg.rsdp == 0)
            return fail(errc::not_supported, "multiboot2 kernel requires an ACPI RSDP tag but none was given");
        HV_TRY(load_segments(g, img, cfg, aout ? &info.mb2_segment : info.elf_segments, aout ? 1 : info.elf_segment_count,
                             entry, out));
        out.cpu.rip = entry;
        HV_TRY(write_multiboot2(g, cfg, out));
        break;
    }
    case protocol::pvh:
        HV_TRY(load_segments(g, img, cfg, info.elf_segments, info.elf_segment_count, info.pvh_entry, out));
        out.cpu.rip = info.pvh_entry;
        HV_TRY(write_pvh(g, cfg, out));
        break;
    }
    out.boot_info = layout::boot_info;
    return out;
}

} // namespace hv::loader
