#include "libhv/vm/xen_unplug.hpp"
#include <doctest/doctest.h>
#include <vector>

namespace {

using hv::vm::xen_unplug_ports;

struct recorded {
    std::vector<std::uint16_t> in_ports, out_ports;
    static std::uint32_t in(void* c, std::uint16_t port, std::uint8_t) {
        static_cast<recorded*>(c)->in_ports.push_back(port);
        return 0x5a;
    }
    static void out(void* c, std::uint16_t port, std::uint8_t, std::uint32_t) {
        static_cast<recorded*>(c)->out_ports.push_back(port);
    }
};

} // namespace

TEST_CASE("xen_unplug_ports: magic and version, masks ORed, other ports to the device model") {
    recorded dm;
    xen_unplug_ports x{{&dm, &recorded::in, &recorded::out}};
    const hv::cpu::io_ports p = x.ports();
    CHECK(p.in(p.ctx, 0x10, 2) == 0x49d2);
    CHECK(p.in(p.ctx, 0x12, 1) == 1);
    CHECK(p.in(p.ctx, 0x10, 1) == 0xff);  // only the 16-bit read is the magic
    CHECK(p.in(p.ctx, 0x11, 4) == 0xffffffffu);
    CHECK(x.unplugged() == 0);
    p.out(p.ctx, 0x10, 2, xen_unplug_ports::ide_disks);
    p.out(p.ctx, 0x10, 2, xen_unplug_ports::nics);
    p.out(p.ctx, 0x10, 1, 0xff);  // a byte write is no unplug request
    CHECK(x.unplugged() == (xen_unplug_ports::ide_disks | xen_unplug_ports::nics));
    CHECK(x.requests() == 2);
    CHECK(p.in(p.ctx, 0x3f8, 1) == 0x5a);
    p.out(p.ctx, 0xf4, 1, 0x31);
    p.out(p.ctx, 0x14, 2, 1);  // just past the platform ports
    CHECK(dm.in_ports == std::vector<std::uint16_t>{0x3f8});
    CHECK(dm.out_ports == std::vector<std::uint16_t>{0xf4, 0x14});
    CHECK(dm.in_ports.size() == 1);
}

TEST_CASE("xen_unplug_ports: without a device model, other ports are open bus") {
    xen_unplug_ports x;
    const hv::cpu::io_ports p = x.ports();
    CHECK(p.in(p.ctx, 0x60, 1) == 0xff);
    CHECK(p.in(p.ctx, 0x60, 2) == 0xffff);
    p.out(p.ctx, 0x60, 1, 0);  // vanishes
    CHECK(x.requests() == 0);
}

TEST_CASE("xen_unplug_ports: each unplug request reaches the owner of the devices with its mask") {
    recorded dm;
    xen_unplug_ports x{{&dm, &recorded::in, &recorded::out}};
    std::vector<std::uint16_t> masks;
    x.on_unplug([](void* c, std::uint16_t mask) { static_cast<std::vector<std::uint16_t>*>(c)->push_back(mask); },
                &masks);
    const hv::cpu::io_ports p = x.ports();
    p.out(p.ctx, 0x10, 2, xen_unplug_ports::ide_disks | xen_unplug_ports::nics);
    p.out(p.ctx, 0x10, 1, xen_unplug_ports::ide_disks);  // not a request
    p.out(p.ctx, 0x10, 2, xen_unplug_ports::nvme_disks);
    CHECK(masks == std::vector<std::uint16_t>{3, 8});
    CHECK(dm.out_ports.empty());
}

TEST_CASE("xen_unplug_ports: REP INS/OUTS bursts go on to the device model, none for its own ports") {
    recorded dm;
    hv::cpu::io_ports next{&dm, &recorded::in, &recorded::out};
    next.in_block = [](void* c, std::uint16_t port, std::uint8_t, void*, std::size_t n) {
        static_cast<recorded*>(c)->in_ports.push_back(port);
        return n;
    };
    next.out_block = [](void* c, std::uint16_t port, std::uint8_t, const void*, std::size_t n) {
        static_cast<recorded*>(c)->out_ports.push_back(port);
        return n - 1;
    };
    xen_unplug_ports x{next};
    const hv::cpu::io_ports p = x.ports();
    std::uint16_t buf[4] = {};
    REQUIRE((p.in_block != nullptr));
    REQUIRE((p.out_block != nullptr));
    CHECK(p.in_block(p.ctx, 0x1f0, 2, buf, 4) == 4);
    CHECK(p.out_block(p.ctx, 0x1f0, 2, buf, 4) == 3);
    CHECK(p.in_block(p.ctx, 0x10, 2, buf, 4) == 0);
    CHECK(p.out_block(p.ctx, 0x10, 2, buf, 4) == 0);
    CHECK(x.requests() == 0);
    CHECK(dm.in_ports == std::vector<std::uint16_t>{0x1f0});
    CHECK(dm.out_ports == std::vector<std::uint16_t>{0x1f0});
    xen_unplug_ports alone{{&dm, &recorded::in, &recorded::out}};  // a device model without bursts
    CHECK(alone.ports().in_block(&alone, 0x1f0, 2, buf, 4) == 0);
}
