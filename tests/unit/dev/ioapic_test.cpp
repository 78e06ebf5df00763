#include <doctest/doctest.h>
#include <optional>
#include "fakes.hpp"
#include "libhv/dev/ioapic.hpp"

using namespace hv::dev;
using namespace hv::dev::ioapic_bits;

namespace {
struct io_rig {
    io_rig() {
        for (unsigned i = 0; i < 2; ++i) {
            lapic_config c;
            c.apic_id = i;
            c.bsp = i == 0;
            c.virtual_wire = false;
            cpu[i].emplace(c, bus, q);
            cpu[i]->mmio_write(apic_bits::default_base + 0xf0, 4, apic_bits::svr_enable | 0xff);
        }
    }
    hvtest::fake_clock clk{1'000'000'000};
    timer_queue q{clk};
    apic_bus bus;
    std::optional<lapic> cpu[2];
    ioapic io{bus, 2};

    std::uint32_t reg(std::uint8_t idx) {
        io.write(0, 4, idx);
        return static_cast<std::uint32_t>(io.read(0x10, 4));
    }
    void set_reg(std::uint8_t idx, std::uint32_t v) {
        io.write(0, 4, idx);
        io.write(0x10, 4, v);
    }
    void route(unsigned pin, std::uint64_t entry) {
        set_reg(static_cast<std::uint8_t>(0x10 + 2 * pin + 1), static_cast<std::uint32_t>(entry >> 32));
        set_reg(static_cast<std::uint8_t>(0x10 + 2 * pin), static_cast<std::uint32_t>(entry));
    }
    std::uint64_t entry(unsigned pin) {
        return reg(static_cast<std::uint8_t>(0x10 + 2 * pin)) | std::uint64_t{reg(static_cast<std::uint8_t>(0x11 + 2 * pin))} << 32;
    }
    void eoi(unsigned c) { cpu[c]->mmio_write(apic_bits::default_base + 0xb0, 4, 0); }
};
constexpr std::uint64_t dest(unsigned id) { return std::uint64_t{id} << dest_shift; }
} // namespace

TEST_CASE("ioapic: identification and a masked reset state") {
    io_rig r;
    CHECK(r.reg(0x00) == (2u << 24));
    CHECK(r.reg(0x01) == (0x20u | (23u << 16)));
    for (unsigned pin = 0; pin < ioapic::pins; ++pin) CHECK(r.entry(pin) == masked);
    CHECK(r.reg(0x10 + 2 * 24) == 0xffffffff);      // past the table
    CHECK(r.io.read(0x20, 4) == 0xffffffff);
}

TEST_CASE("ioapic: edge pins deliver on rising edges to the destination APIC") {
    io_rig r;
    r.route(4, dest(1) | 0x44);
    CHECK((r.entry(4) & ~(delivery_status | remote_irr)) == (dest(1) | 0x44));
    r.io.set_irq(4, true);
    CHECK(r.cpu[1]->irr(0x44));
    CHECK_FALSE(r.cpu[0]->irr(0x44));
    CHECK(r.cpu[1]->acknowledge_interrupt() == 0x44);
    r.eoi(1);
    r.io.set_irq(4, true);                      // no new edge
    CHECK_FALSE(r.cpu[1]->irr(0x44));
    r.io.set_irq(4, false);
    r.io.set_irq(4, true);
    CHECK(r.cpu[1]->irr(0x44));
}

TEST_CASE("ioapic: masked pins deliver nothing; active-low polarity inverts") {
    io_rig r;
    r.route(5, masked | 0x45);
    r.io.set_irq(5, true);
    CHECK_FALSE(r.cpu[0]->irr(0x45));
    r.route(6, active_low | 0x46);
    r.io.set_irq(6, true);
    CHECK_FALSE(r.cpu[0]->irr(0x46));
    r.io.set_irq(6, false);                     // falling line = asserting edge
    CHECK(r.cpu[0]->irr(0x46));
}

TEST_CASE("ioapic: level pins hold remote IRR until the EOI, then re-deliver if still asserted") {
    io_rig r;
    r.route(9, level | 0x59);
    r.io.set_irq(9, true);
    CHECK(r.cpu[0]->irr(0x59));
    CHECK((r.entry(9) & remote_irr) != 0);
    CHECK(r.cpu[0]->tmr(0x59));
    CHECK(r.cpu[0]->acknowledge_interrupt() == 0x59);
    r.io.set_irq(9, false);
    r.io.set_irq(9, true);                      // remote IRR set: not again
    CHECK_FALSE(r.cpu[0]->irr(0x59));
    r.eoi(0);                                   // EOI broadcast clears remote IRR; line still high
    CHECK((r.entry(9) & remote_irr) != 0);
    CHECK(r.cpu[0]->irr(0x59));
    CHECK(r.cpu[0]->acknowledge_interrupt() == 0x59);
    r.io.set_irq(9, false);
    r.eoi(0);
    CHECK((r.entry(9) & remote_irr) == 0);
    CHECK_FALSE(r.cpu[0]->irr(0x59));
}

TEST_CASE("ioapic: unmasking an asserted level pin delivers it; the EOI register works too") {
    io_rig r;
    r.route(10, masked | level | 0x5a);
    r.io.set_irq(10, true);
    CHECK_FALSE(r.cpu[0]->irr(0x5a));
    r.route(10, level | 0x5a);
    CHECK(r.cpu[0]->irr(0x5a));
    r.io.set_irq(10, false);
    r.io.write(0x40, 4, 0x5a);                  // directed EOI (version 0x20)
    CHECK((r.entry(10) & remote_irr) == 0);
}

TEST_CASE("ioapic: priorities among pins come from their vectors at the local APIC") {
    io_rig r;
    r.route(1, 0x31);
    r.route(3, 0x83);
    r.route(7, 0x57);
    for (unsigned pin : {1u, 3u, 7u}) r.io.set_irq(pin, true);
    CHECK(r.cpu[0]->acknowledge_interrupt() == 0x83);
    CHECK_FALSE(r.cpu[0]->pending_interrupt());     // 0x57 and 0x31 are below class 8
    r.eoi(0);
    CHECK(r.cpu[0]->acknowledge_interrupt() == 0x57);
    r.eoi(0);
    r.cpu[0]->mmio_write(apic_bits::default_base + 0x80, 4, 0x40);   // TPR
    CHECK_FALSE(r.cpu[0]->pending_interrupt());
    r.cpu[0]->mmio_write(apic_bits::default_base + 0x80, 4, 0x20);
    CHECK(r.cpu[0]->acknowledge_interrupt() == 0x31);
}

TEST_CASE("ioapic: logical and broadcast destinations, NMI delivery mode") {
    io_rig r;
    r.cpu[0]->mmio_write(apic_bits::default_base + 0xd0, 4, 0x01000000);
    r.cpu[1]->mmio_write(apic_bits::default_base + 0xd0, 4, 0x02000000);
    r.route(11, logical | dest(0x02) | 0x6b);
    r.io.set_irq(11, true);
    CHECK(r.cpu[1]->irr(0x6b));
    CHECK_FALSE(r.cpu[0]->irr(0x6b));
    r.route(12, dest(0xff) | 0x6c);
    r.io.set_irq(12, true);
    CHECK(r.cpu[0]->irr(0x6c));
    CHECK(r.cpu[1]->irr(0x6c));
    r.route(13, (4u << 8) | dest(1));
    r.io.set_irq(13, true);
    CHECK(r.cpu[1]->take_nmi());
    r.io.set_irq(99, true);                     // not one of our GSIs: ignored
}
