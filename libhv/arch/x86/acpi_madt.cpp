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

// A table's header, its length checked and its checksum summed in small pieces (no
// buffer: the tables stay where the firmware put them).
status check_table(const boot::memory_reader& mem, std::uint64_t pa, header& h) {
    HV_TRY(mem.read(mem.ctx, pa, &h, sizeof h));
    if (h.length < sizeof h || h.length > max_table_bytes) return fail(errc::invalid_argument, "ACPI table length out of range");
    std::uint8_t s = 0, piece[64];
    for (std::uint32_t at = 0; at < h.length; at += sizeof piece) {
        const std::uint32_t n = h.length - at < sizeof piece ? h.length - at : static_cast<std::uint32_t>(sizeof piece);
        HV_TRY(mem.read(mem.ctx, pa + at, piece, n));
        s = static_cast<std::uint8_t>(s + sum(piece, n));
    }
    if (s != 0) return fail(errc::invalid_argument, "ACPI table checksum wrong");
    return {};
}

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
        use_xsdt = r.xsdt_address != 0 && r.length >= sizeof r && sum(reinterpret_cast<const std::uint8_t*>(&r), sizeof r) == 0;
    }
    const std::uint64_t root_pa = use_xsdt ? r.xsdt_address : r.rsdt_address;
    header root{};
    HV_TRY(check_table(mem, root_pa, root));
    if (!same(root.signature, use_xsdt ? "XSDT" : "RSDT", 4)) return fail(errc::invalid_argument, "ACPI root table signature wrong");
    const std::size_t entry_size = use_xsdt ? 8 : 4;
    const std::size_t entries = (root.length - sizeof root) / entry_size;
    for (std::size_t i = 0; i < entries; ++i) {
        std::uint64_t pa = 0;
        HV_TRY(mem.read(mem.ctx, root_pa + sizeof root + i * entry_size, &pa, entry_size));
        header h{};
        HV_TRY(mem.read(mem.ctx, pa, &h, sizeof h));
        if (!same(h.signature, "APIC", 4)) continue;
        HV_TRY(check_table(mem, pa, h));
        if (h.length < sizeof(madt)) return fail(errc::invalid_argument, "MADT too short");
        madt m{};
        HV_TRY(mem.read(mem.ctx, pa, &m, sizeof m));
        out.lapic_address = m.lapic_address;
        for (std::size_t at = sizeof m; at + 2 <= h.length;) {
            std::uint8_t e[16] = {};
            HV_TRY(mem.read(mem.ctx, pa + at, e, 2));
            const auto type = static_cast<madt_type>(e[0]);
            const std::uint8_t len = e[1];
            if (len < 2 || at + len > h.length) return fail(errc::invalid_argument, "MADT entry runs past the table");
            HV_TRY(mem.read(mem.ctx, pa + at, e, len < sizeof e ? len : sizeof e));
            std::uint32_t id = 0, flags = 0;
            bool cpu = false;
            if (type == madt_type::lapic && len >= sizeof(madt_lapic)) {
                madt_lapic l;
                __builtin_memcpy(&l, e, sizeof l);
                id = l.apic_id;
                flags = l.flags;
                cpu = true;
            } else if (type == madt_type::x2apic && len >= sizeof(madt_x2apic)) {
                madt_x2apic x;
                __builtin_memcpy(&x, e, sizeof x);
                id = x.x2apic_id;
                flags = x.flags;
                cpu = true;
            }
            at += len;
            if (!cpu) continue;
            bool dup = false;
            for (std::size_t k = 0; k < out.count; ++k) dup = dup || out.apic_ids[k] == id;
            if (dup) continue;  // a CPU listed both as local APIC and local x2APIC
            if (!(flags & madt_cpu_flags::enabled) || out.count == cpu_list::max_cpus) {
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
