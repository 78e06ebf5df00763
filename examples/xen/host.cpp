// Boots the `guest` module as a Xen PVH guest: PC RAM, nested paging, one vCPU, COM1
// and the exit ports (vm::debug_ports), the Xen ABI (vm::xen_hvm), and two backends in
// the backend domain 0 run as scheduler tasks beside the vCPU: the console ring
// (HVM_PARAM_CONSOLE_PFN/EVTCHN) and a loopback block device over a RAM disk, which
// connects when the guest grants its ring (libhv/io/xen_toolstack.hpp). The run's
// result is the guest's SCHEDOP_shutdown reason: poweroff passes, anything else fails.
//
//   hvimage --kernel xen-host.elf --guest xen-guest.elf --guest-cmdline run=xen.pv --cmdline run=xen.run
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/io/xen_backend.hpp"
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_toolstack.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/xen.hpp"

namespace {

namespace xen = hv::xen;
namespace ts = hv::xen::toolstack;

void* alloc_pages(std::size_t n) { return hv::rt::alloc_zeroed_pages(n); }

constexpr std::size_t task_stack_bytes = 32 * 1024;
constexpr std::size_t disk_bytes = 64 * 1024;

hv::vm::physical_cpu this_cpu;
hv::vm::debug_ports ports;
xen::domain_table domains;
hv::vm::backend_domain_platform backend_platform;
xen::domain backend;
hv::vm::xen_hvm<hv::vm::guest> xen_guest;
xen::console_backend console;
alignas(4096) std::byte disk[disk_bytes];

// Waits for the guest's block ring grant, binds its port, then serves the ring.
struct blk_connector {
    xen::blk_backend blk;
    xen::evtchn_port_t console_port = 0;
    bool connected = false;

    static void run(hv::fiber& self, void* arg) {
        auto& c = *static_cast<blk_connector*>(arg);
        xen::domain& g = xen_guest.domain();
        for (;;) {
            const xen::grant_entry_v1 e = g.gnttab.shared[ts::blk_ring_ref];
            if ((e.flags & xen::gtf_type_mask) == xen::gtf_permit_access && e.domid == ts::backend_domid) {
                for (xen::evtchn_port_t p = 1; p < xen::max_evtchn_ports && !c.connected; ++p) {
                    const xen::evtchn& ch = g.ports[p];
                    if (p == c.console_port || ch.state != xen::evtchn_state::unbound || ch.remote_dom != ts::backend_domid)
                        continue;
                    if (c.blk.connect(backend, {g.id(), ts::blk_ring_ref, p, {disk, disk_bytes}, false}).ok())
                        c.connected = true;
                }
                if (c.connected) break;
            }
            self.yield();
        }
        hv::println("xen: block backend connected (ring ref {}, port {})", ts::blk_ring_ref, c.blk.local_port());
        xen::blk_backend::run(self, &c.blk);
    }
};
blk_connector blk;
hv::fiber console_task, blk_task;

std::uint64_t read_tsc(void*) { return hv::x86::rdtsc(); }

} // namespace

HV_PROGRAM(xen_run, "xen.run", "boot the `guest` module as a Xen PVH guest with console and block backends") {
    auto module = hv::vm::find_module(ctx.boot, "guest");
    if (!module) return hv::fail(hv::errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL)");
    // As examples/boot-guest: SSE for the fibers' MXCSR, legacy PICs masked.
    hv::x86::write_cr0((hv::x86::read_cr0() & ~hv::x86::cr0::em) | hv::x86::cr0::mp);
    hv::x86::write_cr4(hv::x86::read_cr4() | hv::x86::cr4::osfxsr | hv::x86::cr4::osxmmexcpt);
    hv::x86::outb(0x21, 0xff);
    hv::x86::outb(0xa1, 0xff);
    HV_TRY(hv::vm::enable(this_cpu, alloc_pages));

    static hv::vm::zeroed_frames frames{ctx.pages};
    static hv::vm::host_memory host{hv::mmu::page_allocator_ref::to(frames)};
    static hv::vm::guest g{host};
    HV_TRY(g.init(this_cpu, {}, alloc_pages));
    HV_TRY(hv::vm::add_pc_ram(g, 64ull << 20));
    auto loaded = hv::vm::load_kernel(g, {module->bytes, module->cmdline});
    HV_TRY(loaded);
    // After the load: the console page stays out of the memory map the guest was given.
    HV_TRY(g.memory().add_ram(ts::console_ring_gpa, xen::page_size));
    ports.attach(g, "guest: ");
    HV_TRY(g.start());  // installs the default CPUID/MSR handlers the Xen ones chain to
    g.vcpu(0).report_failures_to(&hv::console::sink());

    HV_TRY(backend.init(ts::backend_domid, 1, backend_platform, domains));
    backend_platform.dom = &backend;
    hv::vm::xen_config cfg;
    cfg.domid = 1;
    cfg.console = &hv::console::sink();
    cfg.console_prefix = "guest-xen: ";
    cfg.clock = {nullptr, &read_tsc, 1000};
    HV_TRY(xen_guest.attach(g, domains, cfg, &backend_platform));

    // The toolstack's part: the console ring's frame and port.
    xen::domain& d = xen_guest.domain();
    xen::evtchn_alloc_unbound cons{xen::domid_self, ts::backend_domid, 0};
    if (xen::ev::alloc_unbound(d, cons) != 0) return hv::fail(hv::errc::no_memory, "console port");
    d.set_hvm_param(xen::hvm_param_console_pfn, ts::console_ring_gpa >> xen::page_shift);
    d.set_hvm_param(xen::hvm_param_console_evtchn, cons.port);
    HV_TRY(console.connect(backend, d, ts::console_ring_gpa >> xen::page_shift, cons.port));
    blk.console_port = cons.port;
    for (std::size_t i = 0; i < disk_bytes; ++i) disk[i] = static_cast<std::byte>(i * 7 + 3);

    console_task.init(alloc_pages(task_stack_bytes / 4096), task_stack_bytes, &xen::console_backend::run, &console);
    blk_task.init(alloc_pages(task_stack_bytes / 4096), task_stack_bytes, &blk_connector::run, &blk);
    hv::cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    HV_TRY(s.add_task(console_task));
    HV_TRY(s.add_task(blk_task));
    hv::println("xen: {} guest as domain {}, loaded as {}, entry {:#x}", g.vendor() == hv::cpu::vendor::vmx ? "VMX" : "SVM",
                d.id(), hv::loader::to_string(loaded->used), g.vcpu(0).state.rip);
    s.run(&hv::vm::xen_hvm<hv::vm::guest>::idle, &xen_guest);
    (void)console.poll();  // what the guest wrote just before it ended
    hv::println("xen: guest ended: {}; {} exits, {} hypercalls, {} block requests served",
                g.vcpu(0).why() ? g.vcpu(0).why() : "-", g.vcpu(0).log.total(), xen_guest.hypercalls(),
                blk.blk.requests_served());
    if (xen_guest.shut_down()) hv::println("xen: shutdown reason {}", xen_guest.shutdown_reason());
    if (!xen_guest.shut_down() && ports.exit().ended)
        return hv::fail(hv::errc::fault, "the guest's runtime ended it through port 0xf4 without SCHEDOP_shutdown");
    return xen_guest.result();
}
