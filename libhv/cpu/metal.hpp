// Pieces the metal backends share. Metal only.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::cpu {

// Zeroed pages, identity-mapped (virtual == physical), from whoever owns memory.
using page_alloc_fn = void* (*)(std::size_t count);

inline std::uint64_t pa_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// An identity map of the low 4 GiB for EPT or NPT with 1 GiB pages (both Bochs models
// libhv targets and QEMU support them). A stand-in until libhv/mmu builds real ones.
// Returns the root table's physical address, or 0 when allocation failed.
enum class nested_format : std::uint8_t { ept, npt };
inline std::uint64_t identity_nested_map(page_alloc_fn alloc, nested_format f) {
    auto* pml4 = static_cast<std::uint64_t*>(alloc(1));
    auto* pdpt = static_cast<std::uint64_t*>(alloc(1));
    if (!pml4 || !pdpt) return 0;
    // EPT: read, write, execute; leaves add memory type WB and the page-size bit.
    // NPT: present, writable, user (nested walks are user accesses); leaves add PS.
    const std::uint64_t table = f == nested_format::ept ? 0x7 : 0x7;
    const std::uint64_t leaf = f == nested_format::ept ? (0x7 | 6u << 3 | 1u << 7) : (0x7 | 1u << 7);
    pml4[0] = pa_of(pdpt) | table;
    for (std::uint64_t i = 0; i < 4; ++i) pdpt[i] = (i << 30) | leaf;
    return pa_of(pml4);
}

} // namespace hv::cpu
