// 8254 programmable interval timer at 0x40-0x43 (channel 0 → IRQ0, channel 2 gated by
// port 0x61 bit 0 with its OUT readable at bit 5), clocked at 1.193182 MHz of guest
// time. Counter values and OUT levels are computed from the clock when read; only
// channel 0's rising OUT edges are scheduled, as IRQ0 pulses.
//
// Timing model: a count written during PIT clock c is loaded at clock c+1 and then
// decrements once per clock. Modes 2/3 rewritten while counting switch at the end of
// the current period. Counts of 1 in modes 2/3 behave as 2 (1 is illegal there).
#pragma once
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hv::dev {

enum class pit_port : std::uint8_t { counter0 = 0, counter1 = 1, counter2 = 2, control = 3 };

class pit8254 final : public io_device {
public:
    static constexpr std::uint64_t frequency = 1193182;

    explicit pit8254(timer_queue& timers);
    pit8254(const pit8254&) = delete;
    pit8254& operator=(const pit8254&) = delete;

    void connect_irq(irq_sink* sink, unsigned line) { irq0_.connect(sink, line); }
    // Port 0x61 (NMI status and control / speaker): map at 0x61, 1 port.
    io_device& port61() { return port61_; }

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] bool out(unsigned ch) const;
    [[nodiscard]] std::uint16_t count(unsigned ch) const;
    [[nodiscard]] std::uint64_t irq0_pulses() const { return pulses_; }
    [[nodiscard]] std::uint64_t pit_clock() const { return clk_.count(timers_.now()); }
    void set_gate(unsigned ch, bool level);

private:
    struct channel {
        std::uint8_t mode = 0, rw = 3;
        bool bcd = false;
        std::uint16_t n = 0;            // the count as programmed
        bool counting = false;          // a count is loaded (modes 1/5: armed)
        bool triggered = false;         // modes 1/5
        bool gate = true;
        bool paused = false;            // gate low: counting suspended (e frozen)
        std::uint64_t paused_e = 0;
        std::uint64_t start = 0;        // PIT clock at which the counter holds n
        bool has_prev = false;          // modes 2/3: old period still running until `start`
        std::uint64_t prev_start = 0;
        std::uint32_t prev_period = 0;
        std::uint16_t stale = 0;        // value shown before the first load
        bool write_msb_next = false;
        std::uint8_t lsb = 0;
        bool read_msb_next = false;
        bool latched = false;
        std::uint16_t latch = 0;
        bool latch_msb_next = false;
        bool status_latched = false;
        std::uint8_t status = 0;
    };
    struct snapshot {
        std::uint16_t count;
        bool out;
        bool null_count;
    };
    class speaker_port final : public io_device {
    public:
        explicit speaker_port(pit8254& p) : pit_{p} {}
        std::uint64_t read(std::uint64_t offset, unsigned size) override;
        void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;
    private:
        pit8254& pit_;
    };

    snapshot eval(const channel& ch, std::uint64_t c) const;
    static std::uint32_t period(const channel& ch);
    static std::uint32_t modulus(const channel& ch) { return ch.bcd ? 10000 : 65536; }
    static std::uint16_t to_bcd(std::uint32_t v);
    static std::uint32_t from_bcd(std::uint16_t v);
    void control(std::uint8_t v, std::uint64_t c);
    void load(unsigned idx, std::uint16_t n, std::uint64_t c);
    std::uint8_t read_counter(unsigned idx, std::uint64_t c);
    void write_counter(unsigned idx, std::uint8_t v, std::uint64_t c);
    bool next_edge(std::uint64_t after, std::uint64_t& edge) const;
    void reschedule(std::uint64_t c);
    static void fired(void* ctx, std::uint64_t now);

    timer_queue& timers_;
    derived_clock clk_;
    timer timer_;
    irq_line irq0_;
    speaker_port port61_{*this};
    channel ch_[3];
    std::uint8_t port61_bits_ = 0;      // bits 0-3 as written
    std::uint64_t pulses_ = 0;
};

} // namespace hv::dev
