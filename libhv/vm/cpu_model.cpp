#include "libhv/vm/cpu_model.hpp"

namespace hv::vm {

namespace {
constexpr std::uint32_t bit(unsigned n) { return 1u << n; }
} // namespace

cpuid_regs filter_cpuid(std::uint32_t leaf, std::uint32_t subleaf, cpuid_regs r, const cpu_view& v) {
    constexpr std::uint64_t cr4_osxsave = 1ull << 18, cr4_pke = 1ull << 22;
    switch (leaf) {
    case 1:
        r.ecx &= ~(bit(3) | bit(5) | bit(6) | bit(21) | bit(24) | bit(27));
        r.ecx |= bit(31);
        if (v.x2apic) r.ecx |= bit(21);
        if (v.tsc_deadline) r.ecx |= bit(24);
        if (v.shadow_paging) r.ecx &= ~bit(17);
        if (v.guest_cr4 & cr4_osxsave) r.ecx |= bit(27);
        r.edx = v.apic ? r.edx | bit(9) : r.edx & ~bit(9);
        r.ebx = (r.ebx & 0xffff) | (v.vcpu_count & 0xff) << 16 | (v.vcpu_id & 0xff) << 24;
        break;
    case 5:
    case 6:
    case 0xa: r = {}; break;
    case 7:
        if (subleaf == 0) {
            r.ebx &= ~(bit(1) | bit(10));
            r.ecx &= ~bit(22);
            r.edx &= ~(bit(26) | bit(27) | bit(29));
            r.ecx = (v.guest_cr4 & cr4_pke) ? r.ecx | bit(4) : r.ecx & ~bit(4);
        }
        break;
    case 0xb:
    case 0x1f: r.edx = v.vcpu_id; break;
    case hypervisor_leaf: r = libhv_signature; break;
    case 0xd:
        if (subleaf == 1) r.eax &= ~bit(3);
        break;
    case 0x15:
        // TSC = crystal (ECX) * EBX / EAX; the crystal is the APIC timer's input clock.
        // The ratio in lowest terms: Linux multiplies crystal kHz by EBX in 32 bits.
        if (v.tsc_hz && v.lapic_timer_hz && v.lapic_timer_hz <= 0xffffffffull) {
            std::uint64_t a = v.tsc_hz, b = v.lapic_timer_hz;
            while (b) {
                const std::uint64_t t = a % b;
                a = b;
                b = t;
            }
            const std::uint64_t num = v.tsc_hz / a, den = v.lapic_timer_hz / a;
            if (num <= 0xffffffffull)
                r = {static_cast<std::uint32_t>(den), static_cast<std::uint32_t>(num),
                     static_cast<std::uint32_t>(v.lapic_timer_hz), 0};
        }
        break;
    case 0x16:
        if (v.tsc_hz && v.lapic_timer_hz)
            r = {static_cast<std::uint32_t>(v.tsc_hz / 1000000), static_cast<std::uint32_t>(v.tsc_hz / 1000000),
                 static_cast<std::uint32_t>(v.lapic_timer_hz / 1000000), 0};
        break;
    case 0x8000001f: r = {}; break;  // SME/SEV: a guest that sees them reads SEV_STATUS
    case 0x80000001:
        r.ecx &= ~(bit(2) | bit(29));
        r.edx &= ~bit(27);
        break;
    default:
        if (leaf > hypervisor_leaf && leaf <= hypervisor_leaf + 0xff) r = {};
        break;
    }
    return r;
}

std::optional<std::uint64_t> msr_file::read(std::uint32_t msr) const {
    switch (msr) {
    case apic_base: return 0xfee00000ull | 1u << 11 | 1u << 8;  // xAPIC enabled, BSP
    case feature_control: return 1;                            // locked, VMX off
    case bios_sign_id: return 0;
    case mtrr_cap: return 0;                                   // no MTRRs: memory types come from PAT
    case mtrr_def_type: return mtrr_def_type_;
    case misc_enable: return misc_enable_;
    case pat: return pat_;
    case mcg_cap:
    case mcg_status: return 0;
    default: return std::nullopt;
    }
}

bool msr_file::write(std::uint32_t msr, std::uint64_t value) {
    switch (msr) {
    case pat:
        if (!valid_pat(value)) return false;
        pat_ = value;
        return true;
    case mtrr_def_type:
        if (value & ~0xcffull) return false;
        mtrr_def_type_ = value;
        return true;
    case misc_enable: misc_enable_ = value; return true;
    case bios_sign_id:
    case mcg_status: return true;
    case apic_base: return value == *read(apic_base);
    default: return false;
    }
}

} // namespace hv::vm
