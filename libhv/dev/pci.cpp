#include "libhv/dev/pci.hpp"

namespace hv::dev {

std::uint32_t pci_config_space::config_read(std::uint8_t offset, unsigned size) {
    std::uint32_t v = 0;
    for (unsigned i = 0; i < size && offset + i < 256; ++i) v |= std::uint32_t{bytes_[offset + i]} << (8 * i);
    return v;
}

void pci_config_space::config_write(std::uint8_t offset, unsigned size, std::uint32_t value) {
    for (unsigned i = 0; i < size && offset + i < 256; ++i) {
        std::uint8_t m = wmask_[offset + i];
        auto b = static_cast<std::uint8_t>(value >> (8 * i));
        bytes_[offset + i] = static_cast<std::uint8_t>((bytes_[offset + i] & ~m) | (b & m));
    }
}

void pci_config_space::set16(pci_cfg r, std::uint16_t v) {
    bytes_[static_cast<unsigned>(r)] = static_cast<std::uint8_t>(v);
    bytes_[static_cast<unsigned>(r) + 1] = static_cast<std::uint8_t>(v >> 8);
}

pci_host_bridge::pci_host_bridge(std::uint16_t vendor, std::uint16_t device, std::uint8_t revision) {
    set16(pci_cfg::vendor_id, vendor);
    set16(pci_cfg::device_id, device);
    set8(pci_cfg::revision, revision);
    set8(pci_cfg::class_code, 0x06);    // bridge
    set8(pci_cfg::subclass, 0x00);      // host bridge
    set16(pci_cfg::command, 0x0006);    // memory space, bus master
    set16(pci_cfg::status, 0x0280);     // fast back-to-back, medium DEVSEL
    set_writable(static_cast<std::uint8_t>(pci_cfg::command), 0x46);
    set_writable(static_cast<std::uint8_t>(pci_cfg::latency), 0xff);
}

status pci_bus::attach(unsigned device, unsigned function, pci_function& f) {
    if (device >= devices || function >= functions) return fail(errc::out_of_range, "pci: no such slot");
    if (fn_[device * functions + function]) return fail(errc::exists, "pci: slot taken");
    fn_[device * functions + function] = &f;
    return {};
}

void pci_bus::detach(unsigned device, unsigned function) {
    if (device < devices && function < functions) fn_[device * functions + function] = nullptr;
}

std::uint32_t pci_bus::config_read(unsigned bus, unsigned dev, unsigned fn, std::uint8_t offset, unsigned size) {
    std::uint32_t ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    if (bus != 0 || dev >= devices || fn >= functions) return ones;
    pci_function* f = fn_[dev * functions + fn];
    return f ? f->config_read(offset, size) & ones : ones;
}

void pci_bus::config_write(unsigned bus, unsigned dev, unsigned fn, std::uint8_t offset, unsigned size,
                           std::uint32_t v) {
    if (bus != 0 || dev >= devices || fn >= functions) return;
    if (pci_function* f = fn_[dev * functions + fn]) f->config_write(offset, size, v);
}

std::uint64_t pci_bus::read(std::uint64_t offset, unsigned size) {
    if (offset == 0 && size == 4) return address_;
    if (offset == 1 && size == 1) return reset_control_;
    if (offset >= 4 && offset < 8) {
        if (!(address_ & 0x80000000u)) return all_ones(size);
        auto reg = static_cast<std::uint8_t>((address_ & 0xfc) + (offset - 4));
        return config_read((address_ >> 16) & 0xff, (address_ >> 11) & 0x1f, (address_ >> 8) & 7, reg, size);
    }
    return all_ones(size);
}

void pci_bus::write(std::uint64_t offset, unsigned size, std::uint64_t value) {
    if (offset == 0 && size == 4) {
        address_ = static_cast<std::uint32_t>(value) & 0x80fffffcu;
        return;
    }
    if (offset == 1 && size == 1) {
        // Reset control: a 0→1 transition of RST_CPU (bit 2) resets the machine.
        auto v = static_cast<std::uint8_t>(value);
        bool fire = (v & 0x04) && !(reset_control_ & 0x04);
        reset_control_ = v & 0x0a;
        if (fire && events_) events_->raise(event{event_kind::reset, v});
        return;
    }
    if (offset >= 4 && offset < 8 && (address_ & 0x80000000u)) {
        auto reg = static_cast<std::uint8_t>((address_ & 0xfc) + (offset - 4));
        config_write((address_ >> 16) & 0xff, (address_ >> 11) & 0x1f, (address_ >> 8) & 7, reg, size,
                     static_cast<std::uint32_t>(value));
    }
}

} // namespace hv::dev
