// VMX capabilities (SDM appendix A) and the derivation of every VM-execution, VM-exit
// and VM-entry control from them (SDM 24.6-24.8, A.3-A.5).
//
// The metal side reads the MSRs into `capability_msrs`; everything here is pure.
#pragma once
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"
#include <string_view>
#include <type_traits>
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"

namespace hv::vmx {

namespace msr {
inline constexpr std::uint32_t feature_control = 0x3a;
inline constexpr std::uint32_t basic = 0x480;
inline constexpr std::uint32_t pinbased_ctls = 0x481;
inline constexpr std::uint32_t procbased_ctls = 0x482;
inline constexpr std::uint32_t exit_ctls = 0x483;
inline constexpr std::uint32_t entry_ctls = 0x484;
inline constexpr std::uint32_t misc = 0x485;
inline constexpr std::uint32_t cr0_fixed0 = 0x486;
inline constexpr std::uint32_t cr0_fixed1 = 0x487;
inline constexpr std::uint32_t cr4_fixed0 = 0x488;
inline constexpr std::uint32_t cr4_fixed1 = 0x489;
inline constexpr std::uint32_t vmcs_enum = 0x48a;
inline constexpr std::uint32_t procbased_ctls2 = 0x48b;
inline constexpr std::uint32_t ept_vpid_cap = 0x48c;
inline constexpr std::uint32_t true_pinbased_ctls = 0x48d;
inline constexpr std::uint32_t true_procbased_ctls = 0x48e;
inline constexpr std::uint32_t true_exit_ctls = 0x48f;
inline constexpr std::uint32_t true_entry_ctls = 0x490;
inline constexpr std::uint32_t vmfunc = 0x491;
} // namespace msr

// Raw values as read on one physical CPU. Optional MSRs read as 0 when their
// existence bit says they are absent (the probe must not touch them then).
struct capability_msrs {
    std::uint64_t feature_control;
    std::uint64_t basic;
    std::uint64_t pinbased, procbased, exit, entry;
    std::uint64_t misc;
    std::uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
    std::uint64_t vmcs_enum;
    std::uint64_t procbased2;     // exists iff procbased allowed-1 bit 31
    std::uint64_t ept_vpid_cap;   // exists iff procbased2 allows EPT or VPID
    std::uint64_t true_pinbased, true_procbased, true_exit, true_entry;  // exist iff basic[55]
    std::uint64_t vmfunc;
};

struct basic_info {
    std::uint64_t raw;
    constexpr std::uint32_t revision() const { return raw & 0x7fffffff; }
    constexpr std::uint32_t region_size() const { return (raw >> 32) & 0x1fff; }
    constexpr bool phys_32bit_only() const { return raw & (1ull << 48); }
    constexpr bool dual_monitor() const { return raw & (1ull << 49); }
    constexpr std::uint8_t memory_type() const { return (raw >> 50) & 0xf; }
    constexpr bool ins_outs_info() const { return raw & (1ull << 54); }
    constexpr bool true_controls() const { return raw & (1ull << 55); }
    constexpr bool any_error_code() const { return raw & (1ull << 56); }
};

struct misc_info {
    std::uint64_t raw;
    constexpr std::uint8_t preemption_timer_rate() const { return raw & 0x1f; }
    constexpr bool stores_lma() const { return raw & (1u << 5); }
    constexpr bool activity_hlt() const { return raw & (1u << 6); }
    constexpr bool activity_shutdown() const { return raw & (1u << 7); }
    constexpr bool activity_wait_sipi() const { return raw & (1u << 8); }
    constexpr unsigned cr3_targets() const { return (raw >> 16) & 0x1ff; }
    constexpr unsigned max_msr_list() const { return 512u * (((raw >> 25) & 7) + 1); }
    constexpr bool vmwrite_any_field() const { return raw & (1u << 29); }
    constexpr bool zero_length_injection() const { return raw & (1u << 30); }
};

struct ept_vpid_info {
    std::uint64_t raw;
    constexpr bool execute_only() const { return raw & (1ull << 0); }
    constexpr bool walk_length4() const { return raw & (1ull << 6); }
    constexpr bool walk_length5() const { return raw & (1ull << 7); }
    constexpr bool memtype_uc() const { return raw & (1ull << 8); }
    constexpr bool memtype_wb() const { return raw & (1ull << 14); }
    constexpr bool pages_2m() const { return raw & (1ull << 16); }
    constexpr bool pages_1g() const { return raw & (1ull << 17); }
    constexpr bool invept() const { return raw & (1ull << 20); }
    constexpr bool accessed_dirty() const { return raw & (1ull << 21); }
    constexpr bool advanced_exit_info() const { return raw & (1ull << 22); }
    constexpr bool invept_single() const { return raw & (1ull << 25); }
    constexpr bool invept_all() const { return raw & (1ull << 26); }
    constexpr bool invvpid() const { return raw & (1ull << 32); }
    constexpr bool invvpid_address() const { return raw & (1ull << 40); }
    constexpr bool invvpid_single() const { return raw & (1ull << 41); }
    constexpr bool invvpid_all() const { return raw & (1ull << 42); }
    constexpr bool invvpid_single_keep_globals() const { return raw & (1ull << 43); }
};

// IA32_FEATURE_CONTROL (SDM 23.7).
namespace feature_control {
inline constexpr std::uint64_t lock = 1ull << 0;
inline constexpr std::uint64_t vmxon_in_smx = 1ull << 1;
inline constexpr std::uint64_t vmxon_outside_smx = 1ull << 2;
} // namespace feature_control

// ---- control bits (SDM 24.6.1, 24.6.2, 24.7.1, 24.8.1) ----

enum class pin : std::uint32_t {
    external_interrupt_exiting = 1u << 0,
    nmi_exiting = 1u << 3,
    virtual_nmis = 1u << 5,
    preemption_timer = 1u << 6,
    posted_interrupts = 1u << 7,
};
enum class proc : std::uint32_t {
    interrupt_window_exiting = 1u << 2,
    tsc_offsetting = 1u << 3,
    hlt_exiting = 1u << 7,
    invlpg_exiting = 1u << 9,
    mwait_exiting = 1u << 10,
    rdpmc_exiting = 1u << 11,
    rdtsc_exiting = 1u << 12,
    cr3_load_exiting = 1u << 15,
    cr3_store_exiting = 1u << 16,
    tertiary_controls = 1u << 17,
    cr8_load_exiting = 1u << 19,
    cr8_store_exiting = 1u << 20,
    tpr_shadow = 1u << 21,
    nmi_window_exiting = 1u << 22,
    mov_dr_exiting = 1u << 23,
    unconditional_io_exiting = 1u << 24,
    io_bitmaps = 1u << 25,
    monitor_trap_flag = 1u << 27,
    msr_bitmaps = 1u << 28,
    monitor_exiting = 1u << 29,
    pause_exiting = 1u << 30,
    secondary_controls = 1u << 31,
};
enum class proc2 : std::uint32_t {
    virtualize_apic_accesses = 1u << 0,
    ept = 1u << 1,
    descriptor_table_exiting = 1u << 2,
    rdtscp = 1u << 3,
    virtualize_x2apic = 1u << 4,
    vpid = 1u << 5,
    wbinvd_exiting = 1u << 6,
    unrestricted_guest = 1u << 7,
    apic_register_virtualization = 1u << 8,
    virtual_interrupt_delivery = 1u << 9,
    pause_loop_exiting = 1u << 10,
    rdrand_exiting = 1u << 11,
    invpcid = 1u << 12,
    vm_functions = 1u << 13,
    vmcs_shadowing = 1u << 14,
    encls_exiting = 1u << 15,
    rdseed_exiting = 1u << 16,
    pml = 1u << 17,
    ept_violation_ve = 1u << 18,
    conceal_from_pt = 1u << 19,
    xsaves = 1u << 20,
    mode_based_ept_execute = 1u << 22,
    sub_page_write = 1u << 23,
    pt_guest_physical = 1u << 24,
    tsc_scaling = 1u << 25,
    user_wait_pause = 1u << 26,
    pconfig = 1u << 27,
    enclv_exiting = 1u << 28,
};
enum class exit_ctl : std::uint32_t {
    save_debug_controls = 1u << 2,
    host_address_space_size = 1u << 9,
    load_perf_global_ctrl = 1u << 12,
    ack_interrupt_on_exit = 1u << 15,
    save_pat = 1u << 18,
    load_pat = 1u << 19,
    save_efer = 1u << 20,
    load_efer = 1u << 21,
    save_preemption_timer = 1u << 22,
    clear_bndcfgs = 1u << 23,
    conceal_from_pt = 1u << 24,
    clear_rtit_ctl = 1u << 25,
    load_cet = 1u << 28,
    load_pkrs = 1u << 29,
};
enum class entry_ctl : std::uint32_t {
    load_debug_controls = 1u << 2,
    ia32e_mode_guest = 1u << 9,
    entry_to_smm = 1u << 10,
    deactivate_dual_monitor = 1u << 11,
    load_perf_global_ctrl = 1u << 13,
    load_pat = 1u << 14,
    load_efer = 1u << 15,
    load_bndcfgs = 1u << 16,
    conceal_from_pt = 1u << 17,
    load_rtit_ctl = 1u << 18,
    load_cet = 1u << 20,
};

template <class E>
concept control_enum = std::is_same_v<E, pin> || std::is_same_v<E, proc> || std::is_same_v<E, proc2> ||
                       std::is_same_v<E, exit_ctl> || std::is_same_v<E, entry_ctl>;

template <control_enum E>
constexpr std::uint32_t bits(E e) { return static_cast<std::uint32_t>(e); }
template <control_enum E, class... R>
constexpr std::uint32_t bits(E e, R... rest) { return (static_cast<std::uint32_t>(e) | ... | static_cast<std::uint32_t>(rest)); }

enum class control_set : std::uint8_t { pin, proc, proc2, exit, entry };
inline constexpr unsigned control_set_count = 5;
std::string_view name(control_set s);
// Name of one bit of a control set ("enable EPT"), or nullptr for a bit libhv has no name for.
const char* control_name(control_set s, unsigned bit);

// Bits a processor without TRUE MSRs reports as allowed-0 = 1 (SDM A.2): the "default1" class.
inline constexpr std::uint32_t default1[control_set_count] = {
    0x00000016,  // pin: 1, 2, 4
    0x0401e172,  // proc: 1, 4-6, 8, 13-16, 26
    0x00000000,  // proc2: none
    0x00036dff,  // exit: 0-8, 10, 11, 13, 14, 16, 17
    0x000011ff,  // entry: 0-8, 12
};

// Allowed settings of one 32-bit control (SDM A.3): a bit set in allowed0 must be 1;
// a bit clear in allowed1 must be 0.
struct allowed {
    std::uint32_t allowed0 = 0;
    std::uint32_t allowed1 = 0;
    static constexpr allowed from_msr(std::uint64_t v) {
        return {static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(v >> 32)};
    }
    constexpr bool permits(std::uint32_t value) const {
        return (value & allowed0) == allowed0 && (value & ~allowed1) == 0;
    }
};

// What libhv asks of one control: `required` bits it cannot run without, `optional`
// ones it uses when offered.
struct request {
    std::uint32_t required = 0;
    std::uint32_t optional = 0;
    constexpr std::uint32_t wanted() const { return required | optional; }
};

// The outcome for one control set: what was asked, what the CPU granted, what it refused
// and which bits it forces on although nobody asked for them.
struct report {
    control_set set;
    request asked;
    std::uint32_t value;    // the value to write
    std::uint32_t refused;  // wanted but allowed1 = 0
    std::uint32_t forced;   // not wanted but allowed0 = 1
    constexpr std::uint32_t missing() const { return asked.required & refused; }
    constexpr std::uint32_t granted() const { return asked.wanted() & value; }
};

constexpr report derive(control_set s, request r, allowed a) {
    report rep{s, r, 0, 0, 0};
    rep.value = (r.wanted() & a.allowed1) | a.allowed0;
    rep.refused = r.wanted() & ~a.allowed1;
    rep.forced = a.allowed0 & ~r.wanted();
    return rep;
}

// The allowed settings in force: TRUE MSRs when IA32_VMX_BASIC[55] says they exist.
// Secondary controls exist only if the primary ones allow activating them.
struct capabilities {
    basic_info basic;
    misc_info misc;
    ept_vpid_info ept_vpid;
    allowed controls[control_set_count];
    std::uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
    std::uint64_t vmfunc;
    bool uses_true_msrs;

    constexpr const allowed& of(control_set s) const { return controls[static_cast<unsigned>(s)]; }
};
[[nodiscard]] capabilities decode(const capability_msrs& m);

// What libhv asks of all five sets.
struct requests {
    request of[control_set_count];
    constexpr request& operator[](control_set s) { return of[static_cast<unsigned>(s)]; }
    constexpr const request& operator[](control_set s) const { return of[static_cast<unsigned>(s)]; }
};

struct derived_controls {
    report sets[control_set_count];
    constexpr const report& operator[](control_set s) const { return sets[static_cast<unsigned>(s)]; }
    constexpr std::uint32_t value(control_set s) const { return (*this)[s].value; }
};

// Derives all five values. Applies the dependencies between controls (SDM 26.2.1.1):
// the secondary controls are activated iff any secondary bit was granted; unrestricted
// guest and PML are refused without EPT; virtual NMIs without NMI exiting; NMI-window
// exiting without virtual NMIs. Fails naming the first required control refused.
[[nodiscard]] result<derived_controls> derive_all(const capabilities& caps, const requests& req);

// Lists asked/granted/refused/forced bits by name, one line per set.
void print(const fmt::sink& out, const report& r);

// ---- CR0/CR4 fixed bits (SDM A.7, A.8) ----

struct fixed_bits {
    std::uint64_t must_be1;
    std::uint64_t may_be1;
    constexpr std::uint64_t apply(std::uint64_t v) const { return (v | must_be1) & may_be1; }
    // Bits of v that break the rule (0 = fine).
    constexpr std::uint64_t violations(std::uint64_t v) const { return (must_be1 & ~v) | (v & ~may_be1); }
};
// Unrestricted guest lifts the PE and PG requirements for guests only.
constexpr fixed_bits cr0_fixed(const capabilities& c, bool unrestricted_guest) {
    std::uint64_t must = c.cr0_fixed0 & c.cr0_fixed1;
    if (unrestricted_guest) must &= ~(x86::cr0::pe | x86::cr0::pg);
    return {must, c.cr0_fixed1 | c.cr0_fixed0};
}
constexpr fixed_bits cr4_fixed(const capabilities& c) {
    return {c.cr4_fixed0 & c.cr4_fixed1, c.cr4_fixed1 | c.cr4_fixed0};
}

// ---- probing: may this CPU enter VMX operation? ----

struct vmxon_plan {
    std::uint32_t revision;         // first dword of the VMXON region and of every VMCS
    std::uint32_t region_size;      // bytes to allocate (4 KiB aligned)
    bool write_feature_control;     // firmware left it unlocked: write the value below
    std::uint64_t feature_control;  // value to write when write_feature_control
    std::uint64_t cr0, cr4;         // host CR0/CR4 adjusted to the fixed bits (CR4.VMXE set)
};
// cpuid1_ecx: CPUID.1:ECX (bit 5 = VMX). Fails when VMX is absent or locked off.
[[nodiscard]] result<vmxon_plan> plan_vmxon(std::uint32_t cpuid1_ecx, const capability_msrs& m, std::uint64_t cr0,
                                            std::uint64_t cr4);

} // namespace hv::vmx
