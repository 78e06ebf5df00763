#include <doctest/doctest.h>
#include <memory>
#include <string>
#include <vector>
#include "libhv/cpu/vcpu.hpp"

using namespace hv::cpu;

// A fake backend: each vCPU plays a script of exits; every entry is traced with the
// event it injected and the windows it asked for.
namespace {

struct step {
    exit_reason reason;
    std::uint8_t length = 0;
    std::uint64_t rflags_after = 0x202;  // guest RFLAGS when it exits
    std::uint64_t rax = 0;
};

struct fake_arch {
    std::vector<step> script;
    std::size_t pos = 0;
    std::vector<std::string>* trace;
    bool prepare_fails = false;
    int syncs = 0;
};

std::string ev_text(const event& e) {
    if (!e.valid) return "";
    return " inject=" + std::to_string(static_cast<int>(e.kind)) + ":" + std::to_string(e.vector) +
           (e.has_error_code ? "/" + std::to_string(e.error_code) : "");
}

hv::status fake_prepare(vcpu& v) {
    auto* a = static_cast<fake_arch*>(v.arch());
    if (a->prepare_fails) return hv::fail(hv::errc::invalid_argument, "guest_cs_ar: CS type is not accessed code");
    return {};
}

void fake_enter(vcpu& v, const event_queue::decision* pending, exit_info& e) {
    const event_queue::decision d = pending ? *pending : event_queue::decision{};
    auto* a = static_cast<fake_arch*>(v.arch());
    if (v.take_dirty()) ++a->syncs;
    a->trace->push_back("v" + std::to_string(v.id()) + " enter" + ev_text(d.inject) + (d.irq_window ? " irq-window" : "") +
                        (d.nmi_window ? " nmi-window" : ""));
    e = exit_info{};
    if (a->pos >= a->script.size()) {
        e.reason = exit_reason::triple_fault;  // a script that runs out is a dead guest
        return;
    }
    const step& s = a->script[a->pos++];
    e.reason = s.reason;
    e.rip = v.state.rip;
    e.instruction_length = s.length;
    v.state.rflags = s.rflags_after;
    v.state.regs.rax = s.rax;
    if (s.reason == exit_reason::hypercall) e.hypercall.nr = s.rax;
}

bool fake_open(const vcpu& v) { return v.state.rflags & hv::x86::rflags::if_; }
hv::result<std::uint8_t> fake_length(vcpu& v) {
    if (v.state.rip == 0xbad) return hv::fail(hv::errc::not_supported, "opcode outside the set intercepted without NRIPS");
    return std::uint8_t{7};
}

std::uint64_t fake_read_cr(vcpu& v, unsigned cr) { return cr == 0 ? v.state.cr0 : v.state.cr4; }
hv::status fake_write_cr(vcpu& v, unsigned cr, std::uint64_t value) {
    if (cr == 0 && (value & hv::x86::cr0::pg) && !(value & hv::x86::cr0::pe)) return hv::fail(hv::errc::invalid_argument, "PG without PE");
    (cr == 0 ? v.state.cr0 : v.state.cr4) = value;
    return {};
}
void fake_load_state(vcpu&) {}
void fake_flush_nested(vcpu&) {}
constexpr backend_ops fake_ops{fake_prepare,  run_once<fake_enter>,      fake_open,        fake_length,
                               fake_read_cr,  fake_write_cr,   fake_load_state,  fake_flush_nested};

struct harness {
    std::vector<std::string> trace;
    std::vector<std::vector<char>> stacks;
    std::vector<std::unique_ptr<fake_arch>> arch;
    std::vector<std::unique_ptr<vcpu>> cpus;
    scheduler sched;

    vcpu& add(std::vector<step> script, std::uint64_t rip = 0x1000) {
        arch.push_back(std::make_unique<fake_arch>());
        arch.back()->script = std::move(script);
        arch.back()->trace = &trace;
        stacks.emplace_back(64 * 1024);
        cpus.push_back(std::make_unique<vcpu>());
        vcpu& v = *cpus.back();
        v.init(static_cast<unsigned>(cpus.size() - 1), fake_ops, arch.back().get(), stacks.back().data(),
               stacks.back().size());
        v.state.rip = rip;
        v.state.rflags = 0x202;
        REQUIRE(sched.add(v).ok());
        return v;
    }
};

std::string text(const vcpu& v) {
    std::string s;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &s};
    v.report(k);
    return s;
}

void stop_on_hypercall(vcpu& v, const exit_info&) {
    v.skip();
    v.stop("guest asked to stop");
}
void skip_only(vcpu& v, const exit_info&) { v.skip(); }

} // namespace

TEST_CASE("event queue: priorities, windows and #DF escalation") {
    event_queue q;
    CHECK(q.empty());
    q.raise_interrupt(0x20);
    q.raise_interrupt(0x80);
    q.raise_interrupt(0x31);
    auto d = q.next(true, false);
    CHECK(d.inject.valid);
    CHECK(d.inject.kind == event_kind::external_interrupt);
    CHECK(d.inject.vector == 0x80);  // highest vector first
    CHECK(d.irq_window);             // two still wait
    CHECK(q.next(true, false).inject.vector == 0x31);
    auto closed = q.next(false, false);
    CHECK_FALSE(closed.inject.valid);
    CHECK(closed.irq_window);
    CHECK(q.next(true, false).inject.vector == 0x20);
    CHECK(q.empty());

    q.raise_interrupt(0x40);
    q.raise_nmi();
    q.raise_exception(14, 2);
    d = q.next(true, false);
    CHECK(d.inject.kind == event_kind::hardware_exception);
    CHECK(d.inject.vector == 14);
    CHECK(d.inject.error_code == 2);
    CHECK(d.nmi_window);
    d = q.next(true, true);  // NMI blocked: the interrupt may still go, the NMI waits for its window
    CHECK(d.inject.kind == event_kind::external_interrupt);
    CHECK(d.inject.vector == 0x40);
    CHECK(d.nmi_window);
    CHECK_FALSE(d.irq_window);
    CHECK(q.next(true, false).inject.kind == event_kind::nmi);
    CHECK(q.empty());

    q.requeue(event{true, event_kind::hardware_exception, 13, true, 0x18});
    q.raise_interrupt(0x50);
    d = q.next(true, false);
    CHECK(d.inject.vector == 13);  // interrupted delivery goes first
    q.next(true, false);

    q.raise_exception(13, 0);
    q.raise_exception(14, 0);
    d = q.next(true, false);
    CHECK(d.inject.vector == 8);
    CHECK(d.inject.has_error_code);
    q.raise_exception(13, 0);
    q.raise_exception(14, 0);
    CHECK_FALSE(q.triple_fault());
    q.raise_exception(6);
    CHECK(q.triple_fault());
    CHECK_FALSE(q.empty());  // the run loop's one flag sends a triple fault down the slow path
}

TEST_CASE("vcpu: dispatch, skip, HLT woken by an interrupt injected from idle") {
    harness h;
    vcpu& v = h.add({{exit_reason::cpuid, 2}, {exit_reason::io, 1}, {exit_reason::hlt, 1}, {exit_reason::hypercall, 3}});
    v.on(exit_reason::cpuid, skip_only);
    v.on(exit_reason::io, skip_only);
    v.on(exit_reason::hypercall, stop_on_hypercall);
    int idles = 0;
    struct ctx_t { vcpu* v; int* idles; } ctx{&v, &idles};
    h.sched.run(
        [](void* c) {
            auto* x = static_cast<ctx_t*>(c);
            if (++*x->idles > 1) return false;
            x->v->inject_interrupt(0x30);  // a device interrupt arrives while the guest sleeps
            return true;
        },
        &ctx);
    CHECK(idles == 1);
    CHECK(v.status() == vcpu_status::stopped);
    CHECK(std::string(v.why()) == "guest asked to stop");
    CHECK(v.state.rip == 0x1000 + 2 + 1 + 1 + 3);
    REQUIRE(h.trace.size() == 4);
    CHECK(h.trace[3] == "v0 enter inject=0:48");
    CHECK(v.log.count(exit_reason::cpuid) == 1);
    CHECK(v.log.count(exit_reason::hlt) == 1);
    CHECK(v.log.total() == 4);
    CHECK(v.finished());
    auto r = text(v);
    CHECK(r.find("vcpu 0: stopped: guest asked to stop\n") == 0);
    CHECK(r.find("hypercall rip=0x1004") != std::string::npos);
}

TEST_CASE("vcpu: two guests on one CPU; one wakes the other; a triple fault ends only its guest") {
    harness h;
    vcpu& a = h.add({{exit_reason::hlt, 1}, {exit_reason::hypercall, 3}});
    vcpu& b = h.add({{exit_reason::hypercall, 3, 0x202, 1}, {exit_reason::cpuid, 2}, {exit_reason::triple_fault}});
    a.on(exit_reason::hypercall, stop_on_hypercall);
    static vcpu* target;
    target = &a;
    b.on(exit_reason::hypercall, [](vcpu& v, const exit_info& e) {
        v.skip();
        if (e.hypercall.nr == 1) target->inject_interrupt(0x21);
        v.request_yield();
    });
    b.on(exit_reason::cpuid, skip_only);
    h.sched.run();
    CHECK(a.status() == vcpu_status::stopped);
    CHECK(b.status() == vcpu_status::failed);
    CHECK(std::string(b.why()) == "guest triple fault");
    CHECK(text(b).find("triple-fault") != std::string::npos);
    // A halts, B runs and raises A's interrupt then yields, A wakes with it injected.
    const std::vector<std::string> expect = {"v0 enter", "v1 enter", "v0 enter inject=0:33", "v1 enter", "v1 enter"};
    CHECK(h.trace == expect);
}

TEST_CASE("vcpu: interrupts wait for an open window; halted with IF=0 sleeps") {
    harness h;
    // The guest runs with IF=0, then executes STI (exiting on the window), then stops.
    vcpu& v = h.add({{exit_reason::cpuid, 2, 0x002}, {exit_reason::interrupt_window, 0, 0x202}, {exit_reason::hypercall, 3}});
    v.state.rflags = 0x002;
    v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        x.skip();
        x.inject_interrupt(0x40);
    });
    v.on(exit_reason::hypercall, stop_on_hypercall);
    h.sched.run();
    const std::vector<std::string> expect = {"v0 enter", "v0 enter irq-window", "v0 enter inject=0:64"};
    CHECK(h.trace == expect);
    CHECK(v.status() == vcpu_status::stopped);

    harness h2;
    vcpu& s = h2.add({{exit_reason::hlt, 1, 0x002}});
    s.state.rflags = 0x002;
    s.inject_interrupt(0x30);  // masked: cannot wake a cli;hlt guest
    bool idled = false;
    h2.sched.run([](void* c) { *static_cast<bool*>(c) = true; return false; }, &idled);
    CHECK(idled);
    CHECK(s.status() == vcpu_status::halted);
    CHECK(s.sleeping());
    s.inject_nmi();  // an NMI does wake it
    CHECK_FALSE(s.sleeping());
}

TEST_CASE("vcpu: failures end the guest with their message") {
    harness h;
    vcpu& p = h.add({});
    static_cast<fake_arch*>(p.arch())->prepare_fails = true;
    vcpu& u = h.add({{exit_reason::rdtsc, 2}});               // no handler registered
    vcpu& d = h.add({{exit_reason::cpuid, 0}}, 0xbad);        // undecodable instruction on skip
    d.on(exit_reason::cpuid, skip_only);
    vcpu& e = h.add({{exit_reason::invalid_guest_state}});
    vcpu& n = h.add({{exit_reason::cpuid, 0}, {exit_reason::hypercall, 3}});  // length from the decoder
    n.on(exit_reason::cpuid, skip_only);
    n.on(exit_reason::hypercall, stop_on_hypercall);
    h.sched.run();
    CHECK(p.status() == vcpu_status::failed);
    CHECK(std::string(p.why()) == "guest_cs_ar: CS type is not accessed code");
    CHECK(p.log.total() == 0);
    CHECK(std::string(u.why()) == "unhandled exit");
    CHECK(std::string(d.why()) == "opcode outside the set intercepted without NRIPS");
    CHECK(std::string(e.why()) == "VM entry failed: invalid guest state");
    CHECK(n.status() == vcpu_status::stopped);
    CHECK(n.state.rip == 0x1000 + 7 + 3);
}

TEST_CASE("vcpu: a guest's VMX instruction gets #UD; exception escalation to triple fault") {
    harness h;
    vcpu& v = h.add({{exit_reason::virtualization, 3}, {exit_reason::hypercall, 3}});
    v.on(exit_reason::hypercall, stop_on_hypercall);
    h.sched.run();
    REQUIRE(h.trace.size() == 2);
    CHECK(h.trace[1] == "v0 enter inject=2:6");
    CHECK(v.state.rip == 0x1000 + 3);  // #UD: the instruction is not skipped

    harness h2;
    vcpu& w = h2.add({{exit_reason::cpuid, 2}});
    w.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        x.inject_exception(13, 0);
        x.inject_exception(14, 0);
        x.inject_exception(13, 0);
    });
    h2.sched.run();
    CHECK(w.status() == vcpu_status::failed);
    CHECK(std::string(w.why()).find("triple fault") != std::string::npos);
}

TEST_CASE("vcpu: an exit budget ends a runaway guest") {
    harness h;
    std::vector<step> loop(50, step{exit_reason::cpuid, 2});
    vcpu& v = h.add(loop);
    v.on(exit_reason::cpuid, skip_only);
    v.set_exit_budget(10);
    h.sched.run();
    CHECK(v.status() == vcpu_status::failed);
    CHECK(std::string(v.why()) == "exit budget exhausted");
    CHECK(v.log.total() == 10);
}

TEST_CASE("vcpu: an exit budget set after some exits counts from the start") {
    harness h;
    std::vector<step> loop(50, step{exit_reason::cpuid, 2});
    vcpu& v = h.add(loop);
    int seen = 0;
    static int* seen_p = nullptr;
    seen_p = &seen;
    v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        x.skip();
        if (++*seen_p == 4) x.set_exit_budget(6);  // 4 exits so far: 2 more
    });
    h.sched.run();
    CHECK(v.status() == vcpu_status::failed);
    CHECK(v.log.total() == 6);
}

TEST_CASE("vcpu: skip() advances RIP (written back before every entry) and marks a dropped STI shadow dirty") {
    harness h;
    vcpu& v = h.add({{exit_reason::cpuid, 2}, {exit_reason::hypercall, 3}});
    v.state.interruptibility = 1;
    static std::uint8_t seen;
    seen = 0;
    v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        x.skip();
        seen = x.take_dirty();
        x.mark_dirty(seen);
    });
    v.on(exit_reason::hypercall, stop_on_hypercall);
    h.sched.run();
    CHECK(seen == vcpu::dirty_interruptibility);
    CHECK(v.state.interruptibility == 0);
    CHECK(static_cast<fake_arch*>(v.arch())->syncs == 1);  // written back once, before the next entry
}

TEST_CASE("vcpu: skip() in an STI shadow keeps the exit's length; without a length it asks the backend") {
    harness h;
    vcpu& v = h.add({{exit_reason::cpuid, 2}, {exit_reason::cpuid, 0}, {exit_reason::hypercall, 3}});
    static std::uint64_t rips[2];
    static int n;
    n = 0;
    v.state.interruptibility = 1;  // the first CPUID follows an STI
    v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        const std::uint64_t before = x.state.rip;
        x.skip();
        rips[n++] = x.state.rip - before;
    });
    v.on(exit_reason::hypercall, stop_on_hypercall);
    h.sched.run();
    CHECK(rips[0] == 2);  // the slot's length, shadow dropped
    CHECK(rips[1] == 7);  // unknown length: fake_length
    CHECK(v.state.interruptibility == 0);
}

TEST_CASE("vcpu: handler kinds; a changed hot handler kind asks the backend's loop to return") {
    harness h;
    vcpu& v = h.add({{exit_reason::hypercall, 3}});
    CHECK(v.hot_handlers_leaf());  // the defaults are leaf handlers
    CHECK(v.loop_word() == 0);
    v.on(exit_reason::cpuid, skip_only);  // a host handler by default
    CHECK_FALSE(v.hot_handlers_leaf());
    CHECK(v.loop_word() != 0);
    v.end_return_request();
    CHECK(v.loop_word() == 0);
    v.on(exit_reason::npf, skip_only);  // not a hot exit: the lean loop does not run it
    CHECK(v.loop_word() == 0);
    v.on(exit_reason::cpuid, skip_only, vcpu::handler_kind::leaf);
    CHECK(v.hot_handlers_leaf());
    CHECK(v.loop_word() != 0);
    v.end_return_request();
    v.on(exit_reason::msr_write, skip_only, vcpu::handler_kind::host);
    CHECK_FALSE(v.hot_handlers_leaf());
    v.on(exit_reason::msr_write, nullptr);  // the default again: a leaf one
    CHECK(v.hot_handlers_leaf());
}

TEST_CASE("vcpu: dirty state is in the loop word; alone it does not end the backend's loop") {
    harness h;
    vcpu& v = h.add({});
    CHECK(v.loop_word() == 0);
    v.mark_dirty(vcpu::dirty_rip);  // needs nothing
    CHECK(v.loop_word() == 0);
    v.mark_dirty(vcpu::dirty_rsp);
    CHECK(v.loop_word() != 0);
    CHECK(v.settle());  // stay: the backend writes it back
    CHECK(v.take_dirty() == vcpu::dirty_rsp);
    CHECK(v.loop_word() == 0);
    v.mark_dirty(vcpu::dirty_rflags);
    v.request_yield();
    CHECK_FALSE(v.settle());
}

TEST_CASE("vcpu: an armed preemption deadline the entry hook leaves unchanged keeps the backend's loop going") {
    harness h;
    vcpu& v = h.add({});
    static std::uint64_t next_deadline;
    static int hooks;
    hooks = 0;
    v.set_entry_hook({nullptr, [](vcpu& x, void*) {
                          ++hooks;
                          x.set_preemption_deadline(next_deadline);
                      }});
    // No deadline, none armed: stay (the hook polled, nothing to deliver).
    next_deadline = 0;
    CHECK(v.settle());
    // The backend armed 5000 for this loop; the hook still wants 5000: stay.
    v.set_armed_deadline(5000);
    next_deadline = 5000;
    CHECK(v.settle());
    CHECK(v.settle());
    // A handler moved the device deadline (earlier or later): back to the run loop, which
    // arms the new one without running the hook again.
    for (std::uint64_t moved : {4000ull, 6000ull}) {
        next_deadline = moved;
        const int before = hooks;
        CHECK_FALSE(v.settle());
        CHECK(hooks == before + 1);
    }
    // None left: nothing can be late; the armed timer's one exit leaves later.
    next_deadline = 0;
    CHECK(v.settle());
    // Unchanged, but something else for the run loop: leave as before.
    next_deadline = 5000;
    v.inject_interrupt(0x30);
    CHECK_FALSE(v.settle());
    // A deadline but nothing armed (a backend without a timer): leave after every exit.
    harness h2;
    vcpu& w = h2.add({});
    w.set_entry_hook({nullptr, [](vcpu& x, void*) { x.set_preemption_deadline(7000); }});
    CHECK_FALSE(w.settle());
    w.set_armed_deadline(7000);
    CHECK(w.settle());
}

TEST_CASE("vcpu: an intercepted #DF ends the guest; other unhandled exceptions too") {
    harness h;
    vcpu& d = h.add({{exit_reason::exception}});
    vcpu& g = h.add({{exit_reason::exception}});
    h.sched.run();
    // The fake script leaves exception details zeroed: vector 0.
    CHECK(std::string(g.why()) == "unhandled exit: guest exception");
    (void)d;
    exit_info df{};
    df.reason = exit_reason::exception;
    df.exception.vector = 8;
    harness h2;
    vcpu& x = h2.add({});
    default_handler::exception(x, df);
    CHECK(x.status() == vcpu_status::failed);
    CHECK(std::string(x.why()).find("double fault") != std::string::npos);
}

namespace {
// A stand-in for an interrupt controller model: a list of pending vectors.
struct fake_pic {
    std::vector<std::uint8_t> pending;
    int acks = 0, polls = 0;
    static bool is_pending(void* c) { return !static_cast<fake_pic*>(c)->pending.empty(); }
    static std::optional<std::uint8_t> ack(void* c) {
        auto* p = static_cast<fake_pic*>(c);
        if (p->pending.empty()) return std::nullopt;
        ++p->acks;
        auto v = p->pending.front();
        p->pending.erase(p->pending.begin());
        return v;
    }
};
} // namespace

TEST_CASE("vcpu: interrupts from a controller model are acknowledged only when injected") {
    harness h;
    // IF=0 at first: the model's interrupt must wait (window), then go in once IF=1.
    vcpu& v = h.add({{exit_reason::cpuid, 2, 0x002}, {exit_reason::interrupt_window, 0, 0x202},
                     {exit_reason::hlt, 1, 0x202}, {exit_reason::hypercall, 3}});
    v.state.rflags = 0x002;
    static fake_pic pic;
    pic = fake_pic{};
    v.set_interrupt_source({&pic, fake_pic::is_pending, fake_pic::ack});
    v.set_entry_hook({&pic, [](vcpu&, void* c) { ++static_cast<fake_pic*>(c)->polls; }});
    v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) {
        x.skip();
        pic.pending.push_back(0x41);
    });
    v.on(exit_reason::hypercall, stop_on_hypercall);
    bool idled = false;
    h.sched.run(
        [](void* c) {
            *static_cast<bool*>(c) = true;
            pic.pending.push_back(0x42);  // the model raises a line while the guest halts
            return true;
        },
        &idled);
    const std::vector<std::string> expect = {"v0 enter", "v0 enter irq-window", "v0 enter inject=0:65",
                                             "v0 enter inject=0:66"};
    CHECK(h.trace == expect);
    CHECK(idled);
    CHECK(pic.acks == 2);
    CHECK(pic.polls == 4);
    CHECK(v.status() == vcpu_status::stopped);
}

TEST_CASE("vcpu: a failing guest prints its report by itself when given a sink") {
    harness h;
    vcpu& ok = h.add({{exit_reason::hypercall, 3}});
    vcpu& bad = h.add({{exit_reason::cpuid, 2}, {exit_reason::triple_fault}});
    std::string out;
    hv::fmt::sink k{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); }, &out};
    ok.report_failures_to(&k);
    bad.report_failures_to(&k);
    ok.on(exit_reason::hypercall, stop_on_hypercall);
    bad.on(exit_reason::cpuid, skip_only);
    h.sched.run();
    CHECK(out.find("vcpu 0") == std::string::npos);  // a normal stop prints nothing
    CHECK(out.find("vcpu 1: failed: guest triple fault\n") == 0);
    CHECK(out.find("#0 cpuid rip=0x1000") != std::string::npos);
    CHECK(out.find("#1 triple-fault rip=0x1002") != std::string::npos);
}

TEST_CASE("vcpu: the default CR handler emulates MOV to CR0/CR4, CLTS and LMSW; refusals become #GP") {
    auto cr_exit = [](std::uint8_t cr, cr_op op, std::uint8_t gpr, std::uint16_t lmsw = 0) {
        exit_info e{};
        e.reason = exit_reason::cr_access;
        e.instruction_length = 3;
        e.cr = {cr, op, gpr, op == cr_op::write || op == cr_op::read, lmsw};
        return e;
    };
    // Called directly, outside the loop: skip() takes the length from the fake decoder (7).
    harness h;
    vcpu& v = h.add({});
    v.state.cr0 = hv::x86::cr0::pe | hv::x86::cr0::et | (1u << 3);  // TS set
    v.state.regs.rbx = hv::x86::cr0::pe | hv::x86::cr0::et | hv::x86::cr0::ne | (1u << 3);
    default_handler::cr_access(v, cr_exit(0, cr_op::write, 3));
    CHECK(v.state.cr0 == (hv::x86::cr0::pe | hv::x86::cr0::et | hv::x86::cr0::ne | (1u << 3)));
    CHECK(v.state.rip == 0x1000 + 7);
    default_handler::cr_access(v, cr_exit(0, cr_op::clts, 0));
    CHECK((v.state.cr0 & (1u << 3)) == 0);
    default_handler::cr_access(v, cr_exit(0, cr_op::lmsw, 0, 0x000e));  // LMSW cannot clear PE
    CHECK((v.state.cr0 & 0xf) == 0xf);
    v.state.regs.r9 = 1ull << 5;
    default_handler::cr_access(v, cr_exit(4, cr_op::write, 9));
    CHECK(v.state.cr4 == (1ull << 5));
    CHECK(v.state.rip == 0x1000 + 4 * 7);

    v.state.regs.rax = hv::x86::cr0::pg;  // PG without PE: #GP(0), RIP stays
    default_handler::cr_access(v, cr_exit(0, cr_op::write, 0));
    CHECK(v.state.rip == 0x1000 + 4 * 7);
    auto d = v.events.next(true, false);
    CHECK(d.inject.vector == 13);
    CHECK(d.inject.has_error_code);

    default_handler::cr_access(v, cr_exit(3, cr_op::write, 0));  // CR3 writes are not emulated here
    CHECK(v.status() == vcpu_status::failed);
}

TEST_CASE("scheduler: a task (backend fiber) runs each round and wakes a halted vCPU; handler() chains") {
    harness h;
    // The guest halts; the task sees it asleep and raises its interrupt; the guest then
    // makes a hypercall that a chaining handler passes to the one installed before.
    vcpu& v = h.add({{exit_reason::hlt, 1}, {exit_reason::hypercall, 3}});
    v.on(exit_reason::hypercall, stop_on_hypercall);
    static exit_handler previous;
    static int chained;
    previous = v.handler(exit_reason::hypercall);
    chained = 0;
    v.on(exit_reason::hypercall, [](vcpu& c, const exit_info& e) {
        ++chained;
        previous(c, e);
    });
    CHECK((v.handler(exit_reason::hlt) == &default_handler::hlt));

    struct task_ctx {
        vcpu* v;
        int rounds = 0;
        bool raised = false;
    } t{&v};
    std::vector<char> stack(64 * 1024);
    hv::fiber task;
    task.init(stack.data(), stack.size(), [](hv::fiber& self, void* c) {
        auto* x = static_cast<task_ctx*>(c);
        for (;;) {
            ++x->rounds;
            if (!x->raised && x->v->sleeping()) {
                x->v->inject_interrupt(0x41);
                x->raised = true;
            }
            self.yield();
        }
    }, &t);
    REQUIRE(h.sched.add_task(task).ok());
    int idles = 0;
    h.sched.run([](void* c) { return ++*static_cast<int*>(c) < 3; }, &idles);
    CHECK(idles == 0);  // the task woke the guest: never idle
    CHECK(t.raised);
    CHECK(t.rounds >= 2);
    CHECK(chained == 1);
    CHECK(v.status() == vcpu_status::stopped);
    REQUIRE(h.trace.size() == 2);
    CHECK(h.trace[1] == "v0 enter inject=0:65");
    CHECK_FALSE(task.finished());  // run() returned with the task still alive
}
