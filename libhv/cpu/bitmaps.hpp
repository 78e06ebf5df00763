// Intercept bitmaps for MSRs and I/O ports, over memory the caller owns (pages from the
// page allocator on metal, arrays in tests).
//
//   VMX MSR bitmap (SDM 24.6.9), 4 KiB:   read 0..1FFF | read C0000000.. | write 0..1FFF | write C0000000..
//   SVM MSRPM (APM 15.11), 8 KiB:         two bits per MSR (read, write) for 0..1FFF,
//                                         C0000000..C0001FFF, C0010000..C0011FFF
//   I/O: one bit per port for both; VMX's bitmaps A and B are two pages, SVM's IOPM is 12 KiB
//   (the third page covers accesses running past port FFFF).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace hv::cpu {

struct bit_position {
    std::size_t byte;
    std::uint8_t bit;
};

namespace detail {
inline void set_bit(std::span<std::uint8_t> m, bit_position p, bool on) {
    if (on) m[p.byte] = static_cast<std::uint8_t>(m[p.byte] | (1u << p.bit));
    else m[p.byte] = static_cast<std::uint8_t>(m[p.byte] & ~(1u << p.bit));
}
inline bool get_bit(std::span<const std::uint8_t> m, bit_position p) { return m[p.byte] >> p.bit & 1; }
} // namespace detail

enum class msr_access : std::uint8_t { read, write };

struct vmx_msr_bitmap {
    static constexpr std::size_t size = 4096;
    // MSRs outside both ranges always exit; they have no bit.
    static constexpr std::optional<bit_position> locate(std::uint32_t msr, msr_access a) {
        std::size_t base;
        if (msr <= 0x1fff) base = 0;
        else if (msr >= 0xc0000000 && msr <= 0xc0001fff) base = 1024, msr -= 0xc0000000;
        else return std::nullopt;
        if (a == msr_access::write) base += 2048;
        return bit_position{base + msr / 8, static_cast<std::uint8_t>(msr % 8)};
    }
};

struct svm_msrpm {
    static constexpr std::size_t size = 8192;
    static constexpr std::optional<bit_position> locate(std::uint32_t msr, msr_access a) {
        std::size_t base;
        if (msr <= 0x1fff) base = 0;
        else if (msr >= 0xc0000000 && msr <= 0xc0001fff) base = 0x800, msr -= 0xc0000000;
        else if (msr >= 0xc0010000 && msr <= 0xc0011fff) base = 0x1000, msr -= 0xc0010000;
        else return std::nullopt;
        std::size_t bit = std::size_t{msr} * 2 + (a == msr_access::write ? 1 : 0);
        return bit_position{base + bit / 8, static_cast<std::uint8_t>(bit % 8)};
    }
};

// Intercept (true) or pass through (false) one kind of access to one MSR.
// Returns false for an MSR the format has no bit for (it is always intercepted).
template <class Format>
bool set_msr_intercept(std::span<std::uint8_t> map, std::uint32_t msr, msr_access a, bool intercept) {
    auto p = Format::locate(msr, a);
    if (!p || map.size() < Format::size) return false;
    detail::set_bit(map, *p, intercept);
    return true;
}
template <class Format>
bool msr_intercepted(std::span<const std::uint8_t> map, std::uint32_t msr, msr_access a) {
    auto p = Format::locate(msr, a);
    return !p || map.size() < Format::size || detail::get_bit(map, *p);
}

struct io_bitmap {
    static constexpr std::size_t vmx_size = 8192;    // bitmap A then bitmap B, contiguous
    static constexpr std::size_t svm_size = 12288;
    static constexpr bit_position locate(std::uint32_t port) {
        return {port / 8, static_cast<std::uint8_t>(port % 8)};
    }
};

// Every port an access of `size` bytes at `port` touches gets the setting; ports past
// FFFF land in SVM's third page and are dropped for the VMX size.
inline void set_io_intercept(std::span<std::uint8_t> map, std::uint16_t port, std::uint8_t size, bool intercept) {
    for (std::uint32_t p = port; p < std::uint32_t{port} + size; ++p) {
        auto pos = io_bitmap::locate(p);
        if (pos.byte < map.size()) detail::set_bit(map, pos, intercept);
    }
}
inline bool io_intercepted(std::span<const std::uint8_t> map, std::uint16_t port, std::uint8_t size) {
    for (std::uint32_t p = port; p < std::uint32_t{port} + size; ++p) {
        auto pos = io_bitmap::locate(p);
        if (pos.byte >= map.size() || detail::get_bit(map, pos)) return true;
    }
    return false;
}

} // namespace hv::cpu
