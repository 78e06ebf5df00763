// Image "vm-shadow": a vm::guest with shadow paging (config.mmu = shadow) on whichever of
// VMX or SVM the CPU has, EPT/NPT off by policy. Programs (run=NAME):
//   shadow.test   the guest (shadow_guest.S) builds address spaces, switches CR3 between
//                 them, edits a live entry and INVLPGs it, uses a global page with
//                 CR4.PGE, writes a read-only page with CR0.WP = 0, and checks
//                 CPUID.PCID = 0, its own CR3 read back, A/D bits and the exact #PF error
//                 code and CR2 of not-present, write to read-only (WP = 1), user to
//                 supervisor and no-execute faults
//                 ... then a 32-bit guest (legacy paging, a 4 MiB page: a PAE shadow) with
//                 CR3 switches, A/D, #PF codes and an INVLPG'd edit
//   shadow.bench  in-guest ticks: fault fill, CR3 switch warm and cold, and address-space
//                 churn, under shadow paging and (when the CPU has it) nested paging
//
// Guest-physical layout (4 MiB of RAM):
//   0x1000 GDT   0x2000 IDT   0x3000 TSS   0x4000 #PF record, results
//   0x8000-0xe000 kernel stack, 0xf000 ring-0 stack for faults from ring 3 (TSS.RSP0)
//   0x10000 code (0x11000: the ring-3 page)   0x20000 ring-3 stack
//   0x100000 PML4  0x101000 PDPT  0x102000 PD (0-2 MiB: PT 0x103000; 2-4 MiB: one 2 MiB page)
//   0x200000-0x2fffff data frames (0x280000 'A', 0x281000 'B')   0x300000- table pool
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/arch/x86/virt_features.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/guest.hpp"

extern "C" char hv_sg_start[], hv_sg_end[], hv_sg_pf[];
extern "C" char hv_sg32_start[], hv_sg32_end[], hv_sg32_pf[];

namespace {

using namespace hv;

using rt::alloc_pages;

constexpr std::uint64_t code_gpa = 0x10000, pml4_gpa = 0x100000, pd_gpa = 0x102000;
constexpr std::uint64_t results_gpa = 0x4100, bench_gpa = 0x4200;
constexpr std::uint64_t pattern_a = 0x4141414141414141, pattern_b = 0x4242424242424242;

// SSE and the masked PICs the vCPU fibers need: the runtime's start-up already did both.
status enable(vm::physical_cpu& pc) { return vm::enable(pc, alloc_pages); }

bool nested_available(const vm::physical_cpu& pc) {
    if (pc.vendor == cpu::vendor::svm) return pc.svm.caps.nested_paging;
    return pc.vmx.controls.value(vmx::control_set::proc2) & vmx::bits(vmx::proc2::ept);
}

struct run_state {
    bool done = false;
    std::uint64_t reported = 0;
} run;

// The churn breakdown: exits of each kind between the guest's marks (hypercalls 4 and 5
// around the timed churn loop) and the ticks their handlers took. The handlers are
// wrapped only in the breakdown run, so the timed runs carry no instrumentation.
enum exit_kind : unsigned { k_fill, k_table_unshadow, k_table_emulate, k_wp0, k_injected, k_other_pf, k_cr3, k_cr_other,
                            k_invlpg, k_kinds };
const char* const kind_names[k_kinds] = {"fill", "table write, unshadowed", "table write, emulated",
                                         "CR0.WP=0 write", "#PF injected", "other #PF", "CR3 write", "other CR",
                                         "INVLPG"};
struct breakdown {
    bool counting = false;
    std::uint64_t exits_at_mark = 0, exits = 0;
    std::uint64_t count[k_kinds] = {};
    std::uint64_t ticks[k_kinds] = {};
    cpu::exit_handler pf = nullptr, cr = nullptr, invlpg = nullptr;
} bd;

void on_hypercall(cpu::vcpu& v, const cpu::exit_info& e) {
    v.skip();
    if (e.hypercall.nr == 4 || e.hypercall.nr == 5) {
        bd.counting = e.hypercall.nr == 4;
        if (bd.counting) bd.exits_at_mark = v.log.total();
        else bd.exits = v.log.total() - bd.exits_at_mark - 1;
        return;
    }
    run.reported = e.hypercall.nr;
    run.done = true;
    v.stop("guest finished");
}

void timed(cpu::vcpu& v, const cpu::exit_info& e, cpu::exit_handler h, exit_kind (*classify)(const vm::shadow_exit_stats&,
                                                                                          const vm::shadow_exit_stats&,
                                                                                          const cpu::exit_info&)) {
    auto& g = v.owner<vm::guest>();
    const vm::shadow_exit_stats before = g.shadow_stats();
    const std::uint64_t t0 = x86::rdtsc();
    h(v, e);
    const std::uint64_t t = x86::rdtsc() - t0;
    if (!bd.counting) return;
    const exit_kind k = classify(before, g.shadow_stats(), e);
    ++bd.count[k];
    bd.ticks[k] += t;
}

void instrument(cpu::vcpu& v) {
    bd.pf = v.handler(cpu::exit_reason::exception);
    bd.cr = v.handler(cpu::exit_reason::cr_access);
    bd.invlpg = v.handler(cpu::exit_reason::invlpg);
    v.on(cpu::exit_reason::exception, [](cpu::vcpu& v, const cpu::exit_info& e) {
        timed(v, e, bd.pf, [](const vm::shadow_exit_stats& a, const vm::shadow_exit_stats& b, const cpu::exit_info&) {
            if (b.unshadowed != a.unshadowed) return k_table_unshadow;
            if (b.table_writes != a.table_writes) return k_table_emulate;
            if (b.fills != a.fills) return k_fill;
            if (b.wp0_writes != a.wp0_writes) return k_wp0;
            if (b.injected != a.injected) return k_injected;
            return k_other_pf;
        });
    });
    v.on(cpu::exit_reason::cr_access, [](cpu::vcpu& v, const cpu::exit_info& e) {
        timed(v, e, bd.cr, [](const vm::shadow_exit_stats& a, const vm::shadow_exit_stats& b, const cpu::exit_info&) {
            return b.cr3_writes != a.cr3_writes ? k_cr3 : k_cr_other;
        });
    });
    v.on(cpu::exit_reason::invlpg, [](cpu::vcpu& v, const cpu::exit_info& e) {
        timed(v, e, bd.invlpg,
              [](const vm::shadow_exit_stats&, const vm::shadow_exit_stats&, const cpu::exit_info&) { return k_invlpg; });
    });
}

template <class T>
T* at(vm::guest& g, std::uint64_t gpa) {
    return static_cast<T*>(g.memory().host_pointer(gpa, true));
}

// Memory, tables, descriptor tables and the vCPU state of the guest above.
status build(vm::guest& g, std::uint64_t program) {
    HV_TRY(g.memory().add_ram(0, 4ull << 20));
    const std::size_t code_size = static_cast<std::size_t>(hv_sg_end - hv_sg_start);
    if (code_size > 0x2000) return fail(errc::out_of_range, "guest code larger than 8 KiB");
    __builtin_memcpy(at<char>(g, code_gpa), hv_sg_start, code_size);

    auto* pml4 = at<std::uint64_t>(g, pml4_gpa);
    auto* pdpt = at<std::uint64_t>(g, 0x101000);
    auto* pd = at<std::uint64_t>(g, pd_gpa);
    auto* pt = at<std::uint64_t>(g, 0x103000);
    pml4[0] = 0x101000 | 7;
    pdpt[0] = pd_gpa | 7;
    pd[0] = 0x103000 | 7;
    pd[1] = 0x200000 | 0x83;  // 2 MiB page, supervisor: frames and the table pool
    for (unsigned i = 1; i < 512; ++i) pt[i] = (std::uint64_t{i} << 12) | 3;
    pt[0x11] |= 4;  // ring-3 code
    pt[0x20] |= 4;  // ring-3 stack
    for (unsigned i = 0; i < 512; ++i) {
        at<std::uint64_t>(g, 0x280000)[i] = pattern_a;
        at<std::uint64_t>(g, 0x281000)[i] = pattern_b;
    }

    auto* gdt = at<std::uint64_t>(g, 0x1000);
    gdt[1] = 0x00af9a000000ffff;  // 0x08 code64, ring 0
    gdt[2] = 0x00cf92000000ffff;  // 0x10 data, ring 0
    gdt[3] = 0x00cff2000000ffff;  // 0x18 data, ring 3
    gdt[4] = 0x00affa000000ffff;  // 0x20 code64, ring 3
    gdt[5] = 0x0000890000000067 | (0x3000ull << 16);  // 0x28 TSS at 0x3000 (base < 16 MiB)
    gdt[6] = 0;
    *at<std::uint64_t>(g, 0x3000 + 4) = 0xf000;  // TSS.RSP0

    const std::uint64_t handler = code_gpa + static_cast<std::uint64_t>(hv_sg_pf - hv_sg_start);
    auto* idt = at<std::uint64_t>(g, 0x2000);
    const auto gate = x86::interrupt_gate(handler, 0x08);
    idt[14 * 2] = gate.low;
    idt[14 * 2 + 1] = gate.high;

    HV_TRY(g.start());
    cpu::vcpu& v = g.vcpu(0);
    v.set_exit_budget(2'000'000);
    v.report_failures_to(&console::sink());
    auto& s = v.state;
    s = cpu::initial_state(cpu::guest_mode::long64, code_gpa, pml4_gpa);
    s.efer |= x86::efer::nxe;
    s.regs.rsp = 0xe000;
    s.regs.r12 = pd_gpa;
    s.regs.r13 = program;
    s.regs.r15 = g.vendor() == cpu::vendor::svm;
    s.gdtr = {0x1000, 0x37};
    s.idtr = {0x2000, 0xfff};
    s[cpu::seg::tr] = cpu::segment{0x28, cpu::ar::tss_busy | cpu::ar::p, 0x67, 0x3000};
    v.on(cpu::exit_reason::hypercall, on_hypercall);
    return {};
}

// The 32-bit guest: legacy paging with a 4 MiB page, on a PAE shadow.
status build32(vm::guest& g) {
    HV_TRY(g.memory().add_ram(0, 4ull << 20));
    const std::size_t code_size = static_cast<std::size_t>(hv_sg32_end - hv_sg32_start);
    __builtin_memcpy(at<char>(g, code_gpa), hv_sg32_start, code_size);
    auto* pd = at<std::uint32_t>(g, pml4_gpa);
    auto* pt = at<std::uint32_t>(g, 0x103000);
    pd[0] = 0x103000 | 7;
    pd[0x40400000 >> 22] = 0x83;  // 4 MiB page on guest-physical 0
    for (unsigned i = 1; i < 1024; ++i) pt[i] = (i << 12) | 3;
    for (unsigned i = 0; i < 512; ++i) {
        at<std::uint64_t>(g, 0x280000)[i] = pattern_a;
        at<std::uint64_t>(g, 0x281000)[i] = pattern_b;
    }
    auto* gdt = at<std::uint64_t>(g, 0x1000);
    gdt[1] = 0x00cf9a000000ffff;  // 0x08 code32
    gdt[2] = 0x00cf92000000ffff;  // 0x10 data
    gdt[3] = 0x0000890000000067 | (0x3000ull << 16);  // 0x18 TSS
    const std::uint64_t handler = code_gpa + static_cast<std::uint64_t>(hv_sg32_pf - hv_sg32_start);
    auto* idt = at<std::uint64_t>(g, 0x2000);
    idt[14] = x86::interrupt_gate(handler, 0x08).low;  // a 32-bit gate

    HV_TRY(g.start());
    cpu::vcpu& v = g.vcpu(0);
    v.set_exit_budget(100'000);
    v.report_failures_to(&console::sink());
    auto& s = v.state;
    s = cpu::initial_state(cpu::guest_mode::protected32, code_gpa);
    s.cr0 |= x86::cr0::pg | x86::cr0::wp;
    s.cr3 = pml4_gpa;
    s.cr4 = x86::cr4::pse;
    s.regs.rsp = 0xe000;
    s.regs.rdi = g.vendor() == cpu::vendor::svm;
    s.gdtr = {0x1000, 0x1f};
    s.idtr = {0x2000, 0x7ff};
    s[cpu::seg::tr] = cpu::segment{0x18, cpu::ar::tss_busy | cpu::ar::p, 0x67, 0x3000};
    v.on(cpu::exit_reason::hypercall, on_hypercall);
    return {};
}

status run_guest(vm::physical_cpu& pc, vm::guest& g, vm::paging mmu, std::uint64_t program, std::uint16_t tag,
                 bool breakdown = false) {
    vm::config cfg;
    cfg.mmu = mmu;
    cfg.first_tag = tag;
    HV_TRY(g.init(pc, cfg, alloc_pages));
    HV_TRY(program == 2 ? build32(g) : build(g, program));
    if (breakdown) instrument(g.vcpu(0));
    cpu::scheduler sched;
    HV_TRY(g.schedule_on(sched));
    run = {};
    sched.run();
    if (!run.done || g.vcpu(0).status() != cpu::vcpu_status::stopped) return fail(errc::fault, "guest did not finish");
    return {};
}

struct expectation {
    const char* what;
    std::uint64_t want;
};

} // namespace

HV_PROGRAM(shadow_test, "shadow.test", "shadow paging: CR3 switches, INVLPG, globals, A/D, exact #PF codes") {
    static vm::physical_cpu pc;
    HV_TRY(enable(pc));
    static vm::zeroed_frames f{ctx.pages};
    static vm::host_memory h{mmu::page_allocator_ref::to(f)};
    static vm::guest g{h};
    HV_TRY(run_guest(pc, g, vm::paging::shadow, 0, 1));
    const auto* r = at<std::uint64_t>(g, results_gpa);
    const expectation want[] = {
        {"CPUID.1:ECX.PCID", 0},
        {"CR3 read back", pml4_gpa},
        {"space A reads frame A", pattern_a},
        {"space B reads frame B", pattern_b},
        {"space A again (cached shadow)", pattern_a},
        {"PTE after a read: A, not D", 0x280023},
        {"PTE after a write: A and D", 0x280063},
        {"PDE: A set", 0x303027},
        {"edited PTE + INVLPG: new frame", pattern_b},
        {"#PF not present: error code", 0x0},
        {"#PF not present: CR2", 0x40001000},
        {"#PF write to read-only: error code", 0x3},
        {"#PF write to read-only: CR2", 0x40002000},
        {"#PF no-execute fetch: error code", 0x11},
        {"#PF no-execute fetch: CR2", 0x40003000},
        {"#PF ring 3 reads supervisor: error code", 0x5},
        {"#PF ring 3 reads supervisor: CR2", 0x40000000},
        {"global page after CR3 switches", 0x1111},
        {"CR4.PGE read back", 0x80},
        {"#PF count", 4},
        {"CR3 read back (space A)", 0x300000},
        {"CR0.WP = 0: supervisor write to a read-only page", 5},
        {"EFER after WRMSR (LME, LMA, NXE)", 0xd00},
    };
    unsigned bad = 0;
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; ++i) {
        const bool ok = r[i] == want[i].want;
        bad += !ok;
        println("shadow.test: {} {}: {:#x} (want {:#x})", ok ? "ok  " : "FAIL", want[i].what, r[i], want[i].want);
    }
    const auto& st = g.shadow_stats();
    const auto& ms = g.shadow(0).stats();
    println("shadow.test: {} fills, {} #PF injected, {} table writes, {} WP=0 writes, {} CR3 writes, {} INVLPG, "
            "{} full flushes; {} shadow pages live, {} allocated",
            st.fills, st.injected, st.table_writes, st.wp0_writes, st.cr3_writes, st.invlpg, st.flushes, ms.live_pages,
            ms.allocations);
    if (st.injected != 4 || st.invlpg < 1 || st.cr3_writes < 5 || st.wp0_writes != 1 || st.table_writes < 1)
        return fail(errc::fault, "shadow exit counters do not match what the guest did");

    // The same kinds of checks from a 32-bit guest with legacy paging (a PAE shadow).
    static vm::guest g32{h};
    HV_TRY(run_guest(pc, g32, vm::paging::shadow, 2, 2));
    const auto* r32 = at<std::uint32_t>(g32, results_gpa);
    const expectation want32[] = {
        {"32-bit: 4 MiB page", 0x41414141},
        {"32-bit: space B reads frame B", 0x42424242},
        {"32-bit: PTE after a read: A, not D", 0x281023},
        {"32-bit: CR3 read back", 0x300000},
        {"32-bit: boot space again", 0x41414141},
        {"32-bit: #PF not present: error code", 0},
        {"32-bit: #PF not present: CR2", 0x40001000},
        {"32-bit: #PF write to read-only: error code", 3},
        {"32-bit: #PF write to read-only: CR2", 0x40002000},
        {"32-bit: edited PTE + INVLPG: new frame", 0x41414141},
        {"32-bit: #PF count", 2},
    };
    for (unsigned i = 0; i < sizeof want32 / sizeof want32[0]; ++i) {
        const bool ok = r32[i] == want32[i].want;
        bad += !ok;
        println("shadow.test: {} {}: {:#x} (want {:#x})", ok ? "ok  " : "FAIL", want32[i].what, r32[i], want32[i].want);
    }
    println("shadow.test: 32-bit guest: {} fills, {} #PF injected", g32.shadow_stats().fills,
            g32.shadow_stats().injected);
    if (g32.shadow(0).format() != mmu::shadow_format::pae) return fail(errc::fault, "32-bit guest not on a PAE shadow");
    if (bad) return fail(errc::fault, "guest saw wrong paging behaviour");
    return {};

}

HV_PROGRAM(shadow_bench, "shadow.bench", "ticks: fault fill, CR3 switch warm/cold, address-space churn; shadow vs nested") {
    static vm::physical_cpu pc;
    HV_TRY(enable(pc));
    static vm::zeroed_frames f{ctx.pages};
    static vm::host_memory h{mmu::page_allocator_ref::to(f)};
    static vm::guest shadowed{h}, nested{h};
    struct one {
        vm::guest* g;
        vm::paging mmu;
        const char* name;
    } runs[] = {{&shadowed, vm::paging::shadow, "shadow"}, {&nested, vm::paging::nested, "nested"}};
    std::uint64_t workload[2] = {};
    for (unsigned i = 0; i < 2; ++i) {
        if (runs[i].mmu == vm::paging::nested && !nested_available(pc)) {
            println("shadow.bench: no EPT/NPT on this CPU: nested runs skipped");
            break;
        }
        HV_TRY(run_guest(pc, *runs[i].g, runs[i].mmu, 1, static_cast<std::uint16_t>(1 + i)));
        const auto* b = at<std::uint64_t>(*runs[i].g, bench_gpa);
        char name[64];
        fmt::format_to(name, sizeof name, "vm.{}.fault_fill", runs[i].name);
        rt::bench_report(name, 256, b[0] / 256, "ticks");
        fmt::format_to(name, sizeof name, "vm.{}.cr3_switch_warm", runs[i].name);
        rt::bench_report(name, 1000, b[1] / 1000, "ticks");
        fmt::format_to(name, sizeof name, "vm.{}.cr3_switch_cold", runs[i].name);
        rt::bench_report(name, 200, b[2] / 200, "ticks");
        fmt::format_to(name, sizeof name, "vm.{}.address_space_churn", runs[i].name);
        rt::bench_report(name, 100, b[3] / 100, "ticks");
        workload[i] = b[3];
        if (runs[i].mmu == vm::paging::shadow) {
            const auto& st = runs[i].g->shadow_stats();
            const auto& ms = runs[i].g->shadow(0).stats();
            println("shadow.bench: {} exits: {} fills, {} #PF injected, {} table writes ({} tables unshadowed), {} "
                    "CR3 writes, {} full flushes; shadow pages: {} allocated, {} evicted",
                    runs[i].g->vcpu(0).log.total(), st.fills, st.injected, st.table_writes, st.unshadowed,
                    st.cr3_writes, st.flushes, ms.allocations, ms.evictions);
        }
    }
    if (workload[1]) println("shadow.bench: address-space churn shadow/nested = {}.{}x", workload[0] / workload[1],
                             (workload[0] * 10 / workload[1]) % 10);

    // Where the churn's ticks go: the same guest again with the shadow handlers timed.
    static vm::guest counted{h};
    HV_TRY(run_guest(pc, counted, vm::paging::shadow, 1, 3, true));
    constexpr std::uint64_t iterations = 100;
    std::uint64_t handled = 0, handler_ticks = 0;
    for (unsigned k = 0; k < k_kinds; ++k) {
        if (!bd.count[k]) continue;
        handled += bd.count[k];
        handler_ticks += bd.ticks[k];
        println("shadow.bench: churn breakdown: {}: {}.{} exits per iteration, {} handler ticks each", kind_names[k],
                bd.count[k] / iterations, bd.count[k] * 10 / iterations % 10, bd.ticks[k] / bd.count[k]);
    }
    const std::uint64_t total = workload[0];
    println("shadow.bench: churn breakdown: {} exits per iteration ({} timed), handlers {} of {} ticks per iteration; "
            "the rest ({} per exit) is the exit/entry path and the guest's own instructions",
            bd.exits / iterations, handled / iterations, handler_ticks / iterations, total / iterations,
            bd.exits ? (total - handler_ticks - 298 * iterations) / bd.exits : 0);
    return {};
}
