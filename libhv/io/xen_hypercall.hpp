// The hypercall interface as an HVM/PVH Xen guest finds it:
//
//   CPUID 0x40000000..0x40000004   "XenVMMXenVMM", version, hypercall-page MSR, HVM info
//   WRMSR 0x40000000 <- gpa|idx    fills the guest page at gpa with 32-byte stubs,
//                                  stub i = "mov $i, %eax; vmcall|vmmcall; ret"
//   hypercall i                    rax = i; args in rdi, rsi, rdx, r10, r8 (64-bit guest)
//                                  or eax = i; ebx, ecx, edx, esi, edi (32-bit guest);
//                                  result in rax/eax: >= 0, or a negated Xen errno
//
// dispatch_hypercall() is the single entry point the cpu layer calls on a VMCALL/VMMCALL
// exit. It reads arguments only through guest_access and never trusts them: any number,
// pointer, length, index or state yields a defined return value.
#pragma once
#include <cstdint>
#include <span>
#include "libhv/core/result.hpp"
#include "libhv/io/xen_domain.hpp"

namespace hv::xen {

inline constexpr std::uint32_t version_major = 4;
inline constexpr std::uint32_t version_minor = 17;
inline constexpr std::uint32_t cpuid_max_leaf = cpuid_base + 4;
inline constexpr unsigned hypercall_stub_size = 32;

enum class guest_mode : std::uint8_t { bits64, bits32 };
enum class cpu_vendor : std::uint8_t { intel, amd };

struct hypercall_args {
    std::uint64_t nr = 0;
    std::uint64_t arg[5] = {};
    guest_mode mode = guest_mode::bits64;
};

constexpr hypercall_args hypercall_args_64(std::uint64_t rax, std::uint64_t rdi, std::uint64_t rsi,
                                           std::uint64_t rdx, std::uint64_t r10, std::uint64_t r8) {
    return {rax, {rdi, rsi, rdx, r10, r8}, guest_mode::bits64};
}
constexpr hypercall_args hypercall_args_32(std::uint32_t eax, std::uint32_t ebx, std::uint32_t ecx,
                                           std::uint32_t edx, std::uint32_t esi, std::uint32_t edi) {
    return {eax, {ebx, ecx, edx, esi, edi}, guest_mode::bits32};
}

// Runs hypercall `a` for vCPU `vcpu` of `d`. Returns the value for rax (a 32-bit guest
// takes the low half into eax).
std::int64_t dispatch_hypercall(domain& d, std::uint32_t vcpu, guest_access& mem,
                                const hypercall_args& a);

// The hypercalls whose arguments and result are registers only, the same in 64-bit and
// 32-bit guests (xen_version's version and page size, sched_op yield): answered into
// `rc` without decoding the other arguments or reaching guest memory. False: not one of
// them, dispatch_hypercall's. `nr` is rax (eax zero-extended for a 32-bit guest), `arg0`
// the first argument register zero-extended; vcpu < d.nr_vcpus(). dispatch_hypercall
// asks it first, so these calls have this one definition.
inline bool register_only_hypercall(domain& d, std::uint32_t vcpu, std::uint64_t nr, std::uint64_t arg0,
                                    std::int64_t& rc) {
    const auto cmd = static_cast<std::uint32_t>(arg0);
    if (nr == hc::xen_version) {
        if (cmd == xenver_version) {
            rc = static_cast<std::int64_t>(version_major << 16 | version_minor);
            return true;
        }
        if (cmd == xenver_pagesize) {
            rc = page_size;
            return true;
        }
        return false;
    }
    if (nr == hc::sched_op && cmd == schedop_yield) {
        d.plat().yield(vcpu);
        rc = 0;
        return true;
    }
    return false;
}

struct cpuid_result {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
// Xen's leaves for `leaf` in [0x40000000, 0x40000100); false for any other leaf (not ours).
bool xen_cpuid(std::uint32_t leaf, std::uint32_t subleaf, domid_t dom, std::uint32_t vcpu,
               cpuid_result& out);

// The 4 KiB hypercall page (pure function of the vendor).
void write_hypercall_page(std::span<std::uint8_t, page_size> page, cpu_vendor v);
// Guest WRMSR to hypercall_msr: fills the page at the given guest-physical address.
// An error means the cpu layer should inject #GP.
status hypercall_msr_write(domain& d, std::uint64_t value, cpu_vendor v);

} // namespace hv::xen
