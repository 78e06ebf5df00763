#include <doctest/doctest.h>
#include <string_view>
#include "libhv/core/result.hpp"

namespace {
hv::result<int> half(int x) {
    if (x % 2) return hv::fail(hv::errc::invalid_argument, "odd");
    return x / 2;
}
hv::status quarter(int x, int& out) {
    auto h = half(x);
    HV_TRY(h);
    auto q = half(*h);
    HV_TRY(q);
    out = *q;
    return {};
}
} // namespace

TEST_CASE("result carries a value or an error, and HV_TRY propagates") {
    CHECK(half(8).ok());
    CHECK(*half(8) == 4);
    CHECK(half(3).code() == hv::errc::invalid_argument);
    int out = 0;
    CHECK(quarter(8, out).ok());
    CHECK(out == 2);
    auto s = quarter(6, out);
    CHECK_FALSE(s.ok());
    CHECK(std::string_view(s.err().what) == "odd");
}
