// What hvimage checks in a kernel before it builds an image: GRUB's multiboot2 loader
// needs an x86-64 ELF64 file with a valid header in its first 32 KiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace hv::image {

inline constexpr std::uint32_t multiboot2_magic = 0xe85250d6;
inline constexpr std::uint32_t multiboot2_arch_i386 = 0;
inline constexpr std::size_t multiboot2_search_limit = 32 * 1024;
inline constexpr std::size_t multiboot2_alignment = 8;

// Offset of the multiboot2 header in `file`, or why GRUB would not boot it.
[[nodiscard]] absl::StatusOr<std::size_t> check_kernel(std::span<const std::byte> file);

}  // namespace hv::image
