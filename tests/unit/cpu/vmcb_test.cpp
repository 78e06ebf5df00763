#include <doctest/doctest.h>
#include <array>
#include <string>
#include <vector>
#include "libhv/cpu/bitmaps.hpp"
#include "libhv/cpu/svm/vmcb.hpp"
#include "tests/unit/cpu/bochs_caps.hpp"

using namespace hv::svm;

TEST_CASE("vmcb: size and alignment") {
    CHECK(sizeof(vmcb) == 4096);
    CHECK(alignof(vmcb) == 4096);
    vmcb v{};
    auto base = reinterpret_cast<const char*>(&v);
    // Spot checks through real objects in addition to the static_asserts.
    CHECK(reinterpret_cast<const char*>(&v.state.rip) - base == 0x400 + 0x178);
    CHECK(reinterpret_cast<const char*>(&v.state.rax) - base == 0x400 + 0x1f8);
    CHECK(reinterpret_cast<const char*>(&v.control.eventinj) - base == 0x0a8);
    CHECK(reinterpret_cast<const char*>(&v.control.next_rip) - base == 0x0c8);
}

TEST_CASE("vmcb: segment attributes <-> access rights") {
    // 64-bit code: type 0xb, S, DPL 0, P, L, G.
    std::uint32_t ar = 0xb | 1u << 4 | 1u << 7 | 1u << 13 | 1u << 15;
    CHECK(attrib_from_ar(ar) == 0xa9b);
    CHECK(ar_from_attrib(0xa9b) == ar);
    // Flat 32-bit data, DPL 3.
    std::uint32_t d = 0x3 | 1u << 4 | 3u << 5 | 1u << 7 | 1u << 14 | 1u << 15;
    CHECK(ar_from_attrib(attrib_from_ar(d)) == d);
    CHECK(attrib_from_ar(1u << 16) == 0);  // VMX's unusable bit has no VMCB counterpart
}

TEST_CASE("vmcb: exit code names") {
    char buf[24];
    CHECK(name(exit_code::cpuid, buf) == "CPUID");
    CHECK(name(exit_code::vmmcall, buf) == "VMMCALL");
    CHECK(name(exit_code::npf, buf) == "nested page fault");
    CHECK(name(exit_code::shutdown, buf) == "shutdown");
    CHECK(name(exit_code::invalid, buf) == "VMRUN: invalid guest state");
    CHECK(name(static_cast<exit_code>(0x013), buf) == "write CR3");
    CHECK(name(static_cast<exit_code>(0x04e), buf) == "exception 14");
    CHECK(name(static_cast<exit_code>(0x093), buf) == "write CR3 (trap)");
    CHECK(name(static_cast<exit_code>(0x3ff), buf) == "?");
}

TEST_CASE("vmcb: IOIO, NPF, CR and event decoders") {
    // rep outsb to 0x3f8 with 32-bit addressing via DS: OUT, STR, REP, SZ8, A32, SEG=3.
    ioio_info io{0x3f8ull << 16 | 3u << 10 | 1u << 8 | 1u << 4 | 1u << 3 | 1u << 2};
    CHECK_FALSE(io.in());
    CHECK(io.string());
    CHECK(io.rep());
    CHECK(io.size() == 1);
    CHECK(io.address_size() == 32);
    CHECK(io.segment() == 3);
    CHECK(io.port() == 0x3f8);
    ioio_info in{0x60ull << 16 | 1u << 6 | 1};
    CHECK(in.in());
    CHECK(in.size() == 4);
    CHECK(in.port() == 0x60);

    npf_info npf{1ull << 32 | 1u << 2 | 1u << 1};
    CHECK(npf.write());
    CHECK(npf.user());
    CHECK_FALSE(npf.present());
    CHECK(npf.final_translation());
    CHECK_FALSE(npf.page_table_walk());

    CHECK(cr_info{1ull << 63 | 7}.valid());
    CHECK(cr_info{1ull << 63 | 7}.gpr() == 7);

    auto gp = event::make(event_type::exception, 13, 0x18);
    CHECK(gp.valid());
    CHECK(gp.vector() == 13);
    CHECK(gp.type() == event_type::exception);
    CHECK(gp.error_code_valid());
    CHECK(gp.error_code() == 0x18);
    CHECK(gp.raw == 0x00000018'80000b0dull);
    auto irq = event::make(event_type::intr, 0x20);
    CHECK(irq.raw == 0x80000020ull);
    CHECK_FALSE(irq.error_code_valid());
}

TEST_CASE("svm probe: Bochs AMD models") {
    probe_input ryzen{bochs::ryzen_ext1_ecx, bochs::ryzen_svm_leaf[0], bochs::ryzen_svm_leaf[1],
                      bochs::ryzen_svm_leaf[3], false, 0};
    auto r = probe(ryzen);
    CHECK(r.usable);
    CHECK(r.caps.nested_paging);
    CHECK(r.caps.nrips);
    CHECK(r.caps.asids == 0x8000);
    CHECK(r.caps.revision == 1);

    probe_input phenom{bochs::phenom_ext1_ecx, bochs::phenom_svm_leaf[0], bochs::phenom_svm_leaf[1],
                       bochs::phenom_svm_leaf[3], false, 0};
    auto p = probe(phenom);
    CHECK(p.usable);
    CHECK(p.caps.nested_paging);
    CHECK_FALSE(p.caps.nrips);  // RIP must be advanced by decoding
    CHECK(p.caps.asids == 0x40);

    auto disabled = ryzen;
    disabled.vm_cr_readable = true;
    disabled.vm_cr = vm_cr_svmdis | vm_cr_lock;
    CHECK_FALSE(probe(disabled).usable);
    CHECK(std::string(probe(disabled).why_not).find("locked") != std::string::npos);
    auto no_svm = ryzen;
    no_svm.ext1_ecx &= ~4u;
    CHECK_FALSE(probe(no_svm).usable);
}

TEST_CASE("bitmaps: VMX MSR bitmap, SVM MSRPM, I/O bitmaps") {
    using namespace hv::cpu;
    std::vector<std::uint8_t> vmx(vmx_msr_bitmap::size), svm(svm_msrpm::size, 0xff);
    CHECK(set_msr_intercept<vmx_msr_bitmap>(vmx, 0xc0000080, msr_access::write, true));  // EFER writes
    CHECK(vmx[1024 + 2048 + 0x80 / 8] == 1);
    CHECK(msr_intercepted<vmx_msr_bitmap>(vmx, 0xc0000080, msr_access::write));
    CHECK_FALSE(msr_intercepted<vmx_msr_bitmap>(vmx, 0xc0000080, msr_access::read));
    CHECK(msr_intercepted<vmx_msr_bitmap>(vmx, 0x40000000, msr_access::read));  // no bit: always exits
    CHECK_FALSE(set_msr_intercept<vmx_msr_bitmap>(vmx, 0xc0010000, msr_access::read, true));
    CHECK(set_msr_intercept<vmx_msr_bitmap>(vmx, 0x1b, msr_access::read, true));
    CHECK(vmx[3] == 0x08);

    // MSRPM: MSR 0xc0010117 (VM_HSAVE_PA) is in the third range, bits 2n and 2n+1.
    CHECK(set_msr_intercept<svm_msrpm>(svm, 0xc0010117, msr_access::read, false));
    CHECK(svm[0x1000 + 0x117 * 2 / 8] == static_cast<std::uint8_t>(~(1u << (0x117 * 2 % 8))));
    CHECK(msr_intercepted<svm_msrpm>(svm, 0xc0010117, msr_access::write));
    CHECK_FALSE(msr_intercepted<svm_msrpm>(svm, 0xc0010117, msr_access::read));
    CHECK(set_msr_intercept<svm_msrpm>(svm, 0x10, msr_access::write, false));
    CHECK(svm[4] == 0xfd);

    std::vector<std::uint8_t> io(io_bitmap::svm_size);
    set_io_intercept(io, 0x3f8, 1, true);
    CHECK(io_intercepted(io, 0x3f8, 1));
    CHECK_FALSE(io_intercepted(io, 0x3f9, 1));
    CHECK(io_intercepted(io, 0x3f6, 4));  // a dword access touching 0x3f8
    set_io_intercept(io, 0xfffe, 4, true);
    CHECK(io[0x2000] == 0x03);            // ports 0x10000, 0x10001 in the third page
    std::vector<std::uint8_t> vio(io_bitmap::vmx_size);
    set_io_intercept(vio, 0xfffe, 4, true);  // must not write past bitmap B
    CHECK(vio[0x1fff] == 0xc0);
    CHECK(io_intercepted(vio, 0xffff, 2));   // wraps: always exits
}
