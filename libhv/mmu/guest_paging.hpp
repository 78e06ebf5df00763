// Guest-virtual translation as the CPU performs it, for instruction emulation,
// hypercall argument copying and shadow paging.
//
// One walk (walk.hpp) over the guest's own tables in guest-physical memory, in the
// paging mode the guest's CR0/CR4/EFER select; the x86 formats supply reserved bits
// and per-entry rights, and this file applies the SDM's access-rights rules (U/S, R/W
// with CR0.WP, NX, SMEP, SMAP with EFLAGS.AC and implicit supervisor accesses) and
// builds the #PF error code the CPU would push. Order of checks, as on the CPU:
// a not-present entry ends the walk (P=0); a present entry with a reserved bit set
// ends it (P=1, RSVD=1); a complete walk is then checked for rights (P=1).
// Not modelled: 5-level paging, protection keys, CET shadow stacks, HLAT.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/memory.hpp"
#include "libhv/mmu/walk.hpp"

namespace hv::mmu {

// The control-register, EFER and RFLAGS bits the walk reads (owned by libhv/arch/x86).
namespace cr0 = hv::x86::cr0;
namespace cr4 = hv::x86::cr4;
namespace efer = hv::x86::efer;
namespace rflags = hv::x86::rflags;

namespace pf_error {
inline constexpr std::uint32_t present = 1u << 0;   // 1: rights or reserved bit, 0: not present
inline constexpr std::uint32_t write = 1u << 1;
inline constexpr std::uint32_t user = 1u << 2;
inline constexpr std::uint32_t reserved = 1u << 3;
inline constexpr std::uint32_t fetch = 1u << 4;     // only with SMEP or PAE paging with NXE
} // namespace pf_error

enum class paging_mode : std::uint8_t { off, legacy32, pae, four_level };

// The guest's paging state as the CPU sees it.
struct guest_paging {
    std::uint64_t cr0 = 0;
    std::uint64_t cr3 = 0;
    std::uint64_t cr4 = 0;
    std::uint64_t efer = 0;
    std::uint64_t rflags = 0;
    std::uint8_t cpl = 0;

    [[nodiscard]] paging_mode mode() const {
        if (!(cr0 & cr0::pg)) return paging_mode::off;
        if (!(cr4 & cr4::pae)) return paging_mode::legacy32;
        return efer & efer::lma ? paging_mode::four_level : paging_mode::pae;
    }
};

// CPUID facts of the guest's virtual CPU.
struct paging_features {
    unsigned maxphyaddr = 52;
    bool gbpages = true;
};

struct guest_access {
    access_kind kind = access_kind::read;
    // The CPU's own supervisor-mode accesses at any CPL (descriptor tables, TSS...).
    bool implicit_supervisor = false;
    // A on every entry of a successful walk, D on the leaf of a write, as the CPU does.
    bool set_accessed_dirty = true;
};

enum class gva_status : std::uint8_t {
    ok,
    page_fault,     // inject #PF(error_code), CR2 = the address
    non_canonical,  // 64-bit mode: #GP/#SS, the address never reaches paging
    unbacked_gpa,   // a table entry (or copied data) lies at `gpa` where the guest has
                    // no memory this access may use: a hole, MMIO, ROM for writes
};

struct gva_result {
    gva_status status = gva_status::ok;
    std::uint64_t gpa = 0;         // ok: the translation; unbacked_gpa: what failed
    std::uint64_t page_size = 0;   // ok
    std::uint32_t error_code = 0;  // page_fault
    x86_rights rights{};           // ok: rights over the whole walk
};

// The entries a successful walk used, by level (1 = PTE .. top_level; index 0 unused):
// where each lies, what the walk read, and what it left there after its A/D updates.
// Shadow paging fills from `entry`; gva_cache compares `read` with `entry` to tell
// whether the walk changed anything.
struct guest_walk_path {
    std::array<std::uint64_t, 5> entry{};
    std::array<std::uint64_t, 5> read{};
    std::array<std::uint64_t, 5> entry_pa{};
    unsigned top_level = 0;
    unsigned leaf_level = 0;  // 0: no paging
    [[nodiscard]] std::uint64_t table(unsigned level) const { return entry_pa[level] & ~page_offset_mask; }
    [[nodiscard]] unsigned depth() const { return leaf_level == 0 ? 0 : top_level - leaf_level + 1; }
};

// A guest-virtual copy's fault descriptor.
struct guest_fault {
    gva_status status = gva_status::ok;
    std::uint64_t gva = 0;  // the first address of the access in the page that failed
    std::uint32_t error_code = 0;
    std::uint64_t gpa = 0;  // unbacked_gpa
    [[nodiscard]] bool ok() const { return status == gva_status::ok; }
};

namespace detail {
inline bool user_mode(const guest_paging& regs, guest_access access) {
    return regs.cpl == 3 && !access.implicit_supervisor;
}

// SMAP: supervisor data accesses to user pages need an explicit access with EFLAGS.AC.
inline bool smap_forbids(const guest_paging& regs, guest_access access) {
    return (regs.cr4 & cr4::smap) && (access.implicit_supervisor || !(regs.rflags & rflags::ac));
}
} // namespace detail

[[nodiscard]] inline bool access_allowed(const guest_paging& regs, guest_access access, const x86_rights& rights) {
    const bool user_page = rights.user;
    if (detail::user_mode(regs, access)) {
        if (!user_page) return false;
        if (access.kind == access_kind::write) return rights.write;
        if (access.kind == access_kind::execute) return !rights.no_execute;
        return true;
    }
    switch (access.kind) {
    case access_kind::execute: return !rights.no_execute && !(user_page && (regs.cr4 & cr4::smep));
    case access_kind::read: return !(user_page && detail::smap_forbids(regs, access));
    case access_kind::write:
        if (user_page && detail::smap_forbids(regs, access)) return false;
        return rights.write || !(regs.cr0 & cr0::wp);
    }
    return false;
}

// The W/R, U/S and I/D bits of the error code: what the access was.
[[nodiscard]] std::uint32_t access_error_code(const guest_paging& regs, guest_access access);

namespace detail {

template <class F, physical_memory M>
gva_result walk_guest(const F& f, M& mem, std::uint64_t root, std::uint64_t va, const guest_paging& regs,
                      guest_access access, guest_walk_path* used = nullptr) {
    using entry_type = typename F::entry_type;
    struct visited {
        std::uint64_t pa;
        unsigned level;
        entry_type value;
    };
    std::array<visited, F::levels> path;  // [0, depth) written before read: no zeroing per walk
    unsigned depth = 0;
    x86_rights rights;
    const walk_end end = walk(f, mem, root, va, [&](unsigned level, std::uint64_t entry_pa, entry_type e) {
        if (f.reserved_bits(e, level)) return false;
        const x86_rights r = f.rights(e, level);
        rights.write = rights.write && r.write;
        rights.user = rights.user && r.user;
        rights.no_execute = rights.no_execute || r.no_execute;
        path[depth++] = {entry_pa, level, e};
        return true;
    });
    switch (end.stop) {  // the error code is worked out only for a fault
    case walk_stop::unreachable: return {gva_status::unbacked_gpa, end.entry_pa};
    case walk_stop::not_present: return {gva_status::page_fault, 0, 0, access_error_code(regs, access)};
    case walk_stop::rejected:
        return {gva_status::page_fault, 0, 0, access_error_code(regs, access) | pf_error::present | pf_error::reserved};
    case walk_stop::leaf: break;
    }
    if (!access_allowed(regs, access, rights))
        return {gva_status::page_fault, 0, 0, access_error_code(regs, access) | pf_error::present};

    if (used) {
        used->top_level = path[0].level;
        used->leaf_level = end.level;
        for (unsigned i = 0; i < depth; ++i) {
            used->read[path[i].level] = path[i].value;
            used->entry_pa[path[i].level] = path[i].pa;
        }
    }
    if (access.set_accessed_dirty) {
        for (unsigned i = 0; i < depth; ++i) {
            entry_type want = f.accessed_bit(path[i].level);
            if (i + 1 == depth && access.kind == access_kind::write) want |= entry_type(x86_pte::dirty);
            if ((path[i].value & want) == want) continue;
            void* p = mem.host_pointer(path[i].pa, true);
            if (!p) return {gva_status::unbacked_gpa, path[i].pa};
            set_entry_bits(p, want);
            path[i].value |= want;
        }
    }
    if (used)
        for (unsigned i = 0; i < depth; ++i) used->entry[path[i].level] = path[i].value;
    const auto leaf = static_cast<entry_type>(end.entry);
    const std::uint64_t size = level_size<F>(end.level);
    return {gva_status::ok, f.leaf_address(leaf, end.level) | (va & (size - 1)), size, 0, rights};
}

} // namespace detail

// `used`, when given, receives the entries of a successful walk.
template <physical_memory M>
gva_result translate_gva(M& guest_physical, const guest_paging& regs, const paging_features& cpu,
                         std::uint64_t gva, guest_access access, guest_walk_path* used = nullptr) {
    constexpr std::uint64_t low32 = 0xffff'ffff;
    switch (regs.mode()) {
    case paging_mode::off: return {gva_status::ok, gva & low32, page_size, 0, {}};
    case paging_mode::legacy32: {
        legacy32_format f;
        f.maxphyaddr = cpu.maxphyaddr;
        f.pse = regs.cr4 & cr4::pse;
        return detail::walk_guest(f, guest_physical, regs.cr3 & bits(31, 12), gva & low32, regs, access, used);
    }
    case paging_mode::pae: {
        pae_format f;
        f.maxphyaddr = cpu.maxphyaddr;
        f.nx = regs.efer & efer::nxe;
        return detail::walk_guest(f, guest_physical, regs.cr3 & bits(31, 5), gva & low32, regs, access, used);
    }
    case paging_mode::four_level: {
        if (!canonical48(gva)) return {gva_status::non_canonical};
        x86_64_format f;
        f.maxphyaddr = cpu.maxphyaddr;
        f.nx = regs.efer & efer::nxe;
        f.gbpages = cpu.gbpages;
        return detail::walk_guest(f, guest_physical, regs.cr3 & bits(cpu.maxphyaddr - 1, 12), gva, regs, access,
                                  used);
    }
    }
    return {gva_status::non_canonical};
}

// Translations remembered with the guest table entries they came from (PAE and 4-level
// paging, whose entries are 64-bit). A hit reads those entries again and compares them
// with what the walk left there: a guest that edits its tables (no exit, INVLPG or not)
// misses, so a hit answers exactly what a walk would, A/D included (a write whose leaf
// lacks D, or a rights failure, walks again). Only walks that set A/D and found them
// already set are remembered: the entries then hold what the walk judged (an entry the
// walk updated may mean something else at another level of a shared table).
// `generation` (guest_memory::generation) guards the entries' host pointers.
class gva_cache {
public:
    static constexpr unsigned ways = 4;

    template <physical_memory M>
    gva_result translate(M& mem, std::uint64_t generation, const guest_paging& regs, const paging_features& cpu,
                         std::uint64_t gva, guest_access access) {
        const paging_mode mode = regs.mode();
        if (mode != paging_mode::four_level && mode != paging_mode::pae) return translate_gva(mem, regs, cpu, gva, access);
        if (mode == paging_mode::pae) gva &= 0xffff'ffff;
        const std::uint64_t page = gva & ~page_offset_mask;
        if (const slot* s = hit(generation, regs, cpu, page, access))
            return {gva_status::ok, s->gpa_page | (gva & page_offset_mask), s->page_size, 0, s->rights};
        guest_walk_path path;
        const gva_result r = translate_gva(mem, regs, cpu, gva, access, &path);
        if (r.status == gva_status::ok && access.set_accessed_dirty && path.depth() >= 1 && path.depth() <= 4)
            remember(mem, generation, regs, cpu, page, r, path);
        return r;
    }
    // For a read or fetch (not a write) that translate() would answer from a remembered
    // translation: the host address of `gva` (the page's guest_memory::host_pointer, kept
    // with the translation and good for the same generation). nullptr: not remembered, or
    // not RAM/ROM; translate() then gives the answer.
    template <physical_memory M>
    const void* host_address(M& mem, std::uint64_t generation, const guest_paging& regs, const paging_features& cpu,
                             std::uint64_t gva, guest_access access) {
        const paging_mode mode = regs.mode();
        if ((mode != paging_mode::four_level && mode != paging_mode::pae) || access.kind == access_kind::write)
            return nullptr;
        if (mode == paging_mode::pae) gva &= 0xffff'ffff;
        slot* s = hit(generation, regs, cpu, gva & ~page_offset_mask, access);
        if (!s) return nullptr;
        if (!s->host_page) s->host_page = mem.host_pointer(s->gpa_page, false);
        return s->host_page ? static_cast<const char*>(s->host_page) + (gva & page_offset_mask) : nullptr;
    }
    void clear() { *this = gva_cache{}; }
    [[nodiscard]] std::uint64_t hits() const { return hits_; }

private:
    struct slot {
        std::uint64_t linear_page = 1;  // never a page address: empty
        std::uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0, generation = 0;
        unsigned maxphyaddr = 0;
        bool gbpages = false;
        std::uint64_t gpa_page = 0, page_size = 0;
        const void* host_page = nullptr;  // host_address(): gpa_page's host page once asked for
        x86_rights rights{};
        unsigned depth = 0;
        const void* at[4] = {&no_entry, &no_entry, &no_entry, &no_entry};  // levels past `depth`: no_entry
        std::uint64_t value[4] = {};
    };

    // The remembered translation of `page` for `access`, when its table entries still hold
    // what the walk left there. The slot of the last hit first: an MMIO loop translates
    // one code page again and again.
    slot* hit(std::uint64_t generation, const guest_paging& regs, const paging_features& cpu, std::uint64_t page,
              guest_access access) {
        for (unsigned n = 0, i = last_; n < ways; ++n, i = (i + 1) % ways) {
            slot& s = slots_[i];
            if (s.linear_page != page || s.cr3 != regs.cr3 || s.cr0 != regs.cr0 || s.cr4 != regs.cr4 ||
                s.efer != regs.efer || s.generation != generation || s.maxphyaddr != cpu.maxphyaddr ||
                s.gbpages != cpu.gbpages)
                continue;
            std::uint64_t changed = 0;  // unused levels compare a zero entry with 0
            for (unsigned l = 0; l < 4; ++l) changed |= load_entry<std::uint64_t>(s.at[l]) ^ s.value[l];
            if (changed || !access_allowed(regs, access, s.rights)) return nullptr;
            if (access.kind == access_kind::write && access.set_accessed_dirty &&
                !(s.value[s.depth - 1] & std::uint64_t(x86_pte::dirty)))
                return nullptr;
            ++hits_;
            last_ = i;
            return &s;
        }
        return nullptr;
    }

    template <physical_memory M>
    void remember(M& mem, std::uint64_t generation, const guest_paging& regs, const paging_features& cpu,
                  std::uint64_t page, const gva_result& r, const guest_walk_path& path) {
        slot s;
        s.depth = path.depth();
        for (unsigned i = 0; i < s.depth; ++i) {  // root first
            const unsigned level = path.top_level - i;
            if (path.entry[level] != path.read[level]) return;  // the walk set A/D: remember the next one
            s.at[i] = mem.host_pointer(path.entry_pa[level], false);
            if (!s.at[i]) return;
            s.value[i] = load_entry<std::uint64_t>(s.at[i]);
            if (s.value[i] != path.read[level]) return;
        }
        s.linear_page = page;
        s.cr0 = regs.cr0;
        s.cr3 = regs.cr3;
        s.cr4 = regs.cr4;
        s.efer = regs.efer;
        s.generation = generation;
        s.maxphyaddr = cpu.maxphyaddr;
        s.gbpages = cpu.gbpages;
        s.gpa_page = r.gpa & ~page_offset_mask;
        s.page_size = r.page_size;
        s.rights = r.rights;
        // Replace the stale slot for this page if there is one, else round robin.
        unsigned at = next_;
        for (unsigned i = 0; i < ways; ++i)
            if (slots_[i].linear_page == page) at = i;
        if (at == next_) next_ = (next_ + 1) % ways;
        slots_[at] = s;
        last_ = at;
    }

    static constexpr std::uint64_t no_entry = 0;
    slot slots_[ways];
    unsigned next_ = 0;
    unsigned last_ = 0;  // the slot of the last hit or fill
    std::uint64_t hits_ = 0;
};

namespace detail {

// Translates every page of [gva, gva+size) first (so a fault leaves no partial copy),
// then copies, translating again without touching A/D. A range within one page is
// translated once and copied at once (nothing partial can be left). `translate(la,
// access)` is translate_gva over the same memory and registers (or a gva_cache's).
template <physical_memory M, class Translate, class Copy>
guest_fault guest_virtual_copy(M& guest_physical, const guest_paging& regs, std::uint64_t gva, std::size_t size,
                               guest_access access, Translate&& translate, Copy&& copy) {
    const bool wraps_at_4g = regs.mode() != paging_mode::four_level;
    const bool write = access.kind == access_kind::write;
    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t done = 0; done < size;) {
            std::uint64_t la = gva + done;
            if (wraps_at_4g) la &= 0xffff'ffff;
            const std::size_t in_page = page_size - (la & page_offset_mask);
            const std::size_t chunk = size - done < in_page ? size - done : in_page;
            const gva_result r = translate(la, access);
            if (r.status != gva_status::ok) return {r.status, la, r.error_code, r.gpa};
            void* p = guest_physical.host_pointer(r.gpa, write);
            if (!p) return {gva_status::unbacked_gpa, la, 0, r.gpa};
            if (pass == 1 || chunk == size) copy(p, done, chunk);
            if (chunk == size) return {};
            done += chunk;
        }
        access.set_accessed_dirty = false;
    }
    return {};
}

template <physical_memory M, class Copy>
guest_fault guest_virtual_copy(M& guest_physical, const guest_paging& regs, const paging_features& cpu,
                               std::uint64_t gva, std::size_t size, guest_access access, Copy&& copy) {
    return guest_virtual_copy(
        guest_physical, regs, gva, size, access,
        [&](std::uint64_t la, guest_access a) { return translate_gva(guest_physical, regs, cpu, la, a); }, copy);
}

template <physical_memory M, class Copy>
guest_fault guest_virtual_copy(M& guest_physical, gva_cache& cache, std::uint64_t generation, const guest_paging& regs,
                               const paging_features& cpu, std::uint64_t gva, std::size_t size, guest_access access,
                               Copy&& copy) {
    return guest_virtual_copy(
        guest_physical, regs, gva, size, access,
        [&](std::uint64_t la, guest_access a) { return cache.translate(guest_physical, generation, regs, cpu, la, a); },
        copy);
}

} // namespace detail

// access.kind is read (data) or execute (instruction bytes).
template <physical_memory M>
guest_fault copy_from_guest_virtual(M& guest_physical, const guest_paging& regs, const paging_features& cpu,
                                    void* dst, std::uint64_t gva, std::size_t size, guest_access access = {}) {
    return detail::guest_virtual_copy(guest_physical, regs, cpu, gva, size, access,
                                      [&](void* p, std::size_t at, std::size_t n) {
                                          __builtin_memcpy(static_cast<char*>(dst) + at, p, n);
                                      });
}

template <physical_memory M>
guest_fault copy_to_guest_virtual(M& guest_physical, const guest_paging& regs, const paging_features& cpu,
                                  std::uint64_t gva, const void* src, std::size_t size, guest_access access = {}) {
    access.kind = access_kind::write;
    return detail::guest_virtual_copy(guest_physical, regs, cpu, gva, size, access,
                                      [&](void* p, std::size_t at, std::size_t n) {
                                          __builtin_memcpy(p, static_cast<const char*>(src) + at, n);
                                      });
}

// The same through a gva_cache (hits revalidate their table entries; see gva_cache).
// `generation` must change whenever a host pointer guest_physical gave may have.
template <physical_memory M>
guest_fault copy_from_guest_virtual(M& guest_physical, gva_cache& cache, std::uint64_t generation,
                                    const guest_paging& regs, const paging_features& cpu, void* dst, std::uint64_t gva,
                                    std::size_t size, guest_access access = {}) {
    return detail::guest_virtual_copy(guest_physical, cache, generation, regs, cpu, gva, size, access,
                                      [&](void* p, std::size_t at, std::size_t n) {
                                          __builtin_memcpy(static_cast<char*>(dst) + at, p, n);
                                      });
}

template <physical_memory M>
guest_fault copy_to_guest_virtual(M& guest_physical, gva_cache& cache, std::uint64_t generation,
                                  const guest_paging& regs, const paging_features& cpu, std::uint64_t gva,
                                  const void* src, std::size_t size, guest_access access = {}) {
    access.kind = access_kind::write;
    return detail::guest_virtual_copy(guest_physical, cache, generation, regs, cpu, gva, size, access,
                                      [&](void* p, std::size_t at, std::size_t n) {
                                          __builtin_memcpy(p, static_cast<const char*>(src) + at, n);
                                      });
}

} // namespace hv::mmu
