// A libhv-runtime program that runs as a Xen PVH guest of examples/xen/host.cpp (or of
// Xen itself, for the parts that need no libhv toolstack convention). Programs:
//   xen.pv       CPUID leaves, hypercall page, console_io, xen_version, an event channel
//                to itself delivered through the callback vector, the console ring, a
//                block device through a granted ring with event notifications (write,
//                read back, an out-of-range request refused), SCHEDOP_block woken by a
//                one-shot timer, tick benchmarks, then the same events through the FIFO
//                ABI, hypercalls from a compatibility-mode, a conforming and a ring-3 code
//                segment; then SCHEDOP_shutdown(poweroff), or (crash) at the first failed check
//   xen.crash    SCHEDOP_shutdown(crash): the run must fail
//   xen.hostile  a few thousand hypercalls of every number with random arguments and
//                pointers (seeded): each must be answered with 0, a positive value or a
//                Xen errno, and the hypervisor must still answer afterwards
#include <initializer_list>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/guest/xen.hpp"
#include "libhv/io/ring.hpp"
#include "libhv/io/shared_mem.hpp"
#include "libhv/io/xen_toolstack.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

namespace {

namespace gx = hv::guest::xen;
namespace xen = hv::xen;
namespace ts = hv::xen::toolstack;

constexpr std::uint8_t callback_vector = 0xe0;

gx::hypercalls hc;
gx::upcall events;
gx::grant_table grants;
xen::domid_t my_domid = xen::domid_self;

// Ends the guest through the hypervisor with `reason`; returns only if it refused.
hv::status end_with(unsigned reason, const char* why) {
    if (reason != xen::shutdown_poweroff) hv::println("xen-guest: FAILED: {}", why);
    const std::int64_t rc = hc.shutdown(reason);
    return hv::fail(hv::errc::fault, rc == 0 ? "SCHEDOP_shutdown returned" : "SCHEDOP_shutdown refused");
}

#define CHECK_OR_CRASH(cond, why)                                                          \
    do {                                                                                   \
        if (!(cond)) return end_with(xen::shutdown_crash, why);                            \
    } while (0)

hv::status setup_hypercalls() {
    auto base = gx::find_cpuid_base();
    if (!base) return hv::fail(hv::errc::not_supported, "no Xen CPUID leaves");
    const auto l1 = hv::x86::cpuid(*base + 1);
    const auto l4 = hv::x86::cpuid(*base + 4);
    if (l4.eax & xen::hvm_cpuid_domid_present) my_domid = static_cast<xen::domid_t>(l4.ecx);
    hv::println("xen-guest: cpuid base {:#x} max {:#x} version {}.{} domid {}", *base, hv::x86::cpuid(*base).eax,
                l1.eax >> 16, l1.eax & 0xffff, my_domid);
    return hc.install(*base, hv::rt::alloc_zeroed_pages(1));
}

struct counter {
    volatile std::uint64_t n = 0;
    volatile bool seen = false;
};
void count_event(xen::evtchn_port_t, void* ctx) {
    auto* c = static_cast<counter*>(ctx);
    c->n = c->n + 1;
    c->seen = true;
}

std::uint64_t ticks() { return hv::x86::rdtsc(); }

// Hypercalls from code segments other than the usual 64-bit one, at CPL 0 (interrupts
// off): through the stub at `stub` (below 4 GiB) after a far return to `selector`.
//   compat_call      a 32-bit (compatibility mode) segment: 32-bit ABI, the first
//                    argument in EBX; RDI holds XENVER_pagesize, what a 64-bit reading
//                    of the registers would take
//   conforming_call  a conforming 64-bit segment of DPL 0: 64-bit ABI, argument in RDI
extern "C" std::uint64_t xen_guest_compat_call(const void* stub, std::uint64_t selector, std::uint64_t arg0);
extern "C" std::uint64_t xen_guest_conforming_call(const void* stub, std::uint64_t selector, std::uint64_t arg0);
asm(R"(
    .text
    .globl xen_guest_compat_call
xen_guest_compat_call:
    push %rbx
    push %rbp
    mov %cs, %ebp
    mov %rdx, %rbx
    mov %rdi, %rcx
    mov $7, %edi
    lea 1f(%rip), %rax
    push %rsi
    push %rax
    lretq
    .code32
1:  call *%ecx
    push %ebp
    push $2f
    lret
    .code64
2:  pop %rbp
    pop %rbx
    ret

    .globl xen_guest_conforming_call
xen_guest_conforming_call:
    push %rbp
    mov %cs, %ebp
    mov %rdi, %r11
    mov %rdx, %rdi
    lea 1f(%rip), %rax
    push %rsi
    push %rax
    lretq
1:  call *%r11
    lea 2f(%rip), %rcx
    push %rbp
    push %rcx
    lretq
2:  pop %rbp
    ret
)");

// Ring 3 and back without a TSS (interrupts off): IRETQ to `user_code`/`user_data`,
// xen_version(XENVER_version) through the stub, a far return to `conforming` (a DPL 0
// conforming segment, RPL 3: the CPL stays 3 while CS.DPL says 0), the call again, then
// SYSCALL back to CPL 0 (LSTAR = xen_guest_user_back, STAR's kernel CS = the caller's),
// SS, DS, ES and CS restored. Returns the first result; the second goes to *second.
extern "C" std::uint64_t xen_guest_user_calls(const void* stub, std::uint64_t user_code, std::uint64_t user_data,
                                              std::uint64_t conforming, std::uint64_t* second);
extern "C" void xen_guest_user_back();
asm(R"(
    .text
    .globl xen_guest_user_calls
xen_guest_user_calls:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, xen_user_saved_rsp(%rip)
    mov %cs, %eax
    mov %rax, xen_user_saved_cs(%rip)
    mov %ss, %eax
    mov %rax, xen_user_saved_ss(%rip)
    mov %ds, %eax
    mov %rax, xen_user_saved_ds(%rip)
    mov %es, %eax
    mov %rax, xen_user_saved_es(%rip)
    mov %rdi, %r14
    mov %rcx, %r15
    mov %r8, %rbx
    mov %rsp, %rax
    push %rdx
    push %rax
    pushfq
    andq $~0x200, (%rsp)
    push %rsi
    lea 1f(%rip), %rax
    push %rax
    iretq
1:  xor %edi, %edi
    call *%r14
    mov %rax, %r12
    push %r15
    lea 2f(%rip), %rax
    push %rax
    lretq
2:  xor %edi, %edi
    call *%r14
    mov %rax, %r13
    syscall
    ud2
    .globl xen_guest_user_back
xen_guest_user_back:
    mov xen_user_saved_ss(%rip), %rax
    mov %eax, %ss
    mov xen_user_saved_ds(%rip), %rax
    mov %eax, %ds
    mov xen_user_saved_es(%rip), %rax
    mov %eax, %es
    mov xen_user_saved_rsp(%rip), %rsp
    push xen_user_saved_cs(%rip)
    lea 3f(%rip), %rax
    push %rax
    lretq
3:  mov %r13, (%rbx)
    mov %r12, %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    .data
    .balign 8
xen_user_saved_rsp: .quad 0
xen_user_saved_cs: .quad 0
xen_user_saved_ss: .quad 0
xen_user_saved_ds: .quad 0
xen_user_saved_es: .quad 0
    .text
)");

// Sets U/S on every present entry of the tables under CR3 (identity-mapped), so ring 3
// can run the same code on the same stack.
void make_everything_user() {
    std::uint64_t cr3;
    asm volatile("mov %%cr3, %0" : "=r"(cr3));
    auto table = [](std::uint64_t e) { return reinterpret_cast<std::uint64_t*>(e & 0x000f'ffff'ffff'f000ull); };
    std::uint64_t* pml4 = table(cr3);
    for (unsigned i = 0; i < 512; ++i) {
        if (!(pml4[i] & 1)) continue;
        pml4[i] |= 4;
        std::uint64_t* pdpt = table(pml4[i]);
        for (unsigned j = 0; j < 512; ++j) {
            if (!(pdpt[j] & 1)) continue;
            pdpt[j] |= 4;
            if (pdpt[j] & 0x80) continue;
            std::uint64_t* pd = table(pdpt[j]);
            for (unsigned k = 0; k < 512; ++k) {
                if (!(pd[k] & 1)) continue;
                pd[k] |= 4;
                if (pd[k] & 0x80) continue;
                std::uint64_t* pt = table(pd[k]);
                for (unsigned l = 0; l < 512; ++l)
                    if (pt[l] & 1) pt[l] |= 4;
            }
        }
    }
    asm volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
}

struct [[gnu::packed]] gdt_pointer {
    std::uint16_t limit;
    std::uint64_t base;
};

// A copy of the current GDT with `added` appended (one at a time: the copy is static);
// load `extended` for the calls, then `old` again. first_added = the index of added[0].
struct extended_gdt {
    gdt_pointer old;
    gdt_pointer extended;
    unsigned first_added;
};

hv::result<extended_gdt> extend_gdt(std::initializer_list<std::uint64_t> added) {
    alignas(16) static std::uint64_t gdt[32];
    extended_gdt g{};
    asm volatile("sgdt %0" : "=m"(g.old));
    const unsigned n = (g.old.limit + 1u) / 8u;
    if (n + added.size() > 32) return hv::fail(hv::errc::no_memory, "GDT too large to extend");
    __builtin_memcpy(gdt, reinterpret_cast<const void*>(g.old.base), n * 8);
    unsigned i = n;
    for (std::uint64_t d : added) gdt[i++] = d;
    g.extended = {static_cast<std::uint16_t>(i * 8 - 1), reinterpret_cast<std::uintptr_t>(gdt)};
    g.first_added = n;
    return g;
}

// xen_version(XENVER_version) (`want`, as a 64-bit call answered it) from a
// compatibility-mode and from a conforming code segment (a GDT copy with both appended,
// loaded for the calls). The hypervisor must pick the 32-bit ABI for the first and the
// 64-bit one for the second.
hv::status odd_code_segments(std::uint64_t want) {
    constexpr std::uint64_t code32 = 0x00cf9a000000ffffull;      // DPL 0, D = 1, L = 0
    constexpr std::uint64_t conforming64 = 0x00af9e000000ffffull;  // DPL 0, type 0xe, L = 1
    auto gdt = extend_gdt({code32, conforming64});
    HV_TRY(gdt);
    const gdt_pointer old = gdt->old, extended = gdt->extended;
    const unsigned n = gdt->first_added;
    const void* stub = hc.stub(xen::hc::xen_version);
    std::uint64_t rflags;
    asm volatile("pushfq; popq %0" : "=r"(rflags));
    asm volatile("cli; lgdt %0" ::"m"(extended) : "memory");
    const std::uint64_t compat = xen_guest_compat_call(stub, n * 8, xen::xenver_version);
    const std::uint64_t conforming = xen_guest_conforming_call(stub, (n + 1) * 8, xen::xenver_version);
    const std::uint64_t conforming_page = xen_guest_conforming_call(stub, (n + 1) * 8, xen::xenver_pagesize);
    asm volatile("lgdt %0" ::"m"(old) : "memory");
    if (rflags & 0x200) hv::x86::sti();
    CHECK_OR_CRASH(static_cast<std::uint32_t>(compat) == want, "hypercall from compatibility mode: not the 32-bit ABI");
    CHECK_OR_CRASH(conforming == want && conforming_page == xen::page_size,
                   "hypercall from a conforming code segment (CPL 0) not answered");
    hv::println("xen-guest: hypercalls from a 32-bit code segment (EBX argument) and a conforming one answered");
    return {};
}

// xen_version from CPL 3, in a user code segment and in a conforming DPL 0 one: both
// -EPERM (Xen refuses hypercalls from user mode). The tables stay user-accessible
// afterwards: run last.
hv::status user_mode_calls() {
    constexpr std::uint64_t user_code = 0x00affa000000ffffull;     // DPL 3, L = 1
    constexpr std::uint64_t user_data = 0x00cff2000000ffffull;     // DPL 3
    constexpr std::uint64_t conforming64 = 0x00af9e000000ffffull;  // DPL 0, conforming, L = 1
    auto gdt = extend_gdt({user_code, user_data, conforming64});
    HV_TRY(gdt);
    const gdt_pointer old = gdt->old, extended = gdt->extended;
    const unsigned n = gdt->first_added;
    std::uint16_t cs;
    asm volatile("mov %%cs, %0" : "=r"(cs));
    std::uint64_t rflags;
    asm volatile("pushfq; popq %0" : "=r"(rflags));
    asm volatile("cli" ::: "memory");
    make_everything_user();
    namespace msr = hv::x86::msr;
    const std::uint64_t efer = hv::x86::rdmsr(0xc0000080), fs = hv::x86::rdmsr(msr::fs_base),
                        gs = hv::x86::rdmsr(msr::gs_base);
    hv::x86::wrmsr(0xc0000080, efer | 1);  // SCE
    hv::x86::wrmsr(0xc0000081, std::uint64_t{cs} << 32);
    hv::x86::wrmsr(0xc0000082, reinterpret_cast<std::uintptr_t>(&xen_guest_user_back));
    hv::x86::wrmsr(0xc0000084, 0x700);  // IF, TF, DF cleared at SYSCALL
    asm volatile("lgdt %0" ::"m"(extended) : "memory");
    std::uint64_t in_conforming = 0;
    const std::uint64_t in_user = xen_guest_user_calls(hc.stub(xen::hc::xen_version), n * 8 | 3, (n + 1) * 8 | 3,
                                                       (n + 2) * 8 | 3, &in_conforming);
    asm volatile("lgdt %0" ::"m"(old) : "memory");
    hv::x86::wrmsr(0xc0000080, efer);
    hv::x86::wrmsr(msr::fs_base, fs);
    hv::x86::wrmsr(msr::gs_base, gs);
    if (rflags & 0x200) hv::x86::sti();
    CHECK_OR_CRASH(static_cast<std::int64_t>(in_user) == -xen::err::eperm, "hypercall from ring 3 not refused");
    CHECK_OR_CRASH(static_cast<std::int64_t>(in_conforming) == -xen::err::eperm,
                   "hypercall from ring 3 in a conforming DPL 0 segment not refused");
    hv::println("xen-guest: hypercalls from ring 3 (a user segment, a conforming DPL 0 one) refused with -EPERM");
    return {};
}

}  // namespace

HV_PROGRAM(xen_pv, "xen.pv", "the Xen PV interfaces from inside a PVH guest, with tick benchmarks") {
    HV_TRY(setup_hypercalls());

    // console_io and xen_version.
    const char hello[] = "hello through console_io\n";
    CHECK_OR_CRASH(hc.console_write(hello, sizeof hello - 1) == 0, "console_io write");
    const std::int64_t version = hc.xen_version(xen::xenver_version);
    char extra[xen::extraversion_len] = {};
    CHECK_OR_CRASH(hc.xen_version(xen::xenver_extraversion, extra) == 0, "XENVER_extraversion");
    hv::println("xen-guest: xen_version {}.{}{}", version >> 16, version & 0xffff, static_cast<const char*>(extra));
    CHECK_OR_CRASH(version > 0, "XENVER_version");
    // A pointer the guest does not have: -EFAULT, nothing else.
    CHECK_OR_CRASH(hc.xen_version(xen::xenver_extraversion, reinterpret_cast<void*>(0x7fff0000)) == -xen::err::efault,
                   "XENVER_extraversion into a hole is not -EFAULT");
    HV_TRY(odd_code_segments(static_cast<std::uint64_t>(version)));

    // Event channel to itself, through the callback vector.
    HV_TRY(events.install(hc, callback_vector, hv::rt::alloc_zeroed_pages(1)));
    hv::x86::sti();
    xen::evtchn_port_t unbound = 0, local = 0;
    CHECK_OR_CRASH(hc.alloc_unbound(xen::domid_self, unbound) == 0, "EVTCHNOP_alloc_unbound (self)");
    CHECK_OR_CRASH(hc.bind_interdomain(xen::domid_self, unbound, local) == 0, "EVTCHNOP_bind_interdomain (loopback)");
    static counter loop_events;
    HV_TRY(events.on(unbound, &count_event, &loop_events));
    const std::uint64_t upcalls_before = events.upcalls();
    CHECK_OR_CRASH(hc.send(local) == 0, "EVTCHNOP_send");
    // IF = 1: the callback was taken as soon as the hypercall returned.
    CHECK_OR_CRASH(loop_events.n == 1, "loopback event not delivered through the callback vector");
    hv::println("xen-guest: event channel {} -> {} delivered by vector {:#x} ({} upcalls)", local, unbound,
                callback_vector, events.upcalls() - upcalls_before);

    // The console ring, served by the backend domain.
    const char ring_hello[] = "hello through the console ring\n";
    CHECK_OR_CRASH(gx::console_ring_write(hc, ring_hello, sizeof ring_hello - 1), "console ring");

    // Block device: ring and data pages granted to the backend domain.
    HV_TRY(grants.install(hc, hv::rt::alloc_zeroed_pages(1)));
    static gx::blk_frontend blk;
    auto* sring = hv::rt::alloc_zeroed_pages(1);
    auto* out_page = static_cast<std::uint8_t*>(hv::rt::alloc_zeroed_pages(1));
    auto* in_page = static_cast<std::uint8_t*>(hv::rt::alloc_zeroed_pages(1));
    constexpr xen::grant_ref_t out_ref = ts::first_free_ref + 1, in_ref = ts::first_free_ref + 2;
    HV_TRY(grants.grant(out_ref, ts::backend_domid, out_page, true));
    HV_TRY(grants.grant(in_ref, ts::backend_domid, in_page, false));
    if (!blk.connect(hc, events, grants, sring).ok()) return end_with(xen::shutdown_crash, "block frontend connect");
    for (unsigned i = 0; i < 4096; ++i) out_page[i] = static_cast<std::uint8_t>(i * 13 + 5);
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_write, 16, out_ref, 1) == xen::blkif_rsp_okay, "block write");
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_read, 16, in_ref, 2) == xen::blkif_rsp_okay, "block read");
    for (unsigned i = 0; i < 4096; ++i) CHECK_OR_CRASH(in_page[i] == out_page[i], "block read back differs");
    // Sector 8 of the disk as the backend filled it (byte i = i * 7 + 3).
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_read, 8, in_ref, 3) == xen::blkif_rsp_okay, "block read (initial data)");
    for (unsigned i = 0; i < 4096; ++i)
        CHECK_OR_CRASH(in_page[i] == static_cast<std::uint8_t>((8 * 512 + i) * 7 + 3), "initial disk data differs");
    // Beyond the disk, and a write through a read-only grant: refused with an error status.
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_read, 1u << 30, in_ref, 4) == xen::blkif_rsp_error, "read beyond the disk");
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_read, 0, out_ref, 5) == xen::blkif_rsp_error, "read into a read-only grant");
    hv::println("xen-guest: block device: 4 KiB written and read back, initial data checked, bad requests refused ({} notifications)",
                blk.notifications());

    // SCHEDOP_block, woken by a one-shot timer (VIRQ_TIMER) that is already due.
    xen::evtchn_bind_virq virq{xen::virq_timer, 0, 0};
    CHECK_OR_CRASH(hc.event_channel_op(xen::evtchnop::bind_virq, &virq) == 0, "EVTCHNOP_bind_virq(timer)");
    static counter timer_events;
    HV_TRY(events.on(virq.port, &count_event, &timer_events));
    // 200 µs ahead in the system time of vcpu_info: it can only fire while the vCPU blocks.
    const std::uint64_t now = gx::system_time_ns(events.shared()->vcpu[0].time);
    xen::vcpu_set_singleshot_timer timer{now + 200'000, xen::vcpu_sshottmr_future, 0};
    CHECK_OR_CRASH(hc.call(xen::hc::vcpu_op, xen::vcpuop_set_singleshot_timer, 0, reinterpret_cast<std::uintptr_t>(&timer)) == 0,
                   "VCPUOP_set_singleshot_timer");
    CHECK_OR_CRASH(timer_events.n == 0, "the timer fired early");
    CHECK_OR_CRASH(hc.sched_op(xen::schedop_block) == 0, "SCHEDOP_block");
    const std::uint64_t woke = gx::system_time_ns(events.shared()->vcpu[0].time);
    CHECK_OR_CRASH(timer_events.n == 1, "timer event not delivered");
    CHECK_OR_CRASH(woke >= now + 200'000, "woken before the deadline");
    hv::println("xen-guest: SCHEDOP_block woken by VIRQ_TIMER at or after its deadline");

    // ---- benchmarks (ticks; Bochs: one per instruction) ----
    constexpr unsigned rounds = 200;
    std::uint64_t t0 = ticks();
    for (unsigned i = 0; i < rounds; ++i) (void)hc.xen_version(xen::xenver_version);
    std::uint64_t t1 = ticks();
    hv::rt::bench_report("xen.hypercall.null", rounds, (t1 - t0) / rounds, "ticks");

    const std::uint64_t loops_before = loop_events.n;
    t0 = ticks();
    for (unsigned i = 0; i < rounds; ++i) (void)hc.send(local);
    t1 = ticks();
    CHECK_OR_CRASH(loop_events.n == loops_before + rounds, "an event of the benchmark went missing");
    hv::rt::bench_report("xen.evtchn.send_to_callback", rounds, (t1 - t0) / rounds, "ticks");

    // GNTTABOP_copy: 4 KiB from a frame of ours into a page granted to ourselves.
    constexpr xen::grant_ref_t self_ref = ts::first_free_ref + 3;
    auto* copy_dst = hv::rt::alloc_zeroed_pages(1);
    HV_TRY(grants.grant(self_ref, my_domid, copy_dst, false));
    xen::gnttab_copy op{};
    op.source.u.gmfn = reinterpret_cast<std::uintptr_t>(out_page) >> xen::page_shift;
    op.source.domid = xen::domid_self;
    op.dest.u.ref = self_ref;
    op.dest.domid = xen::domid_self;
    op.len = 4096;
    op.flags = xen::gntcopy_dest_gref;
    CHECK_OR_CRASH(hc.grant_table_op(xen::gnttabop::copy, &op, 1) == 0 && op.status == xen::gntst_okay, "GNTTABOP_copy");
    CHECK_OR_CRASH(__builtin_memcmp(copy_dst, out_page, 4096) == 0, "GNTTABOP_copy moved the wrong bytes");
    constexpr unsigned copies = 50;
    t0 = ticks();
    for (unsigned i = 0; i < copies; ++i) (void)hc.grant_table_op(xen::gnttabop::copy, &op, 1);
    t1 = ticks();
    hv::rt::bench_report("xen.gnttab.copy_4k", copies, (t1 - t0) / copies, "ticks");

    // The FIFO ABI from here on: the loopback event and the block device again.
    asm volatile("cli" ::: "memory");
    HV_TRY(events.use_fifo(hc, hv::rt::alloc_zeroed_pages(1), hv::rt::alloc_zeroed_pages(1)));
    asm volatile("sti" ::: "memory");
    const std::uint64_t fifo_before = loop_events.n, blk_irqs_before = blk.notifications();
    CHECK_OR_CRASH(hc.send(local) == 0, "EVTCHNOP_send (FIFO)");
    CHECK_OR_CRASH(loop_events.n == fifo_before + 1, "loopback event not delivered through a FIFO queue");
    for (unsigned i = 0; i < 4096; ++i) out_page[i] = static_cast<std::uint8_t>(i * 31 + 1);
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_write, 24, out_ref, 6) == xen::blkif_rsp_okay, "block write (FIFO)");
    CHECK_OR_CRASH(blk.transfer(hc, xen::blkif_op_read, 24, in_ref, 7) == xen::blkif_rsp_okay, "block read (FIFO)");
    for (unsigned i = 0; i < 4096; ++i) CHECK_OR_CRASH(in_page[i] == out_page[i], "block read back differs (FIFO)");
    t0 = ticks();
    for (unsigned i = 0; i < rounds; ++i) (void)hc.send(local);
    t1 = ticks();
    CHECK_OR_CRASH(loop_events.n == fifo_before + 1 + rounds, "an event of the FIFO benchmark went missing");
    hv::rt::bench_report("xen.evtchn.fifo.send_to_callback", rounds, (t1 - t0) / rounds, "ticks");
    hv::println("xen-guest: FIFO event ABI: loopback event and block device through event queues ({} block notifications)",
                blk.notifications() - blk_irqs_before);

    HV_TRY(user_mode_calls());
    hv::println("xen-guest: all checks passed; {} upcalls", events.upcalls());
    return end_with(xen::shutdown_poweroff, "");
}

HV_PROGRAM(xen_crash, "xen.crash", "SCHEDOP_shutdown(crash): the hypervisor must report a failed run") {
    HV_TRY(setup_hypercalls());
    return end_with(xen::shutdown_crash, "deliberate crash");
}

namespace {

// xorshift64*: deterministic for a seed.
struct prng {
    std::uint64_t s;
    std::uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545f4914f6cdd1dull;
    }
    std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// Calls that would make the hostile guest hurt only itself (end, sleep forever, move
// its own memory or event delivery under its feet): their refusal paths are covered by
// unit-io; here they are left out so the run measures the hypervisor, not the guest.
bool self_harming(std::uint64_t nr, std::uint64_t cmd) {
    const auto c = cmd & 0xffffffffu;
    switch (nr) {
    case xen::hc::sched_op: return c == xen::schedop_shutdown || c == xen::schedop_block;
    case xen::hc::hvm_op: return c == xen::hvmop_set_param;
    case xen::hc::memory_op: return (cmd & xen::xenmem_cmd_mask) == xen::xenmem_add_to_physmap;
    case xen::hc::vcpu_op: return c == xen::vcpuop_register_vcpu_info;
    case xen::hc::event_channel_op: return c == xen::evtchnop::init_control || c == xen::evtchnop::expand_array;
    case xen::hc::console_io: return c == xen::consoleio_write;  // would print random bytes
    default: return false;
    }
}

}  // namespace

HV_PROGRAM(xen_hostile, "xen.hostile", "every hypercall number with random arguments and pointers: all answered") {
    HV_TRY(setup_hypercalls());
    std::uint64_t seed = 0x5eed1b5;
    if (auto v = hv::cmdline_value(ctx.cmdline, "seed")) {
        if (auto n = hv::parse_u64(*v)) seed = *n;
    }
    prng rng{seed};
    auto* scratch = static_cast<std::uint8_t*>(hv::rt::alloc_zeroed_pages(2));
    const auto scratch_at = reinterpret_cast<std::uintptr_t>(scratch);
    auto pointer_or_value = [&]() -> std::uint64_t {
        switch (rng.below(8)) {
        case 0: case 1: case 2: return scratch_at + rng.below(2 * 4096);  // mostly valid, may cross the end
        case 3: return rng.below(64);                                      // small numbers (commands, ports)
        case 4: return rng.next();                                         // anything (mostly non-canonical)
        case 5: return 0;
        case 6: return 0x7fff0000 + rng.below(0x10000);                    // a hole
        default: return 0xffff800000000000ull + rng.below(1u << 20);       // canonical, unmapped
        }
    };
    constexpr unsigned calls = 3000;
    unsigned zero = 0, positive = 0, errors = 0, skipped = 0, numbers = 0;
    std::uint64_t error_kinds = 0;  // bit e: -e seen (e < 64)
    for (unsigned i = 0; i < calls; ++i) {
        // Every number 0..63 in turn on even calls; on odd ones a number the hypervisor
        // implements (deeper paths), and any 64-bit number now and then.
        static constexpr unsigned implemented[] = {xen::hc::memory_op,      xen::hc::set_timer_op, xen::hc::xen_version,
                                                   xen::hc::console_io,     xen::hc::grant_table_op, xen::hc::vcpu_op,
                                                   xen::hc::sched_op,       xen::hc::event_channel_op, xen::hc::hvm_op};
        std::uint64_t nr = i % 2 ? implemented[rng.below(sizeof implemented / sizeof implemented[0])] : (i / 2) % 64;
        if (i % 97 == 96) nr = rng.next();
        std::uint64_t a[5];
        for (auto& x : a) x = pointer_or_value();
        if (rng.below(2)) a[0] = rng.below(16);  // a plausible sub-command half the time
        for (unsigned b = 0; b < 2 * 4096; b += 8) {
            std::uint64_t w = rng.below(4) == 0 ? rng.below(64) : rng.next();
            __builtin_memcpy(scratch + b, &w, 8);
        }
        if (self_harming(nr, a[0])) {
            ++skipped;
            continue;
        }
        ++numbers;
        const std::int64_t rc = hc.call_raw(nr, a[0], a[1], a[2], a[3], a[4]);
        if (rc == 0) ++zero;
        else if (rc > 0) ++positive;
        else if (rc >= -4095) {
            ++errors;
            if (-rc < 64) error_kinds |= std::uint64_t{1} << -rc;
        } else {
            hv::println("xen-guest: hypercall {:#x}({:#x}, {:#x}, {:#x}) answered {:#x}: not a Xen errno", nr, a[0], a[1],
                        a[2], static_cast<std::uint64_t>(rc));
            return end_with(xen::shutdown_crash, "an answer outside the Xen ABI");
        }
    }
    // Still answering after all that.
    CHECK_OR_CRASH(hc.xen_version(xen::xenver_version) > 0, "the hypervisor stopped answering");
    hv::println("xen-guest: hostile: {} calls answered ({} zero, {} positive, {} errno; errnos seen {:#x}), {} self-harming skipped, seed {:#x}",
                numbers, zero, positive, errors, error_kinds, skipped, seed);
    CHECK_OR_CRASH(zero + positive + errors == numbers, "an answer went missing");
    return end_with(xen::shutdown_poweroff, "");
}
