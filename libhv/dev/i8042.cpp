#include "libhv/dev/i8042.hpp"

namespace hv::dev {

using namespace i8042_bits;

i8042::i8042(event_sink* events) : events_{events} {}

std::uint8_t i8042::status() const {
    std::uint8_t s = st_unlocked;
    if (count_) s |= st_obf | queue_status_[head_];
    if (ccb_ & ccb_sys) s |= st_sys;
    if (last_was_command_) s |= st_cmd;
    return s;
}

bool i8042::push(std::uint8_t byte, bool aux, bool timeout) {
    if (count_ == queue_.size()) return false;
    std::size_t at = (head_ + count_) % queue_.size();
    queue_[at] = byte;
    queue_status_[at] = static_cast<std::uint8_t>((aux ? st_aux : 0) | (timeout ? st_timeout : 0));
    ++count_;
    update_irq();
    return true;
}

std::uint8_t i8042::read_data() {
    if (count_) {
        last_ = queue_[head_];
        head_ = static_cast<std::uint8_t>((head_ + 1) % queue_.size());
        --count_;
        // The byte is taken: its edge is over; the next byte (if any) makes a new one.
        kbd_irq_.lower();
        aux_irq_.lower();
    }
    update_irq();
    return last_;
}

void i8042::update_irq() {
    bool have = count_ > 0;
    bool aux = have && (queue_status_[head_] & st_aux);
    kbd_irq_.set(have && !aux && (ccb_ & ccb_kbd_int));
    aux_irq_.set(have && aux && (ccb_ & ccb_aux_int));
}

void i8042::reset_request(std::uint8_t why) {
    if (events_) events_->raise(event{event_kind::reset, why});
}

void i8042::set_output_port(std::uint8_t v) {
    output_port_ = v;
    port92_bits_ = static_cast<std::uint8_t>((port92_bits_ & ~out_a20) | (v & out_a20));
    if (!(v & out_reset)) reset_request(0xd1);   // the reset line is active low
}

void i8042::write_command(std::uint8_t v) {
    pending_ = 0;
    switch (v) {
    case 0x20: push(ccb_, false); break;            // read command byte
    case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
        pending_ = v;                               // takes a data byte
        break;
    case 0xa7: ccb_ |= ccb_aux_off; break;
    case 0xa8: ccb_ &= static_cast<std::uint8_t>(~ccb_aux_off); break;
    case 0xa9: push(0x00, false); break;            // aux interface test: ok
    case 0xaa:                                      // controller self test
        ccb_ |= ccb_sys;
        push(0x55, false);
        break;
    case 0xab: push(0x00, false); break;            // keyboard interface test: ok
    case 0xad: ccb_ |= ccb_kbd_off; break;
    case 0xae: ccb_ &= static_cast<std::uint8_t>(~ccb_kbd_off); break;
    case 0xc0: push(0x80, false); break;            // input port: keyboard not inhibited
    case 0xd0: push(output_port_, false); break;
    case 0xdd: set_output_port(output_port_ & static_cast<std::uint8_t>(~out_a20)); break;
    case 0xdf: set_output_port(output_port_ | out_a20); break;
    case 0xe0: push(0x00, false); break;
    default:
        // 0xf0-0xff pulse the output-port bits whose mask bit is 0; bit 0 is reset.
        if (v >= 0xf0 && !(v & 0x01)) reset_request(v);
        break;
    }
    update_irq();
}

void i8042::keyboard_command(std::uint8_t v) {
    if (kbd_pending_) {     // the argument of ED/F3/F0
        std::uint8_t cmd = kbd_pending_;
        kbd_pending_ = 0;
        push(0xfa, false);
        if (cmd == 0xf0 && v == 0) push(0x02, false);   // current scancode set: 2
        return;
    }
    switch (v) {
    case 0xff: push(0xfa, false); push(0xaa, false); break;                     // reset + BAT ok
    case 0xf2: push(0xfa, false); push(0xab, false); push(0x83, false); break;  // identify: MF2
    case 0xee: push(0xee, false); break;                                         // echo
    case 0xed: case 0xf3: case 0xf0: kbd_pending_ = v; push(0xfa, false); break;
    case 0xf4: case 0xf5: case 0xf6: push(0xfa, false); break;
    default: push(0xfe, false); break;      // resend: unknown command
    }
}

void i8042::write_data(std::uint8_t v) {
    std::uint8_t cmd = pending_;
    pending_ = 0;
    switch (cmd) {
    case 0x60:
        ccb_ = v;
        break;
    case 0xd1: set_output_port(v); break;
    case 0xd2: push(v, false); break;
    case 0xd3: push(v, true); break;        // aux loopback
    case 0xd4: push(0xfe, true, true); break;  // to the absent mouse: time-out
    default: keyboard_command(v); break;
    }
    update_irq();
}

std::uint64_t i8042::port::read(std::uint64_t, unsigned) {
    switch (which_) {
    case 0: return k_.read_data();
    case 1: return k_.status();
    default: return k_.port92_bits_;
    }
}

void i8042::port::write(std::uint64_t, unsigned, std::uint64_t value) {
    auto v = static_cast<std::uint8_t>(value);
    switch (which_) {
    case 0:
        k_.last_was_command_ = false;
        k_.write_data(v);
        return;
    case 1:
        k_.last_was_command_ = true;
        k_.write_command(v);
        return;
    default: {
        bool reset = (v & 0x01) && !(k_.port92_bits_ & 0x01);
        k_.port92_bits_ = v & 0x03;
        k_.output_port_ = static_cast<std::uint8_t>((k_.output_port_ & ~out_a20) | (v & out_a20));
        if (reset) k_.reset_request(0x92);
        return;
    }
    }
}

} // namespace hv::dev
