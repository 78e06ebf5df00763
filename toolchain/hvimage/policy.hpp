// hvimage --policy=NAME: which hypervisor image and which guest an ISO gets for a
// guest-mode policy (libhv/vm/policy.hpp names them).
//
//   kernel   --kernel if given, else colors-NAME.elf from the first examples directory
//            that has it (next to this hvimage's build, then the configured build)
//   guest    --guest if given, else the color test guest from the same directory:
//            color-guest.img (flat, real mode) for a policy that starts its guest in
//            real mode (hvm), color-guest.elf for the others
// Without --policy: --kernel or the default kernel, and --guest if given.
// check_guest: the guest must be one the policy can start, by its own entry or, for a
// flat image without one, in real mode (vm::choose_entry, the hypervisor's own decision).
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace hv::image {

struct image_flags {
    std::string policy{};  // "" = none
    std::string kernel{};  // "" = not given
    std::string guest{};   // "" = not given
};

struct image_choice {
    std::filesystem::path kernel;
    std::optional<std::filesystem::path> guest;
};

// `examples_dirs`: build/examples directories to search, in order. `default_kernel` is
// used without --policy and --kernel.
[[nodiscard]] absl::StatusOr<image_choice> choose_images(const image_flags& flags,
                                                         std::span<const std::filesystem::path> examples_dirs,
                                                         const std::filesystem::path& default_kernel);

// Whether the hypervisor composed with `policy` can start `guest`: refuses exactly what
// vm::choose_entry refuses at boot, with its reason. No policy: nothing to check.
[[nodiscard]] absl::Status check_guest(const std::string& policy, const std::filesystem::path& guest);

}  // namespace hv::image
