// The one way the host tools run another program: its own process group, stdin from
// /dev/null, stdout and stderr into one file, an optional deadline after which the
// whole group is killed, and a callback polled while it runs (hvrun tails the serial
// log with it).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hv::host {

struct process_spec {
    std::vector<std::string> argv;
    std::filesystem::path output;
    absl::Duration timeout = absl::InfiniteDuration();
    std::function<void()> on_poll;
};

struct process_exit {
    bool timed_out = false;
    int exit_code = -1;  // -1 when it ended by a signal
    int signal = 0;
};

// Fails only when the program cannot be started at all.
[[nodiscard]] absl::StatusOr<process_exit> run_process(const process_spec& spec);

}  // namespace hv::host
