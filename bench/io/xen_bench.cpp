// Grant copy throughput, event channel send cost and hypercall dispatch overhead.
#include <benchmark/benchmark.h>
#include <cstring>
#include <span>
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "libhv/io/xen_hypercall.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;

namespace {

struct world {
    x::domain_table t;
    fake::vm front{t, 1, 1, 16};
    fake::vm back{t, 0, 1, 16};
    world() {
        std::span<x::grant_entry_v1> gt(front.d().gnttab.shared, 512);
        (void)x::gnt::guest::grant_access(gt, 1, 0, 5, false);
    }
};

// GNTTABOP_copy semantics, granted frame -> the copier's own frame.
void BM_grant_copy(benchmark::State& state) {
    world w;
    auto len = static_cast<std::uint16_t>(state.range(0));
    x::gnttab_copy op{};
    op.source.u.ref = 1;
    op.source.domid = 1;
    op.dest.u.gmfn = 6;
    op.dest.domid = x::domid_self;
    op.len = len;
    op.flags = x::gntcopy_source_gref;
    for (auto _ : state) {
        x::gnt::copy(w.back.d(), op);
        benchmark::DoNotOptimize(op.status);
    }
    if (op.status != x::gntst_okay) state.SkipWithError("copy failed");
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * len);
}

// The in-hypervisor backend path (what blkback uses per segment).
void BM_grant_copy_to_grant(benchmark::State& state) {
    world w;
    auto len = static_cast<std::uint16_t>(state.range(0));
    static unsigned char buf[4096];
    for (auto _ : state) {
        auto st = x::gnt::copy_to_grant(w.back.d(), 1, 1, 0, buf, len);
        benchmark::DoNotOptimize(st);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * len);
}

void BM_memcpy_baseline(benchmark::State& state) {
    static unsigned char a[4096], b[4096];
    auto len = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        std::memcpy(a, b, len);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(len));
}

std::pair<x::evtchn_port_t, x::evtchn_port_t> connect(world& w) {
    x::evtchn_alloc_unbound au{x::domid_self, 0, 0};
    (void)x::ev::alloc_unbound(w.front.d(), au);
    x::evtchn_bind_interdomain bi{1, 0, au.port, 0};
    (void)x::ev::bind_interdomain(w.back.d(), bi);
    return {au.port, bi.local_port};
}

// Every send is a new edge: the receiver acknowledges in between (2-level ABI).
void BM_evtchn_send_2level(benchmark::State& state) {
    world w;
    auto [fp, bp] = connect(w);
    auto* vi = w.front.d().shared()->vcpu;
    for (auto _ : state) {
        (void)x::ev::send(w.back.d(), bp);
        vi->evtchn_upcall_pending = 0;
        vi->evtchn_pending_sel = 0;
        (void)x::ev::test_and_clear_pending(w.front.d(), fp);
    }
}

// Sends while the event is still pending: the suppressed fast path.
void BM_evtchn_send_already_pending(benchmark::State& state) {
    world w;
    auto [fp, bp] = connect(w);
    (void)fp;
    for (auto _ : state) (void)x::ev::send(w.back.d(), bp);
}

void BM_evtchn_send_fifo(benchmark::State& state) {
    world w;
    auto [fp, bp] = connect(w);
    x::evtchn_init_control ic{10, 0, 0, 0, {}};
    (void)x::ev::init_control(w.front.d(), ic);
    (void)x::ev::expand_array(w.front.d(), x::evtchn_expand_array{11});
    auto* cb = w.front.plat.at<x::evtchn_fifo_control_block>(10 * 4096);
    auto* words = w.front.plat.at<std::uint32_t>(11 * 4096);
    for (auto _ : state) {
        (void)x::ev::send(w.back.d(), bp);
        // The guest consumes it: unlink, clear pending, clear READY.
        words[fp] &= ~(x::evtchn_fifo_linked | x::evtchn_fifo_pending | x::evtchn_fifo_link_mask);
        cb->ready = 0;
        w.front.d().shared()->vcpu[0].evtchn_upcall_pending = 0;
    }
}

void BM_hypercall_xen_version(benchmark::State& state) {
    world w;
    for (auto _ : state) {
        auto rc = x::dispatch_hypercall(w.front.d(), 0, w.front.mem, x::hypercall_args_64(17, 0, 0, 0, 0, 0));
        benchmark::DoNotOptimize(rc);
    }
}

void BM_hypercall_evtchn_send(benchmark::State& state) {
    world w;
    auto [fp, bp] = connect(w);
    (void)bp;
    std::memcpy(w.front.plat.at(0x1000), &fp, 4);
    for (auto _ : state) {
        auto rc = x::dispatch_hypercall(w.front.d(), 0, w.front.mem, x::hypercall_args_64(32, 4, 0x1000, 0, 0, 0));
        benchmark::DoNotOptimize(rc);
    }
}

} // namespace

BENCHMARK(BM_grant_copy)->Arg(64)->Arg(512)->Arg(4096);
BENCHMARK(BM_grant_copy_to_grant)->Arg(512)->Arg(4096);
BENCHMARK(BM_memcpy_baseline)->Arg(64)->Arg(512)->Arg(4096);
BENCHMARK(BM_evtchn_send_2level);
BENCHMARK(BM_evtchn_send_already_pending);
BENCHMARK(BM_evtchn_send_fifo);
BENCHMARK(BM_hypercall_xen_version);
BENCHMARK(BM_hypercall_evtchn_send);
