// Grant tables, version 1.
//
// Hypervisor side (namespace gnt): a domain's grants live in its grant_table::shared
// frames, which it writes and the hypervisor reads. Using a grant pins it: the entry's
// {flags, domid} word is validated and GTF_reading (and GTF_writing for write access)
// is set with one compare-exchange, so the check and the pin see the same entry; the
// frame is read once at the first pin and kept privately in grant_active, so a guest
// rewriting its entry later changes nothing that is mapped. The last unpin clears the
// bits again. Status codes are Xen's GNTST_* values:
//
//   ref >= nr_entries                          gntst_bad_gntref
//   entry not GTF_permit_access                gntst_bad_gntref
//   entry names another domain                 gntst_permission_denied
//   write access to a GTF_readonly grant       gntst_permission_denied
//   pinned by another domain (entry in use)    gntst_permission_denied
//   frame not RAM of the granter               gntst_bad_page
//   granting domain unknown                    gntst_bad_domain
//   copy crossing a page                       gntst_bad_copy_arg
//
// Guest side (namespace gnt::guest): what a frontend does to its own table, used by
// tests and by in-guest code later: grant (fill the entry, flags last) and revoke
// (compare-exchange the entry to 0, refused while the hypervisor has it pinned).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include "libhv/io/xen_domain.hpp"

namespace hv::xen::gnt {

struct mapping {
    std::int16_t status = gntst_general_error;
    grant_handle_t handle = 0;
    void* page = nullptr; // host pointer to the granted frame
};

// `mapper` maps grant `ref` of domain `granter` (host_gfn != no_gfn: also place it in
// mapper's physmap there, through the platform).
mapping map(domain& mapper, domid_t granter, grant_ref_t ref, bool readonly,
            std::uint64_t host_gfn = no_gfn);
// host_gfn (if not no_gfn) must match the mapping's.
std::int16_t unmap(domain& mapper, grant_handle_t handle, std::uint64_t host_gfn = no_gfn);

// GNTTABOP_copy for `caller`; fills op.status and returns it.
std::int16_t copy(domain& caller, gnttab_copy& op);

// Copies between a hypervisor buffer and a granted frame, for in-hypervisor backends
// acting as domain `accessor`.
std::int16_t copy_to_grant(domain& accessor, domid_t granter, grant_ref_t ref,
                           std::uint16_t offset, const void* src, std::uint16_t len);
std::int16_t copy_from_grant(domain& accessor, domid_t granter, grant_ref_t ref,
                             std::uint16_t offset, void* dst, std::uint16_t len);

// Grows `d`'s table to at least `frames` frames (GNTTABOP_setup_table, add_to_physmap).
int grow(domain& d, std::uint32_t frames);

namespace guest {
// The frontend's view of its own table.
status grant_access(std::span<grant_entry_v1> table, grant_ref_t ref, domid_t to,
                    std::uint32_t frame, bool readonly);
// Fails with errc::busy while the grant is mapped or being copied.
status end_access(std::span<grant_entry_v1> table, grant_ref_t ref);
} // namespace guest

} // namespace hv::xen::gnt
