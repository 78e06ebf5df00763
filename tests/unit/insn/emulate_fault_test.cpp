// Validate-then-commit and the rest of the emulator's contract: faults leave everything
// untouched (and never read a device whose write would fault), REP partial completion,
// canonical/alignment checks, instruction fetch across pages, decoder errors, the
// device-visible access pattern, and 16/32-bit string wrap-around.
#include <doctest/doctest.h>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include "libhv/cpu/insn/emulate.hpp"
#include "tests/unit/insn/emulate_cases.hpp"
#include "tests/unit/insn/fake_memory.hpp"
#include "tests/unit/insn/zydis_oracle.hpp"

using namespace hv::insn;
using namespace insn_test;

namespace {

constexpr std::uint64_t mem_base = 0x40000000;
constexpr std::uint64_t code_at = 0x50000040;

guest_state state_of(const test_case& c) {
    guest_state st;
    for (unsigned i = 0; i < 16; ++i) st.gpr[i] = c.regs.gpr[i];
    st.gpr[4] = 0x7ffc0000;
    st.rip = code_at;
    st.rflags = c.regs.rflags;
    st.code = mode::code64;
    return st;
}

bool touches_memory(const instruction& in) {
    for (unsigned i = 0; i < in.operand_count; ++i)
        if (in.operands[i].kind == opkind::mem) return true;
    return false;
}

// From the SDM's description of each instruction (not from the emulator).
bool reads_memory(const instruction& in) {
    switch (in.mnem) {
    case mnemonic::mov: case mnemonic::movzx: case mnemonic::movsx: case mnemonic::movsxd:
        return in.operands[1].kind == opkind::mem;
    case mnemonic::movnti: case mnemonic::stos: return false;
    default: return touches_memory(in);
    }
}
bool writes_memory(const instruction& in) {
    switch (in.mnem) {
    case mnemonic::cmp: case mnemonic::test: case mnemonic::bt: case mnemonic::lods:
    case mnemonic::movzx: case mnemonic::movsx: case mnemonic::movsxd:
        return false;
    case mnemonic::movs: case mnemonic::stos: return true;
    default: return in.operands[0].kind == opkind::mem;
    }
}

std::uint64_t rep_count(const instruction& in, const guest_state& st) {
    if (in.rep == rep_prefix::none) return 1;
    return in.address_size == 8 ? st.gpr[1] : st.gpr[1] & ((std::uint64_t{1} << (8 * in.address_size)) - 1);
}

} // namespace

TEST_CASE("a faulting memory operand leaves registers, flags, RIP and memory untouched") {
    const std::uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937_64 rng{seed};
    const case_env env{mem_base, code_at, 0, 0};
    unsigned checked = 0, faulted = 0, device_reads_before_fault = 0, failures = 0;
    for (unsigned round = 0; round < 60; ++round) {
        for (const auto& tp : emulated_templates()) {
            const test_case c = make_case64(tp, env, rng);
            auto d = decode(c.bytes, mode::code64);
            REQUIRE(d);
            if (!touches_memory(*d)) continue;
            const guest_state before = state_of(c);
            // Where the operand lives: unmapped, read-only, or write-only (readable=false).
            for (int kind = 0; kind < 3; ++kind) {
                fake_memory mem;
                if (kind != 0) {
                    auto& r = mem.add(mem_base, c.memory.data(), c.memory.size());
                    r.writable = kind != 1;
                    r.readable = kind != 2;
                }
                guest_state st = before;
                auto res = emulate(*d, st, mem);
                REQUIRE(res);
                const bool count_zero = rep_count(*d, before) == 0;
                const bool expect_fault = !count_zero && (kind == 0 || (kind == 1 && writes_memory(*d)) ||
                                                          (kind == 2 && reads_memory(*d)));
                ++checked;
                std::string why;
                if (expect_fault != (res->result == outcome::fault)) why += expect_fault ? " did not fault" : " faulted";
                if (res->result == outcome::fault) {
                    ++faulted;
                    if (!(st == before)) why += " guest state changed";
                    if (res->f.vector != vector::pf) why += " not #PF";
                    if (mem.count('r') || mem.count('w')) {
                        why += " accessed memory";
                        ++device_reads_before_fault;
                    }
                    if (kind != 0 && std::memcmp(mem.regions[0].bytes.data(), c.memory.data(), c.memory.size()) != 0)
                        why += " memory changed";
                    // A read-for-write of a read-only operand faults as a write.
                    if (kind == 1 && !(res->f.error_code & 2)) why += " #PF without W";
                }
                if (!why.empty() && ++failures <= 20)
                    std::printf("  FAIL kind %d %s [%s]:%s\n", kind, c.text.c_str(), hex(c.bytes).c_str(), why.c_str());
            }
        }
    }
    std::printf("insn fault cases: %u checked, %u faulted, %u failures\n", checked, faulted, failures);
    CHECK(failures == 0);
    CHECK(device_reads_before_fault == 0);
    CHECK(faulted > 1000);
}

TEST_CASE("operand crossing into an unmapped page faults before any access") {
    fake_memory mem;
    mem.add(mem_base, 4096, 0x5a);
    for (unsigned size : {2u, 4u, 8u}) {
        for (std::uint64_t off = 4096 - size + 1; off < 4096; ++off) {
            // add [rax], rcx/ecx/cx
            std::vector<std::uint8_t> b;
            if (size == 2) b.push_back(0x66);
            if (size == 8) b.push_back(0x48);
            b.push_back(0x01);
            b.push_back(0x08);
            auto d = decode(b, mode::code64);
            REQUIRE(d);
            guest_state st;
            st.gpr[0] = mem_base + off;
            st.gpr[1] = 0x1111111111111111;
            st.rip = code_at;
            const guest_state before = st;
            auto r = emulate(*d, st, mem);
            REQUIRE(r);
            CHECK(r->result == outcome::fault);
            CHECK(r->f.vector == vector::pf);
            CHECK(r->f.address == mem_base + 4096);
            CHECK(st == before);
            CHECK(mem.log.empty());
        }
    }
    for (std::size_t i = 0; i < 4096; ++i) CHECK(mem.regions[0].bytes[i] == 0x5a);
}

TEST_CASE("MOVS never reads the source when the destination would fault, and commits finished iterations") {
    // rep movsd: source RAM, destination 3 elements then a hole.
    fake_memory mem;
    auto& src = mem.add(0x10000, 64);
    for (unsigned i = 0; i < 64; ++i) src.bytes[i] = static_cast<std::uint8_t>(i + 1);
    mem.add(0x20000, 12, 0xEE);  // room for three dwords
    const std::uint8_t rep_movsd[] = {0xF3, 0xA5};
    auto d = decode(rep_movsd, mode::code64);
    REQUIRE(d);
    guest_state st;
    st.gpr[6] = 0x10000;  // rsi
    st.gpr[7] = 0x20000;  // rdi
    st.gpr[1] = 5;        // rcx
    st.rip = code_at;
    auto r = emulate(*d, st, mem);
    REQUIRE(r);
    CHECK(r->result == outcome::fault);
    CHECK(r->iterations == 3);
    CHECK(r->f.address == 0x2000C);
    CHECK(st.gpr[1] == 2);
    CHECK(st.gpr[6] == 0x1000C);
    CHECK(st.gpr[7] == 0x2000C);
    CHECK(st.rip == code_at);
    for (unsigned i = 0; i < 12; ++i) CHECK(mem.regions[1].bytes[i] == i + 1);
    CHECK(mem.count('r') == 3);  // the fourth source element was not read

    // Destination read-only from the start: nothing read, nothing changed.
    fake_memory ro;
    ro.add(0x10000, 64, 1);
    ro.add(0x20000, 64, 2).writable = false;
    guest_state st2;
    st2.gpr[6] = 0x10000;
    st2.gpr[7] = 0x20000;
    st2.gpr[1] = 5;
    st2.rip = code_at;
    const guest_state before = st2;
    auto r2 = emulate(*d, st2, ro);
    REQUIRE(r2);
    CHECK(r2->result == outcome::fault);
    CHECK(r2->iterations == 0);
    CHECK(st2 == before);
    CHECK(ro.count('r') == 0);
    CHECK((r2->f.error_code & 3) == 3);  // present, write
}

TEST_CASE("REP string instructions stop at the iteration budget and resume to the same result") {
    const std::uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937_64 rng{seed};
    const case_env env{mem_base, code_at, 0, 0};
    unsigned resumed = 0;
    for (unsigned round = 0; round < 400; ++round) {
        for (const auto& tp : emulated_templates()) {
            if (tp.sh != shape::string) continue;
            const test_case c = make_case64(tp, env, rng);
            auto d = decode(c.bytes, mode::code64);
            REQUIRE(d);
            const guest_state start = state_of(c);
            if (d->rep == rep_prefix::none || rep_count(*d, start) < 2) continue;

            fake_memory whole;
            whole.add(mem_base, c.memory.data(), c.memory.size());
            guest_state one = start;
            options all;
            all.max_iterations = 1000;
            auto r1 = emulate(*d, one, whole, all);
            REQUIRE(r1);
            REQUIRE(r1->result == outcome::done);

            fake_memory parts;
            parts.add(mem_base, c.memory.data(), c.memory.size());
            guest_state st = start;
            options budget;
            budget.max_iterations = 1 + rng() % 3;
            std::uint64_t calls = 0, total = 0;
            for (;;) {
                const std::uint64_t count_before = rep_count(*d, st);
                auto r = emulate(*d, st, parts, budget);
                REQUIRE(r);
                ++calls;
                total += r->iterations;
                if (r->result == outcome::done) break;
                REQUIRE(r->result == outcome::partial);
                CHECK(r->iterations == budget.max_iterations);
                CHECK(st.rip == start.rip);
                CHECK(rep_count(*d, st) == count_before - budget.max_iterations);
            }
            CHECK(total == rep_count(*d, start));
            CHECK(st == one);
            CHECK(parts.regions[0].bytes == whole.regions[0].bytes);
            ++resumed;
        }
    }
    CHECK(resumed > 200);
}

TEST_CASE("non-canonical addresses raise #GP(0), or #SS(0) for stack references; LA57 widens the range") {
    fake_memory mem;
    const std::uint8_t mov_load[] = {0x8B, 0x00};      // mov eax, [rax]
    const std::uint8_t mov_rbp[] = {0x8B, 0x45, 0x00};  // mov eax, [rbp+0]
    auto d1 = decode(mov_load, mode::code64);
    auto d2 = decode(mov_rbp, mode::code64);
    REQUIRE(d1);
    REQUIRE(d2);
    for (std::uint64_t addr : {0x0000800000000000ull, 0xffff7fffffffffffull, 0x0000fffffffffffeull + 0x1000}) {
        guest_state st;
        st.gpr[0] = addr;
        st.gpr[5] = addr;
        const guest_state before = st;
        auto r = emulate(*d1, st, mem);
        REQUIRE(r);
        CHECK(r->result == outcome::fault);
        CHECK(r->f.vector == vector::gp);
        CHECK(r->f.error_code == 0);
        auto r2 = emulate(*d2, st, mem);
        REQUIRE(r2);
        CHECK(r2->f.vector == vector::ss);
        CHECK(st == before);
        // With 57-bit addresses these are canonical: the access itself now faults (#PF).
        st.cr4 = 1u << 12;
        auto r3 = emulate(*d1, st, mem);
        REQUIRE(r3);
        CHECK(r3->f.vector == vector::pf);
    }
    // The last byte counts too.
    guest_state st;
    st.gpr[0] = 0x00007ffffffffffeull;
    auto r = emulate(*d1, st, mem);
    REQUIRE(r);
    CHECK(r->f.vector == vector::gp);
}

TEST_CASE("alignment check: #AC(0) for a misaligned access at CPL 3 with CR0.AM and RFLAGS.AC") {
    fake_memory mem;
    mem.add(0x1000, 64);
    const std::uint8_t store[] = {0x89, 0x08};  // mov [rax], ecx
    auto d = decode(store, mode::code64);
    REQUIRE(d);
    for (int cpl : {0, 3})
        for (bool am : {false, true})
            for (bool ac : {false, true})
                for (std::uint64_t addr : {0x1000ull, 0x1002ull}) {
                    guest_state st;
                    st.gpr[0] = addr;
                    st.cpl = static_cast<std::uint8_t>(cpl);
                    st.cr0 = am ? (1u << 18) : 0;
                    st.rflags = 2 | (ac ? rflags::ac : 0);
                    auto r = emulate(*d, st, mem);
                    REQUIRE(r);
                    const bool expect = cpl == 3 && am && ac && (addr & 3);
                    CHECK((r->result == outcome::fault) == expect);
                    if (expect) CHECK(r->f.vector == vector::ac);
                }
}

TEST_CASE("fetch reads the next page only when the instruction continues there") {
    // mov dword ptr [rax+0x11223344], 0x55667788: C7 80 disp32 imm32 (10 bytes)
    const std::uint8_t insn[] = {0xC7, 0x80, 0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55};
    for (unsigned at = 4096 - 12; at <= 4096 - 1; ++at) {
        fake_memory mem;
        auto& code = mem.add(0x7000, 4096, 0x90);
        const unsigned in_first = std::min<unsigned>(sizeof insn, 4096 - at);
        std::memcpy(code.bytes.data() + at, insn, in_first);
        guest_state st;
        st.rip = 0x7000 + at;
        auto f = fetch(st, mem);
        REQUIRE(f);
        if (in_first == sizeof insn) {
            CHECK(!f->f);
            CHECK(f->insn.length == sizeof insn);
        } else {
            REQUIRE(f->f);
            CHECK(f->f->vector == vector::pf);
            CHECK(f->f->address == 0x8000);
            CHECK((f->f->error_code & 16) != 0);  // instruction fetch
            // Map the next page: the instruction decodes whole.
            auto& next = mem.add(0x8000, 4096, 0x90);
            std::memcpy(next.bytes.data(), insn + in_first, sizeof insn - in_first);
            auto g = fetch(st, mem);
            REQUIRE(g);
            CHECK(!g->f);
            CHECK(g->insn.length == sizeof insn);
            CHECK(g->insn.mnem == mnemonic::mov);
            CHECK(g->insn.operands[1].imm == 0x55667788);
        }
    }
}

TEST_CASE("execute: fetch + decode + emulate, guest-visible failures as faults") {
    fake_memory mem;
    auto& code = mem.add(0x7000, 4096, 0x90);
    mem.add(0x9000, 4096);
    auto place = [&](std::initializer_list<std::uint8_t> b) {
        std::fill(code.bytes.begin(), code.bytes.end(), 0x90);
        std::copy(b.begin(), b.end(), code.bytes.begin());
    };
    guest_state st;
    st.rip = 0x7000;
    st.gpr[0] = 0x9000;
    st.gpr[1] = 0xAABBCCDD;
    st.rflags = 2 | rflags::rf;
    place({0x89, 0x48, 0x10});  // mov [rax+0x10], ecx
    auto r = execute(st, mem);
    REQUIRE(r);
    CHECK(r->result == outcome::done);
    CHECK(st.rip == 0x7003);
    CHECK(mem.load(0x9010, 4) == 0xAABBCCDD);
    CHECK((st.rflags & rflags::rf) == 0);  // RF clears when an instruction completes

    st.rip = 0x7000;
    place({0xF0, 0x89, 0x08});  // lock mov: #UD
    r = execute(st, mem);
    REQUIRE(r);
    CHECK(r->result == outcome::fault);
    CHECK(r->f.vector == vector::ud);
    CHECK(st.rip == 0x7000);

    place({0x0F, 0x04});  // undefined opcode
    r = execute(st, mem);
    REQUIRE(r);
    CHECK(r->f.vector == vector::ud);

    std::fill(code.bytes.begin(), code.bytes.end(), 0x2E);  // prefixes only: longer than 15 bytes
    r = execute(st, mem);
    REQUIRE(r);
    CHECK(r->f.vector == vector::gp);

    place({0x0F, 0xA2});  // cpuid: decodes, not emulated
    const guest_state before = st;
    r = execute(st, mem);
    CHECK(r.code() == hv::errc::not_supported);
    CHECK(st == before);
}

TEST_CASE("decoder errors: truncated input, over-long instructions") {
    const std::uint64_t seed = std::random_device{}();
    std::mt19937_64 rng{seed};
    const case_env env{mem_base, code_at, 0, 0};
    unsigned checked = 0;
    for (const auto& tp : emulated_templates()) {
        const test_case c = make_case64(tp, env, rng);
        for (std::size_t n = 0; n < c.bytes.size(); ++n) {
            auto d = decode(std::span<const std::uint8_t>(c.bytes.data(), n), mode::code64);
            CHECK(!d);
            CHECK(d.code() == hv::errc::out_of_range);
            ++checked;
        }
        auto whole = length(c.bytes, mode::code64);
        REQUIRE(whole);
        CHECK(*whole == c.bytes.size());
    }
    CHECK(checked > 300);
    // 14 prefixes + 2-byte instruction = 16 bytes; 13 prefixes fit.
    std::vector<std::uint8_t> b(14, 0x66);
    b.push_back(0x01);
    b.push_back(0xC0);
    CHECK(decode(b, mode::code64).code() == hv::errc::overflow);
    b.erase(b.begin());
    auto ok = decode(b, mode::code64);
    REQUIRE(ok);
    CHECK(ok->length == 15);
    // Too long is reported even when the bytes given end earlier.
    std::vector<std::uint8_t> p(15, 0xF3);
    CHECK(decode(p, mode::code64).code() == hv::errc::overflow);
}

TEST_CASE("device-visible access pattern: one access per operand, of the operand's width") {
    struct expect {
        std::vector<std::uint8_t> bytes;
        const char* pattern;  // r/w/p with sizes, e.g. "r4 w4"
    };
    const expect cases[] = {
        {{0x89, 0x08}, "w4"},                    // mov [rax], ecx
        {{0x66, 0x89, 0x08}, "w2"},              // mov [rax], cx
        {{0x88, 0x28}, "w1"},                    // mov [rax], ch
        {{0x48, 0x8B, 0x08}, "r8"},              // mov rcx, [rax]
        {{0x0F, 0xB6, 0x08}, "r1"},              // movzx ecx, byte [rax]
        {{0x48, 0x0F, 0xBF, 0x08}, "r2"},        // movsx rcx, word [rax]
        {{0x01, 0x08}, "m4 w4"},                 // add [rax], ecx: read-for-write then write
        {{0x39, 0x08}, "r4"},                    // cmp [rax], ecx
        {{0x85, 0x08}, "r4"},                    // test [rax], ecx
        {{0xF0, 0x0F, 0xB1, 0x08}, "m4 w4"},     // lock cmpxchg [rax], ecx
        {{0x87, 0x08}, "m4 w4"},                 // xchg [rax], ecx
        {{0x0F, 0xBA, 0x20, 0x03}, "r4"},        // bt dword [rax], 3
        {{0x0F, 0xBA, 0x28, 0x03}, "m4 w4"},     // bts dword [rax], 3
        {{0xC7, 0x00, 1, 2, 3, 4}, "w4"},        // mov dword [rax], imm32
        {{0xA5}, "p4 p4 r4 w4"},                 // movsd (probe source, destination, then copy)
        {{0xAB}, "w4"},                          // stosd
        {{0xAD}, "r4"},                          // lodsd
        {{0xF3, 0xAB}, "w4 w4 w4"},              // rep stosd, rcx = 3
    };
    for (const auto& e : cases) {
        fake_memory mem;
        mem.add(0x1000, 256);
        auto d = decode(e.bytes, mode::code64);
        REQUIRE(d);
        guest_state st;
        st.gpr[0] = 0x1010;
        st.gpr[1] = 3;
        st.gpr[6] = 0x1040;
        st.gpr[7] = 0x1080;
        auto r = emulate(*d, st, mem);
        REQUIRE(r);
        CHECK(r->result == outcome::done);
        std::string got;
        for (const auto& a : mem.log) {
            if (!got.empty()) got += ' ';
            got += a.kind == 'r' && a.a == access_type::rmw ? 'm' : a.kind;
            got += std::to_string(a.n);
        }
        INFO(hex(e.bytes));
        CHECK(got == e.pattern);
    }
}

TEST_CASE("16- and 32-bit string instructions: SI/DI/CX of the address size, wrap-around, segment bases") {
    // 16-bit code, rep movsw: DS.base 0x10000, ES.base 0x20000, SI = 0xFFFE wraps to 0.
    fake_memory mem;
    auto& ds = mem.add(0x10000, 0x10000);
    auto& es = mem.add(0x20000, 0x10000);
    ds.bytes[0xFFFE] = 0x11;
    ds.bytes[0xFFFF] = 0x22;
    ds.bytes[0x0000] = 0x33;
    ds.bytes[0x0001] = 0x44;
    const std::uint8_t rep_movsw[] = {0xF3, 0xA5};
    auto d = decode(rep_movsw, mode::code16);
    REQUIRE(d);
    CHECK(d->operand_size == 2);
    CHECK(d->address_size == 2);
    guest_state st;
    st.code = mode::code16;
    st.seg_base[static_cast<unsigned>(seg::ds)] = 0x10000;
    st.seg_base[static_cast<unsigned>(seg::es)] = 0x20000;
    st.gpr[6] = 0xABCD0000'0000FFFEull;  // upper bits are not part of SI
    st.gpr[7] = 0x00000000'12340010ull;
    st.gpr[1] = 0x00000000'00050002ull;
    st.rip = 0xFFFE;
    auto r = emulate(*d, st, mem);
    REQUIRE(r);
    CHECK(r->result == outcome::done);
    CHECK(es.bytes[0x10] == 0x11);
    CHECK(es.bytes[0x11] == 0x22);
    CHECK(es.bytes[0x12] == 0x33);
    CHECK(es.bytes[0x13] == 0x44);
    CHECK(st.gpr[6] == 0xABCD0000'00000002ull);
    CHECK(st.gpr[7] == 0x00000000'12340014ull);
    CHECK(st.gpr[1] == 0x00000000'00050000ull);
    CHECK(st.rip == 0x10000);  // EIP advances past 0xFFFF (32-bit wrap only)

    // DF = 1: SI 0 steps back to 0xFFFE.
    const std::uint8_t lodsw[] = {0xAD};
    auto l = decode(lodsw, mode::code16);
    REQUIRE(l);
    st.rflags = 2 | rflags::df;
    st.gpr[6] = 0;
    r = emulate(*l, st, mem);
    REQUIRE(r);
    CHECK((st.gpr[0] & 0xFFFF) == 0x4433);
    CHECK(st.gpr[6] == 0xFFFE);

    // 32-bit code, rep stosd with 67: 16-bit DI/CX in 32-bit code.
    const std::uint8_t a16_rep_stosd[] = {0x67, 0xF3, 0xAB};
    auto s = decode(a16_rep_stosd, mode::code32);
    REQUIRE(s);
    CHECK(s->operand_size == 4);
    CHECK(s->address_size == 2);
    guest_state s32;
    s32.code = mode::code32;
    s32.seg_base[static_cast<unsigned>(seg::es)] = 0x20000;
    s32.gpr[0] = 0xCAFEF00D;
    s32.gpr[7] = 0x7777FFFC;  // DI = 0xFFFC: second store wraps to ES:0
    s32.gpr[1] = 0x88880002;
    r = emulate(*s, s32, mem);
    REQUIRE(r);
    CHECK(mem.load(0x2FFFC, 4) == 0xCAFEF00D);
    CHECK(mem.load(0x20000, 4) == 0xCAFEF00D);
    CHECK(s32.gpr[7] == 0x77770004);
    CHECK(s32.gpr[1] == 0x88880000);

    // Segment override on the source (FS), destination always ES.
    const std::uint8_t fs_movsb[] = {0x64, 0xA4};
    auto m = decode(fs_movsb, mode::code32);
    REQUIRE(m);
    guest_state f32;
    f32.code = mode::code32;
    f32.seg_base[static_cast<unsigned>(seg::fs)] = 0x10000;
    f32.seg_base[static_cast<unsigned>(seg::ds)] = 0x90000;  // must not be used
    f32.seg_base[static_cast<unsigned>(seg::es)] = 0x20000;
    f32.gpr[6] = 0x100;
    f32.gpr[7] = 0x200;
    ds.bytes[0x100] = 0x5A;
    r = emulate(*m, f32, mem);
    REQUIRE(r);
    CHECK(r->result == outcome::done);
    CHECK(es.bytes[0x200] == 0x5A);
}

TEST_CASE("instructions outside the emulated set are refused without side effects") {
    const std::vector<std::vector<std::uint8_t>> others = {
        {0x90}, {0x8D, 0x00}, {0x0F, 0x20, 0xC0}, {0xFF, 0x10}, {0xF7, 0x20}, {0x0F, 0xAF, 0x00}, {0xC5, 0xF8, 0x77},
        {0x0F, 0xC7, 0x08}, {0xA6}, {0xD0, 0x00},
    };
    for (const auto& b : others) {
        auto d = decode(b, mode::code64);
        REQUIRE(d);
        CHECK(d->mnem == mnemonic::other);
        fake_memory mem;
        mem.add(0, 4096);
        guest_state st;
        const guest_state before = st;
        auto r = emulate(*d, st, mem);
        CHECK(r.code() == hv::errc::not_supported);
        CHECK(st == before);
        CHECK(mem.log.empty());
    }
}

TEST_CASE("decode memo: the same bytes at the same address reuse the decode; other bytes, address or mode do not") {
    fake_memory mem;
    // mov %ecx, 0x80(%r12) ; then the same address rewritten to mov 0x80(%r12), %eax
    const std::uint8_t store[] = {0x41, 0x89, 0x8c, 0x24, 0x80, 0x00, 0x00, 0x00, 0x90};
    const std::uint8_t load[] = {0x41, 0x8b, 0x84, 0x24, 0x80, 0x00, 0x00, 0x00, 0x90};
    auto& code = mem.add(code_at, 32, 0x90);  // the fetch reads 15 bytes
    std::memcpy(code.bytes.data(), store, sizeof store);
    mem.add(mem_base, 0x1000);
    guest_state st;
    st.rip = code_at;
    st.gpr[12] = mem_base;
    st.gpr[1] = 0x11223344;
    decode_memo memo;
    auto plain = fetch(st, mem);
    auto first = fetch(st, mem, &memo);
    REQUIRE(plain);
    REQUIRE(first);
    CHECK(memo.la == code_at);
    CHECK(first->insn.length == 8);
    CHECK(first->insn.mnem == plain->insn.mnem);
    // A hit: the memo's instruction comes back (poison it to see that it is used).
    memo.insn.operand_size = 2;
    auto hit = fetch(st, mem, &memo);
    REQUIRE(hit);
    CHECK(hit->insn.operand_size == 2);
    memo.insn.operand_size = 4;
    // The guest rewrote the instruction: decoded again.
    std::memcpy(code.bytes.data(), load, sizeof load);
    auto again = fetch(st, mem, &memo);
    REQUIRE(again);
    CHECK(again->insn.operands[0].kind == opkind::reg);
    CHECK(again->insn.operands[1].kind == opkind::mem);
    // Another mode: decoded again (no REX in 32-bit code: 0x41 is INC ECX there).
    st.code = mode::code32;
    auto other_mode = fetch(st, mem, &memo);
    REQUIRE(other_mode);
    CHECK(other_mode->insn.length == 1);
    CHECK(memo.code == mode::code32);
    // Through execute: the store runs with the memo, twice, to the same effect.
    std::memcpy(code.bytes.data(), store, sizeof store);
    st.code = mode::code64;
    for (int i = 0; i < 2; ++i) {
        st.rip = code_at;
        auto r = execute(st, mem, {}, &memo);
        REQUIRE(r);
        CHECK(r->result == outcome::done);
        CHECK(st.rip == code_at + 8);
        CHECK(mem.load(mem_base + 0x80, 4) == 0x11223344);
    }
}
