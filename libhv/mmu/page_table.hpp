// The one page-table builder: map, unmap and re-protect ranges in any format over any
// table memory, with the largest pages the range allows.
//
// Every change runs twice over the same traversal: first counting the tables it will
// need (so a failed allocation leaves the tables untouched), then, with those tables
// reserved, changing entries; that second pass cannot fail.
//
//   map      a whole slot that fits a leaf of this level gets the leaf (dropping any
//            subtree below it); otherwise the slot gets a table (new or split from
//            its large page) and the range goes down one level.
//   unmap    whole slots are cleared (a subtree below is emptied and freed); partial
//            large pages are split; a table left empty is freed.
//   protect  whole leaves are re-encoded keeping address and A/D; partial large
//            pages are split.
//   map and protect then merge a table whose entries became one large page.
//
// TLB: a batch collects every range whose present translation changed and issues one
// request through the page table's hook at commit. Dropped tables are freed only after
// that request, since paging-structure caches may still point at them.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include "libhv/core/result.hpp"
#include "libhv/mmu/format.hpp"
#include "libhv/mmu/memory.hpp"
#include "libhv/mmu/tlb.hpp"
#include "libhv/mmu/walk.hpp"

namespace hv::mmu {

struct mapping {
    std::uint64_t va;
    std::uint64_t pa;
    std::uint64_t size;
    unsigned level;
    page_attrs attrs;
};

inline constexpr std::uint64_t any_page_size = ~std::uint64_t{0};

template <page_format F, table_memory M>
class page_table {
public:
    using entry_type = typename F::entry_type;
    class batch;

    page_table(const F& format, M& memory, tlb_hook hook = {}) : f_{format}, mem_{&memory}, hook_{hook} {}
    page_table(const page_table&) = delete;
    page_table& operator=(const page_table&) = delete;
    ~page_table() { release(); }

    // Allocates the (empty) root table.
    [[nodiscard]] status init() {
        if (root_) return fail(errc::exists, "page table already initialised");
        auto pa = mem_->alloc_page();
        HV_TRY(pa);
        if (!f_.table_page_ok(*pa, true)) {
            mem_->free_page(*pa);
            return fail(errc::out_of_range, "root table page above the format's limit");
        }
        root_ = *pa;
        tables_ = 1;
        return {};
    }

    // Frees every table. Only once no CPU can walk them any more.
    void release() {
        if (!root_) return;
        free_subtree(root_, F::levels);
        root_ = 0;
    }

    [[nodiscard]] std::uint64_t root() const { return root_; }
    [[nodiscard]] const F& format() const { return f_; }
    [[nodiscard]] std::size_t table_pages() const { return tables_; }
    [[nodiscard]] M& memory() const { return *mem_; }

    [[nodiscard]] std::optional<translation> translate(std::uint64_t va) const {
        return mmu::translate(f_, *mem_, root_, va);
    }

    // Calls fn(const mapping&) for every present leaf, in address order.
    template <class Fn>
    void for_each_mapping(Fn&& fn) const {
        if (root_) visit_leaves(root_, F::levels, 0, fn);
    }

    [[nodiscard]] batch begin() { return batch{*this}; }

private:
    entry_type* table_pointer(std::uint64_t table) const {
        void* p = mem_->host_pointer(table, true);
        if (!p) __builtin_trap();  // a table we built has vanished from its memory
        return static_cast<entry_type*>(p);
    }

    void free_subtree(std::uint64_t table, unsigned level) {
        if (level > 1) {
            entry_type* t = table_pointer(table);
            for (unsigned i = 0; i < F::entries(level); ++i) {
                const entry_type e = load_entry<entry_type>(t + i);
                if (f_.present(e) && !f_.is_leaf(e, level)) free_subtree(f_.table_address(e), level - 1);
            }
        }
        mem_->free_page(table);
        --tables_;
    }

    template <class Fn>
    void visit_leaves(std::uint64_t table, unsigned level, std::uint64_t base, Fn& fn) const {
        const entry_type* t = table_pointer(table);
        for (unsigned i = 0; i < F::entries(level); ++i) {
            const entry_type e = load_entry<entry_type>(t + i);
            if (!f_.present(e)) continue;
            const std::uint64_t va = base + (std::uint64_t{i} << F::shift(level));
            if (f_.is_leaf(e, level))
                fn(mapping{f_.input_address(va), f_.leaf_address(e, level), level_size<F>(level), level,
                           f_.leaf_attrs(e, level)});
            else
                visit_leaves(f_.table_address(e), level - 1, va, fn);
        }
    }

    F f_;
    M* mem_;
    tlb_hook hook_;
    std::uint64_t root_ = 0;
    std::size_t tables_ = 0;
};

template <page_format F, table_memory M>
class page_table<F, M>::batch {
public:
    explicit batch(page_table& pt) : pt_{pt} {}
    batch(const batch&) = delete;
    batch& operator=(const batch&) = delete;
    ~batch() { commit(); }

    // Maps [va, va+size) to [pa, pa+size) with pages no larger than max_page.
    [[nodiscard]] status map(std::uint64_t va, std::uint64_t pa, std::uint64_t size, const page_attrs& attrs,
                             std::uint64_t max_page = any_page_size) {
        HV_TRY(check_range(va, size));
        HV_TRY(pt_.f_.check(attrs));
        if (!page_aligned(pa) || pa + (size - 1) < pa || pa + (size - 1) >= pt_.f_.output_limit())
            return fail(errc::out_of_range, "physical range not mappable by this format");
        return run(va, size, {op_kind::map, pa - va, attrs, leaf_level_limit(max_page)});
    }

    [[nodiscard]] status unmap(std::uint64_t va, std::uint64_t size) {
        HV_TRY(check_range(va, size));
        return run(va, size, {op_kind::unmap, 0, {}, 1});
    }

    // New attributes for every mapped page in the range (unmapped parts are skipped);
    // addresses and the hardware-owned A/D bits stay.
    [[nodiscard]] status protect(std::uint64_t va, std::uint64_t size, const page_attrs& attrs,
                                 std::uint64_t max_page = any_page_size) {
        HV_TRY(check_range(va, size));
        HV_TRY(pt_.f_.check(attrs));
        return run(va, size, {op_kind::protect, 0, attrs, leaf_level_limit(max_page)});
    }

    // Issues the TLB request (if any) and then frees the dropped tables.
    void commit() { flush_and_free(); }

    [[nodiscard]] const tlb_flush& pending_flush() const { return flush_; }
    [[nodiscard]] std::size_t flushes_issued() const { return flushes_; }

private:
    enum class op_kind : std::uint8_t { map, unmap, protect };
    struct operation {
        op_kind kind;
        std::uint64_t delta;  // map: pa - va
        page_attrs attrs;
        unsigned max_leaf_level;
    };
    struct dropped_table {
        std::uint64_t pa;
        unsigned level;
    };
    static constexpr std::size_t max_dropped_live = 16;

    unsigned leaf_level_limit(std::uint64_t max_page) const {
        unsigned level = 1;
        while (level < F::levels && pt_.f_.leaf_allowed(level + 1) && level_size<F>(level + 1) <= max_page) ++level;
        return level;
    }

    status check_range(std::uint64_t va, std::uint64_t size) const {
        if (!pt_.root_) return fail(errc::invalid_argument, "page table not initialised");
        const std::uint64_t last = va + (size - 1);
        if (size == 0 || !page_aligned(va) || !page_aligned(size) || last < va || !pt_.f_.input_ok(va, last))
            return fail(errc::out_of_range, "address range not translatable by this format");
        return {};
    }

    status run(std::uint64_t va, std::uint64_t size, const operation& o) {
        const std::uint64_t last = va + (size - 1);
        HV_TRY(reserve(apply<true>(pt_.root_, F::levels, va, last, o)));
        apply<false>(pt_.root_, F::levels, va, last, o);
        release_reserve();
        return {};
    }

    // Counting: returns the tables the change needs. Otherwise: makes the change.
    template <bool Counting>
    std::size_t apply(std::uint64_t table, unsigned level, std::uint64_t first, std::uint64_t last,
                      const operation& o) {
        entry_type* t = pt_.table_pointer(table);
        const std::uint64_t size = level_size<F>(level);
        std::size_t needed = 0;
        std::uint64_t slot_first = first & ~(size - 1);
        for (unsigned i = level_index<F>(first, level);; ++i, slot_first += size) {
            const std::uint64_t slot_last = slot_first + (size - 1);
            const std::uint64_t lo = slot_first < first ? first : slot_first;
            const std::uint64_t hi = slot_last > last ? last : slot_last;
            needed += apply_slot<Counting>(t + i, level, slot_first, lo, hi, o);
            if (hi == last) return needed;
        }
    }

    template <bool Counting>
    std::size_t apply_slot(entry_type* slot, unsigned level, std::uint64_t slot_first, std::uint64_t lo,
                           std::uint64_t hi, const operation& o) {
        const F& f = pt_.f_;
        const bool whole = lo == slot_first && hi == slot_first + (level_size<F>(level) - 1);
        entry_type e = load_entry<entry_type>(slot);
        const bool present = f.present(e);
        const bool leaf = present && f.is_leaf(e, level);
        switch (o.kind) {
        case op_kind::map:
            if (whole && leaf_fits(o, level, slot_first)) {
                if constexpr (!Counting)
                    set_leaf(slot, e, f.make_leaf(slot_first + o.delta, level, o.attrs), level, lo, hi);
                return 0;
            }
            break;
        case op_kind::unmap:
            if (!present) return 0;
            if (whole) {
                if constexpr (!Counting) clear_slot(slot, e, level, lo, hi);
                return 0;
            }
            break;
        case op_kind::protect:
            if (!present) return 0;
            if (whole && leaf) {
                if constexpr (!Counting) reprotect(slot, e, level, o.attrs, lo, hi);
                return 0;
            }
            break;
        }
        // The change reaches below this slot, so the slot needs a table.
        std::uint64_t child;
        if (present && !leaf) {
            child = f.table_address(e);
        } else if constexpr (Counting) {
            return 1 + virtual_tables(level - 1, lo, hi, o);
        } else {
            child = present ? split(slot, e, level) : link_new_table(slot, level);
        }
        const std::size_t needed = apply<Counting>(child, level - 1, lo, hi, o);
        if constexpr (!Counting) {
            if (o.kind == op_kind::unmap)
                drop_if_empty(slot, level);
            else
                try_merge(slot, level, slot_first, o);
        }
        return needed;
    }

    bool leaf_fits(const operation& o, unsigned level, std::uint64_t slot_first) const {
        return level <= o.max_leaf_level && pt_.f_.leaf_allowed(level) &&
               ((slot_first + o.delta) & (level_size<F>(level) - 1)) == 0;
    }

    // Tables needed below a table that does not exist yet: one about to be created
    // empty (map) or split from a large page (map, unmap, protect). Both cost the same:
    // a partly covered slot needs a table; a wholly covered one needs one only when
    // mapping and its leaf does not fit. All whole slots of a level fit alike.
    std::size_t virtual_tables(unsigned level, std::uint64_t first, std::uint64_t last, const operation& o) const {
        const std::uint64_t size = level_size<F>(level);
        const std::uint64_t head = first & ~(size - 1);
        const std::uint64_t tail = last & ~(size - 1);
        auto part = [&](std::uint64_t lo, std::uint64_t hi) -> std::size_t {
            const bool whole = lo == (lo & ~(size - 1)) && hi == (lo & ~(size - 1)) + (size - 1);
            if (whole && (o.kind != op_kind::map || leaf_fits(o, level, lo))) return 0;
            return 1 + virtual_tables(level - 1, lo, hi, o);
        };
        if (head == tail) return part(first, last);
        std::size_t needed = part(first, head + (size - 1)) + part(tail, last);
        const std::uint64_t middle = (tail - head) / size - 1;
        if (middle) needed += middle * part(head + size, head + size + (size - 1));
        return needed;
    }

    void note(std::uint64_t lo, std::uint64_t hi) { flush_.add(lo, hi); }

    void set_leaf(entry_type* slot, entry_type old, entry_type leaf, unsigned level, std::uint64_t lo,
                  std::uint64_t hi) {
        const F& f = pt_.f_;
        if (f.present(old) && f.is_leaf(old, level) && ((old ^ leaf) & ~F::status_bits) == 0) return;
        store_entry(slot, leaf);
        if (!f.present(old)) return;  // nothing was cached for a not-present entry
        if (!f.is_leaf(old, level)) drop_live(f.table_address(old), level - 1);
        note(lo, hi);
    }

    void clear_slot(entry_type* slot, entry_type old, unsigned level, std::uint64_t lo, std::uint64_t hi) {
        store_entry<entry_type>(slot, 0);
        if (!pt_.f_.is_leaf(old, level)) clear_subtree(pt_.f_.table_address(old), level - 1);
        note(lo, hi);
    }

    // Unmapping: the subtree's translations are going away, so a CPU still walking it
    // through stale caches may see them cleared early. Entry by entry, never memset:
    // a torn entry could be present with half an address.
    void clear_subtree(std::uint64_t table, unsigned level) {
        entry_type* t = pt_.table_pointer(table);
        for (unsigned i = 0; i < F::entries(level); ++i) {
            const entry_type e = load_entry<entry_type>(t + i);
            if (!pt_.f_.present(e)) continue;
            store_entry<entry_type>(t + i, 0);
            if (!pt_.f_.is_leaf(e, level)) clear_subtree(pt_.f_.table_address(e), level - 1);
        }
        free_after_flush_empty(table);
    }

    void reprotect(entry_type* slot, entry_type e, unsigned level, page_attrs attrs, std::uint64_t lo,
                   std::uint64_t hi) {
        const F& f = pt_.f_;
        for (;;) {
            const page_attrs old = f.leaf_attrs(e, level);
            attrs.accessed = old.accessed;
            attrs.dirty = old.dirty;
            const entry_type leaf = f.make_leaf(f.leaf_address(e, level), level, attrs);
            if (leaf == e) return;
            if (exchange_entry(slot, e, leaf)) break;
        }
        note(lo, hi);
    }

    // Same translations in a table of smaller pages. No flush: the TLB may hold the
    // large and the small translations side by side, and they agree.
    std::uint64_t split(entry_type* slot, entry_type e, unsigned level) {
        const F& f = pt_.f_;
        const std::uint64_t child = take_table();
        entry_type* t = pt_.table_pointer(child);
        const unsigned child_level = level - 1;
        do {
            const std::uint64_t base = f.leaf_address(e, level);
            const page_attrs attrs = f.leaf_attrs(e, level);
            for (unsigned i = 0; i < F::entries(child_level); ++i)
                store_entry(t + i, f.make_leaf(base + (std::uint64_t{i} << F::shift(child_level)), child_level, attrs));
        } while (!exchange_entry(slot, e, f.make_table(child, level)));  // lost a race with an A/D update
        return child;
    }

    std::uint64_t link_new_table(entry_type* slot, unsigned level) {
        const std::uint64_t child = take_table();
        store_entry(slot, pt_.f_.make_table(child, level));
        return child;
    }

    void drop_if_empty(entry_type* slot, unsigned level) {
        const std::uint64_t child = pt_.f_.table_address(load_entry<entry_type>(slot));
        const entry_type* t = pt_.table_pointer(child);
        for (unsigned i = 0; i < F::entries(level - 1); ++i)
            if (pt_.f_.present(load_entry<entry_type>(t + i))) return;
        // Its pages were unmapped (and noted) by this batch: that flush covers the table.
        store_entry<entry_type>(slot, 0);
        free_after_flush_empty(child);
    }

    // A table whose leaves form one aligned, contiguous run with equal attributes
    // becomes a single large leaf; A/D of the run are ORed into it.
    void try_merge(entry_type* slot, unsigned level, std::uint64_t slot_first, const operation& o) {
        const F& f = pt_.f_;
        if (level > o.max_leaf_level || !f.leaf_allowed(level)) return;
        const entry_type e = load_entry<entry_type>(slot);
        if (!f.present(e) || f.is_leaf(e, level)) return;
        const std::uint64_t child = f.table_address(e);
        const entry_type* t = pt_.table_pointer(child);
        const unsigned child_level = level - 1;
        const entry_type head = load_entry<entry_type>(t);
        if (!f.present(head) || !f.is_leaf(head, child_level)) return;
        const std::uint64_t base = f.leaf_address(head, child_level);
        if (base & (level_size<F>(level) - 1)) return;
        page_attrs attrs = f.leaf_attrs(head, child_level);
        for (unsigned i = 1; i < F::entries(child_level); ++i) {
            const entry_type c = load_entry<entry_type>(t + i);
            if (!f.present(c) || !f.is_leaf(c, child_level)) return;
            if (f.leaf_address(c, child_level) != base + (std::uint64_t{i} << F::shift(child_level))) return;
            const page_attrs a = f.leaf_attrs(c, child_level);
            if (a.without_status() != attrs.without_status()) return;
            attrs.accessed |= a.accessed;
            attrs.dirty |= a.dirty;
        }
        store_entry(slot, f.make_leaf(base, level, attrs));
        // Paging-structure caches may still point at the child: flush the slot before
        // freeing it. Its translations stay valid until then.
        drop_live(child, child_level);
        note(slot_first, slot_first + (level_size<F>(level) - 1));
    }

    // Tables are freed only after the flush. An empty table (every entry not present)
    // is chained through its entry 0: a page-aligned address there still reads as not
    // present in every format. A table that still holds live translations (merged or
    // replaced) must stay intact until the flush, so it waits in a fixed array; when
    // that fills, the batch flushes early.
    void free_after_flush_empty(std::uint64_t table) {
        store_entry(pt_.table_pointer(table), static_cast<entry_type>(empty_chain_));
        empty_chain_ = table;
        ++empty_count_;
    }

    void drop_live(std::uint64_t table, unsigned level) {
        if (live_count_ == max_dropped_live) flush_and_free();
        live_[live_count_++] = {table, level};
    }

    void flush_and_free() {
        if (flush_.scope() != flush_scope::none) {
            if (pt_.hook_.invalidate) pt_.hook_.invalidate(pt_.hook_.ctx, flush_);
            ++flushes_;
            flush_.clear();
        }
        for (std::size_t i = 0; i < live_count_; ++i) pt_.free_subtree(live_[i].pa, live_[i].level);
        live_count_ = 0;
        for (; empty_count_; --empty_count_) {
            const std::uint64_t next = load_entry<entry_type>(pt_.table_pointer(empty_chain_));
            pt_.mem_->free_page(empty_chain_);
            --pt_.tables_;
            empty_chain_ = next;
        }
    }

    // The reserve: fresh zeroed pages, not yet visible to any CPU, chained through
    // their first 8 bytes.
    status reserve(std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            auto pa = pt_.mem_->alloc_page();
            if (pa && pt_.f_.table_page_ok(*pa, false)) {
                store_entry<std::uint64_t>(pt_.table_pointer(*pa), reserve_head_);
                reserve_head_ = *pa;
                ++reserve_count_;
                ++pt_.tables_;
                continue;
            }
            if (pa) pt_.mem_->free_page(*pa);
            release_reserve();
            return pa ? fail(errc::out_of_range, "table page above the format's limit") : pa.err();
        }
        return {};
    }

    std::uint64_t take_table() {
        if (!reserve_count_) __builtin_trap();  // the counting pass undercounted
        const std::uint64_t pa = reserve_head_;
        void* p = pt_.table_pointer(pa);
        reserve_head_ = load_entry<std::uint64_t>(p);
        store_entry<std::uint64_t>(p, 0);
        --reserve_count_;
        return pa;
    }

    void release_reserve() {
        while (reserve_count_) {
            pt_.mem_->free_page(take_table());
            --pt_.tables_;
        }
    }

    page_table& pt_;
    tlb_flush flush_;
    std::size_t flushes_ = 0;
    std::array<dropped_table, max_dropped_live> live_{};
    std::size_t live_count_ = 0;
    std::uint64_t empty_chain_ = 0;
    std::size_t empty_count_ = 0;
    std::uint64_t reserve_head_ = 0;
    std::size_t reserve_count_ = 0;
};

} // namespace hv::mmu
