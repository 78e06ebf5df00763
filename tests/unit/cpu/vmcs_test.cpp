#include <doctest/doctest.h>
#include <set>
#include <string>
#include "libhv/cpu/vmx/exit.hpp"
#include "libhv/cpu/vmx/vmcs.hpp"

using namespace hv::vmx;

TEST_CASE("vmcs: encodings match SDM appendix B numbers") {
    // (field, encoding from the SDM's tables), a sample from every group.
    const std::pair<field, std::uint32_t> sdm[] = {
        {field::vpid, 0x0000}, {field::posted_int_notification_vector, 0x0002}, {field::guest_es_selector, 0x0800},
        {field::guest_ldtr_selector, 0x080c}, {field::guest_interrupt_status, 0x0810}, {field::host_es_selector, 0x0c00},
        {field::host_cs_selector, 0x0c02}, {field::io_bitmap_b, 0x2002}, {field::msr_bitmap, 0x2004},
        {field::tsc_offset, 0x2010}, {field::virtual_apic_address, 0x2012}, {field::eoi_exit_bitmap3, 0x2022},
        {field::vmcs_link_pointer, 0x2800}, {field::guest_pat, 0x2804}, {field::guest_pdpte0, 0x280a},
        {field::host_pat, 0x2c00}, {field::proc_controls, 0x4002}, {field::exception_bitmap, 0x4004},
        {field::exit_controls, 0x400c}, {field::entry_controls, 0x4012}, {field::exit_reason, 0x4402},
        {field::exit_instruction_length, 0x440c}, {field::guest_es_limit, 0x4800}, {field::guest_gdtr_limit, 0x4810},
        {field::guest_es_ar, 0x4814}, {field::guest_interruptibility, 0x4824}, {field::guest_sysenter_cs, 0x482a},
        {field::cr0_guest_host_mask, 0x6000}, {field::cr4_read_shadow, 0x6006}, {field::exit_qualification, 0x6400},
        {field::guest_cr0, 0x6800}, {field::guest_cr4, 0x6804}, {field::guest_es_base, 0x6806},
        {field::guest_tr_base, 0x6814}, {field::guest_rsp, 0x681c}, {field::guest_rip, 0x681e},
        {field::host_cr0, 0x6c00}, {field::host_tr_base, 0x6c0a}, {field::host_rsp, 0x6c14},
    };
    for (auto [f, enc] : sdm) {
        CAPTURE(std::string(name(f)));
        CHECK(raw(f) == enc);
    }
}

TEST_CASE("vmcs: every field decodes to its width, type and index") {
    std::set<std::uint32_t> seen;
    std::set<std::string> names;
    for (std::size_t i = 0; i < field_count; ++i) {
        field f = all_fields[i];
        CAPTURE(std::string(name(f)));
        CHECK(seen.insert(raw(f)).second);
        CHECK(names.insert(std::string(name(f))).second);
        CHECK(valid_encoding(raw(f)));
        CHECK(encode(width_of(f), type_of(f), index_of(f)) == raw(f));
        CHECK(slot_of(f) == i);
        std::string n(name(f));
        // Naming follows the appendix's groups.
        if (n.rfind("guest_", 0) == 0 && type_of(f) != field_type::exit_info) CHECK(type_of(f) == field_type::guest);
        if (n.rfind("host_", 0) == 0) CHECK(type_of(f) == field_type::host);
        if (n.find("selector") != std::string::npos) CHECK(width_of(f) == width::w16);
        if (n.find("_limit") != std::string::npos || n.find("_ar") == n.size() - 3) CHECK(width_of(f) == width::w32);
        if (n.find("_base") != std::string::npos) CHECK(width_of(f) == width::natural);
        CHECK(read_only(f) == (type_of(f) == field_type::exit_info));
    }
    CHECK(seen.size() == field_count);
}

TEST_CASE("vmcs: encoding validity, high halves and slots of unknown encodings") {
    CHECK(valid_encoding(high_half(field::ept_pointer)));
    CHECK(access_of(high_half(field::ept_pointer)) == access::high);
    CHECK_FALSE(valid_encoding(raw(field::guest_rip) | 1));  // natural-width fields have no high half
    CHECK_FALSE(valid_encoding(0x1000));                     // bit 12 reserved
    CHECK_FALSE(valid_encoding(0x8000));
    CHECK_FALSE(slot_of(std::uint32_t{0x6830}).has_value());  // a guest natural field libhv does not list
    CHECK_FALSE(slot_of(high_half(field::tsc_offset)).has_value());
    CHECK(slot_of(std::uint32_t{0x681e}) == slot_of(field::guest_rip));
    CHECK(value_mask(field::guest_cs_selector) == 0xffff);
    CHECK(value_mask(field::guest_cs_ar) == 0xffffffff);
    CHECK(value_mask(field::guest_efer) == ~0ull);
    static_assert(std::is_same_v<value_t<field::guest_cs_selector>, std::uint16_t>);
    static_assert(std::is_same_v<value_t<field::exit_reason>, std::uint32_t>);
    static_assert(std::is_same_v<value_t<field::guest_rip>, std::uint64_t>);
}

TEST_CASE("vmx exit: reason and instruction-error names") {
    CHECK(name(exit_reason::cpuid) == "CPUID");
    CHECK(name(exit_reason::ept_violation) == "EPT violation");
    CHECK(name(static_cast<exit_reason>(35)) == "?");
    CHECK(name(instruction_error::vmlaunch_non_clear) == "VMLAUNCH with non-clear VMCS");
    CHECK(name(instruction_error::entry_invalid_host_state) == "VM entry with invalid host-state field(s)");
    CHECK(name(static_cast<instruction_error>(14)) == "?");
    for (unsigned n = 0; n <= 75; ++n) {
        bool undefined = n == 35 || n == 38 || n == 42 || n == 71;
        CAPTURE(n);
        CHECK((name(static_cast<exit_reason>(n)) == "?") == undefined);
    }
    exit_reason_field f{0x80000021};
    CHECK(f.entry_failure());
    CHECK(f.basic() == exit_reason::invalid_guest_state);
}

TEST_CASE("vmx exit: qualification decoders") {
    // mov cr3, rbx -> CR 3, mov-to-CR, GPR 3.
    cr_qualification cr{0x303};
    CHECK(cr.cr() == 3);
    CHECK(cr.access() == cr_access_type::mov_to_cr);
    CHECK(cr.gpr() == 3);
    cr_qualification mov_from{(14u << 8) | (1u << 4) | 4};
    CHECK(mov_from.access() == cr_access_type::mov_from_cr);
    CHECK(mov_from.cr() == 4);
    CHECK(mov_from.gpr() == 14);
    cr_qualification lmsw{(0x1234ull << 16) | (1u << 6) | (3u << 4)};
    CHECK(lmsw.access() == cr_access_type::lmsw);
    CHECK(lmsw.lmsw_memory_operand());
    CHECK(lmsw.lmsw_source() == 0x1234);

    // rep insw from port 0x1f0: size 2, in, string, rep, DX operand.
    io_qualification io{(0x1f0ull << 16) | (1u << 5) | (1u << 4) | (1u << 3) | 1};
    CHECK(io.size() == 2);
    CHECK(io.in());
    CHECK(io.string());
    CHECK(io.rep());
    CHECK_FALSE(io.immediate_operand());
    CHECK(io.port() == 0x1f0);
    io_qualification out_imm{(0x80ull << 16) | (1u << 6) | 3};
    CHECK(out_imm.size() == 4);
    CHECK_FALSE(out_imm.in());
    CHECK(out_imm.immediate_operand());
    CHECK(out_imm.port() == 0x80);

    ept_violation_qualification ev{(1u << 1) | (1u << 3) | (1u << 7) | (1u << 8)};
    CHECK(ev.write());
    CHECK_FALSE(ev.read());
    CHECK(ev.present());
    CHECK(ev.entry_readable());
    CHECK_FALSE(ev.entry_writable());
    CHECK(ev.linear_valid());
    CHECK(ev.final_translation());
    CHECK_FALSE(ept_violation_qualification{4}.present());

    auto ii = interruption_info::make(event_type::hardware_exception, 13, true);
    CHECK(ii.valid());
    CHECK(ii.vector() == 13);
    CHECK(ii.type() == event_type::hardware_exception);
    CHECK(ii.error_code_valid());
    CHECK(ii.raw == 0x80000b0d);
    CHECK(exception_has_error_code(14));
    CHECK_FALSE(exception_has_error_code(6));
    CHECK_FALSE(exception_has_error_code(200));
    CHECK(io_string_info{1u << 7}.address_size() == 32);
    CHECK(io_string_info{2u << 7 | 3u << 15}.address_size() == 64);
    CHECK(io_string_info{3u << 15}.segment() == 3);
}
