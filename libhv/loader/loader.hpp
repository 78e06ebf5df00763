// Guest kernel loaders: multiboot1 and multiboot2 (ELF or a.out-kludge images), Xen PVH
// ELF (XEN_ELFNOTE_PHYS32_ENTRY, hvm_start_info version 1), Linux bzImage (boot
// protocol 2.06+, 32-bit entry; 2.12+ with XLF_KERNEL_64 for the 64-bit entry) and a
// firmware-less real-mode start (protocol::real_mode, below).
//
//   probe(image)                 what the image supports; names what is malformed
//   load(guest, image, config)   copies it into guest RAM, writes the boot structures
//                                at layout.hpp's addresses, returns the vCPU state
//
// Everything read from an image is copied out of it, then validated: the image is
// untrusted. Every guest placement is checked against the memory map given to the guest
// before a byte is written.
#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/result.hpp"
#include "libhv/loader/layout.hpp"

namespace hv::loader {

enum class protocol : std::uint8_t { none, multiboot1, multiboot2, pvh, linux_bzimage, real_mode };
constexpr const char* to_string(protocol p) {
    switch (p) {
    case protocol::none: return "none";
    case protocol::multiboot1: return "multiboot1";
    case protocol::multiboot2: return "multiboot2";
    case protocol::pvh: return "pvh";
    case protocol::linux_bzimage: return "linux";
    case protocol::real_mode: return "real-mode";
    }
    return "?";
}
// The protocol to_string names so, e.g. "multiboot2".
[[nodiscard]] constexpr std::optional<protocol> protocol_named(std::string_view name) {
    for (protocol p : {protocol::none, protocol::multiboot1, protocol::multiboot2, protocol::pvh,
                       protocol::linux_bzimage, protocol::real_mode})
        if (name == to_string(p)) return p;
    return std::nullopt;
}

// ---- The real-mode start (libhv's, there is no BIOS) ----
// The image is flat, boot-sector style: at least one 512-byte sector ending in the
// signature 0x55 0xAA (bytes 510-511), at most the 608 KiB from 0x7c00 to the EBDA at
// 0x9fc00; it is copied to 0x7c00 and nothing else is written. The vCPU starts in real
// mode at CS:IP = 0000:7C00, DS = ES = SS = 0, SP = 0x7c00, DL = 0x80 (the boot drive,
// the first hard disk), interrupts off, CR0.PE clear. Without BIOS services the IVT and
// BDA are zero: the guest finds what a BIOS would tell it in the emulated PC:
//   fw_cfg (selector port 0x510, 16-bit; data port 0x511), as QEMU lays it out:
//     0x0003 RAM size (u64), 0x0014 command-line size incl. its NUL (u32),
//     0x0015 command line, file "etc/e820" (20-byte {u64 base, u64 length, u32 type})
//   CMOS 0x30/0x31 KiB above 1 MiB (to 64 MiB), 0x34/0x35 64 KiB units above 16 MiB
//   the ACPI RSDP on a 16-byte boundary in 0xe0000-0xfffff ("RSD PTR ")
// The window [640 KiB, 1 MiB) is never RAM (a PC's VGA and ROM area).
inline constexpr std::size_t real_mode_sector = 512;
inline constexpr std::size_t real_mode_max_image = layout::real_mode_image_end - layout::real_mode_image;
static_assert(real_mode_max_image == 0x98000);
inline constexpr std::uint8_t real_mode_boot_drive = 0x80;

// Why an image is no flat real-mode image: real_mode_image_problem's answers.
namespace real_mode_problem {
inline constexpr char elf[] =
    "an ELF file: a real-mode start takes a flat image (boot-sector style, 0x55 0xAA at bytes 510-511)";
inline constexpr char too_short[] = "shorter than one 512-byte boot sector";
inline constexpr char too_large[] = "larger than the 608 KiB (0x98000 bytes) between 0x7c00 and the EBDA at 0x9fc00";
inline constexpr char no_signature[] = "no boot signature 0x55 0xAA at bytes 510-511: not a flat real-mode image";
} // namespace real_mode_problem

// Why `image` cannot be started in real mode, or nullptr. hvimage asks the same.
[[nodiscard]] constexpr const char* real_mode_image_problem(std::span<const std::byte> image) {
    if (image.size() >= 4 && image[0] == std::byte{0x7f} && image[1] == std::byte{'E'} &&
        image[2] == std::byte{'L'} && image[3] == std::byte{'F'})
        return real_mode_problem::elf;
    if (image.size() < real_mode_sector) return real_mode_problem::too_short;
    if (image.size() > real_mode_max_image) return real_mode_problem::too_large;
    if (image[510] != std::byte{0x55} || image[511] != std::byte{0xaa}) return real_mode_problem::no_signature;
    return nullptr;
}

// A piece of the image to copy: file bytes [file_offset, +file_size) to paddr, then
// zeros up to mem_size.
struct load_segment {
    std::uint64_t file_offset;
    std::uint64_t file_size;
    std::uint64_t paddr;
    std::uint64_t mem_size;
};

struct image_info {
    static constexpr std::size_t max_segments = 16;

    bool elf = false;
    bool elf64 = false;
    std::uint64_t elf_entry = 0;
    load_segment elf_segments[max_segments]{};
    std::size_t elf_segment_count = 0;

    bool multiboot1 = false;
    std::uint32_t mb1_flags = 0;
    bool mb1_aout = false;  // the header's address fields replace the ELF headers
    load_segment mb1_segment{};
    std::uint32_t mb1_entry = 0;

    bool multiboot2 = false;
    bool mb2_address = false;  // address tag: load like mb1's a.out kludge
    load_segment mb2_segment{};
    bool mb2_has_entry = false;
    std::uint32_t mb2_entry = 0;
    std::uint32_t mb2_required_info = 0;  // bit n: info tag n requested, not optional

    bool pvh = false;
    std::uint32_t pvh_entry = 0;

    bool linux_bzimage = false;
    std::uint16_t linux_version = 0;
    bool linux_entry64 = false;  // 2.12+ and XLF_KERNEL_64
    std::uint64_t linux_kernel_offset = 0;  // protected-mode kernel in the file
    std::uint64_t linux_kernel_size = 0;
    std::uint32_t linux_init_size = 0;
    // Where the kernel runs (boot protocol: relocatable kernels at the load address
    // raised to pref_address and aligned to kernel_alignment, the others at
    // pref_address): init_size bytes from there are the kernel's, not the loader's.
    bool linux_relocatable = false;
    std::uint32_t linux_kernel_alignment = 0;
    std::uint64_t linux_pref_address = 0;
    std::uint32_t linux_initrd_addr_max = 0;
    std::uint32_t linux_cmdline_size = 0;

    // A multiboot header in a file that is no ELF and lacks the header's own load
    // addresses: no entry (probe refuses the image, naming this; probe_entries ignores it).
    const char* unusable_header = nullptr;

    // An entry of the image's own: a multiboot header, a PVH note or a bzImage header.
    [[nodiscard]] bool offers_entry() const { return multiboot1 || multiboot2 || pvh || linux_bzimage; }

    [[nodiscard]] bool supports(protocol p) const {
        switch (p) {
        case protocol::multiboot1: return multiboot1;
        case protocol::multiboot2: return multiboot2;
        case protocol::pvh: return pvh;
        case protocol::linux_bzimage: return linux_bzimage;
        case protocol::real_mode:  // any flat bytes: real_mode_image_problem decides
        case protocol::none: return false;
        }
        return false;
    }
    // The loader's preference: pvh, multiboot2, multiboot1, linux; none if none is offered.
    [[nodiscard]] protocol first_offered() const {
        for (protocol p : {protocol::pvh, protocol::multiboot2, protocol::multiboot1, protocol::linux_bzimage})
            if (supports(p)) return p;
        return protocol::none;
    }
};

// What `image` offers; fails naming what is malformed, or when it offers no entry.
[[nodiscard]] result<image_info> probe(std::span<const std::byte> image);
// The same, except that an image without an entry of its own (a flat image, an ELF
// without multiboot header or PVH note) is no failure: offers_entry() is false. A
// multiboot header that cannot be loaded (unusable_header) is then no entry either.
[[nodiscard]] result<image_info> probe_entries(std::span<const std::byte> image);

// ---- Loading ----

struct module_spec {
    std::span<const std::byte> bytes;
    std::string_view cmdline;
};

struct memory_range {
    std::uint64_t base;
    std::uint64_t size;
    boot::region_type type;
};

struct boot_config {
    static constexpr std::size_t max_memory_map = 64;
    static constexpr std::size_t max_modules = 16;

    std::span<const memory_range> memory_map;  // what the guest is told; RAM = available
    std::string_view cmdline;
    std::span<const module_spec> modules;  // Linux: at most one, the initrd
    std::uint64_t rsdp = 0;                // guest-physical RSDP (dev/acpi_tables), 0 if none
    protocol use = protocol::none;         // none: the first the image supports of
                                           // pvh, multiboot2, multiboot1, linux;
                                           // real_mode only when asked for
    bool linux_entry32 = false;            // take the 32-bit entry even if 64 is offered
    // probe_entries(image) if the caller has it (vm::choose_entry): with `use` given, the
    // image is not probed again.
    const image_info* probed = nullptr;
};

enum class cpu_mode : std::uint8_t { real16, protected32, long64 };

// A segment register as the cpu layer loads it, hidden part included. access_rights is
// in the VMCS layout (type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15); SVM's
// attrib is (ar & 0xff) | ((ar >> 4) & 0xf00).
struct segment_state {
    std::uint16_t selector;
    std::uint64_t base;
    std::uint32_t limit;
    std::uint16_t access_rights;
};

// The state the first vCPU starts in. The protocols define no stack (rsp 0), interrupts
// are off, TR/LDTR are the cpu layer's (any usable busy TSS; LDTR unusable); the GDT
// behind gdt_base holds the code/data descriptors below. real16: segments are real-mode
// ones (base = selector * 16, limit 0xffff), no GDT.
struct vcpu_state {
    cpu_mode mode;
    std::uint64_t rip = 0, rsp = 0, rflags = 0x2;
    std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rbp = 0;
    std::uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
    segment_state cs{}, ds{};  // ds also for es, ss, fs, gs
    std::uint64_t gdt_base = 0;
    std::uint16_t gdt_limit = 0;
};

struct placed_module {
    std::uint64_t base;
    std::uint64_t size;
};

struct load_result {
    protocol used = protocol::none;
    vcpu_state cpu{};
    std::uint64_t boot_info = 0;  // mb info / start_info / zero page
    std::uint64_t kernel_start = 0, kernel_end = 0;
    placed_module modules[boot_config::max_modules]{};
    std::size_t module_count = 0;
};

// Guest memory as the loader writes it; hv::mmu::guest_memory satisfies it.
template <class G>
concept guest_target = requires(G& g, std::uint64_t gpa, const void* src, void* dst, std::size_t n) {
    { g.write(gpa, src, n) } -> std::same_as<status>;
    { g.read(gpa, dst, n) } -> std::same_as<status>;
};

struct memory_target {
    status (*write)(void* ctx, std::uint64_t gpa, const void* src, std::size_t n);
    status (*read)(void* ctx, std::uint64_t gpa, void* dst, std::size_t n);
    void* ctx;
    // Optional: makes [gpa, +n) read as zeros, e.g. without backing first-touch RAM that
    // reads as zeros anyway (a kernel's .bss). nullptr: zeros are written.
    status (*zero)(void* ctx, std::uint64_t gpa, std::size_t n) = nullptr;
};

template <guest_target G>
memory_target make_target(G& g) {
    memory_target t{[](void* c, std::uint64_t gpa, const void* src, std::size_t n) { return static_cast<G*>(c)->write(gpa, src, n); },
                    [](void* c, std::uint64_t gpa, void* dst, std::size_t n) { return static_cast<G*>(c)->read(gpa, dst, n); },
                    &g};
    if constexpr (requires(G& m, std::uint64_t gpa, std::size_t n) {
                      { m.zero(gpa, n) } -> std::same_as<status>;
                  })
        t.zero = [](void* c, std::uint64_t gpa, std::size_t n) { return static_cast<G*>(c)->zero(gpa, n); };
    return t;
}

[[nodiscard]] result<load_result> load(const memory_target& guest, std::span<const std::byte> image,
                                       const boot_config& config);

template <guest_target G>
[[nodiscard]] result<load_result> load(G& guest, std::span<const std::byte> image, const boot_config& config) {
    return load(make_target(guest), image, config);
}

} // namespace hv::loader
