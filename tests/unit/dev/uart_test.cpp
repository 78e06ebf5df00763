#include <doctest/doctest.h>
#include <string>
#include "fakes.hpp"
#include "libhv/dev/uart16550.hpp"

using namespace hv::dev;
using namespace hv::dev::uart_bits;

namespace {
constexpr unsigned THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

struct uart_rig {
    hvtest::fake_clock clk{1'000'000'000};
    timer_queue q{clk};
    uart16550 u{&q};
    hvtest::irq_recorder irq;
    std::string out;
    uart_rig() {
        u.connect_irq(&irq, 4);
        u.set_sink(callback<std::uint8_t>{[](void* c, std::uint8_t b) { static_cast<std::string*>(c)->push_back(static_cast<char>(b)); }, &out});
    }
    std::uint8_t rd(unsigned r) { return static_cast<std::uint8_t>(u.read(r, 1)); }
    void wr(unsigned r, std::uint8_t v) { u.write(r, 1, v); }
    bool line() { return irq.levels[4]; }
};
} // namespace

TEST_CASE("uart: scratch, line control and the divisor latch") {
    uart_rig r;
    r.wr(SCR, 0x5a);
    CHECK(r.rd(SCR) == 0x5a);
    r.wr(LCR, 0x83);            // DLAB + 8 data bits
    r.wr(THR, 0x01);            // DLL
    r.wr(IER, 0x00);            // DLM
    CHECK(r.u.divisor() == 1);
    CHECK(r.rd(THR) == 0x01);
    r.wr(LCR, 0x03);
    CHECK(r.rd(LCR) == 0x03);
    r.wr(IER, 0xff);
    CHECK(r.rd(IER) == 0x0f);   // bits 7:4 are always 0
    CHECK(r.out.empty());       // DLAB writes never transmitted
}

TEST_CASE("uart: transmit goes to the sink and THR/TEMT stay empty") {
    uart_rig r;
    for (char c : std::string("hi\n")) r.wr(THR, static_cast<std::uint8_t>(c));
    CHECK(r.out == "hi\n");
    CHECK((r.rd(LSR) & (lsr_thre | lsr_temt)) == (lsr_thre | lsr_temt));
    CHECK(r.u.transmitted() == 3);
}

TEST_CASE("uart: THRE interrupt, cleared by reading IIR, re-armed by a write, gated by OUT2") {
    uart_rig r;
    r.wr(IER, ier_thre);
    CHECK(r.rd(IIR) == iir_thre);       // enabling ETBEI with THR empty interrupts
    CHECK(r.rd(IIR) == iir_none);       // reading IIR acknowledged it
    r.wr(THR, 'x');
    CHECK_FALSE(r.line());              // OUT2 clear: the PC's IRQ buffer is off
    r.wr(MCR, mcr_out2);
    CHECK(r.line());
    CHECK(r.rd(IIR) == iir_thre);
    CHECK_FALSE(r.line());
}

TEST_CASE("uart: received data sets DR and raises the RX interrupt until read") {
    uart_rig r;
    r.wr(MCR, mcr_out2 | mcr_dtr | mcr_rts);
    r.wr(IER, ier_rda);
    CHECK_FALSE(r.line());
    CHECK(r.u.receive('A'));
    CHECK(r.line());
    CHECK((r.rd(LSR) & lsr_dr));
    CHECK(r.rd(IIR) == iir_rda);
    CHECK_FALSE(r.u.receive('B'));      // no FIFO: one holding register
    CHECK(r.rd(THR) == 'A');
    CHECK_FALSE(r.line());
    CHECK_FALSE((r.rd(LSR) & lsr_dr));
}

TEST_CASE("uart: loopback sends THR to RBR, mirrors MCR in MSR, and keeps the IRQ off") {
    uart_rig r;
    r.wr(IER, ier_rda);
    r.wr(MCR, mcr_loop | mcr_out2 | mcr_rts);
    r.wr(THR, 0x42);
    CHECK(r.out.empty());
    CHECK((r.rd(LSR) & lsr_dr));
    CHECK(r.rd(IIR) == iir_rda);        // reported...
    CHECK_FALSE(r.line());              // ...but OUT2 is held inactive in loopback
    CHECK(r.rd(THR) == 0x42);
    std::uint8_t msr = r.rd(MSR);
    CHECK((msr & 0xf0) == (msr_cts | msr_dcd));     // RTS→CTS, OUT2→DCD
    r.wr(MCR, mcr_loop | mcr_out2 | mcr_rts | mcr_dtr);
    msr = r.rd(MSR);
    CHECK((msr & msr_ddsr));
    CHECK((msr & msr_dsr));
    CHECK((r.rd(MSR) & 0x0f) == 0);     // deltas clear on read
    CHECK_FALSE(r.u.receive('z'));      // the line is disconnected in loopback
    r.wr(MCR, mcr_out2);
    r.wr(THR, 'o');
    CHECK(r.out == "o");
}

TEST_CASE("uart: FIFO trigger level and character timeout in guest time") {
    uart_rig r;
    r.wr(LCR, 0x83);
    r.wr(THR, 1);               // 115200 baud: a character is 10/115200 s
    r.wr(LCR, 0x03);
    r.wr(FCR, fcr_enable | 0x40);       // trigger at 4
    r.wr(MCR, mcr_out2);
    r.wr(IER, ier_rda);
    CHECK((r.rd(IIR) & iir_fifo) == iir_fifo);
    for (char c : std::string("abc")) REQUIRE(r.u.receive(static_cast<std::uint8_t>(c)));
    CHECK_FALSE(r.line());
    // Four character times: 4 * 10 * 16 * divisor / 1843200 s = 347223 ns (rounded up).
    const std::uint64_t four_chars = (4 * 10 * 16 * 1000000000ull + 1843199) / 1843200;
    hvtest::run_until(r.clk, r.q, four_chars - 1, 1000);
    CHECK_FALSE(r.line());
    hvtest::run_until(r.clk, r.q, four_chars, 1);
    CHECK(r.line());
    CHECK((r.rd(IIR) & 0x0f) == iir_timeout);
    CHECK(r.rd(THR) == 'a');
    CHECK_FALSE(r.line());
    REQUIRE(r.u.receive('d'));
    REQUIRE(r.u.receive('e'));
    CHECK(r.line());                    // 4 waiting: trigger level reached
    CHECK((r.rd(IIR) & 0x0f) == iir_rda);
}

TEST_CASE("uart: overrun and line status interrupt") {
    uart_rig r;
    r.wr(FCR, fcr_enable);
    r.wr(MCR, mcr_loop);
    for (int i = 0; i < 17; ++i) r.wr(THR, static_cast<std::uint8_t>(i));
    r.wr(IER, ier_rls);
    CHECK(r.rd(IIR) == (iir_rls | iir_fifo));
    std::uint8_t lsr = r.rd(LSR);
    CHECK((lsr & lsr_oe));
    CHECK((lsr & lsr_fifo_err));
    CHECK_FALSE((r.rd(LSR) & lsr_oe));   // cleared by the read
    for (int i = 0; i < 16; ++i) CHECK(r.rd(THR) == i);     // the 17th was lost
    r.u.inject_line_error(lsr_fe);
    CHECK((r.rd(IIR) & 0x0f) == iir_rls);
}
