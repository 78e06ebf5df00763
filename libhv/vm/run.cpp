#include "libhv/vm/run.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/xen_pv.hpp"

namespace hv::vm {

namespace {

void* alloc_pages(std::size_t n) { return rt::alloc_zeroed_pages(n); }

result<loader::protocol> protocol_for(boot_protocol b, std::span<const std::byte> image) {
    switch (b) {
    case boot_protocol::loader_choice: return loader::protocol::none;
    case boot_protocol::pvh: return loader::protocol::pvh;
    case boot_protocol::linux_bzimage: return loader::protocol::linux_bzimage;
    case boot_protocol::multiboot: {
        auto info = loader::probe(image);
        HV_TRY(info);
        if (info->multiboot2) return loader::protocol::multiboot2;
        if (info->multiboot1) return loader::protocol::multiboot1;
        return fail(errc::not_supported, "the policy boots by multiboot; the guest has no multiboot header");
    }
    case boot_protocol::real_mode: break;
    }
    return fail(errc::not_supported, "a real-mode start needs firmware: not built yet");
}

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
    auto use = protocol_for(p.boot, module->bytes);
    HV_TRY(use);

    std::string_view cmdline = module->cmdline;
    if (opt.tell_color) {
        const std::size_t n = fmt::format_to(guest_cmdline, sizeof guest_cmdline, "{}{}expect={} hv-start-tsc={}",
                                             cmdline, cmdline.empty() ? "" : " ", p.name, rt::start_ticks());
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
    // Nested entries at first touch: a small guest touches ~60 pages, while building the
    // tables for all of its RAM up front cost ~3 M ticks of its start-up (64 MiB).
    cfg.map_on_demand = true;
    HV_TRY(g.init(this_cpu, cfg, alloc_pages));
    const std::uint64_t t_init = x86::rdtsc();
    HV_TRY(add_pc_ram(g, *ram));
    const std::uint64_t t_ram = x86::rdtsc();
    auto loaded = load_kernel(g, {module->bytes, cmdline, {}, *use});
    HV_TRY(loaded);
    const std::uint64_t t_loaded = x86::rdtsc();
    hv::println("vm: {} guest, {} MiB RAM, loaded as {} (kernel {:#x}-{:#x}), entry {:#x}, policy {}",
                g.vendor() == cpu::vendor::vmx ? "VMX" : "SVM", *ram >> 20, loader::to_string(loaded->used),
                loaded->kernel_start, loaded->kernel_end, g.vcpu(0).state.rip, p.name);
    // Every policy keeps the debug console and exit ports; the device parts attach here
    // once wired (missing_part refused them above).
    const std::uint64_t t_ports = x86::rdtsc();
    ports.attach(g, "guest: ");
    if (p.xen_abi) HV_TRY(xen_host.prepare(g));
    HV_TRY(g.start());
    const std::uint64_t t_started = x86::rdtsc();
    // The Xen ABI, its PV backends, callback vector and one-shot timer come together.
    if (p.xen_abi) {
        xen_config xc;
        xc.console = &console::sink();
        xc.console_prefix = "guest-xen: ";
        xc.clock = {nullptr, &read_tsc, 1000};  // nominal: 1000 ticks per µs
        HV_TRY(xen_host.attach(g, xc));
    }
    g.vcpu(0).report_failures_to(&console::sink());
    cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    if (p.xen_abi) HV_TRY(xen_host.add_tasks(s));
    s.run(p.xen_abi ? &xen_pv_host::idle : nullptr, &xen_host);
    if (p.xen_abi) xen_host.flush_console();
    hv::println("vm: guest ended: {}; {} exits, {} nested pages mapped on demand, {} emulated accesses",
                g.vcpu(0).why() ? g.vcpu(0).why() : "-", g.vcpu(0).log.total(), g.stats().mapped_on_demand,
                g.stats().emulated);
    // Printed now: console output before the guest would be counted in its start-up.
    hv::println("vm: start-up ticks: runtime {} enable {} init {} ram {} load {} report {} nested tables {}",
                t_program - rt::start_ticks(), t_enabled - t_program, t_init - t_enabled, t_ram - t_init,
                t_loaded - t_ram, t_ports - t_loaded, t_started - t_ports);
    if (p.xen_abi && xen_host.xen().shut_down()) {
        hv::println("vm: the guest shut down through Xen, reason {}", xen_host.xen().shutdown_reason());
        return xen_host.xen().result();
    }
    if (!ports.exit().ended) return fail(errc::fault, "the guest ended without writing the debug-exit port");
    if (!ports.exit().pass()) return fail(errc::fault, "the guest reported failure through port 0xf4");
    return {};
}

} // namespace hv::vm
