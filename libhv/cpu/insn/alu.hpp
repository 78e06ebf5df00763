// Integer ALU with x86 flag semantics (SDM Vol. 1 3.4.3, Vol. 2 per instruction).
// Carry/borrow out of the top bit come from the bit-parallel carry identities, so one
// formula serves every operand size without wider arithmetic.
#pragma once
#include <cstdint>
#include "libhv/cpu/insn/insn.hpp"

namespace hv::insn::alu {

inline constexpr std::uint64_t cf = 1u << 0, pf = 1u << 2, af = 1u << 4, zf = 1u << 6, sf = 1u << 7, of = 1u << 11;
inline constexpr std::uint64_t arith = cf | pf | af | zf | sf | of;

constexpr std::uint64_t mask(unsigned size) {
    return size >= 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * size)) - 1;
}
constexpr std::uint64_t sign_bit(unsigned size) { return std::uint64_t{1} << (8 * size - 1); }

constexpr std::uint64_t sign_extend(std::uint64_t v, unsigned size) {
    if (size >= 8) return v;
    const unsigned shift = 64 - 8 * size;
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v << shift) >> shift);
}

// PF: set when the low byte of the result has an even number of ones.
constexpr std::uint64_t parity(std::uint64_t r) {
    r &= 0xff;
    r ^= r >> 4;
    r ^= r >> 2;
    r ^= r >> 1;
    return (r & 1) ? 0 : pf;
}

constexpr std::uint64_t szp(std::uint64_t r, unsigned size) {
    return ((r & mask(size)) == 0 ? zf : 0) | ((r & sign_bit(size)) ? sf : 0) | parity(r);
}

struct out {
    std::uint64_t value;   // masked to the operand size
    std::uint64_t rflags;  // the input RFLAGS with this operation's arithmetic flags
};

// a + b + carry_in
constexpr out add(std::uint64_t a, std::uint64_t b, bool carry_in, unsigned size, std::uint64_t fl) {
    const std::uint64_t m = mask(size), s = sign_bit(size);
    a &= m;
    b &= m;
    const std::uint64_t r = (a + b + (carry_in ? 1 : 0)) & m;
    const std::uint64_t carry = ((a & b) | ((a | b) & ~r)) & s;
    const std::uint64_t overflow = (~(a ^ b) & (a ^ r)) & s;
    const std::uint64_t f = (carry ? cf : 0) | (overflow ? of : 0) | ((a ^ b ^ r) & af) | szp(r, size);
    return {r, (fl & ~arith) | f};
}

// a - b - borrow_in
constexpr out sub(std::uint64_t a, std::uint64_t b, bool borrow_in, unsigned size, std::uint64_t fl) {
    const std::uint64_t m = mask(size), s = sign_bit(size);
    a &= m;
    b &= m;
    const std::uint64_t r = (a - b - (borrow_in ? 1 : 0)) & m;
    const std::uint64_t borrow = ((~a & b) | ((~a | b) & r)) & s;
    const std::uint64_t overflow = ((a ^ b) & (a ^ r)) & s;
    const std::uint64_t f = (borrow ? cf : 0) | (overflow ? of : 0) | ((a ^ b ^ r) & af) | szp(r, size);
    return {r, (fl & ~arith) | f};
}

// AND/OR/XOR/TEST: CF = OF = 0; AF is undefined, this ALU clears it.
constexpr out logic(std::uint64_t r, unsigned size, std::uint64_t fl) {
    r &= mask(size);
    return {r, (fl & ~arith) | szp(r, size)};
}

// The ALU instructions of `mnemonic` with their flag rules; `b` is ignored by the unary ones.
constexpr out compute(mnemonic m, std::uint64_t a, std::uint64_t b, unsigned size, std::uint64_t fl) {
    switch (m) {
    case mnemonic::add: return add(a, b, false, size, fl);
    case mnemonic::adc: return add(a, b, fl & cf, size, fl);
    case mnemonic::sub: case mnemonic::cmp: return sub(a, b, false, size, fl);
    case mnemonic::sbb: return sub(a, b, fl & cf, size, fl);
    case mnemonic::and_: case mnemonic::test: return logic(a & b, size, fl);
    case mnemonic::or_: return logic(a | b, size, fl);
    case mnemonic::xor_: return logic(a ^ b, size, fl);
    case mnemonic::neg: return sub(0, a, false, size, fl);
    case mnemonic::not_: return {~a & mask(size), fl};
    case mnemonic::inc: {
        const out o = add(a, 1, false, size, fl);
        return {o.value, (o.rflags & ~cf) | (fl & cf)};  // CF unaffected
    }
    case mnemonic::dec: {
        const out o = sub(a, 1, false, size, fl);
        return {o.value, (o.rflags & ~cf) | (fl & cf)};
    }
    default: return {a & mask(size), fl};
    }
}

// Spot checks of the flag identities at every width.
static_assert(add(0xff, 1, false, 1, 0).value == 0);
static_assert(add(0xff, 1, false, 1, 0).rflags == (cf | zf | pf | af));
static_assert(add(0x7f, 0, true, 1, 0).rflags == (of | sf | af));
static_assert(add(~0ull, ~0ull, true, 8, 0).rflags == (cf | sf | af | pf));
static_assert(sub(0, 1, false, 2, 0).rflags == (cf | sf | af | pf));
static_assert(sub(0x80000000, 1, false, 4, 0).rflags == (of | af | pf));
static_assert(sub(5, 5, false, 8, 0).rflags == (zf | pf));
static_assert(compute(mnemonic::neg, 0, 0, 4, cf).rflags == (zf | pf));
static_assert(compute(mnemonic::inc, 0xffff, 0, 2, cf).rflags == (cf | zf | pf | af));
static_assert(compute(mnemonic::dec, 0, 0, 1, 0).rflags == (sf | af | pf));
static_assert(parity(3) == pf && parity(7) == 0);

} // namespace hv::insn::alu
