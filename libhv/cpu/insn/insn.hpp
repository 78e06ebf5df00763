// x86 instruction decoder. Every instruction of 16-, 32- and 64-bit code decodes to its
// length, opcode and ModRM memory operand (this is also the length decoder SVM needs
// without NRIPS); the instructions the MMIO emulator runs (`mnemonic` other than
// `other`) decode to full operands in Intel order, destination first.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/core/result.hpp"

namespace hv::insn {

inline constexpr unsigned max_length = 15;

// Default operand/address size of the code segment: CS.L (with EFER.LMA) gives 64,
// else CS.D gives 32 or 16. Real and virtual-8086 mode are `code16`.
enum class mode : std::uint8_t { code16, code32, code64 };

// General-purpose registers in ModRM/REX numbering; the width comes from the operand.
// ah..bh are the legacy high-byte registers (byte operands 4-7 without any REX).
enum class reg : std::uint8_t {
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ah, ch, dh, bh,
    rip,  // base of RIP-relative addressing (EIP-relative with a 67 prefix)
    none = 0xff,
};

// SDM segment-register numbering (as in Sreg of MOV Sreg).
enum class seg : std::uint8_t { es, cs, ss, ds, fs, gs, none = 0xff };

// Memory reference: segment:[base + index*scale + disp], wrapped to the address size.
struct mem_ref {
    reg base = reg::none;
    reg index = reg::none;
    std::uint8_t scale = 1;
    seg segment = seg::ds;  // effective segment: the default or the override
    std::int64_t disp = 0;  // sign-extended; a moffs keeps its full value
};

enum class opkind : std::uint8_t { none, reg, mem, imm };

struct operand {
    opkind kind = opkind::none;
    std::uint8_t size = 0;  // bytes
    reg r = reg::none;      // opkind::reg
    mem_ref m{};            // opkind::mem
    std::uint64_t imm = 0;  // opkind::imm: extended as the instruction defines, masked to size
};

enum class mnemonic : std::uint8_t {
    other,  // not emulated: length, opcode and `mem` only
    // ALU order: opcode bits 5:3 of 00-3F and ModRM.reg of 80-83
    add, or_, adc, sbb, and_, sub, xor_, cmp,
    test, not_, neg, inc, dec,
    mov, movzx, movsx, movsxd, movnti,
    movs, stos, lods,
    xchg, cmpxchg, xadd,
    bt, bts, btr, btc,
};

const char* to_string(mnemonic m);

enum class encoding : std::uint8_t { legacy, amd3dnow, vex, evex, xop };

enum class rep_prefix : std::uint8_t { none, rep /*F3*/, repne /*F2*/ };

struct instruction {
    std::uint8_t length = 0;
    mnemonic mnem = mnemonic::other;
    encoding enc = encoding::legacy;
    std::uint8_t map = 0;     // 0: one-byte, 1: 0F, 2: 0F38, 3: 0F3A; VEX/EVEX/XOP map field
    std::uint8_t opcode = 0;  // last opcode byte (the 3DNow! suffix for amd3dnow)
    bool has_modrm = false;
    std::uint8_t modrm = 0;
    // Bytes: 1, 2, 4 or 8 (the destination's for movzx/movsx). For `other` instructions
    // only what the prefixes select (no per-opcode defaults such as 64-bit PUSH).
    std::uint8_t operand_size = 0;
    std::uint8_t address_size = 0;  // bytes: 2, 4 or 8
    bool lock = false;
    rep_prefix rep = rep_prefix::none;
    seg segment_override = seg::none;
    std::uint8_t rex = 0;  // the REX byte in effect, 0 if none
    bool has_mem = false;  // ModRM or moffs memory operand, for every instruction
    mem_ref mem{};
    std::uint8_t operand_count = 0;  // emulated instructions only
    std::array<operand, 3> operands{};

    [[nodiscard]] const operand& dst() const { return operands[0]; }
    [[nodiscard]] const operand& src() const { return operands[1]; }
};

// Decodes one instruction from `bytes` (more than its length may be given). Validity is
// checked fully for the emulated instructions (forms, LOCK); for the rest the decoder
// rejects undefined opcodes, group members and LOCK uses but not every mandatory-prefix
// or ModRM combination, so it may return a length for some encodings that #UD.
// Errors: errc::out_of_range  the bytes end before the instruction does (fetch more);
//         errc::overflow      longer than 15 bytes (#GP(0) on hardware);
//         errc::bad_format    invalid or unknown encoding (#UD).
hv::result<instruction> decode(std::span<const std::uint8_t> bytes, mode m);

// Length only (same rules and errors as decode).
hv::result<unsigned> length(std::span<const std::uint8_t> bytes, mode m);

inline bool is_truncated(const hv::error& e) { return e.code == hv::errc::out_of_range; }

// Width helpers for reg/seg values.
constexpr bool is_gpr(reg r) { return static_cast<std::uint8_t>(r) < 16; }
constexpr bool is_high_byte(reg r) { return r >= reg::ah && r <= reg::bh; }

} // namespace hv::insn
