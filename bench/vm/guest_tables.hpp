// Page tables a 64-bit test guest runs on, built by the hypervisor inside the guest's own
// RAM with the one builder: an identity map of [0, size) in 2 MiB pages (no 1 GiB pages:
// QEMU's default CPU lacks them; no NX: the guests run without EFER.NXE).
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/page_table.hpp"
#include "libhv/vm/guest.hpp"

namespace hv::vm::test {

class identity_tables {
public:
    // The tables take their pages from guest RAM [pool_gpa, pool_gpa + pool_size).
    identity_tables(guest_ram& ram, std::uint64_t pool_gpa, std::uint64_t pool_size)
        : pool_{ram, pool_gpa, pool_size}, tables_{format(), pool_} {}

    [[nodiscard]] status build(std::uint64_t size) {
        HV_TRY(tables_.init());
        mmu::page_attrs a;
        a.write = true;
        a.execute = true;
        auto tx = tables_.begin();
        return tx.map(0, 0, size, a, std::uint64_t{2} << 20);
    }
    // The guest's CR3.
    [[nodiscard]] std::uint64_t root() const { return tables_.root(); }

private:
    static constexpr mmu::x86_64_format format() {
        mmu::x86_64_format f;
        f.nx = false;
        f.gbpages = false;
        return f;
    }
    mmu::guest_table_pool<host_memory> pool_;
    mmu::page_table<mmu::x86_64_format, mmu::guest_table_pool<host_memory>> tables_;
};

} // namespace hv::vm::test
