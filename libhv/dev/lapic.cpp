#include "libhv/dev/lapic.hpp"

namespace hv::dev {

using namespace apic_bits;

namespace {
constexpr std::uint32_t lvt_vector = 0xff;
constexpr std::uint32_t lvt_mode_bits = 0x700;
constexpr std::uint32_t lvt_writable[6] = {
    lvt_vector | lvt_masked | (3u << 17),                                        // timer
    lvt_vector | lvt_mode_bits | lvt_masked,                                     // thermal
    lvt_vector | lvt_mode_bits | lvt_masked,                                     // perf
    lvt_vector | lvt_mode_bits | lvt_active_low | lvt_level | lvt_masked,        // LINT0
    lvt_vector | lvt_mode_bits | lvt_active_low | lvt_level | lvt_masked,        // LINT1
    lvt_vector | lvt_masked,                                                     // error
};
constexpr unsigned reg_index(apic_reg r) { return static_cast<unsigned>(r) >> 4; }
} // namespace

lapic::lapic(const lapic_config& cfg, apic_bus& bus, timer_queue& timers)
    : cfg_{cfg}, bus_{bus}, timers_{timers},
      apic_clk_{cfg.timer_hz ? cfg.timer_hz : 1, timers.clock().frequency()},
      timer_{&timer_fired, this}, id_{cfg.apic_id} {
    reset();
    bus_.attach(*this);
}

lapic::~lapic() { bus_.detach(*this); }

int lapic::highest(const bitmap& b) {
    // Checked before every entry: 64 bits at a time (words 2i and 2i+1, little-endian).
    for (int i = 3; i >= 0; --i) {
        std::uint64_t w;
        __builtin_memcpy(&w, &b[2 * i], sizeof w);
        if (w) return i * 64 + 63 - __builtin_clzll(w);
    }
    return -1;
}

void lapic::reset_registers() {
    tpr_ = 0;
    ldr_ = 0;
    dfr_ = 0xffffffff;
    svr_ = 0xff;
    esr_ = esr_pending_ = 0;
    icr_lo_ = icr_hi_ = 0;
    lvt_.fill(lvt_masked);
    timer_initial_ = timer_divide_ = 0;
    irr_ = {};
    isr_ = {};
    tmr_ = {};
    timer_running_ = false;
    tsc_deadline_ = 0;
    extint_msg_ = false;
    timers_.disarm(timer_);
}

void lapic::reset() {
    mode_ = apic_mode::xapic;
    base_ = default_base;
    id_ = cfg_.apic_id;
    reset_registers();
    if (cfg_.bsp && cfg_.virtual_wire) {
        lvt_[lvt_lint0_i] = static_cast<std::uint32_t>(delivery_mode::extint) << 8;
        lvt_[lvt_lint1_i] = static_cast<std::uint32_t>(delivery_mode::nmi) << 8;
    }
    nmi_ = init_ = sipi_ = false;
    awaiting_sipi_ = !cfg_.bsp;     // application processors wait for a SIPI after RESET
}

std::uint64_t lapic::apic_base() const {
    std::uint64_t v = base_;
    if (cfg_.bsp) v |= base_bsp;
    if (mode_ != apic_mode::disabled) v |= base_enable;
    if (mode_ == apic_mode::x2apic) v |= base_extd;
    return v;
}

std::uint8_t lapic::ppr() const {
    int isrv = highest(isr_);
    std::uint8_t isr_class = isrv < 0 ? 0 : static_cast<std::uint8_t>(isrv & 0xf0);
    return (tpr_ & 0xf0) >= isr_class ? tpr_ : isr_class;
}

std::uint32_t lapic::ldr_value() const {
    if (mode_ == apic_mode::x2apic) return ((id_ >> 4) << 16) | (1u << (id_ & 15));
    return ldr_;
}

// ---------------------------------------------------------------- injection

bool lapic::extint_ready() const {
    ext_int_source* pic = bus_.ext_int();
    if (!pic) return false;
    std::uint32_t l0 = lvt_[lvt_lint0_i];
    bool wired = !(l0 & lvt_masked) && ((l0 >> 8) & 7) == static_cast<unsigned>(delivery_mode::extint);
    return (wired || extint_msg_) && pic->pending().has_value();
}

std::optional<std::uint8_t> lapic::pending_interrupt() const {
    if (mode_ == apic_mode::disabled) {
        // No APIC: the 8259's INTR goes straight to the processor.
        ext_int_source* pic = bus_.ext_int();
        return pic ? pic->pending() : std::nullopt;
    }
    if (extint_ready()) return bus_.ext_int()->pending();
    int v = highest(irr_);
    if (v < 0 || (v & 0xf0) <= (ppr() & 0xf0)) return std::nullopt;
    return static_cast<std::uint8_t>(v);
}

std::uint8_t lapic::tpr_masked_class() const {
    if (tpr_ < 0x10 || mode_ == apic_mode::disabled) return 0;  // nothing held back by the TPR (checked every entry)
    const int v = highest(irr_);
    if (v < 0 || (v & 0xf0) > (tpr_ & 0xf0)) return 0;  // none, or deliverable now
    const int in_service = highest(isr_);
    if ((in_service >= 0 && (v & 0xf0) <= (in_service & 0xf0)) || extint_ready()) return 0;
    return static_cast<std::uint8_t>(v >> 4);
}

std::optional<std::uint8_t> lapic::acknowledge_interrupt() {
    if (mode_ == apic_mode::disabled || extint_ready()) {
        ext_int_source* pic = bus_.ext_int();
        if (!pic || !pic->pending()) return std::nullopt;
        extint_msg_ = false;
        return pic->acknowledge();
    }
    int v = highest(irr_);
    if (v < 0 || (v & 0xf0) <= (ppr() & 0xf0)) return std::nullopt;
    auto vec = static_cast<std::uint8_t>(v);
    clear(irr_, vec);
    set(isr_, vec);
    return vec;
}

bool lapic::take_init() {
    bool i = init_;
    init_ = false;
    return i;
}

std::optional<std::uint8_t> lapic::take_sipi() {
    if (!sipi_) return std::nullopt;
    sipi_ = false;
    return sipi_vector_;
}

bool lapic::has_event() const { return nmi_ || init_ || sipi_ || pending_interrupt().has_value(); }

// ---------------------------------------------------------------- message reception

void lapic::set_fixed(std::uint8_t vector, bool level) {
    if (vector < 16) {
        raise_error(esr_recv_illegal_vector);
        return;
    }
    set(irr_, vector);
    if (level) set(tmr_, vector);
    else clear(tmr_, vector);
    kick();
}

void lapic::init_received() {
    // INIT resets the registers but keeps the ID, IA32_APIC_BASE and the mode.
    reset_registers();
    init_ = true;
    sipi_ = false;
    awaiting_sipi_ = true;
    kick();
}

void lapic::accept(const apic_message& m) {
    if (mode_ == apic_mode::disabled) return;
    switch (m.mode) {
    case delivery_mode::fixed:
    case delivery_mode::lowest_priority:
        if (!software_enabled()) return;
        set_fixed(m.vector, m.level_triggered);
        return;
    case delivery_mode::nmi:
        nmi_ = true;
        kick();
        return;
    case delivery_mode::init:
        if (m.level_triggered && !m.assert) return;     // INIT level de-assert
        init_received();
        return;
    case delivery_mode::startup:
        if (!awaiting_sipi_) return;    // only the first SIPI after INIT counts
        awaiting_sipi_ = false;
        sipi_ = true;
        sipi_vector_ = m.vector;
        kick();
        return;
    case delivery_mode::smi:
        ++smis_;
        return;
    case delivery_mode::extint:
        extint_msg_ = true;
        kick();
        return;
    }
}

bool lapic::matches(std::uint32_t dest, bool logical, bool x2apic_dest) const {
    if (mode_ == apic_mode::disabled) return false;
    if (mode_ == apic_mode::x2apic) {
        if (x2apic_dest ? dest == 0xffffffff : (dest & 0xff) == 0xff) return true;
        if (!logical) return dest == id_;
        std::uint32_t ldr = ldr_value();
        return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff);
    }
    std::uint32_t d = dest & 0xff;
    if (d == 0xff) return true;
    if (!logical) return d == (id_ & 0xff);
    std::uint32_t ldr8 = ldr_ >> 24;
    if ((dfr_ >> 28) == 0xf) return (ldr8 & d) != 0;            // flat model
    return (ldr8 >> 4) == (d >> 4) && (ldr8 & d & 0xf) != 0;   // cluster model
}

void lapic::raise_error(std::uint32_t bits) {
    bool first = (esr_pending_ & bits) != bits;
    esr_pending_ |= bits;
    if (first) local_interrupt(lvt_error_i);
}

void lapic::local_interrupt(lvt_index i) {
    std::uint32_t lvt = lvt_[i];
    if (lvt & lvt_masked) return;
    auto vector = static_cast<std::uint8_t>(lvt & lvt_vector);
    unsigned mode = (i == lvt_timer_i || i == lvt_error_i) ? 0 : (lvt >> 8) & 7;
    switch (static_cast<delivery_mode>(mode)) {
    case delivery_mode::fixed: {
        bool level = (i == lvt_lint0_i || i == lvt_lint1_i) && (lvt & lvt_level);
        if (level) lvt_[i] |= lvt_remote_irr;
        set_fixed(vector, level);
        return;
    }
    case delivery_mode::nmi: nmi_ = true; kick(); return;
    case delivery_mode::init: init_received(); return;
    case delivery_mode::extint: kick(); return;
    case delivery_mode::smi: ++smis_; return;
    default: return;
    }
}

void lapic::set_lint(unsigned pin, bool level) {
    if (pin > 1) return;
    bool was = lint_[pin];
    lint_[pin] = level;
    if (mode_ == apic_mode::disabled) {
        if (level && !was) kick();      // INTR/NMI pins reach the core directly
        if (pin == 1 && level && !was) { nmi_ = true; kick(); }
        return;
    }
    lvt_index i = pin == 0 ? lvt_lint0_i : lvt_lint1_i;
    std::uint32_t lvt = lvt_[i];
    bool active_low = lvt & lvt_active_low;
    bool now_active = level != active_low, was_active = was != active_low;
    unsigned mode = (lvt >> 8) & 7;
    if (mode == static_cast<unsigned>(delivery_mode::extint)) {
        if (now_active && !was_active && !(lvt & lvt_masked)) kick();
        return;
    }
    bool level_trig = mode == static_cast<unsigned>(delivery_mode::fixed) && (lvt & lvt_level);
    if (level_trig) {
        if (now_active && !(lvt & lvt_remote_irr)) local_interrupt(i);
    } else if (now_active && !was_active) {
        local_interrupt(i);
    }
}

// ---------------------------------------------------------------- registers

void lapic::eoi() {
    int v = highest(isr_);
    if (v < 0) return;
    auto vec = static_cast<std::uint8_t>(v);
    clear(isr_, vec);
    for (lvt_index i : {lvt_lint0_i, lvt_lint1_i}) {
        if ((lvt_[i] & lvt_remote_irr) && (lvt_[i] & lvt_vector) == vec) {
            lvt_[i] &= ~lvt_remote_irr;
            if (lint_[i - lvt_lint0_i] != static_cast<bool>(lvt_[i] & lvt_active_low)) local_interrupt(i);
        }
    }
    if (test(tmr_, vec)) bus_.broadcast_eoi(vec);
    if (pending_interrupt()) kick();
}

void lapic::write_svr(std::uint32_t v) {
    svr_ = v & 0x3ff;   // vector, software enable, focus processor checking
    if (!software_enabled())
        for (auto& l : lvt_) l |= lvt_masked;
}

void lapic::write_lvt(lvt_index i, std::uint32_t v) {
    std::uint32_t keep = lvt_[i] & lvt_remote_irr;
    std::uint32_t w = v & lvt_writable[i];
    if (i == lvt_timer_i) {
        unsigned mode = (w >> 17) & 3;
        if (mode == 3 || (mode == 2 && !cfg_.tsc_deadline)) w &= ~(3u << 17);   // reserved: one-shot
        bool was_deadline = tmode() == timer_mode::tsc_deadline;
        bool is_deadline = ((w >> 17) & 3) == 2;
        if (was_deadline != is_deadline) {      // switching to or from TSC-deadline disarms
            timers_.disarm(timer_);
            timer_running_ = false;
            tsc_deadline_ = 0;
            timer_initial_ = 0;
        }
    }
    if (!software_enabled()) w |= lvt_masked;
    lvt_[i] = w | keep;
    if (i == lvt_timer_i && timer_running_) schedule_timer();
    if (i == lvt_lint0_i || i == lvt_lint1_i) set_lint(i - lvt_lint0_i, lint_[i - lvt_lint0_i]);
}

void lapic::send_ipi(std::uint32_t lo, std::uint32_t hi) {
    apic_message m;
    m.vector = static_cast<std::uint8_t>(lo & 0xff);
    m.mode = static_cast<delivery_mode>((lo >> 8) & 7);
    m.logical = lo & icr_logical;
    m.assert = lo & icr_assert;
    m.level_triggered = lo & icr_level;
    m.shorthand = static_cast<dest_shorthand>((lo >> 18) & 3);
    m.x2apic_dest = mode_ == apic_mode::x2apic;
    m.dest = m.x2apic_dest ? hi : hi >> 24;
    if ((m.mode == delivery_mode::fixed || m.mode == delivery_mode::lowest_priority) && m.vector < 16) {
        raise_error(esr_send_illegal_vector);
        return;
    }
    if (m.mode == delivery_mode::fixed || m.mode == delivery_mode::lowest_priority) {
        // Fixed IPIs are edge-triggered unless the sender asks for a level.
        if (!m.level_triggered) m.assert = true;
    }
    bus_.send(m, this);
}

std::uint32_t lapic::divisor() const {
    unsigned v = ((timer_divide_ >> 1) & 4) | (timer_divide_ & 3);
    return v == 7 ? 1 : 2u << v;
}

std::uint32_t lapic::timer_current_count() const {
    if (!timer_running_ || timer_initial_ == 0 || tmode() == timer_mode::tsc_deadline) return 0;
    std::uint64_t elapsed = (apic_now() - timer_base_) / divisor();
    if (tmode() == timer_mode::periodic) return static_cast<std::uint32_t>(timer_initial_ - elapsed % timer_initial_);
    return elapsed >= timer_initial_ ? 0 : static_cast<std::uint32_t>(timer_initial_ - elapsed);
}

void lapic::start_timer(std::uint64_t base) {
    timer_base_ = base;
    timer_running_ = timer_initial_ != 0;
    schedule_timer();
}

void lapic::schedule_timer() {
    if (tmode() == timer_mode::tsc_deadline) {
        if (tsc_deadline_) timers_.arm(timer_, tsc_deadline_);
        else timers_.disarm(timer_);
        return;
    }
    if (!timer_running_) {
        timers_.disarm(timer_);
        return;
    }
    std::uint64_t period = std::uint64_t{timer_initial_} * divisor();
    std::uint64_t now = apic_now();
    std::uint64_t expiry = timer_base_ + period;
    if (tmode() == timer_mode::periodic && now >= expiry)
        expiry = timer_base_ + ((now - timer_base_) / period + 1) * period;
    timers_.arm(timer_, apic_clk_.first_tick(expiry));
}

void lapic::timer_fired(void* ctx, std::uint64_t) {
    auto* l = static_cast<lapic*>(ctx);
    if (l->tmode() == timer_mode::tsc_deadline) {
        l->tsc_deadline_ = 0;
        l->local_interrupt(lvt_timer_i);
        return;
    }
    if (!l->timer_running_) return;
    l->local_interrupt(lvt_timer_i);
    if (l->tmode() == timer_mode::periodic) l->schedule_timer();
    else l->timer_running_ = false;
}

bool lapic::readable(apic_reg r) const {
    switch (r) {
    case apic_reg::id: case apic_reg::version: case apic_reg::tpr: case apic_reg::ppr:
    case apic_reg::ldr: case apic_reg::svr: case apic_reg::esr: case apic_reg::icr_lo:
    case apic_reg::lvt_timer: case apic_reg::lvt_thermal: case apic_reg::lvt_perf:
    case apic_reg::lvt_lint0: case apic_reg::lvt_lint1: case apic_reg::lvt_error:
    case apic_reg::timer_initial: case apic_reg::timer_current: case apic_reg::timer_divide:
        return true;
    case apic_reg::apr: case apic_reg::rrd: case apic_reg::dfr: case apic_reg::icr_hi:
    case apic_reg::eoi:
        return mode_ == apic_mode::xapic;
    default: {
        unsigned off = static_cast<unsigned>(r);
        return off >= 0x100 && off < 0x280;     // ISR, TMR, IRR
    }
    }
}

std::uint32_t lapic::read_reg(apic_reg r) const {
    unsigned off = static_cast<unsigned>(r);
    if (off >= 0x100 && off < 0x280) {
        unsigned word = (off >> 4) & 7;
        if (off < 0x180) return isr_[word];
        if (off < 0x200) return tmr_[word];
        return irr_[word];
    }
    switch (r) {
    case apic_reg::id: return mode_ == apic_mode::x2apic ? id_ : id_ << 24;
    case apic_reg::version: return version_value;
    case apic_reg::tpr: return tpr_;
    case apic_reg::ppr: return ppr();
    case apic_reg::ldr: return ldr_value();
    case apic_reg::dfr: return dfr_;
    case apic_reg::svr: return svr_;
    case apic_reg::esr: return esr_;
    case apic_reg::icr_lo: return icr_lo_ & ~icr_pending;  // delivered synchronously
    case apic_reg::icr_hi: return icr_hi_;
    case apic_reg::lvt_timer: return lvt_[lvt_timer_i];
    case apic_reg::lvt_thermal: return lvt_[lvt_thermal_i];
    case apic_reg::lvt_perf: return lvt_[lvt_perf_i];
    case apic_reg::lvt_lint0: return lvt_[lvt_lint0_i];
    case apic_reg::lvt_lint1: return lvt_[lvt_lint1_i];
    case apic_reg::lvt_error: return lvt_[lvt_error_i];
    case apic_reg::timer_initial: return timer_initial_;
    case apic_reg::timer_current: return timer_current_count();
    case apic_reg::timer_divide: return timer_divide_;
    default: return 0;
    }
}

void lapic::write_reg(apic_reg r, std::uint32_t v) {
    switch (r) {
    case apic_reg::tpr:
        tpr_ = static_cast<std::uint8_t>(v);
        if (pending_interrupt()) kick();
        return;
    case apic_reg::eoi: eoi(); return;
    case apic_reg::ldr: if (mode_ == apic_mode::xapic) ldr_ = v & 0xff000000; return;
    case apic_reg::dfr: if (mode_ == apic_mode::xapic) dfr_ = v | 0x0fffffff; return;
    case apic_reg::svr: write_svr(v); return;
    case apic_reg::esr:     // a write moves the errors collected since into ESR
        esr_ = esr_pending_;
        esr_pending_ = 0;
        return;
    case apic_reg::icr_hi: icr_hi_ = v & 0xff000000; return;
    case apic_reg::icr_lo:
        icr_lo_ = v & 0x000ccfff;
        send_ipi(icr_lo_, icr_hi_);
        return;
    case apic_reg::lvt_timer: write_lvt(lvt_timer_i, v); return;
    case apic_reg::lvt_thermal: write_lvt(lvt_thermal_i, v); return;
    case apic_reg::lvt_perf: write_lvt(lvt_perf_i, v); return;
    case apic_reg::lvt_lint0: write_lvt(lvt_lint0_i, v); return;
    case apic_reg::lvt_lint1: write_lvt(lvt_lint1_i, v); return;
    case apic_reg::lvt_error: write_lvt(lvt_error_i, v); return;
    case apic_reg::timer_initial:
        if (tmode() == timer_mode::tsc_deadline) return;
        timer_initial_ = v;
        start_timer(apic_now());
        return;
    case apic_reg::timer_divide: {
        std::uint32_t remaining = timer_current_count();
        std::uint32_t done = timer_initial_ - remaining;
        timer_divide_ = v & 0xb;
        if (timer_running_) {
            // Keep the current count; count on at the new rate.
            std::uint64_t back = std::uint64_t{done} * divisor();
            std::uint64_t now = apic_now();
            start_timer(now >= back ? now - back : 0);
        }
        return;
    }
    case apic_reg::self_ipi:
        if (mode_ == apic_mode::x2apic) {
            if ((v & 0xff) < 16) raise_error(esr_send_illegal_vector);
            else set_fixed(static_cast<std::uint8_t>(v & 0xff), false);
        }
        return;
    default:
        return;     // read-only or reserved
    }
}

bool lapic::mmio_claims(std::uint64_t gpa) const {
    return mode_ == apic_mode::xapic && (gpa & ~std::uint64_t{0xfff}) == base_;
}

std::uint64_t lapic::mmio_read(std::uint64_t gpa, unsigned size) {
    std::uint64_t offset = gpa & 0xfff;
    unsigned byte = offset & 0xf;
    auto r = static_cast<apic_reg>(offset & 0xff0);
    std::uint64_t v = 0;
    if (!readable(r)) raise_error(esr_illegal_register);
    else if (byte < 4) v = read_reg(r) >> (8 * byte);
    return size >= 8 ? v : v & ((std::uint64_t{1} << (8 * size)) - 1);
}

void lapic::mmio_write(std::uint64_t gpa, unsigned size, std::uint64_t value) {
    std::uint64_t offset = gpa & 0xfff;
    // Registers take aligned 32-bit writes; anything else is dropped.
    if ((offset & 0xf) != 0 || size < 4) return;
    auto r = static_cast<apic_reg>(offset & 0xff0);
    if (r == apic_reg::self_ipi) return;
    unsigned off = static_cast<unsigned>(r);
    if (off > 0x3f0 || r == apic_reg::lvt_cmci || off == 0x290 ||
        (!readable(r) && r != apic_reg::eoi && r != apic_reg::icr_hi)) {
        raise_error(esr_illegal_register);
        return;
    }
    write_reg(r, static_cast<std::uint32_t>(value));
}

// ---------------------------------------------------------------- MSRs

msr_value lapic::read_msr(std::uint32_t index) {
    if (index == apic_msr::apic_base) return {msr_outcome::ok, apic_base()};
    if (index == apic_msr::tsc_deadline) {
        if (!cfg_.tsc_deadline) return {msr_outcome::gp, 0};
        return {msr_outcome::ok, tmode() == timer_mode::tsc_deadline ? tsc_deadline_ : 0};
    }
    if (index < apic_msr::x2apic_first || index > apic_msr::x2apic_last) return {msr_outcome::unhandled, 0};
    if (mode_ != apic_mode::x2apic) return {msr_outcome::gp, 0};
    auto r = static_cast<apic_reg>((index - apic_msr::x2apic_first) << 4);
    if (r == apic_reg::icr_lo) return {msr_outcome::ok, (std::uint64_t{icr_hi_} << 32) | (icr_lo_ & ~icr_pending)};
    if (!readable(r)) return {msr_outcome::gp, 0};
    return {msr_outcome::ok, read_reg(r)};
}

msr_outcome lapic::write_msr(std::uint32_t index, std::uint64_t value) {
    if (index == apic_msr::apic_base) {
        std::uint64_t base_mask = ((std::uint64_t{1} << cfg_.phys_addr_bits) - 1) & ~std::uint64_t{0xfff};
        std::uint64_t allowed = base_mask | base_bsp | base_enable | (cfg_.x2apic ? base_extd : 0);
        if (value & ~allowed) return msr_outcome::gp;
        bool en = value & base_enable, extd = value & base_extd;
        if (!en && extd) return msr_outcome::gp;                       // invalid state
        apic_mode next = !en ? apic_mode::disabled : extd ? apic_mode::x2apic : apic_mode::xapic;
        if (mode_ == apic_mode::x2apic && next == apic_mode::xapic) return msr_outcome::gp;
        if (mode_ == apic_mode::disabled && next == apic_mode::x2apic) return msr_outcome::gp;
        base_ = value & base_mask;
        if (next != mode_) {
            if (next == apic_mode::disabled) reset_registers();   // nothing survives but the ID
            mode_ = next;
            kick();
        }
        return msr_outcome::ok;
    }
    if (index == apic_msr::tsc_deadline) {
        if (!cfg_.tsc_deadline) return msr_outcome::gp;
        if (mode_ == apic_mode::disabled || tmode() != timer_mode::tsc_deadline) return msr_outcome::ok;
        tsc_deadline_ = value;
        if (value == 0) {
            timers_.disarm(timer_);
        } else if (value <= timers_.now()) {
            timers_.disarm(timer_);
            tsc_deadline_ = 0;
            local_interrupt(lvt_timer_i);
        } else {
            timers_.arm(timer_, value);
        }
        return msr_outcome::ok;
    }
    if (index < apic_msr::x2apic_first || index > apic_msr::x2apic_last) return msr_outcome::unhandled;
    if (mode_ != apic_mode::x2apic) return msr_outcome::gp;
    auto r = static_cast<apic_reg>((index - apic_msr::x2apic_first) << 4);
    if (r == apic_reg::icr_lo) {
        icr_lo_ = static_cast<std::uint32_t>(value) & 0x000ccfff;
        icr_hi_ = static_cast<std::uint32_t>(value >> 32);
        send_ipi(icr_lo_, icr_hi_);
        return msr_outcome::ok;
    }
    if (value >> 32) return msr_outcome::gp;
    auto v = static_cast<std::uint32_t>(value);
    switch (r) {
    case apic_reg::tpr:
        if (v > 0xff) return msr_outcome::gp;
        break;
    case apic_reg::eoi:
    case apic_reg::esr:
        if (v != 0) return msr_outcome::gp;
        break;
    case apic_reg::self_ipi:
        if (v > 0xff) return msr_outcome::gp;
        break;
    case apic_reg::svr: case apic_reg::lvt_timer: case apic_reg::lvt_thermal: case apic_reg::lvt_perf:
    case apic_reg::lvt_lint0: case apic_reg::lvt_lint1: case apic_reg::lvt_error:
    case apic_reg::timer_initial: case apic_reg::timer_divide:
        break;
    default:
        return msr_outcome::gp;     // read-only, reserved, or xAPIC-only
    }
    write_reg(r, v);
    return msr_outcome::ok;
}

// ---------------------------------------------------------------- bus

void apic_bus::attach(lapic& l) {
    if (count_ < max_cpus) cpus_[count_++] = &l;
}

void apic_bus::detach(lapic& l) {
    for (std::size_t i = 0; i < count_; ++i) {
        if (cpus_[i] != &l) continue;
        for (std::size_t j = i + 1; j < count_; ++j) cpus_[j - 1] = cpus_[j];
        --count_;
        return;
    }
}

void apic_bus::add_eoi_listener(eoi_listener& l) {
    if (listener_count_ < max_listeners) listeners_[listener_count_++] = &l;
}

lapic* apic_bus::find(std::uint32_t apic_id) const {
    for (std::size_t i = 0; i < count_; ++i)
        if (cpus_[i]->id() == apic_id) return cpus_[i];
    return nullptr;
}

void apic_bus::send(const apic_message& m, lapic* source) {
    switch (m.shorthand) {
    case dest_shorthand::self:
        if (source) source->accept(m);
        return;
    case dest_shorthand::all_including_self:
    case dest_shorthand::all_excluding_self:
        for (std::size_t i = 0; i < count_; ++i)
            if (m.shorthand == dest_shorthand::all_including_self || cpus_[i] != source) cpus_[i]->accept(m);
        return;
    case dest_shorthand::none:
        break;
    }
    if (m.mode == delivery_mode::lowest_priority) {
        // Arbitrate: the enabled target with the lowest processor priority.
        lapic* best = nullptr;
        for (std::size_t i = 0; i < count_; ++i) {
            lapic* l = cpus_[i];
            if (!l->software_enabled() || !l->matches(m.dest, m.logical, m.x2apic_dest)) continue;
            if (!best || l->ppr() < best->ppr()) best = l;
        }
        if (best) best->accept(m);
        return;
    }
    for (std::size_t i = 0; i < count_; ++i)
        if (cpus_[i]->matches(m.dest, m.logical, m.x2apic_dest)) cpus_[i]->accept(m);
}

void apic_bus::send_msi(std::uint64_t address, std::uint32_t data) {
    if ((address >> 20) != 0xfee) return;
    apic_message m;
    m.dest = static_cast<std::uint32_t>((address >> 12) & 0xff);
    m.logical = address & (1u << 2);
    m.vector = static_cast<std::uint8_t>(data & 0xff);
    m.mode = static_cast<delivery_mode>((data >> 8) & 7);
    m.level_triggered = data & (1u << 15);
    m.assert = true;
    send(m);
}

void apic_bus::broadcast_eoi(std::uint8_t vector) {
    for (std::size_t i = 0; i < listener_count_; ++i) listeners_[i]->eoi(vector);
}

void apic_bus::set_lint0_all(bool level) {
    for (std::size_t i = 0; i < count_; ++i) cpus_[i]->set_lint(0, level);
}

void apic_bus::set_lint1_all(bool level) {
    for (std::size_t i = 0; i < count_; ++i) cpus_[i]->set_lint(1, level);
}

} // namespace hv::dev
