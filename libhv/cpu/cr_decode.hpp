// MOV to/from CR0-CR15, CLTS, LMSW and SMSW from a decoded instruction: what an SVM CR-access
// exit carries only with decode assists (EXITINFO1), for CPUs without them.
#pragma once
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/insn/insn.hpp"

namespace hv::cpu {

// False when `in` is none of these (or LMSW/SMSW with a memory operand, which the
// caller would have to read or write).
[[nodiscard]] bool cr_access_of(const insn::instruction& in, cr_detail& out);

} // namespace hv::cpu
