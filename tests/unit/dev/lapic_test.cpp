#include <doctest/doctest.h>
#include <optional>
#include "fakes.hpp"
#include "libhv/dev/lapic.hpp"
#include "libhv/dev/pic8259.hpp"

using namespace hv::dev;
using namespace hv::dev::apic_bits;

namespace {
constexpr std::uint64_t tsc_hz = 2'000'000'000;
constexpr std::uint64_t bus_hz = 100'000'000;
using u128 = unsigned __int128;

struct apic_rig {
    explicit apic_rig(unsigned n = 2, bool virtual_wire = false) {
        for (unsigned i = 0; i < n; ++i) {
            lapic_config c;
            c.apic_id = i;
            c.bsp = i == 0;
            c.timer_hz = bus_hz;
            c.virtual_wire = virtual_wire;
            cpu[i].emplace(c, bus, q);
            cpu[i]->set_notify(callback<>{[](void* p) { ++*static_cast<unsigned*>(p); }, &kicks[i]});
        }
    }
    hvtest::fake_clock clk{tsc_hz};
    timer_queue q{clk};
    apic_bus bus;
    std::optional<lapic> cpu[4];
    unsigned kicks[4]{};

    lapic& operator[](unsigned i) { return *cpu[i]; }
    std::uint32_t rd(unsigned i, apic_reg r) { return static_cast<std::uint32_t>(cpu[i]->mmio_read(default_base + static_cast<unsigned>(r), 4)); }
    void wr(unsigned i, apic_reg r, std::uint32_t v) { cpu[i]->mmio_write(default_base + static_cast<unsigned>(r), 4, v); }
    void enable(unsigned i) { wr(i, apic_reg::svr, svr_enable | 0xff); }
    void fixed(std::uint32_t dest, std::uint8_t vec, bool level = false) {
        apic_message m;
        m.dest = dest;
        m.vector = vec;
        m.level_triggered = level;
        bus.send(m);
    }
    std::uint32_t esr(unsigned i) {
        wr(i, apic_reg::esr, 0);
        return rd(i, apic_reg::esr);
    }
};

struct eoi_log final : eoi_listener {
    void eoi(std::uint8_t v) override { vectors.push_back(v); }
    std::vector<std::uint8_t> vectors;
};
} // namespace

TEST_CASE("lapic: reset state") {
    apic_rig r;
    CHECK(r[0].apic_base() == (default_base | base_enable | base_bsp));
    CHECK(r[1].apic_base() == (default_base | base_enable));
    CHECK(r.rd(1, apic_reg::id) == (1u << 24));
    CHECK(r.rd(0, apic_reg::version) == lapic::version_value);
    CHECK(r.rd(0, apic_reg::svr) == 0xff);
    CHECK(r.rd(0, apic_reg::dfr) == 0xffffffff);
    for (apic_reg l : {apic_reg::lvt_timer, apic_reg::lvt_lint0, apic_reg::lvt_lint1, apic_reg::lvt_error})
        CHECK(r.rd(0, l) == lvt_masked);
    CHECK(r[0].mmio_claims(default_base + 0x20));
    CHECK_FALSE(r[0].mmio_claims(default_base + 0x1000));
}

TEST_CASE("lapic: fixed interrupts need the software enable, then respect TPR/PPR and nesting") {
    apic_rig r;
    r.fixed(0, 0x50);
    CHECK_FALSE(r[0].irr(0x50));            // software-disabled: dropped
    r.enable(0);
    r.fixed(0, 0x50);
    CHECK(r[0].irr(0x50));
    CHECK(r.kicks[0] >= 1);
    r.wr(0, apic_reg::tpr, 0x50);
    CHECK_FALSE(r[0].pending_interrupt());  // class 5 does not beat TPR class 5
    r.wr(0, apic_reg::tpr, 0x4f);
    CHECK(r[0].pending_interrupt() == 0x50);
    r.wr(0, apic_reg::tpr, 0);
    CHECK(r[0].acknowledge_interrupt() == 0x50);
    CHECK(r[0].isr(0x50));
    CHECK_FALSE(r[0].irr(0x50));
    CHECK(r.rd(0, apic_reg::ppr) == 0x50);
    r.fixed(0, 0x45);
    CHECK_FALSE(r[0].pending_interrupt());  // same or lower class waits for EOI
    r.fixed(0, 0x61);
    CHECK(r[0].pending_interrupt() == 0x61);
    CHECK(r[0].acknowledge_interrupt() == 0x61);
    r.wr(0, apic_reg::eoi, 0);              // EOI ends the highest in service: 0x61
    CHECK_FALSE(r[0].isr(0x61));
    CHECK(r[0].isr(0x50));
    r.wr(0, apic_reg::eoi, 0);
    CHECK(r.rd(0, apic_reg::ppr) == 0);
    CHECK(r[0].acknowledge_interrupt() == 0x45);
    CHECK(r.rd(0, apic_reg::isr0) == 0);
    CHECK(r.rd(0, static_cast<apic_reg>(0x100 + 0x20)) == (1u << (0x45 - 0x40)));   // ISR word 2
}

TEST_CASE("lapic: illegal vectors set ESR bits; ESR is latched by a write") {
    apic_rig r;
    r.enable(0);
    r.fixed(0, 5);
    CHECK(r.rd(0, apic_reg::esr) == 0);     // not yet latched
    CHECK(r.esr(0) == esr_recv_illegal_vector);
    CHECK(r.esr(0) == 0);
    r.wr(0, apic_reg::icr_lo, 3);           // fixed IPI with vector 3
    CHECK(r.esr(0) == esr_send_illegal_vector);
    (void)r[0].mmio_read(default_base + 0x290, 4);  // reserved register
    CHECK(r.esr(0) == esr_illegal_register);
}

TEST_CASE("lapic: an error interrupt through LVT error") {
    apic_rig r;
    r.enable(0);
    r.wr(0, apic_reg::lvt_error, 0xfe);
    r.fixed(0, 1);
    CHECK(r[0].pending_interrupt() == 0xfe);
}

TEST_CASE("lapic: IPIs by physical and logical destination; delivery status reads idle") {
    apic_rig r{3};
    for (unsigned i = 0; i < 3; ++i) r.enable(i);
    r.wr(0, apic_reg::icr_hi, 2u << 24);
    r.wr(0, apic_reg::icr_lo, icr_pending | 0x40);      // the status bit is read-only
    CHECK(r[2].irr(0x40));
    CHECK_FALSE(r[1].irr(0x40));
    CHECK((r.rd(0, apic_reg::icr_lo) & icr_pending) == 0);
    CHECK(r.rd(0, apic_reg::icr_lo) == 0x40);
    CHECK(r.rd(0, apic_reg::icr_hi) == (2u << 24));
    // Flat logical: CPU1 in group bit 1, CPU2 in bit 2.
    r.wr(1, apic_reg::ldr, 0x02000000);
    r.wr(2, apic_reg::ldr, 0x04000000);
    r.wr(0, apic_reg::icr_hi, 0x06u << 24);
    r.wr(0, apic_reg::icr_lo, icr_logical | 0x41);
    CHECK(r[1].irr(0x41));
    CHECK(r[2].irr(0x41));
    // Cluster logical: cluster 1, member bit 0 matches CPU1 only.
    r.wr(1, apic_reg::dfr, 0x0fffffff);
    r.wr(2, apic_reg::dfr, 0x0fffffff);
    r.wr(1, apic_reg::ldr, 0x11000000);
    r.wr(2, apic_reg::ldr, 0x22000000);
    r.wr(0, apic_reg::icr_hi, 0x11u << 24);
    r.wr(0, apic_reg::icr_lo, icr_logical | 0x42);
    CHECK(r[1].irr(0x42));
    CHECK_FALSE(r[2].irr(0x42));
    // Shorthands.
    r.wr(0, apic_reg::icr_lo, (3u << 18) | 0x43);       // all excluding self
    CHECK_FALSE(r[0].irr(0x43));
    CHECK(r[1].irr(0x43));
    CHECK(r[2].irr(0x43));
    r.wr(0, apic_reg::icr_lo, (1u << 18) | 0x44);       // self
    CHECK(r[0].irr(0x44));
    CHECK_FALSE(r[1].irr(0x44));
}

TEST_CASE("lapic: NMI, INIT and SIPI delivery") {
    apic_rig r;
    r.enable(0);
    r.enable(1);
    r.wr(1, apic_reg::tpr, 0x20);
    r.wr(0, apic_reg::icr_hi, 1u << 24);
    r.wr(0, apic_reg::icr_lo, 4u << 8);                 // NMI
    CHECK(r[1].take_nmi());
    CHECK_FALSE(r[1].take_nmi());
    // SIPI before INIT: an AP out of RESET is waiting, so the first one counts.
    r.wr(0, apic_reg::icr_lo, (6u << 8) | 0x9a);
    CHECK(r[1].take_sipi() == 0x9a);
    r.wr(0, apic_reg::icr_lo, (6u << 8) | 0x9b);        // not waiting any more
    CHECK_FALSE(r[1].take_sipi());
    // INIT assert resets the APIC (ID kept) and waits for one SIPI.
    r.wr(0, apic_reg::icr_lo, (5u << 8) | icr_assert | icr_level);
    CHECK(r[1].take_init());
    CHECK(r.rd(1, apic_reg::tpr) == 0);
    CHECK(r.rd(1, apic_reg::svr) == 0xff);
    CHECK(r.rd(1, apic_reg::id) == (1u << 24));
    r.wr(0, apic_reg::icr_lo, (5u << 8) | icr_level);   // INIT level de-assert: no effect
    CHECK_FALSE(r[1].take_init());
    r.wr(0, apic_reg::icr_lo, (6u << 8) | 0x10);
    r.wr(0, apic_reg::icr_lo, (6u << 8) | 0x11);        // the second SIPI is ignored
    CHECK(r[1].take_sipi() == 0x10);
    CHECK_FALSE(r[1].take_sipi());
    CHECK((r.rd(0, apic_reg::icr_lo) & icr_pending) == 0);
}

TEST_CASE("lapic: lowest-priority delivery picks the lowest processor priority") {
    apic_rig r{3};
    for (unsigned i = 0; i < 3; ++i) r.enable(i);
    r.wr(0, apic_reg::tpr, 0x80);
    r.wr(1, apic_reg::tpr, 0x30);
    r.wr(2, apic_reg::tpr, 0x60);
    apic_message m;
    m.dest = 0xff;
    m.mode = delivery_mode::lowest_priority;
    m.vector = 0x70;
    r.bus.send(m);
    CHECK(r[1].irr(0x70));
    CHECK_FALSE(r[0].irr(0x70));
    CHECK_FALSE(r[2].irr(0x70));
}

TEST_CASE("lapic: level-triggered vectors set TMR and broadcast their EOI") {
    apic_rig r;
    eoi_log log;
    r.bus.add_eoi_listener(log);
    r.enable(0);
    r.fixed(0, 0x60, true);
    r.fixed(0, 0x61, false);
    CHECK(r[0].tmr(0x60));
    CHECK_FALSE(r[0].tmr(0x61));
    CHECK(r[0].acknowledge_interrupt() == 0x61);
    r.wr(0, apic_reg::eoi, 0);
    CHECK(log.vectors.empty());
    CHECK(r[0].acknowledge_interrupt() == 0x60);
    r.wr(0, apic_reg::eoi, 0);
    CHECK(log.vectors == std::vector<std::uint8_t>{0x60});
}

TEST_CASE("lapic: one-shot timer fires at the exact guest tick, current count runs down") {
    for (std::uint32_t dcr : {0x0u, 0x3u, 0xbu}) {     // divide by 2, 16, 1
        CAPTURE(dcr);
        apic_rig r{1};
        r.enable(0);
        const std::uint32_t div = dcr == 0 ? 2 : dcr == 3 ? 16 : 1;
        r.clk.set(123'456'789);
        r.wr(0, apic_reg::timer_divide, dcr);
        r.wr(0, apic_reg::lvt_timer, 0x30);
        const std::uint32_t count = 5000;
        const std::uint64_t t0 = r.clk.now();
        r.wr(0, apic_reg::timer_initial, count);
        const std::uint64_t start = static_cast<std::uint64_t>(u128(t0) * bus_hz / tsc_hz);
        const std::uint64_t fire_bus = start + std::uint64_t{count} * div;
        const std::uint64_t fire_tick = static_cast<std::uint64_t>((u128(fire_bus) * tsc_hz + bus_hz - 1) / bus_hz);
        r.clk.set(t0 + (fire_tick - t0) / 2);
        const std::uint64_t bus_now = static_cast<std::uint64_t>(u128(r.clk.now()) * bus_hz / tsc_hz);
        CHECK(r.rd(0, apic_reg::timer_current) == count - (bus_now - start) / div);
        hvtest::run_until(r.clk, r.q, fire_tick - 1, 1000);
        CHECK_FALSE(r[0].irr(0x30));
        hvtest::run_until(r.clk, r.q, fire_tick, 1);
        CHECK(r[0].irr(0x30));
        CHECK(r.rd(0, apic_reg::timer_current) == 0);
        CHECK_FALSE(r.q.next_deadline());
    }
}

TEST_CASE("lapic: periodic timer interrupts at its period, exactly") {
    apic_rig r{1};
    r.enable(0);
    r.wr(0, apic_reg::timer_divide, 0x1);      // divide by 4
    r.wr(0, apic_reg::lvt_timer, (1u << 17) | 0xec);
    const std::uint32_t count = 2500;          // 10000 bus ticks = 100 us
    r.wr(0, apic_reg::timer_initial, count);
    unsigned fired = 0;
    const std::uint64_t end = tsc_hz / 100;     // 10 ms
    std::uint64_t t = 0;
    while (t < end) {
        t += 50'000;
        hvtest::run_until(r.clk, r.q, t, 50'000);
        if (r[0].pending_interrupt() == 0xec) {
            REQUIRE(r[0].acknowledge_interrupt() == 0xec);
            r.wr(0, apic_reg::eoi, 0);
            ++fired;
        }
    }
    const std::uint64_t bus_end = static_cast<std::uint64_t>(u128(end) * bus_hz / tsc_hz);
    CHECK(fired == bus_end / (std::uint64_t{count} * 4));
    CHECK(r.rd(0, apic_reg::timer_current) >= 1);
    CHECK(r.rd(0, apic_reg::timer_current) <= count);
}

TEST_CASE("lapic: a masked timer counts but does not interrupt; initial count 0 stops it") {
    apic_rig r{1};
    r.enable(0);
    r.wr(0, apic_reg::timer_divide, 0xb);
    r.wr(0, apic_reg::lvt_timer, lvt_masked | 0x30);
    r.wr(0, apic_reg::timer_initial, 100);
    hvtest::run_until(r.clk, r.q, tsc_hz / 1000, 1000);
    CHECK_FALSE(r[0].irr(0x30));
    CHECK(r.rd(0, apic_reg::timer_current) == 0);
    r.wr(0, apic_reg::lvt_timer, (1u << 17) | 0x30);
    r.wr(0, apic_reg::timer_initial, 100);
    r.wr(0, apic_reg::timer_initial, 0);
    hvtest::run_until(r.clk, r.q, tsc_hz / 100, 1000);
    CHECK_FALSE(r[0].irr(0x30));
}

TEST_CASE("lapic: TSC-deadline mode fires when the TSC reaches the deadline") {
    apic_rig r{1};
    r.enable(0);
    CHECK(r[0].write_msr(apic_msr::tsc_deadline, 5000) == msr_outcome::ok);   // ignored outside the mode
    CHECK(r[0].read_msr(apic_msr::tsc_deadline).value == 0);
    r.wr(0, apic_reg::lvt_timer, (2u << 17) | 0x31);
    r.wr(0, apic_reg::timer_initial, 1000);        // ignored in TSC-deadline mode
    CHECK(r.rd(0, apic_reg::timer_initial) == 0);
    r.clk.set(1'000'000);
    CHECK(r[0].write_msr(apic_msr::tsc_deadline, 1'777'777) == msr_outcome::ok);
    CHECK(r[0].read_msr(apic_msr::tsc_deadline).value == 1'777'777);
    hvtest::run_until(r.clk, r.q, 1'777'776, 10'000);
    CHECK_FALSE(r[0].irr(0x31));
    hvtest::run_until(r.clk, r.q, 1'777'777, 1);
    CHECK(r[0].irr(0x31));
    CHECK(r[0].read_msr(apic_msr::tsc_deadline).value == 0);
    // A deadline already passed fires at once; 0 disarms; leaving the mode disarms.
    r.wr(0, apic_reg::eoi, 0);
    CHECK(r[0].acknowledge_interrupt() == 0x31);
    r.wr(0, apic_reg::eoi, 0);
    CHECK(r[0].write_msr(apic_msr::tsc_deadline, 10) == msr_outcome::ok);
    CHECK(r[0].irr(0x31));
    CHECK(r[0].acknowledge_interrupt() == 0x31);
    r.wr(0, apic_reg::eoi, 0);
    CHECK(r[0].write_msr(apic_msr::tsc_deadline, r.clk.now() + 100) == msr_outcome::ok);
    r.wr(0, apic_reg::lvt_timer, 0x31);             // back to one-shot
    hvtest::run_until(r.clk, r.q, r.clk.now() + 1000, 10);
    CHECK_FALSE(r[0].irr(0x31));
}

TEST_CASE("lapic: IA32_APIC_BASE disable, re-enable and relocation") {
    apic_rig r{1};
    r.enable(0);
    r.wr(0, apic_reg::tpr, 0x30);
    CHECK(r[0].write_msr(apic_msr::apic_base, default_base | base_bsp) == msr_outcome::ok);   // EN=0
    CHECK(r[0].mode() == apic_mode::disabled);
    CHECK_FALSE(r[0].mmio_claims(default_base));
    r.fixed(0, 0x50);
    CHECK_FALSE(r[0].irr(0x50));                        // a disabled APIC takes no messages
    CHECK(r[0].read_msr(0x802).outcome == msr_outcome::gp);
    const std::uint64_t moved = 0xfed00000;
    CHECK(r[0].write_msr(apic_msr::apic_base, moved | base_enable | base_bsp) == msr_outcome::ok);
    CHECK(r[0].mode() == apic_mode::xapic);
    CHECK(r[0].apic_base() == (moved | base_enable | base_bsp));
    CHECK(r[0].mmio_claims(moved + 0x80));
    CHECK_FALSE(r[0].mmio_claims(default_base + 0x80));
    CHECK(r[0].mmio_read(moved + 0x80, 4) == 0);        // state did not survive the disable
    CHECK(r[0].mmio_read(moved + 0xf0, 4) == 0xff);
    CHECK(r[0].write_msr(apic_msr::apic_base, moved | base_enable | 0x1) == msr_outcome::gp);   // reserved bit
    CHECK(r[0].write_msr(apic_msr::apic_base, (1ull << 40) | base_enable) == msr_outcome::gp);  // beyond MAXPHYADDR
}

TEST_CASE("lapic: xAPIC/x2APIC switching follows the architectural state machine") {
    apic_rig r{2};
    const std::uint64_t xapic = default_base | base_enable, x2 = xapic | base_extd, off = default_base;
    CHECK(r[1].write_msr(apic_msr::apic_base, off | base_extd) == msr_outcome::gp);  // EN=0, EXTD=1: invalid
    CHECK(r[1].write_msr(apic_msr::apic_base, x2) == msr_outcome::ok);              // xAPIC → x2APIC
    CHECK(r[1].mode() == apic_mode::x2apic);
    CHECK_FALSE(r[1].mmio_claims(default_base));
    CHECK(r[1].write_msr(apic_msr::apic_base, xapic) == msr_outcome::gp);           // x2APIC → xAPIC
    CHECK(r[1].write_msr(apic_msr::apic_base, off) == msr_outcome::ok);             // x2APIC → disabled
    CHECK(r[1].write_msr(apic_msr::apic_base, x2) == msr_outcome::gp);              // disabled → x2APIC
    CHECK(r[1].write_msr(apic_msr::apic_base, xapic) == msr_outcome::ok);           // disabled → xAPIC
    CHECK(r[1].write_msr(apic_msr::apic_base, x2) == msr_outcome::ok);
    CHECK(r[1].read_msr(apic_msr::apic_base).value == x2);
    lapic_config no_x2;
    no_x2.apic_id = 7;
    no_x2.x2apic = false;
    lapic plain{no_x2, r.bus, r.q};
    CHECK(plain.write_msr(apic_msr::apic_base, x2) == msr_outcome::gp);
}

TEST_CASE("lapic: x2APIC MSR access rules and 32-bit destinations") {
    apic_rig r{2};
    for (unsigned i = 0; i < 2; ++i)
        REQUIRE(r[i].write_msr(apic_msr::apic_base, default_base | base_enable | base_extd | (i == 0 ? base_bsp : 0)) == msr_outcome::ok);
    CHECK(r[1].read_msr(0x802).value == 1);                         // full 32-bit ID
    CHECK(r[1].read_msr(0x80d).value == ((0u << 16) | (1u << 1)));  // LDR from the ID
    CHECK(r[0].read_msr(0x803).value == lapic::version_value);
    CHECK(r[0].read_msr(0x80b).outcome == msr_outcome::gp);         // EOI is write-only
    CHECK(r[0].read_msr(0x83f).outcome == msr_outcome::gp);         // SELF IPI is write-only
    CHECK(r[0].read_msr(0x80e).outcome == msr_outcome::gp);         // no DFR in x2APIC mode
    CHECK(r[0].read_msr(0x831).outcome == msr_outcome::gp);         // ICR is one MSR
    CHECK(r[0].write_msr(0x802, 5) == msr_outcome::gp);             // ID is read-only
    CHECK(r[0].write_msr(0x80d, 5) == msr_outcome::gp);             // so is LDR
    CHECK(r[0].write_msr(0x80b, 1) == msr_outcome::gp);             // EOI must be 0
    CHECK(r[0].write_msr(0x808, 1ull << 32) == msr_outcome::gp);    // reserved upper half
    CHECK(r[0].read_msr(0x1234).outcome == msr_outcome::unhandled);
    for (unsigned i = 0; i < 2; ++i) REQUIRE(r[i].write_msr(0x80f, svr_enable | 0xff) == msr_outcome::ok);
    CHECK(r[0].write_msr(0x830, (1ull << 32) | 0x55) == msr_outcome::ok);   // fixed IPI to x2APIC ID 1
    CHECK(r[1].irr(0x55));
    CHECK(r[0].read_msr(0x830).value == ((1ull << 32) | 0x55));
    CHECK(r[0].write_msr(0x83f, 0x66) == msr_outcome::ok);          // self IPI
    CHECK(r[0].irr(0x66));
    CHECK(r[0].acknowledge_interrupt() == 0x66);
    CHECK(r[0].read_msr(0x810 + 3).value == (1u << (0x66 - 0x60)));    // ISR word 3
    CHECK(r[0].write_msr(0x80b, 0) == msr_outcome::ok);
    CHECK_FALSE(r[0].isr(0x66));
    CHECK_FALSE(r[0].mmio_claims(default_base + 0x20));
}

TEST_CASE("lapic: 8259 interrupts arrive through LINT0 ExtINT, or directly when disabled") {
    apic_rig r{1, true};                    // BSP in virtual-wire mode
    pic_pair pic;
    r.bus.set_ext_int(&pic);
    pic.on_intr(callback<bool>{[](void* b, bool l) { static_cast<apic_bus*>(b)->set_lint0_all(l); }, &r.bus});
    pic.master().write(0, 1, 0x11);
    pic.master().write(1, 1, 0x30);
    pic.master().write(1, 1, 0x04);
    pic.master().write(1, 1, 0x01);
    unsigned before = r.kicks[0];
    pic.set_irq(1, true);
    CHECK(r.kicks[0] > before);
    CHECK(r[0].pending_interrupt() == 0x31);
    CHECK(r[0].acknowledge_interrupt() == 0x31);
    CHECK(pic.master().isr() == 0x02);
    pic.master().write(0, 1, 0x20);
    r.wr(0, apic_reg::lvt_lint0, lvt_masked | 0x700);
    pic.set_irq(3, true);
    CHECK_FALSE(r[0].pending_interrupt());  // LINT0 masked
    REQUIRE(r[0].write_msr(apic_msr::apic_base, default_base | base_bsp) == msr_outcome::ok);
    CHECK(r[0].pending_interrupt() == 0x33);    // no APIC: INTR goes straight in
    CHECK(r[0].acknowledge_interrupt() == 0x33);
}

TEST_CASE("lapic: odd-sized and misaligned MMIO accesses are harmless") {
    apic_rig r{1};
    r.wr(0, apic_reg::tpr, 0x5a);
    r[0].mmio_write(default_base + 0x80, 1, 0x11);      // byte write: dropped
    r[0].mmio_write(default_base + 0x82, 4, 0x11);      // misaligned: dropped
    CHECK(r.rd(0, apic_reg::tpr) == 0x5a);
    CHECK(r[0].mmio_read(default_base + 0x80, 1) == 0x5a);
    CHECK(r[0].mmio_read(default_base + 0x31, 1) == 0x00);  // version bits 15:8
    CHECK(r[0].mmio_read(default_base + 0x32, 2) == 0x0005);
    CHECK(r[0].mmio_read(default_base + 0x38, 4) == 0);     // beyond the 32-bit register
    CHECK(r[0].mmio_read(default_base + 0x30, 8) == lapic::version_value);
    r[0].mmio_write(default_base + 0x80, 8, 0xffffffff00000033ull);
    CHECK(r.rd(0, apic_reg::tpr) == 0x33);
    r[0].mmio_write(default_base + 0xff0, 4, 1);        // reserved: ESR illegal register
    CHECK(r.esr(0) == esr_illegal_register);
    r[0].mmio_write(default_base + 0x3f0, 4, 0x40);     // SELF IPI is x2APIC-only
    CHECK_FALSE(r[0].irr(0x40));
}
