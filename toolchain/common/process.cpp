#include "toolchain/common/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hv::host {

namespace {

constexpr absl::Duration poll_interval = absl::Milliseconds(20);
constexpr int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP};

// If we are told to stop while a child runs, its process group goes first: it is
// not in ours, so nobody else would reap an emulator left behind.
volatile sig_atomic_t running_group = 0;

extern "C" void kill_group_and_die(int sig) {
    if (running_group > 0) ::kill(-running_group, SIGKILL);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

class signal_guard {
public:
    explicit signal_guard(pid_t group) {
        running_group = group;
        struct sigaction action = {};
        action.sa_handler = kill_group_and_die;
        sigemptyset(&action.sa_mask);
        for (std::size_t i = 0; i < std::size(forwarded_signals); ++i) {
            ::sigaction(forwarded_signals[i], &action, &saved_[i]);
        }
    }
    ~signal_guard() {
        for (std::size_t i = 0; i < std::size(forwarded_signals); ++i) {
            ::sigaction(forwarded_signals[i], &saved_[i], nullptr);
        }
        running_group = 0;
    }
    signal_guard(const signal_guard&) = delete;
    signal_guard& operator=(const signal_guard&) = delete;

private:
    struct sigaction saved_[std::size(forwarded_signals)] = {};
};

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const std::vector<char*>& argv, const char* output, int error_pipe) {
    ::setpgid(0, 0);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(output, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0 && out >= 0 && ::dup2(in, STDIN_FILENO) >= 0 && ::dup2(out, STDOUT_FILENO) >= 0 &&
        ::dup2(out, STDERR_FILENO) >= 0) {
        ::execvp(argv[0], argv.data());
    }
    int err = errno;
    [[maybe_unused]] auto ignored = ::write(error_pipe, &err, sizeof err);
    ::_exit(127);
}

process_exit decode(int status) {
    process_exit result;
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
    return result;
}

}  // namespace

absl::StatusOr<process_exit> run_process(const process_spec& spec) {
    if (spec.argv.empty()) return absl::InvalidArgumentError("empty command line");
    std::vector<char*> argv;
    for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const std::string output = spec.output.string();

    int error_pipe[2];
    if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
        return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    pid_t pid = ::fork();
    if (pid < 0) {
        ::close(error_pipe[0]);
        ::close(error_pipe[1]);
        return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) exec_child(argv, output.c_str(), error_pipe[1]);

    ::setpgid(pid, pid);  // also here, so the group exists before we might kill it
    signal_guard guard(pid);
    ::close(error_pipe[1]);
    int exec_errno = 0;
    ssize_t got = ::read(error_pipe[0], &exec_errno, sizeof exec_errno);
    ::close(error_pipe[0]);
    if (got == sizeof exec_errno) {
        ::waitpid(pid, nullptr, 0);
        return absl::FailedPreconditionError(
            absl::StrCat("cannot run ", spec.argv[0], ": ", std::strerror(exec_errno)));
    }

    const absl::Time deadline = absl::Now() + spec.timeout;
    for (;;) {
        int status = 0;
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            if (spec.on_poll) spec.on_poll();
            return decode(status);
        }
        if (done < 0 && errno != EINTR) {
            return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
        }
        if (absl::Now() >= deadline) {
            ::kill(-pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            if (spec.on_poll) spec.on_poll();
            process_exit result = decode(status);
            result.timed_out = true;
            return result;
        }
        if (spec.on_poll) spec.on_poll();
        absl::SleepFor(poll_interval);
    }
}

}  // namespace hv::host
