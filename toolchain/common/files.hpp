// Small filesystem helpers shared by the host tools.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hv::host {

[[nodiscard]] absl::StatusOr<std::string> read_file(const std::filesystem::path& path);
[[nodiscard]] absl::Status write_file(const std::filesystem::path& path, absl::string_view text);

// Searches $PATH like execvp does; nullopt if no executable of that name exists.
[[nodiscard]] std::optional<std::filesystem::path> find_program(absl::string_view name);

// A fresh directory <parent>/<stem>-XXXXXX that no concurrent run can share.
[[nodiscard]] absl::StatusOr<std::filesystem::path> make_unique_dir(
    const std::filesystem::path& parent, absl::string_view stem);

// `text` quoted so a POSIX shell reads it back as one word (for logged command lines).
[[nodiscard]] std::string shell_quote(absl::string_view text);

}  // namespace hv::host
