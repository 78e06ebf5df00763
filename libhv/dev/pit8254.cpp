#include "libhv/dev/pit8254.hpp"

namespace hv::dev {

pit8254::pit8254(timer_queue& timers)
    : timers_{timers}, clk_{frequency, timers.clock().frequency()}, timer_{&fired, this} {}

std::uint16_t pit8254::to_bcd(std::uint32_t v) {
    v %= 10000;
    return static_cast<std::uint16_t>((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10));
}

std::uint32_t pit8254::from_bcd(std::uint16_t v) {
    // Nibbles above 9 are not BCD; the chip's behaviour is undefined, clamp them.
    auto d = [](unsigned x) { return x > 9 ? 9u : x; };
    return d(v >> 12) * 1000 + d((v >> 8) & 15) * 100 + d((v >> 4) & 15) * 10 + d(v & 15);
}

std::uint32_t pit8254::period(const channel& ch) {
    std::uint32_t p = ch.bcd ? from_bcd(ch.n) : ch.n;
    if (p == 0) p = modulus(ch);
    if ((ch.mode == 2 || ch.mode == 3) && p < 2) p = 2;
    return p;
}

pit8254::snapshot pit8254::eval(const channel& ch, std::uint64_t c) const {
    bool waiting = !ch.counting || ((ch.mode == 1 || ch.mode == 5) && !ch.triggered);
    if (!waiting && c < ch.start && !ch.has_prev) waiting = true;
    if (waiting) return {ch.stale, ch.mode != 0, true};

    std::uint32_t p = period(ch);
    std::uint64_t start = ch.start;
    if (c < ch.start) {     // has_prev: the old period is still running
        p = ch.prev_period;
        start = ch.prev_start;
    }
    std::uint64_t e = ch.paused ? ch.paused_e : c - start;
    const std::uint32_t m = modulus(ch);
    std::uint32_t value = 0;
    bool out = true;
    switch (ch.mode) {
    case 0:
    case 1:
        out = e >= p;
        value = static_cast<std::uint32_t>((p + m - e % m) % m);
        break;
    case 4:
    case 5:
        out = e != p;
        value = static_cast<std::uint32_t>((p + m - e % m) % m);
        break;
    case 2: {
        std::uint32_t ph = static_cast<std::uint32_t>(e % p);
        out = ch.paused || ph != p - 1;
        value = (p - ph) % m;
        break;
    }
    case 3: {
        std::uint32_t ph = static_cast<std::uint32_t>(e % p);
        std::uint32_t high = (p + 1) / 2;
        out = ch.paused || ph < high;
        std::uint32_t in_half = ph < high ? ph : ph - high;
        std::uint32_t even = p & ~1u;
        value = (even > 2 * in_half ? even - 2 * in_half : 0) % m;
        break;
    }
    default: break;
    }
    return {ch.bcd ? to_bcd(value) : static_cast<std::uint16_t>(value), out, false};
}

bool pit8254::out(unsigned ch) const { return ch < 3 && eval(ch_[ch], pit_clock()).out; }
std::uint16_t pit8254::count(unsigned ch) const { return ch < 3 ? eval(ch_[ch], pit_clock()).count : 0; }

void pit8254::control(std::uint8_t v, std::uint64_t c) {
    unsigned sc = v >> 6;
    if (sc == 3) {      // read-back
        for (unsigned i = 0; i < 3; ++i) {
            if (!(v & (2u << i))) continue;
            channel& ch = ch_[i];
            snapshot s = eval(ch, c);
            if (!(v & 0x20) && !ch.latched) {
                ch.latched = true;
                ch.latch = s.count;
                ch.latch_msb_next = false;
            }
            if (!(v & 0x10) && !ch.status_latched) {
                ch.status_latched = true;
                ch.status = static_cast<std::uint8_t>((s.out ? 0x80 : 0) | (s.null_count ? 0x40 : 0) |
                                                      ch.rw << 4 | ch.mode << 1 | (ch.bcd ? 1 : 0));
            }
        }
        return;
    }
    channel& ch = ch_[sc];
    unsigned rw = (v >> 4) & 3;
    if (rw == 0) {      // counter latch
        if (!ch.latched) {
            ch.latched = true;
            ch.latch = eval(ch, c).count;
            ch.latch_msb_next = false;
        }
        return;
    }
    std::uint16_t stale = eval(ch, c).count;
    bool gate = ch.gate;
    ch = channel{};
    ch.gate = gate;
    ch.stale = stale;
    ch.rw = static_cast<std::uint8_t>(rw);
    ch.mode = static_cast<std::uint8_t>((v >> 1) & 7);
    if (ch.mode > 5) ch.mode = static_cast<std::uint8_t>(ch.mode - 4);
    ch.bcd = v & 1;
    if (sc == 0) reschedule(c);
}

void pit8254::load(unsigned idx, std::uint16_t n, std::uint64_t c) {
    channel& ch = ch_[idx];
    ch.stale = eval(ch, c).count;
    bool periodic = ch.mode == 2 || ch.mode == 3;
    if (ch.mode == 1 || ch.mode == 5) {
        ch.n = n;
        ch.counting = true;     // armed: counting starts at a gate rising edge
    } else if (periodic && ch.counting && !ch.paused && (c >= ch.start || ch.has_prev)) {
        if (!(ch.has_prev && c < ch.start)) {
            std::uint32_t p = period(ch);
            std::uint64_t k = (c - ch.start) / p + 1;
            ch.prev_start = ch.start;
            ch.prev_period = p;
            ch.has_prev = true;
            ch.start += k * p;      // end of the current period
        }
        ch.n = n;
    } else {
        ch.n = n;
        ch.start = c + 1;
        ch.counting = true;
        ch.has_prev = false;
        ch.paused = !ch.gate;
        ch.paused_e = 0;
    }
    if (idx == 0) reschedule(c);
}

void pit8254::set_gate(unsigned idx, bool level) {
    if (idx > 2) return;
    channel& ch = ch_[idx];
    if (ch.gate == level) return;
    std::uint64_t c = pit_clock();
    ch.gate = level;
    if (ch.counting) {
        switch (ch.mode) {
        case 1:
        case 5:
            if (level) {
                ch.triggered = true;
                ch.start = c + 1;
            }
            break;
        case 2:
        case 3:
            if (level) {        // reload on the next clock
                ch.start = c + 1;
                ch.paused = false;
                ch.has_prev = false;
            } else {
                ch.paused_e = c >= ch.start ? c - ch.start : 0;
                ch.paused = true;
                ch.has_prev = false;
            }
            break;
        default:                // 0, 4: gate suspends counting
            if (level) {
                if (ch.paused) ch.start = c - ch.paused_e;
                ch.paused = false;
            } else {
                ch.paused_e = c >= ch.start ? c - ch.start : 0;
                ch.paused = true;
            }
            break;
        }
    }
    if (idx == 0) reschedule(c);
}

std::uint8_t pit8254::read_counter(unsigned idx, std::uint64_t c) {
    channel& ch = ch_[idx];
    if (ch.status_latched) {
        ch.status_latched = false;
        return ch.status;
    }
    std::uint16_t v = ch.latched ? ch.latch : eval(ch, c).count;
    std::uint8_t out;
    switch (ch.rw) {
    case 1: out = static_cast<std::uint8_t>(v); ch.latched = false; break;
    case 2: out = static_cast<std::uint8_t>(v >> 8); ch.latched = false; break;
    default: {
        bool msb = ch.latched ? ch.latch_msb_next : ch.read_msb_next;
        out = static_cast<std::uint8_t>(msb ? v >> 8 : v);
        if (ch.latched) {
            ch.latch_msb_next = !msb;
            if (msb) ch.latched = false;
        } else {
            ch.read_msb_next = !msb;
        }
        break;
    }
    }
    return out;
}

void pit8254::write_counter(unsigned idx, std::uint8_t v, std::uint64_t c) {
    channel& ch = ch_[idx];
    switch (ch.rw) {
    case 1: load(idx, v, c); break;
    case 2: load(idx, static_cast<std::uint16_t>(v << 8), c); break;
    default:
        if (!ch.write_msb_next) {
            ch.lsb = v;
            ch.write_msb_next = true;
            if (ch.mode == 0 && ch.counting) {      // the first byte stops a mode-0 count
                ch.stale = eval(ch, c).count;
                ch.counting = false;
                if (idx == 0) reschedule(c);
            }
        } else {
            ch.write_msb_next = false;
            load(idx, static_cast<std::uint16_t>(ch.lsb | v << 8), c);
        }
        break;
    }
}

std::uint64_t pit8254::read(std::uint64_t offset, unsigned) {
    if (offset >= 3) return 0xff;   // the control word register cannot be read
    return read_counter(static_cast<unsigned>(offset), pit_clock());
}

void pit8254::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    auto v = static_cast<std::uint8_t>(value);
    std::uint64_t c = pit_clock();
    if (offset == 3) control(v, c);
    else if (offset < 3) write_counter(static_cast<unsigned>(offset), v, c);
}

bool pit8254::next_edge(std::uint64_t after, std::uint64_t& edge) const {
    const channel& ch = ch_[0];
    if (!ch.counting || ch.paused) return false;
    std::uint32_t p = period(ch);
    switch (ch.mode) {
    case 0:
    case 1:
        if ((ch.mode == 1 && !ch.triggered) || ch.start + p <= after) return false;
        edge = ch.start + p;
        return true;
    case 4:
    case 5:
        if ((ch.mode == 5 && !ch.triggered) || ch.start + p + 1 <= after) return false;
        edge = ch.start + p + 1;
        return true;
    case 2:
    case 3:
        if (ch.has_prev && after < ch.start) {
            std::uint64_t k = after >= ch.prev_start ? (after - ch.prev_start) / ch.prev_period + 1 : 1;
            edge = ch.prev_start + k * ch.prev_period;
            return true;
        }
        edge = ch.start + (after >= ch.start ? (after - ch.start) / p + 1 : 1) * p;
        return true;
    default:
        return false;
    }
}

void pit8254::reschedule(std::uint64_t c) {
    std::uint64_t edge;
    if (next_edge(c, edge)) timers_.arm(timer_, clk_.first_tick(edge));
    else timers_.disarm(timer_);
}

void pit8254::fired(void* ctx, std::uint64_t now) {
    auto* pit = static_cast<pit8254*>(ctx);
    // Edges missed by a late poll are coalesced into this one, as the PIC would.
    ++pit->pulses_;
    pit->irq0_.pulse();
    pit->reschedule(pit->clk_.count(now));
}

std::uint64_t pit8254::speaker_port::read(std::uint64_t, unsigned) {
    std::uint64_t c = pit_.pit_clock();
    std::uint8_t v = pit_.port61_bits_ & 0x0f;
    if ((c / 18) & 1) v |= 0x10;        // refresh request toggles about every 15 us
    if (pit_.out(2)) v |= 0x20;
    return v;
}

void pit8254::speaker_port::write(std::uint64_t, unsigned, std::uint64_t value) {
    pit_.port61_bits_ = static_cast<std::uint8_t>(value & 0x0f);
    pit_.set_gate(2, value & 1);
}

} // namespace hv::dev
