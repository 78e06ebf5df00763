#include "libhv/mmu/guest_paging.hpp"

namespace hv::mmu {

std::uint32_t access_error_code(const guest_paging& regs, guest_access access) {
    std::uint32_t code = 0;
    if (access.kind == access_kind::write) code |= pf_error::write;
    if (detail::user_mode(regs, access)) code |= pf_error::user;
    const paging_mode mode = regs.mode();
    const bool nx_paging = (mode == paging_mode::pae || mode == paging_mode::four_level) && (regs.efer & efer::nxe);
    if (access.kind == access_kind::execute && ((regs.cr4 & cr4::smep) || nx_paging)) code |= pf_error::fetch;
    return code;
}

} // namespace hv::mmu
