// Test doubles: a guest clock the test moves by hand, and recorders for IRQ lines and
// machine events.
#pragma once
#include <cstdint>
#include <map>
#include <vector>
#include "libhv/dev/event.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hvtest {

class fake_clock final : public hv::dev::clock {
public:
    explicit fake_clock(std::uint64_t hz) : hz_{hz} {}
    std::uint64_t now() const override { return now_; }
    std::uint64_t frequency() const override { return hz_; }
    void set(std::uint64_t t) { now_ = t; }
    void advance(std::uint64_t d) { now_ += d; }

private:
    std::uint64_t hz_;
    std::uint64_t now_ = 0;
};

// Moves the clock to `t` in steps no longer than `step`, firing due timers at each
// step (as a vCPU loop that polls on every exit would).
inline void run_until(fake_clock& c, hv::dev::timer_queue& q, std::uint64_t t, std::uint64_t step) {
    while (c.now() < t) {
        std::uint64_t next = c.now() + step;
        if (auto d = q.next_deadline(); d && *d < next) next = *d;
        if (next > t) next = t;
        if (next <= c.now()) next = c.now() + 1;
        c.set(next);
        q.run_expired(c.now());
    }
}

class irq_recorder final : public hv::dev::irq_sink {
public:
    void set_irq(unsigned line, bool level) override {
        if (level && !levels[line]) ++rising[line];
        levels[line] = level;
        log.push_back({line, level});
    }
    std::map<unsigned, bool> levels;
    std::map<unsigned, unsigned> rising;
    std::vector<std::pair<unsigned, bool>> log;
};

class event_recorder final : public hv::dev::event_sink {
public:
    void raise(hv::dev::event e) override { events.push_back(e); }
    std::vector<hv::dev::event> events;
};

} // namespace hvtest
