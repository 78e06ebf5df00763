#include "libhv/cpu/vmx/exit.hpp"
#include "libhv/cpu/vmx/vmcs.hpp"

namespace hv::vmx {

std::string_view name(field f) {
    switch (f) {
#define HV_X(n, w, t, i) case field::n: return #n;
        HV_VMCS_FIELDS(HV_X)
#undef HV_X
    }
    return "?";
}

std::string_view name(exit_reason r) {
    using e = exit_reason;
    switch (r) {
    case e::exception_or_nmi: return "exception or NMI";
    case e::external_interrupt: return "external interrupt";
    case e::triple_fault: return "triple fault";
    case e::init_signal: return "INIT signal";
    case e::sipi: return "start-up IPI";
    case e::io_smi: return "I/O SMI";
    case e::other_smi: return "other SMI";
    case e::interrupt_window: return "interrupt window";
    case e::nmi_window: return "NMI window";
    case e::task_switch: return "task switch";
    case e::cpuid: return "CPUID";
    case e::getsec: return "GETSEC";
    case e::hlt: return "HLT";
    case e::invd: return "INVD";
    case e::invlpg: return "INVLPG";
    case e::rdpmc: return "RDPMC";
    case e::rdtsc: return "RDTSC";
    case e::rsm: return "RSM";
    case e::vmcall: return "VMCALL";
    case e::vmclear: return "VMCLEAR";
    case e::vmlaunch: return "VMLAUNCH";
    case e::vmptrld: return "VMPTRLD";
    case e::vmptrst: return "VMPTRST";
    case e::vmread: return "VMREAD";
    case e::vmresume: return "VMRESUME";
    case e::vmwrite: return "VMWRITE";
    case e::vmxoff: return "VMXOFF";
    case e::vmxon: return "VMXON";
    case e::cr_access: return "control-register access";
    case e::dr_access: return "MOV DR";
    case e::io_instruction: return "I/O instruction";
    case e::rdmsr: return "RDMSR";
    case e::wrmsr: return "WRMSR";
    case e::invalid_guest_state: return "VM-entry failure: invalid guest state";
    case e::msr_loading: return "VM-entry failure: MSR loading";
    case e::mwait: return "MWAIT";
    case e::monitor_trap_flag: return "monitor trap flag";
    case e::monitor: return "MONITOR";
    case e::pause: return "PAUSE";
    case e::machine_check: return "VM-entry failure: machine-check event";
    case e::tpr_below_threshold: return "TPR below threshold";
    case e::apic_access: return "APIC access";
    case e::virtualized_eoi: return "virtualized EOI";
    case e::gdtr_idtr_access: return "access to GDTR or IDTR";
    case e::ldtr_tr_access: return "access to LDTR or TR";
    case e::ept_violation: return "EPT violation";
    case e::ept_misconfig: return "EPT misconfiguration";
    case e::invept: return "INVEPT";
    case e::rdtscp: return "RDTSCP";
    case e::preemption_timer: return "VMX-preemption timer expired";
    case e::invvpid: return "INVVPID";
    case e::wbinvd: return "WBINVD or WBNOINVD";
    case e::xsetbv: return "XSETBV";
    case e::apic_write: return "APIC write";
    case e::rdrand: return "RDRAND";
    case e::invpcid: return "INVPCID";
    case e::vmfunc: return "VMFUNC";
    case e::encls: return "ENCLS";
    case e::rdseed: return "RDSEED";
    case e::pml_full: return "page-modification log full";
    case e::xsaves: return "XSAVES";
    case e::xrstors: return "XRSTORS";
    case e::pconfig: return "PCONFIG";
    case e::spp_event: return "SPP-related event";
    case e::umwait: return "UMWAIT";
    case e::tpause: return "TPAUSE";
    case e::loadiwkey: return "LOADIWKEY";
    case e::enclv: return "ENCLV";
    case e::enqcmd_pasid_fail: return "ENQCMD PASID translation failure";
    case e::enqcmds_pasid_fail: return "ENQCMDS PASID translation failure";
    case e::bus_lock: return "bus lock";
    case e::instruction_timeout: return "instruction timeout";
    }
    return "?";
}

std::string_view name(instruction_error err) {
    using e = instruction_error;
    switch (err) {
    case e::vmcall_in_root: return "VMCALL executed in VMX root operation";
    case e::vmclear_invalid_address: return "VMCLEAR with invalid physical address";
    case e::vmclear_vmxon_pointer: return "VMCLEAR with VMXON pointer";
    case e::vmlaunch_non_clear: return "VMLAUNCH with non-clear VMCS";
    case e::vmresume_non_launched: return "VMRESUME with non-launched VMCS";
    case e::vmresume_after_vmxoff: return "VMRESUME after VMXOFF";
    case e::entry_invalid_control: return "VM entry with invalid control field(s)";
    case e::entry_invalid_host_state: return "VM entry with invalid host-state field(s)";
    case e::vmptrld_invalid_address: return "VMPTRLD with invalid physical address";
    case e::vmptrld_vmxon_pointer: return "VMPTRLD with VMXON pointer";
    case e::vmptrld_bad_revision: return "VMPTRLD with incorrect VMCS revision identifier";
    case e::unsupported_component: return "VMREAD/VMWRITE from/to unsupported VMCS component";
    case e::vmwrite_read_only: return "VMWRITE to read-only VMCS component";
    case e::vmxon_in_root: return "VMXON executed in VMX root operation";
    case e::entry_invalid_executive_vmcs: return "VM entry with invalid executive-VMCS pointer";
    case e::entry_non_launched_executive_vmcs: return "VM entry with non-launched executive VMCS";
    case e::entry_executive_not_vmxon: return "VM entry with executive-VMCS pointer not VMXON pointer";
    case e::vmcall_non_clear: return "VMCALL with non-clear VMCS";
    case e::vmcall_invalid_exit_controls: return "VMCALL with invalid VM-exit control fields";
    case e::vmcall_bad_mseg_revision: return "VMCALL with incorrect MSEG revision identifier";
    case e::vmxoff_dual_monitor: return "VMXOFF under dual-monitor treatment of SMIs and SMM";
    case e::vmcall_invalid_smm_features: return "VMCALL with invalid SMM-monitor features";
    case e::entry_invalid_executive_controls: return "VM entry with invalid VM-execution control fields in executive VMCS";
    case e::entry_blocked_by_mov_ss: return "VM entry with events blocked by MOV SS";
    case e::invalid_invept_invvpid_operand: return "invalid operand to INVEPT/INVVPID";
    }
    return "?";
}

} // namespace hv::vmx
