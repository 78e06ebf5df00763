#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/shared_mem.hpp"

namespace hv::xen::ev {
using namespace hv::io;
namespace {

constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << (n % 64); }

bool virq_is_global(std::uint32_t virq) {
    switch (virq) {
    case virq_timer:
    case virq_debug:
    case virq_xenoprof:
    case virq_xenpmu:
        return false;
    default:
        return virq < virq_arch_0; // x86 has no global arch VIRQs
    }
}

evtchn_port_t alloc_port(domain& d) {
    for (evtchn_port_t p = 1; p < max_evtchn_ports; ++p)
        if (d.ports[p].state == evtchn_state::free) return p;
    return 0;
}

void reset_port(evtchn& c) { c = evtchn{}; }

// ---- FIFO helpers -------------------------------------------------------------------
std::uint32_t* event_word(domain& d, evtchn_port_t port) {
    unsigned page = port / evtchn_fifo_words_per_page;
    if (port >= max_evtchn_ports || page >= d.fifo_array_pages) return nullptr;
    return d.fifo_array[page] + port % evtchn_fifo_words_per_page;
}

// Points the LINK of `tail`'s word at `port`, but only while the guest has not unlinked
// `tail` yet (then it is still in the queue and its successor must hang off it).
bool try_set_link(std::uint32_t* tail_word, evtchn_port_t port) {
    std::uint32_t w = load_relaxed(tail_word);
    for (;;) {
        if (!(w & evtchn_fifo_linked)) return false;
        std::uint32_t nw = (w & ~(evtchn_fifo_link_mask | evtchn_fifo_busy)) | port;
        if (__atomic_compare_exchange_n(tail_word, &w, nw, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            return true;
    }
}

void fifo_link(domain& d, evtchn_port_t port, std::uint32_t* word) {
    evtchn& c = d.ports[port];
    vcpu_state& v = d.vcpu[c.notify_vcpu];
    evtchn_fifo_control_block* cb = v.fifo_cb;
    if (!cb) return; // that vCPU has no control block yet: stays pending, unlinked
    std::uint32_t w = load_relaxed(word);
    if (w & (evtchn_fifo_masked | evtchn_fifo_linked)) return;
    // Claim the link atomically: the guest may be changing MASKED concurrently.
    for (;;) {
        if (w & (evtchn_fifo_masked | evtchn_fifo_linked)) return;
        if (__atomic_compare_exchange_n(word, &w, w | evtchn_fifo_linked | evtchn_fifo_busy,
                                        false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            break;
    }
    // It is ours to link; clear any stale LINK (the guest should have) and BUSY.
    __atomic_fetch_and(word, ~(evtchn_fifo_link_mask | evtchn_fifo_busy), __ATOMIC_SEQ_CST);

    unsigned prio = c.priority;
    fifo_queue& q = v.fifo_q[prio];
    bool linked = false;
    if (q.tail != 0 && q.tail != port) {
        if (std::uint32_t* tw = event_word(d, q.tail)) linked = try_set_link(tw, port);
    }
    if (!linked) store_release(&cb->head[prio], port);
    q.tail = port;
    std::uint32_t ready_bit = 1u << prio;
    if (!(__atomic_fetch_or(&cb->ready, ready_bit, __ATOMIC_SEQ_CST) & ready_bit))
        d.mark_upcall_pending(c.notify_vcpu);
}

void fifo_set_pending(domain& d, evtchn_port_t port) {
    std::uint32_t* word = event_word(d, port);
    if (!word) { // no event array page yet: remember, deliver when it arrives
        d.ports[port].early_pending = true;
        return;
    }
    __atomic_fetch_or(word, evtchn_fifo_pending, __ATOMIC_SEQ_CST);
    fifo_link(d, port, word);
}

void two_level_set_pending(domain& d, evtchn_port_t port) {
    shared_info* s = d.shared();
    unsigned w = port / 64;
    if (__atomic_fetch_or(&s->evtchn_pending[w], bit(port), __ATOMIC_SEQ_CST) & bit(port))
        return; // already pending: no new edge
    if (load_relaxed(&s->evtchn_mask[w]) & bit(port)) return;
    std::uint32_t vcpu = d.ports[port].notify_vcpu;
    vcpu_info* vi = d.vcpu[vcpu].info;
    if (__atomic_fetch_or(&vi->evtchn_pending_sel, bit(w), __ATOMIC_SEQ_CST) & bit(w)) return;
    d.mark_upcall_pending(vcpu);
}

void clear_pending(domain& d, evtchn_port_t port) {
    if (d.abi == evtchn_abi::two_level) {
        __atomic_fetch_and(&d.shared()->evtchn_pending[port / 64], ~bit(port), __ATOMIC_SEQ_CST);
    } else if (std::uint32_t* w = event_word(d, port)) {
        __atomic_fetch_and(w, ~evtchn_fifo_pending, __ATOMIC_SEQ_CST);
    }
    d.ports[port].early_pending = false;
}

int check_vcpu(const domain& d, std::uint32_t vcpu) {
    return vcpu < d.nr_vcpus() ? 0 : -err::enoent;
}

// Only the domain itself may be named (guests are not privileged here).
int check_self(domain& d, domid_t dom) {
    if (d.is_self(dom)) return 0;
    return d.table().find(dom) ? -err::eperm : -err::esrch;
}

} // namespace

bool port_valid(const domain& d, evtchn_port_t port) {
    (void)d;
    return port != 0 && port < max_evtchn_ports;
}

void set_pending(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port)) return;
    if (d.abi == evtchn_abi::two_level)
        two_level_set_pending(d, port);
    else
        fifo_set_pending(d, port);
}

bool is_pending(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port)) return false;
    if (d.abi == evtchn_abi::two_level)
        return load_acquire(&d.shared()->evtchn_pending[port / 64]) & bit(port);
    if (std::uint32_t* w = event_word(d, port)) return load_acquire(w) & evtchn_fifo_pending;
    return d.ports[port].early_pending;
}

bool test_and_clear_pending(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port)) return false;
    if (d.abi == evtchn_abi::two_level)
        return __atomic_fetch_and(&d.shared()->evtchn_pending[port / 64], ~bit(port),
                                  __ATOMIC_SEQ_CST) & bit(port);
    std::uint32_t* w = event_word(d, port);
    if (!w) {
        bool was = d.ports[port].early_pending;
        d.ports[port].early_pending = false;
        return was;
    }
    return __atomic_fetch_and(w, ~evtchn_fifo_pending, __ATOMIC_SEQ_CST) & evtchn_fifo_pending;
}

int alloc_unbound(domain& d, evtchn_alloc_unbound& a) {
    if (int rc = check_self(d, a.dom)) return rc;
    evtchn_port_t p = alloc_port(d);
    if (!p) return -err::enospc;
    evtchn& c = d.ports[p];
    reset_port(c);
    c.state = evtchn_state::unbound;
    c.remote_dom = d.resolve(a.remote_dom);
    a.port = p;
    return 0;
}

int bind_interdomain(domain& d, evtchn_bind_interdomain& b) {
    domain* rd = d.table().find(d.resolve(b.remote_dom));
    if (!rd) return -err::esrch;
    if (!port_valid(*rd, b.remote_port)) return -err::einval;
    evtchn& rc = rd->ports[b.remote_port];
    if (rc.state != evtchn_state::unbound || rc.remote_dom != d.id()) return -err::einval;
    evtchn_port_t lp = alloc_port(d);
    if (!lp) return -err::enospc;
    if (rd == &d && lp == b.remote_port) return -err::einval; // cannot happen: port is bound
    evtchn& lc = d.ports[lp];
    reset_port(lc);
    lc.state = evtchn_state::interdomain;
    lc.remote_dom = rd->id();
    lc.remote_port = b.remote_port;
    rc.state = evtchn_state::interdomain;
    rc.remote_dom = d.id();
    rc.remote_port = lp;
    b.local_port = lp;
    // The peer may have signalled before we bound: always start pending.
    set_pending(d, lp);
    return 0;
}

int bind_virq(domain& d, evtchn_bind_virq& b) {
    if (b.virq >= nr_virqs) return -err::einval;
    if (int rc = check_vcpu(d, b.vcpu)) return rc;
    if (virq_is_global(b.virq) && b.vcpu != 0) return -err::einval;
    vcpu_state& v = d.vcpu[b.vcpu];
    if (v.virq_port[b.virq] != 0) return -err::eexist;
    evtchn_port_t p = alloc_port(d);
    if (!p) return -err::enospc;
    evtchn& c = d.ports[p];
    reset_port(c);
    c.state = evtchn_state::virq;
    c.virq = b.virq;
    c.notify_vcpu = b.vcpu;
    v.virq_port[b.virq] = p;
    b.port = p;
    return 0;
}

int bind_ipi(domain& d, evtchn_bind_ipi& b) {
    if (int rc = check_vcpu(d, b.vcpu)) return rc;
    evtchn_port_t p = alloc_port(d);
    if (!p) return -err::enospc;
    evtchn& c = d.ports[p];
    reset_port(c);
    c.state = evtchn_state::ipi;
    c.notify_vcpu = b.vcpu;
    b.port = p;
    return 0;
}

int close(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port)) return -err::einval;
    evtchn& c = d.ports[port];
    switch (c.state) {
    case evtchn_state::free:
        return -err::einval;
    case evtchn_state::virq:
        if (c.notify_vcpu < max_vcpus && c.virq < nr_virqs &&
            d.vcpu[c.notify_vcpu].virq_port[c.virq] == port)
            d.vcpu[c.notify_vcpu].virq_port[c.virq] = 0;
        break;
    case evtchn_state::interdomain:
        if (domain* rd = d.table().find(c.remote_dom)) {
            if (port_valid(*rd, c.remote_port)) {
                evtchn& rc = rd->ports[c.remote_port];
                if (rc.state == evtchn_state::interdomain && rc.remote_dom == d.id() &&
                    rc.remote_port == port) {
                    rc.state = evtchn_state::unbound; // the peer may be re-bound
                    rc.remote_dom = d.id();
                    rc.remote_port = 0;
                }
            }
        }
        break;
    case evtchn_state::unbound:
    case evtchn_state::ipi:
        break;
    }
    clear_pending(d, port);
    reset_port(c);
    return 0;
}

int send(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port)) return -err::einval;
    evtchn& c = d.ports[port];
    switch (c.state) {
    case evtchn_state::interdomain:
        if (domain* rd = d.table().find(c.remote_dom)) set_pending(*rd, c.remote_port);
        return 0;
    case evtchn_state::ipi:
        set_pending(d, port);
        return 0;
    case evtchn_state::unbound:
        return 0; // nobody listening yet: dropped, as Xen does
    default:
        return -err::einval;
    }
}

int get_status(domain& d, evtchn_status& s) {
    if (int rc = check_self(d, s.dom)) return rc;
    if (!port_valid(d, s.port)) return -err::einval;
    const evtchn& c = d.ports[s.port];
    s.vcpu = c.notify_vcpu;
    s.u = {};
    switch (c.state) {
    case evtchn_state::free:
        s.status = evtchnstat_closed;
        break;
    case evtchn_state::unbound:
        s.status = evtchnstat_unbound;
        s.u.unbound.dom = c.remote_dom;
        break;
    case evtchn_state::interdomain:
        s.status = evtchnstat_interdomain;
        s.u.interdomain.dom = c.remote_dom;
        s.u.interdomain.port = c.remote_port;
        break;
    case evtchn_state::virq:
        s.status = evtchnstat_virq;
        s.u.virq = c.virq;
        break;
    case evtchn_state::ipi:
        s.status = evtchnstat_ipi;
        break;
    }
    return 0;
}

int bind_vcpu(domain& d, const evtchn_bind_vcpu& b) {
    if (!port_valid(d, b.port)) return -err::einval;
    if (int rc = check_vcpu(d, b.vcpu)) return rc;
    evtchn& c = d.ports[b.port];
    switch (c.state) {
    case evtchn_state::virq:
        if (!virq_is_global(c.virq)) return -err::einval;
        if (d.vcpu[c.notify_vcpu].virq_port[c.virq] == b.port) {
            d.vcpu[c.notify_vcpu].virq_port[c.virq] = 0;
            d.vcpu[b.vcpu].virq_port[c.virq] = b.port;
        }
        c.notify_vcpu = b.vcpu;
        return 0;
    case evtchn_state::unbound:
    case evtchn_state::interdomain:
        c.notify_vcpu = b.vcpu;
        return 0;
    default:
        return -err::einval;
    }
}

int unmask(domain& d, evtchn_port_t port) {
    if (!port_valid(d, port) || d.ports[port].state == evtchn_state::free) return -err::einval;
    if (d.abi == evtchn_abi::two_level) {
        shared_info* s = d.shared();
        unsigned w = port / 64;
        // Only a mask bit we clear ourselves re-delivers (the guest may have cleared it).
        if (!(__atomic_fetch_and(&s->evtchn_mask[w], ~bit(port), __ATOMIC_SEQ_CST) & bit(port)))
            return 0;
        if (!(load_acquire(&s->evtchn_pending[w]) & bit(port))) return 0;
        std::uint32_t vcpu = d.ports[port].notify_vcpu;
        if (!(__atomic_fetch_or(&d.vcpu[vcpu].info->evtchn_pending_sel, bit(w), __ATOMIC_SEQ_CST) &
              bit(w)))
            d.mark_upcall_pending(vcpu);
        return 0;
    }
    std::uint32_t* word = event_word(d, port);
    if (!word) return 0;
    __atomic_fetch_and(word, ~evtchn_fifo_masked, __ATOMIC_SEQ_CST);
    if (load_acquire(word) & evtchn_fifo_pending) fifo_link(d, port, word);
    return 0;
}

int reset(domain& d, domid_t dom) {
    if (int rc = check_self(d, dom)) return rc;
    for (evtchn_port_t p = 1; p < max_evtchn_ports; ++p)
        if (d.ports[p].state != evtchn_state::free) (void)close(d, p);
    d.abi = evtchn_abi::two_level;
    for (auto& v : d.vcpu) {
        v.fifo_cb = nullptr;
        for (auto& q : v.fifo_q) q = {};
    }
    for (auto& a : d.fifo_array) a = nullptr;
    d.fifo_array_pages = 0;
    return 0;
}

int init_control(domain& d, evtchn_init_control& c) {
    if (int rc = check_vcpu(d, c.vcpu)) return rc;
    if (c.offset > page_size - sizeof(evtchn_fifo_control_block) || (c.offset & 7))
        return -err::einval;
    vcpu_state& v = d.vcpu[c.vcpu];
    if (v.fifo_cb) return -err::einval; // already initialised
    auto* frame = static_cast<unsigned char*>(d.plat().guest_frame(c.control_gfn));
    if (!frame) return -err::einval;
    v.fifo_cb = reinterpret_cast<evtchn_fifo_control_block*>(frame + c.offset);
    for (auto& q : v.fifo_q) q = {};
    if (d.abi == evtchn_abi::two_level) {
        // Switch ABIs: carry pending 2-level bits over as early FIFO events.
        shared_info* s = d.shared();
        for (evtchn_port_t p = 1; p < max_evtchn_ports; ++p)
            if (load_relaxed(&s->evtchn_pending[p / 64]) & bit(p)) d.ports[p].early_pending = true;
        d.abi = evtchn_abi::fifo;
    }
    // Events already pending for this vCPU could not be queued without its control
    // block: queue them now.
    for (evtchn_port_t p = 1; p < max_evtchn_ports; ++p) {
        if (d.ports[p].state == evtchn_state::free || d.ports[p].notify_vcpu != c.vcpu) continue;
        if (std::uint32_t* w = event_word(d, p); w && (load_acquire(w) & evtchn_fifo_pending))
            fifo_link(d, p, w);
    }
    c.link_bits = evtchn_fifo_link_bits;
    return 0;
}

int expand_array(domain& d, const evtchn_expand_array& e) {
    if (d.abi != evtchn_abi::fifo) return -err::eopnotsupp;
    if (d.fifo_array_pages >= evtchn_fifo_max_pages) return -err::enospc;
    auto* frame = static_cast<std::uint32_t*>(d.plat().guest_frame(e.array_gfn));
    if (!frame) return -err::einval;
    unsigned page = d.fifo_array_pages;
    d.fifo_array[page] = frame;
    d.fifo_array_pages = page + 1;
    // Deliver what was raised before this page existed.
    evtchn_port_t first = page * evtchn_fifo_words_per_page;
    for (evtchn_port_t p = first; p < first + evtchn_fifo_words_per_page && p < max_evtchn_ports; ++p) {
        if (d.ports[p].early_pending) {
            d.ports[p].early_pending = false;
            if (d.ports[p].state != evtchn_state::free) fifo_set_pending(d, p);
        }
    }
    return 0;
}

int set_priority(domain& d, const evtchn_set_priority& p) {
    if (d.abi != evtchn_abi::fifo) return -err::enosys;
    if (!port_valid(d, p.port) || d.ports[p.port].state == evtchn_state::free) return -err::einval;
    if (p.priority > evtchn_fifo_priority_min) return -err::einval;
    d.ports[p.port].priority = static_cast<std::uint8_t>(p.priority);
    return 0;
}

} // namespace hv::xen::ev
