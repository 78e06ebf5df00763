// "HV-BENCH: <name> <iterations> <value> <unit>" lines from the serial log, written as
// Google Benchmark JSON so benchmark's tools/compare.py can compare two runs.
// real_time and cpu_time both hold the value (time_unit "ns", whatever the unit);
// the unit is kept as the entry's label and as a counter named after it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

namespace hv::run {

struct bench_result {
    std::string name;
    std::int64_t iterations;
    double value;
    std::string unit;
};

struct bench_scan {
    std::vector<bench_result> results;
    std::vector<std::string> malformed;  // HV-BENCH lines that did not parse
};

[[nodiscard]] bench_scan scan_bench_lines(absl::string_view serial);

struct bench_context {
    std::string date;  // ISO 8601
    std::string host_name;
    std::string image;  // shown as "executable"
    std::string target;
    int cpus;
};

[[nodiscard]] std::string bench_json(const bench_context& context,
                                     std::span<const bench_result> results);

}  // namespace hv::run
