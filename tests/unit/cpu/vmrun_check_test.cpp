#include <doctest/doctest.h>
#include <functional>
#include <memory>
#include <string>
#include "libhv/cpu/svm/setup.hpp"

using namespace hv::svm;
using hv::cpu::guest_mode;
using hv::cpu::seg;

namespace {
std::unique_ptr<vmcb> make(guest_mode mode) {
    auto v = std::make_unique<vmcb>();
    *v = vmcb{};
    put_guest(*v, hv::cpu::initial_state(mode, mode == guest_mode::real ? 0x7c00 : 0x100000, 0x2000));
    v->control.intercepts3 = bits(intercept3::cpuid, intercept3::hlt, intercept3::ioio_prot, intercept3::msr_prot,
                                  intercept3::shutdown);
    v->control.intercepts4 = bits(intercept4::vmrun, intercept4::vmmcall);
    v->control.guest_asid = 1;
    v->control.msrpm_base_pa = 0x10000;
    v->control.iopm_base_pa = 0x20000;
    v->control.np_control = 1;
    v->control.n_cr3 = 0x30000;
    return v;
}
std::string printed(const vmrun_verdict& r) {
    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    print(k, r);
    return s;
}
constexpr guest_mode all_modes[] = {guest_mode::long64, guest_mode::protected32, guest_mode::real};
} // namespace

TEST_CASE("vmrun check: libhv's VMCBs for every mode pass, and state round-trips") {
    for (auto mode : all_modes) {
        auto v = make(mode);
        CAPTURE(static_cast<int>(mode));
        CAPTURE(printed(check_vmrun(*v, {})));
        CHECK(check_vmrun(*v, {}).passed);
        hv::cpu::guest_state back{};
        get_guest(*v, back);
        auto orig = hv::cpu::initial_state(mode, mode == guest_mode::real ? 0x7c00 : 0x100000, 0x2000);
        CHECK(back.rip == orig.rip);
        CHECK(back.cr0 == orig.cr0);
        CHECK(back.efer == orig.efer);
        for (unsigned i = 0; i < hv::cpu::segment_count; ++i) {
            CAPTURE(i);
            CHECK(back.segs[i].selector == orig.segs[i].selector);
            CHECK(back.segs[i].base == orig.segs[i].base);
            CHECK(back.segs[i].limit == orig.segs[i].limit);
            CHECK(back.segs[i].access == orig.segs[i].access);
        }
    }
    auto l = make(guest_mode::long64);
    CHECK((l->state.efer & hv::x86::efer::svme) != 0);
    CHECK(l->state.cs.attrib == 0xa9b);
    CHECK(l->state.cpl == 0);
    CHECK(l->state.ldtr.attrib == 0);  // unusable -> not present
    auto r = make(guest_mode::real);
    CHECK(r->state.cs.attrib == 0x09b);
    CHECK(r->state.cs.base == 0);
}

TEST_CASE("vmrun check: each illegal state is named") {
    struct breakage {
        const char* name;
        guest_mode mode;
        std::function<void(vmcb&)> mutate;
        const char* where;
        const char* rule_part;
    };
    const breakage cases[] = {
        {"SVME clear", guest_mode::long64, [](vmcb& v) { v.state.efer &= ~hv::x86::efer::svme; }, "state.efer", "SVME"},
        {"EFER MBZ bit", guest_mode::long64, [](vmcb& v) { v.state.efer |= 1ull << 40; }, "state.efer", "MBZ"},
        {"NW without CD", guest_mode::protected32, [](vmcb& v) { v.state.cr0 |= hv::x86::cr0::nw; }, "state.cr0", "CR0.NW"},
        {"CR0 high bits", guest_mode::protected32, [](vmcb& v) { v.state.cr0 |= 1ull << 40; }, "state.cr0", "63:32"},
        {"CR3 beyond MAXPHYADDR", guest_mode::long64, [](vmcb& v) { v.state.cr3 = 1ull << 50; }, "state.cr3", "CR3"},
        {"CR4.VMXE on AMD", guest_mode::long64, [](vmcb& v) { v.state.cr4 |= 1ull << 13; }, "state.cr4", "MBZ"},
        {"DR7 high bits", guest_mode::long64, [](vmcb& v) { v.state.dr7 |= 1ull << 32; }, "state.dr7", "DR7"},
        {"long mode without PAE", guest_mode::long64, [](vmcb& v) { v.state.cr4 &= ~hv::x86::cr4::pae; }, "state.cr4", "PAE"},
        {"long mode without PE", guest_mode::long64, [](vmcb& v) { v.state.cr0 &= ~hv::x86::cr0::pe; }, "state.cr0", "PE"},
        {"CS.L and CS.D", guest_mode::long64, [](vmcb& v) { v.state.cs.attrib |= 0x400; }, "state.cs", "CS.L"},
        {"LMA without paging", guest_mode::real, [](vmcb& v) { v.state.efer |= hv::x86::efer::lma; }, "state.efer", "LMA"},
        {"VMRUN not intercepted", guest_mode::long64, [](vmcb& v) { v.control.intercepts4 = 0; }, "control.intercepts4", "VMRUN"},
        {"MSRPM unaligned", guest_mode::long64, [](vmcb& v) { v.control.msrpm_base_pa = 0x10010; }, "control.msrpm_base_pa", "MSR"},
        {"IOPM beyond MAXPHYADDR", guest_mode::long64, [](vmcb& v) { v.control.iopm_base_pa = (1ull << 40) - 0x1000; }, "control.iopm_base_pa", "I/O"},
        {"ASID 0", guest_mode::long64, [](vmcb& v) { v.control.guest_asid = 0; }, "control.guest_asid", "ASID"},
        {"NMI as exception", guest_mode::long64, [](vmcb& v) { v.control.eventinj = event::make(event_type::exception, 2).raw; }, "control.eventinj", "vector 2"},
        {"event type 5", guest_mode::long64, [](vmcb& v) { v.control.eventinj = (1ull << 31) | (5u << 8) | 13; }, "control.eventinj", "reserved"},
        {"nested CR3 beyond MAXPHYADDR", guest_mode::long64, [](vmcb& v) { v.control.n_cr3 = 1ull << 45; }, "control.n_cr3", "nested"},
    };
    for (auto& c : cases) {
        auto v = make(c.mode);
        REQUIRE(check_vmrun(*v, {}).passed);
        c.mutate(*v);
        auto r = check_vmrun(*v, {});
        CAPTURE(std::string(c.name));
        CAPTURE(printed(r));
        REQUIRE_FALSE(r.passed);
        CHECK(std::string(r.where) == c.where);
        CHECK(std::string(r.what).find(c.rule_part) != std::string::npos);
        CHECK_FALSE(r.to_status().ok());
    }
    auto ok = make(guest_mode::long64);
    ok->control.eventinj = event::make(event_type::exception, 13, 0).raw;
    CHECK(check_vmrun(*ok, {}).passed);
    CHECK(printed(check_vmrun(*ok, {})) == "VMRUN checks passed\n");
}
