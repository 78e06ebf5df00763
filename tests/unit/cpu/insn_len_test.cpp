#include <doctest/doctest.h>
#include <initializer_list>
#include <vector>
#include "libhv/cpu/svm/insn_len.hpp"

#if HV_HAVE_ZYDIS
#include <Zydis/Zydis.h>
#endif

using namespace hv::svm;

namespace {
int len(std::initializer_list<std::uint8_t> b, code_mode m = code_mode::m64) {
    std::vector<std::uint8_t> v(b);
    auto r = instruction_length(v, m);
    return r ? *r : -1;
}
} // namespace

TEST_CASE("insn_len: the intercepted instructions, hand-assembled") {
    CHECK(len({0x0f, 0xa2}) == 2);                    // cpuid
    CHECK(len({0x0f, 0x01, 0xd9}) == 3);              // vmmcall
    CHECK(len({0x0f, 0x01, 0xc1}) == 3);              // vmcall
    CHECK(len({0x0f, 0x32}) == 2);                    // rdmsr
    CHECK(len({0x0f, 0x30}) == 2);                    // wrmsr
    CHECK(len({0xf4}) == 1);                          // hlt
    CHECK(len({0xe6, 0x80}) == 2);                    // out 0x80, al
    CHECK(len({0x66, 0xe5, 0x60}) == 3);              // in ax, 0x60
    CHECK(len({0xec}) == 1);                          // in al, dx
    CHECK(len({0x66, 0xef}) == 2);                    // out dx, ax
    CHECK(len({0xf3, 0x6e}) == 2);                    // rep outsb
    CHECK(len({0xf3, 0x48, 0x6d}) == 3);              // rep insd with REX.W
    CHECK(len({0x0f, 0x22, 0xd8}) == 3);              // mov cr3, rax
    CHECK(len({0x44, 0x0f, 0x20, 0xc0}) == 4);        // mov rax, cr8
    CHECK(len({0x0f, 0x01, 0x38}) == 3);              // invlpg [rax]
    CHECK(len({0x0f, 0x01, 0x3c, 0x24}) == 4);        // invlpg [rsp]
    CHECK(len({0x0f, 0x01, 0x7d, 0x08}) == 4);        // invlpg [rbp+8]
    CHECK(len({0x0f, 0x01, 0x3d, 1, 2, 3, 4}) == 7);  // invlpg [rip+disp32]
    CHECK(len({0x0f, 0x01, 0xbc, 0x88, 1, 2, 3, 4}) == 8);  // invlpg [rax+rcx*4+disp32]
    CHECK(len({0x0f, 0x01, 0x3c, 0x25, 1, 2, 3, 4}) == 8);  // invlpg [disp32] via SIB
    CHECK(len({0x0f, 0x01, 0x3e, 0x00, 0x10}, code_mode::m16) == 5);  // invlpg [0x1000] 16-bit
    CHECK(len({0x0f, 0x01, 0x3f}, code_mode::m16) == 3);               // invlpg [bx]
    CHECK(len({0x67, 0x0f, 0x01, 0x3c, 0x24}, code_mode::m16) == 5);   // 32-bit addressing in 16-bit code
    CHECK(len({0x67, 0x0f, 0x01, 0x3e, 0x00, 0x10}, code_mode::m32) == 6);  // 16-bit addressing in 32-bit code
    CHECK(len({0x0f, 0x01, 0xf0}) == 3);              // lmsw ax
    CHECK(len({0xcd, 0x21}) == 2);                    // int 0x21
    CHECK(len({0xf3, 0x90}) == 2);                    // pause
    CHECK(len({0x2e, 0x3e, 0xf3, 0x66, 0x67, 0x0f, 0xa2}) == 7);  // prefix soup
    CHECK(len({0x48, 0x66, 0x0f, 0xa2}) == 4);        // REX then a prefix: REX ignored, byte counted
    CHECK(len({0x48, 0x0f, 0xa2}, code_mode::m32) == -1);  // 0x48 is DEC eAX outside 64-bit mode
}

TEST_CASE("insn_len: refusals") {
    CHECK(len({}) == -1);
    CHECK(len({0x0f}) == -1);                         // truncated
    CHECK(len({0x0f, 0x01, 0x3c}) == -1);             // SIB missing
    CHECK(len({0x0f, 0x01, 0x3d, 1, 2}) == -1);       // disp32 cut short
    CHECK(len({0x89, 0xc0}) == -1);                   // mov: not an intercepted instruction
    std::vector<std::uint8_t> many(16, 0x66);
    many.push_back(0xf4);
    auto r = instruction_length(many, code_mode::m64);
    CHECK_FALSE(r.ok());
    CHECK(r.code() == hv::errc::bad_format);
    std::vector<std::uint8_t> fourteen(14, 0x2e);
    fourteen.push_back(0xf4);
    CHECK(instruction_length(fourteen, code_mode::m32).value() == 15);
    std::vector<std::uint8_t> over(13, 0x2e);
    for (auto b : {0x0f, 0x01, 0x38}) over.push_back(static_cast<std::uint8_t>(b));
    CHECK_FALSE(instruction_length(over, code_mode::m64).ok());  // 16 bytes
}

#if HV_HAVE_ZYDIS
// Zydis as an oracle: every combination of prefixes, opcode, ModRM, SIB and
// displacement bytes the decoder accepts must have Zydis' length, in each mode.
TEST_CASE("insn_len: agrees with Zydis on generated encodings") {
    const std::vector<std::vector<std::uint8_t>> prefixes = {
        {}, {0x66}, {0x67}, {0xf3}, {0x2e}, {0x66, 0x67}, {0xf3, 0x67}, {0x48}, {0x41}, {0x67, 0x4c}, {0x66, 0x2e, 0x48}};
    const std::vector<std::vector<std::uint8_t>> opcodes = {
        {0x0f, 0xa2}, {0x0f, 0x32}, {0x0f, 0x30}, {0x0f, 0x31}, {0xf4}, {0xe4}, {0xe5}, {0xe6}, {0xe7}, {0xec},
        {0xed}, {0xee}, {0xef}, {0x6c}, {0x6d}, {0x6e}, {0x6f}, {0xcd}, {0x0f, 0x01}, {0x0f, 0x20}, {0x0f, 0x22},
        {0x0f, 0x06}, {0x0f, 0x09}};
    struct mode_pair { code_mode ours; ZydisMachineMode zm; ZydisStackWidth sw; };
    const mode_pair modes[] = {{code_mode::m64, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64},
                               {code_mode::m32, ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32},
                               {code_mode::m16, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16}};
    const std::uint8_t tail[] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd};
    std::size_t compared = 0;
    for (auto& md : modes) {
        ZydisDecoder dec;
        REQUIRE(ZYAN_SUCCESS(ZydisDecoderInit(&dec, md.zm, md.sw)));
        for (auto& p : prefixes) {
            for (auto& op : opcodes) {
                // Group 7 (0F 01): only the forms that trap (INVLPG /7, LMSW /6, SMSW /4) and
                // the register-form VMCALL/VMMCALL; MOV CR: every ModRM.
                for (unsigned modrm = 0; modrm < 256; ++modrm) {
                    bool needs_modrm = op.size() == 2 && (op[1] == 0x01 || op[1] == 0x20 || op[1] == 0x22);
                    if (!needs_modrm && modrm > 0) break;
                    if (needs_modrm && op[1] == 0x01) {
                        unsigned reg = (modrm >> 3) & 7;
                        bool mem = (modrm >> 6) != 3;
                        if (mem ? !(reg == 7 || reg == 6 || reg == 4) : !(modrm == 0xc1 || modrm == 0xd9 || reg == 6))
                            continue;
                    }
                    if (needs_modrm && op[1] != 0x01 && (((modrm >> 3) & 7) == 1 || ((modrm >> 3) & 7) > 4)) continue;
                    for (std::uint8_t sib : {0x00, 0x25, 0x65, 0x88}) {
                        std::vector<std::uint8_t> bytes(p);
                        if (md.ours != code_mode::m64) {
                            bool rex = false;
                            for (auto b : p) rex |= (b & 0xf0) == 0x40;
                            if (rex) continue;
                        }
                        bytes.insert(bytes.end(), op.begin(), op.end());
                        if (needs_modrm) bytes.push_back(static_cast<std::uint8_t>(modrm));
                        bytes.push_back(sib);
                        bytes.insert(bytes.end(), std::begin(tail), std::end(tail));
                        ZydisDecodedInstruction zi;
                        if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, nullptr, bytes.data(), bytes.size(), &zi)))
                            continue;  // invalid in this mode for Zydis too
                        auto ours = instruction_length(bytes, md.ours);
                        CAPTURE(static_cast<int>(md.ours));
                        CAPTURE(bytes);
                        REQUIRE(ours.ok());
                        CHECK(*ours == zi.length);
                        ++compared;
                    }
                }
            }
        }
    }
    MESSAGE("compared " << compared << " encodings with Zydis");
    CHECK(compared > 10000);
}
#endif
