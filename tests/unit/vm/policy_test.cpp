#include "libhv/vm/policy.hpp"

#include <doctest/doctest.h>

#include <string_view>

using namespace hv::vm;

// Selecting by name at compile time gives the table's entries.
static_assert(preset<"pvh">().boot == boot_protocol::pvh);
static_assert(preset<"hvm">().boot == boot_protocol::real_mode);
static_assert(preset<"hvm-shadow">().mmu == guest_mmu::shadow);
static_assert(preset<"bare">().devices == device_model::debug_only);
static_assert(compose({"mine", guest_mmu::nested, boot_protocol::linux_bzimage}).boot == boot_protocol::linux_bzimage);

TEST_CASE("every preset is a consistent composition with a distinct name") {
    for (const policy& p : presets::all) {
        CAPTURE(p.name);
        CHECK(inconsistency(p) == nullptr);
        CHECK(find_preset(p.name)->name == p.name);
    }
    CHECK_FALSE(find_preset("pv"));
    CHECK_FALSE(find_preset("HVM"));
}

TEST_CASE("inconsistent compositions are named") {
    policy p{"x"};
    p.devices = device_model::pv;
    CHECK(std::string_view(inconsistency(p)).find("Xen ABI") != std::string_view::npos);
    p = {"x"};
    p.interrupts = interrupt_delivery::callback_vector;
    CHECK(inconsistency(p) != nullptr);
    p = {"x"};
    p.timer = guest_timer::emulated;
    CHECK(std::string_view(inconsistency(p)).find("PIT") != std::string_view::npos);
    p = {"x"};
    p.boot = boot_protocol::real_mode;
    CHECK(std::string_view(inconsistency(p)).find("fw_cfg") != std::string_view::npos);
    // A real-mode start under shadow paging is consistent: SVM runs paged real mode, VMX
    // vm86 mode (the backends; boot-colors-hvm-shadow-*).
    p = presets::hvm;
    p.mmu = guest_mmu::shadow;
    CHECK(inconsistency(p) == nullptr);
    p.boot = boot_protocol::multiboot;
    CHECK(inconsistency(p) == nullptr);
    // A real-mode preference is inconsistent exactly when real_mode_refusal refuses it.
    for (policy q : presets::all) {
        q.boot = boot_protocol::real_mode;
        CAPTURE(q.name);
        CHECK(inconsistency(q) == real_mode_refusal(q));
    }
    CHECK(real_mode_refusal(presets::hvm) == nullptr);
    CHECK(real_mode_refusal(presets::pvhvm) == nullptr);
    CHECK(real_mode_refusal(presets::pvh) == std::string_view(real_mode_refused::no_emulated_pc));
    CHECK(real_mode_refusal(presets::bare) == std::string_view(real_mode_refused::no_emulated_pc));
    CHECK(real_mode_refusal(presets::hvm_shadow) == nullptr);
}

TEST_CASE("missing parts: each preset names the first part it lacks, none once all are wired") {
    const wired_parts none{};
    CHECK(missing_part(presets::bare, none) == nullptr);
    CHECK(std::string_view(missing_part(presets::hvm, none)).find("HVM device model") != std::string_view::npos);
    CHECK(std::string_view(missing_part(presets::hvm_shadow, none)).find("shadow paging") != std::string_view::npos);
    CHECK(std::string_view(missing_part(presets::pvhvm, none)).find("HVM device model") != std::string_view::npos);
    CHECK(std::string_view(missing_part(presets::pvh, none)).find("Xen ABI") != std::string_view::npos);

    wired_parts devices_only{};
    devices_only.emulated_devices = true;
    CHECK(std::string_view(missing_part(presets::hvm, devices_only)).find("real-mode start") != std::string_view::npos);
    devices_only.real_mode_boot = true;
    CHECK(missing_part(presets::hvm, devices_only) == nullptr);
    CHECK(std::string_view(missing_part(presets::hvm_shadow, devices_only)).find("shadow") != std::string_view::npos);
    CHECK(std::string_view(missing_part(presets::pvhvm, devices_only)).find("Xen ABI") != std::string_view::npos);

    wired_parts abi_no_timer{.xen_abi = true, .pv_devices = true, .callback_vector = true};
    CHECK(std::string_view(missing_part(presets::pvh, abi_no_timer)).find("timer") != std::string_view::npos);

    const wired_parts all{true, true, true, true, true, true, true};
    for (const policy& p : presets::all) CHECK(missing_part(p, all) == nullptr);
}

TEST_CASE("promised colors: the guest-visible differences between presets") {
    using hv::loader::protocol;
    CHECK(promised_color(presets::hvm, protocol::real_mode).type() == virt_type::full);
    CHECK(promised_color(presets::hvm, protocol::pvh).type() == virt_type::full);
    CHECK(promised_color(presets::pvhvm, protocol::multiboot2).type() == virt_type::full);
    CHECK(promised_color(presets::pvh, protocol::pvh).type() == virt_type::para);
    CHECK(promised_color(presets::pvh, protocol::multiboot1).type() == virt_type::para);
    CHECK(promised_color(presets::bare, protocol::pvh).type() == virt_type::none);
    // The entry is the one the hypervisor chose, whatever the policy prefers.
    CHECK(promised_color(presets::hvm, protocol::pvh).entry == protocol::pvh);
    CHECK(promised_color(presets::hvm_shadow, protocol::multiboot2).entry == protocol::multiboot2);
    CHECK(promised_color(presets::hvm_shadow, protocol::pvh).pcid_hidden);
    CHECK_FALSE(promised_color(presets::hvm, protocol::pvh).pcid_hidden);
    CHECK(promised_color(presets::pvhvm, protocol::pvh).xen_leaves);
    CHECK_FALSE(promised_color(presets::hvm, protocol::pvh).xen_leaves);
    CHECK(promised_color(presets::hvm_shadow, protocol::pvh).cr3_load_exits);
    CHECK_FALSE(promised_color(presets::hvm, protocol::pvh).cr3_load_exits);
    // Any two presets differ in something a guest sees (hvm and hvm-shadow in whether
    // MOV to CR3 exits), entered the same way or not.
    for (const policy& a : presets::all)
        for (const policy& b : presets::all) {
            if (a.name == b.name) continue;
            CAPTURE(a.name);
            CAPTURE(b.name);
            CHECK(color_mismatch(promised_color(a, protocol::pvh), promised_color(b, protocol::pvh)) != nullptr);
        }
}

TEST_CASE("color_mismatch names the first broken promise") {
    const color promised = promised_color(presets::pvh, hv::loader::protocol::pvh);
    CHECK(color_mismatch(promised, promised) == nullptr);
    color seen = promised;
    seen.xen_leaves = false;
    CHECK(std::string_view(color_mismatch(promised, seen)) == "Xen CPUID leaves missing");
    seen = promised;
    seen.emulated_devices = true;
    CHECK(std::string_view(color_mismatch(promised, seen)) == "unexpected emulated devices");
    seen = promised;
    seen.entry = hv::loader::protocol::multiboot2;
    CHECK(std::string_view(color_mismatch(promised, seen)) == "entered through another boot protocol");
    // A host without PCID shows it hidden under nested paging too: not a mismatch.
    color bare_seen = promised_color(presets::bare, hv::loader::protocol::pvh);
    bare_seen.pcid_hidden = true;
    CHECK(color_mismatch(promised_color(presets::bare, hv::loader::protocol::pvh), bare_seen) == nullptr);
    color shadow_seen = promised_color(presets::hvm_shadow, hv::loader::protocol::multiboot2);
    shadow_seen.pcid_hidden = false;
    CHECK(std::string_view(color_mismatch(promised_color(presets::hvm_shadow, hv::loader::protocol::multiboot2), shadow_seen)) ==
          "PCID visible under shadow paging");
    shadow_seen = promised_color(presets::hvm_shadow, hv::loader::protocol::multiboot2);
    shadow_seen.cr3_load_exits = false;
    CHECK(std::string_view(color_mismatch(promised_color(presets::hvm_shadow, hv::loader::protocol::multiboot2), shadow_seen)) ==
          "MOV to CR3 does not exit: no shadow paging");
    color nested_seen = promised_color(presets::hvm, hv::loader::protocol::real_mode);
    nested_seen.cr3_load_exits = true;
    CHECK(std::string_view(color_mismatch(promised_color(presets::hvm, hv::loader::protocol::real_mode), nested_seen)) ==
          "MOV to CR3 exits: shadow paging where nested was promised");
}
