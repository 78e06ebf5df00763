// Image "hvm": boots the module named `guest` in an HVM guest with the full emulated PC
// (libhv/dev through vm::hvm_devices) on VMX or SVM, every vCPU a fiber on this CPU.
// The run's result is the guest's: PASS only when it writes libhv's pass value to 0xf4.
//
//   hvimage --kernel hvm.elf --guest KERNEL --guest-cmdline "run=..." --cmdline "run=hvm.boot ..."
//   options on libhv's command line:
//     vcpus=N        1..8 (default 1); APs wait for INIT/SIPI
//     use=pvh|mb1|mb2|linux   the loader protocol (default: the loader's preference)
//     guest-ram=MiB  default 64
//     realmode=1     first run a boot-sector-style blob at 0x7c00 in real mode
//                    (string I/O to COM1, exit through 0xf4) in a guest of its own
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/hvm_devices.hpp"

// The real-mode blob: CS = DS = 0, IP = 0x7c00. REP OUTSB of its message, then 0x31 to 0xf4.
asm(R"(
    .section .rodata
    .code16
    .globl hvm_realmode_blob, hvm_realmode_blob_end
hvm_realmode_blob:
    cld
    mov $0x3f8, %dx
    mov $(hvm_realmode_msg - hvm_realmode_blob + 0x7c00), %si
    mov $(hvm_realmode_msg_end - hvm_realmode_msg), %cx
    rep outsb
    mov $0xf4, %dx
    mov $0x31, %al
    out %al, %dx
1:  hlt
    jmp 1b
hvm_realmode_msg:
    .ascii "real mode: hello from 0x7c00 through REP OUTSB\n"
hvm_realmode_msg_end:
hvm_realmode_blob_end:
    .code64
    .text
)");
extern "C" const char hvm_realmode_blob[], hvm_realmode_blob_end[];

namespace {

using namespace hv;

void* alloc_pages(std::size_t n) { return rt::alloc_zeroed_pages(n); }

constexpr std::uint64_t guest_tsc_hz = 1000000000;   // what the guests are told (CPUID 0x40000010)
constexpr std::uint64_t rtc_start = 1767225600;      // 2026-01-01 00:00:00 UTC at guest tick 0

vm::physical_cpu this_cpu;
vm::tsc_clock guest_clock{guest_tsc_hz};

status check_outcome(vm::hvm_devices& hvm, vm::guest& g, const char* what) {
    for (unsigned i = 0; i < g.vcpu_count(); ++i) {
        cpu::vcpu& v = g.vcpu(i);
        println("hvm: {} vCPU {}: {} ({}), {} exits", what, i, cpu::name(v.status()), v.why() ? v.why() : "-",
                v.log.total());
    }
    const dev::attach_stats& st = hvm.wiring().stats();
    println("hvm: {} devices: {} port, {} MMIO, {} MSR, {} CPUID accesses; {} interrupts injected; {} INIT, {} SIPI; "
            "{} idle waits",
            what, st.io, st.mmio, st.msr, st.cpuid, st.injected, st.inits, st.sipis, st.idle_waits);
    const dev::run_outcome o = hvm.outcome();
    switch (o.kind) {
    case dev::event_kind::debug_exit:
        println("hvm: {} ended through port 0xf4 with {:#x}", what, o.debug_value());
        if (o.debug_value() != vm::guest_exit::debug_exit_pass)
            return fail(errc::fault, "the guest reported failure through port 0xf4");
        return {};
    case dev::event_kind::power_off: return fail(errc::fault, "the guest powered off instead of reporting a result");
    case dev::event_kind::reset: return fail(errc::fault, "the guest reset the machine");
    case dev::event_kind::none: break;
    }
    return fail(errc::fault, "the guest ended without writing the debug-exit port");
}

status run_realmode(mem::page_allocator& pages) {
    static vm::zeroed_frames frames{pages};
    static vm::host_memory host{mmu::page_allocator_ref::to(frames)};
    static vm::guest g{host};
    vm::config cfg;
    cfg.first_tag = vm::guest::max_vcpus + 1;  // after the main guest's tags (QEMU has 16 ASIDs)
    HV_TRY(g.init(this_cpu, cfg, alloc_pages));
    HV_TRY(vm::add_pc_ram(g, 2 << 20));
    static dev::machine m{dev::machine_config::pc(1, 2 << 20), guest_clock};
    static vm::hvm_devices hvm{g, m, {&console::sink(), "guest(real): "}};
    HV_TRY(hvm.attach());
    const std::size_t size = static_cast<std::size_t>(hvm_realmode_blob_end - hvm_realmode_blob);
    HV_TRY(g.memory().write(0x7c00, hvm_realmode_blob, size));
    g.vcpu(0).state = cpu::initial_state(cpu::guest_mode::real, 0x7c00);
    HV_TRY(hvm.start());
    g.vcpu(0).report_failures_to(&console::sink());
    cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    hvm.run(s);
    return check_outcome(hvm, g, "real-mode guest");
}

} // namespace

HV_PROGRAM(hvm_boot, "hvm.boot", "boot the `guest` module in an HVM guest with the emulated PC") {
    auto module = vm::find_module(ctx.boot, "guest");
    if (!module) return fail(errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL)");
    // SSE for the fibers' MXCSR; the host's own 8259s masked.
    x86::write_cr0((x86::read_cr0() & ~x86::cr0::em) | x86::cr0::mp);
    x86::write_cr4(x86::read_cr4() | x86::cr4::osfxsr | x86::cr4::osxmmexcpt);
    x86::outb(0x21, 0xff);
    x86::outb(0xa1, 0xff);
    HV_TRY(vm::enable(this_cpu, alloc_pages));

    unsigned vcpus = 1;
    if (auto v = cmdline_value(ctx.cmdline, "vcpus")) {
        auto n = parse_u64(*v);
        if (!n || *n < 1 || *n > vm::guest::max_vcpus) return fail(errc::invalid_argument, "vcpus= wants 1..8");
        vcpus = static_cast<unsigned>(*n);
    }
    std::uint64_t ram_mib = 64;
    if (auto v = cmdline_value(ctx.cmdline, "guest-ram")) {
        auto n = parse_u64(*v);
        if (!n || *n < 2 || *n > 2048) return fail(errc::invalid_argument, "guest-ram= wants MiB in 2..2048");
        ram_mib = *n;
    }
    loader::protocol use = loader::protocol::none;
    if (auto v = cmdline_value(ctx.cmdline, "use")) {
        if (*v == "pvh") use = loader::protocol::pvh;
        else if (*v == "mb1") use = loader::protocol::multiboot1;
        else if (*v == "mb2") use = loader::protocol::multiboot2;
        else if (*v == "linux") use = loader::protocol::linux_bzimage;
        else return fail(errc::invalid_argument, "use= wants pvh, mb1, mb2 or linux");
    }
    if (cmdline_value(ctx.cmdline, "realmode") == "1") HV_TRY(run_realmode(ctx.pages));

    static vm::zeroed_frames frames{ctx.pages};
    static vm::host_memory host{mmu::page_allocator_ref::to(frames)};
    static vm::guest g{host};
    vm::config cfg;
    cfg.vcpus = vcpus;
    HV_TRY(g.init(this_cpu, cfg, alloc_pages));
    HV_TRY(vm::add_pc_ram(g, ram_mib << 20));
    dev::machine_config mc = dev::machine_config::pc(vcpus, ram_mib << 20);
    mc.rtc_unix_time = rtc_start;
    static dev::machine m{mc, guest_clock};
    static vm::hvm_devices hvm{g, m, {&console::sink(), "guest: "}};
    HV_TRY(hvm.attach());
    vm::kernel_spec k{module->bytes, module->cmdline};
    k.use = use;
    k.rsdp = hvm.rsdp();
    auto loaded = vm::load_kernel(g, k);
    HV_TRY(loaded);
    println("hvm: {} guest, {} vCPUs, {} MiB RAM, loaded as {} (kernel {:#x}-{:#x}), entry {:#x}, RSDP {:#x}",
            g.vendor() == cpu::vendor::vmx ? "VMX" : "SVM", vcpus, ram_mib, loader::to_string(loaded->used),
            loaded->kernel_start, loaded->kernel_end, g.vcpu(0).state.rip, hvm.rsdp());
    HV_TRY(hvm.start());
    for (unsigned i = 0; i < vcpus; ++i) g.vcpu(i).report_failures_to(&console::sink());
    cpu::scheduler s;
    HV_TRY(g.schedule_on(s));
    hvm.run(s);
    return check_outcome(hvm, g, "guest");
}
