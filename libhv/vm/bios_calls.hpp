// dev::bios (the BIOS services of a real-mode start) wired to a running guest: the ROM
// stubs at 0xf0000 (in hvm_devices' ROM), the IVT and BDA words in RAM, and vCPU 0's
// VMCALL/VMMCALL exits. Metal only; the services are host-tested (tests/unit/dev).
//
//   bios_calls bios{g, pc.machine, disk};
//   HV_TRY(bios.install());   // after hvm_devices::attach (the ROM exists), before loading
//   HV_TRY(bios.attach());    // after hvm_devices::start: takes the guest's hypercall exits
//
// A BIOS call: the stub's VMCALL exits; the handler reads the vector from CS:IP
// (dev::bios::vector_at), the FLAGS image at SS:SP+4, services the call, writes the
// registers and the FLAGS image back and skips the VMCALL; the stub's IRET returns. A
// VMCALL anywhere else (or in protected mode) gets #UD, as on a CPU outside VMX/SVM.
// INT 18h/19h and a wait for a key end the run (the vCPU fails, naming why).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include "libhv/dev/bios.hpp"
#include "libhv/dev/machine.hpp"
#include "libhv/vm/guest.hpp"

namespace hv::vm {

class bios_calls final : private dev::bios::host {
public:
    bios_calls(guest& g, dev::machine& m, std::span<std::uint8_t> disk) : g_{&g}, m_{&m}, disk_{disk} {}

    [[nodiscard]] status install();
    [[nodiscard]] status attach();
    [[nodiscard]] const dev::bios::stats& stats() const;
    [[nodiscard]] std::span<const dev::bios::e820_entry> memory_map() const { return {map_.data(), map_count_}; }

private:
    bool read(std::uint64_t gpa, void* dst, std::size_t n) override;
    bool write(std::uint64_t gpa, const void* src, std::size_t n) override;
    void teletype(std::uint8_t ch) override;
    void report(std::string_view line) override;
    std::uint64_t unix_seconds() override;
    static void on_call(cpu::vcpu& v, const cpu::exit_info& e);
    void serve(cpu::vcpu& v);

    guest* g_;
    dev::machine* m_;
    std::span<std::uint8_t> disk_;
    std::array<dev::bios::e820_entry, 16> map_{};
    std::size_t map_count_ = 0;
    std::optional<dev::bios::services> services_;
};

} // namespace hv::vm
