// Ring cost: libhv's ring vs Xen's io/ring.h macros vs boost::lockfree::spsc_queue.
// Both ends run in one thread, so this measures the operations themselves (stores,
// fences, index arithmetic, copies), not cache-line ping-pong between cores. Both
// Xen-layout rings use the same barrier primitives (see tests/unit/io/xen_public.hpp)
// and both consumers copy each entry out of the ring before use.
#include <benchmark/benchmark.h>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include "libhv/io/ring.hpp"
#include "libhv/io/xen_abi.hpp"
#include "tests/unit/io/xen_public.hpp"

namespace {
using hv_blk_ring = hv::io::shared_ring<hv::xen::blkif_request, hv::xen::blkif_response>;
constexpr unsigned ring_n = hv_blk_ring::size; // 32 for blkif, as in Xen

alignas(4096) unsigned char page_hv[8192];
alignas(4096) unsigned char page_xen[4096];

// Producers on both rings copy a whole 112-byte request into the slot (a template
// whose id/sector/gref change per request), and both backends write responses in place.
// (A zeroed temporary per request made GCC emit `rep stos`, whose startup cost varied
// with code placement and swamped the ring operations being measured.)
struct req_source {
    hv::xen::blkif_request tmpl{};
    req_source() {
        tmpl.operation = hv::xen::blkif_op_read;
        tmpl.nr_segments = 1;
        tmpl.seg[0].last_sect = 7;
    }
    const hv::xen::blkif_request& next(std::uint64_t i) {
        tmpl.id = i;
        tmpl.sector_number = i * 8;
        tmpl.seg[0].gref = static_cast<std::uint32_t>(i);
        return tmpl;
    }
};
template <class Rsp, class Req>
inline void fill_rsp(Rsp& p, const Req& q) {
    p.id = q.id;
    p.operation = q.operation;
    p.status = 0;
}

// One request, one response, both directions notified through the event indices.
void BM_roundtrip_libhv(benchmark::State& state) {
    auto* s = reinterpret_cast<hv_blk_ring*>(page_hv);
    hv::io::front_ring<hv_blk_ring> f;
    f.init(s);
    hv::io::back_ring<hv_blk_ring> b(s);
    req_source src;
    std::uint64_t i = 0, notifies = 0;
    for (auto _ : state) {
        (void)f.put_request(src.next(i));
        notifies += f.push_requests();
        hv::xen::blkif_request q;
        (void)b.unconsumed_requests();
        (void)b.take_request(q);
        (void)b.emplace_response([&](auto& p) { fill_rsp(p, q); });
        notifies += b.push_responses();
        (void)b.final_check_for_requests();
        hv::xen::blkif_response p;
        (void)f.unconsumed_responses();
        (void)f.take_response(p);
        (void)f.final_check_for_responses();
        benchmark::DoNotOptimize(p);
        ++i;
    }
    state.counters["notify/op"] = benchmark::Counter(double(notifies) / double(i ? i : 1));
}

void BM_roundtrip_xen_macros(benchmark::State& state) {
    auto* s = reinterpret_cast<blkif_sring_t*>(page_xen);
    blkif_front_ring_t f;
    blkif_back_ring_t b;
    SHARED_RING_INIT(s);
    FRONT_RING_INIT(&f, s, 4096);
    BACK_RING_INIT(&b, s, 4096);
    req_source src;
    std::uint64_t i = 0, notifies = 0;
    for (auto _ : state) {
        int notify, work;
        std::memcpy(RING_GET_REQUEST(&f, f.req_prod_pvt), &src.next(i), sizeof(blkif_request_t));
        f.req_prod_pvt++;
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
        notifies += notify;
        blkif_request_t q{};
        if (RING_HAS_UNCONSUMED_REQUESTS(&b)) {
            RING_COPY_REQUEST(&b, b.req_cons, &q);
            b.req_cons++;
        }
        fill_rsp(*RING_GET_RESPONSE(&b, b.rsp_prod_pvt), q);
        b.rsp_prod_pvt++;
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
        notifies += notify;
        RING_FINAL_CHECK_FOR_REQUESTS(&b, work);
        blkif_response_t p;
        if (RING_HAS_UNCONSUMED_RESPONSES(&f)) {
            RING_COPY_RESPONSE(&f, f.rsp_cons, &p);
            f.rsp_cons++;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(&f, work);
        benchmark::DoNotOptimize(p);
        benchmark::DoNotOptimize(work);
        ++i;
    }
    state.counters["notify/op"] = benchmark::Counter(double(notifies) / double(i ? i : 1));
}

void BM_roundtrip_spsc_queue(benchmark::State& state) {
    boost::lockfree::spsc_queue<hv::xen::blkif_request, boost::lockfree::capacity<ring_n>> reqs;
    boost::lockfree::spsc_queue<hv::xen::blkif_response, boost::lockfree::capacity<ring_n>> rsps;
    req_source src;
    std::uint64_t i = 0;
    for (auto _ : state) {
        reqs.push(src.next(i));
        hv::xen::blkif_request q{};
        reqs.pop(q);
        rsps.push(hv::xen::blkif_response{q.id, q.operation, 0, 0, 0});
        hv::xen::blkif_response p;
        rsps.pop(p);
        benchmark::DoNotOptimize(p);
        ++i;
    }
}

// A full ring of requests, then a full ring of responses, one push per batch.
void BM_batch_libhv(benchmark::State& state) {
    auto* s = reinterpret_cast<hv_blk_ring*>(page_hv);
    hv::io::front_ring<hv_blk_ring> f;
    f.init(s);
    hv::io::back_ring<hv_blk_ring> b(s);
    req_source src;
    std::uint64_t i = 0;
    for (auto _ : state) {
        for (unsigned k = 0; k < ring_n; ++k)
            (void)f.put_request(src.next(i + k));
        (void)f.push_requests();
        auto n = b.unconsumed_requests();
        hv::xen::blkif_request q;
        while (b.take_request(q)) (void)b.emplace_response([&](auto& p) { fill_rsp(p, q); });
        (void)b.push_responses();
        (void)b.final_check_for_requests();
        (void)f.unconsumed_responses();
        hv::xen::blkif_response p;
        std::uint64_t sum = 0;
        while (f.take_response(p)) sum += p.id;
        (void)f.final_check_for_responses();
        benchmark::DoNotOptimize(sum);
        benchmark::DoNotOptimize(n);
        i += ring_n;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

void BM_batch_xen_macros(benchmark::State& state) {
    auto* s = reinterpret_cast<blkif_sring_t*>(page_xen);
    blkif_front_ring_t f;
    blkif_back_ring_t b;
    SHARED_RING_INIT(s);
    FRONT_RING_INIT(&f, s, 4096);
    BACK_RING_INIT(&b, s, 4096);
    req_source src;
    std::uint64_t i = 0;
    for (auto _ : state) {
        int notify, work;
        for (unsigned k = 0; k < ring_n && !RING_FULL(&f); ++k) {
            std::memcpy(RING_GET_REQUEST(&f, f.req_prod_pvt), &src.next(i + k), sizeof(blkif_request_t));
            f.req_prod_pvt++;
        }
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
        blkif_request_t q{};
        while (RING_HAS_UNCONSUMED_REQUESTS(&b)) {
            RING_COPY_REQUEST(&b, b.req_cons, &q);
            b.req_cons++;
            fill_rsp(*RING_GET_RESPONSE(&b, b.rsp_prod_pvt), q);
            b.rsp_prod_pvt++;
        }
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
        RING_FINAL_CHECK_FOR_REQUESTS(&b, work);
        blkif_response_t p;
        std::uint64_t sum = 0;
        while (RING_HAS_UNCONSUMED_RESPONSES(&f)) {
            RING_COPY_RESPONSE(&f, f.rsp_cons, &p);
            f.rsp_cons++;
            sum += p.id;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(&f, work);
        benchmark::DoNotOptimize(sum);
        benchmark::DoNotOptimize(notify);
        i += ring_n;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

void BM_batch_spsc_queue(benchmark::State& state) {
    boost::lockfree::spsc_queue<hv::xen::blkif_request, boost::lockfree::capacity<ring_n>> reqs;
    boost::lockfree::spsc_queue<hv::xen::blkif_response, boost::lockfree::capacity<ring_n>> rsps;
    req_source src;
    std::uint64_t i = 0;
    for (auto _ : state) {
        for (unsigned k = 0; k < ring_n; ++k) reqs.push(src.next(i + k));
        hv::xen::blkif_request q{};
        while (reqs.pop(q)) rsps.push(hv::xen::blkif_response{q.id, q.operation, 0, 0, 0});
        hv::xen::blkif_response p;
        std::uint64_t sum = 0;
        while (rsps.pop(p)) sum += p.id;
        benchmark::DoNotOptimize(sum);
        i += ring_n;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

} // namespace

BENCHMARK(BM_roundtrip_libhv);
BENCHMARK(BM_roundtrip_xen_macros);
BENCHMARK(BM_roundtrip_spsc_queue);
BENCHMARK(BM_batch_libhv);
BENCHMARK(BM_batch_xen_macros);
BENCHMARK(BM_batch_spsc_queue);
