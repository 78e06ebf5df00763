// BIOS services for a guest started in real mode (the hvm policy's boot sector), written
// once against small interfaces: the guest's registers, guest-physical memory, the disk's
// bytes, the memory map. libhv/vm/bios_calls wires it to a running vCPU.
//
// How a guest reaches it: the IVT at 0:0 points vector n at F000:(4n), a 4-byte stub in
// the PC's ROM at 0xf0000 (never RAM):
//
//   F000:4n   VMCALL (Intel) or VMMCALL (AMD)   the hypervisor services vector n
//   F000:4n+3 IRET
//
// The stub's address is the vector (IP / 4): no register carries it, so every register
// is the guest's argument. Status flags go where IRET takes them from: the FLAGS image the
// INT pushed (SS:SP+4), which the wiring reads into bios_regs::flags and writes back.
//
// Serviced (anything else reports "BIOS: INT nnh AH=xxh not serviced" once per vector and
// AH, and returns CF set; INT 13h/15h with their "invalid function" AH too):
//   INT 10h  AH=0Eh teletype (to COM1), AH=0Fh video mode (3, 80 columns, page 0)
//   INT 11h  equipment word; INT 12h base memory KiB
//   INT 13h  drive 0x80: AH=00h reset, 01h last status, 02h/03h CHS read/write,
//            08h parameters, 15h type, 41h extensions check, 42h/43h extended read/write,
//            48h extended parameters
//   INT 15h  AX=E820h memory map, AX=2400h-2403h A20, AH=88h, AX=E801h
//   INT 16h  AH=01h/11h: no key (ZF set); AH=00h/10h: no key can ever come: ends the run
//            (outcome::waits_for_key) instead of hanging; AH=02h: no shift keys
//   INT 18h/19h  boot failure: ends the run (outcome::boot_failed)
//   INT 00h/06h  a divide error / invalid opcode without a guest handler: ends the run
//                (outcome::fault) rather than returning to the faulting instruction
//   INT 1Ah  AH=00h ticks since midnight (from the RTC's seconds), 02h/04h RTC time/date (BCD)
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace hv::dev::bios {

// ---- Layouts the guest reads ----
struct ivt_entry {
    std::uint16_t offset;
    std::uint16_t segment;
};
static_assert(sizeof(ivt_entry) == 4);

#pragma pack(push, 1)
// INT 13h AH=42h/43h: DS:SI points at it.
struct disk_address_packet {
    std::uint8_t size;          // 0x10 (or 0x18 with a 64-bit flat buffer, not serviced)
    std::uint8_t reserved;
    std::uint16_t count;        // sectors; set to the number transferred on return
    std::uint16_t buffer_offset;
    std::uint16_t buffer_segment;
    std::uint64_t lba;
};
// INT 15h AX=E820h: one entry to ES:DI (and fw_cfg's "etc/e820" uses the same 20 bytes).
struct e820_entry {
    std::uint64_t base;
    std::uint64_t length;
    std::uint32_t type;  // 1 RAM, 2 reserved
};
// INT 13h AH=48h: the result buffer at DS:SI (EDD 1.1's 26 bytes).
struct drive_parameters {
    std::uint16_t size;        // in: the buffer's size (at least 26); out: 26
    std::uint16_t flags;       // bit 1: the CHS fields are valid
    std::uint32_t cylinders;
    std::uint32_t heads;
    std::uint32_t sectors_per_track;
    std::uint64_t sectors;
    std::uint16_t bytes_per_sector;
};
#pragma pack(pop)
static_assert(sizeof(drive_parameters) == 26);
static_assert(offsetof(drive_parameters, sectors) == 16 && offsetof(drive_parameters, bytes_per_sector) == 24);
static_assert(sizeof(disk_address_packet) == 16);
static_assert(offsetof(disk_address_packet, count) == 2 && offsetof(disk_address_packet, lba) == 8);
static_assert(sizeof(e820_entry) == 20);
static_assert(offsetof(e820_entry, length) == 8 && offsetof(e820_entry, type) == 16);

// ---- The ROM and the IVT ----
inline constexpr std::uint64_t rom_base = 0xf0000;  // F000:0000, inside the PC's ROM at 0xe0000
inline constexpr std::uint16_t rom_segment = 0xf000;
inline constexpr std::size_t stub_size = 4;
inline constexpr std::size_t vectors = 256;
inline constexpr std::size_t rom_size = vectors * stub_size;
inline constexpr std::uint64_t ivt_base = 0;
inline constexpr std::size_t ivt_size = vectors * sizeof(ivt_entry);

enum class trap : std::uint8_t { vmcall, vmmcall };
// The stubs, rom_size bytes for rom_base.
std::array<std::uint8_t, rom_size> build_rom(trap t);
// The IVT, ivt_size bytes for 0:0: vector n -> F000:4n.
std::array<ivt_entry, vectors> build_ivt();
// The vector whose stub's trap instruction is at F000:ip (CS base rom_base), or -1.
constexpr int vector_at(std::uint64_t cs_base, std::uint64_t ip) {
    if (cs_base != rom_base || ip >= rom_size || ip % stub_size != 0) return -1;
    return static_cast<int>(ip / stub_size);
}

// The BIOS data area the services keep consistent with what they answer.
inline constexpr std::uint64_t bda_equipment = 0x410, bda_base_memory_kib = 0x413, bda_hard_disks = 0x475;

// ---- The service ----
namespace flags {
inline constexpr std::uint16_t cf = 1u << 0, zf = 1u << 6;
}

// The guest's registers at the INT (32-bit views: real-mode code may use EAX etc.), the
// bases of DS and ES (where its buffers are), and the FLAGS image IRET will load.
struct regs {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0, esi = 0, edi = 0;
    std::uint32_t ds_base = 0, es_base = 0;
    std::uint16_t flags = 0;

    std::uint8_t ah() const { return static_cast<std::uint8_t>(eax >> 8); }
    std::uint8_t al() const { return static_cast<std::uint8_t>(eax); }
    std::uint16_t ax() const { return static_cast<std::uint16_t>(eax); }
    std::uint16_t bx() const { return static_cast<std::uint16_t>(ebx); }
    std::uint16_t cx() const { return static_cast<std::uint16_t>(ecx); }
    std::uint16_t dx() const { return static_cast<std::uint16_t>(edx); }
    std::uint8_t dl() const { return static_cast<std::uint8_t>(edx); }
    void set_ah(std::uint8_t v) { eax = (eax & ~0xff00u) | (std::uint32_t{v} << 8); }
    void set_al(std::uint8_t v) { eax = (eax & ~0xffu) | v; }
    void set_ax(std::uint16_t v) { eax = (eax & ~0xffffu) | v; }
    void set_bx(std::uint16_t v) { ebx = (ebx & ~0xffffu) | v; }
    void set_cx(std::uint16_t v) { ecx = (ecx & ~0xffffu) | v; }
    void set_dx(std::uint16_t v) { edx = (edx & ~0xffffu) | v; }
    void set_flag(std::uint16_t f, bool on) { flags = static_cast<std::uint16_t>(on ? flags | f : flags & ~f); }
    bool carry() const { return flags & flags::cf; }
};

// What the services need of the machine.
class host {
public:
    // Guest-physical copies; false when any byte is not RAM (writes) or RAM/ROM (reads).
    virtual bool read(std::uint64_t gpa, void* dst, std::size_t n) = 0;
    virtual bool write(std::uint64_t gpa, const void* src, std::size_t n) = 0;
    virtual void teletype(std::uint8_t ch) = 0;           // INT 10h AH=0Eh: the COM1 output
    virtual void report(std::string_view line) = 0;       // the hypervisor's console
    virtual std::uint64_t unix_seconds() = 0;             // the RTC's wall time

protected:
    ~host() = default;
};

struct config {
    std::span<std::uint8_t> disk;              // drive 0x80, whole 512-byte sectors
    std::span<const e820_entry> memory_map;    // INT 15h E820h; RAM types give 12h/88h/E801h
};

// INT 13h status codes (AH).
namespace disk_status {
inline constexpr std::uint8_t ok = 0x00, invalid = 0x01, sector_not_found = 0x04, boundary = 0x09;
}
inline constexpr std::uint8_t boot_drive = 0x80;
inline constexpr std::uint32_t smap = 0x534d4150;  // "SMAP"
inline constexpr std::uint8_t unsupported = 0x86;  // INT 15h AH on failure

// The fixed disk geometry INT 13h's CHS calls and AH=08h use: 16 heads, 63 sectors a track.
struct geometry {
    std::uint32_t cylinders;
    std::uint8_t heads, sectors_per_track;
};

// fault: INT 00h or 06h, which the CPU raises for a divide error or an invalid opcode;
// their IRET would return to the faulting instruction and loop, so the run ends.
enum class outcome : std::uint8_t { done, boot_failed, waits_for_key, fault };

struct stats {
    std::uint64_t calls = 0, sectors_read = 0, sectors_written = 0, unserviced = 0;
};

class services {
public:
    services(host& h, const config& c);

    // Services INT `vector` with `r` (and the guest memory it points at).
    outcome call(std::uint8_t vector, regs& r);

    [[nodiscard]] geometry disk_geometry() const { return geometry_; }
    [[nodiscard]] std::uint64_t disk_sectors() const { return cfg_.disk.size() / 512; }
    [[nodiscard]] const stats& counters() const { return stats_; }
    // What INT 12h, 88h and E801h answer, from the memory map's RAM.
    [[nodiscard]] std::uint16_t base_memory_kib() const;
    [[nodiscard]] std::uint16_t equipment() const;

private:
    outcome video(regs& r);
    outcome disk(regs& r);
    outcome system(regs& r);
    outcome keyboard(regs& r);
    outcome time_of_day(regs& r);
    void not_serviced(std::uint8_t vector, regs& r);
    void disk_result(regs& r, std::uint8_t status);
    std::uint8_t transfer(std::uint64_t lba, std::uint32_t count, std::uint32_t segment_base, std::uint32_t offset,
                          bool write);
    void extended(regs& r, bool write);
    void chs(regs& r, bool write);
    std::uint64_t ram_between(std::uint64_t from, std::uint64_t to) const;

    host* h_;
    config cfg_;
    geometry geometry_;
    std::uint8_t last_status_ = 0;
    std::array<std::uint64_t, vectors * 256 / 64> reported_{};
    stats stats_;
};

} // namespace hv::dev::bios
