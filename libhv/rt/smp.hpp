// The physical CPUs: discovered from the firmware's ACPI MADT, the APs started with
// INIT-SIPI-SIPI through the local APIC (x2APIC or xAPIC, as the BSP has it), each then
// waiting for work in HLT. Metal only.
//
//   BSP: start_aps(boot) ── MADT ── per AP: stack, GDT/TSS/IST, per-CPU block
//        │                          INIT, SIPI(0x08) [, SIPI] ──▶ trampoline at 0x8000
//        │                          real mode → protected → long mode on the BSP's CR3
//        │                          ──▶ ap_main: GS base, tables, SSE, PAT, LAPIC on, online
//        post(cpu, fn, arg) ── kick IPI ──▶ AP wakes from HLT, runs fn(arg), done(cpu)
//
// Kick IPIs (kick_vector) only wake a CPU: their handler counts them and ends the
// interrupt; whoever waits re-checks its own state. libhv's host otherwise runs with
// IF = 0: wait_for_kick() and take_pending_interrupts() are the only places it is 1.
#pragma once
#include <cstdint>
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/result.hpp"

namespace hv::rt::smp {

inline constexpr std::uint8_t kick_vector = 0xf1;  // 0xf0: cpu::host_timer
inline constexpr std::uint8_t spurious_vector = 0xff;
inline constexpr unsigned max_cpus = 16;
// Where the AP trampoline is copied (the SIPI vector is its page number).
inline constexpr std::uint64_t trampoline_base = 0x8000;

// hv_start, first thing: the BSP's per-CPU block (GS base), which the console lock needs.
void init_bsp_percpu();

// Physical CPUs running libhv: 1 until start_aps.
[[nodiscard]] unsigned online();
[[nodiscard]] unsigned this_cpu();
[[nodiscard]] std::uint32_t apic_id(unsigned cpu);
[[nodiscard]] bool x2apic();

// Starts every enabled processor of the MADT (the RSDP from the loader, else the BIOS
// areas). Without ACPI, or with one CPU, prints why and leaves one CPU online. Once.
[[nodiscard]] result<unsigned> start_aps(const boot::info& bi);

// Runs fn(arg) on AP `cpu`, which must be idle; returns at once.
[[nodiscard]] status post(unsigned cpu, void (*fn)(void*), void* arg);
[[nodiscard]] bool done(unsigned cpu);
void wait(unsigned cpu);  // until fn returned on `cpu`

// A kick IPI to `cpu` (from any CPU, to any other).
void kick(unsigned cpu);
// Kick IPIs `cpu` has taken.
[[nodiscard]] std::uint64_t kicks(unsigned cpu);
// Interrupts on until one arrives (a kick), or until the TSC reaches `tsc_deadline`
// (0: no deadline). Returns with IF = 0.
void wait_for_kick(std::uint64_t tsc_deadline = 0);
// Take a host interrupt that is pending (after an external-interrupt exit).
inline void take_pending_interrupts() { asm volatile("sti; nop; cli" ::: "memory"); }

} // namespace hv::rt::smp
