// hvimage: packs a multiboot2 kernel (plus an optional guest and extra modules) into
// a small GRUB ISO that Bochs and QEMU boot from CD-ROM.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "toolchain/common/cli.hpp"
#include "toolchain/common/files.hpp"
#include "toolchain/common/process.hpp"
#include "toolchain/hvimage/grub_cfg.hpp"
#include "toolchain/hvimage/multiboot2.hpp"
#include "toolchain/hvimage/policy.hpp"

ABSL_FLAG(std::string, kernel, "",
          "the hypervisor: an x86-64 ELF64 with a multiboot2 header (default: the policy's "
          "image, or " HV_DEFAULT_KERNEL ")");
ABSL_FLAG(std::string, policy, "",
          "guest-mode policy (bare, hvm, hvm-shadow, pvhvm, pvh): the kernel is its colors-POLICY.elf "
          "and, without --guest, the guest is the color test guest (as a flat real-mode image for hvm, "
          "whose preferred start is real mode at 0x7c00). A --guest kernel with an entry of its own "
          "(multiboot1/2, PVH note, bzImage) starts by it under any policy, the policy's preferred one "
          "if offered; a flat image without one starts in real mode, which not every policy can "
          "(vm::real_mode_refusal). A guest the policy cannot start is refused here, naming why, as the "
          "hypervisor would refuse it at boot");
ABSL_FLAG(std::string, guest, "", "guest kernel, loaded as the module named 'guest'");
// Only here for --help: hv::host::command_line collects every --module itself.
ABSL_FLAG(std::string, module, "",
          "extra file loaded as a module named after its file (repeatable)");
ABSL_FLAG(std::string, cmdline, "", "the hypervisor's command line");
ABSL_FLAG(std::string, guest_cmdline, "", "the guest module's string, after 'guest '");
ABSL_FLAG(std::string, o, "", "the ISO to write (required)");

namespace {

namespace fs = std::filesystem;
using hv::host::read_file;

constexpr absl::Duration grub_mkrescue_timeout = absl::Seconds(120);

struct request {
    fs::path kernel;
    std::optional<fs::path> guest;
    std::vector<fs::path> modules;
    hv::image::boot_entry entry;
    fs::path output;
};

struct tool {
    const char* program;
    const char* debian_package;
};
constexpr tool required_tools[] = {
    {"grub-mkrescue", "grub-common"},
    {"xorriso", "xorriso"},
    {"mformat", "mtools"},
};
constexpr char grub_bios_modules[] = "/usr/lib/grub/i386-pc";

absl::Status check_tools() {
    for (const tool& t : required_tools) {
        if (!hv::host::find_program(t.program)) {
            return absl::FailedPreconditionError(absl::StrCat(
                t.program, " not found (Debian: apt install ", t.debian_package, ")"));
        }
    }
    if (!fs::is_directory(grub_bios_modules)) {
        return absl::FailedPreconditionError(
            absl::StrCat(grub_bios_modules, " not found (Debian: apt install grub-pc-bin)"));
    }
    return absl::OkStatus();
}

absl::Status check_readable(absl::string_view what, const fs::path& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
        return absl::NotFoundError(absl::StrCat(what, " ", path.string(), ": no such file"));
    }
    if (::access(path.c_str(), R_OK) != 0) {
        return absl::PermissionDeniedError(
            absl::StrCat(what, " ", path.string(), ": not readable"));
    }
    return absl::OkStatus();
}

absl::Status check_kernel_file(const fs::path& kernel) {
    if (absl::Status s = check_readable("kernel", kernel); !s.ok()) return s;
    absl::StatusOr<std::string> bytes = read_file(kernel);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<std::size_t> header = hv::image::check_kernel(std::as_bytes(std::span(*bytes)));
    if (!header.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("kernel ", kernel.string(), ": ", header.status().message()));
    }
    return absl::OkStatus();
}

// Where the policies' images are: next to this hvimage's build (build/toolchain/hvimage ->
// build/examples), then the build it was configured in.
std::vector<fs::path> examples_dirs() {
    std::vector<fs::path> dirs;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) dirs.push_back(self.parent_path().parent_path() / "examples");
    if (dirs.empty() || dirs.front() != fs::path(HV_EXAMPLES_DIR)) dirs.emplace_back(HV_EXAMPLES_DIR);
    return dirs;
}

absl::StatusOr<request> read_request(hv::host::command_line& cli) {
    std::vector<std::string> modules = cli.take_repeated("module");
    std::vector<std::string> positional = cli.parse();
    if (!positional.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", positional.front(), "' (see --help)"));
    }

    request req;
    req.output = absl::GetFlag(FLAGS_o);
    if (req.output.empty()) return absl::InvalidArgumentError("no output given: -o OUT.iso");
    absl::StatusOr<hv::image::image_choice> images = hv::image::choose_images(
        {absl::GetFlag(FLAGS_policy), absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_guest)},
        examples_dirs(), HV_DEFAULT_KERNEL);
    if (!images.ok()) return images.status();
    req.kernel = images->kernel;
    if (absl::Status s = check_kernel_file(req.kernel); !s.ok()) return s;
    req.entry.kernel_cmdline = absl::GetFlag(FLAGS_cmdline);

    if (images->guest) {
        req.guest = images->guest;
        if (absl::Status s = check_readable("guest", *req.guest); !s.ok()) return s;
        if (absl::Status s = hv::image::check_guest(absl::GetFlag(FLAGS_policy), *req.guest); !s.ok()) return s;
        req.entry.guest_cmdline = absl::GetFlag(FLAGS_guest_cmdline);
    } else if (!absl::GetFlag(FLAGS_guest_cmdline).empty()) {
        return absl::InvalidArgumentError("--guest-cmdline given without --guest");
    }
    for (const std::string& module : modules) {
        if (absl::Status s = check_readable("module", module); !s.ok()) return s;
        req.modules.emplace_back(module);
        req.entry.module_names.push_back(fs::path(module).filename().string());
    }
    if (absl::Status s = hv::image::check_module_names(req.entry.module_names); !s.ok()) {
        return s;
    }
    if (absl::Status s = check_tools(); !s.ok()) return s;
    return req;
}

absl::Status copy_into(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot copy ", from.string(), ": ", ec.message()));
    }
    return absl::OkStatus();
}

absl::Status stage_tree(const request& req, const fs::path& root) {
    const fs::path boot = root / "boot";
    std::error_code ec;
    fs::create_directories(boot / "grub", ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", boot.string()));
    if (absl::Status s = copy_into(req.kernel, boot / "hv.elf"); !s.ok()) return s;
    if (req.guest) {
        if (absl::Status s = copy_into(*req.guest, boot / "guest"); !s.ok()) return s;
    }
    for (std::size_t i = 0; i < req.modules.size(); ++i) {
        if (absl::Status s = copy_into(req.modules[i], boot / req.entry.module_names[i]); !s.ok()) {
            return s;
        }
    }
    return hv::host::write_file(boot / "grub" / "grub.cfg", hv::image::make_grub_cfg(req.entry));
}

std::string last_line(absl::string_view text) {
    std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
    return lines.empty() ? std::string("no output")
                         : std::string(absl::StripAsciiWhitespace(lines.back()));
}

absl::Status run_grub_mkrescue(const fs::path& root, const fs::path& output, const fs::path& log) {
    absl::StatusOr<hv::host::process_exit> done = hv::host::run_process({
        .argv = {"grub-mkrescue", "--install-modules=normal multiboot2 iso9660 biosdisk",
                 "--locales=", "--fonts=", "--themes=", "-o", output.string(), root.string()},
        .output = log,
        .timeout = grub_mkrescue_timeout,
        .on_poll = nullptr,
    });
    if (!done.ok()) return done.status();
    if (done->timed_out || done->exit_code != 0) {
        absl::StatusOr<std::string> text = read_file(log);
        return absl::InternalError(absl::StrCat("grub-mkrescue failed",
                                                done->timed_out ? " (timed out)" : "", ": ",
                                                text.ok() ? last_line(*text) : "no log"));
    }
    return absl::OkStatus();
}

absl::Status build_image(const request& req) {
    absl::StatusOr<fs::path> work = hv::host::make_unique_dir(fs::temp_directory_path(), "hvimage");
    if (!work.ok()) return work.status();
    absl::Cleanup remove_work = [&] {
        std::error_code ignored;
        fs::remove_all(*work, ignored);
    };
    const fs::path root = *work / "iso";
    if (absl::Status s = stage_tree(req, root); !s.ok()) return s;

    // Written next to the target and renamed, so nobody sees a half-written ISO.
    fs::path partial = req.output;
    partial += absl::StrCat(".partial-", ::getpid());
    if (absl::Status s = run_grub_mkrescue(root, partial, *work / "grub-mkrescue.log"); !s.ok()) {
        std::error_code ignored;
        fs::remove(partial, ignored);
        return s;
    }
    std::error_code ec;
    fs::rename(partial, req.output, ec);
    if (ec) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot write ", req.output.string(), ": ", ec.message()));
    }
    return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
    absl::SetProgramUsageMessage(
        "builds a GRUB ISO that boots a multiboot2 hypervisor.\n"
        "usage: hvimage [--policy=NAME] [--kernel HV.elf] [--guest KERNEL] [--module FILE]...\n"
        "               [--cmdline STR] [--guest-cmdline STR] -o OUT.iso\n"
        "Flag names may be spelled with dashes or underscores.");
    absl::FlagsUsageConfig usage;
    usage.contains_help_flags = [](absl::string_view file) {
        return absl::StrContains(file, "toolchain/hvimage");
    };
    absl::SetFlagsUsageConfig(usage);

    hv::host::command_line cli(argc, argv);
    cli.accept_dashed_names();
    absl::StatusOr<request> req = read_request(cli);
    absl::Status done = req.ok() ? build_image(*req) : req.status();
    if (!done.ok()) {
        std::cerr << "hvimage: " << done.message() << "\n";
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
