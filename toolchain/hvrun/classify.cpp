#include "toolchain/hvrun/classify.hpp"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hv::run {

namespace {

constexpr absl::string_view result_tag = "HV-RESULT: ";
constexpr absl::string_view panic_tag = "HV-PANIC: ";
constexpr absl::string_view fail_code_tag = "FAIL code=";
constexpr absl::string_view fail_reason_tag = " reason=";

// Bochs: "00202119585p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no
// resolution" (reset_on_triple_fault=0). QEMU with -d cpu_reset: "Triple fault".
constexpr absl::string_view bochs_triple_fault = "exception with no resolution";
constexpr absl::string_view qemu_triple_fault = "Triple fault";
constexpr absl::string_view bochs_panic_tag = ">>PANIC<< ";
// The guest's own "Shutdown" on port 0x8900 is how it ends a failed run, not a panic.
constexpr absl::string_view bochs_guest_shutdown = "Shutdown port: shutdown requested";
constexpr absl::string_view qemu_error_tag = "qemu-system-x86_64: ";

std::vector<absl::string_view> lines_of(absl::string_view text) {
    std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
    for (absl::string_view& line : lines) line = absl::StripTrailingAsciiWhitespace(line);
    return lines;
}

// The rest of the last line that contains `tag`, from just after it.
std::optional<absl::string_view> last_tagged(absl::string_view text, absl::string_view tag) {
    std::optional<absl::string_view> found;
    for (absl::string_view line : lines_of(text)) {
        if (std::size_t at = line.find(tag); at != absl::string_view::npos) {
            found = line.substr(at + tag.size());
        }
    }
    return found;
}

std::optional<std::string> emulator_panic(absl::string_view log) {
    for (absl::string_view line : lines_of(log)) {
        if (std::size_t at = line.find(bochs_panic_tag); at != absl::string_view::npos) {
            absl::string_view what = line.substr(at + bochs_panic_tag.size());
            if (what != bochs_guest_shutdown) return std::string(what);
        }
        if (absl::StartsWith(line, qemu_error_tag) && !absl::StrContains(line, "warning:")) {
            return std::string(line.substr(qemu_error_tag.size()));
        }
    }
    return std::nullopt;
}

std::optional<absl::string_view> last_line(absl::string_view log) {
    std::vector<absl::string_view> lines = lines_of(log);
    for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
        if (!line->empty()) return *line;
    }
    return std::nullopt;
}

bool triple_faulted(absl::string_view log) {
    for (absl::string_view line : lines_of(log)) {
        if (absl::StrContains(line, bochs_triple_fault) ||
            absl::StartsWith(line, qemu_triple_fault)) {
            return true;
        }
    }
    return false;
}

std::string guest_failure_reason(absl::string_view result) {
    // "FAIL code=<n> reason=<text>"
    absl::string_view rest = result;
    if (absl::ConsumePrefix(&rest, fail_code_tag)) {
        std::size_t end = rest.find(fail_reason_tag);
        int code = 0;
        if (absl::SimpleAtoi(rest.substr(0, end), &code)) {
            std::string reason = absl::StrCat("guest-reported failure code ", code);
            if (end != absl::string_view::npos) {
                absl::StrAppend(&reason, ": ", rest.substr(end + fail_reason_tag.size()));
            }
            return reason;
        }
    }
    return absl::StrCat("guest-reported failure (malformed result line: ", result, ")");
}

std::string describe_exit(const emulator_exit& exit) {
    if (!exit.exit_code) return "the emulator was killed by a signal";
    return absl::StrCat("the emulator exited with status ", *exit.exit_code);
}

}  // namespace

outcome classify(const run_evidence& run) {
    const std::optional<absl::string_view> result = last_tagged(run.serial, result_tag);
    if (result && absl::StartsWith(*result, "FAIL")) {
        return {verdict::guest_failure, guest_failure_reason(*result)};
    }
    if (triple_faulted(run.emulator_log)) return {verdict::triple_fault, "triple fault"};
    if (std::optional<std::string> panic = emulator_panic(run.emulator_log)) {
        return {verdict::emulator_panic, absl::StrCat("emulator panic: ", *panic)};
    }
    if (run.exit.timed_out) {
        return {verdict::timeout,
                absl::StrFormat("timeout after %g s", absl::ToDoubleSeconds(run.timeout))};
    }
    if (result && *result == "PASS") {
        if (run.exit.exit_code == run.pass_exit_code) return {verdict::pass, ""};
        return {verdict::exit_mismatch,
                absl::StrCat("HV-RESULT: PASS but ", describe_exit(run.exit), " (a pass is ",
                             run.pass_exit_code, ")")};
    }
    std::string reason = "no result line";
    if (result) {
        absl::StrAppend(&reason, " (malformed: HV-RESULT: ", *result, ")");
    } else if (std::optional<absl::string_view> panic = last_tagged(run.serial, panic_tag)) {
        absl::StrAppend(&reason, " (guest panic: ", *panic, ")");
    } else {
        // Whatever ended the emulator (unshare refusing a namespace, say) logged it last.
        absl::StrAppend(&reason, " (", describe_exit(run.exit));
        if (std::optional<absl::string_view> last = last_line(run.emulator_log)) {
            absl::StrAppend(&reason, "; its log ends: ", *last);
        }
        reason += ")";
    }
    return {verdict::no_result, std::move(reason)};
}

}  // namespace hv::run
