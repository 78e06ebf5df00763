// The hypervisor's own GDT, TSS (with IST stacks) and IDT, and the exception path.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::x86 {

namespace selector {
enum : std::uint16_t { code64 = 0x08, data = 0x10, tss = 0x18 };
}

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

void init_cpu_tables();
// Points an IDT vector (>= 32) at a handler of the hypervisor's own (an interrupt gate).
void set_interrupt_gate(std::uint8_t vector, void (*handler)());

struct [[gnu::packed]] descriptor_pointer {
    std::uint16_t limit;
    std::uint64_t base;
};

// Current GDTR/IDTR/TR, e.g. for VMCS host state.
descriptor_pointer current_gdt();
descriptor_pointer current_idt();
std::uint64_t tss_base();

} // namespace hv::x86
