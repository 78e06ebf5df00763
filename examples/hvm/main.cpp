// Image "hvm": boots the module named `guest` in an HVM guest with the full emulated PC
// (libhv/dev through vm::hvm_devices) on VMX or SVM, every vCPU a fiber on this CPU.
// The run's result is the guest's: PASS only when it writes libhv's pass value to 0xf4.
//
//   hvimage --kernel hvm.elf --guest KERNEL --guest-cmdline "run=..." --cmdline "run=hvm.boot ..."
//   options on libhv's command line:
//     vcpus=N        1..8 (default 1); APs wait for INIT/SIPI
//     pcpus=spread|packed|a,b,..   start the host's APs (libhv/rt/smp), enable VMX/SVM on
//                    each, and place vCPU i on physical CPU i mod N (spread), all on CPU 0
//                    (packed) or as listed; one scheduler per physical CPU. Without it:
//                    every vCPU a fiber on the BSP, as before.
//     use=pvh|mb1|mb2|linux   the loader protocol (default: the loader's preference)
//     guest-ram=MiB  default 64
//     initrd=NAME    give the boot module NAME to the guest kernel as its initrd (Linux)
//     end=poweroff   the guest must end the run by ACPI S5 (a Linux `poweroff -f`), not
//                    by writing the pass value to 0xf4
//     realmode=1     first run a boot sector in real mode, loaded by libhv/loader's real-mode
//                    protocol (0x7c00, DL = 0x80; string I/O to COM1, exit through 0xf4) in a
//                    guest of its own
//     bzimage=NAME   then boot the boot module NAME as a Linux bzImage (1 vCPU), e.g. bzhello.bin
//     endings=1      then boot the kernel twice more, 1 vCPU each: run=dev.poweroff must
//                    end in ACPI S5, run=dev.reset in a reset (8042 pulse)
#include <new>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/rt/smp.hpp"
#include "libhv/cpu/placement.hpp"
#include "libhv/vm/boot.hpp"
#include "libhv/vm/debug_ports.hpp"
#include "libhv/vm/hvm_devices.hpp"

// The real-mode boot sector: CS = DS = 0, IP = 0x7c00, DL = the boot drive. REP OUTSB of
// its message, then 0x31 (pass) to 0xf4, or 0x33 (fail) when DL is not 0x80.
asm(R"(
    .section .rodata
    .code16
    .globl hvm_realmode_blob, hvm_realmode_blob_end
hvm_realmode_blob:
    cld
    mov $0x33, %bl
    cmp $0x80, %dl
    jne 2f
    mov $0x3f8, %dx
    mov $(hvm_realmode_msg - hvm_realmode_blob + 0x7c00), %si
    mov $(hvm_realmode_msg_end - hvm_realmode_msg), %cx
    rep outsb
    mov $0x31, %bl
2:  mov $0xf4, %dx
    mov %bl, %al
    out %al, %dx
1:  hlt
    jmp 1b
hvm_realmode_msg:
    .ascii "real mode: hello from 0x7c00 through REP OUTSB\n"
hvm_realmode_msg_end:
    .fill 510 - (. - hvm_realmode_blob), 1, 0
    .byte 0x55, 0xaa
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

vm::physical_cpu pcpus[rt::smp::max_cpus];
vm::physical_cpu& this_cpu = pcpus[0];
vm::tsc_clock guest_clock{guest_tsc_hz};

// One guest with its own PC.
struct hvm_vm {
    vm::zeroed_frames frames;
    vm::host_memory host;
    vm::guest g;
    dev::machine m;
    vm::hvm_devices hvm;
    hvm_vm(mem::page_allocator& pages, const dev::machine_config& mc, const char* prefix)
        : frames{pages}, host{mmu::page_allocator_ref::to(frames)}, g{host}, m{mc, guest_clock},
          hvm{g, m, {.console = &console::sink(), .console_prefix = prefix, .ide_disk = {}}} {}
};
constexpr unsigned max_vms = 6;
alignas(hvm_vm) std::byte vm_storage[max_vms][sizeof(hvm_vm)];
unsigned vms_used = 0;
std::uint16_t next_tag = 1;  // VPIDs/ASIDs: distinct per guest, few (QEMU offers 16 ASIDs)

result<hvm_vm*> new_vm(mem::page_allocator& pages, unsigned vcpus, std::uint64_t ram, const char* prefix) {
    if (vms_used == max_vms) return fail(errc::no_memory, "too many guests");
    dev::machine_config mc = dev::machine_config::pc(vcpus, ram);
    mc.rtc_unix_time = rtc_start;
    auto* x = new (vm_storage[vms_used]) hvm_vm{pages, mc, prefix};
    vm::config cfg;
    cfg.vcpus = vcpus;
    cfg.first_tag = next_tag;
    next_tag = static_cast<std::uint16_t>(next_tag + vcpus);
    ++vms_used;
    HV_TRY(x->g.init(this_cpu, cfg, alloc_pages));
    HV_TRY(vm::add_pc_ram(x->g, ram));
    HV_TRY(x->hvm.attach());
    return x;
}

const char* name_of(dev::event_kind k) {
    switch (k) {
    case dev::event_kind::debug_exit: return "debug exit";
    case dev::event_kind::power_off: return "ACPI power-off";
    case dev::event_kind::reset: return "reset";
    case dev::event_kind::none: break;
    }
    return "no machine event";
}

// Physical CPUs with VMX/SVM on (pcpus=): 1 unless the program started the APs.
unsigned pcpus_enabled = 1;

struct pcpu_run {
    hvm_vm* x;
    cpu::scheduler* s;
    unsigned pcpu;
};
void run_on_ap(void* arg) {
    auto& r = *static_cast<pcpu_run*>(arg);
    r.x->hvm.run_on_pcpu(*r.s, r.pcpu);
}

struct enable_job {
    vm::physical_cpu* pc;
    status result;
};
void enable_on_ap(void* arg) {
    auto& j = *static_cast<enable_job*>(arg);
    j.result = vm::enable(*j.pc, alloc_pages);
}

// Starts the APs and turns VMX/SVM on in each (one VMXON region / host save area per CPU).
status enable_pcpus(const boot::info& bi) {
    auto n = rt::smp::start_aps(bi);
    HV_TRY(n);
    for (unsigned c = 1; c < *n; ++c) {
        pcpus[c].index = c;
        enable_job j{&pcpus[c], {}};
        HV_TRY(rt::smp::post(c, &enable_on_ap, &j));
        rt::smp::wait(c);
        if (!j.result.ok()) return j.result;
        if (pcpus[c].vendor != this_cpu.vendor) return fail(errc::not_supported, "physical CPUs of different vendors");
    }
    pcpus_enabled = *n;
    println("hvm: VMX/SVM enabled on {} physical CPUs", pcpus_enabled);
    return {};
}

// Starts the guest, runs it to its end and judges the end against `expected`.
status run(hvm_vm& x, const char* what, dev::event_kind expected) {
    vm::guest& g = x.g;
    HV_TRY(x.hvm.start());
    for (unsigned i = 0; i < g.vcpu_count(); ++i) g.vcpu(i).report_failures_to(&console::sink());
    if (g.spread()) {
        cpu::scheduler s[rt::smp::max_cpus];
        HV_TRY(g.schedule_on(std::span{s, pcpus_enabled}));
        pcpu_run runs[rt::smp::max_cpus];
        for (unsigned c = 1; c < pcpus_enabled; ++c) {
            runs[c] = {&x, &s[c], c};
            HV_TRY(rt::smp::post(c, &run_on_ap, &runs[c]));
        }
        x.hvm.run_on_pcpu(s[0], 0);
        for (unsigned c = 1; c < pcpus_enabled; ++c) rt::smp::wait(c);
    } else {
        cpu::scheduler s;
        HV_TRY(g.schedule_on(s));
        x.hvm.run(s);
    }
    for (unsigned i = 0; i < g.vcpu_count(); ++i) {
        cpu::vcpu& v = g.vcpu(i);
        println("hvm: {} vCPU {}: {} ({}), {} exits", what, i, cpu::name(v.status()), v.why() ? v.why() : "-",
                v.log.total());
    }
    const dev::attach_stats& st = x.hvm.wiring().stats();
    println("hvm: {} devices: {} port, {} MMIO, {} MSR, {} CPUID accesses; {} interrupts injected; {} INIT, {} SIPI; "
            "{} idle waits",
            what, st.io, st.mmio, st.msr, st.cpuid, st.injected, st.inits, st.sipis, st.idle_waits);
    const dev::run_outcome o = x.hvm.outcome();
    if (o.kind == dev::event_kind::debug_exit) println("hvm: {} ended through port 0xf4 with {:#x}", what, o.debug_value());
    else println("hvm: {} ended: {}", what, name_of(o.kind));
    if (o.kind != expected) return fail(errc::fault, "the guest did not end the way it should");
    if (o.kind == dev::event_kind::debug_exit && o.debug_value() != vm::guest_exit::debug_exit_pass)
        return fail(errc::fault, "the guest reported failure through port 0xf4");
    return {};
}

status run_realmode(mem::page_allocator& pages) {
    auto x = new_vm(pages, 1, 2 << 20, "guest(real): ");
    HV_TRY(x);
    const std::size_t size = static_cast<std::size_t>(hvm_realmode_blob_end - hvm_realmode_blob);
    vm::kernel_spec k{{reinterpret_cast<const std::byte*>(hvm_realmode_blob), size}, {}};
    k.use = loader::protocol::real_mode;
    HV_TRY(vm::load_kernel((*x)->g, k));
    return run(**x, "real-mode guest", dev::event_kind::debug_exit);
}

// The same kernel again in a small guest whose program ends the machine another way.
status run_ending(mem::page_allocator& pages, const vm::boot_module& module, std::string_view program,
                  const char* prefix, const char* what, dev::event_kind expected) {
    auto x = new_vm(pages, 1, 16 << 20, prefix);
    HV_TRY(x);
    char cmdline[64];
    std::size_t len = fmt::format_to(cmdline, sizeof cmdline, "run={}", program);
    if (len >= sizeof cmdline) len = sizeof cmdline - 1;
    vm::kernel_spec k{module.bytes, {cmdline, len}};
    k.rsdp = (*x)->hvm.rsdp();
    HV_TRY(vm::load_kernel((*x)->g, k));
    return run(**x, what, expected);
}

} // namespace

HV_PROGRAM(hvm_boot, "hvm.boot", "boot the `guest` module in an HVM guest with the emulated PC") {
    auto module = vm::find_module(ctx.boot, "guest");
    if (!module) return fail(errc::not_found, "no boot module named `guest` (hvimage --guest KERNEL)");
    // vm::enable also turns on SSE for the fibers and masks the host's 8259s.
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

    auto x = new_vm(ctx.pages, vcpus, ram_mib << 20, "guest: ");
    HV_TRY(x);
    vm::guest& g = (*x)->g;
    if (auto spec = cmdline_value(ctx.cmdline, "pcpus")) {
        HV_TRY(enable_pcpus(ctx.boot));
        unsigned placement[vm::guest::max_vcpus];
        HV_TRY(cpu::place_vcpus(*spec, pcpus_enabled, std::span{placement, vcpus}));
        HV_TRY(g.place(std::span{pcpus, pcpus_enabled}, std::span<const unsigned>{placement, vcpus}));
        for (unsigned i = 0; i < vcpus; ++i) println("hvm: vCPU {} on physical CPU {}", i, placement[i]);
    }
    vm::kernel_spec k{module->bytes, module->cmdline};
    k.use = use;
    k.rsdp = (*x)->hvm.rsdp();
    loader::module_spec initrd{};
    if (auto name = cmdline_value(ctx.cmdline, "initrd")) {
        auto m = vm::find_module(ctx.boot, *name);
        if (!m) return fail(errc::not_found, "initrd= names no boot module");
        initrd = {m->bytes, {}};
        k.modules = {&initrd, 1};
    }
    dev::event_kind expected_end = dev::event_kind::debug_exit;
    if (auto v = cmdline_value(ctx.cmdline, "end")) {
        if (*v != "poweroff") return fail(errc::invalid_argument, "end= wants poweroff");
        expected_end = dev::event_kind::power_off;
    }
    const std::uint64_t load_start = x86::rdtsc();
    auto loaded = vm::load_kernel(g, k);
    HV_TRY(loaded);
    println("hvm: {} guest, {} vCPUs, {} MiB RAM, loaded as {} (kernel {:#x}-{:#x}), entry {:#x}, RSDP {:#x}",
            g.vendor() == cpu::vendor::vmx ? "VMX" : "SVM", vcpus, ram_mib, loader::to_string(loaded->used),
            loaded->kernel_start, loaded->kernel_end, g.vcpu(0).state.rip, k.rsdp);
    if (loaded->module_count)
        println("hvm: initrd at {:#x}, {} bytes", loaded->modules[0].base, loaded->modules[0].size);
    const std::uint64_t run_start = x86::rdtsc();
    HV_TRY(run(**x, "guest", expected_end));
    println("hvm: guest ticks: load {} run {}", run_start - load_start, x86::rdtsc() - run_start);

    if (auto name = cmdline_value(ctx.cmdline, "bzimage")) {
        auto bz = vm::find_module(ctx.boot, *name);
        if (!bz) return fail(errc::not_found, "bzimage= names no boot module");
        auto y = new_vm(ctx.pages, 1, 16 << 20, "guest(bzImage): ");
        HV_TRY(y);
        vm::kernel_spec kb{bz->bytes, "console=ttyS0 bzhello"};
        kb.use = loader::protocol::linux_bzimage;
        kb.rsdp = (*y)->hvm.rsdp();
        auto lb = vm::load_kernel((*y)->g, kb);
        HV_TRY(lb);
        println("hvm: bzImage guest loaded as {} (kernel {:#x}-{:#x}), entry {:#x}", loader::to_string(lb->used),
                lb->kernel_start, lb->kernel_end, (*y)->g.vcpu(0).state.rip);
        HV_TRY(run(**y, "bzImage guest", dev::event_kind::debug_exit));
    }
    if (cmdline_value(ctx.cmdline, "endings") == "1") {
        HV_TRY(run_ending(ctx.pages, *module, "dev.poweroff", "guest(poweroff): ", "poweroff guest",
                           dev::event_kind::power_off));
        HV_TRY(run_ending(ctx.pages, *module, "dev.reset", "guest(reset): ", "reset guest", dev::event_kind::reset));
    }
    return {};
}
