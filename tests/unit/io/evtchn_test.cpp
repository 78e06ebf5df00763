// Event channels: binding, errors, and delivery through the 2-level and FIFO ABIs.
#include <doctest/doctest.h>
#include <random>
#include <vector>
#include "libhv/io/xen_evtchn.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;
namespace ev = hv::xen::ev;

namespace {

struct pair_fixture {
    x::domain_table t;
    fake::vm a{t, 1};
    fake::vm b{t, 2};

    // a allocates an unbound port for b, b binds to it: returns {a_port, b_port}.
    std::pair<x::evtchn_port_t, x::evtchn_port_t> connect() {
        x::evtchn_alloc_unbound au{x::domid_self, 2, 0};
        REQUIRE(ev::alloc_unbound(a.d(), au) == 0);
        x::evtchn_bind_interdomain bi{1, 0, au.port, 0};
        REQUIRE(ev::bind_interdomain(b.d(), bi) == 0);
        return {au.port, bi.local_port};
    }
};

bool pending_2l(x::domain& d, x::evtchn_port_t p) {
    return d.shared()->evtchn_pending[p / 64] >> (p % 64) & 1;
}

} // namespace

TEST_CASE("evtchn: unbound -> interdomain -> close, with status at each step") {
    pair_fixture f;
    auto [pa, pb] = f.connect();
    CHECK(pa != 0);
    CHECK(pb != 0);
    x::evtchn_status s{x::domid_self, 0, pa, 0, 0, {}};
    REQUIRE(ev::get_status(f.a.d(), s) == 0);
    CHECK(s.status == x::evtchnstat_interdomain);
    CHECK(s.u.interdomain.dom == 2);
    CHECK(s.u.interdomain.port == pb);
    // Binding always leaves the new local port pending (the peer may have signalled).
    CHECK(pending_2l(f.b.d(), pb));
    // Closing one end returns the other to unbound, ready for a new peer.
    REQUIRE(ev::close(f.b.d(), pb) == 0);
    REQUIRE(ev::get_status(f.a.d(), s) == 0);
    CHECK(s.status == x::evtchnstat_unbound);
    CHECK(s.u.unbound.dom == 2);
    CHECK_FALSE(pending_2l(f.b.d(), pb)); // closing clears pending
    x::evtchn_bind_interdomain again{1, 0, pa, 0};
    CHECK(ev::bind_interdomain(f.b.d(), again) == 0);
    s.port = pb;
    CHECK(ev::get_status(f.b.d(), s) == 0);
    CHECK(s.status == x::evtchnstat_interdomain);
}

TEST_CASE("evtchn: error codes") {
    pair_fixture f;
    x::domain& a = f.a.d();
    x::evtchn_alloc_unbound au{2, 1, 0}; // naming another domain: not privileged
    CHECK(ev::alloc_unbound(a, au) == -x::err::eperm);
    au.dom = 77;
    CHECK(ev::alloc_unbound(a, au) == -x::err::esrch);
    au = {x::domid_self, 3, 0}; // unbound for dom 3 (need not exist yet)
    REQUIRE(ev::alloc_unbound(a, au) == 0);
    x::evtchn_bind_interdomain bi{1, 0, au.port, 0};
    CHECK(ev::bind_interdomain(f.b.d(), bi) == -x::err::einval); // offered to dom 3, not 2
    bi = {99, 0, au.port, 0};
    CHECK(ev::bind_interdomain(f.b.d(), bi) == -x::err::esrch);
    bi = {1, 0, 0, 0};
    CHECK(ev::bind_interdomain(f.b.d(), bi) == -x::err::einval);
    bi = {1, 0, 0xffffffffu, 0};
    CHECK(ev::bind_interdomain(f.b.d(), bi) == -x::err::einval);
    CHECK(ev::send(a, 0) == -x::err::einval);
    CHECK(ev::send(a, 5000) == -x::err::einval);
    CHECK(ev::send(a, 500) == -x::err::einval); // closed
    CHECK(ev::send(a, au.port) == 0);          // unbound: silently dropped
    CHECK(ev::close(a, 500) == -x::err::einval);
    CHECK(ev::close(a, au.port) == 0);
    CHECK(ev::close(a, au.port) == -x::err::einval);
    x::evtchn_bind_virq bv{x::nr_virqs, 0, 0};
    CHECK(ev::bind_virq(a, bv) == -x::err::einval);
    bv = {x::virq_timer, 9, 0};
    CHECK(ev::bind_virq(a, bv) == -x::err::enoent);
    bv = {x::virq_console, 1, 0}; // global VIRQs bind on vCPU 0
    CHECK(ev::bind_virq(a, bv) == -x::err::einval);
    bv = {x::virq_timer, 1, 0};
    CHECK(ev::bind_virq(a, bv) == 0);
    CHECK(ev::bind_virq(a, bv) == -x::err::eexist);
    x::evtchn_bind_ipi bp{5, 0};
    CHECK(ev::bind_ipi(a, bp) == -x::err::enoent);
    x::evtchn_status s{x::domid_self, 0, 0, 0, 0, {}};
    CHECK(ev::get_status(a, s) == -x::err::einval);
    s = {2, 0, 1, 0, 0, {}};
    CHECK(ev::get_status(a, s) == -x::err::eperm);
    x::evtchn_set_priority sp{bv.port, 3};
    CHECK(ev::set_priority(a, sp) == -x::err::enosys); // 2-level has no priorities
    CHECK(ev::expand_array(a, x::evtchn_expand_array{1}) == -x::err::eopnotsupp);
    CHECK(ev::unmask(a, 0) == -x::err::einval);
}

TEST_CASE("evtchn: ports run out cleanly") {
    pair_fixture f;
    unsigned n = 0;
    for (;;) {
        x::evtchn_bind_ipi b{0, 0};
        int rc = ev::bind_ipi(f.a.d(), b);
        if (rc) {
            CHECK(rc == -x::err::enospc);
            break;
        }
        REQUIRE(++n < 100000);
    }
    CHECK(n == x::max_evtchn_ports - 1); // port 0 is never handed out
}

TEST_CASE("evtchn 2-level: pending, selector, upcall, exactly one callback per edge") {
    pair_fixture f;
    auto [pa, pb] = f.connect();
    x::domain& b = f.b.d();
    x::vcpu_info& vi = b.shared()->vcpu[0];
    // Consume the "pending on bind" event as a guest would.
    vi.evtchn_upcall_pending = 0;
    vi.evtchn_pending_sel = 0;
    CHECK(ev::test_and_clear_pending(b, pb));
    f.b.plat.callbacks.clear();

    REQUIRE(ev::send(f.a.d(), pa) == 0);
    CHECK(pending_2l(b, pb));
    CHECK(vi.evtchn_pending_sel == (1ull << (pb / 64)));
    CHECK(vi.evtchn_upcall_pending == 1);
    CHECK(f.b.plat.callbacks[0] == 1);
    // More sends while the guest has not acknowledged: no new edge, no new callback.
    REQUIRE(ev::send(f.a.d(), pa) == 0);
    REQUIRE(ev::send(f.a.d(), pa) == 0);
    CHECK(f.b.plat.callbacks[0] == 1);

    SUBCASE("masked port: pending without upcall, unmask redelivers") {
        vi.evtchn_upcall_pending = 0;
        vi.evtchn_pending_sel = 0;
        REQUIRE(ev::test_and_clear_pending(b, pb));
        b.shared()->evtchn_mask[pb / 64] |= 1ull << (pb % 64);
        REQUIRE(ev::send(f.a.d(), pa) == 0);
        CHECK(pending_2l(b, pb));
        CHECK(vi.evtchn_upcall_pending == 0);
        CHECK(f.b.plat.callbacks[0] == 1);
        REQUIRE(ev::unmask(b, pb) == 0);
        CHECK(vi.evtchn_upcall_pending == 1);
        CHECK(vi.evtchn_pending_sel != 0);
        CHECK(f.b.plat.callbacks[0] == 2);
    }
    SUBCASE("bind_vcpu moves delivery") {
        vi.evtchn_upcall_pending = 0;
        vi.evtchn_pending_sel = 0;
        REQUIRE(ev::test_and_clear_pending(b, pb));
        REQUIRE(ev::bind_vcpu(b, x::evtchn_bind_vcpu{pb, 1}) == 0);
        REQUIRE(ev::send(f.a.d(), pa) == 0);
        CHECK(b.shared()->vcpu[1].evtchn_upcall_pending == 1);
        CHECK(vi.evtchn_upcall_pending == 0);
        CHECK(f.b.plat.callbacks[1] == 1);
    }
}

TEST_CASE("evtchn: IPI and VIRQ deliver to their vCPU; callback vector as configured") {
    x::domain_table t;
    fake::vm a(t, 1, 4);
    x::domain& d = a.d();
    d.set_hvm_param(x::hvm_param_callback_irq, x::hvm_callback_type_vector << 56 | 0xf3);
    x::evtchn_bind_ipi ipi{3, 0};
    REQUIRE(ev::bind_ipi(d, ipi) == 0);
    REQUIRE(ev::send(d, ipi.port) == 0);
    CHECK(d.shared()->vcpu[3].evtchn_upcall_pending == 1);
    CHECK(a.plat.callbacks[3] == 1);
    CHECK(a.plat.last_vector == 0xf3);
    CHECK(d.pending_callback_vector(3) == 0xf3);
    CHECK(d.pending_callback_vector(2) == 0);
    x::evtchn_bind_virq v{x::virq_timer, 2, 0};
    REQUIRE(ev::bind_virq(d, v) == 0);
    d.timer_expired(2);
    CHECK(d.shared()->vcpu[2].evtchn_upcall_pending == 1);
    CHECK(ev::is_pending(d, v.port));
    d.timer_expired(1); // nothing bound there: nothing happens
    CHECK(d.shared()->vcpu[1].evtchn_upcall_pending == 0);
    REQUIRE(ev::close(d, v.port) == 0);
    x::evtchn_bind_virq again{x::virq_timer, 2, 0}; // closing frees the VIRQ slot
    CHECK(ev::bind_virq(d, again) == 0);
    CHECK(ev::send(d, again.port) == -x::err::einval); // VIRQs are not sent by guests
}

// ---- FIFO ----------------------------------------------------------------------------------

namespace {

// The guest half of the FIFO ABI, as a Linux-style consumer does it: take READY, walk
// each queue from HEAD via LINK, unlinking and clearing PENDING as it goes.
struct fifo_guest {
    x::evtchn_fifo_control_block* cb;
    std::uint32_t* words;
    std::uint32_t head[x::evtchn_fifo_max_queues] = {};

    std::uint32_t unlink(x::evtchn_port_t p) {
        std::uint32_t w = __atomic_load_n(&words[p], __ATOMIC_SEQ_CST);
        for (;;) {
            std::uint32_t nw = w & ~(x::evtchn_fifo_linked | x::evtchn_fifo_link_mask);
            if (__atomic_compare_exchange_n(&words[p], &w, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
                return w & x::evtchn_fifo_link_mask;
        }
    }
    // Returns the ports handled, in order.
    std::vector<x::evtchn_port_t> drain() {
        std::vector<x::evtchn_port_t> out;
        std::uint32_t ready = __atomic_exchange_n(&cb->ready, 0u, __ATOMIC_SEQ_CST);
        while (ready) {
            unsigned q = static_cast<unsigned>(__builtin_ctz(ready));
            x::evtchn_port_t p = head[q];
            if (!p) p = __atomic_load_n(&cb->head[q], __ATOMIC_SEQ_CST);
            std::uint32_t next = unlink(p);
            if (!next) ready &= ~(1u << q);
            std::uint32_t w = __atomic_fetch_and(&words[p], ~x::evtchn_fifo_pending, __ATOMIC_SEQ_CST);
            if ((w & x::evtchn_fifo_pending) && !(w & x::evtchn_fifo_masked)) out.push_back(p);
            head[q] = next;
            ready |= __atomic_exchange_n(&cb->ready, 0u, __ATOMIC_SEQ_CST);
        }
        return out;
    }
};

struct fifo_fixture {
    x::domain_table t;
    fake::vm a{t, 1};
    fifo_guest g{};
    fifo_fixture() {
        x::evtchn_init_control ic{10, 64, 0, 0, {}};
        REQUIRE(ev::init_control(a.d(), ic) == 0);
        CHECK(ic.link_bits == x::evtchn_fifo_link_bits);
        REQUIRE(ev::expand_array(a.d(), x::evtchn_expand_array{11}) == 0);
        g.cb = a.plat.at<x::evtchn_fifo_control_block>(10 * 4096 + 64);
        g.words = a.plat.at<std::uint32_t>(11 * 4096);
    }
    x::evtchn_port_t ipi(std::uint32_t vcpu = 0) {
        x::evtchn_bind_ipi b{vcpu, 0};
        REQUIRE(ev::bind_ipi(a.d(), b) == 0);
        return b.port;
    }
};

} // namespace

TEST_CASE("evtchn FIFO: init_control and expand_array validation") {
    x::domain_table t;
    fake::vm a(t, 1, 2, 16);
    x::domain& d = a.d();
    x::evtchn_init_control ic{3, 4096 - 64, 0, 0, {}}; // control block would cross the page
    CHECK(ev::init_control(d, ic) == -x::err::einval);
    ic = {3, 4, 0, 0, {}}; // misaligned
    CHECK(ev::init_control(d, ic) == -x::err::einval);
    ic = {999, 0, 0, 0, {}}; // not RAM
    CHECK(ev::init_control(d, ic) == -x::err::einval);
    ic = {3, 0, 7, 0, {}};
    CHECK(ev::init_control(d, ic) == -x::err::enoent);
    ic = {3, 0, 0, 0, {}};
    CHECK(ev::init_control(d, ic) == 0);
    CHECK(ev::init_control(d, ic) == -x::err::einval); // once per vCPU
    CHECK(d.abi == x::evtchn_abi::fifo);
    CHECK(ev::expand_array(d, x::evtchn_expand_array{12345}) == -x::err::einval);
    CHECK(ev::expand_array(d, x::evtchn_expand_array{4}) == 0);
    CHECK(ev::expand_array(d, x::evtchn_expand_array{5}) == -x::err::enospc);
    CHECK(ev::set_priority(d, x::evtchn_set_priority{1, 3}) == -x::err::einval); // port closed
}

TEST_CASE("evtchn FIFO: queueing, READY, HEAD and LINK") {
    fifo_fixture f;
    x::domain& d = f.a.d();
    auto p1 = f.ipi(), p2 = f.ipi(), p3 = f.ipi();
    REQUIRE(ev::send(d, p1) == 0);
    CHECK((f.g.words[p1] & x::evtchn_fifo_pending) != 0);
    CHECK((f.g.words[p1] & x::evtchn_fifo_linked) != 0);
    CHECK(f.g.cb->head[x::evtchn_fifo_priority_default] == p1);
    CHECK(f.g.cb->ready == 1u << x::evtchn_fifo_priority_default);
    CHECK(d.shared()->vcpu[0].evtchn_upcall_pending == 1);
    CHECK(f.a.plat.callbacks[0] == 1);
    REQUIRE(ev::send(d, p2) == 0);
    REQUIRE(ev::send(d, p3) == 0);
    REQUIRE(ev::send(d, p2) == 0); // already linked: no second link
    CHECK((f.g.words[p1] & x::evtchn_fifo_link_mask) == p2);
    CHECK((f.g.words[p2] & x::evtchn_fifo_link_mask) == p3);
    CHECK(f.a.plat.callbacks[0] == 1); // READY was already set
    CHECK(f.g.drain() == std::vector<x::evtchn_port_t>{p1, p2, p3});
    for (auto p : {p1, p2, p3}) {
        std::uint32_t w = f.g.words[p] & (x::evtchn_fifo_pending | x::evtchn_fifo_linked);
        CHECK(w == 0);
    }

    // After the queue drained, the next event becomes the new HEAD.
    d.shared()->vcpu[0].evtchn_upcall_pending = 0;
    REQUIRE(ev::send(d, p3) == 0);
    CHECK(f.g.cb->head[x::evtchn_fifo_priority_default] == p3);
    CHECK(f.a.plat.callbacks[0] == 2);
    CHECK(f.g.drain() == std::vector<x::evtchn_port_t>{p3});
}

TEST_CASE("evtchn FIFO: priorities, masking, unmask, early events") {
    fifo_fixture f;
    x::domain& d = f.a.d();
    auto lo = f.ipi(), hi = f.ipi(), m = f.ipi();
    REQUIRE(ev::set_priority(d, x::evtchn_set_priority{hi, 2}) == 0);
    CHECK(ev::set_priority(d, x::evtchn_set_priority{hi, 16}) == -x::err::einval);
    REQUIRE(ev::send(d, lo) == 0);
    REQUIRE(ev::send(d, hi) == 0);
    CHECK(f.g.cb->ready == ((1u << 2) | (1u << 7)));
    CHECK(f.g.drain() == std::vector<x::evtchn_port_t>{hi, lo}); // higher priority first

    f.g.words[m] |= x::evtchn_fifo_masked; // the guest masks
    REQUIRE(ev::send(d, m) == 0);
    CHECK((f.g.words[m] & x::evtchn_fifo_pending) != 0);
    CHECK((f.g.words[m] & x::evtchn_fifo_linked) == 0);
    CHECK(f.g.cb->ready == 0);
    REQUIRE(ev::unmask(d, m) == 0);
    CHECK((f.g.words[m] & x::evtchn_fifo_linked) != 0);
    CHECK(f.g.drain() == std::vector<x::evtchn_port_t>{m});

    // Ports above the event array: pending is remembered and delivered on expansion.
    x::domain_table t2;
    fake::vm b(t2, 1);
    x::evtchn_bind_ipi bi{0, 0};
    REQUIRE(ev::bind_ipi(b.d(), bi) == 0);
    x::evtchn_init_control ic{10, 0, 0, 0, {}};
    REQUIRE(ev::init_control(b.d(), ic) == 0);
    REQUIRE(ev::send(b.d(), bi.port) == 0);
    CHECK(ev::is_pending(b.d(), bi.port));
    CHECK(b.plat.callbacks[0] == 0);
    REQUIRE(ev::expand_array(b.d(), x::evtchn_expand_array{11}) == 0);
    CHECK(b.plat.callbacks[0] == 1);
    fifo_guest g2{b.plat.at<x::evtchn_fifo_control_block>(10 * 4096), b.plat.at<std::uint32_t>(11 * 4096)};
    CHECK(g2.drain() == std::vector<x::evtchn_port_t>{bi.port});
}

TEST_CASE("evtchn FIFO: a vCPU without a control block gets its events once it has one") {
    fifo_fixture f; // vCPU 0 initialised, vCPU 1 not
    x::domain& d = f.a.d();
    auto p = f.ipi(1);
    REQUIRE(ev::send(d, p) == 0);
    CHECK((f.g.words[p] & x::evtchn_fifo_pending) != 0);
    CHECK((f.g.words[p] & x::evtchn_fifo_linked) == 0);
    CHECK(f.a.plat.callbacks[1] == 0);
    x::evtchn_init_control ic{12, 0, 1, 0, {}};
    REQUIRE(ev::init_control(d, ic) == 0);
    CHECK(f.a.plat.callbacks[1] == 1);
    fifo_guest g1{f.a.plat.at<x::evtchn_fifo_control_block>(12 * 4096), f.g.words};
    CHECK(g1.drain() == std::vector<x::evtchn_port_t>{p});
}

TEST_CASE("evtchn FIFO: randomized sends and drains lose nothing (seeded)") {
    fifo_fixture f;
    x::domain& d = f.a.d();
    std::vector<x::evtchn_port_t> ports;
    for (int i = 0; i < 40; ++i) ports.push_back(f.ipi());
    std::mt19937 rng(2024);
    for (auto p : ports) REQUIRE(ev::set_priority(d, x::evtchn_set_priority{p, static_cast<std::uint32_t>(rng() % 16)}) == 0);
    std::map<x::evtchn_port_t, int> outstanding;
    for (int round = 0; round < 2000; ++round) {
        if (rng() % 3) {
            auto p = ports[rng() % ports.size()];
            REQUIRE(ev::send(d, p) == 0);
            outstanding[p] = 1;
        } else {
            for (auto p : f.g.drain()) {
                CHECK(outstanding.count(p));
                outstanding.erase(p);
            }
        }
    }
    for (auto p : f.g.drain()) outstanding.erase(p);
    CHECK(outstanding.empty());
}
