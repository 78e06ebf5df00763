// Length of the instructions that cause SVM intercepts, for CPUs without NRIPS (Bochs'
// phenom model, QEMU TCG), where the VMCB has no next RIP and the handler must skip the
// instruction itself. Legacy prefixes, REX, one- and two-byte opcodes of the intercepted
// set, and ModRM/SIB/displacement addressing; anything else is refused, never guessed.
#pragma once
#include <cstdint>
#include <span>
#include "libhv/core/result.hpp"

namespace hv::svm {

enum class code_mode : std::uint8_t { m16, m32, m64 };

// From the guest's CS.L, CS.D and EFER.LMA.
constexpr code_mode mode_of(bool long_mode_active, bool cs_l, bool cs_d) {
    if (long_mode_active && cs_l) return code_mode::m64;
    return cs_d ? code_mode::m32 : code_mode::m16;
}

inline constexpr std::size_t max_instruction_length = 15;

// `bytes` are fetched from the guest RIP onward (up to 15; fewer near the end of a page
// is fine as long as the instruction fits).
[[nodiscard]] result<std::uint8_t> instruction_length(std::span<const std::uint8_t> bytes, code_mode mode);

} // namespace hv::svm
