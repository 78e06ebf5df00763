// Turns what a run left behind (exit status, serial log, emulator log) into one
// verdict. Pure: the unit tests feed it real Bochs and QEMU logs.
#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/time/time.h"

namespace hv::run {

// Also hvrun's exit codes, each documented in `hvrun --help`.
enum class verdict : int {
    pass = 0,
    bad_command_line = 1,  // also what Abseil's flag parser exits with
    guest_failure = 2,
    no_result = 3,
    triple_fault = 4,
    emulator_panic = 5,
    timeout = 6,
    exit_mismatch = 7,
    image_not_found = 8,
    unknown_target = 9,
    missing_emulator = 10,
    internal_error = 11,
};

struct emulator_exit {
    bool timed_out = false;
    std::optional<int> exit_code;  // empty when it died by a signal
};

struct outcome {
    verdict kind;
    std::string reason;  // empty on pass; the text after "hvrun: FAIL: "
};

struct run_evidence {
    emulator_exit exit;
    int pass_exit_code;
    absl::Duration timeout;
    absl::string_view serial;
    absl::string_view emulator_log;
};

[[nodiscard]] outcome classify(const run_evidence& run);

}  // namespace hv::run
