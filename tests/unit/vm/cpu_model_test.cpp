#include "libhv/vm/cpu_model.hpp"
#include <doctest/doctest.h>
#include <string_view>

using namespace hv::vm;

namespace {
constexpr std::uint32_t bit(unsigned n) { return 1u << n; }
} // namespace

TEST_CASE("leaf 1 hides VMX, SMX and the host's OSXSAVE, shows the hypervisor and the vCPU's APIC id") {
    const cpuid_regs host{0x50654, 0x00100800, bit(5) | bit(6) | bit(27) | bit(21) | bit(0), bit(9) | bit(0)};
    cpu_view v;
    v.vcpu_id = 3;
    v.vcpu_count = 4;
    const cpuid_regs r = filter_cpuid(1, 0, host, v);
    CHECK(r.eax == host.eax);
    CHECK((r.ecx & (bit(5) | bit(6) | bit(27) | bit(21))) == 0);
    CHECK((r.ecx & bit(31)) != 0);
    CHECK((r.ecx & bit(0)) != 0);
    CHECK((r.edx & bit(9)) == 0);  // no APIC model attached
    CHECK((r.ebx >> 24) == 3);
    CHECK(((r.ebx >> 16) & 0xff) == 4);
    CHECK((r.ebx & 0xffff) == 0x0800);

    v.apic = v.x2apic = v.tsc_deadline = true;
    v.guest_cr4 = 1ull << 18;
    const cpuid_regs a = filter_cpuid(1, 0, host, v);
    CHECK((a.ecx & (bit(21) | bit(24) | bit(27))) == (bit(21) | bit(24) | bit(27)));
    CHECK((a.edx & bit(9)) != 0);
}

TEST_CASE("PCID is hidden under shadow paging only") {
    const cpuid_regs host{0, 0, bit(17), 0};
    cpu_view v;
    CHECK((filter_cpuid(1, 0, host, v).ecx & bit(17)) != 0);
    v.shadow_paging = true;
    CHECK((filter_cpuid(1, 0, host, v).ecx & bit(17)) == 0);
}

TEST_CASE("SVM is hidden, the hypervisor leaves name libhv and end at 0x40000000") {
    cpu_view v;
    CHECK((filter_cpuid(0x80000001, 0, {0, 0, bit(2) | bit(0), 0}, v).ecx) == bit(0));
    const cpuid_regs sig = filter_cpuid(hypervisor_leaf, 0, {1, 2, 3, 4}, v);
    char name[13] = {};
    __builtin_memcpy(name, &sig.ebx, 4);
    __builtin_memcpy(name + 4, &sig.ecx, 4);
    __builtin_memcpy(name + 8, &sig.edx, 4);
    CHECK(std::string_view(name) == "libhv libhv ");
    CHECK(sig.eax == hypervisor_leaf);
    CHECK(filter_cpuid(hypervisor_leaf + 1, 0, {1, 2, 3, 4}, v) == cpuid_regs{});
    CHECK(filter_cpuid(0xa, 0, {1, 2, 3, 4}, v) == cpuid_regs{});
    CHECK(filter_cpuid(0xb, 1, {1, 2, 3, 4}, cpu_view{5, 8}).edx == 5);
}

TEST_CASE("leaf 7 hides speculation-control MSRs and follows the guest's CR4.PKE") {
    cpu_view v;
    const cpuid_regs host{0, 0, bit(4), bit(26) | bit(27) | bit(29) | bit(10)};
    const cpuid_regs r = filter_cpuid(7, 0, host, v);
    CHECK(r.edx == bit(10));
    CHECK((r.ecx & bit(4)) == 0);
    v.guest_cr4 = 1ull << 22;
    CHECK((filter_cpuid(7, 0, host, v).ecx & bit(4)) != 0);
    CHECK(filter_cpuid(7, 1, host, v) == host);
}

TEST_CASE("the MSR file keeps PAT and MTRRdefType, refuses bad values and unknown MSRs") {
    msr_file m;
    CHECK(m.read(msr_file::pat) == 0x0007040600070406ull);
    CHECK(m.write(msr_file::pat, 0x0007010600070106ull));
    CHECK(m.read(msr_file::pat) == 0x0007010600070106ull);
    CHECK_FALSE(m.write(msr_file::pat, 0x02));  // type 2 is reserved
    CHECK(m.read(msr_file::pat) == 0x0007010600070106ull);
    CHECK(m.write(msr_file::mtrr_def_type, 0xc06));
    CHECK_FALSE(m.write(msr_file::mtrr_def_type, 0x1000));
    CHECK(m.read(msr_file::mtrr_def_type) == 0xc06);
    CHECK(m.read(msr_file::feature_control) == 1);
    CHECK_FALSE(m.read(0x48).has_value());
    CHECK_FALSE(m.write(0x48, 0));
    CHECK(m.write(msr_file::apic_base, *m.read(msr_file::apic_base)));
    CHECK_FALSE(m.write(msr_file::apic_base, 0));
}

// What Debian's Linux 6.1 tripped over on bochs-intel: IA32_TSC_ADJUST read unguarded
// (#GP), INVPCID executed (#UD without "enable INVPCID").
TEST_CASE("instructions and MSRs the VMX backend does not enable are hidden") {
    cpu_view v;
    const cpuid_regs l7 = filter_cpuid(7, 0, {0, bit(1) | bit(10) | bit(0), bit(22) | bit(1), 0}, v);
    CHECK(l7.ebx == bit(0));
    CHECK(l7.ecx == bit(1));
    CHECK(filter_cpuid(0xd, 1, {bit(3) | bit(1), 0, 0, 0}, v).eax == bit(1));
    CHECK(filter_cpuid(0xd, 0, {bit(3) | bit(1), 0, 0, 0}, v).eax == (bit(3) | bit(1)));
    CHECK(filter_cpuid(0x80000001, 0, {0, 0, 0, bit(27) | bit(29)}, v).edx == bit(29));
}

TEST_CASE("XSETBV: the XCR0 values the SDM allows") {
    const std::uint64_t skx = 0xff;  // x87 SSE AVX MPX(2) AVX-512(3)
    CHECK(valid_xcr0(1, skx));
    CHECK(valid_xcr0(3, skx));
    CHECK(valid_xcr0(7, skx));
    CHECK(valid_xcr0(0xe7, skx));
    CHECK(valid_xcr0(0x1f, skx));
    CHECK(!valid_xcr0(0, skx));        // x87 off
    CHECK(!valid_xcr0(2, skx));
    CHECK(!valid_xcr0(5, skx));        // AVX without SSE
    CHECK(!valid_xcr0(0x0b, skx));     // one MPX component
    CHECK(!valid_xcr0(0x67, skx));     // two of three AVX-512 components
    CHECK(!valid_xcr0(0xe3, skx));     // AVX-512 without AVX
    CHECK(!valid_xcr0(7, 3));          // AVX not supported
    CHECK(!valid_xcr0(0x201, 0x3));    // bit 9 (PKRU) not offered here
}

// Bochs' Skylake-X says 3500 MHz in leaf 0x16 while its devices run on libhv's 1 GHz
// clock: Linux believed the leaf and its seconds lasted 3.5 device seconds.
TEST_CASE("leaves 0x15 and 0x16 give the device model's TSC and APIC-timer rates") {
    cpu_view v;
    const cpuid_regs host15{2, 292, 24000000, 0}, host16{3500, 3500, 100, 0};
    CHECK(filter_cpuid(0x15, 0, host15, v) == host15);  // no rates given: the host's
    CHECK(filter_cpuid(0x16, 0, host16, v) == host16);
    v.tsc_hz = 2000000000;
    v.lapic_timer_hz = 1000000000;
    const cpuid_regs r = filter_cpuid(0x15, 0, host15, v);
    CHECK(std::uint64_t{r.ecx} * r.ebx / r.eax == v.tsc_hz);
    CHECK(r.ecx == v.lapic_timer_hz);
    CHECK(r.eax == 1);  // lowest terms: Linux computes crystal kHz * EBX in 32 bits
    CHECK(r.ebx == 2);
    CHECK(std::uint32_t(r.ecx / 1000 * r.ebx) / r.eax == v.tsc_hz / 1000);
    CHECK(filter_cpuid(0x16, 0, host16, v) == cpuid_regs{2000, 2000, 1000, 0});
}

TEST_CASE("memory encryption (leaf 0x8000001F) is hidden") {
    CHECK(filter_cpuid(0x8000001f, 0, {0x1a, 0x16f, 0x1fd, 1}, cpu_view{}) == cpuid_regs{});
}

TEST_CASE("MONITOR/MWAIT and MONITORX/MWAITX are hidden (not intercepted, a masked wait never wakes)") {
    cpu_view v{};
    CHECK((filter_cpuid(1, 0, {0, 0, bit(3) | bit(0), 0}, v).ecx & (bit(3) | bit(0))) == bit(0));
    CHECK(filter_cpuid(5, 0, {0x40, 0x40, 3, 0x1120}, v) == cpuid_regs{});
    CHECK((filter_cpuid(0x80000001, 0, {0, 0, bit(29) | bit(0), 0}, v).ecx) == bit(0));
}
