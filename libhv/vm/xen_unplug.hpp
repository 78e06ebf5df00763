// Xen's HVM platform I/O ports, the convention PV-on-HVM drivers use to take over from
// the emulated devices: a 16-bit read of 0x10 gives the magic 0x49d2, an 8-bit read of
// 0x12 the protocol version; a 16-bit write to 0x10 unplugs the emulated devices its mask
// names (1 all IDE disks, 2 all NICs, 4 auxiliary IDE disks, 8 NVMe disks). Every other
// port goes to `next` (the device model); the owner of the devices hears each mask
// through on_unplug and removes them. Portable; vm::run_guest puts it in front of the
// emulated PC for pvhvm.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/cpu/io_emul.hpp"

namespace hv::vm {

class xen_unplug_ports {
public:
    static constexpr std::uint16_t base = 0x10, magic = 0x49d2;
    static constexpr std::uint8_t version = 1;
    enum : std::uint16_t { ide_disks = 1, nics = 2, aux_ide_disks = 4, nvme_disks = 8 };

    using unplug_fn = void (*)(void* ctx, std::uint16_t mask);

    explicit xen_unplug_ports(const cpu::io_ports& next = {}) : next_{next} {}
    void on_unplug(unplug_fn fn, void* ctx) {
        unplug_ = fn;
        unplug_ctx_ = ctx;
    }
    [[nodiscard]] cpu::io_ports ports() { return {this, &in, &out, &in_block, &out_block}; }
    // The devices unplugged so far (OR of every mask written) and how many writes asked.
    [[nodiscard]] std::uint16_t unplugged() const { return unplugged_; }
    [[nodiscard]] unsigned requests() const { return requests_; }

private:
    static bool ours(std::uint16_t port) { return port >= base && port < base + 4; }
    static std::uint32_t in(void* ctx, std::uint16_t port, std::uint8_t size) {
        auto& self = *static_cast<xen_unplug_ports*>(ctx);
        if (!ours(port)) return self.next_.in ? self.next_.in(self.next_.ctx, port, size) : all_ones(size);
        if (port == base && size == 2) return magic;
        if (port == base + 2 && size == 1) return version;
        return all_ones(size);
    }
    static void out(void* ctx, std::uint16_t port, std::uint8_t size, std::uint32_t value) {
        auto& self = *static_cast<xen_unplug_ports*>(ctx);
        if (!ours(port)) {
            if (self.next_.out) self.next_.out(self.next_.ctx, port, size, value);
            return;
        }
        if (port == base && size == 2) {
            self.unplugged_ = static_cast<std::uint16_t>(self.unplugged_ | value);
            ++self.requests_;
            if (self.unplug_) self.unplug_(self.unplug_ctx_, static_cast<std::uint16_t>(value));
        }
    }
    // Bursts go on to `next`; its own ports take none.
    static std::size_t in_block(void* ctx, std::uint16_t port, std::uint8_t size, void* dst, std::size_t count) {
        auto& self = *static_cast<xen_unplug_ports*>(ctx);
        return !ours(port) && self.next_.in_block ? self.next_.in_block(self.next_.ctx, port, size, dst, count) : 0;
    }
    static std::size_t out_block(void* ctx, std::uint16_t port, std::uint8_t size, const void* src,
                                 std::size_t count) {
        auto& self = *static_cast<xen_unplug_ports*>(ctx);
        return !ours(port) && self.next_.out_block ? self.next_.out_block(self.next_.ctx, port, size, src, count) : 0;
    }
    static std::uint32_t all_ones(std::uint8_t size) { return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1; }

    cpu::io_ports next_;
    unplug_fn unplug_ = nullptr;
    void* unplug_ctx_ = nullptr;
    std::uint16_t unplugged_ = 0;
    unsigned requests_ = 0;
};

} // namespace hv::vm
