// Image "hvm-guest": a libhv-runtime kernel that runs INSIDE an HVM guest of examples/hvm
// and checks the emulated PC from the guest's side. Program (run=NAME):
//   dev.all   UART loopback and THR-empty interrupt; PIT (via the 8259, then via the
//             IOAPIC) and LAPIC timer (periodic, TSC deadline) at their rates in guest TSC
//             ticks; RTC date;
//             ACPI RSDP/XSDT/MADT/FADT/DSDT found and checksummed; PCI bus scan;
//             fw_cfg signature, CPU count and RAM size; MMIO instruction forms on the
//             LAPIC compared with the same instructions on RAM; with APs: INIT/SIPI
//             (targeted, then broadcast) and every AP reports; HV-BENCH lines; last,
//             x2APIC mode through IA32_APIC_BASE (ID, version, TPR, self IPI by MSR).
//   dev.poweroff  ACPI S5 through PM1a_CNT (port from the FADT, SLP_TYP from \_S5 in the DSDT)
//   dev.reset     8042 pulse reset (0xfe to port 0x64)
//   smp.pcpu      starts its APs with libhv/rt/smp (MADT, INIT-SIPI-SIPI through the emulated
//                 LAPIC, long-mode trampoline); vCPU 0 and 1 report the physical CPU running them
//                 (CPUID 0x40000f00), count to 4000 under one spinlock, exchange 16 IPI round trips;
//                 then, with preemption=1: a spinning guest's LAPIC one-shot on vCPU 0, then on
//                 vCPU 1; with shootdown=1 (host test-port=1): an IPI to vCPU 1 while it spins
//                 with interrupts on, then vCPU 0 write-protects a page vCPU 1
//                 writes in a loop, every later write must fault; lifting it stops the faults
// The guest TSC frequency comes from CPUID 0x40000010 (libhv's timing leaf).
#include <cstdint>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/rt/smp.hpp"
#include "libhv/core/spinlock.hpp"
#include "libhv/core/cmdline.hpp"

// Interrupt stubs: the vector to guest_irq(vector), caller-saved registers preserved.
asm(R"(
    .text
    .code64
.macro HVG_IRQ vec
    .globl hvg_irq_\vec
hvg_irq_\vec:
    push %rdi
    mov $\vec, %edi
    jmp hvg_irq_common
.endm
    HVG_IRQ 0x20
    HVG_IRQ 0x24
    HVG_IRQ 0x40
    HVG_IRQ 0x41
    HVG_IRQ 0x42
    HVG_IRQ 0x43
    HVG_IRQ 0x44
    HVG_IRQ 0xff
hvg_irq_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %r8
    push %r9
    push %r10
    push %r11
    call guest_irq
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    pop %rdi
    iretq

    /* The AP trampoline, copied to 0x8000 (SIPI vector 8) or 0x9000: real mode, CS = DS
       = the page. Counts its start in its slot (CPUID.1:EBX[31:24] = APIC ID), prints
       "ap N up", then sleeps with interrupts off. */
    .section .rodata
    .code16
    .globl hvg_ap_start, hvg_ap_end
hvg_ap_start:
    cli
    mov %cs, %ax
    mov %ax, %ds
    mov $1, %eax
    cpuid
    shr $24, %ebx
    and $0xf, %bx
    lock incb (hvg_ap_counts - hvg_ap_start)(%bx)
    mov $0x3f8, %dx
    mov $0x61, %al  /* "ap N up\n" */
    out %al, %dx
    mov $0x70, %al
    out %al, %dx
    mov $0x20, %al
    out %al, %dx
    mov %bl, %al
    add $0x30, %al
    out %al, %dx
    mov $0x20, %al
    out %al, %dx
    mov $0x75, %al
    out %al, %dx
    mov $0x70, %al
    out %al, %dx
    mov $0x0a, %al
    out %al, %dx
1:  hlt
    jmp 1b
    .balign 16
hvg_ap_counts:
    .fill 16, 1, 0
hvg_ap_end:
    .code64
    .text

    /* MMIO instruction forms on *rdi (a LAPIC register or RAM); results to rsi[]:
       value or flags after each. Values stay within the TPR's 8 bits. */
    .globl hvg_forms
hvg_forms:
    push %rbx
    movl $0x35, (%rdi)
    movl (%rdi), %eax
    mov %rax, 0(%rsi)
    addl $0x10, (%rdi)
    pushf
    pop %rax
    mov %rax, 8(%rsi)
    movl (%rdi), %eax
    mov %rax, 16(%rsi)
    orl $0x02, (%rdi)
    pushf
    pop %rax
    mov %rax, 24(%rsi)
    andl $0xf3, (%rdi)
    pushf
    pop %rax
    mov %rax, 32(%rsi)
    xorl $0x11, (%rdi)
    pushf
    pop %rax
    mov %rax, 40(%rsi)
    subl $0x05, (%rdi)
    pushf
    pop %rax
    mov %rax, 48(%rsi)
    movl (%rdi), %eax
    mov %rax, 56(%rsi)
    cmpl $0x40, (%rdi)
    pushf
    pop %rax
    mov %rax, 64(%rsi)
    testl $0x40, (%rdi)
    pushf
    pop %rax
    mov %rax, 72(%rsi)
    btl $2, (%rdi)
    pushf
    pop %rax
    mov %rax, 80(%rsi)
    mov $0x22, %eax
    xchgl %eax, (%rdi)
    mov %rax, 88(%rsi)
    mov $0x22, %eax
    mov $0x33, %ecx
    lock cmpxchgl %ecx, (%rdi)
    pushf
    pop %rbx
    mov %rbx, 96(%rsi)
    mov %rax, 104(%rsi)
    mov $0x99, %eax
    mov $0x44, %ecx
    lock cmpxchgl %ecx, (%rdi)
    pushf
    pop %rbx
    mov %rbx, 112(%rsi)
    mov %rax, 120(%rsi)
    movl (%rdi), %r9d
    mov %r9, 128(%rsi)
    /* MOVS from the register into a stack slot, then a new value from a slot into it. */
    sub $16, %rsp
    push %rsi
    push %rdi
    mov %rdi, %rsi
    lea 16(%rsp), %rdi
    movsl
    movl $0x5a, 24(%rsp)
    mov 0(%rsp), %rdi
    lea 24(%rsp), %rsi
    movsl
    pop %rdi
    pop %rsi
    movl 0(%rsp), %eax
    mov %rax, 136(%rsi)
    add $16, %rsp
    movl (%rdi), %eax
    mov %rax, 144(%rsi)
    movl $0, (%rdi)
    pop %rbx
    ret
)");

extern "C" char hvg_ap_start[], hvg_ap_end[];
extern "C" void hvg_irq_0x20(), hvg_irq_0x24(), hvg_irq_0x40(), hvg_irq_0x41(), hvg_irq_0x42(), hvg_irq_0x43(),
    hvg_irq_0x44(), hvg_irq_0xff();
extern "C" void hvg_forms(volatile std::uint32_t* reg, std::uint64_t* out);

namespace {

using namespace hv;
using x86::inb;
using x86::outb;

// ---- platform access ----
constexpr std::uint64_t lapic_base = 0xfee00000;
volatile std::uint32_t& lapic(std::uint32_t reg) { return *reinterpret_cast<volatile std::uint32_t*>(lapic_base + reg); }
enum : std::uint32_t {
    apic_id = 0x20, apic_tpr = 0x80, apic_eoi = 0xb0, apic_svr = 0xf0, apic_icr_lo = 0x300, apic_icr_hi = 0x310,
    apic_lvt_timer = 0x320, apic_timer_initial = 0x380, apic_timer_current = 0x390, apic_timer_divide = 0x3e0,
};
constexpr std::uint16_t com1 = 0x3f8;
enum : std::uint16_t { uart_thr = 0, uart_ier = 1, uart_iir = 2, uart_mcr = 4, uart_lsr = 5, uart_msr = 6 };

void outw(std::uint16_t port, std::uint16_t v) { asm volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
std::uint32_t inl(std::uint16_t port) {
    std::uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

// ---- interrupts ----
struct irq_record {
    volatile std::uint64_t count = 0;
    std::uint64_t stamps[16] = {};
};
irq_record irqs[256];
volatile std::uint8_t last_iir = 0;

enum class eoi_kind : std::uint8_t { none, pic, lapic };
bool x2apic_on = false;  // local APIC EOIs go to MSR 0x80b instead of the xAPIC page
eoi_kind eoi_of[256];

void set_gate(unsigned vector, void (*stub)(), eoi_kind eoi) {
    const x86::descriptor_pointer idt = x86::current_idt();
    auto* gate = reinterpret_cast<volatile std::uint64_t*>(idt.base + 16 * vector);
    const auto g = x86::interrupt_gate(reinterpret_cast<std::uint64_t>(stub));
    gate[0] = g.low;
    gate[1] = g.high;
    eoi_of[vector] = eoi;
}

void wait_for_interrupt() { asm volatile("sti; hlt; cli" ::: "memory"); }

// Waits (HLT) until `vector` has been taken `n` times in all; false after `limit` ticks.
bool wait_irqs(unsigned vector, std::uint64_t n, std::uint64_t limit) {
    const std::uint64_t start = x86::rdtsc();
    while (irqs[vector].count < n) {
        if (x86::rdtsc() - start > limit) return false;
        wait_for_interrupt();
    }
    return true;
}

void pic_init(std::uint8_t master_mask) {
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0xa1, 0xff);
    outb(0x21, master_mask);
}

std::uint64_t tsc_hz = 0, apic_timer_hz = 0;

// ---- checks ----
#define CHECK_OR_FAIL(cond, ...)                                          \
    do {                                                                  \
        if (!(cond)) {                                                    \
            println(__VA_ARGS__);                                         \
            return fail(errc::fault, "check failed: " #cond);             \
        }                                                                 \
    } while (0)

status check_timing_leaf() {
    const auto top = x86::cpuid(0x40000000);
    CHECK_OR_FAIL(top.eax >= 0x40000010, "timing: hypervisor leaves end at {:#x}", top.eax);
    const auto t = x86::cpuid(0x40000010);
    tsc_hz = std::uint64_t{t.eax} * 1000;
    apic_timer_hz = std::uint64_t{t.ebx} * 1000;
    CHECK_OR_FAIL(tsc_hz && apic_timer_hz, "timing: zero frequencies");
    println("check timing: TSC {} kHz, APIC timer {} kHz", t.eax, t.ebx);
    return {};
}

status check_uart() {
    const std::uint8_t mcr = inb(com1 + uart_mcr);
    outb(com1 + uart_mcr, 0x1f);  // loop + DTR/RTS/OUT1/OUT2 → DSR/CTS/RI/DCD
    const std::uint8_t msr = inb(com1 + uart_msr);
    while (inb(com1 + uart_lsr) & 1) (void)inb(com1);
    outb(com1 + uart_thr, 0x5a);
    const std::uint8_t lsr = inb(com1 + uart_lsr);
    const std::uint8_t got = inb(com1 + uart_thr);
    const std::uint8_t lsr_after = inb(com1 + uart_lsr);
    outb(com1 + uart_mcr, mcr);
    CHECK_OR_FAIL((msr & 0xf0) == 0xf0, "uart: loopback MSR {:#x}", msr);
    CHECK_OR_FAIL((lsr & 1) && got == 0x5a && !(lsr_after & 1), "uart: loopback lsr {:#x} byte {:#x} lsr {:#x}", lsr,
                  got, lsr_after);

    // THR empty interrupt: IRQ4 through the 8259 (OUT2 gates the IRQ line on a PC).
    set_gate(0x24, &hvg_irq_0x24, eoi_kind::pic);
    pic_init(0xef);
    outb(com1 + uart_mcr, mcr | 0x08);
    const std::uint64_t before = irqs[0x24].count;
    outb(com1 + uart_ier, 0x02);
    const bool taken = wait_irqs(0x24, before + 1, 100000000);
    outb(com1 + uart_ier, 0);
    outb(0x21, 0xff);
    outb(com1 + uart_mcr, mcr);
    CHECK_OR_FAIL(taken, "uart: no THR-empty interrupt");
    CHECK_OR_FAIL((last_iir & 0x0f) == 0x02, "uart: IIR in the handler {:#x}", static_cast<unsigned>(last_iir));
    println("check uart: loopback byte and modem lines, THR-empty interrupt (IIR {:#x})", static_cast<unsigned>(last_iir));
    return {};
}

// The mean of intervals 1..n-1 between stamps (the first is the start-up's).
status check_rate(const char* what, const irq_record& r, unsigned n, std::uint64_t expected) {
    std::uint64_t sum = 0, lo = ~0ull, hi = 0;
    for (unsigned i = 1; i < n; ++i) {
        const std::uint64_t d = r.stamps[i] - r.stamps[i - 1];
        sum += d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    const std::uint64_t mean = sum / (n - 1);
    println("check {}: {} intervals, mean {} ticks (min {}, max {}), expected {}", what, n - 1, mean, lo, hi, expected);
    CHECK_OR_FAIL(mean >= expected - expected / 100 && mean <= expected + expected / 100, "{}: mean off by more than 1%",
                  what);
    CHECK_OR_FAIL(lo >= expected - expected / 20 && hi <= expected + expected / 20, "{}: an interval off by more than 5%",
                  what);
    return {};
}

status check_pit() {
    set_gate(0x20, &hvg_irq_0x20, eoi_kind::pic);
    pic_init(0xfe);
    irqs[0x20].count = 0;
    constexpr std::uint16_t count = 1193;  // ~1 ms
    outb(0x43, 0x34);
    outb(0x40, count & 0xff);
    outb(0x40, count >> 8);
    const bool ok = wait_irqs(0x20, 6, 100 * tsc_hz / 1000);
    outb(0x43, 0x30);  // mode 0, no count: channel 0 stops
    outb(0x21, 0xff);
    CHECK_OR_FAIL(ok, "pit: {} interrupts only", irqs[0x20].count);
    return check_rate("pit", irqs[0x20], 6, count * tsc_hz / 1193182);
}

status check_lapic_timer() {
    set_gate(0x40, &hvg_irq_0x40, eoi_kind::lapic);
    set_gate(0x41, &hvg_irq_0x41, eoi_kind::lapic);
    irqs[0x40].count = 0;
    lapic(apic_timer_divide) = 0xb;  // divide by 1
    lapic(apic_lvt_timer) = 0x20040;
    const std::uint32_t initial = static_cast<std::uint32_t>(apic_timer_hz / 1000);
    lapic(apic_timer_initial) = initial;
    const std::uint32_t current = lapic(apic_timer_current);
    const bool ok = wait_irqs(0x40, 6, 100 * tsc_hz / 1000);
    lapic(apic_timer_initial) = 0;
    lapic(apic_lvt_timer) = 0x10000;
    CHECK_OR_FAIL(ok, "lapic timer: {} interrupts only", irqs[0x40].count);
    CHECK_OR_FAIL(current > 0 && current < initial, "lapic timer: current count {} of {}", current, initial);
    HV_TRY(check_rate("lapic-timer", irqs[0x40], 6, tsc_hz / 1000));

    // TSC-deadline mode: one interrupt at (not before) the deadline.
    const auto leaf1 = x86::cpuid(1);
    CHECK_OR_FAIL(leaf1.ecx & (1u << 24), "lapic timer: no TSC-deadline mode in CPUID");
    irqs[0x41].count = 0;
    lapic(apic_lvt_timer) = 0x40041;
    const std::uint64_t deadline = x86::rdtsc() + tsc_hz / 1000;
    x86::wrmsr(0x6e0, deadline);
    const bool fired = wait_irqs(0x41, 1, 100 * tsc_hz / 1000);
    lapic(apic_lvt_timer) = 0x10000;
    CHECK_OR_FAIL(fired, "lapic timer: TSC deadline never fired");
    const std::uint64_t late = irqs[0x41].stamps[0] - deadline;
    println("check lapic-tsc-deadline: fired {} ticks after the deadline", static_cast<std::int64_t>(late));
    CHECK_OR_FAIL(irqs[0x41].stamps[0] >= deadline && late < tsc_hz / 1000 / 20, "lapic timer: deadline missed");
    return {};
}

// Preemption: a one-shot LAPIC timer while the guest spins without a single exit (no
// I/O, MMIO or HLT; RDTSC does not exit) must still interrupt it on time.
status check_preemption(const char* where = "") {
    set_gate(0x44, &hvg_irq_0x44, eoi_kind::lapic);
    irqs[0x44].count = 0;
    lapic(apic_timer_divide) = 0xb;
    lapic(apic_lvt_timer) = 0x44;  // one-shot
    const std::uint64_t start = x86::rdtsc();
    lapic(apic_timer_initial) = static_cast<std::uint32_t>(apic_timer_hz / 1000);  // 1 ms
    const std::uint64_t limit = 50 * tsc_hz / 1000;
    asm volatile("sti" ::: "memory");
    while (!irqs[0x44].count && x86::rdtsc() - start < limit) {}
    asm volatile("cli" ::: "memory");
    lapic(apic_lvt_timer) = 0x10000;
    CHECK_OR_FAIL(irqs[0x44].count == 1, "preemption{}: the timer did not interrupt a spinning guest within 50 ms", where);
    const std::uint64_t due = start + tsc_hz / 1000;
    const auto late = static_cast<std::int64_t>(irqs[0x44].stamps[0] - due);
    println("check preemption{}: a spinning guest took its timer {} ticks after it was due", where, late);
    // Due when the count reaches 0; the MMIO write that starts it takes a few thousand ticks.
    CHECK_OR_FAIL(late > -static_cast<std::int64_t>(tsc_hz / 100000) && late < static_cast<std::int64_t>(tsc_hz / 10000),
                  "preemption: timer taken {} ticks from its due time (bound: 100 us)", late);
    return {};
}

// The PIT again, now through the IOAPIC (MADT: IRQ0 → GSI 2) with the 8259s masked.
status check_ioapic() {
    auto* sel = reinterpret_cast<volatile std::uint32_t*>(0xfec00000);
    auto* win = reinterpret_cast<volatile std::uint32_t*>(0xfec00010);
    auto reg = [&](std::uint32_t i) {
        *sel = i;
        return *win;
    };
    const std::uint32_t id = reg(0) >> 24, version = reg(1);
    set_gate(0x43, &hvg_irq_0x43, eoi_kind::lapic);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    irqs[0x43].count = 0;
    *sel = 0x10 + 2 * 2 + 1;
    *win = 0;  // destination APIC 0
    *sel = 0x10 + 2 * 2;
    *win = 0x43;  // vector 0x43, fixed, physical, edge, unmasked
    constexpr std::uint16_t count = 1193;
    outb(0x43, 0x34);
    outb(0x40, count & 0xff);
    outb(0x40, count >> 8);
    const bool ok = wait_irqs(0x43, 4, 100 * tsc_hz / 1000);
    outb(0x43, 0x30);
    *sel = 0x10 + 2 * 2;
    *win = 0x10000;  // masked again
    println("check ioapic: ID {}, version {:#x} ({} pins), PIT on GSI 2: {} interrupts", id, version & 0xff,
            ((version >> 16) & 0xff) + 1, irqs[0x43].count);
    CHECK_OR_FAIL(ok && ((version >> 16) & 0xff) == 23, "ioapic: PIT interrupts through GSI 2 missing");
    return check_rate("ioapic-pit", irqs[0x43], 4, count * tsc_hz / 1193182);
}

std::uint8_t cmos(std::uint8_t reg) {
    outb(0x70, reg);
    return inb(0x71);
}

status check_rtc() {
    while (cmos(0x0a) & 0x80) {}
    const std::uint8_t sec = cmos(0), min = cmos(2), hour = cmos(4), day = cmos(7), month = cmos(8), year = cmos(9),
                       century = cmos(0x32), b = cmos(0x0b);
    println("check rtc: {:02x}{:02x}-{:02x}-{:02x} {:02x}:{:02x}:{:02x} (status B {:#x})", century, year, month, day, hour,
            min, sec, b);
    CHECK_OR_FAIL(!(b & 0x04) && (b & 0x02), "rtc: expected BCD, 24-hour (status B {:#x})", b);
    CHECK_OR_FAIL(century == 0x20 && year == 0x26 && month == 0x01 && day == 0x01 && hour == 0 && min == 0 &&
                      sec < 0x60 && (sec & 0x0f) < 10,
                  "rtc: not 2026-01-01 00:00 as the hypervisor set it");
    return {};
}

std::uint8_t sum_bytes(const volatile std::uint8_t* p, std::size_t n) {
    std::uint8_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s = static_cast<std::uint8_t>(s + p[i]);
    return s;
}
template <class T>
T read_at(std::uint64_t addr) {
    T v;
    __builtin_memcpy(&v, reinterpret_cast<const void*>(addr), sizeof v);
    return v;
}
bool sig_is(std::uint64_t addr, const char* sig, std::size_t n) { return __builtin_memcmp(reinterpret_cast<const void*>(addr), sig, n) == 0; }

unsigned madt_cpus = 0;

status check_table(std::uint64_t addr, const char* sig) {
    CHECK_OR_FAIL(sig_is(addr, sig, 4), "acpi: no {} at {:#x}", sig, addr);
    const std::uint32_t len = read_at<std::uint32_t>(addr + 4);
    CHECK_OR_FAIL(len >= 36 && len < 0x10000, "acpi: {} length {}", sig, len);
    CHECK_OR_FAIL(sum_bytes(reinterpret_cast<const volatile std::uint8_t*>(addr), len) == 0, "acpi: {} checksum", sig);
    return {};
}

std::uint64_t find_rsdp() {
    for (std::uint64_t a = 0xe0000; a < 0x100000; a += 16)
        if (sig_is(a, "RSD PTR ", 8)) return a;
    return 0;
}

// The table with signature `sig` the XSDT lists, or 0.
std::uint64_t find_table(std::uint64_t rsdp, const char* sig) {
    const std::uint64_t xsdt = read_at<std::uint64_t>(rsdp + 24);
    const std::uint32_t entries = (read_at<std::uint32_t>(xsdt + 4) - 36) / 8;
    for (std::uint32_t i = 0; i < entries; ++i) {
        const std::uint64_t t = read_at<std::uint64_t>(xsdt + 36 + 8 * i);
        if (sig_is(t, sig, 4)) return t;
    }
    return 0;
}

std::uint64_t dsdt_of(std::uint64_t fadt) {
    const std::uint64_t x = read_at<std::uint32_t>(fadt + 4) >= 148 ? read_at<std::uint64_t>(fadt + 140) : 0;
    return x ? x : read_at<std::uint32_t>(fadt + 40);
}

status check_acpi(const rt::context& ctx) {
    const std::uint64_t rsdp = find_rsdp();
    CHECK_OR_FAIL(rsdp, "acpi: no RSDP in 0xe0000-0xfffff");
    // PVH passes the RSDP's address; multiboot2 a copy of it in its information.
    CHECK_OR_FAIL(!ctx.boot.rsdp || __builtin_memcmp(reinterpret_cast<const void*>(ctx.boot.rsdp),
                                                     reinterpret_cast<const void*>(rsdp), 36) == 0,
                  "acpi: the loader's RSDP at {:#x} differs from the one found at {:#x}", ctx.boot.rsdp, rsdp);
    const auto* p = reinterpret_cast<const volatile std::uint8_t*>(rsdp);
    CHECK_OR_FAIL(sum_bytes(p, 20) == 0, "acpi: RSDP checksum");
    CHECK_OR_FAIL(p[15] >= 2 && sum_bytes(p, read_at<std::uint32_t>(rsdp + 20)) == 0, "acpi: RSDP v2 extended checksum");
    const std::uint64_t xsdt = read_at<std::uint64_t>(rsdp + 24);
    HV_TRY(check_table(xsdt, "XSDT"));
    const std::uint32_t entries = (read_at<std::uint32_t>(xsdt + 4) - 36) / 8;
    const std::uint64_t madt = find_table(rsdp, "APIC"), fadt = find_table(rsdp, "FACP");
    HV_TRY(check_table(madt, "APIC"));
    HV_TRY(check_table(fadt, "FACP"));
    unsigned ioapics = 0;
    const std::uint32_t madt_len = read_at<std::uint32_t>(madt + 4);
    for (std::uint64_t e = madt + 44; e + 2 <= madt + madt_len;) {
        const std::uint8_t type = read_at<std::uint8_t>(e), len = read_at<std::uint8_t>(e + 1);
        if (len < 2) break;
        if (type == 0 && (read_at<std::uint32_t>(e + 4) & 1)) ++madt_cpus;
        if (type == 1) ++ioapics;
        e += len;
    }
    const std::uint64_t dsdt = dsdt_of(fadt);
    HV_TRY(check_table(dsdt, "DSDT"));
    println("check acpi: RSDP {:#x} (loader: {:#x}), XSDT {:#x} ({} tables), MADT {} CPUs {} IOAPIC, FADT, DSDT {:#x}: checksums good", rsdp,
            ctx.boot.rsdp, xsdt, entries, madt_cpus, ioapics, dsdt);
    CHECK_OR_FAIL(madt_cpus >= 1 && ioapics == 1, "acpi: MADT content");
    return {};
}

status check_pci() {
    unsigned found = 0;
    std::uint32_t host_id = 0, host_class = 0;
    for (std::uint32_t dev = 0; dev < 32; ++dev) {
        x86::outl(0xcf8, 0x80000000u | (dev << 11));
        const std::uint32_t id = inl(0xcfc);
        if ((id & 0xffff) == 0xffff) continue;
        ++found;
        if (dev == 0) {
            host_id = id;
            x86::outl(0xcf8, 0x80000008u);
            host_class = inl(0xcfc) >> 16;
        }
    }
    println("check pci: {} device(s) on bus 0; 00:00.0 {:04x}:{:04x} class {:04x}", found, host_id & 0xffff, host_id >> 16,
            host_class);
    CHECK_OR_FAIL(found >= 1 && (host_id & 0xffff) != 0xffff && host_id && host_class == 0x0600,
                  "pci: no host bridge at 00:00.0");
    return {};
}

status check_fw_cfg(const rt::context& ctx) {
    auto select = [](std::uint16_t key) { outw(0x510, key); };
    auto bytes = [](unsigned n) {
        std::uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{inb(0x511)} << (8 * i);
        return v;
    };
    select(0);
    const std::uint64_t sig = bytes(4);
    select(5);
    const std::uint64_t cpus = bytes(2);
    select(3);
    const std::uint64_t ram = bytes(8);
    std::uint64_t top = 0;
    for (std::size_t i = 0; i < ctx.boot.region_count; ++i) {
        const auto& r = ctx.boot.regions[i];
        if (r.type == boot::region_type::available && r.base + r.length > top) top = r.base + r.length;
    }
    println("check fw_cfg: signature {:#x}, {} CPUs, RAM {} MiB (boot memory map ends at {} MiB)", sig, cpus, ram >> 20,
            top >> 20);
    CHECK_OR_FAIL(sig == 0x554d4551, "fw_cfg: signature is not QEMU");
    CHECK_OR_FAIL(cpus == madt_cpus, "fw_cfg: {} CPUs, MADT {}", cpus, madt_cpus);
    CHECK_OR_FAIL(ram == top, "fw_cfg: RAM size differs from the memory map");
    return {};
}

status check_mmio_forms() {
    constexpr unsigned n = 19;
    std::uint64_t on_lapic[n] = {}, on_ram[n] = {};
    static volatile std::uint32_t ram_reg = 0;
    hvg_forms(&lapic(apic_tpr), on_lapic);
    hvg_forms(&ram_reg, on_ram);
    // What each result is: a 32-bit value, or RFLAGS with the flags the instruction defines.
    constexpr std::uint64_t value = 0xffffffff, arith = 0x8d5 /* OF SF ZF AF PF CF */, logic = 0x8c5, bt = 0x1;
    constexpr std::uint64_t masks[n] = {value, arith, value, logic, logic, logic, arith, value, arith, logic,
                                        bt,    value, arith, value, arith, value, value, value, value};
    for (unsigned i = 0; i < n; ++i) {
        const std::uint64_t a = on_lapic[i] & masks[i];
        const std::uint64_t b = on_ram[i] & masks[i];
        CHECK_OR_FAIL(a == b, "mmio forms: result {} differs: LAPIC {:#x}, RAM {:#x}", i, a, b);
    }
    println("check mmio-forms: mov, add, or, and, xor, sub, cmp, test, bt, xchg, cmpxchg (hit and miss), movs both ways "
            "on the LAPIC TPR = the same on RAM ({} results)",
            n);
    return {};
}

status check_smp() {
    if (madt_cpus < 2) return {};
    auto* counts = reinterpret_cast<volatile std::uint8_t*>(0x8000 + (hvg_ap_end - hvg_ap_start) - 16);
    auto* counts9 = reinterpret_cast<volatile std::uint8_t*>(0x9000 + (hvg_ap_end - hvg_ap_start) - 16);
    __builtin_memcpy(reinterpret_cast<void*>(0x8000), hvg_ap_start, hvg_ap_end - hvg_ap_start);
    __builtin_memcpy(reinterpret_cast<void*>(0x9000), hvg_ap_start, hvg_ap_end - hvg_ap_start);
    // The BSP sleeps on its timer while the APs run (all vCPUs share one physical CPU).
    set_gate(0x42, &hvg_irq_0x42, eoi_kind::lapic);
    lapic(apic_timer_divide) = 0xb;
    lapic(apic_lvt_timer) = 0x20042;
    lapic(apic_timer_initial) = static_cast<std::uint32_t>(apic_timer_hz / 10000);  // 100 µs
    auto wait_counts = [&](volatile std::uint8_t* c, unsigned want_total) {
        const std::uint64_t start = x86::rdtsc();
        for (;;) {
            unsigned total = 0;
            for (unsigned i = 0; i < 16; ++i) total += c[i];
            if (total >= want_total) return true;
            if (x86::rdtsc() - start > tsc_hz / 10) return false;
            wait_for_interrupt();
        }
    };
    // Targeted: INIT, then SIPI (vector 8 → 0x8000) to APIC 1.
    lapic(apic_icr_hi) = 1u << 24;
    lapic(apic_icr_lo) = 0x4500;
    const std::uint32_t after_init = lapic(apic_icr_lo);
    lapic(apic_icr_lo) = 0x4608;
    lapic(apic_icr_lo) = 0x4608;  // the second SIPI of the protocol is ignored
    const bool one = wait_counts(counts, 1);
    CHECK_OR_FAIL(one && counts[1] == 1, "smp: AP 1 did not start (count {})", static_cast<unsigned>(counts[1]));
    CHECK_OR_FAIL(!(after_init & (1u << 12)), "smp: ICR delivery status still pending");
    // Broadcast to all but self: INIT, SIPI vector 9 → 0x9000. AP 1 starts again too.
    lapic(apic_icr_hi) = 0;
    lapic(apic_icr_lo) = 0xc4500;
    lapic(apic_icr_lo) = 0xc4609;
    const bool all = wait_counts(counts9, madt_cpus - 1);
    lapic(apic_timer_initial) = 0;
    lapic(apic_lvt_timer) = 0x10000;
    for (unsigned i = 1; i < madt_cpus; ++i)
        CHECK_OR_FAIL(all && counts9[i] == 1, "smp: AP {} did not report after the broadcast", i);
    CHECK_OR_FAIL(counts9[0] == 0 && counts[1] == 1, "smp: the BSP or a stale AP ran the trampoline");
    println("check smp: AP 1 started by a targeted INIT/SIPI, APs 1-{} by a broadcast; each reported", madt_cpus - 1);
    return {};
}

// x2APIC through IA32_APIC_BASE and the 0x800 MSRs (last: the page is gone afterwards).
status check_x2apic() {
    const auto leaf1 = x86::cpuid(1);
    CHECK_OR_FAIL(leaf1.ecx & (1u << 21), "x2apic: not in CPUID");
    const std::uint32_t version = lapic(0x30);
    const std::uint64_t base = x86::rdmsr(0x1b);
    CHECK_OR_FAIL((base & ~0xfffull) == lapic_base && (base & (1u << 11)) && (base & (1u << 8)),
                  "x2apic: IA32_APIC_BASE {:#x}", base);
    x86::wrmsr(0x1b, base | (1u << 10));
    x2apic_on = true;
    const std::uint64_t id = x86::rdmsr(0x802), ver = x86::rdmsr(0x803);
    x86::wrmsr(0x808, 0x20);
    const std::uint64_t tpr = x86::rdmsr(0x808);
    x86::wrmsr(0x808, 0);
    irqs[0x42].count = 0;
    x86::wrmsr(0x83f, 0x42);  // SELF IPI
    const bool taken = wait_irqs(0x42, 1, tsc_hz / 100);
    println("check x2apic: IA32_APIC_BASE {:#x} -> x2APIC, ID {}, version {:#x}, TPR {:#x}, self IPI {}", base, id, ver,
            tpr, taken ? "taken" : "lost");
    CHECK_OR_FAIL(id == 0 && ver == version && tpr == 0x20 && taken, "x2apic: registers or self IPI wrong");
    constexpr std::uint64_t n = 64;
    const std::uint64_t t0 = x86::rdtsc();
    for (std::uint64_t i = 0; i < n; ++i) x86::wrmsr(0x808, 0);
    const std::uint64_t t1 = x86::rdtsc();
    rt::bench_report("hvm.x2apic_msr_write", n, (t1 - t0) / n, "ticks");
    return {};
}

void bench() {
    constexpr std::uint64_t n = 64;
    volatile std::uint32_t sink = 0;
    std::uint64_t t0 = x86::rdtsc();
    for (std::uint64_t i = 0; i < n; ++i) sink = lapic(apic_tpr);
    std::uint64_t t1 = x86::rdtsc();
    rt::bench_report("hvm.mmio_read", n, (t1 - t0) / n, "ticks");
    t0 = x86::rdtsc();
    for (std::uint64_t i = 0; i < n; ++i) lapic(apic_tpr) = 0;
    t1 = x86::rdtsc();
    rt::bench_report("hvm.mmio_write", n, (t1 - t0) / n, "ticks");
    (void)sink;

    const std::uint8_t mcr = inb(com1 + uart_mcr);
    outb(com1 + uart_mcr, 0x10);
    t0 = x86::rdtsc();
    for (std::uint64_t i = 0; i < n; ++i) {
        outb(com1 + uart_thr, static_cast<std::uint8_t>(i));
        (void)inb(com1 + uart_thr);
    }
    t1 = x86::rdtsc();
    outb(com1 + uart_mcr, mcr);
    rt::bench_report("hvm.uart_byte_loopback", n, (t1 - t0) / n, "ticks");

    // A one-shot LAPIC timer of one tick: from the write that starts it to its handler.
    lapic(apic_timer_divide) = 0xb;
    lapic(apic_lvt_timer) = 0x41;
    std::uint64_t total = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::uint64_t before = irqs[0x41].count;
        asm volatile("sti" ::: "memory");
        const std::uint64_t start = x86::rdtsc();
        lapic(apic_timer_initial) = 1;
        asm volatile("cli" ::: "memory");
        while (irqs[0x41].count == before) wait_for_interrupt();
        total += irqs[0x41].stamps[before < 16 ? before : 15] - start;
    }
    lapic(apic_lvt_timer) = 0x10000;
    rt::bench_report("hvm.timer_interrupt", n, total / n, "ticks");
}

} // namespace

extern "C" void guest_irq(std::uint64_t vector) {
    irq_record& r = irqs[vector & 0xff];
    const std::uint64_t now = x86::rdtsc();
    if (r.count < 16) r.stamps[r.count] = now;
    else r.stamps[15] = now;
    r.count = r.count + 1;
    if (vector == 0x24) last_iir = inb(com1 + uart_iir);
    switch (eoi_of[vector & 0xff]) {
    case eoi_kind::pic: outb(0x20, 0x20); break;
    case eoi_kind::lapic:
        if (x2apic_on) x86::wrmsr(0x80b, 0);
        else lapic(apic_eoi) = 0;
        break;
    case eoi_kind::none: break;
    }
}

HV_PROGRAM(dev_all, "dev.all", "check every emulated device from inside an HVM guest") {
    set_gate(0xff, &hvg_irq_0xff, eoi_kind::none);
    lapic(apic_svr) = 0x1ff;  // software-enable the local APIC, spurious vector 0xff
    println("dev.all: APIC ID {}, loader \"{}\" via {}", lapic(apic_id) >> 24, ctx.boot.loader_name, boot::to_string(ctx.boot.source));
    HV_TRY(check_timing_leaf());
    HV_TRY(check_uart());
    HV_TRY(check_pit());
    HV_TRY(check_lapic_timer());
    HV_TRY(check_preemption());
    HV_TRY(check_ioapic());
    HV_TRY(check_rtc());
    HV_TRY(check_acpi(ctx));
    HV_TRY(check_pci());
    HV_TRY(check_fw_cfg(ctx));
    HV_TRY(check_mmio_forms());
    HV_TRY(check_smp());
    bench();
    HV_TRY(check_x2apic());
    return {};
}

HV_PROGRAM(dev_poweroff, "dev.poweroff", "power the machine off through ACPI S5") {
    const std::uint64_t rsdp = find_rsdp();
    if (!rsdp) return fail(errc::not_found, "no RSDP");
    const std::uint64_t fadt = find_table(rsdp, "FACP");
    if (!fadt) return fail(errc::not_found, "no FADT");
    const std::uint64_t dsdt = dsdt_of(fadt);
    const std::uint32_t len = read_at<std::uint32_t>(dsdt + 4);
    // \_S5_: NameOp "_S5_" PackageOp PkgLength NumElements then SLP_TYPa (BytePrefix n, ZeroOp or OneOp).
    int slp_typ = -1;
    for (std::uint64_t p = dsdt + 36; p + 10 <= dsdt + len; ++p) {
        if (!sig_is(p, "_S5_", 4) || read_at<std::uint8_t>(p + 4) != 0x12) continue;
        const std::uint8_t first = read_at<std::uint8_t>(p + 7);
        slp_typ = first == 0x0a ? read_at<std::uint8_t>(p + 8) : first == 0x01 ? 1 : 0;
        break;
    }
    if (slp_typ < 0) return fail(errc::not_found, "no \\_S5 package in the DSDT");
    const auto pm1a_cnt = static_cast<std::uint16_t>(read_at<std::uint32_t>(fadt + 64));
    println("poweroff: PM1a_CNT port {:#x}, SLP_TYP {} from \\_S5: S5 now", pm1a_cnt, slp_typ);
    outw(pm1a_cnt, static_cast<std::uint16_t>((slp_typ << 10) | (1u << 13)));
    return fail(errc::fault, "still running after SLP_EN");
}

HV_PROGRAM(dev_reset, "dev.reset", "reset the machine through the 8042") {
    println("reset: 0xfe to the 8042 command port");
    while (inb(0x64) & 0x02) {}
    outb(0x64, 0xfe);
    return fail(errc::fault, "still running after the 8042 reset pulse");
}

// ---- smp.pcpu: two vCPUs, each reporting the physical CPU that runs it ----

namespace smp_check {

struct where {
    std::uint32_t pcpu = ~0u, apic = 0, vcpu = 0;
    bool libhv = false;
};
where ask_where() {
    const auto r = x86::cpuid(0x40000f00);
    return {r.eax, r.ebx, r.ecx, r.edx == 0x00764c48};
}

constexpr unsigned increments = 2000, pings = 16;
spinlock counter_lock;
volatile std::uint64_t counter = 0;
where seen[2];
volatile unsigned pongs_sent = 0;

void count_up() {
    for (unsigned i = 0; i < increments; ++i) {
        lock_guard g{counter_lock};
        counter = counter + 1;
    }
}

// On the AP (vCPU 1): report, count, then answer each kick from the BSP with one back.
void ap_work(void* kicks_before) {
    // Kicks already taken (earlier posts): the pings count from there.
    const auto base = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(kicks_before));
    seen[1] = ask_where();
    println("smp.pcpu: vCPU {} (guest CPU {}) on physical CPU {} (APIC ID {})", seen[1].vcpu, rt::smp::this_cpu(),
            seen[1].pcpu, seen[1].apic);
    count_up();
    for (unsigned i = 1; i <= pings; ++i) {
        while (rt::smp::kicks(1) < base + i) rt::smp::wait_for_kick();
        pongs_sent = i;
        rt::smp::kick(0);
    }
}

// Preemption on the AP: vCPU 1 spins without exits while its LAPIC one-shot falls due.
// vCPU 0 ran the same check first, so the AP is not the first CPU to use a host timer.
status ap_result;
void ap_preemption(void*) { ap_result = check_preemption(" on vCPU 1"); }

// Nested-table shootdown: vCPU 1 writes one page in a loop without exits (its TLB holds
// the writable translation) while vCPU 0 asks the hypervisor (test port) to write-protect
// that page, then to lift the protection.
constexpr std::uint16_t protect_port = 0x5a0;  // examples/hvm's test-port=1
constexpr std::uint32_t protect_bit = 1u << 31;
alignas(4096) volatile std::uint64_t watched[512];
volatile bool writer_stop = false, writer_running = false;
void ap_writer(void*) {
    std::uint64_t n = watched[0];
    writer_running = true;
    while (!writer_stop) watched[0] = ++n;
    writer_running = false;
}

// Until watched[0] reaches `target` (false after `limit` ticks); then stops the writer.
bool writes_until(std::uint64_t target, std::uint64_t limit) {
    const std::uint64_t start = x86::rdtsc();
    bool reached;
    while (!(reached = watched[0] >= target) && x86::rdtsc() - start < limit) x86::pause();
    writer_stop = true;
    rt::smp::wait(1);
    writer_stop = false;
    return reached;
}

status check_shootdown() {
    const auto gfn = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&watched[0]) >> 12);
    const std::uint64_t limit = tsc_hz;  // 1 s (see ap_spinner)
    HV_TRY(rt::smp::post(1, &ap_writer, nullptr));
    while (!writer_running) x86::pause();
    const std::uint64_t warm = watched[0] + 1000;
    while (watched[0] < warm) x86::pause();
    // Returns once the protection holds on every CPU. Every write of vCPU 1 with a value
    // above `seen` comes after faults_before was read, so each must have faulted since.
    asm volatile("" ::: "memory");
    x86::outl(protect_port, gfn | protect_bit);
    const std::uint32_t faults_before = x86::inl(protect_port);
    const std::uint64_t seen = watched[0];
    constexpr std::uint64_t protected_writes = 8;
    const bool reached = writes_until(seen + protected_writes, limit);
    const std::uint64_t last = watched[0];
    const std::uint32_t faults = x86::inl(protect_port) - faults_before;
    println("smp.pcpu: shootdown: vCPU 1 wrote the page {} times after vCPU 0's write protection returned, {} nested "
            "faults taken (at least {} due)",
            last - seen, faults, last - seen);
    CHECK_OR_FAIL(reached, "shootdown: vCPU 1 made fewer than {} writes in 1 s", protected_writes);
    CHECK_OR_FAIL(faults >= last - seen, "shootdown: vCPU 1 wrote a write-protected page without a nested fault");
    // Lifting it is lazy: vCPU 1 flushes at its next entry and then writes without faults.
    x86::outl(protect_port, gfn);
    const std::uint32_t faults_lifted = x86::inl(protect_port);
    const std::uint64_t from = watched[0];
    HV_TRY(rt::smp::post(1, &ap_writer, nullptr));
    const bool ran = writes_until(from + 1000, limit);
    const std::uint32_t after = x86::inl(protect_port) - faults_lifted;
    println("smp.pcpu: shootdown: after lifting it, {} writes with {} faults", watched[0] - from, after);
    CHECK_OR_FAIL(ran && after == 0, "shootdown: writes still fault after the protection was lifted");
    return {};
}

// An IPI to a vCPU that spins with interrupts on and never exits: its CPU must take it
// out of guest mode (the host's kick IPI) to inject it.
volatile bool spinner_ready = false;
volatile std::uint64_t spinner_saw = 0;  // TSC when the IPI was taken, 0: never
void ap_spinner(void*) {
    const std::uint64_t before = rt::smp::kicks(1);
    // 1 s: QEMU's round-robin TCG may run one CPU for ~100 ms of guest time before the other.
    const std::uint64_t start = x86::rdtsc(), limit = tsc_hz;
    x86::sti();
    spinner_ready = true;
    while (rt::smp::kicks(1) == before && x86::rdtsc() - start < limit) {}
    x86::cli();
    spinner_saw = rt::smp::kicks(1) != before ? x86::rdtsc() : 0;
}

status check_spinning_ipi() {
    HV_TRY(rt::smp::post(1, &ap_spinner, nullptr));
    while (!spinner_ready) x86::pause();
    const std::uint64_t settle = x86::rdtsc() + 100000;  // well inside its loop by then
    while (x86::rdtsc() < settle) x86::pause();
    const std::uint64_t sent = x86::rdtsc();
    rt::smp::kick(1);
    rt::smp::wait(1);
    CHECK_OR_FAIL(spinner_saw != 0, "smp.pcpu: vCPU 1, spinning with interrupts on, never took the IPI");
    println("smp.pcpu: an IPI to vCPU 1 spinning without exits (interrupts on) taken {} ticks after it was sent",
            spinner_saw - sent);
    return {};
}

} // namespace smp_check

HV_PROGRAM(smp_pcpu, "smp.pcpu",
           "start the other vCPU (INIT/SIPI), both report their physical CPU (CPUID 0x40000f00), count under a lock, exchange IPIs") {
    using namespace smp_check;
    auto n = rt::smp::start_aps(ctx.boot);
    HV_TRY(n);
    if (*n < 2) return fail(errc::not_supported, "smp.pcpu: the guest has one CPU");
    const std::uint64_t kicks_before[2] = {rt::smp::kicks(0), rt::smp::kicks(1)};  // the AP is idle
    HV_TRY(rt::smp::post(1, &ap_work, reinterpret_cast<void*>(static_cast<std::uintptr_t>(kicks_before[1]))));
    seen[0] = ask_where();
    println("smp.pcpu: vCPU {} (guest CPU {}) on physical CPU {} (APIC ID {})", seen[0].vcpu, rt::smp::this_cpu(),
            seen[0].pcpu, seen[0].apic);
    count_up();
    const std::uint64_t t0 = x86::rdtsc();
    for (unsigned i = 1; i <= pings; ++i) {
        rt::smp::kick(1);
        while (rt::smp::kicks(0) < kicks_before[0] + i) rt::smp::wait_for_kick();
    }
    const std::uint64_t ping_ticks = (x86::rdtsc() - t0) / pings;
    rt::smp::wait(1);
    println("smp.pcpu: counter {} (2 x {} increments under a spinlock), {} IPI round trips ({} / {} kicks taken), "
            "{} guest ticks per round trip",
            counter, increments, pings, rt::smp::kicks(0) - kicks_before[0], rt::smp::kicks(1) - kicks_before[1], ping_ticks);
    CHECK_OR_FAIL(seen[0].libhv && seen[1].libhv, "smp.pcpu: CPUID 0x40000f00 is not libhv's");
    CHECK_OR_FAIL(seen[0].vcpu == 0 && seen[1].vcpu == 1, "smp.pcpu: vCPU indices {} {}", seen[0].vcpu, seen[1].vcpu);
    CHECK_OR_FAIL(counter == 2 * increments, "smp.pcpu: counter {} (lost increments)", counter);
    CHECK_OR_FAIL(pongs_sent == pings && rt::smp::kicks(0) - kicks_before[0] >= pings, "smp.pcpu: IPIs lost");
    if (auto want = cmdline_value(ctx.cmdline, "expect-pcpus"); want == "2")
        CHECK_OR_FAIL(seen[0].pcpu != seen[1].pcpu, "smp.pcpu: both vCPUs ran on physical CPU {}", seen[0].pcpu);
    rt::bench_report("smp.ipi-round-trip", pings, ping_ticks, "ticks");
    // After the measurement, so that it stays comparable with runs without these.
    if (cmdline_value(ctx.cmdline, "preemption") == "1") {
        HV_TRY(check_timing_leaf());
        HV_TRY(check_preemption());
        HV_TRY(rt::smp::post(1, &ap_preemption, nullptr));
        rt::smp::wait(1);
        HV_TRY(ap_result);
    }
    if (cmdline_value(ctx.cmdline, "shootdown") == "1") {
        HV_TRY(check_spinning_ipi());
        HV_TRY(check_shootdown());
    }

    return {};
}
