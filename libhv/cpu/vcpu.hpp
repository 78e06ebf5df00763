// The vendor-neutral vCPU.
//
//   scheduler ──resume──▶ vcpu fiber: run loop ──ops.run──▶ backend loop ──▶ guest (VMX or SVM)
//        ▲                    │                  ◀── exit: decode, dispatch() ──┘
//        │                    │                      = log + handlers[reason](vcpu, exit)
//        │                    │                      nothing for the run loop: re-enter at once
//        └──────yield─────────┤◀─ events, an entry hook, yield, halt or stop: back here
//                             └─ halted and nothing to wake it: yield
//
// Every vCPU runs on its own hv::fiber, so one physical CPU runs several vCPUs
// cooperatively. A vendor backend (vmx/, svm/, or a fake in host tests) supplies
// `backend_ops`: it owns the VMCS/VMCB behind `arch`, builds it from `state` in
// prepare() (running the software entry checks), and runs the guest in its own loop:
// each exit decoded (cpu::decode_hot / decode) and handed to vcpu::dispatch(), which
// logs it and calls its handler; while nothing needs the run loop below, the backend
// re-enters at once. Handlers are written once against exit_info and the vcpu API;
// they return to resume the guest, after calling skip(), inject_*() or stop().
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include "libhv/core/fiber.hpp"
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/core/spinlock.hpp"
#include "libhv/cpu/call_mode.hpp"
#include "libhv/cpu/exit.hpp"
#include "libhv/cpu/state.hpp"

namespace hv::cpu {

// Events waiting for a vCPU (the injection API's state). Priority: an event whose
// delivery an exit interrupted, then exceptions, then NMI, then the highest pending
// interrupt vector. Interrupts and NMIs wait for the guest to be open to them; the
// decision asks the backend for a window exit meanwhile.
class event_queue {
public:
    event_queue() = default;
    event_queue(const event_queue&) = delete;  // any_ may point into the owning vCPU
    event_queue& operator=(const event_queue&) = delete;

    void raise_interrupt(std::uint8_t vector) {
        irr_[vector / 64] |= 1ull << (vector % 64);
        *any_ = true;
    }
    void raise_nmi() { nmi_ = *any_ = true; }
    // A second exception while one waits makes #DF (SDM table 6-5, contributory and
    // page-fault classes simplified to "any"); a third is a triple fault.
    void raise_exception(std::uint8_t vector, std::optional<std::uint32_t> error_code = std::nullopt);
    // Re-deliver an event an exit interrupted (exit_info::interrupted).
    void requeue(const event& e) {
        reinject_ = e;
        *any_ = true;
    }

    bool interrupt_pending() const { return irr_[0] | irr_[1] | irr_[2] | irr_[3]; }
    bool nmi_pending() const { return nmi_; }
    bool triple_fault() const { return triple_; }
    // One flag for the exit path: set by every raise, recomputed when next() takes an event.
    bool empty() const { return !*any_; }
    // Keep that flag at `flag` from now on (a vCPU's, tested with its other loop flags in
    // one compare by the exit path).
    void keep_flag_at(bool* flag) {
        *flag = *any_;
        any_ = flag;
    }

    struct decision {
        event inject;             // valid: inject this now
        bool irq_window = false;  // ask for an exit once interrupts open
        bool nmi_window = false;  // ask for an exit once NMIs unblock
        // Priority class (1..15) of an interrupt the source holds back only because of the
        // guest's TPR: ask for an exit when the guest lowers CR8 below it (VMX TPR
        // threshold, SVM V_IRQ with V_INTR_PRIO). 0: none.
        std::uint8_t tpr_threshold = 0;
    };
    // Removes the event it returns from the queue.
    decision next(bool interrupts_open, bool nmi_blocked);

private:
    std::uint64_t irr_[4] = {};
    bool nmi_ = false;
    bool triple_ = false;
    bool own_any_ = false;
    bool* any_ = &own_any_;
    event exception_{};
    event reinject_{};
};

class vcpu;

// Which of a vCPU's TLB entries (its VPID/ASID) to drop before its next entry.
enum class tlb_flush : std::uint8_t {
    address,     // the translations of one linear address (a backend may drop more)
    non_global,  // what a guest MOV to CR3 drops
    all,         // globals and paging-structure caches too
};

// What a vendor backend provides. All run on the vCPU's fiber.
struct backend_ops {
    // Build the VMCS/VMCB from v.state and check it; an error ends the vCPU with its message.
    status (*prepare)(vcpu& v);
    // Write back the state v.take_dirty() names, inject (if valid), set the window
    // requests and enter the guest. Each exit is decoded into v.log.slot() and handed
    // to v.dispatch(slot); while dispatch() returns true the backend writes back what
    // the handler dirtied and re-enters without returning. A refused entry is
    // dispatched as an exit (entry_refused) too. GPRs live in v.state.regs throughout;
    // RIP and interruptibility are refreshed at every exit, RSP and RFLAGS at every exit
    // but the hot ones (CPUID, hypercall, RDMSR/WRMSR, I/O but string I/O, HLT), whose
    // handlers ask for them with v.load_flags() (load_state and load_memory_state
    // include it), and when the loop returns.
    // d == nullptr (the hot path): nothing to inject and no window wanted.
    // A backend that enters once per call can use run_once<its enter>.
    void (*run)(vcpu& v, const event_queue::decision* d);
    // Can an external interrupt be delivered now (RFLAGS.IF = 1, no STI/MOV SS shadow)?
    bool (*interrupts_open)(const vcpu& v);
    // Length of the instruction at RIP when the exit did not say (SVM without NRIPS).
    result<std::uint8_t> (*instruction_length)(vcpu& v);
    // CR0/CR4 as the guest sees them, and a guest write of one (the backend keeps the
    // fixed bits and shadows; CR0.PG with EFER.LME switches IA-32e mode). A write the
    // architecture refuses returns an error: the caller injects #GP(0).
    std::uint64_t (*read_cr)(vcpu& v, unsigned cr);
    status (*write_cr)(vcpu& v, unsigned cr, std::uint64_t value);
    // Slow paths (instruction emulation, hypercall arguments, reports) that need the
    // whole architectural state: copy CR0/CR3/CR4 as the guest sees them, EFER, the
    // segment registers, GDTR/IDTR from the VMCS/VMCB into v.state.
    void (*load_state)(vcpu& v);
    // Invalidate what the TLBs hold for this vCPU's nested (EPT/NPT) translations,
    // before its next entry (INVEPT single-context / the VMCB's ASID flush).
    void (*flush_nested)(vcpu& v);
    // The part of load_state that says the operating mode and CPL (EFER, CS and SS
    // access rights), for hot exits such as hypercalls; nullptr: use load_state.
    void (*load_mode)(vcpu& v) = nullptr;
    // The guest's task priority as the backend virtualizes CR8 (the CPU never sees a
    // guest's TPR: VMX TPR shadow or CR8 exits, SVM V_INTR_MASKING), in local-APIC TPR
    // form: CR8 = bits 7:4. SVM keeps only bits 7:4. A MOV to CR8 sets 7:4, clears 3:0.
    // nullptr (fake backends): no TPR.
    std::uint8_t (*read_tpr)(const vcpu& v) = nullptr;
    void (*write_tpr)(vcpu& v, std::uint8_t tpr) = nullptr;
    // The part of load_state a guest memory access depends on (instruction emulation,
    // string I/O, hypercall arguments): CR0/CR3/CR4 as the guest sees them, EFER, CS and
    // SS access rights, the bases of ES, CS, SS, DS, FS, GS; in 64-bit code (EFER.LMA and
    // CS.L) only those of FS and GS, the others (ignored as 0 there) keep their old values
    // in v.state. nullptr: use load_state.
    void (*load_memory_state)(vcpu& v) = nullptr;

    // ---- shadow paging (vmx/svm vcpu_arch::shadow_paging set before prepare) ----
    // The CR3 hardware walks becomes `root` (a shadow table) while the guest keeps seeing
    // `guest_cr3` (read_cr(v, 3), load_state). CR0/CR4 keep the guest's values in view
    // while the real ones have PG, WP and PAE forced and PCIDE refused.
    void (*set_paging_root)(vcpu& v, std::uint64_t guest_cr3, std::uint64_t root) = nullptr;
    void (*flush_tlb)(vcpu& v, tlb_flush what, std::uint64_t linear) = nullptr;
    // EFER as the guest writes it (WRMSR, already checked by the caller); LMA stays the
    // CPU's. Under shadow paging the real EFER keeps NXE set.
    status (*write_efer)(vcpu& v, std::uint64_t value) = nullptr;
    // The hypercall convention (64-bit or not, CPL 0 or not) from the fewest reads the
    // backend can do (call_mode.hpp). nullptr: from load_mode (or load_state).
    call_mode (*read_call_mode)(vcpu& v) = nullptr;
    // What a guest page walk depends on, into v.state in one call: CR0, CR3, CR4 as the
    // guest sees them (read_cr), EFER, SS access rights (the CPL), RFLAGS (AC, for SMAP).
    // nullptr: load_mode and read_cr.
    void (*load_paging_state)(vcpu& v) = nullptr;
    // RSP and RFLAGS of this exit into v.state (see run), but not those a handler marked
    // dirty (its values stay). nullptr: v.state always has them.
    void (*load_flags)(vcpu& v) = nullptr;
};

// Reads guest-linear memory for the vCPU layer (instruction fetch when an exit gave no
// length). Without one, linear == host address (the identity-mapped smoke guests).
// `write` (optional): stores to guest-linear memory as a guest write would (under shadow
// paging, watched for the guest's page tables), for a backend that emulates real-mode
// event delivery (VMX vm86: the pushes of FLAGS, CS, IP). nullptr: that backend refuses.
struct code_reader {
    void* ctx = nullptr;
    status (*read)(vcpu& v, std::uint64_t linear, void* dst, std::size_t n, void* ctx) = nullptr;
    status (*write)(vcpu& v, std::uint64_t linear, const void* src, std::size_t n, void* ctx) = nullptr;
};

// An interrupt controller model (e.g. a local APIC in libhv/dev) the vCPU takes external
// interrupts from, besides inject_interrupt(). acknowledge() is called only when the
// interrupt is injected in this entry, so the model's in-service state stays exact.
struct interrupt_source {
    void* ctx = nullptr;
    bool (*pending)(void* ctx) = nullptr;
    std::optional<std::uint8_t> (*acknowledge)(void* ctx) = nullptr;
    // Priority class (1..15) of the highest interrupt held back only by the TPR, 0: none
    // (optional; see event_queue::decision::tpr_threshold).
    std::uint8_t (*tpr_masked)(void* ctx) = nullptr;
};

// Called before every entry (device deadlines, INIT/SIPI/NMI lines of a model).
struct entry_hook {
    void* ctx = nullptr;
    void (*fn)(vcpu& v, void* ctx) = nullptr;
};

// Brackets guest mode for a vCPU whose hypervisor-side work must be serialized with
// other CPUs (vm::guest's spread guests: its big lock). The backend calls after_exit
// first thing at every exit, before the exit is decoded or handled, and before_entry
// last thing before every entry, so everything between (handlers, the entry hook, the
// run loop) runs under whatever after_exit takes. ops.run therefore starts with it held
// and returns with it held. Free per exit when unset: switch.S calls the guarded exit
// handler only for guarded vCPUs (the handler is an argument of the world switch).
struct exit_guard {
    void* ctx = nullptr;
    void (*after_exit)(vcpu& v, void* ctx) = nullptr;
    void (*before_entry)(vcpu& v, void* ctx) = nullptr;
};

enum class vcpu_status : std::uint8_t { runnable, halted, stopped, failed };
std::string_view name(vcpu_status s);

using exit_handler = void (*)(vcpu& v, const exit_info& e);

class vcpu {
public:
    vcpu() = default;
    vcpu(const vcpu&) = delete;
    vcpu& operator=(const vcpu&) = delete;

    // `stack` must outlive the vCPU; `arch` is the backend's per-vCPU data.
    void init(unsigned id, const backend_ops& ops, void* arch, void* stack, std::size_t stack_size);

    // ---- for handlers ----
    guest_state state{};
    event_queue events;
    exit_log log;

    unsigned id() const { return id_; }
    void* arch() const { return arch_; }
    const backend_ops& ops() const { return *ops_; }
    vcpu_status status() const { return loop_flags_.f.status; }
    // The exit being handled: the log's newest (every dispatched exit is logged first).
    const exit_info& current_exit() const { return log.total() ? log.recent(0) : no_exit_; }

    // Advance RIP past the exiting instruction (decoding it if the exit did not give its
    // length) and drop the STI/MOV SS shadow it may have had. Fails the vCPU if undecodable.
    void skip() {
        const auto len = static_cast<std::int8_t>(skip_length_);
        if (len <= 0) [[unlikely]] return skip_slow();
        state.rip += static_cast<std::uint8_t>(len);  // no dirty mark: backends write RIP back before every entry
    }
    void inject_exception(std::uint8_t vector, std::optional<std::uint32_t> error_code = std::nullopt) {
        events.raise_exception(vector, error_code);
    }
    // Usable from any fiber (a device model, another vCPU): wakes a halted vCPU.
    void inject_interrupt(std::uint8_t vector) { events.raise_interrupt(vector); }
    void inject_nmi() { events.raise_nmi(); }
    // The guest's TPR (backend_ops::read_tpr form); an interrupt controller model that
    // owns the TPR keeps itself and this coherent (libhv/dev attachment).
    std::uint8_t tpr() const { return ops_->read_tpr ? ops_->read_tpr(*this) : 0; }
    void set_tpr(std::uint8_t tpr) {
        if (ops_->write_tpr) ops_->write_tpr(*this, tpr);
    }
    // Guest executed HLT: after skip(), sleep until an event can wake it. The guest is
    // re-entered active (with the waking event injected), never in the HLT activity state.
    void halt() { loop_flags_.f.status = vcpu_status::halted; }
    // End this guest. `why` (static) is kept for report(). stop() is a normal end.
    void stop(const char* why = "stopped") { loop_flags_.f.status = vcpu_status::stopped; why_ = why; }
    void fail(const char* why) { loop_flags_.f.status = vcpu_status::failed; why_ = why; }
    const char* why() const { return why_; }

    void set_interrupt_source(const interrupt_source& s) {
        source_ = s;
        loop_flags_.f.extras = source_.pending || hook_.fn;
    }
    [[nodiscard]] const interrupt_source& current_interrupt_source() const { return source_; }
    void set_code_reader(const code_reader& r) { code_ = r; }
    const code_reader& code() const { return code_; }
    // What owns this vCPU (a vm::guest), for handlers to find their way back.
    void set_owner(void* owner) { owner_ = owner; }
    template <class T>
    T& owner() const { return *static_cast<T*>(owner_); }
    void set_entry_hook(const entry_hook& h) {
        hook_ = h;
        loop_flags_.f.extras = source_.pending || hook_.fn;
    }
    [[nodiscard]] const entry_hook& current_entry_hook() const { return hook_; }
    // nullptr (the default): no guard.
    void set_exit_guard(const exit_guard* g) { guard_ = g; }

    // Handler table, one entry per exit_reason, filled with the defaults by init().
    // nullptr restores the default. handler() is the one installed now, for a policy
    // that handles part of an exit and chains to what was there before.
    void on(exit_reason r, exit_handler h);
    // A leaf handler uses nothing of the host's per-CPU context: not x86::this_cpu() (nor
    // what uses it: the console, locks that record their owner), no host FS/GS-based data,
    // and it cannot fault. When every hot exit (CPUID, hypercall, RDMSR/WRMSR, port I/O,
    // HLT) of a vCPU has a leaf handler (the defaults are), the SVM backend runs them
    // without switching the host's hidden state back (the guest's FS/GS/TR/LDTR and
    // syscall MSRs stay loaded) and with GIF still 0 (NMIs and interrupts held until the
    // next VMRUN exits for them): libhv/cpu/README.md "Leaf handlers".
    enum class handler_kind : std::uint8_t { host, leaf };
    void on(exit_reason r, exit_handler h, handler_kind kind);
    [[nodiscard]] bool hot_handlers_leaf() const { return leaf_hot_ == hot_reason_mask; }
    [[nodiscard]] exit_handler handler(exit_reason r) const { return handlers_[static_cast<std::size_t>(r)]; }

    // The host TSC by which the guest must exit even if it spins without exiting (the next
    // device deadline, set by the entry hook; 0: none). The backend arms a VMX-preemption
    // timer or a host LAPIC timer to it on each entry; that exit is preemption_timer (VMX)
    // or external_interrupt (the host timer's interrupt), both handled by doing nothing:
    // the next entry hook delivers what fell due.
    void set_preemption_deadline(std::uint64_t host_tsc) { preempt_at_ = host_tsc; }
    [[nodiscard]] std::uint64_t preemption_deadline() const { return preempt_at_; }
    // For backends: the deadline the preemption armed for the entries of this ops.run
    // keeps counting to (0: none). After an exit whose entry hook leaves the deadline
    // at that value (and nothing else for the run loop), settle() keeps the backend's loop
    // going: the backend makes sure the armed timer still fires by then (VMX: the
    // preemption timer reloaded with what is left; the host LAPIC timer: not fired yet).
    // A changed deadline returns to the run loop, which arms the new one (none left: stay).
    void set_armed_deadline(std::uint64_t host_tsc) { armed_at_ = host_tsc; }
    [[nodiscard]] std::uint64_t armed_deadline() const { return armed_at_; }

    // Ask the loop to yield to the scheduler after this exit (fairness, benchmarks).
    void request_yield() { loop_flags_.f.yield = true; }
    // Handlers that change these parts of `state` say so; the backend writes them back
    // before the next entry. RIP (and on SVM RAX) is written back before every entry
    // whether marked or not: dirty_rip is accepted and needs nothing.
    // dirty_cr2: a #PF injected by an emulator (the CPU sets CR2 only for its own #PFs).
    // dirty_xcr0: an XSETBV handler set state.xcr0 (the backend loads it before entry).
    enum dirty_bits : std::uint8_t {
        dirty_rip = 1, dirty_rflags = 2, dirty_rsp = 4, dirty_interruptibility = 8, dirty_cr2 = 16, dirty_xcr0 = 32
    };
    void mark_dirty(std::uint8_t bits) { loop_flags_.f.dirty |= bits & ~dirty_rip; }
    // state.rflags and state.regs.rsp as of this exit: a handler of a hot exit (see
    // backend_ops::run) that reads them calls this first.
    void load_flags() {
        if (ops_->load_flags) ops_->load_flags(*this);
    }
    [[nodiscard]] bool dirty(std::uint8_t bits) const { return loop_flags_.f.dirty & bits; }
    [[nodiscard]] std::uint8_t dirty_bits() const { return loop_flags_.f.dirty; }
    std::uint8_t take_dirty() {
        const std::uint8_t d = loop_flags_.f.dirty;
        loop_flags_.f.dirty = 0;
        return d;
    }

    // Fail the guest after this many exits (0: no limit): a runaway guest ends with its log.
    void set_exit_budget(std::uint64_t n) {
        budget_left_ = !n ? ~0ull : n > log.total() ? n - log.total() : 1;
    }

    // ---- for backends (ops.run) ----
    // Log an exit the backend decoded into log.slot() and run its handler. True: the
    // run loop has nothing to do (still runnable, no event, no yield; an entry hook and
    // an interrupt source polled with nothing to deliver), so the backend writes back
    // take_dirty() and re-enters at once.
    // The decoder of an exit that can interrupt event delivery (not the hot instruction
    // exits) calls requeue_interrupted(slot) before.
    [[gnu::always_inline]] bool dispatch(exit_info& slot) { return dispatch(slot, slot.reason); }
    // The same with slot.reason at hand (a hot path's compile-time constant: the counter
    // and the handler are then found at fixed offsets).
    [[gnu::always_inline]] bool dispatch(exit_info& slot, exit_reason reason) {
        if (!handle(slot, reason)) [[unlikely]] return false;
        if (loop_flags_.word == 0) [[likely]] return true;  // events and dirty state included
        return settle();
    }
    // The loop's test after a handler, for a backend that makes it itself (SVM's switch.S
    // reads the word at loop_word_offset()): 0 means nothing for the run loop and nothing
    // dirty but RIP, so enter again at once. Otherwise write back take_dirty(), then
    // settle() says whether the backend may still stay.
    [[nodiscard]] std::uint64_t loop_word() const { return loop_flags_.word; }
    [[nodiscard]] bool settle() {
        const std::uint64_t w = loop_flags_.word & ~dirty_in_word;
        if (w == 0) return true;              // dirty state alone: the backend writes it back
        if (w != only_extras) return false;  // events, halt, yield, a return request...
        return stay_after_polling();
    }
    static std::size_t loop_word_offset();
    // Only the logging and the handler (false: the exit budget ended the guest), for a
    // backend that returns to the run loop after every exit (run_once).
    [[gnu::always_inline]] bool handle(exit_info& slot) { return handle(slot, slot.reason); }
    [[gnu::always_inline]] bool handle(exit_info& slot, exit_reason reason) {
        skip_length_ = slot.instruction_length | ((state.interruptibility & 3u) ? in_shadow : 0);
        log.commit(reason);
        if (--budget_left_ == 0) [[unlikely]] return budget_exhausted();
        handlers_[static_cast<std::size_t>(reason)](*this, slot);
        return true;
    }
    // The same as the last thing a backend's exit function does (a tail call to the
    // handler; the backend tests loop_word() after it), with the length skip() adds:
    // the slot's, or'd with in_shadow if the guest was in an STI/MOV SS shadow
    // (state.interruptibility then set: skip()'s slow path drops it); 0: unknown.
    static constexpr std::uint8_t in_shadow = 0x80;
    [[gnu::always_inline]] void handle_last(exit_info& slot, exit_reason reason, std::uint8_t skip_length) {
        skip_length_ = skip_length;
        log.commit(reason);
        if (--budget_left_ == 0) [[unlikely]] return (void)budget_exhausted();
        return handlers_[static_cast<std::size_t>(reason)](*this, slot);
    }
    void requeue_interrupted(const exit_info& e) {
        if (e.interrupted.valid) events.requeue(e.interrupted);
    }
    // The backend's loop must return to the vCPU loop at the next exit (e.g. its VMCS
    // stopped being current, or an injection or window needs taking down); cleared when
    // the backend enters from the vCPU loop again (end_return_request()).
    void request_return() { loop_flags_.f.backend = 1; }
    void end_return_request() { loop_flags_.f.backend = 0; }
    // The exit guard (see exit_guard): guarded() is the backend's one test per exit.
    [[nodiscard]] bool guarded() const { return guard_ != nullptr; }
    void guard_after_exit() { guard_->after_exit(*this, guard_->ctx); }
    void guard_before_entry() { guard_->before_entry(*this, guard_->ctx); }

    // ---- for the scheduler ----
    bool finished() const { return fiber_.finished(); }
    // Halted with nothing that can wake it: no point resuming.
    bool sleeping() const;
    void resume() { fiber_.resume(); }

    // "vcpu 1: failed: triple fault" then the exit log.
    void report(const fmt::sink& out) const;
    // Where report() goes by itself when this guest fails (nullptr: nowhere).
    void report_failures_to(const fmt::sink* out) { failure_sink_ = out; }

private:
    static void entry(fiber& f, void* self);
    void run_loop();
    void run_guest();
    bool wakeable() const;
    bool source_pending() const { return source_.pending && source_.pending(source_.ctx); }
    template <bool source_known_pending>
    event_queue::decision decide();
    void skip_slow();
    bool enter_with_events();
    bool stay_after_polling();
    bool budget_exhausted();

    unsigned id_ = 0;
    const backend_ops* ops_ = nullptr;
    void* arch_ = nullptr;
    fiber fiber_;
    // What makes the backend's loop return to run_guest(), read as one word by dispatch().
    union loop_flags {
        struct fields {
            vcpu_status status;  // runnable == 0
            bool yield;
            bool extras;  // an interrupt source or entry hook is set: no hot-path entry
            std::uint8_t backend;  // request_return()
            bool events;           // !events.empty() (event_queue::keep_flag_at)
            std::uint8_t dirty;    // dirty_bits but dirty_rip (which needs nothing)
            std::uint8_t unused[2];
        } f;
        std::uint64_t word;
    } loop_flags_{{vcpu_status::runnable, false, false, 0, false, 0, {}}};
    static_assert(sizeof(loop_flags) == 8 && static_cast<int>(vcpu_status::runnable) == 0);
    static constexpr std::uint64_t only_extras =
        __builtin_bit_cast(std::uint64_t, loop_flags::fields{vcpu_status::runnable, false, true, 0, false, 0, {}});
    static constexpr std::uint64_t dirty_in_word =
        __builtin_bit_cast(std::uint64_t, loop_flags::fields{vcpu_status::runnable, false, false, 0, false, 0xff, {}});
    const char* why_ = nullptr;
    std::uint8_t skip_length_ = 0;  // what skip() adds to RIP at once; 0 or in_shadow set: skip_slow
    // What stay_after_polling found for the coming entry, so the run loop does not ask again.
    enum : std::uint8_t { polled_hook = 1, polled_source = 2 };  // hook ran; source pending
    std::uint8_t polled_ = 0;
    std::uint64_t budget_left_ = ~0ull;  // exits until the budget fails the guest
    std::uint64_t preempt_at_ = 0;
    std::uint64_t armed_at_ = 0;
    exit_info no_exit_{};  // current_exit() before the first
    exit_handler handlers_[exit_reason_count] = {};
#define HV_REASON_BIT(r) (1ull << static_cast<unsigned>(exit_reason::r))
    static constexpr std::uint64_t hot_reason_mask = HV_REASON_BIT(cpuid) | HV_REASON_BIT(hypercall) |
                                                     HV_REASON_BIT(msr_read) | HV_REASON_BIT(msr_write) |
                                                     HV_REASON_BIT(io) | HV_REASON_BIT(hlt);
#undef HV_REASON_BIT
    static_assert(exit_reason_count <= 64);
    std::uint64_t leaf_hot_ = hot_reason_mask;  // hot reasons whose handler is a leaf one
    interrupt_source source_{};
    const fmt::sink* failure_sink_ = nullptr;
    entry_hook hook_{};
    const exit_guard* guard_ = nullptr;
    code_reader code_{};
    void* owner_ = nullptr;
};

// ops.run for a backend that enters once per call (host fakes): enter(v, d, slot)
// decodes one exit into the slot, which is then dispatched.
template <void (*enter)(vcpu&, const event_queue::decision*, exit_info&)>
void run_once(vcpu& v, const event_queue::decision* d) {
    exit_info& slot = v.log.slot();
    enter(v, d, slot);
    v.requeue_interrupted(slot);
    (void)v.handle(slot);
}

// Round-robin over vCPUs on one physical CPU, plus tasks: fibers that serve the vCPUs
// (in-hypervisor backends). Each round resumes every unfinished task once, then every
// vCPU that is not asleep; a task with nothing to do yields at once. run() returns when
// every vCPU has stopped or failed (tasks do not keep it going), or when a round ran no
// vCPU (all asleep: then `idle` is called; if it returns false, run() returns).
class scheduler {
public:
    static constexpr std::size_t max_vcpus = 16;
    static constexpr std::size_t max_tasks = 8;
    [[nodiscard]] status add(vcpu& v);
    [[nodiscard]] status add_task(fiber& f);
    using idle_fn = bool (*)(void* ctx);
    void run(idle_fn idle = nullptr, void* ctx = nullptr);
    std::size_t size() const { return n_; }
    // A guest whose vCPUs span several physical CPUs (one scheduler each): each round
    // holds its big lock (the vCPU fibers run under it and release it only in guest
    // mode); `idle` runs without it.
    void set_lock(spinlock* l) { lock_ = l; }

private:
    template <bool locked>
    void rounds(idle_fn idle, void* ctx);

    vcpu* v_[max_vcpus] = {};
    std::size_t n_ = 0;
    fiber* tasks_[max_tasks] = {};
    std::size_t task_count_ = 0;
    spinlock* lock_ = nullptr;
};

// The default handlers, public so a program can chain to them.
namespace default_handler {
void hlt(vcpu& v, const exit_info& e);
void interrupt_window(vcpu& v, const exit_info& e);
void external_interrupt(vcpu& v, const exit_info& e);  // also the preemption timer: nothing to do
void triple_fault(vcpu& v, const exit_info& e);
void entry_failed(vcpu& v, const exit_info& e);
void virtualization(vcpu& v, const exit_info& e);  // #UD into the guest
void exception(vcpu& v, const exit_info& e);       // intercepted #DF ends the guest; others are unhandled
void cr_access(vcpu& v, const exit_info& e);       // MOV to CR0/CR4, CLTS, LMSW through ops.write_cr
void unhandled(vcpu& v, const exit_info& e);
} // namespace default_handler

} // namespace hv::cpu
