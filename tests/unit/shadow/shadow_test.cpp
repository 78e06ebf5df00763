// The shadow MMU against the guest walker (translate_gva) as the oracle: random guest
// tables in guest RAM, random sequences of guest operations, and after every access
// through the shadow (hardware walk + handle_page_fault) the same host page or the
// same #PF error code, and the same guest A/D bits, as the guest walk gives.
#include <doctest/doctest.h>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/shadow.hpp"
#include "tests/unit/shadow/shadow_harness.hpp"

using namespace hv::mmu;
using namespace hv::mmu::test;

namespace {

constexpr std::uint64_t pool_base = 0x10'0000;  // guest tables live in [1 MiB, 1 MiB + pool)
constexpr std::size_t pool_pages = 24;
constexpr std::uint64_t pge = bit(7);

struct scenario {
    paging_mode mode;
    std::uint64_t seed;
    int steps;
};

template <std::size_t MaxPages>
struct random_guest {
    guest_setup setup;
    paging_features cpu{36, true};
    shadow_mmu<guest_memory<fake_memory>, fake_memory, MaxPages> mmu{setup.guest, setup.host, cpu};
    std::mt19937_64 rng;
    paging_mode mode;
    guest_paging regs;
    std::vector<std::uint64_t> roots;
    std::vector<std::uint64_t> recent;
    int checked = 0, hardware_hits = 0, injected = 0, emulated = 0, mmio = 0;

    random_guest(paging_mode m, std::uint64_t seed) : rng{seed}, mode{m} {}

    bool chance(unsigned pct) { return rng() % 100 < pct; }

    std::uint64_t pool_frame() { return pool_base + (rng() % pool_pages) * page_size; }

    std::uint64_t random_target(bool large) {
        if (large) {
            const unsigned r = rng() % 10;
            if (r < 7) return (rng() % 4) * 2 * MiB;                // RAM
            if (r < 8) return 0;                                    // 1 GiB / 4 MiB aligned
            if (r < 9) return mmio_base & ~(4 * MiB - 1);          // MMIO / hole
            return (rng() % 16) * 2 * MiB;                          // hole
        }
        const unsigned r = rng() % 20;
        if (r < 11) return pool_frame();
        if (r < 17) return (rng() % (ram_size / page_size)) * page_size;
        if (r < 18) return rom_base + (rng() % (rom_size / page_size)) * page_size;
        if (r < 19) return mmio_base;
        return (rng() & 0xffff'f000);
    }

    std::uint64_t random_entry64() {
        if (!chance(90)) return rng() & ~std::uint64_t{1} & (chance(50) ? 0 : ~std::uint64_t{0});
        const bool large = chance(10);
        std::uint64_t e = random_target(large) | x86_pte::present;
        if (large) e |= x86_pte::large;
        if (chance(80)) e |= x86_pte::writable;
        if (chance(88)) e |= x86_pte::user;
        if (chance(50)) e |= x86_pte::accessed;
        if (chance(50)) e |= x86_pte::dirty;
        if (chance(20)) e |= x86_pte::global;
        if (chance(10)) e |= x86_pte::write_through;
        if (chance(10)) e |= x86_pte::cache_disable;
        if (chance(12)) e |= x86_pte::no_execute;
        if (chance(3)) e |= bit(40);  // above MAXPHYADDR 36: reserved
        if (large && chance(5)) e |= bit(13);
        if (large && chance(20)) e |= x86_pte::pat_large;
        return e;
    }

    std::uint32_t random_entry32() {
        if (!chance(90)) return static_cast<std::uint32_t>(rng()) & ~1u;
        const bool large = chance(10);
        std::uint64_t e = random_target(large) | x86_pte::present;
        if (large) e = (e & 0xffc0'0000) | x86_pte::large | (chance(5) ? bit(13) : 0) | (chance(3) ? bit(21) : 0) |
                       (chance(20) ? x86_pte::pat_large : 0);
        if (chance(10)) e |= x86_pte::write_through | (chance(50) ? x86_pte::cache_disable : 0);
        if (chance(80)) e |= x86_pte::writable;
        if (chance(88)) e |= x86_pte::user;
        if (chance(50)) e |= x86_pte::accessed;
        if (chance(50)) e |= x86_pte::dirty;
        if (chance(20)) e |= x86_pte::global;
        return static_cast<std::uint32_t>(e);
    }

    void write_entry(std::uint64_t gpa, bool notify) {
        if (mode == paging_mode::legacy32) {
            const std::uint32_t v = random_entry32();
            REQUIRE(setup.guest.write(gpa & ~std::uint64_t{3}, &v, 4).ok());
            if (notify) (void)mmu.guest_table_written(gpa & ~std::uint64_t{3}, 4);
        } else {
            std::uint64_t v = random_entry64();
            // PDPTEs of PAE roots: keep most of them usable (their W/U/A bits are reserved).
            if (mode == paging_mode::pae && is_pae_root_entry(gpa) && chance(85))
                v = (chance(90) ? pool_frame() : random_target(false)) | x86_pte::present;
            REQUIRE(setup.guest.write(gpa & ~std::uint64_t{7}, &v, 8).ok());
            if (notify) (void)mmu.guest_table_written(gpa & ~std::uint64_t{7}, 8);
        }
    }

    bool is_pae_root_entry(std::uint64_t gpa) const {
        for (std::uint64_t r : roots)
            if (gpa >= r && gpa < r + 32) return true;
        return false;
    }

    void build() {
        const unsigned roots_count = 4;
        for (unsigned i = 0; i < roots_count; ++i) {
            std::uint64_t r = pool_frame();
            if (mode == paging_mode::pae) r += (rng() % 128) * 32;
            roots.push_back(r);
        }
        for (std::size_t p = 0; p < pool_pages; ++p)
            for (std::uint64_t off = 0; off < page_size; off += (mode == paging_mode::legacy32 ? 4 : 8))
                write_entry(pool_base + p * page_size + off, false);
        regs.cr3 = roots[0];
        switch (mode) {
        case paging_mode::off: regs.cr0 = cr0::wp; break;
        case paging_mode::legacy32: regs.cr0 = cr0::pg | cr0::wp; regs.cr4 = cr4::pse; break;
        case paging_mode::pae: regs.cr0 = cr0::pg | cr0::wp; regs.cr4 = cr4::pae; regs.efer = efer::nxe; break;
        case paging_mode::four_level:
            regs.cr0 = cr0::pg | cr0::wp;
            regs.cr4 = cr4::pae;
            regs.efer = efer::lme | efer::lma | efer::nxe;
            break;
        }
        load();
    }

    void load() {
        auto root = mmu.set_guest_paging(regs.cr0, regs.cr3, regs.cr4, regs.efer);
        REQUIRE(root.ok());
        CHECK(*root == mmu.root());
    }

    std::uint64_t random_gva() {
        if (!recent.empty() && chance(50)) return recent[rng() % recent.size()] ^ (rng() & 0xfff);
        std::uint64_t va = rng();
        if (mode == paging_mode::off && chance(80)) va &= 2 * ram_size - 1;
        if (mode == paging_mode::four_level) {
            va &= bits(47, 0);
            if (va & bit(47)) va |= bits(63, 48);
        } else {
            va &= 0xffff'ffff;
        }
        return va;
    }

    std::vector<std::uint8_t> snapshot() {
        std::vector<std::uint8_t> bytes(pool_pages * page_size);
        REQUIRE(setup.guest.read(pool_base, bytes.data(), bytes.size()).ok());
        return bytes;
    }
    void restore(const std::vector<std::uint8_t>& bytes) {
        REQUIRE(setup.guest.write(pool_base, bytes.data(), bytes.size()).ok());
    }

    // Memory type as the guest chose it, and never global where the guest leaf is not.
    void check_leaf_attributes(std::uint64_t va, std::uint64_t shadow_leaf) {
        const unsigned shadow_pat = (shadow_leaf & x86_pte::write_through ? 1 : 0) |
                                    (shadow_leaf & x86_pte::cache_disable ? 2 : 0) |
                                    (shadow_leaf & x86_pte::pat_small ? 4 : 0);
        if (mode == paging_mode::off) {
            CHECK(shadow_pat == 0);
            CHECK((shadow_leaf & x86_pte::global) == 0);
            return;
        }
        const auto entries = path_entries(va);
        const unsigned levels = mode == paging_mode::legacy32 ? 2 : mode == paging_mode::pae ? 3 : 4;
        const bool large = entries.size() < levels;
        std::uint64_t e = 0;
        REQUIRE(setup.guest.read(entries.back(), &e, mode == paging_mode::legacy32 ? 4 : 8).ok());
        const unsigned guest_pat = (e & x86_pte::write_through ? 1 : 0) | (e & x86_pte::cache_disable ? 2 : 0) |
                                   (e & (large ? x86_pte::pat_large : x86_pte::pat_small) ? 4 : 0);
        CHECK(shadow_pat == guest_pat);
        if (shadow_leaf & x86_pte::global) CHECK((e & x86_pte::global) != 0);
    }

    void access_step() {
        const std::uint64_t va = random_gva();
        guest_paging g = regs;
        g.cpl = chance(50) ? 3 : 0;
        g.rflags = chance(50) ? rflags::ac : 0;
        guest_access acc;
        acc.kind = static_cast<access_kind>(rng() % 3);
        acc.implicit_supervisor = g.cpl == 3 && chance(5);

        const auto before = snapshot();
        const access_outcome got = run_access(mmu, setup.host, g, va, acc);
        REQUIRE(got.kind != access_outcome::looped);
        if (got.kind == access_outcome::mmu_report &&
            (got.pf.outcome == pf_outcome::tracked_table_write || got.pf.outcome == pf_outcome::emulate_write)) {
            // The caller's emulator: the guest-virtual write (A/D as the CPU), then the notification.
            guest_access w = acc;
            const gva_result t = translate_gva(setup.guest, g, cpu, va, w);
            REQUIRE(t.status == gva_status::ok);
            std::uint8_t byte = 0;
            REQUIRE(setup.guest.read(t.gpa, &byte, 1).ok());
            REQUIRE(setup.guest.write(t.gpa, &byte, 1).ok());
            (void)mmu.guest_table_written(t.gpa, 1);
        }
        const auto after = snapshot();
        restore(before);
        const gva_result want = translate_gva(setup.guest, g, cpu, va, acc);
        const auto oracle_after = snapshot();
        CHECK_MESSAGE(after == oracle_after, "guest A/D bits differ, va=", va);
        ++checked;

        INFO("mode ", int(mode), " va ", va, " kind ", int(acc.kind), " cpl ", int(g.cpl));
        switch (want.status) {
        case gva_status::page_fault:
            REQUIRE(got.kind == access_outcome::mmu_report);
            CHECK(got.pf.outcome == pf_outcome::inject);
            CHECK(got.pf.error_code == want.error_code);
            ++injected;
            return;
        case gva_status::unbacked_gpa:
        case gva_status::non_canonical:
            REQUIRE(got.kind == access_outcome::mmu_report);
            CHECK(got.pf.outcome == pf_outcome::unhandled);
            return;
        case gva_status::ok: break;
        }
        const guest_region* region = setup.guest.find(want.gpa);
        const bool write = acc.kind == access_kind::write;
        if (!region || region->kind == region_kind::mmio || (write && region->kind == region_kind::rom)) {
            REQUIRE(got.kind == access_outcome::mmu_report);
            CHECK(got.pf.outcome == pf_outcome::mmio);
            CHECK(got.pf.gpa == want.gpa);
            ++mmio;
            return;
        }
        if (got.kind == access_outcome::hardware) {
            CHECK(got.hw.hpa == *setup.guest.backing(want.gpa & ~page_offset_mask) + (want.gpa & page_offset_mask));
            if (write) CHECK_FALSE(mmu.tracked(want.gpa));  // guest tables are write-protected
            check_leaf_attributes(va, got.hw.leaf);
            ++hardware_hits;
            recent.push_back(va);
            if (recent.size() > 32) recent.erase(recent.begin());
            return;
        }
        REQUIRE(write);
        CHECK(got.pf.gpa == want.gpa);
        if (got.pf.outcome == pf_outcome::tracked_table_write) {
            CHECK(mmu.tracked(want.gpa));
        } else {
            REQUIRE(got.pf.outcome == pf_outcome::emulate_write);
            CHECK(!(regs.cr0 & cr0::wp));
            CHECK(!want.rights.write);
        }
        ++emulated;
    }

    // The guest-physical addresses of the entries a walk of va reads.
    std::vector<std::uint64_t> path_entries(std::uint64_t va) {
        std::vector<std::uint64_t> out;
        auto record = [&](unsigned, std::uint64_t entry_pa, auto) {
            out.push_back(entry_pa);
            return true;
        };
        if (mode == paging_mode::legacy32) {
            legacy32_format f;
            f.pse = regs.cr4 & cr4::pse;
            (void)walk(f, setup.guest, regs.cr3 & bits(31, 12), va & 0xffff'ffff, record);
        } else if (mode == paging_mode::pae) {
            (void)walk(pae_format{}, setup.guest, regs.cr3 & bits(31, 5), va & 0xffff'ffff, record);
        } else if (mode == paging_mode::four_level) {
            (void)walk(x86_64_format{}, setup.guest, regs.cr3 & bits(35, 12), va, record);
        }
        return out;
    }

    // Rewrites or flips bits in an entry a recent access used, as the guest kernel would.
    void edit_path_step() {
        if (recent.empty() || mode == paging_mode::off) return;
        const auto entries = path_entries(recent[rng() % recent.size()]);
        if (entries.empty()) return;
        const std::uint64_t gpa = entries[rng() % entries.size()];
        if (chance(30) || (mode == paging_mode::pae && is_pae_root_entry(gpa))) {
            write_entry(gpa, true);
            return;
        }
        static constexpr std::uint64_t flips[] = {x86_pte::present, x86_pte::writable, x86_pte::user,
                                                  x86_pte::accessed, x86_pte::dirty, x86_pte::large,
                                                  x86_pte::global, x86_pte::no_execute};
        const std::uint64_t flip = flips[rng() % (mode == paging_mode::legacy32 ? 7 : 8)];
        const unsigned size = mode == paging_mode::legacy32 ? 4 : 8;
        std::uint64_t v = 0;
        REQUIRE(setup.guest.read(gpa, &v, size).ok());
        v ^= flip;
        REQUIRE(setup.guest.write(gpa, &v, size).ok());
        (void)mmu.guest_table_written(gpa, size);
    }

    void toggle_step() {
        const unsigned which = rng() % 6;
        if (mode == paging_mode::off) return;
        switch (which) {
        case 0: regs.cr0 ^= cr0::wp; break;
        case 1: regs.cr4 ^= pge; break;
        case 2: regs.cr4 ^= cr4::smep; break;
        case 3: regs.cr4 ^= cr4::smap; break;
        case 4:
            if (mode == paging_mode::legacy32) regs.cr4 ^= cr4::pse;
            else regs.efer ^= efer::nxe;
            break;
        case 5: regs.cr4 ^= pge; break;
        }
        load();
    }

    void run(int steps) {
        build();
        for (int i = 0; i < steps; ++i) {
            const unsigned op = rng() % 100;
            if (op < 65) {
                access_step();
            } else if (op < 72) {
                if (mode != paging_mode::off) write_entry(pool_frame() + (rng() % page_size), true);
            } else if (op < 80) {
                edit_path_step();
            } else if (op < 85) {
                mmu.invlpg(random_gva());
            } else if (op < 94) {
                regs.cr3 = roots[rng() % roots.size()];
                if (mode != paging_mode::off) load();
            } else if (op < 99) {
                toggle_step();
            } else {
                REQUIRE(mmu.flush_all().ok());
            }
            if (mmu.stats().live_pages > MaxPages) FAIL("over the shadow page bound");
        }
    }
};

template <std::size_t MaxPages>
void run_mode(paging_mode mode, std::uint64_t seed, int steps) {
    random_guest<MaxPages> g(mode, seed);
    g.run(steps);
    MESSAGE("mode ", int(mode), " bound ", MaxPages, ": checked ", g.checked, " hw ", g.hardware_hits, " #PF ",
            g.injected, " emulated ", g.emulated, " mmio ", g.mmio, " allocations ", g.mmu.stats().allocations,
            " evictions ", g.mmu.stats().evictions);
    CHECK(g.checked > steps / 2);
    CHECK(g.hardware_hits > 0);
    if (mode != paging_mode::off) CHECK(g.injected > 0);
}

} // namespace

TEST_CASE("shadow MMU matches the guest walker, random tables and operations") {
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        for (paging_mode mode : {paging_mode::off, paging_mode::legacy32, paging_mode::pae, paging_mode::four_level}) {
            CAPTURE(seed);
            run_mode<512>(mode, seed, 3000);
        }
    }
}

TEST_CASE("shadow MMU stays exact under a tight shadow page bound (eviction)") {
    for (paging_mode mode : {paging_mode::legacy32, paging_mode::pae, paging_mode::four_level}) {
        run_mode<10>(mode, 11, 3000);
    }
}
