#include "libhv/cpu/svm/setup.hpp"

namespace hv::svm {

namespace {
segment to_vmcb(const cpu::segment& s) {
    // An unusable segment is a null selector with P = 0 in the VMCB.
    const std::uint32_t ar = (s.access & cpu::ar::unusable) ? 0 : s.access;
    return segment{s.selector, attrib_from_ar(ar), s.limit, s.base};
}
cpu::segment from_vmcb(const segment& s) {
    std::uint32_t ar = ar_from_attrib(s.attrib);
    if (!(ar & cpu::ar::p)) ar |= cpu::ar::unusable;
    return cpu::segment{s.selector, ar, s.limit, s.base};
}
} // namespace

void put_guest(vmcb& v, const cpu::guest_state& g) {
    using cpu::seg;
    auto& s = v.state;
    s.es = to_vmcb(g[seg::es]);
    s.cs = to_vmcb(g[seg::cs]);
    s.ss = to_vmcb(g[seg::ss]);
    s.ds = to_vmcb(g[seg::ds]);
    s.fs = to_vmcb(g[seg::fs]);
    s.gs = to_vmcb(g[seg::gs]);
    s.ldtr = to_vmcb(g[seg::ldtr]);
    s.tr = to_vmcb(g[seg::tr]);
    s.gdtr = segment{0, 0, g.gdtr.limit, g.gdtr.base};
    s.idtr = segment{0, 0, g.idtr.limit, g.idtr.base};
    s.cpl = static_cast<std::uint8_t>((g.cr0 & x86::cr0::pe) ? cpu::ar::dpl_of(g[seg::ss].access) : 0);
    s.efer = g.efer | x86::efer::svme;
    s.cr0 = g.cr0;
    s.cr2 = g.cr2;
    s.cr3 = g.cr3;
    s.cr4 = g.cr4;
    s.dr6 = 0xffff0ff0;
    s.dr7 = g.dr7;
    s.rflags = g.rflags;
    s.rip = g.rip;
    s.rsp = g.regs.rsp;
    s.rax = g.regs.rax;
    s.g_pat = g.pat;
    s.sysenter_cs = g.sysenter_cs;
    s.sysenter_esp = g.sysenter_esp;
    s.sysenter_eip = g.sysenter_eip;
    v.control.interrupt_shadow = (g.interruptibility & 3) ? 1 : 0;
}

void get_guest(const vmcb& v, cpu::guest_state& g) {
    using cpu::seg;
    const auto& s = v.state;
    g[seg::es] = from_vmcb(s.es);
    g[seg::cs] = from_vmcb(s.cs);
    g[seg::ss] = from_vmcb(s.ss);
    g[seg::ds] = from_vmcb(s.ds);
    g[seg::fs] = from_vmcb(s.fs);
    g[seg::gs] = from_vmcb(s.gs);
    g[seg::ldtr] = from_vmcb(s.ldtr);
    g[seg::tr] = from_vmcb(s.tr);
    g.gdtr = {s.gdtr.base, s.gdtr.limit};
    g.idtr = {s.idtr.base, s.idtr.limit};
    g.efer = s.efer & ~x86::efer::svme;
    g.cr0 = s.cr0;
    g.cr2 = s.cr2;
    g.cr3 = s.cr3;
    g.cr4 = s.cr4;
    g.dr7 = s.dr7;
    g.rflags = s.rflags;
    g.rip = s.rip;
    g.regs.rsp = s.rsp;
    g.regs.rax = s.rax;
    g.pat = s.g_pat;
    g.sysenter_cs = s.sysenter_cs;
    g.sysenter_esp = s.sysenter_esp;
    g.sysenter_eip = s.sysenter_eip;
    g.interruptibility = (v.control.interrupt_shadow & 1) ? 1 : 0;
}

namespace {
constexpr vmrun_verdict bad(const char* where, const char* what) { return {false, where, what}; }
#define HV_REQUIRE(cond, where, what) \
    do {                              \
        if (!(cond)) return bad(where, what); \
    } while (0)
// SCE LME LMA NXE SVME LMSLE FFXSR TCE MCOMMIT INTWB AutoIBRS.
constexpr std::uint64_t efer_defined = 0x26fd01;
constexpr bool fits(std::uint64_t pa, unsigned maxphy) { return maxphy >= 64 || (pa >> maxphy) == 0; }
} // namespace

vmrun_verdict check_vmrun(const vmcb& v, const vmrun_context& cx) {
    const auto& s = v.state;
    const auto& c = v.control;
    HV_REQUIRE(s.efer & x86::efer::svme, "state.efer", "EFER.SVME is 0");
    HV_REQUIRE(!(s.efer & ~efer_defined), "state.efer", "EFER MBZ bits set");
    HV_REQUIRE(!(!(s.cr0 & x86::cr0::cd) && (s.cr0 & x86::cr0::nw)), "state.cr0", "CR0.CD = 0 with CR0.NW = 1");
    HV_REQUIRE((s.cr0 >> 32) == 0, "state.cr0", "CR0 bits 63:32 set");
    HV_REQUIRE(fits(s.cr3, cx.maxphyaddr), "state.cr3", "CR3 MBZ bits beyond MAXPHYADDR set");
    HV_REQUIRE(!(s.cr4 & ~cx.cr4_supported), "state.cr4", "CR4 MBZ bits set");
    HV_REQUIRE((s.dr6 >> 32) == 0, "state.dr6", "DR6 bits 63:32 set");
    HV_REQUIRE((s.dr7 >> 32) == 0, "state.dr7", "DR7 bits 63:32 set");
    const bool lme = s.efer & x86::efer::lme, pg = s.cr0 & x86::cr0::pg;
    if (lme && pg) {
        HV_REQUIRE(s.cr4 & x86::cr4::pae, "state.cr4", "EFER.LME and CR0.PG with CR4.PAE = 0");
        HV_REQUIRE(s.cr0 & x86::cr0::pe, "state.cr0", "EFER.LME and CR0.PG with CR0.PE = 0");
        const auto cs = ar_from_attrib(s.cs.attrib);
        HV_REQUIRE(!((s.cr4 & x86::cr4::pae) && (cs & cpu::ar::l) && (cs & cpu::ar::db)), "state.cs",
                   "long mode with CS.L and CS.D both set");
    }
    // Not an APM check: Bochs panics on it instead of failing VMRUN, and no real guest
    // wants LMA disagreeing with LME && PG.
    HV_REQUIRE(bool(s.efer & x86::efer::lma) == (lme && pg), "state.efer", "EFER.LMA differs from EFER.LME && CR0.PG (libhv rule: Bochs panics on it)");
    HV_REQUIRE(c.intercepts4 & bits(intercept4::vmrun), "control.intercepts4", "VMRUN intercept clear");
    HV_REQUIRE((c.msrpm_base_pa & 0xfff) == 0 && fits(c.msrpm_base_pa + 0x2000 - 1, cx.maxphyaddr),
               "control.msrpm_base_pa", "MSR permission map unaligned or beyond MAXPHYADDR");
    HV_REQUIRE((c.iopm_base_pa & 0xfff) == 0 && fits(c.iopm_base_pa + 0x3000 - 1, cx.maxphyaddr),
               "control.iopm_base_pa", "I/O permission map unaligned or beyond MAXPHYADDR");
    HV_REQUIRE(c.guest_asid != 0, "control.guest_asid", "ASID 0 is the host's");
    const event ev{c.eventinj};
    if (ev.valid()) {
        const auto t = static_cast<unsigned>(ev.type());
        HV_REQUIRE(t == 0 || t == 2 || t == 3 || t == 4, "control.eventinj", "event type reserved");
        if (ev.type() == event_type::exception)
            HV_REQUIRE(ev.vector() != 2 && ev.vector() <= 31, "control.eventinj",
                       "exception injected with vector 2 or above 31");
        HV_REQUIRE((ev.raw & 0x7ffff000u) == 0, "control.eventinj", "EVENTINJ reserved bits 30:12 set");
    }
    if (c.np_control & 1) HV_REQUIRE(fits(c.n_cr3, cx.maxphyaddr), "control.n_cr3", "nested CR3 beyond MAXPHYADDR");
    return {};
}

void print(const fmt::sink& out, const vmrun_verdict& r) {
    if (r.passed) fmt::format(out, "VMRUN checks passed\n");
    else fmt::format(out, "VMRUN check failed: {}: {} (APM 15.5.1)\n", r.where, r.what);
}

} // namespace hv::svm
