#include <doctest/doctest.h>
#include <vector>
#include "fakes.hpp"
#include "libhv/dev/bus.hpp"
#include "libhv/dev/time.hpp"

using namespace hv::dev;

namespace {
struct recorder_device final : io_device {
    std::uint64_t read(std::uint64_t offset, unsigned size) override {
        reads.push_back({offset, size});
        return value + offset;
    }
    void write(std::uint64_t offset, unsigned size, std::uint64_t v) override { writes.push_back({offset, size, v}); }
    struct access { std::uint64_t offset; unsigned size; std::uint64_t value = 0; };
    std::vector<access> reads, writes;
    std::uint64_t value = 0x1000;
};
} // namespace

TEST_CASE("mul_div is exact, rounds as stated, and saturates") {
    CHECK(mul_div(10, 3, 4) == 7);
    CHECK(mul_div_ceil(10, 3, 4) == 8);
    CHECK(mul_div_ceil(8, 3, 4) == 6);
    CHECK(mul_div(~0ull, 1193182, 3000000000ull) == static_cast<std::uint64_t>((static_cast<unsigned __int128>(~0ull) * 1193182) / 3000000000ull));
    CHECK(mul_div(~0ull, 4, 1) == ~0ull);
    derived_clock d{1193182, 2'000'000'000};
    for (std::uint64_t n : {1ull, 2ull, 12345ull, 1193182ull, 99999999ull}) {
        std::uint64_t t = d.first_tick(n);
        CHECK(d.count(t) >= n);
        CHECK(d.count(t - 1) < n);
    }
}

TEST_CASE("timer queue fires in deadline order, supports re-arming and disarming") {
    hvtest::fake_clock clk{1000};
    timer_queue q{clk};
    std::vector<int> fired;
    struct ctx { std::vector<int>* out; int id; };
    ctx a{&fired, 1}, b{&fired, 2}, c{&fired, 3};
    auto cb = [](void* p, std::uint64_t) { auto* x = static_cast<ctx*>(p); x->out->push_back(x->id); };
    timer ta{cb, &a}, tb{cb, &b}, tc{cb, &c};
    q.arm(ta, 30);
    q.arm(tb, 10);
    q.arm(tc, 20);
    CHECK(q.next_deadline() == 10);
    q.arm(tc, 40);      // moves it
    q.disarm(ta);
    CHECK_FALSE(ta.armed());
    CHECK(q.run_expired(9) == 0);
    CHECK(q.run_expired(100) == 2);
    CHECK(fired == std::vector<int>{2, 3});
    CHECK_FALSE(q.next_deadline());
    {
        timer td{cb, &a};
        q.arm(td, 5);
    }   // destroyed while armed: unlinks itself
    CHECK_FALSE(q.next_deadline());
}

TEST_CASE("timer queue bounds a callback that re-arms itself in the past") {
    hvtest::fake_clock clk{1000};
    timer_queue q{clk};
    struct self { timer_queue* q; timer* t; int n = 0; } s{&q, nullptr};
    timer t{[](void* p, std::uint64_t now) { auto* x = static_cast<self*>(p); ++x->n; x->q->arm(*x->t, now); }, &s};
    s.t = &t;
    q.arm(t, 1);
    CHECK(q.run_expired(5) > 0);
    CHECK(s.n > 0);
    CHECK(t.armed());   // still pending for the next poll, no endless loop
}

TEST_CASE("port bus dispatches to the mapping with relative offsets") {
    port_bus bus;
    recorder_device d;
    REQUIRE(bus.map(0x3f8, 8, d, size1).ok());
    CHECK(bus.read(0x3fa, 1) == 0x02);       // 0x1002 cut to the access size
    CHECK(d.reads.back().offset == 2);
    bus.write(0x3ff, 1, 0x1ab);
    CHECK(d.writes.back().offset == 7);
    CHECK(d.writes.back().value == 0xab);
}

TEST_CASE("unclaimed ports read all-ones and drop writes, and are counted") {
    port_bus bus;
    CHECK(bus.read(0x1234, 1) == 0xff);
    CHECK(bus.read(0x1234, 2) == 0xffff);
    CHECK(bus.read(0x1234, 4) == 0xffffffff);
    bus.write(0x1234, 4, 0);
    CHECK(bus.stats().unclaimed_reads == 1 + 2 + 4);
    CHECK(bus.stats().unclaimed_writes == 4);
}

TEST_CASE("bad sizes never reach a device") {
    port_bus bus;
    recorder_device d;
    REQUIRE(bus.map(0x80, 1, d).ok());
    CHECK(bus.read(0x80, 3) == 0xffffff);
    CHECK(bus.read(0x80, 8) == ~0ull);      // ports are at most 4 bytes
    bus.write(0x80, 0, 1);
    CHECK(bus.stats().bad_size == 3);
    CHECK(d.reads.empty());
    CHECK(d.writes.empty());
}

TEST_CASE("wide or straddling accesses are split into bytes") {
    port_bus bus;
    recorder_device a, b;
    a.value = 0x10;
    b.value = 0x20;
    REQUIRE(bus.map(0x60, 1, a, size1).ok());
    REQUIRE(bus.map(0x61, 1, b, size1).ok());
    CHECK(bus.read(0x60, 2) == 0x2010);
    CHECK(bus.read(0x61, 2) == 0xff20);      // 0x62 is empty
    bus.write(0x60, 4, 0x44332211);
    REQUIRE(a.writes.size() == 1);
    REQUIRE(b.writes.size() == 1);
    CHECK(a.writes[0].value == 0x11);
    CHECK(b.writes[0].value == 0x22);
    CHECK(bus.stats().unclaimed_writes == 2);
}

TEST_CASE("mappings may not overlap, wrap, or leave the bus") {
    port_bus bus;
    recorder_device a, b;
    REQUIRE(bus.map(0x40, 4, a).ok());
    CHECK(bus.map(0x43, 1, b).code() == hv::errc::exists);
    CHECK(bus.map(0x3c, 5, b).code() == hv::errc::exists);
    CHECK(bus.map(0x3c, 4, b).ok());
    CHECK(bus.map(0xfffe, 4, b).code() == hv::errc::out_of_range);
    CHECK(bus.map(0x100, 0, b).code() == hv::errc::invalid_argument);
    CHECK(bus.unmap(b) == 1);
    CHECK(bus.find(0x3c) == nullptr);
    CHECK(bus.find(0x42) == &a);
}

TEST_CASE("mmio bus takes 8-byte accesses and full 64-bit addresses") {
    mmio_bus bus;
    recorder_device d;
    REQUIRE(bus.map(0xfec00000, 0x1000, d).ok());
    CHECK(bus.read(0xfec00010, 8) == 0x1010);
    CHECK(d.reads.back().size == 8);
    CHECK(bus.read(0xfffffffffffffff0ull, 8) == ~0ull);
    CHECK(bus.map(0xfffffffffffff000ull, 0x1000, d).ok());
    CHECK(bus.map(0xfffffffffffff000ull, 0x2000, d).code() == hv::errc::out_of_range);
}

TEST_CASE("port bus: the remembered mapping follows maps and unmaps; bursts reach whole accesses only") {
    port_bus bus;
    recorder_device a, b, c;
    REQUIRE(bus.map(0x60, 1, a, size1).ok());
    REQUIRE(bus.map(0x64, 1, b, size1).ok());
    CHECK(bus.read(0x64, 1) == 0x00);  // b at offset 0
    CHECK(b.reads.size() == 1);
    // A mapping inserted before the remembered one moves it in the table.
    REQUIRE(bus.map(0x40, 4, c, size1).ok());
    bus.write(0x64, 1, 1);
    CHECK(b.writes.size() == 1);
    bus.write(0x41, 1, 2);
    CHECK(c.writes.back().offset == 1);
    CHECK(bus.unmap(b) == 1);
    bus.write(0x64, 1, 3);  // gone: unclaimed
    CHECK(b.writes.size() == 1);
    CHECK(bus.stats().unclaimed_writes == 1);
    bus.write(0x60, 1, 4);
    CHECK(a.writes.size() == 1);
    CHECK(bus.read(0x65, 1) == 0xff);  // next to a remembered mapping: not it
    CHECK(a.reads.empty());
    // A device without bursts takes none; straddling or refused sizes never reach one.
    std::uint8_t buf[8] = {};
    CHECK(bus.read_block(0x40, 1, buf, 8) == 0);
    CHECK(bus.write_block(0x43, 2, buf, 4) == 0);
    CHECK(bus.read_block(0x1234, 1, buf, 8) == 0);
    CHECK(c.reads.empty());
}
