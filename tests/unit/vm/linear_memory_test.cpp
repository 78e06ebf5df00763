// vm::linear_memory over fake host memory: a guest's linear address space as the
// instruction emulator sees it (RAM, ROM, MMIO devices, holes), in every paging mode.
#include <doctest/doctest.h>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/page_table.hpp"
#include "libhv/vm/linear_memory.hpp"
#include "tests/unit/mmu/fake_memory.hpp"
#include "tests/unit/mmu/paging_regs.hpp"

using namespace hv::mmu;
using hv::mmu::test::fake_memory;
using hv::mmu::test::paging_regs;
using hv::insn::access_type;
using hv::vm::linear_memory;
using hv::vm::mmio_handler;
using hv::vm::stray_accesses;

namespace {

constexpr std::uint64_t KiB4 = 0x1000, MiB = 0x10'0000;
constexpr std::uint64_t rom_gpa = 0xf000'0000, dev0_gpa = 0xfe00'0000, dev1_gpa = 0xfe10'0000;

// A device that records its accesses; registers read back what was written.
struct recording_device {
    struct access {
        bool write;
        std::uint64_t offset;
        unsigned size;
        std::uint64_t value;
        friend bool operator==(const access&, const access&) = default;
    };
    std::vector<access> log;
    std::uint8_t regs[KiB4] = {};
    bool broken = false;

    static bool read(void* c, std::uint64_t offset, unsigned size, std::uint64_t& value) {
        auto& d = *static_cast<recording_device*>(c);
        if (d.broken) return false;
        value = 0;
        std::memcpy(&value, d.regs + offset, size);
        d.log.push_back({false, offset, size, value});
        return true;
    }
    static bool write(void* c, std::uint64_t offset, unsigned size, std::uint64_t value) {
        auto& d = *static_cast<recording_device*>(c);
        if (d.broken) return false;
        std::memcpy(d.regs + offset, &value, size);
        d.log.push_back({true, offset, size, value});
        return true;
    }
    mmio_handler handler() { return {this, &read, &write}; }
};

// Guest RAM at [0, 16 MiB) with its page tables in [8 MiB, 12 MiB), a ROM page and two
// devices (region device ids 0 and 1); `F` the guest's paging format.
template <class F>
struct guest {
    fake_memory host;
    guest_memory<fake_memory> ram{host};
    guest_table_pool<fake_memory> pool{ram, 8 * MiB, 4 * MiB};
    page_table<F, guest_table_pool<fake_memory>> pt;
    recording_device dev[2];
    mmio_handler handlers[2];
    stray_accesses strays;
    guest_paging regs;

    guest(const F& format, paging_mode mode) : pt{format, pool} {
        REQUIRE(ram.init().ok());
        REQUIRE(ram.add_ram(0, 16 * MiB).ok());
        REQUIRE(ram.add_rom(rom_gpa, KiB4).ok());
        REQUIRE(ram.add_mmio(dev0_gpa, KiB4, 0).ok());
        REQUIRE(ram.add_mmio(dev1_gpa, 2 * KiB4, 1).ok());
        handlers[0] = dev[0].handler();
        handlers[1] = dev[1].handler();
        REQUIRE(pt.init().ok());
        regs = paging_regs(mode, pt.root());
        REQUIRE(regs.mode() == mode);
    }
    linear_memory<fake_memory> linear() { return {ram, regs, {}, handlers, strays}; }
    void map(std::uint64_t va, std::uint64_t gpa, std::uint64_t size, bool write = true, bool user = false,
             bool execute = true) {
        page_attrs a;
        a.write = write;
        a.user = user;
        a.execute = execute;
        auto tx = pt.begin();
        REQUIRE(tx.map(va, gpa, size, a).ok());
    }
};

template <class F>
void ram_through_paging(const F& format, paging_mode mode, std::uint64_t va) {
    guest<F> g(format, mode);
    g.map(va, 2 * MiB, 2 * KiB4);
    auto mem = g.linear();
    const std::uint64_t value = 0x0123'4567'89ab'cdefull;
    CHECK_FALSE(mem.write(va + 0x10, &value, 8));
    std::uint64_t back = 0;
    REQUIRE(g.ram.read(2 * MiB + 0x10, &back, 8).ok());
    CHECK(back == value);
    const std::uint32_t from_hv = 0xfeedf00d;
    REQUIRE(g.ram.write(2 * MiB + KiB4 + 4, &from_hv, 4).ok());
    std::uint32_t got = 0;
    CHECK_FALSE(mem.read(va + KiB4 + 4, &got, 4, access_type::read));
    CHECK(got == from_hv);
    CHECK(g.strays.hole_reads + g.strays.hole_writes + g.strays.rom_writes + g.strays.device_errors == 0);
}

} // namespace

TEST_CASE("RAM read and written through each paging mode") {
    SUBCASE("4-level") { ram_through_paging(x86_64_format{}, paging_mode::four_level, 0xffff'8000'1234'0000); }
    SUBCASE("PAE") { ram_through_paging(pae_format{}, paging_mode::pae, 0xc000'0000); }
    SUBCASE("32-bit") { ram_through_paging(legacy32_format{}, paging_mode::legacy32, 0x8040'0000); }
    SUBCASE("paging off: linear is physical") {
        guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
        g.regs.cr0 = 1;
        g.regs.cr4 = g.regs.efer = 0;
        auto mem = g.linear();
        const std::uint16_t w = 0xbeef;
        CHECK_FALSE(mem.write(0x1234, &w, 2));
        std::uint16_t back = 0;
        REQUIRE(g.ram.read(0x1234, &back, 2).ok());
        CHECK(back == w);
    }
}

TEST_CASE("MMIO goes to the region's device with its offset and operand size") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    g.map(0x40'0000, dev0_gpa, KiB4);
    g.map(0x50'0000, dev1_gpa, 2 * KiB4);
    auto mem = g.linear();
    const std::uint32_t v4 = 0x11223344;
    CHECK_FALSE(mem.write(0x40'0010, &v4, 4));
    const std::uint8_t v1 = 0x5a;
    CHECK_FALSE(mem.write(0x50'1003, &v1, 1));  // second page of device 1's region
    std::uint16_t v2 = 0;
    CHECK_FALSE(mem.read(0x40'0011, &v2, 2, access_type::read));
    CHECK(v2 == 0x2233);
    using a = recording_device::access;
    CHECK(g.dev[0].log == std::vector<a>{{true, 0x10, 4, v4}, {false, 0x11, 2, 0x2233}});
    CHECK(g.dev[1].log == std::vector<a>{{true, 0x1003, 1, 0x5a}});
    // Longer than 8 bytes (a string or SSE operand): 8-byte pieces in order.
    std::uint8_t sixteen[16];
    for (unsigned i = 0; i < 16; ++i) sixteen[i] = std::uint8_t(0xa0 + i);
    g.dev[0].log.clear();
    CHECK_FALSE(mem.write(0x40'0100, sixteen, 16));
    REQUIRE(g.dev[0].log.size() == 2);
    CHECK(g.dev[0].log[0].offset == 0x100);
    CHECK(g.dev[0].log[0].size == 8);
    CHECK(g.dev[0].log[1].offset == 0x108);
    CHECK(g.dev[0].log[1].value == 0xafaeadacabaaa9a8ull);
    // probe touches nothing.
    g.dev[0].log.clear();
    CHECK_FALSE(g.linear().probe(0x40'0000, 8, access_type::rmw));
    CHECK(g.dev[0].log.empty());
    // A device that refuses the access: open bus, counted.
    g.dev[0].broken = true;
    std::uint32_t r = 0;
    CHECK_FALSE(mem.read(0x40'0020, &r, 4, access_type::read));
    CHECK(r == 0xffffffff);
    CHECK_FALSE(mem.write(0x40'0020, &v4, 4));
    CHECK(g.strays.device_errors == 2);
    CHECK(g.strays.last_gpa == dev0_gpa + 0x20);
    CHECK(g.strays.hole_reads == 0);
}

TEST_CASE("a hole is open bus: reads all ones, writes vanish, both counted") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    g.map(0x40'0000, 0x4000'0000, KiB4);  // guest-physical 1 GiB: no region
    auto mem = g.linear();
    std::uint64_t r = 0;
    CHECK_FALSE(mem.read(0x40'0008, &r, 8, access_type::read));
    CHECK(r == ~0ull);
    std::uint16_t r2 = 0;
    CHECK_FALSE(mem.read(0x40'0ffe, &r2, 2, access_type::read));
    CHECK(r2 == 0xffff);
    CHECK(g.strays.hole_reads == 2);
    CHECK(g.strays.last_gpa == 0x4000'0ffe);
    CHECK_FALSE(mem.write(0x40'0000, &r, 8));
    CHECK(g.strays.hole_writes == 1);
    CHECK(g.strays.last_gpa == 0x4000'0000);
    CHECK(g.strays.rom_writes + g.strays.device_errors == 0);
}

TEST_CASE("ROM reads its contents; a ROM write is dropped and counted") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    const char image[] = "option rom";
    REQUIRE(g.ram.load(rom_gpa + 0x20, image, sizeof image).ok());
    g.map(0x40'0000, rom_gpa, KiB4);  // writable in the guest's tables: only the region says ROM
    auto mem = g.linear();
    char got[sizeof image] = {};
    CHECK_FALSE(mem.read(0x40'0020, got, sizeof got, access_type::read));
    CHECK(std::string_view(got) == "option rom");
    const std::uint32_t junk = 0xdeadbeef;
    CHECK_FALSE(mem.write(0x40'0020, &junk, 4));
    CHECK(g.strays.rom_writes == 1);
    CHECK(g.strays.last_gpa == rom_gpa + 0x20);
    char after[sizeof image] = {};
    REQUIRE(g.ram.read(rom_gpa + 0x20, after, sizeof after).ok());
    CHECK(std::string_view(after) == "option rom");
    CHECK(g.strays.hole_writes == 0);
}

TEST_CASE("an access crossing a page is split at the boundary, each half to its own target") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    g.map(0x40'0000, 3 * MiB, KiB4);           // RAM
    g.map(0x40'1000, dev0_gpa, KiB4);        // followed by the device
    g.map(0x60'0000, 5 * MiB, KiB4);           // RAM, then RAM far away
    g.map(0x60'1000, 7 * MiB, KiB4);
    auto mem = g.linear();
    const std::uint64_t v = 0x8877'6655'4433'2211ull;
    CHECK_FALSE(mem.write(0x40'0ffd, &v, 8));
    std::uint8_t ram_part[3] = {};
    REQUIRE(g.ram.read(3 * MiB + 0xffd, ram_part, 3).ok());
    CHECK(ram_part[0] == 0x11);
    CHECK(ram_part[2] == 0x33);
    // The device's 5 bytes arrive as accesses it can take: 4 then 1.
    using a = recording_device::access;
    CHECK(g.dev[0].log == std::vector<a>{{true, 0, 4, 0x7766'5544u}, {true, 4, 1, 0x88}});

    CHECK_FALSE(mem.write(0x60'0ffa, &v, 8));
    std::uint64_t first = 0, second = 0;
    REQUIRE(g.ram.read(5 * MiB + 0xffa, &first, 6).ok());
    REQUIRE(g.ram.read(7 * MiB, &second, 2).ok());
    CHECK(first == 0x6655'4433'2211ull);
    CHECK(second == 0x8877);
    std::uint64_t back = 0;
    CHECK_FALSE(mem.read(0x60'0ffa, &back, 8, access_type::read));
    CHECK(back == v);
}

TEST_CASE("#PF with the CPU's error code and address; nothing touched when any page faults") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    g.map(0x40'0000, 3 * MiB, KiB4, /*write=*/false, /*user=*/false, /*execute=*/false);
    g.map(0x50'0000, 4 * MiB, KiB4);
    g.map(0x70'0000, dev0_gpa, KiB4);
    auto mem = g.linear();
    const std::uint64_t v = 1;
    std::uint64_t r = 0;

    auto f = mem.read(0x45'0123, &r, 8, access_type::read);  // not present
    REQUIRE(f);
    CHECK(*f == hv::insn::fault{hv::insn::vector::pf, true, 0, 0x45'0123});
    f = mem.write(0x40'0010, &v, 8);  // read-only page, CR0.WP
    REQUIRE(f);
    CHECK(*f == hv::insn::fault{hv::insn::vector::pf, true, pf_error::present | pf_error::write, 0x40'0010});
    f = mem.read(0x40'0000, &r, 1, access_type::fetch);  // NX with EFER.NXE
    REQUIRE(f);
    CHECK(f->error_code == (pf_error::present | pf_error::fetch));
    g.regs.cpl = 3;
    f = g.linear().read(0x50'0000, &r, 4, access_type::read);  // supervisor page from CPL 3
    REQUIRE(f);
    CHECK(f->error_code == (pf_error::present | pf_error::user));
    g.regs.cpl = 0;

    // The second page faults: the first page (RAM) and the device see nothing.
    const std::uint64_t before = 0x1111'1111'1111'1111ull;
    REQUIRE(g.ram.write(4 * MiB + 0xffc, &before, 4).ok());
    f = g.linear().write(0x50'0ffc, &v, 8);
    REQUIRE(f);
    CHECK(*f == hv::insn::fault{hv::insn::vector::pf, true, pf_error::write, 0x50'1000});
    std::uint32_t still = 0;
    REQUIRE(g.ram.read(4 * MiB + 0xffc, &still, 4).ok());
    CHECK(still == 0x1111'1111u);
    f = g.linear().read(0x70'0ffc, &r, 8, access_type::read);
    REQUIRE(f);
    CHECK(f->address == 0x70'1000);
    CHECK(g.dev[0].log.empty());

    // A non-canonical address in 64-bit mode: #GP(0).
    f = g.linear().read(0x0000'8000'0000'0000ull, &r, 8, access_type::read);
    REQUIRE(f);
    CHECK(*f == hv::insn::fault{hv::insn::vector::gp, true, 0, 0x0000'8000'0000'0000ull});
}

TEST_CASE("the exit's guest-physical address serves a one-operand instruction's access at its page offset, nothing else") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    // The guest's tables map 0x40'0000 to device 0; the exit names device 1 (a stand-in for
    // a translation hardware made and the walk would not see: which target is used shows
    // whether the walk ran).
    g.map(0x40'0000, dev0_gpa, KiB4);
    using a = recording_device::access;
    const std::uint32_t v4 = 0x11223344;
    SUBCASE("used after single_operand_instruction, for reads and writes at the same offset") {
        auto mem = g.linear();
        mem.set_exit_address(dev1_gpa + 0x30, std::nullopt);
        mem.single_operand_instruction();
        CHECK_FALSE(mem.write(0x40'0030, &v4, 4));
        std::uint32_t r = 0;
        CHECK_FALSE(mem.read(0x40'0030, &r, 4, access_type::rmw));
        CHECK(g.dev[1].log == std::vector<a>{{true, 0x30, 4, v4}, {false, 0x30, 4, v4}});
        // Another offset walks.
        CHECK_FALSE(mem.write(0x40'0034, &v4, 4));
        CHECK(g.dev[0].log == std::vector<a>{{true, 0x34, 4, v4}});
    }
    SUBCASE("not before the emulator says so (fetch, string instructions), never for a fetch") {
        auto mem = g.linear();
        mem.set_exit_address(dev1_gpa + 0x30, std::nullopt);
        CHECK_FALSE(mem.write(0x40'0030, &v4, 4));
        mem.single_operand_instruction();
        std::uint8_t b = 0;
        CHECK_FALSE(mem.read(0x40'0030, &b, 1, access_type::fetch));
        CHECK(g.dev[1].log.empty());
        CHECK(g.dev[0].log == std::vector<a>{{true, 0x30, 4, v4}, {false, 0x30, 1, 0x44}});
    }
    SUBCASE("with a linear address (VMX), only in that linear page") {
        g.map(0x41'0000, dev0_gpa, KiB4);
        auto mem = g.linear();
        mem.set_exit_address(dev1_gpa + 0x30, 0x40'0030);
        mem.single_operand_instruction();
        CHECK_FALSE(mem.write(0x41'0030, &v4, 4));
        CHECK_FALSE(mem.write(0x40'0030, &v4, 4));
        CHECK(g.dev[0].log == std::vector<a>{{true, 0x30, 4, v4}});
        CHECK(g.dev[1].log == std::vector<a>{{true, 0x30, 4, v4}});
    }
    SUBCASE("a page-crossing operand: only the part at the exit's offset") {
        g.map(0x3f'f000, 2 * MiB, KiB4);  // RAM before the device page
        auto mem = g.linear();
        mem.set_exit_address(dev1_gpa, std::nullopt);  // the fault was on the second page
        mem.single_operand_instruction();
        CHECK_FALSE(mem.write(0x3f'fffe, &v4, 4));
        std::uint16_t low = 0;
        REQUIRE(g.ram.read(2 * MiB + 0xffe, &low, 2).ok());
        CHECK(low == 0x3344);
        CHECK(g.dev[1].log == std::vector<a>{{true, 0, 2, 0x1122}});
        CHECK(g.dev[0].log.empty());
    }
}

// insn::execute with a decode memo and a gva_cache, the way vm::guest runs an MMIO exit:
// a memo hit compares the remembered bytes at the code's host page in place, so every
// change the guest can make without an exit must still be seen.
TEST_CASE("a remembered decode is used only while the code bytes and their translation stay the same") {
    guest<x86_64_format> g(x86_64_format{}, paging_mode::four_level);
    constexpr std::uint64_t code_va = 0x60'0000, code_gpa = 3 * MiB, other_gpa = 4 * MiB, copy_gpa = 5 * MiB;
    g.map(code_va, code_gpa, 2 * KiB4);
    g.map(0x40'0000, dev0_gpa, KiB4);
    const std::uint32_t device_value = 0x11223344;
    std::memcpy(g.dev[0].regs + 0x20, &device_value, 4);
    const std::uint8_t mov_eax[] = {0x8b, 0x03}, mov_ecx[] = {0x8b, 0x0b}, mov_edx[] = {0x8b, 0x13};
    REQUIRE(g.ram.write(code_gpa + 0x10, mov_eax, 2).ok());
    REQUIRE(g.ram.write(other_gpa + 0x10, mov_edx, 2).ok());

    gva_cache cache;
    hv::insn::decode_memo memo;
    std::uint64_t regs[16] = {};  // the vCPU's registers, worked on in place
    auto run = [&](std::uint64_t rip) {
        for (auto& r : regs) r = 0;
        regs[3] = 0x40'0020;  // rbx
        hv::insn::guest_state st{.gpr = hv::insn::gpr_file{regs}, .rip = rip};
        linear_memory<fake_memory> mem{g.ram, g.regs, {}, g.handlers, g.strays, &cache};
        auto r = hv::insn::execute(st, mem, {}, &memo);
        REQUIRE(r);
        return std::pair{*r, st.rip};
    };
    auto leaf_path = [&] {
        guest_walk_path path;
        REQUIRE(translate_gva(g.ram, g.regs, {}, code_va, {access_kind::execute}, &path).status == gva_status::ok);
        return path;
    };
    auto entry_at = [&](std::uint64_t gpa) {
        std::uint64_t e = 0;
        REQUIRE(g.ram.read(gpa, &e, 8).ok());
        return e;
    };
    auto set_entry = [&](std::uint64_t gpa, std::uint64_t e) { REQUIRE(g.ram.write(gpa, &e, 8).ok()); };

    auto [first, rip] = run(code_va + 0x10);
    CHECK(first.result == hv::insn::outcome::done);
    CHECK(rip == code_va + 0x12);
    CHECK(regs[0] == device_value);
    run(code_va + 0x10);  // the first walk set the accessed bits: the cache remembers the second
    const std::uint64_t hits = cache.hits();
    run(code_va + 0x10);  // the memo, its bytes compared in place through the cached translation
    CHECK(regs[0] == device_value);
    CHECK(cache.hits() == hits + 2);  // the code page, then the operand's (no exit address here)

    SUBCASE("the guest rewrites the instruction (self-modifying code)") {
        REQUIRE(g.ram.write(code_gpa + 0x10, mov_ecx, 2).ok());
        run(code_va + 0x10);
        CHECK(regs[0] == 0);
        CHECK(regs[1] == device_value);
    }
    SUBCASE("the guest points the leaf entry elsewhere, without an exit or INVLPG") {
        const guest_walk_path p = leaf_path();
        set_entry(p.entry_pa[1], (entry_at(p.entry_pa[1]) & ~bits(51, 12)) | other_gpa);
        run(code_va + 0x10);
        CHECK(regs[2] == device_value);
        CHECK(regs[0] == 0);
    }
    SUBCASE("the guest switches an upper-level entry to a copied table: the leaf entry itself is unchanged") {
        const guest_walk_path p = leaf_path();
        std::uint8_t table[KiB4];
        REQUIRE(g.ram.read(p.table(1), table, KiB4).ok());
        REQUIRE(g.ram.write(copy_gpa, table, KiB4).ok());
        set_entry(copy_gpa + (p.entry_pa[1] & 0xfff), (p.entry[1] & ~bits(51, 12)) | other_gpa);
        set_entry(p.entry_pa[2], (entry_at(p.entry_pa[2]) & ~bits(51, 12)) | copy_gpa);
        run(code_va + 0x10);
        CHECK(regs[2] == device_value);
    }
    SUBCASE("the guest makes the code page no-execute: #PF for the fetch") {
        const guest_walk_path p = leaf_path();
        set_entry(p.entry_pa[1], entry_at(p.entry_pa[1]) | x86_pte::no_execute);
        auto [r, at] = run(code_va + 0x10);
        CHECK(r.result == hv::insn::outcome::fault);
        CHECK(r.f.vector == hv::insn::vector::pf);
        CHECK(r.f.error_code == (pf_error::present | pf_error::fetch));
        CHECK(at == code_va + 0x10);
        CHECK(regs[0] == 0);
    }
    SUBCASE("the guest switches CR3 to tables that map the code elsewhere") {
        guest_table_pool<fake_memory> pool2{g.ram, 12 * MiB, 2 * MiB};
        page_table<x86_64_format, guest_table_pool<fake_memory>> pt2{x86_64_format{}, pool2};
        REQUIRE(pt2.init().ok());
        page_attrs a;
        a.write = true;
        a.execute = true;
        auto tx = pt2.begin();
        REQUIRE(tx.map(code_va, other_gpa, KiB4, a).ok());
        REQUIRE(tx.map(0x40'0000, dev0_gpa, KiB4, a).ok());
        g.regs.cr3 = pt2.root();
        run(code_va + 0x10);
        CHECK(regs[2] == device_value);
    }
    SUBCASE("an instruction across a page boundary is fetched from both pages every time") {
        REQUIRE(g.ram.write(code_gpa + 0xfff, &mov_eax[0], 1).ok());
        REQUIRE(g.ram.write(code_gpa + 0x1000, &mov_eax[1], 1).ok());
        run(code_va + 0xfff);
        CHECK(regs[0] == device_value);
        REQUIRE(g.ram.write(code_gpa + 0x1000, &mov_ecx[1], 1).ok());
        auto [r, at] = run(code_va + 0xfff);
        CHECK(r.result == hv::insn::outcome::done);
        CHECK(at == code_va + 0x1001);
        CHECK(regs[1] == device_value);
        CHECK(regs[0] == 0);
    }
}
