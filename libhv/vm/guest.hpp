// A guest (a domain): its physical address space, the nested tables built from it, its
// vCPUs on whichever vendor this CPU has, and the exit handling every guest shares.
//
//   physical_cpu    VMX or SVM, probed and enabled once per CPU (vm::enable)
//   guest           guest_ram (regions → host pages) ──map──▶ EPT or NPT root
//                   vcpu[i] ── vmx/svm vcpu_arch (VPID/ASID first_tag + i, nested root)
//                   npf handler: RAM not yet mapped → map it; MMIO, hole, ROM write →
//                   emulate the instruction through linear_memory (devices, open bus)
//                   or, with config.mmu = shadow, no EPT/NPT: a shadow_mmu per vCPU
//                   (GVA → host-physical from the guest's own tables) fed by #PF, MOV
//                   CR0/CR3/CR4 and INVLPG exits (see on_shadow_* in guest.cpp)
//
// Policies (devices, PV I/O, shadow paging) add handlers with vcpu(i).on(...) and reach
// the guest from a handler with guest::of(v). Metal only; the logic it composes
// (guest_memory, page_table, translate_gva, linear_memory, insn) is host-tested.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/core/result.hpp"
#include "libhv/core/spinlock.hpp"
#include "libhv/cpu/io_emul.hpp"
#include "libhv/cpu/svm/backend.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/cpu/vmx/backend.hpp"
#include "libhv/mem/page_allocator.hpp"
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/page_table.hpp"
#include "libhv/mmu/shadow.hpp"
#include "libhv/vm/cpu_model.hpp"
#include "libhv/vm/linear_memory.hpp"
#include "libhv/vm/nested_shootdown.hpp"

namespace hv::vm {

// Host-physical memory on metal: identity-mapped, single zeroed frames from libhv/mem.
class zeroed_frames {
public:
    explicit zeroed_frames(mem::page_allocator& pages) : pages_{&pages} {}
    [[nodiscard]] result<std::uint64_t> alloc_page();
    void free_page(std::uint64_t pa);

private:
    mem::page_allocator* pages_;
};
using host_memory = mmu::direct_map_memory<mmu::page_allocator_ref>;
using guest_ram = mmu::guest_memory<host_memory>;

// One per physical CPU: the vendor it has, enabled (VMXON / EFER.SVME).
struct physical_cpu {
    cpu::vendor vendor = cpu::vendor::vmx;
    unsigned index = 0;  // rt::smp's CPU number (0 = BSP)
    vmx::cpu_context vmx{};
    svm::cpu_context svm{};
    [[nodiscard]] unsigned maxphyaddr() const { return vendor == cpu::vendor::vmx ? vmx.maxphyaddr : svm.maxphyaddr; }
};
// Probes CPUID for VMX, then SVM; an error names why neither is usable.
[[nodiscard]] status enable(physical_cpu& pc, cpu::page_alloc_fn alloc);

// libhv's own CPUID leaf: where a vCPU runs. EAX = the physical CPU's number (rt::smp,
// 0 = BSP), EBX = its APIC ID, ECX = the vCPU's index, EDX = "LHv\0" (0x00764c48).
inline constexpr std::uint32_t cpuid_where_leaf = 0x40000f00;
inline constexpr std::uint32_t cpuid_where_signature = 0x00764c48;

// nested: EPT/NPT from guest memory. shadow: no EPT/NPT; hardware walks shadow tables
// built from the guest's own (one vCPU per guest for now: the shadows of different vCPUs
// would have to track each other's table writes).
enum class paging : std::uint8_t { nested, shadow };

struct config {
    unsigned vcpus = 1;
    paging mmu = paging::nested;
    // Nested: map RAM pages at their first access instead of all at start().
    bool map_on_demand = false;
    // VPID (VMX) / ASID (SVM) of vCPU 0; vCPU i uses first_tag + i. Distinct per guest.
    std::uint16_t first_tag = 1;
    // VMX: virtualize CR8 with CR8-load/store exits even where the CPU has a TPR shadow
    // (tests that path; the default uses the shadow when offered).
    bool cr8_exits = false;
    // VMX: preempt through the host LAPIC timer even where the CPU has the
    // VMX-preemption timer (tests that path; SVM always uses the host timer).
    bool host_timer_preemption = false;
};

// What the nested-fault handler did, per guest.
struct nested_stats {
    std::uint64_t mapped_on_demand = 0;
    std::uint64_t emulated = 0;        // MMIO or hole accesses run through the emulator
    std::uint64_t violations = 0;      // writes to ROM or to write-protected RAM
    // Spread guests (see guest::place): nested flushes a vCPU ran on its own CPU at entry
    // for a change made on another CPU, and kick IPIs sent to take a vCPU out of guest
    // mode before a revoked translation could be used again.
    std::uint64_t remote_flushes = 0;
    std::uint64_t shootdown_kicks = 0;
};

// What the shadow-paging exit handlers did, per guest.
struct shadow_exit_stats {
    std::uint64_t fills = 0;            // #PF fixed by filling the shadow
    std::uint64_t injected = 0;         // #PF reflected to the guest
    std::uint64_t table_writes = 0;     // writes to write-tracked guest tables (faults)
    std::uint64_t unshadowed = 0;       // ... after which the table stopped being shadowed
    std::uint64_t wp0_writes = 0;       // supervisor writes to read-only pages with CR0.WP = 0
    std::uint64_t mmio = 0;             // accesses to MMIO or holes, emulated
    std::uint64_t cr3_writes = 0;
    std::uint64_t invlpg = 0;
    std::uint64_t flushes = 0;          // full TLB flushes asked of the backend
};

// Shadow tables kept per vCPU (beyond: clock eviction).
inline constexpr std::size_t shadow_max_pages = 512;
using shadow_pages = mmu::shadow_mmu<guest_ram, host_memory, shadow_max_pages>;

class guest;

// Called for a write to ROM or to write-protected RAM, before the default (emulate the
// write: ROM writes vanish, protected RAM is written). Return true when the hook
// handled the exit itself (e.g. skipped the instruction, injected, or stopped the guest).
struct violation_hook {
    void* ctx = nullptr;
    bool (*fn)(guest& g, cpu::vcpu& v, std::uint64_t gpa, void* ctx) = nullptr;
};

class guest {
public:
    static constexpr unsigned max_vcpus = 8;
    static constexpr unsigned max_devices = 16;
    static constexpr std::size_t vcpu_stack_bytes = 32 * 1024;
    static constexpr unsigned max_protected = 8;
    static constexpr unsigned max_placed = 16;

    // `host` backs the guest's RAM and its tables; it must outlive the guest.
    explicit guest(host_memory& host);
    guest(const guest&) = delete;
    guest& operator=(const guest&) = delete;

    // Before anything else. Allocates VMCS/VMCBs, vCPU stacks and the nested root.
    [[nodiscard]] status init(physical_cpu& pc, const config& cfg, cpu::page_alloc_fn alloc);

    // ---- address space (before start, or later for what guest_ram allows) ----
    [[nodiscard]] guest_ram& memory() { return ram_; }
    // A device region; its accesses reach `h` through the instruction emulator.
    [[nodiscard]] status add_mmio(std::uint64_t gpa, std::uint64_t size, const mmio_handler& h);
    // RAM pages whose guest writes exit (reported to the violation hook), or not any more.
    [[nodiscard]] status write_protect(std::uint64_t gpa, std::uint64_t size, bool protect);
    void set_violation_hook(const violation_hook& h) { violation_ = h; }
    // Port I/O of every vCPU (IN/OUT and string I/O through the guest's paging). Without
    // ports, reads return all ones and writes vanish.
    void set_ports(const cpu::io_ports& p) { ports_ = p; }

    // ---- the virtual CPU (cpu_model.hpp); a device model or policy adjusts it before start ----
    [[nodiscard]] cpu_view& cpu_features() { return view_; }
    [[nodiscard]] msr_file& msrs(unsigned vcpu) { return msrs_[vcpu]; }
    // Let the guest reach an MSR without exits (only MSRs the hardware switches or libhv
    // does not use), or intercept it again.
    void pass_through_msr(std::uint32_t msr, bool read, bool write);
    // The default handlers, public so a policy can chain to them (e.g. a Xen ABI that
    // answers its own CPUID leaves and MSRs first).
    static void on_xsetbv(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_cpuid(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_msr_read(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_msr_write(cpu::vcpu& v, const cpu::exit_info& e);

    // A hypervisor-owned (or another guest's) host page `hpa` seen at the 4 KiB guest page
    // `gpa` in place of what guest memory has there (RAM, ROM or nothing): Xen's
    // shared_info and grant-table frames, mapped grants. The nested tables change at once
    // (every vCPU flushed); the page underneath stays allocated and comes back with
    // restore_page. host_pointer() sees placed pages; linear() and the npf path do not
    // (nobody emulates MMIO in them). Placing over a placed page replaces it.
    [[nodiscard]] status place_page(std::uint64_t gpa, std::uint64_t hpa, bool writable);
    [[nodiscard]] status restore_page(std::uint64_t gpa);
    // Nested entries for [gpa, gpa + size) now rather than at first touch (map_on_demand;
    // nothing to do otherwise or under shadow paging): for the pages an event's delivery
    // touches before any instruction does (a real-mode IVT), whose nested fault would
    // interrupt the delivery (Bochs 2.7's SVM leaves EXITINTINFO uninitialised for a
    // real-mode INTn then, and libhv would reinject what it finds).
    [[nodiscard]] status map_now(std::uint64_t gpa, std::uint64_t size);
    // Guest-physical memory as the guest sees it now (mmu::physical_memory): placed
    // pages first, then RAM (and ROM for reads). For hypercall argument copies.
    [[nodiscard]] void* host_pointer(std::uint64_t gpa, bool for_write) const;
    // The vCPU's remembered walks over memory() (mmu::gva_cache keyed by
    // memory().generation()), shared by linear(v) and instruction fetches.
    [[nodiscard]] mmu::gva_cache& walks(const cpu::vcpu& v) { return translations_[v.id()]; }
    // Changes whenever a pointer host_pointer() gave may have changed (RAM backing
    // released, a page placed or restored): what a gva_cache over it is keyed by.
    [[nodiscard]] std::uint64_t host_pointer_generation() const { return ram_.generation() + placements_; }
    // The host-physical address of a hypervisor object (for place_page).
    [[nodiscard]] static std::uint64_t host_physical(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

    // ---- vCPUs ----
    [[nodiscard]] unsigned vcpu_count() const { return count_; }
    [[nodiscard]] cpu::vcpu& vcpu(unsigned i) { return vcpus_[i]; }
    // Builds the nested tables (unless map_on_demand) and installs the npf handler;
    // then every vCPU's state must be set and the guest scheduled.
    [[nodiscard]] status start();
    // Shadow paging: the vCPUs' shadow roots are built here from their state (CR0/CR3/
    // CR4/EFER), so set it first.
    [[nodiscard]] status schedule_on(cpu::scheduler& s);
    // Ends every vCPU of the guest (from any of them: the others stop when next resumed).
    void stop_all(const char* why);

    // ---- several physical CPUs (after init, before start) ----
    // vCPU i runs only on physical CPU placement[i]: its VMCS/VMCB is used with the
    // context cpus[placement[i]] (VMXON region / host save area of that CPU) and never
    // migrates. When the vCPUs span more than one CPU the guest becomes "spread": one big
    // lock (big_lock()) covers everything the guest's vCPUs do in the hypervisor (exit
    // handlers, device model, memory map, scheduling decisions); it is released only
    // while a vCPU is in guest mode (a cpu::exit_guard on each vCPU: the backend's exit
    // loop takes it at every exit and releases it just before every entry). A vCPU on another CPU that a change concerns (an
    // interrupt, a SIPI, a stop) gets a kick IPI: it leaves guest mode, or its idle CPU
    // wakes, and its scheduler re-checks.
    // Nested-table changes (map on demand, write_protect, place_page, restore_page) are
    // made under the big lock by whichever CPU handles the exit; every vCPU flushes its
    // nested TLB entries on its own CPU before its next entry (a per-guest generation;
    // INVEPT and ASID flushes act on the executing CPU only). A change that takes a
    // translation or a permission away also kicks each vCPU in guest mode on another CPU
    // and waits until it has left guest mode, so nothing uses the old entry once the
    // change returns; one that only adds (a mapping, write permission) is left to the next
    // entry (the stale entry can only cause one more nested fault, which finds the page
    // mapped and re-enters). See nested_shootdown.hpp.
    [[nodiscard]] status place(std::span<physical_cpu> cpus, std::span<const unsigned> placement);
    [[nodiscard]] bool spread() const { return spread_; }
    [[nodiscard]] unsigned pcpu_of(unsigned vcpu) const { return pcpu_[vcpu]; }
    [[nodiscard]] spinlock& big_lock() { return big_lock_; }
    // vCPU i to per_pcpu[pcpu_of(i)].
    [[nodiscard]] status schedule_on(std::span<cpu::scheduler> per_pcpu);
    // Under the big lock: kick every vCPU on another CPU than `pcpu` that has something
    // to do (see above). Also clears the kick marks of `pcpu`'s own vCPUs.
    void kick_others(unsigned pcpu);
    // Does a vCPU on `pcpu` have something to run (not finished, not asleep)? Under the lock.
    [[nodiscard]] bool runnable_on(unsigned pcpu) const;
    // Called under the big lock after each exit of a spread guest (a device model that
    // must know which vCPU's exit it handles).
    void set_exit_hook(const cpu::entry_hook& h) { exit_hook_ = h; }

    // ---- for handlers ----
    static guest& of(cpu::vcpu& v) { return v.owner<guest>(); }
    // The hypercall ABI attached to this guest (vm::xen_hvm), for its exit handlers to
    // reach from a vCPU in two loads. nullptr: none.
    void set_hypercall_owner(void* owner) { hypercall_owner_ = owner; }
    [[nodiscard]] void* hypercall_owner() const { return hypercall_owner_; }
    // The hypercall convention of the vCPU's current mode (both backends read it cheaply).
    static cpu::call_mode call_mode(cpu::vcpu& v) { return v.ops().read_call_mode(v); }
    [[nodiscard]] cpu::vendor vendor() const { return cpu_->vendor; }
    // The guest's paging registers as vCPU v has them now (loads them, CS/SS rights and the
    // segment bases from the VMCS/VMCB: backend_ops::load_memory_state).
    [[nodiscard]] mmu::guest_paging paging_of(cpu::vcpu& v);
    // The same registers without the rest of the state (segments, descriptor tables), in
    // one backend call (ops.load_paging_state: CR0/CR3/CR4 as the guest sees them, EFER,
    // SS access rights into v.state) for hypercall argument copies and instruction fetches.
    [[nodiscard]] static mmu::guest_paging paging_registers(cpu::vcpu& v);
    [[nodiscard]] mmu::paging_features features() const { return {cpu_->maxphyaddr(), true}; }
    // v's linear address space (after paging_of / load_state): RAM, devices, open bus.
    [[nodiscard]] linear_memory<host_memory> linear(cpu::vcpu& v);
    // The same over paging registers the caller already has (paging_registers, paging_of).
    [[nodiscard]] linear_memory<host_memory> linear(cpu::vcpu& v, const mmu::guest_paging& paging);
    // Fetch, decode and run the instruction at v's RIP against linear(v), then resume.
    // Faults are injected; an instruction the emulator does not run fails the vCPU.
    // From the nested-fault handler, `exit` (a data access's final translation) saves the
    // operand's page walk (linear_memory::set_exit_address).
    void emulate(cpu::vcpu& v, const cpu::npf_detail* exit = nullptr);
    [[nodiscard]] std::uint64_t nested_root() const { return nested_root_; }
    [[nodiscard]] paging mmu() const { return cfg_.mmu; }
    // Shadow paging: vCPU i's shadow MMU and what the handlers did.
    [[nodiscard]] shadow_pages& shadow(unsigned i) { return *shadows_[i]; }
    [[nodiscard]] const shadow_exit_stats& shadow_stats() const { return shadow_stats_; }
    [[nodiscard]] const nested_stats& stats() const { return stats_; }
    [[nodiscard]] const stray_accesses& strays() const { return strays_; }
    // Table pages the nested tables use now.
    [[nodiscard]] std::size_t nested_table_pages() const;

private:
    static void on_npf(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_io(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_shadow_pf(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_shadow_cr(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_shadow_invlpg(cpu::vcpu& v, const cpu::exit_info& e);
    // code_reader::write: a store to v's linear memory (linear(v); watched under shadow paging).
    static status store_linear(cpu::vcpu& v, std::uint64_t linear, const void* src, std::size_t n, void*);
    // The guest's paging registers changed (CR0/CR3/CR4): the shadow root for them.
    [[nodiscard]] status sync_shadow(cpu::vcpu& v, std::uint64_t cr3, cpu::tlb_flush at_least);
    void shadow_flush(cpu::vcpu& v, cpu::tlb_flush what, std::uint64_t linear = 0);
    // MOV to/from CR, CLTS, LMSW at RIP, for SVM exits without decode assists.
    [[nodiscard]] bool decode_cr_access(cpu::vcpu& v, cpu::cr_detail& out);
    [[nodiscard]] status map_nested(std::uint64_t gpa, std::uint64_t hpa, std::uint64_t size, bool writable);
    [[nodiscard]] status apply_protection(std::uint64_t gpa, std::uint64_t size, bool protect);
    [[nodiscard]] bool is_write_protected(std::uint64_t gpa) const;
    enum class nested_change : std::uint8_t { added, revoked };
    // After a change to the nested tables (see place()).
    void nested_changed(nested_change c);
    hv::result<insn::step> execute_watched(cpu::vcpu& v, insn::guest_state& is, linear_memory<host_memory>& mem,
                                           const mmu::guest_paging& paging);
    static void spread_after_exit(cpu::vcpu& v, void* ctx);
    static void spread_before_entry(cpu::vcpu& v, void* ctx);
    static void spread_external_interrupt(cpu::vcpu& v, const cpu::exit_info& e);

    host_memory* host_;
    guest_ram ram_;
    mmu::page_table<mmu::ept_format, host_memory> ept_;
    mmu::page_table<mmu::x86_64_format, host_memory> npt_;
    physical_cpu* cpu_ = nullptr;
    config cfg_{};
    unsigned count_ = 0;
    std::uint64_t nested_root_ = 0;
    cpu::vcpu vcpus_[max_vcpus];
    vmx::vcpu_arch vmx_[max_vcpus];
    svm::vcpu_arch svm_[max_vcpus];
    mmio_handler devices_[max_devices]{};
    unsigned device_count_ = 0;
    struct placed_page {
        std::uint64_t gpa, hpa;
        bool writable;
    };
    [[nodiscard]] const placed_page* placed_at(std::uint64_t gpa) const;

    placed_page placed_[max_placed]{};
    unsigned placed_count_ = 0;
    mmu::address_range protected_[max_protected]{};
    unsigned protected_count_ = 0;
    violation_hook violation_{};
    cpu::io_ports ports_{};
    cpu_view view_{};
    msr_file msrs_[max_vcpus];
    mmu::gva_cache translations_[max_vcpus];  // linear(v)'s, per vCPU
    insn::decode_memo decoded_[max_vcpus];     // emulate(v)'s last instruction, per vCPU
    const mmu::guest_region* last_device_[max_vcpus] = {};  // linear(v)'s last MMIO region
    nested_stats stats_{};
    stray_accesses strays_{};
    shadow_pages* shadows_[max_vcpus] = {};
    // Consecutive tracked-table writes to one frame (see on_shadow_pf).
    struct write_streak {
        std::uint64_t frame = ~std::uint64_t{0};
        unsigned count = 0;
    } streak_[max_vcpus];
    shadow_exit_stats shadow_stats_{};
    // Several physical CPUs.
    void* stacks_[max_vcpus] = {};
    unsigned pcpu_[max_vcpus] = {};
    bool spread_ = false;
    bool in_guest_[max_vcpus] = {};
    bool kicked_[max_vcpus] = {};
    nested_shootdown shootdown_;
    void* hypercall_owner_ = nullptr;
    std::uint64_t placements_ = 0;  // place_page and restore_page calls (host_pointer_generation)
    spinlock big_lock_;
    cpu::exit_guard spread_guard_{};
    cpu::entry_hook exit_hook_{};
};
static_assert(nested_shootdown::max_vcpus >= guest::max_vcpus);

} // namespace hv::vm
