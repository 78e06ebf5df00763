#include "libhv/dev/bios.hpp"
#include "libhv/core/format.hpp"
#include "libhv/dev/cmos_rtc.hpp"

namespace hv::dev::bios {

namespace {
constexpr std::uint64_t kib = 1024, mib = 1024 * 1024;
constexpr std::uint32_t sector = 512;
constexpr std::uint8_t heads = 16, sectors_per_track = 63;
constexpr std::uint32_t max_cylinders = 1024;  // 10 bits in CH/CL
// Video: what AH=0Fh reports (80x25 colour text).
constexpr std::uint8_t video_mode = 3, columns = 80;
// PIT ticks a day: 1193182 Hz / 65536 per tick.
constexpr std::uint64_t pit_hz = 1193182, ticks_per_day = 86400 * pit_hz / 65536;
} // namespace

std::array<std::uint8_t, rom_size> build_rom(trap t) {
    std::array<std::uint8_t, rom_size> rom{};
    const std::uint8_t modrm = t == trap::vmcall ? 0xc1 : 0xd9;
    for (std::size_t v = 0; v < vectors; ++v) {
        std::uint8_t* stub = &rom[v * stub_size];
        stub[0] = 0x0f;
        stub[1] = 0x01;
        stub[2] = modrm;
        stub[3] = 0xcf;  // IRET
    }
    return rom;
}

std::array<ivt_entry, vectors> build_ivt() {
    std::array<ivt_entry, vectors> ivt{};
    for (std::size_t v = 0; v < vectors; ++v)
        ivt[v] = {static_cast<std::uint16_t>(v * stub_size), rom_segment};
    return ivt;
}

services::services(host& h, const config& c) : h_{&h}, cfg_{c} {
    const std::uint64_t track = std::uint64_t{heads} * sectors_per_track;
    std::uint64_t cyl = (disk_sectors() + track - 1) / track;
    if (cyl == 0) cyl = 1;
    if (cyl > max_cylinders) cyl = max_cylinders;
    geometry_ = {static_cast<std::uint32_t>(cyl), heads, sectors_per_track};
}

// End of the RAM that runs without a gap from `from` (from itself if it is no RAM).
std::uint64_t services::ram_between(std::uint64_t from, std::uint64_t to) const {
    std::uint64_t end = from;
    for (bool grew = true; grew && end < to;) {
        grew = false;
        for (const e820_entry& e : cfg_.memory_map)
            if (e.type == 1 && e.base <= end && end < e.base + e.length) {
                end = e.base + e.length;
                grew = true;
            }
    }
    return (end < to ? end : to) - from;
}

std::uint16_t services::base_memory_kib() const {
    return static_cast<std::uint16_t>(ram_between(0, 0xa0000) / kib);
}

// No floppy, no coprocessor bit, 80x25 colour (bits 5:4 = 10b), one serial port (bits 11:9).
std::uint16_t services::equipment() const { return (0b10u << 4) | (1u << 9); }

outcome services::call(std::uint8_t vector, regs& r) {
    ++stats_.calls;
    switch (vector) {
    case 0x10: return video(r);
    case 0x11: r.set_ax(equipment()); return outcome::done;
    case 0x12: r.set_ax(base_memory_kib()); return outcome::done;
    case 0x13: return disk(r);
    case 0x15: return system(r);
    case 0x16: return keyboard(r);
    case 0x18:
    case 0x19: {
        char line[96];
        const std::size_t n = fmt::format_to(line, sizeof line, "BIOS: INT {:02x}h: boot failure (the boot sector gave up)", vector);
        h_->report({line, n < sizeof line ? n : sizeof line - 1});
        return outcome::boot_failed;
    }
    case 0x1a: return time_of_day(r);
    case 0x00:
    case 0x06: {
        char line[112];
        const std::size_t n = fmt::format_to(line, sizeof line,
            "BIOS: INT {:02x}h: {} with no handler in the IVT; the run ends", vector,
            vector == 0 ? "a divide error" : "an invalid opcode");
        h_->report({line, n < sizeof line ? n : sizeof line - 1});
        return outcome::fault;
    }
    default: not_serviced(vector, r); return outcome::done;
    }
}

void services::not_serviced(std::uint8_t vector, regs& r) {
    ++stats_.unserviced;
    r.set_flag(flags::cf, true);
    const unsigned key = vector * 256u + r.ah();
    std::uint64_t& word = reported_[key / 64];
    const std::uint64_t bit = std::uint64_t{1} << (key % 64);
    if (word & bit) return;
    word |= bit;
    char line[64];
    const std::size_t n = fmt::format_to(line, sizeof line, "BIOS: INT {:02x}h AH={:02x}h not serviced", vector, r.ah());
    h_->report({line, n < sizeof line ? n : sizeof line - 1});
}

outcome services::video(regs& r) {
    switch (r.ah()) {
    case 0x0e: h_->teletype(r.al()); return outcome::done;
    case 0x0f:
        r.set_al(video_mode);
        r.set_ah(columns);
        r.ebx &= ~0xff00u;  // BH: page 0
        return outcome::done;
    default: not_serviced(0x10, r); return outcome::done;
    }
}

outcome services::keyboard(regs& r) {
    switch (r.ah()) {
    case 0x01:
    case 0x11: r.set_flag(flags::zf, true); return outcome::done;
    case 0x02: r.set_al(0); return outcome::done;
    case 0x00:
    case 0x10: {
        char line[112];
        const std::size_t n = fmt::format_to(line, sizeof line,
            "BIOS: INT 16h AH={:02x}h waits for a key: this PC has no keyboard input, so the run ends", r.ah());
        h_->report({line, n < sizeof line ? n : sizeof line - 1});
        return outcome::waits_for_key;
    }
    default: not_serviced(0x16, r); return outcome::done;
    }
}

namespace {
std::uint8_t bcd(unsigned v) { return static_cast<std::uint8_t>((v / 10 % 10) << 4 | v % 10); }
} // namespace

outcome services::time_of_day(regs& r) {
    if (r.ah() == 0x02 || r.ah() == 0x04) {
        const civil_time t = civil_from_unix(h_->unix_seconds());
        if (r.ah() == 0x02) {
            r.set_cx(static_cast<std::uint16_t>(bcd(t.hour) << 8 | bcd(t.minute)));
            r.set_dx(static_cast<std::uint16_t>(bcd(t.second) << 8));  // DL 0: no daylight saving
        } else {
            r.set_cx(static_cast<std::uint16_t>(bcd(t.year / 100) << 8 | bcd(t.year % 100)));
            r.set_dx(static_cast<std::uint16_t>(bcd(t.month) << 8 | bcd(t.day)));
        }
        r.set_flag(flags::cf, false);
        return outcome::done;
    }
    if (r.ah() != 0x00) {
        not_serviced(0x1a, r);
        return outcome::done;
    }
    const std::uint64_t seconds = h_->unix_seconds() % 86400;
    std::uint64_t ticks = seconds * pit_hz / 65536;
    if (ticks >= ticks_per_day) ticks = ticks_per_day - 1;
    r.set_cx(static_cast<std::uint16_t>(ticks >> 16));
    r.set_dx(static_cast<std::uint16_t>(ticks));
    r.set_al(0);  // midnight not passed since the last read
    r.set_flag(flags::cf, false);
    return outcome::done;
}

// ---- INT 15h ----

outcome services::system(regs& r) {
    const auto ok = [&] { r.set_flag(flags::cf, false); };
    const auto refuse = [&] {
        r.set_ah(unsupported);
        r.set_flag(flags::cf, true);
    };
    if (r.eax == 0xe820) {
        const std::uint32_t index = r.ebx;
        if (r.edx != smap || r.ecx < sizeof(e820_entry) || index >= cfg_.memory_map.size()) {
            refuse();
            return outcome::done;
        }
        const e820_entry& e = cfg_.memory_map[index];
        if (!h_->write(std::uint64_t{r.es_base} + static_cast<std::uint16_t>(r.edi), &e, sizeof e)) {
            refuse();
            return outcome::done;
        }
        r.eax = smap;
        r.ecx = sizeof(e820_entry);
        r.ebx = index + 1 < cfg_.memory_map.size() ? index + 1 : 0;
        ok();
        return outcome::done;
    }
    switch (r.ax()) {
    case 0x2400: refuse(); return outcome::done;  // A20 cannot be turned off: guest RAM has no A20 gate
    case 0x2401: r.set_ah(0); ok(); return outcome::done;
    case 0x2402: r.set_ah(0); r.set_al(1); ok(); return outcome::done;
    case 0x2403: r.set_ah(0); r.set_bx(1u << 1); ok(); return outcome::done;  // port 0x92 is there
    case 0xe801: {
        const std::uint64_t low = ram_between(mib, 16 * mib) / kib;
        const std::uint64_t high = low == 15 * kib ? ram_between(16 * mib, 4096 * mib) / (64 * kib) : 0;
        const auto high16 = static_cast<std::uint16_t>(high > 0xffff ? 0xffff : high);
        r.set_ax(static_cast<std::uint16_t>(low));
        r.set_cx(static_cast<std::uint16_t>(low));
        r.set_bx(high16);
        r.set_dx(high16);
        ok();
        return outcome::done;
    }
    default: break;
    }
    if (r.ah() == 0x88) {
        const std::uint64_t ext = ram_between(mib, 4096 * mib) / kib;
        r.set_ax(static_cast<std::uint16_t>(ext > 0xffff ? 0xffff : ext));  // as CMOS 0x30/0x31
        ok();
        return outcome::done;
    }
    not_serviced(0x15, r);
    r.set_ah(unsupported);
    return outcome::done;
}

// ---- INT 13h ----

void services::disk_result(regs& r, std::uint8_t status) {
    last_status_ = status;
    r.set_ah(status);
    r.set_flag(flags::cf, status != disk_status::ok);
}

// Moves `count` sectors between the disk at `lba` and segment_base + offset, after
// checking all of it: nothing is moved unless everything can be.
std::uint8_t services::transfer(std::uint64_t lba, std::uint32_t count, std::uint32_t segment_base,
                                std::uint32_t offset, bool write) {
    if (count == 0) return disk_status::invalid;
    if (lba >= disk_sectors() || count > disk_sectors() - lba) return disk_status::sector_not_found;
    if (offset + std::uint64_t{count} * sector > 0x10000) return disk_status::boundary;  // past the segment's 64 KiB
    const std::uint64_t gpa = std::uint64_t{segment_base} + offset;
    std::uint8_t* bytes = cfg_.disk.data() + lba * sector;
    const std::size_t n = std::size_t{count} * sector;
    if (!(write ? h_->read(gpa, bytes, n) : h_->write(gpa, bytes, n))) return disk_status::invalid;
    (write ? stats_.sectors_written : stats_.sectors_read) += count;
    return disk_status::ok;
}

void services::chs(regs& r, bool write) {
    const std::uint32_t count = r.al();
    const std::uint32_t sec = r.cx() & 0x3f;
    const std::uint32_t cyl = (r.cx() >> 8) | ((r.cx() & 0xc0u) << 2);
    const std::uint32_t head = r.dx() >> 8;
    if (sec == 0 || sec > geometry_.sectors_per_track || head >= geometry_.heads || cyl >= geometry_.cylinders) {
        r.set_al(0);
        return disk_result(r, disk_status::invalid);
    }
    const std::uint64_t lba = (std::uint64_t{cyl} * geometry_.heads + head) * geometry_.sectors_per_track + sec - 1;
    const std::uint8_t status = transfer(lba, count, r.es_base, r.bx(), write);
    r.set_al(status == disk_status::ok ? static_cast<std::uint8_t>(count) : 0);
    disk_result(r, status);
}

void services::extended(regs& r, bool write) {
    const std::uint64_t packet_at = std::uint64_t{r.ds_base} + static_cast<std::uint16_t>(r.esi);
    disk_address_packet p;
    if (!h_->read(packet_at, &p, sizeof p) || p.size < sizeof p || (write && r.al() > 2)) {
        return disk_result(r, disk_status::invalid);
    }
    // 127 sectors: the classic packet's limit. A size-0x18 packet's flat 64-bit buffer
    // (FFFF:FFFF) is not serviced.
    std::uint8_t status = p.count > 127 || (p.buffer_segment == 0xffff && p.buffer_offset == 0xffff)
                              ? disk_status::invalid
                              : transfer(p.lba, p.count, std::uint32_t{p.buffer_segment} << 4, p.buffer_offset, write);
    if (status != disk_status::ok) {
        const std::uint16_t none = 0;
        (void)h_->write(packet_at + offsetof(disk_address_packet, count), &none, sizeof none);
    }
    disk_result(r, status);
}

outcome services::disk(regs& r) {
    const std::uint8_t fn = r.ah();
    if (fn == 0x01) {  // status of the last operation, any drive
        r.set_al(0);
        r.set_ah(last_status_);
        r.set_flag(flags::cf, last_status_ != disk_status::ok);
        return outcome::done;
    }
    if (fn == 0x15 && r.dl() != boot_drive) {  // type: no such drive, CF clear
        r.set_ah(0);
        r.set_flag(flags::cf, false);
        return outcome::done;
    }
    switch (fn) {
    case 0x00: case 0x02: case 0x03: case 0x08: case 0x15: case 0x41: case 0x42: case 0x43: case 0x48: break;
    default:
        not_serviced(0x13, r);
        disk_result(r, disk_status::invalid);
        return outcome::done;
    }
    if (r.dl() != boot_drive || disk_sectors() == 0) {
        if (fn == 0x02 || fn == 0x03) r.set_al(0);  // sectors transferred
        disk_result(r, disk_status::invalid);
        return outcome::done;
    }
    switch (fn) {
    case 0x00: disk_result(r, disk_status::ok); break;
    case 0x02: chs(r, false); break;
    case 0x03: chs(r, true); break;
    case 0x08: {
        const std::uint32_t max_cyl = geometry_.cylinders - 1;
        r.set_ax(0);
        r.set_cx(static_cast<std::uint16_t>(((max_cyl & 0xff) << 8) | ((max_cyl >> 2) & 0xc0) | geometry_.sectors_per_track));
        r.set_dx(static_cast<std::uint16_t>(((geometry_.heads - 1u) << 8) | 1u));  // DH max head, DL drives
        disk_result(r, disk_status::ok);
        break;
    }
    case 0x15: {
        const std::uint64_t n = disk_sectors();
        r.set_cx(static_cast<std::uint16_t>(n >> 16));
        r.set_dx(static_cast<std::uint16_t>(n));
        r.set_ah(0x03);  // a hard disk
        r.set_flag(flags::cf, false);
        last_status_ = disk_status::ok;
        break;
    }
    case 0x41:
        if (r.bx() != 0x55aa) {
            disk_result(r, disk_status::invalid);
            break;
        }
        r.set_bx(0xaa55);
        r.set_ah(0x21);   // EDD 1.1
        r.set_cx(1);      // the packet functions (42h/43h/48h; 44h/47h are not serviced)
        r.set_flag(flags::cf, false);
        last_status_ = disk_status::ok;
        break;
    case 0x48: {
        const std::uint64_t at = std::uint64_t{r.ds_base} + static_cast<std::uint16_t>(r.esi);
        std::uint16_t size = 0;
        if (!h_->read(at, &size, sizeof size) || size < sizeof(drive_parameters)) {
            disk_result(r, disk_status::invalid);
            break;
        }
        const drive_parameters p{sizeof(drive_parameters), 1u << 1, geometry_.cylinders, geometry_.heads,
                                 geometry_.sectors_per_track, disk_sectors(), 512};
        disk_result(r, h_->write(at, &p, sizeof p) ? disk_status::ok : disk_status::invalid);
        break;
    }
    case 0x42: extended(r, false); break;
    case 0x43: extended(r, true); break;
    }
    return outcome::done;
}

} // namespace hv::dev::bios
