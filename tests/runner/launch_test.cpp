#include "toolchain/hvrun/launch.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "toolchain/hvrun/targets.hpp"

namespace {

using hv::run::find_target;
using hv::run::plan_launch;

const hv::run::run_paths paths{.image = "/img/a,b.iso", .run_dir = "/runs/r1"};

std::string config_named(const hv::run::launch_plan& plan, const std::string& name) {
    for (const auto& file : plan.files) {
        if (file.name == name) return file.text;
    }
    return "";
}

}  // namespace

TEST_CASE("every target is found by name and listed") {
    for (const auto& t : hv::run::all_targets()) {
        CHECK(find_target(t.name) == &t);
        CHECK(absl::StrContains(hv::run::target_names(), t.name));
    }
    CHECK(find_target("bochs") == nullptr);
}

TEST_CASE("Bochs: config in the run folder, isolated network, debugger scripted") {
    auto plan = plan_launch(*find_target("bochs-intel"), paths, {.cpus = 2, .memory_mb = 512},
                            /*running_as_root=*/true);
    REQUIRE(plan.ok());
    CHECK(absl::StrJoin(plan->argv, " ") ==
          "unshare --net bochs-bin -q -f /runs/r1/bochsrc.txt -rc /runs/r1/bochs.rc");
    CHECK(plan->pass_exit_code == 0);
    CHECK(config_named(*plan, "bochs.rc") == "c\nquit\n");
    std::string config = config_named(*plan, "bochsrc.txt");
    for (const char* line :
         {"cpu: model=corei7_skylake_x, count=2, ips=50000000, reset_on_triple_fault=0, "
          "ignore_bad_msrs=0\n",
          "memory: guest=512, host=512\n", "clock: sync=none, time0=1704067200\n",
          "ata0-master: type=cdrom, path=\"/img/a,b.iso\", status=inserted\n",
          "com1: enabled=1, mode=file, dev=\"/runs/r1/serial.log\"\n",
          "display_library: rfb, options=\"timeout=0\"\n", "panic: action=fatal\n"}) {
        CHECK_MESSAGE(absl::StrContains(config, line), line);
    }
    CHECK_FALSE(absl::StrContains(config, "cpuid:"));

    auto user = plan_launch(*find_target("bochs-intel"), paths, {}, false);
    REQUIRE(user.ok());
    CHECK(user->argv[2] == "--map-root-user");
}

TEST_CASE("Bochs without EPT: a generic Intel CPU with VMX level 1") {
    auto plan = plan_launch(*find_target("bochs-intel-noept"), paths, {}, true);
    REQUIRE(plan.ok());
    std::string config = config_named(*plan, "bochsrc.txt");
    CHECK(absl::StrContains(config, "cpu: model=bx_generic, count=1,"));
    CHECK(absl::StrContains(config, "vendor_string=\"GenuineIntel\""));
    CHECK(absl::StrContains(config, ", vmx=1\n"));
}

TEST_CASE("a path Bochs cannot quote is refused") {
    auto plan = plan_launch(*find_target("bochs-amd"),
                            {.image = "/img/\"q\".iso", .run_dir = "/runs/r1"}, {}, true);
    CHECK_FALSE(plan.ok());
}

TEST_CASE("QEMU: SVM with NPT, debug-exit device, deterministic clock") {
    auto plan = plan_launch(*find_target("qemu-svm"), paths, {.cpus = 1, .memory_mb = 256}, true);
    REQUIRE(plan.ok());
    CHECK(plan->files.empty());
    CHECK(plan->pass_exit_code == 99);
    std::string command = absl::StrJoin(plan->argv, " ");
    for (const char* part :
         {"qemu-system-x86_64 -accel tcg ", "-cpu qemu64,+svm,+npt,+pdpe1gb ", "-smp 1 -m 256 ",
          "-display none -nic none ", "-no-reboot ",
          "-chardev file,id=com1,path=/runs/r1/serial.log -serial chardev:com1 ",
          "-device isa-debug-exit,iobase=0xf4,iosize=0x04 ", "-icount shift=0,sleep=off ",
          "-d cpu_reset,guest_errors ", "-drive file=/img/a,,b.iso,media=cdrom,"}) {
        CHECK_MESSAGE(absl::StrContains(command, part), part);
    }
}
