#include <doctest/doctest.h>
#include <string>
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/svm/vmcb.hpp"
#include "libhv/cpu/vmx/exit.hpp"

using namespace hv::cpu;

namespace {
std::string text(const exit_info& e) {
    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    describe(k, e);
    return s;
}
vmx_exit_raw vmx_raw(hv::vmx::exit_reason r) {
    vmx_exit_raw raw{};
    raw.reason = static_cast<std::uint32_t>(r);
    raw.rip = 0x1000;
    return raw;
}
svm_exit_raw svm_raw(hv::svm::exit_code c, bool nrips = true) {
    svm_exit_raw raw{};
    raw.exitcode = static_cast<std::uint64_t>(c);
    raw.rip = 0x2000;
    raw.nrips = nrips;
    return raw;
}
} // namespace

TEST_CASE("exit: CPUID, VMCALL, VMMCALL, HLT from both vendors") {
    auto v = vmx_raw(hv::vmx::exit_reason::cpuid);
    v.instruction_length = 2;
    v.rax = 0x80000001;
    v.rcx = 7;
    auto e = decode(v);
    CHECK(e.reason == exit_reason::cpuid);
    CHECK(e.from == vendor::vmx);
    CHECK(e.instruction_length == 2);
    CHECK(e.cpuid.leaf == 0x80000001);
    CHECK(e.cpuid.subleaf == 7);
    CHECK(text(e) == "cpuid rip=0x1000 leaf=0x80000001 sub=0x7");

    auto s = svm_raw(hv::svm::exit_code::cpuid);
    s.next_rip = 0x2002;
    s.rax = 1;
    auto se = decode(s);
    CHECK(se.reason == exit_reason::cpuid);
    CHECK(se.instruction_length == 2);
    CHECK(se.cpuid.leaf == 1);

    auto no_nrips = svm_raw(hv::svm::exit_code::cpuid, false);
    no_nrips.next_rip = 0x2002;  // garbage without NRIPS: must be ignored
    CHECK(decode(no_nrips).instruction_length == 0);

    auto vc = vmx_raw(hv::vmx::exit_reason::vmcall);
    vc.rax = 42;
    CHECK(decode(vc).reason == exit_reason::hypercall);
    CHECK(decode(vc).hypercall.nr == 42);
    auto mc = svm_raw(hv::svm::exit_code::vmmcall);
    mc.rax = 43;
    CHECK(decode(mc).reason == exit_reason::hypercall);
    CHECK(decode(mc).hypercall.nr == 43);

    CHECK(decode(vmx_raw(hv::vmx::exit_reason::hlt)).reason == exit_reason::hlt);
    CHECK(decode(svm_raw(hv::svm::exit_code::hlt)).reason == exit_reason::hlt);
}

TEST_CASE("exit: port I/O decodes identically from both vendors") {
    // rep outsw to 0x3f8, 32-bit addressing.
    auto v = vmx_raw(hv::vmx::exit_reason::io_instruction);
    v.qualification = 0x3f8ull << 16 | 1u << 5 | 1u << 4 | 1;
    v.instruction_info = 1u << 7;
    v.instruction_length = 3;
    auto s = svm_raw(hv::svm::exit_code::ioio, false);
    s.exitinfo1 = 0x3f8ull << 16 | 1u << 8 | 1u << 5 | 1u << 3 | 1u << 2;
    s.exitinfo2 = s.rip + 3;
    auto a = decode(v), b = decode(s);
    for (auto* e : {&a, &b}) {
        CHECK(e->reason == exit_reason::io);
        CHECK(e->io.port == 0x3f8);
        CHECK(e->io.size == 2);
        CHECK_FALSE(e->io.in);
        CHECK(e->io.string);
        CHECK(e->io.rep);
        CHECK(e->io.address_size == 32);
        CHECK(e->instruction_length == 3);  // SVM: from EXITINFO2 even without NRIPS
    }
    CHECK(text(a).find("out port=0x3f8 size=2 string rep") != std::string::npos);

    auto in = vmx_raw(hv::vmx::exit_reason::io_instruction);
    in.qualification = 0x60ull << 16 | 1u << 6 | 1u << 3 | 0;
    auto ie = decode(in);
    CHECK(ie.io.in);
    CHECK(ie.io.size == 1);
    CHECK(ie.io.address_size == 0);
}

TEST_CASE("exit: MSR reads and writes") {
    auto r = vmx_raw(hv::vmx::exit_reason::rdmsr);
    r.rcx = 0xc0000080;
    CHECK(decode(r).reason == exit_reason::msr_read);
    CHECK(decode(r).msr.index == 0xc0000080);
    auto w = vmx_raw(hv::vmx::exit_reason::wrmsr);
    w.rcx = 0x1b;
    CHECK(decode(w).reason == exit_reason::msr_write);
    auto sr = svm_raw(hv::svm::exit_code::msr);
    sr.rcx = 0x10;
    CHECK(decode(sr).reason == exit_reason::msr_read);
    sr.exitinfo1 = 1;
    CHECK(decode(sr).reason == exit_reason::msr_write);
    CHECK(decode(sr).msr.index == 0x10);
    CHECK(text(decode(sr)) == "wrmsr rip=0x2000 msr=0x10");
}

TEST_CASE("exit: CR accesses") {
    auto v = vmx_raw(hv::vmx::exit_reason::cr_access);
    v.qualification = 5u << 8 | 0u << 4 | 3;  // mov cr3, rbp
    auto e = decode(v);
    CHECK(e.reason == exit_reason::cr_access);
    CHECK(e.cr.cr == 3);
    CHECK(e.cr.op == cr_op::write);
    CHECK(e.cr.gpr == 5);
    CHECK(e.cr.gpr_known);
    v.qualification = 3u << 4 | 0xabcdull << 16;
    CHECK(decode(v).cr.op == cr_op::lmsw);
    CHECK(decode(v).cr.lmsw_source == 0xabcd);
    CHECK_FALSE(decode(v).cr.gpr_known);

    auto s = svm_raw(static_cast<hv::svm::exit_code>(0x014));  // write CR4
    s.exitinfo1 = 1ull << 63 | 2;
    s.decode_assists = true;
    auto se = decode(s);
    CHECK(se.reason == exit_reason::cr_access);
    CHECK(se.cr.cr == 4);
    CHECK(se.cr.op == cr_op::write);
    CHECK(se.cr.gpr == 2);
    CHECK(se.cr.gpr_known);
    s.decode_assists = false;
    CHECK_FALSE(decode(s).cr.gpr_known);
    CHECK(decode(svm_raw(static_cast<hv::svm::exit_code>(0x000))).cr.op == cr_op::read);
    CHECK(decode(svm_raw(hv::svm::exit_code::cr0_selective_write)).cr.cr == 0);
}

TEST_CASE("exit: nested page faults") {
    auto v = vmx_raw(hv::vmx::exit_reason::ept_violation);
    v.qualification = 1u << 1 | 1u << 3 | 1u << 7 | 1u << 8;  // write to a read-only final translation
    v.guest_physical = 0xfee00000;
    v.guest_linear = 0xffff800000001000;
    auto e = decode(v);
    CHECK(e.reason == exit_reason::npf);
    CHECK(e.npf.gpa == 0xfee00000);
    CHECK(e.npf.write);
    CHECK(e.npf.present);
    CHECK(e.npf.gla_valid);
    CHECK(e.npf.gla == 0xffff800000001000);
    CHECK_FALSE(e.npf.page_walk);

    auto s = svm_raw(hv::svm::exit_code::npf);
    s.exitinfo1 = 1ull << 33 | 1u << 0;  // present, read, during a guest page walk
    s.exitinfo2 = 0x5000;
    auto se = decode(s);
    CHECK(se.reason == exit_reason::npf);
    CHECK(se.npf.gpa == 0x5000);
    CHECK(se.npf.read);
    CHECK_FALSE(se.npf.write);
    CHECK(se.npf.present);
    CHECK(se.npf.page_walk);
    CHECK(text(se) == "npf rip=0x2000 gpa=0x5000 r present");

    auto mc = vmx_raw(hv::vmx::exit_reason::ept_misconfig);
    mc.guest_physical = 0x9000;
    CHECK(decode(mc).reason == exit_reason::npf_misconfig);
    CHECK(decode(mc).npf.gpa == 0x9000);
}

TEST_CASE("exit: exceptions, NMIs, interrupts, windows, triple fault, entry failures") {
    auto v = vmx_raw(hv::vmx::exit_reason::exception_or_nmi);
    v.interruption_info = hv::vmx::interruption_info::make(hv::vmx::event_type::hardware_exception, 14, true).raw;
    v.interruption_error = 6;
    v.qualification = 0xdead000;
    auto e = decode(v);
    CHECK(e.reason == exit_reason::exception);
    CHECK(e.exception.vector == 14);
    CHECK(e.exception.has_error_code);
    CHECK(e.exception.error_code == 6);
    CHECK(e.exception.fault_address == 0xdead000);
    v.interruption_info = hv::vmx::interruption_info::make(hv::vmx::event_type::nmi, 2, false).raw;
    CHECK(decode(v).reason == exit_reason::nmi);

    auto sp = svm_raw(static_cast<hv::svm::exit_code>(0x040 + 13));
    sp.exitinfo1 = 0x10;
    CHECK(decode(sp).exception.vector == 13);
    CHECK(decode(sp).exception.error_code == 0x10);
    auto ud = svm_raw(static_cast<hv::svm::exit_code>(0x040 + 6));
    ud.exitinfo1 = 0x55;  // no error code for #UD: ignored
    CHECK_FALSE(decode(ud).exception.has_error_code);
    CHECK(decode(ud).exception.error_code == 0);

    auto irq = vmx_raw(hv::vmx::exit_reason::external_interrupt);
    irq.interruption_info = hv::vmx::interruption_info::make(hv::vmx::event_type::external_interrupt, 0x30, false).raw;
    CHECK(decode(irq).interrupt.vector_known);
    CHECK(decode(irq).interrupt.vector == 0x30);
    CHECK_FALSE(decode(svm_raw(hv::svm::exit_code::intr)).interrupt.vector_known);

    CHECK(decode(vmx_raw(hv::vmx::exit_reason::interrupt_window)).reason == exit_reason::interrupt_window);
    CHECK(decode(svm_raw(hv::svm::exit_code::vintr)).reason == exit_reason::interrupt_window);
    CHECK(decode(vmx_raw(hv::vmx::exit_reason::triple_fault)).reason == exit_reason::triple_fault);
    CHECK(decode(svm_raw(hv::svm::exit_code::shutdown)).reason == exit_reason::triple_fault);

    auto bad = vmx_raw(hv::vmx::exit_reason::invalid_guest_state);
    bad.reason |= 1u << 31;
    CHECK(decode(bad).reason == exit_reason::invalid_guest_state);
    CHECK(decode(svm_raw(hv::svm::exit_code::invalid)).reason == exit_reason::invalid_guest_state);
    auto qemu_invalid = svm_raw(hv::svm::exit_code::invalid);
    qemu_invalid.exitcode = 0xffffffff;  // QEMU TCG's 32-bit -1
    CHECK(decode(qemu_invalid).reason == exit_reason::invalid_guest_state);
    CHECK(decode(vmx_raw(hv::vmx::exit_reason::msr_loading)).reason == exit_reason::entry_failure);
    CHECK(decode(vmx_raw(hv::vmx::exit_reason::vmxon)).reason == exit_reason::virtualization);
    CHECK(decode(svm_raw(hv::svm::exit_code::vmrun)).reason == exit_reason::virtualization);
    CHECK(decode(vmx_raw(static_cast<hv::vmx::exit_reason>(71))).reason == exit_reason::other);
}

TEST_CASE("exit: interrupted event delivery is reported for re-injection") {
    auto v = vmx_raw(hv::vmx::exit_reason::ept_violation);
    v.idt_vectoring_info = hv::vmx::interruption_info::make(hv::vmx::event_type::hardware_exception, 13, true).raw;
    v.idt_vectoring_error = 0x20;
    auto e = decode(v);
    CHECK(e.interrupted.valid);
    CHECK(e.interrupted.kind == event_kind::hardware_exception);
    CHECK(e.interrupted.vector == 13);
    CHECK(e.interrupted.error_code == 0x20);
    CHECK(text(e).find("(interrupted exception 13 error=0x20)") != std::string::npos);

    auto s = svm_raw(hv::svm::exit_code::npf);
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::intr, 0x21).raw;
    auto se = decode(s);
    CHECK(se.interrupted.valid);
    CHECK(se.interrupted.kind == event_kind::external_interrupt);
    CHECK(se.interrupted.vector == 0x21);
    CHECK_FALSE(decode(svm_raw(hv::svm::exit_code::npf)).interrupted.valid);
    // An INTn interrupted by a nested fault restarts from its own RIP: never reinjected.
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::software_interrupt, 0x10).raw;
    CHECK_FALSE(decode(s).interrupted.valid);
    // INT3 and INTO (reported as #BP and #OF) restart the same way; #UD does not.
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::exception, 3).raw;
    CHECK_FALSE(decode(s).interrupted.valid);
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::exception, 4).raw;
    CHECK_FALSE(decode(s).interrupted.valid);
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::exception, 6).raw;
    CHECK(decode(s).interrupted.valid);
    s.exitintinfo = 0xbfbfbfbfbfbfbfbfull;  // a reserved type (7): no event
    CHECK_FALSE(decode(s).interrupted.valid);
    // Bochs' uninitialised EXITINTINFO with a valid type: its reserved bits 30:12 say so.
    s.exitintinfo = 0x5a5a5a5a5a5a5a5aull | 1ull << 31;  // type 2 (NMI), vector 0x5a
    CHECK_FALSE(decode(s).interrupted.valid);
    s.exitintinfo = hv::svm::event::make(hv::svm::event_type::exception, 14, 0x2).raw;
    CHECK(decode(s).interrupted.valid);
}

TEST_CASE("exit log: counters and a ring of the last exits") {
    exit_log log;
    CHECK(log.retained() == 0);
    for (unsigned i = 0; i < 40; ++i) {
        auto v = vmx_raw(i % 4 == 0 ? hv::vmx::exit_reason::hlt : hv::vmx::exit_reason::cpuid);
        v.rip = 0x1000 + i;
        v.rax = i;
        log.record(decode(v));
    }
    CHECK(log.total() == 40);
    CHECK(log.count(exit_reason::hlt) == 10);
    CHECK(log.count(exit_reason::cpuid) == 30);
    CHECK(log.count(exit_reason::io) == 0);
    CHECK(log.retained() == exit_log::ring_size);
    CHECK(log.recent(0).rip == 0x1000 + 39);
    CHECK(log.recent(exit_log::ring_size - 1).rip == 0x1000 + 40 - exit_log::ring_size);

    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    log.print(k);
    CHECK(s.find("exits: 40 total\n") == 0);
    CHECK(s.find("  hlt: 10\n") != std::string::npos);
    CHECK(s.find("  cpuid: 30\n") != std::string::npos);
    CHECK(s.find("#39 cpuid rip=0x1027 leaf=0x27") != std::string::npos);
    CHECK(s.find("#8 ") != std::string::npos);
    CHECK(s.find("#7 ") == std::string::npos);  // dropped from the ring
    CHECK(s.find("#8 ") < s.find("#39 "));    // oldest first
    log.clear();
    CHECK(log.total() == 0);
}
