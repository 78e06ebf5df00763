// The layouts of the ACPI tables libhv writes (libhv/dev's tables for the emulated PC)
// and reads (the host's MADT: acpi_madt.hpp, used by libhv/rt/smp): RSDP, the common
// table header, FADT, FACS, MADT and its entries. Packed, sizes asserted. Portable.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::acpi {

#pragma pack(push, 1)
struct rsdp {
    char signature[8];          // "RSD PTR "
    std::uint8_t checksum;      // first 20 bytes
    char oem_id[6];
    std::uint8_t revision;      // 2
    std::uint32_t rsdt_address;
    std::uint32_t length;       // 36
    std::uint64_t xsdt_address;
    std::uint8_t extended_checksum;     // all 36 bytes
    std::uint8_t reserved[3];
};
static_assert(sizeof(rsdp) == 36);

struct header {
    char signature[4];
    std::uint32_t length;
    std::uint8_t revision;
    std::uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    std::uint32_t oem_revision;
    char creator_id[4];
    std::uint32_t creator_revision;
};
static_assert(sizeof(header) == 36);

enum class address_space : std::uint8_t { memory = 0, io = 1, pci_config = 2 };

// Generic Address Structure.
struct gas {
    address_space space_id;
    std::uint8_t bit_width;
    std::uint8_t bit_offset;
    std::uint8_t access_size;   // 1 byte, 2 word, 3 dword, 4 qword
    std::uint64_t address;
};
static_assert(sizeof(gas) == 12);

struct fadt {
    header hdr;                         // "FACP", revision 6
    std::uint32_t firmware_ctrl;
    std::uint32_t dsdt;
    std::uint8_t reserved0;
    std::uint8_t preferred_pm_profile;
    std::uint16_t sci_int;
    std::uint32_t smi_cmd;
    std::uint8_t acpi_enable;
    std::uint8_t acpi_disable;
    std::uint8_t s4bios_req;
    std::uint8_t pstate_cnt;
    std::uint32_t pm1a_evt_blk;
    std::uint32_t pm1b_evt_blk;
    std::uint32_t pm1a_cnt_blk;
    std::uint32_t pm1b_cnt_blk;
    std::uint32_t pm2_cnt_blk;
    std::uint32_t pm_tmr_blk;
    std::uint32_t gpe0_blk;
    std::uint32_t gpe1_blk;
    std::uint8_t pm1_evt_len;
    std::uint8_t pm1_cnt_len;
    std::uint8_t pm2_cnt_len;
    std::uint8_t pm_tmr_len;
    std::uint8_t gpe0_blk_len;
    std::uint8_t gpe1_blk_len;
    std::uint8_t gpe1_base;
    std::uint8_t cst_cnt;
    std::uint16_t p_lvl2_lat;
    std::uint16_t p_lvl3_lat;
    std::uint16_t flush_size;
    std::uint16_t flush_stride;
    std::uint8_t duty_offset;
    std::uint8_t duty_width;
    std::uint8_t day_alrm;
    std::uint8_t mon_alrm;
    std::uint8_t century;
    std::uint16_t iapc_boot_arch;
    std::uint8_t reserved1;
    std::uint32_t flags;
    gas reset_reg;
    std::uint8_t reset_value;
    std::uint16_t arm_boot_arch;
    std::uint8_t minor_version;
    std::uint64_t x_firmware_ctrl;
    std::uint64_t x_dsdt;
    gas x_pm1a_evt_blk;
    gas x_pm1b_evt_blk;
    gas x_pm1a_cnt_blk;
    gas x_pm1b_cnt_blk;
    gas x_pm2_cnt_blk;
    gas x_pm_tmr_blk;
    gas x_gpe0_blk;
    gas x_gpe1_blk;
    gas sleep_control_reg;
    gas sleep_status_reg;
    std::uint64_t hypervisor_vendor_identity;
};
static_assert(sizeof(fadt) == 276);
static_assert(offsetof(fadt, pm_tmr_blk) == 76);
static_assert(offsetof(fadt, flags) == 112);
static_assert(offsetof(fadt, x_dsdt) == 140);
static_assert(offsetof(fadt, x_pm_tmr_blk) == 208);

namespace fadt_flags {
inline constexpr std::uint32_t wbinvd = 1u << 0, proc_c1 = 1u << 2, slp_button = 1u << 5,
                               tmr_val_ext = 1u << 8, reset_reg_sup = 1u << 10, hw_reduced_acpi = 1u << 20;
}
namespace boot_arch {
inline constexpr std::uint16_t legacy_devices = 1u << 0, i8042 = 1u << 1, vga_not_present = 1u << 2,
                               cmos_rtc_not_present = 1u << 5;
}

struct facs {
    char signature[4];          // "FACS", no checksum
    std::uint32_t length;       // 64
    std::uint32_t hardware_signature;
    std::uint32_t firmware_waking_vector;
    std::uint32_t global_lock;
    std::uint32_t flags;
    std::uint64_t x_firmware_waking_vector;
    std::uint8_t version;
    std::uint8_t reserved0[3];
    std::uint32_t ospm_flags;
    std::uint8_t reserved1[24];
};
static_assert(sizeof(facs) == 64);

struct madt {
    header hdr;                 // "APIC"
    std::uint32_t lapic_address;
    std::uint32_t flags;        // bit 0: PCAT_COMPAT (dual 8259 present)
};
static_assert(sizeof(madt) == 44);

enum class madt_type : std::uint8_t { lapic = 0, ioapic = 1, interrupt_override = 2, lapic_nmi = 4, x2apic = 9 };

struct madt_lapic {
    madt_type type;             // lapic
    std::uint8_t length;        // 8
    std::uint8_t processor_uid;
    std::uint8_t apic_id;
    std::uint32_t flags;        // bit 0: enabled
};
static_assert(sizeof(madt_lapic) == 8);

struct madt_ioapic {
    madt_type type;
    std::uint8_t length;        // 12
    std::uint8_t ioapic_id;
    std::uint8_t reserved;
    std::uint32_t address;
    std::uint32_t gsi_base;
};
static_assert(sizeof(madt_ioapic) == 12);

struct madt_override {
    madt_type type;
    std::uint8_t length;        // 10
    std::uint8_t bus;           // 0: ISA
    std::uint8_t source;        // ISA IRQ
    std::uint32_t gsi;
    std::uint16_t flags;        // polarity bits 1:0, trigger bits 3:2
};
static_assert(sizeof(madt_override) == 10);

struct madt_lapic_nmi {
    madt_type type;
    std::uint8_t length;        // 6
    std::uint8_t processor_uid; // 0xff: all
    std::uint16_t flags;
    std::uint8_t lint;
};
static_assert(sizeof(madt_lapic_nmi) == 6);

struct madt_x2apic {
    madt_type type;
    std::uint8_t length;        // 16
    std::uint16_t reserved;
    std::uint32_t x2apic_id;
    std::uint32_t flags;
    std::uint32_t processor_uid;
};
static_assert(sizeof(madt_x2apic) == 16);
#pragma pack(pop)

namespace madt_cpu_flags {  // madt_lapic / madt_x2apic flags
inline constexpr std::uint32_t enabled = 1u << 0, online_capable = 1u << 1;
}

namespace mps_flags {   // MADT interrupt-source-override / NMI flags
inline constexpr std::uint16_t active_high = 1, active_low = 3, edge = 1u << 2, level = 3u << 2;
}

} // namespace hv::acpi
