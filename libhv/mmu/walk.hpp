// The one page-table walk, for every format and every memory.
//
//   root ─► level N table ─► level N-1 table ─► ... ─► leaf ─► page + offset
//           [index: va bits shift(N) .. shift(N)+log2(entries(N))-1]
//
// It stops at a leaf (a level-1 entry or a large-page entry), a not-present entry, an
// entry the visitor rejects (the guest walker's reserved-bit check), or a table
// address with no memory behind it. The visitor sees each present entry before the
// walk interprets it, together with the entry's own physical address (for A/D updates).
#pragma once
#include <cstdint>
#include <optional>
#include "libhv/mmu/format.hpp"
#include "libhv/mmu/memory.hpp"

namespace hv::mmu {

enum class walk_stop : std::uint8_t { leaf, not_present, rejected, unreachable };

struct walk_end {
    walk_stop stop;
    unsigned level;          // of the entry the walk stopped at
    std::uint64_t entry_pa;  // that entry's physical address
    std::uint64_t entry;     // and its value (0 when unreachable)
};

template <page_format F, physical_memory M, class Visit>
walk_end walk(const F& f, M& mem, std::uint64_t root, std::uint64_t va, Visit&& visit) {
    using entry_type = typename F::entry_type;
    std::uint64_t table = root;
    for (unsigned level = F::levels;; --level) {
        const std::uint64_t entry_pa = table + level_index<F>(va, level) * sizeof(entry_type);
        const void* p = mem.host_pointer(entry_pa, false);
        if (!p) return {walk_stop::unreachable, level, entry_pa, 0};
        const entry_type e = load_entry<entry_type>(p);
        if (!f.present(e)) return {walk_stop::not_present, level, entry_pa, e};
        if (!visit(level, entry_pa, e)) return {walk_stop::rejected, level, entry_pa, e};
        if (f.is_leaf(e, level)) return {walk_stop::leaf, level, entry_pa, e};
        table = f.table_address(e);
    }
}

struct translation {
    std::uint64_t pa;
    unsigned level;  // of the leaf
    page_attrs attrs;
};

template <page_format F, physical_memory M>
std::optional<translation> translate(const F& f, M& mem, std::uint64_t root, std::uint64_t va) {
    const walk_end end = walk(f, mem, root, va, [](unsigned, std::uint64_t, auto) { return true; });
    if (end.stop != walk_stop::leaf) return std::nullopt;
    const auto e = static_cast<typename F::entry_type>(end.entry);
    const std::uint64_t offset = va & (level_size<F>(end.level) - 1);
    return translation{f.leaf_address(e, end.level) + offset, end.level, f.leaf_attrs(e, end.level)};
}

} // namespace hv::mmu
