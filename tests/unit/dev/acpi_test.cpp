// Checks the ACPI tables with a small parser of its own that reads fields at the
// offsets the ACPI specification gives, not through libhv's structures.
#include <doctest/doctest.h>
#include <cstring>
#include <map>
#include <string>
#include <vector>
#include "libhv/dev/acpi_tables.hpp"

namespace acpi = hv::dev::acpi;

namespace {

struct guest_mem {
    std::vector<std::uint8_t> bytes;
    std::uint64_t gpa;
    const std::uint8_t* at(std::uint64_t addr, std::size_t n) const {
        REQUIRE(addr >= gpa);
        REQUIRE(addr - gpa + n <= bytes.size());
        return bytes.data() + (addr - gpa);
    }
};

std::uint64_t le(const std::uint8_t* p, unsigned n) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
}
bool sums_to_zero(const std::uint8_t* p, std::size_t n) {
    unsigned s = 0;
    for (std::size_t i = 0; i < n; ++i) s += p[i];
    return (s & 0xff) == 0;
}

struct table {
    std::string sig;
    std::uint64_t addr;
    const std::uint8_t* p;
    std::uint32_t len;
};

table load_table(const guest_mem& m, std::uint64_t addr) {
    const std::uint8_t* h = m.at(addr, 36);
    std::uint32_t len = static_cast<std::uint32_t>(le(h + 4, 4));
    REQUIRE(len >= 36);
    const std::uint8_t* p = m.at(addr, len);
    CHECK(sums_to_zero(p, len));
    return table{std::string(reinterpret_cast<const char*>(p), 4), addr, p, len};
}

struct parsed {
    std::uint64_t rsdp = 0;
    std::map<std::string, table> tables;
    std::vector<std::uint64_t> xsdt_entries, rsdt_entries;
};

parsed parse(const guest_mem& m) {
    parsed out;
    for (std::size_t off = 0; off + 36 <= m.bytes.size(); off += 16) {
        if (std::memcmp(m.bytes.data() + off, "RSD PTR ", 8) == 0) {
            out.rsdp = m.gpa + off;
            break;
        }
    }
    REQUIRE(out.rsdp != 0);
    const std::uint8_t* r = m.at(out.rsdp, 36);
    CHECK(sums_to_zero(r, 20));
    CHECK(r[15] == 2);                              // revision
    CHECK(le(r + 20, 4) == 36);                     // length
    CHECK(sums_to_zero(r, 36));
    table xsdt = load_table(m, le(r + 24, 8));
    CHECK(xsdt.sig == "XSDT");
    for (std::uint32_t o = 36; o + 8 <= xsdt.len; o += 8) out.xsdt_entries.push_back(le(xsdt.p + o, 8));
    if (std::uint64_t rsdt_addr = le(r + 16, 4)) {
        table rsdt = load_table(m, rsdt_addr);
        CHECK(rsdt.sig == "RSDT");
        for (std::uint32_t o = 36; o + 4 <= rsdt.len; o += 4) out.rsdt_entries.push_back(le(rsdt.p + o, 4));
    }
    for (std::uint64_t e : out.xsdt_entries) {
        table t = load_table(m, e);
        out.tables[t.sig] = t;
    }
    REQUIRE(out.tables.count("FACP"));
    const table& f = out.tables["FACP"];
    REQUIRE(f.len >= 148);
    std::uint64_t dsdt = le(f.p + 140, 8);
    if (!dsdt) dsdt = le(f.p + 40, 4);
    table d = load_table(m, dsdt);
    CHECK(d.sig == "DSDT");
    out.tables["DSDT"] = d;
    return out;
}

// Finds Name(_S5_, Package(){a, b, ...}) in AML and returns a and b.
std::pair<int, int> s5_of(const table& dsdt) {
    const std::uint8_t* aml = dsdt.p + 36;
    std::size_t n = dsdt.len - 36;
    for (std::size_t i = 0; i + 4 < n; ++i) {
        if (std::memcmp(aml + i, "_S5_", 4) != 0) continue;
        REQUIRE(i > 0);
        CHECK(aml[i - 1] == 0x08);                  // NameOp
        std::size_t p = i + 4;
        REQUIRE(aml[p] == 0x12);                    // PackageOp
        ++p;
        std::size_t lead = aml[p] >> 6;             // PkgLength: extra bytes
        p += 1 + lead;
        unsigned count = aml[p++];
        REQUIRE(count >= 2);
        auto element = [&]() -> int {
            std::uint8_t op = aml[p++];
            if (op == 0x00) return 0;               // ZeroOp
            if (op == 0x01) return 1;               // OneOp
            if (op == 0x0a) return aml[p++];        // BytePrefix
            FAIL("unexpected AML in _S5");
            return -1;
        };
        int a = element();
        int b = element();
        return {a, b};
    }
    FAIL("no _S5_ in the DSDT");
    return {-1, -1};
}

guest_mem build(const acpi::config& cfg, std::size_t size = 4096, std::uint64_t gpa = 0xe0000) {
    guest_mem m{std::vector<std::uint8_t>(size, 0xcc), gpa};
    auto r = acpi::build(std::span<std::uint8_t>(m.bytes), gpa, cfg);
    REQUIRE(r.ok());
    CHECK(r->size <= size);
    CHECK(r->rsdp == gpa);
    return m;
}

} // namespace

TEST_CASE("acpi: tables are found, checksummed and linked") {
    acpi::config cfg;
    cfg.cpus = 4;
    cfg.ioapic_id = 4;
    guest_mem m = build(cfg);
    parsed p = parse(m);
    CHECK(p.tables.count("APIC") == 1);
    CHECK(p.xsdt_entries.size() == p.rsdt_entries.size());
    for (std::size_t i = 0; i < p.rsdt_entries.size(); ++i) CHECK(p.xsdt_entries[i] == p.rsdt_entries[i]);
    for (auto& [sig, t] : p.tables) {
        CAPTURE(sig);
        CHECK(std::memcmp(t.p + 10, "LIBHV ", 6) == 0);    // OEM ID
    }
}

TEST_CASE("acpi: MADT lists every CPU, the IOAPIC and the overrides") {
    acpi::config cfg;
    cfg.cpus = 4;
    cfg.ioapic_id = 4;
    guest_mem m = build(cfg);
    parsed p = parse(m);
    const table& madt = p.tables["APIC"];
    CHECK(le(madt.p + 36, 4) == 0xfee00000);
    CHECK((le(madt.p + 40, 4) & 1) == 1);           // PCAT_COMPAT
    std::vector<unsigned> apic_ids;
    unsigned ioapics = 0, nmis = 0;
    std::map<unsigned, std::pair<unsigned, unsigned>> overrides;   // source → (gsi, flags)
    std::uint32_t off = 44;
    while (off < madt.len) {
        REQUIRE(off + 2 <= madt.len);
        std::uint8_t type = madt.p[off], len = madt.p[off + 1];
        REQUIRE(len >= 2);
        REQUIRE(off + len <= madt.len);
        const std::uint8_t* e = madt.p + off;
        switch (type) {
        case 0:
            CHECK(len == 8);
            CHECK((le(e + 4, 4) & 1) == 1);         // enabled
            apic_ids.push_back(e[3]);
            break;
        case 1:
            CHECK(len == 12);
            CHECK(e[2] == 4);
            CHECK(le(e + 4, 4) == 0xfec00000);
            CHECK(le(e + 8, 4) == 0);
            ++ioapics;
            break;
        case 2:
            CHECK(len == 10);
            CHECK(e[2] == 0);                       // ISA
            overrides[e[3]] = {static_cast<unsigned>(le(e + 4, 4)), static_cast<unsigned>(le(e + 8, 2))};
            break;
        case 4:
            CHECK(len == 6);
            CHECK(e[2] == 0xff);
            CHECK(e[5] == 1);                       // LINT1
            ++nmis;
            break;
        default:
            FAIL("unexpected MADT entry type");
        }
        off += len;
    }
    CHECK(off == madt.len);
    CHECK(apic_ids == std::vector<unsigned>{0, 1, 2, 3});
    CHECK(ioapics == 1);
    CHECK(nmis == 1);
    REQUIRE(overrides.count(0));
    CHECK(overrides[0].first == 2);                 // IRQ0 → GSI2
    REQUIRE(overrides.count(9));
    CHECK(overrides[9].first == 9);
    CHECK(overrides[9].second == 0x0d);             // SCI: level, active high
}

TEST_CASE("acpi: FADT points at the PM blocks, FACS and DSDT; \\_S5 matches") {
    acpi::config cfg;
    cfg.pm_base = 0xb000;
    cfg.s5_slp_typ = 7;
    guest_mem m = build(cfg);
    parsed p = parse(m);
    const table& f = p.tables["FACP"];
    CHECK(f.len == 276);
    CHECK(f.p[8] == 6);                             // revision
    CHECK(le(f.p + 46, 2) == 9);                    // SCI_INT
    CHECK(le(f.p + 48, 4) == 0);                    // SMI_CMD: always in ACPI mode
    CHECK(le(f.p + 56, 4) == 0xb000);               // PM1a_EVT_BLK
    CHECK(le(f.p + 64, 4) == 0xb004);               // PM1a_CNT_BLK
    CHECK(le(f.p + 76, 4) == 0xb008);               // PM_TMR_BLK
    CHECK(f.p[88] == 4);                            // PM1_EVT_LEN
    CHECK(f.p[89] == 2);                            // PM1_CNT_LEN
    CHECK(f.p[91] == 4);                            // PM_TMR_LEN
    CHECK(f.p[208] == 1);                           // X_PM_TMR_BLK: system I/O
    CHECK(le(f.p + 212, 8) == 0xb008);
    CHECK(f.p[108] == 0x32);                        // CENTURY
    std::uint32_t flags = static_cast<std::uint32_t>(le(f.p + 112, 4));
    CHECK((flags & (1u << 8)) != 0);                // TMR_VAL_EXT: 32-bit PM timer
    CHECK((flags & (1u << 20)) == 0);               // not hardware-reduced
    CHECK((flags & (1u << 10)) != 0);               // RESET_REG_SUP
    CHECK(f.p[116] == 1);                           // RESET_REG in I/O space
    CHECK(le(f.p + 120, 8) == 0xcf9);
    CHECK(f.p[128] == 0x06);
    CHECK((le(f.p + 109, 2) & 3) == 3);             // legacy devices + 8042
    std::uint64_t facs = le(f.p + 36, 4);
    REQUIRE(facs != 0);
    CHECK(facs % 64 == 0);
    const std::uint8_t* fc = m.at(facs, 64);
    CHECK(std::memcmp(fc, "FACS", 4) == 0);
    CHECK(le(fc + 4, 4) == 64);
    CHECK(le(f.p + 40, 4) == le(f.p + 140, 8));     // DSDT and X_DSDT agree
    auto [a, b] = s5_of(p.tables["DSDT"]);
    CHECK(a == 7);
    CHECK(b == 7);
}

TEST_CASE("acpi: a machine without fixed hardware gets a hardware-reduced FADT") {
    acpi::config cfg;
    cfg.pm = false;
    cfg.pic = false;
    cfg.legacy_devices = false;
    cfg.i8042 = false;
    cfg.reset_reg = false;
    cfg.sleep_regs = true;
    cfg.sleep_port = 0x620;
    guest_mem m = build(cfg);
    parsed p = parse(m);
    const table& f = p.tables["FACP"];
    CHECK((le(f.p + 112, 4) & (1u << 20)) != 0);
    CHECK(f.p[244] == 1);                           // SLEEP_CONTROL_REG: system I/O, 8 bits
    CHECK(f.p[245] == 8);
    CHECK(le(f.p + 248, 8) == 0x620);
    CHECK(f.p[256] == 1);                           // SLEEP_STATUS_REG
    CHECK(le(f.p + 260, 8) == 0x621);
    CHECK(le(f.p + 76, 4) == 0);
    CHECK(le(f.p + 64, 4) == 0);
    CHECK((le(f.p + 109, 2) & 3) == 0);
    CHECK((le(p.tables["APIC"].p + 40, 4) & 1) == 0);
}

TEST_CASE("acpi: large APIC IDs get x2APIC entries; tables above 4 GiB have no RSDT") {
    acpi::config cfg;
    cfg.cpus = 2;
    const std::uint32_t ids[] = {0, 300};
    cfg.apic_ids = ids;
    guest_mem m = build(cfg, 4096, 0x1'0000'0000ull);
    parsed p = parse(m);
    CHECK(p.rsdt_entries.empty());
    const table& madt = p.tables["APIC"];
    bool found = false;
    for (std::uint32_t off = 44; off < madt.len; off += madt.p[off + 1])
        if (madt.p[off] == 9) {
            CHECK(madt.p[off + 1] == 16);
            CHECK(le(madt.p + off + 4, 4) == 300);
            found = true;
        }
    CHECK(found);
}

TEST_CASE("acpi: bad buffers are refused") {
    acpi::config cfg;
    std::vector<std::uint8_t> small(200);
    CHECK(acpi::build(std::span<std::uint8_t>(small), 0xe0000, cfg).code() == hv::errc::no_memory);
    std::vector<std::uint8_t> buf(4096);
    CHECK(acpi::build(std::span<std::uint8_t>(buf), 0xe0008, cfg).code() == hv::errc::invalid_argument);
    cfg.cpus = 0;
    CHECK(acpi::build(std::span<std::uint8_t>(buf), 0xe0000, cfg).code() == hv::errc::invalid_argument);
}
