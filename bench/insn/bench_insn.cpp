// Decode and emulate costs on the MMIO exit path (host build; the real path adds the
// VM exit and the page walk the cpu layer does inside `memory`).
#include <benchmark/benchmark.h>
#include <cstring>
#include <optional>
#include "libhv/cpu/insn/emulate.hpp"

namespace {

using namespace hv::insn;

// A device register file behind identity-mapped "MMIO", plus RAM for code.
class mmio_memory final : public memory {
public:
    std::uint8_t code[4096] = {};
    std::uint64_t code_base = 0x7000;
    std::uint32_t regs[64] = {};
    std::uint64_t mmio_base = 0xFEC00000;
    std::uint64_t writes = 0;

    std::optional<fault> read(std::uint64_t la, void* dst, unsigned n, access_type) override {
        if (la - code_base < sizeof code) {
            std::memcpy(dst, code + (la - code_base), n);
            return std::nullopt;
        }
        if (la - mmio_base + n > sizeof regs) return fault{vector::pf, true, 0, la};
        std::memcpy(dst, reinterpret_cast<std::uint8_t*>(regs) + (la - mmio_base), n);
        return std::nullopt;
    }
    std::optional<fault> write(std::uint64_t la, const void* src, unsigned n) override {
        if (la - mmio_base + n > sizeof regs) return fault{vector::pf, true, 2, la};
        std::memcpy(reinterpret_cast<std::uint8_t*>(regs) + (la - mmio_base), src, n);
        ++writes;
        return std::nullopt;
    }
    std::optional<fault> probe(std::uint64_t la, unsigned n, access_type) override {
        if (la - mmio_base + n > sizeof regs) return fault{vector::pf, true, 0, la};
        return std::nullopt;
    }
};

const std::uint8_t mov_store[] = {0x89, 0x48, 0x10};              // mov [rax+0x10], ecx
const std::uint8_t mov_load[] = {0x8B, 0x48, 0x10};               // mov ecx, [rax+0x10]
const std::uint8_t lock_or[] = {0xF0, 0x83, 0x48, 0x10, 0x01};   // lock or dword [rax+0x10], 1

void BM_decode_mov_store(benchmark::State& state) {
    for (auto _ : state) {
        auto d = decode(mov_store, mode::code64);
        benchmark::DoNotOptimize(d);
    }
}
BENCHMARK(BM_decode_mov_store);

void decode_emulate(benchmark::State& state, std::span<const std::uint8_t> bytes) {
    mmio_memory mem;
    guest_state st;
    st.gpr[0] = mem.mmio_base;
    st.gpr[1] = 0x12345678;
    for (auto _ : state) {
        st.rip = 0x7000;
        auto d = decode(bytes, mode::code64);
        auto r = emulate(*d, st, mem);
        benchmark::DoNotOptimize(r);
    }
}
void BM_decode_emulate_mov_to_mmio(benchmark::State& s) { decode_emulate(s, mov_store); }
void BM_decode_emulate_mov_from_mmio(benchmark::State& s) { decode_emulate(s, mov_load); }
void BM_decode_emulate_lock_or_mmio(benchmark::State& s) { decode_emulate(s, lock_or); }
BENCHMARK(BM_decode_emulate_mov_to_mmio);
BENCHMARK(BM_decode_emulate_mov_from_mmio);
BENCHMARK(BM_decode_emulate_lock_or_mmio);

// fetch (through `memory`) + decode + emulate, as on an exit without instruction bytes.
void BM_execute_mov_to_mmio(benchmark::State& state) {
    mmio_memory mem;
    std::memcpy(mem.code, mov_store, sizeof mov_store);
    guest_state st;
    st.gpr[0] = mem.mmio_base;
    for (auto _ : state) {
        st.rip = 0x7000;
        auto r = execute(st, mem);
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(BM_execute_mov_to_mmio);

// rep stosd of N dwords into the device: per-call cost, N in the argument.
void BM_rep_stosd_to_mmio(benchmark::State& state) {
    mmio_memory mem;
    const std::uint8_t rep_stosd[] = {0xF3, 0xAB};
    auto d = decode(rep_stosd, mode::code64);
    guest_state st;
    for (auto _ : state) {
        st.rip = 0x7000;
        st.gpr[7] = mem.mmio_base;
        st.gpr[1] = static_cast<std::uint64_t>(state.range(0));
        auto r = emulate(*d, st, mem);
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_rep_stosd_to_mmio)->Arg(1)->Arg(16)->Arg(64);

// Length decoding over a mix of instruction kinds (the SVM-without-NRIPS use).
void BM_length_mix(benchmark::State& state) {
    static const std::uint8_t mix[][15] = {
        {0x48, 0x8B, 0x05, 1, 2, 3, 4},                     // mov rax, [rip+disp32]
        {0x0F, 0x01, 0xC1},                                 // vmcall
        {0xC4, 0xE2, 0x79, 0x18, 0x44, 0x24, 0x10},         // vbroadcastss xmm0, [rsp+0x10]
        {0x66, 0x0F, 0x3A, 0x0F, 0xC1, 0x08},               // palignr xmm0, xmm1, 8
        {0xF3, 0x48, 0xAB},                                 // rep stosq
        {0x62, 0xF1, 0x7C, 0x48, 0x10, 0x44, 0x24, 0x01},   // vmovups zmm0, [rsp+0x40]
        {0x0F, 0x30},                                       // wrmsr
        {0x81, 0x84, 0x88, 1, 2, 3, 4, 5, 6, 7, 8},         // add dword [rax+rcx*4+disp32], imm32
    };
    std::size_t i = 0;
    for (auto _ : state) {
        auto n = length(mix[i++ % 8], mode::code64);
        benchmark::DoNotOptimize(n);
    }
}
BENCHMARK(BM_length_mix);

} // namespace
BENCHMARK_MAIN();
