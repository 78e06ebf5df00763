#include "toolchain/hvrun/classify.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using hv::run::classify;
using hv::run::emulator_exit;
using hv::run::outcome;
using hv::run::run_evidence;
using hv::run::verdict;

// Excerpts of real logs (Bochs 2.7 with `log: -`, QEMU 7.2 with -d cpu_reset).
constexpr char bochs_pass_log[] =
    "00000000000i[      ] debugger using rc file 'bochs.rc'.\n"
    "Next at t=202274941\n"
    "00202274941i[SIM   ] quit_sim called with exit code 0\n";
constexpr char bochs_triple_log[] =
    "00202119585e[CPU0  ] interrupt(): vector must be within IDT table limits, IDT.limit = 0x0\n"
    "00202119585p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution\n"
    "[CPU0  ] exception(): 3rd (13) exception with no resolution\n"
    "00202119585i[SIM   ] quit_sim called with exit code 1\n";
constexpr char bochs_guest_shutdown_log[] =
    "00202183894p[UNMAP ] >>PANIC<< Shutdown port: shutdown requested\n"
    "00202183894i[SIM   ] quit_sim called with exit code 1\n";
constexpr char bochs_svm_panic_log[] =
    "00203011200p[CPU0  ] >>PANIC<< change_cpu_mode: EFER.LMA is set when CR0.PE=0\n"
    "00203011200i[SIM   ] quit_sim called with exit code 1\n";
constexpr char qemu_triple_log[] =
    "CPU Reset (CPU 0)\n"
    "EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000\n"
    "Triple fault\n"
    "CPU Reset (CPU 0)\n";
constexpr char qemu_reset_log[] =
    "CPU Reset (CPU 0)\n"
    "EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000\n";
constexpr char qemu_open_error_log[] =
    "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.rdseed [bit "
    "18]\n"
    "qemu-system-x86_64: -drive file=/x.iso: Could not open '/x.iso': No such file or directory\n";

constexpr char pass_serial[] =
    "fixture: pass\r\nHV-BENCH: noop 1000 42 ticks\r\nHV-RESULT: PASS\r\n";
constexpr int bochs_pass = 0;
constexpr int qemu_pass = 99;

outcome judge(int exit_code, int pass_code, absl::string_view serial, absl::string_view log,
              bool timed_out = false) {
    return classify(
        run_evidence{.exit = emulator_exit{.timed_out = timed_out, .exit_code = exit_code},
                     .pass_exit_code = pass_code,
                     .timeout = absl::Seconds(3),
                     .serial = serial,
                     .emulator_log = log});
}

}  // namespace

TEST_CASE("a pass needs both the result line and the pass exit status") {
    CHECK(judge(bochs_pass, bochs_pass, pass_serial, bochs_pass_log).kind == verdict::pass);
    CHECK(judge(qemu_pass, qemu_pass, pass_serial, qemu_reset_log).kind == verdict::pass);

    // QEMU exits 0 after a triple fault with -no-reboot, and 1 on its own errors.
    outcome wrong_status = judge(0, qemu_pass, pass_serial, qemu_reset_log);
    CHECK(wrong_status.kind == verdict::exit_mismatch);
    CHECK(wrong_status.reason ==
          "HV-RESULT: PASS but the emulator exited with status 0 (a pass is 99)");

    outcome no_line = judge(bochs_pass, bochs_pass, "fixture: pass\n", bochs_pass_log);
    CHECK(no_line.kind == verdict::no_result);
    CHECK(no_line.reason ==
          "no result line (the emulator exited with status 0; its log ends: "
          "00202274941i[SIM   ] quit_sim called with exit code 0)");
}

TEST_CASE("a guest-reported failure carries its code and reason") {
    constexpr char serial[] =
        "HV-PANIC: vmx: VM entry failed\n"
        "HV-RESULT: FAIL code=7 reason=fixture says no\n";
    outcome bochs = judge(1, bochs_pass, serial, bochs_guest_shutdown_log);
    CHECK(bochs.kind == verdict::guest_failure);
    CHECK(bochs.reason == "guest-reported failure code 7: fixture says no");
    CHECK(judge(3, qemu_pass, serial, qemu_reset_log).reason == bochs.reason);

    outcome malformed = judge(3, qemu_pass, "HV-RESULT: FAIL badly\n", qemu_reset_log);
    CHECK(malformed.kind == verdict::guest_failure);
    CHECK(malformed.reason == "guest-reported failure (malformed result line: FAIL badly)");
}

TEST_CASE("the last result line counts") {
    CHECK(judge(bochs_pass, bochs_pass, "HV-RESULT: FAIL code=1 reason=x\nHV-RESULT: PASS\n",
                bochs_pass_log)
              .kind == verdict::pass);
    CHECK(judge(bochs_pass, bochs_pass, "HV-RESULT: PASS\nHV-RESULT: FAIL code=1 reason=x\n",
                bochs_pass_log)
              .kind == verdict::guest_failure);
}

TEST_CASE("triple faults are read from either emulator's log") {
    CHECK(judge(1, bochs_pass, "fixture: about to triple-fault\n", bochs_triple_log).reason ==
          "triple fault");
    outcome qemu = judge(0, qemu_pass, "fixture: about to triple-fault\n", qemu_triple_log);
    CHECK(qemu.kind == verdict::triple_fault);
    CHECK(qemu.reason == "triple fault");
}

TEST_CASE("emulator panics give the emulator's reason; the guest's shutdown is none") {
    outcome svm = judge(1, bochs_pass, "", bochs_svm_panic_log);
    CHECK(svm.kind == verdict::emulator_panic);
    CHECK(svm.reason == "emulator panic: change_cpu_mode: EFER.LMA is set when CR0.PE=0");

    outcome qemu = judge(1, qemu_pass, "", qemu_open_error_log);
    CHECK(qemu.kind == verdict::emulator_panic);
    CHECK(qemu.reason ==
          "emulator panic: -drive file=/x.iso: Could not open '/x.iso': No such file or directory");

    outcome shutdown = judge(1, bochs_pass, "", bochs_guest_shutdown_log);
    CHECK(shutdown.kind == verdict::no_result);
    CHECK(shutdown.reason ==
          "no result line (the emulator exited with status 1; its log ends: "
          "00202183894i[SIM   ] quit_sim called with exit code 1)");

    outcome no_namespace =
        judge(1, bochs_pass, "", "unshare: unshare failed: Operation not permitted\n");
    CHECK(no_namespace.kind == verdict::no_result);
    CHECK(no_namespace.reason ==
          "no result line (the emulator exited with status 1; its log ends: "
          "unshare: unshare failed: Operation not permitted)");
}

TEST_CASE("timeouts, and a guest panic without a result line") {
    outcome hang = judge(-1, bochs_pass, "fixture: hanging\n", "", /*timed_out=*/true);
    CHECK(hang.kind == verdict::timeout);
    CHECK(hang.reason == "timeout after 3 s");
    // Printing PASS is not enough when the emulator never ends.
    CHECK(judge(-1, bochs_pass, pass_serial, "", true).kind == verdict::timeout);

    outcome panic = judge(1, bochs_pass, "HV-PANIC: out of memory\n", bochs_guest_shutdown_log);
    CHECK(panic.kind == verdict::no_result);
    CHECK(panic.reason == "no result line (guest panic: out of memory)");
}

TEST_CASE("an emulator killed by a signal never passes") {
    outcome killed =
        classify(run_evidence{.exit = emulator_exit{.timed_out = false, .exit_code = {}},
                              .pass_exit_code = bochs_pass,
                              .timeout = absl::Seconds(60),
                              .serial = pass_serial,
                              .emulator_log = ""});
    CHECK(killed.kind == verdict::exit_mismatch);
    CHECK(killed.reason == "HV-RESULT: PASS but the emulator was killed by a signal (a pass is 0)");
}
