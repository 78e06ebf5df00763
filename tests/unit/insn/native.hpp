// Runs one instruction on the host CPU over real memory: the oracle for the emulator.
// The instruction is copied into a code page (below 2 GiB, near the data so RIP-relative
// and 32-bit addresses reach it); a stub loads every GPR but RSP and RFLAGS from a
// struct, jumps to it, and stores them back afterwards.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace insn_test {

struct cpu_regs {
    std::uint64_t gpr[16];  // rax rcx rdx rbx rsp(unused) rbp rsi rdi r8..r15
    std::uint64_t rflags;
};
static_assert(offsetof(cpu_regs, rflags) == 128);

// A region of host memory below 2 GiB (MAP_32BIT), for code and data.
class low_memory {
public:
    explicit low_memory(std::size_t bytes);
    ~low_memory();
    low_memory(const low_memory&) = delete;
    low_memory& operator=(const low_memory&) = delete;
    std::uint8_t* data() const { return p_; }
    std::uint64_t address() const { return reinterpret_cast<std::uint64_t>(p_); }
    std::size_t size() const { return n_; }

private:
    std::uint8_t* p_;
    std::size_t n_;
};

class native_cpu {
public:
    native_cpu();
    ~native_cpu();
    // Where run() places the instruction (for RIP-relative operands and the emulator's RIP).
    std::uint64_t insn_address() const;
    // Executes `insn` with `r`. Returns false if it raised a signal (SIGSEGV/SIGBUS/SIGILL/
    // SIGFPE); `r` is then unspecified.
    bool run(std::span<const std::uint8_t> insn, cpu_regs& r);

    // FS and GS bases of this thread (for segment-override tests).
    static std::uint64_t fs_base();
    static std::uint64_t gs_base();

private:
    std::uint8_t* page_;
};

} // namespace insn_test
