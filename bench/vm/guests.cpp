// Image "vm-guests": guests run through vm::guest, on real nested tables (EPT or NPT)
// built from their guest memory. Programs (run=NAME):
//   mmu.nested  a 64-bit guest with its own page tables (built by the hypervisor in guest
//               RAM) touches RAM, a hole, ROM, write-protected RAM (protection then lifted
//               while it runs), on-demand pages and a test device behind MMIO, then probes
//               every 2 MiB of the low 4 GiB, every page of the hypervisor image and the
//               frames of its own and the other guest's memory: it must see only all ones
//               or device data, never the magic the hypervisor planted. Run twice: RAM
//               mapped on demand, then all mapped at start(). Also in ticks: one on-demand
//               nested fault fill, one emulated MMIO write and read. The guest also
//               writes and reads CR8: its own TPR, never the host's (VMX: TPR shadow in
//               the first run, CR8 exits in the second).
#include <cstddef>
#include <cstdint>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/guest.hpp"
#include "bench/vm/guest_tables.hpp"

// Position-independent guest code, copied into guest RAM. RBX = 1 selects VMMCALL (AMD),
// RBP = the parameter page (guest-physical = guest-linear: the guest identity-maps 4 GiB).
// Hypercall EAX = phase number; the hypervisor checks each phase when it ends.
asm(R"(
    .text
    .code64
    .globl hv_vm_guest, hv_vm_guest_end
hv_vm_guest:
    mov %rbx, %r15
    /* 1: RAM: read what the hypervisor wrote, write what it checks */
    mov 0x00(%rbp), %rax
    mov (%rax), %rdx
    mov %rdx, 0x100(%rbp)
    mov 0x08(%rbp), %rax
    movabs $0x6c69626876207772, %rdx
    mov %rdx, (%rax)
    mov $1, %eax
    call 90f
    /* 2: a hole */
    mov 0x10(%rbp), %rax
    mov (%rax), %rdx
    mov %rdx, 0x108(%rbp)
    mov $2, %eax
    call 90f
    /* 3: ROM and write-protected RAM, written then read back */
    mov 0x18(%rbp), %rax
    movq $0x12345678, (%rax)
    mov (%rax), %rdx
    mov %rdx, 0x110(%rbp)
    mov 0x20(%rbp), %rax
    movq $0x2468ace, (%rax)
    mov (%rax), %rdx
    mov %rdx, 0x118(%rbp)
    mov $3, %eax
    call 90f
    /* 8: the hypervisor lifted the write protection: write again */
    mov 0x20(%rbp), %rax
    movq $0x13579bd, (%rax)
    mov $8, %eax
    call 90f
    /* 9: a hypercall in the last bytes of RAM (a hole follows): the hypervisor finds its
       length without reading the hole, then returns to RCX */
    lea 9f(%rip), %rcx
    mov 0x78(%rbp), %rdx
    mov $9, %eax
    jmp *%rdx
9:
    /* 10: MOVS from the device to a page the guest's tables leave unmapped: the emulator
       injects #PF; the handler below records CR2 and the error code, resumes at 11 */
    mov 0x38(%rbp), %rsi
    add $0x10, %rsi
    mov 0x80(%rbp), %rdi
    mov $1, %ecx
    rep movsq
11: mov $10, %eax
    call 90f
    /* 4: pages mapped on demand, timed */
    mov 0x28(%rbp), %rsi
    mov 0x30(%rbp), %rcx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
1:  movzbl (%rsi), %edx
    add $4096, %rsi
    dec %rcx
    jnz 1b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, 0x120(%rbp)
    mov $4, %eax
    call 90f
    /* 5: the test device: mov, movzx, or/and, rep stos, rep movs both ways */
    mov 0x38(%rbp), %r12
    movl $0x11223344, (%r12)
    movabs $0x8877665544332211, %rax
    mov %rax, 8(%r12)
    mov (%r12), %eax
    mov %rax, 0x128(%rbp)
    movzbl 9(%r12), %eax
    mov %rax, 0x130(%rbp)
    orl $0xf000, (%r12)
    andl $0xffff00ff, (%r12)
    mov (%r12), %eax
    mov %rax, 0x138(%rbp)
    cld
    lea 0x20(%r12), %rdi
    mov $4, %ecx
    mov $0xa5a5a5a5, %eax
    rep stosl
    mov 0x60(%rbp), %rsi
    lea 0x40(%r12), %rdi
    mov $16, %ecx
    rep movsb
    lea 0x8(%r12), %rsi
    mov 0x68(%rbp), %rdi
    mov $2, %ecx
    rep movsq
    mov $5, %eax
    call 90f
    /* 6: MMIO write and read round trips, timed */
    mov 0x58(%rbp), %r14
    mov %r14, %rcx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
2:  mov %ecx, 0x80(%r12)
    dec %rcx
    jnz 2b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, 0x140(%rbp)
    mov %r14, %rcx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
3:  mov 0x80(%r12), %eax
    dec %rcx
    jnz 3b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, 0x148(%rbp)
    mov $6, %eax
    call 90f
    /* 11: CR8: write 11, read it back (the hypervisor checks its own TPR is untouched) */
    mov $11, %eax
    mov %rax, %cr8
    xor %edx, %edx
    mov %cr8, %rdx
    mov %rdx, 0x168(%rbp)
    call 90f
    /* 7: probe physical addresses outside the guest's memory; count the magic */
    mov 0x40(%rbp), %rsi
    mov 0x48(%rbp), %rcx
    mov 0x50(%rbp), %rdi
    mov 0x70(%rbp), %r9
    xor %r8d, %r8d
4:  mov (%rsi), %rax
    mov (%rax), %rdx
    mov %rdx, (%rdi)
    cmp %r9, %rdx
    jne 5f
    inc %r8
5:  add $8, %rsi
    add $8, %rdi
    dec %rcx
    jnz 4b
    mov %r8, 0x150(%rbp)
    mov $7, %eax
    call 90f
6:  jmp 6b
90: test %r15, %r15
    jnz 91f
    vmcall
    ret
91: vmmcall
    ret
    .globl hv_vm_guest_pf
hv_vm_guest_pf:
    pop %rax
    mov %rax, 0x160(%rbp)
    mov %cr2, %rax
    mov %rax, 0x158(%rbp)
    lea 11b(%rip), %rax
    mov %rax, (%rsp)
    iretq
hv_vm_guest_end:
)");

extern "C" char hv_vm_guest[], hv_vm_guest_pf[], hv_vm_guest_end[];
extern "C" char __hv_image_end[];

namespace {

using namespace hv;

constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

// Guest-physical layout.
constexpr std::uint64_t ram_base = 0, ram_size = 512 * KiB;
constexpr std::uint64_t code_gpa = 0x1000;
constexpr std::uint64_t params_gpa = 0x3000;  // parameters at +0, results at +0x100
constexpr std::uint64_t ram_read_gpa = 0x4000, ram_write_gpa = 0x5000, protected_gpa = 0x6000;
constexpr std::uint64_t string_gpa = 0x7000, scratch_gpa = 0x7800;
constexpr std::uint64_t table_pool_gpa = 0x10000, table_pool_size = 8 * 4096;
constexpr std::uint64_t stack_top_gpa = 0x30000;
constexpr std::uint64_t probe_list_gpa = 0x30000, probe_results_gpa = 0x40000, max_probes = 0x10000 / 8;
constexpr std::uint64_t demand_gpa = 0x60000, demand_pages = 16;
constexpr std::uint64_t rom_gpa = 0xf0000, rom_size = 0x1000;
constexpr std::uint64_t hole_gpa = 1 * GiB;
constexpr std::uint64_t mmio_gpa = 0xfe00'0000, mmio_size = 0x1000;
constexpr std::uint64_t mmio_iterations = 64;
constexpr std::uint64_t gdt_gpa = 0x8000, idt_gpa = 0x9000;
constexpr std::uint64_t unmapped_linear = 0x1'4000'0000;  // above the 4 GiB the guest's tables map

constexpr std::uint64_t ram_pattern = 0x5265616420627920ull, guest_wrote = 0x6c69626876207772ull;
constexpr std::uint64_t rom_pattern = 0x524f4d2d64617461ull;
constexpr std::uint64_t magic = 0x4856'4d41'4749'4321ull;  // never visible to the guest
const char movs_string[16] = {'m', 'o', 'v', 's', 'b', ' ', 't', 'o', ' ', 'd', 'e', 'v', 'i', 'c', 'e', '!'};

// Hypervisor memory the guest must never see: a page of the image and an allocated page.
alignas(4096) std::uint64_t planted[512];

struct params {
    std::uint64_t ram_read, ram_write, hole, rom, protected_ram, demand, demand_count, mmio;
    std::uint64_t probe_list, probe_count, probe_results, mmio_iterations, string, scratch, magic;
    std::uint64_t hypercall_at_ram_end, unmapped_linear;
};
struct results {
    std::uint64_t ram_read, hole_read, rom_read, protected_read, demand_ticks;
    std::uint64_t mmio_dword, mmio_movzx, mmio_or_and, mmio_write_ticks, mmio_read_ticks, magic_hits;
    std::uint64_t pf_cr2, pf_error, cr8_read;
};

// A test device: 256 bytes of registers read and written like memory, access counters.
struct test_device {
    std::uint8_t regs[256] = {};
    std::uint64_t reads = 0, writes = 0;
    unsigned read_sizes = 0, write_sizes = 0;  // bit n: an access of n bytes happened

    static bool read(void* c, std::uint64_t offset, unsigned size, std::uint64_t& value) {
        auto& d = *static_cast<test_device*>(c);
        if (offset + size > sizeof d.regs) return false;
        value = 0;
        __builtin_memcpy(&value, d.regs + offset, size);
        ++d.reads;
        d.read_sizes |= 1u << size;
        return true;
    }
    static bool write(void* c, std::uint64_t offset, unsigned size, std::uint64_t value) {
        auto& d = *static_cast<test_device*>(c);
        if (offset + size > sizeof d.regs) return false;
        __builtin_memcpy(d.regs + offset, &value, size);
        ++d.writes;
        d.write_sizes |= 1u << size;
        return true;
    }
    std::uint64_t qword(std::uint64_t offset) const {
        std::uint64_t v;
        __builtin_memcpy(&v, regs + offset, 8);
        return v;
    }
};

struct phase_snapshot {
    vm::stray_accesses strays;
    vm::nested_stats stats;
    bool reached = false;
};

test_device device;

struct run_state {
    phase_snapshot phases[12];
    std::uint64_t host_cr8_in_guest = ~0ull;  // the CPU's CR8 while the guest ran (phase 11)
    std::uint8_t vcpu_tpr = 0;
    std::uint64_t violation_gpas[8] = {};
    unsigned violations = 0;
    std::uint64_t protected_at_phase3 = 0;
} run;

void on_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    const unsigned phase = static_cast<unsigned>(e.hypercall.nr & 0xffffffff);
    if (phase == 0 || phase > 11) {
        v.fail("unexpected hypercall");
        return;
    }
    vm::guest& g = vm::guest::of(v);
    run.phases[phase] = {g.strays(), g.stats(), true};
    if (phase == 3) {
        if (!g.memory().read(protected_gpa, &run.protected_at_phase3, 8)) v.fail("cannot read guest RAM");
        if (!g.write_protect(protected_gpa, 4096, false)) v.fail("cannot lift the write protection");
    }
    if (phase == 9) {
        v.state.rip = v.state.regs.rcx;
        v.mark_dirty(cpu::vcpu::dirty_rip);
    }
    if (phase == 11) {
        run.host_cr8_in_guest = x86::read_cr8();
        run.vcpu_tpr = v.tpr();
    }
    if (phase == 7) v.stop("guest finished");
}

bool on_violation(vm::guest&, cpu::vcpu&, std::uint64_t gpa, void*) {
    if (run.violations < 8) run.violation_gpas[run.violations] = gpa;
    ++run.violations;
    return false;  // default: ROM writes vanish, protected RAM is written
}

using rt::alloc_pages;

struct checker {
    const char* scenario;
    bool ok = true;
    void operator()(bool good, const char* what) {
        println("mmu.nested: {}: {} {}", scenario, what, good ? "ok" : "FAILED");
        ok = ok && good;
    }
};

// A guest and the page tables it runs on, built by the hypervisor inside its RAM.
struct guest_parts {
    vm::guest g;
    vm::test::identity_tables tables;
    explicit guest_parts(vm::host_memory& host) : g{host}, tables{g.memory(), table_pool_gpa, table_pool_size} {}
};

struct bench_ticks {
    std::uint64_t demand = 0, mmio_write = 0, mmio_read = 0;
};

// Builds, runs and checks one guest. `other`: a guest that ran before, whose frames and
// nested tables this one must not reach either.
status run_scenario(vm::physical_cpu& pc, guest_parts& parts, bool on_demand, std::uint16_t tag,
                    vm::guest* other, checker& check, bench_ticks& ticks) {
    run = run_state{};
    device = test_device{};
    vm::guest& g = parts.g;
    vm::config cfg;
    cfg.map_on_demand = on_demand;
    cfg.first_tag = tag;
    cfg.cr8_exits = !on_demand;  // VMX: the second guest virtualizes CR8 with exits
    HV_TRY(g.init(pc, cfg, alloc_pages));

    auto& mem = g.memory();
    HV_TRY(mem.add_ram(ram_base, ram_size));
    HV_TRY(mem.add_rom(rom_gpa, rom_size));
    const std::uint64_t device_initial = 0xfeedface'cafebeefull;
    __builtin_memcpy(device.regs + 0x10, &device_initial, 8);
    HV_TRY(g.add_mmio(mmio_gpa, mmio_size, {&device, &test_device::read, &test_device::write}));
    HV_TRY(g.write_protect(protected_gpa, 4096, true));
    g.set_violation_hook({nullptr, &on_violation});

    // Guest contents: code, data, ROM image, and 4-level tables identity-mapping 4 GiB.
    const auto code_size = static_cast<std::size_t>(hv_vm_guest_end - hv_vm_guest);
    HV_TRY(mem.write(code_gpa, hv_vm_guest, code_size));
    HV_TRY(mem.write(ram_read_gpa, &ram_pattern, 8));
    HV_TRY(mem.write(string_gpa, movs_string, sizeof movs_string));
    for (std::uint64_t at = 0; at < rom_size; at += 8) HV_TRY(mem.load(rom_gpa + at, &rom_pattern, 8));
    HV_TRY(parts.tables.build(4 * GiB));
    // A GDT (64-bit code 0x08, data 0x10) and an IDT with the #PF gate, for phase 10.
    const std::uint64_t gdt[3] = {0, 0x00209a0000000000ull, 0x0000920000000000ull};
    HV_TRY(mem.write(gdt_gpa, gdt, sizeof gdt));
    const std::uint64_t handler = code_gpa + static_cast<std::uint64_t>(hv_vm_guest_pf - hv_vm_guest);
    const auto gate = x86::interrupt_gate(handler, 0x08);
    HV_TRY(mem.write(idt_gpa + 14 * 16, &gate, sizeof gate));

    // Hypervisor memory planted with the magic; the probe list covers it and much more.
    for (auto& q : planted) q = magic;
    auto* planted_page = static_cast<std::uint64_t*>(rt::alloc_zeroed_pages(1));
    for (unsigned i = 0; i < 512; ++i) planted_page[i] = magic;
    static std::uint64_t probes[max_probes];
    std::uint64_t probe_count = 0;
    auto add_probe = [&](std::uint64_t gpa) {
        if (mem.find(gpa) && mem.find(gpa)->kind != mmu::region_kind::mmio) return;  // its own memory
        if (probe_count < max_probes) probes[probe_count++] = gpa;
    };
    for (std::uint64_t a = 0; a < 4 * GiB; a += 2 * MiB) add_probe(a);
    const auto image_end = reinterpret_cast<std::uintptr_t>(__hv_image_end);
    for (std::uint64_t a = MiB; a < image_end; a += 4096) add_probe(a);  // includes `planted`, the page bitmap
    add_probe(reinterpret_cast<std::uintptr_t>(planted_page));
    vm::guest* const owners[] = {&g, other};
    for (vm::guest* x : owners) {
        if (!x) continue;
        add_probe(x->nested_root());
        for (std::uint64_t a = 0; a < ram_size; a += 4096) add_probe(*x->memory().backing(a));
    }
    if (probe_count == max_probes) return fail(errc::overflow, "too many probes for the guest's list");
    HV_TRY(mem.write(probe_list_gpa, probes, probe_count * 8));

    // VMCALL (0f 01 c1) or VMMCALL (0f 01 d9) in the last 3 bytes of RAM.
    const std::uint8_t hypercall[3] = {0x0f, 0x01, std::uint8_t(g.vendor() == cpu::vendor::vmx ? 0xc1 : 0xd9)};
    HV_TRY(mem.write(ram_base + ram_size - 3, hypercall, 3));
    const params p{ram_read_gpa, ram_write_gpa, hole_gpa, rom_gpa, protected_gpa, demand_gpa, demand_pages,
                   mmio_gpa, probe_list_gpa, probe_count, probe_results_gpa, mmio_iterations, string_gpa,
                   scratch_gpa, magic, ram_base + ram_size - 3, unmapped_linear};
    HV_TRY(mem.write(params_gpa, &p, sizeof p));

    cpu::vcpu& v = g.vcpu(0);
    v.state = cpu::initial_state(cpu::guest_mode::long64, code_gpa, parts.tables.root());
    v.state.regs.rsp = stack_top_gpa;
    v.state.regs.rbp = params_gpa;
    v.state.regs.rbx = g.vendor() == cpu::vendor::svm;
    v.state.gdtr = {gdt_gpa, sizeof gdt - 1};
    v.state.idtr = {idt_gpa, 0xfff};
    v.set_exit_budget(20000);
    v.on(cpu::exit_reason::hypercall, on_hypercall);
    HV_TRY(g.start());
    cpu::scheduler sched;
    HV_TRY(g.schedule_on(sched));
    constexpr std::uint64_t host_cr8 = 3;  // the hypervisor's own TPR while the guest runs
    x86::write_cr8(host_cr8);
    sched.run();
    const std::uint64_t host_cr8_after = x86::read_cr8();
    x86::write_cr8(0);
    v.report(console::sink());

    results r{};
    HV_TRY(mem.read(params_gpa + 0x100, &r, sizeof r));
    const auto& ph = run.phases;
    println("mmu.nested: {}: {} guest on {} tables, root {:#x}, {} table pages, {} probes", check.scenario,
            g.vendor() == cpu::vendor::vmx ? "vmx" : "svm", g.vendor() == cpu::vendor::vmx ? "EPT" : "NPT",
            g.nested_root(), g.nested_table_pages(), probe_count);
    check(v.status() == cpu::vcpu_status::stopped && ph[7].reached, "guest ran to the end");

    std::uint64_t wrote = 0;
    HV_TRY(mem.read(ram_write_gpa, &wrote, 8));
    check(r.ram_read == ram_pattern && wrote == guest_wrote, "RAM: guest read the hypervisor's data, hypervisor read the guest's");

    println("mmu.nested: {}: hole read {:#x}, hole reads {}, last {:#x}", check.scenario, r.hole_read,
            ph[2].strays.hole_reads, ph[2].strays.last_gpa);
    check(r.hole_read == ~0ull && ph[2].strays.hole_reads == 1 && ph[2].strays.last_gpa == hole_gpa,
          "hole: all ones, reported in strays");

    std::uint64_t rom_now = 0, protected_now = 0;
    HV_TRY(mem.read(rom_gpa, &rom_now, 8));
    println("mmu.nested: {}: violations {} at {:#x} {:#x}; rom writes {}", check.scenario, run.violations,
            run.violation_gpas[0], run.violation_gpas[1], ph[3].strays.rom_writes);
    check(run.violations == 2 && run.violation_gpas[0] == rom_gpa && run.violation_gpas[1] == protected_gpa &&
              ph[3].stats.violations == 2,
          "ROM and write-protected RAM writes reported to the violation hook");
    check(r.rom_read == rom_pattern && rom_now == rom_pattern && ph[3].strays.rom_writes == 1,
          "ROM write dropped and counted, contents unchanged");
    check(r.protected_read == 0x2468ace && run.protected_at_phase3 == 0x2468ace,
          "write-protected RAM written by the emulated write");

    HV_TRY(mem.read(protected_gpa, &protected_now, 8));
    println("mmu.nested: {}: after lifting the protection: {:#x}, violations {} -> {}, emulated {} -> {}, mapped {} -> {}",
            check.scenario, protected_now, ph[3].stats.violations, ph[8].stats.violations, ph[3].stats.emulated,
            ph[8].stats.emulated, ph[3].stats.mapped_on_demand, ph[8].stats.mapped_on_demand);
    check(ph[8].reached && protected_now == 0x13579bd && ph[8].stats.violations == ph[3].stats.violations &&
              ph[8].stats.emulated == ph[3].stats.emulated &&
              ph[8].stats.mapped_on_demand == ph[3].stats.mapped_on_demand,
          "write protection lifted: the next write reaches RAM without a violation or emulation");

    check(ph[9].reached && ph[9].strays.hole_reads == ph[8].strays.hole_reads,
          "hypercall in the last bytes of RAM: skipped without reading the hole after it");

    println("mmu.nested: {}: #PF from the emulated MOVS: CR2 {:#x} error {:#x}", check.scenario, r.pf_cr2, r.pf_error);
    check(ph[10].reached && r.pf_cr2 == unmapped_linear && r.pf_error == 2,
          "emulated access to an unmapped linear page: #PF with CR2 and error code in the guest");

    println("mmu.nested: {}: CR8: guest read {:#x}, vCPU TPR {:#x} ({} CR8 exits); host CR8 {} while the guest ran, {} "
            "after (set to {})",
            check.scenario, r.cr8_read, run.vcpu_tpr, v.log.count(cpu::exit_reason::cr_access), run.host_cr8_in_guest,
            host_cr8_after, host_cr8);
    // VMX: TPR shadow (no exit) in the first run, a write and a read exit in the second;
    // SVM: V_TPR, no exit.
    const std::uint64_t cr8_exits = g.vendor() == cpu::vendor::vmx && !on_demand ? 2 : 0;
    check(ph[11].reached && r.cr8_read == 11 && run.vcpu_tpr == 0xb0 && run.host_cr8_in_guest == host_cr8 &&
              host_cr8_after == host_cr8 && v.log.count(cpu::exit_reason::cr_access) == cr8_exits,
          "CR8: the guest reads its own TPR back, the host's TPR is untouched");

    const std::uint64_t demand_faults = ph[4].stats.mapped_on_demand - ph[10].stats.mapped_on_demand;
    println("mmu.nested: {}: on-demand faults {} in phase 4 ({} in all), {} ticks", check.scenario, demand_faults,
            ph[7].stats.mapped_on_demand, r.demand_ticks);
    if (on_demand)
        check(demand_faults == demand_pages, "on-demand region: one nested fault per page");
    else
        check(ph[7].stats.mapped_on_demand == 0, "every page mapped at start: no nested fault maps one");

    std::uint64_t scratch[2] = {};
    HV_TRY(mem.read(scratch_gpa, scratch, sizeof scratch));
    bool stos_ok = true;
    for (unsigned i = 0x20; i < 0x30; ++i) stos_ok = stos_ok && device.regs[i] == 0xa5;
    println("mmu.nested: {}: device dword {:#x} qword {:#x}; guest saw {:#x} movzx {:#x} or/and {:#x}; reads {} "
            "writes {} sizes r={:#x} w={:#x}",
            check.scenario, device.qword(0) & 0xffffffff, device.qword(8), r.mmio_dword, r.mmio_movzx, r.mmio_or_and,
            device.reads, device.writes, device.read_sizes, device.write_sizes);
    check((device.qword(0) & 0xffffffff) == 0x11220044 && device.qword(8) == 0x8877665544332211ull &&
              r.mmio_dword == 0x11223344 && r.mmio_movzx == 0x22 && r.mmio_or_and == 0x11220044,
          "MMIO: mov, movzx, or/and on both sides");
    check(stos_ok && __builtin_memcmp(device.regs + 0x40, movs_string, 16) == 0 &&
              scratch[0] == 0x8877665544332211ull && scratch[1] == device_initial,
          "MMIO: rep stos and rep movs to and from the device");

    // Isolation: every probe is all ones (a hole) or device data, never the magic.
    static std::uint64_t seen[max_probes];
    HV_TRY(mem.read(probe_results_gpa, seen, probe_count * 8));
    std::uint64_t holes = 0, device_hits = 0, bad = 0;
    for (std::uint64_t i = 0; i < probe_count; ++i) {
        const bool in_device = probes[i] >= mmio_gpa && probes[i] < mmio_gpa + mmio_size;
        if (in_device && seen[i] == device.qword(probes[i] - mmio_gpa)) {
            ++device_hits;
        } else if (!in_device && seen[i] == ~0ull) {
            ++holes;
        } else if (bad++ < 4) {
            println("mmu.nested: {}: probe {:#x} read {:#x}", check.scenario, probes[i], seen[i]);
        }
    }
    const std::uint64_t hole_reads = ph[7].strays.hole_reads - ph[6].strays.hole_reads;
    println("mmu.nested: {}: probes {}: holes {} device {} other {}; magic seen {}; strays counted {}", check.scenario,
            probe_count, holes, device_hits, bad, r.magic_hits, hole_reads);
    check(bad == 0 && r.magic_hits == 0 && hole_reads == holes, "isolation: the guest never read hypervisor memory");
    println("mmu.nested: {}: nested stats: mapped on demand {}, emulated {}, violations {}", check.scenario,
            g.stats().mapped_on_demand, g.stats().emulated, g.stats().violations);
    ticks = {r.demand_ticks, r.mmio_write_ticks, r.mmio_read_ticks};
    return {};
}

} // namespace

HV_PROGRAM(mmu_nested, "mmu.nested",
           "guests on real nested tables: RAM, hole, ROM, write protection, on-demand, MMIO device, isolation probes") {
    static vm::physical_cpu pc;
    HV_TRY(vm::enable(pc, alloc_pages));
    static vm::zeroed_frames frames{ctx.pages};
    static vm::host_memory host{mmu::page_allocator_ref::to(frames)};
    // Two guests in turn: RAM mapped as the guest touches it, then all mapped at start()
    // (write protection and ROM then live in the nested tables, not in the fault path).
    static guest_parts on_demand{host}, premapped{host};
    checker first{"on-demand"}, second{"premapped"};
    bench_ticks ticks, unused;
    HV_TRY(run_scenario(pc, on_demand, true, 1, nullptr, first, ticks));
    HV_TRY(run_scenario(pc, premapped, false, 2, &on_demand.g, second, unused));

    const char* vendor = pc.vendor == cpu::vendor::vmx ? "vmx" : "svm";
    char name[48];
    fmt::format_to(name, sizeof name, "{}.npf-map-on-demand", vendor);
    rt::bench_report(name, demand_pages, ticks.demand / demand_pages, "ticks");
    fmt::format_to(name, sizeof name, "{}.mmio-write", vendor);
    rt::bench_report(name, mmio_iterations, ticks.mmio_write / mmio_iterations, "ticks");
    fmt::format_to(name, sizeof name, "{}.mmio-read", vendor);
    rt::bench_report(name, mmio_iterations, ticks.mmio_read / mmio_iterations, "ticks");
    if (!first.ok || !second.ok) return fail(errc::fault, "mmu.nested: a check failed");
    return {};
}
