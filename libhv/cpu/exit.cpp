#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/exit_decode.hpp"
#include "libhv/cpu/svm/vmcb.hpp"
#include "libhv/cpu/vmx/exit.hpp"

namespace hv::cpu {

std::string_view name(exit_reason r) {
    using e = exit_reason;
    switch (r) {
    case e::cpuid: return "cpuid";
    case e::hlt: return "hlt";
    case e::io: return "io";
    case e::msr_read: return "rdmsr";
    case e::msr_write: return "wrmsr";
    case e::cr_access: return "cr";
    case e::dr_access: return "dr";
    case e::npf: return "npf";
    case e::npf_misconfig: return "ept-misconfig";
    case e::hypercall: return "hypercall";
    case e::exception: return "exception";
    case e::nmi: return "nmi";
    case e::external_interrupt: return "irq";
    case e::interrupt_window: return "irq-window";
    case e::nmi_window: return "nmi-window";
    case e::triple_fault: return "triple-fault";
    case e::invalid_guest_state: return "invalid-guest-state";
    case e::entry_failure: return "entry-failure";
    case e::entry_refused: return "entry-refused";
    case e::invlpg: return "invlpg";
    case e::rdtsc: return "rdtsc";
    case e::rdtscp: return "rdtscp";
    case e::rdpmc: return "rdpmc";
    case e::pause: return "pause";
    case e::invd: return "invd";
    case e::wbinvd: return "wbinvd";
    case e::xsetbv: return "xsetbv";
    case e::monitor: return "monitor";
    case e::mwait: return "mwait";
    case e::init: return "init";
    case e::sipi: return "sipi";
    case e::task_switch: return "task-switch";
    case e::preemption_timer: return "preemption-timer";
    case e::descriptor_table: return "descriptor-table";
    case e::virtualization: return "virtualization-insn";
    case e::smi: return "smi";
    case e::other: return "other";
    case e::count_: break;
    }
    return "?";
}

namespace {

event from_vmx_event(std::uint32_t info, std::uint32_t error) {
    vmx::interruption_info ii{info};
    event ev{};
    if (!ii.valid()) return ev;
    ev.valid = true;
    ev.vector = ii.vector();
    ev.has_error_code = ii.error_code_valid();
    ev.error_code = ev.has_error_code ? error : 0;
    switch (ii.type()) {
    case vmx::event_type::external_interrupt: ev.kind = event_kind::external_interrupt; break;
    case vmx::event_type::nmi: ev.kind = event_kind::nmi; break;
    case vmx::event_type::software_interrupt: ev.kind = event_kind::software_interrupt; break;
    case vmx::event_type::privileged_software_exception: ev.kind = event_kind::privileged_software_exception; break;
    case vmx::event_type::software_exception: ev.kind = event_kind::software_exception; break;
    default: ev.kind = event_kind::hardware_exception; break;
    }
    return ev;
}

event from_svm_event(std::uint64_t raw) {
    svm::event se{raw};
    event ev{};
    // Bochs 2.7 leaves EXITINTINFO uninitialised after a nested or shadow fault in a
    // real-mode INTn's delivery: heap bytes (0xbf... under MALLOC_PERTURB_) with the valid
    // bit set. Their reserved bits give them away; such a value is no event.
    if (!se.valid() || !se.reserved_bits_clear()) return ev;
    ev.valid = true;
    ev.vector = se.vector();
    ev.has_error_code = se.error_code_valid();
    ev.error_code = ev.has_error_code ? se.error_code() : 0;
    switch (se.type()) {
    case svm::event_type::intr: ev.kind = event_kind::external_interrupt; break;
    case svm::event_type::nmi: ev.kind = event_kind::nmi; break;
    case svm::event_type::software_interrupt: ev.kind = event_kind::software_interrupt; break;
    case svm::event_type::exception: ev.kind = event_kind::hardware_exception; break;
    default: return event{};  // types 1, 5-7 are reserved
    }
    return ev;
}

} // namespace

// Every case that has details writes its whole member; the header is reset here instead
// of clearing the record (this runs on every exit).
static void reset(exit_info& e, vendor from, std::uint64_t code, std::uint64_t rip) {
    e.reason = exit_reason::other;
    e.from = from;
    e.raw_code = code;
    e.rip = rip;
    e.instruction_length = 0;
    e.failure = {};
}

void decode(const vmx_exit_raw& raw, exit_info& e) {
    using r = vmx::exit_reason;
    if (decode_hot(raw, e)) return;
    reset(e, vendor::vmx, raw.reason, raw.rip);
    e.instruction_length = static_cast<std::uint8_t>(raw.instruction_length <= 15 ? raw.instruction_length : 0);
    e.interrupted = from_vmx_event(raw.idt_vectoring_info, raw.idt_vectoring_error);

    vmx::exit_reason_field f{raw.reason};
    switch (f.basic()) {
    case r::exception_or_nmi: {
        vmx::interruption_info ii{raw.interruption_info};
        if (ii.type() == vmx::event_type::nmi) {
            e.reason = exit_reason::nmi;
            break;
        }
        e.reason = exit_reason::exception;
        e.exception = {ii.vector(), ii.error_code_valid(), ii.error_code_valid() ? raw.interruption_error : 0,
                       ii.vector() == 14 ? raw.qualification : 0};
        break;
    }
    case r::external_interrupt: {
        vmx::interruption_info ii{raw.interruption_info};
        e.reason = exit_reason::external_interrupt;
        e.interrupt = {ii.vector(), ii.valid()};
        break;
    }
    case r::triple_fault: e.reason = exit_reason::triple_fault; break;
    case r::init_signal: e.reason = exit_reason::init; break;
    case r::sipi: e.reason = exit_reason::sipi; break;
    case r::io_smi:
    case r::other_smi: e.reason = exit_reason::smi; break;
    case r::interrupt_window:
    // The guest lowered its TPR below an interrupt held back for it: a window, as SVM's
    // V_IRQ with V_INTR_PRIO reports it.
    case r::tpr_below_threshold: e.reason = exit_reason::interrupt_window; break;
    case r::nmi_window: e.reason = exit_reason::nmi_window; break;
    case r::task_switch: e.reason = exit_reason::task_switch; break;
    case r::invd: e.reason = exit_reason::invd; break;
    case r::invlpg:
        e.reason = exit_reason::invlpg;
        e.npf = {};
        e.npf.gla = raw.qualification;
        e.npf.gla_valid = true;
        break;
    case r::rdpmc: e.reason = exit_reason::rdpmc; break;
    case r::rdtsc: e.reason = exit_reason::rdtsc; break;
    case r::rdtscp: e.reason = exit_reason::rdtscp; break;
    case r::getsec:
    case r::rsm:
    case r::vmclear:
    case r::vmlaunch:
    case r::vmptrld:
    case r::vmptrst:
    case r::vmread:
    case r::vmresume:
    case r::vmwrite:
    case r::vmxoff:
    case r::vmxon:
    case r::invept:
    case r::invvpid:
    case r::vmfunc: e.reason = exit_reason::virtualization; break;
    case r::cr_access: {
        vmx::cr_qualification q{raw.qualification};
        e.reason = exit_reason::cr_access;
        cr_op op = cr_op::write;
        switch (q.access()) {
        case vmx::cr_access_type::mov_to_cr: op = cr_op::write; break;
        case vmx::cr_access_type::mov_from_cr: op = cr_op::read; break;
        case vmx::cr_access_type::clts: op = cr_op::clts; break;
        case vmx::cr_access_type::lmsw: op = cr_op::lmsw; break;
        }
        e.cr = {q.cr(), op, q.gpr(), op == cr_op::write || op == cr_op::read, q.lmsw_source()};
        break;
    }
    case r::dr_access:
        // SDM table 27-4: DR number 2:0, direction 4 (1 = MOV from DR), GPR 11:8.
        e.reason = exit_reason::dr_access;
        e.dr = {static_cast<std::uint8_t>(raw.qualification & 7), !(raw.qualification & (1u << 4)),
                static_cast<std::uint8_t>((raw.qualification >> 8) & 0xf), true};
        break;
    case r::invalid_guest_state:
        e.reason = exit_reason::invalid_guest_state;
        e.failure = {raw.qualification};
        break;
    case r::msr_loading:
    case r::machine_check:
        e.reason = exit_reason::entry_failure;
        e.failure = {raw.qualification};
        break;
    case r::mwait: e.reason = exit_reason::mwait; break;
    case r::monitor: e.reason = exit_reason::monitor; break;
    case r::pause: e.reason = exit_reason::pause; break;
    case r::gdtr_idtr_access:
    case r::ldtr_tr_access: e.reason = exit_reason::descriptor_table; break;
    case r::ept_violation: {
        vmx::ept_violation_qualification q{raw.qualification};
        e.reason = exit_reason::npf;
        e.npf = {raw.guest_physical, q.linear_valid() ? raw.guest_linear : 0, q.linear_valid(), q.read(), q.write(),
                 q.fetch(), q.present(), q.linear_valid() && !q.final_translation()};
        break;
    }
    case r::ept_misconfig:
        e.reason = exit_reason::npf_misconfig;
        e.npf = {};
        e.npf.gpa = raw.guest_physical;
        break;
    case r::preemption_timer: e.reason = exit_reason::preemption_timer; break;
    case r::wbinvd: e.reason = exit_reason::wbinvd; break;
    case r::xsetbv: e.reason = exit_reason::xsetbv; break;
    default: e.reason = exit_reason::other; break;
    }
    return;
}

void decode(const svm_exit_raw& raw, exit_info& e) {
    using c = svm::exit_code;
    if (decode_hot(raw, e)) return;
    reset(e, vendor::svm, raw.exitcode, raw.rip);
    e.interrupted = from_svm_event(raw.exitintinfo);
    // An INTn, INT3 or INTO whose delivery the exit interrupted (a nested fault on the IVT
    // or the stack) restarts with its instruction: the VMCB's RIP is the instruction's, and
    // EVENTINJ would push that RIP as the return address, running it twice. SVM reports
    // INT3 and INTO as exceptions #BP and #OF, which nothing else raises. Not an event to
    // reinject.
    const bool software_exception = e.interrupted.kind == event_kind::hardware_exception &&
                                    (e.interrupted.vector == 3 || e.interrupted.vector == 4);
    if (e.interrupted.kind == event_kind::software_interrupt || software_exception) e.interrupted.valid = false;
    if (raw.nrips && raw.next_rip > raw.rip && raw.next_rip - raw.rip <= 15)
        e.instruction_length = static_cast<std::uint8_t>(raw.next_rip - raw.rip);

    // QEMU TCG writes VMEXIT_INVALID (-1) as a 32-bit value: take it as the 64-bit one.
    const std::uint64_t code = raw.exitcode == 0xffffffffull ? ~0ull : raw.exitcode;
    if (code <= 0x01f || (code >= 0x090 && code <= 0x09f)) {
        e.reason = exit_reason::cr_access;
        bool assisted = raw.decode_assists && svm::cr_info{raw.exitinfo1}.valid();
        bool write = code >= 0x010;
        std::uint8_t cr = static_cast<std::uint8_t>(code & 0xf);
        e.cr = {cr, write ? cr_op::write : cr_op::read, svm::cr_info{raw.exitinfo1}.gpr(), assisted, 0};
        return;
    }
    if (code <= 0x03f) {
        e.reason = exit_reason::dr_access;
        bool assisted = raw.decode_assists && svm::cr_info{raw.exitinfo1}.valid();
        e.dr = {static_cast<std::uint8_t>(code & 0xf), code >= 0x030, svm::cr_info{raw.exitinfo1}.gpr(), assisted};
        return;
    }
    if (code <= 0x05f) {
        std::uint8_t vector = static_cast<std::uint8_t>(code - 0x040);
        if (vector == 2) {
            e.reason = exit_reason::nmi;
            return;
        }
        e.reason = exit_reason::exception;
        bool ec = vmx::exception_has_error_code(vector);
        e.exception = {vector, ec, ec ? static_cast<std::uint32_t>(raw.exitinfo1) : 0,
                       vector == 14 ? raw.exitinfo2 : 0};
        return;
    }
    switch (static_cast<c>(code)) {
    case c::intr:
        e.reason = exit_reason::external_interrupt;
        e.interrupt = {0, false};
        break;
    case c::nmi: e.reason = exit_reason::nmi; break;
    case c::smi: e.reason = exit_reason::smi; break;
    case c::init: e.reason = exit_reason::init; break;
    case c::vintr: e.reason = exit_reason::interrupt_window; break;
    case c::cr0_selective_write:
        e.reason = exit_reason::cr_access;
        e.cr = {0, cr_op::write, svm::cr_info{raw.exitinfo1}.gpr(),
                raw.decode_assists && svm::cr_info{raw.exitinfo1}.valid(), 0};
        break;
    case c::idtr_read:
    case c::gdtr_read:
    case c::ldtr_read:
    case c::tr_read:
    case c::idtr_write:
    case c::gdtr_write:
    case c::ldtr_write:
    case c::tr_write: e.reason = exit_reason::descriptor_table; break;
    case c::rdtsc: e.reason = exit_reason::rdtsc; break;
    case c::rdpmc: e.reason = exit_reason::rdpmc; break;
    case c::invd: e.reason = exit_reason::invd; break;
    case c::pause: e.reason = exit_reason::pause; break;
    case c::invlpg:
        e.reason = exit_reason::invlpg;
        e.npf = {};
        e.npf.gla = raw.exitinfo1;  // with decode assists
        e.npf.gla_valid = raw.decode_assists;
        break;
    case c::task_switch: e.reason = exit_reason::task_switch; break;
    case c::shutdown: e.reason = exit_reason::triple_fault; break;
    case c::vmrun:
    case c::vmload:
    case c::vmsave:
    case c::stgi:
    case c::clgi:
    case c::skinit:
    case c::invlpga: e.reason = exit_reason::virtualization; break;
    case c::rdtscp: e.reason = exit_reason::rdtscp; break;
    case c::wbinvd: e.reason = exit_reason::wbinvd; break;
    case c::monitor: e.reason = exit_reason::monitor; break;
    case c::mwait:
    case c::mwait_conditional: e.reason = exit_reason::mwait; break;
    case c::xsetbv: e.reason = exit_reason::xsetbv; break;
    case c::npf: {
        svm::npf_info n{raw.exitinfo1};
        e.reason = exit_reason::npf;
        // NPF does not tell reads from writes: a non-write, non-fetch access is a read.
        e.npf = {raw.exitinfo2, 0, false, !n.write() && !n.fetch(), n.write(), n.fetch(), n.present(),
                 n.page_table_walk()};
        break;
    }
    case c::invalid:
        e.reason = exit_reason::invalid_guest_state;
        e.failure = {code};
        break;
    default: e.reason = exit_reason::other; break;
    }
    return;
}

exit_info decode(const vmx_exit_raw& raw) {
    exit_info e;
    decode(raw, e);
    return e;
}

exit_info decode(const svm_exit_raw& raw) {
    exit_info e;
    decode(raw, e);
    return e;
}

namespace {
std::string_view kind_name(event_kind k) {
    switch (k) {
    case event_kind::external_interrupt: return "irq";
    case event_kind::nmi: return "nmi";
    case event_kind::hardware_exception: return "exception";
    case event_kind::software_interrupt: return "int";
    case event_kind::privileged_software_exception: return "int1";
    case event_kind::software_exception: return "int3/into";
    }
    return "?";
}
} // namespace

void describe(const fmt::sink& out, const exit_info& e) {
    fmt::format(out, "{} rip={:#x}", name(e.reason), e.rip);
    switch (e.reason) {
    case exit_reason::cpuid: fmt::format(out, " leaf={:#x} sub={:#x}", e.cpuid.leaf, e.cpuid.subleaf); break;
    case exit_reason::io:
        fmt::format(out, " {} port={:#x} size={}{}{}", e.io.in ? "in" : "out", e.io.port, e.io.size,
                    e.io.string ? " string" : "", e.io.rep ? " rep" : "");
        break;
    case exit_reason::msr_read:
    case exit_reason::msr_write: fmt::format(out, " msr={:#x}", e.msr.index); break;
    case exit_reason::cr_access: {
        static constexpr const char* ops[] = {"write", "read", "clts", "lmsw"};
        fmt::format(out, " cr{} {}", e.cr.cr, ops[static_cast<unsigned>(e.cr.op)]);
        if (e.cr.gpr_known) fmt::format(out, " gpr={}", e.cr.gpr);
        break;
    }
    case exit_reason::dr_access: fmt::format(out, " dr{} {}", e.dr.dr, e.dr.write ? "write" : "read"); break;
    case exit_reason::npf:
    case exit_reason::npf_misconfig:
        fmt::format(out, " gpa={:#x} {}{}{}{}", e.npf.gpa, e.npf.read ? "r" : "", e.npf.write ? "w" : "",
                    e.npf.fetch ? "x" : "", e.npf.present ? " present" : " not-present");
        if (e.npf.gla_valid) fmt::format(out, " gla={:#x}", e.npf.gla);
        break;
    case exit_reason::hypercall: fmt::format(out, " nr={:#x}", e.hypercall.nr); break;
    case exit_reason::exception:
        fmt::format(out, " vector={}", e.exception.vector);
        if (e.exception.has_error_code) fmt::format(out, " error={:#x}", e.exception.error_code);
        if (e.exception.vector == 14) fmt::format(out, " addr={:#x}", e.exception.fault_address);
        break;
    case exit_reason::external_interrupt:
        if (e.interrupt.vector_known) fmt::format(out, " vector={:#x}", e.interrupt.vector);
        break;
    case exit_reason::invlpg:
        if (e.npf.gla_valid) fmt::format(out, " addr={:#x}", e.npf.gla);
        break;
    case exit_reason::invalid_guest_state:
    case exit_reason::entry_failure: fmt::format(out, " code={:#x}", e.failure.code); break;
    case exit_reason::other: fmt::format(out, " raw={:#x}", e.raw_code); break;
    case exit_reason::entry_refused:
        fmt::format(out, " error={}", e.failure.code);
        if (e.from == vendor::vmx)
            fmt::format(out, " ({})", vmx::name(static_cast<vmx::instruction_error>(e.failure.code)));
        break;
    default: break;
    }
    if (e.interrupted.valid) {
        fmt::format(out, " (interrupted {} {}", kind_name(e.interrupted.kind), e.interrupted.vector);
        if (e.interrupted.has_error_code) fmt::format(out, " error={:#x}", e.interrupted.error_code);
        fmt::format(out, ")");
    }
}

void exit_log::print(const fmt::sink& out) const {
    fmt::format(out, "exits: {} total\n", total());
    for (std::size_t i = 0; i < exit_reason_count; ++i)
        if (counts_[i]) fmt::format(out, "  {}: {}\n", name(static_cast<exit_reason>(i)), counts_[i]);
    const std::size_t n = retained();
    for (std::size_t k = n; k-- > 0;) {
        fmt::format(out, "  #{} ", total() - 1 - k);
        describe(out, recent(k));
        fmt::format(out, "\n");
    }
}

} // namespace hv::cpu
