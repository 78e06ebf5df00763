// The metal configuration, instantiated once: tables in host-physical memory reached
// through the direct map, pages from the hypervisor's allocator behind a
// page_allocator_ref. Building this file freestanding proves every template compiles there.
#include "libhv/mmu/format_ept.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/mmu/guest_memory.hpp"
#include "libhv/mmu/guest_paging.hpp"
#include "libhv/mmu/page_table.hpp"

namespace hv::mmu {

using host_memory = direct_map_memory<page_allocator_ref>;

template class page_table<x86_64_format, host_memory>;
template class page_table<pae_format, host_memory>;
template class page_table<legacy32_format, host_memory>;
template class page_table<ept_format, host_memory>;

template class guest_memory<host_memory>;
template status guest_memory<host_memory>::map_nested(page_table<ept_format, host_memory>::batch&) const;
template status guest_memory<host_memory>::map_nested(page_table<x86_64_format, host_memory>::batch&) const;
template class guest_table_pool<host_memory>;
template class page_table<x86_64_format, guest_table_pool<host_memory>>;

template gva_result translate_gva(guest_memory<host_memory>&, const guest_paging&, const paging_features&,
                                  std::uint64_t, guest_access, guest_walk_path*);
template gva_result gva_cache::translate(guest_memory<host_memory>&, std::uint64_t, const guest_paging&,
                                         const paging_features&, std::uint64_t, guest_access);
template guest_fault copy_from_guest_virtual(guest_memory<host_memory>&, const guest_paging&,
                                             const paging_features&, void*, std::uint64_t, std::size_t,
                                             guest_access);
template guest_fault copy_to_guest_virtual(guest_memory<host_memory>&, const guest_paging&,
                                           const paging_features&, std::uint64_t, const void*, std::size_t,
                                           guest_access);

} // namespace hv::mmu
