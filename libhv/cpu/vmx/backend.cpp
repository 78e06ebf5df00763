#include "libhv/cpu/vmx/backend.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/cpu/cr_decode.hpp"
#include "libhv/cpu/exit_decode.hpp"
#include "libhv/cpu/insn/emulate.hpp"
#include "libhv/cpu/host_timer.hpp"
#include "libhv/cpu/real_mode.hpp"
#include "libhv/cpu/vmx/entry_check.hpp"
#include "libhv/cpu/vmx/exit.hpp"
#include "libhv/cpu/vmx/insn.hpp"
#include "libhv/cpu/vmx/setup.hpp"

extern "C" int hv_vmx_run(hv::cpu::gprs* regs, std::uint64_t launched, hv::cpu::vcpu* v,
                          int (*exit_handler)(hv::cpu::vcpu*));
extern "C" char hv_vmx_exit[];
extern "C" int hv_vmx_exit_handler(hv::cpu::vcpu* v);
extern "C" int hv_vmx_guarded_exit_handler(hv::cpu::vcpu* v);

namespace hv::vmx {

requests default_requests() {
    requests r{};
    r[control_set::pin] = {bits(pin::external_interrupt_exiting, pin::nmi_exiting),
                           bits(pin::virtual_nmis, pin::preemption_timer)};
    // CR8: TPR shadow where offered; enable() asks for CR8-load/store exiting otherwise.
    r[control_set::proc] = {bits(proc::hlt_exiting, proc::io_bitmaps, proc::msr_bitmaps), bits(proc::tpr_shadow)};
    // EPT and unrestricted guest are what nested paging needs; without them only
    // shadow-paged vCPUs (vcpu_arch::shadow_paging) run.
    r[control_set::proc2] = {0, bits(proc2::ept, proc2::unrestricted_guest, proc2::vpid)};
    // Without the EFER controls (bx_generic) the guest runs on the host's EFER (NXE),
    // LMA/LME following the IA-32e-mode-guest control: enough for shadow-paged guests.
    r[control_set::exit] = {bits(exit_ctl::host_address_space_size), bits(exit_ctl::save_efer, exit_ctl::load_efer)};
    r[control_set::entry] = {0, bits(entry_ctl::load_efer)};
    return r;
}

namespace {
capability_msrs read_msrs() {
    capability_msrs m{};
    m.feature_control = x86::rdmsr(msr::feature_control);
    m.basic = x86::rdmsr(msr::basic);
    m.pinbased = x86::rdmsr(msr::pinbased_ctls);
    m.procbased = x86::rdmsr(msr::procbased_ctls);
    m.exit = x86::rdmsr(msr::exit_ctls);
    m.entry = x86::rdmsr(msr::entry_ctls);
    m.misc = x86::rdmsr(msr::misc);
    m.cr0_fixed0 = x86::rdmsr(msr::cr0_fixed0);
    m.cr0_fixed1 = x86::rdmsr(msr::cr0_fixed1);
    m.cr4_fixed0 = x86::rdmsr(msr::cr4_fixed0);
    m.cr4_fixed1 = x86::rdmsr(msr::cr4_fixed1);
    m.vmcs_enum = x86::rdmsr(msr::vmcs_enum);
    if (m.procbased >> 63) m.procbased2 = x86::rdmsr(msr::procbased_ctls2);
    if ((m.procbased2 >> 32) & bits(proc2::ept, proc2::vpid)) m.ept_vpid_cap = x86::rdmsr(msr::ept_vpid_cap);
    if (basic_info{m.basic}.true_controls()) {
        m.true_pinbased = x86::rdmsr(msr::true_pinbased_ctls);
        m.true_procbased = x86::rdmsr(msr::true_procbased_ctls);
        m.true_exit = x86::rdmsr(msr::true_exit_ctls);
        m.true_entry = x86::rdmsr(msr::true_entry_ctls);
    }
    return m;
}

status failed(vcpu_arch& a, const char* what) {
    fmt::format_to(a.message, sizeof a.message, "{}", what);
    return fail(errc::invalid_argument, a.message);
}

host_state current_host() {
    host_state h{};
    h.cr0 = x86::read_cr0();
    h.cr3 = x86::read_cr3();
    h.cr4 = x86::read_cr4();
    std::uint16_t ds, es, fs, gs;
    asm volatile("mov %%ds, %0; mov %%es, %1; mov %%fs, %2; mov %%gs, %3" : "=r"(ds), "=r"(es), "=r"(fs), "=r"(gs));
    h.cs = x86::selector::code64;
    h.ss = x86::selector::data;
    h.ds = ds;
    h.es = es;
    h.fs = fs;
    h.gs = gs;
    h.tr = x86::selector::tss;
    h.fs_base = x86::rdmsr(x86::msr::fs_base);
    h.gs_base = x86::rdmsr(x86::msr::gs_base);
    h.tr_base = x86::tss_base();
    h.gdtr_base = x86::current_gdt().base;
    h.idtr_base = x86::current_idt().base;
    h.sysenter_cs = static_cast<std::uint32_t>(x86::rdmsr(0x174));
    h.sysenter_esp = x86::rdmsr(0x175);
    h.sysenter_eip = x86::rdmsr(0x176);
    h.efer = x86::rdmsr(x86::msr::efer);
    h.pat = x86::rdmsr(x86::msr::pat);
    h.rip = reinterpret_cast<std::uintptr_t>(hv_vmx_exit);
    return h;
}

[[gnu::noinline]] bool load_current(vcpu_arch& a) {
    // The vCPU whose loop runs (a handler of it is here) loses its current VMCS.
    if (a.cpu->in_loop) a.cpu->in_loop->request_return();
    if (vmptrld(a.vmcs_pa) != insn_status::ok) return false;
    a.cpu->current_vmcs = a.vmcs_pa;
    return true;
}
inline bool make_current(vcpu_arch& a) { return a.cpu->current_vmcs == a.vmcs_pa || load_current(a); }

vcpu_arch& arch(cpu::vcpu& v) { return *static_cast<vcpu_arch*>(v.arch()); }

std::uint8_t read_tpr(const cpu::vcpu& v) {
    const vcpu_arch& a = *static_cast<const vcpu_arch*>(v.arch());
    return a.cr8_exiting ? a.tpr : a.virtual_apic[0x80];
}

void write_tpr(cpu::vcpu& v, std::uint8_t tpr) {
    vcpu_arch& a = arch(v);
    a.tpr = tpr;
    a.virtual_apic[0x80] = tpr;
}

// Shadow paging without EPT (SDM 29.3 "VMX support for paging without EPT"): MOV to and
// from CR3 exit (no CR3-target values), INVLPG exits, every #PF exits (error-code
// mask = match = 0 with bit 14 set), and the guest owns no paging bit of CR0/CR4.
constexpr std::uint64_t shadow_cr0_owned = x86::cr0::pe | x86::cr0::pg | x86::cr0::wp;
constexpr std::uint64_t shadow_cr4_owned =
    x86::cr4::pse | x86::cr4::pae | x86::cr4::pge | x86::cr4::pcide | x86::cr4::smep | x86::cr4::smap;

status put_shadow_controls(vcpu_arch& a, vmcs_image& img) {
    const capabilities& caps = a.cpu->caps;
    const std::uint32_t proc =
        a.proc_base | bits(proc::invlpg_exiting, proc::cr3_load_exiting, proc::cr3_store_exiting);
    if (!caps.of(control_set::proc).permits(proc)) return failed(a, "CPU refuses INVLPG or CR3 exiting");
    a.proc_base = proc;
    img.set(field::proc_controls, proc);
    if (proc & bits(proc::secondary_controls))
        img.set(field::proc2_controls,
                a.cpu->controls.value(control_set::proc2) & ~bits(proc2::ept, proc2::unrestricted_guest));
    img.set(field::exception_bitmap, 1u << 14);
    img.set(field::pf_error_code_mask, 0);
    img.set(field::pf_error_code_match, 0);
    return {};
}

// Real CR0/CR4 of a shadow-paged guest: paging always on through the shadow.
std::uint64_t shadow_real_cr0(const capabilities& caps, std::uint64_t guest) {
    return cr0_fixed(caps, false).apply(cpu::shadow_real_cr0(guest));
}
std::uint64_t shadow_real_cr4(const capabilities& caps, std::uint64_t guest) {
    return cr4_fixed(caps).apply(cpu::shadow_real_cr4(guest));
}
using cpu::shadow_real_efer;

// Real mode under shadow paging: without EPT there is no unrestricted guest, so a guest
// whose CR0.PE is clear runs in virtual-8086 mode (SDM 20.2; VM-entry checks 27.3.1.2):
// RFLAGS.VM with IOPL 3 (CLI, STI, PUSHF and POPF run natively), its segments as
// vm86 has them (base = selector * 16, limit 0xffff, rights 0xf3), the real CR0.PE/PG on
// the direct shadow of guest-physical memory, while the guest reads its own CR0 (PE
// clear) through the read shadow, SMSW included. Privileged instructions raise #GP at
// CPL 3, which exits (vm86_gp): MOV to/from CR0/CR3/CR4, CLTS, LMSW, HLT and IN/OUT (when
// the vm86 TSS's I/O permission check refuses them) go on as the exits they are elsewhere,
// string I/O (INS/OUTS, REP or not) is handed on as an io exit too, LGDT/LIDT are
// emulated; any other ends the guest, naming it. The VMCS's IDTR has limit
// 0 meanwhile (the guest's is kept aside), so whatever would go through the IDT in vm86
// raises #GP instead of running a gate made of IVT bytes, and is delivered as real mode
// delivers it (deliver_in_vm86: cpu::deliver_real_mode through the guest's IVT): INT n,
// INT3 and INTO from the #GP exit (the instruction at CS:IP), a fault or NMI from the #GP
// exit's IDT-vectoring information, and the events libhv injects (external interrupts,
// exceptions) at entry instead of injecting them. Emulated rather than CR4.VME with a
// redirection bitmap: VME redirects only INT n (not INT3, INTO, faults or external
// interrupts), and needs a vm86 TSS in guest-physical memory the guest cannot see.
// IRET, CLI, STI, PUSHF and POPF run natively (IOPL 3). Setting CR0.PE leaves vm86
// (leave_vm86): the segments keep selector, base and limit as protected-mode ones (16-bit
// code, data, DPL 0), as a CPU's caches keep them until the guest's far jump reloads CS,
// which then runs natively.
// Not modelled: a #GP the guest's own code raises in real mode (a segment-limit fault:
// it ends the guest by name rather than going to IVT vector 13), OUTS with a segment
// override other than DS, the IOPL the guest reads while in real mode (3: PUSHF shows
// it), and a return to real mode.
constexpr std::uint64_t iopl_mask = 3ull << 12;
constexpr std::uint32_t vm86_segment_ar = 0xf3, pm_code16_ar = 0x9b, pm_data_ar = 0x93;
constexpr field nth(field first, unsigned i) { return static_cast<field>(raw(first) + 2 * i); }

status put_vm86(vcpu_arch& a, vmcs_image& img, const cpu::guest_state& g) {
    for (unsigned i = 0; i < 6; ++i) {
        const cpu::segment& s = g.segs[i];
        if (s.base != std::uint64_t{s.selector} << 4)
            return failed(a, "real mode under shadow paging on VMX (vm86): a segment base is not its selector * 16");
        img.set(nth(field::guest_es_limit, i), 0xffff);
        img.set(nth(field::guest_es_ar, i), vm86_segment_ar);
    }
    img.set(field::guest_rflags, g.rflags | x86::rflags::vm | iopl_mask);
    img.set(field::exception_bitmap, img.get(field::exception_bitmap) | 1u << 13);
    img.set(field::guest_idtr_limit, 0);
    a.vm86 = true;
    a.vm86_iopl = g.rflags & iopl_mask;
    a.vm86_idtr = g.idtr;
    return {};
}

// Real-mode delivery of `vector` while in vm86 (cpu::deliver_real_mode): FLAGS (with the
// guest's IOPL), CS and `ip` pushed through the vCPU's guest-memory access, IF/TF/AC
// cleared, CS:IP from the guest's IVT (vm86_idtr), STI/MOV-SS blocking ended; an NMI
// blocks NMIs until the handler's IRET (which runs natively and unblocks them, virtual
// NMIs or not). Written into the VMCS (current) and v.state (RIP, RSP, RFLAGS).
// False: the guest is failed, by name.
bool deliver_in_vm86(cpu::vcpu& v, vcpu_arch& a, std::uint8_t vector, std::uint16_t ip, bool nmi = false) {
    const cpu::code_reader& access = v.code();
    struct bound {
        cpu::vcpu* v;
        const cpu::code_reader* access;
    } ctx{&v, &access};
    const cpu::guest_memory mem{
        &ctx,
        [](void* c, std::uint64_t la, void* dst, std::size_t n) {
            auto* b = static_cast<bound*>(c);
            return b->access->read(*b->v, la, dst, n, b->access->ctx).ok();
        },
        [](void* c, std::uint64_t la, const void* src, std::size_t n) {
            auto* b = static_cast<bound*>(c);
            return b->access->write(*b->v, la, src, n, b->access->ctx).ok();
        }};
    const std::uint64_t rflags = read<field::guest_rflags>();
    const std::uint64_t rsp = read<field::guest_rsp>();
    cpu::real_mode_frame f{.cs = static_cast<std::uint16_t>(read<field::guest_cs_selector>()),
                           .ip = ip,
                           .sp = static_cast<std::uint16_t>(rsp),
                           .ss_base = read<field::guest_ss_base>(),
                           .rflags = (rflags & ~(x86::rflags::vm | iopl_mask)) | a.vm86_iopl};
    const std::uint16_t at_cs = f.cs, at_ip = static_cast<std::uint16_t>(v.state.rip);
    const status delivered = access.read && access.write ? cpu::deliver_real_mode(f, vector, a.vm86_idtr, mem)
                                                         : fail(errc::not_supported, "no guest-memory write path");
    if (!delivered) {
        fmt::format_to(a.message, sizeof a.message, "real mode under shadow paging on VMX (vm86): vector {:#x} at {:04x}:{:04x} not delivered: {}",
                       vector, at_cs, at_ip, delivered.err().what);
        v.fail(a.message);
        return false;
    }
    v.state.rflags = (f.rflags & ~iopl_mask) | x86::rflags::vm | iopl_mask;
    v.state.regs.rsp = (rsp & ~0xffffull) | f.sp;
    v.state.rip = f.ip;
    constexpr std::uint32_t blocking_by_sti_or_mov_ss = 3, blocking_by_nmi = 8;
    v.state.interruptibility = (read<field::guest_interruptibility>() & ~blocking_by_sti_or_mov_ss) | (nmi ? blocking_by_nmi : 0);
    (void)write<field::guest_rflags>(v.state.rflags);
    (void)write<field::guest_rsp>(v.state.regs.rsp);
    (void)write<field::guest_rip>(v.state.rip);
    (void)write<field::guest_interruptibility>(v.state.interruptibility);
    (void)write<field::guest_cs_selector>(f.cs);
    (void)write<field::guest_cs_base>(std::uint64_t{f.cs} << 4);
    return true;
}

// CR0.PE set: protected mode with the real-mode segment caches. The VMCS is current.
void leave_vm86(vcpu_arch& a, cpu::vcpu& v) {
    for (unsigned i = 0; i < 6; ++i)
        (void)vmwrite(raw(nth(field::guest_es_ar, i)), i == 1 ? pm_code16_ar : pm_data_ar);
    const std::uint64_t rflags = (read<field::guest_rflags>() & ~(x86::rflags::vm | iopl_mask)) | a.vm86_iopl;
    (void)write<field::guest_rflags>(rflags);
    if (!v.dirty(cpu::vcpu::dirty_rflags)) v.state.rflags = rflags;
    else v.state.rflags = (v.state.rflags & ~(x86::rflags::vm | iopl_mask)) | a.vm86_iopl;
    (void)write<field::exception_bitmap>(read<field::exception_bitmap>() & ~(1u << 13));
    (void)write<field::guest_idtr_base>(a.vm86_idtr.base);
    (void)write<field::guest_idtr_limit>(a.vm86_idtr.limit);
    a.vm86 = false;
}

status put_shadow_guest(vcpu_arch& a, vmcs_image& img, const cpu::guest_state& g) {
    const capabilities& caps = a.cpu->caps;
    a.vm86 = false;
    if (!(g.cr0 & x86::cr0::pe)) HV_TRY(put_vm86(a, img, g));
    if (g.cr4 & x86::cr4::pcide) return failed(a, "shadow paging hides PCID: CR4.PCIDE must be 0");
    const auto f0 = cr0_fixed(caps, false);
    const auto f4 = cr4_fixed(caps);
    img.set(field::guest_cr0, shadow_real_cr0(caps, g.cr0));
    img.set(field::cr0_guest_host_mask, f0.must_be1 | ~f0.may_be1 | shadow_cr0_owned);
    img.set(field::cr0_read_shadow, g.cr0);
    img.set(field::guest_cr4, shadow_real_cr4(caps, g.cr4));
    img.set(field::cr4_guest_host_mask, f4.must_be1 | ~f4.may_be1 | shadow_cr4_owned);
    img.set(field::cr4_read_shadow, g.cr4);
    img.set(field::guest_cr3, a.shadow_root);
    a.guest_cr3 = g.cr3;
    a.guest_efer = g.efer;
    if (img.get(field::entry_controls) & bits(entry_ctl::load_efer))
        img.set(field::guest_efer, shadow_real_efer(g.efer));
    else if (!(x86::rdmsr(x86::msr::efer) & x86::efer::nxe))
        return failed(a, "shadow paging without the load-EFER control needs the host's EFER.NXE = 1");
    return {};
}

// The VMX-preemption timer's value when no deadline is set: its longest count.
constexpr std::uint32_t no_preemption = 0xffffffffu;

status prepare(cpu::vcpu& v) {
    vcpu_arch& a = arch(v);
    const std::uint8_t tpr = read_tpr(v);
    cpu_context& c = *a.cpu;
    vmcs_image& img = a.image;
    img = vmcs_image{};
    put_controls(img, c.controls);
    const std::uint32_t pinv = c.controls.value(control_set::pin);
    if (!(pinv & bits(pin::preemption_timer))) a.host_timer_preemption = true;
    else if (a.host_timer_preemption) img.set(field::pin_controls, pinv & ~bits(pin::preemption_timer));
    if (c.controls.value(control_set::proc2) & bits(proc2::vpid)) img.set(field::vpid, a.vpid);
    // CR8 first: the shadow-paging controls add their exits to this base.
    constexpr std::uint32_t cr8_exits = bits(proc::cr8_load_exiting, proc::cr8_store_exiting);
    std::uint32_t procv = c.controls.value(control_set::proc);
    if (a.cr8_exiting || !(procv & bits(proc::tpr_shadow))) {
        a.cr8_exiting = true;
        procv = (procv & ~bits(proc::tpr_shadow)) | cr8_exits;
    } else {
        img.set(field::virtual_apic_address, cpu::pa_of(a.virtual_apic));
        img.set(field::tpr_threshold, 0);
    }
    write_tpr(v, tpr);
    a.tpr_threshold = 0;
    a.proc_base = procv;
    img.set(field::proc_controls, procv);
    if (a.shadow_paging) {
        HV_TRY(put_shadow_controls(a, img));
    } else {
        if (!(c.controls.value(control_set::proc2) & bits(proc2::ept)))
            return failed(a, "this CPU has no EPT: run the guest with shadow paging");
        img.set(field::ept_pointer, (a.nested_root ? a.nested_root : c.ept_root) | 6 | 3 << 3);
        img.set(field::exception_bitmap, 0);
    }
    if (!a.host_timer_preemption) img.set(field::preemption_timer_value, no_preemption);
    a.timer_armed = false;
    v.set_armed_deadline(0);
    img.set(field::io_bitmap_a, cpu::pa_of(a.io_bitmaps));
    img.set(field::io_bitmap_b, cpu::pa_of(a.io_bitmaps + 4096));
    img.set(field::msr_bitmap, cpu::pa_of(a.msr_bitmap));
    put_host(img, current_host());
    put_guest(img, v.state, c.caps);
    if (a.shadow_paging) HV_TRY(put_shadow_guest(a, img, v.state));

    const entry_context cx{&c.caps, c.maxphyaddr};
    if (auto r = check_entry(img, cx); !r.passed && a.software_checks) {
        fmt::format_to(a.message, sizeof a.message, "VM entry check failed: {} = {:#x}: {} (SDM {})", name(r.where),
                       img.get(r.where), r.what, r.sdm);
        return fail(errc::invalid_argument, a.message);
    }
    if (vmclear(a.vmcs_pa) != insn_status::ok) return failed(a, "VMCLEAR failed");
    a.cpu->current_vmcs = 0;
    if (!make_current(a)) return failed(a, "VMPTRLD failed");
    a.launched = false;
    a.proc_in_vmcs = a.proc_base;
    a.windows_on = false;
    const char* bad = nullptr;
    img.for_each([&](field f, std::uint64_t val) {
        if (!bad && vmwrite(raw(f), val) != insn_status::ok) bad = name(f).data();
    });
    if (bad) {
        fmt::format_to(a.message, sizeof a.message, "VMWRITE {} failed: {}", bad,
                       name(static_cast<instruction_error>(read(field::vm_instruction_error))));
        return fail(errc::invalid_argument, a.message);
    }
    return {};
}

event_type vmx_type(cpu::event_kind k) {
    switch (k) {
    case cpu::event_kind::external_interrupt: return event_type::external_interrupt;
    case cpu::event_kind::nmi: return event_type::nmi;
    case cpu::event_kind::software_interrupt: return event_type::software_interrupt;
    case cpu::event_kind::privileged_software_exception: return event_type::privileged_software_exception;
    case cpu::event_kind::software_exception: return event_type::software_exception;
    default: return event_type::hardware_exception;
    }
}

// Injection and window requests: only when an event waits or a window was asked before.
[[gnu::noinline]] void apply_events(cpu::vcpu& v, vcpu_arch& a, const cpu::event_queue::decision& d) {
    if (d.inject.valid && a.vm86) {
        // Injection in vm86 would go through the protected-mode IDT: delivered as real
        // mode does instead (no error code). A software event returns past its instruction.
        const bool software = d.inject.kind == cpu::event_kind::software_interrupt ||
                              d.inject.kind == cpu::event_kind::software_exception ||
                              d.inject.kind == cpu::event_kind::privileged_software_exception;
        const std::uint64_t ip = v.state.rip + (software ? v.current_exit().instruction_length : 0);
        (void)deliver_in_vm86(v, a, d.inject.vector, static_cast<std::uint16_t>(ip), d.inject.kind == cpu::event_kind::nmi);
    } else if (d.inject.valid) {
        // Real-mode guests (unrestricted guest) take exceptions without error codes;
        // the guest owns CR0.PE, so ask the VMCS rather than v.state.
        const bool real = !(read<field::guest_cr0>() & x86::cr0::pe);
        const bool ec = d.inject.has_error_code && !real;
        const auto t = vmx_type(d.inject.kind);
        (void)vmwrite(raw(field::entry_interruption_info), interruption_info::make(t, d.inject.vector, ec).raw);
        if (ec) (void)vmwrite(raw(field::entry_exception_error_code), d.inject.error_code);
        if (t == event_type::software_interrupt || t == event_type::software_exception ||
            t == event_type::privileged_software_exception)
            (void)vmwrite(raw(field::entry_instruction_length), v.current_exit().instruction_length);
    }
    // A TPR threshold (TPR shadow only: with CR8 exits every CR8 write exits anyway) must
    // not exceed the VTPR's class (SDM 26.2.1.1), which holds here: the threshold is an
    // interrupt class the TPR masks.
    const std::uint8_t threshold = a.cr8_exiting ? 0 : d.tpr_threshold & 0xf;
    if (threshold != a.tpr_threshold) {
        (void)vmwrite(raw(field::tpr_threshold), threshold);
        a.tpr_threshold = threshold;
    }
    std::uint32_t procv = a.proc_base;
    if (d.irq_window) procv |= bits(proc::interrupt_window_exiting);
    if (d.nmi_window && (a.cpu->controls.value(control_set::pin) & bits(pin::virtual_nmis)))
        procv |= bits(proc::nmi_window_exiting);
    if (procv != a.proc_in_vmcs) {
        (void)vmwrite(raw(field::proc_controls), procv);
        a.proc_in_vmcs = procv;
    }
    a.windows_on = d.irq_window || d.nmi_window || threshold;
    // The event that asked for a window still waits (events not empty), and a TPR
    // threshold comes with an interrupt source the loop polls anyway; this says where
    // they are set that the loop must return at the next exit to take them down.
    if (a.windows_on) v.request_return();
}

void load_flags(cpu::vcpu& v);

[[gnu::noinline]] void entry_refused(cpu::vcpu& v, int r, cpu::exit_info& out) {
    out = cpu::exit_info{};
    out.from = cpu::vendor::vmx;
    out.reason = cpu::exit_reason::entry_refused;
    out.rip = v.state.rip;
    out.failure.code = r == 2 ? read(field::vm_instruction_error) : 0;
}

// Everything but the hot exits: read what the reason needs, then the generic decoder.
[[gnu::noinline]] void decode_other(const cpu::vcpu& v, cpu::exit_info& out) {
    cpu::vmx_exit_raw raw;
    raw.reason = read<field::exit_reason>();
    raw.rip = v.state.rip;
    raw.instruction_length = read<field::exit_instruction_length>();
    raw.rax = v.state.regs.rax;
    raw.rcx = v.state.regs.rcx;
    raw.idt_vectoring_info = read<field::idt_vectoring_info>();
    if (raw.idt_vectoring_info >> 31) raw.idt_vectoring_error = read<field::idt_vectoring_error_code>();
    switch (static_cast<exit_reason>(raw.reason & 0xffff)) {
    case exit_reason::exception_or_nmi:
    case exit_reason::external_interrupt:
        raw.interruption_info = read<field::exit_interruption_info>();
        raw.interruption_error = read<field::exit_interruption_error_code>();
        raw.qualification = read<field::exit_qualification>();
        break;
    case exit_reason::ept_violation:
    case exit_reason::ept_misconfig:
        raw.guest_physical = read<field::guest_physical_address>();
        raw.guest_linear = read<field::guest_linear_address>();
        raw.qualification = read<field::exit_qualification>();
        break;
    case exit_reason::interrupt_window:
    case exit_reason::nmi_window:
    case exit_reason::triple_fault:
        break;
    default:
        raw.qualification = read<field::exit_qualification>();
        break;
    }
    cpu::decode(raw, out);
}

// Preemption: the VMX-preemption timer counts down from each entry at the TSC's rate
// divided by 2^IA32_VMX_MISC[4:0]; without it, the host LAPIC timer, whose interrupt
// exits through external-interrupt exiting and is taken after the exit. True: the host
// timer is in use for this entry.
// The VMX-preemption timer's value that ends the guest's run at `deadline` (host TSC, not 0).
[[gnu::always_inline]] inline void load_preemption_timer(const vcpu_arch& a, std::uint64_t deadline) {
    const std::uint64_t now = x86::rdtsc();
    std::uint64_t ticks = deadline > now ? (deadline - now) >> a.cpu->caps.misc.preemption_timer_rate() : 0;
    if (ticks > no_preemption) ticks = no_preemption;
    (void)write<field::preemption_timer_value>(static_cast<std::uint32_t>(ticks));
}
// The armed deadline is what v.armed_deadline() says (vcpu::settle keeps the loop going
// while the entry hook leaves it unchanged; see keep_preemption).
[[gnu::noinline]] bool arm_preemption(cpu::vcpu& v, vcpu_arch& a, std::uint64_t deadline) {
    a.timer_armed = deadline != 0;
    v.set_armed_deadline(deadline);
    if (!a.host_timer_preemption) {
        if (deadline) load_preemption_timer(a, deadline);
        else (void)write<field::preemption_timer_value>(no_preemption);
        return false;
    }
    if (!cpu::host_timer::ready() && (!deadline || !cpu::host_timer::init().ok())) {
        v.set_armed_deadline(0);
        return a.timer_armed = false;
    }
    cpu::host_timer::arm(deadline);
    return true;
}
[[gnu::noinline]] void reload_preemption_timer(const vcpu_arch& a, std::uint64_t deadline) {
    load_preemption_timer(a, deadline);
}
// Entering again inside the loop with a deadline armed. The VMX-preemption timer counts
// down from each entry's value (the exit does not save what is left), so it is loaded
// with what is left now: 0 if the deadline passed (the guest exits before its first
// instruction). The host LAPIC timer keeps counting across entries; its interrupt, if it
// fired meanwhile, is still pending (the host runs the loop with IF = 0) and makes the
// entry exit at once through external-interrupt exiting.
[[gnu::always_inline]] inline void keep_preemption(cpu::vcpu& v, const vcpu_arch& a) {
    if (const std::uint64_t deadline = v.armed_deadline(); deadline && !a.host_timer_preemption) [[unlikely]]
        reload_preemption_timer(a, deadline);
}

// The state handlers changed (v.take_dirty()) into the current VMCS, besides RIP.
[[gnu::noinline]] void write_back_more(cpu::vcpu& v, std::uint8_t dirty) {
    if (dirty & cpu::vcpu::dirty_rflags) (void)write<field::guest_rflags>(v.state.rflags);
    if (dirty & cpu::vcpu::dirty_rsp) (void)write<field::guest_rsp>(v.state.regs.rsp);
    if (dirty & cpu::vcpu::dirty_interruptibility) (void)write<field::guest_interruptibility>(v.state.interruptibility);
    // The VMCS has no CR2 or XCR0: the guest runs with the CPU's (see run()).
    if (dirty & cpu::vcpu::dirty_cr2) x86::write_cr2(v.state.cr2);
    if (dirty & cpu::vcpu::dirty_xcr0) cpu::load_xcr0(v.state.xcr0);
}
// RIP always (state.rip is the exit's or a handler's), the rest as marked. dirty_rip
// itself needs nothing (RIP is always written), so it may stay set: the hot path then
// tests the other bits only.
[[gnu::always_inline]] inline void write_back(cpu::vcpu& v) {
    (void)write<field::guest_rip>(v.state.rip);
    if (v.dirty_bits() & ~cpu::vcpu::dirty_rip) [[unlikely]] write_back_more(v, v.take_dirty());
}

// The exit into the log's next slot: the state every handler may use, then as few
// exit-information fields as the reason needs (the hot instruction exits: none beyond
// the length, I/O its qualification); then `hot(reason)` or, for any other exit, `other()`.
template <class Hot, class Other>
[[gnu::always_inline]] inline int read_exit(cpu::vcpu& v, cpu::exit_info& out, Hot hot, Other other) {
    cpu::vmx_exit_raw raw;
    raw.reason = read<field::exit_reason>();
    raw.rip = read<field::guest_rip>();
    raw.instruction_length = read<field::exit_instruction_length>();
    raw.rax = v.state.regs.rax;
    raw.rcx = v.state.regs.rcx;
    v.state.rip = raw.rip;
    // RSP and RFLAGS only on request (load_flags), or for string I/O and the other exits.
    v.state.interruptibility = read<field::guest_interruptibility>();
    return cpu::decode_hot(
        raw, out,
        [](std::uint64_t& q, std::uint32_t& info) {
            q = read<field::exit_qualification>();
            info = read<field::exit_instruction_info>();
        },
        hot, other);
}

// RSP and RFLAGS of the current VMCS's exit, but not those a handler marked dirty.
[[gnu::noinline]] void load_flags_current(cpu::vcpu& v) {
    if (!v.dirty(cpu::vcpu::dirty_rflags)) v.state.rflags = read<field::guest_rflags>();
    if (!v.dirty(cpu::vcpu::dirty_rsp)) v.state.regs.rsp = read<field::guest_rsp>();
}

// After a hot exit's handler left the loop word non-zero: dirty state to write back, or
// something for the run loop (vcpu::settle polls an entry hook and interrupt source).
[[gnu::noinline]] int settle(cpu::vcpu& v) {
    if (!v.settle()) return 1;
    keep_preemption(v, arch(v));
    write_back(v);
    return 0;
}

enum class vm86_step : std::uint8_t { done, dispatch, failed };

// A #GP in vm86 mode (see put_vm86): the privileged instruction at CS:IP.
[[gnu::noinline]] vm86_step vm86_gp(cpu::vcpu& v, vcpu_arch& a, cpu::exit_info& slot) {
    const std::uint64_t cs_base = read<field::guest_cs_base>();
    auto failed_with = [&](const char* what, std::uint8_t opcode) {
        fmt::format_to(a.message, sizeof a.message, "real mode under shadow paging on VMX (vm86): {} at {:04x}:{:04x} (opcode {:#x})",
                       what, read<field::guest_cs_selector>(), v.state.rip, opcode);
        v.fail(a.message);
        return vm86_step::failed;
    };
    // A fault (#UD, #DE, ...) or NMI whose delivery through the IDT (limit 0) raised this
    // #GP: delivered through the IVT instead, returning to where the CPU would (RIP).
    if (slot.interrupted.valid && (slot.interrupted.kind == cpu::event_kind::hardware_exception ||
                                   slot.interrupted.kind == cpu::event_kind::nmi)) {
        if (!deliver_in_vm86(v, a, slot.interrupted.vector, static_cast<std::uint16_t>(v.state.rip),
                             slot.interrupted.kind == cpu::event_kind::nmi))
            return vm86_step::failed;
        return vm86_step::done;
    }
    std::uint8_t bytes[insn::max_length] = {};
    const auto& reader = v.code();
    if (!reader.read || !reader.read(v, cs_base + v.state.rip, bytes, sizeof bytes, reader.ctx).ok())
        return failed_with("no instruction bytes", 0);
    auto in = insn::decode({bytes, sizeof bytes}, insn::mode::code16);
    if (!in) return failed_with("an invalid instruction", bytes[0]);
    // INT n, INT3 and INTO fault while being delivered through the IDT (limit 0; IDT
    // vectoring holds them, not requeued): delivered here as real mode does instead.
    if (in->map == 0 && (in->opcode == 0xcd || in->opcode == 0xcc || in->opcode == 0xce)) {
        const std::uint8_t vector = in->opcode == 0xcd ? bytes[in->length - 1] : in->opcode == 0xcc ? 3 : 4;
        if (!deliver_in_vm86(v, a, vector, static_cast<std::uint16_t>(v.state.rip + in->length))) return vm86_step::failed;
        return vm86_step::done;
    }
    if (slot.interrupted.valid) return failed_with("an event delivered in real mode", 0);
    slot.instruction_length = in->length;
    if (in->map == 0 && in->opcode == 0xf4) {
        slot.reason = cpu::exit_reason::hlt;
        return vm86_step::dispatch;
    }
    if (cpu::cr_detail c{}; cpu::cr_access_of(*in, c) && c.op != cpu::cr_op::smsw) {  // MOV CR, CLTS, LMSW r
        if (c.op == cpu::cr_op::lmsw) c.lmsw_source = static_cast<std::uint16_t>(v.state.regs[c.gpr]);
        slot.reason = cpu::exit_reason::cr_access;
        slot.cr = c;
        return vm86_step::dispatch;
    }
    if (in->map == 0 && (in->opcode & 0xf4) == 0xe4) {  // IN/OUT with imm8 (E4-E7) or DX (EC-EF)
        const bool dx = in->opcode & 8;
        const auto size = static_cast<std::uint8_t>((in->opcode & 1) ? in->operand_size : 1);
        const auto port = static_cast<std::uint16_t>(dx ? v.state.regs.rdx : bytes[in->length - 1]);
        slot.reason = cpu::exit_reason::io;
        slot.io = {port, size, 0, !(in->opcode & 2), false, false};
        return vm86_step::dispatch;
    }
    if (in->map == 0 && (in->opcode & 0xfc) == 0x6c) {  // INS (6C/6D), OUTS (6E/6F), REP or not
        const bool outs = in->opcode & 2;
        if (outs && in->segment_override != insn::seg::none && in->segment_override != insn::seg::ds)
            return failed_with("OUTS with a segment override", in->opcode);  // the string I/O path reads DS
        const auto size = static_cast<std::uint8_t>((in->opcode & 1) ? in->operand_size : 1);
        slot.reason = cpu::exit_reason::io;
        slot.io = {static_cast<std::uint16_t>(v.state.regs.rdx), size, static_cast<std::uint8_t>(in->address_size * 8), !outs,
                   true, in->rep != insn::rep_prefix::none};
        return vm86_step::dispatch;
    }
    const unsigned reg = (in->modrm >> 3) & 7;
    if (in->map == 1 && in->opcode == 0x01 && in->has_mem && (reg == 2 || reg == 3)) {  // LGDT, LIDT
        static_assert(sizeof(cpu::gprs) == 16 * sizeof(std::uint64_t));
        insn::guest_state is{.gpr = insn::gpr_file{&v.state.regs.rax}, .rip = v.state.rip, .rflags = 0};
        is.code = insn::mode::code16;
        for (unsigned i = 0; i < 6; ++i) is.seg_base[i] = read(nth(field::guest_es_base, i));
        std::uint8_t table[6];
        const std::uint64_t la = insn::memory_operand_address(is, *in);
        if (!reader.read(v, la, table, sizeof table, reader.ctx).ok()) return failed_with("LGDT/LIDT from outside RAM", 1);
        const std::uint32_t limit = table[0] | table[1] << 8;
        std::uint32_t base = table[2] | table[3] << 8 | table[4] << 16 | std::uint32_t{table[5]} << 24;
        if (in->operand_size == 2) base &= 0xffffff;
        if (reg == 2) {
            (void)write<field::guest_gdtr_base>(base);
            (void)write<field::guest_gdtr_limit>(limit);
        } else {
            a.vm86_idtr = {base, limit};
        }
        v.state.rip = (v.state.rip + in->length) & 0xffff;
        return vm86_step::done;
    }
    return failed_with("a privileged instruction libhv does not emulate", in->opcode);
}

// Any other exit, all of it out of line: the hot path then keeps no value but the vCPU
// live across a call (fewer registers to save per exit).
[[gnu::noinline]] int other_exit(cpu::vcpu& v, cpu::exit_info& slot) {
    load_flags_current(v);
    decode_other(v, slot);
    if (arch(v).vm86 && slot.reason == cpu::exit_reason::exception && slot.exception.vector == 13) [[unlikely]] {
        switch (vm86_gp(v, arch(v), slot)) {
        case vm86_step::failed: return 1;
        case vm86_step::done: keep_preemption(v, arch(v)); write_back(v); return 0;
        case vm86_step::dispatch: break;
        }
    }
    v.requeue_interrupted(slot);
    if (!v.dispatch(slot)) return 1;
    keep_preemption(v, arch(v));
    write_back(v);
    return 0;
}

void run(cpu::vcpu& v, const cpu::event_queue::decision* d) {
    vcpu_arch& a = arch(v);
    if (!make_current(a)) [[unlikely]] {
        entry_refused(v, 1, v.log.slot());
        (void)v.dispatch(v.log.slot());
        return;
    }
    // VMX switches neither CR2 nor XCR0. The guest's CR2 goes into the CPU here (another
    // vCPU, or a #PF of the hypervisor's, may have changed it since) and is saved when the
    // loop returns: inside it only this vCPU's handlers run, and they change CR2 only
    // through dirty_cr2. state.cr2 is therefore the guest's as of the last return here.
    const std::uint64_t host_xcr0 = a.cpu->host_xcr0;
    if (x86::read_cr2() != v.state.cr2) x86::write_cr2(v.state.cr2);
    if (v.state.xcr0 != host_xcr0) [[unlikely]] cpu::load_xcr0(v.state.xcr0);
    write_back(v);
    v.end_return_request();
    if (d || a.windows_on) [[unlikely]] {
        apply_events(v, a, d ? *d : cpu::event_queue::decision{});
        if (v.status() == cpu::vcpu_status::failed) return;  // an event vm86 could not deliver
    }
    // Handlers in the loop see the VMCS launched (set_paging_root writes it only then);
    // a VMLAUNCH that failed before any exit takes that back.
    const bool launched = a.launched;
    const std::uint64_t exits = v.log.total();
    a.launched = true;
    // The deadline comes from the entry hook: entries without one (d == nullptr, the hot
    // path) have nothing to arm.
    if (v.guarded()) [[unlikely]] v.guard_before_entry();
    // Without one, nothing stays armed for this loop (an armed deadline implies timer_armed,
    // so an entry with a decision always re-arms it).
    bool host_timer = false;
    if (!d) v.set_armed_deadline(0);
    else if (v.preemption_deadline() || a.timer_armed) host_timer = arm_preemption(v, a, v.preemption_deadline());
    a.cpu->in_loop = &v;
    const int r = hv_vmx_run(&v.state.regs, launched, &v, v.guarded() ? &hv_vmx_guarded_exit_handler : &hv_vmx_exit_handler);
    // A failed VMLAUNCH/VMRESUME returns without an exit: the guard's exit side is due.
    if (r != 0 && v.guarded()) [[unlikely]] v.guard_after_exit();
    if (host_timer) [[unlikely]] cpu::host_timer::take_pending();
    a.cpu->in_loop = nullptr;
    load_flags(v);  // the last exit may have been a hot one (a handler may have made another VMCS current)
    if (r != 0 && !launched && v.log.total() == exits) a.launched = false;
    if (!v.dirty(cpu::vcpu::dirty_cr2)) v.state.cr2 = x86::read_cr2();  // else a handler's, not yet loaded
    if (v.state.xcr0 != host_xcr0) [[unlikely]] cpu::load_xcr0(host_xcr0);
    if (r != 0) [[unlikely]] {
        entry_refused(v, r, v.log.slot());
        (void)v.dispatch(v.log.slot());
    }
}

} // namespace

// Called by switch.S at every exit, on the host stack of hv_vmx_run, with the guest's
// GPRs in v.state.regs. 0: re-enter now (VMRESUME); else hv_vmx_run returns to run().
// Staying needs the handler to leave nothing for the vCPU loop; a window request to take
// down or another VMCS made current (a handler touching another vCPU) request_return().
// No alignment padding: a NOP placed after the handler call would run at every exit.
extern "C" [[gnu::optimize("align-jumps=1", "align-labels=1", "align-loops=1")]] int
hv_vmx_exit_handler(cpu::vcpu* vp) {
    cpu::vcpu& v = *vp;
    cpu::exit_info& slot = cpu::hot_slot(v.log);
    return read_exit(
        v, slot,
        // A hot exit: counted and dispatched with its reason as a constant.
        [&](auto reason) [[gnu::always_inline]] {
            if constexpr (decltype(reason)::value == cpu::exit_reason::io)
                if (slot.io.string) load_flags_current(v);  // the direction flag, for every string I/O handler
            if (!v.handle(slot, reason.value)) [[unlikely]] return 1;
            // The loop word covers the dirty bits too: 0 leaves only RIP to write.
            if (v.loop_word() == 0) [[likely]] {
                (void)write<field::guest_rip>(v.state.rip);
                return 0;
            }
            return settle(v);
        },
        [&] { return other_exit(v, slot); });
}

// switch.S calls this one instead for a guarded vCPU (run() picks it): the handler
// between the exit guard's two calls, the second only when re-entering from here.
extern "C" int hv_vmx_guarded_exit_handler(cpu::vcpu* v) {
    v->guard_after_exit();
    const int r = hv_vmx_exit_handler(v);
    if (r == 0) v->guard_before_entry();
    return r;
}

namespace {

bool interrupts_open(const cpu::vcpu& v) {
    return (v.state.rflags & x86::rflags::if_) && !(v.state.interruptibility & 3);
}

result<std::uint8_t> instruction_length(cpu::vcpu&) {
    return fail(errc::bad_format, "VMX exit without an instruction length");
}

// CR0/CR4 as the guest reads them: host-owned bits (the guest/host mask) from the read
// shadow, the rest from the real register. The VMCS must be current.
template <field guest, field mask, field shadow>
[[gnu::always_inline]] inline std::uint64_t guest_view() {
    const auto owned = read<mask>();
    return (read<guest>() & ~owned) | (read<shadow>() & owned);
}
[[gnu::always_inline]] inline std::uint64_t guest_view_cr0() {
    return guest_view<field::guest_cr0, field::cr0_guest_host_mask, field::cr0_read_shadow>();
}
[[gnu::always_inline]] inline std::uint64_t guest_view_cr4() {
    return guest_view<field::guest_cr4, field::cr4_guest_host_mask, field::cr4_read_shadow>();
}

std::uint64_t read_cr(cpu::vcpu& v, unsigned cr) {
    if (!make_current(arch(v))) return 0;
    if (cr == 3) return arch(v).shadow_paging ? arch(v).guest_cr3 : read<field::guest_cr3>();
    if (cr == 0) return guest_view_cr0();
    if (cr == 4) return guest_view_cr4();
    return 0;
}

status write_cr(cpu::vcpu& v, unsigned cr, std::uint64_t value) {
    vcpu_arch& a = arch(v);
    if (!make_current(a)) return fail(errc::fault, "no current VMCS");
    const capabilities& caps = a.cpu->caps;
    if (value >> 32) return fail(errc::invalid_argument, "CR bits 63:32 set");
    auto entry = read<field::entry_controls>();
    const bool ia32e = entry & bits(entry_ctl::ia32e_mode_guest);
    if (cr == 4) {
        const auto fixed = cr4_fixed(caps);
        if ((value & ~fixed.may_be1) || (value & x86::cr4::vmxe)) return fail(errc::invalid_argument, "CR4 reserved bit");
        if (ia32e && !(value & x86::cr4::pae)) return fail(errc::invalid_argument, "CR4.PAE cleared in IA-32e mode");
        if (a.shadow_paging && (value & x86::cr4::pcide)) return fail(errc::invalid_argument, "CR4.PCIDE: no PCID");
        (void)write<field::guest_cr4>(a.shadow_paging ? shadow_real_cr4(caps, value) : fixed.apply(value));
        (void)write<field::cr4_read_shadow>(value);
        v.state.cr4 = value;
        return {};
    }
    if (cr != 0) return fail(errc::not_supported, "only CR0 and CR4 writes are emulated");
    if ((value & x86::cr0::pg) && !(value & x86::cr0::pe)) return fail(errc::invalid_argument, "CR0.PG without CR0.PE");
    if ((value & x86::cr0::nw) && !(value & x86::cr0::cd)) return fail(errc::invalid_argument, "CR0.NW without CR0.CD");
    const bool ug = !a.shadow_paging && (a.cpu->controls.value(control_set::proc2) & bits(proc2::unrestricted_guest));
    if (a.shadow_paging && !(value & x86::cr0::pe) && !a.vm86)
        return fail(errc::not_supported, "shadow paging on VMX: a return to real mode (vm86) is not built");
    const std::uint64_t old = read_cr(v, 0);
    // Paging switched with EFER.LME set enters or leaves IA-32e mode (SDM 9.8.5).
    std::uint64_t efer = a.shadow_paging ? a.guest_efer : read<field::guest_efer>();
    if (!(old & x86::cr0::pg) && (value & x86::cr0::pg) && (efer & x86::efer::lme)) {
        if (!(read_cr(v, 4) & x86::cr4::pae)) return fail(errc::invalid_argument, "long mode without PAE");
        efer |= x86::efer::lma;
        entry |= bits(entry_ctl::ia32e_mode_guest);
    } else if ((old & x86::cr0::pg) && !(value & x86::cr0::pg) && (efer & x86::efer::lma)) {
        efer &= ~x86::efer::lma;
        entry &= ~bits(entry_ctl::ia32e_mode_guest);
    }
    if (entry & bits(entry_ctl::load_efer))
        (void)write<field::guest_efer>(a.shadow_paging ? shadow_real_efer(efer) : efer);
    (void)write<field::entry_controls>(entry);
    (void)write<field::guest_cr0>(a.shadow_paging ? shadow_real_cr0(caps, value) : cr0_fixed(caps, ug).apply(value));
    if (a.shadow_paging) a.guest_efer = efer;
    (void)write<field::cr0_read_shadow>(value);
    v.state.cr0 = value;
    v.state.efer = efer;
    if (a.vm86 && (value & x86::cr0::pe)) leave_vm86(a, v);
    return {};
}

void load_flags(cpu::vcpu& v) {
    if (make_current(arch(v))) load_flags_current(v);
}

void load_state(cpu::vcpu& v) {
    if (!make_current(arch(v))) return;
    cpu::guest_state& g = v.state;
    load_flags_current(v);
    g.cr0 = read_cr(v, 0);
    g.cr3 = read_cr(v, 3);
    g.cr4 = read_cr(v, 4);
    g.efer = arch(v).shadow_paging ? arch(v).guest_efer : read<field::guest_efer>();
    // VMCS guest-state fields come in SDM order es, cs, ss, ds, fs, gs, ldtr, tr, as cpu::seg.
    for (unsigned i = 0; i < cpu::segment_count; ++i) {
        cpu::segment& s = g.segs[i];
        s.selector = static_cast<std::uint16_t>(read(static_cast<field>(raw(field::guest_es_selector) + 2 * i)));
        s.base = read(static_cast<field>(raw(field::guest_es_base) + 2 * i));
        s.limit = static_cast<std::uint32_t>(read(static_cast<field>(raw(field::guest_es_limit) + 2 * i)));
        s.access = static_cast<std::uint32_t>(read(static_cast<field>(raw(field::guest_es_ar) + 2 * i)));
    }
    g.gdtr = {read<field::guest_gdtr_base>(), static_cast<std::uint32_t>(read<field::guest_gdtr_limit>())};
    g.idtr = {read<field::guest_idtr_base>(), static_cast<std::uint32_t>(read<field::guest_idtr_limit>())};
    if (arch(v).vm86) g.idtr = arch(v).vm86_idtr;
}

void load_mode(cpu::vcpu& v) {
    if (!make_current(arch(v))) return;
    cpu::guest_state& g = v.state;
    g.efer = arch(v).shadow_paging ? arch(v).guest_efer : read<field::guest_efer>();
    g[cpu::seg::cs].access = static_cast<std::uint32_t>(read<field::guest_cs_ar>());
    g[cpu::seg::ss].access = static_cast<std::uint32_t>(read<field::guest_ss_ar>());
}

// A 64-bit kernel (CPL 0, 64-bit non-conforming code segment), the usual case, costs
// the CS and EFER reads; any other CS reads SS too (call_mode.hpp).
[[gnu::noinline]] cpu::call_mode call_mode_from_ss(const vcpu_arch& a, std::uint32_t cs) {
    const auto ss = static_cast<std::uint32_t>(read<field::guest_ss_ar>());
    const std::uint64_t efer = a.shadow_paging ? a.guest_efer : read<field::guest_efer>();
    return cpu::call_mode_of(efer & x86::efer::lma, cs, cpu::ar::dpl_of(ss));
}

cpu::call_mode read_call_mode(cpu::vcpu& v) {
    const vcpu_arch& a = arch(v);
    if (!make_current(arch(v))) [[unlikely]] return cpu::call_mode::user32;  // nothing to read: refuse
    const auto cs = static_cast<std::uint32_t>(read<field::guest_cs_ar>());
    if (!cpu::kernel64_code_segment(cs)) [[unlikely]] return call_mode_from_ss(a, cs);
    const std::uint64_t efer = a.shadow_paging ? a.guest_efer : read<field::guest_efer>();
    return efer & x86::efer::lma ? cpu::call_mode::kernel64 : cpu::call_mode::kernel32;
}

// RSP/RFLAGS (RFLAGS.AC for SMAP after a hot exit), CR0/CR3/CR4 and EFER as the guest
// sees them (under shadow paging its own CR3 and EFER), SS's rights. The VMCS is current.
[[gnu::always_inline]] inline void load_paging_state_current(cpu::vcpu& v, const vcpu_arch& a) {
    cpu::guest_state& g = v.state;
    load_flags_current(v);
    g.cr0 = guest_view_cr0();
    g.cr4 = guest_view_cr4();
    g.cr3 = a.shadow_paging ? a.guest_cr3 : read<field::guest_cr3>();
    g.efer = a.shadow_paging ? a.guest_efer : read<field::guest_efer>();
    g[cpu::seg::ss].access = static_cast<std::uint32_t>(read<field::guest_ss_ar>());
}

void load_paging_state(cpu::vcpu& v) {
    vcpu_arch& a = arch(v);
    if (make_current(a)) load_paging_state_current(v, a);
}

void load_memory_state(cpu::vcpu& v) {
    vcpu_arch& a = arch(v);
    if (!make_current(a)) return;
    load_paging_state_current(v, a);
    cpu::guest_state& g = v.state;
    const auto cs = static_cast<std::uint32_t>(read<field::guest_cs_ar>());
    g[cpu::seg::cs].access = cs;
    // In 64-bit code only FS and GS have a base (the others count as 0): the other four
    // are left as they were (backend_ops::load_memory_state).
    if ((g.efer & x86::efer::lma) && (cs & cpu::ar::l)) {
        g[cpu::seg::fs].base = read<field::guest_fs_base>();
        g[cpu::seg::gs].base = read<field::guest_gs_base>();
        return;
    }
    for (unsigned i = 0; i < 6; ++i) g.segs[i].base = read(static_cast<field>(raw(field::guest_es_base) + 2 * i));
}

void flush_nested(cpu::vcpu& v) {
    vcpu_arch& a = arch(v);
    const std::uint64_t root = a.nested_root ? a.nested_root : a.cpu->ept_root;
    // Single-context where the CPU has it; otherwise all contexts (never nothing: a stale
    // writable translation would outlive a write protection).
    const bool single = a.cpu->caps.ept_vpid.invept_single();
    (void)invept(single ? invept_type::single_context : invept_type::all_context, {root | 6 | 3 << 3, 0});
}

void set_paging_root(cpu::vcpu& v, std::uint64_t guest_cr3, std::uint64_t root) {
    vcpu_arch& a = arch(v);
    a.guest_cr3 = guest_cr3;
    a.shadow_root = root;
    v.state.cr3 = guest_cr3;
    if (a.launched && make_current(a)) (void)write<field::guest_cr3>(root);
}

// Without VPID every entry and exit flushes the guest's (VPID 0) translations already.
void flush_tlb(cpu::vcpu& v, cpu::tlb_flush what, std::uint64_t linear) {
    vcpu_arch& a = arch(v);
    if (!(a.cpu->controls.value(control_set::proc2) & bits(proc2::vpid))) return;
    const ept_vpid_info caps = a.cpu->caps.ept_vpid;
    invvpid_type t = caps.invvpid_single() ? invvpid_type::single_context : invvpid_type::all_context;
    if (what == cpu::tlb_flush::address && caps.invvpid_address()) t = invvpid_type::individual_address;
    if (what == cpu::tlb_flush::non_global && caps.invvpid_single_keep_globals())
        t = invvpid_type::single_context_keep_globals;
    (void)invvpid(t, {a.vpid, t == invvpid_type::individual_address ? linear : 0});
}

status write_efer(cpu::vcpu& v, std::uint64_t value) {
    vcpu_arch& a = arch(v);
    if (!make_current(a)) return fail(errc::fault, "no current VMCS");
    const bool load = read<field::entry_controls>() & bits(entry_ctl::load_efer);
    if (!load && !a.shadow_paging) return fail(errc::not_supported, "EFER writes need the load-EFER entry control");
    const std::uint64_t cur = a.shadow_paging ? a.guest_efer : read<field::guest_efer>();
    const std::uint64_t efer = (value & ~x86::efer::lma) | (cur & x86::efer::lma);
    if (load) (void)write<field::guest_efer>(a.shadow_paging ? shadow_real_efer(efer) : efer);
    if (a.shadow_paging) a.guest_efer = efer;
    v.state.efer = efer;
    return {};
}

} // namespace

const cpu::backend_ops ops{prepare,   run,        interrupts_open, instruction_length, read_cr,
                           write_cr,  load_state, flush_nested,    load_mode,          read_tpr,
                           write_tpr, load_memory_state, set_paging_root, flush_tlb,   write_efer,
                           read_call_mode, load_paging_state, load_flags};

status enable(cpu_context& c, cpu::page_alloc_fn alloc) {
    c.alloc = alloc;
    const auto m = read_msrs();
    const auto id = x86::cpuid(1);
    const auto ext = x86::cpuid(0x80000008);
    c.maxphyaddr = ext.eax & 0xff;
    auto plan = plan_vmxon(id.ecx, m, x86::read_cr0(), x86::read_cr4());
    if (!plan) return plan.err();
    c.caps = decode(m);
    auto req = default_requests();
    if (!(c.caps.of(control_set::proc).allowed1 & bits(proc::tpr_shadow)))
        req[control_set::proc].required |= bits(proc::cr8_load_exiting, proc::cr8_store_exiting);
    auto derived = derive_all(c.caps, req);
    if (!derived) return derived.err();
    c.controls = *derived;
    if (plan->write_feature_control) x86::wrmsr(msr::feature_control, plan->feature_control);
    x86::write_cr0(plan->cr0);
    x86::write_cr4(plan->cr4);
    auto* region = static_cast<std::uint32_t*>(alloc(1));
    if (!region) return fail(errc::no_memory, "VMXON region");
    region[0] = plan->revision;
    c.vmxon_pa = cpu::pa_of(region);
    if (vmxon(c.vmxon_pa) != insn_status::ok) return fail(errc::fault, "VMXON failed");
    c.host_xcr0 = cpu::current_xcr0();
    c.ept_root = cpu::identity_nested_map(alloc, cpu::nested_format::ept);
    if (!c.ept_root) return fail(errc::no_memory, "EPT tables");
    return {};
}

status create(vcpu_arch& a, cpu_context& c, std::uint16_t vpid) {
    a.cpu = &c;
    a.vpid = vpid;
    auto* vmcs = static_cast<std::uint32_t*>(c.alloc(1));
    a.io_bitmaps = static_cast<std::uint8_t*>(c.alloc(2));
    a.msr_bitmap = static_cast<std::uint8_t*>(c.alloc(1));
    a.virtual_apic = static_cast<std::uint8_t*>(c.alloc(1));
    if (!vmcs || !a.io_bitmaps || !a.msr_bitmap || !a.virtual_apic) return fail(errc::no_memory, "VMCS or bitmaps");
    __builtin_memset(a.virtual_apic, 0, 4096);
    vmcs[0] = c.caps.basic.revision();
    a.vmcs_pa = cpu::pa_of(vmcs);
    // Intercept every port and MSR: a guest reaches only what a handler allows.
    __builtin_memset(a.io_bitmaps, 0xff, 8192);
    __builtin_memset(a.msr_bitmap, 0xff, 4096);
    return {};
}

} // namespace hv::vmx
