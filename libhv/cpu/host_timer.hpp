// Preemption without a VMX-preemption timer (SVM; VMX CPUs without the control): a
// one-shot timer on the host's own local APIC, armed to a host-TSC deadline before each
// entry. Its interrupt makes the guest exit (SVM INTR intercept, VMX external-interrupt
// exiting); the host then takes it with interrupts open for one instruction, and its
// handler only signals EOI. Metal only.
#pragma once
#include <cstdint>
#include "libhv/core/result.hpp"

namespace hv::cpu::host_timer {

inline constexpr std::uint8_t vector = 0xf0;

// Once per physical CPU: software-enable the xAPIC, install the handler, measure the
// timer's rate against the TSC. Idempotent.
[[nodiscard]] status init();
[[nodiscard]] bool ready();
// Fire at host TSC `deadline` (at once if it passed); 0 stops the timer.
void arm(std::uint64_t deadline);
// Take the timer's interrupt if it is pending (a VMX exit left it unacknowledged).
inline void take_pending() { asm volatile("sti; nop; cli" ::: "memory"); }

} // namespace hv::cpu::host_timer
