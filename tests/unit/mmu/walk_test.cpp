// The one walker in every builder format against plain, per-format reference walks
// (written from the SDM/APM here, one function per format) over random tables.
#include <doctest/doctest.h>
#include <array>
#include <cstdint>
#include <optional>
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/walk.hpp"
#include "tests/unit/mmu/random_tables.hpp"

using namespace hv::mmu;
using hv::mmu::test::fake_memory;
using hv::mmu::test::random_tables;

namespace {

struct ref_leaf {
    std::uint64_t pa;
    unsigned level;
    page_attrs attrs;
};

constexpr std::uint64_t addr_51_12 = 0x000f'ffff'ffff'f000;

std::optional<std::uint64_t> read64(fake_memory& m, std::uint64_t pa) {
    if (!m.contains(pa)) return std::nullopt;
    return m.read<std::uint64_t>(pa);
}
std::optional<std::uint32_t> read32(fake_memory& m, std::uint64_t pa) {
    if (!m.contains(pa)) return std::nullopt;
    return m.read<std::uint32_t>(pa);
}

// x86 leaf bits, with libhv's PAT: WB WT UC- UC WC WP UC- UC.
page_attrs ref_x86_attrs(std::uint64_t e, bool large, bool nx) {
    static constexpr memory_type pat[8] = {memory_type::wb, memory_type::wt, memory_type::uc_minus,
                                           memory_type::uc, memory_type::wc, memory_type::wp,
                                           memory_type::uc_minus, memory_type::uc};
    page_attrs a;
    a.write = (e >> 1) & 1;
    a.user = (e >> 2) & 1;
    a.accessed = (e >> 5) & 1;
    a.dirty = (e >> 6) & 1;
    a.global = (e >> 8) & 1;
    a.execute = !(nx && (e >> 63));
    const unsigned pat_bit = large ? (e >> 12) & 1 : (e >> 7) & 1;
    a.type = pat[((e >> 3) & 1) | (((e >> 4) & 1) << 1) | (pat_bit << 2)];
    return a;
}

// The PD and PT levels, the same in 4-level and PAE paging.
std::optional<ref_leaf> ref_pd_pt(fake_memory& m, std::uint64_t pd, std::uint64_t va) {
    auto pde = read64(m, pd + ((va >> 21) & 511) * 8);
    if (!pde || !(*pde & 1)) return std::nullopt;
    if (*pde & 0x80)
        return ref_leaf{(*pde & addr_51_12 & ~0x1f'ffffull) | (va & 0x1f'ffff), 2, ref_x86_attrs(*pde, true, true)};
    auto pte = read64(m, (*pde & addr_51_12) + ((va >> 12) & 511) * 8);
    if (!pte || !(*pte & 1)) return std::nullopt;
    return ref_leaf{(*pte & addr_51_12) | (va & 0xfff), 1, ref_x86_attrs(*pte, false, true)};
}

std::optional<ref_leaf> ref_x86_64(fake_memory& m, std::uint64_t root, std::uint64_t va) {
    auto pml4e = read64(m, root + ((va >> 39) & 511) * 8);
    if (!pml4e || !(*pml4e & 1)) return std::nullopt;
    auto pdpte = read64(m, (*pml4e & addr_51_12) + ((va >> 30) & 511) * 8);
    if (!pdpte || !(*pdpte & 1)) return std::nullopt;
    if (*pdpte & 0x80)
        return ref_leaf{(*pdpte & addr_51_12 & ~0x3fff'ffffull) | (va & 0x3fff'ffff), 3, ref_x86_attrs(*pdpte, true, true)};
    return ref_pd_pt(m, *pdpte & addr_51_12, va);
}

std::optional<ref_leaf> ref_pae(fake_memory& m, std::uint64_t root, std::uint64_t va) {
    va &= 0xffff'ffff;
    auto pdpte = read64(m, root + ((va >> 30) & 3) * 8);
    if (!pdpte || !(*pdpte & 1)) return std::nullopt;
    return ref_pd_pt(m, *pdpte & addr_51_12, va);
}

// CR4.PSE=1, 40-bit physical addresses (PSE-36 bits 20:13 hold PA 39:32).
std::optional<ref_leaf> ref_legacy32(fake_memory& m, std::uint64_t root, std::uint64_t va) {
    va &= 0xffff'ffff;
    auto pde = read32(m, root + ((va >> 22) & 1023) * 4);
    if (!pde || !(*pde & 1)) return std::nullopt;
    if (*pde & 0x80) {
        const std::uint64_t pa = (*pde & 0xffc0'0000ull) | (std::uint64_t((*pde >> 13) & 0xff) << 32);
        return ref_leaf{pa | (va & 0x3f'ffff), 2, ref_x86_attrs(*pde, true, false)};
    }
    auto pte = read32(m, (*pde & 0xffff'f000) + ((va >> 12) & 1023) * 4);
    if (!pte || !(*pte & 1)) return std::nullopt;
    return ref_leaf{(*pte & 0xffff'f000ull) | (va & 0xfff), 1, ref_x86_attrs(*pte, false, false)};
}

page_attrs ref_ept_attrs(std::uint64_t e) {
    page_attrs a;
    a.read = e & 1;
    a.write = (e >> 1) & 1;
    a.execute = (e >> 2) & 1;
    a.type = static_cast<memory_type>((e >> 3) & 7);
    a.ignore_pat = (e >> 6) & 1;
    a.accessed = (e >> 8) & 1;
    a.dirty = (e >> 9) & 1;
    return a;
}

std::optional<ref_leaf> ref_ept(fake_memory& m, std::uint64_t root, std::uint64_t gpa) {
    auto pml4e = read64(m, root + ((gpa >> 39) & 511) * 8);
    if (!pml4e || !(*pml4e & 7)) return std::nullopt;
    auto pdpte = read64(m, (*pml4e & addr_51_12) + ((gpa >> 30) & 511) * 8);
    if (!pdpte || !(*pdpte & 7)) return std::nullopt;
    if (*pdpte & 0x80)
        return ref_leaf{(*pdpte & addr_51_12 & ~0x3fff'ffffull) | (gpa & 0x3fff'ffff), 3, ref_ept_attrs(*pdpte)};
    auto pde = read64(m, (*pdpte & addr_51_12) + ((gpa >> 21) & 511) * 8);
    if (!pde || !(*pde & 7)) return std::nullopt;
    if (*pde & 0x80)
        return ref_leaf{(*pde & addr_51_12 & ~0x1f'ffffull) | (gpa & 0x1f'ffff), 2, ref_ept_attrs(*pde)};
    auto pte = read64(m, (*pde & addr_51_12) + ((gpa >> 12) & 511) * 8);
    if (!pte || !(*pte & 7)) return std::nullopt;
    return ref_leaf{(*pte & addr_51_12) | (gpa & 0xfff), 1, ref_ept_attrs(*pte)};
}

template <class F, class Entry, class MakeEntry, class Reference>
void compare_walks(const F& format, MakeEntry&& make_entry, Reference&& reference, std::uint64_t va_mask) {
    std::array<int, 5> leaves_per_level{};
    int misses = 0;
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
        random_tables t(seed, 24);
        t.fill<Entry>([&](std::uint64_t target) { return make_entry(t, target); });
        const std::uint64_t root = t.pick_frame();
        for (int i = 0; i < 1000; ++i) {
            const std::uint64_t va = t.rng() & va_mask;
            const auto got = translate(format, t.memory, root, va);
            const auto want = reference(t.memory, root, va);
            CAPTURE(seed);
            CAPTURE(va);
            REQUIRE(got.has_value() == want.has_value());
            if (!want) { ++misses; continue; }
            CHECK(got->pa == want->pa);
            CHECK(got->level == want->level);
            CHECK(got->attrs == want->attrs);
            ++leaves_per_level[want->level];
        }
    }
    // The random tables must reach every leaf level, and miss too.
    for (unsigned level = 1; level <= F::levels; ++level)
        if (format.leaf_allowed(level)) CHECK(leaves_per_level[level] > 100);
    CHECK(misses > 100);
}

} // namespace

TEST_CASE("walker, x86-64 format, matches the reference on random tables") {
    compare_walks<x86_64_format, std::uint64_t>(
        x86_64_format{},
        [](random_tables& t, std::uint64_t target) {
            return target | (t.rng() & 0xffe) | (t.chance(80) ? 1 : 0) | t.sometimes_bits(30, 63, 52);
        },
        ref_x86_64, ~std::uint64_t{0});
}

TEST_CASE("walker, PAE format, matches the reference on random tables") {
    compare_walks<pae_format, std::uint64_t>(
        pae_format{},
        [](random_tables& t, std::uint64_t target) {
            return target | (t.rng() & 0xffe) | (t.chance(80) ? 1 : 0) | t.sometimes_bits(30, 63, 52);
        },
        ref_pae, 0xffff'ffff);
}

TEST_CASE("walker, 32-bit format, matches the reference on random tables") {
    compare_walks<legacy32_format, std::uint32_t>(
        legacy32_format{},
        [](random_tables& t, std::uint64_t target) {
            return std::uint32_t(target | (t.rng() & 0xffe) | (t.chance(80) ? 1 : 0));
        },
        ref_legacy32, 0xffff'ffff);
}

TEST_CASE("walker, EPT format, matches the reference on random tables") {
    compare_walks<ept_format, std::uint64_t>(
        ept_format{},
        [](random_tables& t, std::uint64_t target) {
            const std::uint64_t access = t.chance(80) ? 1 + t.rng() % 7 : 0;
            return target | (t.rng() & 0xff8) | access | t.sometimes_bits(30, 63, 52);
        },
        ref_ept, 0x0000'ffff'ffff'ffff);
}

TEST_CASE("the walker reports where it stopped and why") {
    fake_memory m;
    const std::uint64_t root = *m.alloc_page();
    const std::uint64_t pdpt = *m.alloc_page();
    m.write<std::uint64_t>(root, pdpt | 0x7);
    m.write<std::uint64_t>(pdpt + 8, 0x4000'0000 | 0x81);         // 1 GiB leaf at index 1
    m.write<std::uint64_t>(pdpt + 16, 0x1234'5000'0000'0000 | 1); // table outside memory
    auto never = [](unsigned, std::uint64_t, std::uint64_t) { return true; };
    x86_64_format f;
    walk_end e = walk(f, m, root, 0x4000'1234, never);
    CHECK(e.stop == walk_stop::leaf);
    CHECK(e.level == 3);
    CHECK(e.entry_pa == pdpt + 8);
    e = walk(f, m, root, 0xc000'0000, never);
    CHECK(e.stop == walk_stop::not_present);
    CHECK(e.entry_pa == pdpt + 24);
    e = walk(f, m, root, 0x8000'0000, never);
    CHECK(e.stop == walk_stop::unreachable);
    CHECK(e.level == 2);
    e = walk(f, m, root, 0x4000'0000, [](unsigned level, std::uint64_t, std::uint64_t) { return level != 3; });
    CHECK(e.stop == walk_stop::rejected);
}
