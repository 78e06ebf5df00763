// A Xen PV guest's host side, put together for one vm::guest: the Xen ABI (vm::xen_hvm),
// the backend domain 0, and libhv's toolstack role (libhv/io/xen_toolstack.hpp): the
// console ring page and port (HVM_PARAM_CONSOLE_PFN/_EVTCHN) served by a console
// backend, and a loopback block device over a RAM disk that connects when the guest
// grants its ring. Both backends are scheduler tasks beside the vCPUs.
//
//   xen_pv_host x;
//   HV_TRY(load_kernel(g, ...));  HV_TRY(x.prepare(g));   // console page outside the memory map
//   HV_TRY(g.start());            HV_TRY(x.attach(g, cfg)); // after start: chains to its handlers
//   HV_TRY(g.schedule_on(s));     HV_TRY(x.add_tasks(s));
//   s.run(&xen_pv_host::idle, &x);  ... x.xen().shut_down() / x.xen().result()
//
// Metal only. One instance per guest (fixed storage: the RAM disk is 64 KiB).
#pragma once
#include <cstddef>
#include "libhv/core/fiber.hpp"
#include "libhv/core/result.hpp"
#include "libhv/io/xen_backend.hpp"
#include "libhv/vm/guest.hpp"
#include "libhv/vm/xen.hpp"

namespace hv::vm {

class xen_pv_host {
public:
    static constexpr std::size_t disk_bytes = 64 * 1024;
    static constexpr std::size_t task_stack_bytes = 32 * 1024;

    // After the kernel is loaded (so the page stays out of the guest's memory map), before start().
    [[nodiscard]] status prepare(guest& g);
    // After g.start(). Console output goes to cfg.console.
    [[nodiscard]] status attach(guest& g, const xen_config& cfg);
    [[nodiscard]] status add_tasks(cpu::scheduler& s);
    // After the run: what the console ring still held.
    void flush_console() { (void)console_.poll(); }

    [[nodiscard]] xen_hvm<guest>& xen() { return xen_; }
    [[nodiscard]] std::uint64_t block_requests() const { return blk_.requests_served(); }
    static bool idle(void* self) { return xen_hvm<guest>::idle(&static_cast<xen_pv_host*>(self)->xen_); }

private:
    static void blk_connect_and_serve(fiber& self, void* host);

    xen::domain_table domains_;
    backend_domain_platform backend_platform_;
    xen::domain backend_;
    xen_hvm<guest> xen_;
    xen::console_backend console_;
    xen::blk_backend blk_;
    xen::evtchn_port_t console_port_ = 0;
    fiber console_task_, blk_task_;
    alignas(4096) std::byte disk_[disk_bytes];
};

} // namespace hv::vm
