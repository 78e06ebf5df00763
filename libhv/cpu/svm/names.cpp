#include "libhv/core/format.hpp"
#include "libhv/cpu/svm/vmcb.hpp"

namespace hv::svm {

std::string_view name(exit_code c, char (&buf)[24]) {
    const auto v = static_cast<std::uint64_t>(c);
    auto ranged = [&](const char* f, std::uint64_t n) {
        std::size_t len = fmt::format_to(buf, sizeof buf, f, n);
        return std::string_view(buf, len < sizeof buf ? len : sizeof buf - 1);
    };
    if (v <= 0x00f) return ranged("read CR{}", v);
    if (v <= 0x01f) return ranged("write CR{}", v - 0x010);
    if (v <= 0x02f) return ranged("read DR{}", v - 0x020);
    if (v <= 0x03f) return ranged("write DR{}", v - 0x030);
    if (v <= 0x05f) return ranged("exception {}", v - 0x040);
    if (v >= 0x090 && v <= 0x09f) return ranged("write CR{} (trap)", v - 0x090);
    using e = exit_code;
    switch (c) {
    case e::intr: return "INTR";
    case e::nmi: return "NMI";
    case e::smi: return "SMI";
    case e::init: return "INIT";
    case e::vintr: return "VINTR";
    case e::cr0_selective_write: return "CR0 selective write";
    case e::idtr_read: return "IDTR read";
    case e::gdtr_read: return "GDTR read";
    case e::ldtr_read: return "LDTR read";
    case e::tr_read: return "TR read";
    case e::idtr_write: return "IDTR write";
    case e::gdtr_write: return "GDTR write";
    case e::ldtr_write: return "LDTR write";
    case e::tr_write: return "TR write";
    case e::rdtsc: return "RDTSC";
    case e::rdpmc: return "RDPMC";
    case e::pushf: return "PUSHF";
    case e::popf: return "POPF";
    case e::cpuid: return "CPUID";
    case e::rsm: return "RSM";
    case e::iret: return "IRET";
    case e::swint: return "software interrupt";
    case e::invd: return "INVD";
    case e::pause: return "PAUSE";
    case e::hlt: return "HLT";
    case e::invlpg: return "INVLPG";
    case e::invlpga: return "INVLPGA";
    case e::ioio: return "IOIO";
    case e::msr: return "MSR";
    case e::task_switch: return "task switch";
    case e::ferr_freeze: return "FERR freeze";
    case e::shutdown: return "shutdown";
    case e::vmrun: return "VMRUN";
    case e::vmmcall: return "VMMCALL";
    case e::vmload: return "VMLOAD";
    case e::vmsave: return "VMSAVE";
    case e::stgi: return "STGI";
    case e::clgi: return "CLGI";
    case e::skinit: return "SKINIT";
    case e::rdtscp: return "RDTSCP";
    case e::icebp: return "ICEBP";
    case e::wbinvd: return "WBINVD";
    case e::monitor: return "MONITOR";
    case e::mwait: return "MWAIT";
    case e::mwait_conditional: return "MWAIT (armed)";
    case e::xsetbv: return "XSETBV";
    case e::rdpru: return "RDPRU";
    case e::efer_write_trap: return "EFER write (trap)";
    case e::invlpgb: return "INVLPGB";
    case e::invlpgb_illegal: return "INVLPGB (illegal)";
    case e::invpcid: return "INVPCID";
    case e::mcommit: return "MCOMMIT";
    case e::tlbsync: return "TLBSYNC";
    case e::npf: return "nested page fault";
    case e::avic_incomplete_ipi: return "AVIC incomplete IPI";
    case e::avic_noaccel: return "AVIC no acceleration";
    case e::vmgexit: return "VMGEXIT";
    case e::invalid: return "VMRUN: invalid guest state";
    case e::busy: return "VMRUN: VMSA busy";
    default: break;
    }
    return "?";
}

} // namespace hv::svm
