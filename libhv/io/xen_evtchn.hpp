// Event channels: EVTCHNOP_* on a domain, and delivery through either ABI.
//
// 2-level ABI (shared_info): raising port p sets bit p of evtchn_pending; if bit p of
// evtchn_mask is clear and the pending bit was newly set, bit p/64 of the target vCPU's
// evtchn_pending_sel is set, and if that was new too, evtchn_upcall_pending; the 0->1
// edge of that raises the callback. The guest clears upcall_pending, then the selector,
// then the pending bits, so an event raised meanwhile always leaves a trail to it.
//
// FIFO ABI: raising p sets P in its event word; if the word is neither masked nor
// already linked, it is marked LINKED and appended to the queue of its priority on its
// vCPU: through the LINK field of the queue's tail word while that tail is still
// linked, or else by becoming HEAD in the control block; then that priority's READY bit
// is set, and a newly set READY bit raises the upcall.
//
// Every function returns 0 or a negated Xen errno, and validates all it is given.
#pragma once
#include <cstdint>
#include "libhv/io/xen_domain.hpp"

namespace hv::xen::ev {

int alloc_unbound(domain& d, evtchn_alloc_unbound& a);
int bind_interdomain(domain& d, evtchn_bind_interdomain& b);
int bind_virq(domain& d, evtchn_bind_virq& b);
int bind_ipi(domain& d, evtchn_bind_ipi& b);
int close(domain& d, evtchn_port_t port);
int send(domain& d, evtchn_port_t port);
int get_status(domain& d, evtchn_status& s);
int bind_vcpu(domain& d, const evtchn_bind_vcpu& b);
int unmask(domain& d, evtchn_port_t port);
int reset(domain& d, domid_t dom);
int init_control(domain& d, evtchn_init_control& c);
int expand_array(domain& d, const evtchn_expand_array& e);
int set_priority(domain& d, const evtchn_set_priority& p);

// Marks `port` of `d` pending and delivers it (the receiving half of send).
void set_pending(domain& d, evtchn_port_t port);
[[nodiscard]] bool is_pending(domain& d, evtchn_port_t port);
// Clears the pending state of a port (the guest's job; used by in-hypervisor backends
// that consume their own events). Returns whether it was pending.
bool test_and_clear_pending(domain& d, evtchn_port_t port);
[[nodiscard]] bool port_valid(const domain& d, evtchn_port_t port);

} // namespace hv::xen::ev
