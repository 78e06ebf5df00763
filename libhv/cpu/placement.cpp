#include "libhv/cpu/placement.hpp"
#include "libhv/core/cmdline.hpp"

namespace hv::cpu {

status place_vcpus(std::string_view spec, unsigned pcpus, std::span<unsigned> out) {
    if (pcpus == 0) return fail(errc::invalid_argument, "placement: no physical CPU");
    if (spec.empty() || spec == "spread") {
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<unsigned>(i % pcpus);
        return {};
    }
    if (spec == "packed") {
        for (auto& p : out) p = 0;
        return {};
    }
    unsigned list[64];
    std::size_t n = 0;
    while (true) {
        const std::size_t comma = spec.find(',');
        const std::string_view item = spec.substr(0, comma);
        const auto v = parse_u64(item);
        if (item.empty() || !v) return fail(errc::invalid_argument, "placement: not spread, packed or a list of CPU numbers");
        if (*v >= pcpus) return fail(errc::out_of_range, "placement: a CPU number beyond the physical CPUs");
        if (n == sizeof list / sizeof list[0]) return fail(errc::out_of_range, "placement: list too long");
        list[n++] = static_cast<unsigned>(*v);
        if (comma == std::string_view::npos) break;
        spec.remove_prefix(comma + 1);
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = list[i % n];
    return {};
}

} // namespace hv::cpu
