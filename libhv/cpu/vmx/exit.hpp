// VMX exit information: basic exit reasons (SDM appendix C), VM-instruction errors
// (SDM 30.4), the exit-reason field, interruption-information fields (SDM 24.8.3, 24.9.2)
// and exit-qualification decoders (SDM 27.2.1).
#pragma once
#include <cstdint>
#include <string_view>

namespace hv::vmx {

enum class exit_reason : std::uint16_t {
    exception_or_nmi = 0,
    external_interrupt = 1,
    triple_fault = 2,
    init_signal = 3,
    sipi = 4,
    io_smi = 5,
    other_smi = 6,
    interrupt_window = 7,
    nmi_window = 8,
    task_switch = 9,
    cpuid = 10,
    getsec = 11,
    hlt = 12,
    invd = 13,
    invlpg = 14,
    rdpmc = 15,
    rdtsc = 16,
    rsm = 17,
    vmcall = 18,
    vmclear = 19,
    vmlaunch = 20,
    vmptrld = 21,
    vmptrst = 22,
    vmread = 23,
    vmresume = 24,
    vmwrite = 25,
    vmxoff = 26,
    vmxon = 27,
    cr_access = 28,
    dr_access = 29,
    io_instruction = 30,
    rdmsr = 31,
    wrmsr = 32,
    invalid_guest_state = 33,
    msr_loading = 34,
    mwait = 36,
    monitor_trap_flag = 37,
    monitor = 39,
    pause = 40,
    machine_check = 41,
    tpr_below_threshold = 43,
    apic_access = 44,
    virtualized_eoi = 45,
    gdtr_idtr_access = 46,
    ldtr_tr_access = 47,
    ept_violation = 48,
    ept_misconfig = 49,
    invept = 50,
    rdtscp = 51,
    preemption_timer = 52,
    invvpid = 53,
    wbinvd = 54,
    xsetbv = 55,
    apic_write = 56,
    rdrand = 57,
    invpcid = 58,
    vmfunc = 59,
    encls = 60,
    rdseed = 61,
    pml_full = 62,
    xsaves = 63,
    xrstors = 64,
    pconfig = 65,
    spp_event = 66,
    umwait = 67,
    tpause = 68,
    loadiwkey = 69,
    enclv = 70,
    enqcmd_pasid_fail = 72,
    enqcmds_pasid_fail = 73,
    bus_lock = 74,
    instruction_timeout = 75,
};
std::string_view name(exit_reason r);  // "?" for numbers the SDM does not define

// The 32-bit exit-reason field (SDM 24.9.1).
struct exit_reason_field {
    std::uint32_t raw;
    constexpr exit_reason basic() const { return static_cast<exit_reason>(raw & 0xffff); }
    constexpr bool enclave_mode() const { return raw & (1u << 27); }
    constexpr bool pending_mtf() const { return raw & (1u << 28); }
    constexpr bool from_vmx_root() const { return raw & (1u << 29); }
    constexpr bool entry_failure() const { return raw & (1u << 31); }
};

enum class instruction_error : std::uint32_t {
    vmcall_in_root = 1,
    vmclear_invalid_address = 2,
    vmclear_vmxon_pointer = 3,
    vmlaunch_non_clear = 4,
    vmresume_non_launched = 5,
    vmresume_after_vmxoff = 6,
    entry_invalid_control = 7,
    entry_invalid_host_state = 8,
    vmptrld_invalid_address = 9,
    vmptrld_vmxon_pointer = 10,
    vmptrld_bad_revision = 11,
    unsupported_component = 12,
    vmwrite_read_only = 13,
    vmxon_in_root = 15,
    entry_invalid_executive_vmcs = 16,
    entry_non_launched_executive_vmcs = 17,
    entry_executive_not_vmxon = 18,
    vmcall_non_clear = 19,
    vmcall_invalid_exit_controls = 20,
    vmcall_bad_mseg_revision = 22,
    vmxoff_dual_monitor = 23,
    vmcall_invalid_smm_features = 24,
    entry_invalid_executive_controls = 25,
    entry_blocked_by_mov_ss = 26,
    invalid_invept_invvpid_operand = 28,
};
std::string_view name(instruction_error e);  // the SDM's wording; "?" if unknown

// Interruption-information format shared by VM-entry injection, VM-exit interruption
// information and IDT-vectoring information.
enum class event_type : std::uint8_t {
    external_interrupt = 0,
    nmi = 2,
    hardware_exception = 3,
    software_interrupt = 4,
    privileged_software_exception = 5,
    software_exception = 6,
    other_event = 7,
};

struct interruption_info {
    std::uint32_t raw = 0;
    constexpr std::uint8_t vector() const { return raw & 0xff; }
    constexpr event_type type() const { return static_cast<event_type>((raw >> 8) & 7); }
    constexpr bool error_code_valid() const { return raw & (1u << 11); }
    constexpr bool nmi_unblocking_iret() const { return raw & (1u << 12); }
    constexpr bool valid() const { return raw & (1u << 31); }

    static constexpr interruption_info make(event_type t, std::uint8_t vector, bool deliver_error_code) {
        return {static_cast<std::uint32_t>(vector) | static_cast<std::uint32_t>(t) << 8 |
                (deliver_error_code ? 1u << 11 : 0u) | 1u << 31};
    }
};

// Exceptions whose delivery pushes an error code (#DF #TS #NP #SS #GP #PF #AC #CP).
constexpr bool exception_has_error_code(std::uint8_t vector) {
    return vector < 32 && ((1u << vector) & ((1u << 8) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13) |
                                             (1u << 14) | (1u << 17) | (1u << 21)));
}

// Exit qualification for control-register accesses (SDM table 27-3).
enum class cr_access_type : std::uint8_t { mov_to_cr = 0, mov_from_cr = 1, clts = 2, lmsw = 3 };
struct cr_qualification {
    std::uint64_t raw;
    constexpr std::uint8_t cr() const { return raw & 0xf; }
    constexpr cr_access_type access() const { return static_cast<cr_access_type>((raw >> 4) & 3); }
    constexpr bool lmsw_memory_operand() const { return raw & (1u << 6); }
    constexpr std::uint8_t gpr() const { return (raw >> 8) & 0xf; }  // 0 = RAX ... 15 = R15
    constexpr std::uint16_t lmsw_source() const { return static_cast<std::uint16_t>(raw >> 16); }
};

// Exit qualification for I/O instructions (SDM table 27-5).
struct io_qualification {
    std::uint64_t raw;
    constexpr std::uint8_t size() const { return static_cast<std::uint8_t>((raw & 7) + 1); }  // 1, 2 or 4
    constexpr bool in() const { return raw & (1u << 3); }
    constexpr bool string() const { return raw & (1u << 4); }
    constexpr bool rep() const { return raw & (1u << 5); }
    constexpr bool immediate_operand() const { return raw & (1u << 6); }
    constexpr std::uint16_t port() const { return static_cast<std::uint16_t>(raw >> 16); }
};

// Exit qualification for EPT violations (SDM table 27-7).
struct ept_violation_qualification {
    std::uint64_t raw;
    constexpr bool read() const { return raw & (1u << 0); }
    constexpr bool write() const { return raw & (1u << 1); }
    constexpr bool fetch() const { return raw & (1u << 2); }
    constexpr bool entry_readable() const { return raw & (1u << 3); }
    constexpr bool entry_writable() const { return raw & (1u << 4); }
    constexpr bool entry_executable() const { return raw & (1u << 5); }
    constexpr bool entry_user_executable() const { return raw & (1u << 6); }
    constexpr bool linear_valid() const { return raw & (1u << 7); }
    // Meaningful only with linear_valid(): the access was to the final translation,
    // not to a guest paging-structure entry.
    constexpr bool final_translation() const { return raw & (1u << 8); }
    constexpr bool nmi_unblocking_iret() const { return raw & (1u << 12); }
    // Any permission bit set means the EPT entry was present: a permission fault.
    constexpr bool present() const { return raw & (7u << 3); }
};

// VM-exit instruction information for INS/OUTS (SDM table 27-8), when IA32_VMX_BASIC[54].
struct io_string_info {
    std::uint32_t raw;
    constexpr std::uint8_t address_size() const { return static_cast<std::uint8_t>(16u << ((raw >> 7) & 7)); }
    constexpr std::uint8_t segment() const { return (raw >> 15) & 7; }  // ES CS SS DS FS GS
};

} // namespace hv::vmx
