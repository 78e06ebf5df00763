#include "libhv/cpu/io_emul.hpp"

namespace hv::cpu {

namespace {
constexpr std::uint64_t mask_of(unsigned bits) { return bits >= 64 ? ~0ull : (1ull << bits) - 1; }

// Writes the low `bits` of a register, keeping the rest (16-bit) or zero-extending (32-bit).
void set_reg(std::uint64_t& r, std::uint64_t v, unsigned bits) {
    if (bits == 32) r = v & 0xffffffffull;
    else r = (r & ~mask_of(bits)) | (v & mask_of(bits));
}
} // namespace

result<io_outcome> emulate_io(guest_state& s, const io_detail& io, const io_ports& ports, const guest_memory& mem,
                              const io_segments& segs, std::uint64_t max_reps) {
    if (io.size != 1 && io.size != 2 && io.size != 4) return fail(errc::invalid_argument, "I/O size not 1, 2 or 4");
    const std::uint32_t vmask = static_cast<std::uint32_t>(mask_of(io.size * 8u));
    if (!io.string) {
        if (io.in) {
            const std::uint32_t v = ports.in(ports.ctx, io.port, io.size) & vmask;
            // IN EAX zero-extends into RAX; IN AL/AX keep the rest.
            set_reg(s.regs.rax, v, io.size * 8u);
        } else {
            ports.out(ports.ctx, io.port, io.size, static_cast<std::uint32_t>(s.regs.rax) & vmask);
        }
        return io_outcome{};
    }

    const bool code64 = (s.efer & x86::efer::lma) && (s[seg::cs].access & ar::l);
    const unsigned asz = io.address_size ? io.address_size : (code64 ? 64 : 32);
    const std::uint64_t amask = mask_of(asz);
    const bool down = s.rflags & (1ull << 10);
    std::uint64_t count = io.rep ? (s.regs.rcx & amask) : 1;
    std::uint64_t& index = io.in ? s.regs.rdi : s.regs.rsi;
    const std::uint64_t base = io.in ? segs.es_base : segs.source_base;

    std::uint64_t done = 0;
    while (done < count && done < max_reps) {
        const std::uint64_t linear = base + (index & amask);
        std::uint32_t v = 0;
        if (io.in) {
            v = ports.in(ports.ctx, io.port, io.size) & vmask;
            if (!mem.write(mem.ctx, linear, &v, io.size)) return fail(errc::fault, "INS: guest memory not writable");
        } else {
            if (!mem.read(mem.ctx, linear, &v, io.size)) return fail(errc::fault, "OUTS: guest memory not readable");
            ports.out(ports.ctx, io.port, io.size, v & vmask);
        }
        const std::uint64_t next = down ? (index & amask) - io.size : (index & amask) + io.size;
        set_reg(index, next, asz == 64 ? 64 : asz);
        ++done;
    }
    if (io.rep) set_reg(s.regs.rcx, (s.regs.rcx & amask) - done, asz == 64 ? 64 : asz);
    return io_outcome{count - done};
}

} // namespace hv::cpu
