#include <doctest/doctest.h>
#include <string>
#include <vector>
#include "fake_phys.hpp"
#include "libhv/dev/machine.hpp"
#include "tests/unit/dev/fakes.hpp"

using namespace hv::boot;

namespace {

// Builds a multiboot2 information structure tag by tag, as GRUB lays it out.
struct mb2_builder {
    std::vector<std::uint8_t> data = std::vector<std::uint8_t>(8);

    void tag(std::uint32_t type, const std::vector<std::uint8_t>& payload) {
        mb2::tag t{type, std::uint32_t(8 + payload.size())};
        append(&t, sizeof t);
        data.insert(data.end(), payload.begin(), payload.end());
        while (data.size() % 8) data.push_back(0);
    }
    void string_tag(std::uint32_t type, std::string_view s) {
        std::vector<std::uint8_t> p(s.begin(), s.end());
        p.push_back(0);
        tag(type, p);
    }
    void module(std::uint32_t start, std::uint32_t end, std::string_view s) {
        std::vector<std::uint8_t> p(8);
        std::memcpy(p.data(), &start, 4);
        std::memcpy(p.data() + 4, &end, 4);
        p.insert(p.end(), s.begin(), s.end());
        p.push_back(0);
        tag(mb2::module, p);
    }
    void mmap(const std::vector<mb2::mmap_entry>& entries, std::uint32_t entry_size = 24) {
        std::vector<std::uint8_t> p(8);
        std::uint32_t version = 0;
        std::memcpy(p.data(), &entry_size, 4);
        std::memcpy(p.data() + 4, &version, 4);
        for (auto& e : entries) {
            auto* b = reinterpret_cast<const std::uint8_t*>(&e);
            p.insert(p.end(), b, b + sizeof e);
            p.resize(p.size() + entry_size - sizeof e);
        }
        tag(mb2::mmap, p);
    }
    void end() { tag(mb2::end, {}); }
    std::vector<std::uint8_t> finish() {
        std::uint32_t total = std::uint32_t(data.size());
        std::memcpy(data.data(), &total, 4);
        return data;
    }
    void append(const void* p, std::size_t n) {
        auto* b = static_cast<const std::uint8_t*>(p);
        data.insert(data.end(), b, b + n);
    }
};

constexpr std::uint64_t info_at = 0x10000;

hv::status parse_bytes(std::uint32_t magic, const std::vector<std::uint8_t>& bytes, info& out) {
    fake_phys mem(info_at);
    std::memcpy(mem.bytes.data(), bytes.data(), bytes.size());
    return parse(magic, info_at, mem.reader(), out);
}

mb2_builder typical_mb2() {
    mb2_builder b;
    b.string_tag(mb2::cmdline, "run=hello verbose");
    b.string_tag(mb2::loader_name, "GRUB 2.06");
    b.module(0x200000, 0x201000, "guest console=ttyS0");
    b.mmap({{0, 0x9fc00, 1, 0}, {0x100000, 0x7ee0000, 1, 0}, {0xfffc0000, 0x40000, 2, 0}});
    b.tag(mb2::acpi_old, std::vector<std::uint8_t>(20, 0));
    b.end();
    return b;
}

} // namespace

TEST_CASE("multiboot2: command line, loader, modules, memory map, RSDP") {
    info bi;
    auto bytes = typical_mb2().finish();
    REQUIRE(parse_bytes(multiboot2_magic, bytes, bi).ok());
    CHECK(bi.source == loader::multiboot2);
    CHECK(bi.cmdline == "run=hello verbose");
    CHECK(bi.loader_name == "GRUB 2.06");
    REQUIRE(bi.module_count == 1);
    CHECK(bi.modules[0].start == 0x200000);
    CHECK(bi.modules[0].end == 0x201000);
    CHECK(bi.modules[0].cmdline == "guest console=ttyS0");
    REQUIRE(bi.region_count == 3);
    CHECK(bi.regions[1].base == 0x100000);
    CHECK(bi.regions[1].length == 0x7ee0000);
    CHECK(bi.regions[1].type == region_type::available);
    CHECK(bi.regions[2].type == region_type::reserved);
    CHECK(bi.rsdp != 0);
    CHECK(bi.info_start == info_at);
    CHECK(bi.info_end == info_at + bytes.size());
}

TEST_CASE("multiboot2: malformed input is an error naming the problem") {
    info bi;
    SUBCASE("total_size too small") {
        std::vector<std::uint8_t> b(16, 0);
        b[0] = 4;
        auto s = parse_bytes(multiboot2_magic, b, bi);
        CHECK(s.code() == hv::errc::bad_format);
        CHECK(std::string(s.err().what).find("total_size") != std::string::npos);
    }
    SUBCASE("tag runs past the end") {
        auto bytes = typical_mb2().finish();
        std::uint32_t total = 48;  // cuts the loader-name tag (at offset 40, 18 bytes) in half
        std::memcpy(bytes.data(), &total, 4);
        auto s = parse_bytes(multiboot2_magic, bytes, bi);
        CHECK(s.code() == hv::errc::bad_format);
        CHECK(std::string(s.err().what).find("past total_size") != std::string::npos);
    }
    SUBCASE("no end tag") {
        mb2_builder b;
        b.mmap({{0x100000, 0x100000, 1, 0}});
        auto s = parse_bytes(multiboot2_magic, b.finish(), bi);
        CHECK(std::string(s.err().what).find("end tag") != std::string::npos);
    }
    SUBCASE("tag size below its header") {
        mb2_builder b;
        b.tag(mb2::cmdline, {});
        auto bytes = b.finish();
        bytes[12] = 4;  // size field of the first tag
        CHECK(parse_bytes(multiboot2_magic, bytes, bi).code() == hv::errc::bad_format);
    }
    SUBCASE("bad mmap entry size") {
        mb2_builder b;
        b.mmap({{0x100000, 0x100000, 1, 0}}, 20);
        b.end();
        CHECK(std::string(parse_bytes(multiboot2_magic, b.finish(), bi).err().what).find("entry_size") != std::string::npos);
    }
    SUBCASE("no memory map") {
        mb2_builder b;
        b.string_tag(mb2::cmdline, "x");
        b.end();
        CHECK(std::string(parse_bytes(multiboot2_magic, b.finish(), bi).err().what).find("no memory map") != std::string::npos);
    }
    SUBCASE("module ending before its start") {
        mb2_builder b;
        b.module(0x300000, 0x200000, "");
        b.mmap({{0x100000, 0x100000, 1, 0}});
        b.end();
        CHECK(parse_bytes(multiboot2_magic, b.finish(), bi).code() == hv::errc::bad_format);
    }
    SUBCASE("unterminated command line") {
        mb2_builder b;
        b.tag(mb2::cmdline, std::vector<std::uint8_t>(2000, 'a'));
        b.end();
        CHECK(parse_bytes(multiboot2_magic, b.finish(), bi).code() == hv::errc::bad_format);
    }
    SUBCASE("structure outside readable memory") {
        fake_phys mem(info_at, 64);
        CHECK(parse_multiboot2(info_at + 4096, mem.reader(), bi).code() == hv::errc::fault);
    }
    SUBCASE("unknown magic") {
        CHECK(parse_bytes(0x12345678, typical_mb2().finish(), bi).code() == hv::errc::not_supported);
    }
}

TEST_CASE("multiboot1: QEMU -kernel layout") {
    fake_phys mem(info_at);
    mb1::info mi{};
    mi.flags = mb1::has_mem | mb1::has_cmdline | mb1::has_mods | mb1::has_mmap | mb1::has_loader_name;
    mi.cmdline = info_at + 0x100;
    mi.boot_loader_name = info_at + 0x140;
    mi.mods_count = 1;
    mi.mods_addr = info_at + 0x200;
    mi.mmap_addr = info_at + 0x300;
    mi.mmap_length = 2 * sizeof(mb1::mmap_entry);
    mem.put(info_at, mi);
    mem.put_string(info_at + 0x100, "hello.elf run=hello");
    mem.put_string(info_at + 0x140, "qemu");
    mem.put(info_at + 0x200, mb1::module{0x400000, 0x480000, std::uint32_t(info_at + 0x180), 0});
    mem.put_string(info_at + 0x180, "guest.elf");
    mem.put(info_at + 0x300, mb1::mmap_entry{20, 0, 0x9fc00, 1});
    mem.put(info_at + 0x318, mb1::mmap_entry{20, 0x100000, 0xff00000, 1});

    info bi;
    REQUIRE(parse(multiboot1_magic, info_at, mem.reader(), bi).ok());
    CHECK(bi.source == loader::multiboot1);
    CHECK(bi.cmdline == "hello.elf run=hello");
    CHECK(bi.loader_name == "qemu");
    REQUIRE(bi.module_count == 1);
    CHECK(bi.modules[0].cmdline == "guest.elf");
    CHECK(bi.modules[0].end == 0x480000);
    REQUIRE(bi.region_count == 2);
    CHECK(bi.regions[1].length == 0xff00000);

    SUBCASE("mmap entry claiming too small a size") {
        mem.put(info_at + 0x318, mb1::mmap_entry{4, 0x100000, 0xff00000, 1});
        CHECK(parse(multiboot1_magic, info_at, mem.reader(), bi).code() == hv::errc::bad_format);
    }
    SUBCASE("no memory map") {
        mi.flags &= ~mb1::has_mmap;
        mem.put(info_at, mi);
        CHECK(std::string(parse(multiboot1_magic, info_at, mem.reader(), bi).err().what).find("no memory map") != std::string::npos);
    }
    SUBCASE("too many modules") {
        mi.mods_count = 1000;
        mem.put(info_at, mi);
        CHECK(parse(multiboot1_magic, info_at, mem.reader(), bi).code() == hv::errc::overflow);
    }
}

TEST_CASE("PVH start_info version 1") {
    fake_phys mem(info_at);
    pvh::start_info si{};
    si.magic = pvh_magic;
    si.version = 1;
    si.nr_modules = 2;
    si.modlist_paddr = info_at + 0x100;
    si.cmdline_paddr = info_at + 0x80;
    si.rsdp_paddr = 0xf5a20;
    si.memmap_paddr = info_at + 0x200;
    si.memmap_entries = 2;
    mem.put(info_at, si);
    mem.put_string(info_at + 0x80, "run=hello");
    mem.put(info_at + 0x100, pvh::modlist_entry{0x500000, 0x2000, info_at + 0x180, 0});
    mem.put(info_at + 0x120, pvh::modlist_entry{0x600000, 0x10, 0, 0});
    mem.put_string(info_at + 0x180, "initrd");
    mem.put(info_at + 0x200, pvh::memmap_entry{0, 0xa0000, 1, 0});
    mem.put(info_at + 0x218, pvh::memmap_entry{0x100000, 0x1000000, 1, 0});

    info bi;
    REQUIRE(parse(pvh_magic, info_at, mem.reader(), bi).ok());
    CHECK(bi.source == loader::pvh);
    CHECK(bi.cmdline == "run=hello");
    CHECK(bi.rsdp == 0xf5a20);
    REQUIRE(bi.module_count == 2);
    CHECK(bi.modules[0].end == 0x502000);
    CHECK(bi.modules[0].cmdline == "initrd");
    CHECK(bi.modules[1].cmdline.empty());
    REQUIRE(bi.region_count == 2);
    CHECK(bi.regions[1].base == 0x100000);

    SUBCASE("wrong magic") {
        si.magic = 0xdeadbeef;
        mem.put(info_at, si);
        CHECK(std::string(parse_pvh(info_at, mem.reader(), bi).err().what).find("magic") != std::string::npos);
    }
    SUBCASE("version 0 has no memory map") {
        si.version = 0;
        mem.put(info_at, si);
        CHECK(parse(pvh_magic, info_at, mem.reader(), bi).code() == hv::errc::not_supported);
    }
    SUBCASE("module list outside memory") {
        si.modlist_paddr = 0x7fff0000;
        mem.put(info_at, si);
        CHECK(parse(pvh_magic, info_at, mem.reader(), bi).code() == hv::errc::fault);
    }
    SUBCASE("empty memory map") {
        si.memmap_entries = 0;
        mem.put(info_at, si);
        CHECK(parse(pvh_magic, info_at, mem.reader(), bi).code() == hv::errc::bad_format);
    }
    SUBCASE("module wrapping past 2^64") {
        mem.put(info_at + 0x120, pvh::modlist_entry{~0ull - 4, 0x10, 0, 0});
        CHECK(parse(pvh_magic, info_at, mem.reader(), bi).code() == hv::errc::bad_format);
    }
}

// ---- Real mode: libhv's stub hands off; fw_cfg of the emulated PC has the rest ----

namespace {

struct pc_ports {
    hvtest::fake_clock clk{1'000'000'000};
    hv::dev::machine m;
    unsigned accesses = 0;
    explicit pc_ports(std::uint64_t ram) : m{hv::dev::machine_config::pc(1, ram), clk} {}
    port_io io() {
        return {[](void* c, std::uint16_t port, std::uint16_t v) {
                    auto* self = static_cast<pc_ports*>(c);
                    ++self->accesses;
                    self->m.io_write(port, 2, v);
                },
                [](void* c, std::uint16_t port) {
                    auto* self = static_cast<pc_ports*>(c);
                    ++self->accesses;
                    return static_cast<std::uint8_t>(self->m.io_read(port, 1));
                },
                this};
    }
};

constexpr std::uint64_t handoff_at = 0x7c00 + real_mode_handoff_offset;

fake_phys low_memory_with_handoff(std::uint32_t cr0 = 0x10) {
    fake_phys mem(0, 0x100000);
    real_mode_handoff h{real_mode_magic, 0x100000, 0xa04c, 0x10005d, 123456789, cr0, 0x80};
    mem.put(handoff_at, h);
    return mem;
}

} // namespace

TEST_CASE("real mode: command line and memory map from the PC's fw_cfg, the RSDP by its signature") {
    pc_ports pc(64 << 20);
    const std::string line = "expect=hvm hv-start-tsc=4242";
    pc.m.firmware_config().set_cmdline(line);
    fake_phys mem = low_memory_with_handoff();
    // An RSDP (checksummed) at 0xe0010, after a signature with a bad checksum at 0xe0000.
    std::uint8_t rsdp[20] = {'R', 'S', 'D', ' ', 'P', 'T', 'R', ' '};
    rsdp[8] = 1;  // a checksum byte that does not sum to 0
    mem.put(0xe0000, rsdp);
    rsdp[8] = 0;
    std::uint8_t sum = 0;
    for (std::uint8_t b : rsdp) sum = static_cast<std::uint8_t>(sum + b);
    rsdp[8] = static_cast<std::uint8_t>(-sum);
    mem.put(0xe0010, rsdp);
    const port_io io = pc.io();
    info bi;
    const hv::status s = parse(real_mode_magic, handoff_at, mem.reader(), bi, &io);
    REQUIRE_MESSAGE(s.ok(), s.err().what);
    CHECK(bi.source == loader::real_mode);
    CHECK(std::string(to_string(bi.source)) == "real-mode");
    CHECK(bi.cmdline == line);
    CHECK(bi.first_instruction_tsc == 123456789);
    CHECK(bi.boot_drive == 0x80);
    CHECK(bi.rsdp == 0xe0010);
    CHECK(bi.module_count == 0);
    // fw_cfg's etc/e820 says [0, 64 MiB); the 640 KiB-1 MiB window is never RAM.
    REQUIRE(bi.region_count == 2);
    CHECK(bi.regions[0].base == 0);
    CHECK(bi.regions[0].length == 0xa0000);
    CHECK(bi.regions[0].type == region_type::available);
    CHECK(bi.regions[1].base == 0x100000);
    CHECK(bi.regions[1].length == (64 << 20) - 0x100000);
    CHECK(bi.info_start == handoff_at);
    CHECK(bi.info_end == handoff_at + sizeof(real_mode_handoff));
    CAPTURE(pc.accesses);  // one port access per byte: the cost of no DMA interface
    CHECK(pc.accesses < 200);
}

TEST_CASE("real mode: a hand-off that is not one, or a PC without fw_cfg, is refused by name") {
    pc_ports pc(64 << 20);
    const port_io io = pc.io();
    info bi;
    fake_phys pe_set = low_memory_with_handoff(0x11);
    CHECK(std::string(parse(real_mode_magic, handoff_at, pe_set.reader(), bi, &io).err().what) ==
          "the real-mode stub ran with CR0.PE set: not a real-mode start");
    fake_phys no_magic(0, 0x100000);
    CHECK(parse(real_mode_magic, handoff_at, no_magic.reader(), bi, &io).code() == hv::errc::bad_format);
    fake_phys ok = low_memory_with_handoff();
    CHECK(parse(real_mode_magic, handoff_at, ok.reader(), bi).code() == hv::errc::invalid_argument);  // no port I/O
    // Open bus where fw_cfg would be.
    const port_io open_bus{[](void*, std::uint16_t, std::uint16_t) {}, [](void*, std::uint16_t) -> std::uint8_t { return 0xff; },
                           nullptr};
    const hv::status s = parse(real_mode_magic, handoff_at, ok.reader(), bi, &open_bus);
    CHECK(s.code() == hv::errc::not_found);
    CHECK(std::string(s.err().what).find("no fw_cfg at ports 0x510/0x511") != std::string::npos);
    // No command line set: an empty one.
    const hv::status t = parse(real_mode_magic, handoff_at, ok.reader(), bi, &io);
    REQUIRE_MESSAGE(t.ok(), t.err().what);
    CHECK(bi.cmdline.empty());
}
