// x86 paging entry formats: 4-level (host tables and, with `nested`, AMD NPT), PAE and
// 32-bit. Besides what the builder needs they give the guest-virtual walker its
// per-entry facts: reserved bits under the current knobs and the rights an entry grants.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/mmu/format.hpp"
#include "libhv/mmu/memory.hpp"

namespace hv::mmu {

namespace x86_pte {
inline constexpr std::uint64_t present = bit(0);
inline constexpr std::uint64_t writable = bit(1);
inline constexpr std::uint64_t user = bit(2);
inline constexpr std::uint64_t write_through = bit(3);   // PAT index bit 0
inline constexpr std::uint64_t cache_disable = bit(4);   // PAT index bit 1
inline constexpr std::uint64_t accessed = bit(5);
inline constexpr std::uint64_t dirty = bit(6);           // leaves only
inline constexpr std::uint64_t large = bit(7);           // PS in PDE/PDPTE
inline constexpr std::uint64_t pat_small = bit(7);       // PAT index bit 2, 4 KiB leaf
inline constexpr std::uint64_t global = bit(8);
inline constexpr std::uint64_t pat_large = bit(12);      // PAT index bit 2, large leaf
inline constexpr std::uint64_t no_execute = bit(63);
} // namespace x86_pte

// IA32_PAT as libhv programs it (the cpu layer writes hypervisor_pat_msr()). Indices 0-3
// keep their power-on types, so entries without PAT bits mean what firmware expects;
// 4 and 5 add WC and WP. NPT leaves select their type through the same host PAT.
inline constexpr std::array<memory_type, 8> hypervisor_pat = {
    memory_type::wb, memory_type::wt, memory_type::uc_minus, memory_type::uc,
    memory_type::wc, memory_type::wp, memory_type::uc_minus, memory_type::uc};

constexpr std::uint64_t hypervisor_pat_msr() {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < 8; ++i) v |= std::uint64_t(hypervisor_pat[i]) << (8 * i);
    return v;
}
static_assert(hypervisor_pat_msr() == 0x0007'0501'0007'0406);

constexpr unsigned pat_index_of(memory_type t) {
    for (unsigned i = 0; i < 8; ++i)
        if (hypervisor_pat[i] == t) return i;
    return 8;
}

constexpr std::uint64_t pat_bits(memory_type t, bool large) {
    const unsigned i = pat_index_of(t);
    return (i & 1 ? x86_pte::write_through : 0) | (i & 2 ? x86_pte::cache_disable : 0) |
           (i & 4 ? (large ? x86_pte::pat_large : x86_pte::pat_small) : 0);
}

constexpr memory_type pat_type(std::uint64_t e, bool large) {
    const unsigned i = (e & x86_pte::write_through ? 1 : 0) | (e & x86_pte::cache_disable ? 2 : 0) |
                       (e & (large ? x86_pte::pat_large : x86_pte::pat_small) ? 4 : 0);
    return hypervisor_pat[i];
}

// The leaf bits the three x86 formats share (address and PS excepted).
constexpr std::uint64_t x86_leaf_bits(const page_attrs& a, bool large, bool nx) {
    using namespace x86_pte;
    return present | (a.write ? writable : 0) | (a.user ? user : 0) | (a.global ? global : 0) |
           (a.accessed ? accessed : 0) | (a.dirty ? dirty : 0) | pat_bits(a.type, large) |
           (nx && !a.execute ? no_execute : 0);
}

constexpr page_attrs x86_leaf_attrs(std::uint64_t e, bool large, bool nx) {
    using namespace x86_pte;
    page_attrs a;
    a.write = e & writable;
    a.execute = !(nx && (e & no_execute));
    a.user = e & user;
    a.global = e & global;
    a.type = pat_type(e, large);
    a.accessed = e & accessed;
    a.dirty = e & dirty;
    return a;
}

constexpr status x86_check(const page_attrs& a, bool nx) {
    if (!a.read) return fail(errc::not_supported, "x86 pages are always readable");
    if (!a.execute && !nx) return fail(errc::not_supported, "execute-disable needs NX");
    if (a.ignore_pat) return fail(errc::not_supported, "ignore-PAT exists only in EPT");
    if (pat_index_of(a.type) == 8) return fail(errc::invalid_argument, "memory type not in PAT");
    return {};
}

// What one entry contributes to a guest-virtual walk's access rights.
struct x86_rights {
    bool write = true;        // AND over the levels
    bool user = true;         // AND over the levels
    bool no_execute = false;  // OR over the levels
};

constexpr bool canonical48(std::uint64_t va) {
    const std::uint64_t upper = va >> 47;
    return upper == 0 || upper == (std::uint64_t{1} << 17) - 1;
}

struct x86_64_format {
    using entry_type = std::uint64_t;
    static constexpr unsigned levels = 4;
    static constexpr unsigned shift(unsigned level) { return page_shift + 9 * (level - 1); }
    static constexpr unsigned entries(unsigned) { return 512; }
    static constexpr entry_type status_bits = x86_pte::accessed | x86_pte::dirty;
    static constexpr std::uint64_t address_bits = bits(51, 12);

    unsigned maxphyaddr = 52;
    bool nx = true;       // EFER.NXE
    bool gbpages = true;  // CPUID 1 GiB pages
    bool nested = false;  // NPT: input is a 48-bit guest-physical address; leaves are user

    bool present(entry_type e) const { return e & x86_pte::present; }
    bool is_leaf(entry_type e, unsigned level) const {
        return level == 1 || (level <= 3 && (e & x86_pte::large));
    }
    std::uint64_t table_address(entry_type e) const { return e & address_bits; }
    std::uint64_t leaf_address(entry_type e, unsigned level) const {
        return e & address_bits & ~(level_size<x86_64_format>(level) - 1);
    }
    page_attrs leaf_attrs(entry_type e, unsigned level) const { return x86_leaf_attrs(e, level > 1, nx); }
    entry_type make_table(std::uint64_t pa, unsigned) const {
        return pa | x86_pte::present | x86_pte::writable | x86_pte::user;
    }
    entry_type make_leaf(std::uint64_t pa, unsigned level, const page_attrs& a) const {
        return pa | x86_leaf_bits(a, level > 1, nx) | (level > 1 ? x86_pte::large : 0);
    }
    bool leaf_allowed(unsigned level) const { return level <= 2 || (level == 3 && gbpages); }
    status check(const page_attrs& a) const {
        if (nested && !a.user) return fail(errc::invalid_argument, "NPT leaves must be user pages");
        return x86_check(a, nx);
    }
    bool table_page_ok(std::uint64_t pa, bool) const { return pa < output_limit(); }
    std::uint64_t output_limit() const { return bit(maxphyaddr); }
    bool input_ok(std::uint64_t first, std::uint64_t last) const {
        if (first > last) return false;
        if (nested) return last < bit(48);
        return canonical48(first) && canonical48(last) && (first >> 47) == (last >> 47);
    }
    std::uint64_t input_address(std::uint64_t va) const {
        return nested || !(va & bit(47)) ? va : va | bits(63, 48);
    }

    std::uint64_t reserved_bits(entry_type e, unsigned level) const {
        std::uint64_t r = bits(51, maxphyaddr) | (nx ? 0 : x86_pte::no_execute);
        if (level == 4) r |= x86_pte::large;
        if (level == 3 && (e & x86_pte::large)) r |= gbpages ? bits(29, 13) : x86_pte::large;
        if (level == 2 && (e & x86_pte::large)) r |= bits(20, 13);
        return e & r;
    }
    x86_rights rights(entry_type e, unsigned) const {
        return {bool(e & x86_pte::writable), bool(e & x86_pte::user), nx && (e & x86_pte::no_execute)};
    }
    entry_type accessed_bit(unsigned) const { return x86_pte::accessed; }
};

constexpr x86_64_format npt_format(bool gbpages = true, unsigned maxphyaddr = 52) {
    x86_64_format f;
    f.maxphyaddr = maxphyaddr;
    f.gbpages = gbpages;
    f.nested = true;
    return f;
}

// PAE: a 4-entry PDPT (its entries have only P, PWT, PCD and the address) above
// 512-entry directories and tables; 2 MiB large pages; 32-bit input.
struct pae_format {
    using entry_type = std::uint64_t;
    static constexpr unsigned levels = 3;
    static constexpr unsigned shift(unsigned level) { return page_shift + 9 * (level - 1); }
    static constexpr unsigned entries(unsigned level) { return level == 3 ? 4 : 512; }
    static constexpr entry_type status_bits = x86_pte::accessed | x86_pte::dirty;
    static constexpr std::uint64_t address_bits = bits(51, 12);

    unsigned maxphyaddr = 52;
    bool nx = true;

    bool present(entry_type e) const { return e & x86_pte::present; }
    bool is_leaf(entry_type e, unsigned level) const {
        return level == 1 || (level == 2 && (e & x86_pte::large));
    }
    std::uint64_t table_address(entry_type e) const { return e & address_bits; }
    std::uint64_t leaf_address(entry_type e, unsigned level) const {
        return e & address_bits & ~(level_size<pae_format>(level) - 1);
    }
    page_attrs leaf_attrs(entry_type e, unsigned level) const { return x86_leaf_attrs(e, level > 1, nx); }
    entry_type make_table(std::uint64_t pa, unsigned level) const {
        return pa | x86_pte::present | (level == 3 ? 0 : x86_pte::writable | x86_pte::user);
    }
    entry_type make_leaf(std::uint64_t pa, unsigned level, const page_attrs& a) const {
        return pa | x86_leaf_bits(a, level > 1, nx) | (level > 1 ? x86_pte::large : 0);
    }
    bool leaf_allowed(unsigned level) const { return level <= 2; }
    status check(const page_attrs& a) const { return x86_check(a, nx); }
    // CR3 holds a 32-bit PDPT address in PAE mode.
    bool table_page_ok(std::uint64_t pa, bool root) const { return pa < (root ? bit(32) : output_limit()); }
    std::uint64_t output_limit() const { return bit(maxphyaddr); }
    bool input_ok(std::uint64_t first, std::uint64_t last) const { return first <= last && last < bit(32); }
    std::uint64_t input_address(std::uint64_t va) const { return va; }

    std::uint64_t reserved_bits(entry_type e, unsigned level) const {
        if (level == 3) return e & (bits(63, maxphyaddr) | bits(2, 1) | bits(8, 5));
        std::uint64_t r = bits(62, maxphyaddr) | (nx ? 0 : x86_pte::no_execute);
        if (level == 2 && (e & x86_pte::large)) r |= bits(20, 13);
        return e & r;
    }
    x86_rights rights(entry_type e, unsigned level) const {
        if (level == 3) return {};
        return {bool(e & x86_pte::writable), bool(e & x86_pte::user), nx && (e & x86_pte::no_execute)};
    }
    entry_type accessed_bit(unsigned level) const { return level == 3 ? 0 : x86_pte::accessed; }
};

// 32-bit paging: two levels of 1024 32-bit entries. With PSE a PDE maps 4 MiB and
// carries physical-address bits 39:32 in its bits 20:13 (PSE-36).
//
//   4 MiB PDE:  31      22 21 20   13 12 11   8 7 6 5 4 3 2 1 0
//              [ PA 31:22 ][0][PA 39:32][PAT][     ][1 D A . . U W P]
struct legacy32_format {
    using entry_type = std::uint32_t;
    static constexpr unsigned levels = 2;
    static constexpr unsigned shift(unsigned level) { return page_shift + 10 * (level - 1); }
    static constexpr unsigned entries(unsigned) { return 1024; }
    static constexpr entry_type status_bits = x86_pte::accessed | x86_pte::dirty;
    static constexpr std::uint32_t address_bits = 0xffff'f000;
    static constexpr std::uint32_t large_address_bits = 0xffc0'0000;

    unsigned maxphyaddr = 40;  // only PSE-36 leaves reach above 4 GiB
    bool pse = true;           // CR4.PSE

    unsigned pse36_bits() const { return maxphyaddr < 32 ? 0 : (maxphyaddr < 40 ? maxphyaddr : 40) - 32; }

    bool present(entry_type e) const { return e & x86_pte::present; }
    bool is_leaf(entry_type e, unsigned level) const { return level == 1 || (pse && (e & x86_pte::large)); }
    std::uint64_t table_address(entry_type e) const { return e & address_bits; }
    std::uint64_t leaf_address(entry_type e, unsigned level) const {
        if (level == 1) return e & address_bits;
        const std::uint64_t high = (e >> 13) & (bit(pse36_bits()) - 1);
        return (e & large_address_bits) | (high << 32);
    }
    page_attrs leaf_attrs(entry_type e, unsigned level) const { return x86_leaf_attrs(e, level > 1, false); }
    entry_type make_table(std::uint64_t pa, unsigned) const {
        return static_cast<entry_type>(pa | x86_pte::present | x86_pte::writable | x86_pte::user);
    }
    entry_type make_leaf(std::uint64_t pa, unsigned level, const page_attrs& a) const {
        const std::uint64_t address =
            level == 1 ? pa : (pa & large_address_bits) | ((pa >> 32) << 13) | x86_pte::large;
        return static_cast<entry_type>(address | x86_leaf_bits(a, level > 1, false));
    }
    bool leaf_allowed(unsigned level) const { return level == 1 || pse; }
    status check(const page_attrs& a) const { return x86_check(a, false); }
    bool table_page_ok(std::uint64_t pa, bool) const { return pa < bit(32); }
    // The builder keeps every leaf below 4 GiB so that any large page can be split.
    std::uint64_t output_limit() const { return bit(32); }
    bool input_ok(std::uint64_t first, std::uint64_t last) const { return first <= last && last < bit(32); }
    std::uint64_t input_address(std::uint64_t va) const { return va; }

    std::uint64_t reserved_bits(entry_type e, unsigned level) const {
        if (level != 2 || !pse || !(e & x86_pte::large)) return 0;
        return e & (bit(21) | bits(20, 13 + pse36_bits()));
    }
    x86_rights rights(entry_type e, unsigned) const {
        return {bool(e & x86_pte::writable), bool(e & x86_pte::user), false};
    }
    entry_type accessed_bit(unsigned) const { return x86_pte::accessed; }
};

static_assert(page_format<x86_64_format> && page_format<pae_format> && page_format<legacy32_format>);
static_assert(level_size<x86_64_format>(3) == bit(30) && level_size<legacy32_format>(2) == bit(22));
static_assert(level_size<pae_format>(3) * pae_format::entries(3) == bit(32));
static_assert(level_size<legacy32_format>(2) * legacy32_format::entries(2) == bit(32));
static_assert(pat_bits(memory_type::wb, false) == 0 && pat_bits(memory_type::uc, false) == 0x18);
static_assert(pat_bits(memory_type::wc, true) == x86_pte::pat_large);
static_assert(pat_type(pat_bits(memory_type::wp, false), false) == memory_type::wp);

} // namespace hv::mmu
