// Vendor-neutral guest state: what a vCPU is, independent of where VMX (VMCS) or SVM
// (VMCB) keeps it. The backends translate it to their format before the first entry.
#pragma once
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"

namespace hv::cpu {

// General-purpose registers in the x86 encoding order (the GPR numbers in exit
// qualifications index this array directly). The world-switch assembly saves and loads
// them at these offsets; see the static_asserts.
struct gprs {
    std::uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    std::uint64_t r8, r9, r10, r11, r12, r13, r14, r15;

    constexpr std::uint64_t& operator[](unsigned n) {
        switch (n & 15) {
        case 0: return rax; case 1: return rcx; case 2: return rdx; case 3: return rbx;
        case 4: return rsp; case 5: return rbp; case 6: return rsi; case 7: return rdi;
        case 8: return r8; case 9: return r9; case 10: return r10; case 11: return r11;
        case 12: return r12; case 13: return r13; case 14: return r14; default: return r15;
        }
    }
    constexpr std::uint64_t operator[](unsigned n) const { return const_cast<gprs&>(*this)[n]; }
};
static_assert(offsetof(gprs, rax) == 0x00);
static_assert(offsetof(gprs, rcx) == 0x08);
static_assert(offsetof(gprs, rsp) == 0x20);
static_assert(offsetof(gprs, rdi) == 0x38);
static_assert(offsetof(gprs, r8) == 0x40);
static_assert(offsetof(gprs, r15) == 0x78);
static_assert(sizeof(gprs) == 0x80);

// Segment access rights in the VMX layout (SDM 24.4.1): type 3:0, S 4, DPL 6:5, P 7,
// AVL 12, L 13, D/B 14, G 15, unusable 16. SVM converts with svm::attrib_from_ar.
namespace ar {
inline constexpr std::uint32_t accessed = 1u << 0;
inline constexpr std::uint32_t s = 1u << 4;
inline constexpr std::uint32_t p = 1u << 7;
inline constexpr std::uint32_t l = 1u << 13;
inline constexpr std::uint32_t db = 1u << 14;
inline constexpr std::uint32_t g = 1u << 15;
inline constexpr std::uint32_t unusable = 1u << 16;
constexpr std::uint32_t dpl(unsigned d) { return (d & 3u) << 5; }
constexpr std::uint32_t type(std::uint32_t ar) { return ar & 0xf; }
constexpr unsigned dpl_of(std::uint32_t ar) { return (ar >> 5) & 3; }
// Types with S=1.
inline constexpr std::uint32_t data_rw_accessed = 0x3;
inline constexpr std::uint32_t code_rx_accessed = 0xb;
// Types with S=0.
inline constexpr std::uint32_t ldt = 0x2;
inline constexpr std::uint32_t tss16_busy = 0x3;
inline constexpr std::uint32_t tss_busy = 0xb;
} // namespace ar

struct segment {
    std::uint16_t selector = 0;
    std::uint32_t access = ar::unusable;
    std::uint32_t limit = 0;
    std::uint64_t base = 0;
};

struct table_register {
    std::uint64_t base = 0;
    std::uint32_t limit = 0;
};

enum class seg : std::uint8_t { es, cs, ss, ds, fs, gs, ldtr, tr };
inline constexpr unsigned segment_count = 8;

enum class activity : std::uint8_t { active, hlt };

struct guest_state {
    gprs regs{};
    std::uint64_t rip = 0, rflags = 2;
    std::uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0;
    std::uint64_t efer = 0;
    std::uint64_t xcr0 = 1;  // x87 only, the reset value; set by an XSETBV handler (+ dirty_xcr0)
    std::uint64_t dr7 = 0x400;
    std::uint64_t pat = 0x0007040600070406ull;  // the reset value
    std::uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
    segment segs[segment_count]{};
    table_register gdtr{}, idtr{};
    std::uint32_t interruptibility = 0;  // VMX layout: bit 0 STI, bit 1 MOV SS
    activity state = activity::active;

    constexpr segment& operator[](seg s) { return segs[static_cast<unsigned>(s)]; }
    constexpr const segment& operator[](seg s) const { return segs[static_cast<unsigned>(s)]; }
};

// The registers the CPU really runs a shadow-paged guest with (both backends; each adds
// its own fixed bits): paging always on through the shadow, with CR0.WP so the shadow's
// read-only entries bind the guest's kernel too; PAE shadows, PCID hidden; NXE for the
// shadow's NX bits; LME only with LMA (real paging is on even while the guest's is
// off, and CR0.PG = 1 needs LME = LMA).
constexpr std::uint64_t shadow_real_cr0(std::uint64_t guest) { return guest | x86::cr0::pg | x86::cr0::wp; }
constexpr std::uint64_t shadow_real_cr4(std::uint64_t guest) { return (guest | x86::cr4::pae) & ~x86::cr4::pcide; }
constexpr std::uint64_t shadow_real_efer(std::uint64_t guest) {
    return ((guest | x86::efer::nxe) & ~x86::efer::lme) | ((guest & x86::efer::lma) ? x86::efer::lme : 0);
}

enum class guest_mode : std::uint8_t { real, protected32, long64 };

// The state libhv gives a guest starting in `mode` at `rip` (flat segments; for long64
// also CR3 = `cr3`, PAE paging on; for real mode CS.base = rip & ~0xffff, IP = rip & 0xffff).
// GDTR/IDTR start empty: guests load their own. TR is a busy TSS the guest may replace.
constexpr guest_state initial_state(guest_mode mode, std::uint64_t rip, std::uint64_t cr3 = 0) {
    guest_state g{};
    auto flat = [](std::uint32_t type, std::uint16_t sel, std::uint32_t extra) {
        return segment{sel, type | ar::s | ar::p | ar::g | extra, 0xffffffff, 0};
    };
    g.rflags = x86::rflags::fixed1;
    g[seg::ldtr] = segment{0, ar::unusable, 0, 0};
    g.gdtr = {0, 0xffff};
    g.idtr = {0, 0xffff};
    switch (mode) {
    case guest_mode::real: {
        // CS.base = rip rounded down to 64 KiB. Above 1 MiB no selector matches that base:
        // legal for VM entry, but such a guest must not reload CS.
        const std::uint64_t base = rip & ~0xffffull;
        const std::uint16_t cs = static_cast<std::uint16_t>(base >> 4);
        g.rip = rip - base;
        g.cr0 = x86::cr0::et;
        for (unsigned i = 0; i < 6; ++i) g.segs[i] = segment{0, ar::data_rw_accessed | ar::s | ar::p, 0xffff, 0};
        g[seg::cs] = segment{cs, ar::code_rx_accessed | ar::s | ar::p, 0xffff, base};
        g.idtr = {0, 0x3ff};
        g[seg::tr] = segment{0, ar::tss16_busy | ar::p, 0xffff, 0};
        break;
    }
    case guest_mode::protected32:
        g.rip = rip;
        g.cr0 = x86::cr0::pe | x86::cr0::et | x86::cr0::ne;
        for (unsigned i = 0; i < 6; ++i) g.segs[i] = flat(ar::data_rw_accessed, 0x10, ar::db);
        g[seg::cs] = flat(ar::code_rx_accessed, 0x08, ar::db);
        g[seg::tr] = segment{0x18, ar::tss_busy | ar::p, 0x67, 0};
        break;
    case guest_mode::long64:
        g.rip = rip;
        g.cr0 = x86::cr0::pe | x86::cr0::et | x86::cr0::ne | x86::cr0::pg;
        g.cr3 = cr3;
        g.cr4 = x86::cr4::pae;
        g.efer = x86::efer::lme | x86::efer::lma;
        for (unsigned i = 0; i < 6; ++i) g.segs[i] = flat(ar::data_rw_accessed, 0x10, ar::db);
        g[seg::cs] = flat(ar::code_rx_accessed, 0x08, ar::l);
        g[seg::tr] = segment{0x18, ar::tss_busy | ar::p, 0x67, 0};
        break;
    }
    return g;
}

} // namespace hv::cpu
