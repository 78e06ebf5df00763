// Fake physical memory for the mmu tests and benchmarks: 4 KiB frames in a map at
// physical addresses that are never the frames' host addresses, either scattered
// (seeded) or handed out in ascending order, with allocation-failure injection.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <unordered_map>
#include <vector>
#include "libhv/core/result.hpp"
#include "libhv/mmu/memory.hpp"

namespace hv::mmu::test {

class fake_memory {
public:
    enum class placement { scattered, ascending };

    explicit fake_memory(placement p = placement::scattered, std::uint64_t limit = std::uint64_t{1} << 32,
                         std::uint64_t seed = 1)
        : placement_{p}, limit_frames_{limit >> page_shift}, rng_{seed} {}

    void* host_pointer(std::uint64_t pa, bool) {
        auto it = frames_.find(pa >> page_shift);
        return it == frames_.end() ? nullptr : it->second.get() + (pa & page_offset_mask);
    }

    result<std::uint64_t> alloc_page() {
        if (fail_after_ == 0) return fail(errc::no_memory, "fake memory: injected failure");
        if (fail_after_ > 0) --fail_after_;
        std::uint64_t frame;
        do {
            frame = placement_ == placement::ascending ? next_frame_++ : 1 + rng_() % (limit_frames_ - 1);
        } while (frames_.count(frame));
        create(frame);
        ++allocations_;
        return frame << page_shift;
    }

    void free_page(std::uint64_t pa) {
        if (!page_aligned(pa) || !frames_.erase(pa >> page_shift)) ++bad_frees_;
    }

    // A zeroed frame at a chosen address (for hand-built tables).
    std::uint64_t frame_at(std::uint64_t pa) {
        create(pa >> page_shift);
        return pa & ~page_offset_mask;
    }

    template <class T>
    T read(std::uint64_t pa) {
        T v;
        std::memcpy(&v, host_pointer(pa, false), sizeof v);
        return v;
    }
    template <class T>
    void write(std::uint64_t pa, T v) {
        std::memcpy(host_pointer(pa, true), &v, sizeof v);
    }

    void fail_after(long n) { fail_after_ = n; }  // -1: never
    [[nodiscard]] std::size_t live_pages() const { return frames_.size(); }
    [[nodiscard]] std::size_t allocations() const { return allocations_; }
    [[nodiscard]] std::size_t bad_frees() const { return bad_frees_; }
    [[nodiscard]] bool contains(std::uint64_t pa) const { return frames_.count(pa >> page_shift) != 0; }

private:
    void create(std::uint64_t frame) {
        auto p = std::make_unique<std::uint8_t[]>(page_size);
        std::memset(p.get(), 0, page_size);
        frames_[frame] = std::move(p);
    }

    placement placement_;
    std::uint64_t limit_frames_;
    std::uint64_t next_frame_ = 0x100;  // ascending: from 1 MiB
    std::mt19937_64 rng_;
    std::unordered_map<std::uint64_t, std::unique_ptr<std::uint8_t[]>> frames_;
    long fail_after_ = -1;
    std::size_t allocations_ = 0;
    std::size_t bad_frees_ = 0;
};

static_assert(table_memory<fake_memory>);

} // namespace hv::mmu::test
