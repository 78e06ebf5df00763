// Starting a guest kernel: find it among the hypervisor's boot modules, give the guest
// PC-shaped RAM, load the kernel with libhv/loader (multiboot1/2, PVH, Linux) and set
// vCPU 0 to the state the boot protocol defines.
//
//   auto m = vm::find_module(ctx.boot, "guest");        // GRUB: module2 /guest guest run=...
//   HV_TRY(vm::add_pc_ram(g, 64 << 20));
//   auto loaded = vm::load_kernel(g, {m->bytes, m->cmdline});
//
// Metal only (module bytes are read through the identity map).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/result.hpp"
#include "libhv/cpu/state.hpp"
#include "libhv/loader/loader.hpp"
#include "libhv/vm/guest.hpp"

namespace hv::vm {

struct boot_module {
    std::span<const std::byte> bytes;
    std::string_view cmdline;  // the module string after its name
};
// The module whose string starts with the word `name`.
[[nodiscard]] std::optional<boot_module> find_module(const boot::info& info, std::string_view name);

// RAM where a PC has it: [0, 640 KiB) and [1 MiB, ram_bytes); the legacy VGA/BIOS
// window between them stays a hole (open bus) unless a device claims it.
inline constexpr std::uint64_t low_ram_end = 0xa0000;
inline constexpr std::uint64_t high_ram_start = 0x100000;
// first_touch: each page is allocated when first used (mmu::ram_backing).
[[nodiscard]] status add_pc_ram(guest& g, std::uint64_t ram_bytes,
                                mmu::ram_backing backing = mmu::ram_backing::up_front);

struct kernel_spec {
    std::span<const std::byte> image;
    std::string_view cmdline;
    std::span<const loader::module_spec> modules = {};
    loader::protocol use = loader::protocol::none;  // none: the loader's preference
    std::uint64_t rsdp = 0;                         // guest-physical, 0: no ACPI
    const loader::image_info* probed = nullptr;     // see loader::boot_config::probed
};

// Loads `k` into g's RAM (the memory map given to the kernel is g's RAM regions) and
// sets vCPU 0's state; other vCPUs wait for INIT/SIPI.
[[nodiscard]] result<loader::load_result> load_kernel(guest& g, const kernel_spec& k);

// The vCPU state a boot protocol's entry expects (loader::vcpu_state → cpu::guest_state).
[[nodiscard]] cpu::guest_state entry_state(const loader::vcpu_state& s);

} // namespace hv::vm
