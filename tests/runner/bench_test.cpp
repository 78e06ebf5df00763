#include "toolchain/hvrun/bench.hpp"

#include <doctest/doctest.h>

#include <string>

using hv::run::bench_context;
using hv::run::bench_json;
using hv::run::scan_bench_lines;

TEST_CASE("HV-BENCH lines are picked out of the serial log") {
    auto scan = scan_bench_lines(
        "boot\r\n"
        "HV-BENCH: vmx_cpuid_exit 1000 105 ticks\r\n"
        "noise HV-BENCH: svm_cpuid_exit 500 64.5 ticks\n"
        "HV-BENCH: broken 10 ticks\n"
        "HV-BENCH: bad_number 10 x ticks\n"
        "HV-BENCH: zero_iterations 0 1 ticks\n"
        "HV-BENCH: reserved_unit 10 1 name\n"
        "HV-RESULT: PASS\n");
    REQUIRE(scan.results.size() == 2);
    CHECK(scan.results[0].name == "vmx_cpuid_exit");
    CHECK(scan.results[0].iterations == 1000);
    CHECK(scan.results[0].value == 105);
    CHECK(scan.results[0].unit == "ticks");
    CHECK(scan.results[1].name == "svm_cpuid_exit");
    CHECK(scan.results[1].value == 64.5);
    CHECK(scan.malformed == std::vector<std::string>{"HV-BENCH: broken 10 ticks",
                                                     "HV-BENCH: bad_number 10 x ticks",
                                                     "HV-BENCH: zero_iterations 0 1 ticks",
                                                     "HV-BENCH: reserved_unit 10 1 name"});
}

TEST_CASE("JSON in Google Benchmark's layout, repeated names as repetitions") {
    auto scan = scan_bench_lines(
        "HV-BENCH: exit 100 105 ticks\n"
        "HV-BENCH: \"odd\" 7 0.25 cycles\n"
        "HV-BENCH: exit 100 107 ticks\n");
    bench_context context{.date = "2024-01-01T00:00:00+00:00",
                          .host_name = "h",
                          .image = "/x/a.iso",
                          .target = "qemu-svm",
                          .cpus = 2};
    CHECK(bench_json(context, scan.results) ==
          R"({
  "context": {
    "date": "2024-01-01T00:00:00+00:00",
    "host_name": "h",
    "executable": "/x/a.iso",
    "hv_target": "qemu-svm",
    "num_cpus": 2,
    "mhz_per_cpu": 0,
    "cpu_scaling_enabled": false,
    "caches": [],
    "load_avg": [],
    "library_build_type": "release"
  },
  "benchmarks": [
    {
      "name": "exit",
      "family_index": 0,
      "per_family_instance_index": 0,
      "run_name": "exit",
      "run_type": "iteration",
      "repetitions": 2,
      "repetition_index": 0,
      "threads": 1,
      "iterations": 100,
      "real_time": 105,
      "cpu_time": 105,
      "time_unit": "ns",
      "label": "ticks",
      "ticks": 105
    },
    {
      "name": "\"odd\"",
      "family_index": 1,
      "per_family_instance_index": 0,
      "run_name": "\"odd\"",
      "run_type": "iteration",
      "repetitions": 1,
      "repetition_index": 0,
      "threads": 1,
      "iterations": 7,
      "real_time": 0.25,
      "cpu_time": 0.25,
      "time_unit": "ns",
      "label": "cycles",
      "cycles": 0.25
    },
    {
      "name": "exit",
      "family_index": 0,
      "per_family_instance_index": 0,
      "run_name": "exit",
      "run_type": "iteration",
      "repetitions": 2,
      "repetition_index": 1,
      "threads": 1,
      "iterations": 100,
      "real_time": 107,
      "cpu_time": 107,
      "time_unit": "ns",
      "label": "ticks",
      "ticks": 107
    }
  ]
}
)");
}

TEST_CASE("no bench lines still make a valid document") {
    std::string json = bench_json(
        bench_context{.date = "", .host_name = "", .image = "", .target = "", .cpus = 1}, {});
    CHECK(json.ends_with("\"benchmarks\": []\n}\n"));
}
