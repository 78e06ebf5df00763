// Which physical CPU runs each vCPU of a guest. vCPUs never migrate: a VMCS/VMCB is
// loaded only on the CPU its vCPU is placed on. Portable (unit-tested).
//
//   spread         vCPU i on physical CPU i mod N (the default)
//   packed         every vCPU on physical CPU 0 (fibers, as on a one-CPU host)
//   list a,b,c     vCPU i on CPU list[i]; vCPUs beyond the list wrap around it
#pragma once
#include <cstddef>
#include <span>
#include <string_view>
#include "libhv/core/result.hpp"

namespace hv::cpu {

// `spec` is "spread", "packed" or a comma-separated list of CPU indices ("0,1,1");
// empty means spread. out[i] = the physical CPU of vCPU i, for i < out.size().
// Errors: an index >= pcpus, an empty or malformed list, pcpus == 0.
[[nodiscard]] status place_vcpus(std::string_view spec, unsigned pcpus, std::span<unsigned> out);

} // namespace hv::cpu
