// How each emulator family is started for one run: its command line and the config
// files it reads, all pointing into the run folder. Pure, so it is unit-tested.
#pragma once

#include <filesystem>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "toolchain/hvrun/targets.hpp"

namespace hv::run {

// Files in a run folder.
inline constexpr char serial_log_name[] = "serial.log";
inline constexpr char emulator_log_name[] = "emulator.log";
inline constexpr char command_name[] = "command.txt";
inline constexpr char result_name[] = "result.txt";

struct run_paths {
    std::filesystem::path image;    // absolute
    std::filesystem::path run_dir;  // absolute
    // An ELF rather than an ISO: QEMU loads it with -kernel (multiboot1 or PVH entry).
    bool direct_kernel = false;
    std::string kernel_cmdline;
};

struct machine {
    int cpus = 1;
    int memory_mb = 256;
};

struct config_file {
    std::string name;  // inside the run folder
    std::string text;
};

struct launch_plan {
    std::vector<std::string> argv;
    std::vector<config_file> files;  // to write before starting argv
    int pass_exit_code;              // what the emulator exits with on a guest pass
};

[[nodiscard]] absl::StatusOr<launch_plan> plan_launch(const target& t, const run_paths& paths,
                                                      const machine& m, bool running_as_root);

// Are the emulator and its firmware installed? The error names the Debian packages.
[[nodiscard]] absl::Status check_installed(family f);

}  // namespace hv::run
