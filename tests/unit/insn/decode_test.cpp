// Decoder against Zydis over a generated corpus: systematic (every opcode of the legacy
// maps × prefix sets × ModRM forms × modes; VEX/EVEX/XOP maps × opcodes) and random.
// For everything Zydis accepts the length must agree; for the emulated instructions
// also mnemonic, operand and address size and every operand; for every legacy
// instruction with a memory operand, that operand.
#include <doctest/doctest.h>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>
#include "libhv/cpu/insn/insn.hpp"
#include "tests/unit/insn/budget.hpp"
#include "tests/unit/insn/zydis_oracle.hpp"

using namespace hv::insn;
using insn_test::zydis;

namespace {

struct tally {
    std::uint64_t cases = 0, zydis_ok = 0, both_reject = 0, only_mine = 0, failures = 0;
    std::uint64_t emulated_checked = 0, mem_checked = 0;
    std::map<std::string, std::uint64_t> only_mine_by_opcode;
    std::map<std::string, std::uint64_t> exempt;  // documented Zydis disagreements, by reason
    std::vector<std::string> first_failures;  // one per (mode, encoding, map, opcode)
    std::map<std::string, std::uint64_t> failure_keys;

    void fail(const std::string& key, std::string s) {
        ++failures;
        if (failure_keys[key]++ == 0 && first_failures.size() < 40) first_failures.push_back(std::move(s));
    }
    void merge(const tally& o) {
        cases += o.cases; zydis_ok += o.zydis_ok; both_reject += o.both_reject; only_mine += o.only_mine;
        failures += o.failures; emulated_checked += o.emulated_checked; mem_checked += o.mem_checked;
        for (auto& [k, v] : o.only_mine_by_opcode) only_mine_by_opcode[k] += v;
        for (auto& [k, v] : o.exempt) exempt[k] += v;
        for (auto& s : o.first_failures) if (first_failures.size() < 40) first_failures.push_back(s);
    }
};

const char* mode_name(mode m) { return m == mode::code16 ? "16" : m == mode::code32 ? "32" : "64"; }

std::string describe(mode m, std::span<const std::uint8_t> b, const insn_test::zydis_result* z) {
    std::string s = std::string("[") + mode_name(m) + "] " + insn_test::hex(b.first(b.size() < 15 ? b.size() : 15));
    if (z) {
        ZydisFormatter f;
        ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
        char buf[256];
        ZydisFormatterFormatInstruction(&f, &z->insn, z->ops, z->insn.operand_count_visible, buf, sizeof buf, 0, nullptr);
        s += std::string("'") + buf + "' zlen=" + std::to_string(z->insn.length);
    }
    return s;
}

// The emulated mnemonic Zydis' decoding corresponds to, if any.
std::optional<mnemonic> expected_mnemonic(const insn_test::zydis_result& z) {
    if (z.insn.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY) return std::nullopt;
    if (z.insn.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT) {
        const auto op = z.insn.opcode;
        // Register-only forms the emulator leaves alone: INC/DEC r, XCHG rAX r, MOV r, imm.
        if ((op >= 0x40 && op <= 0x4F) || (op >= 0x90 && op <= 0x97) || (op >= 0xB0 && op <= 0xBF)) return std::nullopt;
    }
    for (unsigned i = 0; i < z.insn.operand_count_visible; ++i) {
        const auto& o = z.ops[i];
        if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
        const auto c = ZydisRegisterGetClass(o.reg.value);
        if (c != ZYDIS_REGCLASS_GPR8 && c != ZYDIS_REGCLASS_GPR16 && c != ZYDIS_REGCLASS_GPR32 && c != ZYDIS_REGCLASS_GPR64)
            return std::nullopt;
    }
    const std::string n = ZydisMnemonicGetString(z.insn.mnemonic);
    static const std::map<std::string, mnemonic> names = {
        {"add", mnemonic::add}, {"or", mnemonic::or_}, {"adc", mnemonic::adc}, {"sbb", mnemonic::sbb},
        {"and", mnemonic::and_}, {"sub", mnemonic::sub}, {"xor", mnemonic::xor_}, {"cmp", mnemonic::cmp},
        {"test", mnemonic::test}, {"not", mnemonic::not_}, {"neg", mnemonic::neg}, {"inc", mnemonic::inc},
        {"dec", mnemonic::dec}, {"mov", mnemonic::mov}, {"movzx", mnemonic::movzx}, {"movsx", mnemonic::movsx},
        {"movsxd", mnemonic::movsxd}, {"movnti", mnemonic::movnti}, {"xchg", mnemonic::xchg},
        {"cmpxchg", mnemonic::cmpxchg}, {"xadd", mnemonic::xadd}, {"bt", mnemonic::bt}, {"bts", mnemonic::bts},
        {"btr", mnemonic::btr}, {"btc", mnemonic::btc},
    };
    if (auto it = names.find(n); it != names.end()) return it->second;
    if (z.insn.meta.category == ZYDIS_CATEGORY_STRINGOP && n.size() == 5) {
        const std::string stem = n.substr(0, 4);
        if (stem == "movs") return mnemonic::movs;
        if (stem == "stos") return mnemonic::stos;
        if (stem == "lods") return mnemonic::lods;
    }
    return std::nullopt;
}

std::uint64_t mask_bits(unsigned bits) { return bits >= 64 ? ~0ull : (1ull << bits) - 1; }

// Compares a memory reference; returns an empty string when equal.
std::string compare_mem(const mem_ref& m, unsigned address_size, const ZydisDecodedOperand& o) {
    std::string why;
    const std::string base = insn_test::reg_name(m.base, address_size);
    const std::string index = insn_test::reg_name(m.index, address_size);
    if (base != insn_test::zreg(o.mem.base)) why += " base " + base + "/" + insn_test::zreg(o.mem.base);
    if (index != insn_test::zreg(o.mem.index)) why += " index " + index + "/" + insn_test::zreg(o.mem.index);
    if (m.index != reg::none && m.scale != o.mem.scale) why += " scale";
    const std::uint64_t am = mask_bits(8 * address_size);
    if ((static_cast<std::uint64_t>(m.disp) & am) != (static_cast<std::uint64_t>(o.mem.disp.value) & am)) why += " disp";
    if (o.mem.type == ZYDIS_MEMOP_TYPE_MEM && insn_test::seg_name(m.segment) != insn_test::zreg(o.mem.segment))
        why += " segment " + insn_test::seg_name(m.segment) + "/" + insn_test::zreg(o.mem.segment);
    return why;
}

std::string compare_operand(const instruction& in, const operand& a, const ZydisDecodedOperand& o) {
    switch (a.kind) {
    case opkind::reg:
        if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) return " kind";
        if (insn_test::reg_name(a.r, a.size) != insn_test::zreg(o.reg.value))
            return " reg " + insn_test::reg_name(a.r, a.size) + "/" + insn_test::zreg(o.reg.value);
        return {};
    case opkind::mem: {
        if (o.type != ZYDIS_OPERAND_TYPE_MEMORY) return " kind";
        std::string why = compare_mem(a.m, in.address_size, o);
        if (a.size * 8u != o.size) why += " size " + std::to_string(a.size * 8) + "/" + std::to_string(o.size);
        return why;
    }
    case opkind::imm:
        if (o.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return " kind";
        if (a.imm != (o.imm.value.u & mask_bits(8 * a.size))) return " imm";
        return {};
    default:
        return " none";
    }
}

// Zydis 4.0 reports base r13d (and no displacement, though its length counts one) for
// SIB.base=101, mod=00 with REX.B under 32-bit addressing in 64-bit mode; the SDM
// (Vol. 2, Table 2-5) says no base, disp32. The native emulator test runs this form.
bool zydis_r13d_bug(const instruction& in, const ZydisDecodedOperand& zm) {
    return in.address_size == 4 && (in.rex & 1) && in.has_modrm && (in.modrm >> 6) == 0 && (in.modrm & 7) == 4 &&
           zm.type == ZYDIS_OPERAND_TYPE_MEMORY && zm.mem.base == ZYDIS_REGISTER_R13D;
}

void check_one(const zydis& z, std::span<const std::uint8_t> b, tally& t) {
    ++t.cases;
    const auto zr = z.decode(b);
    const auto mine = decode(b, z.mode());
    if (!zr) {
        if (mine && mine->mnem != mnemonic::other)
            return t.fail(std::string("reject ") + mode_name(z.mode()), describe(z.mode(), b, nullptr) + " Zydis rejects, decoded as emulated " + to_string(mine->mnem));
        if (mine) {
            ++t.only_mine;
            char key[64];
            std::snprintf(key, sizeof key, "%s enc%d map%d op%02x", mode_name(z.mode()), static_cast<int>(mine->enc), mine->map, mine->opcode);
            ++t.only_mine_by_opcode[key];
        } else {
            ++t.both_reject;
        }
        return;
    }
    ++t.zydis_ok;
    char keybuf[64];
    std::snprintf(keybuf, sizeof keybuf, "%s %d %d %02x", mode_name(z.mode()), static_cast<int>(zr->insn.encoding),
                  static_cast<int>(zr->insn.opcode_map), zr->insn.opcode);
    const std::string key = keybuf;
    // Knights Corner instructions (VEX 0F 84/85 JKZD/JKNZD) never existed in this form
    // on a shipping CPU; hardware raises #UD and so does this decoder.
    const auto ext = zr->insn.meta.isa_ext;
    if (ext == ZYDIS_ISA_EXT_KNC || ext == ZYDIS_ISA_EXT_KNCE || ext == ZYDIS_ISA_EXT_KNCV) {
        ++t.exempt["KNC encoding (#UD on real CPUs)"];
        return;
    }
    if (!mine) return t.fail(key, describe(z.mode(), b, &*zr) + " rejected: " + mine.err().what);
    if (mine->length != zr->insn.length)
        return t.fail(key, describe(z.mode(), b, &*zr) + " length " + std::to_string(mine->length));

    // Every legacy-encoded instruction: the explicit memory operand.
    if (zr->insn.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY || zr->insn.encoding == ZYDIS_INSTRUCTION_ENCODING_3DNOW) {
        const ZydisDecodedOperand* zm = nullptr;
        for (unsigned i = 0; i < zr->insn.operand_count; ++i)
            if (zr->ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && zr->ops[i].visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT) {
                zm = &zr->ops[i];
                break;
            }
        if (zm && (zr->insn.attributes & ZYDIS_ATTRIB_HAS_NOTRACK) && zm->mem.type == ZYDIS_MEMOP_TYPE_MEM &&
            mine->mem.segment == hv::insn::seg::ds && zm->mem.segment != ZYDIS_REGISTER_DS) {
            // 3E on an indirect branch: Zydis reads it as NOTRACK only (CET), this decoder
            // also as the DS override it is on CPUs without CET.
            ++t.exempt["NOTRACK 3E as segment"];
            return;
        }
        if ((zm != nullptr) != mine->has_mem)
            return t.fail(key, describe(z.mode(), b, &*zr) + " has_mem " + std::to_string(mine->has_mem));
        if (zm && zydis_r13d_bug(*mine, *zm)) {
            ++t.exempt["Zydis: SIB base 101 + REX.B + 67"];
            zm = nullptr;
        }
        // MPX ignores 67 in 64-bit mode in Zydis; not emulated, length agrees.
        if (zm && zr->insn.meta.isa_set == ZYDIS_ISA_SET_MPX && mine->address_size != zr->insn.address_width / 8) {
            ++t.exempt["MPX address size"];
            zm = nullptr;
        }
        if (zm) {
            ++t.mem_checked;
            if (auto why = compare_mem(mine->mem, mine->address_size, *zm); !why.empty())
                return t.fail(key, describe(z.mode(), b, &*zr) + " mem:" + why);
        }
    }

    const auto want = expected_mnemonic(*zr);
    if (!want) {
        if (mine->mnem != mnemonic::other)
            t.fail(key, describe(z.mode(), b, &*zr) + " decoded as emulated " + to_string(mine->mnem));
        return;
    }
    ++t.emulated_checked;
    std::string why;
    if (mine->mnem != *want) why += std::string(" mnemonic ") + to_string(mine->mnem);
    // MOVNTI has no 16-bit form: the operands are 32-bit whatever Zydis' operand width says.
    if (mine->operand_size * 8u != zr->insn.operand_width && *want != mnemonic::movnti) why += " operand size " + std::to_string(mine->operand_size);
    if (mine->address_size * 8u != zr->insn.address_width) why += " address size " + std::to_string(mine->address_size);
    const bool string_op = *want == mnemonic::movs || *want == mnemonic::stos || *want == mnemonic::lods;
    const unsigned zcount = string_op ? 2 : zr->insn.operand_count_visible;
    if (mine->operand_count != zcount) why += " operand count " + std::to_string(mine->operand_count);
    for (unsigned i = 0; why.empty() && i < zcount; ++i) {
        if (zydis_r13d_bug(*mine, zr->ops[i])) {
            ++t.exempt["Zydis: SIB base 101 + REX.B + 67"];
            continue;
        }
        std::string w = compare_operand(*mine, mine->operands[i], zr->ops[i]);
        // Zydis gives MOVSXD r16 a 32-bit source; the SDM says r/m16 (MOVSXD r16, r/m16).
        if (*want == mnemonic::movsxd && mine->operand_size == 2 && i == 1 && w == " size 16/32") w.clear();
        if (!w.empty()) why += " op" + std::to_string(i) + w;
    }
    if (!why.empty()) t.fail(key, describe(z.mode(), b, &*zr) + why);
}

constexpr mode all_modes[] = {mode::code16, mode::code32, mode::code64};

std::vector<std::vector<std::uint8_t>> prefix_sets(mode m) {
    std::vector<std::vector<std::uint8_t>> p = {
        {}, {0x66}, {0x67}, {0xF3}, {0xF2}, {0xF0}, {0x66, 0x67}, {0x2E}, {0x64}, {0x65, 0x66},
        {0xF0, 0x66}, {0xF3, 0x66}, {0x66, 0xF2}, {0x36, 0x67, 0xF0},
    };
    if (m == mode::code64) {
        for (std::vector<std::uint8_t> r : {std::vector<std::uint8_t>{0x48}, {0x41}, {0x4C}, {0x42}, {0x40}, {0x4F},
                                             {0x66, 0x48}, {0x48, 0x66}, {0xF0, 0x49}, {0x67, 0x4B}, {0xF3, 0x48}, {0x66, 0x45}})
            p.push_back(r);
    }
    return p;
}

void fill_random(std::mt19937_64& rng, std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(rng());
}

// Systematic legacy corpus: prefixes × {1-byte, 0F, 0F38, 0F3A} × opcode × ModRM.
tally systematic_legacy(mode m, std::mt19937_64& rng) {
    const zydis z{m};
    tally t;
    static const std::vector<std::vector<std::uint8_t>> escapes = {{}, {0x0F}, {0x0F, 0x38}, {0x0F, 0x3A}};
    // ModRM subset for prefixed cases: each mod × rm {0, 4 (SIB), 5, 6} × every reg.
    std::vector<std::uint8_t> modrm_subset;
    for (unsigned mod = 0; mod < 4; ++mod)
        for (unsigned rm : {0u, 4u, 5u, 6u})
            for (unsigned reg = 0; reg < 8; ++reg) modrm_subset.push_back(static_cast<std::uint8_t>(mod << 6 | reg << 3 | rm));
    const auto prefixes = prefix_sets(m);
    std::vector<std::uint8_t> all_modrm(256);
    for (unsigned i = 0; i < 256; ++i) all_modrm[i] = static_cast<std::uint8_t>(i);
    std::uint8_t buf[32];
    // Under sanitizers: 16 random ModRM bytes per (prefixes, map, opcode).
    std::vector<std::uint8_t> sampled(16);
    for (std::size_t pi = 0; pi < prefixes.size(); ++pi) {
        const auto& pre = prefixes[pi];
        const auto& modrms = insn_test::sanitized ? sampled : pi == 0 ? all_modrm : modrm_subset;
        for (const auto& esc : escapes) {
            for (unsigned op = 0; op < 256; ++op) {
                if (insn_test::sanitized)
                    for (auto& m : sampled) m = static_cast<std::uint8_t>(rng());
                for (std::uint8_t modrm : modrms) {
                    std::size_t n = 0;
                    for (auto x : pre) buf[n++] = x;
                    for (auto x : esc) buf[n++] = x;
                    buf[n++] = static_cast<std::uint8_t>(op);
                    buf[n++] = modrm;
                    fill_random(rng, buf + n, sizeof buf - n);
                    if (rng() & 1) buf[n] = static_cast<std::uint8_t>((buf[n] & 0xF8) | 5);  // SIB base 5
                    check_one(z, std::span<const std::uint8_t>(buf, sizeof buf), t);
                }
            }
        }
    }
    return t;
}

// VEX (C5, C4), EVEX and XOP: every map × opcode with random payload bits.
tally systematic_vex(mode m, std::mt19937_64& rng) {
    const zydis z{m};
    tally t;
    std::uint8_t buf[32];
    struct form { std::uint8_t esc; std::uint8_t map; };
    const form forms[] = {{0xC5, 1}, {0xC4, 1}, {0xC4, 2}, {0xC4, 3}, {0x62, 1}, {0x62, 2}, {0x62, 3}, {0x62, 5},
                          {0x62, 6}, {0x8F, 8}, {0x8F, 9}, {0x8F, 10}};
    for (const auto& f : forms) {
        for (unsigned op = 0; op < 256; ++op) {
            // Every pp × L × W, vvvv mostly unused (1111), the rest random.
            for (unsigned k = 0; k < 48 / insn_test::scale_down; ++k) {
                fill_random(rng, buf, sizeof buf);
                const unsigned pp = k & 3, l = (k >> 2) & 1, w = (k >> 3) & 1;
                const unsigned vvvv = (k >> 4) == 2 ? (rng() & 15) : 15;
                std::size_t n = 0;
                if (rng() & 1) buf[n++] = 0x67;
                buf[n++] = f.esc;
                std::uint8_t& p0 = buf[n++];
                if (m != mode::code64) p0 |= 0xC0;  // R̄ X̄ = 11 outside 64-bit mode
                const auto wvvvvlpp = static_cast<std::uint8_t>(w << 7 | vvvv << 3 | l << 2 | pp);
                if (f.esc == 0xC5) {
                    p0 = static_cast<std::uint8_t>((p0 & 0x80) | (wvvvvlpp & 0x7F));
                } else if (f.esc == 0x62) {
                    p0 = static_cast<std::uint8_t>((p0 & 0xF0) | f.map);
                    buf[n++] = static_cast<std::uint8_t>(wvvvvlpp | 0x04);  // W vvvv 1 pp
                    buf[n] = static_cast<std::uint8_t>((buf[n] & 0x17) | 0x08 | (l << 5));  // z=0 L'L b V'=1 aaa
                    n += 1;
                } else {
                    p0 = static_cast<std::uint8_t>((p0 & 0xE0) | f.map);
                    buf[n++] = wvvvvlpp;
                }
                buf[n++] = static_cast<std::uint8_t>(op);
                check_one(z, std::span<const std::uint8_t>(buf, sizeof buf), t);
            }
        }
    }
    return t;
}

// Random bytes, starting with a prefix-rich run.
tally random_corpus(mode m, std::mt19937_64& rng, unsigned count) {
    const zydis z{m};
    tally t;
    static const std::uint8_t prefix_pool[] = {0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65,
                                               0x40, 0x48, 0x41, 0x44, 0x4C, 0x0F, 0x0F};
    std::uint8_t buf[32];
    for (unsigned i = 0; i < count; ++i) {
        fill_random(rng, buf, sizeof buf);
        const unsigned npre = static_cast<unsigned>(rng() % 5);
        for (unsigned k = 0; k < npre; ++k) buf[k] = prefix_pool[rng() % sizeof prefix_pool];
        check_one(z, std::span<const std::uint8_t>(buf, sizeof buf), t);
    }
    return t;
}

void report(const char* what, const tally& t) {
    std::printf("insn decode corpus %-12s cases %9llu  zydis-accepted %9llu  agree %s  failures %llu  "
                "emulated-checked %llu  mem-checked %llu  only-insn-accepts %llu  both-reject %llu\n",
                what, static_cast<unsigned long long>(t.cases), static_cast<unsigned long long>(t.zydis_ok),
                t.failures ? "NO" : "yes", static_cast<unsigned long long>(t.failures),
                static_cast<unsigned long long>(t.emulated_checked), static_cast<unsigned long long>(t.mem_checked),
                static_cast<unsigned long long>(t.only_mine), static_cast<unsigned long long>(t.both_reject));
    for (const auto& [k, v] : t.exempt) std::printf("  exempt %-40s %llu\n", k.c_str(), static_cast<unsigned long long>(v));
    for (const auto& s : t.first_failures) std::printf("  FAIL %s\n", s.c_str());
}

std::uint64_t seed() {
    static const std::uint64_t s = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
    return s;
}

} // namespace

TEST_CASE("decoder agrees with Zydis: systematic legacy corpus, every mode") {
    std::mt19937_64 rng{seed()};
    INFO("seed " << seed());
    tally all;
    for (auto m : all_modes) all.merge(systematic_legacy(m, rng));
    report("legacy", all);
    if (std::getenv("INSN_SHOW_ONLY_MINE"))
        for (auto& [k, v] : all.only_mine_by_opcode) std::printf("  only-insn %s: %llu\n", k.c_str(), static_cast<unsigned long long>(v));
    CHECK(all.failures == 0);
    CHECK(all.zydis_ok > (insn_test::sanitized ? 200000u : 1000000u));
    CHECK(all.emulated_checked > (insn_test::sanitized ? 10000u : 50000u));
}

TEST_CASE("decoder agrees with Zydis on length: VEX, EVEX, XOP maps") {
    std::mt19937_64 rng{seed() + 1};
    INFO("seed " << seed());
    tally all;
    for (auto m : all_modes) all.merge(systematic_vex(m, rng));
    report("vex/evex/xop", all);
    CHECK(all.failures == 0);
    CHECK(all.zydis_ok > 20000 / insn_test::scale_down);
}

TEST_CASE("decoder agrees with Zydis: random corpus") {
    std::mt19937_64 rng{seed() + 2};
    INFO("seed " << seed());
    tally all;
    for (auto m : all_modes) all.merge(random_corpus(m, rng, 300000 / insn_test::scale_down));
    report("random", all);
    if (std::getenv("INSN_SHOW_ONLY_MINE"))
        for (auto& [k, v] : all.only_mine_by_opcode) std::printf("  only-insn %s: %llu\n", k.c_str(), static_cast<unsigned long long>(v));
    CHECK(all.failures == 0);
}
