#include "libhv/cpu/real_mode.hpp"
#include "libhv/arch/x86/regs.hpp"

namespace hv::cpu {

status deliver_real_mode(real_mode_frame& f, std::uint8_t vector, const table_register& idtr, const guest_memory& mem) {
    const std::uint32_t entry = 4u * vector;
    if (entry + 3 > idtr.limit) return fail(errc::out_of_range, "real-mode interrupt: vector beyond the IDTR limit");
    std::uint8_t ivt[4];
    if (!mem.read || !mem.read(mem.ctx, idtr.base + entry, ivt, sizeof ivt))
        return fail(errc::fault, "real-mode interrupt: vector table entry not readable");
    for (unsigned push = 1; push <= 3; ++push)
        if (static_cast<std::uint16_t>(f.sp - 2 * push) == 0xffff)
            return fail(errc::out_of_range, "real-mode interrupt: a push straddles the stack segment's limit (#SS)");
    // The frame as it lies in memory from the new SP up: IP, CS, FLAGS.
    const std::uint16_t words[3] = {f.ip, f.cs, static_cast<std::uint16_t>(f.rflags)};
    std::uint8_t frame[6];
    for (unsigned i = 0; i < 3; ++i) {
        frame[2 * i] = static_cast<std::uint8_t>(words[i]);
        frame[2 * i + 1] = static_cast<std::uint8_t>(words[i] >> 8);
    }
    const auto sp = static_cast<std::uint16_t>(f.sp - sizeof frame);
    bool written = mem.write != nullptr;
    if (written && sp <= 0x10000 - sizeof frame) {  // one store unless SP wraps inside the frame
        written = mem.write(mem.ctx, f.ss_base + sp, frame, sizeof frame);
    } else {
        for (unsigned i = 0; written && i < 3; ++i)
            written = mem.write(mem.ctx, f.ss_base + static_cast<std::uint16_t>(sp + 2 * i), frame + 2 * i, 2);
    }
    if (!written) return fail(errc::fault, "real-mode interrupt: stack not writable");
    f.sp = sp;
    f.rflags &= ~(x86::rflags::if_ | x86::rflags::tf | x86::rflags::ac);
    f.ip = static_cast<std::uint16_t>(ivt[0] | ivt[1] << 8);
    f.cs = static_cast<std::uint16_t>(ivt[2] | ivt[3] << 8);
    return {};
}

} // namespace hv::cpu
