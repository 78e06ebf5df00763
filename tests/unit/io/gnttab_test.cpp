// Grant table v1: the access-check matrix, map/unmap/copy, the revoke handshake.
#include <doctest/doctest.h>
#include <cstring>
#include <span>
#include "libhv/io/xen_gnttab.hpp"
#include "tests/unit/io/fake_guest.hpp"

namespace x = hv::xen;
namespace gnt = hv::xen::gnt;

namespace {

struct fixture {
    x::domain_table t;
    fake::vm front{t, 1}; // grants
    fake::vm back{t, 2};  // maps
    fake::vm other{t, 3}; // a third party
    std::span<x::grant_entry_v1> table() { return {front.d().gnttab.shared, x::grant_entries_per_frame}; }
    hv::status grant(x::grant_ref_t ref, x::domid_t to, std::uint32_t gfn, bool ro) {
        return gnt::guest::grant_access(table(), ref, to, gfn, ro);
    }
};

} // namespace

TEST_CASE("gnttab: access-check matrix for map") {
    fixture f;
    REQUIRE(f.grant(1, 2, 5, false).ok());
    REQUIRE(f.grant(2, 2, 6, true).ok());
    REQUIRE(f.grant(3, 3, 7, false).ok());
    f.front.d().gnttab.shared[4] = {x::gtf_accept_transfer, 2, 8};
    f.front.d().gnttab.shared[5] = {x::gtf_permit_access | x::gtf_sub_page, 2, 8};
    REQUIRE(f.grant(6, 2, 4000, false).ok()); // frame that is not RAM

    struct row {
        const char* what;
        x::domid_t granter;
        x::grant_ref_t ref;
        bool readonly;
        std::int16_t expect;
    } rows[] = {
        {"rw grant, rw map", 1, 1, false, x::gntst_okay},
        {"rw grant, ro map", 1, 1, true, x::gntst_okay},
        {"ro grant, ro map", 1, 2, true, x::gntst_okay},
        {"ro grant, rw map", 1, 2, false, x::gntst_permission_denied},
        {"granted to another domain", 1, 3, true, x::gntst_permission_denied},
        {"unused entry", 1, 7, true, x::gntst_bad_gntref},
        {"transfer entry", 1, 4, true, x::gntst_bad_gntref},
        {"sub-page entry cannot be mapped", 1, 5, true, x::gntst_general_error},
        {"frame not RAM", 1, 6, true, x::gntst_bad_page},
        {"ref beyond the table", 1, x::grant_entries_per_frame, true, x::gntst_bad_gntref},
        {"ref far out of range", 1, 0xffffffffu, true, x::gntst_bad_gntref},
        {"unknown domain", 42, 1, true, x::gntst_bad_domain},
    };
    for (const auto& r : rows) {
        CAPTURE(r.what);
        auto m = gnt::map(f.back.d(), r.granter, r.ref, r.readonly);
        CHECK(m.status == r.expect);
        if (m.status == x::gntst_okay) {
            CHECK(m.page == f.front.plat.guest_frame(f.front.d().gnttab.shared[r.ref].frame));
            CHECK(gnt::unmap(f.back.d(), m.handle) == x::gntst_okay);
        }
        // Whatever happened, nothing stays pinned.
        if (r.ref < x::max_grant_entries)
            CHECK((f.front.d().gnttab.shared[r.ref].flags & (x::gtf_reading | x::gtf_writing)) == 0);
    }
}

TEST_CASE("gnttab: pins, revoke while mapped, entry in use, handles") {
    fixture f;
    REQUIRE(f.grant(1, 2, 5, false).ok());
    auto m1 = gnt::map(f.back.d(), 1, 1, false);
    REQUIRE(m1.status == x::gntst_okay);
    auto& e = f.front.d().gnttab.shared[1];
    CHECK(e.flags == (x::gtf_permit_access | x::gtf_reading | x::gtf_writing));
    // The guest cannot revoke or re-grant it now.
    CHECK(gnt::guest::end_access(f.table(), 1).code() == hv::errc::busy);
    CHECK(f.grant(1, 3, 9, false).code() == hv::errc::busy);
    auto m2 = gnt::map(f.back.d(), 1, 1, true); // a second, read-only, mapping
    REQUIRE(m2.status == x::gntst_okay);
    CHECK(m2.handle != m1.handle);
    CHECK(gnt::unmap(f.back.d(), m1.handle) == x::gntst_okay);
    CHECK(e.flags == (x::gtf_permit_access | x::gtf_reading)); // writer gone, reader left
    CHECK(gnt::unmap(f.back.d(), m1.handle) == x::gntst_bad_handle);
    CHECK(gnt::unmap(f.back.d(), 9999) == x::gntst_bad_handle);
    CHECK(gnt::guest::end_access(f.table(), 1).code() == hv::errc::busy);

    SUBCASE("a misbehaving guest rewrites a pinned entry") {
        // Hand the entry to domain 3 behind the hypervisor's back, keeping the pin bits.
        e.domid = 3;
        e.frame = 11;
        auto m3 = gnt::map(f.other.d(), 1, 1, true);
        CHECK(m3.status == x::gntst_permission_denied); // in use by domain 2
        auto m4 = gnt::map(f.back.d(), 1, 1, true);
        CHECK(m4.status == x::gntst_permission_denied); // entry no longer names 2
        e.domid = 2;
        auto m5 = gnt::map(f.back.d(), 1, 1, true);
        REQUIRE(m5.status == x::gntst_okay);
        CHECK(m5.page == m2.page); // the pinned frame, not the rewritten one
        CHECK(gnt::unmap(f.back.d(), m5.handle) == x::gntst_okay);
    }
    CHECK(gnt::unmap(f.back.d(), m2.handle) == x::gntst_okay);
    CHECK((e.flags & (x::gtf_reading | x::gtf_writing)) == 0);
    CHECK(gnt::guest::end_access(f.table(), 1).ok());
    CHECK(e.flags == 0);
    CHECK(gnt::map(f.back.d(), 1, 1, true).status == x::gntst_bad_gntref); // revoked
    CHECK(gnt::guest::end_access(f.table(), 600).code() == hv::errc::out_of_range);
}

TEST_CASE("gnttab: maptrack exhaustion and host mappings") {
    fixture f;
    REQUIRE(f.grant(1, 2, 5, true).ok());
    std::vector<x::grant_handle_t> hs;
    for (unsigned i = 0; i < x::max_maptrack; ++i) {
        auto m = gnt::map(f.back.d(), 1, 1, true);
        REQUIRE(m.status == x::gntst_okay);
        hs.push_back(m.handle);
    }
    CHECK(gnt::map(f.back.d(), 1, 1, true).status == x::gntst_no_space);
    for (auto h : hs) REQUIRE(gnt::unmap(f.back.d(), h) == x::gntst_okay);
    auto m = gnt::map(f.back.d(), 1, 1, true, 40);
    REQUIRE(m.status == x::gntst_okay);
    CHECK(f.back.plat.foreign.at(40).first == m.page);
    CHECK(f.back.plat.foreign.at(40).second == true);
    CHECK(gnt::unmap(f.back.d(), m.handle, 41) == x::gntst_bad_virt_addr);
    CHECK(gnt::unmap(f.back.d(), m.handle, 40) == x::gntst_okay);
    CHECK(f.back.plat.foreign.count(40) == 0);
    f.back.plat.fail_physmap = true;
    CHECK(gnt::map(f.back.d(), 1, 1, true, 40).status == x::gntst_bad_virt_addr);
    CHECK((f.front.d().gnttab.shared[1].flags & x::gtf_reading) == 0);
}

TEST_CASE("gnttab: copy by reference with checks") {
    fixture f;
    std::memcpy(f.front.plat.at(5 * 4096 + 100), "granted-data", 12);
    REQUIRE(f.grant(1, 2, 5, true).ok());  // read-only source
    REQUIRE(f.grant(2, 2, 6, false).ok()); // writable destination
    auto mk = [](x::grant_ref_t sref, std::uint64_t sg, std::uint16_t soff, x::grant_ref_t dref,
                 std::uint64_t dg, std::uint16_t doff, std::uint16_t len, std::uint16_t flags, x::domid_t sd,
                 x::domid_t dd) {
        x::gnttab_copy op{};
        if (flags & x::gntcopy_source_gref) op.source.u.ref = sref; else op.source.u.gmfn = sg;
        if (flags & x::gntcopy_dest_gref) op.dest.u.ref = dref; else op.dest.u.gmfn = dg;
        op.source.domid = sd;
        op.source.offset = soff;
        op.dest.domid = dd;
        op.dest.offset = doff;
        op.len = len;
        op.flags = flags;
        return op;
    };
    // granted source -> the copier's own frame
    auto op = mk(1, 0, 100, 0, 20, 8, 12, x::gntcopy_source_gref, 1, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_okay);
    CHECK(std::memcmp(f.back.plat.at(20 * 4096 + 8), "granted-data", 12) == 0);
    // own frame -> granted writable destination
    op = mk(0, 20, 8, 2, 0, 4090, 6, x::gntcopy_dest_gref, x::domid_self, 1);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_okay);
    CHECK(std::memcmp(f.front.plat.at(6 * 4096 + 4090), "grante", 6) == 0);
    // gref to gref
    op = mk(1, 0, 100, 2, 0, 0, 12, x::gntcopy_source_gref | x::gntcopy_dest_gref, 1, 1);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_okay);
    // write into a read-only grant
    op = mk(0, 20, 0, 1, 0, 0, 4, x::gntcopy_dest_gref, x::domid_self, 1);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_permission_denied);
    // crossing the page end, either side
    op = mk(1, 0, 4090, 0, 20, 0, 7, x::gntcopy_source_gref, 1, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_bad_copy_arg);
    op = mk(1, 0, 0, 0, 20, 4095, 2, x::gntcopy_source_gref, 1, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_bad_copy_arg);
    // a frame of someone else, named without a grant
    op = mk(0, 5, 0, 0, 20, 0, 4, 0, 1, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_permission_denied);
    // not RAM
    op = mk(1, 0, 0, 0, 5000, 0, 4, x::gntcopy_source_gref, 1, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_bad_page);
    // a domain that is not the grantee
    op = mk(1, 0, 0, 0, 20, 0, 4, x::gntcopy_source_gref, 1, x::domid_self);
    CHECK(gnt::copy(f.other.d(), op) == x::gntst_permission_denied);
    op = mk(1, 0, 0, 0, 20, 0, 4, x::gntcopy_source_gref, 99, x::domid_self);
    CHECK(gnt::copy(f.back.d(), op) == x::gntst_bad_domain);
    // nothing left pinned by any of it
    CHECK((f.front.d().gnttab.shared[1].flags & (x::gtf_reading | x::gtf_writing)) == 0);
    CHECK((f.front.d().gnttab.shared[2].flags & (x::gtf_reading | x::gtf_writing)) == 0);
    // backend helpers
    char buf[12];
    CHECK(gnt::copy_from_grant(f.back.d(), 1, 1, 100, buf, 12) == x::gntst_okay);
    CHECK(std::memcmp(buf, "granted-data", 12) == 0);
    CHECK(gnt::copy_to_grant(f.back.d(), 1, 1, 0, buf, 12) == x::gntst_permission_denied);
    CHECK(gnt::copy_to_grant(f.back.d(), 1, 2, 4000, buf, 100) == x::gntst_bad_copy_arg);
    CHECK(gnt::copy_to_grant(f.back.d(), 1, 2, 0, buf, 12) == x::gntst_okay);
}

TEST_CASE("gnttab: table growth and the guest-side grant checks") {
    fixture f;
    CHECK(gnt::grow(f.front.d(), x::max_grant_frames + 1) == -x::err::einval);
    CHECK(f.front.d().gnttab.nr_frames == 1);
    REQUIRE(gnt::grow(f.front.d(), 2) == 0);
    std::span<x::grant_entry_v1> all(f.front.d().gnttab.shared, 2 * x::grant_entries_per_frame);
    REQUIRE(gnt::guest::grant_access(all, 600, 2, 5, false).ok());
    CHECK(gnt::map(f.back.d(), 1, 600, false).status == x::gntst_okay);
    CHECK(gnt::guest::grant_access(all, 2 * x::grant_entries_per_frame, 2, 5, false).code() ==
          hv::errc::out_of_range);
}
