#include "libhv/vm/policy.hpp"
// PV devices without the Xen ABI.
constexpr auto chosen = hv::vm::compose({"mine", hv::vm::guest_mmu::nested, hv::vm::boot_protocol::pvh,
                                         hv::vm::device_model::pv});
