// grub.cfg for an hvimage ISO: one menu entry, no menu delay, text mode kept.
#pragma once

#include <optional>
#include <span>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"

namespace hv::image {

// Where hvimage puts the files inside the ISO.
inline constexpr char kernel_iso_path[] = "/boot/hv.elf";
inline constexpr char guest_iso_path[] = "/boot/guest";
inline constexpr char module_iso_dir[] = "/boot/";

struct boot_entry {
    std::string kernel_cmdline;
    std::optional<std::string> guest_cmdline;  // set when a guest is packed
    std::vector<std::string> module_names;     // file names under /boot/
};

// Module files keep their base names inside the ISO: they must be distinct, must not
// clash with hvimage's own files and must need no quoting.
[[nodiscard]] absl::Status check_module_names(std::span<const std::string> names);

[[nodiscard]] std::string make_grub_cfg(const boot_entry& entry);

// `text` as one GRUB script word: single-quoted, so $, ; and quotes survive.
[[nodiscard]] std::string grub_quote(absl::string_view text);

// A command line as GRUB script words, one per whitespace-separated word. GRUB
// joins a loader's words with single spaces again; it passes a word holding a quote
// or backslash on with those characters backslash-escaped.
[[nodiscard]] std::string grub_words(absl::string_view cmdline);

}  // namespace hv::image
