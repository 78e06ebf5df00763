#include <doctest/doctest.h>
#include "libhv/core/cmdline.hpp"

TEST_CASE("cmdline_value finds key=value tokens") {
    constexpr std::string_view cl = "hello.elf run=cpu.cpuid  verbose count=0x10 run=hello";
    CHECK(hv::cmdline_value(cl, "run") == "hello");  // the last one wins
    CHECK(hv::cmdline_value(cl, "verbose") == "");
    CHECK_FALSE(hv::cmdline_value(cl, "missing").has_value());
    CHECK_FALSE(hv::cmdline_value(cl, "ru").has_value());
    CHECK(hv::cmdline_value("", "run") == std::nullopt);
}

TEST_CASE("parse_u64 accepts decimal and hex, rejects junk and overflow") {
    CHECK(hv::parse_u64("42") == 42u);
    CHECK(hv::parse_u64("0x10") == 16u);
    CHECK(hv::parse_u64("18446744073709551615") == ~0ull);
    CHECK_FALSE(hv::parse_u64("18446744073709551616").has_value());
    CHECK_FALSE(hv::parse_u64("12a").has_value());
    CHECK_FALSE(hv::parse_u64("").has_value());
}
