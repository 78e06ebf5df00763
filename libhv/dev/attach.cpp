#include "libhv/dev/attach.hpp"

namespace hv::dev {

namespace {

// Attachments alive now; handlers are plain functions of the vCPU.
constexpr unsigned max_attachments = 8;
attachment* registry[max_attachments] = {};

constexpr std::uint8_t vector_gp = 13;
constexpr std::uint32_t cpuid_hypervisor_leaf = 0x40000000;

void set_edx_eax(cpu::vcpu& v, std::uint64_t value) {
    v.state.regs.rax = value & 0xffffffffu;
    v.state.regs.rdx = value >> 32;
}

} // namespace

attachment::attachment(machine& m, const attach_config& cfg)
    : m_{&m}, cfg_{cfg}, min_slice_{m.timers().clock().frequency() / 1000000} {
    for (auto*& r : registry)
        if (!r) {
            r = this;
            break;
        }
    if (cfg_.console) m.com1().set_sink(callback<std::uint8_t>{&console_byte, this});
}

attachment::~attachment() {
    for (auto*& r : registry)
        if (r == this) r = nullptr;
    if (cfg_.console) m_->com1().set_sink({});
}

attachment* attachment::of(cpu::vcpu& v, unsigned& index) {
    for (attachment* a : registry) {
        if (!a) continue;
        for (unsigned i = 0; i < a->count_; ++i)
            if (a->slots_[i].v == &v) {
                index = i;
                return a;
            }
    }
    return nullptr;
}

status attachment::attach(cpu::vcpu& v, unsigned index) {
    if (index >= max_vcpus || index >= m_->vcpus()) return fail(errc::out_of_range, "vCPU index beyond the machine's");
    bool registered = false;
    for (attachment* r : registry) registered = registered || r == this;
    if (!registered) return fail(errc::no_memory, "too many device attachments");
    if (slots_[index].v) return fail(errc::invalid_argument, "vCPU index attached twice");
    slot& s = slots_[index];
    s = slot{this, &v, index, false, false, 0, 0, 0};
    s.tpr_model = m_->cpu(index).tpr();
    v.set_tpr(s.tpr_model);
    s.tpr_cpu = v.tpr();
    if (index >= count_) count_ = index + 1;

    v.on(cpu::exit_reason::msr_read, &on_msr_read);
    v.on(cpu::exit_reason::msr_write, &on_msr_write);
    v.on(cpu::exit_reason::cpuid, &on_cpuid);
    v.set_interrupt_source({&s, &source_pending, &source_acknowledge, &source_tpr_masked});
    v.set_entry_hook({&s, &entry});
    if (index != 0) {
        // An application processor after RESET: parked until a SIPI, in a valid state.
        v.state = cpu::initial_state(cpu::guest_mode::real, 0);
        park(s);
    }
    return {};
}

// ---- interrupts, INIT/SIPI, time ----

void attachment::pull_tpr(slot& s) {
    const std::uint8_t now = s.v->tpr();
    if (now == s.tpr_cpu) return;
    m_->cpu(s.index).write_reg(apic_reg::tpr, now);
    s.tpr_cpu = now;
    s.tpr_model = now;
}

void attachment::sync_tpr(slot& s) {
    lapic& l = m_->cpu(s.index);
    const std::uint8_t now = s.v->tpr();
    if (now != s.tpr_cpu) {
        l.write_reg(apic_reg::tpr, now);
        s.tpr_cpu = now;
        s.tpr_model = now;
        return;
    }
    const std::uint8_t model = l.tpr();
    if (model == s.tpr_model) return;
    s.v->set_tpr(model);
    s.tpr_model = model;
    s.tpr_cpu = s.v->tpr();  // SVM keeps bits 7:4 only
}

bool attachment::source_pending(void* ctx) {
    slot& s = *static_cast<slot*>(ctx);
    if (s.parked) return s.start_pending;
    // Before an entry the hook has just synchronized the TPR; a halted vCPU's may have
    // changed before its HLT.
    if (s.v->status() == cpu::vcpu_status::halted) s.owner->pull_tpr(s);
    return s.owner->m_->cpu(s.index).pending_interrupt().has_value();
}

std::uint8_t attachment::source_tpr_masked(void* ctx) {
    const slot& s = *static_cast<slot*>(ctx);
    if (s.parked) return 0;
    return s.owner->m_->cpu(s.index).tpr_masked_class();
}

std::optional<std::uint8_t> attachment::source_acknowledge(void* ctx) {
    slot& s = *static_cast<slot*>(ctx);
    if (s.parked) return std::nullopt;
    auto vec = s.owner->m_->cpu(s.index).acknowledge_interrupt();
    if (vec) ++s.owner->stats_.injected;
    return vec;
}

void attachment::entry(cpu::vcpu& v, void* ctx) {
    slot& s = *static_cast<slot*>(ctx);
    attachment& a = *s.owner;
    a.current_ = s.index;
    if (s.start_pending) a.start(s);
    timer_queue& timers = a.m_->timers();
    const std::uint64_t now = timers.now();
    timers.run_expired(now);
    if (a.m_->cpu(s.index).take_nmi()) v.inject_nmi();
    a.sync_tpr(s);
    // A guest that spins without exits must still leave by the next deadline (on metal the
    // machine's clock is the host TSC, which the backends' preemption counts). A deadline
    // the timers left due (a timer re-armed at or before now) gives the guest a minimal
    // slice, or it would exit before its first instruction, forever.
    if (const auto next = timers.next_deadline()) {
        const std::uint64_t earliest = now + a.min_slice_;
        v.set_preemption_deadline(*next > earliest ? *next : earliest);
    } else {
        v.set_preemption_deadline(0);
    }
}

void attachment::park(slot& s) {
    cpu::vcpu& v = *s.v;
    if (v.status() != cpu::vcpu_status::runnable && v.status() != cpu::vcpu_status::halted) return;
    s.parked = true;
    s.start_pending = false;
    // Halted with IF = 1, so that the SIPI (the interrupt source) wakes it.
    v.state.rflags |= x86::rflags::if_;
    v.halt();
}

void attachment::start(slot& s) {
    cpu::vcpu& v = *s.v;
    s.parked = false;
    s.start_pending = false;
    // Real mode at CS = vector << 8, IP = 0 (SDM 10.4.4.1 / 8.4.3).
    const std::uint64_t base = std::uint64_t{s.start_vector} << 12;
    v.state = cpu::initial_state(cpu::guest_mode::real, 0);
    v.state[cpu::seg::cs].selector = static_cast<std::uint16_t>(s.start_vector << 8);
    v.state[cpu::seg::cs].base = base;
    v.state.rip = 0;
    if (auto r = v.ops().prepare(v); !r.ok()) v.fail(r.err().what);
    (void)v.take_dirty();
    // INIT reset the local APIC's TPR; whatever CR8 the vCPU had before is gone.
    s.tpr_model = s.owner->m_->cpu(s.index).tpr();
    v.set_tpr(s.tpr_model);
    s.tpr_cpu = v.tpr();
}

void attachment::start_ipis() {
    for (unsigned j = 0; j < count_; ++j) {
        slot& s = slots_[j];
        if (!s.v) continue;
        lapic& l = m_->cpu(j);
        if (l.take_init() && j != 0) {  // the BSP has no firmware to restart it
            park(s);
            ++stats_.inits;
        }
        if (auto vec = l.take_sipi(); vec && s.parked) {
            s.start_vector = *vec;
            s.start_pending = true;
            ++stats_.sipis;
        }
    }
}

bool attachment::any_wakeable() const {
    for (unsigned i = 0; i < count_; ++i) {
        const cpu::vcpu* v = slots_[i].v;
        if (v && !v->finished() && !v->sleeping()) return true;
    }
    return false;
}

bool attachment::stop_if_one_failed() {
    bool failed = false;
    for (unsigned i = 0; i < count_; ++i)
        failed = failed || (slots_[i].v && slots_[i].v->status() == cpu::vcpu_status::failed);
    if (!failed) return false;
    for (unsigned i = 0; i < count_; ++i) {
        cpu::vcpu* v = slots_[i].v;
        if (v && (v->status() == cpu::vcpu_status::runnable || v->status() == cpu::vcpu_status::halted))
            v->stop("another vCPU of the guest failed");
    }
    return true;
}

bool attachment::idle(void* ctx) {
    attachment& a = *static_cast<attachment*>(ctx);
    // A failed vCPU ends its guest: the others would only wait (or tick) forever.
    if (a.stop_if_one_failed()) return true;
    a.m_->poll();
    if (a.any_wakeable()) return true;
    const auto next = a.m_->next_deadline();
    if (!next || !a.cfg_.wait.fn) return false;
    ++a.stats_.idle_waits;
    a.cfg_.wait.fn(a.cfg_.wait.ctx, *next);
    a.m_->poll();
    return true;
}

void attachment::check_events() {
    const event ev = m_->take_event();
    outcome_ = {ev.kind, ev.value};
    const char* why = outcome_.kind == event_kind::debug_exit  ? "guest wrote the debug-exit port"
                      : outcome_.kind == event_kind::power_off ? "guest powered off (ACPI S5)"
                                                               : "guest reset the machine";
    for (unsigned i = 0; i < count_; ++i) {
        cpu::vcpu* v = slots_[i].v;
        if (v && (v->status() == cpu::vcpu_status::runnable || v->status() == cpu::vcpu_status::halted)) v->stop(why);
    }
}

// ---- exits ----

std::uint32_t attachment::port_in(void* ctx, std::uint16_t port, std::uint8_t size) {
    auto& a = *static_cast<attachment*>(ctx);
    ++a.stats_.io;
    return a.m_->io_read(port, size);
}

void attachment::port_out(void* ctx, std::uint16_t port, std::uint8_t size, std::uint32_t value) {
    auto& a = *static_cast<attachment*>(ctx);
    ++a.stats_.io;
    a.m_->io_write(port, size, value);
    if (a.m_->has_event()) a.check_events();
}

std::size_t attachment::port_in_block(void* ctx, std::uint16_t port, std::uint8_t size, void* dst, std::size_t count) {
    auto& a = *static_cast<attachment*>(ctx);
    const std::size_t n = a.m_->io_read_block(port, size, dst, count);
    a.stats_.io += n;
    return n;
}

std::size_t attachment::port_out_block(void* ctx, std::uint16_t port, std::uint8_t size, const void* src,
                                       std::size_t count) {
    auto& a = *static_cast<attachment*>(ctx);
    const std::size_t n = a.m_->io_write_block(port, size, src, count);
    a.stats_.io += n;
    if (a.m_->has_event()) a.check_events();
    return n;
}

void attachment::on_msr_read(cpu::vcpu& v, const cpu::exit_info& e) {
    unsigned index = 0;
    attachment* a = of(v, index);
    if (!a) return cpu::default_handler::unhandled(v, e);
    ++a->stats_.msr;
    a->pull_tpr(a->slots_[index]);
    const std::uint32_t msr = e.msr.index;
    const msr_value r = a->m_->read_msr(index, msr);
    switch (r.outcome) {
    case msr_outcome::ok: set_edx_eax(v, r.value); break;
    case msr_outcome::gp: return v.inject_exception(vector_gp, 0);
    case msr_outcome::unhandled:
        if (a->cfg_.msr_read_next) return a->cfg_.msr_read_next(v, e);
        return v.inject_exception(vector_gp, 0);
    }
    v.skip();
}

void attachment::on_msr_write(cpu::vcpu& v, const cpu::exit_info& e) {
    unsigned index = 0;
    attachment* a = of(v, index);
    if (!a) return cpu::default_handler::unhandled(v, e);
    ++a->stats_.msr;
    a->pull_tpr(a->slots_[index]);
    const std::uint32_t msr = e.msr.index;
    const std::uint64_t value = (v.state.regs.rdx << 32) | (v.state.regs.rax & 0xffffffffu);
    switch (a->m_->write_msr(index, msr, value)) {
    case msr_outcome::ok:
        v.skip();
        a->start_ipis();  // an x2APIC ICR write may have sent INIT/SIPI
        return;
    case msr_outcome::gp: return v.inject_exception(vector_gp, 0);
    case msr_outcome::unhandled: break;
    }
    if (a->cfg_.msr_write_next) return a->cfg_.msr_write_next(v, e);
    v.inject_exception(vector_gp, 0);
}

void attachment::on_cpuid(cpu::vcpu& v, const cpu::exit_info& e) {
    unsigned index = 0;
    attachment* a = of(v, index);
    if (!a) return cpu::default_handler::unhandled(v, e);
    ++a->stats_.cpuid;
    const std::uint32_t leaf = static_cast<std::uint32_t>(v.state.regs.rax);
    if (leaf == cpuid_timing_leaf) {
        v.state.regs.rax = static_cast<std::uint32_t>(a->m_->timers().clock().frequency() / 1000);
        v.state.regs.rbx = static_cast<std::uint32_t>(a->m_->config().lapic_timer_hz / 1000);
        v.state.regs.rcx = 0;
        v.state.regs.rdx = 0;
        v.skip();
        return;
    }
    if (!a->cfg_.cpuid_next) return cpu::default_handler::unhandled(v, e);
    a->cfg_.cpuid_next(v, e);
    // The hypervisor range's first leaf names its last: include the timing leaf.
    if (leaf == cpuid_hypervisor_leaf && static_cast<std::uint32_t>(v.state.regs.rax) < cpuid_timing_leaf)
        v.state.regs.rax = cpuid_timing_leaf;
}

// ---- MMIO ----

bool attachment::mmio_read(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t& value) {
    const mmio_window& w = *static_cast<mmio_window*>(ctx);
    attachment& a = *w.self;
    ++a.stats_.mmio;
    a.pull_tpr(a.slots_[a.current_]);
    value = a.m_->mmio_read(a.current_, w.base + offset, size);
    return true;
}

bool attachment::mmio_write(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t value) {
    const mmio_window& w = *static_cast<mmio_window*>(ctx);
    attachment& a = *w.self;
    ++a.stats_.mmio;
    a.pull_tpr(a.slots_[a.current_]);
    a.m_->mmio_write(a.current_, w.base + offset, size, value);
    a.start_ipis();  // an xAPIC ICR write may have sent INIT/SIPI
    return true;
}

// ---- console ----

void attachment::console_byte(void* ctx, std::uint8_t byte) {
    auto& a = *static_cast<attachment*>(ctx);
    if (byte == '\r') return;
    if (byte != '\n') a.line_[a.line_len_++] = static_cast<char>(byte);
    if (byte == '\n' || a.line_len_ == console_line) {
        // One write per line: the console keeps it whole among other CPUs' lines.
        char whole[console_line + 48];
        std::size_t n = a.cfg_.console_prefix.size() < 46 ? a.cfg_.console_prefix.size() : 46;
        __builtin_memcpy(whole, a.cfg_.console_prefix.data(), n);
        __builtin_memcpy(whole + n, a.line_, a.line_len_);
        n += a.line_len_;
        whole[n++] = '\n';
        a.cfg_.console->write(whole, n);
        a.line_len_ = 0;
    }
}

void attachment::flush_console() {
    if (line_len_ && cfg_.console) console_byte(this, '\n');
}

} // namespace hv::dev
