#include "libhv/vm/run.hpp"
#include <new>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/vm/bios_calls.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/hvm_devices.hpp"
#include "libhv/vm/xen_pv.hpp"
#include "libhv/vm/xen_unplug.hpp"

namespace hv::vm {

namespace {

using rt::alloc_pages;

result<std::uint64_t> guest_ram_bytes(std::string_view cmdline) {
    std::uint64_t mib = 64;
    if (auto v = cmdline_value(cmdline, "guest-ram")) {
        auto n = parse_u64(*v);
        if (!n || *n < 2 || *n > 2048) return fail(errc::invalid_argument, "guest-ram= wants MiB in 2..2048");
        mib = *n;
    }
    return mib << 20;
}

physical_cpu this_cpu;
debug_ports ports;
xen_pv_host xen_host;
std::uint64_t read_tsc(void*) { return x86::rdtsc(); }
char guest_cmdline[boot::info::max_string];

// The hypervisor's boot modules other than `guest` (hvimage --module FILE: initrd,
// environment files), given to the guest through its boot protocol, named as they came.
loader::module_spec guest_modules[loader::boot_config::max_modules];
std::span<const loader::module_spec> modules_for_guest(const boot::info& info) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < info.module_count && n < std::size(guest_modules); ++i) {
        const boot::module& m = info.modules[i];
        const std::string_view name = m.cmdline;
        if (name == "guest" || name.starts_with("guest ")) continue;
        const auto* start = reinterpret_cast<const std::byte*>(static_cast<std::uintptr_t>(m.start));
        guest_modules[n++] = {{start, static_cast<std::size_t>(m.end - m.start)}, name};
    }
    return {guest_modules, n};
}

// The emulated PC of policies with emulated devices. Guest time is the TSC, stated to the
// guest (CPUID 0x40000010) at this frequency, as examples/hvm does.
constexpr std::uint64_t guest_tsc_hz = 1000000000;
tsc_clock guest_clock{guest_tsc_hz};
// Its IDE disk: a memory image of 64 KiB (128 sectors), zeroed.
constexpr std::size_t ide_disk_pages = 16;
struct emulated_pc {
    dev::machine m;
    hvm_devices devices;
    emulated_pc(guest& g, std::uint64_t ram, std::span<std::uint8_t> disk)
        : m{dev::machine_config::pc(1, ram), guest_clock}, devices{g, m, {&console::sink(), "guest: ", disk}} {}
};
alignas(emulated_pc) std::byte pc_storage[sizeof(emulated_pc)];
// A real-mode start's BIOS services, and its disk: the image at LBA 0, at least 64 KiB.
alignas(bios_calls) std::byte bios_storage[sizeof(bios_calls)];
constexpr std::size_t real_mode_disk_pages(std::size_t image_bytes) {
    const std::size_t pages = (image_bytes + 4095) / 4096;
    return pages > ide_disk_pages ? pages : ide_disk_pages;
}

// PV-on-HVM: Xen's unplug ports in front of the emulated PC.
xen_unplug_ports unplug;
void unplug_devices(void* pc, std::uint16_t mask) {
    if (mask & xen_unplug_ports::ide_disks) static_cast<hvm_devices*>(pc)->unplug_ide();
}

// PV-on-HVM while every vCPU sleeps: whichever of a device deadline and a PV timer comes
// first. Both count TSC ticks: the device clock runs at guest_tsc_hz = 1 GHz and the Xen
// clock at 1000 ticks per µs, so a device tick and a PV-timer ns are the same unit.
struct both_idle {
    emulated_pc* pc;
    xen_pv_host* xen;
    static bool idle(void* ctx) {
        auto& b = *static_cast<both_idle*>(ctx);
        const auto pv = b.xen->xen().next_deadline();
        const auto device = b.pc->m.next_deadline();
        if (pv && (!device || *pv <= *device)) return xen_pv_host::idle(b.xen);
        return dev::attachment::idle(&b.pc->devices.wiring());
    }
};
static_assert(guest_tsc_hz == 1000000000, "both_idle compares device ticks with PV-timer ns");

// The guest's result: through the device model's debug exit, or through debug_ports.
status judge(const guest_exit& e) {
    if (!e.ended) return fail(errc::fault, "the guest ended without writing the debug-exit port");
    if (!e.pass()) return fail(errc::fault, "the guest reported failure through port 0xf4");
    return {};
}

} // namespace

status run_guest(const policy& p, rt::context& ctx, const run_options& opt) {
    const std::uint64_t t_program = x86::rdtsc();
    if (const char* why = inconsistency(p)) return fail(errc::invalid_argument, why);
    if (const char* why = missing_part(p)) {
        hv::println("vm: policy {} {}", p.name, why);  // "vm: policy pvh needs the Xen ABI (...): not wired yet"
        return fail(errc::not_supported, "the policy needs a part this build has not wired (see the line above)");
    }
    auto module = find_module(ctx.boot, "guest");
    if (!module)
        return fail(errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL, or --policy alone)");
    auto ram = guest_ram_bytes(ctx.cmdline);
    HV_TRY(ram);
    // end=poweroff: the guest's ACPI power-off (S5) is its end, for a kernel with no debug-exit
    // port to report through (Linux's `poweroff -f`).
    const auto end = cmdline_value(ctx.cmdline, "end");
    if (end && *end != "poweroff") return fail(errc::invalid_argument, "end= wants poweroff");
    const bool ends_by_power_off = end.has_value();
    if (ends_by_power_off && !emulates_pc(p))
        return fail(errc::invalid_argument, "end=poweroff needs the emulated PC (ACPI S5): this policy has none");
    auto use = choose_entry(p, module->bytes);
    HV_TRY(use);

    std::string_view cmdline = module->cmdline;
    if (opt.tell_color) {
        const std::size_t n =
            fmt::format_to(guest_cmdline, sizeof guest_cmdline, "{}{}expect={} expect-entry={} hv-start-tsc={}", cmdline,
                           cmdline.empty() ? "" : " ", p.name, loader::to_string(use->protocol), rt::start_ticks());
        if (n >= sizeof guest_cmdline) return fail(errc::invalid_argument, "the guest's command line is too long");
        cmdline = {guest_cmdline, n};
    }

    HV_TRY(enable(this_cpu, alloc_pages));
    const std::uint64_t t_enabled = x86::rdtsc();

    static zeroed_frames frames{ctx.pages};
    static host_memory host{mmu::page_allocator_ref::to(frames)};
    static guest g{host};
    config cfg{};
    cfg.mmu = p.mmu == guest_mmu::shadow ? paging::shadow : paging::nested;
    // `bare` promises no MMU to its guest: mmu=shadow|nested on libhv's command line picks one.
    if (const auto m = cmdline_value(ctx.cmdline, "mmu"); m && p.name == "bare") {
        if (*m != "shadow" && *m != "nested") return fail(errc::invalid_argument, "mmu= wants shadow or nested");
        cfg.mmu = *m == "shadow" ? paging::shadow : paging::nested;
    }
    // Nested entries at first touch: a small guest touches ~60 pages, while building the
    // tables for all of its RAM up front cost ~3 M ticks of its start-up (64 MiB).
    cfg.map_on_demand = true;
    HV_TRY(g.init(this_cpu, cfg, alloc_pages));
    const std::uint64_t t_init = x86::rdtsc();
    // RAM backed at first touch: a small guest uses ~70 of its 16,384 pages, while
    // backing (zeroing) them all up front cost ~13 M ticks of its start-up (64 MiB).
    HV_TRY(add_pc_ram(g, *ram, mmu::ram_backing::first_touch));
    const std::uint64_t t_ram = x86::rdtsc();
    emulated_pc* pc = nullptr;
    bios_calls* bios = nullptr;
    std::size_t disk_pages = ide_disk_pages;
    kernel_spec kernel{module->bytes, cmdline, modules_for_guest(ctx.boot), use->protocol};
    kernel.probed = &use->image;
    const bool real_mode_start = use->protocol == loader::protocol::real_mode;
    if (emulates_pc(p)) {
        // ---- BIOS services for a real-mode start (branch devices): its image is on the IDE
        // disk at LBA 0 too (the disk grows to hold it), and the BIOS ROM and IVT are set up.
        if (real_mode_start) disk_pages = real_mode_disk_pages(module->bytes.size());
        auto* disk = static_cast<std::uint8_t*>(alloc_pages(disk_pages));
        if (!disk) return fail(errc::no_memory, "no pages for the IDE disk");
        if (real_mode_start) __builtin_memcpy(disk, module->bytes.data(), module->bytes.size());
        pc = new (pc_storage) emulated_pc{g, *ram, {disk, disk_pages * 4096}};
        HV_TRY(pc->devices.attach());
        if (real_mode_start) {
            bios = new (bios_storage) bios_calls{g, pc->m, {disk, disk_pages * 4096}};
            HV_TRY(bios->install());
        }
        // ---- end of the BIOS services' hunk
        kernel.rsdp = pc->devices.rsdp();
        // A real-mode guest has no loader's boot info: it reads its command line (and
        // memory map, "etc/e820") from fw_cfg, as under QEMU's -kernel ... -append.
        if (real_mode_start) pc->m.firmware_config().set_cmdline(cmdline);
        if (p.xen_abi) {
            unplug = xen_unplug_ports{pc->devices.wiring().ports()};
            unplug.on_unplug(&unplug_devices, &pc->devices);
            g.set_ports(unplug.ports());
        }
    }
    const std::uint64_t t_devices = x86::rdtsc();
    auto loaded = load_kernel(g, kernel);
    HV_TRY(loaded);
    const std::uint64_t t_loaded = x86::rdtsc();
    // What the guest is, printed after it ran: at ~4 K ticks per serial byte (Bochs' UART
    // at 115200 baud), these lines would be a third of the guest's start-up.
    const std::uint64_t entry = g.vcpu(0).state.rip;
    if (p.xen_abi) HV_TRY(xen_host.prepare(g));
    // The device model owns COM1 and the exit ports when there is one.
    if (pc) {
        HV_TRY(pc->devices.start());
        if (bios) HV_TRY(bios->attach());  // BIOS services: vCPU 0's VMCALL/VMMCALL exits
    } else {
        ports.attach(g, "guest: ");
        HV_TRY(g.start());
    }
    // The Xen ABI, its PV backends, callback vector and one-shot timer come together,
    // chained to the handlers start() installed.
    if (p.xen_abi) {
        xen_config xc;
        xc.console = &console::sink();
        xc.console_prefix = "guest-xen: ";
        xc.clock = {nullptr, &read_tsc, 1000};  // nominal: 1000 ticks per µs
        HV_TRY(xen_host.attach(g, xc));
    }
    const std::uint64_t t_started = x86::rdtsc();
    g.vcpu(0).report_failures_to(&console::sink());
    cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    if (p.xen_abi) HV_TRY(xen_host.add_tasks(s));
    both_idle both{pc, &xen_host};
    if (pc && p.xen_abi) {
        s.run(&both_idle::idle, &both);
        pc->devices.wiring().flush_console();
    } else if (pc) {
        pc->devices.run(s);
    } else {
        s.run(p.xen_abi ? &xen_pv_host::idle : nullptr, &xen_host);
    }
    if (p.xen_abi) xen_host.flush_console();
    hv::println("vm: guest enters by {} ({})", loader::to_string(use->protocol), use->why);
    hv::println("vm: {} guest, {} MiB RAM, loaded as {} (kernel {:#x}-{:#x}), entry {:#x}, policy {}",
                g.vendor() == cpu::vendor::vmx ? "VMX" : "SVM", *ram >> 20, loader::to_string(loaded->used),
                loaded->kernel_start, loaded->kernel_end, entry, p.name);
    if (loaded->module_count)
        hv::println("vm: {} boot module(s) given to the guest, the first at {:#x} ({} bytes)", loaded->module_count,
                    loaded->modules[0].base, loaded->modules[0].size);
    if (loaded->used == loader::protocol::real_mode)
        hv::println("vm: real-mode image of {} bytes at {:#x}, CS:IP 0000:{:04x}, DL {:#x}; command line in fw_cfg",
                    loaded->kernel_end - loaded->kernel_start, loaded->kernel_start, entry, loader::real_mode_boot_drive);
    if (pc) hv::println("vm: devices: emulated PC (ACPI RSDP {:#x}, IDE disk of {} KiB{})", kernel.rsdp,
                        disk_pages * 4, pc->devices.ide() ? "" : ", unplugged");
    else hv::println("vm: devices: debug console and exit ports only");
    hv::println("vm: guest ended: {}; {} exits, {} nested pages mapped on demand, {} RAM pages backed at first "
                "touch, {} emulated accesses",
                g.vcpu(0).why() ? g.vcpu(0).why() : "-", g.vcpu(0).log.total(), g.stats().mapped_on_demand,
                g.memory().backed_at_first_touch(), g.stats().emulated);
    if (cfg.mmu == paging::shadow)
        hv::println("vm: shadow paging: {} fills, {} #PF injected, {} CR3 writes, {} guest tables unshadowed",
                    g.shadow_stats().fills, g.shadow_stats().injected, g.shadow_stats().cr3_writes,
                    g.shadow_stats().unshadowed);
    // Printed now: console output before the guest would be counted in its start-up.
    hv::println("vm: start-up ticks: runtime {} enable {} init {} ram {} devices {} load {} start {}",
                t_program - rt::start_ticks(), t_enabled - t_program, t_init - t_enabled, t_ram - t_init,
                t_devices - t_ram, t_loaded - t_devices, t_started - t_loaded);
    if (p.xen_abi) {
        hv::println("vm: xen: {} hypercalls, {} block requests served", xen_host.xen().hypercalls(),
                    xen_host.block_requests());
        if (pc)
            hv::println("vm: xen: unplug requests {}, mask {:#x} (this PC has an IDE disk and no NIC or NVMe disk)",
                        unplug.requests(), unplug.unplugged());
        // A Xen guest may end itself by SCHEDOP_shutdown instead of the debug exit.
        if (xen_host.xen().shut_down()) {
            hv::println("vm: the guest shut down through Xen, reason {}", xen_host.xen().shutdown_reason());
            return xen_host.xen().result();
        }
    }
    if (!pc) return judge(ports.exit());
    const dev::run_outcome o = pc->devices.outcome();
    const dev::attach_stats& st = pc->devices.wiring().stats();
    hv::println("vm: devices: {} port, {} MMIO, {} MSR, {} CPUID accesses; {} interrupts injected", st.io, st.mmio,
                st.msr, st.cpuid, st.injected);
    const dev::ide_stats& ide = pc->devices.ide_stats();
    hv::println("vm: ide: {} commands, {} sectors read, {} written, {} aborted, {} out of range", ide.commands,
                ide.sectors_read, ide.sectors_written, ide.aborted, ide.out_of_range);
    if (bios) {
        const dev::bios::stats& b = bios->stats();
        hv::println("vm: bios: {} calls, {} sectors read, {} written, {} unserviced", b.calls, b.sectors_read,
                    b.sectors_written, b.unserviced);
    }
    if (ends_by_power_off) {
        if (o.kind != dev::event_kind::power_off)
            return fail(errc::fault, "end=poweroff: the guest ended without powering off (ACPI S5)");
        hv::println("vm: guest powered off (ACPI S5), its end as end=poweroff asks");
        return {};
    }
    // How the guest ended is its result, as with Xen's SCHEDOP_shutdown: a power-off is a
    // clean end (a kernel's `poweroff`), a reset or anything else is not.
    switch (o.kind) {
    case dev::event_kind::debug_exit: return judge({.ended = true, .code = o.debug_value()});
    case dev::event_kind::power_off: return {};
    case dev::event_kind::reset: return fail(errc::fault, "the guest reset the machine (8042, port 0x92 or 0xcf9)");
    case dev::event_kind::none: break;
    }
    return judge({});
}

} // namespace hv::vm
