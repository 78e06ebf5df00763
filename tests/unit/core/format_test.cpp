#include <doctest/doctest.h>
#include <string>
#include "libhv/core/format.hpp"

namespace {
template <class... A>
std::string fmt(std::string_view f, const A&... a) {
    char buf[256];
    std::size_t n = hv::fmt::format_to(buf, sizeof buf, f, a...);
    REQUIRE(n < sizeof buf);
    return std::string(buf, n);
}
} // namespace

TEST_CASE("format: integers in every base and width") {
    CHECK(fmt("{}", 0) == "0");
    CHECK(fmt("{}", -42) == "-42");
    CHECK(fmt("{}", INT64_MIN) == "-9223372036854775808");
    CHECK(fmt("{}", UINT64_MAX) == "18446744073709551615");
    CHECK(fmt("{:x}", 0xdeadbeefu) == "deadbeef");
    CHECK(fmt("{:#x}", 255) == "0xff");
    CHECK(fmt("{:#018x}", 0x1000) == "0x0000000000001000");
    CHECK(fmt("{:016X}", 0xabcULL) == "0000000000000ABC");
    CHECK(fmt("{:b}", 5) == "101");
    CHECK(fmt("{:8}", 17) == "      17");
    CHECK(fmt("{:x}", -1) == "ffffffffffffffff");
}

TEST_CASE("format: strings, chars, bools, pointers, escapes") {
    CHECK(fmt("a{}c", "b") == "abc");
    CHECK(fmt("{:5}|", "ab") == "   ab|");
    CHECK(fmt("{}{}", 'x', true) == "xtrue");
    CHECK(fmt("{}", reinterpret_cast<void*>(0x1234)) == "0x1234");
    CHECK(fmt("{{}}") == "{}");
    CHECK(fmt("{} {}", 1) == "1 {?}");
    CHECK(fmt("no args") == "no args");
}

TEST_CASE("format_to truncates but reports the full length") {
    char buf[4];
    CHECK(hv::fmt::format_to(buf, sizeof buf, "{}", 123456) == 6);
    CHECK(std::string(buf) == "123");
}
