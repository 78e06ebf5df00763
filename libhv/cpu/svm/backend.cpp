#include "libhv/cpu/svm/backend.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/cpu/exit_decode.hpp"
#include "libhv/cpu/host_timer.hpp"
#include "libhv/cpu/svm/insn_len.hpp"
#include "libhv/cpu/svm/setup.hpp"

// switch.S's two calls per exit: the exit function (the guest's RCX still in its register,
// the 4th argument; RDX, the 3rd, is the guest's too and unused), then, only if the
// vCPU's loop word is not 0, the settling function: 0 = enter again.
using hv_svm_exit_fn = void (*)(hv::cpu::vcpu* v, hv::svm::vmcb* block, std::uint64_t, std::uint64_t guest_rcx);
using hv_svm_settle_fn = int (*)(hv::cpu::vcpu* v);
extern "C" void hv_svm_run(hv::cpu::vcpu* v, std::uint64_t vmcb_pa, std::uint64_t host_save_pa,
                           hv_svm_settle_fn settle, hv_svm_exit_fn exit_handler);
extern "C" void hv_svm_run_lean(hv::cpu::vcpu* v, std::uint64_t vmcb_pa, std::uint64_t host_save_pa,
                                hv_svm_settle_fn settle, hv_svm_exit_fn exit_handler, bool* hidden_in_cpu);

namespace hv::svm {

namespace {

vcpu_arch& arch(cpu::vcpu& v) { return *static_cast<vcpu_arch*>(v.arch()); }

// The lean loop's two switches of the hidden state (see hv_svm_run_lean): to the host's
// (the guest's saved into its VMCB, GIF set) before anything that is not a leaf handler,
// and back (GIF clear) before entering again.
void to_host(vcpu_arch& a) {
    asm volatile("vmsave %%rax" ::"a"(cpu::pa_of(a.block)) : "memory");
    asm volatile("vmload %%rax; stgi" ::"a"(a.cpu->host_save_pa) : "memory");
    a.hidden_in_cpu = false;
}
void to_guest(vcpu_arch& a) {
    asm volatile("clgi; vmload %%rax" ::"a"(cpu::pa_of(a.block)) : "memory");
    a.hidden_in_cpu = true;
}
// Before reading the VMCB's FS/GS/TR/LDTR: a leaf handler may ask (load_state).
void sync_hidden(const vcpu_arch& a) {
    if (a.hidden_in_cpu) asm volatile("vmsave %%rax" ::"a"(cpu::pa_of(a.block)) : "memory");
}

constexpr std::uint64_t v_tpr = 0xf, v_irq = 1ull << 8, v_intr_prio = 0xfull << 16, v_ign_tpr = 1ull << 20,
                        v_intr_masking = 1ull << 24;

// Shadow paging without NPT (APM 15.14-15.16): every CR0/CR3/CR4 read and write, #PF and
// INVLPG intercepted; the real paging registers run the shadow with paging always on.
// A real-mode guest runs in "paged real mode" (APM 15.19: VMRUN takes CR0.PG = 1 with
// CR0.PE = 0): real CR0.PG on the direct shadow of guest-physical memory, while the guest
// reads its own CR0 (PE and PG clear) through the CR0 read intercept. SMSW reads bits
// 15:0 only, where the real CR0 is the guest's (QEMU exits on it as a CR0 read, Bochs not).
constexpr std::uint32_t shadow_cr_intercepts = (1u << 0 | 1u << 3 | 1u << 4) * 0x10001u;

using cpu::shadow_real_cr0;
using cpu::shadow_real_cr4;
// SVME stays set under the guest.
std::uint64_t shadow_real_efer(std::uint64_t guest) { return cpu::shadow_real_efer(guest) | x86::efer::svme; }

status put_shadow(vcpu_arch& a, vmcb& b, const cpu::guest_state& g) {
    if ((g.cr0 & x86::cr0::pg) && !(g.cr0 & x86::cr0::pe)) return fail(errc::invalid_argument, "CR0.PG without CR0.PE");
    if (g.cr4 & x86::cr4::pcide) return fail(errc::invalid_argument, "shadow paging hides PCID: CR4.PCIDE must be 0");
    auto& c = b.control;
    c.np_control = 0;
    c.n_cr3 = 0;
    c.cr_intercepts |= shadow_cr_intercepts;
    c.exception_intercepts |= 1u << 14;
    c.intercepts3 |= bits(intercept3::invlpg);
    a.guest_cr0 = g.cr0;
    a.guest_cr3 = g.cr3;
    a.guest_cr4 = g.cr4;
    a.guest_efer = g.efer;
    b.state.cr0 = shadow_real_cr0(g.cr0);
    b.state.cr4 = shadow_real_cr4(g.cr4);
    b.state.cr3 = a.shadow_root;
    b.state.efer = shadow_real_efer(g.efer);
    return {};
}

status prepare(cpu::vcpu& v) {
    vcpu_arch& a = arch(v);
    vmcb& b = *a.block;
    if (a.prepared) a.tpr = static_cast<std::uint8_t>((b.control.vintr & v_tpr) << 4);
    v.set_armed_deadline(0);  // re-armed by the next entry from the run loop
    __builtin_memset(&b, 0, sizeof b);
    auto& c = b.control;
    c.intercepts3 = bits(intercept3::intr, intercept3::nmi, intercept3::smi, intercept3::init, intercept3::cpuid,
                         intercept3::hlt, intercept3::invlpga, intercept3::ioio_prot, intercept3::msr_prot,
                         intercept3::shutdown);
    // XSETBV too: XCR0 is per vCPU, set by a handler and loaded by run() (as on VMX,
    // where it always exits).
    c.intercepts4 = bits(intercept4::vmrun, intercept4::vmmcall, intercept4::vmload, intercept4::vmsave,
                         intercept4::stgi, intercept4::clgi, intercept4::skinit, intercept4::xsetbv);
    // Bochs 2.7 resets the whole machine on a guest triple fault instead of exiting with
    // SHUTDOWN: intercept #DF, after which a guest cannot recover anyway, and end it there.
    c.exception_intercepts = 1u << 8;
    c.guest_asid = a.asid;
    c.tlb_ctl = tlb_control::flush_all;
    c.iopm_base_pa = cpu::pa_of(a.iopm);
    c.msrpm_base_pa = cpu::pa_of(a.msrpm);
    c.np_control = a.cpu->caps.nested_paging ? 1 : 0;
    // V_INTR_MASKING: the guest's CR8 is V_TPR (the host's TPR stays the host's) and its
    // RFLAGS.IF masks only virtual interrupts; the host runs with IF = 0, so a physical
    // interrupt waits for the next exit (INTR stays intercepted).
    c.vintr = v_intr_masking | (a.tpr >> 4);
    c.n_cr3 = a.nested_root ? a.nested_root : a.cpu->npt_root;
    put_guest(b, v.state);
    if (a.shadow_paging) HV_TRY(put_shadow(a, b, v.state));
    else if (!a.cpu->caps.nested_paging) return fail(errc::not_supported, "this CPU has no NPT: use shadow paging");
    a.events_on = false;
    a.prepared = true;
    vmrun_context cx{};
    cx.maxphyaddr = a.cpu->maxphyaddr;
    if (auto r = check_vmrun(b, cx); !r.passed && a.software_checks) {
        fmt::format_to(a.message, sizeof a.message, "VMRUN check failed: {}: {} (APM 15.5.1)", r.where, r.what);
        return fail(errc::invalid_argument, a.message);
    }
    return {};
}

event_type svm_type(cpu::event_kind k) {
    switch (k) {
    case cpu::event_kind::external_interrupt: return event_type::intr;
    case cpu::event_kind::nmi: return event_type::nmi;
    case cpu::event_kind::software_interrupt: return event_type::software_interrupt;
    default: return event_type::exception;
    }
}


std::uint64_t read_cr(cpu::vcpu& v, unsigned cr);

// Injection and the interrupt window: only when an event waits or the last entry used them.
[[gnu::noinline]] void apply_events(cpu::vcpu& v, vcpu_arch& a, const cpu::event_queue::decision& d) {
    auto& c = a.block->control;
    c.eventinj = 0;
    if (d.inject.valid) {
        const auto t = svm_type(d.inject.kind);
        const bool ec = d.inject.has_error_code && (read_cr(v, 0) & x86::cr0::pe);
        c.eventinj = ec ? event::make(t, d.inject.vector, d.inject.error_code).raw : event::make(t, d.inject.vector).raw;
    }
    // An interrupt window: a virtual interrupt the guest takes as soon as it can, intercepted.
    // A TPR threshold: one it takes once its V_TPR drops below the class held back.
    c.vintr &= ~(v_irq | v_ign_tpr | v_intr_prio);
    if (d.irq_window) {
        c.vintr |= v_irq | v_ign_tpr;
        c.intercepts3 |= bits(intercept3::vintr);
    } else if (d.tpr_threshold) {
        c.vintr |= v_irq | (std::uint64_t{d.tpr_threshold & 0xfu} << 16);
        c.intercepts3 |= bits(intercept3::vintr);
    } else {
        c.intercepts3 &= ~bits(intercept3::vintr);
    }
    a.events_on = d.inject.valid || d.irq_window || d.tpr_threshold;
    // EVENTINJ, the window and the TPR threshold are taken down by run() after the next exit.
    if (a.events_on) v.request_return();
}

// The exit as the decoders take it (after v.state was refreshed from the VMCB).
[[gnu::always_inline]] inline cpu::svm_exit_raw exit_raw(const vcpu_arch& a, const cpu::vcpu& v) {
    const auto& c = a.block->control;
    cpu::svm_exit_raw raw;
    raw.exitcode = c.exitcode;
    raw.exitinfo1 = c.exitinfo1;  // MSR direction, I/O details
    raw.exitinfo2 = c.exitinfo2;  // I/O: the next RIP
    raw.next_rip = c.next_rip;
    raw.nrips = a.nrips;
    raw.decode_assists = a.cpu->caps.decode_assists;
    raw.rip = v.state.rip;
    raw.rax = v.state.regs.rax;
    raw.rcx = v.state.regs.rcx;
    return raw;
}

[[gnu::noinline]] void vmrun_refused(const cpu::vcpu& v, std::uint64_t code, cpu::exit_info& out) {
    cpu::svm_exit_raw raw{};
    raw.exitcode = code;
    raw.rip = v.state.rip;
    cpu::decode(raw, out);
}

// Everything but the hot exits.
[[gnu::noinline]] void decode_other(const vcpu_arch& a, const cpu::vcpu& v, cpu::exit_info& out) {
    auto raw = exit_raw(a, v);
    raw.exitintinfo = a.block->control.exitintinfo;
    cpu::decode(raw, out);
}

// A guarded vCPU (a guest spread over several CPUs) must leave guest mode when another
// CPU kicks it (a kick IPI: an interrupt for it, a nested-table shootdown). With
// V_INTR_MASKING the host's IF at VMRUN masks physical interrupts in the guest, so enter
// with IF = 1 under GIF = 0: a kick sent after the guard released the lock waits at GIF
// and exits the guest at once; the host takes it at switch.S's STGI.
inline void open_for_kicks() { asm volatile("clgi; sti" ::: "memory"); }

// Preemption (SVM has no preemption timer): the host LAPIC timer armed to the vCPU's
// deadline, with the host's interrupts open (GIF still clear) until VMRUN, so that its
// interrupt exits the guest through the INTR intercept, at once if it is already due;
// switch.S's STGI then lets the host take it. False: no timer, nothing changed.
// The armed deadline is what v.armed_deadline() says: vcpu::settle keeps the loop going
// while the entry hook leaves it unchanged, and settle() below while the timer has not
// fired yet.
[[gnu::noinline]] bool arm_preemption(cpu::vcpu& v, vcpu_arch& a, std::uint64_t deadline) {
    if (!cpu::host_timer::ready() && (!deadline || !cpu::host_timer::init().ok())) return false;
    asm volatile("clgi; sti" ::: "memory");
    cpu::host_timer::arm(deadline);
    a.timer_armed = deadline != 0;
    v.set_armed_deadline(deadline);
    return true;
}

// The state handlers changed (v.take_dirty()) into the VMCB, besides RIP and RAX.
[[gnu::noinline]] void write_back_more(cpu::vcpu& v, vmcb& b, std::uint8_t dirty) {
    if (dirty & cpu::vcpu::dirty_rflags) b.state.rflags = v.state.rflags;
    if (dirty & cpu::vcpu::dirty_rsp) b.state.rsp = v.state.regs.rsp;
    if (dirty & cpu::vcpu::dirty_interruptibility) b.control.interrupt_shadow = (v.state.interruptibility & 3) ? 1 : 0;
    if (dirty & cpu::vcpu::dirty_cr2) {
        b.state.cr2 = v.state.cr2;
        // Bochs 2.7's VMRUN reads the VMCB's CR2 but keeps the CPU's; hardware loads the
        // VMCB's over this, so writing both is right on either.
        x86::write_cr2(v.state.cr2);
    }
    if (dirty & cpu::vcpu::dirty_xcr0) cpu::load_xcr0(v.state.xcr0);
}
// RIP and RAX always (state.rip is the exit's or a handler's; handlers change GPRs without
// marking them), the rest as marked. dirty_rip itself needs nothing (RIP is always
// written), so it may stay set: the hot path then tests the other bits only.
[[gnu::always_inline]] inline void write_back_marked(cpu::vcpu& v, vmcb& b) {
    if (v.dirty_bits() & ~cpu::vcpu::dirty_rip) [[unlikely]] write_back_more(v, b, v.take_dirty());
}
// The same from the exit path, which no longer has the VMCB at hand after the handler.
[[gnu::noinline]] void write_back_marked_more(cpu::vcpu& v) { write_back_more(v, *arch(v).block, v.take_dirty()); }
[[gnu::always_inline]] inline void write_back(cpu::vcpu& v, vmcb& b) {
    b.state.rip = v.state.rip;
    b.state.rax = v.state.regs.rax;
    write_back_marked(v, b);
}

hv_svm_exit_fn exit_handler_for(const cpu::vcpu& v, const vcpu_arch& a, bool lean);
hv_svm_settle_fn settle_for(const cpu::vcpu& v, bool lean);

// RSP, RFLAGS and the interrupt shadow of this exit (ops.load_flags), but not those a
// handler marked dirty. (A hot exit in a shadow sets state.interruptibility itself.)
[[gnu::always_inline]] inline void load_flags_of(cpu::vcpu& v, const vmcb& b) {
    if (!v.dirty(cpu::vcpu::dirty_rflags)) v.state.rflags = b.state.rflags;
    if (!v.dirty(cpu::vcpu::dirty_rsp)) v.state.regs.rsp = b.state.rsp;
    if (!v.dirty(cpu::vcpu::dirty_interruptibility)) v.state.interruptibility = b.control.interrupt_shadow & 1;
}
[[gnu::noinline]] void load_flags(cpu::vcpu& v) { load_flags_of(v, *arch(v).block); }

// switch.S copies RAX and RIP from the vCPU's registers into the VMCB at these offsets.
static_assert(offsetof(vmcb, state) + offsetof(state_save_area, rax) == 0x5f8);
static_assert(offsetof(vmcb, state) + offsetof(state_save_area, rip) == 0x578);
static_assert(offsetof(cpu::guest_state, regs) == 0 && offsetof(cpu::guest_state, rip) == 0x80);

void run(cpu::vcpu& v, const cpu::event_queue::decision* d) {
    vcpu_arch& a = arch(v);
    vmcb& b = *a.block;
    // CR2 is in the VMCB, but Bochs 2.7's VMRUN keeps the CPU's (another vCPU's, after a
    // switch): put the guest's there too when it differs. #VMEXIT saves it to the VMCB.
    // XCR0 is not switched at all (XSETBV is intercepted; see cpu::load_xcr0).
    const std::uint64_t host_xcr0 = a.cpu->host_xcr0;
    if (x86::read_cr2() != b.state.cr2) x86::write_cr2(b.state.cr2);
    if (v.state.xcr0 != host_xcr0) [[unlikely]] cpu::load_xcr0(v.state.xcr0);
    write_back(v, b);
    v.end_return_request();
    if (d || a.events_on) [[unlikely]] apply_events(v, a, d ? *d : cpu::event_queue::decision{});
    // The deadline comes from the entry hook: entries without one (d == nullptr, the hot
    // path) have nothing to arm.
    // Every return of hv_svm_run comes through hv_svm_exit_handler (a refused VMRUN too),
    // which takes the guard's exit side.
    if (v.guarded()) [[unlikely]] {
        v.guard_before_entry();
        open_for_kicks();
    }
    // Without one, nothing stays armed for this loop (an armed deadline implies timer_armed,
    // so an entry with a decision always re-arms it): settle() then never opens interrupts.
    bool timed = false;
    if (!d) v.set_armed_deadline(0);
    else if (v.preemption_deadline() || a.timer_armed) timed = arm_preemption(v, a, v.preemption_deadline());
    // Leaf handlers only: the lean loop, which saves the host's hidden state and loads the
    // guest's once (GIF clear until an exit that is not a leaf one, or settling).
    const bool lean = !v.guarded() && v.hot_handlers_leaf();
    const std::uint64_t host_save = a.cpu->host_save_pa;
    if (lean) {
        hv_svm_run_lean(&v, cpu::pa_of(&b), host_save, settle_for(v, true), exit_handler_for(v, a, true),
                        &a.hidden_in_cpu);
        if (a.hidden_in_cpu) [[unlikely]] {  // cannot happen: settle returns on the host's state
            to_host(a);
            v.fail("SVM lean loop returned with the guest's hidden state loaded");
        }
    } else {
        hv_svm_run(&v, cpu::pa_of(&b), host_save, settle_for(v, false), exit_handler_for(v, a, false));
    }
    if (timed || v.guarded()) [[unlikely]] {
        asm volatile("cli" ::: "memory");
    }
    load_flags(v);  // the last exit may have been a hot one
    if (!v.dirty(cpu::vcpu::dirty_cr2)) v.state.cr2 = b.state.cr2;  // else a handler's, not yet loaded
    if (v.state.xcr0 != host_xcr0) [[unlikely]] cpu::load_xcr0(host_xcr0);
}

// A refused VMRUN or any exit but the hot ones, all of it out of line: the hot path then
// keeps no value but the vCPU live across a call (fewer registers to save).
[[gnu::noinline]] void other_exit(cpu::vcpu& v, vcpu_arch& a, cpu::exit_info& out) {
    vmcb& b = *a.block;
    load_flags(v);
    // A refused VMRUN (VMEXIT_INVALID; QEMU writes it as 32-bit -1) loaded no guest
    // state: keep ours. (No other exit code has its low 32 bits all ones.)
    if (static_cast<std::uint32_t>(b.control.exitcode) == 0xffffffffu) {
        vmrun_refused(v, b.control.exitcode, out);
        (void)v.handle(out);
        v.request_return();
        return;
    }
    decode_other(a, v, out);
    v.requeue_interrupted(out);
    (void)v.handle(out);
}

[[gnu::noinline]] void other_exit_lean(cpu::vcpu& v, vcpu_arch& a, cpu::exit_info& out) {
    to_host(a);
    other_exit(v, a, out);
    to_guest(a);
}

// A hot exit whose guest was in an STI/MOV SS shadow: skip() takes its slow path and drops it.
// Out of line, as the string I/O one below: the hot path then makes no call but the
// handler's, so it needs no saved register.
[[gnu::noinline]] void shadowed_exit(cpu::vcpu& v, cpu::exit_info& out, cpu::exit_reason reason) {
    v.state.interruptibility = 1;
    return v.handle_last(out, reason, out.instruction_length | cpu::vcpu::in_shadow);
}
// Port I/O, decoded here (its many fields would cost the other hot exits saved
// registers); string I/O loads RSP/RFLAGS at once (the direction flag, for every string
// I/O handler).
template <bool nrips>
[[gnu::noinline]] void io_exit(cpu::vcpu& v, const vmcb& b, cpu::exit_info& out) {
    const auto& c = b.control;
    cpu::svm_exit_raw raw{};
    raw.exitcode = c.exitcode;
    raw.rip = v.state.rip;
    const std::uint64_t len = nrips ? std::uint32_t(c.next_rip - raw.rip) : 0;
    cpu::detail::decode_svm_io(raw, out, len, c.exitinfo1, c.exitinfo2);
    if (out.io.string) {
        load_flags(v);
        return v.handle_last(out, cpu::exit_reason::io,
                             out.instruction_length | ((v.state.interruptibility & 3) ? cpu::vcpu::in_shadow : 0));
    }
    if (c.interrupt_shadow & 1) [[unlikely]] return shadowed_exit(v, out, cpu::exit_reason::io);
    return v.handle_last(out, cpu::exit_reason::io, out.instruction_length);
}

// Called by switch.S after every #VMEXIT (GIF set again, the host's hidden state back),
// with the guest's GPRs but RAX and RSP in v.state.regs. Decodes the exit into the log
// and ends with a tail call to its handler (vcpu::handle_last); switch.S then tests the
// vCPU's loop word: 0 = enter again at once (after copying RIP and RAX into the VMCB),
// else settle() decides. Staying needs the handler to leave nothing for the vCPU loop;
// EVENTINJ or a window to take down request_return() (apply_events).
// One per NRIPS setting (run() picks), so the length needs no test of it.
// RSP, RFLAGS and the interrupt shadow are loaded on request (load_flags; a hot exit in a
// shadow sets state.interruptibility at once).
// No alignment padding: a NOP placed after a jump would run at every exit.
// Lean (hv_svm_run_lean): the same at GIF = 0 with the guest's hidden state still loaded;
// an exit that is not a hot one switches to the host's around other_exit.
template <bool nrips, bool lean>
[[gnu::optimize("align-jumps=1", "align-labels=1", "align-loops=1")]] void exit_handler(cpu::vcpu* vp, vmcb* bp,
                                                                                        std::uint64_t,
                                                                                        std::uint64_t guest_rcx) {
    cpu::vcpu& v = *vp;
    vmcb& b = *bp;
    auto& c = b.control;
    cpu::exit_info& out = cpu::hot_slot(v.log);
    c.tlb_ctl = tlb_control::none;
    v.state.regs.rax = b.state.rax;
    v.state.rip = b.state.rip;
    cpu::svm_exit_raw raw;
    raw.exitcode = c.exitcode;
    raw.next_rip = c.next_rip;
    raw.nrips = nrips;
    raw.rip = v.state.rip;
    raw.rax = v.state.regs.rax;
    raw.rcx = guest_rcx;
    return cpu::decode_hot(
        raw, out,
        [&c](std::uint64_t& info1, std::uint64_t& info2) {
            info1 = c.exitinfo1;
            info2 = c.exitinfo2;
        },
        // A hot exit: counted and dispatched with its reason as a constant.
        [&v, &out, &c](auto reason) [[gnu::always_inline]] {
            if (c.interrupt_shadow & 1) [[unlikely]] return shadowed_exit(v, out, reason.value);
            return v.handle_last(out, reason.value, out.instruction_length);
        },
        [&] {
            if constexpr (lean) return other_exit_lean(v, arch(v), out);
            else return other_exit(v, arch(v), out);
        },
        [&] { return io_exit<nrips>(v, b, out); });
}

// switch.S calls this when the loop word is not 0 after a handler: dirty state to write
// back, or something for the run loop (vcpu::settle polls an entry hook and interrupt
// source). 0: enter again.
// With a deadline armed, the host LAPIC timer keeps counting across entries, and the
// host's IF is 1 (arm_preemption) except in a guarded vCPU's handlers: its interrupt may
// have been taken at switch.S's STGI or during the handler, which ends the one-shot. So
// with IF = 0 from here to VMRUN (no interrupt can be taken in between), stay only while
// it still counts; then IF = 1 again under GIF = 0 for VMRUN, so that it exits the guest
// (at once if it fires before). A guarded vCPU's handler opens them itself (open_for_kicks).
[[gnu::noinline]] int settle_timed(cpu::vcpu* v) {
    asm volatile("cli" ::: "memory");
    bool stay = v->settle() && cpu::host_timer::counting();
    if (!stay) return 1;
    if (!v->guarded()) asm volatile("clgi; sti" ::: "memory");
    if (v->dirty_bits()) write_back_marked_more(*v);
    return 0;
}
int settle(cpu::vcpu* v) {
    if (v->armed_deadline()) [[unlikely]] return settle_timed(v);
    const bool stay = v->settle();
    if (stay && v->dirty_bits()) write_back_marked_more(*v);
    return stay ? 0 : 1;
}

// switch.S calls this one instead for a guarded vCPU (run() picks it): the handler
// between the exit guard's two calls, the second only when entering again from here.
// The host took what interrupted the guest at switch.S's STGI (interrupts were open,
// see open_for_kicks); the handlers run with them shut again.
template <bool nrips>
void guarded_exit_handler(cpu::vcpu* v, vmcb* b, std::uint64_t rdx, std::uint64_t rcx) {
    asm volatile("cli" ::: "memory");
    v->guard_after_exit();
    exit_handler<nrips, false>(v, b, rdx, rcx);
    const bool stay = v->loop_word() == 0 || settle(v) == 0;
    arch(*v).guarded_stay = stay;
    if (stay) {
        v->guard_before_entry();
        open_for_kicks();
    }
}
// Its settling is done: the decision is only read back.
int guarded_settle(cpu::vcpu* v) { return arch(*v).guarded_stay ? 0 : 1; }

hv_svm_exit_fn exit_handler_for(const cpu::vcpu& v, const vcpu_arch& a, bool lean) {
    if (v.guarded()) return a.nrips ? &guarded_exit_handler<true> : &guarded_exit_handler<false>;
    if (lean) return a.nrips ? &exit_handler<true, true> : &exit_handler<false, true>;
    return a.nrips ? &exit_handler<true, false> : &exit_handler<false, false>;
}
hv_svm_settle_fn settle_for(const cpu::vcpu& v, bool lean) {
    (void)lean;  // hv_svm_run_lean switches to the host's state around it
    return v.guarded() ? &guarded_settle : &settle;
}

bool interrupts_open(const cpu::vcpu& v) {
    return (v.state.rflags & x86::rflags::if_) && !(v.state.interruptibility & 3);
}

// Without NRIPS: decode the instruction at CS.base + RIP. The guest memory is read
// through the identity mapping the smoke guests use (linear == guest-physical == host).
result<std::uint8_t> instruction_length(cpu::vcpu& v) {
    const vmcb& b = *arch(v).block;
    const std::uint64_t linear = b.state.cs.base + b.state.rip;
    if (!v.code().read && linear >= (4ull << 30) - max_instruction_length)
        return fail(errc::fault, "instruction above the identity-mapped 4 GiB");
    std::uint8_t bytes[max_instruction_length];
    if (const auto& reader = v.code(); reader.read) {
        HV_TRY(reader.read(v, linear, bytes, sizeof bytes, reader.ctx));
    } else {
        __builtin_memcpy(bytes, reinterpret_cast<const void*>(linear), sizeof bytes);
    }
    const auto cs = ar_from_attrib(b.state.cs.attrib);
    const auto mode = mode_of(b.state.efer & x86::efer::lma, cs & cpu::ar::l, cs & cpu::ar::db);
    return svm::instruction_length(bytes, mode);
}

// A guest CR0/CR4 write under shadow paging: checked against the guest's view.
status write_shadowed_cr(vcpu_arch& a, cpu::vcpu& v, unsigned cr, std::uint64_t value) {
    vmcb& b = *a.block;
    const bool lma = a.guest_efer & x86::efer::lma;
    if (cr == 4) {
        if (value & x86::cr4::pcide) return fail(errc::invalid_argument, "CR4.PCIDE: no PCID");
        if (lma && !(value & x86::cr4::pae)) return fail(errc::invalid_argument, "CR4.PAE cleared in long mode");
        a.guest_cr4 = v.state.cr4 = value;
        b.state.cr4 = shadow_real_cr4(value);
        return {};
    }
    if (cr != 0) return fail(errc::not_supported, "only CR0 and CR4 writes are emulated");
    if ((value & x86::cr0::pg) && !(value & x86::cr0::pe)) return fail(errc::invalid_argument, "CR0.PG without CR0.PE");
    if ((value & x86::cr0::nw) && !(value & x86::cr0::cd)) return fail(errc::invalid_argument, "CR0.NW without CR0.CD");
    const bool was_pg = a.guest_cr0 & x86::cr0::pg, pg = value & x86::cr0::pg;
    if (!was_pg && pg && (a.guest_efer & x86::efer::lme)) {
        if (!(a.guest_cr4 & x86::cr4::pae)) return fail(errc::invalid_argument, "long mode without PAE");
        a.guest_efer |= x86::efer::lma;
    }
    if (was_pg && !pg) {
        if (lma) return fail(errc::not_supported, "shadow paging: leaving long mode");
        a.guest_efer &= ~x86::efer::lma;
    }
    b.state.efer = shadow_real_efer(a.guest_efer);
    a.guest_cr0 = v.state.cr0 = value;
    v.state.efer = a.guest_efer;
    b.state.cr0 = shadow_real_cr0(value);
    return {};
}

std::uint64_t read_cr(cpu::vcpu& v, unsigned cr) {
    const vcpu_arch& a = arch(v);
    const vmcb& b = *a.block;
    if (a.shadow_paging) return cr == 0 ? a.guest_cr0 : cr == 3 ? a.guest_cr3 : cr == 4 ? a.guest_cr4 : 0;
    return cr == 0 ? b.state.cr0 : cr == 3 ? b.state.cr3 : cr == 4 ? b.state.cr4 : 0;
}

// Reached only for CR writes the VMCB intercepts (libhv sets none by default).
status write_cr(cpu::vcpu& v, unsigned cr, std::uint64_t value) {
    vcpu_arch& a = arch(v);
    vmcb& b = *a.block;
    if (value >> 32) return fail(errc::invalid_argument, "CR bits 63:32 set");
    if (a.shadow_paging) return write_shadowed_cr(a, v, cr, value);
    if (cr == 4) {
        b.state.cr4 = value;
        v.state.cr4 = value;
        return {};
    }
    if (cr != 0) return fail(errc::not_supported, "only CR0 and CR4 writes are emulated");
    if ((value & x86::cr0::pg) && !(value & x86::cr0::pe)) return fail(errc::invalid_argument, "CR0.PG without CR0.PE");
    if ((value & x86::cr0::nw) && !(value & x86::cr0::cd)) return fail(errc::invalid_argument, "CR0.NW without CR0.CD");
    const bool was_pg = b.state.cr0 & x86::cr0::pg;
    if (!was_pg && (value & x86::cr0::pg) && (b.state.efer & x86::efer::lme)) b.state.efer |= x86::efer::lma;
    if (was_pg && !(value & x86::cr0::pg)) b.state.efer &= ~x86::efer::lma;
    b.state.cr0 = value;
    v.state.cr0 = value;
    return {};
}

void load_state(cpu::vcpu& v) {
    sync_hidden(arch(v));
    const vmcb& b = *arch(v).block;
    cpu::guest_state& g = v.state;
    load_flags(v);
    g.cr0 = read_cr(v, 0);
    g.cr3 = read_cr(v, 3);
    g.cr4 = read_cr(v, 4);
    g.efer = arch(v).shadow_paging ? arch(v).guest_efer : b.state.efer & ~x86::efer::svme;
    auto put = [](cpu::segment& to, const segment& from) {
        to = {from.selector, ar_from_attrib(from.attrib), from.limit, from.base};
    };
    const segment* const in_order[cpu::segment_count] = {&b.state.es, &b.state.cs, &b.state.ss, &b.state.ds,
                                                         &b.state.fs, &b.state.gs, &b.state.ldtr, &b.state.tr};
    for (unsigned i = 0; i < cpu::segment_count; ++i) put(g.segs[i], *in_order[i]);
    g.gdtr = {b.state.gdtr.base, b.state.gdtr.limit};
    g.idtr = {b.state.idtr.base, b.state.idtr.limit};
}

void load_mode(cpu::vcpu& v) {
    const vmcb& b = *arch(v).block;
    cpu::guest_state& g = v.state;
    g.efer = arch(v).shadow_paging ? arch(v).guest_efer : b.state.efer & ~x86::efer::svme;
    g[cpu::seg::cs].access = ar_from_attrib(b.state.cs.attrib);
    g[cpu::seg::ss].access = ar_from_attrib(b.state.ss.attrib);
}

// The VMCB's CPL byte (APM: what the processor uses, not SS.DPL) and CS attributes;
// a 64-bit kernel, the usual case, tests them in place.
[[gnu::noinline]] cpu::call_mode any_call_mode(const vcpu_arch& a) {
    const vmcb& b = *a.block;
    const std::uint64_t efer = a.shadow_paging ? a.guest_efer : b.state.efer;
    return cpu::call_mode_of(efer & x86::efer::lma, ar_from_attrib(b.state.cs.attrib), b.state.cpl);
}

cpu::call_mode read_call_mode(cpu::vcpu& v) {
    const vcpu_arch& a = arch(v);
    const vmcb& b = *a.block;
    static_assert(ar_from_attrib(1u << 9) == cpu::ar::l);
    if (b.state.cpl != 0 || !(b.state.cs.attrib & (1u << 9))) [[unlikely]] return any_call_mode(a);
    const std::uint64_t efer = a.shadow_paging ? a.guest_efer : b.state.efer;
    return efer & x86::efer::lma ? cpu::call_mode::kernel64 : cpu::call_mode::kernel32;
}

// RSP/RFLAGS (RFLAGS.AC for SMAP after a hot exit), CR0/CR3/CR4 and EFER as the guest
// sees them (under shadow paging, vcpu_arch's copies), CS's and SS's rights; returns CS's.
[[gnu::always_inline]] inline std::uint32_t load_paging_state_of(cpu::vcpu& v, const vcpu_arch& a, const vmcb& b) {
    cpu::guest_state& g = v.state;
    load_flags_of(v, b);
    if (a.shadow_paging) {
        g.cr0 = a.guest_cr0;
        g.cr3 = a.guest_cr3;
        g.cr4 = a.guest_cr4;
        g.efer = a.guest_efer;
    } else {
        g.cr0 = b.state.cr0;
        g.cr3 = b.state.cr3;
        g.cr4 = b.state.cr4;
        g.efer = b.state.efer & ~x86::efer::svme;
    }
    const std::uint32_t cs = ar_from_attrib(b.state.cs.attrib);
    g[cpu::seg::cs].access = cs;
    g[cpu::seg::ss].access = ar_from_attrib(b.state.ss.attrib);
    return cs;
}

void load_paging_state(cpu::vcpu& v) { (void)load_paging_state_of(v, arch(v), *arch(v).block); }

void load_memory_state(cpu::vcpu& v) {
    const vcpu_arch& a = arch(v);
    const vmcb& b = *a.block;
    cpu::guest_state& g = v.state;
    const std::uint32_t cs = load_paging_state_of(v, a, b);
    // In 64-bit code only FS and GS have a base (the others count as 0): the other four
    // are left as they were (backend_ops::load_memory_state).
    sync_hidden(a);
    if ((g.efer & x86::efer::lma) && (cs & cpu::ar::l)) {
        g[cpu::seg::fs].base = b.state.fs.base;
        g[cpu::seg::gs].base = b.state.gs.base;
        return;
    }
    const segment* const in_order[6] = {&b.state.es, &b.state.cs, &b.state.ss, &b.state.ds, &b.state.fs, &b.state.gs};
    for (unsigned i = 0; i < 6; ++i) g.segs[i].base = in_order[i]->base;
}

void flush_nested(cpu::vcpu& v) { arch(v).block->control.tlb_ctl = tlb_control::flush_asid; }

// V_TPR holds CR8 (TPR bits 7:4); `tpr` keeps the value until prepare() builds the VMCB.
std::uint8_t read_tpr(const cpu::vcpu& v) {
    const vcpu_arch& a = *static_cast<const vcpu_arch*>(v.arch());
    return a.prepared ? static_cast<std::uint8_t>((a.block->control.vintr & v_tpr) << 4) : a.tpr;
}

void write_tpr(cpu::vcpu& v, std::uint8_t tpr) {
    vcpu_arch& a = arch(v);
    a.tpr = tpr & 0xf0;
    a.block->control.vintr = (a.block->control.vintr & ~v_tpr) | (tpr >> 4);
}

void set_paging_root(cpu::vcpu& v, std::uint64_t guest_cr3, std::uint64_t root) {
    vcpu_arch& a = arch(v);
    a.guest_cr3 = v.state.cr3 = guest_cr3;
    a.shadow_root = root;
    a.block->state.cr3 = root;
}

// TLB_CONTROL acts at the next VMRUN; a stronger request already made stays. Without
// FlushByASID only "flush everything" exists. One address is flushed as the whole ASID.
void flush_tlb(cpu::vcpu& v, cpu::tlb_flush what, std::uint64_t) {
    vcpu_arch& a = arch(v);
    tlb_control& t = a.block->control.tlb_ctl;
    if (!a.cpu->caps.flush_by_asid) {
        t = tlb_control::flush_all;
        return;
    }
    if (t == tlb_control::flush_all || t == tlb_control::flush_asid) return;
    t = what == cpu::tlb_flush::non_global ? tlb_control::flush_asid_non_global : tlb_control::flush_asid;
}

status write_efer(cpu::vcpu& v, std::uint64_t value) {
    vcpu_arch& a = arch(v);
    std::uint64_t& real = a.block->state.efer;
    const std::uint64_t efer = (value & ~(x86::efer::lma | x86::efer::svme)) | (real & x86::efer::lma);
    real = a.shadow_paging ? shadow_real_efer(efer) : efer | x86::efer::svme;
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
    const auto ext1 = x86::cpuid(0x80000001);
    const auto leaf = x86::cpuid(0x8000000a);
    probe_input in{ext1.ecx, leaf.eax, leaf.ebx, leaf.edx, false, 0};
    in.vm_cr_readable = x86::rdmsr_safe(msr::vm_cr, in.vm_cr);  // #GP on Bochs: "not disabled"
    const auto p = probe(in);
    if (!p.usable) return fail(errc::not_supported, p.why_not);
    c.caps = p.caps;
    c.maxphyaddr = x86::cpuid(0x80000008).eax & 0xff;
    x86::wrmsr(msr::efer, x86::rdmsr(msr::efer) | x86::efer::svme);
    c.host_xcr0 = cpu::current_xcr0();
    void* hsave = alloc(1);
    void* host_save = alloc(1);
    if (!hsave || !host_save) return fail(errc::no_memory, "host save areas");
    c.hsave_pa = cpu::pa_of(hsave);
    c.host_save_pa = cpu::pa_of(host_save);
    x86::wrmsr(msr::vm_hsave_pa, c.hsave_pa);
    if (!c.caps.nested_paging) return {};  // shadow-paged vCPUs only
    c.npt_root = cpu::identity_nested_map(alloc, cpu::nested_format::npt);
    if (!c.npt_root) return fail(errc::no_memory, "NPT tables");
    return {};
}

status create(vcpu_arch& a, cpu_context& c, std::uint32_t asid) {
    if (asid == 0 || asid >= c.caps.asids) return fail(errc::out_of_range, "ASID outside 1..caps.asids-1");
    a.cpu = &c;
    a.asid = asid;
    a.nrips = c.caps.nrips;
    a.block = static_cast<svm::vmcb*>(c.alloc(1));
    a.iopm = static_cast<std::uint8_t*>(c.alloc(3));
    a.msrpm = static_cast<std::uint8_t*>(c.alloc(2));
    if (!a.block || !a.iopm || !a.msrpm) return fail(errc::no_memory, "VMCB or permission maps");
    __builtin_memset(a.iopm, 0xff, 3 * 4096);
    __builtin_memset(a.msrpm, 0xff, 2 * 4096);
    return {};
}

} // namespace hv::svm
