// Zydis as the test oracle: decoding, register names, address computation.
#pragma once
#include <Zydis/Zydis.h>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include "libhv/cpu/insn/insn.hpp"

namespace insn_test {

struct zydis_result {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

class zydis {
public:
    explicit zydis(hv::insn::mode m) : mode_{m} {
        switch (m) {
        case hv::insn::mode::code16: ZydisDecoderInit(&dec_, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16); break;
        case hv::insn::mode::code32: ZydisDecoderInit(&dec_, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32); break;
        case hv::insn::mode::code64: ZydisDecoderInit(&dec_, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64); break;
        }
    }
    std::optional<zydis_result> decode(std::span<const std::uint8_t> b) const {
        zydis_result r;
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec_, b.data(), b.size(), &r.insn, r.ops))) return std::nullopt;
        return r;
    }
    // Length only (no operand decoding: faster).
    std::optional<unsigned> length(std::span<const std::uint8_t> b) const {
        ZydisDecodedInstruction in;
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec_, nullptr, b.data(), b.size(), &in))) return std::nullopt;
        return in.length;
    }
    hv::insn::mode mode() const { return mode_; }

private:
    ZydisDecoder dec_{};
    hv::insn::mode mode_;
};

// hv::insn register + width → the name Zydis prints.
inline std::string reg_name(hv::insn::reg r, unsigned size) {
    using hv::insn::reg;
    static const char* const q[] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"};
    static const char* const d[] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
    static const char* const w[] = {"ax", "cx", "dx", "bx", "sp", "bp", "si", "di"};
    static const char* const b[] = {"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"};
    static const char* const h[] = {"ah", "ch", "dh", "bh"};
    if (r == reg::none) return "none";
    if (r == reg::rip) return size == 8 ? "rip" : "eip";
    if (hv::insn::is_high_byte(r)) return h[static_cast<unsigned>(r) - static_cast<unsigned>(reg::ah)];
    const unsigned n = static_cast<unsigned>(r);
    if (n < 8) {
        switch (size) {
        case 1: return b[n];
        case 2: return w[n];
        case 4: return d[n];
        default: return q[n];
        }
    }
    std::string s = "r" + std::to_string(n);
    switch (size) {
    case 1: return s + "b";
    case 2: return s + "w";
    case 4: return s + "d";
    default: return s;
    }
}

inline std::string seg_name(hv::insn::seg s) {
    static const char* const n[] = {"es", "cs", "ss", "ds", "fs", "gs"};
    return s == hv::insn::seg::none ? "none" : n[static_cast<unsigned>(s)];
}

inline std::string zreg(ZydisRegister r) {
    const char* s = ZydisRegisterGetString(r);
    return s ? s : "none";
}

inline std::string hex(std::span<const std::uint8_t> b) {
    static const char* const digits = "0123456789abcdef";
    std::string s;
    for (auto x : b) {
        s += digits[x >> 4];
        s += digits[x & 15];
        s += ' ';
    }
    return s;
}

inline std::string disasm(std::span<const std::uint8_t> b, hv::insn::mode m) {
    const zydis z{m};
    auto r = z.decode(b);
    if (!r) return "(zydis: invalid)";
    ZydisFormatter f;
    ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
    char buf[256];
    ZydisFormatterFormatInstruction(&f, &r->insn, r->ops, r->insn.operand_count_visible, buf, sizeof buf, 0, nullptr);
    return buf;
}

} // namespace insn_test
