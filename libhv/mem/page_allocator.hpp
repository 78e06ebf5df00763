// Physical page allocator: one bit per 4 KiB frame (1 = free), fed by the boot memory map.
// Storage for the bitmap comes from the caller, so the allocator itself never allocates.
// A spinlock makes it safe to use from several physical CPUs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/core/result.hpp"
#include "libhv/core/spinlock.hpp"

namespace hv::mem {

constexpr std::uint64_t page_size = 4096;

class page_allocator {
public:
    // Covers frames [0, bitmap.size() * 64); every frame starts out used.
    void init(std::span<std::uint64_t> bitmap);

    // Marks whole frames inside [base, base+length) free. Frames beyond the bitmap are ignored.
    void add_free(std::uint64_t base, std::uint64_t length);
    // Marks every frame touching [base, base+length) used.
    void reserve(std::uint64_t base, std::uint64_t length);

    // `count` contiguous frames, the first aligned to `align` frames (a power of two).
    [[nodiscard]] hv::result<std::uint64_t> alloc(std::size_t count = 1, std::size_t align = 1);
    // Fails on a misaligned address, a frame outside the bitmap, or a frame that is already free.
    [[nodiscard]] hv::status free(std::uint64_t paddr, std::size_t count = 1);

    [[nodiscard]] std::size_t free_frames() const { return free_; }
    [[nodiscard]] std::size_t frame_count() const { return frames_; }
    [[nodiscard]] bool is_free(std::uint64_t frame) const {
        return frame < frames_ && (bits_[frame / 64] >> (frame % 64)) & 1;
    }

private:
    void set_range(std::uint64_t first, std::uint64_t end, bool free);

    std::uint64_t* bits_ = nullptr;
    std::size_t frames_ = 0;
    std::size_t free_ = 0;
    std::size_t hint_ = 0;
    hv::spinlock lock_;  // word index where the last single-frame search succeeded
};

} // namespace hv::mem
