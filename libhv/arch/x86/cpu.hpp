// Thin wrappers over x86 instructions the hypervisor itself executes.
#pragma once
#include <cstdint>
#include "libhv/arch/x86/regs.hpp"

namespace hv::x86 {

struct cpuid_result {
    std::uint32_t eax, ebx, ecx, edx;
};

inline cpuid_result cpuid(std::uint32_t leaf, std::uint32_t subleaf = 0) {
    cpuid_result r;
    asm volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(subleaf));
    return r;
}

namespace msr {
enum : std::uint32_t {
    apic_base = 0x1b,
    feature_control = 0x3a,
    vmx_basic = 0x480,
    vmx_pinbased_ctls = 0x481,
    vmx_procbased_ctls = 0x482,
    vmx_exit_ctls = 0x483,
    vmx_entry_ctls = 0x484,
    vmx_misc = 0x485,
    vmx_cr0_fixed0 = 0x486,
    vmx_cr0_fixed1 = 0x487,
    vmx_cr4_fixed0 = 0x488,
    vmx_cr4_fixed1 = 0x489,
    vmx_vmcs_enum = 0x48a,
    vmx_procbased_ctls2 = 0x48b,
    vmx_ept_vpid_cap = 0x48c,
    vmx_true_pinbased_ctls = 0x48d,
    vmx_true_procbased_ctls = 0x48e,
    vmx_true_exit_ctls = 0x48f,
    vmx_true_entry_ctls = 0x490,
    vmx_vmfunc = 0x491,
    pat = 0x277,
    efer = 0xc0000080,
    star = 0xc0000081,
    lstar = 0xc0000082,
    fs_base = 0xc0000100,
    gs_base = 0xc0000101,
    kernel_gs_base = 0xc0000102,
    vm_cr = 0xc0010114,
    vm_hsave_pa = 0xc0010117,
};
} // namespace msr

inline std::uint64_t rdmsr(std::uint32_t index) {
    std::uint32_t lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(index));
    return (std::uint64_t(hi) << 32) | lo;
}

inline void wrmsr(std::uint32_t index, std::uint64_t value) {
    asm volatile("wrmsr" ::"c"(index), "a"(std::uint32_t(value)), "d"(std::uint32_t(value >> 32)) : "memory");
}

// RDMSR that survives a #GP (unimplemented MSR): the exception handler resumes at
// the fixup recorded in .hv_extable. Returns false when the read faulted.
// `insn` runs with %[f] = 1; the fixup skips the instruction that clears it.
#define HV_X86_FAULT_GUARDED(insn)                                                       \
    "movl $1, %[f]\n"                                                                    \
    "1: " insn "\n"                                                                      \
    "xorl %[f], %[f]\n"                                                                  \
    "2:\n"                                                                               \
    ".pushsection .hv_extable, \"a\"\n"                                                  \
    ".balign 8\n"                                                                        \
    ".quad 1b, 2b\n"                                                                     \
    ".popsection\n"

inline bool rdmsr_safe(std::uint32_t index, std::uint64_t& value) {
    std::uint32_t lo = 0, hi = 0, faulted;
    asm volatile(HV_X86_FAULT_GUARDED("rdmsr")
                 : "=a"(lo), "=d"(hi), [f] "=&r"(faulted)
                 : "c"(index)
                 : "memory");
    value = (std::uint64_t(hi) << 32) | lo;
    return !faulted;
}

inline bool wrmsr_safe(std::uint32_t index, std::uint64_t v) {
    std::uint32_t faulted;
    asm volatile(HV_X86_FAULT_GUARDED("wrmsr")
                 : [f] "=&r"(faulted)
                 : "c"(index), "a"(std::uint32_t(v)), "d"(std::uint32_t(v >> 32))
                 : "memory");
    return !faulted;
}
#undef HV_X86_FAULT_GUARDED

#define HV_X86_CR(n)                                                                     \
    inline std::uint64_t read_cr##n() {                                                  \
        std::uint64_t v;                                                                 \
        asm volatile("mov %%cr" #n ", %0" : "=r"(v));                                    \
        return v;                                                                        \
    }                                                                                    \
    inline void write_cr##n(std::uint64_t v) { asm volatile("mov %0, %%cr" #n ::"r"(v) : "memory"); }
HV_X86_CR(0)
HV_X86_CR(2)
HV_X86_CR(3)
HV_X86_CR(4)
HV_X86_CR(8)  // the local APIC's TPR bits 7:4
#undef HV_X86_CR

inline void outb(std::uint16_t port, std::uint8_t v) { asm volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
inline void outw(std::uint16_t port, std::uint16_t v) { asm volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
inline void outl(std::uint16_t port, std::uint32_t v) { asm volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
inline std::uint8_t inb(std::uint16_t port) {
    std::uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
inline std::uint16_t inw(std::uint16_t port) {
    std::uint16_t v;
    asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
inline std::uint32_t inl(std::uint16_t port) {
    std::uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

inline std::uint64_t rdtsc() {
    std::uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (std::uint64_t(hi) << 32) | lo;
}

inline void pause() { asm volatile("pause"); }
inline void xsetbv(std::uint32_t xcr, std::uint64_t v) {
    asm volatile("xsetbv" ::"c"(xcr), "a"(static_cast<std::uint32_t>(v)), "d"(static_cast<std::uint32_t>(v >> 32)) : "memory");
}
// Needs CR4.OSXSAVE.
inline std::uint64_t xgetbv(std::uint32_t xcr) {
    std::uint32_t lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(xcr));
    return std::uint64_t{hi} << 32 | lo;
}
inline void cli() { asm volatile("cli" ::: "memory"); }
inline void sti() { asm volatile("sti" ::: "memory"); }

[[noreturn]] inline void halt_forever() {
    for (;;) asm volatile("cli; hlt");
}

// SSE on (CR4.OSFXSR/OSXMMEXCPT, CR0.MP, x87 not emulated): the freestanding code never
// uses SSE registers, but fiber switches save MXCSR and the x87 control word.
inline void enable_sse() {
    write_cr0((read_cr0() & ~cr0::em) | cr0::mp);
    write_cr4(read_cr4() | cr4::osfxsr | cr4::osxmmexcpt);
}

// The host takes no legacy interrupts: mask both 8259s (the BIOS leaves the PIT's IRQ0
// unmasked, and an asserted INTR makes every VM entry exit at once).
inline void mask_legacy_pic() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

} // namespace hv::x86
