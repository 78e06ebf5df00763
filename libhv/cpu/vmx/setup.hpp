// Filling a vmcs_image from libhv's vendor-neutral state: controls, host state, guest
// state with CR0/CR4 shadowing. Pure: the metal side commits the image with vmwrite.
#pragma once
#include <cstdint>
#include "libhv/cpu/state.hpp"
#include "libhv/cpu/vmx/controls.hpp"
#include "libhv/cpu/vmx/vmcs_image.hpp"

namespace hv::vmx {

// The host state VM exits return to (read on metal from the running CPU).
struct host_state {
    std::uint64_t cr0, cr3, cr4;
    std::uint16_t es, cs, ss, ds, fs, gs, tr;
    std::uint64_t fs_base, gs_base, tr_base, gdtr_base, idtr_base;
    std::uint32_t sysenter_cs;
    std::uint64_t sysenter_esp, sysenter_eip;
    std::uint64_t efer, pat;
    std::uint64_t rsp, rip;
};

// A CR the guest sees through a read shadow: bits in `mask` are owned by libhv (their
// writes exit); reads of them return `shadow`; the CPU runs with `actual`.
struct shadowed_cr {
    std::uint64_t actual, mask, shadow;
};
// `owned` adds bits libhv wants to see written besides the fixed ones.
constexpr shadowed_cr shadow_cr(fixed_bits fixed, std::uint64_t guest_value, std::uint64_t owned = 0) {
    const std::uint64_t mask = fixed.must_be1 | ~fixed.may_be1 | owned;
    return {fixed.apply(guest_value), mask, guest_value};
}

void put_controls(vmcs_image& v, const derived_controls& d);
void put_host(vmcs_image& v, const host_state& h);
// Needs the controls already in the image (unrestricted guest decides the CR0 fixed
// bits); sets the IA-32e-mode-guest entry control from EFER.LMA.
void put_guest(vmcs_image& v, const cpu::guest_state& g, const capabilities& caps);

} // namespace hv::vmx
