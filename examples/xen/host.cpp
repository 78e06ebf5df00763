// Boots the `guest` module as a Xen PVH guest: PC RAM, nested paging, one vCPU, COM1
// and the exit ports (vm::debug_ports), and the Xen host side of vm::xen_pv_host: the
// Xen ABI, and the console-ring and loopback block backends of domain 0 run as
// scheduler tasks beside the vCPU. The run's result is the guest's SCHEDOP_shutdown
// reason: poweroff passes, anything else fails.
//
//   hvimage --kernel xen-host.elf --guest xen-guest.elf --guest-cmdline run=xen.pv --cmdline run=xen.run
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/xen_pv.hpp"

namespace {

using hv::rt::alloc_pages;
std::uint64_t read_tsc(void*) { return hv::x86::rdtsc(); }

hv::vm::physical_cpu this_cpu;
hv::vm::debug_ports ports;
hv::vm::xen_pv_host xen_host;

} // namespace

HV_PROGRAM(xen_run, "xen.run", "boot the `guest` module as a Xen PVH guest with console and block backends") {
    auto module = hv::vm::find_module(ctx.boot, "guest");
    if (!module) return hv::fail(hv::errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL)");
    HV_TRY(hv::vm::enable(this_cpu, alloc_pages));

    static hv::vm::zeroed_frames frames{ctx.pages};
    static hv::vm::host_memory host{hv::mmu::page_allocator_ref::to(frames)};
    static hv::vm::guest g{host};
    HV_TRY(g.init(this_cpu, {}, alloc_pages));
    HV_TRY(hv::vm::add_pc_ram(g, 64ull << 20));
    auto loaded = hv::vm::load_kernel(g, {module->bytes, module->cmdline});
    HV_TRY(loaded);
    HV_TRY(xen_host.prepare(g));
    ports.attach(g, "guest: ");
    HV_TRY(g.start());
    g.vcpu(0).report_failures_to(&hv::console::sink());

    hv::vm::xen_config cfg;
    cfg.domid = 1;
    cfg.console = &hv::console::sink();
    cfg.console_prefix = "guest-xen: ";
    cfg.clock = {nullptr, &read_tsc, 1000};  // nominal: 1000 ticks per µs
    HV_TRY(xen_host.attach(g, cfg));
    hv::cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    HV_TRY(xen_host.add_tasks(s));
    auto& x = xen_host.xen();
    hv::println("xen: {} guest as domain {}, loaded as {}, entry {:#x}", g.vendor() == hv::cpu::vendor::vmx ? "VMX" : "SVM",
                x.domain().id(), hv::loader::to_string(loaded->used), g.vcpu(0).state.rip);
    s.run(&hv::vm::xen_pv_host::idle, &xen_host);
    xen_host.flush_console();
    hv::println("xen: guest ended: {}; {} exits, {} hypercalls, {} block requests served",
                g.vcpu(0).why() ? g.vcpu(0).why() : "-", g.vcpu(0).log.total(), x.hypercalls(), xen_host.block_requests());
    if (x.shut_down()) hv::println("xen: shutdown reason {}", x.shutdown_reason());
    if (!x.shut_down() && ports.exit().ended)
        return hv::fail(hv::errc::fault, "the guest's runtime ended it through port 0xf4 without SCHEDOP_shutdown");
    return x.result();
}
