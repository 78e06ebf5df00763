// What the loader told us, in one shape whichever loader it was:
// multiboot2 (GRUB), multiboot1 (QEMU -kernel), a Xen PVH start_info (QEMU -kernel), or
// libhv's real-mode stub (a flat image started at 0000:7C00 without a BIOS; the
// command line and memory map are read from fw_cfg, the RSDP found by its signature).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include "libhv/core/result.hpp"

namespace hv::boot {

enum class loader : std::uint8_t { multiboot1, multiboot2, pvh, real_mode };
constexpr const char* to_string(loader l) {
    switch (l) {
    case loader::multiboot1: return "multiboot1";
    case loader::multiboot2: return "multiboot2";
    case loader::pvh: return "pvh";
    case loader::real_mode: return "real-mode";
    }
    return "?";
}

constexpr std::uint32_t multiboot1_magic = 0x2badb002;  // in %eax from a multiboot1 loader
constexpr std::uint32_t multiboot2_magic = 0x36d76289;  // in %eax from a multiboot2 loader
constexpr std::uint32_t pvh_magic = 0x336ec578;         // hvm_start_info.magic
constexpr std::uint32_t real_mode_magic = 0x4d525648;   // "HVRM": libhv's real-mode stub, %ebx = its hand-off

// The real-mode stub's hand-off block (libhv/boot/realmode_stub.S, at stub offset 472):
// toolchain/realmode_image.py fills the payload fields, the stub the rest as it runs.
struct real_mode_handoff {
    std::uint32_t magic;          // real_mode_magic
    std::uint32_t payload_paddr;  // where the stub copied the image's loaded bytes
    std::uint32_t payload_bytes;
    std::uint32_t entry;          // the image's 32-bit entry (hv_entry32)
    std::uint64_t first_tsc;      // TSC at the stub's first instruction (0x7c00)
    std::uint32_t entry_cr0;      // the machine status word there (CR0.PE = bit 0)
    std::uint32_t entry_edx;      // EDX there: DL = the boot drive
};
static_assert(sizeof(real_mode_handoff) == 32 && __builtin_offsetof(real_mode_handoff, first_tsc) == 16);
inline constexpr std::uint32_t real_mode_handoff_offset = 472;

// E820 numbering, which multiboot and PVH share.
enum class region_type : std::uint32_t { available = 1, reserved = 2, acpi_reclaimable = 3, acpi_nvs = 4, bad = 5 };

struct region {
    std::uint64_t base;
    std::uint64_t length;
    region_type type;
};

struct module {
    std::uint64_t start;
    std::uint64_t end;  // exclusive
    std::string_view cmdline;
};

struct info {
    static constexpr std::size_t max_regions = 64;
    static constexpr std::size_t max_modules = 16;
    static constexpr std::size_t max_string = 1024;

    loader source{};
    std::string_view cmdline;
    std::string_view loader_name;
    std::uint64_t rsdp = 0;  // physical address of an ACPI RSDP, 0 if none
    std::uint64_t info_start = 0, info_end = 0;  // where the loader's own structures lie
    // Real mode only: the TSC at the image's first instruction, and DL there.
    std::uint64_t first_instruction_tsc = 0;
    std::uint8_t boot_drive = 0;
    region regions[max_regions]{};
    std::size_t region_count = 0;
    module modules[max_modules]{};
    std::size_t module_count = 0;

    // Strings are copied here so the loader's memory can be reused.
    char pool[4096]{};
    std::size_t pool_used = 0;
};

// Physical memory as the parser sees it: an identity map on metal, a buffer in tests.
struct memory_reader {
    hv::status (*read)(void* ctx, std::uint64_t paddr, void* dst, std::size_t n);
    void* ctx;
};

// Port I/O for what only devices tell (fw_cfg): the port bus on metal, a model in tests.
struct port_io {
    void (*out16)(void* ctx, std::uint16_t port, std::uint16_t value);
    std::uint8_t (*in8)(void* ctx, std::uint16_t port);
    void* ctx;
};

// `ports` is needed for real_mode_magic only.
[[nodiscard]] hv::status parse(std::uint32_t magic, std::uint64_t info_paddr, const memory_reader& mem, info& out,
                               const port_io* ports = nullptr);
[[nodiscard]] hv::status parse_multiboot2(std::uint64_t info_paddr, const memory_reader& mem, info& out);
[[nodiscard]] hv::status parse_multiboot1(std::uint64_t info_paddr, const memory_reader& mem, info& out);
[[nodiscard]] hv::status parse_pvh(std::uint64_t info_paddr, const memory_reader& mem, info& out);
[[nodiscard]] hv::status parse_real_mode(std::uint64_t handoff_paddr, const memory_reader& mem, const port_io& ports,
                                         info& out);

// ---- The loaders' layouts (read by us, written by the loader) ----
namespace mb2 {
struct fixed_header {
    std::uint32_t total_size;
    std::uint32_t reserved;
};
struct tag {
    std::uint32_t type;
    std::uint32_t size;
};
enum tag_type : std::uint32_t { end = 0, cmdline = 1, loader_name = 2, module = 3, basic_meminfo = 4,
                                mmap = 6, acpi_old = 14, acpi_new = 15 };
struct module_tag {
    tag hdr;
    std::uint32_t mod_start;
    std::uint32_t mod_end;
    // NUL-terminated string follows
};
struct mmap_tag {
    tag hdr;
    std::uint32_t entry_size;
    std::uint32_t entry_version;
};
struct mmap_entry {
    std::uint64_t base_addr;
    std::uint64_t length;
    std::uint32_t type;
    std::uint32_t reserved;
};
static_assert(sizeof(fixed_header) == 8 && sizeof(tag) == 8);
static_assert(sizeof(module_tag) == 16 && sizeof(mmap_tag) == 16 && sizeof(mmap_entry) == 24);
} // namespace mb2

namespace mb1 {
struct info {
    std::uint32_t flags;
    std::uint32_t mem_lower, mem_upper;
    std::uint32_t boot_device;
    std::uint32_t cmdline;
    std::uint32_t mods_count, mods_addr;
    std::uint32_t syms[4];
    std::uint32_t mmap_length, mmap_addr;
    std::uint32_t drives_length, drives_addr;
    std::uint32_t config_table;
    std::uint32_t boot_loader_name;
};
enum flag : std::uint32_t { has_mem = 1u << 0, has_cmdline = 1u << 2, has_mods = 1u << 3, has_mmap = 1u << 6,
                            has_loader_name = 1u << 9 };
struct module {
    std::uint32_t mod_start, mod_end, string, reserved;
};
// Each entry is preceded by its own size (not counting the size field itself).
struct __attribute__((packed)) mmap_entry {
    std::uint32_t size;
    std::uint64_t base_addr;
    std::uint64_t length;
    std::uint32_t type;
};
static_assert(sizeof(info) == 68 && __builtin_offsetof(info, mmap_length) == 44);
static_assert(__builtin_offsetof(info, boot_loader_name) == 64);
static_assert(sizeof(module) == 16 && sizeof(mmap_entry) == 24);
} // namespace mb1

namespace pvh {
struct start_info {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t flags;
    std::uint32_t nr_modules;
    std::uint64_t modlist_paddr;
    std::uint64_t cmdline_paddr;
    std::uint64_t rsdp_paddr;
    std::uint64_t memmap_paddr;   // version >= 1
    std::uint32_t memmap_entries; // version >= 1
    std::uint32_t reserved;
};
struct modlist_entry {
    std::uint64_t paddr;
    std::uint64_t size;
    std::uint64_t cmdline_paddr;
    std::uint64_t reserved;
};
struct memmap_entry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;
    std::uint32_t reserved;
};
static_assert(sizeof(start_info) == 56 && __builtin_offsetof(start_info, memmap_paddr) == 40);
static_assert(sizeof(modlist_entry) == 32 && sizeof(memmap_entry) == 24);
} // namespace pvh

} // namespace hv::boot
