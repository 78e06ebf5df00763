// Pieces the metal backends share. Metal only.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/cpu.hpp"

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

// XCR0 per vCPU (guest_state::xcr0). Neither VMX nor SVM switches it, and libhv's own
// code uses no extended state (-mgeneral-regs-only): a backend loads the guest's value
// before its loop enters and puts the host's back when the loop returns to the vCPU
// loop (before any other vCPU, task or the scheduler runs), each only when the two
// differ. Between an exit and that return only the exit's handler runs.
inline std::uint64_t current_xcr0() { return (x86::read_cr4() & x86::cr4::osxsave) ? x86::xgetbv(0) : 1; }
[[gnu::noinline]] inline void load_xcr0(std::uint64_t value) {
    if (!(x86::read_cr4() & x86::cr4::osxsave)) x86::write_cr4(x86::read_cr4() | x86::cr4::osxsave);
    x86::xsetbv(0, value);
}

} // namespace hv::cpu
