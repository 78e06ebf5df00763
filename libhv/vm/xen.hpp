// The Xen HVM/PVH ABI attached to a guest (a vm::guest on metal, a fake in host tests):
//
//   CPUID 0x40000000..      xen_cpuid; other leaves go to the handler installed before
//   WRMSR 0x40000000        the hypercall page (VMCALL or VMMCALL stubs) into guest RAM;
//                           a bad value is #GP. Other MSRs: the handler installed before
//   VMCALL / VMMCALL        dispatch_hypercall: args rdi rsi rdx r10 r8 (64-bit) or
//                           ebx ecx edx esi edi (32-bit), result in rax. CPL > 0: -EPERM
//   hypercall memory        mmu::copy_{from,to}_guest_virtual over the guest's paging as
//                           the vCPU has it (walks remembered per vCPU in a gva_cache)
//                           and over its physmap (placed pages included)
//   callback vector         an interrupt line per vCPU (the vCPU's cpu::interrupt_source,
//                           set while evtchn_upcall_pending is) injecting the vector at
//                           every entry open to it, as Xen does for HVM_PARAM_CALLBACK_IRQ
//                           of vector type; it wakes a halted vCPU. An interrupt source
//                           installed before attach (an emulated LAPIC, for PV-on-HVM)
//                           keeps delivering: the callback vector goes first
//   timers                  a deadline per vCPU, checked before each entry while armed
//                           (entry hook) and, while every vCPU sleeps, by idle():
//                           time = ticks / rate, published in each vcpu_info's time
//                           fields so the guest computes the same system time
//   SCHEDOP_block           the vCPU halts (woken by the callback vector, with IF = 1)
//   SCHEDOP_shutdown        every vCPU stops; the reason is the run's result()
//   console_io              the host console, each line prefixed
//
// G must provide: vcpu_count(), vcpu(i) -> cpu::vcpu&, vendor(), paging_registers(v),
// features(), host_pointer(gpa, for_write) (mmu::physical_memory over what the guest
// sees) and host_pointer_generation() (changes whenever a pointer it gave may have),
// place_page(gpa, hpa, writable), restore_page(gpa), static host_physical(ptr),
// static of(vcpu&) -> G&, set_hypercall_owner(void*) / hypercall_owner() (where a
// handler finds the xen_hvm of its vCPU's guest) and static call_mode(v) ->
// cpu::call_mode (64/32-bit, CPL 0 or not). Header-only so host tests instantiate
// it with a fake.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include "libhv/arch/x86/regs.hpp"
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_domain.hpp"
#include "libhv/io/xen_hypercall.hpp"
#include "libhv/mmu/guest_paging.hpp"

namespace hv::vm {

// Where the guest's time comes from: a tick counter (the TSC on metal) and its rate.
struct xen_clock {
    void* ctx = nullptr;
    std::uint64_t (*ticks)(void* ctx) = nullptr;
    std::uint64_t ticks_per_us = 1000;
    [[nodiscard]] std::uint64_t now_ns() const { return ticks ? ticks(ctx) * 1000 / ticks_per_us : 0; }
};

struct xen_config {
    xen::domid_t domid = 1;
    const fmt::sink* console = nullptr;  // guest console output (console_io, console ring)
    const char* console_prefix = "guest: ";
    xen_clock clock{};
};

// The platform of an in-hypervisor backend domain (no RAM, no vCPU): an event for it
// sets `kicked`, so the vCPU that sent it yields and the backend tasks run.
class backend_domain_platform final : public xen::platform {
public:
    void raise_callback(std::uint32_t vcpu, std::uint8_t) override {
        kicked = true;
        // Nobody scans this domain's selectors: consume the upcall so the next event
        // raises it again (backends test their ports' pending bits directly).
        if (dom && vcpu < dom->nr_vcpus()) {
            __atomic_store_n(&dom->vcpu[vcpu].info->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&dom->vcpu[vcpu].info->evtchn_upcall_pending, 0, __ATOMIC_SEQ_CST);
        }
    }
    xen::domain* dom = nullptr;
    bool kicked = false;
};

template <class G>
class xen_hvm final : public xen::platform {
public:
    xen_hvm() = default;
    xen_hvm(const xen_hvm&) = delete;
    xen_hvm& operator=(const xen_hvm&) = delete;

    // Makes `g` a Xen guest: creates its domain in `t` and installs the handlers on every
    // vCPU, after vm::guest::start() (whose CPUID/MSR handlers ours chain to) and before
    // the guest runs. An interrupt source and an entry hook installed before keep
    // working (later ones go through chain_entry_hook; a later source is not supported). `backend` (optional): the platform of
    // the backend domain, whose kicks make the calling vCPU yield.
    [[nodiscard]] status attach(G& g, xen::domain_table& t, const xen_config& c,
                                backend_domain_platform* backend = nullptr) {
        if (g.vcpu_count() == 0 || g.vcpu_count() > xen::max_vcpus)
            return fail(errc::out_of_range, "xen: vCPU count outside what a domain holds");
        if (g.hypercall_owner()) return fail(errc::busy, "xen: the guest has a hypercall ABI attached already");
        HV_TRY(dom_.init(c.domid, g.vcpu_count(), *this, t));
        g_ = &g;
        cfg_ = c;
        backend_ = backend;
        g.set_hypercall_owner(this);
        cpu::vcpu& v0 = g.vcpu(0);
        prev_cpuid_ = v0.handler(cpu::exit_reason::cpuid);
        prev_msr_write_ = v0.handler(cpu::exit_reason::msr_write);
        for (unsigned i = 0; i < g.vcpu_count(); ++i) {
            cpu::vcpu& v = g.vcpu(i);
            v.on(cpu::exit_reason::cpuid, &on_cpuid);
            v.on(cpu::exit_reason::msr_write, &on_msr_write);
            v.on(cpu::exit_reason::hypercall, &on_hypercall);
            line_[i] = {this, i};
            prev_source_[i] = v.current_interrupt_source();
            prev_hook_[i] = v.current_entry_hook();
            deadline_[i] = 0;
            publish_time(i);
        }
        return {};
    }
    // Another part's entry hook on `vcpu`: it keeps running, before ours while a timer
    // is armed (install it through here, not on the vCPU, once attached).
    void chain_entry_hook(unsigned vcpu, const cpu::entry_hook& h) {
        if (vcpu >= g_->vcpu_count()) return;
        prev_hook_[vcpu] = h;
        g_->vcpu(vcpu).set_entry_hook(deadline_[vcpu] ? cpu::entry_hook{&line_[vcpu], &before_entry} : h);
    }

    ~xen_hvm() {
        if (!g_) return;
        if (g_->hypercall_owner() == this) g_->set_hypercall_owner(nullptr);
        dom_.table().remove(dom_);
    }

    [[nodiscard]] xen::domain& domain() { return dom_; }
    [[nodiscard]] G& guest() { return *g_; }
    // Hypercall exits of the guest's vCPUs (their exit logs count them).
    [[nodiscard]] std::uint64_t hypercalls() const {
        std::uint64_t n = 0;
        for (unsigned i = 0; i < g_->vcpu_count(); ++i) n += g_->vcpu(i).log.count(cpu::exit_reason::hypercall);
        return n;
    }
    [[nodiscard]] bool shut_down() const { return shut_down_; }
    [[nodiscard]] unsigned shutdown_reason() const { return reason_; }

    // The run's result once the scheduler returns: poweroff passes; any other shutdown
    // reason, a failed vCPU, or vCPUs asleep with nothing to wake them fail.
    [[nodiscard]] status result() const {
        if (shut_down_) {
            switch (reason_) {
            case xen::shutdown_poweroff: return {};
            case xen::shutdown_crash: return fail(errc::fault, "guest crashed (SCHEDOP_shutdown crash)");
            case xen::shutdown_reboot: return fail(errc::not_supported, "guest asked to reboot (SCHEDOP_shutdown reboot)");
            default: return fail(errc::not_supported, "guest shut down with a reason other than poweroff");
            }
        }
        for (unsigned i = 0; i < g_->vcpu_count(); ++i)
            if (g_->vcpu(i).status() == cpu::vcpu_status::failed) return fail(errc::fault, g_->vcpu(i).why());
        return fail(errc::would_block, "guest ended without SCHEDOP_shutdown (blocked with nothing to wake it?)");
    }

    // The earliest armed one-shot timer (ns), or nothing.
    [[nodiscard]] std::optional<std::uint64_t> next_deadline() const {
        std::uint64_t earliest = 0;
        for (unsigned i = 0; i < g_->vcpu_count(); ++i)
            if (deadline_[i] && (!earliest || deadline_[i] < earliest)) earliest = deadline_[i];
        if (!earliest) return std::nullopt;
        return earliest;
    }

    // For cpu::scheduler::run while every vCPU sleeps: waits for the earliest timer and
    // fires the due ones. False when no timer is armed (nothing can wake the guest).
    static bool idle(void* self) { return static_cast<xen_hvm*>(self)->idle_once(); }

    // ---- xen::platform -------------------------------------------------------------------
    void* guest_frame(std::uint64_t gfn) override {
        if (gfn >= (std::uint64_t{1} << (64 - xen::page_shift))) return nullptr;
        return g_->host_pointer(gfn << xen::page_shift, true);
    }
    status map_hypervisor_page(std::uint64_t gfn, void* page) override { return place(gfn, page, true); }
    status map_foreign_page(std::uint64_t gfn, void* page, bool readonly) override {
        return place(gfn, page, !readonly);
    }
    status unmap_foreign_page(std::uint64_t gfn) override {
        if (gfn >= (std::uint64_t{1} << (64 - xen::page_shift))) return fail(errc::out_of_range, "xen: gfn too large");
        return g_->restore_page(gfn << xen::page_shift);
    }
    // evtchn_upcall_pending went 0 -> 1: the vCPU's line is up until the guest clears it
    // (line_pending takes the source away then, so idle entries keep their fast path).
    // A halted vCPU wakes by itself once the line is up and it takes interrupts.
    void raise_callback(std::uint32_t vcpu, std::uint8_t) override {
        if (vcpu < g_->vcpu_count()) g_->vcpu(vcpu).set_interrupt_source({&line_[vcpu], &line_pending, &line_acknowledge});
    }
    std::uint64_t now_ns() override { return cfg_.clock.now_ns(); }
    // The entry hook that checks the deadline is installed only while a timer is armed.
    void set_timer(std::uint32_t vcpu, std::uint64_t deadline) override {
        if (vcpu >= g_->vcpu_count()) return;
        deadline_[vcpu] = deadline ? deadline : 1;
        g_->vcpu(vcpu).set_entry_hook({&line_[vcpu], &before_entry});
    }
    void cancel_timer(std::uint32_t vcpu) override {
        if (vcpu >= g_->vcpu_count()) return;
        deadline_[vcpu] = 0;
        g_->vcpu(vcpu).set_entry_hook(prev_hook_[vcpu]);
    }
    void yield(std::uint32_t vcpu) override {
        if (vcpu < g_->vcpu_count()) g_->vcpu(vcpu).request_yield();
    }
    void block(std::uint32_t vcpu) override {
        if (vcpu < g_->vcpu_count()) g_->vcpu(vcpu).halt();
    }
    void shutdown(unsigned reason) override {
        shut_down_ = true;
        reason_ = reason;
        for (unsigned i = 0; i < g_->vcpu_count(); ++i) g_->vcpu(i).stop("guest shut down (SCHEDOP_shutdown)");
    }
    void console_write(const char* s, std::size_t n) override {
        if (!cfg_.console) return;
        for (std::size_t i = 0; i < n;) {
            if (at_line_start_ && cfg_.console_prefix) {
                const char* p = cfg_.console_prefix;
                std::size_t len = 0;
                while (p[len]) ++len;
                cfg_.console->write(p, len);
                at_line_start_ = false;
            }
            std::size_t j = i;
            while (j < n && s[j] != '\n') ++j;
            if (j < n) {
                cfg_.console->write(s + i, j + 1 - i);
                at_line_start_ = true;
                i = j + 1;
            } else {
                cfg_.console->write(s + i, n - i);
                i = n;
            }
        }
    }

private:
    // The last guest page a vCPU's hypercall copies reached, remembered with the
    // host_pointer_generation() it is good for (arguments usually sit in one page: the
    // caller's stack or a static buffer).
    struct remembered_page {
        std::uint64_t generation = 0;
        std::uint64_t page = 1;  // never a page address: empty
        bool writable = false;   // found for a write
        unsigned char* host = nullptr;
    };
    // G's physmap (host_pointer, placed pages included) through that memo.
    class call_physmap {
    public:
        call_physmap(G& g, remembered_page& last) : g_{&g}, last_{&last}, generation_{g.host_pointer_generation()} {}
        [[nodiscard]] std::uint64_t generation() const { return generation_; }
        void* host_pointer(std::uint64_t gpa, bool for_write) {
            const std::uint64_t page = gpa & ~mmu::page_offset_mask, offset = gpa & mmu::page_offset_mask;
            remembered_page& l = *last_;
            if (l.page == page && l.generation == generation_ && (l.writable || !for_write)) return l.host + offset;
            void* p = g_->host_pointer(gpa, for_write);
            if (p) l = {generation_, page, for_write, static_cast<unsigned char*>(p) - offset};
            return p;
        }

    private:
        G* g_;
        remembered_page* last_;
        std::uint64_t generation_;
    };

    // One hypercall's view of guest memory: the vCPU's paging, loaded at the first copy
    // (a hypercall without pointers never pays for it). Translations go through the
    // vCPU's own cache of guest walks (mmu::gva_cache: a hit re-reads the table entries
    // it came from), keyed by G's host_pointer_generation(), and the pages through
    // call_physmap.
    class call_memory final : public xen::guest_access {
    public:
        call_memory(G& g, cpu::vcpu& v, mmu::gva_cache& cache, remembered_page& last)
            : g_{&g}, v_{&v}, cache_{&cache}, last_{&last} {}
        status copy_from_guest(void* dst, std::uint64_t gva, std::size_t n) override {
            if (n == 0) return {};
            load();
            call_physmap m{*g_, *last_};
            if (!mmu::copy_from_guest_virtual(m, *cache_, m.generation(), paging_, features_, dst, gva, n).ok())
                return fail(errc::fault, "hypercall argument not readable");
            return {};
        }
        status copy_to_guest(std::uint64_t gva, const void* src, std::size_t n) override {
            if (n == 0) return {};
            load();
            call_physmap m{*g_, *last_};
            if (!mmu::copy_to_guest_virtual(m, *cache_, m.generation(), paging_, features_, gva, src, n).ok())
                return fail(errc::fault, "hypercall argument not writable");
            return {};
        }

    private:
        void load() {
            if (loaded_) return;
            paging_ = g_->paging_registers(*v_);
            features_ = g_->features();
            loaded_ = true;
        }
        G* g_;
        cpu::vcpu* v_;
        mmu::gva_cache* cache_;
        remembered_page* last_;
        bool loaded_ = false;
        mmu::guest_paging paging_{};
        mmu::paging_features features_{};
    };

    struct line {
        xen_hvm* self = nullptr;
        unsigned vcpu = 0;
    };

    // Our handlers are installed only by attach(), which set the owner.
    static xen_hvm& of(cpu::vcpu& v) { return *static_cast<xen_hvm*>(G::of(v).hypercall_owner()); }

    status place(std::uint64_t gfn, void* page, bool writable) {
        if (gfn >= (std::uint64_t{1} << (64 - xen::page_shift))) return fail(errc::out_of_range, "xen: gfn too large");
        return g_->place_page(gfn << xen::page_shift, G::host_physical(page), writable);
    }

    static bool line_pending(void* ctx) {
        auto* l = static_cast<line*>(ctx);
        xen_hvm& x = *l->self;
        if (x.dom_.pending_callback_vector(l->vcpu)) return true;
        const cpu::interrupt_source& prev = x.prev_source_[l->vcpu];
        if (!io::load_acquire(&x.dom_.vcpu[l->vcpu].info->evtchn_upcall_pending))
            x.g_->vcpu(l->vcpu).set_interrupt_source(prev);  // the guest took it: line down
        return prev.pending && prev.pending(prev.ctx);
    }
    static std::optional<std::uint8_t> line_acknowledge(void* ctx) {
        auto* l = static_cast<line*>(ctx);
        const std::uint8_t v = l->self->dom_.pending_callback_vector(l->vcpu);
        if (v) return v;
        const cpu::interrupt_source& prev = l->self->prev_source_[l->vcpu];
        return prev.acknowledge ? prev.acknowledge(prev.ctx) : std::nullopt;
    }

    static void before_entry(cpu::vcpu& v, void* ctx) {
        auto* l = static_cast<line*>(ctx);
        xen_hvm& x = *l->self;
        if (x.prev_hook_[l->vcpu].fn) x.prev_hook_[l->vcpu].fn(v, x.prev_hook_[l->vcpu].ctx);
        if (x.deadline_[l->vcpu] && x.now_ns() >= x.deadline_[l->vcpu]) x.fire(l->vcpu);
    }

    // The guest's system time is the clock's ticks scaled to ns: tsc_timestamp 0,
    // system_time 0, ns = (ticks << shift) * mul >> 32 (the clock's ticks are the TSC on
    // metal, which guests read unchanged).
    void publish_time(unsigned vcpu) {
        const std::uint64_t per_us = cfg_.clock.ticks_per_us ? cfg_.clock.ticks_per_us : 1000;
        std::uint64_t mul = (std::uint64_t{1000} << 32) / per_us;
        std::int8_t shift = 0;
        while (mul > 0xffffffffu) {
            mul >>= 1;
            ++shift;
        }
        xen::vcpu_time_info& t = dom_.vcpu[vcpu].info->time;
        t.tsc_timestamp = 0;
        t.system_time = 0;
        t.tsc_to_system_mul = static_cast<std::uint32_t>(mul);
        t.tsc_shift = shift;
        t.flags = 0;
        __atomic_store_n(&t.version, 2u, __ATOMIC_RELEASE);
    }

    bool idle_once() {
        const auto next = next_deadline();
        if (!next) return false;
        const std::uint64_t earliest = *next;
        while (now_ns() < earliest) {
            if (!cfg_.clock.ticks) break;  // no clock: time jumps to the deadline
            asm volatile("pause");
        }
        for (unsigned i = 0; i < g_->vcpu_count(); ++i)
            if (deadline_[i] && deadline_[i] <= earliest) fire(i);
        return true;
    }

    void fire(unsigned vcpu) {
        cancel_timer(vcpu);
        dom_.timer_expired(vcpu);
    }

    static void on_cpuid(cpu::vcpu& v, const cpu::exit_info& e) {
        xen_hvm& x = of(v);
        xen::cpuid_result r;
        if (!xen::xen_cpuid(e.cpuid.leaf, e.cpuid.subleaf, x.dom_.id(), v.id(), r)) {
            x.prev_cpuid_(v, e);
            return;
        }
        v.state.regs.rax = r.eax;
        v.state.regs.rbx = r.ebx;
        v.state.regs.rcx = r.ecx;
        v.state.regs.rdx = r.edx;
        v.skip();
    }

    static void on_msr_write(cpu::vcpu& v, const cpu::exit_info& e) {
        xen_hvm& x = of(v);
        if (e.msr.index != xen::hypercall_msr) {
            x.prev_msr_write_(v, e);
            return;
        }
        const std::uint64_t value = (v.state.regs.rdx << 32) | (v.state.regs.rax & 0xffffffffu);
        const auto vendor = x.g_->vendor() == cpu::vendor::vmx ? xen::cpu_vendor::intel : xen::cpu_vendor::amd;
        if (!xen::hypercall_msr_write(x.dom_, value, vendor).ok()) {
            v.inject_exception(13, 0);
            return;
        }
        v.skip();
    }

    // The hot part: a 64-bit kernel's register-only call (xen_version, sched_op yield) is
    // answered here from the mode read alone; anything else (user mode, 32-bit, calls
    // with more arguments or guest memory) goes out of line.
    static void on_hypercall(cpu::vcpu& v, const cpu::exit_info&) {
        const cpu::call_mode m = G::call_mode(v);
        std::int64_t rc;
        if (m == cpu::call_mode::kernel64 &&
            xen::register_only_hypercall(of(v).dom_, v.id(), v.state.regs.rax, v.state.regs.rdi, rc)) [[likely]] {
            v.state.regs.rax = static_cast<std::uint64_t>(rc);  // never kicks a backend
            v.skip();
            return;
        }
        other_hypercall(v, m);
    }

    [[gnu::noinline]] static void other_hypercall(cpu::vcpu& v, cpu::call_mode m) {
        xen_hvm& x = of(v);
        x.answer_hypercall(v, m);
    }
    void answer_hypercall(cpu::vcpu& v, cpu::call_mode m) {
        const bool bits64 = cpu::bits64(m);
        std::int64_t rc;
        if (cpu::user(m)) [[unlikely]] {
            rc = -xen::err::eperm;  // as Xen: hypercalls from user mode are refused
        } else {
            const auto& r = v.state.regs;
            const std::uint64_t nr = bits64 ? r.rax : static_cast<std::uint32_t>(r.rax);
            const std::uint64_t arg0 = bits64 ? r.rdi : static_cast<std::uint32_t>(r.rbx);
            if (!xen::register_only_hypercall(dom_, v.id(), nr, arg0, rc)) rc = dispatch(v, bits64);
        }
        v.state.regs.rax = bits64 ? static_cast<std::uint64_t>(rc) : static_cast<std::uint32_t>(rc);
        v.skip();
        if (backend_ && backend_->kicked) [[unlikely]] {
            backend_->kicked = false;
            v.request_yield();  // a backend has work: let its task run
        }
    }

    [[gnu::noinline]] std::int64_t dispatch(cpu::vcpu& v, bool bits64) {
        const auto& r = v.state.regs;
        const xen::hypercall_args a =
            bits64 ? xen::hypercall_args_64(r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8)
                   : xen::hypercall_args_32(static_cast<std::uint32_t>(r.rax), static_cast<std::uint32_t>(r.rbx),
                                            static_cast<std::uint32_t>(r.rcx), static_cast<std::uint32_t>(r.rdx),
                                            static_cast<std::uint32_t>(r.rsi), static_cast<std::uint32_t>(r.rdi));
        call_memory mem{*g_, v, walks_[v.id()], last_page_[v.id()]};
        return xen::dispatch_hypercall(dom_, v.id(), mem, a);
    }

    xen::domain dom_;
    G* g_ = nullptr;
    xen_config cfg_{};
    backend_domain_platform* backend_ = nullptr;
    cpu::exit_handler prev_cpuid_ = nullptr;
    cpu::exit_handler prev_msr_write_ = nullptr;
    line line_[xen::max_vcpus];
    cpu::interrupt_source prev_source_[xen::max_vcpus];
    cpu::entry_hook prev_hook_[xen::max_vcpus];
    std::uint64_t deadline_[xen::max_vcpus] = {};
    mmu::gva_cache walks_[xen::max_vcpus];  // hypercall argument translations, per vCPU
    remembered_page last_page_[xen::max_vcpus];
    bool shut_down_ = false;
    unsigned reason_ = 0;
    bool at_line_start_ = true;
};

} // namespace hv::vm
