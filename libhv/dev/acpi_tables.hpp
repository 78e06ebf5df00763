// ACPI tables for the emulated PC, built into a guest-memory buffer: RSDP (v2), XSDT
// (and an RSDT when everything is below 4 GiB), FADT (rev 6), FACS, MADT, and a DSDT
// holding only the \_S5 package so a guest can power off through PM1a_CNT.
//
// Every structure a guest reads is declared in libhv/arch/x86/acpi_layout.hpp, packed,
// with its size asserted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/arch/x86/acpi_layout.hpp"
#include "libhv/core/result.hpp"

namespace hv::dev::acpi {

// The table layouts (libhv/arch/x86/acpi_layout.hpp), shared with the host MADT parser.
using hv::acpi::rsdp;
using hv::acpi::header;
using hv::acpi::address_space;
using hv::acpi::gas;
using hv::acpi::fadt;
using hv::acpi::facs;
using hv::acpi::madt;
using hv::acpi::madt_type;
using hv::acpi::madt_lapic;
using hv::acpi::madt_ioapic;
using hv::acpi::madt_override;
using hv::acpi::madt_lapic_nmi;
using hv::acpi::madt_x2apic;
namespace fadt_flags = hv::acpi::fadt_flags;
namespace boot_arch = hv::acpi::boot_arch;
namespace mps_flags = hv::acpi::mps_flags;
namespace madt_cpu_flags = hv::acpi::madt_cpu_flags;

struct config {
    unsigned cpus = 1;
    std::span<const std::uint32_t> apic_ids{};     // empty: 0 .. cpus-1
    std::uint32_t lapic_address = 0xfee00000;
    bool pic = true;                    // MADT PCAT_COMPAT
    bool ioapic = true;
    std::uint8_t ioapic_id = 0;         // keep it clear of the local APIC IDs
    std::uint32_t ioapic_address = 0xfec00000;
    std::uint32_t ioapic_gsi_base = 0;
    bool irq0_to_gsi2 = true;
    // Fixed hardware: PM1a event block at pm_base, control at pm_base+4, timer at
    // pm_base+8. Without it the FADT says HW_REDUCED_ACPI.
    bool pm = true;
    std::uint16_t pm_base = 0x600;
    bool pm_timer_32bit = true;
    std::uint8_t sci_irq = 9;
    std::uint8_t s5_slp_typ = 5;
    // Hardware-reduced sleep control/status registers (one byte each) at sleep_port.
    bool sleep_regs = false;
    std::uint16_t sleep_port = 0x620;
    bool legacy_devices = true;
    bool i8042 = true;
    bool rtc = true;
    std::uint8_t rtc_century_index = 0x32;
    bool reset_reg = true;
    std::uint16_t reset_port = 0xcf9;
    std::uint8_t reset_value = 0x06;
    char oem_id[6] = {'L', 'I', 'B', 'H', 'V', ' '};
};

// Where each table landed (guest-physical addresses) and how much of the buffer is used.
struct layout {
    std::uint64_t rsdp, rsdt, xsdt, fadt, facs, madt, dsdt;
    std::size_t size;
};

// Builds the tables into `mem`, which the guest sees at `gpa` (16-byte aligned); the
// RSDP comes first so a buffer at 0xe0000 is found by the legacy scan.
result<layout> build(std::span<std::uint8_t> mem, std::uint64_t gpa, const config& cfg);

std::uint8_t checksum(const void* p, std::size_t n);    // the byte that makes the sum 0

} // namespace hv::dev::acpi
