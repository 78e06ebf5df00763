#include <doctest/doctest.h>
#include <algorithm>
#include <string>
#include <vector>
#include "fakes.hpp"
#include "libhv/dev/ide.hpp"

using namespace hv::dev;

namespace {
struct ide_rig {
    std::vector<std::uint8_t> image;
    ide_controller c;
    hvtest::irq_recorder irq;
    explicit ide_rig(std::size_t sectors = 64) : image(sectors * 512), c{std::span<std::uint8_t>(image)} {
        for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i * 7 + i / 512);
        c.connect_irq(&irq);
    }
    std::uint8_t rd(unsigned r) { return static_cast<std::uint8_t>(c.command_block().read(r, 1)); }
    void wr(unsigned r, std::uint8_t v) { c.command_block().write(r, 1, v); }
    std::uint8_t alt() { return static_cast<std::uint8_t>(c.control_block().read(0, 1)); }
    bool line() { return irq.levels[ata::irq]; }
    void select_lba(std::uint32_t lba, std::uint8_t count) {
        wr(ata::device, static_cast<std::uint8_t>(ata::dev_lba | (lba >> 24 & 0x0f)));
        wr(ata::sector_count, count);
        wr(ata::lba_low, static_cast<std::uint8_t>(lba));
        wr(ata::lba_mid, static_cast<std::uint8_t>(lba >> 8));
        wr(ata::lba_high, static_cast<std::uint8_t>(lba >> 16));
    }
    std::vector<std::uint8_t> read_sector_data(unsigned access = 2) {
        std::vector<std::uint8_t> out;
        for (unsigned i = 0; i < 512 / access; ++i) {
            const auto v = c.command_block().read(ata::data, access);
            for (unsigned b = 0; b < access; ++b) out.push_back(static_cast<std::uint8_t>(v >> (8 * b)));
        }
        return out;
    }
};
} // namespace

TEST_CASE("ide: PCI identity of a compatibility-mode PIIX IDE function") {
    ide_rig r;
    CHECK(r.c.config_read(0x00, 2) == 0x8086);
    CHECK(r.c.config_read(0x02, 2) == 0x7010);
    CHECK((r.c.config_read(0x08, 4) >> 8) == 0x010100);  // class 01, subclass 01, prog-if 00
    CHECK(r.c.config_read(0x3c, 1) == 14);
    r.c.config_write(0x02, 2, 0x1234);  // read-only
    CHECK(r.c.config_read(0x02, 2) == 0x7010);
}

TEST_CASE("ide: reset state, signature and the absent slave") {
    ide_rig r;
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.rd(ata::sector_count) == 1);
    CHECK(r.rd(ata::lba_low) == 1);
    CHECK(r.rd(ata::lba_mid) == 0);
    r.wr(ata::device, ata::dev_slave);
    CHECK(r.rd(ata::status_command) == 0);
    CHECK(r.alt() == 0);
    r.wr(ata::status_command, ata::identify_device);  // nobody answers
    CHECK_FALSE(r.line());
    CHECK(r.c.stats().commands == 0);
    ide_controller none;  // no disk at all: a floating bus reads 0 status
    CHECK(static_cast<std::uint8_t>(none.command_block().read(ata::status_command, 1)) == 0);
}

TEST_CASE("ide: IDENTIFY DEVICE gives geometry, LBA28 capacity, strings and a checksum") {
    ide_rig r(1000);
    r.wr(ata::device, 0);
    r.wr(ata::status_command, ata::identify_device);
    CHECK(r.line());
    CHECK(r.alt() == (ata::drdy | ata::dsc | ata::drq));
    CHECK(r.line());                     // the alternate status leaves the IRQ alone
    CHECK((r.rd(ata::status_command) & ata::drq) != 0);
    CHECK_FALSE(r.line());               // the status register acknowledges it
    const auto bytes = r.read_sector_data();
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    auto word = [&](unsigned i) { return static_cast<std::uint16_t>(bytes[2 * i] | bytes[2 * i + 1] << 8); };
    CHECK(word(0) == 0x0040);
    CHECK((word(49) & 0x200) != 0);
    CHECK((word(60) | std::uint32_t{word(61)} << 16) == 1000);
    CHECK(word(3) == 16);
    CHECK(word(6) == 63);
    std::string model;
    for (unsigned i = 27; i < 47; ++i) {
        model.push_back(static_cast<char>(word(i) >> 8));
        model.push_back(static_cast<char>(word(i) & 0xff));
    }
    CHECK(model.starts_with("libhv memory disk   "));
    std::uint8_t sum = 0;
    for (auto b : bytes) sum = static_cast<std::uint8_t>(sum + b);
    CHECK((word(255) & 0xff) == 0xa5);
    CHECK(sum == 0);
    CHECK(r.read_sector_data()[0] == 0xff);  // no data phase any more: the bus floats
}

TEST_CASE("ide: READ SECTORS with LBA28, 16- and 32-bit data, one IRQ per sector") {
    ide_rig r;
    r.select_lba(5, 2);
    r.wr(ata::status_command, ata::read_sectors);
    CHECK(r.line());
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc | ata::drq));
    const auto first = r.read_sector_data(2);
    CHECK(std::equal(first.begin(), first.end(), r.image.begin() + 5 * 512));
    CHECK(r.line());  // the second sector is ready
    CHECK((r.rd(ata::status_command) & ata::drq) != 0);
    const auto second = r.read_sector_data(4);
    CHECK(std::equal(second.begin(), second.end(), r.image.begin() + 6 * 512));
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.irq.rising[ata::irq] == 2);
    CHECK(r.c.stats().sectors_read == 2);
}

TEST_CASE("ide: WRITE SECTORS reaches the image; the IRQ comes after each sector") {
    ide_rig r;
    r.select_lba(63, 1);
    r.wr(ata::status_command, ata::write_sectors);
    CHECK_FALSE(r.line());  // the first data phase starts without an interrupt
    CHECK(r.alt() == (ata::drdy | ata::dsc | ata::drq));
    for (unsigned i = 0; i < 256; ++i) r.c.command_block().write(ata::data, 2, 0xbe00 + i);
    CHECK(r.line());
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.image[63 * 512] == 0x00);
    CHECK(r.image[63 * 512 + 1] == 0xbe);
    CHECK(r.image[63 * 512 + 510] == 0xff);
    // and reads back
    r.select_lba(63, 1);
    r.wr(ata::status_command, ata::read_sectors_no_retry);
    const auto back = r.read_sector_data();
    CHECK(back[2] == 0x01);
    CHECK(back[3] == 0xbe);
    CHECK(r.c.stats().sectors_written == 1);
}

TEST_CASE("ide: sector count 0 means 256 sectors; LBA bits 24-27 come from the device register") {
    ide_rig r(300);
    r.select_lba(50, 0);
    r.wr(ata::status_command, ata::read_sectors);
    CHECK(r.rd(ata::error_features) == ata::idnf);  // 50 + 256 > 300
    r.select_lba(40, 0);
    r.wr(ata::status_command, ata::read_sectors);
    CHECK((r.rd(ata::status_command) & ata::drq) != 0);
    for (unsigned s = 0; s < 256; ++s) (void)r.read_sector_data(4);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.c.stats().sectors_read == 256);
    r.select_lba(1u << 24, 1);  // high nibble set: far beyond the disk
    r.wr(ata::status_command, ata::read_sectors);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc | ata::err));
    CHECK(r.rd(ata::error_features) == ata::idnf);
}

TEST_CASE("ide: errors: out-of-range LBA, CHS addressing, unknown commands") {
    ide_rig r;
    r.select_lba(64, 1);  // one past the last sector
    r.wr(ata::status_command, ata::write_sectors);
    CHECK(r.line());
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc | ata::err));
    CHECK(r.rd(ata::error_features) == ata::idnf);
    CHECK(r.c.stats().out_of_range == 1);
    const auto before = r.image;
    r.c.command_block().write(ata::data, 2, 0x1234);  // no data phase: dropped
    CHECK(r.image == before);

    r.wr(ata::device, 0);  // CHS
    r.wr(ata::status_command, ata::read_sectors);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc | ata::err));
    CHECK(r.rd(ata::error_features) == ata::abrt);

    r.wr(ata::status_command, 0xc8);  // READ DMA: no bus master here
    CHECK(r.rd(ata::error_features) == ata::abrt);
    r.wr(ata::status_command, 0x24);  // READ SECTORS EXT: no LBA48
    CHECK(r.rd(ata::error_features) == ata::abrt);
    CHECK(r.c.stats().aborted == 3);

    r.wr(ata::status_command, ata::flush_cache);  // a good command clears the error
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.rd(ata::error_features) == 0);
}

TEST_CASE("ide: nIEN masks the IRQ; SRST resets the device") {
    ide_rig r;
    r.c.control_block().write(0, 1, ata::nien);
    r.select_lba(0, 1);
    r.wr(ata::status_command, ata::read_sectors);
    CHECK_FALSE(r.line());
    CHECK((r.alt() & ata::drq) != 0);
    r.c.control_block().write(0, 1, ata::srst | ata::nien);
    r.c.control_block().write(0, 1, 0);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(r.rd(ata::sector_count) == 1);
    CHECK(r.rd(ata::lba_low) == 1);
    CHECK(r.read_sector_data()[0] == 0xff);  // the read was cancelled
}

TEST_CASE("ide: data-port bursts (REP INS/OUTS) stop at each sector's end, as single accesses") {
    ide_rig r;
    io_device& data = r.c.command_block();
    CHECK(data.read_block(ata::data, 2, nullptr, 0) == 0);  // no data phase: none taken
    r.select_lba(3, 2);
    r.wr(ata::status_command, ata::write_sectors);
    std::vector<std::uint8_t> out(1024);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i * 13 + 1);
    CHECK(data.write_block(ata::status_command, 1, out.data(), 1) == 0);  // bursts are the data port's only
    CHECK(data.write_block(ata::data, 2, out.data(), 100) == 100);
    CHECK(data.write_block(ata::data, 2, out.data() + 200, 400) == 156);  // the first sector's end
    CHECK(r.line());
    CHECK(r.c.stats().sectors_written == 1);
    CHECK(data.write_block(ata::data, 4, out.data() + 512, 1000) == 128);
    CHECK(r.c.stats().sectors_written == 2);
    CHECK(r.alt() == (ata::drdy | ata::dsc));
    CHECK(data.write_block(ata::data, 2, out.data(), 1) == 0);  // the command is over
    CHECK(std::equal(out.begin(), out.end(), r.image.begin() + 3 * 512));

    r.select_lba(3, 2);
    r.wr(ata::status_command, ata::read_sectors);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc | ata::drq));
    std::vector<std::uint8_t> in(1024);
    CHECK(data.read_block(ata::data, 2, in.data(), 1) == 1);
    (void)data.read(ata::data, 2);  // a single access between bursts
    in[2] = r.image[3 * 512 + 2];
    in[3] = r.image[3 * 512 + 3];
    CHECK(data.read_block(ata::data, 2, in.data() + 4, 1000) == 254);
    CHECK(r.line());  // the second sector's data phase
    CHECK(r.c.stats().sectors_read == 2);
    CHECK(data.read_block(ata::data, 4, in.data() + 512, 1000) == 128);
    CHECK(r.rd(ata::status_command) == (ata::drdy | ata::dsc));
    CHECK(std::equal(in.begin(), in.end(), r.image.begin() + 3 * 512));
    CHECK(data.read_block(ata::data, 2, in.data(), 1) == 0);
}
