// Guest loaders: images are synthesized here, loaded into a guest_memory over fake host
// memory, and checked by independent readers: the hypervisor's own boot-info parsers
// (libhv/boot) for multiboot1/2 and PVH, raw offsets from the boot protocol for the
// Linux zero page, and the mmu's guest-virtual translation for the identity map.
#include <doctest/doctest.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>
#include "libhv/boot/boot_info.hpp"
#include "libhv/loader/formats.hpp"
#include "libhv/loader/layout.hpp"
#include "libhv/loader/loader.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "tests/unit/loader/images.hpp"
#include "tests/unit/mmu/fake_memory.hpp"

using namespace hv::loader;
using hv::mmu::test::fake_memory;
using namespace hv::loader::test;

namespace {

constexpr std::uint64_t MiB = 0x10'0000;
constexpr std::uint64_t ram_size = 32 * MiB;

std::string_view what(const hv::error& e) { return e.what; }

// ---- Guest ----

struct guest {
    fake_memory host{fake_memory::placement::ascending, std::uint64_t{1} << 36};
    hv::mmu::guest_memory<fake_memory> mem{host};
    std::vector<memory_range> map{{0, 0x9f000, hv::boot::region_type::available},
                                  {0x9f000, 0x61000, hv::boot::region_type::reserved},
                                  {MiB, ram_size - MiB, hv::boot::region_type::available}};
    guest() {
        REQUIRE(mem.init().ok());
        REQUIRE(mem.add_ram(0, ram_size).ok());
        // Garbage everywhere, so the loader's zeroing is observable.
        std::vector<std::uint8_t> junk(MiB, 0xa5);
        for (std::uint64_t at = 0; at < ram_size; at += MiB) REQUIRE(mem.write(at, junk.data(), junk.size()).ok());
    }
    image read(std::uint64_t gpa, std::size_t n) {
        image v(n);
        REQUIRE(mem.read(gpa, v.data(), n).ok());
        return v;
    }
    template <class T>
    T read_obj(std::uint64_t gpa) {
        T v{};
        REQUIRE(mem.read(gpa, &v, sizeof v).ok());
        return v;
    }
    hv::boot::memory_reader reader() {
        return {[](void* c, std::uint64_t pa, void* dst, std::size_t n) {
                    return static_cast<guest*>(c)->mem.read(pa, dst, n);
                },
                this};
    }
    boot_config config() {
        boot_config c;
        c.memory_map = map;
        return c;
    }
};

void check_segments_loaded(guest& g, const elf_spec& s) {
    for (const seg& sg : s.segs) {
        CHECK(g.read(sg.paddr, sg.data.size()) == sg.data);
        const image bss = g.read(sg.paddr + sg.data.size(), sg.memsz - sg.data.size());
        CHECK(std::all_of(bss.begin(), bss.end(), [](std::byte b) { return b == std::byte{0}; }));
    }
}

void check_flat_gdt(guest& g, const vcpu_state& s) {
    REQUIRE(s.gdt_limit >= s.ds.selector + 7);
    for (const segment_state* seg : {&s.cs, &s.ds}) {
        const auto d = g.read_obj<std::uint64_t>(s.gdt_base + seg->selector);
        const std::uint64_t base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
        std::uint64_t limit = (d & 0xffff) | (((d >> 48) & 0xf) << 16);
        if (d & (std::uint64_t{1} << 55)) limit = (limit << 12) | 0xfff;
        CHECK(base == seg->base);
        CHECK(limit == seg->limit);
        CHECK(((d >> 40) & 0xff) == (seg->access_rights & 0xff));
        CHECK(((d >> 52) & 0xf) == (seg->access_rights >> 12));
        CHECK((d >> 47 & 1) == 1);  // present
    }
    const bool l = (s.cs.access_rights >> 13) & 1;
    CHECK(l == (s.mode == cpu_mode::long64));
    CHECK((s.cs.access_rights & 0x8) != 0);    // code
    CHECK((s.ds.access_rights & 0x8) == 0);    // data
    CHECK((s.ds.access_rights & 0x2) != 0);    // writable
}

void check_regions(const hv::boot::info& bi, const std::vector<memory_range>& map) {
    REQUIRE(bi.region_count == map.size());
    for (std::size_t i = 0; i < map.size(); ++i) {
        CHECK(bi.regions[i].base == map[i].base);
        CHECK(bi.regions[i].length == map[i].size);
        CHECK(bi.regions[i].type == map[i].type);
    }
}

void check_modules(guest& g, const hv::boot::info& bi, const std::vector<module_spec>& mods, const load_result& r,
                   std::uint64_t above) {
    REQUIRE(bi.module_count == mods.size());
    REQUIRE(r.module_count == mods.size());
    std::uint64_t prev_end = above;
    for (std::size_t i = 0; i < mods.size(); ++i) {
        CHECK(bi.modules[i].start % 0x1000 == 0);
        CHECK(bi.modules[i].start >= prev_end);
        CHECK(bi.modules[i].end - bi.modules[i].start == mods[i].bytes.size());
        CHECK(bi.modules[i].cmdline == mods[i].cmdline);
        CHECK(bi.modules[i].start == r.modules[i].base);
        const image got = g.read(bi.modules[i].start, mods[i].bytes.size());
        CHECK(std::equal(got.begin(), got.end(), mods[i].bytes.begin(), mods[i].bytes.end()));
        prev_end = bi.modules[i].end;
    }
}

// A fake ACPI 2.0 RSDP in guest memory.
std::uint64_t put_rsdp(guest& g) {
    std::uint8_t r[36] = {'R', 'S', 'D', ' ', 'P', 'T', 'R', ' '};
    for (int i = 8; i < 36; ++i) r[i] = std::uint8_t(i * 7);
    r[15] = 2;
    REQUIRE(g.mem.write(0xe0000, r, sizeof r).ok());
    return 0xe0000;
}

} // namespace

TEST_CASE("multiboot2 ELF32: cmdline, modules, memory map and ACPI round-trip through the hypervisor's parser") {
    guest g;
    elf_spec s = kernel(false);
    s.header_blob = mb2_header({{mb2::info_request, 0, {1, 3, 6}}, {mb2::console_flags, 0, {0}}});
    const image img = build_elf(s);
    auto p = probe(img);
    REQUIRE_MESSAGE(p.ok(), what(p.err()));
    CHECK(p->multiboot2);
    CHECK(p->elf);
    CHECK(!p->elf64);
    CHECK(!p->multiboot1);
    CHECK(!p->pvh);
    CHECK(p->elf_segment_count == 2);

    const image m0 = random_bytes(5000, 3), m1 = random_bytes(3, 4);
    const std::vector<module_spec> mods{{m0, "initrd one"}, {m1, ""}};
    boot_config c = g.config();
    c.cmdline = "console=ttyS0 quiet";
    c.modules = mods;
    c.rsdp = put_rsdp(g);
    auto r = load(g.mem, img, c);
    REQUIRE_MESSAGE(r.ok(), what(r.err()));
    CHECK(r->used == protocol::multiboot2);
    check_segments_loaded(g, s);
    CHECK(r->cpu.rax == 0x36d76289);
    CHECK(r->cpu.rip == s.entry);
    CHECK(r->cpu.mode == cpu_mode::protected32);
    CHECK((r->cpu.cr0 & 1) == 1);
    CHECK((r->cpu.cr0 >> 31) == 0);
    CHECK(r->cpu.efer == 0);
    check_flat_gdt(g, r->cpu);

    hv::boot::info bi;
    const hv::status st = hv::boot::parse(0x36d76289, r->cpu.rbx, g.reader(), bi);
    REQUIRE_MESSAGE(st.ok(), st.err().what);
    CHECK(bi.source == hv::boot::loader::multiboot2);
    CHECK(bi.cmdline == "console=ttyS0 quiet");
    CHECK(bi.loader_name == "libhv");
    check_regions(bi, g.map);
    check_modules(g, bi, mods, *r, 0x305000);
    REQUIRE(bi.rsdp != 0);
    CHECK(g.read(bi.rsdp, 36) == g.read(c.rsdp, 36));  // the ACPI 2.0 copy
}

TEST_CASE("multiboot1 ELF64 and a.out-kludge images: info round-trips through parse_multiboot1") {
    for (bool aout : {false, true}) {
        CAPTURE(aout);
        guest g;
        image img;
        elf_spec s = kernel(true);
        std::uint64_t entry, load_at = 0x400000;
        image flat;
        if (!aout) {
            s.header_blob = mb1_header(mb1::page_align_modules | mb1::want_memory_info);
            img = build_elf(s);
            entry = s.entry;
        } else {
            // Raw image: header at file offset 0x40, loaded from offset 0 to 4 MiB, 0x3000 of bss.
            flat = random_bytes(0x2345, 5);
            const std::uint32_t flags = mb1::aout_kludge;
            const std::uint32_t h[8] = {mb1::header_magic, flags, 0u - mb1::header_magic - flags,
                                        std::uint32_t(load_at + 0x40), std::uint32_t(load_at),
                                        std::uint32_t(load_at + flat.size()), std::uint32_t(load_at + flat.size() + 0x3000),
                                        std::uint32_t(load_at + 0x100)};
            std::memcpy(flat.data() + 0x40, h, sizeof h);
            img = flat;
            entry = load_at + 0x100;
        }
        auto p = probe(img);
        REQUIRE_MESSAGE(p.ok(), what(p.err()));
        CHECK(p->multiboot1);
        CHECK(p->mb1_aout == aout);
        CHECK(p->elf == !aout);

        const image m0 = random_bytes(0x1001, 6);
        const std::vector<module_spec> mods{{m0, "mod a"}};
        boot_config c = g.config();
        c.cmdline = "hello";
        c.modules = mods;
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->used == protocol::multiboot1);
        CHECK(r->cpu.rax == 0x2badb002);
        CHECK(r->cpu.rip == entry);
        if (aout) {
            CHECK(g.read(load_at, flat.size()) == flat);
            CHECK(g.read(load_at + flat.size(), 0x3000) == image(0x3000));
            CHECK(r->kernel_end == load_at + flat.size() + 0x3000);
        } else {
            check_segments_loaded(g, s);
        }
        hv::boot::info bi;
        const hv::status st = hv::boot::parse_multiboot1(r->cpu.rbx, g.reader(), bi);
        REQUIRE_MESSAGE(st.ok(), st.err().what);
        CHECK(bi.cmdline == "hello");
        CHECK(bi.loader_name == "libhv");
        check_regions(bi, g.map);
        check_modules(g, bi, mods, *r, r->kernel_end);
        const auto mi = g.read_obj<hv::boot::mb1::info>(r->cpu.rbx);
        CHECK(mi.mem_lower == 0x9f000 / 1024);
        CHECK(mi.mem_upper == (ram_size - MiB) / 1024);
    }
}

TEST_CASE("PVH: entry note in a PT_NOTE segment (ELF64) or only in a note section (ELF32)") {
    for (bool section : {false, true}) {
        CAPTURE(section);
        guest g;
        elf_spec s = kernel(!section);
        const std::uint32_t pvh_entry = 0x200000 + 0x80;
        // An unrelated note first: the scanner must step over it.
        const std::uint32_t other = 0x1234;
        s.notes = note("GNU", 3, &other, 4);
        const image n = pvh_note(pvh_entry);
        s.notes.insert(s.notes.end(), n.begin(), n.end());
        s.notes_as_section = section;
        const image img = build_elf(s);
        auto p = probe(img);
        REQUIRE_MESSAGE(p.ok(), what(p.err()));
        CHECK(p->pvh);
        CHECK(p->pvh_entry == pvh_entry);

        const image m0 = random_bytes(777, 7), m1 = random_bytes(0x3000, 8);
        const std::vector<module_spec> mods{{m0, "first"}, {m1, "second module"}};
        boot_config c = g.config();
        c.cmdline = "root=/dev/xvda";
        c.modules = mods;
        c.rsdp = put_rsdp(g);
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->used == protocol::pvh);
        check_segments_loaded(g, s);
        CHECK(r->cpu.rip == pvh_entry);
        CHECK(r->cpu.rbx == r->boot_info);
        CHECK(r->cpu.mode == cpu_mode::protected32);
        CHECK((r->cpu.cr0 >> 31) == 0);
        check_flat_gdt(g, r->cpu);
        hv::boot::info bi;
        const hv::status st = hv::boot::parse_pvh(r->cpu.rbx, g.reader(), bi);
        REQUIRE_MESSAGE(st.ok(), st.err().what);
        CHECK(bi.cmdline == "root=/dev/xvda");
        CHECK(bi.rsdp == c.rsdp);
        check_regions(bi, g.map);
        check_modules(g, bi, mods, *r, 0x305000);
        CHECK(g.read_obj<hv::boot::pvh::start_info>(r->cpu.rbx).version == 1);
    }
}

TEST_CASE("an image offering several protocols: PVH first, or the one asked for") {
    elf_spec s = kernel(false);
    image blob = mb1_header(0);
    pad_to(blob, 8);
    const image h2 = mb2_header({});
    blob.insert(blob.end(), h2.begin(), h2.end());
    s.header_blob = blob;
    s.notes = pvh_note(0x200010);
    const image img = build_elf(s);
    auto p = probe(img);
    REQUIRE_MESSAGE(p.ok(), what(p.err()));
    CHECK(p->multiboot1);
    CHECK(p->multiboot2);
    CHECK(p->pvh);
    CHECK(!p->linux_bzimage);
    const std::pair<protocol, std::uint64_t> cases[] = {{protocol::none, 0x336ec578},
                                                         {protocol::multiboot1, 0x2badb002},
                                                         {protocol::multiboot2, 0x36d76289},
                                                         {protocol::pvh, 0x336ec578}};
    for (auto [use, magic] : cases) {
        guest g;
        boot_config c = g.config();
        c.use = use;
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->used == (use == protocol::none ? protocol::pvh : use));
        CHECK(r->cpu.rax == magic);
    }
    guest g;
    boot_config c = g.config();
    c.use = protocol::linux_bzimage;
    auto r = load(g.mem, img, c);
    REQUIRE(!r.ok());
    CHECK(what(r.err()) == "image does not support the requested boot protocol");
}

// ---- Linux ----

TEST_CASE("Linux bzImage, 64-bit entry: zero page fields, e820, initrd, and an identity map the mmu walks") {
    guest g;
    const bz_spec b;
    const image img = build_bzimage(b);
    auto p = probe(img);
    REQUIRE_MESSAGE(p.ok(), what(p.err()));
    CHECK(p->linux_bzimage);
    CHECK(p->linux_entry64);
    CHECK(p->linux_version == 0x020f);
    CHECK(!p->elf);

    const image rd = random_bytes(0x12345, 11);
    const std::vector<module_spec> mods{{rd, ""}};
    boot_config c = g.config();
    c.cmdline = "console=ttyS0 earlyprintk=serial";
    c.modules = mods;
    c.rsdp = 0xe0000;
    auto r = load(g.mem, img, c);
    REQUIRE_MESSAGE(r.ok(), what(r.err()));
    CHECK(r->used == protocol::linux_bzimage);
    const auto& cpu = r->cpu;
    CHECK(cpu.mode == cpu_mode::long64);
    CHECK(cpu.rip == 0x100000 + 0x200);
    CHECK(cpu.rsi == 0x7000);
    CHECK(cpu.cs.selector == 0x10);
    CHECK(cpu.ds.selector == 0x18);
    check_flat_gdt(g, cpu);

    // The protected-mode kernel at 1 MiB.
    const std::size_t setup = 5 * 512;
    CHECK(g.read(0x100000, b.kernel_size) == image(img.begin() + setup, img.end()));

    const image zp = g.read(cpu.rsi, 0x1000);
    CHECK(get<std::uint32_t>(zp, 0x202) == 0x53726448);  // header copied from the image
    CHECK(get<std::uint16_t>(zp, 0x206) == 0x020f);
    CHECK(get<std::uint8_t>(zp, 0x210) == 0xff);          // type_of_loader
    CHECK((get<std::uint8_t>(zp, 0x211) & 1) == 1);       // LOADED_HIGH kept
    CHECK((get<std::uint8_t>(zp, 0x211) & 0x80) == 0);    // no heap offered
    CHECK(get<std::uint16_t>(zp, 0x1fa) == 0xffff);       // vid_mode normal
    const auto cmd_ptr = get<std::uint32_t>(zp, 0x228);
    const image cmd = g.read(cmd_ptr, c.cmdline.size() + 1);
    CHECK(std::string(reinterpret_cast<const char*>(cmd.data())) == c.cmdline);
    const std::uint64_t rd_at = get<std::uint32_t>(zp, 0x218) | std::uint64_t{get<std::uint32_t>(zp, 0xc0)} << 32;
    CHECK(get<std::uint32_t>(zp, 0x21c) == rd.size());
    CHECK(rd_at % 0x1000 == 0);
    CHECK(rd_at >= 0x100000 + b.init_size);  // above everything the kernel may use
    CHECK(rd_at + rd.size() - 1 <= b.initrd_addr_max);
    CHECK(g.read(rd_at, rd.size()) == rd);
    CHECK(get<std::uint64_t>(zp, 0x70) == 0xe0000);
    REQUIRE(get<std::uint8_t>(zp, 0x1e8) == g.map.size());
    for (std::size_t i = 0; i < g.map.size(); ++i) {
        CHECK(get<std::uint64_t>(zp, 0x2d0 + 20 * i) == g.map[i].base);
        CHECK(get<std::uint64_t>(zp, 0x2d0 + 20 * i + 8) == g.map[i].size);
        CHECK(get<std::uint32_t>(zp, 0x2d0 + 20 * i + 16) == std::uint32_t(g.map[i].type));
    }

    // Long mode with paging, and a walk of the tables finds identity everywhere in 4 GiB.
    hv::mmu::guest_paging regs;
    regs.cr0 = cpu.cr0;
    regs.cr3 = cpu.cr3;
    regs.cr4 = cpu.cr4;
    regs.efer = cpu.efer;
    REQUIRE(regs.mode() == hv::mmu::paging_mode::four_level);
    hv::mmu::guest_access acc;
    acc.kind = hv::mmu::access_kind::execute;
    acc.set_accessed_dirty = false;
    std::mt19937_64 rng(12);
    std::vector<std::uint64_t> probes{0, 0x7000, 0x100200, rd_at, 0x3fff'ffff, 0x4000'0000, 0xffff'ffff};
    for (int i = 0; i < 2000; ++i) probes.push_back(rng() % (std::uint64_t{4} << 30));
    for (std::uint64_t va : probes) {
        const auto t = hv::mmu::translate_gva(g.mem, regs, hv::mmu::paging_features{}, va, acc);
        CAPTURE(va);
        REQUIRE(t.status == hv::mmu::gva_status::ok);
        CHECK(t.gpa == va);
    }
    // ...and nothing beyond it.
    const auto beyond = hv::mmu::translate_gva(g.mem, regs, hv::mmu::paging_features{}, std::uint64_t{4} << 30, acc);
    CHECK(beyond.status == hv::mmu::gva_status::page_fault);
}

// A Debian kernel: relocatable, pref_address 16 MiB, 2 MiB alignment, init_size ~64 MiB.
// It decompresses to max(load address, pref_address) aligned up and uses init_size bytes
// from there, so the initrd must start above that, not above 1 MiB + init_size.
TEST_CASE("Linux bzImage: the initrd goes above the kernel's run-time footprint") {
    struct run_case {
        std::uint64_t pref;
        std::uint32_t align;
        std::uint8_t relocatable;
        std::uint64_t run_at;
    };
    for (const run_case rc : {run_case{0x1000000, 0x200000, 1, 0x1000000}, run_case{0, 0x200000, 1, 0x200000},
                              run_case{0x80000, 0x400000, 1, 0x400000}, run_case{0x1200000, 0x200000, 0, 0x1200000}}) {
        CAPTURE(rc.pref);
        CAPTURE(rc.relocatable);
        guest g;
        bz_spec b;
        b.pref_address = rc.pref;
        b.kernel_alignment = rc.align;
        b.relocatable = rc.relocatable;
        b.init_size = 0x800000;
        const image img = build_bzimage(b);
        const image rd = random_bytes(0x3000, 13);
        const std::vector<module_spec> mods{{rd, ""}};
        boot_config c = g.config();
        c.modules = mods;
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->kernel_start == 0x100000);
        CHECK(r->kernel_end == rc.run_at + b.init_size);
        const image zp = g.read(r->cpu.rsi, 0x1000);
        const std::uint64_t rd_at = get<std::uint32_t>(zp, 0x218);
        CHECK(rd_at >= rc.run_at + b.init_size);
        CHECK(g.read(rd_at, rd.size()) == rd);
        CHECK(g.read(0x100000, b.kernel_size) == image(img.begin() + 5 * 512, img.end()));
    }
}

TEST_CASE("Linux bzImage, 32-bit entry: asked for, or the only one the kernel offers") {
    for (int which = 0; which < 2; ++which) {
        CAPTURE(which);
        guest g;
        bz_spec b;
        if (which == 1) b.version = 0x020b;  // before 2.12: xloadflags not honoured
        const image img = build_bzimage(b);
        boot_config c = g.config();
        c.linux_entry32 = which == 0;
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->cpu.mode == cpu_mode::protected32);
        CHECK(r->cpu.rip == 0x100000);
        CHECK(r->cpu.rsi == 0x7000);
        CHECK(r->cpu.rbx == 0);
        CHECK(r->cpu.rdi == 0);
        CHECK(r->cpu.rbp == 0);
        CHECK((r->cpu.cr0 >> 31) == 0);
        CHECK(r->cpu.efer == 0);
        check_flat_gdt(g, r->cpu);
        CHECK(g.read_obj<std::uint32_t>(0x7000 + 0x214) == 0x100000);  // code32_start
        CHECK(g.read_obj<std::uint32_t>(0x7000 + 0x218) == 0);          // no initrd
    }
}

// ---- Every error path, by name ----

namespace {

struct bad_case {
    const char* name;
    std::function<image()> make;
    std::function<void(boot_config&, guest&)> tweak;  // for load-time errors
    std::string_view expect;
};

image with(image img, const std::function<void(image&)>& f) {
    f(img);
    return img;
}

image elf_with(const std::function<void(elf_spec&)>& f) {
    elf_spec s = kernel(false);
    s.header_blob = mb1_header(0);
    f(s);
    return build_elf(s);
}

} // namespace

TEST_CASE("malformed images and impossible placements are refused with a message naming the fault") {
    const image good_elf = elf_with([](elf_spec&) {});
    const std::size_t ph0 = 52;  // first ELF32 program header
    const image rd = random_bytes(0x1000, 13);
    const std::vector<module_spec> one_module{{rd, "m"}}, two_modules{{rd, "a"}, {rd, "b"}};
    const image huge(ram_size, std::byte{1});
    const std::vector<module_spec> huge_module{{huge, "big"}};

    const std::vector<bad_case> cases = {
        {"ELF class", [&] { return with(good_elf, [](image& i) { i[4] = std::byte{3}; }); }, {},
         "ELF class is neither ELF32 nor ELF64"},
        {"ELF endianness", [&] { return with(good_elf, [](image& i) { i[5] = std::byte{2}; }); }, {},
         "ELF file is not little-endian"},
        {"ELF machine", [&] { return with(good_elf, [](image& i) { put<std::uint16_t>(i, 18, 62); }); }, {},
         "ELF machine is not x86 (EM_386 for ELF32, EM_X86_64 for ELF64)"},
        {"ELF type", [&] { return with(good_elf, [](image& i) { put<std::uint16_t>(i, 16, 3); }); }, {},
         "ELF file is not an executable (ET_EXEC)"},
        {"ELF truncated header", [&] { return image(good_elf.begin(), good_elf.begin() + 40); }, {},
         "file smaller than its ELF header"},
        {"phdrs past end", [&] { return with(good_elf, [](image& i) { put<std::uint32_t>(i, 28, std::uint32_t(i.size() - 8)); }); },
         {}, "ELF program headers run past the end of the file"},
        {"phentsize", [&] { return with(good_elf, [](image& i) { put<std::uint16_t>(i, 42, 56); }); }, {},
         "ELF program header size is wrong for its class"},
        {"no phdrs", [&] { return with(good_elf, [](image& i) { put<std::uint16_t>(i, 44, 0); }); }, {},
         "ELF file has no program headers"},
        {"filesz > memsz", [&] { return with(good_elf, [&](image& i) { put<std::uint32_t>(i, ph0 + 20, 0x10); }); }, {},
         "ELF segment file size exceeds its memory size"},
        {"file shorter than segment", [&] { return with(good_elf, [&](image& i) { i.resize(i.size() - 0x900); }); }, {},
         "ELF segment runs past the end of the file"},
        {"overlapping segments", [] { return elf_with([](elf_spec& s) { s.segs[1].paddr = 0x201000; }); }, {},
         "ELF load segments overlap"},
        {"no PT_LOAD", [&] { return with(good_elf, [&](image& i) { put<std::uint32_t>(i, ph0, 6); put<std::uint32_t>(i, ph0 + 32, 6); }); },
         {}, "ELF file has no PT_LOAD segment"},
        {"note past its area", [] { return elf_with([](elf_spec& s) { s.notes = pvh_note(0x200000); s.notes[4] = std::byte{64}; }); },
         {}, "ELF note runs past its note area"},
        {"PVH note descriptor", [] {
             return elf_with([](elf_spec& s) { std::uint16_t e = 1; s.notes = note("Xen", 18, &e, 2); });
         }, {}, "PVH entry note descriptor is not 4 or 8 bytes"},
        {"PVH entry above 4 GiB", [] {
             return elf_with([](elf_spec& s) { std::uint64_t e = 0x1'0000'0000; s.notes = note("Xen", 18, &e, 8); });
         }, {}, "PVH entry point above 4 GiB"},
        {"ELF without a boot protocol", [] { return elf_with([](elf_spec& s) { s.header_blob.clear(); }); }, {},
         "ELF image has no multiboot header and no PVH entry note"},
        {"not a kernel", [] { return random_bytes(0x3000, 14); }, {},
         "bad ELF magic and no multiboot or Linux header: not a kernel image"},
        {"multiboot1 checksum", [] {
             return elf_with([](elf_spec& s) { s.header_blob[8] = std::byte{0x55}; });
         }, {}, "multiboot1 header checksum does not sum to zero"},
        {"multiboot1 video", [] { return elf_with([](elf_spec& s) { s.header_blob = mb1_header(mb1::want_video); }); }, {},
         "multiboot1 header requires a feature this loader lacks (video mode or unknown)"},
        {"multiboot1 not ELF, no kludge", [] {
             image i = random_bytes(0x1000, 15);
             const image h = mb1_header(0);
             std::memcpy(i.data() + 0x20, h.data(), h.size());
             return i;
         }, {}, "bad ELF magic: multiboot1 image is neither ELF nor uses the a.out kludge"},
        {"multiboot1 kludge load_end past file", [] {
             image i = random_bytes(0x1000, 16);
             const std::uint32_t f = mb1::aout_kludge;
             const std::uint32_t h[8] = {mb1::header_magic, f, 0u - mb1::header_magic - f, 0x400010, 0x400000, 0x402000, 0, 0x400100};
             std::memcpy(i.data() + 0x10, h, sizeof h);
             return i;
         }, {}, "file size < multiboot header's load_end_addr claims"},
        {"multiboot1 kludge load_addr", [] {
             image i = random_bytes(0x1000, 17);
             const std::uint32_t f = mb1::aout_kludge;
             const std::uint32_t h[8] = {mb1::header_magic, f, 0u - mb1::header_magic - f, 0x400010, 0x3ff000, 0, 0, 0x400100};
             std::memcpy(i.data() + 0x10, h, sizeof h);
             return i;
         }, {}, "multiboot load_addr puts the image start before the file start"},
        {"multiboot1 kludge bss", [] {
             image i = random_bytes(0x1000, 18);
             const std::uint32_t f = mb1::aout_kludge;
             const std::uint32_t h[8] = {mb1::header_magic, f, 0u - mb1::header_magic - f, 0x400010, 0x400000, 0x400800, 0x400400, 0x400100};
             std::memcpy(i.data() + 0x10, h, sizeof h);
             return i;
         }, {}, "multiboot bss_end_addr below the loaded image's end"},
        {"multiboot2 checksum", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({}); s.header_blob[12] = std::byte{1}; });
         }, {}, "multiboot2 header checksum does not sum to zero"},
        {"multiboot2 architecture", [] {
             return elf_with([](elf_spec& s) {
                 s.header_blob = mb2_header({});
                 put<std::uint32_t>(s.header_blob, 4, 4);
                 put<std::uint32_t>(s.header_blob, 12, 0u - mb2::header_magic - 4 - 24);
             });
         }, {}, "multiboot2 header architecture is not i386"},
        {"multiboot2 no end tag", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({{mb2::console_flags, 0, {0}}}, false); });
         }, {}, "multiboot2 header has no end tag"},
        {"multiboot2 tag size", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({{mb2::console_flags, 0, {0}}}); put<std::uint32_t>(s.header_blob, 20, 200); });
         }, {}, "multiboot2 header tag size runs past header_length"},
        {"multiboot2 framebuffer required", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({{mb2::framebuffer, 0, {1024, 768, 32}}}); });
         }, {}, "multiboot2 header has a required tag this loader does not support (framebuffer or EFI)"},
        {"multiboot2 info request", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({{mb2::info_request, 0, {1, 8}}}); });
         }, {}, "multiboot2 header requires an info tag this loader cannot provide"},
        {"multiboot2 ACPI without RSDP", [] {
             return elf_with([](elf_spec& s) { s.header_blob = mb2_header({{mb2::info_request, 0, {14}}}); });
         }, {}, "multiboot2 kernel requires an ACPI RSDP tag but none was given"},
        {"multiboot2 raw without address tag", [] {
             image i = random_bytes(0x1000, 19);
             const image h = mb2_header({{mb2::entry_address, 0, {0x400100}}});
             std::memcpy(i.data() + 0x40, h.data(), h.size());
             return i;
         }, {}, "bad ELF magic: multiboot2 image is neither ELF nor has an address tag"},
        {"multiboot2 raw without entry tag", [] {
             image i = random_bytes(0x1000, 20);
             const image h = mb2_header({{mb2::address, 0, {0x400040, 0x400000, 0, 0}}});
             std::memcpy(i.data() + 0x40, h.data(), h.size());
             return i;
         }, {}, "multiboot2 a.out-style image has no entry address tag"},
        {"entry outside segments", [] { return elf_with([](elf_spec& s) { s.entry = 0x280000; }); }, {},
         "entry point is not inside any loaded segment"},
        {"segment outside RAM", [] { return elf_with([](elf_spec& s) { s.segs[1].paddr = ram_size - 0x1000; }); }, {},
         "kernel segment outside guest RAM"},
        {"segment in the reserved hole", [] { return elf_with([](elf_spec& s) { s.segs[1].paddr = 0xa0000; }); }, {},
         "kernel segment outside guest RAM"},
        {"segment over the boot area", [] { return elf_with([](elf_spec& s) { s.segs[1].paddr = 0x8000; }); }, {},
         "kernel segment overlaps the loader's low boot area (below 0x30000)"},
        {"module too large", [&] { return good_elf; }, [&](boot_config& c, guest&) { c.modules = huge_module; },
         "module does not fit in guest RAM above the kernel"},
        {"no low RAM", [&] { return good_elf; },
         [](boot_config& c, guest& g) { g.map.erase(g.map.begin()); c.memory_map = g.map; },
         "guest RAM does not cover the loader's low boot area (0x500-0x30000)"},
        {"empty memory map", [&] { return good_elf; }, [](boot_config& c, guest&) { c.memory_map = {}; },
         "guest memory map is empty"},
        {"Linux boot_flag", [] { return with(build_bzimage({}), [](image& i) { put<std::uint16_t>(i, 0x1fe, 0); }); }, {},
         "Linux setup header boot_flag is not 0xAA55"},
        {"Linux old protocol", [] { bz_spec b; b.version = 0x0205; return build_bzimage(b); }, {},
         "Linux boot protocol older than 2.06 is not supported"},
        {"Linux zImage", [] { bz_spec b; b.loadflags = 0; return build_bzimage(b); }, {},
         "Linux image is a zImage (LOADED_HIGH clear)"},
        {"Linux truncated setup", [] { image i = build_bzimage({}); i.resize(0x400); return i; }, {},
         "bzImage ends inside its setup sectors"},
        {"Linux syssize", [] { image i = build_bzimage({}); i.resize(i.size() - 0x100); return i; }, {},
         "bzImage smaller than its syssize claims"},
        {"Linux cmdline_size", [] { bz_spec b; b.cmdline_size = 8; return build_bzimage(b); },
         [](boot_config& c, guest&) { c.cmdline = "a command line of more than 8"; },
         "command line longer than the kernel's cmdline_size"},
        {"Linux init_size", [] { bz_spec b; b.init_size = ram_size; return build_bzimage(b); }, {},
         "guest RAM too small for the kernel (its file at 1 MiB, init_size at its run-time address)"},
        {"Linux pref_address", [] { bz_spec b; b.pref_address = ram_size - 0x200000; return build_bzimage(b); }, {},
         "guest RAM too small for the kernel (its file at 1 MiB, init_size at its run-time address)"},
        {"Linux kernel_alignment", [] { bz_spec b; b.kernel_alignment = 0x300000; return build_bzimage(b); }, {},
         "Linux kernel_alignment is not a power of two"},
        {"Linux initrd_addr_max", [] { bz_spec b; b.initrd_addr_max = 0x500000; return build_bzimage(b); },
         [&](boot_config& c, guest&) { c.modules = one_module; }, "initrd would lie above the kernel's initrd_addr_max"},
        {"Linux two modules", [] { return build_bzimage({}); },
         [&](boot_config& c, guest&) { c.modules = two_modules; }, "Linux takes at most one module (the initrd)"},
    };
    for (const bad_case& bc : cases) {
        const std::string_view name = bc.name;
        CAPTURE(name);
        guest g;
        boot_config c = g.config();
        c.cmdline = "x";
        if (bc.tweak) bc.tweak(c, g);
        const image img = bc.make();
        const image before = g.read(0, 0x400000);
        auto r = load(g.mem, img, c);
        REQUIRE(!r.ok());
        CHECK(what(r.err()) == bc.expect);
        // Validate, then commit: a refused image leaves guest memory as it was.
        CHECK((g.read(0, 0x400000) == before));
    }
}

static_assert(guest_target<hv::mmu::guest_memory<fake_memory>>);

TEST_CASE("multiboot2 raw image: address and entry tags replace ELF headers; bss zeroed") {
    guest g;
    constexpr std::uint32_t load_at = 0x500000, hdr_off = 0x80;
    image flat = random_bytes(0x3000, 21);
    const image h = mb2_header({{mb2::address, 0, {load_at + hdr_off, load_at, load_at + 0x2800, load_at + 0x6000}},
                                {mb2::entry_address, 0, {load_at + 0x200}},
                                {mb2::info_request, mb2::tag_optional, {8, 9, 14}}});
    std::memcpy(flat.data() + hdr_off, h.data(), h.size());
    auto p = probe(flat);
    REQUIRE_MESSAGE(p.ok(), what(p.err()));
    CHECK(p->multiboot2);
    CHECK(p->mb2_address);
    CHECK(p->mb2_entry == load_at + 0x200);
    CHECK(p->mb2_required_info == 0);  // an optional request asks for nothing
    boot_config c = g.config();
    c.cmdline = "";
    auto r = load(g.mem, flat, c);
    REQUIRE_MESSAGE(r.ok(), what(r.err()));
    CHECK(r->cpu.rip == load_at + 0x200);
    CHECK(r->kernel_start == load_at);
    CHECK(r->kernel_end == load_at + 0x6000);
    CHECK(g.read(load_at, 0x2800) == image(flat.begin(), flat.begin() + 0x2800));
    CHECK(g.read(load_at + 0x2800, 0x3800) == image(0x3800));
    hv::boot::info bi;
    const hv::status st = hv::boot::parse_multiboot2(r->cpu.rbx, g.reader(), bi);
    REQUIRE_MESSAGE(st.ok(), st.err().what);
    CHECK(bi.cmdline.empty());
    CHECK(bi.module_count == 0);
    CHECK(bi.rsdp == 0);
    check_regions(bi, g.map);
}

// ---- Real mode: a flat boot-sector-style image at 0x7c00 ----

// A PC's low RAM: the whole 640 KiB, as vm::add_pc_ram gives it.
const std::vector<memory_range> pc_map{{0, 0xa0000, hv::boot::region_type::available},
                                       {MiB, ram_size - MiB, hv::boot::region_type::available}};

TEST_CASE("real mode: the flat image at 0x7c00, CS:IP 0000:7C00, DL 0x80, and nothing else written") {
    for (std::size_t size : {std::size_t{512}, std::size_t{0x1234}, real_mode_max_image}) {
        CAPTURE(size);
        guest g;
        const image img = boot_image(size, 31);
        boot_config c = g.config();
        c.memory_map = pc_map;
        c.use = protocol::real_mode;
        auto r = load(g.mem, img, c);
        REQUIRE_MESSAGE(r.ok(), what(r.err()));
        CHECK(r->used == protocol::real_mode);
        CHECK(g.read(0x7c00, size) == img);
        // The loader's other areas keep their junk: no GDT, boot info or command line.
        CHECK(g.read(0x7c00 - 0x100, 0x100) == image(0x100, std::byte{0xa5}));
        CHECK(g.read(0x7c00 + size, 0x400 - (0x7c00 + size) % 0x400) ==
              image(0x400 - (0x7c00 + size) % 0x400, std::byte{0xa5}));
        CHECK(g.read(layout::gdt, 32) == image(32, std::byte{0xa5}));
        CHECK(g.read(layout::zero_page, 16) == image(16, std::byte{0xa5}));
        CHECK(r->kernel_start == 0x7c00);
        CHECK(r->kernel_end == 0x7c00 + size);
        CHECK(r->cpu.mode == cpu_mode::real16);
        CHECK(r->cpu.cs.selector == 0);
        CHECK(r->cpu.cs.base == 0);
        CHECK(r->cpu.rip == 0x7c00);
        CHECK(r->cpu.rsp == 0x7c00);
        CHECK((r->cpu.rdx & 0xff) == 0x80);
        CHECK((r->cpu.rflags & 0x200) == 0);  // interrupts off
        CHECK((r->cpu.cr0 & 1) == 0);         // CR0.PE clear
    }
}

TEST_CASE("real mode: bad images and placements are refused, naming the problem") {
    guest g;
    boot_config c = g.config();
    c.memory_map = pc_map;
    c.use = protocol::real_mode;
    auto refused = [&](const image& img, const boot_config& cfg) -> std::string {
        auto r = load(g.mem, img, cfg);
        if (r.ok()) return "loaded";
        return std::string(what(r.err()));
    };
    CHECK(refused(random_bytes(100, 2), c) == "shorter than one 512-byte boot sector");
    CHECK(refused(boot_image(real_mode_max_image + 1, 3), c) ==
          "larger than the 608 KiB (0x98000 bytes) between 0x7c00 and the EBDA at 0x9fc00");
    image no_signature = boot_image(1024, 4);
    no_signature[511] = std::byte{0};
    CHECK(refused(no_signature, c) == "no boot signature 0x55 0xAA at bytes 510-511: not a flat real-mode image");
    // An ELF kernel (even one ending its first sector in 0x55 0xAA) is no flat image.
    image elf = build_elf(kernel(true));
    elf.resize(std::max<std::size_t>(elf.size(), 512));
    elf[510] = std::byte{0x55};
    elf[511] = std::byte{0xaa};
    CHECK(refused(elf, c).find("an ELF file: a real-mode start takes a flat image") == 0);
    // The error comes before any byte is written.
    CHECK(g.read(0x7c00, 16) == image(16, std::byte{0xa5}));
    // RAM must run from 0 to the image's end.
    std::vector<memory_range> high_only{{MiB, ram_size - MiB, hv::boot::region_type::available}};
    boot_config h = c;
    h.memory_map = high_only;
    CHECK(refused(boot_image(512, 5), h) == "guest RAM does not cover 0x0 to the real-mode image's end");
    std::vector<memory_range> short_low{{0, 0x8000, hv::boot::region_type::available}};
    h.memory_map = short_low;
    CHECK(refused(boot_image(512, 6), h) == "loaded");
    CHECK(refused(boot_image(0x1000, 7), h) == "guest RAM does not cover 0x0 to the real-mode image's end");
    // No modules: there is nowhere to tell the image about them.
    const module_spec m{std::as_bytes(std::span<const std::uint8_t>()), "x"};
    boot_config with_module = c;
    with_module.modules = {&m, 1};
    CHECK(refused(boot_image(512, 8), with_module) == "a real-mode start takes no modules");
    // Real mode is only used when asked for: a flat image alone is no kernel to probe.
    boot_config any = g.config();
    CHECK(refused(boot_image(512, 9), any) != "loaded");
    // hvimage's check is the loader's.
    CHECK(real_mode_image_problem(boot_image(512, 10)) == nullptr);
    CHECK(std::string(real_mode_image_problem(elf)).find("ELF") != std::string::npos);
}

TEST_CASE("a flat image carrying an ELF's multiboot headers: the one without load addresses offers no entry") {
    // As toolchain/realmode_image.py makes color-guest.img: a boot sector, then loaded bytes
    // with a multiboot2 header (no address tag) and a multiboot1 a.out-kludge header.
    constexpr std::uint32_t load_at = 0x200000, mb1_at = 0x220;
    image flat = boot_image(0x2000, 51);
    const image mb2 = mb2_header({});
    std::memcpy(flat.data() + 0x200, mb2.data(), mb2.size());
    const std::uint32_t flags = mb1::aout_kludge;
    // The loaded bytes start after the boot sector: load_at is file offset 0x200.
    const std::uint32_t h[8] = {mb1::header_magic, flags, 0u - mb1::header_magic - flags, load_at + mb1_at - 0x200, load_at, 0, 0,
                                load_at + 0x300};
    std::memcpy(flat.data() + mb1_at, h, sizeof h);

    auto lenient = probe_entries(flat);
    REQUIRE_MESSAGE(lenient.ok(), what(lenient.err()));
    CHECK(lenient->multiboot1);
    CHECK_FALSE(lenient->multiboot2);
    CHECK(lenient->first_offered() == protocol::multiboot1);
    CHECK(std::string_view(lenient->unusable_header) ==
          "bad ELF magic: multiboot2 image is neither ELF nor has an address tag");
    // probe and the loader's own choice refuse it, naming the header; asked for
    // multiboot1, the loader takes it.
    CHECK(what(probe(flat).err()) == lenient->unusable_header);
    guest g;
    boot_config c = g.config();
    CHECK(what(load(g.mem, flat, c).err()) == lenient->unusable_header);
    c.use = protocol::multiboot1;
    auto r = load(g.mem, flat, c);
    REQUIRE_MESSAGE(r.ok(), what(r.err()));
    CHECK(r->used == protocol::multiboot1);
    CHECK(r->cpu.rip == load_at + 0x300);
    CHECK(g.read(load_at, 0x1e00) == image(flat.begin() + 0x200, flat.end()));
    c.use = protocol::multiboot2;
    CHECK(what(load(g.mem, flat, c).err()) == lenient->unusable_header);
    // Given the probe's result (vm::choose_entry has it), the loader takes it as it is.
    guest g2;
    boot_config given = g2.config();
    given.use = protocol::multiboot1;
    given.probed = &*lenient;
    auto r2 = load(g2.mem, flat, given);
    REQUIRE_MESSAGE(r2.ok(), what(r2.err()));
    CHECK(r2->cpu.rip == r->cpu.rip);
    CHECK(g2.read(load_at, 0x1e00) == g.read(load_at, 0x1e00));
    // Without any usable header, probe_entries finds no entry and no fault.
    auto none = probe_entries(boot_image(0x2000, 52));
    REQUIRE(none.ok());
    CHECK_FALSE(none->offers_entry());
    CHECK(none->first_offered() == protocol::none);
}
