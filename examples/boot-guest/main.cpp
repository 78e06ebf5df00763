// Boots the kernel given as the module named `guest` (multiboot1/2, PVH or Linux) in a
// guest of its own under libhv's least policy (`bare`: PC RAM, nested paging, one vCPU,
// COM1 and the exit ports). The run's result is the guest's: PASS only when it writes
// libhv's pass value to port 0xf4.
//
//   hvimage --kernel boot-guest.elf --guest KERNEL --guest-cmdline "..." --cmdline run=vm.boot
//   optional on libhv's command line: guest-ram=MiB (default 64)
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/run.hpp"

HV_PROGRAM(vm_boot, "vm.boot", "boot the `guest` module in a guest with nested paging") {
    return hv::vm::run_guest(hv::vm::preset<"bare">(), ctx);
}
