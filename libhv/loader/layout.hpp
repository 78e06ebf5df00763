// Every guest-physical address the loaders choose, with why it is there. The guest's
// memory map must have RAM under all of them (the loader checks and names the one
// that is missing); no kernel segment may lie below low_end.
#pragma once
#include <cstdint>

namespace hv::loader::layout {

// Above the real-mode IVT (0x0-0x3ff) and BDA (0x400-0x4ff), which a guest that
// drops back to real mode or probes the BIOS data area still expects intact.
inline constexpr std::uint64_t low_start = 0x500;
// The boot GDT: null, null, code at selector 0x10, data at 0x18 (the selectors the
// Linux boot protocol names __BOOT_CS/__BOOT_DS; multiboot and PVH take any flat ones).
inline constexpr std::uint64_t gdt = 0x500;
inline constexpr std::uint16_t code_selector = 0x10;
inline constexpr std::uint16_t data_selector = 0x18;
// Linux zero page (struct boot_params): one page, below the page tables.
inline constexpr std::uint64_t zero_page = 0x7000;
// Identity-map page tables for a 64-bit Linux entry: PML4, one PDPT, then four page
// directories of 2 MiB pages mapping [0, 4 GiB) (the protocol wants the kernel, its
// init_size, the zero page and the command line mapped; 4 GiB covers all we place).
inline constexpr std::uint64_t pml4 = 0x9000;
inline constexpr std::uint64_t pdpt = 0xa000;
inline constexpr std::uint64_t page_directories = 0xb000;
inline constexpr unsigned identity_map_gib = 4;
// Multiboot1/2 info or PVH start_info, with their module lists, memory maps and
// module strings: 64 KiB, far more than max_modules and max_memory_map need.
inline constexpr std::uint64_t boot_info = 0x10000;
inline constexpr std::uint64_t boot_info_size = 0x10000;
// The kernel command line, NUL-terminated (Linux: cmd_line_ptr; multiboot, PVH too).
inline constexpr std::uint64_t cmdline = 0x20000;
inline constexpr std::uint64_t cmdline_max = 0x10000;  // including the NUL
inline constexpr std::uint64_t low_end = 0x30000;
// A real-mode start (protocol::real_mode): a flat image at the boot-sector address,
// entered at 0000:7C00 with SP just below it. It may run up to the extended BIOS data
// area, which a PC keeps in the last KiB below 640 KiB; the real-mode protocol writes
// nothing else (its command line and memory map are in fw_cfg), so the image may
// overlap the boot area above, which it does not use.
inline constexpr std::uint64_t real_mode_image = 0x7c00;
inline constexpr std::uint64_t real_mode_image_end = 0x9fc00;  // the EBDA
// A bzImage's protected-mode kernel: the protocol's default code32_start, loadable
// by every protected-mode kernel whether relocatable or not.
inline constexpr std::uint64_t linux_kernel = 0x100000;
// Modules (and the Linux initrd) start page-aligned above everything the kernel
// occupies, including a bzImage's init_size.
inline constexpr std::uint64_t module_align = 0x1000;

} // namespace hv::loader::layout
