// Boots the kernel given as the module named `guest` (multiboot1/2, PVH or Linux) in a
// guest of its own: PC RAM, nested paging, one vCPU, COM1 and the exit ports. The run's
// result is the guest's: PASS only when it writes libhv's pass value to port 0xf4.
//
//   hvimage --kernel boot-guest.elf --guest KERNEL --guest-cmdline "..." --cmdline run=vm.boot
//   optional on libhv's command line: guest-ram=MiB (default 64)
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"

namespace {

void* alloc_pages(std::size_t n) { return hv::rt::alloc_zeroed_pages(n); }

hv::vm::physical_cpu this_cpu;
hv::vm::debug_ports ports;

} // namespace

HV_PROGRAM(vm_boot, "vm.boot", "boot the `guest` module in a guest with nested paging") {
    auto module = hv::vm::find_module(ctx.boot, "guest");
    if (!module) return hv::fail(hv::errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL)");
    // Until the runtime does it: SSE for the fibers' MXCSR, legacy PICs masked.
    hv::x86::write_cr0((hv::x86::read_cr0() & ~hv::x86::cr0::em) | hv::x86::cr0::mp);
    hv::x86::write_cr4(hv::x86::read_cr4() | hv::x86::cr4::osfxsr | hv::x86::cr4::osxmmexcpt);
    hv::x86::outb(0x21, 0xff);
    hv::x86::outb(0xa1, 0xff);
    HV_TRY(hv::vm::enable(this_cpu, alloc_pages));

    static hv::vm::zeroed_frames frames{ctx.pages};
    static hv::vm::host_memory host{hv::mmu::page_allocator_ref::to(frames)};
    static hv::vm::guest g{host};
    HV_TRY(g.init(this_cpu, {}, alloc_pages));
    std::uint64_t ram_mib = 64;
    if (auto v = hv::cmdline_value(ctx.cmdline, "guest-ram")) {
        auto n = hv::parse_u64(*v);
        if (!n || *n < 2 || *n > 2048) return hv::fail(hv::errc::invalid_argument, "guest-ram= wants MiB in 2..2048");
        ram_mib = *n;
    }
    HV_TRY(hv::vm::add_pc_ram(g, ram_mib << 20));
    auto loaded = hv::vm::load_kernel(g, {module->bytes, module->cmdline});
    HV_TRY(loaded);
    hv::println("vm: {} guest, {} MiB RAM, loaded as {} (kernel {:#x}-{:#x}), entry {:#x}",
                g.vendor() == hv::cpu::vendor::vmx ? "VMX" : "SVM", ram_mib, hv::loader::to_string(loaded->used),
                loaded->kernel_start, loaded->kernel_end, g.vcpu(0).state.rip);
    ports.attach(g, "guest: ");
    HV_TRY(g.start());
    g.vcpu(0).report_failures_to(&hv::console::sink());
    hv::cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    s.run();
    hv::println("vm: guest ended: {}; {} exits, {} nested pages mapped on demand, {} emulated accesses",
                g.vcpu(0).why() ? g.vcpu(0).why() : "-", g.vcpu(0).log.total(), g.stats().mapped_on_demand,
                g.stats().emulated);
    if (!ports.exit().ended) return hv::fail(hv::errc::fault, "the guest ended without writing the debug-exit port");
    if (!ports.exit().pass()) return hv::fail(hv::errc::fault, "the guest reported failure through port 0xf4");
    return {};
}
