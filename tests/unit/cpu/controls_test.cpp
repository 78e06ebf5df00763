#include <doctest/doctest.h>
#include <string>
#include "libhv/cpu/vmx/controls.hpp"
#include "tests/unit/cpu/bochs_caps.hpp"

using namespace hv::vmx;

namespace {
std::string printed(const report& r) {
    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    print(k, r);
    return s;
}

// What the VMX backend asks for.
requests libhv_requests() {
    requests r{};
    r[control_set::pin] = {bits(pin::external_interrupt_exiting, pin::nmi_exiting), bits(pin::virtual_nmis)};
    r[control_set::proc] = {bits(proc::hlt_exiting, proc::io_bitmaps, proc::msr_bitmaps),
                            bits(proc::interrupt_window_exiting, proc::nmi_window_exiting)};
    r[control_set::proc2] = {bits(proc2::ept), bits(proc2::vpid, proc2::unrestricted_guest, proc2::rdtscp)};
    r[control_set::exit] = {bits(exit_ctl::host_address_space_size, exit_ctl::save_efer, exit_ctl::load_efer),
                            bits(exit_ctl::ack_interrupt_on_exit)};
    r[control_set::entry] = {bits(entry_ctl::load_efer), 0};
    return r;
}

const hv::vmx::capability_msrs* const models[] = {&bochs::skylake_x, &bochs::haswell_4770};
} // namespace

TEST_CASE("controls: decode Bochs capability MSRs") {
    for (auto* m : models) {
        auto c = decode(*m);
        CHECK(c.uses_true_msrs);
        CHECK(c.basic.revision() != 0);
        CHECK(c.basic.region_size() == 4096);
        CHECK(c.basic.memory_type() == 6);
        CHECK(c.misc.activity_hlt());
        CHECK(c.misc.cr3_targets() == 4);
        CHECK(c.ept_vpid.walk_length4());
        CHECK(c.ept_vpid.memtype_wb());
        CHECK(c.ept_vpid.invvpid_single());
        // The TRUE procbased MSR lets CR3-load/store exiting be 0; the plain one does not.
        CHECK_FALSE((c.of(control_set::proc).allowed0 & bits(proc::cr3_load_exiting)));
        CHECK((allowed::from_msr(m->procbased).allowed0 & bits(proc::cr3_load_exiting)));
        CHECK((c.of(control_set::proc2).allowed1 & bits(proc2::unrestricted_guest)));
    }
    // Skylake-X offers PML and TSC scaling; Haswell does not.
    CHECK((decode(bochs::skylake_x).of(control_set::proc2).allowed1 & bits(proc2::pml)));
    CHECK_FALSE((decode(bochs::haswell_4770).of(control_set::proc2).allowed1 & bits(proc2::pml)));
}

TEST_CASE("controls: libhv's request derives on both Bochs models, every value permitted") {
    for (auto* m : models) {
        auto c = decode(*m);
        auto d = derive_all(c, libhv_requests());
        REQUIRE(d.ok());
        for (unsigned i = 0; i < control_set_count; ++i) {
            auto s = static_cast<control_set>(i);
            CAPTURE(std::string(name(s)));
            CHECK(c.of(s).permits(d->value(s)));
            CHECK((d->value(s) & libhv_requests()[s].required) == libhv_requests()[s].required);
            CHECK(d->sets[i].missing() == 0);
        }
        CHECK((d->value(control_set::proc) & bits(proc::secondary_controls)));
        CHECK((d->value(control_set::proc2) & bits(proc2::unrestricted_guest)));
        CHECK_FALSE((d->value(control_set::proc) & bits(proc::cr3_load_exiting)));  // TRUE MSRs avoid it
    }
}

TEST_CASE("controls: a required control refused is an error naming it") {
    auto req = libhv_requests();
    req[control_set::proc2].required |= bits(proc2::pml);
    auto hsw = derive_all(decode(bochs::haswell_4770), req);
    REQUIRE_FALSE(hsw.ok());
    CHECK(hsw.code() == hv::errc::not_supported);
    CHECK(std::string(hsw.err().what) == "enable PML");
    CHECK(derive_all(decode(bochs::skylake_x), req).ok());

    // The same control only wished for is refused and reported, not fatal.
    req = libhv_requests();
    req[control_set::proc2].optional |= bits(proc2::pml);
    auto ok = derive_all(decode(bochs::haswell_4770), req);
    REQUIRE(ok.ok());
    CHECK((*ok)[control_set::proc2].refused == bits(proc2::pml));
    auto text = printed((*ok)[control_set::proc2]);
    CHECK(text.find("refused: [enable PML]") != std::string::npos);
    CHECK(text.find("[enable EPT]") != std::string::npos);
}

TEST_CASE("controls: without TRUE MSRs default1 bits are forced and reported") {
    auto m = bochs::skylake_x;
    m.basic &= ~(1ull << 55);
    auto c = decode(m);
    CHECK_FALSE(c.uses_true_msrs);
    auto d = derive_all(c, libhv_requests());
    REQUIRE(d.ok());
    auto& p = (*d)[control_set::proc];
    CHECK((p.forced & bits(proc::cr3_load_exiting, proc::cr3_store_exiting)));
    CHECK((p.value & default1[1]) == default1[1]);
    CHECK(printed(p).find("forced: [bit 1]") != std::string::npos);
    CHECK(printed(p).find("[CR3-load exiting]") != std::string::npos);
}

TEST_CASE("controls: dependencies between controls") {
    auto c = decode(bochs::skylake_x);
    requests r{};
    r[control_set::proc2] = {0, bits(proc2::unrestricted_guest, proc2::pml)};  // no EPT
    r[control_set::pin] = {0, bits(pin::virtual_nmis)};                        // no NMI exiting
    r[control_set::proc] = {0, bits(proc::nmi_window_exiting)};
    auto d = derive_all(c, r);
    REQUIRE(d.ok());
    CHECK((*d)[control_set::proc2].refused == bits(proc2::unrestricted_guest, proc2::pml));
    CHECK(d->value(control_set::proc2) == 0);
    CHECK_FALSE((d->value(control_set::proc) & bits(proc::secondary_controls)));
    CHECK_FALSE((d->value(control_set::pin) & bits(pin::virtual_nmis)));
    CHECK_FALSE((d->value(control_set::proc) & bits(proc::nmi_window_exiting)));

    r[control_set::proc2].required = bits(proc2::unrestricted_guest);
    auto bad = derive_all(c, r);
    REQUIRE_FALSE(bad.ok());
    CHECK(std::string(bad.err().what) == "unrestricted guest");

    // No secondary controls at all (Bochs bx_generic with vmx=1): EPT is refused.
    auto m = bochs::skylake_x;
    m.procbased &= ~(1ull << 63);
    m.true_procbased &= ~(1ull << 63);
    auto nosec = derive_all(decode(m), libhv_requests());
    REQUIRE_FALSE(nosec.ok());
    CHECK(std::string(nosec.err().what) == "enable EPT");
}

TEST_CASE("controls: derive on synthetic allowed values") {
    allowed a{0x0000000f, 0x000000ff};
    auto r = derive(control_set::proc, {0x30, 0x300}, a);
    CHECK(r.value == 0x3f);
    CHECK(r.refused == 0x300);
    CHECK(r.forced == 0x0f);
    CHECK(r.missing() == 0);
    CHECK(r.granted() == 0x30);
    CHECK(a.permits(r.value));
    CHECK_FALSE(a.permits(0x30));
    CHECK_FALSE(a.permits(0x10f));
}

TEST_CASE("controls: CR0/CR4 fixed bits, unrestricted guest relaxing PE and PG") {
    auto c = decode(bochs::skylake_x);
    auto strict = cr0_fixed(c, false);
    auto ug = cr0_fixed(c, true);
    CHECK(strict.violations(0) == (hv::x86::cr0::pe | hv::x86::cr0::ne | hv::x86::cr0::pg));
    CHECK(ug.violations(0) == hv::x86::cr0::ne);
    CHECK(ug.apply(0) == hv::x86::cr0::ne);
    CHECK(strict.apply(0x10) == (0x10 | hv::x86::cr0::pe | hv::x86::cr0::ne | hv::x86::cr0::pg));
    auto cr4 = cr4_fixed(c);
    CHECK(cr4.violations(0) == hv::x86::cr4::vmxe);
    CHECK(cr4.violations(hv::x86::cr4::vmxe | (1ull << 23)) == (1ull << 23));  // CET is beyond Bochs' fixed1
    CHECK(cr4.apply(1ull << 23) == hv::x86::cr4::vmxe);
}

TEST_CASE("controls: VMXON plan from Bochs values and feature-control states") {
    const std::uint64_t cr0 = 0x80000011, cr4 = 0x20;
    auto p = plan_vmxon(bochs::skylake_x_cpuid1_ecx, bochs::skylake_x, cr0, cr4);
    REQUIRE(p.ok());
    CHECK(p->revision == (bochs::skylake_x.basic & 0x7fffffff));
    CHECK(p->region_size == 4096);
    CHECK_FALSE(p->write_feature_control);
    CHECK(p->cr0 == (cr0 | hv::x86::cr0::ne));
    CHECK(p->cr4 == (cr4 | hv::x86::cr4::vmxe));

    auto m = bochs::skylake_x;
    m.feature_control = 0;
    auto unlocked = plan_vmxon(bochs::skylake_x_cpuid1_ecx, m, cr0, cr4);
    REQUIRE(unlocked.ok());
    CHECK(unlocked->write_feature_control);
    CHECK(unlocked->feature_control == 5);

    m.feature_control = 1;
    auto locked = plan_vmxon(bochs::skylake_x_cpuid1_ecx, m, cr0, cr4);
    CHECK(locked.code() == hv::errc::permission);
    CHECK(plan_vmxon(bochs::skylake_x_cpuid1_ecx & ~0x20u, bochs::skylake_x, cr0, cr4).code() ==
          hv::errc::not_supported);
}
