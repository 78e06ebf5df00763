// The virtual CPU a guest sees: CPUID as the host's minus what libhv does not give a
// guest, plus a hypervisor leaf; the MSRs a kernel touches at boot. Portable (the
// filtering and the MSR file are host-tested); vm::guest installs the handlers.
//
// CPUID (leaf: register bits)                       guest sees
//   1: ECX.VMX(5) SMX(6)                            0    (no nested virtualization)
//   1: ECX.MONITOR(3), leaf 5, 0x80000001: ECX.MONITORX(29)   0    (MONITOR/MWAIT(X) are not
//                                                         intercepted: a guest waiting in them
//                                                         with interrupts masked never woke;
//                                                         Linux's udelay on bochs-amd used
//                                                         MWAITX and hung after NR_IRQS)
//   1: ECX.HYPERVISOR(31)                           1
//   1: ECX.X2APIC(21), EDX.APIC(9), ECX.TSC_DEADLINE(24)   as the device model says
//   1: ECX.PCID(17)                                 0 under shadow paging
//   1: ECX.OSXSAVE(27), 7.0:ECX.OSPKE(4)            from the guest's CR4, not the host's
//   1: EBX[31:24] initial APIC ID, EBX[23:16]        the vCPU's id, the guest's vCPU count
//   6, 0xA (thermal, performance monitoring)        0
//   7.0: EDX.IBRS/STIBP(26,27) ARCH_CAPABILITIES(29) 0    (MSRs libhv does not model)
//   7.0: EBX.TSC_ADJUST(1)                          0    (IA32_TSC_ADJUST is not modelled;
//                                                         Linux reads it unguarded)
//   7.0: EBX.INVPCID(10), ECX.RDPID(22)             0    (the VMX backend does not set
//   0xD.1: EAX.XSAVES(3), 0x80000001: EDX.RDTSCP(27)      "enable INVPCID/RDTSCP/XSAVES":
//                                                         the guest would take #UD)
//   0xB, 0x1F: EDX x2APIC ID                        the vCPU's id
//   0x15 (TSC/crystal), 0x16 (MHz)                  the device model's TSC and APIC-timer
//                                                   rates when cpu_view gives them
//   0x40000000                                      "libhv libhv " (a Xen ABI overrides it)
//   0x80000001: ECX.SVM(2)                          0
//   0x8000001F (SME/SEV)                            0    (Linux's decompressor then reads
//                                                         MSR SEV_STATUS, which is not modelled)
#pragma once
#include <cstdint>
#include <optional>

namespace hv::vm {

struct cpuid_regs {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
    friend constexpr bool operator==(const cpuid_regs&, const cpuid_regs&) = default;
};

struct cpu_view {
    unsigned vcpu_id = 0;
    unsigned vcpu_count = 1;
    bool apic = false;          // a local APIC model is attached
    bool x2apic = false;
    bool tsc_deadline = false;
    bool shadow_paging = false;
    std::uint64_t guest_cr4 = 0;
    // The guest's TSC and APIC-timer rates as the device model keeps time (0: the host's
    // leaves 0x15/0x16 pass through). A kernel that trusts 0x15/0x16 over its own PIT
    // calibration (Linux on Intel models) must get the rates its devices run at.
    std::uint64_t tsc_hz = 0;
    std::uint64_t lapic_timer_hz = 0;
};

inline constexpr std::uint32_t hypervisor_leaf = 0x40000000;
// "libhv libhv " in EBX, ECX, EDX.
inline constexpr cpuid_regs libhv_signature{hypervisor_leaf, 0x6862696c, 0x696c2076, 0x20766862};

// What the guest sees for (leaf, subleaf) given what the host CPU answered.
[[nodiscard]] cpuid_regs filter_cpuid(std::uint32_t leaf, std::uint32_t subleaf, cpuid_regs host, const cpu_view& v);

// The MSRs libhv emulates for every guest (those the hardware switches pass through).
// Unknown ones: reads and writes raise #GP(0), as on a CPU without them.
class msr_file {
public:
    static constexpr std::uint32_t tsc = 0x10, apic_base = 0x1b, feature_control = 0x3a, bios_sign_id = 0x8b,
                                   mtrr_cap = 0xfe, misc_enable = 0x1a0, pat = 0x277, mtrr_def_type = 0x2ff,
                                   mcg_cap = 0x179, mcg_status = 0x17a;
    [[nodiscard]] std::optional<std::uint64_t> read(std::uint32_t msr) const;
    // false: #GP (unknown MSR, or a reserved bit set).
    [[nodiscard]] bool write(std::uint32_t msr, std::uint64_t value);

private:
    std::uint64_t pat_ = 0x0007040600070406ull;
    std::uint64_t mtrr_def_type_ = 0;
    std::uint64_t misc_enable_ = 1;  // fast strings
};

// XSETBV(0, value) as the SDM allows it given the XCR0 bits the CPU supports (CPUID
// 0xD.0 EDX:EAX): x87 always on, AVX needs SSE, AVX-512's three components all or none
// and with AVX, MPX's two together. false: #GP(0).
[[nodiscard]] constexpr bool valid_xcr0(std::uint64_t value, std::uint64_t supported) {
    constexpr std::uint64_t x87 = 1, sse = 2, avx = 4, mpx = 0x18, avx512 = 0xe0;
    if (!(value & x87) || (value & ~supported)) return false;
    if ((value & avx) && !(value & sse)) return false;
    if ((value & mpx) != 0 && (value & mpx) != mpx) return false;
    if ((value & avx512) != 0 && ((value & avx512) != avx512 || !(value & avx))) return false;
    return true;
}

// A PAT value every entry of which is a valid memory type (0, 1, 4, 5, 6, 7).
[[nodiscard]] constexpr bool valid_pat(std::uint64_t v) {
    for (unsigned i = 0; i < 8; ++i) {
        const unsigned t = (v >> (8 * i)) & 0xff;
        if (t == 2 || t == 3 || t > 7) return false;
    }
    return true;
}

} // namespace hv::vm
