// The emulator against the host CPU: every emulated instruction in every operand size,
// address size, register/memory form and addressing form, with random operands, runs
// natively over a buffer and in the emulator over a copy of it; memory, every GPR, RIP
// and the flags the SDM defines for the instruction must agree.
#include <doctest/doctest.h>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>
#include "libhv/cpu/insn/emulate.hpp"
#include "tests/unit/insn/budget.hpp"
#include "tests/unit/insn/emulate_cases.hpp"
#include "tests/unit/insn/fake_memory.hpp"
#include "tests/unit/insn/native.hpp"
#include "tests/unit/insn/zydis_oracle.hpp"

using namespace hv::insn;
using namespace insn_test;

namespace {

struct outcome_tally {
    std::uint64_t cases = 0, failures = 0;
    std::map<std::string, std::uint64_t> per_mnemonic;
    std::vector<std::string> first;
    void fail(const std::string& s) {
        ++failures;
        if (first.size() < 30) first.push_back(s);
    }
};

std::string regs_diff(const cpu_regs& n, const guest_state& e, std::uint64_t flag_mask) {
    std::string s;
    char buf[128];
    for (unsigned i = 0; i < 16; ++i) {
        if (i == 4) continue;
        if (n.gpr[i] != e.gpr[i]) {
            std::snprintf(buf, sizeof buf, " %s native=%#llx emu=%#llx", reg_name(static_cast<reg>(i), 8).c_str(),
                          static_cast<unsigned long long>(n.gpr[i]), static_cast<unsigned long long>(e.gpr[i]));
            s += buf;
        }
    }
    if ((n.rflags ^ e.rflags) & flag_mask) {
        std::snprintf(buf, sizeof buf, " rflags native=%#llx emu=%#llx mask=%#llx", static_cast<unsigned long long>(n.rflags),
                      static_cast<unsigned long long>(e.rflags), static_cast<unsigned long long>(flag_mask));
        s += buf;
    }
    return s;
}

void run_case(native_cpu& cpu, low_memory& buf, const test_case& c, outcome_tally& t) {
    ++t.cases;
    ++t.per_mnemonic[to_string(c.mnem)];
    const std::string what = c.text + " [" + hex(c.bytes) + "]";

    // The test's encoder must produce what it meant (Zydis agrees on the length).
    static const zydis z64{mode::code64};
    if (auto zl = z64.length(c.bytes); !zl || *zl != c.bytes.size()) return t.fail("encoder: Zydis length differs: " + what);

    std::memcpy(buf.data(), c.memory.data(), c.memory.size());
    cpu_regs native = c.regs;
    if (!cpu.run(c.bytes, native)) return t.fail("native execution raised a signal: " + what);

    fake_memory mem;
    mem.add(buf.address(), c.memory.data(), c.memory.size());
    guest_state st;
    for (unsigned i = 0; i < 16; ++i) st.gpr[i] = c.regs.gpr[i];
    st.gpr[4] = 0x00007ffc'12345670;
    st.rip = cpu.insn_address();
    st.rflags = c.regs.rflags;
    st.seg_base[static_cast<unsigned>(seg::fs)] = native_cpu::fs_base();
    st.seg_base[static_cast<unsigned>(seg::gs)] = native_cpu::gs_base();
    st.code = mode::code64;

    auto d = decode(c.bytes, mode::code64);
    if (!d) return t.fail(std::string("decode failed: ") + d.err().what + " " + what);
    if (d->mnem != c.mnem) return t.fail(std::string("decoded as ") + to_string(d->mnem) + ": " + what);
    options opt;
    opt.max_iterations = 1u << 20;
    auto r = emulate(*d, st, mem, opt);
    if (!r) return t.fail(std::string("emulate error: ") + r.err().what + " " + what);
    if (r->result != outcome::done) return t.fail("emulate did not complete: " + what);

    std::string why = regs_diff(native, st, c.flag_mask);
    if (st.gpr[4] != 0x00007ffc'12345670) why += " rsp changed";
    if (st.rip != cpu.insn_address() + c.bytes.size()) why += " rip";
    if (std::memcmp(mem.regions[0].bytes.data(), buf.data(), c.memory.size()) != 0) {
        for (std::size_t i = 0; i < c.memory.size(); ++i)
            if (mem.regions[0].bytes[i] != buf.data()[i]) {
                char b[96];
                std::snprintf(b, sizeof b, " memory differs at +%#zx native=%02x emu=%02x", i, buf.data()[i], mem.regions[0].bytes[i]);
                why += b;
                break;
            }
    }
    if (!why.empty()) t.fail(what + ":" + why);
}

} // namespace

TEST_CASE("emulator matches native execution: every instruction, operand size, addressing form") {
    const std::uint64_t seed = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
    INFO("seed " << seed);
    std::mt19937_64 rng{seed};
    native_cpu cpu;
    low_memory buf{case_memory_size};
    const case_env env{buf.address(), cpu.insn_address(), native_cpu::fs_base(), native_cpu::gs_base()};
    const auto& templates = emulated_templates();
    outcome_tally t;
    constexpr unsigned rounds = 400 / scale_down;  // per template
    for (unsigned round = 0; round < rounds; ++round)
        for (const auto& tp : templates) run_case(cpu, buf, make_case64(tp, env, rng), t);
    std::printf("insn emulator vs native: %llu cases over %zu instruction forms, %llu failures\n",
                static_cast<unsigned long long>(t.cases), templates.size(), static_cast<unsigned long long>(t.failures));
    for (const auto& s : t.first) std::printf("  FAIL %s\n", s.c_str());
    CHECK(t.failures == 0);
    CHECK(t.per_mnemonic.size() == 28);  // every emulated mnemonic was exercised
}
