// Split request/response ring in one shared page, byte-compatible with the ring of
// Xen's public io/ring.h, so a Linux (or any Xen) frontend or backend can sit on the
// other side.
//
// Page layout (all indices are free-running 32-bit counters; slot = idx & (size-1)):
//
//   offset  field       written by  meaning
//   0x00    req_prod    front       requests [0, req_prod) are published
//   0x04    req_event   back        "notify me when req_prod passes req_event - 1"
//   0x08    rsp_prod    back        responses [0, rsp_prod) are published
//   0x0c    rsp_event   front       "notify me when rsp_prod passes rsp_event - 1"
//   0x10    pvt[4]      protocol    private bytes (netif smartpoll, ...)
//   0x14    pad[44]     -           zero
//   0x40    entry[size] both        union { Req; Rsp }, size = 2^k entries that fit
//
// A slot holds a request, then (after the backend consumed it) that request's
// response. The backend never has more than `size` requests outstanding:
//
//            rsp_cons   rsp_prod    req_cons     req_prod
//   front:       |..........|           |            |
//                v          v           v            v
//   ----+--------+----------+-----------+------------+--------------+----
//       | free   | rsp      | in flight | requests   | free slots   |
//       |        | unread   | (backend) | unconsumed |              |
//   ----+--------+----------+-----------+------------+--------------+----
//                ^                                   ^
//                +------------ at most size ---------+
//
// Notification suppression (event indices): a consumer that runs out of work writes
// `event = cons + 1` and re-checks; a producer that moved prod from `old` to `new`
// notifies iff the event index lies in (old, new], i.e.
//
//       (RING_IDX)(new - event) < (RING_IDX)(new - old)
//
// so it signals exactly when it crossed the index a sleeping consumer armed. The full
// fence between "store prod" and "load event" (producer) and between "store event" and
// "re-load prod" (consumer) is what rules out a lost wake-up.
//
// Trust: each side trusts only its own private indices. Everything read from the page
// is read once and validated: a producer index that claims more entries than can
// exist is reported as errc::overflow (never looped over), and entries are handed out
// only as private copies.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include "libhv/core/result.hpp"
#include "libhv/io/shared_mem.hpp"

namespace hv::io {

using ring_idx = std::uint32_t;

struct ring_header {
    ring_idx req_prod;   // [front]
    ring_idx req_event;  // [back]
    ring_idx rsp_prod;   // [back]
    ring_idx rsp_event;  // [front]
    std::uint8_t pvt[4]; // protocol-specific
    std::uint8_t pad[44];
};
static_assert(sizeof(ring_header) == 64);
static_assert(offsetof(ring_header, req_prod) == 0x00);
static_assert(offsetof(ring_header, req_event) == 0x04);
static_assert(offsetof(ring_header, rsp_prod) == 0x08);
static_assert(offsetof(ring_header, rsp_event) == 0x0c);
static_assert(offsetof(ring_header, pvt) == 0x10);

// Number of entries: the largest power of two whose entries fit after the header.
constexpr ring_idx ring_entries(std::size_t bytes, std::size_t entry_size) {
    return bytes <= sizeof(ring_header) ? 0
        : static_cast<ring_idx>(std::bit_floor((bytes - sizeof(ring_header)) / entry_size));
}

// The shared page itself. Never constructed: it is laid over memory shared with the
// other end. `Bytes` is the size of the shared area (one 4 KiB page by default, or a
// multi-page ring).
template <class Req, class Rsp, std::size_t Bytes = 4096>
struct shared_ring {
    static_assert(std::is_trivially_copyable_v<Req> && std::is_trivially_copyable_v<Rsp>);
    union entry {
        Req req;
        Rsp rsp;
    };
    static constexpr ring_idx size = ring_entries(Bytes, sizeof(entry));
    static_assert(size >= 1, "ring area too small for one entry");
    static_assert(sizeof(ring_header) + size * sizeof(entry) <= Bytes);

    ring_header hdr;
    entry ring[size];

    // Front end's job before advertising the page: empty ring, both event indices 1
    // ("notify on the first entry").
    void init() {
        store_relaxed(&hdr.req_prod, 0u);
        store_relaxed(&hdr.rsp_prod, 0u);
        store_relaxed(&hdr.req_event, 1u);
        store_relaxed(&hdr.rsp_event, 1u);
        __builtin_memset(hdr.pvt, 0, sizeof hdr.pvt);
        __builtin_memset(hdr.pad, 0, sizeof hdr.pad);
    }
};

// The requesting side (a frontend driver).
template <class Ring>
class front_ring {
public:
    using req_type = decltype(Ring::entry::req);
    using rsp_type = decltype(Ring::entry::rsp);
    static constexpr ring_idx size = Ring::size;

    front_ring() = default;
    explicit front_ring(Ring* s, ring_idx start = 0) { attach(s, start); }

    // Attach to a ring whose indices are already at `start` (both sides quiescent).
    void attach(Ring* s, ring_idx start = 0) {
        sring_ = s;
        req_prod_pvt_ = start;
        rsp_cons_ = start;
        rsp_limit_ = start;
    }
    // Initialise the shared page and attach at index 0.
    void init(Ring* s) {
        s->init();
        attach(s, 0);
    }

    [[nodiscard]] Ring* shared() const { return sring_; }
    [[nodiscard]] ring_idx req_prod_pvt() const { return req_prod_pvt_; }
    [[nodiscard]] ring_idx rsp_cons() const { return rsp_cons_; }

    // Slots not holding an outstanding request or an unread response.
    [[nodiscard]] ring_idx free_requests() const { return size - (req_prod_pvt_ - rsp_cons_); }
    [[nodiscard]] bool full() const { return free_requests() == 0; }

    // Queues a request privately; the backend sees it only after push_requests().
    [[nodiscard]] bool put_request(const req_type& r) {
        if (full()) return false;
        copy_to_shared(&sring_->ring[req_prod_pvt_ & (size - 1)].req, r);
        ++req_prod_pvt_;
        return true;
    }

    // Fills the next request in place (the slot is private until push_requests()):
    // `fill(req_type&)` writes the fields, as a Xen driver does through RING_GET_REQUEST.
    template <class F>
    [[nodiscard]] bool emplace_request(F&& fill) {
        if (full()) return false;
        fill(sring_->ring[req_prod_pvt_ & (size - 1)].req);
        ++req_prod_pvt_;
        return true;
    }

    // Publishes queued requests. Returns true iff the backend asked to be notified.
    [[nodiscard]] bool push_requests() {
        ring_idx old = load_relaxed(&sring_->hdr.req_prod);
        ring_idx now = req_prod_pvt_;
        store_release(&sring_->hdr.req_prod, now); // entries before index
        full_fence();                              // index before reading req_event
        ring_idx event = load_relaxed(&sring_->hdr.req_event);
        return static_cast<ring_idx>(now - event) < static_cast<ring_idx>(now - old);
    }

    // Responses published and not yet taken. A backend claiming more responses than
    // there are outstanding requests is misbehaving: errc::overflow, nothing consumed.
    [[nodiscard]] result<ring_idx> unconsumed_responses() {
        ring_idx prod = load_acquire(&sring_->hdr.rsp_prod);
        ring_idx n = prod - rsp_cons_;
        if (n > req_prod_pvt_ - rsp_cons_)
            return fail(errc::overflow, "ring: response producer beyond outstanding requests");
        rsp_limit_ = prod;
        return n;
    }

    // Copies out the next validated response (see unconsumed_responses).
    [[nodiscard]] bool take_response(rsp_type& out) {
        if (rsp_cons_ == rsp_limit_) return false;
        copy_from_shared(out, &sring_->ring[rsp_cons_ & (size - 1)].rsp);
        ++rsp_cons_;
        return true;
    }

    // Before sleeping: arm rsp_event and re-check. true = more responses arrived.
    [[nodiscard]] result<bool> final_check_for_responses() {
        auto n = unconsumed_responses();
        if (!n) return n.err();
        if (*n) return true;
        store_relaxed(&sring_->hdr.rsp_event, rsp_cons_ + 1);
        full_fence();
        n = unconsumed_responses();
        if (!n) return n.err();
        return *n != 0;
    }

private:
    Ring* sring_ = nullptr;
    ring_idx req_prod_pvt_ = 0;
    ring_idx rsp_cons_ = 0;
    ring_idx rsp_limit_ = 0; // responses below this were validated by unconsumed_responses
};

// The serving side (a backend driver).
template <class Ring>
class back_ring {
public:
    using req_type = decltype(Ring::entry::req);
    using rsp_type = decltype(Ring::entry::rsp);
    static constexpr ring_idx size = Ring::size;

    back_ring() = default;
    explicit back_ring(Ring* s, ring_idx start = 0) { attach(s, start); }

    void attach(Ring* s, ring_idx start = 0) {
        sring_ = s;
        rsp_prod_pvt_ = start;
        req_cons_ = start;
        req_limit_ = start;
    }

    [[nodiscard]] Ring* shared() const { return sring_; }
    [[nodiscard]] ring_idx req_cons() const { return req_cons_; }
    [[nodiscard]] ring_idx rsp_prod_pvt() const { return rsp_prod_pvt_; }

    // Requests published and not yet taken. The frontend can never have more than `size`
    // requests beyond our last response; a req_prod claiming so (or moving backwards)
    // is corruption: errc::overflow, and the caller should stop serving this ring.
    [[nodiscard]] result<ring_idx> unconsumed_requests() {
        ring_idx prod = load_acquire(&sring_->hdr.req_prod);
        if (static_cast<ring_idx>(prod - rsp_prod_pvt_) > size)
            return fail(errc::overflow, "ring: request producer beyond ring size");
        ring_idx n = prod - req_cons_;
        if (n > size) // prod behind req_cons: moved backwards
            return fail(errc::overflow, "ring: request producer moved backwards");
        req_limit_ = prod;
        return n;
    }

    // Copies out the next validated request. Validate the copy, never the slot.
    [[nodiscard]] bool take_request(req_type& out) {
        if (req_cons_ == req_limit_) return false;
        copy_from_shared(out, &sring_->ring[req_cons_ & (size - 1)].req);
        ++req_cons_;
        return true;
    }

    // Queues a response privately. Fails if it would answer a request not yet taken.
    [[nodiscard]] bool put_response(const rsp_type& r) {
        if (rsp_prod_pvt_ == req_cons_) return false;
        copy_to_shared(&sring_->ring[rsp_prod_pvt_ & (size - 1)].rsp, r);
        ++rsp_prod_pvt_;
        return true;
    }

    // Fills the next response in place; fails like put_response().
    template <class F>
    [[nodiscard]] bool emplace_response(F&& fill) {
        if (rsp_prod_pvt_ == req_cons_) return false;
        fill(sring_->ring[rsp_prod_pvt_ & (size - 1)].rsp);
        ++rsp_prod_pvt_;
        return true;
    }

    // Publishes queued responses. Returns true iff the frontend asked to be notified.
    [[nodiscard]] bool push_responses() {
        ring_idx old = load_relaxed(&sring_->hdr.rsp_prod);
        ring_idx now = rsp_prod_pvt_;
        store_release(&sring_->hdr.rsp_prod, now);
        full_fence();
        ring_idx event = load_relaxed(&sring_->hdr.rsp_event);
        return static_cast<ring_idx>(now - event) < static_cast<ring_idx>(now - old);
    }

    // Before sleeping: arm req_event and re-check. true = more requests arrived.
    [[nodiscard]] result<bool> final_check_for_requests() {
        auto n = unconsumed_requests();
        if (!n) return n.err();
        if (*n) return true;
        store_relaxed(&sring_->hdr.req_event, req_cons_ + 1);
        full_fence();
        n = unconsumed_requests();
        if (!n) return n.err();
        return *n != 0;
    }

private:
    Ring* sring_ = nullptr;
    ring_idx rsp_prod_pvt_ = 0;
    ring_idx req_cons_ = 0;
    ring_idx req_limit_ = 0; // requests below this were validated by unconsumed_requests
};

} // namespace hv::io
