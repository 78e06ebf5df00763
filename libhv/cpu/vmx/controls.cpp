#include "libhv/cpu/vmx/controls.hpp"

namespace hv::vmx {

std::string_view name(control_set s) {
    switch (s) {
    case control_set::pin: return "pin-based";
    case control_set::proc: return "primary processor-based";
    case control_set::proc2: return "secondary processor-based";
    case control_set::exit: return "VM-exit";
    case control_set::entry: return "VM-entry";
    }
    return "?";
}

namespace {
// One name per defined bit, indexed by bit number; nullptr where the SDM defines nothing
// libhv names.
constexpr const char* pin_names[32] = {
    "external-interrupt exiting", nullptr, nullptr, "NMI exiting", nullptr, "virtual NMIs",
    "activate VMX-preemption timer", "process posted interrupts"};
constexpr const char* proc_names[32] = {
    nullptr, nullptr, "interrupt-window exiting", "use TSC offsetting", nullptr, nullptr, nullptr,
    "HLT exiting", nullptr, "INVLPG exiting", "MWAIT exiting", "RDPMC exiting", "RDTSC exiting",
    nullptr, nullptr, "CR3-load exiting", "CR3-store exiting", "activate tertiary controls", nullptr,
    "CR8-load exiting", "CR8-store exiting", "use TPR shadow", "NMI-window exiting", "MOV-DR exiting",
    "unconditional I/O exiting", "use I/O bitmaps", nullptr, "monitor trap flag", "use MSR bitmaps",
    "MONITOR exiting", "PAUSE exiting", "activate secondary controls"};
constexpr const char* proc2_names[32] = {
    "virtualize APIC accesses", "enable EPT", "descriptor-table exiting", "enable RDTSCP",
    "virtualize x2APIC mode", "enable VPID", "WBINVD exiting", "unrestricted guest",
    "APIC-register virtualization", "virtual-interrupt delivery", "PAUSE-loop exiting", "RDRAND exiting",
    "enable INVPCID", "enable VM functions", "VMCS shadowing", "enable ENCLS exiting", "RDSEED exiting",
    "enable PML", "EPT-violation #VE", "conceal VMX from PT", "enable XSAVES/XRSTORS", nullptr,
    "mode-based execute control for EPT", "sub-page write permissions for EPT",
    "Intel PT uses guest physical addresses", "use TSC scaling", "enable user wait and pause",
    "enable PCONFIG", "enable ENCLV exiting"};
constexpr const char* exit_names[32] = {
    nullptr, nullptr, "save debug controls", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    "host address-space size", nullptr, nullptr, "load IA32_PERF_GLOBAL_CTRL", nullptr, nullptr,
    "acknowledge interrupt on exit", nullptr, nullptr, "save IA32_PAT", "load IA32_PAT", "save IA32_EFER",
    "load IA32_EFER", "save VMX-preemption timer value", "clear IA32_BNDCFGS", "conceal VMX from PT",
    "clear IA32_RTIT_CTL", nullptr, nullptr, "load CET state", "load PKRS"};
constexpr const char* entry_names[32] = {
    nullptr, nullptr, "load debug controls", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    "IA-32e mode guest", "entry to SMM", "deactivate dual-monitor treatment", nullptr,
    "load IA32_PERF_GLOBAL_CTRL", "load IA32_PAT", "load IA32_EFER", "load IA32_BNDCFGS",
    "conceal VMX from PT", "load IA32_RTIT_CTL", nullptr, "load CET state"};
constexpr const char* const* all_names[control_set_count] = {pin_names, proc_names, proc2_names, exit_names,
                                                             entry_names};
} // namespace

const char* control_name(control_set s, unsigned bit) {
    if (bit >= 32) return nullptr;
    return all_names[static_cast<unsigned>(s)][bit];
}

capabilities decode(const capability_msrs& m) {
    capabilities c{};
    c.basic = {m.basic};
    c.misc = {m.misc};
    c.uses_true_msrs = c.basic.true_controls();
    auto& ctl = c.controls;
    ctl[0] = allowed::from_msr(c.uses_true_msrs ? m.true_pinbased : m.pinbased);
    ctl[1] = allowed::from_msr(c.uses_true_msrs ? m.true_procbased : m.procbased);
    ctl[3] = allowed::from_msr(c.uses_true_msrs ? m.true_exit : m.exit);
    ctl[4] = allowed::from_msr(c.uses_true_msrs ? m.true_entry : m.entry);
    // IA32_VMX_PROCBASED_CTLS2 has no allowed-0 half that matters: every bit may be 0.
    if (ctl[1].allowed1 & bits(proc::secondary_controls))
        ctl[2] = allowed{0, static_cast<std::uint32_t>(m.procbased2 >> 32)};
    if (ctl[2].allowed1 & bits(proc2::ept, proc2::vpid)) c.ept_vpid = {m.ept_vpid_cap};
    c.cr0_fixed0 = m.cr0_fixed0;
    c.cr0_fixed1 = m.cr0_fixed1;
    c.cr4_fixed0 = m.cr4_fixed0;
    c.cr4_fixed1 = m.cr4_fixed1;
    if (ctl[2].allowed1 & bits(proc2::vm_functions)) c.vmfunc = m.vmfunc;
    return c;
}

namespace {
error refused_error(control_set s, std::uint32_t missing) {
    unsigned bit = static_cast<unsigned>(__builtin_ctz(missing));
    const char* n = control_name(s, bit);
    return fail(errc::not_supported, n ? n : "unnamed VMX control");
}

void drop(report& r, allowed a, std::uint32_t bit) {
    // A bit the CPU forces on cannot be dropped; the entry checks will then fail loudly.
    if (!(r.value & bit) || (a.allowed0 & bit)) return;
    r.value &= ~bit;
    if (r.asked.wanted() & bit) r.refused |= bit;
}
} // namespace

result<derived_controls> derive_all(const capabilities& caps, const requests& req) {
    derived_controls d{};
    for (unsigned i = 0; i < control_set_count; ++i) {
        auto s = static_cast<control_set>(i);
        d.sets[i] = derive(s, req.of[i], caps.controls[i]);
    }
    auto& pin_r = d.sets[0];
    auto& proc_r = d.sets[1];
    auto& proc2_r = d.sets[2];

    if (!(proc2_r.value & bits(proc2::ept))) {
        drop(proc2_r, caps.of(control_set::proc2), bits(proc2::unrestricted_guest));
        drop(proc2_r, caps.of(control_set::proc2), bits(proc2::pml));
        drop(proc2_r, caps.of(control_set::proc2), bits(proc2::ept_violation_ve));
        drop(proc2_r, caps.of(control_set::proc2), bits(proc2::mode_based_ept_execute));
    }
    if (!(pin_r.value & bits(pin::nmi_exiting))) drop(pin_r, caps.of(control_set::pin), bits(pin::virtual_nmis));
    if (!(pin_r.value & bits(pin::virtual_nmis)))
        drop(proc_r, caps.of(control_set::proc), bits(proc::nmi_window_exiting));

    // Secondary controls are active exactly when some secondary bit is in use.
    std::uint32_t act = bits(proc::secondary_controls);
    if (proc2_r.value) {
        if (caps.of(control_set::proc).allowed1 & act) proc_r.value |= act;
        else proc2_r.refused |= proc2_r.value, proc2_r.value = 0;
    } else if (!(caps.of(control_set::proc).allowed0 & act)) {
        proc_r.value &= ~act;
    }

    for (auto& r : d.sets)
        if (r.missing()) return refused_error(r.set, r.missing());
    return d;
}

void print(const fmt::sink& out, const report& r) {
    auto list = [&](const char* label, std::uint32_t mask) {
        if (!mask) return;
        fmt::format(out, " {}:", label);
        for (unsigned b = 0; b < 32; ++b) {
            if (!(mask & (1u << b))) continue;
            const char* n = control_name(r.set, b);
            if (n) fmt::format(out, " [{}]", n);
            else fmt::format(out, " [bit {}]", b);
        }
    };
    fmt::format(out, "{} controls = {:#010x};", name(r.set), r.value);
    list("granted", r.granted());
    list("refused", r.refused);
    list("forced", r.forced);
    fmt::format(out, "\n");
}

result<vmxon_plan> plan_vmxon(std::uint32_t cpuid1_ecx, const capability_msrs& m, std::uint64_t cr0,
                              std::uint64_t cr4) {
    if (!(cpuid1_ecx & (1u << 5))) return fail(errc::not_supported, "CPUID.1:ECX.VMX is 0");
    vmxon_plan p{};
    const std::uint64_t fc = m.feature_control;
    if (fc & feature_control::lock) {
        if (!(fc & feature_control::vmxon_outside_smx))
            return fail(errc::permission, "IA32_FEATURE_CONTROL locked with VMXON outside SMX disabled");
    } else {
        p.write_feature_control = true;
        p.feature_control = fc | feature_control::lock | feature_control::vmxon_outside_smx;
    }
    basic_info b{m.basic};
    p.revision = b.revision();
    p.region_size = b.region_size();
    if (p.region_size == 0 || p.region_size > 4096)
        return fail(errc::bad_format, "IA32_VMX_BASIC region size outside 1..4096");
    if (b.memory_type() != 6) return fail(errc::not_supported, "VMCS memory type is not write-back");
    capabilities c{};
    c.cr0_fixed0 = m.cr0_fixed0;
    c.cr0_fixed1 = m.cr0_fixed1;
    c.cr4_fixed0 = m.cr4_fixed0;
    c.cr4_fixed1 = m.cr4_fixed1;
    p.cr0 = cr0_fixed(c, false).apply(cr0);
    p.cr4 = cr4_fixed(c).apply(cr4 | x86::cr4::vmxe);
    if (cr0_fixed(c, false).violations(p.cr0) || cr4_fixed(c).violations(p.cr4) || !(p.cr4 & x86::cr4::vmxe))
        return fail(errc::bad_format, "CR0/CR4 fixed-bit MSRs contradict each other or forbid CR4.VMXE");
    return p;
}

} // namespace hv::vmx
