// A guest's linear address space as one of its vCPUs sees it, for the instruction
// emulator (insn::memory) and for copying hypercall arguments:
//
//   linear ──translate_gva (guest's CR0/CR3/CR4/EFER)──▶ guest-physical
//      RAM / ROM (read) ─▶ the backing host page
//      MMIO region      ─▶ its device (accesses of 1, 2, 4 or 8 bytes)
//      hole             ─▶ open bus: reads are all ones, writes vanish (counted)
//
// Portable: tested on the host over fake memory, used on metal by vm::guest.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include "libhv/cpu/insn/emulate.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"

namespace hv::vm {

// A device behind an MMIO region; `offset` is from the region's base. A false return
// is a device error: the access is treated like open bus and counted.
struct mmio_handler {
    void* ctx = nullptr;
    bool (*read)(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t& value) = nullptr;
    bool (*write)(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t value) = nullptr;
};

// What accesses outside RAM did (the guest cannot see hypervisor data through them).
struct stray_accesses {
    std::uint64_t hole_reads = 0, hole_writes = 0, rom_writes = 0, device_errors = 0;
    std::uint64_t last_gpa = 0;
};

template <mmu::table_memory M>
class linear_memory final : public insn::memory {
public:
    // `cache` (optional, e.g. one per vCPU) remembers translations across instances;
    // `last_device` (optional, likewise) the MMIO region of the last device access.
    linear_memory(mmu::guest_memory<M>& ram, const mmu::guest_paging& paging, const mmu::paging_features& features,
                  std::span<const mmio_handler> devices, stray_accesses& strays, mmu::gva_cache* cache = nullptr,
                  const mmu::guest_region** last_device = nullptr)
        : ram_{&ram}, paging_{paging}, features_{features}, devices_{devices}, strays_{&strays}, cache_{cache},
          last_device_{last_device} {}

    std::optional<insn::fault> read(std::uint64_t la, void* dst, unsigned n, insn::access_type a) override {
        if (a != insn::access_type::fetch && at_exit_address(la, n)) {
            read_physical(exit_gpa_, dst, n);
            return std::nullopt;
        }
        return access(la, n, a, [&](std::uint64_t gpa, unsigned at, unsigned len) {
            return read_physical(gpa, static_cast<char*>(dst) + at, len);
        });
    }
    std::optional<insn::fault> write(std::uint64_t la, const void* src, unsigned n) override {
        if (at_exit_address(la, n)) {
            write_physical(exit_gpa_, src, n);
            return std::nullopt;
        }
        return access(la, n, insn::access_type::write, [&](std::uint64_t gpa, unsigned at, unsigned len) {
            write_physical(gpa, static_cast<const char*>(src) + at, len);
        });
    }
    std::optional<insn::fault> probe(std::uint64_t la, unsigned n, insn::access_type a) override {
        return access(la, n, a, [](std::uint64_t, unsigned, unsigned) {});
    }
    const std::uint8_t* fetch_pointer(std::uint64_t la, unsigned n) override {
        if ((la & mmu::page_offset_mask) + n > mmu::page_size) return nullptr;
        const mmu::guest_access how{mmu::access_kind::execute};
        if (cache_) {
            if (const void* p = cache_->host_address(*ram_, ram_->generation(), paging_, features_, la, how))
                return static_cast<const std::uint8_t*>(p);
        }
        const mmu::gva_result t = cache_ ? cache_->translate(*ram_, ram_->generation(), paging_, features_, la, how)
                                         : mmu::translate_gva(*ram_, paging_, features_, la, how);
        if (t.status != mmu::gva_status::ok) return nullptr;
        return static_cast<const std::uint8_t*>(ram_->host_pointer(t.gpa, false));
    }

    // The host address of `la` when its 4 KiB page is guest RAM an access of kind `a`
    // may touch (translated as read()/write() would, A/D set); the page's host bytes are
    // contiguous. nullptr: a fault, a device, a hole or ROM for a write (read()/write()
    // then do what the guest's access does). For string I/O: one walk per page.
    void* host_at(std::uint64_t la, insn::access_type a) {
        mmu::guest_access how;
        how.kind = a == insn::access_type::write ? mmu::access_kind::write : mmu::access_kind::read;
        const mmu::gva_result t = cache_ ? cache_->translate(*ram_, ram_->generation(), paging_, features_, la, how)
                                         : mmu::translate_gva(*ram_, paging_, features_, la, how);
        if (t.status != mmu::gva_status::ok) return nullptr;
        return ram_->host_pointer(t.gpa, a == insn::access_type::write);
    }

    // The guest-physical address an EPT violation / nested page fault reported for a data
    // access of the instruction at RIP (its final translation, not a guest table walk),
    // and on VMX its linear address. Hardware formed it through the guest's paging with
    // the access's permissions (an RMW instruction is checked for write at its read), so
    // once emulate() says the instruction has one memory operand
    // (single_operand_instruction), the part of an operand access at the same page
    // offset (and in the same linear page, when known) is at that address: no walk.
    // Instruction fetches and string instructions always walk.
    void set_exit_address(std::uint64_t gpa, std::optional<std::uint64_t> gla) {
        exit_gpa_ = gpa;
        exit_gla_ = gla;
        has_exit_address_ = true;
    }
    void single_operand_instruction() override { use_exit_address_ = has_exit_address_; }

    // One guest-physical access of `len` bytes within one page: RAM or ROM in one copy; a
    // device or the open bus in pieces of 1, 2, 4 or 8 bytes (the largest that fit, in
    // address order), so an operand keeps its size and a device never sees 3, 5, 6 or 7.
    void read_physical(std::uint64_t gpa, void* dst, unsigned len) {
        if (const mmio_handler* d = remembered_device(gpa); d && one_piece(len)) {
            std::uint64_t value = ~std::uint64_t{0};
            if (!d->read || !d->read(d->ctx, gpa - region_base_, len, value)) note(strays_->device_errors, gpa);
            switch (len) {  // fixed sizes: moves, not a memcpy call
            case 1: __builtin_memcpy(dst, &value, 1); break;
            case 2: __builtin_memcpy(dst, &value, 2); break;
            case 4: __builtin_memcpy(dst, &value, 4); break;
            default: __builtin_memcpy(dst, &value, 8); break;
            }
            return;
        }
        read_physical_other(gpa, dst, len);
    }
    void write_physical(std::uint64_t gpa, const void* src, unsigned len) {
        if (const mmio_handler* d = remembered_device(gpa); d && one_piece(len)) {
            std::uint64_t value = 0;
            switch (len) {  // fixed sizes: moves, not a memcpy call
            case 1: __builtin_memcpy(&value, src, 1); break;
            case 2: __builtin_memcpy(&value, src, 2); break;
            case 4: __builtin_memcpy(&value, src, 4); break;
            default: __builtin_memcpy(&value, src, 8); break;
            }
            if (!d->write || !d->write(d->ctx, gpa - region_base_, len, value)) note(strays_->device_errors, gpa);
            return;
        }
        write_physical_other(gpa, src, len);
    }

private:
    // Anything but a 1/2/4/8-byte access in the remembered device region.
    [[gnu::noinline]] void read_physical_other(std::uint64_t gpa, void* dst, unsigned len) {
        if (void* p = ram_->host_pointer(gpa, false)) {
            __builtin_memcpy(dst, p, len);
            return;
        }
        bus_pieces(len, [&](unsigned at, unsigned n) {
            const std::uint64_t a = gpa + at;
            std::uint64_t value = ~std::uint64_t{0};
            if (const mmio_handler* d = device_at(a)) {
                if (!d->read || !d->read(d->ctx, a - region_base_, n, value)) note(strays_->device_errors, a);
            } else {
                note(strays_->hole_reads, a);
            }
            __builtin_memcpy(static_cast<char*>(dst) + at, &value, n);
        });
    }
    [[gnu::noinline]] void write_physical_other(std::uint64_t gpa, const void* src, unsigned len) {
        if (void* p = ram_->host_pointer(gpa, true)) {
            __builtin_memcpy(p, src, len);
            return;
        }
        bus_pieces(len, [&](unsigned at, unsigned n) {
            const std::uint64_t a = gpa + at;
            if (const mmio_handler* d = device_at(a)) {
                std::uint64_t value = 0;
                __builtin_memcpy(&value, static_cast<const char*>(src) + at, n);
                if (!d->write || !d->write(d->ctx, a - region_base_, n, value)) note(strays_->device_errors, a);
                return;
            }
            const mmu::guest_region* r = ram_->find(a);
            note(r && r->kind == mmu::region_kind::rom ? strays_->rom_writes : strays_->hole_writes, a);
        });
    }

    void note(std::uint64_t& counter, std::uint64_t gpa) {
        ++counter;
        strays_->last_gpa = gpa;
    }

    // The whole data access [la, la+n) is the operand part the exit reported (see
    // set_exit_address): no walk.
    [[nodiscard]] bool at_exit_address(std::uint64_t la, unsigned n) const {
        return use_exit_address_ && ((la ^ exit_gpa_) & mmu::page_offset_mask) == 0 &&
               (la & mmu::page_offset_mask) + n <= mmu::page_size &&
               (!exit_gla_ || ((la ^ *exit_gla_) & ~mmu::page_offset_mask) == 0);
    }

    // An access of 1, 2, 4 or 8 bytes within a page goes to a device as it is.
    static bool one_piece(unsigned len) { return len <= 8 && (len & (len - 1)) == 0; }

    // The device of the MMIO region this vCPU reached last, if it holds gpa (MMIO is never
    // RAM: no backing lookup is needed first).
    const mmio_handler* remembered_device(std::uint64_t gpa) {
        const mmu::guest_region* r = last_device_ ? *last_device_ : nullptr;
        if (!r || gpa < r->base || gpa > r->last() || r->kind != mmu::region_kind::mmio || r->device >= devices_.size())
            return nullptr;
        region_base_ = r->base;
        return &devices_[r->device];
    }

    const mmio_handler* device_at(std::uint64_t gpa) {
        // The remembered region is an entry of guest_memory's region table: it may have
        // moved since (regions added), so it counts only if it holds gpa as MMIO now.
        const mmu::guest_region* r = last_device_ ? *last_device_ : nullptr;
        if (!r || gpa < r->base || gpa > r->last() || r->kind != mmu::region_kind::mmio) {
            r = ram_->find(gpa);
            if (!r || r->kind != mmu::region_kind::mmio) return nullptr;
            if (last_device_) *last_device_ = r;
        }
        if (r->device >= devices_.size()) return nullptr;
        region_base_ = r->base;
        return &devices_[r->device];
    }

    template <class Piece>
    static void bus_pieces(unsigned len, Piece&& piece) {
        for (unsigned at = 0; at < len;) {
            unsigned n = len - at > 8 ? 8 : len - at;
            if (n & (n - 1)) n = 1u << (31 - __builtin_clz(n));
            piece(at, n);
            at += n;
        }
    }

    // Translates every page of [la, la+n) first (all or nothing), then runs `touch` on
    // the part in each page.
    template <class Touch>
    std::optional<insn::fault> access(std::uint64_t la, unsigned n, insn::access_type a, Touch&& touch) {
        mmu::guest_access how;
        how.kind = a == insn::access_type::fetch   ? mmu::access_kind::execute
                   : a == insn::access_type::read ? mmu::access_kind::read
                                                   : mmu::access_kind::write;
        struct piece {
            std::uint64_t gpa;
            unsigned at, len;
        };
        piece pieces[2]{};
        unsigned count = 0;
        for (unsigned done = 0; done < n;) {
            const std::uint64_t at = la + done;
            const unsigned in_page = static_cast<unsigned>(mmu::page_size - (at & mmu::page_offset_mask));
            const unsigned len = n - done < in_page ? n - done : in_page;
            if (use_exit_address_ && how.kind != mmu::access_kind::execute &&
                ((at ^ exit_gpa_) & mmu::page_offset_mask) == 0 &&
                (!exit_gla_ || ((at ^ *exit_gla_) & ~mmu::page_offset_mask) == 0)) {
                if (count == 2) return insn::fault{insn::vector::gp, true, 0, at};
                pieces[count++] = {exit_gpa_, done, len};
                done += len;
                continue;
            }
            const mmu::gva_result t = cache_ ? cache_->translate(*ram_, ram_->generation(), paging_, features_, at, how)
                                             : mmu::translate_gva(*ram_, paging_, features_, at, how);
            switch (t.status) {
            case mmu::gva_status::ok: break;
            case mmu::gva_status::page_fault: return insn::fault{insn::vector::pf, true, t.error_code, at};
            case mmu::gva_status::non_canonical: return insn::fault{insn::vector::gp, true, 0, at};
            case mmu::gva_status::unbacked_gpa: return insn::fault{insn::vector::gp, true, 0, at};
            }
            if (count == 2) return insn::fault{insn::vector::gp, true, 0, at};  // > one page crossing
            pieces[count++] = {t.gpa, done, len};
            done += len;
        }
        for (unsigned i = 0; i < count; ++i) touch(pieces[i].gpa, pieces[i].at, pieces[i].len);
        return std::nullopt;
    }

    mmu::guest_memory<M>* ram_;
    mmu::guest_paging paging_;
    mmu::paging_features features_;
    std::span<const mmio_handler> devices_;
    stray_accesses* strays_;
    mmu::gva_cache* cache_;
    const mmu::guest_region** last_device_;
    std::uint64_t region_base_ = 0;
    std::uint64_t exit_gpa_ = 0;
    std::optional<std::uint64_t> exit_gla_;
    bool has_exit_address_ = false, use_exit_address_ = false;
};

} // namespace hv::vm
