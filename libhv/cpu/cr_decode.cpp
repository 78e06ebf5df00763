#include "libhv/cpu/cr_decode.hpp"

namespace hv::cpu {

bool cr_access_of(const insn::instruction& in, cr_detail& out) {
    if (in.enc != insn::encoding::legacy || in.map != 1) return false;
    const unsigned reg = (in.modrm >> 3) & 7, rm = in.modrm & 7;
    const unsigned rex_r = (in.rex >> 2) & 1, rex_b = in.rex & 1;
    switch (in.opcode) {
    case 0x20:
    case 0x22:  // MOV r, CRn / MOV CRn, r: ModRM.mod is ignored, rm names the GPR
        out = {static_cast<std::uint8_t>(reg | rex_r << 3), in.opcode == 0x22 ? cr_op::write : cr_op::read,
               static_cast<std::uint8_t>(rm | rex_b << 3), true, 0};
        return true;
    case 0x06: out = {0, cr_op::clts, 0, false, 0}; return true;
    case 0x01:
        if (!in.has_modrm || (in.modrm >> 6) != 3) return false;  // LMSW r16 and SMSW r only
        if (reg == 6) {
            out = {0, cr_op::lmsw, static_cast<std::uint8_t>(rm | rex_b << 3), true, 0};
            return true;
        }
        if (reg != 4) return false;
        out = {0, cr_op::smsw, static_cast<std::uint8_t>(rm | rex_b << 3), true, 0, in.operand_size};
        return true;
    default: return false;
    }
}

} // namespace hv::cpu
