#include "toolchain/hvrun/bench.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hv::run {

namespace {

constexpr absl::string_view bench_tag = "HV-BENCH: ";

// Fields of a benchmark entry that a counter must not overwrite.
constexpr absl::string_view reserved_keys[] = {"name",
                                               "family_index",
                                               "per_family_instance_index",
                                               "run_name",
                                               "run_type",
                                               "repetitions",
                                               "repetition_index",
                                               "threads",
                                               "iterations",
                                               "real_time",
                                               "cpu_time",
                                               "time_unit",
                                               "label",
                                               "aggregate_name",
                                               "error_occurred",
                                               "error_message"};

bool valid_unit(absl::string_view unit) {
    for (char c : unit) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    }
    return !unit.empty() && std::ranges::find(reserved_keys, unit) == std::end(reserved_keys);
}

std::optional<bench_result> parse_fields(absl::string_view fields) {
    std::vector<absl::string_view> words = absl::StrSplit(fields, ' ', absl::SkipEmpty());
    bench_result r;
    if (words.size() != 4 || !absl::SimpleAtoi(words[1], &r.iterations) ||
        !absl::SimpleAtod(words[2], &r.value) || !std::isfinite(r.value) || r.iterations <= 0 ||
        !valid_unit(words[3])) {
        return std::nullopt;
    }
    r.name = std::string(words[0]);
    r.unit = std::string(words[3]);
    return r;
}

std::string json_string(absl::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                absl::StrAppendFormat(&out, "\\u%04x", c);
            } else {
                out += c;
            }
        }
    }
    out += '"';
    return out;
}

// Shortest text that reads back as the same double.
std::string json_number(double value) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    return std::string(buf, end);
}

}  // namespace

bench_scan scan_bench_lines(absl::string_view serial) {
    bench_scan scan;
    for (absl::string_view line : absl::StrSplit(serial, '\n')) {
        line = absl::StripAsciiWhitespace(line);
        std::size_t at = line.find(bench_tag);
        if (at == absl::string_view::npos) continue;
        if (std::optional<bench_result> r = parse_fields(line.substr(at + bench_tag.size()))) {
            scan.results.push_back(std::move(*r));
        } else {
            scan.malformed.emplace_back(line.substr(at));
        }
    }
    return scan;
}

std::string bench_json(const bench_context& context, std::span<const bench_result> results) {
    std::string json = absl::StrFormat(
        "{\n"
        "  \"context\": {\n"
        "    \"date\": %s,\n"
        "    \"host_name\": %s,\n"
        "    \"executable\": %s,\n"
        "    \"hv_target\": %s,\n"
        "    \"num_cpus\": %d,\n"
        "    \"mhz_per_cpu\": 0,\n"
        "    \"cpu_scaling_enabled\": false,\n"
        "    \"caches\": [],\n"
        "    \"load_avg\": [],\n"
        "    \"library_build_type\": \"release\"\n"
        "  },\n"
        "  \"benchmarks\": [",
        json_string(context.date), json_string(context.host_name), json_string(context.image),
        json_string(context.target), context.cpus);

    // A name printed several times becomes repetitions of one benchmark, which is how
    // compare.py pairs runs up.
    std::map<absl::string_view, int> family_of, repetitions, seen;
    for (const bench_result& r : results) {
        family_of.try_emplace(r.name, static_cast<int>(family_of.size()));
        ++repetitions[r.name];
    }
    const char* separator = "\n";
    for (const bench_result& r : results) {
        absl::StrAppendFormat(&json,
                              "%s    {\n"
                              "      \"name\": %s,\n"
                              "      \"family_index\": %d,\n"
                              "      \"per_family_instance_index\": 0,\n"
                              "      \"run_name\": %s,\n"
                              "      \"run_type\": \"iteration\",\n"
                              "      \"repetitions\": %d,\n"
                              "      \"repetition_index\": %d,\n"
                              "      \"threads\": 1,\n"
                              "      \"iterations\": %d,\n"
                              "      \"real_time\": %s,\n"
                              "      \"cpu_time\": %s,\n"
                              "      \"time_unit\": \"ns\",\n"
                              "      \"label\": %s,\n"
                              "      %s: %s\n"
                              "    }",
                              separator, json_string(r.name), family_of[r.name],
                              json_string(r.name), repetitions[r.name], seen[r.name]++,
                              r.iterations, json_number(r.value), json_number(r.value),
                              json_string(r.unit), json_string(r.unit), json_number(r.value));
        separator = ",\n";
    }
    json += results.empty() ? "]\n}\n" : "\n  ]\n}\n";
    return json;
}

}  // namespace hv::run
