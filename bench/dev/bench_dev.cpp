// Host benchmarks of the device-model paths a vCPU exit takes: port dispatch, the
// interrupt injection cycle, time-derived register reads and the timer queue.
#include <benchmark/benchmark.h>
#include "libhv/dev/layout.hpp"
#include "libhv/dev/machine.hpp"

namespace {
class bench_clock final : public hv::dev::clock {
public:
    std::uint64_t now() const override { return now_; }
    std::uint64_t frequency() const override { return 2'000'000'000; }
    std::uint64_t now_ = 0;
};
} // namespace

static void BM_port_read_uart_lsr(benchmark::State& state) {
    bench_clock clk;
    hv::dev::machine m{hv::dev::machine_config::pc(1, 256 << 20), clk};
    for (auto _ : state) benchmark::DoNotOptimize(m.io_read(hv::dev::layout::com1 + 5, 1));
}
BENCHMARK(BM_port_read_uart_lsr);

static void BM_port_read_unclaimed(benchmark::State& state) {
    bench_clock clk;
    hv::dev::machine m{hv::dev::machine_config::pc(1, 256 << 20), clk};
    for (auto _ : state) benchmark::DoNotOptimize(m.io_read(0x2345, 4));
}
BENCHMARK(BM_port_read_unclaimed);

static void BM_pm_timer_read(benchmark::State& state) {
    bench_clock clk;
    hv::dev::machine m{hv::dev::machine_config::pc(1, 256 << 20), clk};
    for (auto _ : state) {
        clk.now_ += 1000;
        benchmark::DoNotOptimize(m.io_read(hv::dev::layout::acpi_pm + 8, 4));
    }
}
BENCHMARK(BM_pm_timer_read);

// The full cycle for one interrupt: IPI in, pending check, acknowledge, EOI.
static void BM_lapic_inject_cycle(benchmark::State& state) {
    bench_clock clk;
    hv::dev::machine m{hv::dev::machine_config::pc(2, 256 << 20), clk};
    hv::dev::lapic& l = m.cpu(0);
    l.mmio_write(hv::dev::layout::lapic + 0xf0, 4, 0x1ff);
    for (auto _ : state) {
        l.mmio_write(hv::dev::layout::lapic + 0x300, 4, (1u << 18) | 0x80);     // self IPI
        benchmark::DoNotOptimize(l.pending_interrupt());
        benchmark::DoNotOptimize(l.acknowledge_interrupt());
        l.mmio_write(hv::dev::layout::lapic + 0xb0, 4, 0);
    }
}
BENCHMARK(BM_lapic_inject_cycle);

static void BM_pending_interrupt_idle(benchmark::State& state) {
    bench_clock clk;
    hv::dev::machine m{hv::dev::machine_config::pc(1, 256 << 20), clk};
    for (auto _ : state) benchmark::DoNotOptimize(m.cpu(0).pending_interrupt());
}
BENCHMARK(BM_pending_interrupt_idle);

static void BM_timer_queue_arm_fire(benchmark::State& state) {
    bench_clock clk;
    hv::dev::timer_queue q{clk};
    hv::dev::timer t{[](void*, std::uint64_t) {}, nullptr};
    std::uint64_t d = 0;
    for (auto _ : state) {
        q.arm(t, ++d);
        benchmark::DoNotOptimize(q.run_expired(d));
    }
}
BENCHMARK(BM_timer_queue_arm_fire);
BENCHMARK_MAIN();
