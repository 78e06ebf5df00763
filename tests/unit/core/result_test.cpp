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

TEST_CASE("a failed result never turns into a successful status") {
    struct big {
        int a[64] = {};
    };
    auto relay = [](hv::result<big> r) -> hv::status {
        HV_TRY(r);
        return {};
    };
    hv::result<big> broken = hv::error{hv::errc::ok, "no code"};  // a bug elsewhere
    CHECK_FALSE(broken.ok());
    CHECK(broken.code() == hv::errc::fault);
    CHECK_FALSE(relay(broken).ok());
    hv::result<big> copied = broken;
    copied = hv::result<big>{big{}};
    CHECK(copied.ok());
    copied = hv::fail(hv::errc::bad_format, "bad");
    CHECK(relay(copied).code() == hv::errc::bad_format);
    CHECK(std::string_view(relay(copied).err().what) == "bad");
}
