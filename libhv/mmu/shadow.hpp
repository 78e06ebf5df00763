// Shadow paging: guest-virtual -> host-physical tables built from the guest's own
// tables, for VMX without EPT and SVM without NPT.
//
// Shadow format. Hardware walks the shadow in the paging mode the vCPU really runs
// in, so the shadow is PAE for guests with paging off, 32-bit or PAE paging (the cpu
// layer runs them with real CR0.PG=1, CR4.PAE=1, EFER.LMA=0), and 4-level for
// long-mode guests. PAE reaches all of a 32-bit guest's 4 GiB and, unlike 32-bit
// paging, has NX, 64-bit host addresses and the same entry layout as 4-level.
// A 32-bit guest table does not fit one shadow table: its PD (1024 x 4 MiB) becomes
// the PAE root plus four PDs ("quadrants" 0-3), each PT (1024 x 4 KiB) two PTs.
//
// Rights. Every shadow entry mirrors the W/U/NX of the guest entry it stands for, so
// hardware combines them exactly as the guest's walk would, under the real CR0.WP=1
// and the guest's own CR4.SMEP/SMAP/PGE (the cpu layer copies those three into the
// real CR4). Consequently WP/SMEP/SMAP/AC never change shadow contents and are not
// part of a shadow page's role; the one case real WP=1 cannot express, a supervisor
// write to a read-only page with guest CR0.WP=0, is returned as emulate_write.
// Leaves are writable only when the guest D bit is already set (the first write
// faults here; the guest walk sets D) and the page is not a tracked guest table.
// Guest large pages are split into 4 KiB shadow leaves in "direct" shadow tables
// keyed by guest-physical base and the large leaf's D/G/PAT; the shadow entry above
// them mirrors the large leaf's rights.
//
// Tracking. A guest table frame with a shadow page is write-protected in every shadow
// leaf; a guest write to it is reported (tracked_table_write) and the caller emulates
// it and calls guest_table_written(), which clears the shadow entries of the written
// guest entries. Shadows are thus never stale, so INVLPG and CR3 writes only need the
// hardware TLB operation on the shadow (globals behave as the guest expects because
// leaves copy G under CR4.PGE and the real CR4.PGE is the guest's).
// Writable leaves are indexed by the host frame they map (writable_ref), so tracking a
// new table clears W only where it is set; unshadow() gives those entries W back.
// Mode changes (PG, PAE, LMA, PSE, NXE) drop the whole cache: they change how every
// guest entry decodes.
//
// PCID is not modelled: the policy must clear CPUID.01H:ECX.PCID for shadow-paged
// guests; set_guest_paging() refuses CR4.PCIDE=1.
//
// TLB. Whenever shadow entries are removed or lose rights (tracked writes, write
// protection of a newly tracked frame, eviction, dropping the cache) the MMU asks for
// a flush: pf_result::flush_tlb, guest_table_written()'s result, take_tlb_flush()
// after set_guest_paging/flush_all. That flush must include global entries and
// paging-structure caches (INVVPID single-context, SVM TLB_CONTROL, or a CR4.PGE
// toggle), and for a PAE shadow also reload CR3, since hardware caches the shadow
// PDPTEs from CR3 load.
//
// Cache. Shadow tables are kept across CR3 switches, keyed by shadow_key, at most
// MaxPages of them (storage is inside the object: no heap); beyond the bound the
// clock algorithm evicts one, never the root or a table of the fill under way.
// Host pages come from the Host allocator; a PAE root must lie below 4 GiB.
// One shadow_mmu serves one vCPU at a time: it takes no locks. Guest MTRRs are not
// combined into the shadow (leaves keep the guest's PAT/PCD/PWT); the real EFER.NXE
// must be 1 whenever the shadow is loaded.
#pragma once
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include "libhv/core/result.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/memory.hpp"
#include "libhv/mmu/walk.hpp"

namespace hv::mmu {

enum class shadow_format : std::uint8_t { pae, four_level };

[[nodiscard]] shadow_format shadow_format_for(paging_mode mode);

// What a shadow table stands for. Direct tables have no guest table behind them.
struct shadow_key {
    std::uint64_t gpa = 0;     // guest table (a PAE guest's root: its 32-byte PDPT) or direct base
    std::uint8_t level = 0;    // shadow level
    std::uint8_t quadrant = 0; // 32-bit guests: which part of the guest table
    std::uint8_t direct = 0;
    std::uint8_t attrs = 0;    // direct: dirty | global << 1 | PAT index << 2
    friend constexpr bool operator==(const shadow_key&, const shadow_key&) = default;
};

enum class pf_outcome : std::uint8_t {
    fixed,                // the shadow now maps the access: resume
    inject,               // inject #PF(error_code) with CR2 = gva
    tracked_table_write,  // write to a guest page table at gpa: emulate, then guest_table_written()
    emulate_write,        // supervisor write allowed only by guest CR0.WP=0: emulate it
    mmio,                 // gpa is MMIO, a hole, or a write to ROM
    unhandled,            // guest table entry in MMIO/hole (gpa), non-canonical, or no memory
};

struct pf_result {
    pf_outcome outcome = pf_outcome::fixed;
    std::uint32_t error_code = 0;
    std::uint64_t gpa = 0;
    bool flush_tlb = false;  // shadow entries were removed or weakened: flush (reload CR3)
};

struct shadow_stats {
    std::size_t live_pages = 0;
    std::size_t allocations = 0;
    std::size_t evictions = 0;
    std::size_t fills = 0;
};

namespace shadow_detail {
inline constexpr std::uint64_t pcide = bit(17);
inline constexpr std::uint64_t pge = bit(7);
inline constexpr std::uint64_t entry_addr = bits(51, 12);
inline constexpr std::uint64_t table_rights = x86_pte::present | x86_pte::writable | x86_pte::user;
std::uint32_t hash_frame(std::uint64_t frame);
// A frame's bloom-filter position (bits 0-11: 4096 positions).
unsigned filter_hash(std::uint64_t hpa);
guest_access access_from_error_code(std::uint32_t hw_error_code, std::uint8_t cpl);
} // namespace shadow_detail

// Guest-physical memory as the shadow needs it (guest_memory<M> fits).
template <class G>
concept shadow_guest = physical_memory<G> && requires(const G& g, std::uint64_t gpa) {
    { g.backing(gpa) } -> std::same_as<std::optional<std::uint64_t>>;
    { g.find(gpa) } -> std::same_as<const guest_region*>;
};

// At most MaxPages shadow tables live at once; beyond that the clock algorithm evicts.
template <shadow_guest Guest, table_memory Host, std::size_t MaxPages>
class shadow_mmu {
    static_assert(MaxPages >= 8 && MaxPages < (1u << 30));
    static constexpr std::uint32_t none = ~std::uint32_t{0};
    static constexpr std::size_t bucket_count = std::bit_ceil(MaxPages * 2);

public:
    shadow_mmu(Guest& guest, Host& host, paging_features cpu = {}) : guest_{&guest}, host_{&host}, cpu_{cpu} {
        reset_cache();
    }
    shadow_mmu(const shadow_mmu&) = delete;
    shadow_mmu& operator=(const shadow_mmu&) = delete;
    ~shadow_mmu() { drop_all(); }

    // On guest writes to CR0/CR3/CR4/EFER: the shadow root to load as the real CR3.
    [[nodiscard]] result<std::uint64_t> set_guest_paging(std::uint64_t cr0, std::uint64_t cr3, std::uint64_t cr4,
                                                          std::uint64_t efer) {
        if (cr4 & shadow_detail::pcide) return fail(errc::not_supported, "shadow paging hides PCID");
        guest_paging next{cr0, cr3, cr4, efer, 0, 0};
        const paging_mode mode = next.mode();
        const bool nxe = efer & efer::nxe;
        const bool pse = cr4 & cr4::pse;
        if (!have_context_ || mode != mode_ || nxe != nxe_ || (mode == paging_mode::legacy32 && pse != pse_)) {
            drop_all();
            mode_ = mode;
            nxe_ = nxe;
            pse_ = pse;
            have_context_ = true;
        }
        regs_ = next;
        ++clock_;
        switch_clock_ = clock_;
        auto root = get_page(root_key(), pending_flush_);
        if (!root) return root.err();
        root_ = *root;
        const std::uint64_t hpa = pages_[root_].hpa;
        if (format() == shadow_format::pae && hpa >= bit(32))
            return fail(errc::out_of_range, "PAE shadow root must lie below 4 GiB");
        return hpa;
    }

    // A #PF intercepted while the shadow is loaded. `hw_error_code` is what hardware
    // pushed (its W, U and I/D bits describe the access); rflags supplies AC for SMAP.
    [[nodiscard]] pf_result handle_page_fault(std::uint64_t gva, std::uint32_t hw_error_code, std::uint8_t cpl,
                                              std::uint64_t rflags) {
        pf_result out;
        if (root_ == none) return {pf_outcome::unhandled};
        const guest_access access = shadow_detail::access_from_error_code(hw_error_code, cpl);
        guest_paging regs = regs_;
        regs.cpl = cpl;
        regs.rflags = rflags;
        ++clock_;
        pages_[root_].stamp = clock_;

        std::uint64_t gpa;
        x86_rights rights{};
        guest_walk_path path;
        if (mode_ == paging_mode::off) {
            gva &= 0xffff'ffff;
            gpa = gva;
            rights.write = true;
        } else {
            if (mode_ != paging_mode::four_level) gva &= 0xffff'ffff;
            const gva_result r = translate_gva(*guest_, regs, cpu_, gva, access, &path);
            switch (r.status) {
            case gva_status::page_fault: return {pf_outcome::inject, r.error_code, 0};
            case gva_status::non_canonical: return {pf_outcome::unhandled, 0, gva};
            case gva_status::unbacked_gpa: return {pf_outcome::unhandled, 0, r.gpa};
            case gva_status::ok: break;
            }
            gpa = r.gpa;
            rights = r.rights;
        }
        const guest_region* region = guest_->find(gpa);
        const bool write = access.kind == access_kind::write;
        if (!region || region->kind == region_kind::mmio || (write && region->kind == region_kind::rom))
            return {pf_outcome::mmio, 0, gpa};
        if (write && !rights.write) return {pf_outcome::emulate_write, 0, gpa};
        if (write && tracked(gpa)) {
            tracked_write_ = {gva, gpa, path, true};
            return {pf_outcome::tracked_table_write, 0, gpa};
        }

        if (!fill(gva, gpa, path, out.flush_tlb)) return {pf_outcome::unhandled, 0, gpa, out.flush_tlb};
        ++stats_.fills;
        return out;
    }

    // After handle_page_fault reported a tracked_table_write and unshadow() stopped
    // tracking that frame: maps the write's page from the walk that fault already did
    // (nothing ran in the guest in between), without walking again. Not `fixed` when the
    // frame is still tracked (it holds another table): the caller emulates the write.
    [[nodiscard]] pf_result map_unshadowed_write() {
        pf_result out;
        const tracked_write w = tracked_write_;
        tracked_write_.valid = false;
        if (!w.valid || tracked(w.gpa)) return {pf_outcome::tracked_table_write, 0, w.gpa};
        ++clock_;
        if (!fill(w.gva, w.gpa, w.path, out.flush_tlb)) return {pf_outcome::unhandled, 0, w.gpa, out.flush_tlb};
        ++stats_.fills;
        return out;
    }

    // After the caller emulated a guest write of `len` bytes at gpa: drops the shadow
    // entries of every written guest entry. True when the TLB must be flushed.
    [[nodiscard]] bool guest_table_written(std::uint64_t gpa, std::uint64_t len) {
        bool flush = false;
        if (len == 0) return false;
        const std::uint64_t last = gpa + (len - 1);
        for (std::uint64_t frame = gpa & ~page_offset_mask; frame <= last; frame += page_size) {
            const std::uint64_t first = frame > gpa ? frame : gpa;
            const std::uint64_t end = last - frame >= page_size ? frame + page_offset_mask : last;
            for (std::uint32_t i = buckets_[bucket_of(frame)]; i != none; i = pages_[i].next) {
                const shadow_key& k = pages_[i].key;
                if (k.direct || (k.gpa & ~page_offset_mask) != frame) continue;
                zap_written(pages_[i], first, end, flush);
            }
            if (frame + page_size == 0) break;
        }
        return flush;
    }

    // Stop shadowing the guest table in gpa's frame (a guest rewriting it wholesale):
    // frees its shadow tables, unlinking them, so the frame is no longer write-protected
    // once the faulting write is retried (handle_page_fault then maps it writable). It is
    // shadowed again when a walk needs it. Refused (nullopt) for the current root.
    // The value: true when the TLB must be flushed.
    // With idle_ancestors, the tables above it that no fill used since the last CR3 load
    // (an address space being torn down while another runs) go too, so that its other
    // tables' teardown writes do not fault one by one; never the current root.
    [[nodiscard]] std::optional<bool> unshadow(std::uint64_t gpa, bool idle_ancestors = false) {
        const std::uint64_t frame = gpa & ~page_offset_mask;
        std::array<std::uint32_t, 16> found{};
        std::size_t n = 0;
        for (std::uint32_t i = buckets_[bucket_of(frame)]; i != none; i = pages_[i].next) {
            if (pages_[i].key.direct || (pages_[i].key.gpa & ~page_offset_mask) != frame) continue;
            if (i == root_ || n == 8) return std::nullopt;
            found[n++] = i;
        }
        for (std::size_t k = 0, tables = n; idle_ancestors && k < tables; ++k) {
            for (std::uint32_t p = pages_[found[k]].parent; p != none && n < found.size(); p = pages_[p].parent) {
                const page& up = pages_[p];
                if (!up.live || p == root_ || up.key.direct || up.stamp >= switch_clock_) break;
                bool seen = false;
                for (std::size_t j = 0; j < n; ++j) seen = seen || found[j] == p;
                if (seen) break;
                found[n++] = p;
            }
        }
        bool flush = false;
        std::array<std::uint64_t, 16> frames{};
        for (std::size_t k = 0; k < n; ++k) {
            frames[k] = pages_[found[k]].key.gpa & ~page_offset_mask;
            evict(found[k], flush);
        }
        for (std::size_t k = 0; k < n; ++k)
            if (!tracked(frames[k])) write_unprotect(frames[k]);
        return flush;
    }

    // The host-physical address the loaded shadow maps gva to (what hardware would use),
    // if it maps it: a cheap way to read guest code that just ran (e.g. the instruction
    // an exit gave no details of).
    [[nodiscard]] std::optional<std::uint64_t> mapped(std::uint64_t gva) {
        if (root_ == none) return std::nullopt;
        if (mode_ != paging_mode::four_level) gva &= 0xffff'ffff;
        const walk_end e = walk_shadow(pages_[root_].hpa, gva);
        if (e.stop != walk_stop::leaf) return std::nullopt;
        return (e.entry & shadow_detail::entry_addr) | (gva & page_offset_mask);
    }

    // Guest INVLPG: the shadow is in sync already; the leaf is dropped so the next
    // access refills it. The caller also invalidates gva in the hardware TLB.
    void invlpg(std::uint64_t gva) {
        if (root_ == none) return;
        if (mode_ != paging_mode::four_level) gva &= 0xffff'ffff;
        const walk_end e = walk_shadow(pages_[root_].hpa, gva);
        if (e.stop == walk_stop::leaf) store_entry<std::uint64_t>(host_->host_pointer(e.entry_pa, true), 0);
    }

    // True once after set_guest_paging/flush_all removed or weakened shadow entries.
    [[nodiscard]] bool take_tlb_flush() {
        const bool f = pending_flush_;
        pending_flush_ = false;
        return f;
    }

    // Frees every shadow table and rebuilds the root; returns the new root for CR3.
    [[nodiscard]] result<std::uint64_t> flush_all() {
        drop_all();
        return set_guest_paging(regs_.cr0, regs_.cr3, regs_.cr4, regs_.efer);
    }

    [[nodiscard]] shadow_format format() const { return shadow_format_for(mode_); }
    [[nodiscard]] std::uint64_t root() const { return root_ == none ? 0 : pages_[root_].hpa; }
    [[nodiscard]] const shadow_stats& stats() const {
        stats_.live_pages = live_;
        return stats_;
    }
    // Has a shadow of gpa's guest table served a fill since the last set_guest_paging?
    // (A table written while its address space is not the current one was not.)
    [[nodiscard]] bool used_since_switch(std::uint64_t gpa) const {
        const std::uint64_t frame = gpa & ~page_offset_mask;
        for (std::uint32_t i = buckets_[bucket_of(frame)]; i != none; i = pages_[i].next)
            if (!pages_[i].key.direct && (pages_[i].key.gpa & ~page_offset_mask) == frame &&
                pages_[i].stamp >= switch_clock_)
                return true;
        return false;
    }

    // Is gpa's frame a guest page table with a shadow (so write-protected)?
    [[nodiscard]] bool tracked(std::uint64_t gpa) const {
        const std::uint64_t frame = gpa & ~page_offset_mask;
        for (std::uint32_t i = buckets_[bucket_of(frame)]; i != none; i = pages_[i].next)
            if (!pages_[i].key.direct && (pages_[i].key.gpa & ~page_offset_mask) == frame) return true;
        return false;
    }

private:
    struct page {
        shadow_key key;
        std::uint64_t hpa = 0;
        std::uint64_t stamp = 0;
        std::array<std::uint64_t, 4> writable_filter{};  // bloom of frames mapped writable (level 1)
        std::uint32_t next = none;          // hash chain, or free list
        bool live = false;
        bool shared = false;                // linked from more than one slot (ever)
        bool referenced = false;            // used since the clock hand last passed
        std::uint16_t parent_slot = 0;
        std::uint32_t parent = none;        // the page holding the one slot linking this page
        std::uint32_t generation = 0;       // which allocation of this slot (writable_ref)
    };

    void link(std::uint32_t child, std::uint32_t parent, unsigned slot) {
        page& c = pages_[child];
        if (c.parent == none) {
            c.parent = parent;
            c.parent_slot = static_cast<std::uint16_t>(slot);
        } else if (c.parent != parent || c.parent_slot != slot) {
            c.shared = true;
        }
    }

    static std::uint32_t bucket_of(std::uint64_t gpa) {
        return shadow_detail::hash_frame(gpa >> page_shift) & (bucket_count - 1);
    }

    unsigned shadow_levels() const { return format() == shadow_format::pae ? 3 : 4; }

    walk_end walk_shadow(std::uint64_t root, std::uint64_t va) {
        auto any = [](unsigned, std::uint64_t, std::uint64_t) { return true; };
        if (format() == shadow_format::pae) return walk(pae_format{}, *host_, root, va, any);
        return walk(x86_64_format{}, *host_, root, va, any);
    }

    shadow_key root_key() const {
        switch (mode_) {
        case paging_mode::off: return {0, 3, 0, 1, 1};
        case paging_mode::legacy32: return {regs_.cr3 & bits(31, 12), 3, 0, 0, 0};
        case paging_mode::pae: return {regs_.cr3 & bits(31, 5), 3, 0, 0, 0};
        case paging_mode::four_level: return {regs_.cr3 & bits(cpu_.maxphyaddr - 1, 12), 4, 0, 0, 0};
        }
        return {};
    }

    void reset_cache() {
        for (auto& b : buckets_) b = none;
        for (auto& w : writable_anywhere_) w = 0;
        for (auto& b : writable_refs_)
            for (auto& r : b) r = writable_ref{};
        writable_refs_overflowed_ = false;
        free_ = none;
        for (std::size_t i = MaxPages; i-- > 0;) {
            pages_[i] = page{};
            pages_[i].next = free_;
            free_ = static_cast<std::uint32_t>(i);
        }
        live_ = 0;
        root_ = none;
    }

    void drop_all() {
        for (auto& p : pages_)
            if (p.live) {
                host_->free_page(p.hpa);
                pending_flush_ = true;
            }
        reset_cache();
    }

    void unlink(std::uint32_t idx) {
        std::uint32_t* at = &buckets_[bucket_of(pages_[idx].key.gpa)];
        while (*at != idx) at = &pages_[*at].next;
        *at = pages_[idx].next;
    }

    // Removes every shadow entry that points at page `idx`, then frees it. A page linked
    // from one slot only knows it; one linked from several is found by a scan.
    void evict(std::uint32_t idx, bool& flush) {
        page& victim = pages_[idx];
        if (!victim.shared) {
            if (victim.parent != none && pages_[victim.parent].live) {
                void* slot = host_->host_pointer(pages_[victim.parent].hpa + victim.parent_slot * 8, true);
                const std::uint64_t e = load_entry<std::uint64_t>(slot);
                if ((e & x86_pte::present) && (e & shadow_detail::entry_addr) == victim.hpa) {
                    store_entry<std::uint64_t>(slot, 0);
                    flush = true;
                }
            }
            release(idx);
            return;
        }
        for (auto& p : pages_) {
            if (!p.live || p.key.level != victim.key.level + 1) continue;
            auto* t = static_cast<std::uint64_t*>(host_->host_pointer(p.hpa, true));
            for (unsigned i = 0; i < 512; ++i) {
                const std::uint64_t e = load_entry<std::uint64_t>(&t[i]);
                if ((e & x86_pte::present) && (e & shadow_detail::entry_addr) == victim.hpa) {
                    store_entry<std::uint64_t>(&t[i], 0);
                    flush = true;
                }
            }
        }
        release(idx);
    }

    void release(std::uint32_t idx) {
        page& victim = pages_[idx];
        unlink(idx);
        host_->free_page(victim.hpa);
        victim = page{};
        victim.next = free_;
        free_ = idx;
        --live_;
        ++stats_.evictions;
    }

    // Clock (second chance), sparing the pages of the fault being handled (stamp == clock).
    bool evict_one(bool& flush) {
        for (std::size_t n = 0; n < 2 * MaxPages + 1; ++n) {
            const std::uint32_t i = hand_;
            hand_ = static_cast<std::uint32_t>((hand_ + 1) % MaxPages);
            page& p = pages_[i];
            if (!p.live || p.stamp == clock_ || i == root_) continue;
            if (p.referenced) {
                p.referenced = false;
                continue;
            }
            evict(i, flush);
            return true;
        }
        return false;
    }

    std::optional<std::uint32_t> find(const shadow_key& k) const {
        for (std::uint32_t i = buckets_[bucket_of(k.gpa)]; i != none; i = pages_[i].next)
            if (pages_[i].key == k) return i;
        return std::nullopt;
    }

    // Clears W in every level-1 shadow entry mapping the frame at gpa.
    void write_protect(std::uint64_t gpa, bool& flush) {
        const auto hpa = guest_->backing(gpa & ~page_offset_mask);
        if (!hpa) return;
        if (!writable_refs_overflowed_) {
            for (writable_ref& r : writable_refs_[writable_bucket(*hpa)]) {
                if (r.frame != *hpa) continue;
                std::uint64_t* e = live_ref(r);
                if (!e || !(load_entry<std::uint64_t>(e) & x86_pte::writable)) continue;
                store_entry<std::uint64_t>(e, (load_entry<std::uint64_t>(e) & ~x86_pte::writable) | protected_mark);
                flush = true;
            }
            return;
        }
        const unsigned h = shadow_detail::filter_hash(*hpa);
        if (!(writable_anywhere_[h / 64] & bit(h % 64))) return;
        const unsigned ph = h % 256;
        for (auto& p : pages_) {
            if (!p.live || p.key.level != 1 || !(p.writable_filter[ph / 64] & bit(ph % 64))) continue;
            auto* t = static_cast<std::uint64_t*>(host_->host_pointer(p.hpa, true));
            for (unsigned i = 0; i < 512; ++i) {
                const std::uint64_t e = load_entry<std::uint64_t>(&t[i]);
                if ((e & x86_pte::writable) && (e & shadow_detail::entry_addr) == *hpa) {
                    store_entry<std::uint64_t>(&t[i], e & ~x86_pte::writable);
                    flush = true;
                }
            }
        }
    }

    // Writable level-1 shadow entries by the host frame they map, so that write-protecting
    // a frame that becomes a tracked guest table visits only those entries. A reference
    // may be stale (the entry was since zapped, its page freed or reused): it counts only
    // while the entry it names still maps that frame writable. When a bucket has no room,
    // write_protect falls back to scanning every level-1 page (the bloom filters) until
    // the cache is next dropped.
    //
    // A writable entry write-protected because its frame became a tracked table keeps its
    // reference and is marked (protected_mark, a bit the CPU ignores); when the frame
    // stops being tracked (unshadow), marked entries get W back at once instead of
    // faulting again. The mark is exact: any rewrite of the entry (a zap, a fill) drops
    // it, and an entry that survives unchanged still mirrors unchanged guest entries
    // (writes to the tracked tables above it would have zapped it).
    struct writable_ref {
        std::uint64_t frame = 0;
        std::uint32_t page = none;
        std::uint32_t generation = 0;
        std::uint32_t slot = 0;
    };
    static constexpr std::size_t writable_buckets = 512, writable_ways = 8;
    static constexpr std::uint64_t protected_mark = bit(9);

    static std::size_t writable_bucket(std::uint64_t hpa) {
        return shadow_detail::hash_frame(hpa >> page_shift) & (writable_buckets - 1);
    }

    // The entry r names, while it still maps r.frame writable or marked.
    std::uint64_t* live_ref(const writable_ref& r) {
        if (r.page == none || !pages_[r.page].live || pages_[r.page].generation != r.generation ||
            pages_[r.page].key.level != 1)
            return nullptr;
        auto* e = static_cast<std::uint64_t*>(host_->host_pointer(pages_[r.page].hpa + r.slot * 8, true));
        const std::uint64_t v = load_entry<std::uint64_t>(e);
        const bool kept = (v & x86_pte::present) && (v & (x86_pte::writable | protected_mark));
        return kept && (v & shadow_detail::entry_addr) == r.frame ? e : nullptr;
    }

    void note_writable(std::uint64_t hpa, std::uint32_t page, unsigned slot) {
        if (writable_refs_overflowed_) return;
        writable_ref* room = nullptr;
        const std::uint32_t gen = pages_[page].generation;
        for (writable_ref& r : writable_refs_[writable_bucket(hpa)]) {
            if (r.frame == hpa && r.page == page && r.slot == slot && r.generation == gen) return;
            if (!room && !live_ref(r)) room = &r;
        }
        if (room) *room = {hpa, page, gen, slot};
        else writable_refs_overflowed_ = true;
    }

    // The frame at guest-physical `frame` is no longer a tracked table: the entries that
    // lost W when it became one get it back.
    void write_unprotect(std::uint64_t frame) {
        const auto hpa = guest_->backing(frame);
        if (!hpa || writable_refs_overflowed_) return;
        for (writable_ref& r : writable_refs_[writable_bucket(*hpa)]) {
            if (r.frame != *hpa) continue;
            std::uint64_t* e = live_ref(r);
            if (!e) continue;
            const std::uint64_t v = load_entry<std::uint64_t>(e);
            if (v & protected_mark) store_entry<std::uint64_t>(e, (v & ~protected_mark) | x86_pte::writable);
        }
    }

    result<std::uint32_t> get_page(const shadow_key& k, bool& flush) {
        if (auto i = find(k)) {
            pages_[*i].stamp = clock_;
            pages_[*i].referenced = true;
            return *i;
        }
        if (free_ == none && !evict_one(flush)) return fail(errc::no_memory, "shadow page bound too small");
        auto hpa = host_->alloc_page();
        while (!hpa) {
            if (!evict_one(flush)) return hpa.err();
            hpa = host_->alloc_page();
        }
        if (!k.direct && !tracked(k.gpa)) write_protect(k.gpa, flush);
        const std::uint32_t idx = free_;
        free_ = pages_[idx].next;
        page& p = pages_[idx];
        p = page{k, *hpa, clock_, {}, buckets_[bucket_of(k.gpa)], true, false, false, 0, none, ++generation_};
        buckets_[bucket_of(k.gpa)] = idx;
        ++live_;
        ++stats_.allocations;
        return idx;
    }

    static void update(void* slot, std::uint64_t want, bool& flush) {
        const std::uint64_t cur = load_entry<std::uint64_t>(slot);
        if (cur == want) return;
        store_entry<std::uint64_t>(slot, want);
        // A fault drops the faulting address's TLB entries; anything else that was
        // present and is not merely gaining W needs a flush.
        if ((cur & x86_pte::present) && want != (cur | x86_pte::writable)) flush = true;
    }

    struct tracked_write {
        std::uint64_t gva = 0;
        std::uint64_t gpa = 0;
        guest_walk_path path{};
        bool valid = false;
    };

    // The guest's W/U/NX of one entry, as shadow bits.
    std::uint64_t mirrored_rights(std::uint64_t e) const {
        std::uint64_t r = x86_pte::present | (e & (x86_pte::writable | x86_pte::user));
        if (nxe_ && (e & x86_pte::no_execute)) r |= x86_pte::no_execute;
        return r;
    }

    // The direct-table attributes of a large guest leaf (or of no paging).
    std::uint8_t large_attrs(const guest_walk_path& path) const {
        if (path.leaf_level == 0) return 1;
        const std::uint64_t e = path.entry[path.leaf_level];
        const unsigned pat = (e & x86_pte::write_through ? 1 : 0) | (e & x86_pte::cache_disable ? 2 : 0) |
                             (e & x86_pte::pat_large ? 4 : 0);
        const bool g = (e & x86_pte::global) && (regs_.cr4 & shadow_detail::pge);
        return static_cast<std::uint8_t>((e & x86_pte::dirty ? 1 : 0) | (g ? 2 : 0) | (pat << 2));
    }

    // The guest level a shadow level mirrors (0: none, the entry lies inside a direct region).
    unsigned guest_level_of(unsigned s, const guest_walk_path& path) const {
        unsigned g = s;
        if (mode_ == paging_mode::off) return 0;
        if (mode_ == paging_mode::legacy32 && s == 3) return 0;
        return g >= path.leaf_level ? g : 0;
    }

    // `path`: the guest walk that translated gva to gpa (with paging off, none).
    bool fill(std::uint64_t gva, std::uint64_t gpa, const guest_walk_path& path, bool& flush) {
        const bool pae_shadow = format() == shadow_format::pae;
        std::uint32_t cur = root_;
        for (unsigned s = shadow_levels(); s >= 2; --s) {
            const unsigned shift = page_shift + 9 * (s - 1);
            const unsigned index = static_cast<unsigned>((gva >> shift) & (pae_shadow && s == 3 ? 3 : 511));
            shadow_key child{};
            std::uint64_t rights = shadow_detail::table_rights;
            const unsigned g = guest_level_of(s, path);
            if (mode_ == paging_mode::legacy32 && s == 3) {
                child = {path.table(2), 2, static_cast<std::uint8_t>(index), 0, 0};
            } else if (g != 0 && g > path.leaf_level) {
                const std::uint64_t e = path.entry[g];
                rights = mirrored_rights(e);
                std::uint8_t quadrant = 0;
                if (mode_ == paging_mode::legacy32) quadrant = static_cast<std::uint8_t>((gva >> 21) & 1);
                child = {e & (mode_ == paging_mode::legacy32 ? bits(31, 12) : shadow_detail::entry_addr), static_cast<std::uint8_t>(s - 1), quadrant, 0, 0};
            } else {
                if (g != 0) rights = mirrored_rights(path.entry[g]);  // the large leaf itself
                child = {gpa & ~((std::uint64_t{1} << shift) - 1), static_cast<std::uint8_t>(s - 1), 0, 1,
                         large_attrs(path)};
            }
            if (pae_shadow && s == 3) rights = x86_pte::present;
            auto next = get_page(child, flush);
            if (!next) return false;
            void* slot = host_->host_pointer(pages_[cur].hpa + index * 8, true);
            update(slot, pages_[*next].hpa | rights, flush);
            link(*next, cur, index);
            cur = *next;
        }

        const auto hpa = guest_->backing(gpa & ~page_offset_mask);
        if (!hpa) return true;  // raced with a region change; the next fault reports it
        const guest_region* region = guest_->find(gpa);
        const bool ram = region && region->kind == region_kind::ram;
        std::uint64_t leaf;
        bool dirty;
        if (path.leaf_level == 1) {
            const std::uint64_t e = path.entry[1];
            leaf = mirrored_rights(e) & ~x86_pte::writable;
            leaf |= e & (x86_pte::write_through | x86_pte::cache_disable | x86_pte::pat_small);
            if ((e & x86_pte::global) && (regs_.cr4 & shadow_detail::pge)) leaf |= x86_pte::global;
            dirty = (e & x86_pte::dirty) && (e & x86_pte::writable);
        } else {
            const std::uint8_t a = pages_[cur].key.attrs;
            leaf = shadow_detail::table_rights & ~x86_pte::writable;
            if (a & 2) leaf |= x86_pte::global;
            const unsigned pat = a >> 2;
            leaf |= (pat & 1 ? x86_pte::write_through : 0) | (pat & 2 ? x86_pte::cache_disable : 0) |
                    (pat & 4 ? x86_pte::pat_small : 0);
            dirty = a & 1;
        }
        const bool writable = dirty && ram && !tracked(gpa);
        if (writable) {
            leaf |= x86_pte::writable;
            const unsigned h = shadow_detail::filter_hash(*hpa);
            writable_anywhere_[h / 64] |= bit(h % 64);
            pages_[cur].writable_filter[(h % 256) / 64] |= bit(h % 64);
        }
        const unsigned index = static_cast<unsigned>((gva >> page_shift) & 511);
        if (writable) note_writable(*hpa, cur, index);
        update(host_->host_pointer(pages_[cur].hpa + index * 8, true), *hpa | leaf, flush);
        return true;
    }

    void zap(const page& p, unsigned first, unsigned count, bool& flush) {
        auto* t = static_cast<std::uint64_t*>(host_->host_pointer(p.hpa, true));
        for (unsigned i = first; i < first + count; ++i) {
            if (load_entry<std::uint64_t>(&t[i]) & x86_pte::present) flush = true;
            store_entry<std::uint64_t>(&t[i], 0);
        }
    }

    // Guest bytes [first, last] (one frame) were written; p shadows a table there.
    void zap_written(const page& p, std::uint64_t first, std::uint64_t last, bool& flush) {
        const shadow_key& k = p.key;
        if (mode_ == paging_mode::legacy32) {
            if (k.level == 3) return;  // the PAE root of a 32-bit guest mirrors no guest entry
            const unsigned lo = (first & page_offset_mask) / 4, hi = (last & page_offset_mask) / 4;
            const unsigned per = k.level == 2 ? 256 : 512;  // guest entries per quadrant
            const unsigned ratio = k.level == 2 ? 2 : 1;    // shadow entries per guest entry
            for (unsigned i = lo; i <= hi; ++i)
                if (i / per == k.quadrant) zap(p, (i % per) * ratio, ratio, flush);
            return;
        }
        if (mode_ == paging_mode::pae && k.level == 3) {
            for (unsigned i = 0; i < 4; ++i) {
                const std::uint64_t e = k.gpa + 8 * i;
                if (e <= last && e + 7 >= first) zap(p, i, 1, flush);
            }
            return;
        }
        const unsigned lo = (first & page_offset_mask) / 8, hi = (last & page_offset_mask) / 8;
        zap(p, lo, hi - lo + 1, flush);
    }

    Guest* guest_;
    Host* host_;
    paging_features cpu_;
    guest_paging regs_{};
    paging_mode mode_ = paging_mode::off;
    bool nxe_ = false;
    bool pse_ = false;
    bool have_context_ = false;
    bool pending_flush_ = false;
    std::uint64_t clock_ = 0;
    std::uint64_t switch_clock_ = 0;  // clock_ at the last set_guest_paging
    tracked_write tracked_write_{};   // the last tracked_table_write reported
    std::array<page, MaxPages> pages_{};
    std::array<std::uint32_t, bucket_count> buckets_{};
    // Frames ever mapped writable since the last drop_all (bloom, never cleared).
    std::array<std::uint64_t, 64> writable_anywhere_{};
    std::array<std::array<writable_ref, writable_ways>, writable_buckets> writable_refs_{};
    bool writable_refs_overflowed_ = false;
    std::uint32_t generation_ = 0;
    std::uint32_t free_ = none;
    std::uint32_t root_ = none;
    std::uint32_t hand_ = 0;
    std::size_t live_ = 0;
    mutable shadow_stats stats_{};
};

} // namespace hv::mmu
