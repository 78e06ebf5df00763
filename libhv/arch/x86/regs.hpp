// Architectural bits of CR0, CR4, EFER and RFLAGS (SDM vol. 3A 2.5, 2.2.1; vol. 1 3.4.3):
// the one definition the hypervisor, the vCPU layer, the guest-paging walker and the
// instruction emulator all use. Constants only, so it builds hosted and freestanding.
#pragma once
#include <cstdint>

namespace hv::x86 {

namespace cr0 {
inline constexpr std::uint64_t pe = 1ull << 0, mp = 1ull << 1, em = 1ull << 2, ts = 1ull << 3, et = 1ull << 4,
                               ne = 1ull << 5, wp = 1ull << 16, am = 1ull << 18, nw = 1ull << 29, cd = 1ull << 30,
                               pg = 1ull << 31;
} // namespace cr0

namespace cr4 {
inline constexpr std::uint64_t vme = 1ull << 0, pvi = 1ull << 1, tsd = 1ull << 2, de = 1ull << 3, pse = 1ull << 4,
                               pae = 1ull << 5, mce = 1ull << 6, pge = 1ull << 7, pce = 1ull << 8,
                               osfxsr = 1ull << 9, osxmmexcpt = 1ull << 10, umip = 1ull << 11, la57 = 1ull << 12,
                               vmxe = 1ull << 13, smxe = 1ull << 14, fsgsbase = 1ull << 16, pcide = 1ull << 17,
                               osxsave = 1ull << 18, smep = 1ull << 20, smap = 1ull << 21, pke = 1ull << 22;
} // namespace cr4

namespace efer {
inline constexpr std::uint64_t sce = 1ull << 0, lme = 1ull << 8, lma = 1ull << 10, nxe = 1ull << 11,
                               svme = 1ull << 12;
} // namespace efer

namespace rflags {
// `if_`: IF is a keyword.
inline constexpr std::uint64_t cf = 1ull << 0, fixed1 = 1ull << 1, pf = 1ull << 2, af = 1ull << 4, zf = 1ull << 6,
                               sf = 1ull << 7, tf = 1ull << 8, if_ = 1ull << 9, df = 1ull << 10, of = 1ull << 11,
                               nt = 1ull << 14, rf = 1ull << 16, vm = 1ull << 17, ac = 1ull << 18;
} // namespace rflags

} // namespace hv::x86
