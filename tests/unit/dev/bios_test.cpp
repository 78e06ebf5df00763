#include <doctest/doctest.h>
#include <cstring>
#include <string>
#include <vector>
#include "libhv/dev/bios.hpp"

using namespace hv::dev::bios;

namespace {
// 2 MiB of guest-physical memory; [0xa0000, 0x100000) is no RAM (reads and writes fail).
struct fake_host final : host {
    std::vector<std::uint8_t> mem = std::vector<std::uint8_t>(2 << 20);
    std::string tty;
    std::vector<std::string> lines;
    std::uint64_t now = 0;
    static bool hole(std::uint64_t gpa, std::size_t n) { return gpa + n > 0xa0000 && gpa < 0x100000; }
    bool read(std::uint64_t gpa, void* dst, std::size_t n) override {
        if (hole(gpa, n) || gpa + n > mem.size()) return false;
        std::memcpy(dst, &mem[gpa], n);
        return true;
    }
    bool write(std::uint64_t gpa, const void* src, std::size_t n) override {
        if (hole(gpa, n) || gpa + n > mem.size()) return false;
        std::memcpy(&mem[gpa], src, n);
        return true;
    }
    void teletype(std::uint8_t ch) override { tty += static_cast<char>(ch); }
    void report(std::string_view line) override { lines.emplace_back(line); }
    std::uint64_t unix_seconds() override { return now; }
};

// 64 MiB of RAM as a PC has it, and a 128-sector disk whose byte i of sector s is s*3+i.
const e820_entry pc_map[] = {{0, 0xa0000, 1}, {0xe0000, 0x20000, 2}, {0x100000, (64u << 20) - 0x100000, 1}};

struct rig {
    fake_host h;
    std::vector<std::uint8_t> disk = std::vector<std::uint8_t>(128 * 512);
    services s;
    explicit rig(std::size_t sectors = 128, std::span<const e820_entry> map = pc_map)
        : disk(sectors * 512), s{h, {std::span<std::uint8_t>(disk), map}} {
        for (std::size_t i = 0; i < disk.size(); ++i) disk[i] = static_cast<std::uint8_t>(i / 512 * 3 + i);
    }
    regs call(std::uint8_t vector, regs r) {
        CHECK(s.call(vector, r) == outcome::done);
        return r;
    }
    std::uint8_t disk_byte(std::size_t sector, std::size_t i) const { return static_cast<std::uint8_t>(sector * 3 + i); }
    void put_packet(std::uint64_t at, disk_address_packet p) { std::memcpy(&h.mem[at], &p, sizeof p); }
    disk_address_packet packet(std::uint64_t at) {
        disk_address_packet p;
        std::memcpy(&p, &h.mem[at], sizeof p);
        return p;
    }
};

regs ah(std::uint8_t fn, std::uint8_t al = 0) { regs r; r.eax = std::uint32_t{fn} << 8 | al; return r; }
regs chs(std::uint8_t fn, std::uint8_t count, std::uint16_t cyl, std::uint8_t head, std::uint8_t sector,
         std::uint32_t es_base, std::uint16_t bx, std::uint8_t drive = 0x80) {
    regs r = ah(fn, count);
    r.ecx = static_cast<std::uint32_t>(((cyl & 0xff) << 8) | ((cyl >> 2) & 0xc0) | sector);
    r.edx = static_cast<std::uint32_t>(head << 8 | drive);
    r.es_base = es_base;
    r.ebx = bx;
    return r;
}
regs ext(std::uint8_t fn, std::uint32_t ds_base, std::uint16_t si, std::uint8_t drive = 0x80) {
    regs r = ah(fn);
    r.ds_base = ds_base;
    r.esi = si;
    r.edx = drive;
    return r;
}
} // namespace

TEST_CASE("bios: ROM stubs and IVT") {
    const auto intel = build_rom(trap::vmcall), amd = build_rom(trap::vmmcall);
    for (std::size_t v = 0; v < vectors; ++v) {
        CHECK(intel[v * 4] == 0x0f);
        CHECK(intel[v * 4 + 1] == 0x01);
        CHECK(intel[v * 4 + 2] == 0xc1);
        CHECK(amd[v * 4 + 2] == 0xd9);
        CHECK(intel[v * 4 + 3] == 0xcf);
    }
    const auto ivt = build_ivt();
    static_assert(sizeof ivt == ivt_size && ivt_size == 1024);
    CHECK(ivt[0x13].segment == 0xf000);
    CHECK(ivt[0x13].offset == 0x4c);
    CHECK(ivt[0xff].offset == 0x3fc);
    std::uint8_t raw[4];
    std::memcpy(raw, &ivt[0x10], 4);
    CHECK(raw[0] == 0x40);  // offset first, little-endian, then the segment
    CHECK(raw[3] == 0xf0);
    CHECK(vector_at(0xf0000, 0x4c) == 0x13);
    CHECK(vector_at(0xf0000, 0x4d) == -1);
    CHECK(vector_at(0xf0000, 0x400) == -1);
    CHECK(vector_at(0xe0000, 0x4c) == -1);
    CHECK(rom_base + rom_size <= 0x100000);
}

TEST_CASE("bios: INT 10h teletype and mode; an unserviced function is reported once, CF set") {
    rig t;
    for (char c : std::string("hi\r\n")) t.call(0x10, ah(0x0e, static_cast<std::uint8_t>(c)));
    CHECK(t.h.tty == "hi\r\n");
    regs r = ah(0x0f);
    r.ebx = 0x1234;
    r = t.call(0x10, r);
    CHECK(r.al() == 3);
    CHECK(r.ah() == 80);
    CHECK(r.bx() == 0x0034);
    r = t.call(0x10, ah(0x02));
    CHECK(r.carry());
    r = t.call(0x10, ah(0x02));
    CHECK(r.carry());
    REQUIRE(t.h.lines.size() == 1);
    CHECK(t.h.lines[0] == "BIOS: INT 10h AH=02h not serviced");
    t.call(0x60, ah(0x00));
    CHECK(t.h.lines.back() == "BIOS: INT 60h AH=00h not serviced");
    CHECK(t.s.counters().unserviced == 3);
}

TEST_CASE("bios: INT 11h equipment and INT 12h base memory from the memory map") {
    rig t;
    CHECK(t.call(0x11, {}).ax() == 0x0220);
    CHECK(t.call(0x12, {}).ax() == 640);
    const e820_entry small[] = {{0, 0x80000, 1}};
    rig u{128, small};
    CHECK(u.call(0x12, {}).ax() == 512);
}

TEST_CASE("bios: INT 13h CHS read, write and their errors") {
    rig t;
    // Sector 1 of head 1 is LBA 63: 2 sectors to 0x1000:0x0100.
    regs r = t.call(0x13, chs(0x02, 2, 0, 1, 1, 0x10000, 0x100));
    CHECK_FALSE(r.carry());
    CHECK(r.ah() == 0);
    CHECK(r.al() == 2);
    CHECK(t.h.mem[0x10100] == t.disk_byte(63, 0));
    CHECK(t.h.mem[0x10100 + 512 + 5] == t.disk_byte(64, 5));
    CHECK(t.h.mem[0x10100 + 1024] == 0);
    // Write LBA 2 from memory.
    std::memset(&t.h.mem[0x20000], 0xab, 512);
    r = t.call(0x13, chs(0x03, 1, 0, 0, 3, 0x20000, 0));
    CHECK_FALSE(r.carry());
    CHECK(t.disk[2 * 512] == 0xab);
    CHECK(t.disk[2 * 512 + 511] == 0xab);
    CHECK(t.s.counters().sectors_read == 2);
    CHECK(t.s.counters().sectors_written == 1);

    auto fails = [&](regs in, std::uint8_t status) {
        const std::vector<std::uint8_t> before = t.disk;
        regs out = t.call(0x13, in);
        CHECK(out.carry());
        CHECK(out.ah() == status);
        CHECK(out.al() == 0);
        CHECK(t.disk == before);
        regs st = t.call(0x13, ah(0x01));  // the last status, kept
        CHECK(st.ah() == status);
        CHECK(st.carry());
    };
    fails(chs(0x02, 1, 0, 0, 1, 0x10000, 0, 0x81), disk_status::invalid);     // no such drive
    fails(chs(0x02, 1, 0, 0, 1, 0x10000, 0, 0x00), disk_status::invalid);     // no floppy
    fails(chs(0x02, 0, 0, 0, 1, 0x10000, 0), disk_status::invalid);           // no sectors
    fails(chs(0x02, 1, 0, 0, 0, 0x10000, 0), disk_status::invalid);           // sector 0
    fails(chs(0x02, 1, 0, 0, 64, 0x10000, 0), disk_status::invalid);          // past the track
    fails(chs(0x02, 1, 0, 16, 1, 0x10000, 0), disk_status::invalid);          // past the heads
    fails(chs(0x02, 1, 1, 0, 1, 0x10000, 0), disk_status::invalid);           // past the cylinders
    fails(chs(0x02, 1, 0, 2, 3, 0x10000, 0), disk_status::sector_not_found);  // LBA 128: past the disk
    fails(chs(0x02, 2, 0, 2, 2, 0x10000, 0), disk_status::sector_not_found);  // LBA 127 is, 128 is not
    fails(chs(0x02, 2, 0, 0, 1, 0x10000, 0xfe00), disk_status::boundary);     // crosses the segment's 64 KiB
    fails(chs(0x03, 2, 0, 0, 1, 0x10000, 0xfe01), disk_status::boundary);
    fails(chs(0x02, 1, 0, 0, 1, 0xa0000, 0), disk_status::invalid);           // buffer not RAM
    fails(chs(0x03, 1, 0, 0, 1, 0xa0000, 0), disk_status::invalid);
    // Exactly to the segment's end is fine; a successful call clears the status.
    regs ok = t.call(0x13, chs(0x02, 1, 0, 0, 1, 0x30000, 0xfe00));
    CHECK_FALSE(ok.carry());
    CHECK(t.call(0x13, ah(0x01)).ah() == 0);
    CHECK(t.h.mem[0x3fe00 + 7] == t.disk_byte(0, 7));
}

TEST_CASE("bios: INT 13h reset, parameters, type, extensions check") {
    rig t;
    regs r = ah(0x00);
    r.edx = 0x80;
    CHECK_FALSE(t.call(0x13, r).carry());
    r.edx = 0x81;
    CHECK(t.call(0x13, r).carry());

    // 128 sectors: one cylinder of 16 heads x 63 sectors.
    r = ah(0x08);
    r.edx = 0x80;
    r = t.call(0x13, r);
    CHECK_FALSE(r.carry());
    CHECK(r.ah() == 0);
    CHECK(r.cx() == 0x003f);
    CHECK(r.dx() == 0x0f01);
    r.edx = 0x82;
    r.eax = 0x0800;
    CHECK(t.call(0x13, r).carry());
    rig big{20000};  // 20 cylinders: max cylinder 19
    CHECK(big.s.disk_geometry().cylinders == 20);
    rig huge{2000000};  // clamped at 1024 cylinders: max 1023 in CH and CL 7:6
    r = ah(0x08);
    r.edx = 0x80;
    CHECK(huge.call(0x13, r).cx() == 0xffff);

    r = ah(0x15);
    r.edx = 0x80;
    r = t.call(0x13, r);
    CHECK_FALSE(r.carry());
    CHECK(r.ah() == 3);
    CHECK(r.cx() == 0);
    CHECK(r.dx() == 128);
    r = ah(0x15);
    r.edx = 0x81;
    r = t.call(0x13, r);
    CHECK_FALSE(r.carry());
    CHECK(r.ah() == 0);

    r = ah(0x41);
    r.ebx = 0x55aa;
    r.edx = 0x80;
    r = t.call(0x13, r);
    CHECK_FALSE(r.carry());
    CHECK(r.bx() == 0xaa55);
    CHECK(r.cx() == 1);
    CHECK(r.ah() == 0x21);
    r = ah(0x41);
    r.ebx = 0x1234;
    r.edx = 0x80;
    CHECK(t.call(0x13, r).carry());
    r = ah(0x41);
    r.ebx = 0x55aa;
    r.edx = 0x81;
    CHECK(t.call(0x13, r).carry());

    r = ah(0x47);  // extended seek: not serviced
    r.edx = 0x80;
    r = t.call(0x13, r);
    CHECK(r.carry());
    CHECK(r.ah() == 1);
    CHECK(t.h.lines.back() == "BIOS: INT 13h AH=47h not serviced");
}

TEST_CASE("bios: INT 13h AH=48h extended drive parameters") {
    rig t;
    const std::uint16_t size = 30;
    std::memcpy(&t.h.mem[0x800], &size, 2);
    regs r = ext(0x48, 0, 0x800);
    r = t.call(0x13, r);
    CHECK_FALSE(r.carry());
    drive_parameters p;
    std::memcpy(&p, &t.h.mem[0x800], sizeof p);
    CHECK(p.size == 26);
    CHECK(p.flags == 2);
    CHECK(p.cylinders == 1);
    CHECK(p.heads == 16);
    CHECK(p.sectors_per_track == 63);
    CHECK(p.sectors == 128);
    CHECK(p.bytes_per_sector == 512);
    const std::uint16_t small = 25;
    std::memcpy(&t.h.mem[0x900], &small, 2);
    r = t.call(0x13, ext(0x48, 0, 0x900));
    CHECK(r.carry());
    CHECK(r.ah() == 1);
    CHECK(t.h.mem[0x902] == 0);  // nothing written
    std::memcpy(&t.h.mem[0xa00], &size, 2);
    CHECK(t.call(0x13, ext(0x48, 0, 0xa00, 0x81)).carry());  // no such drive
    CHECK(t.call(0x13, ext(0x48, 0xa0000, 0)).carry());       // buffer not RAM
}

TEST_CASE("bios: INT 13h extended read and write with a disk address packet") {
    rig t;
    t.put_packet(0x500, {0x10, 0, 3, 0x0010, 0x2000, 5});
    regs r = t.call(0x13, ext(0x42, 0, 0x500));
    CHECK_FALSE(r.carry());
    CHECK(r.ah() == 0);
    CHECK(t.packet(0x500).count == 3);
    CHECK(t.h.mem[0x20010] == t.disk_byte(5, 0));
    CHECK(t.h.mem[0x20010 + 2 * 512 + 9] == t.disk_byte(7, 9));
    // Write LBA 127 (the last) from 0x3000:0.
    std::memset(&t.h.mem[0x30000], 0x5a, 512);
    t.put_packet(0x600, {0x10, 0, 1, 0, 0x3000, 127});
    r = ext(0x43, 0, 0x600);
    r.set_al(1);
    CHECK_FALSE(t.call(0x13, r).carry());
    CHECK(t.disk[127 * 512 + 300] == 0x5a);

    auto fails = [&](regs in, disk_address_packet p, std::uint8_t status) {
        t.put_packet(0x700, p);
        const std::vector<std::uint8_t> before = t.disk;
        regs out = t.call(0x13, in);
        CHECK(out.carry());
        CHECK(out.ah() == status);
        CHECK(t.disk == before);
        return t.packet(0x700).count;
    };
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 2, 0, 0x2000, 127}, disk_status::sector_not_found) == 0);
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 1, 0, 0x2000, 1ull << 40}, disk_status::sector_not_found) == 0);
    CHECK(fails(ext(0x43, 0, 0x700), {0x10, 0, 1, 0, 0x2000, 128}, disk_status::sector_not_found) == 0);
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 2, 0xfe00, 0x2000, 0}, disk_status::boundary) == 0);
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 0, 0, 0x2000, 0}, disk_status::invalid) == 0);
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 128, 0, 0x2000, 0}, disk_status::invalid) == 0);
    CHECK(fails(ext(0x42, 0, 0x700), {0x18, 0, 1, 0xffff, 0xffff, 0}, disk_status::invalid) == 0);  // flat buffer
    CHECK(fails(ext(0x42, 0, 0x700), {0x08, 0, 1, 0, 0x2000, 0}, disk_status::invalid) == 1);       // short packet
    CHECK(fails(ext(0x42, 0, 0x700, 0x81), {0x10, 0, 1, 0, 0x2000, 0}, disk_status::invalid) == 1);  // no drive
    CHECK(fails(ext(0x42, 0, 0x700), {0x10, 0, 1, 0, 0xa000, 0}, disk_status::invalid) == 0);       // buffer not RAM
    regs bad_flags = ext(0x43, 0, 0x700);
    bad_flags.set_al(3);
    CHECK(fails(bad_flags, {0x10, 0, 1, 0, 0x2000, 0}, disk_status::invalid) == 1);
    CHECK(t.call(0x13, ext(0x42, 0xa0000, 0)).carry());  // the packet itself not readable
}

TEST_CASE("bios: INT 15h E820h walks the memory map; errors set CF with AH=86h") {
    rig t;
    regs r;
    std::vector<e820_entry> got;
    do {
        r.eax = 0xe820;
        r.edx = smap;
        r.ecx = 24;
        r.es_base = 0x1000;
        r.edi = 0x10;
        r = t.call(0x15, r);
        REQUIRE_FALSE(r.carry());
        CHECK(r.eax == smap);
        CHECK(r.ecx == 20);
        e820_entry e;
        std::memcpy(&e, &t.h.mem[0x1010], sizeof e);
        got.push_back(e);
    } while (r.ebx != 0 && got.size() < 10);
    REQUIRE(got.size() == 3);
    CHECK(got[2].base == 0x100000);
    CHECK(got[2].length == (64u << 20) - 0x100000);
    CHECK(got[1].type == 2);

    auto refused = [&](std::uint32_t edx, std::uint32_t ecx, std::uint32_t ebx, std::uint32_t es_base) {
        regs q;
        q.eax = 0xe820;
        q.edx = edx;
        q.ecx = ecx;
        q.ebx = ebx;
        q.es_base = es_base;
        q = t.call(0x15, q);
        CHECK(q.carry());
        CHECK(q.ah() == 0x86);
    };
    refused(0x12345678, 20, 0, 0x1000);
    refused(smap, 19, 0, 0x1000);
    refused(smap, 20, 3, 0x1000);
    refused(smap, 20, 0, 0xa0000);
}

TEST_CASE("bios: INT 15h memory sizes and A20") {
    rig t;
    regs r = t.call(0x15, ah(0x88));
    CHECK_FALSE(r.carry());
    CHECK(r.ax() == 63 * 1024);
    r.eax = 0xe801;
    r = t.call(0x15, r);
    CHECK_FALSE(r.carry());
    CHECK(r.ax() == 15 * 1024);
    CHECK(r.cx() == 15 * 1024);
    CHECK(r.bx() == 48 * 16);  // 48 MiB in 64 KiB blocks
    CHECK(r.dx() == 48 * 16);
    const e820_entry small[] = {{0, 0xa0000, 1}, {0x100000, 0x700000, 1}};  // 8 MiB
    rig u{128, small};
    r = {};
    r.eax = 0xe801;
    r = u.call(0x15, r);
    CHECK(r.ax() == 7 * 1024);
    CHECK(r.bx() == 0);
    CHECK(u.call(0x15, ah(0x88)).ax() == 7 * 1024);

    regs a;
    a.eax = 0x2401;
    CHECK_FALSE(t.call(0x15, a).carry());
    a.eax = 0x2402;
    a = t.call(0x15, a);
    CHECK_FALSE(a.carry());
    CHECK(a.ax() == 0x0001);
    a.eax = 0x2403;
    a = t.call(0x15, a);
    CHECK(a.bx() == 2);
    a.eax = 0x2400;
    a = t.call(0x15, a);
    CHECK(a.carry());
    CHECK(a.ah() == 0x86);
    a = t.call(0x15, ah(0xc0));
    CHECK(a.carry());
    CHECK(a.ah() == 0x86);
    CHECK(t.h.lines.back() == "BIOS: INT 15h AH=c0h not serviced");
}

TEST_CASE("bios: INT 16h has no keys, INT 1Ah counts ticks, INT 18h/19h end the run") {
    rig t;
    regs r = t.call(0x16, ah(0x01));
    CHECK((r.flags & flags::zf) != 0);
    regs w = ah(0x00);
    CHECK(t.s.call(0x16, w) == outcome::waits_for_key);
    CHECK(t.h.lines.back().starts_with("BIOS: INT 16h AH=00h waits for a key"));

    t.h.now = 1767225600ull + 3600;  // 2026-01-01 01:00:00
    r = t.call(0x1a, ah(0x00));
    const std::uint32_t ticks = std::uint32_t{r.cx()} << 16 | r.dx();
    CHECK(ticks == 3600ull * 1193182 / 65536);
    CHECK(r.al() == 0);
    t.h.now = 1767225600ull + 86399;
    r = t.call(0x1a, ah(0x00));
    CHECK((std::uint32_t{r.cx()} << 16 | r.dx()) < 0x1800b0);

    t.h.now = 1767225600ull + 13 * 3600 + 7 * 60 + 9;  // 2026-01-01 13:07:09
    r = t.call(0x1a, ah(0x02));
    CHECK_FALSE(r.carry());
    CHECK(r.cx() == 0x1307);
    CHECK(r.dx() == 0x0900);
    r = t.call(0x1a, ah(0x04));
    CHECK(r.cx() == 0x2026);
    CHECK(r.dx() == 0x0101);
    r = t.call(0x1a, ah(0x05));  // setting the date: not serviced
    CHECK(r.carry());

    regs b;
    CHECK(t.s.call(0x19, b) == outcome::boot_failed);
    CHECK(t.h.lines.back() == "BIOS: INT 19h: boot failure (the boot sector gave up)");
    CHECK(t.s.call(0x18, b) == outcome::boot_failed);

    // A divide error or invalid opcode would IRET to its faulting instruction: the run ends.
    CHECK(t.s.call(0x00, b) == outcome::fault);
    CHECK(t.h.lines.back() == "BIOS: INT 00h: a divide error with no handler in the IVT; the run ends");
    CHECK(t.s.call(0x06, b) == outcome::fault);
    CHECK(t.h.lines.back() == "BIOS: INT 06h: an invalid opcode with no handler in the IVT; the run ends");
}
