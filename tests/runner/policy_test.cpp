#include "toolchain/hvimage/policy.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using hv::image::check_guest;
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

TEST_CASE("a policy that starts its guest in real mode packs the flat color guest") {
    examples_tree t;
    examples_tree::touch(t.first / "colors" / "colors-hvm.elf");
    examples_tree::touch(t.first / "colors" / "color-guest.elf");
    const fs::path dirs[] = {t.first};
    auto c = choose_images({.policy = "hvm"}, dirs, "/d");
    REQUIRE_FALSE(c.ok());  // no color-guest.img yet
    CHECK(std::string(c.status().message()).find("color-guest.img") != std::string::npos);
    examples_tree::touch(t.first / "colors" / "color-guest.img");
    c = choose_images({.policy = "hvm"}, dirs, "/d");
    REQUIRE(c.ok());
    CHECK(c->guest == t.first / "colors" / "color-guest.img");
    // hvm-shadow starts in real mode too (paged real mode on SVM, vm86 on VMX).
    examples_tree::touch(t.first / "colors" / "colors-hvm-shadow.elf");
    c = choose_images({.policy = "hvm-shadow"}, dirs, "/d");
    REQUIRE(c.ok());
    CHECK(c->guest == t.first / "colors" / "color-guest.img");
}

TEST_CASE("check_guest: the hypervisor's own decision (vm::choose_entry), refusals named") {
    examples_tree t;
    auto write = [&](const char* name, std::string bytes) {
        const fs::path p = t.first / name;
        std::ofstream(p, std::ios::binary) << bytes;
        return p;
    };
    auto message = [](const absl::Status& s) { return std::string(s.message()); };
    std::string sector(512, '\0');
    sector[510] = '\x55';
    sector[511] = '\xaa';
    const fs::path flat = write("ok.img", sector + std::string(4096, 'x'));
    CHECK(check_guest("hvm", flat).ok());
    CHECK(check_guest("pvhvm", flat).ok());
    // Without an emulated PC a flat image cannot start.
    const absl::Status pvh_flat = check_guest("pvh", flat);
    CHECK(pvh_flat.code() == absl::StatusCode::kInvalidArgument);
    CHECK(message(pvh_flat) == "policy pvh cannot start guest " + flat.string() +
                                   ": the guest is a flat image without an entry of its own (no multiboot header, PVH "
                                   "note or bzImage header), which starts only in real mode: a real-mode start needs "
                                   "the emulated PC (fw_cfg carries its command line and memory map)");
    CHECK(check_guest("hvm-shadow", flat).ok());
    CHECK(message(check_guest("bare", flat)).find("needs the emulated PC") != std::string::npos);

    // An ELF kernel with an entry of its own (here multiboot1, 32-bit, as color-guest.elf
    // has beside multiboot2 and PVH) starts by it under every policy, hvm included.
    std::string elf(0x100, '\0');
    const char ident[] = {'\x7f', 'E', 'L', 'F', 1, 1, 1};
    elf.replace(0, sizeof ident, ident, sizeof ident);
    auto put32 = [&](std::size_t at, std::uint32_t v) { std::memcpy(elf.data() + at, &v, 4); };
    auto put16 = [&](std::size_t at, std::uint16_t v) { std::memcpy(elf.data() + at, &v, 2); };
    put16(16, 2);                                    // ET_EXEC
    put16(18, 3);                                    // EM_386
    put32(24, 0x200000);                             // entry
    put32(28, 52);                                   // phoff
    put16(42, 32);                                   // phentsize
    put16(44, 1);                                    // phnum
    const std::uint32_t load[8] = {1, 0, 0x200000, 0x200000, 0x100, 0x100, 7, 16};  // PT_LOAD of the whole file
    std::memcpy(elf.data() + 52, load, sizeof load);
    const std::uint32_t mb1[3] = {0x1badb002, 0, 0u - 0x1badb002};
    std::memcpy(elf.data() + 0x80, mb1, sizeof mb1);
    const fs::path kernel = write("mb1.elf", elf);
    for (const char* policy : {"bare", "hvm", "hvm-shadow", "pvhvm", "pvh"}) {
        CAPTURE(policy);
        CHECK(check_guest(policy, kernel).ok());
    }
    // An ELF without an entry cannot start in real mode either: both named.
    std::string no_entry = elf;
    no_entry.replace(0x80, 12, 12, '\0');
    const std::string why = message(check_guest("hvm", write("none.elf", no_entry)));
    CHECK(why.find("neither a multiboot header, a PVH note nor a bzImage header") != std::string::npos);
    CHECK(why.find("an ELF file: a real-mode start takes a flat image") != std::string::npos);
    CHECK(message(check_guest("hvm", write("short.img", "\xeb\xfe"))).find("shorter than one 512-byte") !=
          std::string::npos);
    CHECK(message(check_guest("hvm", write("big.img", sector + std::string(0x98000, 'x')))).find("608 KiB") !=
          std::string::npos);
    std::string unsigned_sector = sector;
    unsigned_sector[511] = 0;
    CHECK(message(check_guest("hvm", write("nosig.img", unsigned_sector))).find("0x55 0xAA") != std::string::npos);
    CHECK(check_guest("hvm", t.first / "missing.img").code() == absl::StatusCode::kNotFound);
    // No policy: nothing to check.
    CHECK(check_guest("", write("g3.elf", "\x7f" "ELF")).ok());
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
