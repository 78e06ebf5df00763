// Completing a port-I/O exit the same way for both vendors: IN/OUT of 1, 2 or 4 bytes
// through RAX, and INS/OUTS with or without REP through guest memory, honoring the
// address size, RFLAGS.DF and RCX. The caller supplies the ports and the guest memory
// (already translated: `linear` is CS/DS/ES-relative plus the segment base given).
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/core/result.hpp"
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/state.hpp"

namespace hv::cpu {

struct io_ports {
    void* ctx = nullptr;
    std::uint32_t (*in)(void* ctx, std::uint16_t port, std::uint8_t size) = nullptr;
    void (*out)(void* ctx, std::uint16_t port, std::uint8_t size, std::uint32_t value) = nullptr;
};

struct guest_memory {
    void* ctx = nullptr;
    bool (*read)(void* ctx, std::uint64_t linear, void* dst, std::size_t n) = nullptr;
    bool (*write)(void* ctx, std::uint64_t linear, const void* src, std::size_t n) = nullptr;
};

struct io_segments {
    std::uint64_t source_base = 0;  // OUTS: DS (or its override)
    std::uint64_t es_base = 0;      // INS: always ES
};

// Performs the access of `io` against `s` (RAX, RSI/RDI, RCX). A REP string runs all
// its repetitions, at most `max_reps` (the rest resumes on the next exit: RIP is then
// not to be advanced; the return value says how many are left). `address_size` 0 means
// "from the mode" (64 in 64-bit code, else 32).
struct io_outcome {
    std::uint64_t remaining = 0;  // repetitions left: 0 = done, skip the instruction
};
[[nodiscard]] result<io_outcome> emulate_io(guest_state& s, const io_detail& io, const io_ports& ports,
                                            const guest_memory& mem, const io_segments& segs = {},
                                            std::uint64_t max_reps = ~0ull);

} // namespace hv::cpu
