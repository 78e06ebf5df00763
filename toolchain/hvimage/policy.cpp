#include "toolchain/hvimage/policy.hpp"

#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libhv/vm/policy.hpp"

namespace hv::image {

namespace {

namespace fs = std::filesystem;

std::string known_policies() {
    std::vector<std::string> names;
    for (const hv::vm::policy& p : hv::vm::presets::all) names.emplace_back(p.name);
    return absl::StrJoin(names, ", ");
}

std::optional<fs::path> first_existing(std::span<const fs::path> dirs, const fs::path& relative) {
    for (const fs::path& d : dirs) {
        std::error_code ec;
        if (fs::is_regular_file(d / relative, ec)) return d / relative;
    }
    return std::nullopt;
}

std::string searched(std::span<const fs::path> dirs, const fs::path& relative) {
    std::vector<std::string> paths;
    for (const fs::path& d : dirs) paths.push_back((d / relative).string());
    return paths.empty() ? std::string("no examples directory known") : absl::StrJoin(paths, ", ");
}

}  // namespace

absl::StatusOr<image_choice> choose_images(const image_flags& flags, std::span<const fs::path> examples_dirs,
                                           const fs::path& default_kernel) {
    image_choice c;
    if (!flags.guest.empty()) c.guest = flags.guest;
    if (flags.policy.empty()) {
        c.kernel = flags.kernel.empty() ? default_kernel : fs::path(flags.kernel);
        return c;
    }
    if (flags.policy == "pv") {
        return absl::UnimplementedError(HV_POLICY_PV_REFUSED);
    }
    if (!hv::vm::find_preset(flags.policy)) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown policy '", flags.policy, "'; choose one of ", known_policies()));
    }
    if (!flags.kernel.empty()) {
        c.kernel = flags.kernel;
    } else {
        const fs::path image = fs::path("colors") / absl::StrCat("colors-", flags.policy, ".elf");
        std::optional<fs::path> found = first_existing(examples_dirs, image);
        if (!found) {
            return absl::NotFoundError(absl::StrCat("policy ", flags.policy, ": no image at ",
                                                    searched(examples_dirs, image),
                                                    " (build it with ninja, or give --kernel)"));
        }
        c.kernel = *found;
    }
    if (!c.guest) {
        const fs::path guest = fs::path("colors") / "color-guest.elf";
        std::optional<fs::path> found = first_existing(examples_dirs, guest);
        if (!found) {
            return absl::NotFoundError(absl::StrCat("policy ", flags.policy, ": no color test guest at ",
                                                    searched(examples_dirs, guest), " (or give --guest)"));
        }
        c.guest = *found;
    }
    return c;
}

}  // namespace hv::image
