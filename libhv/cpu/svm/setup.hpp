// Filling a VMCB from libhv's vendor-neutral guest state, and the VMRUN consistency
// checks (APM vol. 2 15.5.1) done in software first, so an illegal VMCB is reported by
// field instead of as exit code -1 (or, on Bochs, an emulator panic).
#pragma once
#include <cstdint>
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/cpu/state.hpp"
#include "libhv/cpu/svm/vmcb.hpp"

namespace hv::svm {

// Guest state into the state-save area (EFER.SVME forced on; CPL from SS.DPL).
void put_guest(vmcb& v, const cpu::guest_state& g);
// The reverse, for the fields put_guest writes (RAX and RSP included, other GPRs are
// not in the VMCB).
void get_guest(const vmcb& v, cpu::guest_state& g);

struct vmrun_context {
    unsigned maxphyaddr = 40;
    // CR4 bits this CPU implements (CPUID-derived); others are MBZ. Default: bits 0-12,
    // 16-18, 20-23 (VMXE and SMXE are reserved on AMD).
    std::uint64_t cr4_supported = 0x00f71fffull;
};

struct [[nodiscard]] vmrun_verdict {
    bool passed = true;
    const char* where = nullptr;  // VMCB field, e.g. "state.efer"
    const char* what = nullptr;   // static string
    explicit operator bool() const { return passed; }
    [[nodiscard]] status to_status() const { return passed ? status{} : status{fail(errc::invalid_argument, what)}; }
};

[[nodiscard]] vmrun_verdict check_vmrun(const vmcb& v, const vmrun_context& cx);
void print(const fmt::sink& out, const vmrun_verdict& r);

} // namespace hv::svm
