// What the one walker and builder need to know about an entry format.
//
// Levels count up from the leaf table: level 1 maps 4 KiB pages, level 2 holds PDEs
// (2 or 4 MiB leaves), level 3 PDPTEs (1 GiB leaves), level 4 PML4Es. A format
// object carries the runtime knobs the CPU gives it (NXE, MAXPHYADDR, 1 GiB pages...).
#pragma once
#include <concepts>
#include <cstdint>
#include "libhv/core/result.hpp"

namespace hv::mmu {

// Architectural memory-type encodings (PAT, MTRR and EPT share them).
enum class memory_type : std::uint8_t { uc = 0, wc = 1, wt = 4, wp = 5, wb = 6, uc_minus = 7 };

// Format-independent description of a leaf. x86 formats cannot express !read;
// EPT has no user bit (decodes user=false) and x86 none of ignore_pat.
struct page_attrs {
    bool read = true;
    bool write = false;
    bool execute = false;
    bool user = false;
    bool global = false;
    memory_type type = memory_type::wb;
    bool ignore_pat = false;
    bool accessed = false;
    bool dirty = false;

    friend constexpr bool operator==(const page_attrs&, const page_attrs&) = default;

    constexpr page_attrs without_status() const {
        page_attrs a = *this;
        a.accessed = a.dirty = false;
        return a;
    }
};

template <class F>
concept page_format = requires(const F& f, typename F::entry_type e, unsigned level,
                               std::uint64_t pa, const page_attrs& a) {
    requires std::same_as<typename F::entry_type, std::uint32_t> ||
                 std::same_as<typename F::entry_type, std::uint64_t>;
    { F::levels } -> std::convertible_to<unsigned>;
    { F::shift(level) } -> std::same_as<unsigned>;      // log2 of what one entry maps
    { F::entries(level) } -> std::same_as<unsigned>;    // entries in a table at `level`
    { F::status_bits } -> std::convertible_to<typename F::entry_type>;  // A/D, hardware-owned
    { f.present(e) } -> std::same_as<bool>;
    { f.is_leaf(e, level) } -> std::same_as<bool>;
    { f.table_address(e) } -> std::same_as<std::uint64_t>;
    { f.leaf_address(e, level) } -> std::same_as<std::uint64_t>;
    { f.leaf_attrs(e, level) } -> std::same_as<page_attrs>;
    { f.make_table(pa, level) } -> std::same_as<typename F::entry_type>;
    { f.make_leaf(pa, level, a) } -> std::same_as<typename F::entry_type>;
    { f.leaf_allowed(level) } -> std::same_as<bool>;
    { f.check(a) } -> std::same_as<status>;               // can the format express `a`?
    { f.table_page_ok(pa, true) } -> std::same_as<bool>;  // may a table (the root?) live at pa?
    { f.output_limit() } -> std::same_as<std::uint64_t>;  // leaves map below this
    { f.input_ok(pa, pa) } -> std::same_as<bool>;         // is [first, last] translatable?
    { f.input_address(pa) } -> std::same_as<std::uint64_t>;  // canonical form of a rebuilt address
};

template <class F>
constexpr std::uint64_t level_size(unsigned level) { return std::uint64_t{1} << F::shift(level); }

template <class F>
constexpr unsigned level_index(std::uint64_t va, unsigned level) {
    return static_cast<unsigned>((va >> F::shift(level)) & (F::entries(level) - 1));
}

constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << n; }
// Bits [lo, hi], inclusive; empty when hi < lo.
constexpr std::uint64_t bits(unsigned hi, unsigned lo) {
    return hi < lo ? 0 : ((hi >= 63 ? ~std::uint64_t{0} : bit(hi + 1) - 1) & ~(bit(lo) - 1));
}
static_assert(bits(51, 12) == 0x000f'ffff'ffff'f000 && bits(2, 0) == 7 && bits(11, 12) == 0);
static_assert(bits(63, 63) == bit(63));

} // namespace hv::mmu
