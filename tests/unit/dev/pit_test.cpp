#include <doctest/doctest.h>
#include "fakes.hpp"
#include "libhv/dev/pit8254.hpp"

using namespace hv::dev;

namespace {
constexpr std::uint64_t pit_hz = 1193182;
using u128 = unsigned __int128;

struct pit_rig {
    explicit pit_rig(std::uint64_t hz) : clk{hz} { pit.connect_irq(&irq, 0); }
    hvtest::fake_clock clk;
    timer_queue q{clk};
    pit8254 pit{q};
    hvtest::irq_recorder irq;
    // Reference model of the PIT clock, independent of the device's helpers.
    std::uint64_t pit_clock_at(std::uint64_t t) const { return static_cast<std::uint64_t>(u128(t) * pit_hz / clk.frequency()); }
    void ctrl(std::uint8_t v) { pit.write(3, 1, v); }
    void data(unsigned ch, std::uint8_t v) { pit.write(ch, 1, v); }
    std::uint8_t rd(unsigned ch) { return static_cast<std::uint8_t>(pit.read(ch, 1)); }
    std::uint16_t latch_read(unsigned ch) {
        ctrl(static_cast<std::uint8_t>(ch << 6));   // counter latch
        std::uint8_t lo = rd(ch);
        return static_cast<std::uint16_t>(lo | rd(ch) << 8);
    }
};
} // namespace

TEST_CASE("pit: channel 0 rate generator raises exactly the expected IRQ0 edges") {
    for (std::uint64_t hz : {2'500'000'003ull, 1'000'000'000ull, 3'579'545ull}) {
        for (std::uint16_t n : {std::uint16_t{1193}, std::uint16_t{11932}, std::uint16_t{2}}) {
            CAPTURE(hz);
            CAPTURE(n);
            pit_rig r{hz};
            r.clk.set(hz / 7 + 12345);                      // program at an arbitrary time
            const std::uint64_t t_write = r.clk.now();
            r.ctrl(0x34);                                   // ch0, lobyte/hibyte, mode 2
            r.data(0, static_cast<std::uint8_t>(n));
            r.data(0, static_cast<std::uint8_t>(n >> 8));
            const std::uint64_t c_load = r.pit_clock_at(t_write) + 1;
            const std::uint64_t end = t_write + hz / 20;    // 50 ms of guest time
            const std::uint64_t period_ticks = u128(n) * hz / pit_hz;
            hvtest::run_until(r.clk, r.q, end, period_ticks / 3 + 1);
            // Edge k is at PIT clock c_load + k*n; it has happened by `end` iff that
            // clock is <= the PIT clock at `end`.
            const std::uint64_t expected = (r.pit_clock_at(end) - c_load) / n;
            CHECK(r.irq.rising[0] == expected);
            CHECK(r.pit.irq0_pulses() == expected);
            CHECK(expected > 0);
        }
    }
}

TEST_CASE("pit: the first IRQ0 edge happens at the first guest tick of its PIT clock") {
    const std::uint64_t hz = 2'000'000'011;
    pit_rig r{hz};
    r.ctrl(0x36);       // mode 3 square wave
    r.data(0, 0x00);
    r.data(0, 0x10);    // n = 0x1000
    const std::uint64_t edge_clock = 1 + 0x1000;
    const std::uint64_t edge_tick = static_cast<std::uint64_t>((u128(edge_clock) * hz + pit_hz - 1) / pit_hz);
    hvtest::run_until(r.clk, r.q, edge_tick - 1, 997);
    CHECK(r.irq.rising[0] == 0);
    r.clk.set(edge_tick);
    r.q.run_expired(edge_tick);
    CHECK(r.irq.rising[0] == 1);
}

TEST_CASE("pit: mode 3 square wave: OUT high for the first half of each period") {
    pit_rig r{pit_hz};      // one guest tick per PIT clock
    r.ctrl(0x36);
    r.data(0, 100);
    r.data(0, 0);
    // Loaded at clock 1; OUT high for clocks [1, 51), low for [51, 101), high again.
    for (std::uint64_t c : {1ull, 50ull, 51ull, 100ull, 101ull, 150ull, 151ull}) {
        r.clk.set(c);
        bool expect_high = ((c - 1) % 100) < 50;
        CAPTURE(c);
        CHECK(r.pit.out(0) == expect_high);
    }
}

TEST_CASE("pit: mode 0 on channel 2 counts down, with OUT2 on port 0x61, gated by bit 0") {
    pit_rig r{pit_hz};
    io_device& p61 = r.pit.port61();
    p61.write(0, 1, 0x01);                      // gate 2 on, speaker off
    r.clk.set(1000);
    r.ctrl(0xb0);                               // ch2, lobyte/hibyte, mode 0
    r.data(2, 0xff);
    r.data(2, 0xff);                            // n = 0xffff, loaded at clock 1001
    CHECK(((p61.read(0, 1) & 0x20) == 0));      // OUT2 low while counting
    r.clk.set(1001 + 500);
    CHECK(r.latch_read(2) == 0xffff - 500);
    p61.write(0, 1, 0x00);                      // gate low: counting suspended
    r.clk.advance(10000);
    CHECK(r.latch_read(2) == 0xffff - 500);
    p61.write(0, 1, 0x01);
    r.clk.advance(0xffff - 500 - 1);
    CHECK(r.latch_read(2) == 1);
    CHECK(((p61.read(0, 1) & 0x20) == 0));
    r.clk.advance(1);
    CHECK(r.latch_read(2) == 0);
    CHECK(((p61.read(0, 1) & 0x20) == 0x20));   // terminal count: OUT2 high and stays
    r.clk.advance(5);
    CHECK(r.latch_read(2) == 0xfffb);           // the counter wraps and keeps going
    CHECK(((p61.read(0, 1) & 0x20) == 0x20));
}

TEST_CASE("pit: a latched count stays put while time passes; access modes select bytes") {
    pit_rig r{pit_hz};
    r.ctrl(0x34);
    r.data(0, 0x34);
    r.data(0, 0x12);        // 0x1234 loaded at clock 1
    r.clk.set(1 + 0x10);
    r.ctrl(0x00);           // latch channel 0
    r.clk.advance(0x100);
    CHECK(r.rd(0) == 0x24);
    CHECK(r.rd(0) == 0x12);
    r.ctrl(0x14);           // lobyte only, mode 2
    r.data(0, 0x80);
    r.clk.advance(1 + 0x10);
    CHECK(r.rd(0) == 0x70);
    CHECK(r.rd(0) == 0x70);  // still the low byte: no flip-flop
    r.ctrl(0x24);           // hibyte only
    r.data(0, 0x02);        // n = 0x200
    r.clk.advance(1 + 0x100);
    CHECK(r.rd(0) == 0x01);
}

TEST_CASE("pit: read-back reports status with null count until the count is loaded") {
    pit_rig r{pit_hz};
    r.clk.set(10);
    r.ctrl(0x74);           // ch1 lohi mode 2
    r.ctrl(0xe4);           // read-back: status only, counter 1
    std::uint8_t st = r.rd(1);
    CHECK((st & 0x40) == 0x40);     // null count
    CHECK((st & 0x3f) == 0x34);     // rw=3, mode=2, binary
    r.data(1, 10);
    r.data(1, 0);
    r.clk.advance(2);
    r.ctrl(0xc4);           // read-back: count and status of counter 1
    st = r.rd(1);
    CHECK((st & 0x40) == 0);
    CHECK((st & 0x80) == 0x80);     // OUT high in mode 2
    CHECK(r.rd(1) == 9);            // loaded at clock 11, now 12
    CHECK(r.rd(1) == 0);
}

TEST_CASE("pit: BCD counting") {
    pit_rig r{pit_hz};
    r.ctrl(0xb1);           // ch2 lohi mode 0 BCD
    r.data(2, 0x00);
    r.data(2, 0x10);        // 1000 in BCD
    r.clk.set(1 + 1);
    CHECK(r.latch_read(2) == 0x0999);
    r.clk.set(1 + 1000 + 1);
    CHECK(r.latch_read(2) == 0x9999);   // wraps at 10000
}

TEST_CASE("pit: a periodic count rewritten mid-period takes effect at the period's end") {
    pit_rig r{pit_hz};
    r.ctrl(0x34);
    r.data(0, 100);
    r.data(0, 0);           // edges at clocks 101, 201, ...
    hvtest::run_until(r.clk, r.q, 150, 1);
    r.data(0, 10);
    r.data(0, 0);           // from clock 201: edges every 10 clocks
    hvtest::run_until(r.clk, r.q, 200, 1);
    CHECK(r.irq.rising[0] == 1);
    hvtest::run_until(r.clk, r.q, 201, 1);
    CHECK(r.irq.rising[0] == 2);
    hvtest::run_until(r.clk, r.q, 231, 1);
    CHECK(r.irq.rising[0] == 5);
}

TEST_CASE("pit: mode 0 on channel 0 interrupts once; reprogramming the mode stops it") {
    pit_rig r{pit_hz};
    r.ctrl(0x30);
    r.data(0, 50);
    r.data(0, 0);
    hvtest::run_until(r.clk, r.q, 10000, 7);
    CHECK(r.irq.rising[0] == 1);
    r.ctrl(0x34);           // mode word only: no count yet, no interrupts
    hvtest::run_until(r.clk, r.q, 20000, 7);
    CHECK(r.irq.rising[0] == 1);
    CHECK_FALSE(r.q.next_deadline());
}
