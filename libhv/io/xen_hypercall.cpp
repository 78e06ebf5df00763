#include "libhv/io/xen_hypercall.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"

namespace hv::xen {
namespace {

// One hypercall in flight: who is calling and how to reach its memory.
struct call {
    domain& d;
    std::uint32_t vcpu;
    guest_access& mem;
    bool compat; // 32-bit guest: 32-bit pointers and the compat structure layouts

    template <class T>
    int get(std::uint64_t gva, T& out) {
        return mem.copy_from_guest(&out, gva, sizeof(T)).ok() ? 0 : -err::efault;
    }
    template <class T>
    int put(std::uint64_t gva, const T& in) {
        return mem.copy_to_guest(gva, &in, sizeof(T)).ok() ? 0 : -err::efault;
    }
    int put_bytes(std::uint64_t gva, const void* p, std::size_t n) {
        return mem.copy_to_guest(gva, p, n).ok() ? 0 : -err::efault;
    }
};

// Copies a NUL-padded string into a fixed-size guest buffer.
template <std::size_t N>
int put_string(call& c, std::uint64_t gva, const char* s) {
    char buf[N] = {};
    for (std::size_t i = 0; i + 1 < N && s[i]; ++i) buf[i] = s[i];
    return c.put_bytes(gva, buf, N);
}

int check_self(domain& d, domid_t dom) {
    if (d.is_self(dom)) return 0;
    return d.table().find(dom) ? -err::eperm : -err::esrch;
}

// ---- console_io -------------------------------------------------------------------------
constexpr std::uint64_t console_max = 64 * 1024; // per call; no preemption here

std::int64_t console_io(call& c, std::uint64_t cmd, std::uint64_t count, std::uint64_t buf) {
    count &= 0xffffffffu; // unsigned int
    if (cmd == consoleio_write) {
        if (count > console_max) return -err::einval;
        char chunk[128];
        for (std::uint64_t done = 0; done < count;) {
            std::size_t n = count - done < sizeof chunk ? count - done : sizeof chunk;
            if (!c.mem.copy_from_guest(chunk, buf + done, n).ok()) return -err::efault;
            c.d.plat().console_write(chunk, n);
            done += n;
        }
        return 0;
    }
    if (cmd == consoleio_read) {
        char chunk[128];
        std::size_t want = count < sizeof chunk ? count : sizeof chunk;
        std::size_t n = c.d.plat().console_read(chunk, want);
        if (n > want) n = want;
        if (n && c.put_bytes(buf, chunk, n)) return -err::efault;
        return static_cast<std::int64_t>(n);
    }
    return -err::enosys;
}

// ---- sched_op ---------------------------------------------------------------------------
std::int64_t sched_op(call& c, std::uint64_t cmd, std::uint64_t arg) {
    switch (cmd) {  // schedop_yield: register_only_hypercall
    case schedop_block: {
        vcpu_info* vi = c.d.vcpu[c.vcpu].info;
        io::store_release(&vi->evtchn_upcall_mask, 0); // blocking re-enables delivery
        io::full_fence();
        if (!io::load_acquire(&vi->evtchn_upcall_pending)) c.d.plat().block(c.vcpu);
        return 0;
    }
    case schedop_shutdown: {
        sched_shutdown s;
        if (int rc = c.get(arg, s)) return rc;
        if (s.reason > shutdown_max) return -err::einval;
        c.d.shut_down = true;
        c.d.plat().shutdown(s.reason);
        return 0;
    }
    case schedop_shutdown_code: {
        sched_shutdown s;
        if (int rc = c.get(arg, s)) return rc;
        if (s.reason > shutdown_max) return -err::einval;
        c.d.shutdown_code = s.reason;
        return 0;
    }
    case schedop_poll: {
        sched_poll p;
        if (c.compat) {
            sched_poll_compat pc;
            if (int rc = c.get(arg, pc)) return rc;
            p = {pc.ports, pc.nr_ports, 0, pc.timeout_lo | std::uint64_t{pc.timeout_hi} << 32};
        } else if (int rc = c.get(arg, p)) {
            return rc;
        }
        if (p.nr_ports > sched_poll_max_ports) return -err::einval;
        bool any = false;
        for (std::uint32_t i = 0; i < p.nr_ports; ++i) {
            evtchn_port_t port;
            if (int rc = c.get(p.ports + std::uint64_t{i} * sizeof port, port)) return rc;
            if (!ev::port_valid(c.d, port)) return -err::einval;
            any = any || ev::is_pending(c.d, port);
        }
        // Nothing pending: give the CPU away once and let the guest re-check (a
        // spurious wake-up is within the contract, and cannot miss a masked port).
        if (!any && (p.timeout == 0 || p.timeout > c.d.plat().now_ns())) c.d.plat().yield(c.vcpu);
        return 0;
    }
    case schedop_remote_shutdown:
        return -err::eperm;
    default:
        return -err::enosys;
    }
}

// ---- xen_version ------------------------------------------------------------------------
std::int64_t xen_version(call& c, std::uint64_t cmd, std::uint64_t arg) {
    switch (cmd) {  // xenver_version, xenver_pagesize: register_only_hypercall
    case xenver_extraversion:
        return put_string<extraversion_len>(c, arg, ".0-libhv");
    case xenver_compile_info: {
        compile_info ci = {};
        const char* compiler = "libhv";
        for (int i = 0; compiler[i]; ++i) ci.compiler[i] = compiler[i];
        return c.put(arg, ci);
    }
    case xenver_capabilities:
        return put_string<capabilities_len>(c, arg, "hvm-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p");
    case xenver_changeset:
        return put_string<changeset_len>(c, arg, "libhv");
    case xenver_platform_parameters:
        if (c.compat) return c.put(arg, std::uint32_t{0xf5800000u});
        return c.put(arg, std::uint64_t{0xffff800000000000u});
    case xenver_get_features: {
        feature_info fi;
        if (int rc = c.get(arg, fi)) return rc;
        if (fi.submap_idx != 0) return -err::einval;
        fi.submap = 1u << xenfeat_writable_page_tables | 1u << xenfeat_auto_translated_physmap |
                    1u << xenfeat_supervisor_mode_kernel | 1u << xenfeat_hvm_callback_vector |
                    1u << xenfeat_hvm_safe_pvclock;
        return c.put(arg, fi);
    }
    case xenver_guest_handle:
        return put_string<guest_handle_len>(c, arg, "");
    case xenver_commandline:
        return put_string<commandline_len>(c, arg, "");
    case xenver_build_id:
        return -err::enodata;
    default:
        return -err::enosys;
    }
}

// ---- memory_op --------------------------------------------------------------------------
std::int64_t memory_op(call& c, std::uint64_t cmd, std::uint64_t arg) {
    if ((cmd & xenmem_cmd_mask) != xenmem_add_to_physmap) return -err::enosys;
    if (cmd >> 6) return -err::einval; // no continuation state for this op
    add_to_physmap x;
    if (c.compat) {
        add_to_physmap_compat xc;
        if (int rc = c.get(arg, xc)) return rc;
        x = {xc.domid, xc.size, xc.space, xc.idx, xc.gpfn};
    } else if (int rc = c.get(arg, x)) {
        return rc;
    }
    if (int rc = check_self(c.d, x.domid)) return rc;
    switch (x.space) {
    case xenmapspace_shared_info:
        if (x.idx != 0) return -err::einval;
        return c.d.plat().map_hypervisor_page(x.gpfn, c.d.shared_page()).ok() ? 0 : -err::einval;
    case xenmapspace_grant_table: {
        if (x.idx & xenmapidx_grant_table_status) return -err::einval; // v1: no status frames
        if (x.idx >= max_grant_frames) return -err::einval;
        auto idx = static_cast<unsigned>(x.idx);
        if (int rc = gnt::grow(c.d, idx + 1)) return rc;
        void* frame = &c.d.gnttab.shared[idx * grant_entries_per_frame];
        if (!c.d.plat().map_hypervisor_page(x.gpfn, frame).ok()) return -err::einval;
        c.d.gnttab.frame_gfn[idx] = x.gpfn;
        return 0;
    }
    default:
        return -err::eopnotsupp;
    }
}

// ---- grant_table_op ---------------------------------------------------------------------
constexpr std::uint64_t gnttab_max_batch = 4096;

std::int64_t gnttab_map(call& c, std::uint64_t uop, std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint64_t at = uop + i * sizeof(gnttab_map_grant_ref);
        gnttab_map_grant_ref op;
        if (int rc = c.get(at, op)) return rc;
        op.handle = 0;
        op.dev_bus_addr = 0;
        bool host = op.flags & gntmap_host_map;
        if (!(op.flags & (gntmap_host_map | gntmap_device_map))) {
            op.status = gntst_bad_gntref;
        } else if (op.flags & gntmap_contains_pte) {
            op.status = gntst_general_error; // PV page-table updates: not for HVM
        } else if (host && (op.host_addr & (page_size - 1))) {
            op.status = gntst_bad_virt_addr;
        } else {
            std::uint64_t gfn = host ? op.host_addr >> page_shift : no_gfn;
            gnt::mapping m = gnt::map(c.d, op.dom, op.ref, op.flags & gntmap_readonly, gfn);
            op.status = m.status;
            if (m.status == gntst_okay) {
                op.handle = m.handle;
                if (op.flags & gntmap_device_map) op.dev_bus_addr = op.host_addr;
            }
        }
        if (int rc = c.put(at, op)) {
            if (op.status == gntst_okay) (void)gnt::unmap(c.d, op.handle); // nobody holds it
            return rc;
        }
    }
    return 0;
}

std::int64_t gnttab_unmap(call& c, std::uint64_t uop, std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint64_t at = uop + i * sizeof(gnttab_unmap_grant_ref);
        gnttab_unmap_grant_ref op;
        if (int rc = c.get(at, op)) return rc;
        if (op.host_addr & (page_size - 1))
            op.status = gntst_bad_virt_addr;
        else
            op.status = gnt::unmap(c.d, op.handle, op.host_addr ? op.host_addr >> page_shift : no_gfn);
        if (int rc = c.put(at, op)) return rc;
    }
    return 0;
}

std::int64_t gnttab_setup(call& c, std::uint64_t uop, std::uint64_t count) {
    if (count != 1) return -err::einval;
    gnttab_setup_table op;
    if (c.compat) {
        gnttab_setup_table_compat oc;
        if (int rc = c.get(uop, oc)) return rc;
        op = {oc.dom, 0, oc.nr_frames, 0, {}, oc.frame_list};
    } else if (int rc = c.get(uop, op)) {
        return rc;
    }
    if (int rc = check_self(c.d, op.dom)) {
        op.status = rc == -err::esrch ? gntst_bad_domain : gntst_permission_denied;
    } else if (op.nr_frames > max_grant_frames) {
        op.status = gntst_general_error;
    } else {
        (void)gnt::grow(c.d, op.nr_frames);
        op.status = gntst_okay;
        for (std::uint32_t i = 0; i < op.nr_frames; ++i) {
            std::uint64_t gfn = c.d.gnttab.frame_gfn[i];
            int rc = c.compat ? c.put(op.frame_list + i * 4u, static_cast<std::uint32_t>(gfn))
                              : c.put(op.frame_list + i * 8u, gfn);
            if (rc) return rc;
        }
    }
    if (c.compat) {
        gnttab_setup_table_compat oc{op.dom, 0, op.nr_frames, op.status, 0,
                                     static_cast<std::uint32_t>(op.frame_list)};
        return c.put(uop, oc);
    }
    return c.put(uop, op);
}

std::int64_t gnttab_copy_op(call& c, std::uint64_t uop, std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
        gnttab_copy op;
        std::uint64_t at;
        if (c.compat) {
            at = uop + i * sizeof(gnttab_copy_compat);
            gnttab_copy_compat oc;
            if (int rc = c.get(at, oc)) return rc;
            op = {};
            bool sg = oc.flags & gntcopy_source_gref, dg = oc.flags & gntcopy_dest_gref;
            if (sg) op.source.u.ref = oc.source.ref_or_gmfn; else op.source.u.gmfn = oc.source.ref_or_gmfn;
            if (dg) op.dest.u.ref = oc.dest.ref_or_gmfn; else op.dest.u.gmfn = oc.dest.ref_or_gmfn;
            op.source.domid = oc.source.domid;
            op.source.offset = oc.source.offset;
            op.dest.domid = oc.dest.domid;
            op.dest.offset = oc.dest.offset;
            op.len = oc.len;
            op.flags = oc.flags;
            gnt::copy(c.d, op);
            if (int rc = c.put(at + offsetof(gnttab_copy_compat, status), op.status)) return rc;
        } else {
            at = uop + i * sizeof(gnttab_copy);
            if (int rc = c.get(at, op)) return rc;
            gnt::copy(c.d, op);
            if (int rc = c.put(at + offsetof(gnttab_copy, status), op.status)) return rc;
        }
    }
    return 0;
}

std::int64_t grant_table_op(call& c, std::uint64_t cmd, std::uint64_t uop, std::uint64_t count) {
    count &= 0xffffffffu; // unsigned int
    switch (cmd) {
    case gnttabop::map_grant_ref:
    case gnttabop::unmap_grant_ref:
    case gnttabop::copy:
        if (count > gnttab_max_batch) return -err::einval;
        if (cmd == gnttabop::map_grant_ref) return gnttab_map(c, uop, count);
        if (cmd == gnttabop::unmap_grant_ref) return gnttab_unmap(c, uop, count);
        return gnttab_copy_op(c, uop, count);
    case gnttabop::setup_table:
        return gnttab_setup(c, uop, count);
    case gnttabop::query_size: {
        if (count != 1) return -err::einval;
        gnttab_query_size q;
        if (int rc = c.get(uop, q)) return rc;
        if (int rc = check_self(c.d, q.dom)) {
            q.status = rc == -err::esrch ? gntst_bad_domain : gntst_permission_denied;
        } else {
            q.nr_frames = c.d.gnttab.nr_frames;
            q.max_nr_frames = max_grant_frames;
            q.status = gntst_okay;
        }
        return c.put(uop, q);
    }
    case gnttabop::set_version: {
        if (count != 1) return -err::einval;
        gnttab_set_version v;
        if (int rc = c.get(uop, v)) return rc;
        bool ok = v.version == 1;
        v.version = 1; // the version in force
        if (int rc = c.put(uop, v)) return rc;
        return ok ? 0 : -err::einval;
    }
    case gnttabop::get_version: {
        if (count != 1) return -err::einval;
        gnttab_get_version v;
        if (int rc = c.get(uop, v)) return rc;
        if (int rc = check_self(c.d, v.dom)) return rc;
        v.version = 1;
        return c.put(uop, v);
    }
    default:
        return -err::enosys;
    }
}

// ---- event_channel_op -------------------------------------------------------------------
template <class T, class F>
std::int64_t evtchn_inout(call& c, std::uint64_t arg, F&& fn) {
    T a;
    if (int rc = c.get(arg, a)) return rc;
    if (int rc = fn(a)) return rc;
    return c.put(arg, a);
}
template <class T, class F>
std::int64_t evtchn_in(call& c, std::uint64_t arg, F&& fn) {
    T a;
    if (int rc = c.get(arg, a)) return rc;
    return fn(a);
}

std::int64_t event_channel_op(call& c, std::uint64_t cmd, std::uint64_t arg) {
    domain& d = c.d;
    switch (cmd) {
    case evtchnop::alloc_unbound:
        return evtchn_inout<evtchn_alloc_unbound>(c, arg, [&](auto& a) { return ev::alloc_unbound(d, a); });
    case evtchnop::bind_interdomain:
        return evtchn_inout<evtchn_bind_interdomain>(c, arg, [&](auto& a) { return ev::bind_interdomain(d, a); });
    case evtchnop::bind_virq:
        return evtchn_inout<evtchn_bind_virq>(c, arg, [&](auto& a) { return ev::bind_virq(d, a); });
    case evtchnop::bind_ipi:
        return evtchn_inout<evtchn_bind_ipi>(c, arg, [&](auto& a) { return ev::bind_ipi(d, a); });
    case evtchnop::bind_pirq:
        return -err::eperm; // no physical interrupts for guests
    case evtchnop::close:
        return evtchn_in<evtchn_port_arg>(c, arg, [&](auto& a) { return ev::close(d, a.port); });
    case evtchnop::send:
        return evtchn_in<evtchn_port_arg>(c, arg, [&](auto& a) { return ev::send(d, a.port); });
    case evtchnop::status:
        return evtchn_inout<evtchn_status>(c, arg, [&](auto& a) { return ev::get_status(d, a); });
    case evtchnop::bind_vcpu:
        return evtchn_in<evtchn_bind_vcpu>(c, arg, [&](auto& a) { return ev::bind_vcpu(d, a); });
    case evtchnop::unmask:
        return evtchn_in<evtchn_port_arg>(c, arg, [&](auto& a) { return ev::unmask(d, a.port); });
    case evtchnop::reset:
        return evtchn_in<evtchn_reset>(c, arg, [&](auto& a) { return ev::reset(d, a.dom); });
    case evtchnop::init_control:
        return evtchn_inout<evtchn_init_control>(c, arg, [&](auto& a) { return ev::init_control(d, a); });
    case evtchnop::expand_array:
        return evtchn_in<evtchn_expand_array>(c, arg, [&](auto& a) { return ev::expand_array(d, a); });
    case evtchnop::set_priority:
        return evtchn_in<evtchn_set_priority>(c, arg, [&](auto& a) { return ev::set_priority(d, a); });
    default:
        return -err::enosys;
    }
}

// ---- hvm_op -----------------------------------------------------------------------------
int check_callback_via(std::uint64_t v) {
    if (v == 0) return 0; // disables delivery
    std::uint64_t type = v >> hvm_callback_type_shift;
    if (type != hvm_callback_type_vector) return -err::eopnotsupp; // GSI / PCI INTx: no
    if (v & 0x00ffffffffffff00u) return -err::einval;
    if ((v & 0xff) < 0x10) return -err::einval; // exception vectors
    return 0;
}

std::int64_t hvm_op(call& c, std::uint64_t cmd, std::uint64_t arg) {
    if (cmd != hvmop_set_param && cmd != hvmop_get_param) return -err::enosys;
    hvm_param p;
    if (int rc = c.get(arg, p)) return rc;
    if (int rc = check_self(c.d, p.domid)) return rc;
    if (p.index >= hvm_nr_params) return -err::einval;
    if (cmd == hvmop_get_param) {
        p.value = c.d.hvm_param(p.index);
        return c.put(arg, p);
    }
    if (p.index != hvm_param_callback_irq) return -err::eperm; // the toolstack's to set
    if (int rc = check_callback_via(p.value)) return rc;
    c.d.set_hvm_param(p.index, p.value);
    return 0;
}

// ---- vcpu_op ----------------------------------------------------------------------------
std::int64_t vcpu_op(call& c, std::uint64_t cmd, std::uint64_t target, std::uint64_t arg) {
    if (target >= c.d.nr_vcpus()) return -err::enoent;
    auto v = static_cast<std::uint32_t>(target);
    switch (cmd) {
    case vcpuop_register_vcpu_info: {
        vcpu_register_vcpu_info r;
        if (int rc = c.get(arg, r)) return rc;
        if (r.offset > page_size - sizeof(vcpu_info) || (r.offset & 7)) return -err::einval;
        vcpu_state& vs = c.d.vcpu[v];
        if (vs.vcpu_info_registered) return -err::einval;
        auto* frame = static_cast<unsigned char*>(c.d.plat().guest_frame(r.mfn));
        if (!frame) return -err::einval;
        auto* ni = reinterpret_cast<vcpu_info*>(frame + r.offset);
        __builtin_memmove(ni, vs.info, sizeof(vcpu_info));
        vs.info = ni;
        vs.vcpu_info_registered = true;
        // Anything pending may have been missed during the move: have the guest rescan.
        io::store_release(&ni->evtchn_upcall_pending, 0);
        __atomic_store_n(&ni->evtchn_pending_sel, ~xen_ulong_t{0}, __ATOMIC_SEQ_CST);
        c.d.mark_upcall_pending(v);
        return 0;
    }
    case vcpuop_set_singleshot_timer: {
        if (v != c.vcpu) return -err::einval;
        vcpu_set_singleshot_timer t = {};
        if (!c.mem.copy_from_guest(&t, arg, c.compat ? vcpu_set_singleshot_timer_compat_size : sizeof t).ok())
            return -err::efault;
        if ((t.flags & vcpu_sshottmr_future) && t.timeout_abs_ns < c.d.plat().now_ns())
            return -err::etime;
        c.d.plat().set_timer(v, t.timeout_abs_ns);
        return 0;
    }
    case vcpuop_stop_singleshot_timer:
        if (v != c.vcpu) return -err::einval;
        c.d.plat().cancel_timer(v);
        return 0;
    default:
        return -err::enosys;
    }
}

// ---- set_timer_op -----------------------------------------------------------------------
std::int64_t set_timer_op(call& c, std::uint64_t timeout) {
    if (timeout == 0)
        c.d.plat().cancel_timer(c.vcpu);
    else
        c.d.plat().set_timer(c.vcpu, timeout);
    return 0;
}

} // namespace

std::int64_t dispatch_hypercall(domain& d, std::uint32_t vcpu, guest_access& mem,
                                const hypercall_args& a) {
    if (vcpu >= d.nr_vcpus()) return -err::einval;
    bool compat = a.mode == guest_mode::bits32;
    std::uint64_t x[5] = {a.arg[0], a.arg[1], a.arg[2], a.arg[3], a.arg[4]};
    if (compat)
        for (auto& v : x) v &= 0xffffffffu;
    std::uint64_t nr = compat ? (a.nr & 0xffffffffu) : a.nr;
    if (std::int64_t rc; register_only_hypercall(d, vcpu, nr, x[0], rc)) return rc;
    call c{d, vcpu, mem, compat};
    switch (nr) {
    case hc::console_io:
        return console_io(c, x[0] & 0xffffffffu, x[1], x[2]);
    case hc::sched_op:
        return sched_op(c, x[0] & 0xffffffffu, x[1]);
    case hc::xen_version:
        return xen_version(c, x[0] & 0xffffffffu, x[1]);
    case hc::memory_op:
        return memory_op(c, x[0], x[1]);
    case hc::event_channel_op:
        return event_channel_op(c, x[0] & 0xffffffffu, x[1]);
    case hc::grant_table_op:
        return grant_table_op(c, x[0] & 0xffffffffu, x[1], x[2]);
    case hc::hvm_op:
        return hvm_op(c, x[0], x[1]);
    case hc::vcpu_op:
        return vcpu_op(c, x[0] & 0xffffffffu, x[1] & 0xffffffffu, x[2]);
    case hc::set_timer_op:
        return set_timer_op(c, compat ? (x[0] | x[1] << 32) : x[0]);
    default:
        return -err::enosys;
    }
}

bool xen_cpuid(std::uint32_t leaf, std::uint32_t subleaf, domid_t dom, std::uint32_t vcpu,
               cpuid_result& out) {
    if (leaf < cpuid_base || leaf >= cpuid_base + 0x100) return false;
    out = {};
    switch (leaf - cpuid_base) {
    case 0:
        out = {cpuid_max_leaf, cpuid_signature_ebx, cpuid_signature_ecx, cpuid_signature_edx};
        break;
    case 1:
        out.eax = version_major << 16 | version_minor;
        break;
    case 2:
        out.eax = 1;             // hypercall pages
        out.ebx = hypercall_msr; // MSR base
        break;
    case 4:
        if (subleaf == 0) {
            out.eax = hvm_cpuid_vcpu_id_present | hvm_cpuid_domid_present;
            out.ebx = vcpu;
            out.ecx = dom;
        }
        break;
    default: // leaf 3 (TSC info: none offered) and beyond the maximum: zeros
        break;
    }
    return true;
}

void write_hypercall_page(std::span<std::uint8_t, page_size> page, cpu_vendor v) {
    for (auto& b : page) b = 0xcc; // int3 between stubs
    for (unsigned i = 0; i < page_size / hypercall_stub_size; ++i) {
        std::uint8_t* p = page.data() + i * hypercall_stub_size;
        if (i == hc::iret) { // PV only: trap
            p[0] = 0x0f;
            p[1] = 0x0b; // ud2
            continue;
        }
        p[0] = 0xb8; // mov $i, %eax
        p[1] = static_cast<std::uint8_t>(i);
        p[2] = static_cast<std::uint8_t>(i >> 8);
        p[3] = p[4] = 0;
        p[5] = 0x0f;
        p[6] = 0x01;
        p[7] = v == cpu_vendor::intel ? 0xc1 : 0xd9; // vmcall : vmmcall
        p[8] = 0xc3;                                  // ret
    }
}

status hypercall_msr_write(domain& d, std::uint64_t value, cpu_vendor v) {
    if (value & (page_size - 1)) return fail(errc::invalid_argument, "hypercall msr: page index beyond 0");
    auto* frame = static_cast<std::uint8_t*>(d.plat().guest_frame(value >> page_shift));
    if (!frame) return fail(errc::fault, "hypercall msr: not guest RAM");
    write_hypercall_page(std::span<std::uint8_t, page_size>(frame, page_size), v);
    return {};
}

} // namespace hv::xen
