// Local APIC (one per vCPU) and the APIC bus that carries interrupt messages between
// local APICs, the IOAPIC and MSIs. xAPIC registers are MMIO at IA32_APIC_BASE (4 KiB,
// per vCPU: not on the shared MMIO bus), x2APIC registers are MSRs 0x800-0x8ff.
//
// The cpu layer drives a vCPU's local APIC through:
//   pending_interrupt()       vector to inject when the guest can take an interrupt
//   acknowledge_interrupt()   commit it (IRR→ISR, or INTA to the 8259 for ExtINT)
//   take_nmi / take_init / take_sipi    other events; set_notify() says "something new"
//   mmio_claims/mmio_read/mmio_write    xAPIC page accesses (EPT/NPT exits)
//   read_msr/write_msr        IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC MSRs
// Message delivery is synchronous, so ICR's delivery-status bit always reads idle.
// Not thread-safe: callers serialize all device-model calls.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include "libhv/dev/irq.hpp"
#include "libhv/dev/time.hpp"

namespace hv::dev {

enum class apic_reg : std::uint16_t {
    id = 0x020, version = 0x030, tpr = 0x080, apr = 0x090, ppr = 0x0a0, eoi = 0x0b0,
    rrd = 0x0c0, ldr = 0x0d0, dfr = 0x0e0, svr = 0x0f0,
    isr0 = 0x100, tmr0 = 0x180, irr0 = 0x200, esr = 0x280, lvt_cmci = 0x2f0,
    icr_lo = 0x300, icr_hi = 0x310,
    lvt_timer = 0x320, lvt_thermal = 0x330, lvt_perf = 0x340, lvt_lint0 = 0x350,
    lvt_lint1 = 0x360, lvt_error = 0x370,
    timer_initial = 0x380, timer_current = 0x390, timer_divide = 0x3e0,
    self_ipi = 0x3f0,   // x2APIC only
};

enum class delivery_mode : std::uint8_t {
    fixed = 0, lowest_priority = 1, smi = 2, nmi = 4, init = 5, startup = 6, extint = 7,
};
enum class dest_shorthand : std::uint8_t { none = 0, self = 1, all_including_self = 2, all_excluding_self = 3 };
enum class apic_mode : std::uint8_t { disabled, xapic, x2apic };
enum class timer_mode : std::uint8_t { one_shot = 0, periodic = 1, tsc_deadline = 2 };

namespace apic_msr {
inline constexpr std::uint32_t apic_base = 0x1b;
inline constexpr std::uint32_t tsc_deadline = 0x6e0;
inline constexpr std::uint32_t x2apic_first = 0x800;
inline constexpr std::uint32_t x2apic_last = 0x8ff;
} // namespace apic_msr

namespace apic_bits {
inline constexpr std::uint64_t base_bsp = 1u << 8, base_extd = 1u << 10, base_enable = 1u << 11;
inline constexpr std::uint64_t default_base = 0xfee00000;
inline constexpr std::uint32_t svr_enable = 1u << 8;
inline constexpr std::uint32_t lvt_masked = 1u << 16, lvt_level = 1u << 15, lvt_remote_irr = 1u << 14,
                               lvt_active_low = 1u << 13, lvt_pending = 1u << 12;
inline constexpr std::uint32_t icr_pending = 1u << 12, icr_logical = 1u << 11, icr_assert = 1u << 14,
                               icr_level = 1u << 15;
inline constexpr std::uint32_t esr_send_illegal_vector = 1u << 5, esr_recv_illegal_vector = 1u << 6,
                               esr_illegal_register = 1u << 7;
} // namespace apic_bits

// One interrupt message on the APIC bus (from an ICR, the IOAPIC or an MSI).
struct apic_message {
    std::uint32_t dest = 0;
    std::uint8_t vector = 0;
    delivery_mode mode = delivery_mode::fixed;
    bool logical = false;
    bool level_triggered = false;
    bool assert = true;
    dest_shorthand shorthand = dest_shorthand::none;
    bool x2apic_dest = false;   // dest is a 32-bit x2APIC destination, else 8-bit
};

enum class msr_outcome : std::uint8_t { ok, gp, unhandled };
struct msr_value {
    msr_outcome outcome;
    std::uint64_t value;
};

struct lapic_config {
    std::uint32_t apic_id = 0;
    bool bsp = false;
    std::uint64_t timer_hz = 1000000000;     // the APIC timer's input clock (the "bus clock")
    bool x2apic = true;                      // CPUID.1:ECX.x2APIC
    bool tsc_deadline = true;                // CPUID.1:ECX.TSC_DEADLINE
    unsigned phys_addr_bits = 39;
    // Start the BSP in virtual-wire mode (LINT0 ExtINT, LINT1 NMI, unmasked) as PC
    // firmware leaves it, so a guest booted without firmware gets 8259 interrupts.
    bool virtual_wire = true;
};

class apic_bus;

class lapic {
public:
    static constexpr std::uint32_t version_value = 0x00050014;   // version 0x14, 6 LVT entries

    lapic(const lapic_config& cfg, apic_bus& bus, timer_queue& timers);
    lapic(const lapic&) = delete;
    lapic& operator=(const lapic&) = delete;
    ~lapic();

    // Power-on / RESET state.
    void reset();

    // --- the cpu layer's interface ---
    [[nodiscard]] std::optional<std::uint8_t> pending_interrupt() const;
    // Priority class (1..15) of the highest requested interrupt that only the TPR holds
    // back (lowering the TPR below it would deliver it); 0: none.
    [[nodiscard]] std::uint8_t tpr_masked_class() const;
    std::optional<std::uint8_t> acknowledge_interrupt();
    bool take_nmi() {  // before every entry
        const bool n = nmi_;
        nmi_ = false;
        return n;
    }
    bool take_init();
    std::optional<std::uint8_t> take_sipi();
    [[nodiscard]] bool has_event() const;   // anything that ends a HLT
    void set_notify(callback<> cb) { notify_ = cb; }

    [[nodiscard]] bool mmio_claims(std::uint64_t gpa) const;
    std::uint64_t mmio_read(std::uint64_t gpa, unsigned size);
    void mmio_write(std::uint64_t gpa, unsigned size, std::uint64_t value);
    msr_value read_msr(std::uint32_t index);
    msr_outcome write_msr(std::uint32_t index, std::uint64_t value);

    // --- wiring ---
    void set_lint(unsigned pin, bool level);    // LINT0 (8259 INTR), LINT1 (NMI)
    void accept(const apic_message& m);         // from the APIC bus
    [[nodiscard]] bool matches(std::uint32_t dest, bool logical, bool x2apic_dest) const;

    // --- state, for tests and the cpu layer ---
    [[nodiscard]] std::uint32_t id() const { return id_; }
    [[nodiscard]] apic_mode mode() const { return mode_; }
    [[nodiscard]] std::uint64_t apic_base() const;
    [[nodiscard]] bool software_enabled() const { return svr_ & apic_bits::svr_enable; }
    [[nodiscard]] std::uint8_t ppr() const;
    [[nodiscard]] std::uint8_t tpr() const { return tpr_; }
    [[nodiscard]] bool irr(std::uint8_t v) const { return test(irr_, v); }
    [[nodiscard]] bool isr(std::uint8_t v) const { return test(isr_, v); }
    [[nodiscard]] bool tmr(std::uint8_t v) const { return test(tmr_, v); }
    [[nodiscard]] std::uint32_t timer_current_count() const;
    // A register as the xAPIC page shows it (no side effects besides ESR's rules).
    [[nodiscard]] std::uint32_t read_reg(apic_reg r) const;
    void write_reg(apic_reg r, std::uint32_t v);
    [[nodiscard]] std::uint64_t smi_count() const { return smis_; }

private:
    using bitmap = std::array<std::uint32_t, 8>;
    static bool test(const bitmap& b, std::uint8_t v) { return b[v >> 5] & (1u << (v & 31)); }
    static void set(bitmap& b, std::uint8_t v) { b[v >> 5] |= 1u << (v & 31); }
    static void clear(bitmap& b, std::uint8_t v) { b[v >> 5] &= ~(1u << (v & 31)); }
    static int highest(const bitmap& b);

    enum lvt_index : unsigned { lvt_timer_i, lvt_thermal_i, lvt_perf_i, lvt_lint0_i, lvt_lint1_i, lvt_error_i, lvt_count };

    void reset_registers();
    void init_received();
    std::optional<std::uint32_t> read_x2(apic_reg r) const;
    bool readable(apic_reg r) const;
    std::uint32_t ldr_value() const;
    void write_lvt(lvt_index i, std::uint32_t v);
    void write_svr(std::uint32_t v);
    void eoi();
    void send_ipi(std::uint32_t lo, std::uint32_t hi);
    void raise_error(std::uint32_t bits);
    void local_interrupt(lvt_index i);
    void set_fixed(std::uint8_t vector, bool level);
    bool extint_ready() const;
    void kick() { notify_(); }

    timer_mode tmode() const { return static_cast<timer_mode>((lvt_[lvt_timer_i] >> 17) & 3); }
    std::uint32_t divisor() const;
    std::uint64_t apic_now() const { return apic_clk_.count(timers_.now()); }
    void start_timer(std::uint64_t base);
    void schedule_timer();
    static void timer_fired(void* ctx, std::uint64_t now);

    lapic_config cfg_;
    apic_bus& bus_;
    timer_queue& timers_;
    derived_clock apic_clk_;
    timer timer_;
    callback<> notify_{};

    apic_mode mode_ = apic_mode::xapic;
    std::uint64_t base_ = apic_bits::default_base;
    std::uint32_t id_;
    std::uint8_t tpr_ = 0;
    std::uint32_t ldr_ = 0, dfr_ = 0xffffffff, svr_ = 0xff;
    std::uint32_t esr_ = 0, esr_pending_ = 0;
    std::uint32_t icr_lo_ = 0, icr_hi_ = 0;
    std::array<std::uint32_t, lvt_count> lvt_{};
    std::uint32_t timer_initial_ = 0, timer_divide_ = 0;
    bitmap irr_{}, isr_{}, tmr_{};

    bool timer_running_ = false;
    std::uint64_t timer_base_ = 0;      // APIC-clock tick at which counting started
    std::uint64_t tsc_deadline_ = 0;

    std::array<bool, 2> lint_{};
    bool nmi_ = false, init_ = false, sipi_ = false, awaiting_sipi_ = false, extint_msg_ = false;
    std::uint8_t sipi_vector_ = 0;
    std::uint64_t smis_ = 0;
};

// Routes messages to local APICs by destination, and EOIs of level-triggered vectors
// back to the IOAPIC(s). Owns no APICs.
class apic_bus {
public:
    static constexpr std::size_t max_cpus = 64;
    static constexpr std::size_t max_listeners = 4;

    void attach(lapic& l);
    void detach(lapic& l);
    void add_eoi_listener(eoi_listener& l);
    void set_ext_int(ext_int_source* pic) { pic_ = pic; }
    [[nodiscard]] ext_int_source* ext_int() const { return pic_; }

    // Delivers a message; `source` is the sender for shorthands (nullptr for devices).
    void send(const apic_message& m, lapic* source = nullptr);
    // An MSI write (address 0xfeexxxxx, data) as PCI devices issue them.
    void send_msi(std::uint64_t address, std::uint32_t data);
    void broadcast_eoi(std::uint8_t vector);
    // The 8259's INTR pin is wired to every local APIC's LINT0.
    void set_lint0_all(bool level);
    void set_lint1_all(bool level);

    [[nodiscard]] lapic* find(std::uint32_t apic_id) const;
    [[nodiscard]] std::size_t size() const { return count_; }
    [[nodiscard]] lapic* at(std::size_t i) const { return i < count_ ? cpus_[i] : nullptr; }

private:
    std::array<lapic*, max_cpus> cpus_{};
    std::size_t count_ = 0;
    std::array<eoi_listener*, max_listeners> listeners_{};
    std::size_t listener_count_ = 0;
    ext_int_source* pic_ = nullptr;
};

} // namespace hv::dev
