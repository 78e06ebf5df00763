#include "toolchain/hvimage/grub_cfg.hpp"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hv::image {

std::string grub_quote(absl::string_view text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'') {
            quoted += "'\\''";  // close, escaped quote, reopen
        } else {
            quoted += c;
        }
    }
    quoted += '\'';
    return quoted;
}

std::string grub_words(absl::string_view cmdline) {
    std::vector<std::string> words;
    for (absl::string_view word :
         absl::StrSplit(cmdline, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
        words.push_back(grub_quote(word));
    }
    return absl::StrJoin(words, " ");
}

absl::Status check_module_names(std::span<const std::string> names) {
    static constexpr char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-";
    std::set<absl::string_view> seen;
    for (const std::string& name : names) {
        if (name.empty() || name.find_first_not_of(allowed) != std::string::npos ||
            name.front() == '.') {
            return absl::InvalidArgumentError(absl::StrCat(
                "module file name '", name, "' must use only letters, digits and ._+-"));
        }
        if (name == "hv.elf" || name == "guest" || name == "grub") {
            return absl::InvalidArgumentError(
                absl::StrCat("module file name '", name, "' is reserved by hvimage"));
        }
        if (!seen.insert(name).second) {
            return absl::InvalidArgumentError(absl::StrCat("two modules are named '", name, "'"));
        }
    }
    return absl::OkStatus();
}

std::string make_grub_cfg(const boot_entry& entry) {
    std::string cfg =
        "set timeout=0\n"
        "set default=0\n"
        "menuentry \"libhv\" {\n";
    absl::StrAppend(&cfg, "  multiboot2 ", kernel_iso_path);
    if (std::string words = grub_words(entry.kernel_cmdline); !words.empty()) {
        absl::StrAppend(&cfg, " ", words);
    }
    // Keep text mode: GRUB 2.06 switching Bochs' video mode crashes GRUB.
    cfg += "\n  set gfxpayload=text\n";
    if (entry.guest_cmdline) {
        absl::StrAppend(&cfg, "  module2 ", guest_iso_path, " guest");
        if (std::string words = grub_words(*entry.guest_cmdline); !words.empty()) {
            absl::StrAppend(&cfg, " ", words);
        }
        cfg += '\n';
    }
    // Each module's string is its name, so the kernel can tell them apart.
    for (const std::string& name : entry.module_names) {
        absl::StrAppend(&cfg, "  module2 ", module_iso_dir, name, " ", name, "\n");
    }
    cfg += "  boot\n}\n";
    return cfg;
}

}  // namespace hv::image
