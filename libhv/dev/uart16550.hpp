// 16550A UART (the PC's COM1 at 0x3f8, IRQ4). Transmission is instantaneous: a byte
// written to THR goes to the sink at once, so THR/TEMT are always empty afterwards
// and the THRE interrupt follows every write.
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hv::dev {

enum class uart_reg : std::uint8_t {
    rbr_thr = 0,    // DLL when LCR.DLAB
    ier = 1,        // DLM when LCR.DLAB
    iir_fcr = 2,
    lcr = 3,
    mcr = 4,
    lsr = 5,
    msr = 6,
    scr = 7,
};

namespace uart_bits {
inline constexpr std::uint8_t ier_rda = 0x01, ier_thre = 0x02, ier_rls = 0x04, ier_ms = 0x08;
inline constexpr std::uint8_t iir_none = 0x01, iir_rls = 0x06, iir_rda = 0x04, iir_timeout = 0x0c,
                              iir_thre = 0x02, iir_ms = 0x00, iir_fifo = 0xc0;
inline constexpr std::uint8_t fcr_enable = 0x01, fcr_clear_rx = 0x02, fcr_clear_tx = 0x04;
inline constexpr std::uint8_t lcr_dlab = 0x80;
inline constexpr std::uint8_t mcr_dtr = 0x01, mcr_rts = 0x02, mcr_out1 = 0x04, mcr_out2 = 0x08,
                              mcr_loop = 0x10;
inline constexpr std::uint8_t lsr_dr = 0x01, lsr_oe = 0x02, lsr_pe = 0x04, lsr_fe = 0x08, lsr_bi = 0x10,
                              lsr_thre = 0x20, lsr_temt = 0x40, lsr_fifo_err = 0x80;
inline constexpr std::uint8_t msr_dcts = 0x01, msr_ddsr = 0x02, msr_teri = 0x04, msr_ddcd = 0x08,
                              msr_cts = 0x10, msr_dsr = 0x20, msr_ri = 0x40, msr_dcd = 0x80;
} // namespace uart_bits

class uart16550 final : public io_device {
public:
    static constexpr std::uint32_t input_clock_hz = 1843200;   // 115200 baud at divisor 1
    static constexpr std::size_t fifo_size = 16;

    // The timer queue (optional) drives the FIFO character-timeout interrupt; without
    // it a partial FIFO reports the timeout at once.
    explicit uart16550(timer_queue* timers = nullptr);

    void connect_irq(irq_sink* sink, unsigned line) { irq_.connect(sink, line); update_irq(); }
    void set_sink(callback<std::uint8_t> out) { sink_ = out; }

    // Host → guest: one received character. False if the receiver has no room (the
    // byte is not taken and no overrun is flagged: the host keeps it for later).
    bool receive(std::uint8_t byte);
    [[nodiscard]] std::size_t rx_space() const;
    // Line noise as the receiver would see it (sets OE/PE/FE/BI), for tests.
    void inject_line_error(std::uint8_t lsr_bits);

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] bool irq_level() const { return irq_.level(); }
    [[nodiscard]] std::uint16_t divisor() const { return static_cast<std::uint16_t>(dll_ | (dlm_ << 8)); }
    [[nodiscard]] std::uint64_t transmitted() const { return tx_count_; }

private:
    std::uint8_t read_reg(uart_reg r);
    void write_reg(uart_reg r, std::uint8_t v);
    bool push_rx(std::uint8_t byte);
    std::uint8_t pop_rx();
    bool fifo_on() const { return fcr_ & uart_bits::fcr_enable; }
    unsigned trigger_level() const;
    std::uint8_t interrupt_id() const;
    std::uint8_t modem_inputs() const;
    void set_modem_inputs(std::uint8_t old_inputs);
    void update_irq();
    void restart_timeout();
    static void timeout_fired(void* ctx, std::uint64_t now);

    timer_queue* timers_;
    timer timeout_timer_;
    irq_line irq_;
    callback<std::uint8_t> sink_{};

    std::array<std::uint8_t, fifo_size> rx_{};
    std::uint8_t rx_head_ = 0, rx_count_ = 0;
    std::uint8_t ier_ = 0, fcr_ = 0, lcr_ = 0, mcr_ = 0, lsr_errors_ = 0, msr_delta_ = 0, scr_ = 0;
    std::uint8_t dll_ = 0x0c, dlm_ = 0;     // 9600 baud until the guest programs it
    bool thre_pending_ = false;             // THRE interrupt not yet acknowledged
    bool timeout_pending_ = false;
    std::uint64_t tx_count_ = 0;
};

} // namespace hv::dev
