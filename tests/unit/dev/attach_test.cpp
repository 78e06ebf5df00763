// dev::attachment driven through cpu::vcpu with a fake backend: each vCPU plays a
// script of "guest steps"; a step may touch devices (as an emulated MMIO access would)
// and then describes the exit it ends with.
#include <doctest/doctest.h>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include "fakes.hpp"
#include "libhv/dev/attach.hpp"
#include "libhv/dev/ide.hpp"
#include "libhv/dev/layout.hpp"

using namespace hv;
using hvtest::fake_clock;

namespace {

using step = std::function<void(cpu::vcpu&, cpu::exit_info&)>;

struct fake_arch {
    std::vector<step> script;
    std::size_t pos = 0;
    std::vector<std::string>* trace;
    int prepares = 0;
    int state_loads = 0;
    std::uint8_t tpr = 0;  // the vCPU's CR8 as a TPR shadow would hold it
};

fake_arch& arch_of(cpu::vcpu& v) { return *static_cast<fake_arch*>(v.arch()); }

hv::status fake_prepare(cpu::vcpu& v) {
    ++arch_of(v).prepares;
    return {};
}
void fake_enter(cpu::vcpu& v, const cpu::event_queue::decision* pending, cpu::exit_info& e) {
    const cpu::event_queue::decision d = pending ? *pending : cpu::event_queue::decision{};
    fake_arch& a = arch_of(v);
    (void)v.take_dirty();
    std::string line = "v" + std::to_string(v.id()) + " enter";
    if (d.inject.valid) line += " inject=" + std::to_string(int(d.inject.kind)) + ":" + std::to_string(d.inject.vector);
    if (d.tpr_threshold) line += " threshold=" + std::to_string(d.tpr_threshold);
    a.trace->push_back(line);
    e = cpu::exit_info{};
    if (d.inject.valid && d.inject.kind == cpu::event_kind::external_interrupt) v.state.rflags &= ~x86::rflags::if_;
    if (a.pos >= a.script.size()) {
        e.reason = cpu::exit_reason::triple_fault;
        return;
    }
    e.instruction_length = 1;
    a.script[a.pos++](v, e);
}
bool fake_open(const cpu::vcpu& v) { return v.state.rflags & x86::rflags::if_; }
hv::result<std::uint8_t> fake_length(cpu::vcpu&) { return std::uint8_t{2}; }
std::uint64_t fake_read_cr(cpu::vcpu& v, unsigned cr) { return cr == 0 ? v.state.cr0 : v.state.cr4; }
hv::status fake_write_cr(cpu::vcpu&, unsigned, std::uint64_t) { return {}; }
void fake_load_state(cpu::vcpu& v) { ++arch_of(v).state_loads; }
void fake_flush(cpu::vcpu&) {}
std::uint8_t fake_read_tpr(const cpu::vcpu& v) { return static_cast<const fake_arch*>(v.arch())->tpr; }
void fake_write_tpr(cpu::vcpu& v, std::uint8_t tpr) { arch_of(v).tpr = tpr; }
constexpr cpu::backend_ops fake_ops{fake_prepare,  cpu::run_once<fake_enter>,    fake_open,       fake_length,   fake_read_cr,
                                    fake_write_cr, fake_load_state, fake_flush, nullptr,      fake_read_tpr, fake_write_tpr};

// Guest "linear memory": one flat buffer at linear 0x10000.
struct flat_memory {
    std::vector<std::uint8_t> bytes = std::vector<std::uint8_t>(0x1000);
    static constexpr std::uint64_t base = 0x10000;
    static bool read(void* c, std::uint64_t la, void* dst, std::size_t n) {
        auto* m = static_cast<flat_memory*>(c);
        if (la < base || la + n > base + m->bytes.size()) return false;
        std::memcpy(dst, &m->bytes[la - base], n);
        return true;
    }
    static bool write(void* c, std::uint64_t la, const void* src, std::size_t n) {
        auto* m = static_cast<flat_memory*>(c);
        if (la < base || la + n > base + m->bytes.size()) return false;
        std::memcpy(&m->bytes[la - base], src, n);
        return true;
    }
    // One flat "page" of RAM: string I/O takes it whole (bursts where the port has them).
    static void* page(void* c, std::uint64_t la, bool) {
        auto* m = static_cast<flat_memory*>(c);
        return la >= base && la < base + m->bytes.size() && (la & 0xfff) == ((la - base) & 0xfff) ? &m->bytes[la - base]
                                                                                                 : nullptr;
    }
};

struct rig;
rig* current_rig = nullptr;

// The next handlers a vm layer would supply: a CPU model and an MSR file.
void next_cpuid(cpu::vcpu& v, const cpu::exit_info&) {
    const auto leaf = static_cast<std::uint32_t>(v.state.regs.rax);
    v.state.regs.rax = leaf == 0x40000000 ? 0x40000000 : 0x1111;
    v.state.regs.rbx = 0x2222;
    v.skip();
}
std::uint64_t msr_file_efer = 0;
void next_msr_read(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.msr.index != 0xc0000080) return v.inject_exception(13, 0);
    v.state.regs.rax = msr_file_efer;
    v.state.regs.rdx = 0;
    v.skip();
}
void next_msr_write(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.msr.index != 0xc0000080) return v.inject_exception(13, 0);
    msr_file_efer = v.state.regs.rax;
    v.skip();
}

struct rig {
    fake_clock clk{1000000000};
    dev::machine m;
    flat_memory mem;
    std::string console;
    fmt::sink console_sink{[](void* c, const char* p, std::size_t n) { static_cast<std::string*>(c)->append(p, n); },
                           &console};
    std::unique_ptr<dev::attachment> at;
    dev::attachment::mmio_window lapic_window, ioapic_window;
    std::vector<std::string> trace;
    std::vector<std::vector<char>> stacks;
    std::vector<std::unique_ptr<fake_arch>> arches;
    std::vector<std::unique_ptr<cpu::vcpu>> cpus;
    cpu::scheduler sched;

    explicit rig(unsigned vcpus) : m{dev::machine_config::pc(vcpus, 64 << 20), clk} {
        dev::attach_config c;
        c.cpuid_next = &next_cpuid;
        c.msr_read_next = &next_msr_read;
        c.msr_write_next = &next_msr_write;
        c.console = &console_sink;
        c.console_prefix = "[g] ";
        c.wait = {&clk, [](void* ctx, std::uint64_t deadline) {
                      auto* k = static_cast<fake_clock*>(ctx);
                      if (k->now() < deadline) k->set(deadline);
                  }};
        at = std::make_unique<dev::attachment>(m, c);
        lapic_window = {at.get(), dev::layout::lapic};
        ioapic_window = {at.get(), dev::layout::ioapic};
    }
    cpu::vcpu& add(std::vector<step> script) {
        arches.push_back(std::make_unique<fake_arch>());
        arches.back()->script = std::move(script);
        arches.back()->trace = &trace;
        stacks.emplace_back(64 * 1024);
        cpus.push_back(std::make_unique<cpu::vcpu>());
        cpu::vcpu& v = *cpus.back();
        v.init(static_cast<unsigned>(cpus.size() - 1), fake_ops, arches.back().get(), stacks.back().data(),
               stacks.back().size());
        v.state.rip = 0x1000;
        v.state.rflags = 0x2;
        REQUIRE(at->attach(v, v.id()).ok());
        v.on(cpu::exit_reason::io, &on_io);
        REQUIRE(sched.add(v).ok());
        return v;
    }
    void run() {
        current_rig = this;
        sched.run(&dev::attachment::idle, at.get());
    }
    // What the vm layer's I/O handler does, over the flat memory.
    static void on_io(cpu::vcpu& v, const cpu::exit_info& e) {
        rig& r = *current_rig;
        const cpu::guest_memory m{&r.mem, &flat_memory::read, &flat_memory::write, &flat_memory::page};
        auto res = cpu::emulate_io(v.state, e.io, r.at->ports(), m,
                                   {v.state[cpu::seg::ds].base, v.state[cpu::seg::es].base}, 4096);
        if (!res) return v.inject_exception(13, 0);
        if (res->remaining == 0) v.skip();
    }
    void lapic_write(std::uint32_t reg, std::uint32_t value) {
        REQUIRE(dev::attachment::mmio_write(&lapic_window, reg, 4, value));
    }
    std::uint32_t lapic_read(std::uint32_t reg) {
        std::uint64_t v = 0;
        REQUIRE(dev::attachment::mmio_read(&lapic_window, reg, 4, v));
        return static_cast<std::uint32_t>(v);
    }
};

step out(std::uint16_t port, std::uint32_t value, std::uint8_t size = 1) {
    return [=](cpu::vcpu& v, cpu::exit_info& e) {
        v.state.regs.rax = value;
        e.reason = cpu::exit_reason::io;
        e.io = {port, size, 0, false, false, false};
    };
}
step in(std::uint16_t port, std::uint8_t size, std::uint64_t rax_before) {
    return [=](cpu::vcpu& v, cpu::exit_info& e) {
        v.state.regs.rax = rax_before;
        e.reason = cpu::exit_reason::io;
        e.io = {port, size, 0, true, false, false};
    };
}
step guest(std::function<void(cpu::vcpu&)> f) {
    return [=](cpu::vcpu& v, cpu::exit_info& e) {
        f(v);
        e.reason = cpu::exit_reason::interrupt_window;  // a no-op exit
    };
}
step hlt(bool interrupts_on = true) {
    return [=](cpu::vcpu& v, cpu::exit_info& e) {
        if (interrupts_on) v.state.rflags |= x86::rflags::if_;
        e.reason = cpu::exit_reason::hlt;
    };
}
step debug_exit(std::uint32_t value) { return out(dev::layout::debug_exit, value, 4); }

} // namespace

TEST_CASE("attach: port I/O, UART output to the console, debug exit ends every vCPU") {
    rig r(1);
    std::uint64_t al_read = 0;
    r.add({out(0x3f8, 'h'), out(0x3f8, 'i'), out(0x3f8, '\r'), out(0x3f8, '\n'), out(0x3f8, 'x'),
           in(0x3fd, 1, 0x1234567800ull),                       // LSR: THRE|TEMT into AL only
           guest([&](cpu::vcpu& v) { al_read = v.state.regs.rax; }),
           debug_exit(0x31), out(0x3f8, 'z')});
    r.run();
    CHECK(al_read == 0x1234567860ull);
    CHECK(r.console == "[g] hi\n");
    r.at->flush_console();
    CHECK(r.console == "[g] hi\n[g] x\n");
    CHECK(r.at->outcome().kind == dev::event_kind::debug_exit);
    CHECK(r.at->outcome().value == 99);
    CHECK(r.at->outcome().debug_value() == 0x31);
    CHECK(r.cpus[0]->status() == cpu::vcpu_status::stopped);
    CHECK(r.cpus[0]->state.rip == 0x1000 + 7);  // seven instructions skipped, the last OUT never ran
}

TEST_CASE("attach: REP OUTSB and REP INSB through the guest's linear memory") {
    rig r(1);
    std::memcpy(&r.mem.bytes[0x100], "abc\n", 4);
    std::uint64_t rsi = 0, rcx = 0, rdi = 0, rip = 0;
    r.add({[](cpu::vcpu& v, cpu::exit_info& e) {
               v.state.regs.rsi = 0x100;  // DS base 0x10000 from the loaded state
               v.state.regs.rcx = 4;
               v.state[cpu::seg::ds].base = 0x10000;
               e.reason = cpu::exit_reason::io;
               e.io = {0x3f8, 1, 32, false, true, true};
           },
           guest([&](cpu::vcpu& v) {
               rsi = v.state.regs.rsi;
               rcx = v.state.regs.rcx;
               rip = v.state.rip;
           }),
           // MCR loopback, then three bytes out and back in through REP INSB.
           out(0x3fc, 0x10), out(0x3fa, 0x07), out(0x3f8, 'X'), out(0x3f8, 'Y'),
           [](cpu::vcpu& v, cpu::exit_info& e) {
               v.state.regs.rdi = 0x200;
               v.state.regs.rcx = 2;
               v.state[cpu::seg::es].base = 0x10000;
               e.reason = cpu::exit_reason::io;
               e.io = {0x3f8, 1, 32, true, true, true};
           },
           guest([&](cpu::vcpu& v) { rdi = v.state.regs.rdi; }),
           // A string out of the guest's memory: #GP, not a hypervisor crash.
           [](cpu::vcpu& v, cpu::exit_info& e) {
               v.state.regs.rsi = 0x5000;
               v.state.regs.rcx = 1;
               e.reason = cpu::exit_reason::io;
               e.io = {0x3f8, 1, 32, false, true, true};
           },
           debug_exit(0)});
    r.run();
    CHECK(r.console == "[g] abc\n");
    CHECK(rsi == 0x104);
    CHECK(rcx == 0);
    CHECK(rip == 0x1001);
    CHECK(rdi == 0x202);
    CHECK(r.mem.bytes[0x200] == 'X');
    CHECK(r.mem.bytes[0x201] == 'Y');
    bool gp = false;
    for (auto& t : r.trace) gp = gp || t == "v0 enter inject=2:13";
    CHECK(gp);
    CHECK(r.at->stats().io == 4 + 4 + 2 + 1);
    CHECK(r.at->outcome().value == 1);
}

TEST_CASE("attach: MSRs (x2APIC, then the next handler, unknown) and CPUID") {
    rig r(2);
    std::uint64_t x2id = 0, base = 0, efer = 0;
    struct regs4 {
        std::uint32_t eax, ebx, ecx, edx;
    } leaf1{}, timing{}, sig{};
    auto rdmsr = [](std::uint32_t msr) {
        return [=](cpu::vcpu& v, cpu::exit_info& e) {
            v.state.regs.rcx = msr;
            e.reason = cpu::exit_reason::msr_read;
            e.msr.index = msr;
        };
    };
    auto wrmsr = [](std::uint32_t msr, std::uint64_t value) {
        return [=](cpu::vcpu& v, cpu::exit_info& e) {
            v.state.regs.rcx = msr;
            v.state.regs.rax = value & 0xffffffff;
            v.state.regs.rdx = value >> 32;
            e.reason = cpu::exit_reason::msr_write;
            e.msr.index = msr;
        };
    };
    auto cpuid = [](std::uint32_t leaf) {
        return [=](cpu::vcpu& v, cpu::exit_info& e) {
            v.state.regs.rax = leaf;
            v.state.regs.rcx = 0;
            e.reason = cpu::exit_reason::cpuid;
        };
    };
    auto regs = [](regs4& out) {
        return guest([&out](cpu::vcpu& v) {
            out = {std::uint32_t(v.state.regs.rax), std::uint32_t(v.state.regs.rbx), std::uint32_t(v.state.regs.rcx),
                   std::uint32_t(v.state.regs.rdx)};
        });
    };
    r.add({rdmsr(0x1b), guest([&](cpu::vcpu& v) { base = v.state.regs.rax | (v.state.regs.rdx << 32); }),
           wrmsr(0x1b, 0xfee00000 | (1 << 11) | (1 << 10) | (1 << 8)), rdmsr(0x802),
           guest([&](cpu::vcpu& v) { x2id = v.state.regs.rax; }),
           wrmsr(0xc0000080, 0x901), rdmsr(0xc0000080), guest([&](cpu::vcpu& v) { efer = v.state.regs.rax; }),
           rdmsr(0x1a0),                 // unknown: #GP
           wrmsr(0x6e0, 0), rdmsr(0x6e0),  // TSC deadline: the machine's
           cpuid(1), regs(leaf1), cpuid(0x40000010), regs(timing), cpuid(0x40000000), regs(sig), debug_exit(0)});
    r.run();
    CHECK(base == (0xfee00000 | (1 << 11) | (1 << 8)));
    CHECK(x2id == 0);
    CHECK(efer == 0x901);
    CHECK(msr_file_efer == 0x901);
    int gps = 0;
    for (auto& t : r.trace) gps += t == "v0 enter inject=2:13";
    CHECK(gps == 1);
    CHECK(leaf1.eax == 0x1111);           // from the next handler
    CHECK(timing.eax == 1000000);          // TSC kHz
    CHECK(timing.ebx == 1000000);          // APIC timer kHz
    CHECK(sig.eax == 0x40000010);          // the range now includes the timing leaf
    CHECK(sig.ebx == 0x2222);
}

TEST_CASE("attach: each entry's preemption deadline is the next device deadline, at least 1 us away") {
    rig r(1);
    std::vector<std::uint64_t> seen;
    r.clk.set(50000);
    r.add({guest([&](cpu::vcpu& v) {
               seen.push_back(v.preemption_deadline());
               r.lapic_write(0xf0, 0x1ff);
               r.lapic_write(0x3e0, 0xb);     // divide by 1
               r.lapic_write(0x320, 0x10040);  // one-shot, masked: the deadline is still kept
               r.lapic_write(0x380, 300000);
           }),
           guest([&](cpu::vcpu& v) {
               seen.push_back(v.preemption_deadline());
               r.lapic_write(0x320, 0x30040);  // periodic, masked
               r.lapic_write(0x380, 10);        // every 10 ticks: closer than the minimal slice
           }),
           guest([&](cpu::vcpu& v) {
               seen.push_back(v.preemption_deadline());
               r.lapic_write(0x380, 0);  // stopped
           }),
           guest([&](cpu::vcpu& v) { seen.push_back(v.preemption_deadline()); }), debug_exit(0)});
    r.run();
    REQUIRE(seen.size() == 4);
    CHECK(seen[0] == 0);                // no device deadline at reset
    CHECK(seen[1] == 50000 + 300000);   // the LAPIC timer's
    CHECK(seen[2] == 50000 + 1000);     // 1 us of the 1 GHz clock, not 10 ticks
    CHECK(seen[3] == 0);
}

TEST_CASE("attach: LAPIC timer wakes a halted vCPU; interrupts acknowledged only when injected") {
    rig r(1);
    std::uint64_t woke_at = 0;
    bool isr_before_sti = true, irr_before_sti = false;
    r.add({guest([&](cpu::vcpu&) {
               r.lapic_write(0xf0, 0x1ff);     // SVR: enable
               r.lapic_write(0x3e0, 0xb);      // divide by 1
               r.lapic_write(0x320, 0x40);     // one-shot, vector 0x40
               r.lapic_write(0x380, 1000000);  // 1 ms at 1 GHz
           }),
           hlt(false),  // unreachable until... IF = 0 and nothing else: see below
           guest([&](cpu::vcpu&) {}), debug_exit(0)});
    // HLT with IF = 0 never wakes: the scheduler's idle hook waits for the timer, which
    // fires, but the interrupt stays pending; nothing else can happen, the run ends.
    r.run();
    CHECK(r.m.cpu(0).irr(0x40));
    CHECK_FALSE(r.m.cpu(0).isr(0x40));
    CHECK(r.clk.now() == 1000000);
    CHECK(r.at->stats().injected == 0);

    rig r2(1);
    r2.add({guest([&](cpu::vcpu&) {
                r2.lapic_write(0xf0, 0x1ff);
                r2.lapic_write(0x3e0, 0xb);
                r2.lapic_write(0x320, 0x40);
                r2.lapic_write(0x380, 1000000);
            }),
            guest([&](cpu::vcpu&) {
                r2.clk.advance(2000000);  // time passes while the guest runs with IF = 0
            }),
            guest([&](cpu::vcpu& v) {
                irr_before_sti = r2.m.cpu(0).irr(0x40);
                isr_before_sti = r2.m.cpu(0).isr(0x40);
                v.state.rflags |= x86::rflags::if_;
            }),
            guest([&](cpu::vcpu&) {
                woke_at = r2.clk.now();
                r2.lapic_write(0xb0, 0);  // EOI
            }),
            // Periodic at 100 µs, then HLT three times: the idle hook sleeps to each deadline.
            guest([&](cpu::vcpu&) {
                r2.lapic_write(0x320, 0x20041);
                r2.lapic_write(0x380, 100000);
            }),
            hlt(), guest([&](cpu::vcpu&) { r2.lapic_write(0xb0, 0); }), hlt(),
            guest([&](cpu::vcpu&) { r2.lapic_write(0xb0, 0); }), hlt(),
            guest([&](cpu::vcpu&) { r2.lapic_write(0xb0, 0); }), debug_exit(0)});
    r2.run();
    CHECK(irr_before_sti);
    CHECK_FALSE(isr_before_sti);
    CHECK(woke_at == 2000000);
    int injected40 = 0, injected41 = 0;
    for (auto& t : r2.trace) {
        injected40 += t == "v0 enter inject=0:64";
        injected41 += t == "v0 enter inject=0:65";
    }
    CHECK(injected40 == 1);
    CHECK(injected41 == 3);
    CHECK(r2.at->stats().idle_waits == 3);
    CHECK(r2.clk.now() == 2000000 + 3 * 100000);
}

TEST_CASE("attach: the LAPIC owns the TPR, the vCPU's CR8 mirrors it both ways; a TPR-held interrupt sets the threshold") {
    rig r(1);
    std::uint8_t cpu_tpr_after_mmio = 0;
    std::uint32_t mmio_tpr_after_cr8 = 0, ppr_after_cr8 = 0;
    bool irr_held = false;
    r.add({guest([&](cpu::vcpu& v) {
               v.state.rflags |= x86::rflags::if_;
               r.lapic_write(0xf0, 0x1ff);  // SVR: enable
               r.lapic_write(0x80, 0x45);   // TPR by MMIO
           }),
           guest([&](cpu::vcpu& v) {
               cpu_tpr_after_mmio = v.tpr();
               arch_of(v).tpr = 0x70;  // MOV to CR8 (7): no exit, the mirror changes
           }),
           guest([&](cpu::vcpu&) {
               mmio_tpr_after_cr8 = r.lapic_read(0x80);
               ppr_after_cr8 = r.lapic_read(0xa0);
               r.lapic_write(0x300, 0x40000 | 0x55);  // self IPI, vector 0x55: held back by TPR 0x70
           }),
           guest([&](cpu::vcpu& v) {
               irr_held = r.m.cpu(0).irr(0x55);
               arch_of(v).tpr = 0x20;  // MOV to CR8 (2): the threshold exit follows
           }),
           guest([&](cpu::vcpu&) { r.lapic_write(0xb0, 0); }), debug_exit(0)});
    r.run();
    CHECK(cpu_tpr_after_mmio == 0x45);
    CHECK(mmio_tpr_after_cr8 == 0x70);
    CHECK(ppr_after_cr8 == 0x70);
    CHECK(irr_held);
    CHECK(r.m.cpu(0).tpr() == 0x20);
    REQUIRE(r.trace.size() >= 5);
    CHECK(r.trace[3] == "v0 enter threshold=5");  // after the IPI: held by the TPR, exit below class 5
    CHECK(r.trace[4] == "v0 enter inject=0:85");   // CR8 = 2: delivered at the next entry
}

TEST_CASE("attach: PIT IRQ0 through the 8259 (ExtINT) wakes HLT") {
    rig r(1);
    r.add({// 8259: ICW1..4, vector base 0x20, all but IRQ0 masked.
           out(0x20, 0x11), out(0x21, 0x20), out(0x21, 0x04), out(0x21, 0x01), out(0x21, 0xfe),
           // PIT channel 0, mode 2, count 1193 (1 ms at 1.193182 MHz).
           out(0x43, 0x34), out(0x40, 1193 & 0xff), out(0x40, 1193 >> 8), hlt(),
           out(0x20, 0x20),  // EOI
           hlt(), out(0x20, 0x20), debug_exit(0)});
    r.run();
    int irq0 = 0;
    for (auto& t : r.trace) irq0 += t == "v0 enter inject=0:32";
    CHECK(irq0 == 2);
    // Two PIT periods of 1193 counts at 1.193182 MHz in 1 GHz ticks, plus the one input
    // clock (838 ns) the 8254 takes to load a count.
    CHECK(r.clk.now() == dev::mul_div_ceil(2 * 1193 + 1, 1000000000, 1193182));
}

TEST_CASE("attach: INIT/SIPI start parked vCPUs (targeted and broadcast)") {
    rig r(3);
    std::uint32_t icr_after = 0xffffffff;
    auto yield = [] { return guest([](cpu::vcpu& v) { v.request_yield(); }); };
    cpu::vcpu& bsp = r.add({guest([&](cpu::vcpu& v) {
                                r.lapic_write(0xf0, 0x1ff);
                                r.lapic_write(0x310, 1u << 24);  // destination APIC 1
                                r.lapic_write(0x300, 0x4500);    // INIT, assert
                                r.lapic_write(0x300, 0x4608);    // SIPI vector 8
                                icr_after = r.lapic_read(0x300);
                                v.request_yield();
                            }),
                            yield(),
                            guest([&](cpu::vcpu& v) {
                                r.lapic_write(0x300, 0xc4500);  // INIT all excluding self
                                r.lapic_write(0x300, 0xc4609);  // SIPI vector 9 to all but self
                                v.request_yield();
                            }),
                            yield(), yield(), debug_exit(0)});
    std::uint64_t ap1_base = 0, ap1_rip = 1, ap1_base2 = 0, ap2_base = 0;
    cpu::vcpu& ap1 = r.add({guest([&](cpu::vcpu& v) {
                                ap1_base = v.state[cpu::seg::cs].base;
                                ap1_rip = v.state.rip;
                            }),
                            hlt(false), guest([&](cpu::vcpu& v) { ap1_base2 = v.state[cpu::seg::cs].base; }),
                            hlt(false)});
    cpu::vcpu& ap2 = r.add({guest([&](cpu::vcpu& v) { ap2_base = v.state[cpu::seg::cs].base; }), hlt(false)});
    CHECK(r.at->parked(1));
    CHECK(r.at->parked(2));
    r.run();
    CHECK((icr_after & (1u << 12)) == 0);  // delivery status idle: delivered at once
    CHECK(ap1_base == 0x8000);
    CHECK(ap1_rip == 0);
    CHECK(ap1_base2 == 0x9000);
    CHECK(ap2_base == 0x9000);  // AP 2 only saw the broadcast
    CHECK(r.at->stats().sipis == 3);
    CHECK(r.at->stats().inits == 3);
    CHECK(r.arches[1]->prepares == 3);  // fiber start, two SIPIs
    CHECK(bsp.status() == cpu::vcpu_status::stopped);
    CHECK(ap1.status() == cpu::vcpu_status::stopped);
    CHECK(ap2.status() == cpu::vcpu_status::stopped);
}

TEST_CASE("attach: ACPI S5 and an 8042 reset end every vCPU with their outcome") {
    rig off(2);
    off.add({out(0x604, (5u << 10) | (1u << 13), 2), out(0x3f8, 'x')});
    off.add({});
    off.run();
    CHECK(off.at->outcome().kind == dev::event_kind::power_off);
    CHECK(off.cpus[0]->status() == cpu::vcpu_status::stopped);
    CHECK(off.cpus[1]->status() == cpu::vcpu_status::stopped);  // the parked AP too
    CHECK(std::string(off.cpus[0]->why()) == "guest powered off (ACPI S5)");

    rig reset(1);
    reset.add({out(0x64, 0xfe), out(0x3f8, 'x')});
    reset.run();
    CHECK(reset.at->outcome().kind == dev::event_kind::reset);
    CHECK(reset.cpus[0]->status() == cpu::vcpu_status::stopped);
    CHECK(reset.at->stats().io == 1);  // the OUT after the reset never ran
}

TEST_CASE("attach: an IOAPIC-routed interrupt reaches the vCPU through the MMIO window") {
    rig r(1);
    r.add({guest([&](cpu::vcpu& v) {
               r.lapic_write(0xf0, 0x1ff);
               // IOAPIC redirection entry for GSI 4 (COM1): vector 0x34, fixed, edge, dest APIC 0.
               REQUIRE(dev::attachment::mmio_write(&r.ioapic_window, 0x00, 4, 0x10 + 2 * 4));
               REQUIRE(dev::attachment::mmio_write(&r.ioapic_window, 0x10, 4, 0x34));
               REQUIRE(dev::attachment::mmio_write(&r.ioapic_window, 0x00, 4, 0x10 + 2 * 4 + 1));
               REQUIRE(dev::attachment::mmio_write(&r.ioapic_window, 0x10, 4, 0));
               v.state.rflags |= x86::rflags::if_;
           }),
           out(0x21, 0xff),             // 8259 fully masked: only the IOAPIC path is left
           out(0x3fc, 0x08), out(0x3f9, 0x02),  // OUT2, THR-empty interrupt on
           guest([&](cpu::vcpu&) { r.lapic_write(0xb0, 0); }), debug_exit(0)});
    r.run();
    int injected = 0;
    for (auto& t : r.trace) injected += t == "v0 enter inject=0:52";
    CHECK(injected == 1);
    CHECK(r.at->stats().mmio == 6);
}

TEST_CASE("attach: a failed vCPU ends its halted siblings even with a periodic timer armed") {
    rig r(2);
    r.add({guest([&](cpu::vcpu&) {
               r.lapic_write(0xf0, 0x1ff);
               r.lapic_write(0x3e0, 0xb);
               r.lapic_write(0x320, 0x20040);  // periodic, keeps the idle hook busy forever
               r.lapic_write(0x380, 1000);
           })});  // then the script runs out: a triple fault
    r.add({});      // parked, never started
    r.run();
    CHECK(r.cpus[0]->status() == cpu::vcpu_status::failed);
    CHECK(r.cpus[1]->status() == cpu::vcpu_status::stopped);
    CHECK(std::string(r.cpus[1]->why()) == "another vCPU of the guest failed");
}

TEST_CASE("attach: REP INSW/OUTSW to an IDE disk go to its data port as bursts") {
    rig r(1);
    std::vector<std::uint8_t> image(8 * 512);
    for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i * 5 + 1);
    dev::ide_controller ide{std::span<std::uint8_t>(image)};
    REQUIRE(r.m.ports().map(dev::ata::command_block, 8, ide.command_block(), dev::size1 | dev::size2 | dev::size4).ok());
    auto string_io = [](bool in, std::uint64_t index, std::uint64_t count) {
        return [=](cpu::vcpu& v, cpu::exit_info& e) {
            (in ? v.state.regs.rdi : v.state.regs.rsi) = index;
            v.state.regs.rcx = count;
            v.state[cpu::seg::ds].base = v.state[cpu::seg::es].base = 0x10000;
            e.reason = cpu::exit_reason::io;
            e.io = {dev::ata::command_block, 2, 32, in, true, true};
        };
    };
    for (unsigned i = 0; i < 512; ++i) r.mem.bytes[i] = static_cast<std::uint8_t>(0xa0 ^ i);
    std::uint64_t rcx_after_write = 1;
    r.add({out(0x1f6, 0xe0), out(0x1f2, 1), out(0x1f3, 3), out(0x1f4, 0), out(0x1f5, 0), out(0x1f7, 0x30),
           string_io(false, 0, 256), guest([&](cpu::vcpu& v) { rcx_after_write = v.state.regs.rcx; }),
           out(0x1f6, 0xe0), out(0x1f2, 1), out(0x1f3, 3), out(0x1f7, 0x20), string_io(true, 0x800, 256),
           debug_exit(0)});
    r.run();
    CHECK(rcx_after_write == 0);
    CHECK(std::equal(r.mem.bytes.begin(), r.mem.bytes.begin() + 512, image.begin() + 3 * 512));
    CHECK(std::equal(r.mem.bytes.begin() + 0x800, r.mem.bytes.begin() + 0xa00, image.begin() + 3 * 512));
    CHECK(ide.stats().sectors_written == 1);
    CHECK(ide.stats().sectors_read == 1);
    CHECK(r.at->stats().io == 6 + 256 + 4 + 256 + 1);
}
