// A guest's paging registers for a paging mode, for tests that build the guest's tables.
#pragma once
#include <cstdint>
#include "libhv/mmu/guest_paging.hpp"

namespace hv::mmu::test {

// CR0.PE|PG|WP, the root table at CR3; CR4.PSE in legacy 32-bit paging, CR4.PAE in PAE and
// 4-level; EFER.NXE in PAE and 4-level, EFER.LME|LMA in 4-level. CPL 0.
inline guest_paging paging_regs(paging_mode mode, std::uint64_t cr3) {
    guest_paging regs;
    regs.cr0 = 1 | cr0::pg | cr0::wp;
    regs.cr3 = cr3;
    regs.cr4 = mode == paging_mode::legacy32 ? cr4::pse : cr4::pae;
    regs.efer = (mode == paging_mode::legacy32 ? 0 : efer::nxe) |
                (mode == paging_mode::four_level ? efer::lme | efer::lma : 0);
    return regs;
}

} // namespace hv::mmu::test
