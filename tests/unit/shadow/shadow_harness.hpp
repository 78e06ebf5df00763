// Shared by the shadow tests and benchmarks: a guest (RAM, ROM, MMIO, holes) on fake
// host memory, and the "hardware": a walk of the shadow tables in the shadow's format
// under the real control bits the cpu layer would load, repeated through
// handle_page_fault until the access completes or the MMU reports something else.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/shadow.hpp"
#include "libhv/mmu/walk.hpp"
#include "tests/unit/mmu/fake_memory.hpp"

namespace hv::mmu::test {

inline constexpr std::uint64_t MiB = 0x10'0000;
inline constexpr std::uint64_t ram_size = 8 * MiB;
inline constexpr std::uint64_t rom_base = 0x80'0000 + 0x10'0000;  // 9 MiB
inline constexpr std::uint64_t rom_size = 0x1'0000;
inline constexpr std::uint64_t mmio_base = 0xfee0'0000;

struct guest_setup {
    fake_memory host{fake_memory::placement::scattered, std::uint64_t{1} << 32, 7};
    guest_memory<fake_memory> guest{host, std::uint64_t{1} << 36};

    guest_setup() {
        (void)guest.init();
        (void)guest.add_ram(0, ram_size);
        (void)guest.add_rom(rom_base, rom_size);
        (void)guest.add_mmio(mmio_base, 0x1000, 1);
    }
};

// The real control registers while the shadow is loaded.
inline guest_paging real_regs(const guest_paging& g, shadow_format f) {
    guest_paging r;
    r.cr0 = cr0::pg | cr0::wp;
    r.cr4 = cr4::pae | (g.cr4 & (cr4::smep | cr4::smap | bit(7)));
    r.efer = efer::nxe | (f == shadow_format::four_level ? efer::lme | efer::lma : 0);
    r.cpl = g.cpl;
    r.rflags = g.rflags;
    return r;
}

struct hw_walk {
    bool ok = false;
    std::uint64_t hpa = 0;
    std::uint32_t error_code = 0;
    bool reserved_seen = false;
    bool dangling = false;
    std::uint64_t leaf = 0;  // the shadow leaf entry (ok)
};

template <class F>
hw_walk hw_walk_format(const F& f, fake_memory& host, std::uint64_t root, std::uint64_t va, const guest_paging& real,
                       guest_access acc) {
    hw_walk out;
    x86_rights rights;
    const walk_end end = walk(f, host, root, va, [&](unsigned level, std::uint64_t, std::uint64_t e) {
        if (f.reserved_bits(e, level)) {
            out.reserved_seen = true;
            return false;
        }
        const x86_rights r = f.rights(e, level);
        rights.write = rights.write && r.write;
        rights.user = rights.user && r.user;
        rights.no_execute = rights.no_execute || r.no_execute;
        return true;
    });
    // A shadow entry pointing at no table would make hardware walk freed memory.
    out.dangling = end.stop == walk_stop::unreachable;
    acc.set_accessed_dirty = false;
    out.error_code = access_error_code(real, acc);
    if (end.stop != walk_stop::leaf) return out;
    if (!access_allowed(real, acc, rights)) {
        out.error_code |= pf_error::present;
        return out;
    }
    out.ok = true;
    out.leaf = end.entry;
    out.hpa = f.leaf_address(end.entry, end.level) | (va & (level_size<F>(end.level) - 1));
    return out;
}

template <class Mmu>
hw_walk hw_access(Mmu& mmu, fake_memory& host, const guest_paging& g, std::uint64_t va, guest_access acc) {
    const guest_paging real = real_regs(g, mmu.format());
    if (mmu.format() == shadow_format::pae) return hw_walk_format(pae_format{}, host, mmu.root(), va & 0xffff'ffff, real, acc);
    return hw_walk_format(x86_64_format{}, host, mmu.root(), va, real, acc);
}

struct access_outcome {
    enum kind_t { hardware, mmu_report, looped } kind = looped;  // looped: also a broken shadow
    hw_walk hw{};
    pf_result pf{};
    int faults = 0;
};

// Runs an access as the vCPU would: hardware walk, and on a fault the MMU, until done.
template <class Mmu>
access_outcome run_access(Mmu& mmu, fake_memory& host, const guest_paging& g, std::uint64_t va, guest_access acc) {
    access_outcome out;
    for (int round = 0; round < 8; ++round) {
        out.hw = hw_access(mmu, host, g, va, acc);
        if (out.hw.dangling || out.hw.reserved_seen) return out;
        if (out.hw.ok) {
            out.kind = access_outcome::hardware;
            return out;
        }
        ++out.faults;
        out.pf = mmu.handle_page_fault(va, out.hw.error_code, g.cpl, g.rflags);
        if (out.pf.outcome != pf_outcome::fixed) {
            out.kind = access_outcome::mmu_report;
            return out;
        }
    }
    return out;
}

} // namespace hv::mmu::test
