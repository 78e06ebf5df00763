#include <doctest/doctest.h>
#include <string>
#include <vector>
#include "fakes.hpp"
#include "libhv/dev/layout.hpp"
#include "libhv/dev/machine.hpp"
#include "libhv/arch/x86/acpi_madt.hpp"
#include <cstring>

using namespace hv::dev;

namespace {
constexpr std::uint64_t hz = 1'000'000'000;
constexpr std::uint64_t mib = 1ull << 20;

struct pc_rig {
    explicit pc_rig(machine_config cfg = machine_config::pc(2, 512 * mib)) : m{cfg, clk} {
        m.com1().set_sink(callback<std::uint8_t>{[](void* c, std::uint8_t b) { static_cast<std::string*>(c)->push_back(static_cast<char>(b)); }, &serial});
    }
    hvtest::fake_clock clk{hz};
    machine m;
    std::string serial;
    void run_to(std::uint64_t t, std::uint64_t step) {
        while (clk.now() < t) {
            clk.set(std::min(t, clk.now() + step));
            m.poll();
        }
    }
};
} // namespace

TEST_CASE("machine: a standard PC answers on its ports; empty ports read all-ones") {
    pc_rig r;
    r.m.io_write(0x3f8, 1, 'o');
    r.m.io_write(0x3f8, 1, 'k');
    CHECK(r.serial == "ok");
    CHECK((r.m.io_read(0x3fd, 1) & 0x60) == 0x60);
    CHECK(r.m.io_read(0x2f8, 1) == 0xff);           // no COM2
    CHECK(r.m.io_read(0x1234, 4) == 0xffffffff);
    r.m.io_write(0x1234, 2, 0);
    CHECK(r.m.ports().stats().unclaimed_reads >= 5);
    CHECK(r.m.ports().stats().unclaimed_writes == 2);
    r.m.io_write(0x80, 1, 0x42);
    CHECK(r.m.post().last() == 0x42);
    r.m.io_write(0x70, 1, 0x34);                    // CMOS: memory above 16 MiB
    std::uint32_t lo = r.m.io_read(0x71, 1);
    r.m.io_write(0x70, 1, 0x35);
    std::uint32_t hi = r.m.io_read(0x71, 1);
    CHECK((lo | hi << 8) == (512 * mib - 16 * mib) / 65536);
}

TEST_CASE("machine: debug exit ends the run with QEMU's status") {
    pc_rig r;
    CHECK_FALSE(r.m.has_event());
    r.m.io_write(layout::debug_exit, 4, 0x10);
    event e = r.m.take_event();
    CHECK(e.kind == event_kind::debug_exit);
    CHECK(e.value == 0x21);
    CHECK_FALSE(r.m.has_event());
}

TEST_CASE("machine: PIT IRQ0 reaches the BSP through the 8259 in virtual-wire mode") {
    pc_rig r;
    // 8259 init as Linux does it, IRQ0 unmasked only.
    for (auto [port, v] : std::vector<std::pair<std::uint16_t, std::uint8_t>>{
             {0x20, 0x11}, {0x21, 0x30}, {0x21, 0x04}, {0x21, 0x01}, {0xa0, 0x11}, {0xa1, 0x38},
             {0xa1, 0x02}, {0xa1, 0x01}, {0x21, 0xfe}, {0xa1, 0xff}})
        r.m.io_write(port, 1, v);
    unsigned kicks = 0;
    r.m.set_notify(0, callback<>{[](void* c) { ++*static_cast<unsigned*>(c); }, &kicks});
    r.m.io_write(0x43, 1, 0x34);
    r.m.io_write(0x40, 1, 0xa9);
    r.m.io_write(0x40, 1, 0x04);                    // 1193 → ~1 kHz
    r.run_to(hz / 2000, hz / 100000);               // 0.5 ms: no edge yet
    CHECK_FALSE(r.m.cpu(0).pending_interrupt());
    r.run_to(hz / 500, hz / 100000);                // 2 ms
    CHECK(kicks > 0);
    CHECK(r.m.cpu(0).pending_interrupt() == 0x30);
    CHECK_FALSE(r.m.cpu(1).pending_interrupt());    // APs have LINT0 masked
    CHECK(r.m.cpu(0).acknowledge_interrupt() == 0x30);
    r.m.io_write(0x20, 1, 0x20);
}

TEST_CASE("machine: PIT IRQ0 reaches a local APIC through IOAPIC pin 2") {
    pc_rig r;
    r.m.mmio_write(0, layout::ioapic, 4, 0x10 + 2 * 2 + 1);
    r.m.mmio_write(0, layout::ioapic + 0x10, 4, 1u << 24);     // destination APIC 1
    r.m.mmio_write(0, layout::ioapic, 4, 0x10 + 2 * 2);
    r.m.mmio_write(0, layout::ioapic + 0x10, 4, 0x41);
    for (unsigned c = 0; c < 2; ++c) r.m.mmio_write(c, layout::lapic + 0xf0, 4, 0x1ff);
    r.m.io_write(0x43, 1, 0x34);
    r.m.io_write(0x40, 1, 0x00);
    r.m.io_write(0x40, 1, 0x10);
    r.run_to(hz / 100, hz / 100000);
    CHECK(r.m.cpu(1).pending_interrupt() == 0x41);
    CHECK_FALSE(r.m.cpu(0).pending_interrupt());
    CHECK(r.m.io_apic().delivered() >= 1);
}

TEST_CASE("machine: each vCPU sees its own local APIC page and MSRs") {
    pc_rig r;
    CHECK(r.m.mmio_claims(0, layout::lapic + 0x20));
    CHECK(r.m.mmio_read(0, layout::lapic + 0x20, 4) == 0);
    CHECK(r.m.mmio_read(1, layout::lapic + 0x20, 4) == (1u << 24));
    CHECK(r.m.mmio_read(1, layout::lapic + 0x30, 4) == lapic::version_value);
    CHECK(r.m.read_msr(1, apic_msr::apic_base).value == (layout::lapic | apic_bits::base_enable));
    CHECK(r.m.write_msr(1, apic_msr::apic_base, layout::lapic | apic_bits::base_enable | apic_bits::base_extd) == msr_outcome::ok);
    CHECK(r.m.read_msr(1, 0x802).value == 1);
    CHECK_FALSE(r.m.mmio_claims(1, layout::lapic + 0x20));
    CHECK(r.m.mmio_read(1, layout::lapic + 0x20, 4) == 0xffffffff);    // nothing there now
    CHECK(r.m.read_msr(0, 0x10).outcome == msr_outcome::unhandled);
    CHECK(r.m.read_msr(7, apic_msr::apic_base).outcome == msr_outcome::unhandled);
    CHECK(r.m.mmio_read(0, 0xd0000000, 8) == ~0ull);
}

TEST_CASE("machine: fw_cfg reports the CPUs, RAM and an e820 file through its ports") {
    pc_rig r{machine_config::pc(3, 1024 * mib, 512 * mib)};
    auto select = [&](std::uint16_t k) { r.m.io_write(0x510, 2, k); };
    auto byte = [&]() { return static_cast<std::uint8_t>(r.m.io_read(0x511, 1)); };
    select(0);
    std::string sig;
    for (int i = 0; i < 4; ++i) sig.push_back(static_cast<char>(byte()));
    CHECK(sig == "QEMU");
    select(0x05);
    CHECK((byte() | byte() << 8) == 3);
    select(0x03);
    std::uint64_t ram = 0;
    for (int i = 0; i < 8; ++i) ram |= std::uint64_t{byte()} << (8 * i);
    CHECK(ram == 1536 * mib);
    select(0x19);
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n = n << 8 | byte();
    REQUIRE(n >= 1);
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size = size << 8 | byte();
    std::uint16_t key = static_cast<std::uint16_t>(byte() << 8);
    key = static_cast<std::uint16_t>(key | byte());
    byte();
    byte();
    std::string name;
    for (int i = 0; i < 56; ++i) {
        char c = static_cast<char>(byte());
        if (c) name.push_back(c);
    }
    CHECK(name == "etc/e820");
    CHECK(size == 40);
    select(key);
    std::vector<std::uint8_t> e820;
    for (std::uint32_t i = 0; i < size; ++i) e820.push_back(byte());
    auto u64 = [&](std::size_t at) { std::uint64_t v = 0; for (int i = 0; i < 8; ++i) v |= std::uint64_t{e820[at + i]} << (8 * i); return v; };
    CHECK(u64(0) == 0);
    CHECK(u64(8) == 1024 * mib);
    CHECK(e820[16] == 1);
    CHECK(u64(20) == 0x100000000ull);
    CHECK(u64(28) == 512 * mib);
}

TEST_CASE("machine: ACPI power-off and resets become run events") {
    pc_rig r;
    std::vector<std::uint8_t> mem(4096);
    auto lay = r.m.build_acpi(std::span<std::uint8_t>(mem), layout::acpi_tables);
    REQUIRE(lay.ok());
    // The guest reads PM1a_CNT's port from the FADT (offset 64) and SLP_TYP from \_S5.
    std::uint32_t pm1a_cnt = 0;
    for (int i = 0; i < 4; ++i) pm1a_cnt |= std::uint32_t{mem[lay->fadt - layout::acpi_tables + 64 + i]} << (8 * i);
    CHECK(pm1a_cnt == layout::acpi_pm + 4u);
    r.m.io_write(static_cast<std::uint16_t>(pm1a_cnt), 2, (5u << 10) | (1u << 13));
    CHECK(r.m.take_event().kind == event_kind::power_off);
    r.m.io_write(0x64, 1, 0xfe);
    CHECK(r.m.take_event().kind == event_kind::reset);
    r.m.io_write(0xcf9, 1, 0x06);
    CHECK(r.m.take_event().kind == event_kind::reset);
    r.m.io_write(0xf4, 1, 1);
    r.m.io_write(0x64, 1, 0xfe);                    // the first event wins
    event e = r.m.take_event();
    CHECK(e.kind == event_kind::debug_exit);
    CHECK(e.value == 3);
}

TEST_CASE("machine: PVH configuration has no legacy devices and a hardware-reduced FADT") {
    pc_rig r{machine_config::pvh(2, 256 * mib)};
    for (std::uint16_t port : {0x20, 0x21, 0x40, 0x43, 0x60, 0x64, 0x70, 0x71, 0x3fd, 0x510, 0x604, 0xf4})
        CHECK(r.m.io_read(port, 1) == 0xff);
    r.m.io_write(0xcf8, 4, 0x80000000u);
    CHECK(r.m.io_read(0xcfc, 4) == 0xffffffff);
    CHECK(r.m.mmio_read(0, layout::ioapic + 0x10, 4) == 0xffffffff);
    CHECK(r.m.mmio_read(0, layout::lapic + 0x30, 4) == lapic::version_value);
    r.m.io_write(0xf4, 4, 1);
    CHECK_FALSE(r.m.has_event());
    acpi::config a = r.m.acpi_config();
    CHECK_FALSE(a.pm);
    CHECK_FALSE(a.pic);
    CHECK_FALSE(a.ioapic);
    CHECK_FALSE(a.reset_reg);
}

TEST_CASE("machine: unplugging emulated devices removes them from the buses") {
    pc_rig r;
    CHECK(r.m.io_read(0x3fd, 1) != 0xff);
    r.m.unplug(dev_uart | dev_pic | dev_ioapic);
    CHECK(r.m.io_read(0x3fd, 1) == 0xff);
    CHECK(r.m.io_read(0x21, 1) == 0xff);
    CHECK(r.m.mmio_read(0, layout::ioapic + 0x10, 4) == 0xffffffff);
    CHECK((r.m.present() & (dev_uart | dev_pic | dev_ioapic)) == 0);
    CHECK(r.m.io_read(0x71, 1) != 0xffffffff);      // the RTC is still there
    r.m.set_isa_irq(1, true);                       // nowhere to go, and no crash
    CHECK_FALSE(r.m.cpu(0).pending_interrupt());
}

TEST_CASE("machine: NMIs reach LINT1 unless masked through port 0x70") {
    pc_rig r;
    r.m.raise_nmi();
    CHECK(r.m.cpu(0).take_nmi());                   // BSP: LINT1 is NMI in virtual-wire mode
    CHECK_FALSE(r.m.cpu(1).take_nmi());
    r.m.io_write(0x70, 1, 0x80);
    r.m.raise_nmi();
    CHECK_FALSE(r.m.cpu(0).take_nmi());
}

TEST_CASE("machine: a PVH guest powers off through the hardware-reduced sleep register") {
    machine_config cfg = machine_config::pvh(1, 256 * mib);
    cfg.devices |= dev_acpi_sleep;
    pc_rig r{cfg};
    std::vector<std::uint8_t> mem(4096);
    auto lay = r.m.build_acpi(std::span<std::uint8_t>(mem), 0x10000);
    REQUIRE(lay.ok());
    const std::uint8_t* f = mem.data() + (lay->fadt - 0x10000);
    CHECK((f[112 + 2] & 0x10) != 0);                // HW_REDUCED_ACPI (flag bit 20)
    std::uint16_t ctl = static_cast<std::uint16_t>(f[248] | f[249] << 8);
    CHECK(ctl == layout::acpi_sleep);
    r.m.io_write(ctl, 1, (3u << 2) | 0x20);         // S3 is not offered
    CHECK_FALSE(r.m.has_event());
    r.m.io_write(ctl, 1, (5u << 2) | 0x20);
    CHECK(r.m.take_event().kind == event_kind::power_off);
    CHECK(r.m.io_read(0x604, 1) == 0xff);           // no PM1 blocks
}

// The same MADT parser libhv/rt/smp runs on the firmware's tables reads the tables the
// emulated PC gives its guests (which a libhv guest then parses to start its APs).
TEST_CASE("machine: libhv's own MADT parser finds every vCPU in the PC's ACPI tables") {
    for (unsigned cpus : {1u, 2u, 4u, 8u}) {
        pc_rig r{machine_config::pc(cpus, 64 * mib)};
        std::vector<std::uint8_t> mem(16384);
        auto lay = r.m.build_acpi(std::span<std::uint8_t>(mem), layout::acpi_tables);
        REQUIRE(lay.ok());
        struct window {
            std::vector<std::uint8_t>* bytes;
            std::uint64_t base;
        } w{&mem, layout::acpi_tables};
        hv::boot::memory_reader reader{[](void* ctx, std::uint64_t pa, void* dst, std::size_t n) -> hv::status {
                                           auto& win = *static_cast<window*>(ctx);
                                           if (pa < win.base || pa + n > win.base + win.bytes->size())
                                               return hv::fail(hv::errc::fault, "outside the tables");
                                           std::memcpy(dst, win.bytes->data() + (pa - win.base), n);
                                           return {};
                                       },
                                       &w};
        auto found = hv::acpi::find_rsdp(reader, layout::acpi_tables, mem.size());
        REQUIRE(found);
        CHECK(*found == lay->rsdp);
        hv::acpi::cpu_list list;
        REQUIRE(hv::acpi::read_cpus(reader, *found, list).ok());
        REQUIRE(list.count == cpus);
        for (unsigned i = 0; i < cpus; ++i) CHECK(list.apic_ids[i] == i);
        CHECK(list.lapic_address == layout::lapic);
    }
}
