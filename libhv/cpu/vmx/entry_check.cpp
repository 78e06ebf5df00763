#include "libhv/cpu/vmx/entry_check.hpp"
#include "libhv/cpu/state.hpp"
#include "libhv/cpu/vmx/exit.hpp"

namespace hv::vmx {

namespace {

constexpr entry_verdict bad(field f, const char* what, const char* sdm) { return {false, f, what, sdm}; }

#define HV_REQUIRE(cond, f, what, sdm) \
    do {                               \
        if (!(cond)) return bad(f, what, sdm); \
    } while (0)

constexpr bool canonical(std::uint64_t v, unsigned bits = 48) {
    std::uint64_t top = v >> (bits - 1);
    return top == 0 || top == (~0ull >> (bits - 1));
}
constexpr bool fits(std::uint64_t pa, unsigned maxphy) { return maxphy >= 64 || (pa >> maxphy) == 0; }
constexpr bool page_aligned(std::uint64_t pa) { return (pa & 0xfff) == 0; }
constexpr bool valid_pat(std::uint64_t pat) {
    for (unsigned i = 0; i < 8; ++i) {
        unsigned t = (pat >> (8 * i)) & 0xff;
        if (!(t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || t == 7)) return false;
    }
    return true;
}
// Intel EFER: SCE, LME, LMA, NXE.
constexpr std::uint64_t efer_reserved = ~(x86::efer::sce | x86::efer::lme | x86::efer::lma | x86::efer::nxe);

struct controls_view {
    std::uint32_t pin, proc, proc2, exit, entry;
    explicit controls_view(const vmcs_image& v)
        : pin(static_cast<std::uint32_t>(v.get(field::pin_controls))),
          proc(static_cast<std::uint32_t>(v.get(field::proc_controls))),
          proc2((proc & bits(vmx::proc::secondary_controls)) ? static_cast<std::uint32_t>(v.get(field::proc2_controls)) : 0),
          exit(static_cast<std::uint32_t>(v.get(field::exit_controls))),
          entry(static_cast<std::uint32_t>(v.get(field::entry_controls))) {}
    bool on(vmx::pin b) const { return pin & bits(b); }
    bool on(vmx::proc b) const { return proc & bits(b); }
    bool on(vmx::proc2 b) const { return proc2 & bits(b); }
    bool on(exit_ctl b) const { return exit & bits(b); }
    bool on(entry_ctl b) const { return entry & bits(b); }
};

} // namespace

entry_verdict check_controls(const vmcs_image& v, const entry_context& cx) {
    const capabilities& caps = *cx.caps;
    const controls_view c(v);
    const unsigned mp = cx.maxphyaddr;
    constexpr const char* s1 = "26.2.1.1";

    HV_REQUIRE(caps.of(control_set::pin).permits(c.pin), field::pin_controls,
               "pin-based controls outside IA32_VMX_(TRUE_)PINBASED_CTLS", s1);
    HV_REQUIRE(caps.of(control_set::proc).permits(c.proc), field::proc_controls,
               "primary processor-based controls outside IA32_VMX_(TRUE_)PROCBASED_CTLS", s1);
    if (c.on(proc::secondary_controls))
        HV_REQUIRE(caps.of(control_set::proc2).permits(c.proc2), field::proc2_controls,
                   "secondary processor-based controls outside IA32_VMX_PROCBASED_CTLS2", s1);
    HV_REQUIRE(v.get(field::cr3_target_count) <= caps.misc.cr3_targets(), field::cr3_target_count,
               "CR3-target count above IA32_VMX_MISC[24:16]", s1);
    if (c.on(proc::io_bitmaps)) {
        HV_REQUIRE(page_aligned(v.get(field::io_bitmap_a)) && fits(v.get(field::io_bitmap_a), mp), field::io_bitmap_a,
                   "I/O bitmap A address not 4 KiB aligned or beyond MAXPHYADDR", s1);
        HV_REQUIRE(page_aligned(v.get(field::io_bitmap_b)) && fits(v.get(field::io_bitmap_b), mp), field::io_bitmap_b,
                   "I/O bitmap B address not 4 KiB aligned or beyond MAXPHYADDR", s1);
    }
    if (c.on(proc::msr_bitmaps))
        HV_REQUIRE(page_aligned(v.get(field::msr_bitmap)) && fits(v.get(field::msr_bitmap), mp), field::msr_bitmap,
                   "MSR bitmap address not 4 KiB aligned or beyond MAXPHYADDR", s1);
    if (c.on(proc::tpr_shadow)) {
        HV_REQUIRE(page_aligned(v.get(field::virtual_apic_address)) && fits(v.get(field::virtual_apic_address), mp),
                   field::virtual_apic_address, "virtual-APIC address not 4 KiB aligned or beyond MAXPHYADDR", s1);
    } else {
        HV_REQUIRE(!c.on(proc2::virtualize_x2apic) && !c.on(proc2::apic_register_virtualization) &&
                       !c.on(proc2::virtual_interrupt_delivery),
                   field::proc2_controls, "x2APIC/APIC-register virtualization or virtual-interrupt delivery without TPR shadow", s1);
    }
    if (!c.on(pin::nmi_exiting))
        HV_REQUIRE(!c.on(pin::virtual_nmis), field::pin_controls, "virtual NMIs without NMI exiting", s1);
    if (!c.on(pin::virtual_nmis))
        HV_REQUIRE(!c.on(proc::nmi_window_exiting), field::proc_controls, "NMI-window exiting without virtual NMIs", s1);
    if (c.on(proc2::virtualize_apic_accesses))
        HV_REQUIRE(page_aligned(v.get(field::apic_access_address)) && fits(v.get(field::apic_access_address), mp),
                   field::apic_access_address, "APIC-access address not 4 KiB aligned or beyond MAXPHYADDR", s1);
    if (c.on(proc2::vpid)) HV_REQUIRE(v.get(field::vpid) != 0, field::vpid, "VPID is 0 with enable VPID", s1);
    if (c.on(proc2::ept)) {
        const std::uint64_t eptp = v.get(field::ept_pointer);
        const unsigned type = eptp & 7;
        HV_REQUIRE((type == 0 && caps.ept_vpid.memtype_uc()) || (type == 6 && caps.ept_vpid.memtype_wb()),
                   field::ept_pointer, "EPTP memory type not UC/WB or not supported", s1);
        const unsigned walk = (eptp >> 3) & 7;
        HV_REQUIRE((walk == 3 && caps.ept_vpid.walk_length4()) || (walk == 4 && caps.ept_vpid.walk_length5()),
                   field::ept_pointer, "EPTP page-walk length not 4 (or 5 where supported)", s1);
        HV_REQUIRE(!(eptp & (1u << 6)) || caps.ept_vpid.accessed_dirty(), field::ept_pointer,
                   "EPTP enables accessed/dirty flags the CPU lacks", s1);
        HV_REQUIRE((eptp & 0xf80) == 0 && fits(eptp, mp), field::ept_pointer,
                   "EPTP reserved bits 11:7 or bits beyond MAXPHYADDR set", s1);
    }
    if (c.on(proc2::pml)) {
        HV_REQUIRE(c.on(proc2::ept), field::proc2_controls, "enable PML without enable EPT", s1);
        HV_REQUIRE(page_aligned(v.get(field::pml_address)) && fits(v.get(field::pml_address), mp), field::pml_address,
                   "PML address not 4 KiB aligned or beyond MAXPHYADDR", s1);
    }
    if (c.on(proc2::unrestricted_guest))
        HV_REQUIRE(c.on(proc2::ept), field::proc2_controls, "unrestricted guest without enable EPT", s1);

    constexpr const char* s2 = "26.2.1.2";
    HV_REQUIRE(caps.of(control_set::exit).permits(c.exit), field::exit_controls,
               "VM-exit controls outside IA32_VMX_(TRUE_)EXIT_CTLS", s2);
    if (!c.on(pin::preemption_timer))
        HV_REQUIRE(!c.on(exit_ctl::save_preemption_timer), field::exit_controls,
                   "save VMX-preemption timer without activating it", s2);
    if (v.get(field::exit_msr_store_count))
        HV_REQUIRE((v.get(field::exit_msr_store_addr) & 15) == 0 && fits(v.get(field::exit_msr_store_addr), mp),
                   field::exit_msr_store_addr, "VM-exit MSR-store address not 16-byte aligned", s2);
    if (v.get(field::exit_msr_load_count))
        HV_REQUIRE((v.get(field::exit_msr_load_addr) & 15) == 0 && fits(v.get(field::exit_msr_load_addr), mp),
                   field::exit_msr_load_addr, "VM-exit MSR-load address not 16-byte aligned", s2);

    constexpr const char* s3 = "26.2.1.3";
    HV_REQUIRE(caps.of(control_set::entry).permits(c.entry), field::entry_controls,
               "VM-entry controls outside IA32_VMX_(TRUE_)ENTRY_CTLS", s3);
    HV_REQUIRE(!c.on(entry_ctl::entry_to_smm) && !c.on(entry_ctl::deactivate_dual_monitor), field::entry_controls,
               "entry to SMM / deactivate dual-monitor outside SMM", s3);
    const interruption_info ii{static_cast<std::uint32_t>(v.get(field::entry_interruption_info))};
    if (ii.valid()) {
        const auto t = ii.type();
        HV_REQUIRE(static_cast<unsigned>(t) != 1, field::entry_interruption_info, "injection type 1 is reserved", s3);
        HV_REQUIRE(t != event_type::other_event || c.on(proc::monitor_trap_flag), field::entry_interruption_info,
                   "injection of 'other event' without monitor trap flag", s3);
        HV_REQUIRE(t != event_type::nmi || ii.vector() == 2, field::entry_interruption_info,
                   "NMI injection with vector other than 2", s3);
        HV_REQUIRE(t != event_type::hardware_exception || ii.vector() <= 31, field::entry_interruption_info,
                   "hardware exception injection with vector above 31", s3);
        HV_REQUIRE(t != event_type::other_event || ii.vector() == 0, field::entry_interruption_info,
                   "'other event' injection with vector other than 0", s3);
        const bool ug = c.on(proc2::unrestricted_guest);
        const bool pe = v.get(field::guest_cr0) & x86::cr0::pe;
        if (t != event_type::hardware_exception || (ug && !pe))
            HV_REQUIRE(!ii.error_code_valid(), field::entry_interruption_info,
                       "deliver-error-code set for an event that takes none (not an exception, or real mode)", s3);
        else if (!caps.basic.any_error_code())
            HV_REQUIRE(ii.error_code_valid() == exception_has_error_code(ii.vector()), field::entry_interruption_info,
                       "deliver-error-code does not match the exception vector", s3);
        HV_REQUIRE((ii.raw & 0x7ffff000u) == 0, field::entry_interruption_info,
                   "injection info reserved bits 30:12 set", s3);
        if (ii.error_code_valid())
            HV_REQUIRE((v.get(field::entry_exception_error_code) & 0xffff8000u) == 0,
                       field::entry_exception_error_code, "injected error code has bits 31:15 set", s3);
        if (t == event_type::software_interrupt || t == event_type::privileged_software_exception ||
            t == event_type::software_exception) {
            const auto len = v.get(field::entry_instruction_length);
            HV_REQUIRE((len >= 1 || (len == 0 && caps.misc.zero_length_injection())) && len <= 15,
                       field::entry_instruction_length, "software event injected with instruction length outside 1..15", s3);
        }
    }
    if (v.get(field::entry_msr_load_count))
        HV_REQUIRE((v.get(field::entry_msr_load_addr) & 15) == 0 && fits(v.get(field::entry_msr_load_addr), mp),
                   field::entry_msr_load_addr, "VM-entry MSR-load address not 16-byte aligned", s3);
    return entry_verdict::ok();
}

entry_verdict check_host(const vmcs_image& v, const entry_context& cx) {
    const capabilities& caps = *cx.caps;
    const controls_view c(v);
    constexpr const char* s2 = "26.2.2";
    HV_REQUIRE(!cr0_fixed(caps, false).violations(v.get(field::host_cr0)), field::host_cr0,
               "host CR0 breaks IA32_VMX_CR0_FIXED0/1", s2);
    HV_REQUIRE(!cr4_fixed(caps).violations(v.get(field::host_cr4)), field::host_cr4,
               "host CR4 breaks IA32_VMX_CR4_FIXED0/1", s2);
    HV_REQUIRE(fits(v.get(field::host_cr3), cx.maxphyaddr), field::host_cr3, "host CR3 beyond MAXPHYADDR", s2);
    HV_REQUIRE(canonical(v.get(field::host_sysenter_esp)), field::host_sysenter_esp, "host SYSENTER_ESP not canonical", s2);
    HV_REQUIRE(canonical(v.get(field::host_sysenter_eip)), field::host_sysenter_eip, "host SYSENTER_EIP not canonical", s2);
    if (c.on(exit_ctl::load_pat))
        HV_REQUIRE(valid_pat(v.get(field::host_pat)), field::host_pat, "host PAT holds an invalid memory type", s2);
    const bool host64 = c.on(exit_ctl::host_address_space_size);
    if (c.on(exit_ctl::load_efer)) {
        const std::uint64_t efer = v.get(field::host_efer);
        HV_REQUIRE(!(efer & efer_reserved), field::host_efer, "host EFER reserved bits set", s2);
        HV_REQUIRE(bool(efer & x86::efer::lma) == host64 && bool(efer & x86::efer::lme) == host64, field::host_efer,
                   "host EFER.LMA/LME differ from host address-space size", s2);
    }
    // libhv's host always runs in IA-32e mode.
    constexpr const char* s4 = "26.2.4";
    HV_REQUIRE(host64, field::exit_controls, "host address-space size is 0 on a 64-bit host", s4);
    HV_REQUIRE(v.get(field::host_cr4) & x86::cr4::pae, field::host_cr4, "host CR4.PAE is 0 on a 64-bit host", s4);
    HV_REQUIRE(canonical(v.get(field::host_rip)), field::host_rip, "host RIP not canonical", s4);

    constexpr const char* s3 = "26.2.3";
    for (field f : {field::host_es_selector, field::host_cs_selector, field::host_ss_selector, field::host_ds_selector,
                    field::host_fs_selector, field::host_gs_selector, field::host_tr_selector})
        HV_REQUIRE((v.get(f) & 7) == 0, f, "host selector has RPL or TI set", s3);
    HV_REQUIRE(v.get(field::host_cs_selector) != 0, field::host_cs_selector, "host CS selector is 0", s3);
    HV_REQUIRE(v.get(field::host_tr_selector) != 0, field::host_tr_selector, "host TR selector is 0", s3);
    for (field f : {field::host_fs_base, field::host_gs_base, field::host_gdtr_base, field::host_idtr_base,
                    field::host_tr_base})
        HV_REQUIRE(canonical(v.get(f)), f, "host base address not canonical", s3);
    return entry_verdict::ok();
}

namespace {

struct seg_fields {
    field sel, base, limit, ar;
};
constexpr seg_fields seg_of[] = {
    {field::guest_es_selector, field::guest_es_base, field::guest_es_limit, field::guest_es_ar},
    {field::guest_cs_selector, field::guest_cs_base, field::guest_cs_limit, field::guest_cs_ar},
    {field::guest_ss_selector, field::guest_ss_base, field::guest_ss_limit, field::guest_ss_ar},
    {field::guest_ds_selector, field::guest_ds_base, field::guest_ds_limit, field::guest_ds_ar},
    {field::guest_fs_selector, field::guest_fs_base, field::guest_fs_limit, field::guest_fs_ar},
    {field::guest_gs_selector, field::guest_gs_base, field::guest_gs_limit, field::guest_gs_ar},
    {field::guest_ldtr_selector, field::guest_ldtr_base, field::guest_ldtr_limit, field::guest_ldtr_ar},
    {field::guest_tr_selector, field::guest_tr_base, field::guest_tr_limit, field::guest_tr_ar},
};
constexpr const seg_fields& sf(cpu::seg s) { return seg_of[static_cast<unsigned>(s)]; }

constexpr bool usable(std::uint64_t ar) { return !(ar & cpu::ar::unusable); }
constexpr std::uint32_t ar_reserved = 0xf00u | 0xfffe0000u;
// G must be 0 if any of limit 11:0 is 0, 1 if any of limit 31:20 is 1.
constexpr bool granularity_ok(std::uint64_t limit, std::uint64_t ar) {
    const bool g = ar & cpu::ar::g;
    if ((limit & 0xfff) != 0xfff && g) return false;
    if ((limit & 0xfff00000) && !g) return false;
    return true;
}

} // namespace

entry_verdict check_guest(const vmcs_image& v, const entry_context& cx) {
    using cpu::seg;
    const capabilities& caps = *cx.caps;
    const controls_view c(v);
    const bool ia32e = c.on(entry_ctl::ia32e_mode_guest);
    const bool ug = c.on(proc2::unrestricted_guest);
    const std::uint64_t cr0 = v.get(field::guest_cr0), cr4 = v.get(field::guest_cr4);
    const std::uint64_t rflags = v.get(field::guest_rflags);

    constexpr const char* s1 = "26.3.1.1";
    HV_REQUIRE(!cr0_fixed(caps, ug).violations(cr0), field::guest_cr0, "guest CR0 breaks IA32_VMX_CR0_FIXED0/1", s1);
    HV_REQUIRE(!(cr0 & x86::cr0::pg) || (cr0 & x86::cr0::pe), field::guest_cr0, "guest CR0.PG set without CR0.PE", s1);
    HV_REQUIRE(!cr4_fixed(caps).violations(cr4), field::guest_cr4, "guest CR4 breaks IA32_VMX_CR4_FIXED0/1", s1);
    if (c.on(entry_ctl::load_debug_controls)) {
        HV_REQUIRE((v.get(field::guest_debugctl) & ~0xffc3ull) == 0, field::guest_debugctl,
                   "guest IA32_DEBUGCTL reserved bits set", s1);
        HV_REQUIRE((v.get(field::guest_dr7) >> 32) == 0, field::guest_dr7, "guest DR7 bits 63:32 set", s1);
    }
    if (ia32e) {
        HV_REQUIRE(cr0 & x86::cr0::pg, field::guest_cr0, "IA-32e mode guest with CR0.PG = 0", s1);
        HV_REQUIRE(cr4 & x86::cr4::pae, field::guest_cr4, "IA-32e mode guest with CR4.PAE = 0", s1);
    } else {
        HV_REQUIRE(!(cr4 & x86::cr4::pcide), field::guest_cr4, "CR4.PCIDE set outside IA-32e mode", s1);
    }
    HV_REQUIRE(fits(v.get(field::guest_cr3), cx.maxphyaddr), field::guest_cr3, "guest CR3 beyond MAXPHYADDR", s1);
    HV_REQUIRE(canonical(v.get(field::guest_sysenter_esp)), field::guest_sysenter_esp, "guest SYSENTER_ESP not canonical", s1);
    HV_REQUIRE(canonical(v.get(field::guest_sysenter_eip)), field::guest_sysenter_eip, "guest SYSENTER_EIP not canonical", s1);
    if (c.on(entry_ctl::load_pat))
        HV_REQUIRE(valid_pat(v.get(field::guest_pat)), field::guest_pat, "guest PAT holds an invalid memory type", s1);
    if (c.on(entry_ctl::load_efer)) {
        const std::uint64_t efer = v.get(field::guest_efer);
        HV_REQUIRE(!(efer & efer_reserved), field::guest_efer, "guest EFER reserved bits set", s1);
        HV_REQUIRE(bool(efer & x86::efer::lma) == ia32e, field::guest_efer,
                   "guest EFER.LMA differs from the IA-32e mode guest control", s1);
        if (cr0 & x86::cr0::pg)
            HV_REQUIRE(bool(efer & x86::efer::lme) == ia32e, field::guest_efer,
                       "guest EFER.LME differs from the IA-32e mode guest control while paging", s1);
    }

    constexpr const char* s2 = "26.3.1.2";
    const bool v86 = rflags & x86::rflags::vm;
    auto sel = [&](seg s) { return v.get(sf(s).sel); };
    auto base = [&](seg s) { return v.get(sf(s).base); };
    auto lim = [&](seg s) { return v.get(sf(s).limit); };
    auto arv = [&](seg s) { return v.get(sf(s).ar); };

    HV_REQUIRE(!(sel(seg::tr) & 4), sf(seg::tr).sel, "TR selector has TI set", s2);
    if (usable(arv(seg::ldtr))) HV_REQUIRE(!(sel(seg::ldtr) & 4), sf(seg::ldtr).sel, "LDTR selector has TI set", s2);
    if (!v86 && !ug)
        HV_REQUIRE((sel(seg::ss) & 3) == (sel(seg::cs) & 3), sf(seg::ss).sel, "SS.RPL differs from CS.RPL", s2);
    HV_REQUIRE(canonical(base(seg::tr)), sf(seg::tr).base, "TR base not canonical", s2);
    HV_REQUIRE(canonical(base(seg::fs)), sf(seg::fs).base, "FS base not canonical", s2);
    HV_REQUIRE(canonical(base(seg::gs)), sf(seg::gs).base, "GS base not canonical", s2);
    if (usable(arv(seg::ldtr))) HV_REQUIRE(canonical(base(seg::ldtr)), sf(seg::ldtr).base, "LDTR base not canonical", s2);
    HV_REQUIRE((base(seg::cs) >> 32) == 0, sf(seg::cs).base, "CS base bits 63:32 set", s2);
    for (seg s : {seg::ss, seg::ds, seg::es})
        if (usable(arv(s))) HV_REQUIRE((base(s) >> 32) == 0, sf(s).base, "SS/DS/ES base bits 63:32 set", s2);

    if (v86) {
        for (seg s : {seg::cs, seg::ss, seg::ds, seg::es, seg::fs, seg::gs}) {
            HV_REQUIRE(base(s) == sel(s) << 4, sf(s).base, "virtual-8086 segment base is not selector * 16", s2);
            HV_REQUIRE(lim(s) == 0xffff, sf(s).limit, "virtual-8086 segment limit is not 0xffff", s2);
            HV_REQUIRE(arv(s) == 0xf3, sf(s).ar, "virtual-8086 segment access rights are not 0xf3", s2);
        }
    } else {
        const std::uint64_t cs = arv(seg::cs), ss = arv(seg::ss);
        const unsigned cs_type = cpu::ar::type(cs);
        const bool cs_type_ok = cs_type == 9 || cs_type == 11 || cs_type == 13 || cs_type == 15 || (ug && cs_type == 3);
        HV_REQUIRE(cs_type_ok, sf(seg::cs).ar, "CS type is not accessed code (or accessed data with unrestricted guest)", s2);
        HV_REQUIRE(cs & cpu::ar::s, sf(seg::cs).ar, "CS is a system descriptor (S = 0)", s2);
        if (cs_type == 3)
            HV_REQUIRE(cpu::ar::dpl_of(cs) == 0, sf(seg::cs).ar, "CS DPL not 0 with data-type CS", s2);
        else if (cs_type == 9 || cs_type == 11)
            HV_REQUIRE(cpu::ar::dpl_of(cs) == cpu::ar::dpl_of(ss), sf(seg::cs).ar, "non-conforming CS DPL differs from SS DPL", s2);
        else
            HV_REQUIRE(cpu::ar::dpl_of(cs) <= cpu::ar::dpl_of(ss), sf(seg::cs).ar, "conforming CS DPL above SS DPL", s2);
        HV_REQUIRE(cs & cpu::ar::p, sf(seg::cs).ar, "CS not present", s2);
        HV_REQUIRE(!(cs & ar_reserved), sf(seg::cs).ar, "CS access-rights reserved bits set", s2);
        if (ia32e && (cs & cpu::ar::l))
            HV_REQUIRE(!(cs & cpu::ar::db), sf(seg::cs).ar, "64-bit CS with D/B set", s2);
        HV_REQUIRE(granularity_ok(lim(seg::cs), cs), sf(seg::cs).ar, "CS granularity does not fit its limit", s2);

        if (usable(ss)) {
            const unsigned t = cpu::ar::type(ss);
            HV_REQUIRE(t == 3 || t == 7, sf(seg::ss).ar, "SS type is not read/write accessed data", s2);
            HV_REQUIRE(ss & cpu::ar::s, sf(seg::ss).ar, "SS is a system descriptor (S = 0)", s2);
            HV_REQUIRE(ss & cpu::ar::p, sf(seg::ss).ar, "SS not present", s2);
            HV_REQUIRE(!(ss & ar_reserved), sf(seg::ss).ar, "SS access-rights reserved bits set", s2);
            HV_REQUIRE(granularity_ok(lim(seg::ss), ss), sf(seg::ss).ar, "SS granularity does not fit its limit", s2);
        }
        if (!ug) HV_REQUIRE(cpu::ar::dpl_of(ss) == (sel(seg::ss) & 3), sf(seg::ss).ar, "SS DPL differs from SS.RPL", s2);
        if (cs_type == 3 || !(cr0 & x86::cr0::pe))
            HV_REQUIRE(cpu::ar::dpl_of(ss) == 0, sf(seg::ss).ar, "SS DPL not 0 in real mode or with data-type CS", s2);

        for (seg s : {seg::ds, seg::es, seg::fs, seg::gs}) {
            const std::uint64_t a = arv(s);
            if (!usable(a)) continue;
            const unsigned t = cpu::ar::type(a);
            HV_REQUIRE(t & 1, sf(s).ar, "data segment type not accessed", s2);
            HV_REQUIRE(!(t & 8) || (t & 2), sf(s).ar, "code segment loaded as data is not readable", s2);
            HV_REQUIRE(a & cpu::ar::s, sf(s).ar, "data segment is a system descriptor (S = 0)", s2);
            if (!ug && t <= 11)
                HV_REQUIRE(cpu::ar::dpl_of(a) >= (sel(s) & 3), sf(s).ar, "data segment DPL below its RPL", s2);
            HV_REQUIRE(a & cpu::ar::p, sf(s).ar, "data segment not present", s2);
            HV_REQUIRE(!(a & ar_reserved), sf(s).ar, "data segment access-rights reserved bits set", s2);
            HV_REQUIRE(granularity_ok(lim(s), a), sf(s).ar, "data segment granularity does not fit its limit", s2);
        }
    }
    {
        const std::uint64_t tr = arv(seg::tr);
        const unsigned t = cpu::ar::type(tr);
        HV_REQUIRE((t == 3 && !ia32e) || t == 11, sf(seg::tr).ar, "TR type is not a busy TSS (16-bit only outside IA-32e)", s2);
        HV_REQUIRE(!(tr & cpu::ar::s), sf(seg::tr).ar, "TR has S set", s2);
        HV_REQUIRE(tr & cpu::ar::p, sf(seg::tr).ar, "TR not present", s2);
        HV_REQUIRE(!(tr & ar_reserved), sf(seg::tr).ar, "TR access-rights reserved bits set", s2);
        HV_REQUIRE(granularity_ok(lim(seg::tr), tr), sf(seg::tr).ar, "TR granularity does not fit its limit", s2);
        HV_REQUIRE(usable(tr), sf(seg::tr).ar, "TR marked unusable", s2);
    }
    if (const std::uint64_t l = arv(seg::ldtr); usable(l)) {
        HV_REQUIRE(cpu::ar::type(l) == cpu::ar::ldt, sf(seg::ldtr).ar, "LDTR type is not LDT", s2);
        HV_REQUIRE(!(l & cpu::ar::s), sf(seg::ldtr).ar, "LDTR has S set", s2);
        HV_REQUIRE(l & cpu::ar::p, sf(seg::ldtr).ar, "LDTR not present", s2);
        HV_REQUIRE(!(l & ar_reserved), sf(seg::ldtr).ar, "LDTR access-rights reserved bits set", s2);
        HV_REQUIRE(granularity_ok(lim(seg::ldtr), l), sf(seg::ldtr).ar, "LDTR granularity does not fit its limit", s2);
    }

    constexpr const char* s3 = "26.3.1.3";
    HV_REQUIRE(canonical(v.get(field::guest_gdtr_base)), field::guest_gdtr_base, "GDTR base not canonical", s3);
    HV_REQUIRE(canonical(v.get(field::guest_idtr_base)), field::guest_idtr_base, "IDTR base not canonical", s3);
    HV_REQUIRE((v.get(field::guest_gdtr_limit) >> 16) == 0, field::guest_gdtr_limit, "GDTR limit above 0xffff", s3);
    HV_REQUIRE((v.get(field::guest_idtr_limit) >> 16) == 0, field::guest_idtr_limit, "IDTR limit above 0xffff", s3);

    constexpr const char* s4 = "26.3.1.4";
    const std::uint64_t rip = v.get(field::guest_rip);
    const bool long_cs = ia32e && (arv(seg::cs) & cpu::ar::l);
    if (!long_cs) HV_REQUIRE((rip >> 32) == 0, field::guest_rip, "RIP bits 63:32 set outside 64-bit mode", s4);
    else HV_REQUIRE(canonical(rip, (cr4 & (1ull << 12)) ? 57 : 48), field::guest_rip, "RIP not canonical in 64-bit mode", s4);
    HV_REQUIRE((rflags & ~0x3f7fd7ull) == 0, field::guest_rflags, "RFLAGS reserved bits set", s4);
    HV_REQUIRE(rflags & x86::rflags::fixed1, field::guest_rflags, "RFLAGS bit 1 clear", s4);
    if (ia32e || !(cr0 & x86::cr0::pe))
        HV_REQUIRE(!v86, field::guest_rflags, "RFLAGS.VM set in IA-32e mode or real mode", s4);
    const interruption_info ii{static_cast<std::uint32_t>(v.get(field::entry_interruption_info))};
    if (ii.valid() && ii.type() == event_type::external_interrupt)
        HV_REQUIRE(rflags & x86::rflags::if_, field::guest_rflags, "external interrupt injected with RFLAGS.IF = 0", s4);

    constexpr const char* s5 = "26.3.1.5";
    const std::uint64_t act = v.get(field::guest_activity_state);
    const std::uint64_t intr = v.get(field::guest_interruptibility);
    HV_REQUIRE(act <= 3, field::guest_activity_state, "activity state above 3", s5);
    HV_REQUIRE(act != 1 || caps.misc.activity_hlt(), field::guest_activity_state, "HLT activity state unsupported", s5);
    HV_REQUIRE(act != 2 || caps.misc.activity_shutdown(), field::guest_activity_state, "shutdown activity state unsupported", s5);
    HV_REQUIRE(act != 3 || caps.misc.activity_wait_sipi(), field::guest_activity_state, "wait-for-SIPI activity state unsupported", s5);
    if (act == 1) HV_REQUIRE(cpu::ar::dpl_of(arv(seg::ss)) == 0, field::guest_activity_state, "HLT activity with SS.DPL != 0", s5);
    if (intr & 3) HV_REQUIRE(act == 0, field::guest_activity_state, "blocking by STI/MOV SS in a non-active activity state", s5);
    if (ii.valid() && act != 0) {
        const auto t = ii.type();
        const bool allowed = act == 1 ? (t == event_type::external_interrupt || t == event_type::nmi ||
                                         (t == event_type::hardware_exception && (ii.vector() == 1 || ii.vector() == 18)) ||
                                         (t == event_type::other_event && ii.vector() == 0))
                           : act == 2 ? (t == event_type::nmi || (t == event_type::hardware_exception && ii.vector() == 18))
                                      : false;
        HV_REQUIRE(allowed, field::guest_activity_state, "event injected that this activity state cannot take", s5);
    }
    HV_REQUIRE((intr & ~0x1full) == 0, field::guest_interruptibility, "interruptibility reserved bits set", s5);
    HV_REQUIRE((intr & 3) != 3, field::guest_interruptibility, "blocking by STI and by MOV SS together", s5);
    if (!(rflags & x86::rflags::if_))
        HV_REQUIRE(!(intr & 1), field::guest_interruptibility, "blocking by STI with RFLAGS.IF = 0", s5);
    if (ii.valid() && ii.type() == event_type::external_interrupt)
        HV_REQUIRE(!(intr & 3), field::guest_interruptibility, "external interrupt injected during STI/MOV SS blocking", s5);
    if (ii.valid() && ii.type() == event_type::nmi) {
        HV_REQUIRE(!(intr & 2), field::guest_interruptibility, "NMI injected during MOV SS blocking", s5);
        if (c.on(pin::virtual_nmis))
            HV_REQUIRE(!(intr & 8), field::guest_interruptibility, "NMI injected while virtual NMIs are blocked", s5);
    }
    HV_REQUIRE(!(intr & 4), field::guest_interruptibility, "blocking by SMI outside SMM", s5);
    const std::uint64_t pend = v.get(field::guest_pending_dbg_exceptions);
    HV_REQUIRE((pend & ~0x1500full) == 0, field::guest_pending_dbg_exceptions,
               "pending debug exceptions reserved bits set", s5);
    if ((intr & 3) || act == 1) {
        const bool tf = rflags & (1u << 8), btf = v.get(field::guest_debugctl) & 2;
        const bool bs = pend & (1u << 14);
        HV_REQUIRE(bs == (tf && !btf), field::guest_pending_dbg_exceptions,
                   "pending BS must equal RFLAGS.TF && !DEBUGCTL.BTF while blocked or halted", s5);
    }
    HV_REQUIRE(v.get(field::vmcs_link_pointer) == ~0ull, field::vmcs_link_pointer,
               "VMCS link pointer is not FFFFFFFF_FFFFFFFF (libhv uses no shadow VMCS)", s5);

    constexpr const char* s6 = "26.3.1.6";
    if ((cr0 & x86::cr0::pg) && (cr4 & x86::cr4::pae) && !ia32e && c.on(proc2::ept)) {
        for (field f : {field::guest_pdpte0, field::guest_pdpte1, field::guest_pdpte2, field::guest_pdpte3}) {
            const std::uint64_t e = v.get(f);
            if (!(e & 1)) continue;
            HV_REQUIRE((e & 0x1e6) == 0 && fits(e & ~0xfffull & ~(1ull << 63), cx.maxphyaddr) && !(e >> 63), f,
                       "present PDPTE with reserved bits set", s6);
        }
    }
    return entry_verdict::ok();
}

entry_verdict check_entry(const vmcs_image& v, const entry_context& cx) {
    if (auto r = check_controls(v, cx); !r) return r;
    if (auto r = check_host(v, cx); !r) return r;
    return check_guest(v, cx);
}

void print(const fmt::sink& out, const entry_verdict& r, const vmcs_image& v) {
    if (r.passed) {
        fmt::format(out, "VM entry checks passed\n");
        return;
    }
    fmt::format(out, "VM entry check failed: {} = {:#x}: {} (SDM {})\n", name(r.where), v.get(r.where), r.what, r.sdm);
}

} // namespace hv::vmx
