#include "libhv/rt/smp.hpp"
#include "libhv/arch/x86/acpi_madt.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/arch/x86/percpu.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

// The AP trampoline, copied to smp::trampoline_base. Entered by a SIPI in real mode at
// CS = base >> 4, IP = 0; the parameters at its end are written by the BSP per AP.
#define HV_AP_BASE "0x8000"
asm(R"(
    .section .rodata
    .balign 16
    .globl hv_ap_trampoline, hv_ap_trampoline_end, hv_ap_params
    .code16
hv_ap_trampoline:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl hv_ap_gdt_ptr - hv_ap_trampoline
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(hv_ap_pm32 - hv_ap_trampoline + )" HV_AP_BASE R"()
    .code32
hv_ap_pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                              /* PAE */
    mov %eax, %cr4
    mov (hv_ap_params - hv_ap_trampoline + )" HV_AP_BASE R"(), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or (hv_ap_params + 4 - hv_ap_trampoline + )" HV_AP_BASE R"(), %eax  /* LME, NXE as the BSP */
    wrmsr
    mov %cr0, %eax
    and $0x9fffffff, %eax                       /* caches on: CD = NW = 0 (INIT sets both) */
    or $0x80010001, %eax                        /* PG | WP | PE */
    mov %eax, %cr0
    ljmp $0x18, $(hv_ap_lm64 - hv_ap_trampoline + )" HV_AP_BASE R"()
    .code64
hv_ap_lm64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov (hv_ap_params + 8 - hv_ap_trampoline + )" HV_AP_BASE R"(), %rsp
    mov (hv_ap_params + 16 - hv_ap_trampoline + )" HV_AP_BASE R"(), %rdi
    mov (hv_ap_params + 24 - hv_ap_trampoline + )" HV_AP_BASE R"(), %rax
    call *%rax
1:  cli
    hlt
    jmp 1b
    .balign 8
hv_ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                    /* 0x10: data */
    .quad 0x00af9a000000ffff                    /* 0x18: 64-bit code */
hv_ap_gdt_ptr:
    .word 31
    .long hv_ap_gdt - hv_ap_trampoline + )" HV_AP_BASE R"(
    .balign 8
hv_ap_params:
    .long 0                                     /* +0: CR3 */
    .long 0                                     /* +4: EFER bits */
    .quad 0                                     /* +8: stack top */
    .quad 0                                     /* +16: argument (the AP's slot) */
    .quad 0                                     /* +24: entry */
hv_ap_trampoline_end:

    .text
    .globl hv_smp_kick_isr, hv_smp_spurious_isr
hv_smp_kick_isr:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call hv_smp_kick_interrupt
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
hv_smp_spurious_isr:
    iretq
)");

extern "C" {
extern const char hv_ap_trampoline[], hv_ap_trampoline_end[], hv_ap_params[];
void hv_smp_kick_isr();
void hv_smp_spurious_isr();
}

namespace hv::rt::smp {
namespace {

static_assert(trampoline_base == 0x8000, "HV_AP_BASE in the trampoline");

struct [[gnu::packed]] ap_params {
    std::uint32_t cr3, efer_bits;
    std::uint64_t stack_top, arg, entry;
};

struct cpu_slot {
    x86::percpu block;
    void* tables = nullptr;
    bool online = false;
    void (*work)(void*) = nullptr;
    void* arg = nullptr;
    bool busy = false;
    std::uint64_t kicks = 0;
};

cpu_slot slots[max_cpus];
unsigned online_count = 1;
bool started = false;

// ---- the local APIC, as the BSP's firmware left it (xAPIC MMIO or x2APIC MSRs) ----
namespace lapic {
enum reg : std::uint32_t { id = 0x20, eoi = 0xb0, svr = 0xf0, icr_lo = 0x300, icr_hi = 0x310 };
constexpr std::uint64_t base_extd = 1u << 10;
constexpr std::uint32_t icr_pending = 1u << 12;

bool x2() { return x86::rdmsr(x86::msr::apic_base) & base_extd; }
volatile std::uint32_t* mmio(std::uint32_t r) {
    return reinterpret_cast<volatile std::uint32_t*>((x86::rdmsr(x86::msr::apic_base) & ~0xfffull) + r);
}
std::uint32_t read(std::uint32_t r) {
    if (x2()) return static_cast<std::uint32_t>(x86::rdmsr(0x800 + r / 16));
    return *mmio(r);
}
void write(std::uint32_t r, std::uint32_t v) {
    if (x2()) x86::wrmsr(0x800 + r / 16, v);
    else *mmio(r) = v;
}
std::uint32_t my_id() { return x2() ? read(id) : read(id) >> 24; }
void enable() { write(svr, 0x100u | spurious_vector); }
void send(std::uint32_t dest, std::uint32_t lo) {
    if (x2()) {
        x86::wrmsr(0x830, (std::uint64_t{dest} << 32) | lo);
        return;
    }
    write(icr_hi, dest << 24);
    write(icr_lo, lo);
    while (read(icr_lo) & icr_pending) x86::pause();
}
} // namespace lapic

constexpr std::uint32_t icr_init = 5u << 8, icr_startup = 6u << 8, icr_assert = 1u << 14;

void delay(std::uint64_t ticks) {
    const std::uint64_t start = x86::rdtsc();
    while (x86::rdtsc() - start < ticks) x86::pause();
}

hv::status read_identity(void*, std::uint64_t pa, void* dst, std::size_t n) {
    if (pa >= (4ull << 30) || n > (4ull << 30) - pa) return fail(errc::fault, "ACPI table above the identity-mapped 4 GiB");
    __builtin_memcpy(dst, reinterpret_cast<const void*>(pa), n);
    return {};
}

[[noreturn]] void ap_main(cpu_slot* s);

} // namespace

void init_bsp_percpu() {
    slots[0].block.index = 0;
    x86::install_percpu(slots[0].block);
}

namespace {

[[noreturn]] void ap_main(cpu_slot* s) {
    x86::install_percpu(s->block);
    x86::init_ap_cpu_tables(s->tables);
    x86::enable_sse();
    x86::wrmsr(x86::msr::pat, mmu::hypervisor_pat_msr());
    x86::write_cr3(x86::read_cr3());
    lapic::enable();
    s->block.apic_id = lapic::my_id();
    __atomic_store_n(&s->online, true, __ATOMIC_RELEASE);
    for (;;) {
        x86::cli();
        while (!__atomic_load_n(&s->busy, __ATOMIC_ACQUIRE)) asm volatile("sti; hlt; cli" ::: "memory");
        s->work(s->arg);
        __atomic_store_n(&s->busy, false, __ATOMIC_RELEASE);
    }
}

} // namespace

unsigned online() { return __atomic_load_n(&online_count, __ATOMIC_ACQUIRE); }
unsigned this_cpu() { return x86::this_cpu_index(); }
std::uint32_t apic_id(unsigned cpu) { return cpu < max_cpus ? slots[cpu].block.apic_id : 0; }
bool x2apic() { return lapic::x2(); }

result<unsigned> start_aps(const boot::info& bi) {
    if (started) return online();
    started = true;
    const boot::memory_reader mem{&read_identity, nullptr};
    std::uint64_t rsdp = bi.rsdp;
    if (!rsdp) {
        auto found = acpi::find_rsdp_bios(mem);
        if (!found) {
            println("smp: no ACPI RSDP ({}): one CPU", found.err().what);
            return 1u;
        }
        rsdp = *found;
    }
    static acpi::cpu_list cpus;
    if (auto r = acpi::read_cpus(mem, rsdp, cpus); !r.ok()) {
        println("smp: ACPI MADT unusable ({}): one CPU", r.err().what);
        return 1u;
    }
    x86::set_interrupt_gate(kick_vector, &hv_smp_kick_isr);
    x86::set_interrupt_gate(spurious_vector, &hv_smp_spurious_isr);
    lapic::enable();
    const std::uint32_t bsp_id = lapic::my_id();
    slots[0].block.apic_id = bsp_id;
    const std::uint64_t cr3 = x86::read_cr3();
    if (cr3 >> 32) return fail(errc::not_supported, "smp: the host page tables lie above 4 GiB (the trampoline loads CR3 in 32-bit mode)");
    const auto size = static_cast<std::size_t>(hv_ap_trampoline_end - hv_ap_trampoline);
    auto* tramp = reinterpret_cast<char*>(trampoline_base);
    __builtin_memcpy(tramp, hv_ap_trampoline, size);
    auto* params = reinterpret_cast<ap_params*>(tramp + (hv_ap_params - hv_ap_trampoline));
    params->cr3 = static_cast<std::uint32_t>(cr3);
    params->efer_bits = static_cast<std::uint32_t>(x86::rdmsr(x86::msr::efer) & (x86::efer::lme | x86::efer::nxe));
    params->entry = reinterpret_cast<std::uintptr_t>(&ap_main);

    constexpr std::size_t stack_pages = 4;
    constexpr std::uint64_t init_wait = 1'000'000, sipi_wait = 200'000, online_wait = 300'000'000;
    unsigned n = 1;
    for (std::size_t i = 0; i < cpus.count && n < max_cpus; ++i) {
        const std::uint32_t id = cpus.apic_ids[i];
        if (id == bsp_id) continue;
        if (!lapic::x2() && id > 0xfe) {
            println("smp: APIC ID {} needs x2APIC mode: CPU left out", id);
            continue;
        }
        cpu_slot& s = slots[n];
        s.block.index = n;
        s.block.apic_id = id;
        s.tables = alloc_zeroed_pages((x86::ap_cpu_tables_size() + 4095) / 4096);
        auto* stack = static_cast<char*>(alloc_zeroed_pages(stack_pages));
        params->stack_top = reinterpret_cast<std::uintptr_t>(stack + stack_pages * 4096);
        params->arg = reinterpret_cast<std::uintptr_t>(&s);
        asm volatile("" ::: "memory");
        lapic::send(id, icr_init | icr_assert);
        delay(init_wait);
        const std::uint32_t sipi = icr_startup | icr_assert | static_cast<std::uint32_t>(trampoline_base >> 12);
        lapic::send(id, sipi);
        delay(sipi_wait);
        if (!__atomic_load_n(&s.online, __ATOMIC_ACQUIRE)) lapic::send(id, sipi);
        const std::uint64_t t0 = x86::rdtsc();
        while (!__atomic_load_n(&s.online, __ATOMIC_ACQUIRE) && x86::rdtsc() - t0 < online_wait) x86::pause();
        if (!__atomic_load_n(&s.online, __ATOMIC_ACQUIRE)) {
            println("smp: APIC ID {} did not come online: left out", id);
            continue;
        }
        ++n;
        __atomic_store_n(&online_count, n, __ATOMIC_RELEASE);
    }
    println("smp: {} of {} CPUs online (ACPI MADT, {}; BSP APIC ID {})", n, cpus.count, lapic::x2() ? "x2APIC" : "xAPIC",
            bsp_id);
    return n;
}

status post(unsigned cpu, void (*fn)(void*), void* arg) {
    if (cpu == 0 || cpu >= online()) return fail(errc::out_of_range, "smp: no such AP");
    cpu_slot& s = slots[cpu];
    if (__atomic_load_n(&s.busy, __ATOMIC_ACQUIRE)) return fail(errc::busy, "smp: that AP is still working");
    s.work = fn;
    s.arg = arg;
    __atomic_store_n(&s.busy, true, __ATOMIC_RELEASE);
    kick(cpu);
    return {};
}

bool done(unsigned cpu) { return cpu >= online() || !__atomic_load_n(&slots[cpu].busy, __ATOMIC_ACQUIRE); }

void wait(unsigned cpu) {
    while (!done(cpu)) x86::pause();
}

void kick(unsigned cpu) {
    if (cpu >= online()) return;
    lapic::send(slots[cpu].block.apic_id, icr_assert | kick_vector);
}

std::uint64_t kicks(unsigned cpu) { return cpu < max_cpus ? __atomic_load_n(&slots[cpu].kicks, __ATOMIC_RELAXED) : 0; }

void wait_for_kick(std::uint64_t tsc_deadline) {
    if (!tsc_deadline) {
        asm volatile("sti; hlt; cli" ::: "memory");
        return;
    }
    const std::uint64_t before = kicks(this_cpu());
    x86::sti();
    while (x86::rdtsc() < tsc_deadline && kicks(this_cpu()) == before) x86::pause();
    x86::cli();
}

} // namespace hv::rt::smp

extern "C" void hv_smp_kick_interrupt() {
    using namespace hv::rt::smp;
    __atomic_fetch_add(&slots[this_cpu()].kicks, 1, __ATOMIC_RELAXED);
    lapic::write(lapic::eoi, 0);
}
