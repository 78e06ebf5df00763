#include "libhv/mmu/guest_memory.hpp"

namespace hv::mmu {

status region_map::check_new(const guest_region& r, std::uint64_t gpa_limit) const {
    if (r.size == 0 || !page_aligned(r.base) || !page_aligned(r.size))
        return fail(errc::invalid_argument, "guest regions are whole 4 KiB pages");
    if (r.last() < r.base || r.last() >= gpa_limit)
        return fail(errc::out_of_range, "guest region beyond the guest-physical address width");
    if (count_ == capacity) return fail(errc::overflow, "too many guest regions");
    for (const guest_region& other : all())
        if (r.base <= other.last() && other.base <= r.last())
            return fail(errc::exists, "guest region overlaps another");
    return {};
}

void region_map::insert(const guest_region& r) {
    std::size_t at = count_;
    while (at > 0 && regions_[at - 1].base > r.base) {
        regions_[at] = regions_[at - 1];
        --at;
    }
    regions_[at] = r;
    ++count_;
}

const guest_region* region_map::find(std::uint64_t gpa) const {
    for (const guest_region& r : all()) {
        if (gpa < r.base) return nullptr;
        if (gpa <= r.last()) return &r;
    }
    return nullptr;
}

} // namespace hv::mmu
