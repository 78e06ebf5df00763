// Guest time for device models: a clock that reads guest ticks (the guest TSC) and a
// timer queue of deadlines in those ticks that the vCPU loop polls.
//
// Devices never read host time. Anything a guest can observe (PIT counter, PM timer,
// LAPIC current count, RTC seconds) is computed from clock::now() when read, so it is
// exact and reproducible; the queue only exists to raise interrupts on time.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>

namespace hv::dev {

class clock {
public:
    // Monotonic guest ticks (the guest's TSC) and their frequency in Hz.
    virtual std::uint64_t now() const = 0;
    virtual std::uint64_t frequency() const = 0;

protected:
    ~clock() = default;
};

// floor(v * mul / div) and ceil(v * mul / div), saturating at 2^64-1; div != 0.
constexpr std::uint64_t mul_div(std::uint64_t v, std::uint64_t mul, std::uint64_t div) {
    unsigned __int128 p = static_cast<unsigned __int128>(v) * mul / div;
    return p > std::numeric_limits<std::uint64_t>::max() ? std::numeric_limits<std::uint64_t>::max()
                                                         : static_cast<std::uint64_t>(p);
}
constexpr std::uint64_t mul_div_ceil(std::uint64_t v, std::uint64_t mul, std::uint64_t div) {
    unsigned __int128 p = (static_cast<unsigned __int128>(v) * mul + (div - 1)) / div;
    return p > std::numeric_limits<std::uint64_t>::max() ? std::numeric_limits<std::uint64_t>::max()
                                                         : static_cast<std::uint64_t>(p);
}

// A device clock of `hz` derived from guest ticks: count(t) = floor(t * hz / clock_hz).
// first_tick(n) is the earliest guest tick t with count(t) >= n.
struct derived_clock {
    std::uint64_t hz;
    std::uint64_t clock_hz;
    constexpr std::uint64_t count(std::uint64_t ticks) const { return mul_div(ticks, hz, clock_hz); }
    constexpr std::uint64_t first_tick(std::uint64_t n) const { return mul_div_ceil(n, clock_hz, hz); }
};

class timer_queue;

// A deadline owned by a device. Not copyable: the queue links it in place.
class timer {
public:
    using callback = void (*)(void* ctx, std::uint64_t now);
    timer(callback cb, void* ctx) : cb_{cb}, ctx_{ctx} {}
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;
    ~timer();

    [[nodiscard]] bool armed() const { return queue_ != nullptr; }
    [[nodiscard]] std::uint64_t deadline() const { return deadline_; }

private:
    friend class timer_queue;
    callback cb_;
    void* ctx_;
    timer_queue* queue_ = nullptr;
    timer* next_ = nullptr;
    std::uint64_t deadline_ = 0;
};

// Deadlines in guest ticks, earliest first. Not thread-safe: callers serialize.
class timer_queue {
public:
    explicit timer_queue(const clock& c) : clock_{&c} {}
    timer_queue(const timer_queue&) = delete;
    timer_queue& operator=(const timer_queue&) = delete;
    ~timer_queue();

    [[nodiscard]] const dev::clock& clock() const { return *clock_; }
    [[nodiscard]] std::uint64_t now() const { return clock_->now(); }

    // Arming an armed timer moves it.
    void arm(timer& t, std::uint64_t deadline);
    void disarm(timer& t);
    [[nodiscard]] std::optional<std::uint64_t> next_deadline() const {
        if (!head_) return std::nullopt;
        return head_->deadline_;
    }
    // Fires, in deadline order, every timer whose deadline is <= now; a callback may
    // re-arm its own or other timers (a re-armed deadline <= now fires in this call
    // too, up to a bound that keeps a zero-period timer from looping forever).
    // Returns how many callbacks ran. (Inline: checked before every entry.)
    std::uint32_t run_expired(std::uint64_t now) { return head_ && head_->deadline_ <= now ? run_due(now) : 0; }

private:
    std::uint32_t run_due(std::uint64_t now);

    const dev::clock* clock_;
    timer* head_ = nullptr;
};

} // namespace hv::dev
