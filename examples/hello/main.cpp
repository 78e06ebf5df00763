// The smallest libhv image: report what hardware virtualization the CPU offers.
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/virt_features.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

namespace {

const char* yes_no(bool b) { return b ? "yes" : "no"; }

void print_vmx(const hv::x86::virt_features& f) {
    const auto& m = f.vmx_msrs;
    hv::println("vmx: allowed-by-firmware={} true-controls={} secondary-controls={}", yes_no(f.vmx_allowed),
                yes_no(f.true_controls), yes_no(f.secondary_controls));
    hv::println("vmx: ept={} vpid={} unrestricted-guest={} ept-1g-pages={} ept-accessed-dirty={}", yes_no(f.ept),
                yes_no(f.vpid), yes_no(f.unrestricted_guest), yes_no(f.ept_1g), yes_no(f.ept_ad));
    hv::println("vmx-msr: feature_control={:#x} basic={:#018x} misc={:#018x}", m.feature_control, m.basic, m.misc);
    hv::println("vmx-msr: pinbased={:#018x} procbased={:#018x} exit={:#018x} entry={:#018x}", m.pinbased,
                m.procbased, m.exit, m.entry);
    hv::println("vmx-msr: true_pinbased={:#018x} true_procbased={:#018x} true_exit={:#018x} true_entry={:#018x}",
                m.true_pinbased, m.true_procbased, m.true_exit, m.true_entry);
    hv::println("vmx-msr: procbased2={:#018x} ept_vpid={:#018x}", m.procbased2, m.ept_vpid);
    hv::println("vmx-msr: cr0_fixed0={:#x} cr0_fixed1={:#x} cr4_fixed0={:#x} cr4_fixed1={:#x}", m.cr0_fixed0,
                m.cr0_fixed1, m.cr4_fixed0, m.cr4_fixed1);
}

} // namespace

HV_PROGRAM(hello, "hello", "print the CPU vendor and its virtualization features") {
    auto f = hv::x86::probe_virt_features();
    hv::println("cpu: vendor={} family={:#x} model={:#x} stepping={}", f.vendor, f.family, f.model, f.stepping);
    if (f.vmx) {
        hv::println("virtualization: VMX (Intel VT-x)");
        print_vmx(f);
    }
    if (f.svm) {
        hv::println("virtualization: SVM (AMD-V)");
        hv::println("svm: npt={} nrips={} asids={} disabled-by-firmware={}", yes_no(f.npt), yes_no(f.nrips), f.asids,
                    yes_no(f.svm_disabled_by_firmware));
    }
    // Running as a guest (CPUID.1:ECX.31): name the hypervisor; no VMX or SVM is expected.
    if (hv::x86::cpuid(1).ecx & (1u << 31)) {
        const auto sig = hv::x86::cpuid(0x40000000);
        char name[13] = {};
        __builtin_memcpy(name, &sig.ebx, 4);
        __builtin_memcpy(name + 4, &sig.ecx, 4);
        __builtin_memcpy(name + 8, &sig.edx, 4);
        hv::println("hypervisor: \"{}\" max-leaf={:#x}", std::string_view(name), sig.eax);
        return {};
    }
    if (!f.vmx && !f.svm) return hv::fail(hv::errc::not_supported, "this CPU offers neither VMX nor SVM");
    return {};
}
