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
    std::uint16_t sp = f.sp;
    const std::uint16_t words[3] = {static_cast<std::uint16_t>(f.rflags), f.cs, f.ip};
    for (std::uint16_t word : words) {
        sp = static_cast<std::uint16_t>(sp - 2);
        const std::uint8_t bytes[2] = {static_cast<std::uint8_t>(word), static_cast<std::uint8_t>(word >> 8)};
        if (!mem.write || !mem.write(mem.ctx, f.ss_base + sp, bytes, sizeof bytes))
            return fail(errc::fault, "real-mode interrupt: stack not writable");
    }
    f.sp = sp;
    f.rflags &= ~(x86::rflags::if_ | x86::rflags::tf | x86::rflags::ac);
    f.ip = static_cast<std::uint16_t>(ivt[0] | ivt[1] << 8);
    f.cs = static_cast<std::uint16_t>(ivt[2] | ivt[3] << 8);
    return {};
}

} // namespace hv::cpu
