#include <doctest/doctest.h>
#include <atomic>
#include <thread>
#include <vector>
#include "libhv/core/spinlock.hpp"
#include "libhv/vm/nested_shootdown.hpp"

using hv::vm::nested_shootdown;

namespace {
// vCPUs 0 and 2 on CPU 0, vCPU 1 on CPU 1.
nested_shootdown three_vcpus() {
    nested_shootdown s;
    s.set_vcpus(3);
    s.set_cpu(0, 0);
    s.set_cpu(1, 1);
    s.set_cpu(2, 0);
    return s;
}
} // namespace

TEST_CASE("nested shootdown: the changing CPU's vCPUs flush at once, the others at their next entry") {
    nested_shootdown s = three_vcpus();
    CHECK_FALSE(s.entering(1));  // nothing changed yet
    s.exited(1);
    std::vector<unsigned> flushed, kicked;
    const unsigned kicks = s.changed(0, false, [&](unsigned i) { flushed.push_back(i); },
                                     [&](unsigned cpu) { kicked.push_back(cpu); }, [] {});
    CHECK(kicks == 0);
    CHECK(flushed == std::vector<unsigned>{0, 2});
    CHECK(kicked.empty());
    CHECK_FALSE(s.entering(0));  // flushed with the change
    CHECK(s.entering(1));        // stale: flushes on its own CPU now
    s.exited(1);
    CHECK_FALSE(s.entering(1));  // once
}

TEST_CASE("nested shootdown: an adding change never kicks nor waits, even with a vCPU in guest mode") {
    nested_shootdown s = three_vcpus();
    (void)s.entering(1);
    REQUIRE(s.in_guest_mode(1));
    unsigned kicks = 0, relaxed = 0;
    CHECK(s.changed(0, false, [](unsigned) {}, [&](unsigned) { ++kicks; }, [&] { ++relaxed; }) == 0);
    CHECK(kicks == 0);
    CHECK(relaxed == 0);
    s.exited(1);
    CHECK(s.entering(1));
}

TEST_CASE("nested shootdown: a revoking change kicks each vCPU in guest mode elsewhere and waits for its exit") {
    nested_shootdown s = three_vcpus();
    (void)s.entering(0);  // in guest mode, but on the changing CPU: not kicked, not waited for
    (void)s.entering(1);
    std::vector<unsigned> kicked;
    unsigned relaxed = 0;
    const unsigned kicks = s.changed(0, true, [](unsigned) {}, [&](unsigned cpu) { kicked.push_back(cpu); },
                                     [&] {
                                         // The kicked vCPU leaves guest mode after a few polls.
                                         if (++relaxed == 3) s.exited(1);
                                     });
    CHECK(kicks == 1);
    CHECK(kicked == std::vector<unsigned>{1});
    CHECK(relaxed == 3);
    CHECK_FALSE(s.in_guest_mode(1));
    CHECK(s.entering(1));

    // Nobody in guest mode on another CPU: no kick, no wait.
    s.exited(1);
    kicked.clear();
    relaxed = 0;
    CHECK(s.changed(0, true, [](unsigned) {}, [&](unsigned cpu) { kicked.push_back(cpu); }, [&] { ++relaxed; }) == 0);
    CHECK(kicked.empty());
    CHECK(relaxed == 0);
}

// Threads as CPUs: CPU 1's vCPU "runs in guest mode" on the table version its TLB holds,
// leaving guest mode only when kicked; CPU 0 revokes versions under the lock. Once a
// revoking change has returned, no use of an older version may follow.
TEST_CASE("nested shootdown: after a revoking change returns, no CPU uses the old translation") {
    nested_shootdown s;
    s.set_vcpus(1);
    s.set_cpu(0, 1);
    hv::spinlock lock;
    std::atomic<std::uint64_t> table{1}, revoked_below{0};
    std::atomic<bool> kick{false}, stop{false};
    std::atomic<std::uint64_t> uses{0}, stale_uses{0}, entries{0};

    std::thread vcpu([&] {
        std::uint64_t tlb = table.load();
        while (!stop.load()) {
            lock.lock();
            if (s.entering(0)) tlb = table.load();  // the flush: refilled from the table
            lock.unlock();
            entries.fetch_add(1);
            // Guest mode: translations from the TLB only, until a kick (or a while).
            for (int k = 0; k < 10000 && !kick.exchange(false); ++k) {
                if (tlb < revoked_below.load(std::memory_order_acquire)) stale_uses.fetch_add(1);
                uses.fetch_add(1, std::memory_order_relaxed);
            }
            s.exited(0);
        }
    });
    unsigned kicks = 0;
    for (std::uint64_t version = 2; version < 500; ++version) {
        while (!s.in_guest_mode(0)) std::this_thread::yield();  // each change meets it in guest mode
        lock.lock();
        table.store(version);
        kicks += s.changed(0, true, [](unsigned) {}, [&](unsigned) { kick.store(true); }, [] { std::this_thread::yield(); });
        revoked_below.store(version, std::memory_order_release);
        lock.unlock();
    }
    stop.store(true);
    kick.store(true);
    vcpu.join();
    CHECK(stale_uses.load() == 0);
    CHECK(uses.load() > 0);
    CHECK(kicks == 498);
    MESSAGE("kicks " << kicks << ", entries " << entries.load() << ", uses " << uses.load());
}
