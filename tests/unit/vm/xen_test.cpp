// Host tests of vm::xen_hvm: the Xen ABI attached to a guest, over a fake guest (RAM as
// host pages, placed pages recorded) whose vCPUs run a script of exits on a fake backend.
#include <doctest/doctest.h>
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "libhv/vm/xen.hpp"

using namespace hv;
using hv::cpu::exit_reason;

namespace {

struct alignas(4096) page {
    unsigned char b[4096];
};

// One scripted exit: `setup` puts the guest registers as they are at the exit.
struct step {
    exit_reason reason;
    std::function<void(cpu::vcpu&, cpu::exit_info&)> setup;
    std::uint8_t length = 3;
};

struct fake_guest;

struct fake_arch {
    std::vector<step> script;
    std::size_t pos = 0;
    std::vector<std::string>* trace;
};

void fake_enter(cpu::vcpu& v, const cpu::event_queue::decision* pending, cpu::exit_info& e) {
    const cpu::event_queue::decision d = pending ? *pending : cpu::event_queue::decision{};
    auto* a = static_cast<fake_arch*>(v.arch());
    (void)v.take_dirty();
    a->trace->push_back(d.inject.valid ? "inject " + std::to_string(d.inject.vector) : "enter");
    e = cpu::exit_info{};
    if (a->pos >= a->script.size()) {
        e.reason = exit_reason::triple_fault;
        return;
    }
    step& s = a->script[a->pos++];
    e.reason = s.reason;
    e.rip = v.state.rip;
    e.instruction_length = s.length;
    if (s.setup) s.setup(v, e);
    if (s.reason == exit_reason::hypercall) e.hypercall.nr = v.state.regs.rax;
}
hv::status fake_prepare(cpu::vcpu&) { return {}; }
bool fake_open(const cpu::vcpu& v) { return v.state.rflags & x86::rflags::if_; }
hv::result<std::uint8_t> fake_length(cpu::vcpu&) { return std::uint8_t{3}; }
std::uint64_t fake_read_cr(cpu::vcpu& v, unsigned cr) { return cr == 0 ? v.state.cr0 : v.state.cr4; }
hv::status fake_write_cr(cpu::vcpu&, unsigned, std::uint64_t) { return {}; }
int state_loads = 0, mode_loads = 0, paging_loads = 0;
void fake_load_state(cpu::vcpu&) { ++state_loads; }
void fake_load_mode(cpu::vcpu&) { ++mode_loads; }
void fake_flush(cpu::vcpu&) {}
constexpr cpu::backend_ops fake_ops{fake_prepare, cpu::run_once<fake_enter>,      fake_open,  fake_length,   fake_read_cr,
                                    fake_write_cr, fake_load_state, fake_flush, fake_load_mode};

// 64 pages of RAM at gpa 0; paging off (gva == gpa); placed pages over it.
struct fake_guest {
    std::vector<std::unique_ptr<page>> ram;
    std::map<std::uint64_t, std::pair<std::uint64_t, bool>> placed;  // gpa -> (hpa, writable)
    std::vector<std::string> trace;
    std::vector<std::unique_ptr<fake_arch>> arch;
    std::vector<std::vector<char>> stacks;
    std::vector<std::unique_ptr<cpu::vcpu>> cpus;
    cpu::vendor vend = cpu::vendor::vmx;
    int restores = 0;

    explicit fake_guest(unsigned n, cpu::vendor v = cpu::vendor::vmx) : vend{v} {
        for (int i = 0; i < 64; ++i) ram.push_back(std::make_unique<page>());
        for (auto& p : ram) std::memset(p->b, 0, 4096);
        for (unsigned i = 0; i < n; ++i) {
            arch.push_back(std::make_unique<fake_arch>());
            arch.back()->trace = &trace;
            stacks.emplace_back(64 * 1024);
            cpus.push_back(std::make_unique<cpu::vcpu>());
            cpu::vcpu& c = *cpus.back();
            c.init(i, fake_ops, arch.back().get(), stacks.back().data(), stacks.back().size());
            c.set_owner(this);
            c.state = cpu::initial_state(cpu::guest_mode::long64, 0x1000);
            c.state.rflags = 0x2;
            c.state.cr0 = x86::cr0::pe;  // paging off: gva == gpa
            c.state.efer = x86::efer::lme | x86::efer::lma;
        }
    }
    unsigned vcpu_count() const { return static_cast<unsigned>(cpus.size()); }
    cpu::vcpu& vcpu(unsigned i) { return *cpus[i]; }
    cpu::vendor vendor() const { return vend; }
    // As vm::guest: mode and CPL through load_mode, CRs through read_cr.
    static mmu::guest_paging paging_registers(cpu::vcpu& v) {
        v.ops().load_mode(v);
        ++paging_loads;
        const auto& st = v.state;
        return {st.cr0, st.cr3, st.cr4, st.efer, st.rflags, static_cast<std::uint8_t>(cpu::ar::dpl_of(st[cpu::seg::ss].access))};
    }
    mmu::paging_features features() const { return {}; }
    void* host_pointer(std::uint64_t gpa, bool for_write) {
        if (auto it = placed.find(gpa & ~0xfffull); it != placed.end()) {
            if (for_write && !it->second.second) return nullptr;
            return reinterpret_cast<unsigned char*>(it->second.first) + (gpa & 0xfff);
        }
        return gpa < ram.size() * 4096 ? ram[gpa / 4096]->b + (gpa & 0xfff) : nullptr;
    }
    hv::status place_page(std::uint64_t gpa, std::uint64_t hpa, bool w) {
        if (gpa >= ram.size() * 4096) return hv::fail(hv::errc::invalid_argument, "fake: outside RAM");
        placed[gpa] = {hpa, w};
        ++placements;
        return {};
    }
    std::uint64_t host_pointer_generation() const { return placements; }
    std::uint64_t placements = 0;
    hv::status restore_page(std::uint64_t gpa) {
        ++restores;
        ++placements;
        return placed.erase(gpa) ? hv::status{} : hv::status{hv::fail(hv::errc::not_found, "fake: nothing placed")};
    }
    static std::uint64_t host_physical(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
    static fake_guest& of(cpu::vcpu& v) { return v.owner<fake_guest>(); }
    void set_hypercall_owner(void* p) { owner = p; }
    // As a backend without read_call_mode: from load_mode.
    static cpu::call_mode call_mode(cpu::vcpu& v) {
        v.ops().load_mode(v);
        const auto& st = v.state;
        return cpu::call_mode_of(st.efer & x86::efer::lma, st[cpu::seg::cs].access, cpu::ar::dpl_of(st[cpu::seg::ss].access));
    }
    void* hypercall_owner() const { return owner; }
    void* owner = nullptr;

    template <class T = unsigned char>
    T* at(std::uint64_t gpa) { return reinterpret_cast<T*>(host_pointer(gpa, false)); }

    void script(unsigned i, std::vector<step> s) { arch[i]->script = std::move(s); }
};

struct console_capture {
    std::string text;
    fmt::sink sink{[](void* c, const char* p, std::size_t n) { static_cast<console_capture*>(c)->text.append(p, n); }, this};
};

using glue = vm::xen_hvm<fake_guest>;

// A 64-bit hypercall as the guest's registers have it.
std::function<void(cpu::vcpu&, cpu::exit_info&)> hcall(std::uint64_t nr, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                                                        std::uint64_t a3 = 0) {
    return [=](cpu::vcpu& v, cpu::exit_info&) {
        v.state.regs.rax = nr;
        v.state.regs.rdi = a1;
        v.state.regs.rsi = a2;
        v.state.regs.rdx = a3;
    };
}
// Records the hypercall's result (rax at the next exit) into `out`.
std::function<void(cpu::vcpu&, cpu::exit_info&)> then_record(std::vector<std::int64_t>& out,
                                                             std::function<void(cpu::vcpu&, cpu::exit_info&)> next) {
    return [&out, next](cpu::vcpu& v, cpu::exit_info& e) {
        out.push_back(static_cast<std::int64_t>(v.state.regs.rax));
        if (next) next(v, e);
    };
}

struct world {
    xen::domain_table table;
    console_capture console;
    std::uint64_t ticks = 0;
    vm::backend_domain_platform backend_plat;
    xen::domain backend;
    fake_guest g;
    glue x;
    cpu::scheduler sched;

    explicit world(unsigned vcpus = 1, cpu::vendor v = cpu::vendor::vmx) : g{vcpus, v} {
        REQUIRE(backend.init(0, 1, backend_plat, table).ok());
        backend_plat.dom = &backend;
        vm::xen_config c;
        c.domid = 1;
        c.console = &console.sink;
        c.console_prefix = "[g1] ";
        // A clock that advances 100 ns per read (1000 ticks per µs).
        c.clock = {&ticks, [](void* t) { return *static_cast<std::uint64_t*>(t) += 100; }, 1000};
        REQUIRE(x.attach(g, table, c, &backend_plat).ok());
        for (unsigned i = 0; i < vcpus; ++i) REQUIRE(sched.add(g.vcpu(i)).ok());
    }
    void run() { sched.run(&glue::idle, &x); }
};

void chained_cpuid(cpu::vcpu& v, const cpu::exit_info&) {
    v.state.regs.rbx = 0x1234;
    v.skip();
}
void chained_msr(cpu::vcpu& v, const cpu::exit_info&) {
    v.state.regs.rbx = 0x5678;
    v.skip();
}

} // namespace

TEST_CASE("xen_hvm: CPUID leaves, hypercall-page MSR (VMCALL / VMMCALL), #GP for a bad page, chaining") {
    for (auto vendor : {cpu::vendor::vmx, cpu::vendor::svm}) {
        fake_guest g0{1, vendor};
        // Handlers installed before attach are what other leaves and MSRs reach.
        g0.vcpu(0).on(exit_reason::cpuid, chained_cpuid);
        g0.vcpu(0).on(exit_reason::msr_write, chained_msr);
        xen::domain_table t;
        glue x;
        REQUIRE(x.attach(g0, t, {}).ok());
        std::vector<std::uint64_t> seen;
        g0.script(0, {
            {exit_reason::cpuid, [](cpu::vcpu& v, cpu::exit_info& e) { e.cpuid = {0x40000000, 0}; v.state.regs.rax = 0x40000000; }},
            {exit_reason::cpuid, [&](cpu::vcpu& v, cpu::exit_info& e) {
                 seen.insert(seen.end(), {v.state.regs.rax, v.state.regs.rbx, v.state.regs.rcx, v.state.regs.rdx});
                 e.cpuid = {0x40000002, 0};
             }},
            {exit_reason::cpuid, [&](cpu::vcpu& v, cpu::exit_info& e) {
                 seen.insert(seen.end(), {v.state.regs.rax, v.state.regs.rbx});
                 e.cpuid = {1, 0};
                 v.state.regs.rbx = 0;
             }},
            {exit_reason::msr_write, [&](cpu::vcpu& v, cpu::exit_info& e) {
                 seen.push_back(v.state.regs.rbx);  // 0x1234 from the chained CPUID handler
                 e.msr = {0x40000000};
                 v.state.regs.rax = 5 * 4096;
                 v.state.regs.rdx = 0;
             }},
            {exit_reason::msr_write, [&](cpu::vcpu& v, cpu::exit_info& e) {
                 e.msr = {0x40000000};
                 v.state.regs.rax = 5 * 4096 + 1;  // page index 1: refused
             }},
            {exit_reason::msr_write, [&](cpu::vcpu& v, cpu::exit_info& e) {
                 e.msr = {0x10};
                 v.state.regs.rbx = 0;
             }},
            {exit_reason::hypercall, [&](cpu::vcpu& v, cpu::exit_info&) {
                 seen.push_back(v.state.regs.rbx);  // 0x5678 from the chained MSR handler
                 v.state.regs.rax = 1000;  // unknown hypercall
             }},
            {exit_reason::hypercall, [&](cpu::vcpu& v, cpu::exit_info&) {
                 seen.push_back(v.state.regs.rax);
                 v.stop("done");
             }},
        });
        cpu::scheduler s;
        REQUIRE(s.add(g0.vcpu(0)).ok());
        s.run();
        REQUIRE(seen.size() == 9);
        CHECK(seen[0] == 0x40000004);
        CHECK(seen[1] == xen::cpuid_signature_ebx);
        CHECK(seen[2] == xen::cpuid_signature_ecx);
        CHECK(seen[3] == xen::cpuid_signature_edx);
        CHECK(seen[4] == 1);           // one hypercall page
        CHECK(seen[5] == 0x40000000);  // at this MSR
        CHECK(seen[6] == 0x1234);
        CHECK(seen[7] == 0x5678);
        CHECK(static_cast<std::int64_t>(seen[8]) == -xen::err::enosys);
        // Stub 17 (xen_version): mov $17, %eax; vmcall|vmmcall; ret
        const unsigned char* stub = g0.at(5 * 4096 + 17 * 32);
        CHECK(stub[0] == 0xb8);
        CHECK(stub[1] == 17);
        CHECK(stub[5] == 0x0f);
        CHECK(stub[6] == 0x01);
        CHECK(stub[7] == (vendor == cpu::vendor::vmx ? 0xc1 : 0xd9));
        CHECK(stub[8] == 0xc3);
        // The refused write came back as #GP(0) at the next entry.
        CHECK(std::find(g0.trace.begin(), g0.trace.end(), "inject 13") != g0.trace.end());
    }
}

TEST_CASE("xen_hvm: hypercall arguments from registers (64- and 32-bit), guest memory, CPL, console prefix") {
    world w;
    std::vector<std::int64_t> rc;
    const char msg[] = "hello\nworld\n";
    std::memcpy(w.g.at(0x3000), msg, sizeof msg - 1);
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::xen_version, xen::xenver_version)},
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::console_io, xen::consoleio_write, sizeof msg - 1, 0x3000))},
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::xen_version, xen::xenver_extraversion, 0x4000))},
        // An argument in a hole: -EFAULT, nothing written.
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::xen_version, xen::xenver_extraversion, 0x7fff0000))},
        // 32-bit guest: number in eax, arguments in ebx, ecx (upper halves ignored).
        {exit_reason::hypercall, then_record(rc, [](cpu::vcpu& v, cpu::exit_info&) {
             v.state.efer = 0;
             v.state[cpu::seg::cs].access &= ~cpu::ar::l;
             v.state.regs.rax = 0xffffffff00000000ull | xen::hc::xen_version;
             v.state.regs.rbx = 0xdead000000000000ull | xen::xenver_pagesize;
         })},
        // Ring 3: refused.
        {exit_reason::hypercall, then_record(rc, [](cpu::vcpu& v, cpu::exit_info&) {
             v.state.efer = x86::efer::lme | x86::efer::lma;
             v.state[cpu::seg::cs].access |= cpu::ar::l;
             v.state[cpu::seg::ss].access |= cpu::ar::dpl(3);
             v.state.regs.rax = xen::hc::xen_version;
             v.state.regs.rdi = xen::xenver_version;
         })},
        {exit_reason::hypercall, then_record(rc, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); })},
    });
    state_loads = mode_loads = paging_loads = 0;
    w.run();
    REQUIRE(rc.size() == 6);
    CHECK(rc[0] == (4 << 16 | 17));
    CHECK(rc[1] == 0);
    CHECK(rc[2] == 0);
    CHECK(std::string(w.g.at<char>(0x4000)) == ".0-libhv");
    CHECK(rc[3] == -xen::err::efault);
    CHECK(rc[4] == 4096);
    CHECK((static_cast<std::uint64_t>(rc[4]) >> 32) == 0u);
    CHECK(rc[5] == static_cast<std::int64_t>(-xen::err::eperm));
    CHECK(w.console.text == "[g1] hello\n[g1] world\n");
    CHECK(mode_loads == 7 + 3);  // the mode and CPL for every hypercall (the last exit is one too), again with the paging registers
    CHECK(paging_loads == 3);    // the paging registers only for the three that copy guest memory
    CHECK(state_loads == 0);     // never the whole state
    CHECK(w.x.hypercalls() == 7);
}

TEST_CASE("xen_hvm: argument copies see a page placed where an earlier call's argument was") {
    world w;
    std::vector<std::int64_t> rc;
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::xen_version, xen::xenver_extraversion, 0x4000)},
        // shared_info over gfn 4: the next copy to 0x4000 must land in it, not in the RAM
        // page the last copy reached.
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             // The argument in that same page: the last page reached stays 0x4000.
             *w.g.at<xen::add_to_physmap>(0x4100) = {xen::domid_self, 0, xen::xenmapspace_shared_info, 0, 4};
             hcall(xen::hc::memory_op, xen::xenmem_add_to_physmap, 0x4100)(v, e);
         })},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             std::memset(w.g.at(0x4000), 0, 16);  // the placed page, as the guest sees it now
             hcall(xen::hc::xen_version, xen::xenver_extraversion, 0x4000)(v, e);
         })},
        {exit_reason::hypercall, then_record(rc, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); })},
    });
    w.run();
    REQUIRE(rc.size() == 3);
    CHECK(rc[0] == 0);
    CHECK(rc[1] == 0);
    CHECK(rc[2] == 0);
    REQUIRE(w.g.placed.count(0x4000) == 1);
    CHECK(std::string(w.g.at<char>(0x4000)) == ".0-libhv");       // written into shared_info
    CHECK(std::string(reinterpret_cast<char*>(w.g.ram[4]->b)) == ".0-libhv");  // the first call's
    std::memset(w.g.ram[4]->b, 0, 16);
    CHECK(std::string(w.g.at<char>(0x4000)) == ".0-libhv");  // the placed page is not the RAM page
}

TEST_CASE("xen_hvm: event channel to itself delivered through the callback vector, level-triggered") {
    world w;
    std::vector<std::int64_t> rc;
    // Guest structures at 0x2000: hvm_param, evtchn_alloc_unbound, bind_interdomain, send.
    auto* param = w.g.at<xen::hvm_param>(0x2000);
    *param = {xen::domid_self, 0, xen::hvm_param_callback_irq, xen::hvm_callback_type_vector << 56 | 0xf3};
    auto* alloc = w.g.at<xen::evtchn_alloc_unbound>(0x2100);
    *alloc = {xen::domid_self, xen::domid_self, 0};
    auto* bind = w.g.at<xen::evtchn_bind_interdomain>(0x2200);
    auto* send = w.g.at<xen::evtchn_port_arg>(0x2300);
    auto* info = w.g.at<xen::shared_info>(0x5000);
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::hvm_op, xen::hvmop_set_param, 0x2000)},
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::event_channel_op, xen::evtchnop::alloc_unbound, 0x2100))},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             *bind = {xen::domid_self, 0, alloc->port, 0};
             hcall(xen::hc::event_channel_op, xen::evtchnop::bind_interdomain, 0x2200)(v, e);
         })},
        // The shared_info page appears at gfn 5 (a placed page).
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             auto* m = w.g.at<xen::add_to_physmap>(0x2400);
             *m = {xen::domid_self, 0, xen::xenmapspace_shared_info, 0, 5};
             hcall(xen::hc::memory_op, xen::xenmem_add_to_physmap, 0x2400)(v, e);
         })},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             // bind left the local port pending (the guest's own loopback): the line is up
             // but IF = 0 keeps it waiting.
             info = w.g.at<xen::shared_info>(0x5000);
             info->vcpu[0].evtchn_upcall_pending = 0;
             info->evtchn_pending[0] = 0;
             info->vcpu[0].evtchn_pending_sel = 0;
             send->port = bind->local_port;
             hcall(xen::hc::event_channel_op, xen::evtchnop::send, 0x2300)(v, e);
         })},
        {exit_reason::hlt, [&](cpu::vcpu& v, cpu::exit_info&) {
             rc.push_back(static_cast<std::int64_t>(v.state.regs.rax));
             v.state.rflags |= x86::rflags::if_;  // sti; hlt
         }, 1},
        // The callback ran (injected at the wake-up); it has not cleared upcall_pending
        // yet, so the line is still up at the next entry.
        {exit_reason::cpuid, [&](cpu::vcpu&, cpu::exit_info& e) { e.cpuid = {0x40000001, 0}; }},
        {exit_reason::cpuid, [&](cpu::vcpu&, cpu::exit_info& e) {
             info->vcpu[0].evtchn_upcall_pending = 0;  // the handler acknowledges
             e.cpuid = {0x40000001, 0};
         }},
        {exit_reason::hypercall, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); }},
    });
    w.run();
    REQUIRE(rc.size() == 5);
    CHECK(rc[0] == 0);
    CHECK(rc[1] == 0);
    CHECK(rc[2] == 0);
    CHECK(rc[3] == 0);
    CHECK(rc[4] == 0);
    CHECK(w.g.placed.count(0x5000) == 1);
    CHECK(w.x.domain().callback_vector() == 0xf3);
    // A send on one end of the loopback raises the other end.
    CHECK(xen::ev::is_pending(w.x.domain(), alloc->port));
    CHECK_FALSE(xen::ev::is_pending(w.x.domain(), bind->local_port));
    // Entries: 5 hypercalls, the hlt, then inject (wake), inject (still pending), enter.
    REQUIRE(w.g.trace.size() == 9);
    CHECK(w.g.trace[5] == "enter");  // IF = 0 before the HLT: no injection
    CHECK(w.g.trace[6] == "inject 243");
    CHECK(w.g.trace[7] == "inject 243");
    CHECK(w.g.trace[8] == "enter");
}

TEST_CASE("xen_hvm: one-shot timer wakes a blocked vCPU through VIRQ_TIMER; idle waits for it") {
    world w;
    std::vector<std::int64_t> rc;
    auto* param = w.g.at<xen::hvm_param>(0x2000);
    *param = {xen::domid_self, 0, xen::hvm_param_callback_irq, xen::hvm_callback_type_vector << 56 | 0x40};
    auto* virq = w.g.at<xen::evtchn_bind_virq>(0x2100);
    *virq = {xen::virq_timer, 0, 0};
    auto* timer = w.g.at<xen::vcpu_set_singleshot_timer>(0x2200);
    w.ticks = 5000;  // 5 µs
    *timer = {7000, 0, 0};
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::hvm_op, xen::hvmop_set_param, 0x2000)},
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::event_channel_op, xen::evtchnop::bind_virq, 0x2100))},
        {exit_reason::hypercall, then_record(rc, hcall(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, 0x2200))},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             v.state.rflags |= x86::rflags::if_;
             hcall(xen::hc::sched_op, xen::schedop_block)(v, e);
         })},
        // Woken by the timer's callback.
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); })},
    });
    w.run();
    REQUIRE(rc.size() == 4);
    CHECK(rc[0] == 0);
    CHECK(rc[1] == 0);
    CHECK(rc[2] == 0);
    CHECK(w.g.trace.back() == "inject 64");
    CHECK(w.g.vcpu(0).status() == cpu::vcpu_status::stopped);
}

TEST_CASE("xen_hvm: SCHEDOP_shutdown ends every vCPU; the reason is the run's result") {
    for (unsigned reason : {xen::shutdown_poweroff, xen::shutdown_crash}) {
        world w{2};
        *w.g.at<xen::sched_shutdown>(0x2000) = {reason};
        w.g.script(0, {{exit_reason::hlt, [](cpu::vcpu& v, cpu::exit_info&) { v.state.rflags |= x86::rflags::if_; }, 1}});
        w.g.script(1, {{exit_reason::hypercall, hcall(xen::hc::sched_op, xen::schedop_shutdown, 0x2000)}});
        w.run();
        CHECK(w.x.shut_down());
        CHECK(w.x.shutdown_reason() == reason);
        CHECK(w.g.vcpu(0).status() == cpu::vcpu_status::stopped);  // the halted one too
        CHECK(w.g.vcpu(1).status() == cpu::vcpu_status::stopped);
        CHECK(w.x.result().ok() == (reason == xen::shutdown_poweroff));
    }
    world w;
    w.g.script(0, {{exit_reason::hlt, {}, 1}});  // HLT with IF = 0 and no timer
    w.run();
    CHECK_FALSE(w.x.shut_down());
    CHECK(w.x.result().err().code == errc::would_block);
}

TEST_CASE("xen_hvm: an event for a backend domain makes the sending vCPU yield to the backend tasks") {
    world w;
    // The backend offers nothing; the guest offers an unbound port to domain 0, the
    // backend binds it (as blk_backend::connect does), then the guest sends on it.
    xen::evtchn_alloc_unbound a{xen::domid_self, 0, 0};
    REQUIRE(xen::ev::alloc_unbound(w.x.domain(), a) == 0);
    xen::evtchn_bind_interdomain b{1, 0, a.port, 0};
    REQUIRE(xen::ev::bind_interdomain(w.backend, b) == 0);
    (void)xen::ev::test_and_clear_pending(w.backend, b.local_port);
    w.backend_plat.kicked = false;
    w.g.at<xen::evtchn_port_arg>(0x2000)->port = a.port;

    struct task_state {
        world* w;
        xen::evtchn_port_t port;
        int seen = 0;
    } ts{&w, b.local_port};
    std::vector<char> stack(64 * 1024);
    fiber task;
    task.init(stack.data(), stack.size(), [](fiber& self, void* c) {
        auto* t = static_cast<task_state*>(c);
        for (;;) {
            if (xen::ev::test_and_clear_pending(t->w->backend, t->port)) ++t->seen;
            self.yield();
        }
    }, &ts);
    REQUIRE(w.sched.add_task(task).ok());
    int seen_before_next_exit = -1;
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::event_channel_op, xen::evtchnop::send, 0x2000)},
        {exit_reason::hypercall, [&](cpu::vcpu& v, cpu::exit_info&) {
             seen_before_next_exit = ts.seen;  // the task ran between the two exits
             v.stop("done");
         }},
    });
    w.run();
    CHECK(seen_before_next_exit == 1);
}

TEST_CASE("xen_hvm: a mapped grant is a placed page (read-only when asked) until unmapped; timers fire at entry") {
    world w;
    std::vector<std::int64_t> rc;
    // The guest grants its frame 9 to itself, maps it read-only at gfn 12, unmaps it.
    auto* table = w.g.at<xen::add_to_physmap>(0x2000);
    *table = {xen::domid_self, 0, xen::xenmapspace_grant_table, 0, 4};
    auto* map = w.g.at<xen::gnttab_map_grant_ref>(0x2100);
    auto* unmap = w.g.at<xen::gnttab_unmap_grant_ref>(0x2200);
    auto* timer = w.g.at<xen::vcpu_set_singleshot_timer>(0x2300);
    std::uint64_t placed_hpa = 0;
    bool placed_writable = true;
    w.g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::memory_op, xen::xenmem_add_to_physmap, 0x2000)},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             auto* entries = w.g.at<xen::grant_entry_v1>(0x4000);  // the placed grant frame
             REQUIRE(xen::gnt::guest::grant_access({entries, 512}, 8, 1, 9, true).ok());
             *map = {12 * 4096, xen::gntmap_host_map | xen::gntmap_readonly, 8, xen::domid_self, 0, 0, 0};
             hcall(xen::hc::grant_table_op, xen::gnttabop::map_grant_ref, 0x2100, 1)(v, e);
         })},
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             auto it = w.g.placed.find(12 * 4096);
             if (it != w.g.placed.end()) {
                 placed_hpa = it->second.first;
                 placed_writable = it->second.second;
             }
             *unmap = {12 * 4096, 0, map->handle, 0, 0};
             hcall(xen::hc::grant_table_op, xen::gnttabop::unmap_grant_ref, 0x2200, 1)(v, e);
         })},
        // A timer already due fires before the next entry, without any halt.
        {exit_reason::hypercall, then_record(rc, [&](cpu::vcpu& v, cpu::exit_info& e) {
             *timer = {1, 0, 0};
             hcall(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, 0x2300)(v, e);
         })},
        {exit_reason::cpuid, [&](cpu::vcpu& v, cpu::exit_info& e) {
             rc.push_back(static_cast<std::int64_t>(v.state.regs.rax));
             e.cpuid = {0x40000000, 0};
         }},
        {exit_reason::hypercall, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); }},
    });
    // Bind VIRQ_TIMER from the host side (the guest would do it by hypercall).
    xen::evtchn_bind_virq virq{xen::virq_timer, 0, 0};
    REQUIRE(xen::ev::bind_virq(w.x.domain(), virq) == 0);
    w.run();
    REQUIRE(rc.size() == 4);
    CHECK(rc[0] == 0);
    CHECK(map->status == xen::gntst_okay);
    CHECK(placed_hpa == reinterpret_cast<std::uintptr_t>(w.g.ram[9]->b));
    CHECK_FALSE(placed_writable);
    CHECK(rc[1] == 0);
    CHECK(unmap->status == xen::gntst_okay);
    CHECK(w.g.placed.count(12 * 4096) == 0);
    CHECK(w.g.restores == 1);
    CHECK(rc[2] == 0);
    CHECK(xen::ev::is_pending(w.x.domain(), virq.port));  // fired at the entry after the call
}

TEST_CASE("xen_hvm: an entry hook installed before attach keeps running, with and without a timer armed") {
    fake_guest g{1};
    static int hook_runs;
    hook_runs = 0;
    g.vcpu(0).set_entry_hook({nullptr, [](cpu::vcpu&, void*) { ++hook_runs; }});
    xen::domain_table t;
    glue x;
    REQUIRE(x.attach(g, t, {}).ok());
    auto* timer = g.at<xen::vcpu_set_singleshot_timer>(0x2000);
    *timer = {~std::uint64_t{0} >> 1, 0, 0};  // far away: armed all along
    g.script(0, {
        {exit_reason::hypercall, hcall(xen::hc::xen_version, 0)},
        {exit_reason::hypercall, hcall(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, 0x2000)},
        {exit_reason::hypercall, hcall(xen::hc::vcpu_op, xen::vcpuop_stop_singleshot_timer, 0)},
        {exit_reason::hypercall, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); }},
    });
    cpu::scheduler s;
    REQUIRE(s.add(g.vcpu(0)).ok());
    s.run();
    CHECK(hook_runs == 4);  // before each of the four entries
}

TEST_CASE("xen_hvm: vcpu_info carries the system time scale of the clock (ns = (ticks << shift) * mul >> 32)") {
    for (std::uint64_t per_us : {1000ull, 2000ull, 500ull, 3000ull}) {
        fake_guest g{2};
        xen::domain_table t;
        glue x;
        vm::xen_config c;
        c.clock.ticks_per_us = per_us;
        REQUIRE(x.attach(g, t, c).ok());
        for (unsigned v = 0; v < 2; ++v) {
            const xen::vcpu_time_info& ti = x.domain().vcpu[v].info->time;
            CHECK((ti.version & 1) == 0);
            const std::uint64_t ticks = 123'456'789;
            const std::uint64_t shifted = ti.tsc_shift >= 0 ? ticks << ti.tsc_shift : ticks >> -ti.tsc_shift;
            const auto ns = static_cast<std::uint64_t>((static_cast<unsigned __int128>(shifted) * ti.tsc_to_system_mul) >> 32);
            const std::uint64_t want = ticks * 1000 / per_us;
            CHECK(ns <= want);
            CHECK(want - ns <= want / 1'000'000 + 1);  // within 1 ppm
        }
    }
}

TEST_CASE("xen_hvm: an interrupt source installed before attach (an emulated LAPIC) keeps delivering") {
    fake_guest g{1};
    struct apic_line {
        int pending = 0;
        int acknowledged = 0;
    };
    static apic_line apic;
    apic = {};
    const cpu::interrupt_source lapic{
        &apic, [](void* c) { return static_cast<apic_line*>(c)->pending > 0; },
        [](void* c) -> std::optional<std::uint8_t> {
            auto* a = static_cast<apic_line*>(c);
            if (!a->pending) return std::nullopt;
            --a->pending;
            ++a->acknowledged;
            return std::uint8_t{0x30};
        }};
    g.vcpu(0).set_interrupt_source(lapic);
    g.vcpu(0).state.rflags |= x86::rflags::if_;
    xen::domain_table t;
    glue x;
    REQUIRE(x.attach(g, t, {}).ok());
    CHECK(g.vcpu(0).current_interrupt_source().ctx == &apic);
    apic.pending = 1;
    g.script(0, {
        {exit_reason::cpuid, [](cpu::vcpu&, cpu::exit_info& e) { e.cpuid = {0x40000001, 0}; }},
        // The Xen line goes up with no callback vector set and no upcall pending: it
        // answers for the LAPIC and hands the vCPU back to it.
        {exit_reason::cpuid, [&](cpu::vcpu&, cpu::exit_info& e) {
             x.raise_callback(0, 0);
             apic.pending = 1;
             e.cpuid = {0x40000001, 0};
         }},
        {exit_reason::hypercall, [](cpu::vcpu& v, cpu::exit_info&) { v.stop("done"); }},
    });
    cpu::scheduler s;
    REQUIRE(s.add(g.vcpu(0)).ok());
    s.run();
    REQUIRE(g.trace.size() == 3);
    CHECK(g.trace[0] == "inject 48");
    CHECK(g.trace[1] == "enter");
    CHECK(g.trace[2] == "inject 48");
    CHECK(apic.acknowledged == 2);
    CHECK(g.vcpu(0).current_interrupt_source().ctx == &apic);
}
