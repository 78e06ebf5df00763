// One image per policy (meson defines HV_POLICY, e.g. "pvh"): boots the `guest` module
// under that policy, by the entry vm::choose_entry picks, and tells the guest which color
// and entry to expect. hvimage --policy=NAME picks colors-NAME.elf and, without --guest,
// packs the color test guest (guest.cpp): color-guest.img for hvm, color-guest.elf else.
#include "libhv/rt/runtime.hpp"
#include "libhv/vm/run.hpp"

HV_PROGRAM_QUIET(colors, "colors", "boot the `guest` module under this image's policy (" HV_POLICY ")") {
    return hv::vm::run_guest(hv::vm::preset<HV_POLICY>(), ctx, {.tell_color = true});
}
