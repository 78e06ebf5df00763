// The color test guest: tells which guest mode ("color") it runs in the way Xen guests
// find out — hypervisor CPUID leaves, how it was entered, which emulated devices answer,
// which PV parts it can use — prints an lscpu/dmesg-like report and checks it against the
// policy named by expect= on its command line (vm::promised_color). With
// hv-start-tsc=TICKS (the hypervisor's start) it reports the start-up benchmarks.
//
//   hvimage --policy=pvh            (packs this guest when no --guest is given)
#include <cstdint>
#include <string_view>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/guest/xen.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/cpu_model.hpp"
#include "libhv/vm/policy.hpp"

namespace {

namespace x86 = hv::x86;

const char* yes_no(bool b) { return b ? "yes" : "no"; }

struct signature {
    char text[13] = {};
    std::uint32_t max_leaf = 0;
};
signature hypervisor_signature(std::uint32_t leaf) {
    const auto r = x86::cpuid(leaf);
    signature s;
    __builtin_memcpy(s.text, &r.ebx, 4);
    __builtin_memcpy(s.text + 4, &r.ecx, 4);
    __builtin_memcpy(s.text + 8, &r.edx, 4);
    s.max_leaf = r.eax;
    return s;
}

// Xen's leaves may sit at any 0x100 step above 0x40000000 (Viridian can take the first).
std::uint32_t find_xen_leaves() {
    for (std::uint32_t base = hv::vm::hypervisor_leaf; base < 0x40010000; base += 0x100) {
        const signature s = hypervisor_signature(base);
        if (std::string_view(s.text) == "XenVMMXenVMM" && s.max_leaf >= base + 2) return base;
    }
    return 0;
}

// The 16550's scratch register keeps what is written; open bus does not.
bool uart_answers() {
    constexpr std::uint16_t scratch = 0x3f8 + 7;
    x86::outb(scratch, 0xa5);
    const bool a = x86::inb(scratch) == 0xa5;
    x86::outb(scratch, 0x5a);
    return a && x86::inb(scratch) == 0x5a;
}

// PIT channel 0 loaded with a count counts down from it; open bus reads 0xffff.
bool pit_answers() {
    constexpr std::uint16_t count = 0x1000;
    x86::outb(0x43, 0x34);  // channel 0, lobyte/hibyte, mode 2
    x86::outb(0x40, count & 0xff);
    x86::outb(0x40, count >> 8);
    x86::outb(0x43, 0x00);  // latch channel 0
    const std::uint16_t lo = x86::inb(0x40), hi = x86::inb(0x40);
    return static_cast<std::uint16_t>(lo | hi << 8) <= count;
}

// The master PIC's mask register (OCW1) reads back; left all masked.
bool pic_answers() {
    x86::outb(0x21, 0xa5);
    const bool a = x86::inb(0x21) == 0xa5;
    x86::outb(0x21, 0xff);
    return a;
}

// PCI configuration mechanism #1: the address register at 0xcf8 reads back.
bool pci_config_answers() {
    x86::outl(0xcf8, 0x80000000u);
    const bool a = x86::inl(0xcf8) == 0x80000000u;
    x86::outl(0xcf8, 0);
    return a;
}

hv::vm::entry_kind entry_of(hv::boot::loader l) {
    return l == hv::boot::loader::pvh ? hv::vm::entry_kind::pvh : hv::vm::entry_kind::multiboot;
}

// COM1 data-register writes, each a port-I/O exit under any libhv policy.
std::uint64_t console_byte_ticks(unsigned bytes) {
    hv::console::flush();
    constexpr std::string_view tag = "color: console-bench ";
    for (char c : tag) x86::outb(0x3f8, static_cast<std::uint8_t>(c));
    const std::uint64_t t0 = x86::rdtsc();
    for (unsigned i = 0; i < bytes; ++i) x86::outb(0x3f8, '.');
    const std::uint64_t t1 = x86::rdtsc();
    x86::outb(0x3f8, '\n');
    return t1 - t0;
}

struct xen_probe {
    bool callback_vector = false;
    bool pv_timer = false;
};

void count_event(hv::xen::evtchn_port_t, void* counter) { ++*static_cast<volatile unsigned*>(counter); }

xen_probe probe_xen_events(std::uint32_t xen_base) {
    namespace gx = hv::guest::xen;
    namespace xen = hv::xen;
    static gx::hypercalls hc;
    static gx::upcall events;
    static volatile unsigned loop_events = 0, timer_events = 0;
    xen_probe r;
    if (!hc.install(xen_base, hv::rt::alloc_zeroed_pages(1)).ok()) return r;
    if (!events.install(hc, 0xe0, hv::rt::alloc_zeroed_pages(1)).ok()) return r;
    x86::sti();
    xen::evtchn_port_t unbound = 0, local = 0;
    if (hc.alloc_unbound(xen::domid_self, unbound) == 0 && hc.bind_interdomain(xen::domid_self, unbound, local) == 0 &&
        events.on(unbound, &count_event, const_cast<unsigned*>(&loop_events)).ok() && hc.send(local) == 0)
        r.callback_vector = loop_events == 1;
    // A timer 100 µs ahead (vcpu_info's system time) wakes SCHEDOP_block.
    xen::evtchn_bind_virq virq{xen::virq_timer, 0, 0};
    xen::vcpu_set_singleshot_timer timer{gx::system_time_ns(events.shared()->vcpu[0].time) + 100'000,
                                         xen::vcpu_sshottmr_future, 0};
    if (hc.event_channel_op(xen::evtchnop::bind_virq, &virq) == 0 &&
        events.on(virq.port, &count_event, const_cast<unsigned*>(&timer_events)).ok() &&
        hc.call(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, reinterpret_cast<std::uintptr_t>(&timer)) == 0 &&
        hc.sched_op(xen::schedop_block) == 0)
        r.pv_timer = timer_events == 1;
    asm volatile("cli" ::: "memory");
    return r;
}

} // namespace

HV_PROGRAM(color, "color", "report this guest's color and check it against expect=POLICY") {
    const std::uint64_t main_ticks = x86::rdtsc();
    hv::vm::color seen;

    const bool under_hypervisor = x86::cpuid(1).ecx >> 31 & 1;
    const signature first = hypervisor_signature(hv::vm::hypervisor_leaf);
    const std::uint32_t xen_base = under_hypervisor ? find_xen_leaves() : 0;
    seen.xen_leaves = xen_base != 0;
    const std::string_view vendor = seen.xen_leaves ? "Xen" : under_hypervisor ? std::string_view(first.text) : "none";
    hv::println("Hypervisor vendor:   {}", vendor);
    hv::println("color: cpuid {:#x}: \"{}\" max-leaf={:#x}", hv::vm::hypervisor_leaf,
                std::string_view(under_hypervisor ? first.text : ""), under_hypervisor ? first.max_leaf : 0);
    if (seen.xen_leaves) {
        const auto v = x86::cpuid(xen_base + 1).eax;
        hv::println("color: xen leaves at {:#x}, version {}.{}", xen_base, v >> 16, v & 0xffff);
    } else {
        hv::println("color: xen leaves: none");
    }

    seen.entry = entry_of(ctx.boot.source);
    hv::println("color: entry: {} (loader {}), real mode: no", hv::vm::to_string(seen.entry),
                hv::boot::to_string(ctx.boot.source));

    const bool uart = uart_answers(), pit = pit_answers(), pic = pic_answers(), pci = pci_config_answers();
    seen.emulated_devices = uart || pit || pic || pci;
    hv::println("color: devices: com1-scratch={} pit={} pic={} pci-config={}", yes_no(uart), yes_no(pit), yes_no(pic),
                yes_no(pci));
    hv::println("color: emulated devices: {}", seen.emulated_devices ? "present" : "none");
    // With Xen leaves: an event channel to itself must arrive through a callback vector,
    // and a one-shot timer (VIRQ_TIMER) must wake SCHEDOP_block.
    if (seen.xen_leaves) {
        const xen_probe pv = probe_xen_events(xen_base);
        seen.callback_vector = pv.callback_vector;
        seen.pv_timer = pv.pv_timer;
    }
    hv::println("color: callback vector: {}; pv timer: {}", seen.callback_vector ? "works" : "not available",
                seen.pv_timer ? "works" : "not available");

    seen.pcid_hidden = !(x86::cpuid(1).ecx >> 17 & 1);
    hv::println("color: pcid: {}", seen.pcid_hidden ? "hidden" : "visible");
    if (under_hypervisor) {
        hv::println("Virtualization type: {}", hv::vm::to_string(seen.type()));
    } else {
        hv::println("Virtualization type: none (no hypervisor: CPUID.1:ECX.31 clear)");
    }

    const auto expect = hv::cmdline_value(ctx.cmdline, "expect");
    if (const auto hv_start = hv::cmdline_value(ctx.cmdline, "hv-start-tsc")) {
        const auto t = hv::parse_u64(*hv_start);
        if (!t || *t > hv::rt::start_ticks())
            return hv::fail(hv::errc::invalid_argument, "hv-start-tsc= is no earlier TSC");
        const std::string_view name = expect ? *expect : "none";
        char bench[64];
        constexpr unsigned bytes = 64;
        const std::uint64_t console = console_byte_ticks(bytes);
        hv::fmt::format_to(bench, sizeof bench, "colors.{}.hv-start-to-guest-start", name);
        hv::rt::bench_report(bench, 1, hv::rt::start_ticks() - *t, "ticks");
        hv::fmt::format_to(bench, sizeof bench, "colors.{}.guest-start-to-main", name);
        hv::rt::bench_report(bench, 1, main_ticks - hv::rt::start_ticks(), "ticks");
        hv::fmt::format_to(bench, sizeof bench, "colors.{}.console-byte-exit", name);
        hv::rt::bench_report(bench, bytes, console / bytes, "ticks");
    }
    if (!expect) {
        hv::println("color: no expect= given: report only");
        return {};
    }
    const auto promised = hv::vm::find_preset(*expect);
    if (!promised) return hv::fail(hv::errc::invalid_argument, "expect= names no policy");
    if (const char* why = hv::vm::color_mismatch(hv::vm::promised_color(*promised), seen)) {
        hv::println("color: expected {}: {}", *expect, why);
        return hv::fail(hv::errc::fault, "this guest's color is not the one its policy promises");
    }
    hv::println("color: matches policy {}", *expect);
    return {};
}
