// Every fixed port, address and line of the emulated PC, with why it is there.
#pragma once
#include <cstdint>

namespace hv::dev::layout {

// I/O ports
inline constexpr std::uint16_t pic_master = 0x20;      // 8259 master, 2 ports
inline constexpr std::uint16_t pit = 0x40;             // 8254, 4 ports
inline constexpr std::uint16_t kbc_data = 0x60;        // 8042 data
inline constexpr std::uint16_t port61 = 0x61;          // PIT channel 2 gate/OUT2, speaker
inline constexpr std::uint16_t kbc_command = 0x64;     // 8042 command/status
inline constexpr std::uint16_t cmos = 0x70;            // RTC/CMOS index (bit 7: NMI mask) + data
inline constexpr std::uint16_t post = 0x80;            // POST codes (also Linux's I/O delay port)
inline constexpr std::uint16_t port92 = 0x92;          // system control port A: fast A20, fast reset
inline constexpr std::uint16_t pic_slave = 0xa0;       // 8259 slave, 2 ports
inline constexpr std::uint16_t debug_exit = 0xf4;      // QEMU isa-debug-exit iobase=0xf4 iosize=4
inline constexpr std::uint16_t com1 = 0x3f8;           // 16550, 8 ports
inline constexpr std::uint16_t elcr = 0x4d0;           // edge/level control, 2 ports
inline constexpr std::uint16_t fw_cfg = 0x510;         // QEMU fw_cfg selector (2) + data (1)
inline constexpr std::uint16_t acpi_pm = 0x600;        // PM1a evt/cnt + PM timer, as PIIX4 firmware sets it
inline constexpr std::uint16_t acpi_sleep = 0x620;     // hardware-reduced sleep control/status
inline constexpr std::uint16_t pci_config = 0xcf8;     // mechanism #1 address/data, 0xcf9 reset control

// Guest-physical addresses
inline constexpr std::uint64_t ioapic = 0xfec00000;    // architectural default
inline constexpr std::uint64_t lapic = 0xfee00000;     // IA32_APIC_BASE reset value
inline constexpr std::uint64_t acpi_tables = 0xe0000;  // inside the legacy RSDP scan window

// ISA IRQs and GSIs
inline constexpr unsigned irq_pit = 0;
inline constexpr unsigned irq_keyboard = 1;
inline constexpr unsigned irq_com1 = 4;
inline constexpr unsigned irq_rtc = 8;
inline constexpr unsigned irq_sci = 9;
inline constexpr unsigned irq_mouse = 12;
inline constexpr unsigned gsi_pit = 2;                 // MADT interrupt source override IRQ0 → GSI2

} // namespace hv::dev::layout
