// The least platform a libhv-runtime guest (or any test kernel) needs: COM1 output,
// forwarded to the hypervisor console one line at a time behind a prefix, and the two
// exit ports the runtime writes when it finishes (QEMU's isa-debug-exit at 0xf4, whose
// value becomes the guest's result, and Bochs' 0x8900). Every other port reads all
// ones and ignores writes. An HVM device model (libhv/dev) replaces it.
#pragma once
#include <cstdint>
#include "libhv/cpu/io_emul.hpp"
#include "libhv/vm/guest.hpp"

namespace hv::vm {

// How a guest ended, as the run reports it.
struct guest_exit {
    bool ended = false;
    std::uint32_t code = 0;    // the value written to 0xf4
    bool pass() const { return ended && code == debug_exit_pass; }
    // libhv's runtime writes 0x31 for PASS (QEMU exit status 99) and 0x01 for FAIL.
    static constexpr std::uint32_t debug_exit_pass = 0x31;
};

class debug_ports {
public:
    static constexpr std::uint16_t com1 = 0x3f8, debug_exit = 0xf4, bochs_shutdown = 0x8900;

    // `prefix` is static text, e.g. "guest: ".
    void attach(guest& g, const char* prefix);
    [[nodiscard]] const guest_exit& exit() const { return exit_; }
    [[nodiscard]] cpu::io_ports ports() { return {this, &in, &out}; }

private:
    static std::uint32_t in(void* ctx, std::uint16_t port, std::uint8_t size);
    static void out(void* ctx, std::uint16_t port, std::uint8_t size, std::uint32_t value);
    void put(char c);

    guest* guest_ = nullptr;
    const char* prefix_ = "";
    char line_[160] = {};
    unsigned used_ = 0;
    guest_exit exit_{};
};

} // namespace hv::vm
