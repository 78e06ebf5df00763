#include "libhv/dev/machine.hpp"
#include "libhv/dev/layout.hpp"

namespace hv::dev {

machine_config machine_config::pc(unsigned vcpus, std::uint64_t below, std::uint64_t above) {
    machine_config c;
    c.vcpus = vcpus;
    c.ram_below_4g = below;
    c.ram_above_4g = above;
    c.devices = dev_pc;
    return c;
}

machine_config machine_config::pvh(unsigned vcpus, std::uint64_t below, std::uint64_t above) {
    machine_config c = pc(vcpus, below, above);
    c.devices = 0;
    return c;
}

namespace {
unsigned clamp_vcpus(unsigned n) {
    if (n == 0) return 1;
    return n > machine_config::max_vcpus ? machine_config::max_vcpus : n;
}
void put_le(std::uint8_t* p, std::uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
} // namespace

machine::machine(const machine_config& cfg, const clock& guest_clock)
    : cfg_{cfg}, timers_{guest_clock}, pit_{timers_}, rtc_{timers_, cfg.rtc_unix_time}, uart_{&timers_},
      debug_exit_{this}, kbc_{this},
      ioapic_{apic_bus_, static_cast<std::uint8_t>(clamp_vcpus(cfg.vcpus) < 16 ? clamp_vcpus(cfg.vcpus) : 0)},
      pm_{timers_, this, true, 5}, sleep_regs_{this, 5}, pci_{this} {
    cfg_.vcpus = clamp_vcpus(cfg.vcpus);
    for (unsigned i = 0; i < cfg_.vcpus; ++i) {
        lapic_config lc;
        lc.apic_id = i;
        lc.bsp = i == 0;
        lc.timer_hz = cfg_.lapic_timer_hz;
        lc.x2apic = cfg_.x2apic;
        lc.tsc_deadline = cfg_.tsc_deadline;
        lc.phys_addr_bits = cfg_.phys_addr_bits;
        lc.virtual_wire = (cfg_.devices & dev_pic) != 0;
        cpus_[i].emplace(lc, apic_bus_, timers_);
    }

    pic_.on_intr(callback<bool>{&pic_intr, this});
    pit_.connect_irq(this, layout::irq_pit);
    rtc_.connect_irq(this, layout::irq_rtc);
    uart_.connect_irq(this, layout::irq_com1);
    kbc_.connect_irq(this, layout::irq_keyboard, layout::irq_mouse);
    pm_.connect_sci(this, layout::irq_sci);
    if (cfg_.devices & dev_acpi_pm) pic_.set_elcr(1u << layout::irq_sci);     // as firmware leaves it

    rtc_.set_memory(cfg_.ram_below_4g, cfg_.ram_above_4g);
    rtc_.set_cpu_count(cfg_.vcpus);

    fw_cfg_.set_ram_size(cfg_.ram_below_4g + cfg_.ram_above_4g);
    fw_cfg_.set_cpus(static_cast<std::uint16_t>(cfg_.vcpus), static_cast<std::uint16_t>(cfg_.vcpus));
    // etc/e820 as QEMU lays it out: {u64 address, u64 length, u32 type} little-endian.
    std::size_t e820_len = 0;
    if (cfg_.ram_below_4g) {
        put_le(&e820_[0], 0, 8);
        put_le(&e820_[8], cfg_.ram_below_4g, 8);
        put_le(&e820_[16], 1, 4);
        e820_len += 20;
    }
    if (cfg_.ram_above_4g) {
        put_le(&e820_[e820_len], 0x100000000ull, 8);
        put_le(&e820_[e820_len + 8], cfg_.ram_above_4g, 8);
        put_le(&e820_[e820_len + 16], 1, 4);
        e820_len += 20;
    }
    (void)fw_cfg_.add_file("etc/e820", std::span<const std::uint8_t>(e820_.data(), e820_len));

    (void)pci_.attach(0, 0, host_bridge_);
    map_devices(cfg_.devices);
}

void machine::pic_intr(void* ctx, bool level) {
    static_cast<machine*>(ctx)->apic_bus_.set_lint0_all(level);
}

void machine::map_devices(std::uint32_t set) {
    set &= ~present_;
    auto io = [this](std::uint16_t base, std::uint64_t len, io_device& d, std::uint8_t sizes) {
        (void)ports_.map(base, len, d, sizes);
    };
    if (set & dev_pic) {
        io(layout::pic_master, 2, pic_.master(), size1);
        io(layout::pic_slave, 2, pic_.slave(), size1);
        io(layout::elcr, 2, pic_.elcr(), size1);
        apic_bus_.set_ext_int(&pic_);
    }
    if (set & dev_pit) {
        io(layout::pit, 4, pit_, size1);
        io(layout::port61, 1, pit_.port61(), size1);
    }
    if (set & dev_rtc) io(layout::cmos, 2, rtc_, size1);
    if (set & dev_uart) io(layout::com1, 8, uart_, size1);
    if (set & dev_debug_exit) io(layout::debug_exit, 4, debug_exit_, size_any);
    if (set & dev_post) io(layout::post, 1, post_, size1);
    if (set & dev_i8042) {
        io(layout::kbc_data, 1, kbc_.data_port(), size1);
        io(layout::kbc_command, 1, kbc_.command_port(), size1);
        io(layout::port92, 1, kbc_.port92(), size1);
    }
    if (set & dev_ioapic) (void)mmio_.map(layout::ioapic, 0x1000, ioapic_, size_any);
    if (set & dev_acpi_pm) io(layout::acpi_pm, acpi_pm::ports, pm_, size1 | size2 | size4);
    if (set & dev_pci) io(layout::pci_config, 8, pci_, size1 | size2 | size4);
    if (set & dev_acpi_sleep) io(layout::acpi_sleep, acpi_sleep_regs::ports, sleep_regs_, size1);
    if (set & dev_fw_cfg) io(layout::fw_cfg, 2, fw_cfg_, size1 | size2);
    present_ |= set;
}

void machine::unmap_devices(std::uint32_t set) {
    set &= present_;
    if (set & dev_pic) {
        ports_.unmap(pic_.master());
        ports_.unmap(pic_.slave());
        ports_.unmap(pic_.elcr());
        apic_bus_.set_ext_int(nullptr);
    }
    if (set & dev_pit) {
        ports_.unmap(pit_);
        ports_.unmap(pit_.port61());
    }
    if (set & dev_rtc) ports_.unmap(rtc_);
    if (set & dev_uart) ports_.unmap(uart_);
    if (set & dev_debug_exit) ports_.unmap(debug_exit_);
    if (set & dev_post) ports_.unmap(post_);
    if (set & dev_i8042) {
        ports_.unmap(kbc_.data_port());
        ports_.unmap(kbc_.command_port());
        ports_.unmap(kbc_.port92());
    }
    if (set & dev_ioapic) mmio_.unmap(ioapic_);
    if (set & dev_acpi_pm) ports_.unmap(pm_);
    if (set & dev_pci) ports_.unmap(pci_);
    if (set & dev_acpi_sleep) ports_.unmap(sleep_regs_);
    if (set & dev_fw_cfg) ports_.unmap(fw_cfg_);
    present_ &= ~set;
}

void machine::unplug(std::uint32_t devices) { unmap_devices(devices); }

void machine::set_irq(unsigned irq, bool level) {
    if (irq >= 16) return;
    if (present_ & dev_pic) pic_.set_irq(irq, level);
    if (present_ & dev_ioapic) ioapic_.set_irq(irq == layout::irq_pit ? layout::gsi_pit : irq, level);
}

void machine::raise(event e) {
    if (event_.kind == event_kind::none) event_ = e;    // the first event decides the run
}

event machine::take_event() {
    event e = event_;
    event_ = event{};
    return e;
}

void machine::raise_nmi() {
    if ((present_ & dev_rtc) && rtc_.nmi_masked()) return;
    apic_bus_.set_lint1_all(true);
    apic_bus_.set_lint1_all(false);
}


bool machine::mmio_claims(unsigned vcpu, std::uint64_t gpa) const {
    if (vcpu < cfg_.vcpus && cpus_[vcpu]->mmio_claims(gpa)) return true;
    return mmio_.find(gpa) != nullptr;
}

std::uint64_t machine::mmio_read(unsigned vcpu, std::uint64_t gpa, unsigned size) {
    if (vcpu < cfg_.vcpus && cpus_[vcpu]->mmio_claims(gpa)) return cpus_[vcpu]->mmio_read(gpa, size);
    return mmio_.read(gpa, size);
}

void machine::mmio_write(unsigned vcpu, std::uint64_t gpa, unsigned size, std::uint64_t value) {
    if (vcpu < cfg_.vcpus && cpus_[vcpu]->mmio_claims(gpa)) {
        cpus_[vcpu]->mmio_write(gpa, size, value);
        return;
    }
    mmio_.write(gpa, size, value);
}

msr_value machine::read_msr(unsigned vcpu, std::uint32_t index) {
    if (vcpu >= cfg_.vcpus) return {msr_outcome::unhandled, 0};
    return cpus_[vcpu]->read_msr(index);
}

msr_outcome machine::write_msr(unsigned vcpu, std::uint32_t index, std::uint64_t value) {
    if (vcpu >= cfg_.vcpus) return msr_outcome::unhandled;
    return cpus_[vcpu]->write_msr(index, value);
}

acpi::config machine::acpi_config() const {
    acpi::config c;
    c.cpus = cfg_.vcpus;
    c.pic = present_ & dev_pic;
    c.ioapic = present_ & dev_ioapic;
    c.ioapic_id = static_cast<std::uint8_t>(cfg_.vcpus < 16 ? cfg_.vcpus : 0);
    c.pm = present_ & dev_acpi_pm;
    c.pm_base = layout::acpi_pm;
    c.sci_irq = layout::irq_sci;
    c.s5_slp_typ = 5;
    c.sleep_regs = present_ & dev_acpi_sleep;
    c.sleep_port = layout::acpi_sleep;
    c.legacy_devices = present_ & (dev_pic | dev_pit | dev_rtc | dev_uart | dev_i8042);
    c.i8042 = present_ & dev_i8042;
    c.rtc = present_ & dev_rtc;
    if (present_ & dev_pci) {
        c.reset_reg = true;
        c.reset_port = layout::pci_config + 1;
        c.reset_value = 0x06;
    } else if (present_ & dev_i8042) {
        c.reset_reg = true;
        c.reset_port = layout::kbc_command;
        c.reset_value = 0xfe;
    } else {
        c.reset_reg = false;
    }
    return c;
}

result<acpi::layout> machine::build_acpi(std::span<std::uint8_t> mem, std::uint64_t gpa) const {
    return acpi::build(mem, gpa, acpi_config());
}

} // namespace hv::dev
