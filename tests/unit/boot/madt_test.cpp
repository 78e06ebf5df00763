#include <doctest/doctest.h>
#include <cstring>
#include <vector>
#include "fake_phys.hpp"
#include "libhv/arch/x86/acpi_madt.hpp"

using namespace hv;

namespace {

std::uint8_t checksum_of(const std::vector<std::uint8_t>& b, std::size_t n) {
    std::uint8_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s = static_cast<std::uint8_t>(s + b[i]);
    return static_cast<std::uint8_t>(-s);
}

// An ACPI table: header (signature, length, checksum) then `body`.
std::vector<std::uint8_t> table(const char* sig, const std::vector<std::uint8_t>& body) {
    std::vector<std::uint8_t> t(36 + body.size());
    std::memcpy(t.data(), sig, 4);
    for (std::size_t i = 0; i < body.size(); ++i) t[36 + i] = body[i];
    const auto len = static_cast<std::uint32_t>(t.size());
    std::memcpy(t.data() + 4, &len, 4);
    t[8] = 1;
    t[9] = checksum_of(t, t.size());
    return t;
}

void put32(std::vector<std::uint8_t>& v, std::uint32_t x) {
    for (int i = 0; i < 4; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}
void put64(std::vector<std::uint8_t>& v, std::uint64_t x) {
    for (int i = 0; i < 8; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

struct madt_builder {
    std::vector<std::uint8_t> body;
    madt_builder() {
        put32(body, 0xfee00000);
        put32(body, 1);  // PC-AT compatible
    }
    madt_builder& lapic(std::uint8_t uid, std::uint8_t id, std::uint32_t flags) {
        body.insert(body.end(), {0, 8, uid, id});
        put32(body, flags);
        return *this;
    }
    madt_builder& x2apic(std::uint32_t id, std::uint32_t flags) {
        body.insert(body.end(), {9, 16, 0, 0});
        put32(body, id);
        put32(body, flags);
        put32(body, 0);
        return *this;
    }
    madt_builder& ioapic() {
        body.insert(body.end(), {1, 12, 0, 0});
        put32(body, 0xfec00000);
        put32(body, 0);
        return *this;
    }
};

// RSDP at 0xe0010, root table at 0x2000, MADT at 0x3000, another table at 0x4000.
struct firmware {
    fake_phys mem{0, 1 << 20};

    void install(const madt_builder& m, bool xsdt, bool with_madt = true) {
        auto madt = table("APIC", m.body);
        auto other = table("FACP", std::vector<std::uint8_t>(80));
        std::memcpy(mem.bytes.data() + 0x3000, madt.data(), madt.size());
        std::memcpy(mem.bytes.data() + 0x4000, other.data(), other.size());
        std::vector<std::uint8_t> entries;
        if (xsdt) {
            put64(entries, 0x4000);
            if (with_madt) put64(entries, 0x3000);
        } else {
            put32(entries, 0x4000);
            if (with_madt) put32(entries, 0x3000);
        }
        auto root = table(xsdt ? "XSDT" : "RSDT", entries);
        std::memcpy(mem.bytes.data() + 0x2000, root.data(), root.size());
        std::vector<std::uint8_t> r(36);
        std::memcpy(r.data(), "RSD PTR ", 8);
        r[15] = xsdt ? 2 : 0;
        const std::uint32_t rsdt = xsdt ? 0 : 0x2000, length = 36;
        std::memcpy(r.data() + 16, &rsdt, 4);
        std::memcpy(r.data() + 20, &length, 4);
        const std::uint64_t x = xsdt ? 0x2000 : 0;
        std::memcpy(r.data() + 24, &x, 8);
        r[8] = checksum_of(r, 20);
        r[32] = checksum_of(r, 36);
        std::memcpy(mem.bytes.data() + 0xe0010, r.data(), r.size());
    }
};

} // namespace

TEST_CASE("MADT through the RSDT: enabled local APICs in order, disabled ones skipped, IOAPIC ignored") {
    firmware fw;
    fw.install(madt_builder{}.lapic(0, 0, 1).ioapic().lapic(1, 2, 1).lapic(2, 5, 0).lapic(3, 7, 1), false);
    auto rsdp = acpi::find_rsdp_bios(fw.mem.reader());
    REQUIRE(rsdp);
    CHECK(*rsdp == 0xe0010);
    acpi::cpu_list cpus;
    REQUIRE(acpi::read_cpus(fw.mem.reader(), *rsdp, cpus).ok());
    CHECK(cpus.count == 3);
    CHECK(cpus.apic_ids[0] == 0);
    CHECK(cpus.apic_ids[1] == 2);
    CHECK(cpus.apic_ids[2] == 7);
    CHECK(cpus.skipped == 1);
    CHECK(cpus.lapic_address == 0xfee00000);
}

TEST_CASE("MADT through the XSDT, with x2APIC entries and a CPU listed in both forms once") {
    firmware fw;
    fw.install(madt_builder{}.lapic(0, 0, 1).x2apic(0, 1).x2apic(300, 1).x2apic(301, 0), true);
    acpi::cpu_list cpus;
    REQUIRE(acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus).ok());
    REQUIRE(cpus.count == 2);
    CHECK(cpus.apic_ids[0] == 0);
    CHECK(cpus.apic_ids[1] == 300);
    CHECK(cpus.skipped == 1);
}

TEST_CASE("the RSDP is found in the EBDA first") {
    firmware fw;
    fw.install(madt_builder{}.lapic(0, 0, 1), false);
    // A second RSDP copy in the EBDA (segment 0x9fc0 at 0x40e).
    std::memcpy(fw.mem.bytes.data() + 0x9fc00, fw.mem.bytes.data() + 0xe0010, 36);
    fw.mem.put<std::uint16_t>(0x40e, 0x9fc0);
    auto rsdp = acpi::find_rsdp_bios(fw.mem.reader());
    REQUIRE(rsdp);
    CHECK(*rsdp == 0x9fc00);
}

TEST_CASE("malformed firmware tables are errors, never a CPU list") {
    acpi::cpu_list cpus;
    SUBCASE("no RSDP") {
        fake_phys empty{0, 1 << 20};
        CHECK(!acpi::find_rsdp_bios(empty.reader()));
    }
    SUBCASE("RSDP checksum") {
        firmware fw;
        fw.install(madt_builder{}.lapic(0, 0, 1), false);
        fw.mem.bytes[0xe0010 + 9] ^= 1;
        CHECK(!acpi::find_rsdp_bios(fw.mem.reader()));
        CHECK(!acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus).ok());
    }
    SUBCASE("MADT checksum") {
        firmware fw;
        fw.install(madt_builder{}.lapic(0, 0, 1), false);
        fw.mem.bytes[0x3000 + 40] ^= 0x10;
        CHECK(!acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus).ok());
    }
    SUBCASE("an entry running past the table") {
        madt_builder m;
        m.lapic(0, 0, 1);
        m.body.insert(m.body.end(), {0, 40});  // claims 40 bytes, 2 remain
        firmware fw;
        fw.install(m, true);
        auto s = acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus);
        CHECK(!s.ok());
    }
    SUBCASE("no MADT") {
        firmware fw;
        fw.install(madt_builder{}.lapic(0, 0, 1), false, false);
        auto s = acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus);
        REQUIRE(!s.ok());
        CHECK(s.code() == errc::not_found);
    }
    SUBCASE("every processor disabled") {
        firmware fw;
        fw.install(madt_builder{}.lapic(0, 0, 0), false);
        CHECK(!acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus).ok());
    }
    SUBCASE("a zero-length entry") {
        madt_builder m;
        m.lapic(0, 0, 1);
        m.body.insert(m.body.end(), {0, 0, 0, 0});
        firmware fw;
        fw.install(m, false);
        CHECK(!acpi::read_cpus(fw.mem.reader(), 0xe0010, cpus).ok());
    }
}
