// Software VM-entry checks (SDM 26.2 "checks on VMX controls and host-state area" and
// 26.3.1 "checks on the guest state area"), run on
// a vmcs_image before the first VMLAUNCH. A refusal names the field and the rule, so a
// broken guest ends with a message instead of a bare VMfailValid or exit reason 33.
//
// Covered: what libhv sets. Not covered: posted interrupts, VM functions, VMCS shadowing
// (libhv requires the link pointer to be all ones), SMM, PT, CET, PKRS, sub-page
// permissions, TPR-threshold/virtual-APIC content rules, memory the fields point to.
#pragma once
#include <cstdint>
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/cpu/vmx/controls.hpp"
#include "libhv/cpu/vmx/vmcs_image.hpp"

namespace hv::vmx {

struct entry_context {
    const capabilities* caps;
    unsigned maxphyaddr = 36;  // CPUID 0x80000008:EAX[7:0]
};

struct [[nodiscard]] entry_verdict {
    bool passed = true;
    field where = field::vpid;
    const char* what = nullptr;  // the rule, static string
    const char* sdm = nullptr;   // section, e.g. "26.3.1.2"

    static constexpr entry_verdict ok() { return {}; }
    explicit operator bool() const { return passed; }
    [[nodiscard]] status to_status() const {
        return passed ? status{} : status{fail(errc::invalid_argument, what)};
    }
};

[[nodiscard]] entry_verdict check_controls(const vmcs_image& v, const entry_context& cx);  // 26.2.1
[[nodiscard]] entry_verdict check_host(const vmcs_image& v, const entry_context& cx);      // 26.2.2-26.2.4
[[nodiscard]] entry_verdict check_guest(const vmcs_image& v, const entry_context& cx);     // 26.3.1
// All three, in the order the processor performs them.
[[nodiscard]] entry_verdict check_entry(const vmcs_image& v, const entry_context& cx);

// "VM entry check failed: guest_cs_ar = 0x...: <rule> (SDM 26.3.1.2)"
void print(const fmt::sink& out, const entry_verdict& r, const vmcs_image& v);

} // namespace hv::vmx
