#include "libhv/vm/xen_pv.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_toolstack.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

namespace hv::vm {

namespace ts = xen::toolstack;

status xen_pv_host::prepare(guest& g) { return g.memory().add_ram(ts::console_ring_gpa, xen::page_size); }

status xen_pv_host::attach(guest& g, const xen_config& cfg) {
    HV_TRY(backend_.init(ts::backend_domid, 1, backend_platform_, domains_));
    backend_platform_.dom = &backend_;
    HV_TRY(xen_.attach(g, domains_, cfg, &backend_platform_));

    // The toolstack's part: the console ring's frame and port.
    xen::domain& d = xen_.domain();
    xen::evtchn_alloc_unbound cons{xen::domid_self, ts::backend_domid, 0};
    if (xen::ev::alloc_unbound(d, cons) != 0) return fail(errc::no_memory, "xen: no port for the console");
    d.set_hvm_param(xen::hvm_param_console_pfn, ts::console_ring_gpa >> xen::page_shift);
    d.set_hvm_param(xen::hvm_param_console_evtchn, cons.port);
    HV_TRY(console_.connect(backend_, d, ts::console_ring_gpa >> xen::page_shift, cons.port));
    console_port_ = cons.port;

    void* console_stack = rt::alloc_zeroed_pages(task_stack_bytes / xen::page_size);
    void* blk_stack = rt::alloc_zeroed_pages(task_stack_bytes / xen::page_size);
    console_task_.init(console_stack, task_stack_bytes, &xen::console_backend::run, &console_);
    blk_task_.init(blk_stack, task_stack_bytes, &blk_connect_and_serve, this);
    return {};
}

status xen_pv_host::add_tasks(cpu::scheduler& s) {
    HV_TRY(s.add_task(console_task_));
    return s.add_task(blk_task_);
}

// Waits for the guest's block ring grant, fills the RAM disk (byte i = i * 7 + 3), binds
// the guest's port, then serves the ring. The fill waits for the grant: in attach() (or
// at the task's first run, which comes before the vCPU's) its byte loop over 64 KiB was
// a fifth of a PV guest's start-up.
void xen_pv_host::blk_connect_and_serve(fiber& self, void* arg) {
    auto& h = *static_cast<xen_pv_host*>(arg);
    bool filled = false;
    xen::domain& g = h.xen_.domain();
    for (bool connected = false; !connected;) {
        const xen::grant_entry_v1 e = g.gnttab.shared[ts::blk_ring_ref];
        if ((e.flags & xen::gtf_type_mask) == xen::gtf_permit_access && e.domid == ts::backend_domid) {
            if (!filled)
                for (std::size_t i = 0; i < disk_bytes; ++i) h.disk_[i] = static_cast<std::byte>(i * 7 + 3);
            filled = true;
            for (xen::evtchn_port_t p = 1; p < xen::max_evtchn_ports && !connected; ++p) {
                const xen::evtchn& ch = g.ports[p];
                if (p == h.console_port_ || ch.state != xen::evtchn_state::unbound || ch.remote_dom != ts::backend_domid)
                    continue;
                connected = h.blk_.connect(h.backend_, {g.id(), ts::blk_ring_ref, p, {h.disk_, disk_bytes}, false}).ok();
            }
        }
        if (!connected) self.yield();
    }
    hv::println("xen: block backend connected (ring ref {}, port {})", ts::blk_ring_ref, h.blk_.local_port());
    xen::blk_backend::run(self, &h.blk_);
}

} // namespace hv::vm
