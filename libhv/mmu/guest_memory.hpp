// A guest's physical address space: RAM, ROM and MMIO regions; everything else is a
// hole. RAM and ROM are backed by host pages from the hypervisor's allocator, found
// through a backing map: a software page table (the one builder again) from GPA to
// host-physical page, 4 KiB leaves only so that dropping a region never needs memory,
// W set for RAM.
//
// The nested tables (EPT or NPT) built from it map exactly the RAM and ROM pages, each
// to its own backing page: nothing else of the host is reachable from the guest.
// MMIO regions and holes stay unmapped, so every access to them exits.
//
// RAM added with ram_backing::first_touch gets no pages up front: each page is allocated
// (zeroed) the first time anything translates it — a nested fault, host_pointer or
// backing() for the hypervisor's own accesses — so a guest pays only for what it uses.
// The page then stays: a backing translation, once given, never changes while the
// region exists. If the allocator runs dry at first touch, the page reads as not backed.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include "libhv/core/result.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/memory.hpp"
#include "libhv/mmu/page_table.hpp"

namespace hv::mmu {

enum class region_kind : std::uint8_t { ram, rom, mmio };
enum class ram_backing : std::uint8_t { up_front, first_touch };

struct guest_region {
    std::uint64_t base;
    std::uint64_t size;
    region_kind kind;
    std::uint32_t device;  // mmio: the io layer's device id
    ram_backing backing = ram_backing::up_front;

    [[nodiscard]] std::uint64_t last() const { return base + (size - 1); }
    [[nodiscard]] bool contains(std::uint64_t gpa) const { return base <= gpa && gpa <= last(); }
};

// Regions sorted by base, never overlapping.
class region_map {
public:
    static constexpr std::size_t capacity = 32;

    [[nodiscard]] status check_new(const guest_region& r, std::uint64_t gpa_limit) const;
    void insert(const guest_region& r);  // after check_new
    [[nodiscard]] const guest_region* find(std::uint64_t gpa) const;
    [[nodiscard]] std::span<const guest_region> all() const { return {regions_.data(), count_}; }

private:
    std::array<guest_region, capacity> regions_{};
    std::size_t count_ = 0;
};

// What an EPT violation / nested page fault at (gpa, access) calls for.
enum class nested_action : std::uint8_t {
    map,        // RAM or ROM not yet in the nested tables: map `size` bytes at gpa -> hpa
    mmio,       // emulate: device `device`, `offset` into its region
    violation,  // the guest broke the region's protection (a write to ROM)
    unmapped,   // a hole: no region at all
    unbacked,   // first-touch RAM whose page could not be allocated (out of memory)
};

struct nested_resolution {
    nested_action action;
    std::uint64_t gpa;   // map: page base; otherwise the faulting address
    std::uint64_t hpa = 0;
    std::uint64_t size = 0;
    page_attrs attrs{};
    std::uint32_t device = 0;
    std::uint64_t offset = 0;
};

// Nested leaves for guest memory: user (NPT walks are user accesses; EPT ignores it),
// write-back (the guest's PAT still combines), never writable for ROM.
constexpr page_attrs nested_attrs(bool writable) {
    page_attrs a;
    a.write = writable;
    a.execute = true;
    a.user = true;
    return a;
}

template <table_memory M>
class guest_memory {
public:
    using backing_table = page_table<x86_64_format, M>;

    explicit guest_memory(M& host, std::uint64_t gpa_limit = bit(48))
        : host_{&host}, gpa_limit_{gpa_limit}, backing_{npt_format(), host} {}
    guest_memory(const guest_memory&) = delete;
    guest_memory& operator=(const guest_memory&) = delete;
    ~guest_memory() { release_backing(0, ~std::uint64_t{0}); }

    [[nodiscard]] status init() { return backing_.init(); }

    // RAM and ROM get zeroed backing pages now (all or nothing), or RAM at first touch.
    [[nodiscard]] status add_ram(std::uint64_t gpa, std::uint64_t size, ram_backing b = ram_backing::up_front) {
        if (b == ram_backing::first_touch) {
            const guest_region r{gpa, size, region_kind::ram, 0, b};
            HV_TRY(regions_.check_new(r, gpa_limit_));
            regions_.insert(r);
            hits_ = {};  // pages remembered as unbacked are RAM now
            return {};
        }
        return add_backed({gpa, size, region_kind::ram, 0});
    }
    [[nodiscard]] status add_rom(std::uint64_t gpa, std::uint64_t size) { return add_backed({gpa, size, region_kind::rom, 0}); }
    [[nodiscard]] status add_mmio(std::uint64_t gpa, std::uint64_t size, std::uint32_t device) {
        const guest_region r{gpa, size, region_kind::mmio, device};
        HV_TRY(regions_.check_new(r, gpa_limit_));
        regions_.insert(r);
        return {};
    }

    [[nodiscard]] const guest_region* find(std::uint64_t gpa) const { return regions_.find(gpa); }
    [[nodiscard]] std::span<const guest_region> regions() const { return regions_.all(); }
    [[nodiscard]] std::size_t backing_table_pages() const { return backing_.table_pages(); }
    // Changes whenever backing pages are released: host pointers from host_pointer()
    // kept across calls (gva_cache) are good only while it stays the same.
    [[nodiscard]] std::uint64_t generation() const { return generation_; }

    // The host-physical page behind a RAM or ROM address.
    [[nodiscard]] std::optional<std::uint64_t> backing(std::uint64_t gpa) const {
        if (gpa >= gpa_limit_) return std::nullopt;
        auto t = translate_backing(gpa);
        if (!t) return std::nullopt;
        return t->pa;
    }

    // physical_memory over guest-physical addresses, for the walkers: RAM, or ROM when
    // only reading; nullptr for MMIO and holes.
    // A small cache of pages saves the backing-map walk: walkers ask for the same few
    // table pages again and again, an MMIO loop for the same device page, and a page's
    // backing (or its absence outside RAM) never changes while the regions stay (adding
    // RAM or ROM and release_backing empty the cache; first-touch RAM not backed yet is
    // not remembered).
    void* host_pointer(std::uint64_t gpa, bool for_write) const {
        if (gpa >= gpa_limit_) return nullptr;
        const std::uint64_t page = gpa & ~page_offset_mask;
        backing_hit& hit = hits_[(page >> page_shift) % hits_.size()];
        if (hit.page != page) {
            auto t = backing_.translate(page);
            if (!t) {
                const guest_region* r = regions_.find(page);
                if (!r || r->kind == region_kind::mmio) {
                    hit = {page, 0, false, false};
                    return nullptr;
                }
                // First-touch RAM: backed now, or not remembered (the allocator may have
                // a page later).
                if (r->kind != region_kind::ram || r->backing != ram_backing::first_touch) return nullptr;
                if (!const_cast<guest_memory*>(this)->back_page(page)) return nullptr;
                t = backing_.translate(page);
                if (!t) return nullptr;
            }
            hit = {page, t->pa, t->attrs.write, true};
        }
        if (!hit.backed || (for_write && !hit.writable)) return nullptr;
        return host_->host_pointer(hit.pa + (gpa & page_offset_mask), for_write);
    }

    // The hypervisor's accessors: the whole range is checked before a byte moves.
    [[nodiscard]] status read(std::uint64_t gpa, void* dst, std::size_t size) const {
        return copy_pages(gpa, size, false, false, [&](void* p, std::size_t at, std::size_t n) {
            __builtin_memcpy(static_cast<char*>(dst) + at, p, n);
        });
    }
    // RAM only, as the guest would see it.
    [[nodiscard]] status write(std::uint64_t gpa, const void* src, std::size_t size) {
        return copy_pages(gpa, size, true, false, [&](void* p, std::size_t at, std::size_t n) {
            __builtin_memcpy(p, static_cast<const char*>(src) + at, n);
        });
    }
    // RAM only, as write() of zeros, except that first-touch RAM not backed yet stays
    // unbacked: it reads as zeros when first touched (a loaded kernel's .bss costs no
    // page, and no second zeroing, until the guest uses it).
    [[nodiscard]] status zero(std::uint64_t gpa, std::size_t size) {
        return copy_pages(
            gpa, size, true, false, [](void* p, std::size_t, std::size_t n) { __builtin_memset(p, 0, n); },
            unbacked_first_touch::leave);
    }
    // RAM or ROM: loading firmware and ROM images.
    [[nodiscard]] status load(std::uint64_t gpa, const void* src, std::size_t size) {
        return copy_pages(gpa, size, true, true, [&](void* p, std::size_t at, std::size_t n) {
            __builtin_memcpy(p, static_cast<const char*>(src) + at, n);
        });
    }

    // Maps every RAM and ROM page into nested tables (any format), in runs of
    // contiguous backing so the builder can use large pages.
    template <class Batch>
    [[nodiscard]] status map_nested(Batch& tx) const {
        status result;
        mapping run{};
        auto flush_run = [&] {
            if (result.ok() && run.size) result = tx.map(run.va, run.pa, run.size, nested_attrs(run.attrs.write));
        };
        backing_.for_each_mapping([&](const mapping& m) {
            if (run.size && m.va == run.va + run.size && m.pa == run.pa + run.size &&
                m.attrs.write == run.attrs.write) {
                run.size += m.size;
                return;
            }
            flush_run();
            run = m;
        });
        flush_run();
        return result;
    }

    // The decoder-independent half of an EPT violation / NPF exit.
    [[nodiscard]] nested_resolution resolve_nested_fault(std::uint64_t gpa, access_kind access) const {
        const guest_region* r = gpa < gpa_limit_ ? regions_.find(gpa) : nullptr;
        if (!r) return {nested_action::unmapped, gpa};
        if (r->kind == region_kind::mmio) return {nested_action::mmio, gpa, 0, 0, {}, r->device, gpa - r->base};
        if (r->kind == region_kind::rom && access == access_kind::write) return {nested_action::violation, gpa};
        const std::uint64_t page = gpa & ~page_offset_mask;
        const auto hpa = backing(page);
        if (!hpa) return {nested_action::unbacked, gpa};
        return {nested_action::map, page, *hpa, page_size, nested_attrs(r->kind == region_kind::ram)};
    }

    // Pages backed so far by first-touch regions.
    [[nodiscard]] std::uint64_t backed_at_first_touch() const { return first_touch_pages_; }

private:
    // The backing leaf of gpa's page; a first-touch RAM page not backed yet gets its
    // zeroed page now. Logically const: the guest sees zeros either way.
    auto translate_backing(std::uint64_t gpa) const -> decltype(std::declval<const backing_table&>().translate(0)) {
        if (auto t = backing_.translate(gpa)) return t;
        const guest_region* r = regions_.find(gpa);
        if (!r || r->kind != region_kind::ram || r->backing != ram_backing::first_touch) return std::nullopt;
        if (!const_cast<guest_memory*>(this)->back_page(gpa & ~page_offset_mask)) return std::nullopt;
        return backing_.translate(gpa);
    }
    bool back_page(std::uint64_t page) {
        auto hpa = host_->alloc_page();
        if (!hpa) return false;
        auto tx = backing_.begin();
        if (!tx.map(page, *hpa, page_size, nested_attrs(true), page_size).ok()) {
            host_->free_page(*hpa);
            return false;
        }
        ++first_touch_pages_;
        return true;
    }

    status add_backed(const guest_region& r) {
        HV_TRY(regions_.check_new(r, gpa_limit_));
        status result;
        mapping run{};  // allocated pages not yet in the backing map
        {
            auto tx = backing_.begin();
            const page_attrs attrs = nested_attrs(r.kind == region_kind::ram);
            for (std::uint64_t at = 0; at < r.size && result.ok(); at += page_size) {
                auto hpa = host_->alloc_page();
                if (!hpa) {
                    result = hpa.err();
                } else if (run.size && *hpa == run.pa + run.size) {
                    run.size += page_size;
                } else {
                    if (run.size) result = tx.map(run.va, run.pa, run.size, attrs, page_size);
                    if (result.ok()) {
                        run = {r.base + at, *hpa, page_size, 1, {}};
                    } else {
                        host_->free_page(*hpa);
                    }
                }
            }
            if (result.ok() && run.size) {
                result = tx.map(run.va, run.pa, run.size, attrs, page_size);
                if (result.ok()) run.size = 0;
            }
        }
        if (result.ok()) {
            regions_.insert(r);
            hits_ = {};  // pages remembered as unbacked are backed now
            return {};
        }
        for (std::uint64_t at = 0; at < run.size; at += page_size) host_->free_page(run.pa + at);
        release_backing(r.base, r.last());
        return result;
    }

    // Frees the backing pages of [first, last] and drops them from the backing map.
    void release_backing(std::uint64_t first, std::uint64_t last) {
        hits_ = {};
        ++generation_;
        if (!backing_.root()) return;
        backing_.for_each_mapping([&](const mapping& m) {
            if (m.va < first || m.va > last) return;
            for (std::uint64_t at = 0; at < m.size; at += page_size) host_->free_page(m.pa + at);
        });
        if (first != 0 || last != ~std::uint64_t{0}) {
            auto tx = backing_.begin();
            (void)tx.unmap(first, last - first + 1);  // cannot fail: there are no large pages to split
        }
    }

    enum class unbacked_first_touch : bool { back, leave };

    // Checks every page first (pass 0), then copies (pass 1): a failing range changes nothing.
    // A range within one page has nothing partial to leave: checked and copied in one pass.
    template <class Copy>
    status copy_pages(std::uint64_t gpa, std::size_t size, bool write, bool rom_ok, Copy&& copy,
                      unbacked_first_touch unbacked = unbacked_first_touch::back) const {
        if (size == 0) return {};
        if (gpa + (size - 1) < gpa) return fail(errc::out_of_range, "guest-physical range wraps");
        const bool one_page = (gpa & page_offset_mask) + size <= page_size;
        for (int pass = one_page ? 1 : 0; pass < 2; ++pass) {
            for (std::size_t done = 0; done < size;) {
                const std::uint64_t at = gpa + done;
                const std::size_t in_page = page_size - (at & page_offset_mask);
                const std::size_t chunk = size - done < in_page ? size - done : in_page;
                const std::size_t offset = done;
                done += chunk;
                if (unbacked == unbacked_first_touch::leave && !backing_.translate(at & ~page_offset_mask)) {
                    const guest_region* r = regions_.find(at);
                    if (r && r->kind == region_kind::ram && r->backing == ram_backing::first_touch) continue;
                }
                void* p = host_pointer(at, write && !rom_ok);  // ROM's backing is host RAM
                if (!p) return describe_failure(at, write);
                if (pass == 1) copy(p, offset, chunk);
            }
        }
        return {};
    }

    status describe_failure(std::uint64_t gpa, bool write) const {
        const guest_region* r = find(gpa);
        if (!r) return fail(errc::fault, "guest-physical address in a hole");
        if (r->kind == region_kind::mmio) return fail(errc::fault, "guest-physical address is MMIO");
        if (r->kind == region_kind::ram) return fail(errc::no_memory, "no host page left to back guest RAM");
        if (write) return fail(errc::permission, "write to guest ROM");
        return fail(errc::fault, "guest-physical address not backed");
    }

    struct backing_hit {
        std::uint64_t page = ~std::uint64_t{0};
        std::uint64_t pa = 0;
        bool writable = false;
        bool backed = false;  // false: a hole or MMIO (no backing page)
    };

    M* host_;
    std::uint64_t gpa_limit_;
    region_map regions_;
    backing_table backing_;
    mutable std::array<backing_hit, 16> hits_{};
    std::uint64_t generation_ = 0;
    std::uint64_t first_touch_pages_ = 0;
};

// Table memory inside a guest's RAM: lets the one builder write a guest's own page
// tables (for in-guest tests and firmware setup). Pages come from [gpa, gpa + size).
template <table_memory M>
class guest_table_pool {
public:
    guest_table_pool(guest_memory<M>& guest, std::uint64_t gpa, std::uint64_t size)
        : guest_{&guest}, next_{gpa}, end_{gpa + size} {}

    void* host_pointer(std::uint64_t gpa, bool for_write) { return guest_->host_pointer(gpa, for_write); }

    [[nodiscard]] result<std::uint64_t> alloc_page() {
        std::uint64_t gpa;
        if (free_count_) {
            gpa = free_head_;
            free_head_ = load_entry<std::uint64_t>(guest_->host_pointer(gpa, true));
            --free_count_;
        } else if (next_ < end_) {
            gpa = next_;
            next_ += page_size;
        } else {
            return fail(errc::no_memory, "guest table pool exhausted");
        }
        void* p = guest_->host_pointer(gpa, true);
        if (!p) return fail(errc::fault, "guest table pool outside guest RAM");
        __builtin_memset(p, 0, page_size);
        return gpa;
    }

    void free_page(std::uint64_t gpa) {
        store_entry<std::uint64_t>(guest_->host_pointer(gpa, true), free_head_);
        free_head_ = gpa;
        ++free_count_;
    }

private:
    guest_memory<M>* guest_;
    std::uint64_t next_;
    std::uint64_t end_;
    std::uint64_t free_head_ = 0;
    std::size_t free_count_ = 0;
};

} // namespace hv::mmu
