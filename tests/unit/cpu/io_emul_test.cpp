#include <doctest/doctest.h>
#include <cstring>
#include <vector>
#include "libhv/cpu/io_emul.hpp"

using namespace hv::cpu;

namespace {
struct fake_io {
    std::vector<std::pair<std::uint16_t, std::uint32_t>> outs;
    std::vector<std::uint32_t> to_read;
    std::vector<std::uint8_t> sizes;
    std::vector<std::uint8_t> ram = std::vector<std::uint8_t>(0x10000);
    io_ports ports() {
        return {this,
                [](void* c, std::uint16_t, std::uint8_t size) {
                    auto* f = static_cast<fake_io*>(c);
                    f->sizes.push_back(size);
                    std::uint32_t v = f->to_read.empty() ? 0xffffffff : f->to_read.front();
                    if (!f->to_read.empty()) f->to_read.erase(f->to_read.begin());
                    return v;
                },
                [](void* c, std::uint16_t port, std::uint8_t size, std::uint32_t v) {
                    auto* f = static_cast<fake_io*>(c);
                    f->sizes.push_back(size);
                    f->outs.push_back({port, v});
                }};
    }
    guest_memory memory() {
        return {this,
                [](void* c, std::uint64_t a, void* d, std::size_t n) {
                    auto* f = static_cast<fake_io*>(c);
                    if (a + n > f->ram.size()) return false;
                    std::memcpy(d, f->ram.data() + a, n);
                    return true;
                },
                [](void* c, std::uint64_t a, const void* s, std::size_t n) {
                    auto* f = static_cast<fake_io*>(c);
                    if (a + n > f->ram.size()) return false;
                    std::memcpy(f->ram.data() + a, s, n);
                    return true;
                }};
    }
};
io_detail port_io(std::uint16_t port, std::uint8_t size, bool in, bool string = false, bool rep = false,
                  std::uint8_t asz = 0) {
    return io_detail{port, size, asz, in, string, rep};
}
} // namespace

TEST_CASE("io emulation: IN/OUT of every size through RAX") {
    fake_io f;
    auto s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rax = 0xaaaaaaaa'bbbbccdd;
    REQUIRE(emulate_io(s, port_io(0x80, 1, false), f.ports(), f.memory()).ok());
    REQUIRE(emulate_io(s, port_io(0x80, 2, false), f.ports(), f.memory()).ok());
    REQUIRE(emulate_io(s, port_io(0x80, 4, false), f.ports(), f.memory()).ok());
    REQUIRE(f.outs.size() == 3);
    CHECK(f.outs[0].second == 0xdd);
    CHECK(f.outs[1].second == 0xccdd);
    CHECK(f.outs[2].second == 0xbbbbccdd);

    f.to_read = {0x12345678, 0x12345678, 0x12345678};
    REQUIRE(emulate_io(s, port_io(0x60, 1, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0xaaaaaaaa'bbbbcc78);  // AL only
    REQUIRE(emulate_io(s, port_io(0x60, 2, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0xaaaaaaaa'bbbb5678);  // AX only
    REQUIRE(emulate_io(s, port_io(0x60, 4, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0x12345678);           // EAX zero-extends
    CHECK(f.sizes == std::vector<std::uint8_t>{1, 2, 4, 1, 2, 4});
    CHECK_FALSE(emulate_io(s, port_io(0x60, 3, true), f.ports(), f.memory()).ok());
}

TEST_CASE("io emulation: REP OUTS/INS, direction flag, address size, partial runs") {
    fake_io f;
    auto s = initial_state(guest_mode::protected32, 0x1000);
    for (int i = 0; i < 8; ++i) f.ram[0x2000 + i] = static_cast<std::uint8_t>(0x10 + i);
    s.regs.rsi = 0x2000;
    s.regs.rcx = 8;
    auto r = emulate_io(s, port_io(0x3f8, 1, false, true, true, 32), f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(r->remaining == 0);
    REQUIRE(f.outs.size() == 8);
    for (int i = 0; i < 8; ++i) CHECK(f.outs[i].second == 0x10u + i);
    CHECK(s.regs.rsi == 0x2008);
    CHECK(s.regs.rcx == 0);

    // rep insw downward with DF=1, 16-bit addressing wrapping DI.
    f.to_read = {0xa1a2, 0xb1b2};
    s.rflags |= 1u << 10;
    s.regs.rdi = 0x10002;  // DI = 2 under 16-bit addressing
    s.regs.rcx = 0xffff0002;
    r = emulate_io(s, port_io(0x1f0, 2, true, true, true, 16), f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(f.ram[2] == 0xa2);
    CHECK(f.ram[3] == 0xa1);
    CHECK(f.ram[0] == 0xb2);
    CHECK(f.ram[1] == 0xb1);
    CHECK(s.regs.rdi == 0x1fffe);  // DI wrapped to 0xfffe, upper bits kept
    CHECK(s.regs.rcx == 0xffff0000);

    // A partial run leaves the rest for the next exit.
    s.rflags &= ~(1ull << 10);
    s.regs.rsi = 0x2000;
    s.regs.rcx = 5;
    f.outs.clear();
    r = emulate_io(s, port_io(0x80, 1, false, true, true, 32), f.ports(), f.memory(), {}, 2);
    REQUIRE(r.ok());
    CHECK(r->remaining == 3);
    CHECK(s.regs.rcx == 3);
    CHECK(f.outs.size() == 2);

    // Non-REP string: one element, RCX untouched; a segment base applies.
    s.regs.rcx = 77;
    s.regs.rsi = 0x10;
    f.ram[0x2010] = 0x5a;
    f.outs.clear();
    r = emulate_io(s, port_io(0x80, 1, false, true, false, 32), f.ports(), f.memory(), {0x2000, 0});
    REQUIRE(r.ok());
    CHECK(f.outs.at(0).second == 0x5a);  // from DS.base 0x2000 + SI 0x10
    CHECK(s.regs.rcx == 77);
    s.regs.rsi = 0xfffff000;
    CHECK(emulate_io(s, port_io(0x80, 1, false, true, false, 32), f.ports(), f.memory()).code() == hv::errc::fault);
}
