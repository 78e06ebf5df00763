#include <doctest/doctest.h>
#include <random>
#include <set>
#include <thread>
#include <vector>
#include "libhv/mem/page_allocator.hpp"

using hv::mem::page_allocator;
using hv::mem::page_size;

TEST_CASE("page allocator: only memory the map calls free is handed out") {
    std::vector<std::uint64_t> bits(64);  // 4096 frames = 16 MiB
    page_allocator pa;
    pa.init(bits);
    CHECK(pa.free_frames() == 0);
    CHECK(pa.alloc().code() == hv::errc::no_memory);

    pa.add_free(0x100800, 0x3000);  // partial first frame is not free: frames 0x101, 0x102 (0x103 partial)
    CHECK(pa.free_frames() == 2);
    pa.add_free(0x200000, 0x100000);
    pa.reserve(0x200000, 1);  // one byte reserves its whole frame
    CHECK(pa.free_frames() == 2 + 255);
    CHECK_FALSE(pa.is_free(0x200));
    CHECK(pa.is_free(0x201));

    std::set<std::uint64_t> seen;
    for (int i = 0; i < 257; ++i) {
        auto p = pa.alloc();
        REQUIRE(p.ok());
        CHECK(*p % page_size == 0);
        bool in_free_map = (*p >= 0x101000 && *p < 0x103000) || (*p >= 0x201000 && *p < 0x300000);
        CHECK(in_free_map);
        CHECK(seen.insert(*p).second);
    }
    CHECK(pa.alloc().code() == hv::errc::no_memory);
    for (auto p : seen) CHECK(pa.free(p).ok());
    CHECK(pa.free_frames() == 257);
}

TEST_CASE("page allocator: contiguous aligned runs") {
    std::vector<std::uint64_t> bits(64);
    page_allocator pa;
    pa.init(bits);
    pa.add_free(0x1000, 0x7ff000);  // frames 1..2047
    auto two_mib = pa.alloc(512, 512);
    REQUIRE(two_mib.ok());
    CHECK(*two_mib % 0x200000 == 0);
    auto odd = pa.alloc(3, 1);
    REQUIRE(odd.ok());
    for (std::uint64_t f = *odd / page_size; f < *odd / page_size + 3; ++f) CHECK_FALSE(pa.is_free(f));
    CHECK(pa.alloc(4096).code() == hv::errc::no_memory);
    CHECK(pa.alloc(4, 3).code() == hv::errc::invalid_argument);
    CHECK(pa.alloc(0).code() == hv::errc::invalid_argument);
}

TEST_CASE("page allocator: bad frees are refused and lose nothing") {
    std::vector<std::uint64_t> bits(1);
    page_allocator pa;
    pa.init(bits);
    pa.add_free(0, 64 * page_size);
    auto p = pa.alloc();
    REQUIRE(p.ok());
    CHECK(pa.free(*p + 8).code() == hv::errc::invalid_argument);
    CHECK(pa.free(64 * page_size).code() == hv::errc::out_of_range);
    CHECK(pa.free(*p).ok());
    CHECK(pa.free(*p).code() == hv::errc::invalid_argument);  // double free
    CHECK(pa.free_frames() == 64);
}

TEST_CASE("page allocator: random alloc/free keeps the free count exact") {
    std::vector<std::uint64_t> bits(16);
    page_allocator pa;
    pa.init(bits);
    pa.add_free(0, 1024 * page_size);
    std::mt19937_64 rng(7);
    std::vector<std::pair<std::uint64_t, std::size_t>> live;
    std::size_t used = 0;
    for (int step = 0; step < 5000; ++step) {
        if (live.empty() || rng() % 2) {
            std::size_t n = 1 + rng() % 8;
            auto p = pa.alloc(n, std::size_t{1} << (rng() % 3));
            if (p) { live.push_back({*p, n}); used += n; }
        } else {
            auto i = rng() % live.size();
            REQUIRE(pa.free(live[i].first, live[i].second).ok());
            used -= live[i].second;
            live.erase(live.begin() + long(i));
        }
        REQUIRE(pa.free_frames() == 1024 - used);
    }
}

TEST_CASE("page allocator: add_free/reserve over random unaligned ranges match a frame-by-frame model") {
    std::vector<std::uint64_t> bits(8);  // 512 frames
    hv::mem::page_allocator a;
    a.init(bits);
    std::vector<bool> model(512, false);
    std::mt19937_64 rng(7);
    for (int step = 0; step < 2000; ++step) {
        const std::uint64_t first = rng() % 520, count = rng() % 200;  // some ranges run past the bitmap
        const bool make_free = rng() % 2;
        if (make_free) {
            a.add_free(first * hv::mem::page_size, count * hv::mem::page_size);
        } else {
            a.reserve(first * hv::mem::page_size, count * hv::mem::page_size);
        }
        for (std::uint64_t f = first; f < first + count && f < model.size(); ++f) model[f] = make_free;
        std::size_t expected_free = 0;
        for (std::size_t f = 0; f < model.size(); ++f) {
            REQUIRE(a.is_free(f) == model[f]);
            expected_free += model[f];
        }
        REQUIRE(a.free_frames() == expected_free);
    }
}

TEST_CASE("page_allocator: frames handed out from several threads at once are distinct") {
    static std::uint64_t bitmap[64];  // 4096 frames
    hv::mem::page_allocator a;
    a.init(bitmap);
    a.add_free(0, 4096 * hv::mem::page_size);
    constexpr int threads = 4, per_thread = 1000;
    std::vector<std::uint64_t> got[threads];
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto f = a.alloc();
                if (f) got[t].push_back(*f);
                if (i % 3 == 0 && !got[t].empty()) {
                    (void)a.free(got[t].back());
                    got[t].pop_back();
                }
            }
        });
    for (auto& t : ts) t.join();
    std::set<std::uint64_t> all;
    std::size_t held = 0;
    for (auto& g : got) {
        held += g.size();
        all.insert(g.begin(), g.end());
    }
    CHECK(all.size() == held);
    CHECK(a.free_frames() == 4096 - held);
}
