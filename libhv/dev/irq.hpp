// Interrupt wiring between device models.
//
//   device --irq_line--> irq_sink (ISA IRQ router / PIC / IOAPIC pins)
//   PIC INTR ----------> local APIC LINT0 (ExtINT, vector from the PIC's INTA)
//   IOAPIC, ICR, MSI --> apic_bus --> local APIC IRR --> vCPU asks pending/acknowledge
//   local APIC EOI of a level vector --> apic_bus --> IOAPIC remote IRR
#pragma once
#include <cstdint>
#include <optional>

namespace hv::dev {

// Something with numbered interrupt inputs.
class irq_sink {
public:
    virtual void set_irq(unsigned line, bool level) = 0;

protected:
    ~irq_sink() = default;
};

// One output pin of a device, tracking its level so only changes propagate.
class irq_line {
public:
    irq_line() = default;
    irq_line(irq_sink* sink, unsigned line) : sink_{sink}, line_{line} {}
    void connect(irq_sink* sink, unsigned line) { sink_ = sink; line_ = line; }

    void set(bool level) {
        if (level == level_) return;
        level_ = level;
        if (sink_) sink_->set_irq(line_, level);
    }
    void raise() { set(true); }
    void lower() { set(false); }
    // A rising then falling edge: what an edge-triggered input latches.
    void pulse() { set(false); set(true); set(false); }
    [[nodiscard]] bool level() const { return level_; }
    [[nodiscard]] unsigned line() const { return line_; }

private:
    irq_sink* sink_ = nullptr;
    unsigned line_ = 0;
    bool level_ = false;
};

// The 8259's side of the INTR/INTA handshake.
class ext_int_source {
public:
    // The vector an INTA would return now, if INTR is asserted.
    [[nodiscard]] virtual std::optional<std::uint8_t> pending() const = 0;
    // INTA: commits the interrupt to in-service and returns its vector (a spurious
    // vector if the request went away).
    virtual std::uint8_t acknowledge() = 0;

protected:
    ~ext_int_source() = default;
};

// Receives the EOI broadcast of a level-triggered vector (the IOAPIC).
class eoi_listener {
public:
    virtual void eoi(std::uint8_t vector) = 0;

protected:
    ~eoi_listener() = default;
};

// A plain function + context, for notifications (no std::function freestanding).
template <class... Args>
struct callback {
    void (*fn)(void* ctx, Args...) = nullptr;
    void* ctx = nullptr;
    void operator()(Args... a) const {
        if (fn) fn(ctx, a...);
    }
    explicit operator bool() const { return fn != nullptr; }
};

} // namespace hv::dev
