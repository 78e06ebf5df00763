#include "libhv/cpu/host_timer.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"

// The handler: EOI to the xAPIC at its reset base (identity-mapped), nothing else.
asm(R"(
    .text
    .globl hv_host_timer_isr
hv_host_timer_isr:
    push %rax
    mov $0xfee000b0, %eax
    movl $0, (%rax)
    pop %rax
    iretq
)");
extern "C" void hv_host_timer_isr();

namespace hv::cpu::host_timer {

namespace {
constexpr std::uint64_t xapic_base = 0xfee00000;
enum : std::uint32_t { svr = 0xf0, lvt_timer = 0x320, initial_count = 0x380, current_count = 0x390, divide = 0x3e0 };
volatile std::uint32_t& reg(std::uint32_t r) { return *reinterpret_cast<volatile std::uint32_t*>(xapic_base + r); }

bool initialized = false;
const char* init_failure = nullptr;  // set once init() failed: it is not tried again
std::uint64_t apic_per_tsc = 0;  // timer counts per TSC tick, 32.32 fixed point

status measure_and_start() {
    const std::uint64_t base = x86::rdmsr(x86::msr::apic_base);
    if (!(base & (1u << 11))) return fail(errc::not_supported, "host local APIC disabled");
    if ((base & (1u << 10))) return fail(errc::not_supported, "host local APIC in x2APIC mode");
    if ((base & ~0xfffull) != xapic_base) return fail(errc::not_supported, "host local APIC moved from 0xfee00000");
    x86::set_interrupt_gate(vector, &hv_host_timer_isr);
    reg(svr) = reg(svr) | 0x100;
    reg(divide) = 0xb;                 // divide by 1
    reg(lvt_timer) = 0x10000 | vector;  // masked while measuring
    reg(initial_count) = 0xffffffffu;
    const std::uint64_t t0 = x86::rdtsc();
    std::uint64_t t1;
    while ((t1 = x86::rdtsc()) - t0 < 100000) x86::pause();
    const std::uint64_t counted = 0xffffffffu - reg(current_count);
    reg(initial_count) = 0;
    if (!counted) return fail(errc::not_supported, "host APIC timer does not count");
    apic_per_tsc = (counted << 32) / (t1 - t0);
    if (!apic_per_tsc) apic_per_tsc = 1;
    reg(lvt_timer) = vector;  // one-shot, unmasked
    initialized = true;
    return {};
}
} // namespace

status init() {
    if (initialized) return {};
    if (init_failure) return fail(errc::not_supported, init_failure);
    auto s = measure_and_start();
    if (!s.ok()) init_failure = s.err().what;
    return s;
}

bool ready() { return initialized; }

void arm(std::uint64_t deadline) {
    if (!deadline) {
        reg(initial_count) = 0;
        return;
    }
    const std::uint64_t now = x86::rdtsc();
    std::uint64_t delta = deadline > now ? deadline - now : 0;
    if (delta > (1ull << 31)) delta = 1ull << 31;
    // Rounded up: a timer that fires early costs one more exit and entry.
    std::uint64_t count = static_cast<std::uint64_t>((static_cast<unsigned __int128>(delta) * apic_per_tsc) >> 32) + 1;
    if (count > 0xffffffffu) count = 0xffffffffu;
    reg(initial_count) = static_cast<std::uint32_t>(count);
}

} // namespace hv::cpu::host_timer
