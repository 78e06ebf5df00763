#include "libhv/mem/page_allocator.hpp"
#include "libhv/core/spinlock.hpp"
#include <bit>

namespace hv::mem {

void page_allocator::init(std::span<std::uint64_t> bitmap) {
    bits_ = bitmap.data();
    frames_ = bitmap.size() * 64;
    free_ = 0;
    hint_ = 0;
    for (auto& w : bitmap) w = 0;
}

namespace {
// SWAR bit count: freestanding images have no libgcc for __builtin_popcountll.
constexpr unsigned bit_count(std::uint64_t v) {
    v = v - ((v >> 1) & 0x5555555555555555ull);
    v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return static_cast<unsigned>((v * 0x0101010101010101ull) >> 56);
}
static_assert(bit_count(0) == 0 && bit_count(~0ull) == 64 && bit_count(0x8000000000000101ull) == 3);
} // namespace

// A word at a time: the boot memory map frees hundreds of MiB, which frame by frame
// cost the image's start-up about a million instructions.
void page_allocator::set_range(std::uint64_t first, std::uint64_t end, bool make_free) {
    if (end > frames_) end = frames_;
    while (first < end) {
        const std::uint64_t word = first / 64, lo = first % 64;
        const std::uint64_t n = end - first < 64 - lo ? end - first : 64 - lo;
        const std::uint64_t mask = (n == 64 ? ~0ull : ((std::uint64_t{1} << n) - 1)) << lo;
        std::uint64_t& w = bits_[word];
        if (make_free) {
            free_ += bit_count(mask & ~w);
            w |= mask;
        } else {
            free_ -= bit_count(mask & w);
            w &= ~mask;
        }
        first += n;
    }
}

void page_allocator::add_free(std::uint64_t base, std::uint64_t length) {
    hv::lock_guard guard{lock_};
    if (base + length < base) length = ~base;
    std::uint64_t first = (base + page_size - 1) / page_size;
    std::uint64_t end = (base + length) / page_size;
    if (first < end) set_range(first, end, true);
}

void page_allocator::reserve(std::uint64_t base, std::uint64_t length) {
    hv::lock_guard guard{lock_};
    if (length == 0) return;
    if (base + length < base) length = ~base;
    std::uint64_t first = base / page_size;
    std::uint64_t end = (base + length + page_size - 1) / page_size;
    set_range(first, end, false);
}

hv::result<std::uint64_t> page_allocator::alloc(std::size_t count, std::size_t align) {
    hv::lock_guard guard{lock_};
    if (count == 0 || align == 0 || (align & (align - 1)))
        return hv::fail(hv::errc::invalid_argument, "page allocation needs count > 0 and a power-of-two alignment");
    if (count > free_) return hv::fail(hv::errc::no_memory, "out of physical pages");

    std::size_t words = frames_ / 64;
    if (count == 1) {
        for (std::size_t n = 0; n < words; ++n) {
            std::size_t w = (hint_ + n) % words;
            if (bits_[w]) {
                std::uint64_t f = w * 64 + std::countr_zero(bits_[w]);
                set_range(f, f + 1, false);
                hint_ = w;
                return f * page_size;
            }
        }
        return hv::fail(hv::errc::no_memory, "out of physical pages");
    }

    // First fit over aligned candidates; skips whole used words quickly.
    for (std::uint64_t f = 0; f + count <= frames_;) {
        if (bits_[f / 64] == 0) { f = (f / 64 + 1) * 64; f = (f + align - 1) & ~std::uint64_t(align - 1); continue; }
        std::size_t run = 0;
        while (run < count && is_free(f + run)) ++run;
        if (run == count) {
            set_range(f, f + count, false);
            return f * page_size;
        }
        f = (f + run + 1 + align - 1) & ~std::uint64_t(align - 1);
    }
    return hv::fail(hv::errc::no_memory, "no contiguous run of free physical pages that large");
}

hv::status page_allocator::free(std::uint64_t paddr, std::size_t count) {
    hv::lock_guard guard{lock_};
    if (paddr % page_size) return hv::fail(hv::errc::invalid_argument, "freeing a page address that is not 4 KiB aligned");
    std::uint64_t first = paddr / page_size;
    if (first >= frames_ || count > frames_ - first) return hv::fail(hv::errc::out_of_range, "freeing a page the allocator does not cover");
    for (std::uint64_t f = first; f < first + count; ++f)
        if (is_free(f)) return hv::fail(hv::errc::invalid_argument, "double free of a physical page");
    set_range(first, first + count, true);
    return {};
}

} // namespace hv::mem
