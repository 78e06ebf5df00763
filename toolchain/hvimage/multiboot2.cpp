#include "toolchain/hvimage/multiboot2.hpp"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace hv::image {

namespace {

constexpr std::size_t elf_class = 4;
constexpr std::size_t elf_data = 5;
constexpr std::size_t elf_machine = 18;  // e_machine, 16 bits
constexpr std::size_t elf64_header_size = 64;
constexpr std::uint8_t elfclass64 = 2;
constexpr std::uint8_t elfdata2lsb = 1;
constexpr std::uint16_t em_x86_64 = 62;

// magic, architecture, header_length, checksum
constexpr std::size_t multiboot2_fixed_size = 16;

template <typename T>
T load_le(std::span<const std::byte> file, std::size_t offset) {
    T value;
    std::memcpy(&value, file.data() + offset, sizeof value);  // host is little-endian x86
    return value;
}

absl::Status check_elf64_x86_64(std::span<const std::byte> file) {
    static constexpr unsigned char elf_magic[] = {0x7f, 'E', 'L', 'F'};
    if (file.size() < elf64_header_size ||
        std::memcmp(file.data(), elf_magic, sizeof elf_magic) != 0) {
        return absl::InvalidArgumentError("not an ELF file");
    }
    if (std::to_integer<std::uint8_t>(file[elf_class]) != elfclass64) {
        return absl::InvalidArgumentError("not an ELF64 file");
    }
    if (std::to_integer<std::uint8_t>(file[elf_data]) != elfdata2lsb) {
        return absl::InvalidArgumentError("not a little-endian ELF file");
    }
    if (std::uint16_t machine = load_le<std::uint16_t>(file, elf_machine); machine != em_x86_64) {
        return absl::InvalidArgumentError(
            absl::StrFormat("ELF machine is %u, not x86-64 (%u)", machine, em_x86_64));
    }
    return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::size_t> check_kernel(std::span<const std::byte> file) {
    if (absl::Status elf = check_elf64_x86_64(file); !elf.ok()) return elf;

    const std::size_t limit = std::min(file.size(), multiboot2_search_limit);
    bool bad_checksum_seen = false;
    for (std::size_t at = 0; at + multiboot2_fixed_size <= limit; at += multiboot2_alignment) {
        if (load_le<std::uint32_t>(file, at) != multiboot2_magic) continue;
        const auto arch = load_le<std::uint32_t>(file, at + 4);
        const auto length = load_le<std::uint32_t>(file, at + 8);
        const auto checksum = load_le<std::uint32_t>(file, at + 12);
        if (static_cast<std::uint32_t>(multiboot2_magic + arch + length + checksum) != 0) {
            bad_checksum_seen = true;  // maybe just data that looks like the magic
            continue;
        }
        if (arch != multiboot2_arch_i386) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "multiboot2 header at %#x: architecture %u, expected 0 (i386)", at, arch));
        }
        if (length < multiboot2_fixed_size + 8 || length > file.size() - at) {
            return absl::InvalidArgumentError(
                absl::StrFormat("multiboot2 header at %#x: bad header_length %u", at, length));
        }
        return at;
    }
    return absl::InvalidArgumentError(
        bad_checksum_seen ? "multiboot2 magic found but its checksum is wrong"
                          : "no multiboot2 header (8-byte aligned, in the first 32 KiB)");
}

}  // namespace hv::image
