#include "libhv/io/xen_domain.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_evtchn.hpp"

namespace hv::xen {

// ---- interface defaults: fail safely ------------------------------------------------------
status guest_access::copy_from_guest(void*, std::uint64_t, std::size_t) {
    return fail(errc::fault, "guest_access: no guest memory");
}
status guest_access::copy_to_guest(std::uint64_t, const void*, std::size_t) {
    return fail(errc::fault, "guest_access: no guest memory");
}

void* platform::guest_frame(std::uint64_t) { return nullptr; }
status platform::map_hypervisor_page(std::uint64_t, void*) {
    return fail(errc::not_supported, "platform: cannot change the physmap");
}
status platform::map_foreign_page(std::uint64_t, void*, bool) {
    return fail(errc::not_supported, "platform: cannot map foreign pages");
}
status platform::unmap_foreign_page(std::uint64_t) {
    return fail(errc::not_supported, "platform: cannot map foreign pages");
}
void platform::raise_callback(std::uint32_t, std::uint8_t) {}
std::uint64_t platform::now_ns() { return 0; }
void platform::set_timer(std::uint32_t, std::uint64_t) {}
void platform::cancel_timer(std::uint32_t) {}
void platform::yield(std::uint32_t) {}
void platform::block(std::uint32_t) {}
void platform::shutdown(unsigned) {}
void platform::console_write(const char*, std::size_t) {}
std::size_t platform::console_read(char*, std::size_t) { return 0; }

// ---- domain -----------------------------------------------------------------------------
status domain::init(domid_t id, unsigned nr_vcpus, platform& p, domain_table& t) {
    if (id >= domid_first_reserved) return fail(errc::invalid_argument, "domain: reserved domid");
    if (nr_vcpus == 0 || nr_vcpus > max_vcpus)
        return fail(errc::invalid_argument, "domain: bad vCPU count");
    if (t.find(id)) return fail(errc::exists, "domain: domid in use");
    id_ = id;
    nr_vcpus_ = nr_vcpus;
    plat_ = &p;
    table_ = &t;
    __builtin_memset(shared_page_, 0, sizeof shared_page_);
    for (unsigned v = 0; v < max_vcpus; ++v) {
        vcpu[v] = vcpu_state{};
        vcpu[v].info = &shared()->vcpu[v];
    }
    for (auto& c : ports) c = evtchn{};
    abi = evtchn_abi::two_level;
    for (auto& a : fifo_array) a = nullptr;
    fifo_array_pages = 0;
    __builtin_memset(gnttab.shared, 0, sizeof gnttab.shared);
    gnttab.nr_frames = 1;
    for (auto& g : gnttab.frame_gfn) g = no_gfn;
    for (auto& a : gnttab.active) a = grant_active{};
    for (auto& m : gnttab.maptrack) m = maptrack_entry{};
    for (auto& h : hvm_params_) h = 0;
    shutdown_code = 0;
    shut_down = false;
    return t.add(*this);
}

void domain::mark_upcall_pending(std::uint32_t v) {
    if (v >= nr_vcpus_) return;
    vcpu_info* vi = vcpu[v].info;
    if (__atomic_exchange_n(&vi->evtchn_upcall_pending, std::uint8_t{1}, __ATOMIC_SEQ_CST)) return;
    // HVM: delivery does not look at evtchn_upcall_mask (a PV-only interrupt flag).
    plat_->raise_callback(v, callback_vector());
}

std::uint8_t domain::callback_vector() const {
    std::uint64_t via = hvm_params_[hvm_param_callback_irq];
    if ((via >> hvm_callback_type_shift) != hvm_callback_type_vector) return 0;
    return static_cast<std::uint8_t>(via & 0xff);
}

std::uint8_t domain::pending_callback_vector(std::uint32_t v) {
    if (v >= nr_vcpus_) return 0;
    if (!io::load_acquire(&vcpu[v].info->evtchn_upcall_pending)) return 0;
    return callback_vector();
}

void domain::raise_virq(std::uint32_t v, std::uint32_t virq) {
    if (v >= nr_vcpus_ || virq >= nr_virqs) return;
    evtchn_port_t p = vcpu[v].virq_port[virq];
    if (p) ev::set_pending(*this, p);
}

void domain::timer_expired(std::uint32_t v) { raise_virq(v, virq_timer); }

status domain_table::add(domain& d) {
    if (find(d.id())) return fail(errc::exists, "domain_table: domid in use");
    for (auto*& s : doms_) {
        if (!s) {
            s = &d;
            return {};
        }
    }
    return fail(errc::no_memory, "domain_table: full");
}

} // namespace hv::xen
