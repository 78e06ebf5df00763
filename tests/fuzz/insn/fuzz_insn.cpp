// libFuzzer harness: decoder and emulator on arbitrary bytes.
//   input[0]    mode (code16/32/64) and register-seeding choices
//   input[1..]  instruction bytes (decoded as given, so truncation is exercised too)
// Checks, besides "no crash, no sanitizer report": length bounds, decoding exactly the
// length again gives the same instruction, one byte less says "truncated", errors are
// one of the documented codes, a fault leaves guest state and memory untouched, and
// (with Zydis) the length agrees whenever Zydis accepts the bytes.
#include <cstdint>
#include <cstring>
#include <span>
#include "libhv/cpu/insn/emulate.hpp"
#include "tests/unit/insn/fake_memory.hpp"
#ifdef HV_FUZZ_ZYDIS
#include <Zydis/Zydis.h>
#endif

using namespace hv::insn;

namespace {

[[noreturn]] void fail() { __builtin_trap(); }
#define FUZZ_CHECK(c) do { if (!(c)) fail(); } while (0)

std::uint64_t mix(std::uint64_t& s) {  // splitmix64
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#ifdef HV_FUZZ_ZYDIS
bool zydis_length(std::span<const std::uint8_t> b, mode m, unsigned& len) {
    ZydisDecoder d;
    switch (m) {
    case mode::code16: ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16); break;
    case mode::code32: ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32); break;
    case mode::code64: ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64); break;
    }
    ZydisDecodedInstruction in;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&d, nullptr, b.data(), b.size(), &in))) return false;
    // Knights Corner encodings: #UD on every shipping CPU (see decode_test.cpp).
    if (in.meta.isa_ext == ZYDIS_ISA_EXT_KNC || in.meta.isa_ext == ZYDIS_ISA_EXT_KNCE || in.meta.isa_ext == ZYDIS_ISA_EXT_KNCV)
        return false;
    len = in.length;
    return true;
}
#endif

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const mode md = data[0] % 3 == 0 ? mode::code16 : data[0] % 3 == 1 ? mode::code32 : mode::code64;
    const std::span<const std::uint8_t> bytes(data + 1, size - 1);
    auto d = decode(bytes, md);
#ifdef HV_FUZZ_ZYDIS
    unsigned zl = 0;
    const bool zok = zydis_length(bytes, md, zl);
    if (zok) FUZZ_CHECK(d && d->length == zl);
#endif
    if (!d) {
        const auto c = d.code();
        FUZZ_CHECK(c == hv::errc::out_of_range || c == hv::errc::overflow || c == hv::errc::bad_format);
        if (c == hv::errc::out_of_range) FUZZ_CHECK(bytes.size() < max_length);
        return 0;
    }
    FUZZ_CHECK(d->length >= 1 && d->length <= max_length && d->length <= bytes.size());
    auto exact = decode(bytes.first(d->length), md);
    FUZZ_CHECK(exact && exact->length == d->length && exact->mnem == d->mnem && exact->operand_count == d->operand_count);
    auto shorter = decode(bytes.first(d->length - 1u), md);
    FUZZ_CHECK(!shorter && shorter.code() == hv::errc::out_of_range);
    if (d->mnem == mnemonic::other) {
        guest_state st;
        insn_test::fake_memory mem;
        FUZZ_CHECK(emulate(*d, st, mem).code() == hv::errc::not_supported);
        return 0;
    }

    // Registers point into a small guest memory (read-write, read-only, unmapped holes)
    // or anywhere, from a seed taken from the input.
    std::uint64_t seed = size;
    for (std::size_t i = 0; i < size; ++i) seed = seed * 131 + data[i];
    insn_test::fake_memory mem;
    mem.add(0x10000, 0x2000, 0xA5);
    mem.add(0x13000, 0x1000, 0x5A).writable = false;
    mem.add(0x15000, 0x1000, 0x3C).readable = false;
    guest_state st;
    st.code = md;
    for (auto& r : st.gpr) {
        const std::uint64_t v = mix(seed);
        r = (data[0] & 0x80) ? v : 0x10000 + (v % 0x6000) - ((v >> 40) & 0xff);
    }
    st.gpr[1] = mix(seed) % 40;  // modest REP counts
    st.rflags = 2 | (mix(seed) & (rflags::arith | rflags::df));
    for (auto& b : st.seg_base) b = (data[0] & 0x40) ? (mix(seed) & 0xfff0) : 0;
    st.rip = 0x1000;
    if (md != mode::code64)
        for (auto& r : st.gpr) r &= 0xffffffff;
    const guest_state before = st;
    std::vector<std::vector<std::uint8_t>> contents;
    for (const auto& r : mem.regions) contents.push_back(r.bytes);

    options opt;
    opt.max_iterations = 1 + (data[0] & 7);
    auto r = emulate(*d, st, mem, opt);
    FUZZ_CHECK(r);
    const bool string_op = d->mnem == mnemonic::movs || d->mnem == mnemonic::stos || d->mnem == mnemonic::lods;
    switch (r->result) {
    case outcome::done:
        FUZZ_CHECK(st.rip == (md == mode::code64 ? before.rip + d->length : (before.rip + d->length) & 0xffffffff));
        break;
    case outcome::partial:
        FUZZ_CHECK(string_op && st.rip == before.rip && r->iterations == opt.max_iterations);
        break;
    case outcome::fault:
        FUZZ_CHECK(st.rip == before.rip);
        if (!string_op || r->iterations == 0) {
            FUZZ_CHECK(st == before);
            for (std::size_t i = 0; i < contents.size(); ++i) FUZZ_CHECK(mem.regions[i].bytes == contents[i]);
            FUZZ_CHECK(mem.count('w') == 0 && mem.count('r') == 0);
        }
        break;
    }
    return 0;
}
