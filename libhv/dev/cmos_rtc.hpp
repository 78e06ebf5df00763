// MC146818-style RTC and CMOS RAM at 0x70 (index; bit 7 masks NMI) / 0x71 (data),
// IRQ8. The time is wall-clock seconds given at construction plus elapsed guest time.
// Status A's UIP is set during the last 244 us before each second's update. Periodic,
// alarm and update-ended interrupts set register C and drive IRQ8 until C is read.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hv::dev {

enum class cmos_reg : std::uint8_t {
    seconds = 0x00, seconds_alarm = 0x01, minutes = 0x02, minutes_alarm = 0x03,
    hours = 0x04, hours_alarm = 0x05, day_of_week = 0x06, day_of_month = 0x07,
    month = 0x08, year = 0x09,
    status_a = 0x0a, status_b = 0x0b, status_c = 0x0c, status_d = 0x0d,
    diagnostic = 0x0e, shutdown = 0x0f, floppy = 0x10, equipment = 0x14,
    base_mem_lo = 0x15, base_mem_hi = 0x16, ext_mem_lo = 0x17, ext_mem_hi = 0x18,
    checksum_hi = 0x2e, checksum_lo = 0x2f,
    ext_mem2_lo = 0x30, ext_mem2_hi = 0x31, century = 0x32,
    mem_above_16m_lo = 0x34, mem_above_16m_hi = 0x35,   // 64 KiB units, up to 4 GiB
    mem_above_4g_lo = 0x5b, mem_above_4g_mid = 0x5c, mem_above_4g_hi = 0x5d,   // 64 KiB units
    cpu_count_minus_1 = 0x5f,
};

namespace rtc_bits {
inline constexpr std::uint8_t a_uip = 0x80;
inline constexpr std::uint8_t b_set = 0x80, b_pie = 0x40, b_aie = 0x20, b_uie = 0x10, b_sqwe = 0x08,
                              b_binary = 0x04, b_24h = 0x02, b_dse = 0x01;
inline constexpr std::uint8_t c_irqf = 0x80, c_pf = 0x40, c_af = 0x20, c_uf = 0x10;
inline constexpr std::uint8_t d_vrt = 0x80;
} // namespace rtc_bits

struct civil_time {
    std::uint32_t year;     // e.g. 2024
    std::uint8_t month;     // 1-12
    std::uint8_t day;       // 1-31
    std::uint8_t hour, minute, second;
    std::uint8_t weekday;   // 1 = Sunday (the RTC's convention)
};
civil_time civil_from_unix(std::uint64_t seconds);
std::uint64_t unix_from_civil(const civil_time& t);   // years before 1970 clamp to 1970

class cmos_rtc final : public io_device {
public:
    cmos_rtc(timer_queue& timers, std::uint64_t unix_seconds_at_tick0);
    cmos_rtc(const cmos_rtc&) = delete;
    cmos_rtc& operator=(const cmos_rtc&) = delete;

    void connect_irq(irq_sink* sink, unsigned line) { irq_.connect(sink, line); }
    // Fills the memory-size and CPU-count bytes firmware reads; refreshes the checksum.
    void set_memory(std::uint64_t ram_below_4g, std::uint64_t ram_above_4g);
    void set_cpu_count(unsigned cpus);

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] bool nmi_masked() const { return nmi_masked_; }
    [[nodiscard]] std::uint64_t unix_time() const;
    [[nodiscard]] std::uint8_t nvram(std::uint8_t index) const { return ram_[index & 0x7f]; }
    void set_nvram(std::uint8_t index, std::uint8_t v) { ram_[index & 0x7f] = v; }
    [[nodiscard]] bool irq_level() const { return irq_.level(); }

private:
    std::uint8_t read_reg(std::uint8_t idx);
    void write_reg(std::uint8_t idx, std::uint8_t v);
    std::uint8_t encode(std::uint32_t v) const;
    std::uint32_t decode(std::uint8_t v) const;
    std::uint8_t encode_hour(std::uint8_t h) const;
    std::uint8_t decode_hour(std::uint8_t v) const;
    void set_time(std::uint64_t seconds);
    void update_flags(std::uint64_t now);
    bool alarm_matches(std::uint64_t seconds) const;
    std::uint32_t periodic_divider() const;     // in 32.768 kHz cycles; 0 = off
    void reschedule(std::uint64_t now);
    void update_checksum();
    static void fired(void* ctx, std::uint64_t now);

    timer_queue& timers_;
    std::uint64_t hz_;
    timer timer_;
    irq_line irq_;
    std::array<std::uint8_t, 128> ram_{};
    std::uint8_t index_ = 0;
    bool nmi_masked_ = false;
    std::uint64_t base_seconds_;        // wall seconds at base_tick_
    std::uint64_t base_tick_ = 0;
    std::uint64_t frozen_seconds_ = 0;  // while SET
    std::uint64_t flags_tick_ = 0;      // guest tick up to which C's flags are current
};

} // namespace hv::dev
