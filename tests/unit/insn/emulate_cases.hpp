// Random test cases for the emulated instructions: instruction bytes, registers that
// make the memory operand land in a buffer, and the buffer's initial contents.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>
#include "libhv/cpu/insn/insn.hpp"
#include "tests/unit/insn/native.hpp"

namespace insn_test {

inline constexpr std::size_t case_memory_size = 8192;

enum class shape : std::uint8_t {
    rm_reg,     // r/m, reg
    reg_rm,     // reg, r/m
    rm_imm,     // r/m, imm (group opcodes)
    rm_only,    // r/m
    acc_imm,    // AL/rAX, imm
    acc_moffs,  // AL/rAX, moffs
    moffs_acc,  // moffs, AL/rAX
    movx,       // reg, r/m of `src` bytes
    bt_reg,     // r/m, reg as a bit offset
    bt_imm,     // r/m, imm8 bit offset
    string,     // MOVS/STOS/LODS
};

struct tmpl {
    hv::insn::mnemonic m;
    std::vector<std::uint8_t> op;  // opcode bytes
    int digit;                     // ModRM.reg of group opcodes, -1 if it names a register
    shape sh;
    bool byte;                     // 8-bit operation
    unsigned imm;                  // 0, 1 (imm8) or 3 (imm16/32 by operand size)
    unsigned src = 0;              // movx source size
    bool mem_only = false;         // no register form
};

const std::vector<tmpl>& emulated_templates();

bool lockable(hv::insn::mnemonic m);
// The arithmetic flags (and DF) the SDM defines after `m`; the rest are undefined.
std::uint64_t defined_flags(hv::insn::mnemonic m);

struct case_env {
    std::uint64_t mem_base;      // guest-linear (= host) address of the case memory
    std::uint64_t insn_address;  // where the instruction executes
    std::uint64_t fs_base, gs_base;
};

struct test_case {
    std::vector<std::uint8_t> bytes;
    cpu_regs regs{};
    std::vector<std::uint8_t> memory;
    hv::insn::mnemonic mnem{};
    std::uint64_t flag_mask = 0;
    std::string text;
};

// A 64-bit-mode case (any operand size, 64- or 32-bit addressing, register or memory form).
test_case make_case64(const tmpl& t, const case_env& env, std::mt19937_64& rng);

// A 16- or 32-bit-mode case with a memory operand, for the emulator, and the same
// operation re-encoded for 64-bit mode with the operand at [rdi], for the host CPU.
// The guest address comes from Zydis (effective address and segment) plus a segment
// base chosen so the operand lands at the same buffer offset as [rdi].
struct legacy_case {
    hv::insn::mode md{};
    std::vector<std::uint8_t> bytes;         // for the emulator (md)
    std::vector<std::uint8_t> native_bytes;  // 64-bit equivalent over [rdi]
    cpu_regs regs{};                         // emulator registers (RDI is [rdi]'s pointer natively)
    std::uint64_t native_rdi = 0;
    std::array<std::uint64_t, 6> seg_base{};
    std::uint64_t eip = 0;
    std::uint64_t linear = 0;                // the operand's guest-linear address (Zydis)
    std::uint64_t target = 0;                // the same operand's host address
    std::vector<std::uint8_t> memory;
    hv::insn::mnemonic mnem{};
    std::uint64_t flag_mask = 0;
    std::string text;
    bool ok = false;                         // false: the template has no memory form here
};
legacy_case make_case_legacy(const tmpl& t, hv::insn::mode md, const case_env& env, std::mt19937_64& rng);

} // namespace insn_test
