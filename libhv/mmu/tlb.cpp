#include "libhv/mmu/tlb.hpp"

namespace hv::mmu {

namespace {
constexpr std::uint64_t address_max = ~std::uint64_t{0};

bool overlap_or_touch(const address_range& a, const address_range& b) {
    const bool a_before_b = a.last != address_max && a.last + 1 < b.first;
    const bool b_before_a = b.last != address_max && b.last + 1 < a.first;
    return !a_before_b && !b_before_a;
}
} // namespace

void tlb_flush::add(std::uint64_t first, std::uint64_t last) {
    if (scope_ == flush_scope::all) return;
    address_range r{first, last};
    for (std::size_t i = 0; i < count_;) {
        if (!overlap_or_touch(ranges_[i], r)) { ++i; continue; }
        r.first = ranges_[i].first < r.first ? ranges_[i].first : r.first;
        r.last = ranges_[i].last > r.last ? ranges_[i].last : r.last;
        ranges_[i] = ranges_[--count_];
        i = 0;  // the grown range may now touch one already passed
    }
    if (count_ == max_ranges) { add_all(); return; }
    ranges_[count_++] = r;
    scope_ = flush_scope::ranges;
}

bool tlb_flush::covers(std::uint64_t address) const {
    if (scope_ == flush_scope::all) return true;
    for (const address_range& r : ranges())
        if (r.first <= address && address <= r.last) return true;
    return false;
}

} // namespace hv::mmu
