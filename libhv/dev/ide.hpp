// A legacy IDE (ATA) controller as a PC's chipset has it: one PCI function in
// compatibility mode (Intel PIIX-style, class 01:01, prog-if 0x00, no bus-master DMA),
// the primary channel's command block at 0x1f0-0x1f7 and control block at 0x3f6, IRQ 14,
// and one disk (the master) backed by a memory image. PIO only:
//
//   IDENTIFY DEVICE (0xec), READ SECTORS (0x20/0x21), WRITE SECTORS (0x30/0x31) with
//   LBA28 addressing, SET FEATURES (0xef), INITIALIZE DEVICE PARAMETERS (0x91),
//   FLUSH CACHE (0xe7) and CHECK POWER MODE (0xe5), which do nothing a memory disk needs.
//
// Anything else, CHS addressing, and commands to the absent slave end with ERR and
// ABRT; a transfer beyond the disk's last sector ends with ERR and IDNF. Commands run to
// completion at once (BSY is never seen): a read fills the 512-byte buffer and sets DRQ,
// each sector's data phase and a command's end raise IRQ 14 unless nIEN is set, and
// reading the status register (not the alternate status) lowers it.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include "libhv/dev/bus.hpp"
#include "libhv/dev/irq.hpp"
#include "libhv/dev/pci.hpp"

namespace hv::dev {

namespace ata {
inline constexpr std::uint16_t command_block = 0x1f0, control_block = 0x3f6;
inline constexpr unsigned irq = 14;
inline constexpr std::size_t sector_size = 512;
inline constexpr std::uint64_t lba28_limit = 1ull << 28;

enum reg : std::uint8_t {
    data = 0, error_features = 1, sector_count = 2, lba_low = 3, lba_mid = 4, lba_high = 5, device = 6,
    status_command = 7,
};
enum status_bit : std::uint8_t { err = 0x01, drq = 0x08, dsc = 0x10, df = 0x20, drdy = 0x40, bsy = 0x80 };
enum error_bit : std::uint8_t { abrt = 0x04, idnf = 0x10 };
enum device_bit : std::uint8_t { dev_slave = 0x10, dev_lba = 0x40, dev_obsolete = 0xa0 };
enum control_bit : std::uint8_t { nien = 0x02, srst = 0x04 };
enum command : std::uint8_t {
    read_sectors = 0x20, read_sectors_no_retry = 0x21, write_sectors = 0x30, write_sectors_no_retry = 0x31,
    initialize_device_parameters = 0x91, check_power_mode = 0xe5, flush_cache = 0xe7, identify_device = 0xec,
    set_features = 0xef,
};
} // namespace ata

struct ide_stats {
    std::uint64_t commands = 0, sectors_read = 0, sectors_written = 0, aborted = 0, out_of_range = 0;
};

class ide_controller final : public pci_config_space {
public:
    // Intel 82371SB (PIIX3) IDE's identity.
    static constexpr std::uint16_t vendor = 0x8086, device_id = 0x7010;

    // `disk`: the master's image; its size is cut to whole sectors (empty: no disk).
    explicit ide_controller(std::span<std::uint8_t> disk = {});

    void connect_irq(irq_sink* sink, unsigned line = ata::irq) { irq_.connect(sink, line); }
    // The two register windows, each mapped by whoever owns the port bus:
    // command_block() at 0x1f0 (8 ports; the data port also takes 16- and 32-bit
    // accesses), control_block() at 0x3f6 (1 port).
    io_device& command_block() { return command_; }
    io_device& control_block() { return control_window_; }

    [[nodiscard]] std::uint64_t sectors() const { return disk_.size() / ata::sector_size; }
    [[nodiscard]] bool irq_level() const { return irq_.level(); }
    [[nodiscard]] const ide_stats& stats() const { return stats_; }
    // The 256 IDENTIFY DEVICE words of the master.
    [[nodiscard]] std::array<std::uint16_t, 256> identify() const;

private:
    struct command_window final : io_device {
        ide_controller* c;
        explicit command_window(ide_controller* self) : c{self} {}
        std::uint64_t read(std::uint64_t offset, unsigned size) override { return c->read_command(offset, size); }
        void write(std::uint64_t offset, unsigned size, std::uint64_t v) override { c->write_command(offset, size, v); }
        std::size_t read_block(std::uint64_t offset, unsigned size, void* dst, std::size_t count) override {
            return offset == ata::data ? c->data_read_block(size, dst, count) : 0;
        }
        std::size_t write_block(std::uint64_t offset, unsigned size, const void* src, std::size_t count) override {
            return offset == ata::data ? c->data_write_block(size, src, count) : 0;
        }
    };
    struct control_window final : io_device {
        ide_controller* c;
        explicit control_window(ide_controller* self) : c{self} {}
        std::uint64_t read(std::uint64_t, unsigned) override { return c->alternate_status(); }
        void write(std::uint64_t, unsigned, std::uint64_t v) override { c->write_control(static_cast<std::uint8_t>(v)); }
    };
    enum class phase : std::uint8_t { idle, data_in, data_out };

    std::uint64_t read_command(std::uint64_t offset, unsigned size);
    void write_command(std::uint64_t offset, unsigned size, std::uint64_t value);
    [[nodiscard]] std::uint8_t alternate_status() const;
    void write_control(std::uint8_t value);
    [[nodiscard]] bool master_selected() const { return !(device_ & ata::dev_slave); }

    void execute(std::uint8_t command);
    void start_transfer(bool write);
    void load_sector();
    void data_read(unsigned bytes, std::uint64_t& value);
    void data_write(unsigned bytes, std::uint64_t value);
    std::size_t data_read_block(unsigned bytes, void* dst, std::size_t count);
    std::size_t data_write_block(unsigned bytes, const void* src, std::size_t count);
    void sector_done();
    void complete(std::uint8_t error = 0);
    void interrupt();
    void reset();

    std::span<std::uint8_t> disk_;
    command_window command_{this};
    control_window control_window_{this};
    irq_line irq_;
    ide_stats stats_;

    std::array<std::uint8_t, ata::sector_size> buffer_{};
    std::size_t pos_ = 0;
    phase phase_ = phase::idle;
    std::uint64_t lba_ = 0;       // the sector in the buffer
    std::uint32_t remaining_ = 0; // sectors of the command left, this one included
    std::uint8_t status_ = 0, error_ = 0, features_ = 0, count_ = 0, lba_low_ = 0, lba_mid_ = 0, lba_high_ = 0;
    std::uint8_t device_ = ata::dev_obsolete, control_ = 0;  // device control (nIEN, SRST)
};

} // namespace hv::dev
