// hvrun: boots an hvimage ISO on one emulated machine and says whether it passed.
#include <fstream>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "toolchain/common/cli.hpp"
#include "toolchain/common/files.hpp"
#include "toolchain/common/process.hpp"
#include "toolchain/hvrun/bench.hpp"
#include "toolchain/hvrun/classify.hpp"
#include "toolchain/hvrun/launch.hpp"
#include "toolchain/hvrun/targets.hpp"

ABSL_FLAG(std::string, target, "", "machine to boot on (see the list above)");
ABSL_FLAG(double, timeout, 60, "seconds before the emulator is killed");
ABSL_FLAG(std::string, run_dir, "runs", "where each run gets its own folder");
ABSL_FLAG(std::string, cmdline, "",
          "kernel command line when IMAGE is an ELF booted directly (qemu targets only)");
ABSL_FLAG(int, cpus, 1, "emulated CPUs");
ABSL_FLAG(int, memory, 256, "guest memory in MB (Bochs takes at most 2048)");
ABSL_FLAG(std::string, bench_out, "",
          "on a pass, write the HV-BENCH lines here as Google Benchmark JSON");

namespace {

namespace fs = std::filesystem;
using hv::run::outcome;
using hv::run::verdict;

std::string usage_text() {
    std::string text =
        "boots an image on an emulator and checks the image protocol's result.\n"
        "usage: hvrun --target=T [--timeout=SECONDS] [--run-dir=DIR] [--cpus=N]\n"
        "             [--memory=MB] [--bench-out=FILE.json] [--cmdline=STR] IMAGE.iso|IMAGE.elf\n"
        "Flag names may be spelled with dashes or underscores.\n\ntargets:\n";
    for (const hv::run::target& t : hv::run::all_targets()) {
        absl::StrAppend(&text, "  ", t.name, std::string(22 - t.name.size(), ' '), t.summary, "\n");
    }
    absl::StrAppend(
        &text,
        "\nA run passes when the emulator's exit status says so and the serial log ends\n"
        "with HV-RESULT: PASS. Anything else prints one line, hvrun: FAIL: <reason>.\n"
        "\nexit codes:\n"
        "   0  pass\n"
        "   1  bad command line\n"
        "   2  guest-reported failure (HV-RESULT: FAIL code=N reason=...)\n"
        "   3  no result line on the serial port\n"
        "   4  triple fault\n"
        "   5  emulator panic (the emulator's own reason is printed)\n"
        "   6  timeout\n"
        "   7  HV-RESULT: PASS, but the emulator's exit status says otherwise\n"
        "   8  image not found\n"
        "   9  unknown target\n"
        "  10  missing emulator (the Debian packages to install are printed)\n"
        "  11  internal error (run folder, fork, ...)\n");
    return text;
}

// Copies what the emulator appends to the serial log to our stdout as it arrives.
class serial_follower {
public:
    explicit serial_follower(fs::path path) : path_(std::move(path)) {}
    ~serial_follower() {
        if (fd_ >= 0) ::close(fd_);
    }
    serial_follower(const serial_follower&) = delete;
    serial_follower& operator=(const serial_follower&) = delete;

    void pump() {
        if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) return;
        char buf[4096];
        ssize_t got;
        while ((got = ::read(fd_, buf, sizeof buf)) > 0) {
            std::fwrite(buf, 1, static_cast<std::size_t>(got), stdout);
            at_line_start_ = buf[got - 1] == '\n';
        }
        std::fflush(stdout);
    }

    void end_line() {
        if (!at_line_start_) std::fputc('\n', stdout);
        at_line_start_ = true;
        std::fflush(stdout);
    }

private:
    fs::path path_;
    int fd_ = -1;
    bool at_line_start_ = true;
};

struct run_request {
    const hv::run::target* target;
    fs::path image;
    bool direct_kernel;
    std::string kernel_cmdline;
    hv::run::machine machine;
    absl::Duration timeout;
    fs::path runs_root;
    std::string bench_out;
};

bool is_elf(const fs::path& image) {
    std::ifstream in(image, std::ios::binary);
    char magic[4] = {};
    in.read(magic, sizeof magic);
    return in.gcount() == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
}

outcome fail(verdict kind, std::string reason) {
    return {kind, std::move(reason)};
}

// The run to make, or why there is none: everything that can be wrong before an
// emulator starts.
std::variant<run_request, outcome> read_request(hv::host::command_line& cli) {
    cli.accept_dashed_names();
    std::vector<std::string> positional = cli.parse();
    const std::string target_name = absl::GetFlag(FLAGS_target);
    const hv::run::target* target = hv::run::find_target(target_name);
    if (target == nullptr) {
        return fail(
            verdict::unknown_target,
            absl::StrCat(target_name.empty() ? "no --target given"
                                             : absl::StrCat("unknown target '", target_name, "'"),
                         " (valid: ", hv::run::target_names(), ")"));
    }
    if (positional.size() != 1) {
        return fail(verdict::bad_command_line,
                    "bad command line: expected exactly one IMAGE.iso (see --help)");
    }
    run_request req{
        .target = target,
        .image = positional.front(),
        .direct_kernel = false,
        .kernel_cmdline = absl::GetFlag(FLAGS_cmdline),
        .machine = {.cpus = absl::GetFlag(FLAGS_cpus), .memory_mb = absl::GetFlag(FLAGS_memory)},
        .timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout)),
        .runs_root = absl::GetFlag(FLAGS_run_dir),
        .bench_out = absl::GetFlag(FLAGS_bench_out)};
    if (req.machine.cpus < 1 || req.machine.cpus > 64 || req.machine.memory_mb < 16 ||
        (target->emulator == hv::run::family::bochs && req.machine.memory_mb > 2048) ||
        req.timeout <= absl::ZeroDuration()) {
        return fail(verdict::bad_command_line,
                    "bad command line: --cpus, --memory or --timeout out of range");
    }
    std::error_code ec;
    if (!fs::is_regular_file(req.image, ec)) {
        return fail(verdict::image_not_found,
                    absl::StrCat("image not found: ", req.image.string()));
    }
    req.direct_kernel = is_elf(req.image);
    if (req.direct_kernel && target->emulator != hv::run::family::qemu) {
        return fail(verdict::bad_command_line,
                    "bad command line: an ELF boots directly only on qemu targets; make an ISO with hvimage");
    }
    if (!req.direct_kernel && !req.kernel_cmdline.empty()) {
        return fail(verdict::bad_command_line,
                    "bad command line: --cmdline is for ELF images; an ISO carries its own (hvimage --cmdline)");
    }
    if (absl::Status installed = hv::run::check_installed(target->emulator); !installed.ok()) {
        return fail(verdict::missing_emulator,
                    absl::StrCat("missing emulator: ", installed.message()));
    }
    return req;
}

// <runs>/<target>-<image>-<timestamp>-<pid>: one emulator per hvrun process, so the
// pid keeps concurrent runs apart.
absl::StatusOr<fs::path> make_run_dir(const run_request& req) {
    std::string name = absl::StrCat(
        req.target->name, "-", req.image.stem().string(), "-",
        absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()), "-", ::getpid());
    fs::path dir = fs::absolute(req.runs_root) / name;
    std::error_code ec;
    fs::create_directories(req.runs_root, ec);
    if (ec || !fs::create_directory(dir, ec)) {
        return absl::InternalError(absl::StrCat("cannot create run folder ", dir.string(),
                                                ec ? absl::StrCat(": ", ec.message()) : ""));
    }
    return dir;
}

std::string host_name() {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    return name;
}

absl::Status write_bench_json(const run_request& req, absl::string_view serial) {
    hv::run::bench_scan scan = hv::run::scan_bench_lines(serial);
    for (const std::string& line : scan.malformed) {
        std::cerr << "hvrun: warning: ignoring malformed bench line: " << line << "\n";
    }
    hv::run::bench_context context{
        .date = absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::LocalTimeZone()),
        .host_name = host_name(),
        .image = fs::absolute(req.image).string(),
        .target = std::string(req.target->name),
        .cpus = req.machine.cpus};
    return hv::host::write_file(req.bench_out, hv::run::bench_json(context, scan.results));
}

outcome run(const run_request& req) {
    absl::StatusOr<fs::path> dir = make_run_dir(req);
    if (!dir.ok()) return fail(verdict::internal_error, std::string(dir.status().message()));
    std::cout << "hvrun: run folder " << dir->string() << std::endl;

    const hv::run::run_paths paths{.image = fs::absolute(req.image),
                                   .run_dir = *dir,
                                   .direct_kernel = req.direct_kernel,
                                   .kernel_cmdline = req.kernel_cmdline};
    absl::StatusOr<hv::run::launch_plan> plan =
        hv::run::plan_launch(*req.target, paths, req.machine, ::geteuid() == 0);
    if (!plan.ok()) return fail(verdict::internal_error, std::string(plan.status().message()));
    std::vector<std::string> quoted;
    for (const std::string& arg : plan->argv) quoted.push_back(hv::host::shell_quote(arg));
    plan->files.push_back({std::string(hv::run::command_name), absl::StrJoin(quoted, " ") + "\n"});
    // An empty serial log first, so the folder has one even if the emulator never starts.
    plan->files.push_back({hv::run::serial_log_name, ""});
    for (const hv::run::config_file& file : plan->files) {
        if (absl::Status s = hv::host::write_file(*dir / file.name, file.text); !s.ok()) {
            return fail(verdict::internal_error, std::string(s.message()));
        }
    }

    serial_follower serial(*dir / hv::run::serial_log_name);
    absl::StatusOr<hv::host::process_exit> done = hv::host::run_process({
        .argv = plan->argv,
        .output = *dir / hv::run::emulator_log_name,
        .timeout = req.timeout,
        .on_poll = [&] { serial.pump(); },
    });
    serial.end_line();
    if (!done.ok()) return fail(verdict::internal_error, std::string(done.status().message()));

    const std::string serial_text =
        hv::host::read_file(*dir / hv::run::serial_log_name).value_or("");
    const std::string emulator_log =
        hv::host::read_file(*dir / hv::run::emulator_log_name).value_or("");
    hv::run::emulator_exit exit{
        .timed_out = done->timed_out,
        .exit_code = done->signal == 0 ? std::optional(done->exit_code) : std::nullopt};
    outcome result = hv::run::classify({.exit = exit,
                                        .pass_exit_code = plan->pass_exit_code,
                                        .timeout = req.timeout,
                                        .serial = serial_text,
                                        .emulator_log = emulator_log});

    if (result.kind == verdict::pass && !req.bench_out.empty()) {
        if (absl::Status s = write_bench_json(req, serial_text); !s.ok()) {
            result = fail(verdict::internal_error, std::string(s.message()));
        }
    }
    const std::string summary =
        result.kind == verdict::pass ? "PASS" : absl::StrCat("FAIL: ", result.reason);
    (void)hv::host::write_file(
        *dir / hv::run::result_name,
        absl::StrCat(summary, "\nexit code ", static_cast<int>(result.kind), "\n"));
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    absl::SetProgramUsageMessage(usage_text());
    absl::FlagsUsageConfig usage;
    usage.contains_help_flags = [](absl::string_view file) {
        return absl::StrContains(file, "toolchain/hvrun");
    };
    absl::SetFlagsUsageConfig(usage);

    hv::host::command_line cli(argc, argv);
    std::variant<run_request, outcome> req = read_request(cli);
    const outcome result = std::holds_alternative<run_request>(req)
                               ? run(std::get<run_request>(req))
                               : std::get<outcome>(std::move(req));
    if (result.kind == verdict::pass) {
        std::cout << "hvrun: PASS" << std::endl;
    } else {
        std::cerr << "hvrun: FAIL: " << result.reason << std::endl;
    }
    return static_cast<int>(result.kind);
}
