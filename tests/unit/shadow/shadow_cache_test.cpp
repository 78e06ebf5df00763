// The shadow cache: switching among address spaces reuses their shadows (no new shadow
// pages, no faults once warm), the bound holds with eviction, and the special
// outcomes (tracked table writes, CR0.WP=0 writes, PCID refusal, split large pages).
#include <doctest/doctest.h>
#include <cstdint>
#include <random>
#include <vector>
#include "libhv/mmu/shadow.hpp"
#include "tests/unit/shadow/shadow_harness.hpp"

using namespace hv::mmu;
using namespace hv::mmu::test;

namespace {

constexpr std::uint64_t rw_user = x86_pte::present | x86_pte::writable | x86_pte::user;
constexpr std::uint64_t leaf_ad = rw_user | x86_pte::accessed | x86_pte::dirty;
constexpr std::uint64_t long_mode = efer::lme | efer::lma | efer::nxe;

// A 4-level address space in guest RAM mapping `pages` pages at `va` to [data, ...).
struct address_space {
    std::uint64_t cr3, va, data;
    unsigned pages;
    std::uint64_t pt() const { return cr3 + 0x3000; }  // build_space: PML4, PDPT, PD, PT in a row
};

address_space build_space(guest_setup& s, std::uint64_t tables_gpa, std::uint64_t va, std::uint64_t data,
                          unsigned pages) {
    const std::uint64_t pml4 = tables_gpa, pdpt = tables_gpa + 0x1000, pd = tables_gpa + 0x2000,
                        pt = tables_gpa + 0x3000;
    auto put = [&](std::uint64_t gpa, std::uint64_t v) { REQUIRE(s.guest.write(gpa, &v, 8).ok()); };
    put(pml4 + 8 * ((va >> 39) & 511), pdpt | rw_user);
    put(pdpt + 8 * ((va >> 30) & 511), pd | rw_user);
    put(pd + 8 * ((va >> 21) & 511), pt | rw_user);
    for (unsigned i = 0; i < pages; ++i) put(pt + 8 * (((va >> 12) + i) & 511), (data + i * 0x1000) | leaf_ad);
    return {pml4, va, data, pages};
}

// Maps `gpa` at `va` (within the 2 MiB that `space`'s PT maps), writable and dirty.
void map_leaf(guest_setup& s, const address_space& space, std::uint64_t va, std::uint64_t gpa) {
    const std::uint64_t e = gpa | leaf_ad;
    REQUIRE(s.guest.write(space.pt() + 8 * ((va >> 12) & 511), &e, 8).ok());
}

// The guest's registers for 4-level paging with CR0.WP at `cr3`, as the MMU is told them.
guest_paging long_mode_regs(std::uint64_t cr3) {
    guest_paging g;
    g.cr0 = cr0::pg | cr0::wp;
    g.cr3 = cr3;
    g.cr4 = cr4::pae;
    g.efer = long_mode;
    return g;
}

template <class Mmu>
int touch_all(Mmu& mmu, guest_setup& s, const address_space& as) {
    guest_paging g = long_mode_regs(as.cr3);
    g.cpl = 3;
    int faults = 0;
    for (unsigned i = 0; i < as.pages; ++i) {
        for (access_kind k : {access_kind::read, access_kind::write}) {
            guest_access acc;
            acc.kind = k;
            const access_outcome o = run_access(mmu, s.host, g, as.va + i * 0x1000 + 8, acc);
            REQUIRE(o.kind == access_outcome::hardware);
            CHECK(o.hw.hpa == *s.guest.backing(as.data + i * 0x1000) + 8);
            faults += o.faults;
        }
    }
    return faults;
}

} // namespace

TEST_CASE("shadow cache: switching among address spaces does not rebuild them") {
    guest_setup s;
    shadow_mmu<guest_memory<fake_memory>, fake_memory, 256> mmu(s.guest, s.host);
    std::vector<address_space> spaces;
    for (unsigned i = 0; i < 8; ++i)
        spaces.push_back(build_space(s, 0x20'0000 + i * 0x4000, 0x7f00'0000'0000 + i * 0x4000'0000,
                                     0x40'0000 + i * 0x2'0000, 16));
    std::vector<std::uint64_t> roots;
    for (const auto& as : spaces) {
        auto root = mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode);
        REQUIRE(root.ok());
        roots.push_back(*root);
        CHECK(touch_all(mmu, s, as) > 0);
    }
    const std::size_t built = mmu.stats().allocations;
    CHECK(built == spaces.size() * 4);  // PML4, PDPT, PD and PT each
    for (int round = 0; round < 5; ++round) {
        for (std::size_t i = 0; i < spaces.size(); ++i) {
            auto root = mmu.set_guest_paging(cr0::pg | cr0::wp, spaces[i].cr3, cr4::pae, long_mode);
            REQUIRE(root.ok());
            CHECK(*root == roots[i]);
            CHECK_FALSE(mmu.take_tlb_flush());
            CHECK(touch_all(mmu, s, spaces[i]) == 0);
        }
    }
    CHECK(mmu.stats().allocations == built);
    CHECK(mmu.stats().evictions == 0);
    // A mode change drops the cache; the next build allocates again.
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, spaces[0].cr3, cr4::pae, long_mode & ~efer::nxe).ok());
    CHECK(mmu.stats().live_pages == 1);
    CHECK(mmu.take_tlb_flush());  // freed tables may still be in paging-structure caches
    CHECK_FALSE(mmu.take_tlb_flush());
}

TEST_CASE("shadow cache: the page bound holds and results stay right under eviction") {
    guest_setup s;
    shadow_mmu<guest_memory<fake_memory>, fake_memory, 9> mmu(s.guest, s.host);
    std::vector<address_space> spaces;
    for (unsigned i = 0; i < 6; ++i)
        spaces.push_back(build_space(s, 0x20'0000 + i * 0x4000, 0x1000'0000 + i * 0x8000'0000ull,
                                     0x40'0000 + i * 0x2'0000, 8));
    std::mt19937_64 rng(5);
    const std::size_t live_before = s.host.live_pages();
    for (int step = 0; step < 300; ++step) {
        const auto& as = spaces[rng() % spaces.size()];
        REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
        (void)touch_all(mmu, s, as);
        CHECK(mmu.stats().live_pages <= 9);
    }
    CHECK(mmu.stats().evictions > 0);
    CHECK(s.host.live_pages() <= live_before + 9);
    CHECK(s.host.bad_frees() == 0);
}

TEST_CASE("shadow: guest table writes, CR0.WP=0 writes, PCID and split large pages") {
    guest_setup s;
    shadow_mmu<guest_memory<fake_memory>, fake_memory, 64> mmu(s.guest, s.host);
    const address_space as = build_space(s, 0x20'0000, 0x1000'0000, 0x40'0000, 4);
    // Map the PT itself at va + 4 pages, writable and dirty: writes to it must still trap.
    const std::uint64_t pt = 0x20'3000, pt_va = as.va + 4 * 0x1000;
    std::uint64_t e = pt | leaf_ad;
    REQUIRE(s.guest.write(pt + 8 * ((pt_va >> 12) & 511), &e, 8).ok());
    // And a read-only page (D set) for the WP test.
    const std::uint64_t ro_va = as.va + 5 * 0x1000;
    e = 0x50'0000 | x86_pte::present | x86_pte::user | x86_pte::accessed | x86_pte::dirty;
    REQUIRE(s.guest.write(pt + 8 * ((ro_va >> 12) & 511), &e, 8).ok());

    CHECK(mmu.set_guest_paging(cr0::pg, as.cr3, cr4::pae | bit(17), long_mode).code() == hv::errc::not_supported);
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
    guest_paging g = long_mode_regs(as.cr3);
    const guest_access write{access_kind::write};

    access_outcome o = run_access(mmu, s.host, g, pt_va + 16, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    CHECK(o.pf.outcome == pf_outcome::tracked_table_write);
    CHECK(o.pf.gpa == pt + 16);
    // The caller emulates: unmap page 2 of the space, then tells the MMU.
    (void)touch_all(mmu, s, as);
    CHECK(touch_all(mmu, s, as) == 0);
    std::uint64_t zero = 0;
    const std::uint64_t slot = pt + 8 * (((as.va >> 12) + 2) & 511);
    REQUIRE(s.guest.write(slot, &zero, 8).ok());
    CHECK(mmu.guest_table_written(slot, 8));  // a present shadow entry went away
    o = run_access(mmu, s.host, g, as.va + 2 * 0x1000, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    CHECK(o.pf.outcome == pf_outcome::inject);
    CHECK(o.pf.error_code == pf_error::write);

    // Supervisor write to a read-only page: #PF with WP=1, emulation with WP=0.
    o = run_access(mmu, s.host, g, ro_va, write);
    CHECK(o.pf.outcome == pf_outcome::inject);
    CHECK(o.pf.error_code == (pf_error::write | pf_error::present));
    g.cr0 &= ~cr0::wp;
    REQUIRE(mmu.set_guest_paging(g.cr0, g.cr3, g.cr4, g.efer).ok());
    o = run_access(mmu, s.host, g, ro_va, write);
    CHECK(o.pf.outcome == pf_outcome::emulate_write);
    CHECK(o.pf.gpa == 0x50'0000);
    g.cpl = 3;
    o = run_access(mmu, s.host, g, ro_va, write);
    CHECK(o.pf.outcome == pf_outcome::inject);
    CHECK(o.pf.error_code == (pf_error::write | pf_error::present | pf_error::user));

    // 32-bit guest with a 4 MiB page at 4 MiB: every 4 KiB piece lands on its own backing page.
    const std::uint32_t pd_gpa = 0x30'0000;
    const std::uint32_t pde = 0x40'0000 | x86_pte::present | x86_pte::writable | x86_pte::large |
                              x86_pte::accessed;
    REQUIRE(s.guest.write(pd_gpa + 4 * 0x300, &pde, 4).ok());  // va 0xc000'0000
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, pd_gpa, cr4::pse, 0).ok());
    CHECK(mmu.format() == shadow_format::pae);
    guest_paging g32;
    g32.cr0 = cr0::pg | cr0::wp;
    g32.cr3 = pd_gpa;
    g32.cr4 = cr4::pse;
    std::mt19937_64 rng(3);
    for (int i = 0; i < 64; ++i) {
        const std::uint64_t off = rng() % (4 * MiB);
        o = run_access(mmu, s.host, g32, 0xc000'0000 + off, {});
        REQUIRE(o.kind == access_outcome::hardware);
        CHECK(o.hw.hpa == *s.guest.backing((0x40'0000 + off) & ~0xfffull) + (off & 0xfff));
    }
    // The first write sets D in the guest PDE through the MMU.
    o = run_access(mmu, s.host, g32, 0xc000'1000, write);
    REQUIRE(o.kind == access_outcome::hardware);
    std::uint32_t now = 0;
    REQUIRE(s.guest.read(pd_gpa + 4 * 0x300, &now, 4).ok());
    CHECK((now & x86_pte::dirty) != 0);
}

TEST_CASE("shadow: unshadow a guest table the guest rewrites; shadowed again when walked") {
    guest_setup s;
    shadow_mmu<guest_memory<fake_memory>, fake_memory, 64> mmu(s.guest, s.host);
    const address_space as = build_space(s, 0x20'0000, 0x1000'0000, 0x40'0000, 4);
    // A second space (the "kernel") maps as's PT at kva, writable and dirty.
    const address_space kernel = build_space(s, 0x21'0000, 0x2000'0000, 0x48'0000, 4);
    const std::uint64_t pt = as.pt(), kpt = kernel.pt(), kva = kernel.va + 4 * 0x1000;
    map_leaf(s, kernel, kva, pt);
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
    (void)touch_all(mmu, s, as);
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, kernel.cr3, cr4::pae, long_mode).ok());
    guest_paging g = long_mode_regs(kernel.cr3);
    const guest_access write{access_kind::write};

    access_outcome o = run_access(mmu, s.host, g, kva + 16, guest_access{});  // a read: fine
    CHECK(o.kind == access_outcome::hardware);
    o = run_access(mmu, s.host, g, kva + 16, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    CHECK(o.pf.outcome == pf_outcome::tracked_table_write);
    CHECK_FALSE(mmu.used_since_switch(pt));  // as's PT: not walked since the switch to kernel
    CHECK(mmu.used_since_switch(kpt));
    CHECK_FALSE(mmu.unshadow(kernel.cr3).has_value());  // the root stays
    const auto flush = mmu.unshadow(pt);
    REQUIRE(flush.has_value());
    CHECK(*flush);  // the PD's shadow entry for the PT went away
    CHECK_FALSE(mmu.tracked(pt));
    // The retried write goes to the guest table directly, and so do the next ones.
    o = run_access(mmu, s.host, g, kva + 16, write);
    REQUIRE(o.kind == access_outcome::hardware);
    CHECK(o.hw.hpa == *s.guest.backing(pt) + 16);
    CHECK(mmu.mapped(kva + 16) == o.hw.hpa);
    CHECK_FALSE(mmu.mapped(kernel.va + 3 * 0x1000).has_value());  // never touched
    // The guest unmaps page 2 of as with a plain store; as's next walk re-reads the table.
    std::uint64_t zero = 0;
    REQUIRE(s.guest.write(pt + 8 * (((as.va >> 12) + 2) & 511), &zero, 8).ok());
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
    g.cr3 = as.cr3;
    o = run_access(mmu, s.host, g, as.va + 2 * 0x1000, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    CHECK(o.pf.outcome == pf_outcome::inject);
    CHECK(o.pf.error_code == pf_error::write);
    o = run_access(mmu, s.host, g, as.va + 8, write);
    CHECK(o.kind == access_outcome::hardware);
    CHECK(mmu.tracked(pt));
    // Shadowed again: the kernel's writes to it trap once more.
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, kernel.cr3, cr4::pae, long_mode).ok());
    g.cr3 = kernel.cr3;
    o = run_access(mmu, s.host, g, kva + 24, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    CHECK(o.pf.outcome == pf_outcome::tracked_table_write);
    CHECK(s.host.bad_frees() == 0);
}

TEST_CASE("shadow: tearing down an idle address space drops its whole shadow chain at the first write") {
    guest_setup s;
    shadow_mmu<guest_memory<fake_memory>, fake_memory, 64> mmu(s.guest, s.host);
    const address_space as = build_space(s, 0x20'0000, 0x1000'0000, 0x40'0000, 4);
    const address_space kernel = build_space(s, 0x21'0000, 0x2000'0000, 0x48'0000, 4);
    // The kernel maps as's four tables at kernel.va + 4..7 pages, writable and dirty.
    const std::uint64_t kva = kernel.va + 4 * 0x1000;
    for (unsigned i = 0; i < 4; ++i) map_leaf(s, kernel, kva + i * 0x1000, as.cr3 + i * 0x1000);
    guest_paging g = long_mode_regs(kernel.cr3);
    const guest_access write{access_kind::write};
    // The kernel writes as's tables while they are plain data (no shadow of as yet).
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, kernel.cr3, cr4::pae, long_mode).ok());
    for (unsigned i = 0; i < 4; ++i) {
        const access_outcome w = run_access(mmu, s.host, g, kva + i * 0x1000 + 0x800, write);
        CHECK(w.kind == access_outcome::hardware);
    }
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
    (void)touch_all(mmu, s, as);  // as's tables become tracked: the kernel's mappings lose W
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, kernel.cr3, cr4::pae, long_mode).ok());
    for (unsigned i = 0; i < 4; ++i) CHECK(mmu.tracked(as.cr3 + i * 0x1000));
    // First teardown write: as's PT (kernel page 7).
    const std::uint64_t pt_va = kva + 3 * 0x1000;
    access_outcome o = run_access(mmu, s.host, g, pt_va + 16, write);
    REQUIRE(o.kind == access_outcome::mmu_report);
    REQUIRE(o.pf.outcome == pf_outcome::tracked_table_write);
    const auto flush = mmu.unshadow(o.pf.gpa, true);
    REQUIRE(flush.has_value());
    for (unsigned i = 0; i < 4; ++i) CHECK_FALSE(mmu.tracked(as.cr3 + i * 0x1000));
    CHECK(mmu.tracked(kernel.cr3));  // the current space keeps its shadows
    const pf_result mapped = mmu.map_unshadowed_write();
    CHECK(mapped.outcome == pf_outcome::fixed);
    CHECK(mmu.mapped(pt_va + 16) == *s.guest.backing(as.pt()) + 16);
    // A second map_unshadowed_write has no fault behind it.
    CHECK(mmu.map_unshadowed_write().outcome == pf_outcome::tracked_table_write);
    // The other tables' teardown writes go straight to them: their mappings got W back.
    for (unsigned i = 0; i < 3; ++i) {
        o = run_access(mmu, s.host, g, kva + i * 0x1000 + 8, write);
        CHECK(o.kind == access_outcome::hardware);
        CHECK(o.faults == 0);
    }
    // The kernel's own translations are intact, and as comes back correct when reloaded.
    (void)touch_all(mmu, s, kernel);
    REQUIRE(mmu.set_guest_paging(cr0::pg | cr0::wp, as.cr3, cr4::pae, long_mode).ok());
    CHECK(touch_all(mmu, s, as) > 0);  // rebuilt
    CHECK(s.host.bad_frees() == 0);
}
