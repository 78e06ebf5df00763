#include "toolchain/hvimage/policy.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using hv::image::choose_images;
using hv::image::image_flags;

namespace {

// build/examples-like directories in a fresh temporary folder.
struct examples_tree {
    fs::path root = fs::temp_directory_path() / ("hvimage-policy-" + std::to_string(::getpid()));
    fs::path first = root / "a" / "examples", second = root / "b" / "examples";
    examples_tree() {
        fs::create_directories(first / "colors");
        fs::create_directories(second / "colors");
    }
    ~examples_tree() { fs::remove_all(root); }
    static void touch(const fs::path& p) { std::ofstream(p) << "x"; }
};

}  // namespace

TEST_CASE("without --policy: --kernel or the default, --guest as given") {
    examples_tree t;
    const fs::path dirs[] = {t.first};
    auto c = choose_images({}, dirs, "/default/hello.elf");
    REQUIRE(c.ok());
    CHECK(c->kernel == "/default/hello.elf");
    CHECK_FALSE(c->guest);
    c = choose_images({.kernel = "k.elf", .guest = "g.elf"}, dirs, "/default/hello.elf");
    REQUIRE(c.ok());
    CHECK(c->kernel == "k.elf");
    CHECK(c->guest == fs::path("g.elf"));
}

TEST_CASE("--policy picks the preset's image and the color guest from the first directory that has them") {
    examples_tree t;
    examples_tree::touch(t.second / "colors" / "colors-pvh.elf");
    examples_tree::touch(t.second / "colors" / "color-guest.elf");
    examples_tree::touch(t.first / "colors" / "color-guest.elf");
    const fs::path dirs[] = {t.first, t.second};
    auto c = choose_images({.policy = "pvh"}, dirs, "/default/hello.elf");
    REQUIRE(c.ok());
    CHECK(c->kernel == t.second / "colors" / "colors-pvh.elf");
    CHECK(c->guest == t.first / "colors" / "color-guest.elf");
}

TEST_CASE("--kernel and --guest override the policy's images") {
    examples_tree t;
    const fs::path dirs[] = {t.first};
    auto c = choose_images({.policy = "hvm", .kernel = "mine.elf", .guest = "guest.elf"}, dirs, "/d");
    REQUIRE(c.ok());
    CHECK(c->kernel == "mine.elf");
    CHECK(c->guest == fs::path("guest.elf"));
}

TEST_CASE("a missing image names every path searched and the way out") {
    examples_tree t;
    const fs::path dirs[] = {t.first, t.second};
    auto c = choose_images({.policy = "pvhvm"}, dirs, "/d");
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kNotFound);
    const std::string m(c.status().message());
    CHECK(m.find((t.first / "colors" / "colors-pvhvm.elf").string()) != std::string::npos);
    CHECK(m.find((t.second / "colors" / "colors-pvhvm.elf").string()) != std::string::npos);
    CHECK(m.find("--kernel") != std::string::npos);

    examples_tree::touch(t.first / "colors" / "colors-pvhvm.elf");
    c = choose_images({.policy = "pvhvm"}, dirs, "/d");
    REQUIRE_FALSE(c.ok());
    CHECK(std::string(c.status().message()).find("color test guest") != std::string::npos);
}

TEST_CASE("pv is refused as a later issue; unknown names list the policies") {
    examples_tree t;
    const fs::path dirs[] = {t.first};
    auto c = choose_images({.policy = "pv"}, dirs, "/d");
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kUnimplemented);
    CHECK(std::string(c.status().message()).find("issue 9") != std::string::npos);
    c = choose_images({.policy = "hvm-nested"}, dirs, "/d");
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(c.status().message()) ==
          "unknown policy 'hvm-nested'; choose one of bare, hvm, hvm-shadow, pvhvm, pvh");
}
