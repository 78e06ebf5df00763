#include "libhv/guest/xen.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "libhv/io/xen_toolstack.hpp"

// The callback vector's entry: an interrupt gate, no error code. Saves the registers a
// C++ call may clobber, aligns the stack, calls the dispatcher, returns with IRETQ.
asm(R"(
    .text
    .code64
    .globl hv_guest_xen_upcall_entry
hv_guest_xen_upcall_entry:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbx
    movq %rsp, %rbx
    andq $-16, %rsp
    cld
    call hv_guest_xen_upcall
    movq %rbx, %rsp
    popq %rbx
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq
)");

extern "C" void hv_guest_xen_upcall_entry();

namespace hv::guest::xen {
namespace {

upcall* the_upcall = nullptr;

bool is_page_aligned(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & (page_size - 1)) == 0; }
std::uint64_t frame_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p) >> page_shift; }

} // namespace
} // namespace hv::guest::xen

extern "C" void hv_guest_xen_upcall() {
    if (hv::guest::xen::the_upcall) hv::guest::xen::the_upcall->dispatch();
}

namespace hv::guest::xen {

std::optional<std::uint32_t> find_cpuid_base() {
    for (std::uint32_t leaf = cpuid_base; leaf < cpuid_base + 0x10000; leaf += 0x100) {
        const auto r = x86::cpuid(leaf);
        if (r.ebx == cpuid_signature_ebx && r.ecx == cpuid_signature_ecx && r.edx == cpuid_signature_edx &&
            r.eax >= leaf + 2)
            return leaf;
    }
    return std::nullopt;
}

std::uint64_t system_time_ns(const vcpu_time_info& t) {
    for (;;) {
        const std::uint32_t v = __atomic_load_n(&t.version, __ATOMIC_ACQUIRE);
        std::uint64_t delta = x86::rdtsc() - t.tsc_timestamp;
        delta = t.tsc_shift >= 0 ? delta << t.tsc_shift : delta >> -t.tsc_shift;
        const std::uint64_t ns =
            t.system_time + static_cast<std::uint64_t>((static_cast<unsigned __int128>(delta) * t.tsc_to_system_mul) >> 32);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!(v & 1) && v == __atomic_load_n(&t.version, __ATOMIC_RELAXED)) return ns;
    }
}

status hypercalls::install(std::uint32_t base, void* page) {
    if (!page || !is_page_aligned(page)) return fail(errc::invalid_argument, "hypercall page not page aligned");
    const auto leaf2 = x86::cpuid(base + 2);
    if (leaf2.eax < 1) return fail(errc::not_supported, "Xen offers no hypercall page");
    const auto vendor = x86::cpuid(0);
    amd_ = vendor.ebx == 0x68747541;  // "Auth"enticAMD
    if (!x86::wrmsr_safe(leaf2.ebx, reinterpret_cast<std::uintptr_t>(page)))
        return fail(errc::fault, "hypercall-page MSR write refused (#GP)");
    page_ = static_cast<unsigned char*>(page);
    return {};
}

std::int64_t hypercalls::call_raw(std::uint64_t nr, std::uint64_t a1, std::uint64_t a2, std::uint64_t a3,
                                  std::uint64_t a4, std::uint64_t a5) const {
    register std::uint64_t r10 asm("r10") = a4;
    register std::uint64_t r8 asm("r8") = a5;
    std::uint64_t rax = nr;
    if (amd_)
        asm volatile("vmmcall" : "+a"(rax), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8) : : "memory");
    else
        asm volatile("vmcall" : "+a"(rax), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8) : : "memory");
    return static_cast<std::int64_t>(rax);
}

std::int64_t hypercalls::set_hvm_param(std::uint32_t index, std::uint64_t value) const {
    hvm_param p{domid_self, 0, index, value};
    return call(hc::hvm_op, hvmop_set_param, reinterpret_cast<std::uintptr_t>(&p));
}

std::int64_t hypercalls::get_hvm_param(std::uint32_t index, std::uint64_t& value) const {
    hvm_param p{domid_self, 0, index, 0};
    const std::int64_t rc = call(hc::hvm_op, hvmop_get_param, reinterpret_cast<std::uintptr_t>(&p));
    if (rc == 0) value = p.value;
    return rc;
}

std::int64_t hypercalls::add_to_physmap(unsigned space, std::uint64_t idx, void* where) const {
    if (!is_page_aligned(where)) return -err::einval;
    struct add_to_physmap x{domid_self, 0, space, idx, frame_of(where)};
    return call(hc::memory_op, xenmem_add_to_physmap, reinterpret_cast<std::uintptr_t>(&x));
}

std::int64_t hypercalls::alloc_unbound(domid_t remote, evtchn_port_t& port) const {
    evtchn_alloc_unbound a{domid_self, remote, 0};
    const std::int64_t rc = event_channel_op(evtchnop::alloc_unbound, &a);
    if (rc == 0) port = a.port;
    return rc;
}

std::int64_t hypercalls::bind_interdomain(domid_t remote, evtchn_port_t remote_port, evtchn_port_t& local) const {
    evtchn_bind_interdomain b{remote, 0, remote_port, 0};
    const std::int64_t rc = event_channel_op(evtchnop::bind_interdomain, &b);
    if (rc == 0) local = b.local_port;
    return rc;
}

std::int64_t hypercalls::port_status(evtchn_port_t port, evtchn_status& out) const {
    out = {};
    out.dom = domid_self;
    out.port = port;
    return event_channel_op(evtchnop::status, &out);
}

// ---- upcall ----------------------------------------------------------------------------

status upcall::install(const hypercalls& h, std::uint8_t vector, void* shared_info_page) {
    if (vector < 0x20) return fail(errc::invalid_argument, "callback vector below 0x20 (exceptions)");
    if (the_upcall && the_upcall != this) return fail(errc::exists, "an upcall is installed already");
    if (h.add_to_physmap(xenmapspace_shared_info, 0, shared_info_page) != 0)
        return fail(errc::fault, "add_to_physmap(shared_info) refused");
    shared_ = static_cast<shared_info*>(shared_info_page);
    the_upcall = this;
    // An interrupt gate (P, DPL 0, type 0xE) on the current code selector.
    const auto idt = x86::current_idt();
    auto* gate = reinterpret_cast<std::uint64_t*>(idt.base + 16u * vector);
    const auto handler = reinterpret_cast<std::uintptr_t>(&hv_guest_xen_upcall_entry);
    std::uint16_t cs;
    asm volatile("mov %%cs, %0" : "=r"(cs));
    gate[0] = (handler & 0xffff) | (std::uint64_t{cs} << 16) | (std::uint64_t{0x8e} << 40) |
              ((handler >> 16 & 0xffff) << 48);
    gate[1] = handler >> 32;
    asm volatile("" ::: "memory");
    if (h.set_hvm_param(hvm_param_callback_irq, hvm_callback_type_vector << hvm_callback_type_shift | vector) != 0)
        return fail(errc::not_supported, "HVM_PARAM_CALLBACK_IRQ (vector) refused");
    return {};
}

status upcall::on(evtchn_port_t port, port_handler fn, void* ctx) {
    if (port >= max_ports) return fail(errc::out_of_range, "upcall: port beyond the handler table");
    ctx_[port] = ctx;
    handlers_[port] = fn;
    return {};
}

status upcall::use_fifo(const hypercalls& h, void* control_page, void* event_words_page) {
    if (!shared_) return fail(errc::invalid_argument, "upcall: install() first");
    if (!is_page_aligned(control_page) || !is_page_aligned(event_words_page))
        return fail(errc::invalid_argument, "FIFO pages not page aligned");
    evtchn_init_control ic{};
    ic.control_gfn = frame_of(control_page);
    ic.offset = 0;
    ic.vcpu = 0;
    control_ = static_cast<evtchn_fifo_control_block*>(control_page);
    words_ = static_cast<std::uint32_t*>(event_words_page);
    if (h.event_channel_op(evtchnop::init_control, &ic) != 0) {
        control_ = nullptr;
        words_ = nullptr;
        return fail(errc::not_supported, "EVTCHNOP_init_control refused");
    }
    if (ic.link_bits != evtchn_fifo_link_bits) return fail(errc::not_supported, "unexpected FIFO link bits");
    evtchn_expand_array ea{frame_of(event_words_page)};
    if (h.event_channel_op(evtchnop::expand_array, &ea) != 0)
        return fail(errc::not_supported, "EVTCHNOP_expand_array refused");
    for (auto& q : fifo_head_) q = 0;
    return {};
}

void upcall::dispatch() {
    ++upcalls_;
    // Clear the line first, then consume: an event raised meanwhile leaves its trail
    // (selector or READY bit) and raises the line again.
    io::store_release(&shared_->vcpu[0].evtchn_upcall_pending, std::uint8_t{0});
    if (words_) dispatch_fifo();
    else dispatch_2l();
}

// Takes READY, then walks each ready queue from HEAD (or where the last walk stopped)
// along LINK: unlink the word, clear PENDING, deliver unless masked.
void upcall::dispatch_fifo() {
    std::uint32_t ready = __atomic_exchange_n(&control_->ready, 0u, __ATOMIC_SEQ_CST);
    while (ready) {
        const unsigned q = static_cast<unsigned>(__builtin_ctz(ready));
        evtchn_port_t port = fifo_head_[q];
        if (!port) port = __atomic_load_n(&control_->head[q], __ATOMIC_SEQ_CST);
        if (!port || port >= evtchn_fifo_words_per_page) {
            ready &= ~(1u << q);
            continue;
        }
        std::uint32_t w = __atomic_load_n(&words_[port], __ATOMIC_SEQ_CST);
        while (!__atomic_compare_exchange_n(&words_[port], &w, w & ~(evtchn_fifo_linked | evtchn_fifo_link_mask), false,
                                            __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        }
        const evtchn_port_t next = w & evtchn_fifo_link_mask;
        if (!next) ready &= ~(1u << q);
        const std::uint32_t was = __atomic_fetch_and(&words_[port], ~evtchn_fifo_pending, __ATOMIC_SEQ_CST);
        fifo_head_[q] = next;
        if ((was & evtchn_fifo_pending) && !(was & evtchn_fifo_masked)) deliver(port);
        ready |= __atomic_exchange_n(&control_->ready, 0u, __ATOMIC_SEQ_CST);
    }
}

void upcall::dispatch_2l() {
    vcpu_info& vi = shared_->vcpu[0];
    std::uint64_t sel = __atomic_exchange_n(&vi.evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
    while (sel) {
        const unsigned w = static_cast<unsigned>(__builtin_ctzll(sel));
        sel &= sel - 1;
        std::uint64_t bits = io::load_acquire(&shared_->evtchn_pending[w]) & ~io::load_acquire(&shared_->evtchn_mask[w]);
        while (bits) {
            const unsigned b = static_cast<unsigned>(__builtin_ctzll(bits));
            bits &= bits - 1;
            __atomic_fetch_and(&shared_->evtchn_pending[w], ~(std::uint64_t{1} << b), __ATOMIC_SEQ_CST);
            deliver(w * 64 + b);
        }
    }
}

// ---- grant table -------------------------------------------------------------------------

status grant_table::install(const hypercalls& h, void* frame_page) {
    if (h.add_to_physmap(xenmapspace_grant_table, 0, frame_page) != 0)
        return fail(errc::fault, "add_to_physmap(grant_table 0) refused");
    entries_ = static_cast<grant_entry_v1*>(frame_page);
    return {};
}

status grant_table::grant(grant_ref_t ref, domid_t to, const void* page, bool readonly) {
    if (!entries_) return fail(errc::invalid_argument, "grant table not installed");
    if (!is_page_aligned(page)) return fail(errc::invalid_argument, "granted page not page aligned");
    return hv::xen::gnt::guest::grant_access({entries_, grant_entries_per_frame}, ref, to,
                                             static_cast<std::uint32_t>(frame_of(page)), readonly);
}

status grant_table::end(grant_ref_t ref) {
    if (!entries_) return fail(errc::invalid_argument, "grant table not installed");
    return hv::xen::gnt::guest::end_access({entries_, grant_entries_per_frame}, ref);
}

// ---- waiting, console ring, block frontend ----------------------------------------------

bool wait_for(volatile bool& flag, unsigned max_halts) {
    for (unsigned i = 0; i < max_halts; ++i) {
        asm volatile("cli" ::: "memory");
        if (flag) {
            asm volatile("sti" ::: "memory");
            return true;
        }
        asm volatile("sti; hlt" ::: "memory");  // the STI shadow covers HLT
    }
    return flag;
}

bool console_ring_write(const hypercalls& h, const char* s, std::size_t n) {
    std::uint64_t pfn = 0, port = 0;
    if (h.get_hvm_param(hvm_param_console_pfn, pfn) || h.get_hvm_param(hvm_param_console_evtchn, port)) return false;
    if (!pfn) return false;
    auto* intf = reinterpret_cast<xencons_interface*>(pfn << page_shift);
    std::uint32_t prod = io::load_relaxed(&intf->out_prod);
    const std::uint32_t cons = io::load_acquire(&intf->out_cons);
    if (n > sizeof intf->out - (prod - cons)) return false;
    for (std::size_t i = 0; i < n; ++i) intf->out[prod++ % sizeof intf->out] = s[i];
    io::store_release(&intf->out_prod, prod);
    return h.send(static_cast<evtchn_port_t>(port)) == 0;
}

void blk_frontend::on_event(evtchn_port_t, void* self) {
    auto* f = static_cast<blk_frontend*>(self);
    f->notifications_ = f->notifications_ + 1;
    f->notified_ = true;
}

status blk_frontend::connect(const hypercalls& h, upcall& events, grant_table& grants, void* ring_page) {
    namespace ts = hv::xen::toolstack;
    if (!is_page_aligned(ring_page)) return fail(errc::invalid_argument, "block ring not page aligned");
    ring_.init(static_cast<sring*>(ring_page));
    if (h.alloc_unbound(ts::backend_domid, port_) != 0) return fail(errc::fault, "EVTCHNOP_alloc_unbound (backend)");
    HV_TRY(events.on(port_, &on_event, this));
    HV_TRY(grants.grant(ts::blk_ring_ref, ts::backend_domid, ring_page, false));
    for (unsigned i = 0; i < 1000; ++i) {
        evtchn_status st;
        if (h.port_status(port_, st) != 0) return fail(errc::fault, "EVTCHNOP_status");
        if (st.status == evtchnstat_interdomain) return {};
        (void)h.sched_op(schedop_yield);
    }
    return fail(errc::would_block, "the block backend never bound the port");
}

int blk_frontend::transfer(const hypercalls& h, std::uint8_t op, std::uint64_t sector, grant_ref_t ref,
                           std::uint64_t id) {
    const bool ok = ring_.emplace_request([&](blkif_request& r) {
        r = {};
        r.operation = op;
        r.nr_segments = 1;
        r.id = id;
        r.sector_number = sector;
        r.seg[0] = {ref, 0, 7, 0};
    });
    if (!ok) return 1;
    // Ask for an event with the response (rsp_event = the next one), as a frontend about
    // to wait does: each request exercises backend -> guest delivery.
    if (!ring_.final_check_for_responses()) return 3;
    if (ring_.push_requests() && h.send(port_) != 0) return 2;
    for (unsigned tries = 0; tries < 1000; ++tries) {
        auto more = ring_.final_check_for_responses();
        if (!more) return 3;
        if (*more) {
            blkif_response rsp;
            (void)ring_.unconsumed_responses();
            if (!ring_.take_response(rsp)) return 4;
            if (rsp.id != id || rsp.operation != op) return 5;
            return rsp.status;
        }
        notified_ = false;
        (void)wait_for(notified_, 1);
    }
    return 6;
}

} // namespace hv::guest::xen
