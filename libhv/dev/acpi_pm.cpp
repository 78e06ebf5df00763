#include "libhv/dev/acpi_pm.hpp"

namespace hv::dev {

using namespace pm1_bits;

acpi_pm::acpi_pm(timer_queue& timers, event_sink* events, bool timer_32bit, std::uint8_t s5_slp_typ)
    : timers_{timers}, events_{events}, clk_{timer_hz, timers.clock().frequency()}, timer_{&fired, this},
      bits_{timer_32bit ? 32u : 24u}, s5_{s5_slp_typ} {}

std::uint32_t acpi_pm::timer_value() const {
    std::uint64_t c = clk_.count(timers_.now());
    return static_cast<std::uint32_t>(bits_ == 32 ? c : c & 0xffffff);
}

std::uint64_t acpi_pm::carries() const { return clk_.count(timers_.now()) >> (bits_ - 1); }

std::uint16_t acpi_pm::status() const {
    std::uint16_t s = sts_;
    if (carries() != carries_at_clear_) s |= tmr;
    return s;
}

void acpi_pm::update_sci() {
    sci_.set((cnt_ & sci_en) && (status() & en_ & (tmr | gbl | pwrbtn | slpbtn | rtc)));
}

void acpi_pm::schedule() {
    if (!(en_ & tmr) || (status() & tmr)) {
        timers_.disarm(timer_);
        return;
    }
    timers_.arm(timer_, clk_.first_tick((carries() + 1) << (bits_ - 1)));
}

void acpi_pm::fired(void* ctx, std::uint64_t) {
    auto* pm = static_cast<acpi_pm*>(ctx);
    pm->update_sci();
    pm->schedule();
}

void acpi_pm::press_power_button() {
    sts_ |= pwrbtn;
    update_sci();
}

std::uint8_t acpi_pm::read_byte(unsigned off) const {
    switch (off) {
    case 0: return static_cast<std::uint8_t>(status());
    case 1: return static_cast<std::uint8_t>(status() >> 8);
    case 2: return static_cast<std::uint8_t>(en_);
    case 3: return static_cast<std::uint8_t>(en_ >> 8);
    case 4: return static_cast<std::uint8_t>(cnt_);
    case 5: return static_cast<std::uint8_t>(cnt_ >> 8);
    case 8: case 9: case 10: case 11:
        return static_cast<std::uint8_t>(timer_value() >> (8 * (off - 8)));
    default: return 0xff;
    }
}

void acpi_pm::write_byte(unsigned off, std::uint8_t v, std::uint16_t& cnt_write, bool& cnt_written) {
    switch (off) {
    case 0:
    case 1: {
        auto clr = static_cast<std::uint16_t>(off == 0 ? v : v << 8);     // write 1 to clear
        if (clr & tmr) carries_at_clear_ = carries();
        sts_ &= static_cast<std::uint16_t>(~clr);
        return;
    }
    case 2: en_ = static_cast<std::uint16_t>((en_ & 0xff00) | v); return;
    case 3: en_ = static_cast<std::uint16_t>((en_ & 0x00ff) | v << 8); return;
    case 4: cnt_write = static_cast<std::uint16_t>((cnt_write & 0xff00) | v); cnt_written = true; return;
    case 5: cnt_write = static_cast<std::uint16_t>((cnt_write & 0x00ff) | v << 8); cnt_written = true; return;
    default: return;    // the timer is read-only
    }
}

std::uint64_t acpi_pm::read(std::uint64_t offset, unsigned size) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t off = offset + i;
        v |= std::uint64_t{off < ports ? read_byte(static_cast<unsigned>(off)) : std::uint8_t{0xff}} << (8 * i);
    }
    return v;
}

void acpi_pm::write(std::uint64_t offset, unsigned size, std::uint64_t value) {
    std::uint16_t cnt = cnt_;
    bool cnt_written = false;
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t off = offset + i;
        if (off < ports) write_byte(static_cast<unsigned>(off), static_cast<std::uint8_t>(value >> (8 * i)), cnt, cnt_written);
    }
    if (cnt_written) {
        // SLP_EN and GBL_RLS are write-only; SCI_EN stays set.
        cnt_ = static_cast<std::uint16_t>((cnt & 0x1c02) | sci_en);
        if (cnt & slp_en) {
            unsigned typ = (cnt >> slp_typ_shift) & 7;
            if (typ == s5_ && events_) events_->raise(event{event_kind::power_off, typ});
            else ++ignored_sleeps_;
        }
    }
    update_sci();
    schedule();
}

std::uint64_t acpi_sleep_regs::read(std::uint64_t offset, unsigned size) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t off = offset + i;
        std::uint8_t b = off == 0 ? 0 : off == 1 ? status_ : 0xff;     // control reads 0
        v |= std::uint64_t{b} << (8 * i);
    }
    return v;
}

void acpi_sleep_regs::write(std::uint64_t offset, unsigned size, std::uint64_t value) {
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t off = offset + i;
        auto b = static_cast<std::uint8_t>(value >> (8 * i));
        if (off == 1) {
            status_ &= static_cast<std::uint8_t>(~(b & wak_sts));   // write 1 to clear
        } else if (off == 0 && (b & slp_en)) {
            unsigned typ = (b >> 2) & 7;
            if (typ == s5_ && events_) events_->raise(event{event_kind::power_off, typ});
        }
    }
}

} // namespace hv::dev
