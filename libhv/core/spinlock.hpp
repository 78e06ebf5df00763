// A test-and-test-and-set spinlock for state several physical CPUs touch (console,
// page allocator, a guest's device model). Portable: the same code runs hosted under
// threads in the unit tests. Interrupts are not disabled: libhv's host runs with IF = 0
// except where it waits for an IPI, and no interrupt handler takes a lock.
#pragma once
#include <cstdint>

namespace hv {

class spinlock {
public:
    void lock() {
        while (__atomic_exchange_n(&held_, true, __ATOMIC_ACQUIRE))
            while (__atomic_load_n(&held_, __ATOMIC_RELAXED)) relax();
    }
    [[nodiscard]] bool try_lock() { return !__atomic_exchange_n(&held_, true, __ATOMIC_ACQUIRE); }
    void unlock() { __atomic_store_n(&held_, false, __ATOMIC_RELEASE); }
    [[nodiscard]] bool held() const { return __atomic_load_n(&held_, __ATOMIC_RELAXED); }

    static void relax() {
#if defined(__x86_64__) || defined(__i386__)
        asm volatile("pause");
#endif
    }

private:
    bool held_ = false;
};

template <class Lock>
class lock_guard {
public:
    explicit lock_guard(Lock& l) : l_{l} { l_.lock(); }
    ~lock_guard() { l_.unlock(); }
    lock_guard(const lock_guard&) = delete;
    lock_guard& operator=(const lock_guard&) = delete;

private:
    Lock& l_;
};

// A spinlock the holding CPU may take again (the console: a panic while printing).
// `owner` is any non-zero token unique per CPU.
class recursive_spinlock {
public:
    void lock(std::uintptr_t owner) {
        if (__atomic_load_n(&owner_, __ATOMIC_RELAXED) == owner) {
            ++depth_;
            return;
        }
        l_.lock();
        __atomic_store_n(&owner_, owner, __ATOMIC_RELAXED);
        depth_ = 1;
    }
    void unlock() {
        if (--depth_) return;
        __atomic_store_n(&owner_, std::uintptr_t{0}, __ATOMIC_RELAXED);
        l_.unlock();
    }

private:
    spinlock l_;
    std::uintptr_t owner_ = 0;
    unsigned depth_ = 0;
};

} // namespace hv
