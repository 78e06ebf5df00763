// MMIO instruction emulator. On an MMIO exit the cpu layer copies its guest state into
// `guest_state`, implements `memory` over the guest page walker (linear → physical, with
// faults) and the MMIO bus, and calls
//
//   auto r = insn::execute(st, mem);   // fetch at CS:RIP, decode, emulate
//   // or: insn::decode(bytes the VMCB holds, st.code), then insn::emulate(insn, st, mem)
//
// then copies `st` back. r->result is done (RIP advanced), fault (inject r->f, RIP
// unchanged) or partial (a REP instruction stopped after the iteration budget; RIP
// unchanged: resume the guest, which re-executes it, or call again). An error
// (errc::not_supported) means the instruction is not one the emulator runs.
//
// Validate, then commit: every operand address is formed and checked, every read done
// and the result and flags computed before the first write; registers change only after
// all writes succeeded. A fault therefore leaves guest state and memory untouched (REP
// string instructions commit each finished iteration, as hardware does). A device read
// that precedes a write (RMW, XCHG, CMPXCHG, MOVS from MMIO) happens only after the write
// is known to be permitted (access_type::rmw, or probe()); a device that then fails
// the write itself cannot undo its read.
//
// Not modelled: segment limits and attributes (16/32-bit code uses the bases only), the
// A20 wrap, TF single-step and data breakpoints (#DB is the cpu layer's), atomicity of
// LOCKed accesses against other vCPUs (one read, then one write, through `memory`).
#pragma once
#include <array>
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"
#include <optional>
#include "libhv/core/result.hpp"
#include "libhv/cpu/insn/insn.hpp"

namespace hv::insn {

namespace rflags {
using namespace hv::x86::rflags;  // the bits (libhv/arch/x86/regs.hpp)
inline constexpr std::uint64_t arith = cf | pf | af | zf | sf | of;
} // namespace rflags

namespace vector {
inline constexpr std::uint8_t ud = 6, ss = 12, gp = 13, pf = 14, ac = 17;
}

// An exception for the cpu layer to inject.
struct fault {
    std::uint8_t vector = 0;
    bool has_error_code = false;
    std::uint32_t error_code = 0;
    std::uint64_t address = 0;  // faulting linear address (CR2 for #PF)

    friend bool operator==(const fault&, const fault&) = default;
};

enum class access_type : std::uint8_t {
    read,
    write,
    rmw,    // read now, write the same bytes later: check write permission at the read
    fetch,  // instruction fetch
};

// Guest-linear memory as the guest's current paging and the MMIO bus make it. An access
// is all or nothing: it returns a fault without side effects, or touches every byte.
// The cpu layer decides which physical addresses are MMIO and forwards those accesses
// (n = 1, 2, 4 or 8, never crossing the operand) to the device; it splits an access that
// crosses a page boundary after translating both pages.
class memory {
public:
    virtual std::optional<fault> read(std::uint64_t la, void* dst, unsigned n, access_type a) = 0;
    virtual std::optional<fault> write(std::uint64_t la, const void* src, unsigned n) = 0;
    // Translate and check [la, la+n) for `a` without touching it (no device side effects).
    // Used where an instruction must not read a device before knowing its write can succeed.
    virtual std::optional<fault> probe(std::uint64_t la, unsigned n, access_type a) = 0;
    // Called by emulate() before the data accesses of an instruction that has one memory
    // operand (not a string instruction): every data access that follows, until the next
    // instruction, is to that operand. A memory that knows the operand's translation from
    // elsewhere (an exit's guest-physical address) may use it then.
    virtual void single_operand_instruction() {}
    // The host bytes of the instruction fetch [la, la+n) (within one page), translated and
    // checked as read(la, .., n, access_type::fetch) would (with its side effects on the
    // guest's tables), when they are RAM or ROM: fetch() compares a remembered decode with
    // them in place. nullptr: not available, or the fetch faults; fetch() then uses read().
    virtual const std::uint8_t* fetch_pointer(std::uint64_t la, unsigned n) {
        (void)la;
        (void)n;
        return nullptr;
    }

protected:
    ~memory() = default;
};

// The 16 general-purpose registers (rax rcx rdx rbx rsp rbp rsi rdi r8..r15): its own,
// or the cpu layer's in place (gpr_file{p}: the vCPU's saved registers, so nothing is
// copied in or back). A copy is a snapshot in its own storage; assignment writes the
// values wherever the target's registers are.
class gpr_file {
public:
    gpr_file() : own_{} {}
    explicit gpr_file(std::uint64_t* in_place) : at_{in_place} {}  // own_ unused: not zeroed
    gpr_file(const gpr_file& o) : own_{o.values()} {}
    gpr_file& operator=(const gpr_file& o) {
        if (this != &o) __builtin_memmove(at_, o.at_, sizeof own_);
        return *this;
    }
    ~gpr_file() = default;

    std::uint64_t& operator[](unsigned i) { return at_[i]; }
    std::uint64_t operator[](unsigned i) const { return at_[i]; }
    std::uint64_t* begin() { return at_; }
    std::uint64_t* end() { return at_ + 16; }
    const std::uint64_t* begin() const { return at_; }
    const std::uint64_t* end() const { return at_ + 16; }
    [[nodiscard]] std::array<std::uint64_t, 16> values() const {
        std::array<std::uint64_t, 16> v;
        __builtin_memcpy(v.data(), at_, sizeof v);
        return v;
    }
    friend bool operator==(const gpr_file& a, const gpr_file& b) { return a.values() == b.values(); }

private:
    std::array<std::uint64_t, 16> own_;
    std::uint64_t* at_ = own_.data();
};

// The guest state the emulator reads and changes.
struct guest_state {
    gpr_file gpr;
    std::uint64_t rip = 0;
    std::uint64_t rflags = 2;
    std::array<std::uint64_t, 6> seg_base{};  // by insn::seg; in 64-bit mode only FS/GS count
    mode code = mode::code64;                 // from CS.L/CS.D (and EFER.LMA)
    std::uint64_t cr0 = 0;                    // AM (bit 18): alignment checks with RFLAGS.AC at CPL 3
    std::uint64_t cr4 = 0;                    // LA57 (bit 12): 57-bit canonical addresses
    std::uint8_t cpl = 0;

    friend bool operator==(const guest_state&, const guest_state&) = default;
};

enum class outcome : std::uint8_t {
    done,     // executed; RIP points at the next instruction
    fault,    // `f` must be injected; RIP unchanged (REP: finished iterations are committed)
    partial,  // REP stopped after `max_iterations`; RIP unchanged, count registers updated
};

struct step {
    outcome result = outcome::done;
    fault f{};
    std::uint64_t iterations = 0;  // string instructions: elements moved in this call
};

struct options {
    std::uint64_t max_iterations = 1024;  // REP budget per call (>= 1)
};

// Runs `in` (decoded for `st.code`). Errors (guest state untouched):
//   errc::not_supported   mnemonic::other or a form the emulator does not handle.
hv::result<step> emulate(const instruction& in, guest_state& st, memory& mem, const options& opt = {});

// The linear address of `in`'s memory operand (in.has_mem) in `st`: its effective address
// wrapped to the address size, plus the segment's base (no limit or canonical checks).
[[nodiscard]] std::uint64_t memory_operand_address(const guest_state& st, const instruction& in);

// Reads and decodes the instruction at CS:RIP through `mem` (access_type::fetch), reading
// into the next page only when the instruction continues there.
struct fetched {
    std::optional<fault> f;  // the fetch faulted: inject this
    instruction insn{};
};
// The last instruction decoded at one linear address, reused when its bytes are found
// there again in the same mode (a decode depends on nothing else, and on no byte past
// the instruction's length): a guest's MMIO loop runs one instruction again and again.
// Only an instruction within one page is remembered. One per vCPU; optional.
struct decode_memo {
    std::uint64_t la = ~std::uint64_t{0};
    mode code = mode::code64;
    std::array<std::uint64_t, 2> bytes{};  // the instruction's insn.length bytes, zeros after
    instruction insn{};
};
hv::result<fetched> fetch(const guest_state& st, memory& mem, decode_memo* memo = nullptr);

// fetch + decode + emulate. Guest-visible failures come back as outcome::fault: fetch
// faults, #UD for an invalid encoding, #GP(0) for one longer than 15 bytes.
hv::result<step> execute(guest_state& st, memory& mem, const options& opt = {}, decode_memo* memo = nullptr);

} // namespace hv::insn
