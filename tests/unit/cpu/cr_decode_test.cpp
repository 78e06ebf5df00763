#include <doctest/doctest.h>
#include <initializer_list>
#include "libhv/cpu/cr_decode.hpp"

using namespace hv;

namespace {
bool decode_cr(std::initializer_list<std::uint8_t> bytes, insn::mode m, cpu::cr_detail& out) {
    std::uint8_t buf[15] = {};
    unsigned n = 0;
    for (auto b : bytes) buf[n++] = b;
    auto in = insn::decode({buf, n}, m);
    REQUIRE(in.ok());
    CHECK(in->length == n);
    return cpu::cr_access_of(*in, out);
}
} // namespace

TEST_CASE("cr_access_of: MOV to and from CRn with REX, CLTS, LMSW r16") {
    cpu::cr_detail c{};
    REQUIRE(decode_cr({0x0f, 0x22, 0xd8}, insn::mode::code64, c));  // mov %rax, %cr3
    CHECK(c.cr == 3);
    CHECK(c.op == cpu::cr_op::write);
    CHECK(c.gpr == 0);
    CHECK(c.gpr_known);
    REQUIRE(decode_cr({0x41, 0x0f, 0x20, 0xdb}, insn::mode::code64, c));  // mov %cr3, %r11
    CHECK(c.cr == 3);
    CHECK(c.op == cpu::cr_op::read);
    CHECK(c.gpr == 11);
    REQUIRE(decode_cr({0x44, 0x0f, 0x22, 0xc1}, insn::mode::code64, c));  // mov %rcx, %cr8
    CHECK(c.cr == 8);
    CHECK(c.gpr == 1);
    REQUIRE(decode_cr({0x0f, 0x20, 0xe7}, insn::mode::code32, c));  // mov %cr4, %edi
    CHECK(c.cr == 4);
    CHECK(c.op == cpu::cr_op::read);
    CHECK(c.gpr == 7);
    REQUIRE(decode_cr({0x0f, 0x06}, insn::mode::code64, c));
    CHECK(c.op == cpu::cr_op::clts);
    REQUIRE(decode_cr({0x0f, 0x01, 0xf2}, insn::mode::code64, c));  // lmsw %dx
    CHECK(c.op == cpu::cr_op::lmsw);
    CHECK(c.gpr == 2);
}

TEST_CASE("cr_access_of: SMSW to a register, with the register's width") {
    cpu::cr_detail c{};
    REQUIRE(decode_cr({0x0f, 0x01, 0xe0}, insn::mode::code16, c));  // smsw %ax (the real-mode stub's)
    CHECK(c.op == cpu::cr_op::smsw);
    CHECK(c.cr == 0);
    CHECK(c.gpr == 0);
    CHECK(c.gpr_known);
    CHECK(c.smsw_bytes == 2);
    REQUIRE(decode_cr({0x66, 0x0f, 0x01, 0xe3}, insn::mode::code16, c));  // smsw %ebx
    CHECK(c.gpr == 3);
    CHECK(c.smsw_bytes == 4);
    REQUIRE(decode_cr({0x49, 0x0f, 0x01, 0xe1}, insn::mode::code64, c));  // smsw %r9
    CHECK(c.gpr == 9);
    CHECK(c.smsw_bytes == 8);
}

TEST_CASE("cr_access_of: other instructions and LMSW from memory are refused") {
    cpu::cr_detail c{};
    CHECK_FALSE(decode_cr({0x0f, 0x01, 0x30}, insn::mode::code64, c));  // lmsw (%rax)
    CHECK_FALSE(decode_cr({0x0f, 0x01, 0x20}, insn::mode::code64, c));  // smsw (%rax)
    CHECK_FALSE(decode_cr({0x0f, 0x01, 0x38}, insn::mode::code64, c));  // invlpg (%rax)
    CHECK_FALSE(decode_cr({0x0f, 0xa2}, insn::mode::code64, c));        // cpuid
    CHECK_FALSE(decode_cr({0x0f, 0x21, 0xc0}, insn::mode::code64, c));  // mov %dr0, %rax
}
