// Host-side cost of the exit path's portable parts: decoding raw exit information,
// logging it, dispatching through a vCPU's loop (including the fiber switch when a
// handler yields), the NRIPS-less instruction-length decoder and the entry checks.
#include <benchmark/benchmark.h>
#include <vector>
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/svm/insn_len.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/cpu/vmx/entry_check.hpp"
#include "libhv/cpu/vmx/setup.hpp"
#include "libhv/cpu/vmx/exit.hpp"
#include "tests/unit/cpu/bochs_caps.hpp"

using namespace hv::cpu;

static void decode_vmx_io(benchmark::State& st) {
    vmx_exit_raw raw{};
    raw.reason = static_cast<std::uint32_t>(hv::vmx::exit_reason::io_instruction);
    raw.qualification = 0x3f8ull << 16 | 1u << 4 | 1u << 5;
    raw.instruction_length = 2;
    for (auto _ : st) {
        benchmark::DoNotOptimize(raw);
        auto e = decode(raw);
        benchmark::DoNotOptimize(e);
    }
}
BENCHMARK(decode_vmx_io);

static void decode_svm_npf(benchmark::State& st) {
    svm_exit_raw raw{};
    raw.exitcode = 0x400;
    raw.exitinfo1 = 1ull << 32 | 2;
    raw.exitinfo2 = 0xfee00000;
    for (auto _ : st) {
        benchmark::DoNotOptimize(raw);
        auto e = decode(raw);
        benchmark::DoNotOptimize(e);
    }
}
BENCHMARK(decode_svm_npf);

static void exit_log_record(benchmark::State& st) {
    exit_log log;
    vmx_exit_raw raw{};
    raw.reason = static_cast<std::uint32_t>(hv::vmx::exit_reason::cpuid);
    auto e = decode(raw);
    for (auto _ : st) {
        log.record(e);
        benchmark::ClobberMemory();
    }
    st.counters["total"] = static_cast<double>(log.total());
}
BENCHMARK(exit_log_record);

static void insn_length_invlpg_sib(benchmark::State& st) {
    const std::uint8_t bytes[] = {0x67, 0x0f, 0x01, 0xbc, 0x88, 1, 2, 3, 4};
    for (auto _ : st) {
        benchmark::DoNotOptimize(bytes);
        auto r = hv::svm::instruction_length(bytes, hv::svm::code_mode::m64);
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(insn_length_invlpg_sib);

static void vmx_entry_checks(benchmark::State& st) {
    using namespace hv::vmx;
    auto caps = decode(bochs::skylake_x);
    requests r{};
    r[control_set::proc] = {bits(proc::hlt_exiting), 0};
    r[control_set::proc2] = {bits(proc2::ept, proc2::unrestricted_guest), 0};
    r[control_set::exit] = {bits(exit_ctl::host_address_space_size), 0};
    auto d = derive_all(caps, r);
    vmcs_image v;
    put_controls(v, *d);
    v.set(field::ept_pointer, 0x301e);
    host_state h{};
    h.cr0 = 0x80000033;
    h.cr4 = 0x2020;
    h.cs = 8;
    h.tr = 0x18;
    put_host(v, h);
    put_guest(v, initial_state(guest_mode::long64, 0x100000, 0x2000), caps);
    entry_context cx{&caps, 39};
    if (!check_entry(v, cx).passed) st.SkipWithError("image does not pass");
    for (auto _ : st) {
        auto res = check_entry(v, cx);
        benchmark::DoNotOptimize(res);
    }
}
BENCHMARK(vmx_entry_checks);

// The vCPU loop against a backend whose "guest" exits with CPUID forever: measures
// decision + logging + dispatch + skip per exit, and with yielding, the fiber switch.
namespace {
struct loop_arch { std::uint64_t exits = 0, limit = 0; };
void loop_enter(vcpu& v, const event_queue::decision*, exit_info& e) {
    auto* a = static_cast<loop_arch*>(v.arch());
    (void)v.take_dirty();
    e.reason = ++a->exits >= a->limit ? exit_reason::hypercall : exit_reason::cpuid;
    e.rip = v.state.rip;
    e.instruction_length = 2;
}
constexpr backend_ops loop_ops{[](vcpu&) { return hv::status{}; }, run_once<loop_enter>,
                               [](const vcpu&) { return true; },
                               [](vcpu&) { return hv::result<std::uint8_t>(std::uint8_t{2}); },
                               [](vcpu&, unsigned) { return std::uint64_t{0}; },
                               [](vcpu&, unsigned, std::uint64_t) { return hv::status{}; },
                               [](vcpu&) {}, [](vcpu&) {}};
void run_loop_bench(benchmark::State& st, bool yield) {
    std::vector<char> stack(64 * 1024);
    for (auto _ : st) {
        loop_arch a{0, static_cast<std::uint64_t>(st.range(0))};
        vcpu v;
        v.init(0, loop_ops, &a, stack.data(), stack.size());
        if (yield) v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) { x.skip(); x.request_yield(); });
        else v.on(exit_reason::cpuid, [](vcpu& x, const exit_info&) { x.skip(); });
        v.on(exit_reason::hypercall, [](vcpu& x, const exit_info&) { x.stop(); });
        scheduler s;
        (void)s.add(v);
        s.run();
    }
    st.SetItemsProcessed(st.iterations() * st.range(0));
}
} // namespace
static void vcpu_loop_cpuid(benchmark::State& st) { run_loop_bench(st, false); }
static void vcpu_loop_cpuid_yield(benchmark::State& st) { run_loop_bench(st, true); }
BENCHMARK(vcpu_loop_cpuid)->Arg(1000);
BENCHMARK(vcpu_loop_cpuid_yield)->Arg(1000);

BENCHMARK_MAIN();
