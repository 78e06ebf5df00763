// The color test guest: tells which guest mode ("color") it runs in the way Xen guests
// find out — hypervisor CPUID leaves, how it was entered, which emulated devices answer,
// which PV parts it can use — prints an lscpu/dmesg-like report and checks it against the
// policy named by expect= on its command line and the entry named by expect-entry= (the
// one the hypervisor chose: vm::choose_entry, vm::promised_color). With
// hv-start-tsc=TICKS (the hypervisor's start) it reports the start-up benchmarks.
//
//   hvimage --policy=pvh            (packs this guest when no --guest is given)
#include <cstdint>
#include <string_view>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
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
    std::uint64_t disk_round_trip_ticks = 0;  // 4 KiB written and read back through the ring
    std::uint64_t timer_late_ns = 0;          // its deadline to the guest running on after the handler
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
    r.timer_late_ns = woke - deadline;
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
    const std::uint64_t t0 = x86::rdtsc();
    if (disk.transfer(hc, xen::blkif_op_write, 32, out_ref, 1) != xen::blkif_rsp_okay ||
        disk.transfer(hc, xen::blkif_op_read, 32, in_ref, 2) != xen::blkif_rsp_okay)
        return hv::fail(hv::errc::fault, "block request failed");
    r.disk_round_trip_ticks = x86::rdtsc() - t0;
    if (__builtin_memcmp(in, out, 4096) != 0) return hv::fail(hv::errc::fault, "block read back differs");
    hv::println("color: pv disk: 4 KiB written to sector 32 and read back through the block ring ({} response events, "
                "{} ticks)",
                disk.notifications(), r.disk_round_trip_ticks);
    x86::cli();
    return r;
}

constexpr std::uint16_t ata_base = 0x1f0, ata_alt_status = 0x3f6;  // the primary IDE channel

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
    const std::uint8_t ide_status = x86::inb(ata_base + 7);  // open bus once the IDE ports are gone
    hv::println("xen: platform ports (magic {:#x}, version {}): unplugged emulated IDE disks and NICs; PCI disk/NIC "
                "functions {} before, {} after; IDE status port reads {:#x}",
                magic, x86::inb(port + 2), before, after, ide_status);
    if (after != 0 || ide_status != 0xff)
        return hv::fail(hv::errc::fault, "an emulated disk or NIC is still there after the unplug");
    return {};
}

// ---- the emulated IDE disk (legacy ports, PIO) ----
enum : std::uint8_t { ata_err = 0x01, ata_drq = 0x08, ata_bsy = 0x80 };

// The first PCI function 0 of bus 0 whose class is IDE (01:01).
struct pci_ide {
    bool found = false;
    unsigned device = 0;
    std::uint32_t id = 0;
};
pci_ide find_pci_ide() {
    pci_ide r;
    for (std::uint32_t dev = 0; dev < 32 && !r.found; ++dev) {
        const std::uint32_t address = 0x80000000u | dev << 11;
        x86::outl(0xcf8, address);
        const std::uint32_t id = x86::inl(0xcfc);
        if ((id & 0xffff) == 0xffff) continue;
        x86::outl(0xcf8, address | 0x08);
        if (x86::inl(0xcfc) >> 16 == 0x0101) r = {true, dev, id};
    }
    x86::outl(0xcf8, 0);
    return r;
}

void ata_select(std::uint32_t lba, std::uint8_t count) {
    x86::outb(ata_base + 6, static_cast<std::uint8_t>(0xe0 | (lba >> 24 & 0x0f)));  // master, LBA
    x86::outb(ata_base + 2, count);
    x86::outb(ata_base + 3, static_cast<std::uint8_t>(lba));
    x86::outb(ata_base + 4, static_cast<std::uint8_t>(lba >> 8));
    x86::outb(ata_base + 5, static_cast<std::uint8_t>(lba >> 16));
}
// Polls the alternate status (which leaves the IRQ alone) until BSY clears.
std::uint8_t ata_wait() {
    std::uint8_t st;
    for (unsigned i = 0; i < 100000; ++i)
        if (!((st = x86::inb(ata_alt_status)) & ata_bsy)) return st;
    return st;
}
void ata_read_words(std::uint16_t* dst, unsigned words) {
    asm volatile("rep insw" : "+D"(dst), "+c"(words) : "d"(std::uint16_t{ata_base}) : "memory");
}
void ata_write_words(const std::uint16_t* src, unsigned words) {
    asm volatile("rep outsw" : "+S"(src), "+c"(words) : "d"(std::uint16_t{ata_base}) : "memory");
}
// IRQ 14 is the slave 8259's input 6; its IRR latches the rising edge whatever the mask.
bool irq14_requested() {
    x86::outb(0xa0, 0x0a);  // OCW3: read IRR
    return x86::inb(0xa0) >> 6 & 1;
}

struct ide_report {
    std::uint64_t sectors = 0, round_trip_ticks = 0;
    bool irq = false;
};
// IDENTIFY, a sector written and read back (the round trip timed), and a read past the
// end that must fail with IDNF.
hv::result<ide_report> ide_round_trip() {
    ide_report r;
    const bool irq_before = irq14_requested();
    ata_select(0, 0);
    x86::outb(ata_base + 7, 0xec);  // IDENTIFY DEVICE
    if ((ata_wait() & (ata_drq | ata_err)) != ata_drq) return hv::fail(hv::errc::fault, "ide: IDENTIFY has no data");
    r.irq = !irq_before && irq14_requested();
    static std::uint16_t id[256];
    ata_read_words(id, 256);
    (void)x86::inb(ata_base + 7);  // status: acknowledges the interrupt
    std::uint8_t sum = 0;
    for (std::uint16_t w : id) sum = static_cast<std::uint8_t>(sum + (w & 0xff) + (w >> 8));
    if ((id[255] & 0xff) != 0xa5 || sum != 0) return hv::fail(hv::errc::fault, "ide: IDENTIFY checksum wrong");
    if (!(id[49] & 1u << 9)) return hv::fail(hv::errc::fault, "ide: the disk does not do LBA");
    r.sectors = id[60] | std::uint32_t{id[61]} << 16;
    char model[41] = {};
    for (unsigned i = 0; i < 20; ++i) {
        model[2 * i] = static_cast<char>(id[27 + i] >> 8);
        model[2 * i + 1] = static_cast<char>(id[27 + i] & 0xff);
    }
    std::string_view m(model);
    while (!m.empty() && m.back() == ' ') m.remove_suffix(1);
    if (r.sectors < 8) return hv::fail(hv::errc::fault, "ide: the disk is too small");

    static std::uint16_t out[256], in[256];
    for (unsigned i = 0; i < 256; ++i) out[i] = static_cast<std::uint16_t>(i * 0x9e37 + 0x55);
    constexpr std::uint32_t lba = 7;
    const std::uint64_t t0 = x86::rdtsc();
    ata_select(lba, 1);
    x86::outb(ata_base + 7, 0x30);  // WRITE SECTORS
    if ((ata_wait() & (ata_drq | ata_err)) != ata_drq) return hv::fail(hv::errc::fault, "ide: WRITE has no data phase");
    ata_write_words(out, 256);
    const std::uint8_t wrote = ata_wait();
    (void)x86::inb(ata_base + 7);
    ata_select(lba, 1);
    x86::outb(ata_base + 7, 0x20);  // READ SECTORS
    const std::uint8_t ready = ata_wait();
    ata_read_words(in, 256);
    (void)x86::inb(ata_base + 7);
    r.round_trip_ticks = x86::rdtsc() - t0;
    if (wrote & (ata_err | ata_drq)) return hv::fail(hv::errc::fault, "ide: WRITE SECTORS failed");
    if ((ready & (ata_drq | ata_err)) != ata_drq) return hv::fail(hv::errc::fault, "ide: READ SECTORS failed");
    if (__builtin_memcmp(in, out, sizeof out) != 0) return hv::fail(hv::errc::fault, "ide: sector read back differs");

    ata_select(static_cast<std::uint32_t>(r.sectors), 1);  // one past the end
    x86::outb(ata_base + 7, 0x20);
    const std::uint8_t st = ata_wait();
    const std::uint8_t error = x86::inb(ata_base + 1);
    (void)x86::inb(ata_base + 7);
    if (!(st & ata_err) || !(error & 0x10)) return hv::fail(hv::errc::fault, "ide: a read past the end did not fail with IDNF");
    hv::println("color: ide disk: \"{}\", {} sectors; sector {} written and read back by PIO ({} ticks), IRQ 14 "
                "{}; a read past the end fails (IDNF)",
                m, r.sectors, lba, r.round_trip_ticks, r.irq ? "raised" : "not seen");
    if (!r.irq) return hv::fail(hv::errc::fault, "ide: IDENTIFY raised no IRQ 14");
    return r;
}

// ---- a local APIC timer interrupt (x2APIC MSRs), beside Xen's callback vector ----
constexpr std::uint8_t lapic_timer_vector = 0xe1;
} // namespace

extern "C" void color_lapic_isr();
extern "C" volatile std::uint64_t color_lapic_irqs, color_lapic_stamp, color_lapic_x2apic;
volatile std::uint64_t color_lapic_irqs = 0, color_lapic_stamp = 0, color_lapic_x2apic = 0;
asm(R"(
    .text
    .globl color_lapic_isr
color_lapic_isr:
    push %rax
    push %rcx
    push %rdx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, color_lapic_stamp(%rip)
    incq color_lapic_irqs(%rip)
    xor %eax, %eax
    xor %edx, %edx
    cmpq $0, color_lapic_x2apic(%rip)
    je 1f
    mov $0x80b, %ecx
    wrmsr
    jmp 2f
1:  mov $0xfee000b0, %eax
    movl $0, (%rax)
2:  pop %rdx
    pop %rcx
    pop %rax
    iretq
)");

namespace {

void set_interrupt_gate(std::uint8_t vector, void (*handler)()) {
    const auto idt = x86::current_idt();
    auto* gate = reinterpret_cast<volatile std::uint64_t*>(idt.base + 16u * vector);
    const auto h = reinterpret_cast<std::uintptr_t>(handler);
    std::uint16_t cs;
    asm volatile("mov %%cs, %0" : "=r"(cs));
    gate[0] = (h & 0xffff) | (std::uint64_t{cs} << 16) | (std::uint64_t{0x8e} << 40) | ((h >> 16 & 0xffff) << 48);
    gate[1] = h >> 32;
}

struct lapic_report {
    std::uint64_t interrupts = 0, ticks = 0;
    bool x2apic = false;
};
// The local APIC's registers: x2APIC MSRs when CPUID offers them, else the xAPIC page.
struct lapic_regs {
    bool x2apic;
    void write(std::uint32_t reg, std::uint32_t v) const {
        if (x2apic) x86::wrmsr(0x800 + reg / 16, v);
        else *reinterpret_cast<volatile std::uint32_t*>(0xfee00000u + reg) = v;
    }
};

// The local APIC software-enabled; its timer one-shot at count 1 (divide by 1), 16
// times: each time from the TMICT write to the handler's first instruction.
hv::result<lapic_report> lapic_timer_interrupts() {
    enum : std::uint32_t { svr = 0xf0, lvt_timer = 0x320, tmict = 0x380, tdcr = 0x3e0 };
    constexpr std::uint32_t apic_base_msr = 0x1b;
    lapic_report r;
    r.x2apic = x86::cpuid(1).ecx >> 21 & 1;
    color_lapic_x2apic = r.x2apic;
    x86::wrmsr(apic_base_msr, x86::rdmsr(apic_base_msr) | 1u << 11 | (r.x2apic ? 1u << 10 : 0));  // EN (+ EXTD)
    const lapic_regs apic{r.x2apic};
    apic.write(svr, 0x1ff);
    apic.write(tdcr, 0xb);
    apic.write(lvt_timer, lapic_timer_vector);  // one-shot, unmasked
    set_interrupt_gate(lapic_timer_vector, &color_lapic_isr);
    constexpr unsigned n = 16;
    for (unsigned i = 0; i < n; ++i) {
        const std::uint64_t before = color_lapic_irqs;
        x86::sti();
        const std::uint64_t t0 = x86::rdtsc();
        apic.write(tmict, 1);
        while (color_lapic_irqs == before && x86::rdtsc() - t0 < 10'000'000) x86::pause();
        x86::cli();
        if (color_lapic_irqs != before + 1) break;
        r.ticks += color_lapic_stamp - t0;
    }
    apic.write(lvt_timer, 1u << 16);  // masked again
    r.interrupts = color_lapic_irqs;
    if (r.interrupts != n) return hv::fail(hv::errc::fault, "lapic: the timer interrupt did not arrive each time");
    r.ticks /= n;
    return r;
}

hv::loader::protocol entry_of(hv::boot::loader l) {
    switch (l) {
    case hv::boot::loader::pvh: return hv::loader::protocol::pvh;
    case hv::boot::loader::real_mode: return hv::loader::protocol::real_mode;
    case hv::boot::loader::multiboot1: return hv::loader::protocol::multiboot1;
    case hv::boot::loader::multiboot2: return hv::loader::protocol::multiboot2;
    }
    return hv::loader::protocol::none;
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

    // Real mode: libhv's stub at 0x7c00 saw CR0.PE clear (boot::parse_real_mode refuses
    // a hand-off without), then switched to protected and long mode itself.
    seen.entry = entry_of(ctx.boot.source);
    const bool real_mode = seen.entry == hv::loader::protocol::real_mode;
    hv::println("color: entry: {}, real mode: {}", hv::loader::to_string(seen.entry), yes_no(real_mode));
    if (real_mode)
        hv::println("color: real mode: started at 0000:7c00 with DL {:#x}, {} ticks to protected and long mode",
                    ctx.boot.boot_drive, hv::rt::start_ticks() - ctx.boot.first_instruction_tsc);

    const bool uart = uart_answers(), pit = pit_answers(), pic = pic_answers(), pci = pci_config_answers();
    seen.emulated_devices = uart || pit || pic || pci;
    hv::println("color: devices: com1-scratch={} pit={} pic={} pci-config={}", yes_no(uart), yes_no(pit), yes_no(pic),
                yes_no(pci));
    hv::println("color: emulated devices: {}", seen.emulated_devices ? "present" : "none");
    const pci_ide ide = pci ? find_pci_ide() : pci_ide{};
    if (ide.found)
        hv::println("color: ide: PCI 00:{:02x}.0 {:04x}:{:04x} class 01:01", ide.device, ide.id & 0xffff, ide.id >> 16);
    else
        hv::println("color: ide: none");
    std::uint64_t disk_ticks = 0, pv_timer_late = 0;
    const char* disk_kind = "none";
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
        disk_ticks = pv->disk_round_trip_ticks;
        disk_kind = "pv-4k";
        pv_timer_late = pv->timer_late_ns;
    } else if (ide.found) {
        auto r = ide_round_trip();
        if (!r) {
            hv::println("color: ide: {}", r.err().what);
            return hv::fail(hv::errc::fault, "the emulated IDE disk does not work");
        }
        disk_ticks = r->round_trip_ticks;
        disk_kind = "ide-512";
    }
    // A local APIC interrupt wherever the emulated PC is (beside the callback vector
    // under pvhvm): both interrupt paths in one run.
    std::uint64_t lapic_ticks = 0;
    if (seen.emulated_devices) {
        auto l = lapic_timer_interrupts();
        if (!l) {
            hv::println("color: lapic: {}", l.err().what);
            return hv::fail(hv::errc::fault, "no local APIC timer interrupt");
        }
        lapic_ticks = l->ticks;
        hv::println("color: lapic: {} one-shot timer interrupts on vector {:#x}{}{}", l->interrupts, lapic_timer_vector,
                    l->x2apic ? "" : " (xAPIC)", seen.callback_vector ? " beside the callback vector" : "");
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
        if (real_mode && ctx.boot.first_instruction_tsc >= *t) {  // the stub's 0x7c00, before its hv_start
            hv::fmt::format_to(bench, sizeof bench, "colors.{}.hv-start-to-first-instruction", name);
            hv::rt::bench_report(bench, 1, ctx.boot.first_instruction_tsc - *t, "ticks");
        }
        hv::fmt::format_to(bench, sizeof bench, "colors.{}.guest-start-to-main", name);
        hv::rt::bench_report(bench, 1, main_ticks - hv::rt::start_ticks(), "ticks");
        hv::fmt::format_to(bench, sizeof bench, "colors.{}.console-byte-exit", name);
        hv::rt::bench_report(bench, bytes, console / bytes, "ticks");
        if (disk_ticks) {
            hv::fmt::format_to(bench, sizeof bench, "colors.{}.disk-round-trip-{}", name, disk_kind);
            hv::rt::bench_report(bench, 1, disk_ticks, "ticks");
        }
        if (seen.pv_timer) {  // Xen system time: nominally one ns per tick
            hv::fmt::format_to(bench, sizeof bench, "colors.{}.pv-timer-deadline-to-wake", name);
            hv::rt::bench_report(bench, 1, pv_timer_late, "ticks");
        }
        if (lapic_ticks) {
            hv::fmt::format_to(bench, sizeof bench, "colors.{}.lapic-timer-interrupt", name);
            hv::rt::bench_report(bench, 16, lapic_ticks, "ticks");
        }
    }
    if (!expect) {
        hv::println("color: no expect= given: report only");
        return {};
    }
    const auto policy = hv::vm::find_preset(*expect);
    if (!policy) return hv::fail(hv::errc::invalid_argument, "expect= names no policy");
    // The entry is the hypervisor's choice for this guest (expect-entry=); without it only
    // the rest of the color is checked.
    hv::loader::protocol expected_entry = seen.entry;
    if (const auto e = hv::cmdline_value(ctx.cmdline, "expect-entry")) {
        const auto named = hv::loader::protocol_named(*e);
        if (!named || *named == hv::loader::protocol::none)
            return hv::fail(hv::errc::invalid_argument, "expect-entry= names no entry");
        expected_entry = *named;
    } else {
        hv::println("color: no expect-entry= given: the entry is not checked");
    }
    const hv::vm::color promised = hv::vm::promised_color(*policy, expected_entry);
    if (const char* why = hv::vm::color_mismatch(promised, seen)) {
        hv::println("color: expected {} entered by {}: {}", *expect, hv::loader::to_string(promised.entry), why);
        return hv::fail(hv::errc::fault, "this guest's color is not the one its policy promises");
    }
    hv::println("color: matches policy {} entered by {}", *expect, hv::loader::to_string(seen.entry));
    return {};
}
