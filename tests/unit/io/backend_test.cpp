// In-hypervisor backends as hv::fiber tasks, driven by a blkfront/console frontend
// fiber playing the guest: real requests through a ring, with grants and event channels.
#include <doctest/doctest.h>
#include <cstring>
#include <random>
#include <vector>
#include "libhv/core/fiber.hpp"
#include "libhv/io/xen_backend.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;
namespace ev = hv::xen::ev;

namespace {

constexpr std::uint64_t ring_gfn = 10;
constexpr x::grant_ref_t ring_ref = 8;
constexpr std::uint64_t data_gfn = 20; // 4 slots x 11 pages
constexpr x::grant_ref_t data_ref = 16;
constexpr unsigned slots = 4;
constexpr std::size_t disk_sectors = 2048;

struct blk_world {
    x::domain_table t;
    fake::vm guest{t, 1, 1, 80};
    fake::vm hv{t, 0, 1, 0}; // the backend domain: no RAM
    std::vector<std::byte> disk = std::vector<std::byte>(disk_sectors * 512);
    std::vector<std::byte> shadow = std::vector<std::byte>(disk_sectors * 512);
    x::blk_backend back;
    hv::io::front_ring<x::blkif_sring> front;
    x::evtchn_port_t fport = 0;
    std::mt19937_64 rng{77};
    std::uint64_t front_notifies = 0, front_sleeps = 0;

    std::span<x::grant_entry_v1> gtab() { return {guest.d().gnttab.shared, x::grant_entries_per_frame}; }

    blk_world() {
        front.init(guest.plat.at<x::blkif_sring>(ring_gfn * 4096));
        REQUIRE(x::gnt::guest::grant_access(gtab(), ring_ref, 0, ring_gfn, false).ok());
        for (unsigned i = 0; i < slots * 11; ++i)
            REQUIRE(x::gnt::guest::grant_access(gtab(), data_ref + i, 0, data_gfn + i, false).ok());
        x::evtchn_alloc_unbound au{x::domid_self, 0, 0};
        REQUIRE(ev::alloc_unbound(guest.d(), au) == 0);
        fport = au.port;
        REQUIRE(back.connect(hv.d(), {1, ring_ref, fport, disk, false}).ok());
    }

    unsigned char* data(unsigned slot, unsigned seg) {
        return guest.plat.at(std::uint64_t(data_gfn + slot * 11 + seg) * 4096);
    }

    // Builds a random valid read or write for `slot`, filling write data.
    x::blkif_request make(unsigned slot, std::uint64_t id, bool write) {
        x::blkif_request r{};
        r.operation = write ? x::blkif_op_write : x::blkif_op_read;
        r.nr_segments = static_cast<std::uint8_t>(1 + rng() % 11);
        r.id = id;
        unsigned total = 0;
        for (unsigned s = 0; s < r.nr_segments; ++s) {
            auto first = static_cast<std::uint8_t>(rng() % 8);
            auto last = static_cast<std::uint8_t>(first + rng() % (8 - first));
            r.seg[s] = {data_ref + slot * 11 + s, first, last, 0};
            total += last - first + 1u;
            if (write)
                for (unsigned k = first * 512; k < (last + 1u) * 512; ++k)
                    data(slot, s)[k] = static_cast<unsigned char>(rng());
        }
        r.sector_number = rng() % (disk_sectors - total + 1);
        return r;
    }

    // Applies a completed request to the shadow disk (write) or checks it (read).
    void complete(unsigned slot, const x::blkif_request& r) {
        std::uint64_t sector = r.sector_number;
        for (unsigned s = 0; s < r.nr_segments; ++s) {
            const auto& g = r.seg[s];
            std::size_t len = (g.last_sect - g.first_sect + 1u) * 512;
            auto* page = data(slot, s) + g.first_sect * 512;
            auto* sh = shadow.data() + sector * 512;
            if (r.operation == x::blkif_op_write)
                std::memcpy(sh, page, len);
            else
                REQUIRE(std::memcmp(sh, page, len) == 0);
            sector += g.last_sect - g.first_sect + 1u;
        }
    }

    void push() {
        if (front.push_requests()) {
            ++front_notifies;
            REQUIRE(ev::send(guest.d(), fport) == 0);
        }
    }
    // Waits for at least one response (arming rsp_event), as blkfront's irq path would.
    void wait_responses(hv::fiber& self) {
        for (;;) {
            auto more = front.final_check_for_responses();
            REQUIRE(more.ok());
            if (*more) return;
            ++front_sleeps;
            while (!ev::test_and_clear_pending(guest.d(), fport)) self.yield();
        }
    }
};

void run_fibers(blk_world& w, void (*front_body)(hv::fiber&, void*)) {
    std::vector<char> sf(256 * 1024), sb(256 * 1024);
    hv::fiber ff, fb;
    ff.init(sf.data(), sf.size(), front_body, &w);
    fb.init(sb.data(), sb.size(), &x::blk_backend::run, &w.back);
    int rounds = 0;
    while (!ff.finished()) {
        ff.resume();
        if (!fb.finished()) fb.resume();
        REQUIRE(++rounds < 2'000'000);
    }
    w.back.stop();
    while (!fb.finished()) fb.resume();
}

} // namespace

TEST_CASE("blkback: random reads and writes through ring, grants and event channels") {
    blk_world w;
    run_fibers(w, [](hv::fiber& self, void* arg) {
        auto& w = *static_cast<blk_world*>(arg);
        x::blkif_request inflight[slots];
        bool busy[slots] = {};
        std::uint64_t next_id = 0, done = 0;
        const std::uint64_t total = 600;
        while (done < total) {
            for (unsigned s = 0; s < slots && next_id < total; ++s) {
                if (busy[s]) continue;
                inflight[s] = w.make(s, next_id * slots + s, w.rng() % 2);
                REQUIRE(w.front.put_request(inflight[s]));
                busy[s] = true;
                ++next_id;
                if (w.rng() % 3 == 0) w.push();
            }
            w.push();
            w.wait_responses(self);
            x::blkif_response rsp;
            while (w.front.take_response(rsp)) {
                unsigned s = static_cast<unsigned>(rsp.id % slots);
                REQUIRE(busy[s]);
                REQUIRE(rsp.id == inflight[s].id);
                REQUIRE(rsp.operation == inflight[s].operation);
                REQUIRE(rsp.status == x::blkif_rsp_okay);
                w.complete(s, inflight[s]);
                busy[s] = false;
                ++done;
            }
        }
    });
    CHECK(w.back.requests_served() == 600);
    CHECK(std::memcmp(w.disk.data(), w.shadow.data(), w.disk.size()) == 0);
    // Notifications are suppressed while the other side is busy.
    CHECK(w.front_notifies <= w.back.requests_served());
    CHECK(w.back.notifications_sent() <= w.front_sleeps + 1);
    CHECK(w.back.state() == x::backend_state::stopped);
    // Nothing is left pinned once requests completed.
    for (unsigned i = 0; i < slots * 11; ++i)
        CHECK((w.guest.d().gnttab.shared[data_ref + i].flags & (x::gtf_reading | x::gtf_writing)) == 0);
}

TEST_CASE("blkback: bad requests get error responses, the backend survives") {
    blk_world w;
    REQUIRE(x::gnt::guest::grant_access(w.gtab(), 100, 0, 70, true).ok()); // read-only page
    REQUIRE(x::gnt::guest::grant_access(w.gtab(), 101, 5, 71, false).ok()); // for another domain
    auto base = [&](std::uint64_t id) {
        x::blkif_request r{};
        r.operation = x::blkif_op_read;
        r.nr_segments = 1;
        r.id = id;
        r.seg[0] = {data_ref, 0, 7, 0};
        return r;
    };
    std::vector<std::pair<x::blkif_request, std::int16_t>> cases;
    auto add = [&](x::blkif_request r, std::int16_t st) { cases.push_back({r, st}); };
    auto r = base(1); r.nr_segments = 0; add(r, x::blkif_rsp_error);
    r = base(2); r.nr_segments = 12; add(r, x::blkif_rsp_error);
    r = base(3); r.nr_segments = 255; add(r, x::blkif_rsp_error);
    r = base(4); r.seg[0].first_sect = 5; r.seg[0].last_sect = 4; add(r, x::blkif_rsp_error);
    r = base(5); r.seg[0].last_sect = 8; add(r, x::blkif_rsp_error);
    r = base(6); r.sector_number = disk_sectors - 7; add(r, x::blkif_rsp_error);
    r = base(7); r.sector_number = ~0ull - 3; add(r, x::blkif_rsp_error);
    r = base(8); r.seg[0].gref = 4000; add(r, x::blkif_rsp_error);      // no such grant
    r = base(9); r.seg[0].gref = 100; add(r, x::blkif_rsp_error);       // read into a ro grant
    r = base(10); r.seg[0].gref = 101; add(r, x::blkif_rsp_error);      // granted to dom 5
    r = base(11); r.operation = x::blkif_op_discard; add(r, x::blkif_rsp_eopnotsupp);
    r = base(12); r.operation = 77; add(r, x::blkif_rsp_eopnotsupp);
    r = base(13); r.operation = x::blkif_op_flush_diskcache; add(r, x::blkif_rsp_okay);
    r = base(14); r.seg[0].gref = 100; r.operation = x::blkif_op_write; add(r, x::blkif_rsp_okay);
    r = base(15); r.sector_number = disk_sectors - 8; add(r, x::blkif_rsp_okay);
    for (auto& [req, st] : cases) REQUIRE(w.front.put_request(req));
    (void)w.front.push_requests();
    auto n = w.back.poll();
    REQUIRE(n.ok());
    CHECK(*n == cases.size());
    REQUIRE(w.front.unconsumed_responses().ok());
    for (auto& [req, st] : cases) {
        x::blkif_response rsp;
        REQUIRE(w.front.take_response(rsp));
        CAPTURE(rsp.id);
        CHECK(rsp.id == req.id);
        CHECK(rsp.status == st);
    }
    CHECK(w.back.state() == x::backend_state::connected);
}

TEST_CASE("blkback: a corrupted ring stops the backend, never loops") {
    blk_world w;
    auto* s = w.guest.plat.at<x::blkif_sring>(ring_gfn * 4096);
    s->hdr.req_prod = 1000;
    auto n = w.back.poll();
    CHECK(n.code() == hv::errc::overflow);
    CHECK(w.back.state() == x::backend_state::broken);
    CHECK(w.back.poll().code() == hv::errc::invalid_argument);
    // And as a fiber: it ends by itself.
    blk_world w2;
    w2.guest.plat.at<x::blkif_sring>(ring_gfn * 4096)->hdr.req_prod = 0x80000000u;
    REQUIRE(ev::send(w2.guest.d(), w2.fport) == 0);
    std::vector<char> stack(64 * 1024);
    hv::fiber fb;
    fb.init(stack.data(), stack.size(), &x::blk_backend::run, &w2.back);
    for (int i = 0; i < 10 && !fb.finished(); ++i) fb.resume();
    CHECK(fb.finished());
    CHECK(w2.back.state() == x::backend_state::broken);
    // Disconnect releases the ring grant so the guest may revoke it.
    w2.back.disconnect();
    CHECK(x::gnt::guest::end_access(w2.gtab(), ring_ref).ok());
}

TEST_CASE("blkback: connect validates its configuration") {
    x::domain_table t;
    fake::vm guest(t, 1, 1, 16);
    fake::vm hv(t, 0, 1, 0);
    std::vector<std::byte> disk(4096);
    x::blk_backend b;
    x::evtchn_alloc_unbound au{x::domid_self, 0, 0};
    REQUIRE(ev::alloc_unbound(guest.d(), au) == 0);
    CHECK(b.connect(hv.d(), {1, 3, au.port, disk, false}).code() == hv::errc::permission); // not granted
    std::span<x::grant_entry_v1> gt(guest.d().gnttab.shared, 512);
    REQUIRE(x::gnt::guest::grant_access(gt, 3, 0, 4, false).ok());
    CHECK(b.connect(hv.d(), {1, 3, 999, disk, false}).code() == hv::errc::invalid_argument); // bad port
    CHECK((guest.d().gnttab.shared[3].flags & x::gtf_reading) == 0); // ring mapping undone
    CHECK(b.connect(hv.d(), {1, 3, au.port, std::span(disk).first(100), false}).code() ==
          hv::errc::invalid_argument);
    CHECK(b.connect(hv.d(), {1, 3, au.port, disk, false}).ok());
}

TEST_CASE("console backend: output, input, notifications, corruption") {
    x::domain_table t;
    fake::vm guest(t, 1, 1, 16);
    fake::vm hv(t, 0, 1, 0);
    auto* intf = guest.plat.at<x::xencons_interface>(12 * 4096);
    x::evtchn_alloc_unbound au{x::domid_self, 0, 0};
    REQUIRE(ev::alloc_unbound(guest.d(), au) == 0);
    x::console_backend con;
    CHECK(con.connect(hv.d(), guest.d(), 4000, au.port).code() == hv::errc::invalid_argument);
    REQUIRE(con.connect(hv.d(), guest.d(), 12, au.port).ok());
    std::vector<char> stack(64 * 1024);
    hv::fiber fb;
    fb.init(stack.data(), stack.size(), &x::console_backend::run, &con);
    fb.resume();
    // The guest writes across the end of out[] and notifies.
    intf->out_cons = intf->out_prod = 2046;
    const char msg[] = "hello console\n";
    for (char c : std::string(msg)) intf->out[intf->out_prod++ % 2048] = c;
    REQUIRE(ev::send(guest.d(), au.port) == 0);
    fb.resume();
    CHECK(guest.plat.console_out == msg);
    CHECK(intf->out_cons == intf->out_prod);
    CHECK(ev::test_and_clear_pending(guest.d(), au.port)); // told the guest we consumed
    fb.resume();
    CHECK(guest.plat.console_out == msg); // nothing new: nothing written
    // Input: queued, then delivered into in[].
    CHECK(con.push_input("ls\n", 3) == 3);
    REQUIRE(ev::send(guest.d(), au.port) == 0); // wake it (a real scheduler would)
    fb.resume();
    CHECK(intf->in_prod == 3);
    CHECK(std::string(intf->in, 3) == "ls\n");
    CHECK(ev::test_and_clear_pending(guest.d(), au.port));
    // A corrupt producer index breaks the backend, and the fiber ends.
    intf->out_prod = intf->out_cons + 5000;
    REQUIRE(ev::send(guest.d(), au.port) == 0);
    fb.resume();
    CHECK(fb.finished());
    CHECK(con.state() == x::backend_state::broken);
}
