// Command-line plumbing shared by hvimage and hvrun, around Abseil flags.
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

namespace hv::host {

class command_line {
public:
    command_line(int argc, char** argv);

    // Abseil flag names are identifiers: accept the dashed spellings too
    // (--run-dir=x is --run_dir=x). Leaves values and everything after "--" alone.
    void accept_dashed_names();

    // Removes every "--name=V" and "--name V" and returns the values in order: Abseil
    // keeps only the last value of a flag given twice.
    std::vector<std::string> take_repeated(absl::string_view name);

    // Parses the rest with Abseil (which handles --help and exits on bad flags) and
    // returns the positional arguments, without the program name.
    std::vector<std::string> parse();

private:
    std::vector<std::string> args_;
};

}  // namespace hv::host
