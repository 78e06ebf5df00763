#include "libhv/arch/x86/virt_features.hpp"
#if !HV_HOSTED
#include "libhv/arch/x86/cpu.hpp"
#endif

namespace hv::x86 {

void decode_vmx(virt_features& f) {
    const auto& m = f.vmx_msrs;
    // IA32_FEATURE_CONTROL: bit 0 lock, bit 2 VMXON outside SMX.
    f.vmx_allowed = !(m.feature_control & 1) || (m.feature_control & 4);
    f.true_controls = (m.basic >> 55) & 1;
    // Allowed-1 settings live in the high 32 bits of each control MSR.
    f.secondary_controls = (m.procbased >> 32) & (1u << 31);
    std::uint32_t proc2_allowed1 = f.secondary_controls ? std::uint32_t(m.procbased2 >> 32) : 0;
    f.ept = proc2_allowed1 & (1u << 1);
    f.vpid = proc2_allowed1 & (1u << 5);
    f.unrestricted_guest = proc2_allowed1 & (1u << 7);
    f.ept_1g = f.ept && (m.ept_vpid & (1ull << 17));
    f.ept_ad = f.ept && (m.ept_vpid & (1ull << 21));
}

#if !HV_HOSTED
virt_features probe_virt_features() {
    virt_features f{};
    auto v = cpuid(0);
    auto put = [&](int at, std::uint32_t r) { for (int i = 0; i < 4; ++i) f.vendor[at + i] = char(r >> (8 * i)); };
    put(0, v.ebx);
    put(4, v.edx);
    put(8, v.ecx);
    f.vendor[12] = 0;
    auto l1 = cpuid(1);
    f.stepping = l1.eax & 0xf;
    f.model = ((l1.eax >> 4) & 0xf) | (((l1.eax >> 16) & 0xf) << 4);
    f.family = ((l1.eax >> 8) & 0xf) + ((l1.eax >> 20) & 0xff);
    f.vmx = l1.ecx & (1u << 5);
    std::uint32_t max_ext = cpuid(0x80000000).eax;
    if (max_ext >= 0x80000001) f.svm = cpuid(0x80000001).ecx & (1u << 2);

    // Some AMD models answer the VMX MSRs although CPUID says no VMX: trust CPUID.
    if (f.vmx) {
        auto& m = f.vmx_msrs;
        rdmsr_safe(msr::feature_control, m.feature_control);
        m.basic = rdmsr(msr::vmx_basic);
        m.pinbased = rdmsr(msr::vmx_pinbased_ctls);
        m.procbased = rdmsr(msr::vmx_procbased_ctls);
        m.exit = rdmsr(msr::vmx_exit_ctls);
        m.entry = rdmsr(msr::vmx_entry_ctls);
        m.misc = rdmsr(msr::vmx_misc);
        m.cr0_fixed0 = rdmsr(msr::vmx_cr0_fixed0);
        m.cr0_fixed1 = rdmsr(msr::vmx_cr0_fixed1);
        m.cr4_fixed0 = rdmsr(msr::vmx_cr4_fixed0);
        m.cr4_fixed1 = rdmsr(msr::vmx_cr4_fixed1);
        if ((m.procbased >> 32) & (1u << 31)) {
            m.procbased2 = rdmsr(msr::vmx_procbased_ctls2);
            // The EPT/VPID capability MSR exists only if EPT or VPID may be enabled.
            if ((m.procbased2 >> 32) & ((1u << 1) | (1u << 5))) m.ept_vpid = rdmsr(msr::vmx_ept_vpid_cap);
        }
        if ((m.basic >> 55) & 1) {
            m.true_pinbased = rdmsr(msr::vmx_true_pinbased_ctls);
            m.true_procbased = rdmsr(msr::vmx_true_procbased_ctls);
            m.true_exit = rdmsr(msr::vmx_true_exit_ctls);
            m.true_entry = rdmsr(msr::vmx_true_entry_ctls);
        }
        decode_vmx(f);
    }
    if (f.svm && max_ext >= 0x8000000a) {
        auto s = cpuid(0x8000000a);
        f.asids = s.ebx;
        f.npt = s.edx & (1u << 0);
        f.nrips = s.edx & (1u << 3);
        std::uint64_t vm_cr = 0;
        // VM_CR raises #GP on Bochs' AMD models: treat that as "not disabled".
        if (rdmsr_safe(msr::vm_cr, vm_cr)) f.svm_disabled_by_firmware = vm_cr & (1u << 4);
    }
    return f;
}
#endif

} // namespace hv::x86
