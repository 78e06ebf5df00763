// A small x86 encoder for the emulator tests: ModRM/SIB/displacement for a chosen
// memory reference (16-, 32- and 64-bit addressing) and register forms. Written from
// the SDM tables independently of the decoder under test.
#pragma once
#include <cstdint>
#include <vector>

namespace insn_test {

constexpr int no_reg = -1;
constexpr int rip_base = -2;

struct mem_spec {
    int base = no_reg;   // 0..15, no_reg or rip_base
    int index = no_reg;  // 0..15 but never 4 (RSP cannot be an index), or no_reg
    unsigned scale = 1;
    std::int64_t disp = 0;
    unsigned disp_size = 0;  // 0, 1, 2 (16-bit addressing) or 4
};

struct encoded_modrm {
    std::vector<std::uint8_t> bytes;  // ModRM [SIB] [disp]
    std::uint8_t rex = 0;             // REX.X / REX.B bits needed (REX.R comes from the reg field)
    int disp_offset = -1;             // within bytes
};

inline unsigned log2_scale(unsigned s) { return s == 8 ? 3 : s == 4 ? 2 : s == 2 ? 1 : 0; }

// Smallest-or-chosen displacement size valid for this base (callers may ask for more).
inline unsigned min_disp_size(const mem_spec& m, bool addr16) {
    if (m.base == rip_base || m.base == no_reg) return addr16 ? 2 : 4;
    const bool needs_disp = addr16 ? (m.base == 5 && m.index == no_reg) : ((m.base & 7) == 5);
    if (m.disp == 0 && !needs_disp) return 0;
    if (m.disp >= -128 && m.disp <= 127) return 1;
    return addr16 ? 2 : 4;
}

inline void put_disp(encoded_modrm& e, std::int64_t disp, unsigned size) {
    e.disp_offset = static_cast<int>(e.bytes.size());
    for (unsigned i = 0; i < size; ++i) e.bytes.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(disp) >> (8 * i)));
}

// 32/64-bit addressing.
inline encoded_modrm encode_mem(const mem_spec& m, unsigned reg_field) {
    encoded_modrm e;
    const std::uint8_t reg = static_cast<std::uint8_t>((reg_field & 7) << 3);
    if (m.base == rip_base) {
        e.bytes.push_back(static_cast<std::uint8_t>(0x05 | reg));
        put_disp(e, m.disp, 4);
        return e;
    }
    const std::uint8_t index_bits = m.index == no_reg ? 4 : static_cast<std::uint8_t>(m.index & 7);
    if (m.index != no_reg && m.index >= 8) e.rex |= 0x02;
    const std::uint8_t ss = static_cast<std::uint8_t>(log2_scale(m.scale) << 6);
    if (m.base == no_reg) {
        e.bytes.push_back(static_cast<std::uint8_t>(0x04 | reg));
        e.bytes.push_back(static_cast<std::uint8_t>(ss | index_bits << 3 | 5));
        put_disp(e, m.disp, 4);
        return e;
    }
    if (m.base >= 8) e.rex |= 0x01;
    const unsigned ds = m.disp_size;
    const std::uint8_t mod = ds == 0 ? 0x00 : ds == 1 ? 0x40 : 0x80;
    if (m.index != no_reg || (m.base & 7) == 4) {
        e.bytes.push_back(static_cast<std::uint8_t>(mod | reg | 4));
        e.bytes.push_back(static_cast<std::uint8_t>(ss | index_bits << 3 | (m.base & 7)));
    } else {
        e.bytes.push_back(static_cast<std::uint8_t>(mod | reg | (m.base & 7)));
    }
    if (ds) put_disp(e, m.disp, ds);
    return e;
}

// 16-bit addressing: base ∈ {bx(3), bp(5), none}, index ∈ {si(6), di(7), none}.
inline encoded_modrm encode_mem16(const mem_spec& m, unsigned reg_field) {
    encoded_modrm e;
    const std::uint8_t reg = static_cast<std::uint8_t>((reg_field & 7) << 3);
    int rm = -1;
    if (m.base == 3 && m.index == 6) rm = 0;
    else if (m.base == 3 && m.index == 7) rm = 1;
    else if (m.base == 5 && m.index == 6) rm = 2;
    else if (m.base == 5 && m.index == 7) rm = 3;
    else if (m.base == no_reg && m.index == 6) rm = 4;
    else if (m.base == no_reg && m.index == 7) rm = 5;
    else if (m.base == 5 && m.index == no_reg) rm = 6;
    else if (m.base == 3 && m.index == no_reg) rm = 7;
    if (rm < 0) {  // absolute disp16
        e.bytes.push_back(static_cast<std::uint8_t>(reg | 6));
        put_disp(e, m.disp, 2);
        return e;
    }
    const unsigned ds = m.disp_size;
    const std::uint8_t mod = ds == 0 ? 0x00 : ds == 1 ? 0x40 : 0x80;
    e.bytes.push_back(static_cast<std::uint8_t>(mod | reg | rm));
    if (ds) put_disp(e, m.disp, ds);
    return e;
}

inline encoded_modrm encode_reg(unsigned rm, unsigned reg_field) {
    encoded_modrm e;
    e.bytes.push_back(static_cast<std::uint8_t>(0xC0 | (reg_field & 7) << 3 | (rm & 7)));
    if (rm >= 8) e.rex |= 0x01;
    return e;
}

} // namespace insn_test
