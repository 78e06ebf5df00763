// Capability values of the Bochs 2.7 CPU models libhv targets, recorded by running
// tests/unit/cpu/probe/probe.sh (a boot sector doing CPUID and RDMSR) on Debian 12's
// bochs 2.7; the raw output is kept beside it in tests/unit/cpu/probe/<model>.txt.
#pragma once
#include <cstdint>
#include "libhv/cpu/vmx/controls.hpp"

namespace bochs {
// cpu: model=corei7_skylake_x (probe/corei7_skylake_x.txt)
inline constexpr std::uint32_t skylake_x_cpuid1_ecx = 0x77FAF3BF;
inline constexpr hv::vmx::capability_msrs skylake_x = {
    .feature_control = 0x0000000000000005,
    .basic = 0x00D810000000002B,
    .pinbased = 0x0000007F00000016,
    .procbased = 0xF7F9FFFE0401E172,
    .exit = 0x007FFFFF00036DFF,
    .entry = 0x0000FFFF000011FF,
    .misc = 0x00000000600401E0,
    .cr0_fixed0 = 0x0000000080000021,
    .cr0_fixed1 = 0x00000000FFFFFFFF,
    .cr4_fixed0 = 0x0000000000002000,
    .cr4_fixed1 = 0x00000000003727FF,
    .vmcs_enum = 0x0000000000000034,
    .procbased2 = 0x02177FFF00000000,
    .ept_vpid_cap = 0x00000F0106334141,
    .true_pinbased = 0x0000007F00000016,
    .true_procbased = 0xF7F9FFFE04006172,
    .true_exit = 0x007FFFFF00036DFB,
    .true_entry = 0x0000FFFF000011FB,
    .vmfunc = 0x0000000000000001,
};

// cpu: model=corei7_haswell_4770 (probe/corei7_haswell_4770.txt)
inline constexpr std::uint32_t haswell_4770_cpuid1_ecx = 0x77FAF3BF;
inline constexpr hv::vmx::capability_msrs haswell_4770 = {
    .feature_control = 0x0000000000000005,
    .basic = 0x00D810000000002B,
    .pinbased = 0x0000007F00000016,
    .procbased = 0xF7F9FFFE0401E172,
    .exit = 0x007FFFFF00036DFF,
    .entry = 0x0000FFFF000011FF,
    .misc = 0x00000000200401E0,
    .cr0_fixed0 = 0x0000000080000021,
    .cr0_fixed1 = 0x00000000FFFFFFFF,
    .cr4_fixed0 = 0x0000000000002000,
    .cr4_fixed1 = 0x00000000001727FF,
    .vmcs_enum = 0x0000000000000034,
    .procbased2 = 0x00047FFF00000000,
    .ept_vpid_cap = 0x00000F0106334141,
    .true_pinbased = 0x0000007F00000016,
    .true_procbased = 0xF7F9FFFE04006172,
    .true_exit = 0x007FFFFF00036DFB,
    .true_entry = 0x0000FFFF000011FB,
    .vmfunc = 0x0000000000000001,
};

// cpu: model=ryzen (probe/ryzen.txt): CPUID 0x80000001 ECX, 0x8000000A EAX EBX ECX EDX
inline constexpr std::uint32_t ryzen_ext1_ecx = 0x35C223FF;
inline constexpr std::uint32_t ryzen_svm_leaf[4] = {0x00000001, 0x00008000, 0x00000000, 0x0000044F};

// cpu: model=phenom_8650_toliman (probe/phenom_8650_toliman.txt): CPUID 0x80000001 ECX, 0x8000000A EAX EBX ECX EDX
inline constexpr std::uint32_t phenom_ext1_ecx = 0x000007FF;
inline constexpr std::uint32_t phenom_svm_leaf[4] = {0x00000001, 0x00000040, 0x00000000, 0x00000007};

} // namespace bochs
