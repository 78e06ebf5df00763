// 8042 keyboard controller (data 0x60, command/status 0x64, keyboard IRQ1) and the
// system control port A at 0x92: enough for firmware and kernel probes, the A20 gate
// dance (0xd1 output port, 0xdd/0xdf, port 0x92 bit 1) and resets (0xfe, output
// port bit 0 low, port 0x92 bit 0). No mouse is attached: a byte for the aux device
// (0xd4) is answered as a controller answers for an empty port, 0xfe with the status
// time-out bit, so a driver's mouse probe fails at once instead of waiting out its
// timeouts. Each byte in the output buffer is its own interrupt edge: the line drops
// when the byte is read and rises again for the next one (ISA IRQs are edge triggered).
#pragma once
#include <array>
#include <cstdint>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/event.hpp"
#include "libhv/dev/irq.hpp"

namespace hv::dev {

namespace i8042_bits {
inline constexpr std::uint8_t st_obf = 0x01, st_ibf = 0x02, st_sys = 0x04, st_cmd = 0x08, st_unlocked = 0x10,
                              st_aux = 0x20, st_timeout = 0x40;
inline constexpr std::uint8_t ccb_kbd_int = 0x01, ccb_aux_int = 0x02, ccb_sys = 0x04, ccb_kbd_off = 0x10,
                              ccb_aux_off = 0x20, ccb_xlate = 0x40;
inline constexpr std::uint8_t out_reset = 0x01, out_a20 = 0x02;
} // namespace i8042_bits

class i8042 final {
public:
    explicit i8042(event_sink* events = nullptr);
    i8042(const i8042&) = delete;
    i8042& operator=(const i8042&) = delete;

    void set_events(event_sink* e) { events_ = e; }
    void connect_irq(irq_sink* sink, unsigned kbd_line, unsigned aux_line) {
        kbd_irq_.connect(sink, kbd_line);
        aux_irq_.connect(sink, aux_line);
    }
    io_device& data_port() { return data_; }       // map at 0x60
    io_device& command_port() { return command_; } // map at 0x64
    io_device& port92() { return port92_; }        // map at 0x92

    // Host side: a scancode from the keyboard.
    bool push_key(std::uint8_t scancode) { return push(scancode, false); }

    [[nodiscard]] bool a20() const { return output_port_ & i8042_bits::out_a20; }
    [[nodiscard]] std::uint8_t command_byte() const { return ccb_; }
    [[nodiscard]] std::uint8_t status() const;

private:
    class port final : public io_device {
    public:
        port(i8042& k, int which) : k_{k}, which_{which} {}
        std::uint64_t read(std::uint64_t offset, unsigned size) override;
        void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;
    private:
        i8042& k_;
        int which_;
    };

    bool push(std::uint8_t byte, bool aux, bool timeout = false);
    std::uint8_t read_data();
    void write_data(std::uint8_t v);
    void write_command(std::uint8_t v);
    void keyboard_command(std::uint8_t v);
    void set_output_port(std::uint8_t v);
    void reset_request(std::uint8_t why);
    void update_irq();

    event_sink* events_;
    port data_{*this, 0}, command_{*this, 1}, port92_{*this, 2};
    irq_line kbd_irq_, aux_irq_;
    std::array<std::uint8_t, 16> queue_{};
    std::array<std::uint8_t, 16> queue_status_{};  // st_aux / st_timeout of each byte
    std::uint8_t head_ = 0, count_ = 0, last_ = 0;
    std::uint8_t ccb_ = i8042_bits::ccb_kbd_int | i8042_bits::ccb_sys | i8042_bits::ccb_xlate;
    std::uint8_t output_port_ = i8042_bits::out_reset | i8042_bits::out_a20;
    std::uint8_t pending_ = 0;      // controller command waiting for its data byte
    std::uint8_t kbd_pending_ = 0;  // keyboard command waiting for its argument
    bool last_was_command_ = false;
    std::uint8_t port92_bits_ = 0x02;
};

} // namespace hv::dev
