// The SVM backend of hv::cpu::vcpu (metal only): EFER.SVME and VM_HSAVE_PA per physical
// CPU, one VMCB per vCPU filled from the vendor-neutral state and checked in software,
// VMRUN with VMLOAD/VMSAVE through svm/switch.S. Without NRIPS the instruction at RIP
// is decoded to skip it.
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/cpu/metal.hpp"
#include "libhv/cpu/svm/vmcb.hpp"
#include "libhv/cpu/vcpu.hpp"

namespace hv::svm {

struct cpu_context {
    capabilities caps{};
    unsigned maxphyaddr = 40;
    cpu::page_alloc_fn alloc = nullptr;
    std::uint64_t hsave_pa = 0;
    std::uint64_t host_save_pa = 0;  // VMSAVE area for the host's hidden state
    std::uint64_t host_xcr0 = 1;     // read at enable (see cpu::load_xcr0)
    std::uint64_t npt_root = 0;      // identity NPT shared by the smoke guests
};

[[nodiscard]] status enable(cpu_context& c, cpu::page_alloc_fn alloc);

struct vcpu_arch {
    cpu_context* cpu = nullptr;
    svm::vmcb* block = nullptr;
    std::uint32_t asid = 1;
    bool nrips = false;             // cpu->caps.nrips, at hand for the exit path
    std::uint64_t nested_root = 0;  // NPT PML4 of this vCPU's guest; 0: the CPU's identity map
    std::uint8_t* iopm = nullptr;   // 3 pages
    std::uint8_t* msrpm = nullptr;  // 2 pages
    bool software_checks = true;    // false: let the CPU judge the state (to compare the two)
    bool events_on = false;         // EVENTINJ, the interrupt window or a TPR threshold was set at the last entry
    bool prepared = false;          // the VMCB holds the guest (its V_TPR is the TPR)
    std::uint8_t tpr = 0;           // the TPR before prepare()
    bool timer_armed = false;       // the host timer runs for this vCPU's preemption deadline
    bool guarded_stay = false;      // a guarded vCPU's exit handler decided to enter again
    // The lean loop (leaf handlers) holds the guest's VMLOAD/VMSAVE state in the CPU: the
    // VMCB's FS/GS/TR/LDTR and syscall MSRs are stale until a VMSAVE.
    bool hidden_in_cpu = false;
    // Shadow paging instead of NPT: see backend_ops::set_paging_root. Set before prepare.
    // The VMCB holds the real CR0/CR3/CR4/EFER; the guest sees these (SVM has no read
    // shadows: every CR0/CR3/CR4 access is intercepted).
    bool shadow_paging = false;
    std::uint64_t shadow_root = 0;
    std::uint64_t guest_cr0 = 0, guest_cr3 = 0, guest_cr4 = 0, guest_efer = 0;
    char message[160] = {};
};

[[nodiscard]] status create(vcpu_arch& a, cpu_context& c, std::uint32_t asid);
extern const cpu::backend_ops ops;

} // namespace hv::svm
