#include <doctest/doctest.h>
#include "libhv/dev/pic8259.hpp"

using namespace hv::dev;

namespace {
// Initializes the pair the way PC firmware and Linux do: vectors 0x20/0x28, cascade on 2.
void init_pair(pic_pair& p, std::uint8_t icw4 = 0x01) {
    p.master().write(0, 1, 0x11);
    p.master().write(1, 1, 0x20);
    p.master().write(1, 1, 0x04);
    p.master().write(1, 1, icw4);
    p.slave().write(0, 1, 0x11);
    p.slave().write(1, 1, 0x28);
    p.slave().write(1, 1, 0x02);
    p.slave().write(1, 1, icw4);
}
void eoi(pic_chip& c) { c.write(0, 1, 0x20); }
} // namespace

TEST_CASE("pic: initialization sets vectors and unmasks; IMR reads back") {
    pic_pair p;
    init_pair(p);
    CHECK(p.master().vector_base() == 0x20);
    CHECK(p.slave().vector_base() == 0x28);
    CHECK(p.master().read(1, 1) == 0x00);
    p.master().write(1, 1, 0xfb);
    CHECK(p.master().read(1, 1) == 0xfb);
}

TEST_CASE("pic: an edge is latched in IRR, acknowledged into ISR, cleared by EOI") {
    pic_pair p;
    init_pair(p);
    bool intr = false;
    p.on_intr(callback<bool>{[](void* c, bool l) { *static_cast<bool*>(c) = l; }, &intr});
    p.set_irq(1, true);
    p.set_irq(1, false);        // a pulse is not lost
    CHECK(intr);
    CHECK(p.master().irr() == 0x02);
    CHECK(p.pending() == 0x21);
    CHECK(p.acknowledge() == 0x21);
    CHECK_FALSE(intr);
    CHECK(p.master().isr() == 0x02);
    CHECK(p.master().irr() == 0x00);
    p.master().write(0, 1, 0x0b);               // OCW3: read ISR
    CHECK(p.master().read(0, 1) == 0x02);
    eoi(p.master());
    CHECK(p.master().read(0, 1) == 0x00);
    CHECK_FALSE(p.pending());
}

TEST_CASE("pic: priority, nesting and masking") {
    pic_pair p;
    init_pair(p);
    p.set_irq(4, true);
    CHECK(p.acknowledge() == 0x24);
    p.set_irq(6, true);
    CHECK_FALSE(p.pending());                   // lower priority than IR4 in service
    p.set_irq(1, true);
    CHECK(p.pending() == 0x21);                 // higher priority nests
    CHECK(p.acknowledge() == 0x21);
    eoi(p.master());                            // non-specific: clears IR1
    CHECK(p.master().isr() == 0x10);
    p.master().write(0, 1, 0x64);               // specific EOI for IR4
    CHECK(p.master().isr() == 0x00);
    p.master().write(1, 1, 0x40);               // mask IR6
    CHECK_FALSE(p.pending());
    p.master().write(1, 1, 0x00);
    CHECK(p.acknowledge() == 0x26);
}

TEST_CASE("pic: slave interrupts go through the master's IR2") {
    pic_pair p;
    init_pair(p);
    p.set_irq(12, true);
    CHECK((p.master().irr() & 0x04));
    CHECK(p.pending() == 0x2c);
    CHECK(p.acknowledge() == 0x2c);
    CHECK(p.master().isr() == 0x04);
    CHECK(p.slave().isr() == 0x10);
    p.set_irq(12, false);
    p.set_irq(9, true);                         // blocked: master's IR2 in service
    CHECK_FALSE(p.pending());
    eoi(p.slave());
    eoi(p.master());
    CHECK(p.acknowledge() == 0x29);
    p.slave().write(1, 1, 0x02);                // masking at the slave hides it at the master
    eoi(p.slave());
    eoi(p.master());
    p.set_irq(9, false);
    p.set_irq(9, true);
    CHECK_FALSE(p.pending());
}

TEST_CASE("pic: spurious IRQ7 when the request vanishes before INTA") {
    pic_pair p;
    init_pair(p);
    p.master().write(0, 1, 0x10 | 0x08 | 0x01);     // ICW1 with LTIM: level mode
    p.master().write(1, 1, 0x20);
    p.master().write(1, 1, 0x04);
    p.master().write(1, 1, 0x01);
    p.set_irq(3, true);
    CHECK(p.pending() == 0x23);
    p.set_irq(3, false);                        // level dropped
    CHECK(p.acknowledge() == 0x27);
    CHECK(p.master().isr() == 0x00);
}

TEST_CASE("pic: ELCR level-triggered lines follow the line and re-request after EOI") {
    pic_pair p;
    init_pair(p);
    p.elcr().write(1, 1, 0xff);
    CHECK(p.elcr_value() == 0xde00);            // IRQ8 and IRQ13 are edge-only
    p.set_irq(10, true);
    CHECK(p.acknowledge() == 0x2a);
    eoi(p.slave());
    eoi(p.master());
    CHECK(p.pending() == 0x2a);                 // still asserted: asks again
    p.set_irq(10, false);
    CHECK_FALSE(p.pending());
}

TEST_CASE("pic: auto-EOI leaves nothing in service") {
    pic_pair p;
    init_pair(p, 0x03);
    CHECK(p.master().auto_eoi());
    p.set_irq(0, true);
    CHECK(p.acknowledge() == 0x20);
    CHECK(p.master().isr() == 0);
    p.set_irq(0, false);
    p.set_irq(0, true);
    CHECK(p.acknowledge() == 0x20);
}

TEST_CASE("pic: rotation changes priorities; poll command acknowledges") {
    pic_pair p;
    init_pair(p);
    p.master().write(0, 1, 0xc0 | 3);           // set priority: IR3 lowest, IR4 highest
    p.set_irq(1, true);
    p.set_irq(5, true);
    CHECK(p.acknowledge() == 0x25);
    p.master().write(0, 1, 0xa0);               // rotate on non-specific EOI: IR5 → lowest
    CHECK(p.acknowledge() == 0x21);
    eoi(p.master());
    p.set_irq(6, true);
    p.master().write(0, 1, 0x0c);               // OCW3 poll
    CHECK(p.master().read(0, 1) == 0x86);       // IR6 now outranks (IR5 is lowest)
    CHECK(p.master().isr() == 0x40);
}

TEST_CASE("pic: special mask mode lets lower priorities in while one is in service") {
    pic_pair p;
    init_pair(p);
    p.set_irq(2 + 1, true);
    CHECK(p.acknowledge() == 0x23);
    p.set_irq(5, true);
    CHECK_FALSE(p.pending());
    p.master().write(1, 1, 0x08);               // mask IR3 (in service)
    p.master().write(0, 1, 0x68);               // OCW3: set special mask mode
    CHECK(p.pending() == 0x25);
}

TEST_CASE("pic: unprogrammed accesses are harmless") {
    pic_pair p;
    CHECK(p.master().read(7, 1) <= 0xff);
    p.set_irq(99, true);
    CHECK_FALSE(p.pending());                   // IMR is all ones before init
    p.elcr().write(5, 1, 0xff);
    CHECK(p.elcr().read(5, 1) == 0xff);
}
