#include <doctest/doctest.h>
#include "fakes.hpp"
#include "libhv/dev/cmos_rtc.hpp"

using namespace hv::dev;
using namespace hv::dev::rtc_bits;

namespace {
constexpr std::uint64_t hz = 1'000'000'000;

struct rtc_rig {
    explicit rtc_rig(std::uint64_t unix_time) : rtc{q, unix_time} { rtc.connect_irq(&irq, 8); }
    hvtest::fake_clock clk{hz};
    timer_queue q{clk};
    cmos_rtc rtc;
    hvtest::irq_recorder irq;
    std::uint8_t rd(std::uint8_t idx) {
        rtc.write(0, 1, idx);
        return static_cast<std::uint8_t>(rtc.read(1, 1));
    }
    void wr(std::uint8_t idx, std::uint8_t v) {
        rtc.write(0, 1, idx);
        rtc.write(1, 1, v);
    }
};
std::uint8_t R(cmos_reg r) { return static_cast<std::uint8_t>(r); }
} // namespace

TEST_CASE("civil time conversion round-trips across leap days and centuries") {
    // Reference pairs from an independent calendar implementation.
    struct ref { std::uint64_t unix; std::uint32_t y; unsigned m, d, hh, mm, ss, wday; };
    const ref refs[] = {
        {0, 1970, 1, 1, 0, 0, 0, 5},
        {1709251198, 2024, 2, 29, 23, 59, 58, 5},
        {951782399, 2000, 2, 28, 23, 59, 59, 2},
        {4102444799, 2099, 12, 31, 23, 59, 59, 5},
    };
    for (const ref& r : refs) {
        CAPTURE(r.unix);
        civil_time t = civil_from_unix(r.unix);
        CHECK(t.year == r.y);
        CHECK(t.month == r.m);
        CHECK(t.day == r.d);
        CHECK(t.hour == r.hh);
        CHECK(t.minute == r.mm);
        CHECK(t.second == r.ss);
        CHECK(t.weekday == r.wday);
        CHECK(unix_from_civil(t) == r.unix);
    }
}

TEST_CASE("rtc: BCD time registers advance with guest time") {
    rtc_rig r{1709251198};          // 2024-02-29 23:59:58, a Thursday
    CHECK(r.rd(R(cmos_reg::seconds)) == 0x58);
    CHECK(r.rd(R(cmos_reg::minutes)) == 0x59);
    CHECK(r.rd(R(cmos_reg::hours)) == 0x23);
    CHECK(r.rd(R(cmos_reg::day_of_month)) == 0x29);
    CHECK(r.rd(R(cmos_reg::month)) == 0x02);
    CHECK(r.rd(R(cmos_reg::year)) == 0x24);
    CHECK(r.rd(R(cmos_reg::century)) == 0x20);
    CHECK(r.rd(R(cmos_reg::day_of_week)) == 5);
    r.clk.set(2 * hz);
    CHECK(r.rd(R(cmos_reg::seconds)) == 0x00);
    CHECK(r.rd(R(cmos_reg::hours)) == 0x00);
    CHECK(r.rd(R(cmos_reg::day_of_month)) == 0x01);
    CHECK(r.rd(R(cmos_reg::month)) == 0x03);
    CHECK(r.rd(R(cmos_reg::day_of_week)) == 6);
}

TEST_CASE("rtc: binary and 12-hour formats per register B") {
    rtc_rig r{1709251198 - 12 * 3600};      // 11:59:58
    r.wr(R(cmos_reg::status_b), b_binary);  // binary, 12-hour
    CHECK(r.rd(R(cmos_reg::seconds)) == 58);
    CHECK(r.rd(R(cmos_reg::hours)) == 11);
    r.clk.set(2 * hz);                      // 12:00:00 → 12 PM
    CHECK(r.rd(R(cmos_reg::hours)) == (0x80 | 12));
    r.wr(R(cmos_reg::status_b), b_24h);     // BCD, 24-hour
    CHECK(r.rd(R(cmos_reg::hours)) == 0x12);
}

TEST_CASE("rtc: UIP is set only in the 244 us before each update") {
    rtc_rig r{1000};
    r.clk.set(hz - 244'000 - 1);
    CHECK((r.rd(R(cmos_reg::status_a)) & a_uip) == 0);
    r.clk.set(hz - 244'000);
    CHECK((r.rd(R(cmos_reg::status_a)) & a_uip) == a_uip);
    r.clk.set(hz);
    CHECK((r.rd(R(cmos_reg::status_a)) & a_uip) == 0);
    CHECK((r.rd(R(cmos_reg::status_a)) & 0x7f) == 0x26);
    CHECK(r.rd(R(cmos_reg::status_d)) == d_vrt);
}

TEST_CASE("rtc: the guest sets the time under SET and it runs on from there") {
    rtc_rig r{1709251198};
    r.wr(R(cmos_reg::status_b), b_set | b_24h);
    r.wr(R(cmos_reg::century), 0x20);
    r.wr(R(cmos_reg::year), 0x30);
    r.wr(R(cmos_reg::month), 0x07);
    r.wr(R(cmos_reg::day_of_month), 0x04);
    r.wr(R(cmos_reg::hours), 0x10);
    r.wr(R(cmos_reg::minutes), 0x20);
    r.wr(R(cmos_reg::seconds), 0x30);
    r.clk.advance(5 * hz);                  // frozen while SET
    CHECK(r.rd(R(cmos_reg::seconds)) == 0x30);
    r.wr(R(cmos_reg::status_b), b_24h);
    r.clk.advance(61 * hz);
    CHECK(r.rd(R(cmos_reg::seconds)) == 0x31);
    CHECK(r.rd(R(cmos_reg::minutes)) == 0x21);
    CHECK(r.rd(R(cmos_reg::year)) == 0x30);
    civil_time want{2030, 7, 4, 10, 21, 31, 0};
    CHECK(r.rtc.unix_time() == unix_from_civil(want));
}

TEST_CASE("rtc: port 0x70 bit 7 masks NMI; memory and CPU bytes for firmware") {
    rtc_rig r{0};
    r.rtc.write(0, 1, 0x80 | 0x0d);
    CHECK(r.rtc.nmi_masked());
    r.rtc.write(0, 1, 0x0d);
    CHECK_FALSE(r.rtc.nmi_masked());
    const std::uint64_t gib = 1ull << 30, mib = 1ull << 20;
    r.rtc.set_memory(3 * gib, 2 * gib);
    r.rtc.set_cpu_count(4);
    std::uint32_t above16 = r.rd(0x34) | r.rd(0x35) << 8;
    CHECK(above16 == (3 * gib - 16 * mib) / 65536);
    std::uint32_t above4g = r.rd(0x5b) | r.rd(0x5c) << 8 | r.rd(0x5d) << 16;
    CHECK(above4g == 2 * gib / 65536);
    CHECK((r.rd(0x30) | r.rd(0x31) << 8) == 0xffff);    // capped at 64 MiB
    CHECK((r.rd(0x15) | r.rd(0x16) << 8) == 640);
    CHECK(r.rd(0x5f) == 3);
    unsigned sum = 0;
    for (unsigned i = 0x10; i <= 0x2d; ++i) sum += r.rd(static_cast<std::uint8_t>(i));
    CHECK((r.rd(0x2e) << 8 | r.rd(0x2f)) == (sum & 0xffff));
    r.wr(0x40, 0xa5);                                   // plain NVRAM
    CHECK(r.rd(0x40) == 0xa5);
    CHECK(r.rtc.read(0, 1) == 0xff);                    // the index port is write-only
}

TEST_CASE("rtc: periodic interrupt at 1024 Hz, held until register C is read") {
    rtc_rig r{0};
    r.wr(R(cmos_reg::status_b), b_24h | b_pie);
    unsigned seen = 0;
    std::uint64_t t = 0;
    while (t < hz) {
        t += hz / 4096;
        hvtest::run_until(r.clk, r.q, t, hz / 4096);
        if (r.irq.levels[8]) {
            std::uint8_t c = r.rd(R(cmos_reg::status_c));
            CHECK((c & (c_irqf | c_pf)) == (c_irqf | c_pf));
            ++seen;
        }
    }
    CHECK(seen == 1024);
    CHECK(r.irq.rising[8] == 1024);
}

TEST_CASE("rtc: update-ended and alarm interrupts") {
    rtc_rig r{1709251198};                  // :58
    r.wr(R(cmos_reg::seconds_alarm), 0x03);
    r.wr(R(cmos_reg::minutes_alarm), 0xc0); // don't care
    r.wr(R(cmos_reg::hours_alarm), 0xc0);
    r.wr(R(cmos_reg::status_b), b_24h | b_uie | b_aie);
    unsigned updates = 0, alarms = 0;
    for (std::uint64_t s = 1; s <= 10; ++s) {
        hvtest::run_until(r.clk, r.q, s * hz, hz / 8);
        if (r.irq.levels[8]) {
            std::uint8_t c = r.rd(R(cmos_reg::status_c));
            if (c & c_uf) ++updates;
            if (c & c_af) {
                ++alarms;
                CHECK(r.rd(R(cmos_reg::seconds)) == 0x03);
            }
        }
    }
    CHECK(updates == 10);
    CHECK(alarms == 1);
}
