// The hypercall interface: CPUID, the hypercall page, and every implemented hypercall
// driven through dispatch_hypercall with a fake guest, in 64-bit and 32-bit mode, plus
// seeded random arguments (always a defined return code, never a crash).
#include <doctest/doctest.h>
#include <array>
#include <cstring>
#include <random>
#include "libhv/io/xen_evtchn.hpp"
#include "libhv/io/xen_gnttab.hpp"
#include "libhv/io/xen_hypercall.hpp"
#include "tests/unit/io/fake_guest.hpp"
#include "tests/unit/io/xen_public.hpp"

namespace x = hv::xen;

namespace {

constexpr std::uint64_t arg_gva = 0x1000; // gfn 1: argument structures
constexpr std::uint64_t buf_gva = 0x2000; // gfn 2: buffers
constexpr std::uint64_t bad_gva = 0xdead0000000;

struct hc_fixture {
    x::domain_table t;
    fake::vm g{t, 1, 2};
    fake::vm peer{t, 2, 1};

    std::int64_t call(std::uint64_t nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                      std::uint32_t vcpu = 0) {
        return x::dispatch_hypercall(g.d(), vcpu, g.mem, x::hypercall_args_64(nr, a0, a1, a2, 0, 0));
    }
    std::int64_t call32(std::uint32_t nr, std::uint32_t a0 = 0, std::uint32_t a1 = 0, std::uint32_t a2 = 0) {
        return x::dispatch_hypercall(g.d(), 0, g.mem, x::hypercall_args_32(nr, a0, a1, a2, 0, 0));
    }
    template <class T>
    void put(std::uint64_t gva, const T& v) { std::memcpy(g.plat.at(gva), &v, sizeof v); }
    template <class T>
    T get(std::uint64_t gva) {
        T v;
        std::memcpy(&v, g.plat.at(gva), sizeof v);
        return v;
    }
};

} // namespace

TEST_CASE("hypercall: CPUID leaves") {
    x::cpuid_result r;
    CHECK_FALSE(x::xen_cpuid(0x3fffffff, 0, 1, 0, r));
    CHECK_FALSE(x::xen_cpuid(0x40000100, 0, 1, 0, r));
    REQUIRE(x::xen_cpuid(0x40000000, 0, 1, 0, r));
    char sig[13] = {};
    std::memcpy(sig, &r.ebx, 4);
    std::memcpy(sig + 4, &r.ecx, 4);
    std::memcpy(sig + 8, &r.edx, 4);
    CHECK(std::string(sig) == "XenVMMXenVMM");
    CHECK(r.eax >= 0x40000002); // what Linux requires of a Xen base
    REQUIRE(x::xen_cpuid(0x40000001, 0, 1, 0, r));
    CHECK(r.eax == (4u << 16 | 17u));
    REQUIRE(x::xen_cpuid(0x40000002, 0, 1, 0, r));
    CHECK(r.eax == 1);
    CHECK(r.ebx == 0x40000000);
    REQUIRE(x::xen_cpuid(0x40000004, 0, 7, 3, r));
    CHECK((r.eax & XEN_HVM_CPUID_VCPU_ID_PRESENT) != 0);
    CHECK((r.eax & XEN_HVM_CPUID_DOMID_PRESENT) != 0);
    CHECK(r.ebx == 3);
    CHECK(r.ecx == 7);
    REQUIRE(x::xen_cpuid(0x400000ff, 0, 1, 0, r));
    CHECK(r.eax == 0);
}

TEST_CASE("hypercall: the hypercall page") {
    std::array<std::uint8_t, 4096> intel{}, amd{};
    x::write_hypercall_page(intel, x::cpu_vendor::intel);
    x::write_hypercall_page(amd, x::cpu_vendor::amd);
    for (unsigned i = 0; i < 128; ++i) {
        CAPTURE(i);
        const std::uint8_t* p = intel.data() + i * 32;
        const std::uint8_t* q = amd.data() + i * 32;
        if (i == __HYPERVISOR_iret) {
            CHECK(p[0] == 0x0f);
            CHECK(p[1] == 0x0b);
            continue;
        }
        const std::uint8_t stub[9] = {0xb8, std::uint8_t(i), 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3};
        CHECK(std::memcmp(p, stub, 9) == 0);
        CHECK(std::memcmp(q, stub, 7) == 0);
        CHECK(q[7] == 0xd9);
        CHECK(q[8] == 0xc3);
        for (int k = 9; k < 32; ++k) CHECK(p[k] == 0xcc);
    }
    hc_fixture f;
    CHECK(x::hypercall_msr_write(f.g.d(), 5 * 4096, x::cpu_vendor::intel).ok());
    CHECK(std::memcmp(f.g.plat.at(5 * 4096), intel.data(), 4096) == 0);
    CHECK(x::hypercall_msr_write(f.g.d(), 5 * 4096 + 1, x::cpu_vendor::intel).code() == hv::errc::invalid_argument);
    CHECK(x::hypercall_msr_write(f.g.d(), 1ull << 50, x::cpu_vendor::intel).code() == hv::errc::fault);
}

TEST_CASE("hypercall: numbers and modes") {
    hc_fixture f;
    CHECK(f.call(0) == -x::err::enosys);  // set_trap_table: PV only
    CHECK(f.call(23) == -x::err::enosys); // iret
    CHECK(f.call(1u << 20) == -x::err::enosys);
    CHECK(f.call(~0ull) == -x::err::enosys);
    // 32-bit mode sees only the low halves.
    CHECK(x::dispatch_hypercall(f.g.d(), 0, f.g.mem,
                                x::hypercall_args{(1ull << 32) | __HYPERVISOR_xen_version, {0}, x::guest_mode::bits32}) ==
          (4 << 16 | 17));
    CHECK(x::dispatch_hypercall(f.g.d(), 2, f.g.mem, x::hypercall_args_64(17, 0, 0, 0, 0, 0)) == -x::err::einval);
}

TEST_CASE("hypercall: register-only calls answer as dispatch_hypercall does, without guest memory") {
    hc_fixture f;
    std::int64_t rc = 0;
    REQUIRE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_xen_version, XENVER_version, rc));
    CHECK(rc == f.call(__HYPERVISOR_xen_version, XENVER_version));
    CHECK(rc == (4 << 16 | 17));
    REQUIRE(x::register_only_hypercall(f.g.d(), 1, __HYPERVISOR_xen_version, XENVER_pagesize, rc));
    CHECK(rc == 4096);
    // The command is the low 32 bits of the first argument, as in the full dispatch.
    REQUIRE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_xen_version, (7ull << 32) | XENVER_version, rc));
    CHECK(rc == f.call(__HYPERVISOR_xen_version, (7ull << 32) | XENVER_version));
    const unsigned yields = f.g.plat.yields;
    REQUIRE(x::register_only_hypercall(f.g.d(), 1, __HYPERVISOR_sched_op, SCHEDOP_yield, rc));
    CHECK(rc == 0);
    CHECK(f.g.plat.yields == yields + 1);
    // Not register-only: left to dispatch_hypercall.
    CHECK_FALSE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_xen_version, XENVER_extraversion, rc));
    CHECK_FALSE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_xen_version, 99, rc));
    CHECK_FALSE(x::register_only_hypercall(f.g.d(), 0, (1ull << 32) | __HYPERVISOR_xen_version, XENVER_version, rc));
    CHECK_FALSE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_sched_op, SCHEDOP_block, rc));
    CHECK_FALSE(x::register_only_hypercall(f.g.d(), 0, __HYPERVISOR_event_channel_op, EVTCHNOP_send, rc));
    CHECK(f.call((1ull << 32) | __HYPERVISOR_xen_version, XENVER_version) == -x::err::enosys);
    CHECK(f.g.mem.reads == 0);
    CHECK(f.g.mem.writes == 0);
}

TEST_CASE("hypercall: console_io and xen_version") {
    hc_fixture f;
    std::memcpy(f.g.plat.at(buf_gva + 4090), "hello,", 6); // crosses into gfn 3
    std::memcpy(f.g.plat.at(buf_gva + 4096), " xen", 4);
    CHECK(f.call(__HYPERVISOR_console_io, CONSOLEIO_write, 10, buf_gva + 4090) == 0);
    CHECK(f.g.plat.console_out == "hello, xen");
    CHECK(f.call(__HYPERVISOR_console_io, CONSOLEIO_write, 10, bad_gva) == -x::err::efault);
    CHECK(f.call(__HYPERVISOR_console_io, CONSOLEIO_write, 1u << 20, buf_gva) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_console_io, 7, 1, buf_gva) == -x::err::enosys);
    f.g.plat.console_in = "ab";
    CHECK(f.call(__HYPERVISOR_console_io, CONSOLEIO_read, 10, buf_gva) == 2);
    CHECK(std::memcmp(f.g.plat.at(buf_gva), "ab", 2) == 0);

    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_version) == (4 << 16 | 17));
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_pagesize) == 4096);
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_extraversion, buf_gva) == 0);
    CHECK(std::string(f.g.plat.at<char>(buf_gva)) == ".0-libhv");
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_capabilities, buf_gva) == 0);
    CHECK(std::string(f.g.plat.at<char>(buf_gva)).find("hvm-3.0-x86_64") == 0);
    f.put(arg_gva, xen_feature_info{0, 0});
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_get_features, arg_gva) == 0);
    auto fi = f.get<xen_feature_info>(arg_gva);
    CHECK((fi.submap >> XENFEAT_hvm_callback_vector & 1) == 1);
    CHECK((fi.submap >> XENFEAT_auto_translated_physmap & 1) == 1);
    f.put(arg_gva, xen_feature_info{1, 0});
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_get_features, arg_gva) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_xen_version, XENVER_compile_info, bad_gva) == -x::err::efault);
    CHECK(f.call(__HYPERVISOR_xen_version, 99) == -x::err::enosys);
}

TEST_CASE("hypercall: memory_op add_to_physmap maps shared_info and grant frames") {
    hc_fixture f;
    f.put(arg_gva, xen_add_to_physmap{DOMID_SELF, 0, XENMAPSPACE_shared_info, 0, 40});
    CHECK(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, arg_gva) == 0);
    CHECK(f.g.plat.overlay.at(40) == f.g.d().shared_page());
    f.put(arg_gva, xen_add_to_physmap{DOMID_SELF, 0, XENMAPSPACE_grant_table, 2, 41});
    CHECK(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, arg_gva) == 0);
    CHECK(f.g.plat.overlay.at(41) == &f.g.d().gnttab.shared[2 * 512]);
    CHECK(f.g.d().gnttab.nr_frames == 3);
    CHECK(f.g.d().gnttab.frame_gfn[2] == 41);
    struct bad {
        xen_add_to_physmap x;
        long rc;
    } bads[] = {
        {{DOMID_SELF, 0, XENMAPSPACE_shared_info, 1, 40}, -x::err::einval},
        {{DOMID_SELF, 0, XENMAPSPACE_grant_table, 4, 40}, -x::err::einval},
        {{DOMID_SELF, 0, XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, 40}, -x::err::einval},
        {{DOMID_SELF, 0, XENMAPSPACE_gmfn, 0, 40}, -x::err::eopnotsupp},
        {{DOMID_SELF, 0, 77, 0, 40}, -x::err::eopnotsupp},
        {{2, 0, XENMAPSPACE_shared_info, 0, 40}, -x::err::eperm},
        {{9, 0, XENMAPSPACE_shared_info, 0, 40}, -x::err::esrch},
        {{DOMID_SELF, 0, XENMAPSPACE_shared_info, 0, 1ull << 52}, -x::err::einval},
    };
    for (auto& b : bads) {
        f.put(arg_gva, b.x);
        CHECK(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, arg_gva) == b.rc);
    }
    CHECK(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, bad_gva) == -x::err::efault);
    CHECK(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap | (1 << 6), arg_gva) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_memory_op, 0 /* increase_reservation */, arg_gva) == -x::err::enosys);
    // 32-bit layout
    x::add_to_physmap_compat c{DOMID_SELF, 0, XENMAPSPACE_grant_table, 0, 42};
    f.put(arg_gva, c);
    CHECK(f.call32(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, arg_gva) == 0);
    CHECK(f.g.d().gnttab.frame_gfn[0] == 42);
}

TEST_CASE("hypercall: event_channel_op end to end between two guests") {
    hc_fixture f;
    // The guest maps shared_info first, as Linux does.
    f.put(arg_gva, xen_add_to_physmap{DOMID_SELF, 0, XENMAPSPACE_shared_info, 0, 40});
    REQUIRE(f.call(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, arg_gva) == 0);
    auto* si = f.g.plat.at<struct shared_info>(40 * 4096);

    f.put(arg_gva, evtchn_alloc_unbound{DOMID_SELF, 2, 0});
    REQUIRE(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, arg_gva) == 0);
    auto au = f.get<evtchn_alloc_unbound>(arg_gva);
    CHECK(au.port != 0);
    x::evtchn_bind_interdomain bi{1, 0, au.port, 0};
    REQUIRE(x::ev::bind_interdomain(f.peer.d(), bi) == 0);
    REQUIRE(x::ev::send(f.peer.d(), bi.local_port) == 0);
    CHECK((si->evtchn_pending[au.port / 64] >> (au.port % 64) & 1) == 1);
    CHECK(si->vcpu_info[0].evtchn_upcall_pending == 1);

    f.put(arg_gva, evtchn_send{au.port});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_send, arg_gva) == 0);
    CHECK(x::ev::is_pending(f.peer.d(), bi.local_port));
    f.put(arg_gva, evtchn_status{DOMID_SELF, au.port, 0, 0, {}});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_status, arg_gva) == 0);
    CHECK(f.get<evtchn_status>(arg_gva).status == EVTCHNSTAT_interdomain);
    f.put(arg_gva, evtchn_bind_virq{VIRQ_TIMER, 1, 0});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, arg_gva) == 0);
    f.put(arg_gva, evtchn_bind_ipi{0, 0});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_ipi, arg_gva) == 0);
    f.put(arg_gva, evtchn_close{au.port});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_close, arg_gva) == 0);
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_close, arg_gva) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_send, bad_gva) == -x::err::efault);
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_pirq, arg_gva) == -x::err::eperm);
    CHECK(f.call(__HYPERVISOR_event_channel_op, 99, arg_gva) == -x::err::enosys);
    // FIFO through the hypercall
    f.put(arg_gva, evtchn_init_control{10, 0, 0, 0, {}});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_init_control, arg_gva) == 0);
    CHECK(f.get<evtchn_init_control>(arg_gva).link_bits == EVTCHN_FIFO_LINK_BITS);
    f.put(arg_gva, evtchn_expand_array{11});
    CHECK(f.call(__HYPERVISOR_event_channel_op, EVTCHNOP_expand_array, arg_gva) == 0);
}

TEST_CASE("hypercall: grant_table_op") {
    hc_fixture f;
    // query_size / setup_table
    f.put(arg_gva, gnttab_query_size{DOMID_SELF, 0, 0, 0});
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, arg_gva, 1) == 0);
    auto q = f.get<gnttab_query_size>(arg_gva);
    CHECK(q.status == GNTST_okay);
    CHECK(q.nr_frames == 1);
    CHECK(q.max_nr_frames == x::max_grant_frames);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, arg_gva, 2) == -x::err::einval);
    f.put(arg_gva, gnttab_query_size{2, 0, 0, 0});
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_query_size>(arg_gva).status == GNTST_permission_denied);

    gnttab_setup_table st{};
    st.dom = DOMID_SELF;
    st.nr_frames = 2;
    st.frame_list.p = reinterpret_cast<xen_pfn_t*>(buf_gva);
    f.put(arg_gva, st);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_setup_table>(arg_gva).status == GNTST_okay);
    CHECK(f.get<std::uint64_t>(buf_gva) == x::no_gfn); // not placed in the physmap yet
    CHECK(f.g.d().gnttab.nr_frames == 2);
    st.nr_frames = 5;
    f.put(arg_gva, st);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_setup_table>(arg_gva).status == GNTST_general_error);
    st.nr_frames = 1;
    st.frame_list.p = reinterpret_cast<xen_pfn_t*>(bad_gva);
    f.put(arg_gva, st);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg_gva, 1) == -x::err::efault);

    // The peer grants page gfn 7 to us; we map it at gfn 50 and copy from it.
    std::memcpy(f.peer.plat.at(7 * 4096), "peer page", 9);
    std::span<x::grant_entry_v1> pt(f.peer.d().gnttab.shared, 512);
    REQUIRE(x::gnt::guest::grant_access(pt, 3, 1, 7, true).ok());
    gnttab_map_grant_ref m[2] = {};
    m[0] = {50 * 4096, GNTMAP_host_map | GNTMAP_readonly, 3, 2, 0, 0, 0};
    m[1] = {51 * 4096, GNTMAP_host_map, 3, 2, 0, 0, 0}; // read-only grant, rw map
    f.put(arg_gva, m);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, arg_gva, 2) == 0);
    std::array<gnttab_map_grant_ref, 2> mo = f.get<std::array<gnttab_map_grant_ref, 2>>(arg_gva);
    CHECK(mo[0].status == GNTST_okay);
    CHECK(mo[1].status == GNTST_permission_denied);
    CHECK(std::memcmp(f.g.plat.at(50 * 4096), "peer page", 9) == 0);
    CHECK(f.g.plat.foreign.at(50).second == true);
    CHECK(x::gnt::guest::end_access(pt, 3).code() == hv::errc::busy);

    gnttab_copy cp{};
    cp.source.u.ref = 3;
    cp.source.domid = 2;
    cp.dest.u.gmfn = 2;
    cp.dest.domid = DOMID_SELF;
    cp.dest.offset = 100;
    cp.len = 9;
    cp.flags = GNTCOPY_source_gref;
    f.put(arg_gva, cp);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_copy, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_copy>(arg_gva).status == GNTST_okay);
    CHECK(std::memcmp(f.g.plat.at(buf_gva + 100), "peer page", 9) == 0);

    gnttab_unmap_grant_ref u{50 * 4096, 0, mo[0].handle, 0};
    f.put(arg_gva, u);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_unmap_grant_ref>(arg_gva).status == GNTST_okay);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_unmap_grant_ref>(arg_gva).status == GNTST_bad_handle);
    CHECK(x::gnt::guest::end_access(pt, 3).ok());

    // Batches are bounded; unknown ops are ENOSYS; versions: v1 only.
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, arg_gva, 100000) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, bad_gva, 1) == -x::err::efault);
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_transfer, arg_gva, 1) == -x::err::enosys);
    f.put(arg_gva, gnttab_set_version{2});
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_set_version, arg_gva, 1) == -x::err::einval);
    CHECK(f.get<gnttab_set_version>(arg_gva).version == 1);
    f.put(arg_gva, gnttab_set_version{1});
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_set_version, arg_gva, 1) == 0);
    f.put(arg_gva, gnttab_get_version{DOMID_SELF, 0, 0});
    CHECK(f.call(__HYPERVISOR_grant_table_op, GNTTABOP_get_version, arg_gva, 1) == 0);
    CHECK(f.get<gnttab_get_version>(arg_gva).version == 1);

    // 32-bit copy layout
    x::gnttab_copy_compat cc{{3, 2, 0}, {2, DOMID_SELF, 200}, 4, GNTCOPY_source_gref, 0};
    REQUIRE(x::gnt::guest::grant_access(pt, 3, 1, 7, true).ok());
    f.put(arg_gva, cc);
    CHECK(f.call32(__HYPERVISOR_grant_table_op, GNTTABOP_copy, arg_gva, 1) == 0);
    CHECK(f.get<x::gnttab_copy_compat>(arg_gva).status == GNTST_okay);
    CHECK(std::memcmp(f.g.plat.at(buf_gva + 200), "peer", 4) == 0);
}

TEST_CASE("hypercall: hvm_op params and the callback vector") {
    hc_fixture f;
    auto set = [&](std::uint32_t idx, std::uint64_t v, domid_t dom = DOMID_SELF) {
        f.put(arg_gva, xen_hvm_param{dom, 0, idx, v});
        return f.call(__HYPERVISOR_hvm_op, HVMOP_set_param, arg_gva);
    };
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 2ull << 56 | 0xf3) == 0);
    CHECK(f.g.d().callback_vector() == 0xf3);
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 2ull << 56 | 0x05) == -x::err::einval);
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 2ull << 56 | 0x1f3) == -x::err::einval);
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 0ull << 56 | 9) == -x::err::eopnotsupp); // GSI
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 7ull << 56 | 9) == -x::err::eopnotsupp);
    CHECK(set(HVM_PARAM_STORE_PFN, 5) == -x::err::eperm);
    CHECK(set(HVM_NR_PARAMS, 5) == -x::err::einval);
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 0, 2) == -x::err::eperm);
    CHECK(set(HVM_PARAM_CALLBACK_IRQ, 0, 1234) == -x::err::esrch);
    f.g.d().set_hvm_param(HVM_PARAM_CONSOLE_PFN, 33);
    f.put(arg_gva, xen_hvm_param{DOMID_SELF, 0, HVM_PARAM_CONSOLE_PFN, 0});
    CHECK(f.call(__HYPERVISOR_hvm_op, HVMOP_get_param, arg_gva) == 0);
    CHECK(f.get<xen_hvm_param>(arg_gva).value == 33);
    CHECK(f.call(__HYPERVISOR_hvm_op, 77, arg_gva) == -x::err::enosys);
    // The vector is injected on the upcall edge.
    x::evtchn_bind_ipi ipi{1, 0};
    REQUIRE(x::ev::bind_ipi(f.g.d(), ipi) == 0);
    REQUIRE(x::ev::send(f.g.d(), ipi.port) == 0);
    CHECK(f.g.plat.last_vector == 0xf3);
    CHECK(f.g.d().pending_callback_vector(1) == 0xf3);
}

TEST_CASE("hypercall: vcpu_op, set_timer_op, sched_op") {
    hc_fixture f;
    // register_vcpu_info moves the vcpu_info and forces a rescan.
    f.put(arg_gva, vcpu_register_vcpu_info{9, 128, 0});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 1, arg_gva) == 0);
    auto* vi = f.g.plat.at<struct vcpu_info>(9 * 4096 + 128);
    CHECK(f.g.d().vcpu[1].info == reinterpret_cast<x::vcpu_info*>(vi));
    CHECK(vi->evtchn_upcall_pending == 1);
    CHECK(vi->evtchn_pending_sel == ~0ull);
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 1, arg_gva) == -x::err::einval); // once
    f.put(arg_gva, vcpu_register_vcpu_info{9, 4096 - 32, 0});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, arg_gva) == -x::err::einval);
    f.put(arg_gva, vcpu_register_vcpu_info{9, 4, 0});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, arg_gva) == -x::err::einval);
    f.put(arg_gva, vcpu_register_vcpu_info{1ull << 40, 0, 0});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, arg_gva) == -x::err::einval);
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 5, arg_gva) == -x::err::enoent);
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, bad_gva) == -x::err::efault);

    f.put(arg_gva, vcpu_set_singleshot_timer{5'000'000, 0});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_set_singleshot_timer, 0, arg_gva) == 0);
    CHECK(f.g.plat.timers.at(0) == 5'000'000);
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_set_singleshot_timer, 1, arg_gva) == -x::err::einval);
    f.put(arg_gva, vcpu_set_singleshot_timer{10, VCPU_SSHOTTMR_future});
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_set_singleshot_timer, 0, arg_gva) == -x::err::etime);
    CHECK(f.call(__HYPERVISOR_vcpu_op, VCPUOP_stop_singleshot_timer, 0) == 0);
    CHECK(f.g.plat.timers.count(0) == 0);
    CHECK(f.call(__HYPERVISOR_vcpu_op, 99, 0, arg_gva) == -x::err::enosys);
    CHECK(f.call(__HYPERVISOR_set_timer_op, 7'000'000) == 0);
    CHECK(f.g.plat.timers.at(0) == 7'000'000);
    CHECK(f.call(__HYPERVISOR_set_timer_op, 0) == 0);
    CHECK(f.g.plat.timers.count(0) == 0);
    CHECK(f.call32(__HYPERVISOR_set_timer_op, 0x89abcdef, 0x1) == 0); // lo, hi
    CHECK(f.g.plat.timers.at(0) == 0x189abcdefull);
    // The timer VIRQ arrives through the bound port.
    x::evtchn_bind_virq bv{VIRQ_TIMER, 0, 0};
    REQUIRE(x::ev::bind_virq(f.g.d(), bv) == 0);
    f.g.d().timer_expired(0);
    CHECK(x::ev::is_pending(f.g.d(), bv.port));

    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_yield) == 0);
    CHECK(f.g.plat.yields == 1);
    f.g.d().shared()->vcpu[0].evtchn_upcall_mask = 1;
    f.g.d().shared()->vcpu[0].evtchn_upcall_pending = 0;
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_block) == 0);
    CHECK(f.g.plat.blocks == 1);
    CHECK(f.g.d().shared()->vcpu[0].evtchn_upcall_mask == 0);
    f.g.d().shared()->vcpu[0].evtchn_upcall_pending = 1;
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_block) == 0);
    CHECK(f.g.plat.blocks == 1); // an event is pending: no sleep
    // poll
    std::uint32_t ports[2] = {bv.port, 1000};
    f.put(buf_gva, ports);
    sched_poll sp{};
    sp.ports.p = reinterpret_cast<evtchn_port_t*>(buf_gva);
    sp.nr_ports = 1;
    f.put(arg_gva, sp);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_poll, arg_gva) == 0);
    sp.nr_ports = 2;
    f.put(arg_gva, sp);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_poll, arg_gva) == 0);
    ports[1] = 5000;
    f.put(buf_gva, ports);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_poll, arg_gva) == -x::err::einval);
    sp.nr_ports = 129;
    f.put(arg_gva, sp);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_poll, arg_gva) == -x::err::einval);
    // shutdown
    f.put(arg_gva, sched_shutdown{SHUTDOWN_MAX + 1});
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_shutdown, arg_gva) == -x::err::einval);
    CHECK(f.g.plat.shutdown_reason == -1);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_shutdown, bad_gva) == -x::err::efault);
    f.put(arg_gva, sched_shutdown{SHUTDOWN_reboot});
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_shutdown, arg_gva) == 0);
    CHECK(f.g.plat.shutdown_reason == SHUTDOWN_reboot);
    CHECK(f.call(__HYPERVISOR_sched_op, SCHEDOP_remote_shutdown, arg_gva) == -x::err::eperm);
    CHECK(f.call(__HYPERVISOR_sched_op, 42, arg_gva) == -x::err::enosys);
}

TEST_CASE("hypercall: random arguments always give a defined result (seeded)") {
    // Random numbers, commands, counts and pointers (valid, unmapped, page-crossing,
    // near the top of the address space) over random guest memory contents.
    for (std::uint64_t seed : {1ull, 2ull, 3ull, 0xfeedull}) {
        CAPTURE(seed);
        hc_fixture f;
        std::mt19937_64 rng(seed);
        for (auto& p : f.g.plat.ram)
            for (auto& b : p->b) b = static_cast<unsigned char>(rng() % 7 == 0 ? rng() : 0);
        const std::uint64_t nrs[] = {12, 15, 17, 18, 20, 24, 29, 32, 34};
        auto pick_ptr = [&]() -> std::uint64_t {
            switch (rng() % 6) {
            case 0: return rng();
            case 1: return (rng() % 64) * 4096 + rng() % 4096;
            case 2: return 4096 * (1 + rng() % 8) - 1 - rng() % 16; // page-crossing
            case 3: return ~0ull - rng() % 64;
            case 4: return 0;
            default: return arg_gva;
            }
        };
        auto pick_small = [&]() -> std::uint64_t {
            return rng() % 4 == 0 ? rng() : rng() % 16;
        };
        for (int i = 0; i < 20000; ++i) {
            std::uint64_t nr = rng() % 8 ? nrs[rng() % 9] : rng() % 64;
            auto a = x::hypercall_args_64(nr, pick_small(), pick_ptr(), pick_small(), rng(), rng());
            if (rng() % 2) a.arg[1] = pick_small();
            if (rng() % 2) a.arg[2] = pick_ptr();
            if (rng() % 5 == 0) a.mode = x::guest_mode::bits32;
            std::uint32_t vcpu = static_cast<std::uint32_t>(rng() % 3);
            std::int64_t rc = x::dispatch_hypercall(f.g.d(), vcpu, f.g.mem, a);
            // Success (>= 0, at most the version number or a byte count), or a Xen errno.
            bool known_errno = rc == -x::err::eperm || rc == -x::err::enoent || rc == -x::err::esrch ||
                               rc == -x::err::efault || rc == -x::err::einval || rc == -x::err::enosys ||
                               rc == -x::err::eexist || rc == -x::err::enospc || rc == -x::err::etime ||
                               rc == -x::err::enodata || rc == -x::err::eopnotsupp;
            REQUIRE_MESSAGE((rc >= 0 || known_errno), "nr=", nr, " rc=", rc);
            REQUIRE(rc <= (4 << 16 | 17));
            // Keep the domain usable: undo any shutdown, keep vcpu_info in range.
            f.g.d().shut_down = false;
        }
        // Invariants after the storm: the grant table is within bounds, no maptrack leaks.
        CHECK(f.g.d().gnttab.nr_frames <= x::max_grant_frames);
    }
}
