#include "tests/unit/insn/emulate_cases.hpp"
#include <algorithm>
#include "libhv/cpu/insn/alu.hpp"
#include "tests/unit/insn/encoder.hpp"
#include "tests/unit/insn/zydis_oracle.hpp"

namespace insn_test {

using hv::insn::mnemonic;

const std::vector<tmpl>& emulated_templates() {
    static const std::vector<tmpl> v = [] {
        std::vector<tmpl> t;
        const mnemonic alu[8] = {mnemonic::add, mnemonic::or_, mnemonic::adc, mnemonic::sbb,
                                 mnemonic::and_, mnemonic::sub, mnemonic::xor_, mnemonic::cmp};
        for (std::uint8_t k = 0; k < 8; ++k) {
            const auto b = static_cast<std::uint8_t>(k * 8);
            t.push_back({alu[k], {b}, -1, shape::rm_reg, true, 0});
            t.push_back({alu[k], {static_cast<std::uint8_t>(b + 1)}, -1, shape::rm_reg, false, 0});
            t.push_back({alu[k], {static_cast<std::uint8_t>(b + 2)}, -1, shape::reg_rm, true, 0});
            t.push_back({alu[k], {static_cast<std::uint8_t>(b + 3)}, -1, shape::reg_rm, false, 0});
            t.push_back({alu[k], {static_cast<std::uint8_t>(b + 4)}, -1, shape::acc_imm, true, 1});
            t.push_back({alu[k], {static_cast<std::uint8_t>(b + 5)}, -1, shape::acc_imm, false, 3});
            t.push_back({alu[k], {0x80}, k, shape::rm_imm, true, 1});
            t.push_back({alu[k], {0x81}, k, shape::rm_imm, false, 3});
            t.push_back({alu[k], {0x83}, k, shape::rm_imm, false, 1});
        }
        t.push_back({mnemonic::test, {0x84}, -1, shape::rm_reg, true, 0});
        t.push_back({mnemonic::test, {0x85}, -1, shape::rm_reg, false, 0});
        t.push_back({mnemonic::test, {0xA8}, -1, shape::acc_imm, true, 1});
        t.push_back({mnemonic::test, {0xA9}, -1, shape::acc_imm, false, 3});
        for (int d : {0, 1}) {
            t.push_back({mnemonic::test, {0xF6}, d, shape::rm_imm, true, 1});
            t.push_back({mnemonic::test, {0xF7}, d, shape::rm_imm, false, 3});
        }
        t.push_back({mnemonic::not_, {0xF6}, 2, shape::rm_only, true, 0});
        t.push_back({mnemonic::not_, {0xF7}, 2, shape::rm_only, false, 0});
        t.push_back({mnemonic::neg, {0xF6}, 3, shape::rm_only, true, 0});
        t.push_back({mnemonic::neg, {0xF7}, 3, shape::rm_only, false, 0});
        t.push_back({mnemonic::inc, {0xFE}, 0, shape::rm_only, true, 0});
        t.push_back({mnemonic::inc, {0xFF}, 0, shape::rm_only, false, 0});
        t.push_back({mnemonic::dec, {0xFE}, 1, shape::rm_only, true, 0});
        t.push_back({mnemonic::dec, {0xFF}, 1, shape::rm_only, false, 0});
        t.push_back({mnemonic::mov, {0x88}, -1, shape::rm_reg, true, 0});
        t.push_back({mnemonic::mov, {0x89}, -1, shape::rm_reg, false, 0});
        t.push_back({mnemonic::mov, {0x8A}, -1, shape::reg_rm, true, 0});
        t.push_back({mnemonic::mov, {0x8B}, -1, shape::reg_rm, false, 0});
        t.push_back({mnemonic::mov, {0xC6}, 0, shape::rm_imm, true, 1});
        t.push_back({mnemonic::mov, {0xC7}, 0, shape::rm_imm, false, 3});
        t.push_back({mnemonic::mov, {0xA0}, -1, shape::acc_moffs, true, 0});
        t.push_back({mnemonic::mov, {0xA1}, -1, shape::acc_moffs, false, 0});
        t.push_back({mnemonic::mov, {0xA2}, -1, shape::moffs_acc, true, 0});
        t.push_back({mnemonic::mov, {0xA3}, -1, shape::moffs_acc, false, 0});
        t.push_back({mnemonic::movzx, {0x0F, 0xB6}, -1, shape::movx, false, 0, 1});
        t.push_back({mnemonic::movzx, {0x0F, 0xB7}, -1, shape::movx, false, 0, 2});
        t.push_back({mnemonic::movsx, {0x0F, 0xBE}, -1, shape::movx, false, 0, 1});
        t.push_back({mnemonic::movsx, {0x0F, 0xBF}, -1, shape::movx, false, 0, 2});
        t.push_back({mnemonic::movsxd, {0x63}, -1, shape::movx, false, 0, 4});
        t.push_back({mnemonic::movnti, {0x0F, 0xC3}, -1, shape::rm_reg, false, 0, 0, true});
        t.push_back({mnemonic::xchg, {0x86}, -1, shape::rm_reg, true, 0});
        t.push_back({mnemonic::xchg, {0x87}, -1, shape::rm_reg, false, 0});
        t.push_back({mnemonic::cmpxchg, {0x0F, 0xB0}, -1, shape::rm_reg, true, 0});
        t.push_back({mnemonic::cmpxchg, {0x0F, 0xB1}, -1, shape::rm_reg, false, 0});
        t.push_back({mnemonic::xadd, {0x0F, 0xC0}, -1, shape::rm_reg, true, 0});
        t.push_back({mnemonic::xadd, {0x0F, 0xC1}, -1, shape::rm_reg, false, 0});
        const mnemonic bts[4] = {mnemonic::bt, mnemonic::bts, mnemonic::btr, mnemonic::btc};
        const std::uint8_t bt_reg_ops[4] = {0xA3, 0xAB, 0xB3, 0xBB};
        for (int k = 0; k < 4; ++k) {
            t.push_back({bts[k], {0x0F, bt_reg_ops[k]}, -1, shape::bt_reg, false, 0});
            t.push_back({bts[k], {0x0F, 0xBA}, 4 + k, shape::bt_imm, false, 1});
        }
        t.push_back({mnemonic::movs, {0xA4}, -1, shape::string, true, 0});
        t.push_back({mnemonic::movs, {0xA5}, -1, shape::string, false, 0});
        t.push_back({mnemonic::stos, {0xAA}, -1, shape::string, true, 0});
        t.push_back({mnemonic::stos, {0xAB}, -1, shape::string, false, 0});
        t.push_back({mnemonic::lods, {0xAC}, -1, shape::string, true, 0});
        t.push_back({mnemonic::lods, {0xAD}, -1, shape::string, false, 0});
        return t;
    }();
    return v;
}

bool lockable(mnemonic m) {
    switch (m) {
    case mnemonic::add: case mnemonic::or_: case mnemonic::adc: case mnemonic::sbb: case mnemonic::and_:
    case mnemonic::sub: case mnemonic::xor_: case mnemonic::not_: case mnemonic::neg: case mnemonic::inc:
    case mnemonic::dec: case mnemonic::bts: case mnemonic::btr: case mnemonic::btc: case mnemonic::xchg:
    case mnemonic::cmpxchg: case mnemonic::xadd:
        return true;
    default:
        return false;
    }
}

std::uint64_t defined_flags(mnemonic m) {
    namespace a = hv::insn::alu;
    constexpr std::uint64_t df = 1u << 10;
    switch (m) {
    case mnemonic::and_: case mnemonic::or_: case mnemonic::xor_: case mnemonic::test:
        return (a::arith & ~a::af) | df;  // AF undefined
    case mnemonic::bt: case mnemonic::bts: case mnemonic::btr: case mnemonic::btc:
        return a::cf | a::zf | df;  // OF SF AF PF undefined, ZF unaffected
    default:
        return a::arith | df;  // defined, or unaffected (and so compared too)
    }
}

namespace {

class gen {
public:
    explicit gen(std::mt19937_64& r) : rng_{r} {}
    std::uint64_t below(std::uint64_t n) { return rng_() % n; }
    std::uint64_t any() { return rng_(); }
    bool chance(unsigned one_in) { return below(one_in) == 0; }
    // Register values: mostly wide random, sometimes small or at a boundary.
    std::uint64_t value() {
        switch (below(6)) {
        case 0: return below(4);
        case 1: return 0 - below(4);
        case 2: return (std::uint64_t{1} << (8 * (1u << below(4)) - 1)) - below(3);  // around 0x7f.., 0x7fff.., ...
        default: return any();
        }
    }
    int reg() {  // any GPR but RSP (the native stub runs on the host stack)
        int r;
        do r = static_cast<int>(below(16)); while (r == 4);
        return r;
    }

private:
    std::mt19937_64& rng_;
};

void put_le(std::vector<std::uint8_t>& out, std::uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

} // namespace

test_case make_case64(const tmpl& t, const case_env& env, std::mt19937_64& rng) {
    gen g{rng};
    test_case c;
    c.mnem = t.m;
    c.flag_mask = defined_flags(t.m);
    c.memory.resize(case_memory_size);
    for (auto& b : c.memory) b = static_cast<std::uint8_t>(g.any());
    for (auto& r : c.regs.gpr) r = g.value();
    c.regs.gpr[4] = 0;
    c.regs.rflags = 0x202 | (g.any() & hv::insn::alu::arith) | (g.chance(2) ? (1u << 10) : 0);

    const bool is_string = t.sh == shape::string;
    const bool has_rm = !(t.sh == shape::acc_imm || t.sh == shape::acc_moffs || t.sh == shape::moffs_acc || is_string);
    unsigned os = 1;
    if (!t.byte) os = t.m == mnemonic::movnti ? (g.chance(2) ? 4 : 8) : (1u << (1 + g.below(3)));
    const unsigned as = g.chance(4) ? 4 : 8;
    const bool mem = has_rm ? (t.mem_only || !g.chance(5)) : (t.sh != shape::acc_imm);
    const bool dst_is_rm = t.sh == shape::rm_reg || t.sh == shape::rm_imm || t.sh == shape::rm_only ||
                           t.sh == shape::bt_reg || t.sh == shape::bt_imm;
    const std::uint64_t target = env.mem_base + 1024 + g.below(case_memory_size - 2048);

    // Segment override: none, a no-op one (ES/CS/SS/DS), or FS/GS (64-bit addressing only).
    std::uint8_t seg_prefix = 0;
    std::uint64_t seg_base = 0;
    const bool seg_applies = (has_rm && mem) || t.sh == shape::acc_moffs || t.sh == shape::moffs_acc ||
                             t.m == mnemonic::movs || t.m == mnemonic::lods;
    if (g.chance(6)) {
        const std::uint8_t noop[4] = {0x26, 0x2E, 0x36, 0x3E};
        seg_prefix = noop[g.below(4)];
    } else if (seg_applies && as == 8 && g.chance(6)) {
        seg_prefix = g.chance(2) ? 0x64 : 0x65;
        seg_base = seg_prefix == 0x64 ? env.fs_base : env.gs_base;
    }

    std::vector<std::uint8_t> legacy;
    legacy.reserve(8);
    if (seg_prefix) legacy.push_back(seg_prefix);
    if (os == 2 || (t.byte && g.chance(8))) legacy.push_back(0x66);
    if (as == 4) legacy.push_back(0x67);
    if (is_string && !g.chance(3)) legacy.push_back(g.chance(2) ? 0xF3 : 0xF2);
    const bool locked = lockable(t.m) && mem && dst_is_rm && t.m != mnemonic::bt && g.chance(3);
    if (locked) legacy.push_back(0xF0);
    std::shuffle(legacy.begin(), legacy.end(), rng);

    std::uint8_t rex = os == 8 ? 0x08 : 0;
    if (t.byte && g.chance(8)) rex |= 0x08;  // REX.W does nothing to byte operations

    std::vector<std::uint8_t> body(t.op.begin(), t.op.end());
    int disp_patch = -1;  // RIP-relative: offset of disp32 within body
    const unsigned opsize = t.byte ? 1 : os;

    if (has_rm) {
        int regop = t.digit >= 0 ? t.digit : g.reg();
        mem_spec ms;
        int rmreg = -1;
        bool rip_relative = false;
        if (mem) {
            const auto kind = g.below(10);
            ms.base = kind == 0 ? no_reg : kind == 1 ? rip_base : g.reg();
            ms.index = g.chance(2) ? g.reg() : no_reg;
            ms.scale = 1u << g.below(4);
            if (seg_base && (ms.base == no_reg || ms.base == rip_base)) ms.base = g.reg();
            // The bit-offset register of BT and the accumulator compared by CMPXCHG keep
            // values of their own, so they are not address registers here.
            auto clash = [&](int r) {
                return (t.sh == shape::bt_reg && r == regop) || (t.m == mnemonic::cmpxchg && r == 0);
            };
            while (ms.base >= 0 && clash(ms.base)) ms.base = g.reg();
            while (ms.index >= 0 && clash(ms.index)) ms.index = g.reg();
            rip_relative = ms.base == rip_base;

            const std::uint64_t ea = target - seg_base;
            const std::uint64_t garbage = as == 4 ? (g.any() << 32) : 0;
            std::uint64_t index_value = 0;
            if (ms.index >= 0) index_value = static_cast<std::uint64_t>(static_cast<std::int64_t>(g.below(601)) - 300) + garbage;
            if (ms.base >= 0 && ms.base == ms.index) {
                const std::uint64_t k = 1 + ms.scale;
                const std::uint64_t v = ea / k;
                ms.disp = static_cast<std::int64_t>(ea - v * k);
                ms.disp_size = g.chance(2) ? 1 : 4;
                c.regs.gpr[ms.base] = v + garbage;
            } else if (ms.base >= 0) {
                switch (g.below(4)) {
                case 0: ms.disp = 0; break;
                case 1: ms.disp = static_cast<std::int8_t>(g.any()); break;
                case 2: ms.disp = static_cast<std::int64_t>(g.below(0x10000)) - 0x8000; break;
                default: ms.disp = static_cast<std::int32_t>(g.any()); break;
                }
                ms.disp_size = min_disp_size(ms, false);
                if (ms.disp_size < 4 && g.chance(4)) ms.disp_size = (ms.disp_size == 0 && g.chance(2)) ? 1 : 4;
                if (ms.index >= 0) c.regs.gpr[ms.index] = index_value;
                c.regs.gpr[ms.base] = ea - index_value * ms.scale - static_cast<std::uint64_t>(ms.disp) + garbage;
            } else if (ms.base == no_reg) {
                // An absolute disp32 is sign-extended: keep ea - index*scale below 2 GiB.
                if (as == 8 && ea - index_value * ms.scale >= 0x80000000u) ms.index = no_reg;
                if (ms.index < 0) index_value = 0;
                if (ms.index >= 0) c.regs.gpr[ms.index] = index_value;
                ms.disp = static_cast<std::int32_t>(static_cast<std::uint32_t>(ea - index_value * ms.scale));
                ms.disp_size = 4;
                if (g.chance(2)) rex |= 0x01;  // REX.B is ignored without a base
            } else {
                if (ms.index >= 0) ms.index = no_reg;  // RIP-relative has no index
                ms.disp = 0;                            // patched below
                ms.disp_size = 4;
            }
        } else {
            rmreg = g.reg();
        }
        // Byte registers 4-7 are AH..BH without REX, SPL..DIL with one.
        bool byte_reg = t.byte;
        const bool src_byte = t.sh == shape::movx && t.src == 1;
        auto e = mem ? encode_mem(ms, static_cast<unsigned>(regop)) : encode_reg(static_cast<unsigned>(rmreg), static_cast<unsigned>(regop));
        rex |= e.rex;
        if (t.digit < 0 && regop >= 8) rex |= 0x04;
        if (!rex && g.chance(6)) rex = 0x40;
        if (!rex && (byte_reg || src_byte) && g.chance(3)) {
            // Use AH..BH: re-encode with a register number 4-7.
            const int high = 4 + static_cast<int>(g.below(4));
            if (!mem && (byte_reg || src_byte)) rmreg = high;
            else if (byte_reg && t.digit < 0) regop = high;
            e = mem ? encode_mem(ms, static_cast<unsigned>(regop)) : encode_reg(static_cast<unsigned>(rmreg), static_cast<unsigned>(regop));
        }
        if (t.m == mnemonic::bt || t.m == mnemonic::bts || t.m == mnemonic::btr || t.m == mnemonic::btc) {
            if (t.sh == shape::bt_reg && mem) {
                // Bit offset within ±2048 bits of the operand: the access stays in the buffer.
                const auto off = static_cast<std::uint64_t>(static_cast<std::int64_t>(g.below(4097)) - 2048);
                c.regs.gpr[regop] = (c.regs.gpr[regop] & ~hv::insn::alu::mask(opsize)) | (off & hv::insn::alu::mask(opsize));
            }
        }
        if (e.disp_offset >= 0 && rip_relative) disp_patch = static_cast<int>(body.size()) + e.disp_offset;
        body.insert(body.end(), e.bytes.begin(), e.bytes.end());
        if (t.imm == 1) put_le(body, g.any(), 1);
        if (t.imm == 3) put_le(body, g.any(), opsize == 2 ? 2 : 4);
        if (t.m == mnemonic::cmpxchg && g.chance(2)) {
            // Half the time the accumulator equals the destination (the exchange happens).
            std::uint64_t cur = 0;
            if (mem) {
                // The destination is at `target`; read it from the case memory.
                for (unsigned i = 0; i < opsize; ++i) cur |= std::uint64_t{c.memory[target - env.mem_base + i]} << (8 * i);
            } else if (rmreg >= 4 && rmreg < 8 && !rex && t.byte) {
                cur = (c.regs.gpr[rmreg - 4] >> 8) & 0xff;
            } else {
                cur = c.regs.gpr[rmreg];
            }
            c.regs.gpr[0] = (c.regs.gpr[0] & ~hv::insn::alu::mask(opsize)) | (cur & hv::insn::alu::mask(opsize));
        }
    } else if (t.sh == shape::acc_imm) {
        if (!rex && g.chance(6)) rex = 0x40;
        put_le(body, g.any(), t.imm == 1 ? 1 : (opsize == 2 ? 2 : 4));
    } else if (t.sh == shape::acc_moffs || t.sh == shape::moffs_acc) {
        if (!rex && g.chance(6)) rex = 0x40;
        put_le(body, target - seg_base, as);
    } else {  // string
        const std::uint64_t garbage = as == 4 ? (g.any() << 32) : 0;
        c.regs.gpr[6] = env.mem_base + 1024 + g.below(case_memory_size - 2048) - seg_base + garbage;  // rSI
        c.regs.gpr[7] = env.mem_base + 1024 + g.below(case_memory_size - 2048) + garbage;             // rDI
        c.regs.gpr[1] = g.below(17) + (as == 4 ? (g.any() << 32) : 0);                             // rCX
        if (!rex && g.chance(6)) rex = 0x40;
    }

    c.bytes = legacy;
    if (rex) c.bytes.push_back(static_cast<std::uint8_t>(0x40 | rex));
    const std::size_t body_at = c.bytes.size();
    c.bytes.insert(c.bytes.end(), body.begin(), body.end());
    if (disp_patch >= 0) {
        const std::uint64_t next = env.insn_address + c.bytes.size();
        const auto d = static_cast<std::uint32_t>(target - next);
        for (unsigned i = 0; i < 4; ++i) c.bytes[body_at + static_cast<std::size_t>(disp_patch) + i] = static_cast<std::uint8_t>(d >> (8 * i));
    }
    c.text = disasm(c.bytes, hv::insn::mode::code64);
    return c;
}

} // namespace insn_test

namespace insn_test {

legacy_case make_case_legacy(const tmpl& t, hv::insn::mode md, const case_env& env, std::mt19937_64& rng) {
    using hv::insn::mode;
    gen g{rng};
    legacy_case c;
    c.md = md;
    c.mnem = t.m;
    c.flag_mask = defined_flags(t.m);
    const bool moffs = t.sh == shape::acc_moffs || t.sh == shape::moffs_acc;
    const bool has_rm = !(t.sh == shape::acc_imm || moffs || t.sh == shape::string);
    if ((!has_rm && !moffs) || t.m == mnemonic::movsxd) return c;

    c.memory.resize(case_memory_size);
    for (auto& b : c.memory) b = static_cast<std::uint8_t>(g.any());
    for (auto& r : c.regs.gpr) r = g.value();
    c.regs.rflags = 0x202 | (g.any() & hv::insn::alu::arith) | (g.chance(2) ? (1u << 10) : 0);
    c.eip = 0x1000 + g.below(0xFFFF0000u);
    c.target = env.mem_base + 1024 + g.below(case_memory_size - 2048);

    const unsigned def = md == mode::code32 ? 4 : 2;
    unsigned os = t.byte ? 1 : (t.m == mnemonic::movnti ? 4 : (g.chance(2) ? 2 : 4));
    const bool p66 = t.m == mnemonic::movnti ? false : (t.byte ? g.chance(8) : os != def);
    const unsigned as = g.chance(3) ? (def == 4 ? 2 : 4) : def;
    const bool locked = lockable(t.m) && moffs == false && t.m != mnemonic::bt &&
                        (t.sh == shape::rm_reg || t.sh == shape::rm_imm || t.sh == shape::rm_only ||
                         t.sh == shape::bt_reg || t.sh == shape::bt_imm) && g.chance(3);
    std::vector<std::uint8_t> legacy;
    legacy.reserve(8);
    if (g.chance(3)) {
        const std::uint8_t segs[6] = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65};
        legacy.push_back(segs[g.below(6)]);
    }
    if (p66) legacy.push_back(0x66);
    if (as != def) legacy.push_back(0x67);
    if (locked) legacy.push_back(0xF0);
    std::shuffle(legacy.begin(), legacy.end(), rng);

    // Data registers must be usable natively: not ESP, and not EDI (the [rdi] pointer);
    // byte registers 4-7 are AH..BH (no REX here), which are fine.
    auto data_reg = [&](bool byte) {
        int r;
        do r = static_cast<int>(g.below(8)); while (!byte && (r == 4 || r == 7));
        return r;
    };
    const int regop = t.digit >= 0 ? t.digit : data_reg(t.byte);
    std::vector<std::uint8_t> body(t.op.begin(), t.op.end());
    std::vector<std::uint8_t> native_body;
    native_body.reserve(16);
    if (moffs) {
        put_le(body, g.any(), as);
        const std::uint8_t nat[4] = {0x8A, 0x8B, 0x88, 0x89};
        native_body.push_back(nat[t.op[0] - 0xA0]);
        native_body.push_back(0x07);
    } else {
        mem_spec ms;
        if (as == 2) {
            const int bases[3] = {3, 5, no_reg}, indexes[3] = {6, 7, no_reg};
            ms.base = bases[g.below(3)];
            ms.index = indexes[g.below(3)];
            ms.disp = static_cast<std::int16_t>(g.any());
            if (ms.base == no_reg && ms.index == no_reg) {
                ms.disp_size = 2;
            } else {
                ms.disp_size = (ms.base == 5 && ms.index == no_reg) ? 1 + g.below(2) : g.below(3);
                if (ms.disp_size == 1) ms.disp = static_cast<std::int8_t>(ms.disp);
            }
            if (ms.disp_size == 0) ms.disp = 0;
            auto e = encode_mem16(ms, static_cast<unsigned>(regop));
            body.insert(body.end(), e.bytes.begin(), e.bytes.end());
        } else {
            ms.base = g.chance(8) ? no_reg : static_cast<int>(g.below(8));
            ms.index = g.chance(2) ? no_reg : static_cast<int>(g.below(8));
            if (ms.index == 4) ms.index = no_reg;
            ms.scale = 1u << g.below(4);
            ms.disp = g.chance(2) ? static_cast<std::int8_t>(g.any()) : static_cast<std::int32_t>(g.any());
            ms.disp_size = min_disp_size(ms, false);
            if (ms.base != no_reg && ms.disp_size == 1 && g.chance(3)) ms.disp_size = 4;
            auto e = encode_mem(ms, static_cast<unsigned>(regop));
            body.insert(body.end(), e.bytes.begin(), e.bytes.end());
        }
        native_body.insert(native_body.end(), t.op.begin(), t.op.end());
        native_body.push_back(static_cast<std::uint8_t>((regop & 7) << 3 | 7));  // [rdi]
    }
    std::vector<std::uint8_t> imm;
    if (t.imm == 1) put_le(imm, g.any(), 1);
    if (t.imm == 3) put_le(imm, g.any(), os == 2 ? 2 : 4);
    body.insert(body.end(), imm.begin(), imm.end());
    native_body.insert(native_body.end(), imm.begin(), imm.end());

    if (t.sh == shape::bt_reg) {
        const auto off = static_cast<std::uint64_t>(static_cast<std::int64_t>(g.below(4097)) - 2048);
        c.regs.gpr[regop] = (c.regs.gpr[regop] & ~hv::insn::alu::mask(os)) | (off & hv::insn::alu::mask(os));
    }
    if (t.m == mnemonic::cmpxchg && g.chance(2)) {
        std::uint64_t cur = 0;
        for (unsigned i = 0; i < os; ++i) cur |= std::uint64_t{c.memory[c.target - env.mem_base + i]} << (8 * i);
        c.regs.gpr[0] = (c.regs.gpr[0] & ~hv::insn::alu::mask(os)) | (cur & hv::insn::alu::mask(os));
    }

    c.bytes = legacy;
    c.bytes.insert(c.bytes.end(), body.begin(), body.end());
    c.native_bytes.clear();
    if (os == 2) c.native_bytes.push_back(0x66);
    if (locked) c.native_bytes.push_back(0xF0);
    c.native_bytes.insert(c.native_bytes.end(), native_body.begin(), native_body.end());
    c.native_rdi = c.target;
    c.text = disasm(c.bytes, md);

    // The guest address, from Zydis: effective address and segment.
    const zydis z{md};
    auto zr = z.decode(c.bytes);
    if (!zr) {
        c.text = "(Zydis rejects the generated bytes) " + hex(c.bytes);
        return c;
    }
    const ZydisDecodedOperand* op = nullptr;
    for (unsigned i = 0; i < zr->insn.operand_count; ++i)
        if (zr->ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && zr->ops[i].visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT) op = &zr->ops[i];
    if (!op) return c;
    ZydisRegisterContext ctx{};
    for (unsigned r = 0; r < 8; ++r) {
        ctx.values[ZydisRegisterEncode(ZYDIS_REGCLASS_GPR32, static_cast<ZyanU8>(r))] = c.regs.gpr[r] & 0xffffffff;
        ctx.values[ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, static_cast<ZyanU8>(r))] = c.regs.gpr[r] & 0xffff;
    }
    ZyanU64 ea = 0;
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddressEx(&zr->insn, op, c.eip, &ctx, &ea))) return c;
    ea &= hv::insn::alu::mask(as);
    // BT's bit offset moves the access; keep that inside the same 64 KiB/4 GiB wrap.
    if (t.sh == shape::bt_reg && (ea < 512 || ea > hv::insn::alu::mask(as) - 512)) return c;
    int sreg = -1;
    const ZydisRegister segs[6] = {ZYDIS_REGISTER_ES, ZYDIS_REGISTER_CS, ZYDIS_REGISTER_SS,
                                   ZYDIS_REGISTER_DS, ZYDIS_REGISTER_FS, ZYDIS_REGISTER_GS};
    for (int i = 0; i < 6; ++i)
        if (op->mem.segment == segs[i]) sreg = i;
    if (sreg < 0) return c;
    c.linear = 0x10000 + g.below(0xF0000000u);
    for (auto& b : c.seg_base) b = g.any() & 0xffffffff;
    c.seg_base[static_cast<unsigned>(sreg)] = (c.linear - ea) & 0xffffffff;
    c.ok = true;
    return c;
}

} // namespace insn_test
