#include "libhv/dev/ioapic.hpp"

namespace hv::dev {

using namespace ioapic_bits;

ioapic::ioapic(apic_bus& bus, std::uint8_t id, unsigned gsi_base) : bus_{bus}, gsi_base_{gsi_base}, id_{id} {
    redir_.fill(masked);
    bus_.add_eoi_listener(*this);
}

std::uint32_t ioapic::read_reg(std::uint8_t idx) const {
    switch (idx) {
    case static_cast<std::uint8_t>(ioapic_reg::id): return std::uint32_t{id_} << 24;
    case static_cast<std::uint8_t>(ioapic_reg::version): return version_value;
    case static_cast<std::uint8_t>(ioapic_reg::arbitration): return std::uint32_t{id_} << 24;
    default: break;
    }
    if (idx >= 0x10 && idx < 0x10 + 2 * pins) {
        std::uint64_t e = redir_[(idx - 0x10) / 2];
        return static_cast<std::uint32_t>((idx & 1) ? e >> 32 : e);
    }
    return 0xffffffff;
}

void ioapic::write_reg(std::uint8_t idx, std::uint32_t v) {
    if (idx == static_cast<std::uint8_t>(ioapic_reg::id)) {
        id_ = static_cast<std::uint8_t>((v >> 24) & 0x0f);
        return;
    }
    if (idx < 0x10 || idx >= 0x10 + 2 * pins) return;
    unsigned pin = (idx - 0x10) / 2;
    std::uint64_t& e = redir_[pin];
    if (idx & 1) {
        e = (e & 0xffffffffull) | (std::uint64_t{v & 0xff000000u} << 32);
    } else {
        constexpr std::uint64_t ro = delivery_status | remote_irr;
        e = (e & ~0xffffffffull) | (e & ro) | (v & ~ro & 0x1ffffu);
        if (!(e & level)) e &= ~remote_irr;
    }
    // Unmasking (or reprogramming) an asserted level pin delivers it.
    if ((e & level) && !(e & masked) && !(e & remote_irr)) service(pin);
}

void ioapic::deliver(unsigned pin) {
    std::uint64_t e = redir_[pin];
    apic_message m;
    m.vector = static_cast<std::uint8_t>(e & vector);
    m.mode = static_cast<delivery_mode>((e >> 8) & 7);
    m.logical = e & logical;
    m.level_triggered = e & level;
    m.dest = static_cast<std::uint32_t>(e >> dest_shift);
    ++delivered_;
    bus_.send(m);
}

void ioapic::service(unsigned pin) {
    std::uint64_t& e = redir_[pin];
    bool asserted = ((lines_ >> pin) & 1) != static_cast<bool>(e & active_low);
    if (!asserted) return;
    // Fixed/lowest-priority level interrupts wait for the EOI before the next.
    unsigned mode = (e >> 8) & 7;
    if (mode == static_cast<unsigned>(delivery_mode::fixed) || mode == static_cast<unsigned>(delivery_mode::lowest_priority))
        e |= remote_irr;
    deliver(pin);
}

void ioapic::set_irq(unsigned gsi, bool lvl) {
    if (gsi < gsi_base_ || gsi - gsi_base_ >= pins) return;
    unsigned pin = gsi - gsi_base_;
    bool was = (lines_ >> pin) & 1;
    lines_ = lvl ? lines_ | (1u << pin) : lines_ & ~(1u << pin);
    std::uint64_t e = redir_[pin];
    if (e & masked) return;
    bool active_low_pin = e & active_low;
    bool now_active = lvl != active_low_pin, was_active = was != active_low_pin;
    if (e & level) {
        if (now_active && !(e & remote_irr)) service(pin);
    } else if (now_active && !was_active) {
        deliver(pin);
    }
}

void ioapic::eoi(std::uint8_t vec) {
    for (unsigned pin = 0; pin < pins; ++pin) {
        std::uint64_t& e = redir_[pin];
        if ((e & vector) != vec || !(e & remote_irr)) continue;
        e &= ~remote_irr;
        if ((e & level) && !(e & masked)) service(pin);     // still asserted: again
    }
}

std::uint64_t ioapic::read(std::uint64_t offset, unsigned size) {
    std::uint64_t v;
    if (offset == 0x00) v = select_;
    else if (offset == 0x10) v = read_reg(select_);
    else v = 0xffffffff;
    return size >= 8 ? v : v & ((std::uint64_t{1} << (8 * size)) - 1);
}

void ioapic::write(std::uint64_t offset, unsigned size, std::uint64_t value) {
    auto v = static_cast<std::uint32_t>(value);
    if (offset == 0x00) select_ = static_cast<std::uint8_t>(v);
    else if (offset == 0x10 && size >= 4) write_reg(select_, v);
    else if (offset == 0x40 && size >= 4) eoi(static_cast<std::uint8_t>(v));
}

} // namespace hv::dev
