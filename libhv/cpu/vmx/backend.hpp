// The VMX backend of hv::cpu::vcpu (metal only): VMXON per physical CPU, one VMCS per
// vCPU built as a vmcs_image, checked in software, then written; VMLAUNCH/VMRESUME
// through vmx/switch.S.
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/cpu/metal.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/cpu/vmx/controls.hpp"
#include "libhv/cpu/vmx/vmcs_image.hpp"

namespace hv::vmx {

// One per physical CPU.
struct cpu_context {
    capabilities caps{};
    derived_controls controls{};
    unsigned maxphyaddr = 36;
    cpu::page_alloc_fn alloc = nullptr;
    std::uint64_t vmxon_pa = 0;
    std::uint64_t current_vmcs = 0;
    std::uint64_t ept_root = 0;  // identity EPT shared by the smoke guests
    std::uint64_t host_xcr0 = 1;  // read at enable (see cpu::load_xcr0)
    // Whose backend loop runs now (handlers never switch fibers: request_yield() is
    // deferred), told by load_current that its VMCS stopped being current.
    cpu::vcpu* in_loop = nullptr;
};

// What libhv asks of the CPU's controls.
requests default_requests();

// Probe, derive controls, VMXON. Prints nothing; the report is in c.controls.
[[nodiscard]] status enable(cpu_context& c, cpu::page_alloc_fn alloc);

struct vcpu_arch {
    cpu_context* cpu = nullptr;
    std::uint64_t vmcs_pa = 0;
    std::uint16_t vpid = 1;
    std::uint64_t nested_root = 0;  // EPT PML4 of this vCPU's guest; 0: the CPU's identity map
    bool launched = false;
    std::uint32_t proc_in_vmcs = 0;  // primary controls as last written (window bits vary)
    std::uint32_t proc_base = 0;     // primary controls without the window bits
    // CR8: a TPR shadow (the virtual-APIC page's VTPR at 0x80) where the CPU offers it,
    // otherwise CR8-load/store exits and `tpr`. Set cr8_exiting before prepare() to use
    // the exits although the CPU has a TPR shadow (to test that path).
    bool cr8_exiting = false;
    std::uint8_t tpr = 0;
    std::uint8_t tpr_threshold = 0;      // as last written to the VMCS
    std::uint8_t* virtual_apic = nullptr;  // one page
    bool windows_on = false;         // an interrupt or NMI window was requested at the last entry
    bool timer_armed = false;        // a preemption deadline was set at the last entry
    // Preemption through the host LAPIC timer (cpu::host_timer) instead of the
    // VMX-preemption timer: forced where the CPU lacks the control; set it before
    // prepare() to take that path although the CPU has the timer (to test it).
    bool host_timer_preemption = false;
    std::uint8_t* io_bitmaps = nullptr;  // 2 pages: A then B
    std::uint8_t* msr_bitmap = nullptr;
    bool software_checks = true;  // false: let the CPU judge the state (to compare the two)
    // Shadow paging instead of EPT: see backend_ops::set_paging_root. Set before prepare.
    bool shadow_paging = false;
    std::uint64_t shadow_root = 0;  // the real CR3
    std::uint64_t guest_cr3 = 0;    // the CR3 the guest sees
    std::uint64_t guest_efer = 0;   // the EFER the guest sees (the real one has NXE)
    // A shadow-paged guest in real mode runs in virtual-8086 mode (backend.cpp, "vm86").
    bool vm86 = false;
    std::uint64_t vm86_iopl = 0;    // the guest's RFLAGS.IOPL (vm86 runs with 3)
    cpu::table_register vm86_idtr{};  // the guest's IDTR (the VMCS's has limit 0 in vm86)
    vmcs_image image;
    char message[192] = {};  // the last failure, when a status points here
};

[[nodiscard]] status create(vcpu_arch& a, cpu_context& c, std::uint16_t vpid);
extern const cpu::backend_ops ops;

} // namespace hv::vmx
