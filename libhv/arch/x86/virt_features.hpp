// What hardware virtualization this CPU offers: CPUID plus the VMX capability MSRs.
#pragma once
#include <cstdint>

namespace hv::x86 {

struct vmx_capability_msrs {
    std::uint64_t basic, pinbased, procbased, exit, entry, misc;
    std::uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
    std::uint64_t procbased2, ept_vpid;
    std::uint64_t true_pinbased, true_procbased, true_exit, true_entry;
    std::uint64_t feature_control;
};

struct virt_features {
    char vendor[13];
    std::uint32_t family, model, stepping;
    bool vmx = false, svm = false;

    // VMX (Intel)
    bool vmx_allowed = false;  // IA32_FEATURE_CONTROL locked with VMXON outside SMX, or unlocked
    bool true_controls = false, secondary_controls = false;
    bool ept = false, vpid = false, unrestricted_guest = false, ept_1g = false, ept_ad = false;
    vmx_capability_msrs vmx_msrs{};

    // SVM (AMD)
    bool npt = false, nrips = false, svm_disabled_by_firmware = false;
    std::uint32_t asids = 0;
};

// The decoding half, without touching hardware (unit-tested).
void decode_vmx(virt_features& f);

// Reads CPUID and, where VMX is present, the capability MSRs.
virt_features probe_virt_features();

} // namespace hv::x86
