#include "libhv/cpu/insn/emulate.hpp"
#include "libhv/cpu/insn/alu.hpp"

namespace hv::insn {
namespace {

using alu::mask;

constexpr hv::error unsupported = hv::fail(hv::errc::not_supported, "insn: instruction not emulated");

constexpr fault gp0{vector::gp, true, 0, 0};

[[gnu::always_inline]] inline std::uint64_t get(const guest_state& s, reg r, unsigned size) {
    if (is_high_byte(r)) return (s.gpr[static_cast<unsigned>(r) - static_cast<unsigned>(reg::ah)] >> 8) & 0xff;
    return s.gpr[static_cast<unsigned>(r)] & mask(size);
}

// 32-bit writes zero the upper half; 8- and 16-bit writes keep the rest of the register.
[[gnu::always_inline]] inline void put(guest_state& s, reg r, unsigned size, std::uint64_t v) {
    if (is_high_byte(r)) {
        auto& g = s.gpr[static_cast<unsigned>(r) - static_cast<unsigned>(reg::ah)];
        g = (g & ~std::uint64_t{0xff00}) | ((v & 0xff) << 8);
        return;
    }
    auto& g = s.gpr[static_cast<unsigned>(r)];
    if (size >= 4) g = v & mask(size);
    else g = (g & ~mask(size)) | (v & mask(size));
}

std::uint64_t next_rip(const guest_state& s, const instruction& in) {
    const std::uint64_t r = s.rip + in.length;
    return s.code == mode::code64 ? r : r & 0xffffffff;
}

// Effective address wrapped to the address size; `extra` is BT's bit-string offset.
[[gnu::always_inline]] inline std::uint64_t effective_address(const guest_state& s, const instruction& in, const mem_ref& m, std::uint64_t extra = 0) {
    std::uint64_t ea = static_cast<std::uint64_t>(m.disp) + extra;
    if (m.base == reg::rip) ea += next_rip(s, in);
    else if (m.base != reg::none) ea += s.gpr[static_cast<unsigned>(m.base)];
    if (m.index != reg::none) ea += s.gpr[static_cast<unsigned>(m.index)] * m.scale;
    return ea & mask(in.address_size);
}

[[gnu::always_inline]] inline std::uint64_t linear(const guest_state& s, seg sg, std::uint64_t ea) {
    const std::uint64_t base = s.seg_base[static_cast<unsigned>(sg)];
    if (s.code == mode::code64) return (sg == seg::fs || sg == seg::gs) ? ea + base : ea;
    return (base + ea) & 0xffffffff;
}

[[gnu::always_inline]] inline bool canonical(const guest_state& s, std::uint64_t la) {
    const unsigned bits = (s.cr4 & (1u << 12)) ? 57 : 48;
    const unsigned shift = 64 - bits;
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(la << shift) >> shift) == la;
}

// Checks that precede the memory access itself: canonical form (#GP, or #SS for
// stack references) and alignment (#AC). Segment limits are not checked.
[[gnu::always_inline]] inline std::optional<fault> check(const guest_state& s, seg sg, std::uint64_t la, unsigned n) {
    if (s.code == mode::code64 && (!canonical(s, la) || !canonical(s, la + n - 1))) {
        fault f = gp0;
        if (sg == seg::ss) f.vector = vector::ss;
        return f;
    }
    if ((s.cr0 & x86::cr0::am) && (s.rflags & rflags::ac) && s.cpl == 3 && (la & (n - 1)))
        return fault{vector::ac, true, 0, la};
    return std::nullopt;
}

[[gnu::always_inline]] inline std::optional<fault> read_le(memory& mem, std::uint64_t la, unsigned n, access_type a, std::uint64_t& v) {
    std::uint64_t w = 0;  // x86: little-endian in place
    if (auto f = mem.read(la, &w, n, a)) return f;
    v = w;
    return std::nullopt;
}

[[gnu::always_inline]] inline std::optional<fault> write_le(memory& mem, std::uint64_t la, unsigned n, std::uint64_t v) {
    return mem.write(la, &v, n);  // x86: little-endian in place
}

bool is_alu(mnemonic m) {
    switch (m) {
    case mnemonic::add: case mnemonic::or_: case mnemonic::adc: case mnemonic::sbb:
    case mnemonic::and_: case mnemonic::sub: case mnemonic::xor_: case mnemonic::cmp: case mnemonic::test:
    case mnemonic::not_: case mnemonic::neg: case mnemonic::inc: case mnemonic::dec:
        return true;
    default:
        return false;
    }
}

bool is_bt(mnemonic m) {
    return m == mnemonic::bt || m == mnemonic::bts || m == mnemonic::btr || m == mnemonic::btc;
}

// How an instruction uses a memory destination.
access_type dst_access(mnemonic m) {
    switch (m) {
    case mnemonic::mov: case mnemonic::movnti: return access_type::write;
    case mnemonic::cmp: case mnemonic::test: case mnemonic::bt: return access_type::read;
    default: return access_type::rmw;
    }
}

[[gnu::always_inline]] inline step done_step(guest_state& s, const instruction& in) {
    s.rip = next_rip(s, in);
    s.rflags &= ~rflags::rf;
    return step{};
}

step fault_step(const fault& f, std::uint64_t iterations = 0) {
    step r;
    r.result = outcome::fault;
    r.f = f;
    r.iterations = iterations;
    return r;
}

// MOVS, STOS, LODS with or without REP (F2 repeats these like F3). Each iteration is
// validated and committed on its own, so a fault or the budget leaves the registers
// describing the elements already done and RIP on the instruction.
hv::result<step> string_op(const instruction& in, guest_state& st, memory& mem, const options& opt) {
    const unsigned n = in.operand_size;
    const unsigned as = in.address_size;
    const bool rep = in.rep != rep_prefix::none;
    const std::uint64_t delta = (st.rflags & rflags::df) ? (0 - std::uint64_t{n}) : n;
    const bool reads = in.mnem != mnemonic::stos;
    const bool writes = in.mnem != mnemonic::lods;
    const seg src_seg = in.operands[1].m.segment;  // DS or the override (unused by STOS)
    const std::uint64_t budget = opt.max_iterations ? opt.max_iterations : 1;

    if (rep && get(st, reg::rcx, as) == 0) return done_step(st, in);
    for (std::uint64_t done = 0;;) {
        guest_state next = st;
        const std::uint64_t si = get(st, reg::rsi, as), di = get(st, reg::rdi, as);
        const std::uint64_t src = linear(st, src_seg, si), dst = linear(st, seg::es, di);
        std::uint64_t v = 0;
        if (reads) {
            if (auto f = check(st, src_seg, src, n)) return fault_step(*f, done);
        }
        if (writes) {
            if (auto f = check(st, seg::es, dst, n)) return fault_step(*f, done);
        }
        if (reads && writes) {
            // Fault priority as on hardware (source first), and no device read before
            // the destination is known to be writable.
            if (auto f = mem.probe(src, n, access_type::read)) return fault_step(*f, done);
            if (auto f = mem.probe(dst, n, access_type::write)) return fault_step(*f, done);
        }
        if (reads) {
            if (auto f = read_le(mem, src, n, access_type::read, v)) return fault_step(*f, done);
            put(next, reg::rsi, as, si + delta);
        }
        if (in.mnem == mnemonic::stos) v = get(st, reg::rax, n);
        if (writes) {
            if (auto f = write_le(mem, dst, n, v)) return fault_step(*f, done);
            put(next, reg::rdi, as, di + delta);
        } else {
            put(next, reg::rax, n, v);
        }
        std::uint64_t left = 0;
        if (rep) {
            left = get(st, reg::rcx, as) - 1;
            put(next, reg::rcx, as, left);
        }
        st = next;
        ++done;
        if (!rep || (left & mask(as)) == 0) {
            step r = done_step(st, in);
            r.iterations = done;
            return r;
        }
        if (done >= budget) {
            step r;
            r.result = outcome::partial;
            r.iterations = done;
            return r;
        }
    }
}

bool is_plain_mov(const instruction& in) {
    return in.mnem == mnemonic::mov && in.enc == encoding::legacy && in.operand_count == 2 &&
           (in.operands[0].kind == opkind::mem) != (in.operands[1].kind == opkind::mem);
}

// Plain MOV between a register (or an immediate) and memory, the common MMIO access: one
// read or one write, then the register; no copy of the state is needed.
step plain_mov(const instruction& in, guest_state& st, memory& mem) {
    const operand& d = in.operands[0];
    const operand& s = in.operands[1];
    const unsigned size = d.size;
    const operand& o = d.kind == opkind::mem ? d : s;
    const std::uint64_t la = linear(st, o.m.segment, effective_address(st, in, o.m, 0));
    if (auto f = check(st, o.m.segment, la, o.size)) return fault_step(*f);
    mem.single_operand_instruction();
    if (d.kind == opkind::mem) {
        if (auto f = write_le(mem, la, size, s.kind == opkind::reg ? get(st, s.r, size) : s.imm)) return fault_step(*f);
    } else {
        std::uint64_t v = 0;
        if (auto f = read_le(mem, la, size, access_type::read, v)) return fault_step(*f);
        put(st, d.r, size, v);
    }
    return done_step(st, in);
}

// Everything but a plain MOV.
[[gnu::noinline]] hv::result<step> emulate_other(const instruction& in, guest_state& st, memory& mem,
                                                 const options& opt) {
    if (in.mnem == mnemonic::other || in.enc != encoding::legacy) return unsupported;
    if (in.mnem == mnemonic::movs || in.mnem == mnemonic::stos || in.mnem == mnemonic::lods)
        return string_op(in, st, mem, opt);

    const mnemonic m = in.mnem;
    const operand& d = in.operands[0];
    const operand& s = in.operands[1];
    const unsigned size = d.size;

    // The one memory operand: its address (BT with a register bit offset addresses a bit
    // string: the offset's upper bits select the operand-sized unit), checks and read.
    const int mem_index = d.kind == opkind::mem ? 0 : (in.operand_count > 1 && s.kind == opkind::mem) ? 1 : -1;
    std::uint64_t la = 0, mval = 0;
    std::uint64_t bit = 0, bit_string_offset = 0;
    const unsigned bits = size * 8;
    if (is_bt(m)) {
        const std::uint64_t off = s.kind == opkind::imm ? s.imm : get(st, s.r, size);
        bit = off & (bits - 1);
        if (s.kind == opkind::reg && d.kind == opkind::mem) {
            const unsigned log2_bits = bits == 64 ? 6 : bits == 32 ? 5 : 4;
            const std::int64_t units = static_cast<std::int64_t>(alu::sign_extend(off, size)) >> log2_bits;
            bit_string_offset = static_cast<std::uint64_t>(units) * size;
        }
    }
    access_type acc = access_type::read;
    if (mem_index >= 0) {
        mem.single_operand_instruction();
        const operand& o = in.operands[static_cast<unsigned>(mem_index)];
        la = linear(st, o.m.segment, effective_address(st, in, o.m, bit_string_offset));
        if (auto f = check(st, o.m.segment, la, o.size)) return fault_step(*f);
        acc = mem_index == 0 ? dst_access(m) : access_type::read;
        if (acc != access_type::write) {
            if (auto f = read_le(mem, la, o.size, acc, mval)) return fault_step(*f);
        }
    }
    auto value = [&](const operand& o) -> std::uint64_t {
        switch (o.kind) {
        case opkind::reg: return get(st, o.r, o.size);
        case opkind::mem: return mval;
        case opkind::imm: return o.imm;
        default: return 0;
        }
    };

    // Compute into a copy; memory is written next, registers committed last.
    guest_state next = st;
    bool write_dst = true;
    std::uint64_t result = 0;
    switch (m) {
    case mnemonic::mov: case mnemonic::movnti: case mnemonic::movzx:
        result = value(s);
        break;
    case mnemonic::movsx: case mnemonic::movsxd:
        result = alu::sign_extend(value(s), s.size) & mask(size);
        break;
    case mnemonic::xchg:
        result = value(s);
        put(next, s.r, size, value(d));
        break;
    case mnemonic::xadd: {
        const alu::out o = alu::add(value(d), value(s), false, size, st.rflags);
        put(next, s.r, size, value(d));
        result = o.value;
        next.rflags = o.rflags;
        break;
    }
    case mnemonic::cmpxchg: {
        const std::uint64_t old = value(d);
        const alu::out o = alu::sub(get(st, reg::rax, size), old, false, size, st.rflags);
        next.rflags = o.rflags;
        if (o.rflags & alu::zf) {
            result = value(s);
        } else {
            // The destination is written back unchanged (a locked cycle on hardware);
            // a register destination keeps its upper half.
            result = old;
            if (d.kind == opkind::reg) write_dst = false;
            put(next, reg::rax, size, old);
        }
        break;
    }
    case mnemonic::bt: case mnemonic::bts: case mnemonic::btr: case mnemonic::btc: {
        const std::uint64_t v = value(d), b = std::uint64_t{1} << bit;
        next.rflags = (st.rflags & ~alu::cf) | ((v & b) ? alu::cf : 0);
        if (m == mnemonic::bt) write_dst = false;
        result = m == mnemonic::bts ? (v | b) : m == mnemonic::btr ? (v & ~b) : (v ^ b);
        break;
    }
    default: {
        if (!is_alu(m)) return unsupported;
        const alu::out o = alu::compute(m, value(d), value(s), size, st.rflags);
        next.rflags = o.rflags;
        result = o.value;
        write_dst = m != mnemonic::cmp && m != mnemonic::test;
        break;
    }
    }

    if (write_dst) {
        if (d.kind == opkind::mem) {
            if (auto f = write_le(mem, la, size, result)) return fault_step(*f);
        } else {
            put(next, d.r, size, result);
        }
    }
    st = next;
    return done_step(st, in);
}

} // namespace

std::uint64_t memory_operand_address(const guest_state& st, const instruction& in) {
    return linear(st, in.mem.segment, effective_address(st, in, in.mem));
}

hv::result<step> emulate(const instruction& in, guest_state& st, memory& mem, const options& opt) {
    if (is_plain_mov(in)) return plain_mov(in, st, mem);
    return emulate_other(in, st, mem, opt);
}

namespace {
// The instruction bytes at `p` (`n` of them, all in one page at page offset `offset`)
// as two little-endian words, zeros past `n`.
[[gnu::always_inline]] inline std::array<std::uint64_t, 2> instruction_words(const std::uint8_t* p, unsigned n, unsigned offset) {
    std::array<std::uint64_t, 2> w{};
    if (offset <= 4096 - sizeof w) {
        __builtin_memcpy(w.data(), p, sizeof w);  // whole words: still within the page
        const unsigned bits = 8 * n;
        if (bits < 64) {
            w[0] &= (std::uint64_t{1} << bits) - 1;
            w[1] = 0;
        } else if (bits < 128) {
            w[1] &= (std::uint64_t{1} << (bits - 64)) - 1;
        }
        return w;
    }
    __builtin_memcpy(w.data(), p, n);
    return w;
}

[[gnu::always_inline]] inline bool memo_matches(const decode_memo& m, const std::uint8_t* p, std::uint64_t la) {
    return instruction_words(p, m.insn.length, static_cast<unsigned>(la & 0xfff)) == m.bytes;
}

// The memo's instruction when its bytes are at CS:RIP, checked in place (no copy).
[[gnu::always_inline]] inline const instruction* memo_in_place(const guest_state& st, memory& mem, const decode_memo& memo) {
    const std::uint64_t la = linear(st, seg::cs, st.rip);
    if (memo.la != la || memo.code != st.code) return nullptr;
    const std::uint8_t* p = mem.fetch_pointer(la, memo.insn.length);
    return p && memo_matches(memo, p, la) ? &memo.insn : nullptr;
}

// fetch() without copies: the instruction is the memo's on a hit, else out.insn; a
// fetch fault is in out.f (and the result null).
hv::result<const instruction*> fetch_into(const guest_state& st, memory& mem, decode_memo* memo, fetched& out) {
    const std::uint64_t la = linear(st, seg::cs, st.rip);
    const bool memo_here = memo && memo->la == la && memo->code == st.code;
    alignas(8) std::uint8_t buf[16] = {};  // max_length, and zeros for the memo's comparison
    static_assert(max_length < sizeof buf);
    const unsigned to_page_end = 4096 - static_cast<unsigned>(la & 0xfff);
    const unsigned first = to_page_end < max_length ? to_page_end : max_length;
    if (auto f = mem.read(la, buf, first, access_type::fetch)) {
        out.f = f;
        return nullptr;
    }
    if (memo_here && memo->insn.length <= first && memo_matches(*memo, buf, 0)) return &memo->insn;
    auto d = decode(std::span<const std::uint8_t>(buf, first), st.code);
    if (d && memo) {
        *memo = {la, st.code, {}, *d};
        memo->bytes = instruction_words(buf, d->length, 0);
    }
    if (!d && is_truncated(d.err()) && first < max_length) {
        std::uint64_t rest = la + first;
        if (st.code != mode::code64) rest &= 0xffffffff;
        if (auto f = mem.read(rest, buf + first, max_length - first, access_type::fetch)) {
            out.f = f;
            return nullptr;
        }
        d = decode(std::span<const std::uint8_t>(buf, max_length), st.code);
    }
    if (!d) return d.err();
    out.insn = *d;
    return &out.insn;
}
} // namespace

hv::result<fetched> fetch(const guest_state& st, memory& mem, decode_memo* memo) {
    fetched out;
    if (memo) {
        if (const instruction* in = memo_in_place(st, mem, *memo)) {
            out.insn = *in;
            return out;
        }
    }
    auto r = fetch_into(st, mem, memo, out);
    if (!r) return r.err();
    if (*r && *r != &out.insn) out.insn = **r;
    return out;
}

namespace {
// execute() without the memo in place: fetch through `mem`, decode (or the memo on the
// copied bytes), emulate.
[[gnu::noinline]] hv::result<step> fetch_and_execute(guest_state& st, memory& mem, const options& opt,
                                                     decode_memo* memo) {
    fetched out;
    auto f = fetch_into(st, mem, memo, out);
    if (!f) {
        if (f.code() == hv::errc::bad_format) return fault_step(fault{vector::ud, false, 0, 0});
        if (f.code() == hv::errc::overflow) return fault_step(gp0);
        return f.err();
    }
    if (!*f) return fault_step(*out.f);
    return emulate(**f, st, mem, opt);
}
} // namespace

hv::result<step> execute(guest_state& st, memory& mem, const options& opt, decode_memo* memo) {
    if (memo) {
        if (const instruction* in = memo_in_place(st, mem, *memo)) return emulate(*in, st, mem, opt);
    }
    return fetch_and_execute(st, mem, opt, memo);
}

} // namespace hv::insn
