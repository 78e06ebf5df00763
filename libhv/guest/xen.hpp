// Guest side of the Xen HVM/PVH ABI, for libhv-runtime programs running as guests
// (64-bit, ring 0, memory identity-mapped: a pointer is its own guest-physical address).
//
//   find_cpuid_base()      the "XenVMMXenVMM" leaf among 0x40000000 + k * 0x100
//   hypercalls::install    WRMSR (leaf base+2's MSR) <- page: the hypervisor writes the stubs
//   hypercalls::call       `call page + nr * 32`, arguments in rdi rsi rdx r10 r8
//   upcall::install        an IDT gate for the callback vector, HVM_PARAM_CALLBACK_IRQ of
//                          vector type, shared_info placed with add_to_physmap; on each
//                          upcall the 2-level pending bits are scanned and each port's
//                          handler called (interrupts off)
//   console_ring_write     the PV console ring of HVM_PARAM_CONSOLE_PFN / _EVTCHN
//   blk_frontend           a block device through a granted ring, libhv's toolstack
//                          convention (libhv/io/xen_toolstack.hpp), one request at a time
//
// Everything structured comes from libhv/io/xen_abi.hpp, the same definitions the
// hypervisor side uses. Metal only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include "libhv/core/result.hpp"
#include "libhv/io/ring.hpp"
#include "libhv/io/xen_abi.hpp"

namespace hv::guest::xen {

using namespace hv::xen;

// The first CPUID leaf of Xen's range, or nothing when no Xen ABI answers.
[[nodiscard]] std::optional<std::uint32_t> find_cpuid_base();

class hypercalls {
public:
    static constexpr unsigned stub_bytes = 32;  // the page's stub i is at page + i * 32
    // `page`: 4 KiB of RAM, 4 KiB aligned, kept for the page's lifetime.
    [[nodiscard]] status install(std::uint32_t cpuid_base, void* page);
    [[nodiscard]] bool installed() const { return page_ != nullptr; }

    // Inline, as a kernel's hypercall wrappers are: a call costs the stub and the
    // registers of the arguments it has. Xen may change every argument register (its
    // debug builds do), so all five are outputs; only the used ones are set.
    template <class... A>
    std::int64_t call(unsigned nr, A... args) const {
        static_assert(sizeof...(A) <= 5, "Xen hypercalls take at most 5 arguments");
        if (!page_ || nr >= page_size / stub_bytes) [[unlikely]] return -err::enosys;
        return enter(page_ + nr * stub_bytes, static_cast<std::uint64_t>(args)...);
    }
    // The page's stub for hypercall `nr` (nullptr before install or past the page).
    [[nodiscard]] const void* stub(unsigned nr) const {
        return page_ && nr < page_size / stub_bytes ? page_ + nr * stub_bytes : nullptr;
    }
    // Any 64-bit number, not only the page's 128 stubs: VMCALL or VMMCALL directly.
    std::int64_t call_raw(std::uint64_t nr, std::uint64_t a1, std::uint64_t a2, std::uint64_t a3,
                          std::uint64_t a4, std::uint64_t a5) const;

    // Typed calls (pointer arguments are guest-virtual = guest-physical here).
    std::int64_t xen_version(unsigned cmd, void* arg = nullptr) const {
        return call(hc::xen_version, cmd, reinterpret_cast<std::uintptr_t>(arg));
    }
    std::int64_t console_write(const char* s, std::size_t n) const {
        return call(hc::console_io, consoleio_write, n, reinterpret_cast<std::uintptr_t>(s));
    }
    std::int64_t event_channel_op(unsigned cmd, void* arg) const {
        return call(hc::event_channel_op, cmd, reinterpret_cast<std::uintptr_t>(arg));
    }
    std::int64_t grant_table_op(unsigned cmd, void* uop, unsigned count) const {
        return call(hc::grant_table_op, cmd, reinterpret_cast<std::uintptr_t>(uop), count);
    }
    std::int64_t sched_op(unsigned cmd, void* arg = nullptr) const {
        return call(hc::sched_op, cmd, reinterpret_cast<std::uintptr_t>(arg));
    }
    // SCHEDOP_shutdown: does not return when the hypervisor takes it.
    std::int64_t shutdown(unsigned reason) const {
        sched_shutdown s{reason};
        return sched_op(schedop_shutdown, &s);
    }
    std::int64_t set_hvm_param(std::uint32_t index, std::uint64_t value) const;
    std::int64_t get_hvm_param(std::uint32_t index, std::uint64_t& value) const;
    // Places a Xen page (xenmapspace_*) at the frame of `where` (4 KiB of RAM given up to it).
    std::int64_t add_to_physmap(unsigned space, std::uint64_t idx, void* where) const;
    // Event channels.
    std::int64_t alloc_unbound(domid_t remote, evtchn_port_t& port) const;
    std::int64_t bind_interdomain(domid_t remote, evtchn_port_t remote_port, evtchn_port_t& local) const;
    std::int64_t send(evtchn_port_t port) const {
        evtchn_port_arg a{port};
        return event_channel_op(evtchnop::send, &a);
    }
    std::int64_t port_status(evtchn_port_t port, evtchn_status& out) const;

private:
    static std::int64_t enter(const void* stub, std::uint64_t a1 = 0) {
        std::uint64_t rsi, rdx;
        register std::uint64_t r10 asm("r10");
        register std::uint64_t r8 asm("r8");
        std::int64_t rax;
        asm volatile("call *%[stub]"
                     : "=a"(rax), "+D"(a1), "=S"(rsi), "=d"(rdx), "=r"(r10), "=r"(r8)
                     : [stub] "r"(stub)
                     : "memory", "rcx", "r9", "r11");
        return rax;
    }
    static std::int64_t enter(const void* stub, std::uint64_t a1, std::uint64_t a2) {
        std::uint64_t rdx;
        register std::uint64_t r10 asm("r10");
        register std::uint64_t r8 asm("r8");
        std::int64_t rax;
        asm volatile("call *%[stub]"
                     : "=a"(rax), "+D"(a1), "+S"(a2), "=d"(rdx), "=r"(r10), "=r"(r8)
                     : [stub] "r"(stub)
                     : "memory", "rcx", "r9", "r11");
        return rax;
    }
    static std::int64_t enter(const void* stub, std::uint64_t a1, std::uint64_t a2, std::uint64_t a3,
                              std::uint64_t a4 = 0, std::uint64_t a5 = 0) {
        register std::uint64_t r10 asm("r10") = a4;
        register std::uint64_t r8 asm("r8") = a5;
        std::int64_t rax;
        asm volatile("call *%[stub]"
                     : "=a"(rax), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                     : [stub] "r"(stub)
                     : "memory", "rcx", "r9", "r11");
        return rax;
    }

    unsigned char* page_ = nullptr;
    bool amd_ = false;
};

// Xen system time (ns) from a vcpu_time_info and the TSC, as the ABI defines it.
[[nodiscard]] std::uint64_t system_time_ns(const vcpu_time_info& t);

// Event delivery through the callback vector, vCPU 0's vcpu_info in shared_info (a
// one-vCPU guest; several vCPUs need a per-CPU instance). 2-level ABI from install();
// use_fifo() switches the domain to the FIFO ABI: a control block and one page of
// event words (1024 ports), consumed queue by queue from HEAD along LINK.
class upcall {
public:
    static constexpr unsigned max_ports = 64;
    using port_handler = void (*)(evtchn_port_t port, void* ctx);

    // Installs the IDT gate for `vector`, places shared_info at `shared_info_page` (4 KiB
    // of RAM given up to it) and asks for the callback. One instance per guest.
    [[nodiscard]] status install(const hypercalls& h, std::uint8_t vector, void* shared_info_page);
    // Port handlers run with interrupts off, on the interrupted stack.
    [[nodiscard]] status on(evtchn_port_t port, port_handler fn, void* ctx);
    // Two pages of RAM given up to the hypervisor's FIFO structures. Call with
    // interrupts off (events already pending move over to the FIFO queues).
    [[nodiscard]] status use_fifo(const hypercalls& h, void* control_page, void* event_words_page);
    [[nodiscard]] bool fifo() const { return words_ != nullptr; }
    [[nodiscard]] shared_info* shared() const { return shared_; }
    [[nodiscard]] std::uint64_t upcalls() const { return upcalls_; }
    // Called by the interrupt stub.
    void dispatch();

private:
    void dispatch_2l();
    void dispatch_fifo();
    void deliver(evtchn_port_t port) {
        if (port < max_ports && handlers_[port]) handlers_[port](port, ctx_[port]);
    }

    shared_info* shared_ = nullptr;
    evtchn_fifo_control_block* control_ = nullptr;
    std::uint32_t* words_ = nullptr;
    evtchn_port_t fifo_head_[evtchn_fifo_max_queues] = {};
    port_handler handlers_[max_ports] = {};
    void* ctx_[max_ports] = {};
    std::uint64_t upcalls_ = 0;
};

// Grant table frames placed by add_to_physmap; grants written as a frontend does.
class grant_table {
public:
    [[nodiscard]] status install(const hypercalls& h, void* frame_page);
    [[nodiscard]] status grant(grant_ref_t ref, domid_t to, const void* page, bool readonly);
    [[nodiscard]] status end(grant_ref_t ref);
    [[nodiscard]] grant_entry_v1* entries() const { return entries_; }

private:
    grant_entry_v1* entries_ = nullptr;
};

// Waits with interrupts on (STI; HLT, so no wake-up is lost) until `flag` is set by an
// upcall, at most `max_halts` halts. Returns the flag.
bool wait_for(volatile bool& flag, unsigned max_halts = 1000);

// Writes `s` to the PV console ring (io/console.h; the guest produces out[]) and
// notifies its port. False when there is no ring, it is full, or the notify fails.
[[nodiscard]] bool console_ring_write(const hypercalls& h, const char* s, std::size_t n);

// A block device frontend: one request in flight at a time, waiting for its response.
class blk_frontend {
public:
    using sring = io::shared_ring<blkif_request, blkif_response>;

    // Offers the backend domain a port and the ring (granted last: the backend connects
    // when it appears), then waits until the backend has bound the port.
    [[nodiscard]] status connect(const hypercalls& h, upcall& events, grant_table& grants, void* ring_page);
    // One single-segment request over the whole granted page `ref`: the response status
    // (blkif_rsp_*), or a positive number for a broken exchange (1 ring full, 2 notify
    // failed, 3 ring check failed, 4 no response taken, 5 response of another request,
    // 6 no response in time).
    int transfer(const hypercalls& h, std::uint8_t op, std::uint64_t sector, grant_ref_t ref, std::uint64_t id);
    [[nodiscard]] evtchn_port_t port() const { return port_; }
    // Response events taken by the upcall.
    [[nodiscard]] std::uint64_t notifications() const { return notifications_; }

private:
    static void on_event(evtchn_port_t, void* self);

    io::front_ring<sring> ring_;
    evtchn_port_t port_ = 0;
    volatile std::uint64_t notifications_ = 0;
    volatile bool notified_ = false;
};

} // namespace hv::guest::xen
