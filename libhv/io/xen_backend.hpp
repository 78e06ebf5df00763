// Backends inside the hypervisor. Each acts as a domain of its own (the "backend
// domain", e.g. domid 0, with no RAM), reaches the frontend only through what a Xen
// backend would use (grants and event channels; the console page by its pfn, as Xen's
// console daemon does), and runs as an hv::fiber task scheduled alongside the vCPUs:
// poll() does one pass of work, run() loops poll / arm-and-recheck / yield-until-event.
//
// Everything read from the frontend is copied and validated; a frontend that corrupts
// its ring gets its backend stopped (state::broken), never a hypervisor fault or loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/core/fiber.hpp"
#include "libhv/core/result.hpp"
#include "libhv/io/ring.hpp"
#include "libhv/io/xen_domain.hpp"

namespace hv::xen {

enum class backend_state : std::uint8_t { disconnected, connected, broken, stopped };

// ---- console (io/console.h) ---------------------------------------------------------------
class console_backend {
public:
    // Serves the xencons_interface at `ring_gfn` of `guest`, signalling through the
    // guest's unbound port `guest_port` (offered to `backend`).
    status connect(domain& backend, domain& guest, std::uint64_t ring_gfn, evtchn_port_t guest_port);
    // Moves guest output to guest.plat().console_write() and queued input into the ring.
    // Returns the number of bytes moved, or errc::overflow if the guest corrupted indices.
    result<std::size_t> poll();
    // Queues input for the guest (bytes that do not fit are dropped; returns how many fit).
    std::size_t push_input(const char* s, std::size_t n);
    void stop() { stop_ = true; }
    [[nodiscard]] backend_state state() const { return state_; }
    [[nodiscard]] evtchn_port_t local_port() const { return port_; }
    static void run(fiber& self, void* console_backend_ptr);

private:
    domain* backend_ = nullptr;
    domain* guest_ = nullptr;
    xencons_interface* intf_ = nullptr;
    evtchn_port_t port_ = 0;
    backend_state state_ = backend_state::disconnected;
    bool stop_ = false;
    char pending_in_[256] = {};
    std::size_t pending_in_len_ = 0;
};

// ---- block device (io/blkif.h) over a memory disk -----------------------------------------
using blkif_sring = io::shared_ring<blkif_request, blkif_response>;

class blk_backend {
public:
    struct config {
        domid_t frontend;
        grant_ref_t ring_ref;        // one-page ring, granted read-write to the backend
        evtchn_port_t frontend_port; // unbound, offered to the backend
        std::span<std::byte> disk;   // whole 512-byte sectors
        bool readonly;
    };
    status connect(domain& backend, const config& c);
    // Serves every request published so far. Returns how many, or errc::overflow when the
    // ring is corrupt (the backend is then broken and stops).
    result<unsigned> poll();
    void stop() { stop_ = true; }
    void disconnect();
    [[nodiscard]] backend_state state() const { return state_; }
    [[nodiscard]] evtchn_port_t local_port() const { return port_; }
    [[nodiscard]] std::uint64_t notifications_sent() const { return notifies_; }
    [[nodiscard]] std::uint64_t requests_served() const { return served_; }
    static void run(fiber& self, void* blk_backend_ptr);

private:
    std::int16_t serve(const blkif_request& r);
    std::int16_t transfer(const blkif_request& r, bool write);

    domain* backend_ = nullptr;
    config cfg_{};
    grant_handle_t ring_handle_ = 0;
    io::back_ring<blkif_sring> ring_;
    evtchn_port_t port_ = 0;
    backend_state state_ = backend_state::disconnected;
    bool stop_ = false;
    std::uint64_t notifies_ = 0;
    std::uint64_t served_ = 0;
};

} // namespace hv::xen
