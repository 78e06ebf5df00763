// The machines hvrun can boot an image on. Add a target with one row in targets.cpp.
#pragma once

#include <span>
#include <string>
#include "absl/strings/string_view.h"

namespace hv::run {

enum class family { bochs, qemu };

struct target {
    absl::string_view name;
    family emulator;
    absl::string_view cpu;    // Bochs `cpu: model=`, QEMU `-cpu`
    absl::string_view cpuid;  // Bochs `cpuid:` options, only for model=bx_generic
    absl::string_view summary;
};

[[nodiscard]] std::span<const target> all_targets();
[[nodiscard]] const target* find_target(absl::string_view name);
[[nodiscard]] std::string target_names();  // "a, b, c" for messages

}  // namespace hv::run
