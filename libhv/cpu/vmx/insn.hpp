// VMX instructions (metal only). Each reports the SDM 30.2 conventions: CF=1 is
// VMfailInvalid (no current VMCS), ZF=1 is VMfailValid (the VM-instruction error field says why).
#pragma once
#include <cstdint>
#include "libhv/cpu/vmx/vmcs.hpp"

#if !HV_HOSTED
namespace hv::vmx {

enum class insn_status : std::uint8_t { ok, fail_invalid, fail_valid };

namespace detail {
inline insn_status flags_to_status(bool cf, bool zf) {
    return cf ? insn_status::fail_invalid : zf ? insn_status::fail_valid : insn_status::ok;
}
} // namespace detail

[[nodiscard]] inline insn_status vmxon(std::uint64_t region_pa) {
    bool cf, zf;
    asm volatile("vmxon %[pa]" : "=@ccc"(cf), "=@ccz"(zf) : [pa] "m"(region_pa) : "memory");
    return detail::flags_to_status(cf, zf);
}
inline void vmxoff() { asm volatile("vmxoff" ::: "cc", "memory"); }

[[nodiscard]] inline insn_status vmclear(std::uint64_t vmcs_pa) {
    bool cf, zf;
    asm volatile("vmclear %[pa]" : "=@ccc"(cf), "=@ccz"(zf) : [pa] "m"(vmcs_pa) : "memory");
    return detail::flags_to_status(cf, zf);
}
[[nodiscard]] inline insn_status vmptrld(std::uint64_t vmcs_pa) {
    bool cf, zf;
    asm volatile("vmptrld %[pa]" : "=@ccc"(cf), "=@ccz"(zf) : [pa] "m"(vmcs_pa) : "memory");
    return detail::flags_to_status(cf, zf);
}

[[nodiscard]] inline insn_status vmread(std::uint32_t enc, std::uint64_t& out) {
    bool cf, zf;
    asm volatile("vmread %[enc], %[val]" : [val] "=rm"(out), "=@ccc"(cf), "=@ccz"(zf) : [enc] "r"(std::uint64_t{enc}));
    return detail::flags_to_status(cf, zf);
}
[[nodiscard]] inline insn_status vmwrite(std::uint32_t enc, std::uint64_t v) {
    bool cf, zf;
    asm volatile("vmwrite %[val], %[enc]" : "=@ccc"(cf), "=@ccz"(zf) : [enc] "r"(std::uint64_t{enc}), [val] "rm"(v) : "memory");
    return detail::flags_to_status(cf, zf);
}

// Width-typed accessors for a current VMCS; a failing read yields 0 (the field exists
// on every processor libhv supports, so failure means "no current VMCS", checked at setup).
template <field F>
inline value_t<F> read() {
    std::uint64_t v = 0;
    (void)vmread(raw(F), v);
    return static_cast<value_t<F>>(v);
}
inline std::uint64_t read(field f) {
    std::uint64_t v = 0;
    (void)vmread(raw(f), v);
    return v & value_mask(f);
}
template <field F>
[[nodiscard]] inline insn_status write(value_t<F> v) { return vmwrite(raw(F), v); }
[[nodiscard]] inline insn_status write(field f, std::uint64_t v) { return vmwrite(raw(f), v); }

struct invept_desc { std::uint64_t eptp, reserved; };
struct invvpid_desc { std::uint64_t vpid, linear; };
enum class invept_type : std::uint64_t { single_context = 1, all_context = 2 };
enum class invvpid_type : std::uint64_t { individual_address = 0, single_context = 1, all_context = 2, single_context_keep_globals = 3 };

[[nodiscard]] inline insn_status invept(invept_type t, invept_desc d) {
    bool cf, zf;
    asm volatile("invept %[d], %[t]" : "=@ccc"(cf), "=@ccz"(zf) : [d] "m"(d), [t] "r"(static_cast<std::uint64_t>(t)) : "memory");
    return detail::flags_to_status(cf, zf);
}
[[nodiscard]] inline insn_status invvpid(invvpid_type t, invvpid_desc d) {
    bool cf, zf;
    asm volatile("invvpid %[d], %[t]" : "=@ccc"(cf), "=@ccz"(zf) : [d] "m"(d), [t] "r"(static_cast<std::uint64_t>(t)) : "memory");
    return detail::flags_to_status(cf, zf);
}

} // namespace hv::vmx
#endif
