#include "toolchain/hvimage/policy.hpp"

#include <fstream>
#include <iterator>
#include <span>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libhv/loader/loader.hpp"
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
        const bool real_mode = hv::vm::find_preset(flags.policy)->boot == hv::vm::boot_protocol::real_mode;
        const fs::path guest = fs::path("colors") / (real_mode ? "color-guest.img" : "color-guest.elf");
        std::optional<fs::path> found = first_existing(examples_dirs, guest);
        if (!found) {
            return absl::NotFoundError(absl::StrCat("policy ", flags.policy, ": no color test guest at ",
                                                    searched(examples_dirs, guest), " (or give --guest)"));
        }
        c.guest = *found;
    }
    return c;
}

absl::Status check_guest(const std::string& policy, const fs::path& guest) {
    const auto p = hv::vm::find_preset(policy);
    if (!p) return absl::OkStatus();
    std::ifstream in(guest, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read guest ", guest.string()));
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto entry = hv::vm::choose_entry(*p, std::as_bytes(std::span<const char>(bytes)));
    if (!entry) {
        return absl::InvalidArgumentError(
            absl::StrCat("policy ", policy, " cannot start guest ", guest.string(), ": ", entry.err().what));
    }
    return absl::OkStatus();
}

}  // namespace hv::image
