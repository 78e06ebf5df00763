// Zeroed 4 KiB pages from one host allocation, at "physical" addresses from 16 MiB:
// below 4 GiB (32-bit and PAE tables need that) and never equal to the host pointers.
// Page tables built over it are reached through mmu::direct_map_memory, as on metal.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "libhv/core/result.hpp"

namespace hv::bench {

class arena_allocator {
public:
    static constexpr std::uint64_t page = 0x1000;
    static constexpr std::uint64_t physical_base = 0x100'0000;

    explicit arena_allocator(std::size_t bytes)
        : base_{static_cast<std::uint8_t*>(std::aligned_alloc(page, bytes))}, pages_{bytes / page} {}
    ~arena_allocator() { std::free(base_); }
    arena_allocator(const arena_allocator&) = delete;

    hv::result<std::uint64_t> alloc_page() {
        std::uint64_t index;
        if (!free_.empty()) {
            index = free_.back();
            free_.pop_back();
        } else if (next_ < pages_) {
            index = next_++;
        } else {
            return hv::fail(hv::errc::no_memory, "arena exhausted");
        }
        std::memset(base_ + index * page, 0, page);
        return physical_base + index * page;
    }
    void free_page(std::uint64_t pa) { free_.push_back((pa - physical_base) / page); }
    std::uintptr_t host_minus_physical() const { return reinterpret_cast<std::uintptr_t>(base_) - physical_base; }

private:
    std::uint8_t* base_;
    std::size_t pages_;
    std::size_t next_ = 0;
    std::vector<std::uint64_t> free_;
};

} // namespace hv::bench
