#include "libhv/mmu/shadow.hpp"

namespace hv::mmu {

shadow_format shadow_format_for(paging_mode mode) {
    return mode == paging_mode::four_level ? shadow_format::four_level : shadow_format::pae;
}

namespace shadow_detail {

std::uint32_t hash_frame(std::uint64_t frame) {
    return static_cast<std::uint32_t>((frame * 0x9e37'79b9'7f4a'7c15) >> 32);
}

unsigned filter_hash(std::uint64_t hpa) {
    return static_cast<unsigned>(((hpa >> page_shift) * 0x9e37'79b9'7f4a'7c15) >> 52);
}

// The shadow runs with NXE and SMEP-or-not as configured, so I/D is reported for
// every fetch; U=0 at CPL 3 can only be an implicit supervisor access.
guest_access access_from_error_code(std::uint32_t ec, std::uint8_t cpl) {
    guest_access a;
    a.kind = ec & pf_error::write ? access_kind::write : ec & pf_error::fetch ? access_kind::execute : access_kind::read;
    a.implicit_supervisor = cpl == 3 && !(ec & pf_error::user);
    return a;
}

} // namespace shadow_detail
} // namespace hv::mmu

namespace hv::mmu {
// The metal configuration, instantiated here so the freestanding build compiles it.
template class shadow_mmu<guest_memory<direct_map_memory<page_allocator_ref>>, direct_map_memory<page_allocator_ref>,
                          1024>;
} // namespace hv::mmu
