// hvimage --policy=NAME: which hypervisor image and which guest an ISO gets for a
// guest-mode policy (libhv/vm/policy.hpp names them).
//
//   kernel   --kernel if given, else colors-NAME.elf from the first examples directory
//            that has it (next to this hvimage's build, then the configured build)
//   guest    --guest if given, else color-guest.elf from the same directory
// Without --policy: --kernel or the default kernel, and --guest if given.
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

}  // namespace hv::image
