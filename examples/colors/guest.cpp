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
#include "libhv/io/xen_toolstack.hpp"
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

// Mean ticks of `n` runs of `op`.
template <class Op>
std::uint64_t mean_ticks(unsigned n, Op op) {
    const std::uint64_t t0 = x86::rdtsc();
    for (unsigned i = 0; i < n; ++i) op();
    return (x86::rdtsc() - t0) / n;
}

// The MMU a guest can observe: reloading CR3 exits under shadow paging (the hypervisor
// must switch shadows), not under nested paging. CPUID, which always exits, is the
// yardstick, so the test holds on any host whatever an exit costs there.
struct mmu_probe {
    std::uint64_t cr3_ticks, cpuid_ticks;
    [[nodiscard]] bool cr3_exits() const { return 2 * cr3_ticks >= cpuid_ticks; }
};
mmu_probe probe_mmu() {
    constexpr unsigned n = 16;
    const std::uint64_t cr3 = x86::read_cr3();
    mmu_probe p{};
    p.cr3_ticks = mean_ticks(n, [&] { x86::write_cr3(cr3); });
    p.cpuid_ticks = mean_ticks(n, [] { (void)x86::cpuid(0); });
    return p;
}

// ---- the Xen PV interfaces, through libhv/guest/xen ----
namespace gx = hv::guest::xen;
namespace xen = hv::xen;

constexpr std::uint8_t callback_vector = 0xe0;

struct event_flag {
    volatile std::uint64_t n = 0;
    volatile bool seen = false;
    static void on(xen::evtchn_port_t, void* self) {
        auto* f = static_cast<event_flag*>(self);
        f->n = f->n + 1;
        f->seen = true;
    }
};

struct pv_report {
    bool callback_vector = false, pv_timer = false;
};

// Hypercall page, console_io, an event to itself through the callback vector, a one-shot
// timer that wakes SCHEDOP_block, the console ring and a block write + read back. Each
// part that works is printed the way Linux reports it; the first failure ends the check.
gx::hypercalls hc;
gx::upcall events;
gx::grant_table grants;
gx::blk_frontend disk;

hv::result<pv_report> use_pv_interfaces(std::uint32_t xen_base) {
    pv_report r;
    HV_TRY(hc.install(xen_base, hv::rt::alloc_zeroed_pages(1)));
    constexpr char hello[] = "color: hello through console_io\n";
    if (hc.console_write(hello, sizeof hello - 1) != 0) return hv::fail(hv::errc::fault, "console_io write refused");

    HV_TRY(events.install(hc, callback_vector, hv::rt::alloc_zeroed_pages(1)));
    x86::sti();
    xen::evtchn_port_t unbound = 0, local = 0;
    static event_flag loopback;
    if (hc.alloc_unbound(xen::domid_self, unbound) != 0 || hc.bind_interdomain(xen::domid_self, unbound, local) != 0)
        return hv::fail(hv::errc::fault, "loopback event channel refused");
    HV_TRY(events.on(unbound, &event_flag::on, &loopback));
    if (hc.send(local) != 0) return hv::fail(hv::errc::fault, "EVTCHNOP_send refused");
    r.callback_vector = loopback.n == 1;  // IF = 1: taken as the hypercall returned
    if (!r.callback_vector) return r;
    hv::println("xen: Xen HVM callback vector {:#x} for event delivery is enabled ({} upcall)", callback_vector,
                events.upcalls());

    // A one-shot timer 100 us ahead on Xen system time (vcpu_info) wakes SCHEDOP_block.
    xen::evtchn_bind_virq virq{xen::virq_timer, 0, 0};
    static event_flag timer;
    if (hc.event_channel_op(xen::evtchnop::bind_virq, &virq) != 0) return hv::fail(hv::errc::fault, "bind VIRQ_TIMER");
    HV_TRY(events.on(virq.port, &event_flag::on, &timer));
    const auto now = [] { return gx::system_time_ns(events.shared()->vcpu[0].time); };
    const std::uint64_t deadline = now() + 100'000;
    xen::vcpu_set_singleshot_timer t{deadline, xen::vcpu_sshottmr_future, 0};
    if (hc.call(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, reinterpret_cast<std::uintptr_t>(&t)) != 0)
        return hv::fail(hv::errc::fault, "VCPUOP_set_singleshot_timer refused");
    unsigned blocks = 0;
    for (; blocks < 8 && !timer.seen; ++blocks) {
        x86::cli();
        if (!timer.seen) {
            x86::sti();  // events reach the vCPU at entries only: the next exit is the block
            (void)hc.sched_op(xen::schedop_block);
        }
        x86::sti();
    }
    const std::uint64_t woke = now();
    r.pv_timer = timer.n == 1 && woke >= deadline;
    hv::println("color: pv timer: one-shot fired {} ns after its deadline ({} SCHEDOP_block)",
                static_cast<std::int64_t>(woke - deadline), blocks);
    if (!r.pv_timer) return r;
    hv::println("xen: Xen: using vcpuop timer interface");

    constexpr char ring_hello[] = "color: hello through the console ring\n";
    if (!gx::console_ring_write(hc, ring_hello, sizeof ring_hello - 1))
        return hv::fail(hv::errc::fault, "console ring write failed");

    namespace ts = xen::toolstack;
    HV_TRY(grants.install(hc, hv::rt::alloc_zeroed_pages(1)));
    auto* out = static_cast<std::uint8_t*>(hv::rt::alloc_zeroed_pages(1));
    auto* in = static_cast<std::uint8_t*>(hv::rt::alloc_zeroed_pages(1));
    constexpr xen::grant_ref_t out_ref = ts::first_free_ref + 1, in_ref = ts::first_free_ref + 2;
    HV_TRY(grants.grant(out_ref, ts::backend_domid, out, true));
    HV_TRY(grants.grant(in_ref, ts::backend_domid, in, false));
    HV_TRY(disk.connect(hc, events, grants, hv::rt::alloc_zeroed_pages(1)));
    for (unsigned i = 0; i < 4096; ++i) out[i] = static_cast<std::uint8_t>(i * 29 + 11);
    if (disk.transfer(hc, xen::blkif_op_write, 32, out_ref, 1) != xen::blkif_rsp_okay ||
        disk.transfer(hc, xen::blkif_op_read, 32, in_ref, 2) != xen::blkif_rsp_okay)
        return hv::fail(hv::errc::fault, "block request failed");
    if (__builtin_memcmp(in, out, 4096) != 0) return hv::fail(hv::errc::fault, "block read back differs");
    hv::println("color: pv disk: 4 KiB written to sector 32 and read back through the block ring ({} response events)",
                disk.notifications());
    x86::cli();
    return r;
}

// PCI functions 0 of bus 0 whose class is mass storage (1) or network (2).
unsigned pci_disks_and_nics() {
    unsigned n = 0;
    for (std::uint32_t dev = 0; dev < 32; ++dev) {
        const std::uint32_t address = 0x80000000u | dev << 11;
        x86::outl(0xcf8, address);
        if ((x86::inl(0xcfc) & 0xffff) == 0xffff) continue;
        x86::outl(0xcf8, address | 0x08);
        const std::uint32_t class_code = x86::inl(0xcfc) >> 24;
        n += class_code == 1 || class_code == 2;
    }
    x86::outl(0xcf8, 0);
    return n;
}

// Xen's platform ports (PV-on-HVM): the magic at 0x10, then unplug the emulated IDE disks
// and NICs before the PV drivers take over, as Linux's xen_unplug_emulated_devices does.
hv::status unplug_emulated_devices() {
    constexpr std::uint16_t port = 0x10;
    const std::uint16_t magic = x86::inw(port);
    if (magic != 0x49d2) {
        hv::println("color: xen platform ports: none (read {:#x} at {:#x})", magic, port);
        return hv::fail(hv::errc::not_supported, "no Xen unplug ports beside the emulated devices");
    }
    const unsigned before = pci_disks_and_nics();
    x86::outw(port, 1 | 2);  // all IDE disks, all NICs
    const unsigned after = pci_disks_and_nics();
    hv::println("xen: platform ports (magic {:#x}, version {}): unplugged emulated IDE disks and NICs; PCI disk/NIC "
                "functions {} before, {} after",
                magic, x86::inb(port + 2), before, after);
    if (after != 0) return hv::fail(hv::errc::fault, "an emulated disk or NIC is still there after the unplug");
    return {};
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

} // namespace

HV_PROGRAM(color, "color", "report this guest's color and check it against expect=POLICY") {
    const std::uint64_t main_ticks = x86::rdtsc();
    hv::vm::color seen;

    const bool under_hypervisor = x86::cpuid(1).ecx >> 31 & 1;
    const signature first = hypervisor_signature(hv::vm::hypervisor_leaf);
    const std::uint32_t xen_base = under_hypervisor ? gx::find_cpuid_base().value_or(0) : 0;
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
    // Xen beside emulated devices: unplug them first, as PV-on-HVM drivers do. Then every
    // PV interface the leaves promise must work.
    if (seen.xen_leaves && seen.emulated_devices) HV_TRY(unplug_emulated_devices());
    if (seen.xen_leaves) {
        auto pv = use_pv_interfaces(xen_base);
        if (!pv) {
            hv::println("color: pv interfaces: {}", pv.err().what);
            return hv::fail(hv::errc::fault, "a Xen PV interface the leaves promise does not work");
        }
        seen.callback_vector = pv->callback_vector;
        seen.pv_timer = pv->pv_timer;
    }
    hv::println("color: callback vector: {}; pv timer: {}", seen.callback_vector ? "in use" : "not available",
                seen.pv_timer ? "in use" : "not available");

    seen.pcid_hidden = !(x86::cpuid(1).ecx >> 17 & 1);
    hv::println("color: pcid: {}", seen.pcid_hidden ? "hidden" : "visible");
    const mmu_probe mmu = probe_mmu();
    seen.cr3_load_exits = under_hypervisor && mmu.cr3_exits();
    hv::println("color: mmu: mov-cr3 {} ticks, cpuid {} ticks: cr3 loads {}: {} paging", mmu.cr3_ticks, mmu.cpuid_ticks,
                seen.cr3_load_exits ? "exit" : "do not exit", seen.cr3_load_exits ? "shadow" : "nested or none");
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
