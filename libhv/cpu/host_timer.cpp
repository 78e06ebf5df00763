#include "libhv/cpu/host_timer.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/arch/x86/percpu.hpp"
#include "libhv/core/spinlock.hpp"

// The handler: EOI to the xAPIC at its reset base (identity-mapped), nothing else. The
// xAPIC page is the same address on every CPU and each CPU reaches its own local APIC
// there, so one handler in the shared IDT ends the interrupt of whichever CPU takes it.
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

// The rate, measured once on the first CPU that asks (every local APIC timer of a machine
// counts the same bus clock): timer counts per TSC tick, 32.32 fixed point.
spinlock calibration_lock;
std::uint64_t apic_per_tsc = 0;
const char* calibration_failure = nullptr;

status check_this_lapic() {
    const std::uint64_t base = x86::rdmsr(x86::msr::apic_base);
    if (!(base & (1u << 11))) return fail(errc::not_supported, "host local APIC disabled");
    if ((base & (1u << 10))) return fail(errc::not_supported, "host local APIC in x2APIC mode");
    if ((base & ~0xfffull) != xapic_base) return fail(errc::not_supported, "host local APIC moved from 0xfee00000");
    return {};
}

// This CPU's timer: software-enabled APIC, divide by 1, masked, stopped.
void setup_this_lapic() {
    reg(svr) = reg(svr) | 0x100;
    reg(divide) = 0xb;
    reg(lvt_timer) = 0x10000 | vector;
    reg(initial_count) = 0;
}

status calibrate_here() {
    reg(initial_count) = 0xffffffffu;
    const std::uint64_t t0 = x86::rdtsc();
    std::uint64_t t1;
    while ((t1 = x86::rdtsc()) - t0 < 100000) x86::pause();
    const std::uint64_t counted = 0xffffffffu - reg(current_count);
    reg(initial_count) = 0;
    if (!counted) return fail(errc::not_supported, "host APIC timer does not count");
    const std::uint64_t rate = (counted << 32) / (t1 - t0);
    __atomic_store_n(&apic_per_tsc, rate ? rate : 1, __ATOMIC_RELEASE);
    return {};
}

status start_here() {
    HV_TRY(check_this_lapic());
    setup_this_lapic();
    if (!__atomic_load_n(&apic_per_tsc, __ATOMIC_ACQUIRE)) {
        lock_guard g{calibration_lock};
        if (calibration_failure) return fail(errc::not_supported, calibration_failure);
        if (!apic_per_tsc) {
            x86::set_interrupt_gate(vector, &hv_host_timer_isr);
            if (auto s = calibrate_here(); !s.ok()) {
                calibration_failure = s.err().what;
                return s;
            }
        }
    }
    reg(lvt_timer) = vector;  // one-shot, unmasked
    return {};
}
} // namespace

status init() {
    x86::percpu& here = *x86::this_cpu();
    if (here.host_timer_on) return {};
    if (here.host_timer_failure) return fail(errc::not_supported, here.host_timer_failure);
    auto s = start_here();
    if (s.ok()) here.host_timer_on = true;
    else here.host_timer_failure = s.err().what;
    return s;
}

bool ready() { return x86::this_cpu()->host_timer_on; }

// One-shot mode: the current count stays 0 once it reached 0.
bool counting() { return reg(current_count) != 0; }

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
