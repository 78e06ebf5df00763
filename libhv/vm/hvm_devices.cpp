#include "libhv/vm/hvm_devices.hpp"
#include "libhv/cpu/host_timer.hpp"
#include "libhv/dev/layout.hpp"

namespace hv::vm {

namespace {
dev::attach_config config_of(const hvm_options& o) {
    dev::attach_config c;
    c.cpuid_next = &guest::on_cpuid;
    c.msr_read_next = &guest::on_msr_read;
    c.msr_write_next = &guest::on_msr_write;
    c.console = o.console;
    c.console_prefix = o.console_prefix;
    return c;
}
// ACPI tables for up to guest::max_vcpus CPUs fit easily.
std::uint8_t acpi_buffer[16 * 1024];
} // namespace

hvm_devices::hvm_devices(guest& g, dev::machine& m, const hvm_options& o)
    : g_{&g}, m_{&m}, wiring_{m, [&] {
          dev::attach_config c = config_of(o);
          c.wait = {nullptr, &spin_until};
          return c;
      }()},
      lapic_window_{&wiring_, dev::layout::lapic}, ioapic_window_{&wiring_, dev::layout::ioapic}, isa_irqs_{&m},
      ide_{o.ide_disk} {}

// Every vCPU sleeps: halt the host until the deadline on its LAPIC timer (Bochs and QEMU
// with -icount skip halted time instead of running a pause loop), or spin without one.
void hvm_devices::spin_until(void*, std::uint64_t deadline) {
    if (!cpu::host_timer::init().ok()) {
        while (x86::rdtsc() < deadline) x86::pause();
        return;
    }
    while (x86::rdtsc() < deadline) {
        cpu::host_timer::arm(deadline);
        asm volatile("sti; hlt; cli" ::: "memory");
    }
    cpu::host_timer::arm(0);
}

status hvm_devices::attach() {
    if (m_->vcpus() < g_->vcpu_count()) return fail(errc::invalid_argument, "machine has fewer local APICs than vCPUs");
    cpu_view& view = g_->cpu_features();
    view.apic = true;
    view.x2apic = m_->config().x2apic;
    view.tsc_deadline = m_->config().tsc_deadline;
    view.tsc_hz = m_->timers().clock().frequency();
    view.lapic_timer_hz = m_->config().lapic_timer_hz;
    g_->set_ports(wiring_.ports());
    HV_TRY(g_->add_mmio(dev::layout::lapic, 0x1000,
                        {&lapic_window_, &dev::attachment::mmio_read, &dev::attachment::mmio_write}));
    if (m_->present() & dev::dev_ioapic)
        HV_TRY(g_->add_mmio(dev::layout::ioapic, 0x1000,
                            {&ioapic_window_, &dev::attachment::mmio_read, &dev::attachment::mmio_write}));
    HV_TRY(g_->memory().add_rom(acpi_rom, acpi_rom_size));
    auto tables = m_->build_acpi(acpi_buffer, acpi_rom);
    HV_TRY(tables);
    HV_TRY(g_->memory().load(acpi_rom, acpi_buffer, tables->size));
    rsdp_ = tables->rsdp;
    if (ide_.sectors() != 0) {
        namespace ata = dev::ata;
        ide_.connect_irq(&isa_irqs_, ata::irq);
        HV_TRY(m_->pci().attach(ide_pci_device, 0, ide_));
        HV_TRY(m_->ports().map(ata::command_block, 8, ide_.command_block(), dev::size1 | dev::size2 | dev::size4));
        HV_TRY(m_->ports().map(ata::control_block, 1, ide_.control_block(), dev::size1));
        ide_plugged_ = true;
    }
    return {};
}

void hvm_devices::unplug_ide() {
    if (!ide_plugged_) return;
    m_->pci().detach(ide_pci_device, 0);
    m_->ports().unmap(ide_.command_block());
    m_->ports().unmap(ide_.control_block());
    m_->set_isa_irq(dev::ata::irq, false);
    ide_plugged_ = false;
}

status hvm_devices::start() {
    HV_TRY(g_->start());
    for (unsigned i = 0; i < g_->vcpu_count(); ++i) HV_TRY(wiring_.attach(g_->vcpu(i), i));
    return {};
}

void hvm_devices::run(cpu::scheduler& s) {
    s.run(&dev::attachment::idle, &wiring_);
    wiring_.flush_console();
}

} // namespace hv::vm
