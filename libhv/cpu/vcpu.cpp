#include "libhv/cpu/vcpu.hpp"
#include "libhv/cpu/loop_word.h"

namespace hv::cpu {

void event_queue::raise_exception(std::uint8_t vector, std::optional<std::uint32_t> error_code) {
    *any_ = true;
    if (exception_.valid) {
        if (exception_.vector == 8) {
            triple_ = true;
            return;
        }
        exception_ = event{true, event_kind::hardware_exception, 8, true, 0};
        return;
    }
    exception_ = event{true, event_kind::hardware_exception, vector, error_code.has_value(), error_code.value_or(0)};
}

event_queue::decision event_queue::next(bool interrupts_open, bool nmi_blocked) {
    decision d{};
    if (reinject_.valid) {
        d.inject = reinject_;
        reinject_ = {};
    } else if (exception_.valid) {
        d.inject = exception_;
        exception_ = {};
    } else if (nmi_ && !nmi_blocked) {
        d.inject = event{true, event_kind::nmi, 2, false, 0};
        nmi_ = false;
    } else if (interrupts_open && interrupt_pending()) {
        for (int w = 3; w >= 0; --w) {
            if (!irr_[w]) continue;
            const unsigned bit = 63 - static_cast<unsigned>(__builtin_clzll(irr_[w]));
            irr_[w] &= ~(1ull << bit);
            d.inject = event{true, event_kind::external_interrupt, static_cast<std::uint8_t>(w * 64 + bit), false, 0};
            break;
        }
    }
    // Whatever still waits gets a window exit, so it is not left until the next unrelated exit.
    d.irq_window = interrupt_pending();
    d.nmi_window = nmi_;
    *any_ = reinject_.valid || exception_.valid || nmi_ || triple_ || d.irq_window;
    return d;
}

std::string_view name(vcpu_status s) {
    switch (s) {
    case vcpu_status::runnable: return "runnable";
    case vcpu_status::halted: return "halted";
    case vcpu_status::stopped: return "stopped";
    case vcpu_status::failed: return "failed";
    }
    return "?";
}

namespace default_handler {
void hlt(vcpu& v, const exit_info&) {
    v.skip();
    if (v.status() == vcpu_status::runnable) v.halt();
}
void interrupt_window(vcpu&, const exit_info&) {}
// The host's own interrupt (a host timer or IPI, still pending on VMX) or the preemption
// timer: the backend's loop returns, so the host takes it and the next entry re-arms.
void external_interrupt(vcpu& v, const exit_info&) { v.request_return(); }
void triple_fault(vcpu& v, const exit_info&) { v.fail("guest triple fault"); }
void entry_failed(vcpu& v, const exit_info& e) {
    switch (e.reason) {
    case exit_reason::invalid_guest_state: v.fail("VM entry failed: invalid guest state"); break;
    case exit_reason::entry_refused: v.fail("VM entry refused: VM-instruction error"); break;
    default: v.fail("VM entry failed: MSR loading or machine check"); break;
    }
}
void virtualization(vcpu& v, const exit_info&) { v.inject_exception(6); }
void exception(vcpu& v, const exit_info& e) {
    if (e.exception.vector == 8) v.fail("guest double fault (intercepted: it would end in a triple fault)");
    else v.fail("unhandled exit: guest exception");
}
void unhandled(vcpu& v, const exit_info&) { v.fail("unhandled exit"); }
void cr_access(vcpu& v, const exit_info& e) {
    const auto& c = e.cr;
    const backend_ops& ops = v.ops();
    std::uint64_t value = 0;
    unsigned cr = c.cr;
    if (cr == 8) {
        // CR8 exits (VMX without a TPR shadow): the TPR the backend keeps for the vCPU.
        if (!c.gpr_known || (c.op != cr_op::write && c.op != cr_op::read)) return unhandled(v, e);
        if (c.op == cr_op::read) {
            v.state.regs[c.gpr] = v.tpr() >> 4;
            if (c.gpr == 4) v.mark_dirty(vcpu::dirty_rsp);
        } else {
            const std::uint64_t cr8 = v.state.regs[c.gpr];
            if (cr8 > 15) {
                v.inject_exception(13, 0);
                return;
            }
            v.set_tpr(static_cast<std::uint8_t>(cr8 << 4));
        }
        v.skip();
        return;
    }
    switch (c.op) {
    case cr_op::write:
        if (!c.gpr_known || (cr != 0 && cr != 4)) return unhandled(v, e);
        value = v.state.regs[c.gpr];
        break;
    case cr_op::clts:
        cr = 0;
        value = ops.read_cr(v, 0) & ~(1ull << 3);
        break;
    case cr_op::lmsw: {
        // LMSW loads CR0 bits 3:0 but cannot clear PE.
        const std::uint64_t old = ops.read_cr(v, 0);
        cr = 0;
        value = (old & ~0xeull) | (c.lmsw_source & 0xf) | (old & x86::cr0::pe);
        break;
    }
    case cr_op::read:
    case cr_op::smsw: return unhandled(v, e);
    }
    if (!ops.write_cr(v, cr, value).ok()) {
        v.inject_exception(13, 0);
        return;
    }
    v.skip();
}
} // namespace default_handler

namespace {
exit_handler default_for(exit_reason r) {
    using namespace default_handler;
    switch (r) {
    case exit_reason::hlt: return hlt;
    case exit_reason::interrupt_window:
    case exit_reason::nmi_window: return interrupt_window;
    case exit_reason::external_interrupt:
    case exit_reason::preemption_timer:
    case exit_reason::nmi: return external_interrupt;
    case exit_reason::triple_fault: return triple_fault;
    case exit_reason::invalid_guest_state:
    case exit_reason::entry_failure:
    case exit_reason::entry_refused: return entry_failed;
    case exit_reason::virtualization: return virtualization;
    case exit_reason::exception: return exception;
    case exit_reason::cr_access: return cr_access;
    default: return unhandled;
    }
}
} // namespace

void vcpu::on(exit_reason r, exit_handler h) { on(r, h, h ? handler_kind::host : handler_kind::leaf); }

// The defaults of the hot exits (hlt, unhandled) are leaf handlers.
void vcpu::on(exit_reason r, exit_handler h, handler_kind kind) {
    const auto i = static_cast<std::size_t>(r);
    if (i >= exit_reason_count) return;
    handlers_[i] = h ? h : default_for(r);
    const std::uint64_t bit = 1ull << i;
    const std::uint64_t was = leaf_hot_;
    if (!h || kind == handler_kind::leaf) leaf_hot_ |= bit & hot_reason_mask;
    else leaf_hot_ &= ~bit;
    // A backend loop chosen for the old kinds (SVM's lean one) must not run the new handler.
    if (leaf_hot_ != was) request_return();
}

void vcpu::init(unsigned id, const backend_ops& ops, void* arch, void* stack, std::size_t stack_size) {
    for (std::size_t i = 0; i < exit_reason_count; ++i)
        if (!handlers_[i]) handlers_[i] = default_for(static_cast<exit_reason>(i));
    id_ = id;
    ops_ = &ops;
    arch_ = arch;
    loop_flags_.f.status = vcpu_status::runnable;
    events.keep_flag_at(&loop_flags_.f.events);
    why_ = nullptr;
    fiber_.init(stack, stack_size, &vcpu::entry, this);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
std::size_t vcpu::loop_word_offset() {
    constexpr std::size_t at = offsetof(vcpu, loop_flags_);
    // SVM's switch.S reaches the vCPU through its registers (state.regs comes first) and
    // tests the loop word at this offset.
    static_assert(offsetof(vcpu, state) == 0);
#if !HV_HOSTED
    static_assert(at == HV_VCPU_LOOP_WORD, "update libhv/cpu/loop_word.h");
#endif
    return at;
}
#pragma GCC diagnostic pop

void vcpu::entry(fiber&, void* self) { static_cast<vcpu*>(self)->run_loop(); }

bool vcpu::wakeable() const {
    return events.nmi_pending() || ((events.interrupt_pending() || source_pending()) && ops_->interrupts_open(*this)) ||
           events.triple_fault();
}

// source_known_pending: stay_after_polling just saw it (nothing ran since but this vCPU's
// run loop; stale at worst after a halt, when acknowledge() then finds nothing).
template <bool source_known_pending>
event_queue::decision vcpu::decide() {
    const bool from_source = source_known_pending || source_pending();
    if (events.empty() && !from_source) {
        event_queue::decision d{};
        if (source_.tpr_masked) d.tpr_threshold = source_.tpr_masked(source_.ctx);
        return d;
    }
    const bool open = ops_->interrupts_open(*this);
    auto d = events.next(open, false);
    if (from_source) {
        if (!d.inject.valid && open) {
            if (auto vec = source_.acknowledge(source_.ctx))
                d.inject = event{true, event_kind::external_interrupt, *vec, false, 0};
        }
        d.irq_window = d.irq_window || source_pending();
        if (!d.irq_window && source_.tpr_masked) d.tpr_threshold = source_.tpr_masked(source_.ctx);
    }
    return d;
}

bool vcpu::sleeping() const { return loop_flags_.f.status == vcpu_status::halted && !wakeable(); }

void vcpu::skip_slow() {
    // The exit's instruction_length (handle()/handle_last() set both from the slot).
    std::uint8_t len = skip_length_ & ~in_shadow;
    if (!len) {
        auto r = ops_->instruction_length(*this);
        if (!r) {
            fail(r.err().what);
            return;
        }
        len = *r;
    }
    state.rip += len;
    if (state.interruptibility & 3u) {
        state.interruptibility &= ~3u;
        mark_dirty(dirty_interruptibility);
    }
}

void vcpu::run_loop() {
    run_guest();
    if (loop_flags_.f.status == vcpu_status::failed && failure_sink_) report(*failure_sink_);
}

void vcpu::run_guest() {
    if (auto s = ops_->prepare(*this); !s.ok()) {
        fail(s.err().what);
        return;
    }
    // The hot path: nothing pending, no hook, no interrupt controller: the backend runs
    // the guest and its exits until one leaves work here. Everything else branches off it.
    for (;;) {
        if (loop_flags_.f.status != vcpu_status::runnable) [[unlikely]] {
            if (loop_flags_.f.status != vcpu_status::halted) break;
            if (!wakeable()) {
                fiber_.yield();
                continue;
            }
            loop_flags_.f.status = vcpu_status::runnable;
        }
        if (events.empty() && !loop_flags_.f.extras) [[likely]] ops_->run(*this, nullptr);
        else if (!enter_with_events()) break;
        if (loop_flags_.f.yield) [[unlikely]] {
            loop_flags_.f.yield = false;
            fiber_.yield();
        }
    }
}

// After a handler, with an entry hook or interrupt source set and nothing else for the
// run loop: poll them as the run loop does before an entry. Nothing to deliver: the
// backend re-enters at once. Otherwise the run loop, which goes straight to
// enter_with_events() then, does not run the hook a second time for that entry.
bool vcpu::stay_after_polling() {
    // Dirty state alone keeps the loop going: the backend writes it back.
    if ((loop_flags_.word & ~dirty_in_word) == 0) return true;
    if ((loop_flags_.word & ~dirty_in_word) != only_extras) return false;  // events included
    if (hook_.fn) hook_.fn(*this, hook_.ctx);
    if ((loop_flags_.word & ~dirty_in_word) != only_extras) return false;
    // A preemption deadline is armed by an entry from the run loop: the hook moved it (a
    // device model's timer programmed, a timer that fell due), so leave the backend's loop
    // for the run loop to arm the new one. Unchanged, the armed timer keeps counting to it
    // (the backend checks that it has not fired already). None left: nothing can be late,
    // so stay; a timer still armed ends in one preemption exit, which leaves the loop and
    // is disarmed by the run loop.
    const std::uint8_t hook_ran = hook_.fn ? polled_hook : 0;
    if (preempt_at_ && preempt_at_ != armed_at_) {
        polled_ = hook_ran;
        return false;
    }
    // An interrupt to deliver: decide() in the run loop takes it from what was found here
    // (the source asked once). One the guest's TPR holds back needs a TPR threshold set
    // by the run loop (decide()); one already set made the backend request_return().
    if (source_pending()) {
        polled_ = hook_ran | polled_source;
        return false;
    }
    if (source_.tpr_masked && source_.tpr_masked(source_.ctx)) {
        polled_ = hook_ran;
        return false;
    }
    return true;
}

bool vcpu::budget_exhausted() {
    fail("exit budget exhausted");
    return false;
}

// Entry with an event pending, an interrupt controller or an entry hook. False: the
// vCPU ended instead (triple fault while delivering #DF).
bool vcpu::enter_with_events() {
    if (events.triple_fault()) {
        fail("guest triple fault (exception while delivering #DF)");
        return false;
    }
    if (hook_.fn && !(polled_ & polled_hook)) hook_.fn(*this, hook_.ctx);
    const bool source_known = polled_ & polled_source;  // the hook leaves polled_ alone
    polled_ = 0;
    const event_queue::decision d = source_known ? decide<true>() : decide<false>();
    ops_->run(*this, &d);
    return true;
}

void vcpu::report(const fmt::sink& out) const {
    fmt::format(out, "vcpu {}: {}", id_, name(loop_flags_.f.status));
    if (why_) fmt::format(out, ": {}", why_);
    fmt::format(out, "\n");
    log.print(out);
}

status scheduler::add(vcpu& v) {
    if (n_ == max_vcpus) return fail(errc::no_memory, "scheduler full");
    v_[n_++] = &v;
    return {};
}

status scheduler::add_task(fiber& f) {
    if (task_count_ == max_tasks) return fail(errc::no_memory, "scheduler: too many tasks");
    tasks_[task_count_++] = &f;
    return {};
}

template <bool locked>
void scheduler::rounds(idle_fn idle, void* ctx) {
    for (;;) {
        if constexpr (locked) lock_->lock();
        for (std::size_t i = 0; i < task_count_; ++i)
            if (!tasks_[i]->finished()) tasks_[i]->resume();
        bool alive = false, ran = false;
        for (std::size_t i = 0; i < n_; ++i) {
            vcpu& v = *v_[i];
            if (v.finished()) continue;
            alive = true;
            if (v.sleeping()) continue;
            v.resume();
            ran = true;
        }
        if constexpr (locked) lock_->unlock();
        if (!alive) return;
        if (!ran && (!idle || !idle(ctx))) return;
    }
}

// The lock test is outside the loop: a one-CPU guest's rounds cost what they did.
void scheduler::run(idle_fn idle, void* ctx) {
    if (lock_) rounds<true>(idle, ctx);
    else rounds<false>(idle, ctx);
}

} // namespace hv::cpu
