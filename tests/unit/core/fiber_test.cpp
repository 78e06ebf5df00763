#include <doctest/doctest.h>
#include <string>
#include <vector>
#include "libhv/core/fiber.hpp"

TEST_CASE("fibers interleave through yield and finish") {
    std::vector<char> stack_a(64 * 1024), stack_b(64 * 1024);
    std::string trace;
    struct ctx { std::string* trace; char tag; };
    ctx ca{&trace, 'a'}, cb{&trace, 'b'};
    auto body = [](hv::fiber& self, void* arg) {
        auto* c = static_cast<ctx*>(arg);
        for (int i = 0; i < 3; ++i) {
            c->trace->push_back(char(c->tag + 0));
            self.yield();
        }
    };
    hv::fiber a, b;
    a.init(stack_a.data(), stack_a.size(), body, &ca);
    b.init(stack_b.data(), stack_b.size(), body, &cb);
    int rounds = 0;
    while (!a.finished() || !b.finished()) {
        if (!a.finished()) a.resume();
        if (!b.finished()) b.resume();
        REQUIRE(++rounds < 10);
    }
    CHECK(trace == "ababab");
    CHECK(rounds == 4);
}
