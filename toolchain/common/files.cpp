#include "toolchain/common/files.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hv::host {

namespace fs = std::filesystem;

absl::StatusOr<std::string> read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return absl::NotFoundError(absl::StrCat(path.string(), ": ", std::strerror(errno)));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
    return std::move(text).str();
}

absl::Status write_file(const fs::path& path, absl::string_view text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot write ", path.string(), ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
}

std::optional<fs::path> find_program(absl::string_view name) {
    if (name.find('/') != absl::string_view::npos) {
        if (::access(std::string(name).c_str(), X_OK) == 0) return fs::path(std::string(name));
        return std::nullopt;
    }
    const char* path_env = std::getenv("PATH");
    if (path_env == nullptr) return std::nullopt;
    for (absl::string_view dir : absl::StrSplit(path_env, ':', absl::SkipEmpty())) {
        fs::path candidate = fs::path(std::string(dir)) / std::string(name);
        std::error_code ec;
        if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    return std::nullopt;
}

absl::StatusOr<fs::path> make_unique_dir(const fs::path& parent, absl::string_view stem) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
    }
    std::string templ = (parent / absl::StrCat(stem, "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) {
        return absl::PermissionDeniedError(absl::StrCat(
            "cannot create a directory in ", parent.string(), ": ", std::strerror(errno)));
    }
    return fs::path(templ);
}

std::string shell_quote(absl::string_view text) {
    bool plain = !text.empty() &&
                 text.find_first_not_of(
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") ==
                     absl::string_view::npos;
    if (plain) return std::string(text);
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    quoted += '\'';
    return quoted;
}

}  // namespace hv::host
