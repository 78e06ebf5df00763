// This physical CPU's block, reached through the GS base (IA32_GS_BASE): the BSP sets
// its own first thing in hv_start, each AP its own before running any C++ (libhv/rt/smp).
// Metal only.
#pragma once
#include <cstdint>
#include "libhv/arch/x86/cpu.hpp"

namespace hv::x86 {

struct percpu {
    percpu* self = nullptr;  // %gs:0, so a load through GS gives the block's address
    unsigned index = 0;      // 0 = BSP, then the APs in MADT order
    std::uint32_t apic_id = 0;
    // libhv/cpu/host_timer on this CPU: its local APIC timer set up, or why it cannot be.
    bool host_timer_on = false;
    const char* host_timer_failure = nullptr;
};
static_assert(__builtin_offsetof(percpu, self) == 0);

inline percpu* this_cpu() {
    percpu* p;
    asm volatile("mov %%gs:0, %0" : "=r"(p));
    return p;
}
inline unsigned this_cpu_index() { return this_cpu()->index; }

inline void install_percpu(percpu& p) {
    p.self = &p;
    wrmsr(msr::gs_base, reinterpret_cast<std::uintptr_t>(&p));
}

} // namespace hv::x86
