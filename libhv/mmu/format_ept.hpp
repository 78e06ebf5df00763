// Intel EPT entries (4-level). An entry is present when any of R/W/X is set.
//
//   63   52 51        12 11 10  9 8 7 6 5  3 2 1 0
//  [ignored][  address  ][ .  . D A S I  MT  X W R]     S: large page (PDE/PDPTE)
//                                                      I: ignore PAT, MT: memory type
#pragma once
#include <cstdint>
#include "libhv/mmu/format.hpp"
#include "libhv/mmu/memory.hpp"

namespace hv::mmu {

namespace ept_pte {
inline constexpr std::uint64_t read = bit(0);
inline constexpr std::uint64_t write = bit(1);
inline constexpr std::uint64_t execute = bit(2);
inline constexpr std::uint64_t access_bits = read | write | execute;
inline constexpr unsigned memory_type_shift = 3;
inline constexpr std::uint64_t memory_type_bits = bits(5, 3);
inline constexpr std::uint64_t ignore_pat = bit(6);
inline constexpr std::uint64_t large = bit(7);
inline constexpr std::uint64_t accessed = bit(8);  // with EPTP A/D enabled
inline constexpr std::uint64_t dirty = bit(9);     // leaves only
} // namespace ept_pte

struct ept_format {
    using entry_type = std::uint64_t;
    static constexpr unsigned levels = 4;
    static constexpr unsigned shift(unsigned level) { return page_shift + 9 * (level - 1); }
    static constexpr unsigned entries(unsigned) { return 512; }
    static constexpr entry_type status_bits = ept_pte::accessed | ept_pte::dirty;
    static constexpr std::uint64_t address_bits = bits(51, 12);

    unsigned maxphyaddr = 52;
    bool gbpages = true;       // IA32_VMX_EPT_VPID_CAP bit 17
    bool execute_only = true;  // IA32_VMX_EPT_VPID_CAP bit 0

    bool present(entry_type e) const { return e & ept_pte::access_bits; }
    bool is_leaf(entry_type e, unsigned level) const {
        return level == 1 || (level <= 3 && (e & ept_pte::large));
    }
    std::uint64_t table_address(entry_type e) const { return e & address_bits; }
    std::uint64_t leaf_address(entry_type e, unsigned level) const {
        return e & address_bits & ~(level_size<ept_format>(level) - 1);
    }
    page_attrs leaf_attrs(entry_type e, unsigned) const {
        page_attrs a;
        a.read = e & ept_pte::read;
        a.write = e & ept_pte::write;
        a.execute = e & ept_pte::execute;
        a.type = static_cast<memory_type>((e & ept_pte::memory_type_bits) >> ept_pte::memory_type_shift);
        a.ignore_pat = e & ept_pte::ignore_pat;
        a.accessed = e & ept_pte::accessed;
        a.dirty = e & ept_pte::dirty;
        return a;
    }
    entry_type make_table(std::uint64_t pa, unsigned) const { return pa | ept_pte::access_bits; }
    // `user` and `global` have no EPT meaning and are dropped.
    entry_type make_leaf(std::uint64_t pa, unsigned level, const page_attrs& a) const {
        using namespace ept_pte;
        return pa | (a.read ? read : 0) | (a.write ? write : 0) | (a.execute ? execute : 0) |
               (std::uint64_t(a.type) << memory_type_shift) | (a.ignore_pat ? ignore_pat : 0) |
               (level > 1 ? large : 0) | (a.accessed ? accessed : 0) | (a.dirty ? dirty : 0);
    }
    bool leaf_allowed(unsigned level) const { return level <= 2 || (level == 3 && gbpages); }
    status check(const page_attrs& a) const {
        if (!a.read && !a.write && !a.execute) return fail(errc::invalid_argument, "EPT leaf without access");
        if (a.write && !a.read) return fail(errc::invalid_argument, "EPT write without read is a misconfiguration");
        if (!a.read && !execute_only) return fail(errc::not_supported, "EPT execute-only not supported");
        if (a.type == memory_type::uc_minus) return fail(errc::invalid_argument, "UC- is not an EPT memory type");
        return {};
    }
    bool table_page_ok(std::uint64_t pa, bool) const { return pa < output_limit(); }
    std::uint64_t output_limit() const { return bit(maxphyaddr); }
    bool input_ok(std::uint64_t first, std::uint64_t last) const { return first <= last && last < bit(48); }
    std::uint64_t input_address(std::uint64_t gpa) const { return gpa; }
};

static_assert(page_format<ept_format>);

// EPTP: write-back paging-structure accesses, 4-level walk, optional A/D flags.
constexpr std::uint64_t make_eptp(std::uint64_t root, bool accessed_dirty) {
    return root | std::uint64_t(memory_type::wb) | (std::uint64_t{4 - 1} << 3) | (accessed_dirty ? bit(6) : 0);
}
static_assert(make_eptp(0x1000, true) == 0x105e);

} // namespace hv::mmu
