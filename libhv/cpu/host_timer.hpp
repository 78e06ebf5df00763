// Preemption without a VMX-preemption timer (SVM; VMX CPUs without the control): a
// one-shot timer on the host's own local APIC, armed to a host-TSC deadline before each
// entry. Its interrupt makes the guest exit (SVM INTR intercept, VMX external-interrupt
// exiting); the host then takes it with interrupts open for one instruction, and its
// handler only signals EOI. Per physical CPU: each CPU arms its own local APIC's timer
// (an AP's vCPUs are preempted by the AP's timer); the rate against the TSC is measured
// once, by the first CPU that calls init(), and shared. Metal only.
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"

namespace hv::cpu::host_timer {

inline constexpr std::uint8_t vector = 0xf0;

// On the calling CPU: software-enable its xAPIC and set its timer up (one-shot, vector
// 0xf0); the first call on any CPU also installs the handler and measures the rate.
// Idempotent per CPU; a CPU that failed keeps its reason.
[[nodiscard]] status init();
// init() succeeded on the calling CPU.
[[nodiscard]] bool ready();
// The calling CPU's timer: fire at host TSC `deadline` (at once if it passed); 0 stops the timer.
void arm(std::uint64_t deadline);
// The calling CPU's timer still counts to its deadline: it has not fired (its interrupt,
// once fired, is pending or already taken), nor been stopped.
[[nodiscard]] bool counting();
// Take the timer's interrupt if it is pending (a VMX exit left it unacknowledged).
inline void take_pending() { asm volatile("sti; nop; cli" ::: "memory"); }

} // namespace hv::cpu::host_timer
