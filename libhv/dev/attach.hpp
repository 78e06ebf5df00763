// The emulated PC (dev::machine) attached to a guest's vCPUs, written once for both
// vendors against cpu::vcpu and its exit model:
//
//   port I/O ──────────▶ ports(): the port bus, for the vm layer's I/O exit handler
//                        (which runs IN/OUT and string I/O through the guest's paging)
//   MMIO (npf → insn) ─▶ mmio_read/mmio_write: LAPIC page of the vCPU whose exit it is,
//                        IOAPIC (the vm layer adds the regions and calls these)
//   RDMSR/WRMSR ───────▶ IA32_APIC_BASE, TSC deadline, x2APIC MSRs; others to the
//                        next handler (the vm layer's MSR file), or #GP
//   CPUID ─────────────▶ the next handler (the vm layer's CPU model), plus leaf
//                        0x40000010: guest TSC and APIC-timer frequencies in kHz
//   entry hook ────────▶ device deadlines (machine::poll), NMI, SIPI start of an AP
//   interrupt source ──▶ the local APIC (8259 ExtINT via LINT0), acknowledged only
//                        when the vCPU injects it; an interrupt the TPR holds back sets
//                        the vCPU's TPR threshold
//   TPR ───────────────▶ the local APIC's; the vCPU's CR8 (cpu backend) mirrors it
//   ICR writes ────────▶ INIT parks the target vCPUs (wait-for-SIPI), SIPI starts them
//                        in real mode at vector << 12
//   scheduler idle ────▶ every vCPU halted: wait for the next device deadline
//   machine events ────▶ debug exit (0xf4), ACPI S5, reset: every vCPU stops; outcome()
//   COM1 transmitter ──▶ the host console, one prefixed line at a time
//
// Time is the guest TSC (machine's clock). Handlers find their attachment from the
// vCPU (a small registry): no vm:: types here, so the host tests drive it through a
// fake backend. Not thread-safe: vCPUs on several physical CPUs call it under their
// guest's big lock (vm::guest::place).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/cpu/io_emul.hpp"
#include "libhv/cpu/vcpu.hpp"
#include "libhv/dev/machine.hpp"

namespace hv::dev {

// The hypervisor leaf range's timing leaf (as VMware and KVM guests read it):
// EAX = guest TSC kHz, EBX = local APIC timer input clock kHz.
inline constexpr std::uint32_t cpuid_timing_leaf = 0x40000010;

// Waits on the host until the guest clock has reached `deadline` (guest ticks).
struct deadline_wait {
    void* ctx = nullptr;
    void (*fn)(void* ctx, std::uint64_t deadline) = nullptr;
};

struct attach_config {
    cpu::exit_handler cpuid_next = nullptr;      // CPUID leaves besides the timing leaf
    cpu::exit_handler msr_read_next = nullptr;   // MSRs the machine does not model (nullptr: #GP)
    cpu::exit_handler msr_write_next = nullptr;
    const fmt::sink* console = nullptr;      // guest COM1 output (nullptr: dropped)
    std::string_view console_prefix = "guest: ";
    deadline_wait wait{};                    // the idle hook's sleep (nullptr: return at once)
};

// How the run ended, from the machine's point of view.
struct run_outcome {
    event_kind kind = event_kind::none;  // none: the vCPUs ended otherwise (failed, all halted)
    std::uint32_t value = 0;             // debug_exit: (written << 1) | 1, as QEMU exits
    [[nodiscard]] std::uint32_t debug_value() const { return value >> 1; }
};

struct attach_stats {
    std::uint64_t io = 0, mmio = 0, msr = 0, cpuid = 0, injected = 0;
    std::uint64_t inits = 0, sipis = 0, idle_waits = 0;
};

class attachment {
public:
    static constexpr unsigned max_vcpus = 8;
    static constexpr std::size_t console_line = 160;

    attachment(machine& m, const attach_config& cfg);
    ~attachment();
    attachment(const attachment&) = delete;
    attachment& operator=(const attachment&) = delete;

    // The port bus for an I/O exit handler; a write that ends the machine (debug exit,
    // S5, reset) stops every vCPU.
    [[nodiscard]] cpu::io_ports ports() { return {this, &port_in, &port_out, &port_in_block, &port_out_block}; }

    // vCPU `index` of the machine runs on `v`: installs the MSR/CPUID handlers, interrupt
    // source and entry hook. Index 0 runs from the state it has; the others start parked
    // (wait-for-SIPI) until an INIT/SIPI from a local APIC.
    [[nodiscard]] status attach(cpu::vcpu& v, unsigned index);

    machine& devices() { return *m_; }
    [[nodiscard]] const attach_stats& stats() const { return stats_; }
    [[nodiscard]] run_outcome outcome() const { return outcome_; }
    // Writes a partial last line of guest output (call when the run is over).
    void flush_console();
    // Is this vCPU parked waiting for a SIPI?
    [[nodiscard]] bool parked(unsigned index) const { return index < count_ && slots_[index].parked; }

    // MMIO: `ctx` is an mmio_window; offsets are from its base. The vCPU is the one whose
    // exit is being handled.
    struct mmio_window {
        attachment* self = nullptr;
        std::uint64_t base = 0;
    };
    static bool mmio_read(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t& value);
    static bool mmio_write(void* ctx, std::uint64_t offset, unsigned size, std::uint64_t value);

    // cpu::scheduler idle hook (ctx = this): every vCPU sleeps. Runs expired deadlines,
    // or waits for the next one; false when nothing can ever wake a vCPU. A failed vCPU
    // stops the others (they would only sleep or tick forever).
    static bool idle(void* ctx);
    // A failed vCPU stops the others; true when one had failed.
    bool stop_if_one_failed();
    // The vCPU whose exit is handled now (its LAPIC answers MMIO). The entry hook sets
    // it; a guest whose vCPUs run on several physical CPUs sets it again after each exit.
    void set_current(cpu::vcpu& v) {
        for (unsigned i = 0; i < count_; ++i)
            if (slots_[i].v == &v) current_ = i;
    }

    // Exit handlers, public for policies that chain to them.
    static void on_msr_read(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_msr_write(cpu::vcpu& v, const cpu::exit_info& e);
    static void on_cpuid(cpu::vcpu& v, const cpu::exit_info& e);

private:
    struct slot {
        attachment* owner = nullptr;
        cpu::vcpu* v = nullptr;
        unsigned index = 0;
        bool parked = false;
        bool start_pending = false;
        std::uint8_t start_vector = 0;
        std::uint8_t tpr_cpu = 0;    // the vCPU's TPR (its CR8) as last synchronized
        std::uint8_t tpr_model = 0;  // the local APIC's TPR as last given to the vCPU
    };
    static attachment* of(cpu::vcpu& v, unsigned& index);
    static bool source_pending(void* ctx);
    static std::optional<std::uint8_t> source_acknowledge(void* ctx);
    static std::uint8_t source_tpr_masked(void* ctx);
    // The local APIC owns the TPR; the vCPU's CR8 (TPR shadow / V_TPR) mirrors it. A guest
    // CR8 write changes the mirror without an exit: pull it into the model before the model
    // is used, push the model's (MMIO, x2APIC MSR, INIT) before each entry (sync_tpr:
    // both; a guest CR8 write and a model change cannot both happen within one exit).
    void pull_tpr(slot& s);
    void sync_tpr(slot& s);
    static void entry(cpu::vcpu& v, void* ctx);
    static void console_byte(void* ctx, std::uint8_t byte);
    static std::uint32_t port_in(void* ctx, std::uint16_t port, std::uint8_t size);
    static void port_out(void* ctx, std::uint16_t port, std::uint8_t size, std::uint32_t value);
    static std::size_t port_in_block(void* ctx, std::uint16_t port, std::uint8_t size, void* dst, std::size_t count);
    static std::size_t port_out_block(void* ctx, std::uint16_t port, std::uint8_t size, const void* src,
                                      std::size_t count);
    void start_ipis();        // INIT/SIPI the local APICs received → park / start vCPUs
    void park(slot& s);
    void start(slot& s);
    void check_events();      // a machine event ends every vCPU
    bool any_wakeable() const;

    machine* m_;
    attach_config cfg_;
    slot slots_[max_vcpus]{};
    unsigned count_ = 0;
    unsigned current_ = 0;    // the vCPU whose exit is being handled
    run_outcome outcome_{};
    attach_stats stats_{};
    std::uint64_t min_slice_ = 0;  // guest ticks a preempted guest runs at least: 1 us
    char line_[console_line]{};
    std::size_t line_len_ = 0;
};

} // namespace hv::dev
