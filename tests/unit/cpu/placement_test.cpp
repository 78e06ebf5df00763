#include <doctest/doctest.h>
#include <vector>
#include "libhv/cpu/placement.hpp"

using hv::cpu::place_vcpus;

TEST_CASE("placement: spread is vCPU i on CPU i mod N") {
    std::vector<unsigned> out(5);
    REQUIRE(place_vcpus("spread", 2, out).ok());
    CHECK(out == std::vector<unsigned>{0, 1, 0, 1, 0});
    REQUIRE(place_vcpus("", 3, out).ok());
    CHECK(out == std::vector<unsigned>{0, 1, 2, 0, 1});
    REQUIRE(place_vcpus("spread", 1, out).ok());
    CHECK(out == std::vector<unsigned>{0, 0, 0, 0, 0});
}

TEST_CASE("placement: packed and explicit lists") {
    std::vector<unsigned> out(4);
    REQUIRE(place_vcpus("packed", 4, out).ok());
    CHECK(out == std::vector<unsigned>{0, 0, 0, 0});
    REQUIRE(place_vcpus("1,0", 2, out).ok());
    CHECK(out == std::vector<unsigned>{1, 0, 1, 0});
    REQUIRE(place_vcpus("0,1,1", 2, out).ok());
    CHECK(out == std::vector<unsigned>{0, 1, 1, 0});
}

TEST_CASE("placement: bad specifications are errors") {
    std::vector<unsigned> out(2);
    CHECK(!place_vcpus("2", 2, out).ok());        // no CPU 2
    CHECK(!place_vcpus("0,,1", 2, out).ok());
    CHECK(!place_vcpus("0,", 2, out).ok());
    CHECK(!place_vcpus("round", 2, out).ok());
    CHECK(!place_vcpus("spread", 0, out).ok());
}
