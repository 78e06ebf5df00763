// What a hypercall's calling convention depends on, read at the exit in as few backend
// reads as the architecture allows (backend_ops::read_call_mode):
//
//   64 or 32   IA-32e mode and CS.L: 64-bit code, 64-bit argument registers; else 32
//   kernel or user   CPL = 0 or > 0 (hypercalls from user mode are refused)
//
// The CPL is SS.DPL (VMX keeps it there; SVM has the VMCB's CPL byte). CS.DPL equals it
// in a non-conforming code segment (every far transfer, gate, interrupt, SYSCALL/SYSRET
// into one sets CPL = DPL, and VM entry requires SS.DPL = CS.DPL for these types), so a
// VMX backend reads SS only for a conforming code segment (DPL <= CPL: user code can run
// in a DPL 0 one) or a CS that is not a code segment (real mode under unrestricted guest).
#pragma once
#include <cstdint>
#include "libhv/cpu/state.hpp"

namespace hv::cpu {

// kernel64 is 0, so the usual case costs one test.
enum class call_mode : std::uint8_t { kernel64 = 0, kernel32 = 1, user64 = 2, user32 = 3 };
constexpr bool bits64(call_mode m) { return !(static_cast<unsigned>(m) & 1u); }
constexpr bool user(call_mode m) { return static_cast<unsigned>(m) & 2u; }

// CS.DPL is the CPL: a non-conforming code segment (S = 1, type 1x0x).
constexpr bool cs_dpl_is_cpl(std::uint32_t cs_access) { return (cs_access & (ar::s | 0xcu)) == (ar::s | 0x8u); }

// The usual case, decided from CS alone (then EFER.LMA says 64 or 32): a DPL 0,
// non-conforming, 64-bit code segment, in which the CPL is 0.
constexpr bool kernel64_code_segment(std::uint32_t cs_access) {
    return (cs_access & (ar::s | 0xcu | ar::dpl(3) | ar::l)) == (ar::s | 0x8u | ar::l);
}

// `lma`: EFER.LMA; `cpl`: SS.DPL or the VMCB's CPL.
constexpr call_mode call_mode_of(bool lma, std::uint32_t cs_access, unsigned cpl) {
    return static_cast<call_mode>((lma && (cs_access & ar::l) ? 0u : 1u) | (cpl ? 2u : 0u));
}

} // namespace hv::cpu
