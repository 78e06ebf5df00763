// The physical CPUs the firmware describes: ACPI RSDP -> RSDT/XSDT -> MADT ("APIC"),
// read through a boot::memory_reader (the identity map on metal, fake memory in tests).
// Portable; checksums and lengths are checked, a malformed table is an error. The table
// layouts are acpi_layout.hpp's, the same the emulated PC's tables are built from.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/acpi_layout.hpp"
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/result.hpp"

namespace hv::acpi {

struct cpu_list {
    static constexpr std::size_t max_cpus = 64;
    std::uint32_t apic_ids[max_cpus] = {};  // enabled processors, in MADT order (the BSP is usually first)
    std::size_t count = 0;
    std::size_t skipped = 0;            // disabled, or beyond max_cpus
    std::uint64_t lapic_address = 0;    // the MADT's local APIC address
};

// Finds "RSD PTR " on a 16-byte boundary in [base, base+length) with a valid checksum.
[[nodiscard]] result<std::uint64_t> find_rsdp(const boot::memory_reader& mem, std::uint64_t base, std::uint64_t length);
// The legacy BIOS places: the first KiB of the EBDA (segment at 0x40e), then 0xe0000-0xfffff.
[[nodiscard]] result<std::uint64_t> find_rsdp_bios(const boot::memory_reader& mem);
// The enabled processors of the MADT the RSDP at `rsdp_pa` leads to (XSDT when revision >= 2).
[[nodiscard]] status read_cpus(const boot::memory_reader& mem, std::uint64_t rsdp_pa, cpu_list& out);

} // namespace hv::acpi
