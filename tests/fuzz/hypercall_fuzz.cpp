// libFuzzer harness: hypercall argument decoding. The input supplies guest memory (the
// argument pages) and a sequence of hypercalls with raw register values; every call
// must return 0/positive or a Xen errno, with no crash or sanitizer report.
#include <cstdint>
#include <cstring>
#include "libhv/io/xen_hypercall.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;

namespace {
bool known(std::int64_t rc) {
    if (rc >= 0) return rc <= (4 << 16 | 17);
    switch (-rc) {
    case x::err::eperm: case x::err::enoent: case x::err::esrch: case x::err::efault:
    case x::err::einval: case x::err::enosys: case x::err::eexist: case x::err::enospc:
    case x::err::etime: case x::err::enodata: case x::err::eopnotsupp:
        return true;
    default:
        return false;
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::uint64_t nrs[] = {12, 15, 17, 18, 20, 24, 29, 32, 34};
    x::domain_table t;
    fake::vm g(t, 1, 2, 16);
    fake::vm peer(t, 2, 1, 16);
    // Guest pages 1..3 come from the input (arguments, buffers, port lists).
    std::size_t mem = size < 3 * 4096 ? size / 2 : 3 * 4096;
    for (std::size_t i = 0; i < mem; ++i) g.plat.ram[1 + i / 4096]->b[i % 4096] = data[i];
    data += mem;
    size -= mem;
    // The peer grants something to us, so map/copy paths get exercised.
    g.plat.ram[0]->b[0] = 1;
    peer.d().gnttab.shared[1] = {x::gtf_permit_access, 1, 3};
    peer.d().gnttab.shared[2] = {x::gtf_permit_access | x::gtf_readonly, 1, 4};
    while (size >= 1 + 5 * 8) {
        std::uint8_t sel = data[0];
        std::uint64_t a[5];
        std::memcpy(a, data + 1, sizeof a);
        data += 1 + sizeof a;
        size -= 1 + sizeof a;
        std::uint64_t nr = sel & 0x80 ? sel & 0x3f : nrs[(sel & 0x3f) % 9];
        // Point pointer-like arguments into the argument pages most of the time.
        if (sel & 0x40) a[1] = 0x1000 + (a[1] & 0x2fff);
        if (sel & 0x20) a[2] = 0x1000 + (a[2] & 0x2fff);
        auto args = x::hypercall_args_64(nr, a[0] & 0xff, a[1], a[2], a[3], a[4]);
        if ((sel & 0x18) == 0x18) args.mode = x::guest_mode::bits32;
        std::int64_t rc = x::dispatch_hypercall(g.d(), (sel >> 3) & 1, g.mem, args);
        if (!known(rc)) __builtin_trap();
    }
    return 0;
}
