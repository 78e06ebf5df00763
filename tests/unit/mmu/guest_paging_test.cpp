// Guest-virtual translation against plain reference walks (one function per paging
// mode, written from the SDM here) over random tables and random CPU state, the
// permission matrix, and accessed/dirty updates.
#include <doctest/doctest.h>
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>
#include "libhv/mmu/guest_paging.hpp"
#include "tests/unit/mmu/random_tables.hpp"

using namespace hv::mmu;
using hv::mmu::test::fake_memory;
using hv::mmu::test::random_tables;

namespace {

std::uint64_t mask(unsigned hi, unsigned lo) {
    std::uint64_t m = 0;
    for (unsigned b = lo; b <= hi; ++b) m |= std::uint64_t{1} << b;
    return m;
}

// Guest-physical memory that logs which entries the walker asked to write.
struct logging_memory {
    fake_memory* inner;
    std::vector<std::uint64_t> writes;
    void* host_pointer(std::uint64_t pa, bool for_write) {
        if (for_write) writes.push_back(pa);
        return inner->host_pointer(pa, for_write);
    }
};

struct ref_input {
    guest_paging regs;
    unsigned maxphyaddr;
    bool gbpages;
    guest_access access;
};

struct ref_result {
    gva_status status = gva_status::ok;
    std::uint64_t gpa = 0;
    std::uint64_t page_size = 0;
    std::uint32_t error_code = 0;
    std::map<std::uint64_t, std::uint64_t> set_bits;  // entry address -> A/D bits the CPU sets
};

bool user_mode_access(const ref_input& in) { return in.regs.cpl == 3 && !in.access.implicit_supervisor; }

// Error-code bits describing the access (SDM 4.7).
std::uint32_t ref_access_code(const ref_input& in, bool pae_paging_with_nxe) {
    std::uint32_t code = 0;
    if (in.access.kind == access_kind::write) code |= 2;
    if (user_mode_access(in)) code |= 4;
    const bool smep = in.regs.cr4 & (1u << 20);
    if (in.access.kind == access_kind::execute && (smep || pae_paging_with_nxe)) code |= 16;
    return code;
}

// SDM 4.6 as the list of reasons an access is refused.
bool ref_denied(const ref_input& in, bool user_page, bool writable, bool no_execute) {
    const bool user = user_mode_access(in);
    const bool fetch = in.access.kind == access_kind::execute;
    const bool write = in.access.kind == access_kind::write;
    const bool wp = in.regs.cr0 & (1u << 16);
    const bool smep = in.regs.cr4 & (1u << 20);
    const bool smap = in.regs.cr4 & (1u << 21);
    const bool ac = in.regs.rflags & (1u << 18);
    if (user && !user_page) return true;
    if (user && write && !writable) return true;
    if (fetch && no_execute) return true;
    if (!user && fetch && user_page && smep) return true;
    if (!user && !fetch && user_page && smap && (in.access.implicit_supervisor || !ac)) return true;
    if (!user && write && !writable && wp) return true;
    return false;
}

ref_result page_fault(std::uint32_t code) {
    ref_result r;
    r.status = gva_status::page_fault;
    r.error_code = code;
    return r;
}

ref_result unbacked(std::uint64_t pa) {
    ref_result r;
    r.status = gva_status::unbacked_gpa;
    r.gpa = pa;
    return r;
}

void finish(ref_result& out, const ref_input& in, const std::vector<std::uint64_t>& with_accessed,
            std::uint64_t leaf_pa) {
    if (!in.access.set_accessed_dirty) return;
    for (std::uint64_t pa : with_accessed) out.set_bits[pa] |= 0x20;
    if (in.access.kind == access_kind::write) out.set_bits[leaf_pa] |= 0x40;
}

ref_result ref_four_level(fake_memory& m, const ref_input& in, std::uint64_t va) {
    const std::uint64_t top = va >> 47;
    if (top != 0 && top != 0x1ffff) {
        ref_result r;
        r.status = gva_status::non_canonical;
        return r;
    }
    const unsigned M = in.maxphyaddr;
    const bool nxe = in.regs.efer & (1u << 11);
    const std::uint32_t code = ref_access_code(in, nxe);
    const std::uint64_t reserved_everywhere = mask(51, M) | (nxe ? 0 : mask(63, 63));
    std::uint64_t table = in.regs.cr3 & mask(M - 1, 12);
    bool user_page = true, writable = true, no_execute = false;
    std::vector<std::uint64_t> path;
    for (unsigned level = 4;; --level) {
        const unsigned shift = 12 + 9 * (level - 1);
        const std::uint64_t entry_pa = table + ((va >> shift) & 511) * 8;
        if (!m.contains(entry_pa)) return unbacked(entry_pa);
        const std::uint64_t e = m.read<std::uint64_t>(entry_pa);
        if (!(e & 1)) return page_fault(code);
        const bool ps = e & 0x80;
        std::uint64_t reserved = reserved_everywhere;
        if (level == 4) reserved |= 0x80;
        if (level == 3 && ps) reserved |= in.gbpages ? mask(29, 13) : 0x80;
        if (level == 2 && ps) reserved |= mask(20, 13);
        if (e & reserved) return page_fault(code | 1 | 8);
        user_page = user_page && (e & 4);
        writable = writable && (e & 2);
        no_execute = no_execute || (nxe && (e >> 63));
        path.push_back(entry_pa);
        if (level == 1 || ps) {
            if (ref_denied(in, user_page, writable, no_execute)) return page_fault(code | 1);
            ref_result r;
            r.page_size = std::uint64_t{1} << shift;
            r.gpa = (e & mask(51, shift)) | (va & (r.page_size - 1));
            finish(r, in, path, entry_pa);
            return r;
        }
        table = e & mask(51, 12);
    }
}

ref_result ref_pae(fake_memory& m, const ref_input& in, std::uint64_t va) {
    va &= 0xffff'ffff;
    const unsigned M = in.maxphyaddr;
    const bool nxe = in.regs.efer & (1u << 11);
    const std::uint32_t code = ref_access_code(in, nxe);
    // The PDPTE: P, PWT, PCD and the address; no rights, no accessed flag.
    const std::uint64_t pdpte_pa = (in.regs.cr3 & 0xffff'ffe0) + ((va >> 30) & 3) * 8;
    if (!m.contains(pdpte_pa)) return unbacked(pdpte_pa);
    const std::uint64_t pdpte = m.read<std::uint64_t>(pdpte_pa);
    if (!(pdpte & 1)) return page_fault(code);
    if (pdpte & (mask(63, M) | mask(2, 1) | mask(8, 5))) return page_fault(code | 1 | 8);
    const std::uint64_t reserved = mask(62, M) | (nxe ? 0 : mask(63, 63));

    const std::uint64_t pde_pa = (pdpte & mask(51, 12)) + ((va >> 21) & 511) * 8;
    if (!m.contains(pde_pa)) return unbacked(pde_pa);
    const std::uint64_t pde = m.read<std::uint64_t>(pde_pa);
    if (!(pde & 1)) return page_fault(code);
    const bool large = pde & 0x80;
    if (pde & (reserved | (large ? mask(20, 13) : 0))) return page_fault(code | 1 | 8);
    if (large) {
        if (ref_denied(in, pde & 4, pde & 2, nxe && (pde >> 63))) return page_fault(code | 1);
        ref_result r;
        r.page_size = 0x20'0000;
        r.gpa = (pde & mask(51, 21)) | (va & 0x1f'ffff);
        finish(r, in, {pde_pa}, pde_pa);
        return r;
    }
    const std::uint64_t pte_pa = (pde & mask(51, 12)) + ((va >> 12) & 511) * 8;
    if (!m.contains(pte_pa)) return unbacked(pte_pa);
    const std::uint64_t pte = m.read<std::uint64_t>(pte_pa);
    if (!(pte & 1)) return page_fault(code);
    if (pte & reserved) return page_fault(code | 1 | 8);
    const bool no_execute = nxe && ((pde >> 63) || (pte >> 63));
    if (ref_denied(in, (pde & 4) && (pte & 4), (pde & 2) && (pte & 2), no_execute)) return page_fault(code | 1);
    ref_result r;
    r.page_size = 0x1000;
    r.gpa = (pte & mask(51, 12)) | (va & 0xfff);
    finish(r, in, {pde_pa, pte_pa}, pte_pa);
    return r;
}

ref_result ref_legacy32(fake_memory& m, const ref_input& in, std::uint64_t va) {
    va &= 0xffff'ffff;
    const std::uint32_t code = ref_access_code(in, false);
    const bool pse = in.regs.cr4 & (1u << 4);
    const std::uint64_t pde_pa = (in.regs.cr3 & 0xffff'f000) + (va >> 22) * 4;
    if (!m.contains(pde_pa)) return unbacked(pde_pa);
    const std::uint32_t pde = m.read<std::uint32_t>(pde_pa);
    if (!(pde & 1)) return page_fault(code);
    if (pse && (pde & 0x80)) {
        const unsigned high_bits = std::min(in.maxphyaddr, 40u) - 32;  // PSE-36: PA bits 32.. in 13..
        if (pde & (mask(21, 21) | mask(20, 13 + high_bits))) return page_fault(code | 1 | 8);
        if (ref_denied(in, pde & 4, pde & 2, false)) return page_fault(code | 1);
        ref_result r;
        r.page_size = 0x40'0000;
        const std::uint64_t high = (pde >> 13) & mask(high_bits - 1, 0);
        r.gpa = (pde & 0xffc0'0000ull) | (high << 32) | (va & 0x3f'ffff);
        finish(r, in, {pde_pa}, pde_pa);
        return r;
    }
    const std::uint64_t pte_pa = (pde & 0xffff'f000) + ((va >> 12) & 1023) * 4;
    if (!m.contains(pte_pa)) return unbacked(pte_pa);
    const std::uint32_t pte = m.read<std::uint32_t>(pte_pa);
    if (!(pte & 1)) return page_fault(code);
    if (ref_denied(in, (pde & 4) && (pte & 4), (pde & 2) && (pte & 2), false)) return page_fault(code | 1);
    ref_result r;
    r.page_size = 0x1000;
    r.gpa = (pte & 0xffff'f000ull) | (va & 0xfff);
    finish(r, in, {pde_pa, pte_pa}, pte_pa);
    return r;
}

ref_input random_state(std::mt19937_64& rng, paging_mode mode) {
    auto coin = [&](unsigned percent) { return rng() % 100 < percent; };
    ref_input in{};
    in.regs.cr0 = 1 | cr0::pg | (coin(50) ? cr0::wp : 0);
    in.regs.cr4 = (coin(50) ? cr4::pse : 0) | (coin(40) ? cr4::smep : 0) | (coin(40) ? cr4::smap : 0);
    if (mode != paging_mode::legacy32) in.regs.cr4 |= cr4::pae;
    in.regs.efer = (coin(60) ? efer::nxe : 0);
    if (mode == paging_mode::four_level) in.regs.efer |= efer::lme | efer::lma;
    in.regs.rflags = 2 | (coin(50) ? rflags::ac : 0);
    static constexpr std::uint8_t cpls[] = {0, 0, 1, 2, 3, 3, 3};
    in.regs.cpl = cpls[rng() % 7];
    static constexpr unsigned widths[] = {36, 39, 40, 46, 52};
    in.maxphyaddr = widths[rng() % 5];
    in.gbpages = coin(70);
    in.access.kind = static_cast<access_kind>(rng() % 3);
    in.access.implicit_supervisor = coin(15);
    in.access.set_accessed_dirty = coin(60);
    return in;
}

template <class Entry, class Reference>
void compare_translations(paging_mode mode, Reference&& reference) {
    int outcomes[4] = {};
    int reserved_faults = 0, rights_faults = 0, large_leaves = 0, ad_updates = 0;
    for (std::uint64_t seed = 1; seed <= 24; ++seed) {
        random_tables t(seed * 7919, 16);
        t.fill<Entry>([&](std::uint64_t target) -> std::uint64_t {
            // Some entries carry only P and the cache bits (what a PAE PDPTE may hold),
            // others random flags; a quarter have PS, most of those without the
            // reserved low address bits a large page must keep clear.
            std::uint64_t e = target | (t.chance(85) ? 1 : 0) | (t.rng() & 0x18);
            if (t.chance(55)) e |= t.rng() & 0x166;
            if (t.chance(25)) {
                e |= 0x80;
                if (t.chance(60)) e &= ~mask(29, 13);
            }
            if (sizeof(Entry) == 8)
                e |= t.sometimes_bits(5, 51, 32) | t.sometimes_bits(8, 62, 52) | (t.chance(25) ? bit(63) : 0);
            return e;
        });
        std::mt19937_64 rng(seed);
        for (int i = 0; i < 1000; ++i) {
            ref_input in = random_state(rng, mode);
            const std::uint64_t root = t.pick_frame();
            in.regs.cr3 = root | (mode == paging_mode::pae ? (rng() % 128) * 32 : rng() & 0x18);
            std::uint64_t va = rng();
            if (mode == paging_mode::four_level && rng() % 10) va = (va & mask(47, 0)) | (va & bit(47) ? mask(63, 48) : 0);
            REQUIRE(in.regs.mode() == mode);
            CAPTURE(seed);
            CAPTURE(i);
            CAPTURE(va);

            const ref_result want = reference(t.memory, in, va);
            std::map<std::uint64_t, std::uint64_t> before;
            for (auto [pa, bits] : want.set_bits) before[pa] = t.memory.read<Entry>(pa);

            logging_memory mem{&t.memory, {}};
            const gva_result got = translate_gva(mem, in.regs, {in.maxphyaddr, in.gbpages}, va, in.access);
            REQUIRE(int(got.status) == int(want.status));
            ++outcomes[int(want.status)];
            if (want.status == gva_status::ok) {
                CHECK(got.gpa == want.gpa);
                CHECK(got.page_size == want.page_size);
                if (want.page_size > page_size) ++large_leaves;
            } else if (want.status == gva_status::page_fault) {
                CHECK(got.error_code == want.error_code);
                if (want.error_code & pf_error::reserved) ++reserved_faults;
                else if (want.error_code & pf_error::present) ++rights_faults;
            } else if (want.status == gva_status::unbacked_gpa) {
                CHECK(got.gpa == want.gpa);
            }
            // Exactly the entries the CPU would update, with exactly those bits.
            for (std::uint64_t pa : mem.writes) CHECK(want.set_bits.count(pa) == 1);
            for (auto [pa, bits] : want.set_bits) {
                CHECK(t.memory.read<Entry>(pa) == Entry(before[pa] | bits));
                if ((before[pa] | bits) != before[pa]) ++ad_updates;
            }
        }
    }
    // Every kind of outcome must occur often enough for the comparison to mean something.
    CHECK(outcomes[0] > 500);
    CHECK(reserved_faults > 300);
    CHECK(rights_faults > 300);
    CHECK(outcomes[1] - reserved_faults - rights_faults > 300);  // not present
    CHECK(outcomes[3] > 50);
    CHECK(large_leaves > 100);
    CHECK(ad_updates > 300);
    if (mode == paging_mode::four_level) CHECK(outcomes[2] > 300);
}

} // namespace

TEST_CASE("guest walk, 4-level paging, matches the reference on random tables and CPU state") {
    compare_translations<std::uint64_t>(paging_mode::four_level, ref_four_level);
}

TEST_CASE("guest walk, PAE paging, matches the reference on random tables and CPU state") {
    compare_translations<std::uint64_t>(paging_mode::pae, ref_pae);
}

TEST_CASE("guest walk, 32-bit paging, matches the reference on random tables and CPU state") {
    compare_translations<std::uint32_t>(paging_mode::legacy32, ref_legacy32);
}

TEST_CASE("guest walk with paging off: identity over 32 bits") {
    fake_memory m;
    guest_paging regs;
    regs.cr0 = 1;
    const gva_result r = translate_gva(m, regs, {}, 0x1'2345'6789, {access_kind::write});
    CHECK(r.status == gva_status::ok);
    CHECK(r.gpa == 0x2345'6789);
}

namespace {

// One page at 0x40'0000 mapped through a full walk; `upper` holds the rights of every
// non-leaf entry, `leaf` those of the leaf (both as x86 entry bits).
struct matrix_tables {
    fake_memory m;
    std::uint64_t cr3 = 0;
    std::uint64_t leaf_pa = 0;

    matrix_tables(paging_mode mode, std::uint64_t upper, std::uint64_t leaf) {
        const std::uint64_t va = 0x40'1000;
        if (mode == paging_mode::legacy32) {
            const std::uint64_t pd = *m.alloc_page(), pt = *m.alloc_page();
            m.write<std::uint32_t>(pd + (va >> 22) * 4, std::uint32_t(pt | 1 | upper));
            leaf_pa = pt + ((va >> 12) & 1023) * 4;
            m.write<std::uint32_t>(leaf_pa, std::uint32_t(0x7000 | 1 | leaf));
            cr3 = pd;
            return;
        }
        const unsigned levels = mode == paging_mode::pae ? 3 : 4;
        std::uint64_t table = *m.alloc_page();
        cr3 = table;
        for (unsigned level = levels; level > 1; --level) {
            const std::uint64_t next = *m.alloc_page();
            const unsigned shift = 12 + 9 * (level - 1);
            const std::uint64_t index = (va >> shift) & (level == 3 && levels == 3 ? 3 : 511);
            const std::uint64_t rights = level == 3 && levels == 3 ? 0 : upper;  // PAE PDPTEs have none
            m.write<std::uint64_t>(table + index * 8, next | 1 | rights);
            table = next;
        }
        leaf_pa = table + ((va >> 12) & 511) * 8;
        m.write<std::uint64_t>(leaf_pa, 0x7000 | 1 | leaf);
    }
};

} // namespace

TEST_CASE("permission matrix: U/S, R/W, NX at leaf or above x WP, SMEP, SMAP, AC, NXE, CPL, access") {
    const paging_mode modes[] = {paging_mode::legacy32, paging_mode::pae, paging_mode::four_level};
    int allowed = 0, denied = 0;
    for (paging_mode mode : modes)
        for (unsigned combo = 0; combo < (1u << 12); ++combo) {
            const bool us = combo & 1, rw = combo & 2, nx = combo & 4, at_leaf = combo & 8;
            const bool wp = combo & 16, smep = combo & 32, smap = combo & 64, ac = combo & 128;
            const bool nxe = combo & 256, cpl3 = combo & 512, implicit = combo & 1024, spare = combo & 2048;
            if (spare) continue;
            if (mode == paging_mode::legacy32 && (nx || nxe)) continue;  // no NX in 32-bit paging
            for (access_kind kind : {access_kind::read, access_kind::write, access_kind::execute}) {
                if (kind == access_kind::execute && implicit) continue;
                const std::uint64_t rights = (us ? 4 : 0) | (rw ? 2 : 0) | (nx ? bit(63) : 0);
                const std::uint64_t permissive = 6;
                matrix_tables t(mode, at_leaf ? permissive : rights, at_leaf ? rights : permissive);
                ref_input in{};
                in.regs.cr0 = 1 | cr0::pg | (wp ? cr0::wp : 0);
                in.regs.cr3 = t.cr3;
                in.regs.cr4 = (mode != paging_mode::legacy32 ? cr4::pae : 0) | (smep ? cr4::smep : 0) |
                              (smap ? cr4::smap : 0);
                in.regs.efer = (nxe ? efer::nxe : 0) |
                               (mode == paging_mode::four_level ? efer::lme | efer::lma : 0);
                in.regs.rflags = ac ? rflags::ac : 0;
                in.regs.cpl = cpl3 ? 3 : 0;
                in.maxphyaddr = 46;
                in.gbpages = true;
                in.access = {kind, implicit, true};
                CAPTURE(combo);
                CAPTURE(int(mode));
                CAPTURE(int(kind));
                const gva_result r = translate_gva(t.m, in.regs, {46, true}, 0x40'1123, in.access);
                // NX without NXE is a reserved bit, not a right.
                if (nx && !nxe) {
                    CHECK(r.status == gva_status::page_fault);
                    CHECK((r.error_code & (pf_error::reserved | pf_error::present)) == 0x9);
                    continue;
                }
                const bool nx_paging = mode != paging_mode::legacy32 && nxe;
                const std::uint32_t access_bits = ref_access_code(in, nx_paging);
                if (ref_denied(in, us, rw, nx)) {
                    ++denied;
                    CHECK(r.status == gva_status::page_fault);
                    CHECK(r.error_code == (access_bits | pf_error::present));
                } else {
                    ++allowed;
                    CHECK(r.status == gva_status::ok);
                    CHECK(r.gpa == 0x7123);
                }
            }
        }
    CHECK(allowed > 1000);
    CHECK(denied > 1000);
}

TEST_CASE("permission matrix spot checks, as the SDM states them") {
    struct row {
        bool us, rw, nx, wp, smep, smap, ac, cpl3, implicit;
        access_kind kind;
        bool ok;
        std::uint32_t error_code;
    };
    using enum access_kind;
    const row rows[] = {
        // us rw nx  wp smep smap ac cpl3 impl kind    ok    code
        {0, 1, 0, 0, 0, 0, 0, 1, 0, read, false, 0x05},     // user reads a supervisor page
        {1, 0, 0, 0, 0, 0, 0, 1, 0, write, false, 0x07},    // user writes a read-only page
        {1, 0, 0, 0, 0, 0, 0, 0, 0, write, true, 0},        // supervisor, WP=0: allowed
        {0, 0, 0, 1, 0, 0, 0, 0, 0, write, false, 0x03},    // supervisor, WP=1: refused
        {1, 1, 0, 0, 1, 0, 0, 0, 0, execute, false, 0x11},  // SMEP
        {1, 1, 0, 0, 1, 0, 0, 1, 0, execute, true, 0},      // SMEP does not stop CPL 3
        {1, 1, 0, 0, 0, 1, 0, 0, 0, read, false, 0x01},     // SMAP, AC=0
        {1, 1, 0, 0, 0, 1, 1, 0, 0, read, true, 0},         // SMAP, AC=1, explicit
        {1, 1, 0, 0, 0, 1, 1, 0, 1, read, false, 0x01},     // SMAP, AC=1, implicit
        {1, 1, 0, 0, 0, 1, 1, 1, 1, write, false, 0x03},    // implicit at CPL 3 is supervisor
        {1, 0, 0, 0, 0, 1, 1, 0, 0, write, true, 0},        // SMAP AC=1, WP=0: read-only ok
        {1, 0, 0, 1, 0, 1, 1, 0, 0, write, false, 0x03},    // ... but not with WP=1
        {1, 1, 1, 0, 0, 0, 0, 1, 0, execute, false, 0x15},  // NX, user fetch
        {0, 1, 1, 0, 0, 0, 0, 0, 0, read, true, 0},         // NX does not stop reads
    };
    for (const row& r : rows) {
        matrix_tables t(paging_mode::four_level, 6, (r.us ? 4 : 0) | (r.rw ? 2 : 0) | (r.nx ? bit(63) : 0));
        guest_paging regs;
        regs.cr0 = 1 | cr0::pg | (r.wp ? cr0::wp : 0);
        regs.cr3 = t.cr3;
        regs.cr4 = cr4::pae | (r.smep ? cr4::smep : 0) | (r.smap ? cr4::smap : 0);
        regs.efer = efer::lme | efer::lma | efer::nxe;
        regs.rflags = r.ac ? rflags::ac : 0;
        regs.cpl = r.cpl3 ? 3 : 0;
        const gva_result g = translate_gva(t.m, regs, {}, 0x40'1000, {r.kind, r.implicit, true});
        CAPTURE(&r - rows);
        CHECK((g.status == gva_status::ok) == r.ok);
        CHECK(g.error_code == r.error_code);
    }
}

TEST_CASE("I/D is reported only with SMEP or with PAE paging and NXE") {
    auto fetch_code = [](paging_mode mode, bool nxe, bool smep) {
        fake_memory m;
        const std::uint64_t root = *m.alloc_page();  // everything not present
        guest_paging regs;
        regs.cr0 = 1 | cr0::pg;
        regs.cr3 = root;
        regs.cr4 = (mode != paging_mode::legacy32 ? cr4::pae : 0) | (smep ? cr4::smep : 0);
        regs.efer = (nxe ? efer::nxe : 0) | (mode == paging_mode::four_level ? efer::lma | efer::lme : 0);
        regs.cpl = 3;
        return translate_gva(m, regs, {}, 0x1000, {access_kind::execute}).error_code;
    };
    CHECK(fetch_code(paging_mode::legacy32, false, false) == 0x04);
    CHECK(fetch_code(paging_mode::legacy32, true, false) == 0x04);  // NXE means nothing here
    CHECK(fetch_code(paging_mode::legacy32, false, true) == 0x14);
    CHECK(fetch_code(paging_mode::pae, false, false) == 0x04);
    CHECK(fetch_code(paging_mode::pae, true, false) == 0x14);
    CHECK(fetch_code(paging_mode::four_level, true, false) == 0x14);
    CHECK(fetch_code(paging_mode::four_level, false, true) == 0x14);
}

TEST_CASE("accessed on every level of a successful walk, dirty on the leaf of a write") {
    matrix_tables t(paging_mode::four_level, 6, 6);
    guest_paging regs;
    regs.cr0 = 1 | cr0::pg;
    regs.cr3 = t.cr3;
    regs.cr4 = cr4::pae;
    regs.efer = efer::lme | efer::lma;
    std::vector<std::uint64_t> path;  // entry addresses, root first
    std::uint64_t table = t.cr3;
    for (unsigned level = 4; level >= 1; --level) {
        const std::uint64_t pa = table + ((0x40'1000ull >> (12 + 9 * (level - 1))) & 511) * 8;
        path.push_back(pa);
        table = t.m.read<std::uint64_t>(pa) & mask(51, 12);
    }
    auto flags = [&](std::size_t i) { return t.m.read<std::uint64_t>(path[i]) & 0x60; };

    CHECK(translate_gva(t.m, regs, {}, 0x40'1000, {access_kind::read, false, false}).status == gva_status::ok);
    for (std::size_t i = 0; i < 4; ++i) CHECK(flags(i) == 0);  // not asked to
    CHECK(translate_gva(t.m, regs, {}, 0x40'1000, {access_kind::read}).status == gva_status::ok);
    for (std::size_t i = 0; i < 4; ++i) CHECK(flags(i) == 0x20);
    // The leaf becomes a supervisor page with A clear: a user write faults and sets nothing.
    t.m.write<std::uint64_t>(path[3], t.m.read<std::uint64_t>(path[3]) & ~std::uint64_t{0x24});
    regs.cpl = 3;
    CHECK(translate_gva(t.m, regs, {}, 0x40'1000, {access_kind::write}).status == gva_status::page_fault);
    CHECK(flags(3) == 0);
    regs.cpl = 0;
    CHECK(translate_gva(t.m, regs, {}, 0x40'1000, {access_kind::write}).status == gva_status::ok);
    CHECK(flags(3) == 0x60);
    CHECK(flags(0) == 0x20);  // D only on the leaf
}

namespace {

// gva_cache against the plain walk on two identical random table sets: the guest edits
// entries on the paths just walked (A, D, P, R/W, U/S, NX, address bits) between
// translations; results and every A/D write must be the same.
void compare_cached(paging_mode mode, std::uint64_t min_hits, std::uint64_t min_edits) {
    std::uint64_t hits = 0, checked = 0, edits = 0, ok_results = 0;
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
        random_tables plain(seed * 104729, 16), cached(seed * 104729, 16);
        auto entry = [](random_tables& t) {
            return [&t](std::uint64_t target) -> std::uint64_t {
                std::uint64_t e = target | (t.chance(92) ? 1 : 0) | (t.rng() & 0x18);
                if (t.chance(70)) e |= 0x6;  // R/W, U/S: more walks succeed
                if (t.chance(30)) e |= t.rng() & 0x160;
                if (t.chance(15)) {
                    e |= 0x80;
                    if (t.chance(60)) e &= ~mask(29, 13);
                }
                if (t.chance(10)) e |= bit(63);
                return e;
            };
        };
        plain.fill<std::uint64_t>(entry(plain));
        cached.fill<std::uint64_t>(entry(cached));
        REQUIRE(plain.frames == cached.frames);
        REQUIRE(plain.snapshot() == cached.snapshot());
        gva_cache cache;
        std::uint64_t generation = 0;
        std::mt19937_64 rng(seed);
        ref_input in{};
        std::uint64_t vas[6] = {};
        for (int i = 0; i < 3000; ++i) {
            if (i % 200 == 0) {  // a new CPU state and working set
                in = random_state(rng, mode);
                in.regs.cr3 = plain.pick_frame() | (mode == paging_mode::pae ? (rng() % 128) * 32 : 0);
                // Mostly addresses a read can translate (found without touching A/D).
                for (auto& va : vas) {
                    for (int tries = 0; tries < 64; ++tries) {
                        va = rng();
                        if (mode == paging_mode::four_level) va = (va & mask(47, 0)) | (va & bit(47) ? mask(63, 48) : 0);
                        if (translate_gva(plain.memory, in.regs, {in.maxphyaddr, in.gbpages}, va,
                                          {access_kind::read, false, false})
                                .status == gva_status::ok)
                            break;
                    }
                }
            }
            if (i % 500 == 250) ++generation;  // backing released: remembered pointers are void
            in.access.kind = static_cast<access_kind>(rng() % 3);
            in.access.set_accessed_dirty = rng() % 10 != 0;
            const std::uint64_t va = vas[rng() % 6] + (rng() & 0xfff);
            CAPTURE(seed);
            CAPTURE(i);
            guest_walk_path path;
            const gva_result want = translate_gva(plain.memory, in.regs, {in.maxphyaddr, in.gbpages}, va, in.access, &path);
            const std::uint64_t hits_before = cache.hits();
            const gva_result got = cache.translate(cached.memory, generation, in.regs, {in.maxphyaddr, in.gbpages}, va, in.access);
            hits += cache.hits() - hits_before;
            ++checked;
            CAPTURE(va);
            CAPTURE(int(in.access.kind));
            CAPTURE(in.access.set_accessed_dirty);
            CAPTURE(want.error_code);
            CAPTURE(path.depth());
            CAPTURE(cache.hits() - hits_before);
            REQUIRE(int(got.status) == int(want.status));
            CHECK(got.gpa == want.gpa);
            CHECK(got.error_code == want.error_code);
            if (want.status == gva_status::ok) {
                ++ok_results;
                CHECK(got.page_size == want.page_size);
                // The guest edits an entry on that path, in both copies.
                if (rng() % 4 == 0) {
                    const std::uint64_t pa = path.entry_pa[path.leaf_level + rng() % path.depth()];
                    static constexpr std::uint64_t flips[] = {1u << 5, 1u << 6, 1, 2, 4, bit(63), 0x1000, 0x20'0000};
                    const std::uint64_t flip = flips[rng() % 8];
                    plain.memory.write<std::uint64_t>(pa, plain.memory.read<std::uint64_t>(pa) ^ flip);
                    cached.memory.write<std::uint64_t>(pa, cached.memory.read<std::uint64_t>(pa) ^ flip);
                    ++edits;
                }
            }
            if (i % 100 == 99) REQUIRE(plain.snapshot() == cached.snapshot());
        }
        REQUIRE(plain.snapshot() == cached.snapshot());
    }
    MESSAGE("checked " << checked << ", ok " << ok_results << ", cache hits " << hits << ", edits " << edits);
    CHECK(hits > min_hits);
    CHECK(edits > min_edits);
}

} // namespace

TEST_CASE("gva_cache answers as the walk does while the guest edits its tables (4-level)") {
    compare_cached(paging_mode::four_level, 2000, 1000);
}

TEST_CASE("gva_cache answers as the walk does while the guest edits its tables (PAE)") {
    compare_cached(paging_mode::pae, 150, 100);  // random PDPTEs mostly have reserved bits
}

// copy_{from,to}_guest_virtual through a gva_cache against the uncached copies on two
// identical random table sets (whose frames are also the data: writes edit tables):
// the same fault descriptors, bytes read and memory left behind.
TEST_CASE("guest-virtual copies through a gva_cache match the uncached copies") {
    std::uint64_t hits = 0, copies = 0, faults = 0;
    for (std::uint64_t seed = 1; seed <= 6; ++seed) {
        random_tables plain(seed * 7919, 16), cached(seed * 7919, 16);
        auto entry = [](random_tables& t) {
            return [&t](std::uint64_t target) -> std::uint64_t {
                std::uint64_t e = target | (t.chance(95) ? 1 : 0) | (t.rng() & 0x18) | 0x6;
                if (t.chance(40)) e |= 0x60;  // A and D already set: walks the cache remembers
                if (t.chance(5)) e |= bit(63);
                return e;
            };
        };
        plain.fill<std::uint64_t>(entry(plain));
        cached.fill<std::uint64_t>(entry(cached));
        REQUIRE(plain.snapshot() == cached.snapshot());
        gva_cache cache;
        std::mt19937_64 rng(seed);
        ref_input in = random_state(rng, paging_mode::four_level);
        in.regs.cpl = 0;  // hypercalls come from the kernel (every entry here has U/S)
        if (seed % 3) in.regs.cr4 &= ~cr4::smap;
        in.regs.cr3 = plain.pick_frame();
        const paging_features cpu{in.maxphyaddr, in.gbpages};
        std::uint64_t vas[4] = {};
        for (auto& va : vas) {
            for (int tries = 0; tries < 64; ++tries) {
                va = rng() & mask(46, 0);
                if (translate_gva(plain.memory, in.regs, cpu, va, {access_kind::read, false, false}).status ==
                    gva_status::ok)
                    break;
            }
        }
        for (int i = 0; i < 1500; ++i) {
            const std::uint64_t gva = (vas[rng() % 4] & ~page_offset_mask) + rng() % 0x1000;
            const std::size_t n = 1 + rng() % (rng() % 8 == 0 ? 6000 : 64);
            std::vector<std::uint8_t> a(n), b(n);
            for (std::size_t k = 0; k < n; ++k) a[k] = b[k] = static_cast<std::uint8_t>(rng());
            const std::uint64_t hits_before = cache.hits();
            guest_fault want, got;
            if (rng() % 3 == 0) {
                want = copy_to_guest_virtual(plain.memory, in.regs, cpu, gva, a.data(), n);
                got = copy_to_guest_virtual(cached.memory, cache, 0, in.regs, cpu, gva, b.data(), n);
            } else {
                want = copy_from_guest_virtual(plain.memory, in.regs, cpu, a.data(), gva, n);
                got = copy_from_guest_virtual(cached.memory, cache, 0, in.regs, cpu, b.data(), gva, n);
            }
            CAPTURE(seed);
            CAPTURE(i);
            REQUIRE(int(got.status) == int(want.status));
            CHECK(got.gva == want.gva);
            CHECK(got.error_code == want.error_code);
            CHECK(got.gpa == want.gpa);
            CHECK(a == b);
            hits += cache.hits() - hits_before;
            ++copies;
            faults += !want.ok();
            if (i % 100 == 99) REQUIRE(plain.snapshot() == cached.snapshot());
        }
        REQUIRE(plain.snapshot() == cached.snapshot());
    }
    MESSAGE("copies " << copies << ", faults " << faults << ", cache hits " << hits);
    CHECK(hits > 1000);
    CHECK(faults > 10);
    CHECK(copies - faults > 1000);  // random bytes written into the tables fault many later walks
}
