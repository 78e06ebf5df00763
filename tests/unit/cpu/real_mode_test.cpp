#include <doctest/doctest.h>
#include <cstring>
#include <vector>
#include "libhv/arch/x86/regs.hpp"
#include "libhv/cpu/real_mode.hpp"

using namespace hv::cpu;
namespace rf = hv::x86::rflags;

namespace {
// 1 MiB + 64 KiB of guest-linear memory (real mode's reach), all RAM unless `hole` is set.
struct fake_ram {
    std::vector<std::uint8_t> bytes = std::vector<std::uint8_t>(0x110000);
    std::uint64_t hole = ~0ull;
    unsigned writes = 0;
    guest_memory memory() {
        return {this,
                [](void* c, std::uint64_t la, void* dst, std::size_t n) {
                    auto* f = static_cast<fake_ram*>(c);
                    if (la + n > f->bytes.size() || (la <= f->hole && f->hole < la + n)) return false;
                    std::memcpy(dst, &f->bytes[la], n);
                    return true;
                },
                [](void* c, std::uint64_t la, const void* src, std::size_t n) {
                    auto* f = static_cast<fake_ram*>(c);
                    if (la + n > f->bytes.size() || (la <= f->hole && f->hole < la + n)) return false;
                    std::memcpy(&f->bytes[la], src, n);
                    ++f->writes;
                    return true;
                }};
    }
    std::uint16_t word(std::uint64_t la) const { return static_cast<std::uint16_t>(bytes[la] | bytes[la + 1] << 8); }
    void set_vector(std::uint64_t ivt, unsigned n, std::uint16_t cs, std::uint16_t ip) {
        bytes[ivt + 4 * n] = ip & 0xff;
        bytes[ivt + 4 * n + 1] = ip >> 8;
        bytes[ivt + 4 * n + 2] = cs & 0xff;
        bytes[ivt + 4 * n + 3] = cs >> 8;
    }
};
constexpr table_register real_idtr{0, 0x3ff};
} // namespace

TEST_CASE("real-mode delivery pushes FLAGS, CS, IP and loads CS:IP from the IVT") {
    fake_ram ram;
    ram.set_vector(0, 0x60, 0xf000, 0x1234);
    real_mode_frame f{.cs = 0x07c0, .ip = 0x0042, .sp = 0x7000, .ss_base = 0x20000,
                      .rflags = rf::fixed1 | rf::if_ | rf::tf | rf::cf | rf::ac | (2ull << 12)};
    REQUIRE(deliver_real_mode(f, 0x60, real_idtr, ram.memory()).ok());
    CHECK(f.cs == 0xf000);
    CHECK(f.ip == 0x1234);
    CHECK(f.sp == 0x6ffa);
    CHECK(ram.word(0x20000 + 0x6ffe) == static_cast<std::uint16_t>(rf::fixed1 | rf::if_ | rf::tf | rf::cf | (2u << 12)));
    CHECK(ram.word(0x20000 + 0x6ffc) == 0x07c0);
    CHECK(ram.word(0x20000 + 0x6ffa) == 0x0042);
    CHECK(f.rflags == (rf::fixed1 | rf::cf | (2ull << 12)));  // IF, TF, AC cleared; IOPL kept
}

TEST_CASE("real-mode delivery: SP wraps at 0 within the stack segment") {
    fake_ram ram;
    ram.set_vector(0, 3, 0x0000, 0x0500);
    real_mode_frame f{.cs = 0x1000, .ip = 0x0010, .sp = 0x0000, .ss_base = 0x30000, .rflags = rf::fixed1 | rf::if_};
    REQUIRE(deliver_real_mode(f, 3, real_idtr, ram.memory()).ok());
    CHECK(f.sp == 0xfffa);
    CHECK(ram.word(0x30000 + 0xfffe) == (rf::fixed1 | rf::if_));
    CHECK(ram.word(0x30000 + 0xfffc) == 0x1000);
    CHECK(ram.word(0x30000 + 0xfffa) == 0x0010);
    CHECK(ram.word(0x30000) == 0);  // nothing below the segment's base
    CHECK(f.cs == 0);
    CHECK(f.ip == 0x0500);
    CHECK(!(f.rflags & rf::if_));

    // SP 2 and 4: the frame itself wraps (FLAGS at the segment's bottom, IP and CS at its top).
    real_mode_frame g{.cs = 0x1111, .ip = 0x2222, .sp = 0x0002, .ss_base = 0x40000, .rflags = rf::fixed1};
    REQUIRE(deliver_real_mode(g, 3, real_idtr, ram.memory()).ok());
    CHECK(g.sp == 0xfffc);
    CHECK(ram.word(0x40000) == rf::fixed1);
    CHECK(ram.word(0x40000 + 0xfffe) == 0x1111);
    CHECK(ram.word(0x40000 + 0xfffc) == 0x2222);
    CHECK(ram.word(0x40000 + 0x10000) == 0);  // nothing above the segment's top
    real_mode_frame h{.cs = 0x3333, .ip = 0x4444, .sp = 0x0004, .ss_base = 0x60000, .rflags = rf::fixed1 | rf::cf};
    REQUIRE(deliver_real_mode(h, 3, real_idtr, ram.memory()).ok());
    CHECK(h.sp == 0xfffe);
    CHECK(ram.word(0x60002) == (rf::fixed1 | rf::cf));
    CHECK(ram.word(0x60000) == 0x3333);
    CHECK(ram.word(0x60000 + 0xfffe) == 0x4444);
}

TEST_CASE("real-mode delivery uses the IDTR's base and refuses entries beyond its limit") {
    fake_ram ram;
    ram.set_vector(0x8000, 0x21, 0x2000, 0x0300);
    real_mode_frame f{.cs = 0, .ip = 0x7c00, .sp = 0x7c00, .ss_base = 0, .rflags = rf::fixed1};
    REQUIRE(deliver_real_mode(f, 0x21, {0x8000, 0x87}, ram.memory()).ok());
    CHECK(f.cs == 0x2000);
    CHECK(f.ip == 0x0300);

    real_mode_frame g{.cs = 0, .ip = 0x7c00, .sp = 0x7c00, .ss_base = 0, .rflags = rf::fixed1 | rf::if_};
    const real_mode_frame before = g;
    CHECK(deliver_real_mode(g, 0x22, {0x8000, 0x87}, ram.memory()).code() == hv::errc::out_of_range);
    CHECK(g.sp == before.sp);
    CHECK(g.rflags == before.rflags);
    CHECK(ram.writes == 1);  // only the first delivery's frame, in one store
}

TEST_CASE("real-mode delivery refuses pushes across SS's limit and memory that is not there") {
    for (std::uint16_t sp : {1, 3, 5}) {
        fake_ram ram;
        real_mode_frame f{.cs = 0, .ip = 0, .sp = sp, .ss_base = 0, .rflags = rf::fixed1};
        CHECK(deliver_real_mode(f, 0, real_idtr, ram.memory()).code() == hv::errc::out_of_range);
        CHECK(ram.writes == 0);
        CHECK(f.sp == sp);
    }
    fake_ram ram;
    real_mode_frame ok{.cs = 0, .ip = 0, .sp = 7, .ss_base = 0x1000, .rflags = rf::fixed1};
    CHECK(deliver_real_mode(ok, 0, real_idtr, ram.memory()).ok());  // odd SP, pushes at 5, 3, 1
    CHECK(ok.sp == 1);

    ram.hole = 0x5000 + 0x0ffe;
    real_mode_frame f{.cs = 0, .ip = 0, .sp = 0x1000, .ss_base = 0x5000, .rflags = rf::fixed1 | rf::if_};
    CHECK(deliver_real_mode(f, 0, real_idtr, ram.memory()).code() == hv::errc::fault);
    CHECK(f.sp == 0x1000);
    CHECK((f.rflags & rf::if_) != 0);
    ram.hole = 4 * 9 + 2;
    CHECK(deliver_real_mode(f, 9, real_idtr, ram.memory()).code() == hv::errc::fault);
}
