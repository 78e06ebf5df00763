// What a batch of page-table changes asks of the TLBs, and the hook that does it.
//
// The builder records the input-address ranges whose translations changed (or were
// dropped with their paging-structure caches); the cpu layer turns one request into
// one invalidation: INVLPG per page or a CR3 reload for host tables, INVEPT
// single-context (EPT has no per-address form), INVVPID, or an ASID flush / INVLPGA
// for NPT. The request is issued once per batch, not per page.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace hv::mmu {

enum class flush_scope : std::uint8_t { none, ranges, all };

struct address_range {
    std::uint64_t first;
    std::uint64_t last;  // inclusive: a range may end at 2^64 - 1
    friend constexpr bool operator==(const address_range&, const address_range&) = default;
};

class tlb_flush {
public:
    static constexpr std::size_t max_ranges = 8;

    // Adds [first, last], merging it with ranges it overlaps or touches; past
    // max_ranges the request becomes `all`.
    void add(std::uint64_t first, std::uint64_t last);
    void add_all() { scope_ = flush_scope::all; count_ = 0; }
    void clear() { scope_ = flush_scope::none; count_ = 0; }

    [[nodiscard]] flush_scope scope() const { return scope_; }
    [[nodiscard]] std::span<const address_range> ranges() const { return {ranges_.data(), count_}; }
    [[nodiscard]] bool covers(std::uint64_t address) const;

private:
    flush_scope scope_ = flush_scope::none;
    std::size_t count_ = 0;
    std::array<address_range, max_ranges> ranges_{};
};

// Executes a request for one address space (the context names it: an EPTP, a VPID, an
// ASID, a host CR3). A null `invalidate` means no CPU uses the tables.
struct tlb_hook {
    void (*invalidate)(void* ctx, const tlb_flush& request) = nullptr;
    void* ctx = nullptr;
};

} // namespace hv::mmu
