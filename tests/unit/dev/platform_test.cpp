#include <doctest/doctest.h>
#include <cstring>
#include <string>
#include <vector>
#include "fakes.hpp"
#include "libhv/dev/acpi_pm.hpp"
#include "libhv/dev/fw_cfg.hpp"
#include "libhv/dev/i8042.hpp"
#include "libhv/dev/misc_ports.hpp"
#include "libhv/dev/pci.hpp"

using namespace hv::dev;

TEST_CASE("debug exit: the first write's value becomes (value << 1) | 1") {
    for (std::uint32_t v : {0u, 1u, 0x31u, 0x7fu}) {
        hvtest::event_recorder ev;
        debug_exit d{&ev};
        d.write(0, 4, v);
        d.write(0, 1, 0x55);                        // later writes change nothing
        CHECK(d.exited());
        CHECK(d.value() == v);
        REQUIRE(ev.events.size() == 1);
        CHECK(ev.events[0].kind == event_kind::debug_exit);
        CHECK(ev.events[0].value == ((v << 1) | 1));
        CHECK(d.read(0, 1) == 0xff);
    }
}

TEST_CASE("POST codes are recorded") {
    post_code p;
    for (std::uint8_t c : {0x10, 0x20, 0x30}) p.write(0, 1, c);
    CHECK(p.last() == 0x30);
    CHECK(p.count() == 3);
    CHECK(p.recent(1) == 0x20);
    CHECK(p.read(0, 1) == 0x30);
}

TEST_CASE("acpi pm: the PM timer counts 3.579545 MHz of guest time, 24 or 32 bits") {
    hvtest::fake_clock clk{2'000'000'000};
    timer_queue q{clk};
    acpi_pm pm32{q, nullptr, true}, pm24{q, nullptr, false};
    for (std::uint64_t t : {0ull, 1ull, 123'456'789ull, 20'000'000'000ull}) {
        clk.set(t);
        std::uint64_t ticks = static_cast<std::uint64_t>(static_cast<unsigned __int128>(t) * 3579545 / 2'000'000'000);
        CHECK(pm32.read(8, 4) == (ticks & 0xffffffff));
        CHECK(pm24.read(8, 4) == (ticks & 0xffffff));
        CHECK(pm32.read(8, 2) == (ticks & 0xffff));
    }
}

TEST_CASE("acpi pm: SLP_EN with the S5 type powers off; other types do not") {
    hvtest::fake_clock clk{1'000'000'000};
    timer_queue q{clk};
    hvtest::event_recorder ev;
    acpi_pm pm{q, &ev, true, 5};
    CHECK((pm.read(4, 2) & pm1_bits::sci_en) != 0);
    pm.write(4, 2, (3u << 10) | pm1_bits::slp_en);      // S3: not offered
    CHECK(ev.events.empty());
    CHECK(pm.ignored_sleeps() == 1);
    pm.write(4, 2, 5u << 10);                           // type without SLP_EN
    CHECK(ev.events.empty());
    CHECK((pm.read(4, 2) & pm1_bits::slp_en) == 0);
    pm.write(5, 1, ((5u << 10) | pm1_bits::slp_en) >> 8);   // a byte write to the high half
    REQUIRE(ev.events.size() == 1);
    CHECK(ev.events[0].kind == event_kind::power_off);
}

TEST_CASE("acpi pm: power button and timer-carry status raise the SCI when enabled") {
    hvtest::fake_clock clk{3579545};                    // one guest tick per PM timer tick
    timer_queue q{clk};
    hvtest::irq_recorder irq;
    acpi_pm pm{q, nullptr, false};
    pm.connect_sci(&irq, 9);
    pm.press_power_button();
    CHECK((pm.read(0, 2) & pm1_bits::pwrbtn) != 0);
    CHECK_FALSE(irq.levels[9]);
    pm.write(2, 2, pm1_bits::pwrbtn);
    CHECK(irq.levels[9]);
    pm.write(0, 2, pm1_bits::pwrbtn);                   // write 1 to clear
    CHECK_FALSE(irq.levels[9]);
    pm.write(2, 2, pm1_bits::tmr);
    hvtest::run_until(clk, q, (1u << 23) - 1, 4096);
    CHECK_FALSE(irq.levels[9]);
    hvtest::run_until(clk, q, 1u << 23, 1);             // bit 23 toggles
    CHECK(irq.levels[9]);
    CHECK((pm.read(0, 2) & pm1_bits::tmr) != 0);
    pm.write(0, 2, pm1_bits::tmr);
    CHECK_FALSE(irq.levels[9]);
}

TEST_CASE("pci: a scan of bus 0 finds only the host bridge") {
    pci_bus pci;
    pci_host_bridge hb;
    REQUIRE(pci.attach(0, 0, hb).ok());
    CHECK(pci.attach(0, 0, hb).code() == hv::errc::exists);
    std::vector<std::pair<unsigned, unsigned>> found;
    for (unsigned dev = 0; dev < 32; ++dev) {
        for (unsigned fn = 0; fn < 8; ++fn) {
            pci.write(0, 4, 0x80000000u | dev << 11 | fn << 8);
            std::uint32_t id = static_cast<std::uint32_t>(pci.read(4, 4));
            if ((id & 0xffff) == 0xffff) {
                CHECK(id == 0xffffffff);
                continue;
            }
            found.push_back({dev, fn});
            CHECK(id == 0x12378086);
            pci.write(0, 4, 0x80000000u | dev << 11 | fn << 8 | 0x08);
            CHECK((pci.read(4, 4) >> 8) == 0x060000);   // class: host bridge
            pci.write(0, 4, 0x80000000u | dev << 11 | fn << 8 | 0x0c);
            CHECK((pci.read(6, 1) & 0x80) == 0);        // single function
        }
    }
    CHECK(found == std::vector<std::pair<unsigned, unsigned>>{{0, 0}});
    pci.write(0, 4, 0x80010000u);                   // bus 1 does not exist
    CHECK(pci.read(4, 4) == 0xffffffff);
}

TEST_CASE("pci: byte/word access, read-only IDs, the enable bit and 0xcf9 reset") {
    hvtest::event_recorder ev;
    pci_bus pci{&ev};
    pci_host_bridge hb;
    REQUIRE(pci.attach(0, 0, hb).ok());
    pci.write(0, 4, 0x80000000u);
    CHECK(pci.read(4, 2) == 0x8086);
    CHECK(pci.read(6, 2) == 0x1237);
    CHECK(pci.read(5, 1) == 0x80);
    pci.write(4, 4, 0);                             // IDs are read-only
    CHECK(pci.read(4, 4) == 0x12378086);
    pci.write(0, 4, 0x80000004u);
    pci.write(4, 2, 0x0000);
    CHECK((pci.read(4, 2) & 0x46) == 0);            // command bits are writable
    CHECK(pci.read(0, 4) == 0x80000004u);
    pci.write(0, 4, 0x00000000u);                   // enable bit clear: no config cycle
    CHECK(pci.read(4, 4) == 0xffffffff);
    pci.write(1, 1, 0x02);
    CHECK(ev.events.empty());
    pci.write(1, 1, 0x06);
    REQUIRE(ev.events.size() == 1);
    CHECK(ev.events[0].kind == event_kind::reset);
}

namespace {
std::string read_bytes(fw_cfg& f, std::uint16_t key, std::size_t n) {
    f.write(0, 2, key);
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(f.read(1, 1)));
    return s;
}
std::uint64_t read_le(fw_cfg& f, std::uint16_t key, unsigned n) {
    std::string s = read_bytes(f, key, n);
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{static_cast<std::uint8_t>(s[i])} << (8 * i);
    return v;
}
std::uint64_t be(const std::string& s, std::size_t at, unsigned n) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v = v << 8 | static_cast<std::uint8_t>(s[at + i]);
    return v;
}
} // namespace

TEST_CASE("fw_cfg: signature, ID, CPU count, RAM size") {
    fw_cfg f;
    f.set_cpus(3, 8);
    f.set_ram_size(0x1'2345'6000ull);
    CHECK(read_bytes(f, 0x0000, 4) == "QEMU");
    CHECK(read_le(f, 0x0001, 4) == 1);
    CHECK(read_le(f, 0x0005, 2) == 3);
    CHECK(read_le(f, 0x000f, 2) == 8);
    CHECK(read_le(f, 0x0003, 8) == 0x1'2345'6000ull);
    CHECK(read_bytes(f, 0x0000, 6) == std::string("QEMU\0\0", 6));     // past the end: zeros
    CHECK(read_le(f, 0x7777, 4) == 0);                                 // unknown key
}

TEST_CASE("fw_cfg: the command line as QEMU's -append (size with the NUL, then the bytes)") {
    fw_cfg f;
    CHECK(read_le(f, 0x0014, 4) == 0);  // none set
    const std::string line = "expect=hvm hv-start-tsc=42";
    f.set_cmdline(line);
    CHECK(read_le(f, 0x0014, 4) == line.size() + 1);
    CHECK(read_bytes(f, 0x0015, line.size() + 2) == line + std::string("\0\0", 2));
}

TEST_CASE("fw_cfg: the file directory lists files that read back") {
    fw_cfg f;
    const std::string hello = "hello, firmware";
    const std::uint8_t blob[] = {1, 2, 3};
    auto k1 = f.add_file("etc/hello", std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size()));
    auto k2 = f.add_file("opt/blob", blob);
    REQUIRE(k1.ok());
    REQUIRE(k2.ok());
    CHECK(f.add_file("etc/hello", blob).code() == hv::errc::exists);
    CHECK(f.add_file(std::string(56, 'x'), blob).code() == hv::errc::invalid_argument);
    std::string dir = read_bytes(f, 0x0019, 4 + 2 * 64);
    REQUIRE(be(dir, 0, 4) == 2);
    for (unsigned i = 0; i < 2; ++i) {
        std::size_t e = 4 + 64 * i;
        std::string name = dir.substr(e + 8, 56);
        name = name.substr(0, name.find('\0'));
        std::uint32_t size = static_cast<std::uint32_t>(be(dir, e, 4));
        std::uint16_t select = static_cast<std::uint16_t>(be(dir, e + 4, 2));
        CHECK(select >= 0x20);
        std::string content = read_bytes(f, select, size);
        if (name == "etc/hello") {
            CHECK(select == *k1);
            CHECK(content == hello);
        } else {
            CHECK(name == "opt/blob");
            CHECK(content == std::string("\1\2\3"));
        }
    }
}

TEST_CASE("8042: self test, command byte, A20 gate and reset") {
    hvtest::event_recorder ev;
    i8042 k{&ev};
    hvtest::irq_recorder irq;
    k.connect_irq(&irq, 1, 12);
    io_device& data = k.data_port();
    io_device& cmd = k.command_port();
    cmd.write(0, 1, 0xaa);
    CHECK((cmd.read(0, 1) & 0x01) == 0x01);             // output buffer full
    CHECK(data.read(0, 1) == 0x55);
    CHECK((cmd.read(0, 1) & 0x01) == 0);
    cmd.write(0, 1, 0x60);
    data.write(0, 1, 0x47);
    cmd.write(0, 1, 0x20);
    CHECK(data.read(0, 1) == 0x47);
    // A20 through the output port, then the fast gate.
    cmd.write(0, 1, 0xd1);
    data.write(0, 1, 0x01);                             // A20 off, reset line high
    CHECK_FALSE(k.a20());
    CHECK((k.port92().read(0, 1) & 0x02) == 0);
    cmd.write(0, 1, 0xdf);
    CHECK(k.a20());
    k.port92().write(0, 1, 0x00);
    CHECK_FALSE(k.a20());
    k.port92().write(0, 1, 0x02);
    CHECK(k.a20());
    CHECK(ev.events.empty());
    // Keyboard replies raise IRQ1 when the command byte enables it, one edge per byte
    // (an edge-triggered IRQ would lose the bytes after the first otherwise).
    const unsigned edges = irq.rising[1];
    data.write(0, 1, 0xf2);
    CHECK(irq.levels[1]);
    CHECK(data.read(0, 1) == 0xfa);
    CHECK(data.read(0, 1) == 0xab);
    CHECK(data.read(0, 1) == 0x83);
    CHECK_FALSE(irq.levels[1]);
    CHECK(irq.rising[1] == edges + 3);
    // No mouse: a byte for the aux device comes back as 0xfe with aux + time-out status.
    cmd.write(0, 1, 0x60);
    data.write(0, 1, 0x47 | 0x02);                      // aux interrupt on
    cmd.write(0, 1, 0xd4);
    data.write(0, 1, 0xf2);
    CHECK((cmd.read(0, 1) & 0x61) == 0x61);             // full, aux, time-out
    CHECK(irq.levels[12]);
    CHECK(data.read(0, 1) == 0xfe);
    CHECK_FALSE(irq.levels[12]);
    CHECK((cmd.read(0, 1) & 0x61) == 0);
    cmd.write(0, 1, 0xfe);                              // pulse reset
    REQUIRE(ev.events.size() == 1);
    CHECK(ev.events[0].kind == event_kind::reset);
    k.port92().write(0, 1, 0x03);                       // fast reset
    CHECK(ev.events.size() == 2);
}
