// cpu::call_mode: the hypercall convention from CS (and SS) access rights.
#include <doctest/doctest.h>
#include "libhv/cpu/call_mode.hpp"

using namespace hv::cpu;

namespace {
// The CPLs the architecture allows with this CS in protected mode: CPL = DPL in a
// non-conforming code segment, DPL <= CPL in a conforming one; a data type in CS (real
// mode under unrestricted guest, or just after CR0.PE is set) only at CPL 0.
bool reachable(std::uint32_t cs, unsigned cpl) {
    const bool code = (cs & ar::s) && (cs & 0x8u);
    if (!code) return cpl == 0;
    return (cs & 0x4u) ? ar::dpl_of(cs) <= cpl : ar::dpl_of(cs) == cpl;
}
} // namespace

TEST_CASE("call_mode: CS alone decides only where every reachable CPL is 0; LMA and L give 64-bit") {
    unsigned fast = 0;
    for (std::uint32_t cs = 0; cs < 0x10000; ++cs) {
        if (cs & 0x0f00u) continue;  // bits 11:8 are always 0 in access rights
        for (unsigned cpl = 0; cpl < 4; ++cpl) {
            if (!reachable(cs, cpl)) continue;
            CAPTURE(cs);
            CAPTURE(cpl);
            if (kernel64_code_segment(cs)) {
                ++fast;
                CHECK(cpl == 0);
                CHECK(call_mode_of(true, cs, cpl) == call_mode::kernel64);
                CHECK(call_mode_of(false, cs, cpl) == call_mode::kernel32);  // L outside IA-32e mode
            }
            if (cs_dpl_is_cpl(cs)) CHECK(ar::dpl_of(cs) == cpl);
            const call_mode m = call_mode_of(true, cs, cpl);
            CHECK(user(m) == (cpl != 0));
            CHECK(bits64(m) == ((cs & ar::l) != 0));
        }
    }
    CHECK(fast > 0);
    // User code in a conforming DPL 0 segment: CS says 0, the CPL is 3.
    const std::uint32_t conforming0 = ar::s | 0xeu | ar::p | ar::l;
    CHECK_FALSE(kernel64_code_segment(conforming0));
    CHECK_FALSE(cs_dpl_is_cpl(conforming0));
    CHECK(call_mode_of(true, conforming0, 3) == call_mode::user64);
}
