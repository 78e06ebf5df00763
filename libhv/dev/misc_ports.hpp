// Small write-mostly ports: QEMU-compatible isa-debug-exit and the POST code port.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/event.hpp"

namespace hv::dev {

// Like QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4`: a write of any size ends
// the run with result (value << 1) | 1. Reads return all-ones.
class debug_exit final : public io_device {
public:
    explicit debug_exit(event_sink* events = nullptr) : events_{events} {}
    void set_events(event_sink* e) { events_ = e; }

    std::uint64_t read(std::uint64_t, unsigned size) override { return all_ones(size); }
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] bool exited() const { return exited_; }
    [[nodiscard]] std::uint32_t value() const { return value_; }
    [[nodiscard]] std::uint32_t result() const { return result_of(value_); }
    static constexpr std::uint32_t result_of(std::uint32_t v) { return (v << 1) | 1; }

private:
    event_sink* events_;
    bool exited_ = false;
    std::uint32_t value_ = 0;
};

// Port 0x80: firmware and kernels write progress codes here. Keeps the last few.
class post_code final : public io_device {
public:
    static constexpr std::size_t history = 16;
    std::uint64_t read(std::uint64_t, unsigned) override { return last_; }
    void write(std::uint64_t, unsigned, std::uint64_t value) override {
        last_ = static_cast<std::uint8_t>(value);
        codes_[count_ % history] = last_;
        ++count_;
    }
    [[nodiscard]] std::uint8_t last() const { return last_; }
    [[nodiscard]] std::uint64_t count() const { return count_; }
    // i-th most recent code (0 = last); only the last `history` are kept.
    [[nodiscard]] std::uint8_t recent(std::size_t i) const { return codes_[(count_ - 1 - i) % history]; }

private:
    std::array<std::uint8_t, history> codes_{};
    std::uint64_t count_ = 0;
    std::uint8_t last_ = 0;
};

} // namespace hv::dev
