// Shadow MMU benchmarks: one shadow page-fault fill, CR3 switches with the shadow
// cache warm and cold, and address spaces created, used and dropped in turn.
// Host and guest memory live in one arena reached through direct_map_memory, as on metal.
#include <benchmark/benchmark.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>
#include "bench/common/arena_allocator.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/shadow.hpp"

using namespace hv::mmu;

namespace {

constexpr std::uint64_t KiB4 = 0x1000;

using hv::bench::arena_allocator;

using host_memory = direct_map_memory<page_allocator_ref>;
using guest_type = guest_memory<host_memory>;

constexpr std::uint64_t rw_user = x86_pte::present | x86_pte::writable | x86_pte::user;
constexpr std::uint64_t leaf_ad = rw_user | x86_pte::accessed | x86_pte::dirty;
constexpr std::uint64_t long_mode = efer::lme | efer::lma | efer::nxe;
constexpr std::uint64_t guest_cr0 = cr0::pg | cr0::wp;
constexpr std::uint64_t space_va = 0x7f00'0000'0000;

// A guest with `spaces` 4-level address spaces, each mapping `pages` (<= 512) pages.
struct bench_guest {
    arena_allocator arena{512u << 20};
    host_memory host{page_allocator_ref::to(arena), arena.host_minus_physical()};
    guest_type guest{host};
    std::vector<std::uint64_t> cr3s;

    bench_guest(unsigned spaces, unsigned pages) {
        (void)guest.init();
        (void)guest.add_ram(0, 64u << 20);
        for (unsigned i = 0; i < spaces; ++i) {
            const std::uint64_t t = 0x10'0000 + i * 0x4000;
            put(t + 8 * ((space_va >> 39) & 511), (t + 0x1000) | rw_user);
            put(t + 0x1000 + 8 * ((space_va >> 30) & 511), (t + 0x2000) | rw_user);
            put(t + 0x2000, (t + 0x3000) | rw_user);
            for (unsigned p = 0; p < pages; ++p) put(t + 0x3000 + 8 * p, (0x200'0000 + p * KiB4) | leaf_ad);
            cr3s.push_back(t);
        }
    }
    void put(std::uint64_t gpa, std::uint64_t v) { (void)guest.write(gpa, &v, 8); }
};

template <std::size_t Max>
using mmu_type = shadow_mmu<guest_type, host_memory, Max>;

// One fill of a 4 KiB shadow leaf (upper shadow levels present): INVLPG drops it first.
void BM_fault_fill(benchmark::State& state) {
    bench_guest g(1, 512);
    auto mmu = std::make_unique<mmu_type<64>>(g.guest, g.host);
    (void)mmu->set_guest_paging(guest_cr0, g.cr3s[0], cr4::pae, long_mode);
    unsigned i = 0;
    for (auto _ : state) {
        const std::uint64_t va = space_va + (i++ & 511) * KiB4;
        mmu->invlpg(va);
        benchmark::DoNotOptimize(mmu->handle_page_fault(va, 0, 0, 0));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_fault_fill);

// CR3 switches among 16 address spaces whose shadows stay cached.
void BM_cr3_switch_warm(benchmark::State& state) {
    bench_guest g(16, 16);
    auto mmu = std::make_unique<mmu_type<256>>(g.guest, g.host);
    for (std::uint64_t cr3 : g.cr3s) {
        (void)mmu->set_guest_paging(guest_cr0, cr3, cr4::pae, long_mode);
        for (unsigned p = 0; p < 16; ++p) (void)mmu->handle_page_fault(space_va + p * KiB4, 0, 0, 0);
    }
    const std::size_t allocations = mmu->stats().allocations;
    unsigned i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(mmu->set_guest_paging(guest_cr0, g.cr3s[i++ & 15], cr4::pae, long_mode));
    state.counters["new_shadow_pages"] = double(mmu->stats().allocations - allocations);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_cr3_switch_warm);

// CR3 switches that always miss: 64 spaces round robin through a cache of 8 pages
// (each switch evicts the least recently used page and builds a root).
void BM_cr3_switch_cold(benchmark::State& state) {
    bench_guest g(64, 1);
    auto mmu = std::make_unique<mmu_type<8>>(g.guest, g.host);
    unsigned i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(mmu->set_guest_paging(guest_cr0, g.cr3s[i++ & 63], cr4::pae, long_mode));
    state.counters["evictions_per_switch"] = double(mmu->stats().evictions) / double(state.iterations());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_cr3_switch_cold);

// Address spaces created, used (16 pages faulted in) and dropped by eviction: 512
// spaces in turn through a cache bounded at range(0) shadow pages.
void BM_address_space_lifecycle(benchmark::State& state) {
    bench_guest g(512, 16);
    const auto bound = static_cast<std::size_t>(state.range(0));
    std::unique_ptr<mmu_type<64>> small;
    std::unique_ptr<mmu_type<1024>> large;
    if (bound == 64) small = std::make_unique<mmu_type<64>>(g.guest, g.host);
    else large = std::make_unique<mmu_type<1024>>(g.guest, g.host);
    unsigned i = 0;
    auto run = [&](auto& mmu) {
        (void)mmu.set_guest_paging(guest_cr0, g.cr3s[i++ & 511], cr4::pae, long_mode);
        for (unsigned p = 0; p < 16; ++p) benchmark::DoNotOptimize(mmu.handle_page_fault(space_va + p * KiB4, 0, 0, 0));
    };
    for (auto _ : state) {
        if (small) run(*small);
        else run(*large);
    }
    state.counters["evictions"] = double(small ? small->stats().evictions : large->stats().evictions);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_address_space_lifecycle)->Arg(64)->Arg(1024);

} // namespace

BENCHMARK_MAIN();
