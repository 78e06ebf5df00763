#include "libhv/dev/uart16550.hpp"

namespace hv::dev {

using namespace uart_bits;

uart16550::uart16550(timer_queue* timers) : timers_{timers}, timeout_timer_{&timeout_fired, this} {}

std::size_t uart16550::rx_space() const {
    std::size_t cap = fifo_on() ? fifo_size : 1;
    return rx_count_ >= cap ? 0 : cap - rx_count_;
}

bool uart16550::receive(std::uint8_t byte) {
    if (mcr_ & mcr_loop) return false;    // the receiver listens to the transmitter
    if (rx_space() == 0) return false;
    push_rx(byte);
    update_irq();
    return true;
}

void uart16550::inject_line_error(std::uint8_t lsr_bits) {
    lsr_errors_ |= lsr_bits & (lsr_oe | lsr_pe | lsr_fe | lsr_bi);
    update_irq();
}

bool uart16550::push_rx(std::uint8_t byte) {
    std::size_t cap = fifo_on() ? fifo_size : 1;
    if (rx_count_ >= cap) {
        lsr_errors_ |= lsr_oe;
        if (!fifo_on()) rx_[rx_head_] = byte;   // the holding register is overwritten
        return false;
    }
    rx_[(rx_head_ + rx_count_) % fifo_size] = byte;
    ++rx_count_;
    restart_timeout();
    return true;
}

std::uint8_t uart16550::pop_rx() {
    if (rx_count_ == 0) return 0;
    std::uint8_t b = rx_[rx_head_];
    rx_head_ = static_cast<std::uint8_t>((rx_head_ + 1) % fifo_size);
    --rx_count_;
    timeout_pending_ = false;
    restart_timeout();
    return b;
}

unsigned uart16550::trigger_level() const {
    static constexpr unsigned levels[4] = {1, 4, 8, 14};
    return levels[fcr_ >> 6];
}

void uart16550::restart_timeout() {
    if (!fifo_on() || rx_count_ == 0) {
        if (timers_) timers_->disarm(timeout_timer_);
        return;
    }
    if (!timers_) {
        timeout_pending_ = true;
        return;
    }
    // Four character times of 10 bits at the programmed baud rate.
    std::uint64_t div = divisor() ? divisor() : 0x10000;
    std::uint64_t delay = mul_div_ceil(4 * 10 * 16 * div, timers_->clock().frequency(), input_clock_hz);
    timers_->arm(timeout_timer_, timers_->now() + delay);
}

void uart16550::timeout_fired(void* ctx, std::uint64_t) {
    auto* u = static_cast<uart16550*>(ctx);
    if (u->fifo_on() && u->rx_count_ > 0) {
        u->timeout_pending_ = true;
        u->update_irq();
    }
}

std::uint8_t uart16550::interrupt_id() const {
    if ((ier_ & ier_rls) && lsr_errors_) return iir_rls;
    if (ier_ & ier_rda) {
        if (fifo_on() ? rx_count_ >= trigger_level() : rx_count_ > 0) return iir_rda;
        if (fifo_on() && timeout_pending_ && rx_count_ > 0) return iir_timeout;
    }
    if ((ier_ & ier_thre) && thre_pending_) return iir_thre;
    if ((ier_ & ier_ms) && msr_delta_) return iir_ms;
    return iir_none;
}

std::uint8_t uart16550::modem_inputs() const {
    if (mcr_ & mcr_loop) {
        std::uint8_t v = 0;
        if (mcr_ & mcr_rts) v |= msr_cts;
        if (mcr_ & mcr_dtr) v |= msr_dsr;
        if (mcr_ & mcr_out1) v |= msr_ri;
        if (mcr_ & mcr_out2) v |= msr_dcd;
        return v;
    }
    return msr_cts | msr_dsr | msr_dcd;   // a cable with a terminal on it
}

void uart16550::set_modem_inputs(std::uint8_t old_in) {
    std::uint8_t now = modem_inputs();
    std::uint8_t changed = old_in ^ now;
    if (changed & msr_cts) msr_delta_ |= msr_dcts;
    if (changed & msr_dsr) msr_delta_ |= msr_ddsr;
    if (changed & msr_dcd) msr_delta_ |= msr_ddcd;
    if ((old_in & msr_ri) && !(now & msr_ri)) msr_delta_ |= msr_teri;
}

void uart16550::update_irq() {
    // On a PC the interrupt output is gated by OUT2; in loopback the OUT pins are
    // held inactive, so no interrupt leaves the chip (IIR still reports it).
    bool out2 = (mcr_ & mcr_out2) && !(mcr_ & mcr_loop);
    irq_.set(out2 && interrupt_id() != iir_none);
}

std::uint8_t uart16550::read_reg(uart_reg r) {
    switch (r) {
    case uart_reg::rbr_thr:
        if (lcr_ & lcr_dlab) return dll_;
        return pop_rx();
    case uart_reg::ier:
        if (lcr_ & lcr_dlab) return dlm_;
        return ier_;
    case uart_reg::iir_fcr: {
        std::uint8_t id = interrupt_id();
        if (id == iir_thre) thre_pending_ = false;
        return static_cast<std::uint8_t>(id | (fifo_on() ? iir_fifo : 0));
    }
    case uart_reg::lcr: return lcr_;
    case uart_reg::mcr: return mcr_;
    case uart_reg::lsr: {
        std::uint8_t v = lsr_thre | lsr_temt | lsr_errors_;
        if (rx_count_) v |= lsr_dr;
        if (fifo_on() && lsr_errors_) v |= lsr_fifo_err;
        lsr_errors_ = 0;
        return v;
    }
    case uart_reg::msr: {
        std::uint8_t v = static_cast<std::uint8_t>(modem_inputs() | msr_delta_);
        msr_delta_ = 0;
        return v;
    }
    case uart_reg::scr: return scr_;
    }
    return 0xff;
}

void uart16550::write_reg(uart_reg r, std::uint8_t v) {
    switch (r) {
    case uart_reg::rbr_thr:
        if (lcr_ & lcr_dlab) { dll_ = v; return; }
        ++tx_count_;
        if (mcr_ & mcr_loop) push_rx(v);
        else sink_(v);
        thre_pending_ = true;     // written and already shifted out
        return;
    case uart_reg::ier:
        if (lcr_ & lcr_dlab) { dlm_ = v; return; }
        if ((v & ier_thre) && !(ier_ & ier_thre)) thre_pending_ = true;
        ier_ = v & 0x0f;
        return;
    case uart_reg::iir_fcr: {
        bool was_on = fifo_on();
        if (!(v & fcr_enable)) {
            if (was_on) { rx_count_ = 0; rx_head_ = 0; }
            fcr_ = 0;
            timeout_pending_ = false;
            restart_timeout();
            return;
        }
        fcr_ = v & 0xc1;
        if (!was_on || (v & fcr_clear_rx)) { rx_count_ = 0; rx_head_ = 0; timeout_pending_ = false; }
        restart_timeout();
        return;
    }
    case uart_reg::lcr: lcr_ = v; return;
    case uart_reg::mcr: {
        std::uint8_t old_in = modem_inputs();
        mcr_ = v & 0x1f;
        set_modem_inputs(old_in);
        return;
    }
    case uart_reg::lsr: return;   // factory test register: ignored
    case uart_reg::msr: return;
    case uart_reg::scr: scr_ = v; return;
    }
}

std::uint64_t uart16550::read(std::uint64_t offset, unsigned) {
    if (offset > 7) return 0xff;
    std::uint8_t v = read_reg(static_cast<uart_reg>(offset));
    update_irq();
    return v;
}

void uart16550::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    if (offset > 7) return;
    write_reg(static_cast<uart_reg>(offset), static_cast<std::uint8_t>(value));
    update_irq();
}

} // namespace hv::dev
