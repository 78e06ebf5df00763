#include "libhv/mmu/guest_paging.hpp"

namespace hv::mmu {

paging_mode guest_paging::mode() const {
    if (!(cr0 & cr0::pg)) return paging_mode::off;
    if (!(cr4 & cr4::pae)) return paging_mode::legacy32;
    return efer & efer::lma ? paging_mode::four_level : paging_mode::pae;
}

namespace {
bool user_mode(const guest_paging& regs, guest_access access) {
    return regs.cpl == 3 && !access.implicit_supervisor;
}

// SMAP: supervisor data accesses to user pages need an explicit access with EFLAGS.AC.
bool smap_forbids(const guest_paging& regs, guest_access access) {
    return (regs.cr4 & cr4::smap) && (access.implicit_supervisor || !(regs.rflags & rflags::ac));
}
} // namespace

bool access_allowed(const guest_paging& regs, guest_access access, const x86_rights& rights) {
    const bool user_page = rights.user;
    if (user_mode(regs, access)) {
        if (!user_page) return false;
        if (access.kind == access_kind::write) return rights.write;
        if (access.kind == access_kind::execute) return !rights.no_execute;
        return true;
    }
    switch (access.kind) {
    case access_kind::execute: return !rights.no_execute && !(user_page && (regs.cr4 & cr4::smep));
    case access_kind::read: return !(user_page && smap_forbids(regs, access));
    case access_kind::write:
        if (user_page && smap_forbids(regs, access)) return false;
        return rights.write || !(regs.cr0 & cr0::wp);
    }
    return false;
}

std::uint32_t access_error_code(const guest_paging& regs, guest_access access) {
    std::uint32_t code = 0;
    if (access.kind == access_kind::write) code |= pf_error::write;
    if (user_mode(regs, access)) code |= pf_error::user;
    const paging_mode mode = regs.mode();
    const bool nx_paging = (mode == paging_mode::pae || mode == paging_mode::four_level) && (regs.efer & efer::nxe);
    if (access.kind == access_kind::execute && ((regs.cr4 & cr4::smep) || nx_paging)) code |= pf_error::fetch;
    return code;
}

} // namespace hv::mmu
