// Image "cpu-guests": small 64-bit guests run by libhv's vCPUs on whichever of VMX or
// SVM the CPU offers. Programs (run=NAME):
//   cpu.smoke   CPUID, VMCALL/VMMCALL, an interrupt raised with IF = 0 delivered at the
//               interrupt window, HLT woken by an injected interrupt; a second
//               guest that triple-faults while the first keeps running
//   cpu.modes   the same exits from a 64-bit, a 32-bit protected-mode and a real-mode
//               guest (real mode: unrestricted guest on VMX): CPUID, hypercall, OUT
//   cpu.msr     RDMSR allowed (a synthetic value) and RDMSR/WRMSR denied: #GP injected with
//               its error code (0 and a selector error code 0x1a) and handled by the guest's IDT
//   cpu.io      IN/OUT of every size to a loopback port, REP OUTSB/INSB through a FIFO port
//   cpu.entry   a broken guest refused by the software entry checks (field and rule named),
//               the same guest refused by the CPU (checks off), a good guest still running
//   cpu.cr      a real-mode guest sets CR0.NE (VMX: owned by the host, emulated by the
//               default CR handler) and reads back its own CR0 through the shadow
//   cpu.bench   in-guest exit round trips in ticks (Bochs: one tick per instruction): CPUID,
//               hypercall, OUT, IN, RDMSR, and HLT until an injected interrupt's handler runs
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/arch/x86/virt_features.hpp"
#include "libhv/cpu/svm/backend.hpp"
#include "libhv/cpu/io_emul.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/cpu/vmx/backend.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/guest.hpp"

// Guest code. RBX = 1 selects VMMCALL (AMD), 0 VMCALL (Intel); hypercall number in EAX.
asm(R"(
    .text
    .code64
    .globl hv_guest_smoke
hv_guest_smoke:
    mov %rbx, %r15
    xor %eax, %eax
    cpuid
    mov %ebx, %ecx
    mov $1, %eax
    call guest_hypercall    /* the host raises vector 0x30 now, while IF = 0 */
    sti                     /* ... so it waits for the interrupt window after STI's shadow */
    nop
    nop
    hlt                     /* woken by a second 0x30 */
    mov $2, %eax
    mov guest_irq_count(%rip), %rcx
    call guest_hypercall
1:  jmp 1b

    .globl hv_guest_triple
hv_guest_triple:
    lidt guest_null_idt(%rip)
    ud2

    .globl hv_guest_bench
hv_guest_bench:
    mov %rbx, %r15
    mov %rcx, %r14
    mov %rcx, %r12
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
2:  xor %eax, %eax
    cpuid
    dec %r14
    jnz 2b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rcx
    mov $3, %eax
    call guest_hypercall
    mov %r12, %r14
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
3:  mov $5, %eax
    call guest_hypercall
    dec %r14
    jnz 3b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rcx
    mov $4, %eax
    call guest_hypercall
    /* OUT, IN and RDMSR round trips: hypercalls 6, 7, 8 */
    call bench_start
    mov $0x510, %edx
10: out %al, %dx
    dec %r14
    jnz 10b
    call bench_stop
    mov $6, %eax
    call guest_hypercall
    call bench_start
    mov $0x510, %edx
11: in %dx, %al
    dec %r14
    jnz 11b
    call bench_stop
    mov $7, %eax
    call guest_hypercall
    call bench_start
    mov $0x10, %ecx
12: rdmsr
    dec %r14
    jnz 12b
    call bench_stop
    mov $8, %eax
    call guest_hypercall
    /* HLT woken by vector 0x31: ticks from the RDTSC before HLT to the handler's first
       instruction (RDTSC too), summed in R10; hypercall 9. */
    mov %r12, %r14
    xor %r10d, %r10d
13: cli
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r9
    sti
    hlt
    dec %r14
    jnz 13b
    mov %r10, %rcx
    mov $9, %eax
    call guest_hypercall
    /* CPUID again, its handler now installed as a host one (not a leaf): hypercall 10 */
    call bench_start
14: xor %eax, %eax
    cpuid
    dec %r14
    jnz 14b
    call bench_stop
    mov $10, %eax
    call guest_hypercall
4:  jmp 4b
    /* R13 = TSC, R14 = R12 iterations; then RCX = ticks since bench_start */
bench_start:
    mov %r12, %r14
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    ret
bench_stop:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rcx
    ret

    .globl hv_guest_bench_wake
hv_guest_bench_wake:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r9, %rax
    add %rax, %r10
    iretq

    /* The per-mode guests: EDI = 1 selects VMMCALL. CPUID, hypercall 1 with CPUID.0:EBX
       in ECX, OUT of a mode tag to port 0x80, hypercall 2. */
    .globl hv_guest_mode64
hv_guest_mode64:
    movabs $0x7fffc2c200000064, %rax  /* CR2 survives the exit while other vCPUs set theirs */
    mov %rax, %cr2
    xor %eax, %eax
    cpuid
    mov %ebx, %ecx
    mov %cr2, %rdx
    mov $1, %eax
    call guest_hypercall_edi
    mov $64, %al
    out %al, $0x80
    mov $2, %eax
    call guest_hypercall_edi
6:  jmp 6b
guest_hypercall_edi:
    test %edi, %edi
    jnz 7f
    vmcall
    ret
7:  vmmcall
    ret

    .code32
    .globl hv_guest_mode32
hv_guest_mode32:
    mov $0xc2c20032, %eax
    mov %eax, %cr2
    xor %eax, %eax
    cpuid
    mov %ebx, %ecx
    mov %cr2, %edx
    mov $1, %eax
    test %edi, %edi
    jnz 1f
    vmcall
    jmp 2f
1:  vmmcall
2:  mov $32, %al
    out %al, $0x80
    mov $2, %eax
    test %edi, %edi
    jnz 3f
    vmcall
    jmp 4f
3:  vmmcall
4:  jmp 4b

    .code16
    .globl hv_guest_mode16
hv_guest_mode16:
    mov $0xc2c20016, %eax
    mov %eax, %cr2
    xor %eax, %eax
    cpuid
    mov %ebx, %ecx
    mov %cr2, %edx
    mov $1, %eax
    test %edi, %edi
    jnz 1f
    vmcall
    jmp 2f
1:  vmmcall
2:  mov $16, %al
    out %al, $0x80
    mov $2, %eax
    test %edi, %edi
    jnz 3f
    vmcall
    jmp 4f
3:  vmmcall
4:  jmp 4b
    .globl hv_guest_cr16
hv_guest_cr16:
    /* With XSAVE: CR4.OSXSAVE, XSETBV(XCR0 = x87|SSE) (exits), a CPUID exit, then XGETBV
       into ESI (0 without XSAVE). */
    xor %esi, %esi
    mov $1, %eax
    cpuid
    bt $26, %ecx
    jnc 3f
    mov %cr4, %eax
    or $0x40000, %eax
    mov %eax, %cr4
    xor %ecx, %ecx
    xor %edx, %edx
    mov $3, %eax
    xsetbv
    xor %eax, %eax
    cpuid
    xor %ecx, %ecx
    xgetbv
    mov %eax, %esi
3:  mov %cr0, %eax
    mov %eax, %ecx
    or $0x20, %eax
    mov %eax, %cr0
    mov %cr0, %eax
    mov %eax, %edx
    mov $5, %eax
    test %edi, %edi
    jnz 1f
    vmcall
    jmp 2f
1:  vmmcall
2:  jmp 2b
    .globl hv_guest_cr16_end
hv_guest_cr16_end:
    .code64

guest_hypercall:
    test %r15, %r15
    jnz 5f
    vmcall
    ret
5:  vmmcall
    ret

    .globl hv_guest_msr
hv_guest_msr:
    mov %rbx, %r15
    mov $0x10, %ecx
    rdmsr
    mov %eax, %r12d
    mov %edx, %r13d
    mov $0xc0de, %ecx       /* the host answers #GP with a selector error code */
    rdmsr
    mov guest_gp_error(%rip), %r11
    mov $0xdead, %ecx
    rdmsr
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    mov guest_gp_count(%rip), %rcx
    mov guest_gp_error(%rip), %rdx
    mov $3, %eax
    call guest_hypercall
8:  jmp 8b

    /* #GP: count it, keep the error code, skip the 2-byte RDMSR/WRMSR that raised it. */
    .globl hv_guest_gp
hv_guest_gp:
    incq guest_gp_count(%rip)
    popq guest_gp_error(%rip)
    addq $2, (%rsp)
    iretq

    .globl hv_guest_io
hv_guest_io:
    mov %rbx, %r15
    mov $0x510, %dx
    mov $0x11, %al
    out %al, %dx
    xor %eax, %eax
    in %dx, %al
    mov %rax, %r8
    mov $0x2233, %ax
    out %ax, %dx
    xor %eax, %eax
    in %dx, %ax
    mov %rax, %r9
    mov $0x44556677, %eax
    out %eax, %dx
    xor %eax, %eax
    in %dx, %eax
    mov %rax, %r10
    mov $0x511, %dx
    lea guest_io_src(%rip), %rsi
    mov $13, %ecx
    cld
    rep outsb
    lea guest_io_dst(%rip), %rdi
    mov $13, %ecx
    rep insb
    mov $4, %eax
    call guest_hypercall
9:  jmp 9b

    .globl hv_guest_irq
hv_guest_irq:
    incq guest_irq_count(%rip)
    iretq

    .data
    .balign 8
guest_irq_count: .quad 0
guest_gp_count: .quad 0
guest_gp_error: .quad ~0
    .globl hv_guest_io_src, hv_guest_io_dst
hv_guest_io_src:
guest_io_src: .ascii "libhv string"
    .byte 0
hv_guest_io_dst:
guest_io_dst: .fill 16, 1, 0
guest_null_idt: .word 0
    .quad 0
    .text
)");

extern "C" char hv_guest_smoke[], hv_guest_triple[], hv_guest_bench[], hv_guest_bench_wake[], hv_guest_irq[];
extern "C" char hv_guest_msr[], hv_guest_gp[];
extern "C" char hv_guest_io[], hv_guest_io_src[], hv_guest_io_dst[];
extern "C" char hv_guest_cr16[], hv_guest_cr16_end[];
extern "C" char hv_guest_mode64[], hv_guest_mode32[], hv_guest_mode16[];

namespace {

using namespace hv;

using rt::alloc_pages;

enum class vendor_kind { vmx, svm };

struct machine {
    vendor_kind kind;
    vmx::cpu_context vmx_cpu;
    svm::cpu_context svm_cpu;
};
machine m;

status enable_virtualization() {
    auto f = x86::probe_virt_features();
    if (f.vmx) {
        m.kind = vendor_kind::vmx;
        HV_TRY(vmx::enable(m.vmx_cpu, alloc_pages));
        for (const auto& r : m.vmx_cpu.controls.sets) vmx::print(console::sink(), r);
        return {};
    }
    if (f.svm) {
        m.kind = vendor_kind::svm;
        HV_TRY(svm::enable(m.svm_cpu, alloc_pages));
        println("svm: nrips={} decode-assists={} asids={}", m.svm_cpu.caps.nrips, m.svm_cpu.caps.decode_assists,
                m.svm_cpu.caps.asids);
        return {};
    }
    return fail(errc::not_supported, "neither VMX nor SVM");
}

// A vCPU with its backend data and stack.
struct guest {
    cpu::vcpu v;
    vmx::vcpu_arch vmx_arch;
    svm::vcpu_arch svm_arch;
};

status make_guest(guest& g, unsigned id, const char* entry, cpu::guest_mode mode = cpu::guest_mode::long64) {
    void* arch = nullptr;
    const cpu::backend_ops* ops = nullptr;
    if (m.kind == vendor_kind::vmx) {
        HV_TRY(vmx::create(g.vmx_arch, m.vmx_cpu, static_cast<std::uint16_t>(id + 1)));
        arch = &g.vmx_arch;
        ops = &vmx::ops;
    } else {
        HV_TRY(svm::create(g.svm_arch, m.svm_cpu, id + 1));
        arch = &g.svm_arch;
        ops = &svm::ops;
    }
    constexpr std::size_t stack_pages = 4;
    g.v.init(id, *ops, arch, alloc_pages(stack_pages), stack_pages * 4096);
    g.v.set_exit_budget(100000);

    auto& s = g.v.state;
    s = cpu::initial_state(mode, reinterpret_cast<std::uintptr_t>(entry), x86::read_cr3());
    if (mode != cpu::guest_mode::long64) {
        s.regs.rdi = m.kind == vendor_kind::svm;
        return {};
    }
    s.efer |= x86::rdmsr(x86::msr::efer) & x86::efer::nxe;  // the shared page tables may use NX
    s.regs.rsp = reinterpret_cast<std::uintptr_t>(alloc_pages(1)) + 4096;
    s.regs.rbx = m.kind == vendor_kind::svm;
    const auto gdt = x86::current_gdt();
    s.gdtr = {gdt.base, gdt.limit};
    // An IDT with three gates: #GP, vector 0x30 for the injected interrupt, 0x31 for cpu.bench's HLT wake.
    auto* idt = static_cast<std::uint64_t*>(alloc_pages(1));
    auto gate = [idt](unsigned vector, const char* handler) {
        const auto g = x86::interrupt_gate(reinterpret_cast<std::uintptr_t>(handler));
        idt[vector * 2] = g.low;
        idt[vector * 2 + 1] = g.high;
    };
    gate(13, hv_guest_gp);
    gate(0x30, hv_guest_irq);
    gate(0x31, hv_guest_bench_wake);
    s.idtr = {reinterpret_cast<std::uintptr_t>(idt), 0xfff};
    return {};
}

void cpuid_passthrough(cpu::vcpu& v, const cpu::exit_info& e) {
    auto r = x86::cpuid(e.cpuid.leaf, e.cpuid.subleaf);
    v.state.regs.rax = r.eax;
    v.state.regs.rbx = r.ebx;
    v.state.regs.rcx = r.ecx;
    v.state.regs.rdx = r.edx;
    v.skip();
}

struct smoke_result {
    std::uint64_t vendor_ebx = 0, irq_count = ~0ull;
    bool done = false;
} smoke;

void smoke_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if (e.hypercall.nr == 1) {
        smoke.vendor_ebx = v.state.regs.rcx;
        v.inject_interrupt(0x30);
    }
    if (e.hypercall.nr == 2) {
        smoke.irq_count = v.state.regs.rcx;
        smoke.done = true;
        v.stop("guest finished");
    }
}

void report(const cpu::vcpu& v) { v.report(console::sink()); }

} // namespace

HV_PROGRAM(cpu_smoke, "cpu.smoke", "64-bit guests: CPUID, hypercall, HLT + injected interrupt, a triple fault") {
    HV_TRY(enable_virtualization());
    static guest a, b;
    HV_TRY(make_guest(a, 0, hv_guest_smoke));
    HV_TRY(make_guest(b, 1, hv_guest_triple));
    a.v.on(cpu::exit_reason::cpuid, cpuid_passthrough);
    a.v.on(cpu::exit_reason::hypercall, smoke_hypercall);
    cpu::scheduler sched;
    HV_TRY(sched.add(a.v));
    HV_TRY(sched.add(b.v));
    int wakeups = 0;
    sched.run(
        [](void* c) {
            // Everyone sleeps: play a device raising vector 0x30 for guest a, once.
            auto* n = static_cast<int*>(c);
            if ((*n)++) return false;
            a.v.inject_interrupt(0x30);
            return true;
        },
        &wakeups);
    report(a.v);
    report(b.v);
    const auto host_ebx = x86::cpuid(0).ebx;
    println("smoke: guest saw cpuid(0).ebx={:#x} (host {:#x}), interrupts handled={}", smoke.vendor_ebx, host_ebx,
            smoke.irq_count);
    if (!smoke.done) return fail(errc::fault, "guest a did not finish");
    if (smoke.vendor_ebx != host_ebx) return fail(errc::fault, "guest CPUID result wrong");
    if (smoke.irq_count != 2) return fail(errc::fault, "the two injected interrupts were not handled");
    if (a.v.log.count(cpu::exit_reason::interrupt_window) != 1)
        return fail(errc::fault, "the interrupt raised with IF = 0 did not wait for an interrupt window");
    // VMX reports the triple fault; the SVM backend intercepts the #DF before it (Bochs).
    const bool b_reported = b.v.log.count(cpu::exit_reason::triple_fault) == 1 ||
                            (b.v.log.total() && b.v.log.recent(0).reason == cpu::exit_reason::exception &&
                             b.v.log.recent(0).exception.vector == 8);
    if (b.v.status() != cpu::vcpu_status::failed || !b_reported)
        return fail(errc::fault, "guest b's triple fault was not reported");
    return {};
}

namespace {
// The guest reports the ticks of each benchmark loop in RCX with its hypercall; the
// last one ends the run.
struct bench_case {
    std::uint64_t hypercall;
    const char* name;
    std::uint64_t ticks = ~0ull;
};
bench_case bench_cases[] = {{3, "cpuid-roundtrip"}, {4, "hypercall-roundtrip"}, {6, "out-roundtrip"},
                            {7, "in-roundtrip"},    {8, "rdmsr-roundtrip"},     {9, "hlt-wake"},
                            {10, "cpuid-roundtrip-host-handler"}};
void bench_cpuid(cpu::vcpu& v, const cpu::exit_info&);
constexpr std::uint64_t bench_iterations = 1000;

void bench_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if (e.hypercall.nr == 5) return;  // the timed one: a minimal handler
    for (auto& c : bench_cases) {
        if (c.hypercall != e.hypercall.nr) continue;
        c.ticks = v.state.regs.rcx;
        // The last loop: the same CPUID handler, not declared a leaf one (SVM then
        // switches the host's hidden state and GIF around it; VMX is not affected).
        if (e.hypercall.nr == 9) v.on(cpu::exit_reason::cpuid, bench_cpuid, cpu::vcpu::handler_kind::host);
        if (&c == &bench_cases[std::size(bench_cases) - 1]) v.stop("benchmark done");
    }
}
// Minimal handlers: the benchmarks measure the exit path, not a device model. All are
// leaf handlers (vcpu::handler_kind::leaf: no per-CPU state, no fault), as the
// default HLT one.
void bench_cpuid(cpu::vcpu& v, const cpu::exit_info&) {
    v.state.regs.rax = 0;
    v.state.regs.rbx = 0;
    v.state.regs.rcx = 0;
    v.state.regs.rdx = 0;
    v.skip();
}
void bench_io(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.io.in) v.state.regs.rax = (v.state.regs.rax & ~0xffull) | 0x5a;
    v.skip();
}
void bench_rdmsr(cpu::vcpu& v, const cpu::exit_info&) {
    v.state.regs.rax = 1;
    v.state.regs.rdx = 0;
    v.skip();
}
} // namespace

HV_PROGRAM(cpu_bench, "cpu.bench", "exit round trips (CPUID, hypercall, OUT, IN, RDMSR) and HLT wake-up in ticks") {
    HV_TRY(enable_virtualization());
    static guest g;
    HV_TRY(make_guest(g, 0, hv_guest_bench));
    g.v.state.regs.rcx = bench_iterations;
    using kind = cpu::vcpu::handler_kind;
    g.v.on(cpu::exit_reason::cpuid, bench_cpuid, kind::leaf);
    g.v.on(cpu::exit_reason::hypercall, bench_hypercall, kind::leaf);
    g.v.on(cpu::exit_reason::io, bench_io, kind::leaf);
    g.v.on(cpu::exit_reason::msr_read, bench_rdmsr, kind::leaf);
    cpu::scheduler sched;
    HV_TRY(sched.add(g.v));
    // The guest halts with nothing pending: a device raises vector 0x31 while it sleeps.
    sched.run(
        [](void*) {
            g.v.inject_interrupt(0x31);
            return true;
        },
        nullptr);
    if (g.v.status() != cpu::vcpu_status::stopped) {
        report(g.v);
        return fail(errc::fault, "benchmark guest failed");
    }
    if (g.v.log.count(cpu::exit_reason::hlt) != bench_iterations)
        return fail(errc::fault, "the HLT benchmark did not halt once per iteration");
    const char* vendor = m.kind == vendor_kind::vmx ? "vmx" : "svm";
    for (const auto& c : bench_cases) {
        if (c.ticks == ~0ull) return fail(errc::fault, "a benchmark loop did not report");
        char name[48];
        fmt::format_to(name, sizeof name, "{}.{}", vendor, c.name);
        rt::bench_report(name, bench_iterations, c.ticks / bench_iterations, "ticks");
    }
    return {};
}

namespace {
struct mode_result {
    std::uint64_t vendor_ebx = 0;
    std::uint64_t cr2 = 0;  // read back after the CPUID exit
    std::uint64_t port80 = 0;
    bool done = false;
} modes[3];

mode_result& result_of(const cpu::vcpu& v) { return modes[v.id()]; }

void modes_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if ((e.hypercall.nr & 0xffffffff) == 1) {
        result_of(v).vendor_ebx = v.state.regs.rcx & 0xffffffff;
        result_of(v).cr2 = v.state.regs.rdx;
    }
    if ((e.hypercall.nr & 0xffffffff) == 2) {
        result_of(v).done = true;
        v.stop("guest finished");
    }
}
// Yield after the CPUID: each guest has set its CR2 before it, so the next vCPU runs
// while this one's CR2 must be kept.
void modes_cpuid(cpu::vcpu& v, const cpu::exit_info& e) {
    cpuid_passthrough(v, e);
    v.request_yield();
}
void modes_io(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.io.in || e.io.string || e.io.port != 0x80 || e.io.size != 1) {
        v.fail("unexpected port I/O");
        return;
    }
    result_of(v).port80 = v.state.regs.rax & 0xff;
    v.skip();
}
} // namespace

HV_PROGRAM(cpu_modes, "cpu.modes", "CPUID, hypercall and OUT from 64-bit, 32-bit protected and real-mode guests") {
    HV_TRY(enable_virtualization());
    static guest g[3];
    const cpu::guest_mode mode_of[3] = {cpu::guest_mode::long64, cpu::guest_mode::protected32, cpu::guest_mode::real};
    const char* entry[3] = {hv_guest_mode64, hv_guest_mode32, hv_guest_mode16};
    const std::uint64_t tag[3] = {64, 32, 16};
    const std::uint64_t cr2_set[3] = {0x7fffc2c200000064, 0xc2c20032, 0xc2c20016};  // as the guests write them
    cpu::scheduler sched;
    for (unsigned i = 0; i < 3; ++i) {
        HV_TRY(make_guest(g[i], i, entry[i], mode_of[i]));
        g[i].v.state.regs.rdi = m.kind == vendor_kind::svm;
        g[i].v.on(cpu::exit_reason::cpuid, modes_cpuid);
        g[i].v.on(cpu::exit_reason::hypercall, modes_hypercall);
        g[i].v.on(cpu::exit_reason::io, modes_io);
        HV_TRY(sched.add(g[i].v));
    }
    sched.run();
    const auto host_ebx = x86::cpuid(0).ebx;
    bool ok = true, cr2_ok = true;
    for (unsigned i = 0; i < 3; ++i) {
        report(g[i].v);
        println("mode {}: cpuid(0).ebx={:#x} cr2={:#x} (set {:#x}) port80={} done={}", tag[i], modes[i].vendor_ebx,
                modes[i].cr2, cr2_set[i], modes[i].port80, modes[i].done);
        ok = ok && modes[i].done && modes[i].vendor_ebx == host_ebx && modes[i].port80 == tag[i];
        cr2_ok = cr2_ok && (i == 0 ? modes[i].cr2 : modes[i].cr2 & 0xffffffff) == cr2_set[i];
    }
    if (!ok) return fail(errc::fault, "a guest mode did not run CPUID, hypercall and OUT correctly");
    if (!cr2_ok) return fail(errc::fault, "a guest's CR2 changed across its exit while the other vCPUs set theirs");
    return {};
}

namespace {
constexpr std::uint32_t allowed_msr = 0x10;
constexpr std::uint64_t allowed_value = 0x1122334455667788ull;
// Denied with a non-zero #GP error code (a selector error code: index 3, IDT bit set), so
// the test sees the exact code reach the guest's handler, not just a zero.
constexpr std::uint32_t selector_error_msr = 0xc0de;
constexpr std::uint32_t selector_error = 3 << 3 | 2;
struct msr_result {
    std::uint64_t value = 0, gp_count = 0, gp_error = ~0ull, selector_gp_error = ~0ull;
    bool done = false;
} msr_out;

void msr_read(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.msr.index == selector_error_msr) {
        v.inject_exception(13, selector_error);
        return;
    }
    if (e.msr.index != allowed_msr) {
        v.inject_exception(13, 0);  // denied: the guest sees #GP(0) at the RDMSR
        return;
    }
    v.state.regs.rax = allowed_value & 0xffffffff;
    v.state.regs.rdx = allowed_value >> 32;
    v.skip();
}
void msr_write(cpu::vcpu& v, const cpu::exit_info&) { v.inject_exception(13, 0); }
void msr_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if (e.hypercall.nr == 3) {
        msr_out.value = (v.state.regs.r13 << 32) | (v.state.regs.r12 & 0xffffffff);
        msr_out.gp_count = v.state.regs.rcx;
        msr_out.gp_error = v.state.regs.rdx;
        msr_out.selector_gp_error = v.state.regs.r11;
        msr_out.done = true;
        v.stop("guest finished");
    }
}
} // namespace

HV_PROGRAM(cpu_msr, "cpu.msr", "RDMSR allowed and denied; #GP with error code injected into the guest's IDT") {
    HV_TRY(enable_virtualization());
    static guest g;
    HV_TRY(make_guest(g, 0, hv_guest_msr));
    g.v.on(cpu::exit_reason::msr_read, msr_read);
    g.v.on(cpu::exit_reason::msr_write, msr_write);
    g.v.on(cpu::exit_reason::hypercall, msr_hypercall);
    cpu::scheduler sched;
    HV_TRY(sched.add(g.v));
    sched.run();
    report(g.v);
    println("msr: allowed read={:#x} #GP taken={} error codes {:#x} then {:#x}", msr_out.value, msr_out.gp_count,
            msr_out.selector_gp_error, msr_out.gp_error);
    if (!msr_out.done) return fail(errc::fault, "guest did not finish");
    if (msr_out.value != allowed_value) return fail(errc::fault, "allowed RDMSR returned the wrong value");
    if (msr_out.gp_count != 3 || msr_out.gp_error != 0) return fail(errc::fault, "denied RDMSR/WRMSR did not raise #GP(0)");
    if (msr_out.selector_gp_error != selector_error)
        return fail(errc::fault, "the guest's #GP handler did not see the injected error code");
    return {};
}

namespace {
// Port 0x510 echoes the last value written; port 0x511 is a byte FIFO.
struct loopback {
    std::uint32_t latch = 0;
    std::uint8_t fifo[64] = {};
    std::size_t head = 0, tail = 0;
} dev;
struct io_result {
    std::uint64_t r8 = 0, r9 = 0, r10 = 0;
    bool done = false;
} io_out;

std::uint32_t dev_in(void*, std::uint16_t port, std::uint8_t) {
    if (port == 0x510) return dev.latch;
    if (port == 0x511 && dev.tail != dev.head) return dev.fifo[dev.tail++ % sizeof dev.fifo];
    return 0xffffffff;
}
void dev_out(void*, std::uint16_t port, std::uint8_t, std::uint32_t v) {
    if (port == 0x510) dev.latch = v;
    if (port == 0x511) dev.fifo[dev.head++ % sizeof dev.fifo] = static_cast<std::uint8_t>(v);
}
// The smoke guests share the host's identity map: linear == physical == host virtual.
bool mem_read(void*, std::uint64_t a, void* d, std::size_t n) {
    if (a + n > (4ull << 30)) return false;
    __builtin_memcpy(d, reinterpret_cast<const void*>(a), n);
    return true;
}
bool mem_write(void*, std::uint64_t a, const void* s, std::size_t n) {
    if (a + n > (4ull << 30)) return false;
    __builtin_memcpy(reinterpret_cast<void*>(a), s, n);
    return true;
}

void io_exit(cpu::vcpu& v, const cpu::exit_info& e) {
    auto r = cpu::emulate_io(v.state, e.io, {nullptr, dev_in, dev_out}, {nullptr, mem_read, mem_write});
    if (!r) {
        v.fail(r.err().what);
        return;
    }
    if (r->remaining == 0) v.skip();
}
void io_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if (e.hypercall.nr == 4) {
        io_out = {v.state.regs.r8, v.state.regs.r9, v.state.regs.r10, true};
        v.stop("guest finished");
    }
}
} // namespace

HV_PROGRAM(cpu_io, "cpu.io", "IN/OUT of 1, 2 and 4 bytes and REP OUTSB/INSB, emulated") {
    HV_TRY(enable_virtualization());
    static guest g;
    HV_TRY(make_guest(g, 0, hv_guest_io));
    g.v.on(cpu::exit_reason::io, io_exit);
    g.v.on(cpu::exit_reason::hypercall, io_hypercall);
    cpu::scheduler sched;
    HV_TRY(sched.add(g.v));
    sched.run();
    report(g.v);
    const std::string_view src(hv_guest_io_src), dst(hv_guest_io_dst);
    println("io: byte={:#x} word={:#x} dword={:#x} string in=\"{}\"", io_out.r8, io_out.r9, io_out.r10, dst);
    if (!io_out.done) return fail(errc::fault, "guest did not finish");
    if (io_out.r8 != 0x11 || io_out.r9 != 0x2233 || io_out.r10 != 0x44556677)
        return fail(errc::fault, "IN did not read back what OUT wrote");
    if (src != dst) return fail(errc::fault, "REP INSB did not read back what REP OUTSB wrote");
    return {};
}

HV_PROGRAM(cpu_entry, "cpu.entry", "entry failures end their guest with a message; the others run") {
    HV_TRY(enable_virtualization());
    static guest g[3];
    cpu::scheduler sched;
    for (unsigned i = 0; i < 3; ++i) {
        HV_TRY(make_guest(g[i], i, i == 2 ? hv_guest_smoke : hv_guest_mode64));
        g[i].v.on(cpu::exit_reason::cpuid, cpuid_passthrough);
        g[i].v.on(cpu::exit_reason::hypercall, smoke_hypercall);
        HV_TRY(sched.add(g[i].v));
    }
    // Guests 0 and 1 carry the same illegal state: VMX a TR marked unusable, SVM CR0.NW
    // without CR0.CD. Guest 1 goes to the CPU unchecked.
    for (unsigned i = 0; i < 2; ++i) {
        if (m.kind == vendor_kind::vmx) g[i].v.state[cpu::seg::tr].access |= cpu::ar::unusable;
        else g[i].v.state.cr0 |= x86::cr0::nw;
    }
    g[1].vmx_arch.software_checks = false;
    g[1].svm_arch.software_checks = false;
    int wakeups = 0;
    sched.run(
        [](void* c) {
            auto* n = static_cast<int*>(c);
            if ((*n)++) return false;
            g[2].v.inject_interrupt(0x30);
            return true;
        },
        &wakeups);
    for (auto& x : g) report(x.v);
    const char* why0 = g[0].v.why() ? g[0].v.why() : "";
    const std::string_view expect0 =
        m.kind == vendor_kind::vmx ? "VM entry check failed: guest_tr_ar" : "VMRUN check failed: state.cr0";
    if (g[0].v.status() != cpu::vcpu_status::failed || !std::string_view(why0).starts_with(expect0))
        return fail(errc::fault, "software check did not name the broken field");
    if (g[0].v.log.total() != 0) return fail(errc::fault, "a guest refused by the checks was entered");
    if (g[1].v.status() != cpu::vcpu_status::failed || g[1].v.log.count(cpu::exit_reason::invalid_guest_state) != 1)
        return fail(errc::fault, "the CPU's refusal was not reported as invalid guest state");
    if (g[2].v.status() != cpu::vcpu_status::stopped) return fail(errc::fault, "the good guest did not finish");
    return {};
}

namespace {
struct cr_result {
    std::uint64_t before = 0, after = 0, xcr0 = 0;
    bool done = false;
} cr_out;
void cr_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if ((e.hypercall.nr & 0xffffffff) == 5) {
        cr_out = {v.state.regs.rcx & 0xffffffff, v.state.regs.rdx & 0xffffffff, v.state.regs.rsi & 0xffffffff, true};
        v.stop("guest finished");
    }
}
} // namespace

// On vm::guest: real EPT/NPT built from the guest's memory, the (position-independent)
// guest code copied into its RAM; the identity stand-in is not used.
HV_PROGRAM(cpu_cr, "cpu.cr", "a real-mode guest writes CR0.NE and reads its CR0 back") {
    constexpr std::uint64_t code_gpa = 0x1000;
    static vm::physical_cpu pc;
    HV_TRY(vm::enable(pc, alloc_pages));
    static vm::zeroed_frames frames{ctx.pages};
    static vm::host_memory host{mmu::page_allocator_ref::to(frames)};
    static vm::guest g{host};
    HV_TRY(g.init(pc, {}, alloc_pages));
    HV_TRY(g.memory().add_ram(0, 64 * 1024));
    HV_TRY(g.memory().write(code_gpa, hv_guest_cr16, static_cast<std::size_t>(hv_guest_cr16_end - hv_guest_cr16)));
    cpu::vcpu& v = g.vcpu(0);
    v.state = cpu::initial_state(cpu::guest_mode::real, code_gpa);
    v.state.regs.rdi = g.vendor() == cpu::vendor::svm;
    v.on(cpu::exit_reason::hypercall, cr_hypercall);
    HV_TRY(g.start());
    cpu::scheduler sched;
    HV_TRY(g.schedule_on(sched));
    const std::uint64_t host_xcr0 = cpu::current_xcr0();
    sched.run();
    report(v);
    println("cr: guest on {} tables built from guest memory (root {:#x}) read CR0={:#x}, after setting NE {:#x}",
            g.vendor() == cpu::vendor::vmx ? "EPT" : "NPT", g.nested_root(), cr_out.before, cr_out.after);
    const bool xsave = x86::cpuid(1).ecx & (1u << 26);
    // The XCR0 the CPU holds now, readable also where a VM exit left CR4.OSXSAVE clear
    // (VMX loads the host CR4 captured before XSETBV was first used).
    if (xsave) x86::write_cr4(x86::read_cr4() | x86::cr4::osxsave);
    const std::uint64_t host_after = cpu::current_xcr0();
    println("cr: XCR0 guest set 0x3, read back {:#x} after a CPUID exit; host {:#x} before, {:#x} after{}", cr_out.xcr0,
            host_xcr0, host_after, xsave ? "" : " (no XSAVE: not run)");
    if (!cr_out.done) return fail(errc::fault, "guest did not finish");
    if (xsave && (cr_out.xcr0 != 3 || v.log.count(cpu::exit_reason::xsetbv) != 1))
        return fail(errc::fault, "the guest's XSETBV was not intercepted and its XCR0 kept across an exit");
    if (host_after != host_xcr0) return fail(errc::fault, "the host's XCR0 was not restored after the guest");
    // The guest must read back exactly what it wrote. (Its first read is ET, plus CD|NW on
    // Bochs' VMX models, which enter this unrestricted real-mode guest with them set.)
    if (!(cr_out.before & x86::cr0::et) || (cr_out.before & x86::cr0::ne) || cr_out.after != (cr_out.before | x86::cr0::ne))
        return fail(errc::fault, "guest did not see its own CR0");
    if (g.vendor() == cpu::vendor::vmx && v.log.count(cpu::exit_reason::cr_access) != 1)
        return fail(errc::fault, "VMX: setting the host-owned CR0.NE did not exit");
    return {};
}
