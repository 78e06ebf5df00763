#include "toolchain/hvrun/targets.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hv::run {

namespace {

constexpr target table[] = {
    {"bochs-intel", family::bochs, "corei7_skylake_x", "",
     "Bochs, Skylake-X: VMX with EPT, VPID, unrestricted guest"},
    {"bochs-intel-haswell", family::bochs, "corei7_haswell_4770", "",
     "Bochs, Haswell: VMX with EPT, VPID, unrestricted guest"},
    {"bochs-intel-noept", family::bochs, "bx_generic",
     "level=6, vendor_string=\"GenuineIntel\", "
     "brand_string=\"libhv generic VMX without EPT\", family=6, model=0x1a, "
     "stepping=5, mmx=1, apic=xapic, sep=1, simd=sse2, x86_64=1, 1g_pages=1, vmx=1",
     "Bochs, generic Intel CPU: VMX without EPT (shadow paging)"},
    {"bochs-amd", family::bochs, "ryzen", "", "Bochs, Ryzen: SVM with NPT and NRIPS"},
    {"bochs-amd-phenom", family::bochs, "phenom_8650_toliman", "",
     "Bochs, Phenom: SVM with NPT, no NRIPS"},
    {"qemu-svm", family::qemu, "qemu64,+svm,+npt,+pdpe1gb", "",
     "QEMU TCG: SVM with NPT, no NRIPS; fast"},
};

}  // namespace

std::span<const target> all_targets() {
    return table;
}

const target* find_target(absl::string_view name) {
    auto found = std::ranges::find(table, name, &target::name);
    return found == std::end(table) ? nullptr : found;
}

std::string target_names() {
    return absl::StrJoin(table, ", ",
                         [](std::string* out, const target& t) { absl::StrAppend(out, t.name); });
}

}  // namespace hv::run
