// Machine-level events a device raises and the run loop acts on.
#pragma once
#include <cstdint>

namespace hv::dev {

enum class event_kind : std::uint8_t {
    none,
    power_off,      // ACPI S5 (PM1a SLP_EN with the \_S5 SLP_TYP)
    reset,          // 8042 pulse-reset, port 0x92 fast reset, 0xcf9 reset control
    debug_exit,     // isa-debug-exit: value is the run's result, (written << 1) | 1
};

struct event {
    event_kind kind = event_kind::none;
    std::uint32_t value = 0;
};

// Receives events; the machine keeps the first one until taken.
class event_sink {
public:
    virtual void raise(event e) = 0;

protected:
    ~event_sink() = default;
};

} // namespace hv::dev
