// Command lines of the form "word key=value key2=value2".
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace hv {

// The value of the last `key=value` token; a bare `key` yields an empty value.
constexpr std::optional<std::string_view> cmdline_value(std::string_view cmdline, std::string_view key) {
    std::optional<std::string_view> found;
    std::size_t i = 0;
    while (i < cmdline.size()) {
        while (i < cmdline.size() && cmdline[i] == ' ') ++i;
        std::size_t start = i;
        while (i < cmdline.size() && cmdline[i] != ' ') ++i;
        std::string_view token = cmdline.substr(start, i - start);
        if (token.empty()) continue;
        std::size_t eq = token.find('=');
        std::string_view k = token.substr(0, eq);
        if (k == key) found = eq == std::string_view::npos ? std::string_view{} : token.substr(eq + 1);
    }
    return found;
}

constexpr std::optional<std::uint64_t> parse_u64(std::string_view s) {
    if (s.empty()) return std::nullopt;
    unsigned base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; s.remove_prefix(2); }
    std::uint64_t v = 0;
    for (char c : s) {
        unsigned d;
        if (c >= '0' && c <= '9') d = unsigned(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F') d = unsigned(c - 'A' + 10);
        else return std::nullopt;
        if (v > (~std::uint64_t{0} - d) / base) return std::nullopt;
        v = v * base + d;
    }
    return v;
}

} // namespace hv
