// libhv's shared ring against itself and against Xen's io/ring.h macros, with frontend
// and backend as two hv::fiber fibers under a seeded random scheduler.
#include <doctest/doctest.h>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>
#include "libhv/core/fiber.hpp"
#include "libhv/io/ring.hpp"
#include "libhv/io/xen_abi.hpp"
#include "tests/unit/io/xen_public.hpp"

namespace {

struct test_req {
    std::uint64_t id;
    std::uint32_t op;
    std::uint32_t len;
    std::uint64_t payload[2];
};
struct test_rsp {
    std::uint64_t id;
    std::int32_t status;
    std::uint32_t pad;
};

} // namespace

DEFINE_RING_TYPES(tst, struct test_req, struct test_rsp);

namespace {

using hv::io::ring_idx;

// ---- layout against Xen ---------------------------------------------------------------

using blk_ring = hv::io::shared_ring<hv::xen::blkif_request, hv::xen::blkif_response>;
static_assert(sizeof(hv::io::ring_header) == offsetof(blkif_sring, ring));
static_assert(offsetof(hv::io::ring_header, req_prod) == offsetof(blkif_sring, req_prod));
static_assert(offsetof(hv::io::ring_header, req_event) == offsetof(blkif_sring, req_event));
static_assert(offsetof(hv::io::ring_header, rsp_prod) == offsetof(blkif_sring, rsp_prod));
static_assert(offsetof(hv::io::ring_header, rsp_event) == offsetof(blkif_sring, rsp_event));
static_assert(offsetof(hv::io::ring_header, pvt) == offsetof(blkif_sring, pvt));
static_assert(offsetof(blk_ring, ring) == offsetof(blkif_sring, ring));
static_assert(sizeof(blk_ring::entry) == sizeof(union blkif_sring_entry));
static_assert(blk_ring::size == __CONST_RING_SIZE(blkif, 4096));
static_assert(hv::io::shared_ring<test_req, test_rsp>::size == __CONST_RING_SIZE(tst, 4096));

TEST_CASE("ring: init writes Xen's empty-ring state") {
    alignas(4096) static unsigned char a[4096], b[4096];
    std::memset(a, 0xAB, sizeof a);
    std::memset(b, 0xAB, sizeof b);
    hv::io::front_ring<blk_ring> f;
    f.init(reinterpret_cast<blk_ring*>(a));
    blkif_front_ring_t xf;
    XEN_FRONT_RING_INIT(&xf, reinterpret_cast<blkif_sring_t*>(b), 4096);
    CHECK(std::memcmp(a, b, 64) == 0);
    CHECK(RING_SIZE(&xf) == blk_ring::size);
    CHECK(f.free_requests() == RING_FREE_REQUESTS(&xf));
}

// ---- adapters: the same operations through libhv and through Xen's macros ------------

template <std::size_t Bytes>
using hv_ring = hv::io::shared_ring<test_req, test_rsp, Bytes>;

// Sets a page's indices as if both ends had run to `start` and gone idle.
void preset_indices(void* page, ring_idx start) {
    auto* h = static_cast<hv::io::ring_header*>(page);
    std::memset(h, 0, sizeof *h);
    h->req_prod = h->rsp_prod = start;
    h->req_event = h->rsp_event = start + 1;
}

template <std::size_t Bytes>
struct hv_front {
    hv::io::front_ring<hv_ring<Bytes>> r;
    void attach(void* page, ring_idx start) { r.attach(static_cast<hv_ring<Bytes>*>(page), start); }
    bool full() const { return r.full(); }
    bool put(const test_req& q) { return r.put_request(q); }
    bool push() { return r.push_requests(); }
    bool take(test_rsp& p) {
        auto n = r.unconsumed_responses();
        REQUIRE(n.ok());
        return r.take_response(p);
    }
    bool final_check() {
        auto w = r.final_check_for_responses();
        REQUIRE(w.ok());
        return *w;
    }
};

template <std::size_t Bytes>
struct hv_back {
    hv::io::back_ring<hv_ring<Bytes>> r;
    void attach(void* page, ring_idx start) { r.attach(static_cast<hv_ring<Bytes>*>(page), start); }
    bool take(test_req& q) {
        auto n = r.unconsumed_requests();
        REQUIRE(n.ok());
        return r.take_request(q);
    }
    bool respond(const test_rsp& p) { return r.put_response(p); }
    bool push() { return r.push_responses(); }
    bool final_check() {
        auto w = r.final_check_for_requests();
        REQUIRE(w.ok());
        return *w;
    }
};

template <std::size_t Bytes>
struct xen_front {
    tst_front_ring_t r{};
    void attach(void* page, ring_idx start) {
        FRONT_RING_ATTACH(&r, static_cast<tst_sring_t*>(page), start, Bytes);
    }
    bool full() const { return RING_FULL(&r); }
    bool put(const test_req& q) {
        if (RING_FULL(&r)) return false;
        *RING_GET_REQUEST(&r, r.req_prod_pvt) = q;
        r.req_prod_pvt++;
        return true;
    }
    bool push() {
        int notify;
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r, notify);
        return notify;
    }
    bool take(test_rsp& p) {
        if (!RING_HAS_UNCONSUMED_RESPONSES(&r)) return false;
        RING_COPY_RESPONSE(&r, r.rsp_cons, &p);
        r.rsp_cons++;
        return true;
    }
    bool final_check() {
        int work;
        RING_FINAL_CHECK_FOR_RESPONSES(&r, work);
        return work;
    }
};

template <std::size_t Bytes>
struct xen_back {
    tst_back_ring_t r{};
    void attach(void* page, ring_idx start) {
        BACK_RING_ATTACH(&r, static_cast<tst_sring_t*>(page), start, Bytes);
    }
    bool take(test_req& q) {
        if (!RING_HAS_UNCONSUMED_REQUESTS(&r)) return false;
        RING_COPY_REQUEST(&r, r.req_cons, &q);
        r.req_cons++;
        return true;
    }
    bool respond(const test_rsp& p) {
        *RING_GET_RESPONSE(&r, r.rsp_prod_pvt) = p;
        r.rsp_prod_pvt++;
        return true;
    }
    bool push() {
        int notify;
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&r, notify);
        return notify;
    }
    bool final_check() {
        int work;
        RING_FINAL_CHECK_FOR_REQUESTS(&r, work);
        return work;
    }
};

// ---- ping-pong under a random scheduler ------------------------------------------------
//
// Each side sleeps only after its final check found no work, and is woken only by a
// notification. A lost wake-up shows as both sides asleep with no notification in
// flight; a needless notification as one sent to a side that is not asleep.

struct pingpong_stats {
    std::uint64_t notify_back = 0, notify_front = 0;
    std::uint64_t needless_back = 0, needless_front = 0;
    std::uint64_t back_sleeps = 0, front_sleeps = 0;
    std::uint64_t resumes = 0;
    bool operator==(const pingpong_stats&) const = default;
};

template <class Front, class Back>
struct pingpong {
    alignas(4096) unsigned char page[4096]{};
    Front front;
    Back back;
    std::mt19937_64 rng;
    std::uint64_t total;
    std::uint64_t sent = 0, answered = 0, received = 0;
    bool front_asleep = false, back_asleep = true; // a connected backend waits first
    bool front_kicked = false, back_kicked = false;
    bool front_done = false, back_done = false;
    pingpong_stats st;

    pingpong(std::uint64_t seed, std::uint64_t n, ring_idx start) : rng(seed), total(n) {
        preset_indices(page, start);
        front.attach(page, start);
        back.attach(page, start);
    }

    bool coin(unsigned one_in) { return rng() % one_in == 0; }
    void maybe_yield(hv::fiber& f) {
        if (coin(3)) f.yield();
    }

    // A notification to a side that is awake is counted and dropped: latching it would
    // end that side's next sleep early and blur the next count.
    void kick_back() {
        ++st.notify_back;
        if (!back_asleep) ++st.needless_back; else back_kicked = true;
    }
    void kick_front() {
        ++st.notify_front;
        if (!front_asleep) ++st.needless_front; else front_kicked = true;
    }

    void run_front(hv::fiber& f) {
        while (received < total) {
            unsigned burst = static_cast<unsigned>(rng() % 12);
            bool queued = false;
            for (unsigned i = 0; i < burst && sent < total; ++i) {
                test_req q{sent, 1, 0, {sent * 3, ~sent}};
                if (!front.put(q)) break;
                ++sent;
                queued = true;
                if (coin(4)) { // publish part of the burst early
                    if (front.push()) kick_back();
                    queued = false;
                }
                maybe_yield(f);
            }
            if (queued && front.push()) kick_back();
            maybe_yield(f);
            bool got = false;
            test_rsp p;
            while (front.take(p)) {
                REQUIRE(p.id == received);
                REQUIRE(p.status == static_cast<std::int32_t>(received & 0xff));
                ++received;
                got = true;
                if (coin(5)) break;
            }
            bool can_send = sent < total && !front.full();
            if (!got && !can_send && received < total && !front.final_check()) {
                front_asleep = true;
                ++st.front_sleeps;
                while (!front_kicked) f.yield();
                front_kicked = false;
                front_asleep = false;
            }
        }
        front_done = true;
    }

    void run_back(hv::fiber& f) {
        while (back_asleep) { // wait for the first notification
            while (!back_kicked) f.yield();
            back_kicked = false;
            back_asleep = false;
        }
        while (answered < total) {
            test_req q;
            unsigned batch = 0;
            while (back.take(q)) {
                REQUIRE(q.id == answered);
                REQUIRE(q.payload[0] == q.id * 3);
                REQUIRE(back.respond(test_rsp{q.id, static_cast<std::int32_t>(q.id & 0xff), 0}));
                ++answered;
                if (++batch % 4 == 0 && coin(2)) {
                    if (back.push()) kick_front();
                    maybe_yield(f);
                }
            }
            if (back.push()) kick_front();
            maybe_yield(f);
            if (answered < total && !back.final_check()) {
                back_asleep = true;
                ++st.back_sleeps;
                while (!back_kicked) f.yield();
                back_kicked = false;
                back_asleep = false;
            }
        }
        back_done = true;
    }

    void run() {
        std::vector<char> sa(128 * 1024), sb(128 * 1024);
        hv::fiber ff, fb;
        ff.init(sa.data(), sa.size(), [](hv::fiber& f, void* a) { static_cast<pingpong*>(a)->run_front(f); }, this);
        fb.init(sb.data(), sb.size(), [](hv::fiber& f, void* a) { static_cast<pingpong*>(a)->run_back(f); }, this);
        while (!ff.finished() || !fb.finished()) {
            // Lost wake-up: everybody asleep and no notification pending.
            bool stuck = (ff.finished() || (front_asleep && !front_kicked)) &&
                         (fb.finished() || (back_asleep && !back_kicked));
            REQUIRE_MESSAGE(!stuck, "lost wake-up: both ends asleep, sent=", sent,
                            " answered=", answered, " received=", received);
            hv::fiber& pick = ff.finished() ? fb : fb.finished() ? ff : (coin(2) ? ff : fb);
            pick.resume();
            REQUIRE(++st.resumes < 50'000'000);
        }
        CHECK(received == total);
    }
};

template <class Front, class Back>
pingpong_stats run_pingpong(std::uint64_t seed, std::uint64_t n, ring_idx start) {
    auto p = std::make_unique<pingpong<Front, Back>>(seed, n, start);
    p->run();
    const auto& st = p->st;
    // None is sent to a side awake, except the one the initial rsp_event = 1 asks for;
    // every sleep is ended by exactly one notification.
    CHECK(st.needless_back == 0);
    CHECK(st.needless_front <= 1);
    CHECK(st.notify_back == st.back_sleeps + 1); // + the first, connecting, one
    CHECK(st.notify_front == st.front_sleeps + st.needless_front);
    return st;
}

constexpr std::size_t small = 64 + 8 * 32; // an 8-entry ring: full and wrap often

TEST_CASE("ring: fibers ping-pong, no lost wake-up, no needless notify") {
    for (std::uint64_t seed : {1u, 2u, 3u, 42u, 1234u}) {
        CAPTURE(seed);
        auto st = run_pingpong<hv_front<4096>, hv_back<4096>>(seed, 20000, 0);
        CHECK(st.notify_back > 0);
        run_pingpong<hv_front<small>, hv_back<small>>(seed, 20000, 0);
    }
}

TEST_CASE("ring: 32-bit index wraparound") {
    for (ring_idx start : {0xfffffff0u, 0xffffffffu, 0x7ffffffcu}) {
        CAPTURE(start);
        run_pingpong<hv_front<small>, hv_back<small>>(7, 5000, start);
        run_pingpong<hv_front<4096>, hv_back<4096>>(8, 5000, start);
    }
}

TEST_CASE("ring: interop with Xen's io/ring.h macros, identical notification trace") {
    for (std::uint64_t seed : {5u, 6u, 77u}) {
        for (ring_idx start : {0u, 0xfffffff8u}) {
            CAPTURE(seed);
            CAPTURE(start);
            auto a = run_pingpong<hv_front<small>, hv_back<small>>(seed, 8000, start);
            auto b = run_pingpong<hv_front<small>, xen_back<small>>(seed, 8000, start);
            auto c = run_pingpong<xen_front<small>, hv_back<small>>(seed, 8000, start);
            auto d = run_pingpong<xen_front<small>, xen_back<small>>(seed, 8000, start);
            // Same seed, same decisions: the notification counts must agree exactly.
            CHECK(a == b);
            CHECK(a == c);
            CHECK(a == d);
        }
    }
}

TEST_CASE("ring: full ring refuses requests until a response is taken") {
    alignas(4096) static unsigned char page[4096];
    using R = hv_ring<small>;
    hv::io::front_ring<R> f;
    f.init(reinterpret_cast<R*>(page));
    hv::io::back_ring<R> b(reinterpret_cast<R*>(page));
    for (std::uint64_t i = 0; i < R::size; ++i) REQUIRE(f.put_request(test_req{i, 0, 0, {}}));
    CHECK(f.full());
    CHECK_FALSE(f.put_request(test_req{99, 0, 0, {}}));
    CHECK(f.push_requests()); // req_event = 1 initially: the first push notifies
    test_req q;
    CHECK_FALSE(b.take_request(q)); // nothing validated yet
    CHECK(*b.unconsumed_requests() == R::size);
    for (ring_idx i = 0; i < R::size; ++i) REQUIRE(b.take_request(q));
    CHECK_FALSE(b.take_request(q));
    CHECK(b.put_response(test_rsp{0, 0, 0}));
    CHECK(b.push_responses()); // rsp_event = 1 initially
    CHECK(f.full());           // a response published but not taken still holds a slot
    test_rsp p;
    CHECK(*f.unconsumed_responses() == 1);
    CHECK(f.take_response(p));
    CHECK(f.free_requests() == 1);
    CHECK(f.put_request(test_req{100, 0, 0, {}}));
}

TEST_CASE("ring: backend cannot answer more than it took") {
    alignas(4096) static unsigned char page[4096];
    using R = hv_ring<small>;
    hv::io::front_ring<R> f;
    f.init(reinterpret_cast<R*>(page));
    hv::io::back_ring<R> b(reinterpret_cast<R*>(page));
    CHECK_FALSE(b.put_response(test_rsp{}));
    REQUIRE(f.put_request(test_req{}));
    (void)f.push_requests();
    REQUIRE(b.unconsumed_requests().ok());
    test_req q;
    REQUIRE(b.take_request(q));
    CHECK(b.put_response(test_rsp{}));
    CHECK_FALSE(b.put_response(test_rsp{}));
}

TEST_CASE("ring: corrupted producer indices are errors, never loops") {
    alignas(4096) static unsigned char page[4096];
    using R = hv_ring<small>;
    auto* s = reinterpret_cast<R*>(page);
    hv::io::front_ring<R> f;
    f.init(s);
    hv::io::back_ring<R> b(s);
    test_req q;
    test_rsp p;

    SUBCASE("request producer beyond ring size") {
        s->hdr.req_prod = R::size + 1;
        auto n = b.unconsumed_requests();
        CHECK(n.code() == hv::errc::overflow);
        CHECK_FALSE(b.take_request(q));
        auto w = b.final_check_for_requests();
        CHECK(w.code() == hv::errc::overflow);
        s->hdr.req_prod = R::size; // exactly full is legal
        CHECK(*b.unconsumed_requests() == R::size);
    }
    SUBCASE("request producer moving backwards") {
        s->hdr.req_prod = 3;
        REQUIRE(*b.unconsumed_requests() == 3);
        REQUIRE(b.take_request(q));
        REQUIRE(b.take_request(q));
        REQUIRE(b.put_response(test_rsp{}));
        s->hdr.req_prod = 1; // behind req_cons (2) but not behind rsp_prod_pvt (1)
        CHECK(b.unconsumed_requests().code() == hv::errc::overflow);
        s->hdr.req_prod = 0xffffffffu;
        CHECK(b.unconsumed_requests().code() == hv::errc::overflow);
    }
    SUBCASE("response producer beyond outstanding requests") {
        REQUIRE(f.put_request(test_req{}));
        REQUIRE(f.put_request(test_req{}));
        (void)f.push_requests();
        s->hdr.rsp_prod = 3;
        CHECK(f.unconsumed_responses().code() == hv::errc::overflow);
        CHECK_FALSE(f.take_response(p));
        s->hdr.rsp_prod = 2;
        CHECK(*f.unconsumed_responses() == 2);
    }
    SUBCASE("random garbage indices: bounded answers only") {
        std::mt19937 rng(99);
        for (int i = 0; i < 100000; ++i) {
            s->hdr.req_prod = rng();
            s->hdr.rsp_prod = rng();
            if (rng() & 1) {
                auto n = b.unconsumed_requests();
                if (n) CHECK(*n <= R::size);
                ring_idx taken = 0;
                while (b.take_request(q)) ++taken;
                CHECK(taken <= R::size);
                while (b.put_response(test_rsp{})) {}
            } else {
                auto n = f.unconsumed_responses();
                if (n) CHECK(*n <= R::size);
                while (f.take_response(p)) {}
                while (f.put_request(test_req{})) {}
            }
        }
    }
}

TEST_CASE("ring: the consumer's copy is private") {
    alignas(4096) static unsigned char page[4096];
    using R = hv_ring<small>;
    auto* s = reinterpret_cast<R*>(page);
    hv::io::front_ring<R> f;
    f.init(s);
    hv::io::back_ring<R> b(s);
    REQUIRE(f.put_request(test_req{5, 1, 16, {1, 2}}));
    (void)f.push_requests();
    REQUIRE(b.unconsumed_requests().ok());
    test_req q;
    REQUIRE(b.take_request(q));
    s->ring[0].req.len = 0xdeadbeef; // the frontend rewrites the slot after the copy
    CHECK(q.len == 16);
}

} // namespace
