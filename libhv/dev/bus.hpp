// Port-I/O and MMIO buses: devices claim address ranges; the cpu layer dispatches its
// I/O and MMIO exits here. An access nobody claims behaves like an empty PC bus:
// reads return all-ones, writes are dropped, and both are counted.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include "libhv/core/result.hpp"

namespace hv::dev {

// A device register window. `offset` is relative to the start of the claimed range;
// `size` is one of the sizes the device declared when it was mapped.
class io_device {
public:
    virtual std::uint64_t read(std::uint64_t offset, unsigned size) = 0;
    virtual void write(std::uint64_t offset, unsigned size, std::uint64_t value) = 0;
    // Optional bursts (REP INS/OUTS): `count` accesses of `size` bytes at `offset`, the
    // values packed little-endian in `buf`, exactly as that many read()/write() calls.
    // They return how many they took (0..count), e.g. up to the end of a device buffer;
    // the caller does the rest with read()/write() or another burst. Default: none.
    virtual std::size_t read_block(std::uint64_t, unsigned, void*, std::size_t) { return 0; }
    virtual std::size_t write_block(std::uint64_t, unsigned, const void*, std::size_t) { return 0; }

protected:
    ~io_device() = default;
};

// Access sizes a mapping accepts, as a bit set of byte counts.
enum access_size : std::uint8_t {
    size1 = 1u << 0,
    size2 = 1u << 1,
    size4 = 1u << 2,
    size8 = 1u << 3,
    size_any = size1 | size2 | size4 | size8,
};

struct bus_stats {
    std::uint64_t unclaimed_reads = 0;
    std::uint64_t unclaimed_writes = 0;
    std::uint64_t bad_size = 0;     // size not 1/2/4(/8), or not splittable for its device
    std::uint64_t split = 0;        // accesses split into bytes (straddling or too wide)
};

constexpr std::uint64_t all_ones(unsigned size) {
    return size >= 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * size)) - 1;
}

// An access that fits in one mapping and whose size the mapping accepts goes to the
// device as is. Otherwise it is split into byte accesses, each dispatched on its own
// (as an ISA bus does for an 8-bit device); bytes nobody claims read 0xff.
class bus {
public:
    static constexpr std::size_t capacity = 64;

    // max_size: 4 for port I/O, 8 for MMIO; limit: one past the highest address.
    bus(unsigned max_size, std::uint64_t limit) : max_size_{max_size}, limit_{limit} {}
    bus(const bus&) = delete;
    bus& operator=(const bus&) = delete;

    status map(std::uint64_t base, std::uint64_t length, io_device& dev,
               std::uint8_t sizes = size_any);
    // Removes every mapping of `dev`; returns how many there were.
    std::size_t unmap(io_device& dev);
    [[nodiscard]] io_device* find(std::uint64_t addr) const;

    std::uint64_t read(std::uint64_t addr, unsigned size);
    void write(std::uint64_t addr, unsigned size, std::uint64_t value);
    // Bursts of `count` accesses to one address (io_device::read_block): to the device
    // when one access would go to it as is; 0 (none taken) otherwise.
    std::size_t read_block(std::uint64_t addr, unsigned size, void* dst, std::size_t count);
    std::size_t write_block(std::uint64_t addr, unsigned size, const void* src, std::size_t count);

    [[nodiscard]] const bus_stats& stats() const { return stats_; }
    [[nodiscard]] std::size_t mappings() const { return count_; }

private:
    struct mapping {
        std::uint64_t base;
        std::uint64_t last;     // inclusive
        io_device* dev;
        std::uint8_t sizes;
    };
    const mapping* lookup(std::uint64_t addr) const;
    const mapping* whole(std::uint64_t addr, unsigned size) const;  // takes the access as is
    bool valid_size(unsigned size) const;
    std::uint64_t read_bytes(std::uint64_t addr, unsigned size);
    void write_bytes(std::uint64_t addr, unsigned size, std::uint64_t value);

    unsigned max_size_;
    std::uint64_t limit_;
    std::array<mapping, capacity> map_{};   // sorted by base, non-overlapping
    std::size_t count_ = 0;
    mutable const mapping* last_hit_ = nullptr;  // lookup()'s last answer
    bus_stats stats_{};
};

class port_bus : public bus {
public:
    port_bus() : bus(4, 0x10000) {}
};

class mmio_bus : public bus {
public:
    mmio_bus() : bus(8, 0) {}   // 0: the whole 64-bit space
};

} // namespace hv::dev
