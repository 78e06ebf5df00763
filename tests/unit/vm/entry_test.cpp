// vm::choose_entry over every preset and each kind of guest image (built by
// tests/unit/loader/images.hpp): the policy's preferred start when the image offers it,
// else the image's own entry; a flat image without one in real mode where the policy can.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include "libhv/vm/policy.hpp"
#include "tests/unit/loader/images.hpp"

using namespace hv::vm;
using hv::loader::protocol;
namespace images = hv::loader::test;
using images::image;

namespace {

// What choose_entry answers, as one comparable string: the protocol, or "refused: <message>".
std::string entry_for(const policy& p, const image& img) {
    auto e = choose_entry(p, img);
    if (!e) return std::string("refused: ") + e.err().what;
    return hv::loader::to_string(e->protocol);
}

image elf_with_header(bool is64, image header) {
    images::elf_spec s = images::kernel(is64);
    s.header_blob = std::move(header);
    return images::build_elf(s);
}

image pvh_elf() {
    images::elf_spec s = images::kernel(true);
    s.notes = images::pvh_note(0x200040);
    return images::build_elf(s);
}

// libhv's own images (color-guest.elf): a PVH note, multiboot1 and multiboot2 headers.
image every_entry_elf() {
    images::elf_spec s = images::kernel(false);
    s.header_blob = images::mb2_header({});
    const image mb1 = images::mb1_header(0);
    s.header_blob.insert(s.header_blob.end(), mb1.begin(), mb1.end());
    s.notes = images::pvh_note(0x200040);
    return images::build_elf(s);
}

// As toolchain/realmode_image.py makes color-guest.img: a boot sector, then the ELF's
// loaded bytes with its multiboot2 header (no address tag: no entry of a flat file) and
// its multiboot1 header with the a.out kludge's addresses (an entry).
image flat_with_elf_headers(bool mb1_kludge) {
    image img = images::boot_image(0x2000, 41);
    const image mb2 = images::mb2_header({});
    std::memcpy(img.data() + 0x200, mb2.data(), mb2.size());
    constexpr std::uint32_t load_at = 0x200000, header_at = 0x220;
    const std::uint32_t flags = mb1_kludge ? std::uint32_t{hv::loader::mb1::aout_kludge} : 0u;
    const std::uint32_t h[8] = {hv::loader::mb1::header_magic, flags, 0u - hv::loader::mb1::header_magic - flags,
                                load_at + header_at - 0x200, load_at, 0, 0, load_at + 0x400};
    std::memcpy(img.data() + header_at, h, sizeof h);
    return img;
}

std::string refused(const std::string& message) { return "refused: " + message; }

constexpr char no_entry[] = "the guest has neither a multiboot header, a PVH note nor a bzImage header, and is no flat "
                            "real-mode image either: ";
constexpr char flat_refused[] = "the guest is a flat image without an entry of its own (no multiboot header, PVH note "
                                "or bzImage header), which starts only in real mode: ";

} // namespace

TEST_CASE("choose_entry: every preset x every kind of image") {
    const image flat = images::boot_image(1024, 40);
    const image mb1_elf32 = elf_with_header(false, images::mb1_header(0));
    const image mb2_elf64 = elf_with_header(true, images::mb2_header({}));
    const image pvh = pvh_elf();
    const image all_entries = every_entry_elf();
    const image bz = images::build_bzimage({});
    const image elf_without_entry = elf_with_header(false, {});
    const image garbage = images::random_bytes(0x3000, 42);
    const image flat_mb1 = flat_with_elf_headers(true);
    const image flat_unusable_headers = flat_with_elf_headers(false);
    REQUIRE(bz.size() <= hv::loader::real_mode_max_image);  // a bzImage small enough to pass for a flat image
    REQUIRE(hv::loader::real_mode_image_problem(bz) == nullptr);

    const std::string needs_pc = refused(std::string(flat_refused) + real_mode_refused::no_emulated_pc);
    const std::string elf_no_entry = refused(std::string(no_entry) + hv::loader::real_mode_problem::elf);
    const std::string garbage_no_entry = refused(std::string(no_entry) + hv::loader::real_mode_problem::no_signature);

    struct row {
        std::string_view image_kind;
        const image& img;
        std::string bare, hvm, hvm_shadow, pvhvm, pvh;
    };
    const row rows[] = {
        {"flat real-mode image", flat, needs_pc, "real-mode", "real-mode", "real-mode", needs_pc},
        {"multiboot1 ELF32", mb1_elf32, "multiboot1", "multiboot1", "multiboot1", "multiboot1", "multiboot1"},
        {"multiboot2 ELF64", mb2_elf64, "multiboot2", "multiboot2", "multiboot2", "multiboot2", "multiboot2"},
        {"PVH ELF64", pvh, "pvh", "pvh", "pvh", "pvh", "pvh"},
        {"PVH + multiboot1/2 ELF32", all_entries, "pvh", "pvh", "pvh", "multiboot2", "pvh"},
        {"Linux bzImage", bz, "linux", "linux", "linux", "linux", "linux"},
        {"ELF without an entry", elf_without_entry, elf_no_entry, elf_no_entry, elf_no_entry, elf_no_entry,
         elf_no_entry},
        {"garbage", garbage, garbage_no_entry, garbage_no_entry, garbage_no_entry, garbage_no_entry, garbage_no_entry},
        {"flat image with a multiboot1 kludge header", flat_mb1, "multiboot1", "real-mode", "real-mode",
         "multiboot1", "multiboot1"},
        {"flat image with unloadable multiboot headers", flat_unusable_headers, needs_pc, "real-mode", "real-mode",
         "real-mode", needs_pc},
    };
    for (const row& r : rows) {
        CAPTURE(r.image_kind);
        CHECK(entry_for(presets::bare, r.img) == r.bare);
        CHECK(entry_for(presets::hvm, r.img) == r.hvm);
        CHECK(entry_for(presets::hvm_shadow, r.img) == r.hvm_shadow);
        CHECK(entry_for(presets::pvhvm, r.img) == r.pvhvm);
        CHECK(entry_for(presets::pvh, r.img) == r.pvh);
    }
}

TEST_CASE("choose_entry: a malformed image is refused with the probe's error") {
    const image video = elf_with_header(false, images::mb1_header(hv::loader::mb1::want_video));
    const std::string probe_error = hv::loader::probe(video).err().what;
    CHECK(probe_error.find("video mode") != std::string::npos);
    for (const policy& p : presets::all) {
        CAPTURE(p.name);
        CHECK(entry_for(p, video) == refused(probe_error));
    }
    const image bad_checksum = elf_with_header(false, [] {
        image h = images::mb1_header(0);
        h[8] = std::byte{0x55};
        return h;
    }());
    CHECK(entry_for(presets::hvm, bad_checksum) == refused("multiboot1 header checksum does not sum to zero"));
}

TEST_CASE("choose_entry: why the entry was taken, for run_guest's log line") {
    const image all_entries = every_entry_elf();
    auto e = choose_entry(presets::hvm, all_entries);
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's real mode needs a flat image");
    e = choose_entry(presets::pvhvm, all_entries);
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's preferred start");
    e = choose_entry(presets::bare, all_entries);
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the image's first entry; the policy prefers none");
    e = choose_entry(presets::pvh, elf_with_header(false, images::mb1_header(0)));
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's pvh needs a PVH note");
    e = choose_entry(presets::pvhvm, pvh_elf());
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's multiboot needs a multiboot header");
    e = choose_entry(presets::hvm, images::build_bzimage({}));
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's real mode needs a flat image");
    e = choose_entry(presets::hvm, images::boot_image(512, 43));
    REQUIRE(e.ok());
    CHECK(std::string_view(e->why) == "the policy's preferred start");
    // A composition preferring Linux takes a bzImage by it, anything else by its own entry.
    constexpr policy linux_first = compose({"linux-first", guest_mmu::nested, boot_protocol::linux_bzimage});
    CHECK(entry_for(linux_first, images::build_bzimage({})) == "linux");
    e = choose_entry(linux_first, pvh_elf());
    REQUIRE(e.ok());
    CHECK(e->protocol == protocol::pvh);
    CHECK(std::string_view(e->why) == "the policy's linux needs a bzImage");
}
