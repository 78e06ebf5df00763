// Layouts the loaders read from kernel images or write for the guest: ELF (the System V
// gABI), multiboot1/2 image headers, the Linux x86 boot protocol's setup header and
// zero page. Multiboot info and PVH start_info are the ones in libhv/boot/boot_info.hpp.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::loader {

namespace elf {
inline constexpr std::uint8_t magic[4] = {0x7f, 'E', 'L', 'F'};
enum : std::uint8_t { class32 = 1, class64 = 2, data_lsb = 1 };
enum : std::uint16_t { type_exec = 2, machine_386 = 3, machine_x86_64 = 62 };
enum : std::uint32_t { pt_load = 1, pt_note = 4, sht_note = 7 };

struct ehdr32 {
    std::uint8_t ident[16];
    std::uint16_t type, machine;
    std::uint32_t version;
    std::uint32_t entry, phoff, shoff;
    std::uint32_t flags;
    std::uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct ehdr64 {
    std::uint8_t ident[16];
    std::uint16_t type, machine;
    std::uint32_t version;
    std::uint64_t entry, phoff, shoff;
    std::uint32_t flags;
    std::uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct phdr32 {
    std::uint32_t type, offset, vaddr, paddr, filesz, memsz, flags, align;
};
struct phdr64 {
    std::uint32_t type, flags;
    std::uint64_t offset, vaddr, paddr, filesz, memsz, align;
};
struct shdr32 {
    std::uint32_t name, type, flags, addr, offset, size, link, info, addralign, entsize;
};
struct shdr64 {
    std::uint32_t name, type;
    std::uint64_t flags, addr, offset, size;
    std::uint32_t link, info;
    std::uint64_t addralign, entsize;
};
// Both classes: 4-byte words, name and descriptor each padded to 4 bytes.
struct nhdr {
    std::uint32_t namesz, descsz, type;
};
static_assert(sizeof(ehdr32) == 52 && sizeof(ehdr64) == 64);
static_assert(sizeof(phdr32) == 32 && sizeof(phdr64) == 56);
static_assert(sizeof(shdr32) == 40 && sizeof(shdr64) == 64 && sizeof(nhdr) == 12);
static_assert(offsetof(ehdr64, phoff) == 32 && offsetof(ehdr64, phnum) == 56);
static_assert(offsetof(ehdr32, phnum) == 44);
} // namespace elf

// Xen's ELF note: name "Xen", this type, descriptor = the 32-bit physical entry point.
inline constexpr std::uint32_t xen_elfnote_phys32_entry = 18;

namespace mb1 {
inline constexpr std::uint32_t header_magic = 0x1badb002;
inline constexpr std::size_t search_limit = 8192;  // header lies within, 4-byte aligned
enum flag : std::uint32_t { page_align_modules = 1u << 0, want_memory_info = 1u << 1, want_video = 1u << 2,
                            aout_kludge = 1u << 16 };
inline constexpr std::uint32_t required_mask = 0xffff;  // bits a loader must honour or refuse
struct header {
    std::uint32_t magic, flags, checksum;
    std::uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;  // aout_kludge
    std::uint32_t mode_type, width, height, depth;                                  // want_video
};
static_assert(sizeof(header) == 48 && offsetof(header, entry_addr) == 28);
} // namespace mb1

namespace mb2 {
inline constexpr std::uint32_t header_magic = 0xe85250d6;
inline constexpr std::size_t search_limit = 32768;  // header lies within, 8-byte aligned
inline constexpr std::uint32_t arch_i386 = 0;
struct header {
    std::uint32_t magic, architecture, header_length, checksum;
};
struct header_tag {
    std::uint16_t type, flags;
    std::uint32_t size;
};
inline constexpr std::uint16_t tag_optional = 1;
enum header_tag_type : std::uint16_t { end = 0, info_request = 1, address = 2, entry_address = 3, console_flags = 4,
                                       framebuffer = 5, module_align = 6, efi_bs = 7, entry_efi32 = 8,
                                       entry_efi64 = 9, relocatable = 10 };
struct address_tag {
    header_tag hdr;
    std::uint32_t header_addr, load_addr, load_end_addr, bss_end_addr;
};
struct entry_tag {
    header_tag hdr;
    std::uint32_t entry_addr;
};
static_assert(sizeof(header) == 16 && sizeof(header_tag) == 8);
static_assert(sizeof(address_tag) == 24 && sizeof(entry_tag) == 12);
// Info tags (boot_info.hpp has their numbers) a loaded kernel receives.
struct basic_meminfo_tag {
    std::uint32_t type, size, mem_lower, mem_upper;
};
static_assert(sizeof(basic_meminfo_tag) == 16);
} // namespace mb2

// The Linux x86 boot protocol (Documentation/arch/x86/boot.rst, zero-page.rst).
namespace linux_boot {
inline constexpr std::uint32_t header_signature = 0x53726448;  // "HdrS"
inline constexpr std::uint16_t boot_flag_value = 0xaa55;
inline constexpr std::size_t setup_header_offset = 0x1f1;
enum loadflag : std::uint8_t { loaded_high = 1u << 0, keep_segments = 1u << 6, can_use_heap = 1u << 7 };
enum xloadflag : std::uint16_t { xlf_kernel_64 = 1u << 0, xlf_can_be_loaded_above_4g = 1u << 1 };
inline constexpr std::uint8_t loader_undefined = 0xff;  // type_of_loader for loaders without an ID
inline constexpr std::uint16_t vid_mode_normal = 0xffff;
inline constexpr std::uint64_t entry64_offset = 0x200;  // 64-bit entry, from the loaded kernel's start

struct __attribute__((packed)) setup_header {
    std::uint8_t setup_sects;
    std::uint16_t root_flags;
    std::uint32_t syssize;
    std::uint16_t ram_size;
    std::uint16_t vid_mode;
    std::uint16_t root_dev;
    std::uint16_t boot_flag;
    std::uint16_t jump;
    std::uint32_t header;
    std::uint16_t version;
    std::uint32_t realmode_swtch;
    std::uint16_t start_sys_seg;
    std::uint16_t kernel_version;
    std::uint8_t type_of_loader;
    std::uint8_t loadflags;
    std::uint16_t setup_move_size;
    std::uint32_t code32_start;
    std::uint32_t ramdisk_image;
    std::uint32_t ramdisk_size;
    std::uint32_t bootsect_kludge;
    std::uint16_t heap_end_ptr;
    std::uint8_t ext_loader_ver;
    std::uint8_t ext_loader_type;
    std::uint32_t cmd_line_ptr;
    std::uint32_t initrd_addr_max;
    std::uint32_t kernel_alignment;
    std::uint8_t relocatable_kernel;
    std::uint8_t min_alignment;
    std::uint16_t xloadflags;
    std::uint32_t cmdline_size;
    std::uint32_t hardware_subarch;
    std::uint64_t hardware_subarch_data;
    std::uint32_t payload_offset;
    std::uint32_t payload_length;
    std::uint64_t setup_data;
    std::uint64_t pref_address;
    std::uint32_t init_size;
    std::uint32_t handover_offset;
    std::uint32_t kernel_info_offset;
};
// Offsets in the image (and the zero page) are setup_header_offset + these.
static_assert(offsetof(setup_header, header) == 0x202 - 0x1f1);
static_assert(offsetof(setup_header, version) == 0x206 - 0x1f1);
static_assert(offsetof(setup_header, type_of_loader) == 0x210 - 0x1f1);
static_assert(offsetof(setup_header, code32_start) == 0x214 - 0x1f1);
static_assert(offsetof(setup_header, cmd_line_ptr) == 0x228 - 0x1f1);
static_assert(offsetof(setup_header, xloadflags) == 0x236 - 0x1f1);
static_assert(offsetof(setup_header, init_size) == 0x260 - 0x1f1);
static_assert(sizeof(setup_header) == 0x26c - 0x1f1);

struct __attribute__((packed)) e820_entry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;
};
static_assert(sizeof(e820_entry) == 20);
inline constexpr std::size_t e820_max = 128;

// The zero page: only the fields a loader fills are named.
struct __attribute__((packed)) boot_params {
    std::uint8_t screen_info[0x40];
    std::uint8_t reserved_040[0x70 - 0x40];
    std::uint64_t acpi_rsdp_addr;        // 0x070, protocol 2.14
    std::uint8_t reserved_078[0xc0 - 0x78];
    std::uint32_t ext_ramdisk_image;     // 0x0c0: bits 63:32 of ramdisk_image
    std::uint32_t ext_ramdisk_size;      // 0x0c4
    std::uint32_t ext_cmd_line_ptr;      // 0x0c8
    std::uint8_t reserved_0cc[0x1e8 - 0xcc];
    std::uint8_t e820_entries;           // 0x1e8
    std::uint8_t reserved_1e9[0x1f1 - 0x1e9];
    setup_header hdr;                    // 0x1f1
    std::uint8_t reserved_26c[0x2d0 - 0x26c];
    e820_entry e820_table[e820_max];     // 0x2d0
    std::uint8_t reserved_cd0[0x1000 - 0xcd0];
};
static_assert(offsetof(boot_params, acpi_rsdp_addr) == 0x70 && offsetof(boot_params, ext_ramdisk_image) == 0xc0);
static_assert(offsetof(boot_params, e820_entries) == 0x1e8 && offsetof(boot_params, hdr) == 0x1f1);
static_assert(offsetof(boot_params, e820_table) == 0x2d0 && sizeof(boot_params) == 0x1000);
} // namespace linux_boot

} // namespace hv::loader
