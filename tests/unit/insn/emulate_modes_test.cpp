// 16- and 32-bit code: Zydis gives each memory operand's effective address and segment
// (16-bit [bx+si] forms, 32-bit SIB forms, 66/67 size flips, segment overrides); the
// host CPU gives the operation's result over [rdi] in 64-bit mode. The emulator, run in
// the guest mode with random segment bases, must access that linear address and agree
// with the host on memory, registers and flags.
#include <doctest/doctest.h>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include "libhv/cpu/insn/emulate.hpp"
#include "tests/unit/insn/budget.hpp"
#include "tests/unit/insn/emulate_cases.hpp"
#include "tests/unit/insn/fake_memory.hpp"
#include "tests/unit/insn/native.hpp"
#include "tests/unit/insn/zydis_oracle.hpp"

using namespace hv::insn;
using namespace insn_test;

namespace {

std::string run_legacy(native_cpu& cpu, low_memory& buf, const case_env& env, const legacy_case& c) {
    std::memcpy(buf.data(), c.memory.data(), c.memory.size());
    cpu_regs native = c.regs;
    native.gpr[4] = 0;
    native.gpr[7] = c.native_rdi;
    if (!cpu.run(c.native_bytes, native)) return "native execution raised a signal";

    fake_memory mem;
    const std::uint64_t region = c.linear - (c.target - env.mem_base);
    mem.add(region, c.memory.data(), c.memory.size());
    guest_state st;
    for (unsigned i = 0; i < 16; ++i) st.gpr[i] = c.regs.gpr[i];
    st.rip = c.eip;
    st.rflags = c.regs.rflags;
    st.seg_base = c.seg_base;
    st.code = c.md;
    auto d = decode(c.bytes, c.md);
    if (!d) return std::string("decode failed: ") + d.err().what;
    if (d->mnem != c.mnem) return std::string("decoded as ") + to_string(d->mnem);
    // The address the vm86 LGDT/LIDT emulation reads its operand at (vmx backend).
    if (d->has_mem && memory_operand_address(st, *d) != c.linear) {
        char b[96];
        std::snprintf(b, sizeof b, "memory_operand_address %#llx, expected linear %#llx",
                      static_cast<unsigned long long>(memory_operand_address(st, *d)),
                      static_cast<unsigned long long>(c.linear));
        return b;
    }
    auto r = emulate(*d, st, mem);
    if (!r) return std::string("emulate error: ") + r.err().what;
    if (r->result != outcome::done) {
        char b[96];
        std::snprintf(b, sizeof b, "emulate faulted: vector %u address %#llx (expected linear %#llx)", r->f.vector,
                      static_cast<unsigned long long>(r->f.address), static_cast<unsigned long long>(c.linear));
        return b;
    }
    std::string why;
    char b[160];
    for (unsigned i = 0; i < 16; ++i) {
        if (i == 4 || i == 7) continue;
        if (native.gpr[i] != st.gpr[i]) {
            std::snprintf(b, sizeof b, " %s native=%#llx emu=%#llx", reg_name(static_cast<reg>(i), 8).c_str(),
                          static_cast<unsigned long long>(native.gpr[i]), static_cast<unsigned long long>(st.gpr[i]));
            why += b;
        }
    }
    if ((native.rflags ^ st.rflags) & c.flag_mask) {
        std::snprintf(b, sizeof b, " rflags native=%#llx emu=%#llx", static_cast<unsigned long long>(native.rflags),
                      static_cast<unsigned long long>(st.rflags));
        why += b;
    }
    if (st.rip != ((c.eip + c.bytes.size()) & 0xffffffff)) why += " eip";
    if (st.gpr[7] != c.regs.gpr[7]) why += " edi changed";
    if (std::memcmp(mem.regions[0].bytes.data(), buf.data(), c.memory.size()) != 0) why += " memory differs";
    // Every access the emulator made was to the operand Zydis located.
    for (const auto& a : mem.log)
        if (c.mnem != mnemonic::bt && c.mnem != mnemonic::bts && c.mnem != mnemonic::btr && c.mnem != mnemonic::btc &&
            a.la != c.linear)
            why += " accessed another address";
    return why;
}

} // namespace

TEST_CASE("emulator in 16- and 32-bit code: addresses per Zydis, results per the host CPU") {
    const std::uint64_t seed = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
    INFO("seed " << seed);
    std::mt19937_64 rng{seed};
    native_cpu cpu;
    low_memory buf{case_memory_size};
    const case_env env{buf.address(), cpu.insn_address(), 0, 0};
    std::uint64_t cases = 0, failures = 0, generator_rejects = 0;
    for (auto md : {mode::code16, mode::code32}) {
        for (unsigned round = 0; round < 250 / scale_down; ++round) {
            for (const auto& tp : emulated_templates()) {
                auto c = make_case_legacy(tp, md, env, rng);
                if (!c.ok) {
                    if (c.text.rfind("(Zydis rejects", 0) == 0) {
                        ++generator_rejects;
                        if (generator_rejects < 5) std::printf("  generator: %s\n", c.text.c_str());
                    }
                    continue;
                }
                ++cases;
                const std::string why = run_legacy(cpu, buf, env, c);
                if (!why.empty()) {
                    if (++failures <= 30)
                        std::printf("  FAIL [%s] %s [%s]: %s\n", md == mode::code16 ? "16" : "32", c.text.c_str(), hex(c.bytes).c_str(), why.c_str());
                }
            }
        }
    }
    std::printf("insn emulator 16/32-bit vs Zydis addresses + native results: %llu cases, %llu failures\n",
                static_cast<unsigned long long>(cases), static_cast<unsigned long long>(failures));
    CHECK(generator_rejects == 0);
    CHECK(failures == 0);
    CHECK(cases > 20000 / scale_down);
}
