// Completing a port-I/O exit the same way for both vendors: IN/OUT of 1, 2 or 4 bytes
// through RAX, and INS/OUTS with or without REP through guest memory, honoring the
// address size, RFLAGS.DF, RCX and the segment's base and limits. The caller supplies the
// ports and the guest memory (guest-linear addresses, translated by the caller).
//
// A REP string goes a page at a time: each guest page is translated once
// (guest_memory::page) and its elements move between the port and that page directly,
// as one burst where the port takes bursts (io_ports::in_block/out_block, e.g. the IDE
// data port). Elements that straddle a page, pages that are not RAM (MMIO, holes) and
// faults go element by element through guest_memory::read/write, as without bursts.
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
    // Optional bursts: `count` accesses of `size` bytes to `port`, elements packed
    // little-endian in `buf`, exactly as that many in()/out() calls in order. They return
    // how many elements they took (0..count; fewer, e.g. at the end of a device's
    // buffer, leaves the rest to the caller, which goes on element by element or with
    // another burst). nullptr: element by element.
    std::size_t (*in_block)(void* ctx, std::uint16_t port, std::uint8_t size, void* dst, std::size_t count) = nullptr;
    std::size_t (*out_block)(void* ctx, std::uint16_t port, std::uint8_t size, const void* src,
                             std::size_t count) = nullptr;
};

struct guest_memory {
    void* ctx = nullptr;
    bool (*read)(void* ctx, std::uint64_t linear, void* dst, std::size_t n) = nullptr;
    bool (*write)(void* ctx, std::uint64_t linear, const void* src, std::size_t n) = nullptr;
    // Optional: the host address of `linear` when its 4 KiB page is guest RAM that a
    // read (write: a write) may touch, translated (A/D set) as read()/write() would; the
    // host bytes of that whole page are then contiguous. nullptr: not RAM, or a fault
    // (read()/write() say which).
    void* (*page)(void* ctx, std::uint64_t linear, bool write) = nullptr;
};

// A data segment as string I/O uses it: its base and the offsets an access may touch,
// [first, last] (the limit; an expand-down segment's range above it). 64-bit code: base 0,
// every offset. Beyond them: #GP(0), as the CPU.
struct io_segments {
    std::uint64_t source_base = 0;  // OUTS: DS
    std::uint64_t es_base = 0;      // INS: always ES
    std::uint64_t source_first = 0, source_last = ~0ull;
    std::uint64_t es_first = 0, es_last = ~0ull;
};
// DS and ES of `s` (bases, limits, expand-down; 64-bit code ignores them): needs the
// segment registers' bases, limits and access rights loaded.
[[nodiscard]] io_segments segments_of(const guest_state& s);

// Performs the access of `io` against `s` (RAX, RSI/RDI, RCX). A REP string runs its
// repetitions, at most `max_reps` (the rest resumes on the next exit: RIP is then not to
// be advanced; the return value says how many are left). `address_size` 0 means "from
// the mode" (64 in 64-bit code, else 32). A fault (memory the guest's paging refuses, or
// an offset beyond the segment) returns errc::fault with RCX/RSI/RDI at the faulting
// element, the elements before it done, as the CPU leaves them.
struct io_outcome {
    std::uint64_t remaining = 0;  // repetitions left: 0 = done, skip the instruction
};
[[nodiscard]] result<io_outcome> emulate_string_io(guest_state& s, const io_detail& io, const io_ports& ports,
                                                   const guest_memory& mem, const io_segments& segs,
                                                   std::uint64_t max_reps);

// IN/OUT inline (every port exit), INS/OUTS out of line.
[[nodiscard]] inline result<io_outcome> emulate_io(guest_state& s, const io_detail& io, const io_ports& ports,
                                                   const guest_memory& mem, const io_segments& segs = {},
                                                   std::uint64_t max_reps = ~0ull) {
    if (io.string) return emulate_string_io(s, io, ports, mem, segs, max_reps);
    if (io.size != 1 && io.size != 2 && io.size != 4) return fail(errc::invalid_argument, "I/O size not 1, 2 or 4");
    const std::uint32_t vmask = io.size == 4 ? ~0u : (1u << (io.size * 8u)) - 1;
    if (!io.in) {
        ports.out(ports.ctx, io.port, io.size, static_cast<std::uint32_t>(s.regs.rax) & vmask);
        return io_outcome{};
    }
    const std::uint32_t v = ports.in(ports.ctx, io.port, io.size) & vmask;
    // IN EAX zero-extends into RAX; IN AL/AX keep the rest.
    s.regs.rax = io.size == 4 ? v : (s.regs.rax & ~std::uint64_t{vmask}) | v;
    return io_outcome{};
}

} // namespace hv::cpu
