#include "libhv/cpu/svm/insn_len.hpp"

namespace hv::svm {

namespace {
constexpr error truncated = fail(errc::bad_format, "instruction bytes end before the instruction does");
constexpr error unknown = fail(errc::not_supported, "opcode outside the set intercepted without NRIPS");
constexpr error too_long = fail(errc::bad_format, "instruction longer than 15 bytes");

// Bytes taken by ModRM and what follows it (SIB, displacement), from the ModRM byte.
struct modrm_reader {
    std::span<const std::uint8_t> b;
    bool addr16;
    result<std::size_t> length(std::size_t at) const {
        if (at >= b.size()) return truncated;
        std::uint8_t m = b[at];
        unsigned mod = m >> 6, rm = m & 7;
        if (mod == 3) return std::size_t{1};
        std::size_t n = 1;
        if (addr16) {
            if (mod == 0 && rm == 6) n += 2;
            else if (mod == 1) n += 1;
            else if (mod == 2) n += 2;
            return n;
        }
        if (rm == 4) {
            if (at + 1 >= b.size()) return truncated;
            n += 1;
            if (mod == 0 && (b[at + 1] & 7) == 5) n += 4;
        }
        if (mod == 0 && rm == 5) n += 4;  // disp32, RIP-relative in 64-bit mode
        else if (mod == 1) n += 1;
        else if (mod == 2) n += 4;
        return n;
    }
};

bool legacy_prefix(std::uint8_t b) {
    switch (b) {
    case 0x66: case 0x67: case 0xf0: case 0xf2: case 0xf3:
    case 0x26: case 0x2e: case 0x36: case 0x3e: case 0x64: case 0x65:
        return true;
    }
    return false;
}
} // namespace

result<std::uint8_t> instruction_length(std::span<const std::uint8_t> bytes, code_mode mode) {
    std::size_t i = 0;
    bool adsize = false;
    for (;; ++i) {
        if (i >= bytes.size()) return truncated;
        if (i >= max_instruction_length) return too_long;
        std::uint8_t b = bytes[i];
        if (b == 0x67) adsize = true;
        if (legacy_prefix(b)) continue;
        // REX only counts right before the opcode; one followed by a prefix is ignored
        // by the CPU but still occupies a byte, which the loop accounts for.
        if (mode == code_mode::m64 && (b & 0xf0) == 0x40) continue;
        break;
    }
    const bool addr16 = mode == code_mode::m16 ? !adsize : (mode == code_mode::m32 && adsize);
    const modrm_reader modrm{bytes, addr16};

    std::size_t len = 0;
    const std::uint8_t op = bytes[i];
    switch (op) {
    case 0xf4:                          // HLT
    case 0xec: case 0xed:               // IN AL/eAX, DX
    case 0xee: case 0xef:               // OUT DX, AL/eAX
    case 0x6c: case 0x6d:               // INS
    case 0x6e: case 0x6f:               // OUTS
    case 0xcc: case 0xf1:               // INT3, ICEBP
    case 0xcf: case 0x9c: case 0x9d:    // IRET, PUSHF, POPF
    case 0x90:                          // PAUSE (F3 90)
        len = i + 1;
        break;
    case 0xe4: case 0xe5: case 0xe6: case 0xe7:  // IN/OUT with imm8 port
    case 0xcd:                                   // INT imm8
        len = i + 2;
        break;
    case 0x0f: {
        if (i + 1 >= bytes.size()) return truncated;
        const std::uint8_t op2 = bytes[i + 1];
        switch (op2) {
        case 0xa2:                              // CPUID
        case 0x30: case 0x32: case 0x31: case 0x33:  // WRMSR RDMSR RDTSC RDPMC
        case 0x06: case 0x08: case 0x09: case 0x0b:  // CLTS INVD WBINVD UD2
            len = i + 2;
            break;
        case 0x20: case 0x21: case 0x22: case 0x23:  // MOV to/from CR/DR: ModRM is always a register
            len = i + 3;
            break;
        case 0x00:                                   // SLDT STR LLDT LTR ...
        case 0x01: {                                 // group 7: INVLPG LMSW SMSW VMCALL VMMCALL ...
            auto m = modrm.length(i + 2);
            if (!m) return m.err();
            len = i + 2 + *m;
            break;
        }
        default:
            return unknown;
        }
        break;
    }
    default:
        return unknown;
    }
    if (len > max_instruction_length) return too_long;
    if (len > bytes.size()) return truncated;
    return static_cast<std::uint8_t>(len);
}

} // namespace hv::svm
