#include "libhv/dev/time.hpp"

namespace hv::dev {

timer::~timer() {
    if (queue_) queue_->disarm(*this);
}

timer_queue::~timer_queue() {
    while (head_) {
        timer* t = head_;
        head_ = t->next_;
        t->queue_ = nullptr;
        t->next_ = nullptr;
    }
}

void timer_queue::arm(timer& t, std::uint64_t deadline) {
    if (t.queue_) t.queue_->disarm(t);
    t.deadline_ = deadline;
    t.queue_ = this;
    // Equal deadlines keep arming order.
    timer** link = &head_;
    while (*link && (*link)->deadline_ <= deadline) link = &(*link)->next_;
    t.next_ = *link;
    *link = &t;
}

void timer_queue::disarm(timer& t) {
    if (t.queue_ != this) return;
    for (timer** link = &head_; *link; link = &(*link)->next_) {
        if (*link == &t) {
            *link = t.next_;
            break;
        }
    }
    t.queue_ = nullptr;
    t.next_ = nullptr;
}

std::uint32_t timer_queue::run_due(std::uint64_t now) {
    constexpr std::uint32_t max_callbacks = 4096;
    std::uint32_t ran = 0;
    while (head_ && head_->deadline_ <= now && ran < max_callbacks) {
        timer* t = head_;
        head_ = t->next_;
        t->queue_ = nullptr;
        t->next_ = nullptr;
        ++ran;
        t->cb_(t->ctx_, now);
    }
    return ran;
}

} // namespace hv::dev
