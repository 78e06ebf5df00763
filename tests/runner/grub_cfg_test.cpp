#include "toolchain/hvimage/grub_cfg.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using hv::image::boot_entry;
using hv::image::check_module_names;
using hv::image::grub_quote;
using hv::image::grub_words;
using hv::image::make_grub_cfg;

TEST_CASE("kernel only: no modules, text mode kept") {
    CHECK(make_grub_cfg(boot_entry{}) ==
          "set timeout=0\n"
          "set default=0\n"
          "menuentry \"libhv\" {\n"
          "  multiboot2 /boot/hv.elf\n"
          "  set gfxpayload=text\n"
          "  boot\n"
          "}\n");
}

TEST_CASE("guest and modules follow the kernel, in order") {
    boot_entry entry{.kernel_cmdline = "console=com1  loglevel=3",
                     .guest_cmdline = "root=/dev/x",
                     .module_names = {"initrd.img", "table.bin"}};
    CHECK(make_grub_cfg(entry) ==
          "set timeout=0\n"
          "set default=0\n"
          "menuentry \"libhv\" {\n"
          "  multiboot2 /boot/hv.elf 'console=com1' 'loglevel=3'\n"
          "  set gfxpayload=text\n"
          "  module2 /boot/guest guest 'root=/dev/x'\n"
          "  module2 /boot/initrd.img initrd.img\n"
          "  module2 /boot/table.bin table.bin\n"
          "  boot\n"
          "}\n");
    entry.guest_cmdline = "";
    CHECK(make_grub_cfg(entry).find("  module2 /boot/guest guest\n") != std::string::npos);
}

TEST_CASE("GRUB script quoting keeps $, ; and quotes literal") {
    CHECK(grub_quote("a$b;c") == "'a$b;c'");
    CHECK(grub_quote("it's") == "'it'\\''s'");
    CHECK(grub_quote("") == "''");
    CHECK(grub_words("  x=1\ty=$z  ") == "'x=1' 'y=$z'");
    CHECK(grub_words(" ").empty());
}

TEST_CASE("module names must be distinct, plain and not hvimage's own") {
    using names = std::vector<std::string>;
    CHECK(check_module_names(names{"a.bin", "b_2+c-d"}).ok());
    CHECK(check_module_names(names{"a.bin", "a.bin"}).message() == "two modules are named 'a.bin'");
    CHECK(check_module_names(names{"hv.elf"}).message() ==
          "module file name 'hv.elf' is reserved by hvimage");
    CHECK(check_module_names(names{"guest"}).message() ==
          "module file name 'guest' is reserved by hvimage");
    CHECK_FALSE(check_module_names(names{"my file"}).ok());
    CHECK_FALSE(check_module_names(names{"x'y"}).ok());
    CHECK_FALSE(check_module_names(names{".hidden"}).ok());
}
