// Running a kernel module as a guest under a policy: the common runner of every image
// that boots a guest (examples/boot-guest with `bare`, examples/colors per preset).
//
//   HV_PROGRAM(colors, "colors", "...") { return hv::vm::run_guest(hv::vm::preset<"pvh">(), ctx); }
//
// It refuses a policy whose parts this build has not wired (vm::missing_part), then:
// enables VMX or SVM, gives the guest PC RAM (guest-ram=MiB on libhv's command line,
// default 64; for `bare`, mmu=shadow|nested picks the paging), loads the `guest` module by
// the entry vm::choose_entry picks (the policy's preferred start if the kernel offers it,
// else the kernel's own entry) with the other boot modules as its modules, attaches the policy's devices (debug_ports, or the emulated
// PC through vm::hvm_devices, which then owns COM1 and the exit ports) and runs vCPU 0 to
// its end. The run's result is the guest's (the value it wrote to port 0xf4), or with
// end=poweroff on libhv's command line (emulated PC only), whether it powered off (ACPI S5).
// Metal only.
#pragma once
#include "libhv/core/result.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/policy.hpp"

namespace hv::vm {

struct run_options {
    // Append "expect=<policy> expect-entry=<protocol> hv-start-tsc=<ticks>" to the guest's
    // command line, for the color test guest (which checks its color, entry included,
    // and reports the start-up benchmarks).
    bool tell_color = false;
};

[[nodiscard]] status run_guest(const policy& p, rt::context& ctx, const run_options& opt = {});

} // namespace hv::vm
