#include "libhv/arch/x86/acpi_madt.hpp"

namespace hv::acpi {
namespace {

constexpr std::uint32_t max_table_bytes = 64 * 1024;

bool same(const char* a, const char* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

std::uint8_t sum(const std::uint8_t* p, std::size_t n) {
    std::uint8_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s = static_cast<std::uint8_t>(s + p[i]);
    return s;
}

// A whole table (header checked, checksum over `length`) into `buf`.
status read_table(const boot::memory_reader& mem, std::uint64_t pa, std::uint8_t* buf, std::size_t cap,
                  sdt_header& h) {
    HV_TRY(mem.read(mem.ctx, pa, &h, sizeof h));
    if (h.length < sizeof h || h.length > cap) return fail(errc::invalid_argument, "ACPI table length out of range");
    HV_TRY(mem.read(mem.ctx, pa, buf, h.length));
    if (sum(buf, h.length) != 0) return fail(errc::invalid_argument, "ACPI table checksum wrong");
    return {};
}

// Read buffers (static: this runs once, on one CPU; on the host a test at a time).
std::uint8_t root_buf[max_table_bytes];
std::uint8_t madt_buf[max_table_bytes];

} // namespace

result<std::uint64_t> find_rsdp(const boot::memory_reader& mem, std::uint64_t base, std::uint64_t length) {
    base = (base + 15) & ~std::uint64_t{15};
    for (std::uint64_t at = base; at + 20 <= base + length; at += 16) {
        std::uint8_t b[20];
        if (!mem.read(mem.ctx, at, b, sizeof b).ok()) continue;
        if (same(reinterpret_cast<const char*>(b), "RSD PTR ", 8) && sum(b, 20) == 0) return at;
    }
    return fail(errc::not_found, "no ACPI RSDP in the range");
}

result<std::uint64_t> find_rsdp_bios(const boot::memory_reader& mem) {
    std::uint16_t ebda_segment = 0;
    if (mem.read(mem.ctx, 0x40e, &ebda_segment, sizeof ebda_segment).ok() && ebda_segment) {
        auto r = find_rsdp(mem, std::uint64_t{ebda_segment} << 4, 1024);
        if (r) return r;
    }
    auto r = find_rsdp(mem, 0xe0000, 0x20000);
    if (r) return r;
    return fail(errc::not_found, "no ACPI RSDP in the EBDA or at 0xe0000-0xfffff");
}

status read_cpus(const boot::memory_reader& mem, std::uint64_t rsdp_pa, cpu_list& out) {
    out = {};
    rsdp r{};
    HV_TRY(mem.read(mem.ctx, rsdp_pa, &r, 20));
    if (!same(r.signature, "RSD PTR ", 8) || sum(reinterpret_cast<const std::uint8_t*>(&r), 20) != 0)
        return fail(errc::invalid_argument, "ACPI RSDP signature or checksum wrong");
    bool use_xsdt = false;
    if (r.revision >= 2) {
        HV_TRY(mem.read(mem.ctx, rsdp_pa, &r, sizeof r));
        use_xsdt = r.xsdt != 0 && r.length >= sizeof r && sum(reinterpret_cast<const std::uint8_t*>(&r), sizeof r) == 0;
    }
    sdt_header root{};
    HV_TRY(read_table(mem, use_xsdt ? r.xsdt : r.rsdt, root_buf, sizeof root_buf, root));
    if (!same(root.signature, use_xsdt ? "XSDT" : "RSDT", 4)) return fail(errc::invalid_argument, "ACPI root table signature wrong");
    const std::size_t entry_size = use_xsdt ? 8 : 4;
    const std::size_t entries = (root.length - sizeof root) / entry_size;
    for (std::size_t i = 0; i < entries; ++i) {
        std::uint64_t pa = 0;
        __builtin_memcpy(&pa, root_buf + sizeof root + i * entry_size, entry_size);
        sdt_header h{};
        HV_TRY(mem.read(mem.ctx, pa, &h, sizeof h));
        if (!same(h.signature, "APIC", 4)) continue;
        HV_TRY(read_table(mem, pa, madt_buf, sizeof madt_buf, h));
        if (h.length < sizeof h + 8) return fail(errc::invalid_argument, "MADT too short");
        std::uint32_t lapic = 0;
        __builtin_memcpy(&lapic, madt_buf + sizeof h, 4);
        out.lapic_address = lapic;
        for (std::size_t at = sizeof h + 8; at + 2 <= h.length;) {
            const std::uint8_t type = madt_buf[at], len = madt_buf[at + 1];
            if (len < 2 || at + len > h.length) return fail(errc::invalid_argument, "MADT entry runs past the table");
            std::uint32_t id = 0, flags = 0;
            bool cpu = false;
            if (type == madt_entry::local_apic && len >= 8) {
                id = madt_buf[at + 3];
                __builtin_memcpy(&flags, madt_buf + at + 4, 4);
                cpu = true;
            } else if (type == madt_entry::local_x2apic && len >= 16) {
                __builtin_memcpy(&id, madt_buf + at + 4, 4);
                __builtin_memcpy(&flags, madt_buf + at + 8, 4);
                cpu = true;
            }
            at += len;
            if (!cpu) continue;
            bool dup = false;
            for (std::size_t k = 0; k < out.count; ++k) dup = dup || out.apic_ids[k] == id;
            if (dup) continue;  // a CPU listed both as local APIC and local x2APIC
            if (!(flags & madt_enabled) || out.count == cpu_list::max_cpus) {
                ++out.skipped;
                continue;
            }
            out.apic_ids[out.count++] = id;
        }
        if (!out.count) return fail(errc::invalid_argument, "MADT lists no enabled processor");
        return {};
    }
    return fail(errc::not_found, "no MADT in the ACPI root table");
}

} // namespace hv::acpi
