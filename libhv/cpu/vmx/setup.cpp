#include "libhv/cpu/vmx/setup.hpp"

namespace hv::vmx {

void put_controls(vmcs_image& v, const derived_controls& d) {
    v.set(field::pin_controls, d.value(control_set::pin));
    v.set(field::proc_controls, d.value(control_set::proc));
    if (d.value(control_set::proc) & bits(proc::secondary_controls))
        v.set(field::proc2_controls, d.value(control_set::proc2));
    v.set(field::exit_controls, d.value(control_set::exit));
    v.set(field::entry_controls, d.value(control_set::entry));
    v.set(field::cr3_target_count, 0);
    v.set(field::exit_msr_store_count, 0);
    v.set(field::exit_msr_load_count, 0);
    v.set(field::entry_msr_load_count, 0);
    v.set(field::entry_interruption_info, 0);
}

void put_host(vmcs_image& v, const host_state& h) {
    v.set(field::host_cr0, h.cr0);
    v.set(field::host_cr3, h.cr3);
    v.set(field::host_cr4, h.cr4);
    v.set(field::host_es_selector, h.es);
    v.set(field::host_cs_selector, h.cs);
    v.set(field::host_ss_selector, h.ss);
    v.set(field::host_ds_selector, h.ds);
    v.set(field::host_fs_selector, h.fs);
    v.set(field::host_gs_selector, h.gs);
    v.set(field::host_tr_selector, h.tr);
    v.set(field::host_fs_base, h.fs_base);
    v.set(field::host_gs_base, h.gs_base);
    v.set(field::host_tr_base, h.tr_base);
    v.set(field::host_gdtr_base, h.gdtr_base);
    v.set(field::host_idtr_base, h.idtr_base);
    v.set(field::host_sysenter_cs, h.sysenter_cs);
    v.set(field::host_sysenter_esp, h.sysenter_esp);
    v.set(field::host_sysenter_eip, h.sysenter_eip);
    const auto exit = static_cast<std::uint32_t>(v.get(field::exit_controls));
    if (exit & bits(exit_ctl::load_efer)) v.set(field::host_efer, h.efer);
    if (exit & bits(exit_ctl::load_pat)) v.set(field::host_pat, h.pat);
    v.set(field::host_rsp, h.rsp);
    v.set(field::host_rip, h.rip);
}

void put_guest(vmcs_image& v, const cpu::guest_state& g, const capabilities& caps) {
    using cpu::seg;
    const bool secondary = v.get(field::proc_controls) & bits(proc::secondary_controls);
    const bool ug = secondary && (v.get(field::proc2_controls) & bits(proc2::unrestricted_guest));

    const auto cr0 = shadow_cr(cr0_fixed(caps, ug), g.cr0);
    const auto cr4 = shadow_cr(cr4_fixed(caps), g.cr4);
    v.set(field::guest_cr0, cr0.actual);
    v.set(field::cr0_guest_host_mask, cr0.mask);
    v.set(field::cr0_read_shadow, cr0.shadow);
    v.set(field::guest_cr4, cr4.actual);
    v.set(field::cr4_guest_host_mask, cr4.mask);
    v.set(field::cr4_read_shadow, cr4.shadow);
    v.set(field::guest_cr3, g.cr3);
    v.set(field::guest_dr7, g.dr7);
    v.set(field::guest_rsp, g.regs.rsp);
    v.set(field::guest_rip, g.rip);
    v.set(field::guest_rflags, g.rflags);

    static constexpr field sel[] = {field::guest_es_selector, field::guest_cs_selector, field::guest_ss_selector,
                                    field::guest_ds_selector, field::guest_fs_selector, field::guest_gs_selector,
                                    field::guest_ldtr_selector, field::guest_tr_selector};
    static constexpr field base[] = {field::guest_es_base, field::guest_cs_base, field::guest_ss_base,
                                     field::guest_ds_base, field::guest_fs_base, field::guest_gs_base,
                                     field::guest_ldtr_base, field::guest_tr_base};
    static constexpr field limit[] = {field::guest_es_limit, field::guest_cs_limit, field::guest_ss_limit,
                                      field::guest_ds_limit, field::guest_fs_limit, field::guest_gs_limit,
                                      field::guest_ldtr_limit, field::guest_tr_limit};
    static constexpr field ar[] = {field::guest_es_ar, field::guest_cs_ar, field::guest_ss_ar,
                                   field::guest_ds_ar, field::guest_fs_ar, field::guest_gs_ar,
                                   field::guest_ldtr_ar, field::guest_tr_ar};
    for (unsigned i = 0; i < cpu::segment_count; ++i) {
        v.set(sel[i], g.segs[i].selector);
        v.set(base[i], g.segs[i].base);
        v.set(limit[i], g.segs[i].limit);
        v.set(ar[i], g.segs[i].access);
    }
    v.set(field::guest_gdtr_base, g.gdtr.base);
    v.set(field::guest_gdtr_limit, g.gdtr.limit);
    v.set(field::guest_idtr_base, g.idtr.base);
    v.set(field::guest_idtr_limit, g.idtr.limit);
    v.set(field::guest_sysenter_cs, g.sysenter_cs);
    v.set(field::guest_sysenter_esp, g.sysenter_esp);
    v.set(field::guest_sysenter_eip, g.sysenter_eip);
    v.set(field::guest_debugctl, 0);
    v.set(field::guest_interruptibility, g.interruptibility);
    v.set(field::guest_activity_state, g.state == cpu::activity::hlt ? 1 : 0);
    v.set(field::guest_pending_dbg_exceptions, 0);
    v.set(field::vmcs_link_pointer, ~0ull);

    auto entry = static_cast<std::uint32_t>(v.get(field::entry_controls));
    if (g.efer & x86::efer::lma) entry |= bits(entry_ctl::ia32e_mode_guest);
    else entry &= ~bits(entry_ctl::ia32e_mode_guest);
    v.set(field::entry_controls, entry);
    if (entry & bits(entry_ctl::load_efer)) v.set(field::guest_efer, g.efer);
    if (entry & bits(entry_ctl::load_pat)) v.set(field::guest_pat, g.pat);
}

} // namespace hv::vmx
