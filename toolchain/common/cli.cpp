#include "toolchain/common/cli.hpp"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hv::host {

command_line::command_line(int argc, char** argv) : args_(argv, argv + argc) {}

void command_line::accept_dashed_names() {
    for (std::size_t i = 1; i < args_.size(); ++i) {
        std::string& arg = args_[i];
        if (arg == "--") break;
        const std::size_t start = arg.find_first_not_of('-');
        if (start == 0 || start == std::string::npos) continue;
        const std::size_t end = std::min(arg.find('='), arg.size());
        std::replace(arg.begin() + static_cast<std::ptrdiff_t>(start),
                     arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
        // "--flag value": the value is not a flag name, whatever it looks like.
        const absl::CommandLineFlag* flag =
            absl::FindCommandLineFlag(absl::string_view(arg).substr(start, end - start));
        if (flag != nullptr && end == arg.size() && !flag->IsOfType<bool>()) ++i;
    }
}

std::vector<std::string> command_line::take_repeated(absl::string_view name) {
    const std::string spelled[] = {absl::StrCat("--", name), absl::StrCat("-", name)};
    std::vector<std::string> values;
    std::vector<std::string> rest;
    for (std::size_t i = 0; i < args_.size(); ++i) {
        const std::string& arg = args_[i];
        if (arg == "--") {
            rest.insert(rest.end(), args_.begin() + static_cast<std::ptrdiff_t>(i), args_.end());
            break;
        }
        bool taken = false;
        for (const std::string& flag : spelled) {
            if (arg == flag && i + 1 < args_.size()) {
                values.push_back(args_[++i]);
                taken = true;
            } else if (absl::StartsWith(arg, flag + "=")) {
                values.push_back(arg.substr(flag.size() + 1));
                taken = true;
            }
            if (taken) break;
        }
        if (!taken) rest.push_back(arg);
    }
    args_ = std::move(rest);
    return values;
}

std::vector<std::string> command_line::parse() {
    std::vector<char*> argv;
    for (std::string& arg : args_) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> positional =
        absl::ParseCommandLine(static_cast<int>(argv.size() - 1), argv.data());
    return {positional.begin() + 1, positional.end()};
}

}  // namespace hv::host
