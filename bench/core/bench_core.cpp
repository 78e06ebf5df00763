// Host benchmarks of the runtime's hot helpers: formatting and page allocation.
#include <benchmark/benchmark.h>
#include <vector>
#include "libhv/core/format.hpp"
#include "libhv/mem/page_allocator.hpp"

static void BM_format_exit_line(benchmark::State& state) {
    char buf[128];
    std::uint64_t rip = 0xffffffff81000000;
    for (auto _ : state) {
        auto n = hv::fmt::format_to(buf, sizeof buf, "exit {} rip={:#018x} qual={:#x}", 30, rip++, 0x1f0);
        benchmark::DoNotOptimize(n);
    }
}
BENCHMARK(BM_format_exit_line);

static void BM_page_alloc_free(benchmark::State& state) {
    std::vector<std::uint64_t> bits(16384);  // 4 GiB of frames
    hv::mem::page_allocator pa;
    pa.init(bits);
    pa.add_free(1 << 20, 1ull << 30);
    for (auto _ : state) {
        auto p = pa.alloc();
        benchmark::DoNotOptimize(p);
        (void)pa.free(*p);
    }
}
BENCHMARK(BM_page_alloc_free);

static void BM_page_alloc_2mib_run(benchmark::State& state) {
    std::vector<std::uint64_t> bits(16384);
    hv::mem::page_allocator pa;
    pa.init(bits);
    pa.add_free(1 << 20, 1ull << 30);
    for (auto _ : state) {
        auto p = pa.alloc(512, 512);
        benchmark::DoNotOptimize(p);
        (void)pa.free(*p, 512);
    }
}
BENCHMARK(BM_page_alloc_2mib_run);

BENCHMARK_MAIN();
