// Real-address-mode delivery of an interrupt or exception (SDM Vol. 3 20.1.4): FLAGS,
// CS and IP pushed on SS:SP (16-bit, SP wrapping at 0), IF, TF and AC cleared, CS:IP
// loaded from the interrupt vector table entry at IDTR.base + 4 * vector. For a backend
// whose real mode cannot take events itself (VMX without unrestricted guest runs real
// mode in vm86, where INT n and events go through the protected-mode IDT).
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/cpu/io_emul.hpp"
#include "libhv/cpu/state.hpp"

namespace hv::cpu {

// What delivery reads and changes. `ip`: where the handler's IRET returns (past an INT n,
// at the interrupted instruction for an external interrupt); `rflags` as the guest sees
// them (its IOPL, no VM). After delivery: the handler's CS:IP, the new SP, the flags.
// The new CS base is cs * 16.
struct real_mode_frame {
    std::uint16_t cs = 0, ip = 0, sp = 0;
    std::uint64_t ss_base = 0;
    std::uint64_t rflags = 0;
};

// Fails (nothing changed in `f`) where the CPU would raise a second fault instead of
// delivering: the IVT entry beyond the IDTR limit (#GP), a push straddling SS's limit
// (SP 1, 3 or 5: #SS), or memory that is not there (`mem` refused). Pushes that were written
// before a refusal stay written.
[[nodiscard]] status deliver_real_mode(real_mode_frame& f, std::uint8_t vector, const table_register& idtr,
                                       const guest_memory& mem);

} // namespace hv::cpu
