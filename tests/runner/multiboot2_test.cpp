#include "toolchain/hvimage/multiboot2.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

namespace {

using hv::image::check_kernel;

constexpr std::uint32_t magic = 0xe85250d6;
constexpr std::uint32_t header_length = 24;  // fixed part plus the end tag

// A file that starts like an x86-64 ELF64 executable, zero elsewhere.
std::vector<std::byte> elf64(std::size_t size = 8192) {
    std::vector<std::byte> file(size);
    const unsigned char ident[] = {0x7f, 'E', 'L', 'F', 2 /*64-bit*/, 1 /*LE*/, 1};
    std::memcpy(file.data(), ident, sizeof ident);
    const std::uint16_t x86_64 = 62;
    std::memcpy(file.data() + 18, &x86_64, sizeof x86_64);
    return file;
}

void put_header(std::vector<std::byte>& file, std::size_t at, std::uint32_t arch = 0,
                std::uint32_t length = header_length, std::uint32_t checksum_error = 0) {
    const std::uint32_t fields[] = {magic, arch, length, -(magic + arch + length) + checksum_error,
                                    0,     8};
    std::memcpy(file.data() + at, fields, sizeof fields);
}

}  // namespace

TEST_CASE("finds a valid header at any 8-byte boundary in the first 32 KiB") {
    for (std::size_t at : {std::size_t{64}, std::size_t{0x1000}, std::size_t{32 * 1024 - 24}}) {
        auto file = elf64(64 * 1024);
        put_header(file, at);
        auto found = check_kernel(file);
        REQUIRE(found.ok());
        CHECK(*found == at);
    }
}

TEST_CASE("rejects headers GRUB would not find or accept") {
    auto misaligned = elf64();
    put_header(misaligned, 0x104);
    CHECK(check_kernel(misaligned).status().message() ==
          "no multiboot2 header (8-byte aligned, in the first 32 KiB)");

    auto too_late = elf64(64 * 1024);
    put_header(too_late, 32 * 1024);
    CHECK_FALSE(check_kernel(too_late).ok());

    auto bad_sum = elf64();
    put_header(bad_sum, 0x1000, 0, header_length, 1);
    CHECK(check_kernel(bad_sum).status().message() ==
          "multiboot2 magic found but its checksum is wrong");

    auto mips = elf64();
    put_header(mips, 0x1000, 4);
    CHECK(check_kernel(mips).status().message() ==
          "multiboot2 header at 0x1000: architecture 4, expected 0 (i386)");

    auto short_header = elf64();
    put_header(short_header, 0x1000, 0, 16);
    CHECK(check_kernel(short_header).status().message() ==
          "multiboot2 header at 0x1000: bad header_length 16");
}

TEST_CASE("the header must sit in an x86-64 ELF64 file") {
    auto file = elf64();
    put_header(file, 0x1000);
    REQUIRE(check_kernel(file).ok());

    auto not_elf = file;
    not_elf[0] = std::byte{0};
    CHECK(check_kernel(not_elf).status().message() == "not an ELF file");

    auto elf32 = file;
    elf32[4] = std::byte{1};
    CHECK(check_kernel(elf32).status().message() == "not an ELF64 file");

    auto aarch64 = file;
    aarch64[18] = std::byte{183};
    CHECK(check_kernel(aarch64).status().message() == "ELF machine is 183, not x86-64 (62)");

    CHECK_FALSE(check_kernel(std::span<const std::byte>{}).ok());
}
