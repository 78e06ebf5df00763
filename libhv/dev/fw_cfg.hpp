// QEMU-compatible fw_cfg, traditional I/O interface: 16-bit selector at 0x510, data
// byte at 0x511 (sequential reads; past the end reads 0). No DMA interface (ID bit 1
// clear), no writes. Items point at caller-owned bytes, which must outlive this.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include "libhv/core/result.hpp"
#include "libhv/dev/bus.hpp"

namespace hv::dev {

enum class fw_cfg_key : std::uint16_t {
    signature = 0x0000, id = 0x0001, uuid = 0x0002, ram_size = 0x0003, nographic = 0x0004,
    nb_cpus = 0x0005, max_cpus = 0x000f, cmdline_size = 0x0014, cmdline_data = 0x0015, file_dir = 0x0019,
    file_first = 0x0020,
};

#pragma pack(push, 1)
// One entry of the file directory, all fields big-endian.
struct fw_cfg_file {
    std::uint32_t size;
    std::uint16_t select;
    std::uint16_t reserved;
    char name[56];
};
#pragma pack(pop)
static_assert(sizeof(fw_cfg_file) == 64);

class fw_cfg final : public io_device {
public:
    static constexpr std::size_t max_files = 16;
    static constexpr std::size_t name_size = 56;

    fw_cfg();
    void set_ram_size(std::uint64_t bytes);
    void set_cpus(std::uint16_t present, std::uint16_t max);
    // The kernel command line, as QEMU's -append: cmdline_size = its length + 1 (0 when
    // none), cmdline_data = its bytes and a NUL. Caller-owned, like a file's bytes.
    void set_cmdline(std::string_view cmdline) { cmdline_ = cmdline; }
    // Adds a file; returns its selector key.
    result<std::uint16_t> add_file(std::string_view name, std::span<const std::uint8_t> data);

    std::uint64_t read(std::uint64_t offset, unsigned size) override;
    void write(std::uint64_t offset, unsigned size, std::uint64_t value) override;

    [[nodiscard]] std::uint16_t selector() const { return selector_; }

private:
    std::uint8_t item_byte(std::uint16_t key, std::uint32_t offset) const;

    struct file {
        char name[name_size];
        std::span<const std::uint8_t> data;
    };
    std::array<file, max_files> files_{};
    std::size_t file_count_ = 0;
    std::uint8_t ram_size_[8]{};
    std::uint8_t nb_cpus_[2]{};
    std::uint8_t max_cpus_[2]{};
    std::string_view cmdline_{};
    std::uint16_t selector_ = 0;
    std::uint32_t offset_ = 0;
};

} // namespace hv::dev
