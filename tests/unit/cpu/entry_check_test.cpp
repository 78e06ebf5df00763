#include <doctest/doctest.h>
#include <functional>
#include <string>
#include "libhv/cpu/vmx/entry_check.hpp"
#include "libhv/cpu/vmx/exit.hpp"
#include "libhv/cpu/vmx/setup.hpp"
#include "tests/unit/cpu/bochs_caps.hpp"

using namespace hv::vmx;
using hv::cpu::guest_mode;
using hv::cpu::seg;

namespace {

requests backend_requests() {
    requests r{};
    r[control_set::pin] = {bits(pin::external_interrupt_exiting, pin::nmi_exiting), bits(pin::virtual_nmis)};
    r[control_set::proc] = {bits(proc::hlt_exiting, proc::io_bitmaps, proc::msr_bitmaps), 0};
    r[control_set::proc2] = {bits(proc2::ept, proc2::vpid, proc2::unrestricted_guest), 0};
    r[control_set::exit] = {bits(exit_ctl::host_address_space_size, exit_ctl::save_efer, exit_ctl::load_efer), 0};
    r[control_set::entry] = {bits(entry_ctl::load_efer), 0};
    return r;
}

host_state typical_host() {
    host_state h{};
    h.cr0 = 0x80000033;
    h.cr3 = 0x1000;
    h.cr4 = 0x2020;  // PAE, VMXE
    h.cs = 0x08;
    h.ss = 0x10;
    h.tr = 0x18;
    h.tr_base = 0x9000;
    h.gdtr_base = 0xa000;
    h.idtr_base = 0xb000;
    h.efer = 0xd00;
    h.pat = 0x0007040600070406;
    h.rsp = 0x200000;
    h.rip = 0x100000;
    return h;
}

struct fixture {
    capabilities caps = decode(bochs::skylake_x);
    entry_context cx{&caps, 39};
    vmcs_image v;

    explicit fixture(guest_mode mode, const capability_msrs& m = bochs::skylake_x) : caps(decode(m)) {
        auto d = derive_all(caps, backend_requests());
        REQUIRE(d.ok());
        put_controls(v, *d);
        v.set(field::vpid, 1);
        v.set(field::ept_pointer, 0x3000 | 6 | 3 << 3);
        v.set(field::io_bitmap_a, 0x4000);
        v.set(field::io_bitmap_b, 0x5000);
        v.set(field::msr_bitmap, 0x6000);
        put_host(v, typical_host());
        put_guest(v, hv::cpu::initial_state(mode, mode == guest_mode::real ? 0x7c00 : 0x100000, 0x2000), caps);
    }
    entry_verdict check() const { return check_entry(v, cx); }
};

std::string printed(const entry_verdict& r, const vmcs_image& v) {
    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    print(k, r, v);
    return s;
}

constexpr guest_mode all_modes[] = {guest_mode::long64, guest_mode::protected32, guest_mode::real};

} // namespace

TEST_CASE("entry check: libhv's images for 64-bit, 32-bit and real-mode guests pass") {
    for (auto* m : {&bochs::skylake_x, &bochs::haswell_4770}) {
        for (auto mode : all_modes) {
            fixture f(mode, *m);
            auto r = f.check();
            CAPTURE(static_cast<int>(mode));
            CAPTURE(printed(r, f.v));
            CHECK(r.passed);
            CHECK(r.to_status().ok());
        }
    }
    fixture l(guest_mode::long64);
    CHECK((l.v.get(field::entry_controls) & bits(entry_ctl::ia32e_mode_guest)) != 0);
    fixture p(guest_mode::protected32);
    CHECK((p.v.get(field::entry_controls) & bits(entry_ctl::ia32e_mode_guest)) == 0);
    fixture r(guest_mode::real);
    // The real-mode guest runs with CR0.NE forced but reads its own CR0 through the shadow.
    CHECK(r.v.get(field::guest_cr0) == (hv::x86::cr0::et | hv::x86::cr0::ne));
    CHECK(r.v.get(field::cr0_read_shadow) == hv::x86::cr0::et);
    CHECK((r.v.get(field::cr0_guest_host_mask) & hv::x86::cr0::ne) != 0);
    CHECK((r.v.get(field::cr0_guest_host_mask) & hv::x86::cr0::pe) == 0);  // unrestricted: the guest owns PE
    CHECK((r.v.get(field::cr4_guest_host_mask) & hv::x86::cr4::vmxe) != 0);
    CHECK(r.v.get(field::cr4_read_shadow) == 0);
    CHECK(r.v.get(field::guest_cs_selector) == 0);
    CHECK(r.v.get(field::guest_rip) == 0x7c00);
}

struct breakage {
    const char* name;
    guest_mode mode;
    std::function<void(vmcs_image&)> mutate;
    field expect;
    const char* rule_part;
    const char* sdm;
};

TEST_CASE("entry check: each broken field is named with its rule") {
    const breakage cases[] = {
        // 26.2.1 controls
        {"pin control forced bit cleared", guest_mode::long64, [](auto& v) { v.set(field::pin_controls, v.get(field::pin_controls) & ~0x16u); }, field::pin_controls, "pin-based", "26.2.1.1"},
        {"unsupported proc2 bit", guest_mode::long64, [](auto& v) { v.set(field::proc2_controls, v.get(field::proc2_controls) | 1u << 31); }, field::proc2_controls, "secondary", "26.2.1.1"},
        {"too many CR3 targets", guest_mode::long64, [](auto& v) { v.set(field::cr3_target_count, 5); }, field::cr3_target_count, "CR3-target", "26.2.1.1"},
        {"unaligned I/O bitmap B", guest_mode::long64, [](auto& v) { v.set(field::io_bitmap_b, 0x5008); }, field::io_bitmap_b, "bitmap B", "26.2.1.1"},
        {"MSR bitmap beyond MAXPHYADDR", guest_mode::long64, [](auto& v) { v.set(field::msr_bitmap, 1ull << 40); }, field::msr_bitmap, "MSR bitmap", "26.2.1.1"},
        {"VPID 0", guest_mode::long64, [](auto& v) { v.set(field::vpid, 0); }, field::vpid, "VPID", "26.2.1.1"},
        {"EPTP memory type 1", guest_mode::long64, [](auto& v) { v.set(field::ept_pointer, 0x3000 | 1 | 3 << 3); }, field::ept_pointer, "memory type", "26.2.1.1"},
        {"EPTP walk length 3", guest_mode::long64, [](auto& v) { v.set(field::ept_pointer, 0x3000 | 6 | 2 << 3); }, field::ept_pointer, "page-walk", "26.2.1.1"},
        {"EPTP reserved bit", guest_mode::long64, [](auto& v) { v.set(field::ept_pointer, 0x3000 | 6 | 3 << 3 | 1 << 9); }, field::ept_pointer, "reserved", "26.2.1.1"},
        {"UG without EPT", guest_mode::long64, [](auto& v) { v.set(field::proc2_controls, v.get(field::proc2_controls) & ~bits(proc2::ept)); }, field::proc2_controls, "unrestricted guest without", "26.2.1.1"},
        {"virtual NMIs without NMI exiting", guest_mode::long64, [](auto& v) { v.set(field::pin_controls, (v.get(field::pin_controls) | bits(pin::virtual_nmis)) & ~bits(pin::nmi_exiting)); }, field::pin_controls, "virtual NMIs", "26.2.1.1"},
        {"save preemption timer without timer", guest_mode::long64, [](auto& v) { v.set(field::exit_controls, v.get(field::exit_controls) | bits(exit_ctl::save_preemption_timer)); }, field::exit_controls, "preemption", "26.2.1.2"},
        {"NMI injected with vector 3", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::nmi, 3, false).raw); }, field::entry_interruption_info, "NMI injection", "26.2.1.3"},
        {"#GP injected without error code", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 13, false).raw); }, field::entry_interruption_info, "deliver-error-code", "26.2.1.3"},
        {"#UD injected with error code", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 6, true).raw); }, field::entry_interruption_info, "deliver-error-code", "26.2.1.3"},
        {"#GP with error code into a real-mode guest", guest_mode::real, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 13, true).raw); }, field::entry_interruption_info, "real mode", "26.2.1.3"},
        {"exception vector 32", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 32, false).raw); }, field::entry_interruption_info, "above 31", "26.2.1.3"},
        {"INT n with instruction length 16", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::software_interrupt, 0x80, false).raw); v.set(field::entry_instruction_length, 16); v.set(field::guest_rflags, 0x202); }, field::entry_instruction_length, "instruction length", "26.2.1.3"},
        {"error code bit 15", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 13, true).raw); v.set(field::entry_exception_error_code, 0x8000); }, field::entry_exception_error_code, "31:15", "26.2.1.3"},
        // 26.2.2-26.2.4 host
        {"host CR0.PG clear", guest_mode::long64, [](auto& v) { v.set(field::host_cr0, 0x33); }, field::host_cr0, "host CR0", "26.2.2"},
        {"host CR4.VMXE clear", guest_mode::long64, [](auto& v) { v.set(field::host_cr4, 0x20); }, field::host_cr4, "host CR4", "26.2.2"},
        {"host EFER.LMA clear", guest_mode::long64, [](auto& v) { v.set(field::host_efer, 0x100); }, field::host_efer, "LMA", "26.2.2"},
        {"host SYSENTER_EIP non-canonical", guest_mode::long64, [](auto& v) { v.set(field::host_sysenter_eip, 0x0000800000000000); }, field::host_sysenter_eip, "canonical", "26.2.2"},
        {"32-bit host", guest_mode::long64, [](auto& v) { v.set(field::exit_controls, v.get(field::exit_controls) & ~bits(exit_ctl::host_address_space_size)); v.set(field::host_efer, 0); }, field::exit_controls, "address-space size", "26.2.4"},
        {"host TR selector 0", guest_mode::long64, [](auto& v) { v.set(field::host_tr_selector, 0); }, field::host_tr_selector, "TR selector is 0", "26.2.3"},
        {"host SS with RPL 3", guest_mode::long64, [](auto& v) { v.set(field::host_ss_selector, 0x13); }, field::host_ss_selector, "RPL", "26.2.3"},
        {"host GS base non-canonical", guest_mode::long64, [](auto& v) { v.set(field::host_gs_base, 0x1234567812345678); }, field::host_gs_base, "canonical", "26.2.3"},
        // 26.3.1 guest
        {"guest CR0.NE clear", guest_mode::long64, [](auto& v) { v.set(field::guest_cr0, v.get(field::guest_cr0) & ~hv::x86::cr0::ne); }, field::guest_cr0, "FIXED", "26.3.1.1"},
        {"guest CR0 PG without PE", guest_mode::real, [](auto& v) { v.set(field::guest_cr0, v.get(field::guest_cr0) | hv::x86::cr0::pg); }, field::guest_cr0, "PG set without", "26.3.1.1"},
        {"IA-32e guest without PAE", guest_mode::long64, [](auto& v) { v.set(field::guest_cr4, v.get(field::guest_cr4) & ~hv::x86::cr4::pae); }, field::guest_cr4, "PAE", "26.3.1.1"},
        {"PCIDE in a 32-bit guest", guest_mode::protected32, [](auto& v) { v.set(field::guest_cr4, v.get(field::guest_cr4) | hv::x86::cr4::pcide); }, field::guest_cr4, "PCIDE", "26.3.1.1"},
        {"guest EFER.LMA without IA-32e entry", guest_mode::protected32, [](auto& v) { v.set(field::guest_efer, hv::x86::efer::lma | hv::x86::efer::lme); }, field::guest_efer, "LMA", "26.3.1.1"},
        {"guest EFER reserved bit", guest_mode::long64, [](auto& v) { v.set(field::guest_efer, v.get(field::guest_efer) | 2); }, field::guest_efer, "reserved", "26.3.1.1"},
        {"guest CR3 beyond MAXPHYADDR", guest_mode::long64, [](auto& v) { v.set(field::guest_cr3, 1ull << 45); }, field::guest_cr3, "MAXPHYADDR", "26.3.1.1"},
        {"TR with TI", guest_mode::long64, [](auto& v) { v.set(field::guest_tr_selector, 0x1c); }, field::guest_tr_selector, "TI", "26.3.1.2"},
        {"SS DPL 3 with a data-type CS (unrestricted guest)", guest_mode::real, [](auto& v) { v.set(field::guest_cs_ar, (v.get(field::guest_cs_ar) & ~0xfull) | 3); v.set(field::guest_ss_ar, v.get(field::guest_ss_ar) | hv::cpu::ar::dpl(3)); }, field::guest_ss_ar, "SS DPL not 0", "26.3.1.2"},
        {"CS data type in protected mode without UG", guest_mode::protected32, [](auto& v) { v.set(field::proc2_controls, v.get(field::proc2_controls) & ~bits(proc2::unrestricted_guest)); v.set(field::guest_cr0, v.get(field::guest_cr0) | hv::x86::cr0::pg); v.set(field::guest_cs_ar, (v.get(field::guest_cs_ar) & ~0xfull) | 3); }, field::guest_cs_ar, "CS type", "26.3.1.2"},
        {"CS not present", guest_mode::long64, [](auto& v) { v.set(field::guest_cs_ar, v.get(field::guest_cs_ar) & ~hv::cpu::ar::p); }, field::guest_cs_ar, "present", "26.3.1.2"},
        {"64-bit CS with D set", guest_mode::long64, [](auto& v) { v.set(field::guest_cs_ar, v.get(field::guest_cs_ar) | hv::cpu::ar::db); }, field::guest_cs_ar, "D/B", "26.3.1.2"},
        {"CS G clear with 4 GiB limit", guest_mode::protected32, [](auto& v) { v.set(field::guest_cs_ar, v.get(field::guest_cs_ar) & ~hv::cpu::ar::g); }, field::guest_cs_ar, "granularity", "26.3.1.2"},
        {"CS base above 4 GiB", guest_mode::long64, [](auto& v) { v.set(field::guest_cs_base, 1ull << 32); }, field::guest_cs_base, "CS base", "26.3.1.2"},
        {"SS code type", guest_mode::protected32, [](auto& v) { v.set(field::guest_ss_ar, (v.get(field::guest_ss_ar) & ~0xfull) | 0xb); }, field::guest_ss_ar, "SS type", "26.3.1.2"},
        {"DS not accessed", guest_mode::long64, [](auto& v) { v.set(field::guest_ds_ar, v.get(field::guest_ds_ar) & ~1ull); }, field::guest_ds_ar, "accessed", "26.3.1.2"},
        {"ES reserved AR bit", guest_mode::protected32, [](auto& v) { v.set(field::guest_es_ar, v.get(field::guest_es_ar) | 0x100); }, field::guest_es_ar, "reserved", "26.3.1.2"},
        {"FS base non-canonical", guest_mode::long64, [](auto& v) { v.set(field::guest_fs_base, 0x0001000000000000); }, field::guest_fs_base, "FS base", "26.3.1.2"},
        {"16-bit TSS in an IA-32e guest", guest_mode::long64, [](auto& v) { v.set(field::guest_tr_ar, hv::cpu::ar::tss16_busy | hv::cpu::ar::p); }, field::guest_tr_ar, "TR type", "26.3.1.2"},
        {"TR unusable", guest_mode::protected32, [](auto& v) { v.set(field::guest_tr_ar, v.get(field::guest_tr_ar) | hv::cpu::ar::unusable); }, field::guest_tr_ar, "TR", "26.3.1.2"},
        {"LDTR usable with a data type", guest_mode::long64, [](auto& v) { v.set(field::guest_ldtr_ar, 0x3 | hv::cpu::ar::p); }, field::guest_ldtr_ar, "LDTR type", "26.3.1.2"},
        {"GDTR limit above 0xffff", guest_mode::long64, [](auto& v) { v.set(field::guest_gdtr_limit, 0x10000); }, field::guest_gdtr_limit, "GDTR limit", "26.3.1.3"},
        {"IDTR base non-canonical", guest_mode::long64, [](auto& v) { v.set(field::guest_idtr_base, 0x0000900000000000); }, field::guest_idtr_base, "IDTR base", "26.3.1.3"},
        {"RIP above 4 GiB in 32-bit mode", guest_mode::protected32, [](auto& v) { v.set(field::guest_rip, 1ull << 32); }, field::guest_rip, "63:32", "26.3.1.4"},
        {"RIP non-canonical in 64-bit mode", guest_mode::long64, [](auto& v) { v.set(field::guest_rip, 0x0000800000000000); }, field::guest_rip, "canonical", "26.3.1.4"},
        {"RFLAGS bit 1 clear", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0); }, field::guest_rflags, "bit 1", "26.3.1.4"},
        {"RFLAGS reserved bit 3", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0xa); }, field::guest_rflags, "reserved", "26.3.1.4"},
        {"RFLAGS.VM in real mode (segments virtual-8086 shaped)", guest_mode::real, [](auto& v) { for (auto f : {field::guest_es_ar, field::guest_cs_ar, field::guest_ss_ar, field::guest_ds_ar, field::guest_fs_ar, field::guest_gs_ar}) v.set(f, 0xf3); v.set(field::guest_rflags, 0x20002); }, field::guest_rflags, "VM", "26.3.1.4"},
        {"IRQ injected with IF clear", guest_mode::long64, [](auto& v) { v.set(field::entry_interruption_info, interruption_info::make(event_type::external_interrupt, 0x20, false).raw); }, field::guest_rflags, "IF = 0", "26.3.1.4"},
        {"activity state 5", guest_mode::long64, [](auto& v) { v.set(field::guest_activity_state, 5); }, field::guest_activity_state, "above 3", "26.3.1.5"},
        {"HLT with STI blocking", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0x202); v.set(field::guest_interruptibility, 1); v.set(field::guest_activity_state, 1); }, field::guest_activity_state, "non-active", "26.3.1.5"},
        {"#GP injected into a halted guest", guest_mode::long64, [](auto& v) { v.set(field::guest_activity_state, 1); v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 13, true).raw); }, field::guest_activity_state, "cannot take", "26.3.1.5"},
        {"STI and MOV SS blocking together", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0x202); v.set(field::guest_interruptibility, 3); }, field::guest_interruptibility, "together", "26.3.1.5"},
        {"STI blocking with IF clear", guest_mode::long64, [](auto& v) { v.set(field::guest_interruptibility, 1); }, field::guest_interruptibility, "IF = 0", "26.3.1.5"},
        {"IRQ injected under MOV SS blocking", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0x202); v.set(field::guest_interruptibility, 2); v.set(field::entry_interruption_info, interruption_info::make(event_type::external_interrupt, 0x20, false).raw); }, field::guest_interruptibility, "external interrupt", "26.3.1.5"},
        {"SMI blocking", guest_mode::long64, [](auto& v) { v.set(field::guest_interruptibility, 4); }, field::guest_interruptibility, "SMI", "26.3.1.5"},
        {"pending debug reserved bit", guest_mode::long64, [](auto& v) { v.set(field::guest_pending_dbg_exceptions, 0x10); }, field::guest_pending_dbg_exceptions, "reserved", "26.3.1.5"},
        {"halted with TF but no pending BS", guest_mode::long64, [](auto& v) { v.set(field::guest_rflags, 0x102); v.set(field::guest_activity_state, 1); }, field::guest_pending_dbg_exceptions, "BS", "26.3.1.5"},
        {"VMCS link pointer 0", guest_mode::long64, [](auto& v) { v.set(field::vmcs_link_pointer, 0); }, field::vmcs_link_pointer, "link pointer", "26.3.1.5"},
        {"PAE PDPTE with reserved bits", guest_mode::protected32, [](auto& v) { v.set(field::guest_cr0, v.get(field::guest_cr0) | hv::x86::cr0::pg); v.set(field::guest_cr4, v.get(field::guest_cr4) | hv::x86::cr4::pae); v.set(field::guest_pdpte2, 0x5000 | 1 | 1 << 5); }, field::guest_pdpte2, "PDPTE", "26.3.1.6"},
    };
    for (auto& c : cases) {
        fixture f(c.mode);
        REQUIRE(f.check().passed);
        c.mutate(f.v);
        auto r = f.check();
        CAPTURE(std::string(c.name));
        CAPTURE(printed(r, f.v));
        REQUIRE_FALSE(r.passed);
        CHECK(name(r.where) == name(c.expect));
        CHECK(std::string(r.what).find(c.rule_part) != std::string::npos);
        CHECK(std::string(r.sdm) == c.sdm);
        CHECK(r.to_status().code() == hv::errc::invalid_argument);
    }
}

TEST_CASE("entry check: legal injections and states pass") {
    fixture f(guest_mode::long64);
    f.v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 14, true).raw);
    f.v.set(field::entry_exception_error_code, 2);
    CHECK(f.check().passed);
    f.v.set(field::guest_rflags, 0x202);
    f.v.set(field::entry_interruption_info, interruption_info::make(event_type::external_interrupt, 0x30, false).raw);
    CHECK(f.check().passed);
    f.v.set(field::guest_activity_state, 1);  // an interrupt wakes a halted guest
    CHECK(f.check().passed);
    f.v.set(field::entry_interruption_info, interruption_info::make(event_type::nmi, 2, false).raw);
    CHECK(f.check().passed);

    fixture r(guest_mode::real);
    r.v.set(field::entry_interruption_info, interruption_info::make(event_type::hardware_exception, 13, false).raw);
    CHECK(r.check().passed);  // real mode: no error code pushed
}

TEST_CASE("entry check: a real-mode guest above 1 MiB (CS.base not selector * 16) is a legal entry") {
    fixture f(guest_mode::real);
    put_guest(f.v, hv::cpu::initial_state(guest_mode::real, 0x123456), f.caps);
    CHECK(f.v.get(field::guest_cs_base) == 0x120000);
    CHECK(f.v.get(field::guest_rip) == 0x3456);
    CHECK(f.check().passed);
}

TEST_CASE("entry check: zero-length software injection follows IA32_VMX_MISC[30]") {
    // Bochs' Skylake-X model sets MISC bit 30, its Haswell model does not.
    for (auto* m : {&bochs::skylake_x, &bochs::haswell_4770}) {
        fixture f(guest_mode::long64, *m);
        f.v.set(field::entry_interruption_info, interruption_info::make(event_type::software_interrupt, 0x80, false).raw);
        f.v.set(field::entry_instruction_length, 0);
        CHECK(f.check().passed == decode(*m).misc.zero_length_injection());
        f.v.set(field::entry_instruction_length, 2);
        CHECK(f.check().passed);
    }
    CHECK(decode(bochs::skylake_x).misc.zero_length_injection() != decode(bochs::haswell_4770).misc.zero_length_injection());
}

TEST_CASE("entry check: printed verdict names field, value, rule and section") {
    fixture f(guest_mode::long64);
    f.v.set(field::host_tr_selector, 0);
    auto r = f.check();
    CHECK(printed(r, f.v) == "VM entry check failed: host_tr_selector = 0x0: host TR selector is 0 (SDM 26.2.3)\n");
    fixture g(guest_mode::long64);
    CHECK(printed(g.check(), g.v) == "VM entry checks passed\n");
}
