// The physical CPUs the firmware describes: ACPI RSDP -> RSDT/XSDT -> MADT ("APIC"),
// read through a boot::memory_reader (the identity map on metal, fake memory in tests).
// Portable; checksums and lengths are checked, a malformed table is an error.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/result.hpp"

namespace hv::acpi {

struct [[gnu::packed]] rsdp {
    char signature[8];  // "RSD PTR "
    std::uint8_t checksum;  // over the first 20 bytes
    char oem[6];
    std::uint8_t revision;  // 0: ACPI 1.0 (RSDT only), 2+: XSDT fields follow
    std::uint32_t rsdt;
    std::uint32_t length;
    std::uint64_t xsdt;
    std::uint8_t extended_checksum;
    std::uint8_t reserved[3];
};
static_assert(sizeof(rsdp) == 36);

struct [[gnu::packed]] sdt_header {
    char signature[4];
    std::uint32_t length;
    std::uint8_t revision, checksum;
    char oem[6], oem_table[8];
    std::uint32_t oem_revision, creator, creator_revision;
};
static_assert(sizeof(sdt_header) == 36);

// MADT body after the header: local APIC address, flags, then entries {type, length, ...}.
namespace madt_entry {
enum : std::uint8_t { local_apic = 0, io_apic = 1, local_x2apic = 9 };
}
inline constexpr std::uint32_t madt_enabled = 1u << 0, madt_online_capable = 1u << 1;

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
