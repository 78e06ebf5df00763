// Guest-mode policies ("colors"): which parts a guest is composed of, chosen at compile
// time, and what the guest can observe of that choice. Portable: the hypervisor
// (vm::run_guest), hvimage and the color test guest (examples/colors) read the same table.
//
//   part        choices                                   Xen's colors
//   mmu         nested | shadow                           hvm      hvm-shadow  pvhvm     pvh
//   boot (pref) real mode, multiboot, PVH, Linux          real mode real mode  multiboot pvh
//   devices     none | emulated PC | Xen PV backends      emulated emulated    both      pv
//   interrupts  none | emulated PIC/APIC | callback vec.  emulated emulated    callback  callback
//   timer       none | emulated PIT/LAPIC | PV one-shot   emulated emulated    pv        pv
//   xen abi     off | on                                  off      off         on        on
//
// `boot` is the policy's preferred start, not the only one: any preset boots any guest
// kernel with an entry of its own (multiboot1/2, a PVH note, a bzImage header) through
// that entry, the preferred one if the kernel offers it (vm::choose_entry). A flat image
// without an entry is started in real mode, which only some policies can
// (vm::real_mode_refusal).
//
// The vendor (VMX or SVM) is no part: both are compiled in and vm::enable probes.
// `bare` is libhv's least platform (what examples/boot-guest runs): nested paging, no
// preferred start (the loader's order), the debug console and exit ports, nothing else.
// Classic deprivileged PV (`pv`) is refused at compile time: it is issue 9.
//
// A part this build has not wired into vm::guest yet is refused, by name, before the
// guest runs (missing_part); nothing is emulated by a stand-in.
//
// Real mode (loader::protocol::real_mode: a flat image at 0x7c00, no BIOS; fw_cfg has
// the command line and memory map) is `hvm`'s and `hvm-shadow`'s preferred start, as
// hvmloader's guests start. Under nested paging VMX runs it as an unrestricted guest and
// SVM natively. Under shadow paging SVM runs it as paged real mode (VMRUN with CR0.PG = 1,
// CR0.PE = 0 on the direct shadow of guest-physical memory), and VMX, which has no
// unrestricted guest without EPT, in virtual-8086 mode: privileged instructions exit by
// #GP and are handed on (MOV CR, HLT) or emulated (LGDT/LIDT) until the guest sets
// CR0.PE (libhv/cpu/vmx/backend.cpp: what that vm86 phase does not model). Which
// policies can start a flat image in real mode: real_mode_refusal. `pvhvm` prefers
// multiboot.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include "libhv/core/result.hpp"
#include "libhv/loader/loader.hpp"

namespace hv::vm {

// vm::run_guest maps it onto config.mmu (vm::paging).
enum class guest_mmu : std::uint8_t { nested, shadow };
enum class boot_protocol : std::uint8_t { loader_choice, real_mode, multiboot, pvh, linux_bzimage };
enum class device_model : std::uint8_t { debug_only, emulated, pv, emulated_and_pv };
enum class interrupt_delivery : std::uint8_t { none, emulated, callback_vector };
enum class guest_timer : std::uint8_t { none, emulated, pv_one_shot };

struct policy {
    std::string_view name;
    guest_mmu mmu = guest_mmu::nested;
    // The preferred start: taken when the guest offers it (vm::choose_entry), else the
    // guest's own entry. loader_choice: none preferred (the loader's order).
    boot_protocol boot = boot_protocol::loader_choice;
    device_model devices = device_model::debug_only;
    interrupt_delivery interrupts = interrupt_delivery::none;
    guest_timer timer = guest_timer::none;
    bool xen_abi = false;
};

namespace presets {
inline constexpr policy bare{"bare"};
inline constexpr policy hvm{"hvm", guest_mmu::nested, boot_protocol::real_mode, device_model::emulated,
                            interrupt_delivery::emulated, guest_timer::emulated, false};
inline constexpr policy hvm_shadow{"hvm-shadow", guest_mmu::shadow, boot_protocol::real_mode, device_model::emulated,
                                   interrupt_delivery::emulated, guest_timer::emulated, false};
inline constexpr policy pvhvm{"pvhvm", guest_mmu::nested, boot_protocol::multiboot, device_model::emulated_and_pv,
                              interrupt_delivery::callback_vector, guest_timer::pv_one_shot, true};
inline constexpr policy pvh{"pvh", guest_mmu::nested, boot_protocol::pvh, device_model::pv,
                            interrupt_delivery::callback_vector, guest_timer::pv_one_shot, true};
inline constexpr policy all[] = {bare, hvm, hvm_shadow, pvhvm, pvh};
} // namespace presets

[[nodiscard]] constexpr bool emulates_pc(const policy& p) {
    return p.devices == device_model::emulated || p.devices == device_model::emulated_and_pv;
}

// real_mode_refusal's answers.
namespace real_mode_refused {
inline constexpr char no_emulated_pc[] =
    "a real-mode start needs the emulated PC (fw_cfg carries its command line and memory map)";
} // namespace real_mode_refused

// Why `p` cannot start a flat image in real mode, or nullptr. Every such rule is here
// (choose_entry, inconsistency and so hvimage ask this one function). Either MMU will
// do: under shadow paging SVM runs paged real mode and VMX virtual-8086 mode.
[[nodiscard]] constexpr const char* real_mode_refusal(const policy& p) {
    if (!emulates_pc(p)) return real_mode_refused::no_emulated_pc;
    return nullptr;
}

// Why a composition cannot work whatever is wired, or nullptr.
[[nodiscard]] constexpr const char* inconsistency(const policy& p) {
    const bool pv_devices = p.devices == device_model::pv || p.devices == device_model::emulated_and_pv;
    const bool emulated_devices = emulates_pc(p);
    if (pv_devices && !p.xen_abi) return "PV devices need the Xen ABI (grants, event channels)";
    if (p.interrupts == interrupt_delivery::callback_vector && !p.xen_abi)
        return "a callback vector is set through the Xen ABI (HVM_PARAM_CALLBACK_IRQ)";
    if (p.timer == guest_timer::pv_one_shot && !p.xen_abi) return "the PV one-shot timer is a Xen hypercall";
    if (p.interrupts == interrupt_delivery::emulated && !emulated_devices)
        return "emulated interrupt delivery needs the emulated PIC/APIC (devices = emulated)";
    if (p.timer == guest_timer::emulated && !emulated_devices)
        return "an emulated timer needs the emulated PIT/LAPIC (devices = emulated)";
    if (p.boot == boot_protocol::real_mode) return real_mode_refusal(p);
    return nullptr;
}

// What this build has wired into a running vm::guest. A branch that lands a part turns
// its flag on together with the code in vm::run_guest that attaches it.
struct wired_parts {
    bool shadow_paging = false;     // config.mmu = paging::shadow            (branch shadow)
    bool emulated_devices = false;  // libhv/dev machine attached to a guest  (branch devices)
    bool xen_abi = false;           // hypercall page, event channels, grants (branch io)
    bool pv_devices = false;        // console/block backends                 (branch io)
    bool callback_vector = false;   //                                        (branch io)
    bool pv_timer = false;          //                                        (branch io)
    bool real_mode_boot = false;    // flat image at 0x7c00, fw_cfg            (branch colors)
};
// Branch devices: vm::hvm_devices; branch io: vm::xen_pv_host (Xen ABI, backends) with
// vm::xen_hvm (callback vector, timer); branch shadow: config.mmu = paging::shadow.
inline constexpr wired_parts wired_in_this_build{.shadow_paging = true, .emulated_devices = true, .xen_abi = true,
                                                 .pv_devices = true, .callback_vector = true, .pv_timer = true,
                                                 .real_mode_boot = true};

// The first part of `p` that `w` lacks, as "<preset> needs <part>: not wired yet", or nullptr.
[[nodiscard]] constexpr const char* missing_part(const policy& p, const wired_parts& w = wired_in_this_build) {
    if (p.mmu == guest_mmu::shadow && !w.shadow_paging)
        return "needs shadow paging (config.mmu = paging::shadow): not wired yet";
    if (emulates_pc(p) && !w.emulated_devices)
        return "needs the HVM device model (libhv/dev machine on a vm::guest): not wired yet";
    if (p.xen_abi && !w.xen_abi) return "needs the Xen ABI (hypercall page, event channels, grants): not wired yet";
    if ((p.devices == device_model::pv || p.devices == device_model::emulated_and_pv) && !w.pv_devices)
        return "needs the Xen PV console/block backends: not wired yet";
    if (p.interrupts == interrupt_delivery::callback_vector && !w.callback_vector)
        return "needs the event-channel callback vector: not wired yet";
    if (p.timer == guest_timer::pv_one_shot && !w.pv_timer) return "needs the Xen PV one-shot timer: not wired yet";
    if (p.boot == boot_protocol::real_mode && !w.real_mode_boot)
        return "needs the real-mode start (flat image at 0x7c00): not wired yet";
    return nullptr;
}

// Classic deprivileged PV: refused by vm::preset<"pv"> (compile time) and hvimage --policy=pv.
#define HV_POLICY_PV_REFUSED \
    "policy pv (classic deprivileged Xen PV) is issue 9, not built yet: choose hvm, hvm-shadow, pvhvm, pvh or bare"

// ---- selecting a preset by name at compile time: vm::preset<"pvh">() ----
template <std::size_t N>
struct preset_name {
    char text[N]{};
    consteval preset_name(const char (&s)[N]) {
        for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
    }
    [[nodiscard]] consteval std::string_view view() const { return {text, N - 1}; }
};

[[nodiscard]] constexpr std::optional<policy> find_preset(std::string_view name) {
    for (const policy& p : presets::all)
        if (p.name == name) return p;
    return std::nullopt;
}

template <preset_name Name>
[[nodiscard]] consteval policy preset() {
    static_assert(Name.view() != "pv", HV_POLICY_PV_REFUSED);
    static_assert(find_preset(Name.view()).has_value(), "no such policy: choose hvm, hvm-shadow, pvhvm, pvh or bare");
    constexpr policy p = *find_preset(Name.view());
    static_assert(inconsistency(p) == nullptr, "inconsistent policy");
    return p;
}

// A composition of one's own, checked at compile time: an inconsistent one fails the
// build at the call below (vm::inconsistency says why).
//   constexpr auto mine = vm::compose({"mine", vm::guest_mmu::nested, vm::boot_protocol::pvh});
void composed_policy_is_inconsistent();  // never defined: reached only in a failing consteval
[[nodiscard]] consteval policy compose(const policy& p) {
    if (inconsistency(p) != nullptr) composed_policy_is_inconsistent();
    return p;
}

// ---- how a guest is entered: the policy's preferred start or the guest's own entry ----
struct entry_choice {
    loader::protocol protocol;
    const char* why;  // e.g. "the policy's real mode needs a flat image", for the log
    loader::image_info image;  // what probing found, for the loader (boot_config::probed)
};
// Which entry `p` starts `image` by:
//   an image with an entry of its own (loader::probe_entries): the policy's preferred
//     start if the image offers it (multiboot: multiboot2, then multiboot1; real mode:
//     a flat real-mode image that is no bzImage), else the first the image offers in the
//     loader's order (pvh, multiboot2, multiboot1, linux); malformed: the probe's error;
//   an image without one: real mode, if it is a flat real-mode image
//     (loader::real_mode_image_problem) and `p` can start one (real_mode_refusal).
// The hypervisor (vm::run_guest) and hvimage (--policy with --guest) both ask this.
[[nodiscard]] result<entry_choice> choose_entry(const policy& p, std::span<const std::byte> image);

// ---- the color: what a guest observes of its policy ----
enum class virt_type : std::uint8_t { none, full, para };
constexpr const char* to_string(virt_type t) {
    switch (t) {
    case virt_type::none: return "none";
    case virt_type::full: return "full";
    case virt_type::para: return "para";
    }
    return "?";
}
struct color {
    bool xen_leaves = false;        // "XenVMMXenVMM" at 0x40000000 + n*0x100
    // How the vCPU entered the guest: libhv's runtime reports pvh, multiboot1/2 or, from
    // its real-mode stub (a flat image made by toolchain/realmode_image.py), real mode.
    loader::protocol entry = loader::protocol::pvh;
    bool emulated_devices = false;  // COM1 scratch, PIT, PIC, PCI config answer
    bool callback_vector = false;
    bool pv_timer = false;
    bool pcid_hidden = false;       // CPUID.1:ECX.PCID clear (shadow paging hides it)
    // MOV to CR3 costs about as much as CPUID (which always exits): the hypervisor
    // intercepts it, as shadow paging must and nested paging need not.
    bool cr3_load_exits = false;
    // none: neither emulated hardware nor PV interfaces; full: emulated PC hardware
    // (with or without PV drivers); para: PV interfaces only.
    [[nodiscard]] constexpr virt_type type() const {
        if (emulated_devices) return virt_type::full;
        return xen_leaves ? virt_type::para : virt_type::none;
    }
};

// What `p` promises a guest it starts by `entry` (choose_entry's choice).
[[nodiscard]] constexpr color promised_color(const policy& p, loader::protocol entry) {
    color c;
    c.xen_leaves = p.xen_abi;
    c.entry = entry;
    c.emulated_devices = emulates_pc(p);
    c.callback_vector = p.interrupts == interrupt_delivery::callback_vector;
    c.pv_timer = p.timer == guest_timer::pv_one_shot;
    c.pcid_hidden = p.mmu == guest_mmu::shadow;
    c.cr3_load_exits = p.mmu == guest_mmu::shadow;
    return c;
}

// The first observation that breaks the promise, named, or nullptr. PCID is only
// checked where it must be hidden (a host without PCID hides it under nested too).
[[nodiscard]] constexpr const char* color_mismatch(const color& promised, const color& seen) {
    if (promised.xen_leaves != seen.xen_leaves)
        return promised.xen_leaves ? "Xen CPUID leaves missing" : "unexpected Xen CPUID leaves";
    if (promised.entry != seen.entry) return "entered through another boot protocol";
    if (promised.emulated_devices != seen.emulated_devices)
        return promised.emulated_devices ? "emulated devices missing" : "unexpected emulated devices";
    if (promised.callback_vector != seen.callback_vector) return "callback vector not as promised";
    if (promised.pv_timer != seen.pv_timer) return "PV timer not as promised";
    if (promised.cr3_load_exits != seen.cr3_load_exits)
        return promised.cr3_load_exits ? "MOV to CR3 does not exit: no shadow paging"
                                       : "MOV to CR3 exits: shadow paging where nested was promised";
    if (promised.pcid_hidden && !seen.pcid_hidden) return "PCID visible under shadow paging";
    return nullptr;
}

} // namespace hv::vm
