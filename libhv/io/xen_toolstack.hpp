// What libhv's toolstack role (the hypervisor program that builds a Xen guest) and the
// frontends it runs agree on without xenstore. Xen's own ABI carries the rest: the
// console ring's frame and port as HVM_PARAM_CONSOLE_PFN / _EVTCHN, everything else
// through grants and event channels.
#pragma once
#include <cstdint>
#include "libhv/io/xen_abi.hpp"

namespace hv::xen::toolstack {

// The in-hypervisor backends (console, block) act as this domain.
inline constexpr domid_t backend_domid = 0;
// A page of RAM outside the memory map the guest is given, for the console ring (Xen
// keeps its "special pages" just below 4 GiB too).
inline constexpr std::uint64_t console_ring_gpa = 0xfeff0000;
// Grant references 0..7 are the toolstack's in Xen; the first free one carries the
// block frontend's ring. The backend connects when that grant appears (permit access to
// backend_domid) and binds the guest's one unbound port offered to backend_domid that
// is not the console's.
inline constexpr grant_ref_t first_free_ref = 8;
inline constexpr grant_ref_t blk_ring_ref = first_free_ref;

} // namespace hv::xen::toolstack
