// libFuzzer harness: the ring consumer and the block backend behind it.
//
// Input = a ring page's contents (the frontend's side, entirely untrusted) followed by
// a script of index rewrites. Checks: no crash or sanitizer report, the consumer never
// takes more than the ring can hold, and the backend either serves or reports the ring
// broken, always in bounded time.
#include <cstdint>
#include <cstring>
#include <vector>
#include "libhv/io/ring.hpp"
#include "libhv/io/xen_backend.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;

namespace {

struct reader {
    const std::uint8_t* p;
    std::size_t n;
    template <class T>
    T take(T fallback = {}) {
        if (n < sizeof(T)) return fallback;
        T v;
        std::memcpy(&v, p, sizeof v);
        p += sizeof v;
        n -= sizeof v;
        return v;
    }
};

void generic_consumer(reader& in) {
    alignas(4096) static unsigned char page[4096];
    using R = hv::io::shared_ring<x::blkif_request, x::blkif_response>;
    std::memset(page, 0, sizeof page);
    std::size_t k = in.n < sizeof page ? in.n : sizeof page;
    std::memcpy(page, in.p, k);
    auto* s = reinterpret_cast<R*>(page);
    hv::io::back_ring<R> b(s, in.take<std::uint32_t>());
    for (int step = 0; step < 64 && in.n; ++step) {
        std::uint8_t op = in.take<std::uint8_t>();
        switch (op % 4) {
        case 0: s->hdr.req_prod = in.take<std::uint32_t>(); break;
        case 1: {
            auto n = b.unconsumed_requests();
            if (n && *n > R::size) __builtin_trap();
            x::blkif_request q;
            unsigned taken = 0;
            while (b.take_request(q)) ++taken;
            if (taken > R::size) __builtin_trap();
            break;
        }
        case 2: {
            unsigned put = 0;
            while (b.put_response(x::blkif_response{})) ++put;
            if (put > R::size) __builtin_trap();
            (void)b.push_responses();
            break;
        }
        case 3: (void)b.final_check_for_requests(); break;
        }
        // Outstanding work is always within one ring.
        if (b.req_cons() - b.rsp_prod_pvt() > R::size) __builtin_trap();
    }
}

void block_backend(reader& in) {
    x::domain_table t;
    fake::vm guest(t, 1, 1, 24);
    fake::vm hv(t, 0, 1, 0);
    static std::vector<std::byte> disk(64 * 512);
    std::span<x::grant_entry_v1> gt(guest.d().gnttab.shared, x::grant_entries_per_frame);
    // Ring at gfn 10, data pages 11..22 granted to the backend (some read-only).
    (void)x::gnt::guest::grant_access(gt, 1, 0, 10, false);
    for (unsigned i = 0; i < 12; ++i) (void)x::gnt::guest::grant_access(gt, 2 + i, 0, 11 + i, i % 3 == 0);
    auto* ring = guest.plat.at<unsigned char>(10 * 4096);
    std::size_t k = in.n < 4096 ? in.n : 4096;
    std::memcpy(ring, in.p, k);
    in.p += k;
    in.n -= k;
    x::evtchn_alloc_unbound au{x::domid_self, 0, 0};
    if (x::ev::alloc_unbound(guest.d(), au)) __builtin_trap();
    x::blk_backend b;
    if (!b.connect(hv.d(), {1, 1, au.port, disk, (in.take<std::uint8_t>() & 1) != 0}).ok()) __builtin_trap();
    auto* hdr = reinterpret_cast<hv::io::ring_header*>(ring);
    for (int step = 0; step < 16 && b.state() == x::backend_state::connected; ++step) {
        auto r = b.poll();
        if (!r && b.state() != x::backend_state::broken) __builtin_trap();
        if (r && *r > 4 * x::blkif_sring::size) __builtin_trap();
        hdr->req_prod = in.take<std::uint32_t>(hdr->req_prod);
        if (in.n >= 8) { // rewrite an entry, as a racing frontend might
            unsigned slot = in.take<std::uint8_t>() % x::blkif_sring::size;
            std::uint8_t* e = ring + 64 + slot * sizeof(x::blkif_sring::entry);
            std::size_t m = in.n < sizeof(x::blkif_request) ? in.n : sizeof(x::blkif_request);
            std::memcpy(e, in.p, m);
            in.p += m;
            in.n -= m;
        }
    }
    b.disconnect();
    // Whatever happened, no grant stays pinned.
    for (unsigned i = 0; i < 14; ++i)
        if (gt[i].flags & (x::gtf_reading | x::gtf_writing)) __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    reader in{data + 1, size - 1};
    if (data[0] & 1)
        generic_consumer(in);
    else
        block_backend(in);
    return 0;
}
