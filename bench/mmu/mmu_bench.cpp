// mmu benchmarks: translations per second through each walker mode, mapping and
// unmapping 1 GiB with 4 KiB / large pages, and page-table bytes per mapped GiB.
// Tables live in a host arena reached through direct_map_memory, as on metal.
#include <benchmark/benchmark.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "bench/common/arena_allocator.hpp"
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/page_table.hpp"

using namespace hv::mmu;

namespace {

constexpr std::uint64_t KiB4 = 0x1000, MiB2 = 0x20'0000, GiB = 0x4000'0000;

using hv::bench::arena_allocator;

using host_memory = direct_map_memory<page_allocator_ref>;

struct host_tables {
    explicit host_tables(std::size_t bytes = 16 << 20) : arena{bytes} {}
    arena_allocator arena;
    host_memory memory{page_allocator_ref::to(arena), arena.host_minus_physical()};
};

page_attrs rw() {
    page_attrs a;
    a.write = true;
    a.execute = true;
    a.user = true;
    return a;
}

std::vector<std::uint64_t> random_addresses(std::uint64_t base, std::uint64_t size) {
    std::mt19937_64 rng(1);
    std::vector<std::uint64_t> out(1 << 16);
    for (auto& a : out) a = base + rng() % size;
    return out;
}

// Builder-walker translation: 1 GiB mapped with `page` pages, random addresses.
template <class F>
void translate_bench(benchmark::State& state, const F& format, std::uint64_t va, std::uint64_t page) {
    host_tables h;
    page_table<F, host_memory> pt(format, h.memory);
    if (!pt.init().ok()) return state.SkipWithError("init");
    {
        auto tx = pt.begin();
        if (!tx.map(va, GiB, GiB, rw(), page).ok()) return state.SkipWithError("map");
    }
    const auto addresses = random_addresses(va, GiB);
    std::size_t i = 0;
    for (auto _ : state) {
        auto t = pt.translate(addresses[i++ & (addresses.size() - 1)]);
        benchmark::DoNotOptimize(t);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_translate_x86_64_4k(benchmark::State& s) { translate_bench(s, x86_64_format{}, 0xffff'8000'0000'0000, KiB4); }
void BM_translate_x86_64_2m(benchmark::State& s) { translate_bench(s, x86_64_format{}, 0xffff'8000'0000'0000, MiB2); }
void BM_translate_ept_4k(benchmark::State& s) { translate_bench(s, ept_format{}, GiB, KiB4); }
void BM_translate_npt_4k(benchmark::State& s) { translate_bench(s, npt_format(), GiB, KiB4); }
void BM_translate_pae_4k(benchmark::State& s) { translate_bench(s, pae_format{}, GiB, KiB4); }
void BM_translate_legacy32_4k(benchmark::State& s) { translate_bench(s, legacy32_format{}, GiB, KiB4); }
BENCHMARK(BM_translate_x86_64_4k);
BENCHMARK(BM_translate_x86_64_2m);
BENCHMARK(BM_translate_ept_4k);
BENCHMARK(BM_translate_npt_4k);
BENCHMARK(BM_translate_pae_4k);
BENCHMARK(BM_translate_legacy32_4k);

// Guest-virtual translation through the guest's own tables in guest RAM (every table
// access goes through the guest's backing map), 4 KiB pages over 16 MiB.
template <class F>
void guest_walk_bench(benchmark::State& state, const F& format, paging_mode mode, std::uint64_t va,
                      bool set_accessed_dirty) {
    host_tables h(40 << 20);
    guest_memory<host_memory> g(h.memory);
    if (!g.init().ok() || !g.add_ram(0, 32 << 20).ok()) return state.SkipWithError("guest");
    guest_table_pool<host_memory> pool(g, 24 << 20, 8 << 20);
    page_table<F, guest_table_pool<host_memory>> pt(format, pool);
    if (!pt.init().ok()) return state.SkipWithError("init");
    {
        auto tx = pt.begin();
        if (!tx.map(va, 8 << 20, 16 << 20, rw(), KiB4).ok()) return state.SkipWithError("map");
    }
    guest_paging regs;
    regs.cr0 = 1 | cr0::pg | cr0::wp;
    regs.cr3 = pt.root();
    regs.cr4 = mode == paging_mode::legacy32 ? 0 : cr4::pae;
    regs.efer = (mode == paging_mode::legacy32 ? 0 : efer::nxe) |
                (mode == paging_mode::four_level ? efer::lme | efer::lma : 0);
    if (mode == paging_mode::off) regs.cr0 = 1;
    regs.cpl = 3;
    const auto addresses = random_addresses(va, 16 << 20);
    std::size_t i = 0;
    const guest_access access{access_kind::write, false, set_accessed_dirty};
    for (auto _ : state) {
        auto r = translate_gva(g, regs, {}, addresses[i++ & (addresses.size() - 1)], access);
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_guest_walk_off(benchmark::State& s) { guest_walk_bench(s, x86_64_format{}, paging_mode::off, 0x100'0000, false); }
void BM_guest_walk_legacy32(benchmark::State& s) { guest_walk_bench(s, legacy32_format{}, paging_mode::legacy32, 0x4000'0000, false); }
void BM_guest_walk_pae(benchmark::State& s) { guest_walk_bench(s, pae_format{}, paging_mode::pae, 0x4000'0000, false); }
void BM_guest_walk_4level(benchmark::State& s) { guest_walk_bench(s, x86_64_format{}, paging_mode::four_level, 0xffff'8000'0000'0000, false); }
void BM_guest_walk_4level_set_ad(benchmark::State& s) { guest_walk_bench(s, x86_64_format{}, paging_mode::four_level, 0xffff'8000'0000'0000, true); }
BENCHMARK(BM_guest_walk_off);
BENCHMARK(BM_guest_walk_legacy32);
BENCHMARK(BM_guest_walk_pae);
BENCHMARK(BM_guest_walk_4level);
BENCHMARK(BM_guest_walk_4level_set_ad);

// Mapping / unmapping 1 GiB in one batch with pages up to state.range(0) bytes.
template <class F>
void map_bench(benchmark::State& state, const F& format, bool time_unmap) {
    host_tables h;
    page_table<F, host_memory> pt(format, h.memory);
    if (!pt.init().ok()) return state.SkipWithError("init");
    const std::uint64_t page = std::uint64_t(state.range(0));
    std::size_t table_bytes = 0;
    for (auto _ : state) {
        if (time_unmap) state.PauseTiming();
        {
            auto tx = pt.begin();
            if (!tx.map(GiB, 4 * GiB, GiB, rw(), page).ok()) return state.SkipWithError("map");
        }
        table_bytes = pt.table_pages() * KiB4;
        if (time_unmap) state.ResumeTiming();
        else state.PauseTiming();
        {
            auto tx = pt.begin();
            if (!tx.unmap(GiB, GiB).ok()) return state.SkipWithError("unmap");
        }
        if (!time_unmap) state.ResumeTiming();
    }
    state.counters["table_bytes_per_GiB"] = double(table_bytes);
    state.counters["pages_per_s"] = benchmark::Counter(double(GiB / page), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_map_1GiB_x86_64(benchmark::State& s) { map_bench(s, x86_64_format{}, false); }
void BM_unmap_1GiB_x86_64(benchmark::State& s) { map_bench(s, x86_64_format{}, true); }
void BM_map_1GiB_ept(benchmark::State& s) { map_bench(s, ept_format{}, false); }
void BM_unmap_1GiB_ept(benchmark::State& s) { map_bench(s, ept_format{}, true); }
BENCHMARK(BM_map_1GiB_x86_64)->Arg(KiB4)->Arg(MiB2)->Arg(GiB)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_unmap_1GiB_x86_64)->Arg(KiB4)->Arg(MiB2)->Arg(GiB)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_map_1GiB_ept)->Arg(KiB4)->Arg(MiB2)->Arg(GiB)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_unmap_1GiB_ept)->Arg(KiB4)->Arg(MiB2)->Arg(GiB)->Unit(benchmark::kMicrosecond);

// One 4 KiB re-protection in a 1 GiB range of 4 KiB pages: the dirty-logging pattern.
void BM_protect_one_page(benchmark::State& state) {
    host_tables h;
    page_table<ept_format, host_memory> pt(ept_format{}, h.memory);
    if (!pt.init().ok()) return state.SkipWithError("init");
    {
        auto tx = pt.begin();
        if (!tx.map(0, 4 * GiB, GiB, rw(), KiB4).ok()) return state.SkipWithError("map");
    }
    page_attrs ro = rw();
    ro.write = false;
    const auto addresses = random_addresses(0, GiB);
    std::size_t i = 0;
    for (auto _ : state) {
        const std::uint64_t page = addresses[i & (addresses.size() - 1)] & ~(KiB4 - 1);
        auto tx = pt.begin();
        benchmark::DoNotOptimize(tx.protect(page, KiB4, i++ % 2 ? ro : rw(), KiB4));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_protect_one_page);

} // namespace

BENCHMARK_MAIN();
