// 82093AA-style I/O APIC (version 0x20, with the EOI register) at 0xfec00000: IOREGSEL
// at +0x00, IOWIN at +0x10, EOI at +0x40. 24 pins; GSI n is pin n - gsi_base.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/lapic.hpp"

namespace hv::dev {

enum class ioapic_reg : std::uint8_t { id = 0x00, version = 0x01, arbitration = 0x02, redir0 = 0x10 };

namespace ioapic_bits {
inline constexpr std::uint64_t vector = 0xff, mode = 0x700, logical = 1u << 11, delivery_status = 1u << 12,
                               active_low = 1u << 13, remote_irr = 1u << 14, level = 1u << 15,
                               masked = 1u << 16;
inline constexpr unsigned dest_shift = 56;
} // namespace ioapic_bits

class ioapic final : public io_device, public irq_sink, public eoi_listener {
public:
    static constexpr unsigned pins = 24;
    static constexpr std::uint32_t version_value = 0x20 | ((pins - 1) << 16);

    ioapic(apic_bus& bus, std::uint8_t id = 0, unsigned gsi_base = 0);
    ioapic(const ioapic&) = delete;
    ioapic& operator=(const ioapic&) = delete;

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;
    void set_irq(unsigned gsi, bool level) override;
    void eoi(std::uint8_t vector) override;

    [[nodiscard]] std::uint64_t redirection(unsigned pin) const { return pin < pins ? redir_[pin] : 0; }
    [[nodiscard]] unsigned gsi_base() const { return gsi_base_; }
    [[nodiscard]] std::uint64_t delivered() const { return delivered_; }

private:
    std::uint32_t read_reg(std::uint8_t idx) const;
    void write_reg(std::uint8_t idx, std::uint32_t v);
    void deliver(unsigned pin);
    void service(unsigned pin);     // a level pin asserted, unmasked, not awaiting EOI

    apic_bus& bus_;
    unsigned gsi_base_;
    std::uint8_t id_;
    std::uint8_t select_ = 0;
    std::array<std::uint64_t, pins> redir_{};
    std::uint32_t lines_ = 0;       // raw pin levels
    std::uint64_t delivered_ = 0;
};

} // namespace hv::dev
