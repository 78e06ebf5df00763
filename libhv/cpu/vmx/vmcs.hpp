// VMCS field encodings (SDM vol. 3C appendix B), computed from (width, type, index)
// as SDM 24.11.2 defines them, plus width-typed accessors.
//
// SDM section numbers in libhv/cpu follow the editions that number VM entries chapter 26
// and VMX instruction errors 30.4; newer editions add one to chapters 24-31.
//
//   bit 0      access type: 0 full, 1 high 32 bits of a 64-bit field
//   bits 9:1   index
//   bits 11:10 type: control, VM-exit information (read-only), guest state, host state
//   bits 14:13 width: 16-bit, 64-bit, 32-bit, natural
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace hv::vmx {

enum class width : std::uint8_t { w16 = 0, w64 = 1, w32 = 2, natural = 3 };
enum class field_type : std::uint8_t { control = 0, exit_info = 1, guest = 2, host = 3 };
enum class access : std::uint8_t { full = 0, high = 1 };

constexpr std::uint32_t encode(width w, field_type t, std::uint32_t index, access a = access::full) {
    return static_cast<std::uint32_t>(a) | (index << 1) | (static_cast<std::uint32_t>(t) << 10) |
           (static_cast<std::uint32_t>(w) << 13);
}

// X(name, width, type, index), in appendix B order (B.1.1 ... B.4.4).
#define HV_VMCS_FIELDS(X)                                                    \
    /* B.1.1 16-bit control */                                               \
    X(vpid, w16, control, 0)                                                 \
    X(posted_int_notification_vector, w16, control, 1)                       \
    X(eptp_index, w16, control, 2)                                           \
    /* B.1.2 16-bit guest state */                                           \
    X(guest_es_selector, w16, guest, 0)                                      \
    X(guest_cs_selector, w16, guest, 1)                                      \
    X(guest_ss_selector, w16, guest, 2)                                      \
    X(guest_ds_selector, w16, guest, 3)                                      \
    X(guest_fs_selector, w16, guest, 4)                                      \
    X(guest_gs_selector, w16, guest, 5)                                      \
    X(guest_ldtr_selector, w16, guest, 6)                                    \
    X(guest_tr_selector, w16, guest, 7)                                      \
    X(guest_interrupt_status, w16, guest, 8)                                 \
    X(pml_index, w16, guest, 9)                                              \
    /* B.1.3 16-bit host state */                                            \
    X(host_es_selector, w16, host, 0)                                        \
    X(host_cs_selector, w16, host, 1)                                        \
    X(host_ss_selector, w16, host, 2)                                        \
    X(host_ds_selector, w16, host, 3)                                        \
    X(host_fs_selector, w16, host, 4)                                        \
    X(host_gs_selector, w16, host, 5)                                        \
    X(host_tr_selector, w16, host, 6)                                        \
    /* B.2.1 64-bit control */                                               \
    X(io_bitmap_a, w64, control, 0)                                          \
    X(io_bitmap_b, w64, control, 1)                                          \
    X(msr_bitmap, w64, control, 2)                                           \
    X(exit_msr_store_addr, w64, control, 3)                                  \
    X(exit_msr_load_addr, w64, control, 4)                                   \
    X(entry_msr_load_addr, w64, control, 5)                                  \
    X(executive_vmcs_ptr, w64, control, 6)                                   \
    X(pml_address, w64, control, 7)                                          \
    X(tsc_offset, w64, control, 8)                                           \
    X(virtual_apic_address, w64, control, 9)                                 \
    X(apic_access_address, w64, control, 10)                                 \
    X(posted_int_desc_address, w64, control, 11)                             \
    X(vm_function_controls, w64, control, 12)                                \
    X(ept_pointer, w64, control, 13)                                         \
    X(eoi_exit_bitmap0, w64, control, 14)                                    \
    X(eoi_exit_bitmap1, w64, control, 15)                                    \
    X(eoi_exit_bitmap2, w64, control, 16)                                    \
    X(eoi_exit_bitmap3, w64, control, 17)                                    \
    X(eptp_list_address, w64, control, 18)                                   \
    X(vmread_bitmap, w64, control, 19)                                       \
    X(vmwrite_bitmap, w64, control, 20)                                      \
    X(ve_info_address, w64, control, 21)                                     \
    X(xss_exiting_bitmap, w64, control, 22)                                  \
    X(encls_exiting_bitmap, w64, control, 23)                                \
    X(spp_table_pointer, w64, control, 24)                                   \
    X(tsc_multiplier, w64, control, 25)                                      \
    X(tertiary_proc_controls, w64, control, 26)                              \
    /* B.2.2 64-bit read-only data */                                        \
    X(guest_physical_address, w64, exit_info, 0)                             \
    /* B.2.3 64-bit guest state */                                           \
    X(vmcs_link_pointer, w64, guest, 0)                                      \
    X(guest_debugctl, w64, guest, 1)                                         \
    X(guest_pat, w64, guest, 2)                                              \
    X(guest_efer, w64, guest, 3)                                             \
    X(guest_perf_global_ctrl, w64, guest, 4)                                 \
    X(guest_pdpte0, w64, guest, 5)                                           \
    X(guest_pdpte1, w64, guest, 6)                                           \
    X(guest_pdpte2, w64, guest, 7)                                           \
    X(guest_pdpte3, w64, guest, 8)                                           \
    X(guest_bndcfgs, w64, guest, 9)                                          \
    X(guest_rtit_ctl, w64, guest, 10)                                        \
    /* B.2.4 64-bit host state */                                            \
    X(host_pat, w64, host, 0)                                                \
    X(host_efer, w64, host, 1)                                               \
    X(host_perf_global_ctrl, w64, host, 2)                                   \
    /* B.3.1 32-bit control */                                               \
    X(pin_controls, w32, control, 0)                                         \
    X(proc_controls, w32, control, 1)                                        \
    X(exception_bitmap, w32, control, 2)                                     \
    X(pf_error_code_mask, w32, control, 3)                                   \
    X(pf_error_code_match, w32, control, 4)                                  \
    X(cr3_target_count, w32, control, 5)                                     \
    X(exit_controls, w32, control, 6)                                        \
    X(exit_msr_store_count, w32, control, 7)                                 \
    X(exit_msr_load_count, w32, control, 8)                                  \
    X(entry_controls, w32, control, 9)                                       \
    X(entry_msr_load_count, w32, control, 10)                                \
    X(entry_interruption_info, w32, control, 11)                             \
    X(entry_exception_error_code, w32, control, 12)                          \
    X(entry_instruction_length, w32, control, 13)                            \
    X(tpr_threshold, w32, control, 14)                                       \
    X(proc2_controls, w32, control, 15)                                      \
    X(ple_gap, w32, control, 16)                                             \
    X(ple_window, w32, control, 17)                                          \
    /* B.3.2 32-bit read-only data */                                        \
    X(vm_instruction_error, w32, exit_info, 0)                               \
    X(exit_reason, w32, exit_info, 1)                                        \
    X(exit_interruption_info, w32, exit_info, 2)                             \
    X(exit_interruption_error_code, w32, exit_info, 3)                       \
    X(idt_vectoring_info, w32, exit_info, 4)                                 \
    X(idt_vectoring_error_code, w32, exit_info, 5)                           \
    X(exit_instruction_length, w32, exit_info, 6)                            \
    X(exit_instruction_info, w32, exit_info, 7)                              \
    /* B.3.3 32-bit guest state */                                           \
    X(guest_es_limit, w32, guest, 0)                                         \
    X(guest_cs_limit, w32, guest, 1)                                         \
    X(guest_ss_limit, w32, guest, 2)                                         \
    X(guest_ds_limit, w32, guest, 3)                                         \
    X(guest_fs_limit, w32, guest, 4)                                         \
    X(guest_gs_limit, w32, guest, 5)                                         \
    X(guest_ldtr_limit, w32, guest, 6)                                       \
    X(guest_tr_limit, w32, guest, 7)                                         \
    X(guest_gdtr_limit, w32, guest, 8)                                       \
    X(guest_idtr_limit, w32, guest, 9)                                       \
    X(guest_es_ar, w32, guest, 10)                                           \
    X(guest_cs_ar, w32, guest, 11)                                           \
    X(guest_ss_ar, w32, guest, 12)                                           \
    X(guest_ds_ar, w32, guest, 13)                                           \
    X(guest_fs_ar, w32, guest, 14)                                           \
    X(guest_gs_ar, w32, guest, 15)                                           \
    X(guest_ldtr_ar, w32, guest, 16)                                         \
    X(guest_tr_ar, w32, guest, 17)                                           \
    X(guest_interruptibility, w32, guest, 18)                                \
    X(guest_activity_state, w32, guest, 19)                                  \
    X(guest_smbase, w32, guest, 20)                                          \
    X(guest_sysenter_cs, w32, guest, 21)                                     \
    X(preemption_timer_value, w32, guest, 23)                                \
    /* B.3.4 32-bit host state */                                            \
    X(host_sysenter_cs, w32, host, 0)                                        \
    /* B.4.1 natural-width control */                                        \
    X(cr0_guest_host_mask, natural, control, 0)                              \
    X(cr4_guest_host_mask, natural, control, 1)                              \
    X(cr0_read_shadow, natural, control, 2)                                  \
    X(cr4_read_shadow, natural, control, 3)                                  \
    X(cr3_target_value0, natural, control, 4)                                \
    X(cr3_target_value1, natural, control, 5)                                \
    X(cr3_target_value2, natural, control, 6)                                \
    X(cr3_target_value3, natural, control, 7)                                \
    /* B.4.2 natural-width read-only data */                                 \
    X(exit_qualification, natural, exit_info, 0)                             \
    X(io_rcx, natural, exit_info, 1)                                         \
    X(io_rsi, natural, exit_info, 2)                                         \
    X(io_rdi, natural, exit_info, 3)                                         \
    X(io_rip, natural, exit_info, 4)                                         \
    X(guest_linear_address, natural, exit_info, 5)                           \
    /* B.4.3 natural-width guest state */                                    \
    X(guest_cr0, natural, guest, 0)                                          \
    X(guest_cr3, natural, guest, 1)                                          \
    X(guest_cr4, natural, guest, 2)                                          \
    X(guest_es_base, natural, guest, 3)                                      \
    X(guest_cs_base, natural, guest, 4)                                      \
    X(guest_ss_base, natural, guest, 5)                                      \
    X(guest_ds_base, natural, guest, 6)                                      \
    X(guest_fs_base, natural, guest, 7)                                      \
    X(guest_gs_base, natural, guest, 8)                                      \
    X(guest_ldtr_base, natural, guest, 9)                                    \
    X(guest_tr_base, natural, guest, 10)                                     \
    X(guest_gdtr_base, natural, guest, 11)                                   \
    X(guest_idtr_base, natural, guest, 12)                                   \
    X(guest_dr7, natural, guest, 13)                                         \
    X(guest_rsp, natural, guest, 14)                                         \
    X(guest_rip, natural, guest, 15)                                         \
    X(guest_rflags, natural, guest, 16)                                      \
    X(guest_pending_dbg_exceptions, natural, guest, 17)                      \
    X(guest_sysenter_esp, natural, guest, 18)                                \
    X(guest_sysenter_eip, natural, guest, 19)                                \
    /* B.4.4 natural-width host state */                                     \
    X(host_cr0, natural, host, 0)                                            \
    X(host_cr3, natural, host, 1)                                            \
    X(host_cr4, natural, host, 2)                                            \
    X(host_fs_base, natural, host, 3)                                        \
    X(host_gs_base, natural, host, 4)                                        \
    X(host_tr_base, natural, host, 5)                                        \
    X(host_gdtr_base, natural, host, 6)                                      \
    X(host_idtr_base, natural, host, 7)                                      \
    X(host_sysenter_esp, natural, host, 8)                                   \
    X(host_sysenter_eip, natural, host, 9)                                   \
    X(host_rsp, natural, host, 10)                                           \
    X(host_rip, natural, host, 11)

enum class field : std::uint32_t {
#define HV_X(name, w, t, i) name = encode(width::w, field_type::t, i),
    HV_VMCS_FIELDS(HV_X)
#undef HV_X
};

inline constexpr field all_fields[] = {
#define HV_X(name, w, t, i) field::name,
    HV_VMCS_FIELDS(HV_X)
#undef HV_X
};
inline constexpr std::size_t field_count = sizeof(all_fields) / sizeof(all_fields[0]);

constexpr std::uint32_t raw(field f) { return static_cast<std::uint32_t>(f); }
constexpr width width_of(std::uint32_t enc) { return static_cast<width>((enc >> 13) & 3); }
constexpr field_type type_of(std::uint32_t enc) { return static_cast<field_type>((enc >> 10) & 3); }
constexpr std::uint32_t index_of(std::uint32_t enc) { return (enc >> 1) & 0x1ff; }
constexpr access access_of(std::uint32_t enc) { return static_cast<access>(enc & 1); }
constexpr width width_of(field f) { return width_of(raw(f)); }
constexpr field_type type_of(field f) { return type_of(raw(f)); }
constexpr std::uint32_t index_of(field f) { return index_of(raw(f)); }
constexpr bool read_only(field f) { return type_of(f) == field_type::exit_info; }
// The high 32 bits of a 64-bit field are a field of their own.
constexpr std::uint32_t high_half(field f) { return raw(f) | static_cast<std::uint32_t>(access::high); }

// Bits 12 and 15+ are reserved; only 64-bit fields have a high-access encoding.
constexpr bool valid_encoding(std::uint32_t enc) {
    if (enc & ~0x6fffu) return false;
    return access_of(enc) == access::full || width_of(enc) == width::w64;
}

constexpr unsigned bits_of(width w) {
    switch (w) {
    case width::w16: return 16;
    case width::w32: return 32;
    case width::w64:
    case width::natural: return 64;
    }
    return 0;
}
constexpr std::uint64_t value_mask(field f) {
    unsigned b = bits_of(width_of(f));
    return b == 64 ? ~0ull : (1ull << b) - 1;
}

template <width W> struct width_value;
template <> struct width_value<width::w16> { using type = std::uint16_t; };
template <> struct width_value<width::w32> { using type = std::uint32_t; };
template <> struct width_value<width::w64> { using type = std::uint64_t; };
template <> struct width_value<width::natural> { using type = std::uint64_t; };
template <field F> using value_t = typename width_value<width_of(F)>::type;

namespace detail {
constexpr std::size_t group_slot(std::uint32_t enc) {
    return ((((enc >> 13) & 3) << 2 | ((enc >> 10) & 3)) << 5) | ((enc >> 1) & 0x1ff);
}
struct slot_table {
    std::uint8_t slot[16 * 32];
    constexpr slot_table() : slot{} {
        for (auto& s : slot) s = 0xff;
        for (std::size_t i = 0; i < field_count; ++i) slot[group_slot(raw(all_fields[i]))] = static_cast<std::uint8_t>(i);
    }
};
inline constexpr slot_table slots{};
static_assert(field_count < 0xff);
} // namespace detail

// Dense slot number of a field in all_fields (for images indexed by field), or none.
constexpr std::optional<std::size_t> slot_of(std::uint32_t enc) {
    if (!valid_encoding(enc) || access_of(enc) != access::full || index_of(enc) >= 32) return std::nullopt;
    std::uint8_t s = detail::slots.slot[detail::group_slot(enc)];
    if (s == 0xff) return std::nullopt;
    return s;
}
constexpr std::size_t slot_of(field f) { return *slot_of(raw(f)); }

std::string_view name(field f);

// SDM appendix B numbers, to make sure the formula and the list agree.
static_assert(raw(field::vpid) == 0x0000);
static_assert(raw(field::guest_tr_selector) == 0x080e);
static_assert(raw(field::host_tr_selector) == 0x0c0c);
static_assert(raw(field::io_bitmap_a) == 0x2000);
static_assert(raw(field::ept_pointer) == 0x201a);
static_assert(raw(field::tertiary_proc_controls) == 0x2034);
static_assert(raw(field::guest_physical_address) == 0x2400);
static_assert(raw(field::vmcs_link_pointer) == 0x2800);
static_assert(raw(field::guest_efer) == 0x2806);
static_assert(raw(field::guest_pdpte3) == 0x2810);
static_assert(raw(field::host_efer) == 0x2c02);
static_assert(raw(field::pin_controls) == 0x4000);
static_assert(raw(field::entry_interruption_info) == 0x4016);
static_assert(raw(field::proc2_controls) == 0x401e);
static_assert(raw(field::vm_instruction_error) == 0x4400);
static_assert(raw(field::exit_instruction_info) == 0x440e);
static_assert(raw(field::guest_tr_ar) == 0x4822);
static_assert(raw(field::guest_activity_state) == 0x4826);
static_assert(raw(field::preemption_timer_value) == 0x482e);
static_assert(raw(field::host_sysenter_cs) == 0x4c00);
static_assert(raw(field::cr3_target_value3) == 0x600e);
static_assert(raw(field::guest_linear_address) == 0x640a);
static_assert(raw(field::guest_rflags) == 0x6820);
static_assert(raw(field::guest_sysenter_eip) == 0x6826);
static_assert(raw(field::host_rip) == 0x6c16);
static_assert(high_half(field::tsc_offset) == 0x2011);

} // namespace hv::vmx
