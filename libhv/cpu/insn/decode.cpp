// Decoder: prefixes, opcode maps, ModRM/SIB/displacement, immediates (Intel SDM Vol. 2,
// chapter 2 and appendix A). The opcode tables say only what determines length; the
// emulated instructions get their operands from `classify`.
#include "libhv/cpu/insn/insn.hpp"

namespace hv::insn {
namespace {

// What follows an opcode byte. Low nibble: the immediate; high bits: flags.
enum : std::uint8_t {
    imm_none, imm_b, imm_w, imm_z, imm_v, imm_moffs, imm_rel8, imm_relz, imm_ptr, imm_enter, imm_grp3,
    imm_bb,  // two byte immediates (EXTRQ/INSERTQ)
    imm_d,   // 32 bits whatever the operand size (XOP map A)
};
constexpr std::uint8_t imm_mask = 0x0f;
constexpr std::uint8_t f_modrm = 0x10;
constexpr std::uint8_t f_no64 = 0x20;    // invalid in 64-bit mode
constexpr std::uint8_t f_bad = 0x40;     // invalid in every mode
constexpr std::uint8_t f_special = 0x80; // prefix, escape or a form the code handles itself

constexpr std::uint8_t N = imm_none, Ib = imm_b, Iw = imm_w, Iz = imm_z, Iv = imm_v, Ob = imm_moffs,
                       J8 = imm_rel8, Jz = imm_relz, En = imm_enter;
constexpr std::uint8_t M = f_modrm, Mb = f_modrm | imm_b, Mz = f_modrm | imm_z, M3 = f_modrm | imm_grp3;
constexpr std::uint8_t X = f_bad, S = f_special, N64 = f_no64, Ap = imm_ptr | f_no64;
constexpr std::uint8_t Ib64 = imm_b | f_no64, Mb64 = Mb | f_no64;

// One-byte opcode map (SDM Table A-2). S: prefixes, 0F, VEX/EVEX (C4 C5 62), XOP (8F).
constexpr std::array<std::uint8_t, 256> one_byte = {
//  0    1    2    3    4    5    6    7    8    9    A    B    C    D    E    F
    M,   M,   M,   M,   Ib,  Iz,  N64, N64, M,   M,   M,   M,   Ib,  Iz,  N64, S,    // 0
    M,   M,   M,   M,   Ib,  Iz,  N64, N64, M,   M,   M,   M,   Ib,  Iz,  N64, N64,  // 1
    M,   M,   M,   M,   Ib,  Iz,  S,   N64, M,   M,   M,   M,   Ib,  Iz,  S,   N64,  // 2
    M,   M,   M,   M,   Ib,  Iz,  S,   N64, M,   M,   M,   M,   Ib,  Iz,  S,   N64,  // 3
    N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,    // 4
    N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   N,    // 5
    N64, N64, S,   M,   S,   S,   S,   S,   Iz,  Mz,  Ib,  Mb,  N,   N,   N,   N,    // 6
    J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,  J8,   // 7
    Mb,  Mz,  Mb64,Mb,  M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   S,    // 8
    N,   N,   N,   N,   N,   N,   N,   N,   N,   N,   Ap,  N,   N,   N,   N,   N,    // 9
    Ob,  Ob,  Ob,  Ob,  N,   N,   N,   N,   Ib,  Iz,  N,   N,   N,   N,   N,   N,    // A
    Ib,  Ib,  Ib,  Ib,  Ib,  Ib,  Ib,  Ib,  Iv,  Iv,  Iv,  Iv,  Iv,  Iv,  Iv,  Iv,   // B
    Mb,  Mb,  Iw,  N,   S,   S,   Mb,  Mz,  En,  N,   Iw,  N,   N,   Ib,  N64, N,    // C
    M,   M,   M,   M,   Ib64,Ib64,N64, N,   M,   M,   M,   M,   M,   M,   M,   M,    // D
    J8,  J8,  J8,  J8,  Ib,  Ib,  Ib,  Ib,  Jz,  Jz,  Ap,  J8,  N,   N,   N,   N,    // E
    S,   N,   S,   S,   N,   N,   M3,  M3,  N,   N,   N,   N,   N,   N,   M,   M,    // F
};

// Two-byte map 0F (SDM Table A-3). S: 0F 0F (3DNow!), MOV CR/DR (ModRM always a
// register form), the 38/3A escapes, and 78/79/B8 whose length depends on the prefix.
// A6/A7 are VIA PadLock (ModRM-shaped second byte).
constexpr std::array<std::uint8_t, 256> two_byte = {
//  0    1    2    3    4    5    6    7    8    9    A    B    C    D    E    F
    M,   M,   M,   M,   X,   N,   N,   N,   N,   N,   X,   N,   X,   M,   N,   S,    // 0
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // 1
    S,   S,   S,   S,   X,   X,   X,   X,   M,   M,   M,   M,   M,   M,   M,   M,    // 2
    N,   N,   N,   N,   N,   N,   X,   N,   S,   X,   S,   X,   X,   X,   X,   X,    // 3
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // 4
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // 5
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // 6
    Mb,  Mb,  Mb,  Mb,  M,   M,   M,   N,   S,   S,   X,   X,   M,   M,   M,   M,    // 7
    Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,  Jz,   // 8
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // 9
    N,   N,   N,   M,   Mb,  M,   M,   M,   N,   N,   N,   M,   Mb,  M,   M,   M,    // A
    M,   M,   M,   M,   M,   M,   M,   M,   S,   M,   Mb,  M,   M,   M,   M,   M,    // B
    M,   M,   Mb,  M,   Mb,  Mb,  Mb,  M,   N,   N,   N,   N,   N,   N,   N,   N,    // C
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // D
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // E
    M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,   M,    // F
};

// Opcodes defined in the legacy 0F 38 and 0F 3A maps (SDM Tables) under any
// mandatory prefix; the rest are VEX/EVEX-only or unassigned.
struct opcode_range { std::uint8_t first, last; };
template <std::size_t N>
constexpr std::array<std::uint64_t, 4> opcode_set(const opcode_range (&ranges)[N]) {
    std::array<std::uint64_t, 4> bits{};
    for (const auto& r : ranges)
        for (unsigned op = r.first; op <= r.last; ++op) bits[op >> 6] |= std::uint64_t{1} << (op & 63);
    return bits;
}
constexpr opcode_range map_0f38_ranges[] = {
    {0x00, 0x0B}, {0x10, 0x10}, {0x14, 0x15}, {0x17, 0x17}, {0x1C, 0x1E},  // SSSE3, SSE4.1
    {0x20, 0x25}, {0x28, 0x2B}, {0x30, 0x35}, {0x37, 0x41},                 // SSE4.1/4.2
    {0x80, 0x82},                                                           // INVEPT INVVPID INVPCID
    {0xC8, 0xCD}, {0xCF, 0xCF},                                             // SHA, GF2P8MULB
    {0xD8, 0xD8}, {0xDB, 0xDF},                                             // AES, AES Key Locker
    {0xF0, 0xF1}, {0xF5, 0xF6}, {0xF8, 0xFC},                               // MOVBE CRC32 WRUSS WRSS ADCX ADOX MOVDIR* ENQCMD* ENCODEKEY*
};
constexpr opcode_range map_0f3a_ranges[] = {
    {0x08, 0x0F}, {0x14, 0x17}, {0x20, 0x22}, {0x40, 0x42}, {0x44, 0x44},
    {0x60, 0x63}, {0xCC, 0xCC}, {0xCE, 0xCF}, {0xDF, 0xDF}, {0xF0, 0xF0},  // ... HRESET
};
constexpr auto map_0f38 = opcode_set(map_0f38_ranges);
constexpr auto map_0f3a = opcode_set(map_0f3a_ranges);
constexpr bool in_set(const std::array<std::uint64_t, 4>& set, std::uint8_t op) { return (set[op >> 6] >> (op & 63)) & 1; }
static_assert(in_set(map_0f38, 0xF0) && !in_set(map_0f38, 0xF2) && in_set(map_0f3a, 0x0F) && !in_set(map_0f3a, 0x00));

constexpr hv::error truncated = hv::fail(hv::errc::out_of_range, "insn: bytes end inside the instruction");
constexpr hv::error too_long = hv::fail(hv::errc::overflow, "insn: longer than 15 bytes");
constexpr hv::error invalid_opcode = hv::fail(hv::errc::bad_format, "insn: invalid opcode");
constexpr hv::error invalid_vex = hv::fail(hv::errc::bad_format, "insn: invalid VEX/EVEX/XOP prefix");
constexpr hv::error bad_lock = hv::fail(hv::errc::bad_format, "insn: LOCK prefix not allowed here");

class cursor {
public:
    explicit cursor(std::span<const std::uint8_t> b) : bytes_{b} {}

    // Little-endian, n <= 8. The 15-byte limit is checked first: hardware faults there
    // whatever the bytes after it hold.
    hv::status take(unsigned n, std::uint64_t& v) {
        HV_TRY(available(n));
        v = 0;
        for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{bytes_[pos_ + i]} << (8 * i);
        pos_ += n;
        return {};
    }
    hv::status byte(std::uint8_t& b) {
        HV_TRY(available(1));
        b = bytes_[pos_++];
        return {};
    }
    hv::status peek(std::uint8_t& b) const {
        HV_TRY(available(1));
        b = bytes_[pos_];
        return {};
    }
    [[nodiscard]] unsigned pos() const { return pos_; }

private:
    hv::status available(unsigned n) const {
        if (pos_ + n > max_length) return too_long;
        if (pos_ + n > bytes_.size()) return truncated;
        return {};
    }

    std::span<const std::uint8_t> bytes_;
    unsigned pos_ = 0;
};

constexpr std::int64_t sign_extend(std::uint64_t v, unsigned bytes) {
    if (bytes >= 8) return static_cast<std::int64_t>(v);
    const unsigned shift = 64 - 8 * bytes;
    return static_cast<std::int64_t>(v << shift) >> shift;
}

constexpr std::uint64_t size_mask(unsigned bytes) {
    return bytes >= 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * bytes)) - 1;
}

// What classify() needs besides the instruction itself.
struct fields {
    mode md;
    std::uint8_t mod = 0, reg = 0, rm = 0;  // reg and rm extended by REX.R / REX.B
    bool any_rex = false;
    std::uint8_t mandatory = 0;  // 0, 0x66, 0xF2 or 0xF3
    std::uint64_t imm = 0;       // first immediate, zero-extended
    std::uint8_t imm_size = 0;
};

operand gpr(std::uint8_t num, std::uint8_t size, bool any_rex) {
    operand o;
    o.kind = opkind::reg;
    o.size = size;
    if (size == 1 && !any_rex && num >= 4 && num < 8)
        o.r = static_cast<reg>(static_cast<std::uint8_t>(reg::ah) + (num - 4));
    else
        o.r = static_cast<reg>(num);
    return o;
}

operand memory(const mem_ref& m, std::uint8_t size) {
    operand o;
    o.kind = opkind::mem;
    o.size = size;
    o.m = m;
    return o;
}

operand immediate(std::uint64_t v, std::uint8_t size) {
    operand o;
    o.kind = opkind::imm;
    o.size = size;
    o.imm = v & size_mask(size);
    return o;
}

constexpr mnemonic alu_ops[8] = {mnemonic::add, mnemonic::or_, mnemonic::adc, mnemonic::sbb,
                                 mnemonic::and_, mnemonic::sub, mnemonic::xor_, mnemonic::cmp};
constexpr mnemonic bt_ops[4] = {mnemonic::bt, mnemonic::bts, mnemonic::btr, mnemonic::btc};

// Fills mnemonic and operands of the emulated instructions; leaves the rest `other`.
void classify(instruction& in, const fields& f) {
    const std::uint8_t os = in.operand_size;
    const std::uint8_t op = in.opcode;
    auto set = [&](mnemonic m, std::uint8_t size, operand a, operand b = {}) {
        in.mnem = m;
        in.operand_size = size;
        in.operands[0] = a;
        in.operands[1] = b;
        in.operand_count = b.kind == opkind::none ? 1 : 2;
    };
    auto rm = [&](std::uint8_t size) { return f.mod == 3 ? gpr(f.rm, size, f.any_rex) : memory(in.mem, size); };
    auto r = [&](std::uint8_t size) { return gpr(f.reg, size, f.any_rex); };
    auto acc = [&](std::uint8_t size) { return gpr(0, size, f.any_rex); };
    auto simm = [&](std::uint8_t size) { return immediate(static_cast<std::uint64_t>(sign_extend(f.imm, f.imm_size)), size); };
    auto string_ref = [&](reg base, seg s) {
        mem_ref m;
        m.base = base;
        m.segment = s;
        return m;
    };
    const std::uint8_t sz = (op & 1) ? os : 1;  // byte form when bit 0 is clear
    const seg src_seg = in.segment_override == seg::none ? seg::ds : in.segment_override;

    if (in.enc != encoding::legacy) return;
    if (in.map == 0) {
        if (op < 0x40 && (op & 7) < 6) {
            const mnemonic m = alu_ops[op >> 3];
            switch (op & 7) {
            case 0: case 1: set(m, sz, rm(sz), r(sz)); break;
            case 2: case 3: set(m, sz, r(sz), rm(sz)); break;
            default: set(m, sz, acc(sz), simm(sz)); break;
            }
            return;
        }
        switch (op) {
        case 0x63:
            if (f.md == mode::code64) set(mnemonic::movsxd, os, r(os), rm(os < 4 ? os : 4));
            return;
        case 0x80: case 0x81: case 0x82: case 0x83: {
            const std::uint8_t s = op == 0x81 || op == 0x83 ? os : 1;
            set(alu_ops[f.reg & 7], s, rm(s), simm(s));
            return;
        }
        case 0x84: case 0x85: set(mnemonic::test, sz, rm(sz), r(sz)); return;
        case 0x86: case 0x87: set(mnemonic::xchg, sz, rm(sz), r(sz)); return;
        case 0x88: case 0x89: set(mnemonic::mov, sz, rm(sz), r(sz)); return;
        case 0x8A: case 0x8B: set(mnemonic::mov, sz, r(sz), rm(sz)); return;
        case 0xA0: case 0xA1: set(mnemonic::mov, sz, acc(sz), memory(in.mem, sz)); return;
        case 0xA2: case 0xA3: set(mnemonic::mov, sz, memory(in.mem, sz), acc(sz)); return;
        case 0xA4: case 0xA5:
            set(mnemonic::movs, sz, memory(string_ref(reg::rdi, seg::es), sz), memory(string_ref(reg::rsi, src_seg), sz));
            return;
        case 0xA8: case 0xA9: set(mnemonic::test, sz, acc(sz), simm(sz)); return;
        case 0xAA: case 0xAB: set(mnemonic::stos, sz, memory(string_ref(reg::rdi, seg::es), sz), acc(sz)); return;
        case 0xAC: case 0xAD: set(mnemonic::lods, sz, acc(sz), memory(string_ref(reg::rsi, src_seg), sz)); return;
        case 0xC6: case 0xC7:
            if ((f.reg & 7) == 0) set(mnemonic::mov, sz, rm(sz), simm(sz));
            return;
        case 0xF6: case 0xF7:
            switch (f.reg & 7) {
            case 0: case 1: set(mnemonic::test, sz, rm(sz), simm(sz)); return;
            case 2: set(mnemonic::not_, sz, rm(sz)); return;
            case 3: set(mnemonic::neg, sz, rm(sz)); return;
            default: return;
            }
        case 0xFE: case 0xFF:
            if ((f.reg & 7) == 0) set(mnemonic::inc, sz, rm(sz));
            else if ((f.reg & 7) == 1) set(mnemonic::dec, sz, rm(sz));
            return;
        default: return;
        }
    }
    if (in.map != 1) return;
    switch (op) {
    case 0xA3: case 0xAB: case 0xB3: case 0xBB: set(bt_ops[(op >> 3) & 3], os, rm(os), r(os)); return;
    case 0xBA:
        if ((f.reg & 7) >= 4) set(bt_ops[f.reg & 3], os, rm(os), immediate(f.imm, 1));
        return;
    case 0xB0: case 0xB1: set(mnemonic::cmpxchg, sz, rm(sz), r(sz)); return;
    case 0xC0: case 0xC1: set(mnemonic::xadd, sz, rm(sz), r(sz)); return;
    case 0xB6: case 0xB7: set(mnemonic::movzx, os, r(os), rm(op == 0xB6 ? 1 : 2)); return;
    case 0xBE: case 0xBF: set(mnemonic::movsx, os, r(os), rm(op == 0xBE ? 1 : 2)); return;
    case 0xC3:
        if (f.mandatory == 0 && f.mod != 3) set(mnemonic::movnti, os == 8 ? 8 : 4, rm(os == 8 ? 8 : 4), r(os == 8 ? 8 : 4));
        return;
    default: return;
    }
}

// Group members and ModRM forms that do not exist (#UD), for the one-byte and 0F maps.
bool invalid_form(const instruction& in, const fields& f) {
    const unsigned reg = f.reg & 7;
    const bool mem = f.mod != 3;
    if (in.enc != encoding::legacy) return false;
    if (in.map == 0) {
        switch (in.opcode) {
        case 0x8D: return !mem;                                  // LEA
        case 0x8C: return reg > 5;                               // MOV r/m, Sreg
        case 0x8E: return reg > 5 || reg == 1;                   // MOV Sreg, r/m (not CS)
        case 0xC6: case 0xC7: return reg != 0 && !(reg == 7 && in.modrm == 0xF8);  // MOV / XABORT, XBEGIN
        case 0xFE: return reg > 1;                               // INC/DEC r/m8
        case 0xFF: return reg == 7 || (!mem && (reg == 3 || reg == 5));  // far CALL/JMP need memory
        default: return false;
        }
    }
    if (in.map == 1) {
        switch (in.opcode) {
        case 0x00: return reg > 5;
        case 0xBA: return reg < 4;                               // BT group
        case 0xB2: case 0xB4: case 0xB5: case 0xC3: return !mem; // LSS LFS LGS MOVNTI
        default: return false;
        }
    }
    return false;
}

bool lockable(const instruction& in) {
    if (in.operands[0].kind != opkind::mem) return false;
    switch (in.mnem) {
    case mnemonic::add: case mnemonic::or_: case mnemonic::adc: case mnemonic::sbb:
    case mnemonic::and_: case mnemonic::sub: case mnemonic::xor_:
    case mnemonic::not_: case mnemonic::neg: case mnemonic::inc: case mnemonic::dec:
    case mnemonic::bts: case mnemonic::btr: case mnemonic::btc:
    case mnemonic::xchg: case mnemonic::cmpxchg: case mnemonic::xadd:
        return true;
    default:
        return false;
    }
}

// 16-bit addressing (SDM Table 2-1): base/index pairs by ModRM.rm.
struct pair16 { reg base, index; };
constexpr pair16 modrm16[8] = {
    {reg::rbx, reg::rsi}, {reg::rbx, reg::rdi}, {reg::rbp, reg::rsi}, {reg::rbp, reg::rdi},
    {reg::rsi, reg::none}, {reg::rdi, reg::none}, {reg::rbp, reg::none}, {reg::rbx, reg::none},
};

} // namespace

const char* to_string(mnemonic m) {
    switch (m) {
    case mnemonic::other: return "other";
    case mnemonic::add: return "add";
    case mnemonic::or_: return "or";
    case mnemonic::adc: return "adc";
    case mnemonic::sbb: return "sbb";
    case mnemonic::and_: return "and";
    case mnemonic::sub: return "sub";
    case mnemonic::xor_: return "xor";
    case mnemonic::cmp: return "cmp";
    case mnemonic::test: return "test";
    case mnemonic::not_: return "not";
    case mnemonic::neg: return "neg";
    case mnemonic::inc: return "inc";
    case mnemonic::dec: return "dec";
    case mnemonic::mov: return "mov";
    case mnemonic::movzx: return "movzx";
    case mnemonic::movsx: return "movsx";
    case mnemonic::movsxd: return "movsxd";
    case mnemonic::movnti: return "movnti";
    case mnemonic::movs: return "movs";
    case mnemonic::stos: return "stos";
    case mnemonic::lods: return "lods";
    case mnemonic::xchg: return "xchg";
    case mnemonic::cmpxchg: return "cmpxchg";
    case mnemonic::xadd: return "xadd";
    case mnemonic::bt: return "bt";
    case mnemonic::bts: return "bts";
    case mnemonic::btr: return "btr";
    case mnemonic::btc: return "btc";
    }
    return "?";
}

namespace {

// One decode: prefixes → opcode (escapes, VEX/EVEX/XOP) → ModRM/SIB/displacement →
// immediates → operands of the emulated instructions → validity checks.
class decoder {
public:
    decoder(std::span<const std::uint8_t> bytes, mode md) : c_{bytes}, m64_{md == mode::code64} { f_.md = md; }

    hv::result<instruction> run() {
        HV_TRY(prefixes());
        HV_TRY(opcode());
        if ((attr_ & f_bad) || ((attr_ & f_no64) && m64_)) return invalid_opcode;
        if (attr_ & f_modrm) HV_TRY(modrm());
        HV_TRY(immediates());
        in_.length = static_cast<std::uint8_t>(c_.pos());
        if (invalid_form(in_, f_)) return invalid_opcode;
        classify(in_, f_);
        HV_TRY(check_lock());
        return in_;
    }

private:
    // Legacy prefixes in any order; a REX counts only right before the opcode.
    // Leaves the first opcode byte in op_.
    hv::status prefixes() {
        for (;;) {
            HV_TRY(c_.byte(op_));
            seg s = seg::none;
            switch (op_) {
            case 0xF0: in_.lock = true; break;
            case 0xF2: case 0xF3: last_rep_ = op_; break;
            case 0x66: opsize_prefix_ = true; break;
            case 0x67: addrsize_prefix_ = true; break;
            case 0x26: s = seg::es; break;
            case 0x2E: s = seg::cs; break;
            case 0x36: s = seg::ss; break;
            case 0x3E: s = seg::ds; break;
            case 0x64: s = seg::fs; break;
            case 0x65: s = seg::gs; break;
            default:
                if (m64_ && (op_ & 0xF0) == 0x40) {
                    rex_ = op_;
                    continue;
                }
                return finish_prefixes();
            }
            rex_ = 0;
            // In 64-bit mode ES/CS/SS/DS overrides are ignored: the default segment stays.
            if (s != seg::none && !(m64_ && s < seg::fs)) in_.segment_override = s;
        }
    }

    hv::status finish_prefixes() {
        const bool code32 = f_.md == mode::code32;
        in_.rex = rex_;
        f_.any_rex = rex_ != 0;
        in_.rep = last_rep_ == 0xF3 ? rep_prefix::rep : last_rep_ == 0xF2 ? rep_prefix::repne : rep_prefix::none;
        f_.mandatory = last_rep_ ? last_rep_ : opsize_prefix_ ? 0x66 : 0;
        in_.address_size = m64_ ? (addrsize_prefix_ ? 4 : 8) : (code32 != addrsize_prefix_ ? 4 : 2);
        in_.operand_size = m64_ ? ((rex_ & 8) ? 8 : opsize_prefix_ ? 2 : 4) : (code32 != opsize_prefix_ ? 4 : 2);
        ext_r_ = (rex_ >> 2) & 1;
        ext_x_ = (rex_ >> 1) & 1;
        ext_b_ = rex_ & 1;
        return {};
    }

    hv::status opcode() {
        const std::uint8_t b = op_;
        if (b == 0xC4 || b == 0xC5 || b == 0x62 || b == 0x8F) {
            std::uint8_t next = 0;
            HV_TRY(c_.peek(next));
            // Outside 64-bit mode C4/C5/62 are LES/LDS/BOUND unless ModRM.mod would be 11;
            // 8F is POP r/m unless its ModRM.reg (the XOP map field) is non-zero.
            const bool escape = b == 0x8F ? (next & 0x38) != 0 : (m64_ || (next >> 6) == 3);
            if (escape) return vex(b);
            in_.opcode = b;
            attr_ = M;  // BOUND LES LDS (invalid in 64-bit mode, never reached there), POP r/m
            return {};
        }
        if (b != 0x0F) {
            in_.opcode = b;
            attr_ = one_byte[b];
            return (attr_ & f_special) ? hv::status{invalid_opcode} : hv::status{};
        }
        HV_TRY(c_.byte(op_));
        in_.map = 1;
        if (op_ == 0x38 || op_ == 0x3A) {
            in_.map = op_ == 0x38 ? 2 : 3;
            HV_TRY(c_.byte(op_));
            attr_ = in_set(in_.map == 2 ? map_0f38 : map_0f3a, op_) ? (in_.map == 2 ? M : Mb) : X;
        } else if (op_ == 0x0F) {
            in_.enc = encoding::amd3dnow;  // 0F 0F ModRM [SIB] [disp] opcode
            attr_ = Mb;
        } else {
            attr_ = two_byte[op_];
            if (attr_ & f_special) {
                if (op_ >= 0x20 && op_ <= 0x23) {  // MOV CR/DR: ModRM.mod is ignored
                    attr_ = M;
                    forced_register_ = true;
                } else if (op_ == 0x78) {  // VMREAD; 66: EXTRQ, F2: INSERTQ (imm8, imm8)
                    attr_ = f_.mandatory == 0xF2 || f_.mandatory == 0x66 ? (M | imm_bb) : M;
                } else if (op_ == 0x79) {
                    attr_ = M;
                } else if (op_ == 0xB8) {  // F3: POPCNT; JMPE otherwise (IA-64 only)
                    attr_ = f_.mandatory == 0xF3 ? M : X;
                }
            }
        }
        in_.opcode = op_;
        return {};
    }

    // VEX (C4, C5), EVEX (62), XOP (8F). Only their length matters here: every one has
    // ModRM except VZEROUPPER/VZEROALL; map 3 (and a few map-1 opcodes) add an imm8.
    hv::status vex(std::uint8_t escape) {
        if (in_.lock || last_rep_ || opsize_prefix_ || rex_) return invalid_vex;
        std::uint8_t p0 = 0, p1 = 0, p2 = 0;
        HV_TRY(c_.byte(p0));
        if (escape == 0xC5) {
            in_.enc = encoding::vex;
            in_.map = 1;
            ext_r_ = m64_ && !(p0 & 0x80);
        } else {
            HV_TRY(c_.byte(p1));
            if (m64_) {
                ext_r_ = !(p0 & 0x80);
                ext_x_ = !(p0 & 0x40);
                ext_b_ = !(p0 & 0x20);
            }
            if (escape == 0xC4) {
                in_.enc = encoding::vex;
                in_.map = p0 & 0x1F;
                if (in_.map < 1 || in_.map > 3) return invalid_vex;
            } else if (escape == 0x8F) {
                in_.enc = encoding::xop;
                in_.map = p0 & 0x1F;
                if (in_.map < 8 || in_.map > 10) return invalid_vex;
            } else {
                HV_TRY(c_.byte(p2));
                in_.enc = encoding::evex;
                in_.map = p0 & 0x07;
                if ((p0 & 0x08) || !(p1 & 0x04) || in_.map == 0 || in_.map == 4 || in_.map == 7) return invalid_vex;
            }
        }
        HV_TRY(c_.byte(op_));
        const std::uint8_t b = op_;
        in_.opcode = b;
        const bool map1_imm = in_.map == 1 && ((b >= 0x70 && b <= 0x73) || b == 0xC2 || (b >= 0xC4 && b <= 0xC6));
        attr_ = in_.enc == encoding::vex && in_.map == 1 && b == 0x77 ? N : M;
        if (in_.enc == encoding::xop)
            attr_ |= in_.map == 8 ? Ib : in_.map == 10 ? std::uint8_t{imm_d} : N;
        else if (in_.map == 3 || map1_imm)
            attr_ |= Ib;
        return {};
    }

    hv::status modrm() {
        HV_TRY(c_.byte(in_.modrm));
        in_.has_modrm = true;
        f_.mod = forced_register_ ? 3 : in_.modrm >> 6;
        f_.reg = static_cast<std::uint8_t>(((in_.modrm >> 3) & 7) | (ext_r_ << 3));
        f_.rm = static_cast<std::uint8_t>((in_.modrm & 7) | (ext_b_ << 3));
        if (f_.mod == 3) return {};
        in_.has_mem = true;
        mem_ref& m = in_.mem;
        const std::uint8_t rm = in_.modrm & 7;
        unsigned disp_size = f_.mod == 1 ? 1 : 0;
        seg def = seg::ds;
        if (in_.address_size == 2) {
            if (f_.mod == 0 && rm == 6) {
                disp_size = 2;
            } else {
                m.base = modrm16[rm].base;
                m.index = modrm16[rm].index;
                if (m.base == reg::rbp) def = seg::ss;
            }
            if (f_.mod == 2) disp_size = 2;
        } else {
            if (f_.mod == 2) disp_size = 4;
            if (rm == 4) {
                std::uint8_t sib = 0;
                HV_TRY(c_.byte(sib));
                const auto index = static_cast<std::uint8_t>(((sib >> 3) & 7) | (ext_x_ << 3));
                if (index != 4) {
                    m.index = static_cast<reg>(index);
                    m.scale = static_cast<std::uint8_t>(1u << (sib >> 6));
                }
                // SIB.base 101 with mod 00: no base, disp32 (REX.B does not change that).
                if ((sib & 7) == 5 && f_.mod == 0) disp_size = 4;
                else m.base = static_cast<reg>((sib & 7) | (ext_b_ << 3));
            } else if (rm == 5 && f_.mod == 0) {
                disp_size = 4;
                if (m64_) m.base = reg::rip;
            } else {
                m.base = static_cast<reg>(f_.rm);
            }
            if (m.base == reg::rsp || m.base == reg::rbp) def = seg::ss;
        }
        m.segment = in_.segment_override == seg::none ? def : in_.segment_override;
        if (disp_size) {
            std::uint64_t d = 0;
            HV_TRY(c_.take(disp_size, d));
            m.disp = sign_extend(d, disp_size);
        }
        return {};
    }

    hv::status immediates() {
        const unsigned os = in_.operand_size;
        unsigned imm1 = 0, imm2 = 0;
        switch (attr_ & imm_mask) {
        case imm_b: case imm_rel8: imm1 = 1; break;
        case imm_w: imm1 = 2; break;
        case imm_z: imm1 = os == 2 ? 2 : 4; break;
        case imm_v: imm1 = os; break;
        case imm_d: imm1 = 4; break;
        case imm_relz: imm1 = m64_ || os != 2 ? 4 : 2; break;  // 64-bit mode: rel32 whatever 66 says (Intel)
        case imm_ptr: imm1 = os == 2 ? 2 : 4; imm2 = 2; break;
        case imm_enter: imm1 = 2; imm2 = 1; break;
        case imm_bb: imm1 = 1; imm2 = 1; break;
        case imm_grp3:  // TEST r/m, imm is F6/F7 /0 and /1
            if (((in_.modrm >> 3) & 7) < 2) imm1 = (in_.opcode & 1) ? (os == 2 ? 2 : 4) : 1;
            break;
        case imm_moffs: {
            std::uint64_t off = 0;
            HV_TRY(c_.take(in_.address_size, off));
            in_.has_mem = true;
            in_.mem.disp = static_cast<std::int64_t>(off);
            in_.mem.segment = in_.segment_override == seg::none ? seg::ds : in_.segment_override;
            break;
        }
        default: break;
        }
        if (imm1) {
            HV_TRY(c_.take(imm1, f_.imm));
            f_.imm_size = static_cast<std::uint8_t>(imm1);
        }
        if (imm2) {
            std::uint64_t ignored = 0;
            HV_TRY(c_.take(imm2, ignored));
        }
        if (in_.enc == encoding::amd3dnow) in_.opcode = static_cast<std::uint8_t>(f_.imm);
        return {};
    }

    // Besides the emulated read-modify-write instructions only CMPXCHG8B/16B take LOCK
    // (and, on AMD, MOV CR0 as MOV CR8).
    hv::status check_lock() const {
        if (!in_.lock) return {};
        const bool other_ok = in_.map == 1 && ((in_.opcode == 0xC7 && (f_.reg & 7) == 1 && in_.has_mem) ||
                                               in_.opcode == 0x20 || in_.opcode == 0x22);
        const bool ok = in_.mnem == mnemonic::other ? other_ok : lockable(in_);
        return ok ? hv::status{} : hv::status{bad_lock};
    }

    cursor c_;
    bool m64_;
    instruction in_;
    fields f_;
    bool opsize_prefix_ = false, addrsize_prefix_ = false, forced_register_ = false;
    std::uint8_t last_rep_ = 0, rex_ = 0, op_ = 0, attr_ = 0;
    std::uint8_t ext_r_ = 0, ext_x_ = 0, ext_b_ = 0;
};

} // namespace

hv::result<instruction> decode(std::span<const std::uint8_t> bytes, mode md) {
    return decoder{bytes, md}.run();
}

hv::result<unsigned> length(std::span<const std::uint8_t> bytes, mode m) {
    auto r = decode(bytes, m);
    if (!r) return r.err();
    return unsigned{r->length};
}

} // namespace hv::insn
