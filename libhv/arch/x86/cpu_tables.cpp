#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

extern "C" const std::uint64_t hv_isr_table[33];
extern "C" const struct extable_entry { std::uint64_t fault_rip, fixup_rip; } __hv_extable_start[], __hv_extable_end[];

namespace hv::x86 {
namespace {

struct [[gnu::packed]] tss64 {
    std::uint32_t reserved0;
    std::uint64_t rsp[3];
    std::uint64_t reserved1;
    std::uint64_t ist[7];
    std::uint64_t reserved2;
    std::uint16_t reserved3;
    std::uint16_t iomap_base;
};
static_assert(sizeof(tss64) == 104 && offsetof(tss64, ist) == 36);

struct idt_gate {
    std::uint16_t offset_low;
    std::uint16_t selector;
    std::uint8_t ist;
    std::uint8_t type_attr;
    std::uint16_t offset_mid;
    std::uint32_t offset_high;
    std::uint32_t reserved;
};
static_assert(sizeof(idt_gate) == 16);

constexpr std::size_t ist_stack_size = 16384;
alignas(16) std::uint8_t ist_stack[ist_stack_size];
alignas(16) std::uint8_t kernel_stack_rsp0[ist_stack_size];
alignas(16) tss64 tss;
alignas(16) std::uint64_t gdt[5];
alignas(16) idt_gate idt[256];

constexpr std::uint64_t code64_descriptor = 0x00af9a000000ffffull;
constexpr std::uint64_t data_descriptor = 0x00cf92000000ffffull;

void set_gate(std::size_t vector, std::uint64_t handler, std::uint8_t ist_index) {
    idt[vector] = idt_gate{std::uint16_t(handler), selector::code64, ist_index, 0x8e /* P, DPL0, interrupt gate */,
                           std::uint16_t(handler >> 16), std::uint32_t(handler >> 32), 0};
}

constexpr const char* vector_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check",
    "#XM SIMD error", "#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
    "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
    "#VC VMM communication", "#SX security", "reserved 31"};

} // namespace

void set_interrupt_gate(std::uint8_t vector, void (*handler)()) {
    set_gate(vector, reinterpret_cast<std::uint64_t>(handler), 0);
}

void init_cpu_tables() {
    auto tss_addr = reinterpret_cast<std::uint64_t>(&tss);
    tss.rsp[0] = reinterpret_cast<std::uint64_t>(kernel_stack_rsp0 + ist_stack_size);
    tss.ist[0] = reinterpret_cast<std::uint64_t>(ist_stack + ist_stack_size);
    tss.iomap_base = sizeof(tss64);
    gdt[0] = 0;
    gdt[1] = code64_descriptor;
    gdt[2] = data_descriptor;
    // 64-bit available TSS: limit, base[23:0], type 9, P; base[31:24]; base[63:32] in the next slot.
    gdt[3] = (sizeof(tss64) - 1) | ((tss_addr & 0xffffff) << 16) | (0x89ull << 40) | (((tss_addr >> 24) & 0xff) << 56);
    gdt[4] = tss_addr >> 32;

    for (std::size_t v = 0; v < 256; ++v) {
        bool on_ist = v == 2 || v == 8 || v == 18;  // NMI, #DF, #MC: a known-good stack
        set_gate(v, hv_isr_table[v < 32 ? v : 32], on_ist ? 1 : 0);
    }

    descriptor_pointer gdtr{sizeof gdt - 1, reinterpret_cast<std::uint64_t>(gdt)};
    descriptor_pointer idtr{sizeof idt - 1, reinterpret_cast<std::uint64_t>(idt)};
    asm volatile("lgdt %0\n"
                 "pushq %1\n"
                 "leaq 1f(%%rip), %%rax\n"
                 "pushq %%rax\n"
                 "lretq\n"
                 "1:\n"
                 "movw %2, %%ax\n"
                 "movw %%ax, %%ds\n"
                 "movw %%ax, %%es\n"
                 "movw %%ax, %%ss\n"
                 "ltr %w3\n"
                 "lidt %4\n"
                 :
                 : "m"(gdtr), "i"(std::uint64_t(selector::code64)), "i"(selector::data), "r"(selector::tss), "m"(idtr)
                 : "rax", "memory");
}

descriptor_pointer current_gdt() {
    descriptor_pointer p;
    asm volatile("sgdt %0" : "=m"(p));
    return p;
}

descriptor_pointer current_idt() {
    descriptor_pointer p;
    asm volatile("sidt %0" : "=m"(p));
    return p;
}

std::uint64_t tss_base() { return reinterpret_cast<std::uint64_t>(&tss); }

} // namespace hv::x86

extern "C" void hv_exception(hv::x86::exception_frame* f) {
    for (auto* e = __hv_extable_start; e != __hv_extable_end; ++e) {
        if (e->fault_rip == f->rip) {
            f->rip = e->fixup_rip;
            return;
        }
    }
    const char* name = f->vector < 32 ? hv::x86::vector_names[f->vector] : "unexpected interrupt (vector >= 32)";
    hv::println("HV-EXCEPTION: vector {} ({}) error={:#x} rip={:#018x} cr2={:#018x}", f->vector, name, f->error_code,
                f->rip, hv::x86::read_cr2());
    hv::println("  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}", f->rax, f->rbx, f->rcx, f->rdx);
    hv::println("  rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}", f->rsi, f->rdi, f->rbp, f->rsp);
    hv::println("  r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}", f->r8, f->r9, f->r10, f->r11);
    hv::println("  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}", f->r12, f->r13, f->r14, f->r15);
    hv::println("  cs={:#x} ss={:#x} rflags={:#x} cr0={:#x} cr3={:#x} cr4={:#x}", f->cs, f->ss, f->rflags,
                hv::x86::read_cr0(), hv::x86::read_cr3(), hv::x86::read_cr4());
    hv::rt::panic("unhandled exception {} ({}) at rip {:#x}", f->vector, name, f->rip);
}
