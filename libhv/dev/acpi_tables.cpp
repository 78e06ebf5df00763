#include "libhv/dev/acpi_tables.hpp"

namespace hv::dev::acpi {

std::uint8_t checksum(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    std::uint8_t sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum = static_cast<std::uint8_t>(sum + b[i]);
    return static_cast<std::uint8_t>(-sum);
}

namespace {

constexpr std::uint8_t creator_id[4] = {'L', 'B', 'H', 'V'};
constexpr std::uint8_t table_id[8] = {'L', 'I', 'B', 'H', 'V', 'P', 'C', ' '};

class writer {
public:
    writer(std::span<std::uint8_t> mem, std::uint64_t gpa) : mem_{mem}, gpa_{gpa} {}
    // Reserves `n` zeroed bytes at `align`; returns the offset, or npos if full.
    std::size_t reserve(std::size_t n, std::size_t align) {
        std::size_t at = (pos_ + align - 1) & ~(align - 1);
        if (at > mem_.size() || n > mem_.size() - at) { full_ = true; return 0; }
        for (std::size_t i = pos_; i < at + n; ++i) mem_[i] = 0;
        pos_ = at + n;
        return at;
    }
    void put(std::size_t at, const void* src, std::size_t n) {
        if (full_) return;
        __builtin_memcpy(mem_.data() + at, src, n);
    }
    std::uint8_t* at(std::size_t off) { return mem_.data() + off; }
    std::uint64_t gpa(std::size_t off) const { return gpa_ + off; }
    bool full() const { return full_; }
    std::size_t size() const { return pos_; }

private:
    std::span<std::uint8_t> mem_;
    std::uint64_t gpa_;
    std::size_t pos_ = 0;
    bool full_ = false;
};

void fill_header(header& h, const char (&sig)[5], std::uint32_t length, std::uint8_t revision, const config& cfg) {
    __builtin_memcpy(h.signature, sig, 4);
    h.length = length;
    h.revision = revision;
    h.checksum = 0;
    __builtin_memcpy(h.oem_id, cfg.oem_id, 6);
    __builtin_memcpy(h.oem_table_id, table_id, 8);
    h.oem_revision = 1;
    __builtin_memcpy(h.creator_id, creator_id, 4);
    h.creator_revision = 1;
}

// Stamps the checksum of the table of `length` bytes at `off`.
void seal(writer& w, std::size_t off, std::size_t length) {
    auto* h = reinterpret_cast<header*>(w.at(off));
    h->checksum = 0;
    h->checksum = checksum(w.at(off), length);
}

gas io_gas(std::uint16_t port, std::uint8_t bits, std::uint8_t access) {
    return gas{address_space::io, bits, 0, access, port};
}

} // namespace

result<layout> build(std::span<std::uint8_t> mem, std::uint64_t gpa, const config& cfg) {
    if (gpa % 16) return fail(errc::invalid_argument, "acpi: tables must start 16-byte aligned");
    if (cfg.cpus == 0 || cfg.cpus > 255) return fail(errc::invalid_argument, "acpi: 1-255 CPUs");
    if (!cfg.apic_ids.empty() && cfg.apic_ids.size() < cfg.cpus)
        return fail(errc::invalid_argument, "acpi: fewer APIC IDs than CPUs");

    writer w{mem, gpa};
    layout out{};

    // Sizes first: the MADT's length depends on the entries.
    std::size_t madt_len = sizeof(madt) + sizeof(madt_lapic_nmi);
    for (unsigned i = 0; i < cfg.cpus; ++i) {
        std::uint32_t id = cfg.apic_ids.empty() ? i : cfg.apic_ids[i];
        madt_len += id < 255 ? sizeof(madt_lapic) : sizeof(madt_x2apic);
    }
    if (cfg.ioapic) {
        madt_len += sizeof(madt_ioapic);
        if (cfg.irq0_to_gsi2) madt_len += sizeof(madt_override);
        if (cfg.pm) madt_len += sizeof(madt_override);
    }
    // \_S5: NameOp NameSeg PackageOp PkgLength NumElements (BytePrefix b)x2 ZeroOp x2
    const std::uint8_t aml[] = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
                                0x0a, cfg.s5_slp_typ, 0x0a, cfg.s5_slp_typ, 0x00, 0x00};
    const std::size_t dsdt_len = sizeof(header) + sizeof(aml);
    const unsigned xsdt_entries = 2;    // FADT, MADT
    const std::size_t xsdt_len = sizeof(header) + 8 * xsdt_entries;
    const std::size_t rsdt_len = sizeof(header) + 4 * xsdt_entries;

    std::size_t o_rsdp = w.reserve(sizeof(rsdp), 16);
    std::size_t o_xsdt = w.reserve(xsdt_len, 16);
    std::size_t o_rsdt = w.reserve(rsdt_len, 16);
    std::size_t o_fadt = w.reserve(sizeof(fadt), 16);
    std::size_t o_facs = w.reserve(sizeof(facs), 64);
    std::size_t o_madt = w.reserve(madt_len, 16);
    std::size_t o_dsdt = w.reserve(dsdt_len, 16);
    if (w.full()) return fail(errc::no_memory, "acpi: buffer too small for the tables");

    const bool below_4g = w.gpa(w.size()) <= 0x100000000ull;
    out.rsdp = w.gpa(o_rsdp);
    out.xsdt = w.gpa(o_xsdt);
    out.rsdt = below_4g ? w.gpa(o_rsdt) : 0;
    out.fadt = w.gpa(o_fadt);
    out.facs = w.gpa(o_facs);
    out.madt = w.gpa(o_madt);
    out.dsdt = w.gpa(o_dsdt);
    out.size = w.size();

    // DSDT
    {
        header h{};
        fill_header(h, "DSDT", static_cast<std::uint32_t>(dsdt_len), 2, cfg);
        w.put(o_dsdt, &h, sizeof(h));
        w.put(o_dsdt + sizeof(h), aml, sizeof(aml));
        seal(w, o_dsdt, dsdt_len);
    }
    // FACS
    {
        facs f{};
        __builtin_memcpy(f.signature, "FACS", 4);
        f.length = sizeof(facs);
        f.version = 2;
        w.put(o_facs, &f, sizeof(f));
    }
    // FADT
    {
        fadt f{};
        fill_header(f.hdr, "FACP", sizeof(fadt), 6, cfg);
        f.minor_version = 0;
        if (out.facs < 0x100000000ull) f.firmware_ctrl = static_cast<std::uint32_t>(out.facs);
        else f.x_firmware_ctrl = out.facs;
        if (out.dsdt < 0x100000000ull) f.dsdt = static_cast<std::uint32_t>(out.dsdt);
        f.x_dsdt = out.dsdt;
        f.flags = fadt_flags::wbinvd | fadt_flags::proc_c1 | fadt_flags::slp_button;
        if (cfg.pm) {
            f.sci_int = cfg.sci_irq;
            // SMI_CMD = 0: no SMM handoff, the platform is always in ACPI mode.
            f.pm1a_evt_blk = cfg.pm_base;
            f.pm1a_cnt_blk = cfg.pm_base + 4u;
            f.pm_tmr_blk = cfg.pm_base + 8u;
            f.pm1_evt_len = 4;
            f.pm1_cnt_len = 2;
            f.pm_tmr_len = 4;
            f.x_pm1a_evt_blk = io_gas(cfg.pm_base, 32, 2);
            f.x_pm1a_cnt_blk = io_gas(static_cast<std::uint16_t>(cfg.pm_base + 4), 16, 2);
            f.x_pm_tmr_blk = io_gas(static_cast<std::uint16_t>(cfg.pm_base + 8), 32, 3);
            if (cfg.pm_timer_32bit) f.flags |= fadt_flags::tmr_val_ext;
        } else {
            f.flags |= fadt_flags::hw_reduced_acpi;
        }
        if (cfg.sleep_regs) {
            f.sleep_control_reg = io_gas(cfg.sleep_port, 8, 1);
            f.sleep_status_reg = io_gas(static_cast<std::uint16_t>(cfg.sleep_port + 1), 8, 1);
        }
        f.p_lvl2_lat = 101;     // > 100: C2 not supported
        f.p_lvl3_lat = 1001;    // > 1000: C3 not supported
        if (cfg.rtc) f.century = cfg.rtc_century_index;
        if (cfg.legacy_devices) f.iapc_boot_arch |= boot_arch::legacy_devices;
        if (cfg.i8042) f.iapc_boot_arch |= boot_arch::i8042;
        f.iapc_boot_arch |= boot_arch::vga_not_present;
        if (!cfg.rtc) f.iapc_boot_arch |= boot_arch::cmos_rtc_not_present;
        if (cfg.reset_reg) {
            f.flags |= fadt_flags::reset_reg_sup;
            f.reset_reg = io_gas(cfg.reset_port, 8, 1);
            f.reset_value = cfg.reset_value;
        }
        w.put(o_fadt, &f, sizeof(f));
        seal(w, o_fadt, sizeof(fadt));
    }
    // MADT
    {
        madt m{};
        fill_header(m.hdr, "APIC", static_cast<std::uint32_t>(madt_len), 5, cfg);
        m.lapic_address = cfg.lapic_address;
        m.flags = cfg.pic ? 1 : 0;
        std::size_t p = o_madt;
        w.put(p, &m, sizeof(m));
        p += sizeof(m);
        for (unsigned i = 0; i < cfg.cpus; ++i) {
            std::uint32_t id = cfg.apic_ids.empty() ? i : cfg.apic_ids[i];
            if (id < 255) {
                madt_lapic e{madt_type::lapic, sizeof(madt_lapic), static_cast<std::uint8_t>(i),
                             static_cast<std::uint8_t>(id), 1};
                w.put(p, &e, sizeof(e));
                p += sizeof(e);
            } else {
                madt_x2apic e{madt_type::x2apic, sizeof(madt_x2apic), 0, id, 1, i};
                w.put(p, &e, sizeof(e));
                p += sizeof(e);
            }
        }
        if (cfg.ioapic) {
            madt_ioapic io{madt_type::ioapic, sizeof(madt_ioapic), cfg.ioapic_id, 0, cfg.ioapic_address,
                           cfg.ioapic_gsi_base};
            w.put(p, &io, sizeof(io));
            p += sizeof(io);
            if (cfg.irq0_to_gsi2) {
                madt_override o{madt_type::interrupt_override, sizeof(madt_override), 0, 0, 2, 0};
                w.put(p, &o, sizeof(o));
                p += sizeof(o);
            }
            if (cfg.pm) {   // the SCI is level-triggered, active high
                madt_override o{madt_type::interrupt_override, sizeof(madt_override), 0, cfg.sci_irq, cfg.sci_irq,
                                mps_flags::active_high | mps_flags::level};
                w.put(p, &o, sizeof(o));
                p += sizeof(o);
            }
        }
        madt_lapic_nmi nmi{madt_type::lapic_nmi, sizeof(madt_lapic_nmi), 0xff, 0, 1};
        w.put(p, &nmi, sizeof(nmi));
        seal(w, o_madt, madt_len);
    }
    // XSDT / RSDT
    {
        header h{};
        fill_header(h, "XSDT", static_cast<std::uint32_t>(xsdt_len), 1, cfg);
        w.put(o_xsdt, &h, sizeof(h));
        const std::uint64_t entries[xsdt_entries] = {out.fadt, out.madt};
        w.put(o_xsdt + sizeof(h), entries, sizeof(entries));
        seal(w, o_xsdt, xsdt_len);
        if (out.rsdt) {
            fill_header(h, "RSDT", static_cast<std::uint32_t>(rsdt_len), 1, cfg);
            w.put(o_rsdt, &h, sizeof(h));
            const std::uint32_t e32[xsdt_entries] = {static_cast<std::uint32_t>(out.fadt),
                                                     static_cast<std::uint32_t>(out.madt)};
            w.put(o_rsdt + sizeof(h), e32, sizeof(e32));
            seal(w, o_rsdt, rsdt_len);
        }
    }
    // RSDP
    {
        rsdp r{};
        __builtin_memcpy(r.signature, "RSD PTR ", 8);
        __builtin_memcpy(r.oem_id, cfg.oem_id, 6);
        r.revision = 2;
        r.rsdt_address = static_cast<std::uint32_t>(out.rsdt);
        r.length = sizeof(rsdp);
        r.xsdt_address = out.xsdt;
        r.checksum = checksum(&r, 20);
        r.extended_checksum = checksum(&r, sizeof(r));
        w.put(o_rsdp, &r, sizeof(r));
    }
    return out;
}

} // namespace hv::dev::acpi
