// Random page-table graphs for walker tests: a pool of frames filled with random
// entries whose address fields mostly point back into the pool, so walks go deep,
// share tables and sometimes leave the pool (no memory there).
#pragma once
#include <cstdint>
#include <random>
#include <vector>
#include "tests/unit/mmu/fake_memory.hpp"

namespace hv::mmu::test {

struct random_tables {
    fake_memory memory{fake_memory::placement::scattered, std::uint64_t{1} << 32};
    std::vector<std::uint64_t> frames;
    std::mt19937_64 rng;

    random_tables(std::uint64_t seed, std::size_t count) : rng{seed} {
        for (std::size_t i = 0; i < count; ++i) frames.push_back(*memory.alloc_page());
    }

    std::uint64_t pick_frame() { return frames[rng() % frames.size()]; }

    bool chance(unsigned percent) { return rng() % 100 < percent; }

    // Fills every frame. `entry(address)` turns a target address into a random entry.
    template <class Entry, class MakeEntry>
    void fill(MakeEntry&& entry) {
        for (std::uint64_t frame : frames)
            for (std::uint64_t off = 0; off < page_size; off += sizeof(Entry)) {
                const std::uint64_t target = chance(5) ? (rng() & 0xffff'f000) : pick_frame();
                memory.write<Entry>(frame + off, static_cast<Entry>(entry(target)));
            }
    }

    // Random bits in [lo, hi] (each set with probability 1/2), but only `percent` of the time.
    std::uint64_t sometimes_bits(unsigned percent, unsigned hi, unsigned lo) {
        if (!chance(percent)) return 0;
        const std::uint64_t mask = (hi >= 63 ? ~std::uint64_t{0} : (std::uint64_t{1} << (hi + 1)) - 1) &
                                   ~((std::uint64_t{1} << lo) - 1);
        return rng() & mask;
    }

    std::vector<std::uint8_t> snapshot() {
        std::vector<std::uint8_t> bytes(frames.size() * page_size);
        for (std::size_t i = 0; i < frames.size(); ++i)
            std::memcpy(bytes.data() + i * page_size, memory.host_pointer(frames[i], false), page_size);
        return bytes;
    }
    std::size_t frame_slot(std::uint64_t pa) const {
        for (std::size_t i = 0; i < frames.size(); ++i)
            if (frames[i] == (pa & ~page_offset_mask)) return i;
        return frames.size();
    }
};

} // namespace hv::mmu::test
