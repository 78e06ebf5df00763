// Guest memory: regions and bounds-checked accessors, nested tables that map only the
// guest's own memory (the isolation guarantee), nested-fault resolution, guest page
// tables built in guest RAM by the one builder, and guest-virtual copies.
#include <doctest/doctest.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string_view>
#include <vector>
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/page_table.hpp"
#include "tests/unit/mmu/fake_memory.hpp"
#include "tests/unit/mmu/paging_regs.hpp"

using namespace hv::mmu;
using hv::mmu::test::fake_memory;
using hv::mmu::test::paging_regs;

namespace {
constexpr std::uint64_t KiB4 = 0x1000, MiB = 0x10'0000, GiB = 0x4000'0000;

std::string_view what(const hv::status& s) { return s.ok() ? "ok" : s.err().what; }
} // namespace

TEST_CASE("guest regions: whole pages, no overlaps, within the address width, bounded count") {
    fake_memory host;
    guest_memory<fake_memory> g(host, std::uint64_t{1} << 40);
    REQUIRE(g.init().ok());
    CHECK(g.add_ram(0, 2 * MiB).ok());
    CHECK(g.add_rom(0xfff0'0000, MiB).ok());
    CHECK(g.add_mmio(0xfee0'0000, KiB4, 7).ok());
    CHECK(g.add_ram(0x1000, KiB4).code() == hv::errc::exists);
    CHECK(g.add_mmio(0xfff0'0000 - KiB4, 2 * KiB4, 1).code() == hv::errc::exists);
    CHECK(g.add_ram(0x30'0001, KiB4).code() == hv::errc::invalid_argument);
    CHECK(g.add_ram(0x30'0000, 0).code() == hv::errc::invalid_argument);
    CHECK(g.add_ram((std::uint64_t{1} << 40) - KiB4, 2 * KiB4).code() == hv::errc::out_of_range);
    CHECK(g.add_ram(0xffff'ffff'ffff'f000, 2 * KiB4).code() == hv::errc::out_of_range);
    REQUIRE(g.regions().size() == 3);
    CHECK(g.regions()[0].base == 0);
    CHECK(g.regions()[1].kind == region_kind::mmio);  // sorted by base
    CHECK(g.find(0xfee0'0fff)->device == 7);
    CHECK(g.find(0xfee0'1000) == nullptr);
    for (std::uint64_t i = 3; i < region_map::capacity; ++i)
        REQUIRE(g.add_mmio(GiB * i, KiB4, std::uint32_t(i)).ok());
    CHECK(g.add_mmio(GiB * 100, KiB4, 0).code() == hv::errc::overflow);
}

TEST_CASE("guest-physical accessors check the whole range before copying") {
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_ram(0, 16 * KiB4).ok());
    REQUIRE(g.add_ram(16 * KiB4, 16 * KiB4).ok());  // adjacent, separately backed
    REQUIRE(g.add_rom(0x10'0000, 4 * KiB4).ok());
    REQUIRE(g.add_mmio(0x20'0000, KiB4, 3).ok());

    std::vector<std::uint8_t> data(3 * KiB4 + 100);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::uint8_t(i * 7 + 1);
    REQUIRE(g.write(15 * KiB4 - 50, data.data(), data.size()).ok());  // crosses pages and regions
    std::vector<std::uint8_t> back(data.size());
    REQUIRE(g.read(15 * KiB4 - 50, back.data(), back.size()).ok());
    CHECK(back == data);

    std::uint8_t byte = 0xaa;
    hv::status s = g.write(32 * KiB4 - 1, data.data(), 2);  // last RAM byte plus one in the hole
    CHECK(s.code() == hv::errc::fault);
    CHECK(what(s) == "guest-physical address in a hole");
    REQUIRE(g.read(32 * KiB4 - 1, &byte, 1).ok());
    CHECK(byte == 0);  // nothing was written
    s = g.read(0x20'0010, &byte, 1);
    CHECK(what(s) == "guest-physical address is MMIO");
    s = g.write(0x10'0000, &byte, 1);
    CHECK(s.code() == hv::errc::permission);
    CHECK(what(s) == "write to guest ROM");
    const char rom_image[] = "firmware";
    REQUIRE(g.load(0x10'0000 + KiB4 - 3, rom_image, sizeof rom_image).ok());
    char rom_back[sizeof rom_image] = {};
    REQUIRE(g.read(0x10'0000 + KiB4 - 3, rom_back, sizeof rom_back).ok());
    CHECK(std::string_view(rom_back) == "firmware");
    CHECK(g.read(0xffff'ffff'ffff'fff0, back.data(), 32).code() == hv::errc::out_of_range);
    CHECK(g.host_pointer(std::uint64_t{1} << 48, false) == nullptr);  // beyond the width, not aliased
    // Lookups go through a small translation cache: a ROM page seen for reading stays
    // refused for writing, and pages sharing a cache slot keep their own backing.
    CHECK(g.host_pointer(0x10'0000, false) != nullptr);
    CHECK(g.host_pointer(0x10'0000, true) == nullptr);
    for (std::uint64_t gpa = 0; gpa < 32 * KiB4; gpa += KiB4) {
        CHECK(g.host_pointer(gpa + 8, true) == host.host_pointer(*g.backing(gpa) + 8, true));
        CHECK(*g.backing(gpa + 8) == *g.backing(gpa) + 8);
    }
}

TEST_CASE("adding guest RAM is all or nothing when the allocator runs dry") {
    fake_memory host(fake_memory::placement::ascending);
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    const std::size_t before = host.live_pages();
    for (long n : {0L, 1L, 5L, 300L, 513L}) {
        CAPTURE(n);
        host.fail_after(n);
        CHECK(g.add_ram(GiB - MiB, 4 * MiB).code() == hv::errc::no_memory);
        host.fail_after(-1);
        CHECK(g.regions().empty());
        CHECK(host.live_pages() == before);
        CHECK(g.host_pointer(GiB, false) == nullptr);
    }
    CHECK(host.bad_frees() == 0);
    CHECK(g.add_ram(GiB - MiB, 4 * MiB).ok());
}

namespace {

// A random guest layout: RAM, ROM and MMIO regions of random sizes at random places
// in the low 64 GiB, some touching.
template <class G>
void random_layout(G& g, std::mt19937_64& rng) {
    std::uint64_t at = (rng() % 64) * KiB4;
    for (int i = 0; i < 12; ++i) {
        const std::uint64_t size = (1 + rng() % (rng() % 2 ? 8 : 1100)) * KiB4;
        const int kind = int(rng() % 4);
        if (kind == 3) REQUIRE(g.add_mmio(at, size, std::uint32_t(i)).ok());
        else if (kind == 2) REQUIRE(g.add_rom(at, size).ok());
        else REQUIRE(g.add_ram(at, size).ok());
        at += size + (rng() % 3 == 0 ? 0 : (rng() % 2 ? (rng() % 600) * KiB4 : (rng() % 8) * GiB));
    }
}

std::set<std::uint64_t> table_pages(fake_memory& m, std::uint64_t root, unsigned level, auto present, auto leaf) {
    std::set<std::uint64_t> out{root};
    if (level == 1) return out;
    for (unsigned i = 0; i < 512; ++i) {
        const std::uint64_t e = m.read<std::uint64_t>(root + i * 8);
        if (present(e) && !leaf(e, level)) out.merge(table_pages(m, e & 0x000f'ffff'ffff'f000, level - 1, present, leaf));
    }
    return out;
}

// Everything the nested tables map must be the guest's own RAM/ROM, at its own backing
// page, writable only for RAM; every RAM/ROM page must be mapped; nothing else.
template <class F>
void check_isolation(const F& format, fake_memory::placement placement, std::uint64_t seed) {
    fake_memory host(placement, std::uint64_t{1} << 36, seed);
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    std::mt19937_64 rng(seed);
    random_layout(g, rng);
    page_table<F, fake_memory> nested(format, host);
    REQUIRE(nested.init().ok());
    {
        auto tx = nested.begin();
        REQUIRE(g.map_nested(tx).ok());
    }

    std::uint64_t guest_pages = 0;
    for (const guest_region& r : g.regions())
        if (r.kind != region_kind::mmio) guest_pages += r.size / KiB4;

    std::set<std::uint64_t> hpas;
    std::uint64_t mapped_pages = 0, wrong = 0;
    nested.for_each_mapping([&](const mapping& m) {
        for (std::uint64_t off = 0; off < m.size; off += KiB4) {
            const std::uint64_t gpa = m.va + off;
            const guest_region* r = g.find(gpa);
            ++mapped_pages;
            if (!r || r->kind == region_kind::mmio) { ++wrong; continue; }
            if (g.backing(gpa) != m.pa + off) ++wrong;
            if (m.attrs.write != (r->kind == region_kind::ram)) ++wrong;
            if (!m.attrs.read || !m.attrs.execute) ++wrong;
            hpas.insert(m.pa + off);
        }
    });
    CHECK(wrong == 0);
    CHECK(mapped_pages == guest_pages);
    CHECK(hpas.size() == guest_pages);  // no two guest pages share a host page

    // No host page the hypervisor uses for tables is reachable by the guest.
    const auto tables = table_pages(host, nested.root(), 4, [&](std::uint64_t e) { return format.present(e); },
                                    [&](std::uint64_t e, unsigned l) { return format.is_leaf(e, l); });
    for (std::uint64_t t : tables) CHECK(hpas.count(t) == 0);
    CHECK(host.live_pages() == guest_pages + g.backing_table_pages() + nested.table_pages());

    // Probes anywhere in the 48-bit space: mapped exactly inside RAM/ROM.
    std::size_t probe_errors = 0;
    for (int i = 0; i < 20000; ++i) {
        const std::uint64_t gpa = i % 2 ? rng() & 0x0000'ffff'ffff'ffff : rng() % (72 * GiB);
        const guest_region* r = g.find(gpa);
        const bool own = r && r->kind != region_kind::mmio;
        const auto t = nested.translate(gpa);
        if (t.has_value() != own || (own && t->pa != *g.backing(gpa & ~0xfffull) + (gpa & 0xfff))) ++probe_errors;
    }
    CHECK(probe_errors == 0);
}

} // namespace

TEST_CASE("isolation: EPT built from the regions maps only the guest's own memory") {
    for (std::uint64_t seed = 1; seed <= 6; ++seed) {
        CAPTURE(seed);
        check_isolation(ept_format{}, seed % 2 ? fake_memory::placement::scattered : fake_memory::placement::ascending,
                        seed);
    }
}

TEST_CASE("isolation: NPT built from the regions maps only the guest's own memory, all user") {
    for (std::uint64_t seed = 11; seed <= 16; ++seed) {
        CAPTURE(seed);
        check_isolation(npt_format(), seed % 2 ? fake_memory::placement::scattered : fake_memory::placement::ascending,
                        seed);
    }
    // Every entry on a nested walk carries U/S.
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_ram(0x7fff'f000, 2 * KiB4).ok());
    page_table<x86_64_format, fake_memory> npt(npt_format(), host);
    REQUIRE(npt.init().ok());
    {
        auto tx = npt.begin();
        REQUIRE(g.map_nested(tx).ok());
    }
    int entries = 0;
    const walk_end end = walk(npt.format(), host, npt.root(), 0x8000'0000, [&](unsigned, std::uint64_t, std::uint64_t e) {
        ++entries;
        CHECK((e & x86_pte::user) != 0);
        return true;
    });
    CHECK(end.stop == walk_stop::leaf);
    CHECK(entries == 4);
}

TEST_CASE("nested faults: map RAM/ROM on demand, MMIO to its device, ROM writes, holes") {
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_ram(0, 4 * MiB).ok());
    REQUIRE(g.add_rom(0xffff'0000, 16 * KiB4).ok());
    REQUIRE(g.add_mmio(0xfec0'0000, KiB4, 42).ok());

    nested_resolution r = g.resolve_nested_fault(0x12'3456, access_kind::write);
    CHECK(r.action == nested_action::map);
    CHECK(r.gpa == 0x12'3000);
    CHECK(r.hpa == *g.backing(0x12'3000));
    CHECK(r.size == KiB4);
    CHECK(r.attrs.write);
    r = g.resolve_nested_fault(0xffff'0010, access_kind::execute);
    CHECK(r.action == nested_action::map);
    CHECK_FALSE(r.attrs.write);
    CHECK(g.resolve_nested_fault(0xffff'0010, access_kind::write).action == nested_action::violation);
    r = g.resolve_nested_fault(0xfec0'0020, access_kind::read);
    CHECK(r.action == nested_action::mmio);
    CHECK(r.device == 42);
    CHECK(r.offset == 0x20);
    CHECK(g.resolve_nested_fault(0x4000'0000, access_kind::read).action == nested_action::unmapped);
    CHECK(g.resolve_nested_fault(std::uint64_t{1} << 50, access_kind::read).action == nested_action::unmapped);

    // Filling on demand in random order ends where the eager build does.
    page_table<ept_format, fake_memory> lazy(ept_format{}, host), eager(ept_format{}, host);
    REQUIRE(lazy.init().ok());
    REQUIRE(eager.init().ok());
    {
        auto tx = eager.begin();
        REQUIRE(g.map_nested(tx).ok());
    }
    std::vector<std::uint64_t> pages;
    for (const guest_region& reg : g.regions())
        for (std::uint64_t p = reg.base; p <= reg.last(); p += KiB4) pages.push_back(p);
    std::shuffle(pages.begin(), pages.end(), std::mt19937_64(5));
    for (std::uint64_t p : pages) {
        const nested_resolution res = g.resolve_nested_fault(p + 8, access_kind::read);
        if (res.action != nested_action::map) continue;
        auto tx = lazy.begin();
        REQUIRE(tx.map(res.gpa, res.hpa, res.size, res.attrs).ok());
        CHECK(tx.pending_flush().scope() == flush_scope::none);  // filling a hole needs no flush
    }
    std::size_t differences = 0;
    for (std::uint64_t p : pages) {
        const auto a = lazy.translate(p), b = eager.translate(p);
        if (a.has_value() != b.has_value() || (a && (a->pa != b->pa || a->attrs.write != b->attrs.write))) ++differences;
    }
    CHECK(differences == 0);
}

namespace {

// A guest with RAM at [0, 64 MiB), a ROM page, an MMIO page, and page tables of its own
// built by the one builder inside its RAM.
template <class F>
struct guest_with_tables {
    fake_memory host;
    guest_memory<fake_memory> g{host};
    guest_table_pool<fake_memory> pool{g, 32 * MiB, 8 * MiB};
    page_table<F, guest_table_pool<fake_memory>> pt;
    guest_paging regs;

    explicit guest_with_tables(const F& format, paging_mode mode) : pt{format, pool} {
        REQUIRE(g.init().ok());
        REQUIRE(g.add_ram(0, 64 * MiB).ok());
        REQUIRE(g.add_rom(0xf000'0000, KiB4).ok());
        REQUIRE(g.add_mmio(0xfe00'0000, KiB4, 1).ok());
        REQUIRE(pt.init().ok());
        regs = paging_regs(mode, pt.root());
        regs.cr4 |= cr4::pse;
        regs.cpl = 3;
    }
};

page_attrs user_rw() {
    page_attrs a;
    a.write = true;
    a.user = true;
    a.execute = true;
    return a;
}

template <class F>
void guest_builds_and_walks(const F& format, paging_mode mode, std::uint64_t va_base) {
    guest_with_tables<F> t(format, mode);
    {
        auto tx = t.pt.begin();
        REQUIRE(tx.map(va_base, 4 * MiB, 8 * MiB, user_rw()).ok());                 // large pages
        REQUIRE(tx.map(va_base + 16 * MiB, 20 * MiB + 5 * KiB4, 64 * KiB4, user_rw()).ok());  // 4 KiB
        page_attrs ro = user_rw();
        ro.write = false;
        REQUIRE(tx.protect(va_base + 16 * MiB + 3 * KiB4, KiB4, ro).ok());
    }
    std::mt19937_64 rng(3);
    std::size_t differences = 0, ok = 0;
    for (int i = 0; i < 5000; ++i) {
        const std::uint64_t va = va_base + rng() % (24 * MiB);
        const access_kind kind = static_cast<access_kind>(rng() % 3);
        const auto want = t.pt.translate(va);
        const gva_result got = translate_gva(t.g, t.regs, {}, va, {kind});
        const bool allowed = want && (kind != access_kind::write || want->attrs.write);
        if ((got.status == gva_status::ok) != allowed || (allowed && got.gpa != want->pa)) ++differences;
        if (!allowed && got.status == gva_status::page_fault &&
            (got.error_code & pf_error::present) != (want ? pf_error::present : 0u)) ++differences;
        ok += allowed;
    }
    CHECK(differences == 0);
    CHECK(ok > 1000);
}

} // namespace

TEST_CASE("guest tables built in guest RAM by the builder, walked by the guest walker (4-level)") {
    guest_builds_and_walks(x86_64_format{}, paging_mode::four_level, 0xffff'8000'0000'0000);
}

TEST_CASE("guest tables built in guest RAM by the builder, walked by the guest walker (PAE)") {
    guest_builds_and_walks(pae_format{}, paging_mode::pae, 0xbf00'0000);
}

TEST_CASE("guest tables built in guest RAM by the builder, walked by the guest walker (32-bit)") {
    guest_builds_and_walks(legacy32_format{}, paging_mode::legacy32, 0x7f00'0000);
}

TEST_CASE("guest-virtual copies cross pages, and fault before copying anything") {
    guest_with_tables<x86_64_format> t(x86_64_format{}, paging_mode::four_level);
    const std::uint64_t va = 0x7000'0000;
    {
        auto tx = t.pt.begin();
        REQUIRE(tx.map(va, 5 * KiB4, KiB4, user_rw()).ok());           // two virtual pages on
        REQUIRE(tx.map(va + KiB4, 9 * KiB4, KiB4, user_rw()).ok());    // distant guest pages
        REQUIRE(tx.map(va + 3 * KiB4, 0xfe00'0000, KiB4, user_rw()).ok());  // MMIO behind it
        REQUIRE(tx.map(va + 4 * KiB4, 0xf000'0000, KiB4, user_rw()).ok());  // ROM behind it
    }
    const paging_features cpu{};
    std::vector<std::uint8_t> out(300), in(300);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::uint8_t(i + 3);
    guest_fault f = copy_to_guest_virtual(t.g, t.regs, cpu, va + KiB4 - 100, out.data(), out.size());
    REQUIRE(f.ok());
    std::uint8_t first = 0, second = 0;
    REQUIRE(t.g.read(5 * KiB4 + KiB4 - 100, &first, 1).ok());
    REQUIRE(t.g.read(9 * KiB4 + 199, &second, 1).ok());
    CHECK(first == 3);
    CHECK(second == std::uint8_t(299 + 3));
    f = copy_from_guest_virtual(t.g, t.regs, cpu, in.data(), va + KiB4 - 100, in.size());
    REQUIRE(f.ok());
    CHECK(in == out);

    // Into the unmapped third page: #PF on its first byte, user write not present.
    const std::uint8_t marker = 0x5a;
    REQUIRE(t.g.write(9 * KiB4 + KiB4 - 10, &marker, 1).ok());
    std::vector<std::uint8_t> zeros(300);
    f = copy_to_guest_virtual(t.g, t.regs, cpu, va + 2 * KiB4 - 10, zeros.data(), zeros.size());
    CHECK(f.status == gva_status::page_fault);
    CHECK(f.gva == va + 2 * KiB4);
    CHECK(f.error_code == (pf_error::write | pf_error::user));
    REQUIRE(t.g.read(9 * KiB4 + KiB4 - 10, &second, 1).ok());
    CHECK(second == marker);  // the mapped part was not written either

    f = copy_from_guest_virtual(t.g, t.regs, cpu, in.data(), va + 3 * KiB4 + 8, 4);
    CHECK(f.status == gva_status::unbacked_gpa);
    CHECK(f.gpa == 0xfe00'0008);
    f = copy_from_guest_virtual(t.g, t.regs, cpu, in.data(), va + 4 * KiB4, 4);
    CHECK(f.ok());  // reading ROM is fine
    f = copy_to_guest_virtual(t.g, t.regs, cpu, va + 4 * KiB4, out.data(), 4);
    CHECK(f.status == gva_status::unbacked_gpa);  // writing it is not
    CHECK(f.gpa == 0xf000'0000);

    t.regs.efer &= ~efer::lma;  // 32-bit linear addresses wrap at 4 GiB (here: PAE, tables irrelevant)
    t.regs.cr0 &= ~cr0::pg;
    f = copy_to_guest_virtual(t.g, t.regs, cpu, 0xffff'fffe, out.data(), 4);
    CHECK(f.status == gva_status::unbacked_gpa);  // 0xfffffffe is a hole...
    f = copy_to_guest_virtual(t.g, t.regs, cpu, 0x1'0000'0010, out.data(), 4);
    CHECK(f.ok());  // ...and 0x1_0000_0010 is guest-physical 0x10
    REQUIRE(t.g.read(0x10, &first, 1).ok());
    CHECK(first == 3);
}

TEST_CASE("guest page tables in ROM: reads walk them, A/D updates cannot") {
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_ram(0, MiB).ok());
    REQUIRE(g.add_rom(0x10'0000, 4 * KiB4).ok());
    // 32-bit paging: PD at ROM 0x100000 -> PT at ROM 0x101000 -> page 0x5000.
    const std::uint32_t pde = 0x10'1000 | 0x7, pte = 0x5000 | 0x7, pte_accessed = pte | 0x20;
    REQUIRE(g.load(0x10'0000, &pde, 4).ok());
    REQUIRE(g.load(0x10'1000 + 2 * 4, &pte, 4).ok());
    REQUIRE(g.load(0x10'1000 + 3 * 4, &pte_accessed, 4).ok());
    guest_paging regs;
    regs.cr0 = 1 | cr0::pg;
    regs.cr3 = 0x10'0000;
    gva_result r = translate_gva(g, regs, {}, 0x2000, {access_kind::read, false, false});
    CHECK(r.status == gva_status::ok);
    CHECK(r.gpa == 0x5000);
    r = translate_gva(g, regs, {}, 0x2000, {access_kind::read});
    CHECK(r.status == gva_status::unbacked_gpa);  // the CPU would write A into ROM
    CHECK(r.gpa == 0x10'0000);
    std::uint32_t pde_now = 0;
    REQUIRE(g.read(0x10'0000, &pde_now, 4).ok());
    CHECK(pde_now == pde);
    // With A already set where the walk needs it (as firmware does for ROM tables), it works.
    const std::uint32_t pde_accessed = pde | 0x20;
    REQUIRE(g.load(0x10'0000, &pde_accessed, 4).ok());
    CHECK(translate_gva(g, regs, {}, 0x3000, {access_kind::read}).gpa == 0x5000);
    CHECK(translate_gva(g, regs, {}, 0x2000, {access_kind::read}).status == gva_status::unbacked_gpa);
    CHECK(translate_gva(g, regs, {}, 0x2000, {access_kind::read}).gpa == 0x10'1008);
}

TEST_CASE("host_pointer remembers unbacked pages only until backed memory is added there") {
    fake_memory host;
    guest_memory<fake_memory> g(host, std::uint64_t{1} << 40);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_mmio(0xfee0'0000, KiB4, 1).ok());
    CHECK(g.host_pointer(0xfee0'0080, false) == nullptr);  // MMIO, remembered
    CHECK(g.host_pointer(0x20'0010, false) == nullptr);    // a hole, remembered
    CHECK(g.host_pointer(0x20'0010, false) == nullptr);
    REQUIRE(g.add_ram(0x20'0000, 2 * KiB4).ok());
    void* p = g.host_pointer(0x20'0010, true);
    REQUIRE(p != nullptr);
    CHECK(p == host.host_pointer(*g.backing(0x20'0000) + 0x10, true));
    CHECK(g.host_pointer(0xfee0'0080, false) == nullptr);
    // First-touch RAM over a remembered hole: backed at the next touch.
    CHECK(g.host_pointer(0x40'0000, false) == nullptr);
    REQUIRE(g.add_ram(0x40'0000, KiB4, ram_backing::first_touch).ok());
    CHECK(g.host_pointer(0x40'0000, true) != nullptr);
    CHECK(g.backed_at_first_touch() == 1);
}

TEST_CASE("zero(): backed pages are zeroed, first-touch pages not backed yet stay unbacked, holes and ROM refused") {
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    REQUIRE(g.add_ram(0, 4 * MiB, ram_backing::first_touch).ok());
    REQUIRE(g.add_ram(8 * MiB, 2 * KiB4).ok());  // up front
    REQUIRE(g.add_rom(16 * MiB, KiB4).ok());
    const std::vector<std::uint8_t> junk(3 * KiB4, 0xa5);
    REQUIRE(g.write(0x1000, junk.data(), KiB4).ok());        // backs page 0x1000 only
    REQUIRE(g.write(8 * MiB, junk.data(), 2 * KiB4).ok());
    CHECK(g.backed_at_first_touch() == 1);
    // [0x800, 0x3800): page 0 and 2 untouched, page 1 backed with junk.
    REQUIRE(g.zero(0x800, 0x3000).ok());
    CHECK(g.backed_at_first_touch() == 1);  // (backing() would back them: it is the guest's view)
    std::vector<std::uint8_t> back(0x3000, 0xff);
    REQUIRE(g.read(0x800, back.data(), back.size()).ok());  // reading backs them, as zeros
    CHECK(std::all_of(back.begin(), back.end(), [](std::uint8_t b) { return b == 0; }));
    // Up-front RAM: zeroed in place, a byte before and after kept.
    REQUIRE(g.zero(8 * MiB + 1, 2 * KiB4 - 2).ok());
    std::vector<std::uint8_t> ram(2 * KiB4);
    REQUIRE(g.read(8 * MiB, ram.data(), ram.size()).ok());
    CHECK(ram.front() == 0xa5);
    CHECK(ram.back() == 0xa5);
    CHECK(std::count(ram.begin(), ram.end(), 0) == static_cast<long>(ram.size() - 2));
    // The whole range is checked before a byte is zeroed.
    REQUIRE(g.write(0x1000, junk.data(), 4).ok());
    CHECK(g.zero(0x1000, 4 * MiB).code() == hv::errc::fault);  // runs into the hole at 4 MiB
    std::uint8_t kept = 0;
    REQUIRE(g.read(0x1000, &kept, 1).ok());
    CHECK(kept == 0xa5);
    CHECK(g.zero(16 * MiB, 8).code() == hv::errc::permission);  // ROM
    CHECK(g.zero(0, 0).ok());
}

TEST_CASE("first-touch RAM: no pages up front; each page backed, zeroed, once, by whoever touches it first") {
    fake_memory host;
    guest_memory<fake_memory> g(host);
    REQUIRE(g.init().ok());
    const std::size_t tables = host.live_pages();
    REQUIRE(g.add_ram(0, 64 * MiB, ram_backing::first_touch).ok());
    REQUIRE(g.add_ram(GiB, 4 * MiB).ok());  // up front, beside it
    CHECK(host.live_pages() > tables);
    const std::size_t before = host.live_pages();
    CHECK(g.backed_at_first_touch() == 0);
    CHECK(g.regions().size() == 2);
    // Overlaps are refused as for any region.
    CHECK(g.add_ram(60 * MiB, 8 * MiB, ram_backing::first_touch).code() == hv::errc::exists);

    // The hypervisor reads a page nobody touched: zeros, and the page is now backed.
    auto* p = static_cast<const std::uint8_t*>(g.host_pointer(0x12'3456, false));
    REQUIRE(p != nullptr);
    CHECK(*p == 0);
    CHECK(g.backed_at_first_touch() == 1);
    const std::uint64_t hpa = *g.backing(0x12'3000);
    CHECK(g.host_pointer(0x12'3456, true) == p);  // the same page again, writable
    CHECK(g.backed_at_first_touch() == 1);

    // The loader's writes and reads go through the same pages.
    const char text[] = "first touch";
    REQUIRE(g.write(0x20'0ffa, text, sizeof text).ok());  // crosses into a second page
    char back[sizeof text] = {};
    REQUIRE(g.read(0x20'0ffa, back, sizeof back).ok());
    CHECK(std::string_view(back) == "first touch");
    CHECK(g.backed_at_first_touch() == 3);

    // A nested fault on an untouched page maps a fresh page; on a touched one, its page.
    nested_resolution r = g.resolve_nested_fault(0x12'3010, access_kind::read);
    CHECK(r.action == nested_action::map);
    CHECK(r.hpa == hpa);
    r = g.resolve_nested_fault(0x3ff'f000, access_kind::write);
    CHECK(r.action == nested_action::map);
    CHECK(r.attrs.write);
    CHECK(g.backed_at_first_touch() == 4);
    CHECK(host.live_pages() >= before + 4);
    // Outside any region nothing is backed.
    CHECK(g.host_pointer(64 * MiB, false) == nullptr);
    CHECK(g.resolve_nested_fault(64 * MiB, access_kind::read).action == nested_action::unmapped);

    // The eager nested build maps only the pages backed so far (the rest fault later).
    page_table<ept_format, fake_memory> ept(ept_format{}, host);
    REQUIRE(ept.init().ok());
    {
        auto tx = ept.begin();
        REQUIRE(g.map_nested(tx).ok());
    }
    CHECK(ept.translate(0x12'3000).has_value());
    CHECK_FALSE(ept.translate(0x50'0000).has_value());
    CHECK(ept.translate(GiB).has_value());
}

TEST_CASE("first-touch RAM: an allocator that runs dry leaves the page unbacked, and frees are exact") {
    fake_memory host;
    std::size_t start;
    {
        guest_memory<fake_memory> g(host);
        REQUIRE(g.init().ok());
        REQUIRE(g.add_ram(0, 16 * MiB, ram_backing::first_touch).ok());
        REQUIRE(g.host_pointer(0x1000, true) != nullptr);
        start = host.live_pages();
        host.fail_after(0);
        CHECK(g.host_pointer(0x5000, false) == nullptr);
        CHECK_FALSE(g.backing(0x5000).has_value());
        CHECK(g.resolve_nested_fault(0x5000, access_kind::read).action == nested_action::unbacked);
        char c = 1;
        CHECK(g.write(0x5000, &c, 1).code() == hv::errc::no_memory);
        host.fail_after(-1);
        CHECK(host.live_pages() == start);
        CHECK(g.host_pointer(0x5000, false) != nullptr);  // a later touch succeeds
        CHECK(g.backed_at_first_touch() == 2);
    }
    CHECK(host.live_pages() == 0);
    CHECK(host.bad_frees() == 0);
}
