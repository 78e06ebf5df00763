#include "libhv/arch/x86/cpu.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

namespace hv::rt {
namespace {

// QEMU isa-debug-exit (iobase 0xf4): QEMU exits with (value << 1) | 1.
constexpr std::uint16_t qemu_debug_exit = 0xf4;
constexpr std::uint32_t qemu_pass_value = 0x31;  // exit status 99
constexpr std::uint32_t qemu_fail_value = 0x01;  // exit status 3
// Bochs: 'D' on 0x8900 enters the debugger (its -rc script then quits: status 0);
// the string "Shutdown" ends the simulation with status 1.
constexpr std::uint16_t bochs_shutdown_port = 0x8900;

[[noreturn]] void end_emulation(bool pass) {
    console::flush();
    x86::outl(qemu_debug_exit, pass ? qemu_pass_value : qemu_fail_value);
    if (pass) {
        x86::outb(bochs_shutdown_port, 'D');
    } else {
        for (char c : std::string_view("Shutdown")) x86::outb(bochs_shutdown_port, std::uint8_t(c));
    }
    x86::halt_forever();
}

bool finishing = false;

} // namespace

void finish(hv::status result) {
    x86::cli();
    if (finishing) end_emulation(false);  // a fault while reporting: do not recurse
    finishing = true;
    if (result.ok()) {
        println("HV-RESULT: PASS");
    } else {
        println("HV-RESULT: FAIL code={} reason={}: {}", static_cast<int>(result.code()), to_string(result.code()),
                result.err().what);
    }
    end_emulation(result.ok());
}

void panic_message(std::string_view message) {
    x86::cli();
    println("HV-PANIC: {}", message);
    if (!finishing) println("HV-RESULT: FAIL code=255 reason=panic: {}", message);
    finishing = true;
    end_emulation(false);
}

void bench_report(std::string_view name, std::uint64_t iterations, std::uint64_t value, std::string_view unit) {
    println("HV-BENCH: {} {} {} {}", name, iterations, value, unit);
}

} // namespace hv::rt
