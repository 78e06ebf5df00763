// A VMCS as plain memory: field -> value for the fields libhv sets. libhv fills an
// image, checks it (entry_check.hpp), then writes it to the real VMCS field by field
// (validate, then commit). Host tests build and check images without a CPU.
#pragma once
#include <cstdint>
#include "libhv/cpu/vmx/vmcs.hpp"

namespace hv::vmx {

class vmcs_image {
public:
    void set(field f, std::uint64_t v) {
        std::size_t s = slot_of(f);
        values_[s] = v & value_mask(f);
        present_[s / 64] |= 1ull << (s % 64);
    }
    void clear(field f) {
        std::size_t s = slot_of(f);
        values_[s] = 0;
        present_[s / 64] &= ~(1ull << (s % 64));
    }
    [[nodiscard]] bool has(field f) const {
        std::size_t s = slot_of(f);
        return present_[s / 64] >> (s % 64) & 1;
    }
    // Absent fields read as 0, as in a freshly cleared VMCS.
    [[nodiscard]] std::uint64_t get(field f) const { return values_[slot_of(f)]; }
    template <field F>
    [[nodiscard]] value_t<F> get() const { return static_cast<value_t<F>>(get(F)); }

    // Calls fn(field, value) for every set field in appendix B order.
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (std::size_t i = 0; i < field_count; ++i)
            if (present_[i / 64] >> (i % 64) & 1) fn(all_fields[i], values_[i]);
    }

private:
    std::uint64_t values_[field_count] = {};
    std::uint64_t present_[(field_count + 63) / 64] = {};
};

} // namespace hv::vmx
