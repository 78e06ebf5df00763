// A standard PC built from the device models, wired together, with the entry points
// the cpu layer calls on exits. Which devices exist is configurable: pc() is the full
// legacy machine, pvh() has no emulated legacy devices at all (local APICs only),
// and unplug() removes emulated devices at run time (Xen PV-on-HVM style).
//
// Not thread-safe: the cpu layer serializes every call into one machine (one lock
// around each exit's device work). Notification callbacks run inside those calls and
// must not call back into the machine.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include "libhv/dev/acpi_pm.hpp"
#include "libhv/dev/acpi_tables.hpp"
#include "libhv/dev/bus.hpp"
#include "libhv/dev/cmos_rtc.hpp"
#include "libhv/dev/event.hpp"
#include "libhv/dev/fw_cfg.hpp"
#include "libhv/dev/i8042.hpp"
#include "libhv/dev/ioapic.hpp"
#include "libhv/dev/lapic.hpp"
#include "libhv/dev/misc_ports.hpp"
#include "libhv/dev/pci.hpp"
#include "libhv/dev/pic8259.hpp"
#include "libhv/dev/pit8254.hpp"
#include "libhv/dev/time.hpp"
#include "libhv/dev/uart16550.hpp"

namespace hv::dev {

enum device : std::uint32_t {
    dev_pic = 1u << 0,
    dev_pit = 1u << 1,
    dev_rtc = 1u << 2,
    dev_uart = 1u << 3,
    dev_debug_exit = 1u << 4,
    dev_post = 1u << 5,
    dev_i8042 = 1u << 6,
    dev_ioapic = 1u << 7,
    dev_acpi_pm = 1u << 8,
    dev_pci = 1u << 9,
    dev_fw_cfg = 1u << 10,
    dev_acpi_sleep = 1u << 11,  // hardware-reduced ACPI sleep registers (for PVH guests)
    dev_all = (1u << 12) - 1,
    dev_pc = dev_all & ~dev_acpi_sleep,
};

struct machine_config {
    static constexpr unsigned max_vcpus = 64;

    unsigned vcpus = 1;
    std::uint32_t devices = dev_pc;
    std::uint64_t ram_below_4g = 0;
    std::uint64_t ram_above_4g = 0;
    std::uint64_t rtc_unix_time = 0;            // wall time at guest tick 0
    std::uint64_t lapic_timer_hz = 1000000000;  // APIC timer input clock
    bool x2apic = true;
    bool tsc_deadline = true;
    unsigned phys_addr_bits = 39;

    static machine_config pc(unsigned vcpus, std::uint64_t ram_below_4g, std::uint64_t ram_above_4g = 0);
    // PVH guests: no 8259/8254/RTC/UART/... just local APICs. OR in dev_acpi_sleep
    // (clean ACPI power-off), dev_uart or dev_debug_exit as wanted.
    static machine_config pvh(unsigned vcpus, std::uint64_t ram_below_4g, std::uint64_t ram_above_4g = 0);
};

class machine final : private event_sink, private irq_sink {
public:
    machine(const machine_config& cfg, const clock& guest_clock);
    machine(const machine&) = delete;
    machine& operator=(const machine&) = delete;

    // ---- exits ----
    std::uint32_t io_read(std::uint16_t port, unsigned size) { return static_cast<std::uint32_t>(ports_.read(port, size)); }
    void io_write(std::uint16_t port, unsigned size, std::uint32_t value) { ports_.write(port, size, value); }
    // REP INS/OUTS bursts (io_device::read_block): how many accesses the port took.
    std::size_t io_read_block(std::uint16_t port, unsigned size, void* dst, std::size_t count) {
        return ports_.read_block(port, size, dst, count);
    }
    std::size_t io_write_block(std::uint16_t port, unsigned size, const void* src, std::size_t count) {
        return ports_.write_block(port, size, src, count);
    }
    // MMIO the hypervisor emulates (local APIC page of this vCPU, IOAPIC); other
    // addresses read all-ones and drop writes.
    std::uint64_t mmio_read(unsigned vcpu, std::uint64_t gpa, unsigned size);
    void mmio_write(unsigned vcpu, std::uint64_t gpa, unsigned size, std::uint64_t value);
    [[nodiscard]] bool mmio_claims(unsigned vcpu, std::uint64_t gpa) const;
    // IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC MSRs; `unhandled` for anything else.
    msr_value read_msr(unsigned vcpu, std::uint32_t index);
    msr_outcome write_msr(unsigned vcpu, std::uint32_t index, std::uint64_t value);

    // ---- interrupts (per vCPU, via its local APIC) ----
    lapic& cpu(unsigned vcpu) { return *cpus_[vcpu]; }
    [[nodiscard]] unsigned vcpus() const { return cfg_.vcpus; }
    [[nodiscard]] const machine_config& config() const { return cfg_; }
    void set_notify(unsigned vcpu, callback<> cb) { cpus_[vcpu]->set_notify(cb); }
    // An ISA IRQ (0-15) as a device would drive it: to the 8259 and to the IOAPIC.
    void set_isa_irq(unsigned irq, bool level) { set_irq(irq, level); }
    void raise_nmi();   // chipset NMI → LINT1, unless masked through port 0x70 bit 7

    // ---- time ----
    timer_queue& timers() { return timers_; }
    // Runs every device deadline that has passed; returns how many ran.
    std::uint32_t poll() { return timers_.run_expired(timers_.now()); }
    [[nodiscard]] std::optional<std::uint64_t> next_deadline() const { return timers_.next_deadline(); }

    // ---- run state ----
    [[nodiscard]] bool has_event() const { return event_.kind != event_kind::none; }
    [[nodiscard]] event peek_event() const { return event_; }
    event take_event();

    // ---- configuration ----
    void unplug(std::uint32_t devices);
    [[nodiscard]] std::uint32_t present() const { return present_; }
    [[nodiscard]] acpi::config acpi_config() const;
    result<acpi::layout> build_acpi(std::span<std::uint8_t> mem, std::uint64_t gpa) const;

    // ---- the devices ----
    port_bus& ports() { return ports_; }
    mmio_bus& mmio() { return mmio_; }
    apic_bus& apics() { return apic_bus_; }
    uart16550& com1() { return uart_; }
    pic_pair& pic() { return pic_; }
    pit8254& pit() { return pit_; }
    cmos_rtc& rtc() { return rtc_; }
    ioapic& io_apic() { return ioapic_; }
    acpi_pm& pm() { return pm_; }
    pci_bus& pci() { return pci_; }
    fw_cfg& firmware_config() { return fw_cfg_; }
    i8042& keyboard() { return kbc_; }
    debug_exit& exit_port() { return debug_exit_; }
    post_code& post() { return post_; }

private:
    void raise(event e) override;
    void set_irq(unsigned irq, bool level) override;
    void map_devices(std::uint32_t set);
    void unmap_devices(std::uint32_t set);
    static void pic_intr(void* ctx, bool level);

    machine_config cfg_;
    timer_queue timers_;
    port_bus ports_;
    mmio_bus mmio_;
    apic_bus apic_bus_;
    std::array<std::optional<lapic>, machine_config::max_vcpus> cpus_{};

    pic_pair pic_;
    pit8254 pit_;
    cmos_rtc rtc_;
    uart16550 uart_;
    debug_exit debug_exit_;
    post_code post_;
    i8042 kbc_;
    ioapic ioapic_;
    acpi_pm pm_;
    acpi_sleep_regs sleep_regs_;
    pci_bus pci_;
    pci_host_bridge host_bridge_;
    fw_cfg fw_cfg_;

    std::array<std::uint8_t, 40> e820_{};   // fw_cfg "etc/e820": two 20-byte RAM entries
    std::uint32_t present_ = 0;
    event event_{};
};

} // namespace hv::dev
