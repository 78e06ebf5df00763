// ACPI fixed hardware (PIIX4-like, at the FADT's pm_base): PM1a event block (status at
// +0, enable at +2), PM1a control at +4, and the 3.579545 MHz PM timer at +8, counted
// from guest time. SCI_EN always reads 1 (no SMM handoff: SMI_CMD is 0). Writing
// SLP_EN with the \_S5 SLP_TYP powers the machine off.
#pragma once
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/event.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hv::dev {

namespace pm1_bits {
inline constexpr std::uint16_t tmr = 1u << 0, gbl = 1u << 5, pwrbtn = 1u << 8, slpbtn = 1u << 9, rtc = 1u << 10,
                               wak = 1u << 15;
inline constexpr std::uint16_t sci_en = 1u << 0, slp_en = 1u << 13;
inline constexpr unsigned slp_typ_shift = 10;
} // namespace pm1_bits

class acpi_pm final : public io_device {
public:
    static constexpr std::uint64_t timer_hz = 3579545;
    static constexpr unsigned ports = 12;

    acpi_pm(timer_queue& timers, event_sink* events, bool timer_32bit = true, std::uint8_t s5_slp_typ = 5);
    acpi_pm(const acpi_pm&) = delete;
    acpi_pm& operator=(const acpi_pm&) = delete;

    void connect_sci(irq_sink* sink, unsigned line) { sci_.connect(sink, line); update_sci(); }
    void set_events(event_sink* e) { events_ = e; }
    // A host-side power button press (for a graceful shutdown request).
    void press_power_button();

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] std::uint32_t timer_value() const;
    [[nodiscard]] std::uint16_t status() const;
    [[nodiscard]] bool sci_level() const { return sci_.level(); }
    [[nodiscard]] std::uint64_t ignored_sleeps() const { return ignored_sleeps_; }

private:
    std::uint8_t read_byte(unsigned off) const;
    void write_byte(unsigned off, std::uint8_t v, std::uint16_t& cnt_write, bool& cnt_written);
    std::uint64_t carries() const;  // how many times the timer's top bit has toggled
    void update_sci();
    void schedule();
    static void fired(void* ctx, std::uint64_t now);

    timer_queue& timers_;
    event_sink* events_;
    derived_clock clk_;
    timer timer_;
    irq_line sci_;
    unsigned bits_;
    std::uint8_t s5_;
    std::uint16_t sts_ = 0, en_ = 0, cnt_ = pm1_bits::sci_en;
    std::uint64_t carries_at_clear_ = 0;
    std::uint64_t ignored_sleeps_ = 0;
};

// ACPI 5+ hardware-reduced sleep registers (FADT SLEEP_CONTROL_REG/SLEEP_STATUS_REG),
// one byte each at +0/+1: how a guest without PM1 blocks powers off. Writing SLP_EN
// (bit 5) with the \_S5 type in bits 4:2 raises power_off.
class acpi_sleep_regs final : public io_device {
public:
    static constexpr unsigned ports = 2;
    static constexpr std::uint8_t slp_en = 1u << 5, wak_sts = 1u << 7;

    explicit acpi_sleep_regs(event_sink* events, std::uint8_t s5_slp_typ = 5) : events_{events}, s5_{s5_slp_typ} {}
    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

private:
    event_sink* events_;
    std::uint8_t s5_;
    std::uint8_t status_ = 0;
};

} // namespace hv::dev
