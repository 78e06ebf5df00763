// Entry encodings, checked bit by bit against the SDM/APM layouts, and the TLB request.
#include <doctest/doctest.h>
#include <cstdint>
#include <vector>
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/tlb.hpp"

using namespace hv::mmu;

namespace {
page_attrs attrs(bool r, bool w, bool x, memory_type t = memory_type::wb) {
    page_attrs a;
    a.read = r;
    a.write = w;
    a.execute = x;
    a.type = t;
    return a;
}

const memory_type all_types[] = {memory_type::uc, memory_type::wc, memory_type::wt,
                                 memory_type::wp, memory_type::wb, memory_type::uc_minus};

// Every attribute combination the format accepts must decode to itself (after dropping
// what the format has no bits for).
template <class F, class Normalize>
void check_round_trip(const F& f, unsigned level, Normalize normalize) {
    int accepted = 0;
    for (unsigned mask = 0; mask < 256; ++mask)
        for (memory_type t : all_types) {
            page_attrs a;
            a.read = mask & 1;
            a.write = mask & 2;
            a.execute = mask & 4;
            a.user = mask & 8;
            a.global = mask & 16;
            a.ignore_pat = mask & 32;
            a.accessed = mask & 64;
            a.dirty = mask & 128;
            a.type = t;
            if (!f.check(a).ok()) continue;
            ++accepted;
            const std::uint64_t pa = level_size<F>(level) * 3;
            const auto e = f.make_leaf(pa, level, a);
            CAPTURE(mask);
            CAPTURE(int(t));
            CHECK(f.present(e));
            CHECK(f.is_leaf(e, level));
            CHECK(f.leaf_address(e, level) == pa);
            CHECK(f.leaf_attrs(e, level) == normalize(a));
        }
    CHECK(accepted > 0);
}
} // namespace

TEST_CASE("EPT leaves: R/W/X in bits 2:0, memory type 5:3, ignore PAT 6, PS 7, A 8, D 9") {
    ept_format f;
    CHECK(f.make_leaf(0x5000, 1, attrs(true, false, false)) == 0x5000 + 0x1 + (6 << 3));
    CHECK(f.make_leaf(0x5000, 1, attrs(true, true, true, memory_type::uc)) == 0x5007);
    CHECK(f.make_leaf(0x5000, 1, attrs(false, false, true, memory_type::wc)) == 0x5000 + 0x4 + (1 << 3));
    CHECK(f.make_leaf(0, 1, attrs(true, false, false, memory_type::wt)) == 1 + (4 << 3));
    CHECK(f.make_leaf(0, 1, attrs(true, false, false, memory_type::wp)) == 1 + (5 << 3));
    page_attrs a = attrs(true, true, false);
    a.ignore_pat = true;
    a.accessed = true;
    a.dirty = true;
    CHECK(f.make_leaf(0x4000'0000, 3, a) == 0x4000'0000 + 3 + (6 << 3) + 0x40 + 0x80 + 0x100 + 0x200);
    CHECK(f.make_leaf(0x20'0000, 2, attrs(true, false, false)) == 0x20'0000 + 1 + (6 << 3) + 0x80);
    CHECK(f.make_table(0x7000, 4) == 0x7007);
    // Not present iff bits 2:0 are clear, whatever else is set.
    CHECK_FALSE(f.present(0xffff'ffff'ffff'fff8));
    CHECK(f.present(0x4));
    CHECK(f.check(attrs(false, true, false)).code() == hv::errc::invalid_argument);  // W without R
    CHECK(f.check(attrs(false, false, false)).code() == hv::errc::invalid_argument);
    CHECK(f.check(attrs(true, false, false, memory_type::uc_minus)).code() == hv::errc::invalid_argument);
    f.execute_only = false;
    CHECK(f.check(attrs(false, false, true)).code() == hv::errc::not_supported);
    f.execute_only = true;
    CHECK(f.check(attrs(false, false, true)).ok());
    // EPTP: WB walk, length 4, A/D enable in bit 6.
    CHECK(make_eptp(0x12'3000, false) == 0x12'301e);
    CHECK(make_eptp(0x12'3000, true) == 0x12'305e);
    for (unsigned level = 1; level <= 3; ++level)
        check_round_trip(f, level, [](page_attrs a) {
            a.user = false;
            a.global = false;
            return a;
        });
}

TEST_CASE("NPT uses the x86-64 format with user leaves and 48-bit guest-physical input") {
    const x86_64_format f = npt_format();
    page_attrs a = attrs(true, true, true);
    CHECK(f.check(a).code() == hv::errc::invalid_argument);  // nested walks are user accesses
    a.user = true;
    REQUIRE(f.check(a).ok());
    const std::uint64_t leaf = f.make_leaf(0x1234'5000, 1, a);
    CHECK(leaf == 0x1234'5000 + (x86_pte::present | x86_pte::writable | x86_pte::user));
    CHECK((f.make_table(0x9000, 4) & 0xfff) == 0x7);  // P, RW, US on every table entry
    CHECK(f.input_ok(0x0000'8000'0000'0000, 0x0000'ffff'ffff'ffff));  // not canonical, still a GPA
    CHECK_FALSE(f.input_ok(0, 0x0001'0000'0000'0000));
    CHECK(f.input_address(0x0000'8000'0000'0000) == 0x0000'8000'0000'0000);
    // NPT memory types go through the host PAT: UC is PCD|PWT, WC is the PAT bit.
    a.type = memory_type::uc;
    CHECK((f.make_leaf(0, 1, a) & 0x98) == 0x18);
    a.type = memory_type::wc;
    CHECK((f.make_leaf(0, 1, a) & 0x98) == 0x80);
    CHECK((f.make_leaf(0, 2, a) & 0x1098) == 0x1080);  // large: PS plus PAT in bit 12
}

TEST_CASE("x86-64 leaves: PAT index per memory type, NX, global, canonical input") {
    x86_64_format f;
    const std::pair<memory_type, std::uint64_t> small[] = {
        {memory_type::wb, 0}, {memory_type::wt, 0x8}, {memory_type::uc_minus, 0x10},
        {memory_type::uc, 0x18}, {memory_type::wc, 0x80}, {memory_type::wp, 0x88}};
    for (auto [type, pat] : small) {
        CAPTURE(int(type));
        page_attrs a = attrs(true, false, true, type);
        CHECK((f.make_leaf(0, 1, a) & 0x98) == pat);
        const std::uint64_t large_pat = (pat & 0x18) | (pat & 0x80 ? 0x1000 : 0);
        CHECK((f.make_leaf(0, 2, a) & 0x1098) == (large_pat | 0x80));
    }
    page_attrs a = attrs(true, false, false);
    a.global = true;
    CHECK(f.make_leaf(0x20'0000, 2, a) == 0x8000'0000'0020'0000 + 0x80 + 0x100 + 1);
    CHECK(f.input_ok(0xffff'8000'0000'0000, 0xffff'ffff'ffff'ffff));
    CHECK_FALSE(f.input_ok(0x0000'7fff'ffff'f000, 0xffff'8000'0000'0fff));  // across the hole
    CHECK_FALSE(f.input_ok(0x0000'8000'0000'0000, 0x0000'8000'0000'0fff));
    CHECK(f.input_address(0x0000'8000'0000'0000) == 0xffff'8000'0000'0000);
    f.nx = false;
    CHECK(f.check(attrs(true, true, false)).code() == hv::errc::not_supported);
    CHECK(f.leaf_attrs(bit(63) | 1, 1).execute);  // bit 63 means nothing without NXE
    f.nx = true;
    CHECK(f.check(attrs(false, true, true)).code() == hv::errc::not_supported);  // always readable
    for (unsigned level = 1; level <= 3; ++level)
        check_round_trip(f, level, [](page_attrs a) { return a; });
    // Reserved bits for the guest walker.
    f.maxphyaddr = 40;
    CHECK(f.reserved_bits(bit(40) | 1, 1) == bit(40));
    CHECK(f.reserved_bits(bit(39) | 1, 1) == 0);
    CHECK(f.reserved_bits(0x81, 4) == 0x80);                 // PS in a PML4E
    CHECK(f.reserved_bits(0x81 | bit(13), 2) == bit(13));    // 2 MiB leaf bits 20:13
    CHECK(f.reserved_bits(0x81 | bit(29), 3) == bit(29));    // 1 GiB leaf bits 29:13
    f.gbpages = false;
    CHECK(f.reserved_bits(0x81, 3) == 0x80);                 // no 1 GiB pages: PS reserved
    f.nx = false;
    CHECK(f.reserved_bits(bit(63) | 1, 1) == bit(63));
}

TEST_CASE("PAE: PDPTEs carry only P, PWT, PCD and the address") {
    pae_format f;
    f.maxphyaddr = 36;
    CHECK(f.make_table(0x3000, 3) == 0x3001);
    CHECK(f.make_table(0x3000, 2) == 0x3007);
    for (unsigned b : {1u, 2u, 5u, 6u, 7u, 8u, 36u, 52u, 62u, 63u}) {
        CAPTURE(b);
        CHECK(f.reserved_bits(bit(b) | 1, 3) == bit(b));
    }
    CHECK(f.reserved_bits(0x19 | bit(35), 3) == 0);
    CHECK(f.reserved_bits(bit(62) | 1, 1) == bit(62));  // unlike 4-level, 62:M are reserved
    CHECK(f.reserved_bits(bit(63) | 1, 1) == 0);
    CHECK(f.reserved_bits(0x81 | bit(20), 2) == bit(20));
    CHECK(f.rights(0, 3).write);  // a PDPTE restricts nothing
    CHECK(f.accessed_bit(3) == 0);
    CHECK(f.table_page_ok(0xffff'f000, true));
    CHECK_FALSE(f.table_page_ok(0x1'0000'0000, true));  // CR3 is 32 bits in PAE mode
    CHECK(f.table_page_ok(0x1'0000'0000, false));
    for (unsigned level = 1; level <= 2; ++level)
        check_round_trip(f, level, [](page_attrs a) { return a; });
}

TEST_CASE("32-bit paging: 4 MiB PSE-36 leaves and their reserved bits") {
    legacy32_format f;
    page_attrs a = attrs(true, true, true, memory_type::wc);
    // PA 0x3_0040_0000: bits 39:32 (= 3) go to bits 20:13, PAT (index 4) to bit 12.
    const std::uint32_t e = f.make_leaf(0x3'0040'0000, 2, a);
    CHECK(e == (0x0040'0000u | (3u << 13) | 0x1000u | 0x80u | 0x3u));
    CHECK(f.leaf_address(e, 2) == 0x3'0040'0000);
    f.maxphyaddr = 36;  // PSE-36: address bits 16:13; 21 and 20:17 reserved
    CHECK(f.reserved_bits(e | (1u << 17), 2) == (1u << 17));
    CHECK(f.reserved_bits(e | (1u << 21), 2) == (1u << 21));
    CHECK(f.reserved_bits(e | (1u << 16), 2) == 0);
    CHECK(f.reserved_bits(0xffff'ffff, 1) == 0);  // no reserved bits in a PTE
    f.pse = false;
    CHECK_FALSE(f.is_leaf(e, 2));  // PS ignored without CR4.PSE
    CHECK(f.reserved_bits(e | (1u << 21), 2) == 0);
    CHECK(f.check(attrs(true, true, false)).code() == hv::errc::not_supported);  // no NX here
    f.pse = true;
    f.maxphyaddr = 40;
    for (unsigned level = 1; level <= 2; ++level)
        check_round_trip(f, level, [](page_attrs a) { return a; });
}

TEST_CASE("the host PAT programs every memory type once") {
    CHECK(hypervisor_pat_msr() == 0x0007'0501'0007'0406);
    for (memory_type t : all_types) CHECK(pat_index_of(t) < 8);
}

TEST_CASE("a TLB request merges touching ranges and degrades to a full flush") {
    tlb_flush f;
    CHECK(f.scope() == flush_scope::none);
    f.add(0x1000, 0x1fff);
    f.add(0x3000, 0x3fff);
    f.add(0x2000, 0x2fff);  // bridges the two
    REQUIRE(f.scope() == flush_scope::ranges);
    REQUIRE(f.ranges().size() == 1);
    CHECK(f.ranges()[0] == address_range{0x1000, 0x3fff});
    f.add(0xffff'ffff'ffff'f000, 0xffff'ffff'ffff'ffff);
    f.add(0xffff'ffff'ffff'e000, 0xffff'ffff'ffff'efff);
    CHECK(f.ranges().size() == 2);
    CHECK(f.covers(0xffff'ffff'ffff'e123));
    CHECK_FALSE(f.covers(0x4000));
    for (std::uint64_t i = 0; i < tlb_flush::max_ranges; ++i) f.add(0x100000 * (i + 1), 0x100000 * (i + 1));
    CHECK(f.scope() == flush_scope::all);
    CHECK(f.covers(0x4000));
    f.clear();
    CHECK(f.scope() == flush_scope::none);
    CHECK_FALSE(f.covers(0x1000));
}
