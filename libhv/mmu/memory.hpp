// Memory backends of the page-table walker and builder.
//
// A walker only needs `physical_memory`: the host pointer behind a physical address.
// A builder also allocates and frees zeroed 4 KiB table pages (`table_memory`).
// Entries are read and written through `load_entry`/`store_entry`/`exchange_entry`
// on that pointer, never with plain accesses: hardware walks (and sets A/D bits in)
// the same tables concurrently, so every entry access must be single-copy atomic.
#pragma once
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include "libhv/core/result.hpp"

namespace hv::mmu {

inline constexpr unsigned page_shift = 12;
inline constexpr std::uint64_t page_size = std::uint64_t{1} << page_shift;
inline constexpr std::uint64_t page_offset_mask = page_size - 1;

constexpr bool page_aligned(std::uint64_t x) { return (x & page_offset_mask) == 0; }

enum class access_kind : std::uint8_t { read, write, execute };

// The allocator the hypervisor gives us (libhv/mem): zeroed 4 KiB pages by physical address.
template <class A>
concept page_allocator = requires(A& a, std::uint64_t pa) {
    { a.alloc_page() } -> std::same_as<result<std::uint64_t>>;
    { a.free_page(pa) } -> std::same_as<void>;
};

// The host pointer to the byte at `pa` (valid up to the end of its 4 KiB page), or
// nullptr where there is no memory this access may use: a hole or MMIO, or a read-only
// page when `for_write`.
template <class M>
concept physical_memory = requires(M& m, std::uint64_t pa, bool for_write) {
    { m.host_pointer(pa, for_write) } -> std::same_as<void*>;
};

template <class M>
concept table_memory = physical_memory<M> && page_allocator<M>;

template <class E>
E load_entry(const void* p) {
    return std::atomic_ref<E>(*static_cast<E*>(const_cast<void*>(p))).load(std::memory_order_acquire);
}

// Release: a table's contents are visible before the entry that links it.
template <class E>
void store_entry(void* p, E v) {
    std::atomic_ref<E>(*static_cast<E*>(p)).store(v, std::memory_order_release);
}

// Replaces `expected` with `desired`; on failure `expected` holds what is there now
// (typically the same entry with A/D bits the hardware has just set).
template <class E>
bool exchange_entry(void* p, E& expected, E desired) {
    return std::atomic_ref<E>(*static_cast<E*>(p))
        .compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
}

template <class E>
void set_entry_bits(void* p, E bits) {
    std::atomic_ref<E>(*static_cast<E*>(p)).fetch_or(bits, std::memory_order_acq_rel);
}

// Type-erased page_allocator, so the metal build instantiates the builder once.
struct page_allocator_ref {
    result<std::uint64_t> (*alloc)(void* ctx);
    void (*free)(void* ctx, std::uint64_t pa);
    void* ctx;

    template <page_allocator A>
    static page_allocator_ref to(A& a) {
        return {[](void* c) { return static_cast<A*>(c)->alloc_page(); },
                [](void* c, std::uint64_t pa) { static_cast<A*>(c)->free_page(pa); }, &a};
    }
    [[nodiscard]] result<std::uint64_t> alloc_page() { return alloc(ctx); }
    void free_page(std::uint64_t pa) { free(ctx, pa); }
};

// Host-physical memory reached through a direct map: host pointer = pa + offset. On
// metal the hypervisor identity-maps physical memory, so the offset is 0.
template <page_allocator A>
class direct_map_memory {
public:
    explicit direct_map_memory(A allocator, std::uintptr_t host_minus_physical = 0)
        : allocator_{allocator}, offset_{host_minus_physical} {}

    void* host_pointer(std::uint64_t pa, bool) {
        return reinterpret_cast<void*>(static_cast<std::uintptr_t>(pa) + offset_);
    }
    [[nodiscard]] result<std::uint64_t> alloc_page() { return allocator_.alloc_page(); }
    void free_page(std::uint64_t pa) { allocator_.free_page(pa); }

private:
    A allocator_;
    std::uintptr_t offset_;
};

static_assert(table_memory<direct_map_memory<page_allocator_ref>>);

} // namespace hv::mmu
