#include "libhv/dev/ide.hpp"

namespace hv::dev {

namespace {
// ATA strings are space-padded and each word holds two characters, the first in its
// high byte.
void put_string(std::array<std::uint16_t, 256>& w, unsigned first_word, unsigned words, const char* s) {
    bool ended = false;
    for (unsigned i = 0; i < 2 * words; ++i) {
        char ch = ' ';
        if (!ended && s[i] != '\0') ch = s[i];
        else ended = true;
        auto& word = w[first_word + i / 2];
        word = static_cast<std::uint16_t>(i % 2 == 0 ? (word & 0x00ff) | std::uint8_t(ch) << 8 : (word & 0xff00) | std::uint8_t(ch));
    }
}
} // namespace

ide_controller::ide_controller(std::span<std::uint8_t> disk)
    : disk_{disk.first(disk.size() / ata::sector_size * ata::sector_size)} {
    set16(pci_cfg::vendor_id, vendor);
    set16(pci_cfg::device_id, device_id);
    set8(pci_cfg::class_code, 0x01);  // mass storage
    set8(pci_cfg::subclass, 0x01);    // IDE
    set8(pci_cfg::prog_if, 0x00);     // both channels in compatibility mode, no bus master
    set16(pci_cfg::command, 0x0001);  // I/O space
    set16(pci_cfg::status, 0x0280);
    set8(pci_cfg::interrupt_line, ata::irq);
    set_writable(static_cast<std::uint8_t>(pci_cfg::command), 0x05);
    set_writable(static_cast<std::uint8_t>(pci_cfg::interrupt_line), 0xff);
    reset();
}

void ide_controller::reset() {
    // The device signature of an ATA (not ATAPI) device.
    count_ = 1;
    lba_low_ = 1;
    lba_mid_ = lba_high_ = 0;
    device_ = ata::dev_obsolete;
    error_ = 0x01;  // diagnostics passed
    features_ = 0;
    phase_ = phase::idle;
    pos_ = 0;
    remaining_ = 0;
    status_ = disk_.empty() ? 0 : ata::drdy | ata::dsc;
    irq_.lower();
}

std::array<std::uint16_t, 256> ide_controller::identify() const {
    std::array<std::uint16_t, 256> w{};
    const std::uint64_t n = sectors() < ata::lba28_limit ? sectors() : ata::lba28_limit - 1;
    // A CHS view for old software: 16 heads, 63 sectors per track.
    constexpr std::uint64_t heads = 16, per_track = 63;
    const std::uint64_t cylinders = n / (heads * per_track) < 16383 ? n / (heads * per_track) : 16383;
    w[0] = 0x0040;  // fixed device, not removable
    w[1] = static_cast<std::uint16_t>(cylinders);
    w[3] = heads;
    w[6] = per_track;
    put_string(w, 10, 10, "LIBHV-IDE-0001");  // serial number
    put_string(w, 23, 4, "1.0");               // firmware revision
    put_string(w, 27, 20, "libhv memory disk");  // model number
    w[47] = 0x8001;               // READ/WRITE MULTIPLE: at most 1 sector
    w[49] = 1u << 9;              // LBA supported (no DMA)
    w[53] = 0x0001;               // words 54-58 valid
    w[54] = w[1];
    w[55] = w[3];
    w[56] = w[6];
    const std::uint64_t chs = cylinders * heads * per_track;
    w[57] = static_cast<std::uint16_t>(chs);
    w[58] = static_cast<std::uint16_t>(chs >> 16);
    w[60] = static_cast<std::uint16_t>(n);  // LBA28 sectors
    w[61] = static_cast<std::uint16_t>(n >> 16);
    w[80] = 0x007e;               // ATA-1 .. ATA-6
    w[82] = 0x4000;               // words 82-84 and 85-87: bit 14 is one, bit 15 zero
    w[83] = 0x4000 | 1u << 12;    // FLUSH CACHE
    w[84] = 0x4000;
    w[85] = 0x4000;
    w[86] = 0x0000 | 1u << 12;
    w[87] = 0x4000;
    // Integrity word: signature 0xa5 and a checksum making the 512 bytes sum to 0.
    w[255] = 0x00a5;
    std::uint8_t sum = 0;
    for (unsigned i = 0; i < 255; ++i) sum = static_cast<std::uint8_t>(sum + (w[i] & 0xff) + (w[i] >> 8));
    sum = static_cast<std::uint8_t>(sum + 0xa5);
    w[255] = static_cast<std::uint16_t>(0x00a5 | std::uint8_t(-sum) << 8);
    return w;
}

std::uint8_t ide_controller::alternate_status() const {
    if (!master_selected()) return 0;  // no slave: nothing drives the bus
    return status_;
}

std::uint64_t ide_controller::read_command(std::uint64_t offset, unsigned size) {
    if (offset == ata::data) {
        std::uint64_t v = 0;
        data_read(size, v);
        return v;
    }
    if (!master_selected() && offset != ata::device) return 0;
    switch (offset) {
    case ata::error_features: return error_;
    case ata::sector_count: return count_;
    case ata::lba_low: return lba_low_;
    case ata::lba_mid: return lba_mid_;
    case ata::lba_high: return lba_high_;
    case ata::device: return device_;
    case ata::status_command:
        irq_.lower();
        return status_;
    default: return all_ones(size);
    }
}

void ide_controller::write_command(std::uint64_t offset, unsigned size, std::uint64_t value) {
    const auto b = static_cast<std::uint8_t>(value);
    switch (offset) {
    case ata::data: data_write(size, value); return;
    case ata::error_features: features_ = b; return;
    case ata::sector_count: count_ = b; return;
    case ata::lba_low: lba_low_ = b; return;
    case ata::lba_mid: lba_mid_ = b; return;
    case ata::lba_high: lba_high_ = b; return;
    case ata::device: device_ = static_cast<std::uint8_t>(b | ata::dev_obsolete); return;
    case ata::status_command: execute(b); return;
    default: return;
    }
}

void ide_controller::write_control(std::uint8_t value) {
    const bool was_reset = control_ & ata::srst;
    control_ = value;
    if (value & ata::nien) irq_.lower();
    if (was_reset && !(value & ata::srst)) reset();  // SRST 1 → 0 ends a software reset
}

void ide_controller::interrupt() {
    if (!(control_ & ata::nien)) irq_.raise();
}

void ide_controller::complete(std::uint8_t error) {
    phase_ = phase::idle;
    pos_ = 0;
    remaining_ = 0;
    error_ = error;
    status_ = static_cast<std::uint8_t>(ata::drdy | ata::dsc | (error ? ata::err : 0));
    interrupt();
}

void ide_controller::execute(std::uint8_t command) {
    if (!master_selected() || disk_.empty()) return;  // nobody there to take the command
    ++stats_.commands;
    irq_.lower();
    switch (command) {
    case ata::identify_device: {
        const auto words = identify();
        for (unsigned i = 0; i < words.size(); ++i) {
            buffer_[2 * i] = static_cast<std::uint8_t>(words[i]);
            buffer_[2 * i + 1] = static_cast<std::uint8_t>(words[i] >> 8);
        }
        phase_ = phase::data_in;
        pos_ = 0;
        remaining_ = 1;
        lba_ = ~std::uint64_t{0};  // not a disk sector
        error_ = 0;
        status_ = ata::drdy | ata::dsc | ata::drq;
        interrupt();
        return;
    }
    case ata::read_sectors:
    case ata::read_sectors_no_retry: start_transfer(false); return;
    case ata::write_sectors:
    case ata::write_sectors_no_retry: start_transfer(true); return;
    case ata::set_features:
    case ata::initialize_device_parameters:
    case ata::flush_cache: complete(); return;
    case ata::check_power_mode:
        count_ = 0xff;  // active or idle
        complete();
        return;
    default:
        ++stats_.aborted;
        complete(ata::abrt);
        return;
    }
}

void ide_controller::start_transfer(bool write) {
    if (!(device_ & ata::dev_lba)) {  // CHS addressing is not supported: LBA28 only
        ++stats_.aborted;
        complete(ata::abrt);
        return;
    }
    const std::uint64_t lba = std::uint64_t{device_ & 0x0fu} << 24 | std::uint64_t{lba_high_} << 16 |
                              std::uint64_t{lba_mid_} << 8 | lba_low_;
    const std::uint32_t count = count_ == 0 ? 256 : count_;
    if (lba >= sectors() || count > sectors() - lba) {
        ++stats_.out_of_range;
        complete(ata::idnf);
        return;
    }
    lba_ = lba;
    remaining_ = count;
    pos_ = 0;
    error_ = 0;
    if (write) {
        phase_ = phase::data_out;
        status_ = ata::drdy | ata::dsc | ata::drq;  // the first sector's data phase: no interrupt
    } else {
        phase_ = phase::data_in;
        load_sector();
        interrupt();
    }
}

void ide_controller::load_sector() {
    __builtin_memcpy(buffer_.data(), disk_.data() + lba_ * ata::sector_size, ata::sector_size);
    status_ = ata::drdy | ata::dsc | ata::drq;
    ++stats_.sectors_read;
}

void ide_controller::data_read(unsigned bytes, std::uint64_t& value) {
    if (phase_ != phase::data_in || !master_selected()) {
        value = all_ones(bytes);
        return;
    }
    value = 0;
    for (unsigned i = 0; i < bytes && pos_ < buffer_.size(); ++i) value |= std::uint64_t{buffer_[pos_++]} << (8 * i);
    if (pos_ == buffer_.size()) sector_done();
}

void ide_controller::data_write(unsigned bytes, std::uint64_t value) {
    if (phase_ != phase::data_out || !master_selected()) return;
    for (unsigned i = 0; i < bytes && pos_ < buffer_.size(); ++i) buffer_[pos_++] = static_cast<std::uint8_t>(value >> (8 * i));
    if (pos_ == buffer_.size()) sector_done();
}

// Whole accesses of the data phase up to the buffer's end, as data_read/data_write one by
// one (an access that would run past the end is left to them).
std::size_t ide_controller::data_read_block(unsigned bytes, void* dst, std::size_t count) {
    if (phase_ != phase::data_in || !master_selected()) return 0;
    const std::size_t n = (buffer_.size() - pos_) / bytes < count ? (buffer_.size() - pos_) / bytes : count;
    __builtin_memcpy(dst, buffer_.data() + pos_, n * bytes);
    pos_ += n * bytes;
    if (pos_ == buffer_.size()) sector_done();
    return n;
}

std::size_t ide_controller::data_write_block(unsigned bytes, const void* src, std::size_t count) {
    if (phase_ != phase::data_out || !master_selected()) return 0;
    const std::size_t n = (buffer_.size() - pos_) / bytes < count ? (buffer_.size() - pos_) / bytes : count;
    __builtin_memcpy(buffer_.data() + pos_, src, n * bytes);
    pos_ += n * bytes;
    if (pos_ == buffer_.size()) sector_done();
    return n;
}

// The buffer is full (write) or drained (read): on to the next sector or the end.
void ide_controller::sector_done() {
    if (phase_ == phase::data_out) {
        __builtin_memcpy(disk_.data() + lba_ * ata::sector_size, buffer_.data(), ata::sector_size);
        ++stats_.sectors_written;
    }
    pos_ = 0;
    if (--remaining_ == 0) {
        if (phase_ == phase::data_out) {
            complete();  // the write's end interrupts
        } else {
            phase_ = phase::idle;
            status_ = ata::drdy | ata::dsc;  // a read ends without an interrupt
        }
        return;
    }
    ++lba_;
    if (phase_ == phase::data_in) load_sector();
    else status_ = ata::drdy | ata::dsc | ata::drq;
    interrupt();
}

} // namespace hv::dev
