// The hypervisor's own GDT, TSS (with IST stacks) and IDT, and the exception path.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::x86 {

namespace selector {
enum : std::uint16_t { code64 = 0x08, data = 0x10, tss = 0x18 };
}

// An interrupt gate (present, DPL 0, type 0xE, no IST) to `handler` through code selector
// `cs`: the two quadwords of a 64-bit IDT entry. `low` alone is the 8-byte 32-bit
// interrupt gate of a handler below 4 GiB. For guests' IDTs as well as the hypervisor's.
struct gate_quadwords {
    std::uint64_t low, high;
};
constexpr gate_quadwords interrupt_gate(std::uint64_t handler, std::uint16_t cs = selector::code64) {
    return {(handler & 0xffff) | std::uint64_t{cs} << 16 | std::uint64_t{0x8e} << 40 | (handler >> 16 & 0xffff) << 48,
            handler >> 32};
}
static_assert(interrupt_gate(0x1234'5678'9abc'def0, 0x10).low == 0x9abc'8e00'0010'def0);
static_assert(interrupt_gate(0x1234'5678'9abc'def0, 0x10).high == 0x1234'5678);

// What isr.S pushes, lowest address first. The assembly relies on these offsets.
struct exception_frame {
    std::uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    std::uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    std::uint64_t vector, error_code;
    std::uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU
};
static_assert(offsetof(exception_frame, rax) == 14 * 8);
static_assert(offsetof(exception_frame, vector) == 15 * 8);
static_assert(offsetof(exception_frame, rip) == 17 * 8);
static_assert(sizeof(exception_frame) == 22 * 8);

// The BSP: the shared IDT and the BSP's GDT/TSS (static storage).
void init_cpu_tables();
// An AP: its own GDT, TSS and IST stacks in `storage` (ap_cpu_tables_size() bytes,
// 16-byte aligned, zeroed, kept for good), and the shared IDT.
std::size_t ap_cpu_tables_size();
void init_ap_cpu_tables(void* storage);
// A handler of its own for an interrupt vector (>= 32) on every CPU.
void set_interrupt_gate(std::uint8_t vector, void (*handler)());

struct [[gnu::packed]] descriptor_pointer {
    std::uint16_t limit;
    std::uint64_t base;
};

// Current GDTR/IDTR/TR, e.g. for VMCS host state.
descriptor_pointer current_gdt();
descriptor_pointer current_idt();
std::uint64_t tss_base();  // this CPU's

} // namespace hv::x86
