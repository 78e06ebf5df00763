// The frequent exits decoded inline: CPUID, hypercall, RDMSR/WRMSR, port I/O and HLT.
// The backends' exit paths call these before anything else and read only the fields
// they need (the reason, RIP, the instruction length, RAX/RCX and for I/O the
// qualification); decode() calls them too, so each exit is decoded in one place.
//
// All of them are caused by an instruction, which cannot exit during event delivery
// (SDM 27.2.4 for the IDT-vectoring field, APM 15.7.2 for EXITINTINFO): nothing was
// interrupted and those fields need not be read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/svm/vmcb.hpp"
#include "libhv/cpu/vmx/exit.hpp"

namespace hv::cpu {

namespace detail {
// An exit reason as a type, so a continuation sees it as a constant.
template <exit_reason R>
struct reason_c {
    static constexpr exit_reason value = R;
};

// Two stores fewer than member by member: reason and vendor as one word, the length and
// "nothing interrupted" as another (exit_info is trivially copyable: its bytes may be
// written; the padding and the unused event fields get zeros).
// `length`: the instruction length in its low byte; it is stored as a whole word over
// the length, padding (bits 31:8) and `interrupted` (bits 63:32, which must be 0).
inline void begin_instruction_exit(exit_info& e, exit_reason r, vendor from, std::uint64_t code, std::uint64_t rip,
                                   std::uint64_t length) {
    static_assert(std::is_trivially_copyable_v<exit_info> && offsetof(exit_info, from) == 1 &&
                  offsetof(exit_info, raw_code) == 8 && offsetof(exit_info, instruction_length) == 0x18 &&
                  offsetof(exit_info, interrupted) == 0x1c && sizeof(event) == 8 && offsetof(event, valid) == 0);
    const std::uint32_t head = static_cast<std::uint8_t>(r) | std::uint32_t{static_cast<std::uint8_t>(from)} << 8;
    auto* bytes = reinterpret_cast<unsigned char*>(&e);
    __builtin_memcpy(bytes, &head, sizeof head);
    e.raw_code = code;
    e.rip = rip;
    __builtin_memcpy(bytes + offsetof(exit_info, instruction_length), &length, sizeof length);
}
} // namespace detail

// The log's next slot for an exit path, its address kept in one register (the compiler
// would otherwise derive it again from the index for each store into it).
[[gnu::always_inline]] inline exit_info& hot_slot(exit_log& log) {
    exit_info* slot = &log.slot();
    asm("" : "+r"(slot));
    return *slot;
}

// A hot exit decoded into `e`, then `then(reason)` with the reason as a compile-time
// constant of each case (the backends' exit paths inline it, so counting and dispatch
// index their tables at fixed offsets); any other exit: `otherwise()`, `e` untouched.
// Uses raw.reason, rip, instruction_length, rax and rcx; an I/O exit gets its
// qualification and instruction information from `io_fields(qualification,
// instruction_info)`, so the backend reads them only then.
template <class IoFields, class Then, class Otherwise>
[[gnu::always_inline]] inline auto decode_hot(const vmx_exit_raw& raw, exit_info& e, IoFields io_fields, Then then,
                                              Otherwise otherwise) {
    using x = vmx::exit_reason;
    const auto basic = vmx::exit_reason_field{raw.reason}.basic();
    // Defined (1..15) for every exit handled here (SDM 28.2.5), so taken as it is.
    const std::uint64_t len = raw.instruction_length;
    auto begin = [&](exit_reason r) { detail::begin_instruction_exit(e, r, vendor::vmx, raw.reason, raw.rip, len); };
    switch (basic) {
    case x::cpuid:
        begin(exit_reason::cpuid);
        e.cpuid = {static_cast<std::uint32_t>(raw.rax), static_cast<std::uint32_t>(raw.rcx)};
        return then(detail::reason_c<exit_reason::cpuid>{});
    case x::vmcall:
        begin(exit_reason::hypercall);
        e.hypercall = {raw.rax};
        return then(detail::reason_c<exit_reason::hypercall>{});
    case x::rdmsr:
        begin(exit_reason::msr_read);
        e.msr = {static_cast<std::uint32_t>(raw.rcx)};
        return then(detail::reason_c<exit_reason::msr_read>{});
    case x::wrmsr:
        begin(exit_reason::msr_write);
        e.msr = {static_cast<std::uint32_t>(raw.rcx)};
        return then(detail::reason_c<exit_reason::msr_write>{});
    case x::io_instruction: {
        std::uint64_t qualification;
        std::uint32_t instruction_info;
        io_fields(qualification, instruction_info);
        const vmx::io_qualification q{qualification};
        begin(exit_reason::io);
        const std::uint8_t asz = q.string() ? vmx::io_string_info{instruction_info}.address_size() : 0;
        e.io = {q.port(), q.size(), asz, q.in(), q.string(), q.rep()};
        return then(detail::reason_c<exit_reason::io>{});
    }
    case x::hlt:
        begin(exit_reason::hlt);
        e.failure = {};
        return then(detail::reason_c<exit_reason::hlt>{});
    default: return otherwise();
    }
}

// False (and `e` untouched) for any other exit.
[[gnu::always_inline]] inline bool decode_hot(const vmx_exit_raw& raw, exit_info& e) {
    return decode_hot(
        raw, e,
        [&](std::uint64_t& q, std::uint32_t& info) {
            q = raw.qualification;
            info = raw.instruction_info;
        },
        [](auto) { return true; }, [] { return false; });
}

namespace detail {
// An SVM IOIO exit into `e` (the length as known so far; EXITINFO2 holds the next RIP for
// IOIO even without NRIPS).
[[gnu::always_inline]] inline void decode_svm_io(const svm_exit_raw& raw, exit_info& e, std::uint64_t len,
                                                 std::uint64_t info1, std::uint64_t info2) {
    const std::uint64_t n = info2 - raw.rip;
    if (n - 1 < 15) len = n;
    const svm::ioio_info io{info1};
    begin_instruction_exit(e, exit_reason::io, vendor::svm, raw.exitcode, raw.rip, len);
    e.io = {io.port(), io.size(), io.string() ? io.address_size() : std::uint8_t{0}, io.in(), io.string(), io.rep()};
}
} // namespace detail

// The SVM counterpart. EXITINFO1/2 (MSR and I/O exits only) come from
// `exit_info12(exitinfo1, exitinfo2)`, so the backend reads them only then. An I/O
// exit goes to `io_exit()` instead when one is given (a backend that decodes it out of
// line, with detail::decode_svm_io, to keep the other cases' registers few).
struct no_io_exit {};
template <class ExitInfo12, class Then, class Otherwise, class IoExit = no_io_exit>
[[gnu::always_inline]] inline auto decode_hot(const svm_exit_raw& raw, exit_info& e, ExitInfo12 exit_info12, Then then,
                                              Otherwise otherwise, IoExit io_exit = {}) {
    using c = svm::exit_code;
    // With NRIPS the next RIP of every exit handled here is the instruction's end (APM 15.7.1).
    // 32 bits (zero-extended for free): whatever the VMCB holds, `interrupted` stays clear.
    const std::uint64_t len = raw.nrips ? (raw.next_rip - raw.rip) & 0xffffffffu : 0;
    auto begin = [&](exit_reason r) { detail::begin_instruction_exit(e, r, vendor::svm, raw.exitcode, raw.rip, len); };
    switch (static_cast<c>(raw.exitcode)) {
    case c::cpuid:
        begin(exit_reason::cpuid);
        e.cpuid = {static_cast<std::uint32_t>(raw.rax), static_cast<std::uint32_t>(raw.rcx)};
        return then(detail::reason_c<exit_reason::cpuid>{});
    case c::vmmcall:
        begin(exit_reason::hypercall);
        e.hypercall = {raw.rax};
        return then(detail::reason_c<exit_reason::hypercall>{});
    case c::msr: {
        std::uint64_t info1, info2;
        exit_info12(info1, info2);
        e.msr = {static_cast<std::uint32_t>(raw.rcx)};
        if (info1) {
            begin(exit_reason::msr_write);
            return then(detail::reason_c<exit_reason::msr_write>{});
        }
        begin(exit_reason::msr_read);
        return then(detail::reason_c<exit_reason::msr_read>{});
    }
    case c::ioio: {
        if constexpr (!std::is_same_v<IoExit, no_io_exit>) {
            return io_exit();
        } else {
            std::uint64_t info1, info2;
            exit_info12(info1, info2);
            detail::decode_svm_io(raw, e, len, info1, info2);
            return then(detail::reason_c<exit_reason::io>{});
        }
    }
    case c::hlt:
        begin(exit_reason::hlt);
        e.failure = {};
        return then(detail::reason_c<exit_reason::hlt>{});
    default: return otherwise();
    }
}

[[gnu::always_inline]] inline bool decode_hot(const svm_exit_raw& raw, exit_info& e) {
    return decode_hot(
        raw, e,
        [&](std::uint64_t& info1, std::uint64_t& info2) {
            info1 = raw.exitinfo1;
            info2 = raw.exitinfo2;
        },
        [](auto) { return true; }, [] { return false; });
}

} // namespace hv::cpu
