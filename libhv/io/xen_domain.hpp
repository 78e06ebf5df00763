// A Xen-compatible domain as the hypervisor keeps it: its shared_info page, vCPU event
// state, event channel ports, grant table and HVM parameters, plus the two interfaces
// through which the rest of libhv plugs in:
//
//   guest_access  reads/writes guest-virtual memory for one hypercall (the mmu layer's
//                 guest page-table walker implements it; tests use a fake);
//   platform      the effects a domain needs from the machine: its RAM, placing pages
//                 in its physmap, injecting the callback vector, timers, scheduling,
//                 shutdown, console (the cpu/mmu layers implement it; tests use a fake).
//
// Neither interface has pure virtual functions or a virtual destructor, so nothing here
// needs the C++ runtime (__cxa_pure_virtual, operator delete) on bare metal; the defaults
// fail safely.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/io/xen_abi.hpp"

namespace hv::xen {

class guest_access {
public:
    // Copies n bytes from/to guest-virtual address gva. Fails with errc::fault if any
    // byte does not translate, is not RAM, or (to_guest) is not writable; partial copies
    // may have happened then. Must not crash for any gva/n.
    virtual status copy_from_guest(void* dst, std::uint64_t gva, std::size_t n);
    virtual status copy_to_guest(std::uint64_t gva, const void* src, std::size_t n);

protected:
    ~guest_access() = default;
};

class platform {
public:
    // This domain's RAM: host pointer to the 4 KiB frame `gfn`, or nullptr if gfn is not
    // RAM. The pointer stays valid while the domain lives.
    virtual void* guest_frame(std::uint64_t gfn);
    // Place the hypervisor-owned 4 KiB page `page` at frame `gfn` of this domain's
    // physmap (shared_info, grant-table frames), replacing what was there.
    virtual status map_hypervisor_page(std::uint64_t gfn, void* page);
    // Place another domain's granted frame at `gfn` (GNTTABOP_map_grant_ref host_map);
    // read-only if asked. unmap restores whatever belongs there.
    virtual status map_foreign_page(std::uint64_t gfn, void* page, bool readonly);
    virtual status unmap_foreign_page(std::uint64_t gfn);
    // vCPU `vcpu` has a new pending event upcall (evtchn_upcall_pending went 0 -> 1):
    // wake it if blocked, and inject `vector` if nonzero (HVM_PARAM_CALLBACK_IRQ of
    // vector type). See domain::pending_callback_vector() for re-injection.
    virtual void raise_callback(std::uint32_t vcpu, std::uint8_t vector);
    // Xen system time in ns (the time base of the timer hypercalls).
    virtual std::uint64_t now_ns();
    // One-shot timer per vCPU; when it fires call domain::timer_expired(vcpu).
    virtual void set_timer(std::uint32_t vcpu, std::uint64_t deadline_ns);
    virtual void cancel_timer(std::uint32_t vcpu);
    // Scheduling: give up the CPU; or sleep until an upcall is pending or the timer fires
    // (a spurious return is allowed).
    virtual void yield(std::uint32_t vcpu);
    virtual void block(std::uint32_t vcpu);
    virtual void shutdown(unsigned reason);
    virtual void console_write(const char* s, std::size_t n);
    virtual std::size_t console_read(char* s, std::size_t n);

protected:
    ~platform() = default;
};

// ---- sizing (fixed: no heap) ------------------------------------------------------------
inline constexpr unsigned max_vcpus = 8;
inline constexpr unsigned max_domains = 16;
inline constexpr unsigned max_evtchn_ports = 1024; // <= evtchn_2l_nr_channels
inline constexpr unsigned evtchn_fifo_max_pages =
    (max_evtchn_ports + evtchn_fifo_words_per_page - 1) / evtchn_fifo_words_per_page;
inline constexpr unsigned max_grant_frames = 4;
inline constexpr unsigned max_grant_entries = max_grant_frames * grant_entries_per_frame;
inline constexpr unsigned max_maptrack = 256;
inline constexpr std::uint64_t no_gfn = ~std::uint64_t{0};
static_assert(max_evtchn_ports <= evtchn_2l_nr_channels);
static_assert(max_vcpus <= legacy_max_vcpus);

// ---- event channels ---------------------------------------------------------------------
enum class evtchn_state : std::uint8_t { free, unbound, interdomain, virq, ipi };
enum class evtchn_abi : std::uint8_t { two_level, fifo };

struct evtchn {
    evtchn_state state = evtchn_state::free;
    std::uint8_t priority = evtchn_fifo_priority_default;
    bool early_pending = false; // FIFO: raised before its event word existed
    domid_t remote_dom = 0;     // unbound: who may bind; interdomain: peer
    evtchn_port_t remote_port = 0;
    std::uint32_t notify_vcpu = 0;
    std::uint32_t virq = 0;
};

struct fifo_queue {
    evtchn_port_t tail = 0; // last port linked (hypervisor-private); 0 = none
};

struct vcpu_state {
    vcpu_info* info = nullptr; // shared_info slot, or the registered one
    evtchn_fifo_control_block* fifo_cb = nullptr;
    fifo_queue fifo_q[evtchn_fifo_max_queues];
    evtchn_port_t virq_port[nr_virqs] = {};
    bool vcpu_info_registered = false;
};

// ---- grant tables -----------------------------------------------------------------------
struct grant_active {          // hypervisor-private state of one grant entry
    std::uint16_t readers = 0; // pins for read (maps and copies in progress)
    std::uint16_t writers = 0; // pins for write
    domid_t accessor = 0;      // the domain holding the pins
    std::uint32_t frame = 0;   // the frame pinned (read once, at the first pin)
};

struct maptrack_entry {        // one grant mapping held *by* this domain
    bool used = false;
    bool readonly = false;
    domid_t granter = 0;
    grant_ref_t ref = 0;
    std::uint64_t host_gfn = no_gfn; // where it is mapped in our physmap, if host_map
    void* page = nullptr;
};

struct grant_table {
    alignas(4096) grant_entry_v1 shared[max_grant_entries]; // the guest-visible frames
    std::uint32_t nr_frames = 1;
    std::uint64_t frame_gfn[max_grant_frames]; // where the guest placed each frame
    grant_active active[max_grant_entries];
    maptrack_entry maptrack[max_maptrack];

    [[nodiscard]] std::uint32_t nr_entries() const { return nr_frames * grant_entries_per_frame; }
};

class domain_table;

// ---- the domain ---------------------------------------------------------------------------
class domain {
public:
    domain() = default;
    domain(const domain&) = delete;
    domain& operator=(const domain&) = delete;

    // `p` and `t` must outlive the domain. Registers it in `t`.
    status init(domid_t id, unsigned nr_vcpus, platform& p, domain_table& t);

    [[nodiscard]] domid_t id() const { return id_; }
    [[nodiscard]] unsigned nr_vcpus() const { return nr_vcpus_; }
    [[nodiscard]] platform& plat() { return *plat_; }
    [[nodiscard]] domain_table& table() { return *table_; }
    [[nodiscard]] shared_info* shared() { return reinterpret_cast<shared_info*>(shared_page_); }
    [[nodiscard]] void* shared_page() { return shared_page_; }

    // Resolves DOMID_SELF.
    [[nodiscard]] domid_t resolve(domid_t d) const { return d == domid_self ? id_ : d; }
    [[nodiscard]] bool is_self(domid_t d) const { return d == domid_self || d == id_; }

    // ---- event delivery (used by event channels, timers, the cpu layer) ----------------
    // Sets evtchn_upcall_pending and, on its 0 -> 1 edge, calls platform::raise_callback.
    void mark_upcall_pending(std::uint32_t vcpu);
    // HVM: the vector to inject while evtchn_upcall_pending is set (checked by the cpu
    // layer before VM entry, like an interrupt line), or 0.
    [[nodiscard]] std::uint8_t pending_callback_vector(std::uint32_t vcpu);
    [[nodiscard]] std::uint8_t callback_vector() const;
    // The vCPU's one-shot timer fired: raises VIRQ_TIMER on it.
    void timer_expired(std::uint32_t vcpu);
    // Raises `virq` on `vcpu` if a port is bound to it.
    void raise_virq(std::uint32_t vcpu, std::uint32_t virq);

    // HVM parameters as the toolstack sets them (console/xenstore pfn and port, ...).
    void set_hvm_param(std::uint32_t index, std::uint64_t value) {
        if (index < hvm_nr_params) hvm_params_[index] = value;
    }
    [[nodiscard]] std::uint64_t hvm_param(std::uint32_t index) const {
        return index < hvm_nr_params ? hvm_params_[index] : 0;
    }

    // State (public for the event-channel, grant-table and hypercall code in libhv/io).
    vcpu_state vcpu[max_vcpus];
    evtchn ports[max_evtchn_ports];
    evtchn_abi abi = evtchn_abi::two_level;
    std::uint32_t* fifo_array[evtchn_fifo_max_pages] = {};
    unsigned fifo_array_pages = 0;
    grant_table gnttab;
    std::uint32_t shutdown_code = 0;
    bool shut_down = false;

private:
    alignas(4096) unsigned char shared_page_[page_size] = {};
    domid_t id_ = domid_invalid;
    unsigned nr_vcpus_ = 0;
    platform* plat_ = nullptr;
    domain_table* table_ = nullptr;
    std::uint64_t hvm_params_[hvm_nr_params] = {};
};

// All domains the hypervisor runs (and the in-hypervisor backend domain), by id.
class domain_table {
public:
    [[nodiscard]] domain* find(domid_t id) {
        for (auto* d : doms_)
            if (d && d->id() == id) return d;
        return nullptr;
    }
    status add(domain& d);
    void remove(domain& d) {
        for (auto*& s : doms_)
            if (s == &d) s = nullptr;
    }

private:
    domain* doms_[max_domains] = {};
};

} // namespace hv::xen
