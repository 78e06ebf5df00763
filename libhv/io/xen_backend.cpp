#include "libhv/io/xen_backend.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"

namespace hv::xen {
using namespace hv::io;

namespace {

// Binds the backend's end of an event channel the frontend offered.
result<evtchn_port_t> bind_to(domain& backend, domid_t frontend, evtchn_port_t port) {
    evtchn_bind_interdomain b{frontend, 0, port, 0};
    if (ev::bind_interdomain(backend, b) != 0)
        return fail(errc::invalid_argument, "backend: cannot bind the frontend's port");
    // bind leaves our port pending; the first poll() runs anyway.
    (void)ev::test_and_clear_pending(backend, b.local_port);
    return b.local_port;
}

// Sleeps the calling fiber until `port` of `d` is pending (or `stop` is set).
void wait_event(fiber& self, domain& d, evtchn_port_t port, const bool& stop) {
    while (!ev::test_and_clear_pending(d, port) && !stop) self.yield();
}

} // namespace

// ---- console ------------------------------------------------------------------------------

status console_backend::connect(domain& backend, domain& guest, std::uint64_t ring_gfn,
                                evtchn_port_t guest_port) {
    void* page = guest.plat().guest_frame(ring_gfn);
    if (!page) return fail(errc::invalid_argument, "console: ring pfn is not RAM");
    auto p = bind_to(backend, guest.id(), guest_port);
    if (!p) return p.err();
    backend_ = &backend;
    guest_ = &guest;
    intf_ = static_cast<xencons_interface*>(page);
    port_ = *p;
    state_ = backend_state::connected;
    stop_ = false;
    return {};
}

std::size_t console_backend::push_input(const char* s, std::size_t n) {
    std::size_t k = 0;
    while (k < n && pending_in_len_ < sizeof pending_in_) pending_in_[pending_in_len_++] = s[k++];
    return k;
}

result<std::size_t> console_backend::poll() {
    if (state_ != backend_state::connected) return fail(errc::invalid_argument, "console: not connected");
    constexpr std::uint32_t out_size = sizeof(intf_->out), in_size = sizeof(intf_->in);
    std::size_t moved = 0;
    bool notify = false;

    // Guest output: [out_cons, out_prod) of out[], producer index read once.
    std::uint32_t prod = load_acquire(&intf_->out_prod);
    std::uint32_t cons = load_relaxed(&intf_->out_cons);
    if (prod - cons > out_size) {
        state_ = backend_state::broken;
        return fail(errc::overflow, "console: output producer beyond ring size");
    }
    char chunk[64];
    while (cons != prod) {
        std::size_t n = 0;
        while (cons != prod && n < sizeof chunk) chunk[n++] = load_relaxed(&intf_->out[cons++ % out_size]);
        guest_->plat().console_write(chunk, n);
        moved += n;
    }
    if (moved) {
        store_release(&intf_->out_cons, cons);
        notify = true;
    }

    // Input for the guest: [in_cons, in_prod) is the guest's to read.
    if (pending_in_len_) {
        std::uint32_t icons = load_acquire(&intf_->in_cons);
        std::uint32_t iprod = load_relaxed(&intf_->in_prod);
        if (iprod - icons > in_size) {
            state_ = backend_state::broken;
            return fail(errc::overflow, "console: input consumer beyond ring size");
        }
        std::size_t k = 0;
        while (k < pending_in_len_ && iprod - icons < in_size) store_relaxed(&intf_->in[iprod++ % in_size], pending_in_[k++]);
        if (k) {
            store_release(&intf_->in_prod, iprod);
            for (std::size_t i = k; i < pending_in_len_; ++i) pending_in_[i - k] = pending_in_[i];
            pending_in_len_ -= k;
            moved += k;
            notify = true;
        }
    }
    if (notify) (void)ev::send(*backend_, port_);
    return moved;
}

void console_backend::run(fiber& self, void* arg) {
    auto* c = static_cast<console_backend*>(arg);
    while (!c->stop_ && c->state_ == backend_state::connected) {
        auto r = c->poll();
        if (!r) break;
        if (*r == 0) wait_event(self, *c->backend_, c->port_, c->stop_);
    }
    if (c->state_ == backend_state::connected) c->state_ = backend_state::stopped;
}

// ---- block --------------------------------------------------------------------------------

status blk_backend::connect(domain& backend, const config& c) {
    if (c.disk.size() % blkif_sector_size) return fail(errc::invalid_argument, "blk: disk not whole sectors");
    gnt::mapping m = gnt::map(backend, c.frontend, c.ring_ref, false);
    if (m.status != gntst_okay) return fail(errc::permission, "blk: cannot map the ring grant");
    auto p = bind_to(backend, c.frontend, c.frontend_port);
    if (!p) {
        (void)gnt::unmap(backend, m.handle);
        return p.err();
    }
    backend_ = &backend;
    cfg_ = c;
    ring_handle_ = m.handle;
    // The frontend initialised the ring; attach at its current state (index 0).
    ring_.attach(static_cast<blkif_sring*>(m.page), 0);
    port_ = *p;
    state_ = backend_state::connected;
    stop_ = false;
    return {};
}

void blk_backend::disconnect() {
    if (!backend_ || state_ == backend_state::disconnected) return;
    (void)ev::close(*backend_, port_);
    (void)gnt::unmap(*backend_, ring_handle_);
    state_ = backend_state::disconnected;
}

std::int16_t blk_backend::transfer(const blkif_request& r, bool write) {
    if (r.nr_segments == 0 || r.nr_segments > blkif_max_segments_per_request) return blkif_rsp_error;
    if (write && cfg_.readonly) return blkif_rsp_error;
    const std::uint64_t disk_sectors = cfg_.disk.size() / blkif_sector_size;
    // Validate every segment of the private copy before touching any data.
    std::uint64_t total = 0;
    for (unsigned i = 0; i < r.nr_segments; ++i) {
        const auto& s = r.seg[i];
        if (s.first_sect > s.last_sect || s.last_sect >= page_size / blkif_sector_size) return blkif_rsp_error;
        total += s.last_sect - s.first_sect + 1u;
    }
    if (r.sector_number > disk_sectors || total > disk_sectors - r.sector_number) return blkif_rsp_error;
    std::uint64_t sector = r.sector_number;
    for (unsigned i = 0; i < r.nr_segments; ++i) {
        const auto& s = r.seg[i];
        auto off = static_cast<std::uint16_t>(s.first_sect * blkif_sector_size);
        auto len = static_cast<std::uint16_t>((s.last_sect - s.first_sect + 1u) * blkif_sector_size);
        std::byte* disk = cfg_.disk.data() + sector * blkif_sector_size;
        std::int16_t st = write ? gnt::copy_from_grant(*backend_, cfg_.frontend, s.gref, off, disk, len)
                                : gnt::copy_to_grant(*backend_, cfg_.frontend, s.gref, off, disk, len);
        if (st != gntst_okay) return blkif_rsp_error;
        sector += s.last_sect - s.first_sect + 1u;
    }
    return blkif_rsp_okay;
}

std::int16_t blk_backend::serve(const blkif_request& r) {
    switch (r.operation) {
    case blkif_op_read:
        return transfer(r, false);
    case blkif_op_write:
    case blkif_op_write_barrier: // a memory disk is always ordered and durable
        return transfer(r, true);
    case blkif_op_flush_diskcache:
        return blkif_rsp_okay;
    default: // discard, indirect: not advertised
        return blkif_rsp_eopnotsupp;
    }
}

result<unsigned> blk_backend::poll() {
    if (state_ != backend_state::connected) return fail(errc::invalid_argument, "blk: not connected");
    // Bounded work per pass, so a frontend that keeps producing cannot hog the CPU.
    constexpr unsigned budget = 4 * blkif_sring::size;
    unsigned served = 0;
    while (served < budget) {
        auto n = ring_.unconsumed_requests();
        if (!n) {
            state_ = backend_state::broken;
            return n.err();
        }
        if (*n == 0) break;
        blkif_request req;
        while (served < budget && ring_.take_request(req)) {
            std::int16_t st = serve(req); // req is our copy: validated and used once
            blkif_response rsp{req.id, req.operation, 0, st, 0};
            (void)ring_.put_response(rsp);
            ++served;
        }
        if (ring_.push_responses()) {
            (void)ev::send(*backend_, port_);
            ++notifies_;
        }
    }
    served_ += served;
    return served;
}

void blk_backend::run(fiber& self, void* arg) {
    auto* b = static_cast<blk_backend*>(arg);
    while (!b->stop_ && b->state_ == backend_state::connected) {
        if (!b->poll()) break;
        auto more = b->ring_.final_check_for_requests();
        if (!more) {
            b->state_ = backend_state::broken;
            break;
        }
        if (*more)
            self.yield(); // more work: still let the vCPUs run between passes
        else
            wait_event(self, *b->backend_, b->port_, b->stop_);
    }
    if (b->state_ == backend_state::connected) b->state_ = backend_state::stopped;
}

} // namespace hv::xen
