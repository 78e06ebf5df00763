// PCI configuration mechanism #1 (0xcf8 address, 0xcfc-0xcff data) for bus 0, with the
// PIIX-style reset control register at 0xcf9 and a host bridge at 00:00.0. Absent
// functions read all-ones.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/event.hpp"

namespace hv::dev {

enum class pci_cfg : std::uint8_t {
    vendor_id = 0x00, device_id = 0x02, command = 0x04, status = 0x06, revision = 0x08,
    prog_if = 0x09, subclass = 0x0a, class_code = 0x0b, cache_line = 0x0c, latency = 0x0d,
    header_type = 0x0e, bar0 = 0x10, subsystem_vendor = 0x2c, subsystem_id = 0x2e,
    capabilities = 0x34, interrupt_line = 0x3c, interrupt_pin = 0x3d,
};

// A function's 256-byte configuration space.
class pci_function {
public:
    virtual std::uint32_t config_read(std::uint8_t offset, unsigned size) = 0;
    virtual void config_write(std::uint8_t offset, unsigned size, std::uint32_t value) = 0;

protected:
    ~pci_function() = default;
};

// Configuration space backed by bytes and a per-byte writable mask.
class pci_config_space : public pci_function {
public:
    std::uint32_t config_read(std::uint8_t offset, unsigned size) override;
    void config_write(std::uint8_t offset, unsigned size, std::uint32_t value) override;

    void set8(pci_cfg r, std::uint8_t v) { bytes_[static_cast<unsigned>(r)] = v; }
    void set16(pci_cfg r, std::uint16_t v);
    void set_writable(std::uint8_t offset, std::uint8_t mask) { wmask_[offset] = mask; }

protected:
    ~pci_config_space() = default;

private:
    std::array<std::uint8_t, 256> bytes_{};
    std::array<std::uint8_t, 256> wmask_{};
};

class pci_host_bridge final : public pci_config_space {
public:
    // Intel 440FX PMC identity (8086:1237), which guests know as a plain host bridge.
    pci_host_bridge(std::uint16_t vendor = 0x8086, std::uint16_t device = 0x1237, std::uint8_t revision = 0x02);
};

class pci_bus final : public io_device {
public:
    static constexpr unsigned devices = 32, functions = 8;

    explicit pci_bus(event_sink* events = nullptr) : events_{events} {}
    void set_events(event_sink* e) { events_ = e; }

    // Map at 0xcf8, 8 ports.
    status attach(unsigned device, unsigned function, pci_function& f);
    void detach(unsigned device, unsigned function);

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    // Configuration access by bus/device/function, as the data port does it.
    std::uint32_t config_read(unsigned bus, unsigned dev, unsigned fn, std::uint8_t offset, unsigned size);
    void config_write(unsigned bus, unsigned dev, unsigned fn, std::uint8_t offset, unsigned size, std::uint32_t v);

    [[nodiscard]] std::uint32_t address() const { return address_; }

private:
    event_sink* events_;
    std::array<pci_function*, devices * functions> fn_{};
    std::uint32_t address_ = 0;
    std::uint8_t reset_control_ = 0;
};

} // namespace hv::dev
