// The emulated PC (libhv/dev) attached to a running vm::guest, on either vendor: the
// full device model that replaces debug_ports for HVM guests.
//
//   hvm_devices hvm{g, machine, {&console::sink(), "guest: "}};
//   HV_TRY(hvm.attach());                       // after g.init and its RAM, before loading
//   load_kernel(g, {..., .rsdp = hvm.rsdp()});  // ACPI tables in ROM at 0xe0000
//   HV_TRY(hvm.start());                        // g.start(), then the vCPUs' device wiring
//   hvm.run(scheduler);                          // HLT sleeps until the next device deadline
//   hvm.outcome()                                // debug exit value, power-off, reset
//
// Guest time is the TSC (guests read it unoffset) at a frequency the caller states;
// CPUID leaf 0x40000010 tells the guest. Metal only: the wiring itself
// (dev::attachment) is host-tested.
#pragma once
#include <cstdint>
#include <string_view>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/dev/attach.hpp"
#include "libhv/dev/ide.hpp"
#include "libhv/dev/machine.hpp"
#include "libhv/vm/guest.hpp"

namespace hv::vm {

class tsc_clock final : public dev::clock {
public:
    explicit tsc_clock(std::uint64_t hz) : hz_{hz} {}
    std::uint64_t now() const override { return x86::rdtsc(); }
    std::uint64_t frequency() const override { return hz_; }

private:
    std::uint64_t hz_;
};

struct hvm_options {
    const fmt::sink* console = nullptr;        // guest COM1 lines (nullptr: dropped)
    std::string_view console_prefix = "guest: ";
    // The IDE disk's image (empty: no IDE controller). The controller is PCI 00:01.0 with
    // the primary channel's legacy ports and IRQ 14.
    std::span<std::uint8_t> ide_disk;
};

class hvm_devices {
public:
    // Where the ACPI tables go: ROM inside the legacy RSDP scan window.
    static constexpr std::uint64_t acpi_rom = 0xe0000, acpi_rom_size = 0x20000;

    hvm_devices(guest& g, dev::machine& m, const hvm_options& o = {});

    // LAPIC and IOAPIC regions, the port bus, the CPU model's APIC bits, ACPI tables.
    [[nodiscard]] status attach();
    [[nodiscard]] std::uint64_t rsdp() const { return rsdp_; }
    // Starts the guest (its default handlers), then installs the device handlers on
    // every vCPU: vCPU 0 runs from its state, the others wait for INIT/SIPI.
    [[nodiscard]] status start();
    // Runs the guest's vCPUs on `s` (which must hold them) until they end.
    void run(cpu::scheduler& s);

    [[nodiscard]] dev::run_outcome outcome() const { return wiring_.outcome(); }
    [[nodiscard]] dev::attachment& wiring() { return wiring_; }
    [[nodiscard]] dev::machine& machine() { return *m_; }
    // The IDE controller, if the options gave it a disk; unplug_ide() removes it from
    // the PCI bus and the port bus (Xen's unplug of the emulated IDE disks).
    [[nodiscard]] const dev::ide_controller* ide() const { return ide_plugged_ ? &ide_ : nullptr; }
    [[nodiscard]] const dev::ide_stats& ide_stats() const { return ide_.stats(); }
    void unplug_ide();

    static constexpr unsigned ide_pci_device = 1;

private:
    // ISA IRQs of devices outside dev::machine (the IDE controller) into its router.
    struct isa_irqs final : dev::irq_sink {
        dev::machine* m;
        explicit isa_irqs(dev::machine* machine) : m{machine} {}
        void set_irq(unsigned line, bool level) override { m->set_isa_irq(line, level); }
    };

    static void spin_until(void* ctx, std::uint64_t deadline);

    guest* g_;
    dev::machine* m_;
    dev::attachment wiring_;
    dev::attachment::mmio_window lapic_window_, ioapic_window_;
    std::uint64_t rsdp_ = 0;
    isa_irqs isa_irqs_;
    dev::ide_controller ide_;
    bool ide_plugged_ = false;
};

} // namespace hv::vm
